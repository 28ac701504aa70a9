//! TLS with the federation PKI: the one crypto provider (ring), loading
//! certificates, keys and CRLs, verifiers that check the root and the CRL,
//! and reading who a peer is (an agency's OIN, a node's id) from its
//! certificate. Used by the gateway, the relay node and the tests.

use std::path::Path;
use std::sync::Arc;

use estafette_spec::{NodeId, Oin};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use x509_parser::prelude::*;

use crate::PkiError;

/// The workspace's single rustls crypto provider.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(path: &Path, what: &str, e: impl std::fmt::Display) -> PkiError {
    PkiError::Pem(format!("{}: {what}: {e}", path.display()))
}

/// All certificates in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, "reading certificates", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, "reading certificates", e))?;
    if certs.is_empty() {
        return Err(PkiError::Pem(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, "reading private key", e))
}

/// The CRL in a PEM file.
pub fn load_crl(path: &Path) -> Result<CertificateRevocationListDer<'static>, PkiError> {
    CertificateRevocationListDer::from_pem_file(path).map_err(|e| pem_error(path, "reading CRL", e))
}

/// A root store holding only the federation root.
pub fn root_store(root: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, PkiError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(root.clone())
        .map_err(|e| PkiError::Certificate(format!("root certificate: {e}")))?;
    Ok(Arc::new(roots))
}

/// A verifier of client certificates (agencies, nodes): must chain to the
/// federation root and not be in the CRL. Client authentication is required.
pub fn client_verifier(
    root: &CertificateDer<'static>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, PkiError> {
    WebPkiClientVerifier::builder_with_provider(root_store(root)?, crypto_provider())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .build()
        .map_err(|e| PkiError::Certificate(format!("client verifier: {e}")))
}

/// A verifier of server certificates (nodes, the gateway), with the CRL.
pub fn server_verifier(
    root: &CertificateDer<'static>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<WebPkiServerVerifier>, PkiError> {
    WebPkiServerVerifier::builder_with_provider(root_store(root)?, crypto_provider())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .build()
        .map_err(|e| PkiError::Certificate(format!("server verifier: {e}")))
}

/// A TLS 1.3 client that presents `cert_chain` and `key` and trusts only
/// the federation root: an agency towards the gateway.
pub fn client_config(
    root: &CertificateDer<'static>,
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let tls = |e: rustls::Error| PkiError::Certificate(format!("client TLS: {e}"));
    let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .with_root_certificates(root_store(root)?)
        .with_client_auth_cert(cert_chain, key)
        .map_err(tls)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// As [`client_config`] for the member whose `tls.crt.pem` and
/// `tls.key.pem` are in `dir`, with the root certificate in `root_cert`.
pub fn member_client_config(
    root_cert: &Path,
    dir: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let root = load_certs(root_cert)?.remove(0);
    client_config(
        &root,
        load_certs(&dir.join("tls.crt.pem"))?,
        load_private_key(&dir.join("tls.key.pem"))?,
        alpn,
    )
}

/// A TLS client of web servers (no client certificate; TLS 1.2 and 1.3)
/// that trusts the certificates in `ca_file` (PEM) or, without one, the
/// system's roots: the citizen API's clients, and a home node towards its
/// OpenID providers.
pub fn web_client_config(
    ca_file: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let bad = |e: &dyn std::fmt::Display| PkiError::Certificate(format!("client TLS: {e}"));
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|e| bad(&e))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot use is skipped, as browsers do.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(bad(&"the system has no usable root certificates"));
            }
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Who a TLS server asks for a certificate.
pub enum ClientAuth {
    /// Every client presents a federation certificate (agencies, nodes);
    /// TLS 1.3 only.
    Required(Arc<dyn ClientCertVerifier>),
    /// People and browsers: no client certificate; TLS 1.2 and 1.3.
    None,
}

/// A TLS server presenting `cert_chain` and `key`, speaking `alpn`.
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    clients: ClientAuth,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let tls = |e: rustls::Error| PkiError::Certificate(format!("server TLS: {e}"));
    let builder = rustls::ServerConfig::builder_with_provider(crypto_provider());
    let mut config = match clients {
        ClientAuth::Required(verifier) => builder
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(cert_chain, key)
            .map_err(tls)?,
        ClientAuth::None => builder
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_no_client_auth()
            .with_single_cert(cert_chain, key)
            .map_err(tls)?,
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn parse<'a>(cert: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, PkiError> {
    X509Certificate::from_der(cert.as_ref())
        .map(|(_, c)| c)
        .map_err(|e| PkiError::Certificate(format!("not an X.509 certificate: {e}")))
}

/// The OIN in an agency certificate's subject serialNumber.
pub fn agency_oin(cert: &CertificateDer<'_>) -> Result<Oin, PkiError> {
    let cert = parse(cert)?;
    let attr = cert
        .subject()
        .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
        .next()
        .ok_or_else(|| {
            PkiError::Certificate("certificate subject has no serialNumber (OIN)".into())
        })?;
    let text = attr
        .as_str()
        .map_err(|_| PkiError::Certificate("certificate serialNumber is not text".into()))?;
    text.parse()
        .map_err(|e| PkiError::Certificate(format!("certificate serialNumber is not an OIN: {e}")))
}

/// The node id in a node certificate's DNS subject alternative name.
pub fn node_id(cert: &CertificateDer<'_>) -> Result<NodeId, PkiError> {
    let cert = parse(cert)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::Certificate(format!("bad subjectAltName: {e}")))?
        .ok_or_else(|| {
            PkiError::Certificate("certificate has no subjectAltName (node id)".into())
        })?;
    let mut names = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::DNSName(d) => Some(d),
        _ => None,
    });
    let (Some(name), None) = (names.next(), names.next()) else {
        return Err(PkiError::Certificate(
            "a node certificate has exactly one DNS name, its node id".into(),
        ));
    };
    name.parse()
        .map_err(|e| PkiError::Certificate(format!("certificate DNS name is not a node id: {e}")))
}

/// Facts about a certificate for explanations.
#[derive(Debug, Clone)]
pub struct CertificateFacts {
    pub subject: String,
    pub serial_hex: String,
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
}

pub fn facts(cert: &CertificateDer<'_>) -> Result<CertificateFacts, PkiError> {
    let c = parse(cert)?;
    Ok(CertificateFacts {
        subject: c.subject().to_string(),
        serial_hex: hex::encode(c.tbs_certificate.raw_serial()),
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
        is_ca: c.is_ca(),
    })
}

/// The raw Ed25519 public key of a certificate (the root's signs the trust list).
pub fn ed25519_public_key(cert: &CertificateDer<'_>) -> Result<[u8; 32], PkiError> {
    let c = parse(cert)?;
    let spki = c.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return Err(PkiError::Certificate(
            "certificate key is not Ed25519".into(),
        ));
    }
    spki.subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| PkiError::Certificate("Ed25519 key is not 32 bytes".into()))
}

/// The trust list at `trust_list`, verified with the key of the root
/// certificate at `root_cert` as of `now` (for command-line tools).
pub fn read_trust_list(
    root_cert: &Path,
    trust_list: &Path,
    now: estafette_spec::Timestamp,
) -> Result<estafette_spec::TrustList, PkiError> {
    let root = load_certs(root_cert)?
        .into_iter()
        .next()
        .ok_or_else(|| PkiError::Certificate(format!("{}: no certificate", root_cert.display())))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&ed25519_public_key(&root)?)
        .map_err(|e| PkiError::Certificate(format!("root key: {e}")))?;
    let bytes = std::fs::read(trust_list).map_err(|source| PkiError::Io {
        path: trust_list.to_path_buf(),
        source,
    })?;
    Ok(estafette_spec::TrustList::verify(&bytes, &key, now)?)
}

/// The federation root and the current CRL, for verifiers that live as long
/// as the process: every new TLS session is checked against the CRL as it
/// is *now*, so that a revocation takes effect without a restart.
///
/// The TLS configurations hold [`LiveVerifiers::client_verifier`] and
/// [`LiveVerifiers::server_verifier`]; [`LiveVerifiers::update_crl`] swaps
/// the CRL under them.
pub struct LiveVerifiers {
    root: CertificateDer<'static>,
    hints: Vec<rustls::DistinguishedName>,
    current: std::sync::RwLock<Current>,
}

struct Current {
    client: Arc<dyn ClientCertVerifier>,
    server: Arc<WebPkiServerVerifier>,
    /// Raw serial numbers of the certificates the CRL revokes.
    revoked: std::collections::HashSet<Vec<u8>>,
    crl: CertificateRevocationListDer<'static>,
}

impl std::fmt::Debug for LiveVerifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveVerifiers").finish_non_exhaustive()
    }
}

/// The raw serial numbers a CRL lists.
pub fn revoked_serials(
    crl: &CertificateRevocationListDer<'_>,
) -> Result<std::collections::HashSet<Vec<u8>>, PkiError> {
    let (_, list) = x509_parser::revocation_list::CertificateRevocationList::from_der(crl.as_ref())
        .map_err(|e| PkiError::Certificate(format!("not a CRL: {e}")))?;
    Ok(list
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect())
}

/// The raw serial number of a certificate.
pub fn serial(cert: &CertificateDer<'_>) -> Result<Vec<u8>, PkiError> {
    Ok(parse(cert)?.tbs_certificate.raw_serial().to_vec())
}

impl LiveVerifiers {
    pub fn new(
        root: CertificateDer<'static>,
        crl: CertificateRevocationListDer<'static>,
    ) -> Result<Arc<LiveVerifiers>, PkiError> {
        let hints = root_store(&root)?.subjects();
        let current = Self::build(&root, crl)?;
        Ok(Arc::new(LiveVerifiers {
            root,
            hints,
            current: std::sync::RwLock::new(current),
        }))
    }

    fn build(
        root: &CertificateDer<'static>,
        crl: CertificateRevocationListDer<'static>,
    ) -> Result<Current, PkiError> {
        Ok(Current {
            client: client_verifier(root, vec![crl.clone()])?,
            server: server_verifier(root, vec![crl.clone()])?,
            revoked: revoked_serials(&crl)?,
            crl,
        })
    }

    fn current<T>(&self, f: impl FnOnce(&Current) -> T) -> T {
        match self.current.read() {
            Ok(c) => f(&c),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Replaces the CRL; gives whether it changed. A CRL that cannot be
    /// read leaves the current one in place.
    pub fn update_crl(&self, crl: CertificateRevocationListDer<'static>) -> Result<bool, PkiError> {
        if self.current(|c| c.crl == crl) {
            return Ok(false);
        }
        let next = Self::build(&self.root, crl)?;
        match self.current.write() {
            Ok(mut c) => *c = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        Ok(true)
    }

    /// Whether the current CRL revokes this certificate.
    pub fn is_revoked(&self, cert: &CertificateDer<'_>) -> bool {
        match serial(cert) {
            Ok(s) => self.current(|c| c.revoked.contains(&s)),
            Err(_) => true,
        }
    }

    /// A client-certificate verifier that always uses the current CRL.
    pub fn client_verifier(self: &Arc<Self>) -> Arc<dyn ClientCertVerifier> {
        Arc::new(LiveClientVerifier(self.clone()))
    }

    /// A server-certificate verifier that always uses the current CRL.
    pub fn server_verifier(
        self: &Arc<Self>,
    ) -> Arc<dyn rustls::client::danger::ServerCertVerifier> {
        Arc::new(LiveServerVerifier(self.clone()))
    }
}

/// Handshake signatures do not depend on the CRL: both live verifiers
/// check them with the provider's algorithms, as webpki's verifiers do.
fn handshake_signatures() -> rustls::crypto::WebPkiSupportedAlgorithms {
    crypto_provider().signature_verification_algorithms
}

fn verify_tls12(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &rustls::DigitallySignedStruct,
) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(message, cert, dss, &handshake_signatures())
}

fn verify_tls13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &rustls::DigitallySignedStruct,
) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(message, cert, dss, &handshake_signatures())
}

#[derive(Debug)]
struct LiveClientVerifier(Arc<LiveVerifiers>);

impl ClientCertVerifier for LiveClientVerifier {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &self.0.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.0
            .current(|c| c.client.clone())
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        handshake_signatures().supported_schemes()
    }
}

#[derive(Debug)]
struct LiveServerVerifier(Arc<LiveVerifiers>);

impl rustls::client::danger::ServerCertVerifier for LiveServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.0.current(|c| c.server.clone()).verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        handshake_signatures().supported_schemes()
    }
}
