//! Session affinity: the secret key, the cookie value that names an endpoint without revealing it, the per-route
//! lookup from cookie value back to endpoint, and the client-address hash that keeps a TCP client on one endpoint.
//!
//! A cookie value is the keyed hash (SipHash-2-4) of the endpoint's `IP:PORT`: without the key it says nothing
//! about the address, and the same endpoint gets the same value on every Envoy and after every table change. A
//! value is only ever looked up among the endpoints of the route the request matched, so a forged or foreign value
//! can select nothing else.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::choose::mix64;
use crate::siphash::siphash24;
use crate::{Backend, Endpoint};

/// The 128-bit secret behind cookie values and client hashes. The controller makes one and keeps it (in its state
/// file), so cookies stay valid across controller restarts. On the wire: 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    k0: u64,
    k1: u64,
}

impl AffinityKey {
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let (mut k0, mut k1) = ([0u8; 8], [0u8; 8]);
        k0.copy_from_slice(&bytes[..8]);
        k1.copy_from_slice(&bytes[8..]);
        AffinityKey { k0: u64::from_le_bytes(k0), k1: u64::from_le_bytes(k1) }
    }

    pub fn to_hex(&self) -> String {
        format!("{:016x}{:016x}", self.k0, self.k1)
    }

    /// Parses 32 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 32 {
            return None;
        }
        let k0 = parse_hex_u64(text.get(..16)?)?;
        let k1 = parse_hex_u64(text.get(16..)?)?;
        Some(AffinityKey { k0, k1 })
    }

    /// The tag of an endpoint: what its cookie value encodes.
    pub fn endpoint_tag(&self, endpoint: SocketAddr) -> u64 {
        siphash24(self.k0, self.k1, endpoint.to_string().as_bytes())
    }

    /// The cookie value naming `endpoint`: 16 hex digits.
    pub fn cookie_value(&self, endpoint: SocketAddr) -> String {
        format!("{:016x}", self.endpoint_tag(endpoint))
    }

    /// The hash of a client's address (its IP only: a client's port changes with every connection).
    pub fn client_hash(&self, client: IpAddr) -> u64 {
        match client {
            IpAddr::V4(ip) => siphash24(self.k0, self.k1, &ip.octets()),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(v4) => siphash24(self.k0, self.k1, &v4.octets()),
                None => siphash24(self.k0, self.k1, &ip.octets()),
            },
        }
    }
}

/// Never prints the key itself: it ends up in logs through `Debug` of the table.
impl std::fmt::Debug for AffinityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AffinityKey(..)")
    }
}

impl Serialize for AffinityKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for AffinityKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        AffinityKey::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("affinity_key must be 32 hexadecimal digits"))
    }
}

/// Exactly 16 hex digits (either case) as a `u64`; anything else is `None`.
fn parse_hex_u64(text: &str) -> Option<u64> {
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// One route's endpoints by cookie value, built once per table so a request does one binary search.
#[derive(Debug, Clone, Default)]
pub struct StickyEndpoints {
    /// `(tag, endpoint)`, sorted by tag.
    by_tag: Vec<(u64, SocketAddr)>,
}

impl StickyEndpoints {
    pub fn new(key: &AffinityKey, backends: &[Backend]) -> Self {
        let mut by_tag: Vec<(u64, SocketAddr)> = backends
            .iter()
            .flat_map(|backend| &backend.endpoints)
            .map(|endpoint| (key.endpoint_tag(endpoint.address), endpoint.address))
            .collect();
        by_tag.sort_unstable();
        by_tag.dedup_by_key(|(tag, _)| *tag);
        StickyEndpoints { by_tag }
    }

    /// The endpoint of this route that `cookie_value` names, if any. Values of other routes' endpoints, of
    /// endpoints gone from the route, and forgeries are all `None`.
    pub fn find(&self, cookie_value: &str) -> Option<SocketAddr> {
        let tag = parse_hex_u64(cookie_value)?;
        let index = self.by_tag.binary_search_by_key(&tag, |(t, _)| *t).ok()?;
        self.by_tag.get(index).map(|(_, address)| *address)
    }
}

/// The value of cookie `name` in a `Cookie` request header (`a=1; b=2`), if present. The first occurrence wins.
pub fn find_cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"'))
    })
}

/// Whether `name` can be a cookie name: an RFC 6265 token (visible ASCII, no separators).
pub fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// One route's endpoints arranged for rendezvous (highest random weight) hashing of client addresses: each
/// client goes to the usable endpoint with the highest score for it. Removing or ejecting an endpoint moves only
/// its own clients, and adding one takes only its share from the others.
#[derive(Debug, Clone, Default)]
pub struct ClientAffinity {
    /// `(endpoint tag, endpoint weight, backend index, endpoint index within the backend)`.
    endpoints: Vec<(u64, f64, usize, usize)>,
}

impl ClientAffinity {
    /// Endpoint weights follow the chooser's rules: a backend's weight is split among its endpoints, backends
    /// without endpoints give their share away, and when every backend weighs 0 they weigh the same.
    pub fn new(key: &AffinityKey, backends: &[Backend]) -> Self {
        let any_weight = backends.iter().any(|b| b.weight > 0 && !b.endpoints.is_empty());
        let mut endpoints = Vec::new();
        for (b, backend) in backends.iter().enumerate() {
            let weight = if any_weight { f64::from(backend.weight) } else { 1.0 };
            let share = weight / backend.endpoints.len().max(1) as f64;
            if share > 0.0 {
                for (e, endpoint) in backend.endpoints.iter().enumerate() {
                    endpoints.push((key.endpoint_tag(endpoint.address), share, b, e));
                }
            }
        }
        ClientAffinity { endpoints }
    }

    /// The endpoint for the client whose [`AffinityKey::client_hash`] is `client`, among those `usable` accepts.
    pub fn choose<'a>(
        &self,
        backends: &'a [Backend],
        client: u64,
        usable: impl Fn(&Endpoint) -> bool,
    ) -> Option<&'a Endpoint> {
        let mut best: Option<(f64, &Endpoint)> = None;
        for (tag, weight, b, e) in &self.endpoints {
            let Some(endpoint) = backends.get(*b).and_then(|backend| backend.endpoints.get(*e)) else { continue };
            if !usable(endpoint) {
                continue;
            }
            let score = weight / -unit_interval(mix64(client ^ tag)).ln();
            if best.is_none_or(|(top, _)| score > top) {
                best = Some((score, endpoint));
            }
        }
        best.map(|(_, endpoint)| endpoint)
    }
}

/// `x` as a number strictly between 0 and 1 (53 bits of it), so its logarithm is finite and negative.
fn unit_interval(x: u64) -> f64 {
    ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn key() -> AffinityKey {
        AffinityKey::from_bytes(*b"0123456789abcdef")
    }

    fn backend(name: &str, weight: u32, ports: &[u16]) -> Backend {
        Backend {
            service: name.into(),
            weight,
            endpoints: ports.iter().map(|p| Endpoint { address: ([10, 0, 0, 1], *p).into() }).collect(),
        }
    }

    fn addr(port: u16) -> SocketAddr {
        ([10, 0, 0, 1], port).into()
    }

    #[test]
    fn the_key_round_trips_through_hex_and_json_and_never_prints() {
        let key = key();
        assert_eq!(AffinityKey::from_hex(&key.to_hex()), Some(key));
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{}\"", key.to_hex()));
        assert_eq!(serde_json::from_str::<AffinityKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<AffinityKey>("\"abc\"").is_err());
        assert!(serde_json::from_str::<AffinityKey>(&format!("\"{}\"", "g".repeat(32))).is_err());
        assert_eq!(format!("{key:?}"), "AffinityKey(..)");
    }

    #[test]
    fn cookie_values_are_stable_opaque_and_keyed() {
        let value = key().cookie_value(addr(8080));
        assert_eq!(value.len(), 16);
        assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(value, key().cookie_value(addr(8080)), "the same endpoint, the same value");
        assert_ne!(value, key().cookie_value(addr(8081)));
        let other = AffinityKey::from_bytes(*b"fedcba9876543210");
        assert_ne!(value, other.cookie_value(addr(8080)), "another key, another value");
    }

    #[test]
    fn lookup_finds_only_the_routes_own_endpoints() {
        let key = key();
        let route = [backend("a", 50, &[1, 2]), backend("b", 50, &[3])];
        let sticky = StickyEndpoints::new(&key, &route);
        for port in [1, 2, 3] {
            assert_eq!(sticky.find(&key.cookie_value(addr(port))), Some(addr(port)));
        }
        assert_eq!(sticky.find(&key.cookie_value(addr(4))), None, "another route's endpoint");
        let upper = key.cookie_value(addr(2)).to_ascii_uppercase();
        assert_eq!(sticky.find(&upper), Some(addr(2)), "hex in either case");
        for forged in ["", "zz", "0000000000000000", "10.0.0.1:1", &"f".repeat(17), "+123456789abcdef"] {
            assert_eq!(sticky.find(forged), None, "{forged:?}");
        }
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let header = "theme=dark; berth=abc; berthx=no; other=\"q\"";
        assert_eq!(find_cookie(header, "berth"), Some("abc"));
        assert_eq!(find_cookie(header, "other"), Some("q"));
        assert_eq!(find_cookie(header, "bert"), None);
        assert_eq!(find_cookie("berth", "berth"), None);
        assert_eq!(find_cookie("a=1;berth=2;berth=3", "berth"), Some("2"));
        assert_eq!(find_cookie("", "berth"), None);
    }

    #[test]
    fn cookie_names_are_tokens() {
        for good in ["berth", "SESSION_ID", "a-b.c"] {
            assert!(is_cookie_name(good), "{good}");
        }
        for bad in ["", "a b", "a=b", "a;b", "é", &"x".repeat(65)] {
            assert!(!is_cookie_name(bad), "{bad}");
        }
    }

    fn spread(affinity: &ClientAffinity, backends: &[Backend], clients: u32) -> HashMap<u16, u32> {
        let mut seen = HashMap::new();
        for client in 0..clients {
            let hash = key().client_hash(IpAddr::from(client.to_be_bytes()));
            let endpoint = affinity.choose(backends, hash, |_| true).unwrap();
            *seen.entry(endpoint.address.port()).or_default() += 1;
        }
        seen
    }

    #[test]
    fn a_client_keeps_its_endpoint_and_clients_spread_by_weight() {
        let backends = [backend("a", 75, &[1, 2, 3]), backend("b", 25, &[4])];
        let affinity = ClientAffinity::new(&key(), &backends);
        let client = key().client_hash("192.0.2.7".parse().unwrap());
        let first = affinity.choose(&backends, client, |_| true).unwrap().address;
        for _ in 0..10 {
            assert_eq!(affinity.choose(&backends, client, |_| true).unwrap().address, first);
        }
        let seen = spread(&affinity, &backends, 20_000);
        for port in [1, 2, 3, 4] {
            assert!((4_500..5_500).contains(&seen[&port]), "{seen:?}");
        }
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_clients() {
        let before = [backend("a", 100, &[1, 2, 3])];
        let after = [backend("a", 100, &[1, 3])];
        let (old, new) = (ClientAffinity::new(&key(), &before), ClientAffinity::new(&key(), &after));
        for client in 0..2_000u32 {
            let hash = key().client_hash(IpAddr::from(client.to_be_bytes()));
            let was = old.choose(&before, hash, |_| true).unwrap().address.port();
            let now = new.choose(&after, hash, |_| true).unwrap().address.port();
            if was != 2 {
                assert_eq!(was, now, "client {client} moved without cause");
            }
        }
    }

    #[test]
    fn unusable_endpoints_are_skipped_and_none_usable_is_none() {
        let backends = [backend("a", 100, &[1, 2])];
        let affinity = ClientAffinity::new(&key(), &backends);
        for client in 0..100u64 {
            let chosen = affinity.choose(&backends, client, |e| e.address.port() != 1).unwrap();
            assert_eq!(chosen.address.port(), 2);
        }
        assert!(affinity.choose(&backends, 1, |_| false).is_none());
    }

    #[test]
    fn zero_weights_follow_the_choosers_rules() {
        let draining = [backend("old", 0, &[1]), backend("new", 100, &[2])];
        let seen = spread(&ClientAffinity::new(&key(), &draining), &draining, 500);
        assert_eq!(seen.get(&1), None);
        let all_zero = [backend("a", 0, &[1]), backend("b", 0, &[2])];
        let seen = spread(&ClientAffinity::new(&key(), &all_zero), &all_zero, 2_000);
        assert!(seen[&1] > 800 && seen[&2] > 800, "{seen:?}");
        let empty = [backend("gone", 90, &[]), backend("here", 10, &[2])];
        assert_eq!(spread(&ClientAffinity::new(&key(), &empty), &empty, 100)[&2], 100);
    }

    #[test]
    fn ipv4_mapped_addresses_hash_like_ipv4() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(key().client_hash(v4), key().client_hash(mapped));
    }
}
