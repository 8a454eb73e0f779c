//! The malformed-manifest corpus (`tests/fixtures/malformed/`): dropped into a running controller's directory next
//! to good routes, each file is reported where a user looks (`/v1/routes`, `berth routes`, `berth check`, the log),
//! naming the file and saying what its `# expect:` lines say, while the table keeps exactly the good routes and
//! they keep answering through Envoy, without a failed request.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_tests::load::{Load, StopOnDrop};
use berth_tests::manifests::{self, HttpRoute, Rule};
use berth_tests::{Backend, Stack, client, paths, wait};

struct Fixture {
    name: String,
    bytes: Vec<u8>,
    /// What the error for this file must say, from its `# expect:` lines.
    expects: Vec<String>,
}

fn fixtures() -> Vec<Fixture> {
    let dir = paths::workspace().join("tests/fixtures/malformed");
    let mut fixtures: Vec<Fixture> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let expects = String::from_utf8_lossy(&bytes)
                .lines()
                .filter_map(|line| line.strip_prefix("# expect: "))
                .map(str::to_string)
                .collect();
            Fixture { name: path.file_name().unwrap().to_string_lossy().into_owned(), bytes, expects }
        })
        .collect();
    fixtures.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(fixtures.len() >= 20, "the corpus is in {}", dir.display());
    for fixture in &fixtures {
        assert!(!fixture.expects.is_empty(), "{} has no `# expect:` line", fixture.name);
    }
    fixtures
}

/// Writes aside and renames, as `ManifestDir::write` does, for bytes that need not be UTF-8.
fn write_raw(dir: &Path, name: &str, bytes: &[u8]) {
    let aside = dir.join(format!(".{name}.tmp"));
    std::fs::write(&aside, bytes).unwrap();
    std::fs::rename(&aside, dir.join(name)).unwrap();
}

/// The table's routes, without its version.
fn routes_of(stack: &Stack) -> serde_json::Value {
    let mut table = stack.controller.routes()["table"].clone();
    table.as_object_mut().unwrap().remove("version");
    table
}

/// The fixtures that no reported error yet names with all of its expectations.
fn unreported<'a>(fixtures: &'a [Fixture], errors: &[serde_json::Value]) -> Vec<&'a str> {
    fixtures
        .iter()
        .filter(|fixture| {
            !errors.iter().any(|error| {
                let file = error["file"].as_str().map(PathBuf::from);
                let text = error["text"].as_str().unwrap_or_default();
                file.is_some_and(|f| f.ends_with(&fixture.name)) && fixture.expects.iter().all(|e| text.contains(e))
            })
        })
        .map(|fixture| fixture.name.as_str())
        .collect()
}

#[test]
fn each_malformed_manifest_is_reported_with_its_file_and_changes_nothing_else() {
    let fixtures = fixtures();
    let (good, api) = (Backend::start("good"), Backend::start("api"));
    let files = [
        manifests::cluster(),
        manifests::services(&[&good, &api]),
        ("good.yaml", manifests::ingress("good", &[Rule("good.example", "/", "Prefix", "good", 80)])),
        ("api.yaml", manifests::virtual_service("api", &["api.example"], &[HttpRoute("prefix", "/v1", "api", 80)])),
    ];
    let stack = Stack::start(&files);
    stack.envoy.wait_for_backend("good.example", "/", "good");
    stack.envoy.wait_for_backend("api.example", "/v1", "api");
    assert!(stack.controller.errors().is_empty(), "{:?}", stack.controller.errors());
    let before = routes_of(&stack);

    let stop = AtomicBool::new(false);
    let load = Load::default();
    let envoy = stack.envoy.http;
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                for (host, path, name) in [("good.example", "/", "good"), ("api.example", "/v1/x", "api")] {
                    load.record(client::get(envoy, host, path).is_ok_and(|r| r.header("x-backend") == Some(name)));
                }
            }
        });
        // One at a time, so that every file is a change of its own that the controller must survive.
        for fixture in &fixtures {
            write_raw(&stack.manifests.path, &fixture.name, &fixture.bytes);
            wait::until(&format!("an error for {}", fixture.name), Duration::from_secs(10), || {
                let errors = stack.controller.routes()["errors"].as_array().cloned().unwrap_or_default();
                unreported(std::slice::from_ref(fixture), &errors).is_empty().then_some(())
            });
        }
    });
    assert!(load.sent() > 20, "the load loop ran");
    assert_eq!(load.failed(), 0, "failed requests on the good routes");

    // All of them at once: still every one reported, and the table is exactly the good routes.
    let errors = stack.controller.routes()["errors"].as_array().cloned().unwrap_or_default();
    let missing = unreported(&fixtures, &errors);
    assert!(missing.is_empty(), "not reported (or not as expected): {missing:?}\nerrors: {errors:#?}");
    assert_eq!(routes_of(&stack), before, "the malformed files changed the table");
    assert_eq!(stack.envoy.get("good.example", "/").header("x-backend"), Some("good"));
    assert_eq!(stack.envoy.get("api.example", "/v1").header("x-backend"), Some("api"));

    let routes = berth_tests::controller::berth(&["routes", "--controller", &stack.controller.url()]);
    let printed = String::from_utf8_lossy(&routes.stdout);
    let check = berth_tests::controller::berth(&["check", stack.manifests.path.to_str().unwrap()]);
    let checked = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert_eq!(check.status.code(), Some(1), "{checked}");
    let log = stack.controller.log();
    for fixture in &fixtures {
        for (place, text) in [("berth routes", &*printed), ("berth check", &*checked), ("the log", &*log)] {
            assert!(text.contains(&fixture.name), "{place} does not name {}:\n{text}", fixture.name);
        }
        for expect in &fixture.expects {
            assert!(checked.contains(expect.as_str()), "berth check does not say {expect:?}:\n{checked}");
        }
    }
}
