//! A pod's namespace and name from its UID, without the Kubernetes API: kubelet keeps each
//! pod's logs in `/var/log/pods/<namespace>_<name>_<uid>` (namespaces and pod names are DNS
//! names, never containing `_`). The directory is listed again only when a UID is not known
//! (at most once per `RELIST_AFTER`), so a node's pods cost one listing per new pod.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::Serialize;
use tracing::warn;

/// Entries read from the pod log directory at most (kubelet keeps one per pod on the node).
pub const MAX_POD_DIRS: usize = 8192;
/// A UID not found is looked up again no sooner than this.
const RELIST_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

pub struct PodDirectory {
    root: PathBuf,
    by_uid: HashMap<String, PodName>,
    listed_at: Option<Instant>,
    /// Entries past the bound at the last listing.
    pub skipped: usize,
}

impl PodDirectory {
    pub fn new(root: &Path) -> Self {
        PodDirectory {
            root: root.to_path_buf(),
            by_uid: HashMap::new(),
            listed_at: None,
            skipped: 0,
        }
    }

    pub fn lookup(&mut self, uid: &str) -> Option<PodName> {
        if let Some(found) = self.by_uid.get(uid) {
            return Some(found.clone());
        }
        if self.listed_at.is_some_and(|t| t.elapsed() < RELIST_AFTER) {
            return None;
        }
        self.relist();
        self.by_uid.get(uid).cloned()
    }

    /// Rebuilds the map from the directory: pods deleted since drop out, so it stays bounded.
    fn relist(&mut self) {
        self.listed_at = Some(Instant::now());
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            // Not a Kubernetes node (or the directory is not mounted): nothing to name.
            self.by_uid.clear();
            return;
        };
        let mut by_uid = HashMap::new();
        let mut skipped = 0;
        for entry in entries.flatten() {
            if by_uid.len() >= MAX_POD_DIRS {
                skipped += 1;
                continue;
            }
            if let Some((uid, name)) = entry.file_name().to_str().and_then(parse_dir_name) {
                by_uid.insert(uid, name);
            }
        }
        if skipped > 0 && skipped != self.skipped {
            warn!(
                skipped,
                limit = MAX_POD_DIRS,
                dir = %self.root.display(),
                "more pod log directories than the bound: some pods are not named"
            );
        }
        self.skipped = skipped;
        self.by_uid = by_uid;
    }
}

/// `shop_web-7d9f-abcde_0b7a…` → (uid, shop/web-7d9f-abcde).
fn parse_dir_name(dir: &str) -> Option<(String, PodName)> {
    let mut parts = dir.splitn(3, '_');
    let (namespace, name, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if namespace.is_empty() || name.is_empty() || uid.is_empty() || uid.contains('_') {
        return None;
    }
    Some((
        uid.to_owned(),
        PodName {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_give_namespace_name_and_uid() {
        let (uid, pod) =
            parse_dir_name("shop_web-7d9f-abcde_0b7a2c1e-1111-2222-3333-444455556666").unwrap();
        assert_eq!(uid, "0b7a2c1e-1111-2222-3333-444455556666");
        assert_eq!(pod.namespace, "shop");
        assert_eq!(pod.name, "web-7d9f-abcde");
        assert_eq!(parse_dir_name("no-underscores"), None);
        assert_eq!(parse_dir_name("a__uid"), None);
        assert_eq!(parse_dir_name("a_b_c_d"), None);
    }

    #[test]
    fn a_new_pod_is_found_by_listing_again() {
        let root = std::env::temp_dir().join(format!("vigil-pods-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("kube-system_coredns-abc_uid-1")).unwrap();
        let mut pods = PodDirectory::new(&root);
        assert_eq!(pods.lookup("uid-1").unwrap().name, "coredns-abc");
        assert_eq!(pods.lookup("uid-2"), None);
        std::fs::create_dir_all(root.join("shop_web-1_uid-2")).unwrap();
        // Listed again only after a pause: a missing UID does not list at every lookup.
        pods.listed_at = Some(Instant::now() - RELIST_AFTER);
        assert_eq!(
            pods.lookup("uid-2"),
            Some(PodName {
                namespace: "shop".into(),
                name: "web-1".into()
            })
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
