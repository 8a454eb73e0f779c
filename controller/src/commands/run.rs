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
//! Many clusters: the local one and one per kubeconfig Secret ([`crate::source::clusters`]) in Kubernetes mode,
//! the top level and one per subdirectory ([`crate::source::dir_clusters`]) in directory mode. All of them feed the
//! one index and the one table.
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
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::cli::{RunArgs, Source};
use crate::compiler::{Assignments, Compiled, HeldPorts, Options, compile, ports};
use crate::health::Health;
use crate::index::Index;
use crate::metrics::Trigger;
use crate::objects::{Kind, annotation};
use crate::port_ranges::port_ranges;
use crate::publish::Publisher;
use crate::source::clusters::Clusters;
use crate::source::dir_clusters::Splitter;
use crate::source::{Update, crds, dir, kube};
use crate::{Error, Result, leader, metrics, route_changes, server, state};
use crate::{status_page, status_writer};

/// How often a failed write of the state file is tried again.
const STATE_RETRY: Duration = Duration::from_secs(5);

pub async fn run(args: RunArgs) -> Result<()> {
    let (updates_tx, mut updates) = mpsc::channel(256);
    let (health, mut health_results) = Health::new(args.health_interval);
    let mut tasks = Vec::new();
    let mut controller = Controller {
        index: Index::new(),
        publisher: Publisher::starting_now(),
        options: Options { backends: args.backends, tls_port: args.tls_port, ..Options::default() },
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
            let mut splitter = Splitter::new(root, &args.source.to_string());
            for (source, snapshot) in splitter.split(first) {
                controller.handle(Update::Reset { source, snapshot });
            }
            controller.update();
            // At start a state file that cannot be written is fatal, like one that cannot be read.
            if let (Some(path), None) = (&controller.state, &controller.saved) {
                state::save(path, &controller.state_file())?;
            }
            let updates_tx = updates_tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(snapshot) = snapshots.recv().await {
                    for (source, snapshot) in splitter.split(snapshot) {
                        if updates_tx.send(Update::Reset { source, snapshot }).await.is_err() {
                            return;
                        }
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
            let clusters = Clusters::start(client, options, &args.cluster_secrets_namespace, updates_tx.clone());
            controller.options.api_servers.domain = args.api_domain.clone();
            controller.kube = Some(KubeMode {
                leads: campaign.as_ref().map(|c| c.leads.clone()),
                campaign,
                ingress_address: args.ingress_address.clone(),
                clusters,
                started: false,
                noted: false,
            });
            controller.publish_sources();
        }
    }
    drop(updates_tx);

    let listener = TcpListener::bind(args.listen).await.map_err(|error| Error::Bind { addr: args.listen, error })?;
    let app = server::router(controller.publisher.subscribe())
        .merge(server::filter_router(filter_module(&args)?))
        .merge(metrics::router(controller.publisher.subscribe()))
        .merge(status_page::router(controller.publisher.subscribe()));
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
                let seen = Instant::now();
                let mut changed = controller.health.record(result);
                while let Ok(result) = health_results.try_recv() {
                    changed |= controller.health.record(result);
                }
                if changed {
                    metrics::global().change_seen(seen, Trigger::Health);
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
                    let seen = Instant::now();
                    let mut changed = controller.handle(update);
                    // Take every change already waiting before compiling: a relist arrives as many at once.
                    while let Ok(update) = updates.try_recv() {
                        changed |= controller.handle(update);
                    }
                    if changed {
                        metrics::global().change_seen(seen, Trigger::Objects);
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
    ingress_address: Option<String>,
    /// Every watched cluster, with its watches and its writer.
    clusters: Clusters,
    /// Whether a table has been compiled. Until then nothing is (and `/readyz` fails) before every kind of every
    /// cluster is listed ([`Clusters::ready`]).
    started: bool,
    /// Whether every error of the last publication has been given to the writer as an Event, which happens only
    /// while leading: a replica that starts to lead notes them all (Events are named per error, so one the
    /// previous leader recorded is found, not repeated).
    noted: bool,
}

impl Controller {
    /// Takes one update into the index; whether anything that needs a compilation changed.
    fn handle(&mut self, update: Update) -> bool {
        if let (Some(kube), Some(source)) = (&self.kube, update.source())
            && !kube.clusters.is_current(source)
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
            Update::Listed { cluster, kind } => {
                if let Some(kube) = &mut self.kube {
                    kube.clusters.listed(&cluster, kind, &mut self.index);
                }
            }
            Update::Served { cluster, kind, resource } => {
                let Some(kube) = &mut self.kube else { return false };
                if let Some(ended) = kube.clusters.served(&cluster, kind, resource) {
                    self.index.reset(ended, Vec::new(), Vec::new());
                }
            }
            Update::Failing { cluster, error, unreachable } => {
                let Some(kube) = &mut self.kube else { return false };
                let (shown, recompile) = kube.clusters.failing(&cluster, error, unreachable);
                if shown {
                    self.publish_sources();
                }
                return recompile;
            }
            Update::SessionKey(key) => {
                let changed = self.affinity_key != Some(key);
                self.affinity_key = Some(key);
                return changed;
            }
            Update::Healthy { cluster } => {
                let Some(kube) = &mut self.kube else { return false };
                let (shown, recompile) = kube.clusters.healthy(&cluster);
                if shown {
                    self.publish_sources();
                }
                return recompile;
            }
            Update::Kubeconfigs(secrets) => {
                let Some(kube) = &mut self.kube else { return false };
                let changed = kube.clusters.sync(secrets, &mut self.index);
                self.publish_sources();
                return changed;
            }
            Update::Connected { cluster, generation, result } => {
                let Some(kube) = &mut self.kube else { return false };
                let changed = kube.clusters.connected(&cluster, generation, result);
                self.publish_sources();
                return changed;
            }
        }
        true
    }

    fn publish_sources(&mut self) {
        let Some(kube) = &self.kube else { return };
        self.publisher.set_sources(kube.clusters.sources());
    }

    fn update(&mut self) {
        let Some(affinity_key) = self.affinity_key else { return };
        if let Some(kube) = &mut self.kube {
            if !kube.started && !kube.clusters.ready() {
                return;
            }
            kube.started = true;
            self.options.api_servers.servers = kube.clusters.api_servers();
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
        let compiling = Instant::now();
        let mut compiled = compile(&self.index, &self.options, &held);
        metrics::global().compiled(compiling.elapsed(), &self.index, leading);
        self.publisher.set_port_ranges(port_ranges(&self.index, &compiled.assignments));
        compiled.content = std::mem::take(&mut compiled.content).with_affinity_key(affinity_key);
        if let Some(kube) = &self.kube {
            crds::explain_missing(&kube.clusters.missing(), &mut compiled);
            compiled.diagnostics.extend(kube.clusters.diagnostics());
        }
        for line in ports::describe_changes(&self.assignments, &compiled.assignments) {
            info!("{line}");
        }
        self.held = ports::held_ports(&compiled.assignments);
        self.assignments = compiled.assignments.clone();
        self.save_state();
        if let Some(kube) = &self.kube {
            if leading {
                kube.clusters.plan(status_writer::plan(&self.index, &compiled, kube.ingress_address.as_deref()));
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
        let before = self.publisher.subscribe().borrow().table.clone();
        let outcome = self.publisher.publish(compiled, health);
        metrics::global().published(&outcome);
        if let (true, Some(after)) = (outcome.table_changed, self.publisher.subscribe().borrow().table.clone()) {
            route_changes::log(before.as_ref().map(|p| &p.table), &after.table);
        }
        for diagnostic in &outcome.new_diagnostics {
            warn!("{diagnostic}");
        }
        if let Some(kube) = &mut self.kube {
            if leading {
                let to_note = catch_up.as_deref().unwrap_or(&outcome.new_diagnostics);
                for note in status_writer::notes(&self.index, to_note) {
                    kube.clusters.note(note);
                }
                kube.clusters.note_secrets(to_note);
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
        let key = entry.key();
        for (route, port) in ports::parse_address_annotation(value) {
            held.insert(format!("{key} {route}"), port);
        }
    }
    held
}

/// Leaves out of the table every tcp route whose port its object's `berth.dev/address` does not record yet.
fn withhold_unrecorded(compiled: &mut Compiled, index: &Index) {
    let recorded: BTreeSet<(berth_table::Source, u16)> = index
        .of_kind(Kind::VirtualService)
        .filter_map(|entry| {
            let value = annotation(entry.object.metadata(), ports::ADDRESS_ANNOTATION)?;
            let source = crate::compiler::source_of(&entry.key());
            Some(ports::parse_address_annotation(value).into_values().map(move |port| (source.clone(), port)))
        })
        .flatten()
        .collect();
    compiled.content.tcp.retain(|route| {
        let waits = !recorded.contains(&(route.source.clone(), route.port));
        if waits {
            debug!(port = route.port, object = %route.source, "tcp route waits until berth.dev/address records its port");
        }
        !waits
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
