//! What the server does to an object on its way into the store: server-owned metadata, the status subresource
//! rule, generation, defaults the real API server applies to the kinds Berth reads, and CRD/Namespace status.

use crate::meta::{self, metadata_mut};
use crate::registry::{self, ResourceType};
use crate::status::{ApiError, ApiResult, Subject};
use crate::store::State;
use serde_json::{Value, json};

/// Server-managed metadata the client cannot set.
const SERVER_META: [&str; 6] =
    ["uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"];

pub fn subject<'a>(rt: &'a ResourceType, name: &'a str) -> Subject<'a> {
    Subject { group: &rt.group, plural: &rt.plural, name }
}

/// The object as read through `rt`'s version: every version of a resource shares one storage slot.
pub fn present(rt: &ResourceType, mut obj: Value) -> Value {
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
    obj
}

/// Checks the body's apiVersion and kind against the endpoint and fills them in when missing.
pub fn check_type(rt: &ResourceType, obj: &mut Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    if let Some(v) = obj["apiVersion"].as_str()
        && v != rt.api_version()
        && v.split('/').next() != Some(rt.group.as_str()).filter(|g| !g.is_empty())
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    if let Some(k) = obj["kind"].as_str()
        && k != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    Ok(())
}

/// Creates: server-owned metadata, status dropped where a status subresource owns it, defaults.
pub fn on_create(rt: &ResourceType, obj: &mut Value, state: &State, now: &str) -> ApiResult<()> {
    let m = metadata_mut(obj);
    for k in SERVER_META {
        m.remove(k);
    }
    m.insert("uid".into(), json!(meta::new_uid()));
    m.insert("creationTimestamp".into(), json!(now));
    m.insert("generation".into(), json!(1));
    if rt.status
        && !rt.status_on_create
        && let Value::Object(o) = obj
    {
        o.remove("status");
    }
    defaults(rt, obj, None, state, now)
}

/// Updates (PUT and PATCH): the result keeps the server-owned metadata of `current`; on the main resource the
/// status stays as stored (when a status subresource exists), on `/status` only the status changes.
pub fn on_update(
    rt: &ResourceType,
    current: &Value,
    mut new: Value,
    status_only: bool,
    state: &State,
    now: &str,
) -> ApiResult<Value> {
    if status_only {
        let mut out = current.clone();
        match new.get("status") {
            Some(s) => out["status"] = s.clone(),
            None => {
                if let Value::Object(o) = &mut out {
                    o.remove("status");
                }
            }
        }
        if let Some(mf) = meta::metadata(&new).and_then(|m| m.get("managedFields")) {
            metadata_mut(&mut out).insert("managedFields".into(), mf.clone());
        }
        new = out;
    } else if rt.status {
        match current.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Value::Object(o) = &mut new {
                    o.remove("status");
                }
            }
        }
    }
    let cur_meta = meta::metadata(current).cloned().unwrap_or_default();
    let m = metadata_mut(&mut new);
    for k in SERVER_META {
        match cur_meta.get(k) {
            Some(v) => m.insert(k.into(), v.clone()),
            None => m.remove(k),
        };
    }
    if !m.contains_key("managedFields")
        && let Some(mf) = cur_meta.get("managedFields")
    {
        m.insert("managedFields".into(), mf.clone());
    }
    if spec_of(&new) != spec_of(current) {
        let generation = cur_meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        metadata_mut(&mut new).insert("generation".into(), json!(generation));
    }
    defaults(rt, &mut new, Some(current), state, now)?;
    Ok(new)
}

/// Everything but metadata and status: what `generation` counts changes of.
fn spec_of(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Value::Object(m) = &mut v {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
    }
    v
}

/// Equal but for resourceVersion and managedFields: such an update is a no-op and writes nothing.
pub fn same(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        let m = metadata_mut(&mut v);
        m.remove("resourceVersion");
        m.remove("managedFields");
        v
    };
    strip(a) == strip(b)
}

/// Records a write in `managedFields`: one entry per manager, operation and subresource.
pub fn record_manager(
    obj: &mut Value,
    manager: &str,
    operation: &str,
    api_version: &str,
    sub: Option<&str>,
    fields: Value,
    now: &str,
) {
    let m = metadata_mut(obj);
    let mut entries: Vec<Value> = m.get("managedFields").and_then(Value::as_array).cloned().unwrap_or_default();
    entries.retain(|e| !(e["manager"] == manager && e["operation"] == operation && e["subresource"].as_str() == sub));
    let mut entry = json!({"manager": manager, "operation": operation, "apiVersion": api_version, "time": now,
        "fieldsType": "FieldsV1", "fieldsV1": fields});
    if let Some(s) = sub {
        entry["subresource"] = json!(s);
    }
    entries.push(entry);
    m.insert("managedFields".into(), Value::Array(entries));
}

fn defaults(rt: &ResourceType, obj: &mut Value, current: Option<&Value>, state: &State, now: &str) -> ApiResult<()> {
    let name = meta::name(obj).unwrap_or_default().to_string();
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => {
            let m = metadata_mut(obj);
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            if let Value::Object(l) = labels {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            if obj["status"]["phase"].is_null() {
                obj["status"] = json!({"phase": "Active"});
            }
        }
        ("", "secrets") if obj["type"].is_null() => obj["type"] = json!("Opaque"),
        ("", "services") => service_defaults(obj, current, state),
        (registry::CRD_GROUP, registry::CRD_PLURAL) => {
            let spec = &obj["spec"];
            let want = format!(
                "{}.{}",
                spec["names"]["plural"].as_str().unwrap_or_default(),
                spec["group"].as_str().unwrap_or_default()
            );
            if name != want {
                return Err(ApiError::invalid(
                    subject(rt, &name),
                    format!("metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
                ));
            }
            if registry::from_crd(obj).is_empty() && spec["versions"].as_array().is_none_or(|v| v.is_empty()) {
                return Err(ApiError::invalid(
                    subject(rt, &name),
                    "spec.versions: Invalid value: must have exactly one version marked as storage version",
                ));
            }
            obj["status"] = registry::crd_status(obj, now);
        }
        _ => {}
    }
    Ok(())
}

/// The Service fields the real server defaults: type, port protocol and targetPort, and a node port for
/// NodePort and LoadBalancer ports without one (kept from the stored object when the port is the same).
fn service_defaults(obj: &mut Value, current: Option<&Value>, state: &State) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    if spec["type"].is_null() {
        spec["type"] = json!("ClusterIP");
    }
    if spec["sessionAffinity"].is_null() {
        spec["sessionAffinity"] = json!("None");
    }
    let wants_node_port = matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"));
    let key = registry::StorageKey { group: String::new(), plural: "services".into() };
    let mut used: Vec<i64> = state
        .list(&key, None)
        .flat_map(|(_, s)| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["nodePort"].as_i64())
        .collect();
    let Some(ports) = spec["ports"].as_array_mut() else { return };
    for port in ports {
        if port["protocol"].is_null() {
            port["protocol"] = json!("TCP");
        }
        if port["targetPort"].is_null() {
            port["targetPort"] = port["port"].clone();
        }
        if wants_node_port && port["nodePort"].is_null() {
            let kept = current
                .and_then(|c| c["spec"]["ports"].as_array())
                .and_then(|ps| ps.iter().find(|p| p["port"] == port["port"] && p["protocol"] == port["protocol"]))
                .and_then(|p| p["nodePort"].as_i64());
            let chosen = kept.or_else(|| (30000..=32767).find(|n| !used.contains(n)));
            if let Some(n) = chosen {
                used.push(n);
                port["nodePort"] = json!(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Snapshot, Store};

    fn svc_type() -> ResourceType {
        registry::all(std::iter::empty()).into_iter().find(|t| t.plural == "services").unwrap()
    }

    #[test]
    fn create_sets_server_metadata_and_drops_status_behind_a_subresource() {
        let store = Store::new(Snapshot::default(), 10, None);
        let mut svc = json!({"metadata": {"name": "web", "uid": "mine"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {}}});
        store.read(|s| on_create(&svc_type(), &mut svc, s, "now")).unwrap();
        assert_ne!(svc["metadata"]["uid"], "mine");
        assert_eq!(svc["metadata"]["generation"], 1);
        assert!(svc.get("status").is_none());
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30000})
        );
    }

    #[test]
    fn update_keeps_status_and_bumps_generation_on_spec_changes() {
        let store = Store::new(Snapshot::default(), 10, None);
        let cur = json!({"metadata": {"name": "web", "uid": "u", "generation": 3}, "spec": {"ports": []}, "status": {"a": 1}});
        let new = json!({"metadata": {"name": "web"}, "spec": {"ports": [], "type": "NodePort"}, "status": {"a": 2}});
        let out = store.read(|s| on_update(&svc_type(), &cur, new.clone(), false, s, "now")).unwrap();
        assert_eq!(out["status"], json!({"a": 1}));
        assert_eq!(out["metadata"]["uid"], "u");
        assert_eq!(out["metadata"]["generation"], 4);
        let out = store.read(|s| on_update(&svc_type(), &cur, new, true, s, "now")).unwrap();
        assert_eq!(out["status"], json!({"a": 2}));
        assert_ne!(out["spec"]["type"], "NodePort");
        assert_eq!(out["metadata"]["generation"], 3);
    }
}
