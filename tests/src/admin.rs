//! Reading Envoy's admin interface: counters are the readiness signals for what happens inside Envoy.

use std::net::SocketAddr;

use crate::client;

/// The value of one stat (e.g. `cluster.berth_controller.upstream_cx_connect_fail`), 0 when absent.
pub fn stat(admin: SocketAddr, name: &str) -> u64 {
    let Ok(response) = client::get(admin, "admin", &format!("/stats?filter=^{}$", name.replace('.', "\\."))) else {
        return 0;
    };
    response.body.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(": ")?.trim().parse().ok()).unwrap_or(0)
}
