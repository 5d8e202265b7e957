//! The HTTP side shared by the Alertmanager and webhook notifiers: one ureq agent (rustls with
//! ring, webpki roots or the configured CA file) and a JSON POST whose outcome says whether a
//! retry could help.
use std::time::Duration;

use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};

use super::worker::SendError;

/// An agent that reports every status as a response (classified by `post_json`).
pub fn agent(ca_pem: Option<&[u8]>, timeout: Duration) -> ureq::Agent {
    let mut tls = TlsConfig::builder();
    if let Some(pem) = ca_pem {
        // Checked when the configuration was read: only the certificates matter here.
        let certs: Vec<_> = parse_pem(pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .tls_config(tls.build())
        .user_agent(concat!("vigil-collector/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// 2xx: delivered; 429, 5xx and connection errors: transient; any other status: refused.
pub fn post_json(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<(), SendError> {
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .map_err(|e| SendError::Transient(e.to_string()))?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    // The receiver's reason, bounded: a proxy's error page must not fill the log.
    let message = response
        .body_mut()
        .with_config()
        .limit(2048)
        .read_to_string()
        .unwrap_or_default();
    let reason = format!("{status} {}", message.trim());
    match status {
        429 | 500..=599 => Err(SendError::Transient(reason)),
        _ => Err(SendError::Permanent(reason)),
    }
}
