//! A Service address, `HOST:PORT`: where Envoy reaches the controller, in the standalone and the Istio rendering.

use std::fmt;
use std::str::FromStr;

/// A Service address, `HOST:PORT` (a DNS name or an IP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddr {
    pub host: String,
    pub port: u16,
}

impl FromStr for ServiceAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bare = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
        let example = "e.g. berth-controller.berth-system.svc.cluster.local:8081";
        let (host, port) = bare.rsplit_once(':').ok_or_else(|| format!("{s:?} is not HOST:PORT, {example}"))?;
        let port = port.parse().map_err(|_| format!("{s:?}: {port:?} is not a port number, {example}"))?;
        if host.is_empty() || host.contains('/') {
            return Err(format!("{s:?} is not HOST:PORT, {example}"));
        }
        Ok(ServiceAddr { host: host.to_string(), port })
    }
}

impl fmt::Display for ServiceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}
