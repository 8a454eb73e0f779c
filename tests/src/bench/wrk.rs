//! The HTTP load generator: `wrk` (Debian's), keep-alive connections cycling through a list of hosts, with a Lua
//! script that prints its results as one JSON line.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const SCRIPT: &str = r#"
local requests = {}
local next = 0
function init(args)
  for host in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("GET", "/", { Host = host })
  end
end
function request()
  next = next % #requests + 1
  return requests[next]
end
function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"#;

/// One wrk run's results.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Requests completed.
    pub requests: u64,
    pub requests_per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Socket errors and non-2xx/3xx answers.
    pub errors: u64,
}

/// Settings shared by every run of a comparison.
#[derive(Debug, Clone)]
pub struct Load {
    pub threads: u32,
    pub connections: u32,
    pub seconds: u32,
}

/// Writes the script and the host list into `work`; returns the script's path.
pub fn prepare(work: &Path, hosts: &[String]) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let script = work.join("hosts.lua");
    let list = work.join("hosts.txt");
    std::fs::write(&script, SCRIPT)?;
    std::fs::write(&list, hosts.join("\n") + "\n")?;
    Ok((script, list))
}

/// Runs wrk against `target` with the prepared script and host list.
pub fn run(target: SocketAddr, load: &Load, script: &Path, hosts: &Path) -> anyhow::Result<Run> {
    let output = Command::new("wrk")
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.seconds))
        .arg("--timeout=5s")
        .arg("-s")
        .arg(script)
        .arg(format!("http://{target}/"))
        .arg("--")
        .arg(hosts)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRK "))
        .ok_or_else(|| anyhow::anyhow!("wrk printed no result: {stdout}{}", String::from_utf8_lossy(&output.stderr)))?;
    parse(line)
}

fn parse(line: &str) -> anyhow::Result<Run> {
    let json: Value = serde_json::from_str(line)?;
    let number = |key: &str| json[key].as_f64().unwrap_or(0.0);
    let seconds = number("duration_us") / 1e6;
    let errors = ["connect", "read", "write", "status", "timeout"].iter().map(|k| number(k) as u64).sum();
    Ok(Run {
        requests: number("requests") as u64,
        requests_per_second: if seconds > 0.0 { number("requests") / seconds } else { 0.0 },
        p50_us: number("p50_us"),
        p99_us: number("p99_us"),
        errors,
    })
}

/// `wrk`'s version line.
pub fn version() -> String {
    Command::new("wrk")
        .arg("-v")
        .output()
        .map(|o| {
            let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            text.lines().next().unwrap_or_default().trim().to_string()
        })
        .unwrap_or_else(|e| format!("unavailable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_scripts_result_line() {
        let run = parse(
            r#"{"requests":20000,"duration_us":2000000,"connect":0,"read":1,"write":0,"status":2,"timeout":0,"p50_us":120,"p90_us":200,"p99_us":450,"mean_us":130.5}"#,
        )
        .unwrap();
        assert_eq!((run.requests, run.requests_per_second), (20_000, 10_000.0));
        assert_eq!((run.p50_us, run.p99_us, run.errors), (120.0, 450.0, 3));
    }
}
