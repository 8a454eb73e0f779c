//! Renders the Envoy bootstrap that runs Berth's filter in stock Envoy. (Being written.)

use std::net::SocketAddr;
use std::path::PathBuf;

/// What `berth envoy-config` needs to know.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    /// Where `berth run --listen` serves the table.
    pub controller: SocketAddr,
    /// Path of `berth_filter.wasm`.
    pub wasm: PathBuf,
    /// The HTTP listener that clients connect to.
    pub http_listen: SocketAddr,
    /// Envoy's admin interface.
    pub admin: SocketAddr,
}

/// The bootstrap as YAML, ready for `envoy -c`.
pub fn render(_config: &EnvoyConfig) -> String {
    String::new()
}
