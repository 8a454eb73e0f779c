//! What a client or a manifest must not be able to do: choose a destination with headers or cookies, reach a
//! backend with a host the table does not name, or read a Secret through the controller's endpoints.
//! (`http_routing.rs` covers the plain `x-envoy-original-dst-host` spoof.)

use berth_tests::manifests::{self, Rule};
use berth_tests::{Backend, Stack, client};

fn stack_with(public: &Backend, internal: &Backend, extra: &[(&'static str, String)]) -> Stack {
    let mut files = vec![
        manifests::cluster(),
        manifests::services(&[public, internal]),
        (
            "ingress.yaml",
            manifests::ingress(
                "web",
                &[
                    Rule("public.example", "/", "Prefix", "public", 80),
                    Rule("internal.example", "/", "Prefix", "internal", 80),
                ],
            ),
        ),
    ];
    files.extend_from_slice(extra);
    let stack = Stack::start(&files);
    stack.envoy.wait_for_backend("public.example", "/", "public");
    stack.envoy.wait_for_backend("internal.example", "/", "internal");
    stack
}

#[test]
fn routing_headers_and_cookies_never_choose_the_destination() {
    let (public, internal, secret) = (Backend::start("public"), Backend::start("internal"), Backend::start("secret"));
    let stack = stack_with(&public, &internal, &[]);
    let target = secret.addr.to_string();
    let spoofs: Vec<Vec<(&str, String)>> = vec![
        vec![("x-envoy-original-dst-host", target.clone()), ("x-envoy-internal", "true".into())],
        vec![("x-forwarded-host", "internal.example".into())],
        vec![("x-forwarded-host", target.clone())],
        vec![("x-original-host", "internal.example".into()), ("x-host", "internal.example".into())],
        vec![("forwarded", "host=internal.example;proto=http".into())],
        vec![("x-original-url", "http://internal.example/".into()), ("x-rewrite-url", "/".into())],
        vec![("x-berth", "internal.example".into()), ("x-envoy-upstream-alt-stat-name", "internal".into())],
        vec![("cookie", format!("x-envoy-original-dst-host={target}; berth-destination={target}"))],
        vec![("cookie", "host=internal.example; route=internal; backend=internal".into())],
        vec![("x-envoy-original-path", "/internal".into()), ("x-http-method-override", "CONNECT".into())],
    ];
    for headers in &spoofs {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let routed = client::request(stack.envoy.http, "GET", "public.example", "/", &headers).unwrap();
        assert_eq!(routed.header("x-backend"), Some("public"), "{headers:?}: {routed:?}");
        let unrouted = client::request(stack.envoy.http, "GET", "nowhere.example", "/", &headers).unwrap();
        assert_eq!((unrouted.status, unrouted.header("x-berth")), (404, Some("no-route")), "{headers:?}");
    }

    // The request target's authority counts as the host (HTTP/1.1 absolute form): it can only name table hosts.
    let absolute = format!("http://{target}/");
    let response = client::request(stack.envoy.http, "GET", "public.example", &absolute, &[]).unwrap();
    assert_eq!(response.status, 404, "{response:?}");
    let tunnel = client::request(stack.envoy.http, "CONNECT", &target, &target, &[]);
    assert!(tunnel.is_err() || tunnel.as_ref().is_ok_and(|r| r.header("x-backend").is_none()), "{tunnel:?}");
    assert_eq!(secret.hits(), 0, "a client reached the backend the table does not name");
}

#[test]
fn a_host_not_in_the_table_never_reaches_any_backend() {
    let (public, internal) = (Backend::start("public"), Backend::start("internal"));
    let stack = stack_with(&public, &internal, &[]);
    let hits = || (public.hits(), internal.hits());
    let before = hits();
    let public_port = public.addr.to_string();
    let hosts = [
        "nowhere.example",
        "public.example.evil",
        "evil.public.example",
        "public.exampl",
        "ublic.example",
        "public-example",
        "127.0.0.1",
        public_port.as_str(),
        "[::1]",
        "localhost",
        "internal.example..",
        "*.example",
        "*",
    ];
    for host in hosts {
        let response = client::get(stack.envoy.http, host, "/").unwrap();
        assert_eq!((response.status, response.header("x-berth")), (404, Some("no-route")), "{host}: {response:?}");
    }
    // Hosts Envoy itself refuses, and a request with no host at all.
    for host in ["", "public.example internal.example", "public.example\tx"] {
        let response = client::get(stack.envoy.http, host, "/").unwrap();
        assert!(response.status >= 400 && response.header("x-backend").is_none(), "{host:?}: {response:?}");
    }
    assert_eq!(hits(), before, "a request for a host outside the table reached a backend");
}

/// Values that must never leave a Secret.
const MARKERS: [&str; 5] =
    ["hunter2-data-9f1c", "tok-stringdata-77ab", "kubeconfig-token-5e3d", "listed-3c4d", "broken-8e8e"];

fn secrets() -> String {
    let base64_of_first = "aHVudGVyMi1kYXRhLTlmMWM="; // base64("hunter2-data-9f1c")
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: db-credentials, namespace: default}}\ntype: Opaque\n\
         data: {{password: {base64_of_first}}}\nstringData: {{token: {}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: kubeconfig-prod-1a2b, namespace: berth-system}}\n\
         stringData:\n  kubeconfig: |\n    apiVersion: v1\n    clusters: [{{name: prod, cluster: {{server: 'https://127.0.0.1:1'}}}}]\n    \
         users: [{{name: admin, user: {{token: {}}}}}]\n---\n\
         apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {{name: listed}}\n  \
         stringData: {{key: {}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: broken}}\nstringData: {{token: {}}}\noops: [unclosed\n",
        MARKERS[1], MARKERS[2], MARKERS[3], MARKERS[4]
    )
}

#[test]
fn the_controllers_endpoints_and_outputs_never_show_secret_contents() {
    let (public, internal) = (Backend::start("public"), Backend::start("internal"));
    // An Ingress may name a TLS Secret; Berth does not terminate TLS, but must not print the Secret either.
    let tls = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: tls, namespace: default}\nspec:\n  \
               ingressClassName: berth\n  tls: [{hosts: [tls.example], secretName: db-credentials}]\n  rules:\n  \
               - host: tls.example\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: \
               {name: public, port: {number: 80}}}}\n";
    let stack = stack_with(&public, &internal, &[("secrets.yaml", secrets()), ("tls.yaml", tls.to_string())]);
    stack.envoy.wait_for_backend("tls.example", "/", "public");

    let controller = stack.controller.addr;
    let mut outputs = vec![
        ("/v1/table", client::get(controller, "controller", "/v1/table").unwrap().body),
        ("/v1/routes", client::get(controller, "controller", "/v1/routes").unwrap().body),
    ];
    let routes = berth_tests::controller::berth(&["routes", "--controller", &stack.controller.url()]);
    outputs.push(("berth routes", String::from_utf8_lossy(&routes.stdout).into_owned()));
    let check = berth_tests::controller::berth(&["check", stack.manifests.path.to_str().unwrap()]);
    outputs.push((
        "berth check",
        format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr)),
    ));
    outputs.push(("the controller's log", stack.controller.log()));
    outputs.push(("Envoy's log", stack.envoy.log()));
    assert!(outputs[1].1.contains("tls.example"), "the outputs are the real ones: {}", outputs[1].1);
    for (place, text) in &outputs {
        for marker in MARKERS.iter().chain(&["aHVudGVyMi1kYXRhLTlmMWM"]) {
            assert!(!text.contains(marker), "{place} shows secret data {marker:?}:\n{text}");
        }
    }
}
