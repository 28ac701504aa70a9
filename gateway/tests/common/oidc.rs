//! Real OpenID providers for the login tests: `oidc-provider` (npm, in
//! `tests/idp`, installed by `scripts/test` with `npm ci`) started as a
//! process over HTTPS with a certificate of the federation's web test CA,
//! and entered in the trust list the way an operator does it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use estafette_pki::Federation;
use estafette_pki::oidc::{OidcProviderSpec, read_jwks};
use estafette_relay::config::OidcClientConfig;
use estafette_relay::testkit::TestFederation;
use estafette_spec::oidc::IdentifierKind;
use estafette_spec::{LevelOfAssurance, NodeId};
use serde_json::{Value, json};

/// Longest wait for a test server (provider, bridge, wallet) to listen.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(180);

/// The acr values of the test providers, and what they stand for.
pub const ACR_SUBSTANTIAL: &str = "urn:test:loa:substantial";
pub const ACR_LOW: &str = "urn:test:loa:low";
/// The home node's client id at every test provider.
pub const CLIENT_ID: &str = "estafette-home";
const CLIENT_SECRET: &str = "a-client-secret-of-the-home-node";

/// One provider process; stopped on drop.
pub struct TestProvider {
    child: Child,
    pub id: NodeId,
    pub issuer: String,
    pub port: u16,
    dir: PathBuf,
    config: Value,
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a test provider is.
pub struct ProviderSetup<'a> {
    pub id: &'a str,
    /// The issuer's host: `localhost` or `127.0.0.1` (cookies are per host).
    pub host: &'a str,
    pub country: &'a str,
    pub alg: &'a str,
    pub identifier_claim: &'a str,
    pub identifier_kind: IdentifierKind,
    /// login → (acr, claims).
    pub accounts: Vec<(&'a str, &'a str, Value)>,
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl TestProvider {
    /// Starts the provider for the home node whose web inbox is at
    /// `home_url`, with a TLS certificate of the federation's web test CA.
    pub fn start(fed: &Federation, tmp: &Path, setup: &ProviderSetup, home_url: &str) -> Self {
        let modules = repo().join("tests/idp/node_modules/oidc-provider");
        assert!(
            modules.exists(),
            "{} is missing: scripts/test installs it (npm ci in tests/idp)",
            modules.display()
        );
        let dir = tmp.join(format!("idp-{}", setup.id));
        std::fs::create_dir_all(&dir).unwrap();
        let (_, cert, key) = fed
            .issue_web_certificate(
                &format!("{}-tls", setup.id),
                &["localhost".into(), "127.0.0.1".into()],
            )
            .unwrap();
        let accounts: serde_json::Map<String, Value> = setup
            .accounts
            .iter()
            .map(|(login, acr, claims)| {
                (
                    (*login).to_owned(),
                    json!({"password": "secret", "acr": acr, "claims": claims}),
                )
            })
            .collect();
        let config = json!({
            "host": setup.host,
            "tls_key": key, "tls_cert": cert,
            "signing": {
                "alg": setup.alg, "kid": format!("{}-1", setup.id),
                "key_file": dir.join("signing.jwk"),
                "public_jwks_file": dir.join("jwks.json"),
            },
            "clients": [{
                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "redirect_uris": [format!("{home_url}/login/oidc/callback")],
            }],
            "claims": {
                "profile": ["family_name", "given_name", "birthdate"],
                "person": [setup.identifier_claim],
            },
            "acr_values": [ACR_SUBSTANTIAL, ACR_LOW],
            "accounts": accounts,
        });
        let (child, issuer, port) = spawn(&dir, &config);
        TestProvider {
            child,
            id: setup.id.parse().unwrap(),
            issuer,
            port,
            dir,
            config,
        }
    }

    /// The provider's published signing keys (what an operator snapshots).
    pub fn jwks(&self) -> PathBuf {
        self.dir.join("jwks.json")
    }

    /// Its private signing key, as a JWK (to mint tokens in tests).
    pub fn private_jwk(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("signing.jwk")).unwrap()).unwrap()
    }

    /// Restarts it on the same address with a new signing key `kid`: a
    /// provider rolling its key over.
    pub fn roll_key_over(&mut self, kid: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_file(self.dir.join("signing.jwk")).unwrap();
        self.config["signing"]["kid"] = kid.into();
        self.config["port"] = self.port.into();
        let (child, issuer, _) = spawn(&self.dir, &self.config);
        assert_eq!(issuer, self.issuer);
        self.child = child;
    }

    /// The home node's configuration for this provider.
    pub fn client_config(&self, fed: &Federation, tmp: &Path, label: &str) -> OidcClientConfig {
        let secret = tmp.join(format!("{}.secret", self.id));
        estafette_pki::keys::write_secret(&secret, CLIENT_SECRET.as_bytes()).unwrap();
        OidcClientConfig {
            provider: self.id.clone(),
            client_secret_file: secret,
            label: Some(label.into()),
            scope: "openid profile person".into(),
            acr_values: Some(ACR_SUBSTANTIAL.into()),
            ca_file: Some(fed.web_ca_path()),
        }
    }
}

fn spawn(dir: &Path, config: &Value) -> (Child, String, u16) {
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut child = Command::new("node")
        .arg(repo().join("tests/idp/provider.mjs"))
        .arg(&path)
        .stdout(Stdio::piped())
        // Its log stays with the test's files, for a failure's reader.
        .stderr(std::fs::File::create(dir.join("provider.log")).unwrap())
        .spawn()
        .expect("node (Node.js) to run the test OpenID provider");
    let ready = first_line(&mut child, "the OpenID provider", &dir.join("provider.log"));
    let issuer = ready["issuer"].as_str().unwrap().to_owned();
    let port = ready["port"].as_u64().unwrap() as u16;
    (child, issuer, port)
}

/// The JSON line a test server prints when it listens (waited for, bounded);
/// its output is read on so that it never writes to a closed pipe. If it
/// does not come, the panic carries the server's log (`log`) and what the
/// kernel says the process is doing, for the reader of a rare failure.
pub fn first_line(child: &mut Child, what: &str, log: &Path) -> Value {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    // Generous: Node.js loading oidc-provider, or Python loading SATOSA, on
    // a machine whose two cores run the rest of the suite too.
    let line = rx.recv_timeout(SERVER_START_TIMEOUT).unwrap_or_else(|_| {
        let pid = child.id();
        let state = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("State") || l.starts_with("Threads"))
            .collect::<Vec<_>>()
            .join(", ");
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        panic!(
            "{what} did not start within {SERVER_START_TIMEOUT:?} (exited: {:?}; {state}; waiting in {wchan:?}); its log:\n{}",
            child.try_wait(),
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("{what}'s ready line: {line:?}"))
}

/// Enters `provider` in the trust list as an operator does: the provider
/// with a snapshot of its JWKS, then the home node's client id there.
pub fn enter_in_trust_list(fed: &mut Federation, provider: &TestProvider, setup: &ProviderSetup) {
    let spec = OidcProviderSpec {
        id: provider.id.clone(),
        country: setup.country.parse().unwrap(),
        max_loa: LevelOfAssurance::High,
        issuer: provider.issuer.clone(),
        identifier_claim: setup.identifier_claim.into(),
        identifier_kind: setup.identifier_kind,
        acr_levels: [
            (ACR_SUBSTANTIAL.to_owned(), LevelOfAssurance::Substantial),
            (ACR_LOW.to_owned(), LevelOfAssurance::Low),
        ]
        .into(),
    };
    fed.set_oidc_provider(spec, read_jwks(&provider.jwks()).unwrap())
        .unwrap();
    fed.set_oidc_client(&provider.id, &"home.test".parse().unwrap(), CLIENT_ID)
        .unwrap();
}

pub fn home_citizen(fed: &mut TestFederation) -> &mut estafette_relay::config::CitizenApiConfig {
    let home = fed
        .relays
        .iter_mut()
        .find(|n| n.id.as_str() == "home.test")
        .unwrap();
    home.config.citizen.as_mut().unwrap()
}

/// Fixes the home node's web address (the providers must know it before
/// the node starts); gives it.
pub fn fix_home_address(fed: &mut TestFederation) -> String {
    let listen = estafette_relay::testkit::free_tcp();
    home_citizen(fed).listen = listen;
    format!("https://{listen}")
}

/// The home node logs people in with these providers.
pub fn set_home_clients(fed: &mut TestFederation, clients: Vec<OidcClientConfig>) {
    home_citizen(fed).oidc = clients;
}

/// The eIDAS levels as SAML authentication contexts.
pub const EIDAS_SUBSTANTIAL: &str = "http://eidas.europa.eu/LoA/substantial";
pub const EIDAS_HIGH: &str = "http://eidas.europa.eu/LoA/high";
pub const EIDAS_LOW: &str = "http://eidas.europa.eu/LoA/low";

/// An eIDAS login: a pysaml2 identity provider sending eIDAS attributes,
/// behind SATOSA's OpenID Connect frontend (`tests/eidas/bridge.py`, in the
/// venv `scripts/test` makes under `target/`); stopped on drop.
pub struct EidasBridge {
    child: Child,
    pub id: NodeId,
    pub issuer: String,
    jwks: PathBuf,
}

impl Drop for EidasBridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EidasBridge {
    /// `accounts`: login → (level, PersonIdentifier, FamilyName, FirstName, DateOfBirth).
    pub fn start(
        fed: &Federation,
        tmp: &Path,
        home_url: &str,
        accounts: &[(&str, &str, &str, &str, &str, &str)],
    ) -> EidasBridge {
        let python = repo().join("target/eidas-venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: scripts/test makes it (SATOSA and pysaml2 from tests/eidas/requirements.txt)",
            python.display()
        );
        let dir = tmp.join("eidas-bridge");
        std::fs::create_dir_all(&dir).unwrap();
        let (_, cert, key) = fed
            .issue_web_certificate(
                "eidas-bridge-tls",
                &["localhost".into(), "127.0.0.1".into()],
            )
            .unwrap();
        let accounts: serde_json::Map<String, Value> = accounts
            .iter()
            .map(|(login, loa, id, family, first, born)| {
                (
                    (*login).to_owned(),
                    json!({"password": "secret", "loa": loa,
                    "PersonIdentifier": id, "FamilyName": family, "FirstName": first,
                    "DateOfBirth": born}),
                )
            })
            .collect();
        let config = json!({
            "dir": dir, "host": "localhost", "tls_cert": cert, "tls_key": key,
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "redirect_uri": format!("{home_url}/login/oidc/callback"),
            "accounts": accounts,
        });
        let path = dir.join("config.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut child = Command::new(&python)
            .arg(repo().join("tests/eidas/bridge.py"))
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("bridge.log")).unwrap())
            .spawn()
            .unwrap();
        let ready = first_line(&mut child, "the eIDAS bridge", &dir.join("bridge.log"));
        EidasBridge {
            child,
            id: "eidas-bridge.de.test".parse().unwrap(),
            issuer: ready["issuer"].as_str().unwrap().to_owned(),
            jwks: ready["jwks"].as_str().unwrap().into(),
        }
    }

    /// Enters the bridge in the trust list: a provider for German
    /// identifiers whose acr values are the eIDAS levels.
    pub fn enter_in_trust_list(&self, fed: &mut Federation) {
        let spec = OidcProviderSpec {
            id: self.id.clone(),
            country: "DE".parse().unwrap(),
            max_loa: LevelOfAssurance::High,
            issuer: self.issuer.clone(),
            identifier_claim: "person_identifier".into(),
            identifier_kind: IdentifierKind::EidasPersonId,
            acr_levels: [
                (EIDAS_LOW.to_owned(), LevelOfAssurance::Low),
                (EIDAS_SUBSTANTIAL.to_owned(), LevelOfAssurance::Substantial),
                (EIDAS_HIGH.to_owned(), LevelOfAssurance::High),
            ]
            .into(),
        };
        fed.set_oidc_provider(spec, read_jwks(&self.jwks).unwrap())
            .unwrap();
        fed.set_oidc_client(&self.id, &"home.test".parse().unwrap(), CLIENT_ID)
            .unwrap();
    }

    /// The home node's configuration for the bridge.
    pub fn client_config(&self, fed: &Federation, tmp: &Path) -> OidcClientConfig {
        let secret = tmp.join("eidas-bridge.secret");
        estafette_pki::keys::write_secret(&secret, CLIENT_SECRET.as_bytes()).unwrap();
        OidcClientConfig {
            provider: self.id.clone(),
            client_secret_file: secret,
            label: Some("eIDAS".into()),
            scope: "openid profile".into(),
            acr_values: None,
            ca_file: Some(fed.web_ca_path()),
        }
    }
}
