//! Kubernetes protobuf request bodies for the few kinds kubectl's imperative commands send that way
//! (`kubectl create namespace|configmap|secret`): the `k8s\0` envelope around `runtime.Unknown`, decoded with a
//! hand-written table of field numbers into the JSON the store keeps. Unknown fields are skipped.

use crate::status::{ApiError, ApiResult};
use serde_json::{Map, Value, json};

enum Field {
    Str,
    Bool,
    RepeatedStr,
    /// `map<string, string>`, or `map<string, bytes>` (base64 in JSON) when true.
    StrMap(bool),
    Msg(&'static [(u32, &'static str, Field)]),
}

use Field::*;

const META: &[(u32, &str, Field)] = &[
    (1, "name", Str),
    (2, "generateName", Str),
    (3, "namespace", Str),
    (11, "labels", StrMap(false)),
    (12, "annotations", StrMap(false)),
    (14, "finalizers", RepeatedStr),
];
const NAMESPACE: &[(u32, &str, Field)] =
    &[(1, "metadata", Msg(META)), (2, "spec", Msg(&[(1, "finalizers", RepeatedStr)]))];
const CONFIG_MAP: &[(u32, &str, Field)] =
    &[(1, "metadata", Msg(META)), (2, "data", StrMap(false)), (3, "binaryData", StrMap(true)), (4, "immutable", Bool)];
const SECRET: &[(u32, &str, Field)] = &[
    (1, "metadata", Msg(META)),
    (2, "data", StrMap(true)),
    (3, "type", Str),
    (4, "stringData", StrMap(false)),
    (5, "immutable", Bool),
];

pub fn is_protobuf(content_type: &str) -> bool {
    content_type.starts_with("application/vnd.kubernetes.protobuf")
}

/// Decodes an enveloped protobuf object into JSON (with apiVersion and kind from the envelope).
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let unsupported = |what: &str| {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("this test server decodes protobuf only for Namespace, ConfigMap and Secret ({what}); send JSON"),
        )
    };
    let unknown = body.strip_prefix(b"k8s\0").ok_or_else(|| unsupported("no k8s envelope"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (num, value) in fields(unknown)? {
        match (num, value) {
            (1, Wire::Len(tm)) => {
                for (n, v) in fields(tm)? {
                    match (n, v) {
                        (1, Wire::Len(s)) => api_version = utf8(s)?,
                        (2, Wire::Len(s)) => kind = utf8(s)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Len(r)) => raw = r,
            _ => {}
        }
    }
    let schema = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        _ => return Err(unsupported(&format!("got {api_version} {kind}"))),
    };
    let mut obj = message(raw, schema)?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

fn bad() -> ApiError {
    ApiError::bad_request("the protobuf body is malformed")
}

fn utf8(b: &[u8]) -> ApiResult<String> {
    String::from_utf8(b.to_vec()).map_err(|_| bad())
}

fn varint(buf: &[u8], pos: &mut usize) -> ApiResult<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(bad)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(bad())
}

fn fields(buf: &[u8]) -> ApiResult<Vec<(u32, Wire<'_>)>> {
    let (mut out, mut pos) = (vec![], 0);
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let num = (tag >> 3) as u32;
        let wire = match tag & 7 {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 | 5 => {
                pos += if tag & 7 == 1 { 8 } else { 4 };
                Wire::Fixed
            }
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len()).ok_or_else(bad)?;
                let slice = &buf[pos..end];
                pos = end;
                Wire::Len(slice)
            }
            _ => return Err(bad()),
        };
        out.push((num, wire));
    }
    Ok(out)
}

fn message(buf: &[u8], schema: &[(u32, &str, Field)]) -> ApiResult<Map<String, Value>> {
    let mut obj = Map::new();
    for (num, wire) in fields(buf)? {
        let Some((_, name, field)) = schema.iter().find(|(n, _, _)| *n == num) else { continue };
        match (field, wire) {
            (Str, Wire::Len(s)) => {
                obj.insert(name.to_string(), json!(utf8(s)?));
            }
            (Bool, Wire::Varint(v)) => {
                obj.insert(name.to_string(), json!(v != 0));
            }
            (RepeatedStr, Wire::Len(s)) => {
                let list = obj.entry(name.to_string()).or_insert_with(|| json!([]));
                if let Value::Array(a) = list {
                    a.push(json!(utf8(s)?));
                }
            }
            (StrMap(binary), Wire::Len(entry)) => {
                let (mut k, mut v) = (String::new(), Value::String(String::new()));
                for (n, w) in fields(entry)? {
                    match (n, w) {
                        (1, Wire::Len(s)) => k = utf8(s)?,
                        (2, Wire::Len(s)) if *binary => v = json!(base64(s)),
                        (2, Wire::Len(s)) => v = json!(utf8(s)?),
                        _ => {}
                    }
                }
                let map = obj.entry(name.to_string()).or_insert_with(|| json!({}));
                if let Value::Object(m) = map {
                    m.insert(k, v);
                }
            }
            (Msg(inner), Wire::Len(s)) => {
                obj.insert(name.to_string(), Value::Object(message(s, inner)?));
            }
            _ => {}
        }
    }
    Ok(obj)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len(num: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((num << 3) | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_secret_in_its_envelope() {
        let meta = [len(1, b"s"), len(11, &[len(1, b"app"), len(2, b"web")].concat())].concat();
        let secret =
            [len(1, &meta), len(2, &[len(1, b"kubeconfig"), len(2, b"abcd")].concat()), len(3, b"Opaque")].concat();
        let unknown = [len(1, &[len(1, b"v1"), len(2, b"Secret")].concat()), len(2, &secret)].concat();
        let body = [b"k8s\0".as_slice(), &unknown].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "labels": {"app": "web"}},
            "data": {"kubeconfig": "YWJjZA=="}, "type": "Opaque"})
        );
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(decode(b"{}").unwrap_err().code, 415);
    }
}
