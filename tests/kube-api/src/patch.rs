//! Patch bodies: JSON merge patch (RFC 7386), strategic merge patch without an OpenAPI schema (merge keys from a
//! table of the list fields Kubernetes objects commonly carry), JSON patch (RFC 6902), and the field sets that
//! server-side apply records in `managedFields`.

use crate::status::{ApiError, ApiResult};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> ApiResult<Self> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        match essence {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchType::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// RFC 7386: objects merge recursively, `null` removes, everything else (lists too) replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The merge key of a list of objects, by the list's field name, as the Kubernetes types declare
/// (`patchMergeKey`). Lists not named here are atomic: a patch replaces them whole.
fn merge_keys(field: &str) -> &'static [&'static str] {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => &["name"],
        "ports" => &["port", "containerPort"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "conditions" | "addresses" => &["type"],
        "ownerReferences" => &["uid"],
        "hostAliases" => &["ip"],
        "topologySpreadConstraints" => &["topologyKey"],
        _ => &[],
    }
}

/// Primitive lists whose patch strategy is `merge` (a patch adds values instead of replacing the list).
fn merges_primitives(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Strategic merge patch, schema-free: maps merge, keyed lists (see `merge_keys`) merge element-wise, other
/// lists are replaced; honours `$patch: replace|delete`, `$setElementOrder/`, `$deleteFromPrimitiveList/` and
/// `$retainKeys`.
pub fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = strip_directives(patch);
            return;
        }
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        t.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    let mut orders = vec![];
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((field, v));
        } else if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(gone)) = (t.get_mut(field), v.as_array()) {
                list.retain(|x| !gone.contains(x));
            }
        } else if k.starts_with('$') {
        } else if v.is_null() {
            t.remove(k);
        } else if let Value::Array(items) = v {
            let slot = t.entry(k.clone()).or_insert(Value::Null);
            merge_list(slot, items, k);
        } else {
            let slot = t.entry(k.clone()).or_insert(Value::Null);
            strategic(slot, v);
            if slot.is_null() {
                t.remove(k);
            }
        }
    }
    for (field, order) in orders {
        if let (Some(Value::Array(list)), Some(order)) = (t.get_mut(field), order.as_array()) {
            reorder(list, order, merge_keys(field));
        }
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn key_of<'a>(item: &'a Value, keys: &[&'a str]) -> Option<(&'a str, &'a Value)> {
    keys.iter().find_map(|k| item.get(*k).map(|v| (*k, v)))
}

fn merge_list(target: &mut Value, items: &[Value], field: &str) {
    let keys = merge_keys(field);
    let replace_all = items.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let keyed = !keys.is_empty() && items.iter().all(|i| key_of(i, keys).is_some() || i.get("$patch").is_some());
    if replace_all || !(merges_primitives(field) || keyed) {
        *target = Value::Array(items.iter().filter(|i| i.get("$patch").is_none()).map(strip_directives).collect());
        return;
    }
    if !target.is_array() {
        *target = Value::Array(vec![]);
    }
    let Value::Array(list) = target else { return };
    if keyed {
        for item in items {
            let Some((k, kv)) = key_of(item, keys) else { continue };
            let pos = list.iter().position(|e| e.get(k) == Some(kv));
            match (item.get("$patch").and_then(Value::as_str), pos) {
                (Some("delete"), Some(i)) => {
                    list.remove(i);
                }
                (Some("delete"), None) => {}
                (_, Some(i)) => strategic(&mut list[i], item),
                (_, None) => list.push(strip_directives(item)),
            }
        }
    } else {
        for item in items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
    }
}

/// Orders `list` as `order` says (by merge key for objects, by value for primitives); unlisted elements follow.
fn reorder(list: &mut [Value], order: &[Value], keys: &[&str]) {
    let rank = |e: &Value| {
        order
            .iter()
            .position(|o| match key_of(o, keys) {
                Some((k, kv)) => e.get(k) == Some(kv),
                None => o == e,
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(rank);
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, ops: &Value) -> ApiResult<()> {
    let ops = ops.as_array().ok_or_else(|| ApiError::bad_request("a JSON patch must be a list of operations"))?;
    for op in ops {
        let bad = |m: &str| ApiError::new(422, "Invalid", format!("the JSON patch operation {op} {m}"));
        let path = op["path"].as_str().ok_or_else(|| bad("has no path"))?;
        match op["op"].as_str().unwrap_or_default() {
            "add" => add(target, path, op.get("value").cloned().ok_or_else(|| bad("has no value"))?),
            "remove" => remove(target, path).map(drop),
            "replace" => {
                remove(target, path)?;
                add(target, path, op.get("value").cloned().ok_or_else(|| bad("has no value"))?)
            }
            "move" => {
                let from = op["from"].as_str().ok_or_else(|| bad("has no from"))?;
                let v = remove(target, from)?;
                add(target, path, v)
            }
            "copy" => {
                let from = op["from"].as_str().ok_or_else(|| bad("has no from"))?;
                let v = target.pointer(from).cloned().ok_or_else(|| missing(from))?;
                add(target, path, v)
            }
            "test" => match target.pointer(path) {
                Some(v) if Some(v) == op.get("value") => Ok(()),
                _ => Err(bad("failed its test")),
            },
            other => Err(bad(&format!("has an unknown op {other:?}"))),
        }?;
    }
    Ok(())
}

fn missing(path: &str) -> ApiError {
    ApiError::new(422, "Invalid", format!("the JSON patch path {path:?} does not exist"))
}

fn split_pointer(path: &str) -> ApiResult<(String, String)> {
    let (parent, last) = path.rsplit_once('/').ok_or_else(|| missing(path))?;
    Ok((parent.to_string(), last.replace("~1", "/").replace("~0", "~")))
}

fn add(target: &mut Value, path: &str, value: Value) -> ApiResult<()> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(&parent).ok_or_else(|| missing(path))? {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) if last == "-" => {
            a.push(value);
            Ok(())
        }
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i <= a.len() => {
                a.insert(i, value);
                Ok(())
            }
            _ => Err(missing(path)),
        },
        _ => Err(missing(path)),
    }
}

fn remove(target: &mut Value, path: &str) -> ApiResult<Value> {
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(&parent).ok_or_else(|| missing(path))? {
        Value::Object(m) => m.remove(&last).ok_or_else(|| missing(path)),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(missing(path)),
        },
        _ => Err(missing(path)),
    }
}

/// The `fieldsV1` set of an applied configuration: `f:` per map key, `k:` per keyed list element, lists
/// without keys as one atomic leaf. Identity fields (apiVersion, kind, name, namespace) are not owned.
pub fn field_set(applied: &Value) -> Value {
    fn walk(v: &Value, field: &str) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (format!("f:{k}"), walk(v, k))).collect(),
            ),
            Value::Array(items) => {
                let keys = merge_keys(field);
                let mut out = Map::new();
                for item in items {
                    if let Some((k, kv)) = key_of(item, keys) {
                        let mut entry = walk(item, "");
                        if let Value::Object(e) = &mut entry {
                            e.insert(".".into(), json!({}));
                        }
                        out.insert(format!("k:{}", json!({ k: kv })), entry);
                    }
                }
                Value::Object(out)
            }
            _ => json!({}),
        }
    }
    let mut v = applied.clone();
    if let Value::Object(m) = &mut v {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            for k in ["name", "namespace", "resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"]
            {
                meta.remove(k);
            }
            if meta.is_empty() {
                m.remove("metadata");
            }
        }
    }
    walk(&v, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge(&mut t, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn strategic_merges_keyed_lists_and_follows_directives() {
        let mut svc = json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}],
            "selector": {"app": "web"}}, "metadata": {"finalizers": ["a"]}});
        strategic(
            &mut svc,
            &json!({
            "metadata": {"finalizers": ["b"]},
            "spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}],
                     "ports": [{"port": 80, "targetPort": 9090}], "selector": {"app": null, "tier": "web"}}}),
        );
        assert_eq!(svc["spec"]["ports"][1], json!({"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"}));
        assert_eq!(svc["spec"]["ports"][0]["port"], 443);
        assert_eq!(svc["spec"]["selector"], json!({"tier": "web"}));
        assert_eq!(svc["metadata"]["finalizers"], json!(["a", "b"]));
        strategic(
            &mut svc,
            &json!({"spec": {"ports": [{"port": 443, "$patch": "delete"}]},
            "$deleteFromPrimitiveList/finalizers": ["a"]}),
        );
        assert_eq!(svc["spec"]["ports"].as_array().unwrap().len(), 1);
        strategic(&mut svc, &json!({"spec": {"$patch": "replace", "type": "NodePort"}}));
        assert_eq!(svc["spec"], json!({"type": "NodePort"}));
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"metadata": {"annotations": {"a/b": "1"}}, "l": [1, 2]});
        json_patch(
            &mut t,
            &json!([
            {"op": "add", "path": "/metadata/annotations/c~1d", "value": "2"},
            {"op": "remove", "path": "/metadata/annotations/a~1b"},
            {"op": "add", "path": "/l/-", "value": 3},
            {"op": "replace", "path": "/l/0", "value": 0},
            {"op": "test", "path": "/l/2", "value": 3},
            {"op": "copy", "from": "/l", "path": "/m"}]),
        )
        .unwrap();
        assert_eq!(t, json!({"metadata": {"annotations": {"c/d": "2"}}, "l": [0, 2, 3], "m": [0, 2, 3]}));
        assert_eq!(json_patch(&mut t, &json!([{"op": "test", "path": "/l/0", "value": 9}])).unwrap_err().code, 422);
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }

    #[test]
    fn field_sets_name_keys_and_list_elements() {
        let set =
            field_set(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {"ports": [{"port": 80}]}}));
        assert_eq!(
            set,
            json!({"f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:ports": {"k:{\"port\":80}": {".": {}, "f:port": {}}}}})
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchType::Merge
        );
        assert_eq!(PatchType::from_content_type("application/json").unwrap_err().code, 415);
    }
}
