//! A test PID provider and a test wallet on the OpenWallet Foundation's
//! SD-JWT implementation (`tests/wallet/wallet.py`, in the venv
//! `scripts/test` makes under `target/`), and the QR code of the wallet
//! login page read back with an independent decoder (rqrr).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use estafette_pki::Federation;
use estafette_pki::oidc::read_jwks;
use estafette_spec::{LevelOfAssurance, NodeId};
use serde_json::Value;

use super::oidc::{first_line, repo};

/// The test PID provider's id in the trust list.
pub const PID_PROVIDER: &str = "pid.de.test";

fn python() -> PathBuf {
    let python = repo().join("target/wallet-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/test makes it (tests/wallet/requirements.txt)",
        python.display()
    );
    python
}

fn wallet_script() -> PathBuf {
    repo().join("tests/wallet/wallet.py")
}

/// The PID provider process (its status list server); stopped on drop.
pub struct TestPidProvider {
    child: Child,
    pub dir: PathBuf,
    pub issuer: String,
}

impl Drop for TestPidProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestPidProvider {
    /// Starts a provider (`name` names its directory) serving its status
    /// list over HTTPS with a certificate of the federation's web test CA.
    pub fn start(fed: &Federation, tmp: &Path, name: &str) -> TestPidProvider {
        let dir = tmp.join(format!("pid-provider-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (_, cert, key) = fed
            .issue_web_certificate(&format!("{name}-tls"), &["127.0.0.1".into()])
            .unwrap();
        let mut child = Command::new(python())
            .arg(wallet_script())
            .arg("provider")
            .args([&dir, &cert, &key])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("provider.log")).unwrap())
            .spawn()
            .expect("python to run the test PID provider");
        let ready = first_line(
            &mut child,
            "the test PID provider",
            &dir.join("provider.log"),
        );
        TestPidProvider {
            child,
            issuer: ready["issuer"].as_str().unwrap().to_owned(),
            dir,
        }
    }

    /// Enters it in the trust list as an operator does (`estafette-pki pid
    /// provider`): country, highest level, issuer, a JWKS snapshot.
    pub fn enter_in_trust_list(&self, fed: &mut Federation, country: &str) {
        fed.set_pid_provider(
            &PID_PROVIDER.parse::<NodeId>().unwrap(),
            country.parse().unwrap(),
            LevelOfAssurance::High,
            &self.issuer,
            read_jwks(&self.dir.join("jwks.json")).unwrap(),
        )
        .unwrap();
    }

    /// Publishes its status list: `size` PIDs, those at `revoked` revoked.
    pub fn set_status(&self, size: u32, revoked: &[u32]) {
        let mut args = vec!["status".to_owned(), self.dir.display().to_string()];
        args.push(size.to_string());
        args.extend(revoked.iter().map(u32::to_string));
        run(&args);
    }

    /// Issues a PID (administrative number `pan`, "-" for none; status list
    /// entry `index`; `country`; valid until `exp_offset` seconds from now)
    /// to a new holder key in the wallet directory `holder`.
    pub fn issue(&self, holder: &Path, pan: &str, index: u32, country: &str, exp_offset: i64) {
        run(&[
            "issue".into(),
            self.dir.display().to_string(),
            holder.display().to_string(),
            pan.into(),
            index.to_string(),
            country.into(),
            exp_offset.to_string(),
        ]);
    }
}

fn run(args: &[String]) -> String {
    let out = Command::new(python())
        .arg(wallet_script())
        .args(args)
        .output()
        .expect("python to run the test wallet");
    assert!(
        out.status.success(),
        "wallet.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The wallet in `holder` opens the authorization request `url` (over
/// HTTPS checked against `web_ca`), checks the signed request against the
/// federation root `root`, and posts its
/// presentation (`options`: `--nonce=…`, `--aud=…`, `--no-kb`,
/// `--other-key`, `--tamper`, `--save=FILE`, `--replay=FILE`; or
/// `--decline`: the person says no; `--no-post` with `--save`: the
/// presentation is only made). Gives the
/// home node's answer: `{status, body}`.
pub async fn present(
    holder: &Path,
    url: &str,
    (root, web_ca): (&Path, &Path),
    options: &[&str],
) -> Value {
    let mut args = vec![
        "present".to_owned(),
        holder.display().to_string(),
        url.to_owned(),
        root.display().to_string(),
        web_ca.display().to_string(),
    ];
    args.extend(options.iter().map(|o| (*o).to_owned()));
    let out = tokio::task::spawn_blocking(move || run(&args))
        .await
        .unwrap();
    serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("the wallet's answer: {out:?}"))
}

/// Reads the QR code of a wallet login page back from its SVG squares
/// with rqrr, an independent decoder.
pub fn decode_qr(page_source: &str) -> String {
    let svg_start = page_source.find("<svg").expect("an svg on the page");
    let svg = &page_source[svg_start..];
    let view_box = svg
        .split("viewBox=\"0 0 ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .expect("the QR code's size");
    let mut dark = vec![false; view_box * view_box];
    for rect in svg.split("<rect ").skip(1) {
        let attr = |name: &str| -> Option<usize> {
            rect.split(&format!("{name}=\""))
                .nth(1)?
                .split('"')
                .next()?
                .parse()
                .ok()
        };
        if let (Some(x), Some(y), Some(1)) = (attr("x"), attr("y"), attr("width")) {
            dark[y * view_box + x] = true;
        }
    }
    const SCALE: usize = 6;
    let size = view_box * SCALE;
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(size, size, |x, y| {
        if dark[(y / SCALE) * view_box + x / SCALE] {
            0
        } else {
            255
        }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code on the page");
    grids[0].decode().expect("the QR code decodes").1
}
