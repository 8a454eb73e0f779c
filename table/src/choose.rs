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
    choose(backends, n, None::<fn(&Endpoint) -> bool>)
}

/// The same among the endpoints `usable` accepts (those not ejected): a backend none of whose endpoints is
/// usable is treated as one without endpoints, and a backend's usable endpoints share its traffic. `None` when
/// no endpoint is usable. Costs a pass over the route's endpoints, so callers use [`choose_endpoint`] when every
/// endpoint is usable.
pub fn choose_endpoint_where(backends: &[Backend], n: u64, usable: impl Fn(&Endpoint) -> bool) -> Option<&Endpoint> {
    choose(backends, n, Some(usable))
}

/// A strong 64-bit finalizer (SplitMix64's): nearby inputs give unrelated outputs, and 0 stays 0.
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn choose<F: Fn(&Endpoint) -> bool>(backends: &[Backend], n: u64, usable: Option<F>) -> Option<&Endpoint> {
    let count = |b: &Backend| match &usable {
        None => b.endpoints.len(),
        Some(usable) => b.endpoints.iter().filter(|e| usable(e)).count(),
    };
    let live = || backends.iter().filter(|b| count(b) > 0);
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
            let index = usize::try_from(pick % count(backend) as u64).unwrap_or(0);
            return match &usable {
                None => backend.endpoints.get(index),
                Some(usable) => backend.endpoints.iter().filter(|e| usable(e)).nth(index),
            };
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
    fn unusable_endpoints_give_their_traffic_to_the_usable_ones_of_their_backend() {
        let backends = [backend("blue", 90, &[1, 2, 3]), backend("green", 10, &[4])];
        let mut seen: HashMap<u16, u64> = HashMap::new();
        for n in 0..10_000 {
            let endpoint = choose_endpoint_where(&backends, n, |e| e.address.port() != 2).unwrap();
            *seen.entry(endpoint.address.port()).or_default() += 1;
        }
        assert_eq!((seen[&1], seen.get(&2), seen[&3], seen[&4]), (4_500, None, 4_500, 1_000));
    }

    #[test]
    fn a_backend_without_usable_endpoints_gives_its_share_away() {
        let backends = [backend("blue", 90, &[1, 2]), backend("green", 10, &[3])];
        for n in 0..100 {
            let endpoint = choose_endpoint_where(&backends, n, |e| e.address.port() == 3).unwrap();
            assert_eq!(endpoint.address.port(), 3);
        }
        assert!(choose_endpoint_where(&backends, 0, |_| false).is_none(), "nothing usable: none");
    }

    #[test]
    fn every_endpoint_usable_is_the_plain_choice() {
        let backends = [backend("blue", 70, &[1, 2, 3]), backend("green", 30, &[4, 5])];
        for n in 0..1_000 {
            assert_eq!(choose_endpoint_where(&backends, n, |_| true), choose_endpoint(&backends, n));
        }
    }

    #[test]
    fn any_hundred_consecutive_requests_split_exactly() {
        // Each worker VM counts on its own and starts anywhere: every window of one round is exact.
        let backends = [backend("blue", 90, &[1]), backend("green", 10, &[2])];
        for start in [0, 1, 37, 99, 12_345, u64::MAX / 3] {
            let green =
                (start..start + 100).filter(|n| choose_endpoint(&backends, *n).unwrap().address.port() == 2).count();
            assert_eq!(green, 10, "window starting at {start}");
        }
    }

    #[test]
    fn huge_counters_do_not_overflow() {
        let backends = [backend("a", u32::MAX, &[1, 2]), backend("b", u32::MAX, &[3])];
        for n in [u64::MAX, u64::MAX - 1, u64::MAX / 2] {
            assert!(choose_endpoint(&backends, n).is_some());
        }
    }
}
