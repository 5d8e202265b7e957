//! Loki's HTTP side: `POST /loki/api/v1/push` with tenant and credentials, its answer sorted
//! into what the shipper does next, and `GET /loki/api/v1/status/buildinfo` for the version.
use std::{io::Read, time::Duration};

use super::config::{LokiAuth, LokiConfig};

/// Read at most this much of an answer: Loki's messages are short, and a proxy's error page
/// must not cost memory.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// Why a push is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RetryCause {
    /// 429: over Loki's ingestion rate or burst.
    RateLimited,
    /// 5xx: Loki (or a gateway in front) failing or restarting.
    ServerError,
    /// 401/403: credentials refused, e.g. an auth proxy restarting; never dropped for it.
    Auth,
    /// No answer: refused, reset, timed out.
    Connection,
}

impl RetryCause {
    /// The `reason` label of `vigil_loki_lines_retried_total`.
    pub(super) fn label(self) -> &'static str {
        match self {
            RetryCause::RateLimited => "rate_limited",
            RetryCause::ServerError => "server_error",
            RetryCause::Auth => "auth",
            RetryCause::Connection => "connection",
        }
    }
}

pub(super) enum Push {
    Sent,
    /// The cause and what Loki said (status and message, or the connection error).
    Retry(RetryCause, String),
    BadRequest(String),
    Refused(u16, String),
}

/// What `GET /loki/api/v1/status/buildinfo` told.
pub(super) enum Buildinfo {
    Version(String),
    /// An answer without a version: no such endpoint (before Loki 2.3, or a gateway that
    /// passes only pushes), or a body that is not buildinfo.
    Unknown(String),
    /// No answer, or a 5xx: ask again later.
    Unreachable(String),
}

pub(super) struct LokiClient {
    http: ureq::Agent,
    push_url: String,
    buildinfo_url: String,
    tenant: Option<String>,
    /// The `Authorization` value, built once.
    authorization: Option<String>,
}

impl LokiClient {
    pub(super) fn new(config: &LokiConfig) -> Self {
        // Checked when the configuration was resolved.
        let http = vigil_wire::http::client(Duration::from_secs(30), config.ca_file.as_deref())
            .expect("CA file checked at start");
        LokiClient {
            http,
            push_url: format!("{}/loki/api/v1/push", config.url),
            buildinfo_url: format!("{}/loki/api/v1/status/buildinfo", config.url),
            tenant: config.tenant.clone(),
            authorization: config.auth.as_ref().map(LokiAuth::header),
        }
    }

    fn with_headers<B>(&self, mut request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        request
    }

    pub(super) fn push(&self, body: &[u8]) -> Push {
        let request = self
            .with_headers(self.http.post(&self.push_url))
            .header("Content-Type", "application/x-protobuf");
        let mut response = match request.send(body) {
            Ok(response) => response,
            Err(e) => return Push::Retry(RetryCause::Connection, e.to_string()),
        };
        let status = response.status().as_u16();
        let message = answer(&mut response);
        let retry = |cause| Push::Retry(cause, format!("{status} {message}"));
        match status {
            200..=299 => Push::Sent,
            429 => retry(RetryCause::RateLimited),
            401 | 403 => retry(RetryCause::Auth),
            500..=599 => retry(RetryCause::ServerError),
            400 => Push::BadRequest(message),
            _ => Push::Refused(status, message),
        }
    }

    pub(super) fn buildinfo(&self) -> Buildinfo {
        let mut response = match self.with_headers(self.http.get(&self.buildinfo_url)).call() {
            Ok(response) => response,
            Err(e) => return Buildinfo::Unreachable(e.to_string()),
        };
        let status = response.status().as_u16();
        let body = answer(&mut response);
        match status {
            200..=299 => match version_of(&body) {
                Some(version) => Buildinfo::Version(version),
                None => Buildinfo::Unknown(format!("no version in {body:?}")),
            },
            500..=599 => Buildinfo::Unreachable(format!("{status} {body}")),
            _ => Buildinfo::Unknown(format!("{status} {body}")),
        }
    }
}

/// The start of an answer's body, trimmed (lossy: it is for logs and matching).
fn answer(response: &mut ureq::http::Response<ureq::Body>) -> String {
    let mut bytes = Vec::new();
    let _ = response
        .body_mut()
        .as_reader()
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

/// `{"version": "2.7.4", ...}` → "2.7.4".
fn version_of(buildinfo: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(buildinfo).ok()?;
    Some(value.get("version")?.as_str()?.to_owned()).filter(|v| !v.is_empty())
}

/// Whether a Loki of `version` keeps structured metadata: from 3.0 on (where it is on by
/// default). 2.x before 2.9 drops it without an error; 2.9 refuses it unless enabled.
/// `None` when the version is not `[v]MAJOR.…` (a dev build, say).
pub(super) fn keeps_structured_metadata(version: &str) -> Option<bool> {
    let version = version.strip_prefix('v').unwrap_or(version);
    let major: u32 = version.split('.').next()?.parse().ok()?;
    Some(major >= 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_metadata_from_loki_3_on() {
        assert_eq!(keeps_structured_metadata("2.7.4"), Some(false));
        assert_eq!(keeps_structured_metadata("v2.9.1"), Some(false));
        assert_eq!(keeps_structured_metadata("3.0.0"), Some(true));
        assert_eq!(keeps_structured_metadata("3.2.0"), Some(true));
        assert_eq!(keeps_structured_metadata("10.1"), Some(true));
        assert_eq!(keeps_structured_metadata("main-2b1a0c4"), None);
        assert_eq!(keeps_structured_metadata(""), None);
    }

    #[test]
    fn the_version_is_read_from_buildinfo_json() {
        let body = r#"{"version":"2.7.4","revision":"6bd05c9","branch":"HEAD","buildUser":"root@x","buildDate":"2023-02-24","goVersion":"go1.19.5"}"#;
        assert_eq!(version_of(body).as_deref(), Some("2.7.4"));
        assert_eq!(version_of(r#"{"version":""}"#), None);
        assert_eq!(version_of(r#"{"version":3}"#), None);
        assert_eq!(version_of("404 page not found"), None);
    }
}
