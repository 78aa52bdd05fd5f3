//! TLS peers for the transport-security tests: a private certificate
//! authority made at test time (rcgen), and a TLS terminator in front of a
//! plain TCP service (the local RabbitMQ has no TLS listener, and the
//! tests must not reconfigure it).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::TempDir;

/// A throwaway CA and one server certificate it signed, valid for
/// `localhost` and `127.0.0.1`, written as PEM files.
pub struct TestCa {
    /// The CA's certificate: what a client must trust (`ca_file`).
    pub ca_file: PathBuf,
    /// The server's chain (its certificate, then the CA's).
    pub cert_file: PathBuf,
    /// The server's private key (PKCS#8).
    pub key_file: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
    _dir: TempDir,
}

impl TestCa {
    /// A new CA named after `label`, and its server certificate.
    pub fn new(label: &str) -> Result<Self> {
        let dir = TempDir::new(&format!("ca-{label}"))?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, format!("tocsin test CA ({label})"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

        let mut server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &*ca)?;

        let ca_file = dir.path().join("ca.pem");
        let cert_file = dir.path().join("server.pem");
        let key_file = dir.path().join("server.key");
        std::fs::write(&ca_file, ca.pem())?;
        std::fs::write(&cert_file, format!("{}{}", server_cert.pem(), ca.pem()))?;
        std::fs::write(&key_file, server_key.serialize_pem())?;
        Ok(Self {
            ca_file,
            cert_file,
            key_file,
            chain: vec![server_cert.der().clone(), ca.der().clone()],
            key: server_key.serialize_der(),
            _dir: dir,
        })
    }

    /// The path of the CA certificate, as a setting's value.
    pub fn ca_setting(&self) -> String {
        self.ca_file.display().to_string()
    }

    /// A rustls server configuration presenting the server certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)?;
        Ok(Arc::new(config))
    }
}

#[derive(Default)]
struct Counts {
    handshakes: AtomicU64,
    refused: AtomicU64,
    amqp: AtomicU64,
}

/// Accepts TLS on 127.0.0.1 (an ephemeral port) with a [`TestCa`]'s
/// server certificate and pipes the decrypted bytes to a plain TCP
/// `upstream`. Counts handshakes that completed, handshakes the client
/// broke off (e.g. it did not trust the certificate), and sessions whose
/// first decrypted bytes were the AMQP 0-9-1 protocol header.
pub struct TlsProxy {
    pub port: u16,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

/// The header an AMQP 0-9-1 client opens with.
const AMQP_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

impl TlsProxy {
    pub async fn start(ca: &TestCa, upstream: &str) -> Result<Self> {
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config()?);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the TLS proxy")?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Counts::default());
        let upstream = upstream.to_string();
        let c = counts.clone();
        let task = tokio::spawn(async move {
            // Dropped with the accept loop when the proxy is: every
            // connection it carries ends with it.
            let mut sessions = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                while sessions.try_join_next().is_some() {}
                let (acceptor, upstream, c) = (acceptor.clone(), upstream.clone(), c.clone());
                sessions.spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(s) => s,
                        Err(_) => {
                            c.refused.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    c.handshakes.fetch_add(1, Ordering::SeqCst);
                    let mut header = [0u8; 8];
                    if tls.read_exact(&mut header).await.is_err() {
                        return;
                    }
                    if &header == AMQP_HEADER {
                        c.amqp.fetch_add(1, Ordering::SeqCst);
                    }
                    let Ok(mut plain) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    if plain.write_all(&header).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(Self { port, counts, task })
    }

    /// TLS handshakes completed.
    pub fn handshakes(&self) -> u64 {
        self.counts.handshakes.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed (the client refused the certificate, or
    /// spoke something else than TLS).
    pub fn refused(&self) -> u64 {
        self.counts.refused.load(Ordering::SeqCst)
    }

    /// Sessions that carried AMQP inside TLS.
    pub fn amqp_sessions(&self) -> u64 {
        self.counts.amqp.load(Ordering::SeqCst)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
