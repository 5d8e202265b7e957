//! Pod-like shapes on one machine: two network namespaces the test makes (`ip netns add`),
//! joined by a veth pair whose addresses come from TEST-NET-1 (192.0.2.0/24, reserved for
//! documentation) and exist only inside those namespaces, so traffic never leaves them; and
//! cgroups shaped like kubelet's (`kubepods-…-pod<uid>.slice/cri-containerd-<id>.scope`)
//! under a parent of the test's own in the cgroup v2 hierarchy. Everything is removed on
//! drop, also when the test fails.
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 installed")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces `a` and `b`, linked: `a_ip` in a, `b_ip` in b, loopback up in both.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub a_ip: Ipv4Addr,
    pub b_ip: Ipv4Addr,
}

impl NetnsPair {
    pub fn create(tag: &str) -> NetnsPair {
        let id = std::process::id();
        // A /30 of TEST-NET-1 per test process: nothing else here uses these addresses.
        let base = 4 * (id % 63) as u8;
        let pair = NetnsPair {
            a: format!("vigil-{tag}-{id}-a"),
            b: format!("vigil-{tag}-{id}-b"),
            a_ip: Ipv4Addr::new(192, 0, 2, base + 1),
            b_ip: Ipv4Addr::new(192, 0, 2, base + 2),
        };
        pair.remove();
        let (veth_a, veth_b) = (
            format!("vga{}", id % 100_000),
            format!("vgb{}", id % 100_000),
        );
        ip_ok(&["netns", "add", &pair.a]);
        ip_ok(&["netns", "add", &pair.b]);
        ip_ok(&[
            "link", "add", &veth_a, "netns", &pair.a, "type", "veth", "peer", "name", &veth_b,
            "netns", &pair.b,
        ]);
        for (ns, dev, addr) in [(&pair.a, &veth_a, pair.a_ip), (&pair.b, &veth_b, pair.b_ip)] {
            let cidr = format!("{addr}/30");
            ip_ok(&["-n", ns, "addr", "add", &cidr, "dev", dev]);
            ip_ok(&["-n", ns, "link", "set", dev, "up"]);
            ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    /// `program` run inside namespace `ns` (`ip netns exec`: it execs, so the child's pid
    /// is the program's).
    pub fn command(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }

    fn remove(&self) {
        // Deleting a namespace deletes the veth in it, and with it its peer.
        for ns in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `net:[4026532281]` of a process: its network namespace's inode.
pub fn netns_inode(pid: u32) -> u64 {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let link = link.to_string_lossy();
    link.trim_start_matches("net:[")
        .trim_end_matches(']')
        .parse()
        .unwrap()
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on a hybrid host).
pub fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mounts
        .lines()
        .find_map(|line| {
            let (fields, fs) = line.split_once(" - ")?;
            if !fs.starts_with("cgroup2 ") {
                return None;
            }
            fields.split(' ').nth(4).map(PathBuf::from)
        })
        .expect("a cgroup v2 hierarchy is mounted")
}

/// A tree of cgroups under `<cgroup2>/vigil-<tag>-<pid>.slice`; removed (children first)
/// on drop, once the processes in it are gone.
pub struct CgroupTree {
    pub root: PathBuf,
    /// The parent's path as /proc/PID/cgroup shows it in the node's namespace.
    pub path: String,
    made: Vec<PathBuf>,
}

impl CgroupTree {
    pub fn create(tag: &str) -> CgroupTree {
        let name = format!("vigil-{tag}-{}.slice", std::process::id());
        let root = cgroup2_root().join(&name);
        let mut tree = CgroupTree {
            root: root.clone(),
            path: format!("/{name}"),
            made: Vec::new(),
        };
        tree.mkdir(Path::new(""));
        tree
    }

    /// Creates `relative` (and its parents) under the tree; its node-wide path.
    pub fn mkdir(&mut self, relative: &Path) -> String {
        let mut dir = self.root.clone();
        for part in std::iter::once(Path::new("")).chain(relative.iter().map(Path::new)) {
            dir = dir.join(part);
            if !dir.exists() {
                std::fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                self.made.push(dir.clone());
            }
        }
        format!("{}/{}", self.path, relative.display())
            .trim_end_matches('/')
            .to_owned()
    }

    /// Moves `pid` into `relative`.
    pub fn enter(&self, relative: &Path, pid: u32) {
        let procs = self.root.join(relative).join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", procs.display()));
    }

    /// A kubelet-like pod cgroup (systemd driver) for `uid`, container `id`: its relative path.
    pub fn pod(&mut self, uid: &str, container: &str) -> PathBuf {
        let slice = format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_"));
        let relative = PathBuf::from(slice).join(format!("cri-containerd-{container}.scope"));
        self.mkdir(&relative);
        relative
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            // Processes leave a cgroup when they exit; a moment for the last to go.
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}
