//! Every Envoy configuration Berth ships or renders passes `envoy --mode validate`.

use berth_tests::{envoy, paths};

/// Renders `berth envoy-config` with `extra` arguments, checks that Envoy validates it (the bootstrap, and the LDS
/// and CDS resources) and returns the three files' text.
fn render_and_validate(extra: &[&str]) -> String {
    let work = tempfile::tempdir().unwrap();
    let wasm = format!("--wasm={}", paths::wasm().display());
    let out_dir = format!("--out-dir={}", work.path().join("out").display());
    let mut args = vec!["envoy-config", "--controller=127.0.0.1:8081", &wasm, &out_dir];
    args.extend(["--http-listen=127.0.0.1:8080", "--admin=127.0.0.1:9901"]);
    args.extend(extra);
    let output = berth_tests::controller::berth(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let bootstrap = work.path().join("out/bootstrap.yaml");
    envoy::validate(&bootstrap).unwrap();
    ["bootstrap.yaml", "cds.yaml", "lds.yaml"]
        .iter()
        .map(|file| std::fs::read_to_string(work.path().join("out").join(file)).unwrap())
        .collect()
}

#[test]
fn rendered_bootstrap_validates() {
    let text = render_and_validate(&[]);
    assert!(text.contains("path_config_source") && !text.contains("bootstrap_extensions"), "{text}");
}

#[test]
fn rendered_bootstrap_with_tcp_and_tls_passthrough_listeners_validates() {
    let text = render_and_validate(&["--tcp-ports=31000-31010", "--tls-port=8443"]);
    assert!(text.contains("envoy.filters.listener.tls_inspector"), "{text}");

    let refused = berth_tests::controller::berth(&["envoy-config", "--tcp-ports=31000-31010", "--tls-port=31005"]);
    assert_eq!(refused.status.code(), Some(2), "a TLS port inside the TCP ports would fail to bind");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("TLS port 31005"));
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
