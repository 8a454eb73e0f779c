//! Sources of objects. The directory source delivers complete snapshots; the Kubernetes source delivers a
//! snapshot per kind after every (re)list and single changes in between. Both reach the index through
//! [`Update`], in one run loop. Every update names the cluster it is about: in Kubernetes mode the local cluster
//! and one per kubeconfig Secret ([`crate::clusters`]), in directory mode the top level and one per subdirectory
//! ([`dir_clusters`]).

pub mod crds;
pub mod dir;
pub mod dir_clusters;
pub mod kube;
pub mod kubeconfig_secret;
pub mod remote;

use std::path::PathBuf;

use ::kube::api::ApiResource;
use berth_table::AffinityKey;

use crate::Diagnostic;
use crate::index::SourceId;
use crate::objects::{Kind, Object, ObjectKey};

/// Everything a source holds at one moment, in the order it read it, and what it could not read.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub objects: Vec<(Object, Option<PathBuf>)>,
    pub diagnostics: Vec<Diagnostic>,
}

/// One change from a source, for the run loop.
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "one update at a time passes through a short channel")]
pub enum Update {
    /// Everything `source` holds now: [`crate::index::Index::reset`].
    Reset { source: SourceId, snapshot: Snapshot },
    /// An object was added or changed: [`crate::index::Index::apply`].
    Apply { source: SourceId, object: Object },
    /// An object was added or changed but cannot be read: [`crate::index::Index::reject`].
    Reject { source: SourceId, key: ObjectKey, diagnostic: Diagnostic },
    /// An object was deleted: [`crate::index::Index::delete`].
    Delete { source: SourceId, key: ObjectKey },
    /// A watched kind of `cluster` finished its first list (readiness waits for every kind's).
    Listed { cluster: String, kind: Kind },
    /// What a kind served through a CRD is read through now in `cluster`; none: its CRD is not installed (see
    /// [`crds`]).
    Served { cluster: String, kind: Kind, resource: Option<ApiResource> },
    /// `cluster` cannot be reached; what is known of it stays served, marked stale. `unreachable`: its API server
    /// does not answer at all (the probe), rather than one watch failing.
    Failing { cluster: String, error: String, unreachable: bool },
    /// `cluster` is reachable again.
    Healthy { cluster: String },
    /// The kubeconfig Secrets in the controller's namespace, all of them, after every change ([`remote`]).
    Kubeconfigs(Vec<kubeconfig_secret::KubeconfigSecret>),
    /// A client for a cluster added by a kubeconfig Secret, or why there is none ([`remote::connect`]).
    Connected { cluster: String, generation: u64, result: Result<remote::Connection, String> },
    /// The key to make session cookies and client hashes with, shared by replicas
    /// ([`crate::leader::session_key`]).
    SessionKey(AffinityKey),
}

impl Update {
    /// The index source an update about objects comes from.
    pub fn source(&self) -> Option<&SourceId> {
        match self {
            Update::Reset { source, .. }
            | Update::Apply { source, .. }
            | Update::Reject { source, .. }
            | Update::Delete { source, .. } => Some(source),
            Update::Listed { .. }
            | Update::Served { .. }
            | Update::Failing { .. }
            | Update::Healthy { .. }
            | Update::Kubeconfigs(_)
            | Update::Connected { .. }
            | Update::SessionKey(_) => None,
        }
    }
}
