//! A VirtualService http route's `rewrite`, `timeout`, `retries` and `headers` → the table's [`RoutePolicy`], and
//! the fields of a route Berth does not honour → warnings.
//!
//! Istio's meaning is kept: `rewrite.uri` replaces the matched prefix (or exact path), `retries` without `retryOn`
//! retries on Istio's default conditions, `attempts: 0` means no retries. A malformed value is an error of the
//! object (served wrongly is worse than not served); a field Berth does without (`mirror`, `corsPolicy`,
//! `rewrite.uriRegexRewrite`, a destination's own `headers`, ...) is a warning: the route is served without it.

use std::collections::BTreeMap;

use berth_table::{HeaderEdits, ISTIO_DEFAULT_RETRY_ON, Retries, RoutePolicy, parse_retry_on};

use super::Problem;
use crate::objects::health_check::parse_duration;
use crate::objects::{HeaderOperations, HttpRule, RouteDestination};

/// The policy of `http[i]`, none when it sets nothing; problems and warnings are pushed with their fields.
pub fn policy(
    rule: &HttpRule,
    i: usize,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<RoutePolicy> {
    let at = format!("spec.http[{i}]");
    let mut policy = RoutePolicy::default();
    if let Some(rewrite) = &rule.rewrite {
        if let Some(uri) = &rewrite.uri {
            match check_path(uri) {
                Ok(()) => policy.rewrite_uri = Some(uri.clone()),
                Err(message) => problems.push(Problem::new(format!("{at}.rewrite.uri"), message)),
            }
        }
        if let Some(authority) = &rewrite.authority {
            match check_authority(authority) {
                Ok(()) => policy.rewrite_authority = Some(authority.clone()),
                Err(message) => problems.push(Problem::new(format!("{at}.rewrite.authority"), message)),
            }
        }
        not_honoured(&rewrite.other, &format!("{at}.rewrite"), warnings);
    }
    if let Some(timeout) = &rule.timeout {
        policy.timeout_ms = millis(timeout, &format!("{at}.timeout"), problems);
    }
    if let Some(retries) = &rule.retries {
        policy.retries = self::retries(retries, &format!("{at}.retries"), problems);
        not_honoured(&retries.other, &format!("{at}.retries"), warnings);
    }
    if let Some(headers) = &rule.headers {
        if let Some(request) = &headers.request {
            policy.request_headers = edits(request, &format!("{at}.headers.request"), true, problems);
        }
        if let Some(response) = &headers.response {
            policy.response_headers = edits(response, &format!("{at}.headers.response"), false, problems);
        }
    }
    let ignored = rule.other.iter().filter(|(field, _)| field.as_str() != "name");
    not_honoured(&ignored.map(|(k, v)| (k.clone(), v.clone())).collect(), &at, warnings);
    destinations_not_honoured(&rule.route, &at, warnings);
    (!policy.is_empty()).then_some(policy)
}

/// Warns about each field of `other`, found at `at`: Berth serves the route without it.
pub fn not_honoured(other: &BTreeMap<String, serde_yaml::Value>, at: &str, warnings: &mut Vec<Problem>) {
    for field in other.keys() {
        let message = "not supported by berth and ignored: the route is served without it";
        warnings.push(Problem::new(format!("{at}.{field}"), message));
    }
}

/// Warns about the fields of each destination of a route list at `at` that Berth does not honour.
pub fn destinations_not_honoured(route: &[RouteDestination], at: &str, warnings: &mut Vec<Problem>) {
    for (k, destination) in route.iter().enumerate() {
        not_honoured(&destination.other, &format!("{at}.route[{k}]"), warnings);
    }
}

fn millis(text: &str, field: &str, problems: &mut Vec<Problem>) -> Option<u64> {
    match parse_duration(text) {
        Ok(duration) => Some(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
        Err(message) => {
            problems.push(Problem::new(field, message));
            None
        }
    }
}

fn retries(retries: &crate::objects::Retries, at: &str, problems: &mut Vec<Problem>) -> Option<Retries> {
    let per_try_timeout_ms = match &retries.per_try_timeout {
        Some(text) => millis(text, &format!("{at}.perTryTimeout"), problems),
        None => None,
    };
    let mut table = Retries { per_try_timeout_ms, ..Retries::default() };
    let retry_on = retries.retry_on.as_deref().unwrap_or(ISTIO_DEFAULT_RETRY_ON);
    if let Err(message) = parse_retry_on(retry_on, &mut table) {
        problems.push(Problem::new(format!("{at}.retryOn"), message));
    }
    match retries.attempts {
        // As in Istio: no attempts, no retries.
        None | Some(0) => None,
        Some(attempts) => match u32::try_from(attempts) {
            Ok(attempts) => Some(Retries { attempts, ..table }),
            Err(_) => {
                problems.push(Problem::new(format!("{at}.attempts"), format!("{attempts} is not a number of retries")));
                None
            }
        },
    }
}

/// `request` is whether these edit the request, where Envoy's own headers (`x-envoy-*`) are refused: the
/// router reads its deadline and retries from them, which `timeout` and `retries` set.
fn edits(operations: &HeaderOperations, at: &str, request: bool, problems: &mut Vec<Problem>) -> HeaderEdits {
    let mut edits = HeaderEdits::default();
    for (op, map, list) in [("set", &operations.set, &mut edits.set), ("add", &operations.add, &mut edits.add)] {
        for (name, value) in map {
            match check_header(name, value, request) {
                Ok(()) => list.push((name.to_ascii_lowercase(), value.clone())),
                Err(message) => problems.push(Problem::new(format!("{at}.{op}[{name:?}]"), message)),
            }
        }
    }
    for (k, name) in operations.remove.iter().enumerate() {
        match check_header(name, "", request) {
            Ok(()) => edits.remove.push(name.to_ascii_lowercase()),
            Err(message) => problems.push(Problem::new(format!("{at}.remove[{k}]"), message)),
        }
    }
    edits
}

fn check_header(name: &str, value: &str, request: bool) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with(':') || lower == "host" {
        return Err(format!("{name:?} cannot be edited here; use rewrite.authority and rewrite.uri"));
    }
    if request && lower.starts_with("x-envoy-") {
        return Err(format!(
            "{name:?} is one of Envoy's own request headers, which berth sets from timeout and retries; use those"
        ));
    }
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("{name:?} is not a header name"));
    }
    // A value goes into a header line: a line break in it would start another header.
    if value.contains(['\r', '\n', '\0']) {
        return Err(format!("the value of {name:?} contains a line break or NUL"));
    }
    Ok(())
}

/// An absolute path without spaces or control characters: it becomes the start of the request's path.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an absolute path; start it with /"));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{path:?} contains spaces or control characters; percent-encode them"));
    }
    Ok(())
}

fn check_authority(authority: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._:[]".contains(c);
    if authority.is_empty() || !authority.chars().all(allowed) {
        return Err(format!("{authority:?} is not a host name (with an optional :port)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> HttpRule {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn compile(yaml: &str) -> (Option<RoutePolicy>, Vec<String>, Vec<String>) {
        let (mut problems, mut warnings) = (Vec::new(), Vec::new());
        let policy = policy(&rule(yaml), 0, &mut problems, &mut warnings);
        let text =
            |list: Vec<Problem>| list.into_iter().map(|p| format!("{}: {}", p.field.unwrap(), p.message)).collect();
        (policy, text(problems), text(warnings))
    }

    #[test]
    fn a_route_without_policy_fields_has_no_policy() {
        assert_eq!(compile("route: [{destination: {host: web}}]\nname: main"), (None, vec![], vec![]));
    }

    #[test]
    fn every_supported_field_reaches_the_policy() {
        let (policy, problems, warnings) = compile(
            "route: [{destination: {host: web}}]\nrewrite: {uri: /v2, authority: web.internal}\ntimeout: 1.5s\n\
             retries: {attempts: 3, perTryTimeout: 500ms, retryOn: '5xx,503'}\n\
             headers:\n  request: {set: {X-Env: prod}, add: {x-trace: berth}, remove: [x-debug]}\n  \
             response: {remove: [server]}\n",
        );
        assert_eq!((problems, warnings), (vec![], vec![]));
        let policy = policy.unwrap();
        assert_eq!(policy.rewrite_uri.as_deref(), Some("/v2"));
        assert_eq!(policy.rewrite_authority.as_deref(), Some("web.internal"));
        assert_eq!(policy.timeout_ms, Some(1500));
        let retries = policy.retries.unwrap();
        assert_eq!((retries.attempts, retries.per_try_timeout_ms), (3, Some(500)));
        assert_eq!((retries.retry_on.as_str(), retries.status_codes.as_str()), ("5xx,retriable-status-codes", "503"));
        assert_eq!(policy.request_headers.set, [("x-env".to_string(), "prod".to_string())]);
        assert_eq!(policy.request_headers.add, [("x-trace".to_string(), "berth".to_string())]);
        assert_eq!(policy.request_headers.remove, ["x-debug"]);
        assert_eq!(policy.response_headers.remove, ["server"]);
    }

    #[test]
    fn retries_follow_istio_defaults() {
        let (policy, ..) = compile("route: [{destination: {host: web}}]\nretries: {attempts: 2}");
        let retries = policy.unwrap().retries.unwrap();
        assert_eq!(retries.retry_on, "connect-failure,refused-stream,retriable-status-codes");
        assert_eq!((retries.grpc_retry_on.as_str(), retries.status_codes.as_str()), ("unavailable,cancelled", "503"));
        let (policy, problems, _) = compile("route: [{destination: {host: web}}]\nretries: {attempts: 0}");
        assert_eq!((policy, problems), (None, vec![]), "attempts 0 disables retries");
    }

    #[test]
    fn malformed_values_are_errors_naming_the_field() {
        let (_, problems, _) = compile(
            "route: [{destination: {host: web}}]\nrewrite: {uri: 'v2 x', authority: 'a b'}\ntimeout: soon\n\
             retries: {attempts: -1, retryOn: often}\nheaders:\n  request: {set: {':path': /x, x-envoy-max-retries: '9'}}\n",
        );
        let fields: Vec<&str> = problems.iter().map(|p| p.split(": ").next().unwrap()).collect();
        assert_eq!(
            fields,
            [
                "spec.http[0].rewrite.uri",
                "spec.http[0].rewrite.authority",
                "spec.http[0].timeout",
                "spec.http[0].retries.retryOn",
                "spec.http[0].retries.attempts",
                "spec.http[0].headers.request.set[\":path\"]",
                "spec.http[0].headers.request.set[\"x-envoy-max-retries\"]",
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn fields_berth_does_without_are_warnings() {
        let (policy, problems, warnings) = compile(
            "route: [{destination: {host: web}, headers: {request: {set: {a: b}}}}]\nmirror: {host: shadow}\n\
             corsPolicy: {allowOrigins: [{exact: x}]}\nrewrite: {uriRegexRewrite: {match: a, rewrite: b}}\n\
             retries: {attempts: 1, retryRemoteLocalities: true}\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(policy.is_some(), "the retries still apply");
        assert_eq!(
            warnings,
            [
                "spec.http[0].rewrite.uriRegexRewrite: not supported by berth and ignored: the route is served without it",
                "spec.http[0].retries.retryRemoteLocalities: not supported by berth and ignored: the route is served \
                 without it",
                "spec.http[0].corsPolicy: not supported by berth and ignored: the route is served without it",
                "spec.http[0].mirror: not supported by berth and ignored: the route is served without it",
                "spec.http[0].route[0].headers: not supported by berth and ignored: the route is served without it",
            ]
        );
    }
}
