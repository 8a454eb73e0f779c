//! HTTPS for the test server (`--tls`), as an in-cluster API server serves it: a CA and a server certificate
//! for `127.0.0.1`, `localhost` and any extra names, made at start (or read back from a directory, so a restarted
//! server keeps the CA its clients trust), and a listener that hands axum finished TLS connections.
//!
//! Handshakes run in their own tasks: a client that connects and says nothing holds up no one else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

/// How to serve TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Names the server certificate is also valid for, besides `127.0.0.1` and `localhost` (e.g. the name a test
    /// reaches the server by through a proxy, by SNI). IP addresses become IP SANs.
    pub names: Vec<String>,
    /// Keep `ca.pem`, `server.pem` and `server-key.pem` here: read when all three exist, else made and written.
    /// None: made in memory at every start.
    pub dir: Option<PathBuf>,
}

/// The certificates a server presents and its clients trust.
pub struct Certificates {
    /// The CA's certificate, PEM: what a kubeconfig's `certificate-authority-data` holds (base64 of it).
    pub ca_pem: String,
    server_pem: String,
    server_key_pem: String,
}

const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "server.pem";
const KEY_FILE: &str = "server-key.pem";

impl Certificates {
    /// Reads them from `options.dir` when it holds them; otherwise makes new ones (and writes them there).
    pub fn load_or_make(options: &TlsOptions) -> std::io::Result<Certificates> {
        if let Some(dir) = &options.dir
            && let Some(existing) = Certificates::read(dir)?
        {
            return Ok(existing);
        }
        let made = Certificates::make(&options.names).map_err(std::io::Error::other)?;
        if let Some(dir) = &options.dir {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join(CA_FILE), &made.ca_pem)?;
            std::fs::write(dir.join(CERT_FILE), &made.server_pem)?;
            std::fs::write(dir.join(KEY_FILE), &made.server_key_pem)?;
        }
        Ok(made)
    }

    fn read(dir: &Path) -> std::io::Result<Option<Certificates>> {
        let read = |name: &str| match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        match (read(CA_FILE)?, read(CERT_FILE)?, read(KEY_FILE)?) {
            (Some(ca_pem), Some(server_pem), Some(server_key_pem)) => {
                Ok(Some(Certificates { ca_pem, server_pem, server_key_pem }))
            }
            _ => Ok(None),
        }
    }

    fn make(names: &[String]) -> Result<Certificates, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "berth-kube-api test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca, ca_key);

        let mut sans = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        sans.extend(names.iter().filter(|n| !sans.contains(n)).cloned().collect::<Vec<_>>());
        let key = KeyPair::generate()?;
        let mut server = CertificateParams::new(sans)?;
        server.distinguished_name.push(DnType::CommonName, "berth-kube-api");
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server_pem = server.signed_by(&key, &issuer)?.pem();
        Ok(Certificates { ca_pem, server_pem, server_key_pem: key.serialize_pem() })
    }

    /// A rustls server configuration presenting the server certificate (and the CA, as its chain). HTTP/1.1
    /// only: the server's watch streams are HTTP/1.1 chunked responses.
    fn server_config(&self) -> std::io::Result<ServerConfig> {
        let invalid = |what: &str, e: &dyn std::fmt::Display| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what}: {e}"))
        };
        let mut chain =
            vec![CertificateDer::from_pem_slice(self.server_pem.as_bytes()).map_err(|e| invalid(CERT_FILE, &e))?];
        chain.push(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).map_err(|e| invalid(CA_FILE, &e))?);
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).map_err(|e| invalid(KEY_FILE, &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("TLS versions", &e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| invalid("the server certificate", &e))?;
        Ok(config)
    }
}

/// A listener for `axum::serve` whose connections are TLS, handshakes done.
pub struct TlsListener {
    addr: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor_task: JoinHandle<()>,
}

/// A client gets this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    pub fn new(listener: TcpListener, certificates: &Certificates) -> std::io::Result<TlsListener> {
        let addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(certificates.server_config()?));
        let (tx, accepted) = mpsc::channel(64);
        let acceptor_task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { addr, accepted, acceptor_task })
    }
}

impl Drop for TlsListener {
    /// The accepting task owns the socket: ending it frees the port (a restarted server binds it again).
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accepting task is gone (only when dropped): nothing will ever connect again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}
