//! A proxy-wasm filter that does nothing: every callback continues, and no callback calls the host. `make bench`
//! puts it in front of Envoy's own routing to measure the floor, what any proxy-wasm filter costs in Envoy (entering
//! the VM for each callback Berth's filter is entered for), apart from what Berth's filter does in them.
//!
//! Like Berth's filter, one module serves both kinds of filter and the plugin configuration picks which: `http`
//! makes HTTP contexts, `tcp` stream (network filter) contexts. `make bench` keeps only the exports in
//! `src/exports.txt`, the per-request and per-connection callbacks Berth's module exports.

use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType, PeerType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_context_id| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// The root context: remembers which kind of context the plugin configuration asked for.
#[derive(Default)]
struct Root {
    stream: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        // Envoy creates no filter for a plugin whose configuration is refused, so a typo fails loudly at startup.
        match self.get_plugin_configuration().as_deref() {
            Some(b"http") => self.stream = false,
            Some(b"tcp") => self.stream = true,
            _ => return false,
        }
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(if self.stream { ContextType::StreamContext } else { ContextType::HttpContext })
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Noop))
    }
}

/// A request's or a connection's context: the callbacks Berth's filter implements, doing nothing.
struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}

impl StreamContext for Noop {
    fn on_new_connection(&mut self) -> Action {
        Action::Continue
    }

    fn on_downstream_close(&mut self, _peer_type: PeerType) {}
}
