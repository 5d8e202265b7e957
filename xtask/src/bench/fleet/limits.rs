//! When adding agents stops: something was lost or failed, or one collector (or this
//! machine) is full. `busy` refusals alone do not stop it: agents retry them, and the
//! delivery latency shows what they cost.
use std::time::Duration;

use super::report::{cores, Step};

/// The request latency past which one collector is taken as full: well past what a batch
/// a second needs.
const DEGRADED_P99: Duration = Duration::from_millis(500);
/// A batch a second: past this, an agent's batches wait behind each other.
const DEGRADED_DELIVERY_P99: Duration = Duration::from_secs(1);
/// Prometheus' default `scrape_timeout`.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Step {
    /// Why adding agents should stop here, if it should.
    pub fn degraded(&self, first: Option<&Step>) -> Option<String> {
        self.failed().or_else(|| self.full(first))
    }

    /// Batches or lines lost, requests or scrapes failed.
    fn failed(&self) -> Option<String> {
        let r = self.retries();
        if self.lost() > 0 {
            Some(format!(
                "{} batches not answered 200 within {:?} after the window: the collector fell behind",
                self.lost(),
                super::DRAIN
            ))
        } else if !self.loki_lost().is_empty() {
            Some(format!("Loki lines lost: {}", self.loki_lost().join(", ")))
        } else if r.wal_full + r.other_status > 0 {
            Some("the collector failed requests (wal_full or another 5xx)".into())
        } else if !self.scrapes_failed.is_empty() {
            let failed = self.scrapes_failed.join("; ");
            Some(format!("/metrics scrapes failed: {failed}"))
        } else {
            None
        }
    }

    /// Latency past the bounds, a scrape past Prometheus' timeout, the machine saturated.
    fn full(&self, first: Option<&Step>) -> Option<String> {
        let (_, p99, _) = self.request_ms();
        let (_, delivery_p99, _) = self.delivery_ms();
        let busy_cpu = cores(
            self.after.machine_busy - self.before.machine_busy,
            self.wall(),
        );
        if p99 > ms(DEGRADED_P99) {
            Some(format!(
                "p99 ingest latency {p99:.0} ms, over {DEGRADED_P99:?}"
            ))
        } else if delivery_p99 > ms(DEGRADED_DELIVERY_P99) {
            Some(format!(
                "p99 from due to 200 {delivery_p99:.0} ms, over {DEGRADED_DELIVERY_P99:?}: batches queue up"
            ))
        } else if let Some(slow) = self.scrapes.iter().find(|s| s.took > SCRAPE_TIMEOUT) {
            Some(format!(
                "a /metrics scrape took {:?}, over Prometheus' default scrape_timeout ({SCRAPE_TIMEOUT:?})",
                slow.took
            ))
        } else if busy_cpu > 1.9 {
            Some(format!(
                "the machine is saturated ({busy_cpu:.2} of 2 cores busy): more agents would measure contention"
            ))
        } else if first.is_some_and(|f| p99 > 4.0 * f.request_ms().1.max(5.0)) {
            Some(format!(
                "p99 ingest latency {p99:.0} ms, 4× the first step's"
            ))
        } else {
            None
        }
    }
}
