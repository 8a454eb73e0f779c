//! Talking to TCP ports through Envoy: greetings, echoes, and connections that are closed on us.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub fn connect(port: u16) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    stream
}

/// Reads exactly `len` bytes.
pub fn read_exact(stream: &mut TcpStream, len: usize) -> io::Result<String> {
    let mut buffer = vec![0; len];
    stream.read_exact(&mut buffer)?;
    Ok(String::from_utf8_lossy(&buffer).into_owned())
}

/// Sends `message` and returns what comes back, byte for byte.
pub fn echo(stream: &mut TcpStream, message: &str) -> io::Result<String> {
    stream.write_all(message.as_bytes())?;
    read_exact(stream, message.len())
}

/// Whether a connection to `port` is closed by the other side without a byte of data.
pub fn is_closed_on_connect(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return true;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.write_all(b"hello?");
    let mut buffer = [0u8; 64];
    match stream.read(&mut buffer) {
        Ok(n) => n == 0,
        // A reset is a close too; a read timeout means the connection stayed open.
        Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
    }
}
