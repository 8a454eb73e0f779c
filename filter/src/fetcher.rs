//! The table fetcher: long-polls the controller for the table and publishes each good one in shared data. It runs
//! in the one root context per Envoy that holds the fetch lease ([`crate::fetch_duty`], [`crate::election`]).
//!
//! `GET <path>?version=<N>&wait=<secs>` answers at once when the controller's version differs from N, otherwise
//! holds up to `wait` seconds and answers 304. So after a new table the next poll goes out at once; after a 304
//! that the controller held, too; anything else (an error, or an answer that came back early without news, as a
//! plain file server would give) waits for the next tick, which caps the request rate at one per `retry_ms`.
//!
//! Only a body that `berth_table::decode` accepts is published: the table first, then its version, so a reader
//! that sees a new version finds at least that table. A failure is logged once until the next success.

use berth_table::{FetchConfig, Table};
use log::{info, warn};

use crate::cache::{TABLE_KEY, VERSION_KEY};
use crate::host::Host;

/// Beyond the call timeout, how long a call may stay unanswered before the fetcher forgets it and polls anew.
/// Envoy always answers a call (with 0 headers on timeout), so this only guards against a lost callback.
const LOST_CALL_MS: u64 = 10_000;

/// How much of an error response's body a log line quotes.
const STATUS_BODY_SHOWN: usize = 200;

pub struct Fetcher {
    config: FetchConfig,
    /// The version of the last table published (or found already published when this VM started).
    version: Option<u64>,
    in_flight: Option<InFlight>,
    /// The kind of the last problem logged, and its message: another problem of the same kind is not logged
    /// again until a fetch succeeds (a controller sending garbage would otherwise log on every retry).
    problem: Option<(Problem, String)>,
}

struct InFlight {
    token: u32,
    started_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Dispatch,
    Lost,
    NoResponse,
    Status,
    Decode,
    Store,
}

/// What one response did.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Published(u64),
    Unchanged,
}

impl Fetcher {
    /// A fetcher that starts from the version already in shared data, if any: a restarted VM (after a crash or a
    /// config reload) then keeps long-polling instead of downloading a table Envoy already has.
    pub fn new(config: FetchConfig, host: &impl Host) -> Self {
        let version = host
            .shared_data(VERSION_KEY)
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|_| host.shared_data(TABLE_KEY).is_some());
        Fetcher { config, version, in_flight: None, problem: None }
    }

    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// The version of the last table published.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// Polls when no call is in flight (the first poll, and every retry, starts here).
    pub fn on_tick(&mut self, host: &impl Host) {
        if let Some(call) = &self.in_flight {
            let limit = u64::try_from(self.config.call_timeout().as_millis()).unwrap_or(u64::MAX);
            if host.now_ms().saturating_sub(call.started_ms) < limit.saturating_add(LOST_CALL_MS) {
                return;
            }
            let message =
                format!("call {} to cluster {} was never answered; polling again", call.token, self.config.cluster);
            self.problem(Problem::Lost, message);
            self.in_flight = None;
        }
        self.poll(host);
    }

    /// Handles the answer to a poll. `num_headers == 0` is how Envoy reports a call that got no response (timeout,
    /// connection failure, or a body over the async client's buffer limit); it is checked before any header is read.
    pub fn on_response(&mut self, host: &impl Host, token: u32, num_headers: usize, body_size: usize) {
        let Some(call) = self.in_flight.take_if(|call| call.token == token) else {
            // An answer to a call already given up on: the poll that replaced it is still in flight.
            return;
        };
        match self.read_response(host, num_headers, body_size) {
            Ok(outcome) => {
                if let Some((_, problem)) = self.problem.take() {
                    info!("table fetch works again (last problem: {problem})");
                }
                let held = host.now_ms().saturating_sub(call.started_ms) >= u64::from(self.config.retry_ms);
                if matches!(outcome, Outcome::Published(_)) || held {
                    self.poll(host);
                }
            }
            Err((kind, message)) => self.problem(kind, message),
        }
    }

    fn read_response(
        &mut self,
        host: &impl Host,
        num_headers: usize,
        body_size: usize,
    ) -> Result<Outcome, (Problem, String)> {
        let cluster = &self.config.cluster;
        if num_headers == 0 {
            return Err((
                Problem::NoResponse,
                format!(
                    "no response from cluster {cluster} (timeout, connection failure, or a body over Envoy's \
                 async client buffer limit `http.async_response_buffer_limit`)"
                ),
            ));
        }
        let status = host.call_response_header(":status").unwrap_or_default();
        match status.as_slice() {
            b"304" => Ok(Outcome::Unchanged),
            b"200" => {
                let body = host.call_response_body(body_size).unwrap_or_default();
                let table = berth_table::decode(&body).map_err(|error| {
                    let message = format!(
                        "cluster {cluster} sent a table that does not decode ({} bytes), keeping {}: {error}",
                        body.len(),
                        self.describe_current()
                    );
                    (Problem::Decode, message)
                })?;
                self.publish(host, &table, &body)
            }
            other => {
                // Envoy's own answers (connect failure, reset) explain themselves in the body: keep its start.
                let body = host.call_response_body(body_size.min(STATUS_BODY_SHOWN)).unwrap_or_default();
                let body = String::from_utf8_lossy(&body).replace(['\r', '\n'], " ");
                Err((
                    Problem::Status,
                    format!(
                        "cluster {cluster} answered {} to {}, keeping {}: {:?}",
                        if other.is_empty() { "without a :status".into() } else { String::from_utf8_lossy(other) },
                        self.config.path,
                        self.describe_current(),
                        body.trim()
                    ),
                ))
            }
        }
    }

    fn publish(&mut self, host: &impl Host, table: &Table, body: &[u8]) -> Result<Outcome, (Problem, String)> {
        if self.version == Some(table.version) {
            return Ok(Outcome::Unchanged);
        }
        host.set_shared_data(TABLE_KEY, body).map_err(|e| {
            (Problem::Store, format!("cannot store table version {} in shared data: {e}", table.version))
        })?;
        host.set_shared_data(VERSION_KEY, table.version.to_string().as_bytes())
            .map_err(|e| (Problem::Store, format!("cannot store version {} in shared data: {e}", table.version)))?;
        info!("published routing table version {} ({} http routes)", table.version, table.http.len());
        self.version = Some(table.version);
        Ok(Outcome::Published(table.version))
    }

    fn poll(&mut self, host: &impl Host) {
        let config = &self.config;
        let path = match self.version {
            Some(version) => format!("{}?version={version}&wait={}", config.path, config.wait_seconds),
            None => format!("{}?wait={}", config.path, config.wait_seconds),
        };
        match host.dispatch_get(&config.cluster, &config.authority, &path, config.call_timeout()) {
            Ok(token) => self.in_flight = Some(InFlight { token, started_ms: host.now_ms() }),
            Err(status) => {
                let message = format!(
                    "cannot call cluster {} ({status}): is it defined (by CDS or the bootstrap)? retrying every {} ms",
                    config.cluster, config.retry_ms
                );
                self.problem(Problem::Dispatch, message)
            }
        }
    }

    fn problem(&mut self, kind: Problem, message: String) {
        if self.problem.as_ref().map(|(k, _)| *k) != Some(kind) {
            warn!("{message}");
            self.problem = Some((kind, message));
        }
    }

    fn describe_current(&self) -> String {
        match self.version {
            Some(version) => format!("table version {version}"),
            None => "no table".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;
    use std::time::Duration;

    fn fetcher(host: &FakeHost) -> Fetcher {
        Fetcher::new(FetchConfig::default(), host)
    }

    fn table_json(version: u64) -> Vec<u8> {
        berth_table::encode(&Table::new(version))
    }

    fn paths(host: &FakeHost) -> Vec<String> {
        host.dispatched.borrow().iter().map(|d| d.path.clone()).collect()
    }

    fn token(host: &FakeHost) -> u32 {
        host.next_token.get()
    }

    #[test]
    fn first_poll_has_no_version_and_a_timeout_beyond_the_hold() {
        let host = FakeHost::default();
        let mut f = fetcher(&host);
        f.on_tick(&host);
        let call = host.dispatched.borrow()[0].clone();
        assert_eq!(call.cluster, "berth_controller");
        assert_eq!(call.authority, "berth-controller");
        assert_eq!(call.path, "/v1/table?wait=30");
        assert!(call.timeout > Duration::from_secs(30));
    }

    #[test]
    fn publishes_table_then_version_and_polls_again_at_once() {
        let host = FakeHost::default();
        let mut f = fetcher(&host);
        f.on_tick(&host);
        host.respond("200", &table_json(42));
        f.on_response(&host, token(&host), 3, table_json(42).len());
        assert_eq!(*host.writes.borrow(), [TABLE_KEY, VERSION_KEY]);
        assert_eq!(host.shared_str(VERSION_KEY).as_deref(), Some("42"));
        assert_eq!(host.shared.borrow()[TABLE_KEY], table_json(42));
        assert_eq!(paths(&host), ["/v1/table?wait=30", "/v1/table?version=42&wait=30"]);
    }

    #[test]
    fn one_call_at_a_time() {
        let host = FakeHost::default();
        let mut f = fetcher(&host);
        f.on_tick(&host);
        f.on_tick(&host);
        f.on_tick(&host);
        assert_eq!(host.dispatched.borrow().len(), 1);
    }

    #[test]
    fn a_held_304_polls_again_at_once_an_early_one_waits_for_the_tick() {
        let host = FakeHost::default();
        let mut f = fetcher(&host);
        f.on_tick(&host);
        host.respond("200", &table_json(1));
        f.on_response(&host, token(&host), 3, table_json(1).len());
        assert_eq!(host.dispatched.borrow().len(), 2);

        host.now.set(30_000);
        host.respond("304", b"");
        f.on_response(&host, token(&host), 3, 0);
        assert_eq!(host.dispatched.borrow().len(), 3, "held: poll at once");

        host.respond("304", b"");
        f.on_response(&host, token(&host), 3, 0);
        assert_eq!(host.dispatched.borrow().len(), 3, "early: wait");
        f.on_tick(&host);
        assert_eq!(host.dispatched.borrow().len(), 4);
    }

    #[test]
    fn the_same_table_again_is_not_rewritten_and_does_not_spin() {
        let host = FakeHost::default();
        let mut f = fetcher(&host);
        f.on_tick(&host);
        host.respond("200", &table_json(5));
        f.on_response(&host, token(&host), 3, 100_000);
        host.respond("200", &table_json(5));
        f.on_response(&host, token(&host), 3, 100_000);
        assert_eq!(host.writes.borrow().len(), 2);
        assert_eq!(host.dispatched.borrow().len(), 2, "an unheld answer without news waits for the tick");
    }

    #[test]
    fn garbage_and_truncated_bodies_never_replace_the_last_good_table() {
        let host = FakeHost::default();
        let mut f = fetcher(&host);
        f.on_tick(&host);
        host.respond("200", &table_json(7));
        f.on_response(&host, token(&host), 3, 100_000);
        let good = host.shared.borrow().clone();
        let truncated = table_json(8)[..20].to_vec();
        for body in [&b"<html>oops</html>"[..], &truncated, b"", br#"{"format":"other/v9","version":9}"#] {
            host.respond("200", body);
            f.on_response(&host, token(&host), 3, body.len());
            assert_eq!(*host.shared.borrow(), good);
            assert_eq!(f.version(), Some(7));
            f.on_tick(&host);
        }
        assert_eq!(paths(&host).last().map(String::as_str), Some("/v1/table?version=7&wait=30"));
    }

    #[test]
    fn no_headers_is_an_error_checked_before_status() {
        let host = FakeHost::default();
        let mut f = fetcher(&host);
        f.on_tick(&host);
        host.response_headers.borrow_mut().clear();
        f.on_response(&host, token(&host), 0, 0);
        assert!(f.problem.as_ref().unwrap().1.contains("no response"));
        assert_eq!(host.dispatched.borrow().len(), 1, "retries on the tick");
        f.on_tick(&host);
        assert_eq!(host.dispatched.borrow().len(), 2);
    }

    #[test]
    fn other_statuses_are_errors() {
        let host = FakeHost::default();
        let mut f = fetcher(&host);
        f.on_tick(&host);
        host.respond("503", b"down");
        f.on_response(&host, token(&host), 3, 4);
        assert!(f.problem.as_ref().unwrap().1.contains("503"), "{:?}", f.problem);
        assert!(host.writes.borrow().is_empty());
    }

    #[test]
    fn ignores_answers_to_forgotten_calls() {
        let host = FakeHost::default();
        let mut f = fetcher(&host);
        f.on_tick(&host);
        host.respond("200", &table_json(3));
        f.on_response(&host, 999, 3, 100_000);
        assert!(host.writes.borrow().is_empty());
    }

    #[test]
    fn a_lost_call_is_replaced() {
        let host = FakeHost::default();
        let mut f = fetcher(&host);
        f.on_tick(&host);
        host.now.set(35_000 + LOST_CALL_MS + 1);
        f.on_tick(&host);
        assert_eq!(host.dispatched.borrow().len(), 2);
    }

    #[test]
    fn dispatch_failure_retries_on_tick() {
        let host = FakeHost::default();
        let mut f = fetcher(&host);
        host.dispatch_fails.set(true);
        f.on_tick(&host);
        assert!(f.problem.is_some());
        host.dispatch_fails.set(false);
        f.on_tick(&host);
        assert_eq!(host.dispatched.borrow().len(), 1);
    }

    #[test]
    fn resumes_from_the_version_already_shared() {
        let host = FakeHost::default();
        host.put_shared(TABLE_KEY, &table_json(11));
        host.put_shared(VERSION_KEY, b"11");
        let mut f = fetcher(&host);
        f.on_tick(&host);
        assert_eq!(paths(&host), ["/v1/table?version=11&wait=30"]);
    }
}
