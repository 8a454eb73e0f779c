//! Renders the Envoy bootstrap that runs Berth's filter in stock Envoy: the singleton fetcher service, the
//! controller and `ORIGINAL_DST` clusters, and the HTTP listener with the filter in front of the router.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{Value, json};

/// What `berth envoy-config` needs to know.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    /// Where `berth run --listen` serves the table.
    pub controller: SocketAddr,
    /// Path of `berth_filter.wasm`. Envoy resolves a relative path against its working directory.
    pub wasm: PathBuf,
    /// The HTTP listener that clients connect to.
    pub http_listen: SocketAddr,
    /// Envoy's admin interface.
    pub admin: SocketAddr,
}

/// The wasm VM id shared by the fetcher and every filter: shared data (the table) is scoped by it.
pub const VM_ID: &str = "berth";
/// The cluster the fetcher polls.
pub const CONTROLLER_CLUSTER: &str = "berth_controller";
/// The cluster every routed request goes to; the filter names the endpoint through filter state.
pub const ORIGINAL_DST_CLUSTER: &str = "berth_original_dst";

/// The bootstrap as YAML, ready for `envoy -c`.
pub fn render(config: &EnvoyConfig) -> String {
    // Serializing a `serde_json::Value` to YAML cannot fail: every value has a YAML form.
    serde_yaml::to_string(&bootstrap(config)).unwrap_or_default()
}

fn bootstrap(config: &EnvoyConfig) -> Value {
    let fetcher = json!({
        "role": "fetcher",
        "cluster": CONTROLLER_CLUSTER,
        "authority": "berth-controller",
        "path": "/v1/table",
        "wait_seconds": 30,
        "retry_ms": 500,
    });
    json!({
        "admin": { "address": socket_address(config.admin) },
        // One fetcher per Envoy (not one per worker): it publishes the table in the shared data of VM id `berth`,
        // which every filter instance with that VM id reads.
        "bootstrap_extensions": [{
            "name": "envoy.bootstrap.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.wasm.v3.WasmService",
                "singleton": true,
                "config": plugin(config, "berth_fetcher", &fetcher),
            },
        }],
        "static_resources": {
            "listeners": [http_listener(config)],
            "clusters": [
                {
                    "name": CONTROLLER_CLUSTER,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": CONTROLLER_CLUSTER,
                        "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(config.controller) } }] }],
                    },
                },
                {
                    // The destination comes only from the filter state the filter sets
                    // (`envoy.network.transport_socket.original_dst_address`). No `use_http_header`: with it, a
                    // client's `x-envoy-original-dst-host` header could pick any destination.
                    "name": ORIGINAL_DST_CLUSTER,
                    "type": "ORIGINAL_DST",
                    "lb_policy": "CLUSTER_PROVIDED",
                    "connect_timeout": "5s",
                },
            ],
        },
    })
}

fn http_listener(config: &EnvoyConfig) -> Value {
    json!({
        "name": "berth_http",
        "address": socket_address(config.http_listen),
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "berth_http",
                    // An edge proxy: the client's address is the peer's, not whatever x-forwarded-for claims.
                    "use_remote_address": true,
                    // The filter matches routes on the normalized path the backend will receive (`/a/../b` is `/b`).
                    "normalize_path": true,
                    "upgrade_configs": [{ "upgrade_type": "websocket" }],
                    "route_config": {
                        "name": "berth",
                        "virtual_hosts": [{
                            "name": "berth",
                            "domains": ["*"],
                            // Ignored by the cluster anyway; removed so no backend ever sees a client's attempt.
                            "request_headers_to_remove": ["x-envoy-original-dst-host"],
                            "routes": [{
                                "match": { "prefix": "/" },
                                "route": {
                                    "cluster": ORIGINAL_DST_CLUSTER,
                                    // No overall deadline: an ingress carries streaming responses, long polls and
                                    // websockets whose length it cannot know. Stuck streams are still reaped by
                                    // the connection manager's stream idle timeout (5 minutes without a byte).
                                    "timeout": "0s",
                                },
                            }],
                        }],
                    },
                    "http_filters": [
                        {
                            "name": "envoy.filters.http.wasm",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                "config": http_plugin(config),
                            },
                        },
                        {
                            "name": "envoy.filters.http.router",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                            },
                        },
                    ],
                },
            }],
        }],
    })
}

/// The HTTP filter's plugin. A panic kills a worker's VM; the default policy (fail closed) then answers 503 on that
/// worker until Envoy restarts, while `FAIL_RELOAD` starts a fresh VM after a backoff (1 s), which picks the table
/// up from shared data. Verified on Envoy 1.40 with a module that panics on request.
fn http_plugin(config: &EnvoyConfig) -> Value {
    let mut plugin = plugin(config, "berth_http", &json!({ "role": "http" }));
    plugin["failure_policy"] = json!("FAIL_RELOAD");
    plugin
}

/// A wasm plugin of VM `berth`. The VM settings must be identical for the fetcher and the filters so they share one
/// VM id (and its shared data); only the plugin configuration, which carries the role, differs.
fn plugin(config: &EnvoyConfig, name: &str, configuration: &Value) -> Value {
    json!({
        "name": name,
        "root_id": name,
        "vm_config": {
            "vm_id": VM_ID,
            "runtime": "envoy.wasm.runtime.v8",
            "code": { "local": { "filename": config.wasm.to_string_lossy() } },
        },
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": configuration.to_string(),
        },
    })
}

fn socket_address(address: SocketAddr) -> Value {
    json!({ "socket_address": { "address": address.ip().to_string(), "port_value": address.port() } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EnvoyConfig {
        EnvoyConfig {
            controller: "127.0.0.1:7070".parse().unwrap(),
            wasm: "/opt/berth/berth_filter.wasm".into(),
            http_listen: "0.0.0.0:8080".parse().unwrap(),
            admin: "127.0.0.1:9901".parse().unwrap(),
        }
    }

    fn parsed() -> serde_yaml::Value {
        serde_yaml::from_str(&render(&sample())).unwrap()
    }

    fn plugin_configuration(plugin: &serde_yaml::Value) -> serde_json::Value {
        serde_json::from_str(plugin["configuration"]["value"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn renders_yaml_with_every_part() {
        let yaml = parsed();
        assert_eq!(yaml["admin"]["address"]["socket_address"]["port_value"], 9901);
        let clusters = yaml["static_resources"]["clusters"].as_sequence().unwrap();
        let names: Vec<&str> = clusters.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, [CONTROLLER_CLUSTER, ORIGINAL_DST_CLUSTER]);
        let controller = &clusters[0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
        assert_eq!(controller["socket_address"]["address"], "127.0.0.1");
        assert_eq!(controller["socket_address"]["port_value"], 7070);
        assert_eq!(clusters[1]["type"], "ORIGINAL_DST");
        assert_eq!(clusters[1]["lb_policy"], "CLUSTER_PROVIDED");
        let listener = &yaml["static_resources"]["listeners"][0];
        assert_eq!(listener["address"]["socket_address"]["address"], "0.0.0.0");
        assert_eq!(listener["address"]["socket_address"]["port_value"], 8080);
    }

    #[test]
    fn names_the_wasm_path_for_the_fetcher_and_the_filter_in_one_vm() {
        let yaml = parsed();
        let service = &yaml["bootstrap_extensions"][0]["typed_config"];
        assert_eq!(service["singleton"], true);
        let hcm = &yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let filter = &hcm["http_filters"][0];
        assert_eq!(filter["name"], "envoy.filters.http.wasm");
        assert_eq!(hcm["http_filters"][1]["name"], "envoy.filters.http.router");
        let (fetcher, http) = (&service["config"], &filter["typed_config"]["config"]);
        assert_eq!(fetcher["vm_config"], http["vm_config"], "same VM settings, so one VM id and its shared data");
        assert_eq!(fetcher["vm_config"]["vm_id"], VM_ID);
        assert_eq!(fetcher["vm_config"]["code"]["local"]["filename"], "/opt/berth/berth_filter.wasm");
        assert_eq!(plugin_configuration(fetcher)["role"], "fetcher");
        assert_eq!(plugin_configuration(fetcher)["cluster"], CONTROLLER_CLUSTER);
        assert_eq!(plugin_configuration(http), json!({ "role": "http" }));
        assert_eq!(http["failure_policy"], "FAIL_RELOAD");
    }

    #[test]
    fn routes_everything_to_the_original_dst_cluster_without_header_control() {
        let text = render(&sample());
        assert!(!text.contains("use_http_header"), "{text}");
        let yaml = parsed();
        let hcm = &yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][0];
        assert_eq!(route["match"]["prefix"], "/");
        assert_eq!(route["route"]["cluster"], ORIGINAL_DST_CLUSTER);
    }

    #[test]
    fn ipv6_addresses_render_without_brackets() {
        let mut config = sample();
        config.http_listen = "[::]:8080".parse().unwrap();
        let yaml: serde_yaml::Value = serde_yaml::from_str(&render(&config)).unwrap();
        assert_eq!(yaml["static_resources"]["listeners"][0]["address"]["socket_address"]["address"], "::");
    }

    /// `envoy --mode validate` on the rendered bootstrap, when `make` has told us where Envoy and the module are
    /// (`BERTH_ENVOY`, `BERTH_WASM`); skipped otherwise, since validation loads the module.
    #[test]
    fn envoy_validates_the_rendered_bootstrap() {
        let (Some(envoy), Some(wasm)) = (std::env::var_os("BERTH_ENVOY"), std::env::var_os("BERTH_WASM")) else {
            eprintln!("skipped: BERTH_ENVOY and BERTH_WASM are not set");
            return;
        };
        if !std::path::Path::new(&envoy).exists() || !std::path::Path::new(&wasm).exists() {
            eprintln!("skipped: {envoy:?} or {wasm:?} does not exist");
            return;
        }
        let mut config = sample();
        config.wasm = wasm.into();
        let file = std::env::temp_dir().join(format!("berth-envoy-config-{}.yaml", std::process::id()));
        std::fs::write(&file, render(&config)).unwrap();
        let output = std::process::Command::new(&envoy)
            .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
            .arg(&file)
            .output()
            .unwrap();
        std::fs::remove_file(&file).ok();
        assert!(
            output.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
