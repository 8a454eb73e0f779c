//! Compiler tests: objects built with small helpers, compiled, and the table and diagnostics asserted.

use std::collections::BTreeMap;

use berth_table::PathMatch;
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;
use crate::objects::{Destination, HttpMatch, HttpRule, PortSelector, RouteDestination, StringMatch, VirtualService};

mod clusters;
mod tls;

// ---- builders ----

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta { namespace: ns.map(Into::into), name: Some(name.into()), ..Default::default() }
}

/// A NodePort Service with `(port name, port, nodePort)` ports.
fn mk_service(ns: &str, name: &str, ports: &[(&str, i32, i32)]) -> Object {
    let ports = ports
        .iter()
        .map(|(port_name, port, node_port)| ServicePort {
            name: Some(port_name.to_string()),
            port: *port,
            node_port: Some(*node_port),
            ..Default::default()
        })
        .collect();
    Object::Service(Service {
        metadata: meta(Some(ns), name),
        spec: Some(ServiceSpec { type_: Some("NodePort".into()), ports: Some(ports), ..Default::default() }),
        ..Default::default()
    })
}

fn with_type(mut object: Object, type_: &str) -> Object {
    if let Object::Service(service) = &mut object {
        service.spec.as_mut().unwrap().type_ = Some(type_.into());
    }
    object
}

fn annotated(mut object: Object, key: &str, value: &str) -> Object {
    object.metadata_mut().annotations.get_or_insert_with(BTreeMap::new).insert(key.into(), value.into());
    object
}

fn created(mut object: Object, at: &str) -> Object {
    object.metadata_mut().creation_timestamp = Some(Time(at.parse().unwrap()));
    object
}

fn mk_node(name: &str, addresses: &[(&str, &str)], ready: bool) -> Object {
    Object::Node(Node {
        metadata: meta(None, name),
        status: Some(NodeStatus {
            addresses: Some(
                addresses.iter().map(|(t, a)| NodeAddress { type_: t.to_string(), address: a.to_string() }).collect(),
            ),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn mk_ready_node(name: &str, ip: &str) -> Object {
    mk_node(name, &[("InternalIP", ip)], true)
}

/// An EndpointSlice of `service` with one port and `(address, ready)` endpoints.
fn mk_slice(ns: &str, name: &str, service: &str, port: (&str, i32), endpoints: &[(&str, Option<bool>)]) -> Object {
    let mut metadata = meta(Some(ns), name);
    metadata.labels = Some(BTreeMap::from([("kubernetes.io/service-name".into(), service.into())]));
    Object::EndpointSlice(EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints: endpoints
            .iter()
            .map(|(address, ready)| Endpoint {
                addresses: vec![address.to_string()],
                conditions: Some(EndpointConditions { ready: *ready, ..Default::default() }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort { name: Some(port.0.into()), port: Some(port.1), ..Default::default() }]),
    })
}

fn mk_class(name: &str, controller: &str) -> Object {
    Object::IngressClass(IngressClass {
        metadata: meta(None, name),
        spec: Some(IngressClassSpec { controller: Some(controller.into()), ..Default::default() }),
    })
}

fn berth_class() -> Object {
    mk_class("berth", CONTROLLER)
}

fn backend(service: &str, port: i32) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.into(),
            port: Some(ServiceBackendPort { number: Some(port), name: None }),
        }),
        resource: None,
    }
}

/// An Ingress of class `class` with one rule per `(host, path, pathType, service, port)`.
fn mk_ingress(ns: &str, name: &str, class: Option<&str>, paths: &[(&str, &str, &str, &str, i32)]) -> Object {
    let rules = paths
        .iter()
        .map(|(host, path, path_type, service, port)| IngressRule {
            host: (!host.is_empty()).then(|| host.to_string()),
            http: Some(HTTPIngressRuleValue {
                paths: vec![HTTPIngressPath {
                    path: (!path.is_empty()).then(|| path.to_string()),
                    path_type: path_type.to_string(),
                    backend: backend(service, *port),
                }],
            }),
        })
        .collect();
    Object::Ingress(Ingress {
        metadata: meta(Some(ns), name),
        spec: Some(IngressSpec { ingress_class_name: class.map(Into::into), rules: Some(rules), ..Default::default() }),
        ..Default::default()
    })
}

fn with_default_backend(mut object: Object, service: &str, port: i32) -> Object {
    if let Object::Ingress(ingress) = &mut object {
        ingress.spec.as_mut().unwrap().default_backend = Some(backend(service, port));
    }
    object
}

/// An exposed VirtualService.
fn mk_vs(ns: &str, name: &str, hosts: &[&str], http: Vec<HttpRule>) -> Object {
    let vs = VirtualService {
        metadata: meta(Some(ns), name),
        spec: crate::objects::VirtualServiceSpec {
            hosts: hosts.iter().map(ToString::to_string).collect(),
            http,
            tcp: vec![],
            ..Default::default()
        },
    };
    annotated(Object::VirtualService(vs), EXPOSE_ANNOTATION, "true")
}

enum Uri<'a> {
    Prefix(&'a str),
    Exact(&'a str),
    Regex(&'a str),
}

/// One `http` entry: its `uri` matches and its `(destination host, port, weight)` routes.
fn vs_rule(matches: &[Uri<'_>], routes: &[(&str, Option<u32>, Option<i32>)]) -> HttpRule {
    HttpRule {
        matches: matches
            .iter()
            .map(|uri| {
                let mut m = StringMatch::default();
                match uri {
                    Uri::Prefix(p) => m.prefix = Some(p.to_string()),
                    Uri::Exact(p) => m.exact = Some(p.to_string()),
                    Uri::Regex(p) => m.regex = Some(p.to_string()),
                }
                HttpMatch { uri: Some(m), ..Default::default() }
            })
            .collect(),
        route: routes
            .iter()
            .map(|(host, port, weight)| RouteDestination {
                destination: Destination {
                    host: host.to_string(),
                    subset: None,
                    port: port.map(|number| PortSelector { number }),
                },
                weight: *weight,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// An index holding `objects` as if read from one file each, named after the object, in this order.
fn index_of(objects: Vec<Object>) -> Index {
    let mut index = Index::new();
    let objects = objects
        .into_iter()
        .map(|o| {
            let file = format!("{}.yaml", o.key().name);
            (o, Some(file.into()))
        })
        .collect();
    index.reset("test", objects, vec![]);
    index
}

fn compile_all(objects: Vec<Object>) -> Compiled {
    compile(&index_of(objects), &Options::default(), &HeldPorts::new())
}

/// `host path → backends` lines, for compact assertions.
fn routes(compiled: &Compiled) -> Vec<String> {
    compiled
        .content
        .http
        .iter()
        .map(|r| {
            let backends: Vec<String> = r
                .backends
                .iter()
                .map(|b| {
                    let endpoints: Vec<String> = b.endpoints.iter().map(|e| e.address.to_string()).collect();
                    format!("{}@{}=[{}]", b.service, b.weight, endpoints.join(","))
                })
                .collect();
            format!("{} {} → {} ({})", r.host, r.path, backends.join(" "), r.source)
        })
        .collect()
}

fn errors(compiled: &Compiled) -> Vec<String> {
    compiled.diagnostics.iter().map(ToString::to_string).collect()
}

/// The demo's cluster: one ready node on loopback and two NodePort services.
fn cluster() -> Vec<Object> {
    vec![
        mk_ready_node("node", "127.0.0.1"),
        berth_class(),
        mk_service("default", "service1", &[("http", 8080, 30081)]),
        mk_service("default", "service2", &[("http", 9090, 30082)]),
    ]
}

fn plus(mut objects: Vec<Object>, more: impl IntoIterator<Item = Object>) -> Vec<Object> {
    objects.extend(more);
    objects
}

// ---- the demo ----

#[test]
fn the_examples_compile_to_the_demo_routes() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let compiled = crate::commands::check::compile_path(&examples, &Options::default(), &HeldPorts::new()).unwrap();
    assert_eq!(errors(&compiled), Vec::<String>::new());
    assert_eq!(
        routes(&compiled),
        [
            "website8080.com segments / → default/service1:8080@100=[127.0.0.1:30081] (Ingress default/websites)",
            "website9090.com segments / → default/service2:9090@100=[127.0.0.1:30082] (Ingress default/websites)",
            "website.com prefix /eightyeighty → default/service1:8080@100=[127.0.0.1:30081] \
             (VirtualService default/website)",
            "website.com prefix /ninetyninety → default/service2:9090@100=[127.0.0.1:30082] \
             (VirtualService default/website)",
        ]
    );
    let default = compiled.content.default_backend.as_ref().unwrap();
    assert_eq!(default.backends[0].service, "default/default-http-backend:80");
    assert_eq!(default.backends[0].endpoints[0].address, "127.0.0.1:30404".parse().unwrap());
    assert_eq!(default.source.to_string(), "Ingress default/websites");

    // And the matcher routes the demo's requests where the demo says.
    let table = compiled.content.to_table(1);
    let router = berth_table::HttpRouter::new(&table);
    let port_of = |host: &str, path: &str| {
        router.match_http(host, path).map(|id| table.http[id.0].backends[0].endpoints[0].address.port())
    };
    assert_eq!(port_of("website8080.com", "/anything"), Some(30081));
    assert_eq!(port_of("website9090.com", "/"), Some(30082));
    assert_eq!(port_of("website.com", "/eightyeighty"), Some(30081));
    assert_eq!(port_of("website.com", "/ninetyninety/x"), Some(30082));
    assert_eq!(port_of("website.com", "/other"), None);
}

// ---- Ingress class selection ----

#[test]
fn ingresses_of_berths_class_are_served_and_others_are_left_alone() {
    let compiled = compile_all(plus(
        cluster(),
        [
            mk_class("nginx", "k8s.io/ingress-nginx"),
            mk_ingress("default", "ours", Some("berth"), &[("a.com", "/", "Prefix", "service1", 8080)]),
            mk_ingress("default", "nginx", Some("nginx"), &[("b.com", "/", "Prefix", "service1", 8080)]),
            mk_ingress("default", "unknown", Some("nope"), &[("c.com", "/", "Prefix", "service1", 8080)]),
            mk_ingress("default", "none", None, &[("d.com", "/", "Prefix", "service1", 8080)]),
        ],
    ));
    assert_eq!(errors(&compiled), Vec::<String>::new());
    let hosts: Vec<&str> = compiled.content.http.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(hosts, ["a.com"], "an Ingress without class waits for a default class");
}

#[test]
fn a_default_class_takes_ingresses_without_a_class() {
    let class = annotated(mk_class("berth-default", CONTROLLER), "ingressclass.kubernetes.io/is-default-class", "true");
    let compiled = compile_all(plus(
        cluster(),
        [class, mk_ingress("default", "none", None, &[("d.com", "/", "Prefix", "service1", 8080)])],
    ));
    let hosts: Vec<&str> = compiled.content.http.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(hosts, ["d.com"]);
}

#[test]
fn the_legacy_class_annotation_is_honoured() {
    let legacy = |class: &str, host: &str| {
        annotated(
            mk_ingress("default", host, None, &[(host, "/", "Prefix", "service1", 8080)]),
            "kubernetes.io/ingress.class",
            class,
        )
    };
    let compiled = compile_all(plus(cluster(), [legacy("berth", "a.com"), legacy("nginx", "b.com")]));
    let hosts: Vec<&str> = compiled.content.http.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(hosts, ["a.com"]);
}

// ---- Ingress paths and hosts ----

#[test]
fn ingress_path_types_and_hosts() {
    let compiled = compile_all(plus(
        cluster(),
        [mk_ingress(
            "default",
            "paths",
            Some("berth"),
            &[
                ("Shop.Example.COM", "/cart", "Exact", "service1", 8080),
                ("shop.example.com", "/app/", "Prefix", "service1", 8080),
                ("shop.example.com", "/", "Prefix", "service1", 8080),
                ("shop.example.com", "/legacy", "ImplementationSpecific", "service1", 8080),
                ("*.example.com", "", "Prefix", "service2", 9090),
                ("", "/any", "Prefix", "service2", 9090),
            ],
        )],
    ));
    assert_eq!(errors(&compiled), Vec::<String>::new());
    let paths: Vec<(String, PathMatch)> =
        compiled.content.http.iter().map(|r| (r.host.clone(), r.path.clone())).collect();
    assert_eq!(
        paths,
        [
            ("shop.example.com".into(), PathMatch::Exact("/cart".into())),
            ("shop.example.com".into(), PathMatch::Segments("/app".into())),
            ("shop.example.com".into(), PathMatch::Segments("/".into())),
            ("shop.example.com".into(), PathMatch::Segments("/legacy".into())),
            ("*.example.com".into(), PathMatch::Segments("/".into())),
            ("*".into(), PathMatch::Segments("/any".into())),
        ]
    );
}

#[test]
fn a_bad_part_of_an_ingress_drops_all_of_it_with_one_diagnostic_per_problem() {
    let compiled = compile_all(plus(
        cluster(),
        [mk_ingress(
            "default",
            "web",
            Some("berth"),
            &[
                ("ok.com", "/", "Prefix", "service1", 8080),
                ("ok.com", "relative", "Prefix", "service1", 8080),
                ("ok.com", "/x", "Regex", "service1", 8080),
                ("ok.com", "/y", "Prefix", "svc9", 8080),
                ("ok.com", "/z", "Prefix", "service1", 8081),
            ],
        )],
    ));
    assert!(compiled.content.http.is_empty(), "{:?}", routes(&compiled));
    assert_eq!(
        errors(&compiled),
        [
            "web.yaml: Ingress default/web: spec.rules[1].http.paths[0].path: \"relative\" must start with \"/\"",
            "web.yaml: Ingress default/web: spec.rules[2].http.paths[0].pathType: \"Regex\" is not a path type; \
             use Exact, Prefix or ImplementationSpecific",
            "web.yaml: Ingress default/web: spec.rules[3].http.paths[0].backend.service.name: service \"svc9\" not \
             found in namespace default",
            "web.yaml: Ingress default/web: spec.rules[4].http.paths[0].backend.service.port: service \
             default/service1 has no port 8081; its ports: 8080 (http)",
        ]
    );
}

#[test]
fn ingress_ports_can_be_named() {
    let mut ingress = mk_ingress("default", "web", Some("berth"), &[("a.com", "/", "Prefix", "service1", 0)]);
    if let Object::Ingress(i) = &mut ingress {
        let rules = i.spec.as_mut().unwrap().rules.as_mut().unwrap();
        let port = rules[0].http.as_mut().unwrap().paths[0].backend.service.as_mut().unwrap().port.as_mut().unwrap();
        *port = ServiceBackendPort { name: Some("http".into()), number: None };
    }
    let compiled = compile_all(plus(cluster(), [ingress]));
    assert_eq!(
        routes(&compiled),
        ["a.com segments / → default/service1:8080@100=[127.0.0.1:30081] (Ingress default/web)"]
    );
}

// ---- VirtualService ----

#[test]
fn virtual_service_prefix_exact_and_catch_all_for_every_host() {
    let compiled = compile_all(plus(
        cluster(),
        [mk_vs(
            "default",
            "web",
            &["A.com", "b.com"],
            vec![
                vs_rule(&[Uri::Prefix("/api"), Uri::Exact("/health")], &[("service1", Some(8080), None)]),
                vs_rule(&[], &[("service2", None, None)]),
            ],
        )],
    ));
    assert_eq!(errors(&compiled), Vec::<String>::new());
    let source = "(VirtualService default/web)";
    let s1 = "default/service1:8080@100=[127.0.0.1:30081]";
    let s2 = "default/service2:9090@100=[127.0.0.1:30082]";
    assert_eq!(
        routes(&compiled),
        [
            format!("a.com prefix /api → {s1} {source}"),
            format!("a.com exact /health → {s1} {source}"),
            format!("a.com prefix / → {s2} {source}"),
            format!("b.com prefix /api → {s1} {source}"),
            format!("b.com exact /health → {s1} {source}"),
            format!("b.com prefix / → {s2} {source}"),
        ]
    );
}

#[test]
fn virtual_services_without_the_expose_annotation_are_ignored() {
    let mut vs = mk_vs("default", "web", &["a.com"], vec![vs_rule(&[], &[("service1", None, None)])]);
    vs.metadata_mut().annotations = None;
    let off = annotated(
        mk_vs("default", "off", &["b.com"], vec![vs_rule(&[], &[("service1", None, None)])]),
        EXPOSE_ANNOTATION,
        "false",
    );
    let compiled = compile_all(plus(cluster(), [vs, off]));
    assert!(compiled.content.http.is_empty() && compiled.diagnostics.is_empty());
}

#[test]
fn an_expose_value_other_than_true_or_false_is_a_warning_and_exposes_nothing() {
    let capital = annotated(
        mk_vs("default", "web", &["a.com"], vec![vs_rule(&[], &[("service1", None, None)])]),
        EXPOSE_ANNOTATION,
        "True",
    );
    let compiled = compile_all(plus(cluster(), [capital]));
    assert!(compiled.content.http.is_empty());
    assert!(errors_only(&compiled).is_empty());
    assert_eq!(
        warnings(&compiled),
        ["web.yaml: VirtualService default/web: metadata.annotations[\"berth.dev/expose\"]: \"True\" is neither \
          \"true\" nor \"false\", so the VirtualService is not exposed; write \"true\" (lower case) to expose it"]
    );
}

#[test]
fn a_routes_rewrite_timeout_retries_and_headers_reach_its_table_routes_and_the_rest_is_warned_about() {
    let mut rule = vs_rule(&[Uri::Prefix("/api"), Uri::Exact("/login")], &[("service1", None, None)]);
    rule.rewrite = Some(crate::objects::Rewrite { uri: Some("/v2".into()), ..Default::default() });
    rule.timeout = Some("2s".into());
    rule.other.insert("mirror".into(), serde_yaml::from_str("{host: shadow}").unwrap());
    let plain = vs_rule(&[Uri::Prefix("/")], &[("service2", None, None)]);
    let compiled = compile_all(plus(cluster(), [mk_vs("default", "web", &["a.com"], vec![rule, plain])]));
    assert!(errors_only(&compiled).is_empty(), "{:?}", errors(&compiled));
    let policies: Vec<String> = compiled
        .content
        .http
        .iter()
        .map(|r| {
            let policy = r.policy.as_ref().map(|p| format!("{:?} {:?}", p.rewrite_uri, p.timeout_ms));
            format!("{} {}", r.path.as_str(), policy.unwrap_or_default())
        })
        .collect();
    assert_eq!(policies, ["/api Some(\"/v2\") Some(2000)", "/login Some(\"/v2\") Some(2000)", "/ "]);
    assert_eq!(
        warnings(&compiled),
        ["web.yaml: VirtualService default/web: spec.http[0].mirror: not supported by berth and ignored: the route \
          is served without it"]
    );
}

#[test]
fn virtual_service_weights_follow_istio() {
    let compiled = compile_all(plus(
        cluster(),
        [mk_vs(
            "default",
            "web",
            &["a.com"],
            vec![
                vs_rule(&[Uri::Prefix("/split")], &[("service1", None, Some(90)), ("service2", None, Some(10))]),
                vs_rule(&[Uri::Prefix("/omitted")], &[("service1", None, Some(100)), ("service2", None, None)]),
                vs_rule(&[Uri::Prefix("/single")], &[("service1", None, None)]),
            ],
        )],
    ));
    assert_eq!(errors(&compiled), Vec::<String>::new());
    let weights: Vec<Vec<u32>> =
        compiled.content.http.iter().map(|r| r.backends.iter().map(|b| b.weight).collect()).collect();
    assert_eq!(weights, [vec![90, 10], vec![100, 0], vec![100]]);
}

#[test]
fn virtual_service_destination_hosts_in_every_form() {
    let objects = plus(
        cluster(),
        [
            mk_service("shop", "cart", &[("http", 80, 30100)]),
            mk_vs(
                "default",
                "web",
                &["a.com"],
                vec![
                    vs_rule(&[Uri::Prefix("/1")], &[("cart.shop", None, None)]),
                    vs_rule(&[Uri::Prefix("/2")], &[("cart.shop.svc.cluster.local", None, None)]),
                    vs_rule(&[Uri::Prefix("/3")], &[("service1.default.svc", None, None)]),
                ],
            ),
        ],
    );
    let compiled = compile_all(objects);
    assert_eq!(errors(&compiled), Vec::<String>::new());
    let services: Vec<&str> = compiled.content.http.iter().map(|r| r.backends[0].service.as_str()).collect();
    assert_eq!(services, ["shop/cart:80", "shop/cart:80", "default/service1:8080"]);
}

#[test]
fn virtual_service_problems_are_reported_field_by_field() {
    let two_ports = mk_service("default", "multi", &[("http", 80, 30200), ("admin", 81, 30201)]);
    let compiled = compile_all(plus(
        cluster(),
        [
            two_ports,
            mk_vs(
                "default",
                "website",
                &["a.com"],
                vec![
                    vs_rule(&[Uri::Regex("/v[0-9]+")], &[("service1", None, None)]),
                    vs_rule(&[Uri::Prefix("/a")], &[("svc9", None, None)]),
                    vs_rule(&[Uri::Prefix("/b")], &[("www.example.com", None, None)]),
                    vs_rule(&[Uri::Prefix("/c")], &[("multi", None, None)]),
                    vs_rule(&[Uri::Prefix("/d")], &[("multi", Some(82), None)]),
                    vs_rule(&[Uri::Prefix("/e")], &[]),
                ],
            ),
        ],
    ));
    assert!(compiled.content.http.is_empty());
    let object = "website.yaml: VirtualService default/website";
    assert_eq!(
        errors(&compiled),
        [
            format!(
                "{object}: spec.http[0].match[0].uri.regex: regular expressions are not supported; use prefix or exact"
            ),
            format!(
                "{object}: spec.http[1].route[0].destination.host: service \"svc9\" not found in namespace default"
            ),
            format!(
                "{object}: spec.http[2].route[0].destination.host: \"www.example.com\" is not a Service of this \
                 cluster; use name, name.namespace or name.namespace.svc.cluster.local"
            ),
            format!(
                "{object}: spec.http[3].route[0].destination.port: service default/multi has several ports \
                 (80 (http), 81 (admin)); name one with port.number"
            ),
            format!(
                "{object}: spec.http[4].route[0].destination.port.number: service default/multi has no port 82; \
                 its ports: 80 (http), 81 (admin)"
            ),
            format!(
                "{object}: spec.http[5].route: no destination; berth needs a route (redirect and directResponse \
                 are not supported)"
            ),
        ]
    );
}

#[test]
fn match_conditions_other_than_uri_are_refused() {
    let mut rule = vs_rule(&[Uri::Prefix("/")], &[("service1", None, None)]);
    rule.matches[0].other.insert("headers".into(), serde_yaml::from_str("{x: {exact: y}}").unwrap());
    let compiled = compile_all(plus(cluster(), [mk_vs("default", "web", &["a.com"], vec![rule])]));
    assert!(compiled.content.http.is_empty());
    assert_eq!(errors(&compiled).len(), 1);
    assert!(errors(&compiled)[0].contains("spec.http[0].match[0].headers: berth matches on uri only"));
}

// ---- backends ----

#[test]
fn node_port_mode_uses_every_ready_node() {
    let compiled = compile_all(vec![
        mk_node("b", &[("InternalIP", "127.0.0.3")], true),
        mk_node("a", &[("ExternalIP", "127.0.0.2"), ("Hostname", "a")], true),
        mk_node("down", &[("InternalIP", "127.0.0.9")], false),
        mk_node("c", &[("InternalIP", "127.0.0.4"), ("ExternalIP", "127.0.0.5")], true),
        berth_class(),
        mk_service("default", "service1", &[("http", 8080, 30081)]),
        with_type(mk_service("default", "lb", &[("http", 80, 30090)]), "LoadBalancer"),
        mk_ingress(
            "default",
            "web",
            Some("berth"),
            &[("a.com", "/", "Prefix", "service1", 8080), ("b.com", "/", "Prefix", "lb", 80)],
        ),
    ]);
    assert_eq!(errors(&compiled), Vec::<String>::new());
    assert_eq!(
        routes(&compiled),
        [
            "a.com segments / → default/service1:8080@100=[127.0.0.2:30081,127.0.0.3:30081,127.0.0.4:30081] \
             (Ingress default/web)",
            "b.com segments / → default/lb:80@100=[127.0.0.2:30090,127.0.0.3:30090,127.0.0.4:30090] \
             (Ingress default/web)",
        ]
    );
}

#[test]
fn node_port_mode_needs_a_node_port() {
    let compiled = compile_all(plus(
        cluster(),
        [
            with_type(mk_service("default", "internal", &[("http", 80, 0)]), "ClusterIP"),
            mk_ingress("default", "web", Some("berth"), &[("a.com", "/", "Prefix", "internal", 80)]),
        ],
    ));
    assert!(compiled.content.http.is_empty());
    let errors = errors(&compiled);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(
            "web.yaml: Ingress default/web: spec.rules[0].http.paths[0].backend.service: service default/internal \
             is of type ClusterIP, which has no node port: make it type NodePort, or annotate"
        ),
        "{errors:?}"
    );
    assert!(errors[0].contains("--backends pods"));
}

#[test]
fn a_service_without_endpoints_still_routes() {
    let compiled = compile_all(vec![
        berth_class(),
        mk_service("default", "service1", &[("http", 8080, 30081)]),
        mk_ingress("default", "web", Some("berth"), &[("a.com", "/", "Prefix", "service1", 8080)]),
    ]);
    assert_eq!(errors(&compiled), Vec::<String>::new());
    assert_eq!(routes(&compiled), ["a.com segments / → default/service1:8080@100=[] (Ingress default/web)"]);
}

fn pod_cluster() -> Vec<Object> {
    vec![
        berth_class(),
        mk_ready_node("node", "127.0.0.1"),
        with_type(mk_service("shop", "web", &[("http", 80, 0), ("metrics", 9090, 0)]), "ClusterIP"),
        mk_slice("shop", "web-1", "web", ("http", 8080), &[("127.0.1.2", Some(true)), ("127.0.1.1", None)]),
        mk_slice("shop", "web-2", "web", ("http", 8080), &[("127.0.1.3", Some(false)), ("127.0.1.4", Some(true))]),
        mk_slice("shop", "web-metrics", "web", ("metrics", 9100), &[("127.0.1.5", Some(true))]),
        mk_slice("shop", "other", "other", ("http", 8080), &[("127.0.1.6", Some(true))]),
        mk_slice("elsewhere", "web", "web", ("http", 8080), &[("127.0.1.7", Some(true))]),
        mk_ingress("shop", "web", Some("berth"), &[("a.com", "/", "Prefix", "web", 80)]),
    ]
}

#[test]
fn pod_mode_uses_ready_endpoints_of_the_services_slices_on_the_named_port() {
    let expected =
        ["a.com segments / → shop/web:80@100=[127.0.1.1:8080,127.0.1.2:8080,127.0.1.4:8080] (Ingress shop/web)"];
    let compiled = compile(
        &index_of(pod_cluster()),
        &Options { backends: BackendMode::Pods, ..Options::default() },
        &HeldPorts::new(),
    );
    assert_eq!(errors(&compiled), Vec::<String>::new());
    assert_eq!(routes(&compiled), expected);

    // The same by the Service's own choice, with the controller in node-port mode.
    let mut objects = pod_cluster();
    objects[2] = annotated(objects[2].clone(), BACKENDS_ANNOTATION, "pods");
    let compiled = compile_all(objects);
    assert_eq!(errors(&compiled), Vec::<String>::new());
    assert_eq!(routes(&compiled), expected);
}

#[test]
fn a_bad_backends_annotation_is_reported() {
    let mut objects = pod_cluster();
    objects[2] = annotated(objects[2].clone(), BACKENDS_ANNOTATION, "endpoints");
    let errors = errors(&compile_all(objects));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("has annotation berth.dev/backends: \"endpoints\" is not a backend mode"), "{errors:?}");
}

// ---- conflicts, age and order ----

#[test]
fn the_older_object_keeps_a_contested_route_and_the_younger_is_skipped_whole() {
    let older = mk_ingress("default", "older", Some("berth"), &[("a.com", "/", "Prefix", "service1", 8080)]);
    let younger = mk_vs(
        "default",
        "younger",
        &["a.com"],
        vec![
            vs_rule(&[Uri::Prefix("/other")], &[("service2", None, None)]),
            vs_rule(&[Uri::Prefix("/x")], &[("service2", None, None)]),
        ],
    );
    let contested = mk_ingress(
        "default",
        "contested",
        Some("berth"),
        &[("a.com", "/elsewhere", "Prefix", "service2", 9090), ("a.com", "/", "Prefix", "service2", 9090)],
    );
    // `younger` claims nothing `older` has (prefix /x is not segments /), so it is served.
    let compiled = compile_all(plus(cluster(), [older, younger, contested]));
    assert_eq!(
        compiled.content.http.iter().map(|r| r.source.name.as_str()).collect::<Vec<_>>(),
        ["older", "younger", "younger"]
    );
    assert_eq!(
        errors(&compiled),
        ["contested.yaml: Ingress default/contested: spec.rules[1].http.paths[0]: host a.com path segments / is \
          already routed by Ingress default/older, which is older; this object is not served until the conflict is \
          removed from one of them"]
    );
}

#[test]
fn creation_timestamps_decide_age_before_the_order_seen() {
    let seen_first = created(
        mk_ingress("default", "seen-first", Some("berth"), &[("a.com", "/", "Prefix", "service1", 8080)]),
        "2024-06-01T00:00:00Z",
    );
    let created_first = created(
        mk_ingress("default", "created-first", Some("berth"), &[("a.com", "/", "Prefix", "service2", 9090)]),
        "2024-01-01T00:00:00Z",
    );
    let no_timestamp = mk_ingress("default", "untimed", Some("berth"), &[("b.com", "/", "Prefix", "service2", 9090)]);
    let compiled = compile_all(plus(cluster(), [no_timestamp, seen_first, created_first]));
    let names: Vec<&str> = compiled.content.http.iter().map(|r| r.source.name.as_str()).collect();
    assert_eq!(names, ["created-first", "untimed"], "timestamped objects are older than untimed ones");
    let errors = errors(&compiled);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("seen-first.yaml: Ingress default/seen-first:"), "{errors:?}");
    assert!(errors[0].contains("already routed by Ingress default/created-first"), "{errors:?}");
}

#[test]
fn an_object_that_fails_claims_nothing() {
    let broken = mk_ingress(
        "default",
        "broken",
        Some("berth"),
        &[("a.com", "/", "Prefix", "service1", 8080), ("a.com", "/b", "Prefix", "missing", 80)],
    );
    let next = mk_ingress("default", "next", Some("berth"), &[("a.com", "/", "Prefix", "service2", 9090)]);
    let compiled = compile_all(plus(cluster(), [broken, next]));
    let names: Vec<&str> = compiled.content.http.iter().map(|r| r.source.name.as_str()).collect();
    assert_eq!(names, ["next"]);
    assert_eq!(errors(&compiled).len(), 1);
}

#[test]
fn repeats_within_one_object_are_not_conflicts() {
    let vs = mk_vs(
        "default",
        "web",
        &["a.com", "A.com"],
        vec![vs_rule(&[Uri::Prefix("/")], &[("service1", None, None)]), vs_rule(&[], &[("service2", None, None)])],
    );
    let compiled = compile_all(plus(cluster(), [vs]));
    assert_eq!(errors(&compiled), Vec::<String>::new());
    assert_eq!(routes(&compiled).len(), 1);
    assert!(routes(&compiled)[0].contains("service1"), "the first listed wins");
}

#[test]
fn the_oldest_default_backend_wins() {
    let first = with_default_backend(mk_ingress("default", "first", Some("berth"), &[]), "service1", 8080);
    let second = with_default_backend(
        mk_ingress("default", "second", Some("berth"), &[("b.com", "/", "Prefix", "service2", 9090)]),
        "service2",
        9090,
    );
    let compiled = compile_all(plus(cluster(), [first, second]));
    let default = compiled.content.default_backend.as_ref().unwrap();
    assert_eq!(default.source.name, "first");
    assert_eq!(default.backends[0].service, "default/service1:8080");
    assert!(compiled.content.http.is_empty(), "the younger Ingress is skipped whole");
    assert_eq!(
        errors(&compiled),
        ["second.yaml: Ingress default/second: spec.defaultBackend: the default backend is already routed by \
          Ingress default/first, which is older; this object is not served until the conflict is removed from one \
          of them"]
    );
}

#[test]
fn compilation_is_deterministic_and_lists_objects_oldest_first() {
    let objects = plus(
        cluster(),
        [
            mk_vs("zeta", "z", &["z.com"], vec![vs_rule(&[], &[("service1.default", None, None)])]),
            mk_ingress("default", "a", Some("berth"), &[("a.com", "/", "Prefix", "service1", 8080)]),
            mk_vs("alpha", "m", &["m.com"], vec![vs_rule(&[], &[("service2.default", None, None)])]),
        ],
    );
    let first = compile_all(objects.clone());
    let second = compile_all(objects);
    assert_eq!(first.content, second.content);
    let hosts: Vec<&str> = first.content.http.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(hosts, ["z.com", "a.com", "m.com"], "by first seen, not by kind or name");
}

#[test]
fn diagnostics_from_reading_come_first() {
    let mut index = index_of(cluster());
    index.reset("test", vec![], vec![Diagnostic::new("document 1: invalid YAML")]);
    let compiled = compile(&index, &Options::default(), &HeldPorts::new());
    assert_eq!(errors(&compiled), ["document 1: invalid YAML"]);
}

// ---- tcp exposure: ports ----

fn mk_pa(name: &str, ranges: &[(i32, i32)], host: &str) -> Object {
    Object::PortAllocation(crate::objects::PortAllocation {
        metadata: meta(None, name),
        spec: crate::objects::PortAllocationSpec {
            ranges: ranges
                .iter()
                .map(|(start, end)| crate::objects::PortRangeSpec { start: *start, end: *end })
                .collect(),
            host: host.into(),
        },
    })
}

/// An exposed VirtualService with one tcp route per `(service, port)`.
fn mk_tcp_vs(ns: &str, name: &str, routes: &[(&str, u32)]) -> Object {
    let tcp = routes
        .iter()
        .map(|(service, port)| crate::objects::TcpRule {
            matches: vec![],
            route: vec![RouteDestination {
                destination: Destination {
                    host: service.to_string(),
                    subset: None,
                    port: Some(PortSelector { number: *port }),
                },
                weight: None,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    let vs = VirtualService {
        metadata: meta(Some(ns), name),
        spec: crate::objects::VirtualServiceSpec { tcp, ..Default::default() },
    };
    annotated(Object::VirtualService(vs), EXPOSE_ANNOTATION, "true")
}

/// One ready node, a PortAllocation of 31000-31002 and a MySQL NodePort Service.
fn tcp_cluster() -> Vec<Object> {
    vec![
        mk_ready_node("node", "127.0.0.1"),
        mk_pa("tcp", &[(31000, 31002)], "tcp.example.com"),
        mk_service("default", "mysql", &[("mysql", 3306, 30306)]),
    ]
}

fn compile_held(objects: Vec<Object>, held: &HeldPorts) -> Compiled {
    compile(&index_of(objects), &Options::default(), held)
}

/// `port → backends (source)` lines.
fn tcp(compiled: &Compiled) -> Vec<String> {
    compiled
        .content
        .tcp
        .iter()
        .map(|r| format!("{} → {} ({})", r.port, crate::report::describe_backends(&r.backends), r.source))
        .collect()
}

/// `claim → address` lines (`port N` without a host).
fn addresses(compiled: &Compiled) -> Vec<String> {
    compiled
        .assignments
        .values()
        .map(|a| format!("{} → {}", a.key(), a.address().unwrap_or_else(|| format!("port {}", a.port))))
        .collect()
}

fn warnings(compiled: &Compiled) -> Vec<String> {
    compiled.diagnostics.iter().filter(|d| d.is_warning()).map(ToString::to_string).collect()
}

fn errors_only(compiled: &Compiled) -> Vec<String> {
    compiled.diagnostics.iter().filter(|d| !d.is_warning()).map(ToString::to_string).collect()
}

#[test]
fn a_tcp_route_gets_the_first_port_and_an_address() {
    let compiled = compile_all(plus(tcp_cluster(), [mk_tcp_vs("default", "db", &[("mysql", 3306)])]));
    assert_eq!(errors(&compiled), Vec::<String>::new());
    assert_eq!(tcp(&compiled), ["31000 → default/mysql:3306 → 127.0.0.1:30306 (VirtualService default/db)"]);
    assert_eq!(addresses(&compiled), ["VirtualService default/db tcp[0] → tcp.example.com:31000"]);
    assert_eq!(compiled.content.to_table(1).tcp, compiled.content.tcp, "the table carries the tcp routes");
}

#[test]
fn ports_go_to_the_oldest_object_first() {
    let young = created(mk_tcp_vs("default", "young", &[("mysql", 3306)]), "2024-02-01T00:00:00Z");
    let old = created(mk_tcp_vs("default", "old", &[("mysql", 3306)]), "2024-01-01T00:00:00Z");
    let compiled = compile_all(plus(tcp_cluster(), [young, old]));
    assert_eq!(
        addresses(&compiled),
        [
            "VirtualService default/old tcp[0] → tcp.example.com:31000",
            "VirtualService default/young tcp[0] → tcp.example.com:31001"
        ]
    );
    let sources: Vec<String> = compiled.content.tcp.iter().map(|r| r.source.name.clone()).collect();
    assert_eq!(sources, ["old", "young"], "the table lists tcp routes oldest object first too");
}

#[test]
fn held_ports_are_kept_across_recompiles_and_edits_that_leave_tcp_routes_alone() {
    let db = created(mk_tcp_vs("default", "db", &[("mysql", 3306)]), "2024-02-01T00:00:00Z");
    let first = compile_all(plus(tcp_cluster(), [db.clone()]));
    let held = ports::held_ports(&first.assignments);
    assert_eq!(held, HeldPorts::from([("VirtualService default/db tcp[0]".into(), 31000)]));

    // An older object appears (as after a restart that reads it first); an unrelated edit to db.
    let older = created(mk_tcp_vs("default", "older", &[("mysql", 3306)]), "2024-01-01T00:00:00Z");
    let edited = annotated(db, "team", "storage");
    let second = compile_held(plus(tcp_cluster(), [older, edited]), &held);
    assert_eq!(
        addresses(&second),
        [
            "VirtualService default/db tcp[0] → tcp.example.com:31000",
            "VirtualService default/older tcp[0] → tcp.example.com:31001"
        ]
    );
    let again = compile_held(plus(tcp_cluster(), []), &ports::held_ports(&second.assignments));
    assert!(again.assignments.is_empty());
}

#[test]
fn node_ports_of_services_are_never_handed_out() {
    let mut objects = tcp_cluster();
    objects.push(mk_service("other", "taken", &[("a", 80, 31000), ("b", 81, 31002)]));
    objects.push(mk_tcp_vs("default", "db", &[("mysql", 3306)]));
    objects.push(mk_tcp_vs("default", "db2", &[("mysql", 3306)]));
    let compiled = compile_all(objects.clone());
    assert_eq!(addresses(&compiled)[0], "VirtualService default/db tcp[0] → tcp.example.com:31001");
    assert!(errors(&compiled)[0].contains("spec.tcp[0]: no free port"), "{:?}", errors(&compiled));
    assert!(errors(&compiled)[0].contains("1 by tcp routes, 2 by NodePort Services"), "{:?}", errors(&compiled));

    // A port held before that a Service now uses as its nodePort moves.
    let held = HeldPorts::from([("VirtualService default/db tcp[0]".into(), 31000)]);
    let compiled = compile_held(objects, &held);
    assert_eq!(addresses(&compiled)[0], "VirtualService default/db tcp[0] → tcp.example.com:31001");
}

#[test]
fn a_full_range_fails_only_the_newcomer_and_names_the_range() {
    let objects = plus(
        tcp_cluster(),
        [
            mk_tcp_vs("default", "a", &[("mysql", 3306)]),
            mk_tcp_vs("default", "b", &[("mysql", 3306)]),
            mk_tcp_vs("default", "c", &[("mysql", 3306)]),
        ],
    );
    let before = compile_all(objects.clone());
    assert_eq!(before.content.tcp.len(), 3);
    let held = ports::held_ports(&before.assignments);

    let mut objects = objects;
    objects.insert(3, mk_tcp_vs("default", "late", &[("mysql", 3306)]));
    objects.push(mk_ingress("default", "web", Some("berth"), &[("a.com", "/", "Prefix", "mysql", 3306)]));
    objects.push(berth_class());
    let after = compile_held(objects, &held);
    assert_eq!(
        errors(&after),
        ["late.yaml: VirtualService default/late: spec.tcp[0]: no free port for this tcp route: every port of \
          31000-31002 (PortAllocation tcp) is taken (3 by tcp routes); widen a range or add one in a PortAllocation, \
          or remove berth.dev/expose from an object that no longer needs its port"]
    );
    assert_eq!(after.content.tcp, before.content.tcp, "nothing else changes");
    assert_eq!(after.assignments, before.assignments);
    assert_eq!(after.content.http.len(), 1, "other objects are served");
}

#[test]
fn an_object_that_does_not_fit_whole_takes_nothing_and_younger_ones_may_fit() {
    let mut objects = tcp_cluster();
    objects[1] = mk_pa("tcp", &[(31000, 31001)], "tcp.example.com");
    objects.push(mk_tcp_vs("default", "first", &[("mysql", 3306)]));
    objects.push(mk_tcp_vs("default", "wide", &[("mysql", 3306), ("mysql", 3306)]));
    objects.push(mk_tcp_vs("default", "small", &[("mysql", 3306)]));
    let compiled = compile_all(objects.clone());
    assert_eq!(
        addresses(&compiled),
        [
            "VirtualService default/first tcp[0] → tcp.example.com:31000",
            "VirtualService default/small tcp[0] → tcp.example.com:31001"
        ]
    );
    let errors = errors(&compiled);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("wide.yaml: VirtualService default/wide: spec.tcp[0]: no free port"), "{errors:?}");
    assert!(errors[1].contains("spec.tcp[1]: no free port"), "{errors:?}");

    // An object that held a port and now asks for one more than fits keeps the one it held, unserved.
    let held = HeldPorts::from([("VirtualService default/wide tcp[0]".into(), 31001)]);
    let compiled = compile_held(objects, &held);
    assert_eq!(
        addresses(&compiled),
        [
            "VirtualService default/first tcp[0] → tcp.example.com:31000",
            "VirtualService default/wide tcp[0] → tcp.example.com:31001"
        ]
    );
    assert!(compiled.content.tcp.iter().all(|r| r.source.name == "first"), "{:?}", tcp(&compiled));
    assert_eq!(errors_only(&compiled).len(), 2, "wide's second route and small: {:?}", errors_only(&compiled));
}

#[test]
fn shrinking_a_range_keeps_the_holders_and_warns() {
    let db = mk_tcp_vs("default", "db", &[("mysql", 3306)]);
    let held = HeldPorts::from([("VirtualService default/db tcp[0]".into(), 31002)]);
    let mut objects = plus(tcp_cluster(), [db, mk_tcp_vs("default", "new", &[("mysql", 3306)])]);
    objects[1] = mk_pa("tcp", &[(31000, 31000)], "tcp.example.com");
    let compiled = compile_held(objects, &held);
    assert_eq!(errors_only(&compiled), Vec::<String>::new());
    assert_eq!(
        warnings(&compiled),
        ["db.yaml: VirtualService default/db: spec.tcp[0]: keeps tcp.example.com:31002 although no PortAllocation \
          range includes port 31002 any more (31000 (PortAllocation tcp)); it goes on routing, and to move it into \
          the ranges remove berth.dev/expose and add it back"]
    );
    assert_eq!(
        tcp(&compiled),
        [
            "31002 → default/mysql:3306 → 127.0.0.1:30306 (VirtualService default/db)",
            "31000 → default/mysql:3306 → 127.0.0.1:30306 (VirtualService default/new)"
        ]
    );
}

#[test]
fn removing_the_annotation_or_the_object_frees_the_port() {
    let db = mk_tcp_vs("default", "db", &[("mysql", 3306)]);
    let first = compile_all(plus(tcp_cluster(), [db.clone()]));
    let held = ports::held_ports(&first.assignments);

    let unannotated = annotated(db, EXPOSE_ANNOTATION, "false");
    let other = mk_tcp_vs("default", "other", &[("mysql", 3306)]);
    let compiled = compile_held(plus(tcp_cluster(), [unannotated, other.clone()]), &held);
    assert_eq!(addresses(&compiled), ["VirtualService default/other tcp[0] → tcp.example.com:31000"]);
    assert_eq!(
        ports::describe_changes(&first.assignments, &compiled.assignments),
        [
            "VirtualService default/db tcp[0] freed tcp.example.com:31000",
            "VirtualService default/other tcp[0] → tcp.example.com:31000"
        ]
    );

    let deleted = compile_held(plus(tcp_cluster(), [other]), &held);
    assert_eq!(addresses(&deleted), ["VirtualService default/other tcp[0] → tcp.example.com:31000"]);
}

#[test]
fn each_tcp_route_of_an_object_gets_its_own_port() {
    let objects = plus(
        tcp_cluster(),
        [
            mk_service("default", "redis", &[("redis", 6379, 30379)]),
            mk_tcp_vs("default", "db", &[("mysql", 3306), ("redis", 6379)]),
        ],
    );
    let compiled = compile_all(objects);
    assert_eq!(
        tcp(&compiled),
        [
            "31000 → default/mysql:3306 → 127.0.0.1:30306 (VirtualService default/db)",
            "31001 → default/redis:6379 → 127.0.0.1:30379 (VirtualService default/db)"
        ]
    );
    assert_eq!(
        ports::address_annotation(compiled.assignments.values()),
        "tcp[0]=tcp.example.com:31000, tcp[1]=tcp.example.com:31001"
    );
}

#[test]
fn allocation_is_deterministic() {
    let objects: Vec<Object> =
        plus(tcp_cluster(), (0..3).map(|i| mk_tcp_vs("default", &format!("db{i}"), &[("mysql", 3306)])));
    let first = compile_all(objects.clone());
    let second = compile_all(objects);
    assert_eq!(first.content, second.content);
    assert_eq!(first.assignments, second.assignments);
    let ports: std::collections::BTreeSet<u16> = first.assignments.values().map(|a| a.port).collect();
    assert_eq!(ports.len(), 3, "distinct");
}

#[test]
fn without_a_port_allocation_tcp_routes_are_errors_and_held_ports_are_kept() {
    let mut objects = plus(tcp_cluster(), [mk_tcp_vs("default", "db", &[("mysql", 3306)])]);
    objects.remove(1);
    let held = HeldPorts::from([("VirtualService default/db tcp[0]".into(), 31000)]);
    let compiled = compile_held(objects, &held);
    assert_eq!(
        errors(&compiled),
        ["db.yaml: VirtualService default/db: spec.tcp: tcp routes need a port, but there is no PortAllocation to \
          take one from; ask an operator to create one (apiVersion berth.dev/v1alpha1, kind PortAllocation, with \
          spec.ranges and spec.host)"]
    );
    assert!(compiled.content.tcp.is_empty());
    assert_eq!(addresses(&compiled), ["VirtualService default/db tcp[0] → port 31000"], "kept for when one returns");
}

#[test]
fn invalid_port_allocations_are_reported_and_contribute_nothing() {
    let bad = mk_pa("bad", &[(31010, 31000), (0, 70000)], "tcp.example.com:99");
    let empty = mk_pa("empty", &[], "");
    let mut objects = tcp_cluster();
    objects[1] = bad;
    objects.extend([empty, mk_tcp_vs("default", "db", &[("mysql", 3306)])]);
    let errors = errors(&compile_all(objects));
    assert_eq!(
        errors,
        [
            "bad.yaml: PortAllocation bad: spec.ranges[0]: start 31010 is greater than end 31000; swap them",
            "bad.yaml: PortAllocation bad: spec.ranges[1].start: 0 is not a port (1 to 65535)",
            "bad.yaml: PortAllocation bad: spec.ranges[1].end: 70000 is not a port (1 to 65535)",
            "bad.yaml: PortAllocation bad: spec.host: \"tcp.example.com:99\" is not a host name or IP address; write \
             the name alone, without scheme, port or path",
            "empty.yaml: PortAllocation empty: spec.ranges: empty; list at least one range, e.g. {start: 31000, end: \
             31010}",
            "empty.yaml: PortAllocation empty: spec.host: empty; set the name clients reach the proxy by, e.g. \
             tcp.example.com",
            "db.yaml: VirtualService default/db: spec.tcp: tcp routes need a port, but there is no PortAllocation \
             to take one from; ask an operator to create one (apiVersion berth.dev/v1alpha1, kind PortAllocation, \
             with spec.ranges and spec.host)",
        ]
    );
}

#[test]
fn several_port_allocations_give_each_port_its_own_host() {
    let mut objects = tcp_cluster();
    objects[1] = mk_pa("a", &[(31000, 31000)], "a.example.com");
    objects.push(mk_pa("b", &[(32000, 32000)], "b.example.com"));
    objects.push(mk_tcp_vs("default", "db", &[("mysql", 3306), ("mysql", 3306)]));
    let compiled = compile_all(objects);
    assert_eq!(
        addresses(&compiled),
        [
            "VirtualService default/db tcp[0] → a.example.com:31000",
            "VirtualService default/db tcp[1] → b.example.com:32000"
        ]
    );
}

#[test]
fn a_broken_object_keeps_its_port_but_is_not_served() {
    // The port is a reservation tied to the request: a Service briefly missing must not cost the address.
    let db = mk_tcp_vs("default", "db", &[("gone", 3306)]);
    let compiled = compile_all(plus(tcp_cluster(), [db]));
    assert_eq!(
        errors(&compiled),
        ["db.yaml: VirtualService default/db: spec.tcp[0].route[0].destination.host: service \"gone\" not found in \
          namespace default"]
    );
    assert!(compiled.content.tcp.is_empty());
    assert_eq!(addresses(&compiled), ["VirtualService default/db tcp[0] → tcp.example.com:31000"]);
}

#[test]
fn tcp_match_conditions_other_than_port_are_refused() {
    let Object::VirtualService(mut vs) = mk_tcp_vs("default", "db", &[("mysql", 3306)]) else { unreachable!() };
    let mut m = crate::objects::TcpMatch { port: Some(3306), ..Default::default() };
    vs.spec.tcp[0].matches.push(m.clone());
    let fine = compile_all(plus(tcp_cluster(), [Object::VirtualService(vs.clone())]));
    assert_eq!(errors(&fine), Vec::<String>::new(), "match.port is informational");
    m.other.insert("sourceLabels".into(), serde_yaml::Value::Null);
    vs.spec.tcp[0].matches.push(m);
    vs.spec.tcp[0].route.clear();
    let refused = compile_all(plus(tcp_cluster(), [Object::VirtualService(vs)]));
    assert_eq!(
        errors(&refused),
        [
            "db.yaml: VirtualService default/db: spec.tcp[0].match[1].sourceLabels: berth tells tcp connections \
             apart by the port it allocates only; remove this condition or serve this route another way",
            "db.yaml: VirtualService default/db: spec.tcp[0].route: no destination; name the Service connections go to",
        ]
    );
}

#[test]
fn an_object_with_http_and_tcp_routes_is_served_whole_or_not_at_all() {
    let Object::VirtualService(mut vs) = mk_tcp_vs("default", "both", &[("mysql", 3306)]) else { unreachable!() };
    vs.spec.hosts = vec!["both.com".into()];
    vs.spec.http = vec![vs_rule(&[], &[("mysql", Some(3306), None)])];
    let mut objects = plus(tcp_cluster(), [Object::VirtualService(vs)]);
    let served = compile_all(objects.clone());
    assert_eq!((served.content.http.len(), served.content.tcp.len()), (1, 1), "{:?}", errors(&served));

    objects[1] = mk_pa("tcp", &[(31000, 31000)], "tcp.example.com");
    objects.push(mk_service("default", "blocker", &[("x", 1, 31000)]));
    let full = compile_all(objects);
    assert_eq!((full.content.http.len(), full.content.tcp.len()), (0, 0));
    assert_eq!(errors(&full).len(), 1);
}

#[test]
fn a_tcp_only_virtual_service_needs_no_hosts_and_an_empty_one_is_an_error() {
    let compiled = compile_all(plus(tcp_cluster(), [mk_tcp_vs("default", "db", &[("mysql", 3306)])]));
    assert_eq!(errors(&compiled), Vec::<String>::new());
    let empty = compile_all(plus(tcp_cluster(), [mk_tcp_vs("default", "none", &[])]));
    assert_eq!(
        errors(&empty),
        [
            "none.yaml: VirtualService default/none: spec.http: empty; berth exposes a VirtualService's http, tcp and tls routes"
        ]
    );
}

#[test]
fn tcp_virtual_services_and_port_allocations_read_from_yaml() {
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: db\n  annotations:\n    \
                berth.dev/expose: \"true\"\nspec:\n  hosts: [db.example.com]\n  tcp:\n  - match:\n    - port: 3306\n    \
                route:\n    - destination:\n        host: mysql\n        port:\n          number: 3306\n---\n\
                apiVersion: berth.dev/v1alpha1\nkind: PortAllocation\nmetadata:\n  name: tcp\nspec:\n  ranges:\n  - \
                start: 31000\n    end: 31010\n  host: tcp.example.com\n";
    let parsed = crate::objects::parse_yaml(std::path::Path::new("f.yaml"), text);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let mut objects = vec![mk_ready_node("n", "127.0.0.1"), mk_service("default", "mysql", &[("mysql", 3306, 30306)])];
    objects.extend(parsed.objects);
    let compiled = compile_all(objects);
    assert_eq!(errors(&compiled), Vec::<String>::new());
    assert_eq!(tcp(&compiled), ["31000 → default/mysql:3306 → 127.0.0.1:30306 (VirtualService default/db)"]);
}

#[test]
fn many_claims_on_a_full_range_are_settled_quickly_and_distinctly() {
    let mut objects = tcp_cluster();
    objects[1] = mk_pa("tcp", &[(31000, 31999)], "tcp.example.com");
    objects.extend((0..1500).map(|i| mk_tcp_vs("default", &format!("db{i:04}"), &[("mysql", 3306)])));
    let started = std::time::Instant::now();
    let compiled = compile_all(objects);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    let ports: std::collections::BTreeSet<u16> = compiled.assignments.values().map(|a| a.port).collect();
    assert_eq!((compiled.assignments.len(), ports.len()), (1000, 1000));
    assert_eq!(compiled.content.tcp.len(), 1000);
    assert_eq!(errors(&compiled).len(), 500);
    assert!(compiled.assignments.contains_key("VirtualService default/db0999 tcp[0]"), "the oldest get the ports");
}

// ---- session affinity ----

#[test]
fn the_session_cookie_annotation_makes_every_http_route_of_its_object_sticky() {
    let rule = vs_rule(&[Uri::Prefix("/a"), Uri::Prefix("/b")], &[("service1", Some(8080), None)]);
    let vs = annotated(mk_vs("default", "web", &["web.com"], vec![rule]), affinity::SESSION_COOKIE_ANNOTATION, "s");
    let ingress = mk_ingress("default", "shop", Some("berth"), &[("shop.com", "/", "Prefix", "service2", 9090)]);
    let ingress = with_default_backend(ingress, "service1", 8080);
    let ingress = annotated(ingress, affinity::SESSION_COOKIE_ANNOTATION, "shop-session");
    let plain = mk_ingress("default", "plain", Some("berth"), &[("plain.com", "/", "Prefix", "service2", 9090)]);
    let compiled = compile_all(plus(cluster(), [vs, ingress, plain]));
    assert_eq!(errors(&compiled), Vec::<String>::new());
    let cookies: Vec<(&str, Option<&str>)> =
        compiled.content.http.iter().map(|r| (r.host.as_str(), r.session_cookie.as_deref())).collect();
    assert_eq!(
        cookies,
        [("web.com", Some("s")), ("web.com", Some("s")), ("shop.com", Some("shop-session")), ("plain.com", None)]
    );
    assert_eq!(compiled.content.affinity_key, None, "the key is the controller's to add");
    let key = berth_table::AffinityKey::from_bytes([1; 16]);
    assert_eq!(compiled.content.clone().with_affinity_key(key).affinity_key, Some(key));
}

#[test]
fn tables_without_affinity_get_no_key() {
    let compiled = compile_all(plus(
        cluster(),
        [mk_ingress("default", "plain", Some("berth"), &[("plain.com", "/", "Prefix", "service2", 9090)])],
    ));
    let key = berth_table::AffinityKey::from_bytes([1; 16]);
    assert_eq!(compiled.content.with_affinity_key(key).affinity_key, None);
}

#[test]
fn source_ip_affinity_marks_tcp_routes() {
    let vs =
        annotated(mk_tcp_vs("default", "db", &[("mysql", 3306)]), affinity::SESSION_AFFINITY_ANNOTATION, "source-ip");
    let compiled = compile_held(plus(tcp_cluster(), [vs]), &HeldPorts::new());
    assert_eq!(errors(&compiled), Vec::<String>::new());
    assert!(compiled.content.tcp.iter().all(|r| r.source_ip_affinity) && compiled.content.tcp.len() == 1);
    let key = berth_table::AffinityKey::from_bytes([1; 16]);
    assert_eq!(compiled.content.with_affinity_key(key).affinity_key, Some(key));
}

#[test]
fn bad_affinity_annotations_fail_their_object_only() {
    let bad_cookie = annotated(
        mk_vs("default", "bad", &["bad.com"], vec![vs_rule(&[], &[("service1", Some(8080), None)])]),
        affinity::SESSION_COOKIE_ANNOTATION,
        "no spaces",
    );
    let misplaced = annotated(mk_tcp_vs("default", "db", &[("mysql", 3306)]), affinity::SESSION_COOKIE_ANNOTATION, "s");
    let good = mk_ingress("default", "good", Some("berth"), &[("good.com", "/", "Prefix", "service2", 9090)]);
    let objects = plus(plus(cluster(), tcp_cluster()), [bad_cookie, misplaced, good]);
    let compiled = compile_held(objects, &HeldPorts::new());
    let errors = errors_only(&compiled).join("\n");
    assert!(errors.contains("VirtualService default/bad") && errors.contains("\"no spaces\" is not a cookie name"));
    assert!(errors.contains("VirtualService default/db") && errors.contains("applies to http routes"), "{errors}");
    assert_eq!(routes(&compiled).len(), 1, "the good Ingress still routes: {:?}", routes(&compiled));
}
