//! SipHash-2-4 (Aumasson and Bernstein): a keyed hash that is a pseudo-random function, so a value made with a
//! secret key says nothing about its input to whoever lacks the key. The standard library's implementation is
//! deprecated and its replacement (`DefaultHasher`) promises no stable output, which a cookie must have.

/// SipHash-2-4 of `data` under the 128-bit key `(k0, k1)` (the key's two little-endian halves).
pub fn siphash24(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut blocks = data.chunks_exact(8);
    for block in &mut blocks {
        let mut word = [0u8; 8];
        word.copy_from_slice(block);
        compress(&mut v, u64::from_le_bytes(word));
    }
    // The last block: the remaining bytes, and the length's low byte in the top byte.
    let mut last = [0u8; 8];
    let tail = blocks.remainder();
    last[..tail.len()].copy_from_slice(tail);
    last[7] = data.len() as u8;
    compress(&mut v, u64::from_le_bytes(last));
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn compress(v: &mut [u64; 4], word: u64) {
    v[3] ^= word;
    round(v);
    round(v);
    v[0] ^= word;
}

fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key `00 01 .. 0f` of the paper's test vectors.
    const K0: u64 = 0x0706_0504_0302_0100;
    const K1: u64 = 0x0f0e_0d0c_0b0a_0908;

    #[test]
    fn the_papers_test_vector() {
        // Appendix A of "SipHash: a fast short-input PRF": the 15-byte message 00 01 .. 0e.
        let message: Vec<u8> = (0..15).collect();
        assert_eq!(siphash24(K0, K1, &message), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn the_reference_implementations_vectors_for_short_messages() {
        // `vectors.h` of the reference implementation (veorq/SipHash), outputs as little-endian bytes.
        let expected: [[u8; 8]; 3] = [
            [0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72],
            [0xfd, 0x67, 0xdc, 0x93, 0xc5, 0x39, 0xf8, 0x74],
            [0x5a, 0x4f, 0xa9, 0xd9, 0x09, 0x80, 0x6c, 0x0d],
        ];
        for (len, bytes) in expected.iter().enumerate() {
            let message: Vec<u8> = (0..len as u8).collect();
            assert_eq!(siphash24(K0, K1, &message), u64::from_le_bytes(*bytes), "length {len}");
        }
    }

    #[test]
    fn agrees_with_the_standard_librarys_deprecated_siphasher_at_every_length() {
        #[allow(deprecated)]
        fn std_siphash(k0: u64, k1: u64, data: &[u8]) -> u64 {
            use std::hash::Hasher;
            let mut hasher = std::hash::SipHasher::new_with_keys(k0, k1);
            hasher.write(data);
            hasher.finish()
        }
        let data: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37)).collect();
        for len in 0..data.len() {
            assert_eq!(siphash24(1, 2, &data[..len]), std_siphash(1, 2, &data[..len]), "length {len}");
        }
    }

    #[test]
    fn the_key_changes_everything() {
        assert_ne!(siphash24(K0, K1, b"127.0.0.1:80"), siphash24(K0 ^ 1, K1, b"127.0.0.1:80"));
    }
}
