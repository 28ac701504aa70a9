//! `monitor`: the monitor's work for one cycle with a million letters
//! followed, of which 1% are due. The letters are written straight into
//! the gateway's records (redb, or a PostgreSQL server of the bench's own);
//! a cycle's reads are then timed: the due index up to now, and each due
//! letter's evidence, as `monitor_cycle` reads them before it takes steps.
//! The same number of due letters among a tenth as many followed shows
//! whether the work follows what is due or what is followed; reading every
//! followed letter (what a cycle did before the index) is timed beside it.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::backend::{Chosen, open};
use estafette_gateway::gateway::TrackedLetter;
use estafette_gateway::store::Records;
use estafette_spec::escalation::LetterProgress;
use estafette_spec::{Digest, EnvelopeId, MessageId, Nature, Oin, Recipient, Timestamp};

/// Letters written per transaction while filling.
const FILL_BATCH: usize = 10_000;
/// People the letters go to.
const PEOPLE: usize = 100_000;
/// "Now" of the bench (any fixed time: nothing reads the clock).
const NOW: Timestamp = Timestamp(1_900_000_000);
const DAY_S: u64 = 24 * 3600;

fn letter(i: usize, recipients: &[Recipient], sender: &Oin) -> TrackedLetter {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(i as u64).to_be_bytes());
    TrackedLetter {
        recipient: recipients[i % recipients.len()].clone(),
        sender: sender.clone(),
        sender_reference: format!("scale-{i}"),
        nature: Nature::Decision,
        legal_effect: false,
        expected_action: String::new(),
        envelope_id: EnvelopeId::from_bytes(id),
        message_digest: Digest::of(&id),
        progress: LetterProgress {
            submitted_at: NOW.minus_s(DAY_S),
            consigned_at: Some(NOW.minus_s(DAY_S)),
            notified: true,
            ..Default::default()
        },
    }
}

/// Message id of letter `i`: spread over the key space, as real ones are.
fn message_id(i: usize) -> MessageId {
    let digest = Digest::of(&(i as u64).to_be_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest.0[..16]);
    MessageId::from_bytes(id)
}

/// Follows `followed` letters, the first `due` of them due before [`NOW`]
/// (a reminder), the rest in a week.
async fn fill(records: &dyn Records, followed: usize, due: usize) -> Result<f64> {
    let recipients: Vec<Recipient> = (0..PEOPLE)
        .map(|i| format!("eidas:DE/NL/scale-{i}").parse())
        .collect::<Result<_, _>>()
        .context("a recipient")?;
    let recipients = Arc::new(recipients);
    let sender: Oin = "00000001003214345000".parse().context("the OIN")?;
    let started = Instant::now();
    for start in (0..followed).step_by(FILL_BATCH) {
        let end = (start + FILL_BATCH).min(followed);
        let (recipients, sender) = (recipients.clone(), sender.clone());
        records
            .write(Box::new(move |w| {
                for i in start..end {
                    let when = if i < due {
                        NOW.minus_s(60 + (i % 3600) as u64)
                    } else {
                        NOW.plus_s(7 * DAY_S + (i % 3600) as u64)
                    };
                    w.follow(
                        &message_id(i),
                        &letter(i, &recipients, &sender),
                        b"signed",
                        Some(when),
                    )?;
                }
                Ok(())
            }))
            .await?;
    }
    Ok(followed as f64 / started.elapsed().as_secs_f64())
}

/// A cycle's reads: the due letters, and each one's evidence. The time in
/// milliseconds and the letters read.
fn cycle_reads(records: &dyn Records, by: Timestamp) -> Result<(f64, usize)> {
    let started = Instant::now();
    let read = records.read()?;
    let due = read.due_letters(by, usize::MAX)?;
    for (message, _) in &due {
        read.evidence_for(message)?;
    }
    Ok((started.elapsed().as_secs_f64() * 1e3, due.len()))
}

/// The monitor part.
pub async fn monitor(followed: usize, due_share: f64, backend: Chosen) -> Result<()> {
    let due = ((followed as f64 * due_share) as usize).max(1);
    println!(
        "{backend:?}: {followed} followed letters, {due} due; and a tenth as many followed with as many due"
    );
    for n in [(followed / 10).max(due), followed] {
        let opened = open(backend).await?;
        let records = &*opened.records;
        let rate = fill(records, n, due).await?;
        println!("{n:>9} followed: filled at {rate:.0} letters/s");
        for round in 0..2 {
            let (ms, read) = cycle_reads(records, NOW)?;
            println!(
                "{n:>9} followed, cycle {round}: {read} due letters read with their evidence in {ms:.1} ms ({:.1} µs per due letter)",
                ms * 1e3 / read.max(1) as f64
            );
        }
        // Every followed letter, as a cycle read them before the index.
        let (ms, read) = cycle_reads(records, Timestamp(u64::MAX - 1))?;
        println!(
            "{n:>9} followed: reading every followed letter instead: {read} letters in {ms:.0} ms"
        );
    }
    Ok(())
}
