//! What an HTTP route does to a request besides choosing its destination: Istio's `rewrite`, `timeout`, `retries`
//! and `headers` of a VirtualService http route.
//!
//! The filter carries these out before Envoy's router sees the request: it rewrites `:path` and `:authority`,
//! edits headers, and asks the router for a deadline and retries through the router's own request headers
//! (`x-envoy-upstream-rq-timeout-ms`, `x-envoy-max-retries`, ...; see [`RoutePolicy::router_headers`]). The HTTP
//! listener strips a client's copies of those headers before the filter runs (Envoy treats every client of an
//! edge listener, `use_remote_address: true`, as external), so only the route decides them.

use serde::{Deserialize, Serialize};

use crate::PathMatch;

/// A route's request and response edits; a route without any has none at all (`HttpRoute::policy` is `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutePolicy {
    /// Replaces the part of the path the route matched (its prefix, or the whole exact path), keeping the rest
    /// and the query: Istio `rewrite.uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_uri: Option<String>,
    /// Replaces the request's `:authority` (the `Host` the backend sees): Istio `rewrite.authority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_authority: Option<String>,
    /// The whole request's deadline, retries included, in milliseconds; 0 means none: Istio `timeout`. Without
    /// it the listener's route decides (Berth renders none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    #[serde(default, skip_serializing_if = "HeaderEdits::is_empty")]
    pub request_headers: HeaderEdits,
    #[serde(default, skip_serializing_if = "HeaderEdits::is_empty")]
    pub response_headers: HeaderEdits,
}

/// Istio `retries`, already in the words of Envoy's router headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retries {
    /// Retries after the first attempt (`x-envoy-max-retries`).
    pub attempts: u32,
    /// Each attempt's deadline in milliseconds (`x-envoy-upstream-rq-per-try-timeout-ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout_ms: Option<u64>,
    /// Envoy's HTTP retry conditions, comma-separated (`x-envoy-retry-on`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub retry_on: String,
    /// Envoy's gRPC retry conditions (`x-envoy-retry-grpc-on`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub grpc_retry_on: String,
    /// Status codes that are retried, comma-separated (`x-envoy-retriable-status-codes`, with
    /// `retriable-status-codes` in `retry_on`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status_codes: String,
}

/// Header edits, applied in this order: `set` (replace or add), `add` (append another value), `remove`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderEdits {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// The router's request headers: read by Envoy's router, set by the filter.
pub const TIMEOUT_HEADER: &str = "x-envoy-upstream-rq-timeout-ms";
pub const PER_TRY_TIMEOUT_HEADER: &str = "x-envoy-upstream-rq-per-try-timeout-ms";
pub const MAX_RETRIES_HEADER: &str = "x-envoy-max-retries";
pub const RETRY_ON_HEADER: &str = "x-envoy-retry-on";
pub const RETRY_GRPC_ON_HEADER: &str = "x-envoy-retry-grpc-on";
pub const RETRIABLE_STATUS_CODES_HEADER: &str = "x-envoy-retriable-status-codes";

impl RoutePolicy {
    /// Whether the policy does anything; the compiler leaves an empty one out of the table.
    pub fn is_empty(&self) -> bool {
        *self == RoutePolicy::default()
    }

    /// The router headers that carry out `timeout_ms` and `retries`, to set on the request.
    pub fn router_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if let Some(timeout) = self.timeout_ms {
            headers.push((TIMEOUT_HEADER, timeout.to_string()));
        }
        if let Some(retries) = &self.retries {
            headers.push((MAX_RETRIES_HEADER, retries.attempts.to_string()));
            if let Some(per_try) = retries.per_try_timeout_ms {
                headers.push((PER_TRY_TIMEOUT_HEADER, per_try.to_string()));
            }
            for (name, value) in [
                (RETRY_ON_HEADER, &retries.retry_on),
                (RETRY_GRPC_ON_HEADER, &retries.grpc_retry_on),
                (RETRIABLE_STATUS_CODES_HEADER, &retries.status_codes),
            ] {
                if !value.is_empty() {
                    headers.push((name, value.clone()));
                }
            }
        }
        headers
    }
}

/// Envoy's HTTP retry conditions (`x-envoy-retry-on`) that Istio's `retryOn` passes through.
const HTTP_RETRY_ON: [&str; 10] = [
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "http3-post-connect-failure",
];
/// Envoy's gRPC retry conditions (`x-envoy-retry-grpc-on`).
const GRPC_RETRY_ON: [&str; 5] = ["cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"];

/// Istio's default `retryOn` when a route sets `retries` without one.
pub const ISTIO_DEFAULT_RETRY_ON: &str = "connect-failure,refused-stream,unavailable,cancelled,503";

/// Reads Istio's `retryOn` (Envoy's HTTP and gRPC conditions and HTTP status codes, comma-separated) into
/// `retries`; the error names the first word that is none of those.
pub fn parse_retry_on(text: &str, retries: &mut Retries) -> Result<(), String> {
    let (mut http, mut grpc, mut codes) = (Vec::new(), Vec::new(), Vec::new());
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if HTTP_RETRY_ON.contains(&word) {
            http.push(word);
        } else if GRPC_RETRY_ON.contains(&word) {
            grpc.push(word);
        } else if word.parse::<u16>().is_ok_and(|code| (100..=599).contains(&code)) {
            codes.push(word);
        } else {
            return Err(format!(
                "{word:?} is not a retry condition; use Envoy's ({}), gRPC's ({}) or an HTTP status code",
                HTTP_RETRY_ON.join(", "),
                GRPC_RETRY_ON.join(", ")
            ));
        }
    }
    if !codes.is_empty() && !http.contains(&"retriable-status-codes") {
        http.push("retriable-status-codes");
    }
    retries.retry_on = http.join(",");
    retries.grpc_retry_on = grpc.join(",");
    retries.status_codes = codes.join(",");
    Ok(())
}

/// The request path after `rewrite.uri`: the part `matched` matched replaced by `replacement`, what follows it
/// (the rest of a prefix match, the query) kept. `path` is the request's whole `:path`.
pub fn rewrite_path(path: &str, matched: &PathMatch, replacement: &str) -> String {
    let length = match matched {
        // The exact path matched everything before the query.
        PathMatch::Exact(_) => path.find('?').unwrap_or(path.len()),
        PathMatch::Prefix(prefix) | PathMatch::Segments(prefix) => prefix.len(),
    };
    let rest = path.get(length..).unwrap_or_default();
    let mut rewritten = String::with_capacity(replacement.len() + rest.len());
    rewritten.push_str(replacement);
    rewritten.push_str(rest);
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_rewrite_replaces_the_prefix_and_keeps_the_rest_and_the_query() {
        let prefix = PathMatch::Prefix("/api".into());
        assert_eq!(rewrite_path("/api/users?x=1", &prefix, "/v2"), "/v2/users?x=1");
        assert_eq!(rewrite_path("/apix", &prefix, "/v2"), "/v2x", "a plain string prefix, as in Envoy and Istio");
        assert_eq!(rewrite_path("/api", &prefix, "/"), "/");
        assert_eq!(rewrite_path("/a/b", &PathMatch::Prefix("/".into()), "/app/"), "/app/a/b");
    }

    #[test]
    fn an_exact_rewrite_replaces_the_path_and_keeps_the_query() {
        let exact = PathMatch::Exact("/login".into());
        assert_eq!(rewrite_path("/login?next=/", &exact, "/auth/login"), "/auth/login?next=/");
        assert_eq!(rewrite_path("/login", &exact, "/auth/login"), "/auth/login");
    }

    #[test]
    fn a_path_shorter_than_its_match_does_not_panic() {
        assert_eq!(rewrite_path("/a", &PathMatch::Prefix("/abc".into()), "/x"), "/x");
        assert_eq!(rewrite_path("/é", &PathMatch::Prefix("/\u{c3}".into()), "/x"), "/x", "not a char boundary");
    }

    #[test]
    fn retry_on_splits_into_envoys_three_headers() {
        let mut retries = Retries { attempts: 2, ..Retries::default() };
        parse_retry_on(ISTIO_DEFAULT_RETRY_ON, &mut retries).unwrap();
        assert_eq!(retries.retry_on, "connect-failure,refused-stream,retriable-status-codes");
        assert_eq!(retries.grpc_retry_on, "unavailable,cancelled");
        assert_eq!(retries.status_codes, "503");
        parse_retry_on("5xx, reset", &mut retries).unwrap();
        assert_eq!((retries.retry_on.as_str(), retries.grpc_retry_on.as_str()), ("5xx,reset", ""));
        let err = parse_retry_on("5xx,sometimes", &mut retries).unwrap_err();
        assert!(err.starts_with("\"sometimes\" is not a retry condition"), "{err}");
        assert!(parse_retry_on("99", &mut retries).is_err());
    }

    #[test]
    fn router_headers_carry_the_timeout_and_retries_and_nothing_else() {
        assert!(RoutePolicy::default().router_headers().is_empty());
        let mut retries = Retries { attempts: 3, per_try_timeout_ms: Some(500), ..Retries::default() };
        parse_retry_on("5xx,503", &mut retries).unwrap();
        let policy = RoutePolicy { timeout_ms: Some(2000), retries: Some(retries), ..RoutePolicy::default() };
        let expected = [
            (TIMEOUT_HEADER, "2000"),
            (MAX_RETRIES_HEADER, "3"),
            (PER_TRY_TIMEOUT_HEADER, "500"),
            (RETRY_ON_HEADER, "5xx,retriable-status-codes"),
            (RETRIABLE_STATUS_CODES_HEADER, "503"),
        ];
        assert_eq!(policy.router_headers(), expected.map(|(name, value)| (name, value.to_string())));
    }
}
