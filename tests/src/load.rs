//! Background load for tests that change things under traffic: counters of what a loop sent and what failed, and
//! a guard that stops the loop when the test body ends, also by a panic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::wait;

/// Requests (or connections) made by a load loop, and those that did not get the expected answer.
#[derive(Default)]
pub struct Load {
    sent: AtomicU64,
    failed: AtomicU64,
}

impl Load {
    pub fn record(&self, ok: bool) {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.failed.fetch_add(u64::from(!ok), Ordering::SeqCst);
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    /// Waits until `more` requests were made after this call.
    pub fn wait_for(&self, more: u64) {
        let target = self.sent() + more;
        wait::until(&format!("{more} more requests"), Duration::from_secs(20), || {
            (self.sent() >= target).then_some(())
        });
    }
}

/// Sets the flag when dropped. Create it first inside `std::thread::scope`: a scope joins its threads before a
/// panic leaves it, so a loop that only ends on the flag would otherwise hang the failing test.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
