//! Exponential backoff with jitter for both delivery paths (agent → collector, collector →
//! Loki): half of each wait fixed, half random, so a retry never spins and many agents never
//! retry in lockstep. xorshift: no RNG dependency for a sleep length.
use std::time::Duration;

pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    seed: u64,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        // The pid alone would be 1 in every container: mix in the clock too.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = (u64::from(std::process::id()) << 32 ^ nanos) | 1;
        Backoff {
            base,
            cap,
            attempt: 0,
            seed,
        }
    }

    /// The next wait: within [ceiling/2, ceiling], ceiling = base·2^attempt capped at `cap`.
    pub fn next_wait(&mut self) -> Duration {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let ceiling = (self.base * 2u32.saturating_pow(self.attempt.min(20))).min(self.cap);
        self.attempt += 1;
        ceiling / 2 + ceiling.mul_f64((self.seed % 1000) as f64 / 2000.0)
    }

    /// True while retries are under way (since the last `reset`).
    pub fn failing(&self) -> bool {
        self.attempt > 0
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn grows_with_jitter_up_to_the_cap() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(30));
        let mut b = Backoff::new(base, cap);
        assert!(!b.failing());
        let first = b.next_wait();
        assert!(first >= base / 2 && first <= base, "{first:?}");
        assert!(b.failing());
        let late: Vec<Duration> = (0..30).map(|_| b.next_wait()).skip(20).collect();
        assert!(late.iter().all(|d| *d >= cap / 2 && *d <= cap), "{late:?}");
        b.reset();
        assert!(b.next_wait() <= base);
    }
}
