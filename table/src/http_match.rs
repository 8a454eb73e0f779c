//! HTTP route matching: which route of a table serves a request's Host and path.
//!
//! Precedence, decided once when the router is built so a lookup is one hash probe and a short scan:
//! 1. Host: an exact name beats the longest matching `*.suffix` wildcard, which beats `*`. The host that wins is
//!    final: a path miss there does not fall back to a less specific host (Envoy virtual-host semantics).
//! 2. Path: an exact path beats any prefix; a longer prefix beats a shorter one.
//! 3. Ties go to the route listed first in the table, which the compiler orders oldest object first.

use std::borrow::Cow;

use crate::fnv::FnvHashMap;
use crate::{PathMatch, Table};

/// Index of a route in [`Table::http`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteId(pub usize);

/// A table's HTTP routes arranged for lookup.
#[derive(Debug, Default)]
pub struct HttpRouter {
    exact_hosts: FnvHashMap<String, HostPaths>,
    /// `(".suffix", paths)`, longest suffix first.
    wildcards: Vec<(String, HostPaths)>,
    any_host: Option<HostPaths>,
}

#[derive(Debug, Default)]
struct HostPaths {
    exact: FnvHashMap<String, RouteId>,
    /// Prefix and segment routes: longest first, then table order.
    prefixes: Vec<(PathMatch, RouteId)>,
    /// The route that serves every path, when the routes do not depend on it (see [`HostRoutes::every_path`]):
    /// decided once here, so a request for such a host touches neither `exact` nor `prefixes`.
    every_path: Option<RouteId>,
}

impl HostPaths {
    fn add(&mut self, path: &PathMatch, id: RouteId) {
        match path {
            // The first route listed is the oldest: a later duplicate never displaces it.
            PathMatch::Exact(p) => {
                self.exact.entry(p.clone()).or_insert(id);
            }
            PathMatch::Prefix(_) | PathMatch::Segments(_) => self.prefixes.push((path.clone(), id)),
        }
    }

    fn finish(&mut self) {
        self.prefixes.sort_by_key(|(path, id)| (std::cmp::Reverse(path.as_str().len()), id.0));
        self.every_path = match self.prefixes.first() {
            Some((PathMatch::Prefix(p) | PathMatch::Segments(p), id)) if self.exact.is_empty() => {
                (p.is_empty() || p == "/").then_some(*id)
            }
            _ => None,
        };
    }

    fn lookup(&self, path: &str) -> Option<RouteId> {
        if let Some(id) = self.exact.get(path) {
            return Some(*id);
        }
        self.prefixes.iter().find(|(prefix, _)| path_matches(prefix, path)).map(|(_, id)| *id)
    }
}

fn path_matches(pattern: &PathMatch, path: &str) -> bool {
    match pattern {
        PathMatch::Exact(p) => path == p,
        PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        PathMatch::Segments(p) => {
            let p = p.trim_end_matches('/');
            path.starts_with(p) && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
        }
    }
}

impl HttpRouter {
    pub fn new(table: &Table) -> Self {
        let mut router = HttpRouter::default();
        for (index, route) in table.http.iter().enumerate() {
            let paths = if route.host == "*" {
                router.any_host.get_or_insert_with(HostPaths::default)
            } else if let Some(suffix) = route.host.strip_prefix('*') {
                match router.wildcards.iter().position(|(s, _)| s == suffix) {
                    Some(at) => &mut router.wildcards[at].1,
                    None => {
                        router.wildcards.push((suffix.to_string(), HostPaths::default()));
                        let last = router.wildcards.len() - 1;
                        &mut router.wildcards[last].1
                    }
                }
            } else {
                router.exact_hosts.entry(route.host.clone()).or_default()
            };
            paths.add(&route.path, RouteId(index));
        }
        router.exact_hosts.values_mut().for_each(HostPaths::finish);
        router.wildcards.iter_mut().for_each(|(_, paths)| paths.finish());
        router.wildcards.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        if let Some(paths) = router.any_host.as_mut() {
            paths.finish();
        }
        router
    }

    /// The route for a request, given its `Host`/`:authority` (any case, with or without port) and its path
    /// (with or without query string).
    pub fn match_http(&self, host: &str, path: &str) -> Option<RouteId> {
        self.match_host(host)?.match_path(path)
    }

    /// The routes of the host that serves a request's `Host`/`:authority` (any case, with or without port): the
    /// first half of [`HttpRouter::match_http`], which lets a caller skip reading the path when the host's routes
    /// do not depend on it ([`HostRoutes::every_path`]).
    pub fn match_host(&self, host: &str) -> Option<HostRoutes<'_>> {
        let host = normalize_host(host);
        let paths = self.exact_hosts.get(host.as_ref()).or_else(|| {
            self.wildcards
                .iter()
                .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
                .map(|(_, paths)| paths)
                .or(self.any_host.as_ref())
        })?;
        Some(HostRoutes(paths))
    }
}

/// The routes of one host (or wildcard, or `*`), from [`HttpRouter::match_host`].
#[derive(Debug, Clone, Copy)]
pub struct HostRoutes<'a>(&'a HostPaths);

impl HostRoutes<'_> {
    /// The route for a path (with or without query string) on this host.
    pub fn match_path(self, path: &str) -> Option<RouteId> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        self.0.lookup(path)
    }

    /// The route that serves every path of this host, when the host's routes do not depend on the path: no exact
    /// path, and the longest prefix is `/` (so it is the only one, or ties with other `/` routes listed after it).
    /// The common Ingress of one rule per host. "Every path" means every path Envoy passes on, which begins with
    /// `/`; a request whose `:path` does not (`OPTIONS *`) also goes to this route rather than get a 404.
    pub fn every_path(self) -> Option<RouteId> {
        self.0.every_path
    }
}

/// Lower-cases a Host header and drops its port and any trailing dot; borrows when nothing changes.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: keep the brackets, drop what follows `]`.
        rest.find(']').map_or(host, |end| &host[..end + 2])
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HttpRoute, Source};

    fn table(routes: &[(&str, PathMatch)]) -> Table {
        let mut table = Table::new(1);
        for (i, (host, path)) in routes.iter().enumerate() {
            table.http.push(HttpRoute {
                host: host.to_string(),
                path: path.clone(),
                backends: vec![],
                source: Source { kind: "Ingress".into(), namespace: "default".into(), name: format!("r{i}") },
                session_cookie: None,
                policy: None,
            });
        }
        table
    }

    fn exact(p: &str) -> PathMatch {
        PathMatch::Exact(p.into())
    }
    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.into())
    }
    fn segments(p: &str) -> PathMatch {
        PathMatch::Segments(p.into())
    }

    fn route(routes: &[(&str, PathMatch)], host: &str, path: &str) -> Option<usize> {
        HttpRouter::new(&table(routes)).match_http(host, path).map(|id| id.0)
    }

    fn every_path(routes: &[(&str, PathMatch)], host: &str) -> Option<usize> {
        HttpRouter::new(&table(routes)).match_host(host)?.every_path().map(|id| id.0)
    }

    #[test]
    fn a_host_whose_routes_ignore_the_path_says_so_and_agrees_with_the_full_match() {
        type Routes<'a> = &'a [(&'a str, PathMatch)];
        let cases: [(Routes, Option<usize>); 7] = [
            (&[("h", prefix("/"))], Some(0)),
            (&[("h", segments("/"))], Some(0)),
            (&[("h", segments("/")), ("h", prefix("/"))], Some(0)),
            (&[("*", prefix("/"))], Some(0)),
            (&[("h", prefix("/")), ("h", prefix("/api"))], None),
            (&[("h", prefix("/")), ("h", exact("/x"))], None),
            (&[("h", exact("/"))], None),
        ];
        for (routes, expected) in cases {
            assert_eq!(every_path(routes, "h"), expected, "{routes:?}");
            if let Some(id) = expected {
                for path in ["/", "/x", "/api/v1?q=1", "//", "/%ff"] {
                    assert_eq!(route(routes, "h", path), Some(id), "{routes:?} {path}");
                }
            }
        }
        assert_eq!(every_path(&[("other", prefix("/"))], "h"), None, "no such host");
    }

    #[test]
    fn host_is_case_insensitive_and_ignores_port_and_trailing_dot() {
        let routes = [("website.com", prefix("/"))];
        for host in ["website.com", "WebSite.COM", "website.com:8080", "website.com.", "WEBSITE.com.:80"] {
            assert_eq!(route(&routes, host, "/"), Some(0), "{host}");
        }
        assert_eq!(route(&routes, "other.com", "/"), None);
        assert_eq!(route(&routes, "website.com.evil", "/"), None);
    }

    #[test]
    fn normalizes_ipv6_literals() {
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any() {
        let routes = [("*", prefix("/")), ("*.example.com", prefix("/")), ("api.example.com", prefix("/"))];
        assert_eq!(route(&routes, "api.example.com", "/x"), Some(2));
        assert_eq!(route(&routes, "web.example.com", "/x"), Some(1));
        assert_eq!(route(&routes, "deep.web.example.com", "/x"), Some(1));
        assert_eq!(route(&routes, "example.com", "/x"), Some(0), "a wildcard needs at least one more label");
        assert_eq!(route(&routes, "elsewhere.org", "/x"), Some(0));
    }

    #[test]
    fn longest_wildcard_suffix_wins() {
        let routes = [("*.example.com", prefix("/")), ("*.eu.example.com", prefix("/"))];
        assert_eq!(route(&routes, "shop.eu.example.com", "/"), Some(1));
        assert_eq!(route(&routes, "shop.us.example.com", "/"), Some(0));
    }

    #[test]
    fn the_chosen_host_is_final_even_when_no_path_matches() {
        let routes = [("*", prefix("/")), ("website.com", exact("/only"))];
        assert_eq!(route(&routes, "website.com", "/other"), None);
    }

    #[test]
    fn exact_path_beats_any_prefix() {
        let routes = [("h", prefix("/api/v1/users")), ("h", exact("/api"))];
        assert_eq!(route(&routes, "h", "/api"), Some(1));
        assert_eq!(route(&routes, "h", "/api/v1/users"), Some(0));
    }

    #[test]
    fn longest_prefix_wins() {
        let routes = [("h", prefix("/")), ("h", prefix("/api")), ("h", segments("/api/v1"))];
        assert_eq!(route(&routes, "h", "/api/v1/x"), Some(2));
        assert_eq!(route(&routes, "h", "/api/v2"), Some(1));
        assert_eq!(route(&routes, "h", "/index.html"), Some(0));
    }

    #[test]
    fn ties_go_to_the_route_listed_first() {
        let routes = [("h", segments("/app")), ("h", prefix("/app")), ("h", exact("/x")), ("h", exact("/x"))];
        assert_eq!(route(&routes, "h", "/app/1"), Some(0));
        assert_eq!(route(&routes, "h", "/x"), Some(2));
    }

    #[test]
    fn segment_prefix_matches_whole_segments_only() {
        let routes = [("h", segments("/foo"))];
        assert_eq!(route(&routes, "h", "/foo"), Some(0));
        assert_eq!(route(&routes, "h", "/foo/"), Some(0));
        assert_eq!(route(&routes, "h", "/foo/bar"), Some(0));
        assert_eq!(route(&routes, "h", "/foobar"), None);
        let trailing = [("h", segments("/foo/"))];
        assert_eq!(route(&trailing, "h", "/foo"), Some(0), "a trailing slash in the rule is ignored");
        assert_eq!(route(&trailing, "h", "/foobar"), None);
        let root = [("h", segments("/"))];
        assert_eq!(route(&root, "h", "/anything/at/all"), Some(0));
    }

    #[test]
    fn string_prefix_matches_characters() {
        let routes = [("h", prefix("/foo"))];
        assert_eq!(route(&routes, "h", "/foobar"), Some(0));
        assert_eq!(route(&routes, "h", "/fo"), None);
    }

    #[test]
    fn exact_path_ignores_query_string() {
        let routes = [("h", exact("/status"))];
        assert_eq!(route(&routes, "h", "/status?verbose=1"), Some(0));
        assert_eq!(route(&routes, "h", "/status/"), None);
    }

    #[test]
    fn empty_table_matches_nothing() {
        assert_eq!(route(&[], "h", "/"), None);
    }
}
