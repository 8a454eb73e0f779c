//! One check of one endpoint, over the network: a TCP connect, or a minimal HTTP/1.1 `GET` whose status line is
//! all that is read. Hand-written because a health check needs nothing else, and so its timeout covers everything.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::book::Outcome;
use crate::objects::health_check::{HealthCheck, Probe, StatusRange, format_duration};

/// The most of a response read while looking for the end of its status line.
const STATUS_LINE_LIMIT: usize = 1024;

/// Runs `check` against `address` once; a failure says why, for people.
pub async fn probe(address: SocketAddr, check: &HealthCheck) -> Outcome {
    let attempt = async {
        let stream = match TcpStream::connect(address).await {
            Ok(stream) => stream,
            Err(error) if on_the_checkers_side(&error) => {
                return Outcome::Inconclusive(format!("cannot check: {}", describe(&error)));
            }
            Err(error) => return Outcome::Failed(format!("cannot connect: {}", describe(&error))),
        };
        let result = match &check.probe {
            Probe::Tcp => Ok(()),
            Probe::Http { path, host, status } => http_get(stream, address, path, host.as_deref(), *status).await,
        };
        result.into()
    };
    match tokio::time::timeout(check.timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failed(format!("timed out after {}", format_duration(check.timeout))),
    }
}

/// Whether a connect failed for a reason of the controller's own, which says nothing about the endpoint: out of
/// file descriptors (per process or system-wide), memory or socket buffers, local ports, or without a route
/// from the controller's network namespace. A refused, reset or unanswered connection is the endpoint's.
fn on_the_checkers_side(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::OutOfMemory | io::ErrorKind::AddrNotAvailable | io::ErrorKind::NetworkUnreachable
    ) || matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL | libc::ENETUNREACH)
    )
}

async fn http_get(
    mut stream: TcpStream,
    address: SocketAddr,
    path: &str,
    host: Option<&str>,
    expected: StatusRange,
) -> Result<(), String> {
    let host = host.map_or_else(|| address.to_string(), str::to_string);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: berth-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("cannot send the request: {}", describe(&e)))?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        if head.len() >= STATUS_LINE_LIMIT {
            return Err(format!("no status line in the first {STATUS_LINE_LIMIT} bytes of the response"));
        }
        let n = stream.read(&mut buffer).await.map_err(|e| format!("cannot read the response: {}", describe(&e)))?;
        if n == 0 {
            return Err("the connection closed before a response".to_string());
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let status = status_code(&head)?;
    if expected.contains(status) { Ok(()) } else { Err(format!("HTTP {status}, expected {expected}")) }
}

/// The status code of `HTTP/1.x NNN ...`.
fn status_code(head: &[u8]) -> Result<u16, String> {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let code = match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") && code.len() == 3 => code.parse().ok(),
        _ => None,
    };
    code.ok_or_else(|| {
        let shown: String = line.chars().take(60).collect();
        format!("not an HTTP response: {shown:?}")
    })
}

/// `connection refused` rather than `Connection refused (os error 111)`: the words people search for.
fn describe(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::BrokenPipe => error.kind().to_string(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncBufReadExt;
    use tokio::net::TcpListener;

    fn http(path: &str, status: StatusRange, timeout: Duration) -> HealthCheck {
        let probe = Probe::Http { path: path.into(), host: Some("web.internal".into()), status };
        HealthCheck { probe, timeout, ..HealthCheck::tcp(Duration::from_secs(1)) }
    }

    /// A server that answers each connection with `response` and hands back the request head it read.
    async fn server(response: &'static str) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = tokio::io::BufReader::new(stream);
            let mut head = String::new();
            while stream.read_line(&mut head).await.unwrap() > 2 {}
            stream.get_mut().write_all(response.as_bytes()).await.unwrap();
            head
        });
        (addr, task)
    }

    /// A loopback port nothing listens on.
    async fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn tcp_passes_when_the_endpoint_accepts_and_fails_when_it_refuses() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let check = HealthCheck::tcp(Duration::from_secs(1));
        assert_eq!(probe(listener.local_addr().unwrap(), &check).await, Outcome::Passed);
        assert_eq!(
            probe(closed_port().await, &check).await,
            Outcome::Failed("cannot connect: connection refused".into())
        );
    }

    #[tokio::test]
    async fn http_sends_a_get_and_judges_the_status() {
        let (addr, request) = server("HTTP/1.1 204 No Content\r\n\r\n").await;
        assert_eq!(
            probe(addr, &http("/healthz", StatusRange { low: 200, high: 299 }, Duration::from_secs(5))).await,
            Outcome::Passed
        );
        let request = request.await.unwrap();
        assert!(request.starts_with("GET /healthz HTTP/1.1\r\nHost: web.internal\r\n"), "{request}");
        assert!(request.contains("Connection: close\r\n"), "{request}");

        let (addr, _) = server("HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n").await;
        let result = probe(addr, &http("/", StatusRange { low: 200, high: 200 }, Duration::from_secs(5))).await;
        assert_eq!(result, Outcome::Failed("HTTP 500, expected 200".into()));
    }

    #[tokio::test]
    async fn http_fails_on_something_that_is_not_http_or_closes_early() {
        let (addr, _) = server("SSH-2.0-OpenSSH\r\n").await;
        let result = probe(addr, &http("/", StatusRange::DEFAULT, Duration::from_secs(5))).await;
        assert_eq!(result, Outcome::Failed("not an HTTP response: \"SSH-2.0-OpenSSH\"".into()));
        let (addr, _) = server("").await;
        let result = probe(addr, &http("/", StatusRange::DEFAULT, Duration::from_secs(5))).await;
        assert_eq!(result, Outcome::Failed("the connection closed before a response".into()));
    }

    #[tokio::test]
    async fn a_silent_endpoint_times_out() {
        // Accepts (the kernel completes the handshake on a listening socket) but never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let check = http("/", StatusRange::DEFAULT, Duration::from_millis(200));
        assert_eq!(
            probe(listener.local_addr().unwrap(), &check).await,
            Outcome::Failed("timed out after 200ms".into())
        );
    }

    #[test]
    fn failures_of_the_checker_itself_are_told_apart_from_the_endpoints() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM, libc::ENETUNREACH, libc::EADDRNOTAVAIL] {
            assert!(on_the_checkers_side(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
        for errno in [libc::ECONNREFUSED, libc::ECONNRESET, libc::EHOSTUNREACH, libc::ETIMEDOUT] {
            assert!(!on_the_checkers_side(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
    }

    #[test]
    fn reads_status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Ok(200));
        assert_eq!(status_code(b"HTTP/1.0 503\r\n"), Ok(503));
        assert!(status_code(b"HTTP/2 200\r\n").is_err());
        assert!(status_code(b"HTTP/1.1 20 OK\r\n").is_err());
    }
}
