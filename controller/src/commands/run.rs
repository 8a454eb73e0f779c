//! `berth run`: the controller. The source feeds the index; every change recompiles and publishes; the server
//! answers from the latest publication. One task owns the index and the publisher, so neither needs a lock.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::cli::{RunArgs, Source};
use crate::compiler::{Options, compile};
use crate::index::Index;
use crate::publish::Publisher;
use crate::source::{Snapshot, dir};
use crate::{Error, Result, server};

pub async fn run(args: RunArgs) -> Result<()> {
    let Source::Dir(root) = &args.source;

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
    };
    controller.update(first);

    let listener = TcpListener::bind(args.listen).await.map_err(|error| Error::Bind { addr: args.listen, error })?;
    let app = server::router(controller.publisher.subscribe());
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
    let result = loop {
        tokio::select! {
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

/// The index and the publisher, updated together.
struct Controller {
    index: Index,
    publisher: Publisher,
    source: String,
    options: Options,
}

impl Controller {
    fn update(&mut self, snapshot: Snapshot) {
        self.index.reset(&self.source, snapshot.objects, snapshot.diagnostics);
        let compiled = compile(&self.index, &self.options);
        let (routes, errors) = (compiled.content.http.len(), compiled.diagnostics.len());
        let outcome = self.publisher.publish(compiled);
        for diagnostic in &outcome.new_diagnostics {
            warn!("{diagnostic}");
        }
        if outcome.changed() {
            info!("serving table version {}: {routes} http routes, {errors} errors", outcome.version);
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
