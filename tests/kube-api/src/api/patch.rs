//! PATCH: merge, strategic merge, JSON patch and server-side apply (which creates a missing object), on the
//! main resource or the status subresource.

use super::object::{check_type, present, record_manager, subject};
use super::query::Query;
use super::write::{create_in, current_for, parse_body, update_in};
use crate::meta;
use crate::patch::{self, PatchType};
use crate::registry::ResourceType;
use crate::status::{ApiError, ApiResult};
use crate::store::Store;
use serde_json::Value;

pub struct PatchRequest<'a> {
    pub rt: &'a ResourceType,
    pub ns: Option<&'a str>,
    pub name: &'a str,
    pub sub: Option<&'a str>,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

pub fn patch(store: &Store, req: PatchRequest<'_>, q: &Query) -> ApiResult<Value> {
    let PatchRequest { rt, ns, name, sub, content_type, body } = req;
    let kind = PatchType::from_content_type(content_type)?;
    let doc = match kind {
        PatchType::Apply => parse_body(body, "yaml")?,
        _ => parse_body(body, "json")?,
    };
    let manager = q.field_manager();
    if kind == PatchType::Apply {
        if manager.is_none() {
            return Err(ApiError::new(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        let mut check = doc.clone();
        check_type(rt, &mut check)?;
        if check["apiVersion"].is_null() || check["kind"].is_null() {
            return Err(ApiError::bad_request("apiVersion and kind are required in an apply patch"));
        }
    }
    let key = (ns.filter(|_| rt.namespaced).unwrap_or_default().to_string(), name.to_string());
    store.write(q.dry_run(), |tx| {
        let now = meta::now_rfc3339();
        let existing = tx.state().get(&rt.storage_key(), &key).cloned();
        let Some(current) = existing else {
            if kind == PatchType::Apply && sub.is_none() {
                let mut obj = doc.clone();
                let fields = patch::field_set(&doc);
                record_manager(&mut obj, manager.unwrap_or_default(), "Apply", &rt.api_version(), None, fields, &now);
                return create_in(tx, rt, ns, obj, Some(name), &Query::default());
            }
            return Err(ApiError::not_found(subject(rt, name)));
        };
        let mut new = present(rt, current.clone());
        match kind {
            PatchType::Merge => patch::merge(&mut new, &doc),
            PatchType::Strategic | PatchType::Apply => patch::strategic(&mut new, &doc),
            PatchType::Json => patch::json_patch(&mut new, &doc)?,
        }
        // A patch may carry a resourceVersion precondition; anything else there is the stored one.
        current_for(tx, rt, &key, meta::resource_version(&new))?;
        if meta::name(&new) != Some(name) {
            return Err(ApiError::invalid(subject(rt, name), "metadata.name: Invalid value: field is immutable"));
        }
        if let Some(m) = manager {
            let (operation, fields) = match kind {
                PatchType::Apply => ("Apply", patch::field_set(&doc)),
                _ => ("Update", patch::field_set(&doc)),
            };
            record_manager(&mut new, m, operation, &rt.api_version(), sub, fields, &now);
        }
        update_in(tx, rt, &current, new, sub)
    })
}
