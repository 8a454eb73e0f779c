//! Loopback HTTP backends that say who they are, count what they serve and keep what they were sent (path and
//! headers); on request they answer slowly or fail a number of requests first.
//!
//! Hand-written HTTP/1.1 (keep-alive, Content-Length bodies) so that `stop` can cut every open connection at
//! once, the way a crashed pod does; a graceful server would keep Envoy's pooled connections alive.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The runtime every loopback backend of a test process runs on.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
    })
}

/// A server's accept loop on [`runtime`]: dropping it stops the server, listener and open connections alike (the
/// loop owns them), and returns once they are gone.
pub(crate) struct Serving(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
        let _ = runtime().block_on(&mut self.0);
    }
}

/// Pods stand-ins: one HTTP backend per loopback address `127.0.0.<first>`, `<first + 1>`, ..., all on one port
/// (pods share a port and differ by address), each answering with its name.
pub fn pods(names: &[&str], first: u8) -> Vec<Backend> {
    let mut pods: Vec<Backend> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let port = pods.first().map_or(0, |pod| pod.addr.port());
        let addr = SocketAddr::from(([127, 0, 0, first + i as u8], port));
        pods.push(Backend::start_on(addr, name, 200));
    }
    pods
}

/// Answers every request with `status`, the body `name` and the header `x-backend: name`.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    hits: Arc<AtomicU64>,
    reply: Arc<Reply>,
    server: Option<Serving>,
}

impl Backend {
    /// A backend on a free loopback port, answering 200.
    pub fn start(name: &str) -> Backend {
        Backend::start_on("127.0.0.1:0".parse().expect("addr"), name, 200)
    }

    /// A backend on `addr` (port 0 picks one) answering `status`.
    pub fn start_on(addr: SocketAddr, name: &str, status: u16) -> Backend {
        let reply = Arc::new(Reply {
            name: name.to_string(),
            status: AtomicU16::new(status),
            delay_ms: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let mut backend =
            Backend { name: name.to_string(), addr, hits: Arc::new(AtomicU64::new(0)), reply, server: None };
        backend.listen();
        backend
    }

    fn listen(&mut self) {
        let (addr, name) = (self.addr, &self.name);
        let listener = std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind backend {name} {addr}: {e}"));
        listener.set_nonblocking(true).expect("nonblocking");
        self.addr = listener.local_addr().expect("local addr");
        let (reply, counter) = (self.reply.clone(), self.hits.clone());
        self.server = Some(Serving(runtime().spawn(async move {
            let Ok(listener) = TcpListener::from_std(listener) else { return };
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, reply.clone(), counter.clone()));
            }
        })));
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Answers `status` from the next request on, on every connection.
    pub fn set_status(&self, status: u16) {
        self.reply.status.store(status, Ordering::SeqCst);
    }

    /// Waits `delay` before every answer from the next request on.
    pub fn set_delay(&self, delay: Duration) {
        self.reply.delay_ms.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Answers the next `count` requests with 503, then as before.
    pub fn fail_next(&self, count: u64) {
        self.reply.failures.store(count, Ordering::SeqCst);
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<Received> {
        self.reply.seen.lock().map(|seen| seen.clone()).unwrap_or_default()
    }

    /// The last request received.
    pub fn last_request(&self) -> Option<Received> {
        self.requests().pop()
    }

    /// Listens again on the same address after [`Backend::stop`], as a restarted pod does.
    pub fn restart(&mut self) {
        if self.server.is_none() {
            self.listen();
        }
    }

    /// Stops listening and drops every open connection.
    pub fn stop(&mut self) {
        self.server = None;
    }
}

struct Reply {
    name: String,
    status: AtomicU16,
    delay_ms: AtomicU64,
    /// Requests still to answer with 503.
    failures: AtomicU64,
    seen: Mutex<Vec<Received>>,
}

/// A request as the backend received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The request line's target: path and query.
    pub path: String,
    /// Names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
}

impl Received {
    /// Every value of header `name`.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().copied()
    }
}

async fn serve(stream: TcpStream, reply: Arc<Reply>, hits: Arc<AtomicU64>) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // Request line and headers; only Content-Length matters to find the next request.
        let mut content_length = 0usize;
        let mut first = true;
        let mut received = Received { path: String::new(), headers: Vec::new() };
        loop {
            line.clear();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = line.trim_end();
            if header.is_empty() && !first {
                break;
            }
            if first {
                received.path = header.split(' ').nth(1).unwrap_or_default().to_string();
                first = false;
                continue;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
                received.headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let mut body = vec![0; content_length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        hits.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut seen) = reply.seen.lock() {
            seen.push(received);
        }
        let delay = reply.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let failing = reply.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let status = if failing { 503 } else { reply.status.load(Ordering::SeqCst) };
        let response = format!(
            "HTTP/1.1 {} X\r\ncontent-type: text/plain\r\nx-backend: {}\r\ncontent-length: {}\r\n\r\n{}",
            status,
            reply.name,
            reply.name.len(),
            reply.name
        );
        if stream.get_mut().write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
