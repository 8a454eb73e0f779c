//! Comparison 3: how long a manifest change takes to answer through Envoy. A new Ingress file is written
//! (atomically, as editors do) into the directory the controller watches; the clock stops when its host is
//! answered by the backend through Envoy, polled every millisecond on a keep-alive connection. A long poll of the
//! controller's `/v1/table`, as Envoy's fetcher makes, splits each change into the controller's part (until it
//! serves the new table) and Envoy's (fetching, decoding and loading it in the workers).

use std::time::{Duration, Instant};

use super::BerthStack;
use super::keep_alive::KeepAlive;
use super::options::Options;
use super::routes::{self, host};
use super::stats::percentile;

#[derive(Debug, Clone)]
pub struct PropagationResult {
    pub routes: usize,
    /// Milliseconds per change.
    pub samples_ms: Vec<f64>,
    /// Of each change, the milliseconds until the controller served the new table.
    pub controller_ms: Vec<f64>,
}

impl PropagationResult {
    pub fn p50(&self) -> f64 {
        percentile(&self.samples_ms, 50.0)
    }

    pub fn p99(&self) -> f64 {
        percentile(&self.samples_ms, 99.0)
    }

    /// The median of the controller's part.
    pub fn controller_p50(&self) -> f64 {
        percentile(&self.controller_ms, 50.0)
    }
}

pub fn run(options: &Options, backends: &[std::net::SocketAddr]) -> anyhow::Result<Vec<PropagationResult>> {
    let mut results = Vec::new();
    for &size in &options.propagation_sizes {
        eprintln!("propagation: {size} routes");
        results.push(measure(options, backends, size)?);
    }
    Ok(results)
}

fn measure(options: &Options, backends: &[std::net::SocketAddr], size: usize) -> anyhow::Result<PropagationResult> {
    let work = tempfile::tempdir()?;
    let (manifests, berth) = BerthStack::with_hosts(work.path(), options, backends, "h", size)?;

    let mut client = KeepAlive::new(berth.envoy.http);
    let mut version = table_version(&mut KeepAlive::new(berth.controller.addr), "/v1/table")?;
    let mut samples_ms = Vec::new();
    let mut controller_ms = Vec::new();
    for change in 0..options.changes {
        let probe = host("probe", change);
        let (polled_tx, polled) = std::sync::mpsc::channel();
        let controller = berth.controller.addr;
        let poll = std::thread::spawn(move || {
            // A version newer than `version`: answered once the controller serves the change.
            let newer = table_version(&mut KeepAlive::new(controller), &format!("/v1/table?version={version}&wait=9"));
            let _ = polled_tx.send(Instant::now());
            newer
        });
        // Time for the long poll to reach the controller before the change (one that came late would be answered at
        // once, and the controller's part would read long); the clock has not started yet.
        std::thread::sleep(Duration::from_millis(20));
        manifests.write(&format!("probe-{change}.yaml"), &routes::ingress("probe", change, backends.len()));
        let start = Instant::now();
        loop {
            if client.get(&probe, "/").is_ok_and(|r| r.status == 200 && r.header("x-backend").is_some()) {
                break;
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(60), "{probe} never answered");
            std::thread::sleep(Duration::from_millis(1));
        }
        samples_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        version = poll.join().map_err(|_| anyhow::anyhow!("the long poll panicked"))??;
        let served = polled.recv()?;
        controller_ms.push(served.saturating_duration_since(start).as_secs_f64() * 1000.0);
    }
    let result = PropagationResult { routes: size, samples_ms, controller_ms };
    eprintln!(
        "  p50 {:.0} ms, p99 {:.0} ms (controller p50 {:.0} ms)",
        result.p50(),
        result.p99(),
        result.controller_p50()
    );
    Ok(result)
}

/// The version of the table `path` answers with (its `etag`), which must be a new one.
fn table_version(controller: &mut KeepAlive, path: &str) -> anyhow::Result<u64> {
    let response = controller.get("berth-controller", path)?;
    anyhow::ensure!(response.status == 200, "{path} answered {}", response.status);
    let etag = response.header("etag").unwrap_or_default().trim_matches('"');
    Ok(etag.parse()?)
}
