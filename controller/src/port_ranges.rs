//! How much of each PortAllocation range is in use: for `/v1/routes`, the status page and `/metrics`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::compiler::Assignments;
use crate::index::Index;
use crate::objects::{Kind, Object};

/// One range of a PortAllocation: `{"allocation": "tcp", "host": "tcp.example.com", "start": 31000, "end":
/// 31010, "allocated": 1, "free": 10}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRangeView {
    /// The PortAllocation's name (with its cluster, `alpha/tcp`, when not the local one).
    pub allocation: String,
    pub host: String,
    pub start: u16,
    pub end: u16,
    /// Ports of the range handed out to tcp routes.
    pub allocated: usize,
    /// Ports of the range not handed out (NodePorts of Services, which are never handed out, included).
    pub free: usize,
}

impl PortRangeView {
    /// `31000-31010`.
    pub fn range(&self) -> String {
        format!("{}-{}", self.start, self.end)
    }
}

/// Every well-formed range of every PortAllocation in `index`, with the ports `assignments` hand out of it.
/// Malformed ranges are left out: they are the PortAllocation's errors.
pub fn port_ranges(index: &Index, assignments: &Assignments) -> Vec<PortRangeView> {
    let ports: BTreeSet<u16> = assignments.values().map(|a| a.port).collect();
    let mut views = Vec::new();
    for entry in index.of_kind(Kind::PortAllocation) {
        let Object::PortAllocation(allocation) = &entry.object else { continue };
        let name = allocation.metadata.name.clone().unwrap_or_default();
        let name = if entry.cluster().is_empty() { name } else { format!("{}/{name}", entry.cluster()) };
        for range in &allocation.spec.ranges {
            let (Ok(start), Ok(end)) = (u16::try_from(range.start), u16::try_from(range.end)) else { continue };
            if start == 0 || start > end {
                continue;
            }
            let allocated = ports.range(start..=end).count();
            views.push(PortRangeView {
                allocation: name.clone(),
                host: allocation.spec.host.clone(),
                start,
                end,
                allocated,
                free: usize::from(end - start) + 1 - allocated,
            });
        }
    }
    views
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::Assignment;
    use crate::objects::parse_value;

    #[test]
    fn counts_the_ports_handed_out_of_each_range() {
        let object = parse_value(&serde_json::json!({
            "apiVersion": "berth.dev/v1alpha1", "kind": "PortAllocation", "metadata": {"name": "tcp"},
            "spec": {"host": "t.example", "ranges": [{"start": 31000, "end": 31004}, {"start": 32000, "end": 32000},
                     {"start": 9, "end": 3}]},
        }))
        .unwrap();
        let mut index = Index::new();
        index.apply("dir:x", object, None).unwrap();
        let assignment = |port| Assignment { object: "o".into(), route: format!("tcp[{port}]"), port, host: None };
        let assignments: Assignments =
            [31000, 31003, 32000, 40000].into_iter().map(|p| (format!("o {p}"), assignment(p))).collect();
        let views = port_ranges(&index, &assignments);
        let summary: Vec<(String, usize, usize)> = views.iter().map(|v| (v.range(), v.allocated, v.free)).collect();
        assert_eq!(summary, [("31000-31004".into(), 2, 3), ("32000-32000".into(), 1, 0)]);
        assert_eq!(views[0].host, "t.example");
        assert_eq!(views[0].allocation, "tcp");
    }
}
