//! Kubernetes mode without the CRDs it reads: Berth starts, serves what it can and says what is missing; when
//! Istio's VirtualService CRD and Berth's PortAllocation CRD are installed later (or removed), it follows without
//! a restart.

use std::time::Duration;

use berth_tests::kube::{Crd, KubeApiServer};
use berth_tests::manifests::{self, HttpRoute, Rule, node_port_service, port_allocation, tcp_virtual_service};
use berth_tests::tcp_client::{connect, read_exact};
use berth_tests::{Backend, Controller, Envoy, TcpBackend, wait};

#[test]
fn crds_installed_after_the_start_are_picked_up_and_missing_ones_are_explained() {
    let work = tempfile::tempdir().expect("temp dir");
    let api = KubeApiServer::start(work.path());
    let kubectl = api.kubectl();
    let (web, shop) = (Backend::start("web"), Backend::start("shop"));
    let db = TcpBackend::greeting("db ready\n");
    let range = wait::free_port_range(3);
    kubectl.apply(
        &[
            manifests::node("n1", "127.0.0.1"),
            manifests::ingress_class(),
            node_port_service("web", 80, web.addr.port()),
            node_port_service("shop", 80, shop.addr.port()),
            node_port_service("db", 5432, db.addr.port()),
            manifests::ingress("shop", &[Rule("shop.example.com", "/", "Prefix", "shop", 80)]),
        ]
        .join("---\n"),
    );

    // Neither CRD: ready all the same, Ingresses served, both gaps said in `berth routes`.
    let controller = Controller::start_kube(&api.kubeconfig, work.path(), &[]);
    let envoy = Envoy::start_with(controller.addr, work.path(), &[format!("--tcp-ports={}-{}", range.0, range.1)]);
    envoy.wait_for_backend("shop.example.com", "/", "shop");
    let routes = berth_tests::controller::berth(&["routes", &format!("--controller={}", controller.addr)]);
    let text = String::from_utf8_lossy(&routes.stdout);
    assert!(text.contains("virtualservices.networking.istio.io is not installed"), "{text}");
    assert!(text.contains("portallocations.berth.dev is not installed"), "{text}");

    // Istio's CRD arrives: VirtualServices are watched from now on, no restart.
    kubectl.install(&Crd::VirtualService);
    kubectl.apply(
        &[
            manifests::virtual_service("web", &["web.example.com"], &[HttpRoute("prefix", "/", "web", 80)]),
            tcp_virtual_service("db", &[("db", 5432)]),
        ]
        .join("---\n"),
    );
    envoy.wait_for_backend("web.example.com", "/", "web");

    // TCP without the PortAllocation CRD: the object says what to install, and where it is.
    let error = wait::until("berth.dev/error on db", Duration::from_secs(10), || {
        Some(kubectl.annotation(&["virtualservice", "db"], "berth.dev/error")).filter(|e| !e.is_empty())
    });
    assert!(error.contains("PortAllocation CRD") && error.contains("controller/deploy/crds/"), "{error}");
    assert!(
        controller
            .errors()
            .iter()
            .any(|e| e.starts_with("VirtualService default/db: ") && e.contains("controller/deploy/crds/"))
    );
    wait::until("an Event on db", Duration::from_secs(10), || {
        kubectl.events_about("db").into_iter().find(|e| e.message.contains("controller/deploy/crds/"))
    });
    assert!(controller.log().contains("portallocations.berth.dev is not installed"), "the log says it too");
    envoy.wait_for_backend("shop.example.com", "/", "shop");

    // The CRD and a PortAllocation arrive: the port is handed out and written back, the error goes.
    kubectl.install(&Crd::PortAllocation);
    kubectl.apply(&port_allocation("tcp", "tcp.example.com", range.0, range.1));
    let port = kubectl.wait_address("db");
    assert_eq!(kubectl.annotation(&["virtualservice", "db"], "berth.dev/address"), format!("tcp.example.com:{port}"));
    assert!((range.0..=range.1).contains(&port), "{port} in {range:?}");
    assert_eq!(kubectl.annotation(&["virtualservice", "db"], "berth.dev/error"), "");
    wait::until("the db port to reach its backend", Duration::from_secs(10), || {
        let mut stream = connect(port);
        read_exact(&mut stream, 9).ok().filter(|g| g == "db ready\n")
    });
    let routes = controller.routes();
    assert!(!routes.to_string().contains("not installed"), "neither error nor warning is left: {routes}");

    // Istio's CRD is removed (and with it every VirtualService): their routes go, the rest stays.
    kubectl.ok(&["delete", "customresourcedefinition", "virtualservices.networking.istio.io"]);
    wait::until("web.example.com to be unrouted", Duration::from_secs(10), || {
        (envoy.get("web.example.com", "/").status == 404).then_some(())
    });
    envoy.wait_for_backend("shop.example.com", "/", "shop");
    let routes = controller.routes();
    assert!(routes.to_string().contains("virtualservices.networking.istio.io is not installed"), "{routes}");
}
