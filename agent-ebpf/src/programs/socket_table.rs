//! Tracked sockets, keyed by `struct sock` address: a set-associative table in an array map.
//!
//! Why not an LRU hash: its lookup is a call that hashes the key and walks a bucket, and its
//! insert takes two locks, both inside connect(); and the lookup is paid on every send,
//! receive and state change of every socket on the node. An array lookup is inlined by the
//! verifier, so an untracked socket costs a multiply and a load from a small array of
//! counters that stays in cache (`TRACKED_PER_GROUP`), and only when its group holds a
//! tracked socket four compares in the table. A way is claimed with a compare-and-swap on
//! its tag; a full set gives up its oldest connection (counted in `TRACK_FAILED`), so a
//! flood cannot exhaust the table either.
use core::{
    intrinsics::{atomic_cxchg, atomic_xadd, AtomicOrdering},
    ptr::read_volatile,
};

use aya_ebpf::{macros::map, maps::Array};
use vigil_agent_ebpf::{
    socket_table::{
        socket_group_index, socket_set_index, SocketSet, SOCKET_GROUPS, SOCKET_SETS, SOCKET_WAYS,
    },
    stats, Connection,
};

use crate::maps::count;

#[map]
static SOCKETS: Array<SocketSet> = Array::with_max_entries(SOCKET_SETS, 0);

/// Tracked sockets per group of sets. A count changes only with a tag's 0 → socket and
/// socket → 0 compare-and-swap, so it is not 0 while its group holds a tracked socket (but
/// for the instant between a claim and its increment, inside the connect() that claims).
#[map]
static TRACKED_PER_GROUP: Array<u32> = Array::with_max_entries(SOCKET_GROUPS, 0);

/// The set of `sk` and its group's count.
#[inline(always)]
fn set_of(sk: u64) -> Option<(*mut SocketSet, *mut u32)> {
    let set = socket_set_index(sk);
    let group = TRACKED_PER_GROUP.get_ptr_mut(socket_group_index(set))?;
    Some((SOCKETS.get_ptr_mut(set)?, group))
}

/// Adds `delta` (wrapping: `u32::MAX` is -1) to a group's count.
#[inline(always)]
fn add_to_group(group: *mut u32, delta: u32) {
    // SAFETY: an aligned u32 in a map value; lowered to BPF_ATOMIC add.
    unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::SeqCst }>(group, delta) };
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
    group: *mut u32,
    /// Valid for this program run: map values are not freed while a program runs.
    pub conn: &'static mut Connection,
}

impl TrackedSocket {
    /// Stops tracking (the socket reached CLOSE): frees its way, unless a full set already
    /// gave it to another socket.
    #[inline(always)]
    pub fn forget(self) {
        if claim(self.tag, self.sk, 0) {
            add_to_group(self.group, u32::MAX);
        }
    }
}

/// The state of a tracked socket; `None` for every other socket.
#[inline(always)]
pub fn tracked(sk: u64) -> Option<TrackedSocket> {
    if sk == 0 {
        return None;
    }
    let set = socket_set_index(sk);
    let group = TRACKED_PER_GROUP.get_ptr_mut(socket_group_index(set))?;
    // SAFETY: an aligned u32 in a map value, changed by other CPUs only atomically.
    if unsafe { read_volatile(group) } == 0 {
        return None;
    }
    let set = SOCKETS.get_ptr_mut(set)?;
    for way in 0..SOCKET_WAYS {
        // SAFETY: way in range; the value lives in the map for the whole program run.
        let tag = unsafe { tag(set, way) };
        if unsafe { read_volatile(tag) } == sk {
            let conn = unsafe { &mut *conn_at(set, way) };
            return Some(TrackedSocket {
                sk,
                tag,
                group,
                conn,
            });
        }
    }
    None
}

/// Starts tracking `sk` with `conn`: in its own way (an address reused without a close we
/// saw), a free way, or the way of the set's oldest connection.
#[inline(always)]
pub fn track(sk: u64, conn: Connection) {
    let Some((set, group)) = set_of(sk) else {
        return;
    };
    for way in 0..SOCKET_WAYS {
        // SAFETY: way in range.
        let tag = unsafe { tag(set, way) };
        let current = unsafe { read_volatile(tag) };
        let claimed = current == 0 && claim(tag, 0, sk);
        if claimed {
            add_to_group(group, 1);
        }
        if current == sk || claimed {
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
    let current = unsafe { read_volatile(tag) };
    if claim(tag, current, sk) {
        if current == 0 {
            // Freed meanwhile: one more socket in the group, not a replacement.
            add_to_group(group, 1);
        }
        // SAFETY: this way is ours now.
        unsafe { *conn_at(set, way) = conn };
    }
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
