//! `make bench`: Berth measured against Envoy's own routing on this machine, with and without a no-op wasm filter
//! (the floor any proxy-wasm filter costs), side by side in one run, rotating the order so drift (other work on the
//! machine) falls on every side; Envoy's instructions per request on each side under callgrind; plus propagation,
//! churn, memory and a callgrind profile of the filter's per-request path. Writes BENCHMARKS.md and a plot.

pub mod callgrind;
pub mod check;
pub mod churn;
pub mod envoy_instructions;
pub mod fast_backend;
pub mod http;
pub mod keep_alive;
pub mod machine;
pub mod memory;
pub mod noop;
pub mod options;
pub mod plot;
pub mod profile;
pub mod propagation;
pub mod report;
pub mod routes;
pub mod sides;
pub mod stats;
pub mod tcp;
pub mod wrk;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use berth_tests::manifests::ManifestDir;
use berth_tests::{Controller, Envoy, envoy, wait};

use keep_alive::KeepAlive;
use options::Options;

/// Envoy's command line in benchmarks: production logging, and the worker count the options ask for.
pub fn envoy_options(workers: u32) -> Vec<String> {
    vec!["--concurrency".into(), workers.to_string(), "--log-level".into(), "warn".into()]
}

/// The controller on `manifests` and an Envoy running the filter, with `berth envoy-config` `args`.
pub struct BerthStack {
    pub envoy: Envoy,
    pub controller: Controller,
    /// Berth's rendered config with its LDS and CDS resources folded in as static ones: the base of the native one.
    pub rendered: String,
}

impl BerthStack {
    pub fn start(
        manifests: &ManifestDir,
        work: &Path,
        workers: u32,
        controller_args: &[String],
        args: &[String],
    ) -> anyhow::Result<BerthStack> {
        let controller_addr = free_addr();
        let controller = Controller::start_with(controller_addr, &manifests.path, work, controller_args);
        let (http, admin) = (free_addr(), free_addr());
        let config = envoy::render(controller.addr, http, admin, work, args);
        let rendered = serde_yaml::to_string(&envoy::static_equivalent(&config))?;
        let options = envoy_options(workers);
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        let envoy = Envoy::run("berth-envoy", &config, http, admin, work, &options);
        Ok(BerthStack { envoy, controller, rendered })
    }

    /// The usual start: a manifest directory in `work` with the cluster and `size` hosts of the route set `set`
    /// (see [`routes`]), the controller on it and Envoy, returned once the last host answers.
    pub fn with_hosts(
        work: &Path,
        options: &Options,
        backends: &[SocketAddr],
        set: &str,
        size: usize,
    ) -> anyhow::Result<(ManifestDir, BerthStack)> {
        let manifests = ManifestDir::new(&work.join("manifests"));
        routes::write_cluster(&manifests, backends);
        routes::write_hosts(&manifests, set, size, backends.len());
        let berth = BerthStack::start(&manifests, work, options.workers, &[], &[])?;
        if size > 0 {
            wait_routed(berth.envoy.http, &routes::host(set, size - 1), Duration::from_secs(120));
        }
        Ok((manifests, berth))
    }
}

pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], wait::free_port()))
}

/// Waits until `host` answers through `listener` from a backend (the route is live there).
pub fn wait_routed(listener: SocketAddr, host: &str, limit: Duration) {
    let mut client = KeepAlive::new(listener);
    wait::until(&format!("{host} to be routed by {listener}"), limit, || {
        client.get(host, "/").ok().filter(|r| r.status == 200 && r.header("x-backend").is_some())
    });
}

/// Resident memory of a process, in MiB, from `/proc/PID/status`.
pub fn rss_mib(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}
