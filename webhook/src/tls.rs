//! The serving certificate, re-read when its files change. New handshakes get the new
//! certificate; connections already open keep theirs, so nothing in flight is dropped.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::crypto::ring::{default_provider, sign::any_supported_type};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::Metrics;
use hubguard_daemon::watch::FileWatch;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{file}: cannot read: {error}")]
    Read {
        file: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{cert} and {key} do not belong together: {message}")]
    Mismatch {
        cert: String,
        key: String,
        message: String,
    },
}

pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    watch: Mutex<FileWatch>,
    metrics: Arc<Metrics>,
    /// A certificate and key that did not match on the last look (a pair caught half-written).
    mismatch_seen: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish()
    }
}

impl CertStore {
    pub fn open(
        cert_path: &Path,
        key_path: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TlsError> {
        let (watch, contents) =
            FileWatch::new(&[cert_path, key_path]).map_err(|error| TlsError::Read {
                file: format!("{} / {}", cert_path.display(), key_path.display()),
                error,
            })?;
        let key = certified_key(cert_path, &contents[0], key_path, &contents[1])?;
        Ok(CertStore {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwap::from_pointee(key),
            watch: Mutex::new(watch),
            metrics,
            mismatch_seen: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Re-reads the files if they changed. Returns whether a new certificate is in use.
    /// A Secret update replaces both files at once; a pair caught half-written is refused and
    /// picked up on the next call, once both files agree.
    pub fn reload(&self) -> bool {
        let mut watch = self.watch.lock().unwrap_or_else(|p| p.into_inner());
        let changed = watch.changed();
        let contents = match changed {
            Ok(None) => return false,
            Ok(Some(contents)) => contents,
            Err(error) => {
                self.metrics.tls_reload_errors.inc();
                tracing::error!(%error, "serving certificate reload failed; keeping the current one");
                return false;
            }
        };
        match certified_key(&self.cert_path, &contents[0], &self.key_path, &contents[1]) {
            Ok(key) => {
                self.mismatch_seen.store(false, Ordering::Relaxed);
                self.current.store(Arc::new(key));
                self.metrics.tls_reloads.inc();
                tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                true
            }
            // Caught between the two files' updates: look again next time before calling it
            // an error.
            Err(TlsError::Mismatch { .. }) if !self.mismatch_seen.swap(true, Ordering::Relaxed) => {
                watch.forget();
                false
            }
            Err(error) => {
                self.mismatch_seen.store(false, Ordering::Relaxed);
                self.metrics.tls_reload_errors.inc();
                tracing::error!(%error, "serving certificate refused; keeping the current one");
                false
            }
        }
    }

    /// A rustls server configuration that asks this store for its certificate on every
    /// handshake: TLS 1.2 and 1.3, HTTP/2 (if `http2`) and HTTP/1.1 by ALPN.
    pub fn server_config(self: &Arc<Self>, http2: bool) -> ServerConfig {
        let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        config
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let cert_file = cert_path.display().to_string();
    let key_file = key_path.display().to_string();
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            file: cert_file.clone(),
            message: format!("not a PEM certificate chain: {e}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Invalid {
            file: cert_file,
            message: "holds no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Invalid {
        file: key_file.clone(),
        message: format!("not a PEM private key: {e}"),
    })?;
    let signing_key = any_supported_type(&key).map_err(|e| TlsError::Invalid {
        file: key_file.clone(),
        message: format!("unsupported private key: {e}"),
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: cert_file,
        key: key_file,
        message: e.to_string(),
    })?;
    Ok(certified)
}
