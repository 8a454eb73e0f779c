//! The run loop's state: the index, the ports handed out, the publisher and, in Kubernetes mode, the clusters.
//! One task owns it, so none of it needs a lock. Each change from a source goes into the index
//! ([`Controller::handle`]); then [`crate::reconcile::reconcile`] says what is published, and this module does the
//! I/O around it: logs, the state file, the write-back plan handed to each cluster's writer, the publication, the
//! Events for new errors.
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
//! With `--leader-elect`, every replica watches, compiles and serves; only the leader writes back. A follower
//! holds exactly the ports on record and hands out none, so its table never names a port the leader did not
//! record; when it becomes leader it picks up from there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::clusters::Clusters;
use crate::compiler::{Assignments, Compiled, HeldPorts, Options, ports};
use crate::health::book::Outcome;
use crate::health::{Health, Observation};
use crate::index::Index;
use crate::port_ranges::port_ranges;
use crate::publish::{Publication, Publisher};
use crate::reconcile::{Inputs, KubeInputs, apply_health, reconcile};
use crate::source::Update;
use crate::{Result, leader, metrics, route_changes, state, status_writer};

/// How often a failed write of the state file is tried again.
pub const STATE_RETRY: Duration = Duration::from_secs(5);

/// The index, the ports handed out and the publisher, updated together.
pub struct Controller {
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
pub struct KubeMode {
    /// Whether this replica leads, with `--leader-elect`; without it, it always does.
    pub leads: Option<watch::Receiver<bool>>,
    pub campaign: Option<leader::Campaign>,
    pub ingress_address: Option<String>,
    /// Every watched cluster, with its watches and its writer.
    pub clusters: Clusters,
    /// Whether a table has been compiled. Until then nothing is (and `/readyz` fails) before every kind of every
    /// cluster is listed ([`Clusters::ready`]).
    started: bool,
    /// Whether every error of the last publication has been given to the writer as an Event, which happens only
    /// while leading: a replica that starts to lead notes them all (Events are named per error, so one the
    /// previous leader recorded is found, not repeated).
    noted: bool,
}

impl KubeMode {
    pub fn new(clusters: Clusters, campaign: Option<leader::Campaign>, ingress_address: Option<String>) -> KubeMode {
        let leads = campaign.as_ref().map(|c| c.leads.clone());
        KubeMode { leads, campaign, ingress_address, clusters, started: false, noted: false }
    }

    fn leads(&self) -> bool {
        self.leads.as_ref().is_none_or(|leads| *leads.borrow())
    }
}

impl Controller {
    /// A controller with an empty index, compiling with `options`. Its session key is new (kept in the state file
    /// in directory mode, and shared through a Secret with `--leader-elect`; otherwise a restart makes a new key
    /// and each session moves once).
    pub fn new(options: Options, health: Health) -> Controller {
        Controller {
            index: Index::new(),
            publisher: Publisher::starting_now(),
            options,
            assignments: Assignments::new(),
            held: HeldPorts::new(),
            affinity_key: Some(state::new_affinity_key()),
            state: None,
            saved: None,
            kube: None,
            health,
            compiled: None,
        }
    }

    /// Takes the ports (and session key) of the state file at `path`, and writes to it from now on. Fails when it
    /// cannot be read: that must not turn into every port handed out anew.
    pub fn load_state(&mut self, path: &Path) -> Result<()> {
        let loaded = state::load(path)?;
        let held = loaded.ports;
        info!(state = %path.display(), ports = held.len(), "loaded the ports handed out before");
        self.assignments = ports::from_held(&held);
        self.held = held;
        if let Some(key) = loaded.affinity_key {
            self.affinity_key = Some(key);
        }
        self.state = Some(path.to_path_buf());
        Ok(())
    }

    /// Writes the state file now unless this process has already: at start, one that cannot be written is fatal,
    /// like one that cannot be read.
    pub fn save_state_at_start(&self) -> Result<()> {
        if let (Some(path), None) = (&self.state, &self.saved) {
            state::save(path, &self.state_file())?;
        }
        Ok(())
    }

    /// Kubernetes mode, watching `kube.clusters`; with `session_key_shared`, nothing is compiled until the key
    /// arrives ([`Update::SessionKey`]).
    pub fn start_kube(&mut self, kube: KubeMode, api_domain: Option<String>, session_key_shared: bool) {
        if session_key_shared {
            self.affinity_key = None;
        }
        self.options.api_servers.domain = api_domain;
        self.kube = Some(kube);
        self.publish_sources();
    }

    /// Where the server reads each publication from.
    pub fn subscribe(&self) -> watch::Receiver<Publication> {
        self.publisher.subscribe()
    }

    /// Whether this replica leads changes here; none without leader election.
    pub fn leadership(&self) -> Option<watch::Receiver<bool>> {
        self.kube.as_ref().and_then(|k| k.leads.clone())
    }

    /// Gives up the Lease, if campaigning, so that another replica takes over at once.
    pub async fn resign(&mut self) {
        if let Some(campaign) = self.kube.as_mut().and_then(|k| k.campaign.take()) {
            campaign.resign().await;
        }
    }

    /// Takes health check results; whether what is shown changed (then it is time to [`Controller::publish`]).
    pub fn record_health(&mut self, results: impl IntoIterator<Item = Observation>) -> bool {
        let mut changed = false;
        for result in results {
            // An inconclusive check says nothing about the endpoint: it counts neither way.
            match result.outcome {
                Outcome::Passed => metrics::global().health_check(true),
                Outcome::Failed(_) => metrics::global().health_check(false),
                Outcome::Inconclusive(_) => {}
            }
            changed |= self.health.record(result);
        }
        changed
    }

    /// Takes one update into the index; whether it is time to compile.
    pub fn handle(&mut self, update: Update) -> bool {
        let changed = self.take(update);
        // Readiness is a change of its own: the last thing the first table waits for (the first list of kubeconfig
        // Secrets, say, when there are none) may change nothing that is compiled, and the first table must not
        // wait for some later, unrelated change.
        changed || self.kube.as_ref().is_some_and(|k| !k.started && k.clusters.ready())
    }

    /// Takes one update into the index; whether anything that needs a compilation changed.
    fn take(&mut self, update: Update) -> bool {
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
                let changed = kube.clusters.failing(&cluster, error, unreachable);
                if changed.shown {
                    self.publish_sources();
                }
                return changed.recompile;
            }
            Update::SessionKey(key) => {
                let changed = self.affinity_key != Some(key);
                self.affinity_key = Some(key);
                return changed;
            }
            Update::Healthy { cluster } => {
                let Some(kube) = &mut self.kube else { return false };
                let changed = kube.clusters.healthy(&cluster);
                if changed.shown {
                    self.publish_sources();
                }
                return changed.recompile;
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

    /// Compiles and publishes what the index holds now: [`reconcile`], with the I/O around it.
    pub fn update(&mut self) {
        let Some(affinity_key) = self.affinity_key else { return };
        if let Some(kube) = &mut self.kube {
            if !kube.started && !kube.clusters.ready() {
                return;
            }
            kube.started = true;
            self.options.api_servers.servers = kube.clusters.api_servers();
        }
        let missing = self.kube.as_ref().map(|k| k.clusters.missing()).unwrap_or_default();
        let inputs = Inputs {
            index: &self.index,
            options: &self.options,
            held: &self.held,
            affinity_key,
            kube: self.kube.as_ref().map(|kube| KubeInputs {
                leading: kube.leads(),
                missing: &missing,
                cluster_diagnostics: kube.clusters.diagnostics(),
                ingress_address: kube.ingress_address.as_deref(),
            }),
        };
        let reconciled = reconcile(&inputs, &mut self.health);
        let leading = self.kube.as_ref().is_none_or(KubeMode::leads);
        metrics::global().compiled(reconciled.compile_time, &self.index, leading);
        self.publisher.set_port_ranges(port_ranges(&self.index, &reconciled.compiled.assignments));
        for line in ports::describe_changes(&self.assignments, &reconciled.compiled.assignments) {
            info!("{line}");
        }
        self.held = ports::held_ports(&reconciled.compiled.assignments);
        self.assignments = reconciled.compiled.assignments.clone();
        self.save_state();
        if let (Some(kube), Some(writes)) = (&self.kube, reconciled.writes) {
            kube.clusters.plan(writes);
        }
        self.compiled = Some(reconciled.compiled);
        self.show(reconciled.published, reconciled.health);
    }

    /// Publishes the last compilation again with the health known now.
    pub fn publish(&mut self) {
        let Some(compiled) = &self.compiled else { return };
        let (published, health) = apply_health(compiled, &self.index, &mut self.health);
        self.show(published, health);
    }

    /// Publishes `compiled` and `health`; logs what changed and, while leading, notes new errors as Events.
    fn show(&mut self, compiled: Compiled, health: Vec<crate::health::EndpointHealth>) {
        let leading = self.kube.as_ref().is_none_or(KubeMode::leads);
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
    pub fn save_state(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::LOCAL_CLUSTER;
    use crate::source::{crds, kube as kube_source};
    use tokio::sync::mpsc;

    /// What the run loop does with one update.
    fn step(controller: &mut Controller, update: Update) {
        if controller.handle(update) {
            controller.update();
        }
    }

    #[tokio::test]
    async fn the_first_table_follows_the_last_list_even_when_that_list_changes_nothing_compiled() {
        // A client of a loopback port nothing serves: the watches it starts fail quietly; updates come from here.
        let client = ::kube::Client::try_from(::kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let (updates, _pending) = mpsc::channel(64);
        let clusters = Clusters::start(client, kube_source::Options::default(), "berth", updates);
        let mut controller = Controller::new(Options::default(), Health::new(Duration::from_secs(60), 0).0);
        controller.start_kube(KubeMode::new(clusters, None, None), None, false);
        let snapshots = controller.subscribe();
        for (kind, _) in kube_source::builtin_resources() {
            step(&mut controller, Update::Listed { cluster: LOCAL_CLUSTER.to_string(), kind });
        }
        for (kind, _, _) in crds::OPTIONAL_KINDS {
            step(&mut controller, Update::Served { cluster: LOCAL_CLUSTER.to_string(), kind, resource: None });
        }
        assert!(snapshots.borrow().table.is_none(), "the kubeconfig Secrets are not listed yet");
        // No kubeconfig Secrets: no cluster added or removed, nothing to compile but the first table.
        step(&mut controller, Update::Kubeconfigs(Vec::new()));
        assert!(snapshots.borrow().table.is_some(), "ready once everything is listed, whatever came last");
    }
}
