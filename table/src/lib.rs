//! The contract between Berth's controller and its Envoy filter: the routing table's model, its wire format,
//! the HTTP and server-name (SNI) matchers, the endpoint chooser, session affinity and the filter's plugin
//! configuration. Pure code with no I/O,
//! built for wasm32 and tested natively.
#![forbid(unsafe_code)]

mod affinity;
mod choose;
mod fnv;
mod http_match;
mod model;
mod plugin_config;
mod policy;
mod ports;
mod siphash;
mod sni_match;
mod tcp_match;
mod wire;

pub use affinity::{AffinityKey, ClientAffinity, StickyEndpoints, find_cookie, is_cookie_name};
pub use choose::{choose_endpoint, choose_endpoint_where, mix64};
pub use fnv::FnvHashMap;
pub use http_match::{HostRoutes, HttpRouter, RouteId, normalize_host};
pub use model::{Backend, DefaultBackend, Endpoint, HttpRoute, PathMatch, Source, Table, TcpRoute, TlsRoute};
pub use plugin_config::{
    DEFAULT_CONTROLLER_CLUSTER, DEFAULT_ORIGINAL_DST_CLUSTER, FetchConfig, HttpPluginConfig, PluginConfig,
    StreamPluginConfig, UnknownHost,
};
pub use policy::{
    HeaderEdits, ISTIO_DEFAULT_RETRY_ON, MAX_RETRIES_HEADER, PER_TRY_TIMEOUT_HEADER, RETRIABLE_STATUS_CODES_HEADER,
    RETRY_GRPC_ON_HEADER, RETRY_ON_HEADER, Retries, RoutePolicy, TIMEOUT_HEADER, parse_retry_on, rewrite_path,
};
pub use ports::{Allocation, PortClaim, PortRange, PortRangeError, allocate, allocate_where, parse_ranges};
pub use sni_match::{SniRouter, check_sni_pattern, normalize_sni};
pub use tcp_match::TcpRouter;
pub use wire::{DecodeError, FORMAT, decode, encode};
