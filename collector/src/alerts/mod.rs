//! Root-cause alerts for nginx's 502s and 504s.
//!
//! - `evidence` keeps, per node and upstream, what agents' batches said (failures and
//!   successes as runs in time, listener state, workers, nginx routes), in bounded memory;
//! - `view` is what a rule sees of one upstream; `rules` is the table of causes, each a
//!   family of failures plus a function that confirms it and says why (`wording`);
//! - `lifecycle` takes findings through pending → firing → resolved (`for`,
//!   `resolve_after`, repeats); `store` keeps active alerts across restarts;
//! - `publish` writes transitions to Loki and `vigil_alerts_firing`; `api` serves
//!   `GET /api/v1/alerts`; notifiers receive transitions through an [`AlertSink`].
//!
//! `state` is what sits behind the engine's lock. `AlertEngine::observe` runs on ingest: one
//! node's evidence, then that node's rules at its data time (which only moves with its
//! batches, so evaluating on ingest misses nothing). A thread runs every 500 ms for what
//! moves with our clock: repeats, nodes gone silent, forgetting, saving.
pub mod api;
pub mod config;
pub mod evidence;
pub mod lifecycle;
pub mod model;
pub mod publish;
pub mod rules;
mod state;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub mod view;
pub mod wording;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, RwLock,
    },
    thread::JoinHandle,
    time::Duration,
};

use metrics::counter;
use tracing::{info, warn};
use vigil_wire::Batch;

pub use config::{AlertsConfig, AlertsConfigError, AlertsFileConfig};
use evidence::{Dropped, Observe};
use lifecycle::{Book, Notice, Outgoing, Saved, Timing};
use model::Alert;
pub use state::NODE_SILENT_MS;
use state::{count_drops, drop_inputs, EngineState};
use store::{Store, StoreError};

use crate::loki::LokiSink;

/// Receives alert transitions: an alert that fires, one that resolves, and a still-firing
/// one again every `repeat_interval`. The alert carries its state; pending alerts are never
/// sent. Called on the engine's path (ingest or its timer) with no lock held, in the order
/// transitions happened: it must return at once (queue the alert, never do I/O inline).
pub trait AlertSink: Send + Sync {
    fn transition(&self, alert: &Alert);

    /// An alert already firing before a collector restart, handed once to a sink added
    /// after it: not a new transition (do not notify people again), but a notifier that
    /// keeps re-sending firing alerts (Alertmanager) needs it.
    fn restored(&self, _alert: &Alert) {}
}

/// Nodes with evidence at once; past it a new node's batches inform no alert (counted).
pub const MAX_NODES: usize = 4096;
/// Upstreams with evidence at once, over all nodes.
pub const MAX_UPSTREAMS: usize = 16_384;
/// How often the timer thread runs.
pub const EVALUATE_EVERY: Duration = Duration::from_millis(500);
/// Counts and evidence reach the state file at most this often (transitions at once).
const SAVE_EVERY_MS: i64 = 5000;

#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the alert thread: {0}")]
    Thread(std::io::Error),
}

struct Shared {
    timing: Timing,
    state: Mutex<EngineState>,
    /// Held from a change to its publication, so transitions go out in order.
    publishing: Mutex<()>,
    sinks: RwLock<Vec<Arc<dyn AlertSink>>>,
    loki: Option<LokiSink>,
    store: Option<Store>,
    stopping: AtomicBool,
    timer: Mutex<Option<JoinHandle<()>>>,
}

/// The alert engine; clones share it.
#[derive(Clone)]
pub struct AlertEngine {
    shared: Arc<Shared>,
}

pub fn wall_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl AlertEngine {
    /// Loads the saved alerts and starts the timer thread.
    pub fn start(config: AlertsConfig, loki: Option<LokiSink>) -> Result<AlertEngine, AlertsError> {
        let engine = Self::new(config, loki)?;
        let timer = engine.clone();
        let handle = std::thread::Builder::new()
            .name("vigil-alerts".into())
            .spawn(move || {
                while !timer.shared.stopping.load(Ordering::SeqCst) {
                    std::thread::park_timeout(EVALUATE_EVERY);
                    timer.tick_at(wall_now_ms());
                }
            })
            .map_err(AlertsError::Thread)?;
        *engine.shared.timer.lock().expect("timer lock") = Some(handle);
        Ok(engine)
    }

    /// The engine without its timer thread (tests drive `tick_at` themselves).
    pub fn new(config: AlertsConfig, loki: Option<LokiSink>) -> Result<AlertEngine, AlertsError> {
        let store = config.state_dir.as_deref().map(Store::open).transpose()?;
        let mut state = EngineState::default();
        if let Some(saved) = store.as_ref().map(Store::load).transpose()?.flatten() {
            state.book = Book::restore(saved);
            let now = wall_now_ms();
            for key in state.book.active.keys() {
                // Restored alerts' nodes count as just heard of: silent ones end later.
                let node = state.nodes.entry(key.node.clone()).or_default();
                node.seen_wall_ms = now;
            }
            info!(
                active = state.book.active.len(),
                "alerts restored from the state file"
            );
        }
        for alert in state.book.firing() {
            publish::set_gauge(alert, 1.0);
        }
        let ms = |d: Duration| d.as_millis() as i64;
        Ok(AlertEngine {
            shared: Arc::new(Shared {
                timing: Timing {
                    for_ms: ms(config.for_),
                    resolve_after_ms: ms(config.resolve_after),
                    repeat_ms: ms(config.repeat_interval),
                },
                state: Mutex::new(state),
                publishing: Mutex::new(()),
                sinks: RwLock::new(Vec::new()),
                loki,
                store,
                stopping: AtomicBool::new(false),
                timer: Mutex::new(None),
            }),
        })
    }

    /// Adds a receiver of transitions; alerts firing since before a restart are handed to
    /// its `restored`.
    pub fn add_sink(&self, sink: Arc<dyn AlertSink>) {
        let _order = self.shared.publishing.lock().expect("publish lock");
        let firing: Vec<Alert> = self.lock().book.firing().cloned().collect();
        firing.iter().for_each(|a| sink.restored(a));
        self.shared.sinks.write().expect("sinks lock").push(sink);
    }

    /// An accepted batch: its node's evidence, then that node's rules.
    pub fn observe(&self, batch: &Batch) {
        self.observe_at(batch, wall_now_ms());
    }

    pub fn observe_at(&self, batch: &Batch, wall_ms: i64) {
        if batch.node.is_empty() {
            return;
        }
        let order = self.shared.publishing.lock().expect("publish lock");
        let (out, saved) = {
            let mut st = self.lock();
            let st = &mut *st;
            if !st.nodes.contains_key(&batch.node) && st.nodes.len() >= MAX_NODES {
                drop_inputs("nodes", 1, &batch.node);
                return;
            }
            let node = st.nodes.entry(batch.node.clone()).or_default();
            let mut ctx = Observe {
                gap_ms: self.shared.timing.resolve_after_ms,
                wall_ms,
                upstreams_total: &mut st.upstreams_total,
                max_upstreams: MAX_UPSTREAMS,
                dropped: Dropped::default(),
            };
            node.observe(batch, &mut ctx);
            count_drops(ctx.dropped, &batch.node);
            let out = st.evaluate(&batch.node, wall_ms, &self.shared.timing);
            st.generation += 1;
            let saved = transitioned(&out).then(|| (st.generation, st.book.saved()));
            (out, saved)
        };
        self.save(saved);
        self.publish(out);
        drop(order);
    }

    /// The timer: repeats, nodes gone silent, forgetting old evidence, saving.
    pub fn tick_at(&self, wall_ms: i64) {
        let order = self.shared.publishing.lock().expect("publish lock");
        let (out, saved, firing) = {
            let mut st = self.lock();
            let mut out = st.end_silent_nodes(wall_ms);
            st.forget(wall_ms);
            out.extend(st.book.repeats(wall_ms, &self.shared.timing));
            if !out.is_empty() {
                st.generation += 1;
            }
            // Counts and evidence change with every batch; they reach the file from here.
            let due = !out.is_empty() || wall_ms - st.saved_wall_ms >= SAVE_EVERY_MS;
            let saved = due.then(|| {
                st.saved_wall_ms = wall_ms;
                (st.generation, st.book.saved())
            });
            let firing: Vec<Alert> = st.book.firing().cloned().collect();
            (out, saved, firing)
        };
        self.save(saved);
        // Re-set so the series never idles out while the alert fires.
        firing.iter().for_each(|a| publish::set_gauge(a, 1.0));
        self.publish(out);
        drop(order);
    }

    /// Active alerts (firing, then pending), then recently resolved ones, newest first.
    pub fn alerts(&self) -> Vec<Alert> {
        self.lock().book.list()
    }

    /// Stops the timer and saves.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(timer) = self.shared.timer.lock().expect("timer lock").take() {
            timer.thread().unpark();
            let _ = timer.join();
        }
        let saved = {
            let mut st = self.lock();
            st.generation += 1;
            (st.generation, st.book.saved())
        };
        self.save(Some(saved));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EngineState> {
        self.shared.state.lock().expect("alert engine lock")
    }

    fn save(&self, saved: Option<(u64, Saved)>) {
        let (Some(store), Some((generation, saved))) = (&self.shared.store, saved) else {
            return;
        };
        if let Err(e) = store.save(generation, &saved) {
            counter!("vigil_alert_state_write_errors_total").increment(1);
            warn!("{e}; alerts would be announced again after a restart");
        }
    }

    fn publish(&self, out: Vec<Outgoing>) {
        if out.is_empty() {
            return;
        }
        let entries: Vec<_> = out.iter().filter_map(publish::log_entry).collect();
        if let Some(loki) = &self.shared.loki {
            loki.enqueue(entries);
        }
        let sinks = self.shared.sinks.read().expect("sinks lock");
        for o in &out {
            publish::record(o);
            if o.notice != Notice::Repeat {
                info!(alert = o.alert.key.cause.name(), node = %o.alert.key.node, upstream = %o.alert.key.upstream, state = ?o.alert.state, "{}", o.alert.summary);
            }
            sinks.iter().for_each(|s| s.transition(&o.alert));
        }
    }
}

fn transitioned(out: &[Outgoing]) -> bool {
    out.iter().any(|o| o.notice != Notice::Repeat)
}

#[cfg(test)]
mod tests;
