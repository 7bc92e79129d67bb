//! TLS to a PostgreSQL ledger: rustls on the aws-lc-rs provider, the same crypto stack that
//! reqwest uses for Stitch, so the binary carries one TLS implementation (libssh2's OpenSSL
//! aside).
//!
//! `verify-full` checks the chain against `ssl_ca_file` (or the platform's roots) and the host
//! name in the URL; `require` only encrypts, as libpq's `require` does without a root file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// `[ledger] sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// Encrypted, the server's certificate not checked.
    Require,
    /// Encrypted, the certificate checked against the CA and the host name.
    #[default]
    VerifyFull,
}

impl SslMode {
    pub const NAMES: &'static str = "\"disable\", \"require\" or \"verify-full\"";

    pub fn parse(s: &str) -> Option<SslMode> {
        match s {
            "disable" => Some(SslMode::Disable),
            "require" => Some(SslMode::Require),
            "verify-full" => Some(SslMode::VerifyFull),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The process's one crypto provider.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Why no TLS client could be made; the CA file's problems name the file, for an operator.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("TLS set-up: {0}")]
    Protocols(#[source] rustls::Error),
    #[error("cannot read ssl_ca_file {}: {source}", path.display())]
    ReadCa { path: PathBuf, source: std::io::Error },
    #[error("ssl_ca_file {} is not PEM certificates: {source}", path.display())]
    NotPem { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("ssl_ca_file {} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("ssl_ca_file {}: {source}", path.display())]
    BadCertificate { path: PathBuf, source: rustls::Error },
    #[error("the platform's CA roots: {0}")]
    PlatformRoots(#[source] rustls::Error),
}

/// The rustls client configuration for `mode` (not called for `Disable`).
pub fn client_config(mode: SslMode, ca_file: Option<&Path>) -> Result<ClientConfig, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Protocols)?;
    let config = match (mode, ca_file) {
        (SslMode::Require, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider())))
            .with_no_client_auth(),
        (_, Some(path)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|source| TlsSetupError::BadCertificate { path: path.into(), source })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (_, None) => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder.with_platform_verifier().map_err(TlsSetupError::PlatformRoots)?.with_no_client_auth()
        }
    };
    Ok(config)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = std::fs::read(path).map_err(|source| TlsSetupError::ReadCa { path: path.into(), source })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsSetupError::NotPem { path: path.into(), source })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

/// `require`: any certificate, but the handshake's signatures are still checked, so the session
/// is with whoever holds the certificate's key.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `[ledger]` TLS settings as the config gives them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgTls {
    pub sslmode: SslMode,
    /// Resolved against the config file's folder; only with `verify-full`.
    pub ssl_ca_file: Option<PathBuf>,
}
