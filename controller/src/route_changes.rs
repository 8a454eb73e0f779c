//! Which objects' routing a new table changed, for the log: every line that changes routing names the object.

use std::collections::BTreeMap;

use berth_table::{DefaultBackend, HttpRoute, Source, Table, TcpRoute, TlsRoute};
use tracing::info;

/// What happened to one object's routes between two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    /// Its routes, backends or endpoints differ.
    Changed,
    Removed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Changed => "changed",
            Change::Removed => "removed",
        }
    }
}

/// Everything one object contributes to a table.
#[derive(Debug, Default, PartialEq)]
struct Routes<'a> {
    http: Vec<&'a HttpRoute>,
    default_backend: Option<&'a DefaultBackend>,
    tcp: Vec<&'a TcpRoute>,
    tls: Vec<&'a TlsRoute>,
}

fn by_source(table: Option<&Table>) -> BTreeMap<&Source, Routes<'_>> {
    let mut map: BTreeMap<&Source, Routes<'_>> = BTreeMap::new();
    let Some(table) = table else { return map };
    for route in &table.http {
        map.entry(&route.source).or_default().http.push(route);
    }
    if let Some(default) = &table.default_backend {
        map.entry(&default.source).or_default().default_backend = Some(default);
    }
    for route in &table.tcp {
        map.entry(&route.source).or_default().tcp.push(route);
    }
    for route in &table.tls {
        map.entry(&route.source).or_default().tls.push(route);
    }
    map
}

/// The objects whose routing differs from `before` to `after`, by object.
pub fn changes(before: Option<&Table>, after: &Table) -> Vec<(Source, Change)> {
    let (old, new) = (by_source(before), by_source(Some(after)));
    let mut changes = Vec::new();
    for (source, routes) in &new {
        match old.get(source) {
            None => changes.push(((*source).clone(), Change::Added)),
            Some(was) if was != routes => changes.push(((*source).clone(), Change::Changed)),
            Some(_) => {}
        }
    }
    changes.extend(old.keys().filter(|s| !new.contains_key(*s)).map(|s| ((*s).clone(), Change::Removed)));
    changes
}

/// Logs one line per object whose routing changed, naming it (`object` field) and the table version.
pub fn log(before: Option<&Table>, after: &Table) {
    for (source, change) in changes(before, after) {
        info!(object = %source, change = change.as_str(), version = after.version, "routing of {source} {}", change.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_table::PathMatch;

    fn route(name: &str, host: &str) -> HttpRoute {
        HttpRoute {
            host: host.into(),
            path: PathMatch::Prefix("/".into()),
            backends: vec![],
            source: Source { kind: "Ingress".into(), namespace: "ns".into(), name: name.into() },
            session_cookie: None,
            policy: None,
        }
    }

    fn table(routes: &[HttpRoute]) -> Table {
        Table { http: routes.to_vec(), ..Table::new(1) }
    }

    #[test]
    fn names_each_object_added_changed_or_removed() {
        let before = table(&[route("a", "a.example"), route("b", "b.example"), route("c", "c.example")]);
        let after = table(&[route("a", "a.example"), route("b", "b2.example"), route("d", "d.example")]);
        let names: Vec<(String, &str)> =
            changes(Some(&before), &after).into_iter().map(|(s, c)| (s.to_string(), c.as_str())).collect();
        assert_eq!(
            names,
            [("Ingress ns/b".into(), "changed"), ("Ingress ns/d".into(), "added"), ("Ingress ns/c".into(), "removed")]
        );
    }

    #[test]
    fn the_first_table_adds_every_object() {
        let after = table(&[route("a", "a.example"), route("a", "a2.example")]);
        assert_eq!(changes(None, &after).len(), 1);
    }
}
