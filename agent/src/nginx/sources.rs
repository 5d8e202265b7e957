//! From the masters `discover` believes to what the view follows: each master's configuration,
//! read as files inside its root, and the log files that configuration names, opened inside
//! that same root. The operator's `--nginx-error-log`/`--nginx-access-log` replace the
//! configured ones and are opened as given. No other file is tailed.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Serialize;
use tracing::{info, warn};

use super::{
    discover::{find_nginx, IgnoredMaster, NginxInstance, NginxMaster, DEFAULT_PROC_ROOT},
    error_chain,
    in_root::{FileId, RootDir},
    tail::StartAt,
    LogFormat, LogTail, NginxConfig,
};

/// Everything found about nginx on this node.
pub struct Sources {
    pub instances: Vec<NginxInstance>,
    pub ignored: Vec<IgnoredMaster>,
    pub configs: Vec<NginxConfig>,
    pub files: ConfigFiles,
    pub error_logs: Vec<LogTail>,
    pub access_logs: Vec<(LogTail, LogFormat)>,
}

/// Configuration files read and refused, over all masters.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ConfigFiles {
    pub config_files_read: usize,
    pub config_files_refused: usize,
}

/// A master's configuration and the root its paths are in.
struct Loaded {
    config: NginxConfig,
    root: Arc<RootDir>,
}

impl Sources {
    pub fn find(error_log: Option<PathBuf>, access_log: Option<PathBuf>) -> Sources {
        let found = find_nginx(Path::new(DEFAULT_PROC_ROOT)).unwrap_or_else(|e| {
            warn!("cannot look for nginx: {e}");
            Default::default()
        });
        let mut files = ConfigFiles::default();
        let loaded: Vec<Loaded> = found
            .masters
            .iter()
            .filter_map(|m| load_config(m, &mut files))
            .collect();
        let mut seen = BTreeSet::new();
        let error_logs = match error_log {
            Some(path) => vec![LogTail::open_at_end(path)],
            None => loaded
                .iter()
                .flat_map(|l| l.config.error_logs.iter().map(move |p| (l, p)))
                .filter(|(l, p)| usable(p) && seen.insert(key(l, p)))
                .map(|(l, p)| LogTail::in_root(l.root.clone(), p, StartAt::End))
                .collect(),
        };
        let access_logs = match access_log {
            Some(path) => vec![(LogTail::open_at_end(path), LogFormat::combined())],
            None => loaded
                .iter()
                .flat_map(|l| {
                    access_logs_with_formats(&l.config)
                        .into_iter()
                        .map(move |a| (l, a))
                })
                .filter(|(l, (p, _))| usable(p) && seen.insert(key(l, p)))
                .map(|(l, (p, f))| (LogTail::in_root(l.root.clone(), p, StartAt::End), f))
                .collect(),
        };
        Sources {
            instances: found.masters.into_iter().map(|m| m.instance).collect(),
            ignored: found.ignored,
            configs: loaded.into_iter().map(|l| l.config).collect(),
            files,
            error_logs,
            access_logs,
        }
    }
}

fn load_config(master: &NginxMaster, files: &mut ConfigFiles) -> Option<Loaded> {
    let pid = master.instance.master_pid;
    let paths = master
        .paths()
        .map_err(|e| warn!(pid, "cannot locate nginx's configuration: {e}"))
        .ok()?;
    let root = master
        .root()
        .map_err(|e| warn!(pid, "cannot open nginx's root directory: {e}"))
        .ok()?;
    let loaded = NginxConfig::load(&root, &paths);
    let (config, report) = loaded
        .map_err(|e| {
            files.config_files_refused += 1;
            warn!(pid, file = %paths.conf_file.display(), "cannot read nginx's configuration: {}", error_chain(&e));
        })
        .ok()?;
    files.config_files_read += report.files_read;
    files.config_files_refused += report.files_refused;
    info!(
        pid,
        file = %paths.conf_file.display(),
        root = %root.label().display(),
        files = report.files_read,
        refused = report.files_refused,
        "read nginx's configuration"
    );
    Some(Loaded {
        config,
        root: Arc::new(root),
    })
}

/// Two masters sharing a root share their files; in different roots, one path is two files.
fn key(loaded: &Loaded, path: &Path) -> (FileId, PathBuf) {
    (loaded.root.id(), path.to_path_buf())
}

fn usable(path: &Path) -> bool {
    path != Path::new("/dev/null")
}

fn access_logs_with_formats(config: &NginxConfig) -> Vec<(PathBuf, LogFormat)> {
    config
        .access_logs
        .iter()
        .filter_map(|log| {
            let text = config.log_formats.get(&log.format)?;
            match LogFormat::compile(text) {
                Ok(format) => Some((log.path.clone(), format)),
                Err(e) => {
                    warn!(format = %log.format, "cannot use log_format: {e}");
                    None
                }
            }
        })
        .collect()
}
