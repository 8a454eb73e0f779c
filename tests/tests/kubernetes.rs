//! Kubernetes mode end to end: the Kubernetes API test server as a real process, the real `kubectl` driving it
//! as a user would, `berth run --source kube` watching it and writing back, real Envoy with the built filter
//! routing to loopback backends.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_tests::kube::{KubeApiServer, Kubectl};
use berth_tests::manifests::{self, HttpRoute, Rule, node_port_service, port_allocation, tcp_virtual_service};
use berth_tests::tcp_client::{connect, read_exact};
use berth_tests::{Backend, Controller, Envoy, TcpBackend, paths, wait};

const EXPOSED: &str = "  annotations:\n    berth.dev/expose: \"true\"\n";

/// `kubectl apply`s the CRDs a cluster running Berth has: Berth's PortAllocation and Istio's VirtualService.
fn install_crds(kubectl: &Kubectl) {
    let crd = |path: &Path| std::fs::read_to_string(path).expect("read CRD");
    kubectl.apply(&crd(&paths::workspace().join("controller/deploy/crds/portallocation.yaml")));
    kubectl.apply(&crd(&paths::workspace().join("tests/fixtures/virtualservice-crd.yaml")));
}

fn annotation(kubectl: &Kubectl, vs: &str, name: &str) -> String {
    let path = format!("{{.metadata.annotations['{}']}}", name.replace('.', "\\."));
    kubectl.jsonpath(&["virtualservice", vs], &path)
}

/// The port in `berth.dev/address: tcp.example.com:PORT`, once the controller has written it.
fn wait_address(kubectl: &Kubectl, vs: &str) -> u16 {
    wait::until(&format!("berth.dev/address on {vs}"), Duration::from_secs(10), || {
        let yaml = kubectl.ok(&["get", "virtualservice", vs, "-o", "yaml"]);
        let line = yaml.lines().find(|l| l.trim_start().starts_with("berth.dev/address:"))?;
        line.trim().strip_prefix("berth.dev/address: tcp.example.com:")?.trim().parse().ok()
    })
}

fn wait_greeting(port: u16, greeting: &str) {
    wait::until(&format!("port {port} to reach the {greeting:?} backend"), Duration::from_secs(10), || {
        let mut stream = connect(port);
        read_exact(&mut stream, greeting.len()).ok().filter(|g| g == greeting)
    });
}

#[test]
fn kubectl_drives_routing_and_berth_writes_back() {
    let started = Instant::now();
    let work = tempfile::tempdir().expect("temp dir");
    let api = KubeApiServer::start(work.path());
    let kubectl = api.kubectl();
    install_crds(&kubectl);

    let (web, shop) = (Backend::start("web"), Backend::start("shop"));
    let db = TcpBackend::greeting("db ready\n");
    let range = wait::free_port_range(5);
    let web_vs = manifests::virtual_service("web", &["web.example.com"], &[HttpRoute("prefix", "/", "web", 80)]);
    let db_vs = tcp_virtual_service("db", &[("db", 5432)]);
    kubectl.apply(
        &[
            manifests::node("n1", "127.0.0.1"),
            manifests::ingress_class(),
            port_allocation("tcp", "tcp.example.com", range.0, range.1),
            node_port_service("web", 80, web.addr.port()),
            node_port_service("shop", 80, shop.addr.port()),
            node_port_service("db", 5432, db.addr.port()),
            web_vs.replace(EXPOSED, ""),
            db_vs.replace(EXPOSED, ""),
            manifests::ingress("shop", &[Rule("shop.example.com", "/", "Prefix", "shop", 80)]),
        ]
        .join("---\n"),
    );

    let controller = Controller::start_kube(&api.kubeconfig, work.path(), &["--ingress-address=127.0.0.1".into()]);
    let envoy = Envoy::start_with(controller.addr, work.path(), &[format!("--tcp-ports={}-{}", range.0, range.1)]);
    envoy.wait_for_backend("shop.example.com", "/", "shop");
    assert_eq!(envoy.get("web.example.com", "/").status, 404, "not exposed yet");
    wait::until("the Ingress's status", Duration::from_secs(10), || {
        let ip = kubectl.jsonpath(&["ingress", "shop"], "{.status.loadBalancer.ingress[0].ip}");
        (ip == "127.0.0.1").then_some(())
    });

    // Exposing is one annotation; the tcp route's address comes back on the object.
    kubectl.ok(&["annotate", "virtualservice", "web", "berth.dev/expose=true"]);
    envoy.wait_for_backend("web.example.com", "/", "web");
    kubectl.ok(&["annotate", "virtualservice", "db", "berth.dev/expose=true"]);
    let port = wait_address(&kubectl, "db");
    assert!((range.0..=range.1).contains(&port), "{port} in {range:?}");
    wait_greeting(port, "db ready\n");

    // A patch changes routing.
    kubectl.ok(&["patch", "virtualservice", "web", "--type=merge", "-p", r#"{"spec":{"hosts":["www.example.com"]}}"#]);
    envoy.wait_for_backend("www.example.com", "/", "web");

    // A bad spec: its own error annotation and an Event; the rest keep routing.
    let broken =
        manifests::virtual_service("broken", &["broken.example.com"], &[HttpRoute("prefix", "/", "missing", 80)]);
    kubectl.apply(&broken);
    let error = wait::until("berth.dev/error on broken", Duration::from_secs(10), || {
        Some(annotation(&kubectl, "broken", "berth.dev/error")).filter(|e| !e.is_empty())
    });
    assert!(error.contains("missing"), "the annotation names what is wrong: {error}");
    wait::until("an Event for broken", Duration::from_secs(10), || {
        let events = kubectl.ok(&[
            "get",
            "events",
            "-o",
            "jsonpath={range .items[*]}{.involvedObject.name}|{.reason}|{.message}{\"\\n\"}{end}",
        ]);
        events.lines().find(|l| l.starts_with("broken|BerthError|") && l.contains("missing")).map(str::to_string)
    });
    envoy.wait_for_backend("www.example.com", "/", "web");
    wait_greeting(port, "db ready\n");

    // Fixing it removes the annotation.
    kubectl.apply(&node_port_service("missing", 80, web.addr.port()));
    wait::until("berth.dev/error removed", Duration::from_secs(10), || {
        annotation(&kubectl, "broken", "berth.dev/error").is_empty().then_some(())
    });
    envoy.wait_for_backend("broken.example.com", "/", "web");

    // Steady state: a change that alters nothing Berth writes makes Berth write nothing.
    let before = api.writes();
    kubectl.ok(&["patch", "virtualservice", "web", "--type=merge", "-p", r#"{"spec":{"hosts":["web.example.com"]}}"#]);
    envoy.wait_for_backend("web.example.com", "/", "web");
    let quiet = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet {
        assert_eq!(api.writes(), before + 1, "only kubectl's patch: {}", api.counts());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
fn a_cut_watch_loses_nothing_and_an_outage_keeps_the_last_table() {
    let started = Instant::now();
    let work = tempfile::tempdir().expect("temp dir");
    let mut api = KubeApiServer::start(work.path());
    let kubectl = api.kubectl();
    install_crds(&kubectl);
    let web = Backend::start("web");
    kubectl.apply(
        &[
            manifests::node("n1", "127.0.0.1"),
            node_port_service("web", 80, web.addr.port()),
            manifests::virtual_service("web", &["a.example.com"], &[HttpRoute("prefix", "/", "web", 80)]),
        ]
        .join("---\n"),
    );
    let controller = Controller::start_kube(&api.kubeconfig, work.path(), &[]);
    let envoy = Envoy::start(controller.addr, work.path());
    envoy.wait_for_backend("a.example.com", "/", "web");

    // Cut every watch, then change: the watch resumes from its resourceVersion and the change arrives.
    api.fault("cut-watches");
    kubectl.ok(&["patch", "virtualservice", "web", "--type=merge", "-p", r#"{"spec":{"hosts":["b.example.com"]}}"#]);
    envoy.wait_for_backend("b.example.com", "/", "web");

    // The API server dies: Envoy keeps routing by the last table, and berth says the source is stale.
    api.kill();
    wait::until("the source to be stale", Duration::from_secs(10), || {
        (controller.routes()["stale"] == true).then_some(())
    });
    let out = berth_tests::controller::berth(&["routes", &format!("--controller={}", controller.addr)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("source kube: stale since "), "{text}");
    assert_eq!(envoy.get("b.example.com", "/").header("x-backend"), Some("web"));

    // Back from its state file: the controller resyncs and follows changes again.
    api.restart();
    wait::until("the source to be fresh", Duration::from_secs(10), || {
        (controller.routes()["stale"] == false).then_some(())
    });
    kubectl.ok(&["patch", "virtualservice", "web", "--type=merge", "-p", r#"{"spec":{"hosts":["c.example.com"]}}"#]);
    envoy.wait_for_backend("c.example.com", "/", "web");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}
