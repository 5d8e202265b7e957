//! Per-process CPU and memory from /proc/PID/stat: CPU ratio is the utime+stime delta over
//! the wall time between two samples (1.0 = one core busy), keyed by (pid, starttime) so a
//! reused pid never inherits another process's history. With it, the CPU the process can get
//! (`cpu_cores_available`): saturation is judged against that, not against one core.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Instant,
};

use serde::Serialize;

use super::proc_files::ProcStat;

#[derive(Debug, Clone, Serialize)]
pub struct ProcessSample {
    pub pid: u32,
    pub comm: String,
    /// R running, S sleeping, D disk wait, Z zombie, ...
    pub state: char,
    /// Share of one core over the last interval; null on a process's first sample.
    pub cpu_ratio: Option<f64>,
    pub rss_bytes: u64,
    pub threads: i64,
    /// Cores this process can use: the tightest cgroup v2 `cpu.max` on its cgroup path,
    /// within the CPUs it may run on (its affinity, else the node's online CPUs).
    pub cpu_cores_available: Option<f64>,
}

pub struct ProcSampler {
    previous: HashMap<u32, (u64, u64, Instant)>,
    /// Where the cgroup v2 hierarchy is mounted.
    cgroup_root: PathBuf,
}

impl Default for ProcSampler {
    fn default() -> Self {
        ProcSampler {
            previous: HashMap::new(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

impl ProcSampler {
    /// Sample `pids`; processes that are gone are skipped.
    pub fn sample(&mut self, pids: &[u32]) -> Vec<ProcessSample> {
        // SAFETY: sysconf has no preconditions.
        let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        let proc_root = Path::new("/proc");
        let now = Instant::now();
        let mut seen = HashMap::new();
        let mut samples = Vec::new();
        for &pid in pids {
            let Some(stat) = ProcStat::read(&proc_root.join(pid.to_string())) else {
                continue;
            };
            let ticks = stat.utime + stat.stime;
            let cpu_ratio = match self.previous.get(&pid) {
                Some(&(start, prev_ticks, at)) if start == stat.starttime => {
                    let wall = now.duration_since(at).as_secs_f64();
                    (wall > 0.0)
                        .then(|| ticks.saturating_sub(prev_ticks) as f64 / ticks_per_sec / wall)
                }
                _ => None,
            };
            seen.insert(pid, (stat.starttime, ticks, now));
            let cpu_cores_available =
                cores_available(pid, &proc_root.join(pid.to_string()), &self.cgroup_root);
            samples.push(ProcessSample {
                pid,
                comm: stat.comm.clone(),
                state: stat.state,
                cpu_ratio,
                rss_bytes: stat.rss_pages * page,
                threads: stat.num_threads,
                cpu_cores_available,
            });
        }
        self.previous = seen;
        samples
    }
}

/// The cores `pid` can use: the CPUs it may run on (its affinity mask, which a cpuset
/// narrows; else the node's online CPUs), capped by the tightest `cpu.max` quota on its
/// cgroup path. None when neither can be read.
fn cores_available(pid: u32, proc_dir: &Path, cgroup_root: &Path) -> Option<f64> {
    let cpus = affinity_cpus(pid).or_else(online_cpus);
    let quota = std::fs::read_to_string(proc_dir.join("cgroup"))
        .ok()
        .and_then(|text| cgroup_v2_path(&text).map(str::to_owned))
        .and_then(|path| cpu_max_cores(cgroup_root, &path));
    match (cpus, quota) {
        (Some(c), Some(q)) => Some(c.min(q)),
        (c, q) => c.or(q),
    }
}

/// The unified hierarchy's path from /proc/PID/cgroup (`0::/system.slice/app.service`).
/// A path outside our cgroup namespace (it starts with `/..`) cannot be followed.
pub fn cgroup_v2_path(proc_cgroup: &str) -> Option<&str> {
    let path = proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?;
    (path.starts_with('/') && !path.split('/').any(|part| part == "..")).then_some(path)
}

/// The tightest `cpu.max` (quota / period, in cores) on `path` and every parent below
/// `root`; None when none sets a quota (`max`) or the files are not there.
pub fn cpu_max_cores(root: &Path, path: &str) -> Option<f64> {
    let mut dir = root.join(path.trim_start_matches('/'));
    let mut tightest: Option<f64> = None;
    while dir.starts_with(root) && dir != root {
        if let Some(cores) = std::fs::read_to_string(dir.join("cpu.max"))
            .ok()
            .and_then(|text| parse_cpu_max(&text))
        {
            tightest = Some(tightest.map_or(cores, |t| t.min(cores)));
        }
        if !dir.pop() {
            break;
        }
    }
    tightest
}

/// `200000 100000` → 2.0 cores; `max 100000` (no quota) → None.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota: f64 = fields.next()?.parse().ok()?;
    let period: f64 = fields.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

fn affinity_cpus(pid: u32) -> Option<f64> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: as above; `set` outlives the call.
    let rc = unsafe { libc::sched_getaffinity(pid as libc::pid_t, size, &mut set) };
    // SAFETY: `set` was filled by the kernel.
    let count = unsafe { libc::CPU_COUNT(&set) };
    (rc == 0 && count > 0).then_some(f64::from(count))
}

fn online_cpus() -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (n > 0).then_some(n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_cpu_max_on_the_path_wins() {
        let root = std::env::temp_dir().join(format!("vigil-cgroup-{}", std::process::id()));
        let leaf = root.join("system.slice/app.service");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(root.join("cpu.max"), "50000 100000\n").unwrap(); // the root: ignored
        std::fs::write(root.join("system.slice/cpu.max"), "150000 100000\n").unwrap();
        std::fs::write(leaf.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(cpu_max_cores(&root, "/system.slice/app.service"), Some(1.5));
        std::fs::write(leaf.join("cpu.max"), "50000 100000\n").unwrap();
        assert_eq!(cpu_max_cores(&root, "/system.slice/app.service"), Some(0.5));
        std::fs::write(root.join("system.slice/cpu.max"), "max 100000\n").unwrap();
        std::fs::write(leaf.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(
            cpu_max_cores(&root, "/system.slice/app.service"),
            None,
            "no quota"
        );
        assert_eq!(cpu_max_cores(&root, "/gone.slice/x.scope"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn only_the_unified_hierarchy_inside_our_namespace_is_followed() {
        let hybrid = "12:cpu,cpuacct:/user.slice\n0::/user.slice/session-1.scope\n";
        assert_eq!(cgroup_v2_path(hybrid), Some("/user.slice/session-1.scope"));
        assert_eq!(cgroup_v2_path("0::/../../kubepods.slice/pod1\n"), None);
        assert_eq!(
            cgroup_v2_path("3:cpu:/docker/abc\n"),
            None,
            "cgroup v1 only"
        );
    }

    #[test]
    fn this_process_gets_at_most_the_online_cpus() {
        let me = std::process::id();
        let cores = ProcSampler::default().sample(&[me])[0]
            .cpu_cores_available
            .expect("affinity or online CPUs are readable");
        assert!(cores > 0.0 && cores <= online_cpus().unwrap(), "{cores}");
    }

    #[test]
    fn a_busy_thread_shows_near_one_core() {
        let me = std::process::id();
        let mut sampler = ProcSampler::default();
        assert_eq!(
            sampler.sample(&[me])[0].cpu_ratio,
            None,
            "first sample has no ratio"
        );
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 300 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let s = &sampler.sample(&[me])[0];
        let ratio = s.cpu_ratio.expect("second sample has a ratio");
        assert!(ratio > 0.3, "busy loop measured at {ratio}");
        assert!(s.rss_bytes > 0 && s.threads >= 1);
        assert!(
            sampler.sample(&[u32::MAX]).is_empty(),
            "missing pid is skipped"
        );
    }
}
