//! HTTPS (`Options::tls`, `--tls`): the kubeconfig trusts the server's own CA; kube-rs lists and watches through
//! it; a client trusting another CA is refused; extra names are in the certificate for SNI; a TLS directory keeps
//! the CA across restarts.

// Helpers below fail the test on any error, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use berth_kube_api::{KubeApi, Options, TlsOptions};
use common::*;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

fn tls(names: &[&str], dir: Option<&std::path::Path>) -> Options {
    let tls = TlsOptions { names: names.iter().map(ToString::to_string).collect(), dir: dir.map(Into::into) };
    Options { tls: Some(tls), ..fast() }
}

#[tokio::test]
async fn kube_rs_lists_and_watches_over_https_trusting_the_kubeconfigs_ca() {
    let f = start_with(tls(&[], None)).await;
    assert!(f.api.url().starts_with("https://127.0.0.1:"), "{}", f.api.url());
    let kubeconfig = std::fs::read_to_string(&f.kubeconfig).unwrap();
    assert!(kubeconfig.contains("server: https://") && kubeconfig.contains("certificate-authority-data: "));

    let namespaces = Api::<Namespace>::all(f.client.clone()).list(&Default::default()).await.unwrap();
    assert!(namespaces.items.iter().any(|ns| ns.metadata.name.as_deref() == Some("kube-system")));

    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), "default");
    let mut events = watcher::watcher(cms.clone(), watcher::Config::default()).boxed();
    cms.create(&PostParams::default(), &cm("over-tls", &[])).await.unwrap();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) = event
                && cm.metadata.name.as_deref() == Some("over-tls")
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "the watch delivers over TLS");
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused() {
    let f = start_with(tls(&[], None)).await;
    let other = KubeApi::start(tls(&[], None)).await.unwrap();
    // This server's address, the other server's CA.
    let wrong = f.dir.path().join("wrong-ca");
    std::fs::write(
        &wrong,
        other.kubeconfig().replace(&other.addr().port().to_string(), &f.api.addr().port().to_string()),
    )
    .unwrap();
    let client = client_without_retries(&wrong).await;
    let error = Api::<Namespace>::all(client).list(&Default::default()).await.unwrap_err();
    let text = format!("{error:?}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

/// A TLS handshake with `server_name` as SNI, trusting `ca_pem`: what a client reaching the server through an SNI
/// proxy under that name does.
async fn handshake(addr: std::net::SocketAddr, ca_pem: &str, server_name: &str) -> Result<(), std::io::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    connector.connect(ServerName::try_from(server_name.to_string()).unwrap(), tcp).await.map(drop)
}

#[tokio::test]
async fn the_certificate_holds_loopback_localhost_and_the_extra_names() {
    let api = KubeApi::start(tls(&["api.c1.example.com"], None)).await.unwrap();
    let ca = api.ca_pem().unwrap().to_string();
    for name in ["api.c1.example.com", "localhost", "127.0.0.1"] {
        handshake(api.addr(), &ca, name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(handshake(api.addr(), &ca, "api.c2.example.com").await.is_err(), "a name not in the certificate");
}

#[tokio::test]
async fn a_tls_directory_keeps_the_ca_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let first = KubeApi::start(tls(&[], Some(&dir.path().join("tls")))).await.unwrap();
    let (addr, ca) = (first.addr(), first.ca_pem().unwrap().to_string());
    let kubeconfig = dir.path().join("kubeconfig");
    first.write_kubeconfig(&kubeconfig).unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("tls/ca.pem")).unwrap(), ca);
    let snapshot = first.shutdown().await;

    let options = Options { listen: addr, snapshot: Some(snapshot), ..tls(&[], Some(&dir.path().join("tls"))) };
    let second = KubeApi::start(options).await.unwrap();
    assert_eq!(second.ca_pem(), Some(ca.as_str()));
    // A client made from the first server's kubeconfig still trusts the second.
    let client = client_for(&kubeconfig).await;
    Api::<Namespace>::all(client).list(&Default::default()).await.unwrap();
}
