//! Active and recently resolved alerts across collector restarts: `alerts.json` in the
//! state directory, replaced atomically (temp file, fsync, rename, fsync of the directory)
//! before notifiers hear of a transition, so a firing alert is never announced twice.
use std::{
    fs::{self, File},
    io::{Read, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use tracing::warn;

use super::lifecycle::Saved;

/// A state file larger than this is not read (thousands of alerts fit in a few MiB).
pub const MAX_STATE_BYTES: u64 = 64 << 20;
const FILE: &str = "alerts.json";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("alert state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write alert state {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read alert state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct Store {
    dir: PathBuf,
    /// The generation last written: an older snapshot never overwrites a newer one.
    written: Mutex<u64>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Store {
            dir: dir.to_owned(),
            written: Mutex::new(0),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The saved alerts; None when there is no file. A file that does not parse (or is
    /// over the bound) is renamed `alerts.json.corrupt`, kept for inspection, and None.
    pub fn load(&self) -> Result<Option<Saved>, StoreError> {
        let path = self.path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        let mut text = String::new();
        file.take(MAX_STATE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|source| StoreError::Read {
                path: path.clone(),
                source,
            })?;
        let parsed = if text.len() as u64 > MAX_STATE_BYTES {
            Err(format!("over {MAX_STATE_BYTES} bytes"))
        } else {
            serde_json::from_str::<Saved>(&text)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    (s.version == Saved::VERSION)
                        .then_some(s)
                        .ok_or_else(|| "unknown version".to_owned())
                })
        };
        match parsed {
            Ok(saved) => Ok(Some(saved)),
            Err(why) => {
                let aside = self.dir.join(format!("{FILE}.corrupt"));
                warn!(path = %path.display(), %why, kept = %aside.display(), "alert state unreadable; starting without it");
                let _ = fs::rename(&path, &aside);
                Ok(None)
            }
        }
    }

    /// Replaces the file with `saved` unless a newer generation is already there.
    pub fn save(&self, generation: u64, saved: &Saved) -> Result<(), StoreError> {
        let mut written = self.written.lock().expect("alert store lock");
        if generation <= *written {
            return Ok(());
        }
        let path = self.path();
        let temp = self.dir.join(format!("{FILE}.tmp"));
        let write_err = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let body = serde_json::to_vec(saved).expect("alerts serialize");
        let mut file = File::create(&temp).map_err(write_err)?;
        file.write_all(&body).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        fs::rename(&temp, &path).map_err(write_err)?;
        // The rename itself is durable only once the directory is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err)?;
        *written = generation;
        Ok(())
    }
}
