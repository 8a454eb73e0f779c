//! The routing table as data: what the controller publishes and the filter routes by.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{AffinityKey, RoutePolicy};

/// One complete, versioned routing table.
///
/// `http` lists routes oldest object first: the matcher breaks precedence ties by that order, so the compiler
/// decides "oldest wins" once and the filter never needs timestamps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Always [`crate::FORMAT`]; a reader refuses any other.
    pub format: String,
    /// Changes whenever the content changes; readers compare for inequality, never order.
    pub version: u64,
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// Where HTTP requests go that match no route (an Ingress `defaultBackend`); none means answer 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<DefaultBackend>,
    /// Raw TCP routes, one per allocated listener port.
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
    /// The secret behind session cookies and client-address hashes; present when a route has session affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_key: Option<AffinityKey>,
    /// TLS passthrough routes, by server name; oldest object first, like `http`.
    #[serde(default)]
    pub tls: Vec<TlsRoute>,
}

impl Table {
    pub fn new(version: u64) -> Self {
        Table {
            format: crate::FORMAT.to_string(),
            version,
            http: Vec::new(),
            default_backend: None,
            tcp: Vec::new(),
            affinity_key: None,
            tls: Vec::new(),
        }
    }
}

/// Requests for `host` whose path satisfies `path` go to `backends`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRoute {
    /// Lower-case host name, `*.suffix` for a wildcard, or `*` for any host.
    pub host: String,
    pub path: PathMatch,
    pub backends: Vec<Backend>,
    pub source: Source,
    /// Session persistence: the name of the cookie that keeps a client on one endpoint
    /// (`berth.dev/session-cookie`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_cookie: Option<String>,
    /// What the route does to a request besides choosing its destination (rewrite, timeout, retries, headers);
    /// none for a route without any, which then costs the filter nothing more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RoutePolicy>,
}

/// Connections arriving on listener `port` go to `backends`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpRoute {
    pub port: u16,
    pub backends: Vec<Backend>,
    pub source: Source,
    /// Whether a client's IP address keeps it on one endpoint (`berth.dev/session-affinity: source-ip`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub source_ip_affinity: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// TLS connections whose ClientHello names a server matching `sni` go, still encrypted, to `backends`
/// (passthrough: Envoy never terminates TLS, the backend presents its own certificate).
///
/// There is no port: every TLS passthrough port of a proxy serves one set of names. A server name is a DNS name,
/// which clients resolve to the proxy whatever port they then use, and the port Envoy listens on is often not the
/// one clients dial (a Service maps 443 to the pod's port); keeping it out also keeps routing at one property read
/// per connection. See [`crate::SniRouter`] for how names match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsRoute {
    /// A lower-case server name, or `*.suffix` for every name below `suffix` ([`crate::check_sni_pattern`]).
    pub sni: String,
    pub backends: Vec<Backend>,
    pub source: Source,
}

/// How a route's path is compared with a request's path (query string excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    /// The whole path equals this string.
    Exact(String),
    /// The path starts with this string, character by character (Istio `uri.prefix`).
    Prefix(String),
    /// The path starts with these whole `/`-separated segments (Ingress `pathType: Prefix`):
    /// `/foo` matches `/foo` and `/foo/bar`, not `/foobar`.
    Segments(String),
}

impl PathMatch {
    pub fn as_str(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) | PathMatch::Segments(p) => p,
        }
    }
}

/// `prefix /api`, `exact /x`, `segments /app`: how people are shown a path match (in `berth routes`, in errors).
impl std::fmt::Display for PathMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self {
            PathMatch::Exact(_) => "exact",
            PathMatch::Prefix(_) => "prefix",
            PathMatch::Segments(_) => "segments",
        };
        write!(f, "{how} {}", self.as_str())
    }
}

/// The fallback for requests no route matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultBackend {
    pub backends: Vec<Backend>,
    pub source: Source,
}

/// One weighted destination of a route: a Kubernetes Service port resolved to endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// What the user named, for people reading the table: `namespace/service:port`.
    pub service: String,
    /// Relative share of the route's traffic; 0 takes none while another backend has weight.
    pub weight: u32,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub address: SocketAddr,
}

/// The Kubernetes object a route came from, so every route can be traced back to what a user wrote.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Source {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}
