//! What operators look at: the controller's Prometheus metrics, scraped from the real process after known changes.

use std::net::SocketAddr;
use std::time::Duration;

use berth_tests::examples::examples_on;
use berth_tests::manifests::{self, ManifestDir, Rule};
use berth_tests::metrics::{sample, samples, scrape};
use berth_tests::{Backend, Controller, Envoy, TcpBackend, wait};

/// Waits until the controller's metric `name` reads `value`.
fn wait_for_metric(controller: SocketAddr, name: &str, value: f64) {
    wait::until(&format!("{name} to be {value}"), Duration::from_secs(15), || {
        (sample(&scrape(controller, "/metrics"), name) == Some(value)).then_some(())
    });
}

#[test]
fn controller_metrics_count_the_examples_and_each_change() {
    let service1 = Backend::start("service 1");
    let mut service2 = Backend::start("service 2");
    let default = Backend::start_on("127.0.0.1:0".parse().unwrap(), "default backend - 404", 404);
    let echo = TcpBackend::greeting("hello\n");
    let tcp_range = wait::free_port_range(11);
    let work = tempfile::tempdir().unwrap();
    let dir = ManifestDir::new(&work.path().join("examples"));
    let node_ports = [
        ("30081", service1.addr.port()),
        ("30082", service2.addr.port()),
        ("30404", default.addr.port()),
        ("30007", echo.addr.port()),
    ];
    examples_on(&dir, &node_ports, tcp_range);
    let addr = SocketAddr::from(([127, 0, 0, 1], wait::free_port()));
    // Panic routing off: with it, service 2, its route's only endpoint, would stay in the table when it stops.
    let args = ["--health-interval=200ms".to_string(), "--health-panic-threshold=0".to_string()];
    let controller = Controller::start_with(addr, &dir.path, work.path(), &args);
    let tcp_ports = format!("--tcp-ports={}-{}", tcp_range.0, tcp_range.1);
    let envoy = Envoy::start_with(controller.addr, work.path(), &[tcp_ports]);
    envoy.wait_for_backend("website8080.com", "/", "service 1");
    // Envoy's fetcher holds its long poll once it has the table.
    wait_for_metric(addr, "berth_long_polls", 1.0);

    let text = scrape(addr, "/metrics");
    let range = format!("{{allocation=\"tcp\",range=\"{}-{}\"}}", tcp_range.0, tcp_range.1);
    let expected = [
        // The Ingress's two hosts and the VirtualService's two paths; the echo workload's port; no tls route.
        ("berth_routes{protocol=\"http\"}", 4.0),
        ("berth_routes{protocol=\"tcp\"}", 1.0),
        ("berth_routes{protocol=\"tls\"}", 0.0),
        ("berth_objects{cluster=\"local\",kind=\"Service\"}", 4.0),
        ("berth_objects{cluster=\"local\",kind=\"VirtualService\"}", 2.0),
        ("berth_objects{cluster=\"local\",kind=\"Ingress\"}", 1.0),
        ("berth_objects{cluster=\"local\",kind=\"IngressClass\"}", 1.0),
        ("berth_objects{cluster=\"local\",kind=\"Node\"}", 1.0),
        ("berth_objects{cluster=\"local\",kind=\"PortAllocation\"}", 1.0),
        (&format!("berth_ports_allocated{range}"), 1.0),
        (&format!("berth_ports_free{range}"), 10.0),
        ("berth_endpoints_checked", 4.0),
        ("berth_endpoints_out_of_rotation", 0.0),
        ("berth_leader", 1.0),
        // One fetch by Envoy's one fetcher, then the long poll it holds.
        ("berth_tables_served_total{result=\"table\"}", 1.0),
    ];
    for (name, value) in expected {
        assert_eq!(sample(&text, name), Some(value), "{name} in:\n{text}");
    }
    let stale = samples(&text, "berth_source_stale");
    assert!(stale.iter().all(|(_, v)| *v == 0.0), "no source is stale: {stale:?}");
    assert_eq!(samples(&text, "berth_errors"), [], "no errors in the examples:\n{text}");
    let version = controller.routes()["table"]["version"].as_f64().unwrap();
    assert_eq!(sample(&text, "berth_table_version"), Some(version));
    let propagations = "berth_propagation_seconds_count{trigger=\"objects\"}";
    let before = sample(&text, propagations).unwrap_or(0.0);

    // One new route: one more http route, one more propagation, one more table served to Envoy.
    let added = manifests::ingress("added", &[Rule("added.example", "/", "Prefix", "service1", 8080)]);
    dir.write("added.yaml", &added);
    envoy.wait_for_backend("added.example", "/", "service 1");
    wait_for_metric(addr, "berth_tables_served_total{result=\"table\"}", 2.0);
    let text = scrape(addr, "/metrics");
    assert_eq!(sample(&text, "berth_routes{protocol=\"http\"}"), Some(5.0), "{text}");
    assert_eq!(sample(&text, propagations), Some(before + 1.0), "{text}");
    assert_eq!(sample(&text, "berth_table_version"), Some(version + 1.0));
    assert_eq!(sample(&text, "berth_objects{cluster=\"local\",kind=\"Ingress\"}"), Some(2.0));

    // A broken object: an error of its kind; the table does not change, so no propagation is counted.
    let broken = manifests::virtual_service(
        "broken",
        &["broken.example"],
        &[manifests::HttpRoute("prefix", "/", "missing", 80)],
    );
    dir.write("broken.yaml", &broken);
    wait::until("the broken VirtualService's error", Duration::from_secs(10), || {
        controller.errors().iter().any(|e| e.contains("broken")).then_some(())
    });
    let text = scrape(addr, "/metrics");
    assert_eq!(samples(&text, "berth_errors"), [("berth_errors{kind=\"VirtualService\"}".to_string(), 1.0)], "{text}");
    assert_eq!(sample(&text, propagations), Some(before + 1.0), "{text}");

    // An endpoint that stops answering leaves rotation: a table without it, counted as a health propagation.
    service2.stop();
    wait_for_metric(addr, "berth_endpoints_out_of_rotation", 1.0);
    let text = scrape(addr, "/metrics");
    assert_eq!(sample(&text, "berth_propagation_seconds_count{trigger=\"health\"}"), Some(1.0), "{text}");
    assert!(sample(&text, "berth_health_checks_total{result=\"failed\"}").is_some_and(|n| n >= 2.0), "{text}");
    assert_eq!(sample(&text, "berth_routes{protocol=\"http\"}"), Some(5.0), "routes stay: {text}");
}

#[test]
fn json_logs_name_the_object_whose_routing_changed_and_routes_prints_json_and_yaml() {
    let web = Backend::start("web");
    let work = tempfile::tempdir().unwrap();
    let dir = ManifestDir::new(&work.path().join("manifests"));
    manifests::write_cluster_and_services(&dir, &[&web]);
    let addr = SocketAddr::from(([127, 0, 0, 1], wait::free_port()));
    let args = ["--log-format=json".to_string(), "--log-level=info".to_string()];
    let controller = Controller::start_with(addr, &dir.path, work.path(), &args);
    dir.write("shop.yaml", &manifests::ingress("shop", &[Rule("shop.example", "/", "Prefix", "web", 80)]));

    // Every line is one JSON object; the one for the new route names its object.
    let line = wait::until("a log line naming Ingress default/shop", Duration::from_secs(10), || {
        let log = controller.log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
            .collect();
        lines.into_iter().find(|l| l["fields"]["object"] == "Ingress default/shop")
    });
    assert_eq!(line["fields"]["change"], "added", "{line}");
    assert_eq!(line["level"], "INFO", "{line}");

    let url = controller.url();
    let json = berth_tests::controller::berth(&["routes", "--controller", &url, "-o", "json"]);
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let view: serde_json::Value = serde_json::from_slice(&json.stdout).expect("berth routes -o json prints JSON");
    assert_eq!(view["table"]["http"][0]["host"], "shop.example", "{view}");
    let yaml = berth_tests::controller::berth(&["routes", "--controller", &url, "-o", "yaml"]);
    let view: serde_json::Value = serde_yaml::from_slice(&yaml.stdout).expect("berth routes -o yaml prints YAML");
    assert_eq!(view["table"]["http"][0]["host"], "shop.example", "{view}");
}
