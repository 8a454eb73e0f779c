//! The table's wire format: JSON tagged with a format name, so a reader can refuse what it does not understand.

use crate::Table;

/// The format this build reads and writes. A breaking change to the model gets a new name.
pub const FORMAT: &str = "berth.table/v1";

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("table is not valid JSON for {FORMAT}: {0}")]
    Json(#[from] serde_json::Error),
    #[error("table format is {found:?}, this build reads {FORMAT:?}")]
    Format { found: String },
}

pub fn encode(table: &Table) -> Vec<u8> {
    // Serializing plain structs of strings, integers and socket addresses cannot fail.
    serde_json::to_vec(table).unwrap_or_default()
}

/// Parses and checks a table; anything truncated, malformed or of another format is an error.
pub fn decode(bytes: &[u8]) -> Result<Table, DecodeError> {
    let table: Table = serde_json::from_slice(bytes)?;
    if table.format != FORMAT {
        return Err(DecodeError::Format { found: table.format });
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Endpoint, HttpRoute, PathMatch, Source};

    fn sample() -> Table {
        let mut table = Table::new(7);
        table.http.push(HttpRoute {
            host: "website.com".into(),
            path: PathMatch::Segments("/eightyeighty".into()),
            backends: vec![Backend {
                service: "default/svc1:8080".into(),
                weight: 100,
                endpoints: vec![Endpoint { address: "127.0.0.1:30080".parse().unwrap() }],
            }],
            source: Source { kind: "Ingress".into(), namespace: "default".into(), name: "web".into() },
            session_cookie: None,
            policy: None,
        });
        table
    }

    #[test]
    fn round_trips() {
        let table = sample();
        assert_eq!(decode(&encode(&table)).unwrap(), table);
    }

    #[test]
    fn wire_shape_is_readable_json() {
        let json: serde_json::Value = serde_json::from_slice(&encode(&sample())).unwrap();
        assert_eq!(json["format"], FORMAT);
        assert_eq!(json["http"][0]["path"]["segments"], "/eightyeighty");
        assert_eq!(json["http"][0]["backends"][0]["endpoints"][0]["address"], "127.0.0.1:30080");
    }

    #[test]
    fn affinity_fields_round_trip_and_are_absent_when_unused() {
        let plain = String::from_utf8(encode(&sample())).unwrap();
        for field in ["session_cookie", "source_ip_affinity", "affinity_key"] {
            assert!(!plain.contains(field), "a table without affinity encodes as before: {plain}");
        }
        let mut table = sample();
        table.http[0].session_cookie = Some("berth".into());
        table.tcp.push(crate::TcpRoute {
            port: 31000,
            backends: vec![],
            source: table.http[0].source.clone(),
            source_ip_affinity: true,
        });
        table.affinity_key = Some(crate::AffinityKey::from_bytes([7; 16]));
        assert_eq!(decode(&encode(&table)).unwrap(), table);
    }

    #[test]
    fn a_route_policy_round_trips_and_a_route_without_one_encodes_as_before() {
        let plain = String::from_utf8(encode(&sample())).unwrap();
        assert!(!plain.contains("policy"), "{plain}");
        let mut table = sample();
        table.http[0].policy = Some(crate::RoutePolicy {
            rewrite_uri: Some("/v2".into()),
            timeout_ms: Some(1500),
            retries: Some(crate::Retries { attempts: 2, retry_on: "5xx".into(), ..crate::Retries::default() }),
            request_headers: crate::HeaderEdits { remove: vec!["x-debug".into()], ..Default::default() },
            ..crate::RoutePolicy::default()
        });
        assert_eq!(decode(&encode(&table)).unwrap(), table);
        let json: serde_json::Value = serde_json::from_slice(&encode(&table)).unwrap();
        assert_eq!(json["http"][0]["policy"]["rewrite_uri"], "/v2");
        assert!(json["http"][0]["policy"].get("response_headers").is_none(), "empty edits are left out");
    }

    #[test]
    fn rejects_truncated_garbage_and_foreign_formats() {
        let bytes = encode(&sample());
        assert!(matches!(decode(&bytes[..bytes.len() / 2]), Err(DecodeError::Json(_))));
        assert!(matches!(decode(b"\x00\xffnot json"), Err(DecodeError::Json(_))));
        let foreign = String::from_utf8(bytes).unwrap().replace(FORMAT, "berth.table/v99");
        let err = decode(foreign.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("berth.table/v99"), "{err}");
    }

    #[test]
    fn rejects_an_endpoint_that_is_not_ip_and_port() {
        let bad = String::from_utf8(encode(&sample())).unwrap().replace("127.0.0.1:30080", "evil.example:80");
        assert!(decode(bad.as_bytes()).is_err());
    }

    #[test]
    fn tls_routes_round_trip_and_a_table_without_them_still_decodes() {
        let mut table = sample();
        table.tls.push(crate::TlsRoute {
            sni: "*.k8s.example.com".into(),
            backends: table.http[0].backends.clone(),
            source: table.http[0].source.clone(),
        });
        assert_eq!(decode(&encode(&table)).unwrap(), table);
        let old = br#"{"format":"berth.table/v1","version":3,"http":[],"tcp":[]}"#;
        assert!(decode(old).unwrap().tls.is_empty(), "written before TLS routes existed");
    }
}
