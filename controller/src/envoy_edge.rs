//! What Berth's Envoy pieces need to sit at the edge of a network: the connection limits of its `ORIGINAL_DST`
//! clusters and the HTTP connection manager's timeouts, path handling and protocol limits, following Envoy's
//! "Configuring Envoy as an edge proxy" and Istio's gateway defaults. Shared by `berth envoy-config` and `berth
//! istio-config`, so the two render the same settings.

use std::time::Duration;

use serde_json::{Value, json};

/// Envoy's default circuit breakers (1,024 connections, pending and active requests, 3 retries) would cap the whole
/// ingress; like Istio's gateways (`getDefaultCircuitBreakerThresholds`, every threshold `math.MaxUint32`), Berth's
/// clusters are unlimited as a whole and one endpoint is capped instead.
pub const UNLIMITED: u32 = u32::MAX;
/// Upstream connections one endpoint may hold per Envoy by default; beyond, its HTTP requests wait for a connection
/// and its TCP and TLS connections wait, while every other endpoint is unaffected.
pub const DEFAULT_ENDPOINT_MAX_CONNECTIONS: u32 = 10_000;
/// Client connections one Envoy accepts at most by default (the overload manager's global limit); beyond, new ones
/// are closed at accept, so Envoy never runs out of file descriptors.
pub const DEFAULT_MAX_DOWNSTREAM_CONNECTIONS: u64 = 50_000;
/// How long a client may take to send a request's headers by default: a connection that never finishes them is
/// closed rather than held (slowloris).
pub const DEFAULT_REQUEST_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
/// The Host of an HTTP/1.0 request that has none: a name no DNS resolves (RFC 6761), so such requests reach the
/// routes without a host and the default backend, or a route for this very name.
pub const HTTP10_DEFAULT_HOST: &str = "http10.invalid";
/// Buffered bytes per connection, each way (Envoy's edge recommendation; its default is 1 MiB).
pub const CONNECTION_BUFFER_LIMIT: u32 = 32 * 1024;
/// What a client sees for a path with `;` (the local reply's `x-berth` header).
pub const PATH_SEMICOLON: &str = "path-semicolon";

/// The limits and timeouts a deployment may tune (`berth envoy-config` and `berth istio-config` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSettings {
    /// Per Berth cluster (HTTP, TCP, TLS each): connections to all endpoints together.
    pub cluster_max_connections: u32,
    /// Per Berth cluster: HTTP requests waiting for a connection.
    pub cluster_max_pending_requests: u32,
    /// Per Berth cluster: requests in flight.
    pub cluster_max_requests: u32,
    /// Per Berth cluster: retries in flight.
    pub cluster_max_retries: u32,
    /// Per endpoint: connections to it (`per_host_thresholds`).
    pub endpoint_max_connections: u32,
    /// Per Envoy: client connections (`berth envoy-config` only: the overload manager lives in the bootstrap).
    pub max_downstream_connections: u64,
    /// How long a client may take to send a request's headers.
    pub request_headers_timeout: Duration,
    /// Proxies in front of Envoy whose `x-forwarded-for` entries are trusted (0: the peer is the client).
    pub xff_num_trusted_hops: u32,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        EdgeSettings {
            cluster_max_connections: UNLIMITED,
            cluster_max_pending_requests: UNLIMITED,
            cluster_max_requests: UNLIMITED,
            cluster_max_retries: UNLIMITED,
            endpoint_max_connections: DEFAULT_ENDPOINT_MAX_CONNECTIONS,
            max_downstream_connections: DEFAULT_MAX_DOWNSTREAM_CONNECTIONS,
            request_headers_timeout: DEFAULT_REQUEST_HEADERS_TIMEOUT,
            xff_num_trusted_hops: 0,
        }
    }
}

impl EdgeSettings {
    /// An `ORIGINAL_DST` cluster named `name` with these limits. The destination comes only from the filter state
    /// the filter sets (`envoy.network.transport_socket.original_dst_address`). No `use_http_header`: with it, a
    /// client's `x-envoy-original-dst-host` header could pick any destination.
    pub fn original_dst_cluster(&self, name: &str) -> Value {
        json!({
            "name": name,
            "type": "ORIGINAL_DST",
            "lb_policy": "CLUSTER_PROVIDED",
            "connect_timeout": "5s",
            "per_connection_buffer_limit_bytes": CONNECTION_BUFFER_LIMIT,
            "circuit_breakers": {
                "thresholds": [{
                    "max_connections": self.cluster_max_connections,
                    "max_pending_requests": self.cluster_max_pending_requests,
                    "max_requests": self.cluster_max_requests,
                    "max_retries": self.cluster_max_retries,
                    // `remaining_*` gauges under `cluster.<name>.circuit_breakers.default`, to see how close it is.
                    "track_remaining": true,
                }],
                // The only per-host threshold Envoy supports. An endpoint at its limit makes its own HTTP requests
                // queue (pending) and its own TCP connections wait; other endpoints keep their connections.
                "per_host_thresholds": [{ "max_connections": self.endpoint_max_connections }],
            },
        })
    }

    /// The HTTP connection manager's edge settings, merged into Berth's HTTP listener.
    pub fn http_connection_manager(&self) -> Value {
        json!({
            // An edge proxy: the client's address is the peer's (or, behind `xff_num_trusted_hops` proxies of
            // the operator's, the one they saw), not whatever x-forwarded-for claims.
            // Every client is then external (Envoy 1.40 counts no address as internal unless told), so the
            // connection manager drops a client's `x-envoy-*` router headers (deadline, retries) before the
            // filter sets a route's own (tests/tests/route_policy.rs).
            "use_remote_address": true,
            "xff_num_trusted_hops": self.xff_num_trusted_hops,
            // The filter matches routes on the path the backend will receive: dot segments resolved (`/a/../b` is
            // `/b`), repeated slashes merged (`//admin` is `/admin`), and escaped slashes (`%2F`, `%5C`), which
            // many servers decode into separators, answered with a redirect to the unescaped, normalized path, so
            // a client reaches the route that path belongs to and no backend reads a path Berth did not match.
            "normalize_path": true,
            "merge_slashes": true,
            "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
            "request_headers_timeout": duration(self.request_headers_timeout),
            // Envoy's defaults, written out: a stream without a byte for 5 minutes and a connection without a
            // stream for an hour are closed. No overall request timeout: long polls, streams, websockets.
            "stream_idle_timeout": "300s",
            "common_http_protocol_options": {
                "idle_timeout": "3600s",
                // `x_user` and `x-user` are one variable to CGI-style backends: drop the underscored one, as
                // nginx does by default, so a client cannot smuggle a header past one Envoy sanitizes.
                "headers_with_underscores_action": "DROP_HEADER",
            },
            // nginx and every other ingress serve HTTP/1.0; Envoy answers 426 unless told otherwise.
            "http_protocol_options": { "accept_http_10": true, "default_host_for_http_10": HTTP10_DEFAULT_HOST },
            "http2_protocol_options": {
                "max_concurrent_streams": 100,
                "initial_stream_window_size": 65_536,
                "initial_connection_window_size": 1_048_576,
            },
        })
    }

    /// The bootstrap's overload manager: a global cap on client connections.
    pub fn overload_manager(&self) -> Value {
        json!({
            "resource_monitors": [{
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": self.max_downstream_connections,
                },
            }],
        })
    }
}

/// The route answering 400 to a path with `;`. Servers disagree on `;`: Tomcat, Jetty and Spring read `/admin;x`
/// and `/;/admin` as `/admin` (path parameters), most others as a segment `admin;x`. Matching either way would send
/// some such requests to a backend that serves them as another route's path, so Berth refuses them (in the path
/// only; a `;` in the query string is the application's business, and `%3B` is a plain character to every server).
/// Envoy matches the regex against the path without its query string.
pub fn path_semicolon_route() -> Value {
    json!({
        "name": "berth_path_semicolon",
        "match": { "safe_regex": { "regex": ".*;.*" } },
        "direct_response": {
            "status": 400,
            "body": { "inline_string": "berth: ';' is not allowed in the path; percent-encode it as %3B\n" },
        },
        "response_headers_to_add": [{ "header": { "key": "x-berth", "value": PATH_SEMICOLON } }],
    })
}

/// An Envoy duration: whole seconds, or seconds with a fraction.
fn duration(value: Duration) -> String {
    if value.subsec_nanos() == 0 { format!("{}s", value.as_secs()) } else { format!("{}s", value.as_secs_f64()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_are_unlimited_as_a_whole_like_istios_gateways_and_capped_per_endpoint() {
        let cluster = EdgeSettings::default().original_dst_cluster("c");
        assert_eq!(cluster["type"], "ORIGINAL_DST");
        assert_eq!(cluster["lb_policy"], "CLUSTER_PROVIDED");
        let thresholds = &cluster["circuit_breakers"]["thresholds"][0];
        for key in ["max_connections", "max_pending_requests", "max_requests", "max_retries"] {
            assert_eq!(thresholds[key], 4_294_967_295u64, "{key}");
        }
        assert_eq!(cluster["circuit_breakers"]["per_host_thresholds"][0]["max_connections"], 10_000);
        assert_eq!(cluster["per_connection_buffer_limit_bytes"], 32_768);
    }

    #[test]
    fn limits_come_from_the_settings() {
        let edge = EdgeSettings {
            cluster_max_connections: 5,
            cluster_max_pending_requests: 6,
            cluster_max_requests: 7,
            cluster_max_retries: 8,
            endpoint_max_connections: 9,
            ..EdgeSettings::default()
        };
        let breakers = &edge.original_dst_cluster("c")["circuit_breakers"];
        let thresholds = &breakers["thresholds"][0];
        let values: Vec<&Value> = ["max_connections", "max_pending_requests", "max_requests", "max_retries"]
            .iter()
            .map(|k| &thresholds[k])
            .collect();
        assert_eq!(values, [5, 6, 7, 8]);
        assert_eq!(breakers["per_host_thresholds"][0]["max_connections"], 9);
    }

    #[test]
    fn the_connection_manager_normalizes_paths_bounds_headers_and_serves_http10() {
        let edge = EdgeSettings {
            request_headers_timeout: Duration::from_millis(1500),
            xff_num_trusted_hops: 2,
            ..EdgeSettings::default()
        };
        let hcm = edge.http_connection_manager();
        assert_eq!(hcm["merge_slashes"], true);
        assert_eq!(hcm["normalize_path"], true);
        assert_eq!(hcm["path_with_escaped_slashes_action"], "UNESCAPE_AND_REDIRECT");
        assert_eq!(hcm["request_headers_timeout"], "1.5s");
        assert_eq!(hcm["xff_num_trusted_hops"], 2);
        assert_eq!(hcm["use_remote_address"], true);
        assert_eq!(hcm["http_protocol_options"]["accept_http_10"], true);
        assert_eq!(hcm["http_protocol_options"]["default_host_for_http_10"], HTTP10_DEFAULT_HOST);
        assert_eq!(hcm["http2_protocol_options"]["max_concurrent_streams"], 100);
        assert_eq!(EdgeSettings::default().http_connection_manager()["request_headers_timeout"], "10s");
    }

    #[test]
    fn the_overload_manager_caps_client_connections() {
        let edge = EdgeSettings { max_downstream_connections: 123, ..EdgeSettings::default() };
        let monitor = &edge.overload_manager()["resource_monitors"][0];
        assert_eq!(monitor["name"], "envoy.resource_monitors.global_downstream_max_connections");
        assert_eq!(monitor["typed_config"]["max_active_downstream_connections"], 123);
    }

    #[test]
    fn a_semicolon_anywhere_in_the_path_is_answered_400() {
        let route = path_semicolon_route();
        assert_eq!(route["match"]["safe_regex"]["regex"], ".*;.*");
        assert_eq!(route["direct_response"]["status"], 400);
    }
}
