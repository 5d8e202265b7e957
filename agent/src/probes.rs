//! Load the eBPF object, check the kernel it runs on, attach what attaches, and read back
//! what the probes recorded. A probe that cannot attach costs its capability, not the agent.
use std::{collections::BTreeSet, path::Path};

use aya::{
    include_bytes_aligned,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
    Ebpf, EbpfError,
};
use serde::Serialize;
use tracing::{debug, info, warn};
use vigil_agent_ebpf::{
    fields::LAYOUTS, setting, stat, ConnectionClosed, ProcessExit, PORT_BITMAP_WORDS,
};

use crate::btf::KernelBtf;

static PROBES: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vigil-probes"));
const TRACEFS: &str = "/sys/kernel/tracing";

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("loading eBPF needs root (or CAP_BPF + CAP_PERFMON): {0}")]
    Permission(String),
    #[error("tracefs is not mounted at {TRACEFS} and mounting it failed: {0}; mount it with `mount -t tracefs nodev {TRACEFS}`")]
    Tracefs(std::io::Error),
    #[error("cannot load the eBPF object: {0}")]
    Load(#[from] EbpfError),
    #[error("the core probe sock/inet_sock_set_state did not attach: {0}; vigil cannot see connects on this kernel")]
    CoreProbe(String),
    #[error("eBPF map {0}: {1}")]
    Map(&'static str, aya::maps::MapError),
}

/// What this kernel let the agent see; exported so a missing tracepoint is visible, not silent.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Capabilities {
    pub available: BTreeSet<&'static str>,
    /// Which program serves each kernel capability (raw tracepoint or classic fallback).
    pub programs: std::collections::BTreeMap<&'static str, &'static str>,
    pub missing: Vec<MissingCapability>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MissingCapability {
    pub capability: &'static str,
    pub reason: String,
}

impl Capabilities {
    fn lost(&mut self, capability: &'static str, reason: String) {
        warn!(capability, %reason, "capability unavailable on this kernel");
        self.missing.push(MissingCapability { capability, reason });
    }
}

/// Probe counters summed over CPUs.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct ProbeStats {
    pub events_lost: u64,
    pub track_failed: u64,
    pub connects_seen: u64,
    pub exits_lost: u64,
}

enum Attach {
    Classic(&'static str, &'static str),
    Raw(&'static str),
}

/// One way to get a capability: a program, where it attaches, and the BTF offsets it needs.
struct ProbeOption {
    program: &'static str,
    attach: Attach,
    needs: &'static [u32],
}

/// Each capability with its options, best first: raw tracepoints skip building the
/// tracepoint record (cheaper on every socket) but need socket offsets from BTF.
const PROBES_BY_CAPABILITY: &[(&str, &[ProbeOption])] = &[
    (
        "connect_outcomes",
        &[
            ProbeOption {
                program: "inet_sock_set_state_raw",
                attach: Attach::Raw("inet_sock_set_state"),
                needs: setting::SOCK_FIELDS,
            },
            ProbeOption {
                program: "inet_sock_set_state",
                attach: Attach::Classic("sock", "inet_sock_set_state"),
                needs: &[],
            },
        ],
    ),
    (
        "syn_retransmits",
        &[ProbeOption {
            program: "tcp_retransmit_skb",
            attach: Attach::Raw("tcp_retransmit_skb"),
            needs: &[],
        }],
    ),
    (
        "resets_received",
        &[ProbeOption {
            program: "tcp_receive_reset",
            attach: Attach::Raw("tcp_receive_reset"),
            needs: &[],
        }],
    ),
    (
        "resets_sent",
        &[ProbeOption {
            program: "tcp_send_reset",
            attach: Attach::Raw("tcp_send_reset"),
            needs: &[],
        }],
    ),
    (
        "request_sent_time",
        &[ProbeOption {
            program: "tcp_sendmsg_locked",
            attach: Attach::Raw("tcp_sendmsg_locked"),
            needs: &[],
        }],
    ),
    (
        "first_byte",
        &[
            ProbeOption {
                program: "tcp_probe_raw",
                attach: Attach::Raw("tcp_probe"),
                needs: &[setting::SKB_LEN, setting::SKB_DATA],
            },
            ProbeOption {
                program: "tcp_probe",
                attach: Attach::Classic("tcp", "tcp_probe"),
                needs: &[],
            },
        ],
    ),
    (
        "owner_exits",
        &[ProbeOption {
            program: "sched_process_exit",
            attach: Attach::Classic("sched", "sched_process_exit"),
            needs: &[],
        }],
    ),
];

/// (setting index, capability, [(struct, member)] whose offsets add up).
type OffsetPath = (u32, &'static str, &'static [(&'static str, &'static str)]);

const OFFSETS: &[OffsetPath] = &[
    (setting::SOCK_SK_ERR, "connect_errno", &[("sock", "sk_err")]),
    (
        setting::TASK_EXIT_CODE,
        "exit_status",
        &[("task_struct", "exit_code")],
    ),
    (
        setting::TCP_BYTES_SENT,
        "bytes_sent",
        &[("tcp_sock", "bytes_sent")],
    ),
    (
        setting::TCP_BYTES_RECEIVED,
        "bytes_received",
        &[("tcp_sock", "bytes_received")],
    ),
    (
        setting::SOCK_FAMILY,
        "socket_fields",
        &[("sock", "__sk_common"), ("sock_common", "skc_family")],
    ),
    (
        setting::SOCK_DPORT,
        "socket_fields",
        &[("sock", "__sk_common"), ("sock_common", "skc_dport")],
    ),
    (
        setting::SOCK_SPORT,
        "socket_fields",
        &[("inet_sock", "inet_sport")],
    ),
    (
        setting::SOCK_DADDR,
        "socket_fields",
        &[("sock", "__sk_common"), ("sock_common", "skc_daddr")],
    ),
    (
        setting::SOCK_SADDR,
        "socket_fields",
        &[("sock", "__sk_common"), ("sock_common", "skc_rcv_saddr")],
    ),
    (
        setting::SOCK_V6_DADDR,
        "socket_fields",
        &[("sock", "__sk_common"), ("sock_common", "skc_v6_daddr")],
    ),
    (
        setting::SOCK_V6_SADDR,
        "socket_fields",
        &[("sock", "__sk_common"), ("sock_common", "skc_v6_rcv_saddr")],
    ),
    (
        setting::SOCK_PROTOCOL,
        "socket_fields",
        &[("sock", "sk_protocol")],
    ),
    (setting::SKB_LEN, "segment_fields", &[("sk_buff", "len")]),
    (setting::SKB_DATA, "segment_fields", &[("sk_buff", "data")]),
];

pub struct Probes {
    ebpf: Ebpf,
    connections: RingBuf<MapData>,
    exits: RingBuf<MapData>,
    watched_ports: BTreeSet<u16>,
    watched_pids: BTreeSet<u32>,
    pub capabilities: Capabilities,
}

impl Probes {
    pub fn load() -> Result<Self, ProbeError> {
        check_privileges()?;
        ensure_tracefs()?;
        relax_memlock();
        let mut ebpf = Ebpf::load(PROBES)?;
        let mut capabilities = Capabilities::default();
        let known = write_offsets(&mut ebpf, &mut capabilities)?;
        attach_all(&mut ebpf, &known, &mut capabilities)?;
        let connections = take_ring(&mut ebpf, "CONNECTION_EVENTS")?;
        let exits = take_ring(&mut ebpf, "EXIT_EVENTS")?;
        Ok(Probes {
            ebpf,
            connections,
            exits,
            watched_ports: BTreeSet::new(),
            watched_pids: BTreeSet::new(),
            capabilities,
        })
    }

    /// Replace the set of watched destination ports.
    pub fn set_watched_ports(&mut self, ports: &BTreeSet<u16>) -> Result<(), ProbeError> {
        let map = self.ebpf.map_mut("WATCHED_PORTS").expect("map in object");
        let mut bitmap: Array<_, u64> =
            Array::try_from(map).map_err(|e| ProbeError::Map("WATCHED_PORTS", e))?;
        let words = |set: &BTreeSet<u16>| {
            let mut w = vec![0u64; PORT_BITMAP_WORDS as usize];
            set.iter()
                .for_each(|&p| w[usize::from(p >> 6)] |= 1 << (p & 63));
            w
        };
        let (old, new) = (words(&self.watched_ports), words(ports));
        for (index, (before, after)) in old.iter().zip(&new).enumerate() {
            if before != after {
                bitmap
                    .set(index as u32, after, 0)
                    .map_err(|e| ProbeError::Map("WATCHED_PORTS", e))?;
            }
        }
        self.watched_ports = ports.clone();
        Ok(())
    }

    /// Report these processes' exits (upstream owners and workers): only the difference
    /// from the last call touches the map. The probe forgets a pid after its exit.
    pub fn set_watched_pids(&mut self, pids: &BTreeSet<u32>) -> Result<(), ProbeError> {
        let map = self.ebpf.map_mut("WATCHED_PIDS").expect("map in object");
        let mut map: HashMap<_, u32, u8> =
            HashMap::try_from(map).map_err(|e| ProbeError::Map("WATCHED_PIDS", e))?;
        for pid in self.watched_pids.difference(pids) {
            let _ = map.remove(pid);
        }
        for pid in pids.difference(&self.watched_pids) {
            map.insert(pid, 1, 0)
                .map_err(|e| ProbeError::Map("WATCHED_PIDS", e))?;
        }
        self.watched_pids = pids.clone();
        Ok(())
    }

    pub fn drain_connections(&mut self, mut each: impl FnMut(ConnectionClosed)) -> usize {
        drain(&mut self.connections, &mut each)
    }

    pub fn drain_exits(&mut self, mut each: impl FnMut(ProcessExit)) -> usize {
        drain(&mut self.exits, &mut each)
    }

    pub fn stats(&self) -> ProbeStats {
        let map = self.ebpf.map("PROBE_STATS").expect("map in object");
        let Ok(map) = PerCpuArray::<_, u64>::try_from(map) else {
            return ProbeStats::default();
        };
        let sum = |index: u32| map.get(&index, 0).map(|v| v.iter().sum()).unwrap_or(0);
        ProbeStats {
            events_lost: sum(stat::EVENTS_LOST),
            track_failed: sum(stat::TRACK_FAILED),
            connects_seen: sum(stat::CONNECTS_SEEN),
            exits_lost: sum(stat::EXITS_LOST),
        }
    }
}

fn drain<T: Copy>(ring: &mut RingBuf<MapData>, each: &mut impl FnMut(T)) -> usize {
    let mut n = 0;
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<T>() {
            // SAFETY: the probe wrote a T (#[repr(C)], Copy) at the start of this record.
            each(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<T>()) });
            n += 1;
        }
    }
    n
}

fn take_ring(ebpf: &mut Ebpf, name: &'static str) -> Result<RingBuf<MapData>, ProbeError> {
    let map = ebpf.take_map(name).expect("map in object");
    RingBuf::try_from(map).map_err(|e| ProbeError::Map(name, e))
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Say what is missing before the kernel answers a bare EPERM.
fn check_privileges() -> Result<(), ProbeError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
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
fn relax_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall on a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        debug!("setrlimit(MEMLOCK) refused; fine on kernels with memcg accounting");
    }
}

fn ensure_tracefs() -> Result<(), ProbeError> {
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

/// Writes the offsets found in BTF to `SETTINGS`; returns the indices that are set.
fn write_offsets(ebpf: &mut Ebpf, caps: &mut Capabilities) -> Result<BTreeSet<u32>, ProbeError> {
    let btf = match KernelBtf::from_sys_fs() {
        Ok(btf) => Some(btf),
        Err(e) => {
            warn!("{e}; errno, exit status and byte counts will be missing");
            None
        }
    };
    let map = ebpf.map_mut("SETTINGS").expect("map in object");
    let mut settings: Array<_, u64> =
        Array::try_from(map).map_err(|e| ProbeError::Map("SETTINGS", e))?;
    let mut known = BTreeSet::new();
    for &(index, capability, path) in OFFSETS {
        let offset = btf.as_ref().and_then(|b| {
            path.iter()
                .map(|(s, m)| b.member_offset(s, m))
                .sum::<Option<u64>>()
        });
        match offset {
            Some(offset) => {
                // Stored as offset + 1: 0 means unknown to the probes.
                settings
                    .set(index, offset + 1, 0)
                    .map_err(|e| ProbeError::Map("SETTINGS", e))?;
                caps.available.insert(capability);
                known.insert(index);
            }
            None => {
                let (s, m) = path[path.len() - 1];
                caps.lost(capability, format!("struct {s}.{m} not found in BTF"));
            }
        }
    }
    Ok(known)
}

/// Programs named in `VIGIL_DISABLE_PROBES` (comma-separated) are not attached: a way to
/// switch off a misbehaving probe, and how the tests exercise the fallbacks.
fn disabled_programs() -> Vec<String> {
    std::env::var("VIGIL_DISABLE_PROBES")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn attach_all(
    ebpf: &mut Ebpf,
    known: &BTreeSet<u32>,
    caps: &mut Capabilities,
) -> Result<(), ProbeError> {
    let disabled = disabled_programs();
    for &(capability, options) in PROBES_BY_CAPABILITY {
        let mut reasons = Vec::new();
        let mut attached = None;
        for option in options.iter() {
            let result = if disabled.iter().any(|d| d == option.program) {
                Err("disabled by VIGIL_DISABLE_PROBES".to_owned())
            } else if option.needs.iter().any(|n| !known.contains(n)) {
                Err("needs struct offsets missing from BTF".to_owned())
            } else {
                attach_one(ebpf, option)
            };
            match result {
                Ok(()) => {
                    attached = Some(option.program);
                    break;
                }
                Err(reason) => reasons.push(format!("{}: {reason}", option.program)),
            }
        }
        if let Some(program) = attached {
            debug!(capability, program, "attached");
            caps.available.insert(capability);
            caps.programs.insert(capability, program);
        } else if capability == "connect_outcomes" {
            return Err(ProbeError::CoreProbe(reasons.join("; ")));
        } else {
            caps.lost(capability, reasons.join("; "));
        }
    }
    Ok(())
}

fn attach_one(ebpf: &mut Ebpf, option: &ProbeOption) -> Result<(), String> {
    let prog = ebpf
        .program_mut(option.program)
        .ok_or("program missing from the object")?;
    match option.attach {
        Attach::Raw(event) => {
            let prog: &mut RawTracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
            prog.load().map_err(|e| format!("load: {e}"))?;
            prog.attach(event).map_err(|e| format!("attach: {e}"))?;
        }
        Attach::Classic(category, event) => {
            check_layout(category, event)?;
            let prog: &mut TracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
            prog.load().map_err(|e| format!("load: {e}"))?;
            prog.attach(category, event)
                .map_err(|e| format!("attach: {e}"))?;
        }
    }
    Ok(())
}

/// The probes read fields at fixed offsets; refuse a tracepoint whose layout moved.
fn check_layout(category: &str, event: &str) -> Result<(), String> {
    let Some((_, _, expected)) = LAYOUTS
        .iter()
        .find(|(c, e, _)| *c == category && *e == event)
    else {
        return Ok(());
    };
    let path = Path::new(TRACEFS)
        .join("events")
        .join(category)
        .join(event)
        .join("format");
    let format = std::fs::read_to_string(&path)
        .map_err(|e| format!("tracepoint not available ({}: {e})", path.display()))?;
    for &(field, offset) in expected.iter() {
        match field_offset(&format, field) {
            Some(actual) if actual == offset => {}
            Some(actual) => {
                return Err(format!(
                    "field {field} at offset {actual}, probe expects {offset}"
                ))
            }
            None => return Err(format!("field {field} missing from {}", path.display())),
        }
    }
    Ok(())
}

/// Offset of `field` in a tracefs `format` file (`field:__u16 sport;\toffset:24;...`).
pub fn field_offset(format: &str, field: &str) -> Option<usize> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.split_whitespace().last()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        rest.trim()
            .strip_prefix("offset:")?
            .split(';')
            .next()?
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::field_offset;

    #[test]
    fn reads_offsets_from_format_files() {
        let format = "name: inet_sock_set_state\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
            \tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;\n";
        assert_eq!(field_offset(format, "skaddr"), Some(8));
        assert_eq!(field_offset(format, "saddr"), Some(32));
        assert_eq!(field_offset(format, "daddr"), None);
    }
}
