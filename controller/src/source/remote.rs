//! Reaching the clusters that kubeconfig Secrets add: the watch of those Secrets in the controller's namespace, and
//! a client (with its API server's address) from one Secret's kubeconfig. [`crate::clusters`] decides what to do
//! with them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use super::kubeconfig_secret::{KubeconfigSecret, refuse};
use super::{Update, kube as kube_source};

/// A client for a cluster, and where its API server is.
#[derive(Clone)]
pub struct Connection {
    pub client: Client,
    /// The kubeconfig's server URL.
    pub server: String,
    /// Its host and port resolved to an address, for `--api-domain`; why not, when it could not be.
    pub address: Result<SocketAddr, String>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").field("server", &self.server).field("address", &self.address).finish()
    }
}

/// A client from the kubeconfig of a Secret, and its API server's address.
pub async fn connect(kubeconfig: &[u8]) -> Result<Connection, String> {
    let text = std::str::from_utf8(kubeconfig).map_err(|_| "the kubeconfig is not UTF-8 text".to_string())?;
    let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| format!("the kubeconfig cannot be read: {e}"))?;
    if let Some(reason) = refuse(&kubeconfig) {
        return Err(reason);
    }
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("the kubeconfig cannot be used: {e}"))?;
    let server = config.cluster_url.to_string();
    let address = resolve(&config.cluster_url).await;
    let client = kube_source::client_from(config).map_err(|e| e.to_string())?;
    Ok(Connection { client, server, address })
}

/// The address of the API server at `url` (`https://api.alpha.example.com:6443`).
async fn resolve(url: &axum::http::Uri) -> Result<SocketAddr, String> {
    let host = url.host().ok_or_else(|| format!("the server {url} has no host"))?;
    let port = url.port_u16().unwrap_or(if url.scheme_str() == Some("http") { 80 } else { 443 });
    let mut addresses = tokio::net::lookup_host(format!("{host}:{port}"))
        .await
        .map_err(|e| format!("cannot resolve the server {host}: {e}"))?;
    addresses.next().ok_or_else(|| format!("the server {host} resolves to no address"))
}

/// Watches the Secrets of `namespace` in the local cluster; sends every kubeconfig Secret, all of them, once the
/// first list is in and after every change. Other Secrets are not kept.
pub fn spawn_secret_watch(client: &Client, namespace: &str, updates: &mpsc::Sender<Update>) -> JoinHandle<()> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let updates = updates.clone();
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
        let mut known: BTreeMap<String, KubeconfigSecret> = BTreeMap::new();
        let mut listing: Option<BTreeMap<String, KubeconfigSecret>> = None;
        let mut listed = false;
        while let Some(item) = stream.next().await {
            match item {
                Ok(Event::Init) => {
                    listing = Some(BTreeMap::new());
                    continue;
                }
                Ok(Event::InitApply(secret)) => {
                    if let Some(found) = KubeconfigSecret::from_secret(&secret) {
                        listing.get_or_insert_with(BTreeMap::new).insert(found.name.clone(), found);
                    }
                    continue;
                }
                Ok(Event::InitDone) => {
                    known = listing.take().unwrap_or_default();
                    listed = true;
                }
                Ok(Event::Apply(secret)) => {
                    let Some(found) = KubeconfigSecret::from_secret(&secret) else { continue };
                    known.insert(found.name.clone(), found);
                }
                Ok(Event::Delete(secret)) => {
                    let Some(found) = KubeconfigSecret::from_secret(&secret) else { continue };
                    known.remove(&found.name);
                }
                Err(error) => {
                    warn!(%error, "watching kubeconfig Secrets failed; resuming with backoff");
                    // Until they can be listed there are no other clusters: the local one must not wait for them
                    // (a Role without the Secrets rule would otherwise keep the controller from ever being ready).
                    if listed {
                        continue;
                    }
                    listed = true;
                }
            }
            if updates.send(Update::Kubeconfigs(known.values().cloned().collect())).await.is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kubeconfig_that_is_not_one_says_so() {
        let error = connect(b"{not yaml: [").await.unwrap_err();
        assert!(error.starts_with("the kubeconfig cannot be read"), "{error}");
    }
}
