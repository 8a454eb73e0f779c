//! Which root context fetches the table: exactly one per Envoy at a time, elected through shared data.
//!
//! Every filter root context (one per worker thread and filter configuration, HTTP, TCP and TLS alike) is a
//! candidate, so Berth needs nothing in Envoy's bootstrap. The lease is one shared-data key, [`LEASE_KEY`], holding
//! the holder's deadline (milliseconds since the epoch, decimal). Shared-data writes carry a compare-and-swap
//! token, and every successful write gets a new token, so the holder is whoever made the last write: a candidate
//! remembers the token of its own write and still holds the lease while nobody else has written since.
//!
//! - A follower looks at the lease every [`CHECK_MS`]; when the deadline has passed (or there is no lease yet) it
//!   writes a new deadline with the token it read. Of several followers that saw the same expired lease, one write
//!   succeeds; the others get a CAS mismatch and stay followers.
//! - The winner has only *claimed* the lease: it fetches after its next renewal succeeds. This settles the one race
//!   CAS cannot: a lease key that does not exist yet is created unconditionally, so two candidates at start-up may
//!   both create it and read back the same token; only one of them can then renew with that token.
//! - The holder renews every [`CHECK_MS`] with its token, [`LEASE_MS`] ahead. When it stops (its root context is
//!   gone after a listener update, its VM crashed), the lease runs out and a follower takes over. A holder that
//!   finds another token has lost the lease and stops fetching. A root context that is being deleted releases its
//!   lease at once ([`Election::release`]) so another takes over on its next check.
//!
//! All of it runs on the root context's tick; requests and connections never see it.

use log::info;

use crate::host::{CasError, Host};

/// Shared-data key holding the fetcher lease's deadline.
pub const LEASE_KEY: &str = "berth.fetch_lease";
/// How long a lease lasts without renewal: a holder that stops renewing is replaced after this (plus a check).
pub const LEASE_MS: u64 = 2_000;
/// How often the holder renews and a follower looks for an expired lease. Four renewals fit in a lease, so a
/// holder whose ticks run late on a loaded machine keeps it.
pub const CHECK_MS: u64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Follower,
    /// Wrote the lease, with this token; fetches after one renewal (see the module doc).
    Claimed(u32),
    /// Holds the lease: the token of its last renewal.
    Holder(u32),
}

/// What a tick changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// This root now holds the lease: start fetching.
    Won,
    /// Another root holds the lease now: stop fetching.
    Lost,
}

/// One candidate's view of the election.
#[derive(Debug)]
pub struct Election {
    standing: Standing,
    next_check_ms: u64,
    /// Names this candidate in log lines (its plugin's role).
    name: &'static str,
}

impl Election {
    pub fn new(name: &'static str) -> Self {
        Election { standing: Standing::Follower, next_check_ms: 0, name }
    }

    /// Whether this root fetches.
    pub fn holds(&self) -> bool {
        matches!(self.standing, Standing::Holder(_))
    }

    /// Claims, confirms, renews or gives up the lease, at most once per [`CHECK_MS`].
    pub fn on_tick(&mut self, host: &impl Host) -> Change {
        let now = host.now_ms();
        if now < self.next_check_ms {
            return Change::None;
        }
        self.next_check_ms = now.saturating_add(CHECK_MS);
        let was_holder = self.holds();
        let (value, token) = host.shared_data_cas(LEASE_KEY);
        self.standing = match self.standing {
            Standing::Claimed(mine) | Standing::Holder(mine) if token == Some(mine) => {
                match write_lease(host, now, token) {
                    Some(renewed) => Standing::Holder(renewed),
                    None => Standing::Follower,
                }
            }
            Standing::Claimed(_) | Standing::Holder(_) => Standing::Follower,
            Standing::Follower => {
                let deadline = value.as_deref().and_then(parse_deadline);
                if deadline.is_some_and(|deadline| deadline > now) {
                    Standing::Follower
                } else {
                    match write_lease(host, now, token) {
                        Some(claimed) => Standing::Claimed(claimed),
                        None => Standing::Follower,
                    }
                }
            }
        };
        match (was_holder, self.holds()) {
            (false, true) => {
                info!("this {} root context now fetches the table for this Envoy", self.name);
                Change::Won
            }
            (true, false) => {
                info!("this {} root context lost the fetch lease: another one fetches the table", self.name);
                Change::Lost
            }
            _ => Change::None,
        }
    }

    /// Gives the lease up (the root context is being deleted): another candidate takes it on its next check instead
    /// of waiting for the lease to run out. Only a lease still this candidate's is touched.
    pub fn release(&mut self, host: &impl Host) {
        if let Standing::Claimed(mine) | Standing::Holder(mine) = self.standing {
            // Best effort: if this fails, the lease runs out on its own.
            if host.set_shared_data_cas(LEASE_KEY, b"0", Some(mine)).is_ok() {
                info!("this {} root context is going away and released the fetch lease", self.name);
            }
        }
        self.standing = Standing::Follower;
    }
}

/// Writes a lease running [`LEASE_MS`] from `now` if the key still has token `cas` (`None`: the key does not exist
/// yet), and returns the token of that write.
fn write_lease(host: &impl Host, now: u64, cas: Option<u32>) -> Option<u32> {
    let deadline = now.saturating_add(LEASE_MS).to_string();
    match host.set_shared_data_cas(LEASE_KEY, deadline.as_bytes(), cas) {
        Ok(()) => {}
        Err(CasError::Mismatch | CasError::Other(_)) => return None,
    }
    // The token of this write: nobody else writes a lease that has not run out, so it is ours.
    match host.shared_data_cas(LEASE_KEY) {
        (Some(value), Some(token)) if value == deadline.as_bytes() => Some(token),
        _ => None,
    }
}

fn parse_deadline(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    /// Ticks both candidates (one shared-data store) at `now`.
    fn tick(host: &FakeHost, now: u64, a: &mut Election, b: &mut Election) -> (Change, Change) {
        host.now.set(now);
        (a.on_tick(host), b.on_tick(host))
    }

    #[test]
    fn one_of_two_candidates_holds_the_lease_after_a_confirming_renewal() {
        let host = FakeHost::default();
        let (mut a, mut b) = (Election::new("http"), Election::new("tcp"));
        assert_eq!(tick(&host, 1_000, &mut a, &mut b), (Change::None, Change::None), "a claimed, b saw a's lease");
        assert!(!a.holds() && !b.holds());
        assert_eq!(tick(&host, 1_500, &mut a, &mut b), (Change::Won, Change::None));
        assert!(a.holds() && !b.holds());
        for now in (2_000..20_000).step_by(500) {
            assert_eq!(tick(&host, now, &mut a, &mut b), (Change::None, Change::None));
            assert!(a.holds() && !b.holds(), "at {now}");
        }
    }

    #[test]
    fn checks_at_most_every_check_period() {
        let host = FakeHost::default();
        let mut a = Election::new("http");
        host.now.set(1_000);
        a.on_tick(&host);
        let reads = host.reads.borrow().len();
        for now in (1_020..1_500).step_by(20) {
            host.now.set(now);
            assert_eq!(a.on_tick(&host), Change::None);
        }
        assert_eq!(host.reads.borrow().len(), reads, "no shared-data read between checks");
    }

    #[test]
    fn another_candidate_takes_over_when_the_holder_stops_renewing() {
        let host = FakeHost::default();
        let (mut a, mut b) = (Election::new("http"), Election::new("tcp"));
        tick(&host, 1_000, &mut a, &mut b);
        tick(&host, 1_500, &mut a, &mut b);
        assert!(a.holds());
        // a's root context is gone: only b ticks. Its lease (renewed at 1,500) runs out at 3,500.
        let mut won_at = None;
        for now in (2_000..6_000).step_by(500) {
            host.now.set(now);
            if b.on_tick(&host) == Change::Won {
                won_at = Some(now);
                break;
            }
        }
        assert_eq!(won_at, Some(4_000), "claimed at 3,500 when the lease ran out, confirmed at the next check");
        // Were a to come back, it finds another token and stops.
        host.now.set(4_000);
        assert_eq!(a.on_tick(&host), Change::Lost);
        assert!(!a.holds() && b.holds());
    }

    #[test]
    fn a_released_lease_is_taken_at_the_next_check() {
        let host = FakeHost::default();
        let (mut a, mut b) = (Election::new("http"), Election::new("tcp"));
        tick(&host, 1_000, &mut a, &mut b);
        tick(&host, 1_500, &mut a, &mut b);
        a.release(&host);
        assert!(!a.holds());
        host.now.set(2_000);
        assert_eq!(b.on_tick(&host), Change::None, "claimed");
        host.now.set(2_500);
        assert_eq!(b.on_tick(&host), Change::Won);
    }

    #[test]
    fn of_two_candidates_that_created_the_lease_at_once_only_one_confirms() {
        let host = FakeHost::default();
        let (mut a, mut b) = (Election::new("http"), Election::new("tcp"));
        // Both saw no lease and wrote one: the key is created unconditionally, so both writes succeed and both read
        // back the token of the last one.
        host.now.set(1_000);
        host.put_shared(LEASE_KEY, b"3000");
        let token = host.cas.borrow()[LEASE_KEY];
        a.standing = Standing::Claimed(token);
        b.standing = Standing::Claimed(token);
        a.next_check_ms = 1_500;
        b.next_check_ms = 1_500;
        let changes = tick(&host, 1_500, &mut a, &mut b);
        assert_eq!(changes, (Change::Won, Change::None));
        assert!(a.holds() && !b.holds());
    }

    #[test]
    fn a_cas_conflict_leaves_the_lease_to_the_writer_that_won() {
        let host = FakeHost::default();
        let mut a = Election::new("http");
        // Another VM writes between a's read and a's write.
        host.cas_conflicts.set(1);
        host.now.set(1_000);
        assert_eq!(a.on_tick(&host), Change::None);
        host.now.set(1_500);
        assert_eq!(a.on_tick(&host), Change::None);
        assert!(!a.holds(), "still a follower");
        // The lease the conflict left (no valid deadline) counts as run out: a claims it now and holds it next.
        host.now.set(2_000);
        assert_eq!(a.on_tick(&host), Change::Won);
    }

    #[test]
    fn a_holder_that_ticks_too_late_loses_the_lease_to_the_one_that_claimed_it() {
        let host = FakeHost::default();
        let (mut a, mut b) = (Election::new("http"), Election::new("tcp"));
        tick(&host, 1_000, &mut a, &mut b);
        tick(&host, 1_500, &mut a, &mut b);
        // a stalls for 3 s: b claims and confirms meanwhile.
        host.now.set(4_000);
        b.on_tick(&host);
        host.now.set(4_500);
        assert_eq!(b.on_tick(&host), Change::Won);
        host.now.set(4_600);
        assert_eq!(a.on_tick(&host), Change::Lost);
        for now in (5_000..8_000).step_by(500) {
            assert_eq!(tick(&host, now, &mut a, &mut b), (Change::None, Change::None));
            assert!(!a.holds() && b.holds());
        }
    }

    #[test]
    fn garbage_in_the_lease_counts_as_run_out() {
        let host = FakeHost::default();
        host.put_shared(LEASE_KEY, b"not a deadline");
        let mut a = Election::new("tls");
        host.now.set(1_000);
        a.on_tick(&host);
        host.now.set(1_500);
        assert_eq!(a.on_tick(&host), Change::Won);
    }
}
