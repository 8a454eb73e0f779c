//! Berth in an Envoy whose bootstrap holds nothing of Berth's: its clusters, listeners and filters arrive as
//! dynamic resources (LDS and CDS files, as an xDS server would deliver them), and the filter's own root contexts
//! elect the one that fetches the table. One long poll per Envoy, every worker routes HTTP, TCP and TLS, a listener
//! update that destroys the fetching root context hands the fetch over, and a controller that goes away and comes
//! back is picked up again.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use berth_tests::manifests::{
    self, Rule, node_port_service, port_allocation, tcp_virtual_service, tls_virtual_service,
};
use berth_tests::tcp_client::{connect, read_exact};
use berth_tests::tls_client::handshake;
use berth_tests::{Backend, Controller, Envoy, TcpBackend, TestCa, TlsBackend, admin, client, envoy, wait};
use serde_json::{Value, json};

/// Log line of the root context that wins the fetch lease.
const WON: &str = "now fetches the table for this Envoy";

/// Envoy's options here: the tests' usual two workers, and listener updates that drain in a second, so that a
/// replaced listener's root contexts are destroyed within the test.
fn options() -> Vec<&'static str> {
    let mut options = envoy::TEST_OPTIONS.to_vec();
    options.extend(["--drain-time-s", "1"]);
    options
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], wait::free_port()))
}

/// Renders `berth envoy-config` with `args` for `controller` and starts Envoy on it.
fn start_envoy(controller: SocketAddr, work: &Path, args: &[String]) -> Envoy {
    let (http, admin) = (free_addr(), free_addr());
    let bootstrap = envoy::render(controller, http, admin, work, args);
    Envoy::run("envoy", &bootstrap, http, admin, work, &options())
}

fn count(log: &str, line: &str) -> usize {
    log.lines().filter(|l| l.contains(line)).count()
}

/// Over `samples` reads of the admin interface, never more than one call to the controller in flight.
fn assert_one_poll_at_a_time(envoy: &Envoy, samples: usize) {
    for _ in 0..samples {
        let active = admin::stat(envoy.admin, "cluster.berth_controller.upstream_rq_active");
        assert!(active <= 1, "{active} calls to the controller at once:\n{}", envoy.log());
    }
}

/// Per worker, how many connections the listener on `port` accepted.
fn per_worker(envoy: &Envoy, port: u16) -> Vec<u64> {
    (0..2)
        .map(|worker| {
            admin::stat(envoy.admin, &format!("listener.127.0.0.1_{port}.worker_{worker}.downstream_cx_total"))
        })
        .collect()
}

#[test]
fn one_root_context_fetches_for_the_whole_envoy_and_every_worker_routes_http_tcp_and_tls() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (web, later) = (Backend::start("web"), Backend::start("later"));
    let db = TcpBackend::greeting("db ready\n");
    let api = TlsBackend::start(&ca, "api\n", &["api.example.com"]);
    let (tcp_first, tls_port) = (wait::free_port_range(2).0, wait::free_port_range(1).0);
    let objects = manifests::ManifestDir::new(&work.path().join("objects"));
    objects.write("cluster.yaml", &manifests::cluster().1);
    objects.write("services.yaml", &manifests::services(&[&web, &later]).1);
    objects.write(
        "more-services.yaml",
        &[node_port_service("db", 5432, db.addr.port()), node_port_service("api", 443, api.addr.port())].join("---\n"),
    );
    objects.write("web.yaml", &manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "web", 80)]));
    objects.write("alloc.yaml", &port_allocation("tcp", "tcp.example.com", tcp_first, tcp_first + 1));
    objects.write("db.yaml", &tcp_virtual_service("db", &[("db", 5432)]));
    objects.write("api.yaml", &tls_virtual_service("api", &["api.example.com"], &["api.example.com"], "api", 443));
    let controller_args =
        [format!("--tls-port={tls_port}"), format!("--state={}", work.path().join("state.json").display())];
    let mut controller = Controller::start_with(free_addr(), &objects.path, work.path(), &controller_args);
    let envoy = start_envoy(
        controller.addr,
        work.path(),
        &[format!("--tcp-ports={tcp_first}-{}", tcp_first + 1), format!("--tls-port={tls_port}")],
    );
    let bootstrap = std::fs::read_to_string(&envoy.config).unwrap();
    assert!(
        bootstrap.contains("dynamic_resources")
            && !bootstrap.contains("wasm")
            && !bootstrap.contains("berth_controller"),
        "nothing of Berth's in:\n{bootstrap}"
    );

    envoy.wait_for_backend("web.example", "/", "web");
    let db_port =
        wait::until("a port for db", Duration::from_secs(10), || controller.port_of("VirtualService default/db"));

    // Every worker routes each kind: enough new connections that the kernel hands some to each worker.
    wait::until("every worker to have routed HTTP, TCP and TLS", Duration::from_secs(30), || {
        for _ in 0..8 {
            let response = client::get(envoy.http, "web.example", "/").ok()?;
            assert_eq!(response.header("x-backend"), Some("web"), "{response:?}");
            let mut stream = connect(db_port);
            assert_eq!(read_exact(&mut stream, 9).ok()?, "db ready\n");
            let mut tls = handshake(tls_port, &ca, Some("api.example.com"), "api.example.com").ok()?;
            assert_eq!(tls.read_exact(4).ok()?, "api\n");
        }
        let ports = [envoy.http.port(), db_port, tls_port];
        ports.iter().all(|port| per_worker(&envoy, *port).iter().all(|n| *n > 0)).then_some(())
    });

    // One root context of the six (three filters on two workers) fetches, one long poll at a time.
    assert_eq!(count(&envoy.log(), WON), 1, "{}", envoy.log());
    assert_one_poll_at_a_time(&envoy, 20);
    let polls = admin::stat(envoy.admin, "cluster.berth_controller.upstream_rq_total");
    objects.write("later.yaml", &manifests::ingress("later", &[Rule("later.example", "/", "Prefix", "later", 80)]));
    envoy.wait_for_backend("later.example", "/", "later");
    let after = admin::stat(envoy.admin, "cluster.berth_controller.upstream_rq_total");
    assert!(after - polls <= 3, "a change costs the answer to the held poll and the next poll: {polls} -> {after}");

    // The controller goes away: Envoy keeps routing. It comes back on the same address: the next change arrives.
    controller.kill();
    wait::until("the fetch to fail reaching the controller", Duration::from_secs(10), || {
        (admin::stat(envoy.admin, "cluster.berth_controller.upstream_cx_connect_fail") >= 2).then_some(())
    });
    for _ in 0..10 {
        assert_eq!(envoy.get("web.example", "/").header("x-backend"), Some("web"));
    }
    objects.remove("later.yaml");
    objects.write("web.yaml", &manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "later", 80)]));
    let _controller = Controller::start_with(controller.addr, &objects.path, work.path(), &controller_args);
    envoy.wait_for_backend("web.example", "/", "later");
    assert_eq!(count(&envoy.log(), WON), 1, "the same root context fetches throughout");
    assert_one_poll_at_a_time(&envoy, 10);
}

#[test]
fn replacing_the_listeners_destroys_the_fetching_root_context_and_another_takes_over() {
    let work = tempfile::tempdir().unwrap();
    let (web, later) = (Backend::start("web"), Backend::start("later"));
    let objects = manifests::ManifestDir::new(&work.path().join("objects"));
    objects.write("cluster.yaml", &manifests::cluster().1);
    objects.write("services.yaml", &manifests::services(&[&web, &later]).1);
    objects.write("web.yaml", &manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "web", 80)]));
    let controller = Controller::start(&objects.path, work.path());
    let envoy = start_envoy(controller.addr, work.path(), &[]);
    envoy.wait_for_backend("web.example", "/", "web");
    assert_eq!(count(&envoy.log(), WON), 1);

    // A new version of the HTTP listener, as an xDS server would send it: its filter's plugin is renamed, so
    // Envoy builds a new filter configuration (new root contexts on every worker) and destroys the old one once
    // the old filter chain has drained.
    let lds = envoy::resource_file(&envoy.config, "lds_config");
    let mut listeners = envoy::read_resources(&lds);
    let plugin = &mut listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]
        ["config"];
    assert_eq!(plugin["name"], "berth_http");
    plugin["name"] = json!("berth_http_v2");
    plugin["root_id"] = json!("berth_http_v2");
    envoy::write_resources(&lds, envoy::LISTENER_TYPE, &listeners);
    wait::until("Envoy to apply the new listener", Duration::from_secs(10), || {
        (admin::stat(envoy.admin, "listener_manager.listener_modified") >= 1).then_some(())
    });
    wait::until("the old root contexts to go and another to fetch", Duration::from_secs(20), || {
        (count(&envoy.log(), WON) >= 2).then_some(())
    });
    let log = envoy.log();
    assert!(log.contains("released the fetch lease"), "the destroyed root context handed the lease over:\n{log}");
    assert!(
        log.lines().any(|l| l.contains("berth_http_v2") && l.contains(WON)),
        "a root context of the new listener fetches:\n{log}"
    );

    // Fetching goes on: a later change arrives.
    objects.write("web.yaml", &manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "later", 80)]));
    envoy.wait_for_backend("web.example", "/", "later");
    assert_one_poll_at_a_time(&envoy, 10);
}

/// The listener a gateway shares with Berth (the WasmPlugin path): its own route sends `istio.example` to a
/// cluster of its own, everything else to Berth's `ORIGINAL_DST` cluster, and the filter, in `unknown_host:
/// continue` mode, leaves the hosts it does not know to those routes.
#[test]
fn in_continue_mode_hosts_berth_does_not_know_keep_the_listeners_own_routes() {
    let work = tempfile::tempdir().unwrap();
    let (web, istio) = (Backend::start("web"), Backend::start("istio"));
    let objects = manifests::ManifestDir::new(&work.path().join("objects"));
    objects.write("cluster.yaml", &manifests::cluster().1);
    objects.write("services.yaml", &manifests::services(&[&web]).1);
    objects.write("web.yaml", &manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "web", 80)]));
    let controller = Controller::start(&objects.path, work.path());
    let (http, admin_addr) = (free_addr(), free_addr());
    let bootstrap = envoy::render(controller.addr, http, admin_addr, work.path(), &[]);

    let istio_cluster = "outbound|80||istio.example";
    let cds = envoy::resource_file(&bootstrap, "cds_config");
    let mut clusters = envoy::read_resources(&cds);
    clusters.push(json!({
        "name": istio_cluster,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": { "cluster_name": istio_cluster, "endpoints": [{ "lb_endpoints": [{ "endpoint": {
            "address": { "socket_address": { "address": "127.0.0.1", "port_value": istio.addr.port() } } } }] }] },
    }));
    envoy::write_resources(&cds, envoy::CLUSTER_TYPE, &clusters);
    let lds = envoy::resource_file(&bootstrap, "lds_config");
    let mut listeners = envoy::read_resources(&lds);
    let hcm = &mut listeners[0]["filter_chains"][0]["filters"][0]["typed_config"];
    let hosts = hcm["route_config"]["virtual_hosts"].as_array_mut().unwrap();
    hosts.insert(
        0,
        json!({
            "name": "istio",
            "domains": ["istio.example"],
            "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": istio_cluster } }],
        }),
    );
    let configuration = &mut hcm["http_filters"][0]["typed_config"]["config"]["configuration"]["value"];
    let mut plugin: Value = serde_json::from_str(configuration.as_str().unwrap()).unwrap();
    plugin["unknown_host"] = json!("continue");
    *configuration = json!(plugin.to_string());
    envoy::write_resources(&lds, envoy::LISTENER_TYPE, &listeners);
    envoy::validate(&bootstrap).unwrap();

    let envoy = Envoy::run("envoy", &bootstrap, http, admin_addr, work.path(), envoy::TEST_OPTIONS);
    envoy.wait_for_backend("web.example", "/", "web");
    for _ in 0..10 {
        let response = envoy.get("istio.example", "/anything");
        assert_eq!(response.header("x-backend"), Some("istio"), "{response:?}");
        assert_eq!(envoy.get("web.example", "/").header("x-backend"), Some("web"));
    }
    // A host nobody serves goes to Berth's cluster by the listener's routes: Berth answers, never passes it on
    // without a destination.
    let miss = envoy.get("nobody.example", "/");
    assert_eq!((miss.status, miss.header("x-berth")), (404, Some("no-route")), "{miss:?}");
}
