//! The agent believes only root nginx masters and reads their configuration as files inside
//! their root: a master forged by an unprivileged user is ignored and nothing it names is run,
//! and a chrooted nginx's includes cannot reach host files through symlinks or `..`.
use std::{fs, os::unix::fs::symlink, process::Command, time::Duration};

use serde_json::Value;
use vigil_e2e::{
    agent::Inspect,
    elsewhere::{
        as_root_of_a_user_namespace, bad_gateway_a_few_times, chown_to_userns_root,
        inspect_with_log, make_executable, nginx_chroot, nginx_snapshot, seen_upstream_error,
        shared_dir, start_chrooted_nginx, strings, write_files, Running, USERNS_BASE,
    },
    free_port, scratch_dir, wait_for,
};

const AS_NOBODY: [&str; 5] = ["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"];

fn ignored_reason(nginx: &Value, pid: u32) -> String {
    let ignored = nginx["ignored_masters"]
        .as_array()
        .expect("ignored_masters");
    let entry = ignored
        .iter()
        .find(|m| m["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not among the ignored masters: {nginx}"));
    entry["reason"].as_str().unwrap().to_owned()
}

#[test]
fn forged_masters_run_by_nobody_are_ignored_and_nothing_is_run() {
    let dir = shared_dir("forged");
    let d = dir.display();
    // The forged "binary" is bash named nginx: `EXE -T -c CONF`, what the agent used to run
    // as root, is `bash -T -c CONF`, which runs CONF as a program.
    let exe = dir.join("nginx");
    fs::copy("/bin/bash", &exe).unwrap();
    make_executable(&exe);
    let marker = dir.join("marker");
    let evil = format!("#!/bin/sh\ntouch {}\n", marker.display());
    write_files(
        &dir,
        &[
            ("evil.conf", &evil),
            ("loop.sh", "while :; do sleep 1; done\n"),
        ],
    );
    make_executable(&dir.join("evil.conf"));
    let title = format!("nginx: master process {d}/nginx -c {d}/evil.conf");
    let script = format!("exec -a '{title}' {d}/nginx {d}/loop.sh");
    let spawn = |prefix: &[&str]| {
        let child = Command::new("setpriv")
            .args(AS_NOBODY)
            .args(prefix)
            .args(["bash", "-c", &script])
            .spawn()
            .unwrap();
        Running(child).wait_titled(&title)
    };
    let plain = spawn(&[]);
    // uid 0 in a user namespace of its own: `unshare -r` makes anyone root there.
    let unshared = spawn(&["unshare", "-r"]);

    let port = free_port().to_string();
    let (lines, log) = inspect_with_log(&["--ports", &port, "--interval", "300ms"]);
    assert!(
        !marker.exists(),
        "the agent ran the forged master's binary as root"
    );
    let n = nginx_snapshot(&lines);
    let masters = n["master_pids"].as_array().unwrap();
    for forged in [&plain, &unshared] {
        assert!(!masters.contains(&Value::from(forged.pid())), "{n}");
    }
    let reason = ignored_reason(n, plain.pid());
    assert!(reason.contains("runs as uid 65534"), "{reason}");
    let reason = ignored_reason(n, unshared.pid());
    assert!(reason.contains("owned by uid 65534"), "{reason}");
    for forged in [&plain, &unshared] {
        let logged = log
            .lines()
            .filter(|l| l.contains("ignoring a process titled as an nginx master"))
            .filter(|l| l.contains(&format!("pid={}", forged.pid())))
            .count();
        assert_eq!(logged, 1, "logged once with its reason:\n{log}");
    }
    let evil_conf = format!("{d}/evil.conf");
    assert!(
        !lines.iter().any(|l| l.to_string().contains(&evil_conf)),
        "nothing from the forged master's config"
    );
}

/// Free ports for the chrooted nginx: what it listens on and proxies to.
struct Ports {
    listen: u16,
    upstream: u16,
    direct: u16,
    twin_listen: u16,
    twin: u16,
    twin_upstream: u16,
    evil_listen: u16,
    evil: u16,
    evil_upstream: u16,
}

impl Ports {
    fn pick() -> Ports {
        Ports {
            listen: free_port(),
            upstream: free_port(),
            direct: free_port(),
            twin_listen: free_port(),
            twin: free_port(),
            twin_upstream: free_port(),
            evil_listen: free_port(),
            evil: free_port(),
            evil_upstream: free_port(),
        }
    }
}

/// A root for nginx whose includes name host files: one through a symlink in `conf.d`, one
/// through `../../..` climbing above the root. Inside the root the same paths hold twins,
/// which nginx itself reads.
fn escaping_config(root: &std::path::Path, outside: &std::path::Path, p: &Ports, tag: &str) {
    let o = outside.display();
    let main = format!(
        "worker_processes 1;\nerror_log /var/log/nginx/{tag}-error.log info;\n\
         pid /run/nginx.pid;\nevents {{ worker_connections 64; }}\nhttp {{\n\
         access_log /var/log/nginx/{tag}-access.log;\n\
         client_body_temp_path /tmp/body; proxy_temp_path /tmp/proxy;\n\
         fastcgi_temp_path /tmp/fcgi; uwsgi_temp_path /tmp/uwsgi; scgi_temp_path /tmp/scgi;\n\
         upstream in_root_{tag} {{ server 127.0.0.1:{}; }}\n\
         include conf.d/*.conf;\ninclude ../../../../../../../..{o}/up.conf;\n}}\n",
        p.upstream
    );
    let app = format!(
        "server {{\n listen 127.0.0.1:{};\n location / {{ proxy_pass http://in_root_{tag}; }}\n\
         location /direct {{ proxy_pass http://127.0.0.1:{}; }}\n}}\n",
        p.listen, p.direct
    );
    let evil = format!(
        "server {{ listen 127.0.0.1:{}; access_log {o}/evil-access.log;\n\
         location / {{ proxy_pass http://127.0.0.1:{}; }} }}\n",
        p.evil_listen, p.evil
    );
    let evil_up = format!(
        "access_log {o}/evil-up.log;\nupstream evil_{tag} {{ server 127.0.0.1:{}; }}\n",
        p.evil_upstream
    );
    write_files(outside, &[("evil.conf", &evil), ("up.conf", &evil_up)]);
    let twin = format!(
        "server {{ listen 127.0.0.1:{};\n location /twin {{ proxy_pass http://127.0.0.1:{}; }} }}\n",
        p.twin_listen, p.twin
    );
    let twin_up = format!(
        "upstream twin_{tag} {{ server 127.0.0.1:{}; }}\n",
        p.twin_upstream
    );
    write_files(
        root,
        &[
            ("/etc/nginx/nginx.conf", &main),
            ("/etc/nginx/conf.d/app.conf", &app),
            (&format!("{o}/evil.conf"), &twin),
            (&format!("{o}/up.conf"), &twin_up),
        ],
    );
    symlink(
        outside.join("evil.conf"),
        root.join("etc/nginx/conf.d/escape.conf"),
    )
    .unwrap();
}

fn upstream_ports(lines: &[Value]) -> Vec<u64> {
    let snap = lines
        .iter()
        .rev()
        .find(|l| l["kind"] == "snapshot")
        .unwrap();
    let ups = snap["upstreams"].as_array().unwrap();
    ups.iter().filter_map(|u| u["port"].as_u64()).collect()
}

#[test]
fn a_chrooted_nginx_is_read_inside_its_root_and_includes_cannot_escape() {
    let root = scratch_dir("chroot").join("root");
    nginx_chroot(&root);
    let outside = scratch_dir("escape");
    let ports = Ports::pick();
    let tag = format!("vigil-{}", std::process::id());
    escaping_config(&root, &outside, &ports, &tag);
    let nginx = start_chrooted_nginx(&root, "/etc/nginx/nginx.conf", ports.listen);

    let watch = Inspect::watch(&["--interval", "300ms", "--duration", "2500ms"]);
    bad_gateway_a_few_times(ports.listen, "/");
    let lines = watch.finish();
    let n = nginx_snapshot(&lines);
    let masters = n["master_pids"].as_array().unwrap();
    assert!(masters.contains(&Value::from(nginx.pid())), "{n}");

    let targets: Vec<String> = n["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["target"].as_str().unwrap().to_owned())
        .collect();
    let has = |t: String| targets.contains(&t);
    assert!(has(format!("in_root_{tag}")), "{targets:?}");
    assert!(has(format!("127.0.0.1:{}", ports.direct)), "{targets:?}");
    assert!(
        has(format!("127.0.0.1:{}", ports.twin)),
        "twin read: {targets:?}"
    );
    assert!(!has(format!("127.0.0.1:{}", ports.evil)), "{targets:?}");

    let ports_seen = upstream_ports(&lines);
    for port in [
        ports.upstream,
        ports.direct,
        ports.twin,
        ports.twin_upstream,
    ] {
        assert!(
            ports_seen.contains(&u64::from(port)),
            "{port} in {ports_seen:?}"
        );
    }
    for port in [ports.evil, ports.evil_upstream] {
        assert!(
            !ports_seen.contains(&u64::from(port)),
            "{port} in {ports_seen:?}"
        );
    }

    let access = strings(n, "access_logs");
    assert!(
        access.contains(&format!("/var/log/nginx/{tag}-access.log")),
        "{access:?}"
    );
    let errors = strings(n, "error_logs");
    assert!(
        errors.contains(&format!("/var/log/nginx/{tag}-error.log")),
        "{errors:?}"
    );
    let outside_text = outside.to_string_lossy().into_owned();
    assert!(
        !access
            .iter()
            .chain(&errors)
            .any(|p| p.contains(&outside_text)),
        "{access:?} {errors:?}"
    );
    // The error log inside the root was followed: it explains our 502.
    let upstream = format!("127.0.0.1:{}", ports.upstream);
    assert!(seen_upstream_error(&lines, &upstream), "{lines:?}");
}

/// A container runtime with user namespaces: root creates the namespace, nginx is uid 0 inside
/// and uid 100000 outside. Believed, read and followed like any root master.
#[test]
fn nginx_as_root_of_a_root_owned_user_namespace_is_believed() {
    let dir = shared_dir("userns");
    let (port, closed) = (free_port(), free_port());
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\nerror_log {d}/error.log info;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\nhttp {{\n  access_log {d}/access.log;\n\
         client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n\
         uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         server {{ listen 127.0.0.1:{port};\n\
         location / {{ proxy_pass http://127.0.0.1:{closed}; }} }}\n}}\n"
    );
    write_files(&dir, &[("nginx.conf", &conf)]);
    chown_to_userns_root(&dir);
    let conf_path = format!("{d}/nginx.conf");
    let prefix = d.to_string();
    let argv = [
        "nginx",
        "-p",
        &prefix,
        "-c",
        &conf_path,
        "-g",
        "daemon off;",
    ];
    let nginx = as_root_of_a_user_namespace(&argv).wait_titled("nginx: master process");
    let listening = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(
        wait_for(Duration::from_secs(10), listening),
        "nginx did not start"
    );
    let status = fs::read_to_string(format!("/proc/{}/status", nginx.pid())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let outside = USERNS_BASE.to_string();
    assert_eq!(
        uid.split_whitespace().nth(1),
        Some(outside.as_str()),
        "{uid}"
    );

    let watch = Inspect::watch(&["--interval", "300ms", "--duration", "2500ms"]);
    bad_gateway_a_few_times(port, "/");
    let lines = watch.finish();
    let n = nginx_snapshot(&lines);
    let masters = n["master_pids"].as_array().unwrap();
    assert!(masters.contains(&Value::from(nginx.pid())), "{n}");
    let ignored = n["ignored_masters"].as_array().unwrap();
    assert!(!ignored.iter().any(|m| m["pid"] == nginx.pid()), "{n}");
    let target = format!("127.0.0.1:{closed}");
    let targets = n["proxies"].as_array().unwrap();
    assert!(
        targets.iter().any(|p| p["target"] == target.as_str()),
        "{n}"
    );
    assert!(
        strings(n, "error_logs").contains(&format!("{d}/error.log")),
        "{n}"
    );
    assert!(seen_upstream_error(&lines, &target), "{lines:?}");
}
