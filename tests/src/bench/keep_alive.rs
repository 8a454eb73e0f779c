//! One keep-alive HTTP/1.1 connection for measuring loops: requests one after another on the same socket,
//! reconnecting after an error, the way a browser or a service client talks to an ingress.

use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use berth_tests::client::{Response, read_response};

pub struct KeepAlive {
    addr: SocketAddr,
    connection: Option<BufReader<TcpStream>>,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive { addr, connection: None }
    }

    /// `GET path` with `Host: host`; on any error the connection is dropped and the next call opens a new one.
    pub fn get(&mut self, host: &str, path: &str) -> io::Result<Response> {
        let result = self.try_get(host, path);
        if result.is_err() || result.as_ref().is_ok_and(|r| r.header("connection") == Some("close")) {
            self.connection = None;
        }
        result
    }

    fn try_get(&mut self, host: &str, path: &str) -> io::Result<Response> {
        if self.connection.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.set_nodelay(true)?;
            self.connection = Some(BufReader::new(stream));
        }
        let Some(connection) = self.connection.as_mut() else { return Err(io::ErrorKind::NotConnected.into()) };
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        connection.get_mut().write_all(request.as_bytes())?;
        read_response(connection)
    }
}
