//! FNV-1a, the hasher of the maps a filter probes on every request or connection (hosts, paths, server names,
//! ports, endpoint addresses): std's SipHash was a fifth of the filter's per-request instructions (callgrind,
//! BENCHMARKS.md).
//!
//! SipHash's keyed defence is against an attacker who chooses the keys a map *inserts*. These maps are built from
//! the table only; a client's Host, path or server name merely probes them, which cannot make a probe sequence
//! longer than the table's own layout has. Session cookies, whose values must not be forgeable, use the keyed
//! [`crate::siphash`] instead.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map built from the table and probed with what clients send.
pub type FnvHashMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv1a>>;

/// The 64-bit FNV-1a hash.
pub struct Fnv1a(u64);

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(OFFSET_BASIS)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = self.0;
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(PRIME);
        }
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fnv(bytes: &[u8]) -> u64 {
        let mut hasher = Fnv1a::default();
        hasher.write(bytes);
        hasher.finish()
    }

    #[test]
    fn matches_the_reference_vectors() {
        // From the FNV reference test suite (draft-eastlake-fnv, 64-bit FNV-1a).
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut map = FnvHashMap::default();
        map.insert("shop.example".to_string(), 1);
        map.insert("api.example".to_string(), 2);
        assert_eq!(map.get("api.example"), Some(&2));
        assert_eq!(map.get("API.example"), None);
    }
}
