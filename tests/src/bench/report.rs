//! BENCHMARKS.md: what ran, on what, the headline against the goals, then every raw number.

use std::fmt::Write;

use super::check::CheckResult;
use super::churn::ChurnResult;
use super::http::HttpResult;
use super::machine::Machine;
use super::memory::MemoryResult;
use super::options::Options;
use super::plot::Chart;
use super::profile::ProfileResult;
use super::propagation::PropagationResult;
use super::stats::median;
use super::tcp::TcpResult;
use super::wrk::Run;

#[derive(Debug, Default)]
pub struct Results {
    pub command: String,
    pub started: String,
    pub machine: Option<Machine>,
    pub http: Vec<HttpResult>,
    pub tcp: Option<TcpResult>,
    pub propagation: Vec<PropagationResult>,
    pub churn: Option<ChurnResult>,
    pub memory: Vec<MemoryResult>,
    pub check: Vec<CheckResult>,
    pub profile: Vec<ProfileResult>,
}

fn rps(run: &Run) -> f64 {
    run.requests_per_second
}
fn p50(run: &Run) -> f64 {
    run.p50_us
}
fn p99(run: &Run) -> f64 {
    run.p99_us
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

fn size(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) { format!("{},000", n / 1000) } else { n.to_string() }
}

pub fn markdown(results: &Results, options: &Options) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `make bench` (`{}`), started {}. Every comparison ran both sides in the same run, alternating \
         which goes first each round (A B, B A, ...); the tables give medians over the rounds and the raw numbers \
         follow.\n",
        results.command, results.started
    );
    let _ = writeln!(
        md,
        "**Caveat: a shared 2-core machine.** The load generator, the backends, the controller and Envoy share two \
         cores, and nothing isolates them from other work on the machine (Setup gives the load average at the start). Absolute numbers are noisy and low \
         (Envoy gets roughly one core); the alternation makes drift fall on both sides, so the *ratios* are the \
         meaningful part. The callgrind instruction counts are exact and repeatable.{}\n",
        if options.quick {
            " **This is a quick smoke run (`QUICK=1`): sizes and durations are too small to quote.**"
        } else {
            ""
        }
    );
    let _ = writeln!(md, "![Berth against native Envoy](BENCHMARKS.png)\n");
    if let Some(machine) = &results.machine {
        let _ = writeln!(md, "## Setup\n\n| | |\n| --- | --- |");
        let _ = writeln!(md, "| Berth | `{}` (commit {}) |", machine.berth, machine.commit);
        let _ = writeln!(md, "| Envoy | `{}` |", machine.envoy);
        let _ = writeln!(
            md,
            "| load generator | `{}` (Debian), 1 thread, {} keep-alive connections, {} s per run, {} rounds |",
            machine.wrk, options.wrk_connections, options.seconds, options.rounds
        );
        let _ = writeln!(
            md,
            "| machine | {}, {} cores, {}, Linux {}; load average at start: {} |",
            machine.cpu, machine.cores, machine.memory, machine.kernel, machine.load_average
        );
        let _ = writeln!(
            md,
            "| Envoy settings | both sides: `--concurrency {}`, `--log-level warn`, the same listener and connection-manager settings (`berth envoy-config`); the native side replaces the filter with a `route_config` generated from the very table the controller compiled (a virtual host per host, a static cluster per endpoint set) |",
            options.workers
        );
        let _ = writeln!(
            md,
            "| backends | loopback, in the benchmark process (tokio, one worker): fixed 200 answers, TCP echo |\n"
        );
    }

    headline(&mut md, results);
    http_section(&mut md, results);
    tcp_section(&mut md, results);
    propagation_section(&mut md, results);
    churn_section(&mut md, results);
    memory_section(&mut md, results);
    check_section(&mut md, results);
    profile_section(&mut md, results);
    let _ = writeln!(
        md,
        "## Reproduce\n\n```sh\nmake bench          # the full run: writes BENCHMARKS.md and BENCHMARKS.png here\nmake bench QUICK=1  # a smoke run in a couple of minutes, written to target/bench/\n```\n\nThe harness is `tests/src/bin/bench.rs` with its parts in `tests/src/bench/`; `berth-bench --only http,tcp` runs some sections only."
    );
    md
}

fn headline(md: &mut String, results: &Results) {
    let _ = writeln!(
        md,
        "## Headline\n\n| measure | Berth | native Envoy | ratio / value | goal | met |\n| --- | --- | --- | --- | --- | --- |"
    );
    for result in &results.http {
        let (b, n) = result.saturated(rps);
        let r = result.throughput_ratio();
        let _ = writeln!(
            md,
            "| HTTP req/s, {} hosts | {b:.0} | {n:.0} | {r:.3} | ≥ 0.95 | {} |",
            size(result.hosts),
            met(r >= 0.95)
        );
        let (b50, n50) = result.one_connection(p50);
        let _ = writeln!(
            md,
            "| HTTP p50 µs, one connection, {} hosts | {b50:.0} | {n50:.0} | {:+.0} µs | – | – |",
            size(result.hosts),
            b50 - n50
        );
        let (b99, n99) = result.one_connection(p99);
        let added = b99 - n99;
        let _ = writeln!(
            md,
            "| HTTP p99 µs, one connection, {} hosts | {b99:.0} | {n99:.0} | {added:+.0} µs | ≤ +50 µs | {} |",
            size(result.hosts),
            met(added <= 50.0)
        );
    }
    if let Some(tcp) = &results.tcp {
        let (b, n) = (median(&tcp.berth_connections_per_second), median(&tcp.native_connections_per_second));
        let _ = writeln!(
            md,
            "| TCP new connections/s | {b:.0} | {n:.0} | {:.3} | ≥ 0.95 | {} |",
            tcp.connection_ratio(),
            met(tcp.connection_ratio() >= 0.95)
        );
        let (b, n) = (median(&tcp.berth_mib_per_second), median(&tcp.native_mib_per_second));
        let _ = writeln!(
            md,
            "| TCP echo MiB/s | {b:.0} | {n:.0} | {:.3} | ≥ 0.95 | {} |",
            tcp.throughput_ratio(),
            met(tcp.throughput_ratio() >= 0.95)
        );
    }
    for result in &results.propagation {
        let goal = if result.routes <= 1000 { 100.0 } else { 1000.0 };
        let _ = writeln!(
            md,
            "| propagation p99, {} routes | {:.0} ms | – | p50 {:.0} ms | ≤ {goal:.0} ms | {} |",
            size(result.routes),
            result.p99(),
            result.p50(),
            met(result.p99() <= goal)
        );
    }
    if let Some(churn) = &results.churn {
        let _ = writeln!(
            md,
            "| failed requests on stable routes under churn | {} of {} | – | – | 0 | {} |",
            churn.failed,
            churn.requests,
            met(churn.failed == 0)
        );
    }
    if let [empty, full] = results.memory.as_slice() {
        let _ = writeln!(
            md,
            "| controller RSS, 0 → {} routes | {:.1} → {:.1} MiB | – | +{:.1} MiB | – | – |",
            size(full.routes),
            empty.controller_mib,
            full.controller_mib,
            full.controller_mib - empty.controller_mib
        );
        let _ = writeln!(
            md,
            "| Envoy RSS, 0 → {} routes | {:.1} → {:.1} MiB | – | +{:.1} MiB | – | – |",
            size(full.routes),
            empty.envoy_mib,
            full.envoy_mib,
            full.envoy_mib - empty.envoy_mib
        );
    }
    for profile in &results.profile {
        let _ = writeln!(
            md,
            "| filter instructions per request, {} routes (callgrind) | {:.0} | – | – | – | – |",
            size(profile.routes),
            profile.instructions_per_request
        );
    }
    let _ = writeln!(md);
}

fn http_section(md: &mut String, results: &Results) {
    if results.http.is_empty() {
        return;
    }
    let _ = writeln!(md, "## 1. HTTP: Berth's filter against Envoy's own routing\n");
    let _ = writeln!(
        md,
        "Each host has one route (`/`, Ingress `Prefix`) to one of two Services; wrk cycles through every host. \
         Throughput and the latencies next to it come from runs whose connections saturate Envoy (latency there is \
         mostly queueing); each is followed by a run on one connection, one request at a time, whose latency is the \
         time a request takes: the difference between the sides there is what the filter adds to a request.\n"
    );
    let _ = writeln!(
        md,
        "| hosts | Berth req/s | native req/s | ratio of medians | median of paired ratios | Berth p50 / p99 µs, saturated | native p50 / p99 µs, saturated | Berth p50 / p99 µs, one connection | native p50 / p99 µs, one connection | Envoy RSS Berth / native MiB |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for r in &results.http {
        let (throughput, sat50, sat99) = (r.saturated(rps), r.saturated(p50), r.saturated(p99));
        let (one50, one99) = (r.one_connection(p50), r.one_connection(p99));
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.3} | {:.3} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {:.1} / {:.1} |",
            size(r.hosts),
            throughput.0,
            throughput.1,
            r.throughput_ratio(),
            r.paired_ratio(),
            sat50.0,
            sat99.0,
            sat50.1,
            sat99.1,
            one50.0,
            one99.0,
            one50.1,
            one99.1,
            r.berth_rss_mib,
            r.native_rss_mib
        );
    }
    let _ = writeln!(md, "\nRaw runs (req/s, p50 µs, p99 µs, errors):\n");
    for r in &results.http {
        let line = |runs: &[Run]| {
            runs.iter()
                .map(|x| format!("{:.0}/{:.0}/{:.0}/{}", x.requests_per_second, x.p50_us, x.p99_us, x.errors))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(md, "- {} hosts — Berth: {}; native: {}", size(r.hosts), line(&r.berth), line(&r.native));
        let (berth, native) = (line(&r.berth_latency), line(&r.native_latency));
        let _ = writeln!(md, "- {} hosts, one connection — Berth: {berth}; native: {native}", size(r.hosts));
    }
    let _ = writeln!(md);
}

fn tcp_section(md: &mut String, results: &Results) {
    let Some(tcp) = &results.tcp else { return };
    let _ = writeln!(md, "## 2. TCP: Berth's network filter against plain `tcp_proxy`\n");
    let _ = writeln!(
        md,
        "New connections: 8 concurrent loops of connect, one byte there and back, close. Throughput: 4 connections each writing 64 KiB blocks to an echo backend while reading the echo.\n"
    );
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    let _ = writeln!(
        md,
        "| measure | Berth median | native median | ratio | Berth runs | native runs |\n| --- | --- | --- | --- | --- | --- |"
    );
    let _ = writeln!(
        md,
        "| connections/s | {:.0} | {:.0} | {:.3} | {} | {} |",
        median(&tcp.berth_connections_per_second),
        median(&tcp.native_connections_per_second),
        tcp.connection_ratio(),
        list(&tcp.berth_connections_per_second),
        list(&tcp.native_connections_per_second)
    );
    let _ = writeln!(
        md,
        "| echo MiB/s | {:.0} | {:.0} | {:.3} | {} | {} |\n",
        median(&tcp.berth_mib_per_second),
        median(&tcp.native_mib_per_second),
        tcp.throughput_ratio(),
        list(&tcp.berth_mib_per_second),
        list(&tcp.native_mib_per_second)
    );
}

fn propagation_section(md: &mut String, results: &Results) {
    if results.propagation.is_empty() {
        return;
    }
    let _ = writeln!(md, "## 3. Propagation: manifest change to a new route answering through Envoy\n");
    let _ = writeln!(
        md,
        "A new Ingress file is written atomically into the watched directory; the clock stops when its host answers from the backend through Envoy (polled every millisecond). The directory source waits for 20 ms of quiet, then reads the files the change names (the routes are Ingresses in files of 1,000 documents) and compiles the whole table. *Controller* is the part until the controller serves the new table to a long poll like Envoy's; the rest is Envoy fetching, decoding and loading it.\n"
    );
    let _ = writeln!(
        md,
        "| routes | changes | p50 ms | p99 ms | max ms | controller p50 ms |\n| --- | --- | --- | --- | --- | --- |"
    );
    for r in &results.propagation {
        let max = r.samples_ms.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {max:.0} | {:.0} |",
            size(r.routes),
            r.samples_ms.len(),
            r.p50(),
            r.p99(),
            r.controller_p50()
        );
    }
    let _ = writeln!(md);
    for r in &results.propagation {
        let samples = r.samples_ms.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" ");
        let _ = writeln!(md, "- {} routes, ms in order: {samples}", size(r.routes));
    }
    let _ = writeln!(md);
}

fn churn_section(md: &mut String, results: &Results) {
    let Some(churn) = &results.churn else { return };
    let _ = writeln!(md, "## 4. Churn: stable routes under load while others come and go\n");
    let _ = writeln!(
        md,
        "{} stable routes loaded by 4 keep-alive clients (each answer must come from the right backend) for {:.0} s while {} other routes were added and removed in files of {} ({} file changes, one every 100 ms). **{} failed of {} requests.**\n",
        churn.stable_routes,
        churn.seconds,
        churn.churned_routes,
        churn.per_file,
        churn.changes,
        churn.failed,
        churn.requests
    );
    for example in &churn.examples {
        let _ = writeln!(md, "- failure: `{example}`");
    }
    let _ = writeln!(md);
}

fn memory_section(md: &mut String, results: &Results) {
    if results.memory.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## 5. Memory\n\nResident set size of fresh processes once the table is live and every worker has routed.\n\n| routes | controller MiB | Envoy (with the filter) MiB |\n| --- | --- | --- |"
    );
    for m in &results.memory {
        let _ = writeln!(md, "| {} | {:.1} | {:.1} |", size(m.routes), m.controller_mib, m.envoy_mib);
    }
    let _ =
        writeln!(md, "\nThe HTTP comparison above also lists each Envoy's RSS after its runs, native next to Berth.\n");
}

fn check_section(md: &mut String, results: &Results) {
    if results.check.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Compile time: `berth check` (hyperfine)\n\nReading and compiling a whole directory, the work the controller redoes on every change.\n\n| routes | mean ms | ± ms | runs |\n| --- | --- | --- | --- |"
    );
    for c in &results.check {
        let _ = writeln!(md, "| {} | {:.1} | {:.1} | {} |", size(c.routes), c.mean_ms, c.stddev_ms, c.runs);
    }
    let _ = writeln!(md);
}

fn profile_section(md: &mut String, results: &Results) {
    if results.profile.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Profile: the filter's per-request path (callgrind)\n");
    let _ = writeln!(
        md,
        "The filter crate's `on_request_headers`, built natively and driven by a host that returns what Envoy would (`:authority` with a port, `:path`), cycling through every host of the table. Only the request loop is counted (`--toggle-collect`). Host calls are counted too: in Envoy each crosses the wasm boundary and costs more than the instructions here (the response adds one more, `response.flags`).\n"
    );
    let _ = writeln!(
        md,
        "| routes | requests | instructions per request | host calls per request |\n| --- | --- | --- | --- |"
    );
    for p in &results.profile {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} |",
            size(p.routes),
            p.requests,
            p.instructions_per_request,
            p.host_calls_per_request
        );
    }
    if let Some(largest) = results.profile.last() {
        let _ =
            writeln!(md, "\nHeaviest functions by their own instructions at {} routes:\n\n```", size(largest.routes));
        for line in &largest.top_functions {
            let _ = writeln!(md, "{line}");
        }
        let _ = writeln!(md, "```\n");
    }
}

/// The plot: throughput, p99, Berth as a share of native, propagation.
pub fn charts(results: &Results) -> Vec<Chart<'static>> {
    let mut charts = Vec::new();
    if !results.http.is_empty() {
        let sides = |title, medians: fn(&HttpResult) -> (f64, f64)| Chart {
            title,
            series: &["Berth filter", "native route_config"],
            groups: results
                .http
                .iter()
                .map(|r| {
                    let (berth, native) = medians(r);
                    (format!("{} hosts", size(r.hosts)), vec![berth, native])
                })
                .collect(),
            goal: None,
        };
        charts.push(sides("HTTP requests/s (median)", |r| r.saturated(rps)));
        charts.push(sides("HTTP p99 latency, one connection, µs", |r| r.one_connection(p99)));
    }
    let mut shares: Vec<(String, Vec<f64>)> =
        results.http.iter().map(|r| (format!("HTTP {}", size(r.hosts)), vec![r.throughput_ratio()])).collect();
    if let Some(tcp) = &results.tcp {
        shares.push(("TCP conn/s".into(), vec![tcp.connection_ratio()]));
        shares.push(("TCP MiB/s".into(), vec![tcp.throughput_ratio()]));
    }
    if !shares.is_empty() {
        charts.push(Chart {
            title: "Berth / native",
            series: &["ratio"],
            groups: shares,
            goal: Some((0.95, "goal 0.95")),
        });
    }
    if !results.propagation.is_empty() {
        charts.push(Chart {
            title: "Propagation, manifest → answering (ms)",
            series: &["p50", "p99"],
            groups: results
                .propagation
                .iter()
                .map(|r| (format!("{} routes", size(r.routes)), vec![r.p50(), r.p99()]))
                .collect(),
            goal: None,
        });
    }
    charts
}
