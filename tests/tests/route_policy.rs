//! A VirtualService http route's `rewrite`, `timeout`, `retries` and `headers` through real Envoy with the built
//! filter, seen from the client and from the backend; a client's own copies of Envoy's router headers change
//! nothing; route fields Berth does not honour are warned about in `berth check` and `berth routes`.

use std::time::Duration;

use berth_tests::controller::berth;
use berth_tests::manifests;
use berth_tests::{Backend, Stack, client, wait};

/// An exposed VirtualService for `host` with one http entry to `service`, `rule` adding YAML under that entry
/// (indented by four spaces, e.g. `"    timeout: 1s\n"`), `matches` its `match` list (none: every path).
fn virtual_service(name: &str, host: &str, matches: &str, service: &str, rule: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n  namespace: default\n  \
         annotations:\n    berth.dev/expose: \"true\"\nspec:\n  hosts: [{host}]\n  http:\n  - match: [{matches}]\n    \
         route:\n    - destination: {{host: {service}, port: {{number: 80}}}}\n{rule}"
    )
}

#[test]
fn the_backend_sees_the_rewritten_path_and_authority() {
    let (api, login) = (Backend::start("api"), Backend::start("login"));
    let files = [
        manifests::cluster(),
        manifests::services(&[&api, &login]),
        (
            "api.yaml",
            virtual_service(
                "api",
                "shop.example",
                "{uri: {prefix: /api}}",
                "api",
                "    rewrite: {uri: /v2, authority: api.internal:8080}\n",
            ),
        ),
        (
            "login.yaml",
            virtual_service(
                "login",
                "login.example",
                "{uri: {exact: /login}}",
                "login",
                "    rewrite: {uri: /auth/in}\n",
            ),
        ),
    ];
    let stack = Stack::start(&files);
    stack.envoy.wait_for_backend("shop.example", "/api", "api");

    let response = client::get(stack.envoy.http, "shop.example", "/api/users?id=7").unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    let seen = api.last_request().unwrap();
    assert_eq!(seen.path, "/v2/users?id=7", "the matched prefix is replaced, the rest and the query kept");
    assert_eq!(seen.header("host"), Some("api.internal:8080"), "{seen:?}");

    let response = client::get(stack.envoy.http, "login.example", "/login?next=/cart").unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    let seen = login.last_request().unwrap();
    assert_eq!(seen.path, "/auth/in?next=/cart");
    assert_eq!(seen.header("host"), Some("login.example"), "no authority rewrite: the client's host");
}

#[test]
fn a_route_timeout_answers_504_and_a_client_cannot_set_its_own_deadline_or_retries() {
    let (slow, lazy, flaky) = (Backend::start("slow"), Backend::start("lazy"), Backend::start("flaky"));
    let files = [
        manifests::cluster(),
        manifests::services(&[&slow, &lazy, &flaky]),
        ("slow.yaml", virtual_service("slow", "slow.example", "", "slow", "    timeout: 300ms\n")),
        ("lazy.yaml", virtual_service("lazy", "lazy.example", "", "lazy", "")),
        ("flaky.yaml", virtual_service("flaky", "flaky.example", "", "flaky", "")),
    ];
    let stack = Stack::start(&files);
    for (host, name) in [("slow.example", "slow"), ("lazy.example", "lazy"), ("flaky.example", "flaky")] {
        stack.envoy.wait_for_backend(host, "/", name);
    }

    slow.set_delay(Duration::from_secs(3));
    let response = client::get(stack.envoy.http, "slow.example", "/").unwrap();
    assert_eq!(response.status, 504, "{response:?}");
    assert_eq!(response.body, "upstream request timeout", "Envoy's router gave up, not the backend");

    // A route without a timeout: the client's deadline and retry headers are dropped before the filter runs.
    lazy.set_delay(Duration::from_millis(700));
    let own = [
        ("x-envoy-upstream-rq-timeout-ms", "50"),
        ("x-envoy-upstream-rq-per-try-timeout-ms", "50"),
        ("x-envoy-max-retries", "5"),
        ("x-envoy-retry-on", "5xx"),
    ];
    let response = client::request(stack.envoy.http, "GET", "lazy.example", "/", &own).unwrap();
    assert_eq!(response.status, 200, "the client's 50 ms deadline was ignored: {response:?}");
    let seen = lazy.last_request().unwrap();
    assert!(
        seen.headers.iter().all(|(name, _)| !name.starts_with("x-envoy-upstream") && !name.contains("retr")),
        "{seen:?}"
    );

    flaky.fail_next(1);
    let response = client::request(stack.envoy.http, "GET", "flaky.example", "/", &own).unwrap();
    assert_eq!(response.status, 503, "the client's retry headers were ignored: {response:?}");
    assert_eq!(flaky.hits(), flaky.requests().len() as u64);
    assert_eq!(response.header("x-backend"), Some("flaky"), "the backend's own 503, not retried");
}

#[test]
fn retries_reach_a_second_attempt_when_the_first_fails() {
    let (retried, plain) = (Backend::start("retried"), Backend::start("plain"));
    let files = [
        manifests::cluster(),
        manifests::services(&[&retried, &plain]),
        (
            "retried.yaml",
            virtual_service(
                "retried",
                "retried.example",
                "",
                "retried",
                "    retries: {attempts: 2, perTryTimeout: 2s, retryOn: 5xx}\n",
            ),
        ),
        ("plain.yaml", virtual_service("plain", "plain.example", "", "plain", "")),
    ];
    let stack = Stack::start(&files);
    stack.envoy.wait_for_backend("retried.example", "/", "retried");
    stack.envoy.wait_for_backend("plain.example", "/", "plain");

    let before = retried.hits();
    retried.fail_next(1);
    let response = client::get(stack.envoy.http, "retried.example", "/").unwrap();
    assert_eq!(response.status, 200, "the second attempt answered: {response:?}");
    assert_eq!(retried.hits() - before, 2, "one failed attempt, one retry");

    let before = plain.hits();
    plain.fail_next(1);
    let response = client::get(stack.envoy.http, "plain.example", "/").unwrap();
    assert_eq!(response.status, 503, "a route without retries is tried once: {response:?}");
    assert_eq!(plain.hits() - before, 1);
}

#[test]
fn request_and_response_headers_are_set_added_and_removed() {
    let echo = Backend::start("echo");
    let rule = "    headers:\n      request:\n        set: {x-env: prod}\n        add: {x-trace: berth}\n        \
                remove: [x-debug]\n      response:\n        set: {x-frame-options: DENY}\n        \
                add: {x-served-by: berth}\n        remove: [content-type]\n";
    let files = [
        manifests::cluster(),
        manifests::services(&[&echo]),
        ("echo.yaml", virtual_service("echo", "echo.example", "", "echo", rule)),
    ];
    let stack = Stack::start(&files);
    stack.envoy.wait_for_backend("echo.example", "/", "echo");

    let sent = [("x-env", "dev"), ("x-trace", "client"), ("x-debug", "1")];
    let response = client::request(stack.envoy.http, "GET", "echo.example", "/", &sent).unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    let seen = echo.last_request().unwrap();
    assert_eq!(seen.header_values("x-env"), ["prod"], "set replaces the client's value");
    assert_eq!(seen.header_values("x-trace"), ["client", "berth"], "add appends");
    assert!(seen.header("x-debug").is_none(), "removed: {seen:?}");

    assert_eq!(response.header("x-frame-options"), Some("DENY"));
    assert_eq!(response.header("x-served-by"), Some("berth"));
    assert!(response.header("content-type").is_none(), "removed: {response:?}");
    assert_eq!(response.header("x-backend"), Some("echo"), "other headers untouched");
}

#[test]
fn fields_berth_does_not_honour_are_warnings_in_berth_check_and_berth_routes() {
    let web = Backend::start("web");
    let mirrored = virtual_service("web", "web.example", "", "web", "    mirror: {host: shadow}\n");
    let unclear = virtual_service("other", "other.example", "", "web", "")
        .replace("berth.dev/expose: \"true\"", "berth.dev/expose: \"True\"");
    let files = [manifests::cluster(), manifests::services(&[&web]), ("web.yaml", mirrored), ("other.yaml", unclear)];
    let stack = Stack::start(&files);
    stack.envoy.wait_for_backend("web.example", "/", "web");
    let mirror_warning = "VirtualService default/web: spec.http[0].mirror: not supported by berth and ignored";
    let expose_warning = "VirtualService default/other: metadata.annotations[\"berth.dev/expose\"]: \"True\" is \
                          neither \"true\" nor \"false\", so the VirtualService is not exposed";

    let check = berth(&["check", &stack.manifests.path.to_string_lossy()]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "warnings are not errors: {out}");
    assert!(out.contains(mirror_warning) && out.contains(expose_warning), "{out}");

    let routes = wait::until("the warnings in berth routes", Duration::from_secs(10), || {
        let routes = berth(&["routes", "--controller", &stack.controller.url()]);
        let out = String::from_utf8_lossy(&routes.stdout).into_owned();
        (out.contains(mirror_warning) && out.contains(expose_warning)).then_some(out)
    });
    assert!(routes.contains("warnings:"), "{routes}");
    let response = client::get(stack.envoy.http, "other.example", "/").unwrap();
    assert_eq!(response.status, 404, "`True` does not expose: {response:?}");
}
