//! Renders the Istio `EnvoyFilter` that runs Berth in an ingress gateway's Envoy, with `CLUSTER` and `LISTENER`
//! patches only: Istio stopped applying `BOOTSTRAP` patches in 1.21, and Berth needs nothing in the bootstrap (the
//! filter's root contexts elect the one that fetches the table). The pieces are those of the plain Envoy config
//! ([`crate::envoy_config`], so the two cannot drift) with two changes: the module is fetched from the controller
//! (`vm_config.code.remote`, checked against its sha256) instead of read from a file, and the controller is
//! reached through its Service name.
//!
//! Berth gets listeners of its own on the gateway (HTTP on `http_port`, TCP on the allocatable ports, TLS passthrough
//! on `tls_port`) rather than a filter in Istio's listeners: on those, Istio's router sends every request to Istio's
//! clusters, so Berth's own listeners route everything to its `ORIGINAL_DST` clusters (one per protocol), exactly as in
//! plain Envoy. Their ports must differ from every listener Istio builds on the gateway: a `Gateway` server on port 80
//! or 443 becomes a listener on 8080 or 8443, and Istio's agent and Envoy use 15000-15099. [`IstioConfig::check`]
//! refuses those unless forced.
//!
//! The controller cluster arrives by CDS together with the listeners that download the module through it. A
//! listener whose download fails (the cluster not there yet) keeps warming and retries on the `retry_policy`
//! below, verified in `tests/tests/dynamic_resources.rs` with the cluster added after the listener.

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
    /// Accept ports a stock Istio gateway uses itself (see [`ISTIO_PORTS`]).
    pub allow_istio_ports: bool,
}

/// The default port of Berth's HTTP listener on the gateway: no stock Istio gateway listens there.
pub const DEFAULT_HTTP_PORT: u16 = 10080;

/// Ports a stock Istio gateway binds itself: its `Gateway` servers on 80 and 443 become listeners on 8080 and 8443
/// (the gateway runs without root), and Istio's agent and Envoy take 15000-15099 (admin 15000, status 15021,
/// metrics 15090, ...). Envoy rejects the second listener on a port, and with it Berth's whole patch.
pub const ISTIO_PORTS: &[(u16, u16, &str)] = &[
    (8080, 8080, "a Gateway server on port 80"),
    (8443, 8443, "a Gateway server on port 443"),
    (15000, 15099, "Istio's agent and Envoy"),
];

/// What Istio uses `port` for, if anything.
fn istio_use(port: u16) -> Option<&'static str> {
    ISTIO_PORTS.iter().find(|(first, last, _)| (*first..=*last).contains(&port)).map(|(_, _, what)| *what)
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
        if !self.allow_istio_ports {
            let ports = std::iter::once((self.http_port, "--http-port"))
                .chain(self.tls_port.map(|port| (port, "--tls-port")))
                .chain(self.tcp_ports.iter().flat_map(PortRange::ports).map(|port| (port, "--tcp-ports")));
            for (port, flag) in ports {
                if let Some(what) = istio_use(port) {
                    return Err(format!(
                        "{flag} {port} is a port the Istio gateway uses itself ({what}): Envoy would reject Berth's \
                         listener; choose another port (the default --http-port is {DEFAULT_HTTP_PORT}), or pass \
                         --allow-istio-ports if this gateway does not use it"
                    ));
                }
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
         # Only CLUSTER and LISTENER patches: applied as the gateway receives its config, without a restart.\n",
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
    let plain = plain_config(config);
    let remote = json!({
        "remote": {
            "http_uri": { "uri": config.module_uri(), "cluster": CONTROLLER_CLUSTER, "timeout": "30s" },
            "sha256": config.wasm_sha256,
            // The controller (or its cluster) may not be there yet: keep trying for about five minutes. The
            // listener stays warming meanwhile and Envoy serves Istio's own listeners as usual.
            "retry_policy": {
                "num_retries": 30,
                "retry_back_off": { "base_interval": "1s", "max_interval": "10s" },
            },
        },
    });
    let mut listeners = envoy_config::listeners(&plain);
    listeners.iter_mut().for_each(|listener| replace_code(listener, &remote));
    // The controller's cluster (its Service name, re-resolved as pods come and go), then the `ORIGINAL_DST`
    // cluster of each protocol.
    let patches: Vec<Value> = envoy_config::clusters(&plain)
        .into_iter()
        .map(|cluster| ("CLUSTER", cluster))
        .chain(listeners.into_iter().map(|listener| ("LISTENER", listener)))
        .map(|(apply_to, value)| {
            json!({
                "applyTo": apply_to,
                "match": { "context": "GATEWAY" },
                "patch": { "operation": "ADD", "value": value },
            })
        })
        .collect();
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

/// The plain-Envoy config for the same ports, listening on every address of the gateway pod.
fn plain_config(config: &IstioConfig) -> EnvoyConfig {
    EnvoyConfig {
        // The admin interface is Istio's own, and there are no files.
        controller: config.controller.clone(),
        wasm: "unused".into(),
        http_listen: ([0, 0, 0, 0], config.http_port).into(),
        admin: ([127, 0, 0, 1], 0).into(),
        tcp_ports: config.tcp_ports.clone(),
        tls_port: config.tls_port,
        edge: config.edge.clone(),
        config_dir: "unused".into(),
    }
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
            http_port: DEFAULT_HTTP_PORT,
            tcp_ports: Vec::new(),
            tls_port: None,
            selector: vec!["istio=ingressgateway".parse().unwrap()],
            namespace: "istio-system".into(),
            edge: EdgeSettings::default(),
            allow_istio_ports: false,
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
        assert_eq!(kinds, ["CLUSTER", "CLUSTER", "LISTENER"], "no BOOTSTRAP, no TCP listener without --tcp-ports");
        for patch in patches(&yaml) {
            assert_eq!(patch["match"]["context"], "GATEWAY");
            assert_eq!(patch["patch"]["operation"], "ADD");
        }
    }

    #[test]
    fn the_controller_and_original_dst_clusters_are_cluster_patches() {
        let yaml = parsed(&sample());
        let all = patches(&yaml);
        let clusters = applied_to(&all, "CLUSTER");
        let cluster = &clusters[0]["patch"]["value"];
        assert_eq!(cluster["name"], CONTROLLER_CLUSTER);
        assert_eq!(cluster["type"], "STRICT_DNS");
        let address = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
        assert_eq!(address["socket_address"]["address"], "berth-controller.berth-system.svc.cluster.local");
        assert_eq!(address["socket_address"]["port_value"], 8081);
        let original_dst = &clusters[1]["patch"]["value"];
        assert_eq!(original_dst["name"], ORIGINAL_DST_CLUSTER);
        assert_eq!(original_dst["type"], "ORIGINAL_DST");
        assert_eq!(original_dst["lb_policy"], "CLUSTER_PROVIDED");
        assert!(!render(&sample()).contains("bootstrap_extensions"));
    }

    #[test]
    fn every_vm_loads_the_module_from_the_controller_with_its_sha256() {
        let yaml = parsed(&with_tcp("31000-31002"));
        let mut found = Vec::new();
        vm_configs(&yaml, &mut found);
        assert_eq!(found.len(), 2, "HTTP filter, TCP filter");
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
        assert_eq!(http["address"]["socket_address"]["port_value"], u64::from(DEFAULT_HTTP_PORT));
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
        assert_eq!(
            clusters,
            [CONTROLLER_CLUSTER, ORIGINAL_DST_CLUSTER, TCP_ORIGINAL_DST_CLUSTER],
            "the controller's, then one per protocol"
        );
    }

    #[test]
    fn a_tls_port_adds_berths_tls_passthrough_listener_loading_the_module_remotely() {
        let yaml = parsed(&IstioConfig { tls_port: Some(10443), ..with_tcp("31000-31002") });
        let all = patches(&yaml);
        let listeners: Vec<&serde_yaml::Value> =
            applied_to(&all, "LISTENER").iter().map(|p| &p["patch"]["value"]).collect();
        assert_eq!(listeners.len(), 3);
        let tls = listeners[2];
        assert_eq!(tls["name"], crate::envoy_config::TLS_LISTENER);
        assert_eq!(tls["address"]["socket_address"]["address"], "0.0.0.0");
        assert_eq!(tls["address"]["socket_address"]["port_value"], 10443);
        assert_eq!(tls["listener_filters"][0]["name"], "envoy.filters.listener.tls_inspector");
        let filters = &tls["filter_chains"][0]["filters"];
        assert!(filters[0]["typed_config"]["config"]["vm_config"]["code"]["remote"].is_mapping());
        assert_eq!(filters[1]["typed_config"]["cluster"], TLS_ORIGINAL_DST_CLUSTER);
        let mut found = Vec::new();
        vm_configs(&yaml, &mut found);
        assert_eq!(found.len(), 3, "HTTP, TCP and TLS filters");
        assert!(found.iter().all(|vm| *vm == found[0]), "one VM id and its shared data");
    }

    #[test]
    fn refuses_an_http_port_among_the_tcp_ports_and_an_empty_selector() {
        let err = with_tcp("10079-10081").check().unwrap_err();
        assert!(err.contains("TCP port 10080"), "{err}");
        let err = IstioConfig { tls_port: Some(10080), ..sample() }.check().unwrap_err();
        assert!(err.contains("TLS port 10080"), "{err}");
        let err = IstioConfig { tls_port: Some(31001), ..with_tcp("31000-31002") }.check().unwrap_err();
        assert!(err.contains("--tcp-ports"), "{err}");
        assert!(IstioConfig { selector: vec![], ..sample() }.check().is_err());
        assert!(sample().check().is_ok());
    }

    #[test]
    fn refuses_the_ports_a_stock_istio_gateway_uses_unless_allowed() {
        for (config, flag, port) in [
            (IstioConfig { http_port: 8080, ..sample() }, "--http-port", 8080),
            (IstioConfig { tls_port: Some(8443), ..sample() }, "--tls-port", 8443),
            (with_tcp("15020-15030"), "--tcp-ports", 15020),
            (IstioConfig { http_port: 15021, ..sample() }, "--http-port", 15021),
        ] {
            let err = config.check().unwrap_err();
            assert!(err.contains(&format!("{flag} {port}")) && err.contains("--allow-istio-ports"), "{err}");
            assert_eq!(IstioConfig { allow_istio_ports: true, ..config }.check(), Ok(()));
        }
        assert_eq!(with_tcp("14990-14999,15100-15110").check(), Ok(()), "just outside Istio's range");
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
