//! The leader-election decision, as a pure function of what the Lease says and how long it has said it.
//!
//! Replicas never compare their wall clocks with the Lease's timestamps (clocks drift between nodes). Like
//! client-go, a candidate remembers when *it* first saw the current Lease record and takes over only once that
//! record has stayed unchanged for a whole lease duration on its own monotonic clock. A leader steps down when it
//! has not renewed for `renew_deadline`, which is shorter than the lease duration, so it stops writing before any
//! candidate may start.

use std::time::{Duration, Instant};

/// What a Lease says, reduced to what the election needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Who holds it; `None` when nobody does (released, or never held).
    pub holder: Option<String>,
    /// The Lease's resourceVersion: it changes on every renewal, so "unchanged" means "nobody renewed".
    pub version: String,
}

/// What to do next with the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No Lease exists: create it, holding it.
    Create,
    /// Write ourselves as holder, conditionally on `version` (the API server refuses if someone else wrote first).
    Acquire { version: String },
    /// We hold it: renew, conditionally on `version`.
    Renew { version: String },
    /// Someone else holds a live lease: wait and look again.
    Follow { holder: String },
}

/// Timing of the election. `renew_deadline < lease_duration` keeps two leaders from overlapping.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Timing {
    /// client-go's proportions scaled to `lease_duration`: renew deadline 2/3 of it, retry every 1/7.
    pub fn from_lease_duration(lease_duration: Duration) -> Timing {
        Timing { lease_duration, renew_deadline: lease_duration * 2 / 3, retry_period: lease_duration / 7 }
    }
}

/// One replica's view of the election.
#[derive(Debug)]
pub struct Elector {
    identity: String,
    timing: Timing,
    /// The last record seen and when it was first seen unchanged.
    observed: Option<(LeaseRecord, Instant)>,
    /// When we last renewed successfully, while we lead.
    renewed: Option<Instant>,
}

impl Elector {
    pub fn new(identity: impl Into<String>, timing: Timing) -> Elector {
        Elector { identity: identity.into(), timing, observed: None, renewed: None }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Decides the next step from the Lease as read at `now` (`None`: it does not exist).
    pub fn step(&mut self, lease: Option<&LeaseRecord>, now: Instant) -> Step {
        let Some(lease) = lease else {
            self.observed = None;
            return Step::Create;
        };
        let first_seen = match &self.observed {
            Some((seen, since)) if seen == lease => *since,
            _ => now,
        };
        self.observed = Some((lease.clone(), first_seen));
        let version = lease.version.clone();
        match &lease.holder {
            Some(holder) if *holder == self.identity => Step::Renew { version },
            None => Step::Acquire { version },
            Some(_) if now.duration_since(first_seen) >= self.timing.lease_duration => Step::Acquire { version },
            Some(holder) => Step::Follow { holder: holder.clone() },
        }
    }

    /// A write (create, acquire or renew) succeeded at `now`.
    pub fn wrote(&mut self, now: Instant) {
        self.renewed = Some(now);
    }

    /// Someone else holds the Lease, or our write was refused: we do not lead.
    pub fn lost(&mut self) {
        self.renewed = None;
    }

    /// Whether this replica may act as leader at `now`: it renewed within the renew deadline.
    pub fn leads(&self, now: Instant) -> bool {
        self.renewed.is_some_and(|at| now.duration_since(at) < self.timing.renew_deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn record(holder: Option<&str>, version: &str) -> LeaseRecord {
        LeaseRecord { holder: holder.map(Into::into), version: version.into() }
    }

    fn elector(name: &str) -> Elector {
        Elector::new(name, Timing::from_lease_duration(15 * SECOND))
    }

    #[test]
    fn a_missing_lease_is_created() {
        assert_eq!(elector("a").step(None, Instant::now()), Step::Create);
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let step = elector("a").step(Some(&record(None, "7")), Instant::now());
        assert_eq!(step, Step::Acquire { version: "7".into() });
    }

    #[test]
    fn our_own_lease_is_renewed_at_its_version() {
        let step = elector("a").step(Some(&record(Some("a"), "9")), Instant::now());
        assert_eq!(step, Step::Renew { version: "9".into() });
    }

    #[test]
    fn a_live_lease_of_another_is_followed() {
        let (mut b, start) = (elector("b"), Instant::now());
        let lease = record(Some("a"), "3");
        assert_eq!(b.step(Some(&lease), start), Step::Follow { holder: "a".into() });
        assert_eq!(b.step(Some(&lease), start + 14 * SECOND), Step::Follow { holder: "a".into() });
    }

    #[test]
    fn a_lease_unchanged_for_a_whole_duration_is_taken_over() {
        let (mut b, start) = (elector("b"), Instant::now());
        let lease = record(Some("a"), "3");
        b.step(Some(&lease), start);
        assert_eq!(b.step(Some(&lease), start + 15 * SECOND), Step::Acquire { version: "3".into() });
    }

    #[test]
    fn each_renewal_restarts_the_wait() {
        let (mut b, start) = (elector("b"), Instant::now());
        b.step(Some(&record(Some("a"), "3")), start);
        // Renewed at 10 s: the clock starts again from when b saw the new version.
        b.step(Some(&record(Some("a"), "4")), start + 10 * SECOND);
        let step = b.step(Some(&record(Some("a"), "4")), start + 20 * SECOND);
        assert_eq!(step, Step::Follow { holder: "a".into() });
        let step = b.step(Some(&record(Some("a"), "4")), start + 25 * SECOND);
        assert_eq!(step, Step::Acquire { version: "4".into() });
    }

    #[test]
    fn a_leader_that_cannot_renew_steps_down_before_anyone_may_take_over() {
        let (mut a, start) = (elector("a"), Instant::now());
        a.wrote(start);
        assert!(a.leads(start + 9 * SECOND));
        // Renew deadline (10 s) < lease duration (15 s): a stops acting before b is allowed to start.
        assert!(!a.leads(start + 10 * SECOND));
    }

    #[test]
    fn losing_ends_leadership_at_once() {
        let (mut a, start) = (elector("a"), Instant::now());
        a.wrote(start);
        a.lost();
        assert!(!a.leads(start));
    }
}
