//! The HTTP filter: per request, pick the destination by Host and path and hand it to the `ORIGINAL_DST` cluster
//! through filter state, or answer locally.
//!
//! Hot path: one `get_shared_data` of the version key, two header reads, one foreign call, and a hash lookup of the
//! chosen endpoint's pre-encoded filter-state argument; the table is copied and parsed only when its version moves.
//! A request never continues without its destination set: the `ORIGINAL_DST` cluster would otherwise fall back to
//! the connection's own destination, which is Envoy's listener.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;

use berth_table::{Backend, HttpRouter, Table, choose_endpoint, mix64};
use log::warn;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::cache::{TableCache, View};
use crate::filter_state::{self, LifeSpan, ORIGINAL_DST_ADDRESS};
use crate::host::{Envoy, Host};

/// The header on every answer the filter gives itself, so a client (or a test) can tell it from a backend's.
pub const REASON_HEADER: &str = "x-berth";
/// `x-berth` values.
pub const NO_TABLE: &str = "no-table";
pub const NO_ROUTE: &str = "no-route";
pub const NO_ENDPOINT: &str = "no-endpoint";
pub const ERROR: &str = "error";

/// One table, arranged for routing.
pub struct HttpView {
    table: Table,
    router: HttpRouter,
    /// Requests seen per route (indexed like `table.http`), the input of [`choose_endpoint`].
    counters: Vec<u64>,
    default_counter: u64,
    /// `set_envoy_filter_state` arguments per endpoint, encoded once per table so a request allocates nothing
    /// to name its destination.
    destinations: HashMap<SocketAddr, Box<[u8]>>,
    /// Problems already logged for this table version.
    logged: HashSet<String>,
}

impl View for HttpView {
    fn build(table: Table, seed: u64) -> Self {
        let router = HttpRouter::new(&table);
        let routes = table.http.iter().map(|route| &route.backends);
        let defaults = table.default_backend.iter().map(|default| &default.backends);
        let destinations = routes
            .chain(defaults)
            .flatten()
            .flat_map(|backend| &backend.endpoints)
            .map(|endpoint| {
                let value = endpoint.address.to_string();
                let encoded = filter_state::encode(ORIGINAL_DST_ADDRESS, &value, LifeSpan::DownstreamRequest);
                (endpoint.address, encoded.into_boxed_slice())
            })
            .collect();
        // Each worker VM counts on its own, and every table change restarts the count: starting from the same
        // slot each time would favour the first slots of a weighted rotation (90/10 sends its first 13 requests
        // to the 90) wherever tables change more often than a round completes. Any round is exact (see
        // `choose_endpoint`), so a start taken from the seed keeps every split exact per round.
        let start = mix64(seed);
        HttpView {
            counters: vec![start; table.http.len()],
            default_counter: start,
            router,
            destinations,
            logged: HashSet::new(),
            table,
        }
    }
}

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Set this (encoded) filter state and continue to the `ORIGINAL_DST` cluster.
    Forward(&'a [u8]),
    Reply(Reply),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    /// The `x-berth` header.
    pub reason: &'static str,
    pub body: String,
}

impl HttpView {
    /// Routes one request given its `:authority` and `:path`.
    pub fn decide(&mut self, authority: &str, path: &str) -> Decision<'_> {
        let HttpView { table, router, counters, default_counter, destinations, logged } = self;
        let (backends, counter, what) = match router.match_http(authority, path) {
            Some(id) => match (table.http.get(id.0), counters.get_mut(id.0)) {
                (Some(route), Some(counter)) => (&route.backends, counter, RouteName::Route(id.0)),
                // The router only returns indexes of `table.http`, which `counters` mirrors.
                _ => return Decision::Reply(Reply::no_route(authority, path)),
            },
            None => match &table.default_backend {
                Some(default) => (&default.backends, default_counter, RouteName::Default),
                None => return Decision::Reply(Reply::no_route(authority, path)),
            },
        };
        let n = *counter;
        *counter = n.wrapping_add(1);
        match choose_endpoint(backends, n).and_then(|endpoint| destinations.get(&endpoint.address)) {
            Some(encoded) => Decision::Forward(encoded),
            None => {
                if logged.insert(format!("no-endpoint {what:?}")) {
                    warn!(
                        "{} in table version {} has no endpoint ({}); answering 503",
                        what.describe(table),
                        table.version,
                        describe_backends(backends)
                    );
                }
                Decision::Reply(Reply {
                    status: 503,
                    reason: NO_ENDPOINT,
                    body: format!("no healthy endpoint for {authority}{path}"),
                })
            }
        }
    }

    /// Logs `problem` unless it was already logged for this table version.
    fn log_once(&mut self, problem: String) {
        if self.logged.insert(problem.clone()) {
            warn!("{problem} (table version {})", self.table.version);
        }
    }
}

impl Reply {
    fn no_route(authority: &str, path: &str) -> Reply {
        Reply { status: 404, reason: NO_ROUTE, body: format!("no route for {authority}{path}") }
    }
}

#[derive(Debug, Clone, Copy)]
enum RouteName {
    Route(usize),
    Default,
}

impl RouteName {
    fn describe(self, table: &Table) -> String {
        match self {
            RouteName::Route(index) => match table.http.get(index) {
                Some(route) => {
                    format!("route {} {} (from {})", route.host, route.path.as_str(), route.source)
                }
                None => format!("route {index}"),
            },
            RouteName::Default => match &table.default_backend {
                Some(default) => format!("the default backend (from {})", default.source),
                None => "the default backend".into(),
            },
        }
    }
}

fn describe_backends(backends: &[Backend]) -> String {
    if backends.is_empty() {
        return "no backends".into();
    }
    let names: Vec<&str> = backends.iter().map(|b| b.service.as_str()).collect();
    format!("backends {}", names.join(", "))
}

/// How a request ended in the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The destination is set: continue to the router.
    Forwarded,
    /// A local reply was sent: stop.
    Replied,
}

/// Handles a request's headers: the whole per-request logic, over any [`Host`].
pub fn on_request_headers(host: &impl Host, cache: &mut TableCache<HttpView>) -> Verdict {
    let Some(view) = cache.current(host) else {
        return reply(host, &Reply { status: 503, reason: NO_TABLE, body: "berth: no routing table yet".into() });
    };
    let authority = host.request_header(":authority").unwrap_or_default();
    let path = host.request_header(":path").unwrap_or_default();
    // Header bytes come from the client: anything that is not UTF-8 simply matches no host.
    let (authority, path) = (String::from_utf8_lossy(&authority), String::from_utf8_lossy(&path));
    let failure = match view.decide(&authority, &path) {
        Decision::Forward(encoded) => match host.set_filter_state(encoded) {
            Ok(()) => return Verdict::Forwarded,
            Err(status) => status,
        },
        Decision::Reply(answer) => return reply(host, &answer),
    };
    view.log_once(format!("cannot set filter state {ORIGINAL_DST_ADDRESS} ({failure}); answering 503"));
    reply(host, &Reply { status: 503, reason: ERROR, body: "berth: cannot set the destination".into() })
}

fn reply(host: &impl Host, answer: &Reply) -> Verdict {
    let headers = [(REASON_HEADER, answer.reason), ("content-type", "text/plain; charset=utf-8")];
    if let Err(status) = host.send_reply(answer.status, &headers, &answer.body) {
        warn!("cannot send the local reply {} {}: {status}", answer.status, answer.reason);
    }
    Verdict::Replied
}

/// The per-request context Envoy creates; `cache` is shared by every request of its root context (one VM thread).
pub struct HttpFilter {
    cache: Option<Rc<RefCell<TableCache<HttpView>>>>,
}

impl HttpFilter {
    /// A filter routing by the root's table cache; `None` for a root whose role is not HTTP, which answers 503.
    pub fn new(cache: Option<Rc<RefCell<TableCache<HttpView>>>>) -> Self {
        HttpFilter { cache }
    }
}

impl Context for HttpFilter {}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let host = Envoy;
        // The borrow cannot be taken twice (one thread, no re-entry); if it ever were, answer instead of panicking.
        let verdict = match self.cache.as_ref().map(|cache| cache.try_borrow_mut()) {
            Some(Ok(mut cache)) => on_request_headers(&host, &mut cache),
            Some(Err(_)) => reply(&host, &Reply { status: 503, reason: ERROR, body: "berth: busy".into() }),
            None => reply(
                &host,
                &Reply {
                    status: 503,
                    reason: ERROR,
                    body: "berth: this filter is not configured with role http".into(),
                },
            ),
        };
        match verdict {
            Verdict::Forwarded => Action::Continue,
            Verdict::Replied => Action::Pause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{TABLE_KEY, VERSION_KEY};
    use crate::host::fake::FakeHost;
    use berth_table::{DefaultBackend, Endpoint, HttpRoute, PathMatch, Source};

    fn backend(ports: &[u16]) -> Backend {
        Backend {
            service: "default/svc:80".into(),
            weight: 1,
            endpoints: ports.iter().map(|p| Endpoint { address: ([127, 0, 0, 1], *p).into() }).collect(),
        }
    }

    fn source(name: &str) -> Source {
        Source { kind: "Ingress".into(), namespace: "default".into(), name: name.into() }
    }

    fn route(host: &str, path: PathMatch, ports: &[u16]) -> HttpRoute {
        HttpRoute { host: host.into(), path, backends: vec![backend(ports)], source: source(host) }
    }

    fn sample(version: u64) -> Table {
        let mut table = Table::new(version);
        table.http.push(route("website.com", PathMatch::Segments("/".into()), &[8001]));
        table.http.push(route("website.com", PathMatch::Prefix("/api".into()), &[8002, 8003]));
        table.http.push(HttpRoute {
            host: "empty.com".into(),
            path: PathMatch::Prefix("/".into()),
            backends: vec![backend(&[])],
            source: source("empty"),
        });
        table
    }

    fn publish(host: &FakeHost, table: &Table) {
        host.put_shared(TABLE_KEY, &berth_table::encode(table));
        host.put_shared(VERSION_KEY, table.version.to_string().as_bytes());
    }

    /// The destination a forwarded request was given, decoded from the filter-state argument.
    fn destination(encoded: &[u8]) -> String {
        let start = 2 + ORIGINAL_DST_ADDRESS.len();
        assert_eq!(encoded[start], 0x12);
        let len = encoded[start + 1] as usize;
        String::from_utf8(encoded[start + 2..start + 2 + len].to_vec()).unwrap()
    }

    fn send(
        host: &FakeHost,
        cache: &mut TableCache<HttpView>,
        authority: &str,
        path: &str,
    ) -> Result<String, (u32, String, String)> {
        host.request(authority, path);
        host.replies.borrow_mut().clear();
        host.filter_state.borrow_mut().clear();
        match on_request_headers(host, cache) {
            Verdict::Forwarded => Ok(destination(&host.filter_state.borrow()[0])),
            Verdict::Replied => {
                let reply = host.replies.borrow()[0].clone();
                let reason = reply.headers.iter().find(|(k, _)| k == REASON_HEADER).unwrap().1.clone();
                Err((reply.status, reason, reply.body))
            }
        }
    }

    #[test]
    fn no_table_yet_is_503() {
        let host = FakeHost::default();
        let mut cache = TableCache::default();
        assert_eq!(
            send(&host, &mut cache, "website.com", "/"),
            Err((503, NO_TABLE.into(), "berth: no routing table yet".into()))
        );
    }

    #[test]
    fn routes_by_host_and_path() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = TableCache::default();
        assert_eq!(send(&host, &mut cache, "website.com", "/index.html"), Ok("127.0.0.1:8001".into()));
        assert_eq!(send(&host, &mut cache, "WebSite.com:80", "/api/x?y=1"), Ok("127.0.0.1:8002".into()));
        assert_eq!(send(&host, &mut cache, "website.com", "/api/x"), Ok("127.0.0.1:8003".into()));
        assert_eq!(send(&host, &mut cache, "website.com", "/api/x"), Ok("127.0.0.1:8002".into()));
    }

    #[test]
    fn filter_state_argument_is_the_request_span_original_dst_key() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = TableCache::default();
        send(&host, &mut cache, "website.com", "/").unwrap();
        let expected = filter_state::encode(ORIGINAL_DST_ADDRESS, "127.0.0.1:8001", LifeSpan::DownstreamRequest);
        assert_eq!(host.filter_state.borrow()[0], expected);
    }

    #[test]
    fn unknown_host_is_404_with_the_request_in_the_body() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = TableCache::default();
        assert_eq!(
            send(&host, &mut cache, "other.org", "/x"),
            Err((404, NO_ROUTE.into(), "no route for other.org/x".into()))
        );
    }

    #[test]
    fn default_backend_takes_what_no_route_matches() {
        let host = FakeHost::default();
        let mut table = sample(1);
        table.default_backend = Some(DefaultBackend { backends: vec![backend(&[9000])], source: source("default") });
        publish(&host, &table);
        let mut cache = TableCache::default();
        assert_eq!(send(&host, &mut cache, "other.org", "/x"), Ok("127.0.0.1:9000".into()));
        assert_eq!(send(&host, &mut cache, "website.com", "/"), Ok("127.0.0.1:8001".into()));
    }

    #[test]
    fn route_without_endpoints_is_503() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = TableCache::default();
        assert_eq!(
            send(&host, &mut cache, "empty.com", "/a"),
            Err((503, NO_ENDPOINT.into(), "no healthy endpoint for empty.com/a".into()))
        );
        send(&host, &mut cache, "empty.com", "/a").unwrap_err();
        assert_eq!(cache.current(&host).unwrap().logged.len(), 1, "logged once per version");
    }

    #[test]
    fn a_table_change_applies_to_the_next_request_and_resets_counters() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = TableCache::default();
        assert_eq!(send(&host, &mut cache, "website.com", "/api"), Ok("127.0.0.1:8002".into()));
        let mut table = sample(2);
        table.http[1] = route("website.com", PathMatch::Prefix("/api".into()), &[7001, 7002]);
        publish(&host, &table);
        assert_eq!(send(&host, &mut cache, "website.com", "/api"), Ok("127.0.0.1:7001".into()));
    }

    #[test]
    fn frequent_table_changes_keep_a_weighted_split() {
        // A table change every few requests: were every rotation to restart at slot 0, the 10% backend would
        // never be reached (90/10 gives its first 13 slots to the 90).
        let host = FakeHost::default();
        let mut cache = TableCache::default();
        let mut green = 0;
        for version in 1..=400u64 {
            let mut table = Table::new(version);
            let mut split = route("canary.com", PathMatch::Prefix("/".into()), &[9001]);
            split.backends[0].weight = 90;
            split.backends.push(Backend { weight: 10, ..backend(&[9002]) });
            table.http.push(split);
            publish(&host, &table);
            host.now.set(version * 7_919);
            for _ in 0..5 {
                green += usize::from(send(&host, &mut cache, "canary.com", "/") == Ok("127.0.0.1:9002".into()));
            }
        }
        assert!((100..=300).contains(&green), "{green} of 2000 requests reached the 10% backend");
    }

    #[test]
    fn hot_path_reads_only_the_version_key() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = TableCache::default();
        for _ in 0..10 {
            send(&host, &mut cache, "website.com", "/").unwrap();
        }
        let reads = host.reads.borrow();
        assert_eq!(reads.iter().filter(|k| *k == TABLE_KEY).count(), 1);
        assert_eq!(reads.iter().filter(|k| *k == VERSION_KEY).count(), 10);
    }

    #[test]
    fn a_bad_shared_table_keeps_routing_by_the_last_good_one() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = TableCache::default();
        send(&host, &mut cache, "website.com", "/").unwrap();
        host.put_shared(TABLE_KEY, b"garbage");
        host.put_shared(VERSION_KEY, b"2");
        assert_eq!(send(&host, &mut cache, "website.com", "/"), Ok("127.0.0.1:8001".into()));
    }

    #[test]
    fn failing_to_set_the_destination_never_forwards() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        host.filter_state_fails.set(true);
        let mut cache = TableCache::default();
        let (status, reason, _) = send(&host, &mut cache, "website.com", "/").unwrap_err();
        assert_eq!((status, reason.as_str()), (503, ERROR));
    }

    #[test]
    fn non_utf8_and_missing_headers_do_not_panic() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = TableCache::default();
        host.request_headers.borrow_mut().insert(":authority".into(), vec![0xff, 0xfe]);
        assert_eq!(on_request_headers(&host, &mut cache), Verdict::Replied);
        host.request_headers.borrow_mut().clear();
        assert_eq!(on_request_headers(&host, &mut cache), Verdict::Replied);
    }
}
