//! VirtualService → routes: every host × every `http` entry × every `match`, to its weighted destinations; and
//! every `tcp` entry, on the port allocated to it (see [`super::ports`]), to its weighted destinations.
//!
//! Istio's meaning is kept where Berth can keep it: `uri.prefix` is a plain string prefix, a single destination
//! gets all traffic, and with several an omitted weight is 0. Conditions other than `uri` are refused rather than
//! ignored, since ignoring one would route requests the user meant to exclude. Precedence differs from Istio's
//! first-match order: the table's matcher prefers exact paths, then longer prefixes. Session affinity comes from
//! annotations (see [`super::affinity`]); rewrite, timeout, retries and header edits from each http entry (see
//! [`super::route_policy`]), where fields Berth does not honour become warnings.

use berth_table::{Backend, HttpRoute, PathMatch, TcpRoute};

use super::affinity::{session_cookie, source_ip_affinity};
use super::backends::{PortRef, Resolver, Unresolved};
use super::host_name::host_name;
use super::ports::Allocated;
use super::route_policy;
use super::{Problem, Wanted, Wants, source_of};
use crate::objects::{HttpRule, ObjectKey, RouteDestination, TcpRule, VirtualService};

/// `ports` holds the ports allocated to the object's tcp routes; a route without one is left out (allocation
/// reports why).
/// `key` is the object's key, with its cluster; `resolver` resolves within that cluster. Fields of its routes that
/// Berth does not honour are pushed to `warnings`, whether the object compiles or not.
pub fn compile(
    vs: &VirtualService,
    key: &ObjectKey,
    resolver: &Resolver<'_>,
    ports: &Allocated,
    warnings: &mut Vec<Problem>,
) -> Result<Wants, Vec<Problem>> {
    let namespace = key.namespace.as_str();
    let source = source_of(key);
    let mut problems = Vec::new();

    let mut hosts = Vec::new();
    for (i, raw) in vs.spec.hosts.iter().enumerate() {
        match host_name(raw) {
            Ok(host) => hosts.push(host),
            Err(message) => problems.push(Problem::new(format!("spec.hosts[{i}]"), message)),
        }
    }
    if hosts.is_empty() && !vs.spec.http.is_empty() {
        problems.push(Problem::new("spec.hosts", "empty; list the host names to route"));
    }
    if vs.spec.http.is_empty() && vs.spec.tcp.is_empty() && vs.spec.tls.is_empty() {
        problems.push(Problem::new("spec.http", "empty; berth exposes a VirtualService's http, tcp and tls routes"));
    }
    let cookie = session_cookie(&vs.metadata, !vs.spec.http.is_empty()).unwrap_or_else(|problem| {
        problems.push(problem);
        None
    });
    let source_ip_affinity = source_ip_affinity(&vs.metadata, !vs.spec.tcp.is_empty()).unwrap_or_else(|problem| {
        problems.push(problem);
        false
    });

    let mut rules = Vec::new();
    for (i, rule) in vs.spec.http.iter().enumerate() {
        let paths = paths(rule, i, &mut problems);
        if rule.route.is_empty() {
            let message = "no destination; berth needs a route (redirect and directResponse are not supported)";
            problems.push(Problem::new(format!("spec.http[{i}].route"), message));
        }
        let backends = destinations(&rule.route, &format!("spec.http[{i}]"), namespace, resolver, &mut problems);
        let policy = route_policy::policy(rule, i, &mut problems, warnings);
        rules.push((i, paths, backends, policy));
    }
    for (i, rule) in vs.spec.tls.iter().enumerate() {
        route_policy::not_honoured(&rule.other, &format!("spec.tls[{i}]"), warnings);
        route_policy::destinations_not_honoured(&rule.route, &format!("spec.tls[{i}]"), warnings);
    }
    let mut tcp = Vec::new();
    for (i, rule) in vs.spec.tcp.iter().enumerate() {
        route_policy::not_honoured(&rule.other, &format!("spec.tcp[{i}]"), warnings);
        route_policy::destinations_not_honoured(&rule.route, &format!("spec.tcp[{i}]"), warnings);
        let backends = tcp_backends(rule, i, namespace, resolver, &mut problems);
        if let Some(port) = ports.port(key, i) {
            tcp.push(TcpRoute { port, backends, source: source.clone(), source_ip_affinity });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let mut wants = Wants { tcp, ..Wants::default() };
    for host in &hosts {
        for (i, paths, backends, policy) in &rules {
            for (j, path) in paths {
                let field = match j {
                    Some(j) => format!("spec.http[{i}].match[{j}]"),
                    None => format!("spec.http[{i}]"),
                };
                let route = HttpRoute {
                    host: host.clone(),
                    path: path.clone(),
                    backends: backends.clone(),
                    source: source.clone(),
                    session_cookie: cookie.clone(),
                    policy: policy.clone(),
                };
                wants.http.push(Wanted { field, route });
            }
        }
    }
    Ok(wants)
}

/// The paths of `http[i]`, each with its `match` index; no match list matches every path.
fn paths(rule: &HttpRule, i: usize, problems: &mut Vec<Problem>) -> Vec<(Option<usize>, PathMatch)> {
    if rule.matches.is_empty() {
        return vec![(None, PathMatch::Prefix("/".to_string()))];
    }
    let mut paths = Vec::new();
    for (j, m) in rule.matches.iter().enumerate() {
        let field = format!("spec.http[{i}].match[{j}]");
        for condition in m.other.keys() {
            let message = "berth matches on uri only; remove this condition or serve this route another way";
            problems.push(Problem::new(format!("{field}.{condition}"), message));
        }
        let Some(uri) = &m.uri else {
            paths.push((Some(j), PathMatch::Prefix("/".to_string())));
            continue;
        };
        match (&uri.prefix, &uri.exact, &uri.regex) {
            (_, _, Some(_)) => problems.push(Problem::new(
                format!("{field}.uri.regex"),
                "regular expressions are not supported; use prefix or exact",
            )),
            (Some(prefix), None, None) => paths.push((Some(j), PathMatch::Prefix(prefix.clone()))),
            (None, Some(exact), None) => paths.push((Some(j), PathMatch::Exact(exact.clone()))),
            _ => problems.push(Problem::new(format!("{field}.uri"), "set exactly one of prefix or exact")),
        }
    }
    paths
}

/// The weighted backends of `tcp[i]`. Match conditions are refused: Berth tells connections apart by the port
/// they arrive on only, and ignoring a condition would let through connections the user meant to exclude.
fn tcp_backends(
    rule: &TcpRule,
    i: usize,
    namespace: &str,
    resolver: &Resolver<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<Backend> {
    for (j, m) in rule.matches.iter().enumerate() {
        for condition in m.other.keys() {
            let message = "berth tells tcp connections apart by the port it allocates only; remove this condition \
                           or serve this route another way";
            problems.push(Problem::new(format!("spec.tcp[{i}].match[{j}].{condition}"), message));
        }
    }
    if rule.route.is_empty() {
        let message = "no destination; name the Service connections go to";
        problems.push(Problem::new(format!("spec.tcp[{i}].route"), message));
    }
    destinations(&rule.route, &format!("spec.tcp[{i}]"), namespace, resolver, problems)
}

/// The weighted backends of one route list; `at` is the rule's field path, e.g. `spec.http[0]`.
pub(super) fn destinations(
    route: &[RouteDestination],
    at: &str,
    namespace: &str,
    resolver: &Resolver<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<Backend> {
    let single = route.len() == 1;
    let mut backends = Vec::new();
    for (k, destination) in route.iter().enumerate() {
        let field = format!("{at}.route[{k}]");
        let weight = match destination.weight {
            None if single => 100,
            None => 0,
            Some(w) => match u32::try_from(w) {
                Ok(w) => w,
                Err(_) => {
                    problems.push(Problem::new(format!("{field}.weight"), format!("{w} is negative")));
                    continue;
                }
            },
        };
        let d = &destination.destination;
        if d.subset.is_some() {
            let message = "subsets are not supported; route to a Service (one per version) instead";
            problems.push(Problem::new(format!("{field}.destination.subset"), message));
            continue;
        }
        let Some((service, service_ns)) = service_name(&d.host, namespace) else {
            let message = format!(
                "{:?} is not a Service of this cluster; use name, name.namespace or name.namespace.svc.cluster.local",
                d.host
            );
            problems.push(Problem::new(format!("{field}.destination.host"), message));
            continue;
        };
        let port = match d.port.as_ref().map(|p| i32::try_from(p.number)) {
            None => None,
            Some(Ok(number)) => Some(PortRef::Number(number)),
            Some(Err(_)) => {
                problems.push(Problem::new(format!("{field}.destination.port.number"), "out of range"));
                continue;
            }
        };
        match resolver.backend(service_ns, service, port, weight) {
            Ok(backend) => backends.push(backend),
            Err(unresolved) => {
                let at = match (&unresolved, port) {
                    (Unresolved::Port(_), Some(_)) => "destination.port.number",
                    (Unresolved::Port(_), None) => "destination.port",
                    _ => "destination.host",
                };
                problems.push(Problem::new(format!("{field}.{at}"), unresolved.message()));
            }
        }
    }
    backends
}

/// `name`, `name.ns`, `name.ns.svc` or `name.ns.svc.cluster.local` → (name, namespace).
fn service_name<'a>(host: &'a str, namespace: &'a str) -> Option<(&'a str, &'a str)> {
    let parts: Vec<&str> = host.split('.').collect();
    match parts.as_slice() {
        [name] => Some((*name, namespace)),
        [name, ns] | [name, ns, "svc"] | [name, ns, "svc", "cluster", "local"] => Some((*name, *ns)),
        _ => None,
    }
    .filter(|(name, ns)| !name.is_empty() && !ns.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_in_every_form() {
        assert_eq!(service_name("svc", "ns"), Some(("svc", "ns")));
        assert_eq!(service_name("svc.other", "ns"), Some(("svc", "other")));
        assert_eq!(service_name("svc.other.svc", "ns"), Some(("svc", "other")));
        assert_eq!(service_name("svc.other.svc.cluster.local", "ns"), Some(("svc", "other")));
        assert_eq!(service_name("www.example.com", "ns"), None);
        assert_eq!(service_name("svc.other.svc.example.org", "ns"), None);
        assert_eq!(service_name("", "ns"), None);
    }
}
