//! The shipped examples, end to end: the nginx-ingress walkthrough's three hosts, from an Ingress and a
//! VirtualService, through stock Envoy running the built filter.

use std::time::Duration;

use berth_tests::examples::examples_on;
use berth_tests::manifests::ManifestDir;
use berth_tests::{Backend, Controller, Envoy, TcpBackend, paths, tcp_client, wait};

#[test]
fn examples_route_by_host_and_path_with_a_default_backend_and_expose_tcp() {
    let service1 = Backend::start("service 1");
    let service2 = Backend::start("service 2");
    let default = Backend::start_on("127.0.0.1:0".parse().unwrap(), "default backend - 404", 404);
    let echo = TcpBackend::greeting("hello\n");
    let tcp_range = wait::free_port_range(11);
    let work = tempfile::tempdir().unwrap();
    let manifests = ManifestDir::new(&work.path().join("examples"));
    let node_ports = [
        ("30081", service1.addr.port()),
        ("30082", service2.addr.port()),
        ("30404", default.addr.port()),
        ("30007", echo.addr.port()),
    ];
    examples_on(&manifests, &node_ports, tcp_range);
    let controller = Controller::start(&manifests.path, work.path());
    let tcp_ports = format!("--tcp-ports={}-{}", tcp_range.0, tcp_range.1);
    let envoy = Envoy::start_with(controller.addr, work.path(), &[tcp_ports]);
    envoy.wait_for_backend("website8080.com", "/", "service 1");

    let cases = [
        // From the Ingress: one host per service.
        ("website8080.com", "/", 200, "service 1"),
        ("website8080.com", "/any/path?q=1", 200, "service 1"),
        ("website9090.com", "/", 200, "service 2"),
        // Host matching ignores case and port.
        ("WebSite9090.COM:8080", "/", 200, "service 2"),
        // From the VirtualService: one host, a path per service.
        ("website.com", "/eightyeighty", 200, "service 1"),
        ("website.com", "/eightyeighty/deeper", 200, "service 1"),
        ("website.com", "/ninetyninety", 200, "service 2"),
        // Everything else: the Ingress's default backend.
        ("website.com", "/", 404, "default backend - 404"),
        ("unknown.example", "/", 404, "default backend - 404"),
    ];
    for (host, path, status, backend) in cases {
        let response = envoy.get(host, path);
        assert_eq!(
            (response.status, response.header("x-backend")),
            (status, Some(backend)),
            "{host}{path}: {response:?}"
        );
    }
    assert!(service1.hits() >= 3 && service2.hits() >= 3 && default.hits() >= 2);

    // The echo workload got the first port of the range, and answers there.
    assert_eq!(controller.port_of("VirtualService default/echo"), Some(tcp_range.0));
    let mut stream = wait::until("the echo workload's port", Duration::from_secs(10), || {
        let mut stream = tcp_client::connect(tcp_range.0);
        tcp_client::read_exact(&mut stream, 6).ok().filter(|greeting| greeting == "hello\n").map(|_| stream)
    });
    assert_eq!(tcp_client::echo(&mut stream, "ping").unwrap(), "ping");
}

#[test]
fn berth_check_accepts_the_examples() {
    let output = berth_tests::controller::berth(&["check", paths::examples().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    for host in ["website8080.com", "website9090.com", "website.com"] {
        assert!(stdout.contains(host), "{host} missing from:\n{stdout}");
    }
}
