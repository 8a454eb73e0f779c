//! `berth run`: wires the controller's tasks. The sources feed updates to one run loop, which owns the
//! [`Controller`] (index, ports, publisher; see [`crate::controller`] for the modes and what is published when);
//! the server answers from the latest publication; health check results and leadership changes arrive in the same
//! loop.
//!
//! Many clusters: the local one and one per kubeconfig Secret ([`crate::clusters`]) in Kubernetes mode,
//! the top level and one per subdirectory ([`crate::source::dir_clusters`]) in directory mode. All of them feed the
//! one index and the one table.
//!
//! With `--leader-elect`, replicas campaign for a Lease ([`crate::leader`]). All of them make session cookies with
//! the key of one Secret ([`crate::leader::session_key`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::info;

use crate::cli::{RunArgs, Source};
use crate::clusters::Clusters;
use crate::compiler::Options;
use crate::controller::{Controller, KubeMode, STATE_RETRY};
use crate::health::Health;
use crate::metrics::Trigger;
use crate::source::dir_clusters::Splitter;
use crate::source::{Update, dir, kube};
use crate::{Error, Result, leader, metrics, serve, server, status_page};

pub async fn run(args: RunArgs) -> Result<()> {
    let (updates_tx, mut updates) = mpsc::channel(256);
    let (health, mut health_results) = Health::new(args.health_interval, args.health_panic_threshold);
    let mut tasks = Vec::new();
    let options = Options { backends: args.backends, tls_port: args.tls_port, ..Options::default() };
    let mut controller = Controller::new(options, health);
    match &args.source {
        Source::Dir(root) => {
            // Before anything is served: a state file that cannot be read must not turn into every port handed
            // out anew.
            if let Some(path) = &args.state {
                controller.load_state(path)?;
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
            controller.save_state_at_start()?;
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
                let namespace = args.leader.leader_elect_namespace.clone();
                tasks.push(leader::session_key::spawn(client.clone(), namespace, updates_tx.clone()));
            }
            let clusters = Clusters::start(client, options, &args.cluster_secrets_namespace, updates_tx.clone());
            let kube = KubeMode::new(clusters, campaign, args.ingress_address.clone());
            controller.start_kube(kube, args.api_domain.clone(), args.leader.leader_elect);
        }
    }
    drop(updates_tx);

    let listener = TcpListener::bind(args.listen).await.map_err(|error| Error::Bind { addr: args.listen, error })?;
    let app = server::router(controller.subscribe())
        .merge(server::filter_router(filter_module(&args)?))
        .merge(metrics::router(controller.subscribe()))
        .merge(status_page::router(controller.subscribe()));
    info!(listen = %args.listen, source = %args.source, "berth controller started");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let limits = args.api.limits();
    let mut server = tokio::spawn(async move {
        let stop = async {
            let _ = stop_rx.await;
        };
        serve::serve(listener, app, limits, stop).await
    });

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut retry = tokio::time::interval(STATE_RETRY);
    let mut leadership = controller.leadership();
    let result = loop {
        tokio::select! {
            _ = retry.tick() => controller.save_state(),
            () = leadership_change(&mut leadership) => controller.update(),
            Some(result) = health_results.recv() => {
                let seen = Instant::now();
                let waiting = std::iter::from_fn(|| health_results.try_recv().ok());
                if controller.record_health(std::iter::once(result).chain(waiting)) {
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
    controller.resign().await;
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
