//! TLS route matching: which route serves a connection, by the server name (SNI) its ClientHello carries.
//!
//! A route names an exact host (`db.example.com`) or a wildcard (`*.example.com`, any name ending in
//! `.example.com`, at any depth, but not `example.com` itself). Precedence, as for HTTP hosts: an exact name beats
//! the longest matching wildcard suffix; between routes naming the same pattern, the one listed first in the table
//! (the oldest object) keeps it. A name no route matches, and a connection without a server name, have no route:
//! there is no catch-all, since passing an unknown name to some backend would hand it traffic meant for another.
//!
//! A lookup is at most one hash probe per label of the name: the exact map, then the wildcard map for each suffix,
//! longest first.

use std::borrow::Cow;

use crate::fnv::FnvHashMap;
use crate::{RouteId, Table};

/// The longest DNS name (RFC 1035), and so the longest server name a route can name.
const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// A table's TLS routes arranged for lookup. [`RouteId`] indexes [`Table::tls`].
#[derive(Debug, Default)]
pub struct SniRouter {
    exact: FnvHashMap<String, RouteId>,
    /// By suffix with its leading dot (`.example.com` for `*.example.com`).
    wildcards: FnvHashMap<String, RouteId>,
}

impl SniRouter {
    /// Routes whose `sni` is not a valid pattern (see [`check_sni_pattern`]) are left out: the controller never
    /// writes one, and a table that did must not make the filter guess.
    pub fn new(table: &Table) -> Self {
        let mut router = SniRouter::default();
        for (index, route) in table.tls.iter().enumerate() {
            if check_sni_pattern(&route.sni).is_err() {
                continue;
            }
            let map = match route.sni.strip_prefix('*') {
                Some(suffix) => router.wildcards.entry(suffix.to_string()),
                None => router.exact.entry(route.sni.clone()),
            };
            // The first route listed is the oldest: a later duplicate never displaces it.
            map.or_insert(RouteId(index));
        }
        router
    }

    /// The route for a connection whose ClientHello named `server_name` (any case, a trailing dot allowed).
    /// `None` for an empty name, as Envoy reports a connection without SNI.
    pub fn match_sni(&self, server_name: &str) -> Option<RouteId> {
        let name = normalize_sni(server_name);
        if name.is_empty() {
            return None;
        }
        if let Some(id) = self.exact.get(name.as_ref()) {
            return Some(*id);
        }
        if self.wildcards.is_empty() {
            return None;
        }
        // Suffixes from the first dot on, longest first; a wildcard needs at least one character before its dot.
        name.match_indices('.').filter(|(at, _)| *at > 0).find_map(|(at, _)| self.wildcards.get(&name[at..]).copied())
    }
}

/// Lower-cases a server name and drops one trailing dot; borrows when nothing changes.
pub fn normalize_sni(name: &str) -> Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// Whether `pattern` may be a TLS route's `sni`: a lower-case DNS name, or `*.` followed by one. Labels are 1 to
/// 63 characters of `a-z`, `0-9`, `-` and `_`; the whole is at most 253 characters. The reason, when it may not.
pub fn check_sni_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("is empty".to_string());
    }
    if pattern == "*" {
        return Err("a server name that matches everything is not supported; name the hosts, or a domain as \
                    *.example.com"
            .to_string());
    }
    if pattern.len() > MAX_NAME {
        return Err(format!("is longer than {MAX_NAME} characters"));
    }
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label (two dots in a row, or a leading or trailing dot)".to_string());
        }
        if label.len() > MAX_LABEL {
            return Err(format!("has a label longer than {MAX_LABEL} characters"));
        }
        if label == "*" || label.contains('*') {
            return Err("may hold a wildcard only as its whole first label, as in *.example.com".to_string());
        }
        if let Some(bad) = label.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_')) {
            return Err(format!("holds {bad:?}; a server name is lower-case letters, digits, '-' and '.'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Source, TlsRoute};

    fn router(patterns: &[&str]) -> SniRouter {
        let mut table = Table::new(1);
        for (i, sni) in patterns.iter().enumerate() {
            let source = Source { kind: "VirtualService".into(), namespace: "ns".into(), name: format!("r{i}") };
            table.tls.push(TlsRoute { sni: sni.to_string(), backends: vec![], source });
        }
        SniRouter::new(&table)
    }

    fn route(router: &SniRouter, name: &str) -> Option<usize> {
        router.match_sni(name).map(|id| id.0)
    }

    #[test]
    fn exact_names_match_only_themselves() {
        let r = router(&["a.example.com", "b.example.com"]);
        assert_eq!(route(&r, "a.example.com"), Some(0));
        assert_eq!(route(&r, "b.example.com"), Some(1));
        assert_eq!(route(&r, "c.example.com"), None);
        assert_eq!(route(&r, "x.a.example.com"), None);
        assert_eq!(route(&r, "example.com"), None);
    }

    #[test]
    fn unknown_and_missing_names_have_no_route() {
        let r = router(&["a.example.com", "*.example.com"]);
        assert_eq!(route(&r, ""), None, "no SNI");
        assert_eq!(route(&r, "."), None);
        assert_eq!(route(&r, "example.org"), None);
        assert_eq!(route(&router(&[]), "a.example.com"), None);
    }

    #[test]
    fn a_wildcard_matches_names_below_its_domain_at_any_depth_but_not_the_domain() {
        let r = router(&["*.example.com"]);
        assert_eq!(route(&r, "a.example.com"), Some(0));
        assert_eq!(route(&r, "a.b.example.com"), Some(0));
        assert_eq!(route(&r, "example.com"), None);
        assert_eq!(route(&r, ".example.com"), None, "nothing before the dot");
        assert_eq!(route(&r, "aexample.com"), None);
    }

    #[test]
    fn exact_beats_wildcard_and_the_longest_wildcard_wins() {
        let r = router(&["*.com", "*.example.com", "a.example.com", "*.b.example.com"]);
        assert_eq!(route(&r, "a.example.com"), Some(2), "exact");
        assert_eq!(route(&r, "x.b.example.com"), Some(3), "longest suffix");
        assert_eq!(route(&r, "b.example.com"), Some(1), "*.b.example.com does not match b.example.com");
        assert_eq!(route(&r, "c.example.com"), Some(1));
        assert_eq!(route(&r, "example.com"), Some(0));
        assert_eq!(route(&r, "other.org"), None);
    }

    #[test]
    fn the_first_listed_keeps_a_duplicate_pattern() {
        let r = router(&["a.example.com", "*.example.com", "a.example.com", "*.example.com"]);
        assert_eq!(route(&r, "a.example.com"), Some(0));
        assert_eq!(route(&r, "z.example.com"), Some(1));
    }

    #[test]
    fn names_are_compared_case_insensitively_and_without_a_trailing_dot() {
        let r = router(&["a.example.com", "*.wild.org"]);
        assert_eq!(route(&r, "A.Example.COM"), Some(0));
        assert_eq!(route(&r, "a.example.com."), Some(0));
        assert_eq!(route(&r, "X.WILD.ORG."), Some(1));
        assert!(matches!(normalize_sni("a.example.com"), Cow::Borrowed(_)));
    }

    #[test]
    fn invalid_patterns_in_a_table_match_nothing() {
        let r = router(&["*", "A.example.com", "a..com", "*a.example.com", "ok.example.com"]);
        assert_eq!(route(&r, "a.example.com"), None);
        assert_eq!(route(&r, "xa.example.com"), None);
        assert_eq!(route(&r, "anything"), None);
        assert_eq!(route(&r, "ok.example.com"), Some(4));
    }

    #[test]
    fn patterns_are_lower_case_dns_names_or_a_leading_wildcard_label() {
        for good in ["a.example.com", "*.example.com", "*.com", "localhost", "x-1.y_2.example", "a.b.c.d.e"] {
            assert_eq!(check_sni_pattern(good), Ok(()), "{good}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}a", "a.".repeat(127));
        for bad in [
            "",
            "*",
            "*.",
            "a.*.com",
            "*a.example.com",
            "a..com",
            ".a.com",
            "a.com.",
            "A.com",
            "a com",
            "a.com:443",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(check_sni_pattern(bad).is_err(), "{bad:?}");
        }
        assert!(check_sni_pattern("*").unwrap_err().contains("*.example.com"));
    }
}
