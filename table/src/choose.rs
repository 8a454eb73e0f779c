//! Endpoint choice: weighted round-robin over a route's backends, then round-robin over each backend's endpoints.
//!
//! The choice is a pure function of a per-route request counter, so the filter keeps one integer per route and
//! the spread can be tested exactly.

use crate::{Backend, Endpoint};

/// A large prime: multiplying by it modulo the total weight permutes the slots, interleaving backends instead of
/// sending each one its whole share in a burst.
const SPREAD: u64 = 2_654_435_761;

/// The endpoint for the `n`th request of a route, or `None` when no backend has an endpoint.
///
/// Backends without endpoints take no traffic, and their weight goes to the others. When every backend that has
/// endpoints weighs 0, they share equally rather than leaving the route dead.
pub fn choose_endpoint(backends: &[Backend], n: u64) -> Option<&Endpoint> {
    let live = || backends.iter().filter(|b| !b.endpoints.is_empty());
    let weighted: u64 = live().map(|b| u64::from(b.weight)).sum();
    let weight_of = |b: &Backend| if weighted == 0 { 1 } else { u64::from(b.weight) };
    let total: u64 = live().map(weight_of).sum();
    if total == 0 {
        return None;
    }
    let round = n / total;
    let mut slot = (n % total).wrapping_mul(SPREAD % total) % total;
    for backend in live() {
        let weight = weight_of(backend);
        if slot < weight {
            // Each round gives this backend `weight` distinct slots: number its picks so its endpoints alternate.
            let pick = round.wrapping_mul(weight).wrapping_add(slot);
            let index = usize::try_from(pick % backend.endpoints.len() as u64).unwrap_or(0);
            return backend.endpoints.get(index);
        }
        slot -= weight;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn backend(name: &str, weight: u32, ports: &[u16]) -> Backend {
        Backend {
            service: name.into(),
            weight,
            endpoints: ports.iter().map(|p| Endpoint { address: ([127, 0, 0, 1], *p).into() }).collect(),
        }
    }

    fn spread(backends: &[Backend], requests: u64) -> HashMap<u16, u64> {
        let mut seen = HashMap::new();
        for n in 0..requests {
            *seen.entry(choose_endpoint(backends, n).unwrap().address.port()).or_default() += 1;
        }
        seen
    }

    #[test]
    fn single_endpoint_takes_everything() {
        assert_eq!(spread(&[backend("a", 100, &[1])], 10)[&1], 10);
    }

    #[test]
    fn round_robin_over_endpoints_is_even() {
        let seen = spread(&[backend("a", 1, &[1, 2, 3])], 300);
        assert_eq!((seen[&1], seen[&2], seen[&3]), (100, 100, 100));
    }

    #[test]
    fn weights_split_exactly_per_round() {
        let seen = spread(&[backend("blue", 90, &[1]), backend("green", 10, &[2])], 10_000);
        assert_eq!((seen[&1], seen[&2]), (9_000, 1_000));
    }

    #[test]
    fn weights_interleave_rather_than_burst() {
        let backends = [backend("blue", 50, &[1]), backend("green", 50, &[2])];
        let first_ten: Vec<u16> = (0..10).map(|n| choose_endpoint(&backends, n).unwrap().address.port()).collect();
        assert!(first_ten.contains(&1) && first_ten.contains(&2), "{first_ten:?}");
    }

    #[test]
    fn weighted_backend_rotates_its_own_endpoints() {
        let seen = spread(&[backend("blue", 75, &[1, 2, 3]), backend("green", 25, &[4])], 12_000);
        assert_eq!((seen[&1], seen[&2], seen[&3], seen[&4]), (3_000, 3_000, 3_000, 3_000));
    }

    #[test]
    fn zero_weight_takes_nothing_while_others_have_weight() {
        let seen = spread(&[backend("old", 0, &[1]), backend("new", 100, &[2])], 500);
        assert_eq!(seen.get(&1), None);
    }

    #[test]
    fn all_zero_weights_share_equally() {
        let seen = spread(&[backend("a", 0, &[1]), backend("b", 0, &[2])], 100);
        assert_eq!((seen[&1], seen[&2]), (50, 50));
    }

    #[test]
    fn backend_without_endpoints_gives_its_share_away() {
        let seen = spread(&[backend("gone", 90, &[]), backend("here", 10, &[2])], 100);
        assert_eq!(seen[&2], 100);
    }

    #[test]
    fn nothing_to_choose_is_none() {
        assert!(choose_endpoint(&[], 0).is_none());
        assert!(choose_endpoint(&[backend("gone", 1, &[])], 5).is_none());
    }

    #[test]
    fn huge_counters_do_not_overflow() {
        let backends = [backend("a", u32::MAX, &[1, 2]), backend("b", u32::MAX, &[3])];
        for n in [u64::MAX, u64::MAX - 1, u64::MAX / 2] {
            assert!(choose_endpoint(&backends, n).is_some());
        }
    }
}
