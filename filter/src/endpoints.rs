//! What the HTTP, TCP and TLS filters share about a route's endpoints: the next one in rotation that is not out of
//! it, and the words a log line uses when there is none.

use std::net::SocketAddr;

use berth_table::{Backend, Endpoint, choose_endpoint, choose_endpoint_where};

/// The next endpoint of a route in rotation, skipping the `ejected` ones; `counter` counts the route's choices
/// (the input of [`choose_endpoint`]). `None` when the route has no endpoint left.
pub fn next_endpoint<'a>(backends: &'a [Backend], counter: &mut u64, ejected: &[SocketAddr]) -> Option<&'a Endpoint> {
    let n = *counter;
    *counter = n.wrapping_add(1);
    match ejected {
        [] => choose_endpoint(backends, n),
        _ => choose_endpoint_where(backends, n, |endpoint| !ejected.contains(&endpoint.address)),
    }
}

/// Why a route with no endpoint to offer has none, to follow its name in a log line.
pub fn why_none(backends: &[Backend]) -> &'static str {
    match backends.iter().any(|backend| !backend.endpoints.is_empty()) {
        true => "has every endpoint out of rotation after failing",
        false => "has no endpoint",
    }
}

/// A route's backends for a log line: `backends ns/a:80, ns/b:80`.
pub fn describe_backends(backends: &[Backend]) -> String {
    if backends.is_empty() {
        return "no backends".into();
    }
    let names: Vec<&str> = backends.iter().map(|b| b.service.as_str()).collect();
    format!("backends {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(service: &str, ports: &[u16]) -> Backend {
        Backend {
            service: service.into(),
            weight: 1,
            endpoints: ports.iter().map(|p| Endpoint { address: ([127, 0, 0, 1], *p).into() }).collect(),
        }
    }

    #[test]
    fn rotates_skipping_the_ejected_and_says_why_none_is_left() {
        let backends = [backend("ns/a:80", &[1, 2])];
        let mut counter = 0;
        let picks: Vec<u16> =
            (0..4).filter_map(|_| next_endpoint(&backends, &mut counter, &[])).map(|e| e.address.port()).collect();
        assert_eq!(picks.iter().filter(|p| **p == 1).count(), 2, "{picks:?}");
        let one: SocketAddr = ([127, 0, 0, 1], 1).into();
        for _ in 0..4 {
            assert_eq!(next_endpoint(&backends, &mut counter, &[one]).map(|e| e.address.port()), Some(2));
        }
        let two: SocketAddr = ([127, 0, 0, 1], 2).into();
        assert_eq!(next_endpoint(&backends, &mut counter, &[one, two]), None);
        assert_eq!(why_none(&backends), "has every endpoint out of rotation after failing");
        assert_eq!(why_none(&[backend("ns/b:80", &[])]), "has no endpoint");
        assert_eq!(describe_backends(&[backend("ns/a:80", &[]), backend("ns/b:80", &[])]), "backends ns/a:80, ns/b:80");
        assert_eq!(describe_backends(&[]), "no backends");
    }
}
