//! The directory source's clusters: files at the top of the directory are the local cluster's objects, and each
//! subdirectory holds another cluster's, named after it (`manifests/alpha/web.yaml` is cluster alpha's). A
//! directory without subdirectories is one cluster, as it always was.
//!
//! Kept apart from [`super::dir`], which reads files: this only sorts what was read by where it was read from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::Snapshot;
use crate::index::SourceId;
use crate::objects::LOCAL_CLUSTER;

/// The cluster of a file under `root`: its first directory below `root`, or the local cluster for a file at the
/// top (or for `root` itself, a single file).
pub fn cluster_of(root: &Path, file: &Path) -> String {
    let Ok(relative) = file.strip_prefix(root) else { return LOCAL_CLUSTER.to_string() };
    let mut parts = relative.components();
    match (parts.next(), parts.next()) {
        (Some(first), Some(_)) => first.as_os_str().to_string_lossy().into_owned(),
        _ => LOCAL_CLUSTER.to_string(),
    }
}

/// Splits each snapshot of one directory into one per cluster, remembering which clusters it delivered so that a
/// subdirectory removed yields an empty snapshot: its cluster's objects go.
#[derive(Debug)]
pub struct Splitter {
    root: PathBuf,
    /// The source's name, `dir:PATH`.
    name: String,
    delivered: BTreeSet<String>,
}

impl Splitter {
    pub fn new(root: &Path, name: &str) -> Splitter {
        Splitter { root: root.to_path_buf(), name: name.to_string(), delivered: BTreeSet::new() }
    }

    /// The snapshot of each cluster, the local one always among them. A problem without a file is the local
    /// cluster's.
    pub fn split(&mut self, snapshot: Snapshot) -> Vec<(SourceId, Snapshot)> {
        let mut by_cluster: BTreeMap<String, Snapshot> = BTreeMap::new();
        by_cluster.insert(LOCAL_CLUSTER.to_string(), Snapshot::default());
        for (object, file) in snapshot.objects {
            let cluster = file.as_deref().map_or_else(String::new, |f| cluster_of(&self.root, f));
            by_cluster.entry(cluster).or_default().objects.push((object, file));
        }
        for diagnostic in snapshot.diagnostics {
            let cluster = diagnostic.file.as_deref().map_or_else(String::new, |f| cluster_of(&self.root, f));
            by_cluster.entry(cluster).or_default().diagnostics.push(diagnostic);
        }
        for gone in std::mem::take(&mut self.delivered) {
            by_cluster.entry(gone).or_default();
        }
        self.delivered = by_cluster
            .iter()
            .filter(|(_, snapshot)| !snapshot.objects.is_empty() || !snapshot.diagnostics.is_empty())
            .map(|(cluster, _)| cluster.clone())
            .collect();
        by_cluster.into_iter().map(|(cluster, snapshot)| (SourceId::new(&cluster, &self.name), snapshot)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Diagnostic;
    use crate::objects::Object;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(name: &str) -> Object {
        Object::Service(Service {
            metadata: ObjectMeta { namespace: Some("ns".into()), name: Some(name.into()), ..Default::default() },
            ..Default::default()
        })
    }

    #[test]
    fn top_level_files_are_the_local_cluster_and_subdirectories_other_clusters() {
        let root = Path::new("/m");
        assert_eq!(cluster_of(root, Path::new("/m/a.yaml")), "");
        assert_eq!(cluster_of(root, Path::new("/m/alpha/a.yaml")), "alpha");
        assert_eq!(cluster_of(root, Path::new("/m/alpha/deep/a.yaml")), "alpha");
        assert_eq!(cluster_of(Path::new("/m/one.yaml"), Path::new("/m/one.yaml")), "", "a single file");
    }

    #[test]
    fn a_subdirectory_removed_empties_its_cluster() {
        let mut splitter = Splitter::new(Path::new("/m"), "dir:/m");
        let snapshot = Snapshot {
            objects: vec![(service("a"), Some("/m/a.yaml".into())), (service("b"), Some("/m/beta/b.yaml".into()))],
            diagnostics: vec![Diagnostic::new("bad").file(Some("/m/beta/x.yaml".into())), Diagnostic::new("top")],
        };
        let split = splitter.split(snapshot);
        let clusters: Vec<(&str, usize, usize)> =
            split.iter().map(|(s, snap)| (s.cluster.as_str(), snap.objects.len(), snap.diagnostics.len())).collect();
        assert_eq!(clusters, [("", 1, 1), ("beta", 1, 1)]);
        assert_eq!(split[1].0.name, "dir:/m");

        let split =
            splitter.split(Snapshot { objects: vec![(service("a"), Some("/m/a.yaml".into()))], ..Default::default() });
        let clusters: Vec<(&str, usize)> =
            split.iter().map(|(s, snap)| (s.cluster.as_str(), snap.objects.len())).collect();
        assert_eq!(clusters, [("", 1), ("beta", 0)], "beta's objects go with its directory");
        assert_eq!(splitter.split(Snapshot::default()).len(), 1, "and it is not mentioned again");
    }
}
