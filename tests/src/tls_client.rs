//! A TLS client for TLS passthrough tests (rustls, blocking): connect to a loopback port, send a server name (or
//! none), verify the certificate against the test CA, and tell a proxy's refusal from a certificate problem.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::tls_backend::{TestCa, provider};

/// A finished handshake.
pub struct TlsClient {
    stream: StreamOwned<ClientConnection, TcpStream>,
}

/// Connects to `127.0.0.1:port` and completes a handshake that sends `server_name` as SNI (`None`: no SNI) and
/// requires a certificate from `ca` valid for `verify_as` (the server name, when there is one).
pub fn handshake(port: u16, ca: &TestCa, server_name: Option<&str>, verify_as: &str) -> io::Result<TlsClient> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    config.enable_sni = server_name.is_some();
    let name = ServerName::try_from(server_name.unwrap_or(verify_as).to_string()).map_err(io::Error::other)?;
    let connection = ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(TlsClient { stream })
}

/// Whether a handshake failed because the other side closed (or reset) the connection, as a proxy refusing it
/// does; a certificate the client rejects is a different failure.
pub fn closed_by_peer(result: &io::Result<TlsClient>) -> bool {
    matches!(result, Err(e) if matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    ))
}

impl TlsClient {
    /// The certificate the server presented (the end entity's).
    pub fn peer_certificate(&self) -> Option<CertificateDer<'static>> {
        self.stream.conn.peer_certificates()?.first().map(|c| c.clone().into_owned())
    }

    pub fn read_exact(&mut self, len: usize) -> io::Result<String> {
        let mut buffer = vec![0; len];
        self.stream.read_exact(&mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }

    /// Sends `message` and returns what comes back, byte for byte.
    pub fn echo(&mut self, message: &str) -> io::Result<String> {
        self.stream.write_all(message.as_bytes())?;
        self.stream.flush()?;
        self.read_exact(message.len())
    }
}
