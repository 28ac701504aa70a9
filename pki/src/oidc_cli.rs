//! `estafette-pki oidc …`: OpenID providers in the trust list.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Subcommand, ValueEnum};
use estafette_pki::Federation;
use estafette_pki::oidc::{OidcProviderSpec, read_jwks};
use estafette_spec::oidc::IdentifierKind;
use estafette_spec::{CountryCode, LevelOfAssurance, NodeId};

use crate::FederationDir;

#[derive(Subcommand)]
pub enum Oidc {
    /// Add an OpenID provider (or give an identity provider its OpenID
    /// side): its issuer, the claim with the person's identifier, what its
    /// acr values mean, and its signing keys from a JWKS file.
    ///
    ///   curl -o nl-login.jwks https://login.example.nl/jwks   (its jwks_uri)
    ///   estafette-pki oidc provider --dir fed --id login.nl.example --country NL \
    ///     --max-loa high --issuer https://login.example.nl --identifier-claim bsn \
    ///     --identifier-kind bsn --acr urn:nl:loa:substantial=substantial \
    ///     --acr urn:nl:loa:high=high --jwks nl-login.jwks
    #[command(verbatim_doc_comment)]
    Provider {
        #[command(flatten)]
        fed: FederationDir,
        /// The provider's id in the trust list, a DNS-style name.
        #[arg(long)]
        id: NodeId,
        /// ISO 3166-1 alpha-2 country whose people it vouches for.
        #[arg(long)]
        country: CountryCode,
        /// Highest level of assurance it may assert: low, substantial or high.
        #[arg(long)]
        max_loa: LevelOfAssurance,
        /// Its issuer (`iss`), exactly as in its discovery document.
        #[arg(long)]
        issuer: String,
        /// The ID token claim that carries the person's identifier.
        #[arg(long)]
        identifier_claim: String,
        /// What that claim holds: a BSN (only for NL) or an eIDAS person
        /// identifier CC/NL/… (a foreign provider or an eIDAS bridge).
        #[arg(long, value_enum)]
        identifier_kind: KindArg,
        /// An acr value and the level it stands for: VALUE=low|substantial|high (repeatable).
        #[arg(long = "acr", value_parser = parse_acr, required = true)]
        acr: Vec<(String, LevelOfAssurance)>,
        /// A JWKS file: the provider's signing keys (a snapshot of its jwks_uri).
        #[arg(long)]
        jwks: PathBuf,
    },
    /// Record the client id a home node has at a provider (the `aud` of
    /// the ID tokens it gets there).
    Client {
        #[command(flatten)]
        fed: FederationDir,
        /// The provider's id.
        #[arg(long)]
        provider: NodeId,
        /// The home node.
        #[arg(long)]
        node: NodeId,
        /// Its client id at the provider.
        #[arg(long)]
        client_id: String,
    },
    /// Roll a provider's keys over: its signing keys become those of a new
    /// JWKS snapshot. Take the snapshot when the provider publishes the old
    /// and the new key; a later one, without the old key, retires it.
    Keys {
        #[command(flatten)]
        fed: FederationDir,
        /// The provider's id.
        #[arg(long)]
        provider: NodeId,
        /// The JWKS file.
        #[arg(long)]
        jwks: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum Pid {
    /// Add a PID provider: the issuer of a country's EU Digital Identity
    /// Wallet PIDs (SD-JWT VC), with its signing keys from a JWKS file (its
    /// issuer metadata's jwks). Run again with a new snapshot to roll its
    /// keys over. It vouches only for people of its country, at most at
    /// --max-loa.
    ///
    ///   estafette-pki pid provider --dir fed --id pid.bund.example --country DE \
    ///     --max-loa high --issuer https://pid.bund.example --jwks de-pid.jwks
    #[command(verbatim_doc_comment)]
    Provider {
        #[command(flatten)]
        fed: FederationDir,
        /// The provider's id in the trust list, a DNS-style name. It never
        /// changes: people's registry identifiers are made with it.
        #[arg(long)]
        id: NodeId,
        /// ISO 3166-1 alpha-2 country whose PIDs it issues.
        #[arg(long)]
        country: CountryCode,
        /// Highest level of assurance its PIDs give: low, substantial or high.
        #[arg(long)]
        max_loa: LevelOfAssurance,
        /// Its issuer (`iss` of its PIDs), exactly.
        #[arg(long)]
        issuer: String,
        /// A JWKS file: the keys its PIDs and status lists are signed with.
        #[arg(long)]
        jwks: PathBuf,
    },
}

pub fn run_pid(command: Pid) -> Result<()> {
    match command {
        Pid::Provider {
            fed,
            id,
            country,
            max_loa,
            issuer,
            jwks,
        } => {
            let keys = read_jwks(&jwks)?;
            let count = keys.len();
            let mut fed = Federation::open(&fed.path)?;
            fed.set_pid_provider(&id, country, max_loa, &issuer, keys)?;
            println!("PID provider {id} ({issuer}) of {country} with {count} signing key(s)");
            print_version(&fed);
        }
    }
    Ok(())
}

#[derive(Clone, Copy, ValueEnum)]
pub enum KindArg {
    Bsn,
    EidasPersonId,
}

fn parse_acr(text: &str) -> Result<(String, LevelOfAssurance), String> {
    let (value, level) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("expected VALUE=LEVEL, got {text:?}"))?;
    let level = level.parse().map_err(|e| format!("{e}"))?;
    Ok((value.to_owned(), level))
}

pub fn run(command: Oidc) -> Result<()> {
    match command {
        Oidc::Provider {
            fed,
            id,
            country,
            max_loa,
            issuer,
            identifier_claim,
            identifier_kind,
            acr,
            jwks,
        } => {
            let keys = read_jwks(&jwks)?;
            let count = keys.len();
            let acr_levels: BTreeMap<_, _> = acr.into_iter().collect();
            let mut fed = Federation::open(&fed.path)?;
            let spec = OidcProviderSpec {
                id: id.clone(),
                country,
                max_loa,
                issuer: issuer.clone(),
                identifier_claim,
                identifier_kind: match identifier_kind {
                    KindArg::Bsn => IdentifierKind::Bsn,
                    KindArg::EidasPersonId => IdentifierKind::EidasPersonId,
                },
                acr_levels,
            };
            fed.set_oidc_provider(spec, keys)?;
            println!("OpenID provider {id} ({issuer}) with {count} signing key(s)");
            println!(
                "  next: estafette-pki oidc client --dir … --provider {id} --node HOME --client-id ID"
            );
            print_version(&fed);
        }
        Oidc::Client {
            fed,
            provider,
            node,
            client_id,
        } => {
            if client_id.trim().is_empty() {
                bail!("--client-id is empty");
            }
            let mut fed = Federation::open(&fed.path)?;
            fed.set_oidc_client(&provider, &node, &client_id)?;
            println!("{node} is client {client_id:?} of {provider}");
            print_version(&fed);
        }
        Oidc::Keys {
            fed,
            provider,
            jwks,
        } => {
            let keys = read_jwks(&jwks)?;
            let kids: Vec<String> = keys
                .iter()
                .map(|k| k.kid.clone().unwrap_or_else(|| "(no kid)".into()))
                .collect();
            let mut fed = Federation::open(&fed.path)?;
            fed.set_oidc_keys(&provider, keys)?;
            println!("{provider} now signs with: {}", kids.join(", "));
            print_version(&fed);
        }
    }
    Ok(())
}

fn print_version(fed: &Federation) {
    println!("  trust list version {}", fed.state().trust_list.version);
}
