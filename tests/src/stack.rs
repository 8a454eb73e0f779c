//! The usual test setup: a manifest directory, the controller watching it, Envoy routing by it.

use std::path::Path;

use tempfile::TempDir;

use crate::manifests::ManifestDir;
use crate::{Controller, Envoy};

/// Fields drop in order: Envoy and the controller stop before their working directory goes.
pub struct Stack {
    pub envoy: Envoy,
    pub controller: Controller,
    pub manifests: ManifestDir,
    pub work: TempDir,
}

impl Stack {
    /// Writes `files` (name, YAML) into a fresh manifest directory, then starts the controller and Envoy.
    pub fn start(files: &[(&str, String)]) -> Stack {
        Stack::start_with(files, |_| Vec::new(), &[])
    }

    /// With more arguments for `berth run` (made from the working directory, e.g. `--state=<work>/state.json`)
    /// and for `berth envoy-config`.
    pub fn start_with(
        files: &[(&str, String)],
        run_args: impl FnOnce(&Path) -> Vec<String>,
        envoy_args: &[String],
    ) -> Stack {
        let work = tempfile::tempdir().expect("temp dir");
        let manifests = ManifestDir::new(&work.path().join("manifests"));
        for (name, yaml) in files {
            manifests.write(name, yaml);
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], crate::wait::free_port()));
        let controller = Controller::start_with(addr, &manifests.path, work.path(), &run_args(work.path()));
        let envoy = Envoy::start_with(controller.addr, work.path(), envoy_args);
        Stack { envoy, controller, manifests, work }
    }
}
