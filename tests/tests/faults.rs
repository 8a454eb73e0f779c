//! Faults around Envoy while it routes: the controller crashing under load, a backend dying in the middle of a
//! response or a TCP stream, a controller that stops answering, and a table too large for Envoy to receive.
//! (A controller sending garbage is covered in `resilience.rs`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::Duration;

use berth_tests::fake_controller::{FakeController, table_routing};
use berth_tests::load::{Load, StopOnDrop};
use berth_tests::manifests::{self, Rule, node_port_service, port_allocation, tcp_virtual_service};
use berth_tests::tcp_client::{connect, echo};
use berth_tests::{Backend, Controller, Envoy, Stack, TcpBackend, admin, client, envoy, wait};

#[test]
fn controller_killed_and_restarted_under_load_drops_nothing_and_keeps_every_port() {
    let range = wait::free_port_range(5);
    let (web, db) = (Backend::start("web"), TcpBackend::echo());
    let files = [
        manifests::cluster(),
        ("alloc.yaml", port_allocation("tcp", "tcp.example.com", range.0, range.1)),
        (
            "services.yaml",
            [node_port_service("web", 80, web.addr.port()), node_port_service("db", 5432, db.addr.port())]
                .join("---\n"),
        ),
        ("web.yaml", manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "web", 80)])),
        ("db.yaml", tcp_virtual_service("db", &[("db", 5432)])),
    ];
    let state = |work: &Path| vec![format!("--state={}", work.join("state.json").display())];
    let mut stack = Stack::start_with(&files, state, &[format!("--tcp-ports={}-{}", range.0, range.1)]);
    stack.envoy.wait_for_backend("web.example", "/", "web");
    let port =
        wait::until("a port for db", Duration::from_secs(10), || stack.controller.port_of("VirtualService default/db"));
    wait::until("db's port to echo", Duration::from_secs(10), || echo(&mut connect(port), "ping").ok());
    let ports_before = stack.controller.assigned_ports();
    let table_before = stack.controller.routes()["table"].clone();

    let (http, tcp) = (Load::default(), Load::default());
    let stop = AtomicBool::new(false);
    let listener = stack.envoy.http;
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                http.record(
                    client::get(listener, "web.example", "/").is_ok_and(|r| r.header("x-backend") == Some("web")),
                );
            }
        });
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tcp.record(echo(&mut connect(port), "row").is_ok_and(|answer| answer == "row"));
            }
        });
        http.wait_for(20);

        stack.controller.kill();
        wait::until("the fetcher to fail reaching the controller", Duration::from_secs(10), || {
            (admin::stat(stack.envoy.admin, "cluster.berth_controller.upstream_cx_connect_fail") >= 2).then_some(())
        });
        http.wait_for(50);
        tcp.wait_for(50);

        stack.controller = Controller::start_with(
            stack.controller.addr,
            &stack.manifests.path,
            stack.work.path(),
            &state(stack.work.path()),
        );
        // The restarted controller has served Envoy: a change made now reaches it.
        stack
            .manifests
            .write("later.yaml", &manifests::ingress("later", &[Rule("later.example", "/", "Prefix", "web", 80)]));
        stack.envoy.wait_for_backend("later.example", "/", "web");
        http.wait_for(20);
        tcp.wait_for(20);
    });
    assert_eq!(stack.controller.assigned_ports(), ports_before, "the restart moved a port");
    let mut table_after = stack.controller.routes()["table"].clone();
    let http_after = table_after["http"].as_array_mut().unwrap();
    http_after.retain(|route| route["host"] != "later.example");
    assert_eq!(table_after["http"], table_before["http"]);
    assert_eq!(table_after["tcp"], table_before["tcp"]);
    assert_eq!(http.failed(), 0, "failed HTTP requests out of {}", http.sent());
    assert_eq!(tcp.failed(), 0, "failed TCP connections out of {}", tcp.sent());
}

/// A backend that answers one request with the start of a chunked body, then dies when told to.
fn start_dying_backend() -> (SocketAddr, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (die, dying) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        // The controller's health checks connect and close without a request: skip those connections.
        let (stream, mut reader) = loop {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut String::new()).is_ok_and(|n| n > 0) {
                break (stream, reader);
            }
        };
        while reader.read_line(&mut String::new()).is_ok_and(|n| n > 2) {}
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-backend: dying\r\n\r\n5\r\nfirst\r\n";
        (&stream).write_all(head.as_bytes()).unwrap();
        let _ = dying.recv();
        // The process is gone: its connections and its listener close.
        drop((stream, reader, listener));
    });
    (addr, die)
}

#[test]
fn a_backend_dying_mid_response_or_mid_stream_fails_only_its_own_client() {
    let range = wait::free_port_range(3);
    let (dying_addr, die) = start_dying_backend();
    let (other, stream_backend) = (Backend::start("other"), TcpBackend::echo());
    let files = [
        manifests::cluster(),
        ("alloc.yaml", port_allocation("tcp", "tcp.example.com", range.0, range.1)),
        (
            "services.yaml",
            [
                node_port_service("dying", 80, dying_addr.port()),
                node_port_service("other", 80, other.addr.port()),
                node_port_service("stream", 9000, stream_backend.addr.port()),
            ]
            .join("---\n"),
        ),
        (
            "web.yaml",
            manifests::ingress(
                "web",
                &[Rule("dying.example", "/", "Prefix", "dying", 80), Rule("other.example", "/", "Prefix", "other", 80)],
            ),
        ),
        ("stream.yaml", tcp_virtual_service("stream", &[("stream", 9000)])),
    ];
    let state = |work: &Path| vec![format!("--state={}", work.join("state.json").display())];
    let stack = Stack::start_with(&files, state, &[format!("--tcp-ports={}-{}", range.0, range.1)]);
    stack.envoy.wait_for_backend("other.example", "/", "other");
    let port = wait::until("a port for stream", Duration::from_secs(10), || {
        stack.controller.port_of("VirtualService default/stream")
    });

    // HTTP: the response has started when the backend dies.
    let mut downstream = TcpStream::connect(stack.envoy.http).unwrap();
    downstream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    downstream.write_all(b"GET / HTTP/1.1\r\nHost: dying.example\r\n\r\n").unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("first") {
        let n = downstream.read(&mut buffer).unwrap();
        assert!(n > 0, "closed before the first chunk: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..n]);
    }
    die.send(()).unwrap();
    // Envoy ends the client's response without the terminating chunk: a truncated body never looks complete.
    loop {
        match downstream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
    let received = String::from_utf8_lossy(&received);
    assert!(received.starts_with("HTTP/1.1 200") && received.contains("x-backend: dying"), "{received}");
    assert!(!received.contains("\r\n0\r\n\r\n"), "the truncated response was completed: {received:?}");

    // TCP: an open stream whose backend dies is closed, not left hanging.
    let mut stream = connect(port);
    assert_eq!(echo(&mut stream, "before").unwrap(), "before");
    drop(stream_backend);
    let mut rest = Vec::new();
    if let Err(error) = stream.read_to_end(&mut rest) {
        let open = matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut);
        assert!(!open, "the stream stayed open after its backend died");
    }
    assert!(rest.is_empty(), "{rest:?}");

    // Everything else still works; the dead backend's route answers at once with an error, not a hang.
    assert_eq!(stack.envoy.get("other.example", "/").header("x-backend"), Some("other"));
    let dead = stack.envoy.get("dying.example", "/");
    assert_eq!(dead.status, 503, "{dead:?}");
}

/// Renders Envoy's bootstrap for `controller` with the fetcher's long-poll hold shortened to one second, so a
/// call that gets no answer times out after six (hold + Envoy's grace) instead of thirty-five.
fn start_envoy_with_short_polls(controller: SocketAddr, work: &Path) -> Envoy {
    let (http, admin) =
        (SocketAddr::from(([127, 0, 0, 1], wait::free_port())), SocketAddr::from(([127, 0, 0, 1], wait::free_port())));
    let config = envoy::render(controller, http, admin, work, &[]);
    let listeners = envoy::resource_file(&config, "lds_config");
    let rendered = std::fs::read_to_string(&listeners).unwrap();
    assert!(rendered.contains(r#""wait_seconds":30"#), "{rendered}");
    std::fs::write(&listeners, rendered.replace(r#""wait_seconds":30"#, r#""wait_seconds":1"#)).unwrap();
    Envoy::run("envoy", &config, http, admin, work, envoy::TEST_OPTIONS)
}

#[test]
fn a_controller_that_stops_answering_leaves_routing_alone_until_it_answers_again() {
    let (first, second) = (Backend::start("first"), Backend::start("second"));
    let fake = FakeController::start(10, table_routing(10, "web.example", first.addr));
    let work = tempfile::tempdir().unwrap();
    let envoy = start_envoy_with_short_polls(fake.addr, work.path());
    envoy.wait_for_backend("web.example", "/", "first");

    fake.hold(true);
    fake.serve(11, table_routing(11, "web.example", second.addr));
    wait::until("the fetcher to give up on the unanswered call", Duration::from_secs(20), || {
        // Envoy ends the call at its timeout (a 504 of its own); the fetcher says so and what it keeps.
        envoy.log().contains("keeping table version 10").then_some(())
    });
    for _ in 0..20 {
        assert_eq!(envoy.get("web.example", "/").header("x-backend"), Some("first"));
    }
    fake.hold(false);
    envoy.wait_for_backend("web.example", "/", "second");
}

#[test]
fn a_table_over_envoys_response_limit_is_reported_and_the_last_good_one_kept() {
    let (first, second) = (Backend::start("first"), Backend::start("second"));
    let fake = FakeController::start(10, table_routing(10, "web.example", first.addr));
    let work = tempfile::tempdir().unwrap();
    let envoy = Envoy::start(fake.addr, work.path());
    envoy.wait_for_backend("web.example", "/", "first");

    // A valid table (JSON allows trailing whitespace) just over the async client's 32 MiB buffer.
    let mut huge = table_routing(11, "web.example", second.addr);
    huge.resize(32 * 1024 * 1024 + 1024, b' ');
    assert_eq!(berth_table::decode(&huge).unwrap().version, 11);
    let at = fake.serve(11, huge);
    wait::until("the fetcher to report the oversized table", Duration::from_secs(20), || {
        (fake.requests() >= at + 2 && envoy.log().contains("http.async_response_buffer_limit")).then_some(())
    });
    for _ in 0..20 {
        assert_eq!(envoy.get("web.example", "/").header("x-backend"), Some("first"));
    }
    fake.serve(12, table_routing(12, "web.example", second.addr));
    envoy.wait_for_backend("web.example", "/", "second");
}
