//! A root context's share of the table fetch: it runs the [`Fetcher`] while the [`Election`] says it holds the
//! lease, and does nothing else otherwise (it reads the shared table like every root, see [`crate::cache`]).
//!
//! Driven by the root context's tick ([`crate::root::WATCH_PERIOD`]): the election checks the lease every
//! [`crate::election::CHECK_MS`], and the holder's fetcher gets a tick every `retry_ms`, as it had when it was a
//! bootstrap service ticking at that period. A root that wins the lease starts a fresh fetcher, which resumes from
//! the version already in shared data, so a hand-over costs one long poll, not a download.

use berth_table::FetchConfig;

use crate::election::{Change, Election};
use crate::fetcher::Fetcher;
use crate::host::Host;

pub struct FetchDuty {
    config: FetchConfig,
    election: Election,
    /// Only while this root holds the lease.
    fetcher: Option<Fetcher>,
    /// When the fetcher's next tick is due.
    next_poll_ms: u64,
}

impl FetchDuty {
    /// `name` says which kind of root this is, in log lines.
    pub fn new(config: FetchConfig, name: &'static str) -> Self {
        FetchDuty { config, election: Election::new(name), fetcher: None, next_poll_ms: 0 }
    }

    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Whether this root fetches now.
    pub fn fetches(&self) -> bool {
        self.fetcher.is_some()
    }

    pub fn on_tick(&mut self, host: &impl Host) {
        match self.election.on_tick(host) {
            Change::Won => {
                self.fetcher = Some(Fetcher::new(self.config.clone(), host));
                self.next_poll_ms = 0;
            }
            Change::Lost => self.fetcher = None,
            Change::None => {}
        }
        if let Some(fetcher) = &mut self.fetcher {
            let now = host.now_ms();
            if now >= self.next_poll_ms {
                self.next_poll_ms = now.saturating_add(u64::from(self.config.retry_ms));
                fetcher.on_tick(host);
            }
        }
    }

    /// An answer to a poll: the fetcher's, if this root still fetches (a lost lease drops the answer; the new
    /// holder polls on its own).
    pub fn on_response(&mut self, host: &impl Host, token: u32, num_headers: usize, body_size: usize) {
        if let Some(fetcher) = &mut self.fetcher {
            fetcher.on_response(host, token, num_headers, body_size);
        }
    }

    /// The root context is going away: hand the lease over at once.
    pub fn release(&mut self, host: &impl Host) {
        self.fetcher = None;
        self.election.release(host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{TABLE_KEY, VERSION_KEY};
    use crate::host::fake::FakeHost;
    use berth_table::Table;

    fn table_json(version: u64) -> Vec<u8> {
        berth_table::encode(&Table::new(version))
    }

    fn paths(host: &FakeHost) -> Vec<String> {
        host.dispatched.borrow().iter().map(|d| d.path.clone()).collect()
    }

    /// Ticks every duty every 20 ms (the roots' watch period) from `from` to `to`.
    fn run(host: &FakeHost, duties: &mut [&mut FetchDuty], from: u64, to: u64) {
        for now in (from..to).step_by(20) {
            host.now.set(now);
            for duty in duties.iter_mut() {
                duty.on_tick(host);
            }
        }
    }

    #[test]
    fn of_two_roots_sharing_shared_data_one_fetches_and_only_one_poll_is_in_flight() {
        let host = FakeHost::default();
        let (mut http, mut tcp) =
            (FetchDuty::new(FetchConfig::default(), "http"), FetchDuty::new(FetchConfig::default(), "tcp"));
        run(&host, &mut [&mut http, &mut tcp], 1_000, 10_000);
        assert!(http.fetches() != tcp.fetches(), "exactly one fetches");
        assert_eq!(paths(&host), ["/v1/table?wait=30"], "one long poll, still in flight");
    }

    #[test]
    fn the_holder_fetches_at_the_retry_period_after_a_failure() {
        let host = FakeHost::default();
        let mut duty = FetchDuty::new(FetchConfig { retry_ms: 200, ..Default::default() }, "http");
        host.dispatch_fails.set(true);
        run(&host, &mut [&mut duty], 1_000, 3_000);
        assert!(duty.fetches());
        host.dispatch_fails.set(false);
        let now = host.now.get();
        run(&host, &mut [&mut duty], now + 20, now + 220);
        assert_eq!(host.dispatched.borrow().len(), 1, "the next poll on the fetcher's own period, not every tick");
    }

    #[test]
    fn another_root_takes_over_when_the_fetching_one_is_gone_and_resumes_from_the_shared_version() {
        let host = FakeHost::default();
        let (mut a, mut b) =
            (FetchDuty::new(FetchConfig::default(), "http"), FetchDuty::new(FetchConfig::default(), "tcp"));
        run(&host, &mut [&mut a, &mut b], 1_000, 3_000);
        let (holder, other) = if a.fetches() { (&mut a, &mut b) } else { (&mut b, &mut a) };
        host.respond("200", &table_json(4));
        holder.on_response(&host, host.next_token.get(), 3, table_json(4).len());
        assert_eq!(host.shared_str(VERSION_KEY).as_deref(), Some("4"));
        assert_eq!(paths(&host).len(), 2, "the holder polls again at once");

        // The holder's root context is gone (no release: its lease runs out).
        run(&host, &mut [&mut *other], 3_000, 8_000);
        assert!(other.fetches());
        assert_eq!(paths(&host).last().map(String::as_str), Some("/v1/table?version=4&wait=30"));
        assert_eq!(paths(&host).len(), 3, "one new poll from the new holder");
        host.respond("200", &table_json(5));
        other.on_response(&host, host.next_token.get(), 3, table_json(5).len());
        assert_eq!(host.shared_str(VERSION_KEY).as_deref(), Some("5"));
        assert_eq!(host.shared.borrow()[TABLE_KEY], table_json(5));
    }

    #[test]
    fn a_released_lease_hands_over_within_two_checks_and_the_old_answer_is_dropped() {
        let host = FakeHost::default();
        let (mut a, mut b) =
            (FetchDuty::new(FetchConfig::default(), "http"), FetchDuty::new(FetchConfig::default(), "tcp"));
        run(&host, &mut [&mut a, &mut b], 1_000, 3_000);
        let (holder, other) = if a.fetches() { (&mut a, &mut b) } else { (&mut b, &mut a) };
        let old_call = host.next_token.get();
        holder.release(&host);
        assert!(!holder.fetches());
        run(&host, &mut [&mut *other], 3_000, 4_100);
        assert!(other.fetches());
        host.respond("200", &table_json(9));
        holder.on_response(&host, old_call, 3, table_json(9).len());
        assert!(host.shared_str(VERSION_KEY).is_none(), "an answer to a released root's call is not published");
    }

    #[test]
    fn a_holder_that_loses_the_lease_stops_polling() {
        let host = FakeHost::default();
        let (mut a, mut b) =
            (FetchDuty::new(FetchConfig::default(), "http"), FetchDuty::new(FetchConfig::default(), "tcp"));
        run(&host, &mut [&mut a, &mut b], 1_000, 3_000);
        let (holder, other) = if a.fetches() { (&mut a, &mut b) } else { (&mut b, &mut a) };
        // The holder stalls past its lease; the other takes over; then the holder ticks again.
        run(&host, &mut [&mut *other], 3_000, 6_000);
        run(&host, &mut [&mut *holder, &mut *other], 6_000, 7_000);
        assert!(!holder.fetches() && other.fetches());
    }
}
