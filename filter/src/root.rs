//! The root context: reads the plugin configuration, becomes the HTTP filter's root, the TCP filter's root or the
//! TLS passthrough filter's root, tells the SDK which kind of per-stream context to create, and takes its turn at
//! fetching the table ([`FetchDuty`]: one root context per Envoy fetches, elected through shared data).
//!
//! One module serves every role, and the SDK is given only `set_root_context`: a global `set_http_context` would
//! make it build HTTP contexts for network filters too. `get_type` answers from the configured role.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use berth_table::PluginConfig;
use log::{error, info};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{BufferType, ContextType};

use crate::fetch_duty::FetchDuty;
use crate::host::Envoy;
use crate::http::{HttpFilter, HttpRouting, UnknownHostPolicy};
use crate::tcp::{TcpFilter, TcpRouting};
use crate::tls::{TlsFilter, TlsRouting};

/// How often a filter's root context (one per worker and filter configuration) reads the shared table version and
/// ejection list, so that requests and connections need not: a new table or another worker's ejection reaches them
/// within this. Each tick costs two small shared-data reads per root, and the fetch election's clock read; the
/// election itself reads or writes its lease only every [`crate::election::CHECK_MS`].
pub const WATCH_PERIOD: Duration = Duration::from_millis(20);

#[derive(Default)]
pub enum Root {
    /// Before `on_configure`, or after it failed.
    #[default]
    Unconfigured,
    /// The fetch duty is boxed: it is most of the root's size, and an unconfigured root need not carry it.
    Configured { routing: Routing, fetch: Box<FetchDuty> },
}

/// What a configured root routes by.
pub enum Routing {
    /// The table cache and passive health of its requests.
    Http(Rc<RefCell<HttpRouting>>),
    /// The table cache of its connections, with the VM's unrouted counter.
    Tcp(Rc<RefCell<TcpRouting>>),
    /// The table cache of its connections, with the VM's unrouted TLS counter.
    Tls(Rc<RefCell<TlsRouting>>),
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Root::Configured { fetch, .. } = self {
            fetch.on_response(&Envoy, token_id, num_headers, body_size);
        }
    }
}

/// The plugin is going away (its listener was updated or removed; Envoy deletes its root contexts): hand the fetch
/// lease over at once rather than let it run out. Here and not in `on_done`: exporting `proxy_on_done` would make
/// Envoy enter the VM at the end of every request and connection too.
impl Drop for Root {
    fn drop(&mut self) {
        if let Root::Configured { fetch, .. } = self {
            fetch.release(&Envoy);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, plugin_configuration_size) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                error!("cannot read the plugin configuration: {status:?}");
                return false;
            }
        };
        let config = match PluginConfig::parse(&bytes) {
            Ok(config) => config,
            Err(problem) => {
                error!("{problem}");
                *self = Root::Unconfigured;
                return false;
            }
        };
        // No I/O here: Envoy also runs `on_configure` in a throwaway "configuration canary" VM, which would send a
        // poll of its own. The canary never ticks, and the election and the fetch run on ticks only.
        if let Err(status) = hostcalls::set_tick_period(WATCH_PERIOD) {
            error!("cannot set the {} filter's tick period: it would never see a new table: {status:?}", config.role());
            return false;
        }
        let fetch = config.fetch();
        info!(
            "{} filter configured; fetches from cluster {}, path {}, hold {} s, retry {} ms when elected",
            config.role(),
            fetch.cluster,
            fetch.path,
            fetch.wait_seconds,
            fetch.retry_ms
        );
        let fetch = Box::new(FetchDuty::new(fetch.clone(), config.role()));
        let routing = match &config {
            PluginConfig::Http(http) => Routing::Http(Rc::new(RefCell::new(HttpRouting {
                unknown: UnknownHostPolicy::from_config(http),
                ..HttpRouting::default()
            }))),
            PluginConfig::Tcp(_) => Routing::Tcp(Rc::new(RefCell::new(TcpRouting::new(&Envoy)))),
            PluginConfig::Tls(_) => Routing::Tls(Rc::new(RefCell::new(TlsRouting::new(&Envoy)))),
        };
        *self = Root::Configured { routing, fetch };
        true
    }

    fn on_tick(&mut self) {
        let Root::Configured { routing, fetch } = self else { return };
        fetch.on_tick(&Envoy);
        // A routing state already borrowed cannot be (one thread, no re-entry); if it ever were, the next tick reads.
        match routing {
            Routing::Http(routing) => {
                if let Ok(mut routing) = routing.try_borrow_mut() {
                    routing.on_tick(&Envoy);
                }
            }
            Routing::Tcp(routing) => {
                if let Ok(mut routing) = routing.try_borrow_mut() {
                    routing.on_tick(&Envoy);
                }
            }
            Routing::Tls(routing) => {
                if let Ok(mut routing) = routing.try_borrow_mut() {
                    routing.on_tick(&Envoy);
                }
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        // Never `None`: the SDK panics when it has to create a context and gets no type. A root that is neither
        // still gets HTTP contexts, which answer 503 rather than route. (Envoy creates no filter for a plugin whose
        // `on_configure` failed, so an unconfigured root never meets a connection.)
        match self {
            Root::Configured { routing: Routing::Tcp(_) | Routing::Tls(_), .. } => Some(ContextType::StreamContext),
            Root::Unconfigured | Root::Configured { routing: Routing::Http(_), .. } => Some(ContextType::HttpContext),
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let routing = match self {
            Root::Configured { routing: Routing::Http(routing), .. } => Some(Rc::clone(routing)),
            Root::Unconfigured | Root::Configured { .. } => None,
        };
        Some(Box::new(HttpFilter::new(routing)))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        let routing = match self {
            Root::Configured { routing: Routing::Tls(routing), .. } => {
                return Some(Box::new(TlsFilter::new(Rc::clone(routing))));
            }
            Root::Configured { routing: Routing::Tcp(routing), .. } => Some(Rc::clone(routing)),
            Root::Unconfigured | Root::Configured { .. } => None,
        };
        Some(Box::new(TcpFilter::new(routing)))
    }
}
