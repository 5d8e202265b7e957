//! What the probes themselves cost, read from the kernel's own accounting rather than from
//! throughput: with `kernel.bpf_stats_enabled`, every program keeps its run count and the
//! nanoseconds spent in it (`run_cnt`, `run_time_ns` in the fdinfo of its fd). Per request
//! that is far less noisy than requests/s on a shared VM, and it says which program costs
//! what. Not counted: the tracepoint dispatch around each run, and the timing itself
//! (two clock reads a run while stats are on).
use std::{collections::BTreeMap, fs, path::Path};

use anyhow::Context;

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Stats are on while this lives; the previous setting comes back on drop.
struct StatsOn {
    previous: String,
}

impl StatsOn {
    fn enable() -> anyhow::Result<Self> {
        let previous = fs::read_to_string(SYSCTL).with_context(|| format!("reading {SYSCTL}"))?;
        fs::write(SYSCTL, "1").with_context(|| format!("enabling {SYSCTL}"))?;
        Ok(StatsOn { previous })
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        let _ = fs::write(SYSCTL, self.previous.trim());
    }
}

/// Runs and nanoseconds of one program.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ProgramCost {
    pub runs: u64,
    pub ns: u64,
}

/// The cost so far of every program process `pid` holds, by program name.
fn programs_of(pid: u32) -> anyhow::Result<BTreeMap<String, ProgramCost>> {
    let names = jited_names();
    let mut costs = BTreeMap::new();
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(info) = fs::read_to_string(entry?.path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let (Some(tag), Some(runs), Some(ns)) =
            (field("prog_tag"), field("run_cnt"), field("run_time_ns"))
        else {
            continue;
        };
        let name = names.get(tag).cloned().unwrap_or_else(|| tag.to_owned());
        let cost = costs.entry(name).or_insert(ProgramCost::default());
        cost.runs += runs.parse::<u64>()?;
        cost.ns += ns.parse::<u64>()?;
    }
    anyhow::ensure!(
        !costs.is_empty(),
        "process {pid} holds no eBPF program: the agent did not attach its probes"
    );
    Ok(costs)
}

/// Program names by tag, from the JIT's `bpf_prog_<tag>_<name>` symbols.
fn jited_names() -> BTreeMap<String, String> {
    let symbols = fs::read_to_string(Path::new("/proc/kallsyms")).unwrap_or_default();
    symbols
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.strip_prefix("bpf_prog_"))
        .filter_map(|s| {
            let (tag, name) = s.split_once('_')?;
            Some((tag.to_owned(), name.to_owned()))
        })
        .collect()
}

/// Runs `work` with stats on; returns its result and what process `pid`'s programs cost
/// meanwhile.
pub(super) fn during<T>(
    pid: u32,
    work: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, BTreeMap<String, ProgramCost>)> {
    let _stats = StatsOn::enable()?;
    let before = programs_of(pid)?;
    let result = work()?;
    let after = programs_of(pid)?;
    Ok((result, difference(&before, &after)))
}

/// What ran between two readings.
fn difference(
    before: &BTreeMap<String, ProgramCost>,
    after: &BTreeMap<String, ProgramCost>,
) -> BTreeMap<String, ProgramCost> {
    after
        .iter()
        .map(|(name, a)| {
            let b = before.get(name).copied().unwrap_or_default();
            let cost = ProgramCost {
                runs: a.runs - b.runs,
                ns: a.ns - b.ns,
            };
            (name.clone(), cost)
        })
        .filter(|(_, c)| c.runs > 0)
        .collect()
}

/// Prints runs and nanoseconds per `unit` (a request, a connect) for each program and in
/// all; returns the nanoseconds per unit.
pub(super) fn report(costs: &BTreeMap<String, ProgramCost>, units: f64, unit: &str) -> f64 {
    let total_runs: u64 = costs.values().map(|c| c.runs).sum();
    let total_ns: u64 = costs.values().map(|c| c.ns).sum();
    println!(
        "  probes' own time (bpf_stats): {:.2} µs per {unit} in {:.1} program runs ({:.0} ns a run)",
        total_ns as f64 / units / 1e3,
        total_runs as f64 / units,
        total_ns as f64 / total_runs.max(1) as f64
    );
    for (name, c) in costs {
        println!(
            "    {name:<26} {:>5.2} runs, {:>6.0} ns a run, {:>5.2} µs per {unit}",
            c.runs as f64 / units,
            c.ns as f64 / c.runs.max(1) as f64,
            c.ns as f64 / units / 1e3
        );
    }
    total_ns as f64 / units
}
