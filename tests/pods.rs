//! The agent on a node where nginx and its upstreams run in pods: real network namespaces
//! (an nginx in one, its upstream in another, linked by a veth pair with TEST-NET-1
//! addresses that exist only inside them), kubelet-shaped cgroups and pod log directories,
//! and the agent in a cgroup namespace of its own as containerd gives an unprivileged pod.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use vigil_e2e::{
    agent::Inspect,
    bin, free_port,
    netns::{netns_inode, CgroupTree, NetnsPair},
    scratch_dir, terminate, wait_for,
};

const POD_UID: &str = "d2f0c6a4-1b2c-4d3e-8f90-0123456789ab";
const CONTAINER: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A process stopped on drop: SIGTERM, which nginx's master passes on to its workers (a
/// SIGKILLed master would leave them running).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        terminate(&self.0);
        let _ = self.0.wait();
    }
}

/// A listener on `addr`:`port` with backlog 8 that never accepts: connects complete in the
/// kernel and wait in its accept queue. `cmd` runs python (possibly inside a namespace).
fn never_accepting(mut cmd: Command, addr: &str, port: u16) -> Guard {
    let script = format!(
        "import socket,sys\ns=socket.socket()\ns.bind(('{addr}', {port}))\ns.listen(8)\n\
         print('listening', flush=True)\nsys.stdin.read()"
    );
    let mut child = cmd
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening", "the upstream did not start");
    Guard(child)
}

/// kubelet's log directory for the test pod: `<root>/shop_web-0_<uid>/app/0.log`.
fn pod_logs(dir: &Path) -> PathBuf {
    let root = dir.join("pods");
    let container = root.join(format!("shop_web-0_{POD_UID}")).join("app");
    std::fs::create_dir_all(&container).unwrap();
    std::fs::write(container.join("0.log"), "").unwrap();
    root
}

/// nginx inside namespace `ns`, on 127.0.0.1:`port` there, proxying to `upstream`.
fn nginx_in(ns: &str, dir: &Path, port: u16, upstream: &str) -> Guard {
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\nerror_log {d}/error.log info;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log {d}/access.log;\n  proxy_connect_timeout 2s; proxy_read_timeout 1s;\n\
         client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://{upstream}/; }}\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = NetnsPair::command(ns, "nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .spawn()
        .expect("nginx installed (cargo xtask setup)");
    let guard = Guard(child);
    let started = wait_for(Duration::from_secs(10), || dir.join("nginx.pid").exists());
    assert!(started, "nginx did not start in {ns}");
    guard
}

/// A GET from inside namespace `ns`; the status code curl saw.
fn curl_in(ns: &str, url: &str) -> String {
    let out = NetnsPair::command(ns, "curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            url,
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn upstream_for(snapshot: &Value, port: u16) -> &Value {
    snapshot["upstreams"]
        .as_array()
        .and_then(|all| all.iter().find(|u| u["port"] == port))
        .unwrap_or_else(|| panic!("port {port} in {snapshot}"))
}

#[test]
fn pods_upstream_in_another_network_namespace() {
    let pair = NetnsPair::create("pods");
    let dir = scratch_dir("pods-netns");
    let mut cgroups = CgroupTree::create("pods");
    let pod = cgroups.pod(POD_UID, CONTAINER);
    let upstream_port = free_port();
    let upstream_ip = pair.b_ip.to_string();
    let upstream = never_accepting(
        NetnsPair::command(&pair.b, python()),
        &upstream_ip,
        upstream_port,
    );
    let upstream_pid = upstream.0.id();
    cgroups.enter(&pod, upstream_pid);
    let destination = format!("{upstream_ip}:{upstream_port}");
    let nginx_port = free_port();
    let nginx = nginx_in(&pair.a, &dir, nginx_port, &destination);
    let pods = pod_logs(&dir);

    // No --ports: the agent takes them from nginx's configuration, read in nginx's root.
    let inspect = Inspect::watch_with_env(
        &["--interval", "1s", "--duration", "12s"],
        &[("VIGIL_POD_LOGS_DIR", pods.to_str().unwrap())],
    );
    let url = format!("http://127.0.0.1:{nginx_port}/");
    let statuses: Vec<String> = (0..3).map(|_| curl_in(&pair.a, &url)).collect();
    assert_eq!(
        statuses,
        ["504", "504", "504"],
        "nginx times out on the upstream"
    );
    let lines = inspect.finish();
    drop(nginx);

    let snapshot = lines
        .iter()
        .rev()
        .find(|l| l["kind"] == "snapshot")
        .expect("a snapshot");
    let state = upstream_for(snapshot, upstream_port);
    let listener = &state["listener"];
    assert!(listener.is_object(), "the pod's listener is seen: {state}");
    assert_eq!(listener["netns"], netns_inode(upstream_pid), "{listener}");
    assert_eq!(listener["addr"], destination.as_str());
    assert_eq!(listener["backlog"], 8);
    assert!(
        listener["accept_queue"].as_u64() >= Some(1),
        "nginx's connects wait in the queue: {listener}"
    );
    let owner = &listener["owner"];
    assert_eq!(owner["pid"], upstream_pid);
    assert_eq!(owner["pod_uid"], POD_UID);
    assert_eq!(owner["container_id"], CONTAINER);
    assert_eq!(
        (&owner["pod_namespace"], &owner["pod_name"]),
        (&"shop".into(), &"web-0".into())
    );
    assert_eq!(state["upstream"], destination.as_str());
    // The probes see connects made in any namespace.
    assert!(state["connects"]["ok"].as_u64() >= Some(3), "{state}");
    assert!(state["silent_closes"].as_u64() >= Some(3), "{state}");

    // nginx in its own network and mount namespaces: found, its logs tailed in its root.
    let nginx_view = &snapshot["nginx"];
    assert!(nginx_view["error_logs"].as_array().is_some_and(|l| l
        .iter()
        .any(|p| p == dir.join("error.log").to_str().unwrap())));
    assert!(
        nginx_view["responses"]["504"].as_u64() >= Some(3),
        "{nginx_view}"
    );
    let upstream_errors: u64 = nginx_view["upstream_errors"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    assert!(upstream_errors >= 3, "{nginx_view}");
}

/// `vigil-agent inspect` started inside a cgroup namespace rooted at a cgroup of its own, as
/// containerd starts an unprivileged pod; `node_ns` is what it is told the node's is.
fn inspect_in_child_cgroup_namespace(
    cgroups: &CgroupTree,
    port: u16,
    node_ns: &str,
    pods: &Path,
) -> Value {
    let agent_cgroup = cgroups.root.join("agent.scope");
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec unshare --cgroup \"$0\" inspect --ports {port} --interval 1s",
        agent_cgroup.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .arg(bin("vigil-agent"))
        .env("VIGIL_NODE_CGROUP_NS", node_ns)
        .env("VIGIL_POD_LOGS_DIR", pods)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "inspect failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output; stderr: {stderr}"));
    serde_json::from_str(last).unwrap()
}

#[test]
fn pods_agent_in_a_child_cgroup_namespace_joins_the_node_s() {
    let dir = scratch_dir("pods-cgroupns");
    let pods = pod_logs(&dir);
    let mut cgroups = CgroupTree::create("cgns");
    cgroups.mkdir(Path::new("agent.scope"));
    let pod = cgroups.pod(POD_UID, CONTAINER);
    let port = free_port();
    let upstream = never_accepting(Command::new(python()), "127.0.0.1", port);
    cgroups.enter(&pod, upstream.0.id());
    let node_path = format!("{}/{}", cgroups.path, pod.display());

    // Told where the node's namespace is (this test's: pid 1's may be hidden here).
    let node_ns = format!("/proc/{}/ns/cgroup", std::process::id());
    let joined = inspect_in_child_cgroup_namespace(&cgroups, port, &node_ns, &pods);
    let owner = &upstream_for(&joined, port)["listener"]["owner"];
    assert_eq!(owner["pid"], upstream.0.id());
    assert_eq!(
        owner["cgroup"],
        node_path.as_str(),
        "the node's path: {owner}"
    );
    assert_eq!(owner["pod_uid"], POD_UID);
    assert_eq!(owner["pod_name"], "web-0");

    // Control: left in its own namespace, the same process reads relative to the agent's.
    let stay = "/proc/thread-self/ns/cgroup";
    let stayed = inspect_in_child_cgroup_namespace(&cgroups, port, stay, &pods);
    let owner = &upstream_for(&stayed, port)["listener"]["owner"];
    let relative = owner["cgroup"].as_str().unwrap_or_default();
    assert!(
        relative.starts_with("/../"),
        "relative without the join: {owner}"
    );
    assert_eq!(
        owner["pod_uid"], POD_UID,
        "pods are recognised from relative paths too"
    );
}
