//! The plugin configuration: the JSON string Envoy passes as `configuration`, which names the root context's role.
//!
//! Fetcher: `{"role":"fetcher","cluster":"berth_controller","authority":"berth-controller","path":"/v1/table",
//! "wait_seconds":30,"retry_ms":500}` (everything but `role` optional, with those defaults).
//! HTTP filter: `{"role":"http"}`. TCP (network) filter: `{"role":"tcp"}`. TLS passthrough (network) filter:
//! `{"role":"tls"}`. Unknown roles, unknown keys and out-of-range values are errors, so a typo fails
//! `on_configure` loudly instead of running with a default nobody asked for.

use std::time::Duration;

use serde::Deserialize;

/// What a root context does, chosen by its plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The singleton service: long-polls the controller and publishes the table in shared data.
    Fetcher(FetcherConfig),
    /// The HTTP filter: routes each request by Host and path.
    Http,
    /// The network filter: routes each connection by the local port it arrived on.
    Tcp,
    /// The network filter behind `tls_inspector`: routes each connection by its TLS server name (SNI).
    Tls,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetcherConfig {
    /// The Envoy cluster that reaches the controller.
    pub cluster: String,
    /// The `:authority` sent to the controller.
    pub authority: String,
    /// The table endpoint's path, without a query string.
    pub path: String,
    /// How long the controller may hold a request when nothing changed.
    pub wait_seconds: u32,
    /// The tick period: how soon a failed fetch is retried.
    pub retry_ms: u32,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        FetcherConfig {
            cluster: "berth_controller".into(),
            authority: "berth-controller".into(),
            path: "/v1/table".into(),
            wait_seconds: 30,
            retry_ms: 500,
        }
    }
}

/// Beyond the controller's hold time, how long a fetch may take before Envoy gives up on it.
const FETCH_GRACE: Duration = Duration::from_secs(5);

impl FetcherConfig {
    /// The `dispatch_http_call` timeout: longer than the hold, so a held request ends in a 304, not a timeout.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.wait_seconds)) + FETCH_GRACE
    }

    pub fn retry(&self) -> Duration {
        Duration::from_millis(u64::from(self.retry_ms))
    }

    fn validate(&self) -> Result<(), String> {
        if self.cluster.is_empty() {
            return Err("fetcher \"cluster\" is empty: name the Envoy cluster that reaches the controller".into());
        }
        if self.authority.is_empty() {
            return Err("fetcher \"authority\" is empty".into());
        }
        if !self.path.starts_with('/') || self.path.contains(['?', '#']) {
            return Err(format!("fetcher \"path\" {:?} must start with / and carry no query string", self.path));
        }
        if self.wait_seconds > 3600 {
            return Err(format!("fetcher \"wait_seconds\" {} is over 3600", self.wait_seconds));
        }
        // A tick period of 0 would switch the tick off, and with it every retry.
        if !(10..=600_000).contains(&self.retry_ms) {
            return Err(format!("fetcher \"retry_ms\" {} is outside 10..=600000", self.retry_ms));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum Raw {
    Fetcher(FetcherConfig),
    Http(HttpConfig),
    Tcp(TcpConfig),
    Tls(TlsConfig),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpConfig {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpConfig {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsConfig {}

/// Parses a plugin configuration; the error says what is wrong and what is expected.
pub fn parse(bytes: &[u8]) -> Result<Role, String> {
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "plugin configuration {:?} is not valid: {e}; expected JSON like {{\"role\":\"http\"}}, \
             {{\"role\":\"tcp\"}}, {{\"role\":\"tls\"}} or {{\"role\":\"fetcher\",\"cluster\":\"berth_controller\"}}",
            String::from_utf8_lossy(bytes)
        )
    })?;
    match raw {
        Raw::Fetcher(config) => {
            config.validate()?;
            Ok(Role::Fetcher(config))
        }
        Raw::Http(HttpConfig {}) => Ok(Role::Http),
        Raw::Tcp(TcpConfig {}) => Ok(Role::Tcp),
        Raw::Tls(TlsConfig {}) => Ok(Role::Tls),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_role() {
        assert_eq!(parse(br#"{"role":"http"}"#).unwrap(), Role::Http);
    }

    #[test]
    fn tcp_role() {
        assert_eq!(parse(br#"{"role":"tcp"}"#).unwrap(), Role::Tcp);
    }

    #[test]
    fn tls_role() {
        assert_eq!(parse(br#"{"role":"tls"}"#).unwrap(), Role::Tls);
        assert!(parse(br#"{"role":"tls","port":443}"#).is_err());
    }

    #[test]
    fn fetcher_defaults() {
        let Role::Fetcher(config) = parse(br#"{"role":"fetcher"}"#).unwrap() else { panic!("not a fetcher") };
        assert_eq!(config, FetcherConfig::default());
        assert_eq!(config.call_timeout(), Duration::from_secs(35));
    }

    #[test]
    fn fetcher_with_every_key() {
        let json = br#"{"role":"fetcher","cluster":"c","authority":"a","path":"/t","wait_seconds":5,"retry_ms":100}"#;
        let Role::Fetcher(config) = parse(json).unwrap() else { panic!("not a fetcher") };
        assert_eq!(
            config,
            FetcherConfig {
                cluster: "c".into(),
                authority: "a".into(),
                path: "/t".into(),
                wait_seconds: 5,
                retry_ms: 100
            }
        );
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        for bad in [
            &br#""#[..],
            br#"not json"#,
            br#"{}"#,
            br#"{"role":"tcp-someday"}"#,
            br#"{"role":"http","cluster":"x"}"#,
            br#"{"role":"tcp","port":31000}"#,
            br#"{"role":"fetcher","clustr":"x"}"#,
            br#"{"role":"fetcher","retry_ms":0}"#,
            br#"{"role":"fetcher","wait_seconds":-1}"#,
            br#"{"role":"fetcher","path":"/v1/table?x=1"}"#,
            br#"{"role":"fetcher","cluster":""}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let err = parse(br#"{"role":"fetcher","retry_ms":0}"#).unwrap_err();
        assert!(err.contains("retry_ms"), "{err}");
        let err = parse(br#"{"role":"nope"}"#).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }
}
