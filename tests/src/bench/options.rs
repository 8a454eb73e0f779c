//! What a benchmark run measures and how hard: the full run `make bench` publishes, or a quick smoke run.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    /// Where BENCHMARKS.md and the plot go.
    pub out: PathBuf,
    /// Which sections to run (all when empty): http, tcp, instructions, propagation, churn, memory, profile, check.
    pub only: Vec<String>,
    /// Envoy worker threads, for both sides.
    pub workers: u32,
    pub http_sizes: Vec<usize>,
    pub rounds: usize,
    pub seconds: u32,
    pub wrk_connections: u32,
    pub tcp_concurrency: usize,
    pub tcp_streams: usize,
    pub propagation_sizes: Vec<usize>,
    pub changes: usize,
    pub churn_stable: usize,
    /// Churned routes: files of `churn_per_file` routes each.
    pub churn_files: usize,
    pub churn_per_file: usize,
    pub churn_seconds: u64,
    pub memory_routes: usize,
    pub profile_routes: usize,
    pub profile_requests: usize,
    /// Envoy's instructions per request under callgrind: at this many hosts, counted over a load this long after
    /// a warm-up this long.
    pub instructions_hosts: usize,
    pub instructions_seconds: u32,
    pub instructions_warmup: u32,
}

impl Options {
    pub fn full(out: PathBuf) -> Options {
        Options {
            quick: false,
            out,
            only: Vec::new(),
            workers: 1,
            http_sizes: vec![10, 1_000, 10_000],
            rounds: 5,
            seconds: 8,
            wrk_connections: 16,
            tcp_concurrency: 8,
            tcp_streams: 4,
            propagation_sizes: vec![1_000, 10_000],
            changes: 100,
            churn_stable: 100,
            churn_files: 10,
            churn_per_file: 100,
            churn_seconds: 30,
            memory_routes: 10_000,
            profile_routes: 10_000,
            profile_requests: 20_000,
            instructions_hosts: 10,
            instructions_seconds: 10,
            instructions_warmup: 5,
        }
    }

    /// Everything once, small: checks the plumbing in about ten minutes (six Envoys start under callgrind), numbers
    /// not worth publishing.
    pub fn quick(out: PathBuf) -> Options {
        Options {
            quick: true,
            http_sizes: vec![10, 200],
            rounds: 2,
            seconds: 2,
            propagation_sizes: vec![200],
            changes: 10,
            churn_stable: 10,
            churn_files: 5,
            churn_per_file: 20,
            churn_seconds: 5,
            memory_routes: 1_000,
            profile_routes: 1_000,
            profile_requests: 2_000,
            instructions_seconds: 3,
            instructions_warmup: 2,
            ..Options::full(out)
        }
    }

    /// `[--quick] [--out DIR] [--only a,b] [--workers N] [--changes N] [--propagation-sizes a,b]`; the last two
    /// make the propagation section quicker to run while working on it.
    pub fn parse(args: &[String]) -> anyhow::Result<Options> {
        let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
        let quick = args.iter().any(|a| a == "--quick");
        let out = value("--out").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        let mut options = if quick { Options::quick(out) } else { Options::full(out) };
        if let Some(only) = value("--only") {
            options.only = only.split(',').map(str::to_string).collect();
        }
        if let Some(workers) = value("--workers") {
            options.workers = workers.parse()?;
        }
        if let Some(changes) = value("--changes") {
            options.changes = changes.parse()?;
        }
        if let Some(sizes) = value("--propagation-sizes") {
            options.propagation_sizes = sizes.split(',').map(str::parse).collect::<Result<_, _>>()?;
        }
        Ok(options)
    }

    pub fn runs(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quick_only_and_workers() {
        let args: Vec<String> =
            ["--quick", "--only", "http,tcp", "--workers", "2", "--out", "/tmp/x", "--changes", "7"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let options = Options::parse(&args).unwrap();
        assert!(options.quick && options.runs("tcp") && !options.runs("churn"));
        assert_eq!((options.workers, options.out, options.http_sizes.len()), (2, PathBuf::from("/tmp/x"), 2));
        assert_eq!(options.changes, 7);
        assert!(Options::parse(&[]).unwrap().runs("memory"));
        let sizes = Options::parse(&["--propagation-sizes".to_string(), "10,20".to_string()]).unwrap();
        assert_eq!(sizes.propagation_sizes, [10, 20]);
    }
}
