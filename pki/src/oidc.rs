//! OpenID providers in the trust list: adding a provider (a national login,
//! a foreign provider or an eIDAS bridge) with a snapshot of its JWKS,
//! registering a home node's client id with it, and rolling its keys over;
//! and PID providers of EU Digital Identity Wallets, with their keys.
//! Each change publishes a new trust list version; a change that would make
//! the list invalid is refused and nothing is written.

use std::collections::BTreeMap;
use std::path::Path;

use estafette_spec::oidc::{IdentifierKind, OidcKey, OidcProvider, keys_from_jwks};
use estafette_spec::{CountryCode, IdentityProviderEntry, LevelOfAssurance, NodeId, NodeRole};

use crate::{Federation, PkiError};

/// What the operator says about a provider.
#[derive(Debug, Clone)]
pub struct OidcProviderSpec {
    pub id: NodeId,
    pub country: CountryCode,
    pub max_loa: LevelOfAssurance,
    pub issuer: String,
    pub identifier_claim: String,
    pub identifier_kind: IdentifierKind,
    pub acr_levels: BTreeMap<String, LevelOfAssurance>,
}

/// The signing keys of a JWKS file, as the trust list keeps them.
pub fn read_jwks(path: &Path) -> Result<Vec<OidcKey>, PkiError> {
    let bytes = std::fs::read(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })?;
    keys_from_jwks(&bytes).map_err(|e| PkiError::Invalid(format!("{}: {e}", path.display())))
}

impl Federation {
    /// Adds an OpenID provider, or gives an identity provider already in
    /// the list (a test provider, say) its OpenID side. Clients already
    /// registered with it are kept.
    pub fn set_oidc_provider(
        &mut self,
        spec: OidcProviderSpec,
        keys: Vec<OidcKey>,
    ) -> Result<(), PkiError> {
        self.change_trust_list(|list| {
            let oidc = |clients| OidcProvider {
                issuer: spec.issuer.clone(),
                identifier_claim: spec.identifier_claim.clone(),
                identifier_kind: spec.identifier_kind,
                acr_levels: spec.acr_levels.clone(),
                clients,
                keys: keys.clone(),
            };
            match list.identity_providers.iter_mut().find(|p| p.id == spec.id) {
                Some(entry) => {
                    let clients = entry.oidc.take().map(|o| o.clients).unwrap_or_default();
                    entry.country = spec.country;
                    entry.max_loa = spec.max_loa;
                    entry.oidc = Some(oidc(clients));
                }
                None => list.identity_providers.push(IdentityProviderEntry {
                    id: spec.id.clone(),
                    country: spec.country,
                    max_loa: spec.max_loa,
                    key: None,
                    oidc: Some(oidc(BTreeMap::new())),
                    pid: None,
                }),
            }
            Ok(())
        })
    }

    /// Records the client id home node `node` has at provider `provider`
    /// (the `aud` of the ID tokens it gets there).
    pub fn set_oidc_client(
        &mut self,
        provider: &NodeId,
        node: &NodeId,
        client_id: &str,
    ) -> Result<(), PkiError> {
        self.change_trust_list(|list| {
            let is_home = list
                .nodes
                .iter()
                .any(|n| &n.id == node && n.roles.contains(&NodeRole::Home));
            if !is_home {
                return Err(PkiError::Invalid(format!(
                    "{node} is not a home node of the federation"
                )));
            }
            oidc_of(list, provider)?
                .clients
                .insert(node.clone(), client_id.to_owned());
            Ok(())
        })
    }

    /// Replaces a provider's signing keys with those of a new JWKS snapshot
    /// (during a rollover the provider publishes the old and the new key;
    /// a later snapshot drops the old one).
    pub fn set_oidc_keys(&mut self, provider: &NodeId, keys: Vec<OidcKey>) -> Result<(), PkiError> {
        self.change_trust_list(|list| {
            oidc_of(list, provider)?.keys = keys;
            Ok(())
        })
    }

    /// Adds a PID provider (the issuer of a country's EU Digital Identity
    /// Wallet PIDs) with its signing keys, or gives an identity provider
    /// already in the list its PID side; run again with a new JWKS
    /// snapshot to roll its keys over.
    pub fn set_pid_provider(
        &mut self,
        id: &NodeId,
        country: CountryCode,
        max_loa: LevelOfAssurance,
        issuer: &str,
        keys: Vec<OidcKey>,
    ) -> Result<(), PkiError> {
        self.change_trust_list(|list| {
            let pid = Some(estafette_spec::pid::PidProvider {
                issuer: issuer.to_owned(),
                keys,
            });
            match list.identity_providers.iter_mut().find(|p| &p.id == id) {
                Some(entry) => {
                    entry.country = country;
                    entry.max_loa = max_loa;
                    entry.pid = pid;
                }
                None => list.identity_providers.push(IdentityProviderEntry {
                    id: id.clone(),
                    country,
                    max_loa,
                    key: None,
                    oidc: None,
                    pid,
                }),
            }
            Ok(())
        })
    }

    /// Applies `change` to the trust list and publishes it; if the change
    /// or the publication fails, the federation is as it was.
    fn change_trust_list(
        &mut self,
        change: impl FnOnce(&mut estafette_spec::TrustListContent) -> Result<(), PkiError>,
    ) -> Result<(), PkiError> {
        let saved = self.state.clone();
        let outcome = change(&mut self.state.trust_list).and_then(|()| self.publish().map(|_| ()));
        if outcome.is_err() {
            self.state = saved;
        }
        outcome
    }
}

fn oidc_of<'a>(
    list: &'a mut estafette_spec::TrustListContent,
    provider: &NodeId,
) -> Result<&'a mut OidcProvider, PkiError> {
    list.identity_providers
        .iter_mut()
        .find(|p| &p.id == provider)
        .ok_or_else(|| PkiError::NoSuchMember(provider.to_string()))?
        .oidc
        .as_mut()
        .ok_or_else(|| {
            PkiError::Invalid(format!(
                "{provider} has no OpenID side: add it with `estafette-pki oidc provider` first"
            ))
        })
}
