//! Healthy connections counted per (client, upstream) over a batch instead of sent one by
//! one: at thousands of connects a second they are most of the traffic and say nothing a
//! count and two histograms do not. Everything else still travels alone, for the diagnosis
//! and Loki: failed connects, resets, silent closes, SYN retransmits, slow connects or
//! answers, and connections that sent a request and got no byte back.
use std::{collections::HashMap, net::SocketAddr};

use vigil_wire::{
    self as wire,
    buckets::{BucketCounts, CONNECT_BUCKETS, FIRST_BYTE_BUCKETS},
    ConnectResult,
};

use super::micros;
use crate::probes::connection::ConnectionRecord;

/// A connect or first byte this slow travels alone: far above a healthy upstream's, far
/// below nginx's timeouts (60 s by default), so what nears a timeout is there to see.
pub const SLOW_MS: f64 = 1000.0;
/// (client, upstream) pairs summarised per batch; a connection of another pair travels
/// alone. Keeps a batch's summaries (and their bucket counts) far within the collector's
/// item limit whatever the ports and clients.
pub const MAX_KEYS: usize = 1024;

/// Healthy: connected without SYN retransmit, neither reset nor silently closed, and
/// either answered or closed without sending a request (a TCP check), all within `SLOW_MS`.
pub fn healthy(r: &ConnectionRecord) -> bool {
    let answered_in_time = match r.first_byte_ms {
        Some(ms) => ms < SLOW_MS,
        None => r.bytes_sent == 0,
    };
    r.result == ConnectResult::Ok
        && !r.reset
        && !r.silent_close
        && r.syn_retransmits == 0
        && r.connect_ms < SLOW_MS
        && answered_in_time
}

#[derive(Default)]
struct Tally {
    count: u64,
    connect: BucketCounts,
    first_byte: BucketCounts,
    first_end_ns: i64,
    last_end_ns: i64,
}

impl Tally {
    /// Values in whole microseconds, as a record sent alone carries them.
    fn add(&mut self, r: &ConnectionRecord) {
        let end_ns = r.unix_ns as i64 + micros(r.duration_ms) as i64 * 1000;
        if self.count == 0 || end_ns < self.first_end_ns {
            self.first_end_ns = end_ns;
        }
        self.last_end_ns = self.last_end_ns.max(end_ns);
        self.count += 1;
        self.connect.add(CONNECT_BUCKETS, micros(r.connect_ms));
        if let Some(ms) = r.first_byte_ms {
            self.first_byte.add(FIRST_BYTE_BUCKETS, micros(ms));
        }
    }
}

/// The summaries of the batch being filled.
#[derive(Default)]
pub struct Summaries {
    /// Per destination, per client name (a handful: nginx's workers share one).
    by_dst: HashMap<SocketAddr, Vec<(String, Tally)>>,
    keys: usize,
}

impl Summaries {
    /// Counts `r` when it is healthy and its pair has room; hands it back otherwise.
    pub fn add(&mut self, r: ConnectionRecord) -> Option<ConnectionRecord> {
        if !healthy(&r) {
            return Some(r);
        }
        let clients = self.by_dst.entry(r.dst).or_default();
        if let Some((_, tally)) = clients.iter_mut().find(|(comm, _)| *comm == r.comm) {
            tally.add(&r);
            return None;
        }
        if self.keys >= MAX_KEYS {
            return Some(r);
        }
        let mut tally = Tally::default();
        tally.add(&r);
        clients.push((r.comm, tally));
        self.keys += 1;
        None
    }

    /// Pairs summarised so far.
    pub fn len(&self) -> usize {
        self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// The summaries so far, as sent; starts over.
    pub fn take(&mut self) -> Vec<wire::ConnectionSummary> {
        let mut out = Vec::with_capacity(self.keys);
        for (dst, clients) in self.by_dst.drain() {
            let dst = dst.to_string();
            for (comm, t) in clients {
                out.push(wire::ConnectionSummary {
                    comm,
                    dst: dst.clone(),
                    result: ConnectResult::Ok as i32,
                    count: t.count,
                    connect_us_buckets: t.connect.counts,
                    connect_us_sum: t.connect.sum_us,
                    first_byte_us_buckets: t.first_byte.counts,
                    first_byte_us_sum: t.first_byte.sum_us,
                    first_end_unix_ns: t.first_end_ns,
                    last_end_unix_ns: t.last_end_ns,
                });
            }
        }
        self.keys = 0;
        out
    }
}

#[cfg(test)]
#[path = "summary_tests.rs"]
mod tests;
