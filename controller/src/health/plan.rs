//! Between the compiler and the publisher, as pure functions: which check each backend's Service asks for, which
//! targets that makes, what its annotations got wrong, and the table's content without its unhealthy endpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_table::{Backend, Source};

use super::book::{Book, Target};
use super::panic::{Panic, PanicThreshold};
use crate::Diagnostic;
use crate::compiler::Content;
use crate::index::Index;
use crate::objects::health_check::health_check;
use crate::objects::{Kind, Object, ObjectKey};

/// The check of each backend in a table, by its `service` (`namespace/name:port`); `None` for Services that turned
/// checking off.
pub type Checks = BTreeMap<String, Option<crate::objects::health_check::HealthCheck>>;

/// Every backend of every route, the default backend's included.
pub fn backends(content: &Content) -> impl Iterator<Item = &Backend> {
    let http = content.http.iter().flat_map(|route| &route.backends);
    let default = content.default_backend.iter().flat_map(|default| &default.backends);
    let tcp = content.tcp.iter().flat_map(|route| &route.backends);
    let tls = content.tls.iter().flat_map(|route| &route.backends);
    http.chain(default).chain(tcp).chain(tls)
}

/// Every route's backends, with the route in words and its object, the default backend's included.
fn routes_mut(content: &mut Content) -> impl Iterator<Item = (String, &Source, &mut Vec<Backend>)> {
    let http = content.http.iter_mut().map(|r| (format!("{} {}", r.host, r.path), &r.source, &mut r.backends));
    let default =
        content.default_backend.iter_mut().map(|d| ("default backend".to_string(), &d.source, &mut d.backends));
    let tcp = content.tcp.iter_mut().map(|r| (format!("tcp port {}", r.port), &r.source, &mut r.backends));
    let tls = content.tls.iter_mut().map(|r| (format!("tls {}", r.sni), &r.source, &mut r.backends));
    http.chain(default).chain(tcp).chain(tls)
}

/// The Service a backend names: its `service` is `namespace/name:port`, or `cluster/namespace/name:port` for
/// another cluster's Service, as the compiler writes it.
fn service_key(service: &str) -> Option<ObjectKey> {
    let (path, _port) = service.rsplit_once(':')?;
    let mut parts = path.rsplitn(3, '/');
    let (name, namespace, cluster) = (parts.next()?, parts.next()?, parts.next().unwrap_or_default());
    Some(ObjectKey::new(Kind::Service, namespace, name).in_cluster(cluster))
}

/// The check each backend's Service asks for. A backend whose Service is not in the index (it cannot happen for
/// a compiled table, but costs nothing to allow) gets the default check.
pub fn checks(index: &Index, content: &Content, default_interval: Duration) -> Checks {
    let mut checks = Checks::new();
    for backend in backends(content) {
        if checks.contains_key(&backend.service) {
            continue;
        }
        let meta = service_key(&backend.service).and_then(|key| match index.get(&key).map(|e| &e.object) {
            Some(Object::Service(service)) => Some(&service.metadata),
            _ => None,
        });
        let check = match meta {
            Some(meta) => health_check(meta, default_interval).0,
            None => Some(crate::objects::health_check::HealthCheck::tcp(default_interval)),
        };
        checks.insert(backend.service.clone(), check);
    }
    checks
}

/// What to check: every endpoint of every backend, the way its Service asks.
pub fn targets(content: &Content, checks: &Checks) -> BTreeSet<Target> {
    let mut targets = BTreeSet::new();
    for backend in backends(content) {
        if let Some(Some(check)) = checks.get(&backend.service) {
            for endpoint in &backend.endpoints {
                targets.insert(Target { address: endpoint.address, check: check.clone() });
            }
        }
    }
    targets
}

/// Leaves out every endpoint the book holds unhealthy, except from routes in panic ([`super::panic`]), which keep
/// all of theirs; returns those. A backend left without endpoints takes no traffic (its weight goes to the route's
/// other backends), and a route left without any answers 503, as the filter does for a Service without endpoints.
pub fn withhold_unhealthy(
    content: &mut Content,
    checks: &Checks,
    book: &Book,
    threshold: PanicThreshold,
) -> Vec<Panic> {
    let mut panics = Vec::new();
    for (route, source, backends) in routes_mut(content) {
        let targets = |backend: &Backend| -> Vec<Option<Target>> {
            let check = checks.get(&backend.service).cloned().flatten();
            backend
                .endpoints
                .iter()
                .map(|endpoint| check.clone().map(|check| Target { address: endpoint.address, check }))
                .collect()
        };
        let (mut healthy, mut checked) = (0, 0);
        for target in backends.iter().flat_map(&targets).flatten() {
            checked += 1;
            healthy += usize::from(book.is_healthy(&target));
        }
        if threshold.in_panic(healthy, checked) {
            panics.push(Panic { route, source: source.clone(), healthy, checked });
            continue;
        }
        for backend in backends.iter_mut() {
            let targets = targets(backend);
            let mut kept = targets.iter().map(|target| target.as_ref().is_none_or(|t| book.is_healthy(t)));
            backend.endpoints.retain(|_| kept.next().unwrap_or(true));
        }
    }
    panics
}

/// A problem for every health check annotation of every Service that cannot be used as written (whether routes
/// use the Service yet or not): the Service is served with the default for that setting.
pub fn diagnostics(index: &Index, default_interval: Duration) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for entry in index.of_kind(Kind::Service) {
        let Object::Service(service) = &entry.object else { continue };
        let (_, problems) = health_check(&service.metadata, default_interval);
        for problem in problems {
            diagnostics.push(
                Diagnostic::new(problem.message)
                    .object(entry.key().to_string())
                    .file(entry.file.clone())
                    .field(format!("metadata.annotations[{:?}]", problem.annotation)),
            );
        }
    }
    diagnostics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::book::{Observation, Outcome};
    use crate::objects::health_check::{HealthCheck, Probe};
    use berth_table::{DefaultBackend, Endpoint, HttpRoute, PathMatch, Source, TcpRoute, TlsRoute};
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::jiff::Timestamp;

    const SECOND: Duration = Duration::from_secs(1);

    fn service(name: &str, annotations: &[(&str, &str)]) -> Object {
        let annotations = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Object::Service(Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            ..Service::default()
        })
    }

    fn backend(service: &str, ports: &[u16]) -> Backend {
        Backend {
            service: service.into(),
            weight: 1,
            endpoints: ports.iter().map(|p| Endpoint { address: ([127, 0, 0, 1], *p).into() }).collect(),
        }
    }

    fn source() -> Source {
        Source { kind: "Ingress".into(), namespace: "default".into(), name: "x".into() }
    }

    /// An http route to `web` (ports 1, 2) and `api` (port 3), a default backend on `web`, a tcp route and a tls
    /// route to `db`.
    fn content() -> Content {
        Content {
            http: vec![HttpRoute {
                host: "a.example".into(),
                path: PathMatch::Prefix("/".into()),
                backends: vec![backend("default/web:80", &[1, 2]), backend("default/api:80", &[3])],
                source: source(),
                session_cookie: None,
                policy: None,
            }],
            default_backend: Some(DefaultBackend {
                backends: vec![backend("default/web:80", &[1, 2])],
                source: source(),
            }),
            tcp: vec![TcpRoute {
                port: 31000,
                backends: vec![backend("default/db:5432", &[4])],
                source: source(),
                source_ip_affinity: false,
            }],
            affinity_key: None,
            tls: vec![TlsRoute {
                sni: "db.example".into(),
                backends: vec![backend("default/db:5432", &[4])],
                source: source(),
            }],
        }
    }

    fn index() -> Index {
        let mut index = Index::new();
        let objects = vec![
            (service("web", &[("berth.dev/health-check-path", "/healthz")]), Some("web.yaml".into())),
            (service("api", &[("berth.dev/health-check", "none")]), None),
            (service("db", &[("berth.dev/health-check-interval", "soon")]), Some("db.yaml".into())),
            (service("idle", &[("berth.dev/health-check-status", "fine")]), None),
        ];
        index.reset("dir:x", objects, vec![]);
        index
    }

    fn http_check() -> HealthCheck {
        let status = crate::objects::health_check::StatusRange::DEFAULT;
        HealthCheck { probe: Probe::Http { path: "/healthz".into(), host: None, status }, ..HealthCheck::tcp(SECOND) }
    }

    #[test]
    fn each_backend_gets_its_services_check_and_each_endpoint_a_target() {
        let content = content();
        let checks = checks(&index(), &content, SECOND);
        assert_eq!(
            checks,
            Checks::from([
                ("default/web:80".into(), Some(http_check())),
                ("default/api:80".into(), None),
                ("default/db:5432".into(), Some(HealthCheck::tcp(SECOND))),
            ])
        );
        let targets: Vec<(u16, HealthCheck)> =
            targets(&content, &checks).into_iter().map(|t| (t.address.port(), t.check)).collect();
        assert_eq!(targets, [(1, http_check()), (2, http_check()), (4, HealthCheck::tcp(SECOND))]);
    }

    #[test]
    fn unhealthy_endpoints_leave_every_route_that_names_them_and_nothing_else_changes() {
        let mut content = content();
        let checks = checks(&index(), &content, SECOND);
        let mut book = Book::new();
        book.sync(&targets(&content, &checks), Timestamp::UNIX_EPOCH);
        for (port, check) in [(2, http_check()), (4, HealthCheck::tcp(SECOND))] {
            let target = Target { address: ([127, 0, 0, 1], port).into(), check };
            let run = if port == 2 { 1 } else { 2 };
            let failed =
                Observation { target, run, outcome: Outcome::Failed("refused".into()), at: Timestamp::UNIX_EPOCH };
            // A new endpoint's first failure is not decisive; its second is.
            assert_eq!(book.record(failed.clone()), crate::health::book::Recorded::Failure);
            assert!(matches!(book.record(failed), crate::health::book::Recorded::Left(_)));
        }
        let before = content.clone();
        // Panic routing off: see the next test for it.
        assert_eq!(withhold_unhealthy(&mut content, &checks, &book, PanicThreshold(0)), []);
        let ports = |backends: &[Backend]| -> Vec<Vec<u16>> {
            backends.iter().map(|b| b.endpoints.iter().map(|e| e.address.port()).collect()).collect()
        };
        assert_eq!(ports(&content.http[0].backends), [vec![1], vec![3]]);
        assert_eq!(ports(&content.default_backend.as_ref().unwrap().backends), [vec![1]]);
        assert_eq!(ports(&content.tcp[0].backends), [Vec::<u16>::new()], "all down: no endpoints, so 503/close");
        assert_eq!(ports(&content.tls[0].backends), [Vec::<u16>::new()], "tls routes too");
        assert_eq!((content.http[0].host.as_str(), content.tcp[0].port), ("a.example", 31000));
        assert_eq!(content.http[0].backends[0].weight, before.http[0].backends[0].weight);
    }

    #[test]
    fn a_route_below_the_panic_threshold_keeps_every_endpoint_and_is_reported() {
        let mut content = content();
        let checks = checks(&index(), &content, SECOND);
        let mut book = Book::new();
        book.sync(&targets(&content, &checks), Timestamp::UNIX_EPOCH);
        for (port, run) in [(1, 0), (1, 0), (4, 2), (4, 2)] {
            let check = if port == 4 { HealthCheck::tcp(SECOND) } else { http_check() };
            let target = Target { address: ([127, 0, 0, 1], port).into(), check };
            book.record(Observation {
                target,
                run,
                outcome: Outcome::Failed("refused".into()),
                at: Timestamp::UNIX_EPOCH,
            });
        }
        let before = content.clone();
        let panics = withhold_unhealthy(&mut content, &checks, &book, PanicThreshold::DEFAULT);
        let described: Vec<(&str, usize, usize)> =
            panics.iter().map(|p| (p.route.as_str(), p.healthy, p.checked)).collect();
        // The http route and the default backend have 1 of 2 checked endpoints (api is not checked): at the
        // threshold, not below it, so port 1 leaves them. db's only endpoint is down: below it.
        assert_eq!(described, [("tcp port 31000", 0, 1), ("tls db.example", 0, 1)]);
        assert_eq!(content.tcp, before.tcp, "kept whole");
        assert_eq!(content.tls, before.tls);
        assert_eq!(content.http[0].backends[0].endpoints.len(), 1);
        assert_eq!(panics[0].source, source());
    }

    #[test]
    fn malformed_annotations_are_reported_on_every_service_with_file_and_field() {
        let texts: Vec<String> = diagnostics(&index(), SECOND).iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "db.yaml: Service default/db: metadata.annotations[\"berth.dev/health-check-interval\"]: \"soon\" is not \
                 a duration; write it like 5s, 500ms or 1m; using 1s",
                "Service default/idle: metadata.annotations[\"berth.dev/health-check-status\"]: \"fine\" is not a status \
                 code or range; write it like 200 or 200-299; expecting 200-399 instead",
            ]
        );
    }

    #[test]
    fn service_labels_name_their_service() {
        assert_eq!(service_key("shop/web:8080"), Some(ObjectKey::new(Kind::Service, "shop", "web")));
        let remote = ObjectKey::new(Kind::Service, "shop", "web").in_cluster("alpha");
        assert_eq!(service_key("alpha/shop/web:8080"), Some(remote));
        assert_eq!(service_key("web:8080"), None);
    }
}
