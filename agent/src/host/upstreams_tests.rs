//! The tracker against real listeners: one that comes and goes, and a python owner that
//! dies of an import error with its stderr in a file.
use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::*;

/// A python listener whose stderr goes to a file; on a line from us it dies of an import.
const CRASHING: &str = r#"
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
print("starting worker", file=sys.stderr, flush=True)
sys.stdin.readline()
import vigil_missing_dependency
"#;

#[test]
fn a_lost_listener_waits_for_and_carries_its_owners_stderr() {
    let dir = std::env::temp_dir().join(format!("vigil-upstreams-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err_path = dir.join("app.err");
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", CRASHING])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let pid = child.id();
    let mut tracker = UpstreamTracker::new(BTreeSet::from([port]));
    assert!(matches!(
        &tracker.refresh(1)[..],
        [UpstreamChange::ListenerUp { .. }]
    ));
    assert!(
        matches!(tracker.stderr_plans.get(&pid), Some(Some(_))),
        "plan settled"
    );
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    // What the exit probe would report (the probes need root and BPF; not here).
    let code = status.code().unwrap() << 8;
    tracker.record_exit(ProcessExitInfo::from_exit_code(
        pid,
        "python3".into(),
        2,
        code,
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut changes = Vec::new();
    while changes.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        changes = tracker.refresh(3);
    }
    let [UpstreamChange::ListenerGone {
        exit: Some(exit), ..
    }] = &changes[..]
    else {
        panic!("one loss with its exit: {changes:?}");
    };
    assert_eq!(exit.status, Some(1));
    assert_eq!(exit.stderr_source, format!("file:{}", err_path.display()));
    assert_eq!(
        exit.stderr_tail.first().map(String::as_str),
        Some("starting worker")
    );
    assert_eq!(
        exit.stderr_tail.last().map(String::as_str),
        Some("ModuleNotFoundError: No module named 'vigil_missing_dependency'")
    );
    let state = tracker.states().next().unwrap();
    assert_eq!(
        state.last_exit.as_ref(),
        Some(exit),
        "the state carries it too"
    );
    assert!(
        tracker.stderr_plans.is_empty(),
        "read once: the plan is consumed"
    );
    assert_eq!(tracker.crash_reader.stats.reads, 1);
}

#[test]
fn sees_a_listener_come_and_go() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut tracker = UpstreamTracker::new(BTreeSet::from([port]));
    let changes = tracker.refresh(1);
    assert!(
        matches!(&changes[..], [UpstreamChange::ListenerUp { owner: Some(o), .. }] if o.pid == std::process::id())
    );
    assert!(tracker.pids_to_watch().contains(&std::process::id()));
    drop(listener);
    let changes = tracker.refresh(2);
    assert!(matches!(
        &changes[..],
        [UpstreamChange::ListenerGone { .. }]
    ));
    let state = tracker.states().next().unwrap();
    assert_eq!(state.gone_since, Some(2));
    assert_eq!(state.last_owner.as_ref().unwrap().pid, std::process::id());
    assert_eq!(state.last_addr.map(|a| a.port()), Some(port));
    assert_eq!(state.upstream, format!("127.0.0.1:{port}"));
    tracker.set_destinations(BTreeMap::from([(port, format!("app.local:{port}"))]));
    let state = tracker.states().next().unwrap();
    assert_eq!(
        state.upstream,
        format!("app.local:{port}"),
        "nginx's name wins"
    );
}
