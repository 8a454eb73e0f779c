//! Comparison 2: TCP through Berth's network filter, plain `tcp_proxy` to the same echo backend with the no-op wasm
//! filter in front (the floor), and plain `tcp_proxy` alone (see [`super::sides`]): new connections per second
//! (connect, one byte there and back, close) and echo throughput on long connections.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_tests::manifests::{self, ManifestDir};
use berth_tests::wait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::noop::{self, Layer};
use super::options::Options;
use super::routes;
use super::sides::{PerSide, Side, SideConfig};
use super::stats::{median, paired_ratio, ratio};
use super::{BerthStack, free_addr};

/// Every side's runs; run `i` of each side ran in round `i`.
#[derive(Debug, Clone, Default)]
pub struct TcpResult {
    pub connections_per_second: PerSide<Vec<f64>>,
    pub mib_per_second: PerSide<Vec<f64>>,
}

impl TcpResult {
    /// `a`'s new connections per second over `b`'s, from the medians.
    pub fn connection_ratio(&self, (a, b): (Side, Side)) -> f64 {
        ratio(median(self.connections_per_second.get(a)), median(self.connections_per_second.get(b)))
    }

    /// The same round by round, then the median.
    pub fn paired_connection_ratio(&self, (a, b): (Side, Side)) -> f64 {
        paired_ratio(self.connections_per_second.get(a), self.connections_per_second.get(b))
    }

    pub fn throughput_ratio(&self, (a, b): (Side, Side)) -> f64 {
        ratio(median(self.mib_per_second.get(a)), median(self.mib_per_second.get(b)))
    }
}

/// Berth's stack with one TCP port to the echo backend, and the bootstraps of the other two sides: plain
/// `tcp_proxy` to the same backend, with and without the no-op filter in front.
pub struct TcpSides {
    pub manifests: ManifestDir,
    pub berth: BerthStack,
    /// Berth's TCP listener.
    pub berth_listener: SocketAddr,
    pub noop: SideConfig,
    pub native: SideConfig,
}

impl TcpSides {
    pub fn start(work: &Path, workers: u32, echo: SocketAddr) -> anyhow::Result<TcpSides> {
        let manifests = ManifestDir::new(&work.join("manifests"));
        let (port, _) = wait::free_port_range(1);
        manifests.write(
            "cluster.yaml",
            &[
                manifests::node("bench-node", "127.0.0.1"),
                manifests::port_allocation("tcp", "tcp.bench.example", port, port),
                manifests::node_port_service("echo", 7, echo.port()),
                manifests::tcp_virtual_service("echo", &[("echo", 7)]),
            ]
            .join("---\n"),
        );
        let state = vec![format!("--state={}", work.join("state.json").display())];
        let berth = BerthStack::start(&manifests, work, workers, &state, &[format!("--tcp-ports={port}")])?;
        let side = |name: &str, with_noop: bool| {
            let (listener, admin) = (free_addr(), free_addr());
            let mut yaml = routes::native_tcp_bootstrap(&berth.rendered, listener, echo, admin)?;
            if with_noop {
                let wasm = berth_tests::paths::noop_wasm();
                yaml = noop::with_noop_filter(&yaml, &berth.rendered, Layer::Tcp, &wasm)?;
            }
            let bootstrap = work.join(format!("{name}.yaml"));
            std::fs::write(&bootstrap, yaml)?;
            anyhow::Ok(SideConfig { bootstrap, listener, admin })
        };
        let (noop, native) = (side("noop-tcp", true)?, side("native-tcp", false)?);
        Ok(TcpSides { manifests, berth, berth_listener: SocketAddr::from(([127, 0, 0, 1], port)), noop, native })
    }
}

/// Waits until `addr` echoes (the route is live there).
pub fn wait_echoes(client: &tokio::runtime::Runtime, addr: SocketAddr, limit: Duration) {
    wait::until(&format!("{addr} to echo"), limit, || client.block_on(connection(addr)).ok());
}

pub fn run(options: &Options, echo: SocketAddr) -> anyhow::Result<TcpResult> {
    let work = tempfile::tempdir()?;
    let sides = TcpSides::start(work.path(), options.workers, echo)?;
    let noop = sides.noop.start("noop-envoy", work.path(), options.workers, None);
    let native = sides.native.start("native-envoy", work.path(), options.workers, None);
    let listeners = PerSide { berth: sides.berth_listener, noop: noop.http, native: native.http };

    let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for side in Side::ALL {
        wait_echoes(&client, *listeners.get(side), Duration::from_secs(20));
    }
    let seconds = Duration::from_secs(u64::from(options.seconds));
    let mut result = TcpResult::default();
    for round in 0..options.rounds {
        for side in Side::order(round) {
            let addr = *listeners.get(side);
            let done = client.block_on(connections(addr, options.tcp_concurrency, seconds));
            let rate = done as f64 / seconds.as_secs_f64();
            let throughput = client.block_on(throughput(addr, options.tcp_streams, seconds));
            eprintln!("  tcp round {round} {:<10}: {rate:.0} connections/s, {throughput:.0} MiB/s", side.name());
            result.connections_per_second.get_mut(side).push(rate);
            result.mib_per_second.get_mut(side).push(throughput);
        }
    }
    Ok(result)
}

/// One short connection: connect, one byte there and back, close.
async fn connection(addr: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    stream.write_all(b"x").await?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    Ok(())
}

/// Short connections completed within `duration`, `concurrency` at a time.
pub async fn connections(addr: SocketAddr, concurrency: usize, duration: Duration) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let done = done.clone();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if connection(addr).await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    done.load(Ordering::Relaxed)
}

/// MiB/s echoed back over `streams` long connections, each writing 64 KiB blocks while reading the echo.
async fn throughput(addr: SocketAddr, streams: usize, duration: Duration) -> f64 {
    let received = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let received = received.clone();
            tokio::spawn(async move {
                let Ok(stream) = TcpStream::connect(addr).await else { return };
                let (mut read, mut write) = stream.into_split();
                let writer = tokio::spawn(async move {
                    let block = vec![0x5au8; 64 * 1024];
                    while Instant::now() < deadline {
                        if write.write_all(&block).await.is_err() {
                            return;
                        }
                    }
                });
                let mut buffer = vec![0u8; 64 * 1024];
                while Instant::now() < deadline {
                    match tokio::time::timeout_at(deadline.into(), read.read(&mut buffer)).await {
                        Ok(Ok(n)) if n > 0 => {
                            received.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
                writer.abort();
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    received.load(Ordering::Relaxed) as f64 / duration.as_secs_f64() / (1024.0 * 1024.0)
}
