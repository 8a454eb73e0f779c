//! The route sets benchmarks run on, as the manifests a user would write, and the same routes as a native Envoy
//! `route_config` (the ceiling Berth is compared with), generated from the table the controller compiled.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use berth_table::{Backend, PathMatch, Table};
use berth_tests::manifests::{self, ManifestDir, Rule};
use serde_json::{Value, json};

/// How many Ingresses go in one file: big enough to keep the directory small, small enough that a file is not
/// the whole table.
const PER_FILE: usize = 1_000;

/// The host of route `i` of a set.
pub fn host(set: &str, i: usize) -> String {
    format!("{set}-{i}.bench.example")
}

/// The Node, the IngressClass and one NodePort Service per backend (`svc-0`, `svc-1`, ..).
pub fn write_cluster(dir: &ManifestDir, backends: &[SocketAddr]) {
    let mut yaml = format!("{}---\n{}", manifests::node("bench-node", "127.0.0.1"), manifests::ingress_class());
    for (i, backend) in backends.iter().enumerate() {
        yaml.push_str("---\n");
        yaml.push_str(&manifests::node_port_service(&format!("svc-{i}"), 80, backend.port()));
    }
    dir.write("cluster.yaml", &yaml);
}

/// `count` Ingresses, one host each (`<set>-<i>.bench.example`, every path), spread over the Services, in files
/// `<set>-NNN.yaml`. Returns the file names.
pub fn write_hosts(dir: &ManifestDir, set: &str, count: usize, services: usize) -> Vec<String> {
    let mut files = Vec::new();
    for (chunk, first) in (0..count).step_by(PER_FILE).enumerate() {
        let documents: Vec<String> = (first..count.min(first + PER_FILE)).map(|i| ingress(set, i, services)).collect();
        let file = format!("{set}-{chunk:03}.yaml");
        dir.write(&file, &documents.join("---\n"));
        files.push(file);
    }
    files
}

/// One Ingress for route `i` of `set`.
pub fn ingress(set: &str, i: usize, services: usize) -> String {
    let host = host(set, i);
    let service = format!("svc-{}", i % services.max(1));
    manifests::ingress(&format!("{set}-{i}"), &[Rule(&host, "/", "Prefix", &service, 80)])
}

/// A host's routes: index in the table, path, backends.
type HostRoutes<'a> = Vec<(usize, &'a PathMatch, &'a [Backend])>;

/// Envoy's own routing for `table`'s HTTP routes: a virtual host per host, routes in Berth's precedence order (an
/// exact path first, then longer prefixes first, ties in table order), and one static cluster per distinct set
/// of endpoints. Returns `(route_config, clusters)`.
pub fn native_routes(table: &Table) -> (Value, Vec<Value>) {
    let mut clusters: BTreeMap<Vec<SocketAddr>, String> = BTreeMap::new();
    let mut by_host: Vec<(String, HostRoutes<'_>)> = Vec::new();
    for (index, route) in table.http.iter().enumerate() {
        let entry = match by_host.iter().position(|(host, _)| *host == route.host) {
            Some(at) => &mut by_host[at].1,
            None => {
                by_host.push((route.host.clone(), Vec::new()));
                let last = by_host.len() - 1;
                &mut by_host[last].1
            }
        };
        entry.push((index, &route.path, &route.backends));
    }
    let mut virtual_hosts = Vec::new();
    for (host, mut routes) in by_host {
        routes.sort_by_key(|(index, path, _)| match path {
            PathMatch::Exact(_) => (0, 0, *index),
            other => (1, usize::MAX - other.as_str().len(), *index),
        });
        let routes: Vec<Value> = routes
            .into_iter()
            .map(|(_, path, backends)| json!({ "match": path_match(path), "route": destination(backends, &mut clusters) }))
            .collect();
        virtual_hosts.push(json!({ "name": host, "domains": [host], "routes": routes }));
    }
    let clusters = clusters.into_iter().map(|(endpoints, name)| static_cluster(&name, &endpoints)).collect();
    (json!({ "name": "native", "virtual_hosts": virtual_hosts }), clusters)
}

fn static_cluster(name: &str, endpoints: &[SocketAddr]) -> Value {
    let lb_endpoints: Vec<Value> =
        endpoints.iter().map(|e| json!({ "endpoint": { "address": socket_address(*e) } })).collect();
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": lb_endpoints }] },
    })
}

fn path_match(path: &PathMatch) -> Value {
    match path {
        PathMatch::Exact(p) => json!({ "path": p }),
        PathMatch::Prefix(p) => json!({ "prefix": p }),
        PathMatch::Segments(p) => match p.trim_end_matches('/') {
            "" => json!({ "prefix": "/" }),
            trimmed => json!({ "path_separated_prefix": trimmed }),
        },
    }
}

fn destination(backends: &[Backend], clusters: &mut BTreeMap<Vec<SocketAddr>, String>) -> Value {
    let mut cluster_of = |backend: &Backend| {
        let endpoints: Vec<SocketAddr> = backend.endpoints.iter().map(|e| e.address).collect();
        let next = format!("native_{}", clusters.len());
        clusters.entry(endpoints).or_insert(next).clone()
    };
    let live: Vec<&Backend> = backends.iter().filter(|b| !b.endpoints.is_empty()).collect();
    match live.as_slice() {
        [] => json!({ "cluster": "native_none" }),
        [only] => json!({ "cluster": cluster_of(only), "timeout": "0s" }),
        several => {
            let weighted: Vec<Value> =
                several.iter().map(|b| json!({ "name": cluster_of(b), "weight": b.weight.max(1) })).collect();
            json!({ "weighted_clusters": { "clusters": weighted }, "timeout": "0s" })
        }
    }
}

/// Turns Berth's rendered config (`berth envoy-config`, its LDS and CDS resources folded in as static ones by
/// [`berth_tests::envoy::static_equivalent`], as YAML) into the native one: the same listener and
/// connection-manager settings, with Envoy's own `route_config` instead of the filter, no fetcher, and the
/// clusters the routes name. HTTP listener on `http`, admin on `admin`; any TCP listener is dropped.
pub fn native_bootstrap(
    berth_yaml: &str,
    table: &Table,
    http: SocketAddr,
    admin: SocketAddr,
) -> anyhow::Result<String> {
    let mut bootstrap = one_listener(berth_yaml, admin, "berth_http", "native_http", http)?;
    let (route_config, clusters) = native_routes(table);
    let resources = &mut bootstrap["static_resources"];
    let hcm = &mut resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["stat_prefix"] = json!("native_http");
    hcm["route_config"] = route_config;
    let filters = hcm["http_filters"].as_array_mut().ok_or_else(|| anyhow::anyhow!("no http_filters"))?;
    filters.retain(|f| f["name"] == "envoy.filters.http.router");
    let all = resources["clusters"].as_array_mut().ok_or_else(|| anyhow::anyhow!("no clusters"))?;
    all.retain(|c| c["name"] != "berth_controller");
    all.extend(clusters);
    Ok(serde_yaml::to_string(&bootstrap)?)
}

/// Berth's rendered bootstrap with a plain `tcp_proxy` listener on `port` to `backend` instead of the filter's:
/// the TCP ceiling. Admin on `admin`; no HTTP listener, no fetcher.
pub fn native_tcp_bootstrap(
    berth_yaml: &str,
    port: SocketAddr,
    backend: SocketAddr,
    admin: SocketAddr,
) -> anyhow::Result<String> {
    let mut bootstrap = one_listener(berth_yaml, admin, "berth_tcp", "native_tcp", port)?;
    let resources = &mut bootstrap["static_resources"];
    let listener = &mut resources["listeners"][0];
    if let Some(object) = listener.as_object_mut() {
        object.remove("additional_addresses");
    }
    let filters =
        listener["filter_chains"][0]["filters"].as_array_mut().ok_or_else(|| anyhow::anyhow!("no filters"))?;
    filters.retain(|f| f["name"] == "envoy.filters.network.tcp_proxy");
    filters[0]["typed_config"]["cluster"] = json!("native_tcp");
    filters[0]["typed_config"]["stat_prefix"] = json!("native_tcp");
    resources["clusters"] = json!([static_cluster("native_tcp", &[backend])]);
    Ok(serde_yaml::to_string(&bootstrap)?)
}

/// Berth's rendered bootstrap with admin on `admin`, without the fetcher, and with only its listener `keep`,
/// renamed `name` and moved to `address`: the base of a native bootstrap.
fn one_listener(
    berth_yaml: &str,
    admin: SocketAddr,
    keep: &str,
    name: &str,
    address: SocketAddr,
) -> anyhow::Result<Value> {
    let mut bootstrap: Value = serde_yaml::from_str(berth_yaml)?;
    bootstrap["admin"]["address"] = socket_address(admin);
    if let Some(object) = bootstrap.as_object_mut() {
        object.remove("bootstrap_extensions");
    }
    let listeners =
        bootstrap["static_resources"]["listeners"].as_array_mut().ok_or_else(|| anyhow::anyhow!("no listeners"))?;
    listeners.retain(|l| l["name"] == keep);
    let listener = listeners.first_mut().ok_or_else(|| anyhow::anyhow!("no {keep} listener"))?;
    listener["name"] = json!(name);
    listener["address"] = socket_address(address);
    Ok(bootstrap)
}

fn socket_address(address: SocketAddr) -> Value {
    json!({ "socket_address": { "address": address.ip().to_string(), "port_value": address.port() } })
}

/// `loopback:port`, for the tests' addresses.
#[cfg(test)]
pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// What `berth envoy-config` renders with an HTTP listener and a TCP port (31000), written under `work`: the input
/// of the bootstraps the tests derive.
#[cfg(test)]
pub fn rendered_bootstrap(work: &std::path::Path) -> String {
    let config = berth_tests::envoy::render(addr(7070), addr(8080), addr(9901), work, &["--tcp-ports=31000".into()]);
    serde_yaml::to_string(&berth_tests::envoy::static_equivalent(&config)).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_table::{Endpoint, HttpRoute, Source};

    fn route(host: &str, path: PathMatch, ports: &[u16]) -> HttpRoute {
        HttpRoute {
            host: host.into(),
            path,
            backends: vec![Backend {
                service: "s".into(),
                weight: 1,
                endpoints: ports.iter().map(|p| Endpoint { address: ([127, 0, 0, 1], *p).into() }).collect(),
            }],
            source: Source { kind: "Ingress".into(), namespace: "default".into(), name: "x".into() },
            session_cookie: None,
            policy: None,
        }
    }

    /// The generated bootstraps are ones Envoy accepts (the benchmark would otherwise fail only when run).
    #[test]
    fn native_bootstraps_validate_in_envoy() {
        let work = tempfile::tempdir().unwrap();
        let rendered = rendered_bootstrap(work.path());
        let mut table = Table::new(1);
        table.http.push(route("a.example", PathMatch::Segments("/api".into()), &[1, 2]));
        table.http.push(route("*.b.example", PathMatch::Exact("/x".into()), &[3]));
        let native = native_bootstrap(&rendered, &table, addr(8081), addr(9902)).unwrap();
        let tcp = native_tcp_bootstrap(&rendered, addr(31001), addr(7), addr(9903)).unwrap();
        for (name, yaml) in [("native.yaml", native), ("native-tcp.yaml", tcp)] {
            let file = work.path().join(name);
            std::fs::write(&file, &yaml).unwrap();
            assert_eq!(berth_tests::envoy::validate(&file), Ok(()), "{yaml}");
        }
    }

    #[test]
    fn native_routes_keep_berths_precedence_and_share_clusters() {
        let mut table = Table::new(1);
        table.http.push(route("a.example", PathMatch::Prefix("/".into()), &[1]));
        table.http.push(route("a.example", PathMatch::Segments("/api/".into()), &[2]));
        table.http.push(route("a.example", PathMatch::Exact("/x".into()), &[1]));
        table.http.push(route("b.example", PathMatch::Prefix("/".into()), &[1]));
        let (config, clusters) = native_routes(&table);
        let hosts = config["virtual_hosts"].as_array().unwrap();
        assert_eq!(hosts.len(), 2);
        let routes = hosts[0]["routes"].as_array().unwrap();
        assert_eq!(routes[0]["match"], json!({ "path": "/x" }));
        assert_eq!(routes[1]["match"], json!({ "path_separated_prefix": "/api" }));
        assert_eq!(routes[2]["match"], json!({ "prefix": "/" }));
        assert_eq!(clusters.len(), 2, "one cluster per distinct endpoint set");
        assert_eq!(routes[2]["route"]["cluster"], hosts[1]["routes"][0]["route"]["cluster"]);
    }
}
