//! The data types of the controller's HTTP API, as JSON: the body of `/v1/routes` and its parts. Their own module
//! so that whoever makes them (publication, the clusters, `berth check`) and whoever shows them (the server,
//! `berth routes`, the report) depend on these types rather than on each other. The table itself (`/v1/table`)
//! is `berth_table::Table`, shared with the filter.

use berth_table::Table;
use serde::{Deserialize, Serialize};

use crate::compiler::Assignment;
use crate::diagnostic::DiagnosticView;
use crate::health::EndpointHealth;
use crate::port_ranges::PortRangeView;

/// The body of `/v1/routes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Routes {
    pub table: Table,
    /// Ports handed out to tcp routes, by claim (`VirtualService default/db tcp[0]`), including those of objects
    /// not served at the moment (their errors say why). Ports without an address (no PortAllocation left) are not
    /// listed. Then the addresses of the tls routes served (`tls[0]`, `a.example.com:443`), one per server name.
    #[serde(default)]
    pub addresses: Vec<Address>,
    pub errors: Vec<DiagnosticView>,
    #[serde(default)]
    pub warnings: Vec<DiagnosticView>,
    /// Whether any source is stale.
    #[serde(default)]
    pub stale: bool,
    #[serde(default)]
    pub sources: Vec<SourceStatus>,
    #[serde(default)]
    pub health: Vec<EndpointHealth>,
    /// Each PortAllocation range and how much of it is handed out.
    #[serde(default)]
    pub port_ranges: Vec<PortRangeView>,
}

/// One source's status: `{"name": "kube", "stale": true, "since": "2025-..Z", "error": ".."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    pub stale: bool,
    /// When it became stale (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Why it is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One tcp route's address: `{"object": "VirtualService default/db", "route": "tcp[0]", "address":
/// "tcp.example.com:31000", "port": 31000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub object: String,
    pub route: String,
    pub address: String,
    pub port: u16,
}

impl Address {
    pub fn of(assignment: &Assignment) -> Option<Address> {
        Some(Address {
            object: assignment.object.clone(),
            route: assignment.route.clone(),
            address: assignment.address()?,
            port: assignment.port,
        })
    }
}
