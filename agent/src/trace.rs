//! `vigil-agent trace`: one JSON object per finished upstream connection on stdout,
//! tcpconnlat-style, for humans and scripts.
use std::{
    collections::BTreeSet,
    io::Write,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use crate::{clock::MonotonicClock, probes::Probes, tracker::ConnectionRecord};

/// How often the ring buffer is drained: the probes never wake us per event.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

pub async fn run(ports: BTreeSet<u16>, duration: Option<Duration>) -> anyhow::Result<()> {
    let mut probes = Probes::load()?;
    probes.set_watched_ports(&ports)?;
    let clock = MonotonicClock::now();
    info!(
        ports = ports.len(),
        "tracing connects to watched ports; one JSON line per connection"
    );
    // Tells scripts the probes are live before they start traffic.
    eprintln!("vigil-agent trace: ready");
    let deadline = duration.map(|d| Instant::now() + d);
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    let mut stdout = std::io::stdout().lock();
    let mut lost_reported = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown_signal() => break,
        }
        probes.drain_connections(|ev| {
            let record = ConnectionRecord::from_event(&ev, &clock);
            if let Ok(line) = serde_json::to_string(&record) {
                let _ = writeln!(stdout, "{line}");
            }
        });
        stdout.flush()?;
        let stats = probes.stats();
        if stats.events_lost > lost_reported {
            warn!(
                lost = stats.events_lost - lost_reported,
                "ring buffer full: events lost"
            );
            lost_reported = stats.events_lost;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    // Connections that closed while we were stopping.
    probes.drain_connections(|ev| {
        if let Ok(line) = serde_json::to_string(&ConnectionRecord::from_event(&ev, &clock)) {
            let _ = writeln!(stdout, "{line}");
        }
    });
    stdout.flush()?;
    let stats = probes.stats();
    info!(
        connects_seen = stats.connects_seen,
        events_lost = stats.events_lost,
        "trace done"
    );
    Ok(())
}

pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
