//! Reading rendered manifests: find a resource, its containers, env and labels; and the
//! checks that the resources point at each other (names, labels, ports, keys).
use serde_json::Value;

pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

pub fn array_at<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("no list at {pointer} in {v}"))
}

/// The first container of a workload's pod template.
pub fn container(workload: &Value) -> &Value {
    &array_at(workload, "/spec/template/spec/containers")[0]
}

/// A container's plain `value` env variable, or `None` if absent or not a plain value.
pub fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// Every `key: value` of `selector` is among `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let (Some(selector), Some(labels)) = (selector.as_object(), labels.as_object()) else {
        return false;
    };
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The volume a container mounts at `mount_path`.
pub fn volume_at<'a>(workload: &'a Value, mount_path: &str) -> &'a Value {
    let mount = array_at(container(workload), "/volumeMounts")
        .iter()
        .find(|m| m["mountPath"] == mount_path)
        .unwrap_or_else(|| panic!("nothing mounted at {mount_path}"));
    array_at(workload, "/spec/template/spec/volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("mount {mount} names no volume"))
}

/// Every mount names a declared volume and every volume is mounted.
pub fn mounts_match_volumes(workload: &Value) -> Result<(), String> {
    let mounts: Vec<&Value> = array_at(container(workload), "/volumeMounts")
        .iter()
        .map(|m| &m["name"])
        .collect();
    let volumes: Vec<&Value> = array_at(workload, "/spec/template/spec/volumes")
        .iter()
        .map(|v| &v["name"])
        .collect();
    match (
        mounts.iter().find(|m| !volumes.contains(m)),
        volumes.iter().find(|v| !mounts.contains(v)),
    ) {
        (None, None) => Ok(()),
        (m, v) => Err(format!(
            "mount without volume: {m:?}; volume not mounted: {v:?}"
        )),
    }
}

/// The port every probe of a container asks (httpGet), as written.
pub fn probe_targets(container: &Value) -> Vec<(String, Value, Value)> {
    ["startupProbe", "livenessProbe", "readinessProbe"]
        .iter()
        .filter_map(|p| {
            let get = container.get(*p)?.get("httpGet")?;
            Some((p.to_string(), get["host"].clone(), get["port"].clone()))
        })
        .collect()
}
