//! Who owns a listening socket: the processes holding its inode (/proc/PID/fd), the
//! top-most of them as owner, and its systemd unit or Kubernetes pod from /proc/PID/cgroup.
use std::{
    collections::{HashMap, HashSet},
    fs,
    path::Path,
};

use serde::Serialize;

use super::{pods::PodDirectory, proc_files};

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: u32,
    pub comm: String,
    pub cmdline: String,
    /// systemd unit (`client-portal.service`) when the process runs under one.
    pub unit: Option<String>,
    pub pod_uid: Option<String>,
    /// The pod's namespace and name, from kubelet's log directory (see `pods`).
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub container_id: Option<String>,
    /// Its cgroup (v2 path, else the first v1 one), as the node's cgroup namespace sees it
    /// once the agent joined it (`cgroupns`).
    pub cgroup: Option<String>,
}

impl ProcessIdentity {
    /// Names its pod, when it runs in one that kubelet keeps logs for.
    pub fn name_pod(&mut self, pods: &mut PodDirectory) {
        if let Some(pod) = self.pod_uid.as_deref().and_then(|uid| pods.lookup(uid)) {
            self.pod_namespace = Some(pod.namespace);
            self.pod_name = Some(pod.name);
        }
    }
}

/// What one pass over /proc yields: the pids holding each wanted socket inode, and every
/// process's parent (for the owner among the holders and its workers).
#[derive(Debug, Default)]
pub struct ProcessTable {
    pub holders: HashMap<u64, Vec<u32>>,
    parents: HashMap<u32, u32>,
}

impl ProcessTable {
    pub fn scan(proc_root: &Path, inodes: &HashSet<u64>) -> Self {
        let mut table = ProcessTable::default();
        // No listener to explain: nothing to read.
        if inodes.is_empty() {
            return table;
        }
        let Ok(entries) = fs::read_dir(proc_root) else {
            return table;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = proc_files::parent_pid(&entry.path()) {
                table.parents.insert(pid, ppid);
            }
            table.add_holder(pid, &entry.path(), inodes);
        }
        table
    }

    fn add_holder(&mut self, pid: u32, dir: &Path, inodes: &HashSet<u64>) {
        let Ok(fds) = fs::read_dir(dir.join("fd")) else {
            return;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            match socket_inode(&target.to_string_lossy()) {
                Some(inode) if inodes.contains(&inode) => {
                    let pids = self.holders.entry(inode).or_default();
                    if !pids.contains(&pid) {
                        pids.push(pid);
                    }
                }
                _ => {}
            }
        }
    }

    /// The holder whose parent does not hold the socket too: the master of a pre-fork server.
    pub fn top_holder(&self, holders: &[u32]) -> Option<u32> {
        holders
            .iter()
            .copied()
            .find(|pid| self.parents.get(pid).is_none_or(|pp| !holders.contains(pp)))
            .or_else(|| holders.first().copied())
    }

    pub fn children_of(&self, parent: u32) -> impl Iterator<Item = u32> + '_ {
        self.parents
            .iter()
            .filter(move |(_, &pp)| pp == parent)
            .map(|(&pid, _)| pid)
    }
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

pub fn identity(proc_root: &Path, pid: u32) -> ProcessIdentity {
    let dir = proc_root.join(pid.to_string());
    let comm = proc_files::comm(&dir).unwrap_or_default();
    let cmdline = proc_files::cmdline(&dir).unwrap_or_default();
    let cgroup = fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
    let place = CgroupPlace::parse(&cgroup);
    ProcessIdentity {
        pid,
        comm,
        cmdline,
        unit: place.unit,
        pod_uid: place.pod_uid,
        pod_namespace: None,
        pod_name: None,
        container_id: place.container_id,
        cgroup: place.path,
    }
}

/// Where a process sits, read from its cgroup path.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CgroupPlace {
    pub path: Option<String>,
    pub unit: Option<String>,
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
}

impl CgroupPlace {
    /// Understands cgroup v2 (`0::/path`) and v1 lines; systemd units (`*.service`),
    /// kubepods with the cgroupfs driver (`/kubepods/burstable/pod<uid>/<id>`) and the
    /// systemd driver (`kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope`).
    pub fn parse(cgroup_file: &str) -> CgroupPlace {
        let path = cgroup_file
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .or_else(|| cgroup_file.lines().find_map(|l| l.splitn(3, ':').nth(2)))
            .unwrap_or("");
        let mut place = CgroupPlace {
            path: (!path.is_empty()).then(|| path.to_owned()),
            ..Default::default()
        };
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if let Some(uid) = pod_uid(part) {
                place.pod_uid = Some(uid);
            } else if place.pod_uid.is_some() {
                place.container_id = Some(container_id(part));
            } else if part.ends_with(".service") {
                place.unit = Some(part.to_owned());
            }
        }
        place
    }
}

fn pod_uid(part: &str) -> Option<String> {
    if let Some(rest) = part.strip_suffix(".slice") {
        let uid = rest.rsplit_once("-pod")?.1;
        return (rest.starts_with("kubepods")).then(|| uid.replace('_', "-"));
    }
    part.strip_prefix("pod")
        .filter(|u| u.len() >= 32)
        .map(str::to_owned)
}

fn container_id(part: &str) -> String {
    let part = part.strip_suffix(".scope").unwrap_or(part);
    part.rsplit_once('-').map_or(part, |(_, id)| id).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_unit_from_cgroup_v2() {
        let p = CgroupPlace::parse("0::/system.slice/drupal-client4.service\n");
        assert_eq!(p.unit.as_deref(), Some("drupal-client4.service"));
        assert_eq!(p.pod_uid, None);
    }

    #[test]
    fn pod_and_container_with_systemd_driver() {
        let p = CgroupPlace::parse(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_0000_1111_2222_333344445555.slice/cri-containerd-abcdef0123.scope\n",
        );
        assert_eq!(
            p.pod_uid.as_deref(),
            Some("1a2b3c4d-0000-1111-2222-333344445555")
        );
        assert_eq!(p.container_id.as_deref(), Some("abcdef0123"));
        assert_eq!(p.unit, None);
    }

    #[test]
    fn pod_and_container_with_cgroupfs_driver_v1() {
        let p = CgroupPlace::parse(
            "12:memory:/kubepods/burstable/pod1a2b3c4d-0000-1111-2222-333344445555/0123abcd\n",
        );
        assert_eq!(
            p.pod_uid.as_deref(),
            Some("1a2b3c4d-0000-1111-2222-333344445555")
        );
        assert_eq!(p.container_id.as_deref(), Some("0123abcd"));
    }

    #[test]
    fn finds_who_holds_our_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let l = crate::host::listeners::tcp_listeners()
            .unwrap()
            .into_iter()
            .find(|l| l.addr.port() == port)
            .unwrap();
        let table = ProcessTable::scan(Path::new("/proc"), &HashSet::from([l.inode]));
        let me = std::process::id();
        assert_eq!(table.holders[&l.inode], vec![me]);
        assert_eq!(table.top_holder(&[me]), Some(me));
        assert!(
            table
                .children_of(std::os::unix::process::parent_id())
                .any(|pid| pid == me),
            "parents read in the same pass"
        );
        let id = identity(Path::new("/proc"), me);
        assert!(!id.comm.is_empty() && !id.cmdline.is_empty());
    }
}
