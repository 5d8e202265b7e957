//! The collector's listener, plain or TLS (`tls_cert_file` + `tls_key_file`, PEM; rustls
//! with ring). TLS handshakes run in tasks of their own, bounded in number and time, so a
//! slow or silent client never holds up accepting the others; a failed handshake is logged
//! and counted, never fatal.
use std::{io, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use metrics::counter;
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::{mpsc, Semaphore},
};
use tokio_rustls::{rustls, TlsAcceptor};
use tracing::{debug, warn};

/// Handshakes in progress at once; past it new connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate file {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("TLS key file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// What a connection is to the HTTP server: plain TCP or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Reads the certificate chain and key, and builds the acceptor (checked at start).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.display().to_string(),
            reason: "no certificate in it".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The listener axum serves: every connection as a boxed stream.
pub struct Incoming {
    local: SocketAddr,
    kind: Kind,
}

enum Kind {
    Plain(TcpListener),
    /// Handshaken connections, from the accepting task.
    Tls(mpsc::Receiver<(Box<dyn Stream>, SocketAddr)>),
}

impl Incoming {
    pub fn new(listener: TcpListener, tls: Option<TlsAcceptor>) -> io::Result<Incoming> {
        let local = listener.local_addr()?;
        let kind = match tls {
            None => Kind::Plain(listener),
            Some(acceptor) => {
                let (tx, rx) = mpsc::channel(MAX_HANDSHAKES);
                tokio::spawn(handshakes(listener, acceptor, tx));
                Kind::Tls(rx)
            }
        };
        Ok(Incoming { local, kind })
    }
}

async fn handshakes(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(Box<dyn Stream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((Box::new(tls) as Box<dyn Stream>, peer)).await;
                }
                Ok(Err(e)) => {
                    counter!("vigil_tls_handshakes_failed_total").increment(1);
                    warn!(%peer, "TLS handshake failed: {e}");
                }
                Err(_) => {
                    counter!("vigil_tls_handshakes_failed_total").increment(1);
                    warn!(%peer, "TLS handshake not finished within {HANDSHAKE_TIMEOUT:?}");
                }
            }
        });
    }
}

impl axum::serve::Listener for Incoming {
    type Io = Box<dyn Stream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match &mut self.kind {
            Kind::Plain(listener) => loop {
                match TcpListener::accept(listener).await {
                    Ok((tcp, peer)) => return (Box::new(tcp), peer),
                    Err(e) => {
                        debug!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            },
            Kind::Tls(rx) => match rx.recv().await {
                Some(accepted) => accepted,
                // The accepting task ended (runtime shutting down): nothing more comes.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
