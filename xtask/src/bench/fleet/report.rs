//! One fleet size's figures, the checks on them (nothing lost, the collector's counts
//! agree), when to stop adding agents, and the summary table.
use std::{path::PathBuf, time::Duration};

use super::{
    agents::{AgentStats, Retries},
    collector::{samples, value},
};
use crate::bench::stats::{percentile, verdict};

/// CPU counters at one instant.
pub struct Usage {
    pub at: std::time::Instant,
    pub collector: Duration,
    /// The collector's threads: id → (name, CPU).
    pub threads: std::collections::HashMap<u32, (String, Duration)>,
    /// This process: the agents, the Loki stand-in, the scraper.
    pub bench: Duration,
    pub sink: Duration,
    /// Every CPU of the machine, busy (not idle or iowait).
    pub machine_busy: Duration,
}

/// One /metrics scrape of the window.
pub struct Scraped {
    pub ended: std::time::Instant,
    pub took: Duration,
    pub bytes: usize,
    pub series: usize,
}

pub struct Step {
    pub agents: usize,
    pub window: Duration,
    pub stats: Vec<AgentStats>,
    pub before: Usage,
    pub after: Usage,
    /// The collector's RSS, each second of the window.
    pub rss: Vec<u64>,
    pub hwm: u64,
    pub scrapes: Vec<Scraped>,
    /// Why scrapes of the window failed (a failed scrape is a finding, not a skip).
    pub scrapes_failed: Vec<String>,
    /// The last /metrics, after every batch was delivered and Loki caught up.
    pub metrics: String,
    pub loki_pushes: u64,
    pub loki_bytes: u64,
    pub log: PathBuf,
    pub exit: Option<String>,
}

pub(super) fn cores(d: Duration, wall: Duration) -> f64 {
    d.as_secs_f64() / wall.as_secs_f64()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// p50, p99 and max of microsecond samples, in milliseconds.
fn spread(samples: impl Iterator<Item = u32>) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = samples.map(|us| f64::from(us) / 1000.0).collect();
    if ms.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let max = ms.iter().copied().fold(0.0, f64::max);
    (percentile(&mut ms, 0.5), percentile(&mut ms, 0.99), max)
}

impl Step {
    fn sum(&self, f: impl Fn(&AgentStats) -> u64) -> u64 {
        self.stats.iter().map(f).sum()
    }

    pub fn lost(&self) -> u64 {
        self.sum(|s| s.lost)
    }

    pub(super) fn retries(&self) -> Retries {
        let mut all = Retries::default();
        for r in self.stats.iter().map(|s| s.retries) {
            all.busy += r.busy;
            all.wal_full += r.wal_full;
            all.other_status += r.other_status;
            all.connection += r.connection;
        }
        all
    }

    pub(super) fn wall(&self) -> Duration {
        self.after.at - self.before.at
    }

    pub fn collector_cores(&self) -> f64 {
        cores(self.after.collector - self.before.collector, self.wall())
    }

    pub(super) fn request_ms(&self) -> (f64, f64, f64) {
        spread(self.stats.iter().flat_map(|s| s.request_us.iter().copied()))
    }

    fn rss_median(&self) -> u64 {
        let mut rss = self.rss.clone();
        rss.sort_unstable();
        rss.get(rss.len() / 2).copied().unwrap_or(0)
    }

    /// The collector's CPU over the window per named thread; the tokio runtime (ingest,
    /// decode on the blocking pool, /metrics) is the rest.
    fn by_thread(&self) -> Vec<String> {
        let mut named: std::collections::BTreeMap<&str, Duration> = Default::default();
        for (tid, (name, after)) in &self.after.threads {
            let before = self.before.threads.get(tid).map_or(Duration::ZERO, |t| t.1);
            if !name.starts_with("tokio") {
                *named.entry(name).or_default() += after.saturating_sub(before);
            }
        }
        let total = self.after.collector - self.before.collector;
        let rest = total.saturating_sub(named.values().sum());
        let wall = self.wall();
        let mut out: Vec<String> = named
            .into_iter()
            .filter(|(_, cpu)| !cpu.is_zero())
            .map(|(name, cpu)| format!("{name} {:.0} m", cores(cpu, wall) * 1000.0))
            .collect();
        out.push(format!(
            "tokio runtime (ingest, decode, /metrics) {:.0} m",
            cores(rest, wall) * 1000.0
        ));
        out
    }

    pub(super) fn delivery_ms(&self) -> (f64, f64, f64) {
        spread(
            self.stats
                .iter()
                .flat_map(|s| s.delivery_us.iter().copied()),
        )
    }

    pub fn print(&self) {
        let wall = self.wall();
        let sealed = self.sum(|s| s.sealed);
        let (accepted, duplicate) = (self.sum(|s| s.accepted), self.sum(|s| s.duplicate));
        let lost = self.lost();
        let r = self.retries();
        println!(
            "  batches: {sealed} sealed ({:.0}/s over the run), {} answered 200 ({accepted} accepted, {duplicate} duplicate), {lost} lost — nothing lost: {}",
            sealed as f64 / (self.window + super::WARMUP).as_secs_f64(),
            accepted + duplicate,
            verdict(lost == 0 && accepted + duplicate == sealed)
        );
        let run = (self.window + super::WARMUP).as_secs_f64();
        let (records, bytes) = (self.sum(|s| s.records), self.sum(|s| s.body_bytes));
        println!(
            "  records {records} ({:.0}/s), Loki lines in them {}; bodies {:.1} MiB/s, {:.1} KiB each on average",
            records as f64 / run,
            self.sum(|s| s.loki_lines),
            mib(bytes) / run,
            bytes as f64 / 1024.0 / (accepted + duplicate).max(1) as f64
        );
        println!(
            "  retries: busy {} wal_full {} other status {} connection {}; reconnects {}",
            r.busy,
            r.wal_full,
            r.other_status,
            r.connection,
            self.sum(|s| s.reconnects)
        );
        if let Some(refusal) = self.stats.iter().find_map(|s| s.refusal.as_ref()) {
            println!("  a batch was refused: {refusal}");
        }
        let (p50, p99, max) = self.request_ms();
        let (d50, d99, dmax) = self.delivery_ms();
        println!(
            "  ingest request (agent side): p50 {p50:.2} ms  p99 {p99:.2} ms  max {max:.1} ms"
        );
        println!(
            "  due → 200 (retries included): p50 {d50:.2} ms  p99 {d99:.2} ms  max {dmax:.1} ms"
        );
        self.print_costs(wall);
        self.print_counters(accepted, duplicate);
    }

    fn print_costs(&self, wall: Duration) {
        let collector = self.collector_cores();
        let sink = cores(self.after.sink - self.before.sink, wall);
        let bench = cores(self.after.bench - self.before.bench, wall);
        let machine = cores(self.after.machine_busy - self.before.machine_busy, wall);
        println!(
            "  collector CPU: {:.0} millicores = {:.0} millicores per 1,000 agents",
            collector * 1000.0,
            collector * 1000.0 * 1000.0 / self.agents as f64
        );
        println!("  collector CPU by thread: {}", self.by_thread().join(", "));
        println!(
            "  collector memory: RSS median {:.0} MiB, max {:.0} MiB over the window; VmHWM {:.0} MiB",
            mib(self.rss_median()),
            mib(self.rss.iter().copied().max().unwrap_or(0)),
            mib(self.hwm)
        );
        println!(
            "  the bench on the same cores: agents {:.0} millicores, Loki stand-in {:.0} millicores; machine {:.2} of 2 cores busy (other work {:.0} millicores)",
            (bench - sink) * 1000.0,
            sink * 1000.0,
            machine,
            (machine - bench - collector).max(0.0) * 1000.0
        );
        if let Some(last) = self.scrapes.last() {
            let mut took: Vec<f64> = self
                .scrapes
                .iter()
                .map(|s| s.took.as_secs_f64() * 1e3)
                .collect();
            let max = took.iter().copied().fold(0.0, f64::max);
            println!(
                "  /metrics every 15 s: {} series, {:.1} MiB, scrape p50 {:.0} ms max {max:.0} ms ({} scrapes)",
                last.series,
                mib(last.bytes as u64),
                percentile(&mut took, 0.5),
                took.len()
            );
        }
        if !self.scrapes_failed.is_empty() {
            println!(
                "  /metrics scrapes FAILED: {}",
                self.scrapes_failed.join("; ")
            );
        }
        self.print_busy();
        println!(
            "  Loki stand-in: {} pushes, {:.1} MiB compressed ({:.1} MiB/s)",
            self.loki_pushes,
            mib(self.loki_bytes),
            mib(self.loki_bytes) / (self.window + super::WARMUP).as_secs_f64()
        );
    }

    /// When the `busy` refusals of the window came, in bursts (gaps over 250 ms), next to
    /// when the scrapes ran: what held the ingest slots.
    fn print_busy(&self) {
        let mut busy: Vec<std::time::Instant> = self
            .stats
            .iter()
            .flat_map(|s| s.busy_at.iter().copied())
            .collect();
        if busy.is_empty() {
            return;
        }
        busy.sort_unstable();
        let at = |t: std::time::Instant| t.saturating_duration_since(self.before.at).as_secs_f64();
        let mut bursts: Vec<(f64, usize)> = Vec::new();
        for pair in std::iter::once(None).chain(busy.windows(2).map(Some)) {
            match pair {
                Some([a, b]) if *b - *a <= Duration::from_millis(250) => {
                    bursts.last_mut().expect("a burst").1 += 1;
                }
                Some([_, b]) => bursts.push((at(*b), 1)),
                _ => bursts.push((at(busy[0]), 1)),
            }
        }
        let shown: Vec<String> = bursts
            .iter()
            .take(16)
            .map(|(t, n)| format!("+{t:.1} s ×{n}"))
            .collect();
        let scrapes: Vec<String> = self
            .scrapes
            .iter()
            .map(|s| format!("+{:.1}–{:.1} s", at(s.ended - s.took), at(s.ended)))
            .collect();
        println!(
            "  busy (503) in the window: {} in {} bursts: {}{}; scrapes ran {}",
            busy.len(),
            bursts.len(),
            shown.join(", "),
            if bursts.len() > 16 { ", …" } else { "" },
            scrapes.join(", ")
        );
    }

    /// The collector's counts of lines Loki never got (dropped at a bound, refused).
    pub(super) fn loki_lost(&self) -> Vec<String> {
        [
            "vigil_loki_lines_dropped_total",
            "vigil_loki_lines_failed_total",
        ]
        .iter()
        .flat_map(|f| {
            samples(&self.metrics, f)
                .into_iter()
                .map(move |(l, v)| format!("{f}{l} {v}"))
        })
        .collect()
    }

    /// Whether every batch got its 200 and every line of them reached Loki.
    pub fn nothing_lost(&self) -> bool {
        self.lost() == 0 && self.loki_lost().is_empty()
    }

    /// The collector's own counts, after the drain, against what the agents saw.
    fn print_counters(&self, accepted: u64, duplicate: u64) {
        let m = &self.metrics;
        let results: Vec<String> = samples(m, "vigil_ingest_batches_total")
            .iter()
            .map(|(labels, v)| format!("{labels} {v}"))
            .collect();
        println!("  vigil_ingest_batches_total: {}", results.join(", "));
        let counted = value(m, "vigil_ingest_batches_total", "result=\"accepted\"").unwrap_or(-1.0);
        println!(
            "  collector counted each batch once (accepted {counted} = agents' accepted {accepted}, {duplicate} duplicates): {}",
            verdict(counted as u64 == accepted)
        );
        let lines = self.sum(|s| s.loki_lines);
        let sent = value(m, "vigil_loki_lines_sent_total", "").unwrap_or(-1.0);
        let lost_lines = self.loki_lost();
        println!(
            "  Loki acknowledged {sent} lines for the {lines} the batches carried (+{} alert lines){}: {}",
            sent - lines as f64,
            if lost_lines.is_empty() { String::new() } else { format!("; {}", lost_lines.join(", ")) },
            verdict(sent >= lines as f64 && lost_lines.is_empty())
        );
        // + 0.0: an empty f64 sum is -0.
        let firing = samples(m, "vigil_alerts_firing")
            .iter()
            .map(|(_, v)| v)
            .sum::<f64>()
            + 0.0;
        println!(
            "  alerts firing at the end: {firing}; collector exited: {} (log {})\n",
            self.exit.as_deref().unwrap_or("not within 20 s"),
            self.log.display()
        );
    }
}

pub fn summary(steps: &[Step]) {
    println!("| agents | collector CPU | per 1,000 agents | RSS median / HWM | ingest p50 / p99 | due → 200 p99 | busy 503 | lost | bench CPU | machine busy |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for s in steps {
        let wall = s.wall();
        let (p50, p99, _) = s.request_ms();
        println!(
            "| {} | {:.2} cores | {:.0} m | {:.0} / {:.0} MiB | {p50:.1} / {p99:.1} ms | {:.0} ms | {} | {} | {:.2} cores | {:.2} of 2 |",
            s.agents,
            s.collector_cores(),
            s.collector_cores() * 1e6 / s.agents as f64,
            mib(s.rss_median()),
            mib(s.hwm),
            s.delivery_ms().1,
            s.retries().busy,
            s.lost(),
            cores(s.after.bench - s.before.bench, wall),
            cores(s.after.machine_busy - s.before.machine_busy, wall),
        );
    }
}
