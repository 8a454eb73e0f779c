//! TLS passthrough end to end: VirtualServices with `tls:` routes, Envoy's TLS listener (`tls_inspector`, the
//! filter choosing the destination by server name, `tcp_proxy`), and real TLS backends on loopback presenting
//! certificates of their own, made at test time. A client that reaches a backend sees that backend's certificate
//! (verified against the test CA for the name it asked for) and its bytes; Envoy never terminates TLS.

use std::time::Duration;

use berth_tests::kube::KubeApiServer;
use berth_tests::manifests::{self, node_port_service, port_allocation, tls_virtual_service};
use berth_tests::tcp_client::{connect, is_closed_on_connect, read_exact};
use berth_tests::tls_client::{TlsClient, closed_by_peer, handshake};
use berth_tests::{Controller, Envoy, Stack, TcpBackend, TestCa, TlsBackend, admin, wait};

const UNROUTED: &str = "wasmcustom.berth_tls_unrouted";

/// Starts the controller and Envoy, both told that TLS passthrough is served on `tls_port`.
fn start(files: &[(&str, String)], tls_port: u16) -> Stack {
    let arg = format!("--tls-port={tls_port}");
    Stack::start_with(files, |_| vec![arg.clone()], std::slice::from_ref(&arg))
}

/// A port for Envoy's TLS listener, from below the ephemeral range so that no other test's free port takes it.
fn tls_port() -> u16 {
    wait::free_port_range(1).0
}

fn services(backends: &[(&str, &TlsBackend)]) -> (&'static str, String) {
    let services: Vec<String> =
        backends.iter().map(|(name, backend)| node_port_service(name, 443, backend.addr.port())).collect();
    ("services.yaml", services.join("---\n"))
}

/// Waits until a handshake naming `server_name` reaches the backend greeting `greeting`, and returns that client.
fn reach(port: u16, ca: &TestCa, server_name: &str, greeting: &str) -> TlsClient {
    wait::until(&format!("{server_name} to reach the {greeting:?} backend"), Duration::from_secs(10), || {
        let mut client = handshake(port, ca, Some(server_name), server_name).ok()?;
        client.read_exact(greeting.len()).ok().filter(|g| g == greeting).map(|_| client)
    })
}

/// Waits until connections naming `server_name` are closed by Envoy.
fn wait_closed(port: u16, ca: &TestCa, server_name: &str) {
    wait::until(&format!("{server_name} to be refused"), Duration::from_secs(10), || {
        closed_by_peer(&handshake(port, ca, Some(server_name), server_name)).then_some(())
    });
}

#[test]
fn the_server_name_picks_the_backend_and_its_certificate_and_other_names_are_closed() {
    let ca = TestCa::new();
    let a = TlsBackend::start(&ca, "backend a\n", &["a.example.com"]);
    let b = TlsBackend::start(&ca, "backend b\n", &["b.example.com"]);
    let port = tls_port();
    let files = [
        manifests::cluster(),
        services(&[("a", &a), ("b", &b)]),
        ("a.yaml", tls_virtual_service("a", &["a.example.com"], &["a.example.com"], "a", 443)),
        ("b.yaml", tls_virtual_service("b", &["*.b.example.com", "b.example.com"], &["b.example.com"], "b", 443)),
    ];
    let stack = start(&files, port);

    // Each name reaches its own backend: its certificate (valid for the name, from the test CA) and its bytes.
    let mut client = reach(port, &ca, "a.example.com", "backend a\n");
    assert_eq!(client.peer_certificate(), Some(a.certificate.clone()));
    let payload: String = (0..100_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    assert_eq!(client.echo(&payload).unwrap(), payload, "a large payload crosses intact");
    let mut client = reach(port, &ca, "b.example.com", "backend b\n");
    assert_eq!(client.peer_certificate(), Some(b.certificate.clone()));
    assert_eq!(client.echo("hello b").unwrap(), "hello b");
    assert_ne!(a.certificate, b.certificate);

    // An unknown name, no name at all, and no TLS at all: closed by Envoy before any backend hears of them.
    let (seen_a, seen_b) = (a.connections(), b.connections());
    let before = admin::stat(stack.envoy.admin, UNROUTED);
    let unknown = handshake(port, &ca, Some("c.example.com"), "c.example.com");
    assert!(closed_by_peer(&unknown), "unknown name: {:?}", unknown.err());
    let nameless = handshake(port, &ca, None, "a.example.com");
    assert!(closed_by_peer(&nameless), "no SNI: {:?}", nameless.err());
    let covered_by_no_route = handshake(port, &ca, Some("x.b.example.com"), "x.b.example.com");
    assert!(closed_by_peer(&covered_by_no_route), "a host of the VirtualService that no sniHost names");
    assert!(is_closed_on_connect(port), "plain bytes, not a ClientHello");
    wait::until("Envoy to count the refused connections", Duration::from_secs(10), || {
        (admin::stat(stack.envoy.admin, UNROUTED) >= before + 4).then_some(())
    });
    assert_eq!((a.connections(), b.connections()), (seen_a, seen_b), "no backend saw a refused connection");

    // The addresses are published for the user: `<server name>:<tls port>`.
    let addresses = stack.controller.routes()["addresses"].as_array().cloned().unwrap_or_default();
    let tls: Vec<(String, String)> = addresses
        .iter()
        .filter(|a| a["route"].as_str().is_some_and(|r| r.starts_with("tls[")))
        .map(|a| (a["object"].as_str().unwrap().to_string(), a["address"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        tls,
        [
            ("VirtualService default/a".to_string(), format!("a.example.com:{port}")),
            ("VirtualService default/b".to_string(), format!("b.example.com:{port}")),
        ]
    );
    let printed = berth_tests::controller::berth(&["routes", "--controller", &stack.controller.url()]);
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("2 tls routes") && printed.contains("SERVER NAME"), "{printed}");
    assert!(printed.contains(&format!("VirtualService default/a tls[0] → a.example.com:{port}")), "{printed}");
}

#[test]
fn a_manifest_change_moves_a_name_live_and_exact_names_beat_wildcards() {
    let ca = TestCa::new();
    let v1 = TlsBackend::start(&ca, "a v1\n", &["a.example.com"]);
    let v2 = TlsBackend::start(&ca, "a v2\n", &["a.example.com"]);
    // A certificate's wildcard covers one label; Berth's covers any depth, so the deep name gets its own.
    let wild = TlsBackend::start(&ca, "wildcard\n", &["*.example.com", "*.c.example.com"]);
    let port = tls_port();
    let vs_a = |service: &str| tls_virtual_service("a", &["a.example.com"], &["a.example.com"], service, 443);
    let files = [manifests::cluster(), services(&[("v1", &v1), ("v2", &v2), ("wild", &wild)]), ("a.yaml", vs_a("v1"))];
    let stack = start(&files, port);
    let mut before_the_change = reach(port, &ca, "a.example.com", "a v1\n");
    assert_eq!(before_the_change.peer_certificate(), Some(v1.certificate.clone()));
    wait_closed(port, &ca, "c.example.com");

    // Point the route at the new version: new connections go there, the open one carries on where it was.
    stack.manifests.write("a.yaml", &vs_a("v2"));
    let mut client = reach(port, &ca, "a.example.com", "a v2\n");
    assert_eq!(client.peer_certificate(), Some(v2.certificate.clone()));
    assert_eq!(client.echo("to v2").unwrap(), "to v2");
    assert_eq!(before_the_change.echo("still v1").unwrap(), "still v1");

    // A wildcard takes every other name below the domain; the exact name keeps its own route.
    let wildcard = tls_virtual_service("wild", &["*.example.com"], &["*.example.com"], "wild", 443);
    stack.manifests.write("wild.yaml", &wildcard);
    let client = reach(port, &ca, "c.example.com", "wildcard\n");
    assert_eq!(client.peer_certificate(), Some(wild.certificate.clone()));
    reach(port, &ca, "deep.c.example.com", "wildcard\n");
    reach(port, &ca, "a.example.com", "a v2\n");

    // A younger object claiming a name already routed gets an error naming the owner, and changes nothing.
    stack.manifests.write("dup.yaml", &tls_virtual_service("dup", &["a.example.com"], &["a.example.com"], "v1", 443));
    let error = wait::until("the conflict to be reported", Duration::from_secs(10), || {
        stack.controller.errors().into_iter().find(|e| e.contains("VirtualService default/dup"))
    });
    assert!(error.contains("tls server name a.example.com is already routed by VirtualService default/a"), "{error}");
    reach(port, &ca, "a.example.com", "a v2\n");

    // Removing the wildcard closes the names it alone covered.
    stack.manifests.remove("wild.yaml");
    wait_closed(port, &ca, "c.example.com");
    reach(port, &ca, "a.example.com", "a v2\n");
}

#[test]
fn in_kubernetes_mode_the_addresses_of_tcp_and_tls_routes_share_the_annotation_and_both_route() {
    let work = tempfile::tempdir().unwrap();
    let api = KubeApiServer::start(work.path());
    let kubectl = api.kubectl();
    kubectl.install_crds();
    let ca = TestCa::new();
    let api_backend = TlsBackend::start(&ca, "api\n", &["api.example.com"]);
    let db = TcpBackend::greeting("db ready\n");
    // Two TCP ports, then the TLS port.
    let range = wait::free_port_range(3);
    let (tcp_last, port) = (range.0 + 1, range.1);
    let both = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: both\n  namespace: default\n  \
                annotations:\n    berth.dev/expose: \"true\"\nspec:\n  hosts: [api.example.com]\n  tcp:\n  - route:\n    \
                - destination: {host: db, port: {number: 5432}}\n  tls:\n  - match:\n    - sniHosts: [api.example.com]\n    \
                route:\n    - destination: {host: api, port: {number: 443}}\n";
    kubectl.apply(
        &[
            manifests::node("n1", "127.0.0.1"),
            port_allocation("tcp", "tcp.example.com", range.0, tcp_last),
            node_port_service("api", 443, api_backend.addr.port()),
            node_port_service("db", 5432, db.addr.port()),
            both.to_string(),
        ]
        .join("---\n"),
    );
    let controller = Controller::start_kube(&api.kubeconfig, work.path(), &[format!("--tls-port={port}")]);
    let envoy_args = [format!("--tcp-ports={}-{tcp_last}", range.0), format!("--tls-port={port}")];
    let _envoy = Envoy::start_with(controller.addr, work.path(), &envoy_args);

    // Every entry labelled once a tls address is among them; the tcp port is read back from it as recorded.
    let expected = format!("tcp[0]=tcp.example.com:{}, tls[0]=api.example.com:{port}", range.0);
    wait::until("berth.dev/address on both", Duration::from_secs(20), || {
        let address = kubectl.annotation(&["virtualservice", "both"], "berth.dev/address");
        (address == expected).then_some(())
    });
    let client = reach(port, &ca, "api.example.com", "api\n");
    assert_eq!(client.peer_certificate(), Some(api_backend.certificate.clone()));
    wait::until("the tcp route, served once its port is on record", Duration::from_secs(10), || {
        read_exact(&mut connect(range.0), 9).ok().filter(|g| g == "db ready\n")
    });
}
