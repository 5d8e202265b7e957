//! Visitors: GETs through the demo's nginx with each site's `Host` header, at a steady pace,
//! and what came back. Once `arm`ed for a site, the send time of the first request that
//! failed (5xx or no answer) is kept: the start of an incident as users lived it.
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use crate::http;

/// Longer than nginx's timeouts: nginx always answers first.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Requests in flight per open-loop site; past it a visit is skipped (and counted).
const MAX_IN_FLIGHT: usize = 32;

pub struct Visits {
    pub host: &'static str,
    /// Time between two requests.
    pub every: Duration,
    /// Each request on its own thread, not waiting for the previous one (users do not wait
    /// for each other: a site that hangs gets requests piling up, as in production).
    pub open_loop: bool,
}

#[derive(Debug, Default, Clone)]
pub struct HostLog {
    /// `200`, `502`, `504`, `no answer`, `skipped` → count.
    pub answers: BTreeMap<String, u64>,
    armed: bool,
    /// Send time of the first failure that ended after `arm`.
    pub first_failure: Option<SystemTime>,
}

type Log = Arc<Mutex<BTreeMap<&'static str, HostLog>>>;

pub struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    log: Log,
}

impl Traffic {
    pub fn start(nginx_port: u16, sites: Vec<Visits>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let log: Log = Arc::default();
        let threads = sites
            .into_iter()
            .map(|site| {
                let (stop, log) = (stop.clone(), log.clone());
                std::thread::spawn(move || visit(nginx_port, site, &stop, &log))
            })
            .collect();
        Traffic { stop, threads, log }
    }

    /// From now on, keep the send time of `host`'s first failing request.
    pub fn arm(&self, host: &str) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = log.get_mut(host) {
            h.armed = true;
            h.first_failure = None;
        }
    }

    pub fn host(&self, host: &str) -> HostLog {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.get(host).cloned().unwrap_or_default()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn visit(port: u16, site: Visits, stop: &AtomicBool, log: &Log) {
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(site.host, HostLog::default());
    let in_flight = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        if !site.open_loop {
            request(port, site.host, log);
        } else if in_flight.load(Ordering::SeqCst) < MAX_IN_FLIGHT {
            in_flight.fetch_add(1, Ordering::SeqCst);
            let (log, in_flight, host) = (log.clone(), in_flight.clone(), site.host);
            // Detached: it ends within REQUEST_TIMEOUT and only touches the shared log.
            std::thread::spawn(move || {
                request(port, host, &log);
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        } else {
            record(log, site.host, "skipped", None);
        }
        std::thread::sleep(site.every);
    }
}

fn request(port: u16, host: &'static str, log: &Log) {
    let sent = SystemTime::now();
    let answer = match http::get(port, "/", host, REQUEST_TIMEOUT) {
        Ok(r) => r.status.to_string(),
        Err(_) => "no answer".to_owned(),
    };
    let failed = !answer.starts_with('2') && !answer.starts_with('3');
    record(log, host, &answer, failed.then_some(sent));
}

fn record(log: &Log, host: &str, answer: &str, failure_sent: Option<SystemTime>) {
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    let Some(h) = log.get_mut(host) else { return };
    *h.answers.entry(answer.to_owned()).or_default() += 1;
    if let (true, Some(sent)) = (h.armed, failure_sent) {
        h.first_failure = Some(h.first_failure.map_or(sent, |f| f.min(sent)));
    }
}
