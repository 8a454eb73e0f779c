//! The TCP filter: on each new connection, pick the destination by the local port it arrived on and hand it to the
//! `ORIGINAL_DST` cluster through connection filter state, or close the connection.
//!
//! Everything happens in `on_new_connection`: `tcp_proxy`, the next filter, picks its upstream as soon as it sees
//! the connection, so a later callback would be too late. Hot path: one `destination.port` property read, one
//! foreign call with the chosen endpoint's pre-encoded argument; a route with source-IP affinity reads
//! `source.address` too, and hashes it over the route's endpoints. The table version and the ejection list are
//! read on the root context's tick, not per connection (see [`crate::cache`]). Passive health adds one
//! `response.flags` read when a connection closes (how the filter learns that `tcp_proxy` could not connect). A
//! connection never continues without its destination: the `ORIGINAL_DST` cluster would otherwise connect to the
//! connection's own destination, which is Envoy's listener. A refused connection is closed before `tcp_proxy` sees
//! it (so no upstream connection is attempted), counted in [`UNROUTED_COUNTER`], and logged once per port per table
//! version.

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use berth_table::{AffinityKey, ClientAffinity, FnvHashMap, Table, TcpRoute, TcpRouter, mix64};
use log::warn;
use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, PeerType};

use crate::cache::{TableCache, View};
use crate::endpoints::{describe_backends, next_endpoint, why_none};
use crate::filter_state::{self, LifeSpan, ORIGINAL_DST_ADDRESS};
use crate::host::{Envoy, Host};
use crate::passive_health::{PassiveHealth, response_flags};

/// The counter of connections closed unrouted (no table yet, no route for the port, no endpoint, or the
/// destination could not be set). Envoy shows it in `/stats` as `wasmcustom.berth_tcp_unrouted`.
pub const UNROUTED_COUNTER: &str = "berth_tcp_unrouted";

/// One table's TCP routes, arranged for routing.
pub struct TcpView {
    version: u64,
    routes: Vec<TcpRoute>,
    router: TcpRouter,
    /// Connections seen per route (indexed like `routes`), the input of [`choose_endpoint`].
    counters: Vec<u64>,
    /// Per route (indexed like `routes`), for a route with source-IP affinity: its endpoints arranged for hashing
    /// client addresses, with the table's key.
    affinity: Vec<Option<(AffinityKey, ClientAffinity)>>,
    /// `set_envoy_filter_state` arguments per endpoint (span: the downstream connection), encoded once per table.
    destinations: FnvHashMap<SocketAddr, Box<[u8]>>,
    /// Ports whose refusal was already logged for this table version.
    logged: HashSet<u16>,
}

impl View for TcpView {
    fn build(table: Table, seed: u64) -> Self {
        let router = TcpRouter::new(&table);
        // Only the TCP routes are kept: the HTTP filter's root holds its own view of the rest.
        let Table { version, tcp: routes, affinity_key, .. } = table;
        let backends = routes.iter().flat_map(|route| &route.backends);
        let destinations = filter_state::original_dst_arguments(backends, LifeSpan::DownstreamConnection);
        // Started from the seed for the reason the HTTP view gives.
        let counters = vec![mix64(seed); routes.len()];
        let affinity = routes.iter().map(|route| client_affinity(route, affinity_key.as_ref())).collect();
        TcpView { version, counters, affinity, router, routes, destinations, logged: HashSet::new() }
    }
}

/// A route's affinity structure; `None` without affinity, or (logged) when the table has no key to hash with.
fn client_affinity(route: &TcpRoute, key: Option<&AffinityKey>) -> Option<(AffinityKey, ClientAffinity)> {
    if !route.source_ip_affinity {
        return None;
    }
    let Some(key) = key else {
        warn!(
            "tcp route for port {} (from {}) asks for source-IP affinity but the table has no affinity_key; \
             spreading its connections without it",
            route.port, route.source
        );
        return None;
    };
    Some((*key, ClientAffinity::new(key, &route.backends)))
}

impl TcpView {
    /// The endpoint for a connection to `port` and its encoded destination, avoiding the `ejected` endpoints, or
    /// `None` (logged once per port) to close it. `client` reads the client's address; it is called only for a
    /// route with source-IP affinity.
    pub fn decide(
        &mut self,
        port: u16,
        client: impl FnOnce() -> Option<IpAddr>,
        ejected: &[SocketAddr],
    ) -> Option<(SocketAddr, &[u8])> {
        let TcpView { version, routes, router, counters, affinity, destinations, logged } = self;
        let Some(id) = router.match_port(port) else {
            if logged.insert(port) {
                warn!("no tcp route for port {port} in table version {version}; closing its connections");
            }
            return None;
        };
        let (route, counter) = (routes.get(id.0)?, counters.get_mut(id.0)?);
        let usable = |endpoint: &berth_table::Endpoint| !ejected.contains(&endpoint.address);
        // A client whose address cannot be read is spread like any other connection.
        let hashed = match affinity.get(id.0) {
            Some(Some((key, affinity))) => {
                client().and_then(|ip| affinity.choose(&route.backends, key.client_hash(ip), usable))
            }
            _ => None,
        };
        let chosen = hashed.or_else(|| next_endpoint(&route.backends, counter, ejected));
        let decided = chosen.and_then(|endpoint| Some((endpoint.address, &**destinations.get(&endpoint.address)?)));
        if decided.is_none() && logged.insert(port) {
            warn!(
                "tcp route for port {port} (from {}) in table version {version} {} ({}); closing its connections",
                route.source,
                why_none(&route.backends),
                describe_backends(&route.backends)
            );
        }
        decided
    }

    fn log_once(&mut self, port: u16, problem: &str) {
        if self.logged.insert(port) {
            warn!("{problem} (port {port}, table version {})", self.version);
        }
    }
}

/// What every connection of one TCP root context shares (one VM thread).
#[derive(Default)]
pub struct TcpRouting {
    cache: TableCache<TcpView>,
    health: PassiveHealth,
    unrouted: Unrouted,
    /// Ports whose connections were refused (and logged) before any table had loaded.
    logged_without_table: HashSet<u16>,
}

impl TcpRouting {
    /// The root context's tick: picks up a new table and every VM's ejections.
    pub fn on_tick(&mut self, host: &impl Host) {
        self.cache.refresh(host);
        self.health.refresh(host);
    }

    /// Defines the VM's unrouted counter.
    pub fn new(host: &impl Host) -> Self {
        TcpRouting { unrouted: Unrouted::define(host, UNROUTED_COUNTER), ..TcpRouting::default() }
    }
}

/// A network filter's counter of the connections it closed unrouted ([`UNROUTED_COUNTER`] for TCP,
/// [`crate::tls::UNROUTED_COUNTER`] for TLS), and the closing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unrouted {
    name: &'static str,
    /// `None` when Envoy did not define it (or before it was).
    id: Option<u32>,
}

impl Unrouted {
    /// Defines the VM's counter `name`; a failure only costs the count, which is logged.
    pub fn define(host: &impl Host, name: &'static str) -> Self {
        let id = match host.define_counter(name) {
            Ok(id) => Some(id),
            Err(status) => {
                warn!("cannot define the counter {name}: {status}; unrouted connections go uncounted");
                None
            }
        };
        Unrouted { name, id }
    }

    /// One that closes without counting, for a filter that has no routing state to count in.
    pub fn uncounted(name: &'static str) -> Self {
        Unrouted { name, id: None }
    }

    /// Closes the current connection before `tcp_proxy` sees it, and counts it.
    pub fn close(self, host: &impl Host) -> Verdict {
        if let Err(status) = host.close_downstream() {
            warn!("cannot close a connection without a destination ({}): {status}", self.name);
        }
        if let Some(id) = self.id
            && let Err(status) = host.increment_counter(id)
        {
            warn!("cannot count an unrouted connection in {}: {status}", self.name);
        }
        Verdict::Closed
    }
}

/// How a connection ended in the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The destination is set to this endpoint: continue to `tcp_proxy`.
    Forwarded(SocketAddr),
    /// The connection was closed: stop.
    Closed,
}

/// Handles a new connection: the whole per-connection logic, over any [`Host`].
pub fn on_new_connection(host: &impl Host, routing: &mut TcpRouting) -> Verdict {
    let TcpRouting { cache, health, unrouted, logged_without_table } = routing;
    let Some(view) = cache.current(host) else {
        let port = destination_port(host).unwrap_or(0);
        if logged_without_table.insert(port) {
            warn!("no routing table yet; closing connections to port {port} until one loads");
        }
        return unrouted.close(host);
    };
    let Some(port) = destination_port(host) else {
        view.log_once(0, "cannot read the connection's destination port; closing");
        return unrouted.close(host);
    };
    let ejected = health.ejected();
    let failure = match view.decide(port, || client_ip(host), ejected) {
        Some((endpoint, encoded)) => match host.set_filter_state(encoded) {
            Ok(()) => return Verdict::Forwarded(endpoint),
            Err(status) => status,
        },
        None => return unrouted.close(host),
    };
    view.log_once(port, &format!("cannot set filter state {ORIGINAL_DST_ADDRESS} ({failure}); closing"));
    unrouted.close(host)
}

/// Handles the end of a forwarded connection: when `tcp_proxy` could not connect to `endpoint` it closes the
/// downstream connection with the `UF` response flag set, which ejects the endpoint.
pub fn on_close(host: &impl Host, routing: &mut TcpRouting, endpoint: SocketAddr) {
    routing.health.report(host, endpoint, response_flags(host));
}

/// The client's IP address, from `source.address` (`IP:PORT`).
fn client_ip(host: &impl Host) -> Option<IpAddr> {
    let address = host.property(&["source", "address"])?;
    let address: SocketAddr = std::str::from_utf8(&address).ok()?.parse().ok()?;
    Some(address.ip())
}

/// The local port the connection arrived on: `destination.port` (a little-endian 64-bit integer), else the port of
/// `destination.address` (`IP:PORT`). `None` when neither reads as a port.
fn destination_port(host: &impl Host) -> Option<u16> {
    let from_port = host
        .property(&["destination", "port"])
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .and_then(|bytes| u16::try_from(i64::from_le_bytes(bytes)).ok())
        .filter(|port| *port != 0);
    from_port.or_else(|| {
        let address = host.property(&["destination", "address"])?;
        let address: SocketAddr = std::str::from_utf8(&address).ok()?.parse().ok()?;
        Some(address.port()).filter(|port| *port != 0)
    })
}

/// The per-connection context Envoy creates; `routing` is shared by every connection of its root context.
pub struct TcpFilter {
    routing: Option<Rc<RefCell<TcpRouting>>>,
    /// The endpoint the connection was forwarded to, for its close.
    endpoint: Option<SocketAddr>,
}

impl TcpFilter {
    /// A filter routing by the root's state; `None` for a root whose role is not TCP, which closes every connection.
    pub fn new(routing: Option<Rc<RefCell<TcpRouting>>>) -> Self {
        TcpFilter { routing, endpoint: None }
    }
}

impl Context for TcpFilter {}

impl StreamContext for TcpFilter {
    fn on_new_connection(&mut self) -> Action {
        let host = Envoy;
        // The borrow cannot be taken twice (one thread, no re-entry); if it ever were, close instead of panicking.
        let verdict = match self.routing.as_ref().map(|routing| routing.try_borrow_mut()) {
            Some(Ok(mut routing)) => on_new_connection(&host, &mut routing),
            Some(Err(_)) => Unrouted::uncounted(UNROUTED_COUNTER).close(&host),
            None => {
                warn!("a network filter whose plugin is not configured with role tcp closes its connection");
                Unrouted::uncounted(UNROUTED_COUNTER).close(&host)
            }
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
            && let Some(Ok(mut routing)) = self.routing.as_ref().map(|routing| routing.try_borrow_mut())
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
    use berth_table::{Backend, Endpoint, HttpRoute, PathMatch, Source};

    fn backend(ports: &[u16]) -> Backend {
        Backend {
            service: "ns/db:3306".into(),
            weight: 1,
            endpoints: ports.iter().map(|p| Endpoint { address: ([127, 0, 0, 1], *p).into() }).collect(),
        }
    }

    fn route(port: u16, endpoints: &[u16]) -> TcpRoute {
        let source = Source { kind: "VirtualService".into(), namespace: "ns".into(), name: format!("p{port}") };
        TcpRoute { port, backends: vec![backend(endpoints)], source, source_ip_affinity: false }
    }

    fn sample(version: u64) -> Table {
        let mut table = Table::new(version);
        table.tcp.push(route(31000, &[7001]));
        table.tcp.push(route(31001, &[7002, 7003]));
        table.tcp.push(route(31002, &[]));
        table.http.push(HttpRoute {
            host: "web.com".into(),
            path: PathMatch::Prefix("/".into()),
            backends: vec![backend(&[8000])],
            source: Source { kind: "Ingress".into(), namespace: "ns".into(), name: "web".into() },
            session_cookie: None,
            policy: None,
        });
        table
    }

    fn publish(host: &FakeHost, table: &Table) {
        host.put_shared(TABLE_KEY, &berth_table::encode(table));
        host.put_shared(VERSION_KEY, table.version.to_string().as_bytes());
    }

    fn setup(table: Option<&Table>) -> (FakeHost, TcpRouting) {
        let host = FakeHost::default();
        if let Some(table) = table {
            publish(&host, table);
        }
        let routing = TcpRouting::new(&host);
        (host, routing)
    }

    /// Connects to `port`: the destination set, or `None` when the connection was closed.
    fn connect(host: &FakeHost, routing: &mut TcpRouting, port: u16) -> Option<String> {
        host.connect_to(port);
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

    fn destination(encoded: &[u8]) -> String {
        let start = 2 + ORIGINAL_DST_ADDRESS.len();
        assert_eq!(encoded[start], 0x12);
        let len = encoded[start + 1] as usize;
        String::from_utf8(encoded[start + 2..start + 2 + len].to_vec()).unwrap()
    }

    #[test]
    fn routes_by_local_port_round_robin() {
        let (host, mut routing) = setup(Some(&sample(1)));
        assert_eq!(connect(&host, &mut routing, 31000).as_deref(), Some("127.0.0.1:7001"));
        assert_eq!(connect(&host, &mut routing, 31001).as_deref(), Some("127.0.0.1:7002"));
        assert_eq!(connect(&host, &mut routing, 31001).as_deref(), Some("127.0.0.1:7003"));
        assert_eq!(connect(&host, &mut routing, 31001).as_deref(), Some("127.0.0.1:7002"));
        assert_eq!(connect(&host, &mut routing, 31000).as_deref(), Some("127.0.0.1:7001"));
        assert_eq!(host.counter(UNROUTED_COUNTER), 0);
    }

    #[test]
    fn filter_state_argument_is_the_connection_span_original_dst_key() {
        let (host, mut routing) = setup(Some(&sample(1)));
        connect(&host, &mut routing, 31000).unwrap();
        let expected = filter_state::encode(ORIGINAL_DST_ADDRESS, "127.0.0.1:7001", LifeSpan::DownstreamConnection);
        assert_eq!(host.filter_state.borrow()[0], expected);
    }

    #[test]
    fn unrouted_ports_close_and_count() {
        let (host, mut routing) = setup(Some(&sample(1)));
        assert_eq!(connect(&host, &mut routing, 31005), None, "no route");
        assert_eq!(connect(&host, &mut routing, 31005), None);
        assert_eq!(connect(&host, &mut routing, 31002), None, "a route without endpoints");
        assert_eq!(host.counter(UNROUTED_COUNTER), 3);
        let view = routing.cache.current(&host).unwrap();
        assert_eq!(view.logged, HashSet::from([31005, 31002]), "logged once per port");
    }

    #[test]
    fn no_table_yet_closes_and_counts() {
        let (host, mut routing) = setup(None);
        assert_eq!(connect(&host, &mut routing, 31000), None);
        assert_eq!(connect(&host, &mut routing, 31000), None);
        assert_eq!(host.counter(UNROUTED_COUNTER), 2);
        assert_eq!(routing.logged_without_table, HashSet::from([31000]));
        publish(&host, &sample(1));
        assert_eq!(connect(&host, &mut routing, 31000).as_deref(), Some("127.0.0.1:7001"));
    }

    #[test]
    fn a_table_change_moves_a_port_and_logs_anew() {
        let (host, mut routing) = setup(Some(&sample(1)));
        assert_eq!(connect(&host, &mut routing, 31005), None);
        let mut table = sample(2);
        table.tcp[0] = route(31000, &[9001]);
        table.tcp.push(route(31005, &[9005]));
        table.tcp.remove(1);
        publish(&host, &table);
        routing.on_tick(&host);
        assert_eq!(connect(&host, &mut routing, 31000).as_deref(), Some("127.0.0.1:9001"));
        assert_eq!(connect(&host, &mut routing, 31005).as_deref(), Some("127.0.0.1:9005"));
        assert_eq!(connect(&host, &mut routing, 31001), None);
        assert_eq!(routing.cache.current(&host).unwrap().logged, HashSet::from([31001]));
    }

    #[test]
    fn hot_path_is_one_property_read_one_foreign_call_and_the_tick_reads_the_two_small_keys() {
        let (host, mut routing) = setup(Some(&sample(1)));
        connect(&host, &mut routing, 31000).unwrap();
        host.reads.borrow_mut().clear();
        host.property_reads.borrow_mut().clear();
        for _ in 0..10 {
            connect(&host, &mut routing, 31001).unwrap();
        }
        assert!(host.reads.borrow().is_empty(), "{:?}", host.reads.borrow());
        assert_eq!(*host.property_reads.borrow(), vec!["destination.port".to_string(); 10]);
        routing.on_tick(&host);
        assert_eq!(*host.reads.borrow(), [VERSION_KEY, EJECTED_KEY]);
    }

    fn fail(host: &FakeHost, routing: &mut TcpRouting, endpoint: &str) {
        host.properties.borrow_mut().insert("response.flags".into(), 0x20u64.to_le_bytes().to_vec());
        on_close(host, routing, endpoint.parse().unwrap());
        host.properties.borrow_mut().remove("response.flags");
    }

    #[test]
    fn an_endpoint_tcp_proxy_could_not_reach_is_skipped_until_its_backoff_ends() {
        let (host, mut routing) = setup(Some(&sample(1)));
        fail(&host, &mut routing, "127.0.0.1:7002");
        for _ in 0..4 {
            assert_eq!(connect(&host, &mut routing, 31001).as_deref(), Some("127.0.0.1:7003"));
        }
        host.now.set(crate::ejection::BASE_BACKOFF_MS);
        routing.on_tick(&host);
        let spread: HashSet<String> = (0..2).map(|_| connect(&host, &mut routing, 31001).unwrap()).collect();
        assert_eq!(spread.len(), 2, "back in rotation: {spread:?}");
    }

    #[test]
    fn every_endpoint_ejected_closes_at_once_and_a_clean_close_ejects_nothing() {
        let (host, mut routing) = setup(Some(&affinity_table()));
        on_close(&host, &mut routing, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(connect(&host, &mut routing, 31000).as_deref(), Some("127.0.0.1:7001"));
        fail(&host, &mut routing, "127.0.0.1:7001");
        assert_eq!(connect(&host, &mut routing, 31000), None);
        assert_eq!(host.counter(UNROUTED_COUNTER), 1);
        for port in [7101, 7102] {
            fail(&host, &mut routing, &format!("127.0.0.1:{port}"));
        }
        for i in 1..=10 {
            let client = format!("198.51.100.{i}:4000");
            assert_eq!(connect_from(&host, &mut routing, 31003, &client).as_deref(), Some("127.0.0.1:7103"));
        }
    }

    #[test]
    fn falls_back_to_the_destination_address() {
        let (host, mut routing) = setup(Some(&sample(1)));
        for (port, address) in [(b"short".to_vec(), "127.0.0.1:31000"), (vec![0; 8], "[::1]:31000")] {
            host.properties.borrow_mut().insert("destination.port".into(), port);
            host.properties.borrow_mut().insert("destination.address".into(), address.as_bytes().to_vec());
            assert!(matches!(on_new_connection(&host, &mut routing), Verdict::Forwarded(_)), "{address}");
        }
        host.properties.borrow_mut().clear();
        assert_eq!(on_new_connection(&host, &mut routing), Verdict::Closed, "nothing to read: close");
        host.properties.borrow_mut().insert("destination.port".into(), (-5i64).to_le_bytes().to_vec());
        host.properties.borrow_mut().insert("destination.address".into(), b"garbage".to_vec());
        assert_eq!(on_new_connection(&host, &mut routing), Verdict::Closed);
    }

    #[test]
    fn failing_to_set_the_destination_closes() {
        let (host, mut routing) = setup(Some(&sample(1)));
        host.filter_state_fails.set(true);
        host.connect_to(31000);
        assert_eq!(on_new_connection(&host, &mut routing), Verdict::Closed);
        assert_eq!(host.closed.get(), 1);
        assert_eq!(host.counter(UNROUTED_COUNTER), 1);
    }

    #[test]
    fn a_bad_shared_table_keeps_routing_by_the_last_good_one() {
        let (host, mut routing) = setup(Some(&sample(1)));
        connect(&host, &mut routing, 31000).unwrap();
        host.put_shared(TABLE_KEY, b"garbage");
        host.put_shared(VERSION_KEY, b"2");
        routing.on_tick(&host);
        assert_eq!(connect(&host, &mut routing, 31000).as_deref(), Some("127.0.0.1:7001"));
    }

    #[test]
    fn the_view_keeps_only_tcp_destinations() {
        let view = TcpView::build(sample(1), 0);
        let mut ports: Vec<u16> = view.destinations.keys().map(SocketAddr::port).collect();
        ports.sort_unstable();
        assert_eq!(ports, [7001, 7002, 7003]);
    }
    fn affinity_table() -> Table {
        let mut table = sample(1);
        let mut sticky = route(31003, &[7101, 7102, 7103]);
        sticky.source_ip_affinity = true;
        table.tcp.push(sticky);
        table.affinity_key = Some(AffinityKey::from_bytes([3; 16]));
        table
    }

    fn connect_from(host: &FakeHost, routing: &mut TcpRouting, port: u16, client: &str) -> Option<String> {
        host.connect_to(port);
        host.properties.borrow_mut().insert("source.address".into(), client.as_bytes().to_vec());
        connect_keeping_properties(host, routing)
    }

    fn connect_keeping_properties(host: &FakeHost, routing: &mut TcpRouting) -> Option<String> {
        host.filter_state.borrow_mut().clear();
        match on_new_connection(host, routing) {
            Verdict::Forwarded(_) => Some(destination(&host.filter_state.borrow()[0])),
            Verdict::Closed => None,
        }
    }

    #[test]
    fn source_ip_affinity_keeps_a_client_on_one_endpoint() {
        let (host, mut routing) = setup(Some(&affinity_table()));
        let first = connect_from(&host, &mut routing, 31003, "192.0.2.1:50000").unwrap();
        for client_port in 50001..50050 {
            let client = format!("192.0.2.1:{client_port}");
            assert_eq!(connect_from(&host, &mut routing, 31003, &client).unwrap(), first, "{client}");
        }
        let spread: HashSet<String> = (1..=60)
            .map(|i| connect_from(&host, &mut routing, 31003, &format!("198.51.100.{i}:4000")).unwrap())
            .collect();
        assert_eq!(spread.len(), 3, "clients spread over every endpoint: {spread:?}");
    }

    #[test]
    fn only_routes_with_affinity_read_the_client_address() {
        let (host, mut routing) = setup(Some(&affinity_table()));
        connect_from(&host, &mut routing, 31001, "192.0.2.1:50000").unwrap();
        assert!(!host.property_reads.borrow().contains(&"source.address".to_string()));
        // Without a readable client address, connections are spread as usual.
        host.connect_to(31003);
        let spread: HashSet<String> =
            (0..3).map(|_| connect_keeping_properties(&host, &mut routing).unwrap()).collect();
        assert_eq!(spread.len(), 3);
    }
}
