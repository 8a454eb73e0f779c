//! High availability: two `berth run --source kube --leader-elect` replicas against one Kubernetes API (the test
//! server), real Envoy fetching from the follower. Exactly one replica writes back; when the leader is killed the
//! other takes over within the lease, keeps every port, and existing routes never fail. Both make session cookies
//! with one key, so a session stays put whichever replica Envoy fetched its table from.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_tests::backend::pods;
use berth_tests::client::get_with_cookie;
use berth_tests::kube::{KubeApiServer, Kubectl};
use berth_tests::load::{Load, StopOnDrop};
use berth_tests::manifests::{self, HttpRoute, node_port_service, port_allocation, tcp_virtual_service};
use berth_tests::tcp_client::{connect, read_exact};
use berth_tests::{Backend, Controller, Envoy, TcpBackend, client, wait};

const LEASE_NAMESPACE: &str = "berth-system";

fn replica(api: &KubeApiServer, dir: &std::path::Path, name: &str) -> Controller {
    replica_in(api, dir, name, LEASE_NAMESPACE)
}

/// A replica whose Lease and session key's Secret are in `namespace`.
fn replica_in(api: &KubeApiServer, dir: &std::path::Path, name: &str, namespace: &str) -> Controller {
    let log_dir = dir.join(name);
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let args = [
        "--leader-elect".to_string(),
        format!("--leader-elect-identity={name}"),
        format!("--leader-elect-namespace={namespace}"),
        // Short, so the takeover happens within the test; the Deployment keeps the 15 s default.
        "--leader-elect-duration=3s".to_string(),
    ];
    Controller::start_kube(&api.kubeconfig, &log_dir, &args)
}

fn holder(kubectl: &Kubectl) -> String {
    kubectl.jsonpath(&["lease", "berth", "-n", LEASE_NAMESPACE], "{.spec.holderIdentity}")
}

fn wait_holder(kubectl: &Kubectl, name: &str) {
    wait::until(&format!("{name} to hold the Lease"), Duration::from_secs(20), || {
        (kubectl.run(&["get", "lease", "berth", "-n", LEASE_NAMESPACE]).status.success() && holder(kubectl) == name)
            .then_some(())
    });
}

/// VirtualService patches served so far: what write-back costs, whoever does it.
fn virtual_service_patches(api: &KubeApiServer) -> u64 {
    api.counts()["patch virtualservices"].as_u64().unwrap_or(0)
}

fn expose_tcp(kubectl: &Kubectl, name: &str) -> u16 {
    kubectl.apply(&tcp_virtual_service(name, &[("db", 5432)]));
    kubectl.wait_address(name)
}

#[test]
fn one_replica_writes_and_the_other_takes_over_keeping_ports_and_routes() {
    let work = tempfile::tempdir().expect("temp dir");
    let api = KubeApiServer::start(work.path());
    let kubectl = api.kubectl();
    kubectl.install_crds();
    kubectl.ok(&["create", "namespace", LEASE_NAMESPACE]);
    let web = Backend::start("web");
    let db = TcpBackend::greeting("db ready\n");
    let range = wait::free_port_range(10);
    kubectl.apply(
        &[
            manifests::node("n1", "127.0.0.1"),
            port_allocation("tcp", "tcp.example.com", range.0, range.1),
            node_port_service("web", 80, web.addr.port()),
            node_port_service("db", 5432, db.addr.port()),
            manifests::virtual_service("web", &["web.example.com"], &[HttpRoute("prefix", "/", "web", 80)]),
        ]
        .join("---\n"),
    );

    // One replica alone leads and writes back; what one exposure costs in writes is the yardstick.
    let mut first = replica(&api, work.path(), "a");
    wait_holder(&kubectl, "a");
    let before = virtual_service_patches(&api);
    let db_port = expose_tcp(&kubectl, "db");
    let alone = virtual_service_patches(&api) - before;
    assert!(alone >= 1, "the leader wrote berth.dev/address");

    // A second replica follows: it serves the same routes, learning the port from the annotation, and writes nothing.
    let second = replica(&api, work.path(), "b");
    wait::until("the follower to serve the leader's port", Duration::from_secs(20), || {
        (second.port_of("VirtualService default/db") == Some(db_port)).then_some(())
    });
    assert_eq!(holder(&kubectl), "a");
    let before = virtual_service_patches(&api);
    let cache_port = expose_tcp(&kubectl, "cache");
    wait::until("the follower to serve the new port", Duration::from_secs(20), || {
        (second.port_of("VirtualService default/cache") == Some(cache_port)).then_some(())
    });
    assert_eq!(virtual_service_patches(&api) - before, alone, "exactly one replica wrote: {}", api.counts());

    // Envoy fetches from the follower; traffic flows while the leader is killed.
    let envoy = Envoy::start_with(second.addr, work.path(), &[format!("--tcp-ports={}-{}", range.0, range.1)]);
    envoy.wait_for_backend("web.example.com", "/", "web");
    let (stop, load) = (AtomicBool::new(false), Load::default());
    let listener = envoy.http;
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let web_ok = client::get(listener, "web.example.com", "/")
                    .is_ok_and(|r| r.status == 200 && r.header("x-backend") == Some("web"));
                let db_ok = read_exact(&mut connect(db_port), 9).is_ok_and(|g| g == "db ready\n");
                load.record(web_ok && db_ok);
            }
        });
        load.wait_for(20);

        first.kill();
        wait_holder(&kubectl, "b");
        // The new leader writes back: a new exposure gets its address, and the old ports stay.
        let after_port = expose_tcp(&kubectl, "queue");
        assert!(![db_port, cache_port].contains(&after_port), "a fresh port: {after_port}");
        assert_eq!(kubectl.wait_address("db"), db_port);
        assert_eq!(kubectl.wait_address("cache"), cache_port);
        assert_eq!(second.port_of("VirtualService default/db"), Some(db_port));
        load.wait_for(20);
    });
    assert_eq!(load.failed(), 0, "of {} rounds", load.sent());
}

#[test]
fn a_leader_stopped_cleanly_hands_over_without_waiting_out_the_lease() {
    let work = tempfile::tempdir().expect("temp dir");
    let api = KubeApiServer::start(work.path());
    let kubectl = api.kubectl();
    kubectl.install_crds();
    kubectl.ok(&["create", "namespace", LEASE_NAMESPACE]);
    let mut first = replica(&api, work.path(), "a");
    wait_holder(&kubectl, "a");
    let _second = replica(&api, work.path(), "b");

    // A pod being replaced gets SIGTERM: the leader releases the Lease before it exits, so it is never left
    // naming a replica that is gone.
    assert!(first.terminate().is_some_and(|status| status.success()), "clean exit:\n{}", first.log());
    assert_ne!(holder(&kubectl), "a", "released on exit");
    wait_holder(&kubectl, "b");
}

/// The session key in the table `controller` serves.
fn served_key(controller: &Controller) -> String {
    let response = client::get(controller.addr, "controller", "/v1/table").expect("GET /v1/table");
    let table: serde_json::Value = serde_json::from_str(&response.body).expect("table JSON");
    table["affinity_key"].as_str().unwrap_or_else(|| panic!("no affinity_key in {table}")).to_string()
}

#[test]
fn replicas_share_the_session_key_so_a_cookie_issued_through_one_is_honoured_through_the_other() {
    let work = tempfile::tempdir().expect("temp dir");
    let api = KubeApiServer::start(work.path());
    let kubectl = api.kubectl();
    kubectl.install_crds();
    kubectl.ok(&["create", "namespace", LEASE_NAMESPACE]);
    let shop = pods(&["shop-a", "shop-b", "shop-c"], 2);
    let port = shop[0].addr.port();
    let ips: Vec<String> = shop.iter().map(|pod| pod.addr.ip().to_string()).collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    kubectl.apply(
        &[
            manifests::pod_service("shop", port),
            manifests::endpoint_slice("shop", "shop", port, &ips),
            manifests::sticky_virtual_service("shop", "shop.example", "shop", port, "berth-session"),
        ]
        .join("---\n"),
    );

    // Two replicas, each with an Envoy fetching from it (as Envoys behind the controller's Service do).
    let replicas = [replica(&api, work.path(), "a"), replica(&api, work.path(), "b")];
    assert!(
        kubectl.run(&["get", "secret", "berth-session-key", "-n", LEASE_NAMESPACE]).status.success(),
        "the first replica made the Secret"
    );
    let envoys = replicas.each_ref().map(|replica| {
        let dir = work.path().join(format!("envoy-{}", replica.addr.port()));
        std::fs::create_dir_all(&dir).expect("envoy dir");
        let envoy = Envoy::start(replica.addr, &dir);
        wait::until("Envoy to route shop.example", Duration::from_secs(10), || {
            client::get(envoy.http, "shop.example", "/").ok().filter(|r| r.status == 200)
        });
        envoy
    });

    // A cookie issued through either is honoured through the other: the same pod, and no new cookie.
    for (issuer, other) in [(&envoys[0], &envoys[1]), (&envoys[1], &envoys[0])] {
        let (pod, issued) = get_with_cookie(issuer.http, "shop.example", None);
        let cookie = issued.expect("the first response sets the session cookie");
        for _ in 0..20 {
            assert_eq!(get_with_cookie(other.http, "shop.example", Some(&cookie)), (pod.clone(), None), "{cookie}");
        }
    }

    // A replica that can neither read nor create the Secret (here: its namespace does not exist) still serves,
    // with a key of its own: what the test above would have caught.
    let alone = replica_in(&api, work.path(), "c", "nowhere");
    assert_eq!(served_key(&replicas[0]), served_key(&replicas[1]));
    assert_ne!(served_key(&alone), served_key(&replicas[0]));
    assert!(alone.log().contains("uses a key of its own"), "{}", alone.log());
}
