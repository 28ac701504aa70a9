//! `estafette-agency`: an agency's command-line client of the gateway.
#![forbid(unsafe_code)]
// No function over about 80 lines (clippy.toml): a long one reads as named steps.
#![warn(clippy::too_many_lines)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use estafette_gateway::client::{AgencyClient, RetryPolicy, timeline};
use estafette_pki::{keys, tls};
use estafette_spec::{Attachment, Letter, MessageId, Nature, Oin, SignedMessage, TrustList};
use rand_core::OsRng;

/// Send letters to the gateway as an agency, and fetch and verify their evidence.
///
/// Letters are sealed with the agency's seal key and submitted over HTTPS
/// with the agency's client certificate. Evidence is verified offline,
/// signature by signature, against the federation's trust list.
///
/// Sending is safe to repeat: `send` seals a letter once, keeps the sealed
/// letter in a file named after its message id, prints the id before it
/// sends, and tries again by itself when the connection fails. If it still
/// fails, `resend FILE` sends exactly the same letter again: the gateway
/// knows the message id and never delivers a letter twice.
#[derive(Parser)]
#[command(name = "estafette-agency", version, verbatim_doc_comment)]
struct Cli {
    /// The agency's folder from `estafette-pki issue agency` (tls.crt.pem, tls.key.pem, seal.key.pem).
    #[arg(long, global = true)]
    agency_dir: Option<PathBuf>,
    /// The gateway's agency API: host:port.
    #[arg(long, global = true)]
    gateway: Option<SocketAddr>,
    /// The gateway's id (the name in its certificate).
    #[arg(long, global = true, default_value = "gateway.demo")]
    gateway_name: String,
    /// The federation root certificate.
    #[arg(long, global = true)]
    root_cert: Option<PathBuf>,
    /// The signed trust list (for verifying evidence).
    #[arg(long, global = true)]
    trust_list: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// What a letter says (shared by `send` and `seal`).
#[derive(clap::Args)]
struct LetterArgs {
    /// The recipient: bsn:… or eidas:CC/NL/…
    #[arg(long)]
    to: String,
    #[arg(long)]
    subject: String,
    /// A file with the letter's text.
    #[arg(long)]
    body_file: PathBuf,
    /// A file to attach (repeatable).
    #[arg(long = "attach")]
    attachments: Vec<PathBuf>,
    /// decision, reminder, request or information.
    #[arg(long, default_value = "information")]
    nature: String,
    /// What the recipient is expected to do, in plain words.
    #[arg(long, default_value = "No action needed.")]
    expected_action: String,
    /// Your own reference for the letter.
    #[arg(long, default_value = "-")]
    reference: String,
    /// Language of the letter (BCP 47).
    #[arg(long, default_value = "nl")]
    language: String,
    /// The letter's message id (msg- and 32 hex digits), e.g. derived from
    /// your own case number; default: a new random one. A second letter
    /// sealed with an id the gateway knows is refused (409), never delivered.
    #[arg(long)]
    message_id: Option<MessageId>,
}

/// How `send` and `resend` try again.
#[derive(clap::Args)]
struct RetryArgs {
    /// Attempts in all when the connection fails or the gateway is busy.
    #[arg(long, default_value_t = 6)]
    attempts: u32,
}

#[derive(Subcommand)]
enum Command {
    /// Seal and send a letter. Prints the message id first, keeps the
    /// sealed letter as <message id>.cose in --keep-dir, then prints the
    /// channel and why.
    Send {
        #[command(flatten)]
        letter: LetterArgs,
        /// Where the sealed letter is kept (for `resend`, and as your record).
        #[arg(long, default_value = ".")]
        keep_dir: PathBuf,
        #[command(flatten)]
        retry: RetryArgs,
    },
    /// Send a sealed letter (from `send` or `seal`) again, byte for byte.
    /// The gateway answers a letter it already has as it did the first time.
    Resend {
        /// The sealed letter (COSE).
        file: PathBuf,
        #[command(flatten)]
        retry: RetryArgs,
    },
    /// Seal a letter into a file without sending it (to submit with curl, say).
    Seal {
        #[command(flatten)]
        letter: LetterArgs,
        /// Where to write the SignedMessage (COSE) bytes.
        #[arg(long)]
        output: PathBuf,
    },
    /// Fetch a message's evidence, verify every signature offline, print a timeline.
    Evidence {
        /// The message id (msg-…).
        message_id: MessageId,
        /// Wait until the evidence holds this event (ContentConsignment,
        /// ContentHandover, PaperFallback, …), asking again every second.
        #[arg(long)]
        wait_for: Option<String>,
        /// Longest wait for --wait-for, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Also write the letter's proof bundle to this file: its evidence
        /// (records, receipts, checkpoints, cosignatures) and the trust
        /// list they verify against, for a court, the recipient, or
        /// `estafette-pki verify` years later.
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
    },
}

/// A line on standard output. A reader that has gone (`| head -1`) is
/// not an error: what the command does is done either way.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!(
                "estafette-agency: {}",
                estafette_pki::report::anyhow_text(&e)
            );
            ExitCode::from(2)
        }
    }
}

/// Builds the letter and seals it with the agency's seal key.
fn seal(dir: &Path, args: LetterArgs) -> Result<(MessageId, Vec<u8>)> {
    let sender: Oin = tls::agency_oin(&tls::load_certs(&dir.join("tls.crt.pem"))?[0])?;
    let nature = match args.nature.as_str() {
        "decision" => Nature::Decision,
        "reminder" => Nature::Reminder,
        "request" => Nature::Request,
        "information" => Nature::Information,
        other => bail!("--nature {other:?}: use decision, reminder, request or information"),
    };
    let mut attachments = Vec::new();
    for path in args.attachments {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("attachment without a file name")?
            .to_owned();
        let content =
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        attachments.push(Attachment {
            name,
            media_type: media_type(&path).into(),
            content,
        });
    }
    let letter = Letter {
        message_id: args
            .message_id
            .unwrap_or_else(|| MessageId::random(&mut OsRng)),
        sender,
        recipient: args.to.parse()?,
        created_at: estafette_pki::now(),
        subject: args.subject,
        body: std::fs::read_to_string(&args.body_file)
            .with_context(|| format!("reading {}", args.body_file.display()))?,
        attachments,
        nature,
        legal_effect: nature == Nature::Decision,
        expected_action: args.expected_action,
        response_deadline: None,
        language: args.language,
        sender_reference: args.reference,
    };
    let signed = SignedMessage::sign(&letter, &keys::read_ed25519(&dir.join("seal.key.pem"))?)?;
    Ok((letter.message_id, signed))
}

fn run(cli: Cli) -> Result<bool> {
    let dir = cli.agency_dir.context("--agency-dir is needed")?;
    let client = || -> Result<AgencyClient> {
        let gateway = cli.gateway.context("--gateway is needed")?;
        let root = cli.root_cert.as_deref().context("--root-cert is needed")?;
        Ok(AgencyClient::for_agency_dir(
            gateway,
            &cli.gateway_name,
            root,
            &dir,
        )?)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Seal { letter, output } => {
            let (id, signed) = seal(&dir, letter)?;
            std::fs::write(&output, signed)
                .with_context(|| format!("writing {}", output.display()))?;
            say!("{id}");
            Ok(true)
        }
        Command::Send {
            letter,
            keep_dir,
            retry,
        } => {
            let (signed, kept) = seal_and_keep(&dir, letter, &keep_dir)?;
            submit(&runtime, &client()?, signed, &kept, retry)
        }
        Command::Resend { file, retry } => {
            let signed =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let id = SignedMessage::read_stored(&signed)
                .with_context(|| format!("{} is not a sealed letter", file.display()))?
                .letter
                .message_id;
            say!("{id}");
            submit(&runtime, &client()?, signed, &file, retry)
        }
        Command::Evidence {
            message_id,
            wait_for,
            timeout,
            bundle,
        } => {
            let trust = federation_trust(cli.root_cert.as_deref(), cli.trust_list.as_deref())?;
            let wanted = wait_for.as_deref();
            let (chain, ok) =
                show_evidence(&runtime, &client()?, &trust, &message_id, wanted, timeout)?;
            if let (Some(file), Some(trust_list)) = (bundle, cli.trust_list.as_deref()) {
                write_bundle(&file, message_id, (trust_list, &trust), chain)?;
            }
            Ok(ok)
        }
    }
}

/// Seals a letter and keeps it in `keep_dir` (never overwriting one), so
/// that the same letter can be sent again; prints its id first.
fn seal_and_keep(dir: &Path, letter: LetterArgs, keep_dir: &Path) -> Result<(Vec<u8>, PathBuf)> {
    let (id, signed) = seal(dir, letter)?;
    let kept = keep_dir.join(format!("{id}.cose"));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&kept)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &signed))
        .with_context(|| format!("keeping the sealed letter in {}", kept.display()))?;
    // The id first: whatever happens next, the agency knows it.
    say!("{id}");
    eprintln!("sealed letter kept in {}", kept.display());
    Ok((signed, kept))
}

/// The federation's trust list, verified with the root certificate.
fn federation_trust(root: Option<&Path>, trust_list: Option<&Path>) -> Result<TrustList> {
    let root = root.context("--root-cert is needed")?;
    let trust_list = trust_list.context("--trust-list is needed to verify evidence")?;
    Ok(tls::read_trust_list(
        root,
        trust_list,
        estafette_pki::now(),
    )?)
}

/// Writes the proof bundle of `message_id`: `chain` and the trust list
/// file's bytes, checked as a court would check them first.
fn write_bundle(
    file: &Path,
    message_id: MessageId,
    (trust_list, trust): (&Path, &TrustList),
    chain: Vec<Vec<u8>>,
) -> Result<()> {
    use estafette_spec::bundle::ProofBundle;
    let bundle = ProofBundle {
        message_id,
        trust_list: std::fs::read(trust_list)
            .with_context(|| format!("reading {}", trust_list.display()))?,
        evidence: chain,
    };
    let bytes = bundle.encode();
    ProofBundle::decode(&bytes)
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(estafette_spec::Evidence::verify_chain(&b.evidence, trust)?))
        .context("the proof bundle does not verify; not written")?;
    std::fs::write(file, bytes).with_context(|| format!("writing {}", file.display()))?;
    eprintln!(
        "proof bundle written to {} (check it with: estafette-pki verify --dir FED {})",
        file.display(),
        file.display()
    );
    Ok(())
}

/// Prints a letter's evidence timeline, waiting up to `timeout` seconds
/// for an event `wanted` when asked; the evidence, and whether every
/// signature verified.
fn show_evidence(
    runtime: &tokio::runtime::Runtime,
    client: &AgencyClient,
    trust: &TrustList,
    message_id: &MessageId,
    wanted: Option<&str>,
    timeout: u64,
) -> Result<(Vec<Vec<u8>>, bool)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let chain = loop {
        let chain = runtime.block_on(client.evidence(message_id))?;
        let Some(wanted) = wanted else {
            break chain;
        };
        let seen = chain.iter().any(|b| {
            estafette_spec::Evidence::verify(b, trust)
                .is_ok_and(|v| format!("{:?}", v.record.event) == wanted)
        });
        if seen {
            break chain;
        }
        if std::time::Instant::now() >= deadline {
            let (lines, _) = timeline(&chain, trust);
            for line in lines {
                say!("{line}");
            }
            bail!("no {wanted} evidence within {timeout} s");
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    };
    let (lines, ok) = timeline(&chain, trust);
    for line in lines {
        say!("{line}");
    }
    Ok((chain, ok))
}

/// Submits `signed`, trying again as `retry` says; prints the answer.
fn submit(
    runtime: &tokio::runtime::Runtime,
    client: &AgencyClient,
    signed: Vec<u8>,
    kept: &Path,
    retry: RetryArgs,
) -> Result<bool> {
    let policy = RetryPolicy {
        attempts: retry.attempts.max(1),
        ..RetryPolicy::default()
    };
    let answer = runtime.block_on(client.submit_summary_retrying(
        signed,
        policy,
        |attempt, error, delay| {
            eprintln!(
                "attempt {attempt} of {} failed ({error}); sending the same letter again in {:.1} s",
                policy.attempts,
                delay.as_secs_f64()
            );
        },
    ));
    let summary = match answer {
        Ok(s) => s,
        Err(e) if e.is_retryable() => {
            bail!(
                "{e}. The gateway did not confirm the letter; send the same letter again with \
                 `estafette-agency resend {}` (the gateway never delivers a letter twice)",
                kept.display()
            )
        }
        Err(e) => return Err(e.into()),
    };
    say!(
        "channel: {}{}",
        summary.channel,
        summary
            .reason
            .map(|r| format!(" (reason: {r})"))
            .unwrap_or_default()
    );
    if let Some(failure) = &summary.failure {
        say!(
            "NOT DELIVERED: the letter cannot go on paper either ({failure}): the gateway knows no postal address; reach the person another way"
        );
    }
    if summary.repeated {
        say!("repeated: the gateway already had this letter; nothing was sent twice");
    }
    Ok(summary.failure.is_none())
}

fn media_type(path: &std::path::Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("xml") => "application/xml",
        _ => "application/octet-stream",
    }
}
