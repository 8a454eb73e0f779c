//! Active health checks through real Envoy: the controller checks every endpoint, an endpoint that fails its
//! checks leaves the table Envoy routes by, and comes back when it passes again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_tests::load::{Load, StopOnDrop};
use berth_tests::manifests::{self, Rule};
use berth_tests::{Backend, Stack, client, wait};

/// Three "pods" of one Service: loopback addresses 127.0.0.2-4 sharing a port, named a, b and c.
fn three_pods() -> Vec<Backend> {
    let a = Backend::start_on("127.0.0.2:0".parse().unwrap(), "a", 200);
    let port = a.addr.port();
    let b = Backend::start_on(format!("127.0.0.3:{port}").parse().unwrap(), "b", 200);
    let c = Backend::start_on(format!("127.0.0.4:{port}").parse().unwrap(), "c", 200);
    vec![a, b, c]
}

/// The Service `web` (with `annotations`) over `pods`, routed from `web.example`, and the Service `other` over
/// `other`, routed from `other.example`.
fn files(pods: &[Backend], annotations: &[(&str, &str)], other: &Backend) -> Vec<(&'static str, String)> {
    let port = pods[0].addr.port();
    let ips: Vec<String> = pods.iter().map(|p| p.addr.ip().to_string()).collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    vec![
        manifests::cluster(),
        ("web.yaml", manifests::pod_service_with("web", port, annotations)),
        ("slice.yaml", manifests::endpoint_slice("web-1", "web", port, &ips)),
        ("other.yaml", manifests::node_port_service("other", 80, other.addr.port())),
        (
            "ingress.yaml",
            manifests::ingress(
                "web",
                &[Rule("web.example", "/", "Prefix", "web", port), Rule("other.example", "/", "Prefix", "other", 80)],
            ),
        ),
    ]
}

/// Checks every 100ms, so that tests see changes soon.
fn fast_checks(_: &std::path::Path) -> Vec<String> {
    vec!["--health-interval=100ms".to_string()]
}

/// Waits until the controller reports `address` healthy (or not) and Envoy routes by the table published with
/// that report; returns the report.
fn wait_for_health(stack: &Stack, address: SocketAddr, healthy: bool) -> serde_json::Value {
    let what = format!("{address} to be reported {}", if healthy { "healthy" } else { "unhealthy" });
    let (health, version) = wait::until(&what, Duration::from_secs(10), || {
        stack.controller.endpoint_health(address).filter(|(health, _)| health["healthy"] == healthy)
    });
    stack.envoy.wait_for_table(version);
    health
}

/// Sends `n` requests to `web.example` and returns the backends that answered, in order; panics on any failure.
fn serve(stack: &Stack, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let response = stack.envoy.get("web.example", "/");
            assert_eq!(response.status, 200, "request {i}: {response:?}");
            response.header("x-backend").unwrap_or_default().to_string()
        })
        .collect()
}

#[test]
fn a_killed_backend_leaves_the_rotation_without_failed_requests_and_returns_when_it_is_back() {
    let mut pods = three_pods();
    let other = Backend::start("other");
    let stack = Stack::start_with(&files(&pods, &[], &other), fast_checks, &[]);
    for pod in &pods {
        stack.envoy.wait_for_backend("web.example", "/", &pod.name);
    }
    let c = pods[2].addr;

    // Requests keep flowing to another route while web's endpoints leave and return.
    let (stop, load) = (AtomicBool::new(false), Load::default());
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                load.record(
                    client::get(stack.envoy.http, "other.example", "/")
                        .is_ok_and(|r| r.status == 200 && r.header("x-backend") == Some("other")),
                );
            }
        });

        pods[2].stop();
        let health = wait_for_health(&stack, c, false);
        assert_eq!(health["last_failure"], "cannot connect: connection refused", "{health}");
        assert_eq!(health["check"], "tcp connect every 100ms", "{health}");
        let served = serve(&stack, 60);
        assert!(!served.iter().any(|b| b == "c"), "{served:?}");
        assert!(served.iter().any(|b| b == "a") && served.iter().any(|b| b == "b"), "the other two serve: {served:?}");

        let output = berth_tests::controller::berth(&["routes", "--controller", &stack.controller.url()]);
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{printed}");
        assert!(printed.contains("1 unhealthy endpoint"), "{printed}");
        assert!(printed.contains(&format!("{c} (unhealthy)")), "{printed}");
        let line = printed.lines().find(|l| l.trim_start().starts_with(&c.to_string())).unwrap_or_default();
        assert!(line.contains("unhealthy since") && line.contains("connection refused"), "{printed}");

        pods[2].restart();
        let health = wait_for_health(&stack, c, true);
        assert_eq!(health["last_failure"], "cannot connect: connection refused", "the last failure stays visible");
        let hits = pods[2].hits();
        let served = serve(&stack, 30);
        assert!(served.iter().any(|b| b == "c"), "c receives traffic again: {served:?}");
        assert!(pods[2].hits() > hits);
    });
    assert!(load.sent() > 10, "the load loop ran");
    assert_eq!(load.failed(), 0, "failed requests on the route whose endpoints stayed healthy");
}

/// Checks every 100ms with panic routing off: failed endpoints always leave.
fn fast_checks_without_panic(_: &std::path::Path) -> Vec<String> {
    vec!["--health-interval=100ms".to_string(), "--health-panic-threshold=0".to_string()]
}

#[test]
fn when_every_endpoint_is_down_and_panic_routing_is_off_the_route_answers_503_at_once() {
    let mut pods = three_pods();
    let other = Backend::start("other");
    let stack = Stack::start_with(&files(&pods, &[], &other), fast_checks_without_panic, &[]);
    stack.envoy.wait_for_backend("web.example", "/", "a");
    for pod in &mut pods {
        pod.stop();
    }
    for pod in &pods {
        wait_for_health(&stack, pod.addr, false);
    }
    let web = stack.controller.routes()["table"]["http"]
        .as_array()
        .and_then(|routes| routes.iter().find(|r| r["host"] == "web.example").cloned())
        .unwrap();
    assert_eq!(web["backends"][0]["endpoints"], serde_json::json!([]), "{web}");
    for _ in 0..5 {
        let response = stack.envoy.get("web.example", "/");
        assert_eq!(response.status, 503, "{response:?}");
        assert_eq!(response.header("x-berth"), Some("no-endpoint"), "{response:?}");
    }
    assert_eq!(stack.envoy.get("other.example", "/").header("x-backend"), Some("other"));
}

#[test]
fn an_http_check_takes_out_an_endpoint_that_answers_the_wrong_status_though_it_accepts_connections() {
    let pods = three_pods();
    let other = Backend::start("other");
    let annotations = [
        ("berth.dev/health-check-path", "/healthz"),
        ("berth.dev/health-check-status", "200"),
        ("berth.dev/health-check-interval", "100ms"),
        ("berth.dev/health-check-timeout", "1s"),
    ];
    let stack = Stack::start(&files(&pods, &annotations, &other));
    for pod in &pods {
        stack.envoy.wait_for_backend("web.example", "/", &pod.name);
    }
    let c = pods[2].addr;

    pods[2].set_status(500);
    let health = wait_for_health(&stack, c, false);
    assert_eq!(health["last_failure"], "HTTP 500, expected 200", "{health}");
    assert_eq!(health["check"], "http GET /healthz expecting 200 every 100ms", "{health}");
    // A TCP connect check would still pass: c accepts connections.
    assert!(std::net::TcpStream::connect_timeout(&c, Duration::from_secs(5)).is_ok());
    let served = serve(&stack, 60);
    assert!(!served.iter().any(|b| b == "c"), "{served:?}");

    pods[2].set_status(200);
    wait_for_health(&stack, c, true);
    let served = serve(&stack, 30);
    assert!(served.iter().any(|b| b == "c"), "c receives traffic again: {served:?}");
}

#[test]
fn a_malformed_health_annotation_is_reported_and_the_default_applies() {
    let pods = three_pods();
    let other = Backend::start("other");
    let annotations = [("berth.dev/health-check-interval", "often"), ("berth.dev/health-check-path", "healthz")];
    let stack = Stack::start_with(&files(&pods, &annotations, &other), fast_checks, &[]);
    stack.envoy.wait_for_backend("web.example", "/", "a");

    let errors = stack.controller.errors().join("\n");
    for expected in [
        "web.yaml: Service default/web: metadata.annotations[\"berth.dev/health-check-interval\"]: \"often\" is not a \
         duration; write it like 5s, 500ms or 1m; using 100ms",
        "web.yaml: Service default/web: metadata.annotations[\"berth.dev/health-check-path\"]: \"healthz\" is not an \
         absolute path; start it with /; checking / instead",
    ] {
        assert!(errors.contains(expected), "no {expected:?} in:\n{errors}");
    }
    let (health, _) = wait::until("web's endpoints to be checked", Duration::from_secs(10), || {
        stack.controller.endpoint_health(pods[0].addr)
    });
    assert_eq!(health["check"], "http GET / expecting 200-399 every 100ms", "{health}");
    serve(&stack, 10);

    let check = berth_tests::controller::berth(&["check", stack.manifests.path.to_str().unwrap()]);
    let checked = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{checked}");
    assert!(checked.contains("berth.dev/health-check-interval\"]: \"often\" is not a duration"), "{checked}");
}

#[test]
fn a_service_with_checks_turned_off_keeps_every_endpoint_in_the_table_unchecked() {
    let mut pods = three_pods();
    let mut other = Backend::start("other");
    let stack = Stack::start_with(&files(&pods, &[("berth.dev/health-check", "none")], &other), fast_checks, &[]);
    stack.envoy.wait_for_backend("web.example", "/", "a");
    pods[2].stop();
    // `other` is checked as usual: once it is reported down, checks have run since c stopped.
    other.stop();
    wait_for_health(&stack, other.addr, false);

    let routes = stack.controller.routes();
    let reported: Vec<&str> =
        routes["health"].as_array().unwrap().iter().filter_map(|h| h["service"].as_str()).collect();
    assert_eq!(reported, ["default/other:80"], "web's endpoints are not checked");
    let web = routes["table"]["http"].as_array().unwrap().iter().find(|r| r["host"] == "web.example").unwrap();
    assert_eq!(web["backends"][0]["endpoints"].as_array().map(Vec::len), Some(3), "{web}");
}

#[test]
fn when_most_endpoints_fail_their_checks_at_once_the_route_is_in_panic_and_keeps_routing_to_all() {
    let pods = three_pods();
    let other = Backend::start("other");
    // Every check fails (the pods answer 200, the check wants 204) while the pods serve: the checker is wrong,
    // not the backends, which is what most endpoints failing at once usually means.
    let annotations = [("berth.dev/health-check-status", "204"), ("berth.dev/health-check-interval", "100ms")];
    let stack = Stack::start(&files(&pods, &annotations, &other));
    for pod in &pods {
        wait_for_health(&stack, pod.addr, false);
    }
    let warning = wait::until("the panic warning", Duration::from_secs(10), || {
        let routes = stack.controller.routes();
        let warnings = routes["warnings"].as_array().cloned().unwrap_or_default();
        warnings.iter().filter_map(|w| w["text"].as_str().map(str::to_string)).find(|t| t.contains("in panic"))
    });
    assert_eq!(
        warning,
        "Ingress default/web: route web.example segments /: in panic: 0 of 3 checked endpoints pass their health \
         checks, fewer than the panic threshold of 50%, so it routes to all of them; check the endpoints and the \
         controller's network (--health-panic-threshold)"
    );
    let web = stack.controller.routes()["table"]["http"]
        .as_array()
        .and_then(|routes| routes.iter().find(|r| r["host"] == "web.example").cloned())
        .unwrap();
    assert_eq!(web["backends"][0]["endpoints"].as_array().map(Vec::len), Some(3), "all kept: {web}");
    let served = serve(&stack, 30);
    for pod in &pods {
        assert!(served.contains(&pod.name), "{} serves in panic: {served:?}", pod.name);
    }
    let output = berth_tests::controller::berth(&["routes", "--controller", &stack.controller.url()]);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("route web.example segments /: in panic: 0 of 3"), "{printed}");
    assert!(stack.controller.log().contains("in panic"), "the log says so too");
}

#[test]
fn a_backend_that_starts_listening_just_after_the_first_check_takes_traffic_long_before_the_next_interval() {
    // As when the backends and Berth start together: c is not listening yet at its first check.
    let mut pods = three_pods();
    pods[2].stop();
    let c = pods[2].addr;
    let other = Backend::start("other");
    // Checks a minute apart: with the old behaviour (out on the first failure, checked again an interval later) c
    // would stay out for a minute or more.
    let stack = Stack::start_with(&files(&pods, &[], &other), |_| vec!["--health-interval=60s".to_string()], &[]);
    stack.envoy.wait_for_backend("web.example", "/", "a");
    wait::until("c's first check to fail", Duration::from_secs(10), || {
        stack.controller.endpoint_health(c).filter(|(health, _)| health.get("last_failure").is_some())
    });
    pods[2].restart();
    // Well below the interval: the failed first check was retried soon.
    wait::until("c to serve", Duration::from_secs(20), || {
        client::get(stack.envoy.http, "web.example", "/").ok().filter(|r| r.header("x-backend") == Some("c"))
    });
    let (health, _) = stack.controller.endpoint_health(c).unwrap();
    assert_eq!(health["healthy"], true, "{health}");
    assert_eq!(health["last_failure"], "cannot connect: connection refused", "{health}");
}
