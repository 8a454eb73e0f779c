//! Every Envoy configuration Berth ships or renders passes `envoy --mode validate`.

use berth_tests::{envoy, paths};

#[test]
fn rendered_bootstrap_validates() {
    let work = tempfile::tempdir().unwrap();
    let output = berth_tests::controller::berth(&[
        "envoy-config",
        "--controller=127.0.0.1:8081",
        &format!("--wasm={}", paths::wasm().display()),
        "--http-listen=127.0.0.1:8080",
        "--admin=127.0.0.1:9901",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let config = work.path().join("envoy.yaml");
    std::fs::write(&config, &output.stdout).unwrap();
    envoy::validate(&config).unwrap();
}

#[test]
fn shipped_envoy_configs_validate() {
    let dir = paths::workspace().join("envoy");
    let configs: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect()
        })
        .unwrap_or_default();
    for config in configs {
        // Shipped configs name the filter by its built path relative to the repository.
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("target/berth_filter.wasm", paths::wasm().to_str().unwrap());
        let work = tempfile::tempdir().unwrap();
        let copy = work.path().join("envoy.yaml");
        std::fs::write(&copy, text).unwrap();
        envoy::validate(&copy).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    }
}
