//! A minimal OpenAPI v3: the root lists every group-version, and each group-version document has the resource
//! paths with their PATCH operation tagged `x-kubernetes-group-version-kind` and declaring `fieldValidation`.
//! That is what kubectl (1.27+) reads to decide the server validates fields itself (it then sends
//! `fieldValidation=Strict` and needs no schema). No component schemas: kubectl computes strategic merge patches
//! for built-in kinds from its compiled-in types instead.

use crate::registry::{self, ResourceType};
use serde_json::{Value, json};
use std::hash::{DefaultHasher, Hash, Hasher};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// `/openapi/v3/<api/v1 | apis/group/version>`.
pub fn group_version(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let here: Vec<&ResourceType> = types.iter().filter(|t| t.group == group && t.version == version).collect();
    if here.is_empty() {
        return None;
    }
    let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let mut paths = serde_json::Map::new();
    for t in here {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let ok = json!({"200": {"description": "OK"}});
        let op = |action: &str, params: Vec<Value>| json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": ok});
        let writes = || vec![param("dryRun"), param("fieldManager"), param("fieldValidation")];
        let mut patch_params = writes();
        patch_params.push(param("force"));
        let base = format!("/{}", gv_path(group, version));
        let scope = if t.namespaced { format!("{base}/namespaces/{{namespace}}") } else { base };
        paths.insert(
            format!("{scope}/{}", t.plural),
            json!({"get": op("list", vec![]), "post": op("post", writes()), "delete": op("deletecollection", vec![])}),
        );
        paths.insert(
            format!("{scope}/{}/{{name}}", t.plural),
            json!({"get": op("get", vec![]), "put": op("put", writes()), "patch": op("patch", patch_params.clone()),
                "delete": op("delete", vec![param("dryRun")])}),
        );
        if t.status {
            paths.insert(
                format!("{scope}/{}/{{name}}/status", t.plural),
                json!({"get": op("get", vec![]), "put": op("put", writes()), "patch": op("patch", patch_params)}),
            );
        }
    }
    Some(json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths,
        "components": {"schemas": {}}}))
}

/// `/openapi/v3`: each group-version with a hash that changes when its document does (clients cache by URL).
pub fn root(types: &[ResourceType]) -> Value {
    let mut paths = serde_json::Map::new();
    for (group, versions) in registry::groups(types) {
        for version in versions {
            let doc = group_version(types, &group, &version).unwrap_or_default();
            let mut h = DefaultHasher::new();
            doc.to_string().hash(&mut h);
            let path = gv_path(&group, &version);
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={:016X}", h.finish())}),
            );
        }
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_declare_field_validation() {
        let types = registry::all(std::iter::empty());
        let doc = group_version(&types, "", "v1").unwrap();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Service");
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        assert!(
            root(&types)["paths"]["apis/networking.k8s.io/v1"]["serverRelativeURL"].as_str().unwrap().contains("hash=")
        );
    }
}
