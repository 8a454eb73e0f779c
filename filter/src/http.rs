//! The HTTP filter: per request, pick the destination by Host and path and hand it to the `ORIGINAL_DST` cluster
//! through filter state, or answer locally.
//!
//! Hot path: one or two header reads (`:path` only when the host's routes depend on it: not for a host whose one
//! route is `/`), one foreign call, and a hash lookup of the chosen endpoint's pre-encoded filter-state argument. The table version and the ejection list are read on the root context's tick, not per request (see
//! [`crate::cache`]); the table is copied and parsed only when its version moves. Passive health adds one
//! `response.flags` property read per response. A route with a session
//! cookie costs one more header read (`cookie`), and one response header write when the cookie is (re-)issued;
//! other routes never read the cookie. A route with a policy (rewrite, timeout, retries, header edits; see
//! [`crate::route_policy`]) costs one header write per edit, and a `:path` read for a rewrite when matching did not
//! need one; other routes make no such call. A request never continues without its destination set: the
//! `ORIGINAL_DST` cluster would otherwise fall back to the connection's own destination, which is Envoy's
//! listener. When every endpoint of a route is ejected, the filter answers 503 at once rather than try one.
//!
//! With `unknown_host: continue` (Berth shares a listener with other routes, e.g. an Istio gateway's), a request
//! for a host the table does not serve continues without a destination to the listener's own routes, at the cost
//! of one property read (`xds.cluster_name`) on such requests only: if its route goes to Berth's `ORIGINAL_DST`
//! cluster after all, it is answered as without the option, never sent on without a destination.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::rc::Rc;

use berth_table::{
    AffinityKey, FnvHashMap, HttpPluginConfig, HttpRoute, HttpRouter, StickyEndpoints, Table, UnknownHost, find_cookie,
    mix64,
};
use log::warn;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::cache::{TableCache, View};
use crate::endpoints::{describe_backends, next_endpoint, why_none};
use crate::filter_state::{self, LifeSpan, ORIGINAL_DST_ADDRESS};
use crate::host::{Envoy, Host};
use crate::passive_health::{PassiveHealth, UPSTREAM_CONNECTION_FAILURE, UPSTREAM_REQUEST_TIMEOUT, response_flags};
use crate::route_policy::PreparedPolicy;

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
    /// Per route, indexed like `table.http`.
    routes: Vec<RouteState>,
    /// Requests seen by the default backend.
    default_counter: u64,
    /// `set_envoy_filter_state` arguments per endpoint, encoded once per table so a request allocates nothing
    /// to name its destination.
    destinations: FnvHashMap<SocketAddr, Box<[u8]>>,
    /// Problems already logged for this table version.
    logged: HashSet<String>,
}

/// What a route keeps from one request to the next.
struct RouteState {
    /// Requests seen, the input of [`choose_endpoint`].
    counter: u64,
    /// Session persistence, for a route with a session cookie.
    sticky: Option<Sticky>,
    /// The route's rewrite, timeout, retries and header edits, for a route with any.
    policy: Option<Rc<PreparedPolicy>>,
}

/// A route's session cookie and its endpoints by cookie value, built with the table.
struct Sticky {
    cookie: String,
    key: AffinityKey,
    endpoints: StickyEndpoints,
}

impl Sticky {
    /// `None` (logged) when the table has no key to make cookie values with: the route then works without
    /// persistence rather than put endpoint addresses in cookies.
    fn for_route(route: &HttpRoute, key: Option<&AffinityKey>) -> Option<Sticky> {
        let cookie = route.session_cookie.as_ref()?;
        let Some(key) = key else {
            warn!(
                "route {} {} (from {}) asks for session cookie {cookie:?} but the table has no affinity_key; \
                 serving it without session persistence",
                route.host,
                route.path.as_str(),
                route.source
            );
            return None;
        };
        Some(Sticky { cookie: cookie.clone(), key: *key, endpoints: StickyEndpoints::new(key, &route.backends) })
    }

    /// The endpoint of this route that a request's `Cookie` header names, if any.
    fn endpoint(&self, cookie_header: &[u8]) -> Option<SocketAddr> {
        let header = std::str::from_utf8(cookie_header).ok()?;
        self.endpoints.find(find_cookie(header, &self.cookie)?)
    }

    /// The `set-cookie` value that keeps a client on `endpoint`: for the whole site, hidden from scripts.
    fn set_cookie(&self, endpoint: SocketAddr) -> String {
        format!("{}={}; Path=/; HttpOnly", self.cookie, self.key.cookie_value(endpoint))
    }
}

impl View for HttpView {
    fn build(table: Table, seed: u64) -> Self {
        let router = HttpRouter::new(&table);
        let routes = table.http.iter().map(|route| &route.backends);
        let defaults = table.default_backend.iter().map(|default| &default.backends);
        let destinations =
            filter_state::original_dst_arguments(routes.chain(defaults).flatten(), LifeSpan::DownstreamRequest);
        // Each worker VM counts on its own, and every table change restarts the count: starting from the same
        // slot each time would favour the first slots of a weighted rotation (90/10 sends its first 13 requests
        // to the 90) wherever tables change more often than a round completes. Any round is exact (see
        // `choose_endpoint`), so a start taken from the seed keeps every split exact per round.
        let start = mix64(seed);
        let routes = table
            .http
            .iter()
            .map(|route| RouteState {
                counter: start,
                sticky: Sticky::for_route(route, table.affinity_key.as_ref()),
                policy: route.policy.as_ref().map(|policy| Rc::new(PreparedPolicy::new(policy))),
            })
            .collect();
        HttpView { routes, default_counter: start, router, destinations, logged: HashSet::new(), table }
    }
}

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    Forward(Forward<'a>),
    Reply(Reply),
}

/// Continue to the `ORIGINAL_DST` cluster.
#[derive(Debug, PartialEq, Eq)]
pub struct Forward<'a> {
    /// The encoded filter state naming the destination.
    pub filter_state: &'a [u8],
    pub endpoint: SocketAddr,
    /// The `set-cookie` header for the response: the session is new, or its endpoint is no longer the route's.
    pub set_cookie: Option<String>,
    /// The route's policy, for a route with one.
    pub policy: Option<Rc<PreparedPolicy>>,
    /// The request's new `:path`, for a route that rewrites it.
    pub rewritten_path: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    /// The `x-berth` header.
    pub reason: &'static str,
    pub body: String,
}

impl HttpView {
    /// Routes one request given its `:authority`, avoiding the `ejected` endpoints. `path` reads the request's
    /// `:path`; it is called only when the host's routes depend on it, or for the body of an error answer.
    /// `cookie_header` reads the request's `Cookie` header; it is called only for a route with a session cookie.
    pub fn decide(
        &mut self,
        authority: &str,
        path: impl FnOnce() -> Option<Vec<u8>>,
        cookie_header: impl FnOnce() -> Option<Vec<u8>>,
        ejected: &[SocketAddr],
    ) -> Decision<'_> {
        let HttpView { table, router, routes, default_counter, destinations, logged } = self;
        let mut path = LazyPath::new(path);
        let matched = router
            .match_host(authority)
            .and_then(|host_routes| host_routes.every_path().or_else(|| host_routes.match_path(&path.text())));
        let (backends, counter, sticky, what, policy) = match matched {
            Some(id) => match (table.http.get(id.0), routes.get_mut(id.0)) {
                (Some(route), Some(state)) => (
                    &route.backends,
                    &mut state.counter,
                    state.sticky.as_ref(),
                    RouteName::Route(id.0),
                    state.policy.as_ref().map(|policy| (policy, &route.path)),
                ),
                // The router only returns indexes of `table.http`, which `routes` mirrors.
                _ => return Decision::Reply(Reply::no_route(authority, &path.text())),
            },
            None => match &table.default_backend {
                Some(default) => (&default.backends, default_counter, None, RouteName::Default, None),
                None => return Decision::Reply(Reply::no_route(authority, &path.text())),
            },
        };
        // Only a route with a policy pays for it: a path read (when its host did not need one to match) for a
        // rewrite, and a reference count.
        let (policy, rewritten_path) = match policy {
            Some((policy, matched)) => {
                let rewritten =
                    policy.rewrite_uri.as_ref().map(|uri| berth_table::rewrite_path(&path.text(), matched, uri));
                (Some(policy.clone()), rewritten)
            }
            None => (None, None),
        };
        // A session keeps its endpoint while the route has it and it is not ejected; a value naming anything
        // else is ignored.
        if let Some(sticky) = sticky
            && let Some(endpoint) = cookie_header().and_then(|header| sticky.endpoint(&header))
            && !ejected.contains(&endpoint)
            && let Some(filter_state) = destinations.get(&endpoint)
        {
            return Decision::Forward(Forward { filter_state, endpoint, set_cookie: None, policy, rewritten_path });
        }
        let chosen = next_endpoint(backends, counter, ejected)
            .and_then(|endpoint| Some((endpoint.address, destinations.get(&endpoint.address)?)));
        match chosen {
            Some((endpoint, filter_state)) => Decision::Forward(Forward {
                filter_state,
                endpoint,
                set_cookie: sticky.map(|sticky| sticky.set_cookie(endpoint)),
                policy,
                rewritten_path,
            }),
            None => {
                let why = why_none(backends);
                if logged.insert(format!("{why} {what:?}")) {
                    warn!(
                        "{} in table version {} {why} ({}); answering 503",
                        what.describe(table),
                        table.version,
                        describe_backends(backends)
                    );
                }
                Decision::Reply(Reply {
                    status: 503,
                    reason: NO_ENDPOINT,
                    body: format!("no healthy endpoint for {authority}{}", path.text()),
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

/// How a request ended in the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The destination is set: continue to the router.
    Forwarded(Forwarded),
    /// A local reply was sent: stop.
    Replied,
    /// Not Berth's (`unknown_host: continue`): continue without a destination, to the listener's own routes.
    Passed,
}

/// What the response side needs to know about a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub endpoint: SocketAddr,
    pub set_cookie: Option<String>,
    /// The route's policy, when it edits the response.
    pub response_policy: Option<Rc<PreparedPolicy>>,
}

/// What every request of one HTTP root context shares (one VM thread).
#[derive(Default)]
pub struct HttpRouting {
    pub cache: TableCache<HttpView>,
    pub health: PassiveHealth,
    pub unknown: UnknownHostPolicy,
}

/// What happens to a request for a host the table does not serve (plugin configuration `unknown_host`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UnknownHostPolicy {
    /// Answer 404 (`x-berth: no-route`), or 503 before the first table.
    #[default]
    Answer,
    /// Continue without a destination, unless the request's route goes to `original_dst_cluster`: that cluster
    /// would send it to the connection's own destination (Envoy's listener), so it is answered as above.
    Continue { original_dst_cluster: String },
}

impl UnknownHostPolicy {
    pub fn from_config(config: &HttpPluginConfig) -> Self {
        match config.unknown_host {
            UnknownHost::NotFound => UnknownHostPolicy::Answer,
            UnknownHost::Continue => {
                UnknownHostPolicy::Continue { original_dst_cluster: config.original_dst_cluster.clone() }
            }
        }
    }

    /// Whether a request Berth has no route for goes on to the listener's own routes. One property read, only on
    /// a miss in continue mode.
    fn passes(&self, host: &impl Host) -> bool {
        match self {
            UnknownHostPolicy::Answer => false,
            UnknownHostPolicy::Continue { original_dst_cluster } => host
                .property(&["xds", "cluster_name"])
                .is_some_and(|cluster| cluster != original_dst_cluster.as_bytes()),
        }
    }
}

impl HttpRouting {
    /// The root context's tick: picks up a new table and every VM's ejections.
    pub fn on_tick(&mut self, host: &impl Host) {
        self.cache.refresh(host);
        self.health.refresh(host);
    }
}

/// Handles a request's headers: the whole per-request logic, over any [`Host`].
pub fn on_request_headers(host: &impl Host, routing: &mut HttpRouting) -> Verdict {
    let HttpRouting { cache, health, unknown } = routing;
    let Some(view) = cache.current(host) else {
        if unknown.passes(host) {
            return Verdict::Passed;
        }
        return reply(host, &Reply { status: 503, reason: NO_TABLE, body: "berth: no routing table yet".into() });
    };
    let authority = host.request_header(":authority").unwrap_or_default();
    let authority = header_text(&authority);
    let path = || host.request_header(":path");
    let failure = match view.decide(&authority, path, || host.request_header("cookie"), health.ejected()) {
        Decision::Forward(Forward { filter_state, endpoint, set_cookie, policy, rewritten_path }) => {
            match host.set_filter_state(filter_state) {
                Ok(()) => {
                    let Some(policy) = policy else {
                        return Verdict::Forwarded(Forwarded { endpoint, set_cookie, response_policy: None });
                    };
                    // A failed edit is logged and the request goes on: the destination is set, and Envoy only
                    // refuses an edit it could never make (a malformed name the compiler does not let through).
                    if let Err(problem) = policy.apply_to_request(host, rewritten_path.as_deref()) {
                        view.log_once(format!("{problem} on a request for {authority}"));
                    }
                    let response_policy = policy.edits_response().then_some(policy);
                    return Verdict::Forwarded(Forwarded { endpoint, set_cookie, response_policy });
                }
                Err(status) => status,
            }
        }
        Decision::Reply(answer) if answer.reason == NO_ROUTE && unknown.passes(host) => return Verdict::Passed,
        Decision::Reply(answer) => return reply(host, &answer),
    };
    view.log_once(format!("cannot set filter state {ORIGINAL_DST_ADDRESS} ({failure}); answering 503"));
    reply(host, &Reply { status: 503, reason: ERROR, body: "berth: cannot set the destination".into() })
}

/// Handles a forwarded request's response headers: reports how its endpoint did to passive health, and issues the
/// session cookie when the request needs one (unless the endpoint failed: the next request goes elsewhere).
pub fn on_response_headers(host: &impl Host, health: &mut PassiveHealth, forwarded: &Forwarded) {
    let flags = response_flags(host);
    health.report(host, forwarded.endpoint, flags);
    if let Some(policy) = &forwarded.response_policy
        && let Err(problem) = policy.apply_to_response(host)
    {
        warn!("{problem} on a response from {}", forwarded.endpoint);
    }
    if flags & (UPSTREAM_CONNECTION_FAILURE | UPSTREAM_REQUEST_TIMEOUT) != 0 {
        return;
    }
    if let Some(cookie) = &forwarded.set_cookie
        && let Err(status) = host.add_response_header("set-cookie", cookie)
    {
        warn!("cannot add the session cookie to a response from {}: {status}", forwarded.endpoint);
    }
}

/// A request's `:path`, read from the host the first time it is needed: most hosts have one route for every path.
struct LazyPath<F> {
    read: Option<F>,
    bytes: Vec<u8>,
}

impl<F: FnOnce() -> Option<Vec<u8>>> LazyPath<F> {
    fn new(read: F) -> Self {
        LazyPath { read: Some(read), bytes: Vec::new() }
    }

    fn text(&mut self) -> Cow<'_, str> {
        if let Some(read) = self.read.take() {
            self.bytes = read().unwrap_or_default();
        }
        header_text(&self.bytes)
    }
}

/// A request header's bytes as text. They come from the client: bytes that are not UTF-8 are read lossily and so
/// match no host name (a `*` route or the default backend still takes them). `str::from_utf8` first, because
/// nearly every header is UTF-8 and it validates with a word-at-a-time ASCII pass, where `from_utf8_lossy` walks
/// byte by byte (a sixth of the filter's per-request instructions, callgrind).
fn header_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

fn reply(host: &impl Host, answer: &Reply) -> Verdict {
    let headers = [(REASON_HEADER, answer.reason), ("content-type", "text/plain; charset=utf-8")];
    if let Err(status) = host.send_reply(answer.status, &headers, &answer.body) {
        warn!("cannot send the local reply {} {}: {status}", answer.status, answer.reason);
    }
    Verdict::Replied
}

/// The per-request context Envoy creates; `routing` is shared by every request of its root context.
pub struct HttpFilter {
    routing: Option<Rc<RefCell<HttpRouting>>>,
    /// Set once the request is forwarded, for its response.
    forwarded: Option<Forwarded>,
}

impl HttpFilter {
    /// A filter routing by the root's state; `None` for a root whose role is not HTTP, which answers 503.
    pub fn new(routing: Option<Rc<RefCell<HttpRouting>>>) -> Self {
        HttpFilter { routing, forwarded: None }
    }
}

impl Context for HttpFilter {}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let host = Envoy;
        // The borrow cannot be taken twice (one thread, no re-entry); if it ever were, answer instead of panicking.
        let verdict = match self.routing.as_ref().map(|routing| routing.try_borrow_mut()) {
            Some(Ok(mut routing)) => on_request_headers(&host, &mut routing),
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
            Verdict::Forwarded(forwarded) => {
                self.forwarded = Some(forwarded);
                Action::Continue
            }
            Verdict::Replied => Action::Pause,
            Verdict::Passed => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Envoy calls this for the router's own answers too (a refused connection's 503), which is how the
        // filter learns of a failed endpoint.
        if let Some(forwarded) = &self.forwarded
            && let Some(Ok(mut routing)) = self.routing.as_ref().map(|routing| routing.try_borrow_mut())
        {
            on_response_headers(&Envoy, &mut routing.health, forwarded);
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{TABLE_KEY, VERSION_KEY};
    use crate::host::fake::FakeHost;
    use crate::host::{Edit, Side};
    use crate::passive_health::EJECTED_KEY;
    use berth_table::{Backend, DefaultBackend, Endpoint, HeaderEdits, HttpRoute, PathMatch, RoutePolicy, Source};

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
        HttpRoute {
            host: host.into(),
            path,
            backends: vec![backend(ports)],
            source: source(host),
            session_cookie: None,
            policy: None,
        }
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
            session_cookie: None,
            policy: None,
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
        cache: &mut HttpRouting,
        authority: &str,
        path: &str,
    ) -> Result<String, (u32, String, String)> {
        host.request(authority, path);
        host.replies.borrow_mut().clear();
        host.filter_state.borrow_mut().clear();
        match on_request_headers(host, cache) {
            Verdict::Forwarded(_) => Ok(destination(&host.filter_state.borrow()[0])),
            Verdict::Passed => Err((0, "passed".into(), String::new())),
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
        let mut cache = HttpRouting::default();
        assert_eq!(
            send(&host, &mut cache, "website.com", "/"),
            Err((503, NO_TABLE.into(), "berth: no routing table yet".into()))
        );
    }

    #[test]
    fn routes_by_host_and_path() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = HttpRouting::default();
        assert_eq!(send(&host, &mut cache, "website.com", "/index.html"), Ok("127.0.0.1:8001".into()));
        assert_eq!(send(&host, &mut cache, "WebSite.com:80", "/api/x?y=1"), Ok("127.0.0.1:8002".into()));
        assert_eq!(send(&host, &mut cache, "website.com", "/api/x"), Ok("127.0.0.1:8003".into()));
        assert_eq!(send(&host, &mut cache, "website.com", "/api/x"), Ok("127.0.0.1:8002".into()));
    }

    #[test]
    fn filter_state_argument_is_the_request_span_original_dst_key() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = HttpRouting::default();
        send(&host, &mut cache, "website.com", "/").unwrap();
        let expected = filter_state::encode(ORIGINAL_DST_ADDRESS, "127.0.0.1:8001", LifeSpan::DownstreamRequest);
        assert_eq!(host.filter_state.borrow()[0], expected);
    }

    #[test]
    fn unknown_host_is_404_with_the_request_in_the_body() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = HttpRouting::default();
        assert_eq!(
            send(&host, &mut cache, "other.org", "/x"),
            Err((404, NO_ROUTE.into(), "no route for other.org/x".into()))
        );
    }

    #[test]
    fn continue_mode_leaves_unknown_hosts_to_the_listeners_other_routes() {
        let host = FakeHost::default();
        let mut routing = HttpRouting {
            unknown: UnknownHostPolicy::Continue { original_dst_cluster: "berth_original_dst".into() },
            ..HttpRouting::default()
        };
        let passes = |host: &FakeHost, routing: &mut HttpRouting, authority: &str, cluster: &str| {
            host.request(authority, "/x");
            host.properties.borrow_mut().insert("xds.cluster_name".into(), cluster.as_bytes().to_vec());
            host.replies.borrow_mut().clear();
            on_request_headers(host, routing)
        };
        // Before the first table: Istio's hosts pass, Berth's own cluster still gets the 503.
        assert_eq!(passes(&host, &mut routing, "istio.example", "outbound|80||istio.example"), Verdict::Passed);
        assert_eq!(passes(&host, &mut routing, "website.com", "berth_original_dst"), Verdict::Replied);
        assert_eq!(host.replies.borrow()[0].status, 503);

        publish(&host, &sample(1));
        routing.on_tick(&host);
        assert_eq!(passes(&host, &mut routing, "istio.example", "outbound|80||istio.example"), Verdict::Passed);
        assert!(host.filter_state.borrow().is_empty() && host.replies.borrow().is_empty(), "no destination, no reply");
        assert!(matches!(passes(&host, &mut routing, "website.com", "berth_original_dst"), Verdict::Forwarded(_)));
        // A host nobody serves whose route is Berth's cluster: never on without a destination.
        assert_eq!(passes(&host, &mut routing, "other.org", "berth_original_dst"), Verdict::Replied);
        assert_eq!(host.replies.borrow()[0].status, 404);
        host.properties.borrow_mut().clear();
        host.request("other.org", "/x");
        assert_eq!(on_request_headers(&host, &mut routing), Verdict::Replied, "no route at all: answered");
    }

    #[test]
    fn answer_mode_never_reads_the_cluster() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut routing = HttpRouting::default();
        routing.on_tick(&host);
        assert_eq!(send(&host, &mut routing, "other.org", "/x").unwrap_err().0, 404);
        assert!(host.property_reads.borrow().is_empty());
        assert_eq!(
            UnknownHostPolicy::from_config(&HttpPluginConfig {
                unknown_host: UnknownHost::Continue,
                ..HttpPluginConfig::default()
            }),
            UnknownHostPolicy::Continue { original_dst_cluster: "berth_original_dst".into() }
        );
    }

    #[test]
    fn default_backend_takes_what_no_route_matches() {
        let host = FakeHost::default();
        let mut table = sample(1);
        table.default_backend = Some(DefaultBackend { backends: vec![backend(&[9000])], source: source("default") });
        publish(&host, &table);
        let mut cache = HttpRouting::default();
        assert_eq!(send(&host, &mut cache, "other.org", "/x"), Ok("127.0.0.1:9000".into()));
        assert_eq!(send(&host, &mut cache, "website.com", "/"), Ok("127.0.0.1:8001".into()));
    }

    #[test]
    fn route_without_endpoints_is_503() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = HttpRouting::default();
        assert_eq!(
            send(&host, &mut cache, "empty.com", "/a"),
            Err((503, NO_ENDPOINT.into(), "no healthy endpoint for empty.com/a".into()))
        );
        send(&host, &mut cache, "empty.com", "/a").unwrap_err();
        assert_eq!(cache.cache.current(&host).unwrap().logged.len(), 1, "logged once per version");
    }

    #[test]
    fn a_table_change_applies_from_the_next_tick_and_resets_counters() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = HttpRouting::default();
        assert_eq!(send(&host, &mut cache, "website.com", "/api"), Ok("127.0.0.1:8002".into()));
        let mut table = sample(2);
        table.http[1] = route("website.com", PathMatch::Prefix("/api".into()), &[7001, 7002]);
        publish(&host, &table);
        assert_eq!(send(&host, &mut cache, "website.com", "/api"), Ok("127.0.0.1:8003".into()), "before the tick");
        cache.on_tick(&host);
        assert_eq!(send(&host, &mut cache, "website.com", "/api"), Ok("127.0.0.1:7001".into()));
    }

    #[test]
    fn frequent_table_changes_keep_a_weighted_split() {
        // A table change every few requests: were every rotation to restart at slot 0, the 10% backend would
        // never be reached (90/10 gives its first 13 slots to the 90).
        let host = FakeHost::default();
        let mut cache = HttpRouting::default();
        let mut green = 0;
        for version in 1..=400u64 {
            let mut table = Table::new(version);
            let mut split = route("canary.com", PathMatch::Prefix("/".into()), &[9001]);
            split.backends[0].weight = 90;
            split.backends.push(Backend { weight: 10, ..backend(&[9002]) });
            table.http.push(split);
            publish(&host, &table);
            host.now.set(version * 7_919);
            cache.on_tick(&host);
            for _ in 0..5 {
                green += usize::from(send(&host, &mut cache, "canary.com", "/") == Ok("127.0.0.1:9002".into()));
            }
        }
        assert!((100..=300).contains(&green), "{green} of 2000 requests reached the 10% backend");
    }

    #[test]
    fn hot_path_reads_two_headers_and_no_shared_data_and_the_tick_reads_the_two_small_keys() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = HttpRouting::default();
        send(&host, &mut cache, "website.com", "/").unwrap();
        host.reads.borrow_mut().clear();
        host.header_reads.borrow_mut().clear();
        for _ in 0..10 {
            send(&host, &mut cache, "website.com", "/").unwrap();
        }
        assert!(host.reads.borrow().is_empty(), "{:?}", host.reads.borrow());
        let headers: Vec<String> = [":authority", ":path"].repeat(10).into_iter().map(String::from).collect();
        assert_eq!(*host.header_reads.borrow(), headers);
        cache.on_tick(&host);
        assert_eq!(*host.reads.borrow(), [VERSION_KEY, EJECTED_KEY]);
    }

    #[test]
    fn a_host_with_one_route_for_every_path_never_reads_the_path_until_it_answers_itself() {
        let host = FakeHost::default();
        let mut table = sample(1);
        table.http.push(route("solo.com", PathMatch::Prefix("/".into()), &[8101]));
        table.http.push(route("down.com", PathMatch::Prefix("/".into()), &[]));
        publish(&host, &table);
        let mut cache = HttpRouting::default();
        host.header_reads.borrow_mut().clear();
        for path in ["/", "/a/b?c=d", "*"] {
            assert_eq!(send(&host, &mut cache, "solo.com", path), Ok("127.0.0.1:8101".into()));
        }
        assert_eq!(*host.header_reads.borrow(), [":authority"; 3]);
        let (_, _, body) = send(&host, &mut cache, "down.com", "/x").unwrap_err();
        assert_eq!(body, "no healthy endpoint for down.com/x", "the answer's body still names the path");
    }

    /// `rewrite.com/api` rewritten to `/v2` on `backend.internal` with a 1 s timeout and a response header;
    /// `solo.com`, its only route for every path, rewritten to `/app/`.
    fn policy_table() -> Table {
        let mut table = sample(1);
        let mut rewritten = route("rewrite.com", PathMatch::Prefix("/api".into()), &[8201]);
        rewritten.policy = Some(RoutePolicy {
            rewrite_uri: Some("/v2".into()),
            rewrite_authority: Some("backend.internal".into()),
            timeout_ms: Some(1000),
            response_headers: HeaderEdits { set: vec![("x-served-by".into(), "berth".into())], ..Default::default() },
            ..RoutePolicy::default()
        });
        table.http.push(rewritten);
        let mut solo = route("solo.com", PathMatch::Prefix("/".into()), &[8202]);
        solo.policy = Some(RoutePolicy { rewrite_uri: Some("/app/".into()), ..RoutePolicy::default() });
        table.http.push(solo);
        table
    }

    fn request_edits(host: &FakeHost) -> Vec<(String, String)> {
        host.header_edits.borrow().iter().map(|(_, _, name, value)| (name.clone(), value.clone())).collect()
    }

    #[test]
    fn a_route_with_a_policy_rewrites_the_request_and_edits_the_response() {
        let host = FakeHost::default();
        publish(&host, &policy_table());
        let mut cache = HttpRouting::default();
        host.request("rewrite.com", "/api/users?id=1");
        let Verdict::Forwarded(forwarded) = on_request_headers(&host, &mut cache) else { panic!("not forwarded") };
        let edits = request_edits(&host);
        let expected =
            [(":path", "/v2/users?id=1"), (":authority", "backend.internal"), (berth_table::TIMEOUT_HEADER, "1000")];
        assert_eq!(edits, expected.map(|(n, v)| (n.to_string(), v.to_string())));
        host.header_edits.borrow_mut().clear();
        on_response_headers(&host, &mut cache.health, &forwarded);
        assert_eq!(
            *host.header_edits.borrow(),
            [(Side::Response, Edit::Set, "x-served-by".to_string(), "berth".to_string())]
        );
    }

    #[test]
    fn a_route_without_a_policy_makes_no_call_for_policies_on_either_side() {
        let host = FakeHost::default();
        publish(&host, &policy_table());
        let mut cache = HttpRouting::default();
        send(&host, &mut cache, "website.com", "/").unwrap();
        host.header_reads.borrow_mut().clear();
        host.property_reads.borrow_mut().clear();
        host.request("website.com", "/api/x");
        let Verdict::Forwarded(forwarded) = on_request_headers(&host, &mut cache) else { panic!("not forwarded") };
        assert_eq!(forwarded.response_policy, None);
        on_response_headers(&host, &mut cache.health, &forwarded);
        assert!(host.header_edits.borrow().is_empty(), "{:?}", host.header_edits.borrow());
        assert_eq!(*host.header_reads.borrow(), [":authority", ":path"], "as before policies existed");
        assert_eq!(*host.property_reads.borrow(), ["response.flags"], "as before policies existed");
        assert!(host.response_headers_added.borrow().is_empty());
    }

    #[test]
    fn a_rewrite_on_a_host_matched_without_its_path_reads_the_path_once() {
        let host = FakeHost::default();
        publish(&host, &policy_table());
        let mut cache = HttpRouting::default();
        send(&host, &mut cache, "website.com", "/").unwrap();
        host.header_reads.borrow_mut().clear();
        assert_eq!(send(&host, &mut cache, "solo.com", "/x?y"), Ok("127.0.0.1:8202".into()));
        assert_eq!(*host.header_reads.borrow(), [":authority", ":path"]);
        assert_eq!(request_edits(&host), [(":path".to_string(), "/app/x?y".to_string())]);
        host.header_edits.borrow_mut().clear();
        host.header_reads.borrow_mut().clear();
        assert_eq!(send(&host, &mut cache, "rewrite.com", "/api"), Ok("127.0.0.1:8201".into()));
        assert_eq!(*host.header_reads.borrow(), [":authority", ":path"], "read to match, reused to rewrite");
        assert_eq!(request_edits(&host)[0], (":path".to_string(), "/v2".to_string()));
    }

    /// The response to a request forwarded to `endpoint` arrives with Envoy's `response.flags`.
    fn respond(host: &FakeHost, cache: &mut HttpRouting, endpoint: &str, flags: u64) {
        host.properties.borrow_mut().insert("response.flags".into(), flags.to_le_bytes().to_vec());
        let forwarded = Forwarded {
            endpoint: endpoint.parse().unwrap(),
            set_cookie: Some("berth=x".into()),
            response_policy: None,
        };
        host.response_headers_added.borrow_mut().clear();
        on_response_headers(host, &mut cache.health, &forwarded);
        host.properties.borrow_mut().remove("response.flags");
    }

    #[test]
    fn a_refused_connection_ejects_its_endpoint_until_the_backoff_ends() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = HttpRouting::default();
        respond(&host, &mut cache, "127.0.0.1:8002", 0);
        assert_eq!(host.response_headers_added.borrow().len(), 1, "a good answer gets its cookie");
        respond(&host, &mut cache, "127.0.0.1:8002", UPSTREAM_CONNECTION_FAILURE);
        assert!(host.response_headers_added.borrow().is_empty(), "no cookie for an endpoint that failed");
        for _ in 0..5 {
            assert_eq!(send(&host, &mut cache, "website.com", "/api"), Ok("127.0.0.1:8003".into()));
        }
        host.now.set(crate::ejection::BASE_BACKOFF_MS);
        cache.on_tick(&host);
        let spread: HashSet<String> = (0..2).map(|_| send(&host, &mut cache, "website.com", "/api").unwrap()).collect();
        assert_eq!(spread.len(), 2, "back in rotation: {spread:?}");
    }

    #[test]
    fn every_endpoint_ejected_is_a_503_at_once() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = HttpRouting::default();
        for endpoint in ["127.0.0.1:8002", "127.0.0.1:8003"] {
            respond(&host, &mut cache, endpoint, UPSTREAM_CONNECTION_FAILURE);
        }
        let (status, reason, _) = send(&host, &mut cache, "website.com", "/api").unwrap_err();
        assert_eq!((status, reason.as_str()), (503, NO_ENDPOINT));
        assert_eq!(send(&host, &mut cache, "website.com", "/"), Ok("127.0.0.1:8001".into()), "other routes serve");
        let logged = &cache.cache.current(&host).unwrap().logged;
        assert!(logged.iter().any(|l| l.starts_with("has every endpoint out of rotation")), "{logged:?}");
    }

    #[test]
    fn a_session_on_an_ejected_endpoint_moves_and_gets_a_new_cookie() {
        let host = FakeHost::default();
        publish(&host, &sticky_table(1, &[9001, 9002]));
        let mut cache = HttpRouting::default();
        let (first, cookie) = send_with_cookie(&host, &mut cache, "shop.com", None);
        respond(&host, &mut cache, &first, UPSTREAM_CONNECTION_FAILURE);
        let (moved, reissued) = send_with_cookie(&host, &mut cache, "shop.com", cookie.as_deref());
        assert_ne!(moved, first);
        assert!(reissued.is_some_and(|c| Some(c) != cookie));
    }

    #[test]
    fn a_bad_shared_table_keeps_routing_by_the_last_good_one() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        let mut cache = HttpRouting::default();
        send(&host, &mut cache, "website.com", "/").unwrap();
        host.put_shared(TABLE_KEY, b"garbage");
        host.put_shared(VERSION_KEY, b"2");
        cache.on_tick(&host);
        assert_eq!(send(&host, &mut cache, "website.com", "/"), Ok("127.0.0.1:8001".into()));
    }

    #[test]
    fn failing_to_set_the_destination_never_forwards() {
        let host = FakeHost::default();
        publish(&host, &sample(1));
        host.filter_state_fails.set(true);
        let mut cache = HttpRouting::default();
        let (status, reason, _) = send(&host, &mut cache, "website.com", "/").unwrap_err();
        assert_eq!((status, reason.as_str()), (503, ERROR));
    }

    #[test]
    fn non_utf8_and_missing_headers_do_not_panic() {
        let host = FakeHost::default();
        publish(&host, &sticky_table(1, &[9001]));
        let mut cache = HttpRouting::default();
        host.request_headers.borrow_mut().insert(":authority".into(), vec![0xff, 0xfe]);
        assert_eq!(on_request_headers(&host, &mut cache), Verdict::Replied);
        assert_eq!(host.replies.borrow()[0].body, "no route for \u{fffd}\u{fffd}", "read lossily");
        host.request("shop.com", "/");
        host.request_headers.borrow_mut().insert("cookie".into(), vec![0xff, b'=', 0xfe]);
        assert!(matches!(on_request_headers(&host, &mut cache), Verdict::Forwarded(_)));
        host.request_headers.borrow_mut().clear();
        assert_eq!(on_request_headers(&host, &mut cache), Verdict::Replied);
    }
    const KEY: [u8; 16] = *b"sixteen byte key";

    /// `shop.com` with a session cookie `berth` over three endpoints, and `other.com` with the same cookie name
    /// over endpoints of its own.
    fn sticky_table(version: u64, shop: &[u16]) -> Table {
        let mut table = sample(version);
        for (host, ports) in [("shop.com", shop), ("other.com", &[9101, 9102][..])] {
            let mut sticky = route(host, PathMatch::Prefix("/".into()), ports);
            sticky.session_cookie = Some("berth".into());
            table.http.push(sticky);
        }
        table.affinity_key = Some(AffinityKey::from_bytes(KEY));
        table
    }

    /// Sends a request with `cookie` (the `Cookie` header, if any): where it went and the cookie it was issued.
    fn send_with_cookie(
        host: &FakeHost,
        cache: &mut HttpRouting,
        authority: &str,
        cookie: Option<&str>,
    ) -> (String, Option<String>) {
        host.request(authority, "/");
        if let Some(cookie) = cookie {
            host.request_headers.borrow_mut().insert("cookie".into(), cookie.as_bytes().to_vec());
        }
        host.filter_state.borrow_mut().clear();
        host.response_headers_added.borrow_mut().clear();
        let Verdict::Forwarded(forwarded) = on_request_headers(host, cache) else { panic!("not forwarded") };
        on_response_headers(host, &mut cache.health, &forwarded);
        let issued = host.response_headers_added.borrow().iter().find(|(k, _)| k == "set-cookie").map(|(_, v)| {
            let value = v.strip_prefix("berth=").unwrap().strip_suffix("; Path=/; HttpOnly").unwrap();
            format!("berth={value}")
        });
        assert_eq!(forwarded.endpoint.to_string(), destination(&host.filter_state.borrow()[0]));
        (destination(&host.filter_state.borrow()[0]), issued)
    }

    #[test]
    fn a_session_cookie_is_issued_once_and_keeps_its_endpoint() {
        let host = FakeHost::default();
        publish(&host, &sticky_table(1, &[9001, 9002, 9003]));
        let mut cache = HttpRouting::default();
        let (first, cookie) = send_with_cookie(&host, &mut cache, "shop.com", None);
        let cookie = cookie.expect("the first response sets the cookie");
        let value = cookie.strip_prefix("berth=").unwrap();
        assert_eq!(value.len(), 16, "{cookie}");
        assert!(!value.contains("9001") && !value.contains("127"), "the value hides the address: {cookie}");
        for _ in 0..100 {
            let header = format!("theme=dark; {cookie}");
            assert_eq!(send_with_cookie(&host, &mut cache, "shop.com", Some(&header)), (first.clone(), None));
        }
        // Without the cookie, the route keeps rotating.
        let spread: HashSet<String> = (0..3).map(|_| send_with_cookie(&host, &mut cache, "shop.com", None).0).collect();
        assert_eq!(spread.len(), 3);
    }

    #[test]
    fn a_session_moves_and_is_reissued_when_its_endpoint_leaves_the_route() {
        let host = FakeHost::default();
        publish(&host, &sticky_table(1, &[9001, 9002]));
        let mut cache = HttpRouting::default();
        let (first, cookie) = send_with_cookie(&host, &mut cache, "shop.com", None);
        let cookie = cookie.unwrap();
        let remaining: Vec<u16> = [9001, 9002].into_iter().filter(|p| !first.ends_with(&p.to_string())).collect();
        publish(&host, &sticky_table(2, &remaining));
        cache.on_tick(&host);
        let (moved, reissued) = send_with_cookie(&host, &mut cache, "shop.com", Some(&cookie));
        assert_eq!(moved, format!("127.0.0.1:{}", remaining[0]));
        let reissued = reissued.expect("a new cookie for the new endpoint");
        assert_ne!(reissued, cookie);
        assert_eq!(send_with_cookie(&host, &mut cache, "shop.com", Some(&reissued)), (moved, None));
    }

    #[test]
    fn a_forged_or_foreign_cookie_never_leaves_the_route() {
        let host = FakeHost::default();
        publish(&host, &sticky_table(1, &[9001, 9002]));
        let mut cache = HttpRouting::default();
        let (other, foreign) = send_with_cookie(&host, &mut cache, "other.com", None);
        let key = AffinityKey::from_bytes(KEY);
        let forged_for_api = format!("berth={}", key.cookie_value("127.0.0.1:8002".parse().unwrap()));
        for cookie in [foreign.unwrap(), forged_for_api, "berth=127.0.0.1:8002".into(), "berth=".into()] {
            let (landed, reissued) = send_with_cookie(&host, &mut cache, "shop.com", Some(&cookie));
            assert!(landed == "127.0.0.1:9001" || landed == "127.0.0.1:9002", "{cookie} reached {landed}");
            assert!(reissued.is_some(), "{cookie} is replaced");
        }
        assert!(other.starts_with("127.0.0.1:910"));
    }

    #[test]
    fn only_routes_with_a_session_cookie_read_the_cookie_header() {
        let host = FakeHost::default();
        publish(&host, &sticky_table(1, &[9001]));
        let mut cache = HttpRouting::default();
        send_with_cookie(&host, &mut cache, "website.com", Some("berth=x"));
        assert!(!host.header_reads.borrow().contains(&"cookie".to_string()), "{:?}", host.header_reads.borrow());
        assert!(host.response_headers_added.borrow().is_empty());
        send_with_cookie(&host, &mut cache, "shop.com", Some("berth=x"));
        assert_eq!(host.header_reads.borrow().iter().filter(|h| *h == "cookie").count(), 1);
    }

    #[test]
    fn a_table_without_a_key_serves_sticky_routes_without_cookies() {
        let host = FakeHost::default();
        let mut table = sticky_table(1, &[9001, 9002]);
        table.affinity_key = None;
        publish(&host, &table);
        let mut cache = HttpRouting::default();
        assert_eq!(send_with_cookie(&host, &mut cache, "shop.com", None).1, None);
    }
}
