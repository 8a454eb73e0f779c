//! The argument of Envoy's `set_envoy_filter_state` foreign function, protobuf-encoded by hand (three fields do not
//! justify a protobuf dependency in the wasm module).
//!
//! Envoy's `source/extensions/common/wasm/ext/set_envoy_filter_state.proto`:
//! `SetEnvoyFilterStateArguments { string path = 1; string value = 2; LifeSpan span = 3; }` with
//! `LifeSpan { FilterChain = 0; DownstreamRequest = 1; DownstreamConnection = 2; }` (`declare_property.proto`).

use std::net::SocketAddr;

use berth_table::{Backend, FnvHashMap};

/// The key the `ORIGINAL_DST` cluster reads its destination from (value `IP:PORT`). With it set, the cluster
/// ignores every request header, so a client cannot pick the destination.
pub const ORIGINAL_DST_ADDRESS: &str = "envoy.network.transport_socket.original_dst_address";

/// How long a filter state object lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifeSpan {
    FilterChain = 0,
    /// One HTTP request: what the HTTP filter uses.
    DownstreamRequest = 1,
    /// One downstream connection: what a network (TCP) filter uses.
    DownstreamConnection = 2,
}

/// The [`ORIGINAL_DST_ADDRESS`] argument for every endpoint of `backends`, encoded once per table so that routing
/// a connection or request allocates nothing to name its destination.
pub fn original_dst_arguments<'a>(
    backends: impl IntoIterator<Item = &'a Backend>,
    span: LifeSpan,
) -> FnvHashMap<SocketAddr, Box<[u8]>> {
    backends
        .into_iter()
        .flat_map(|backend| &backend.endpoints)
        .map(|endpoint| {
            let encoded = encode(ORIGINAL_DST_ADDRESS, &endpoint.address.to_string(), span);
            (endpoint.address, encoded.into_boxed_slice())
        })
        .collect()
}

/// Encodes `SetEnvoyFilterStateArguments { path, value, span }`.
pub fn encode(path: &str, value: &str, span: LifeSpan) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + value.len() + 8);
    put_bytes(&mut out, 1, path.as_bytes());
    put_bytes(&mut out, 2, value.as_bytes());
    put_varint(&mut out, 3 << 3); // field 3, wire type 0 (varint)
    put_varint(&mut out, span as u64);
    out
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2); // wire type 2: length-delimited
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_three_fields() {
        let bytes = encode("k", "1.2.3.4:80", LifeSpan::DownstreamRequest);
        let mut expected = vec![0x0a, 1, b'k', 0x12, 10];
        expected.extend_from_slice(b"1.2.3.4:80");
        expected.extend_from_slice(&[0x18, 1]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn long_strings_get_multi_byte_lengths() {
        let path = "p".repeat(300);
        let bytes = encode(&path, "", LifeSpan::DownstreamConnection);
        assert_eq!(&bytes[..3], &[0x0a, 0xac, 0x02], "300 = 0b10_0101100");
        assert_eq!(&bytes[303..], &[0x12, 0, 0x18, 2]);
    }

    #[test]
    fn original_dst_key_for_a_request() {
        let bytes = encode(ORIGINAL_DST_ADDRESS, "[::1]:8080", LifeSpan::DownstreamRequest);
        assert_eq!(bytes[1] as usize, ORIGINAL_DST_ADDRESS.len());
        assert!(bytes.ends_with(&[0x18, 1]));
    }
}
