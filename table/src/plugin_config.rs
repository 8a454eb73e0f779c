//! The filter's plugin configuration: the JSON string Envoy passes to each wasm filter as `configuration`. The
//! controller renders it (`berth envoy-config`, `berth istio-config`) and the filter parses it with these same
//! types, so the two cannot drift.
//!
//! HTTP filter: `{"role":"http","fetch":{...},"unknown_host":"not_found"}`; TCP (network) filter:
//! `{"role":"tcp","fetch":{...}}`; TLS passthrough (network) filter: `{"role":"tls","fetch":{...}}`. `fetch` says how
//! to reach the controller, for the root context that becomes the Envoy's one table fetcher (any of them may; see
//! the filter's `election` module): `{"cluster":"berth_controller","authority":"berth-controller",
//! "path":"/v1/table","wait_seconds":30,"retry_ms":500}`, every key optional with those defaults, `fetch` itself too.
//! Unknown roles, unknown keys and out-of-range values are errors, so a typo fails `on_configure` loudly instead of
//! running with a default nobody asked for.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One filter's plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum PluginConfig {
    /// The HTTP filter: routes each request by Host and path.
    Http(HttpPluginConfig),
    /// The network filter: routes each connection by the local port it arrived on.
    Tcp(StreamPluginConfig),
    /// The network filter behind `tls_inspector`: routes each connection by its TLS server name (SNI).
    Tls(StreamPluginConfig),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpPluginConfig {
    pub fetch: FetchConfig,
    pub unknown_host: UnknownHost,
    /// Berth's `ORIGINAL_DST` cluster as this listener's routes name it. With `unknown_host: continue`, a request
    /// for a host the table does not know whose route goes to this cluster is still answered 404: that cluster
    /// would otherwise send it to the connection's own destination, Envoy's listener.
    pub original_dst_cluster: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamPluginConfig {
    pub fetch: FetchConfig,
}

/// What the HTTP filter does with a request for a host that no route of the table (nor its default backend)
/// serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownHost {
    /// Answer 404 with `x-berth: no-route` (Berth owns the listener).
    #[default]
    NotFound,
    /// Leave the request to the rest of the filter chain and the listener's own routes, without a destination
    /// (Berth shares the listener with other routes, e.g. an Istio gateway's).
    Continue,
}

/// How the elected fetcher reaches the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    /// The Envoy cluster that reaches the controller.
    pub cluster: String,
    /// The `:authority` sent to the controller.
    pub authority: String,
    /// The table endpoint's path, without a query string.
    pub path: String,
    /// How long the controller may hold a request when nothing changed.
    pub wait_seconds: u32,
    /// How soon a failed fetch is retried.
    pub retry_ms: u32,
}

/// The controller cluster's name in every config Berth renders.
pub const DEFAULT_CONTROLLER_CLUSTER: &str = "berth_controller";
/// Berth's `ORIGINAL_DST` cluster's name in every config Berth renders.
pub const DEFAULT_ORIGINAL_DST_CLUSTER: &str = "berth_original_dst";

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            cluster: DEFAULT_CONTROLLER_CLUSTER.into(),
            authority: "berth-controller".into(),
            path: "/v1/table".into(),
            wait_seconds: 30,
            retry_ms: 500,
        }
    }
}

impl Default for HttpPluginConfig {
    fn default() -> Self {
        HttpPluginConfig {
            fetch: FetchConfig::default(),
            unknown_host: UnknownHost::default(),
            original_dst_cluster: DEFAULT_ORIGINAL_DST_CLUSTER.into(),
        }
    }
}

/// Beyond the controller's hold time, how long a fetch may take before Envoy gives up on it.
const FETCH_GRACE: Duration = Duration::from_secs(5);

impl FetchConfig {
    /// The `dispatch_http_call` timeout: longer than the hold, so a held request ends in a 304, not a timeout.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.wait_seconds)) + FETCH_GRACE
    }

    pub fn retry(&self) -> Duration {
        Duration::from_millis(u64::from(self.retry_ms))
    }

    fn validate(&self) -> Result<(), String> {
        if self.cluster.is_empty() {
            return Err("fetch \"cluster\" is empty: name the Envoy cluster that reaches the controller".into());
        }
        if self.authority.is_empty() {
            return Err("fetch \"authority\" is empty".into());
        }
        if !self.path.starts_with('/') || self.path.contains(['?', '#']) {
            return Err(format!("fetch \"path\" {:?} must start with / and carry no query string", self.path));
        }
        if self.wait_seconds > 3600 {
            return Err(format!("fetch \"wait_seconds\" {} is over 3600", self.wait_seconds));
        }
        if !(10..=600_000).contains(&self.retry_ms) {
            return Err(format!("fetch \"retry_ms\" {} is outside 10..=600000", self.retry_ms));
        }
        Ok(())
    }
}

impl PluginConfig {
    /// Parses a plugin configuration; the error says what is wrong and what is expected.
    pub fn parse(bytes: &[u8]) -> Result<PluginConfig, String> {
        let config: PluginConfig = serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "plugin configuration {:?} is not valid: {e}; expected JSON like {{\"role\":\"http\"}}, \
                 {{\"role\":\"tcp\"}} or {{\"role\":\"tls\"}}, with optional \"fetch\":{{\"cluster\":\"{}\",...}} \
                 (the standalone \"fetcher\" role is gone: every filter fetches, one at a time)",
                String::from_utf8_lossy(bytes),
                DEFAULT_CONTROLLER_CLUSTER
            )
        })?;
        config.fetch().validate()?;
        if let PluginConfig::Http(http) = &config
            && http.original_dst_cluster.is_empty()
        {
            return Err("\"original_dst_cluster\" is empty: name Berth's ORIGINAL_DST cluster".into());
        }
        Ok(config)
    }

    /// The JSON Envoy passes as the plugin's `configuration`.
    pub fn to_json(&self) -> String {
        // Plain strings, numbers and enums: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn fetch(&self) -> &FetchConfig {
        match self {
            PluginConfig::Http(http) => &http.fetch,
            PluginConfig::Tcp(stream) | PluginConfig::Tls(stream) => &stream.fetch,
        }
    }

    /// The role's name, as in the JSON.
    pub fn role(&self) -> &'static str {
        match self {
            PluginConfig::Http(_) => "http",
            PluginConfig::Tcp(_) => "tcp",
            PluginConfig::Tls(_) => "tls",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_roles_take_every_default() {
        assert_eq!(
            PluginConfig::parse(br#"{"role":"http"}"#).unwrap(),
            PluginConfig::Http(HttpPluginConfig::default())
        );
        assert_eq!(
            PluginConfig::parse(br#"{"role":"tcp"}"#).unwrap(),
            PluginConfig::Tcp(StreamPluginConfig::default())
        );
        assert_eq!(
            PluginConfig::parse(br#"{"role":"tls"}"#).unwrap(),
            PluginConfig::Tls(StreamPluginConfig::default())
        );
        let config = PluginConfig::parse(br#"{"role":"tcp"}"#).unwrap();
        assert_eq!(config.fetch().call_timeout(), Duration::from_secs(35));
        assert_eq!(config.fetch().cluster, "berth_controller");
    }

    #[test]
    fn every_key() {
        let json = br#"{"role":"http","fetch":{"cluster":"c","authority":"a","path":"/t","wait_seconds":5,
            "retry_ms":100},"unknown_host":"continue","original_dst_cluster":"outbound|80||x"}"#;
        let expected = PluginConfig::Http(HttpPluginConfig {
            fetch: FetchConfig {
                cluster: "c".into(),
                authority: "a".into(),
                path: "/t".into(),
                wait_seconds: 5,
                retry_ms: 100,
            },
            unknown_host: UnknownHost::Continue,
            original_dst_cluster: "outbound|80||x".into(),
        });
        assert_eq!(PluginConfig::parse(json).unwrap(), expected);
    }

    #[test]
    fn what_is_rendered_parses_back_to_itself() {
        let configs = [
            PluginConfig::Http(HttpPluginConfig { unknown_host: UnknownHost::Continue, ..Default::default() }),
            PluginConfig::Tcp(StreamPluginConfig::default()),
            PluginConfig::Tls(StreamPluginConfig { fetch: FetchConfig { retry_ms: 250, ..Default::default() } }),
        ];
        for config in configs {
            assert_eq!(PluginConfig::parse(config.to_json().as_bytes()).unwrap(), config);
        }
        assert_eq!(
            PluginConfig::Http(HttpPluginConfig::default()).to_json(),
            r#"{"role":"http","fetch":{"cluster":"berth_controller","authority":"berth-controller","path":"/v1/table","wait_seconds":30,"retry_ms":500},"unknown_host":"not_found","original_dst_cluster":"berth_original_dst"}"#
        );
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        for bad in [
            &br#""#[..],
            br#"not json"#,
            br#"{}"#,
            br#"{"role":"tcp-someday"}"#,
            br#"{"role":"fetcher"}"#,
            br#"{"role":"http","cluster":"x"}"#,
            br#"{"role":"tcp","port":31000}"#,
            br#"{"role":"tcp","unknown_host":"continue"}"#,
            br#"{"role":"tls","port":443}"#,
            br#"{"role":"http","unknown_host":"ignore"}"#,
            br#"{"role":"http","original_dst_cluster":""}"#,
            br#"{"role":"http","fetch":{"clustr":"x"}}"#,
            br#"{"role":"http","fetch":{"retry_ms":0}}"#,
            br#"{"role":"tcp","fetch":{"wait_seconds":-1}}"#,
            br#"{"role":"tls","fetch":{"path":"/v1/table?x=1"}}"#,
            br#"{"role":"http","fetch":{"cluster":""}}"#,
        ] {
            assert!(PluginConfig::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let err = PluginConfig::parse(br#"{"role":"http","fetch":{"retry_ms":0}}"#).unwrap_err();
        assert!(err.contains("retry_ms"), "{err}");
        let err = PluginConfig::parse(br#"{"role":"nope"}"#).unwrap_err();
        assert!(err.contains("nope"), "{err}");
        let err = PluginConfig::parse(br#"{"role":"fetcher","cluster":"berth_controller"}"#).unwrap_err();
        assert!(err.contains("fetcher") && err.contains("every filter fetches"), "{err}");
    }
}
