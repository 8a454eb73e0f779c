//! The VM's parsed copy of the shared table, re-read only when the shared version changes.
//!
//! `get_shared_data` copies the whole value into the VM, so the cache reads the small `berth.version` key and
//! compares it with the version it last loaded; only a difference costs a copy and a parse of `berth.table`. The
//! version is read on the root context's tick ([`TableCache::refresh`]), not per request or connection: a host
//! call is most of what the filter costs, and a new table reaches requests within one tick
//! ([`crate::root::WATCH_PERIOD`]) of the fetcher writing it. Until a table has loaded, requests check the
//! version themselves, so a worker serves as soon as a table exists. What a context builds from the table (the
//! HTTP router, the TCP port map) is a [`View`], rebuilt with the table.

use berth_table::Table;
use log::{info, warn};

use crate::host::Host;

/// Shared-data key holding the last good table's JSON, exactly as the controller sent it.
pub const TABLE_KEY: &str = "berth.table";
/// Shared-data key holding the table's version as decimal ASCII, written after [`TABLE_KEY`].
pub const VERSION_KEY: &str = "berth.version";

/// What a context keeps of a table: built once per table version.
pub trait View: Sized {
    /// `seed` differs from one build to the next (it is the time): views start their round-robin counters from
    /// it, so that routes do not restart at the same slot after every table change.
    fn build(table: Table, seed: u64) -> Self;
}

pub struct TableCache<V> {
    /// The `berth.version` value last acted on, whether its table loaded or not: a table that fails to decode is
    /// not re-read (and its error not re-logged) on every request.
    seen: Option<Vec<u8>>,
    view: Option<V>,
}

impl<V> Default for TableCache<V> {
    fn default() -> Self {
        TableCache { seen: None, view: None }
    }
}

impl<V: View> TableCache<V> {
    /// The view of the newest good table as of the last [`TableCache::refresh`]; until a table has loaded, every
    /// call refreshes first (no host call once one has). `None` until a table has loaded; after that a bad table
    /// never replaces the last good one.
    pub fn current(&mut self, host: &impl Host) -> Option<&mut V> {
        if self.view.is_none() {
            self.refresh(host);
        }
        self.view.as_mut()
    }

    /// Reloads the table if the shared version moved: one small shared-data read, a copy and parse of the table
    /// only on a change.
    pub fn refresh(&mut self, host: &impl Host) {
        if let Some(version) = host.shared_data(VERSION_KEY)
            && self.seen.as_deref() != Some(version.as_slice())
        {
            self.reload(host, version);
        }
    }

    fn reload(&mut self, host: &impl Host, version: Vec<u8>) {
        let shown = String::from_utf8_lossy(&version).into_owned();
        match host.shared_data(TABLE_KEY).as_deref().map(berth_table::decode) {
            Some(Ok(table)) => {
                info!(
                    "routing table version {} loaded ({} http routes, {} tcp routes, {} tls routes)",
                    table.version,
                    table.http.len(),
                    table.tcp.len(),
                    table.tls.len()
                );
                self.view = Some(V::build(table, host.now_ms()));
            }
            Some(Err(error)) => {
                warn!("shared table for version {shown} does not decode, keeping the previous one: {error}")
            }
            None => {
                warn!("shared version {shown} is set but {TABLE_KEY} is missing, keeping the previous table")
            }
        }
        self.seen = Some(version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    struct Versions(u64);
    impl View for Versions {
        fn build(table: Table, _seed: u64) -> Self {
            Versions(table.version)
        }
    }

    fn publish(host: &FakeHost, version: &str, table: &[u8]) {
        host.put_shared(TABLE_KEY, table);
        host.put_shared(VERSION_KEY, version.as_bytes());
    }

    /// A tick, then a request's view.
    fn version(cache: &mut TableCache<Versions>, host: &FakeHost) -> Option<u64> {
        cache.refresh(host);
        cache.current(host).map(|v| v.0)
    }

    #[test]
    fn nothing_until_a_table_is_published() {
        let host = FakeHost::default();
        let mut cache = TableCache::<Versions>::default();
        assert_eq!(version(&mut cache, &host), None);
    }

    #[test]
    fn reads_the_table_only_when_the_version_changes() {
        let host = FakeHost::default();
        let mut cache = TableCache::<Versions>::default();
        publish(&host, "1", &berth_table::encode(&Table::new(1)));
        for _ in 0..3 {
            assert_eq!(version(&mut cache, &host), Some(1));
        }
        let table_reads = || host.reads.borrow().iter().filter(|k| *k == TABLE_KEY).count();
        assert_eq!(table_reads(), 1);
        publish(&host, "2", &berth_table::encode(&Table::new(2)));
        assert_eq!(version(&mut cache, &host), Some(2));
        assert_eq!(table_reads(), 2);
    }

    #[test]
    fn requests_read_nothing_once_a_table_has_loaded_and_see_a_new_one_after_a_tick() {
        let host = FakeHost::default();
        let mut cache = TableCache::<Versions>::default();
        assert_eq!(cache.current(&host).map(|v| v.0), None);
        publish(&host, "1", &berth_table::encode(&Table::new(1)));
        assert_eq!(cache.current(&host).map(|v| v.0), Some(1), "the first requests load the first table");
        host.reads.borrow_mut().clear();
        publish(&host, "2", &berth_table::encode(&Table::new(2)));
        for _ in 0..3 {
            assert_eq!(cache.current(&host).map(|v| v.0), Some(1));
        }
        assert!(host.reads.borrow().is_empty(), "{:?}", host.reads.borrow());
        cache.refresh(&host);
        assert_eq!(cache.current(&host).map(|v| v.0), Some(2));
    }

    #[test]
    fn a_bad_table_keeps_the_last_good_one_and_is_not_reread() {
        let host = FakeHost::default();
        let mut cache = TableCache::<Versions>::default();
        publish(&host, "1", &berth_table::encode(&Table::new(1)));
        assert_eq!(version(&mut cache, &host), Some(1));
        publish(&host, "2", b"{\"format\":\"berth.table/v1\",\"vers");
        for _ in 0..3 {
            assert_eq!(version(&mut cache, &host), Some(1));
        }
        assert_eq!(host.reads.borrow().iter().filter(|k| *k == TABLE_KEY).count(), 2);
    }

    #[test]
    fn a_version_without_a_table_is_no_table() {
        let host = FakeHost::default();
        host.put_shared(VERSION_KEY, b"3");
        let mut cache = TableCache::<Versions>::default();
        assert_eq!(version(&mut cache, &host), None);
    }
}
