//! Tests of `discover.rs`.
use super::*;
use crate::test_support::TempDir;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

fn fake_process(root: &Path, pid: u32, comm: &str, cmdline: &[u8], ppid: u32) {
    let dir = root.join(pid.to_string());
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
    fs::write(dir.join("cmdline"), cmdline).unwrap();
    fs::write(
        dir.join("stat"),
        format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560\n"),
    )
    .unwrap();
}

#[test]
fn finds_masters_and_workers_in_a_fake_proc() {
    let root = TempDir::new("proc");
    let r = root.0.as_path();
    fake_process(
        r,
        100,
        "nginx",
        b"nginx: master process /usr/sbin/nginx -p /tmp/x -c /tmp/x/nginx.conf\0",
        1,
    );
    symlink("/usr/sbin/nginx (deleted)", r.join("100/exe")).unwrap();
    fake_process(r, 102, "nginx", b"nginx: worker process\0\0\0\0\0\0", 100);
    fake_process(r, 101, "nginx", b"nginx: worker process\0\0\0\0\0\0", 100);
    fake_process(r, 103, "nginx", b"nginx: cache manager process\0\0", 100);
    fake_process(r, 104, "bash", b"bash\0", 100);
    // Binary upgrade: a new master is a child of the old one, not its worker.
    fake_process(
        r,
        300,
        "nginx",
        b"nginx: master process nginx -g daemon off; -c/etc/n.conf\0",
        100,
    );
    fake_process(r, 301, "nginx", b"nginx: worker process\0", 300);
    // Started as `cd /srv/www && nginx -p site -c conf/n.conf`.
    fake_process(
        r,
        500,
        "nginx",
        b"nginx: master process nginx -p site -c conf/n.conf\0",
        1,
    );
    symlink("/srv/www", r.join("500/cwd")).unwrap();
    fs::create_dir_all(r.join("400")).unwrap(); // vanished process: no files
    fs::create_dir_all(r.join("sys")).unwrap();

    let found = find_nginx(r).unwrap();
    assert_eq!(found.len(), 3);
    assert_eq!(
        found[0],
        NginxInstance {
            master_pid: 100,
            worker_pids: vec![101, 102, 103],
            exe: "/usr/sbin/nginx".into(),
            conf_path: Some("/tmp/x/nginx.conf".into()),
            prefix: Some("/tmp/x".into()),
        }
    );
    assert_eq!(
        (found[1].master_pid, &found[1].worker_pids),
        (300, &vec![301])
    );
    assert_eq!(
        found[1].exe,
        PathBuf::from("nginx"),
        "falls back to argv[0]"
    );
    assert_eq!(
        (found[1].conf_path.as_deref(), found[1].prefix.as_deref()),
        (Some(Path::new("/etc/n.conf")), None)
    );
    assert_eq!(
        (found[2].conf_path.as_deref(), found[2].prefix.as_deref()),
        (
            Some(Path::new("conf/n.conf")),
            Some(Path::new("/srv/www/site"))
        ),
        "a relative -p is resolved against the master's cwd; -c stays relative to it"
    );
    assert!(find_nginx(&r.join("missing")).is_err());
}

#[test]
fn master_args_edge_cases() {
    assert_eq!(
        MasterArgs::parse("nginx: master process"),
        MasterArgs::default()
    );
    let args = MasterArgs::parse("nginx: master process nginx -é -p");
    assert_eq!((args.argv0.as_deref(), args.prefix), (Some("nginx"), None));
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

// One test for every spawned script: parallel tests forking while another
// thread still holds a script open for writing would cause ETXTBSY.
#[test]
fn config_dump_outcomes() {
    let dir = TempDir::new("dump");
    let ok = script(
        &dir.0,
        "ok",
        "echo \"# configuration file /x/nginx.conf:\"; echo \"args: $*\"",
    );
    let denied = script(&dir.0, "denied", "echo 'nginx: [emerg] open() \"/etc/nginx/nginx.conf\" failed (13: Permission denied)' >&2; exit 1");
    let broken = script(
        &dir.0,
        "broken",
        "echo 'nginx: [emerg] unknown directive \"x\"' >&2; exit 1",
    );
    let slow = script(&dir.0, "slow", "exec sleep 5");

    let out = run_config_dump(
        &ok,
        Some(Path::new("/p")),
        Some(Path::new("/p/n.conf")),
        DEFAULT_DUMP_TIMEOUT,
    )
    .unwrap();
    assert_eq!(
        out,
        "# configuration file /x/nginx.conf:\nargs: -T -p /p -c /p/n.conf\n"
    );

    let err = run_config_dump(&denied, None, None, DEFAULT_DUMP_TIMEOUT).unwrap_err();
    assert!(
        matches!(&err, DumpError::Failed { hint: Some(_), stderr, .. } if stderr.contains("13: Permission denied"))
    );
    assert!(err.to_string().contains("run vigil as root"), "{err}");

    let err = run_config_dump(&broken, None, None, DEFAULT_DUMP_TIMEOUT).unwrap_err();
    assert!(
        matches!(&err, DumpError::Failed { hint: None, stderr, .. } if stderr.contains("unknown directive"))
    );

    let started = Instant::now();
    let err = run_config_dump(&slow, None, None, Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, DumpError::Timeout { .. }));
    assert!(started.elapsed() < Duration::from_secs(4));

    let err = run_config_dump(&dir.0.join("absent"), None, None, DEFAULT_DUMP_TIMEOUT).unwrap_err();
    assert!(matches!(err, DumpError::Spawn { .. }));
}
