//! Traffic policy through real Envoy with the built filter: weighted splits and live weight changes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use berth_tests::manifests;
use berth_tests::{Backend, Stack, client, wait};

fn node() -> (&'static str, String) {
    ("cluster.yaml", manifests::node("n1", "127.0.0.1"))
}

fn service(name: &str, backend: &Backend) -> String {
    manifests::node_port_service(name, 80, backend.addr.port())
}

/// A VirtualService for `host` splitting `/` between `(service, weight)` destinations.
fn weighted_virtual_service(name: &str, host: &str, split: &[(&str, u32)]) -> String {
    let destinations: String = split
        .iter()
        .map(|(service, weight)| {
            format!("    - destination: {{host: {service}, port: {{number: 80}}}}\n      weight: {weight}\n")
        })
        .collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n  namespace: default\n  \
         annotations:\n    berth.dev/expose: \"true\"\nspec:\n  hosts: [{host}]\n  http:\n  - route:\n{destinations}"
    )
}

/// Sends `count` requests for `host``/` over `threads` parallel clients (each request on a fresh connection, so
/// they spread over Envoy's workers) and counts them by the backend that answered. Every one must succeed.
fn tally(envoy: SocketAddr, host: &str, count: usize, threads: usize) -> HashMap<String, usize> {
    let per_thread = count / threads;
    let counts: Vec<HashMap<String, usize>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut seen = HashMap::new();
                    for _ in 0..per_thread {
                        let response = client::get(envoy, host, "/").unwrap_or_else(|e| panic!("GET {host}: {e}"));
                        assert_eq!(response.status, 200, "{response:?}");
                        let backend = response.header("x-backend").unwrap_or_default().to_string();
                        *seen.entry(backend).or_default() += 1;
                    }
                    seen
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("client thread")).collect()
    });
    let mut total = HashMap::new();
    for seen in counts {
        for (backend, n) in seen {
            *total.entry(backend).or_default() += n;
        }
    }
    total
}

/// The share of `backend` in `seen`, in percentage points.
fn share(seen: &HashMap<String, usize>, backend: &str) -> f64 {
    let total: usize = seen.values().sum();
    100.0 * *seen.get(backend).unwrap_or(&0) as f64 / total as f64
}

#[test]
fn weights_split_traffic_within_two_points_and_a_weight_change_shifts_it_live() {
    let (blue, green) = (Backend::start("blue"), Backend::start("green"));
    let files = [
        node(),
        ("services.yaml", [service("blue", &blue), service("green", &green)].join("---\n")),
        ("canary.yaml", weighted_virtual_service("canary", "canary.example", &[("blue", 90), ("green", 10)])),
    ];
    let mut stack = Stack::start(&files);
    stack.envoy.wait_for_backend("canary.example", "/", "blue");

    // Envoy runs two workers, each with its own VM and counter: the aggregate is what clients see.
    let seen = tally(stack.envoy.http, "canary.example", 10_000, 4);
    assert_eq!(seen.values().sum::<usize>(), 10_000);
    let green_share = share(&seen, "green");
    assert!((8.0..=12.0).contains(&green_share), "90/10 split observed as {seen:?}");
    assert_eq!(seen.len(), 2, "only blue and green answer: {seen:?}");

    // Turn the canary around in the manifest: Envoy follows without a restart.
    let flipped = weighted_virtual_service("canary", "canary.example", &[("blue", 10), ("green", 90)]);
    stack.manifests.write("canary.yaml", &flipped);
    wait::until("the new weights to reach Envoy", Duration::from_secs(10), || {
        // Under 90/10, 50 green answers in a row of 60 cannot happen (each round of 100 gives green exactly 10).
        let seen = tally(stack.envoy.http, "canary.example", 60, 1);
        (seen.get("green").copied().unwrap_or(0) >= 50).then_some(())
    });
    let seen = tally(stack.envoy.http, "canary.example", 4_000, 4);
    let green_share = share(&seen, "green");
    assert!((88.0..=92.0).contains(&green_share), "10/90 split observed as {seen:?}");
    assert!(stack.envoy.is_running(), "the same Envoy process served both splits");
}
