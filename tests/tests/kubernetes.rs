//! Kubernetes mode end to end: the Kubernetes API test server as a real process, the real `kubectl` driving it
//! as a user would, `berth run --source kube` watching it and writing back, real Envoy with the built filter
//! routing to loopback backends.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_tests::kube::{KubeApiServer, Kubectl};
use berth_tests::manifests::{self, HttpRoute, Rule, node_port_service, port_allocation, tcp_virtual_service};
use berth_tests::tcp_client::{connect, read_exact};
use berth_tests::{Backend, Controller, Envoy, TcpBackend, wait};

const EXPOSED: &str = "  annotations:\n    berth.dev/expose: \"true\"\n";

fn annotation(kubectl: &Kubectl, vs: &str, name: &str) -> String {
    kubectl.annotation(&["virtualservice", vs], name)
}

fn wait_greeting(port: u16, greeting: &str) {
    wait::until(&format!("port {port} to reach the {greeting:?} backend"), Duration::from_secs(10), || {
        let mut stream = connect(port);
        read_exact(&mut stream, greeting.len()).ok().filter(|g| g == greeting)
    });
}

#[test]
fn kubectl_drives_routing_and_berth_writes_back() {
    let work = tempfile::tempdir().expect("temp dir");
    let api = KubeApiServer::start(work.path());
    let kubectl = api.kubectl();
    kubectl.install_crds();

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
    let port = kubectl.wait_address("db");
    assert_eq!(annotation(&kubectl, "db", "berth.dev/address"), format!("tcp.example.com:{port}"));
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
        kubectl.events_about("broken").into_iter().find(|e| e.reason == "BerthError" && e.message.contains("missing"))
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
}

/// Installs the CRDs and applies a VirtualService routing `a.example.com` to `web`, then starts the controller
/// watching `api` and Envoy routing by it, and waits until the route answers.
fn route_to(web: &Backend, api: &KubeApiServer, work: &Path) -> (Controller, Envoy) {
    let kubectl = api.kubectl();
    kubectl.install_crds();
    kubectl.apply(
        &[
            manifests::node("n1", "127.0.0.1"),
            node_port_service("web", 80, web.addr.port()),
            manifests::virtual_service("web", &["a.example.com"], &[HttpRoute("prefix", "/", "web", 80)]),
        ]
        .join("---\n"),
    );
    let controller = Controller::start_kube(&api.kubeconfig, work, &[]);
    let envoy = Envoy::start(controller.addr, work);
    envoy.wait_for_backend("a.example.com", "/", "web");
    (controller, envoy)
}

#[test]
fn a_cut_watch_loses_nothing_and_an_outage_keeps_the_last_table() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut api = KubeApiServer::start(work.path());
    let kubectl = api.kubectl();
    let web = Backend::start("web");
    let (controller, envoy) = route_to(&web, &api, work.path());

    // Cut every watch, then change: the watch resumes from its resourceVersion and the change arrives.
    api.fault("cut-watches");
    kubectl.ok(&["patch", "virtualservice", "web", "--type=merge", "-p", r#"{"spec":{"hosts":["b.example.com"]}}"#]);
    envoy.wait_for_backend("b.example.com", "/", "web");

    // Locked out (503) while a change lands and the history is compacted: the watches come back to 410 Gone,
    // relist, and the change arrives all the same.
    api.fault("pause");
    api.create_objects(&manifests::virtual_service(
        "late",
        &["late.example.com"],
        &[HttpRoute("prefix", "/", "web", 80)],
    ));
    api.fault("compact");
    api.fault("resume");
    envoy.wait_for_backend("late.example.com", "/", "web");

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
}

#[test]
fn the_controller_watches_an_api_server_over_https() {
    let work = tempfile::tempdir().expect("temp dir");
    let api = KubeApiServer::start_tls(work.path());
    let kubeconfig = std::fs::read_to_string(&api.kubeconfig).expect("kubeconfig");
    assert!(kubeconfig.contains("server: https://127.0.0.1:"), "{kubeconfig}");
    assert!(kubeconfig.contains("certificate-authority-data: "), "{kubeconfig}");
    // kubectl, too, talks TLS to it, trusting the CA of the kubeconfig.
    let kubectl = api.kubectl();
    let web = Backend::start("web");
    let (_controller, envoy) = route_to(&web, &api, work.path());

    // Changes arrive through the watch, and write-back goes out, over TLS.
    kubectl.ok(&["patch", "virtualservice", "web", "--type=merge", "-p", r#"{"spec":{"hosts":["b.example.com"]}}"#]);
    envoy.wait_for_backend("b.example.com", "/", "web");
    kubectl.apply(&manifests::virtual_service("broken", &["c.example.com"], &[HttpRoute("prefix", "/", "gone", 80)]));
    let error = wait::until("berth.dev/error on broken", Duration::from_secs(10), || {
        Some(annotation(&kubectl, "broken", "berth.dev/error")).filter(|e| !e.is_empty())
    });
    assert!(error.contains("gone"), "{error}");
}

/// The hosts of the http routes a controller serves.
fn hosts(controller: &Controller) -> Vec<String> {
    let routes = controller.routes();
    let http = routes["table"]["http"].as_array().cloned().unwrap_or_default();
    let mut hosts: Vec<String> = http.iter().map(|r| r["host"].as_str().unwrap_or_default().to_string()).collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

#[test]
fn namespaced_objects_are_read_from_every_namespace_but_kube_system_or_from_the_one_given() {
    let work = tempfile::tempdir().expect("temp dir");
    let api = KubeApiServer::start(work.path());
    let kubectl = api.kubectl();
    kubectl.install_crds();
    kubectl.ok(&["create", "namespace", "shop"]);
    let mut objects = vec![manifests::node("n1", "127.0.0.1")];
    for (namespace, host) in
        [("default", "default.example.com"), ("shop", "shop.example.com"), ("kube-system", "system.example.com")]
    {
        let in_namespace = |yaml: String| yaml.replace("namespace: default", &format!("namespace: {namespace}"));
        objects.push(in_namespace(node_port_service("web", 80, 30080)));
        objects.push(in_namespace(manifests::virtual_service("web", &[host], &[HttpRoute("prefix", "/", "web", 80)])));
    }
    kubectl.apply(&objects.join("---\n"));

    // Ready means every kind is listed and compiled: what is served now is all the lists held.
    let dir = |name: &str| {
        let dir = work.path().join(name);
        std::fs::create_dir_all(&dir).expect("log dir");
        dir
    };
    let everywhere = Controller::start_kube(&api.kubeconfig, &dir("all"), &[]);
    assert_eq!(hosts(&everywhere), ["default.example.com", "shop.example.com"], "kube-system is left out");
    let shop = Controller::start_kube(&api.kubeconfig, &dir("shop"), &["--namespace=shop".into()]);
    assert_eq!(hosts(&shop), ["shop.example.com"]);
    let system = Controller::start_kube(&api.kubeconfig, &dir("system"), &["--namespace=kube-system".into()]);
    assert_eq!(hosts(&system), ["system.example.com"], "kube-system when asked for");

    // Changes follow the same scoping: one in default reaches only the controller that reads default.
    let patch = r#"{"spec":{"hosts":["default2.example.com"]}}"#;
    kubectl.ok(&["patch", "virtualservice", "web", "-n", "default", "--type=merge", "-p", patch]);
    let patch = r#"{"spec":{"hosts":["shop2.example.com"]}}"#;
    kubectl.ok(&["patch", "virtualservice", "web", "-n", "shop", "--type=merge", "-p", patch]);
    wait::until("both changes in the controller reading every namespace", Duration::from_secs(10), || {
        (hosts(&everywhere) == ["default2.example.com", "shop2.example.com"]).then_some(())
    });
    wait::until("the shop change in the controller reading shop", Duration::from_secs(10), || {
        (hosts(&shop) == ["shop2.example.com"]).then_some(())
    });
    assert_eq!(hosts(&system), ["system.example.com"]);
}
