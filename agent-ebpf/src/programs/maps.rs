//! Maps shared by the programs, and the small helpers around them.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use vigil_agent_ebpf::{
    connection::{CONNECTION_RING_BYTES, PORT_BITMAP_WORDS},
    exit::{EXIT_RING_BYTES, MAX_WATCHED_PIDS},
    offsets, stats,
};

/// Destination ports (host order) whose connects are tracked, as a 65536-bit bitmap set by
/// the agent: an array lookup is a direct load, cheaper than hashing on every connect().
#[map]
pub static WATCHED_PORTS: Array<u64> = Array::with_max_entries(PORT_BITMAP_WORDS, 0);

/// Processes (tgid) whose exit is reported: upstream owners; set by the agent.
#[map]
pub static WATCHED_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_WATCHED_PIDS, 0);

#[map]
pub static CONNECTION_EVENTS: RingBuf = RingBuf::with_byte_size(CONNECTION_RING_BYTES, 0);

#[map]
pub static EXIT_EVENTS: RingBuf = RingBuf::with_byte_size(EXIT_RING_BYTES, 0);

#[map]
pub static PROBE_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stats::COUNT, 0);

/// Struct offsets (+ 1; 0 = unknown), written by the loader into `.rodata`, which aya
/// freezes: the verifier then knows each as a constant, so the BTF-typed programs read
/// `struct sock` fields with plain loads instead of a `bpf_probe_read_kernel` call each.
#[unsafe(no_mangle)]
pub static OFFSETS: [u64; offsets::COUNT as usize] = [0; offsets::COUNT as usize];

#[inline(always)]
pub fn count(stat: u32) {
    if let Some(counter) = PROBE_STATS.get_ptr_mut(stat) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *counter += 1 };
    }
}

/// A kernel struct offset from `OFFSETS`, `None` when the agent could not find it in BTF.
#[inline(always)]
pub fn offset(index: u32) -> Option<usize> {
    // Volatile: the compiler must not fold the placeholder zeros the loader overwrites.
    let stored = OFFSETS
        .get(index as usize)
        .map(|slot| unsafe { core::ptr::read_volatile(slot) })?;
    (stored != 0).then(|| stored as usize - 1)
}

#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn port_watched(port: u16) -> bool {
    WATCHED_PORTS
        .get(u32::from(port >> 6))
        .is_some_and(|word| word & (1u64 << (port & 63)) != 0)
}
