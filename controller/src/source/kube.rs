//! The Kubernetes source (`berth run --source kube`): one kube-runtime watcher per kind, turned into
//! [`Update`]s for the same index the directory source feeds.
//!
//! Every kind is watched as a `DynamicObject` and converted with the same parser as files
//! ([`crate::objects::parse_value`]), so an object that cannot be read is a diagnostic, not a stuck watch. Each
//! kind is its own index source (`kube:Service v1`, ...): a relist of one kind replaces that kind alone. A watch
//! that errors or is cut resumes from its resourceVersion, or relists after 410 Gone (kube-runtime's watcher, with
//! `default_backoff`), so no change is lost; meanwhile the index keeps what it had and the source is reported
//! stale. The built-in kinds are watched from the start; VirtualService and PortAllocation from when their CRDs
//! are installed ([`super::crds`]).
//!
//! Requests go out with `User-Agent: berth/<version>`; `controller/deploy/clusterrole.yaml` grants exactly what
//! they do (each rule says why), and `tests/tests/kubernetes.rs` checks that against the requests made.

use std::collections::BTreeMap;
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
use crate::index::SourceId;
use crate::objects::{Kind, ObjectKey, parse_value};
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
    client_from(config)
}

/// A client from `config`, saying who is asking.
pub fn client_from(mut config: Config) -> Result<Client> {
    // Says who is asking in the API server's audit log (kube-rs sends no User-Agent of its own).
    if let Ok(agent) = axum::http::HeaderValue::from_str(&format!("berth/{}", env!("CARGO_PKG_VERSION"))) {
        config.headers.push((axum::http::header::USER_AGENT, agent));
    }
    Client::try_from(config).map_err(|e| Error::Kube { reason: format!("cannot make a client: {e}") })
}

/// The kinds every cluster serves, and their API resources. VirtualService and PortAllocation come and go with
/// their CRDs ([`super::crds`]).
pub fn builtin_resources() -> Vec<(Kind, ApiResource)> {
    vec![
        (Kind::Ingress, ApiResource::erase::<Ingress>(&())),
        (Kind::IngressClass, ApiResource::erase::<IngressClass>(&())),
        (Kind::Service, ApiResource::erase::<Service>(&())),
        (Kind::Node, ApiResource::erase::<Node>(&())),
        (Kind::EndpointSlice, ApiResource::erase::<EndpointSlice>(&())),
    ]
}

/// The index source of one kind read through one resource in one cluster: `kube:Service v1`. A kind whose CRD
/// changes the version it is read at becomes another source, so that what the old watch still delivers can be told
/// apart.
pub fn source_id(cluster: &str, kind: Kind, resource: &ApiResource) -> SourceId {
    SourceId::new(cluster, &format!("kube:{kind} {}", resource.api_version))
}

/// Starts the watcher of one kind of `cluster`; it sends to `updates` until it closes or the task is aborted.
pub fn spawn_kind(
    client: &Client,
    options: &Options,
    cluster: &str,
    kind: Kind,
    resource: &ApiResource,
    updates: &mpsc::Sender<Update>,
) -> tokio::task::JoinHandle<()> {
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
    let source = source_id(cluster, kind, resource);
    tokio::spawn(watch_kind(source, kind, resource.clone(), api, config, updates.clone()))
}

/// Starts the reachability probe of `cluster`.
pub fn spawn_probe(client: &Client, cluster: &str, updates: &mpsc::Sender<Update>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(probe(client.clone(), cluster.to_string(), updates.clone()))
}

async fn watch_kind(
    source: SourceId,
    kind: Kind,
    resource: ApiResource,
    api: Api<DynamicObject>,
    config: watcher::Config,
    updates: mpsc::Sender<Update>,
) {
    let cluster = source.cluster.clone();
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
                info!(%kind, cluster = %cluster, objects = snapshot.objects.len(), "listed");
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
                warn!(%kind, cluster = %cluster, %error, "watch failed; resuming with backoff");
                crate::metrics::global().watch_restarted(&cluster, kind);
                Update::Failing {
                    cluster: cluster.clone(),
                    error: format!("watching {}: {error}", resource.plural),
                    unreachable: false,
                }
            }
        };
        let done = matches!(update, Update::Reset { .. });
        if updates.send(update).await.is_err() {
            return;
        }
        if done && !listed_once {
            listed_once = true;
            if updates.send(Update::Listed { cluster: cluster.clone(), kind }).await.is_err() {
                return;
            }
        }
        if done && updates.send(Update::Healthy { cluster: cluster.clone() }).await.is_err() {
            return;
        }
    }
}

/// Asks the API server for its version every [`PROBE_EVERY`]: reports when it stops answering and when it
/// answers again, which watches alone would not say while nothing changes.
async fn probe(client: Client, cluster: String, updates: mpsc::Sender<Update>) {
    loop {
        let answer = tokio::time::timeout(PROBE_EVERY * 5, client.apiserver_version()).await;
        let cluster = cluster.clone();
        // Healthy on every answer: it also ends a stale mark a watch's error set while this probe saw no outage.
        let update = match answer {
            Ok(Ok(_)) => Some(Update::Healthy { cluster }),
            Ok(Err(error)) => Some(Update::Failing {
                cluster,
                error: format!("the API server does not answer: {error}"),
                unreachable: true,
            }),
            Err(_) => Some(Update::Failing {
                cluster,
                error: "the API server does not answer within 5s".to_string(),
                unreachable: true,
            }),
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

/// The running watches of one cluster, one per kind, started, replaced and stopped as CRDs come and go. Dropping
/// it stops them.
pub struct Watches {
    client: Client,
    options: Options,
    cluster: String,
    updates: mpsc::Sender<Update>,
    running: BTreeMap<Kind, (ApiResource, tokio::task::JoinHandle<()>)>,
}

impl Watches {
    pub fn new(client: Client, options: Options, cluster: &str, updates: mpsc::Sender<Update>) -> Watches {
        Watches { client, options, cluster: cluster.to_string(), updates, running: BTreeMap::new() }
    }

    /// Watches `kind` through `resource` from now on; none: not at all. When that ends a watch, returns the index
    /// source its objects are under: they are gone with it (a CRD's objects go with the CRD), or are about to be
    /// listed again under the new source.
    pub fn set(&mut self, kind: Kind, resource: Option<ApiResource>) -> Option<SourceId> {
        if self.running.get(&kind).map(|(r, _)| r) == resource.as_ref() {
            return None;
        }
        let ended = self.running.remove(&kind).map(|(old, task)| {
            task.abort();
            source_id(&self.cluster, kind, &old)
        });
        if let Some(resource) = resource {
            let task = spawn_kind(&self.client, &self.options, &self.cluster, kind, &resource, &self.updates);
            self.running.insert(kind, (resource, task));
        }
        ended
    }

    /// Whether `source` is the index source of a running watch: what an ended one still had in flight is not.
    pub fn is_current(&self, source: &SourceId) -> bool {
        self.running.iter().any(|(kind, (resource, _))| source_id(&self.cluster, *kind, resource) == *source)
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for (_, task) in self.running.values() {
            task.abort();
        }
    }
}
