//! The health of every endpoint being checked: plain bookkeeping, fed the set of targets and check results, told
//! the time by its caller.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use k8s_openapi::jiff::Timestamp;

use super::state::{EndpointState, Thresholds};
use crate::objects::health_check::HealthCheck;

/// What is checked: an endpoint, the way its Service asks. Two Services that share an endpoint and a check share
/// one target (and one prober); with different checks, each gets its own verdict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub address: SocketAddr,
    pub check: HealthCheck,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub target: Target,
    /// Which run of checks of this target it came from ([`Book::sync`] numbers them): a result that arrives after
    /// its target was dropped (or dropped and added again) is ignored.
    pub run: u64,
    pub outcome: Outcome,
    pub at: Timestamp,
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// The endpoint failed, for this reason, e.g. `cannot connect: connection refused`.
    Failed(String),
    /// The check could not be made, for a reason on the controller's side (out of file descriptors, memory or
    /// buffers, no route from the controller): it says nothing about the endpoint, and counts neither way.
    Inconclusive(String),
}

impl From<Result<(), String>> for Outcome {
    fn from(result: Result<(), String>) -> Outcome {
        match result {
            Ok(()) => Outcome::Passed,
            Err(reason) => Outcome::Failed(reason),
        }
    }
}

/// What a result changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Stale, or for a target no longer checked.
    Ignored,
    /// Nothing anyone sees.
    Same,
    /// The last failure changed, not the state.
    Failure,
    /// The endpoint left the rotation, for this reason.
    Left(String),
    /// The endpoint came back.
    Returned,
    /// The check could not be made, for this reason on the controller's side, newly (the same reason again is
    /// [`Recorded::Same`]); the endpoint keeps its state.
    Inconclusive(String),
}

/// Which checks to start and stop to match a new set of targets.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// With the run number their results must carry.
    pub start: Vec<(Target, u64)>,
    pub stop: Vec<Target>,
}

/// One endpoint's health as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    state: EndpointState,
    /// When the current state began (for a healthy endpoint never failed: when checking began).
    pub since: Timestamp,
    /// Why the last failed check failed, and when. Repeated failures of an unhealthy endpoint for the same reason
    /// count as one, from when it began.
    pub last_failure: Option<(String, Timestamp)>,
}

impl Status {
    pub fn is_healthy(&self) -> bool {
        self.state.is_healthy()
    }
}

#[derive(Debug, Clone)]
struct Tracked {
    run: u64,
    status: Status,
    /// Why the last check could not be made, until one can again: reported once, not at every check.
    inconclusive: Option<String>,
}

#[derive(Debug, Default)]
pub struct Book {
    tracked: BTreeMap<Target, Tracked>,
    next_run: u64,
}

impl Book {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tracks exactly `targets`: new ones start healthy (see [`super::state`]), gone ones are forgotten (should
    /// one come back, it starts afresh).
    pub fn sync(&mut self, targets: &BTreeSet<Target>, now: Timestamp) -> Changes {
        let mut changes = Changes::default();
        self.tracked.retain(|target, _| {
            let keep = targets.contains(target);
            if !keep {
                changes.stop.push(target.clone());
            }
            keep
        });
        for target in targets {
            if !self.tracked.contains_key(target) {
                let run = self.next_run;
                self.next_run += 1;
                let status = Status { state: EndpointState::default(), since: now, last_failure: None };
                self.tracked.insert(target.clone(), Tracked { run, status, inconclusive: None });
                changes.start.push((target.clone(), run));
            }
        }
        changes
    }

    pub fn record(&mut self, observation: Observation) -> Recorded {
        let Some(tracked) = self.tracked.get_mut(&observation.target).filter(|t| t.run == observation.run) else {
            return Recorded::Ignored;
        };
        let outcome = match observation.outcome {
            Outcome::Inconclusive(reason) => {
                let new = tracked.inconclusive.as_ref() != Some(&reason);
                tracked.inconclusive = Some(reason.clone());
                return if new { Recorded::Inconclusive(reason) } else { Recorded::Same };
            }
            Outcome::Passed => Ok(()),
            Outcome::Failed(reason) => Err(reason),
        };
        tracked.inconclusive = None;
        let check = &observation.target.check;
        let thresholds = Thresholds { healthy: check.healthy_threshold, unhealthy: check.unhealthy_threshold };
        let status = &mut tracked.status;
        let flipped = status.state.record(outcome.is_ok(), thresholds);
        if flipped {
            status.since = observation.at;
        }
        match (outcome, flipped) {
            (Ok(()), true) => Recorded::Returned,
            (Ok(()), false) => Recorded::Same,
            // An unhealthy endpoint failing again for the same reason is no news: nothing to publish.
            (Err(reason), false)
                if !status.is_healthy() && status.last_failure.as_ref().is_some_and(|(last, _)| *last == reason) =>
            {
                Recorded::Same
            }
            (Err(reason), flipped) => {
                status.last_failure = Some((reason.clone(), observation.at));
                if flipped { Recorded::Left(reason) } else { Recorded::Failure }
            }
        }
    }

    /// Unknown targets count as healthy: only what is checked can be found wanting.
    pub fn is_healthy(&self, target: &Target) -> bool {
        self.tracked.get(target).is_none_or(|t| t.status.is_healthy())
    }

    pub fn status(&self, target: &Target) -> Option<&Status> {
        self.tracked.get(target).map(|t| &t.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn target(port: u16) -> Target {
        let mut check = HealthCheck::tcp(Duration::from_secs(1));
        check.unhealthy_threshold = 2;
        Target { address: ([127, 0, 0, 1], port).into(), check }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    fn result(target: &Target, run: u64, outcome: Result<(), &str>, second: i64) -> Observation {
        Observation { target: target.clone(), run, outcome: outcome.map_err(str::to_string).into(), at: at(second) }
    }

    #[test]
    fn sync_starts_new_targets_with_fresh_runs_and_stops_gone_ones() {
        let mut book = Book::new();
        let changes = book.sync(&BTreeSet::from([target(1), target(2)]), at(0));
        assert_eq!(changes, Changes { start: vec![(target(1), 0), (target(2), 1)], stop: vec![] });
        let changes = book.sync(&BTreeSet::from([target(2), target(3)]), at(1));
        assert_eq!(changes, Changes { start: vec![(target(3), 2)], stop: vec![target(1)] });
        assert_eq!(book.sync(&BTreeSet::from([target(2), target(3)]), at(2)), Changes::default());
        // Back again: a new run, so results of the old one are not taken for it.
        let changes = book.sync(&BTreeSet::from([target(1), target(2), target(3)]), at(3));
        assert_eq!(changes.start, [(target(1), 3)]);
        assert_eq!(book.record(result(&target(1), 0, Err("refused"), 4)), Recorded::Ignored);
        assert_eq!(book.tracked.len(), 3);
    }

    #[test]
    fn new_targets_are_healthy_since_they_were_added() {
        let mut book = Book::new();
        book.sync(&BTreeSet::from([target(1)]), at(5));
        assert!(book.is_healthy(&target(1)));
        let status = book.status(&target(1)).unwrap();
        assert_eq!((status.is_healthy(), status.since, &status.last_failure), (true, at(5), &None));
        assert!(book.is_healthy(&target(9)), "unchecked endpoints are not held back");
        assert_eq!(book.status(&target(9)), None);
    }

    #[test]
    fn results_move_the_verdict_and_keep_the_last_failure() {
        let mut book = Book::new();
        let t = target(1);
        book.sync(&BTreeSet::from([t.clone()]), at(0));
        assert_eq!(book.record(result(&t, 0, Ok(()), 1)), Recorded::Same);
        assert_eq!(book.record(result(&t, 0, Err("timed out after 1s"), 2)), Recorded::Failure);
        assert!(book.is_healthy(&t));
        assert_eq!(
            book.record(result(&t, 0, Err("connection refused"), 3)),
            Recorded::Left("connection refused".into())
        );
        assert!(!book.is_healthy(&t));
        let status = book.status(&t).unwrap();
        assert_eq!((status.is_healthy(), status.since), (false, at(3)));
        assert_eq!(status.last_failure, Some(("connection refused".to_string(), at(3))));
        assert_eq!(book.record(result(&t, 0, Err("connection refused"), 4)), Recorded::Same, "no news");
        assert_eq!(book.record(result(&t, 0, Err("timed out after 1s"), 5)), Recorded::Failure, "news");
        assert_eq!(book.record(result(&t, 0, Err("connection refused"), 6)), Recorded::Failure);
        assert_eq!(book.status(&t).unwrap().since, at(3));
        assert_eq!(book.record(result(&t, 0, Ok(()), 7)), Recorded::Same);
        assert_eq!(book.record(result(&t, 0, Ok(()), 8)), Recorded::Returned);
        let status = book.status(&t).unwrap();
        assert_eq!((status.is_healthy(), status.since), (true, at(8)));
        assert_eq!(status.last_failure, Some(("connection refused".to_string(), at(6))), "kept for people to see");
    }

    #[test]
    fn a_check_that_could_not_be_made_changes_nothing_and_is_reported_once() {
        let mut book = Book::new();
        let t = target(1);
        book.sync(&BTreeSet::from([t.clone()]), at(0));
        assert_eq!(book.record(result(&t, 0, Ok(()), 1)), Recorded::Same);
        let emfile = |second| Observation {
            target: t.clone(),
            run: 0,
            outcome: Outcome::Inconclusive("too many open files".into()),
            at: at(second),
        };
        // Far more than the unhealthy threshold of 2: none counts against the endpoint.
        assert_eq!(book.record(emfile(2)), Recorded::Inconclusive("too many open files".into()));
        for second in 3..10 {
            assert_eq!(book.record(emfile(second)), Recorded::Same);
        }
        assert!(book.is_healthy(&t));
        assert_eq!(book.status(&t).unwrap().last_failure, None);
        // Nor does it break a streak of real failures, or count as a pass.
        assert_eq!(book.record(result(&t, 0, Err("refused"), 10)), Recorded::Failure);
        assert_eq!(
            book.record(emfile(11)),
            Recorded::Inconclusive("too many open files".into()),
            "again after a check"
        );
        assert_eq!(book.record(result(&t, 0, Err("refused"), 12)), Recorded::Left("refused".into()));
    }

    #[test]
    fn results_for_untracked_targets_are_ignored() {
        let mut book = Book::new();
        assert_eq!(book.record(result(&target(1), 0, Err("refused"), 1)), Recorded::Ignored);
        assert!(book.tracked.is_empty());
    }
}
