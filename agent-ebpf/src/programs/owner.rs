//! Exit of a watched process (an upstream owner): `sched/sched_process_exit` when the whole
//! thread group is gone, with `task->exit_code` (status << 8 | signal) read at the offset the
//! agent found in BTF.
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task},
    macros::tracepoint,
    programs::TracePointContext,
};
use vigil_agent_ebpf::{layouts, offsets, stats, ProcessExit};

use crate::{
    maps::{count, now_ns, EXIT_EVENTS, WATCHED_PIDS},
    read::{kernel_field, record},
};

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: lookup only.
    if unsafe { WATCHED_PIDS.get(tgid) }.is_none() {
        return 0;
    }
    // SAFETY: offset from the tracepoint's format file.
    if unsafe { record::<u8>(&ctx, layouts::sched_process_exit::GROUP_DEAD) } == 0 {
        return 0;
    }
    // SAFETY: `current` is valid while it runs; offset from BTF.
    let exit_code = unsafe { kernel_field::<i32>(bpf_get_current_task(), offsets::TASK_EXIT_CODE) }
        .unwrap_or(-1);
    let Some(mut entry) = EXIT_EVENTS.reserve::<ProcessExit>(0) else {
        count(stats::EXITS_LOST);
        return 0;
    };
    entry.write(ProcessExit {
        ts_ns: now_ns(),
        tgid,
        pid: pid_tgid as u32,
        exit_code,
        _pad: 0,
        comm: bpf_get_current_comm().unwrap_or_default(),
    });
    // Exits are rare and worth reacting to: wake the reader.
    entry.submit(0);
    let _ = WATCHED_PIDS.remove(tgid);
    0
}
