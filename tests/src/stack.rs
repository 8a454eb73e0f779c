//! The usual test setup: a manifest directory, the controller watching it, Envoy routing by it.

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
        let work = tempfile::tempdir().expect("temp dir");
        let manifests = ManifestDir::new(&work.path().join("manifests"));
        for (name, yaml) in files {
            manifests.write(name, yaml);
        }
        let controller = Controller::start(&manifests.path, work.path());
        let envoy = Envoy::start(controller.addr, work.path());
        Stack { envoy, controller, manifests, work }
    }
}
