//! Tests of `discover.rs` on a fake /proc (files and symlinks in a temp dir).
use super::*;
use crate::test_support::TempDir;
use std::fs;
use std::os::unix::fs::symlink;

const ROOT_STATUS: &str = "Name:\tnginx\nUid:\t0\t0\t0\t0\n";

fn fake_process(root: &Path, pid: u32, comm: &str, cmdline: &[u8], ppid: u32) -> PathBuf {
    fake_process_as(root, pid, comm, cmdline, ppid, ROOT_STATUS)
}

fn fake_process_as(
    root: &Path,
    pid: u32,
    comm: &str,
    cmdline: &[u8],
    ppid: u32,
    status: &str,
) -> PathBuf {
    let dir = root.join(pid.to_string());
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
    fs::write(dir.join("cmdline"), cmdline).unwrap();
    fs::write(dir.join("status"), status).unwrap();
    fs::write(
        dir.join("stat"),
        format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560\n"),
    )
    .unwrap();
    dir
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
    fake_process(
        r,
        500,
        "nginx",
        b"nginx: master process nginx -p site -c conf/n.conf\0",
        1,
    );
    fs::create_dir_all(r.join("400")).unwrap(); // vanished process: no files
    fs::create_dir_all(r.join("sys")).unwrap();

    let found = find_nginx(r).unwrap();
    assert_eq!(found.ignored, []);
    let instances: Vec<&NginxInstance> = found.masters.iter().map(|m| &m.instance).collect();
    assert_eq!(instances.len(), 3);
    assert_eq!(
        instances[0],
        &NginxInstance {
            master_pid: 100,
            worker_pids: vec![101, 102, 103],
            conf_arg: Some("/tmp/x/nginx.conf".into()),
            prefix_arg: Some("/tmp/x".into()),
            trusted: Trusted::Root,
        }
    );
    assert_eq!(
        (instances[1].master_pid, &instances[1].worker_pids),
        (300, &vec![301])
    );
    assert_eq!(
        (
            instances[1].conf_arg.as_deref(),
            instances[1].prefix_arg.as_deref()
        ),
        (Some(Path::new("/etc/n.conf")), None)
    );
    assert_eq!(
        (
            instances[2].conf_arg.as_deref(),
            instances[2].prefix_arg.as_deref()
        ),
        (Some(Path::new("conf/n.conf")), Some(Path::new("site")))
    );
    assert!(find_nginx(&r.join("missing")).is_err());
}

#[test]
fn masters_not_run_by_root_are_ignored_with_the_reason() {
    let root = TempDir::new("proc");
    let r = root.0.as_path();
    let forged = fake_process_as(
        r,
        200,
        "nginx",
        b"nginx: master process /tmp/x/nginx -c /tmp/x/evil.conf\0",
        1,
        "Name:\tnginx\nUid:\t65534\t65534\t65534\t65534\n",
    );
    // In the agent's own user namespace: a plain unprivileged user.
    fs::create_dir_all(forged.join("ns")).unwrap();
    symlink("/proc/self/ns/user", forged.join("ns/user")).unwrap();
    fake_process_as(
        r,
        210,
        "nginx",
        b"nginx: master process nginx\0",
        1,
        "Name:\tnginx\n",
    );
    fake_process(r, 201, "nginx", b"nginx: worker process\0", 200);

    let found = find_nginx(r).unwrap();
    assert!(found.masters.is_empty());
    assert_eq!(found.ignored.len(), 2);
    assert_eq!(found.ignored[0].pid, 200);
    assert!(
        found.ignored[0].reason.contains("runs as uid 65534"),
        "{:?}",
        found.ignored[0]
    );
    assert!(
        found.ignored[1].reason.contains("cannot read its uids"),
        "{:?}",
        found.ignored[1]
    );
}

#[test]
fn paths_come_from_the_arguments_the_binary_and_the_working_directory() {
    let proc = TempDir::new("proc");
    let rootfs = TempDir::new("rootfs");
    fs::create_dir_all(rootfs.0.join("srv/www")).unwrap();
    let r = proc.0.as_path();
    for (pid, cmdline) in [
        (10, &b"nginx: master process /usr/sbin/nginx\0"[..]),
        (11, b"nginx: master process nginx -c rel.conf\0"),
        (12, b"nginx: master process nginx -p site -c conf/n.conf\0"),
    ] {
        let dir = fake_process(r, pid, "nginx", cmdline, 1);
        symlink("/usr/sbin/nginx", dir.join("exe")).unwrap();
        symlink(&rootfs.0, dir.join("root")).unwrap();
        // The kernel prints a chrooted cwd from the agent's view: under the root's path.
        symlink(rootfs.0.join("srv/www"), dir.join("cwd")).unwrap();
    }
    let found = find_nginx(r).unwrap();
    let paths: Vec<MasterPaths> = found.masters.iter().map(|m| m.paths().unwrap()).collect();
    let expect = |prefix: &str, conf: &str| MasterPaths {
        prefix: prefix.into(),
        conf_file: conf.into(),
    };
    assert_eq!(
        paths,
        [
            expect("/usr/share/nginx", "/etc/nginx/nginx.conf"),
            expect("/usr/share/nginx", "/usr/share/nginx/rel.conf"),
            expect("/srv/www/site", "/srv/www/site/conf/n.conf"),
        ]
    );
    let root = found.masters[0].root().unwrap();
    assert_eq!(root.id(), RootDir::open(&rootfs.0).unwrap().id());
}

#[test]
fn master_args_edge_cases() {
    assert_eq!(
        MasterArgs::parse("nginx: master process"),
        MasterArgs::default()
    );
    let args = MasterArgs::parse("nginx: master process nginx -é -p");
    assert_eq!(args, MasterArgs::default());
    let args = MasterArgs::parse("nginx: master process /x/nginx -c -p");
    assert_eq!(
        args.conf.as_deref(),
        Some(Path::new("-p")),
        "as nginx reads it"
    );
}
