//! A Kubernetes API for end-to-end tests: the `berth-kube-api` test server as a real process (so a test can kill
//! it and start it again from its state file), and the real `kubectl` driving it the way a user would.

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
    dir: PathBuf,
    process: Process,
}

impl KubeApiServer {
    /// Starts the server on a free port, keeping its objects in `<dir>/kube-api-state.json` and writing its
    /// kubeconfig to `<dir>/kubeconfig`; waits until it answers.
    pub fn start(dir: &Path) -> KubeApiServer {
        let addr = SocketAddr::from(([127, 0, 0, 1], wait::free_port()));
        let kubeconfig = dir.join("kubeconfig");
        let state = dir.join("kube-api-state.json");
        let process = KubeApiServer::spawn(addr, &kubeconfig, &state, dir);
        KubeApiServer { addr, kubeconfig, state, dir: dir.to_path_buf(), process }
    }

    fn spawn(addr: SocketAddr, kubeconfig: &Path, state: &Path, dir: &Path) -> Process {
        let mut command = Command::new(paths::kube_api());
        command
            .arg(format!("--listen={addr}"))
            .arg(format!("--kubeconfig-out={}", kubeconfig.display()))
            .arg(format!("--state={}", state.display()));
        let mut process = Process::spawn("kube-api", &mut command, dir);
        wait::until("the Kubernetes API test server", Duration::from_secs(10), || {
            assert!(process.is_running(), "berth-kube-api exited:\n{}", process.log());
            client::get(addr, "kube-api", "/version").ok().filter(|r| r.status == 200)
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
        self.process = KubeApiServer::spawn(self.addr, &self.kubeconfig, &self.state, &self.dir);
    }

    /// `POST /_test/<what>`: `cut-watches`, `compact`, `pause`, `resume`.
    pub fn fault(&self, what: &str) {
        let response = client::request(self.addr, "POST", "kube-api", &format!("/_test/{what}"), &[])
            .unwrap_or_else(|e| panic!("POST /_test/{what}: {e}"));
        assert!(response.status < 300, "POST /_test/{what}: {} {}", response.status, response.body);
    }

    /// Requests served, `{"patch virtualservices": 3, ...}`.
    pub fn counts(&self) -> serde_json::Value {
        let response = client::get(self.addr, "kube-api", "/_test/counts").expect("GET /_test/counts");
        serde_json::from_str(&response.body).expect("counts JSON")
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

impl Kubectl {
    /// `kubectl apply`s the CRDs a cluster running Berth has: Berth's PortAllocation and Istio's VirtualService.
    pub fn install_crds(&self) {
        let crd = |path: &str| std::fs::read_to_string(paths::workspace().join(path)).expect("read CRD");
        self.apply(&crd("controller/deploy/crds/portallocation.yaml"));
        self.apply(&crd("tests/fixtures/virtualservice-crd.yaml"));
    }

    /// The port in a VirtualService's `berth.dev/address: HOST:PORT`, once the controller has written it.
    pub fn wait_address(&self, vs: &str) -> u16 {
        wait::until(&format!("berth.dev/address on {vs}"), Duration::from_secs(20), || {
            let address = self.jsonpath(&["virtualservice", vs], "{.metadata.annotations['berth\\.dev/address']}");
            address.rsplit_once(':')?.1.trim().parse().ok()
        })
    }
}
