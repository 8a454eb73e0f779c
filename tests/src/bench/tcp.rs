//! Comparison 2: TCP through Berth's network filter against plain `tcp_proxy` to the same echo backend: new
//! connections per second (connect, one byte there and back, close) and echo throughput on long connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_tests::manifests::{self, ManifestDir};
use berth_tests::{Envoy, wait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::options::Options;
use super::routes;
use super::stats::{median, ratio};
use super::{BerthStack, envoy_options, free_addr};

#[derive(Debug, Clone, Default)]
pub struct TcpResult {
    pub berth_connections_per_second: Vec<f64>,
    pub native_connections_per_second: Vec<f64>,
    pub berth_mib_per_second: Vec<f64>,
    pub native_mib_per_second: Vec<f64>,
}

impl TcpResult {
    pub fn connection_ratio(&self) -> f64 {
        ratio(median(&self.berth_connections_per_second), median(&self.native_connections_per_second))
    }

    pub fn throughput_ratio(&self) -> f64 {
        ratio(median(&self.berth_mib_per_second), median(&self.native_mib_per_second))
    }
}

pub fn run(options: &Options, echo: SocketAddr) -> anyhow::Result<TcpResult> {
    let work = tempfile::tempdir()?;
    let manifests = ManifestDir::new(&work.path().join("manifests"));
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
    let state = vec![format!("--state={}", work.path().join("state.json").display())];
    let berth = BerthStack::start(&manifests, work.path(), options.workers, &state, &[format!("--tcp-ports={port}")])?;
    let berth_addr = SocketAddr::from(([127, 0, 0, 1], port));

    let native_addr = free_addr();
    let native_work = work.path().join("native");
    std::fs::create_dir_all(&native_work)?;
    let config = native_work.join("native.yaml");
    let admin = free_addr();
    std::fs::write(&config, routes::native_tcp_bootstrap(&berth.rendered, native_addr, echo, admin)?)?;
    let envoy_options = envoy_options(options.workers);
    let envoy_options: Vec<&str> = envoy_options.iter().map(String::as_str).collect();
    // The native Envoy has no HTTP listener: its admin address stands in for it.
    let _native = Envoy::run("native-envoy", &config, admin, admin, &native_work, &envoy_options);

    let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for addr in [berth_addr, native_addr] {
        wait::until(&format!("{addr} to echo"), Duration::from_secs(20), || client.block_on(connection(addr)).ok());
    }
    let seconds = Duration::from_secs(u64::from(options.seconds));
    let mut result = TcpResult::default();
    for round in 0..options.rounds {
        let berth_first = round % 2 == 0;
        for berth_turn in [berth_first, !berth_first] {
            let addr = if berth_turn { berth_addr } else { native_addr };
            let rate = client.block_on(connection_rate(addr, options.tcp_concurrency, seconds));
            let throughput = client.block_on(throughput(addr, options.tcp_streams, seconds));
            let side = if berth_turn { "berth " } else { "native" };
            eprintln!("  tcp round {round} {side}: {rate:.0} connections/s, {throughput:.0} MiB/s");
            if berth_turn {
                result.berth_connections_per_second.push(rate);
                result.berth_mib_per_second.push(throughput);
            } else {
                result.native_connections_per_second.push(rate);
                result.native_mib_per_second.push(throughput);
            }
        }
    }
    drop(berth);
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

/// Completed short connections per second, `concurrency` at a time.
async fn connection_rate(addr: SocketAddr, concurrency: usize, duration: Duration) -> f64 {
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
    done.load(Ordering::Relaxed) as f64 / duration.as_secs_f64()
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
