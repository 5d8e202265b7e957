//! The HTTP client both binaries deliver with (agent → collector, collector → Loki and
//! notifiers): `http://` or `https://` with rustls, trusting the system's roots (Debian's
//! bundle, or `SSL_CERT_FILE`) plus an optional CA file, e.g. a private CA for the collector.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use ureq::tls::{parse_pem, Certificate, PemItem, RootCerts, TlsConfig};

/// Where Debian (and most distributions) keep the system's trusted roots.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// A CA file larger than this is not a CA file.
const MAX_PEM_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("`{0}` is not an http:// or https:// URL")]
    Scheme(String),
}

/// The certificates of a PEM file (bounded read).
fn certificates(path: &Path) -> Result<Vec<Certificate<'static>>, HttpError> {
    let err = |reason: String| HttpError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| err(e.to_string()))?
        .len();
    if size > MAX_PEM_BYTES {
        return Err(err(format!("{size} bytes, over {MAX_PEM_BYTES}")));
    }
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs: Vec<_> = parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// An agent for `url`s like the given one: `timeout` for a whole request, statuses returned as
/// responses (callers decide what retries), roots = system + `ca_file`.
pub fn client(timeout: Duration, ca_file: Option<&Path>) -> Result<ureq::Agent, HttpError> {
    let mut roots = Vec::new();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map_or_else(|| PathBuf::from(SYSTEM_BUNDLE), PathBuf::from);
    if let Ok(certs) = certificates(&system) {
        roots.extend(certs);
    }
    if let Some(path) = ca_file {
        roots.extend(certificates(path)?);
    }
    let root_certs = if roots.is_empty() {
        // No system bundle (a slim container): Mozilla's roots, compiled in.
        RootCerts::WebPki
    } else {
        RootCerts::from(roots)
    };
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .tls_config(TlsConfig::builder().root_certs(root_certs).build())
        .build()
        .into())
}

/// Refuses a URL neither http:// nor https:// before anything is sent to it.
pub fn check_url(url: &str) -> Result<(), HttpError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(HttpError::Scheme(url.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("vigil-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        assert!(matches!(
            client(Duration::from_secs(1), Some(&bad)),
            Err(HttpError::CaFile { .. })
        ));
        assert!(client(Duration::from_secs(1), Some(&dir.join("absent"))).is_err());
        assert!(client(Duration::from_secs(1), None).is_ok());
        assert!(check_url("https://x").is_ok() && check_url("ftp://x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
