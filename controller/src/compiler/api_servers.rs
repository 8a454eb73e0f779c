//! `--api-domain D`: each remote cluster's API server as a TLS passthrough route `<cluster>.D`, so that
//! `kubectl --server https://alpha.D` reaches cluster alpha through Envoy, which never sees inside the TLS (the API
//! server presents its own certificate, and the client authenticates to it as it would directly).
//!
//! These routes are the operator's, not any object's: they are claimed before every VirtualService, and a
//! VirtualService asking for the same server name gets an error naming the cluster (see [`super::conflicts`]).

use std::net::SocketAddr;

use berth_table::{Backend, Endpoint, Source, TlsRoute};

use super::conflicts::Reserved;

/// Where each remote cluster's API server is, and the domain they are reached under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiServers {
    /// None: no `--api-domain`, no routes.
    pub domain: Option<String>,
    /// By cluster name; a cluster whose server could not be resolved to an address is left out.
    pub servers: Vec<ApiServer>,
}

/// One remote cluster's API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServer {
    pub cluster: String,
    /// The Secret the cluster comes from, `berth-system/kubeconfig-alpha-1a2b`: the route's source.
    pub secret: (String, String),
    /// The kubeconfig's server, resolved by the controller.
    pub address: SocketAddr,
}

impl ApiServers {
    /// The server name of `cluster`'s API server: `alpha.k8s.example.com`.
    pub fn server_name(domain: &str, cluster: &str) -> String {
        format!("{cluster}.{}", domain.trim_end_matches('.').to_ascii_lowercase())
    }

    /// One tls route per API server, in cluster order; none without a domain.
    pub fn routes(&self) -> Vec<Reserved> {
        let Some(domain) = &self.domain else { return Vec::new() };
        let mut servers: Vec<&ApiServer> = self.servers.iter().collect();
        servers.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        servers
            .into_iter()
            .map(|server| {
                let (namespace, name) = &server.secret;
                let route = TlsRoute {
                    sni: Self::server_name(domain, &server.cluster),
                    backends: vec![Backend {
                        service: format!("API server of cluster {}", server.cluster),
                        weight: 100,
                        endpoints: vec![Endpoint { address: server.address }],
                    }],
                    source: Source { kind: "Secret".to_string(), namespace: namespace.clone(), name: name.clone() },
                };
                let owner = format!(
                    "the API server of cluster {} (Secret {namespace}/{name}, berth run --api-domain {domain})",
                    server.cluster
                );
                Reserved { route, owner }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(cluster: &str, port: u16) -> ApiServer {
        ApiServer {
            cluster: cluster.into(),
            secret: ("berth-system".into(), format!("kubeconfig-{cluster}-1a2b")),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    #[test]
    fn each_remote_api_server_is_a_tls_route_under_the_domain() {
        let servers = ApiServers {
            domain: Some("K8s.Example.com.".into()),
            servers: vec![server("beta", 2), server("alpha", 1)],
        };
        let routes = servers.routes();
        let names: Vec<&str> = routes.iter().map(|r| r.route.sni.as_str()).collect();
        assert_eq!(names, ["alpha.k8s.example.com", "beta.k8s.example.com"]);
        assert_eq!(routes[0].route.backends[0].endpoints[0].address.port(), 1);
        assert_eq!(routes[0].route.source.to_string(), "Secret berth-system/kubeconfig-alpha-1a2b");
        assert!(routes[0].owner.contains("cluster alpha"), "{}", routes[0].owner);
        assert!(ApiServers { domain: None, ..servers }.routes().is_empty(), "no --api-domain, no routes");
    }
}
