//! Label and field selectors as the list and watch query parameters spell them.

use crate::status::{ApiError, ApiResult};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, PartialEq)]
enum FieldReq {
    Eq(String, String),
    NotEq(String, String),
}

/// Both selectors of one request; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

impl Selector {
    pub fn parse(label_selector: Option<&str>, field_selector: Option<&str>) -> ApiResult<Self> {
        Ok(Selector {
            labels: label_selector.map(parse_labels).transpose()?.unwrap_or_default(),
            fields: field_selector.map(parse_fields).transpose()?.unwrap_or_default(),
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels: Vec<(&str, &str)> = crate::meta::labels(obj).collect();
        let label = |k: &str| labels.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v);
        let labels_ok = self.labels.iter().all(|r| match r {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
        });
        labels_ok
            && self.fields.iter().all(|r| match r {
                FieldReq::Eq(path, v) => field(obj, path) == *v,
                FieldReq::NotEq(path, v) => field(obj, path) != *v,
            })
    }
}

/// A dotted field as a string; a missing field reads as "" (so `metadata.namespace=` matches cluster objects).
fn field(obj: &Value, path: &str) -> String {
    let mut v = obj;
    for part in path.split('.') {
        match v.get(part) {
            Some(next) => v = next,
            None => return String::new(),
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (vec![], 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn parse_labels(s: &str) -> ApiResult<Vec<LabelReq>> {
    let bad = || ApiError::bad_request(format!("unable to parse requirement: invalid label selector {s:?}"));
    split_top(s)
        .into_iter()
        .map(|part| {
            if let Some(k) = part.strip_prefix('!') {
                return Ok(LabelReq::NotExists(k.trim().into()));
            }
            if let Some((k, v)) = part.split_once("!=") {
                return Ok(LabelReq::NotEq(k.trim().into(), v.trim().into()));
            }
            if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                return Ok(LabelReq::Eq(k.trim().into(), v.trim().into()));
            }
            let mut words = part.splitn(2, char::is_whitespace);
            let key = words.next().unwrap_or_default().to_string();
            let Some(rest) = words.next().map(str::trim) else { return Ok(LabelReq::Exists(key)) };
            let (op, set) = rest.split_once(char::is_whitespace).map(|(o, s)| (o, s.trim())).unwrap_or((rest, ""));
            let set = set.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(bad)?;
            let values = set.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
            match op {
                "in" => Ok(LabelReq::In(key, values)),
                "notin" => Ok(LabelReq::NotIn(key, values)),
                _ => Err(bad()),
            }
        })
        .collect()
}

fn parse_fields(s: &str) -> ApiResult<Vec<FieldReq>> {
    split_top(s)
        .into_iter()
        .map(|part| {
            if let Some((k, v)) = part.split_once("!=") {
                Ok(FieldReq::NotEq(k.trim().into(), v.trim().into()))
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Ok(FieldReq::Eq(k.trim().into(), v.trim().into()))
            } else {
                Err(ApiError::bad_request(format!("invalid field selector: {part:?}")))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({"metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web", "tier": "front"}}, "type": "Opaque"})
    }

    #[test]
    fn label_selectors() {
        let m = |s: &str| Selector::parse(Some(s), None).unwrap().matches(&obj());
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(m("app in (web, api),!missing"));
        assert!(m("tier notin (back)"));
        assert!(!m("app!=web"));
        assert!(!m("app in (api)"));
        assert!(!m("!app"));
        assert!(Selector::parse(Some("app ~ x"), None).is_err());
    }

    #[test]
    fn field_selectors() {
        let m = |s: &str| Selector::parse(None, Some(s)).unwrap().matches(&obj());
        assert!(m("metadata.name=web,metadata.namespace==shop"));
        assert!(m("metadata.name!=api"));
        assert!(m("type=Opaque"));
        assert!(!m("metadata.name=api"));
    }
}
