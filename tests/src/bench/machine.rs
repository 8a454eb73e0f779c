//! What the numbers were measured on and with: versions and machine facts for the report.

use std::process::Command;

use berth_tests::paths;

#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub load_average: String,
    pub envoy: String,
    pub berth: String,
    pub commit: String,
    pub wrk: String,
}

fn first_line(program: &std::path::Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_string()
        })
        .unwrap_or_else(|e| format!("unavailable: {e}"))
}

pub fn describe() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |text: &str, key: &str| {
        text.lines().find_map(|l| l.strip_prefix(key)?.split_once(':').map(|(_, v)| v.trim().to_string()))
    };
    let kib: f64 = field(&meminfo, "MemTotal").and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
    Machine {
        cpu: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        memory: format!("{:.1} GiB", kib / 1024.0 / 1024.0),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        load_average: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string(),
        envoy: first_line(&paths::envoy(), &["--version"]),
        berth: first_line(&paths::berth(), &["--version"]),
        commit: first_line(std::path::Path::new("git"), &["rev-parse", "--short", "HEAD"]),
        wrk: super::wrk::version(),
    }
}
