//! `berth run`: the controller. The source feeds the index; every change recompiles and publishes; the server
//! answers from the latest publication. One task owns the index, the ports handed out and the publisher, so none
//! needs a lock.
//!
//! Directory mode: ports handed out to tcp routes are written to the state file (`--state`) before the table
//! that uses them is published; that file, `berth routes` and `/v1/routes` are where addresses show, never the
//! user's YAML. A failed write is logged and retried; the table is served anyway.
//!
//! Kubernetes mode: the ports held are those recorded in each VirtualService's `berth.dev/address` (and, within
//! this process, those handed out by the last compilation). A tcp route is put in the table only once the
//! object's `berth.dev/address` records its port, as seen through the watch: a port clients were given is then
//! on record, so a restarted (or newly elected) controller keeps it rather than hand it to someone else. Until
//! the write lands (normally one round trip) only that route waits; everything else is published at once, and
//! the write-back ([`crate::status_writer`]) never holds up a publication.
//!
//! With `--leader-elect`, replicas campaign for a Lease ([`crate::leader`]). Every replica watches, compiles and
//! serves; only the leader writes back. A follower holds exactly the ports on record and hands out none, so its
//! table never names a port the leader did not record; when it becomes leader it picks up from there. All of them
//! make session cookies with the key of one Secret ([`crate::leader::session_key`]).
//!
//! Every publication goes compile → [`Health::apply`] → publish; a health check result that changes what is
//! shown republishes the last compilation the same way, so health never touches ports or routes.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::cli::{RunArgs, Source};
use crate::compiler::{Assignments, Compiled, HeldPorts, Options, compile, ports};
use crate::health::Health;
use crate::index::Index;
use crate::objects::{Kind, Object, annotation};
use crate::publish::Publisher;
use crate::server::SourceView;
use crate::source::{Update, crds, dir, kube};
use crate::status_writer::{self, Writer};
use crate::{Error, Result, leader, server, state};

/// How often a failed write of the state file is tried again.
const STATE_RETRY: Duration = Duration::from_secs(5);

pub async fn run(args: RunArgs) -> Result<()> {
    let (updates_tx, mut updates) = mpsc::channel(256);
    let (health, mut health_results) = Health::new(args.health_interval);
    let mut tasks = Vec::new();
    let mut controller = Controller {
        index: Index::new(),
        publisher: Publisher::starting_now(),
        options: Options { backends: args.backends, tls_port: args.tls_port },
        assignments: Assignments::new(),
        held: HeldPorts::new(),
        // Kept in the state file in directory mode and shared through a Secret with `--leader-elect`; otherwise a
        // restart makes a new key and each session moves once.
        affinity_key: Some(state::new_affinity_key()),
        state: None,
        saved: None,
        kube: None,
        health,
        compiled: None,
    };
    match &args.source {
        Source::Dir(root) => {
            // Before anything is served: a state file that cannot be read must not turn into every port handed
            // out anew.
            if let Some(path) = &args.state {
                let loaded = state::load(path)?;
                let held = loaded.ports;
                info!(state = %path.display(), ports = held.len(), "loaded the ports handed out before");
                controller.assignments = ports::from_held(&held);
                controller.held = held;
                if let Some(key) = loaded.affinity_key {
                    controller.affinity_key = Some(key);
                }
                controller.state = Some(path.clone());
            }
            // A clear error for a wrong path before the watcher gives a vaguer one.
            std::fs::metadata(root).map_err(|error| Error::Read { path: root.clone(), error })?;
            // The watch is set up before the first read, so a change made in between is not missed.
            let (snapshots_tx, mut snapshots) = mpsc::channel(4);
            let (first, task) = dir::watch(root.clone(), snapshots_tx).await?;
            tasks.push(task);
            let source = args.source.to_string();
            controller.handle(Update::Reset { source: source.clone(), snapshot: first });
            controller.update();
            // At start a state file that cannot be written is fatal, like one that cannot be read.
            if let (Some(path), None) = (&controller.state, &controller.saved) {
                state::save(path, &controller.state_file())?;
            }
            let updates_tx = updates_tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(snapshot) = snapshots.recv().await {
                    if updates_tx.send(Update::Reset { source: source.clone(), snapshot }).await.is_err() {
                        return;
                    }
                }
            }));
        }
        Source::Kube => {
            let options = kube::Options {
                kubeconfig: args.kubeconfig.clone(),
                context: args.context.clone(),
                namespace: args.namespace.clone(),
            };
            let client = kube::client(&options).await?;
            let campaign = args.leader.leader_elect.then(|| leader::spawn(client.clone(), lease_config(&args)));
            if args.leader.leader_elect {
                // Replicas make cookies with one key: nothing is compiled until it is known.
                controller.affinity_key = None;
                let namespace = args.leader.leader_elect_namespace.clone();
                tasks.push(leader::session_key::spawn(client.clone(), namespace, updates_tx.clone()));
            }
            let (writer, task) = Writer::spawn(client.clone());
            tasks.push(task);
            tasks.push(kube::spawn_probe(&client, &updates_tx));
            tasks.extend(crds::spawn(&client, &updates_tx));
            let mut watches = kube::Watches::new(client, options, updates_tx.clone());
            for (kind, resource) in kube::builtin_resources() {
                watches.set(kind, Some(resource));
            }
            // Ready once every built-in kind is listed and each CRD's kind is listed or known to be missing.
            let mut unlisted: Vec<Kind> = kube::builtin_resources().into_iter().map(|(kind, _)| kind).collect();
            unlisted.extend(crds::OPTIONAL_KINDS.iter().map(|(kind, _, _)| *kind));
            controller.kube = Some(KubeMode {
                leads: campaign.as_ref().map(|c| c.leads.clone()),
                campaign,
                writer,
                ingress_address: args.ingress_address.clone(),
                unlisted,
                stale: None,
                watches,
                missing: BTreeSet::new(),
                noted: false,
            });
            controller.publish_sources();
        }
    }
    drop(updates_tx);

    let listener = TcpListener::bind(args.listen).await.map_err(|error| Error::Bind { addr: args.listen, error })?;
    let app = server::router(controller.publisher.subscribe()).merge(server::filter_router(filter_module(&args)?));
    info!(listen = %args.listen, source = %args.source, "berth controller started");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut server = tokio::spawn(async move {
        let stop = async {
            let _ = stop_rx.await;
        };
        axum::serve(listener, app).with_graceful_shutdown(stop).await
    });

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut retry = tokio::time::interval(STATE_RETRY);
    let mut leadership = controller.kube.as_ref().and_then(|k| k.leads.clone());
    let result = loop {
        tokio::select! {
            _ = retry.tick() => controller.save_state(),
            () = leadership_change(&mut leadership) => controller.update(),
            Some(result) = health_results.recv() => {
                let mut changed = controller.health.record(result);
                while let Ok(result) = health_results.try_recv() {
                    changed |= controller.health.record(result);
                }
                if changed {
                    controller.publish();
                }
            }
            () = &mut shutdown => break Ok(()),
            served = &mut server => break match served {
                Ok(result) => result.map_err(Error::Serve),
                Err(panicked) => Err(Error::Serve(std::io::Error::other(panicked))),
            },
            update = updates.recv() => match update {
                Some(update) => {
                    let mut changed = controller.handle(update);
                    // Take every change already waiting before compiling: a relist arrives as many at once.
                    while let Ok(update) = updates.try_recv() {
                        changed |= controller.handle(update);
                    }
                    if changed {
                        controller.update();
                    }
                }
                None => break Ok(()),
            },
        }
    };
    info!("shutting down");
    if let Some(campaign) = controller.kube.as_mut().and_then(|k| k.campaign.take()) {
        campaign.resign().await;
    }
    // Dropping the publisher ends every long poll at once; then the server finishes gracefully.
    drop(controller);
    let _ = stop_tx.send(());
    if !server.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
    for task in tasks {
        task.abort();
    }
    result
}

/// Where the image puts the filter module: served by default when present.
const SHIPPED_FILTER: &str = "/usr/share/berth/berth_filter.wasm";

/// The module `--filter-wasm` names (unreadable: fatal), else the shipped one if present, else none.
fn filter_module(args: &RunArgs) -> Result<Option<server::FilterModule>> {
    let path = match &args.filter_wasm {
        Some(path) => path.clone(),
        None if std::path::Path::new(SHIPPED_FILTER).is_file() => PathBuf::from(SHIPPED_FILTER),
        None => return Ok(None),
    };
    let module = server::FilterModule::load(&path)?;
    info!(path = %path.display(), sha256 = %module.sha256, "serving the filter module at /v1/filter.wasm");
    Ok(Some(module))
}

/// The index, the ports handed out and the publisher, updated together.
struct Controller {
    index: Index,
    publisher: Publisher,
    options: Options,
    /// The ports handed out by the last compilation (at start: those of the state file): the next one keeps them.
    held: HeldPorts,
    assignments: Assignments,
    /// The secret behind session cookies, published in tables with session affinity; none until known (see
    /// [`leader::session_key`]), and nothing is compiled until then.
    affinity_key: Option<berth_table::AffinityKey>,
    state: Option<PathBuf>,
    /// What the state file holds, once written by this process; differs from `held` while a write is failing.
    saved: Option<HeldPorts>,
    kube: Option<KubeMode>,
    health: Health,
    /// The last compilation, before health is applied: republished as it is when only health changes.
    compiled: Option<Compiled>,
}

/// What only Kubernetes mode has.
struct KubeMode {
    /// Whether this replica leads, with `--leader-elect`; without it, it always does.
    leads: Option<watch::Receiver<bool>>,
    campaign: Option<leader::Campaign>,
    writer: Writer,
    ingress_address: Option<String>,
    /// Kinds whose first list has not arrived: nothing is compiled (and `/readyz` fails) until none is left.
    unlisted: Vec<Kind>,
    /// Since when (RFC 3339) and why the cluster cannot be reached.
    stale: Option<(String, String)>,
    watches: kube::Watches,
    /// Kinds whose CRD is not installed.
    missing: BTreeSet<Kind>,
    /// Whether every error of the last publication has been given to the writer as an Event, which happens only
    /// while leading: a replica that starts to lead notes them all (Events are named per error, so one the
    /// previous leader recorded is found, not repeated).
    noted: bool,
}

impl Controller {
    /// Takes one update into the index; whether anything that needs a compilation changed.
    fn handle(&mut self, update: Update) -> bool {
        if let (Some(kube), Some(source)) = (&self.kube, update.source())
            && !kube.watches.is_current(source)
        {
            return false; // in flight from a watch that has ended
        }
        match update {
            Update::Reset { source, snapshot } => self.index.reset(&source, snapshot.objects, snapshot.diagnostics),
            Update::Apply { source, object } => {
                let key = object.key();
                if let Err(diagnostic) = self.index.apply(&source, object, None) {
                    self.index.reject(&source, key, diagnostic);
                }
            }
            Update::Reject { source, key, diagnostic } => self.index.reject(&source, key, diagnostic),
            Update::Delete { source, key } => self.index.delete(&source, &key),
            Update::Listed(kind) => {
                if let Some(kube) = &mut self.kube {
                    kube.unlisted.retain(|k| *k != kind);
                }
            }
            Update::Served { kind, resource } => {
                let Some(kube) = &mut self.kube else { return false };
                if resource.is_some() {
                    kube.missing.remove(&kind);
                } else {
                    kube.missing.insert(kind);
                    kube.unlisted.retain(|k| *k != kind);
                }
                if kind == Kind::VirtualService {
                    kube.writer.set_virtual_service(resource.clone());
                }
                if let Some(ended) = kube.watches.set(kind, resource) {
                    self.index.reset(&ended, Vec::new(), Vec::new());
                }
            }
            Update::Failing { error } => {
                if let Some(kube) = &mut self.kube {
                    if kube.stale.is_none() {
                        warn!(%error, "the cluster cannot be reached; serving the last objects seen");
                    }
                    let since = kube.stale.take().map(|(since, _)| since);
                    let since = since.unwrap_or_else(|| k8s_openapi::jiff::Timestamp::now().to_string());
                    kube.stale = Some((since, error));
                }
                self.publish_sources();
                return false;
            }
            Update::SessionKey(key) => {
                let changed = self.affinity_key != Some(key);
                self.affinity_key = Some(key);
                return changed;
            }
            Update::Healthy => {
                if let Some(kube) = &mut self.kube
                    && kube.stale.take().is_some()
                {
                    info!("the cluster is reachable again");
                    self.publish_sources();
                }
                return false;
            }
        }
        true
    }

    fn publish_sources(&mut self) {
        let Some(kube) = &self.kube else { return };
        let view = SourceView {
            name: "kube".to_string(),
            stale: kube.stale.is_some(),
            since: kube.stale.as_ref().map(|(since, _)| since.clone()),
            error: kube.stale.as_ref().map(|(_, error)| error.clone()),
        };
        self.publisher.set_sources(vec![view]);
    }

    fn update(&mut self) {
        let Some(affinity_key) = self.affinity_key else { return };
        if self.kube.as_ref().is_some_and(|k| !k.unlisted.is_empty()) {
            return;
        }
        let leading = self.kube.as_ref().is_none_or(KubeMode::leads);
        let held = match &self.kube {
            // A follower holds what is on record and nothing else: ports it handed out itself would be guesses.
            Some(_) if !leading => recorded_ports(&self.index),
            // What is on record wins over what this process remembers.
            Some(_) => {
                let mut held = self.held.clone();
                held.extend(recorded_ports(&self.index));
                held
            }
            None => self.held.clone(),
        };
        let mut compiled = compile(&self.index, &self.options, &held);
        compiled.content = std::mem::take(&mut compiled.content).with_affinity_key(affinity_key);
        if let Some(kube) = &self.kube {
            crds::explain_missing(&kube.missing.iter().copied().collect::<Vec<_>>(), &mut compiled);
        }
        for line in ports::describe_changes(&self.assignments, &compiled.assignments) {
            info!("{line}");
        }
        self.held = ports::held_ports(&compiled.assignments);
        self.assignments = compiled.assignments.clone();
        self.save_state();
        if let Some(kube) = &self.kube {
            if leading {
                kube.writer.plan(status_writer::plan(&self.index, &compiled, kube.ingress_address.as_deref()));
            }
            withhold_unrecorded(&mut compiled, &self.index);
        }
        self.compiled = Some(compiled);
        self.publish();
    }

    /// Publishes the last compilation without its unhealthy endpoints.
    fn publish(&mut self) {
        let Some(mut compiled) = self.compiled.clone() else { return };
        let leading = self.kube.as_ref().is_none_or(KubeMode::leads);
        let health = self.health.apply(&self.index, &mut compiled);
        let (http, tcp, tls) = (compiled.content.http.len(), compiled.content.tcp.len(), compiled.content.tls.len());
        let errors = compiled.diagnostics.iter().filter(|d| !d.is_warning()).count();
        let catch_up = self.kube.as_ref().is_some_and(|k| leading && !k.noted).then(|| compiled.diagnostics.clone());
        let outcome = self.publisher.publish(compiled, health);
        for diagnostic in &outcome.new_diagnostics {
            warn!("{diagnostic}");
        }
        if let Some(kube) = &mut self.kube {
            if leading {
                let to_note = catch_up.as_deref().unwrap_or(&outcome.new_diagnostics);
                for note in status_writer::notes(&self.index, to_note) {
                    kube.writer.note(note);
                }
            }
            kube.noted = leading;
        }
        if outcome.changed() {
            info!(
                "serving table version {}: {http} http routes, {tcp} tcp routes, {tls} tls routes, {errors} errors",
                outcome.version
            );
        }
    }

    fn state_file(&self) -> state::State {
        state::State { ports: self.held.clone(), affinity_key: self.affinity_key }
    }

    /// Writes the ports handed out to the state file, when there is one and it does not hold them yet.
    fn save_state(&mut self) {
        let Some(path) = &self.state else { return };
        if self.saved.as_ref() == Some(&self.held) {
            return;
        }
        match state::save(path, &self.state_file()) {
            Ok(()) => self.saved = Some(self.held.clone()),
            Err(e) => error!("{e}; trying again every {}s", STATE_RETRY.as_secs()),
        }
    }
}

impl KubeMode {
    fn leads(&self) -> bool {
        self.leads.as_ref().is_none_or(|leads| *leads.borrow())
    }
}

/// The Lease `--leader-elect` campaigns for.
fn lease_config(args: &RunArgs) -> leader::LeaseConfig {
    let identity = args.leader.leader_elect_identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    leader::LeaseConfig {
        namespace: args.leader.leader_elect_namespace.clone(),
        name: args.leader.leader_elect_lease.clone(),
        identity,
        timing: leader::Timing::from_lease_duration(args.leader.leader_elect_duration),
    }
}

/// Resolves when leadership changes; never without leader election.
async fn leadership_change(leads: &mut Option<watch::Receiver<bool>>) {
    let changed = match leads {
        Some(receiver) => receiver.changed().await.is_ok(),
        None => false,
    };
    if !changed {
        // No election, or it ended with the process: nothing will ever change.
        std::future::pending::<()>().await;
    }
}

/// The ports VirtualServices' `berth.dev/address` annotations record, by claim.
fn recorded_ports(index: &Index) -> HeldPorts {
    let mut held = HeldPorts::new();
    for entry in index.of_kind(Kind::VirtualService) {
        let Some(value) = annotation(entry.object.metadata(), ports::ADDRESS_ANNOTATION) else { continue };
        let key = entry.object.key();
        for (route, port) in ports::parse_address_annotation(value) {
            held.insert(format!("{key} {route}"), port);
        }
    }
    held
}

/// Leaves out of the table every tcp route whose port its object's `berth.dev/address` does not record yet.
fn withhold_unrecorded(compiled: &mut Compiled, index: &Index) {
    compiled.content.tcp.retain(|route| {
        let key = crate::objects::ObjectKey::new(Kind::VirtualService, &route.source.namespace, &route.source.name);
        let recorded = index.get(&key).is_some_and(|entry| match &entry.object {
            Object::VirtualService(vs) => annotation(&vs.metadata, ports::ADDRESS_ANNOTATION)
                .is_some_and(|value| ports::parse_address_annotation(value).values().any(|p| *p == route.port)),
            _ => false,
        });
        if !recorded {
            debug!(port = route.port, object = %key, "tcp route waits until berth.dev/address records its port");
        }
        recorded
    });
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
