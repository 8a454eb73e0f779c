//! The controller's API server against clients that hold connections without finishing a request: they are closed
//! after the header timeout, never more are held than the connection limit allows, and nothing else (health
//! checks above all, which need file descriptors too) notices.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_tests::load::{Load, StopOnDrop};
use berth_tests::manifests::{self, ManifestDir, Rule};
use berth_tests::{Controller, Envoy, client, wait};

/// More connections than the controller has file descriptors (it runs with `ulimit -n` of [`OPEN_FILES`]).
const IDLE_CONNECTIONS: usize = 400;
const OPEN_FILES: u32 = 256;

/// Opens a connection to `addr` that sends half a request head and then nothing, as a slowloris client does.
fn half_a_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the controller");
    stream.write_all(b"GET /v1/table?wait=60 HTTP/1.1\r\nHost: controller\r\n").expect("send half a request");
    stream.set_nonblocking(true).expect("nonblocking");
    stream
}

/// Whether the server has closed `stream` (end of stream or reset), without waiting.
fn closed_by_the_server(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 256];
    match stream.read(&mut buffer) {
        Ok(0) => true,
        Ok(_) => false, // an answer (a 408, say) before the close
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

#[test]
fn hundreds_of_idle_connections_to_the_controller_do_not_take_routes_down_and_are_closed_after_the_timeout() {
    let pods = berth_tests::backend::pods(&["a", "b", "c"], 5);
    let port = pods[0].addr.port();
    let work = tempfile::tempdir().expect("temp dir");
    let manifests = ManifestDir::new(&work.path().join("manifests"));
    manifests.write("web.yaml", &manifests::pod_service("web", port));
    manifests.write(
        "slice.yaml",
        &manifests::endpoint_slice("web-1", "web", port, &["127.0.0.5", "127.0.0.6", "127.0.0.7"]),
    );
    manifests.write("ingress.yaml", &manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "web", port)]));
    let (cluster, yaml) = manifests::cluster();
    manifests.write(cluster, &yaml);
    let addr = SocketAddr::from(([127, 0, 0, 1], wait::free_port()));
    let args = ["--health-interval=100ms".to_string(), "--header-timeout=2s".to_string()];
    let controller = Controller::start_with_open_files(addr, &manifests.path, work.path(), &args, OPEN_FILES);
    let envoy = Envoy::start(controller.addr, work.path());
    for pod in &pods {
        envoy.wait_for_backend("web.example", "/", &pod.name);
    }

    let (stop, load) = (AtomicBool::new(false), Load::default());
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                load.record(client::get(envoy.http, "web.example", "/").is_ok_and(|r| r.status == 200));
            }
        });
        let mut idle: Vec<TcpStream> = (0..IDLE_CONNECTIONS).map(|_| half_a_request(controller.addr)).collect();
        // The controller holds at most half its open files of them at a time and closes each after the header
        // timeout; the rest wait in the backlog for their turn. Health checks run every 100ms all along.
        wait::until("the controller to close every idle connection", Duration::from_secs(120), || {
            idle.retain_mut(|stream| !closed_by_the_server(stream));
            idle.is_empty().then_some(())
        });
        load.wait_for(10);
    });
    assert_eq!(load.failed(), 0, "failed requests of {} while idle connections were held", load.sent());

    let routes = controller.routes();
    let health = routes["health"].as_array().cloned().unwrap_or_default();
    assert_eq!(health.len(), 3, "{routes}");
    for endpoint in &health {
        assert_eq!(endpoint["healthy"], true, "{endpoint}");
        assert!(endpoint.get("last_failure").is_none(), "no check failed: {endpoint}");
    }
    let log = controller.log();
    assert!(log.contains("API server limits") && log.contains("max_connections=128"), "{log}");
    assert!(!log.to_lowercase().contains("too many open files"), "{log}");
}
