//! The ejection list: endpoints the filter saw refuse a connection or time out, each out of rotation until its
//! back-off ends. Pure data; [`crate::passive_health`] keeps it in shared data for every worker VM.
//!
//! A failure ejects an endpoint for [`BASE_BACKOFF_MS`]. When the back-off ends the endpoint is back in rotation
//! on probation: its next answer forgives it (the entry goes), its next failure ejects it for twice as long, up
//! to [`MAX_BACKOFF_MS`]. Failures reported while an endpoint is already ejected (requests that were in flight
//! when it failed, or reports from other workers) change nothing, so one outage counts once.
//!
//! On the wire, one line per endpoint, `IP:PORT UNTIL_MS STRIKES`: small, and a reader skips what it cannot parse.

use std::net::SocketAddr;

/// How long a first failure keeps an endpoint out of rotation.
pub const BASE_BACKOFF_MS: u64 = 10_000;
/// The longest back-off, however often an endpoint fails.
pub const MAX_BACKOFF_MS: u64 = 300_000;
/// How long after its back-off ended an entry is kept without news: an endpoint that is not chosen again (it left
/// every route) should not keep a record forever.
const FORGET_AFTER_MS: u64 = 600_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ejection {
    pub endpoint: SocketAddr,
    /// Out of rotation until then (milliseconds since the epoch).
    pub until_ms: u64,
    /// Failures since the endpoint last answered, each after the previous back-off ended.
    pub strikes: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ejections {
    entries: Vec<Ejection>,
}

/// The back-off after the `strikes`th failure in a row.
pub fn backoff_ms(strikes: u32) -> u64 {
    let doublings = strikes.saturating_sub(1).min(32);
    BASE_BACKOFF_MS.saturating_mul(1 << doublings).min(MAX_BACKOFF_MS)
}

impl Ejections {
    pub fn decode(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let entries = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_ascii_whitespace();
                let endpoint = fields.next()?.parse().ok()?;
                let until_ms = fields.next()?.parse().ok()?;
                let strikes = fields.next()?.parse().ok()?;
                Some(Ejection { endpoint, until_ms, strikes })
            })
            .collect();
        Ejections { entries }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut text = String::new();
        for Ejection { endpoint, until_ms, strikes } in &self.entries {
            text.push_str(&format!("{endpoint} {until_ms} {strikes}\n"));
        }
        text.into_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, endpoint: SocketAddr) -> Option<&Ejection> {
        self.entries.iter().find(|e| e.endpoint == endpoint)
    }

    /// The endpoints out of rotation at `now_ms`.
    pub fn ejected_at(&self, now_ms: u64) -> Vec<SocketAddr> {
        self.entries.iter().filter(|e| e.until_ms > now_ms).map(|e| e.endpoint).collect()
    }

    /// Records a failure of `endpoint`: the new ejection, or `None` when it was already out of rotation.
    pub fn fail(&mut self, endpoint: SocketAddr, now_ms: u64) -> Option<Ejection> {
        self.forget_stale(now_ms);
        let strikes = match self.get(endpoint) {
            Some(ejection) if ejection.until_ms > now_ms => return None,
            Some(ejection) => ejection.strikes.saturating_add(1),
            None => 1,
        };
        self.entries.retain(|e| e.endpoint != endpoint);
        let ejection = Ejection { endpoint, until_ms: now_ms.saturating_add(backoff_ms(strikes)), strikes };
        self.entries.push(ejection.clone());
        Some(ejection)
    }

    /// Records an answer from `endpoint`: forgives it when its back-off has ended. Whether anything changed.
    pub fn succeed(&mut self, endpoint: SocketAddr, now_ms: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.endpoint != endpoint || e.until_ms > now_ms);
        self.entries.len() != before
    }

    fn forget_stale(&mut self, now_ms: u64) {
        self.entries.retain(|e| e.until_ms.saturating_add(FORGET_AFTER_MS) > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        ([10, 0, 0, 1], port).into()
    }

    #[test]
    fn a_failure_ejects_for_the_base_backoff_and_repeats_change_nothing() {
        let mut list = Ejections::default();
        let ejection = list.fail(addr(1), 1_000).unwrap();
        assert_eq!(ejection, Ejection { endpoint: addr(1), until_ms: 1_000 + BASE_BACKOFF_MS, strikes: 1 });
        assert_eq!(list.ejected_at(1_000), [addr(1)]);
        assert_eq!(list.fail(addr(1), 2_000), None, "already ejected");
        assert_eq!(list.ejected_at(1_000 + BASE_BACKOFF_MS), Vec::<SocketAddr>::new(), "back in rotation");
    }

    #[test]
    fn failing_on_probation_doubles_the_backoff_up_to_the_cap_and_an_answer_forgives() {
        let mut list = Ejections::default();
        let mut now = 0;
        let mut backoffs = Vec::new();
        for _ in 0..8 {
            let ejection = list.fail(addr(1), now).unwrap();
            backoffs.push(ejection.until_ms - now);
            now = ejection.until_ms;
        }
        assert_eq!(backoffs, [10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
        assert!(!list.succeed(addr(1), now - 1), "an answer from a request sent before the ejection");
        assert!(list.succeed(addr(1), now));
        assert!(list.is_empty());
        assert_eq!(list.fail(addr(1), now).unwrap().strikes, 1, "forgiven: the next failure is a first one");
    }

    #[test]
    fn entries_round_trip_and_bad_lines_are_skipped() {
        let mut list = Ejections::default();
        list.fail(addr(1), 5);
        list.fail("[::1]:8080".parse().unwrap(), 6);
        assert_eq!(Ejections::decode(&list.encode()), list);
        let mut text = list.encode();
        text.extend_from_slice(b"garbage\n10.0.0.1:2 notanumber 1\n\xff\xfe\n10.0.0.1:3 99\n");
        assert_eq!(Ejections::decode(&text), list);
        assert_eq!(Ejections::decode(b""), Ejections::default());
    }

    #[test]
    fn long_forgotten_entries_are_dropped_on_the_next_failure() {
        let mut list = Ejections::default();
        list.fail(addr(1), 0);
        list.fail(addr(2), BASE_BACKOFF_MS + FORGET_AFTER_MS + 1);
        assert_eq!(list.get(addr(1)), None);
        assert!(list.get(addr(2)).is_some());
    }

    #[test]
    fn huge_strike_counts_do_not_overflow() {
        assert_eq!(backoff_ms(u32::MAX), MAX_BACKOFF_MS);
        let mut list = Ejections::decode(format!("10.0.0.1:1 0 {}\n", u32::MAX).as_bytes());
        let ejection = list.fail(addr(1), 1_000).unwrap();
        assert_eq!((ejection.until_ms, ejection.strikes), (1_000 + MAX_BACKOFF_MS, u32::MAX));
        let mut late = Ejections::default();
        assert_eq!(late.fail(addr(1), u64::MAX).unwrap().until_ms, u64::MAX);
    }
}
