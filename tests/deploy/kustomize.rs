//! A small kustomize: enough to render deploy/k8s's kustomizations without kubectl (not on a
//! fresh Debian box). It knows `resources` (files and kustomization directories),
//! `patches` (JSON 6902 files with a `target`) and `images` (newName/newTag); any other key
//! is an error, so a kustomization this cannot render faithfully fails the tests instead of
//! being validated half-applied. Output: the resources as JSON objects, in file order.
use std::path::Path;

use serde_json::{Map, Value};

use crate::tools::yaml_documents;

const KNOWN_KEYS: [&str; 5] = ["apiVersion", "kind", "resources", "patches", "images"];

pub fn render(dir: &Path) -> Result<Vec<Value>, String> {
    let file = dir.join("kustomization.yaml");
    let kustomization = match yaml_documents(&file)?.as_slice() {
        [Value::Object(k)] => k.clone(),
        _ => return Err(format!("{}: one mapping expected", file.display())),
    };
    if let Some(key) = kustomization
        .keys()
        .find(|k| !KNOWN_KEYS.contains(&k.as_str()))
    {
        return Err(format!("{}: `{key}` is not supported here", file.display()));
    }
    let mut docs = Vec::new();
    for resource in strings(&kustomization, "resources", &file)? {
        let path = dir.join(&resource);
        if path.is_dir() {
            docs.extend(render(&path)?);
        } else {
            docs.extend(yaml_documents(&path)?);
        }
    }
    for patch in list(&kustomization, "patches") {
        apply_patch(dir, patch, &mut docs).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    for image in list(&kustomization, "images") {
        set_image(image, &mut docs).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(docs)
}

fn list<'a>(k: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    k.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn strings(k: &Map<String, Value>, key: &str, file: &Path) -> Result<Vec<String>, String> {
    list(k, key)
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("{}: `{key}` must list strings", file.display()))
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// A `patches` entry: `path` to a JSON 6902 file, applied to every resource `target`
/// selects (which must select at least one).
fn apply_patch(dir: &Path, patch: &Value, docs: &mut [Value]) -> Result<(), String> {
    let path = text(patch, "/path").ok_or("patch without `path` (inline patches unsupported)")?;
    let target = patch.get("target").ok_or("patch without `target`")?;
    let ops = match yaml_documents(&dir.join(path))?.as_slice() {
        [Value::Array(ops)] => ops.clone(),
        _ => return Err(format!("{path}: a JSON 6902 list of operations expected")),
    };
    let mut matched = 0;
    for doc in docs.iter_mut().filter(|d| selects(target, d)) {
        matched += 1;
        for op in &ops {
            apply_op(doc, op).map_err(|e| format!("{path}: {e}"))?;
        }
    }
    if matched == 0 {
        return Err(format!("patch {path}: target {target} selects nothing"));
    }
    Ok(())
}

/// A target field the document lacks does not match (kustomize's rule); a field the target
/// leaves out matches anything. The core group has no `group/` prefix.
fn selects(target: &Value, doc: &Value) -> bool {
    let api_version = text(doc, "/apiVersion");
    let (group, version) = match api_version.map(|v| v.rsplit_once('/').unwrap_or(("", v))) {
        Some((group, version)) => (Some(group), Some(version)),
        None => (None, None),
    };
    let wants =
        |key: &str, have: Option<&str>| text(target, key).is_none_or(|want| have == Some(want));
    wants("/group", group)
        && wants("/version", version)
        && wants("/kind", text(doc, "/kind"))
        && wants("/name", text(doc, "/metadata/name"))
        && wants("/namespace", text(doc, "/metadata/namespace"))
}

/// One RFC 6902 operation: add, remove or replace (what the overlays use).
fn apply_op(doc: &mut Value, op: &Value) -> Result<(), String> {
    let kind = text(op, "/op").ok_or("operation without `op`")?;
    let path = text(op, "/path").ok_or("operation without `path`")?;
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("`{path}` is not a JSON pointer"))?;
    let last = last.replace("~1", "/").replace("~0", "~");
    let value = || {
        op.get("value")
            .cloned()
            .ok_or(format!("`{kind} {path}` without value"))
    };
    let missing = || format!("`{kind} {path}`: no such location");
    match doc.pointer_mut(parent).ok_or_else(missing)? {
        Value::Object(map) => match kind {
            "add" => {
                map.insert(last, value()?);
            }
            "replace" if map.contains_key(&last) => {
                map.insert(last, value()?);
            }
            "remove" if map.contains_key(&last) => {
                map.remove(&last);
            }
            "replace" | "remove" => return Err(missing()),
            other => return Err(format!("op `{other}` unsupported")),
        },
        Value::Array(items) => {
            let index = if last == "-" && kind == "add" {
                items.len()
            } else {
                last.parse::<usize>().map_err(|_| missing())?
            };
            match kind {
                "add" if index <= items.len() => items.insert(index, value()?),
                "replace" if index < items.len() => items[index] = value()?,
                "remove" if index < items.len() => {
                    items.remove(index);
                }
                "add" | "replace" | "remove" => return Err(missing()),
                other => return Err(format!("op `{other}` unsupported")),
            }
        }
        _ => return Err(missing()),
    }
    Ok(())
}

/// An `images` entry: containers whose image is `name` (any tag) get `newName`/`newTag`.
fn set_image(image: &Value, docs: &mut [Value]) -> Result<(), String> {
    let name = text(image, "/name").ok_or("image without `name`")?;
    let new_name = text(image, "/newName").unwrap_or(name);
    let new_tag = text(image, "/newTag");
    for doc in docs.iter_mut() {
        for list in [
            "/spec/template/spec/containers",
            "/spec/template/spec/initContainers",
        ] {
            let Some(Value::Array(containers)) = doc.pointer_mut(list) else {
                continue;
            };
            for container in containers {
                let Some(current) = container.get("image").and_then(Value::as_str) else {
                    continue;
                };
                // The tag follows the last `:` after the last `/` (registry:5000/vigil:1).
                let (current_name, current_tag) = match current.rsplit_once(':') {
                    Some((n, t)) if !t.contains('/') => (n, t),
                    _ => (current, ""),
                };
                if current_name != name {
                    continue;
                }
                let tag = new_tag.unwrap_or(current_tag);
                let image = if tag.is_empty() {
                    new_name.to_owned()
                } else {
                    format!("{new_name}:{tag}")
                };
                container["image"] = Value::String(image);
            }
        }
    }
    Ok(())
}
