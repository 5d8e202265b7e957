//! The crash reason end to end: a python upstream dies of an import error and
//! `vigil-agent inspect --watch` reports, with its exit, the last lines it wrote to stderr,
//! read from where they went: the file on its fd 2, its unit's journal (a real journal file
//! written by systemd's journal writer, the process in a real `.service` cgroup), or its pod's
//! container log (a real `kubepods…pod<uid>…/cri-containerd-<id>.scope` cgroup, a CRI log
//! under the test's own /var/log/pods tree).
use std::{
    process::Stdio,
    time::{Duration, SystemTime},
};

use serde_json::Value;
use vigil_e2e::{
    agent::Inspect,
    crash::{cri_shim, write_journal, Cgroup, CrashingUpstream, CRASH_LINE},
    scratch_dir,
};

/// Watches `port` while `upstream` crashes; the listener_gone change and the last snapshot's
/// state of the port.
fn watch_crash(upstream: &mut CrashingUpstream, env: &[(&str, &str)]) -> (Value, Value) {
    let port = upstream.port;
    let watch = Inspect::watch_with_env(
        &[
            "--ports",
            &port.to_string(),
            "--interval",
            "300ms",
            "--duration",
            "4s",
        ],
        env,
    );
    // Time for the agent to see the listener and settle where its owner's stderr goes.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(upstream.crash(), 1, "python exits 1 on the import error");
    let lines = watch.finish();
    let gone = lines
        .iter()
        .find(|l| l["kind"] == "change" && l["change"] == "listener_gone" && l["port"] == port)
        .unwrap_or_else(|| panic!("no listener_gone in {lines:#?}"))
        .clone();
    let state = lines
        .iter()
        .rev()
        .find(|l| l["kind"] == "snapshot")
        .and_then(|s| {
            s["upstreams"]
                .as_array()?
                .iter()
                .find(|u| u["port"] == port)
                .cloned()
        })
        .expect("a snapshot with our port");
    (gone, state)
}

fn tail(exit: &Value) -> Vec<&str> {
    exit["stderr_tail"]
        .as_array()
        .unwrap_or_else(|| panic!("no stderr_tail in {exit}"))
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect()
}

/// The same exit, with the same tail, in the change and in the state sent afterwards.
fn exit_of(gone: &Value, state: &Value, pid: u32) -> Value {
    let exit = gone["exit"].clone();
    assert_eq!(exit["pid"], pid, "the owner's exit: {gone}");
    assert_eq!(exit["status"], 1);
    assert_eq!(
        state["last_exit"], exit,
        "the state carries what the change did"
    );
    exit
}

#[test]
fn crash_reason_is_the_tail_of_the_file_on_fd2() {
    let dir = scratch_dir("crash-file");
    let path = dir.join("app.err");
    let mut upstream = CrashingUpstream::start(Stdio::from(std::fs::File::create(&path).unwrap()));
    let pid = upstream.child.id();
    let (gone, state) = watch_crash(&mut upstream, &[]);
    let exit = exit_of(&gone, &state, pid);
    assert_eq!(exit["stderr_source"], format!("file:{}", path.display()));
    let lines = tail(&exit);
    assert_eq!(
        lines[0],
        "worker booting, settings from /srv/app/settings.py"
    );
    assert_eq!(lines[1], "Traceback (most recent call last):");
    assert_eq!(lines.last(), Some(&CRASH_LINE));
    assert_eq!(
        lines.len(),
        4,
        "boot line, the traceback's three: {lines:?}"
    );
}

#[test]
fn crash_reason_is_the_units_journal_tail() {
    let me = std::process::id();
    let unit = format!("vigil-crash-{me}.service");
    let dir = scratch_dir("crash-journal");
    let journal_dir = dir.join("journal");
    std::fs::create_dir_all(journal_dir.join("4f2a0c1d9e8b7a6f5e4d3c2b1a091807")).unwrap();
    let cgroup = Cgroup::create(&format!("vigil-e2e-{me}.slice/{unit}"));
    // Under a unit, stderr is journald's stream socket, not a file: nothing on fd 2 to read.
    let mut upstream = CrashingUpstream::start(Stdio::null());
    cgroup.add(upstream.child.id());
    let now_us = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let an_hour_ago = now_us - 3_600_000_000;
    let this_run = [
        "worker booting, settings from /srv/app/settings.py",
        "Traceback (most recent call last):",
        "  File \"/srv/app/wsgi.py\", line 3, in <module>",
        "ModuleNotFoundError: No module named 'flask'",
    ];
    let mut entries = vec![
        (unit.as_str(), an_hour_ago, "the previous run's last words"),
        ("nginx.service", now_us, "reload"),
    ];
    for (i, line) in this_run.iter().enumerate() {
        entries.push((unit.as_str(), now_us + 10 + i as u64 * 10, line));
        entries.push((
            "cron.service",
            now_us + 15 + i as u64 * 10,
            "(root) CMD (noise)",
        ));
    }
    write_journal(
        &journal_dir.join("4f2a0c1d9e8b7a6f5e4d3c2b1a091807/system.journal"),
        &entries,
    );
    let pid = upstream.child.id();
    let env = [("VIGIL_JOURNAL_DIRS", journal_dir.to_str().unwrap())];
    let (gone, state) = watch_crash(&mut upstream, &env);
    assert_eq!(gone["last_owner"]["unit"], unit.as_str());
    let exit = exit_of(&gone, &state, pid);
    assert_eq!(exit["stderr_source"], format!("journal:{unit}"));
    assert_eq!(tail(&exit), this_run, "this run's lines only, in order");
}

#[test]
fn crash_reason_is_the_pods_container_log_tail() {
    let me = std::process::id();
    let pod_uid = format!("5e0c3f1a-7b2d-4c9e-8f10-{me:012}");
    let container_id = format!("{me:08x}{}", "c0ffee".repeat(9))
        .chars()
        .take(64)
        .collect::<String>();
    let dir = scratch_dir("crash-pod");
    let (pods, containers) = (dir.join("pods"), dir.join("containers"));
    let pod_dir = pods.join(format!("shop_checkout-7d9f_{pod_uid}"));
    std::fs::create_dir_all(pod_dir.join("app")).unwrap();
    std::fs::create_dir_all(pod_dir.join("istio-proxy")).unwrap();
    std::fs::write(
        pod_dir.join("istio-proxy/0.log"),
        "T stderr F envoy noise\n",
    )
    .unwrap();
    std::fs::create_dir_all(&containers).unwrap();
    // kubelet's link, with the host's path as its target.
    std::os::unix::fs::symlink(
        format!("/var/log/pods/shop_checkout-7d9f_{pod_uid}/app/0.log"),
        containers.join(format!("checkout-7d9f_shop_app-{container_id}.log")),
    )
    .unwrap();
    let cgroup = Cgroup::create(&format!(
        "vigil-e2e-{me}.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{container_id}.scope",
        pod_uid.replace('-', "_")
    ));
    let mut upstream = CrashingUpstream::start(Stdio::piped());
    cgroup.add(upstream.child.id());
    // Lines longer than 24 bytes reach the log as P partials, as containerd splits long ones.
    let shim = cri_shim(
        upstream.child.stderr.take().unwrap(),
        &pod_dir.join("app/0.log"),
        24,
    );
    let pid = upstream.child.id();
    let env = [
        ("VIGIL_POD_LOGS_DIR", pods.to_str().unwrap()),
        ("VIGIL_CONTAINER_LOGS_DIR", containers.to_str().unwrap()),
    ];
    let (gone, state) = watch_crash(&mut upstream, &env);
    shim.join().unwrap();
    assert_eq!(gone["last_owner"]["pod_uid"], pod_uid.as_str());
    let exit = exit_of(&gone, &state, pid);
    assert_eq!(exit["stderr_source"], "pod:shop/checkout-7d9f/app");
    let lines = tail(&exit);
    assert_eq!(
        lines[0],
        "worker booting, settings from /srv/app/settings.py"
    );
    assert_eq!(lines[1], "Traceback (most recent call last):");
    assert_eq!(lines.last(), Some(&CRASH_LINE));
}
