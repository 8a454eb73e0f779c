//! Publication: the latest compiled table with its version, shared with the HTTP server through a
//! `tokio::sync::watch` channel.
//!
//! The version starts at the wall-clock time in milliseconds, so it grows across restarts, and goes up by one
//! only when the table's content changes: Envoy refetches exactly when there is something new.
//!
//! Endpoint health travels with the table: a table without its unhealthy endpoints is a table like any other
//! (a new version when an endpoint leaves or returns), and the health of every checked endpoint is published
//! alongside for people (see [`crate::health`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use berth_table::Table;
use tokio::sync::watch;

use crate::Diagnostic;
use crate::api::SourceStatus;
use crate::compiler::{Assignment, Assignments, Compiled, Content};
use crate::health::EndpointHealth;
use crate::port_ranges::PortRangeView;

/// What readers see: the current table (none until the first compilation), the current diagnostics, the ports
/// handed out to tcp routes and the addresses of tls routes.
#[derive(Debug, Clone, Default)]
pub struct Publication {
    pub table: Option<Arc<Published>>,
    pub diagnostics: Arc<Vec<Diagnostic>>,
    pub assignments: Arc<Assignments>,
    /// Where clients reach the tls routes served.
    pub tls_addresses: Arc<Vec<Assignment>>,
    /// How each source is doing: a stale source's objects are the last it delivered.
    pub sources: Arc<Vec<SourceStatus>>,
    /// Every checked endpoint's health, by service then address.
    pub health: Arc<Vec<EndpointHealth>>,
    /// Each PortAllocation range and how much of it is handed out.
    pub port_ranges: Arc<Vec<PortRangeView>>,
}

impl Publication {
    pub fn version(&self) -> Option<u64> {
        self.table.as_ref().map(|t| t.table.version)
    }
}

/// A table and its encoding, made once per version.
#[derive(Debug)]
pub struct Published {
    pub table: Table,
    pub body: Bytes,
}

/// What one publication changed, for logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub version: u64,
    pub table_changed: bool,
    /// Diagnostics that were not there before: each is logged once, when it appears.
    pub new_diagnostics: Vec<Diagnostic>,
    pub diagnostics_changed: bool,
    pub assignments_changed: bool,
}

impl Difference {
    pub fn changed(&self) -> bool {
        self.table_changed || self.diagnostics_changed || self.assignments_changed
    }
}

pub struct Publisher {
    tx: watch::Sender<Publication>,
    first_version: u64,
}

impl Publisher {
    pub fn new(first_version: u64) -> Self {
        Publisher { tx: watch::Sender::new(Publication::default()), first_version }
    }

    /// A publisher whose first version is the current time in milliseconds since the Unix epoch.
    pub fn starting_now() -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
        Self::new(u64::try_from(now).unwrap_or(u64::MAX / 2))
    }

    pub fn subscribe(&self) -> watch::Receiver<Publication> {
        self.tx.subscribe()
    }

    /// Publishes `compiled` (from which unhealthy endpoints are already left out) and `health`, together. Health
    /// alone changing wakes readers of `/v1/routes` but is not worth a log line: [`Difference::changed`] leaves it
    /// out.
    pub fn publish(&mut self, compiled: Compiled, health: Vec<EndpointHealth>) -> Difference {
        let previous = self.tx.borrow().clone();
        let table_changed = previous.table.as_ref().is_none_or(|p| !holds(&p.table, &compiled.content));
        let table = match (&previous.table, table_changed) {
            (Some(table), false) => table.clone(),
            (previous, _) => {
                let version = previous.as_ref().map_or(self.first_version, |t| t.table.version + 1);
                let table = into_table(compiled.content, version);
                let body = Bytes::from(berth_table::encode(&table));
                Arc::new(Published { table, body })
            }
        };
        let before: BTreeSet<&Diagnostic> = previous.diagnostics.iter().collect();
        let new_diagnostics: Vec<Diagnostic> =
            compiled.diagnostics.iter().filter(|d| !before.contains(d)).cloned().collect();
        let diagnostics_changed = *previous.diagnostics != compiled.diagnostics;
        let assignments_changed =
            *previous.assignments != compiled.assignments || *previous.tls_addresses != compiled.tls_addresses;
        let health_changed = *previous.health != health;
        let version = table.table.version;
        if table_changed || diagnostics_changed || assignments_changed || health_changed {
            self.tx.send_replace(Publication {
                table: Some(table),
                diagnostics: Arc::new(compiled.diagnostics),
                assignments: Arc::new(compiled.assignments),
                tls_addresses: Arc::new(compiled.tls_addresses),
                sources: previous.sources.clone(),
                health: Arc::new(health),
                port_ranges: previous.port_ranges.clone(),
            });
        }
        Difference { version, table_changed, new_diagnostics, diagnostics_changed, assignments_changed }
    }

    /// Replaces the port ranges' use; readers are woken only when it changed.
    pub fn set_port_ranges(&mut self, port_ranges: Vec<PortRangeView>) {
        self.tx.send_if_modified(|snapshot| {
            let changed = *snapshot.port_ranges != port_ranges;
            snapshot.port_ranges = Arc::new(port_ranges);
            changed
        });
    }

    /// Replaces the sources' status; readers are woken only when it changed.
    pub fn set_sources(&mut self, sources: Vec<SourceStatus>) {
        self.tx.send_if_modified(|snapshot| {
            let changed = *snapshot.sources != sources;
            snapshot.sources = Arc::new(sources);
            changed
        });
    }
}

/// Whether `table` holds exactly `content`: the published table is the record of what was published last, so
/// no second copy of its routes is kept to compare with.
fn holds(table: &Table, content: &Content) -> bool {
    let Content { http, default_backend, tcp, affinity_key, tls } = content;
    table.http == *http
        && table.default_backend == *default_backend
        && table.tcp == *tcp
        && table.affinity_key == *affinity_key
        && table.tls == *tls
}

/// The table of `content`, moved rather than copied (at ten thousand routes a copy is a noticeable part of a
/// change's cost).
fn into_table(content: Content, version: u64) -> Table {
    let Content { http, default_backend, tcp, affinity_key, tls } = content;
    Table { http, default_backend, tcp, affinity_key, tls, ..Table::new(version) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use berth_table::{HttpRoute, PathMatch, Source};

    /// An http route to nowhere for each of `hosts`, and an error for each of `errors`.
    pub(crate) fn compiled(hosts: &[&str], errors: &[&str]) -> Compiled {
        let http = hosts
            .iter()
            .map(|host| HttpRoute {
                host: host.to_string(),
                path: PathMatch::Prefix("/".into()),
                backends: vec![],
                source: Source { kind: "Ingress".into(), namespace: "ns".into(), name: "x".into() },
                session_cookie: None,
                policy: None,
            })
            .collect();
        Compiled {
            content: Content { http, ..Content::default() },
            diagnostics: errors.iter().map(|e| Diagnostic::new(*e)).collect(),
            ..Compiled::default()
        }
    }

    #[test]
    fn the_first_version_is_the_start_version() {
        let mut publisher = Publisher::new(1_000);
        let rx = publisher.subscribe();
        assert!(rx.borrow().table.is_none());
        let outcome = publisher.publish(compiled(&["a"], &[]), vec![]);
        assert_eq!(outcome.version, 1_000);
        assert!(outcome.table_changed);
        assert_eq!(rx.borrow().version(), Some(1_000));
        let table = berth_table::decode(&rx.borrow().table.as_ref().unwrap().body).unwrap();
        assert_eq!((table.version, table.http[0].host.as_str()), (1_000, "a"));
    }

    #[test]
    fn version_goes_up_only_when_the_content_changes() {
        let mut publisher = Publisher::new(7);
        let mut rx = publisher.subscribe();
        publisher.publish(compiled(&["a"], &[]), vec![]);
        rx.mark_unchanged();
        let same = publisher.publish(compiled(&["a"], &[]), vec![]);
        assert_eq!((same.version, same.changed()), (7, false));
        assert!(!rx.has_changed().unwrap(), "an identical table wakes nobody");
        let next = publisher.publish(compiled(&["a", "b"], &[]), vec![]);
        assert_eq!((next.version, next.table_changed), (8, true));
        let back = publisher.publish(compiled(&["a"], &[]), vec![]);
        assert_eq!(back.version, 9, "going back to older content is still a change");
    }

    #[test]
    fn diagnostics_change_without_a_new_version_and_are_new_once() {
        let mut publisher = Publisher::new(1);
        let rx = publisher.subscribe();
        let first = publisher.publish(compiled(&["a"], &["x"]), vec![]);
        assert_eq!(first.new_diagnostics, [Diagnostic::new("x")]);
        let again = publisher.publish(compiled(&["a"], &["x"]), vec![]);
        assert!(again.new_diagnostics.is_empty() && !again.changed());
        let more = publisher.publish(compiled(&["a"], &["x", "y"]), vec![]);
        assert_eq!((more.version, more.table_changed, more.diagnostics_changed), (1, false, true));
        assert_eq!(more.new_diagnostics, [Diagnostic::new("y")]);
        assert_eq!(rx.borrow().diagnostics.len(), 2);
    }

    #[test]
    fn health_alone_changing_wakes_readers_without_a_new_version() {
        let mut publisher = Publisher::new(1);
        let mut rx = publisher.subscribe();
        publisher.publish(compiled(&["a"], &[]), vec![]);
        rx.mark_unchanged();
        let health = EndpointHealth::unhealthy_example();
        let outcome = publisher.publish(compiled(&["a"], &[]), vec![health.clone()]);
        assert!(!outcome.table_changed && !outcome.changed(), "{outcome:?}");
        assert!(rx.has_changed().unwrap());
        assert_eq!((rx.borrow().version(), rx.borrow().health.as_slice()), (Some(1), std::slice::from_ref(&health)));
        publisher.publish(compiled(&["a"], &[]), vec![]);
        assert!(rx.borrow().health.is_empty());
    }

    #[test]
    fn starting_now_uses_the_clock_in_milliseconds() {
        let mut publisher = Publisher::starting_now();
        let version = publisher.publish(compiled(&[], &[]), vec![]).version;
        assert!(version > 1_700_000_000_000, "{version}");
    }
}
