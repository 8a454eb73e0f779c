//! The filter's per-request path under callgrind: the filter crate's own `on_request_headers`, built natively and
//! driven by a host that answers what Envoy would (`:authority`, `:path`; the shared keys for the first request).
//! Instruction counts are exact and repeatable, unlike timings on a shared machine; V8's compiled wasm runs
//! different instructions, but the same code and so the same hot spots. Host calls, which cost far more in Envoy
//! than in this harness (each crosses the wasm boundary, and a read allocates in the VM), are counted too.

use std::cell::Cell;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_filter::cache::{TABLE_KEY, VERSION_KEY};
use berth_filter::host::{CasError, Edit, Host, Side};
use berth_filter::http::{HttpRouting, Verdict, on_request_headers};
use berth_table::{Backend, Endpoint, HttpRoute, PathMatch, Source, Table};

use super::callgrind;
use super::routes::host;

#[derive(Debug, Clone)]
pub struct ProfileResult {
    pub routes: usize,
    pub requests: usize,
    pub instructions_per_request: f64,
    /// Calls into the host per request (each crosses the wasm boundary in Envoy).
    pub host_calls_per_request: f64,
    /// `callgrind_annotate`'s functions by their own cost, the heaviest first.
    pub top_functions: Vec<String>,
}

/// A table like the benchmarks': one host per route, every path, two Services.
pub fn table(routes: usize) -> Table {
    let mut table = Table::new(1);
    for i in 0..routes {
        table.http.push(HttpRoute {
            host: host("h", i),
            path: PathMatch::Segments("/".into()),
            backends: vec![Backend {
                service: format!("default/svc-{}:80", i % 2),
                weight: 100,
                endpoints: vec![Endpoint { address: ([127, 0, 0, 1], 30_080 + (i % 2) as u16).into() }],
            }],
            source: Source { kind: "Ingress".into(), namespace: "default".into(), name: format!("h-{i}") },
            session_cookie: None,
            policy: None,
        });
    }
    table
}

/// What Envoy hands the filter, with the copies Envoy's ABI makes (every read returns a fresh `Vec`).
struct BenchHost {
    /// The encoded table and its version; a `match` on the key, so no hashing of the harness's own counts.
    table: Vec<u8>,
    version: Vec<u8>,
    authorities: Vec<Vec<u8>>,
    current: Cell<usize>,
    /// Every call the filter made, whatever it was.
    calls: Cell<usize>,
}

impl BenchHost {
    fn call(&self) {
        self.calls.set(self.calls.get() + 1);
    }
}

impl Host for BenchHost {
    fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        self.call();
        match key {
            TABLE_KEY => Some(self.table.clone()),
            VERSION_KEY => Some(self.version.clone()),
            _ => None,
        }
    }
    fn set_shared_data(&self, _: &str, _: &[u8]) -> Result<(), String> {
        self.call();
        Ok(())
    }
    fn shared_data_cas(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        (self.shared_data(key), None)
    }
    fn set_shared_data_cas(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), CasError> {
        self.call();
        Ok(())
    }
    fn now_ms(&self) -> u64 {
        self.call();
        0
    }
    fn dispatch_get(&self, _: &str, _: &str, _: &str, _: Duration) -> Result<u32, String> {
        Err("not in a benchmark".into())
    }
    fn call_response_header(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
    fn call_response_body(&self, _: usize) -> Option<Vec<u8>> {
        None
    }
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.call();
        match name {
            ":authority" => self.authorities.get(self.current.get()).cloned(),
            ":path" => Some(b"/index.html".to_vec()),
            _ => None,
        }
    }
    fn set_filter_state(&self, _: &[u8]) -> Result<(), String> {
        self.call();
        Ok(())
    }
    fn send_reply(&self, _: u32, _: &[(&str, &str)], _: &str) -> Result<(), String> {
        self.call();
        Ok(())
    }
    fn add_response_header(&self, _: &str, _: &str) -> Result<(), String> {
        self.call();
        Ok(())
    }
    fn edit_header(&self, _: Side, _: Edit, _: &str, _: &str) -> Result<(), String> {
        self.call();
        Ok(())
    }
    fn property(&self, _: &[&str]) -> Option<Vec<u8>> {
        self.call();
        None
    }
    fn close_downstream(&self) -> Result<(), String> {
        self.call();
        Ok(())
    }
    fn define_counter(&self, _: &str) -> Result<u32, String> {
        Ok(0)
    }
    fn increment_counter(&self, _: u32) -> Result<(), String> {
        self.call();
        Ok(())
    }
}

/// `berth-bench profile-filter ROUTES REQUESTS`: routes `REQUESTS` requests over every host of a `ROUTES`-route
/// table. Only [`request_loop`] is measured (callgrind `--toggle-collect`). Prints the host calls per request.
pub fn profile_filter(routes: usize, requests: usize) -> anyhow::Result<()> {
    let table = table(routes);
    let authorities = (0..routes).map(|i| format!("{}:8080", host("h", i)).into_bytes()).collect();
    let envoy = BenchHost {
        table: berth_table::encode(&table),
        version: b"1".to_vec(),
        authorities,
        current: Cell::new(0),
        calls: Cell::new(0),
    };
    let mut routing = HttpRouting::default();
    // The first request loads the table; that is not the per-request cost.
    let first = on_request_headers(&envoy, &mut routing);
    anyhow::ensure!(matches!(first, Verdict::Forwarded(_)), "the table did not load: {first:?}");
    envoy.calls.set(0);
    let forwarded = request_loop(&envoy, &mut routing, routes, requests);
    anyhow::ensure!(forwarded == requests, "only {forwarded} of {requests} requests were forwarded");
    println!("{HOST_CALLS} {}", envoy.calls.get() as f64 / requests as f64);
    Ok(())
}

#[inline(never)]
fn request_loop(envoy: &BenchHost, routing: &mut HttpRouting, routes: usize, requests: usize) -> usize {
    let mut forwarded = 0;
    for i in 0..requests {
        envoy.current.set(i % routes);
        forwarded += usize::from(matches!(on_request_headers(envoy, routing), Verdict::Forwarded(_)));
    }
    std::hint::black_box(forwarded)
}

/// How `profile-filter` reports the host calls per request on stdout.
const HOST_CALLS: &str = "host-calls-per-request";

/// Runs this binary's `profile-filter` under callgrind for each table size and reads the counts.
pub fn run(sizes: &[usize], requests: usize, work: &Path) -> anyhow::Result<Vec<ProfileResult>> {
    let me = std::env::current_exe()?;
    let mut results = Vec::new();
    for &routes in sizes {
        let out = work.join(format!("callgrind.{routes}.out"));
        let run = callgrind::command(&out, &["--toggle-collect=*request_loop*"])
            .arg(&me)
            .args(["profile-filter", &routes.to_string(), &requests.to_string()])
            .stderr(std::process::Stdio::null())
            .output()?;
        anyhow::ensure!(run.status.success(), "callgrind run failed: {}", run.status);
        let host_calls_per_request = String::from_utf8_lossy(&run.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(HOST_CALLS)?.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("profile-filter did not report its host calls"))?;
        let total = callgrind::total_instructions(&out)?;
        let annotated = Command::new("callgrind_annotate").arg("--inclusive=no").arg(&out).output()?;
        let top_functions = String::from_utf8_lossy(&annotated.stdout)
            .lines()
            .skip_while(|l| !l.contains("file:function"))
            .skip(2)
            .filter(|l| !l.trim().is_empty())
            .take(12)
            .map(|l| l.trim().to_string())
            .collect();
        let result = ProfileResult {
            routes,
            requests,
            instructions_per_request: total / requests as f64,
            host_calls_per_request,
            top_functions,
        };
        eprintln!(
            "profile: {routes} routes, {:.0} instructions and {} host calls per request",
            result.instructions_per_request, result.host_calls_per_request
        );
        results.push(result);
    }
    Ok(results)
}
