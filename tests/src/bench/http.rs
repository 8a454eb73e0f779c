//! Comparison 1: HTTP requests/s and latency, Envoy with Berth's filter against the same Envoy routing the same
//! routes natively, at several route-table sizes, keep-alive, with wrk.

use std::time::Duration;

use berth_tests::Envoy;
use berth_tests::client;

use super::options::Options;
use super::routes::{self, host};
use super::stats::{median, ratio};
use super::wrk::{self, Load, Run};
use super::{BerthStack, envoy_options, free_addr, rss_mib, wait_routed};

/// Both sides' runs at one table size.
#[derive(Debug, Clone)]
pub struct HttpResult {
    pub hosts: usize,
    /// Saturating runs (`wrk_connections` connections): throughput, and latency under queueing.
    pub berth: Vec<Run>,
    pub native: Vec<Run>,
    /// One connection, one request at a time: latency is the time a request takes, not time spent queueing,
    /// so the difference between the sides is what the filter adds to a request.
    pub berth_latency: Vec<Run>,
    pub native_latency: Vec<Run>,
    pub berth_rss_mib: f64,
    pub native_rss_mib: f64,
}

/// The median over `runs` of `metric`.
fn median_of(runs: &[Run], metric: fn(&Run) -> f64) -> f64 {
    median(&runs.iter().map(metric).collect::<Vec<_>>())
}

impl HttpResult {
    /// `metric`'s medians over the saturating runs: Berth's, native's.
    pub fn saturated(&self, metric: fn(&Run) -> f64) -> (f64, f64) {
        (median_of(&self.berth, metric), median_of(&self.native, metric))
    }

    /// `metric`'s medians over the one-connection runs: Berth's, native's.
    pub fn one_connection(&self, metric: fn(&Run) -> f64) -> (f64, f64) {
        (median_of(&self.berth_latency, metric), median_of(&self.native_latency, metric))
    }

    /// Berth's throughput over the native one's, from the medians.
    pub fn throughput_ratio(&self) -> f64 {
        let (berth, native) = self.saturated(|run| run.requests_per_second);
        ratio(berth, native)
    }

    /// Berth's throughput over the native one's, round by round (each pair ran back to back), then the median.
    pub fn paired_ratio(&self) -> f64 {
        let ratios: Vec<f64> = self
            .berth
            .iter()
            .zip(&self.native)
            .map(|(b, n)| ratio(b.requests_per_second, n.requests_per_second))
            .collect();
        median(&ratios)
    }
}

pub fn run(options: &Options, backends: &[std::net::SocketAddr]) -> anyhow::Result<Vec<HttpResult>> {
    let mut results = Vec::new();
    for &size in &options.http_sizes {
        eprintln!("http: {size} hosts");
        results.push(compare(options, backends, size)?);
    }
    Ok(results)
}

fn compare(options: &Options, backends: &[std::net::SocketAddr], size: usize) -> anyhow::Result<HttpResult> {
    let work = tempfile::tempdir()?;
    let (_, berth) = BerthStack::with_hosts(work.path(), options, backends, "h", size)?;
    let last = host("h", size - 1);

    let table_json = client::get(berth.controller.addr, "controller", "/v1/table")?.body;
    let table = berth_table::decode(table_json.as_bytes())?;
    anyhow::ensure!(table.http.len() == size, "the table has {} routes, not {size}", table.http.len());
    let (http, admin) = (free_addr(), free_addr());
    let native_config = work.path().join("native.yaml");
    std::fs::write(&native_config, routes::native_bootstrap(&berth.rendered, &table, http, admin)?)?;
    let native_work = work.path().join("native");
    std::fs::create_dir_all(&native_work)?;
    let envoy_options = envoy_options(options.workers);
    let envoy_options: Vec<&str> = envoy_options.iter().map(String::as_str).collect();
    let native = Envoy::run("native-envoy", &native_config, http, admin, &native_work, &envoy_options);
    wait_routed(native.http, &last, Duration::from_secs(60));
    for side in [berth.envoy.http, native.http] {
        let miss = client::get(side, "nowhere.example", "/")?;
        anyhow::ensure!(miss.status == 404, "{side}: a host outside the table got {}", miss.status);
    }

    let hosts: Vec<String> = (0..size).map(|i| host("h", i)).collect();
    let (script, list) = wrk::prepare(work.path(), &hosts)?;
    let load = Load { threads: 1, connections: options.wrk_connections, seconds: options.seconds };
    let warmup = Load { seconds: 1, ..load.clone() };
    for side in [berth.envoy.http, native.http] {
        wrk::run(side, &warmup, &script, &list)?;
    }
    let single = Load { connections: 1, ..load.clone() };
    let (mut berth_runs, mut native_runs) = (Vec::new(), Vec::new());
    let (mut berth_latency, mut native_latency) = (Vec::new(), Vec::new());
    for round in 0..options.rounds {
        // A then B, then B then A: whatever else the machine does falls on both sides alike.
        let berth_first = round % 2 == 0;
        for berth_turn in [berth_first, !berth_first] {
            let target = if berth_turn { berth.envoy.http } else { native.http };
            let result = wrk::run(target, &load, &script, &list)?;
            eprintln!(
                "  round {round} {}: {:.0} req/s, p50 {} µs, p99 {} µs, {} errors",
                if berth_turn { "berth " } else { "native" },
                result.requests_per_second,
                result.p50_us,
                result.p99_us,
                result.errors
            );
            let latency = wrk::run(target, &single, &script, &list)?;
            eprintln!("    one connection: p50 {} µs, p99 {} µs", latency.p50_us, latency.p99_us);
            if berth_turn {
                berth_runs.push(result);
                berth_latency.push(latency);
            } else {
                native_runs.push(result);
                native_latency.push(latency);
            }
        }
    }
    Ok(HttpResult {
        hosts: size,
        berth: berth_runs,
        native: native_runs,
        berth_latency,
        native_latency,
        berth_rss_mib: rss_mib(berth.envoy.pid()),
        native_rss_mib: rss_mib(native.pid()),
    })
}
