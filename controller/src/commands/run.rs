//! `berth run`: the controller. The source feeds the index; every change recompiles and publishes; the server
//! answers from the latest publication. One task owns the index, the ports handed out and the publisher, so none
//! needs a lock.
//!
//! Ports handed out to tcp routes are written to the state file (`--state`) before the table that uses them is
//! published; in directory mode that file, `berth routes` and `/v1/routes` are where addresses show, never the
//! user's YAML. A failed write is logged and retried; the table is served anyway.

use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::cli::{RunArgs, Source};
use crate::compiler::{Assignments, HeldPorts, Options, compile, ports};
use crate::index::Index;
use crate::publish::Publisher;
use crate::source::{Snapshot, dir};
use crate::{Error, Result, server, state};

/// How often a failed write of the state file is tried again.
const STATE_RETRY: Duration = Duration::from_secs(5);

pub async fn run(args: RunArgs) -> Result<()> {
    let Source::Dir(root) = &args.source;

    // Before anything is served: a state file that cannot be read must not turn into every port handed out anew.
    let held = match &args.state {
        Some(path) => {
            let held = state::load(path)?;
            info!(state = %path.display(), ports = held.len(), "loaded the ports handed out before");
            held
        }
        None => HeldPorts::new(),
    };

    // A clear error for a wrong path before the watcher gives a vaguer one.
    std::fs::metadata(root).map_err(|error| Error::Read { path: root.clone(), error })?;
    // Watch before the first read, so a change made in between is not missed.
    let (updates_tx, mut updates) = mpsc::channel(4);
    let watcher = dir::watch(root.clone(), updates_tx)?;
    let first = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || dir::load(&root))
            .await
            .map_err(|e| Error::Serve(std::io::Error::other(e)))??
    };

    let mut controller = Controller {
        index: Index::new(),
        publisher: Publisher::starting_now(),
        source: args.source.to_string(),
        options: Options { backends: args.backends },
        assignments: ports::from_held(&held),
        held,
        state: args.state.clone(),
        saved: None,
    };
    controller.update(first);
    // At start a state file that cannot be written is fatal, like one that cannot be read.
    if let (Some(path), None) = (&controller.state, &controller.saved) {
        state::save(path, &controller.held)?;
    }

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
    let result = loop {
        tokio::select! {
            _ = retry.tick() => controller.save_state(),
            () = &mut shutdown => break Ok(()),
            served = &mut server => break match served {
                Ok(result) => result.map_err(Error::Serve),
                Err(panicked) => Err(Error::Serve(std::io::Error::other(panicked))),
            },
            snapshot = updates.recv() => match snapshot {
                Some(snapshot) => controller.update(snapshot),
                None => break Ok(()),
            },
        }
    };
    info!("shutting down");
    // Dropping the publisher ends every long poll at once; then the server finishes gracefully.
    drop(controller);
    let _ = stop_tx.send(());
    if !server.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
    watcher.abort();
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
    source: String,
    options: Options,
    /// The ports handed out by the last compilation (at start: those of the state file): the next one keeps them.
    held: HeldPorts,
    assignments: Assignments,
    state: Option<PathBuf>,
    /// What the state file holds, once written by this process; differs from `held` while a write is failing.
    saved: Option<HeldPorts>,
}

impl Controller {
    fn update(&mut self, snapshot: Snapshot) {
        self.index.reset(&self.source, snapshot.objects, snapshot.diagnostics);
        let compiled = compile(&self.index, &self.options, &self.held);
        for line in ports::describe_changes(&self.assignments, &compiled.assignments) {
            info!("{line}");
        }
        self.held = ports::held_ports(&compiled.assignments);
        self.assignments = compiled.assignments.clone();
        self.save_state();

        let (http, tcp) = (compiled.content.http.len(), compiled.content.tcp.len());
        let errors = compiled.diagnostics.iter().filter(|d| !d.is_warning()).count();
        let outcome = self.publisher.publish(compiled);
        for diagnostic in &outcome.new_diagnostics {
            warn!("{diagnostic}");
        }
        if outcome.changed() {
            info!("serving table version {}: {http} http routes, {tcp} tcp routes, {errors} errors", outcome.version);
        }
    }

    /// Writes the ports handed out to the state file, when there is one and it does not hold them yet.
    fn save_state(&mut self) {
        let Some(path) = &self.state else { return };
        if self.saved.as_ref() == Some(&self.held) {
            return;
        }
        match state::save(path, &self.held) {
            Ok(()) => self.saved = Some(self.held.clone()),
            Err(e) => error!("{e}; trying again every {}s", STATE_RETRY.as_secs()),
        }
    }
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
