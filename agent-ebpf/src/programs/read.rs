//! Reading what the kernel hands the programs: classic tracepoint records (direct loads),
//! BTF-typed pointers (plain loads the verifier checks against BTF) and any kernel struct
//! (`bpf_probe_read_kernel`), at the offsets the agent found in BTF (`OFFSETS`).
use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::TracePointContext, EbpfContext};

use crate::maps::offset;

/// A field of a classic tracepoint record: a direct load, no helper call.
///
/// SAFETY: `offset` must be a naturally aligned field of the record (see `layouts`).
#[inline(always)]
pub unsafe fn record<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    unsafe { *(ctx.as_ptr() as *const u8).add(offset).cast::<T>() }
}

/// The `T` at `base + OFFSETS[which]`; `None` when the offset is unknown or the read faults.
///
/// SAFETY: `base` must point to the struct the offset belongs to.
#[inline(always)]
pub unsafe fn kernel_field<T>(base: u64, which: u32) -> Option<T> {
    let offset = offset(which)?;
    unsafe { bpf_probe_read_kernel((base as usize + offset) as *const T) }.ok()
}

/// The `T` at `base + OFFSETS[which]` read with a plain load: `base` is a BTF-typed pointer
/// (a tp_btf argument) and the field lies within its type, which the verifier checks against
/// BTF (the offset is a constant to it). `None` when the offset is unknown.
///
/// SAFETY: as for `kernel_field`; a faulting load reads 0 (the verifier guards it).
#[inline(always)]
pub unsafe fn typed_field<T>(base: u64, which: u32) -> Option<T> {
    let offset = offset(which)?;
    Some(unsafe { core::ptr::read_volatile((base as *const u8).add(offset).cast::<T>()) })
}
