//! Comparison 1: HTTP requests/s and latency at several route-table sizes, keep-alive, with wrk: Envoy with Berth's
//! filter, the same Envoy routing the same routes natively with the no-op wasm filter in front (the floor), and
//! natively alone (see [`super::sides`]).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use berth_tests::client;
use berth_tests::manifests::ManifestDir;

use super::noop::{self, Layer};
use super::options::Options;
use super::routes::{self, host};
use super::sides::{PerSide, Side, SideConfig};
use super::stats::{median, paired_ratio, ratio};
use super::wrk::{self, Load, Run};
use super::{BerthStack, free_addr, rss_mib, wait_routed};

/// One side's runs at one table size.
#[derive(Debug, Clone, Default)]
pub struct SideRuns {
    /// Saturating runs (`wrk_connections` connections): throughput, and latency under queueing.
    pub saturated: Vec<Run>,
    /// One connection, one request at a time: latency is the time a request takes, not time spent queueing,
    /// so the difference between two sides is what one adds to a request over the other.
    pub one_connection: Vec<Run>,
    pub rss_mib: f64,
}

/// Every side's runs at one table size; run `i` of each side ran in round `i`.
#[derive(Debug, Clone)]
pub struct HttpResult {
    pub hosts: usize,
    pub sides: PerSide<SideRuns>,
}

/// The median over `runs` of `metric`.
fn median_of(runs: &[Run], metric: fn(&Run) -> f64) -> f64 {
    median(&runs.iter().map(metric).collect::<Vec<_>>())
}

fn requests_per_second(run: &Run) -> f64 {
    run.requests_per_second
}

impl HttpResult {
    /// `metric`'s median over `side`'s saturating runs.
    pub fn saturated(&self, side: Side, metric: fn(&Run) -> f64) -> f64 {
        median_of(&self.sides.get(side).saturated, metric)
    }

    /// `metric`'s median over `side`'s one-connection runs.
    pub fn one_connection(&self, side: Side, metric: fn(&Run) -> f64) -> f64 {
        median_of(&self.sides.get(side).one_connection, metric)
    }

    /// `a`'s throughput over `b`'s, from the medians.
    pub fn throughput_ratio(&self, (a, b): (Side, Side)) -> f64 {
        ratio(self.saturated(a, requests_per_second), self.saturated(b, requests_per_second))
    }

    /// `a`'s throughput over `b`'s, round by round (the sides of a round ran back to back), then the median.
    pub fn paired_ratio(&self, (a, b): (Side, Side)) -> f64 {
        let throughput =
            |side: Side| -> Vec<f64> { self.sides.get(side).saturated.iter().map(requests_per_second).collect() };
        paired_ratio(&throughput(a), &throughput(b))
    }
}

/// Berth's stack routing `size` hosts, and the bootstraps of the other two sides, built from its rendered bootstrap
/// and the table its controller compiled.
pub struct HttpSides {
    pub manifests: ManifestDir,
    pub berth: BerthStack,
    pub noop: SideConfig,
    pub native: SideConfig,
}

impl HttpSides {
    pub fn start(work: &Path, options: &Options, backends: &[SocketAddr], size: usize) -> anyhow::Result<HttpSides> {
        let (manifests, berth) = BerthStack::with_hosts(work, options, backends, "h", size)?;
        let table_json = client::get(berth.controller.addr, "controller", "/v1/table")?.body;
        let table = berth_table::decode(table_json.as_bytes())?;
        anyhow::ensure!(table.http.len() == size, "the table has {} routes, not {size}", table.http.len());
        let side = |name: &str, yaml: &dyn Fn(SocketAddr, SocketAddr) -> anyhow::Result<String>| {
            let (listener, admin) = (free_addr(), free_addr());
            let bootstrap = work.join(format!("{name}.yaml"));
            std::fs::write(&bootstrap, yaml(listener, admin)?)?;
            anyhow::Ok(SideConfig { bootstrap, listener, admin })
        };
        let native_yaml = |listener, admin| routes::native_bootstrap(&berth.rendered, &table, listener, admin);
        let native = side("native", &native_yaml)?;
        let noop_yaml = |listener, admin| {
            let wasm = berth_tests::paths::noop_wasm();
            noop::with_noop_filter(&native_yaml(listener, admin)?, &berth.rendered, Layer::Http, &wasm)
        };
        let noop = side("noop", &noop_yaml)?;
        Ok(HttpSides { manifests, berth, noop, native })
    }
}

pub fn run(options: &Options, backends: &[SocketAddr]) -> anyhow::Result<Vec<HttpResult>> {
    let mut results = Vec::new();
    for &size in &options.http_sizes {
        eprintln!("http: {size} hosts");
        results.push(compare(options, backends, size)?);
    }
    Ok(results)
}

fn compare(options: &Options, backends: &[SocketAddr], size: usize) -> anyhow::Result<HttpResult> {
    let work = tempfile::tempdir()?;
    let sides = HttpSides::start(work.path(), options, backends, size)?;
    let noop = sides.noop.start("noop-envoy", work.path(), options.workers, None);
    let native = sides.native.start("native-envoy", work.path(), options.workers, None);
    let envoys = PerSide { berth: &sides.berth.envoy, noop: &noop, native: &native };
    let last = host("h", size - 1);
    for side in Side::ALL {
        let listener = envoys.get(side).http;
        wait_routed(listener, &last, Duration::from_secs(60));
        let miss = client::get(listener, "nowhere.example", "/")?;
        anyhow::ensure!(miss.status == 404, "{}: a host outside the table got {}", side.name(), miss.status);
    }

    let hosts: Vec<String> = (0..size).map(|i| host("h", i)).collect();
    let (script, list) = wrk::prepare(work.path(), &hosts)?;
    let load = Load { threads: 1, connections: options.wrk_connections, seconds: options.seconds };
    let warmup = Load { seconds: 1, ..load.clone() };
    for side in Side::ALL {
        wrk::run(envoys.get(side).http, &warmup, &script, &list)?;
    }
    let single = Load { connections: 1, ..load.clone() };
    let mut runs: PerSide<SideRuns> = PerSide::default();
    for round in 0..options.rounds {
        for side in Side::order(round) {
            let target = envoys.get(side).http;
            let result = wrk::run(target, &load, &script, &list)?;
            eprintln!(
                "  round {round} {:<10}: {:.0} req/s, p50 {} µs, p99 {} µs, {} errors",
                side.name(),
                result.requests_per_second,
                result.p50_us,
                result.p99_us,
                result.errors
            );
            let latency = wrk::run(target, &single, &script, &list)?;
            eprintln!("    one connection: p50 {} µs, p99 {} µs", latency.p50_us, latency.p99_us);
            runs.get_mut(side).saturated.push(result);
            runs.get_mut(side).one_connection.push(latency);
        }
    }
    for side in Side::ALL {
        runs.get_mut(side).rss_mib = rss_mib(envoys.get(side).pid());
    }
    Ok(HttpResult { hosts: size, sides: runs })
}
