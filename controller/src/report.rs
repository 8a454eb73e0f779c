//! The human-readable view of a table and its errors, printed by `berth check` and `berth routes`.

use std::fmt::Write;

use berth_table::{Backend, Table};

use crate::api::Address;
use crate::health::EndpointHealth;

/// `default/service1:8080 → 127.0.0.1:30081`, with weights when there are several backends.
pub fn describe_backends(backends: &[Backend]) -> String {
    describe_backends_with_health(backends, &[])
}

/// The same, listing also the endpoints that `health` holds unhealthy (and so are not in the table), marked
/// `(unhealthy)`.
pub fn describe_backends_with_health(backends: &[Backend], health: &[EndpointHealth]) -> String {
    let many = backends.len() > 1;
    let parts: Vec<String> = backends
        .iter()
        .map(|b| {
            let mut endpoints: Vec<(std::net::SocketAddr, &str)> =
                b.endpoints.iter().map(|e| (e.address, "")).collect();
            let unhealthy = health.iter().filter(|h| h.service == b.service && !h.healthy);
            endpoints.extend(unhealthy.map(|h| (h.address, " (unhealthy)")));
            endpoints.sort();
            endpoints.dedup_by_key(|(address, _)| *address);
            let endpoints = if endpoints.is_empty() {
                "(no endpoints)".to_string()
            } else {
                endpoints.iter().map(|(address, mark)| format!("{address}{mark}")).collect::<Vec<_>>().join(", ")
            };
            if many {
                format!("{} weight {} → {endpoints}", b.service, b.weight)
            } else {
                format!("{} → {endpoints}", b.service)
            }
        })
        .collect();
    if parts.is_empty() { "(no backends)".to_string() } else { parts.join("; ") }
}

/// The whole report: a summary line, the http, tcp and tls routes as aligned columns, the default backend, the
/// addresses of tcp and tls routes, the health of checked endpoints, then every error and warning. `version` is left
/// out for tables that were never published (`berth check`), as is health (never checked).
pub fn render(
    table: &Table,
    version: Option<u64>,
    addresses: &[Address],
    errors: &[String],
    warnings: &[String],
    health: &[EndpointHealth],
) -> String {
    let mut out = String::new();
    let mut summary = format!(
        "{}, {}, {}, {}",
        plural(table.http.len(), "http route"),
        plural(table.tcp.len(), "tcp route"),
        plural(table.tls.len(), "tls route"),
        plural(errors.len(), "error")
    );
    if !warnings.is_empty() {
        _ = write!(summary, ", {}", plural(warnings.len(), "warning"));
    }
    let unhealthy = health.iter().filter(|h| !h.healthy).count();
    if unhealthy > 0 {
        _ = write!(summary, ", {}", plural(unhealthy, "unhealthy endpoint"));
    }
    match version {
        Some(version) => _ = writeln!(out, "table version {version}: {summary}"),
        None => _ = writeln!(out, "{summary}"),
    }
    out.push('\n');

    if table.http.is_empty() {
        out.push_str("no http routes\n");
    } else {
        let mut rows = vec![["HOST".to_string(), "PATH".to_string(), "BACKENDS".to_string(), "SOURCE".to_string()]];
        for route in &table.http {
            rows.push([
                route.host.clone(),
                route.path.to_string(),
                describe_backends_with_health(&route.backends, health),
                route.source.to_string(),
            ]);
        }
        columns(&mut out, &rows);
    }

    out.push('\n');
    if table.tcp.is_empty() {
        out.push_str("no tcp routes\n");
    } else {
        let mut rows = vec![["PORT".to_string(), "ADDRESS".to_string(), "BACKENDS".to_string(), "SOURCE".to_string()]];
        for route in &table.tcp {
            let source = route.source.to_string();
            let address = addresses.iter().find(|a| a.port == route.port && a.object == source);
            rows.push([
                route.port.to_string(),
                address.map_or_else(|| "-".to_string(), |a| a.address.clone()),
                describe_backends_with_health(&route.backends, health),
                source,
            ]);
        }
        columns(&mut out, &rows);
    }

    out.push('\n');
    if table.tls.is_empty() {
        out.push_str("no tls routes\n");
    } else {
        let mut rows = vec![["SERVER NAME".to_string(), "BACKENDS".to_string(), "SOURCE".to_string()]];
        for route in &table.tls {
            let backends = describe_backends_with_health(&route.backends, health);
            rows.push([route.sni.clone(), backends, route.source.to_string()]);
        }
        columns(&mut out, &rows);
    }

    out.push('\n');
    match &table.default_backend {
        Some(default) => {
            let backends = describe_backends_with_health(&default.backends, health);
            _ = writeln!(out, "default backend: {backends} ({})", default.source)
        }
        None => out.push_str("default backend: none (unmatched requests get 404)\n"),
    }

    if !addresses.is_empty() {
        out.push_str("\naddresses:\n");
        for a in addresses {
            _ = writeln!(out, "  {} {} → {}", a.object, a.route, a.address);
        }
    }
    if !health.is_empty() {
        out.push_str("\nhealth checks:\n");
        let mut rows = vec![[
            "  ENDPOINT".to_string(),
            "SERVICE".to_string(),
            "STATE".to_string(),
            "CHECK".to_string(),
            "LAST FAILURE".to_string(),
        ]];
        for h in health {
            let state = if h.healthy { "healthy" } else { "unhealthy" };
            let failure = match (&h.last_failure, &h.last_failure_at) {
                (Some(reason), Some(at)) => format!("{reason} ({at})"),
                (Some(reason), None) => reason.clone(),
                (None, _) => "-".to_string(),
            };
            rows.push([
                format!("  {}", h.address),
                h.service.clone(),
                format!("{state} since {}", h.since),
                h.check.clone(),
                failure,
            ]);
        }
        columns(&mut out, &rows);
    }
    for (title, list) in [("errors", errors), ("warnings", warnings)] {
        if !list.is_empty() {
            _ = writeln!(out, "\n{title}:");
            for item in list {
                _ = writeln!(out, "  {item}");
            }
        }
    }
    out
}

/// Rows as left-aligned columns two spaces apart, the first row being the header.
fn columns<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let line = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect::<Vec<_>>().join("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_table::{DefaultBackend, Endpoint, HttpRoute, PathMatch, Source, TcpRoute};

    fn backend(service: &str, weight: u32, ports: &[u16]) -> Backend {
        Backend {
            service: service.into(),
            weight,
            endpoints: ports.iter().map(|p| Endpoint { address: ([127, 0, 0, 1], *p).into() }).collect(),
        }
    }

    fn source(kind: &str, name: &str) -> Source {
        Source { kind: kind.into(), namespace: "default".into(), name: name.into() }
    }

    #[test]
    fn renders_routes_default_backend_and_errors() {
        let mut table = Table::new(42);
        table.http.push(HttpRoute {
            host: "website8080.com".into(),
            path: PathMatch::Segments("/".into()),
            backends: vec![backend("default/service1:8080", 100, &[30081])],
            source: source("Ingress", "websites"),
            session_cookie: None,
            policy: None,
        });
        table.http.push(HttpRoute {
            host: "website.com".into(),
            path: PathMatch::Prefix("/eightyeighty".into()),
            backends: vec![backend("default/a:80", 90, &[1, 2]), backend("default/b:80", 10, &[])],
            source: source("VirtualService", "website"),
            session_cookie: None,
            policy: None,
        });
        table.default_backend = Some(DefaultBackend {
            backends: vec![backend("default/default-http-backend:80", 100, &[30404])],
            source: source("Ingress", "websites"),
        });
        table.tcp.push(TcpRoute {
            port: 31000,
            backends: vec![backend("default/mysql:3306", 100, &[30306])],
            source: source("VirtualService", "db"),
            source_ip_affinity: false,
        });
        let addresses = [Address {
            object: "VirtualService default/db".into(),
            route: "tcp[0]".into(),
            address: "tcp.example.com:31000".into(),
            port: 31000,
        }];
        let errors = ["f.yaml: Ingress default/x: bad".to_string()];
        let warnings = ["VirtualService default/db: spec.tcp[0]: keeps port".to_string()];
        let text = render(&table, Some(42), &addresses, &errors, &warnings, &[]);
        let expected = "\
table version 42: 2 http routes, 1 tcp route, 0 tls routes, 1 error, 1 warning

HOST             PATH                  BACKENDS                                                                                    SOURCE
website8080.com  segments /            default/service1:8080 → 127.0.0.1:30081                                                     Ingress default/websites
website.com      prefix /eightyeighty  default/a:80 weight 90 → 127.0.0.1:1, 127.0.0.1:2; default/b:80 weight 10 → (no endpoints)  VirtualService default/website

PORT   ADDRESS                BACKENDS                              SOURCE
31000  tcp.example.com:31000  default/mysql:3306 → 127.0.0.1:30306  VirtualService default/db

no tls routes

default backend: default/default-http-backend:80 → 127.0.0.1:30404 (Ingress default/websites)

addresses:
  VirtualService default/db tcp[0] → tcp.example.com:31000

errors:
  f.yaml: Ingress default/x: bad

warnings:
  VirtualService default/db: spec.tcp[0]: keeps port
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn renders_an_empty_table() {
        let text = render(&Table::new(1), None, &[], &[], &[], &[]);
        assert_eq!(
            text,
            "0 http routes, 0 tcp routes, 0 tls routes, 0 errors\n\nno http routes\n\nno tcp routes\n\nno tls routes\n\n\
             default backend: none (unmatched requests get 404)\n"
        );
    }

    #[test]
    fn renders_endpoint_health_and_lists_unhealthy_endpoints_with_their_backend() {
        let mut table = Table::new(7);
        // 127.0.0.1:2 is unhealthy, so the table leaves it out; the report still shows it.
        table.http.push(HttpRoute {
            host: "web.example".into(),
            path: PathMatch::Prefix("/".into()),
            backends: vec![backend("default/web:80", 1, &[1, 3])],
            source: source("Ingress", "web"),
            session_cookie: None,
            policy: None,
        });
        let health = |port: u16, healthy: bool, failure: Option<&str>| EndpointHealth {
            service: "default/web:80".into(),
            address: ([127, 0, 0, 1], port).into(),
            check: "http GET /healthz expecting 200 every 5s".into(),
            healthy,
            since: "2025-01-01T00:00:00Z".into(),
            last_failure: failure.map(str::to_string),
            last_failure_at: failure.map(|_| "2025-01-01T00:00:09Z".to_string()),
        };
        let health = [
            health(1, true, None),
            health(2, false, Some("HTTP 500, expected 200")),
            health(3, true, Some("timed out after 2s")),
        ];
        let text = render(&table, Some(7), &[], &[], &[], &health);
        let expected = "\
table version 7: 1 http route, 0 tcp routes, 0 tls routes, 0 errors, 1 unhealthy endpoint

HOST         PATH      BACKENDS                                                            SOURCE
web.example  prefix /  default/web:80 → 127.0.0.1:1, 127.0.0.1:2 (unhealthy), 127.0.0.1:3  Ingress default/web

no tcp routes

no tls routes

default backend: none (unmatched requests get 404)

health checks:
  ENDPOINT     SERVICE         STATE                                 CHECK                                     LAST FAILURE
  127.0.0.1:1  default/web:80  healthy since 2025-01-01T00:00:00Z    http GET /healthz expecting 200 every 5s  -
  127.0.0.1:2  default/web:80  unhealthy since 2025-01-01T00:00:00Z  http GET /healthz expecting 200 every 5s  HTTP 500, expected 200 (2025-01-01T00:00:09Z)
  127.0.0.1:3  default/web:80  healthy since 2025-01-01T00:00:00Z    http GET /healthz expecting 200 every 5s  timed out after 2s (2025-01-01T00:00:09Z)
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn renders_tls_routes_by_server_name_and_their_addresses() {
        let mut table = Table::new(7);
        for (sni, name, port) in [("a.example.com", "a", 30443), ("*.apps.example.com", "apps", 30444)] {
            table.tls.push(berth_table::TlsRoute {
                sni: sni.into(),
                backends: vec![backend(&format!("default/{name}:443"), 100, &[port])],
                source: source("VirtualService", name),
            });
        }
        let addresses = [Address {
            object: "VirtualService default/a".into(),
            route: "tls[0]".into(),
            address: "a.example.com:443".into(),
            port: 443,
        }];
        let text = render(&table, Some(7), &addresses, &[], &[], &[]);
        let expected = "\
table version 7: 0 http routes, 0 tcp routes, 2 tls routes, 0 errors

no http routes

no tcp routes

SERVER NAME         BACKENDS                            SOURCE
a.example.com       default/a:443 → 127.0.0.1:30443     VirtualService default/a
*.apps.example.com  default/apps:443 → 127.0.0.1:30444  VirtualService default/apps

default backend: none (unmatched requests get 404)

addresses:
  VirtualService default/a tls[0] → a.example.com:443
";
        assert_eq!(text, expected, "\n{text}");
    }
}
