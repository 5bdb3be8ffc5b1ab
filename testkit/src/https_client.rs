//! The client side of the webhook's TLS port, as the API server uses it: verified TLS against
//! a given CA, one keep-alive connection (HTTP/1.1 or HTTP/2) carrying many requests. Used by
//! the load generator and the integration tests.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::crypto::ring::default_provider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the CA bundle: {0}")]
    Ca(String),
    #[error("connecting to {addr}: {error}")]
    Connect {
        addr: SocketAddr,
        #[source]
        error: std::io::Error,
    },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("the server negotiated {0} instead of the requested protocol")]
    Alpn(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

#[derive(Clone)]
pub struct HttpsClient {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    protocol: Protocol,
}

enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// One open connection; requests on it go one after another (HTTP/1.1) or concurrently from
/// clones (HTTP/2).
pub struct Connection {
    sender: Sender,
    authority: String,
    server_certificate: Vec<u8>,
}

impl HttpsClient {
    /// `server_name` is what the certificate must be valid for (e.g. "localhost", "127.0.0.1").
    pub fn new(
        addr: SocketAddr,
        server_name: &str,
        ca_pem: &[u8],
        protocol: Protocol,
    ) -> Result<Self, ClientError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| ClientError::Ca(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Ca(e.to_string()))?;
        }
        let mut config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Ca(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![match protocol {
            Protocol::Http1 => b"http/1.1".to_vec(),
            Protocol::Http2 => b"h2".to_vec(),
        }];
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| ClientError::Ca(format!("server name {server_name}: {e}")))?;
        Ok(HttpsClient {
            addr,
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
            protocol,
        })
    }

    /// A verified TLS stream to the server, for speaking HTTP by hand.
    pub async fn connect_tls(&self) -> Result<TlsStream<TcpStream>, ClientError> {
        let connect_err = |error| ClientError::Connect {
            addr: self.addr,
            error,
        };
        let tcp = TcpStream::connect(self.addr).await.map_err(connect_err)?;
        tcp.set_nodelay(true).map_err(connect_err)?;
        self.connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(connect_err)
    }

    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let tls = self.connect_tls().await?;
        let server_certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| leaf.to_vec())
            .unwrap_or_default();
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let wanted: &[u8] = match self.protocol {
            Protocol::Http1 => b"http/1.1",
            Protocol::Http2 => b"h2",
        };
        if negotiated.as_deref() != Some(wanted) {
            let got = negotiated.map_or("nothing".into(), |p| {
                String::from_utf8_lossy(&p).into_owned()
            });
            return Err(ClientError::Alpn(got));
        }
        let io = TokioIo::new(tls);
        let sender = match self.protocol {
            Protocol::Http1 => {
                let (sender, conn) = http1::handshake(io).await?;
                tokio::spawn(conn);
                Sender::Http1(sender)
            }
            Protocol::Http2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Sender::Http2(sender)
            }
        };
        Ok(Connection {
            sender,
            authority: self.addr.to_string(),
            server_certificate,
        })
    }
}

impl Connection {
    /// POSTs a JSON body; returns the status and the whole response body.
    pub async fn post(
        &mut self,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(match self.sender {
                Sender::Http1(_) => path.to_string(),
                Sender::Http2(_) => format!("https://{}{path}", self.authority),
            })
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .expect("a valid request");
        let response = match &mut self.sender {
            Sender::Http1(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
            Sender::Http2(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
        };
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// The DER of the certificate the server presented on this connection.
    pub fn server_certificate(&self) -> &[u8] {
        &self.server_certificate
    }

    /// Whether the server has closed this connection (e.g. while draining).
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }
}
