//! `tls://` with rustls, the way Dask sets up TLS (`distributed/security.py`,
//! `Security._get_tls_context`).
//!
//! Dask's TLS is mutual and CA-pinned: a cluster has its own CA, every process (scheduler,
//! worker, client) has a certificate signed by it, both sides of every connection require
//! and verify the other's certificate against that CA, and neither checks host names
//! (`check_hostname = False`: people connect to IP addresses). So the listener here demands
//! a client certificate from the CA, and the scheduler's own dials (to workers, for
//! `get_data`, `update_data`, `run`, ...) present the scheduler's certificate and verify the
//! worker's chain against the CA without matching a name.
//!
//! What the scheduler listens on is decided like `dask scheduler` does it
//! (`cli/dask_scheduler.py`, `comm/addressing.py:address_from_user_args`): an explicit
//! protocol (`--protocol`, or a scheme in `--host`) wins; otherwise any `--tls-*` flag, or
//! `distributed.comm.require-encryption`, means `tls://`. A `tcp://` listener while
//! encryption is required, or `tls://` without a CA and a certificate, stops the start
//! with a message, as the stock scheduler does.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why TLS could not be set up, or a TLS connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// "CA file", "certificate", "key"
        what: &'static str,
        /// the file
        path: PathBuf,
        /// why
        source: std::io::Error,
    },
    /// A PEM file without the expected item, or with an unusable one.
    #[error("{what} {path}: {why}")]
    Pem {
        /// "CA file", "certificate", "key"
        what: &'static str,
        /// the file (or `<in-memory PEM>`)
        path: String,
        /// what is wrong
        why: String,
    },
    /// The settings do not fit together (protocol, encryption, files).
    #[error("{0}")]
    Settings(String),
    /// An OpenSSL cipher string rask cannot map onto rustls' cipher suites.
    #[error("distributed.comm.tls.ciphers {0}")]
    Ciphers(String),
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The CA file cannot verify client certificates.
    #[error("TLS client verifier: {0}")]
    Verifier(String),
    /// A plain TCP peer on a `tls://` listener.
    #[error("plain TCP connection refused: this scheduler speaks TLS only (connect to its tls:// address with the cluster's Security settings)")]
    PlainTcp,
    /// The TLS handshake failed (bad or missing certificate, protocol mismatch).
    #[error("TLS handshake failed: {0}{1}")]
    Handshake(std::io::Error, &'static str),
    /// A `tls://` address but no TLS configured in this process.
    #[error("cannot dial {0}: no TLS certificates are configured (--tls-ca-file, --tls-cert)")]
    NotConfigured(String),
    /// Encryption is required and the address is plain `tcp://`.
    #[error("encryption required by Dask configuration, refusing communication from/to {0:?}")]
    EncryptionRequired(String),
}

impl TlsError {
    /// A failed handshake, with a hint for the failures people hit with Dask certificates.
    pub fn handshake(e: std::io::Error) -> TlsError {
        let text = format!("{e:?}");
        let hint = if text.contains("UnsupportedCertVersion") {
            " (the certificate is X.509 v1; rustls accepts only v3 certificates: re-issue it \
             with an extension, e.g. `openssl x509 -req ... -extfile` with \
             `basicConstraints=CA:FALSE`)"
        } else if text.contains("NoCertificatesPresented") {
            " (the peer sent no certificate: Dask's TLS is mutual, give it tls_client_cert / \
             --tls-cert)"
        } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
            " (the certificate is not signed by our CA file)"
        } else {
            ""
        };
        TlsError::Handshake(e, hint)
    }
}

/// `distributed.comm.require-encryption` and `distributed.comm.tls.*` (scheduler side), as
/// the user's Dask configuration gives them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsSettings {
    /// refuse plain TCP
    pub require_encryption: bool,
    /// `tls.ca-file`
    pub ca_file: Option<PathBuf>,
    /// `tls.scheduler.cert`
    pub cert: Option<PathBuf>,
    /// `tls.scheduler.key` (else the key is in the cert file)
    pub key: Option<PathBuf>,
    /// `tls.ciphers` (an OpenSSL cipher string)
    pub ciphers: Option<String>,
    /// `tls.min-version`: `"1.2"` or `"1.3"`
    pub min_version: Option<String>,
    /// `tls.max-version`
    pub max_version: Option<String>,
}

/// The TLS flags of `rask scheduler` (`dask scheduler`'s `--tls-ca-file`, `--tls-cert`,
/// `--tls-key`); each one given wins over its Dask config key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFlags {
    /// `--tls-ca-file`
    pub ca_file: Option<PathBuf>,
    /// `--tls-cert`
    pub cert: Option<PathBuf>,
    /// `--tls-key` (else the key is read from the certificate file)
    pub key: Option<PathBuf>,
}

impl TlsFlags {
    /// Whether any flag was given (that alone makes the listener `tls://`, as in Dask).
    pub fn any(&self) -> bool {
        self.ca_file.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// Both directions of TLS for one process: what the listener accepts with and what the
/// scheduler dials with.
pub struct TlsContext {
    /// server side: requires a client certificate signed by the CA
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// client side: presents our certificate, verifies the peer's chain (not its name)
    pub connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsContext")
    }
}

/// The scheduler's decided transport security.
#[derive(Debug, Clone)]
pub struct Security {
    /// `"tcp"` or `"tls"`: the listener's and the advertised address's scheme
    pub scheme: &'static str,
    /// certificates, if configured (needed for `tls://`, and to dial `tls://` workers)
    pub tls: Option<Arc<TlsContext>>,
    /// refuse to dial (and to listen on) plain `tcp://`
    pub require_encryption: bool,
}

/// Decides the listener's protocol and loads the certificates. `protocol` is `--protocol`
/// or the scheme of `--host`, if any.
pub fn resolve(
    protocol: Option<&str>,
    flags: &TlsFlags,
    config: &TlsSettings,
) -> Result<Security, TlsError> {
    // `Security(**flags)` with any flag given: require_encryption = True unless the config
    // says otherwise (rask cannot tell an explicit False from unset: it treats both as unset).
    let require_encryption = config.require_encryption || flags.any();
    let scheme = match protocol.map(|p| p.trim_end_matches("://")) {
        Some("tcp") => "tcp",
        Some("tls") => "tls",
        Some(other) => {
            return Err(TlsError::Settings(format!(
                "protocol {other:?} is not supported by rask; use tcp or tls"
            )))
        }
        None if require_encryption => "tls",
        None => "tcp",
    };
    if scheme == "tcp" && require_encryption {
        return Err(TlsError::EncryptionRequired(
            "a tcp:// listener (the --tls-* flags or distributed.comm.require-encryption ask for \
             tls://)"
                .to_string(),
        ));
    }
    let ca = flags.ca_file.clone().or_else(|| config.ca_file.clone());
    let cert = flags.cert.clone().or_else(|| config.cert.clone());
    let key = flags.key.clone().or_else(|| config.key.clone());
    let tls = match (ca, cert) {
        (Some(ca), Some(cert)) => Some(Arc::new(load(&TlsFiles {
            ca,
            cert,
            key,
            ciphers: config.ciphers.clone(),
            min_version: config.min_version.clone(),
            max_version: config.max_version.clone(),
        })?)),
        (ca, cert) if scheme == "tls" => {
            let missing = match (ca.is_none(), cert.is_none()) {
                (true, true) => "a CA file and a certificate",
                (true, false) => "a CA file",
                _ => "a certificate",
            };
            return Err(TlsError::Settings(format!(
                "tls:// needs {missing}: pass --tls-ca-file and --tls-cert (and --tls-key unless \
                 the key is in the certificate file), or set distributed.comm.tls.ca-file and \
                 distributed.comm.tls.scheduler.cert"
            )));
        }
        _ => None,
    };
    Ok(Security {
        scheme,
        tls,
        require_encryption,
    })
}

/// Everything a TLS context is built from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// CA certificate(s), PEM: a path, or the PEM text itself (as Dask allows)
    pub ca: PathBuf,
    /// our certificate chain, PEM (path or text)
    pub cert: PathBuf,
    /// our private key, PEM (path or text); `None`: it is in the certificate file
    pub key: Option<PathBuf>,
    /// OpenSSL cipher string (`distributed.comm.tls.ciphers`)
    pub ciphers: Option<String>,
    /// `"1.2"` or `"1.3"`
    pub min_version: Option<String>,
    /// `"1.2"` or `"1.3"`
    pub max_version: Option<String>,
}

/// Builds the acceptor and connector.
pub fn load(files: &TlsFiles) -> Result<TlsContext, TlsError> {
    let ca_pem = read_pem("CA file", &files.ca)?;
    let mut roots = RootCertStore::empty();
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(&ca_pem) {
        let c = c.map_err(|e| pem_error("CA file", &files.ca, e.to_string()))?;
        roots
            .add(c)
            .map_err(|e| pem_error("CA file", &files.ca, e.to_string()))?;
        n += 1;
    }
    if n == 0 {
        return Err(pem_error(
            "CA file",
            &files.ca,
            "no CERTIFICATE in it".into(),
        ));
    }
    let roots = Arc::new(roots);

    let cert_pem = read_pem("certificate", &files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate", &files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(
            "certificate",
            &files.cert,
            "no CERTIFICATE in it".into(),
        ));
    }
    let (key_what, key_path) = match &files.key {
        Some(k) => ("key", k),
        None => (
            "key (expected in the certificate file, no --tls-key)",
            &files.cert,
        ),
    };
    let key_pem = if files.key.is_some() {
        read_pem("key", key_path)?
    } else {
        cert_pem.clone()
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let why = if String::from_utf8_lossy(&key_pem).contains("ENCRYPTED") {
            "the private key is encrypted; rask needs an unencrypted key".to_string()
        } else {
            format!("no usable PRIVATE KEY ({e})")
        };
        pem_error(key_what, key_path, why)
    })?;

    let provider = Arc::new(provider(files.ciphers.as_deref())?);
    let versions = versions(files.min_version.as_deref(), files.max_version.as_deref())?;

    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())?;
    let client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CaChainOnly {
            roots,
            algorithms: provider.signature_verification_algorithms,
        }))
        .with_client_auth_cert(chain, key)?;
    Ok(TlsContext {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
    })
}

/// Dask accepts PEM text in place of a path (`Security.temporary()`, `"\n" in ca`).
fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let s = path.as_os_str().to_string_lossy();
    if s.contains('\n') {
        return Ok(s.as_bytes().to_vec());
    }
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(what: &'static str, path: &Path, why: String) -> TlsError {
    let s = path.as_os_str().to_string_lossy();
    let path = if s.contains('\n') {
        "<in-memory PEM>".to_string()
    } else {
        s.into_owned()
    };
    TlsError::Pem { what, path, why }
}

/// `tls.min-version` / `tls.max-version` (`"1.2"` or `"1.3"`; Dask's default minimum is 1.2
/// and it allows nothing older either).
fn versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    fn rank(v: Option<&str>, default: u8, key: &str) -> Result<u8, TlsError> {
        match v {
            None => Ok(default),
            Some("1.2") => Ok(2),
            Some("1.3") => Ok(3),
            Some(other) => Err(TlsError::Settings(format!(
                "distributed.comm.tls.{key}={other:?} is not supported, expected 1.2 or 1.3"
            ))),
        }
    }
    let lo = rank(min, 2, "min-version")?;
    let hi = rank(max, 3, "max-version")?;
    let all: [(u8, &'static SupportedProtocolVersion); 2] =
        [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)];
    let chosen: Vec<_> = all
        .iter()
        .filter(|(r, _)| (lo..=hi).contains(r))
        .map(|(_, v)| *v)
        .collect();
    if chosen.is_empty() {
        return Err(TlsError::Settings(format!(
            "distributed.comm.tls.min-version {:?} is above max-version {:?}",
            min.unwrap_or("1.2"),
            max.unwrap_or("1.3")
        )));
    }
    Ok(chosen)
}

/// The OpenSSL names of the TLS 1.2 suites rustls (ring) implements.
const TLS12_SUITES: [(&str, rustls::SupportedCipherSuite); 6] = {
    use rustls::crypto::ring::cipher_suite::*;
    [
        (
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "ECDHE-RSA-AES256-GCM-SHA384",
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "ECDHE-RSA-AES128-GCM-SHA256",
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "ECDHE-RSA-CHACHA20-POLY1305",
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ]
};

/// The ring provider, its TLS 1.2 suites narrowed by `ciphers`.
///
/// `ciphers` is an OpenSSL cipher list (`SSLContext.set_ciphers`). Like OpenSSL, it only
/// narrows TLS 1.2; TLS 1.3 suites stay as they are. rask maps explicit suite names, skips
/// names of suites rustls does not implement (OpenSSL also ignores names it lacks, as long
/// as one matches), and refuses OpenSSL's selection language (`HIGH`, `!aNULL`, `@STRENGTH`,
/// `+`, ...), which it cannot evaluate faithfully.
fn provider(ciphers: Option<&str>) -> Result<CryptoProvider, TlsError> {
    let mut p = rustls::crypto::ring::default_provider();
    let Some(ciphers) = ciphers.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(p);
    };
    let mut chosen = Vec::new();
    let mut skipped = Vec::new();
    for name in ciphers.split([':', ',', ' ']).filter(|n| !n.is_empty()) {
        if let Some((_, suite)) = TLS12_SUITES.iter().find(|(n, _)| *n == name) {
            if !chosen.contains(suite) {
                chosen.push(*suite);
            }
        } else if name.starts_with(['!', '-', '+', '@'])
            || name.contains('+')
            || name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(TlsError::Ciphers(format!(
                "{ciphers:?}: rask maps only explicit cipher names, not OpenSSL's selection \
                 syntax ({name:?}); it supports {}",
                TLS12_SUITES.map(|(n, _)| n).join(":")
            )));
        } else {
            skipped.push(name);
        }
    }
    if chosen.is_empty() {
        return Err(TlsError::Ciphers(format!(
            "{ciphers:?} names no cipher rask supports; it supports {}",
            TLS12_SUITES.map(|(n, _)| n).join(":")
        )));
    }
    if !skipped.is_empty() {
        tracing::warn!(
            "distributed.comm.tls.ciphers: rask has no {} (skipped)",
            skipped.join(", ")
        );
    }
    p.cipher_suites.retain(|s| match s {
        rustls::SupportedCipherSuite::Tls13(_) => true,
        other => chosen.contains(other),
    });
    Ok(p)
}

/// Verifies a server's certificate chain against the CA and nothing else: Dask clusters
/// use IP addresses and a dedicated CA, so Dask turns host name checks off
/// (`ctx.check_hostname = False`).
#[derive(Debug)]
struct CaChainOnly {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for CaChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The name the scheduler dials a `tls://host:port` peer by. No name is checked, but rustls
/// needs one; an IP address also keeps it from sending SNI.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|_| TlsError::Settings(format!("cannot dial TLS host {host:?}: not a valid name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_min_and_max() {
        assert_eq!(versions(None, None).unwrap().len(), 2);
        assert_eq!(
            versions(Some("1.3"), None).unwrap(),
            vec![&rustls::version::TLS13]
        );
        assert_eq!(
            versions(None, Some("1.2")).unwrap(),
            vec![&rustls::version::TLS12]
        );
        assert!(versions(Some("1.3"), Some("1.2")).is_err());
        assert!(versions(Some("1.1"), None).is_err());
    }

    #[test]
    fn ciphers_map_names_and_refuse_openssl_expressions() {
        let p = provider(Some("ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA")).unwrap();
        let tls12: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls12(_)))
            .collect();
        assert_eq!(tls12.len(), 1);
        assert!(p.cipher_suites.len() > 1, "TLS 1.3 suites stay");
        for bad in ["HIGH:!aNULL", "DEFAULT", "ECDHE+AESGCM", "AES128-SHA"] {
            let e = provider(Some(bad)).unwrap_err();
            assert!(e.to_string().contains("ciphers"), "{e}");
        }
        assert_eq!(
            provider(None).unwrap().cipher_suites.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
    }

    #[test]
    fn protocol_follows_flags_and_require_encryption() {
        let none = TlsSettings::default();
        assert_eq!(
            resolve(None, &TlsFlags::default(), &none).unwrap().scheme,
            "tcp"
        );
        let required = TlsSettings {
            require_encryption: true,
            ..TlsSettings::default()
        };
        // tls:// without certificates, and tcp:// with encryption required, both refuse
        let e = resolve(None, &TlsFlags::default(), &required).unwrap_err();
        assert!(
            e.to_string().contains("needs a CA file and a certificate"),
            "{e}"
        );
        let e = resolve(Some("tcp"), &TlsFlags::default(), &required).unwrap_err();
        assert!(e.to_string().contains("encryption required"), "{e}");
        let e = resolve(Some("ucx"), &TlsFlags::default(), &none).unwrap_err();
        assert!(e.to_string().contains("ucx"), "{e}");
        let flags = TlsFlags {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsFlags::default()
        };
        let e = resolve(None, &flags, &none).unwrap_err();
        assert!(e.to_string().contains("needs a certificate"), "{e}");
    }

    #[test]
    fn unreadable_files_are_named() {
        let e = load(&TlsFiles {
            ca: "/nonexistent/ca.pem".into(),
            cert: "/nonexistent/cert.pem".into(),
            key: None,
            ciphers: None,
            min_version: None,
            max_version: None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let e = load(&TlsFiles {
            ca: "not\na pem".into(),
            cert: "/x".into(),
            key: None,
            ciphers: None,
            min_version: None,
            max_version: None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    }
}
