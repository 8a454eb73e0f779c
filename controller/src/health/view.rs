//! How endpoint health is shown: one entry per checked endpoint of each backend, in `/v1/routes` (`health`) and
//! `berth routes`.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::book::{Book, Target};
use super::plan::{Checks, backends};
use crate::compiler::Content;

/// `{"service": "default/web:80", "address": "127.0.0.1:30081", "check": "tcp connect every 5s", "healthy":
/// false, "since": "2025-..Z", "last_failure": "connection refused", "last_failure_at": "2025-..Z"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointHealth {
    /// The backend, as routes name it: `namespace/name:port`.
    pub service: String,
    pub address: SocketAddr,
    /// How it is checked, in words.
    pub check: String,
    /// Whether it takes traffic: unhealthy endpoints are left out of the table Envoy routes by.
    pub healthy: bool,
    /// When the current state began (RFC 3339).
    pub since: String,
    /// Why the last failed check failed, even if the endpoint has recovered since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// When it happened (RFC 3339); an unhealthy endpoint failing on for the same reason keeps the first time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<String>,
}

#[cfg(test)]
impl EndpointHealth {
    /// `127.0.0.1:1` of `default/web:80`, out since its connections were refused.
    pub fn unhealthy_example() -> EndpointHealth {
        EndpointHealth {
            service: "default/web:80".into(),
            address: ([127, 0, 0, 1], 1).into(),
            check: "tcp connect every 5s".into(),
            healthy: false,
            since: "2025-01-01T00:00:00Z".into(),
            last_failure: Some("cannot connect: connection refused".into()),
            last_failure_at: Some("2025-01-01T00:00:00Z".into()),
        }
    }
}

/// The health of every checked endpoint of `content` (the table before unhealthy endpoints are left out), by
/// service then address.
pub fn endpoint_health(content: &Content, checks: &Checks, book: &Book) -> Vec<EndpointHealth> {
    let mut seen = BTreeSet::new();
    let mut views = Vec::new();
    for backend in backends(content) {
        let Some(Some(check)) = checks.get(&backend.service) else { continue };
        for endpoint in &backend.endpoints {
            if !seen.insert((backend.service.as_str(), endpoint.address)) {
                continue;
            }
            let target = Target { address: endpoint.address, check: check.clone() };
            let Some(status) = book.status(&target) else { continue };
            views.push(EndpointHealth {
                service: backend.service.clone(),
                address: endpoint.address,
                check: check.to_string(),
                healthy: status.is_healthy(),
                since: status.since.to_string(),
                last_failure: status.last_failure.as_ref().map(|(reason, _)| reason.clone()),
                last_failure_at: status.last_failure.as_ref().map(|(_, at)| at.to_string()),
            });
        }
    }
    views.sort_by(|a, b| (&a.service, a.address).cmp(&(&b.service, b.address)));
    views
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::book::{Observation, Outcome};
    use crate::objects::health_check::HealthCheck;
    use berth_table::{Backend, Endpoint, HttpRoute, PathMatch, Source};
    use k8s_openapi::jiff::Timestamp;
    use std::time::Duration;

    #[test]
    fn lists_each_checked_endpoint_once_with_its_state_and_last_failure() {
        let backend = |service: &str, ports: &[u16]| Backend {
            service: service.into(),
            weight: 1,
            endpoints: ports.iter().map(|p| Endpoint { address: ([127, 0, 0, 1], *p).into() }).collect(),
        };
        let route = |backends: Vec<Backend>| HttpRoute {
            host: "a.example".into(),
            path: PathMatch::Prefix("/".into()),
            backends,
            source: Source { kind: "Ingress".into(), namespace: "default".into(), name: "x".into() },
            session_cookie: None,
            policy: None,
        };
        let content = Content {
            http: vec![
                route(vec![backend("default/web:80", &[2, 1]), backend("default/off:80", &[3])]),
                route(vec![backend("default/web:80", &[2, 1])]),
            ],
            ..Content::default()
        };
        let check = HealthCheck::tcp(Duration::from_secs(5));
        let checks = Checks::from([("default/web:80".into(), Some(check.clone())), ("default/off:80".into(), None)]);
        let mut book = Book::new();
        let start = Timestamp::from_second(1_700_000_000).unwrap();
        book.sync(&super::super::plan::targets(&content, &checks), start);
        let failed_at = Timestamp::from_second(1_700_000_010).unwrap();
        let target = Target { address: ([127, 0, 0, 1], 2).into(), check };
        // Twice: a new endpoint's first failure is not decisive.
        for _ in 0..2 {
            let target = target.clone();
            book.record(Observation {
                target,
                run: 1,
                outcome: Outcome::Failed("connection refused".into()),
                at: failed_at,
            });
        }

        let views = endpoint_health(&content, &checks, &book);
        let json = serde_json::to_value(&views).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"service": "default/web:80", "address": "127.0.0.1:1", "check": "tcp connect every 5s",
                 "healthy": true, "since": "2023-11-14T22:13:20Z"},
                {"service": "default/web:80", "address": "127.0.0.1:2", "check": "tcp connect every 5s",
                 "healthy": false, "since": "2023-11-14T22:13:30Z", "last_failure": "connection refused",
                 "last_failure_at": "2023-11-14T22:13:30Z"},
            ])
        );
        let back: Vec<EndpointHealth> = serde_json::from_value(json).unwrap();
        assert_eq!(back, views);
    }
}
