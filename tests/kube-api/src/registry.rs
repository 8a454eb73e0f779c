//! The resource types the server serves: the built-in ones Berth needs, plus one per served version of every
//! CustomResourceDefinition in the store. Discovery and request routing both read this.

use serde_json::{Value, json};
use std::cmp::Ordering;

/// One resource in one group/version, as discovery lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status: bool,
    /// Whether `status` survives a create; only Nodes (the kubelet registers with status) keep it.
    pub status_on_create: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// Objects of every version of a resource share one storage slot.
    pub fn storage_key(&self) -> StorageKey {
        StorageKey { group: self.group.clone(), plural: self.plural.clone() }
    }
}

/// Where objects of one resource live, whatever version they are read through.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct StorageKey {
    pub group: String,
    pub plural: String,
}

pub const VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
pub const STATUS_VERBS: [&str; 3] = ["get", "patch", "update"];

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
}

const BUILTINS: &[Builtin] = &[
    b("", "namespaces", "namespace", "Namespace", false, &["ns"], true),
    b("", "services", "service", "Service", true, &["svc"], true),
    b("", "nodes", "node", "Node", false, &["no"], true),
    b("", "secrets", "secret", "Secret", true, &[], false),
    b("", "configmaps", "configmap", "ConfigMap", true, &["cm"], false),
    b("", "events", "event", "Event", true, &["ev"], false),
    b("discovery.k8s.io", "endpointslices", "endpointslice", "EndpointSlice", true, &[], false),
    b("networking.k8s.io", "ingresses", "ingress", "Ingress", true, &["ing"], true),
    b("networking.k8s.io", "ingressclasses", "ingressclass", "IngressClass", false, &[], false),
    b("coordination.k8s.io", "leases", "lease", "Lease", true, &[], false),
    b("events.k8s.io", "events", "event", "Event", true, &["ev"], false),
    b(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
    ),
];

const fn b(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
) -> Builtin {
    Builtin { group, version: "v1", plural, singular, kind, namespaced, short, status }
}

pub const CRD_GROUP: &str = "apiextensions.k8s.io";
pub const CRD_PLURAL: &str = "customresourcedefinitions";

fn builtins() -> impl Iterator<Item = ResourceType> {
    BUILTINS.iter().map(|b| ResourceType {
        group: b.group.into(),
        version: b.version.into(),
        plural: b.plural.into(),
        singular: b.singular.into(),
        kind: b.kind.into(),
        namespaced: b.namespaced,
        short_names: b.short.iter().map(|s| s.to_string()).collect(),
        categories: if b.plural == "services" { vec!["all".into()] } else { vec![] },
        status: b.status,
        status_on_create: b.plural == "nodes",
    })
}

/// The served versions of a CRD object, one `ResourceType` each; malformed CRDs yield nothing.
pub fn from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let (Some(group), Some(plural), Some(kind)) =
        (spec["group"].as_str(), names["plural"].as_str(), names["kind"].as_str())
    else {
        return vec![];
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .filter_map(|v| {
            Some(ResourceType {
                group: group.into(),
                version: v["name"].as_str()?.into(),
                plural: plural.into(),
                singular: names["singular"].as_str().map(String::from).unwrap_or_else(|| kind.to_lowercase()),
                kind: kind.into(),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status: v["subresources"]["status"].is_object(),
                status_on_create: false,
            })
        })
        .collect()
}

/// The status the real apiextensions server writes on a CRD it accepted.
pub fn crd_status(crd: &Value, now: &str) -> Value {
    let spec = &crd["spec"];
    let stored: Vec<Value> = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool().unwrap_or(false))
        .filter_map(|v| v["name"].as_str().map(|s| json!(s)))
        .collect();
    let cond = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
    json!({
        "acceptedNames": spec["names"].clone(),
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    })
}

/// Every served resource type: built-ins first, then those of the given CRD objects.
pub fn all<'a>(crds: impl Iterator<Item = &'a Value>) -> Vec<ResourceType> {
    let mut all: Vec<ResourceType> = builtins().collect();
    for crd in crds {
        for rt in from_crd(crd) {
            if !all.iter().any(|o| o.group == rt.group && o.version == rt.version && o.plural == rt.plural) {
                all.push(rt);
            }
        }
    }
    all
}

/// Kubernetes' version priority: GA before beta before alpha, higher numbers first, others last alphabetically.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u32, u8, u32)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let major: u32 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((major, 2, 0));
        }
        let (stage, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (0, n)
        } else {
            return None;
        };
        Some((major, stage, num.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some((ma, sa, na)), Some((mb, sb, nb))) => sb.cmp(&sa).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Groups in discovery order (core first, then by first appearance), each with versions by priority.
pub fn groups(types: &[ResourceType]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = vec![];
    for rt in types {
        match groups.iter_mut().find(|(g, _)| *g == rt.group) {
            Some((_, versions)) if versions.contains(&rt.version) => {}
            Some((_, versions)) => versions.push(rt.version.clone()),
            None => groups.push((rt.group.clone(), vec![rt.version.clone()])),
        }
    }
    for (_, versions) in &mut groups {
        versions.sort_by(|a, b| compare_versions(a, b));
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_priority_matches_kubernetes() {
        let mut v = vec!["v1alpha1", "foo", "v1beta1", "v2", "v1", "v1beta2", "v10"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(v, ["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn crd_versions_become_types() {
        let crd = json!({"spec": {"group": "networking.istio.io", "scope": "Namespaced",
            "names": {"plural": "virtualservices", "singular": "virtualservice", "kind": "VirtualService", "shortNames": ["vs"]},
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false, "subresources": {"status": {}}},
                {"name": "v1", "served": true, "storage": true},
                {"name": "v1alpha3", "served": false, "storage": false}]}});
        let types = from_crd(&crd);
        assert_eq!(types.len(), 2);
        assert!(types[0].status && !types[1].status);
        assert_eq!(types[0].short_names, ["vs"]);
        let all = all([&crd].into_iter());
        let g = groups(&all);
        assert!(g.contains(&("networking.istio.io".into(), vec!["v1".into(), "v1beta1".into()])));
        assert_eq!(crd_status(&crd, "t")["storedVersions"], json!(["v1"]));
    }
}
