//! The controller's Prometheus metrics, served as text at `GET /metrics` (by the `prometheus-client` crate).
//!
//! The rest of the controller reports what happens with one call each to the functions below, which record into
//! one process-wide set of metrics; what the latest publication holds (routes, errors, table version and size,
//! stale sources, endpoint health) is read from the [`Publication`] the server already shares, at each scrape, so it
//! can never disagree with `/v1/routes`.
//!
//! Labels are bounded: clusters, kinds, protocols, port ranges and outcomes, never an object or an endpoint. The
//! cluster Berth runs in (the top level of a directory source) is `cluster="local"`.

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::index::Index;
use crate::objects::{Kind, LOCAL_CLUSTER};
use crate::publish::{Difference, Publication};

/// The content type of Prometheus' text format, version 0.0.4 (what every scraper reads).
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What made a new table: an object changed (or a source's view of one), or an endpoint's health did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    Objects,
    Health,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Objects => "objects",
            Trigger::Health => "health",
        }
    }
}

/// What one write-back (an annotation or an Ingress status) came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteBack {
    Written,
    /// The object was gone before it could be written to.
    Gone,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClusterKind {
    cluster: String,
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RangeLabels {
    allocation: String,
    range: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TriggerLabel {
    trigger: &'static str,
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    // Set at each compilation.
    objects: Family<ClusterKind, Gauge>,
    ports_allocated: Family<RangeLabels, Gauge>,
    ports_free: Family<RangeLabels, Gauge>,
    compile_seconds: Histogram,
    leader: Gauge,
    // Counted as things happen.
    propagation_seconds: Family<TriggerLabel, Histogram>,
    health_checks: Family<ResultLabel, Counter>,
    watch_restarts: Family<ClusterKind, Counter>,
    write_backs: Family<ResultLabel, Counter>,
    events: Family<ResultLabel, Counter>,
    long_polls: Gauge,
    tables_served: Family<ResultLabel, Counter>,
    /// When the oldest change not yet in a published table was seen, and what it was.
    pending: Mutex<Option<(Instant, Trigger)>>,
    // Read from the snapshot at each scrape.
    routes: Family<ProtocolLabel, Gauge>,
    errors: Family<KindLabel, Gauge>,
    warnings: Family<KindLabel, Gauge>,
    table_version: Gauge,
    table_bytes: Gauge,
    source_stale: Family<SourceLabel, Gauge>,
    endpoints_checked: Gauge,
    endpoints_out_of_rotation: Gauge,
}

fn seconds_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("berth"),
            objects: Family::default(),
            ports_allocated: Family::default(),
            ports_free: Family::default(),
            compile_seconds: seconds_histogram(),
            leader: Gauge::default(),
            propagation_seconds: Family::new_with_constructor(seconds_histogram),
            health_checks: Family::default(),
            watch_restarts: Family::default(),
            write_backs: Family::default(),
            events: Family::default(),
            long_polls: Gauge::default(),
            tables_served: Family::default(),
            pending: Mutex::new(None),
            routes: Family::default(),
            errors: Family::default(),
            warnings: Family::default(),
            table_version: Gauge::default(),
            table_bytes: Gauge::default(),
            source_stale: Family::default(),
            endpoints_checked: Gauge::default(),
            endpoints_out_of_rotation: Gauge::default(),
        };
        let r = &mut metrics.registry;
        r.register("objects", "Objects watched, by cluster and kind", metrics.objects.clone());
        r.register("routes", "Routes in the table served, by protocol (http, tcp, tls)", metrics.routes.clone());
        r.register("errors", "Errors (objects or parts not served), by kind of object", metrics.errors.clone());
        r.register("warnings", "Warnings (served, but worth a look), by kind of object", metrics.warnings.clone());
        r.register(
            "ports_allocated",
            "Ports handed out to tcp routes, by PortAllocation range",
            metrics.ports_allocated.clone(),
        );
        r.register("ports_free", "Ports not handed out, by PortAllocation range", metrics.ports_free.clone());
        r.register("table_version", "Version of the table served", metrics.table_version.clone());
        r.register("table_bytes", "Size of the encoded table served, in bytes", metrics.table_bytes.clone());
        r.register("compile_seconds", "Time to compile the index into a table", metrics.compile_seconds.clone());
        r.register(
            "propagation_seconds",
            "Time from a change seen (trigger: objects or health) to the table holding it published",
            metrics.propagation_seconds.clone(),
        );
        r.register("health_checks", "Active health check results (passed, failed)", metrics.health_checks.clone());
        r.register("endpoints_checked", "Endpoints under active health checks", metrics.endpoints_checked.clone());
        r.register(
            "endpoints_out_of_rotation",
            "Endpoints left out of the table because they failed their health checks",
            metrics.endpoints_out_of_rotation.clone(),
        );
        r.register(
            "watch_restarts",
            "Watches that failed and resumed, by cluster and kind",
            metrics.watch_restarts.clone(),
        );
        r.register(
            "source_stale",
            "1 while a source cannot reach its objects (its last ones are served), by source",
            metrics.source_stale.clone(),
        );
        r.register(
            "leader",
            "1 when this replica writes back (leads, or runs without --leader-elect)",
            metrics.leader.clone(),
        );
        r.register(
            "write_backs",
            "Annotation and Ingress status writes (written, gone, failed)",
            metrics.write_backs.clone(),
        );
        r.register("events", "Kubernetes Events recorded (recorded, failed)", metrics.events.clone());
        r.register("long_polls", "Table requests held open, waiting for a new version", metrics.long_polls.clone());
        r.register(
            "tables_served",
            "Answers to GET /v1/table (result: table, not_modified)",
            metrics.tables_served.clone(),
        );
        metrics
    }

    /// The Prometheus text of every metric, with what `snapshot` holds.
    pub fn encode(&self, snapshot: &Publication) -> String {
        self.read_snapshot(snapshot);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    fn read_snapshot(&self, snapshot: &Publication) {
        if let Some(published) = &snapshot.table {
            let table = &published.table;
            for (protocol, count) in [("http", table.http.len()), ("tcp", table.tcp.len()), ("tls", table.tls.len())] {
                self.routes.get_or_create(&ProtocolLabel { protocol }).set(gauge_value(count));
            }
            self.table_version.set(i64::try_from(table.version).unwrap_or(i64::MAX));
            self.table_bytes.set(gauge_value(published.body.len()));
        }
        self.errors.clear();
        self.warnings.clear();
        for diagnostic in snapshot.diagnostics.iter() {
            let family = if diagnostic.is_warning() { &self.warnings } else { &self.errors };
            // `VirtualService default/web`: the kind is the first word; a file that could not be read at all has none.
            let kind = diagnostic.object.as_deref().and_then(|o| o.split_whitespace().next()).unwrap_or("none");
            family.get_or_create(&KindLabel { kind: kind.to_string() }).inc();
        }
        self.source_stale.clear();
        for source in snapshot.sources.iter() {
            self.source_stale.get_or_create(&SourceLabel { source: source.name.clone() }).set(i64::from(source.stale));
        }
        self.ports_allocated.clear();
        self.ports_free.clear();
        for range in snapshot.port_ranges.iter() {
            let labels = RangeLabels { allocation: range.allocation.clone(), range: range.range() };
            self.ports_allocated.get_or_create(&labels).set(gauge_value(range.allocated));
            self.ports_free.get_or_create(&labels).set(gauge_value(range.free));
        }
        self.endpoints_checked.set(gauge_value(snapshot.health.len()));
        self.endpoints_out_of_rotation.set(gauge_value(snapshot.health.iter().filter(|h| !h.healthy).count()));
    }

    /// After a compilation: what the index holds, how long it took, whether this replica leads.
    pub fn compiled(&self, took: Duration, index: &Index, leading: bool) {
        self.compile_seconds.observe(took.as_secs_f64());
        self.leader.set(i64::from(leading));
        self.objects.clear();
        for kind in Kind::ALL {
            for entry in index.of_kind(kind) {
                let cluster = cluster_label(entry.cluster());
                self.objects.get_or_create(&ClusterKind { cluster, kind: kind.as_str().to_string() }).inc();
            }
        }
    }

    /// Notes that a change was seen; the next publication that changes the table ends its propagation time. The
    /// oldest change not yet published counts: a burst of changes compiled together is one propagation.
    pub fn change_seen(&self, at: Instant, trigger: Trigger) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.get_or_insert((at, trigger));
        }
    }

    /// After a publication: a table that changed ends the pending change's propagation; one that did not means
    /// the change made no difference to the table, and nothing is counted.
    pub fn published(&self, outcome: &Difference) {
        let pending = self.pending.lock().ok().and_then(|mut pending| pending.take());
        if let (true, Some((seen, trigger))) = (outcome.table_changed, pending) {
            let labels = TriggerLabel { trigger: trigger.as_str() };
            self.propagation_seconds.get_or_create(&labels).observe(seen.elapsed().as_secs_f64());
        }
    }

    pub fn health_check(&self, passed: bool) {
        self.health_checks.get_or_create(&ResultLabel { result: if passed { "passed" } else { "failed" } }).inc();
    }

    pub fn watch_restarted(&self, cluster: &str, kind: Kind) {
        let labels = ClusterKind { cluster: cluster_label(cluster), kind: kind.as_str().to_string() };
        self.watch_restarts.get_or_create(&labels).inc();
    }

    pub fn wrote_back(&self, result: WriteBack) {
        let result = match result {
            WriteBack::Written => "written",
            WriteBack::Gone => "gone",
            WriteBack::Failed => "failed",
        };
        self.write_backs.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn event(&self, recorded: bool) {
        self.events.get_or_create(&ResultLabel { result: if recorded { "recorded" } else { "failed" } }).inc();
    }

    /// Counts a long poll held while the guard lives.
    pub fn long_poll(&self) -> LongPoll<'_> {
        self.long_polls.inc();
        LongPoll(&self.long_polls)
    }

    /// Counts an answer to `GET /v1/table`: the table itself, or `304 Not Modified`.
    pub fn table_served(&self, table: bool) {
        self.tables_served.get_or_create(&ResultLabel { result: if table { "table" } else { "not_modified" } }).inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A long poll in progress; dropping it (answered, or the client went away) ends it.
pub struct LongPoll<'a>(&'a Gauge);

impl Drop for LongPoll<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn cluster_label(cluster: &str) -> String {
    if cluster == LOCAL_CLUSTER { "local".to_string() } else { cluster.to_string() }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics, which every part of the controller records into.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// `GET /metrics`, served alongside the API.
pub fn router(snapshots: watch::Receiver<Publication>) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(snapshots)
}

async fn scrape(State(snapshots): State<watch::Receiver<Publication>>) -> impl IntoResponse {
    let snapshot = snapshots.borrow().clone();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], global().encode(&snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Diagnostic;
    use crate::compiler::Compiled;
    use crate::publish::Publisher;

    /// The value of the sample `name` (with its labels, as written) in `text`.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn reads_routes_errors_and_the_table_from_the_snapshot() {
        let metrics = Metrics::new();
        let mut publisher = Publisher::new(7);
        let compiled = Compiled {
            diagnostics: vec![
                Diagnostic::new("bad").object("VirtualService ns/a"),
                Diagnostic::new("bad too").object("VirtualService ns/b"),
                Diagnostic::new("odd").object("Ingress ns/c").warning(),
                Diagnostic::new("unreadable"),
            ],
            ..crate::publish::tests::compiled(&["a", "b"], &[])
        };
        publisher.publish(compiled, vec![]);
        let text = metrics.encode(&publisher.subscribe().borrow());
        assert_eq!(sample(&text, "berth_routes{protocol=\"http\"}"), Some(2.0), "{text}");
        assert_eq!(sample(&text, "berth_routes{protocol=\"tcp\"}"), Some(0.0));
        assert_eq!(sample(&text, "berth_table_version"), Some(7.0));
        assert_eq!(sample(&text, "berth_errors{kind=\"VirtualService\"}"), Some(2.0));
        assert_eq!(sample(&text, "berth_errors{kind=\"none\"}"), Some(1.0));
        assert_eq!(sample(&text, "berth_warnings{kind=\"Ingress\"}"), Some(1.0));
        assert!(sample(&text, "berth_table_bytes").is_some_and(|b| b > 0.0));

        // Errors that went away leave no sample behind.
        publisher.publish(crate::publish::tests::compiled(&["a"], &[]), vec![]);
        let text = metrics.encode(&publisher.subscribe().borrow());
        assert_eq!(sample(&text, "berth_errors{kind=\"VirtualService\"}"), None, "{text}");
        assert_eq!(sample(&text, "berth_routes{protocol=\"http\"}"), Some(1.0));
        assert_eq!(sample(&text, "berth_table_version"), Some(8.0));
    }

    #[test]
    fn a_propagation_is_counted_once_per_table_that_changed() {
        let metrics = Metrics::new();
        let mut publisher = Publisher::new(1);
        let count = |metrics: &Metrics| {
            let text = metrics.encode(&Publication::default());
            sample(&text, "berth_propagation_seconds_count{trigger=\"objects\"}")
        };
        // Two changes seen before one publication: one propagation.
        metrics.change_seen(Instant::now(), Trigger::Objects);
        metrics.change_seen(Instant::now(), Trigger::Health);
        metrics.published(&publisher.publish(crate::publish::tests::compiled(&["a"], &[]), vec![]));
        assert_eq!(count(&metrics), Some(1.0));
        // A change that leaves the table as it was is not a propagation, and is not carried over to the next.
        metrics.change_seen(Instant::now(), Trigger::Objects);
        metrics.published(&publisher.publish(crate::publish::tests::compiled(&["a"], &[]), vec![]));
        metrics.published(&publisher.publish(crate::publish::tests::compiled(&["b"], &[]), vec![]));
        assert_eq!(count(&metrics), Some(1.0));
        metrics.change_seen(Instant::now(), Trigger::Objects);
        metrics.published(&publisher.publish(crate::publish::tests::compiled(&["c"], &[]), vec![]));
        assert_eq!(count(&metrics), Some(2.0));
    }

    #[test]
    fn counts_long_polls_while_held_and_events_as_they_happen() {
        let metrics = Metrics::new();
        let held = metrics.long_poll();
        let also = metrics.long_poll();
        drop(held);
        metrics.table_served(true);
        metrics.wrote_back(WriteBack::Failed);
        metrics.event(true);
        metrics.health_check(false);
        metrics.watch_restarted("", Kind::Service);
        let text = metrics.encode(&Publication::default());
        assert_eq!(sample(&text, "berth_long_polls"), Some(1.0), "{text}");
        assert_eq!(sample(&text, "berth_tables_served_total{result=\"table\"}"), Some(1.0));
        assert_eq!(sample(&text, "berth_write_backs_total{result=\"failed\"}"), Some(1.0));
        assert_eq!(sample(&text, "berth_events_total{result=\"recorded\"}"), Some(1.0));
        assert_eq!(sample(&text, "berth_health_checks_total{result=\"failed\"}"), Some(1.0));
        assert_eq!(sample(&text, "berth_watch_restarts_total{cluster=\"local\",kind=\"Service\"}"), Some(1.0));
        drop(also);
        assert_eq!(sample(&metrics.encode(&Publication::default()), "berth_long_polls"), Some(0.0));
    }

    /// The Grafana dashboard shipped in deploy/monitoring queries only metrics that exist.
    #[test]
    fn the_dashboard_names_only_metrics_served() {
        let dashboard = include_str!("../deploy/monitoring/grafana-dashboard.json");
        // Families without samples are not served: give each one.
        let metrics = Metrics::new();
        let mut publisher = Publisher::new(1);
        let compiled = Compiled {
            diagnostics: vec![Diagnostic::new("e").object("Ingress a/b"), Diagnostic::new("w").warning()],
            ..crate::publish::tests::compiled(&["a"], &[])
        };
        metrics.change_seen(Instant::now(), Trigger::Objects);
        metrics.published(&publisher.publish(compiled, vec![]));
        publisher.set_sources(vec![crate::api::SourceStatus {
            name: "kube".into(),
            stale: false,
            since: None,
            error: None,
        }]);
        let range = crate::port_ranges::PortRangeView {
            allocation: "tcp".into(),
            host: "h".into(),
            start: 1,
            end: 2,
            allocated: 1,
            free: 1,
        };
        publisher.set_port_ranges(vec![range]);
        let mut index = Index::new();
        let node = crate::objects::parse_value(
            &serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}),
        );
        index.apply("dir:x", node.unwrap(), None).unwrap();
        metrics.compiled(Duration::from_millis(1), &index, true);
        metrics.health_check(true);
        metrics.watch_restarted("", Kind::Node);
        metrics.wrote_back(WriteBack::Written);
        metrics.event(true);
        metrics.table_served(true);
        let text = metrics.encode(&publisher.subscribe().borrow());
        let served: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
        let mut named = 0;
        for (at, _) in dashboard.match_indices("berth_") {
            let name: String = dashboard[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let base =
                ["_bucket", "_total"].iter().fold(name.as_str(), |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
            assert!(served.contains(&base), "the dashboard queries {name}, which /metrics does not serve: {served:?}");
            named += 1;
        }
        assert!(named > 10);
    }
}
