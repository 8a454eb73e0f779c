//! Traffic policy through real Envoy with the built filter: weighted splits and live weight changes, session
//! persistence by cookie (HTTP) and by client address (TCP).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use berth_tests::backend::pods;
use berth_tests::client::get_with_cookie;
use berth_tests::manifests::{self, sticky_virtual_service};
use berth_tests::{Backend, Stack, TcpBackend, client, tcp_client, wait};

/// A VirtualService for `host` splitting `/` between `(service, weight)` destinations.
fn weighted_virtual_service(name: &str, host: &str, split: &[(&str, u32)]) -> String {
    let destinations: String = split
        .iter()
        .map(|(service, weight)| {
            format!("    - destination: {{host: {service}, port: {{number: 80}}}}\n      weight: {weight}\n")
        })
        .collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n  namespace: default\n  \
         annotations:\n    berth.dev/expose: \"true\"\nspec:\n  hosts: [{host}]\n  http:\n  - route:\n{destinations}"
    )
}

/// Sends `count` requests for `host``/` over `threads` parallel clients (each request on a fresh connection, so
/// they spread over Envoy's workers) and counts them by the backend that answered. Every one must succeed.
fn tally(envoy: SocketAddr, host: &str, count: usize, threads: usize) -> HashMap<String, usize> {
    let per_thread = count / threads;
    let counts: Vec<HashMap<String, usize>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut seen = HashMap::new();
                    for _ in 0..per_thread {
                        let response = client::get(envoy, host, "/").unwrap_or_else(|e| panic!("GET {host}: {e}"));
                        assert_eq!(response.status, 200, "{response:?}");
                        let backend = response.header("x-backend").unwrap_or_default().to_string();
                        *seen.entry(backend).or_default() += 1;
                    }
                    seen
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("client thread")).collect()
    });
    let mut total = HashMap::new();
    for seen in counts {
        for (backend, n) in seen {
            *total.entry(backend).or_default() += n;
        }
    }
    total
}

/// The share of `backend` in `seen`, in percentage points.
fn share(seen: &HashMap<String, usize>, backend: &str) -> f64 {
    let total: usize = seen.values().sum();
    100.0 * *seen.get(backend).unwrap_or(&0) as f64 / total as f64
}

#[test]
fn weights_split_traffic_within_two_points_and_a_weight_change_shifts_it_live() {
    let (blue, green) = (Backend::start("blue"), Backend::start("green"));
    let files = [
        manifests::cluster(),
        manifests::services(&[&blue, &green]),
        ("canary.yaml", weighted_virtual_service("canary", "canary.example", &[("blue", 90), ("green", 10)])),
    ];
    let mut stack = Stack::start(&files);
    stack.envoy.wait_for_backend("canary.example", "/", "blue");

    // Envoy runs two workers, each with its own VM and counter: the aggregate is what clients see.
    let seen = tally(stack.envoy.http, "canary.example", 10_000, 4);
    assert_eq!(seen.values().sum::<usize>(), 10_000);
    let green_share = share(&seen, "green");
    assert!((8.0..=12.0).contains(&green_share), "90/10 split observed as {seen:?}");
    assert_eq!(seen.len(), 2, "only blue and green answer: {seen:?}");

    // Turn the canary around in the manifest: Envoy follows without a restart.
    let flipped = weighted_virtual_service("canary", "canary.example", &[("blue", 10), ("green", 90)]);
    stack.manifests.write("canary.yaml", &flipped);
    wait::until("the new weights to reach Envoy", Duration::from_secs(10), || {
        // Under 90/10, 50 green answers in a row of 60 cannot happen (each round of 100 gives green exactly 10).
        let seen = tally(stack.envoy.http, "canary.example", 60, 1);
        (seen.get("green").copied().unwrap_or(0) >= 50).then_some(())
    });
    let seen = tally(stack.envoy.http, "canary.example", 4_000, 4);
    let green_share = share(&seen, "green");
    assert!((88.0..=92.0).contains(&green_share), "10/90 split observed as {seen:?}");
    assert!(stack.envoy.is_running(), "the same Envoy process served both splits");
}

fn ips(pods: &[Backend]) -> Vec<String> {
    pods.iter().map(|pod| pod.addr.ip().to_string()).collect()
}

/// A pods-mode Service and its EndpointSlice listing `ips` (as strings) on `port`.
fn pod_service_with(name: &str, port: u16, ips: &[String]) -> String {
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    format!("{}---\n{}", manifests::pod_service(name, port), manifests::endpoint_slice(name, name, port, &ips))
}

#[test]
fn a_session_cookie_keeps_its_endpoint_moves_when_it_leaves_and_cannot_escape_its_route() {
    let shop = pods(&["shop-a", "shop-b", "shop-c"], 2);
    let other = pods(&["other-a", "other-b"], 5);
    let (shop_port, other_port) = (shop[0].addr.port(), other[0].addr.port());
    let files = [
        ("shop-service.yaml", pod_service_with("shop", shop_port, &ips(&shop))),
        ("other-service.yaml", pod_service_with("other", other_port, &ips(&other))),
        ("shop.yaml", sticky_virtual_service("shop", "shop.example", "shop", shop_port, "berth-session")),
        ("other.yaml", sticky_virtual_service("other", "other.example", "other", other_port, "berth-session")),
    ];
    let stack = Stack::start(&files);
    let envoy = stack.envoy.http;
    stack.envoy.wait_for_backend("shop.example", "/", "shop-a");

    // The first response sets the cookie; its value does not show the endpoint.
    let (first, issued) = get_with_cookie(envoy, "shop.example", None);
    let cookie = issued.expect("the first response sets the session cookie");
    let value = cookie.strip_prefix("berth-session=").expect("named berth-session");
    let pod = shop.iter().find(|pod| pod.name == first).expect("a shop pod answered");
    let hex_ip: String = [127u8, 0, 0, pod.addr.ip().to_string().rsplit('.').next().unwrap().parse().unwrap()]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for revealing in [pod.addr.to_string(), pod.addr.ip().to_string(), shop_port.to_string(), hex_ip] {
        assert!(!value.contains(&revealing), "{cookie} reveals {revealing}");
    }

    // 100 requests with it reach the same pod and are not given another cookie.
    for _ in 0..100 {
        assert_eq!(get_with_cookie(envoy, "shop.example", Some(&cookie)), (first.clone(), None));
    }

    // A cookie another route issued, and made-up values, land on this route's pods and are replaced.
    let (_, foreign) = get_with_cookie(envoy, "other.example", None);
    let foreign = foreign.expect("other.example issues its own cookie");
    for forged in [foreign, "berth-session=0000000000000000".to_string(), format!("berth-session={}", other[0].addr)] {
        let (landed, reissued) = get_with_cookie(envoy, "shop.example", Some(&forged));
        assert!(landed.starts_with("shop-"), "{forged} reached {landed}");
        let reissued = reissued.unwrap_or_else(|| panic!("{forged} is replaced"));
        assert_eq!(get_with_cookie(envoy, "shop.example", Some(&reissued)), (landed, None));
    }
    assert_eq!(other.iter().map(Backend::hits).sum::<u64>(), 1, "only other.example's own request reached its pods");

    // Its pod leaves the Service: the session moves to another pod, which re-issues the cookie, and stays there.
    let remaining: Vec<String> = shop.iter().filter(|p| p.name != first).map(|p| p.addr.ip().to_string()).collect();
    stack.manifests.write("shop-service.yaml", &pod_service_with("shop", shop_port, &remaining));
    let (moved, reissued) = wait::until("the session to move off the removed pod", Duration::from_secs(10), || {
        let (landed, reissued) = get_with_cookie(envoy, "shop.example", Some(&cookie));
        (landed != first).then_some((landed, reissued))
    });
    let reissued = reissued.expect("the moved session gets a new cookie");
    assert_ne!(reissued, cookie);
    for _ in 0..20 {
        assert_eq!(get_with_cookie(envoy, "shop.example", Some(&reissued)), (moved.clone(), None));
    }
}

/// Connects to `port` from the loopback address `source` and reads the backend's greeting (its name and `\n`).
fn greeting_from(source: [u8; 4], port: u16) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        use tokio::io::AsyncBufReadExt;
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::from((source, 0))).expect("bind the client address");
        let stream = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.expect("connect");
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(stream);
        let read = reader.read_line(&mut line);
        tokio::time::timeout(Duration::from_secs(10), read).await.expect("greeting in time").expect("read");
        line.trim_end().to_string()
    })
}

/// One TCP backend per name, greeting with it, on `127.0.0.<2..>` and one shared port.
fn tcp_pods(names: &[&str]) -> Vec<TcpBackend> {
    let mut backends: Vec<TcpBackend> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let port = backends.first().map_or(0, |b| b.addr.port());
        let addr = SocketAddr::from(([127, 0, 0, 2 + i as u8], port));
        backends.push(TcpBackend::start_on(addr, Some(format!("{name}\n"))));
    }
    backends
}

/// A stack exposing the pods-mode Service `db` (over `backends`) on a TCP port: the stack and the port.
fn tcp_stack(backends: &[TcpBackend], annotations: &str) -> (Stack, u16) {
    let port = backends[0].addr.port();
    let ips: Vec<String> = backends.iter().map(|b| b.addr.ip().to_string()).collect();
    let range = wait::free_port_range(3);
    let vs = manifests::tcp_virtual_service("db", &[("db", port)])
        .replace("berth.dev/expose: \"true\"\n", &format!("berth.dev/expose: \"true\"\n{annotations}"));
    let files = [
        ("alloc.yaml", manifests::port_allocation("tcp", "tcp.example.com", range.0, range.1)),
        ("db-service.yaml", pod_service_with("db", port, &ips)),
        ("db.yaml", vs),
    ];
    let stack = Stack::start_with(&files, |_| Vec::new(), &[format!("--tcp-ports={}-{}", range.0, range.1)]);
    let listener = wait::until("a port for the db", Duration::from_secs(10), || {
        stack.controller.port_of("VirtualService default/db")
    });
    wait::until("the db port to route", Duration::from_secs(10), || {
        tcp_client::read_exact(&mut tcp_client::connect(listener), 5).ok().filter(|g| g.starts_with("db-"))
    });
    (stack, listener)
}

#[test]
fn source_ip_affinity_keeps_each_client_address_on_one_endpoint() {
    let backends = tcp_pods(&["db-a", "db-b", "db-c"]);
    let (_stack, listener) = tcp_stack(&backends, "    berth.dev/session-affinity: source-ip\n");

    // Every client address keeps its endpoint, connection after connection; together they reach them all.
    let mut reached = std::collections::HashSet::new();
    for client in 10..40u8 {
        let first = greeting_from([127, 0, 1, client], listener);
        for _ in 0..5 {
            assert_eq!(greeting_from([127, 0, 1, client], listener), first, "client 127.0.1.{client}");
        }
        reached.insert(first);
    }
    assert_eq!(reached.len(), 3, "30 client addresses spread over the three endpoints: {reached:?}");
}

/// An Ingress routing `host` to `service`.
fn ingress_for(name: &str, host: &str, service: &str, port: u16) -> String {
    manifests::ingress(name, &[manifests::Rule(host, "/", "Prefix", service, port)])
}

/// `GET /` for `host`: the backend that answered, or `Err(status and x-berth)` for anything but a 200.
fn try_get(envoy: SocketAddr, host: &str) -> Result<String, String> {
    let response = client::get(envoy, host, "/").map_err(|e| format!("no answer: {e}"))?;
    match (response.status, response.header("x-backend")) {
        (200, Some(backend)) => Ok(backend.to_string()),
        (status, _) => Err(format!("{status} x-berth={:?}", response.header("x-berth"))),
    }
}

#[test]
fn a_dead_endpoint_is_ejected_after_a_few_failures_and_taken_back_after_its_backoff() {
    let mut web = pods(&["web-a", "web-b", "web-c"], 2);
    let port = web[0].addr.port();
    let files = [
        manifests::cluster(),
        ("web-service.yaml", pod_service_with("web", port, &ips(&web))),
        ("web.yaml", ingress_for("web", "web.example", "web", port)),
    ];
    let stack = Stack::start(&files);
    let envoy = stack.envoy.http;
    for pod in ["web-a", "web-b", "web-c"] {
        stack.envoy.wait_for_backend("web.example", "/", pod);
    }

    // web-b dies. Its failures are seen by the filter, which takes it out of rotation for every worker.
    let dead = web[1].addr;
    web[1].stop();
    let mut failures = Vec::new();
    let mut run = 0;
    while run < 30 {
        match try_get(envoy, "web.example") {
            Ok(_) => run += 1,
            Err(failure) => {
                failures.push(failure);
                run = 0;
            }
        }
        assert!(failures.len() <= 4, "detection took more than 4 failed requests: {failures:?}");
    }
    assert!(!failures.is_empty(), "the dead endpoint was tried at least once");
    let mut served: HashMap<String, usize> = HashMap::new();
    for i in 0..300 {
        let backend = try_get(envoy, "web.example").unwrap_or_else(|e| panic!("request {i} after detection: {e}"));
        *served.entry(backend).or_default() += 1;
    }
    assert!(served["web-a"] >= 100 && served["web-c"] >= 100, "the two others share the load: {served:?}");
    assert!(stack.envoy.log().contains(&format!("{dead} failed")), "the ejection is logged");

    // web-b comes back: once its back-off has passed it serves again, and nothing fails meanwhile.
    web[1] = Backend::start_on(dead, "web-b", 200);
    wait::until("web-b to be back in rotation", Duration::from_secs(60), || {
        let backend = try_get(envoy, "web.example").unwrap_or_else(|e| panic!("while web-b recovers: {e}"));
        (backend == "web-b").then_some(())
    });
    assert!(stack.envoy.log().contains(&format!("{dead} answers again")), "the return is logged");
}

/// The greeting of a connection to `port` (the backend's name), or `None` when it is closed without one.
fn try_greeting(port: u16) -> Option<String> {
    let mut stream = tcp_client::connect(port);
    tcp_client::read_exact(&mut stream, 5).ok().map(|greeting| greeting.trim_end().to_string())
}

#[test]
fn a_dead_tcp_endpoint_is_ejected_and_taken_back_after_its_backoff() {
    let mut db = tcp_pods(&["db-a", "db-b", "db-c"]);
    let (stack, listener) = tcp_stack(&db, "");
    let dead = db[1].addr;
    drop(db.remove(1));
    let mut failures = 0;
    let mut run = 0;
    while run < 30 {
        match try_greeting(listener) {
            Some(_) => run += 1,
            None => {
                failures += 1;
                run = 0;
            }
        }
        assert!(failures <= 4, "detection took more than 4 failed connections");
    }
    assert!(failures >= 1, "the dead endpoint was tried at least once");
    let mut served: HashMap<String, usize> = HashMap::new();
    for i in 0..200 {
        let greeting = try_greeting(listener).unwrap_or_else(|| panic!("connection {i} after detection closed"));
        *served.entry(greeting).or_default() += 1;
    }
    assert!(served["db-a"] >= 50 && served["db-c"] >= 50, "the two others share the load: {served:?}");

    db.push(TcpBackend::start_on(dead, Some("db-b\n".into())));
    wait::until("db-b to be back in rotation", Duration::from_secs(60), || {
        let greeting = try_greeting(listener).expect("no connection fails while db-b recovers");
        (greeting == "db-b").then_some(())
    });
    // The filter hears how a connection went when it closes, just after the client has its greeting.
    wait::until("the return to be logged", Duration::from_secs(10), || {
        stack.envoy.log().contains(&format!("{dead} answers again")).then_some(())
    });
}

#[test]
fn every_http_endpoint_down_is_a_prompt_503_from_berth() {
    let mut web = pods(&["web-a", "web-b"], 2);
    let port = web[0].addr.port();
    let files = [
        manifests::cluster(),
        ("web-service.yaml", pod_service_with("web", port, &ips(&web))),
        ("empty-service.yaml", pod_service_with("empty", port, &[])),
        ("web.yaml", ingress_for("web", "web.example", "web", port)),
        ("empty.yaml", ingress_for("empty", "empty.example", "empty", port)),
    ];
    let stack = Stack::start(&files);
    let envoy = stack.envoy.http;
    stack.envoy.wait_for_backend("web.example", "/", "web-a");

    // A route whose Service has no endpoint.
    let empty = client::get(envoy, "empty.example", "/").expect("an answer");
    assert_eq!((empty.status, empty.header("x-berth")), (503, Some("no-endpoint")), "{empty:?}");

    // Every endpoint dies: each request is answered (the client gives up after 10 s without one), first by Envoy
    // for the endpoint it tried, then by Berth without trying.
    for pod in &mut web {
        pod.stop();
    }
    let mut tried = 0;
    wait::until("Berth to answer for the dead route", Duration::from_secs(10), || {
        let response = client::get(envoy, "web.example", "/").expect("an answer, not a hang");
        assert_eq!(response.status, 503, "{response:?}");
        tried += 1;
        (response.header("x-berth") == Some("no-endpoint")).then_some(())
    });
    assert!(tried <= 5, "{tried} requests before both endpoints were out of rotation");
    for _ in 0..20 {
        let response = client::get(envoy, "web.example", "/").expect("an answer, not a hang");
        assert_eq!((response.status, response.header("x-berth")), (503, Some("no-endpoint")), "{response:?}");
    }
}

#[test]
fn every_tcp_endpoint_down_closes_connections_promptly() {
    let mut db = tcp_pods(&["db-a", "db-b"]);
    let (stack, listener) = tcp_stack(&db, "");
    db.clear();
    let unrouted = || berth_tests::admin::stat(stack.envoy.admin, "wasmcustom.berth_tcp_unrouted");
    // Each connection is closed without a byte (a hang would be a read timeout, which is not a close): first by
    // tcp_proxy after a refused connect, then by the filter before any connect is tried.
    let mut tried = 0;
    wait::until("the filter to close connections itself", Duration::from_secs(10), || {
        let before = unrouted();
        assert!(tcp_client::is_closed_on_connect(listener), "the connection is closed, not left hanging");
        tried += 1;
        (unrouted() > before).then_some(())
    });
    assert!(tried <= 5, "{tried} connections before both endpoints were out of rotation");
    let before = unrouted();
    for _ in 0..10 {
        assert!(tcp_client::is_closed_on_connect(listener));
    }
    wait::until("ten more unrouted connections counted", Duration::from_secs(5), || {
        (unrouted() >= before + 10).then_some(())
    });
}
