//! `vigil-agent trace`: one JSON object per finished upstream connection on stdout,
//! tcpconnlat-style, for humans and scripts.
use std::{
    collections::BTreeSet,
    io::{BufWriter, Write},
    time::{Duration, Instant},
};

use tracing::{info, warn};

use crate::{
    clock::MonotonicClock,
    poll::{PollLoop, Tick},
    probes::Probes,
    tracker::ConnectionRecord,
};

pub async fn run(ports: BTreeSet<u16>, duration: Option<Duration>) -> anyhow::Result<()> {
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
    // One write per poll, not one per record.
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut lost_reported = 0;
    loop {
        let stopping = matches!(ticks.next().await, Tick::Stop)
            || deadline.is_some_and(|d| Instant::now() >= d);
        print_connections(&mut probes, &clock, &mut out)?;
        if stopping {
            break;
        }
        let lost = probes.stats().events_lost;
        if lost > lost_reported {
            warn!(lost = lost - lost_reported, "ring buffer full: events lost");
            lost_reported = lost;
        }
    }
    let stats = probes.stats();
    info!(
        connects_seen = stats.connects_seen,
        events_lost = stats.events_lost,
        "trace done"
    );
    Ok(())
}

fn print_connections(
    probes: &mut Probes,
    clock: &MonotonicClock,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let mut result = Ok(());
    probes.drain_connections(|ev| {
        if result.is_ok() {
            result = serde_json::to_writer(&mut *out, &ConnectionRecord::from_event(&ev, clock))
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
        }
    });
    result?;
    out.flush()
}
