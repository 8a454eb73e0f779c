//! `make bench`: Berth against Envoy's own routing (and the no-op wasm floor), Envoy's instructions per request,
//! propagation, churn, memory and a profile of the filter; writes BENCHMARKS.md and BENCHMARKS.png.
//! `berth-bench [--quick] [--out DIR] [--only http,tcp,instructions,..] [--workers N]`.
//! (`berth-bench profile-filter ROUTES REQUESTS` is the program callgrind runs.)

#[path = "../bench/mod.rs"]
mod bench;

use bench::options::Options;
use bench::report::{self, Results};
use bench::{check, churn, envoy_instructions, fast_backend, http, machine, memory, plot, profile, propagation, tcp};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("profile-filter") {
        let number = |i: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(1_000);
        return profile::profile_filter(number(1), number(2));
    }
    let options = Options::parse(&args)?;
    std::fs::create_dir_all(&options.out)?;
    let mut results = Results {
        command: std::iter::once("berth-bench".to_string()).chain(args.iter().cloned()).collect::<Vec<_>>().join(" "),
        started: date(),
        machine: Some(machine::describe()),
        ..Results::default()
    };
    eprintln!("berth-bench: {}", results.command);

    // Backends on their own runtime thread, for the whole run.
    let runtime = fast_backend::runtime(1)?;
    let backends = [fast_backend::http(&runtime, "svc-0")?, fast_backend::http(&runtime, "svc-1")?];
    let echo = fast_backend::echo(&runtime)?;

    if options.runs("profile") {
        let work = tempfile::tempdir()?;
        results.profile = profile::run(&[10, options.profile_routes], options.profile_requests, work.path())?;
    }
    if options.runs("check") {
        let sizes: Vec<usize> = options.propagation_sizes.clone();
        results.check = check::run(&sizes, if options.quick { 3 } else { 10 }, &backends)?;
    }
    if options.runs("http") {
        results.http = http::run(&options, &backends)?;
    }
    if options.runs("tcp") {
        eprintln!("tcp");
        results.tcp = Some(tcp::run(&options, echo)?);
    }
    if options.runs("instructions") {
        results.instructions = envoy_instructions::run(&options, &backends, echo)?;
    }
    if options.runs("propagation") {
        results.propagation = propagation::run(&options, &backends)?;
    }
    if options.runs("churn") {
        results.churn = Some(churn::run(&options, &backends)?);
    }
    if options.runs("memory") {
        results.memory = memory::run(&options, &backends)?;
    }

    let markdown = report::markdown(&results, &options);
    std::fs::write(options.out.join("BENCHMARKS.md"), markdown)?;
    let charts = report::charts(&results);
    if !charts.is_empty()
        && let Err(error) = plot::write_png(&plot::svg(&charts), &options.out.join("BENCHMARKS.png"))
    {
        eprintln!("no plot: {error}");
    }
    eprintln!("wrote {}", options.out.join("BENCHMARKS.md").display());
    Ok(())
}

/// The current UTC time, from `date` (no date-time dependency for one line of a report).
fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
