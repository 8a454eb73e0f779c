//! `berth-kube-api`: the Kubernetes API test server as a process, for tests that start and stop it.

use anyhow::Context;
use berth_kube_api::{KubeApi, Options, TlsOptions};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A Kubernetes API test server on loopback (HTTP, or HTTPS with --tls), for kubectl and kube-rs in tests."
)]
struct Cli {
    /// Loopback address to serve on; port 0 picks a free one (printed on stdout).
    #[arg(long, env = "BERTH_KUBE_API_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write a kubeconfig pointing at this server here.
    #[arg(long, env = "BERTH_KUBE_API_KUBECONFIG_OUT")]
    kubeconfig_out: Option<PathBuf>,
    /// Keep objects, resourceVersions and watch history in this file across restarts (read at start, written
    /// after every change).
    #[arg(long, env = "BERTH_KUBE_API_STATE")]
    state: Option<PathBuf>,
    /// Create the objects in these YAML files at start (Namespaces and CRDs first).
    #[arg(long, env = "BERTH_KUBE_API_LOAD", value_delimiter = ',')]
    load: Vec<PathBuf>,
    /// Changes kept for watches to replay; older resourceVersions get 410 Gone.
    #[arg(long, env = "BERTH_KUBE_API_HISTORY", default_value_t = 10_000)]
    history: usize,
    /// Milliseconds between watch BOOKMARKs.
    #[arg(long, env = "BERTH_KUBE_API_BOOKMARK_MS", default_value_t = 1000)]
    bookmark_ms: u64,
    /// Serve only legacy discovery (clients fall back from aggregated discovery).
    #[arg(long, env = "BERTH_KUBE_API_NO_AGGREGATED_DISCOVERY", default_value_t = false)]
    no_aggregated_discovery: bool,
    /// Serve HTTPS: a CA and a server certificate (for 127.0.0.1, localhost and every --tls-name) are made at
    /// start, and the kubeconfig trusts the CA (certificate-authority-data).
    #[arg(long, env = "BERTH_KUBE_API_TLS", default_value_t = false)]
    tls: bool,
    /// With --tls: another name (or IP) the server certificate is valid for; repeat or comma-separate.
    #[arg(long, env = "BERTH_KUBE_API_TLS_NAME", value_delimiter = ',', requires = "tls")]
    tls_name: Vec<String>,
    /// With --tls: keep ca.pem, server.pem and server-key.pem in this directory, reusing them when present, so
    /// a restarted server keeps the CA its clients trust.
    #[arg(long, env = "BERTH_KUBE_API_TLS_DIR", requires = "tls")]
    tls_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let opts = Options {
        listen: cli.listen,
        state_file: cli.state.clone(),
        history_limit: cli.history,
        bookmark_interval: Duration::from_millis(cli.bookmark_ms.max(1)),
        aggregated_discovery: !cli.no_aggregated_discovery,
        tls: cli.tls.then(|| TlsOptions { names: cli.tls_name.clone(), dir: cli.tls_dir.clone() }),
        ..Options::default()
    };
    let api = KubeApi::start(opts).await.with_context(|| format!("cannot serve on {}", cli.listen))?;
    for path in &cli.load {
        let yaml = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        api.create_from_yaml(&yaml).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
    }
    if let Some(path) = &cli.kubeconfig_out {
        api.write_kubeconfig(path).with_context(|| format!("cannot write the kubeconfig to {}", path.display()))?;
    }
    // The harness waits for this line.
    println!("listening on {}", api.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    api.shutdown().await;
    Ok(())
}
