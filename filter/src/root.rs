//! The root context: reads the plugin configuration, becomes the fetcher or the HTTP filter's root, and tells the
//! SDK which kind of per-stream context to create.
//!
//! One module serves every role, and the SDK is given only `set_root_context`: a global `set_http_context` would
//! make it build HTTP contexts for network filters too. `get_type` answers from the configured role, so a future
//! `tcp` role adds a stream context here without touching the HTTP path.

use std::cell::RefCell;
use std::rc::Rc;

use log::{error, info};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use crate::cache::TableCache;
use crate::config::{self, Role};
use crate::fetcher::Fetcher;
use crate::host::Envoy;
use crate::http::{HttpFilter, HttpView};

#[derive(Default)]
pub enum Root {
    /// Before `on_configure`, or after it failed.
    #[default]
    Unconfigured,
    Fetcher(Fetcher),
    Http(Rc<RefCell<TableCache<HttpView>>>),
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Root::Fetcher(fetcher) = self {
            fetcher.on_response(&Envoy, token_id, num_headers, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, plugin_configuration_size) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                error!("berth: cannot read the plugin configuration: {status:?}");
                return false;
            }
        };
        let role = match config::parse(&bytes) {
            Ok(role) => role,
            Err(problem) => {
                error!("berth: {problem}");
                *self = Root::Unconfigured;
                return false;
            }
        };
        *self = match role {
            Role::Fetcher(config) => {
                if let Err(status) = hostcalls::set_tick_period(config.retry()) {
                    error!("berth: cannot set the fetcher's tick period: {status:?}");
                    return false;
                }
                info!(
                    "berth: fetcher polling cluster {} at {} (hold {} s, retry {} ms)",
                    config.cluster, config.path, config.wait_seconds, config.retry_ms
                );
                let mut fetcher = Fetcher::new(config, &Envoy);
                // The first poll goes out now rather than a tick later; if the cluster is not ready yet, the tick
                // retries.
                fetcher.on_tick(&Envoy);
                Root::Fetcher(fetcher)
            }
            Role::Http => Root::Http(Rc::default()),
        };
        true
    }

    fn on_tick(&mut self) {
        if let Root::Fetcher(fetcher) = self {
            fetcher.on_tick(&Envoy);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        // Never `None`: the SDK panics when it has to create a context and gets no type. A root that is not an
        // HTTP root still gets HTTP contexts, which answer 503 rather than route.
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let cache = match self {
            Root::Http(cache) => Some(Rc::clone(cache)),
            Root::Unconfigured | Root::Fetcher(_) => None,
        };
        Some(Box::new(HttpFilter::new(cache)))
    }
}
