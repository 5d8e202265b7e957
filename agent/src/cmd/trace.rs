//! `vigil-agent trace`: one JSON object per finished upstream connection on stdout,
//! tcpconnlat-style, for humans and scripts.
use std::{
    collections::BTreeSet,
    io::Write,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{
    parse_duration, parse_ports,
    poll::{PollLoop, Tick},
};
use crate::{
    clock::MonotonicClock,
    probes::{connection::ConnectionRecord, Probes},
};

#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    /// Destination ports to watch, e.g. `8080-8099,9000`.
    #[arg(long, env = "VIGIL_PORTS", value_parser = parse_ports)]
    pub ports: BTreeSet<u16>,
    /// Stop after this long (`30s`, `500ms`, `2m`); default: until Ctrl-C.
    #[arg(long, env = "VIGIL_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

pub async fn run(TraceArgs { ports, duration }: TraceArgs) -> anyhow::Result<()> {
    let mut probes = Probes::load()?;
    probes.set_watched_ports(&ports)?;
    let clock = MonotonicClock::now();
    info!(
        ports = ports.len(),
        "tracing connects to watched ports; one JSON line per connection"
    );
    let mut ticks = PollLoop::new(None)?;
    // Tells scripts the probes are live before they start traffic.
    eprintln!("vigil-agent trace: ready");
    let deadline = duration.map(|d| Instant::now() + d);
    // One write per poll, not one per record, from a buffer kept across polls.
    let mut out = std::io::stdout().lock();
    let mut lines = Vec::with_capacity(64 << 10);
    let mut lost_reported = 0;
    loop {
        let stopping = matches!(ticks.next().await, Tick::Stop)
            || deadline.is_some_and(|d| Instant::now() >= d);
        print_connections(&mut probes, &clock, &mut lines, &mut out)?;
        if stopping {
            break;
        }
        let lost = probes.events_lost();
        if lost > lost_reported {
            warn!(lost = lost - lost_reported, "ring buffer full: events lost");
            lost_reported = lost;
        }
    }
    let stats = probes.stats();
    info!(
        connects_seen = stats.connects_seen,
        events_lost = stats.events_lost,
        track_failed = stats.track_failed,
        runs_skipped = stats.runs_skipped,
        "trace done"
    );
    Ok(())
}

fn print_connections(
    probes: &mut Probes,
    clock: &MonotonicClock,
    lines: &mut Vec<u8>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    lines.clear();
    probes.drain_connections(|ev| {
        super::trace_line::write_line(&ConnectionRecord::from_event(&ev, clock), lines);
    });
    out.write_all(lines)?;
    out.flush()
}
