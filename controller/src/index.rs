//! The index: every object every source currently holds, with where it came from and when it was first seen.
//!
//! Plain data, owned by one task and changed only through `apply`, `delete` and `reset`; the compiler reads it.
//! Objects of every cluster sit side by side, told apart by the cluster in their key. A cluster can be held
//! back ([`Index::hold`]) while its first lists come in, so that a half-listed cluster (its VirtualServices
//! without its Services yet) is never compiled into errors.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use crate::Diagnostic;
use crate::objects::{Kind, LOCAL_CLUSTER, Object, ObjectKey};

/// Names a source of objects within a cluster: `dir:examples`, `kube:Service v1` of cluster `alpha`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId {
    pub cluster: String,
    pub name: String,
}

impl SourceId {
    pub fn new(cluster: &str, name: &str) -> Self {
        SourceId { cluster: cluster.to_string(), name: name.to_string() }
    }
}

/// A source of the local cluster.
impl From<&str> for SourceId {
    fn from(name: &str) -> Self {
        SourceId::new(LOCAL_CLUSTER, name)
    }
}

impl From<String> for SourceId {
    fn from(name: String) -> Self {
        SourceId { cluster: LOCAL_CLUSTER.to_string(), name }
    }
}

impl From<&SourceId> for SourceId {
    fn from(source: &SourceId) -> Self {
        source.clone()
    }
}

/// `dir:examples`, or `dir:examples (cluster alpha)`.
impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if crate::objects::is_local(&self.cluster) {
            f.write_str(&self.name)
        } else {
            write!(f, "{} (cluster {})", self.name, self.cluster)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub object: Object,
    /// The source, and with it the cluster, the object came from.
    pub source: SourceId,
    /// The file the object was read from, for messages; none for sources without files.
    pub file: Option<PathBuf>,
    /// When the index first saw this object, as a sequence number: the age of objects without a
    /// `creationTimestamp`. Kept while the object exists, even across a source's resets.
    pub seen: u64,
}

impl Entry {
    /// The object's key, in the cluster it came from.
    pub fn key(&self) -> ObjectKey {
        self.object.key().in_cluster(&self.source.cluster)
    }

    pub fn cluster(&self) -> &str {
        &self.source.cluster
    }
}

#[derive(Debug, Default)]
pub struct Index {
    objects: BTreeMap<ObjectKey, Entry>,
    /// Problems found while reading each source, reported with the compiler's.
    diagnostics: BTreeMap<SourceId, Vec<Diagnostic>>,
    /// Objects a watching source could not read, by source and key: each is absent from `objects` until a good
    /// version arrives or it is deleted.
    rejected: BTreeMap<SourceId, BTreeMap<ObjectKey, Diagnostic>>,
    /// Clusters whose objects are kept but not shown to readers yet.
    held: BTreeSet<String>,
    next_seen: u64,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces one object. An object that another source already holds stays with that source.
    pub fn apply(
        &mut self,
        source: impl Into<SourceId>,
        object: Object,
        file: Option<PathBuf>,
    ) -> Result<(), Diagnostic> {
        let source = source.into();
        let key = object.key().in_cluster(&source.cluster);
        if let Some(entry) = self.objects.get_mut(&key) {
            if entry.source != source {
                let first = entry.file.as_ref().map_or_else(|| entry.source.to_string(), |f| f.display().to_string());
                return Err(Diagnostic::new(format!("{key} is also defined in {first}; this copy is ignored"))
                    .object(key.to_string())
                    .file(file));
            }
            entry.object = object;
            entry.file = file;
            self.clear_rejected(&source, &key);
            return Ok(());
        }
        self.clear_rejected(&source, &key);
        let seen = self.next_seen;
        self.next_seen += 1;
        self.objects.insert(key, Entry { object, source, file, seen });
        Ok(())
    }

    /// Removes the object `key` names in `source`'s cluster, if `source` holds it.
    pub fn delete(&mut self, source: impl Into<SourceId>, key: &ObjectKey) {
        let source = source.into();
        let key = key.clone().in_cluster(&source.cluster);
        if self.objects.get(&key).is_some_and(|entry| entry.source == source) {
            self.objects.remove(&key);
        }
        self.clear_rejected(&source, &key);
    }

    /// Records that `source` holds an object it cannot read: any earlier version it held is gone (as a broken
    /// document in a file is), and `diagnostic` says why until the object is fixed or deleted.
    pub fn reject(&mut self, source: impl Into<SourceId>, key: ObjectKey, diagnostic: Diagnostic) {
        let source = source.into();
        let key = key.in_cluster(&source.cluster);
        self.delete(&source, &key);
        self.rejected.entry(source).or_default().insert(key, diagnostic);
    }

    fn clear_rejected(&mut self, source: &SourceId, key: &ObjectKey) {
        if let Some(rejected) = self.rejected.get_mut(source) {
            rejected.remove(key);
        }
    }

    /// Replaces everything `source` holds with `objects` (in the order it read them) and its reading problems.
    /// Objects still present keep their age; new ones are younger than all others, in the order given.
    pub fn reset(
        &mut self,
        source: impl Into<SourceId>,
        objects: Vec<(Object, Option<PathBuf>)>,
        mut diagnostics: Vec<Diagnostic>,
    ) {
        let source = source.into();
        let mut incoming: BTreeMap<ObjectKey, (Object, Option<PathBuf>)> = BTreeMap::new();
        let mut order = Vec::new();
        for (object, file) in objects {
            let key = object.key().in_cluster(&source.cluster);
            if let Some((_, first)) = incoming.get(&key) {
                let first = first.as_ref().map_or_else(|| source.to_string(), |f| f.display().to_string());
                diagnostics.push(
                    Diagnostic::new(format!("{key} is also defined in {first}; this copy is ignored"))
                        .object(key.to_string())
                        .file(file),
                );
                continue;
            }
            order.push(key.clone());
            incoming.insert(key, (object, file));
        }
        self.objects.retain(|key, entry| entry.source != source || incoming.contains_key(key));
        for key in order {
            if let Some((object, file)) = incoming.remove(&key) {
                match self.objects.get_mut(&key) {
                    Some(entry) if entry.source == source => {
                        entry.object = object;
                        entry.file = file;
                    }
                    Some(_) => {} // held by another source; reported by `apply`
                    None => {
                        if let Err(d) = self.apply(&source, object, file) {
                            diagnostics.push(d);
                        }
                    }
                }
            }
        }
        self.rejected.remove(&source);
        self.diagnostics.insert(source, diagnostics);
    }

    /// Forgets everything every source of `cluster` holds: the cluster is gone.
    pub fn remove_cluster(&mut self, cluster: &str) {
        self.objects.retain(|_, entry| entry.source.cluster != cluster);
        self.diagnostics.retain(|source, _| source.cluster != cluster);
        self.rejected.retain(|source, _| source.cluster != cluster);
        self.held.remove(cluster);
    }

    /// Keeps `cluster`'s objects from readers until [`Index::release`]: its first lists are still coming in.
    pub fn hold(&mut self, cluster: &str) {
        self.held.insert(cluster.to_string());
    }

    pub fn release(&mut self, cluster: &str) {
        self.held.remove(cluster);
    }

    fn shown(&self, cluster: &str) -> bool {
        self.held.is_empty() || !self.held.contains(cluster)
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Entry> {
        self.objects.get(key).filter(|_| self.shown(&key.cluster))
    }

    /// Every object of one kind, by cluster, namespace then name.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Entry> {
        let start = ObjectKey::new(kind, "", "");
        self.objects
            .range(start..)
            .take_while(move |(key, _)| key.kind == kind)
            .filter(|(key, _)| self.shown(&key.cluster))
            .map(|(_, entry)| entry)
    }

    /// Every object of one kind in one cluster.
    pub fn of_kind_in<'a>(&'a self, kind: Kind, cluster: &'a str) -> impl Iterator<Item = &'a Entry> {
        self.of_kind(kind).filter(move |entry| entry.source.cluster == cluster)
    }

    /// Problems found while reading the sources.
    pub fn source_diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        let diagnostics = self.diagnostics.iter().filter(|(source, _)| self.shown(&source.cluster));
        let rejected = self.rejected.iter().filter(|(source, _)| self.shown(&source.cluster));
        diagnostics.flat_map(|(_, d)| d).chain(rejected.flat_map(|(_, r)| r.values()))
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Service};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn mk_service(ns: &str, name: &str) -> Object {
        Object::Service(Service {
            metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() },
            ..Default::default()
        })
    }

    fn mk_node(name: &str) -> Object {
        Object::Node(Node {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        })
    }

    fn names(index: &Index, kind: Kind) -> Vec<(String, u64)> {
        index.of_kind(kind).map(|e| (e.key().name, e.seen)).collect()
    }

    #[test]
    fn reset_keeps_the_age_of_objects_that_stay() {
        let mut index = Index::new();
        index.reset("dir:a", vec![(mk_service("ns", "b"), None), (mk_service("ns", "a"), None)], vec![]);
        assert_eq!(names(&index, Kind::Service), [("a".to_string(), 1), ("b".to_string(), 0)]);
        index.reset("dir:a", vec![(mk_service("ns", "c"), None), (mk_service("ns", "b"), None)], vec![]);
        assert_eq!(names(&index, Kind::Service), [("b".to_string(), 0), ("c".to_string(), 2)]);
    }

    #[test]
    fn of_kind_lists_only_that_kind() {
        let mut index = Index::new();
        index.reset("s", vec![(mk_node("n"), None), (mk_service("ns", "a"), None)], vec![]);
        assert_eq!(names(&index, Kind::Node), [("n".to_string(), 0)]);
        assert_eq!(names(&index, Kind::Service), [("a".to_string(), 1)]);
        assert_eq!(index.of_kind(Kind::Ingress).count(), 0);
    }

    #[test]
    fn duplicates_within_a_source_keep_the_first_and_are_reported() {
        let mut index = Index::new();
        let objects =
            vec![(mk_service("ns", "a"), Some("1.yaml".into())), (mk_service("ns", "a"), Some("2.yaml".into()))];
        index.reset("s", objects, vec![]);
        assert_eq!(index.len(), 1);
        let key = ObjectKey::new(Kind::Service, "ns", "a");
        assert_eq!(index.get(&key).unwrap().file, Some("1.yaml".into()));
        let messages: Vec<String> = index.source_diagnostics().map(ToString::to_string).collect();
        assert_eq!(messages, ["2.yaml: Service ns/a: Service ns/a is also defined in 1.yaml; this copy is ignored"]);
    }

    #[test]
    fn reset_replaces_a_sources_diagnostics_and_leaves_other_sources_alone() {
        let mut index = Index::new();
        index.reset("one", vec![(mk_service("ns", "a"), None)], vec![Diagnostic::new("old")]);
        index.reset("two", vec![(mk_service("ns", "b"), None)], vec![]);
        index.reset("one", vec![], vec![Diagnostic::new("new")]);
        assert_eq!(names(&index, Kind::Service), [("b".to_string(), 1)]);
        let messages: Vec<String> = index.source_diagnostics().map(ToString::to_string).collect();
        assert_eq!(messages, ["new"]);
    }

    #[test]
    fn apply_and_delete_respect_the_owning_source() {
        let mut index = Index::new();
        index.apply("one", mk_service("ns", "a"), None).unwrap();
        assert!(index.apply("two", mk_service("ns", "a"), None).is_err());
        let key = ObjectKey::new(Kind::Service, "ns", "a");
        index.delete("two", &key);
        assert!(index.get(&key).is_some());
        index.delete("one", &key);
        assert!(index.is_empty());
        index.apply("one", mk_service("ns", "a"), None).unwrap();
        assert_eq!(index.get(&key).unwrap().seen, 1, "a re-created object is a new object");
    }

    #[test]
    fn a_rejected_object_is_absent_and_reported_until_fixed_or_deleted() {
        let mut index = Index::new();
        let key = ObjectKey::new(Kind::Service, "ns", "a");
        index.apply("kube:Service", mk_service("ns", "a"), None).unwrap();
        index.reject("kube:Service", key.clone(), Diagnostic::new("bad"));
        assert!(index.get(&key).is_none());
        assert_eq!(index.source_diagnostics().count(), 1);
        index.apply("kube:Service", mk_service("ns", "a"), None).unwrap();
        assert_eq!(index.source_diagnostics().count(), 0);
        index.reject("kube:Service", key.clone(), Diagnostic::new("bad"));
        index.delete("kube:Service", &key);
        assert_eq!(index.source_diagnostics().count(), 0);
        index.reject("kube:Service", key, Diagnostic::new("bad"));
        index.reset("kube:Service", vec![], vec![]);
        assert_eq!(index.source_diagnostics().count(), 0, "a relist replaces every rejection");
    }

    #[test]
    fn clusters_hold_objects_of_the_same_name_apart_and_go_alone() {
        let mut index = Index::new();
        index.apply("kube:Service", mk_service("ns", "a"), None).unwrap();
        let alpha = SourceId::new("alpha", "kube:Service");
        index.apply(&alpha, mk_service("ns", "a"), None).unwrap();
        assert_eq!(index.len(), 2, "the same name in two clusters is two objects");
        let remote = ObjectKey::new(Kind::Service, "ns", "a").in_cluster("alpha");
        assert_eq!(index.get(&remote).unwrap().key(), remote);
        assert_eq!(index.of_kind_in(Kind::Service, "alpha").count(), 1);

        index.hold("alpha");
        assert!(index.get(&remote).is_none(), "a held cluster is not shown");
        assert_eq!(index.of_kind(Kind::Service).count(), 1);
        index.release("alpha");
        assert_eq!(index.of_kind(Kind::Service).count(), 2);

        index.reject(&alpha, ObjectKey::new(Kind::Service, "ns", "b"), Diagnostic::new("bad"));
        index.remove_cluster("alpha");
        assert_eq!(index.len(), 1);
        assert_eq!(index.source_diagnostics().count(), 0);
        assert!(index.get(&ObjectKey::new(Kind::Service, "ns", "a")).is_some(), "the local cluster is untouched");
    }
}
