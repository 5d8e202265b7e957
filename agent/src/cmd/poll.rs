//! The agent commands' main loop rhythm: drain the probes every 100 ms (they never wake us
//! per event), sample every `--interval`, stop on Ctrl-C or SIGTERM.
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};

/// How often the ring buffers and logs are drained.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

pub enum Tick {
    /// Drain the probes and logs.
    Poll,
    /// Drain, and take a sample: the first tick, then every `sample_every`.
    Sample,
    /// Ctrl-C or SIGTERM: finish up.
    Stop,
}

pub struct PollLoop {
    interval: tokio::time::Interval,
    /// Registered once, up front: a SIGTERM that arrives while the loop is busy is kept.
    terminate: Signal,
    interrupt: Signal,
    /// None: every tick is a plain poll.
    sample_every: Option<Duration>,
    next_sample: Instant,
}

impl PollLoop {
    pub fn new(sample_every: Option<Duration>) -> std::io::Result<Self> {
        Ok(PollLoop {
            interval: tokio::time::interval(POLL_INTERVAL),
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            sample_every,
            next_sample: Instant::now(),
        })
    }

    pub async fn next(&mut self) -> Tick {
        tokio::select! {
            _ = self.interval.tick() => {}
            _ = self.terminate.recv() => return Tick::Stop,
            _ = self.interrupt.recv() => return Tick::Stop,
        }
        match self.sample_every {
            Some(every) if Instant::now() >= self.next_sample => {
                self.next_sample += every;
                Tick::Sample
            }
            _ => Tick::Poll,
        }
    }
}
