//! Envoy keeps routing by the last good table whatever the controller does: crash, restart, or send garbage.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use berth_table::{Backend as TableBackend, Endpoint, HttpRoute, PathMatch, Source, Table};
use berth_tests::manifests::{self, Rule};
use berth_tests::{Backend, Controller, Envoy, Stack, admin, wait};

#[test]
fn envoy_keeps_routing_with_the_last_table_while_the_controller_is_down() {
    let (web, later) = (Backend::start("web"), Backend::start("later"));
    let files = [
        ("cluster.yaml", format!("{}---\n{}", manifests::node("n1", "127.0.0.1"), manifests::ingress_class())),
        (
            "services.yaml",
            format!(
                "{}---\n{}",
                manifests::node_port_service("web", 80, web.addr.port()),
                manifests::node_port_service("later", 80, later.addr.port())
            ),
        ),
        ("web.yaml", manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "web", 80)])),
    ];
    let mut stack = Stack::start(&files);
    stack.envoy.wait_for_backend("web.example", "/", "web");

    stack.controller.kill();
    // The fetcher has noticed once its reconnects fail.
    wait::until("the fetcher to fail reaching the controller", Duration::from_secs(10), || {
        (admin::stat(stack.envoy.admin, "cluster.berth_controller.upstream_cx_connect_fail") >= 2).then_some(())
    });
    for _ in 0..20 {
        assert_eq!(stack.envoy.get("web.example", "/").header("x-backend"), Some("web"));
    }

    // A new controller on the same address, with a change made while it was down, is picked up.
    stack
        .manifests
        .write("later.yaml", &manifests::ingress("later", &[Rule("later.example", "/", "Prefix", "later", 80)]));
    stack.controller = Controller::start_on(stack.controller.addr, &stack.manifests.path, stack.work.path());
    stack.envoy.wait_for_backend("later.example", "/", "later");
    assert_eq!(stack.envoy.get("web.example", "/").header("x-backend"), Some("web"));
}

/// A stand-in controller that serves whatever bytes a test puts in it, with the long-poll contract:
/// a request carrying the current version waits up to a second for a change, then gets 304.
struct FakeController {
    addr: SocketAddr,
    state: Arc<(Mutex<Served>, Condvar)>,
}

struct Served {
    version: u64,
    body: Vec<u8>,
    requests: u64,
}

impl FakeController {
    fn start(version: u64, body: Vec<u8>) -> FakeController {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new((Mutex::new(Served { version, body, requests: 0 }), Condvar::new()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(&stream);
                    let mut line = String::new();
                    let _ = reader.read_line(&mut line);
                    let asked: Option<u64> =
                        line.split(['?', '&', ' ']).find_map(|part| part.strip_prefix("version=")?.parse().ok());
                    while reader.read_line(&mut String::new()).is_ok_and(|n| n > 2) {}
                    let (lock, changed) = &*shared;
                    let mut served = lock.lock().unwrap();
                    if asked == Some(served.version) {
                        served = changed.wait_timeout(served, Duration::from_secs(1)).unwrap().0;
                    }
                    served.requests += 1;
                    let head = if asked == Some(served.version) {
                        "HTTP/1.1 304 Not Modified\r\ncontent-length: 0\r\n\r\n".to_string()
                    } else {
                        format!(
                            "HTTP/1.1 200 OK\r\netag: \"{}\"\r\ncontent-length: {}\r\n\r\n",
                            served.version,
                            served.body.len()
                        )
                    };
                    let mut stream = &stream;
                    let _ = stream.write_all(head.as_bytes());
                    if head.starts_with("HTTP/1.1 200") {
                        let _ = stream.write_all(&served.body);
                    }
                });
            }
        });
        FakeController { addr, state }
    }

    /// Serves `body` as `version` from now on; returns the request count at the switch.
    fn serve(&self, version: u64, body: Vec<u8>) -> u64 {
        let (lock, changed) = &*self.state;
        let mut served = lock.lock().unwrap();
        served.version = version;
        served.body = body;
        changed.notify_all();
        served.requests
    }

    fn requests(&self) -> u64 {
        self.state.0.lock().unwrap().requests
    }
}

fn table_routing(version: u64, host: &str, backend: &Backend) -> Vec<u8> {
    let mut table = Table::new(version);
    table.http.push(HttpRoute {
        host: host.to_string(),
        path: PathMatch::Prefix("/".into()),
        backends: vec![TableBackend {
            service: "default/web:80".into(),
            weight: 1,
            endpoints: vec![Endpoint { address: backend.addr }],
        }],
        source: Source { kind: "Ingress".into(), namespace: "default".into(), name: "web".into() },
        session_cookie: None,
    });
    berth_table::encode(&table)
}

#[test]
fn a_garbage_or_truncated_table_never_replaces_the_last_good_one() {
    let (first, second) = (Backend::start("first"), Backend::start("second"));
    let good = table_routing(10, "web.example", &first);
    let fake = FakeController::start(10, good.clone());
    let work = tempfile::tempdir().unwrap();
    let envoy = Envoy::start(fake.addr, work.path());
    envoy.wait_for_backend("web.example", "/", "first");

    let truncated = good[..good.len() / 2].to_vec();
    let wrong_format =
        String::from_utf8(good.clone()).unwrap().replace("berth.table/v1", "berth.table/v0").into_bytes();
    for (bad, version) in [b"\x00\x01 not a table".to_vec(), truncated, wrong_format, Vec::new()].into_iter().zip(11..)
    {
        let at = fake.serve(version, bad);
        // Two more requests mean the fetcher received the bad body, dealt with it, and asked again.
        wait::until("the fetcher to fetch the bad table", Duration::from_secs(10), || {
            (fake.requests() >= at + 2).then_some(())
        });
        for _ in 0..5 {
            assert_eq!(envoy.get("web.example", "/").header("x-backend"), Some("first"));
        }
    }

    // The fetcher is still alive: the next good table is taken.
    fake.serve(20, table_routing(20, "web.example", &second));
    envoy.wait_for_backend("web.example", "/", "second");
}
