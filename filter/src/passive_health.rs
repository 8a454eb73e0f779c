//! Passive health: the filter notices an endpoint that refuses connections or times out, from Envoy's response
//! flags, and takes it out of rotation for a back-off (see [`crate::ejection`]) without waiting for the controller.
//!
//! The ejection list lives in shared data under [`EJECTED_KEY`], so every worker VM (HTTP and TCP alike) skips an
//! endpoint as soon as any of them saw it fail. Writes are compare-and-swap: a VM reads the list with its token,
//! changes it, and writes it back only if nobody wrote in between, else reads again. A request or connection makes
//! no host call for it: the root context's tick ([`crate::root::WATCH_PERIOD`]) copies the (small, usually empty)
//! value, parses it only when its token moved, and reads the clock only when the list has entries. A VM applies
//! its own reports at once; another VM's within one tick, and a back-off ends at the first tick after it.

use std::net::SocketAddr;

use log::{Level, log, warn};

use crate::ejection::Ejections;
use crate::host::{CasError, Host};

/// Shared-data key of the ejection list.
pub const EJECTED_KEY: &str = "berth.ejected";

/// Envoy's legacy response flags (`response.flags`, the bits of `StreamInfo::legacyResponseFlags`) that mean the
/// endpoint itself failed: `UF` (upstream connection failure: refused, reset, or the connect timeout) and `UT`
/// (upstream request timeout). Others (the client went away, a backend's own 503) say nothing about the endpoint.
pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20;
pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4;
const ENDPOINT_FAILED: u64 = UPSTREAM_CONNECTION_FAILURE | UPSTREAM_REQUEST_TIMEOUT;

/// How often a write is retried when other VMs keep writing first.
const CAS_ATTEMPTS: usize = 8;

/// One VM's view of the ejection list.
#[derive(Debug, Default)]
pub struct PassiveHealth {
    /// The token of the list last parsed; `None` also when the key is unset.
    cas: Option<u32>,
    list: Ejections,
    /// The endpoints out of rotation, as of the last refresh or report.
    ejected: Vec<SocketAddr>,
    /// A failed write was logged (until one succeeds).
    write_failure_logged: bool,
}

impl PassiveHealth {
    /// Brings the list up to date with every VM's reports and the clock: one shared-data read, on the tick.
    pub fn refresh(&mut self, host: &impl Host) {
        let (value, cas) = host.shared_data_cas(EJECTED_KEY);
        if cas != self.cas || value.is_none() {
            self.list = value.as_deref().map(Ejections::decode).unwrap_or_default();
            self.cas = cas;
        }
        self.recompute(host);
    }

    /// The endpoints out of rotation, as of the last refresh or report: no host call.
    pub fn ejected(&self) -> &[SocketAddr] {
        &self.ejected
    }

    fn recompute(&mut self, host: &impl Host) {
        self.ejected = if self.list.is_empty() { Vec::new() } else { self.list.ejected_at(host.now_ms()) };
    }

    /// Whether the response flags of a request or connection to `endpoint` say the endpoint failed; a failure
    /// ejects it, an answer after its back-off ended forgives it. Costs a shared-data write only then.
    pub fn report(&mut self, host: &impl Host, endpoint: SocketAddr, flags: u64) {
        let failed = flags & ENDPOINT_FAILED != 0;
        if !failed && self.list.get(endpoint).is_none() {
            return;
        }
        if failed {
            self.update(host, Level::Warn, |list, now| {
                let ejection = list.fail(endpoint, now)?;
                Some(format!(
                    "{endpoint} failed (response flags {flags:#x}: connection refused, reset or timed out); out of \
                     rotation for {} s (failure {} in a row)",
                    (ejection.until_ms - now) / 1000,
                    ejection.strikes
                ))
            });
        } else {
            self.update(host, Level::Info, |list, now| {
                list.succeed(endpoint, now).then(|| format!("{endpoint} answers again; back in rotation"))
            });
        }
        self.recompute(host);
    }

    /// Applies `change` to the newest shared list and writes it back, retrying when another VM wrote first.
    /// `change` returns what to log (at `level`) when it changed the list, `None` when there was nothing to do.
    fn update(&mut self, host: &impl Host, level: Level, change: impl Fn(&mut Ejections, u64) -> Option<String>) {
        for _ in 0..CAS_ATTEMPTS {
            let (value, cas) = host.shared_data_cas(EJECTED_KEY);
            let mut list = value.as_deref().map(Ejections::decode).unwrap_or_default();
            let Some(message) = change(&mut list, host.now_ms()) else {
                (self.list, self.cas) = (list, cas);
                return;
            };
            match host.set_shared_data_cas(EJECTED_KEY, &list.encode(), cas) {
                Ok(()) => {
                    log!(level, "{message}");
                    self.write_failure_logged = false;
                    // The token is now the write's, which this VM does not know: the next refresh parses again.
                    (self.list, self.cas) = (list, None);
                    return;
                }
                Err(CasError::Mismatch) => continue,
                Err(CasError::Other(status)) => {
                    if !std::mem::replace(&mut self.write_failure_logged, true) {
                        warn!("cannot write {EJECTED_KEY} in shared data ({status}): {message} (not recorded)");
                    }
                    return;
                }
            }
        }
        warn!("{EJECTED_KEY} kept changing under {CAS_ATTEMPTS} attempts to update it; dropping one report");
    }
}

/// Envoy's `response.flags` property: a little-endian 64-bit integer. 0 (no flag) when unreadable.
pub fn response_flags(host: &impl Host) -> u64 {
    host.property(&["response", "flags"])
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ejection::BASE_BACKOFF_MS;
    use crate::host::fake::FakeHost;

    fn addr(port: u16) -> SocketAddr {
        ([127, 0, 0, 1], port).into()
    }

    /// A tick, then what a request sees.
    fn refreshed(health: &mut PassiveHealth, host: &FakeHost) -> Vec<SocketAddr> {
        health.refresh(host);
        health.ejected().to_vec()
    }

    #[test]
    fn nothing_ejected_costs_one_read() {
        let host = FakeHost::default();
        let mut health = PassiveHealth::default();
        assert!(refreshed(&mut health, &host).is_empty());
        assert_eq!(*host.reads.borrow(), [EJECTED_KEY]);
        assert!(host.writes.borrow().is_empty());
    }

    #[test]
    fn a_connection_failure_ejects_for_every_vm_until_the_backoff_ends() {
        let host = FakeHost::default();
        let (mut one, mut two) = (PassiveHealth::default(), PassiveHealth::default());
        one.report(&host, addr(1), 0);
        assert!(host.writes.borrow().is_empty(), "an answer from a healthy endpoint writes nothing");
        host.now.set(1_000);
        one.report(&host, addr(1), UPSTREAM_CONNECTION_FAILURE | 0x8000);
        assert_eq!(refreshed(&mut two, &host), [addr(1)], "another VM sees it");
        assert_eq!(refreshed(&mut one, &host), [addr(1)]);
        two.report(&host, addr(1), UPSTREAM_CONNECTION_FAILURE);
        assert_eq!(host.writes.borrow().len(), 1, "one outage, one write");
        host.now.set(1_000 + BASE_BACKOFF_MS);
        assert!(refreshed(&mut two, &host).is_empty(), "back in rotation after the back-off");
        two.report(&host, addr(1), 0);
        assert_eq!(host.shared_str(EJECTED_KEY).as_deref(), Some(""), "its answer forgives it");
    }

    #[test]
    fn a_vm_applies_its_own_report_at_once_and_another_vms_on_its_tick() {
        let host = FakeHost::default();
        let (mut one, mut two) = (PassiveHealth::default(), PassiveHealth::default());
        one.report(&host, addr(1), UPSTREAM_CONNECTION_FAILURE);
        assert_eq!(one.ejected(), [addr(1)]);
        assert!(two.ejected().is_empty(), "not before its tick");
        assert_eq!(refreshed(&mut two, &host), [addr(1)]);
        host.now.set(BASE_BACKOFF_MS);
        assert_eq!(one.ejected(), [addr(1)], "a back-off ends at a tick");
        assert!(refreshed(&mut one, &host).is_empty());
    }

    #[test]
    fn timeouts_eject_and_other_flags_do_not() {
        let host = FakeHost::default();
        let mut health = PassiveHealth::default();
        health.report(&host, addr(1), UPSTREAM_REQUEST_TIMEOUT);
        health.report(&host, addr(2), 0x4000 | 0x10);
        assert_eq!(refreshed(&mut health, &host), [addr(1)]);
    }

    #[test]
    fn a_write_that_loses_the_race_reads_again_and_keeps_the_other_vms_entry() {
        let host = FakeHost::default();
        let (mut one, mut two) = (PassiveHealth::default(), PassiveHealth::default());
        one.report(&host, addr(1), UPSTREAM_CONNECTION_FAILURE);
        refreshed(&mut two, &host);
        host.cas_conflicts.set(2);
        two.report(&host, addr(2), UPSTREAM_CONNECTION_FAILURE);
        let mut ejected = refreshed(&mut one, &host);
        ejected.sort();
        assert_eq!(ejected, [addr(1), addr(2)]);
    }

    #[test]
    fn garbage_in_shared_data_is_an_empty_list() {
        let host = FakeHost::default();
        host.put_shared(EJECTED_KEY, b"\xff\xfe nonsense");
        let mut health = PassiveHealth::default();
        assert!(refreshed(&mut health, &host).is_empty());
        health.report(&host, addr(1), UPSTREAM_CONNECTION_FAILURE);
        assert_eq!(refreshed(&mut health, &host), [addr(1)]);
    }

    #[test]
    fn flags_read_as_a_little_endian_integer() {
        let host = FakeHost::default();
        assert_eq!(response_flags(&host), 0);
        host.properties.borrow_mut().insert("response.flags".into(), 0x20u64.to_le_bytes().to_vec());
        assert_eq!(response_flags(&host), 0x20);
        host.properties.borrow_mut().insert("response.flags".into(), b"short".to_vec());
        assert_eq!(response_flags(&host), 0);
    }
}
