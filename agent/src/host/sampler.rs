//! Per-process CPU and memory from /proc/PID/stat: CPU ratio is the utime+stime delta over
//! the wall time between two samples (1.0 = one core busy), keyed by (pid, starttime) so a
//! reused pid never inherits another process's history.
use std::{collections::HashMap, path::Path, time::Instant};

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
}

#[derive(Default)]
pub struct ProcSampler {
    previous: HashMap<u32, (u64, u64, Instant)>,
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
            samples.push(ProcessSample {
                pid,
                comm: stat.comm.clone(),
                state: stat.state,
                cpu_ratio,
                rss_bytes: stat.rss_pages * page,
                threads: stat.num_threads,
            });
        }
        self.previous = seen;
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
