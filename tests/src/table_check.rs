//! A second, deliberately naive reading of the matching rules (README "How requests are matched") and the
//! invariants every routing decision must keep, for the table's property tests and its cargo-fuzz target
//! (`table/fuzz`, which includes this file by path: it depends on `berth_table` only).
//!
//! The reference scans every route on every request: slow, but simple enough to check by reading, so that the fast
//! `HttpRouter` can be compared with it on any table, including tables decoded from garbage.

use berth_table::{
    AffinityKey, Backend, ClientAffinity, HttpRouter, PathMatch, StickyEndpoints, Table, TcpRouter, choose_endpoint,
};

/// The route the README's rules pick for `host` and `path`, found by brute force.
pub fn reference_match(table: &Table, host: &str, path: &str) -> Option<usize> {
    let host = reference_host(host);
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let routes = || table.http.iter().enumerate();
    // 1. Host: exact, else the longest `*.suffix` with at least one character before it, else `*`.
    let exact = routes().any(|(_, r)| r.host == host);
    let wildcard = routes()
        .filter_map(|(_, r)| r.host.strip_prefix('*').filter(|s| !s.is_empty()))
        .filter(|suffix| host.len() > suffix.len() && host.ends_with(suffix))
        .max_by_key(|suffix| suffix.len());
    let chosen: String = if exact {
        host.clone()
    } else if let Some(suffix) = wildcard {
        format!("*{suffix}")
    } else {
        "*".to_string()
    };
    let candidates: Vec<(usize, &PathMatch)> =
        routes().filter(|(_, r)| r.host == chosen).map(|(i, r)| (i, &r.path)).collect();
    // 2. Path: the first exact match, else the longest matching prefix; 3. ties to the first listed.
    if let Some((i, _)) = candidates.iter().find(|(_, p)| matches!(p, PathMatch::Exact(e) if e == path)) {
        return Some(*i);
    }
    let mut best: Option<(usize, usize)> = None;
    for (i, pattern) in candidates {
        let hit = match pattern {
            PathMatch::Exact(_) => false,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Segments(p) => {
                let p = p.trim_end_matches('/');
                path == p || path.starts_with(&format!("{p}/"))
            }
        };
        let length = pattern.as_str().len();
        if hit && best.is_none_or(|(_, longest)| length > longest) {
            best = Some((i, length));
        }
    }
    best.map(|(i, _)| i)
}

/// Lower case, without a `:port` (digits only) and one trailing dot; an IPv6 literal keeps its brackets.
fn reference_host(host: &str) -> String {
    let host = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(colon) if host[colon + 1..].chars().all(|c| c.is_ascii_digit()) => &host[..colon],
            _ => host,
        }
    };
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Routes `host` + `path` with the real router and checks the decision against the reference and the table:
/// the same route, and an endpoint (for request number `n`) that the route's own backends list. Returns what
/// was wrong.
pub fn check_http(table: &Table, router: &HttpRouter, host: &str, path: &str, n: u64) -> Result<(), String> {
    let got = router.match_http(host, path).map(|id| id.0);
    let expected = reference_match(table, host, path);
    if got != expected {
        return Err(format!("{host:?} {path:?}: router chose route {got:?}, the rules say {expected:?}"));
    }
    let Some(index) = got else { return Ok(()) };
    let route = table.http.get(index).ok_or_else(|| format!("route {index} is not in the table"))?;
    check_endpoint(&route.backends, n).map_err(|e| format!("{host:?} {path:?} → route {index}: {e}"))
}

/// The endpoint chosen for the `n`th connection on `port` is one of the table's route for that port.
pub fn check_tcp(table: &Table, router: &TcpRouter, port: u16, n: u64) -> Result<(), String> {
    let got = router.match_port(port).map(|id| id.0);
    let expected = table.tcp.iter().position(|r| r.port == port);
    if got != expected {
        return Err(format!("port {port}: router chose route {got:?}, the first route for it is {expected:?}"));
    }
    let Some(index) = got else { return Ok(()) };
    let route = table.tcp.get(index).ok_or_else(|| format!("tcp route {index} is not in the table"))?;
    check_endpoint(&route.backends, n).map_err(|e| format!("port {port} → tcp route {index}: {e}"))
}

/// `choose_endpoint` returns one of `backends`' endpoints, and one whenever any backend has an endpoint.
pub fn check_endpoint(backends: &[Backend], n: u64) -> Result<(), String> {
    let any = backends.iter().any(|b| !b.endpoints.is_empty());
    match choose_endpoint(backends, n) {
        Some(endpoint) if backends.iter().any(|b| b.endpoints.iter().any(|e| std::ptr::eq(e, endpoint))) => Ok(()),
        Some(endpoint) => Err(format!("endpoint {} is not one of the route's", endpoint.address)),
        None if any => Err(format!("no endpoint chosen for request {n} although the route has some")),
        None => Ok(()),
    }
}

/// A session cookie can only keep a client on an endpoint of its own route: whatever `cookie_value` says (a
/// forgery, another route's endpoint, an endpoint the table never had), the sticky lookup of route `index` finds
/// nothing or one of that route's endpoints; and each of the route's endpoints is found by its own value.
pub fn check_sticky(table: &Table, key: &AffinityKey, index: usize, cookie_value: &str) -> Result<(), String> {
    let route = table.http.get(index).ok_or_else(|| format!("route {index} is not in the table"))?;
    let sticky = StickyEndpoints::new(key, &route.backends);
    let own = |address| route.backends.iter().any(|b| b.endpoints.iter().any(|e| e.address == address));
    if let Some(found) = sticky.find(cookie_value).filter(|found| !own(*found)) {
        return Err(format!("cookie {cookie_value:?} chose {found}, which route {index} does not list"));
    }
    for endpoint in route.backends.iter().flat_map(|b| &b.endpoints) {
        let found = sticky.find(&key.cookie_value(endpoint.address));
        if found != Some(endpoint.address) {
            return Err(format!("route {index}: the cookie of {} finds {found:?}", endpoint.address));
        }
    }
    Ok(())
}

/// Client-address affinity picks one of the route's own endpoints, for any client.
pub fn check_client_affinity(backends: &[Backend], key: &AffinityKey, client: u64) -> Result<(), String> {
    let chosen = ClientAffinity::new(key, backends).choose(backends, client, |_| true);
    match chosen {
        Some(endpoint) if !backends.iter().any(|b| b.endpoints.iter().any(|e| std::ptr::eq(e, endpoint))) => {
            Err(format!("client {client:#x} went to {}, not an endpoint of the route", endpoint.address))
        }
        _ => Ok(()),
    }
}
