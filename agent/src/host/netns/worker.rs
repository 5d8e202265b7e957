//! The thread that enters other network namespaces: setns(CLONE_NEWNET) changes only the
//! calling thread's namespace, so it happens here and never on the async runtime's thread.
//! It dumps each namespace, goes back home, and ends if it ever cannot (a new one starts).
use std::{
    collections::BTreeSet,
    fs::File,
    os::{fd::OwnedFd, unix::fs::MetadataExt},
    path::Path,
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError, Sender},
        Arc,
    },
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{enter, NamespaceView, NetnsError, NetnsId};
use crate::host::{listeners::tcp_listeners_where, netlink::interface_addresses};

/// How long a refresh waits for the worker's dumps.
const WORKER_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Request {
    pub seq: u64,
    pub namespaces: Vec<(NetnsId, u32)>,
    pub ports: Arc<BTreeSet<u16>>,
}

struct Response {
    seq: u64,
    views: Vec<Result<NamespaceView, (NetnsId, NetnsError)>>,
}

pub(super) struct Worker {
    requests: Sender<Request>,
    responses: Receiver<Response>,
    /// A request whose answer has not arrived yet.
    in_flight: Option<u64>,
}

pub(super) enum Asked {
    Answered(Vec<Result<NamespaceView, (NetnsId, NetnsError)>>),
    /// Still working on an earlier request that timed out.
    Busy,
    TimedOut,
    /// The thread ended.
    Gone,
}

impl Worker {
    pub(super) fn spawn(proc_root: &Path) -> Option<Worker> {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, responses) = mpsc::channel::<Response>();
        let proc_root = proc_root.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("vigil-netns".into())
            .spawn(move || worker_loop(&proc_root, inbox, outbox));
        match spawned {
            Ok(_) => info!("reading listeners in other network namespaces from a worker thread"),
            Err(e) => {
                warn!("cannot start the namespace worker: {e}");
                return None;
            }
        }
        Some(Worker {
            requests,
            responses,
            in_flight: None,
        })
    }

    pub(super) fn ask(&mut self, request: Request) -> Asked {
        // An earlier answer that came too late is of no use now.
        while let Ok(late) = self.responses.try_recv() {
            if self.in_flight == Some(late.seq) {
                self.in_flight = None;
            }
        }
        if self.in_flight.is_some() {
            warn!("the namespace worker is still busy with an earlier refresh; pods' listeners are not read this time");
            return Asked::Busy;
        }
        let seq = request.seq;
        if self.requests.send(request).is_err() {
            return Asked::Gone;
        }
        self.in_flight = Some(seq);
        let deadline = Instant::now() + WORKER_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.responses.recv_timeout(left) {
                Ok(r) if r.seq == seq => {
                    self.in_flight = None;
                    return Asked::Answered(r.views);
                }
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    warn!(after = ?WORKER_TIMEOUT, "reading pods' network namespaces took too long; skipped this time");
                    return Asked::TimedOut;
                }
                Err(RecvTimeoutError::Disconnected) => return Asked::Gone,
            }
        }
    }
}

fn worker_loop(proc_root: &Path, inbox: Receiver<Request>, outbox: Sender<Response>) {
    // This thread's namespace now is the agent's: the way back after each visit.
    let home = match File::open("/proc/thread-self/ns/net") {
        Ok(f) => OwnedFd::from(f),
        Err(e) => {
            warn!(
                "cannot open the agent's own network namespace: {e}; pods' listeners are not read"
            );
            return;
        }
    };
    for request in inbox {
        let mut views = Vec::with_capacity(request.namespaces.len());
        let mut lost_home = false;
        for &(id, pid) in &request.namespaces {
            match visit(proc_root, id, pid, &home, &request.ports) {
                Err(NetnsError::Return(e)) => {
                    warn!("cannot return to the agent's network namespace: {e}; the worker ends and is started again");
                    lost_home = true;
                    break;
                }
                result => views.push(result.map_err(|e| (id, e))),
            }
        }
        let sent = outbox.send(Response {
            seq: request.seq,
            views,
        });
        if lost_home || sent.is_err() {
            return;
        }
    }
}

/// Enters `id` through `pid`, dumps it, goes back to `home`.
pub(super) fn visit(
    proc_root: &Path,
    id: NetnsId,
    pid: u32,
    home: &OwnedFd,
    ports: &BTreeSet<u16>,
) -> Result<NamespaceView, NetnsError> {
    let path = proc_root.join(pid.to_string()).join("ns/net");
    let file = File::open(&path).map_err(|source| NetnsError::Open {
        path: path.clone(),
        source,
    })?;
    let found = file
        .metadata()
        .map_err(|source| NetnsError::Open {
            path: path.clone(),
            source,
        })?
        .ino();
    if found != id.0 {
        return Err(NetnsError::Moved {
            path,
            expected: id.0,
            found,
        });
    }
    enter(&file, libc::CLONE_NEWNET).map_err(|source| NetnsError::Enter { id: id.0, source })?;
    let listeners = tcp_listeners_where(|p| ports.contains(&p));
    let addrs = interface_addresses();
    enter(home, libc::CLONE_NEWNET).map_err(NetnsError::Return)?;
    Ok(NamespaceView {
        id,
        own: false,
        via_pid: Some(pid),
        addrs: addrs?,
        listeners: listeners?,
    })
}
