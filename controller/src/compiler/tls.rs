//! VirtualService `tls` routes → TLS passthrough routes: every server name of every `match` of every `tls` entry,
//! to the entry's weighted destinations, on Berth's TLS port. Clients reach each at `<server name>:<tls port>`.
//!
//! Istio's rules are kept where they are cheap to keep: a `tls` entry needs a `match`, a match needs `sniHosts`,
//! and each server name must fall within the VirtualService's `hosts` (`a.example.com` within `a.example.com`,
//! `*.example.com` or `*`; `*.a.example.com` within `*.example.com`). A match `port` may name only Berth's TLS port,
//! and every other condition is refused rather than ignored: ignoring one would route connections the user meant
//! to exclude. Wildcards match as Berth's matcher does ([`berth_table::SniRouter`]): `*.example.com` covers names
//! below `example.com` at any depth, not `example.com` itself.

use berth_table::{Source, TlsRoute, check_sni_pattern};

use super::backends::Resolver;
use super::conflicts::Claimant;
use super::ports::Assignment;
use super::virtual_service::destinations;
use super::{Content, Problem, source_of};
use crate::objects::{ObjectKey, VirtualService};

/// The port clients reach TLS passthrough routes at unless `berth run --tls-port` says otherwise.
pub const DEFAULT_TLS_PORT: u16 = 443;

/// A TLS route an object asks for, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedTls {
    /// `spec.tls[0].match[1].sniHosts[0]`, for conflict messages.
    pub field: String,
    /// The index of the `tls` entry, which names the route in addresses (`tls[0]`).
    pub rule: usize,
    pub route: TlsRoute,
}

/// The TLS routes of `vs`, or every problem with them. `tls_port` is the port Berth serves TLS passthrough on.
pub fn compile(
    vs: &VirtualService,
    key: &ObjectKey,
    resolver: &Resolver<'_>,
    tls_port: u16,
) -> Result<Vec<WantedTls>, Vec<Problem>> {
    if vs.spec.tls.is_empty() {
        return Ok(Vec::new());
    }
    let namespace = key.namespace.as_str();
    let source = source_of(key);
    let hosts: Vec<String> = vs.spec.hosts.iter().map(|h| normalize(h)).collect();
    let mut problems = Vec::new();
    let mut wanted = Vec::new();
    for (i, rule) in vs.spec.tls.iter().enumerate() {
        let at = format!("spec.tls[{i}]");
        if rule.matches.is_empty() {
            let message = "empty; name the server names to route, e.g. match: [{sniHosts: [db.example.com]}]";
            problems.push(Problem::new(format!("{at}.match"), message));
        }
        let mut names = Vec::new();
        for (j, m) in rule.matches.iter().enumerate() {
            let field = format!("{at}.match[{j}]");
            for condition in m.other.keys() {
                let message = "berth tells tls connections apart by server name (sniHosts) only; remove this \
                               condition or serve this route another way";
                problems.push(Problem::new(format!("{field}.{condition}"), message));
            }
            if let Some(port) = m.port.filter(|port| *port != u32::from(tls_port)) {
                let message = format!(
                    "berth serves tls passthrough on port {tls_port} only (berth run --tls-port), not {port}; remove \
                     port or set it to {tls_port}"
                );
                problems.push(Problem::new(format!("{field}.port"), message));
            }
            if m.sni_hosts.is_empty() {
                let message = "empty; list the server names (SNI) to route, e.g. [db.example.com]";
                problems.push(Problem::new(format!("{field}.sniHosts"), message));
            }
            for (k, sni) in m.sni_hosts.iter().enumerate() {
                let field = format!("{field}.sniHosts[{k}]");
                let sni = normalize(sni);
                if let Err(reason) = check_sni_pattern(&sni) {
                    problems.push(Problem::new(field, format!("{sni:?} {reason}")));
                } else if !hosts.iter().any(|host| within(&sni, host)) {
                    let message = format!(
                        "{sni} is not within the VirtualService's hosts ({}); each sniHost must be one of them or \
                         fall under one of their wildcards, as Istio requires",
                        if hosts.is_empty() { "none".to_string() } else { hosts.join(", ") }
                    );
                    problems.push(Problem::new(field, message));
                } else {
                    names.push((field, sni));
                }
            }
        }
        if rule.route.is_empty() {
            let message = "no destination; name the Service connections go to";
            problems.push(Problem::new(format!("{at}.route"), message));
        }
        let backends = destinations(&rule.route, &at, namespace, resolver, &mut problems);
        for (field, sni) in names {
            let route = TlsRoute { sni, backends: backends.clone(), source: source.clone() };
            wanted.push(WantedTls { field, rule: i, route });
        }
    }
    if problems.is_empty() { Ok(wanted) } else { Err(problems) }
}

/// Lower-case, without a trailing dot: how hosts and server names are compared.
fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether server name pattern `sni` falls within VirtualService host `host` (Istio's "subset of").
fn within(sni: &str, host: &str) -> bool {
    if host == "*" || sni == host {
        return true;
    }
    // `*.example.com` covers `a.example.com`, `a.b.example.com` and `*.a.example.com`.
    host.strip_prefix('*').is_some_and(|suffix| sni.len() > suffix.len() && sni.ends_with(suffix))
}

/// Where clients would reach the TLS routes `claimants` ask for: `<server name>:<tls_port>`, one per name and
/// object, labelled with the route (`tls[0]`), with the source the table names the route by.
pub fn addresses(claimants: &[Claimant], tls_port: u16) -> Vec<(Source, Assignment)> {
    let mut addresses = Vec::new();
    // Most objects have no tls routes: their names are not worth formatting.
    for claimant in claimants.iter().filter(|c| !c.wants.tls.is_empty()) {
        let object = claimant.key.to_string();
        // Repeats within an object are no conflict: the first one listed is the route.
        let mut seen: Vec<&str> = Vec::new();
        for wanted in &claimant.wants.tls {
            let sni = wanted.route.sni.as_str();
            if !seen.contains(&sni) {
                seen.push(sni);
                let assignment = Assignment {
                    object: object.clone(),
                    route: format!("tls[{}]", wanted.rule),
                    port: tls_port,
                    host: Some(sni.to_string()),
                };
                addresses.push((wanted.route.source.clone(), assignment));
            }
        }
    }
    addresses
}

/// The [`addresses`] of routes `content` serves: an object not served (an error, a lost conflict) has none.
pub fn served(addresses: Vec<(Source, Assignment)>, content: &Content) -> Vec<Assignment> {
    addresses
        .into_iter()
        .filter(|(source, a)| content.tls.iter().any(|r| Some(&r.sni) == a.host.as_ref() && r.source == *source))
        .map(|(_, a)| a)
        .collect()
}

/// The `berth.dev/address` value for one object's tcp ports and tls addresses. With tls addresses every entry is
/// labelled (`tcp[0]=tcp.example.com:31000, tls[0]=a.example.com:443`), so that reading the value back
/// ([`super::ports::parse_address_annotation`]) never takes a tls address for a held tcp port; without, it is what
/// [`super::ports::address_annotation`] writes. None when there is nothing to write.
pub fn address_annotation(tcp: Vec<&Assignment>, tls: Vec<&Assignment>) -> Option<String> {
    if tls.is_empty() {
        return (!tcp.is_empty()).then(|| super::ports::address_annotation(tcp));
    }
    let mut tcp = tcp;
    tcp.sort_by_key(|a| super::ports::route_index(&a.route));
    let parts = tcp.iter().chain(&tls).map(|a| format!("{}={}", a.route, a.describe()));
    Some(parts.collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_fall_within_hosts_as_istio_says() {
        assert!(within("a.example.com", "a.example.com"));
        assert!(within("a.example.com", "*"));
        assert!(within("*.example.com", "*"));
        assert!(within("a.example.com", "*.example.com"));
        assert!(within("a.b.example.com", "*.example.com"));
        assert!(within("*.a.example.com", "*.example.com"));
        assert!(within("*.example.com", "*.example.com"));
        assert!(!within("example.com", "*.example.com"));
        assert!(!within("*.example.com", "a.example.com"), "a wildcard is wider than a name");
        assert!(!within("b.example.com", "a.example.com"));
        assert!(!within("aexample.com", "*.example.com"));
    }

    fn assignment(route: &str, port: u16, host: &str) -> Assignment {
        Assignment { object: "o".into(), route: route.into(), port, host: Some(host.into()) }
    }

    #[test]
    fn annotations_label_every_entry_once_there_is_a_tls_address() {
        let (t0, t1) = (assignment("tcp[0]", 31000, "tcp.example.com"), assignment("tcp[1]", 31001, "tcp.example.com"));
        let (a, b) = (assignment("tls[0]", 443, "a.example.com"), assignment("tls[1]", 443, "*.b.example.com"));
        assert_eq!(address_annotation(vec![], vec![]), None);
        assert_eq!(address_annotation(vec![&t0], vec![]).as_deref(), Some("tcp.example.com:31000"));
        assert_eq!(address_annotation(vec![], vec![&a]).as_deref(), Some("tls[0]=a.example.com:443"));
        let all = address_annotation(vec![&t1, &t0], vec![&a, &b]).unwrap();
        assert_eq!(
            all,
            "tcp[0]=tcp.example.com:31000, tcp[1]=tcp.example.com:31001, tls[0]=a.example.com:443, \
             tls[1]=*.b.example.com:443"
        );
        let held = super::super::ports::parse_address_annotation(&all);
        assert_eq!(held.into_iter().collect::<Vec<_>>(), [("tcp[0]".into(), 31000), ("tcp[1]".into(), 31001)]);
        let only_tls = address_annotation(vec![], vec![&a]).unwrap();
        assert!(super::super::ports::parse_address_annotation(&only_tls).is_empty(), "never a held tcp port");
    }
}
