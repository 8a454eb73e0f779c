//! Loopback TLS backends for TLS passthrough tests: a test CA made at test time, and servers presenting their own
//! certificates from it that greet after the handshake, then echo. A proxy that passes TLS through leaves the
//! client talking to the backend itself: its certificate, its bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use crate::backend::{Serving, runtime};
use crate::tcp_backend::greet_then_echo;

/// A certificate authority made for one test: it signs the backends' certificates, and clients trust it alone.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub certificate: CertificateDer<'static>,
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "berth test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let certificate = params.self_signed(&key).expect("CA certificate").der().clone();
        TestCa { issuer: Issuer::new(params, key), certificate }
    }

    /// A server certificate for `names` (DNS names; `*.example.com` allowed) with common name `common_name`, and
    /// its key.
    pub fn server_certificate(
        &self,
        common_name: &str,
        names: &[&str],
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let certificate = params.signed_by(&key, &self.issuer).expect("server certificate").der().clone();
        (certificate, PrivateKeyDer::from(key))
    }

    /// The roots a client of this CA trusts: this CA only.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.certificate.clone()).expect("add the test CA");
        roots
    }
}

/// The TLS provider of every test server and client: ring, as the rest of the workspace uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub struct TlsBackend {
    pub addr: SocketAddr,
    /// The certificate it presents.
    pub certificate: CertificateDer<'static>,
    connections: Arc<AtomicU64>,
    _server: Serving,
}

impl TlsBackend {
    /// A TLS server on a free loopback port presenting a certificate from `ca` for `names` (common name
    /// `greeting`, trimmed), which sends `greeting` once the handshake is done and then echoes.
    pub fn start(ca: &TestCa, greeting: &str, names: &[&str]) -> TlsBackend {
        let (certificate, key) = ca.server_certificate(greeting.trim(), names);
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![certificate.clone()], key)
            .expect("server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tls backend");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        let greeting: Arc<[u8]> = Arc::from(greeting.as_bytes());
        let server = runtime().spawn(async move {
            let Ok(listener) = TcpListener::from_std(listener) else { return };
            let mut open = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, greeting, counter) = (acceptor.clone(), greeting.clone(), counter.clone());
                open.spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else { return };
                    counter.fetch_add(1, Ordering::SeqCst);
                    greet_then_echo(stream, &greeting).await;
                });
            }
        });
        TlsBackend { addr, certificate, connections, _server: Serving(server) }
    }

    /// TLS sessions established so far (a bare TCP connection, such as the controller's health check, does not
    /// count).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}
