//! The email part of `[notify]`: the SMTP URL (`smtp://` plain, `smtp://…?tls=starttls`,
//! `smtps://`), sender and recipients, and the SMTP credentials (never shown by `Debug`).
use std::fmt;

use lettre::message::Mailbox;
use url::Url;
use vigil_wire::token::read_token_file;

use super::config::{invalid, list, NotifyConfigError, NotifyFileConfig, NotifyOverrides};

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No TLS: a relay on this host or a trusted network.
    Plain,
    /// Plain connect, then STARTTLS, required.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub credentials: Option<(String, Secret)>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

pub(super) fn resolve(
    f: &NotifyFileConfig,
    o: &NotifyOverrides,
) -> Result<Option<EmailConfig>, NotifyConfigError> {
    let to = list(&o.email_to, f.email_to.clone());
    let from = o.email_from.clone().or(f.email_from.clone());
    let Some(url) = o.smtp_url.clone().or(f.smtp_url.clone()) else {
        if !to.is_empty() || from.is_some() {
            let with = if to.is_empty() {
                "email_from"
            } else {
                "email_to"
            };
            return Err(NotifyConfigError::Missing {
                field: "smtp_url",
                with,
            });
        }
        return Ok(None);
    };
    let (host, port, security) = smtp_url(&url)?;
    let mailbox = |field, value: &str| {
        value
            .parse::<Mailbox>()
            .map_err(|e| invalid(field, value, format!("not a mail address: {e}")))
    };
    let from = mailbox(
        "email_from",
        from.as_deref().ok_or(NotifyConfigError::Missing {
            field: "email_from",
            with: "smtp_url",
        })?,
    )?;
    if to.is_empty() {
        return Err(NotifyConfigError::Missing {
            field: "email_to",
            with: "smtp_url",
        });
    }
    let to = to
        .iter()
        .map(|t| mailbox("email_to", t))
        .collect::<Result<_, _>>()?;
    let password = match (
        o.smtp_password_file
            .as_ref()
            .or(f.smtp_password_file.as_ref()),
        &o.smtp_password,
    ) {
        (Some(path), _) => Some(Secret(read_token_file(path)?)),
        (None, Some(secret)) => Some(secret.clone()),
        (None, None) => None,
    };
    let credentials = match (
        o.smtp_username.clone().or(f.smtp_username.clone()),
        password,
    ) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(NotifyConfigError::Missing {
                field: "smtp_password_file",
                with: "smtp_username",
            })
        }
        (None, Some(_)) => {
            return Err(NotifyConfigError::Missing {
                field: "smtp_username",
                with: "an SMTP password",
            })
        }
    };
    if credentials.is_some() && security == SmtpSecurity::Plain && !is_loopback(&host) {
        return Err(invalid(
            "smtp_url",
            &url,
            "would send the SMTP password in clear: use smtps:// or ?tls=starttls",
        ));
    }
    Ok(Some(EmailConfig {
        host,
        port,
        security,
        credentials,
        from,
        to,
    }))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `smtp://host[:port]` plain (25), `smtp://host[:port]?tls=starttls` (587), `smtps://host[:port]` (465).
fn smtp_url(value: &str) -> Result<(String, u16, SmtpSecurity), NotifyConfigError> {
    let bad = |what: &str| invalid("smtp_url", value, what);
    let url = Url::parse(value).map_err(|e| bad(&format!("not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials go in smtp_username and smtp_password_file (or VIGIL_SMTP_PASSWORD), not the URL"));
    }
    if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
        return Err(bad("has a path: expected smtp://host:port"));
    }
    let query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let security = match (url.scheme(), query.as_slice()) {
        ("smtp", []) => SmtpSecurity::Plain,
        ("smtp", [(k, v)]) if k == "tls" && v == "starttls" => SmtpSecurity::StartTls,
        ("smtps", []) => SmtpSecurity::Tls,
        ("smtp" | "smtps", _) => return Err(bad("the only option is ?tls=starttls, on smtp://")),
        _ => return Err(bad("scheme must be smtp:// or smtps://")),
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("has no host"))?;
    let default_port = match security {
        SmtpSecurity::Plain => 25,
        SmtpSecurity::StartTls => 587,
        SmtpSecurity::Tls => 465,
    };
    Ok((
        host.trim_matches(['[', ']']).to_owned(),
        url.port().unwrap_or(default_port),
        security,
    ))
}
