//! Many clusters: one `berth run --source kube` watching its own cluster and, through kubeconfig Secrets created
//! with the real kubectl, more clusters (each one a Kubernetes API test server of its own), real Envoy routing to
//! all of them; and a directory source whose subdirectories are clusters.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use berth_tests::controller::berth;
use berth_tests::kube::{KubeApiServer, Kubectl};
use berth_tests::load::{Load, StopOnDrop};
use berth_tests::manifests::{self, HttpRoute, ManifestDir, node_port_service, virtual_service};
use berth_tests::{Backend, Controller, Envoy, client, wait};

const NAMESPACE: &str = "berth-system";
const API_DOMAIN: &str = "k8s.example.com";

/// A cluster: its API server (HTTPS when `names` are given for its certificate), a Ready node at 127.0.0.1, the
/// VirtualService CRD, and a NodePort Service `name` in front of a backend answering as `name`.
struct TestCluster {
    api: KubeApiServer,
    backend: Backend,
}

impl TestCluster {
    fn start(work: &Path, name: &str, tls_names: Option<&[&str]>) -> TestCluster {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let api = match tls_names {
            Some(names) => KubeApiServer::start_tls_named(&dir, names),
            None => KubeApiServer::start(&dir),
        };
        let backend = Backend::start(name);
        let kubectl = api.kubectl();
        kubectl.install_crds();
        kubectl.apply(
            &[manifests::node("n1", "127.0.0.1"), node_port_service(name, 80, backend.addr.port())].join("---\n"),
        );
        TestCluster { api, backend }
    }

    fn kubectl(&self) -> Kubectl {
        self.api.kubectl()
    }

    /// Exposes `host` → this cluster's Service as VirtualService `vs`.
    fn expose(&self, vs: &str, host: &str) {
        let name = self.backend.name.clone();
        self.kubectl().apply(&virtual_service(vs, &[host], &[HttpRoute("prefix", "/", &name, 80)]));
    }
}

/// `kubectl create secret generic kubeconfig-<cluster>-<suffix> --from-file=kubeconfig=...` in the local cluster,
/// as an operator adds a cluster.
fn add_cluster(local: &Kubectl, secret: &str, kubeconfig: &Path) {
    let from = format!("--from-file=kubeconfig={}", kubeconfig.display());
    local.ok(&["create", "secret", "generic", secret, &from, "-n", NAMESPACE]);
}

fn backend_of(envoy: &Envoy, host: &str) -> Option<String> {
    let response = envoy.get(host, "/");
    (response.status == 200).then(|| response.header("x-backend").unwrap_or_default().to_string())
}

fn wait_backend(envoy: &Envoy, host: &str, backend: &str) {
    wait::until(&format!("{host} to reach {backend}"), Duration::from_secs(30), || {
        (backend_of(envoy, host).as_deref() == Some(backend)).then_some(())
    });
}

/// The messages of the Events on Secret `secret` of the controller's namespace.
fn secret_events(local: &Kubectl, secret: &str) -> Vec<String> {
    let out = local.ok(&["get", "events", "-n", NAMESPACE, "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("events JSON");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["kind"] == "Secret" && e["involvedObject"]["name"] == secret)
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits for the first Events on Secret `secret`; returns their messages.
fn wait_for_events(local: &Kubectl, secret: &str) -> Vec<String> {
    wait::until(&format!("an Event on {secret}"), Duration::from_secs(30), || {
        let found = secret_events(local, secret);
        (!found.is_empty()).then_some(found)
    })
}

/// Waits until the wall clock is in the next second: creationTimestamps have whole seconds, and two objects that
/// must differ in age need two different ones.
fn next_second() {
    let second = || SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let now = second();
    wait::until("the next second", Duration::from_secs(3), || (second() > now).then_some(()));
}

fn start_local(work: &Path, tls_port: u16) -> (TestCluster, Controller, Envoy) {
    let local = TestCluster::start(work, "local", None);
    local.kubectl().ok(&["create", "namespace", NAMESPACE]);
    local.expose("web", "local.example.com");
    let args = [
        format!("--cluster-secrets-namespace={NAMESPACE}"),
        format!("--api-domain={API_DOMAIN}"),
        format!("--tls-port={tls_port}"),
    ];
    let controller = Controller::start_kube(&local.api.kubeconfig, &work.join("local"), &args);
    let envoy = Envoy::start_with(controller.addr, work, &[format!("--tls-port={tls_port}")]);
    wait_backend(&envoy, "local.example.com", "local");
    (local, controller, envoy)
}

/// [`start_local`], and cluster `alpha` exposing `alpha.example.com` (not added to the controller yet).
fn start_local_and_alpha(work: &Path) -> (TestCluster, Controller, Envoy, TestCluster) {
    let (local, controller, envoy) = start_local(work, wait::free_port_range(1).0);
    let alpha = TestCluster::start(work, "alpha", None);
    alpha.expose("web", "alpha.example.com");
    (local, controller, envoy, alpha)
}

#[test]
fn kubeconfig_secrets_add_clusters_whose_routes_merge_and_whose_api_servers_are_reachable_by_name() {
    let work = tempfile::tempdir().expect("temp dir");
    let tls_port = wait::free_port_range(1).0;
    let (local, controller, envoy) = start_local(work.path(), tls_port);
    let alpha = TestCluster::start(work.path(), "alpha", Some(&["alpha.k8s.example.com"]));
    let beta = TestCluster::start(work.path(), "beta", None);
    alpha.expose("web", "alpha.example.com");
    beta.expose("web", "beta.example.com");
    // The same host in two clusters: beta's claim is older (though alpha comes first by name).
    beta.expose("shared", "shared.example.com");
    next_second();
    alpha.expose("shared", "shared.example.com");

    add_cluster(&local.kubectl(), "kubeconfig-alpha-1a2b", &alpha.api.kubeconfig);
    add_cluster(&local.kubectl(), "kubeconfig-beta-3c4d", &beta.api.kubeconfig);
    wait_backend(&envoy, "alpha.example.com", "alpha");
    wait_backend(&envoy, "beta.example.com", "beta");
    wait_backend(&envoy, "shared.example.com", "beta");
    assert_eq!(backend_of(&envoy, "local.example.com").as_deref(), Some("local"));

    // The loser hears it on its own object, in its own cluster, with the winner named with its cluster.
    let error = wait::until("berth.dev/error on alpha's shared", Duration::from_secs(20), || {
        let error = alpha.kubectl().annotation(&["virtualservice", "shared"], "berth.dev/error");
        (!error.is_empty()).then_some(error)
    });
    assert!(error.contains("already routed by VirtualService beta/default/shared, which is older"), "{error}");
    assert!(beta.kubectl().annotation(&["virtualservice", "shared"], "berth.dev/error").is_empty());

    // kubectl through Envoy's TLS listener, by server name, reaches alpha's API server with its own certificate.
    let through = format!("https://127.0.0.1:{tls_port}");
    let listed = alpha.kubectl().ok(&[
        "--server",
        &through,
        "--tls-server-name",
        "alpha.k8s.example.com",
        "get",
        "virtualservices",
        "-o",
        "name",
    ]);
    let mut names: Vec<&str> = listed.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["virtualservice.networking.istio.io/shared", "virtualservice.networking.istio.io/web"]);
    // A server name no route has: the connection is closed (kubectl fails rather than reach anything).
    let unknown =
        alpha.kubectl().run(&["--server", &through, "--tls-server-name", "nope.k8s.example.com", "get", "ns"]);
    assert!(!unknown.status.success(), "an unknown server name reaches nothing");

    // Deleting beta's Secret takes beta's routes away; alpha's shared is served now; nothing else fails meanwhile.
    let (stop, load) = (AtomicBool::new(false), Load::default());
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let local_ok = client::get(envoy.http, "local.example.com", "/")
                    .is_ok_and(|r| r.status == 200 && r.header("x-backend") == Some("local"));
                let alpha_ok = client::get(envoy.http, "alpha.example.com", "/")
                    .is_ok_and(|r| r.status == 200 && r.header("x-backend") == Some("alpha"));
                load.record(local_ok && alpha_ok);
            }
        });
        load.wait_for(10);
        local.kubectl().ok(&["delete", "secret", "kubeconfig-beta-3c4d", "-n", NAMESPACE]);
        wait::until("beta's routes to go", Duration::from_secs(20), || {
            (envoy.get("beta.example.com", "/").status == 404).then_some(())
        });
        wait_backend(&envoy, "shared.example.com", "alpha");
        load.wait_for(10);
    });
    assert_eq!(load.failed(), 0, "of {} rounds", load.sent());
    let hosts: Vec<String> = controller.routes()["table"]["http"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["host"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(!hosts.iter().any(|h| h == "beta.example.com"), "{hosts:?}");
}

#[test]
fn a_broken_kubeconfig_is_reported_on_its_secret_and_other_clusters_work_on() {
    let work = tempfile::tempdir().expect("temp dir");
    let (local, controller, envoy, alpha) = start_local_and_alpha(work.path());

    // A kubeconfig whose server does not answer, one that is not a kubeconfig, and a good one.
    let nobody = work.path().join("nobody.kubeconfig");
    let port = wait::free_port();
    let text = std::fs::read_to_string(&alpha.api.kubeconfig).expect("kubeconfig");
    std::fs::write(&nobody, text.replace(&alpha.api.addr.port().to_string(), &port.to_string())).expect("write");
    let garbage = work.path().join("garbage.kubeconfig");
    std::fs::write(&garbage, "clusters: [oops").expect("write");
    add_cluster(&local.kubectl(), "kubeconfig-nobody-0000", &nobody);
    add_cluster(&local.kubectl(), "kubeconfig-garbage-ffff", &garbage);
    add_cluster(&local.kubectl(), "kubeconfig-alpha-1a2b", &alpha.api.kubeconfig);
    wait_backend(&envoy, "alpha.example.com", "alpha");
    assert_eq!(backend_of(&envoy, "local.example.com").as_deref(), Some("local"));

    // Where an operator looks: an Event on each broken Secret, and the errors of `berth routes`.
    for (secret, says) in [
        ("kubeconfig-nobody-0000", "cluster nobody cannot be watched: "),
        ("kubeconfig-garbage-ffff", "cluster garbage cannot be watched: the kubeconfig cannot be read"),
    ] {
        let found = wait_for_events(&local.kubectl(), secret);
        assert!(found[0].contains(says), "{found:?}");
        assert!(
            controller
                .errors()
                .iter()
                .any(|e| e.starts_with(&format!("Secret {NAMESPACE}/{secret}:")) && e.contains(says)),
            "{:?}",
            controller.errors()
        );
    }
    let out = berth(&["routes", "--controller", &controller.addr.to_string()]);
    let routes = String::from_utf8_lossy(&out.stdout);
    assert!(routes.contains("source kube nobody: stale"), "{routes}");
    assert!(routes.contains(&format!("Secret {NAMESPACE}/kubeconfig-garbage-ffff")), "{routes}");
}

#[test]
fn a_remote_cluster_whose_api_server_goes_away_is_reported_on_its_secret_and_its_routes_stay() {
    let work = tempfile::tempdir().expect("temp dir");
    let (local, controller, envoy, alpha) = start_local_and_alpha(work.path());
    add_cluster(&local.kubectl(), "kubeconfig-alpha-1a2b", &alpha.api.kubeconfig);
    wait_backend(&envoy, "alpha.example.com", "alpha");
    assert!(secret_events(&local.kubectl(), "kubeconfig-alpha-1a2b").is_empty(), "no Event while it answers");

    let TestCluster { api, backend: _alpha_backend } = alpha;
    drop(api);
    let found = wait_for_events(&local.kubectl(), "kubeconfig-alpha-1a2b");
    assert!(found[0].contains("cluster alpha cannot be reached since "), "{found:?}");
    assert!(found[0].contains("routes are served as last seen"), "{found:?}");
    assert!(
        controller.errors().iter().any(|e| e.contains("cluster alpha cannot be reached")),
        "{:?}",
        controller.errors()
    );
    assert_eq!(backend_of(&envoy, "alpha.example.com").as_deref(), Some("alpha"), "its routes stay");
    assert_eq!(backend_of(&envoy, "local.example.com").as_deref(), Some("local"));
}

#[test]
fn subdirectories_of_a_directory_source_are_clusters() {
    let work = tempfile::tempdir().expect("temp dir");
    let dir = ManifestDir::new(&work.path().join("manifests"));
    let (top, alpha) = (Backend::start("top"), Backend::start("alpha"));
    dir.write("cluster.yaml", &manifests::cluster().1);
    dir.write(
        "web.yaml",
        &[
            node_port_service("top", 80, top.addr.port()),
            virtual_service("web", &["top.example.com"], &[HttpRoute("prefix", "/", "top", 80)]),
        ]
        .join("---\n"),
    );
    let alpha_dir = ManifestDir::new(&dir.path.join("alpha"));
    alpha_dir.write(
        "all.yaml",
        &[
            manifests::node("n1", "127.0.0.1"),
            node_port_service("alpha", 80, alpha.addr.port()),
            virtual_service("web", &["alpha.example.com"], &[HttpRoute("prefix", "/", "alpha", 80)]),
            // The top level's Service is another cluster's: not reachable from here.
            virtual_service("borrow", &["borrow.example.com"], &[HttpRoute("prefix", "/", "top", 80)]),
        ]
        .join("---\n"),
    );
    let controller = Controller::start(&dir.path, work.path());
    let envoy = Envoy::start(controller.addr, work.path());
    wait_backend(&envoy, "top.example.com", "top");
    wait_backend(&envoy, "alpha.example.com", "alpha");
    let errors = controller.errors();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("VirtualService alpha/default/borrow") && e.contains("service \"top\" not found")),
        "{errors:?}"
    );

    // The subdirectory goes: its cluster goes with it, the top level stays.
    std::fs::remove_dir_all(&alpha_dir.path).expect("remove alpha");
    wait::until("alpha's routes to go", Duration::from_secs(20), || {
        (envoy.get("alpha.example.com", "/").status == 404).then_some(())
    });
    assert_eq!(backend_of(&envoy, "top.example.com").as_deref(), Some("top"));
}
