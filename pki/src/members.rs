//! Issuing members: agencies, relay and home nodes, the gateway, identity
//! providers, court registries, routes between nodes, web certificates
//! for browsers, and (for test federations) identity assertions. Each
//! issue publishes a new CRL and trust list version (see `publish`).

use std::path::PathBuf;

use estafette_spec::{
    AgencyEntry, CountryCode, CourtRegistryEntry, Ed25519PublicKey, IdentityProviderEntry,
    LevelOfAssurance, NodeEntry, NodeId, NodeRole, Oin, Sector, Timestamp,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::{AssertedPerson, Federation, NodeKind, PkiError, check_address, keys};

impl Federation {
    /// Issues an agency: TLS client certificate with the OIN as subject
    /// serialNumber, and a seal key registered in the trust list.
    pub fn issue_agency(
        &mut self,
        oin: &Oin,
        name: &str,
        sectors: Vec<Sector>,
    ) -> Result<PathBuf, PkiError> {
        oin.check_allowed(self.state.trust_list.test_federation)
            .map_err(|e| PkiError::Invalid(e.to_string()))?;
        estafette_spec::text::check_line(
            "agency name",
            name,
            estafette_spec::limits::MAX_SHORT_TEXT_CHARS,
        )
        .map_err(|e| PkiError::Invalid(e.to_string()))?;
        self.ensure_new_member(oin.as_str())?;
        let dir = self.agency_dir(oin);
        let tls_key = keys::new_ed25519(&dir.join("tls.key.pem"))?;
        let seal_key = keys::new_ed25519(&dir.join("seal.key.pem"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, name);
        dn.push(
            DnType::CustomDnType(vec![2, 5, 4, 5]),
            DnValue::PrintableString(
                oin.as_str()
                    .try_into()
                    .map_err(|_| PkiError::Invalid("OIN is not printable".into()))?,
            ),
        );
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue_certificate(oin.as_str(), params, &tls_key, &dir.join("tls.crt.pem"))?;
        self.state.trust_list.agencies.push(AgencyEntry {
            oin: oin.clone(),
            name: name.to_owned(),
            seal_key: Ed25519PublicKey::from_key(&seal_key.verifying_key()),
            sectors,
        });
        self.publish()?;
        Ok(dir)
    }

    fn issue_node_like(
        &mut self,
        id: &NodeId,
        address: &str,
        roles: Vec<NodeRole>,
    ) -> Result<NodeEntry, PkiError> {
        self.ensure_new_member(id.as_str())?;
        check_address(address)?;
        let dir = self.node_dir(id);
        let tls_key = keys::new_ed25519(&dir.join("tls.key.pem"))?;
        let signing_key = keys::new_ed25519(&dir.join("signing.key.pem"))?;
        let hpke = keys::new_hpke(&dir.join("hpke.key.pem"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names =
            vec![SanType::DnsName(id.as_str().try_into().map_err(|_| {
                PkiError::Invalid("node id is not a DNS name".into())
            })?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert =
            self.issue_certificate(id.as_str(), params, &tls_key, &dir.join("tls.crt.pem"))?;
        Ok(NodeEntry {
            id: id.clone(),
            address: address.to_owned(),
            other_addresses: vec![],
            roles,
            tls_cert_sha256: cert.sha256,
            signing_key: Ed25519PublicKey::from_key(&signing_key.verifying_key()),
            hpke_key: hpke.public,
            routes: vec![],
            witnesses: vec![],
        })
    }

    /// Issues a relay node: certificate (server and client), signing key, HPKE key.
    pub fn issue_node(
        &mut self,
        id: &NodeId,
        address: &str,
        kind: NodeKind,
    ) -> Result<PathBuf, PkiError> {
        let entry = self.issue_node_like(id, address, kind.roles())?;
        self.state.trust_list.nodes.push(entry);
        self.publish()?;
        Ok(self.node_dir(id))
    }

    /// Issues the gateway (one per federation).
    pub fn issue_gateway(&mut self, id: &NodeId, address: &str) -> Result<PathBuf, PkiError> {
        if let Some(g) = &self.state.trust_list.gateway {
            return Err(PkiError::AlreadyMember(format!("gateway {}", g.id)));
        }
        let entry = self.issue_node_like(id, address, vec![NodeRole::Gateway])?;
        self.state.trust_list.gateway = Some(entry);
        self.publish()?;
        Ok(self.node_dir(id))
    }

    /// Sets where the gateway answers: its instances' node addresses, the
    /// first one its `address`, the others its `other_addresses` (relays
    /// try them in order). Publishes a new trust list.
    pub fn set_gateway_addresses(&mut self, addresses: &[String]) -> Result<(), PkiError> {
        let Some((first, others)) = addresses.split_first() else {
            return Err(PkiError::Invalid("the gateway needs an address".into()));
        };
        if addresses.len() > estafette_spec::limits::MAX_NODE_ADDRESSES {
            return Err(PkiError::Invalid(format!(
                "at most {} gateway addresses",
                estafette_spec::limits::MAX_NODE_ADDRESSES
            )));
        }
        let gateway = self
            .state
            .trust_list
            .gateway
            .as_mut()
            .ok_or_else(|| PkiError::Invalid("the federation has no gateway yet".into()))?;
        gateway.address = first.clone();
        gateway.other_addresses = others.to_vec();
        self.publish().map(|_| ())
    }

    /// Sets (or, with `via = None`, removes) `node`'s route to home node
    /// `destination`. Publishes a new trust list; refuses a route the trust
    /// list rules do not allow.
    pub fn set_route(
        &mut self,
        node: &NodeId,
        destination: &NodeId,
        via: Option<&NodeId>,
    ) -> Result<(), PkiError> {
        let saved = self.state.clone();
        let t = &mut self.state.trust_list;
        let entry = t
            .gateway
            .iter_mut()
            .chain(t.nodes.iter_mut())
            .find(|n| &n.id == node)
            .ok_or_else(|| PkiError::NoSuchMember(node.to_string()))?;
        entry.routes.retain(|r| &r.destination != destination);
        if let Some(via) = via {
            entry.routes.push(estafette_spec::Route {
                destination: destination.clone(),
                via: via.clone(),
            });
        }
        if let Err(e) = self.publish() {
            // Nothing was written: publish checks the list before writing.
            self.state = saved;
            return Err(e);
        }
        Ok(())
    }

    /// Issues an identity provider (national login or foreign eID node).
    pub fn issue_identity_provider(
        &mut self,
        id: &NodeId,
        country: CountryCode,
        max_loa: LevelOfAssurance,
    ) -> Result<PathBuf, PkiError> {
        self.ensure_new_member(id.as_str())?;
        let dir = self.identity_provider_dir(id);
        let key = keys::new_ed25519(&dir.join("signing.key.pem"))?;
        self.state
            .trust_list
            .identity_providers
            .push(IdentityProviderEntry {
                id: id.clone(),
                country,
                max_loa,
                key: Some(Ed25519PublicKey::from_key(&key.verifying_key())),
                oidc: None,
                pid: None,
            });
        self.publish()?;
        Ok(dir)
    }

    /// The web test CA's certificate (see [`Self::issue_web_certificate`]).
    pub fn web_ca_path(&self) -> PathBuf {
        self.dir.join("web").join("web-test-ca.crt.pem")
    }

    /// A browser-facing certificate for `names` (ECDSA P-256, which every
    /// browser speaks; our federation keys are Ed25519, which browsers do
    /// not), signed by the federation's *web test CA* (P-256, made on first
    /// use). For tests and demos: production web inboxes use a certificate
    /// from the web PKI. Gives (web CA certificate, certificate, key) paths.
    pub fn issue_web_certificate(
        &self,
        label: &str,
        names: &[String],
    ) -> Result<(PathBuf, PathBuf, PathBuf), PkiError> {
        let dir = self.dir.join("web");
        let ca_cert = self.web_ca_path();
        let ca_key = dir.join("web-test-ca.key.pem");
        if !ca_cert.exists() {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::CommonName, "Estafette web test CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = params.self_signed(&key)?;
            keys::write_secret(&ca_key, key.serialize_pem().as_bytes())?;
            keys::write_public(&ca_cert, cert.pem().as_bytes())?;
        }
        let ca_pem = std::fs::read_to_string(&ca_cert).map_err(|source| PkiError::Io {
            path: ca_cert.clone(),
            source,
        })?;
        let ca_key_pem = std::fs::read_to_string(&ca_key).map_err(|source| PkiError::Io {
            path: ca_key.clone(),
            source,
        })?;
        let ca_key_pair = KeyPair::from_pem(&ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key_pair)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, label);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer)?;
        let cert_path = dir.join(format!("{label}.crt.pem"));
        let key_path = dir.join(format!("{label}.key.pem"));
        keys::write_secret(&key_path, key.serialize_pem().as_bytes())?;
        keys::write_public(&cert_path, cert.pem().as_bytes())?;
        Ok((ca_cert, cert_path, key_path))
    }

    /// Mints an identity assertion with a test identity provider's key (for
    /// tests and the demo; a production provider signs its own). A fresh
    /// random nonce; valid from `now` for `valid_s` seconds (at most 300).
    pub fn mint_assertion(
        &self,
        idp: &NodeId,
        person: &AssertedPerson,
        audience: &NodeId,
        now: Timestamp,
        valid_s: u64,
    ) -> Result<Vec<u8>, PkiError> {
        if !self
            .state
            .trust_list
            .identity_providers
            .iter()
            .any(|p| &p.id == idp)
        {
            return Err(PkiError::NoSuchMember(idp.to_string()));
        }
        let key = keys::read_ed25519(&self.identity_provider_dir(idp).join("signing.key.pem"))?;
        let mut nonce = vec![0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let claims = estafette_spec::IdentityClaims {
            issuer: idp.clone(),
            subject: person.subject.clone(),
            family_name: person.family_name.clone(),
            given_names: person.given_names.clone(),
            birth_date: person.birth_date.clone(),
            level_of_assurance: person.level,
            audience: audience.clone(),
            nonce,
            issued_at: now,
            expires_at: now.plus_s(valid_s),
        };
        estafette_spec::IdentityAssertion::sign(&claims, &key)
            .map_err(|e| PkiError::Invalid(e.to_string()))
    }

    /// Issues a court registry key (signs attestations of legal representation).
    pub fn issue_court_registry(&mut self, id: &NodeId) -> Result<PathBuf, PkiError> {
        self.ensure_new_member(id.as_str())?;
        let dir = self.court_registry_dir(id);
        let key = keys::new_ed25519(&dir.join("signing.key.pem"))?;
        self.state
            .trust_list
            .court_registries
            .push(CourtRegistryEntry {
                id: id.clone(),
                key: Ed25519PublicKey::from_key(&key.verifying_key()),
            });
        self.publish()?;
        Ok(dir)
    }
}
