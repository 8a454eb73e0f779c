//! Ingress → routes: which Ingresses are Berth's (by IngressClass), and their rules and default backend.
//!
//! Path types: `Exact` is an exact match; `Prefix` matches whole path segments, as the Ingress API specifies;
//! `ImplementationSpecific` is treated like `Prefix`, the reading least likely to surprise (it is what
//! ingress-nginx does for paths without regular expressions). `berth.dev/session-cookie` gives every rule of the
//! Ingress session persistence (see [`super::affinity`]); the default backend has none.

use std::collections::BTreeSet;

use berth_table::{DefaultBackend, HttpRoute, PathMatch};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::affinity::session_cookie;
use super::backends::{PortRef, Resolver, Unresolved};
use super::host_name::host_name;
use super::{Problem, Wanted, Wants, source_of};
use crate::index::Index;
use crate::objects::{Kind, Object, ObjectKey, annotation};

/// The `spec.controller` of IngressClasses whose Ingresses Berth serves.
pub const CONTROLLER: &str = "berth.dev/ingress-controller";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Berth's IngressClasses.
#[derive(Debug, Clone, Default)]
pub struct Classes {
    names: BTreeSet<String>,
    /// Whether one of them is the cluster's default class, which takes Ingresses that name no class.
    default: bool,
}

impl Classes {
    /// Berth's IngressClasses in `cluster`: an Ingress is Berth's by the classes of its own cluster.
    pub fn from_index(index: &Index, cluster: &str) -> Self {
        let mut classes = Classes::default();
        for entry in index.of_kind_in(Kind::IngressClass, cluster) {
            let Object::IngressClass(class) = &entry.object else { continue };
            if class.spec.as_ref().and_then(|s| s.controller.as_deref()) != Some(CONTROLLER) {
                continue;
            }
            classes.names.insert(class.metadata.name.clone().unwrap_or_default());
            classes.default |= annotation(&class.metadata, DEFAULT_CLASS_ANNOTATION) == Some("true");
        }
        classes
    }

    /// Whether Berth serves this Ingress. One that names another controller's class, or a class that does not
    /// exist, is not ours and is left alone without complaint.
    pub fn serves(&self, ingress: &Ingress) -> bool {
        let named = ingress.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref());
        match named.or_else(|| annotation(&ingress.metadata, LEGACY_CLASS_ANNOTATION)) {
            Some(class) => self.names.contains(class),
            None => self.default,
        }
    }
}

/// `key` is the Ingress's key, with its cluster; `resolver` resolves within that cluster.
pub fn compile(ingress: &Ingress, key: &ObjectKey, resolver: &Resolver<'_>) -> Result<Wants, Vec<Problem>> {
    let namespace = key.namespace.as_str();
    let source = source_of(key);
    let mut wants = Wants::default();
    let mut problems = Vec::new();
    let Some(spec) = &ingress.spec else {
        return Err(vec![Problem::new("spec", "missing; an Ingress needs rules or a defaultBackend")]);
    };
    let has_paths = spec.rules.iter().flatten().any(|rule| rule.http.as_ref().is_some_and(|h| !h.paths.is_empty()));
    let cookie = session_cookie(&ingress.metadata, has_paths).unwrap_or_else(|problem| {
        problems.push(problem);
        None
    });

    if let Some(backend) = &spec.default_backend {
        let field = "spec.defaultBackend";
        match resolve(backend, namespace, field, resolver) {
            Ok(backend) => {
                let default = DefaultBackend { backends: vec![backend], source: source.clone() };
                wants.default_backend = Some((field.to_string(), default));
            }
            Err(problem) => problems.push(problem),
        }
    }

    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let host = match rule.host.as_deref().filter(|host| !host.is_empty()).map(host_name) {
            None => "*".to_string(),
            Some(Ok(host)) => host,
            Some(Err(message)) => {
                problems.push(Problem::new(format!("spec.rules[{i}].host"), message));
                continue;
            }
        };
        // A rule without `http` sends its host's traffic to the default backend, which the table does anyway.
        let Some(http) = &rule.http else { continue };
        for (j, path) in http.paths.iter().enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            let text = path.path.as_deref().unwrap_or("/");
            if !text.starts_with('/') {
                problems.push(Problem::new(format!("{field}.path"), format!("{text:?} must start with \"/\"")));
                continue;
            }
            let matcher = match path.path_type.as_str() {
                "Exact" => PathMatch::Exact(text.to_string()),
                "Prefix" | "ImplementationSpecific" | "" => PathMatch::Segments(segments(text)),
                other => {
                    let message = format!("{other:?} is not a path type; use Exact, Prefix or ImplementationSpecific");
                    problems.push(Problem::new(format!("{field}.pathType"), message));
                    continue;
                }
            };
            match resolve(&path.backend, namespace, &format!("{field}.backend"), resolver) {
                Ok(backend) => wants.http.push(Wanted {
                    field,
                    route: HttpRoute {
                        host: host.clone(),
                        path: matcher,
                        backends: vec![backend],
                        source: source.clone(),
                        session_cookie: cookie.clone(),
                        policy: None,
                    },
                }),
                Err(problem) => problems.push(problem),
            }
        }
    }
    if problems.is_empty() { Ok(wants) } else { Err(problems) }
}

/// `/app/` and `/app` mean the same segments; `/` stays `/`.
fn segments(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() }
}

fn resolve(
    backend: &IngressBackend,
    namespace: &str,
    field: &str,
    resolver: &Resolver<'_>,
) -> Result<berth_table::Backend, Problem> {
    let Some(service) = &backend.service else {
        return Err(Problem::new(field, "only service backends are supported; set service.name and service.port"));
    };
    let port = match service.port.as_ref().map(|p| (p.number, p.name.as_deref())) {
        Some((Some(number), _)) => PortRef::Number(number),
        Some((None, Some(name))) if !name.is_empty() => PortRef::Name(name),
        _ => return Err(Problem::new(format!("{field}.service.port"), "set port.number or port.name")),
    };
    resolver.backend(namespace, &service.name, Some(port), 100).map_err(|unresolved| {
        let at = match unresolved {
            Unresolved::Service(_) => "service.name",
            Unresolved::Port(_) => "service.port",
            Unresolved::Backends(_) => "service",
        };
        Problem::new(format!("{field}.{at}"), unresolved.message())
    })
}
