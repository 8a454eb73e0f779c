//! High availability: two `berth run --source kube --leader-elect` replicas against one Kubernetes API (the test
//! server), real Envoy fetching from the follower. Exactly one replica writes back; when the leader is killed the
//! other takes over within the lease, keeps every port, and existing routes never fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_tests::kube::{KubeApiServer, Kubectl};
use berth_tests::load::{Load, StopOnDrop};
use berth_tests::manifests::{self, HttpRoute, node_port_service, port_allocation, tcp_virtual_service};
use berth_tests::tcp_client::{connect, read_exact};
use berth_tests::{Backend, Controller, Envoy, TcpBackend, client, wait};

const LEASE_NAMESPACE: &str = "berth-system";

fn replica(api: &KubeApiServer, dir: &std::path::Path, name: &str) -> Controller {
    let log_dir = dir.join(name);
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let args = [
        "--leader-elect".to_string(),
        format!("--leader-elect-identity={name}"),
        format!("--leader-elect-namespace={LEASE_NAMESPACE}"),
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
