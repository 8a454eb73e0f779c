//! Comparison 3: how long a manifest change takes to answer through Envoy. A new Ingress file is written
//! (atomically, as editors do) into the directory the controller watches; the clock stops when its host is
//! answered by the backend through Envoy, polled every millisecond on a keep-alive connection.

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
}

impl PropagationResult {
    pub fn p50(&self) -> f64 {
        percentile(&self.samples_ms, 50.0)
    }

    pub fn p99(&self) -> f64 {
        percentile(&self.samples_ms, 99.0)
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
    let mut samples_ms = Vec::new();
    for change in 0..options.changes {
        let probe = host("probe", change);
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
    }
    let result = PropagationResult { routes: size, samples_ms };
    eprintln!("  p50 {:.0} ms, p99 {:.0} ms", result.p50(), result.p99());
    Ok(result)
}
