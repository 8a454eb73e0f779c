//! A deliberately raw HTTP/1.1 client: tests need to send exactly the headers they mean (repeated, any case,
//! spoofed), which friendly clients normalise away.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// `GET path` with `Host: host`, on a fresh connection.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> io::Result<Response> {
    request(addr, "GET", host, path, &[])
}

/// One request on a fresh connection, `Connection: close`, with `headers` sent verbatim after Host.
pub fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    request_with_body(addr, method, host, path, headers, "")
}

/// The same with a body (and its `Content-Length`).
pub fn request_with_body(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body);
    stream.write_all(head.as_bytes())?;
    read_response(&mut BufReader::new(stream))
}

/// `GET /` for `host`, sending `cookie` (a `name=value` pair) if given: the backend that answered and the
/// `name=value` of any cookie the response set. The set-cookie header must carry `Path=/` and `HttpOnly`.
pub fn get_with_cookie(envoy: SocketAddr, host: &str, cookie: Option<&str>) -> (String, Option<String>) {
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", *c)).collect();
    let response = request(envoy, "GET", host, "/", &headers).unwrap_or_else(|e| panic!("GET {host}: {e}"));
    assert_eq!(response.status, 200, "{response:?}");
    let set = response.header("set-cookie").map(|value| {
        let mut parts = value.split(';').map(str::trim);
        let pair = parts.next().unwrap_or_default().to_string();
        let attributes: Vec<&str> = parts.collect();
        assert_eq!(attributes, ["Path=/", "HttpOnly"], "{value}");
        pair
    });
    (response.header("x-backend").unwrap_or_default().to_string(), set)
}

/// Reads one response (status line, headers, body) from `reader`, leaving the connection at the next one.
pub fn read_response(reader: &mut impl BufRead) -> io::Result<Response> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad(&line))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').ok_or_else(|| bad(trimmed))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut response = Response { status, headers, body: String::new() };
    let mut body = Vec::new();
    if response.header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("chunk size"))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = response.header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    response.body = String::from_utf8_lossy(&body).into_owned();
    Ok(response)
}
