//! The panic threshold, as in Envoy: when fewer than a share of a route's checked endpoints pass their checks, the
//! likelier cause is the checker or the network rather than that many backends failing at once, so the route
//! keeps every endpoint (routing to some that may be down beats routing to none), and says so.

use berth_table::Source;

use crate::Diagnostic;

/// A share of a route's checked endpoints, in percent; 0 turns panic routing off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanicThreshold(pub u8);

impl PanicThreshold {
    /// Envoy's default.
    pub const DEFAULT: PanicThreshold = PanicThreshold(50);

    /// Whether a route with `healthy` of its `checked` endpoints passing is in panic: fewer than the threshold's
    /// share pass. A route with no checked endpoint never is.
    pub fn in_panic(self, healthy: usize, checked: usize) -> bool {
        checked > 0 && healthy.saturating_mul(100) < checked.saturating_mul(usize::from(self.0))
    }
}

/// A route kept whole because it is in panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panic {
    /// Which route, in words: `web.example prefix /`, `tcp port 31000`, `tls db.example`, `default backend`.
    pub route: String,
    pub source: Source,
    pub healthy: usize,
    pub checked: usize,
}

impl Panic {
    /// A warning on the route's object, for `berth routes`, `/v1/routes` and the log.
    pub fn diagnostic(&self, threshold: PanicThreshold) -> Diagnostic {
        Diagnostic::new(format!(
            "route {}: in panic: {} of {} checked endpoints pass their health checks, fewer than the panic threshold \
             of {}%, so it routes to all of them; check the endpoints and the controller's network \
             (--health-panic-threshold)",
            self.route, self.healthy, self.checked, threshold.0
        ))
        .object(self.source.to_string())
        .warning()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_threshold_is_panic_at_it_is_not() {
        let half = PanicThreshold::DEFAULT;
        assert!(half.in_panic(0, 1));
        assert!(half.in_panic(1, 3));
        assert!(half.in_panic(4, 10));
        assert!(!half.in_panic(5, 10), "exactly half passing is not panic, as in Envoy");
        assert!(!half.in_panic(3, 3));
        assert!(!half.in_panic(0, 0), "nothing checked, nothing to panic about");
    }

    #[test]
    fn zero_turns_panic_off_and_a_hundred_panics_on_any_failure() {
        assert!(!PanicThreshold(0).in_panic(0, 5));
        assert!(PanicThreshold(100).in_panic(4, 5));
        assert!(!PanicThreshold(100).in_panic(5, 5));
    }

    #[test]
    fn the_warning_names_the_route_its_object_and_the_counts() {
        let panic = Panic {
            route: "web.example prefix /".into(),
            source: Source { kind: "Ingress".into(), namespace: "default".into(), name: "web".into() },
            healthy: 1,
            checked: 3,
        };
        let text = panic.diagnostic(PanicThreshold::DEFAULT).to_string();
        assert!(
            text.starts_with("Ingress default/web: route web.example prefix /: in panic: 1 of 3 checked endpoints"),
            "{text}"
        );
        assert!(text.contains("panic threshold of 50%"), "{text}");
    }
}
