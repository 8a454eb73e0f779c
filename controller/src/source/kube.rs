//! The Kubernetes source (`berth run --source kube`): one kube-runtime watcher per kind, turned into
//! [`Update`]s for the same index the directory source feeds.
//!
//! Every kind is watched as a `DynamicObject` and converted with the same parser as files
//! ([`crate::objects::parse_value`]), so an object that cannot be read is a diagnostic, not a stuck watch. Each
//! kind is its own index source (`kube:Service`, ...): a relist of one kind replaces that kind alone. A watch that
//! errors or is cut resumes from its resourceVersion, or relists after 410 Gone (kube-runtime's watcher, with
//! `default_backoff`), so no change is lost; meanwhile the index keeps what it had and the source is reported
//! stale. VirtualService is watched at `networking.istio.io/v1`, or `v1beta1` where v1 is not served.
//!
//! RBAC: the verbs `berth run --source kube` uses, per resource (the ClusterRole must grant these):
//! - `get`, `list`, `watch`: `networking.istio.io` `virtualservices`; `networking.k8s.io` `ingresses`,
//!   `ingressclasses`; core `services`, `nodes`; `discovery.k8s.io` `endpointslices`; `berth.dev`
//!   `portallocations` (`get` is not called today; grant it for `kubectl`-style tooling and future use).
//! - `patch`: `networking.istio.io` `virtualservices` (annotations `berth.dev/address`, `berth.dev/error`);
//!   `networking.k8s.io` `ingresses/status` (`status.loadBalancer.ingress`, only with `--ingress-address`).
//! - `create`: core `events` (an Event for every new error on a VirtualService or Ingress).
//! - Discovery (`/api`, `/apis`, `/apis/networking.istio.io`, `/version`) needs no RBAC beyond the default
//!   `system:discovery` role every authenticated user has.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{Snapshot, Update};
use crate::objects::{Kind, ObjectKey, PortAllocation, parse_value};
use crate::{Error, Result};

/// The namespace no workload of users lives in: skipped unless asked for with `--namespace kube-system`.
pub const SYSTEM_NAMESPACE: &str = "kube-system";

/// How often the API server is asked whether it is there, to notice an outage (and its end) even when no watch
/// has anything to say.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How to reach the cluster and what to watch.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A kubeconfig file; none: in-cluster configuration, else `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig; none: its current context.
    pub context: Option<String>,
    /// Watch namespaced kinds in this namespace only; none: every namespace but kube-system.
    pub namespace: Option<String>,
}

/// A client for the cluster `options` name.
pub async fn client(options: &Options) -> Result<Client> {
    let failed = |reason: String| Error::Kube { reason };
    let kube_options = KubeConfigOptions { context: options.context.clone(), ..KubeConfigOptions::default() };
    let config = match (&options.kubeconfig, &options.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| failed(format!("cannot read the kubeconfig {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &kube_options)
                .await
                .map_err(|e| failed(format!("the kubeconfig {}: {e}", path.display())))?
        }
        (None, Some(_)) => {
            Config::from_kubeconfig(&kube_options).await.map_err(|e| failed(format!("the default kubeconfig: {e}")))?
        }
        (None, None) => Config::infer().await.map_err(|e| {
            failed(format!("no in-cluster configuration and no kubeconfig ({e}); pass --kubeconfig PATH"))
        })?,
    };
    Client::try_from(config).map_err(|e| failed(format!("cannot make a client: {e}")))
}

/// The API resource VirtualServices are read and written through: `networking.istio.io/v1`, or `v1beta1` where
/// the server does not serve v1. None when the server serves neither (Istio's CRDs are not installed).
pub async fn virtual_service_resource(client: &Client) -> Result<Option<ApiResource>> {
    let group = match kube::discovery::group(client, "networking.istio.io").await {
        Ok(group) => group,
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
        Err(e) => return Err(Error::Kube { reason: format!("cannot discover networking.istio.io: {e}") }),
    };
    for version in ["v1", "v1beta1"] {
        if let Some((resource, _)) =
            group.versioned_resources(version).into_iter().find(|(r, _)| r.kind == "VirtualService")
        {
            return Ok(Some(resource));
        }
    }
    Ok(None)
}

/// The watched kinds and their API resources.
pub fn resources(virtual_service: Option<ApiResource>) -> Vec<(Kind, ApiResource)> {
    let mut all = Vec::new();
    if let Some(vs) = virtual_service {
        all.push((Kind::VirtualService, vs));
    }
    all.extend([
        (Kind::Ingress, ApiResource::erase::<Ingress>(&())),
        (Kind::IngressClass, ApiResource::erase::<IngressClass>(&())),
        (Kind::Service, ApiResource::erase::<Service>(&())),
        (Kind::Node, ApiResource::erase::<Node>(&())),
        (Kind::EndpointSlice, ApiResource::erase::<EndpointSlice>(&())),
        (Kind::PortAllocation, ApiResource::erase::<PortAllocation>(&())),
    ]);
    all
}

/// The index source of one kind.
pub fn source_id(kind: Kind) -> String {
    format!("kube:{kind}")
}

/// Starts a watcher per kind and the reachability probe; they send to `updates` until it closes.
pub fn spawn(
    client: &Client,
    options: &Options,
    resources: &[(Kind, ApiResource)],
    updates: &mpsc::Sender<Update>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks: Vec<_> = resources
        .iter()
        .map(|(kind, resource)| {
            let api = if !kind.namespaced() {
                Api::<DynamicObject>::all_with(client.clone(), resource)
            } else if let Some(ns) = &options.namespace {
                Api::namespaced_with(client.clone(), ns, resource)
            } else {
                Api::all_with(client.clone(), resource)
            };
            let mut config = watcher::Config::default();
            if kind.namespaced() && options.namespace.is_none() {
                config = config.fields(&format!("metadata.namespace!={SYSTEM_NAMESPACE}"));
            }
            tokio::spawn(watch_kind(*kind, resource.clone(), api, config, updates.clone()))
        })
        .collect();
    tasks.push(tokio::spawn(probe(client.clone(), updates.clone())));
    tasks
}

async fn watch_kind(
    kind: Kind,
    resource: ApiResource,
    api: Api<DynamicObject>,
    config: watcher::Config,
    updates: mpsc::Sender<Update>,
) {
    let source = source_id(kind);
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut listing: Option<Snapshot> = None;
    let mut listed_once = false;
    while let Some(item) = stream.next().await {
        let update = match item {
            Ok(Event::Init) => {
                listing = Some(Snapshot::default());
                continue;
            }
            Ok(Event::InitApply(object)) => {
                let snapshot = listing.get_or_insert_with(Snapshot::default);
                match convert(kind, &resource, &object) {
                    Ok(object) => snapshot.objects.push((object, None)),
                    Err(rejected) => snapshot.diagnostics.push(rejected.1),
                }
                continue;
            }
            Ok(Event::InitDone) => {
                let snapshot = listing.take().unwrap_or_default();
                info!(%kind, objects = snapshot.objects.len(), "listed");
                Update::Reset { source: source.clone(), snapshot }
            }
            Ok(Event::Apply(object)) => match convert(kind, &resource, &object) {
                Ok(object) => Update::Apply { source: source.clone(), object },
                Err(rejected) => {
                    let (key, diagnostic) = *rejected;
                    Update::Reject { source: source.clone(), key, diagnostic }
                }
            },
            Ok(Event::Delete(object)) => Update::Delete { source: source.clone(), key: key_of(kind, &object) },
            Err(error) => {
                warn!(%kind, %error, "watch failed; resuming with backoff");
                Update::Failing { error: format!("watching {}: {error}", resource.plural) }
            }
        };
        let done = matches!(update, Update::Reset { .. });
        if updates.send(update).await.is_err() {
            return;
        }
        if done && !listed_once {
            listed_once = true;
            if updates.send(Update::Listed(kind)).await.is_err() {
                return;
            }
        }
        if done && updates.send(Update::Healthy).await.is_err() {
            return;
        }
    }
}

/// Asks the API server for its version every [`PROBE_EVERY`]: reports when it stops answering and when it
/// answers again, which watches alone would not say while nothing changes.
async fn probe(client: Client, updates: mpsc::Sender<Update>) {
    loop {
        let answer = tokio::time::timeout(PROBE_EVERY * 5, client.apiserver_version()).await;
        // Healthy on every answer: it also ends a stale mark a watch's error set while this probe saw no outage.
        let update = match answer {
            Ok(Ok(_)) => Some(Update::Healthy),
            Ok(Err(error)) => Some(Update::Failing { error: format!("the API server does not answer: {error}") }),
            Err(_) => Some(Update::Failing { error: "the API server does not answer within 5s".to_string() }),
        };
        if let Some(update) = update
            && updates.send(update).await.is_err()
        {
            return;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

fn key_of(kind: Kind, object: &DynamicObject) -> ObjectKey {
    let namespace = if kind.namespaced() { object.metadata.namespace.as_deref().unwrap_or("default") } else { "" };
    ObjectKey::new(kind, namespace, object.metadata.name.as_deref().unwrap_or_default())
}

/// A watched object as Berth's [`crate::objects::Object`], or why it cannot be read.
fn convert(
    kind: Kind,
    resource: &ApiResource,
    object: &DynamicObject,
) -> Result<crate::objects::Object, Box<(ObjectKey, crate::Diagnostic)>> {
    let key = key_of(kind, object);
    let mut value = serde_json::to_value(object).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        // List items need not carry these; the resource says what they are.
        map.insert("apiVersion".into(), resource.api_version.clone().into());
        map.insert("kind".into(), resource.kind.clone().into());
    }
    parse_value(&value).map_err(|diagnostic| Box::new((key, diagnostic)))
}
