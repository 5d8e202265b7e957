//! Load the eBPF object, check the kernel it runs on, attach what attaches, and read back
//! what the probes recorded. A probe that cannot attach costs its capability, not the agent.
use std::collections::BTreeSet;

use aya::{
    include_bytes_aligned,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    Ebpf, EbpfError, EbpfLoader,
};
use serde::Serialize;
use tracing::warn;
use vigil_agent_ebpf::{connection::PORT_BITMAP_WORDS, stats, ConnectionClosed, ProcessExit};

use attach::{attach_all, find_offsets};
use prerequisites::{check_privileges, ensure_tracefs, relax_memlock, TRACEFS};

mod attach;
pub mod btf;
mod catalog;
pub mod connection;
pub mod exit;
mod prerequisites;

static PROBES: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vigil-probes"));

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
    /// Program runs the kernel skipped because the same program was already running on that
    /// CPU (an event nested in another, such as a softirq arriving mid-run): a state change
    /// skipped this way can leave a connection unreported. The kernel's `recursion_misses`.
    pub runs_skipped: u64,
}

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
        let mut capabilities = Capabilities::default();
        let (offsets, known) = find_offsets(&mut capabilities);
        // The kernel's BTF (~13 MiB parsed, here) serves the loader and the BTF-typed
        // programs, and is freed once they are attached. `EbpfLoader::new` parses a copy of
        // its own: it is dropped before ours is parsed, so two are never held at once
        // (`bench agent` measured the peak at 37 MiB with both).
        let btf: Option<aya::Btf>;
        let mut ebpf = {
            let mut loader = EbpfLoader::new();
            loader.btf(None);
            btf = aya::Btf::from_sys_fs()
                .inspect_err(|e| warn!("kernel BTF: {e}; the classic tracepoints will serve"))
                .ok();
            loader
                .btf(btf.as_ref())
                .override_global("OFFSETS", offsets.as_slice(), true)
                .load(PROBES)?
        };
        attach_all(&mut ebpf, btf.as_ref(), &known, &mut capabilities)?;
        drop(btf);
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

    /// Report these processes' exits (upstream owners and workers). The probe forgets a pid
    /// after its exit, also when the exit record was lost, so a pid the map no longer holds
    /// is put back: a recycled pid that owns an upstream again is watched again. Returns how
    /// many pids could not be watched (the map is full); the agent keeps going without them.
    pub fn set_watched_pids(&mut self, pids: &BTreeSet<u32>) -> Result<usize, ProbeError> {
        let map = self.ebpf.map_mut("WATCHED_PIDS").expect("map in object");
        let mut map: HashMap<_, u32, u8> =
            HashMap::try_from(map).map_err(|e| ProbeError::Map("WATCHED_PIDS", e))?;
        for pid in self.watched_pids.difference(pids) {
            let _ = map.remove(pid);
        }
        let mut unwatched = 0;
        self.watched_pids.clear();
        for &pid in pids {
            if map.get(&pid, 0).is_ok() || map.insert(pid, 1, 0).is_ok() {
                self.watched_pids.insert(pid);
            } else {
                unwatched += 1;
            }
        }
        Ok(unwatched)
    }

    pub fn drain_connections(&mut self, mut each: impl FnMut(ConnectionClosed)) -> usize {
        drain(&mut self.connections, &mut each)
    }

    pub fn drain_exits(&mut self, mut each: impl FnMut(ProcessExit)) -> usize {
        drain(&mut self.exits, &mut each)
    }

    /// Every counter, the skipped runs included (a file read per program: not for each poll).
    pub fn stats(&self) -> ProbeStats {
        ProbeStats {
            events_lost: self.counter(stats::EVENTS_LOST),
            track_failed: self.counter(stats::TRACK_FAILED),
            connects_seen: self.counter(stats::CONNECTS_SEEN),
            exits_lost: self.counter(stats::EXITS_LOST),
            runs_skipped: self.runs_skipped(),
        }
    }

    /// Connection records lost so far (ring buffer full): cheap enough for every poll.
    pub fn events_lost(&self) -> u64 {
        self.counter(stats::EVENTS_LOST)
    }

    /// A `PROBE_STATS` counter summed over CPUs.
    fn counter(&self, index: u32) -> u64 {
        let map = self.ebpf.map("PROBE_STATS").expect("map in object");
        PerCpuArray::<_, u64>::try_from(map)
            .and_then(|map| map.get(&index, 0))
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// `recursion_misses` of every loaded program, from the fdinfo of its fd (aya 0.14's
    /// program info does not carry it).
    fn runs_skipped(&self) -> u64 {
        use std::os::fd::{AsFd, AsRawFd};
        self.ebpf
            .programs()
            .filter_map(|(_, program)| program.fd().ok())
            .filter_map(|fd| {
                let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
                let info = std::fs::read_to_string(path).ok()?;
                info.lines()
                    .find_map(|l| l.strip_prefix("recursion_misses:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .sum()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (the test suite runs as root under `cargo xtask test`).
    #[test]
    fn forgotten_pids_are_watched_again_and_a_full_map_is_not_fatal() {
        let mut probes = Probes::load().expect("probes load as root");
        let me = std::process::id();
        assert_eq!(probes.set_watched_pids(&BTreeSet::from([me])).unwrap(), 0);
        // What the probe does when a watched process exits (or its record is lost).
        let map = probes.ebpf.map_mut("WATCHED_PIDS").unwrap();
        let mut map: HashMap<_, u32, u8> = HashMap::try_from(map).unwrap();
        map.remove(&me).unwrap();
        assert!(map.get(&me, 0).is_err());
        // The same pid owns an upstream again (pid recycled): it is put back.
        assert_eq!(probes.set_watched_pids(&BTreeSet::from([me])).unwrap(), 0);
        let map = probes.ebpf.map("WATCHED_PIDS").unwrap();
        let map: HashMap<_, u32, u8> = HashMap::try_from(map).unwrap();
        assert_eq!(map.get(&me, 0).unwrap(), 1);
        // More pids than the map holds: the rest are counted, not an error.
        let many: BTreeSet<u32> = (1..=vigil_agent_ebpf::exit::MAX_WATCHED_PIDS + 10).collect();
        let unwatched = probes.set_watched_pids(&many).unwrap();
        assert_eq!(unwatched, 10);
    }
}
