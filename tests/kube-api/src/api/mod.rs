//! Resource requests under `/api` and `/apis`: path and scope checks, request counting, dispatch by verb.

mod object;
mod patch;
mod query;
mod read;
pub mod target;
mod watch;
mod write;

pub use query::Query;
pub use write::create_in;

use crate::discovery;
use crate::faults::Access;
use crate::registry::ResourceType;
use crate::server::App;
use crate::status::{ApiError, ApiResult};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;
use target::{Path, Target};

pub async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q = Query::parse(uri.query());
    let types = app.store.read(|s| s.types());
    let namespaced = |g: &str, v: &str, p: &str| {
        types.iter().any(|t| t.group == g && t.version == v && t.plural == p && t.namespaced)
    };
    let result = match target::parse(uri.path(), namespaced) {
        None => Err(ApiError::unknown_resource()),
        Some(Path::Group(g)) => discovery::group(&types, &g).map(json).ok_or_else(ApiError::unknown_resource),
        Some(Path::Resource(t)) if t.plural.is_empty() => {
            discovery::resource_list(&types, &t.group, &t.version).map(json).ok_or_else(ApiError::unknown_resource)
        }
        Some(Path::Resource(t)) => {
            let rt = types.iter().find(|r| r.group == t.group && r.version == t.version && r.plural == t.plural);
            match rt {
                Some(rt) => resource(&app, &method, rt.clone(), t, &q, &headers, &body),
                None => Err(ApiError::unknown_resource()),
            }
        }
    };
    tracing::debug!(%method, %uri, ok = result.is_ok(), "request");
    result.unwrap_or_else(IntoResponse::into_response)
}

fn json(v: Value) -> Response {
    axum::Json(v).into_response()
}

fn resource(
    app: &Arc<App>,
    method: &Method,
    rt: ResourceType,
    t: Target,
    q: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let scope_ok = match (&t.namespace, &t.name) {
        (Some(_), _) => rt.namespaced,
        (None, Some(_)) => !rt.namespaced,
        (None, None) => true,
    };
    let sub_ok = match &t.sub {
        None => true,
        Some(s) => s == "status" && rt.status && t.name.is_some(),
    };
    if !scope_ok || !sub_ok {
        return Err(ApiError::unknown_resource());
    }
    let ns = t.namespace.as_deref();
    let sub = t.sub.as_deref();
    let label = match sub {
        Some(s) => format!("{}/{s}", rt.plural),
        None => rt.plural.clone(),
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let store = &app.store;
    let count = |verb: &str| {
        app.faults.count(verb, &label);
        let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let selected =
            q.get("fieldSelector").and_then(|f| f.strip_prefix("metadata.name=")).filter(|n| !n.contains(','));
        app.faults.record_access(Access {
            agent: agent.split_whitespace().next().unwrap_or_default().to_string(),
            verb: verb.to_string(),
            group: rt.group.clone(),
            resource: label.clone(),
            namespace: t.namespace.clone(),
            name: t.name.clone().or_else(|| selected.map(str::to_string)),
        });
    };
    match (method.as_str(), t.name.as_deref()) {
        ("GET", Some(name)) => {
            count("get");
            read::get(store, &rt, ns, name).map(json)
        }
        ("GET", None) if q.flag("watch") => {
            count("watch");
            watch::watch(app.clone(), rt, t.namespace, q)
        }
        ("GET", None) => {
            count("list");
            read::list(store, &rt, ns, q).map(json)
        }
        ("POST", None) if rt.namespaced && ns.is_none() => Err(ApiError::method_not_allowed("POST needs a namespace")),
        ("POST", None) => {
            count("create");
            let body = write::parse_body(body, content_type)?;
            write::create(store, &rt, ns, q, body).map(|o| (StatusCode::CREATED, axum::Json(o)).into_response())
        }
        ("PUT", Some(name)) => {
            count("update");
            let body = write::parse_body(body, content_type)?;
            write::update(store, &rt, ns, name, sub, q, body).map(json)
        }
        ("PATCH", Some(name)) => {
            count("patch");
            let key = (ns.unwrap_or_default().to_string(), name.to_string());
            let existed = store.read(|s| s.get(&rt.storage_key(), &key).is_some());
            let req = patch::PatchRequest { rt: &rt, ns, name, sub, content_type, body };
            let obj = patch::patch(store, req, q)?;
            let code = if existed { StatusCode::OK } else { StatusCode::CREATED };
            Ok((code, axum::Json(obj)).into_response())
        }
        ("DELETE", Some(name)) => {
            count("delete");
            write::delete(store, &rt, ns, name, q, body).map(json)
        }
        ("DELETE", None) if sub.is_none() => {
            count("deletecollection");
            write::delete_collection(store, &rt, ns, q).map(json)
        }
        (m, _) => Err(ApiError::method_not_allowed(format!("{m} is not supported on {label}"))),
    }
}
