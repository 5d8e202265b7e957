//! The running nginx as the agent sees it: its processes, the upstreams and timeouts from
//! its configuration, and what its error and access logs say, parsed and counted.
use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    path::PathBuf,
};

use serde::Serialize;
use tracing::{info, warn};

use super::{
    parse_error_line,
    sources::{ConfigFiles, Sources},
    ErrorLogRecord, IgnoredMaster, LogFormat, LogTail, NginxConfig, NginxInstance, ProxyTarget,
    TailLine, UpstreamError,
};
use crate::host::sampler::ProcessSample;

const RECENT_ERRORS: usize = 20;

pub struct NginxView {
    /// Every believed nginx master on the node (usually one) and the configurations they run.
    instances: Vec<NginxInstance>,
    /// Processes titled as nginx masters that are not believed (not root).
    ignored: Vec<IgnoredMaster>,
    configs: Vec<NginxConfig>,
    config_files: ConfigFiles,
    error_logs: Vec<LogTail>,
    access_logs: Vec<(LogTail, LogFormat)>,
    tally: LogTally,
}

/// What the logs said since the agent started.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LogTally {
    pub responses: BTreeMap<u16, u64>,
    pub upstream_errors: BTreeMap<&'static str, u64>,
    pub recent_upstream_errors: VecDeque<ErrorLogRecord>,
    /// Lines that matched no known layout (kept raw for shipping, counted here).
    pub unparsed_lines: u64,
    pub truncated_lines: u64,
}

#[derive(Debug, Serialize)]
pub struct ProxySummary {
    pub location: Option<String>,
    pub target: String,
    pub connect_timeout_ms: u128,
    pub read_timeout_ms: u128,
}

#[derive(Debug, Serialize)]
pub struct NginxSnapshot {
    pub master_pids: Vec<u32>,
    pub ignored_masters: Vec<IgnoredMaster>,
    #[serde(flatten)]
    pub config_files: ConfigFiles,
    pub processes: Vec<ProcessSample>,
    pub proxies: Vec<ProxySummary>,
    pub error_logs: Vec<PathBuf>,
    pub access_logs: Vec<PathBuf>,
    #[serde(flatten)]
    pub logs: LogTally,
}

/// One line from an nginx log.
#[derive(Debug, Clone)]
pub enum LogEvent {
    Error {
        line: TailLine,
        record: Option<Box<ErrorLogRecord>>,
    },
    Access {
        line: TailLine,
        record: Option<AccessSummary>,
    },
}

/// What the agent uses of an access log line.
#[derive(Debug, Clone)]
pub struct AccessSummary {
    pub status: Option<u16>,
    pub upstream_addr: Option<String>,
    pub request_time: Option<f64>,
}

impl NginxView {
    /// Finds the running nginx masters and their logs; explicit log paths win over the
    /// configs'. None when there is no nginx-titled master and no explicit log.
    pub fn discover(error_log: Option<PathBuf>, access_log: Option<PathBuf>) -> Option<Self> {
        let explicit = error_log.is_some() || access_log.is_some();
        let found = Sources::find(error_log, access_log);
        if found.instances.is_empty() && found.ignored.is_empty() && !explicit {
            info!("no running nginx found");
            return None;
        }
        for i in &found.instances {
            info!(
                master = i.master_pid,
                workers = i.worker_pids.len(),
                trusted = ?i.trusted,
                "found nginx"
            );
        }
        Some(NginxView {
            instances: found.instances,
            ignored: found.ignored,
            configs: found.configs,
            config_files: found.files,
            error_logs: found.error_logs,
            access_logs: found.access_logs,
            tally: LogTally::default(),
        })
    }

    /// Destination ports of every upstream in nginx's configuration.
    pub fn upstream_ports(&self) -> BTreeSet<u16> {
        self.configs
            .iter()
            .flat_map(|c| c.upstream_ports())
            .collect()
    }

    pub fn master_pids(&self) -> Vec<u32> {
        self.instances.iter().map(|i| i.master_pid).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.instances
            .iter()
            .flat_map(|i| std::iter::once(i.master_pid).chain(i.worker_pids.iter().copied()))
            .collect()
    }

    /// New log lines since the last poll, parsed where they parse; every line is kept.
    pub fn poll_logs(&mut self) -> Vec<LogEvent> {
        let mut events = Vec::new();
        for tail in &mut self.error_logs {
            for line in poll(tail) {
                let record = parse_error_line(&line.text).ok().map(Box::new);
                events.push(LogEvent::Error { line, record });
            }
        }
        for (tail, format) in &mut self.access_logs {
            for line in poll(tail) {
                let record = format.parse(&line.text).ok().map(|r| AccessSummary {
                    status: r.status(),
                    upstream_addr: r.upstream_addr().and_then(|v| v.last().map(str::to_owned)),
                    request_time: r.request_time(),
                });
                events.push(LogEvent::Access { line, record });
            }
        }
        for event in &events {
            self.tally.add(event);
        }
        events
    }

    pub fn snapshot(&self, samples: &[ProcessSample]) -> NginxSnapshot {
        let mut pids: std::collections::BTreeSet<u32> = self.pids().into_iter().collect();
        NginxSnapshot {
            master_pids: self.instances.iter().map(|i| i.master_pid).collect(),
            ignored_masters: self.ignored.clone(),
            config_files: self.config_files,
            // Once each: an nginx that is also an upstream's owner is sampled twice.
            processes: samples
                .iter()
                .filter(|s| pids.remove(&s.pid))
                .cloned()
                .collect(),
            proxies: self
                .configs
                .iter()
                .flat_map(|c| &c.proxies)
                .map(|p| ProxySummary {
                    location: p.location.clone(),
                    target: match &p.target {
                        ProxyTarget::Upstream(s)
                        | ProxyTarget::Address(s)
                        | ProxyTarget::Dynamic(s) => s.clone(),
                    },
                    connect_timeout_ms: p.connect_timeout.as_millis(),
                    read_timeout_ms: p.read_timeout.as_millis(),
                })
                .collect(),
            error_logs: self
                .error_logs
                .iter()
                .map(|t| t.path().to_owned())
                .collect(),
            access_logs: self
                .access_logs
                .iter()
                .map(|(t, _)| t.path().to_owned())
                .collect(),
            logs: self.tally.clone(),
        }
    }
}

fn poll(tail: &mut LogTail) -> Vec<TailLine> {
    tail.poll().unwrap_or_else(|e| {
        warn!("{e}");
        Vec::new()
    })
}

impl LogTally {
    fn add(&mut self, event: &LogEvent) {
        let (line, parsed) = match event {
            LogEvent::Error { line, record } => {
                if let Some(r) = record {
                    self.add_error(r);
                }
                (line, record.is_some())
            }
            LogEvent::Access { line, record } => {
                let status = record.as_ref().and_then(|r| r.status);
                if let Some(s) = status {
                    *self.responses.entry(s).or_default() += 1;
                }
                (line, status.is_some())
            }
        };
        self.truncated_lines += u64::from(line.truncated);
        self.unparsed_lines += u64::from(!parsed);
    }

    /// Only upstream errors are kept, and only they are copied.
    fn add_error(&mut self, record: &ErrorLogRecord) {
        let Some(kind) = record.upstream_error.as_ref().map(UpstreamError::label) else {
            return;
        };
        *self.upstream_errors.entry(kind).or_default() += 1;
        if self.recent_upstream_errors.len() == RECENT_ERRORS {
            self.recent_upstream_errors.pop_front();
        }
        self.recent_upstream_errors.push_back(record.clone());
    }
}

impl NginxView {
    /// For each upstream port, the address nginx connects to (`host:port` as configured),
    /// preferring a loopback host when several servers share the port: the agent sees only
    /// this node's listeners.
    pub fn upstream_destinations(&self) -> BTreeMap<u16, String> {
        let mut out: BTreeMap<u16, String> = BTreeMap::new();
        let literal = self
            .configs
            .iter()
            .flat_map(|c| &c.proxies)
            .filter_map(|p| match &p.target {
                ProxyTarget::Address(addr) => Some(addr),
                _ => None,
            });
        let servers = self
            .configs
            .iter()
            .flat_map(|c| &c.upstreams)
            .flat_map(|u| &u.servers);
        for addr in servers.chain(literal) {
            let Some(port) = addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
            else {
                continue;
            };
            let loopback = addr.starts_with("127.")
                || addr.starts_with("[::1]")
                || addr.starts_with("localhost:");
            match out.get(&port) {
                Some(known) if !loopback || known.starts_with("127.") => {}
                _ => {
                    out.insert(port, addr.clone());
                }
            }
        }
        out.retain(|_, addr| !addr.starts_with("unix:"));
        out
    }
}

impl NginxView {
    /// The configurations of the running masters: what the agent's routes are read from.
    pub fn configs(&self) -> &[NginxConfig] {
        &self.configs
    }
}
