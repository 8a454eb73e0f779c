//! Port-range arithmetic for TCP exposure: parsing ranges and handing out ports, stable across restarts.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An inclusive range of TCP ports, written `31000-31010` (or a single `31000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }

    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    /// Never: a range holds at least its start.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> {
        self.start..=self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end { write!(f, "{}", self.start) } else { write!(f, "{}-{}", self.start, self.end) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortRangeError {
    #[error("{0:?} is not a port or a range like 31000-31010")]
    Syntax(String),
    #[error("range {start}-{end} ends before it starts")]
    Backwards { start: u16, end: u16 },
    #[error("port 0 cannot be listened on")]
    Zero,
}

impl PortRange {
    pub fn new(start: u16, end: u16) -> Result<PortRange, PortRangeError> {
        if start == 0 {
            return Err(PortRangeError::Zero);
        }
        if end < start {
            return Err(PortRangeError::Backwards { start, end });
        }
        Ok(PortRange { start, end })
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let port = |s: &str| s.trim().parse::<u16>().map_err(|_| PortRangeError::Syntax(text.to_string()));
        match text.split_once('-') {
            Some((start, end)) => PortRange::new(port(start)?, port(end)?),
            None => port(text).and_then(|p| PortRange::new(p, p)),
        }
    }
}

/// Parses a comma-separated list of ranges: `31000-31010,32000`.
pub fn parse_ranges(text: &str) -> Result<Vec<PortRange>, PortRangeError> {
    text.split(',').filter(|part| !part.trim().is_empty()).map(str::parse).collect()
}

/// One request for a port: who asks (a stable key, e.g. `VirtualService shop/db tcp[0]`) and the port it held
/// before, if any (from what was written back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortClaim {
    pub key: String,
    pub held: Option<u16>,
}

/// The outcome for one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// Granted; `outside_ranges` flags a port kept although the ranges no longer include it.
    Granted { port: u16, outside_ranges: bool },
    /// No free port: every port of the ranges is held or reserved.
    Full,
}

/// Hands out ports to `claims`, taken oldest first.
///
/// A claim keeps the port it held unless an older claim holds it too (or it collides with a reserved port that
/// is not its own, such as another Service's NodePort), so nothing moves across restarts or range edits. Every
/// other claim gets the lowest port in `ranges` that is neither held nor `reserved`.
pub fn allocate(ranges: &[PortRange], reserved: &BTreeSet<u16>, claims: &[PortClaim]) -> Vec<Allocation> {
    allocate_where(ranges, reserved, claims, |_| true)
}

/// [`allocate`], except that only claims for which `may_take_free` is true get a free port. The others keep the
/// port they hold, on the same terms, or get [`Allocation::Full`] without taking one: how a caller keeps the ports
/// of a claimant it will not serve for now without handing it new ones.
pub fn allocate_where(
    ranges: &[PortRange],
    reserved: &BTreeSet<u16>,
    claims: &[PortClaim],
    may_take_free: impl Fn(&PortClaim) -> bool,
) -> Vec<Allocation> {
    let mut taken: BTreeSet<u16> = BTreeSet::new();
    let mut outcome: Vec<Option<Allocation>> = vec![None; claims.len()];
    for (index, claim) in claims.iter().enumerate() {
        if let Some(port) = claim.held
            && port != 0
            && !reserved.contains(&port)
            && taken.insert(port)
        {
            let outside_ranges = !ranges.iter().any(|r| r.contains(port));
            outcome[index] = Some(Allocation::Granted { port, outside_ranges });
        }
    }
    let mut free: Vec<u16> =
        ranges.iter().flat_map(PortRange::ports).filter(|p| !reserved.contains(p) && !taken.contains(p)).collect();
    free.sort_unstable();
    free.dedup();
    let mut next = free.into_iter();
    outcome
        .into_iter()
        .zip(claims)
        .map(|(granted, claim)| {
            granted.unwrap_or_else(|| match may_take_free(claim).then(|| next.next()).flatten() {
                Some(port) => Allocation::Granted { port, outside_ranges: false },
                None => Allocation::Full,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(key: &str, held: Option<u16>) -> PortClaim {
        PortClaim { key: key.into(), held }
    }

    fn granted(port: u16) -> Allocation {
        Allocation::Granted { port, outside_ranges: false }
    }

    #[test]
    fn parses_ranges_and_single_ports() {
        assert_eq!("31000-31010".parse(), Ok(PortRange { start: 31000, end: 31010 }));
        assert_eq!(" 31000 ".parse(), Ok(PortRange { start: 31000, end: 31000 }));
        assert_eq!(parse_ranges("31000-31001,32000").unwrap().len(), 2);
        assert!(matches!("31010-31000".parse::<PortRange>(), Err(PortRangeError::Backwards { .. })));
        assert!(matches!("http".parse::<PortRange>(), Err(PortRangeError::Syntax(_))));
        assert!(matches!("0-10".parse::<PortRange>(), Err(PortRangeError::Zero)));
        assert!(matches!("70000".parse::<PortRange>(), Err(PortRangeError::Syntax(_))));
        assert_eq!(PortRange { start: 5, end: 9 }.to_string(), "5-9");
        assert_eq!(PortRange { start: 5, end: 5 }.len(), 1);
    }

    #[test]
    fn new_claims_get_the_lowest_free_ports_in_order() {
        let ranges = [PortRange { start: 31000, end: 31002 }];
        let outcome = allocate(&ranges, &BTreeSet::new(), &[claim("a", None), claim("b", None)]);
        assert_eq!(outcome, vec![granted(31000), granted(31001)]);
    }

    #[test]
    fn held_ports_are_kept_and_skipped_by_newcomers() {
        let ranges = [PortRange { start: 31000, end: 31002 }];
        let outcome = allocate(&ranges, &BTreeSet::new(), &[claim("new", None), claim("old", Some(31000))]);
        assert_eq!(outcome, vec![granted(31001), granted(31000)]);
    }

    #[test]
    fn reserved_ports_are_never_handed_out() {
        let ranges = [PortRange { start: 31000, end: 31002 }];
        let reserved = BTreeSet::from([31000, 31001]);
        let outcome = allocate(&ranges, &reserved, &[claim("a", None), claim("b", None)]);
        assert_eq!(outcome, vec![granted(31002), Allocation::Full]);
    }

    #[test]
    fn a_full_range_fails_only_the_newcomer() {
        let ranges = [PortRange { start: 31000, end: 31000 }];
        let outcome = allocate(&ranges, &BTreeSet::new(), &[claim("a", Some(31000)), claim("b", None)]);
        assert_eq!(outcome, vec![granted(31000), Allocation::Full]);
    }

    #[test]
    fn shrinking_the_range_keeps_holders_and_flags_them() {
        let ranges = [PortRange { start: 31000, end: 31000 }];
        let outcome = allocate(&ranges, &BTreeSet::new(), &[claim("a", Some(31005)), claim("b", None)]);
        assert_eq!(outcome, vec![Allocation::Granted { port: 31005, outside_ranges: true }, granted(31000)]);
    }

    #[test]
    fn two_claims_on_one_port_go_to_the_older_and_the_younger_moves() {
        let ranges = [PortRange { start: 31000, end: 31001 }];
        let outcome = allocate(&ranges, &BTreeSet::new(), &[claim("old", Some(31000)), claim("young", Some(31000))]);
        assert_eq!(outcome, vec![granted(31000), granted(31001)]);
    }

    #[test]
    fn several_ranges_are_used_in_port_order() {
        let ranges = [PortRange { start: 32000, end: 32000 }, PortRange { start: 31000, end: 31000 }];
        let outcome = allocate(&ranges, &BTreeSet::new(), &[claim("a", None), claim("b", None), claim("c", None)]);
        assert_eq!(outcome, vec![granted(31000), granted(32000), Allocation::Full]);
    }

    #[test]
    fn claims_not_allowed_free_ports_keep_what_they_hold_and_take_nothing() {
        let ranges = [PortRange { start: 31000, end: 31001 }];
        let claims = [claim("held", Some(31001)), claim("barred", None), claim("new", None)];
        let outcome = allocate_where(&ranges, &BTreeSet::new(), &claims, |c| c.key != "barred" && c.key != "held");
        assert_eq!(outcome, vec![granted(31001), Allocation::Full, granted(31000)]);
    }

    #[test]
    fn allocation_is_deterministic_and_distinct_at_scale() {
        let ranges = [PortRange { start: 30000, end: 30999 }];
        let claims: Vec<PortClaim> = (0..1000).map(|i| claim(&format!("c{i}"), None)).collect();
        let outcome = allocate(&ranges, &BTreeSet::new(), &claims);
        let ports: BTreeSet<u16> = outcome
            .iter()
            .map(|a| match a {
                Allocation::Granted { port, .. } => *port,
                Allocation::Full => panic!("full"),
            })
            .collect();
        assert_eq!(ports.len(), 1000);
        assert_eq!(outcome, allocate(&ranges, &BTreeSet::new(), &claims));
    }
}
