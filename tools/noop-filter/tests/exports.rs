//! The no-op module is entered for the same per-request and per-connection callbacks as Berth's: its export list is
//! Berth's without the root's own periodic and HTTP-call callbacks, which a filter that does nothing has no use for.

use std::collections::BTreeSet;

use berth_wasm_exports::parse_list;

const NOOP: &str = include_str!("../src/exports.txt");
const BERTH: &str = include_str!("../../../filter/src/exports.txt");

/// Berth's exports that serve its fetcher and its table watch, not a request or a connection.
const ROOT_ONLY: &[&str] = &["proxy_on_tick", "proxy_on_http_call_response"];

#[test]
fn exports_are_berths_per_request_and_per_connection_ones() {
    let noop: BTreeSet<&str> = parse_list(NOOP).into_iter().collect();
    let berth: BTreeSet<&str> = parse_list(BERTH).into_iter().filter(|name| !ROOT_ONLY.contains(name)).collect();
    assert_eq!(noop, berth);
}
