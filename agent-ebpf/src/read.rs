//! Reading what the kernel hands the programs: classic tracepoint records (direct loads) and
//! kernel structs at the offsets the agent found in BTF (`SETTINGS`).
use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::TracePointContext, EbpfContext};

use crate::maps::setting;

/// A field of a classic tracepoint record: a direct load, no helper call.
///
/// SAFETY: `offset` must be a naturally aligned field of the record (see `fields`).
#[inline(always)]
pub unsafe fn record<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    unsafe { *(ctx.as_ptr() as *const u8).add(offset).cast::<T>() }
}

/// The `T` at `base + SETTINGS[which]`; `None` when the offset is unknown or the read faults.
///
/// SAFETY: `base` must point to the struct the setting's offset belongs to.
#[inline(always)]
pub unsafe fn kernel_field<T>(base: u64, which: u32) -> Option<T> {
    let offset = setting(which)?;
    unsafe { bpf_probe_read_kernel((base as usize + offset) as *const T) }.ok()
}
