//! The HTTP API: the table for Envoy (with long-poll), a readable view of routes and errors, health and readiness.
//!
//! - `GET /v1/table?version=N&wait=SECS`: the table now when its version is not `N` (or no version is given);
//!   otherwise held up to `wait` seconds (at most 60) for a new one, then `304 Not Modified`. `If-None-Match:
//!   "N"` stands for `version=N`. The `etag` is the quoted version.
//! - `GET /v1/routes`: `{"table": .., "addresses": [..], "errors": [..], "warnings": [..]}` for people and
//!   `berth routes`. `addresses` lists every port handed out to a tcp route, with the address clients use, and
//!   the address of every tls route served: in directory mode this (with the state file and `berth routes`) is
//!   where addresses show, not the user's YAML.
//!   `stale` is true when a source cannot reach its objects (the table then holds the last ones it delivered);
//!   `sources` says which, since when and why. `health` lists every health-checked endpoint of the table's
//!   backends: healthy or not (unhealthy ones are left out of `table`, as out of the table Envoy gets), since when,
//!   and the last failure's reason.
//! - `GET /healthz`: always `ok`. `GET /readyz`: `ok` once the first table is compiled, else 503.
//! - `GET /v1/filter.wasm`: the filter module given to `berth run --filter-wasm` (`application/wasm`, `etag` the
//!   quoted sha256 in hex), for an Envoy that loads it through `vm_config.code.remote` (the Istio gateway); 404
//!   when the controller serves none.

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::watch;

use crate::api::{Address, Routes};
use crate::diagnostic::DiagnosticView;
use crate::publish::Publication;
use crate::{Error, Result};

/// The longest a client may ask to wait for a new table.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

pub fn router(snapshots: watch::Receiver<Publication>) -> Router {
    Router::new()
        .route("/v1/table", get(table))
        .route("/v1/routes", get(routes))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(snapshots)
}

/// The filter module the controller serves, read once at start: Envoy checks the bytes against the sha256 rendered
/// into its configuration, so they must not change under a running controller.
#[derive(Debug, Clone)]
pub struct FilterModule {
    pub bytes: axum::body::Bytes,
    /// Lowercase hex, as Envoy's `RemoteDataSource.sha256` wants it.
    pub sha256: String,
}

impl FilterModule {
    pub fn load(path: &Path) -> Result<FilterModule> {
        let bytes = std::fs::read(path).map_err(|error| Error::Read { path: path.to_path_buf(), error })?;
        Ok(FilterModule::new(bytes))
    }

    pub fn new(bytes: Vec<u8>) -> FilterModule {
        FilterModule { sha256: sha256_hex(&bytes), bytes: bytes.into() }
    }
}

/// The SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /v1/filter.wasm`, served alongside [`router`]'s routes.
pub fn filter_router(module: Option<FilterModule>) -> Router {
    Router::new().route("/v1/filter.wasm", get(filter_wasm)).with_state(module)
}

async fn filter_wasm(State(module): State<Option<FilterModule>>, headers: HeaderMap) -> Response {
    let Some(module) = module else {
        return (StatusCode::NOT_FOUND, "this controller serves no filter module; start it with --filter-wasm PATH\n")
            .into_response();
    };
    let tag = HeaderValue::from_str(&format!("\"{}\"", module.sha256)).unwrap_or(HeaderValue::from_static("\"\""));
    let cached = headers.get(header::IF_NONE_MATCH).is_some_and(|known| known == tag);
    let mut response =
        if cached { StatusCode::NOT_MODIFIED.into_response() } else { Response::new(Body::from(module.bytes.clone())) };
    let headers = response.headers_mut();
    if !cached {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/wasm"));
    }
    headers.insert(header::ETAG, tag);
    response
}

#[derive(Debug, Default, Deserialize)]
struct TableQuery {
    version: Option<u64>,
    wait: Option<u64>,
}

async fn table(
    State(snapshots): State<watch::Receiver<Publication>>,
    Query(query): Query<TableQuery>,
    headers: HeaderMap,
) -> Response {
    let known = query.version.or_else(|| if_none_match(&headers));
    let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(MAX_WAIT);
    let mut snapshots = snapshots.clone();
    let current = snapshots.borrow_and_update().table.clone();
    let Some(current) = current else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no table compiled yet\n").into_response();
    };
    if known != Some(current.table.version) {
        return table_response(&current);
    }
    let held = crate::metrics::global().long_poll();
    let newer = tokio::time::timeout(wait, async {
        loop {
            // An error means the publisher is gone (shutting down): stop waiting.
            snapshots.changed().await.ok()?;
            let table = snapshots.borrow_and_update().table.clone();
            if let Some(table) = table.filter(|t| Some(t.table.version) != known) {
                return Some(table);
            }
        }
    })
    .await;
    match newer {
        Ok(Some(table)) => table_response(&table),
        _ => {
            drop(held);
            crate::metrics::global().table_served(false);
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            response.headers_mut().insert(header::ETAG, etag(current.table.version));
            response
        }
    }
}

fn table_response(published: &crate::publish::Published) -> Response {
    crate::metrics::global().table_served(true);
    let mut response = Response::new(Body::from(published.body.clone()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::ETAG, etag(published.table.version));
    response
}

fn etag(version: u64) -> HeaderValue {
    // Digits and quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// The version in `If-None-Match: "N"` (weak or strong; the first of a list).
fn if_none_match(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    let first = first.strip_prefix("W/").unwrap_or(first);
    first.trim_matches('"').parse().ok()
}

async fn routes(State(snapshots): State<watch::Receiver<Publication>>) -> Response {
    let snapshot = snapshots.borrow().clone();
    let Some(view) = routes_view(&snapshot) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no table compiled yet\n").into_response();
    };
    let body = serde_json::to_vec_pretty(&view).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// What `/v1/routes` serves of `snapshot`; none before the first table.
pub fn routes_view(snapshot: &Publication) -> Option<Routes> {
    let published = snapshot.table.as_ref()?;
    Some(Routes {
        table: published.table.clone(),
        addresses: snapshot.assignments.values().chain(snapshot.tls_addresses.iter()).filter_map(Address::of).collect(),
        errors: snapshot.diagnostics.iter().filter(|d| !d.is_warning()).map(DiagnosticView::from).collect(),
        warnings: snapshot.diagnostics.iter().filter(|d| d.is_warning()).map(DiagnosticView::from).collect(),
        stale: snapshot.sources.iter().any(|s| s.stale),
        sources: snapshot.sources.to_vec(),
        health: snapshot.health.to_vec(),
        port_ranges: snapshot.port_ranges.to_vec(),
    })
}

async fn ready(State(snapshots): State<watch::Receiver<Publication>>) -> Response {
    if snapshots.borrow().table.is_some() {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no table compiled yet").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Diagnostic;
    use crate::compiler::{Assignment, Assignments, Compiled};
    use crate::health::EndpointHealth;
    use crate::publish::Publisher;
    use axum::http::Request;
    use std::time::Instant;
    use tower::ServiceExt;

    /// An http route for `host`, an error, a warning and a tcp route's address.
    fn compiled(host: &str) -> Compiled {
        let assignment = Assignment {
            object: "VirtualService default/db".into(),
            route: "tcp[0]".into(),
            port: 31000,
            host: Some("tcp.example.com".into()),
        };
        Compiled {
            diagnostics: vec![
                Diagnostic::new("bad").object("Ingress ns/y"),
                Diagnostic::new("outside").object("VirtualService default/db").warning(),
            ],
            assignments: Assignments::from([(assignment.key(), assignment)]),
            ..crate::publish::tests::compiled(&[host], &[])
        }
    }

    async fn get(app: &Router, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        (parts.status, parts.headers, axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec())
    }

    #[tokio::test]
    async fn not_ready_until_the_first_table() {
        let mut publisher = Publisher::new(5);
        let app = router(publisher.subscribe());
        assert_eq!(get(&app, "/healthz", &[]).await.0, StatusCode::OK);
        assert_eq!(get(&app, "/readyz", &[]).await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get(&app, "/v1/table", &[]).await.0, StatusCode::SERVICE_UNAVAILABLE);
        publisher.publish(compiled("a"), vec![]);
        assert_eq!(get(&app, "/readyz", &[]).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn serves_the_table_at_once_when_the_version_differs() {
        let mut publisher = Publisher::new(5);
        let app = router(publisher.subscribe());
        publisher.publish(compiled("a"), vec![]);
        for uri in ["/v1/table", "/v1/table?version=4&wait=30"] {
            let (status, headers, body) = get(&app, uri, &[]).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert_eq!(headers[header::ETAG], "\"5\"");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
            assert_eq!(berth_table::decode(&body).unwrap().http[0].host, "a");
        }
    }

    #[tokio::test]
    async fn answers_not_modified_after_waiting() {
        let mut publisher = Publisher::new(5);
        let app = router(publisher.subscribe());
        publisher.publish(compiled("a"), vec![]);
        let (status, headers, body) = get(&app, "/v1/table?version=5", &[]).await;
        assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));
        assert_eq!(headers[header::ETAG], "\"5\"");
        let started = Instant::now();
        let (status, _, _) = get(&app, "/v1/table", &[("if-none-match", "\"5\""), ("x", "y")]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        let (status, _, _) = get(&app, "/v1/table?version=5&wait=1", &[]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(started.elapsed() >= Duration::from_millis(900), "held for the wait");
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_new_table_as_soon_as_it_is_published() {
        let mut publisher = Publisher::new(5);
        let app = router(publisher.subscribe());
        publisher.publish(compiled("a"), vec![]);
        let waiting = tokio::spawn({
            let app = app.clone();
            async move { get(&app, "/v1/table?version=5&wait=30", &[]).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Diagnostics alone do not end the wait; a new table does.
        let mut same = compiled("a");
        same.diagnostics.clear();
        publisher.publish(same, vec![]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        let started = Instant::now();
        publisher.publish(compiled("b"), vec![]);
        let (status, headers, body) = waiting.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::ETAG], "\"6\"");
        assert_eq!(berth_table::decode(&body).unwrap().http[0].host, "b");
    }

    #[tokio::test]
    async fn a_waiting_request_ends_when_the_publisher_goes_away() {
        let mut publisher = Publisher::new(5);
        let app = router(publisher.subscribe());
        publisher.publish(compiled("a"), vec![]);
        let waiting = tokio::spawn({
            let app = app.clone();
            async move { get(&app, "/v1/table?version=5&wait=60", &[]).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(publisher);
        let (status, _, _) = tokio::time::timeout(Duration::from_secs(2), waiting).await.unwrap().unwrap();
        assert_eq!(status, StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn routes_lists_the_table_and_the_errors_with_their_text() {
        let mut publisher = Publisher::new(5);
        let app = router(publisher.subscribe());
        publisher.publish(compiled("a"), vec![]);
        let (status, _, body) = get(&app, "/v1/routes", &[]).await;
        assert_eq!(status, StatusCode::OK);
        let view: Routes = serde_json::from_slice(&body).unwrap();
        assert_eq!(view.table.http[0].host, "a");
        assert_eq!(view.errors.len(), 1);
        assert_eq!(view.errors[0].text, "Ingress ns/y: bad");
        assert_eq!(view.warnings[0].text, "VirtualService default/db: outside");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for field in ["object", "file", "field", "message", "text", "severity"] {
            assert!(json["errors"][0].get(field).is_some(), "{field}");
        }
        assert_eq!(json["warnings"][0]["severity"], "warning");
        assert_eq!(
            json["addresses"],
            serde_json::json!([{"object": "VirtualService default/db", "route": "tcp[0]",
                                "address": "tcp.example.com:31000", "port": 31000}])
        );
    }

    #[tokio::test]
    async fn routes_lists_endpoint_health() {
        let mut publisher = Publisher::new(5);
        let app = router(publisher.subscribe());
        let health = EndpointHealth::unhealthy_example();
        publisher.publish(compiled("a"), vec![health.clone()]);
        let (_, _, body) = get(&app, "/v1/routes", &[]).await;
        let view: Routes = serde_json::from_slice(&body).unwrap();
        assert_eq!(view.health, [health]);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["health"][0]["healthy"], false);
        assert_eq!(json["health"][0]["last_failure"], "cannot connect: connection refused");
    }

    #[tokio::test]
    async fn serves_the_filter_module_with_its_sha256() {
        let app = filter_router(Some(FilterModule::new(b"abc".to_vec())));
        let (status, headers, body) = get(&app, "/v1/filter.wasm", &[]).await;
        assert_eq!((status, body.as_slice()), (StatusCode::OK, b"abc".as_slice()));
        assert_eq!(headers[header::CONTENT_TYPE], "application/wasm");
        // The published test vector for "abc".
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(headers[header::ETAG], format!("\"{sha}\""));
        let (status, _, body) = get(&app, "/v1/filter.wasm", &[("if-none-match", &format!("\"{sha}\""))]).await;
        assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));
        let (status, _, body) = get(&filter_router(None), "/v1/filter.wasm", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(String::from_utf8_lossy(&body).contains("--filter-wasm"));
    }

    #[test]
    fn reads_if_none_match_forms() {
        let with = |v: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            if_none_match(&headers)
        };
        assert_eq!(with("\"12\""), Some(12));
        assert_eq!(with("W/\"12\""), Some(12));
        assert_eq!(with("\"12\", \"13\""), Some(12));
        assert_eq!(with("*"), None);
    }
}
