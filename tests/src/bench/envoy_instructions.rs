//! Envoy's instructions per request (and per TCP connection) on each side, counted by callgrind: exact and
//! repeatable where throughput on this machine is not. Each side's Envoy runs alone under callgrind; after a warm-up
//! (V8 compiles the hot wasm functions on the way), the counts are zeroed, a fixed-length load runs, the counts are
//! dumped, and their total over the requests completed is the cost of one. The total is the whole process's: the
//! worker and main threads, Envoy's timers and Berth's table watch, spread over the requests.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::BerthStack;
use super::callgrind;
use super::http::HttpSides;
use super::options::Options;
use super::routes::host;
use super::sides::{PerSide, Side, SideConfig};
use super::tcp::{self, TcpSides};
use super::wait_routed;
use super::wrk::{self, Load};

/// Concurrent connections of the load: Envoy under callgrind runs some fifty times slower, and more would only queue.
const CONNECTIONS: u32 = 4;

/// How long a side may take to route once Envoy is ready: the first requests run V8's first compilation under
/// callgrind.
const ROUTED_WITHIN: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct InstructionsResult {
    /// What one unit is: "request, 10 hosts", "TCP connection".
    pub unit: String,
    /// Units completed in the counted run.
    pub units: PerSide<u64>,
    pub per_unit: PerSide<f64>,
}

impl InstructionsResult {
    /// `a`'s instructions per unit minus `b`'s.
    pub fn difference(&self, (a, b): (Side, Side)) -> f64 {
        self.per_unit.get(a) - self.per_unit.get(b)
    }
}

pub fn run(options: &Options, backends: &[SocketAddr], echo: SocketAddr) -> anyhow::Result<Vec<InstructionsResult>> {
    Ok(vec![http(options, backends, options.instructions_hosts)?, tcp(options, echo)?])
}

fn http(options: &Options, backends: &[SocketAddr], size: usize) -> anyhow::Result<InstructionsResult> {
    eprintln!("instructions: HTTP, {size} hosts");
    let work = tempfile::tempdir()?;
    let HttpSides { manifests: _manifests, berth, noop, native } =
        HttpSides::start(work.path(), options, backends, size)?;
    let BerthStack { envoy, controller: _controller, .. } = berth;
    // Berth's Envoy makes way for one under callgrind on the same bootstrap and addresses.
    let configs = PerSide { berth: SideConfig::of(&envoy, envoy.http), noop, native };
    drop(envoy);
    let hosts: Vec<String> = (0..size).map(|i| host("h", i)).collect();
    let (script, list) = wrk::prepare(work.path(), &hosts)?;
    let last = host("h", size - 1);
    let ready = |listener| wait_routed(listener, &last, ROUTED_WITHIN);
    let load = |listener, seconds| {
        let load = Load { threads: 1, connections: CONNECTIONS, seconds };
        let run = wrk::run(listener, &load, &script, &list)?;
        anyhow::ensure!(run.errors == 0, "{listener}: {} of {} requests failed", run.errors, run.requests);
        Ok(run.requests)
    };
    measure(&format!("request, {size} hosts"), &configs, work.path(), options, &ready, &load)
}

fn tcp(options: &Options, echo: SocketAddr) -> anyhow::Result<InstructionsResult> {
    eprintln!("instructions: TCP");
    let work = tempfile::tempdir()?;
    let TcpSides { manifests: _manifests, berth, berth_listener, noop, native } =
        TcpSides::start(work.path(), options.workers, echo)?;
    let BerthStack { envoy, controller: _controller, .. } = berth;
    let configs = PerSide { berth: SideConfig::of(&envoy, berth_listener), noop, native };
    drop(envoy);
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let ready = |listener| tcp::wait_echoes(&client, listener, ROUTED_WITHIN);
    let load = |listener, seconds| {
        let duration = Duration::from_secs(u64::from(seconds));
        Ok(client.block_on(tcp::connections(listener, CONNECTIONS as usize, duration)))
    };
    measure("TCP connection", &configs, work.path(), options, &ready, &load)
}

/// Each side under callgrind in turn: `ready(listener)` waits until it routes, `load(listener, seconds)` loads it for
/// that long and returns the units it completed.
fn measure(
    unit: &str,
    configs: &PerSide<SideConfig>,
    work: &Path,
    options: &Options,
    ready: &dyn Fn(SocketAddr),
    load: &dyn Fn(SocketAddr, u32) -> anyhow::Result<u64>,
) -> anyhow::Result<InstructionsResult> {
    let mut result =
        InstructionsResult { unit: unit.to_string(), units: PerSide::default(), per_unit: PerSide::default() };
    for side in Side::ALL {
        let config = configs.get(side);
        let name = format!("callgrind-{}", side.name().replace(' ', "-"));
        let out = work.join(format!("{name}.out"));
        let envoy = config.start(&name, work, options.workers, Some(&callgrind::envoy_wrapper(&out)));
        let pid = envoy.pid().ok_or_else(|| anyhow::anyhow!("{name}: no process"))?;
        ready(config.listener);
        load(config.listener, options.instructions_warmup)?;
        callgrind::zero(pid)?;
        let units = load(config.listener, options.instructions_seconds)?;
        let total = callgrind::dump(pid, &out)?;
        anyhow::ensure!(units > 0, "{name}: nothing completed under callgrind");
        *result.units.get_mut(side) = units;
        *result.per_unit.get_mut(side) = total / units as f64;
        eprintln!("  {:<10}: {:.0} instructions per {unit} ({units} counted)", side.name(), total / units as f64);
    }
    Ok(result)
}
