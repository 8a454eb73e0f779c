//! Renders the Istio `EnvoyFilter` that runs Berth in an ingress gateway's Envoy. The pieces are those of the plain
//! Envoy bootstrap ([`crate::envoy_config`], so the two cannot drift) with two changes: the module is fetched from
//! the controller (`vm_config.code.remote`, checked against its sha256) instead of read from a file, and the
//! controller is reached through its Service name.
//!
//! Berth gets listeners of its own on the gateway (HTTP on `http_port`, TCP on the allocatable ports, TLS
//! passthrough on `tls_port`) rather than a
//! filter in Istio's listeners: on those, Istio's router sends every request to Istio's clusters (so the
//! destination the filter picks would be ignored), and the filter would answer 404 for every host Istio serves and
//! Berth does not know. Its own listeners route everything to `berth_original_dst`, exactly as in plain Envoy.

use std::str::FromStr;

use berth_table::PortRange;
use serde_json::{Value, json};

use crate::envoy_config::{self, CONTROLLER_CLUSTER, EnvoyConfig};
use crate::envoy_edge::EdgeSettings;
pub use crate::service_addr::ServiceAddr;

/// Where the controller serves the module (`berth run --filter-wasm`).
pub const MODULE_PATH: &str = "/v1/filter.wasm";

/// What `berth istio-config` needs to know.
#[derive(Debug, Clone)]
pub struct IstioConfig {
    /// The controller's Service, as the gateway's DNS resolves it.
    pub controller: ServiceAddr,
    /// The sha256 (hex) of the module the controller serves; Envoy refuses a module that does not match.
    pub wasm_sha256: String,
    /// The gateway pod's port for Berth's HTTP listener.
    pub http_port: u16,
    /// The ports TCP routes may be allocated on. Empty: no TCP listener.
    pub tcp_ports: Vec<PortRange>,
    /// The gateway pod's port for TLS passthrough routes. None: no TLS listener.
    pub tls_port: Option<u16>,
    /// The gateway pods' labels.
    pub selector: Vec<Label>,
    /// The gateway's namespace: an EnvoyFilter with a selector applies to pods of its own namespace.
    pub namespace: String,
    /// Connection limits and HTTP settings of Berth's clusters and listeners (the client-connection cap is the
    /// gateway's own business: it lives in the bootstrap).
    pub edge: EdgeSettings,
}

impl IstioConfig {
    /// Refuses what Envoy would accept and then fail to bind.
    pub fn check(&self) -> Result<(), String> {
        if self.tcp_ports.iter().any(|range| range.ports().any(|port| port == self.http_port)) {
            return Err(format!(
                "TCP port {} is also the HTTP listener's (--http-port); take it out of --tcp-ports or move the \
                 HTTP listener",
                self.http_port
            ));
        }
        if let Some(tls) = self.tls_port {
            if tls == self.http_port {
                return Err(format!("TLS port {tls} is also the HTTP listener's (--http-port); choose another"));
            }
            if self.tcp_ports.iter().any(|range| range.contains(tls)) {
                return Err(format!("TLS port {tls} is also in --tcp-ports; take it out of one of them"));
            }
        }
        if self.selector.is_empty() {
            return Err("--gateway-selector is empty: the EnvoyFilter would apply to every proxy".to_string());
        }
        Ok(())
    }

    fn module_uri(&self) -> String {
        format!("http://{}{MODULE_PATH}", self.controller)
    }
}

/// A label selector term, `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub key: String,
    pub value: String,
}

impl FromStr for Label {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok(Label { key: key.to_string(), value: value.to_string() }),
            _ => Err(format!("{s:?} is not KEY=VALUE, e.g. istio=ingressgateway")),
        }
    }
}

/// The EnvoyFilter as YAML, for `kubectl apply -f -`.
pub fn render(config: &IstioConfig) -> String {
    let header = format!(
        "# Rendered by `berth istio-config`: Berth's filter in the Istio gateway selected by {}.\n\
         # The module comes from http://{}{MODULE_PATH} and must have sha256 {}: render again for every new build.\n\
         # The bootstrap part takes effect when the gateway pods restart.\n",
        selector_text(config),
        config.controller,
        config.wasm_sha256
    );
    // Serializing a `serde_json::Value` to YAML cannot fail: every value has a YAML form.
    header + &serde_yaml::to_string(&envoy_filter(config)).unwrap_or_default()
}

fn selector_text(config: &IstioConfig) -> String {
    config.selector.iter().map(|l| format!("{}={}", l.key, l.value)).collect::<Vec<_>>().join(",")
}

/// The EnvoyFilter object.
pub fn envoy_filter(config: &IstioConfig) -> Value {
    let mut pieces = plain_pieces(config);
    let remote = json!({
        "remote": {
            "http_uri": { "uri": config.module_uri(), "cluster": CONTROLLER_CLUSTER, "timeout": "30s" },
            "sha256": config.wasm_sha256,
            // The gateway may start before the controller: keep trying for about five minutes.
            "retry_policy": {
                "num_retries": 30,
                "retry_back_off": { "base_interval": "1s", "max_interval": "10s" },
            },
        },
    });
    replace_code(&mut pieces, &remote);

    let mut patches = vec![json!({
        // Bootstrap, not CDS: the singleton fetcher downloads its module when the server initializes, before
        // Istio's clusters arrive, so the cluster it downloads from must be there from the start.
        "applyTo": "BOOTSTRAP",
        "patch": {
            "operation": "MERGE",
            "value": {
                "bootstrap_extensions": pieces["bootstrap_extensions"],
                "static_resources": { "clusters": [controller_cluster(config)] },
            },
        },
    })];
    // Every cluster but the controller's, which the bootstrap part carries: the `ORIGINAL_DST` cluster of each
    // protocol.
    for cluster in clusters(&pieces).filter(|c| c["name"] != CONTROLLER_CLUSTER) {
        patches.push(json!({
            "applyTo": "CLUSTER",
            "match": { "context": "GATEWAY" },
            "patch": { "operation": "ADD", "value": cluster },
        }));
    }
    for listener in pieces["static_resources"]["listeners"].as_array().into_iter().flatten() {
        patches.push(json!({
            "applyTo": "LISTENER",
            "match": { "context": "GATEWAY" },
            "patch": { "operation": "ADD", "value": listener },
        }));
    }
    let labels: serde_json::Map<String, Value> =
        config.selector.iter().map(|l| (l.key.clone(), Value::String(l.value.clone()))).collect();
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {
            "name": "berth",
            "namespace": config.namespace,
            "labels": { "app.kubernetes.io/name": "berth" },
        },
        "spec": {
            "workloadSelector": { "labels": labels },
            "configPatches": patches,
        },
    })
}

/// The plain-Envoy bootstrap for the same ports, listening on every address of the gateway pod.
fn plain_pieces(config: &IstioConfig) -> Value {
    let plain = EnvoyConfig {
        // Replaced below by the Service; the admin interface is Istio's own.
        controller: ServiceAddr { host: "127.0.0.1".into(), port: config.controller.port },
        wasm: "unused".into(),
        http_listen: ([0, 0, 0, 0], config.http_port).into(),
        admin: ([127, 0, 0, 1], 0).into(),
        tcp_ports: config.tcp_ports.clone(),
        tls_port: config.tls_port,
        edge: config.edge.clone(),
    };
    serde_yaml::from_str(&envoy_config::render(&plain)).unwrap_or(Value::Null)
}

fn clusters(pieces: &Value) -> impl Iterator<Item = Value> + '_ {
    pieces["static_resources"]["clusters"].as_array().into_iter().flatten().cloned()
}

/// The controller through its Service name, re-resolved as pods come and go.
fn controller_cluster(config: &IstioConfig) -> Value {
    json!({
        "name": CONTROLLER_CLUSTER,
        "type": "STRICT_DNS",
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

/// Every `vm_config.code` becomes `code`.
fn replace_code(value: &mut Value, code: &Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "vm_config" && child.get("code").is_some() {
                    child["code"] = code.clone();
                } else {
                    replace_code(child, code);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| replace_code(item, code)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy_config::{
        ORIGINAL_DST_CLUSTER, TCP_LISTENER, TCP_ORIGINAL_DST_CLUSTER, TLS_ORIGINAL_DST_CLUSTER, VM_ID,
    };

    fn sample() -> IstioConfig {
        IstioConfig {
            controller: "berth-controller.berth-system.svc.cluster.local:8081".parse().unwrap(),
            wasm_sha256: "ab".repeat(32),
            http_port: 8080,
            tcp_ports: Vec::new(),
            tls_port: None,
            selector: vec!["istio=ingressgateway".parse().unwrap()],
            namespace: "istio-system".into(),
            edge: EdgeSettings::default(),
        }
    }

    fn with_tcp(ranges: &str) -> IstioConfig {
        IstioConfig { tcp_ports: berth_table::parse_ranges(ranges).unwrap(), ..sample() }
    }

    fn parsed(config: &IstioConfig) -> serde_yaml::Value {
        serde_yaml::from_str(&render(config)).unwrap()
    }

    fn patches(yaml: &serde_yaml::Value) -> Vec<serde_yaml::Value> {
        yaml["spec"]["configPatches"].as_sequence().unwrap().clone()
    }

    fn applied_to<'a>(patches: &'a [serde_yaml::Value], what: &str) -> Vec<&'a serde_yaml::Value> {
        patches.iter().filter(|p| p["applyTo"] == what).collect()
    }

    /// Every `vm_config` anywhere in the object.
    fn vm_configs(value: &serde_yaml::Value, found: &mut Vec<serde_yaml::Value>) {
        match value {
            serde_yaml::Value::Mapping(map) => {
                for (key, child) in map {
                    if key == "vm_config" {
                        found.push(child.clone());
                    }
                    vm_configs(child, found);
                }
            }
            serde_yaml::Value::Sequence(items) => items.iter().for_each(|i| vm_configs(i, found)),
            _ => {}
        }
    }

    #[test]
    fn is_an_envoy_filter_for_the_selected_gateway() {
        let yaml = parsed(&sample());
        assert_eq!(yaml["apiVersion"], "networking.istio.io/v1alpha3");
        assert_eq!(yaml["kind"], "EnvoyFilter");
        assert_eq!(yaml["metadata"]["namespace"], "istio-system");
        assert_eq!(yaml["spec"]["workloadSelector"]["labels"]["istio"], "ingressgateway");
        let all = patches(&yaml);
        let kinds: Vec<&str> = all.iter().map(|p| p["applyTo"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["BOOTSTRAP", "CLUSTER", "LISTENER"], "no TCP listener without --tcp-ports");
        for patch in patches(&yaml).iter().filter(|p| p["applyTo"] != "BOOTSTRAP") {
            assert_eq!(patch["match"]["context"], "GATEWAY");
            assert_eq!(patch["patch"]["operation"], "ADD");
        }
    }

    #[test]
    fn the_fetcher_and_its_cluster_are_in_the_bootstrap() {
        let yaml = parsed(&sample());
        let all = patches(&yaml);
        let bootstrap = &applied_to(&all, "BOOTSTRAP")[0]["patch"];
        assert_eq!(bootstrap["operation"], "MERGE");
        let service = &bootstrap["value"]["bootstrap_extensions"][0];
        assert_eq!(service["name"], "envoy.bootstrap.wasm");
        assert_eq!(service["typed_config"]["singleton"], true);
        let cluster = &bootstrap["value"]["static_resources"]["clusters"][0];
        assert_eq!(cluster["name"], CONTROLLER_CLUSTER);
        assert_eq!(cluster["type"], "STRICT_DNS");
        let address = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
        assert_eq!(address["socket_address"]["address"], "berth-controller.berth-system.svc.cluster.local");
        assert_eq!(address["socket_address"]["port_value"], 8081);
        let original_dst = &applied_to(&all, "CLUSTER")[0]["patch"]["value"];
        assert_eq!(original_dst["name"], ORIGINAL_DST_CLUSTER);
        assert_eq!(original_dst["type"], "ORIGINAL_DST");
        assert_eq!(original_dst["lb_policy"], "CLUSTER_PROVIDED");
    }

    #[test]
    fn every_vm_loads_the_module_from_the_controller_with_its_sha256() {
        let yaml = parsed(&with_tcp("31000-31002"));
        let mut found = Vec::new();
        vm_configs(&yaml, &mut found);
        assert_eq!(found.len(), 3, "fetcher, HTTP filter, TCP filter");
        for vm in &found {
            assert_eq!(vm, &found[0], "identical VM settings, so one VM id and its shared data");
            assert_eq!(vm["vm_id"], VM_ID);
            let remote = &vm["code"]["remote"];
            assert!(vm["code"]["local"].is_null());
            assert_eq!(
                remote["http_uri"]["uri"],
                "http://berth-controller.berth-system.svc.cluster.local:8081/v1/filter.wasm"
            );
            assert_eq!(remote["http_uri"]["cluster"], CONTROLLER_CLUSTER);
            assert_eq!(remote["sha256"], "ab".repeat(32).as_str());
        }
        assert!(!render(&sample()).contains("unused"), "no trace of the plain bootstrap's file path");
    }

    #[test]
    fn berth_has_listeners_of_its_own_routing_to_the_original_dst_cluster() {
        let yaml = parsed(&with_tcp("31000-31002"));
        let all = patches(&yaml);
        let listeners: Vec<&serde_yaml::Value> =
            applied_to(&all, "LISTENER").iter().map(|p| &p["patch"]["value"]).collect();
        assert_eq!(listeners.len(), 2);
        let http = listeners[0];
        assert_eq!(http["address"]["socket_address"]["address"], "0.0.0.0");
        assert_eq!(http["address"]["socket_address"]["port_value"], 8080);
        let hcm = &http["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(hcm["http_filters"][0]["name"], "envoy.filters.http.wasm");
        assert_eq!(hcm["http_filters"][1]["name"], "envoy.filters.http.router");
        let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][1]["route"];
        assert_eq!(route["cluster"], ORIGINAL_DST_CLUSTER);
        let tcp = listeners[1];
        assert_eq!(tcp["name"], TCP_LISTENER);
        assert_eq!(tcp["address"]["socket_address"]["port_value"], 31000);
        assert_eq!(tcp["additional_addresses"].as_sequence().unwrap().len(), 2);
        assert_eq!(tcp["filter_chains"][0]["filters"][1]["typed_config"]["cluster"], TCP_ORIGINAL_DST_CLUSTER);
        let clusters: Vec<&serde_yaml::Value> =
            applied_to(&all, "CLUSTER").iter().map(|p| &p["patch"]["value"]["name"]).collect();
        assert_eq!(clusters, [ORIGINAL_DST_CLUSTER, TCP_ORIGINAL_DST_CLUSTER], "one per protocol");
    }

    #[test]
    fn a_tls_port_adds_berths_tls_passthrough_listener_loading_the_module_remotely() {
        let yaml = parsed(&IstioConfig { tls_port: Some(8443), ..with_tcp("31000-31002") });
        let all = patches(&yaml);
        let listeners: Vec<&serde_yaml::Value> =
            applied_to(&all, "LISTENER").iter().map(|p| &p["patch"]["value"]).collect();
        assert_eq!(listeners.len(), 3);
        let tls = listeners[2];
        assert_eq!(tls["name"], crate::envoy_config::TLS_LISTENER);
        assert_eq!(tls["address"]["socket_address"]["address"], "0.0.0.0");
        assert_eq!(tls["address"]["socket_address"]["port_value"], 8443);
        assert_eq!(tls["listener_filters"][0]["name"], "envoy.filters.listener.tls_inspector");
        let filters = &tls["filter_chains"][0]["filters"];
        assert!(filters[0]["typed_config"]["config"]["vm_config"]["code"]["remote"].is_mapping());
        assert_eq!(filters[1]["typed_config"]["cluster"], TLS_ORIGINAL_DST_CLUSTER);
        let mut found = Vec::new();
        vm_configs(&yaml, &mut found);
        assert_eq!(found.len(), 4, "fetcher, HTTP, TCP and TLS filters");
        assert!(found.iter().all(|vm| *vm == found[0]), "one VM id and its shared data");
    }

    #[test]
    fn refuses_an_http_port_among_the_tcp_ports_and_an_empty_selector() {
        let err = with_tcp("8079-8081").check().unwrap_err();
        assert!(err.contains("TCP port 8080"), "{err}");
        let err = IstioConfig { tls_port: Some(8080), ..sample() }.check().unwrap_err();
        assert!(err.contains("TLS port 8080"), "{err}");
        let err = IstioConfig { tls_port: Some(31001), ..with_tcp("31000-31002") }.check().unwrap_err();
        assert!(err.contains("--tcp-ports"), "{err}");
        assert!(IstioConfig { selector: vec![], ..sample() }.check().is_err());
        assert!(sample().check().is_ok());
    }

    #[test]
    fn service_addresses_and_labels_parse_with_readable_errors() {
        let addr: ServiceAddr = "http://berth.example:8081/".parse().unwrap();
        assert_eq!((addr.host.as_str(), addr.port), ("berth.example", 8081));
        assert_eq!("127.0.0.1:9".parse::<ServiceAddr>().unwrap().to_string(), "127.0.0.1:9");
        assert!("berth".parse::<ServiceAddr>().unwrap_err().contains("HOST:PORT"));
        assert!("berth:http".parse::<ServiceAddr>().unwrap_err().contains("port number"));
        assert_eq!("app=gw".parse::<Label>().unwrap(), Label { key: "app".into(), value: "gw".into() });
        assert!("=gw".parse::<Label>().is_err());
        assert!("gw".parse::<Label>().is_err());
    }
}
