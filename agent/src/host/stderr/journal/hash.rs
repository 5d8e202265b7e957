//! The two hashes a journal file indexes its DATA objects by (systemd's `journal_file_hash_data`):
//! SipHash-2-4 keyed with the file's id when the header has `KEYED_HASH` (systemd ≥ 246), else
//! Bob Jenkins' lookup3 `hashlittle2` folded to 64 bits. Checked against the hashes real files
//! store in their DATA objects (see the journal tests).

/// SipHash-2-4 with a 16-byte key (the file id), as systemd's `siphash24()`.
pub fn siphash24(data: &[u8], key: &[u8; 16]) -> u64 {
    let k0 = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
    let k1 = u64::from_le_bytes(key[8..].try_into().expect("8 bytes"));
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let m = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        v[3] ^= m;
        sip_rounds(&mut v, 2);
        v[0] ^= m;
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    let m = u64::from_le_bytes(last) | ((data.len() as u64 & 0xff) << 56);
    v[3] ^= m;
    sip_rounds(&mut v, 2);
    v[0] ^= m;
    v[2] ^= 0xff;
    sip_rounds(&mut v, 4);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn sip_rounds(v: &mut [u64; 4], rounds: usize) {
    for _ in 0..rounds {
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
}

/// lookup3's `hashlittle2` with both seeds 0, as systemd's `jenkins_hash64()`: `c << 32 | b`.
pub fn jenkins_hash64(data: &[u8]) -> u64 {
    let init = 0xdead_beef_u32.wrapping_add(data.len() as u32);
    let (mut a, mut b, mut c) = (init, init, init);
    let word = |bytes: &[u8]| {
        let mut w = [0u8; 4];
        w[..bytes.len()].copy_from_slice(bytes);
        u32::from_le_bytes(w)
    };
    let mut rest = data;
    while rest.len() > 12 {
        a = a.wrapping_add(word(&rest[0..4]));
        b = b.wrapping_add(word(&rest[4..8]));
        c = c.wrapping_add(word(&rest[8..12]));
        mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    // The last 1..=12 bytes, zero-padded; nothing left means no final mix.
    if rest.is_empty() {
        return (u64::from(c) << 32) | u64::from(b);
    }
    a = a.wrapping_add(word(&rest[..rest.len().min(4)]));
    if rest.len() > 4 {
        b = b.wrapping_add(word(&rest[4..rest.len().min(8)]));
    }
    if rest.len() > 8 {
        c = c.wrapping_add(word(&rest[8..]));
    }
    final_mix(&mut a, &mut b, &mut c);
    (u64::from(c) << 32) | u64::from(b)
}

fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_matches_the_reference_vectors() {
        // The SipHash paper's vectors: key 00..0f, input 00..(n-1).
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let input: Vec<u8> = (0..64u8).collect();
        assert_eq!(siphash24(&input[..0], &key), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(&input[..1], &key), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(&input[..8], &key), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(&input[..15], &key), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn jenkins_matches_lookup3s_driver() {
        // lookup3.c's driver5: hashlittle2("", 0, &c=0, &b=0) gives c=deadbeef b=deadbeef, and
        // "Four score and seven years ago" with seeds 0 gives c=17770551 b=ce7226e6.
        assert_eq!(jenkins_hash64(b""), 0xdead_beef_dead_beef);
        assert_eq!(
            jenkins_hash64(b"Four score and seven years ago"),
            0x1777_0551_ce72_26e6
        );
    }
}
