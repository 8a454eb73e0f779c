//! The root context: reads the plugin configuration, becomes the fetcher, the HTTP filter's root, the TCP
//! filter's root or the TLS passthrough filter's root, and tells the SDK which kind of per-stream context to create.
//!
//! One module serves every role, and the SDK is given only `set_root_context`: a global `set_http_context` would
//! make it build HTTP contexts for network filters too. `get_type` answers from the configured role.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use log::{error, info};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{BufferType, ContextType};

use crate::config::{self, Role};
use crate::fetcher::Fetcher;
use crate::host::Envoy;
use crate::http::{HttpFilter, HttpRouting};
use crate::tcp::{TcpFilter, TcpRouting};
use crate::tls::{TlsFilter, TlsRouting};

/// The fetcher's first tick, which sends its first poll.
const FIRST_TICK: Duration = Duration::from_millis(10);

/// How often a filter's root context (one per worker and role) reads the shared table version and ejection list,
/// so that requests and connections need not: a new table or another worker's ejection reaches them within this.
/// Each tick costs two small shared-data reads per root.
pub const WATCH_PERIOD: Duration = Duration::from_millis(20);

#[derive(Default)]
pub enum Root {
    /// Before `on_configure`, or after it failed.
    #[default]
    Unconfigured,
    /// `polling` is false until the first tick (see `on_configure`).
    Fetcher { fetcher: Fetcher, polling: bool },
    /// The table cache and passive health of its requests.
    Http(Rc<RefCell<HttpRouting>>),
    /// The table cache of its connections, with the VM's unrouted counter.
    Tcp(Rc<RefCell<TcpRouting>>),
    /// The table cache of its connections, with the VM's unrouted TLS counter.
    Tls(Rc<RefCell<TlsRouting>>),
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Root::Fetcher { fetcher, .. } = self {
            fetcher.on_response(&Envoy, token_id, num_headers, body_size);
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
        let role = match config::parse(&bytes) {
            Ok(role) => role,
            Err(problem) => {
                error!("{problem}");
                *self = Root::Unconfigured;
                return false;
            }
        };
        *self = match role {
            Role::Fetcher(config) => {
                // No I/O here: Envoy also runs `on_configure` in a throwaway "configuration canary" VM, which would
                // send a poll of its own. The canary never ticks, so the first poll goes out on a quick first
                // tick, which then slows to the retry period.
                if let Err(status) = hostcalls::set_tick_period(FIRST_TICK) {
                    error!("cannot set the fetcher's tick period: {status:?}");
                    return false;
                }
                info!(
                    "fetcher configured: cluster {}, path {}, hold {} s, retry {} ms",
                    config.cluster, config.path, config.wait_seconds, config.retry_ms
                );
                Root::Fetcher { fetcher: Fetcher::new(config, &Envoy), polling: false }
            }
            Role::Http | Role::Tcp | Role::Tls if hostcalls::set_tick_period(WATCH_PERIOD).is_err() => {
                error!("cannot set the {role:?} filter's tick period: it would never see a new table");
                return false;
            }
            Role::Http => Root::Http(Rc::default()),
            Role::Tcp => Root::Tcp(Rc::new(RefCell::new(TcpRouting::new(&Envoy)))),
            Role::Tls => Root::Tls(Rc::new(RefCell::new(TlsRouting::new(&Envoy)))),
        };
        true
    }

    fn on_tick(&mut self) {
        // A routing state already borrowed cannot be (one thread, no re-entry); if it ever were, the next tick reads.
        match self {
            Root::Fetcher { fetcher, polling } => {
                if !*polling {
                    if let Err(status) = hostcalls::set_tick_period(fetcher.config().retry()) {
                        error!("cannot set the fetcher's tick period to {} ms: {status:?}", fetcher.config().retry_ms);
                    }
                    *polling = true;
                }
                fetcher.on_tick(&Envoy);
            }
            Root::Http(routing) => {
                if let Ok(mut routing) = routing.try_borrow_mut() {
                    routing.on_tick(&Envoy);
                }
            }
            Root::Tcp(routing) => {
                if let Ok(mut routing) = routing.try_borrow_mut() {
                    routing.on_tick(&Envoy);
                }
            }
            Root::Tls(routing) => {
                if let Ok(mut routing) = routing.try_borrow_mut() {
                    routing.on_tick(&Envoy);
                }
            }
            Root::Unconfigured => {}
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        // Never `None`: the SDK panics when it has to create a context and gets no type. A root that is neither
        // still gets HTTP contexts, which answer 503 rather than route. (Envoy creates no filter for a plugin whose
        // `on_configure` failed, so an unconfigured root never meets a connection.)
        match self {
            Root::Tcp(_) | Root::Tls(_) => Some(ContextType::StreamContext),
            Root::Unconfigured | Root::Fetcher { .. } | Root::Http(_) => Some(ContextType::HttpContext),
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let routing = match self {
            Root::Http(routing) => Some(Rc::clone(routing)),
            Root::Unconfigured | Root::Fetcher { .. } | Root::Tcp(_) | Root::Tls(_) => None,
        };
        Some(Box::new(HttpFilter::new(routing)))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        let routing = match self {
            Root::Tls(routing) => return Some(Box::new(TlsFilter::new(Rc::clone(routing)))),
            Root::Tcp(routing) => Some(Rc::clone(routing)),
            Root::Unconfigured | Root::Fetcher { .. } | Root::Http(_) => None,
        };
        Some(Box::new(TcpFilter::new(routing)))
    }
}
