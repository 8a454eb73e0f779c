//! Envoy at the edge, as `berth envoy-config` renders it: one tenant's slow requests do not use up a limit other
//! routes share; path variants reach the backend their normalized path belongs to (or are refused); a client that
//! never finishes its headers is cut off; HTTP/1.0 is served.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use berth_tests::client::{self, read_response};
use berth_tests::manifests::{
    self, Rule, node_port_service, port_allocation, tcp_virtual_service, tls_virtual_service,
};
use berth_tests::tcp_client::{connect, echo};
use berth_tests::tls_client::handshake;
use berth_tests::{Backend, HeldBackend, Stack, TcpBackend, TestCa, TlsBackend, admin, open_files, wait};

/// Requests held open at once on one route: more than Envoy's default circuit breakers (1,024 connections and
/// 1,024 pending requests per cluster) let through.
const HELD: usize = 2_000;

#[test]
fn two_thousand_requests_held_by_one_route_all_succeed_while_tcp_tls_and_other_routes_keep_working() {
    // Per held request: the client's and the backend's sockets here, two more in Envoy (which inherits the limit).
    let needed = 2 * HELD as u64 + 1_000;
    let limit = open_files::raise_to(needed);
    assert!(limit >= needed, "the open-files limit is {limit}; this test needs {needed} (raise the hard limit)");

    let slow = HeldBackend::holding("slow");
    let web = Backend::start("web");
    let echo_backend = TcpBackend::echo();
    let ca = TestCa::new();
    let tls = TlsBackend::start(&ca, "tls backend\n", &["tls.example.com"]);
    // Two TCP ports and, after them, the TLS port.
    let (first, _) = wait::free_port_range(3);
    let tls_port = first + 2;
    let files = [
        manifests::cluster(),
        (
            "services.yaml",
            [
                node_port_service("slow", 80, slow.addr.port()),
                node_port_service("web", 80, web.addr.port()),
                node_port_service("echo", 7, echo_backend.addr.port()),
                node_port_service("tls", 443, tls.addr.port()),
            ]
            .join("---\n"),
        ),
        (
            "ingress.yaml",
            manifests::ingress(
                "http",
                &[Rule("slow.example", "/", "Prefix", "slow", 80), Rule("web.example", "/", "Prefix", "web", 80)],
            ),
        ),
        ("alloc.yaml", port_allocation("tcp", "tcp.example.com", first, first + 1)),
        ("echo.yaml", tcp_virtual_service("echo", &[("echo", 7)])),
        ("tls.yaml", tls_virtual_service("tls", &["tls.example.com"], &["tls.example.com"], "tls", 443)),
    ];
    let tls_arg = format!("--tls-port={tls_port}");
    let state = |work: &Path| vec![format!("--state={}", work.join("state.json").display()), tls_arg.clone()];
    let stack = Stack::start_with(&files, state, &[format!("--tcp-ports={first}-{}", first + 1), tls_arg.clone()]);
    stack.envoy.wait_for_backend("web.example", "/", "web");
    let echo_port = wait::until("a port for echo", Duration::from_secs(10), || {
        stack.controller.port_of("VirtualService default/echo")
    });

    // One tenant: 2,000 requests that its backend holds, all in flight at once.
    let mut held: Vec<TcpStream> = (0..HELD)
        .map(|i| {
            let mut stream = TcpStream::connect(stack.envoy.http).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            stream.write_all(b"GET /slow HTTP/1.1\r\nHost: slow.example\r\n\r\n").unwrap();
            stream
        })
        .collect();
    wait::until(&format!("{HELD} requests to be held by the slow backend"), Duration::from_secs(60), || {
        (slow.held() == HELD as u64).then_some(())
    });

    // Meanwhile every other kind of route works: another HTTP host, a TCP port, a TLS server name.
    let other = client::get(stack.envoy.http, "web.example", "/").unwrap();
    assert_eq!((other.status, other.header("x-backend")), (200, Some("web")), "{other:?}");
    let mut tcp = connect(echo_port);
    assert_eq!(echo(&mut tcp, "still here").unwrap(), "still here");
    let mut tls_client = handshake(tls_port, &ca, Some("tls.example.com"), "tls.example.com").unwrap();
    assert_eq!(tls_client.read_exact("tls backend\n".len()).unwrap(), "tls backend\n");
    assert_eq!(tls_client.echo("over tls").unwrap(), "over tls");

    // Released, every held request gets its answer: none was turned away by a circuit breaker.
    slow.release();
    for (i, stream) in held.drain(..).enumerate() {
        let response = read_response(&mut BufReader::new(stream)).unwrap_or_else(|e| panic!("response {i}: {e}"));
        assert_eq!((response.status, response.header("x-backend")), (200, Some("slow")), "{i}: {response:?}");
    }
    assert_eq!(admin::stat(stack.envoy.admin, "cluster.berth_original_dst.upstream_rq_pending_overflow"), 0);
    assert_eq!(admin::stat(stack.envoy.admin, "cluster.berth_original_dst.upstream_cx_overflow"), 0);
}

#[test]
fn path_variants_reach_the_backend_their_normalized_path_belongs_to_or_are_refused() {
    let (app, admin_backend) = (HeldBackend::answering("app"), HeldBackend::answering("admin"));
    let files = [
        manifests::cluster(),
        (
            "services.yaml",
            [node_port_service("app", 80, app.addr.port()), node_port_service("admin", 80, admin_backend.addr.port())]
                .join("---\n"),
        ),
        (
            "ingress.yaml",
            manifests::ingress(
                "site",
                &[
                    Rule("site.example", "/", "Prefix", "app", 80),
                    Rule("site.example", "/admin", "Prefix", "admin", 80),
                ],
            ),
        ),
    ];
    let stack = Stack::start(&files);
    stack.envoy.wait_for_backend("site.example", "/admin", "admin");

    // (request path, the backend it reaches and the path that backend reads)
    for (path, backend, read) in [
        ("/", "app", "/"),
        ("/admin", "admin", "/admin"),
        ("//admin", "admin", "/admin"),
        ("///admin/users", "admin", "/admin/users"),
        ("/x/../admin", "admin", "/admin"),
        ("/x/%2e%2e/admin", "admin", "/admin"),
        ("/\\admin", "admin", "/admin"),
        ("/Admin", "app", "/Admin"),
        ("/administrator", "app", "/administrator"),
        ("/?next=/admin;x", "app", "/?next=/admin;x"),
        ("/%3Badmin", "app", "/%3Badmin"),
    ] {
        let response = client::get(stack.envoy.http, "site.example", path).unwrap();
        assert_eq!(response.status, 200, "{path}: {response:?}");
        assert_eq!(response.header("x-backend"), Some(backend), "{path}: {response:?}");
        assert_eq!(response.header("x-path"), Some(read), "{path}: {response:?}");
    }
    // Escaped slashes, which many servers decode into separators: redirected to the unescaped, normalized path,
    // so the client's next request is matched as what it is.
    for (path, location) in [
        ("/%2Fadmin", "/admin"),
        ("/%2fadmin/users", "/admin/users"),
        ("/x/..%2Fadmin", "/admin"),
        ("/%5Cadmin", "/admin"),
        ("/%2Fadmin?next=%2F", "/admin?next=%2F"),
    ] {
        let response = client::get(stack.envoy.http, "site.example", path).unwrap();
        assert_eq!(response.status, 307, "{path}: {response:?}");
        assert_eq!(response.header("location"), Some(location), "{path}: {response:?}");
        assert_eq!(response.header("x-backend"), None, "{path}: no backend answered");
    }
    // `;` in the path: servers disagree on it (path parameters), so no backend gets it.
    for path in ["/admin;x", "/;/admin", "/app;jsessionid=1/admin"] {
        let response = client::get(stack.envoy.http, "site.example", path).unwrap();
        assert_eq!(
            (response.status, response.header("x-berth")),
            (400, Some("path-semicolon")),
            "{path}: {response:?}"
        );
    }
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off_and_http10_is_served() {
    let web = Backend::start("web");
    let files = [
        manifests::cluster(),
        manifests::services(&[&web]),
        ("ingress.yaml", manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "web", 80)])),
    ];
    let stack = Stack::start_with(&files, |_| Vec::new(), &["--request-headers-timeout=1s".to_string()]);
    stack.envoy.wait_for_backend("web.example", "/", "web");

    // Headers begun and never finished: Envoy closes the connection (after a 408) rather than hold it.
    let mut slowloris = TcpStream::connect(stack.envoy.http).unwrap();
    slowloris.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    slowloris.write_all(b"GET / HTTP/1.1\r\nHost: web.example\r\nX-Slow: 1\r\n").unwrap();
    let mut answer = Vec::new();
    slowloris.read_to_end(&mut answer).expect("Envoy closes the connection instead of waiting on");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");

    // HTTP/1.0, with a Host header: routed like HTTP/1.1. Without one: Berth's own answer for an unknown host.
    let mut old = TcpStream::connect(stack.envoy.http).unwrap();
    old.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    old.write_all(b"GET / HTTP/1.0\r\nHost: web.example\r\n\r\n").unwrap();
    let response = read_response(&mut BufReader::new(old)).unwrap();
    assert_eq!((response.status, response.header("x-backend")), (200, Some("web")), "{response:?}");
    let mut hostless = TcpStream::connect(stack.envoy.http).unwrap();
    hostless.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    hostless.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let response = read_response(&mut BufReader::new(hostless)).unwrap();
    assert_eq!((response.status, response.header("x-berth")), (404, Some("no-route")), "{response:?}");
}
