//! BENCHMARKS.md: what ran, on what, the headline against the goals, then every raw number.

use std::fmt::Write;

use super::check::CheckResult;
use super::churn::ChurnResult;
use super::envoy_instructions::InstructionsResult;
use super::http::HttpResult;
use super::machine::Machine;
use super::memory::MemoryResult;
use super::options::Options;
use super::plot::Chart;
use super::profile::ProfileResult;
use super::propagation::PropagationResult;
use super::sides::{BERTH_NATIVE, BERTH_OWN, FLOOR, PAIRS, PerSide, Side, pair_name};
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
    pub instructions: Vec<InstructionsResult>,
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
        "Written by `make bench` (`{}`), started {}. Every comparison ran its three sides in the same run, rotating \
         which goes first each round (A B C, B C A, C A B, ...); the tables give medians over the rounds and the raw \
         numbers follow.\n",
        results.command, results.started
    );
    let _ = writeln!(
        md,
        "**Three sides.** *Berth*: Envoy with Berth's filter. *native*: the same Envoy routing the same routes by \
         itself (a `route_config`, or plain `tcp_proxy`). *no-op wasm*: native with a proxy-wasm filter in front that \
         does nothing (`tools/noop-filter`: every callback continues, no call into Envoy), entered for the same \
         callbacks as Berth's filter, with the same runtime and settings, in a VM of its own. **The no-op against \
         native is the floor**: what any proxy-wasm filter costs in this Envoy before it does any work, which no \
         proxy-wasm filter can go below. Berth against the no-op is what Berth's own work adds on top of it.\n"
    );
    let _ = writeln!(
        md,
        "**Caveat: a shared 2-core machine.** The load generator, the backends, the controller and Envoy share two \
         cores, and nothing isolates them from other work on the machine (Setup gives the load average at the start). Absolute numbers are noisy and low \
         (Envoy gets roughly one core); the rotation makes drift fall on every side, so the *ratios* are the \
         meaningful part. The callgrind instruction counts are exact.{}\n",
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
            "| Envoy settings | every side: `--concurrency {}`, `--log-level warn`, the same listener and connection-manager settings (`berth envoy-config`); the native side replaces the filter with a `route_config` generated from the very table the controller compiled (a virtual host per host, a static cluster per endpoint set); the no-op wasm side is the native one with the no-op filter first |",
            options.workers
        );
        let _ = writeln!(
            md,
            "| backends | loopback, in the benchmark process (tokio, one worker): fixed 200 answers, TCP echo |\n"
        );
    }

    headline(&mut md, results);
    floor_summary(&mut md, results);
    http_section(&mut md, results);
    tcp_section(&mut md, results);
    instructions_section(&mut md, results, options);
    propagation_section(&mut md, results);
    churn_section(&mut md, results);
    memory_section(&mut md, results);
    check_section(&mut md, results);
    profile_section(&mut md, results);
    let _ = writeln!(
        md,
        "## Reproduce\n\n```sh\nmake bench          # the full run: writes BENCHMARKS.md and BENCHMARKS.png here\nmake bench QUICK=1  # a smoke run in about ten minutes, written to target/bench/\n```\n\nThe harness is `tests/src/bin/bench.rs` with its parts in `tests/src/bench/`; `berth-bench --only http,tcp,instructions` runs some sections only."
    );
    md
}

/// The three sides' values of a measure, as headline cells.
fn cells(values: &PerSide<f64>, format: fn(f64) -> String) -> String {
    Side::ALL.iter().map(|side| format(*values.get(*side))).collect::<Vec<_>>().join(" | ")
}

fn whole(value: f64) -> String {
    format!("{value:.0}")
}

/// A headline row without per-side values.
const NO_SIDES: &str = "– | – | –";

/// The headline rows under a measure's: the floor (no-op against native) and Berth's own part (Berth against the
/// no-op), from `ratio` of a pair.
fn floor_rows(md: &mut String, measure: &str, ratio: impl Fn((Side, Side)) -> f64) {
    for pair in [FLOOR, BERTH_OWN] {
        let _ = writeln!(md, "| {measure}: {} | {NO_SIDES} | {:.3} | – | – |", pair_name(pair), ratio(pair));
    }
}

fn headline(md: &mut String, results: &Results) {
    let _ = writeln!(
        md,
        "## Headline\n\n| measure | Berth | no-op wasm | native Envoy | ratio / value | goal | met |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    for result in &results.http {
        let hosts = size(result.hosts);
        let throughput = PerSide::from_fn(|side| result.saturated(side, rps));
        let r = result.throughput_ratio(BERTH_NATIVE);
        let _ = writeln!(
            md,
            "| HTTP req/s, {hosts} hosts | {} | {r:.3} | ≥ 0.95 | {} |",
            cells(&throughput, whole),
            met(r >= 0.95)
        );
        floor_rows(md, &format!("HTTP req/s, {hosts} hosts"), |pair| result.throughput_ratio(pair));
        let one = |metric: fn(&Run) -> f64| PerSide::from_fn(|side| result.one_connection(side, metric));
        let p50s = one(p50);
        let _ = writeln!(
            md,
            "| HTTP p50 µs, one connection, {hosts} hosts | {} | {:+.0} µs (no-op wasm {:+.0} µs) | – | – |",
            cells(&p50s, whole),
            p50s.berth - p50s.native,
            p50s.noop - p50s.native
        );
        let p99s = one(p99);
        let added = p99s.berth - p99s.native;
        let _ = writeln!(
            md,
            "| HTTP p99 µs, one connection, {hosts} hosts | {} | {added:+.0} µs (no-op wasm {:+.0} µs) | ≤ +50 µs | {} |",
            cells(&p99s, whole),
            p99s.noop - p99s.native,
            met(added <= 50.0)
        );
    }
    if let Some(tcp) = &results.tcp {
        let medians = |values: &PerSide<Vec<f64>>| PerSide::from_fn(|side| median(values.get(side)));
        let r = tcp.connection_ratio(BERTH_NATIVE);
        let _ = writeln!(
            md,
            "| TCP new connections/s | {} | {r:.3} | ≥ 0.95 | {} |",
            cells(&medians(&tcp.connections_per_second), whole),
            met(r >= 0.95)
        );
        floor_rows(md, "TCP new connections/s", |pair| tcp.connection_ratio(pair));
        let r = tcp.throughput_ratio(BERTH_NATIVE);
        let _ = writeln!(
            md,
            "| TCP echo MiB/s | {} | {r:.3} | ≥ 0.95 | {} |",
            cells(&medians(&tcp.mib_per_second), whole),
            met(r >= 0.95)
        );
    }
    for result in &results.instructions {
        let _ = writeln!(
            md,
            "| Envoy instructions per {} (callgrind) | {} | floor {:+.0}, Berth's own {:+.0} | – | – |",
            result.unit,
            cells(&result.per_unit, whole),
            result.difference(FLOOR),
            result.difference(BERTH_OWN)
        );
    }
    for result in &results.propagation {
        let goal = if result.routes <= 1000 { 100.0 } else { 1000.0 };
        let _ = writeln!(
            md,
            "| propagation p99, {} routes | {:.0} ms | – | – | p50 {:.0} ms | ≤ {goal:.0} ms | {} |",
            size(result.routes),
            result.p99(),
            result.p50(),
            met(result.p99() <= goal)
        );
    }
    if let Some(churn) = &results.churn {
        let _ = writeln!(
            md,
            "| failed requests on stable routes under churn | {} of {} | – | – | – | 0 | {} |",
            churn.failed,
            churn.requests,
            met(churn.failed == 0)
        );
    }
    if let [empty, full] = results.memory.as_slice() {
        let _ = writeln!(
            md,
            "| controller RSS, 0 → {} routes | {:.1} → {:.1} MiB | – | – | +{:.1} MiB | – | – |",
            size(full.routes),
            empty.controller_mib,
            full.controller_mib,
            full.controller_mib - empty.controller_mib
        );
        let _ = writeln!(
            md,
            "| Envoy RSS, 0 → {} routes | {:.1} → {:.1} MiB | – | – | +{:.1} MiB | – | – |",
            size(full.routes),
            empty.envoy_mib,
            full.envoy_mib,
            full.envoy_mib - empty.envoy_mib
        );
    }
    for profile in &results.profile {
        let _ = writeln!(
            md,
            "| filter instructions per request, {} routes (callgrind) | {:.0} | – | – | – | – | – |",
            size(profile.routes),
            profile.instructions_per_request
        );
    }
    let _ = writeln!(md);
}

/// The floor in words, from the smallest HTTP table and the instruction counts: how much of the gap to native any
/// proxy-wasm filter already costs, and how much is Berth's own.
fn floor_summary(md: &mut String, results: &Results) {
    let mut sentences = Vec::new();
    if let Some(http) = results.http.first() {
        sentences.push(format!(
            "At {} hosts, a filter that does nothing already brings Envoy to {:.2} of its native requests/s; Berth \
             reaches {:.2} of native, which is {:.2} of the no-op filter's.",
            size(http.hosts),
            http.throughput_ratio(FLOOR),
            http.throughput_ratio(BERTH_NATIVE),
            http.throughput_ratio(BERTH_OWN)
        ));
    }
    if let Some(tcp) = &results.tcp {
        sentences.push(format!(
            "For new TCP connections the no-op filter reaches {:.2} of native and Berth {:.2}.",
            tcp.connection_ratio(FLOOR),
            tcp.connection_ratio(BERTH_NATIVE)
        ));
    }
    for counts in &results.instructions {
        let native = counts.per_unit.native;
        let share = |extra: f64| if native > 0.0 { 100.0 * extra / native } else { 0.0 };
        let (floor, own) = (counts.difference(FLOOR), counts.difference(BERTH_OWN));
        sentences.push(format!(
            "Per {}, native Envoy executes {native:.0} instructions; a filter that does nothing adds {floor:.0} \
             ({:.0} % of native): that is the floor. Berth's own work adds {own:.0} more ({:.0} % of native).",
            counts.unit,
            share(floor),
            share(own)
        ));
    }
    if !sentences.is_empty() {
        let _ = writeln!(md, "**The floor.** {}\n", sentences.join(" "));
    }
}

/// `a / b` from the medians, and the median of the per-round ratios.
fn ratio_cell(of_medians: f64, paired: f64) -> String {
    format!("{of_medians:.3} (paired {paired:.3})")
}

fn http_section(md: &mut String, results: &Results) {
    if results.http.is_empty() {
        return;
    }
    let _ = writeln!(md, "## 1. HTTP: Berth's filter, the no-op wasm floor and Envoy's own routing\n");
    let _ = writeln!(
        md,
        "Each host has one route (`/`, Ingress `Prefix`) to one of two Services; wrk cycles through every host. \
         Throughput and the latencies next to it come from runs whose connections saturate Envoy (latency there is \
         mostly queueing); each is followed by a run on one connection, one request at a time, whose latency is the \
         time a request takes: the difference between two sides there is what one adds to a request. Ratios are of \
         the medians, with the median of the per-round ratios (the sides of a round ran back to back) in brackets.\n"
    );
    let mut header = "| hosts | Berth req/s | no-op wasm req/s | native req/s |".to_string();
    for pair in PAIRS {
        let _ = write!(header, " {} |", pair_name(pair));
    }
    let _ = writeln!(md, "{header}\n| --- | --- | --- | --- | --- | --- | --- |");
    for r in &results.http {
        let ratios: Vec<String> =
            PAIRS.iter().map(|pair| ratio_cell(r.throughput_ratio(*pair), r.paired_ratio(*pair))).collect();
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.0} | {} |",
            size(r.hosts),
            r.saturated(Side::Berth, rps),
            r.saturated(Side::Noop, rps),
            r.saturated(Side::Native, rps),
            ratios.join(" | ")
        );
    }
    let _ = writeln!(
        md,
        "\n| hosts | side | p50 / p99 µs, saturated | p50 / p99 µs, one connection | Envoy RSS MiB |\n| --- | --- | --- | --- | --- |"
    );
    for r in &results.http {
        for side in Side::ALL {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} / {:.0} | {:.0} / {:.0} | {:.1} |",
                size(r.hosts),
                side.name(),
                r.saturated(side, p50),
                r.saturated(side, p99),
                r.one_connection(side, p50),
                r.one_connection(side, p99),
                r.sides.get(side).rss_mib
            );
        }
    }
    let _ = writeln!(md, "\nRaw runs in round order (req/s, p50 µs, p99 µs, errors):\n");
    let line = |runs: &[Run]| {
        runs.iter()
            .map(|x| format!("{:.0}/{:.0}/{:.0}/{}", x.requests_per_second, x.p50_us, x.p99_us, x.errors))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for r in &results.http {
        for side in Side::ALL {
            let runs = r.sides.get(side);
            let _ = writeln!(md, "- {} hosts, {} — saturated: {}", size(r.hosts), side.name(), line(&runs.saturated));
            let _ = writeln!(md, "  one connection: {}", line(&runs.one_connection));
        }
    }
    let _ = writeln!(md);
}

fn tcp_section(md: &mut String, results: &Results) {
    let Some(tcp) = &results.tcp else { return };
    let _ = writeln!(md, "## 2. TCP: Berth's network filter, the no-op wasm floor and plain `tcp_proxy`\n");
    let _ = writeln!(
        md,
        "New connections: 8 concurrent loops of connect, one byte there and back, close. Throughput: 4 connections each writing 64 KiB blocks to an echo backend while reading the echo. Ratios as in section 1.\n"
    );
    let mut header = "| measure | Berth | no-op wasm | native |".to_string();
    for pair in PAIRS {
        let _ = write!(header, " {} |", pair_name(pair));
    }
    let _ = writeln!(md, "{header}\n| --- | --- | --- | --- | --- | --- | --- |");
    let connections: Vec<String> =
        PAIRS.iter().map(|pair| ratio_cell(tcp.connection_ratio(*pair), tcp.paired_connection_ratio(*pair))).collect();
    let throughput: Vec<String> = PAIRS.iter().map(|pair| format!("{:.3}", tcp.throughput_ratio(*pair))).collect();
    for (measure, values, ratios) in
        [("connections/s", &tcp.connections_per_second, connections), ("echo MiB/s", &tcp.mib_per_second, throughput)]
    {
        let medians: Vec<String> = Side::ALL.iter().map(|side| format!("{:.0}", median(values.get(*side)))).collect();
        let _ = writeln!(md, "| {measure} | {} | {} |", medians.join(" | "), ratios.join(" | "));
    }
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    let _ = writeln!(md, "\nRaw runs in round order:\n");
    for side in Side::ALL {
        let _ = writeln!(
            md,
            "- {} — connections/s: {}; MiB/s: {}",
            side.name(),
            list(tcp.connections_per_second.get(side)),
            list(tcp.mib_per_second.get(side))
        );
    }
    let _ = writeln!(md);
}

fn instructions_section(md: &mut String, results: &Results, options: &Options) {
    if results.instructions.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Envoy instructions per request (callgrind)\n");
    let _ = writeln!(
        md,
        "Each side's Envoy ran alone under `valgrind --tool=callgrind --smc-check=all-non-file`; after {} s of load \
         as a warm-up, its counts were zeroed (`callgrind_control -z`), {} s of load ran (wrk, 1 thread, 4 \
         connections, cycling through the hosts; or 4 loops of short TCP connections), and the counts were dumped \
         (`callgrind_control -d`). The total is the whole process's instructions (every thread, Envoy's timers, \
         Berth's 20 ms table watch) divided by the requests or connections completed meanwhile. The counts are exact, \
         not timings: only that background work, spread over the requests, varies between runs. The floor (no-op \
         wasm − native) is what any proxy-wasm filter costs Envoy per request, Berth's own (Berth − no-op wasm) what \
         its routing adds.\n",
        options.instructions_warmup, options.instructions_seconds
    );
    let _ = writeln!(
        md,
        "| per | Berth | no-op wasm | native | floor: no-op wasm − native | Berth's own: Berth − no-op wasm | Berth − native | counted (Berth / no-op / native) |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for r in &results.instructions {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.0} | {:+.0} | {:+.0} | {:+.0} | {} / {} / {} |",
            r.unit,
            r.per_unit.berth,
            r.per_unit.noop,
            r.per_unit.native,
            r.difference(FLOOR),
            r.difference(BERTH_OWN),
            r.difference(BERTH_NATIVE),
            r.units.berth,
            r.units.noop,
            r.units.native
        );
    }
    let _ = writeln!(md);
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

/// The plot: throughput, p99, the ratios to native, propagation.
pub fn charts(results: &Results) -> Vec<Chart<'static>> {
    let mut charts = Vec::new();
    if !results.http.is_empty() {
        let sides = |title, medians: &dyn Fn(&HttpResult, Side) -> f64| Chart {
            title,
            series: &["Berth", "no-op wasm", "native"],
            groups: results
                .http
                .iter()
                .map(|r| (format!("{} hosts", size(r.hosts)), Side::ALL.iter().map(|side| medians(r, *side)).collect()))
                .collect(),
            goal: None,
        };
        charts.push(sides("HTTP requests/s (median)", &|r, side| r.saturated(side, rps)));
        charts.push(sides("HTTP p99 latency, one connection, µs", &|r, side| r.one_connection(side, p99)));
    }
    let mut shares: Vec<(String, Vec<f64>)> = results
        .http
        .iter()
        .map(|r| (format!("HTTP {}", size(r.hosts)), vec![r.throughput_ratio(BERTH_NATIVE), r.throughput_ratio(FLOOR)]))
        .collect();
    if let Some(tcp) = &results.tcp {
        shares.push(("TCP conn/s".into(), vec![tcp.connection_ratio(BERTH_NATIVE), tcp.connection_ratio(FLOOR)]));
        shares.push(("TCP MiB/s".into(), vec![tcp.throughput_ratio(BERTH_NATIVE), tcp.throughput_ratio(FLOOR)]));
    }
    if !shares.is_empty() {
        charts.push(Chart {
            title: "Share of native",
            series: &["Berth / native", "no-op / native"],
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
