//! A loopback HTTP backend that holds every request until it is released, and tells which path it received: for
//! tests of many requests in flight at once (a slow tenant) and of the path a backend reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::{Serving, runtime};

/// Answers each request (GET-style, no body) with 200, `x-backend: name`, `x-path: <the request target>` and the
/// body `name`, once released; keeps connections alive.
pub struct HeldBackend {
    pub name: String,
    pub addr: SocketAddr,
    held: Arc<AtomicU64>,
    release: watch::Sender<bool>,
    _server: Serving,
}

impl HeldBackend {
    /// A backend on a free loopback port that holds requests until [`HeldBackend::release`].
    pub fn holding(name: &str) -> HeldBackend {
        HeldBackend::start(name, false)
    }

    /// A backend on a free loopback port that answers at once.
    pub fn answering(name: &str) -> HeldBackend {
        HeldBackend::start(name, true)
    }

    fn start(name: &str, released: bool) -> HeldBackend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind held backend");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let (release, released_rx) = watch::channel(released);
        let held = Arc::new(AtomicU64::new(0));
        let (counter, reply_name) = (held.clone(), name.to_string());
        let server = Serving(runtime().spawn(async move {
            let Ok(listener) = TcpListener::from_std(listener) else { return };
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, reply_name.clone(), counter.clone(), released_rx.clone()));
            }
        }));
        HeldBackend { name: name.to_string(), addr, held, release, _server: server }
    }

    /// Requests received and not answered yet.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }

    /// Answers every held request, and every later one at once.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

async fn serve(stream: TcpStream, name: String, held: Arc<AtomicU64>, mut released: watch::Receiver<bool>) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let target = line.split_whitespace().nth(1).unwrap_or_default().to_string();
        // The rest of the head; requests here carry no body.
        loop {
            line.clear();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) if line.trim_end().is_empty() => break,
                Ok(_) => {}
            }
        }
        held.fetch_add(1, Ordering::SeqCst);
        let answered = released.wait_for(|open| *open).await.is_ok();
        held.fetch_sub(1, Ordering::SeqCst);
        if !answered {
            return;
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-backend: {name}\r\nx-path: {target}\r\n\
             content-length: {}\r\n\r\n{name}",
            name.len()
        );
        if stream.get_mut().write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
