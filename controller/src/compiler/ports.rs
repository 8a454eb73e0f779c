//! TCP exposure's ports: which port each `tcp` route of an exposed VirtualService listens on, and the address
//! (`host:port`) clients use.
//!
//! Pure, like the rest of the compiler. What the run loop wrote back last time comes in as [`HeldPorts`] (from the
//! state file in directory mode; from each object's `berth.dev/address` annotation in Kubernetes mode, see
//! [`parse_address_annotation`]), and [`berth_table::allocate_where`] decides:
//!
//! - The ranges are those of every valid PortAllocation; a port's host is that of the oldest PortAllocation whose
//!   ranges include it. Every `nodePort` of every Service is reserved: never handed out.
//! - Every `tcp` route of every exposed VirtualService claims a port, whether or not the object compiles: a port is
//!   a reservation tied to the request (the annotation and the route), so a Service briefly missing does not cost
//!   an object the address its clients use. Claims are taken oldest object first, then in route order.
//! - A claim keeps the port it holds (even outside the ranges: reported as a warning); the others get the lowest
//!   free port. When a claim finds none, its object gets an error naming the ranges and contributes nothing, keeps
//!   the ports it already held, and takes no new one, so nothing else changes. Ports it would have taken go to
//!   younger objects (allocation is repeated without them until no object is left half-served).
//! - Removing the annotation, a tcp route or the object frees its ports: they are simply no longer claimed.
//!
//! Claims are keyed by object and route index, `VirtualService shop/db tcp[0]`: stable across edits that leave the
//! list of tcp routes alone. Inserting a route before others renumbers those after it (and so moves their ports);
//! add new routes at the end.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::net::Ipv6Addr;

use berth_table::{Allocation, PortClaim, PortRange, allocate_where};

use super::{EXPOSE_ANNOTATION, Problem, to_diagnostic};
use crate::Diagnostic;
use crate::index::{Entry, Index};
use crate::objects::{Kind, Object, ObjectKey, PortAllocation};

/// The annotation that carries an exposed object's address(es) in Kubernetes mode.
pub const ADDRESS_ANNOTATION: &str = "berth.dev/address";

/// The port each claim held before this compilation, by claim key (`VirtualService ns/name tcp[0]`).
pub type HeldPorts = BTreeMap<String, u16>;

/// Every port handed out, by claim key.
pub type Assignments = BTreeMap<String, Assignment>;

/// One tcp route's port and where clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// `VirtualService default/db`.
    pub object: String,
    /// `tcp[0]`.
    pub route: String,
    pub port: u16,
    /// The `spec.host` of the PortAllocation whose range holds the port (for a port outside every range, of the
    /// oldest PortAllocation); none when there is no PortAllocation at all.
    pub host: Option<String>,
}

impl Assignment {
    /// The claim key: `VirtualService default/db tcp[0]`.
    pub fn key(&self) -> String {
        format!("{} {}", self.object, self.route)
    }

    /// `tcp.example.com:31000` (`[2001:db8::1]:31000` for an IPv6 host), when there is a host.
    pub fn address(&self) -> Option<String> {
        let host = self.host.as_deref()?;
        Some(if host.parse::<Ipv6Addr>().is_ok() {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        })
    }

    /// `tcp.example.com:31000`, or `port 31000` when there is no host.
    pub(crate) fn describe(&self) -> String {
        self.address().unwrap_or_else(|| format!("port {}", self.port))
    }
}

/// The claim key of route `tcp[route]` of `object`.
pub fn claim_key(object: &ObjectKey, route: usize) -> String {
    format!("{object} tcp[{route}]")
}

/// The ports to remember: what the next compilation receives as [`HeldPorts`].
pub fn held_ports(assignments: &Assignments) -> HeldPorts {
    assignments.iter().map(|(key, a)| (key.clone(), a.port)).collect()
}

/// Log lines for what changed between two sets of assignments: `VirtualService default/db tcp[0] →
/// tcp.example.com:31000` for a port handed out (or whose address changed), `... freed tcp.example.com:31000` for
/// one given back. `before` may come from [`HeldPorts`] alone (hosts unknown): then only ports are compared.
pub fn describe_changes(before: &Assignments, after: &Assignments) -> Vec<String> {
    // Freed first: a port freed and handed out again in one step reads in the order it happened.
    let mut lines: Vec<String> = before
        .iter()
        .filter(|(key, _)| !after.contains_key(*key))
        .map(|(key, was)| format!("{key} freed {}", was.describe()))
        .collect();
    for (key, now) in after {
        let changed = match before.get(key) {
            None => true,
            Some(was) => was.port != now.port || (was.host.is_some() && was.host != now.host),
        };
        if changed {
            lines.push(format!("{key} → {}", now.describe()));
        }
    }
    lines
}

/// Assignments known only by their ports (as loaded from the state file), for [`describe_changes`].
pub fn from_held(held: &HeldPorts) -> Assignments {
    held.iter()
        .map(|(key, port)| {
            let (object, route) = key.rsplit_once(' ').unwrap_or((key.as_str(), ""));
            let assignment =
                Assignment { object: object.to_string(), route: route.to_string(), port: *port, host: None };
            (key.clone(), assignment)
        })
        .collect()
}

/// The `berth.dev/address` value for one object's assignments, in route order: the bare address for a single tcp
/// route (`tcp.example.com:31000`), else `tcp[0]=tcp.example.com:31000, tcp[1]=tcp.example.com:31001`.
pub fn address_annotation<'a>(assignments: impl IntoIterator<Item = &'a Assignment>) -> String {
    let mut all: Vec<&Assignment> = assignments.into_iter().collect();
    all.sort_by_key(|a| route_index(&a.route));
    match all.as_slice() {
        [only] if only.route == "tcp[0]" => only.describe(),
        _ => all.iter().map(|a| format!("{}={}", a.route, a.describe())).collect::<Vec<_>>().join(", "),
    }
}

/// The ports a `berth.dev/address` value records, by route (`tcp[0]`): the inverse of [`address_annotation`].
/// Parts that do not end in a port are skipped (a user's edit must not stop the controller), and so are the
/// addresses of tls routes (`tls[0]=a.example.com:443`, see [`super::tls::address_annotation`]): no port is held
/// for them.
pub fn parse_address_annotation(value: &str) -> BTreeMap<String, u16> {
    let port_of = |address: &str| address.trim().rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok());
    let value = value.trim();
    if !value.contains('=') {
        return port_of(value).map(|port| BTreeMap::from([("tcp[0]".to_string(), port)])).unwrap_or_default();
    }
    value
        .split(',')
        .filter_map(|part| {
            let (route, address) = part.split_once('=')?;
            Some((route.trim().to_string(), port_of(address)?))
        })
        .filter(|(route, _)| route.starts_with("tcp["))
        .filter(|(_, port)| *port != 0)
        .collect()
}

pub(crate) fn route_index(route: &str) -> usize {
    route.trim_start_matches("tcp[").trim_end_matches(']').parse().unwrap_or(usize::MAX)
}

/// An object's tcp routes waiting for ports.
#[derive(Debug, Clone)]
pub struct Request {
    pub object: ObjectKey,
    /// How many tcp routes it lists.
    pub routes: usize,
}

/// What allocation decided.
#[derive(Debug, Default)]
pub struct Allocated {
    pub assignments: Assignments,
    /// Objects that cannot be served for want of ports, with why.
    pub problems: BTreeMap<ObjectKey, Vec<Problem>>,
    /// Problems of PortAllocations (errors) and ports kept outside the ranges (warnings).
    pub diagnostics: Vec<Diagnostic>,
}

impl Allocated {
    /// The port of route `tcp[route]` of `object`, when it has one.
    pub fn port(&self, object: &ObjectKey, route: usize) -> Option<u16> {
        self.assignments.get(&claim_key(object, route)).map(|a| a.port)
    }
}

/// A valid PortAllocation.
#[derive(Debug, Clone)]
struct Pool {
    name: String,
    host: String,
    ranges: Vec<PortRange>,
}

/// Hands out ports to `requests` (given oldest object first), keeping `held` ports where it can.
pub fn allocate(index: &Index, requests: &[Request], held: &HeldPorts) -> Allocated {
    let mut allocated = Allocated::default();
    let pools = pools(index, &mut allocated.diagnostics);
    let ranges: Vec<PortRange> = pools.iter().flat_map(|p| p.ranges.iter().copied()).collect();
    let reserved = node_ports(index);

    let claims: Vec<(usize, PortClaim)> = requests
        .iter()
        .enumerate()
        .flat_map(|(r, request)| {
            (0..request.routes).map(move |route| {
                let key = claim_key(&request.object, route);
                let held = held.get(&key).copied();
                (r, PortClaim { key, held })
            })
        })
        .collect();
    let contested = contested(&claims);
    // A contested claim gives its port up to the older holder here, and takes no other (its object is barred).
    let only_claims: Vec<PortClaim> = claims
        .iter()
        .map(|(_, c)| PortClaim { held: c.held.filter(|_| !contested.contains_key(&c.key)), ..c.clone() })
        .collect();
    let request_of: HashMap<&str, usize> = claims.iter().map(|(r, c)| (c.key.as_str(), *r)).collect();

    // Objects that may not take new ports. Without any PortAllocation that is every object (held ports are kept
    // for when one comes back); otherwise the objects that do not fit whole, found oldest first: barring one frees
    // the ports it took in part, which younger ones may then fit into.
    let mut barred: BTreeSet<usize> = if pools.is_empty() { (0..requests.len()).collect() } else { BTreeSet::new() };
    barred.extend(contested.keys().filter_map(|key| request_of.get(key.as_str())));
    let outcome = loop {
        let outcome = allocate_where(&ranges, &reserved, &only_claims, |claim| {
            request_of.get(claim.key.as_str()).is_none_or(|r| !barred.contains(r))
        });
        let short: BTreeSet<usize> = claims
            .iter()
            .zip(&outcome)
            .filter(|((r, _), a)| **a == Allocation::Full && !barred.contains(r))
            .map(|((r, _), _)| *r)
            .collect();
        let Some(&oldest) = short.first() else { break outcome };
        let took_new = claims.iter().zip(&outcome).any(|((r, claim), a)| {
            *r == oldest && matches!(a, Allocation::Granted { port, .. } if claim.held != Some(*port))
        });
        // When the oldest short object took no new port, the free ports ran out before it: every younger short
        // object took none either, and barring them all frees nothing anyone could use.
        if took_new {
            barred.insert(oldest);
        } else {
            barred.extend(short);
        }
    };

    let mut outside: Vec<(usize, usize, u16)> = Vec::new();
    for ((r, claim), allocation) in claims.iter().zip(&outcome) {
        let request = &requests[*r];
        let route = claim.key.rsplit_once(' ').map_or("", |(_, route)| route).to_string();
        let Allocation::Granted { port, outside_ranges } = *allocation else { continue };
        let host = pools
            .iter()
            .find(|p| p.ranges.iter().any(|range| range.contains(port)))
            .or(pools.first())
            .map(|p| p.host.clone());
        if outside_ranges && !barred.contains(r) {
            outside.push((*r, route_index(&route), port));
        }
        let assignment = Assignment { object: request.object.to_string(), route, port, host };
        allocated.assignments.insert(claim.key.clone(), assignment);
    }

    // The loser of a contest keeps the port on record (its address stays as its clients know it), unserved.
    for (key, (port, _)) in &contested {
        let Some(r) = request_of.get(key.as_str()) else { continue };
        let route = key.rsplit_once(' ').map_or("", |(_, route)| route).to_string();
        let host = pools.iter().find(|p| p.ranges.iter().any(|range| range.contains(*port))).or(pools.first());
        let object = requests[*r].object.to_string();
        let assignment = Assignment { object, route, port: *port, host: host.map(|p| p.host.clone()) };
        allocated.assignments.insert(key.clone(), assignment);
    }

    let described = describe_pools(&pools);
    for r in &barred {
        let request = &requests[*r];
        let lost: Vec<Problem> = claims
            .iter()
            .filter(|(owner, _)| owner == r)
            .filter_map(|(_, claim)| contested.get(&claim.key).map(|(_, problem)| problem.clone()))
            .collect();
        if !lost.is_empty() {
            allocated.problems.insert(request.object.clone(), lost);
            continue;
        }
        let problems = if pools.is_empty() {
            let message = "tcp routes need a port, but there is no PortAllocation to take one from; ask an \
                           operator to create one (apiVersion berth.dev/v1alpha1, kind PortAllocation, with \
                           spec.ranges and spec.host)";
            vec![Problem::new("spec.tcp", message)]
        } else {
            (0..request.routes)
                .filter(|route| allocated.port(&request.object, *route).is_none())
                .map(|route| {
                    let message = full_message(&ranges, &reserved, &allocated.assignments, &described);
                    Problem::new(format!("spec.tcp[{route}]"), message)
                })
                .collect()
        };
        allocated.problems.insert(request.object.clone(), problems);
    }
    for (r, route, port) in outside {
        let request = &requests[r];
        let file = index.get(&request.object).and_then(|e| e.file.clone());
        let shown = allocated.assignments.get(&claim_key(&request.object, route)).map(Assignment::describe);
        let message = format!(
            "keeps {} although no PortAllocation range includes port {port} any more ({described}); it goes on \
             routing, and to move it into the ranges remove {EXPOSE_ANNOTATION} and add it back",
            shown.unwrap_or_else(|| format!("port {port}")),
        );
        let problem = Problem::new(format!("spec.tcp[{route}]"), message);
        allocated.diagnostics.push(to_diagnostic(&request.object.to_string(), &file, problem).warning());
    }
    allocated
}

/// Claims holding a port an older object's claim holds too, with the port and the problem to report: two
/// clusters' objects that were each given the port (by another controller, before the cluster was added), or an
/// annotation copied along with an object. The port stays with the older; the younger is not served until it
/// gives the port up, rather than being moved to another port behind its clients' backs.
fn contested(claims: &[(usize, PortClaim)]) -> BTreeMap<String, (u16, Problem)> {
    let mut holders: HashMap<u16, (usize, &str)> = HashMap::new();
    let mut contested = BTreeMap::new();
    for (r, claim) in claims {
        let Some(port) = claim.held.filter(|p| *p != 0) else { continue };
        match holders.get(&port) {
            Some((first, _)) if first == r => {} // one object's own routes: not a contest between objects
            Some((_, winner)) => {
                let route = claim.key.rsplit_once(' ').map_or("", |(_, route)| route);
                let message = format!(
                    "port {port}, which {ADDRESS_ANNOTATION} records for this route, is also held by {winner}, which \
                     is older and keeps it; this object is not served until one of them gives the port up (remove \
                     {ADDRESS_ANNOTATION} from this object to be given another port)"
                );
                let problem = Problem::new(format!("spec.{route}"), message);
                contested.insert(claim.key.clone(), (port, problem));
            }
            None => {
                holders.insert(port, (*r, &claim.key));
            }
        }
    }
    contested
}

/// `no free port for this tcp route: ...; what to do`.
fn full_message(ranges: &[PortRange], reserved: &BTreeSet<u16>, assignments: &Assignments, described: &str) -> String {
    let in_ranges = |port: &u16| ranges.iter().any(|r| r.contains(*port));
    let held: BTreeSet<u16> = assignments.values().map(|a| a.port).filter(in_ranges).collect();
    let blocked = reserved.iter().filter(|p| in_ranges(p) && !held.contains(p)).count();
    let mut message =
        format!("no free port for this tcp route: every port of {described} is taken ({} by tcp routes", held.len());
    if blocked > 0 {
        _ = write!(message, ", {blocked} by NodePort Services");
    }
    message.push_str(
        "); widen a range or add one in a PortAllocation, or remove berth.dev/expose from an object that no longer \
         needs its port",
    );
    message
}

/// `31000-31010 (PortAllocation tcp), 32000-32005 (PortAllocation more)`.
fn describe_pools(pools: &[Pool]) -> String {
    if pools.is_empty() {
        return "no ranges".to_string();
    }
    pools
        .iter()
        .map(|p| {
            let ranges: Vec<String> = p.ranges.iter().map(ToString::to_string).collect();
            format!("{} (PortAllocation {})", ranges.join(", "), p.name)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every port a Service uses as its nodePort.
fn node_ports(index: &Index) -> BTreeSet<u16> {
    index
        .of_kind(Kind::Service)
        .filter_map(|entry| match &entry.object {
            Object::Service(service) => service.spec.as_ref()?.ports.as_ref(),
            _ => None,
        })
        .flatten()
        .filter_map(|port| port.node_port.and_then(|p| u16::try_from(p).ok()))
        .filter(|p| *p != 0)
        .collect()
}

/// The valid PortAllocations, oldest first; the invalid ones become errors (and contribute nothing, like any
/// object with a problem). A younger PortAllocation overlapping an older one's range with another host is warned
/// about: the older one's host is used for the ports in both.
fn pools(index: &Index, diagnostics: &mut Vec<Diagnostic>) -> Vec<Pool> {
    let mut entries: Vec<&Entry> = index.of_kind(Kind::PortAllocation).collect();
    entries.sort_by_key(|entry| super::age(entry));
    let mut pools: Vec<Pool> = Vec::new();
    for entry in entries {
        let Object::PortAllocation(allocation) = &entry.object else { continue };
        let key = entry.key().to_string();
        match validate(allocation) {
            Err(problems) => {
                diagnostics.extend(problems.into_iter().map(|p| to_diagnostic(&key, &entry.file, p)));
            }
            Ok(pool) => {
                for (i, range) in pool.ranges.iter().enumerate() {
                    let older = pools.iter().find_map(|older| {
                        let overlap = older.ranges.iter().find(|r| r.start <= range.end && range.start <= r.end)?;
                        (older.host != pool.host).then_some((older, overlap))
                    });
                    if let Some((older, overlap)) = older {
                        let message = format!(
                            "{range} overlaps {overlap} of PortAllocation {}, which is older: ports in both are \
                             reached as {}:PORT, not {}:PORT; make the ranges disjoint",
                            older.name, older.host, pool.host
                        );
                        let problem = Problem::new(format!("spec.ranges[{i}]"), message);
                        diagnostics.push(to_diagnostic(&key, &entry.file, problem).warning());
                    }
                }
                pools.push(pool);
            }
        }
    }
    pools
}

fn validate(allocation: &PortAllocation) -> Result<Pool, Vec<Problem>> {
    let mut problems = Vec::new();
    let spec = &allocation.spec;
    if spec.ranges.is_empty() {
        problems.push(Problem::new("spec.ranges", "empty; list at least one range, e.g. {start: 31000, end: 31010}"));
    }
    let mut ranges = Vec::new();
    for (i, range) in spec.ranges.iter().enumerate() {
        let port = |field: &str, value: i32| match u16::try_from(value) {
            Ok(port) if port != 0 => Ok(port),
            _ => Err(Problem::new(format!("spec.ranges[{i}].{field}"), format!("{value} is not a port (1 to 65535)"))),
        };
        match (port("start", range.start), port("end", range.end)) {
            (Ok(start), Ok(end)) if start <= end => ranges.push(PortRange { start, end }),
            (Ok(start), Ok(end)) => problems.push(Problem::new(
                format!("spec.ranges[{i}]"),
                format!("start {start} is greater than end {end}; swap them"),
            )),
            (start, end) => problems.extend([start.err(), end.err()].into_iter().flatten()),
        }
    }
    let host = spec.host.trim();
    if host.is_empty() {
        problems
            .push(Problem::new("spec.host", "empty; set the name clients reach the proxy by, e.g. tcp.example.com"));
    } else if host.contains(['/', ' ', '\t']) || (host.contains(':') && host.parse::<Ipv6Addr>().is_err()) {
        problems.push(Problem::new(
            "spec.host",
            format!("{host:?} is not a host name or IP address; write the name alone, without scheme, port or path"),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let name = allocation.metadata.name.clone().unwrap_or_default();
    Ok(Pool { name, host: host.to_string(), ranges })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(object: &str, route: &str, port: u16, host: Option<&str>) -> Assignment {
        Assignment { object: object.into(), route: route.into(), port, host: host.map(Into::into) }
    }

    #[test]
    fn addresses_and_keys() {
        let a = assignment("VirtualService default/db", "tcp[0]", 31000, Some("tcp.example.com"));
        assert_eq!(a.key(), "VirtualService default/db tcp[0]");
        assert_eq!(a.address().as_deref(), Some("tcp.example.com:31000"));
        assert_eq!(assignment("o", "tcp[0]", 1, Some("2001:db8::1")).address().as_deref(), Some("[2001:db8::1]:1"));
        assert_eq!(assignment("o", "tcp[0]", 1, None).address(), None);
        let key = ObjectKey::new(Kind::VirtualService, "default", "db");
        assert_eq!(claim_key(&key, 2), "VirtualService default/db tcp[2]");
    }

    #[test]
    fn annotations_round_trip() {
        let one = [assignment("o", "tcp[0]", 31000, Some("tcp.example.com"))];
        assert_eq!(address_annotation(&one), "tcp.example.com:31000");
        assert_eq!(parse_address_annotation("tcp.example.com:31000"), BTreeMap::from([("tcp[0]".into(), 31000)]));
        let many = [
            assignment("o", "tcp[10]", 31002, Some("t.example")),
            assignment("o", "tcp[0]", 31000, Some("t.example")),
            assignment("o", "tcp[2]", 31001, Some("t.example")),
        ];
        let text = address_annotation(&many);
        assert_eq!(text, "tcp[0]=t.example:31000, tcp[2]=t.example:31001, tcp[10]=t.example:31002");
        let parsed = parse_address_annotation(&text);
        assert_eq!(
            parsed,
            BTreeMap::from([("tcp[0]".into(), 31000), ("tcp[2]".into(), 31001), ("tcp[10]".into(), 31002)])
        );
        assert!(parse_address_annotation("garbage").is_empty());
        assert_eq!(parse_address_annotation("tcp[0]=x:1, tcp[1]=nonsense").len(), 1);
    }

    #[test]
    fn changes_are_described_once() {
        let before = Assignments::from([
            ("a tcp[0]".into(), assignment("a", "tcp[0]", 1, Some("h"))),
            ("b tcp[0]".into(), assignment("b", "tcp[0]", 2, Some("h"))),
        ]);
        let after = Assignments::from([
            ("a tcp[0]".into(), assignment("a", "tcp[0]", 1, Some("h"))),
            ("c tcp[0]".into(), assignment("c", "tcp[0]", 2, Some("h"))),
        ]);
        assert_eq!(describe_changes(&before, &after), ["b tcp[0] freed h:2", "c tcp[0] → h:2"]);
        assert!(describe_changes(&after, &after).is_empty());
        let loaded = from_held(&held_ports(&after));
        assert_eq!(loaded["a tcp[0]"].object, "a");
        assert!(describe_changes(&loaded, &after).is_empty(), "a host unknown before is no change");
    }
}
