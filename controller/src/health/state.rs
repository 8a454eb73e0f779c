//! One endpoint's health as a state machine over its check results: consecutive results against the current
//! state, compared with the check's thresholds.
//!
//! A new endpoint starts healthy, on probation: it takes traffic at once, so a new route, a scale-up or a
//! controller restart never blackholes endpoints that work, and its first check runs at once. Until it has passed
//! one check, its first failure is not decisive (it may simply not be listening yet, as when Berth and the
//! backends start together): it is checked again within a second ([`super::scheduler`]), and a second failure in a
//! row takes it out, so a dead new endpoint is routed to for about a second. One that was never seen up comes in on
//! its first pass; once it has worked, the thresholds apply as written.

/// Results in a row needed to change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub healthy: u32,
    pub unhealthy: u32,
}

/// Failures in a row that take out an endpoint never seen up: the first is not decisive.
const NEW_ENDPOINT_FAILURES: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointState {
    healthy: bool,
    /// Whether it has ever passed a check.
    proven: bool,
    /// Results in a row that disagree with `healthy`.
    streak: u32,
}

impl Default for EndpointState {
    fn default() -> Self {
        EndpointState { healthy: true, proven: false, streak: 0 }
    }
}

impl EndpointState {
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Whether it has ever passed a check.
    pub fn is_proven(&self) -> bool {
        self.proven
    }

    /// Takes one check result; whether the endpoint changed state.
    pub fn record(&mut self, passed: bool, thresholds: Thresholds) -> bool {
        let proven = self.proven;
        self.proven |= passed;
        if passed == self.healthy {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let needed = match (self.healthy, proven) {
            (true, true) => thresholds.unhealthy,
            (true, false) => NEW_ENDPOINT_FAILURES,
            (false, false) => 1,
            (false, true) => thresholds.healthy,
        };
        if self.streak < needed.max(1) {
            return false;
        }
        self.healthy = passed;
        self.streak = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds { healthy: 2, unhealthy: 3 };

    /// Feeds `results` (`+` passed, `-` failed) and returns the state after each, `H` or `U`.
    fn run(state: &mut EndpointState, thresholds: Thresholds, results: &str) -> String {
        results
            .chars()
            .map(|c| {
                state.record(c == '+', thresholds);
                if state.is_healthy() { 'H' } else { 'U' }
            })
            .collect()
    }

    #[test]
    fn a_new_endpoint_is_healthy_before_any_check() {
        assert!(EndpointState::default().is_healthy());
    }

    #[test]
    fn a_proven_endpoint_leaves_after_the_unhealthy_threshold_of_failures_in_a_row() {
        let mut state = EndpointState::default();
        assert_eq!(run(&mut state, T, "+--+--"), "HHHHHH", "a pass in between resets the count");
        assert_eq!(run(&mut state, T, "-"), "U");
    }

    #[test]
    fn an_unhealthy_endpoint_returns_after_the_healthy_threshold_of_passes_in_a_row() {
        let mut state = EndpointState::default();
        assert_eq!(run(&mut state, T, "+---"), "HHHU");
        assert!(state.is_proven());
        assert_eq!(run(&mut state, T, "+-+-+"), "UUUUU", "a failure in between resets the count");
        assert_eq!(run(&mut state, T, "+"), "H");
        assert_eq!(run(&mut state, T, "--"), "HH", "back to the unhealthy threshold once proven");
    }

    #[test]
    fn a_new_endpoint_leaves_on_its_second_failure_in_a_row_and_returns_on_its_first_pass() {
        let mut state = EndpointState::default();
        assert_eq!(run(&mut state, T, "-"), "H", "the first failure is not decisive");
        assert_eq!(run(&mut state, T, "-"), "U");
        assert_eq!(run(&mut state, T, "+"), "H", "never seen up: no healthy threshold to wait for");
        assert_eq!(run(&mut state, T, "--"), "HH", "seen up now: the unhealthy threshold applies");
        assert_eq!(run(&mut state, T, "-+"), "UU", "and the healthy threshold");
        let one = Thresholds { healthy: 1, unhealthy: 1 };
        assert_eq!(run(&mut EndpointState::default(), one, "-+-"), "HHU", "a pass between failures resets");
    }

    #[test]
    fn state_changes_are_reported_once() {
        let mut state = EndpointState::default();
        let changes: Vec<bool> = "+---++".chars().map(|c| state.record(c == '+', T)).collect();
        assert_eq!(changes, [false, false, false, true, false, true]);
    }

    #[test]
    fn thresholds_of_one_flip_on_every_disagreeing_result() {
        let one = Thresholds { healthy: 1, unhealthy: 1 };
        let mut state = EndpointState::default();
        assert_eq!(run(&mut state, one, "+-+-"), "HUHU");
        // A zero threshold acts as one rather than flipping on an agreeing result.
        let zero = Thresholds { healthy: 0, unhealthy: 0 };
        let mut state = EndpointState::default();
        assert_eq!(run(&mut state, zero, "++-"), "HHU");
    }
}
