//! Renders the Envoy bootstrap that runs Berth's filter in stock Envoy: the singleton fetcher service, the
//! controller cluster and one `ORIGINAL_DST` cluster per protocol, the HTTP listener with the filter in front of the
//! router, the TCP listener (every allocatable port) with the filter in front of `tcp_proxy`, and the TLS
//! passthrough listener (`tls_inspector`, then the filter choosing by server name, then `tcp_proxy`). The edge
//! settings (limits, timeouts, path handling) come from [`crate::envoy_edge`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use berth_table::PortRange;
use serde_json::{Value, json};

use crate::envoy_edge::{self, CONNECTION_BUFFER_LIMIT, EdgeSettings};
use crate::service_addr::ServiceAddr;

/// What `berth envoy-config` needs to know.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    /// Where `berth run --listen` serves the table: an IP (a static cluster) or a DNS name, such as the
    /// controller's Service in a cluster (re-resolved as its pods come and go).
    pub controller: ServiceAddr,
    /// Path of `berth_filter.wasm`. Envoy resolves a relative path against its working directory.
    pub wasm: PathBuf,
    /// The HTTP listener that clients connect to.
    pub http_listen: SocketAddr,
    /// Envoy's admin interface.
    pub admin: SocketAddr,
    /// The ports TCP routes may be allocated on, listened on at the HTTP listener's IP. Empty: no TCP listener.
    pub tcp_ports: Vec<PortRange>,
    /// The port TLS passthrough routes are served on, at the HTTP listener's IP. None: no TLS listener.
    pub tls_port: Option<u16>,
    /// Connection limits, timeouts and HTTP settings for the edge.
    pub edge: EdgeSettings,
}

impl EnvoyConfig {
    /// The distinct TCP ports, ascending.
    pub fn tcp_port_set(&self) -> BTreeSet<u16> {
        self.tcp_ports.iter().flat_map(PortRange::ports).collect()
    }

    /// Refuses a TCP port that another listener of the bootstrap already binds: Envoy would fail at startup only.
    pub fn check(&self) -> Result<(), String> {
        let ports = self.tcp_port_set();
        let ip = self.http_listen.ip();
        let mut taken = vec![("HTTP listener", self.http_listen)];
        if self.admin.ip() == ip || self.admin.ip().is_unspecified() || ip.is_unspecified() {
            taken.push(("admin interface", self.admin));
        }
        for (what, address) in &taken {
            if ports.contains(&address.port()) {
                return Err(format!(
                    "TCP port {} is also the {what}'s ({address}); take it out of --tcp-ports or move the {what}",
                    address.port()
                ));
            }
        }
        if let Some(tls) = self.tls_port {
            if let Some((what, address)) = taken.iter().find(|(_, address)| address.port() == tls) {
                return Err(format!("TLS port {tls} is also the {what}'s ({address}); choose another --tls-port"));
            }
            if ports.contains(&tls) {
                return Err(format!("TLS port {tls} is also in --tcp-ports; take it out of one of them"));
            }
        }
        Ok(())
    }
}

/// The wasm VM id shared by the fetcher and every filter: shared data (the table) is scoped by it.
pub const VM_ID: &str = "berth";
/// The cluster the fetcher polls.
pub const CONTROLLER_CLUSTER: &str = "berth_controller";
/// The cluster every routed HTTP request goes to; the filter names the endpoint through filter state. TCP and TLS
/// connections have clusters of their own, so that an overload of one protocol's routes (their circuit breakers)
/// leaves the others alone.
pub const ORIGINAL_DST_CLUSTER: &str = "berth_original_dst";
/// The cluster routed TCP connections go to, chosen the same way.
pub const TCP_ORIGINAL_DST_CLUSTER: &str = "berth_original_dst_tcp";
/// The cluster TLS passthrough connections go to, chosen the same way.
pub const TLS_ORIGINAL_DST_CLUSTER: &str = "berth_original_dst_tls";
/// The TCP listener's name and `tcp_proxy` stat prefix.
pub const TCP_LISTENER: &str = "berth_tcp";
/// The TLS passthrough listener's name and `tcp_proxy` stat prefix.
pub const TLS_LISTENER: &str = "berth_tls";

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
        "overload_manager": config.edge.overload_manager(),
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
            "listeners": std::iter::once(http_listener(config))
                .chain(tcp_listener(config))
                .chain(tls_listener(config))
                .collect::<Vec<_>>(),
            "clusters": std::iter::once(controller_cluster(config))
                .chain(original_dst_clusters(config))
                .collect::<Vec<_>>(),
        },
    })
}

/// The controller's cluster: static for an IP, DNS-resolved (and re-resolved) for a name.
fn controller_cluster(config: &EnvoyConfig) -> Value {
    let is_ip = config.controller.host.parse::<std::net::IpAddr>().is_ok();
    json!({
        "name": CONTROLLER_CLUSTER,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": CONTROLLER_CLUSTER,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                "address": config.controller.host,
                "port_value": config.controller.port,
            } } } }] }],
        },
    })
}

/// One `ORIGINAL_DST` cluster per protocol that has a listener, each with its own circuit breakers.
fn original_dst_clusters(config: &EnvoyConfig) -> Vec<Value> {
    let mut names = vec![ORIGINAL_DST_CLUSTER];
    if !config.tcp_ports.is_empty() {
        names.push(TCP_ORIGINAL_DST_CLUSTER);
    }
    if config.tls_port.is_some() {
        names.push(TLS_ORIGINAL_DST_CLUSTER);
    }
    names.into_iter().map(|name| config.edge.original_dst_cluster(name)).collect()
}

fn http_listener(config: &EnvoyConfig) -> Value {
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "berth_http",
        "upgrade_configs": [{ "upgrade_type": "websocket" }],
        "route_config": {
            "name": "berth",
            "virtual_hosts": [{
                "name": "berth",
                "domains": ["*"],
                // Ignored by the cluster anyway; removed so no backend ever sees a client's attempt.
                "request_headers_to_remove": ["x-envoy-original-dst-host"],
                "routes": [
                    envoy_edge::path_semicolon_route(),
                    {
                        "match": { "prefix": "/" },
                        "route": {
                            "cluster": ORIGINAL_DST_CLUSTER,
                            // No overall deadline: an ingress carries streaming responses, long polls and
                            // websockets whose length it cannot know. Stuck streams are still reaped by the
                            // connection manager's stream idle timeout (5 minutes without a byte).
                            "timeout": "0s",
                        },
                    },
                ],
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
    });
    if let (Some(hcm), Value::Object(edge)) = (hcm.as_object_mut(), config.edge.http_connection_manager()) {
        hcm.extend(edge);
    }
    json!({
        "name": "berth_http",
        "address": socket_address(config.http_listen),
        "per_connection_buffer_limit_bytes": CONNECTION_BUFFER_LIMIT,
        "filter_chains": [{
            "filters": [{ "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm }],
        }],
    })
}

/// One listener for every TCP port: the first port is its address, the others `additional_addresses`. All ports
/// share one filter chain (the filter reads the local port of each connection), so Envoy builds the chain once
/// however many ports there are; a listener per port would repeat it per port.
fn tcp_listener(config: &EnvoyConfig) -> Option<Value> {
    let ip = config.http_listen.ip();
    let mut ports = config.tcp_port_set().into_iter();
    let first = ports.next()?;
    let additional: Vec<Value> =
        ports.map(|port| json!({ "address": socket_address(SocketAddr::new(ip, port)) })).collect();
    let mut listener = json!({
        "name": TCP_LISTENER,
        "address": socket_address(SocketAddr::new(ip, first)),
        "per_connection_buffer_limit_bytes": CONNECTION_BUFFER_LIMIT,
        "filter_chains": [{
            "filters": [
                {
                    // Sets the connection's destination in `on_new_connection`, or closes it before `tcp_proxy`
                    // sees it.
                    "name": "envoy.filters.network.wasm",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                        "config": network_plugin(config, "berth_tcp", "tcp"),
                    },
                },
                {
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": TCP_LISTENER,
                        "cluster": TCP_ORIGINAL_DST_CLUSTER,
                    },
                },
            ],
        }],
    });
    if !additional.is_empty() {
        listener["additional_addresses"] = Value::Array(additional);
    }
    Some(listener)
}

/// The TLS passthrough listener: `tls_inspector` reads the server name from the ClientHello (without terminating
/// TLS), the filter picks the destination by it, `tcp_proxy` carries the still-encrypted bytes there. A connection
/// that sends no ClientHello (or no TLS at all) reaches the filter without a name and is closed; one that sends
/// nothing is closed by the listener-filter timeout (Envoy's default, 15 s).
fn tls_listener(config: &EnvoyConfig) -> Option<Value> {
    let port = config.tls_port?;
    Some(json!({
        "name": TLS_LISTENER,
        "address": socket_address(SocketAddr::new(config.http_listen.ip(), port)),
        "per_connection_buffer_limit_bytes": CONNECTION_BUFFER_LIMIT,
        "listener_filters": [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
            },
        }],
        "filter_chains": [{
            "filters": [
                {
                    // Sets the connection's destination in `on_new_connection`, or closes it before `tcp_proxy`
                    // sees it.
                    "name": "envoy.filters.network.wasm",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                        "config": network_plugin(config, "berth_tls", "tls"),
                    },
                },
                {
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": TLS_LISTENER,
                        "cluster": TLS_ORIGINAL_DST_CLUSTER,
                    },
                },
            ],
        }],
    }))
}

/// A network filter's plugin (`role` tcp or tls): same VM as the others, and the same failure policy as the HTTP
/// filter's.
fn network_plugin(config: &EnvoyConfig, name: &str, role: &str) -> Value {
    let mut plugin = plugin(config, name, &json!({ "role": role }));
    plugin["failure_policy"] = json!("FAIL_RELOAD");
    plugin
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
            tcp_ports: Vec::new(),
            tls_port: None,
            edge: EdgeSettings::default(),
        }
    }

    fn with_tcp(ranges: &str) -> EnvoyConfig {
        EnvoyConfig { tcp_ports: berth_table::parse_ranges(ranges).unwrap(), ..sample() }
    }

    fn tcp_listener_of(config: &EnvoyConfig) -> serde_yaml::Value {
        let yaml: serde_yaml::Value = serde_yaml::from_str(&render(config)).unwrap();
        let listeners = yaml["static_resources"]["listeners"].as_sequence().unwrap();
        assert_eq!(listeners.len(), 2);
        listeners[1].clone()
    }

    fn port_of(address: &serde_yaml::Value) -> u64 {
        address["socket_address"]["port_value"].as_u64().unwrap()
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
        let routes = hcm["route_config"]["virtual_hosts"][0]["routes"].as_sequence().unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0]["name"], "berth_path_semicolon", "the only route of Envoy's own: a 400");
        assert!(routes[0]["route"].is_null());
        assert_eq!(routes[1]["match"]["prefix"], "/");
        assert_eq!(routes[1]["route"]["cluster"], ORIGINAL_DST_CLUSTER);
    }

    #[test]
    fn each_protocol_has_its_own_original_dst_cluster_with_the_edge_limits() {
        let mut config = with_tcp("31000-31001");
        config.tls_port = Some(8443);
        config.edge.endpoint_max_connections = 77;
        let yaml: serde_yaml::Value = serde_yaml::from_str(&render(&config)).unwrap();
        let clusters = yaml["static_resources"]["clusters"].as_sequence().unwrap();
        let names: Vec<&str> = clusters.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [CONTROLLER_CLUSTER, ORIGINAL_DST_CLUSTER, TCP_ORIGINAL_DST_CLUSTER, TLS_ORIGINAL_DST_CLUSTER]
        );
        for cluster in &clusters[1..] {
            assert_eq!(cluster["type"], "ORIGINAL_DST");
            assert_eq!(cluster["circuit_breakers"]["per_host_thresholds"][0]["max_connections"], 77);
        }
        let proxy_cluster = |listener: &str| {
            listener_named(&yaml, listener)["filter_chains"][0]["filters"][1]["typed_config"]["cluster"].clone()
        };
        assert_eq!(proxy_cluster(TCP_LISTENER), TCP_ORIGINAL_DST_CLUSTER);
        assert_eq!(proxy_cluster(TLS_LISTENER), TLS_ORIGINAL_DST_CLUSTER);
        let monitor = &yaml["overload_manager"]["resource_monitors"][0];
        assert_eq!(monitor["typed_config"]["max_active_downstream_connections"], 50_000);
    }

    #[test]
    fn the_http_listener_carries_the_edge_settings() {
        let yaml = parsed();
        let listener = &yaml["static_resources"]["listeners"][0];
        assert_eq!(listener["per_connection_buffer_limit_bytes"], 32_768);
        let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(hcm["merge_slashes"], true);
        assert_eq!(hcm["request_headers_timeout"], "10s");
        assert_eq!(hcm["http_protocol_options"]["accept_http_10"], true);
        assert_eq!(hcm["stat_prefix"], "berth_http", "the listener's own keys are kept");
    }

    #[test]
    fn a_controller_named_by_dns_is_resolved_by_envoy() {
        let yaml = parsed();
        assert_eq!(yaml["static_resources"]["clusters"][0]["type"], "STATIC");
        let mut config = sample();
        config.controller = "berth-controller.berth-system.svc.cluster.local:8081".parse().unwrap();
        let yaml: serde_yaml::Value = serde_yaml::from_str(&render(&config)).unwrap();
        let cluster = &yaml["static_resources"]["clusters"][0];
        assert_eq!(cluster["type"], "STRICT_DNS");
        let address = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
        assert_eq!(address["socket_address"]["address"], "berth-controller.berth-system.svc.cluster.local");
        assert_eq!(address["socket_address"]["port_value"], 8081);
    }

    #[test]
    fn no_tcp_ports_no_tcp_listener() {
        let listeners = &parsed()["static_resources"]["listeners"];
        assert_eq!(listeners.as_sequence().unwrap().len(), 1);
        assert_eq!(listeners[0]["name"], "berth_http");
    }

    #[test]
    fn tcp_listener_binds_every_port_of_every_range_once_on_the_http_ip() {
        let mut config = with_tcp("31005-31010,31000,31008-31012");
        config.http_listen = "10.1.2.3:8080".parse().unwrap();
        let listener = tcp_listener_of(&config);
        assert_eq!(listener["name"], TCP_LISTENER);
        assert_eq!(listener["address"]["socket_address"]["address"], "10.1.2.3");
        assert_eq!(port_of(&listener["address"]), 31000);
        let additional = listener["additional_addresses"].as_sequence().unwrap();
        let ports: Vec<u64> = additional.iter().map(|a| port_of(&a["address"])).collect();
        assert_eq!(ports, (31005..=31012).collect::<Vec<u64>>());
        assert!(additional.iter().all(|a| a["address"]["socket_address"]["address"] == "10.1.2.3"));
    }

    #[test]
    fn a_single_tcp_port_has_no_additional_addresses() {
        let listener = tcp_listener_of(&with_tcp("31000"));
        assert_eq!(port_of(&listener["address"]), 31000);
        assert!(listener.get("additional_addresses").is_none());
    }

    #[test]
    fn tcp_chain_is_the_filter_in_the_shared_vm_then_tcp_proxy_to_original_dst() {
        let yaml: serde_yaml::Value = serde_yaml::from_str(&render(&with_tcp("31000-31010"))).unwrap();
        let listener = &yaml["static_resources"]["listeners"][1];
        let filters = listener["filter_chains"][0]["filters"].as_sequence().unwrap();
        assert_eq!(filters.len(), 2);
        assert_eq!(filters[0]["name"], "envoy.filters.network.wasm");
        let tcp = &filters[0]["typed_config"]["config"];
        assert_eq!(plugin_configuration(tcp), json!({ "role": "tcp" }));
        assert_eq!(tcp["failure_policy"], "FAIL_RELOAD");
        let fetcher = &yaml["bootstrap_extensions"][0]["typed_config"]["config"];
        assert_eq!(tcp["vm_config"], fetcher["vm_config"], "same VM as the fetcher, so it sees the shared table");
        assert_eq!(filters[1]["name"], "envoy.filters.network.tcp_proxy");
        assert_eq!(filters[1]["typed_config"]["stat_prefix"], "berth_tcp");
        assert_eq!(filters[1]["typed_config"]["cluster"], TCP_ORIGINAL_DST_CLUSTER);
    }

    #[test]
    fn tcp_ports_may_not_take_the_http_or_admin_port() {
        assert_eq!(with_tcp("31000-31010").check(), Ok(()));
        let err = with_tcp("8000-8090").check().unwrap_err();
        assert!(err.contains("8080") && err.contains("HTTP listener"), "{err}");
        let err = with_tcp("9901").check().unwrap_err();
        assert!(err.contains("admin"), "{err}");
        let mut config = with_tcp("9901");
        config.http_listen = "127.0.0.1:8080".parse().unwrap();
        config.admin = "127.0.0.2:9901".parse().unwrap();
        assert_eq!(config.check(), Ok(()), "the admin interface on another IP does not collide");
        config.http_listen = "0.0.0.0:8080".parse().unwrap();
        assert!(config.check().is_err(), "but it does with a TCP listener on every IP");
    }

    fn listener_named<'a>(yaml: &'a serde_yaml::Value, name: &str) -> &'a serde_yaml::Value {
        let listeners = yaml["static_resources"]["listeners"].as_sequence().unwrap();
        listeners.iter().find(|l| l["name"] == name).unwrap_or_else(|| panic!("no listener {name}"))
    }

    #[test]
    fn tls_listener_inspects_the_client_hello_then_routes_by_server_name_through_tcp_proxy() {
        let mut config = with_tcp("31000-31002");
        config.tls_port = Some(8443);
        config.http_listen = "10.1.2.3:8080".parse().unwrap();
        let yaml: serde_yaml::Value = serde_yaml::from_str(&render(&config)).unwrap();
        assert_eq!(yaml["static_resources"]["listeners"].as_sequence().unwrap().len(), 3);
        let tls = listener_named(&yaml, TLS_LISTENER);
        assert_eq!(tls["address"]["socket_address"]["address"], "10.1.2.3");
        assert_eq!(port_of(&tls["address"]), 8443);
        let inspectors = tls["listener_filters"].as_sequence().unwrap();
        assert_eq!(inspectors.len(), 1);
        assert_eq!(inspectors[0]["name"], "envoy.filters.listener.tls_inspector");
        let filters = tls["filter_chains"][0]["filters"].as_sequence().unwrap();
        assert_eq!(filters.len(), 2);
        assert_eq!(filters[0]["name"], "envoy.filters.network.wasm");
        let plugin = &filters[0]["typed_config"]["config"];
        assert_eq!(plugin_configuration(plugin), json!({ "role": "tls" }));
        assert_eq!(plugin["failure_policy"], "FAIL_RELOAD");
        let fetcher = &yaml["bootstrap_extensions"][0]["typed_config"]["config"];
        assert_eq!(plugin["vm_config"], fetcher["vm_config"], "same VM as the fetcher, so it sees the shared table");
        assert_eq!(filters[1]["name"], "envoy.filters.network.tcp_proxy");
        assert_eq!(filters[1]["typed_config"]["stat_prefix"], TLS_LISTENER);
        assert_eq!(filters[1]["typed_config"]["cluster"], TLS_ORIGINAL_DST_CLUSTER);
        assert!(listener_named(&yaml, TCP_LISTENER)["listener_filters"].is_null(), "plain TCP is not inspected");
        assert!(parsed()["static_resources"]["listeners"].as_sequence().unwrap().len() == 1, "none without a port");
    }

    #[test]
    fn the_tls_port_may_not_take_another_listeners_port() {
        let with_tls = |tcp: &str, tls: u16| EnvoyConfig { tls_port: Some(tls), ..with_tcp(tcp) };
        assert_eq!(with_tls("31000-31010", 8443).check(), Ok(()));
        for (tcp, tls, named) in
            [("", 8080, "HTTP listener"), ("", 9901, "admin interface"), ("31000-31010", 31005, "--tcp-ports")]
        {
            let err = with_tls(tcp, tls).check().unwrap_err();
            assert!(err.contains(&format!("TLS port {tls}")) && err.contains(named), "{err}");
        }
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
        for (name, ranges, tls_port) in [
            ("http", "", None),
            ("tcp11", "31000-31010", None),
            ("tcp1000", "30000-30499,31000-31499", None),
            ("tls", "", Some(8443)),
            ("tcp-tls", "31000-31010", Some(8443)),
        ] {
            let mut config = with_tcp(ranges);
            config.tls_port = tls_port;
            config.wasm = wasm.clone().into();
            let file = std::env::temp_dir().join(format!("berth-envoy-config-{}-{name}.yaml", std::process::id()));
            std::fs::write(&file, render(&config)).unwrap();
            let output = std::process::Command::new(&envoy)
                .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
                .arg(&file)
                .output()
                .unwrap();
            std::fs::remove_file(&file).ok();
            assert!(
                output.status.success(),
                "{name}: {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
