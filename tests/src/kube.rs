//! A Kubernetes API for end-to-end tests: the `berth-kube-api` test server as a real process (so a test can kill
//! it and start it again from its state file), over HTTP or HTTPS, and the real `kubectl` driving it the way a
//! user would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::process::Process;
use crate::{client, paths, wait};

pub struct KubeApiServer {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    pub state: PathBuf,
    /// Serving HTTPS (`--tls`): the kubeconfig trusts the CA kept in `<dir>/kube-api-tls/ca.pem`.
    pub tls: bool,
    /// More names its certificate holds (`--tls-name`), besides 127.0.0.1 and localhost.
    tls_names: Vec<String>,
    dir: PathBuf,
    process: Process,
}

impl KubeApiServer {
    /// Starts the server on a free port, keeping its objects in `<dir>/kube-api-state.json` and writing its
    /// kubeconfig to `<dir>/kubeconfig`; waits until it answers.
    pub fn start(dir: &Path) -> KubeApiServer {
        KubeApiServer::start_with(dir, false, &[])
    }

    /// The same over HTTPS, as an in-cluster API server: a CA and a server certificate for 127.0.0.1 are made at
    /// start (and kept in `<dir>/kube-api-tls`, so a restart keeps them), and the kubeconfig trusts the CA.
    pub fn start_tls(dir: &Path) -> KubeApiServer {
        KubeApiServer::start_with(dir, true, &[])
    }

    /// The same, with a certificate that also holds `names` (a name clients reach it by through a proxy).
    pub fn start_tls_named(dir: &Path, names: &[&str]) -> KubeApiServer {
        KubeApiServer::start_with(dir, true, names)
    }

    fn start_with(dir: &Path, tls: bool, names: &[&str]) -> KubeApiServer {
        let addr = SocketAddr::from(([127, 0, 0, 1], wait::free_port()));
        let (kubeconfig, state) = (dir.join("kubeconfig"), dir.join("kube-api-state.json"));
        let tls_names: Vec<String> = names.iter().map(ToString::to_string).collect();
        let process = KubeApiServer::spawn(addr, &kubeconfig, &state, dir, tls, &tls_names);
        KubeApiServer { addr, kubeconfig, state, tls, tls_names, dir: dir.to_path_buf(), process }
    }

    /// The CA its certificate is signed by, when serving HTTPS.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("kube-api-tls").join("ca.pem")
    }

    fn spawn(addr: SocketAddr, kubeconfig: &Path, state: &Path, dir: &Path, tls: bool, names: &[String]) -> Process {
        let mut command = Command::new(paths::kube_api());
        command
            .arg(format!("--listen={addr}"))
            .arg(format!("--kubeconfig-out={}", kubeconfig.display()))
            .arg(format!("--state={}", state.display()));
        if tls {
            command.arg("--tls").arg(format!("--tls-dir={}", dir.join("kube-api-tls").display()));
            command.args(names.iter().map(|name| format!("--tls-name={name}")));
        }
        // The server prints this line once it serves (its kubeconfig written); the log keeps earlier runs' lines.
        let ready = |log: &str| log.matches("listening on ").count();
        let before = ready(&std::fs::read_to_string(dir.join("kube-api.log")).unwrap_or_default());
        let mut process = Process::spawn("kube-api", &mut command, dir);
        wait::until("the Kubernetes API test server", Duration::from_secs(10), || {
            assert!(process.is_running(), "berth-kube-api exited:\n{}", process.log());
            (ready(&process.log()) > before).then_some(())
        });
        process
    }

    /// SIGKILL: the API server goes away mid-watch.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same address from its state file: objects, resourceVersions and history kept.
    pub fn restart(&mut self) {
        self.process.kill();
        self.process =
            KubeApiServer::spawn(self.addr, &self.kubeconfig, &self.state, &self.dir, self.tls, &self.tls_names);
    }

    /// `GET` of a test endpoint: plain HTTP, or through kubectl (which speaks TLS with the kubeconfig's CA).
    fn test_get(&self, path: &str) -> String {
        if self.tls {
            return self.kubectl().ok(&["get", "--raw", path]);
        }
        let response = client::get(self.addr, "kube-api", path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(response.status, 200, "GET {path}: {}", response.body);
        response.body
    }

    /// `POST /_test/<what>`: `cut-watches`, `compact`, `pause`, `resume`.
    pub fn fault(&self, what: &str) {
        let path = format!("/_test/{what}");
        if self.tls {
            self.kubectl().ok(&["create", "--raw", &path, "-f", "/dev/null"]);
            return;
        }
        let response =
            client::request(self.addr, "POST", "kube-api", &path, &[]).unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert!(response.status < 300, "POST {path}: {} {}", response.status, response.body);
    }

    /// Creates the objects of `yaml` directly in the store (`POST /_test/objects`), which works while the API is
    /// paused: a change that lands while every client is locked out.
    pub fn create_objects(&self, yaml: &str) {
        assert!(!self.tls, "create_objects speaks plain HTTP");
        let response = client::request_with_body(self.addr, "POST", "kube-api", "/_test/objects", &[], yaml)
            .unwrap_or_else(|e| panic!("POST /_test/objects: {e}"));
        assert_eq!(response.status, 200, "POST /_test/objects: {}", response.body);
    }

    /// Requests served, `{"patch virtualservices": 3, ...}`.
    pub fn counts(&self) -> serde_json::Value {
        serde_json::from_str(&self.test_get("/_test/counts")).expect("counts JSON")
    }

    /// One count of [`KubeApiServer::counts`], e.g. `count("create events")`.
    pub fn count(&self, key: &str) -> u64 {
        self.counts()[key].as_u64().unwrap_or(0)
    }

    /// Which client made which kind of request: `[{"agent": "berth/0.1.0", "verb": "list", "group": "",
    /// "resource": "services", "namespace": null, "name": null}, ...]`.
    pub fn access(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.test_get("/_test/access")).expect("access JSON")
    }

    /// Every write (create, update, patch, delete) served so far.
    pub fn writes(&self) -> u64 {
        let counts = self.counts();
        let Some(map) = counts.as_object() else { return 0 };
        map.iter()
            .filter(|(key, _)| {
                ["create ", "update ", "patch ", "delete ", "deletecollection "].iter().any(|v| key.starts_with(v))
            })
            .map(|(_, n)| n.as_u64().unwrap_or(0))
            .sum()
    }

    pub fn kubectl(&self) -> Kubectl {
        Kubectl { kubeconfig: self.kubeconfig.clone(), home: self.dir.clone() }
    }
}

/// The real kubectl against one kubeconfig.
pub struct Kubectl {
    pub kubeconfig: PathBuf,
    home: PathBuf,
}

impl Kubectl {
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(paths::kubectl())
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(["--request-timeout=10s"])
            .args(args)
            .env("HOME", &self.home)
            // Relative paths in arguments (`-k controller/deploy`) are the workspace's.
            .current_dir(paths::workspace())
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl, asserts it succeeded, returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout.into_owned()
    }

    /// `kubectl apply -f` of `yaml`, written to a file as a user would.
    pub fn apply(&self, yaml: &str) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = self.home.join(format!("apply-{n}.yaml"));
        std::fs::write(&file, yaml).expect("write manifest");
        self.ok(&["apply", "-f", &file.to_string_lossy()])
    }

    /// `kubectl get <what> -o jsonpath=<path>`.
    pub fn jsonpath(&self, args: &[&str], path: &str) -> String {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        let jp = format!("jsonpath={path}");
        all.extend(["-o", &jp]);
        self.ok(&all)
    }
}

/// The CRDs a cluster running Berth has: Berth's PortAllocation (as shipped in controller/deploy) and Istio's
/// VirtualService (a stand-in with Istio's names and versions).
pub enum Crd {
    PortAllocation,
    VirtualService,
}

impl Crd {
    pub fn yaml(&self) -> String {
        let path = match self {
            Crd::PortAllocation => "controller/deploy/crds/portallocation.yaml",
            Crd::VirtualService => "tests/fixtures/virtualservice-crd.yaml",
        };
        std::fs::read_to_string(paths::workspace().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }
}

/// One Event as `kubectl get events` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventView {
    pub name: String,
    pub object: String,
    pub reason: String,
    pub message: String,
    pub count: u64,
}

impl Kubectl {
    /// `kubectl apply`s both CRDs.
    pub fn install_crds(&self) {
        self.install(&Crd::PortAllocation);
        self.install(&Crd::VirtualService);
    }

    pub fn install(&self, crd: &Crd) {
        self.apply(&crd.yaml());
    }

    /// The port in a VirtualService's `berth.dev/address: HOST:PORT`, once the controller has written it.
    pub fn wait_address(&self, vs: &str) -> u16 {
        wait::until(&format!("berth.dev/address on {vs}"), Duration::from_secs(20), || {
            let address = self.annotation(&["virtualservice", vs], "berth.dev/address");
            address.rsplit_once(':')?.1.trim().parse().ok()
        })
    }

    /// The annotation `key` of the object `what` (e.g. `["virtualservice", "web"]`); empty when absent.
    pub fn annotation(&self, what: &[&str], key: &str) -> String {
        self.jsonpath(what, &format!("{{.metadata.annotations['{}']}}", key.replace('.', "\\.")))
    }

    /// The Events in the default namespace about the object named `object`.
    pub fn events_about(&self, object: &str) -> Vec<EventView> {
        let out = self.ok(&["get", "events", "-o", "json"]);
        let list: serde_json::Value = serde_json::from_str(&out).expect("events JSON");
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| EventView {
                name: text(&e["metadata"]["name"]),
                object: text(&e["involvedObject"]["name"]),
                reason: text(&e["reason"]),
                message: text(&e["message"]),
                count: e["count"].as_u64().unwrap_or(0),
            })
            .filter(|e| e.object == object)
            .collect()
    }
}
