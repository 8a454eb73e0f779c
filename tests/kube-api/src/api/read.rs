//! GET of one object and of collections: selectors, all-namespaces lists, `limit`/`continue` paging.

use super::object::{present, subject};
use super::query::Query;
use crate::registry::ResourceType;
use crate::selector::Selector;
use crate::status::{ApiError, ApiResult};
use crate::store::{ObjKey, Store};
use serde_json::{Value, json};

pub fn get(store: &Store, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<Value> {
    let key = (ns.unwrap_or_default().to_string(), name.to_string());
    store
        .read(|s| s.get(&rt.storage_key(), &key).cloned())
        .map(|o| present(rt, o))
        .ok_or_else(|| ApiError::not_found(subject(rt, name)))
}

/// The continue token: the list's resourceVersion and the last key served, hex-encoded JSON.
fn encode_continue(rv: u64, last: &ObjKey) -> String {
    json!([rv, last.0, last.1]).to_string().bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> ApiResult<(u64, ObjKey)> {
    let bad = || ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion");
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| token.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let v: (u64, String, String) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok((v.0, (v.1, v.2)))
}

/// Lists objects. Pages after the first are read from the current state (not a snapshot at the first page's
/// resourceVersion) but report that resourceVersion, so a watch from it replays anything that changed meanwhile.
pub fn list(store: &Store, rt: &ResourceType, ns: Option<&str>, q: &Query) -> ApiResult<Value> {
    let selector = Selector::parse(q.get("labelSelector"), q.get("fieldSelector"))?;
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    let cont = q.get("continue").map(decode_continue).transpose()?;
    let (rv, mut items, remaining, next) = store.read(|s| {
        let rv = cont.as_ref().map(|c| c.0).unwrap_or(s.rv());
        let after = cont.as_ref().map(|c| &c.1);
        let mut matching = s
            .list(&rt.storage_key(), ns)
            .filter(|(k, _)| after.is_none_or(|a| *k > a))
            .filter(|(_, o)| selector.matches(o));
        let mut items = vec![];
        let mut last = None;
        for (k, o) in matching.by_ref() {
            if limit.is_some_and(|l| items.len() >= l) {
                items.push((k.clone(), o.clone()));
                break;
            }
            items.push((k.clone(), o.clone()));
            last = Some(k.clone());
        }
        let remaining = matching.count();
        (rv, items, remaining, last)
    });
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(l) = limit
        && items.len() > l
    {
        items.truncate(l);
        if let Some(last) = next {
            metadata["continue"] = json!(encode_continue(rv, &last));
            metadata["remainingItemCount"] = json!(remaining + 1);
        }
    }
    Ok(json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(),
        "metadata": metadata,
        "items": items.into_iter().map(|(_, o)| present(rt, o)).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, &("shop".into(), "web".into()));
        assert_eq!(decode_continue(&t).unwrap(), (42, ("shop".into(), "web".into())));
        assert!(decode_continue("zz").is_err());
    }
}
