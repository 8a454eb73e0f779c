//! The object store: every object as JSON, one global resourceVersion counter, a bounded history of changes for
//! watches to replay, and snapshots to a file so a restarted server keeps objects and resourceVersions.

use crate::registry::{self, ResourceType, StorageKey};
use crate::status::ApiResult;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// `(namespace or "", name)`: sorts like the real server's etcd keys.
pub type ObjKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One committed write; `prev` lets a filtered watch turn a change into ADDED or DELETED for its selector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub rv: u64,
    pub key: StorageKey,
    pub kind: ChangeType,
    pub object: Value,
    pub prev: Option<Value>,
}

/// Everything the server knows, as written by `--state`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub resource_version: u64,
    pub compacted: u64,
    pub objects: Vec<(StorageKey, Value)>,
    pub history: Vec<Change>,
}

#[derive(Debug, Default)]
pub struct State {
    rv: u64,
    compacted: u64,
    objects: BTreeMap<StorageKey, BTreeMap<ObjKey, Value>>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
}

impl State {
    /// The newest resourceVersion handed out.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Watches must start at or after this resourceVersion; older ones get 410 Gone.
    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    pub fn get(&self, key: &StorageKey, obj: &ObjKey) -> Option<&Value> {
        self.objects.get(key)?.get(obj)
    }

    /// Objects of one resource in key order, optionally in one namespace.
    pub fn list<'a>(
        &'a self,
        key: &StorageKey,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjKey, &'a Value)> + use<'a> {
        self.objects.get(key).into_iter().flat_map(|m| m.iter()).filter(move |((n, _), _)| ns.is_none_or(|ns| n == ns))
    }

    /// Every resource that has held an object.
    pub fn keys(&self) -> Vec<StorageKey> {
        self.objects.keys().cloned().collect()
    }

    pub fn history_after(&self, rv: u64) -> impl Iterator<Item = &Arc<Change>> {
        let start = self.history.partition_point(|c| c.rv <= rv);
        self.history.range(start..)
    }

    /// Every served resource type, including those of the stored CRDs.
    pub fn types(&self) -> Vec<ResourceType> {
        let crds = StorageKey { group: registry::CRD_GROUP.into(), plural: registry::CRD_PLURAL.into() };
        registry::all(self.list(&crds, None).map(|(_, v)| v))
    }

    fn push_history(&mut self, change: Arc<Change>) {
        self.history.push_back(change);
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }
}

/// Writes inside one lock; changes are published to watchers when the transaction ends.
pub struct Tx<'a> {
    state: &'a mut State,
    dry_run: bool,
    changes: Vec<Arc<Change>>,
}

impl Tx<'_> {
    pub fn state(&self) -> &State {
        self.state
    }

    /// Stores the object under its namespace/name with a new resourceVersion and returns it as stored.
    pub fn put(&mut self, key: &StorageKey, mut obj: Value) -> Value {
        let ok = (
            crate::meta::namespace(&obj).unwrap_or_default().to_string(),
            crate::meta::name(&obj).unwrap_or_default().to_string(),
        );
        if self.dry_run {
            return obj;
        }
        self.state.rv += 1;
        let rv = self.state.rv;
        crate::meta::metadata_mut(&mut obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let prev = self.state.objects.entry(key.clone()).or_default().insert(ok, obj.clone());
        let kind = if prev.is_some() { ChangeType::Modified } else { ChangeType::Added };
        self.record(Change { rv, key: key.clone(), kind, object: obj.clone(), prev });
        obj
    }

    /// Removes an object; the returned copy (and the DELETED event) carries the deletion's resourceVersion.
    pub fn delete(&mut self, key: &StorageKey, ok: &ObjKey) -> Option<Value> {
        if self.dry_run {
            return self.state.get(key, ok).cloned();
        }
        let prev = self.state.objects.get_mut(key)?.remove(ok)?;
        self.state.rv += 1;
        let rv = self.state.rv;
        let mut obj = prev.clone();
        crate::meta::metadata_mut(&mut obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
        self.record(Change { rv, key: key.clone(), kind: ChangeType::Deleted, object: obj.clone(), prev: Some(prev) });
        Some(obj)
    }

    fn record(&mut self, change: Change) {
        self.changes.push(Arc::new(change));
    }
}

pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Change>>,
    persist: Option<PathBuf>,
}

impl Store {
    pub fn new(snapshot: Snapshot, history_limit: usize, persist: Option<PathBuf>) -> Self {
        let mut state = State {
            rv: snapshot.resource_version,
            compacted: snapshot.compacted,
            history_limit: history_limit.max(1),
            ..State::default()
        };
        for (key, obj) in snapshot.objects {
            let ok = (
                crate::meta::namespace(&obj).unwrap_or_default().to_string(),
                crate::meta::name(&obj).unwrap_or_default().to_string(),
            );
            state.objects.entry(key).or_default().insert(ok, obj);
        }
        for change in snapshot.history {
            state.push_history(Arc::new(change));
        }
        let (events, _) = broadcast::channel(8192);
        Store { state: Mutex::new(state), events, persist }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.lock())
    }

    /// Runs `f` atomically; whatever it wrote is published (and persisted) even if it then failed, so the
    /// history never disagrees with the objects.
    pub fn write<T>(&self, dry_run: bool, f: impl FnOnce(&mut Tx<'_>) -> ApiResult<T>) -> ApiResult<T> {
        let mut state = self.lock();
        let mut tx = Tx { state: &mut state, dry_run, changes: vec![] };
        let result = f(&mut tx);
        let changes = std::mem::take(&mut tx.changes);
        if !changes.is_empty() {
            for change in changes {
                state.push_history(change.clone());
                // No receivers is fine: nobody is watching.
                let _ = self.events.send(change);
            }
            self.persist(&state);
        }
        result
    }

    /// Reads the state and subscribes to later changes under one lock: nothing falls between the two.
    pub fn subscribe<T>(&self, f: impl FnOnce(&State) -> T) -> (T, broadcast::Receiver<Arc<Change>>) {
        let state = self.lock();
        (f(&state), self.events.subscribe())
    }

    /// Forgets all history: a watch from any resourceVersion older than now gets 410 Gone.
    pub fn compact(&self) {
        let mut state = self.lock();
        state.history.clear();
        state.compacted = state.rv;
        self.persist(&state);
    }

    pub fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.lock())
    }

    fn persist(&self, state: &State) {
        if let Some(path) = &self.persist
            && let Err(error) = save(&snapshot_of(state), path)
        {
            tracing::warn!(path = %path.display(), %error, "cannot write the state file");
        }
    }
}

fn snapshot_of(state: &State) -> Snapshot {
    Snapshot {
        resource_version: state.rv,
        compacted: state.compacted,
        objects: state.objects.iter().flat_map(|(k, m)| m.values().map(move |v| (k.clone(), v.clone()))).collect(),
        history: state.history.iter().map(|c| (**c).clone()).collect(),
    }
}

/// Writes the snapshot atomically (temporary file, then rename).
pub fn save(snapshot: &Snapshot, path: &Path) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(snapshot)?)?;
    std::fs::rename(tmp, path)
}

/// Reads a snapshot; a missing file is an empty store.
pub fn load(path: &Path) -> std::io::Result<Snapshot> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Snapshot::default()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm() -> StorageKey {
        StorageKey { group: "".into(), plural: "configmaps".into() }
    }

    #[test]
    fn writes_assign_increasing_versions_and_history_compacts() {
        let store = Store::new(Snapshot::default(), 2, None);
        for n in ["a", "b", "c"] {
            store.write(false, |tx| Ok(tx.put(&cm(), json!({"metadata": {"name": n, "namespace": "d"}})))).unwrap();
        }
        store.read(|s| {
            assert_eq!(s.rv(), 3);
            assert_eq!(s.compacted(), 1);
            assert_eq!(s.history_after(1).map(|c| c.rv).collect::<Vec<_>>(), [2, 3]);
            assert_eq!(s.list(&cm(), Some("d")).count(), 3);
        });
        let deleted = store.write(false, |tx| Ok(tx.delete(&cm(), &("d".into(), "a".into())))).unwrap().unwrap();
        assert_eq!(deleted["metadata"]["resourceVersion"], "4");
    }

    #[test]
    fn snapshots_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let store = Store::new(Snapshot::default(), 10, Some(path.clone()));
        store.write(false, |tx| Ok(tx.put(&cm(), json!({"metadata": {"name": "a", "namespace": "d"}})))).unwrap();
        let again = Store::new(load(&path).unwrap(), 10, None);
        again.read(|s| {
            assert_eq!(s.rv(), 1);
            assert_eq!(s.history_after(0).count(), 1);
            assert_eq!(s.get(&cm(), &("d".into(), "a".into())).unwrap()["metadata"]["resourceVersion"], "1");
        });
    }
}
