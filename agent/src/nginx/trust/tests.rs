//! Tests of `trust.rs`: parsing, the decision table, and real user namespaces.
use super::*;
use std::{
    process::{Child, Command},
    time::{Duration, Instant},
};

const STATUS: &str = "Name:\tnginx\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7\n\
                      Uid:\t101000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";

#[test]
fn uids_and_uid_maps_parse() {
    assert_eq!(
        parse_uids(STATUS),
        Some(Uids {
            real: 101000,
            effective: 0
        })
    );
    assert_eq!(parse_uids("Uid:\t1\n"), None, "effective uid missing");
    assert_eq!(parse_uids("Gid:\t0\t0\t0\t0\n"), None);
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    // SAFETY: getuid/geteuid cannot fail.
    let (real, effective) = unsafe { (libc::getuid(), libc::geteuid()) };
    assert_eq!(parse_uids(&own), Some(Uids { real, effective }));

    let map = parse_uid_map("         0     100000      65536\n    70000 0 1\n").unwrap();
    assert_eq!(
        map,
        [
            UidRange {
                inside: 0,
                outside: 100000,
                count: 65536
            },
            UidRange {
                inside: 70000,
                outside: 0,
                count: 1
            }
        ]
    );
    assert_eq!(inside_uid(&map, 100000), Some(0));
    assert_eq!(inside_uid(&map, 101000), Some(1000));
    assert_eq!(inside_uid(&map, 165536), None, "one past the range");
    assert_eq!(inside_uid(&map, 0), Some(70000));
    assert_eq!(inside_uid(&map, 99999), None);
    assert_eq!(parse_uid_map("0 1\n"), None);
    assert_eq!(parse_uid_map("0 x 1\n"), None);
}

#[test]
fn decision_table() {
    let uids = |real, effective| Uids { real, effective };
    let runtime = ForeignNamespace {
        owner: 0,
        uid_map: parse_uid_map("0 100000 65536").unwrap(),
    };
    let unshared = ForeignNamespace {
        owner: 1000,
        uid_map: parse_uid_map("0 1000 1").unwrap(),
    };
    assert_eq!(decide(uids(0, 0), None), Ok(Trusted::Root));
    assert_eq!(
        decide(uids(0, 0), Some(&unshared)),
        Ok(Trusted::Root),
        "uid 0 as the agent sees it is root wherever it runs"
    );
    assert_eq!(
        decide(uids(65534, 65534), None),
        Err(Untrusted::NotRoot(uids(65534, 65534)))
    );
    // A setuid-root program started by a user: effective root is not enough.
    assert_eq!(
        decide(uids(1000, 0), None),
        Err(Untrusted::NotRoot(uids(1000, 0)))
    );
    assert_eq!(
        decide(uids(1000, 1000), Some(&unshared)),
        Err(Untrusted::NamespaceOwner { owner: 1000 }),
        "`unshare -r` by a user: root inside, but the namespace is the user's"
    );
    assert_eq!(
        decide(uids(100000, 100000), Some(&runtime)),
        Ok(Trusted::NamespaceRoot)
    );
    assert_eq!(
        decide(uids(101000, 101000), Some(&runtime)),
        Err(Untrusted::NotRootInNamespace {
            uids: uids(101000, 101000),
            inside: Some(1000)
        })
    );
    assert_eq!(
        decide(uids(100000, 101000), Some(&runtime)),
        Err(Untrusted::NotRootInNamespace {
            uids: uids(100000, 101000),
            inside: Some(1000)
        })
    );
    assert_eq!(
        decide(uids(5, 5), Some(&runtime)),
        Err(Untrusted::NotRootInNamespace {
            uids: uids(5, 5),
            inside: None
        })
    );
    let text = Untrusted::NamespaceOwner { owner: 65534 }.to_string();
    assert!(text.contains("owned by uid 65534"), "{text}");
}

/// `unshare -r sleep 30`, as nobody when the test runs as root (root's own namespaces are
/// root's); returns once the child is in its new namespace.
fn unshared_sleeper() -> (Child, u32) {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mut cmd = if euid == 0 {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "unshare",
        ]);
        c
    } else {
        Command::new("unshare")
    };
    let child = cmd.args(["-r", "sleep", "30"]).spawn().unwrap();
    let ours = std::fs::read_link("/proc/self/ns/user").unwrap();
    let ns = format!("/proc/{}/ns/user", child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(&ns).ok().is_none_or(|ns| ns == ours) {
        assert!(
            Instant::now() < deadline,
            "child never entered a new user namespace"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, if euid == 0 { 65534 } else { euid })
}

#[test]
fn a_user_namespace_made_by_a_user_is_not_trusted() {
    let (mut child, owner) = unshared_sleeper();
    let proc = ProcDir::open(Path::new("/proc"), child.id()).unwrap();
    let ns = proc.open_at("ns/user", libc::O_RDONLY).unwrap();
    assert_eq!(namespace_owner(&ns).unwrap(), owner);
    let verdict = check(&proc);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(verdict, Err(Untrusted::NamespaceOwner { owner }));
    let me = ProcDir::open(Path::new("/proc"), std::process::id()).unwrap();
    // SAFETY: getuid/geteuid cannot fail.
    let root = unsafe { libc::getuid() == 0 && libc::geteuid() == 0 };
    assert_eq!(check(&me).is_ok(), root);
}
