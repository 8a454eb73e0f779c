//! One task per target, checking it at once and then every interval, sending each result to the run loop.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::book::{Changes, Observation, Outcome, Target};
use super::probe::probe;

pub struct Scheduler {
    tasks: HashMap<Target, JoinHandle<()>>,
    results: mpsc::Sender<Observation>,
}

impl Scheduler {
    pub fn new(results: mpsc::Sender<Observation>) -> Self {
        Scheduler { tasks: HashMap::new(), results }
    }

    /// Starts and stops checks as the book asks. Must run inside the Tokio runtime.
    pub fn apply(&mut self, changes: Changes) {
        for target in changes.stop {
            if let Some(task) = self.tasks.remove(&target) {
                task.abort();
            }
        }
        for (target, run) in changes.start {
            let results = self.results.clone();
            let checked = target.clone();
            let task = tokio::spawn(async move {
                let mut first = true;
                let mut retries = Retries::new(checked.check.interval);
                loop {
                    let outcome = probe(checked.address, &checked.check).await;
                    let at = Timestamp::now();
                    let mut interval = checked.check.interval;
                    if let Some(soon) = retries.after(&outcome) {
                        interval = soon;
                    } else if std::mem::take(&mut first) {
                        interval += stagger(&checked, interval);
                    }
                    let observation = Observation { target: checked.clone(), run, outcome, at };
                    // The run loop is gone: so is everyone who wanted to know.
                    if results.send(observation).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(interval).await;
                }
            });
            if let Some(old) = self.tasks.insert(target, task) {
                old.abort();
            }
        }
    }
}

/// The first check a retry waits for, at most: an endpoint that is not listening yet at its first check (Berth
/// and the backends started together) is back within about this much.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Quick checks of an endpoint never seen up: while it has passed no check, a failure is followed by another
/// check after 1 s, then 2 s, 4 s, ... up to the interval, rather than a whole interval later.
#[derive(Debug)]
struct Retries {
    interval: Duration,
    next: Option<Duration>,
}

impl Retries {
    fn new(interval: Duration) -> Retries {
        Retries { interval, next: Some(FIRST_RETRY.min(interval)) }
    }

    /// How soon to check again after `outcome`: `None` for the usual interval.
    fn after(&mut self, outcome: &Outcome) -> Option<Duration> {
        match outcome {
            Outcome::Passed => {
                self.next = None; // seen up: from now on, the interval
                None
            }
            Outcome::Inconclusive(_) => None,
            Outcome::Failed(_) => {
                let soon = self.next?;
                self.next = Some((soon * 2).min(self.interval));
                Some(soon)
            }
        }
    }
}

/// Up to half an interval, different for each target: targets that start together (at start, all of them) keep
/// checking at different moments rather than in bursts.
fn stagger(target: &Target, interval: Duration) -> Duration {
    // `DefaultHasher::new` has fixed keys: the same target gets the same offset, which is all this needs.
    let mut hasher = DefaultHasher::new();
    target.hash(&mut hasher);
    let thousandths = u32::try_from(hasher.finish() % 500).unwrap_or(0);
    interval * thousandths / 1000
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::health_check::HealthCheck;
    use std::time::Duration;
    use tokio::net::TcpListener;

    #[test]
    fn staggers_differ_between_targets_and_stay_under_half_an_interval() {
        let interval = Duration::from_secs(10);
        let staggers: Vec<Duration> = (1..=20)
            .map(|port| {
                stagger(&Target { address: ([127, 0, 0, 1], port).into(), check: HealthCheck::tcp(interval) }, interval)
            })
            .collect();
        assert!(staggers.iter().all(|s| *s < interval / 2), "{staggers:?}");
        let distinct: std::collections::BTreeSet<_> = staggers.iter().collect();
        assert!(distinct.len() > 10, "{staggers:?}");
    }

    #[test]
    fn failures_before_the_first_pass_are_retried_soon_and_ever_later_up_to_the_interval() {
        let failed = Outcome::Failed("refused".into());
        let mut retries = Retries::new(Duration::from_secs(10));
        let waits: Vec<Option<u64>> = (0..6).map(|_| retries.after(&failed).map(|d| d.as_secs())).collect();
        assert_eq!(waits, [Some(1), Some(2), Some(4), Some(8), Some(10), Some(10)]);
        assert_eq!(retries.after(&Outcome::Passed), None);
        assert_eq!(retries.after(&failed), None, "once seen up, the interval");
        let mut retries = Retries::new(Duration::from_millis(100));
        assert_eq!(retries.after(&failed), Some(Duration::from_millis(100)), "never slower than the interval");
        let mut retries = Retries::new(Duration::from_secs(10));
        assert_eq!(retries.after(&Outcome::Inconclusive("too many open files".into())), None);
        assert_eq!(retries.after(&failed), Some(Duration::from_secs(1)));
    }

    #[tokio::test]
    async fn checks_start_at_once_repeat_and_stop() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target =
            Target { address: listener.local_addr().unwrap(), check: HealthCheck::tcp(Duration::from_millis(100)) };
        let (tx, mut rx) = mpsc::channel(16);
        let mut scheduler = Scheduler::new(tx);
        scheduler.apply(Changes { start: vec![(target.clone(), 7)], stop: vec![] });
        for _ in 0..2 {
            let observation = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
            assert_eq!((&observation.target, observation.run, &observation.outcome), (&target, 7, &Outcome::Passed));
        }
        scheduler.apply(Changes { start: vec![], stop: vec![target] });
        assert!(scheduler.tasks.is_empty());
        // Whatever was in flight drains; then nothing more comes, and the channel closes with the last sender.
        drop(scheduler);
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(_)) => {}
                other => break other,
            }
        };
        assert!(matches!(end, Ok(None)), "the channel closed: no check is left running");
    }
}
