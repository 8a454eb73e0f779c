//! The table decoder and matchers against generated input, with a fixed seed so a failure reproduces: random
//! tables and requests (the router must agree with the naive reference in `berth_tests::table_check`), mutated and
//! random wire bytes (decoding never panics; whatever decodes routes only to its own endpoints), and a corpus of
//! hostile JSON. Bounded to a few seconds; `table/fuzz` runs the same checks open-ended under cargo-fuzz.

use berth_table::{
    AffinityKey, Backend, Endpoint, HttpRoute, HttpRouter, PathMatch, Source, Table, TcpRoute, TcpRouter,
};
use berth_tests::table_check::{check_client_affinity, check_http, check_sticky, check_tcp};

/// splitmix64: tiny, fast, and good enough to spread test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Few names, so that random tables collide on hosts and paths the way precedence rules care about.
const HOSTS: [&str; 10] =
    ["a.com", "b.com", "x.a.com", "y.x.a.com", "*.a.com", "*.x.a.com", "*.com", "*", "[::1]", "xn--bcher-kva.example"];
const PATHS: [&str; 11] = ["/", "/a", "/a/", "/a/b", "/ab", "/a/b/c", "/b", "", "/a%2Fb", "/A", "//a"];

fn random_backends(rng: &mut Rng) -> Vec<Backend> {
    (0..rng.below(4))
        .map(|b| Backend {
            service: format!("ns/svc{b}:80"),
            weight: match rng.below(4) {
                0 => 0,
                1 => u32::MAX,
                _ => rng.below(100) as u32,
            },
            endpoints: (0..rng.below(4))
                .map(|e| Endpoint { address: ([127, 0, 0, 1 + b as u8], 30_000 + e as u16).into() })
                .collect(),
        })
        .collect()
}

fn source(i: usize) -> Source {
    Source { kind: "Ingress".into(), namespace: "default".into(), name: format!("r{i}") }
}

fn random_table(rng: &mut Rng) -> Table {
    let mut table = Table::new(rng.next());
    for i in 0..rng.below(12) {
        let path = rng.pick(&PATHS).to_string();
        let path = match rng.below(3) {
            0 => PathMatch::Exact(path),
            1 => PathMatch::Prefix(path),
            _ => PathMatch::Segments(path),
        };
        let host = rng.pick(&HOSTS).to_string();
        let session_cookie = rng.chance(20).then(|| "berth-session".to_string());
        table.http.push(HttpRoute { host, path, backends: random_backends(rng), source: source(i), session_cookie });
    }
    for i in 0..rng.below(5) {
        let port = 31_000 + rng.below(4) as u16;
        let source_ip_affinity = rng.chance(20);
        table.tcp.push(TcpRoute { port, backends: random_backends(rng), source: source(i), source_ip_affinity });
    }
    table
}

/// A request host: one of the table's names as a client might spell it, or something else entirely.
fn random_request_host(rng: &mut Rng) -> String {
    let base = rng.pick(&HOSTS).trim_start_matches("*.").trim_start_matches('*').to_string();
    let base = if rng.chance(20) { format!("deep.{base}") } else { base };
    match rng.below(9) {
        0 => base.to_ascii_uppercase(),
        1 => format!("{base}:8080"),
        2 => format!("{base}."),
        3 => format!("{base}.:443"),
        4 => format!("{base}:notaport"),
        5 => format!("{base}.evil"),
        6 => rng.pick(&["", ":", ".", "[", "[::1", "ä.a.com", "A.COM.", "*", "*.a.com", "a.com:80:80"]).to_string(),
        _ => base,
    }
}

fn random_request_path(rng: &mut Rng) -> String {
    let path = rng.pick(&PATHS).to_string();
    match rng.below(6) {
        0 => format!("{path}?x=/a/b"),
        1 => format!("{path}#frag"),
        2 => format!("{path}/"),
        3 => format!("{path}x"),
        _ => path,
    }
}

fn check_requests(rng: &mut Rng, table: &Table, requests: usize) {
    let (http, tcp) = (HttpRouter::new(table), TcpRouter::new(table));
    check_affinity(rng, table);
    for _ in 0..requests {
        let (host, path) = (random_request_host(rng), random_request_path(rng));
        let n = if rng.chance(10) { u64::MAX - rng.below(3) as u64 } else { rng.below(1000) as u64 };
        if let Err(problem) = check_http(table, &http, &host, &path, n) {
            panic!("{problem}\ntable: {}", String::from_utf8_lossy(&berth_table::encode(table)));
        }
        let port = 30_999 + rng.below(6) as u16;
        if let Err(problem) = check_tcp(table, &tcp, port, n) {
            panic!("{problem}\ntable: {}", String::from_utf8_lossy(&berth_table::encode(table)));
        }
    }
}

/// Session cookies and client-address affinity stay within each route, whatever the client sends: forged values,
/// values naming other routes' endpoints or an address the table never had, or garbage.
fn check_affinity(rng: &mut Rng, table: &Table) {
    let key = AffinityKey::from_bytes(rng.next().to_le_bytes().repeat(2).try_into().unwrap());
    let elsewhere = ["127.0.0.99:1".parse().unwrap(), "10.0.0.1:80".parse().unwrap()];
    let mut values: Vec<String> = table
        .http
        .iter()
        .flat_map(|r| &r.backends)
        .chain(table.tcp.iter().flat_map(|r| &r.backends))
        .flat_map(|b| &b.endpoints)
        .map(|e| e.address)
        .chain(elsewhere)
        .map(|address| key.cookie_value(address))
        .collect();
    values.extend([String::new(), "0".into(), "ffffffffffffffff".into(), "-1".into(), "127.0.0.99:1".into()]);
    values.push(format!("{:x}", rng.next()));
    for index in 0..table.http.len() {
        for value in &values {
            if let Err(problem) = check_sticky(table, &key, index, value) {
                panic!("{problem}\ntable: {}", String::from_utf8_lossy(&berth_table::encode(table)));
            }
        }
    }
    for route in &table.tcp {
        for client in [0, u64::MAX, rng.next()] {
            if let Err(problem) = check_client_affinity(&route.backends, &key, client) {
                panic!("{problem}");
            }
        }
    }
}

#[test]
fn the_router_agrees_with_the_reference_rules_on_random_tables() {
    let mut rng = Rng(0xBE27_0001);
    for _ in 0..3_000 {
        let table = random_table(&mut rng);
        check_requests(&mut rng, &table, 40);
    }
}

/// Tokens that make JSON interesting to a decoder: structure, extremes, escapes, other types.
const TOKENS: [&str; 16] = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\u0000",
    "null",
    "-1",
    "1e400",
    "18446744073709551616",
    "\"*\"",
    "\"[::1]:0\"",
    "\"999.1.1.1:80\"",
    "\u{feff}",
];

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            // Keeps the JSON valid most of the time: another digit, another letter, or `.` `*` `/` in a name.
            4 | 5 if at < bytes.len() && bytes[at].is_ascii_alphanumeric() => {
                let choices: &[u8] =
                    if bytes[at].is_ascii_digit() { b"0123456789" } else { b"abcxyzABC.*/:-0123456789" };
                bytes[at] = choices[rng.below(choices.len())];
            }
            0 if !bytes.is_empty() => {
                let at = at.min(bytes.len() - 1);
                bytes[at] = rng.next() as u8;
            }
            1 => bytes.truncate(at),
            2 => {
                let token = rng.pick(&TOKENS).as_bytes().to_vec();
                bytes.splice(at..at, token);
            }
            _ => {
                let end = (at + rng.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
        }
    }
}

/// Whatever `decode` makes of `bytes`: no panic, and a table that decodes routes only within itself.
fn decode_and_route(rng: &mut Rng, bytes: &[u8]) -> bool {
    match berth_table::decode(bytes) {
        Ok(table) => {
            check_requests(rng, &table, 10);
            true
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
            false
        }
    }
}

#[test]
fn mutated_and_random_wire_bytes_never_panic_and_never_route_outside_the_table() {
    let mut rng = Rng(0xBE27_0002);
    let mut decoded = 0;
    for round in 0..4_000 {
        let mut bytes = berth_table::encode(&random_table(&mut rng));
        if round % 10 == 0 {
            bytes = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
        } else {
            mutate(&mut rng, &mut bytes);
        }
        decoded += usize::from(decode_and_route(&mut rng, &bytes));
    }
    // Most mutations break the JSON; enough survive (a changed port digit, a dropped route) to check routing.
    assert!(decoded > 100, "only {decoded} mutated tables decoded: the mutations are too destructive to test much");
}

#[test]
fn hostile_json_is_an_error_or_a_table_that_routes_within_itself() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let long_host = format!(
        r#"{{"format":"berth.table/v1","version":1,"http":[{{"host":"{}","path":{{"prefix":"/"}},"backends":[],"source":{{"kind":"k","namespace":"n","name":"x"}}}}]}}"#,
        "a".repeat(1 << 20)
    );
    let route = |host: &str, path: &str, address: &str| {
        format!(
            r#"{{"format":"berth.table/v1","version":1,"http":[{{"host":{host},"path":{path},"backends":[{{"service":"s","weight":1,"endpoints":[{{"address":{address}}}]}}],"source":{{"kind":"k","namespace":"n","name":"x"}}}}]}}"#
        )
    };
    let corpus: Vec<String> = vec![
        String::new(),
        "null".into(),
        "{}".into(),
        "[]".into(),
        r#"{"format":"berth.table/v1"}"#.into(),
        r#"{"format":"berth.table/v1","version":-1}"#.into(),
        r#"{"format":"berth.table/v1","version":18446744073709551616}"#.into(),
        r#"{"format":"berth.table/v1","version":1.5}"#.into(),
        r#"{"format":"berth.table/v1","version":1,"http":null}"#.into(),
        r#"{"format":"berth.table/v1","version":1,"format":"berth.table/v1","unknown":{"x":[1,2]}}"#.into(),
        r#"{"format":"berth.table/v2","version":1}"#.into(),
        r#"{"format":"berth.table/v1\u0000","version":1}"#.into(),
        deep,
        long_host,
        route(r#""a.com""#, r#"{"prefix":"/"}"#, r#""127.0.0.1:80""#),
        route(r#""a.com""#, r#"{"regex":".*"}"#, r#""127.0.0.1:80""#),
        route(r#""a.com""#, r#"{"prefix":"/","exact":"/"}"#, r#""127.0.0.1:80""#),
        route(r#""a\u0000.com""#, r#"{"exact":"\ud800"}"#, r#""127.0.0.1:80""#),
        route(r#""A.COM""#, r#"{"segments":"////"}"#, r#""[::1]:65535""#),
        route(r#""*""#, r#"{"segments":""}"#, r#""127.0.0.1:65536""#),
        route(r#""*.""#, r#"{"prefix":""}"#, r#""localhost:80""#),
        route(r#""a.com""#, r#"{"prefix":"/"}"#, r#""127.0.0.1""#),
        route(r#""a.com""#, r#"{"prefix":"/"}"#, "17"),
        route("7", r#"{"prefix":"/"}"#, r#""127.0.0.1:80""#),
    ];
    let mut rng = Rng(0xBE27_0003);
    let decoded: usize = corpus.iter().map(|json| usize::from(decode_and_route(&mut rng, json.as_bytes()))).sum();
    // Exactly the well-formed ones: the megabyte host, the plain route and the odd-but-valid upper-case one.
    assert_eq!(decoded, 3, "entries that decoded");
}

#[test]
fn large_tables_route_like_the_reference() {
    // Many hosts and deep path lists: the precedence sort and the hash lookups at the sizes `make bench` uses.
    let mut rng = Rng(0xBE27_0004);
    let mut table = Table::new(1);
    for i in 0..2_000 {
        let host = if i % 50 == 0 { format!("*.h{}.example", i % 7) } else { format!("h{}.example", i % 700) };
        let path = format!("/{}", "p/".repeat(rng.below(5)));
        let path = if rng.chance(50) { PathMatch::Prefix(path) } else { PathMatch::Segments(path) };
        table.http.push(HttpRoute {
            host,
            path,
            backends: random_backends(&mut rng),
            source: source(i),
            session_cookie: None,
            policy: None,
        });
    }
    let router = HttpRouter::new(&table);
    for i in 0..5_000 {
        let host = format!("{}h{}.example", if i % 3 == 0 { "w." } else { "" }, rng.below(800));
        let path = format!("/{}{}", "p/".repeat(rng.below(7)), if rng.chance(30) { "q" } else { "" });
        if let Err(problem) = check_http(&table, &router, &host, &path, i) {
            panic!("{problem}");
        }
    }
}
