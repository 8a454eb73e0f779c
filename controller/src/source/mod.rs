//! Sources of objects. The directory source delivers complete snapshots; the Kubernetes source delivers a
//! snapshot per kind after every (re)list and single changes in between. Both reach the index through
//! [`Update`], in one run loop.

pub mod crds;
pub mod dir;
pub mod kube;

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
    /// A watched kind finished its first list (readiness waits for every kind's).
    Listed(Kind),
    /// What a kind served through a CRD is read through now; none: its CRD is not installed (see [`crds`]).
    Served { kind: Kind, resource: Option<ApiResource> },
    /// The source cannot reach its objects; what is known stays served, marked stale.
    Failing { error: String },
    /// The source reaches its objects again.
    Healthy,
    /// The key to make session cookies and client hashes with, shared by replicas
    /// ([`crate::leader::session_key`]).
    SessionKey(AffinityKey),
}

impl Update {
    /// The index source an update about objects comes from.
    pub fn source(&self) -> Option<&str> {
        match self {
            Update::Reset { source, .. }
            | Update::Apply { source, .. }
            | Update::Reject { source, .. }
            | Update::Delete { source, .. } => Some(source),
            Update::Listed(_)
            | Update::Served { .. }
            | Update::Failing { .. }
            | Update::Healthy
            | Update::SessionKey(_) => None,
        }
    }
}
