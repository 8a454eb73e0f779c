//! Waiting on conditions: poll a readiness signal until it holds, with a deadline that fails loudly.

use std::time::{Duration, Instant};

/// Polls `probe` until it returns `Some`, for at most `limit`; panics naming `what` when time runs out.
pub fn until<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free loopback port: bound, read, released. Tests run in parallel, so every server takes one of these.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// `count` consecutive free loopback ports, as `(first, last)`: for TCP port ranges.
pub fn free_port_range(count: u16) -> (u16, u16) {
    // Start from a free port and probe upwards; ephemeral ports are spread, so runs of free ports are common.
    for _ in 0..200 {
        let first = free_port();
        let Some(last) = first.checked_add(count - 1) else { continue };
        // One port at a time: holding a thousand sockets at once can exceed the open-files limit.
        if (first..=last).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return (first, last);
        }
    }
    panic!("no run of {count} free ports");
}
