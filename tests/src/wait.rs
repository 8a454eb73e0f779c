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
///
/// Ranges come from below the kernel's ephemeral range: there, only listeners hold ports, whereas inside it every
/// outgoing connection of every parallel test takes one, and a run of a thousand free ports is rarely found. Starts
/// are random so that tests probing at the same time seldom pick the same run. [`free_port`]'s ports come from
/// inside the ephemeral range, so a listener on one never takes a port of a range.
pub fn free_port_range(count: u16) -> (u16, u16) {
    let (low, high) = (10_000u16, ephemeral_ports_start().saturating_sub(count));
    assert!(low < high, "no room for {count} ports below the ephemeral range");
    for _ in 0..200 {
        let first = low + (random() % u64::from(high - low)) as u16;
        let last = first + (count - 1);
        // One port at a time: holding a thousand sockets at once can exceed the open-files limit.
        if (first..=last).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return (first, last);
        }
    }
    panic!("no run of {count} free ports between {low} and {high}");
}

/// The first port the kernel hands out for outgoing connections (Linux), or the IANA default elsewhere.
fn ephemeral_ports_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(49_152)
}

/// A random number from the standard library's per-process hash seed: enough to spread port ranges.
fn random() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
