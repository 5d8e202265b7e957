//! Tracked sockets, keyed by `struct sock` address (or, for BTF-typed programs, the
//! address's distance from this map: `typed_key`): a set-associative table in an array map.
//!
//! Why not an LRU hash: its lookup is a call that hashes the key and walks a bucket, and its
//! insert takes two locks, both inside connect(); and the lookup is paid on every send,
//! receive and state change of every socket on the node. An array lookup is inlined by the
//! verifier, so an untracked socket costs a multiply, a load and four compares. A way is
//! claimed with a compare-and-swap on its tag; a full set gives up its oldest connection
//! (counted in `TRACK_FAILED`), so a flood cannot exhaust the table either.
use core::{
    intrinsics::{atomic_cxchg, AtomicOrdering},
    ptr::read_volatile,
};

use aya_ebpf::{macros::map, maps::Array};
use vigil_agent_ebpf::{
    socket_table::{socket_set_index, SocketSet, SOCKET_SETS, SOCKET_WAYS},
    stats, Connection,
};

use crate::maps::count;

#[map]
static SOCKETS: Array<SocketSet> = Array::with_max_entries(SOCKET_SETS, 0);

#[inline(always)]
fn set_of(sk: u64) -> Option<*mut SocketSet> {
    SOCKETS.get_ptr_mut(socket_set_index(sk))
}

/// The tag of `way`. Any CPU claims and frees ways: tags are read once (volatile, an aligned
/// 8-byte load is atomic) and changed only by compare-and-swap.
#[inline(always)]
unsafe fn tag(set: *mut SocketSet, way: usize) -> *mut u64 {
    // SAFETY: `way` < SOCKET_WAYS (callers loop over the ways).
    unsafe { (&raw mut (*set).sk).cast::<u64>().add(way) }
}

#[inline(always)]
unsafe fn conn_at(set: *mut SocketSet, way: usize) -> *mut Connection {
    // SAFETY: as in `tag`.
    unsafe { (&raw mut (*set).conn).cast::<Connection>().add(way) }
}

/// A tracked socket's way in the table, found once per program run.
pub struct TrackedSocket {
    sk: u64,
    tag: *mut u64,
    /// Valid for this program run: map values are not freed while a program runs.
    pub conn: &'static mut Connection,
}

impl TrackedSocket {
    /// Stops tracking (the socket reached CLOSE): frees its way, unless a full set already
    /// gave it to another socket.
    #[inline(always)]
    pub fn forget(self) {
        claim(self.tag, self.sk, 0);
    }
}

/// The state of a tracked socket; `None` for every other socket.
#[inline(always)]
pub fn tracked(sk: u64) -> Option<TrackedSocket> {
    if sk == 0 {
        return None;
    }
    let set = set_of(sk)?;
    for way in 0..SOCKET_WAYS {
        // SAFETY: way in range; the value lives in the map for the whole program run.
        let tag = unsafe { tag(set, way) };
        if unsafe { read_volatile(tag) } == sk {
            let conn = unsafe { &mut *conn_at(set, way) };
            return Some(TrackedSocket { sk, tag, conn });
        }
    }
    None
}

/// Starts tracking `sk` with `conn`: in its own way (an address reused without a close we
/// saw), a free way, or the way of the set's oldest connection.
#[inline(always)]
pub fn track(sk: u64, conn: Connection) {
    let Some(set) = set_of(sk) else {
        return;
    };
    for way in 0..SOCKET_WAYS {
        // SAFETY: way in range.
        let tag = unsafe { tag(set, way) };
        let current = unsafe { read_volatile(tag) };
        if current == sk || (current == 0 && claim(tag, 0, sk)) {
            // SAFETY: this way is ours now.
            unsafe { *conn_at(set, way) = conn };
            return;
        }
    }
    count(stats::TRACK_FAILED);
    // SAFETY: a plain read of the set; a racing writer only makes the choice less exact.
    let way = unsafe { (*set).oldest_way() }.min(SOCKET_WAYS - 1);
    // SAFETY: way in range.
    let tag = unsafe { tag(set, way) };
    if claim(tag, unsafe { read_volatile(tag) }, sk) {
        // SAFETY: this way is ours now.
        unsafe { *conn_at(set, way) = conn };
    }
}

/// The table key of a BTF-typed `struct sock *` (a tp_btf argument): its distance from this
/// map. The verifier refuses the hash's multiply on such a pointer, and allows only one
/// arithmetic between two pointers, subtraction; never 0, as the two are different objects.
/// Programs of the other kind (classic and raw tracepoints, where the socket is a plain
/// number) key by address; the agent attaches programs of one kind only.
#[inline(always)]
pub fn typed_key(sk: u64) -> u64 {
    sk.wrapping_sub(core::ptr::from_ref(&SOCKETS) as u64)
}

/// Compare-and-swap of a tag. The bpf target declares no CAS (`AtomicU64::compare_exchange`
/// is missing), but LLVM lowers the intrinsic to BPF_CMPXCHG, which this kernel has.
#[inline(always)]
fn claim(tag: *mut u64, expected: u64, new: u64) -> bool {
    // SAFETY: an aligned u64 in a map value.
    unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
            tag, expected, new,
        )
    }
    .1
}
