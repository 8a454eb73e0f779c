//! The server: options, the axum router (discovery, resources, `/_test` faults), and `KubeApi`, the handle a
//! test holds to reach, fault and stop it.

use crate::api::{self, Query};
use crate::discovery;
use crate::faults::{Access, Counts, Faults};
use crate::registry::StorageKey;
use crate::status::ApiError;
use crate::store::{self, Snapshot, Store};
use crate::tls::{Certificates, TlsListener, TlsOptions};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How to start a server.
#[derive(Debug, Clone)]
pub struct Options {
    /// A loopback address; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Load the state from this file at start (if it exists) and write it after every change.
    pub state_file: Option<PathBuf>,
    /// Start from this state instead (e.g. what `KubeApi::shutdown` returned); wins over `state_file`'s content.
    pub snapshot: Option<Snapshot>,
    /// Changes kept for watches to replay; a watch from an older resourceVersion gets 410 Gone.
    pub history_limit: usize,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Answer aggregated discovery (`apidiscovery.k8s.io/v2`) when asked; off, clients fall back to the legacy form.
    pub aggregated_discovery: bool,
    /// Serve HTTPS with a certificate of a CA made for this server (the kubeconfig trusts it); none: plain HTTP.
    pub tls: Option<TlsOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_file: None,
            snapshot: None,
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(1),
            aggregated_discovery: true,
            tls: None,
        }
    }
}

/// What every request handler shares.
pub struct App {
    pub store: Store,
    pub faults: Faults,
    pub bookmark_interval: Duration,
    pub aggregated_discovery: bool,
    pub addr: SocketAddr,
}

/// A running server. Dropping it stops the server (without waiting); `shutdown` stops it and returns its state.
pub struct KubeApi {
    addr: SocketAddr,
    app: Arc<App>,
    /// The CA clients trust (PEM), when serving TLS.
    ca_pem: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Namespaces every cluster has.
const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

impl KubeApi {
    pub async fn start(opts: Options) -> std::io::Result<KubeApi> {
        if !opts.listen.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the test API server listens on loopback only, not {}", opts.listen),
            ));
        }
        let snapshot = match (opts.snapshot, &opts.state_file) {
            (Some(s), _) => s,
            (None, Some(path)) => store::load(path)?,
            (None, None) => Snapshot::default(),
        };
        let fresh = snapshot.resource_version == 0 && snapshot.objects.is_empty();
        let listener = tokio::net::TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let app = Arc::new(App {
            store: Store::new(snapshot, opts.history_limit, opts.state_file),
            faults: Faults::default(),
            bookmark_interval: opts.bookmark_interval,
            aggregated_discovery: opts.aggregated_discovery,
            addr,
        });
        if fresh {
            for ns in SYSTEM_NAMESPACES {
                create(&app, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
                    .map_err(|e| std::io::Error::other(e.message))?;
            }
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let router = router(app.clone());
        let stopped = async {
            let _ = stopped.await;
        };
        let (task, ca_pem) = match &opts.tls {
            None => (tokio::spawn(serve(listener, router, stopped)), None),
            Some(tls) => {
                let certificates = Certificates::load_or_make(tls)?;
                let listener = TlsListener::new(listener, &certificates)?;
                (tokio::spawn(serve(listener, router, stopped)), Some(certificates.ca_pem))
            }
        };
        Ok(KubeApi { addr, app, ca_pem, stop: Some(stop), task: Some(task) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://` when serving TLS.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA certificate (PEM) that signed the server's, when serving TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A kubeconfig (YAML) for kubectl and `kube::Client`; with TLS it trusts the server's CA.
    pub fn kubeconfig(&self) -> String {
        crate::kubeconfig::render(&self.url(), self.ca_pem.as_deref())
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Ends every open watch stream now.
    pub fn cut_watches(&self) {
        self.app.faults.cut_watches();
    }

    /// Drops the watch history: a watch from any older resourceVersion gets 410 Gone.
    pub fn compact(&self) {
        self.app.store.compact();
    }

    /// Answers 503 (with `Retry-After: 1`) to every API request and cuts the watches, until `resume`: an
    /// overloaded API server. kube-rs retries 503 by default (up to 15 times, backing off); to simulate an
    /// unreachable server instead, `shutdown` and start again on the same address from the returned snapshot.
    pub fn pause(&self) {
        self.app.faults.pause();
    }

    pub fn resume(&self) {
        self.app.faults.resume();
    }

    pub fn counts(&self) -> Counts {
        self.app.faults.counts()
    }

    /// Which client made which kind of request (see [`Access`]).
    pub fn access(&self) -> Vec<Access> {
        self.app.faults.access()
    }

    pub fn reset_counts(&self) {
        self.app.faults.reset_counts();
    }

    pub fn snapshot(&self) -> Snapshot {
        self.app.store.snapshot()
    }

    /// Creates objects from multi-document YAML (Namespaces and CRDs first), as `kubectl create -f` would;
    /// namespaced objects without a namespace go to `default`.
    pub fn create_from_yaml(&self, yaml: &str) -> Result<Vec<Value>, ApiError> {
        create_from_yaml(&self.app, yaml)
    }

    /// The stored object, as read through its storage version's group (any served version).
    pub fn object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = StorageKey { group: group.into(), plural: plural.into() };
        self.app.store.read(|s| s.get(&key, &(namespace.into(), name.into())).cloned())
    }

    /// Stops accepting, ends the watches, waits for the server to finish, and returns its state (to restart
    /// from, on the same port).
    pub async fn shutdown(mut self) -> Snapshot {
        self.stop_now();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        self.app.store.snapshot()
    }

    fn stop_now(&mut self) {
        self.app.faults.cut_watches();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.stop_now();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn serve<L>(listener: L, router: Router, stopped: impl std::future::Future<Output = ()> + Send + 'static)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(stopped).await {
        tracing::warn!(%error, "the test API server stopped");
    }
}

fn create(app: &App, obj: Value) -> Result<Value, ApiError> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = obj["kind"].as_str().unwrap_or_default();
    let types = app.store.read(|s| s.types());
    let rt = types
        .iter()
        .find(|t| t.group == group && t.version == version && t.kind == kind)
        .ok_or_else(|| ApiError::bad_request(format!("no resource of kind {kind} in {api_version}")))?;
    let ns = rt.namespaced.then(|| crate::meta::namespace(&obj).unwrap_or("default").to_string());
    app.store.write(false, |tx| api::create_in(tx, rt, ns.as_deref(), obj, None, &Query::default()))
}

fn create_from_yaml(app: &App, yaml: &str) -> Result<Vec<Value>, ApiError> {
    let mut docs = vec![];
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v: Value = serde::Deserialize::deserialize(doc).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    docs.sort_by_key(|d| match d["kind"].as_str() {
        Some("Namespace") => 0,
        Some("CustomResourceDefinition") => 1,
        _ => 2,
    });
    docs.into_iter().map(|d| create(app, d)).collect()
}

fn router(app: Arc<App>) -> Router {
    let faults = Router::new()
        .route(
            "/_test/cut-watches",
            post(|State(a): State<Arc<App>>| async move {
                a.faults.cut_watches();
                "ok"
            }),
        )
        .route(
            "/_test/compact",
            post(|State(a): State<Arc<App>>| async move {
                a.store.compact();
                "ok"
            }),
        )
        .route(
            "/_test/pause",
            post(|State(a): State<Arc<App>>| async move {
                a.faults.pause();
                "ok"
            }),
        )
        .route(
            "/_test/resume",
            post(|State(a): State<Arc<App>>| async move {
                a.faults.resume();
                "ok"
            }),
        )
        .route(
            "/_test/counts",
            get(|State(a): State<Arc<App>>| async move { axum::Json(a.faults.counts()) }).delete(
                |State(a): State<Arc<App>>| async move {
                    a.faults.reset_counts();
                    "ok"
                },
            ),
        )
        .route("/_test/access", get(|State(a): State<Arc<App>>| async move { axum::Json(a.faults.access()) }))
        .route("/_test/snapshot", get(|State(a): State<Arc<App>>| async move { axum::Json(a.store.snapshot()) }))
        .route(
            "/_test/objects",
            post(|State(a): State<Arc<App>>, body: String| async move {
                create_from_yaml(&a, &body)
                    .map(|objs| axum::Json(json!(objs)).into_response())
                    .unwrap_or_else(IntoResponse::into_response)
            }),
        );
    Router::new()
        .route("/version", get(|| async { axum::Json(discovery::version()) }))
        .route("/api", get(api_root))
        .route("/apis", get(apis_root))
        .route("/openapi/v3", get(openapi_root))
        .route("/openapi/v3/{*path}", get(openapi_group_version))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .fallback(api::handle)
        .layer(middleware::from_fn_with_state(app.clone(), paused))
        .merge(faults)
        .with_state(app)
}

async fn paused(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if app.faults.paused() {
        let mut res = ApiError::unavailable().into_response();
        res.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        return res;
    }
    next.run(req).await
}

fn aggregated(app: &App, headers: &HeaderMap, core: bool) -> Option<Response> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let version = discovery::aggregated_version(accept).filter(|_| app.aggregated_discovery)?;
    let types = app.store.read(|s| s.types());
    let body = discovery::aggregated(&types, core, version);
    Some(([(header::CONTENT_TYPE, discovery::aggregated_content_type(version))], body.to_string()).into_response())
}

async fn openapi_root(State(app): State<Arc<App>>) -> Response {
    axum::Json(crate::openapi::root(&app.store.read(|s| s.types()))).into_response()
}

async fn openapi_group_version(
    State(app): State<Arc<App>>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    let types = app.store.read(|s| s.types());
    let segs: Vec<&str> = path.split('/').collect();
    let doc = match segs.as_slice() {
        ["api", version] => crate::openapi::group_version(&types, "", version),
        ["apis", group, version] => crate::openapi::group_version(&types, group, version),
        _ => None,
    };
    doc.map(|d| axum::Json(d).into_response()).unwrap_or_else(|| ApiError::unknown_resource().into_response())
}

async fn api_root(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    aggregated(&app, &headers, true)
        .unwrap_or_else(|| axum::Json(discovery::core_versions(&app.addr.to_string())).into_response())
}

async fn apis_root(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    aggregated(&app, &headers, false).unwrap_or_else(|| {
        let types = app.store.read(|s| s.types());
        axum::Json(discovery::group_list(&types)).into_response()
    })
}
