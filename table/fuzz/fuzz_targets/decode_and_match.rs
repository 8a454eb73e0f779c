//! Any bytes as a table, then requests: `decode` never panics, and a table that decodes routes every request the
//! way the reference rules say, to an endpoint of the matched route.
//!
//! Input: `TABLE \0 HOST \0 PATH`. Without separators the whole input is the table, and the requests are every
//! route's own host and path plus a few fixed ones.
#![no_main]

use berth_table::{HttpRouter, TcpRouter};
use libfuzzer_sys::fuzz_target;

// The checks `make test` runs on generated tables (tests/tests/table_properties.rs), shared by path because that
// crate's other dependencies have no business in a fuzz build.
#[path = "../../../tests/src/table_check.rs"]
mod table_check;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let Ok(table) = berth_table::decode(parts.next().unwrap_or_default()) else { return };
    let given = (parts.next(), parts.next());
    let (http, tcp) = (HttpRouter::new(&table), TcpRouter::new(&table));

    let mut requests: Vec<(String, String)> = table
        .http
        .iter()
        .map(|route| (route.host.trim_start_matches('*').to_string(), route.path.as_str().to_string()))
        .collect();
    requests.extend([("a.com".into(), "/".into()), ("A.COM.:80".into(), "/a/b?c#d".into())]);
    if let (Some(host), Some(path)) = given {
        requests.push((String::from_utf8_lossy(host).into_owned(), String::from_utf8_lossy(path).into_owned()));
    }
    for (host, path) in &requests {
        for n in [0, 1, 7, u64::MAX] {
            if let Err(problem) = table_check::check_http(&table, &http, host, path, n) {
                panic!("{problem}");
            }
        }
    }
    for port in table.tcp.iter().map(|route| route.port).chain([0, 1, u16::MAX]) {
        if let Err(problem) = table_check::check_tcp(&table, &tcp, port, 3) {
            panic!("{problem}");
        }
    }
});
