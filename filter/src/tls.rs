//! The TLS passthrough filter: on each new connection to Berth's TLS listener, pick the destination by the server
//! name (SNI) of the client's ClientHello and hand it to the `ORIGINAL_DST` cluster through connection filter state,
//! or close the connection. TLS is never terminated: the backend presents its own certificate.
//!
//! The listener's `tls_inspector` reads the ClientHello before any network filter runs, so the name is known in
//! `on_new_connection`, which is also the last moment to choose (`tcp_proxy`, next in the chain, picks its upstream
//! as soon as it sees the connection). Hot path: one
//! `connection.requested_server_name` property read, one hash probe per label of the name, one foreign call with the
//! chosen endpoint's pre-encoded argument; the table version and the ejection list are read on the root context's
//! tick (see [`crate::cache`]). Passive health works as for TCP ([`crate::tcp`]): one `response.flags` read when a
//! connection closes. A connection without a name,
//! with a name no route matches, or whose route has no usable endpoint is closed before `tcp_proxy` sees it and
//! counted in [`UNROUTED_COUNTER`]: continuing without a destination would send it to the connection's own
//! destination, which is Envoy's listener.

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::rc::Rc;

use berth_table::{FnvHashMap, SniRouter, Table, TlsRoute, mix64};
use log::warn;
use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, PeerType};

use crate::cache::{TableCache, View};
use crate::endpoints::{describe_backends, next_endpoint, why_none};
use crate::filter_state::{self, LifeSpan, ORIGINAL_DST_ADDRESS};
use crate::host::{Envoy, Host};
use crate::passive_health::{PassiveHealth, response_flags};
use crate::tcp::{Unrouted, Verdict};

/// The counter of TLS connections closed unrouted (no table yet, no server name, an unknown one, no endpoint, or
/// the destination could not be set). Envoy shows it in `/stats` as `wasmcustom.berth_tls_unrouted`.
pub const UNROUTED_COUNTER: &str = "berth_tls_unrouted";

/// The property `tls_inspector` fills with the ClientHello's server name (empty without one).
const SERVER_NAME: [&str; 2] = ["connection", "requested_server_name"];

/// How many distinct refused names are logged per table version: clients choose the names, so the record of what
/// was logged must not grow with them.
const LOGGED_NAMES: usize = 64;

/// One table's TLS routes, arranged for routing.
pub struct TlsView {
    version: u64,
    routes: Vec<TlsRoute>,
    router: SniRouter,
    /// Connections seen per route (indexed like `routes`), the input of [`choose_endpoint`].
    counters: Vec<u64>,
    /// `set_envoy_filter_state` arguments per endpoint (span: the downstream connection).
    destinations: FnvHashMap<SocketAddr, Box<[u8]>>,
    logged: Logged,
}

impl View for TlsView {
    fn build(table: Table, seed: u64) -> Self {
        let router = SniRouter::new(&table);
        // Only the TLS routes are kept: the other roots hold their own views of the rest.
        let Table { version, tls: routes, .. } = table;
        let backends = routes.iter().flat_map(|route| &route.backends);
        let destinations = filter_state::original_dst_arguments(backends, LifeSpan::DownstreamConnection);
        // Started from the seed for the reason the HTTP view gives.
        let counters = vec![mix64(seed); routes.len()];
        TlsView { version, counters, router, routes, destinations, logged: Logged::default() }
    }
}

impl TlsView {
    /// The endpoint for a connection naming `server_name` and its encoded destination, avoiding the `ejected`
    /// endpoints, or `None` (logged once per name) to close it.
    pub fn decide(&mut self, server_name: &str, ejected: &[SocketAddr]) -> Option<(SocketAddr, &[u8])> {
        let TlsView { version, routes, router, counters, destinations, logged } = self;
        let Some(id) = router.match_sni(server_name) else {
            if logged.first(server_name, *version) {
                warn!(
                    "no tls route for server name {} in table version {version}; closing its connections",
                    shown(server_name)
                );
            }
            return None;
        };
        let (route, counter) = (routes.get(id.0)?, counters.get_mut(id.0)?);
        let chosen = next_endpoint(&route.backends, counter, ejected);
        let decided = chosen.and_then(|endpoint| Some((endpoint.address, &**destinations.get(&endpoint.address)?)));
        if decided.is_none() && logged.first(&route.sni, *version) {
            warn!(
                "tls route for {} (from {}) in table version {version} {} ({}); closing its connections",
                route.sni,
                route.source,
                why_none(&route.backends),
                describe_backends(&route.backends)
            );
        }
        decided
    }

    fn log_once(&mut self, key: &str, problem: &str) {
        if self.logged.first(key, self.version) {
            warn!("{problem} (table version {})", self.version);
        }
    }
}

/// What was logged for one table version: at most [`LOGGED_NAMES`] names, then one line saying the rest go unlogged.
#[derive(Debug, Default)]
struct Logged {
    names: HashSet<String>,
    full: bool,
}

impl Logged {
    /// Whether a problem with `name` is new, and so worth a log line.
    fn first(&mut self, name: &str, version: u64) -> bool {
        if self.names.contains(name) {
            return false;
        }
        if self.names.len() < LOGGED_NAMES {
            return self.names.insert(name.to_string());
        }
        if !self.full {
            self.full = true;
            warn!(
                "more than {LOGGED_NAMES} server names refused in table version {version}; not logging each any more \
                 (they are counted in {UNROUTED_COUNTER})"
            );
        }
        false
    }
}

/// A client-chosen name, quoted and escaped for a log line, and cut at a DNS name's length.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(253).collect();
    format!("{cut:?}")
}

/// What every connection of one TLS root context shares (one VM thread).
#[derive(Default)]
pub struct TlsRouting {
    cache: TableCache<TlsView>,
    health: PassiveHealth,
    unrouted: Unrouted,
    /// Whether a refusal for want of a table was logged.
    logged_without_table: bool,
}

impl TlsRouting {
    /// The root context's tick: picks up a new table and every VM's ejections.
    pub fn on_tick(&mut self, host: &impl Host) {
        self.cache.refresh(host);
        self.health.refresh(host);
    }

    /// Defines the VM's unrouted counter.
    pub fn new(host: &impl Host) -> Self {
        TlsRouting { unrouted: Unrouted::define(host, UNROUTED_COUNTER), ..TlsRouting::default() }
    }
}

/// Handles a new connection: the whole per-connection logic, over any [`Host`].
pub fn on_new_connection(host: &impl Host, routing: &mut TlsRouting) -> Verdict {
    let TlsRouting { cache, health, unrouted, logged_without_table } = routing;
    let Some(view) = cache.current(host) else {
        if !*logged_without_table {
            *logged_without_table = true;
            warn!("no routing table yet; closing tls connections until one loads");
        }
        return unrouted.close(host);
    };
    let name = host.property(&SERVER_NAME).unwrap_or_default();
    let Ok(name) = std::str::from_utf8(&name) else {
        view.log_once("\u{0}not-utf8", "a tls connection's server name is not UTF-8; closing");
        return unrouted.close(host);
    };
    if name.is_empty() {
        view.log_once("", "a tls connection without a server name (SNI) has no route; closing");
        return unrouted.close(host);
    }
    let ejected = health.ejected();
    let failure = match view.decide(name, ejected) {
        Some((endpoint, encoded)) => match host.set_filter_state(encoded) {
            Ok(()) => return Verdict::Forwarded(endpoint),
            Err(status) => status,
        },
        None => return unrouted.close(host),
    };
    view.log_once("\u{0}filter-state", &format!("cannot set filter state {ORIGINAL_DST_ADDRESS} ({failure}); closing"));
    unrouted.close(host)
}

/// Handles the end of a forwarded connection: when `tcp_proxy` could not connect to `endpoint` it closes the
/// downstream connection with the `UF` response flag set, which ejects the endpoint.
pub fn on_close(host: &impl Host, routing: &mut TlsRouting, endpoint: SocketAddr) {
    routing.health.report(host, endpoint, response_flags(host));
}

/// The per-connection context Envoy creates; `routing` is shared by every connection of its root context.
pub struct TlsFilter {
    routing: Rc<RefCell<TlsRouting>>,
    /// The endpoint the connection was forwarded to, for its close.
    endpoint: Option<SocketAddr>,
}

impl TlsFilter {
    pub fn new(routing: Rc<RefCell<TlsRouting>>) -> Self {
        TlsFilter { routing, endpoint: None }
    }
}

impl Context for TlsFilter {}

impl StreamContext for TlsFilter {
    fn on_new_connection(&mut self) -> Action {
        let host = Envoy;
        // The borrow cannot be taken twice (one thread, no re-entry); if it ever were, close instead of panicking.
        let verdict = match self.routing.try_borrow_mut() {
            Ok(mut routing) => on_new_connection(&host, &mut routing),
            Err(_) => Unrouted::uncounted(UNROUTED_COUNTER).close(&host),
        };
        match verdict {
            Verdict::Forwarded(endpoint) => {
                self.endpoint = Some(endpoint);
                Action::Continue
            }
            Verdict::Closed => Action::Pause,
        }
    }

    fn on_downstream_close(&mut self, _peer_type: PeerType) {
        if let Some(endpoint) = self.endpoint.take()
            && let Ok(mut routing) = self.routing.try_borrow_mut()
        {
            on_close(&Envoy, &mut routing, endpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{TABLE_KEY, VERSION_KEY};
    use crate::host::fake::FakeHost;
    use crate::passive_health::EJECTED_KEY;
    use berth_table::{Backend, Endpoint, Source, TcpRoute};

    fn backend(ports: &[u16]) -> Backend {
        Backend {
            service: "ns/api:443".into(),
            weight: 1,
            endpoints: ports.iter().map(|p| Endpoint { address: ([127, 0, 0, 1], *p).into() }).collect(),
        }
    }

    fn route(sni: &str, endpoints: &[u16]) -> TlsRoute {
        let source = Source { kind: "VirtualService".into(), namespace: "ns".into(), name: sni.replace('*', "any") };
        TlsRoute { sni: sni.into(), backends: vec![backend(endpoints)], source }
    }

    fn sample(version: u64) -> Table {
        let mut table = Table::new(version);
        table.tls.push(route("a.example.com", &[7001]));
        table.tls.push(route("b.example.com", &[7002, 7003]));
        table.tls.push(route("*.example.com", &[7009]));
        table.tls.push(route("gone.example.com", &[]));
        let source = Source { kind: "VirtualService".into(), namespace: "ns".into(), name: "db".into() };
        table.tcp.push(TcpRoute { port: 31000, backends: vec![backend(&[8000])], source, source_ip_affinity: false });
        table
    }

    fn publish(host: &FakeHost, table: &Table) {
        host.put_shared(TABLE_KEY, &berth_table::encode(table));
        host.put_shared(VERSION_KEY, table.version.to_string().as_bytes());
    }

    fn setup(table: Option<&Table>) -> (FakeHost, TlsRouting) {
        let host = FakeHost::default();
        if let Some(table) = table {
            publish(&host, table);
        }
        let routing = TlsRouting::new(&host);
        (host, routing)
    }

    /// A connection whose ClientHello names `name` (`None`: Envoy has no such property): the destination set, or
    /// `None` when the connection was closed.
    fn connect(host: &FakeHost, routing: &mut TlsRouting, name: Option<&[u8]>) -> Option<String> {
        {
            let mut properties = host.properties.borrow_mut();
            properties.clear();
            if let Some(name) = name {
                properties.insert("connection.requested_server_name".into(), name.to_vec());
            }
        }
        host.filter_state.borrow_mut().clear();
        let closed = host.closed.get();
        match on_new_connection(host, routing) {
            Verdict::Forwarded(_) => {
                assert_eq!(host.closed.get(), closed);
                let state = host.filter_state.borrow();
                assert_eq!(state.len(), 1);
                Some(destination(&state[0]))
            }
            Verdict::Closed => {
                assert_eq!(host.closed.get(), closed + 1, "closed exactly once");
                assert!(host.filter_state.borrow().is_empty(), "no destination on a closed connection");
                None
            }
        }
    }

    fn sni(host: &FakeHost, routing: &mut TlsRouting, name: &str) -> Option<String> {
        connect(host, routing, Some(name.as_bytes()))
    }

    fn destination(encoded: &[u8]) -> String {
        let start = 2 + ORIGINAL_DST_ADDRESS.len();
        assert_eq!(encoded[start], 0x12);
        let len = encoded[start + 1] as usize;
        String::from_utf8(encoded[start + 2..start + 2 + len].to_vec()).unwrap()
    }

    #[test]
    fn routes_by_server_name_round_robin_with_the_connection_span() {
        let (host, mut routing) = setup(Some(&sample(1)));
        assert_eq!(sni(&host, &mut routing, "a.example.com").as_deref(), Some("127.0.0.1:7001"));
        let expected = filter_state::encode(ORIGINAL_DST_ADDRESS, "127.0.0.1:7001", LifeSpan::DownstreamConnection);
        assert_eq!(host.filter_state.borrow()[0], expected);
        let first = sni(&host, &mut routing, "b.example.com").unwrap();
        let second = sni(&host, &mut routing, "B.Example.com").unwrap();
        let mut both = [first.as_str(), second.as_str()];
        both.sort_unstable();
        assert_eq!(both, ["127.0.0.1:7002", "127.0.0.1:7003"], "round robin, whatever the case of the name");
        assert_eq!(sni(&host, &mut routing, "zz.example.com").as_deref(), Some("127.0.0.1:7009"), "wildcard");
        assert_eq!(host.counter(UNROUTED_COUNTER), 0);
    }

    #[test]
    fn unknown_missing_and_unusable_names_close_and_count() {
        let (host, mut routing) = setup(Some(&sample(1)));
        assert_eq!(sni(&host, &mut routing, "example.org"), None, "unknown");
        assert_eq!(sni(&host, &mut routing, "example.org"), None);
        assert_eq!(sni(&host, &mut routing, ""), None, "no SNI: empty");
        assert_eq!(connect(&host, &mut routing, None), None, "no SNI: no property");
        assert_eq!(connect(&host, &mut routing, Some(b"\xff\xfe.example.com")), None, "not UTF-8");
        assert_eq!(sni(&host, &mut routing, "gone.example.com"), None, "no endpoint");
        assert_eq!(host.counter(UNROUTED_COUNTER), 6);
        let view = routing.cache.current(&host).unwrap();
        let mut logged: Vec<&str> = view.logged.names.iter().map(String::as_str).collect();
        logged.sort_unstable();
        assert_eq!(logged, ["", "\u{0}not-utf8", "example.org", "gone.example.com"], "each logged once");
    }

    #[test]
    fn the_record_of_logged_names_stays_bounded_whatever_clients_send() {
        let (host, mut routing) = setup(Some(&sample(1)));
        for i in 0..1_000 {
            assert_eq!(sni(&host, &mut routing, &format!("probe{i}.example.org")), None);
        }
        let view = routing.cache.current(&host).unwrap();
        assert_eq!(view.logged.names.len(), LOGGED_NAMES);
        assert!(view.logged.full);
        assert_eq!(host.counter(UNROUTED_COUNTER), 1_000, "every one counted");
    }

    #[test]
    fn no_table_yet_closes_and_counts_then_routes_once_one_loads() {
        let (host, mut routing) = setup(None);
        assert_eq!(sni(&host, &mut routing, "a.example.com"), None);
        assert_eq!(sni(&host, &mut routing, "a.example.com"), None);
        assert_eq!(host.counter(UNROUTED_COUNTER), 2);
        assert!(routing.logged_without_table);
        publish(&host, &sample(1));
        assert_eq!(sni(&host, &mut routing, "a.example.com").as_deref(), Some("127.0.0.1:7001"));
    }

    #[test]
    fn a_table_change_moves_a_name_and_logs_anew() {
        let (host, mut routing) = setup(Some(&sample(1)));
        assert_eq!(sni(&host, &mut routing, "c.example.org"), None);
        let mut table = sample(2);
        table.tls[0] = route("a.example.com", &[9001]);
        table.tls.push(route("c.example.org", &[9002]));
        table.tls.remove(1);
        publish(&host, &table);
        routing.on_tick(&host);
        assert_eq!(sni(&host, &mut routing, "a.example.com").as_deref(), Some("127.0.0.1:9001"));
        assert_eq!(sni(&host, &mut routing, "c.example.org").as_deref(), Some("127.0.0.1:9002"));
        assert_eq!(sni(&host, &mut routing, "b.example.com").as_deref(), Some("127.0.0.1:7009"), "now the wildcard");
        assert!(routing.cache.current(&host).unwrap().logged.names.is_empty());
    }

    #[test]
    fn hot_path_is_one_property_read_one_foreign_call_and_the_tick_reads_the_two_small_keys() {
        let (host, mut routing) = setup(Some(&sample(1)));
        sni(&host, &mut routing, "a.example.com").unwrap();
        host.reads.borrow_mut().clear();
        host.property_reads.borrow_mut().clear();
        for _ in 0..10 {
            sni(&host, &mut routing, "b.example.com").unwrap();
        }
        assert!(host.reads.borrow().is_empty(), "{:?}", host.reads.borrow());
        assert_eq!(*host.property_reads.borrow(), vec!["connection.requested_server_name".to_string(); 10]);
        routing.on_tick(&host);
        assert_eq!(*host.reads.borrow(), [VERSION_KEY, EJECTED_KEY]);
    }

    fn fail(host: &FakeHost, routing: &mut TlsRouting, endpoint: &str) {
        host.properties.borrow_mut().insert("response.flags".into(), 0x20u64.to_le_bytes().to_vec());
        on_close(host, routing, endpoint.parse().unwrap());
        host.properties.borrow_mut().remove("response.flags");
    }

    #[test]
    fn an_endpoint_tcp_proxy_could_not_reach_is_skipped_and_a_route_with_none_left_closes() {
        let (host, mut routing) = setup(Some(&sample(1)));
        on_close(&host, &mut routing, "127.0.0.1:7002".parse().unwrap());
        fail(&host, &mut routing, "127.0.0.1:7002");
        for _ in 0..4 {
            assert_eq!(sni(&host, &mut routing, "b.example.com").as_deref(), Some("127.0.0.1:7003"));
        }
        fail(&host, &mut routing, "127.0.0.1:7001");
        assert_eq!(sni(&host, &mut routing, "a.example.com"), None);
        assert_eq!(host.counter(UNROUTED_COUNTER), 1);
        host.now.set(crate::ejection::BASE_BACKOFF_MS);
        routing.on_tick(&host);
        assert_eq!(sni(&host, &mut routing, "a.example.com").as_deref(), Some("127.0.0.1:7001"), "back in rotation");
    }

    #[test]
    fn failing_to_set_the_destination_closes() {
        let (host, mut routing) = setup(Some(&sample(1)));
        host.filter_state_fails.set(true);
        assert_eq!(sni(&host, &mut routing, "a.example.com"), None);
        assert_eq!(host.counter(UNROUTED_COUNTER), 1);
    }

    #[test]
    fn a_bad_shared_table_keeps_routing_by_the_last_good_one() {
        let (host, mut routing) = setup(Some(&sample(1)));
        sni(&host, &mut routing, "a.example.com").unwrap();
        host.put_shared(TABLE_KEY, b"garbage");
        host.put_shared(VERSION_KEY, b"2");
        routing.on_tick(&host);
        assert_eq!(sni(&host, &mut routing, "a.example.com").as_deref(), Some("127.0.0.1:7001"));
    }

    #[test]
    fn the_view_keeps_only_tls_destinations() {
        let view = TlsView::build(sample(1), 0);
        let mut ports: Vec<u16> = view.destinations.keys().map(SocketAddr::port).collect();
        ports.sort_unstable();
        assert_eq!(ports, [7001, 7002, 7003, 7009]);
    }
}
