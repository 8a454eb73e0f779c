//! HTTP routing through real Envoy with the built filter: precedence, misses, live edits, endpoint changes,
//! and headers that try to choose the destination.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use berth_tests::manifests::{self, HttpRoute, Rule};
use berth_tests::{Backend, Stack, client, wait};

#[test]
fn paths_follow_each_sources_semantics_and_a_miss_is_a_404_from_berth() {
    let (app, api, exact) = (Backend::start("app"), Backend::start("api"), Backend::start("exact"));
    let mut files = vec![manifests::cluster()];
    files.push(manifests::services(&[&app, &api, &exact]));
    // Ingress Prefix matches whole segments; Exact only itself.
    files.push((
        "ingress.yaml",
        manifests::ingress(
            "shop",
            &[
                Rule("shop.example", "/app", "Prefix", "app", 80),
                Rule("shop.example", "/app/status", "Exact", "exact", 80),
            ],
        ),
    ));
    // A VirtualService uri.prefix is a plain string prefix, as in Istio.
    files.push((
        "vs.yaml",
        manifests::virtual_service("api", &["api.example"], &[HttpRoute("prefix", "/v1", "api", 80)]),
    ));
    let stack = Stack::start(&files);
    stack.envoy.wait_for_backend("shop.example", "/app", "app");

    let cases = [
        ("shop.example", "/app", Some("app")),
        ("shop.example", "/app/cart", Some("app")),
        ("shop.example", "/app/status", Some("exact")),
        ("shop.example", "/app/status/x", Some("app")),
        ("shop.example", "/application", None),
        ("api.example", "/v1", Some("api")),
        ("api.example", "/v1beta/users", Some("api")),
        ("api.example", "/v2", None),
        ("elsewhere.example", "/app", None),
    ];
    for (host, path, backend) in cases {
        let response = stack.envoy.get(host, path);
        match backend {
            Some(name) => assert_eq!(response.header("x-backend"), Some(name), "{host}{path}: {response:?}"),
            None => {
                assert_eq!(response.status, 404, "{host}{path}: {response:?}");
                assert!(response.header("x-berth").is_some(), "the 404 comes from Berth: {response:?}");
                assert_eq!(response.header("x-backend"), None);
            }
        }
    }
}

#[test]
fn editing_manifests_reroutes_live_without_failing_requests_on_other_routes() {
    let (stable, old, new) = (Backend::start("stable"), Backend::start("old"), Backend::start("new"));
    let mut files = vec![manifests::cluster()];
    files.push(manifests::services(&[&stable, &old, &new]));
    files.push(("stable.yaml", manifests::ingress("stable", &[Rule("stable.example", "/", "Prefix", "stable", 80)])));
    files.push(("moving.yaml", manifests::ingress("moving", &[Rule("moving.example", "/", "Prefix", "old", 80)])));
    let stack = Stack::start(&files);
    stack.envoy.wait_for_backend("moving.example", "/", "old");
    let envoy_addr = stack.envoy.http;

    // Keep requests flowing to the route that does not change while others are edited, added and removed.
    let stop = AtomicBool::new(false);
    let (sent, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let ok = client::get(envoy_addr, "stable.example", "/")
                    .is_ok_and(|r| r.status == 200 && r.header("x-backend") == Some("stable"));
                sent.fetch_add(1, Ordering::SeqCst);
                if !ok {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        });

        // Edit: the route moves to another service.
        let moved = manifests::ingress("moving", &[Rule("moving.example", "/", "Prefix", "new", 80)]);
        stack.manifests.write("moving.yaml", &moved);
        stack.envoy.wait_for_backend("moving.example", "/", "new");
        // Add: a new file brings a new host.
        let added = manifests::ingress("added", &[Rule("added.example", "/", "Prefix", "old", 80)]);
        stack.manifests.write("added.yaml", &added);
        stack.envoy.wait_for_backend("added.example", "/", "old");
        // Delete: its routes go.
        stack.manifests.remove("added.yaml");
        wait::until("added.example to be gone", Duration::from_secs(5), || {
            (stack.envoy.get("added.example", "/").status == 404).then_some(())
        });
        stop.store(true, Ordering::SeqCst);
    });
    assert!(sent.load(Ordering::SeqCst) > 10, "the load loop ran");
    assert_eq!(failed.load(Ordering::SeqCst), 0, "failed requests on the unchanged route");
}

#[test]
fn endpoint_slice_scale_up_adds_a_backend_to_the_rotation() {
    // Pods have their own addresses and share a port: two loopback addresses stand in for two pods.
    let first = Backend::start_on("127.0.0.2:0".parse().unwrap(), "pod-a", 200);
    let port = first.addr.port();
    let second = Backend::start_on(format!("127.0.0.3:{port}").parse().unwrap(), "pod-b", 200);
    let mut files = vec![manifests::cluster()];
    files.push(("service.yaml", manifests::pod_service("web", port)));
    files.push(("slice.yaml", manifests::endpoint_slice("web-1", "web", port, &["127.0.0.2"])));
    files.push(("ingress.yaml", manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "web", port)])));
    let stack = Stack::start(&files);
    stack.envoy.wait_for_backend("web.example", "/", "pod-a");
    for _ in 0..10 {
        assert_eq!(stack.envoy.get("web.example", "/").header("x-backend"), Some("pod-a"));
    }
    assert_eq!(second.hits(), 0);

    stack.manifests.write("slice.yaml", &manifests::endpoint_slice("web-1", "web", port, &["127.0.0.2", "127.0.0.3"]));
    stack.envoy.wait_for_backend("web.example", "/", "pod-b");
    let before = (first.hits(), second.hits());
    for _ in 0..20 {
        assert_eq!(stack.envoy.get("web.example", "/").status, 200);
    }
    let served = (first.hits() - before.0, second.hits() - before.1);
    assert!(served.0 >= 5 && served.1 >= 5, "both pods share the load: {served:?}");
}

#[test]
fn a_client_supplied_original_destination_header_never_chooses_the_backend() {
    let (public, secret) = (Backend::start("public"), Backend::start("secret"));
    let mut files = vec![manifests::cluster()];
    files.push(manifests::services(&[&public]));
    files.push(("ingress.yaml", manifests::ingress("public", &[Rule("public.example", "/", "Prefix", "public", 80)])));
    let stack = Stack::start(&files);
    stack.envoy.wait_for_backend("public.example", "/", "public");

    let target = secret.addr.to_string();
    let spoofs: [&[(&str, &str)]; 4] = [
        &[("x-envoy-original-dst-host", &target)],
        &[("X-Envoy-Original-Dst-Host", &target)],
        &[("x-envoy-original-dst-host", &target), ("x-envoy-original-dst-host", &target)],
        &[("x-envoy-original-dst-host", "127.0.0.1:1"), ("X-ENVOY-ORIGINAL-DST-HOST", &target)],
    ];
    for headers in spoofs {
        let routed = client::request(stack.envoy.http, "GET", "public.example", "/", headers).unwrap();
        assert_eq!(routed.header("x-backend"), Some("public"), "{headers:?}: {routed:?}");
        let unrouted = client::request(stack.envoy.http, "GET", "nowhere.example", "/", headers).unwrap();
        assert_eq!(unrouted.status, 404, "{headers:?}: {unrouted:?}");
    }
    assert_eq!(secret.hits(), 0, "the spoofed destination was never reached");
}

#[test]
fn bad_objects_are_reported_and_skipped_while_good_routes_keep_working() {
    let good = Backend::start("good");
    let mut files = vec![manifests::cluster()];
    files.push(manifests::services(&[&good]));
    files.push(("good.yaml", manifests::ingress("good", &[Rule("good.example", "/", "Prefix", "good", 80)])));
    // A file that is not YAML, an unknown kind, a route to a missing Service, and a claim on a taken host+path.
    files.push(("broken.yaml", "apiVersion: v1\nkind: Service\nmetadata: [this is: not, valid\n".to_string()));
    files.push(("unknown.yaml", "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n".to_string()));
    files.push(("missing.yaml", manifests::ingress("missing", &[Rule("missing.example", "/", "Prefix", "nope", 80)])));
    files.push(("thief.yaml", manifests::ingress("thief", &[Rule("good.example", "/", "Prefix", "good", 80)])));
    let stack = Stack::start(&files);
    stack.envoy.wait_for_backend("good.example", "/", "good");

    let errors = stack.controller.errors().join("\n");
    for expected in ["broken.yaml", "Gadget", "Ingress default/missing", "\"nope\"", "Ingress default/thief"] {
        assert!(errors.contains(expected), "no error mentioning {expected:?} in:\n{errors}");
    }
    assert_eq!(stack.envoy.get("missing.example", "/").status, 404);

    let output = berth_tests::controller::berth(&["routes", "--controller", &stack.controller.url()]);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("good.example") && printed.contains("Ingress default/thief"), "{printed}");

    let check = berth_tests::controller::berth(&["check", stack.manifests.path.to_str().unwrap()]);
    let checked = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert_eq!(check.status.code(), Some(1), "{checked}");
    assert!(checked.contains("broken.yaml") && checked.contains("\"nope\""), "{checked}");
}
