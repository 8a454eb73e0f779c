//! Write-back in Kubernetes mode: what Berth decided, written onto the objects users edit.
//!
//! - Every VirtualService: `berth.dev/address` (the address(es) of its tcp and tls routes, as
//!   [`crate::compiler::tls::address_annotation`] writes them), `berth.dev/error` (its errors, one per line: the
//!   field and what to do) and `berth.dev/warning` (what is served anyway but deserves attention: a route field
//!   Berth ignores, an unclear `berth.dev/expose` value, a port kept outside the ranges), each removed when it no
//!   longer applies.
//! - Every Ingress Berth serves, with `--ingress-address`: `status.loadBalancer.ingress` (through `/status`).
//! - With `--ingress-address`, every Ingress Berth served before but serves no more (its class changed, Berth's
//!   IngressClass is gone): the address Berth wrote is cleared (an address another controller wrote stays).
//! - A core/v1 Event (type Warning, reason `BerthError`, or `BerthWarning` for a warning) for every error and
//!   warning that appears on a VirtualService, an Ingress or a Service (a malformed health check annotation), named
//!   after the object and the error
//!   (`Subject::event_name`): a restarted controller finds the Event it wrote before and adds none; an error that
//!   goes away and comes back raises that Event's `count`. Likewise on a kubeconfig Secret whose cluster cannot be
//!   used or whose API server stops answering.
//!
//! There is one writer per cluster, with that cluster's client: what Berth decides about another cluster's objects
//! is written to that cluster's API server.
//!
//! Writes are JSON merge patches under the field manager `berth`. A merge patch, not server-side apply: removing
//! an annotation must work whoever last set it (a user's `kubectl apply` of an exported manifest takes over the
//! field, and apply would then never remove it), and a merge patch cannot re-create an object deleted meanwhile.
//!
//! The run loop plans ([`plan()`]) by comparing what it wants with what the watched object already holds, so a
//! steady state writes nothing; the writer also skips a write it already made against the same resourceVersion
//! (the watch has not brought the result back yet). Failed writes are retried with backoff; the table is published
//! without waiting for any of this, except that a tcp route is served only once its port is recorded on the
//! object (see [`crate::reconcile`]).
//!
//! Pure planning ([`mod@plan`]: what to write, which Events to record) is apart from the Kubernetes I/O ([`mod@writer`]: one
//! task per cluster that patches, retries and records Events), as [`crate::health`] splits plan and I/O.

pub mod plan;
pub mod writer;

pub use plan::{Note, SecretNote, Write, notes, plan};
pub use writer::Writer;

/// The annotation that says why an exposed VirtualService is not (fully) served.
pub const ERROR_ANNOTATION: &str = "berth.dev/error";
/// Berth's field manager for every write.
pub const FIELD_MANAGER: &str = "berth";
/// The annotation that says what Berth serves differently from what an exposed VirtualService asks.
pub const WARNING_ANNOTATION: &str = "berth.dev/warning";
/// The reason of Berth's Events for errors.
pub const EVENT_REASON: &str = "BerthError";
/// The reason of Berth's Events for warnings.
pub const WARNING_EVENT_REASON: &str = "BerthWarning";
