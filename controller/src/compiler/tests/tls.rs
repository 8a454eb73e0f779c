//! Compiler tests for VirtualService `tls` routes: server names, Istio's rules, conflicts and addresses.

use std::path::Path;

use super::*;

/// An exposed VirtualService in `default`, from the YAML of its `spec`.
fn tls_vs(name: &str, spec: &str) -> Object {
    let text = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n  namespace: default\n  \
         annotations:\n    berth.dev/expose: \"true\"\nspec:\n{spec}"
    );
    let parsed = crate::objects::parse_yaml(Path::new("test.yaml"), &text);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    parsed.objects.into_iter().next().unwrap()
}

/// One ready node and two NodePort Services, `api` (443 → 30443) and `other` (443 → 30444).
fn tls_cluster() -> Vec<Object> {
    vec![
        mk_ready_node("node", "127.0.0.1"),
        mk_service("default", "api", &[("https", 443, 30443)]),
        mk_service("default", "other", &[("https", 443, 30444)]),
    ]
}

const API: &str = "  hosts: [\"*.example.com\"]\n  tls:\n  - match:\n    - sniHosts: [a.example.com, B.example.com.]\n      \
                   port: 443\n    route:\n    - destination:\n        host: api\n        port: {number: 443}\n";

/// `server name → backends (source)` lines.
fn tls(compiled: &Compiled) -> Vec<String> {
    let routes = compiled.content.tls.iter();
    routes.map(|r| format!("{} → {} ({})", r.sni, crate::report::describe_backends(&r.backends), r.source)).collect()
}

fn tls_addresses(compiled: &Compiled) -> Vec<String> {
    let addresses = compiled.tls_addresses.iter();
    addresses.map(|a| format!("{} {} → {}", a.object, a.route, a.address().unwrap_or_default())).collect()
}

#[test]
fn tls_routes_compile_to_server_names_with_their_addresses_on_the_tls_port() {
    let compiled = compile_all(plus(tls_cluster(), [tls_vs("api", API)]));
    assert_eq!(errors(&compiled), Vec::<String>::new());
    assert_eq!(
        tls(&compiled),
        [
            "a.example.com → default/api:443 → 127.0.0.1:30443 (VirtualService default/api)",
            "b.example.com → default/api:443 → 127.0.0.1:30443 (VirtualService default/api)",
        ],
        "names are lower-cased, without a trailing dot"
    );
    assert_eq!(
        tls_addresses(&compiled),
        [
            "VirtualService default/api tls[0] → a.example.com:443",
            "VirtualService default/api tls[0] → b.example.com:443"
        ]
    );
    assert!(compiled.assignments.is_empty(), "no port is held for a tls route");
    assert_eq!(compiled.content.to_table(1).tls, compiled.content.tls, "the table carries the tls routes");
    assert!(compiled.content.http.is_empty() && compiled.content.tcp.is_empty());
}

#[test]
fn the_tls_port_comes_from_the_options() {
    let options = Options { tls_port: 8443, ..Options::default() };
    let compiled = compile(&index_of(plus(tls_cluster(), [tls_vs("api", API)])), &options, &HeldPorts::new());
    assert_eq!(
        errors(&compiled),
        ["api.yaml: VirtualService default/api: spec.tls[0].match[0].port: berth serves tls passthrough on port 8443 \
          only (berth run --tls-port), not 443; remove port or set it to 8443"]
    );
    let without_port = API.replace("      port: 443\n", "");
    let compiled = compile(&index_of(plus(tls_cluster(), [tls_vs("api", &without_port)])), &options, &HeldPorts::new());
    assert_eq!(tls_addresses(&compiled)[0], "VirtualService default/api tls[0] → a.example.com:8443");
}

#[test]
fn server_names_must_fall_within_the_hosts_and_wildcards_nest() {
    let spec = "  hosts: [\"*.example.com\", db.other.org]\n  tls:\n  - match:\n    - sniHosts: [\"*.apps.example.com\", \
                db.other.org, x.other.org, example.com]\n    route:\n    - destination: {host: api}\n";
    let compiled = compile_all(plus(tls_cluster(), [tls_vs("api", spec)]));
    let at = "api.yaml: VirtualService default/api: spec.tls[0].match[0].sniHosts";
    let hosts = "is not within the VirtualService's hosts (*.example.com, db.other.org); each sniHost must be one of \
                 them or fall under one of their wildcards, as Istio requires";
    assert_eq!(errors(&compiled), [format!("{at}[2]: x.other.org {hosts}"), format!("{at}[3]: example.com {hosts}")]);
    assert!(compiled.content.tls.is_empty(), "an object with a problem contributes nothing");
    let fixed = spec.replace(", x.other.org, example.com", "");
    let compiled = compile_all(plus(tls_cluster(), [tls_vs("api", &fixed)]));
    assert_eq!(errors(&compiled), Vec::<String>::new());
    let names: Vec<&str> = compiled.content.tls.iter().map(|r| r.sni.as_str()).collect();
    assert_eq!(names, ["*.apps.example.com", "db.other.org"]);
}

#[test]
fn tls_problems_are_reported_field_by_field() {
    let spec = "  hosts: [\"*\"]\n  tls:\n  - match: []\n    route:\n    - destination: {host: api}\n  \
                - match:\n    - sniHosts: []\n    - sniHosts: [\"*\", \"a.*.com\"]\n      sourceLabels: {app: x}\n    \
                route:\n    - destination: {host: missing}\n  - match:\n    - sniHosts: [ok.example.com]\n";
    let compiled = compile_all(plus(tls_cluster(), [tls_vs("bad", spec)]));
    let at = "bad.yaml: VirtualService default/bad: spec.tls";
    assert_eq!(
        errors(&compiled),
        [
            format!(
                "{at}[0].match: empty; name the server names to route, e.g. match: [{{sniHosts: [db.example.com]}}]"
            ),
            format!("{at}[1].match[0].sniHosts: empty; list the server names (SNI) to route, e.g. [db.example.com]"),
            format!(
                "{at}[1].match[1].sourceLabels: berth tells tls connections apart by server name (sniHosts) only; \
                 remove this condition or serve this route another way"
            ),
            format!(
                "{at}[1].match[1].sniHosts[0]: \"*\" a server name that matches everything is not supported; name \
                 the hosts, or a domain as *.example.com"
            ),
            format!(
                "{at}[1].match[1].sniHosts[1]: \"a.*.com\" may hold a wildcard only as its whole first label, as in \
                 *.example.com"
            ),
            format!("{at}[1].route[0].destination.host: service \"missing\" not found in namespace default"),
            format!("{at}[2].route: no destination; name the Service connections go to"),
        ]
    );
}

#[test]
fn the_older_object_keeps_a_server_name_and_the_younger_is_skipped_whole() {
    let old = created(tls_vs("old", API), "2024-01-01T00:00:00Z");
    let spec = "  hosts: [\"*.example.com\"]\n  tls:\n  - match:\n    - sniHosts: [c.example.com, \"*.example.com\"]\n    \
                route:\n    - destination: {host: other}\n  - match:\n    - sniHosts: [a.example.com]\n    route:\n    \
                - destination: {host: other}\n";
    let young = created(tls_vs("young", spec), "2024-02-01T00:00:00Z");
    let compiled = compile_all(plus(tls_cluster(), [young.clone(), old]));
    assert_eq!(
        errors(&compiled),
        ["young.yaml: VirtualService default/young: spec.tls[1].match[0].sniHosts[0]: tls server name a.example.com \
          is already routed by VirtualService default/old, which is older; this object is not served until the \
          conflict is removed from one of them"]
    );
    let sources: Vec<&str> = compiled.content.tls.iter().map(|r| r.source.name.as_str()).collect();
    assert_eq!(sources, ["old", "old"], "none of the younger object's names, not even the uncontested ones");
    assert!(tls_addresses(&compiled).iter().all(|a| a.contains("default/old")), "{:?}", tls_addresses(&compiled));

    // Without the contested name, a wildcard and the exact names it covers live side by side.
    let compiled = compile_all(plus(tls_cluster(), [young, created(tls_vs("old", API), "2024-01-01T00:00:00Z")]));
    assert_eq!(compiled.content.tls.len(), 2);
    let fixed = spec.replace("    - sniHosts: [a.example.com]\n", "    - sniHosts: [d.example.com]\n");
    let compiled = compile_all(plus(tls_cluster(), [tls_vs("young", &fixed), tls_vs("old", API)]));
    assert_eq!(errors(&compiled), Vec::<String>::new());
    let names: Vec<&str> = compiled.content.tls.iter().map(|r| r.sni.as_str()).collect();
    assert_eq!(names, ["c.example.com", "*.example.com", "d.example.com", "a.example.com", "b.example.com"]);
}

#[test]
fn a_name_repeated_within_one_object_is_routed_once_by_its_first_rule() {
    let spec = "  hosts: [a.example.com]\n  tls:\n  - match:\n    - sniHosts: [a.example.com]\n    route:\n    \
                - destination: {host: api}\n  - match:\n    - sniHosts: [a.example.com]\n    route:\n    \
                - destination: {host: other}\n";
    let compiled = compile_all(plus(tls_cluster(), [tls_vs("twice", spec)]));
    assert_eq!(errors(&compiled), Vec::<String>::new());
    assert_eq!(tls(&compiled), ["a.example.com → default/api:443 → 127.0.0.1:30443 (VirtualService default/twice)"]);
    assert_eq!(tls_addresses(&compiled), ["VirtualService default/twice tls[0] → a.example.com:443"]);
}

#[test]
fn http_tcp_and_tls_routes_of_one_object_compile_together() {
    let spec = "  hosts: [a.example.com]\n  http:\n  - route:\n    - destination: {host: api}\n  tls:\n  - match:\n    \
                - sniHosts: [a.example.com]\n    route:\n    - destination: {host: api}\n";
    let compiled = compile_all(plus(tls_cluster(), [tls_vs("both", spec)]));
    assert_eq!(errors(&compiled), Vec::<String>::new());
    assert_eq!((compiled.content.http.len(), compiled.content.tls.len()), (1, 1));
    // A problem in either part drops the whole object.
    let broken =
        spec.replace("tls:\n  - match:\n    - sniHosts: [a.example.com]", "tls:\n  - match:\n    - sniHosts: []");
    let compiled = compile_all(plus(tls_cluster(), [tls_vs("both", &broken)]));
    assert_eq!(errors(&compiled).len(), 1);
    assert!(compiled.content.http.is_empty() && compiled.content.tls.is_empty());
}
