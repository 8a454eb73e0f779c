//! Compiler tests for many clusters: each object resolves within its own cluster, and claims are settled across
//! clusters oldest first, the loser told who won, with the winner's cluster.

use std::net::SocketAddr;

use super::*;
use crate::index::SourceId;

/// An index of the local cluster's `local` objects and each remote cluster's, in that order.
fn index_of_clusters(local: Vec<Object>, remote: Vec<(&str, Vec<Object>)>) -> Index {
    let mut index = index_of(local);
    for (cluster, objects) in remote {
        let objects = objects.into_iter().map(|o| (o, None)).collect();
        index.reset(SourceId::new(cluster, "test"), objects, vec![]);
    }
    index
}

fn web(name: &str, host: &str, service: &str, at: &str) -> Object {
    created(mk_vs("default", name, &[host], vec![vs_rule(&[], &[(service, Some(8080), None)])]), at)
}

#[test]
fn a_route_resolves_within_its_own_cluster() {
    // Only alpha has service "alpha-only"; both have service1, at different node ports on different nodes.
    let alpha = vec![
        mk_ready_node("alpha-node", "10.0.0.1"),
        mk_service("default", "service1", &[("http", 8080, 31111)]),
        mk_service("default", "alpha-only", &[("http", 8080, 31112)]),
        web("a", "a.com", "service1", "2024-01-01T00:00:00Z"),
        web("b", "b.com", "alpha-only", "2024-01-01T00:00:00Z"),
    ];
    let local = plus(cluster(), [web("c", "c.com", "alpha-only", "2024-01-01T00:00:00Z")]);
    let compiled = compile(&index_of_clusters(local, vec![("alpha", alpha)]), &Options::default(), &HeldPorts::new());
    assert_eq!(
        routes(&compiled),
        [
            "a.com prefix / → alpha/default/service1:8080@100=[10.0.0.1:31111] (VirtualService alpha/default/a)",
            "b.com prefix / → alpha/default/alpha-only:8080@100=[10.0.0.1:31112] (VirtualService alpha/default/b)",
        ]
    );
    let errors = errors(&compiled);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("VirtualService default/c") && errors[0].contains("\"alpha-only\" not found"));
}

#[test]
fn a_host_claimed_in_two_clusters_goes_to_the_oldest_and_the_loser_names_it() {
    let alpha = vec![
        mk_ready_node("n", "10.0.0.1"),
        mk_service("default", "service1", &[("http", 8080, 31111)]),
        web("web", "shared.com", "service1", "2024-01-01T00:00:00Z"),
    ];
    let local = plus(cluster(), [web("web", "shared.com", "service1", "2024-06-01T00:00:00Z")]);
    let compiled = compile(&index_of_clusters(local, vec![("alpha", alpha)]), &Options::default(), &HeldPorts::new());
    assert_eq!(compiled.content.http.len(), 1);
    assert_eq!(compiled.content.http[0].source.to_string(), "VirtualService alpha/default/web");
    assert_eq!(
        errors(&compiled),
        ["web.yaml: VirtualService default/web: spec.http[0]: host shared.com path prefix / is already routed by \
          VirtualService alpha/default/web, which is older; this object is not served until the conflict is removed \
          from one of them"]
    );
}

#[test]
fn a_tie_in_age_goes_the_same_way_whatever_order_the_clusters_came_in() {
    let same = "2024-01-01T00:00:00Z";
    let objects = |name: &str| {
        vec![
            mk_ready_node("n", "10.0.0.1"),
            mk_service("default", "service1", &[("http", 8080, 31111)]),
            web(name, "shared.com", "service1", same),
        ]
    };
    for order in [["beta", "alpha"], ["alpha", "beta"]] {
        let index = index_of_clusters(vec![], order.iter().map(|c| (*c, objects("web"))).collect());
        let compiled = compile(&index, &Options::default(), &HeldPorts::new());
        assert_eq!(compiled.content.http[0].source.to_string(), "VirtualService alpha/default/web", "{order:?}");
    }
}

#[test]
fn tcp_ports_come_from_one_space_and_a_port_recorded_twice_stays_with_the_older() {
    let alpha_db = created(mk_tcp_vs("default", "db", &[("mysql", 3306)]), "2024-01-01T00:00:00Z");
    let alpha =
        vec![mk_ready_node("n", "10.0.0.1"), mk_service("default", "mysql", &[("mysql", 3306, 30306)]), alpha_db];
    let local_db = created(mk_tcp_vs("default", "db", &[("mysql", 3306)]), "2024-06-01T00:00:00Z");
    let index = index_of_clusters(plus(tcp_cluster(), [local_db]), vec![("alpha", alpha)]);

    let fresh = compile(&index, &Options::default(), &HeldPorts::new());
    assert_eq!(errors_only(&fresh), Vec::<String>::new());
    assert_eq!(
        tcp(&fresh),
        [
            "31000 → alpha/default/mysql:3306 → 10.0.0.1:30306 (VirtualService alpha/default/db)",
            "31001 → default/mysql:3306 → 127.0.0.1:30306 (VirtualService default/db)",
        ]
    );

    // Both record 31000 (each was given it before the clusters met): the older keeps it, the younger is not
    // served and keeps its record, and says who has the port.
    let held = HeldPorts::from([
        ("VirtualService alpha/default/db tcp[0]".into(), 31000),
        ("VirtualService default/db tcp[0]".into(), 31000),
    ]);
    let contested = compile(&index, &Options::default(), &held);
    assert_eq!(
        tcp(&contested),
        ["31000 → alpha/default/mysql:3306 → 10.0.0.1:30306 (VirtualService alpha/default/db)"]
    );
    let errors = errors_only(&contested);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("db.yaml: VirtualService default/db: spec.tcp[0]: port 31000"), "{}", errors[0]);
    assert!(errors[0].contains("also held by VirtualService alpha/default/db tcp[0], which is older"), "{}", errors[0]);
    assert_eq!(contested.assignments["VirtualService default/db tcp[0]"].port, 31000, "its record stays");
}

#[test]
fn each_api_server_is_a_tls_route_and_a_virtual_service_cannot_take_its_name() {
    let vs = {
        let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: sneaky\n  namespace: \
                    default\n  annotations:\n    berth.dev/expose: \"true\"\nspec:\n  hosts: [\"*.k8s.example.com\"]\n  \
                    tls:\n  - match:\n    - sniHosts: [alpha.k8s.example.com]\n    route:\n    - destination:\n        \
                    host: service1\n        port: {number: 8080}\n";
        crate::objects::parse_yaml(std::path::Path::new("sneaky.yaml"), text).objects.remove(0)
    };
    let options = Options {
        api_servers: api_servers::ApiServers {
            domain: Some("k8s.example.com".into()),
            servers: vec![api_servers::ApiServer {
                cluster: "alpha".into(),
                secret: ("berth-system".into(), "kubeconfig-alpha-1a2b".into()),
                address: SocketAddr::from(([10, 0, 0, 9], 6443)),
            }],
        },
        ..Options::default()
    };
    let compiled = compile(&index_of(plus(cluster(), [vs])), &options, &HeldPorts::new());
    let tls: Vec<String> = compiled.content.tls.iter().map(|r| format!("{} ({})", r.sni, r.source)).collect();
    assert_eq!(tls, ["alpha.k8s.example.com (Secret berth-system/kubeconfig-alpha-1a2b)"]);
    assert_eq!(compiled.content.tls[0].backends[0].endpoints[0].address, SocketAddr::from(([10, 0, 0, 9], 6443)));
    let errors = errors(&compiled);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .contains("tls server name alpha.k8s.example.com is already routed to the API server of cluster alpha"),
        "{}",
        errors[0]
    );
}
