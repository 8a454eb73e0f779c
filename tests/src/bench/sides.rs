//! The three Envoys every comparison runs: Berth's filter; the no-op wasm filter (tools/noop-filter) in front of
//! Envoy's own routing, the floor any proxy-wasm filter costs in this Envoy; and Envoy's own routing alone. Rounds
//! rotate which side runs first, so drift on the machine falls on each alike.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use berth_tests::Envoy;
use berth_tests::envoy::Wrapper;

use super::envoy_options;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Berth,
    Noop,
    Native,
}

impl Side {
    pub const ALL: [Side; 3] = [Side::Berth, Side::Noop, Side::Native];

    pub fn name(self) -> &'static str {
        match self {
            Side::Berth => "Berth",
            Side::Noop => "no-op wasm",
            Side::Native => "native",
        }
    }

    /// Round `round`'s order: [`Side::ALL`] rotated by the round, so that over every three rounds each side runs
    /// first, second and last once.
    pub fn order(round: usize) -> [Side; 3] {
        let mut order = Side::ALL;
        order.rotate_left(round % Side::ALL.len());
        order
    }
}

/// The ratios reported, numerator and denominator: Berth against native (the goal), the floor (the no-op against
/// native) and Berth's own part (Berth against the no-op).
pub const BERTH_NATIVE: (Side, Side) = (Side::Berth, Side::Native);
pub const FLOOR: (Side, Side) = (Side::Noop, Side::Native);
pub const BERTH_OWN: (Side, Side) = (Side::Berth, Side::Noop);
pub const PAIRS: [(Side, Side); 3] = [BERTH_NATIVE, FLOOR, BERTH_OWN];

/// `a / b` of a pair, as the report names it.
pub fn pair_name((a, b): (Side, Side)) -> String {
    format!("{} / {}", a.name(), b.name())
}

/// One value per side.
#[derive(Debug, Clone, Default)]
pub struct PerSide<T> {
    pub berth: T,
    pub noop: T,
    pub native: T,
}

impl<T> PerSide<T> {
    /// Each side's value from `value`.
    pub fn from_fn(value: impl Fn(Side) -> T) -> PerSide<T> {
        PerSide { berth: value(Side::Berth), noop: value(Side::Noop), native: value(Side::Native) }
    }

    pub fn get(&self, side: Side) -> &T {
        match side {
            Side::Berth => &self.berth,
            Side::Noop => &self.noop,
            Side::Native => &self.native,
        }
    }

    pub fn get_mut(&mut self, side: Side) -> &mut T {
        match side {
            Side::Berth => &mut self.berth,
            Side::Noop => &mut self.noop,
            Side::Native => &mut self.native,
        }
    }
}

/// A side's Envoy before it runs: its bootstrap, the address clients use (HTTP or TCP listener) and its admin.
#[derive(Debug, Clone)]
pub struct SideConfig {
    pub bootstrap: PathBuf,
    pub listener: SocketAddr,
    pub admin: SocketAddr,
}

impl SideConfig {
    /// A running Envoy's: to start another on the same bootstrap once it has stopped.
    pub fn of(envoy: &Envoy, listener: SocketAddr) -> SideConfig {
        SideConfig { bootstrap: envoy.config.clone(), listener, admin: envoy.admin }
    }

    /// Starts an Envoy on it with the benchmark's options, logging to `<dir>/<name>.log`, under `wrapper` if given.
    pub fn start(&self, name: &str, dir: &Path, workers: u32, wrapper: Option<&Wrapper>) -> Envoy {
        let options = envoy_options(workers);
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        Envoy::run_under(wrapper, name, &self.bootstrap, self.listener, self.admin, dir, &options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_three_rounds_each_side_runs_in_every_place_once() {
        for place in 0..3 {
            let seen: Vec<Side> = (0..3).map(|round| Side::order(round)[place]).collect();
            assert!(Side::ALL.iter().all(|side| seen.contains(side)), "place {place}: {seen:?}");
        }
        assert_eq!(Side::order(3), Side::order(0));
    }
}
