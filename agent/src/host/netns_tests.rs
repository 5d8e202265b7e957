use std::{
    fs::File,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use std::os::fd::OwnedFd;

use super::{worker::visit, *};

/// A python listener on 0.0.0.0:`port` in a network namespace of its own (`unshare --net`),
/// loopback up; killed on drop.
struct InOwnNetns(Child);

impl InOwnNetns {
    fn listen(port: u16) -> InOwnNetns {
        let script = format!(
            "import socket,sys\n\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('0.0.0.0', {port})); s.listen(7)\n\
             print('listening', flush=True); sys.stdin.read()"
        );
        let mut child = Command::new("unshare")
            .args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && exec python3 -c \"$0\"",
            ])
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare and python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "listening", "python did not start");
        InOwnNetns(child)
    }
}

impl Drop for InOwnNetns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn namespace_links_parse() {
    assert_eq!(parse_ns_link("net:[4026531840]"), Some(4026531840));
    assert_eq!(parse_ns_link("mnt:[4026531840]"), None);
    assert_eq!(parse_ns_link("net:[x]"), None);
}

#[test]
fn sees_a_listener_in_another_namespace_and_its_addresses() {
    let port = free_port();
    let child = InOwnNetns::listen(port);
    let proc_root = Path::new("/proc");
    let mut reader = NamespaceReader::new(proc_root);
    let theirs = netns_of(proc_root, child.0.id()).expect("the child's namespace");
    assert_ne!(Some(theirs), reader.own(), "unshare --net made a new one");
    let views = reader.read(&BTreeSet::from([port])).expect("own dump");
    assert!(views[0].own);
    assert!(
        views[0].listeners.iter().all(|l| l.addr.port() != port),
        "not in the agent's namespace"
    );
    let view = views
        .iter()
        .find(|v| v.id == theirs)
        .unwrap_or_else(|| panic!("namespace {theirs:?} read among {}", views.len()));
    assert!(!view.own);
    let listener = view.listeners.iter().find(|l| l.addr.port() == port);
    let listener = listener.expect("the child's listener");
    assert_eq!(listener.backlog, 7);
    assert!(
        view.addrs.contains(&"127.0.0.1".parse().unwrap()),
        "{:?}",
        view.addrs
    );
    assert!(reader.stats.namespaces >= 2);
    // Only the wanted ports are kept.
    assert!(view.listeners.iter().all(|l| l.addr.port() == port));
    // The worker went home: a second read sees the same.
    let again = reader.read(&BTreeSet::from([port])).unwrap();
    assert!(again
        .iter()
        .any(|v| v.id == theirs && !v.listeners.is_empty()));
    assert_eq!(reader.own(), netns_of(proc_root, std::process::id()));
}

#[test]
fn the_bound_on_namespaces_is_counted() {
    let _a = InOwnNetns::listen(free_port());
    let _b = InOwnNetns::listen(free_port());
    let proc_root = Path::new("/proc");
    let own = netns_of(proc_root, std::process::id());
    let all = scan(proc_root, own, usize::MAX);
    assert!(all.others.len() >= 2, "two namespaces of ours at least");
    let one = scan(proc_root, own, 1);
    assert_eq!(one.others.len(), 1);
    assert_eq!(one.skipped, all.others.len() - 1);
}

#[test]
fn a_recycled_pid_is_not_entered() {
    let proc_root = Path::new("/proc");
    let home = File::open("/proc/thread-self/ns/net").unwrap();
    let me = std::process::id();
    let wrong = NetnsId(1);
    let err = visit(proc_root, wrong, me, &OwnedFd::from(home), &BTreeSet::new()).unwrap_err();
    assert!(
        matches!(err, NetnsError::Moved { expected: 1, .. }),
        "{err}"
    );
}
