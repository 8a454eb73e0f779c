//! The clusters Berth watches in Kubernetes mode: the one it runs in (the local cluster), and one per kubeconfig
//! Secret in its namespace (`--cluster-secrets-namespace`), named `kubeconfig-<cluster>-<last 4 hex digits of
//! the cluster's UUID>`, with the kubeconfig under key `kubeconfig`.
//!
//! Each cluster runs the same watchers ([`crate::source::kube`], [`crate::source::crds`]) with its own client,
//! tagged with its name, and has its own write-back ([`Writer`]) to its own API server. A Secret created, changed or
//! deleted while Berth runs adds, restarts or removes its cluster; the other clusters are not touched. A cluster's
//! objects are held back from compilation ([`Index::hold`]) until its first lists are all in.
//!
//! A kubeconfig that cannot be used (unreadable, refers to files or runs commands, a server that does not
//! answer, credentials refused) is reported where an operator looks: the log, an Event on the Secret (written by
//! the leader), and the errors of `berth routes`. It affects no other cluster.
//!
//! What a kubeconfig Secret is and may hold, and which cluster it adds: [`crate::source::kubeconfig_secret`]; watching
//! those Secrets and connecting to a cluster: [`crate::source::remote`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use kube::Client;
use kube::api::ApiResource;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::Diagnostic;
use crate::api::SourceStatus;
use crate::compiler::api_servers::ApiServer;
use crate::index::{Index, SourceId};
use crate::objects::{Kind, LOCAL_CLUSTER, is_local};
use crate::source::kubeconfig_secret::{KUBECONFIG_KEY, KubeconfigSecret, wanted_clusters};
use crate::source::remote::{Connection, connect, spawn_secret_watch};
use crate::source::{Update, crds, kube as kube_source};
use crate::status_writer::{Note, SecretNote, Write, Writer};

/// What news about a cluster's reachability changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    /// What `/v1/routes` shows of the clusters (stale, since when, why): publish the sources again.
    pub shown: bool,
    /// Something the table or its diagnostics depend on (an error on a kubeconfig Secret): compile again.
    pub recompile: bool,
}

/// A connected cluster's watches and writer. Dropping it stops them all.
struct Running {
    writer: Writer,
    watches: kube_source::Watches,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One watched cluster.
struct Cluster {
    /// The Secret it comes from; none for the local cluster.
    secret: Option<KubeconfigSecret>,
    /// Tells the connection attempt of this Secret's version from an earlier one still in flight.
    generation: u64,
    running: Option<Running>,
    connecting: Option<JoinHandle<()>>,
    /// Why the cluster cannot be used, while it has not been listed: its kubeconfig, its server, its
    /// credentials. Reported on the Secret.
    problem: Option<String>,
    /// Kinds whose first list has not arrived.
    unlisted: Vec<Kind>,
    /// Since when (RFC 3339) and why the cluster cannot be reached.
    stale: Option<(String, String)>,
    /// Since when and why the API server of a remote cluster, listed before, stopped answering: an error on its
    /// Secret until it answers again. Kept as first seen, so that one outage makes one Event.
    outage: Option<(String, String)>,
    /// Kinds whose CRD is not installed.
    missing: BTreeSet<Kind>,
    api_server: Option<SocketAddr>,
}

impl Cluster {
    fn new(secret: Option<KubeconfigSecret>, generation: u64) -> Cluster {
        let mut unlisted: Vec<Kind> = kube_source::builtin_resources().into_iter().map(|(kind, _)| kind).collect();
        unlisted.extend(crds::OPTIONAL_KINDS.iter().map(|(kind, _, _)| *kind));
        Cluster {
            secret,
            generation,
            running: None,
            connecting: None,
            problem: None,
            unlisted,
            stale: None,
            outage: None,
            missing: BTreeSet::new(),
            api_server: None,
        }
    }

    fn listed(&self) -> bool {
        self.unlisted.is_empty()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(task) = &self.connecting {
            task.abort();
        }
    }
}

/// Every watched cluster, by name (the local one is [`LOCAL_CLUSTER`]).
pub struct Clusters {
    options: kube_source::Options,
    updates: mpsc::Sender<Update>,
    all: BTreeMap<String, Cluster>,
    /// Kubeconfig Secrets that add no cluster, with why.
    refused: Vec<(KubeconfigSecret, String)>,
    /// Whether the first list of kubeconfig Secrets has arrived.
    secrets_listed: bool,
    secret_watch: JoinHandle<()>,
    next_generation: u64,
}

impl Drop for Clusters {
    fn drop(&mut self) {
        self.secret_watch.abort();
    }
}

impl Clusters {
    /// Starts watching the local cluster through `client`, and the kubeconfig Secrets of `secrets_namespace`.
    pub fn start(
        client: Client,
        options: kube_source::Options,
        secrets_namespace: &str,
        updates: mpsc::Sender<Update>,
    ) -> Clusters {
        let secret_watch = spawn_secret_watch(&client, secrets_namespace, &updates);
        let mut clusters = Clusters {
            options,
            updates,
            all: BTreeMap::new(),
            refused: Vec::new(),
            secrets_listed: false,
            secret_watch,
            next_generation: 1,
        };
        let mut local = Cluster::new(None, 0);
        local.running = Some(clusters.run(LOCAL_CLUSTER, client));
        clusters.all.insert(LOCAL_CLUSTER.to_string(), local);
        clusters
    }

    fn run(&self, cluster: &str, client: Client) -> Running {
        let writer = Writer::spawn(client.clone());
        let mut tasks = vec![kube_source::spawn_probe(&client, cluster, &self.updates)];
        tasks.extend(crds::spawn(&client, cluster, &self.updates));
        let mut watches = kube_source::Watches::new(client, self.options.clone(), cluster, self.updates.clone());
        for (kind, resource) in kube_source::builtin_resources() {
            watches.set(kind, Some(resource));
        }
        Running { writer, watches, tasks }
    }

    /// Takes the kubeconfig Secrets as they are now: adds, restarts and removes clusters to match. Returns whether
    /// anything that needs a compilation changed.
    pub fn sync(&mut self, secrets: Vec<KubeconfigSecret>, index: &mut Index) -> bool {
        self.secrets_listed = true;
        let (wanted, refused) = wanted_clusters(secrets);
        let mut changed = refused != self.refused;
        self.refused = refused;
        let gone: Vec<String> =
            self.all.keys().filter(|name| !is_local(name) && !wanted.contains_key(*name)).cloned().collect();
        for name in gone {
            info!(cluster = %name, "its kubeconfig Secret is gone: no longer watched");
            self.all.remove(&name);
            index.remove_cluster(&name);
            changed = true;
        }
        for (name, secret) in wanted {
            match self.all.get_mut(&name) {
                Some(cluster) if cluster.secret.as_ref().map(|s| &s.kubeconfig) == Some(&secret.kubeconfig) => {
                    cluster.secret = Some(secret);
                }
                _ => {
                    info!(cluster = %name, secret = %secret.object(), "watching the cluster of a kubeconfig Secret");
                    index.remove_cluster(&name);
                    index.hold(&name);
                    let generation = self.next_generation;
                    self.next_generation += 1;
                    let mut cluster = Cluster::new(Some(secret.clone()), generation);
                    match secret.kubeconfig {
                        None => cluster.problem = Some(format!("the Secret has no key {KUBECONFIG_KEY:?}")),
                        Some(kubeconfig) => {
                            let (updates, name) = (self.updates.clone(), name.clone());
                            cluster.connecting = Some(tokio::spawn(async move {
                                let result = connect(&kubeconfig).await;
                                let _ = updates.send(Update::Connected { cluster: name, generation, result }).await;
                            }));
                        }
                    }
                    if let Some(problem) = &cluster.problem {
                        warn!(cluster = %name, %problem, "cannot watch the cluster");
                    }
                    self.all.insert(name, cluster);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Takes the outcome of connecting to a cluster: starts watching it, or records why it cannot be.
    pub fn connected(&mut self, name: &str, generation: u64, result: Result<Connection, String>) -> bool {
        if self.all.get(name).is_none_or(|c| c.generation != generation) {
            return false; // an attempt for a Secret that has changed or gone since
        }
        match result {
            Ok(connection) => {
                info!(cluster = %name, server = %connection.server, "connected");
                let running = self.run(name, connection.client);
                let Some(cluster) = self.all.get_mut(name) else { return false };
                match connection.address {
                    Ok(address) => cluster.api_server = Some(address),
                    Err(error) => warn!(cluster = %name, %error, "its API server gets no route with --api-domain"),
                }
                cluster.running = Some(running);
                cluster.connecting = None;
                cluster.api_server.is_some()
            }
            Err(problem) => {
                warn!(cluster = %name, %problem, "cannot watch the cluster");
                let Some(cluster) = self.all.get_mut(name) else { return false };
                cluster.problem = Some(problem);
                cluster.connecting = None;
                true
            }
        }
    }

    /// A kind of `name` listed; when that was its last, a remote cluster's objects are shown. Returns whether
    /// that needs a compilation.
    pub fn listed(&mut self, name: &str, kind: Kind, index: &mut Index) -> bool {
        let Some(cluster) = self.all.get_mut(name) else { return false };
        let was = cluster.listed();
        cluster.unlisted.retain(|k| *k != kind);
        if was || !cluster.listed() {
            return false;
        }
        if !is_local(name) {
            info!(cluster = %name, "every kind listed");
            cluster.problem = None;
            index.release(name);
        }
        true
    }

    /// What `kind` is read through in cluster `name` now. Returns the index source of the watch this ends, whose
    /// objects are gone with it.
    pub fn served(&mut self, name: &str, kind: Kind, resource: Option<ApiResource>) -> Option<SourceId> {
        let cluster = self.all.get_mut(name)?;
        if resource.is_some() {
            cluster.missing.remove(&kind);
        } else {
            cluster.missing.insert(kind);
            cluster.unlisted.retain(|k| *k != kind);
        }
        let running = cluster.running.as_mut()?;
        if kind == Kind::VirtualService {
            running.writer.set_virtual_service(resource.clone());
        }
        running.watches.set(kind, resource)
    }

    /// `name` cannot be reached (`unreachable`: its API server does not answer at all). Returns what that changed:
    /// a remote cluster not listed yet reports its first error on its Secret, a listed one the start of an outage
    /// of its API server. (A watch's own error alone is no outage: the probe decides, so a watch restarting does
    /// not make an Event.)
    pub fn failing(&mut self, name: &str, error: String, unreachable: bool) -> Changed {
        let Some(cluster) = self.all.get_mut(name) else { return Changed::default() };
        let first = cluster.stale.is_none();
        if first {
            warn!(cluster = %describe(name), %error, "the cluster cannot be reached; serving the last objects seen");
        }
        let changed = cluster.stale.as_ref().map(|(_, e)| e) != Some(&error);
        let since = cluster.stale.take().map(|(since, _)| since);
        let since = since.unwrap_or_else(|| k8s_openapi::jiff::Timestamp::now().to_string());
        cluster.stale = Some((since, error.clone()));
        // The first error of a cluster not listed yet is the one reported on its Secret: the probe and each watch
        // say it their own way, and one Event is enough.
        let remote = !is_local(name);
        let first_problem = remote && !cluster.listed() && cluster.problem.is_none();
        if first_problem {
            cluster.problem = Some(error);
        } else if remote && unreachable && cluster.listed() && cluster.outage.is_none() {
            cluster.outage = cluster.stale.clone();
            return Changed { shown: true, recompile: true };
        }
        Changed { shown: first || changed, recompile: first_problem }
    }

    /// `name` is reachable again. Returns what that changed (a compilation is needed when an outage reported on
    /// its Secret ends).
    pub fn healthy(&mut self, name: &str) -> Changed {
        let Some(cluster) = self.all.get_mut(name) else { return Changed::default() };
        if cluster.stale.take().is_some() {
            info!(cluster = %describe(name), "the cluster is reachable again");
            return Changed { shown: true, recompile: cluster.outage.take().is_some() };
        }
        Changed::default()
    }

    /// Whether `source` is the index source of a running watch: what an ended one (or a removed cluster's) still
    /// had in flight is not.
    pub fn is_current(&self, source: &SourceId) -> bool {
        let running = self.all.get(&source.cluster).and_then(|c| c.running.as_ref());
        running.is_some_and(|r| r.watches.is_current(source))
    }

    /// Whether the first table can be compiled: the local cluster and the kubeconfig Secrets listed, and every
    /// remote cluster listed or known not to work, so that a restarted controller's first table already has
    /// every cluster's routes.
    pub fn ready(&self) -> bool {
        self.secrets_listed && self.all.iter().all(|(name, c)| c.listed() || (!is_local(name) && c.problem.is_some()))
    }

    /// Whether the local cluster's kinds are all listed.
    pub fn local_listed(&self) -> bool {
        self.all.get(LOCAL_CLUSTER).is_some_and(Cluster::listed)
    }

    /// The kinds whose CRD is not installed, by cluster.
    pub fn missing(&self) -> Vec<(&str, Kind)> {
        self.all.iter().flat_map(|(name, c)| c.missing.iter().map(move |kind| (name.as_str(), *kind))).collect()
    }

    /// The API servers of the remote clusters that have an address.
    pub fn api_servers(&self) -> Vec<ApiServer> {
        self.all
            .iter()
            .filter_map(|(name, c)| {
                let secret = c.secret.as_ref()?;
                Some(ApiServer {
                    cluster: name.clone(),
                    secret: (secret.namespace.clone(), secret.name.clone()),
                    address: c.api_server?,
                })
            })
            .collect()
    }

    /// Every kubeconfig Secret that adds no working cluster, as an error on the Secret.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let refused = self.refused.iter().map(|(secret, why)| {
            Diagnostic::new(format!("adds no cluster: {why}")).object(secret.object()).field("metadata.name")
        });
        let broken = self.all.iter().filter_map(|(name, c)| {
            let (secret, problem) = (c.secret.as_ref()?, c.problem.as_ref()?);
            let message = format!("cluster {name} cannot be watched: {problem}; fix the kubeconfig in the Secret");
            Some(Diagnostic::new(message).object(secret.object()).field(format!("data.{KUBECONFIG_KEY}")))
        });
        let unreachable = self.all.iter().filter_map(|(name, c)| {
            let (secret, (since, error)) = (c.secret.as_ref()?, c.outage.as_ref()?);
            let message = format!(
                "cluster {name} cannot be reached since {since} ({error}); its routes are served as last seen until \
                 its API server answers again"
            );
            Some(Diagnostic::new(message).object(secret.object()))
        });
        refused.chain(broken).chain(unreachable).collect()
    }

    /// The Events for the errors of `new_diagnostics` that are about kubeconfig Secrets.
    pub fn secret_notes(&self, new_diagnostics: &[Diagnostic]) -> Vec<SecretNote> {
        let secrets = self.all.values().filter_map(|c| c.secret.as_ref()).chain(self.refused.iter().map(|(s, _)| s));
        let secrets: Vec<&KubeconfigSecret> = secrets.collect();
        new_diagnostics
            .iter()
            .filter(|d| !d.is_warning())
            .filter_map(|d| {
                let secret = secrets.iter().find(|s| d.object.as_deref() == Some(s.object().as_str()))?;
                Some(SecretNote {
                    namespace: secret.namespace.clone(),
                    name: secret.name.clone(),
                    uid: secret.uid.clone(),
                    message: Diagnostic { object: None, file: None, ..d.clone() }.to_string(),
                })
            })
            .collect()
    }

    /// Each cluster's status for `/v1/routes`: `kube` for the local one, `kube alpha` for another.
    pub fn sources(&self) -> Vec<SourceStatus> {
        self.all
            .iter()
            .map(|(name, c)| SourceStatus {
                name: if is_local(name) { "kube".to_string() } else { format!("kube {name}") },
                stale: c.stale.is_some() || c.problem.is_some(),
                since: c.stale.as_ref().map(|(since, _)| since.clone()),
                error: c.stale.as_ref().map(|(_, error)| error.clone()).or_else(|| c.problem.clone()),
            })
            .collect()
    }

    /// The writer of cluster `name`, once connected.
    pub fn writer(&self, name: &str) -> Option<&Writer> {
        self.all.get(name)?.running.as_ref().map(|r| &r.writer)
    }

    /// Hands each note to the writer of its object's cluster.
    pub fn note(&self, note: Note) {
        if let Some(writer) = self.writer(&note.key.cluster) {
            writer.note(note);
        }
    }

    /// Records the errors of `new_diagnostics` about kubeconfig Secrets as Events on them, in the local cluster.
    pub fn note_secrets(&self, new_diagnostics: &[Diagnostic]) {
        let Some(writer) = self.writer(LOCAL_CLUSTER) else { return };
        for note in self.secret_notes(new_diagnostics) {
            writer.note_secret(note);
        }
    }

    /// Gives each cluster's writer the writes for its objects (and nothing more: a plan is the whole truth).
    pub fn plan(&self, writes: Vec<Write>) {
        let mut by_cluster: BTreeMap<&str, Vec<Write>> = BTreeMap::new();
        for write in writes {
            if let Some((name, _)) = self.all.get_key_value(&write.key.cluster) {
                by_cluster.entry(name.as_str()).or_default().push(write);
            }
        }
        for (name, cluster) in &self.all {
            if let Some(running) = &cluster.running {
                running.writer.plan(by_cluster.remove(name.as_str()).unwrap_or_default());
            }
        }
    }
}

/// `local` or the cluster's name, for logs.
fn describe(name: &str) -> String {
    if is_local(name) { "local".to_string() } else { name.to_string() }
}
