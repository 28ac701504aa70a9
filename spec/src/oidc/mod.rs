//! OpenID Connect identity providers: what the trust list says about one
//! (its issuer, which claim carries the person's identifier, what its `acr`
//! values mean, which home nodes are its clients, its signing keys), and
//! the verification of its ID tokens ([`IdToken::verify`]), the second kind
//! of identity proof next to our own COSE [`IdentityAssertion`].
//!
//! The JOSE part is small on purpose: a compact JWS with one of four
//! algorithms (RS256, PS256, ES256, EdDSA), verified with *ring* (the
//! workspace's one crypto provider) against keys from the trust list, never
//! against keys named by the token itself (`jwk`, `jku`, `x5u` are ignored,
//! `crit` is refused). The maintained JWT crates either bring their own
//! RSA implementation (`rsa`, RUSTSEC-2023-0071) or aws-lc-rs, so the
//! parsing here is serde_json and base64 over ring's primitives.
//!
//! [`IdentityAssertion`]: crate::assertion::IdentityAssertion

mod id_token;
pub(crate) mod jws;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

pub use id_token::{IdToken, IdTokenError};
pub use jws::JwsError;

use crate::ids::NodeId;
use crate::limits::*;
use crate::text::{FieldError, check_line};
use crate::trust::LevelOfAssurance;

/// What the trust list says about an OpenID provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// The `iss` of its ID tokens, exactly (an `https://` URL).
    pub issuer: String,
    /// The claim that carries the person's identifier, and what it is.
    pub identifier_claim: String,
    pub identifier_kind: IdentifierKind,
    /// What each of its `acr` values means. A token with another `acr` (or
    /// none) is refused.
    pub acr_levels: BTreeMap<String, LevelOfAssurance>,
    /// The client id each home node has at this provider: an ID token's
    /// `aud` must be the carrying home node's.
    pub clients: BTreeMap<NodeId, String>,
    /// Its signing keys (a JWKS snapshot). A rollover is a new trust list
    /// version with the new key added (and later the old one removed).
    pub keys: Vec<OidcKey>,
}

/// What kind of identifier a provider's identifier claim holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    /// A BSN (`999999990`): only a provider of the home country.
    Bsn,
    /// An eIDAS person identifier (`DE/NL/…`): a foreign provider, or an
    /// eIDAS bridge (SATOSA in front of an eIDAS node).
    EidasPersonId,
}

/// A provider's public signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcKey {
    /// The JWK `kid`, if the provider names its keys (a token's `kid`
    /// header then picks the key).
    pub kid: Option<String>,
    /// The one algorithm this key may be used with, if its JWK says so;
    /// otherwise every algorithm of its kind (RSA: RS256 and PS256).
    pub alg: Option<JwsAlgorithm>,
    pub key: OidcPublicKey,
}

/// The signature algorithms accepted for ID tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwsAlgorithm {
    RS256,
    PS256,
    ES256,
    EdDSA,
}

impl JwsAlgorithm {
    /// The algorithm named by a JWS `alg` header value or JWK `alg`.
    pub fn from_name(name: &str) -> Option<JwsAlgorithm> {
        match name {
            "RS256" => Some(JwsAlgorithm::RS256),
            "PS256" => Some(JwsAlgorithm::PS256),
            "ES256" => Some(JwsAlgorithm::ES256),
            // RFC 8037's name, and the fully specified one of RFC 9864.
            "EdDSA" | "Ed25519" => Some(JwsAlgorithm::EdDSA),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            JwsAlgorithm::RS256 => "RS256",
            JwsAlgorithm::PS256 => "PS256",
            JwsAlgorithm::ES256 => "ES256",
            JwsAlgorithm::EdDSA => "EdDSA",
        }
    }
}

/// The public part of a JWK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OidcPublicKey {
    /// `kty: RSA`: modulus and exponent, big-endian, no leading zeros.
    Rsa { n: ByteBuf, e: ByteBuf },
    /// `kty: EC`, `crv: P-256`: the point's coordinates, 32 bytes each.
    P256 { x: ByteBuf, y: ByteBuf },
    /// `kty: OKP`, `crv: Ed25519`: the 32-byte public key.
    Ed25519 { x: ByteBuf },
}

impl OidcKey {
    /// Whether this key may check a signature made with `alg`.
    pub fn allows(&self, alg: JwsAlgorithm) -> bool {
        let kind_fits = matches!(
            (&self.key, alg),
            (
                OidcPublicKey::Rsa { .. },
                JwsAlgorithm::RS256 | JwsAlgorithm::PS256
            ) | (OidcPublicKey::P256 { .. }, JwsAlgorithm::ES256)
                | (OidcPublicKey::Ed25519 { .. }, JwsAlgorithm::EdDSA)
        );
        kind_fits && self.alg.is_none_or(|a| a == alg)
    }

    fn validate(&self) -> Result<(), OidcProviderError> {
        if let Some(kid) = &self.kid {
            check_line("key id", kid, MAX_OIDC_NAME_CHARS)?;
        }
        let unrestricted = OidcKey {
            alg: None,
            ..self.clone()
        };
        if let Some(alg) = self.alg
            && !unrestricted.allows(alg)
        {
            return Err(OidcProviderError::Key("its alg does not fit its kind"));
        }
        match &self.key {
            OidcPublicKey::Rsa { n, e } => {
                let bits = n.len() * 8;
                if !(MIN_RSA_MODULUS_BITS..=MAX_RSA_MODULUS_BITS).contains(&bits)
                    || n.first() == Some(&0)
                {
                    return Err(OidcProviderError::Key(
                        "an RSA modulus must have 2048 to 8192 bits",
                    ));
                }
                if e.is_empty() || e.len() > 4 || e.first() == Some(&0) {
                    return Err(OidcProviderError::Key(
                        "an RSA exponent must be 1 to 4 bytes",
                    ));
                }
            }
            OidcPublicKey::P256 { x, y } if x.len() != 32 || y.len() != 32 => {
                return Err(OidcProviderError::Key(
                    "a P-256 coordinate must be 32 bytes",
                ));
            }
            OidcPublicKey::Ed25519 { x } if x.len() != 32 => {
                return Err(OidcProviderError::Key("an Ed25519 key must be 32 bytes"));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Why an OpenID provider entry (or a JWKS to add to one) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcProviderError {
    #[error("OpenID provider: {0}")]
    Field(#[from] FieldError),
    #[error("OpenID provider issuer must be an https:// URL without query or fragment")]
    Issuer,
    #[error("OpenID provider has {found} {what}, at most {limit} are allowed")]
    TooMany {
        what: &'static str,
        found: usize,
        limit: usize,
    },
    #[error("OpenID provider has no {0}")]
    Missing(&'static str),
    #[error("OpenID provider signing key: {0}")]
    Key(&'static str),
    #[error("OpenID provider names key id {0:?} twice")]
    DuplicateKid(String),
    #[error("JWKS: {0}")]
    Jwks(String),
}

impl OidcProvider {
    /// The checks the trust list makes of each provider entry.
    pub fn validate(&self) -> Result<(), OidcProviderError> {
        check_issuer(&self.issuer)?;
        check_line(
            "identifier claim",
            &self.identifier_claim,
            MAX_OIDC_NAME_CHARS,
        )?;
        check_many("acr values", self.acr_levels.len(), MAX_OIDC_ACR_VALUES)?;
        for acr in self.acr_levels.keys() {
            check_line("acr value", acr, MAX_OIDC_URL_CHARS)?;
        }
        check_many("clients", self.clients.len(), MAX_TRUST_LIST_ENTRIES)?;
        for client in self.clients.values() {
            check_line("client id", client, MAX_OIDC_NAME_CHARS)?;
        }
        check_keys(&self.keys)
    }

    /// The client id of home node `node` at this provider.
    pub fn client_of(&self, node: &NodeId) -> Option<&str> {
        self.clients.get(node).map(String::as_str)
    }
}

/// An issuer identifier: an `https://` URL without query or fragment.
pub(crate) fn check_issuer(issuer: &str) -> Result<(), OidcProviderError> {
    check_line("issuer", issuer, MAX_OIDC_URL_CHARS)?;
    let rest = issuer
        .strip_prefix("https://")
        .ok_or(OidcProviderError::Issuer)?;
    if rest.is_empty() || rest.contains(['?', '#']) || rest.contains(char::is_whitespace) {
        return Err(OidcProviderError::Issuer);
    }
    Ok(())
}

/// A provider's signing keys: at least one, each valid, each `kid` once.
pub(crate) fn check_keys(keys: &[OidcKey]) -> Result<(), OidcProviderError> {
    if keys.is_empty() {
        return Err(OidcProviderError::Missing("signing key"));
    }
    check_many("signing keys", keys.len(), MAX_OIDC_KEYS)?;
    let mut kids = std::collections::BTreeSet::new();
    for key in keys {
        key.validate()?;
        if let Some(kid) = &key.kid
            && !kids.insert(kid.as_str())
        {
            return Err(OidcProviderError::DuplicateKid(kid.clone()));
        }
    }
    Ok(())
}

fn check_many(what: &'static str, found: usize, limit: usize) -> Result<(), OidcProviderError> {
    if found > limit {
        return Err(OidcProviderError::TooMany { what, found, limit });
    }
    Ok(())
}

/// The signing keys of a JWKS document (`{"keys": [...]}`, as a provider
/// publishes at its `jwks_uri`): those with `use: sig` or no `use`, of the
/// kinds accepted here. Keys of other kinds are skipped; a key of an
/// accepted kind that is malformed is an error naming it.
pub fn keys_from_jwks(json: &[u8]) -> Result<Vec<OidcKey>, OidcProviderError> {
    if json.len() > MAX_JWKS_BYTES {
        return Err(OidcProviderError::Jwks(format!(
            "{} bytes, at most {MAX_JWKS_BYTES} are allowed",
            json.len()
        )));
    }
    let document: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| OidcProviderError::Jwks(e.to_string()))?;
    let keys = document
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| OidcProviderError::Jwks("no \"keys\" array".into()))?;
    let mut found = Vec::new();
    for (i, jwk) in keys.iter().enumerate() {
        if let Some(key) = jws::key_from_jwk(jwk)
            .map_err(|problem| OidcProviderError::Jwks(format!("key {i}: {problem}")))?
        {
            key.validate()?;
            found.push(key);
        }
    }
    if found.is_empty() {
        return Err(OidcProviderError::Missing(
            "signing key of kind RSA, EC P-256 or OKP Ed25519 in the JWKS",
        ));
    }
    check_many("signing keys", found.len(), MAX_OIDC_KEYS)?;
    Ok(found)
}
