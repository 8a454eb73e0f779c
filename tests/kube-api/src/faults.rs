//! Fault injection and observation for tests: cut every open watch, pause the API (503), count requests per
//! verb and resource, and record which client made which kind of request (to check RBAC rules against).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

pub struct Faults {
    paused: AtomicBool,
    cut: watch::Sender<u64>,
    counts: Mutex<BTreeMap<String, u64>>,
    access: Mutex<BTreeSet<Access>>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            paused: AtomicBool::new(false),
            cut: watch::channel(0).0,
            counts: Mutex::new(BTreeMap::new()),
            access: Mutex::new(BTreeSet::new()),
        }
    }
}

/// One kind of request a client made, in the terms of an RBAC rule: who (the User-Agent's product token, e.g.
/// `kubectl/v1.37.1` or `berth/0.1.0`; empty without one), the verb, the API group (empty for core), the resource
/// (with `/subresource`), the namespace (none: cluster-wide) and the object's name (for list and watch: the
/// `metadata.name=` field selector's, which is how RBAC's `resourceNames` applies to them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Access {
    pub agent: String,
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Faults {
    /// Ends every open watch stream now, mid-stream, as a dropped connection would.
    pub fn cut_watches(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Fires when the open watches must end.
    pub fn cut_signal(&self) -> watch::Receiver<u64> {
        self.cut.subscribe()
    }

    /// Answers 503 to every API request (and cuts the watches) until `resume`.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        self.cut_watches();
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    pub fn count(&self, verb: &str, resource: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(format!("{verb} {resource}")).or_default() += 1;
    }

    pub fn record_access(&self, access: Access) {
        self.access.lock().unwrap_or_else(|p| p.into_inner()).insert(access);
    }

    /// Every kind of request made since the start (or the last `reset_counts`).
    pub fn access(&self) -> Vec<Access> {
        self.access.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    pub fn counts(&self) -> Counts {
        Counts(self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    pub fn reset_counts(&self) {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.access.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Requests served so far, keyed `"<verb> <resource>[/<subresource>]"` (e.g. `"patch ingresses/status"`); verbs
/// are the API server's: get, list, watch, create, update, patch, delete, deletecollection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Counts(pub BTreeMap<String, u64>);

pub const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

impl Counts {
    pub fn get(&self, verb: &str, resource: &str) -> u64 {
        self.0.get(&format!("{verb} {resource}")).copied().unwrap_or(0)
    }

    /// Every write, to any resource.
    pub fn writes(&self) -> u64 {
        self.0.iter().filter(|(k, _)| WRITE_VERBS.iter().any(|v| k.starts_with(&format!("{v} ")))).map(|(_, n)| n).sum()
    }

    /// Writes to one resource (e.g. `"ingresses/status"`).
    pub fn writes_to(&self, resource: &str) -> u64 {
        WRITE_VERBS.iter().map(|v| self.get(v, resource)).sum()
    }
}
