//! Comparison 5: resident memory of the controller and of Envoy (with the filter) with an empty table and with a
//! large one, each on fresh processes once the table is live and every worker has routed a request.

use berth_tests::client;

use super::options::Options;
use super::routes::host;
use super::{BerthStack, rss_mib};

#[derive(Debug, Clone)]
pub struct MemoryResult {
    pub routes: usize,
    pub controller_mib: f64,
    pub envoy_mib: f64,
}

pub fn run(options: &Options, backends: &[std::net::SocketAddr]) -> anyhow::Result<Vec<MemoryResult>> {
    [0, options.memory_routes].iter().map(|&routes| measure(options, backends, routes)).collect()
}

fn measure(options: &Options, backends: &[std::net::SocketAddr], size: usize) -> anyhow::Result<MemoryResult> {
    let work = tempfile::tempdir()?;
    let (_, berth) = BerthStack::with_hosts(work.path(), options, backends, "h", size)?;
    // New connections spread over the workers, so each has loaded the table (or found none to load).
    for i in 0..50 {
        let answer = client::get(berth.envoy.http, &host("h", i % size.max(1)), "/")?;
        anyhow::ensure!(size == 0 || answer.status == 200, "{answer:?}");
    }
    let result = MemoryResult {
        routes: size,
        controller_mib: rss_mib(berth.controller.pid()),
        envoy_mib: rss_mib(berth.envoy.pid()),
    };
    eprintln!(
        "memory at {size} routes: controller {:.1} MiB, envoy {:.1} MiB",
        result.controller_mib, result.envoy_mib
    );
    Ok(result)
}
