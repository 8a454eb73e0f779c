//! Loopback backends fast enough not to be what a benchmark measures: a fixed HTTP/1.1 answer per request (the
//! test backend parses headers line by line into strings), and a TCP echo, on a runtime of their own.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A runtime with `threads` workers for backends, kept for the whole benchmark.
pub fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?)
}

/// Answers every GET with 200, `x-backend: <name>` and the body `ok`, on a free loopback port.
pub fn http(runtime: &tokio::runtime::Runtime, name: &str) -> anyhow::Result<SocketAddr> {
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let response: &'static [u8] =
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-backend: {name}\r\ncontent-length: 2\r\n\r\nok")
            .into_bytes()
            .leak();
    runtime.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve_http(stream, response));
        }
    });
    Ok(addr)
}

/// Requests without bodies (what a benchmark sends): one answer per blank line ending a header block.
async fn serve_http(mut stream: TcpStream, response: &'static [u8]) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut filled = 0;
    loop {
        let Ok(n) = stream.read(&mut buffer[filled..]).await else { return };
        if n == 0 {
            return;
        }
        filled += n;
        let mut answers = 0;
        let mut start = 0;
        while let Some(end) = find(&buffer[start..filled], b"\r\n\r\n") {
            answers += 1;
            start += end + 4;
        }
        buffer.copy_within(start..filled, 0);
        filled -= start;
        if filled == buffer.len() {
            return; // a header block larger than the buffer: not a benchmark request
        }
        let out: Vec<u8> = response.repeat(answers);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Echoes every byte back, on a free loopback port.
pub fn echo(runtime: &tokio::runtime::Runtime) -> anyhow::Result<SocketAddr> {
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    runtime.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    Ok(addr)
}
