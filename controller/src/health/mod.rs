//! Active health checking: the controller checks every endpoint the compiled table names (a TCP connect, or an
//! HTTP `GET` when the Service's annotations ask for one) and leaves out of the published table those that fail
//! their checks; when they pass again they come back, each time as a new table version.
//!
//! Pure core, thin I/O: [`state`] is one endpoint's state machine, [`book`] tracks every target, [`plan`] turns the
//! compiled content and the index into checks and withholds unhealthy endpoints, [`view`] shows the result;
//! [`probe`] runs one check and [`scheduler`] runs them over time. [`Health`] ties them together for the run loop,
//! which owns it: compile → [`Health::apply`] → publish, also when only health changed.

pub mod book;
pub mod plan;
pub mod probe;
pub mod scheduler;
pub mod state;
pub mod view;

pub use book::{Observation, Recorded, Target};
pub use plan::diagnostics as annotation_diagnostics;
pub use view::EndpointHealth;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::compiler::Compiled;
use crate::index::Index;

/// How many check results may wait for the run loop before checks pause to let it catch up.
const RESULTS_QUEUE: usize = 1024;

pub struct Health {
    book: book::Book,
    scheduler: scheduler::Scheduler,
    /// The interval of Services that do not set `berth.dev/health-check-interval`.
    default_interval: Duration,
}

impl Health {
    /// The checker, and where the results of its checks arrive: feed each to [`Health::record`].
    pub fn new(default_interval: Duration) -> (Health, mpsc::Receiver<Observation>) {
        let (tx, rx) = mpsc::channel(RESULTS_QUEUE);
        let health = Health { book: book::Book::new(), scheduler: scheduler::Scheduler::new(tx), default_interval };
        (health, rx)
    }

    /// The step between compiling and publishing: checks exactly the endpoints `compiled` names (starting and
    /// stopping checks to match), leaves out those found unhealthy, reports malformed health check annotations
    /// with the other diagnostics, and returns every checked endpoint's health for people to see.
    ///
    /// Only endpoints are withheld: routes, weights and ports handed out stay as compiled.
    pub fn apply(&mut self, index: &Index, compiled: &mut Compiled) -> Vec<EndpointHealth> {
        let checks = plan::checks(index, &compiled.content, self.default_interval);
        let changes = self.book.sync(&plan::targets(&compiled.content, &checks), Timestamp::now());
        self.scheduler.apply(changes);
        let health = view::endpoint_health(&compiled.content, &checks, &self.book);
        plan::withhold_unhealthy(&mut compiled.content, &checks, &self.book);
        compiled.diagnostics.extend(plan::diagnostics(index, self.default_interval));
        health
    }

    /// Takes one check result; whether anything shown changed, so that it is time to publish again.
    pub fn record(&mut self, observation: Observation) -> bool {
        let (address, check) = (observation.target.address, observation.target.check.to_string());
        crate::metrics::global().health_check(observation.outcome.is_ok());
        match self.book.record(observation) {
            Recorded::Ignored | Recorded::Same => false,
            Recorded::Failure => true,
            Recorded::Left(reason) => {
                warn!(endpoint = %address, %check, %reason, "endpoint failed its health check: out of rotation");
                true
            }
            Recorded::Returned => {
                info!(endpoint = %address, %check, "endpoint passed its health check: back in rotation");
                true
            }
        }
    }
}
