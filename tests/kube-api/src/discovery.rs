//! Discovery: `/version`, `/api`, `/apis`, `/apis/<group>`, the per-version resource lists, and aggregated
//! discovery (`apidiscovery.k8s.io/v2`, what kubectl asks for first).

use crate::registry::{self, ResourceType, STATUS_VERBS, VERBS};
use serde_json::{Value, json};

/// The Kubernetes version this server claims: that of the `k8s-openapi` types the controller compiles against.
pub const MAJOR: &str = "1";
pub const MINOR: &str = "33";

pub fn version() -> Value {
    json!({
        "major": MAJOR, "minor": MINOR, "gitVersion": format!("v{MAJOR}.{MINOR}.0"),
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
        "platform": "linux/amd64", "emulationMajor": MAJOR, "emulationMinor": MINOR,
        "minCompatibilityMajor": MAJOR, "minCompatibilityMinor": MINOR,
    })
}

/// `/api` (legacy form).
pub fn core_versions(server: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]})
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let gv = |v: &String| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({"name": name, "versions": versions.iter().map(gv).collect::<Vec<_>>(),
        "preferredVersion": versions.first().map(gv).unwrap_or(Value::Null)})
}

/// `/apis` (legacy form).
pub fn group_list(types: &[ResourceType]) -> Value {
    let groups: Vec<Value> =
        registry::groups(types).iter().filter(|(g, _)| !g.is_empty()).map(|(g, vs)| group_doc(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn group(types: &[ResourceType], name: &str) -> Option<Value> {
    let groups = registry::groups(types);
    let (_, versions) = groups.iter().find(|(g, _)| g == name && !g.is_empty())?;
    let mut doc = group_doc(name, versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let here: Vec<&ResourceType> = types.iter().filter(|t| t.group == group && t.version == version).collect();
    if here.is_empty() {
        return None;
    }
    let mut resources = vec![];
    for t in here {
        let mut r = json!({"name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
            "verbs": VERBS});
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        if t.status {
            resources
                .push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                "kind": t.kind, "verbs": STATUS_VERBS}));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// Which aggregated discovery version an `Accept` header asks for, if any.
pub fn aggregated_version(accept: &str) -> Option<&'static str> {
    let wants = |v: &str| {
        accept.split(',').any(|part| {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            params.contains(&"g=apidiscovery.k8s.io")
                && params.contains(&v)
                && params.contains(&"as=APIGroupDiscoveryList")
        })
    };
    if wants("v=v2") {
        Some("v2")
    } else if wants("v=v2beta1") {
        Some("v2beta1")
    } else {
        None
    }
}

/// An `APIGroupDiscoveryList` for the core group (`/api`) or every named group (`/apis`).
pub fn aggregated(types: &[ResourceType], core: bool, version: &str) -> Value {
    let items: Vec<Value> = registry::groups(types)
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = types
                        .iter()
                        .filter(|t| t.group == g && &t.version == v)
                        .map(|t| {
                            let kind = json!({"group": t.group, "version": t.version, "kind": t.kind});
                            let mut r = json!({"resource": t.plural, "responseKind": kind,
                                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": t.singular, "verbs": VERBS});
                            if !t.short_names.is_empty() {
                                r["shortNames"] = json!(t.short_names);
                            }
                            if !t.categories.is_empty() {
                                r["categories"] = json!(t.categories);
                            }
                            if t.status {
                                r["subresources"] =
                                    json!([{"subresource": "status", "responseKind": kind, "verbs": STATUS_VERBS}]);
                            }
                            r
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut metadata = json!({"creationTimestamp": null});
            if !g.is_empty() {
                metadata["name"] = json!(g);
            }
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"), "metadata": {}, "items": items})
}

pub fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubectls_accept_header() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(kubectl), Some("v2"));
        assert_eq!(aggregated_version("application/json"), None);
    }

    #[test]
    fn lists_status_subresources() {
        let types = registry::all(std::iter::empty());
        let list = resource_list(&types, "networking.k8s.io", "v1").unwrap();
        let names: Vec<&str> =
            list["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["ingresses", "ingresses/status", "ingressclasses"]);
        let agg = aggregated(&types, true, "v2");
        assert_eq!(agg["items"].as_array().unwrap().len(), 1);
        assert!(group(&types, "coordination.k8s.io").is_some());
        assert!(group(&types, "").is_none());
    }
}
