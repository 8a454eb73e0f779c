//! TCP exposure end to end: a PortAllocation, VirtualServices with `tcp:` routes, ports assigned by the
//! controller, connections routed by Envoy's listener port through the filter to real TCP backends.

use std::path::Path;
use std::time::Duration;

use berth_tests::manifests::{self, node_port_service, port_allocation, tcp_virtual_service};
use berth_tests::tcp_client::{connect, echo, is_closed_on_connect, read_exact};
use berth_tests::{Controller, Stack, TcpBackend, admin, wait};

fn state_arg(work: &Path) -> Vec<String> {
    vec![format!("--state={}", work.join("state.json").display())]
}

/// Starts a stack whose controller keeps allocations in `<work>/state.json` and whose Envoy listens on the
/// allocation range.
fn start(files: &[(&str, String)], range: (u16, u16)) -> Stack {
    Stack::start_with(files, state_arg, &[format!("--tcp-ports={}-{}", range.0, range.1)])
}

fn wait_port(controller: &Controller, object: &str) -> u16 {
    wait::until(&format!("a port for {object}"), Duration::from_secs(10), || controller.port_of(object))
}

/// Waits until a connection to `port` is answered by the backend that greets with `greeting`.
fn wait_greeting(port: u16, greeting: &str) {
    wait::until(&format!("port {port} to reach the {greeting:?} backend"), Duration::from_secs(10), || {
        let mut stream = connect(port);
        read_exact(&mut stream, greeting.len()).ok().filter(|g| g == greeting)
    });
}

#[test]
fn two_workloads_get_distinct_ports_and_their_own_bytes() {
    let range = wait::free_port_range(11);
    let (mysql, echo_server) = (TcpBackend::greeting("mysql 8.4 ready\n"), TcpBackend::echo());
    let files = [
        manifests::cluster(),
        ("alloc.yaml", port_allocation("tcp", "tcp.example.com", range.0, range.1)),
        (
            "services.yaml",
            [
                node_port_service("mysql", 3306, mysql.addr.port()),
                node_port_service("echo", 7, echo_server.addr.port()),
            ]
            .join("---\n"),
        ),
        ("mysql.yaml", tcp_virtual_service("mysql", &[("mysql", 3306)])),
        ("echo.yaml", tcp_virtual_service("echo", &[("echo", 7)])),
    ];
    let stack = start(&files, range);
    let mysql_port = wait_port(&stack.controller, "VirtualService default/mysql");
    let echo_port = wait_port(&stack.controller, "VirtualService default/echo");
    assert_ne!(mysql_port, echo_port);
    for port in [mysql_port, echo_port] {
        assert!((range.0..=range.1).contains(&port), "{port} outside {range:?}");
    }

    // The server speaks first, then echoes.
    wait_greeting(mysql_port, "mysql 8.4 ready\n");
    let mut stream = connect(mysql_port);
    assert_eq!(read_exact(&mut stream, 16).unwrap(), "mysql 8.4 ready\n");
    assert_eq!(echo(&mut stream, "SELECT 1;").unwrap(), "SELECT 1;");

    // The client speaks first; a large payload crosses intact.
    let payload: String = (0..200_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let mut stream = connect(echo_port);
    assert_eq!(echo(&mut stream, &payload).unwrap(), payload);
    assert!(mysql.connections() >= 2 && echo_server.connections() >= 1, "each backend got its own connections");

    // The address is published for the user.
    let printed = berth_tests::controller::berth(&["routes", "--controller", &stack.controller.url()]);
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains(&format!("tcp.example.com:{mysql_port}")), "{printed}");
}

#[test]
fn allocations_survive_a_restart_and_freed_ports_close_then_get_reused() {
    let range = wait::free_port_range(11);
    let (a, b) = (TcpBackend::greeting("a\n"), TcpBackend::greeting("b\n"));
    let files = [
        manifests::cluster(),
        ("alloc.yaml", port_allocation("tcp", "tcp.example.com", range.0, range.1)),
        (
            "services.yaml",
            [node_port_service("a", 1, a.addr.port()), node_port_service("b", 1, b.addr.port())].join("---\n"),
        ),
        ("a.yaml", tcp_virtual_service("a", &[("a", 1)])),
        ("b.yaml", tcp_virtual_service("b", &[("b", 1)])),
    ];
    let mut stack = start(&files, range);
    let port_a = wait_port(&stack.controller, "VirtualService default/a");
    let port_b = wait_port(&stack.controller, "VirtualService default/b");
    wait_greeting(port_b, "b\n");

    // Restart the controller with `a` gone: `b` keeps its port although a lower one is now free.
    stack.controller.kill();
    stack.manifests.remove("a.yaml");
    let state = state_arg(stack.work.path());
    stack.controller = Controller::start_with(stack.controller.addr, &stack.manifests.path, stack.work.path(), &state);
    assert_eq!(wait_port(&stack.controller, "VirtualService default/b"), port_b);
    assert_eq!(stack.controller.port_of("VirtualService default/a"), None);

    // The freed port closes new connections at once, and Envoy counts them.
    wait::until("the freed port to close connections", Duration::from_secs(10), || {
        is_closed_on_connect(port_a).then_some(())
    });
    assert!(admin::stat(stack.envoy.admin, "wasmcustom.berth_tcp_unrouted") >= 1);
    wait_greeting(port_b, "b\n");

    // A newcomer gets the freed port.
    stack.manifests.write("c.yaml", tcp_virtual_service("c", &[("a", 1)]).as_str());
    assert_eq!(wait_port(&stack.controller, "VirtualService default/c"), port_a);
    wait_greeting(port_a, "a\n");
}

#[test]
fn a_full_range_is_reported_on_the_object_and_nodeports_are_skipped() {
    let range = wait::free_port_range(3);
    let backend = TcpBackend::greeting("db\n");
    // A NodePort Service already holds the first port of the range.
    let squatter = node_port_service("squatter", 80, range.0);
    let files = [
        manifests::cluster(),
        ("alloc.yaml", port_allocation("tcp", "tcp.example.com", range.0, range.1)),
        ("services.yaml", [node_port_service("db", 5432, backend.addr.port()), squatter].join("---\n")),
        ("one.yaml", tcp_virtual_service("one", &[("db", 5432)])),
        ("two.yaml", tcp_virtual_service("two", &[("db", 5432)])),
    ];
    let stack = start(&files, range);
    assert_eq!(wait_port(&stack.controller, "VirtualService default/one"), range.0 + 1);
    assert_eq!(wait_port(&stack.controller, "VirtualService default/two"), range.0 + 2);

    stack.manifests.write("three.yaml", &tcp_virtual_service("three", &[("db", 5432)]));
    let error = wait::until("an error for the third object", Duration::from_secs(10), || {
        stack.controller.errors().into_iter().find(|e| e.contains("VirtualService default/three"))
    });
    assert!(error.contains(&format!("{}-{}", range.0, range.1)), "the error names the range: {error}");
    assert_eq!(stack.controller.port_of("VirtualService default/three"), None);
    // The others are unaffected.
    wait_greeting(range.0 + 1, "db\n");
    wait_greeting(range.0 + 2, "db\n");
    assert_eq!(stack.controller.port_of("VirtualService default/one"), Some(range.0 + 1));
}

#[test]
fn a_thousand_port_range_renders_validates_and_routes_at_both_ends() {
    let range = wait::free_port_range(1000);
    let backend = TcpBackend::greeting("far\n");
    let files = [
        manifests::cluster(),
        ("alloc.yaml", port_allocation("tcp", "tcp.example.com", range.0, range.1)),
        ("services.yaml", node_port_service("far", 1, backend.addr.port())),
        ("far.yaml", tcp_virtual_service("far", &[("far", 1)])),
        ("near.yaml", tcp_virtual_service("near", &[("far", 1)])),
    ];
    // A held allocation at the very end of the range, as a restarted controller would find it.
    let seed = |work: &Path| {
        let held = format!("{{\"ports\":{{\"VirtualService default/far tcp[0]\":{}}}}}", range.1);
        std::fs::write(work.join("state.json"), held).unwrap();
        state_arg(work)
    };
    let stack = Stack::start_with(&files, seed, &[format!("--tcp-ports={}-{}", range.0, range.1)]);
    berth_tests::envoy::validate(&stack.envoy.config).unwrap();
    assert_eq!(wait_port(&stack.controller, "VirtualService default/far"), range.1);
    assert_eq!(wait_port(&stack.controller, "VirtualService default/near"), range.0);
    wait_greeting(range.1, "far\n");
    wait_greeting(range.0, "far\n");
}
