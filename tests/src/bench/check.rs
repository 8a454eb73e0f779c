//! How long `berth check` takes to read and compile a directory of manifests (the controller does the same work
//! on every change), timed by hyperfine.

use std::process::Command;

use berth_tests::manifests::ManifestDir;
use berth_tests::paths;

use super::routes;

#[derive(Debug, Clone)]
pub struct CheckResult {
    pub routes: usize,
    pub mean_ms: f64,
    pub stddev_ms: f64,
    pub runs: usize,
}

pub fn run(sizes: &[usize], runs: usize, backends: &[std::net::SocketAddr]) -> anyhow::Result<Vec<CheckResult>> {
    let mut results = Vec::new();
    for &size in sizes {
        let work = tempfile::tempdir()?;
        let manifests = ManifestDir::new(&work.path().join("manifests"));
        routes::write_cluster(&manifests, backends);
        routes::write_hosts(&manifests, "h", size, backends.len());
        let json = work.path().join("hyperfine.json");
        let command = format!("{} check {}", paths::berth().display(), manifests.path.display());
        let output = Command::new("hyperfine")
            .args(["--warmup", "1", "--runs", &runs.to_string(), "--style", "none", "--export-json"])
            .arg(&json)
            .arg(&command)
            .output()?;
        anyhow::ensure!(output.status.success(), "hyperfine: {}", String::from_utf8_lossy(&output.stderr));
        let exported: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
        let timing = &exported["results"][0];
        let result = CheckResult {
            routes: size,
            mean_ms: timing["mean"].as_f64().unwrap_or(0.0) * 1000.0,
            stddev_ms: timing["stddev"].as_f64().unwrap_or(0.0) * 1000.0,
            runs,
        };
        eprintln!("berth check on {size} routes: {:.1} ms ± {:.1}", result.mean_ms, result.stddev_ms);
        results.push(result);
    }
    Ok(results)
}
