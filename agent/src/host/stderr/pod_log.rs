//! A Kubernetes container's stderr, as kubelet keeps it: `/var/log/pods/<namespace>_<pod>_<uid>/
//! <container>/<restart>.log`, one CRI line per record (`<RFC 3339> <stream> <P|F> <text>`, a
//! long line split into `P` partials ending with an `F`). The pod is found by its uid; the
//! container by its id through kubelet's `/var/log/containers/<pod>_<ns>_<name>-<id>.log` link
//! where it exists, else the pod's only container, else the one that wrote last.
use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::{file_tail, Limits, StderrError, TailLines};

/// Directory entries looked at per listing: a bound on a huge /var/log/pods.
const MAX_DIR_ENTRIES: usize = 8192;

#[derive(Debug, Clone)]
pub struct PodLog {
    container_dir: PathBuf,
    /// The exact file when the container id led to it; else the newest restart's at read time.
    file: Option<PathBuf>,
    /// `namespace/pod/container`.
    pub label: String,
}

impl PodLog {
    pub fn locate(
        pods: &Path,
        containers: &Path,
        pod_uid: &str,
        container_id: Option<&str>,
    ) -> Option<PodLog> {
        let suffix = format!("_{pod_uid}");
        let pod_dir = entries(pods)
            .into_iter()
            .find(|p| file_name(p).is_some_and(|n| n.ends_with(&suffix)))?;
        // Namespaces and pod names are DNS labels: no `_` inside them.
        let name = file_name(&pod_dir)?;
        let mut parts = name.splitn(3, '_');
        let (namespace, pod) = (parts.next()?.to_owned(), parts.next()?.to_owned());
        let file = container_id.and_then(|id| linked_log(containers, id, &pod_dir));
        let container_dir = match &file {
            Some(f) => f.parent()?.to_owned(),
            None => last_written_container(&pod_dir)?,
        };
        let container = file_name(&container_dir)?;
        Some(PodLog {
            label: format!("{namespace}/{pod}/{container}"),
            container_dir,
            file,
        })
    }

    pub fn read_tail(&self, limits: &Limits, tail: &mut TailLines) -> Result<(), StderrError> {
        let path = match &self.file {
            Some(f) if f.is_file() => f.clone(),
            _ => newest_restart(&self.container_dir).ok_or_else(|| StderrError::Io {
                path: self.container_dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no <restart>.log"),
            })?,
        };
        let file = File::open(&path).map_err(|source| StderrError::Io {
            path: path.clone(),
            source,
        })?;
        let bytes = file_tail(&file, &path, limits.file_tail_bytes)?;
        push_cri_stderr(&bytes, tail, limits.max_line_bytes);
        Ok(())
    }
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .take(MAX_DIR_ENTRIES)
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// kubelet's link for this container id, mapped into our pod directory (the link's target is
/// the host's path, which may be mounted elsewhere here).
fn linked_log(containers: &Path, container_id: &str, pod_dir: &Path) -> Option<PathBuf> {
    let suffix = format!("-{container_id}.log");
    let link = entries(containers)
        .into_iter()
        .find(|p| file_name(p).is_some_and(|n| n.ends_with(&suffix)))?;
    let target = fs::read_link(link).ok()?;
    let restart = target.file_name()?;
    let container = target.parent()?.file_name()?;
    let file = pod_dir.join(container).join(restart);
    file.is_file().then_some(file)
}

fn last_written_container(pod_dir: &Path) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = entries(pod_dir)
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if dirs.len() == 1 {
        return dirs.into_iter().next();
    }
    let written = |dir: &PathBuf| -> SystemTime {
        newest_restart(dir)
            .and_then(|f| f.metadata().ok()?.modified().ok())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    dirs.into_iter().max_by_key(written)
}

/// `<N>.log` with the highest N (rotated `N.log.<date>` and `.gz` files are older).
fn newest_restart(container_dir: &Path) -> Option<PathBuf> {
    entries(container_dir)
        .into_iter()
        .filter_map(|p| {
            let n: u64 = file_name(&p)?.strip_suffix(".log")?.parse().ok()?;
            Some((n, p))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p)
}

/// The `stderr` records of CRI lines, partials joined (each joined line bounded before it is
/// handed to the tail, which cuts it to the line limit).
fn push_cri_stderr(bytes: &[u8], tail: &mut TailLines, max_line_bytes: usize) {
    let cap = max_line_bytes.saturating_mul(4);
    let mut partial: Vec<u8> = Vec::new();
    for record in bytes.split(|&b| b == b'\n') {
        let mut fields = record.splitn(4, |&b| b == b' ');
        let (Some(_time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if stream != b"stderr" {
            continue;
        }
        let text = fields.next().unwrap_or_default();
        let room = cap.saturating_sub(partial.len());
        partial.extend_from_slice(&text[..text.len().min(room)]);
        if tag.split(|&b| b == b':').next() != Some(b"P") {
            tail.push_line(&partial);
            partial.clear();
        }
    }
    // A partial never finished: the process died mid-line.
    if !partial.is_empty() {
        tail.push_line(&partial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "1a2b3c4d-0000-1111-2222-333344445555";

    fn tree(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
        let root = std::env::temp_dir().join(format!("vigil-pods-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let pods = root.join("pods");
        let pod = pods.join(format!("shop_checkout-7d9f_{UID}"));
        fs::create_dir_all(pod.join("app")).unwrap();
        fs::create_dir_all(pod.join("sidecar")).unwrap();
        fs::create_dir_all(root.join("containers")).unwrap();
        (pods, root.join("containers"), pod)
    }

    #[test]
    fn cri_stderr_records_with_partials_joined() {
        let log = b"2026-11-25T10:13:58.1Z stdout F started\n\
            2026-11-25T10:13:58.2Z stderr F Traceback (most recent call last):\n\
            2026-11-25T10:13:58.3Z stderr P ModuleNotFound\n\
            2026-11-25T10:13:58.3Z stdout F interleaved\n\
            2026-11-25T10:13:58.3Z stderr F Error: No module named 'flask'\n\
            2026-11-25T10:13:58.4Z stderr F \n\
            garbage\n\
            2026-11-25T10:13:58.5Z stderr P dying mid-";
        let mut tail = TailLines::new(&Limits::default());
        push_cri_stderr(log, &mut tail, 512);
        let out = tail.finish(String::new());
        assert_eq!(
            out.lines,
            [
                "Traceback (most recent call last):",
                "ModuleNotFoundError: No module named 'flask'",
                "dying mid-"
            ]
        );
    }

    #[test]
    fn the_container_id_link_picks_the_container_and_its_restart() {
        let (pods, containers, pod) = tree("link");
        fs::write(pod.join("app/0.log"), "T stderr F first run died\n").unwrap();
        fs::write(pod.join("app/1.log"), "T stderr F second run died\n").unwrap();
        // The sidecar wrote last: without the link it would be picked.
        fs::write(pod.join("sidecar/0.log"), "T stderr F sidecar noise\n").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        File::options()
            .write(true)
            .open(pod.join("sidecar/0.log"))
            .unwrap()
            .set_modified(later)
            .unwrap();
        std::os::unix::fs::symlink(
            format!("/var/log/pods/shop_checkout-7d9f_{UID}/app/0.log"),
            containers.join("checkout-7d9f_shop_app-abcdef0123.log"),
        )
        .unwrap();
        let log = PodLog::locate(&pods, &containers, UID, Some("abcdef0123")).unwrap();
        assert_eq!(log.label, "shop/checkout-7d9f/app");
        let mut tail = TailLines::new(&Limits::default());
        log.read_tail(&Limits::default(), &mut tail).unwrap();
        assert_eq!(tail.finish(String::new()).lines, ["first run died"]);

        let unlinked = PodLog::locate(&pods, &containers, UID, Some("fedcba")).unwrap();
        assert_eq!(
            unlinked.label, "shop/checkout-7d9f/sidecar",
            "the last written"
        );
        assert!(PodLog::locate(&pods, &containers, "00000000-0000", None).is_none());
    }

    #[test]
    fn without_a_link_the_newest_restart_of_the_only_container() {
        let (pods, containers, pod) = tree("restart");
        fs::remove_dir_all(pod.join("sidecar")).unwrap();
        fs::write(pod.join("app/9.log"), "T stderr F ninth\n").unwrap();
        fs::write(pod.join("app/10.log"), "T stderr F tenth\n").unwrap();
        fs::write(pod.join("app/10.log.20261125-101358.gz"), "zipped").unwrap();
        let log = PodLog::locate(&pods, &containers, UID, None).unwrap();
        let mut tail = TailLines::new(&Limits::default());
        log.read_tail(&Limits::default(), &mut tail).unwrap();
        assert_eq!(tail.finish(String::new()).lines, ["tenth"]);
    }
}
