//! Comparison 4: continuous load on stable routes while other routes are added and removed. Every request must
//! be answered by the right backend: a failure here is a request dropped or misrouted by a table change.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_tests::load::StopOnDrop;

use super::keep_alive::KeepAlive;
use super::options::Options;
use super::routes::{self, host};
use super::{BerthStack, wait_routed};

#[derive(Debug, Clone, Default)]
pub struct ChurnResult {
    pub stable_routes: usize,
    pub churned_routes: usize,
    /// Routes per churned file.
    pub per_file: usize,
    pub seconds: f64,
    pub requests: u64,
    pub failed: u64,
    /// Files written or removed, each adding or removing `churn_per_file` routes.
    pub changes: u64,
    /// The first few failures, for the report.
    pub examples: Vec<String>,
}

/// Client threads, each with its own keep-alive connection.
const CLIENTS: usize = 4;

pub fn run(options: &Options, backends: &[std::net::SocketAddr]) -> anyhow::Result<ChurnResult> {
    let work = tempfile::tempdir()?;
    let (manifests, berth) = BerthStack::with_hosts(work.path(), options, backends, "stable", options.churn_stable)?;
    let churn_files: Vec<String> = (0..options.churn_files)
        .map(|f| {
            let routes: Vec<String> =
                (0..options.churn_per_file).map(|i| routes::ingress(&format!("churn{f}"), i, backends.len())).collect();
            routes.join("---\n")
        })
        .collect();

    let (requests, failed, stop) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));
    let examples = std::sync::Mutex::new(Vec::new());
    let listener = berth.envoy.http;
    let mut changes = 0u64;
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let _stop = StopOnDrop(&stop);
        for client in 0..CLIENTS {
            let (requests, failed, stop, examples) = (&requests, &failed, &stop, &examples);
            scope.spawn(move || {
                let mut connection = KeepAlive::new(listener);
                let mut i = client;
                while !stop.load(Ordering::Relaxed) {
                    let route = i % options.churn_stable;
                    let expected = format!("svc-{}", route % backends.len());
                    let answer = connection.get(&host("stable", route), "/");
                    let ok =
                        answer.as_ref().is_ok_and(|r| r.status == 200 && r.header("x-backend") == Some(&*expected));
                    requests.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut examples) = examples.lock()
                            && examples.len() < 5
                        {
                            examples.push(format!("{}: {answer:?}", host("stable", route)));
                        }
                    }
                    i += CLIENTS;
                }
            });
        }
        // Add every churn file one by one, then remove them one by one, until time is up.
        let deadline = started + Duration::from_secs(options.churn_seconds);
        let mut present = vec![false; churn_files.len()];
        let mut next = 0;
        while Instant::now() < deadline {
            let name = format!("churn-{next}.yaml");
            if present[next] {
                manifests.remove(&name);
            } else {
                manifests.write(&name, &churn_files[next]);
            }
            present[next] = !present[next];
            changes += 1;
            // Once every churn file is in, their routes must really be live: the churn is not idle.
            if next + 1 == churn_files.len() && present[next] {
                wait_routed(listener, &host(&format!("churn{next}"), 0), Duration::from_secs(60));
            }
            next = (next + 1) % churn_files.len();
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    })?;
    let result = ChurnResult {
        stable_routes: options.churn_stable,
        churned_routes: options.churn_files * options.churn_per_file,
        per_file: options.churn_per_file,
        seconds: started.elapsed().as_secs_f64(),
        requests: requests.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        changes,
        examples: examples.into_inner().unwrap_or_default(),
    };
    eprintln!("churn: {} requests, {} failed, {} file changes", result.requests, result.failed, result.changes);
    Ok(result)
}
