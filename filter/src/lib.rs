//! Berth's proxy-wasm filter for stock Envoy: one root context per Envoy, elected through shared data, fetches
//! the controller's routing table and publishes it in shared data (nothing in Envoy's bootstrap is needed); the
//! HTTP filter routes each request by it, the TCP (network) filter each connection by its port and
//! the TLS passthrough (network) filter each connection by its server name, through an `ORIGINAL_DST` cluster.
//!
//! The proxy-wasm trait impls (`root`, `http::HttpFilter`, `tcp::TcpFilter`, `tls::TlsFilter`) are thin; the logic sits in plain code over the
//! [`host::Host`] trait and is unit-tested natively with a fake host.

pub mod cache;
pub mod ejection;
pub mod election;
pub mod endpoints;
pub mod fetch_duty;
pub mod fetcher;
pub mod filter_state;
pub mod host;
pub mod http;
pub mod passive_health;
pub mod root;
pub mod route_policy;
pub mod tcp;
pub mod tls;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}
