//! The state file as the operator meets it: private to the controller (it holds the session-cookie key), and a
//! damaged one reported as damage.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use berth_tests::manifests::{self, ManifestDir, Rule};
use berth_tests::{Backend, Controller, paths, wait};

#[test]
fn the_state_file_is_readable_by_the_controller_alone() {
    let web = Backend::start("web");
    let work = tempfile::tempdir().expect("temp dir");
    let manifests = ManifestDir::new(&work.path().join("manifests"));
    let (services, yaml) = manifests::services(&[&web]);
    manifests.write(services, &yaml);
    manifests.write("ingress.yaml", &manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "web", 80)]));
    let state = work.path().join("state.json");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], wait::free_port()));
    let _controller =
        Controller::start_with(addr, &manifests.path, work.path(), &[format!("--state={}", state.display())]);
    let mode =
        wait::until("the state file", Duration::from_secs(10), || std::fs::metadata(&state).ok()).permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
}

#[test]
fn a_state_file_that_is_not_text_is_reported_as_corrupt_not_as_a_permissions_problem() {
    let work = tempfile::tempdir().expect("temp dir");
    let manifests = ManifestDir::new(&work.path().join("manifests"));
    let state = work.path().join("state.json");
    std::fs::write(&state, b"{\"ports\": {\"VirtualService default/db tcp[0]\xff\": 31000}}").expect("write");
    let output = std::process::Command::new(paths::berth())
        .arg("run")
        .arg(format!("--source=dir:{}", manifests.path.display()))
        .arg(format!("--state={}", state.display()))
        .arg(format!("--listen=127.0.0.1:{}", wait::free_port()))
        .output()
        .expect("run berth");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("is not valid: it is not UTF-8 text"), "{stderr}");
    assert!(!stderr.contains("permissions"), "{stderr}");
}
