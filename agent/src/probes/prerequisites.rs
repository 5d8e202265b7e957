//! What the host must give before anything loads: privileges, tracefs, the memlock limit.
use std::path::Path;

use tracing::{debug, info};

use super::ProbeError;
use crate::host::proc_files;

pub(super) const TRACEFS: &str = "/sys/kernel/tracing";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Say what is missing before the kernel answers a bare EPERM.
pub(super) fn check_privileges() -> Result<(), ProbeError> {
    let effective = proc_files::status_field(Path::new("/proc/self"), "CapEff")
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    Err(ProbeError::Permission(format!(
        "running as uid {} without CAP_BPF/CAP_PERFMON or CAP_SYS_ADMIN; run it as root (sudo) or as the privileged DaemonSet/systemd unit",
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() }
    )))
}

/// EPERM without CAP_SYS_RESOURCE is harmless on 6.x (memcg accounting): ignore it quietly.
pub(super) fn relax_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall on a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        debug!("setrlimit(MEMLOCK) refused; fine on kernels with memcg accounting");
    }
}

pub(super) fn ensure_tracefs() -> Result<(), ProbeError> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    info!("tracefs not mounted; mounting it at {TRACEFS}");
    let status = std::process::Command::new("mount")
        .args(["-t", "tracefs", "nodev", TRACEFS])
        .status()
        .map_err(ProbeError::Tracefs)?;
    if status.success() && Path::new(TRACEFS).join("events").is_dir() {
        Ok(())
    } else {
        Err(ProbeError::Tracefs(std::io::Error::other(format!(
            "mount exited with {status}"
        ))))
    }
}
