//! Reading Prometheus text: the controller's `/metrics` and Envoy's `/stats/prometheus`.

use std::net::SocketAddr;

use crate::client;

/// The Prometheus text served at `path` (`/metrics`, `/stats/prometheus`) by the server at `addr`.
pub fn scrape(addr: SocketAddr, path: &str) -> String {
    let response = client::get(addr, "metrics", path).unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"));
    assert_eq!(response.status, 200, "GET {path}: {}", response.body);
    response.body
}

/// The value of the sample written exactly `name` (its labels included, as served: `berth_routes{protocol="http"}`),
/// or none when there is no such sample.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

/// Every sample of the metric `metric` (any labels), as `(name with labels, value)`.
pub fn samples(text: &str, metric: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|line| line.strip_prefix(metric).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}
