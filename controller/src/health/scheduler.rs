//! One task per target, checking it at once and then every interval, sending each result to the run loop.

use std::collections::HashMap;

use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::book::{Changes, Observation, Target};
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
                loop {
                    let outcome = probe(checked.address, &checked.check).await;
                    let at = Timestamp::now();
                    let interval = checked.check.interval;
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

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
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
            assert_eq!((&observation.target, observation.run, &observation.outcome), (&target, 7, &Ok(())));
        }
        scheduler.apply(Changes { start: vec![], stop: vec![target] });
        assert!(scheduler.is_empty());
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
