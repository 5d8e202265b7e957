//! The table of tracked sockets (`SOCKETS`): an array of sets of ways, so a lookup is an
//! inlined array access and a few compares, never a hash-map call. Kernel side:
//! `programs/socket_table.rs`.
use crate::connection::Connection;

/// 2^14 sets of 4 ways: 65536 sockets, 5 MiB. A full set gives up its oldest connection, so a
/// SYN flood cannot exhaust it.
pub const SOCKET_SET_BITS: u32 = 14;
pub const SOCKET_SETS: u32 = 1 << SOCKET_SET_BITS;
pub const SOCKET_WAYS: usize = 4;

/// One set of the `SOCKETS` table: the tags (`struct sock` addresses, 0 = free) first, so a
/// lookup compares them within one cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketSet {
    pub sk: [u64; SOCKET_WAYS],
    pub conn: [Connection; SOCKET_WAYS],
}

/// The set of `SOCKETS` a socket belongs to. Fibonacci hashing: slab addresses differ in
/// their middle bits, and the top bits of the product depend on all of them.
#[inline(always)]
pub fn socket_set_index(sk: u64) -> u32 {
    (sk.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SOCKET_SET_BITS)) as u32
}

impl SocketSet {
    /// The way whose connection started first: it gives way when the set is full.
    #[inline(always)]
    pub fn oldest_way(&self) -> usize {
        let mut oldest = 0;
        for way in 1..SOCKET_WAYS {
            if self.conn[way].connect_ns < self.conn[oldest].connect_ns {
                oldest = way;
            }
        }
        oldest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_addresses_spread_over_the_sets() {
        // A quarter of the table live, laid out as a slab would: 2304-byte objects
        // (tcp_sock), 14 to a slab, slabs spread over the direct map. Fibonacci hashing spreads
        // such strides evenly (random addresses would overflow ~60 sets' 4 ways; these none).
        let mut per_set = [0u8; SOCKET_SETS as usize];
        let mut sk_count = 0;
        for slab in 0..1170u64 {
            let base = 0xffff_8881_0000_0000 + slab * 0x9_3000;
            for object in 0..14 {
                let set = socket_set_index(base + object * 2304) as usize;
                per_set[set] += 1;
                sk_count += 1;
            }
        }
        assert_eq!(sk_count, 16380);
        let fullest = per_set.iter().max().copied().unwrap();
        assert!(fullest <= 2, "fullest set holds {fullest}");
    }

    #[test]
    fn a_full_set_gives_up_its_oldest_connection() {
        let mut set = SocketSet::default();
        for (way, started) in [40, 10, 30, 20].into_iter().enumerate() {
            set.conn[way].connect_ns = started;
        }
        assert_eq!(set.oldest_way(), 1);
        set.conn[1].connect_ns = 50;
        assert_eq!(set.oldest_way(), 3);
    }
}
