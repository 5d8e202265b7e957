//! Bearer tokens from files, as both binaries take them (`--token-file`, Loki credentials):
//! trimmed, and an empty file is an error rather than an empty password.
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use tracing::warn;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {path} is empty")]
    Empty { path: PathBuf },
}

/// The file's content without surrounding whitespace. A file that group or others may read
/// is used, with a warning: a secret should be 0600 (or 0400).
pub fn read_token_file(path: &Path) -> Result<String, TokenError> {
    if let Some(mode) = loose_permissions(path) {
        warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "token file is readable by group or others; `chmod 600` it"
        );
    }
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(token.to_owned())
}

/// The file's permission bits when group or others have any access.
pub fn loose_permissions(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_empty_is_an_error_and_loose_modes_are_seen() {
        let dir = std::env::temp_dir().join(format!("vigil-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, " s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "s3cret");
        assert_eq!(loose_permissions(&path), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(loose_permissions(&path), Some(0o644));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            read_token_file(&path),
            Err(TokenError::Empty { .. })
        ));
        assert!(matches!(
            read_token_file(&dir.join("absent")),
            Err(TokenError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
