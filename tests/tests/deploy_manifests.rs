//! What a cluster operator applies: the kubectl manifests (controller/deploy) and the Istio EnvoyFilter
//! (envoy/istio, `berth istio-config`). kubectl accepts them against the Kubernetes API test server; the Envoy parts
//! of the EnvoyFilter, assembled into a bootstrap, validate and run in real Envoy, loading the module remotely from
//! a real `berth run --filter-wasm` and routing a request to a loopback backend.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_tests::kube::KubeApiServer;
use berth_tests::manifests::{self, ManifestDir, Rule};
use berth_tests::process::Process;
use berth_tests::{Backend, Controller, client, envoy, paths, wait};
use serde_json::{Value, json};

/// The test server serves the kinds Berth reads; the kinds only an operator applies (Deployments, RBAC, Istio's
/// EnvoyFilter) are stood in for by CRDs of the same group, version and kind, so kubectl maps and sends them as on
/// a cluster. (ServiceAccount is core and cannot be stood in for.)
fn stand_ins() -> String {
    let crd = |group: &str, version: &str, kind: &str, plural: &str, scope: &str| {
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {plural}.{group}}}\n\
             spec:\n  group: {group}\n  scope: {scope}\n  names: {{kind: {kind}, plural: {plural}, singular: \
             {singular}}}\n  versions: [{{name: {version}, served: true, storage: true, schema: {{openAPIV3Schema: \
             {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}}}]\n",
            singular = kind.to_lowercase()
        )
    };
    let rbac = "rbac.authorization.k8s.io";
    [
        crd("apps", "v1", "Deployment", "deployments", "Namespaced"),
        crd(rbac, "v1", "ClusterRole", "clusterroles", "Cluster"),
        crd(rbac, "v1", "ClusterRoleBinding", "clusterrolebindings", "Cluster"),
        crd(rbac, "v1", "Role", "roles", "Namespaced"),
        crd(rbac, "v1", "RoleBinding", "rolebindings", "Namespaced"),
        crd("networking.istio.io", "v1alpha3", "EnvoyFilter", "envoyfilters", "Namespaced"),
    ]
    .join("---\n")
}

#[test]
fn kubectl_applies_the_deploy_manifests_and_the_envoy_filter() {
    let work = tempfile::tempdir().unwrap();
    let server = KubeApiServer::start(work.path());
    let api = server.kubectl();
    api.apply(&stand_ins());

    // The kustomization builds and lists every manifest of the directory except the example.
    let built = api.ok(&["kustomize", "controller/deploy"]);
    for kind in ["Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"] {
        assert!(built.contains(&format!("kind: {kind}\n")), "{kind} missing from the kustomization:\n{built}");
    }
    for kind in ["Role", "RoleBinding", "Deployment", "Service"] {
        assert!(built.contains(&format!("kind: {kind}\n")), "{kind} missing from the kustomization:\n{built}");
    }
    assert!(built.contains("image: ghcr.io/berth-dev/berth:0.1.0"), "{built}");

    // Everything but the ServiceAccount goes through the server as `kubectl apply -k` would send it (the test
    // server has no ServiceAccounts: a gap of the test server, not of the manifest).
    let without_sa: Vec<&str> =
        built.split("\n---\n").filter(|doc| !doc.lines().any(|line| line == "kind: ServiceAccount")).collect();
    let out = api.apply(&without_sa.join("\n---\n"));
    for name in [
        "namespace/berth-system created",
        "customresourcedefinition.apiextensions.k8s.io/portallocations.berth.dev created",
        "deployment.apps/berth-controller created",
        "service/berth-controller created",
        "clusterrole.rbac.authorization.k8s.io/berth created",
        "rolebinding.rbac.authorization.k8s.io/berth created",
        "clusterrolebinding.rbac.authorization.k8s.io/berth created",
    ] {
        assert!(out.contains(name), "{name}:\n{out}");
    }
    // The CRD exists now, so the example applies; so does the rendered EnvoyFilter (namespace first).
    assert!(api.ok(&["apply", "-f", "controller/deploy/portallocation-example.yaml"]).contains("created"));
    api.ok(&["create", "namespace", "istio-system"]);
    assert!(api.ok(&["apply", "-f", "envoy/istio/envoyfilter.example.yaml"]).contains("envoyfilter"));
    let host = api.ok(&["get", "portallocation", "tcp", "-o", "jsonpath={.spec.host}"]);
    assert_eq!(host, "tcp.example.com");
    let args = api.ok(&["get", "deployment", "-n", "berth-system", "berth-controller", "-o", "jsonpath={.spec}"]);
    assert!(args.contains("\"--source\",\"kube\"") && args.contains("readOnlyRootFilesystem"), "{args}");
}

/// `GET /v1/filter.wasm` as raw bytes with its headers.
fn fetch_module(addr: SocketAddr) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET /v1/filter.wasm HTTP/1.0\r\nHost: berth\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end");
    (String::from_utf8_lossy(&raw[..split]).to_lowercase(), raw[split + 4..].to_vec())
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// The Envoy parts of a rendered EnvoyFilter delivered as Istio delivers them, as dynamic resources: the CLUSTER
/// additions in a CDS file, the LISTENER additions (moved to loopback) in an LDS file, beside a bootstrap holding
/// only an admin interface and where those files are. Returns the bootstrap's path.
fn dynamic_config_from(envoy_filter: &Value, admin: SocketAddr, dir: &Path) -> std::path::PathBuf {
    let (mut clusters, mut listeners): (Vec<Value>, Vec<Value>) = (Vec::new(), Vec::new());
    for patch in envoy_filter["spec"]["configPatches"].as_array().unwrap() {
        let value = &patch["patch"]["value"];
        match patch["applyTo"].as_str().unwrap() {
            "CLUSTER" => clusters.push(value.clone()),
            "LISTENER" => {
                let text = value.to_string().replace("\"0.0.0.0\"", "\"127.0.0.1\"");
                listeners.push(serde_json::from_str(&text).unwrap());
            }
            other => panic!("unexpected patch {other}: only CLUSTER and LISTENER reach a current Istio gateway"),
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    let (cds, lds) = (dir.join("cds.yaml"), dir.join("lds.yaml"));
    envoy::write_resources(&cds, envoy::CLUSTER_TYPE, &clusters);
    envoy::write_resources(&lds, envoy::LISTENER_TYPE, &listeners);
    let source = |file: &Path| {
        json!({
            "path_config_source": { "path": file, "watched_directory": { "path": dir } },
            "resource_api_version": "V3",
        })
    };
    let bootstrap = json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin.port() } } },
        "node": { "id": "gateway", "cluster": "istio-ingressgateway" },
        "dynamic_resources": { "cds_config": source(&cds), "lds_config": source(&lds) },
    });
    let path = dir.join("bootstrap.json");
    std::fs::write(&path, bootstrap.to_string()).unwrap();
    path
}

/// A controller serving its module (`--filter-wasm`) and one Ingress, `web.example/` to the returned backend.
fn controller_serving_the_module() -> (tempfile::TempDir, Backend, Controller) {
    let work = tempfile::tempdir().unwrap();
    let backend = Backend::start("web");
    let dir = ManifestDir::new(&work.path().join("objects"));
    dir.write(
        "all.yaml",
        &[
            manifests::node("n1", "127.0.0.1"),
            manifests::ingress_class(),
            manifests::node_port_service("web", 80, backend.addr.port()),
            manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "web", 80)]),
        ]
        .join("---\n"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], wait::free_port()));
    let wasm = paths::wasm();
    let controller =
        Controller::start_with(addr, &dir.path, work.path(), &[format!("--filter-wasm={}", wasm.display())]);
    (work, backend, controller)
}

#[test]
fn the_envoy_filter_runs_in_envoy_loading_the_module_from_the_controller() {
    let (work, _backend, controller) = controller_serving_the_module();
    let (addr, wasm) = (controller.addr, paths::wasm());

    // (c) The controller serves the very module, tagged with its sha256.
    let (headers, body) = fetch_module(controller.addr);
    assert!(headers.starts_with("http/1.0 200") || headers.starts_with("http/1.1 200"), "{headers}");
    assert!(headers.contains("content-type: application/wasm"), "{headers}");
    assert_eq!(body, std::fs::read(&wasm).unwrap());
    let sha = sha256sum(&wasm);
    assert_eq!(sha.len(), 64);
    assert!(headers.contains(&format!("etag: \"{sha}\"")), "{headers}");

    // (b) The EnvoyFilter for this controller, its Envoy parts as a bootstrap.
    // Two TCP ports and, after them, the TLS passthrough port.
    let (http_port, tcp_first) = (wait::free_port(), wait::free_port_range(3).0);
    let rendered = berth_tests::controller::berth(&[
        "istio-config",
        &format!("--controller-service=127.0.0.1:{}", addr.port()),
        &format!("--wasm={}", wasm.display()),
        &format!("--http-port={http_port}"),
        &format!("--tcp-ports={tcp_first}-{}", tcp_first + 1),
        &format!("--tls-port={}", tcp_first + 2),
    ]);
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let text = String::from_utf8(rendered.stdout).unwrap();
    assert!(text.contains(&sha), "the rendered filter names the module's sha256");
    let envoy_filter: Value = serde_yaml::from_str(&text).unwrap();
    let admin = SocketAddr::from(([127, 0, 0, 1], wait::free_port()));
    let config = dynamic_config_from(&envoy_filter, admin, &work.path().join("gateway"));
    envoy::validate(&config).unwrap();

    // And it runs: the module arrives through `remote`, one root context fetches the table, a request is routed.
    let mut command = Command::new(paths::envoy());
    command.arg("-c").arg(&config).args(["--use-dynamic-base-id", "--concurrency", "2", "--log-level", "info"]);
    let mut process = Process::spawn("envoy", &mut command, work.path());
    let http = SocketAddr::from(([127, 0, 0, 1], http_port));
    wait::until("web.example through the Istio pieces", Duration::from_secs(30), || {
        assert!(process.is_running(), "envoy exited:\n{}", process.log());
        client::get(http, "web.example", "/").ok().filter(|r| r.header("x-backend") == Some("web"))
    });
    let miss = client::get(http, "other.example", "/").unwrap();
    assert_eq!(miss.status, 404, "answered by the Berth filter");
    assert!(miss.header("x-berth").is_some(), "{:?}", miss.body);
    drop(controller);
}

/// The controller's cluster arrives by CDS like the listeners that download the module through it, and xDS does
/// not promise it comes first: a listener whose download fails keeps warming and retries, and serves once the
/// cluster is there.
#[test]
fn the_istio_listeners_wait_for_the_controller_cluster_that_arrives_after_them() {
    let (work, _backend, controller) = controller_serving_the_module();
    let (addr, wasm) = (controller.addr, paths::wasm());
    let http_port = wait::free_port();
    let rendered = berth_tests::controller::berth(&[
        "istio-config",
        &format!("--controller-service=127.0.0.1:{}", addr.port()),
        &format!("--wasm={}", wasm.display()),
        &format!("--http-port={http_port}"),
    ]);
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let envoy_filter: Value = serde_yaml::from_slice(&rendered.stdout).unwrap();
    let admin = SocketAddr::from(([127, 0, 0, 1], wait::free_port()));
    let gateway = work.path().join("gateway");
    let config = dynamic_config_from(&envoy_filter, admin, &gateway);

    // First without the controller's cluster.
    let cds = gateway.join("cds.yaml");
    let all_clusters = envoy::read_resources(&cds);
    let others: Vec<Value> = all_clusters.iter().filter(|c| c["name"] != "berth_controller").cloned().collect();
    assert_eq!(others.len() + 1, all_clusters.len());
    envoy::write_resources(&cds, envoy::CLUSTER_TYPE, &others);
    let mut command = Command::new(paths::envoy());
    command.arg("-c").arg(&config).args(["--use-dynamic-base-id", "--concurrency", "2", "--log-level", "info"]);
    let mut process = Process::spawn("envoy", &mut command, work.path());
    // Envoy tried the download and, without the module, stays initializing (its listeners not serving).
    wait::until("Envoy to try downloading the module", Duration::from_secs(20), || {
        assert!(process.is_running(), "envoy exited:\n{}", process.log());
        (berth_tests::admin::stat(admin, "wasm.remote_load_cache_misses") >= 1).then_some(())
    });
    let ready = client::get(admin, "admin", "/ready").unwrap();
    assert_eq!((ready.status, ready.body.trim()), (503, "INITIALIZING"), "{ready:?}");
    let http = SocketAddr::from(([127, 0, 0, 1], http_port));
    assert!(client::get(http, "web.example", "/").is_err(), "no listener before the module is there");

    // Then the cluster arrives: the next retry downloads the module and the listener serves.
    envoy::write_resources(&cds, envoy::CLUSTER_TYPE, &all_clusters);
    wait::until("web.example once the controller's cluster is there", Duration::from_secs(60), || {
        assert!(process.is_running(), "envoy exited:\n{}", process.log());
        client::get(http, "web.example", "/").ok().filter(|r| r.header("x-backend") == Some("web"))
    });
    assert_eq!(client::get(admin, "admin", "/ready").unwrap().status, 200);
}
