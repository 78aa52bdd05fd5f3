//! Extra trusted root certificates: `[smtp] ca_file` and `[amqp] ca_file`.
//!
//! A PEM file of one or more certificates (a private CA, or a server's
//! self-signed certificate) trusted on top of the public webpki roots.
//! Read when the configuration is loaded, so a missing or malformed file
//! stops start-up (and `tocsin check`) with the setting, the path and the
//! reason; the SMTP and RabbitMQ clients read it again where they build
//! their TLS configuration. There is no setting that turns certificate
//! checks off.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The certificates of a `ca_file`, checked.
#[derive(Clone, Debug)]
pub struct TrustedRoots {
    /// The file, as configured.
    pub path: PathBuf,
    /// Its text: the certificates in PEM, as read.
    pub pem: String,
    /// Each certificate, DER-encoded, in file order.
    pub certs: Vec<CertificateDer<'static>>,
}

impl TrustedRoots {
    /// Reads `path`, the value of `setting` (e.g. `[smtp] ca_file`):
    /// `Ok(None)` when it is empty (the public roots only). Refused, naming
    /// the setting and the file: unreadable, no `CERTIFICATE` PEM block,
    /// a block that is not base64, or one that is not an X.509 certificate
    /// usable as a trust anchor.
    pub fn load(setting: &str, path: &str) -> Result<Option<Self>, String> {
        if path.trim().is_empty() {
            return Ok(None);
        }
        let path = Path::new(path);
        let refuse = |why: String| format!("{setting} = {:?}: {why}", path.display().to_string());
        let pem =
            std::fs::read_to_string(path).map_err(|e| refuse(format!("cannot read it: {e}")))?;
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refuse(format!("not a PEM file of certificates: {e}")))?;
        if certs.is_empty() {
            return Err(refuse(
                "no certificate in it: expected PEM blocks starting with -----BEGIN CERTIFICATE-----"
                    .into(),
            ));
        }
        for (i, cert) in certs.iter().enumerate() {
            rustls::RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| refuse(format!("certificate {} of {}: {e}", i + 1, certs.len())))?;
        }
        Ok(Some(Self {
            path: path.to_path_buf(),
            pem,
            certs,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate (CN tocsin-test, SAN localhost), made with
    /// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256`.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBmDCCAT+gAwIBAgIUQrNnp6Mu1INNJDXaleEInGcnXsEwCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLdG9jc2luLXRlc3QwIBcNMjYxMjAzMjAwNjAwWhgPMjEyNjEx
MDkyMDA2MDBaMBYxFDASBgNVBAMMC3RvY3Npbi10ZXN0MFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEAa+eEbHtqCXNToKs7pBW/i2hzzzUA0EuqVuBpRlfe5Cl0y1+
v7yy8mbarjytfde/3P5wqeBrupEpuesUp3D/raNpMGcwHQYDVR0OBBYEFMfAqOI/
+WK1BQKI/tbc3ITd5WnfMB8GA1UdIwQYMBaAFMfAqOI/+WK1BQKI/tbc3ITd5Wnf
MA8GA1UdEwEB/wQFMAMBAf8wFAYDVR0RBA0wC4IJbG9jYWxob3N0MAoGCCqGSM49
BAMCA0cAMEQCIAc6tjfaJr0t/xuk2y2gfN29FdVt5sLLd0w1jVhCmdtuAiBMldSY
oOxVmoK/Ai5kshFzXVHQcvuaoe3XTwsd0YuD5Q==
-----END CERTIFICATE-----
";

    /// Its first four lines of base64: valid PEM, truncated DER.
    const TRUNCATED: &str = "-----BEGIN CERTIFICATE-----
MIIBmDCCAT+gAwIBAgIUQrNnp6Mu1INNJDXaleEInGcnXsEwCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLdG9jc2luLXRlc3QwIBcNMjYxMjAzMjAwNjAwWhgPMjEyNjEx
MDkyMDA2MDBaMBYxFDASBgNVBAMMC3RvY3Npbi10ZXN0MFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEAa+eEbHtqCXNToKs7pBW/i2hzzzUA0EuqVuBpRlfe5Cl0y1+
-----END CERTIFICATE-----
";

    fn write(dir: &Path, name: &str, text: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    }

    #[test]
    fn empty_means_public_roots_only_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("tocsin-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        assert!(TrustedRoots::load("[smtp] ca_file", "")
            .expect("empty")
            .is_none());

        let missing = dir.join("missing.pem").display().to_string();
        let err = TrustedRoots::load("[smtp] ca_file", &missing).expect_err("missing");
        assert!(err.starts_with("[smtp] ca_file = "), "{err}");
        assert!(
            err.contains(&missing) && err.contains("cannot read"),
            "{err}"
        );

        let text = write(&dir, "text.pem", "not a certificate\n");
        let err = TrustedRoots::load("[amqp] ca_file", &text).expect_err("no PEM");
        assert!(
            err.contains(&text) && err.contains("no certificate"),
            "{err}"
        );

        let key_only = write(
            &dir,
            "key.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let err = TrustedRoots::load("[amqp] ca_file", &key_only).expect_err("a key");
        assert!(err.contains("no certificate"), "{err}");

        let bad_base64 = write(
            &dir,
            "b64.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let err = TrustedRoots::load("[amqp] ca_file", &bad_base64).expect_err("base64");
        assert!(err.contains(&bad_base64), "{err}");

        // Valid base64, truncated DER: not a certificate rustls can trust.
        let truncated = write(&dir, "trunc.pem", TRUNCATED);
        let err = TrustedRoots::load("[smtp] ca_file", &truncated).expect_err("truncated");
        assert!(err.contains("certificate 1 of 1"), "{err}");

        let one = write(&dir, "one.pem", CERT);
        let roots = TrustedRoots::load("[smtp] ca_file", &one)
            .expect("valid")
            .expect("set");
        assert_eq!(roots.certs.len(), 1);
        let two = write(&dir, "two.pem", &format!("# a bundle\n{CERT}{CERT}"));
        let roots = TrustedRoots::load("[smtp] ca_file", &two)
            .expect("valid")
            .expect("set");
        assert_eq!(roots.certs.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
