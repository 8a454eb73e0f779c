//! POST, PUT, DELETE and DELETE on collections, with the real server's preconditions: namespaces must exist,
//! names are unique, a stale resourceVersion conflicts, finalizers hold a deletion.

use super::object::{self, check_type, on_create, on_update, present, same, subject};
use super::query::Query;
use crate::meta::{self, metadata_mut};
use crate::registry::{self, ResourceType, StorageKey};
use crate::selector::Selector;
use crate::status::{ApiError, ApiResult, Subject};
use crate::store::{ObjKey, State, Store, Tx};
use serde_json::{Value, json};

/// Parses a request body: JSON, or YAML (a superset) when the client sends YAML.
pub fn parse_body(body: &[u8], content_type: &str) -> ApiResult<Value> {
    if crate::protobuf::is_protobuf(content_type) {
        return crate::protobuf::decode(body);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    serde_json::from_slice(body).or_else(|json_err| {
        if content_type.contains("yaml") {
            serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not valid YAML: {e}")))
        } else {
            Err(ApiError::bad_request(format!("the body is not valid JSON: {json_err}")))
        }
    })
}

pub fn ensure_namespace(state: &State, ns: &str) -> ApiResult<()> {
    let key = StorageKey { group: String::new(), plural: "namespaces".into() };
    match state.get(&key, &(String::new(), ns.to_string())) {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(Subject { group: "", plural: "namespaces", name: ns })),
    }
}

/// Namespace and name of a body sent to `ns`, checked against the URL.
fn place(rt: &ResourceType, ns: Option<&str>, obj: &mut Value, url_name: Option<&str>) -> ApiResult<ObjKey> {
    let m = metadata_mut(obj);
    if rt.namespaced {
        let ns = ns.unwrap_or_default();
        match m.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => m.insert("namespace".into(), json!(ns)),
        };
    } else {
        m.remove("namespace");
    }
    if let Some(url_name) = url_name {
        match m.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != url_name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({url_name})"
                )));
            }
            _ => m.insert("name".into(), json!(url_name)),
        };
    }
    if meta::name(obj).is_none()
        && let Some(prefix) = meta::meta_str(obj, "generateName").map(String::from)
    {
        metadata_mut(obj).insert("name".into(), json!(format!("{prefix}{}", meta::name_suffix())));
    }
    let name = meta::name(obj).ok_or_else(|| {
        ApiError::invalid(subject(rt, ""), "metadata.name: Required value: name or generateName is required")
    })?;
    Ok((ns.filter(|_| rt.namespaced).unwrap_or_default().to_string(), name.to_string()))
}

/// Creates inside a transaction; shared by POST and by server-side apply of a missing object.
pub fn create_in(
    tx: &mut Tx<'_>,
    rt: &ResourceType,
    ns: Option<&str>,
    mut obj: Value,
    url_name: Option<&str>,
    q: &Query,
) -> ApiResult<Value> {
    check_type(rt, &mut obj)?;
    let key = place(rt, ns, &mut obj, url_name)?;
    if rt.namespaced {
        ensure_namespace(tx.state(), &key.0)?;
    }
    if tx.state().get(&rt.storage_key(), &key).is_some() {
        return Err(ApiError::already_exists(subject(rt, &key.1)));
    }
    let now = meta::now_rfc3339();
    obj = present(rt, obj);
    on_create(rt, &mut obj, tx.state(), &now)?;
    if let Some(manager) = q.field_manager() {
        let fields = crate::patch::field_set(&obj);
        object::record_manager(&mut obj, manager, "Update", &rt.api_version(), None, fields, &now);
    }
    Ok(present(rt, tx.put(&rt.storage_key(), obj)))
}

pub fn create(store: &Store, rt: &ResourceType, ns: Option<&str>, q: &Query, body: Value) -> ApiResult<Value> {
    store.write(q.dry_run(), |tx| create_in(tx, rt, ns, body, None, q))
}

/// Stores `new` as the next state of `current` (already checked for preconditions); a no-op writes nothing, and a
/// deleted object whose last finalizer went away is removed.
pub fn update_in(
    tx: &mut Tx<'_>,
    rt: &ResourceType,
    current: &Value,
    new: Value,
    sub: Option<&str>,
) -> ApiResult<Value> {
    let now = meta::now_rfc3339();
    let new = on_update(rt, current, new, sub == Some("status"), tx.state(), &now)?;
    if same(&new, current) {
        return Ok(present(rt, current.clone()));
    }
    let finalizers_gone = new["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
    if meta::meta_str(&new, "deletionTimestamp").is_some() && finalizers_gone {
        let key = key_of(&new);
        tx.put(&rt.storage_key(), new);
        return remove(tx, rt, &key).map(|o| present(rt, o));
    }
    Ok(present(rt, tx.put(&rt.storage_key(), new)))
}

fn key_of(obj: &Value) -> ObjKey {
    (meta::namespace(obj).unwrap_or_default().to_string(), meta::name(obj).unwrap_or_default().to_string())
}

/// The stored object a write addresses, or 404; with a 409 when the body names an older resourceVersion.
pub fn current_for(tx: &Tx<'_>, rt: &ResourceType, key: &ObjKey, sent_rv: Option<&str>) -> ApiResult<Value> {
    let current =
        tx.state().get(&rt.storage_key(), key).cloned().ok_or_else(|| ApiError::not_found(subject(rt, &key.1)))?;
    if let Some(rv) = sent_rv
        && Some(rv) != meta::resource_version(&current)
    {
        return Err(ApiError::conflict(subject(rt, &key.1)));
    }
    Ok(current)
}

pub fn update(
    store: &Store,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    q: &Query,
    mut body: Value,
) -> ApiResult<Value> {
    check_type(rt, &mut body)?;
    let key = place(rt, ns, &mut body, Some(name))?;
    store.write(q.dry_run(), |tx| {
        let current = current_for(tx, rt, &key, meta::resource_version(&body))?;
        let mut new = present(rt, body);
        if let Some(manager) = q.field_manager() {
            let now = meta::now_rfc3339();
            let fields = crate::patch::field_set(&new);
            object::record_manager(&mut new, manager, "Update", &rt.api_version(), sub, fields, &now);
        }
        update_in(tx, rt, &current, new, sub)
    })
}

/// Deletes now, or marks for deletion while finalizers remain. A Namespace takes its objects with it (there is
/// no namespace controller to empty it), a CRD takes its custom objects.
fn delete_in(tx: &mut Tx<'_>, rt: &ResourceType, key: &ObjKey) -> ApiResult<Value> {
    let current =
        tx.state().get(&rt.storage_key(), key).cloned().ok_or_else(|| ApiError::not_found(subject(rt, &key.1)))?;
    let has_finalizers = current["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
    if has_finalizers {
        if meta::meta_str(&current, "deletionTimestamp").is_some() {
            return Ok(present(rt, current));
        }
        let mut marked = current;
        let m = metadata_mut(&mut marked);
        m.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        return Ok(present(rt, tx.put(&rt.storage_key(), marked)));
    }
    remove(tx, rt, key).map(|o| present(rt, o))
}

fn remove(tx: &mut Tx<'_>, rt: &ResourceType, key: &ObjKey) -> ApiResult<Value> {
    if rt.group.is_empty() && rt.plural == "namespaces" {
        for sk in tx.state().keys() {
            let inside: Vec<ObjKey> = tx.state().list(&sk, Some(&key.1)).map(|(k, _)| k.clone()).collect();
            for k in inside.iter().filter(|k| !k.0.is_empty()) {
                tx.delete(&sk, k);
            }
        }
    }
    if rt.group == registry::CRD_GROUP
        && rt.plural == registry::CRD_PLURAL
        && let Some(crd) = tx.state().get(&rt.storage_key(), key).cloned()
        && let Some(crt) = registry::from_crd(&crd).first()
    {
        let sk = crt.storage_key();
        let all: Vec<ObjKey> = tx.state().list(&sk, None).map(|(k, _)| k.clone()).collect();
        for k in &all {
            tx.delete(&sk, k);
        }
    }
    tx.delete(&rt.storage_key(), key).ok_or_else(|| ApiError::not_found(subject(rt, &key.1)))
}

pub fn delete(
    store: &Store,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    q: &Query,
    body: &[u8],
) -> ApiResult<Value> {
    let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let key = (ns.unwrap_or_default().to_string(), name.to_string());
    let dry_run = q.dry_run() || options["dryRun"].as_array().is_some_and(|d| d.iter().any(|x| x == "All"));
    store.write(dry_run, |tx| {
        let current = current_for(tx, rt, &key, options["preconditions"]["resourceVersion"].as_str())?;
        if let Some(uid) = options["preconditions"]["uid"].as_str()
            && Some(uid) != meta::meta_str(&current, "uid")
        {
            return Err(ApiError::conflict(subject(rt, name)));
        }
        delete_in(tx, rt, &key)
    })
}

pub fn delete_collection(store: &Store, rt: &ResourceType, ns: Option<&str>, q: &Query) -> ApiResult<Value> {
    let selector = Selector::parse(q.get("labelSelector"), q.get("fieldSelector"))?;
    let items = store.write(q.dry_run(), |tx| {
        let keys: Vec<ObjKey> = tx
            .state()
            .list(&rt.storage_key(), ns)
            .filter(|(_, o)| selector.matches(o))
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().map(|k| delete_in(tx, rt, k)).collect::<ApiResult<Vec<_>>>()
    })?;
    let rv = store.read(|s| s.rv());
    Ok(json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(),
        "metadata": {"resourceVersion": rv.to_string()}, "items": items}))
}
