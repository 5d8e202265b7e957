//! What schemas cannot see: the resources point at each other (labels, ports, names, keys),
//! the agent gets what it needs on a node, and every flag and VIGIL_* variable the
//! manifests and example files set is one the binaries have.
use std::process::Command;

use serde_json::Value;
use vigil_e2e::bin;

use crate::{
    array_at, container, env, find,
    manifests::{mounts_match_volumes, probe_targets, selects, volume_at},
    rendered, run, str_at,
    tools::repo,
    yaml_documents,
};

const NAMESPACE: &str = "vigil";

fn help(binary: &str, args: &[&str]) -> String {
    let ran = run(Command::new(bin(binary)).args(args).arg("--help"));
    assert!(ran.ok, "{binary} {args:?} --help:\n{}", ran.output);
    ran.output
}

/// `--flags` in a container's args and the names of its VIGIL_* variables.
fn options(container: &Value) -> Vec<String> {
    let args = container["args"].as_array().into_iter().flatten();
    let flags = args
        .filter_map(Value::as_str)
        .filter(|a| a.starts_with("--"));
    let vars = array_at(container, "/env")
        .iter()
        .map(|e| str_at(e, "/name"))
        .filter(|n| n.starts_with("VIGIL_") && *n != "VIGIL_LOG");
    flags.chain(vars).map(str::to_owned).collect()
}

/// VIGIL_* names set or shown (commented) in an env file.
fn env_file_vars(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    text.lines()
        .map(|l| l.trim_start_matches('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| k.starts_with("VIGIL_") && *k != "VIGIL_LOG")
        .map(str::to_owned)
        .collect()
}

#[test]
fn deploy_flags_and_variables_are_ones_the_binaries_have() {
    let base = rendered("deploy/k8s/base");
    let agent = container(find(&base, "DaemonSet", "vigil-agent"));
    let collector = container(find(&base, "Deployment", "vigil-collector"));
    assert_eq!(
        array_at(agent, "/args")[0],
        "run",
        "the agent runs `vigil-agent run`"
    );
    let agent_help = help("vigil-agent", &["run"]);
    let collector_help = help("vigil-collector", &[]);
    let checks = [
        ("DaemonSet", options(agent), &agent_help),
        ("Deployment", options(collector), &collector_help),
        (
            "agent.env",
            env_file_vars("deploy/systemd/agent.env"),
            &agent_help,
        ),
        (
            "collector.env",
            env_file_vars("deploy/systemd/collector.env"),
            &collector_help,
        ),
    ];
    for (source, options, help) in checks {
        assert!(
            !options.is_empty() || source == "Deployment",
            "{source}: nothing found"
        );
        for option in options {
            let known =
                help.contains(&format!("{option} ")) || help.contains(&format!("{option}="));
            assert!(
                known,
                "{source} sets {option}, which --help does not list:\n{help}"
            );
        }
    }
}

/// The agent's pod: the node's view, every taint tolerated, the collector found, probes
/// on the health port it is told to serve, the node name from the API, the token mounted.
fn check_agent(docs: &[Value]) {
    let ds = find(docs, "DaemonSet", "vigil-agent");
    let pod = &ds["spec"]["template"]["spec"];
    assert!(selects(
        &ds["spec"]["selector"]["matchLabels"],
        &ds["spec"]["template"]["metadata"]["labels"]
    ));
    assert_eq!(
        (&pod["hostPID"], &pod["hostNetwork"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
    assert_eq!(
        pod["dnsPolicy"], "ClusterFirstWithHostNet",
        "hostNetwork needs it for *.svc"
    );
    assert!(array_at(pod, "/tolerations")
        .iter()
        .any(|t| t["operator"] == "Exists" && t.get("key").is_none()));
    let agent = container(ds);
    let node = env(agent, "VIGIL_NODE").expect("VIGIL_NODE");
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    let url = str_at(
        env(agent, "VIGIL_COLLECTOR").expect("VIGIL_COLLECTOR"),
        "/value",
    );
    let service = find(docs, "Service", "vigil-collector");
    let port = &array_at(service, "/spec/ports")[0]["port"];
    assert_eq!(
        url,
        format!("http://vigil-collector.{NAMESPACE}.svc:{port}")
    );
    let args = array_at(agent, "/args");
    let health = args
        .iter()
        .position(|a| a == "--listen-health")
        .map(|i| &args[i + 1]);
    let health = health
        .and_then(Value::as_str)
        .expect("--listen-health ADDR");
    for (probe, host, port) in probe_targets(agent) {
        assert_eq!(
            format!("{}:{}", host.as_str().unwrap_or("?"), port),
            health,
            "{probe}"
        );
    }
    assert_eq!(
        probe_targets(agent).len(),
        3,
        "startup, liveness and readiness probes"
    );
    let token = str_at(
        env(agent, "VIGIL_TOKEN_FILE").expect("VIGIL_TOKEN_FILE"),
        "/value",
    );
    let (dir, file) = token.rsplit_once('/').unwrap();
    let secret = &volume_at(ds, dir)["secret"];
    assert_eq!(secret["secretName"], "vigil-secrets");
    assert!(array_at(secret, "/items")
        .iter()
        .any(|i| i["key"] == "token" && i["path"] == file));
    let state = str_at(
        env(agent, "VIGIL_STATE_DIR").expect("VIGIL_STATE_DIR"),
        "/value",
    );
    assert_eq!(
        volume_at(ds, state)["hostPath"]["path"],
        state,
        "the spool outlives the pod"
    );
    for host_dir in [
        "/sys/kernel/btf",
        "/sys/kernel/tracing",
        "/sys/fs/cgroup",
        "/var/log",
        "/run/log/journal",
    ] {
        assert_eq!(volume_at(ds, host_dir)["hostPath"]["path"], host_dir);
    }
    mounts_match_volumes(ds).unwrap();
}

/// The collector: Service → pod labels and named port, config and Secret mounted where
/// the config and the flags say, state on the claim that exists.
fn check_collector(docs: &[Value]) {
    let deployment = find(docs, "Deployment", "vigil-collector");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(selects(
        &deployment["spec"]["selector"]["matchLabels"],
        labels
    ));
    let service = find(docs, "Service", "vigil-collector");
    assert!(
        selects(&service["spec"]["selector"], labels),
        "the Service selects the pods"
    );
    let collector = container(deployment);
    let port_name = &array_at(service, "/spec/ports")[0]["targetPort"];
    let port = array_at(collector, "/ports")
        .iter()
        .find(|p| &p["name"] == port_name);
    assert_eq!(
        port.expect("targetPort names a container port")["containerPort"],
        9470
    );
    let args = array_at(collector, "/args");
    assert_eq!(args[0], "--config");
    let config_path = args[1].as_str().unwrap();
    let config_volume = volume_at(deployment, config_path);
    let configmap = find(docs, "ConfigMap", str_at(config_volume, "/configMap/name"));
    let toml = str_at(configmap, "/data/collector.toml");
    assert!(
        toml.contains("listen = \"0.0.0.0:9470\""),
        "the Service's port on every address"
    );
    let token = toml
        .lines()
        .find_map(|l| l.strip_prefix("token_file = "))
        .expect("token_file");
    let token_dir = token.trim_matches('"').rsplit_once('/').unwrap().0;
    assert_eq!(
        volume_at(deployment, token_dir)["secret"]["secretName"],
        "vigil-secrets"
    );
    let claim = str_at(
        volume_at(deployment, "/var/lib/vigil-collector"),
        "/persistentVolumeClaim/claimName",
    );
    find(docs, "PersistentVolumeClaim", claim);
    assert_eq!(
        deployment["spec"]["strategy"]["type"], "Recreate",
        "RWO state volume"
    );
    mounts_match_volumes(deployment).unwrap();
}

#[test]
fn deploy_manifests_point_at_each_other() {
    let base = rendered("deploy/k8s/base");
    for doc in &base {
        if doc["kind"] != "Namespace" {
            assert_eq!(
                doc["metadata"]["namespace"], NAMESPACE,
                "{}",
                doc["metadata"]["name"]
            );
        }
    }
    find(&base, "Namespace", NAMESPACE);
    check_agent(&base);
    check_collector(&base);
    let example = yaml_documents(&repo().join("deploy/k8s/secret.example.yaml")).unwrap();
    let secret = find(&example, "Secret", "vigil-secrets");
    for key in ["token", "smtp-password"] {
        assert!(
            secret["stringData"].get(key).is_some(),
            "secret.example.yaml lacks {key}"
        );
    }

    let privileged = rendered("deploy/k8s/overlays/privileged");
    let agent = container(find(&privileged, "DaemonSet", "vigil-agent"));
    assert_eq!(agent["securityContext"]["privileged"], true);
    check_agent(&privileged);

    let monitored = rendered("deploy/k8s/overlays/prometheus-operator");
    let monitor = find(&monitored, "ServiceMonitor", "vigil-collector");
    let service = find(&monitored, "Service", "vigil-collector");
    assert!(selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    assert!(array_at(monitor, "/spec/namespaceSelector/matchNames").contains(&NAMESPACE.into()));
    let port_names: Vec<&Value> = array_at(service, "/spec/ports")
        .iter()
        .map(|p| &p["name"])
        .collect();
    for endpoint in array_at(monitor, "/spec/endpoints") {
        assert!(
            port_names.contains(&&endpoint["port"]),
            "endpoint {endpoint} names no Service port"
        );
        assert_eq!(endpoint["path"], "/metrics");
    }
    let pods = &find(&monitored, "Deployment", "vigil-collector")["spec"]["template"]["metadata"];
    assert!(
        pods.get("annotations").is_none(),
        "scraped once: by the ServiceMonitor alone"
    );
    check_collector(&monitored);
}
