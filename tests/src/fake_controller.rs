//! A stand-in controller that serves whatever bytes a test puts in it, with the long-poll contract of
//! `GET /v1/table?version=N`: a request carrying the current version waits up to a second for a change, then gets
//! 304. It can also hold every request unanswered, as a controller stuck in a slow compile or a GC pause would.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use berth_table::{Backend, Endpoint, HttpRoute, PathMatch, Source, Table};

pub struct FakeController {
    pub addr: SocketAddr,
    state: Arc<(Mutex<Served>, Condvar)>,
}

struct Served {
    version: u64,
    body: Vec<u8>,
    /// Requests answered so far.
    requests: u64,
    /// While set, requests wait unanswered.
    holding: bool,
}

impl FakeController {
    pub fn start(version: u64, body: Vec<u8>) -> FakeController {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake controller");
        let addr = listener.local_addr().expect("local addr");
        let served = Served { version, body, requests: 0, holding: false };
        let state = Arc::new((Mutex::new(served), Condvar::new()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || answer(&stream, &shared));
            }
        });
        FakeController { addr, state }
    }

    /// Serves `body` as `version` from now on; returns the request count at the switch.
    pub fn serve(&self, version: u64, body: Vec<u8>) -> u64 {
        let (lock, changed) = &*self.state;
        let mut served = lock.lock().expect("fake controller state");
        served.version = version;
        served.body = body;
        changed.notify_all();
        served.requests
    }

    /// Holds every request (`true`) until released (`false`); released requests are answered as usual.
    pub fn hold(&self, holding: bool) {
        let (lock, changed) = &*self.state;
        lock.lock().expect("fake controller state").holding = holding;
        changed.notify_all();
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.state.0.lock().expect("fake controller state").requests
    }
}

fn answer(stream: &TcpStream, shared: &(Mutex<Served>, Condvar)) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let asked: Option<u64> = line.split(['?', '&', ' ']).find_map(|part| part.strip_prefix("version=")?.parse().ok());
    while reader.read_line(&mut String::new()).is_ok_and(|n| n > 2) {}
    let (lock, changed) = shared;
    let Ok(mut served) = lock.lock() else { return };
    let mut polled = false;
    loop {
        if served.holding {
            let Ok(next) = changed.wait(served) else { return };
            served = next;
        } else if asked == Some(served.version) && !polled {
            let Ok((next, _)) = changed.wait_timeout(served, Duration::from_secs(1)) else { return };
            served = next;
            polled = true;
        } else {
            break;
        }
    }
    served.requests += 1;
    let head = if asked == Some(served.version) {
        "HTTP/1.1 304 Not Modified\r\ncontent-length: 0\r\n\r\n".to_string()
    } else {
        format!("HTTP/1.1 200 OK\r\netag: \"{}\"\r\ncontent-length: {}\r\n\r\n", served.version, served.body.len())
    };
    let body = if head.starts_with("HTTP/1.1 200") { served.body.clone() } else { Vec::new() };
    drop(served);
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// An encoded table with one route: every path of `host` to `backend`.
pub fn table_routing(version: u64, host: &str, backend: SocketAddr) -> Vec<u8> {
    let mut table = Table::new(version);
    table.http.push(HttpRoute {
        host: host.to_string(),
        path: PathMatch::Prefix("/".into()),
        backends: vec![Backend {
            service: "default/web:80".into(),
            weight: 1,
            endpoints: vec![Endpoint { address: backend }],
        }],
        source: Source { kind: "Ingress".into(), namespace: "default".into(), name: "web".into() },
        session_cookie: None,
        policy: None,
    });
    berth_table::encode(&table)
}
