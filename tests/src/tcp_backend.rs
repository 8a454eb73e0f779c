//! Loopback TCP backends: optionally speak first (a greeting, as MySQL and SMTP servers do), then echo.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::backend::{Serving, runtime};

pub struct TcpBackend {
    pub addr: SocketAddr,
    connections: Arc<AtomicU64>,
    _server: Serving,
}

impl TcpBackend {
    /// An echo server on a free loopback port.
    pub fn echo() -> TcpBackend {
        TcpBackend::start(None)
    }

    /// A server that sends `greeting` as soon as a client connects, then echoes.
    pub fn greeting(greeting: &str) -> TcpBackend {
        TcpBackend::start(Some(greeting.to_string()))
    }

    fn start(greeting: Option<String>) -> TcpBackend {
        TcpBackend::start_on("127.0.0.1:0".parse().expect("addr"), greeting)
    }

    /// A backend on `addr` (port 0 picks one), greeting first when `greeting` is given, then echoing.
    pub fn start_on(addr: SocketAddr, greeting: Option<String>) -> TcpBackend {
        let listener = std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind tcp backend {addr}: {e}"));
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        let greeting: Arc<[u8]> = Arc::from(greeting.unwrap_or_default().into_bytes());
        let server = runtime().spawn(async move {
            let Ok(listener) = TcpListener::from_std(listener) else { return };
            let mut open = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let greeting = greeting.clone();
                open.spawn(async move { greet_then_echo(stream, &greeting).await });
            }
        });
        TcpBackend { addr, connections, _server: Serving(server) }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Sends `greeting` (when not empty), then echoes every byte until the client is gone. Over plain TCP or a TLS
/// session alike; each write is flushed, as a TLS session only sends what it is flushed.
pub(crate) async fn greet_then_echo(mut stream: impl AsyncRead + AsyncWrite + Unpin, greeting: &[u8]) {
    if !greeting.is_empty() && (stream.write_all(greeting).await.is_err() || stream.flush().await.is_err()) {
        return;
    }
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buffer[..n]).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}
