//! The `berth` controller as a real process, reading a directory of Kubernetes objects.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::process::Process;
use crate::{client, paths, wait};

pub struct Controller {
    pub addr: SocketAddr,
    pub source: PathBuf,
    process: Process,
}

impl Controller {
    /// Starts `berth run --source dir:<source>` on a free port and waits until it is ready.
    pub fn start(source: &Path, log_dir: &Path) -> Controller {
        let addr = SocketAddr::from(([127, 0, 0, 1], wait::free_port()));
        Controller::start_on(addr, source, log_dir)
    }

    /// Starts it on a given address: a restart keeps the address Envoy knows.
    pub fn start_on(addr: SocketAddr, source: &Path, log_dir: &Path) -> Controller {
        Controller::start_with(addr, source, log_dir, &[])
    }

    /// The same with more `berth run` arguments, e.g. `--state=FILE`.
    pub fn start_with(addr: SocketAddr, source: &Path, log_dir: &Path, args: &[String]) -> Controller {
        Controller::start_command(Command::new(paths::berth()), addr, source, log_dir, args)
    }

    /// The same, with the process's open-files limit lowered to `open_files` (`ulimit -n`), as a tight container
    /// would have it.
    pub fn start_with_open_files(
        addr: SocketAddr,
        source: &Path,
        log_dir: &Path,
        args: &[String],
        open_files: u32,
    ) -> Controller {
        let mut command = Command::new("sh");
        command.arg("-c").arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\"")).arg(paths::berth());
        Controller::start_command(command, addr, source, log_dir, args)
    }

    fn start_command(
        mut command: Command,
        addr: SocketAddr,
        source: &Path,
        log_dir: &Path,
        args: &[String],
    ) -> Controller {
        command.arg("run").arg(format!("--source=dir:{}", source.display())).arg(format!("--listen={addr}"));
        command.args(args);
        command.env("RUST_LOG", "info");
        let mut process = Process::spawn("controller", &mut command, log_dir);
        wait::until("the controller's /readyz", Duration::from_secs(20), || {
            assert!(process.is_running(), "the controller exited:\n{}", process.log());
            client::get(addr, "controller", "/readyz").ok().filter(|r| r.status == 200)
        });
        Controller { addr, source: source.to_path_buf(), process }
    }

    /// Starts `berth run --source kube --kubeconfig <kubeconfig>` (plus `args`) on a free port and waits until it
    /// is ready: every watched kind listed once.
    pub fn start_kube(kubeconfig: &Path, log_dir: &Path, args: &[String]) -> Controller {
        let addr = SocketAddr::from(([127, 0, 0, 1], wait::free_port()));
        let mut command = Command::new(paths::berth());
        command.arg("run").arg("--source=kube").arg(format!("--kubeconfig={}", kubeconfig.display()));
        command.arg(format!("--listen={addr}")).args(args).env("RUST_LOG", "info");
        let mut process = Process::spawn("controller", &mut command, log_dir);
        wait::until("the controller's /readyz", Duration::from_secs(20), || {
            assert!(process.is_running(), "the controller exited:\n{}", process.log());
            client::get(addr, "controller", "/readyz").ok().filter(|r| r.status == 200)
        });
        Controller { addr, source: kubeconfig.to_path_buf(), process }
    }

    /// `GET /v1/routes`: the live table and the errors.
    pub fn routes(&self) -> serde_json::Value {
        let response = client::get(self.addr, "controller", "/v1/routes").expect("GET /v1/routes");
        assert_eq!(response.status, 200, "{}", response.body);
        serde_json::from_str(&response.body).expect("routes JSON")
    }

    /// The health the controller reports for the endpoint `address` (`{"healthy": .., "last_failure": .., ..}`),
    /// and the version of the table published with it.
    pub fn endpoint_health(&self, address: SocketAddr) -> Option<(serde_json::Value, u64)> {
        let routes = self.routes();
        let version = routes["table"]["version"].as_u64()?;
        let health = routes["health"].as_array()?.iter().find(|h| h["address"] == address.to_string())?.clone();
        Some((health, version))
    }

    /// The error texts the controller reports.
    pub fn errors(&self) -> Vec<String> {
        let routes = self.routes();
        let errors = routes["errors"].as_array().cloned().unwrap_or_default();
        errors.iter().map(|e| e["text"].as_str().unwrap_or_default().to_string()).collect()
    }

    /// The TCP addresses assigned, as `(object, route, port)`, e.g. `("VirtualService default/db", "tcp[0]", 31000)`.
    pub fn assigned_ports(&self) -> Vec<(String, String, u16)> {
        let routes = self.routes();
        let addresses = routes["addresses"].as_array().cloned().unwrap_or_default();
        addresses
            .iter()
            .map(|a| {
                let text = |key: &str| a[key].as_str().unwrap_or_default().to_string();
                let port = a["port"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
                (text("object"), text("route"), port)
            })
            .collect()
    }

    /// The port assigned to `object`'s first TCP route, once it has one.
    pub fn port_of(&self, object: &str) -> Option<u16> {
        self.assigned_ports().into_iter().find(|(o, route, _)| o == object && route == "tcp[0]").map(|(_, _, p)| p)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, as Kubernetes stops a pod, and wait for the exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.process.terminate()
    }
}

/// Runs the `berth` CLI with `args` and returns its output.
pub fn berth(args: &[&str]) -> Output {
    Command::new(paths::berth()).args(args).output().expect("run berth")
}
