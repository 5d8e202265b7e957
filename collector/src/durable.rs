//! What makes an acknowledged batch survive SIGKILL and power loss, under `state_dir`:
//! the write-ahead log (`wal/`, see `wal.rs`) and the dedup state (`dedup.state`). At start
//! the dedup state is loaded and every batch the log still holds is sent to Loki again (its
//! metrics were counted before the crash and are not counted twice: Prometheus sees the
//! restart as a counter reset). A checkpoint every `CHECKPOINT_EVERY` saves the dedup state,
//! then deletes the log segments whose lines are safe (Loki acknowledged them, or they are in
//! the Loki spool).
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tracing::{info, warn};
use vigil_wire::Batch;

use crate::{
    config::CollectorConfig,
    dedup::Dedup,
    loki::{entries_from_batch, LokiSink},
    wal::{SegmentId, Wal, WalError, WalRecord},
};

const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("dedup state {path}: {source}")]
    Dedup {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The log, the dedup state it protects, and the batches an earlier run left to replay.
pub struct Opened {
    pub wal: Option<Arc<Wal>>,
    pub dedup: Dedup,
    pub replay: Vec<(SegmentId, WalRecord)>,
}

fn dedup_path(dir: &Path) -> PathBuf {
    dir.join("dedup.state")
}

pub fn open(config: &CollectorConfig) -> Result<Opened, DurableError> {
    let Some(dir) = &config.state_dir else {
        warn!("no state_dir: accepted batches are not on disk before the 200 (a crash loses what Loki has not got)");
        return Ok(Opened {
            wal: None,
            dedup: Dedup::default(),
            replay: Vec::new(),
        });
    };
    let path = dedup_path(dir);
    let dedup = Dedup::load(&path, 100_000, Duration::from_secs(7 * 86_400))
        .map_err(|source| DurableError::Dedup { path, source })?;
    let (wal, replay) = Wal::open(&dir.join("wal"), config.wal_disk_bytes)?;
    Ok(Opened {
        wal: Some(Arc::new(wal)),
        dedup,
        replay,
    })
}

/// Sends the lines of batches an earlier run accepted but Loki had not safely got; a batch
/// the log holds twice (two requests raced) is sent once.
pub fn replay(
    wal: &Arc<Wal>,
    records: Vec<(SegmentId, WalRecord)>,
    dedup: &Dedup,
    loki: Option<&LokiSink>,
    limits: &vigil_wire::DecodeLimits,
) {
    let mut sent = HashSet::new();
    let (mut lines, mut batches) = (0, 0);
    for (segment, record) in records {
        let ticket = wal.ticket(segment);
        // Recorded again in case the saved state predates this batch.
        dedup.first_time(&record.agent_id, record.sequence);
        if !sent.insert((record.agent_id.clone(), record.sequence)) {
            continue;
        }
        let batch = match Batch::decode_compressed(&record.body, limits) {
            Ok(batch) => batch,
            Err(e) => {
                warn!(agent = %record.agent_id, seq = record.sequence, "logged batch does not decode: {e}; skipped");
                continue;
            }
        };
        if let Some(loki) = loki {
            let entries = with_ticket(entries_from_batch(batch), &ticket);
            lines += entries.len();
            loki.enqueue(entries);
        }
        batches += 1;
    }
    if batches > 0 {
        info!(
            batches,
            lines, "batches from the write-ahead log sent to Loki again"
        );
    }
}

/// Every line of a batch holds its record's ticket: the record is released when the last
/// line is safe.
pub fn with_ticket(
    mut entries: Vec<crate::loki::LogEntry>,
    ticket: &Arc<crate::wal::WalTicket>,
) -> Vec<crate::loki::LogEntry> {
    for e in &mut entries {
        e.release = Some(ticket.clone());
    }
    entries
}

/// Saves the dedup state and deletes the log segments that are safe, forever.
pub async fn checkpoints(wal: Arc<Wal>, dedup: Arc<Dedup>, dir: PathBuf) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    loop {
        tick.tick().await;
        checkpoint(&wal, &dedup, &dir).await;
    }
}

/// One checkpoint, off the async workers (it fsyncs).
pub async fn checkpoint(wal: &Arc<Wal>, dedup: &Arc<Dedup>, dir: &Path) {
    let (wal, dedup, path) = (wal.clone(), dedup.clone(), dedup_path(dir));
    let done = tokio::task::spawn_blocking(move || wal.checkpoint(|| dedup.save(&path))).await;
    match done {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => warn!("cannot save the dedup state ({e}); log segments kept"),
        Err(e) => warn!("checkpoint failed: {e}"),
    }
}
