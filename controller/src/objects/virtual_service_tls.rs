//! A VirtualService's `tls` routes (TLS passthrough), reduced to the fields Berth reads. As for `http` and `tcp`,
//! unknown fields inside `match` are kept so that a condition Berth cannot honour is refused, not ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::RouteDestination;

/// One `spec.tls[]` entry: connections whose server name (SNI) matches go, still encrypted, to `route`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsRule {
    #[serde(default, rename = "match")]
    pub matches: Vec<TlsMatch>,
    #[serde(default)]
    pub route: Vec<RouteDestination>,
    /// Every other field: not honoured, so warned about.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsMatch {
    /// The server names to match: exact names or `*.domain` wildcards, each within the VirtualService's `hosts`.
    #[serde(default, rename = "sniHosts")]
    pub sni_hosts: Vec<String>,
    /// The gateway port Istio would match on; Berth serves TLS passthrough on one port (`berth run --tls-port`), so
    /// only that port may be named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Every other condition (destinationSubnets, sourceLabels, gateways, ...): Berth cannot honour them, so their
    /// presence is an error.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}
