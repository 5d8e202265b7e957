//! Email notifier: one plain-text mail per node's burst of transitions, over SMTP with
//! lettre's blocking transport on the notifier's own thread. Plain, STARTTLS (required) or
//! TLS from the first byte; rustls with webpki roots, or only the CA file's when one is set.
use std::time::Duration;

use lettre::{
    message::{header::ContentType, Mailbox},
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, CertificateStore, Tls, TlsParameters},
        extension::ClientId,
    },
    Message, SmtpTransport, Transport,
};

use crate::alerts::model::Alert;

use super::{
    config::{EmailConfig, Links, SmtpSecurity},
    render,
    worker::{Notifier, SendError},
};

pub struct Email {
    transport: SmtpTransport,
    /// `host:port`, for logs.
    target: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    links: Links,
}

impl Email {
    pub fn new(
        config: &EmailConfig,
        ca_pem: Option<&[u8]>,
        links: Links,
        timeout: Duration,
    ) -> Result<Email, lettre::transport::smtp::Error> {
        let tls = || -> Result<TlsParameters, lettre::transport::smtp::Error> {
            let mut params = TlsParameters::builder(config.host.clone());
            if let Some(pem) = ca_pem {
                params = params
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(Certificate::from_pem(pem)?);
            }
            params.build_rustls()
        };
        let tls = match config.security {
            SmtpSecurity::Plain => Tls::None,
            SmtpSecurity::StartTls => Tls::Required(tls()?),
            SmtpSecurity::Tls => Tls::Wrapper(tls()?),
        };
        let mut builder = SmtpTransport::builder_dangerous(config.host.as_str())
            .port(config.port)
            .tls(tls)
            .timeout(Some(timeout))
            .hello_name(hello_name());
        if let Some((user, password)) = &config.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.0.clone()));
        }
        Ok(Email {
            transport: builder.build(),
            target: format!("{}:{}", config.host, config.port),
            from: config.from.clone(),
            to: config.to.clone(),
            links,
        })
    }

    pub fn message(&self, alerts: &[Alert], now_ms: i64) -> Result<Message, lettre::error::Error> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(render::subject(alerts))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder.body(render::body(alerts, &self.links, now_ms))
    }
}

/// EHLO with this host's name (RFC 5321 wants the client's name), else lettre's address literal.
fn hello_name() -> ClientId {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .map_or_else(ClientId::default, ClientId::Domain)
}

impl Notifier for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn send(&mut self, alerts: &[Alert]) -> Result<(), SendError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let message = self
            .message(alerts, now_ms)
            .map_err(|e| SendError::Permanent(format!("cannot build the mail: {e}")))?;
        match self.transport.send(&message) {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Err(e) => Err(SendError::Transient(e.to_string())),
        }
    }
}
