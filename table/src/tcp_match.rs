//! TCP route matching: which route serves a connection, by the listener port it arrived on.

use crate::fnv::FnvHashMap;
use crate::{RouteId, Table};

/// A table's TCP routes by port. [`RouteId`] indexes [`Table::tcp`].
#[derive(Debug, Default)]
pub struct TcpRouter {
    by_port: FnvHashMap<u16, RouteId>,
}

impl TcpRouter {
    pub fn new(table: &Table) -> Self {
        let mut by_port = FnvHashMap::default();
        by_port.reserve(table.tcp.len());
        for (index, route) in table.tcp.iter().enumerate() {
            // The compiler never lists a port twice; if a table did, the first (oldest) route keeps it.
            by_port.entry(route.port).or_insert(RouteId(index));
        }
        TcpRouter { by_port }
    }

    pub fn match_port(&self, port: u16) -> Option<RouteId> {
        self.by_port.get(&port).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Source, TcpRoute};

    #[test]
    fn routes_by_port_and_the_first_listed_keeps_a_duplicate() {
        let mut table = Table::new(1);
        for (port, name) in [(31000, "a"), (31001, "b"), (31000, "c")] {
            let source = Source { kind: "VirtualService".into(), namespace: "ns".into(), name: name.into() };
            table.tcp.push(TcpRoute { port, backends: vec![], source, source_ip_affinity: false });
        }
        let router = TcpRouter::new(&table);
        assert_eq!(router.match_port(31000), Some(RouteId(0)));
        assert_eq!(router.match_port(31001), Some(RouteId(1)));
        assert_eq!(router.match_port(31002), None);
    }
}
