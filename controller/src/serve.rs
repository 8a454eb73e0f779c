//! The API server's accept loop: HTTP/1.1 with a bound on open connections and a deadline for every request's
//! headers, so that no client can hold the controller's file descriptors (which its health checks need too).
//!
//! - At most `max_connections` connections are open at once; while that many are, no more are accepted (they wait
//!   in the kernel's backlog) rather than accepted and starved. The limit is also held under half the process's
//!   open-files limit, so that checks, watches and files always have descriptors left.
//! - A connection must send a complete request head within `header_timeout` of opening or of finishing its last
//!   response; otherwise it is closed. That is also the idle timeout of keep-alive connections. A request being
//!   answered is never cut: a long poll of `/v1/table` is held for its whole `wait`.
//!
//! HTTP/1.1 only: Envoy, `berth routes` and kubelet probes all speak it, and hyper's version detection for HTTP/2
//! has no deadline of its own.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// How the API server protects itself; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl Limits {
    /// `max_connections` lowered to half the open-files limit `open_files` (when known): the rest of the process
    /// needs descriptors too, above all its health checks.
    pub fn within_open_files(self, open_files: Option<u64>) -> Limits {
        let Some(open_files) = open_files else { return self };
        let share = usize::try_from(open_files / 2).unwrap_or(usize::MAX).max(1);
        Limits { max_connections: self.max_connections.min(share), ..self }
    }
}

/// The soft limit on open files of this process, from `/proc/self/limits` (Linux); `None` when unknown or
/// unlimited.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&limits)
}

fn parse_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Serves `app` on `listener` within `limits` until `stop` resolves, then lets open connections finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let limits = limits.within_open_files(open_files_limit());
    info!(
        max_connections = limits.max_connections,
        header_timeout = ?limits.header_timeout,
        "API server limits"
    );
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    tokio::pin!(stop);
    let mut full = false;
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit,
            () = &mut stop => break,
        };
        let Ok(permit) = permit else { break }; // never closed
        if permits.available_permits() == 0 && !std::mem::replace(&mut full, true) {
            warn!(limit = limits.max_connections, "API server: connection limit reached; new connections wait");
        } else if permits.available_permits() > 0 {
            full = false;
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors (or a connection gone before it was accepted): wait a moment, as hyper's
                // own servers do, rather than spin.
                debug!(%error, "API server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = app.clone().map_request(|request: Request<Incoming>| request.map(Body::new));
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%error, "API server: connection ended with an error");
            }
            drop(permit);
        });
    }
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_connections: 512, header_timeout: Duration::from_secs(10) };

    #[test]
    fn reads_the_soft_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             127431               127431               processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files(limits), Some(1024));
        assert_eq!(parse_open_files("Max open files            unlimited  unlimited  files\n"), None);
        assert_eq!(parse_open_files(""), None);
    }

    #[test]
    fn the_connection_limit_stays_under_half_the_open_files() {
        assert_eq!(LIMITS.within_open_files(Some(256)).max_connections, 128);
        assert_eq!(LIMITS.within_open_files(Some(1 << 20)).max_connections, 512);
        assert_eq!(LIMITS.within_open_files(None).max_connections, 512);
        assert_eq!(LIMITS.within_open_files(Some(1)).max_connections, 1);
    }
}
