//! `estafette-pki`: run the federation's certificate authority and trust list.
#![forbid(unsafe_code)]
// No function over about 80 lines (clippy.toml): a long one reads as named steps.
#![warn(clippy::too_many_lines)]

mod oidc_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use estafette_pki::{Federation, NodeKind, RevokeTarget, explain};
use estafette_spec::{CountryCode, LevelOfAssurance, NodeId, Oin, Sector};

/// Run an Estafette federation's certificate authority and trust list.
///
/// A federation lives in one directory: its root certificate and key, the
/// certificate revocation list (CRL), the signed trust list, and a folder
/// per member with that member's certificate and keys. Every command that
/// changes something publishes a new CRL and a new trust list version.
///
/// A first federation, step by step:
///
///   estafette-pki init --dir fed --test-federation
///   estafette-pki issue agency --dir fed --oin 00000001003214345000 --name "Belastingdienst"
///   estafette-pki issue gateway --dir fed --id gw.example --addr 127.0.0.1:4430
///   estafette-pki issue node --dir fed --id home.example --addr 127.0.0.1:4434 --role home
///   estafette-pki issue node --dir fed --id relay.example --addr 127.0.0.1:4433
///   estafette-pki route --dir fed --node gw.example --to home.example --via relay.example
///   estafette-pki verify --dir fed fed/agencies/00000001003214345000/tls.crt.pem
#[derive(Parser)]
#[command(name = "estafette-pki", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a federation: root CA (Ed25519), empty CRL, first trust list.
    Init {
        /// Directory to create the federation in (created if missing; must not hold one).
        #[arg(long)]
        dir: PathBuf,
        /// A human name for the federation, shown in the root certificate.
        #[arg(long, default_value = "Estafette")]
        name: String,
        /// Mark this a test federation: test OINs (prefix 00000099) are accepted.
        #[arg(long)]
        test_federation: bool,
    },
    /// Add a member: an agency, a node, the gateway, an identity provider or a court registry.
    Issue {
        #[command(subcommand)]
        what: Issue,
    },
    /// Revoke a member by certificate serial or by id: CRL and trust list are republished.
    Revoke {
        #[command(flatten)]
        fed: FederationDir,
        #[command(flatten)]
        target: RevokeWhat,
        /// Why, in a few words (kept in the trust list).
        #[arg(long)]
        reason: String,
    },
    /// Set a node's (or the gateway's) route: envelopes for home node --to go via --via.
    ///
    /// Without a route a node sends straight to the home node. Without --via
    /// the route to --to is removed.
    Route {
        #[command(flatten)]
        fed: FederationDir,
        /// The node (or gateway) whose routing table changes.
        #[arg(long)]
        node: NodeId,
        /// The home node the route leads to.
        #[arg(long)]
        to: NodeId,
        /// The transit node to hand envelopes for --to to.
        #[arg(long)]
        via: Option<NodeId>,
    },
    /// OpenID providers: add one with its JWKS, record a home node's client
    /// id, roll its keys over.
    Oidc {
        #[command(subcommand)]
        what: oidc_cli::Oidc,
    },
    /// PID providers of EU Digital Identity Wallets: add one with its JWKS,
    /// roll its keys over.
    Pid {
        #[command(subcommand)]
        what: oidc_cli::Pid,
    },
    /// Sign and write a fresh trust list (and CRL) with a new version and validity.
    TrustList {
        #[command(flatten)]
        fed: FederationDir,
    },
    /// Mint an identity assertion with a test identity provider's key (tests, demos).
    Assert {
        #[command(flatten)]
        fed: FederationDir,
        /// The identity provider (its key is in the federation directory).
        #[arg(long)]
        idp: NodeId,
        /// Who logged in: bsn:… or eidas:CC/NL/….
        #[arg(long)]
        subject: estafette_spec::Recipient,
        /// The node the assertion is for (the person's home node).
        #[arg(long)]
        audience: NodeId,
        #[arg(long, default_value = "substantial")]
        level: LevelOfAssurance,
        #[arg(long, default_value = "Tester")]
        family_name: String,
        #[arg(long, default_value = "Test")]
        given_names: String,
        /// YYYY-MM-DD.
        #[arg(long, default_value = "1970-01-01")]
        birth_date: String,
        /// Seconds it stays valid (at most 300).
        #[arg(long, default_value_t = 300)]
        valid_s: u64,
        /// Where to write the assertion (COSE_Sign1).
        #[arg(long)]
        out: PathBuf,
    },
    /// Explain whether a certificate (PEM) or a signed object (.cose) is valid, and why not.
    Verify {
        #[command(flatten)]
        fed: FederationDir,
        /// Check at this time (seconds since 1970) instead of now.
        #[arg(long)]
        at: Option<u64>,
        /// The file to check: certificate, envelope, evidence, message, assertion or trust list.
        file: PathBuf,
    },
}

/// The federation directory argument shared by every command but `init`.
#[derive(clap::Args)]
struct FederationDir {
    /// The federation directory, as made by `estafette-pki init`.
    #[arg(long = "dir", value_name = "DIR")]
    path: PathBuf,
}

/// What `revoke` revokes: one of a serial or an id.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct RevokeWhat {
    /// Serial number (hex) of a certificate; the member holding it is revoked.
    #[arg(long)]
    serial: Option<String>,
    /// The member to revoke: an OIN, or a node, gateway, provider or registry id.
    #[arg(long)]
    id: Option<String>,
}

#[derive(Subcommand)]
enum Issue {
    /// An agency: TLS client certificate with its OIN, and a seal key in the trust list.
    Agency {
        #[command(flatten)]
        fed: FederationDir,
        /// The agency's 20-digit OIN.
        #[arg(long)]
        oin: Oin,
        /// The agency's name as citizens know it.
        #[arg(long)]
        name: String,
        /// Sector marks used by mandate scopes (repeatable).
        #[arg(long = "sector", value_enum)]
        sectors: Vec<SectorArg>,
    },
    /// A relay node: certificate (QUIC server and client), signing key, HPKE key.
    Node {
        #[command(flatten)]
        fed: FederationDir,
        /// The node id, a DNS-style name (also the certificate's DNS name).
        #[arg(long)]
        id: NodeId,
        /// The node address: host:port (UDP) where other nodes reach this
        /// node over QUIC. The node's `listen` must be this address
        /// (`estafette-relay init --fed … --node-id …` writes it so).
        #[arg(long)]
        addr: String,
        /// transit (carries envelopes), home (hosts inboxes) or both.
        #[arg(long, value_enum, default_value = "transit")]
        role: RoleArg,
    },
    /// The gateway: certificate (HTTPS and QUIC), signing key, HPKE key.
    Gateway {
        #[command(flatten)]
        fed: FederationDir,
        /// The gateway's id, a DNS-style name (also its certificate's DNS name).
        #[arg(long)]
        id: NodeId,
        /// The gateway's node address: host:port (UDP) where relays and home
        /// nodes reach its QUIC node (evidence, citizen requests). The
        /// gateway's [node] listen must be this address (`estafette-gateway
        /// init --fed … --node-id …` writes it so). Not the agency API: that
        /// is https_listen, which agencies are told separately. Give it
        /// once per instance when the gateway runs as several (on
        /// PostgreSQL): relays try them in order; at most 8.
        #[arg(long, required = true)]
        addr: Vec<String>,
    },
    /// An identity provider: a national login or a foreign eID node.
    Idp {
        #[command(flatten)]
        fed: FederationDir,
        /// The provider's id, a DNS-style name, e.g. idp.nl.example or eid.de.example.
        #[arg(long)]
        id: NodeId,
        /// ISO 3166-1 alpha-2 country the provider vouches for (NL, DE, ...).
        #[arg(long)]
        country: CountryCode,
        /// Highest level of assurance it may assert: low, substantial or high.
        #[arg(long)]
        max_loa: LevelOfAssurance,
    },
    /// A court registry: signs attestations of legal representation.
    CourtRegistry {
        #[command(flatten)]
        fed: FederationDir,
        /// The registry's id, a DNS-style name.
        #[arg(long)]
        id: NodeId,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Transit,
    Home,
    Both,
}

#[derive(Clone, Copy, ValueEnum)]
enum SectorArg {
    Financial,
    Care,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("estafette-pki: {}", estafette_pki::report::anyhow_text(&e));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Init {
            dir,
            name,
            test_federation,
        } => init(&dir, &name, test_federation)?,
        Command::Issue { what } => issue(what)?,
        Command::Revoke {
            fed,
            target,
            reason,
        } => revoke(&fed, target, &reason)?,
        Command::Route { fed, node, to, via } => {
            let mut fed = Federation::open(&fed.path)?;
            fed.set_route(&node, &to, via.as_ref())?;
            match via {
                Some(via) => println!("{node} now sends envelopes for {to} via {via}"),
                None => println!("{node} now sends envelopes for {to} straight to it"),
            }
            println!("  trust list version {}", fed.state().trust_list.version);
        }
        Command::Oidc { what } => oidc_cli::run(what)?,
        Command::Pid { what } => oidc_cli::run_pid(what)?,
        Command::TrustList { fed } => {
            let mut fed = Federation::open(&fed.path)?;
            let trust = fed.publish()?;
            println!(
                "Trust list version {} written to {} (next update due {})",
                trust.content().version,
                fed.trust_list_path().display(),
                trust.content().next_update
            );
        }
        Command::Assert {
            fed,
            idp,
            subject,
            audience,
            level,
            family_name,
            given_names,
            birth_date,
            valid_s,
            out,
        } => {
            let person = estafette_pki::AssertedPerson {
                subject,
                family_name,
                given_names,
                birth_date,
                level,
            };
            assert_person(&fed, &idp, &person, &audience, valid_s, &out)?;
        }
        Command::Verify { fed, at, file } => {
            let fed = Federation::open(&fed.path)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let now = at
                .map(estafette_spec::Timestamp)
                .unwrap_or_else(estafette_pki::now);
            let verdict = explain::explain(&fed, &bytes, now)?;
            print!("{verdict}");
            return Ok(if verdict.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn init(dir: &std::path::Path, name: &str, test_federation: bool) -> Result<()> {
    let fed = Federation::init(dir, name, test_federation)?;
    println!("Federation '{name}' created in {}", dir.display());
    println!("  root certificate: {}", fed.root_cert_path().display());
    println!("  CRL:              {}", fed.crl_path().display());
    println!(
        "  trust list:       {} (version 1)",
        fed.trust_list_path().display()
    );
    if test_federation {
        println!("  test federation: test OINs (00000099...) are accepted");
    }
    Ok(())
}

fn revoke(fed: &FederationDir, target: RevokeWhat, reason: &str) -> Result<()> {
    let mut fed = Federation::open(&fed.path)?;
    let target = match (target.serial, target.id) {
        (Some(s), _) => RevokeTarget::Serial(s),
        (None, Some(i)) => RevokeTarget::Member(i),
        (None, None) => anyhow::bail!("give --serial or --id"),
    };
    let entry = fed.revoke(&target, reason)?;
    println!("Revoked {}: {}", entry.subject, entry.reason);
    for serial in &entry.cert_serials {
        println!("  certificate {serial} is now on the CRL");
    }
    println!(
        "  trust list version {} lists {} revoked key(s) for it",
        fed.state().trust_list.version,
        entry.key_ids.len()
    );
    Ok(())
}

fn assert_person(
    fed: &FederationDir,
    idp: &estafette_spec::NodeId,
    person: &estafette_pki::AssertedPerson,
    audience: &estafette_spec::NodeId,
    valid_s: u64,
    out: &std::path::Path,
) -> Result<()> {
    let fed = Federation::open(&fed.path)?;
    let bytes = fed.mint_assertion(idp, person, audience, estafette_pki::now(), valid_s)?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "Assertion for {audience} by {idp} written to {} (valid {valid_s} s)",
        out.display()
    );
    Ok(())
}

fn issue(what: Issue) -> Result<()> {
    match what {
        Issue::Agency {
            fed,
            oin,
            name,
            sectors,
        } => {
            let mut fed = Federation::open(&fed.path)?;
            let sectors = sectors
                .into_iter()
                .map(|s| match s {
                    SectorArg::Financial => Sector::Financial,
                    SectorArg::Care => Sector::Care,
                })
                .collect();
            let path = fed.issue_agency(&oin, &name, sectors)?;
            println!("Agency {oin} ({name}) issued in {}", path.display());
            println!(
                "  tls.crt.pem / tls.key.pem: client certificate for HTTPS (OIN in subject serialNumber)"
            );
            println!("  seal.key.pem: the key that seals (signs) the agency's letters");
        }
        Issue::Node {
            fed,
            id,
            addr,
            role,
        } => {
            let mut fed = Federation::open(&fed.path)?;
            let kind = match role {
                RoleArg::Transit => NodeKind::Transit,
                RoleArg::Home => NodeKind::Home,
                RoleArg::Both => NodeKind::Both,
            };
            let path = fed.issue_node(&id, &addr, kind)?;
            print_node_files(&id, &path);
        }
        Issue::Gateway { fed, id, addr } => {
            let mut fed = Federation::open(&fed.path)?;
            let path = fed.issue_gateway(&id, &addr[0])?;
            if addr.len() > 1 {
                fed.set_gateway_addresses(&addr)?;
            }
            print_node_files(&id, &path);
        }
        Issue::Idp {
            fed,
            id,
            country,
            max_loa,
        } => {
            let mut fed = Federation::open(&fed.path)?;
            let path = fed.issue_identity_provider(&id, country, max_loa)?;
            println!(
                "Identity provider {id} ({country}, up to {max_loa:?}) issued; signing key in {}",
                path.display()
            );
        }
        Issue::CourtRegistry { fed, id } => {
            let mut fed = Federation::open(&fed.path)?;
            let path = fed.issue_court_registry(&id)?;
            println!(
                "Court registry {id} issued; signing key in {}",
                path.display()
            );
        }
    }
    Ok(())
}

fn print_node_files(id: &NodeId, path: &std::path::Path) {
    println!("{id} issued in {}", path.display());
    println!("  tls.crt.pem / tls.key.pem: certificate for QUIC and HTTPS (node id as DNS name)");
    println!("  signing.key.pem: signs this node's evidence");
    println!("  hpke.key.pem: opens envelopes sealed to this node");
}
