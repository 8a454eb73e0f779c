//! Stock Envoy running the built filter, configured by `berth envoy-config`: a bootstrap with nothing of Berth's,
//! and Berth's listeners and clusters as LDS and CDS files.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::client::{self, Response};
use crate::controller::berth;
use crate::process::Process;
use crate::{paths, wait};

pub struct Envoy {
    /// The HTTP listener clients use.
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
    process: Process,
}

impl Envoy {
    /// Renders a bootstrap that fetches the table from `controller`, starts Envoy on free ports and waits until
    /// its admin interface reports LIVE.
    pub fn start(controller: SocketAddr, work: &Path) -> Envoy {
        Envoy::start_with(controller, work, &[])
    }

    /// With more `berth envoy-config` arguments, e.g. `--tcp-ports=31000-31010`. The listener and admin ports come
    /// from the kernel's ephemeral range, which [`wait::free_port_range`] keeps TCP ranges out of.
    pub fn start_with(controller: SocketAddr, work: &Path, args: &[String]) -> Envoy {
        let http = SocketAddr::from(([127, 0, 0, 1], wait::free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], wait::free_port()));
        Envoy::start_on(controller, http, admin, work, args)
    }

    /// The same on given listener and admin addresses.
    pub fn start_on(
        controller: SocketAddr,
        http: SocketAddr,
        admin: SocketAddr,
        work: &Path,
        args: &[String],
    ) -> Envoy {
        let config = render(controller, http, admin, work, args);
        Envoy::run("envoy", &config, http, admin, work, TEST_OPTIONS)
    }

    /// Starts Envoy on the bootstrap `config` (listening on `http`, admin on `admin`) with these command-line
    /// `options`, logging to `<work>/<name>.log`, and waits until its admin interface reports LIVE.
    pub fn run(name: &str, config: &Path, http: SocketAddr, admin: SocketAddr, work: &Path, options: &[&str]) -> Envoy {
        Envoy::run_under(None, name, config, http, admin, work, options)
    }

    /// The same, under `wrapper` (e.g. valgrind) when given.
    pub fn run_under(
        wrapper: Option<&Wrapper>,
        name: &str,
        config: &Path,
        http: SocketAddr,
        admin: SocketAddr,
        work: &Path,
        options: &[&str],
    ) -> Envoy {
        let (mut command, ready_within) = match wrapper {
            None => (Command::new(paths::envoy()), Duration::from_secs(30)),
            Some(wrapper) => {
                let mut command = Command::new(&wrapper.program);
                command.args(&wrapper.args).arg(paths::envoy());
                (command, wrapper.ready_within)
            }
        };
        command.arg("-c").arg(config).arg("--use-dynamic-base-id").args(options);
        let mut process = Process::spawn(name, &mut command, work);
        wait::until("Envoy's admin /ready", ready_within, || {
            assert!(process.is_running(), "envoy exited:\n{}", process.log());
            client::get(admin, "admin", "/ready").ok().filter(|r| r.status == 200)
        });
        Envoy { http, admin, config: config.to_path_buf(), process }
    }

    /// `GET path` with `Host: host` through the listener.
    pub fn get(&self, host: &str, path: &str) -> Response {
        client::get(self.http, host, path).unwrap_or_else(|e| panic!("GET {host}{path} through Envoy: {e}"))
    }

    /// Waits until `host``path` is answered by the backend called `backend` (the table reached the filter).
    pub fn wait_for_backend(&self, host: &str, path: &str, backend: &str) {
        wait::until(&format!("{host}{path} to reach {backend}"), Duration::from_secs(10), || {
            client::get(self.http, host, path).ok().filter(|r| r.header("x-backend") == Some(backend))
        });
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Waits until the filter routes by table `version` or a later one: the fetcher has published it, and every
    /// filter root context that has loaded a table (each role on each thread, for they tick apart) has loaded it.
    pub fn wait_for_table(&self, version: u64) {
        wait::until(&format!("Envoy to route by table version {version}"), Duration::from_secs(10), || {
            let log = self.process.log();
            let published = log.lines().filter_map(|line| table_version(line, "published routing table version "));
            if published.max().is_none_or(|latest| latest < version) {
                return None;
            }
            let mut loaded: HashMap<(&str, &str), u64> = HashMap::new();
            for line in log.lines() {
                if let Some(v) = table_version(line, "routing table version ").filter(|_| line.contains(" loaded ("))
                    && let Some(root) = root_context(line)
                {
                    let newest = loaded.entry(root).or_default();
                    *newest = (*newest).max(v);
                }
            }
            (!loaded.is_empty() && loaded.values().all(|v| *v >= version)).then_some(())
        });
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}

/// A program Envoy runs under, such as valgrind, and how long Envoy may take to get ready under it.
pub struct Wrapper {
    pub program: String,
    /// Its options, before Envoy's path.
    pub args: Vec<String>,
    pub ready_within: Duration,
}

/// Envoy's options in tests: two workers, and the filter's debug logs in the log file.
pub const TEST_OPTIONS: &[&str] = &["--concurrency", "2", "--log-level", "info", "--component-log-level", "wasm:debug"];

/// Renders `berth envoy-config` (plus `args`) for a controller at `controller` into `<work>/envoy-config/` and
/// returns the bootstrap's path; the LDS and CDS files it names sit beside it.
pub fn render(controller: SocketAddr, http: SocketAddr, admin: SocketAddr, work: &Path, args: &[String]) -> PathBuf {
    let dir = config_dir(work);
    let mut render = vec![
        "envoy-config".to_string(),
        format!("--controller={controller}"),
        format!("--wasm={}", paths::wasm().display()),
        format!("--http-listen={http}"),
        format!("--admin={admin}"),
        format!("--out-dir={}", dir.display()),
    ];
    render.extend_from_slice(args);
    let rendered = berth(&render.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(rendered.status.success(), "berth envoy-config: {}", String::from_utf8_lossy(&rendered.stderr));
    dir.join("bootstrap.yaml")
}

/// Where [`render`] writes for `work`.
pub fn config_dir(work: &Path) -> PathBuf {
    work.join("envoy-config")
}

/// The LDS or CDS file a rendered bootstrap names (`lds_config` or `cds_config`).
pub fn resource_file(bootstrap: &Path, source: &str) -> PathBuf {
    let text = std::fs::read_to_string(bootstrap).expect("read the bootstrap");
    let value: serde_json::Value = serde_yaml::from_str(&text).expect("the bootstrap is YAML");
    let path = value["dynamic_resources"][source]["path_config_source"]["path"].as_str();
    PathBuf::from(path.unwrap_or_else(|| panic!("the bootstrap has no {source} file")))
}

/// The resources of an LDS or CDS file, without their `@type`.
pub fn read_resources(file: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let value: serde_json::Value = serde_yaml::from_str(&text).expect("a resource file is YAML");
    let mut resources = value["resources"].as_array().cloned().unwrap_or_default();
    for resource in &mut resources {
        if let Some(object) = resource.as_object_mut() {
            object.remove("@type");
        }
    }
    resources
}

/// Replaces an LDS or CDS file the way an xDS server's update reaches Envoy: written beside, then moved into the
/// watched directory.
pub fn write_resources(file: &Path, type_url: &str, resources: &[serde_json::Value]) {
    let typed: Vec<serde_json::Value> = resources
        .iter()
        .cloned()
        .map(|mut resource| {
            resource["@type"] = serde_json::Value::String(type_url.into());
            resource
        })
        .collect();
    let text = serde_yaml::to_string(&serde_json::json!({ "resources": typed })).expect("YAML");
    let temporary = file.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write a resource file");
    std::fs::rename(&temporary, file).expect("move a resource file into place");
}

pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// A rendered bootstrap with the listeners and clusters of its LDS and CDS files as static resources: what
/// `--mode validate` can check (it does not read those files), and the base the benchmark derives its native
/// bootstraps from.
pub fn static_equivalent(bootstrap: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(bootstrap).expect("read the bootstrap");
    let mut value: serde_json::Value = serde_yaml::from_str(&text).expect("the bootstrap is YAML");
    let listeners = read_resources(&resource_file(bootstrap, "lds_config"));
    let clusters = read_resources(&resource_file(bootstrap, "cds_config"));
    if let Some(object) = value.as_object_mut() {
        object.remove("dynamic_resources");
    }
    value["static_resources"] = serde_json::json!({ "listeners": listeners, "clusters": clusters });
    value
}

/// `envoy --mode validate -c config`: Ok, or Envoy's complaint. A bootstrap reading LDS and CDS files is checked
/// with those files' resources too (validation alone does not read them).
pub fn validate(config: &Path) -> Result<(), String> {
    validate_file(config)?;
    let text = std::fs::read_to_string(config).map_err(|e| e.to_string())?;
    if text.contains("path_config_source") {
        let folded = config.with_file_name("static-equivalent.yaml");
        let yaml = serde_yaml::to_string(&static_equivalent(config)).map_err(|e| e.to_string())?;
        std::fs::write(&folded, yaml).map_err(|e| e.to_string())?;
        validate_file(&folded).map_err(|e| format!("its LDS and CDS resources: {e}"))?;
    }
    Ok(())
}

fn validate_file(config: &Path) -> Result<(), String> {
    let output = Command::new(paths::envoy())
        .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
        .arg(config)
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
    }
}

/// The version after `marker` in a log line of the filter's.
fn table_version(line: &str, marker: &str) -> Option<u64> {
    line.split(marker).nth(1)?.split_whitespace().next()?.parse().ok()
}

/// Which root context logged `line`: Envoy's thread id and the plugin name, as in
/// `[time][thread][info][wasm] [file:line] wasm log PLUGIN berth: ...`.
fn root_context(line: &str) -> Option<(&str, &str)> {
    let thread = line.split('[').nth(2)?.split(']').next()?;
    let plugin = line.split("wasm log ").nth(1)?.split_whitespace().next()?;
    Some((thread, plugin))
}
