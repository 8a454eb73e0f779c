//! A Service's active health check, as its `berth.dev/health-check*` annotations ask for it.
//!
//! Every annotation is optional and each one stands alone: a malformed value is a problem naming that
//! annotation, and the default applies for that setting only, so a typo never stops checking (nor routing).
//!
//! | annotation | value | default |
//! | --- | --- | --- |
//! | `berth.dev/health-check` | `tcp`, `http` or `none` | `http` when a path, status or host is given, else `tcp` |
//! | `berth.dev/health-check-path` | an absolute path, e.g. `/healthz` | `/` |
//! | `berth.dev/health-check-status` | a code (`200`) or a range (`200-299`) | `200-399` |
//! | `berth.dev/health-check-host` | the `Host` header to send | the endpoint's `IP:PORT` |
//! | `berth.dev/health-check-interval` | a duration, at least 100ms | `berth run --health-interval` (5s) |
//! | `berth.dev/health-check-timeout` | a duration | 2s |
//! | `berth.dev/health-check-healthy-threshold` | checks in a row, 1-100 | 2 |
//! | `berth.dev/health-check-unhealthy-threshold` | checks in a row, 1-100 | 2 |

use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub const KIND_ANNOTATION: &str = "berth.dev/health-check";
pub const PATH_ANNOTATION: &str = "berth.dev/health-check-path";
pub const STATUS_ANNOTATION: &str = "berth.dev/health-check-status";
pub const HOST_ANNOTATION: &str = "berth.dev/health-check-host";
pub const INTERVAL_ANNOTATION: &str = "berth.dev/health-check-interval";
pub const TIMEOUT_ANNOTATION: &str = "berth.dev/health-check-timeout";
pub const HEALTHY_THRESHOLD_ANNOTATION: &str = "berth.dev/health-check-healthy-threshold";
pub const UNHEALTHY_THRESHOLD_ANNOTATION: &str = "berth.dev/health-check-unhealthy-threshold";

const KNOWN: [&str; 8] = [
    KIND_ANNOTATION,
    PATH_ANNOTATION,
    STATUS_ANNOTATION,
    HOST_ANNOTATION,
    INTERVAL_ANNOTATION,
    TIMEOUT_ANNOTATION,
    HEALTHY_THRESHOLD_ANNOTATION,
    UNHEALTHY_THRESHOLD_ANNOTATION,
];

/// Checking more often than this costs backends more than it tells.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 2;
const MAX_THRESHOLD: u32 = 100;

/// How one endpoint is checked and how many results in a row change its state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HealthCheck {
    pub probe: Probe,
    /// From the end of one check to the start of the next: checks of one endpoint never overlap.
    pub interval: Duration,
    /// For the whole check: connecting and, for HTTP, sending the request and reading the status line.
    pub timeout: Duration,
    /// Passed checks in a row that bring an unhealthy endpoint back.
    pub healthy_threshold: u32,
    /// Failed checks in a row that take a healthy endpoint out.
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Probe {
    /// The endpoint accepts a TCP connection.
    Tcp,
    /// `GET path` answers with a status in `status`.
    Http { path: String, host: Option<String>, status: StatusRange },
}

/// HTTP status codes from `low` to `high`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusRange {
    pub low: u16,
    pub high: u16,
}

impl StatusRange {
    pub const DEFAULT: StatusRange = StatusRange { low: 200, high: 399 };

    pub fn contains(self, status: u16) -> bool {
        (self.low..=self.high).contains(&status)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high { write!(f, "{}", self.low) } else { write!(f, "{}-{}", self.low, self.high) }
    }
}

impl HealthCheck {
    /// A TCP connect check every `interval`, with the default timeout and thresholds.
    pub fn tcp(interval: Duration) -> HealthCheck {
        HealthCheck {
            probe: Probe::Tcp,
            interval,
            timeout: DEFAULT_TIMEOUT,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
        }
    }
}

/// `tcp connect every 5s` or `http GET /healthz expecting 200-399 every 5s`: how people are shown a check.
impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.probe {
            Probe::Tcp => f.write_str("tcp connect")?,
            Probe::Http { path, host, status } => {
                write!(f, "http GET {path}")?;
                if let Some(host) = host {
                    write!(f, " (Host {host})")?;
                }
                write!(f, " expecting {status}")?;
            }
        }
        write!(f, " every {}", format_duration(self.interval))
    }
}

/// One annotation that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationProblem {
    pub annotation: String,
    pub message: String,
}

/// The check a Service's annotations ask for (`None`: `berth.dev/health-check: none`), starting from a TCP check
/// every `default_interval`, and the annotations that could not be used.
pub fn health_check(meta: &ObjectMeta, default_interval: Duration) -> (Option<HealthCheck>, Vec<AnnotationProblem>) {
    let mut check = HealthCheck::tcp(default_interval);
    let mut problems = Vec::new();
    let Some(annotations) = meta.annotations.as_ref() else { return (Some(check), problems) };
    let get = |key: &str| annotations.get(key).map(|v| v.trim());
    let mut problem = |annotation: &str, message: String| {
        problems.push(AnnotationProblem { annotation: annotation.to_string(), message });
    };

    for key in annotations.keys() {
        if key.starts_with(KIND_ANNOTATION) && !KNOWN.contains(&key.as_str()) {
            problem(key, format!("is not a health check annotation; berth reads {}", KNOWN.join(", ")));
        }
    }

    let http_settings = [PATH_ANNOTATION, STATUS_ANNOTATION, HOST_ANNOTATION];
    let kind = match get(KIND_ANNOTATION) {
        None => None,
        Some(kind @ ("tcp" | "http" | "none")) => Some(kind),
        Some(other) => {
            problem(KIND_ANNOTATION, format!("{other:?} is not a kind of check; use tcp, http or none"));
            None
        }
    };
    let http = match kind {
        Some("none") => return (None, problems),
        Some("tcp") => {
            for key in http_settings.iter().filter(|key| get(key).is_some()) {
                problem(key, format!("applies to http checks only, and {KIND_ANNOTATION} is tcp; it is ignored"));
            }
            false
        }
        Some(_) => true,
        None => http_settings.iter().any(|key| get(key).is_some()),
    };

    if http {
        let path = match get(PATH_ANNOTATION) {
            None => "/".to_string(),
            Some(path) => parse_path(path).unwrap_or_else(|message| {
                problem(PATH_ANNOTATION, format!("{message}; checking / instead"));
                "/".to_string()
            }),
        };
        let status = match get(STATUS_ANNOTATION) {
            None => StatusRange::DEFAULT,
            Some(status) => parse_status(status).unwrap_or_else(|message| {
                problem(STATUS_ANNOTATION, format!("{message}; expecting {} instead", StatusRange::DEFAULT));
                StatusRange::DEFAULT
            }),
        };
        let host = get(HOST_ANNOTATION).and_then(|host| {
            parse_host(host)
                .map_err(|message| problem(HOST_ANNOTATION, format!("{message}; sending the endpoint's address")))
                .ok()
        });
        check.probe = Probe::Http { path, host, status };
    }

    if let Some(value) = get(INTERVAL_ANNOTATION) {
        match parse_duration(value) {
            Ok(interval) if interval >= MIN_INTERVAL => check.interval = interval,
            Ok(_) => problem(
                INTERVAL_ANNOTATION,
                format!(
                    "{value:?} is shorter than {}; using {}",
                    format_duration(MIN_INTERVAL),
                    format_duration(default_interval)
                ),
            ),
            Err(message) => {
                problem(INTERVAL_ANNOTATION, format!("{message}; using {}", format_duration(default_interval)))
            }
        }
    }
    if let Some(value) = get(TIMEOUT_ANNOTATION) {
        match parse_duration(value) {
            Ok(timeout) if !timeout.is_zero() => check.timeout = timeout,
            Ok(_) => problem(
                TIMEOUT_ANNOTATION,
                format!("must be longer than 0; using {}", format_duration(DEFAULT_TIMEOUT)),
            ),
            Err(message) => {
                problem(TIMEOUT_ANNOTATION, format!("{message}; using {}", format_duration(DEFAULT_TIMEOUT)))
            }
        }
    }
    for (key, threshold, default) in [
        (HEALTHY_THRESHOLD_ANNOTATION, &mut check.healthy_threshold, DEFAULT_HEALTHY_THRESHOLD),
        (UNHEALTHY_THRESHOLD_ANNOTATION, &mut check.unhealthy_threshold, DEFAULT_UNHEALTHY_THRESHOLD),
    ] {
        if let Some(value) = get(key) {
            match value.parse::<u32>() {
                Ok(n) if (1..=MAX_THRESHOLD).contains(&n) => *threshold = n,
                _ => problem(
                    key,
                    format!("{value:?} is not a number of checks from 1 to {MAX_THRESHOLD}; using {default}"),
                ),
            }
        }
    }
    (Some(check), problems)
}

/// `500ms`, `5s`, `1m`, `1.5s`: a number and a unit (ms, s or m), as in Kubernetes and Go durations. Berth's one
/// duration syntax: the health check annotations and the command line's durations all read through it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration; write it like 5s, 500ms or 1m");
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let unit_nanos = match unit {
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        _ => return Err(bad()),
    };
    // Rounded, so that 0.3s is 300ms and not a nanosecond less.
    let nanos = (number * unit_nanos).round();
    // An hour is far longer than any sensible check interval or timeout; the bound keeps the conversion exact.
    if nanos > 3600e9 {
        return Err(format!("{text:?} is longer than an hour"));
    }
    // From 0 to 3.6e12, checked above: the cast is exact.
    Ok(Duration::from_nanos(nanos as u64))
}

/// `5s`, `500ms`, `1.5s`: the shortest way to write a duration that [`parse_duration`] reads back.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) { format!("{}s", millis / 1000) } else { format!("{millis}ms") }
}

/// An absolute path with an optional query, without spaces or control characters (it goes into a request line).
fn parse_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an absolute path; start it with /"));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{path:?} contains spaces or control characters; percent-encode them"));
    }
    Ok(path.to_string())
}

/// A host name or `host:port`, without spaces or control characters (it goes into a header).
fn parse_host(host: &str) -> Result<String, String> {
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{host:?} is not a host name"));
    }
    Ok(host.to_string())
}

/// `200` or `200-299`, codes from 100 to 599.
fn parse_status(text: &str) -> Result<StatusRange, String> {
    let bad = || format!("{text:?} is not a status code or range; write it like 200 or 200-299");
    let code = |s: &str| s.trim().parse::<u16>().ok().filter(|c| (100..=599).contains(c));
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (code(low).ok_or_else(bad)?, code(high).ok_or_else(bad)?),
        None => {
            let code = code(text).ok_or_else(bad)?;
            (code, code)
        }
    };
    if low > high {
        return Err(format!("{text:?} ends before it starts"));
    }
    Ok(StatusRange { low, high })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(annotations: &[(&str, &str)]) -> ObjectMeta {
        let annotations: BTreeMap<String, String> =
            annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ObjectMeta { name: Some("web".into()), annotations: Some(annotations), ..ObjectMeta::default() }
    }

    fn parse(annotations: &[(&str, &str)]) -> (Option<HealthCheck>, Vec<String>) {
        let (check, problems) = health_check(&meta(annotations), DEFAULT_INTERVAL);
        (check, problems.into_iter().map(|p| format!("{}: {}", p.annotation, p.message)).collect())
    }

    #[test]
    fn without_annotations_a_service_gets_a_tcp_check_at_the_default_interval() {
        let (check, problems) = health_check(&ObjectMeta::default(), Duration::from_millis(300));
        assert!(problems.is_empty());
        let check = check.unwrap();
        assert_eq!(check, HealthCheck::tcp(Duration::from_millis(300)));
        assert_eq!((check.healthy_threshold, check.unhealthy_threshold, check.timeout), (2, 2, DEFAULT_TIMEOUT));
        assert_eq!(check.to_string(), "tcp connect every 300ms");
    }

    #[test]
    fn a_path_makes_it_an_http_check_with_every_setting_read() {
        let (check, problems) = parse(&[
            (PATH_ANNOTATION, "/healthz?full=1"),
            (STATUS_ANNOTATION, "200-204"),
            (HOST_ANNOTATION, "web.internal"),
            (INTERVAL_ANNOTATION, "1.5s"),
            (TIMEOUT_ANNOTATION, "250ms"),
            (HEALTHY_THRESHOLD_ANNOTATION, "3"),
            (UNHEALTHY_THRESHOLD_ANNOTATION, " 1 "),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let check = check.unwrap();
        let status = StatusRange { low: 200, high: 204 };
        let host = Some("web.internal".to_string());
        assert_eq!(check.probe, Probe::Http { path: "/healthz?full=1".into(), host, status });
        assert_eq!((check.interval, check.timeout), (Duration::from_millis(1500), Duration::from_millis(250)));
        assert_eq!((check.healthy_threshold, check.unhealthy_threshold), (3, 1));
        assert_eq!(check.to_string(), "http GET /healthz?full=1 (Host web.internal) expecting 200-204 every 1500ms");
    }

    #[test]
    fn http_alone_checks_the_root_for_any_success_or_redirect() {
        let (check, problems) = parse(&[(KIND_ANNOTATION, "http")]);
        assert!(problems.is_empty());
        let probe = check.unwrap().probe;
        assert_eq!(probe, Probe::Http { path: "/".into(), host: None, status: StatusRange::DEFAULT });
        let (check, _) = parse(&[(STATUS_ANNOTATION, "204")]);
        assert!(matches!(check.unwrap().probe, Probe::Http { status: StatusRange { low: 204, high: 204 }, .. }));
    }

    #[test]
    fn none_turns_checking_off() {
        assert_eq!(parse(&[(KIND_ANNOTATION, "none")]), (None, vec![]));
    }

    #[test]
    fn each_malformed_value_is_a_problem_naming_it_and_its_default_applies() {
        let (check, problems) = parse(&[
            (PATH_ANNOTATION, "healthz"),
            (STATUS_ANNOTATION, "ok"),
            (HOST_ANNOTATION, "a b"),
            (INTERVAL_ANNOTATION, "5x"),
            (TIMEOUT_ANNOTATION, "0s"),
            (HEALTHY_THRESHOLD_ANNOTATION, "0"),
            (UNHEALTHY_THRESHOLD_ANNOTATION, "many"),
        ]);
        let check = check.unwrap();
        assert_eq!(check.probe, Probe::Http { path: "/".into(), host: None, status: StatusRange::DEFAULT });
        assert_eq!(check, HealthCheck { probe: check.probe.clone(), ..HealthCheck::tcp(DEFAULT_INTERVAL) });
        assert_eq!(
            problems,
            [
                "berth.dev/health-check-path: \"healthz\" is not an absolute path; start it with /; checking / instead",
                "berth.dev/health-check-status: \"ok\" is not a status code or range; write it like 200 or 200-299; \
                 expecting 200-399 instead",
                "berth.dev/health-check-host: \"a b\" is not a host name; sending the endpoint's address",
                "berth.dev/health-check-interval: \"5x\" is not a duration; write it like 5s, 500ms or 1m; using 5s",
                "berth.dev/health-check-timeout: must be longer than 0; using 2s",
                "berth.dev/health-check-healthy-threshold: \"0\" is not a number of checks from 1 to 100; using 2",
                "berth.dev/health-check-unhealthy-threshold: \"many\" is not a number of checks from 1 to 100; \
                 using 2",
            ]
        );
    }

    #[test]
    fn an_unknown_kind_or_annotation_and_http_settings_on_a_tcp_check_are_problems() {
        let (check, problems) = parse(&[(KIND_ANNOTATION, "grpc"), ("berth.dev/health-check-paht", "/x")]);
        assert_eq!(check.unwrap().probe, Probe::Tcp);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("berth.dev/health-check-paht: is not a health check annotation; berth reads"));
        assert!(problems[1].contains("\"grpc\" is not a kind of check; use tcp, http or none"), "{problems:?}");
        let (check, problems) = parse(&[(KIND_ANNOTATION, "tcp"), (PATH_ANNOTATION, "/healthz")]);
        assert_eq!(check.unwrap().probe, Probe::Tcp);
        assert_eq!(
            problems,
            ["berth.dev/health-check-path: applies to http checks only, and berth.dev/health-check is tcp; it is \
              ignored"]
        );
        // Other berth.dev annotations are none of this parser's business.
        assert_eq!(parse(&[("berth.dev/backends", "pods")]).1, Vec::<String>::new());
    }

    #[test]
    fn intervals_have_a_floor() {
        let (check, problems) = parse(&[(INTERVAL_ANNOTATION, "10ms")]);
        assert_eq!(check.unwrap().interval, DEFAULT_INTERVAL);
        assert_eq!(problems, ["berth.dev/health-check-interval: \"10ms\" is shorter than 100ms; using 5s"]);
    }

    #[test]
    fn durations_read_and_print_back() {
        for (text, millis) in
            [("5s", 5000), ("500ms", 500), ("1m", 60_000), ("1.5s", 1500), ("0.3s", 300), ("0.1m", 6000)]
        {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(millis)), "{text}");
        }
        for bad in ["", "5", "s", "5 s", "-1s", "1h", "5sec", "1..2s", "2m30s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("61m").unwrap_err().contains("longer than an hour"));
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status("200"), Ok(StatusRange { low: 200, high: 200 }));
        assert_eq!(parse_status("200 - 299"), Ok(StatusRange { low: 200, high: 299 }));
        assert!(parse_status("299-200").unwrap_err().contains("ends before it starts"));
        for bad in ["99", "600", "2xx", "200-", "-", ""] {
            assert!(parse_status(bad).is_err(), "{bad:?}");
        }
        assert!(StatusRange::DEFAULT.contains(302) && !StatusRange::DEFAULT.contains(404));
    }
}
