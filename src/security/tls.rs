//! TLS material: the CA, this party's certificate and key, loaded from PEM files into rustls
//! server and client configurations, and reloaded when the files change.
//!
//! Peers are verified against the CA and then by the identity their certificate carries
//! ([`super::Identity`]), never by host name: clients accept any certificate our CA signed
//! and the caller checks the identity after the handshake ([`super::connector`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::Identity;

/// The PEM files of one party: `[tls] ca, cert, key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signs every party's certificate.
    pub ca: PathBuf,
    /// This party's certificate (chain) naming its identity, and its private key. Servers
    /// need them; an operator's client may have only the CA (and a bearer token).
    pub cert: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// The files from `[tls]` (or the flags). All empty: `None`, plain text.
    pub fn from_parts(ca: &str, cert: &str, key: &str) -> Result<Option<TlsFiles>, TlsError> {
        match (ca.is_empty(), cert.is_empty(), key.is_empty()) {
            (true, true, true) => Ok(None),
            (false, true, true) => Ok(Some(TlsFiles {
                ca: ca.into(),
                cert: None,
            })),
            (false, false, false) => Ok(Some(TlsFiles {
                ca: ca.into(),
                cert: Some((cert.into(), key.into())),
            })),
            _ => Err(TlsError::Incomplete),
        }
    }
}

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "TLS needs tls.ca with both or neither of tls.cert and tls.key (--tls-ca, --tls-cert, \
         --tls-key)"
    )]
    Incomplete,
    #[error(
        "a TLS server needs its certificate and key: set tls.cert and tls.key (--tls-cert, --tls-key)"
    )]
    NoCertificate,
    #[error("cannot read {what} {path}: {error}")]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{what} {path} holds no PEM {expected}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{what} {path} is not valid PEM: {error}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        error: rustls_pki_types::pem::Error,
    },
    #[error(
        "certificate {path} names no jobmaster identity (a jobmaster://… URI); create \
         certificates with `jobmaster certs`"
    )]
    NoIdentity { path: PathBuf },
    #[error("certificate {path} names {found}, but this is {expected}")]
    WrongIdentity {
        path: PathBuf,
        found: Identity,
        expected: String,
    },
    #[error("the TLS files do not fit together: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the CA in {path} cannot verify clients: {error}")]
    Verifier {
        path: PathBuf,
        error: rustls::server::VerifierBuilderError,
    },
}

/// Whether a server asks its clients for certificates and refuses those without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Clients must present a certificate of our CA (executors' ports: only the JobMaster and
    /// executors call them).
    Required,
    /// Clients may present one (the JobMaster: operators can use a bearer token instead);
    /// a certificate that is presented must be valid.
    Optional,
}

/// Built configurations of one version of the files.
struct Built {
    /// `None` without a certificate of our own.
    server: Option<Arc<ServerConfig>>,
    client: Arc<ClientConfig>,
    identity: Option<Identity>,
    /// The files' bytes they were built from (to notice a change).
    source: Vec<Vec<u8>>,
}

/// This party's TLS: current server and client configurations, rebuilt by
/// [`Tls::spawn_reloader`] when the files change.
pub struct Tls {
    files: TlsFiles,
    client_auth: ClientAuth,
    built: RwLock<Arc<Built>>,
}

/// The name clients send (SNI); servers ignore it, identities are checked instead.
pub(crate) fn sni() -> ServerName<'static> {
    ServerName::try_from("jobmaster").expect("a valid DNS name")
}

/// rustls with *ring*: it builds with the C compiler every machine here has (aws-lc-rs, the
/// other provider, brings a larger C build). Deprecated only for lacking post-quantum key
/// exchange, which a cluster-internal CA setup does not need yet.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        what,
        path: path.to_owned(),
        error,
    })
}

fn certificates(
    what: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            what,
            path: path.to_owned(),
            error,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
            expected: "CERTIFICATE",
        });
    }
    Ok(certs)
}

impl Tls {
    /// Loads the files. `expected` is checked against the identity the certificate names
    /// (an operator identity matches any operator's).
    pub fn load(
        files: TlsFiles,
        client_auth: ClientAuth,
        expected: Option<&Identity>,
    ) -> Result<Arc<Tls>, TlsError> {
        let built = build(&files, client_auth, expected, read_all(&files)?)?;
        Ok(Arc::new(Tls {
            files,
            client_auth,
            built: RwLock::new(Arc::new(built)),
        }))
    }

    /// Loads the files of a server: its certificate is required and must name `identity`.
    pub fn load_server(
        files: TlsFiles,
        client_auth: ClientAuth,
        identity: &Identity,
    ) -> Result<Arc<Tls>, TlsError> {
        if files.cert.is_none() {
            return Err(TlsError::NoCertificate);
        }
        Tls::load(files, client_auth, Some(identity))
    }

    fn current(&self) -> Arc<Built> {
        self.built.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The configuration for the next accepted connection (`None` without a certificate).
    pub fn server_config(&self) -> Option<Arc<ServerConfig>> {
        self.current().server.clone()
    }

    /// The configuration for the next outgoing connection.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.current().client.clone()
    }

    /// The identity this party's certificate names.
    pub fn identity(&self) -> Option<Identity> {
        self.current().identity.clone()
    }

    /// Rereads the files; rebuilds if they changed. Returns whether a new version is in use.
    /// A version that does not load (a half-written file, a key that does not match) keeps
    /// the old one in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let source = read_all(&self.files)?;
        let current = self.current();
        if current.source == source {
            return Ok(false);
        }
        let built = build(
            &self.files,
            self.client_auth,
            current.identity.as_ref(),
            source,
        )?;
        *self.built.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(built);
        Ok(true)
    }

    /// Checks the files every `interval` and uses new versions (certificate rotation without
    /// a restart). Ends when the last other reference to `self` is dropped.
    pub fn spawn_reloader(self: &Arc<Tls>, interval: Duration) {
        super::reload::spawn_reloader(self, interval);
    }
}

impl super::reload::Reload for Tls {
    type Error = TlsError;
    const WHAT: &'static str = "tls files";
    fn reload(&self) -> Result<bool, TlsError> {
        Tls::reload(self)
    }
    fn location(&self) -> String {
        self.files.ca.display().to_string()
    }
}

fn read_all(files: &TlsFiles) -> Result<Vec<Vec<u8>>, TlsError> {
    let mut source = vec![read("CA file", &files.ca)?];
    if let Some((cert, key)) = &files.cert {
        source.push(read("certificate file", cert)?);
        source.push(read("key file", key)?);
    }
    Ok(source)
}

fn build(
    files: &TlsFiles,
    client_auth: ClientAuth,
    expected: Option<&Identity>,
    source: Vec<Vec<u8>>,
) -> Result<Built, TlsError> {
    let mut roots = RootCertStore::empty();
    for der in certificates("CA file", &files.ca, &source[0])? {
        roots.add(der)?;
    }
    let roots = Arc::new(roots);
    let provider = provider();
    let client = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SignedByCa {
            roots: roots.clone(),
            algorithms: provider.signature_verification_algorithms,
        }));
    let Some((cert_path, key_path)) = &files.cert else {
        let mut client = client.with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec()];
        return Ok(Built {
            server: None,
            client: Arc::new(client),
            identity: None,
            source,
        });
    };
    let chain = certificates("certificate file", cert_path, &source[1])?;
    let identity = Identity::from_certificate(&chain[0]).ok_or_else(|| TlsError::NoIdentity {
        path: cert_path.clone(),
    })?;
    if let Some(expected) = expected {
        let fits = match (expected, &identity) {
            (Identity::Operator { .. }, Identity::Operator { .. }) => true,
            (a, b) => a == b,
        };
        if !fits {
            return Err(TlsError::WrongIdentity {
                path: cert_path.clone(),
                found: identity,
                expected: expected.to_string(),
            });
        }
    }
    let key = PrivateKeyDer::from_pem_slice(&source[2]).map_err(|error| match error {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "key file",
            path: key_path.clone(),
            expected: "PRIVATE KEY",
        },
        error => TlsError::Pem {
            what: "key file",
            path: key_path.clone(),
            error,
        },
    })?;

    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
    let verifier = match client_auth {
        ClientAuth::Required => verifier,
        ClientAuth::Optional => verifier.allow_unauthenticated(),
    }
    .build()
    .map_err(|error| TlsError::Verifier {
        path: files.ca.clone(),
        error,
    })?;
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut client = client.with_client_auth_cert(chain, key)?;
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Built {
        server: Some(Arc::new(server)),
        client: Arc::new(client),
        identity: Some(identity),
        source,
    })
}

/// Accepts a server certificate our CA signed, whatever host name it names; the identity
/// is checked by the connector once the handshake is done.
#[derive(Debug)]
struct SignedByCa {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SignedByCa {
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
