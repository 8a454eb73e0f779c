//! The kinds that exist only once their CustomResourceDefinition is installed: Istio's VirtualService and Berth's
//! PortAllocation. Each CRD is watched by name, so a CRD installed (or removed, or given another served version)
//! while Berth runs is noticed at once and its kind watched from then on; Berth does not need restarting.
//!
//! A watch rather than re-running discovery: discovery would have to be polled, and a poll either lags or loads
//! the API server, whereas a watch of one named object is cheap and immediate. The CRD itself says what discovery
//! would (group, served versions, plural, scope), and its `Established` condition says when the API server
//! serves the kind. Watching one name at a time keeps the RBAC rule to those two `resourceNames`.
//!
//! What a missing CRD costs is said where users look ([`explain_missing`]): a warning in `berth routes` and the
//! log, and for PortAllocation, on every exposed VirtualService with tcp routes (its `berth.dev/error` and an
//! Event), how to install it. Everything else keeps working meanwhile.

use futures_util::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Update;
use crate::Diagnostic;
use crate::compiler::Compiled;
use crate::objects::{Kind, is_local};

/// The kinds served through a CRD, the CRD's name, and the versions Berth reads, preferred first.
pub const OPTIONAL_KINDS: [(Kind, &str, &[&str]); 2] = [
    (Kind::VirtualService, "virtualservices.networking.istio.io", &["v1", "v1beta1"]),
    (Kind::PortAllocation, "portallocations.berth.dev", &["v1alpha1"]),
];

/// Where the PortAllocation CRD is, for the messages that ask for it.
pub const PORT_ALLOCATION_CRD_FILE: &str = "controller/deploy/crds/portallocation.yaml";

/// The name of the CRD that serves `kind`, for an optional kind.
pub fn crd_name(kind: Kind) -> Option<&'static str> {
    OPTIONAL_KINDS.iter().find(|(k, _, _)| *k == kind).map(|(_, name, _)| *name)
}

/// The resource `kind` is read through according to its CRD: the first of Berth's versions the CRD serves, once
/// the API server has established it. None: not (yet) served.
pub fn served_resource(kind: Kind, crd: &CustomResourceDefinition) -> Option<ApiResource> {
    let (_, name, versions) = OPTIONAL_KINDS.iter().find(|(k, _, _)| *k == kind)?;
    if crd.metadata.name.as_deref() != Some(*name) || crd.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let established = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    if !established {
        return None;
    }
    let spec = &crd.spec;
    let version = versions.iter().find(|v| spec.versions.iter().any(|sv| sv.name == **v && sv.served))?;
    Some(ApiResource {
        group: spec.group.clone(),
        version: (*version).to_string(),
        api_version: format!("{}/{version}", spec.group),
        kind: spec.names.kind.clone(),
        plural: spec.names.plural.clone(),
    })
}

/// Watches the CRD of every optional kind in `cluster`; sends [`Update::Served`] once each CRD's first list is in,
/// then whenever what it serves changes.
pub fn spawn(client: &Client, cluster: &str, updates: &mpsc::Sender<Update>) -> Vec<tokio::task::JoinHandle<()>> {
    OPTIONAL_KINDS
        .iter()
        .map(|(kind, name, _)| {
            tokio::spawn(watch_crd(client.clone(), cluster.to_string(), *kind, name, updates.clone()))
        })
        .collect()
}

async fn watch_crd(client: Client, cluster: String, kind: Kind, name: &'static str, updates: mpsc::Sender<Update>) {
    let api = Api::<CustomResourceDefinition>::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut listing: Option<ApiResource> = None;
    // What was last reported; the outer None: nothing reported yet.
    let mut reported: Option<Option<ApiResource>> = None;
    while let Some(item) = stream.next().await {
        let now = match item {
            Ok(Event::Init) => {
                listing = None;
                continue;
            }
            Ok(Event::InitApply(crd)) => {
                listing = served_resource(kind, &crd);
                continue;
            }
            Ok(Event::InitDone) => listing.take(),
            Ok(Event::Apply(crd)) => served_resource(kind, &crd),
            Ok(Event::Delete(_)) => None,
            Err(error) => {
                warn!(%kind, crd = name, cluster = %cluster, %error, "watching the CRD failed; resuming with backoff");
                let error = format!("watching the CustomResourceDefinition {name}: {error}");
                let update = Update::Failing { cluster: cluster.clone(), error, unreachable: false };
                if updates.send(update).await.is_err() {
                    return;
                }
                continue;
            }
        };
        if reported.as_ref() == Some(&now) {
            continue;
        }
        match &now {
            Some(resource) => {
                info!(%kind, cluster = %cluster, api_version = %resource.api_version, "the CRD {name} is installed")
            }
            None => warn!(%kind, cluster = %cluster, "the CRD {name} is not installed (or not established)"),
        }
        reported = Some(now.clone());
        if updates.send(Update::Served { cluster: cluster.clone(), kind, resource: now }).await.is_err() {
            return;
        }
    }
}

/// What Berth cannot do while the CRDs of `missing` kinds (by cluster) are not installed, said where users look:
/// a warning per kind and cluster, and on each object whose tcp routes get no port for want of PortAllocations,
/// that the CRD is missing and where it is (instead of "create a PortAllocation", which cannot be done without it).
/// PortAllocations belong with the proxy's ports, in the local cluster: other clusters need not install their CRD.
pub fn explain_missing(missing: &[(&str, Kind)], compiled: &mut Compiled) {
    for (cluster, kind) in missing {
        let Some(name) = crd_name(*kind) else { continue };
        let at = if is_local(cluster) { String::new() } else { format!(" in cluster {cluster}") };
        let message = match kind {
            Kind::VirtualService => format!(
                "the CustomResourceDefinition {name} is not installed{at}: VirtualServices are not read (Ingresses \
                 are); install Istio's CRDs and Berth picks them up without a restart"
            ),
            Kind::PortAllocation if is_local(cluster) => format!(
                "the CustomResourceDefinition {name} is not installed: tcp routes get no port (http routes work); \
                 install it with `kubectl apply -f {PORT_ALLOCATION_CRD_FILE}` (from Berth's controller/deploy/crds/) \
                 and create a PortAllocation"
            ),
            _ => continue,
        };
        compiled.diagnostics.push(Diagnostic::new(message).warning());
    }
    let missing: Vec<Kind> = missing.iter().filter(|(cluster, _)| is_local(cluster)).map(|(_, kind)| *kind).collect();
    if missing.contains(&Kind::PortAllocation) {
        // Without the CRD there is no PortAllocation, so an error on a whole `spec.tcp` is the "no PortAllocation
        // to take a port from" one.
        for diagnostic in &mut compiled.diagnostics {
            if !diagnostic.is_warning()
                && diagnostic.object.is_some()
                && diagnostic.field.as_deref() == Some("spec.tcp")
            {
                diagnostic.message = format!(
                    "tcp routes need a port, but the PortAllocation CRD (portallocations.berth.dev) is not installed \
                     in this cluster; ask an operator to install it from Berth's controller/deploy/crds/ (`kubectl \
                     apply -f {PORT_ALLOCATION_CRD_FILE}`) and to create a PortAllocation"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(name: &str, versions: &[(&str, bool)], established: bool) -> CustomResourceDefinition {
        let (plural, group) = name.split_once('.').unwrap();
        let kind = if plural == "virtualservices" { "VirtualService" } else { "PortAllocation" };
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "group": group,
                "names": {"kind": kind, "plural": plural},
                "scope": "Namespaced",
                "versions": versions.iter().map(|(v, served)| json!({"name": v, "served": served, "storage": false}))
                    .collect::<Vec<_>>(),
            },
            "status": {"conditions": [{"type": "Established", "status": if established { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    #[test]
    fn prefers_v1_falls_back_to_v1beta1_and_waits_for_established() {
        let vs = "virtualservices.networking.istio.io";
        let both = served_resource(Kind::VirtualService, &crd(vs, &[("v1beta1", true), ("v1", true)], true)).unwrap();
        assert_eq!((both.api_version.as_str(), both.plural.as_str()), ("networking.istio.io/v1", "virtualservices"));
        assert_eq!(both.kind, "VirtualService");
        let old = served_resource(Kind::VirtualService, &crd(vs, &[("v1beta1", true), ("v1", false)], true)).unwrap();
        assert_eq!(old.api_version, "networking.istio.io/v1beta1");
        assert_eq!(served_resource(Kind::VirtualService, &crd(vs, &[("v1alpha3", true)], true)), None);
        assert_eq!(served_resource(Kind::VirtualService, &crd(vs, &[("v1", true)], false)), None, "not established");
        assert_eq!(served_resource(Kind::PortAllocation, &crd(vs, &[("v1", true)], true)), None, "another CRD");
        let pa = served_resource(Kind::PortAllocation, &crd("portallocations.berth.dev", &[("v1alpha1", true)], true));
        assert_eq!(pa.unwrap().api_version, "berth.dev/v1alpha1");
    }

    #[test]
    fn a_missing_port_allocation_crd_is_named_on_the_objects_that_need_it() {
        let no_pool = Diagnostic::new("tcp routes need a port, but there is no PortAllocation to take one from")
            .object("VirtualService shop/db")
            .field("spec.tcp");
        let other =
            Diagnostic::new("service \"x\" does not exist").object("VirtualService shop/web").field("spec.http[0]");
        let mut compiled = Compiled { diagnostics: vec![no_pool.clone(), other.clone()], ..Compiled::default() };
        explain_missing(&[("", Kind::PortAllocation)], &mut compiled);
        let texts: Vec<String> = compiled.diagnostics.iter().map(ToString::to_string).collect();
        assert!(
            texts[0]
                .starts_with("VirtualService shop/db: spec.tcp: tcp routes need a port, but the PortAllocation CRD")
        );
        assert!(texts[0].contains("controller/deploy/crds/"), "{}", texts[0]);
        assert_eq!(texts[1], other.to_string(), "other errors stay as they are");
        assert!(
            compiled.diagnostics[2].is_warning() && texts[2].contains("portallocations.berth.dev is not installed")
        );

        let mut compiled = Compiled { diagnostics: vec![no_pool.clone()], ..Compiled::default() };
        explain_missing(&[("", Kind::VirtualService)], &mut compiled);
        assert_eq!(compiled.diagnostics[0], no_pool, "with the CRD installed the compiler's message stands");
        assert!(compiled.diagnostics[1].message.contains("VirtualServices are not read"));

        let mut compiled = Compiled { diagnostics: vec![no_pool.clone()], ..Compiled::default() };
        explain_missing(&[("alpha", Kind::PortAllocation), ("alpha", Kind::VirtualService)], &mut compiled);
        assert_eq!(compiled.diagnostics[0], no_pool, "another cluster needs no PortAllocation CRD");
        assert_eq!(compiled.diagnostics.len(), 2);
        assert!(compiled.diagnostics[1].message.contains("not installed in cluster alpha"));
    }
}
