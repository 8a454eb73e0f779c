//! What the objects must say for a compilation, as writes ([`plan`]) and Events ([`notes`]): pure functions of the
//! index and the compiled table, compared with what the watched objects already hold.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{ERROR_ANNOTATION, EVENT_REASON, WARNING_ANNOTATION, WARNING_EVENT_REASON};
use crate::Diagnostic;
use crate::compiler::ports::ADDRESS_ANNOTATION;
use crate::compiler::tls;
use crate::compiler::{Classes, Compiled, EXPOSE_ANNOTATION};
use crate::index::Index;
use crate::objects::{Kind, Object, ObjectKey, annotation};

/// One patch to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The object: a VirtualService (annotations) or an Ingress (its status).
    pub key: ObjectKey,
    /// The resourceVersion the patch was planned against.
    pub resource_version: Option<String>,
    /// The JSON merge patch.
    pub patch: Value,
}

/// An Event to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub key: ObjectKey,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub message: String,
    /// [`EVENT_REASON`] or [`WARNING_EVENT_REASON`].
    pub reason: &'static str,
}

/// An Event to create on a Secret (a cluster's kubeconfig, in the controller's namespace).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretNote {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub message: String,
}

/// The writes that make the objects in `index` (of every cluster: each write's key names its cluster) say what
/// `compiled` decided; none when they already do.
pub fn plan(index: &Index, compiled: &Compiled, ingress_address: Option<&str>) -> Vec<Write> {
    let mut writes = Vec::new();
    for entry in index.of_kind(Kind::VirtualService) {
        let Object::VirtualService(vs) = &entry.object else { continue };
        let key = entry.key();
        let object = key.to_string();
        let exposed = annotation(&vs.metadata, EXPOSE_ANNOTATION) == Some("true");
        let (address, error) = if exposed {
            let mine: Vec<_> = compiled.assignments.values().filter(|a| a.object == object).collect();
            let tls: Vec<_> = compiled.tls_addresses.iter().filter(|a| a.object == object).collect();
            let address = tls::address_annotation(mine, tls);
            (address, diagnostic_text(&compiled.diagnostics, &object, false))
        } else {
            (None, None)
        };
        // Also on an object not exposed: its `berth.dev/expose` value may be the reason.
        let warning = diagnostic_text(&compiled.diagnostics, &object, true);
        let has = |name: &str| annotation(&vs.metadata, name).map(str::to_string);
        if has(ADDRESS_ANNOTATION) != address || has(ERROR_ANNOTATION) != error || has(WARNING_ANNOTATION) != warning {
            let annotations =
                json!({ADDRESS_ANNOTATION: address, ERROR_ANNOTATION: error, WARNING_ANNOTATION: warning});
            writes.push(Write {
                key,
                resource_version: vs.metadata.resource_version.clone(),
                patch: json!({"metadata": {"annotations": annotations}}),
            });
        }
    }
    if let Some(address) = ingress_address {
        let ours = if address.parse::<std::net::IpAddr>().is_ok() {
            json!([{"ip": address}])
        } else {
            json!([{"hostname": address}])
        };
        let mut classes: HashMap<&str, Classes> = HashMap::new();
        for entry in index.of_kind(Kind::Ingress) {
            let Object::Ingress(ingress) = &entry.object else { continue };
            let classes = classes.entry(entry.cluster()).or_insert_with(|| Classes::from_index(index, entry.cluster()));
            let current = ingress
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .map(|list| serde_json::to_value(list).unwrap_or_default())
                .unwrap_or_else(|| json!([]));
            // An Ingress Berth does not serve (any more: its class changed, or Berth's IngressClass is gone) must
            // not keep pointing clients at Berth; an address some other controller wrote is left alone.
            let wanted = if classes.serves(ingress) {
                ours.clone()
            } else if current == ours {
                Value::Null
            } else {
                continue;
            };
            if current != wanted {
                writes.push(Write {
                    key: entry.key(),
                    resource_version: ingress.metadata.resource_version.clone(),
                    patch: json!({"status": {"loadBalancer": {"ingress": wanted}}}),
                });
            }
        }
    }
    writes
}

/// `berth.dev/error`'s (or with `warnings`, `berth.dev/warning`'s) text for `object`: each error's (warning's)
/// field and message, one per line; none without any.
fn diagnostic_text(diagnostics: &[Diagnostic], object: &str, warnings: bool) -> Option<String> {
    let lines: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.is_warning() == warnings && d.object.as_deref() == Some(object))
        .map(|d| Diagnostic { object: None, file: None, ..d.clone() }.to_string())
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The Events for errors and warnings that just appeared on VirtualServices, Ingresses and Services in `index`.
pub fn notes(index: &Index, new_diagnostics: &[Diagnostic]) -> Vec<Note> {
    let mut notes = Vec::new();
    for diagnostic in new_diagnostics {
        let Some(object) = &diagnostic.object else { continue };
        let Some(entry) = [Kind::VirtualService, Kind::Ingress, Kind::Service]
            .into_iter()
            .flat_map(|kind| index.of_kind(kind))
            .find(|entry| entry.key().to_string() == *object)
        else {
            continue;
        };
        let meta = entry.object.metadata();
        notes.push(Note {
            key: entry.key(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            message: Diagnostic { object: None, file: None, ..diagnostic.clone() }.to_string(),
            reason: if diagnostic.is_warning() { WARNING_EVENT_REASON } else { EVENT_REASON },
        });
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::{Assignment, Assignments};
    use crate::objects::VirtualService;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn vs(name: &str, annotations: &[(&str, &str)]) -> Object {
        let annotations: BTreeMap<String, String> =
            annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Object::VirtualService(VirtualService {
            metadata: ObjectMeta {
                namespace: Some("shop".into()),
                name: Some(name.into()),
                resource_version: Some("7".into()),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            ..VirtualService::default()
        })
    }

    fn compiled(assigned: &[(&str, u16)], errors: &[(&str, &str)]) -> Compiled {
        let assignments: Assignments = assigned
            .iter()
            .map(|(object, port)| {
                let a = Assignment {
                    object: object.to_string(),
                    route: "tcp[0]".into(),
                    port: *port,
                    host: Some("tcp.example.com".into()),
                };
                (a.key(), a)
            })
            .collect();
        let diagnostics =
            errors.iter().map(|(object, message)| Diagnostic::new(*message).object(*object).field("spec")).collect();
        Compiled { assignments, diagnostics, ..Compiled::default() }
    }

    #[test]
    fn writes_the_address_and_the_error_only_where_they_differ() {
        let mut index = Index::new();
        index.apply("kube:VirtualService", vs("db", &[(EXPOSE_ANNOTATION, "true")]), None).unwrap();
        let done = vs("ok", &[(EXPOSE_ANNOTATION, "true"), (ADDRESS_ANNOTATION, "tcp.example.com:31001")]);
        index.apply("kube:VirtualService", done, None).unwrap();
        let hidden = vs("hidden", &[(ERROR_ANNOTATION, "old")]);
        index.apply("kube:VirtualService", hidden, None).unwrap();
        let compiled = compiled(
            &[("VirtualService shop/db", 31000), ("VirtualService shop/ok", 31001)],
            &[("VirtualService shop/db", "service \"x\" does not exist; create it")],
        );
        let writes = plan(&index, &compiled, None);
        let by_name: BTreeMap<&str, &Value> = writes.iter().map(|w| (w.key.name.as_str(), &w.patch)).collect();
        assert_eq!(by_name.len(), 2, "{writes:?}");
        assert_eq!(
            *by_name["db"],
            json!({"metadata": {"annotations": {ADDRESS_ANNOTATION: "tcp.example.com:31000",
                ERROR_ANNOTATION: "spec: service \"x\" does not exist; create it", WARNING_ANNOTATION: null}}})
        );
        assert_eq!(
            *by_name["hidden"],
            json!({"metadata": {"annotations": {ADDRESS_ANNOTATION: null, ERROR_ANNOTATION: null,
                WARNING_ANNOTATION: null}}}),
            "a VirtualService no longer exposed loses Berth's annotations"
        );
        assert_eq!(writes[0].resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn notes_name_the_object_and_its_errors_and_warnings_and_skip_unknown_objects() {
        let mut index = Index::new();
        index.apply("kube:VirtualService", vs("db", &[]), None).unwrap();
        let new = [
            Diagnostic::new("bad").object("VirtualService shop/db").field("spec.tcp[0]"),
            Diagnostic::new("meh").object("VirtualService shop/db").warning(),
            Diagnostic::new("bad").object("VirtualService shop/gone"),
        ];
        let notes = notes(&index, &new);
        assert_eq!(notes.len(), 2);
        assert_eq!((notes[0].message.as_str(), notes[0].reason), ("spec.tcp[0]: bad", EVENT_REASON));
        assert_eq!(notes[0].key.to_string(), "VirtualService shop/db");
        assert_eq!((notes[1].message.as_str(), notes[1].reason), ("meh", WARNING_EVENT_REASON));
    }

    #[test]
    fn warnings_are_written_also_on_a_virtual_service_that_is_not_exposed() {
        let mut index = Index::new();
        index.apply("kube:VirtualService", vs("web", &[(EXPOSE_ANNOTATION, "True")]), None).unwrap();
        let warning = Diagnostic::new("not exposed").object("VirtualService shop/web").field("metadata").warning();
        let compiled = Compiled { diagnostics: vec![warning], ..Compiled::default() };
        let writes = plan(&index, &compiled, None);
        assert_eq!(
            writes[0].patch,
            json!({"metadata": {"annotations": {ADDRESS_ANNOTATION: null, ERROR_ANNOTATION: null,
                WARNING_ANNOTATION: "metadata: not exposed"}}})
        );
    }

    #[test]
    fn a_services_errors_are_noted_on_the_service() {
        let mut index = Index::new();
        let service: Object = serde_json::from_value(json!({"metadata": {"namespace": "shop", "name": "web"}}))
            .map(Object::Service)
            .unwrap();
        index.apply("kube:Service", service, None).unwrap();
        let field = "metadata.annotations[\"berth.dev/health-check-interval\"]";
        let notes = notes(&index, &[Diagnostic::new("bad").object("Service shop/web").field(field)]);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].key.to_string(), "Service shop/web");
        assert_eq!(notes[0].message, format!("{field}: bad"));
    }

    fn ingress(name: &str, class: &str, ip: Option<&str>) -> Object {
        let status = ip.map_or_else(|| json!({}), |ip| json!({"loadBalancer": {"ingress": [{"ip": ip}]}}));
        Object::Ingress(
            serde_json::from_value(json!({
                "metadata": {"namespace": "shop", "name": name, "resourceVersion": "3"},
                "spec": {"ingressClassName": class},
                "status": status,
            }))
            .unwrap(),
        )
    }

    fn berth_class() -> Object {
        Object::IngressClass(
            serde_json::from_value(json!({
                "metadata": {"name": "berth"},
                "spec": {"controller": "berth.dev/ingress-controller"},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn an_ingress_berth_does_not_serve_loses_only_berths_own_address() {
        let mut index = Index::new();
        index.apply("kube:IngressClass", berth_class(), None).unwrap();
        for object in [
            ingress("new", "berth", None),
            ingress("done", "berth", Some("10.0.0.1")),
            ingress("left", "other", Some("10.0.0.1")),
            ingress("theirs", "other", Some("10.9.9.9")),
            ingress("never", "other", None),
        ] {
            index.apply("kube:Ingress", object, None).unwrap();
        }
        let writes = plan(&index, &Compiled::default(), Some("10.0.0.1"));
        let by_name: BTreeMap<&str, &Value> = writes.iter().map(|w| (w.key.name.as_str(), &w.patch)).collect();
        assert_eq!(by_name.len(), 2, "{writes:?}");
        assert_eq!(*by_name["new"], json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}}));
        assert_eq!(*by_name["left"], json!({"status": {"loadBalancer": {"ingress": null}}}));
        assert!(plan(&index, &Compiled::default(), None).is_empty(), "without --ingress-address status is left alone");
    }
}
