//! `registry`: a registry of 17 million people (generated, with valid
//! BSNs), imported through `registry import` in files of the largest size it
//! takes; the import rate as it grows, the size on disk, and the time of one
//! person's lookup (as a submission makes it: a snapshot and a read) with
//! 10,000 people and with all of them, and the time of the operator
//! report's counters and of its dormant inboxes at both sizes.
//!
//! Lookups are timed twice at full size: right after the import (what the
//! import left in the caches), and warm, as in a gateway that has run a
//! while: after one pass over every entry and [`WARM_LOOKUPS`] untimed
//! lookups. The comparison with the small registry is warm against warm,
//! with a page cache (`--cache-mib`) that holds the registry.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use estafette_gateway::registry::{self, MAX_IMPORT_PEOPLE};
use estafette_gateway::report;
use estafette_gateway::store::Records;
use estafette_pki::NodeKind;
use estafette_relay::testkit::TestFederation;
use estafette_spec::{Bsn, Recipient, Timestamp};
use rand_core::{OsRng, RngCore};

use crate::backend::{Chosen, open};

const HOME: &str = "scale-home.test";
/// Lookups timed at each size.
const LOOKUPS: usize = 20_000;
/// Untimed random lookups before the warm figures: the first touches of
/// pages after a pass leave the processor's caches and the allocator cold.
const WARM_LOOKUPS: usize = 100_000;
/// Rounds of [`LOOKUPS`] timed warm; the figure is the median round's, and
/// every round is printed (a transient after the page cache filled can
/// show in one round's p99).
const WARM_ROUNDS: usize = 5;

/// The `i`-th valid BSN of a sequence: eight digits counted up and the
/// check digit that passes the eleven test (prefixes without one skipped).
struct Bsns {
    next_prefix: u32,
}

impl Iterator for Bsns {
    type Item = Bsn;
    fn next(&mut self) -> Option<Bsn> {
        loop {
            let prefix = self.next_prefix;
            if prefix >= 100_000_000 {
                return None;
            }
            self.next_prefix += 1;
            if let Some(bsn) = Bsn::with_check_digit(prefix) {
                return Some(bsn);
            }
        }
    }
}

/// One import file of `bsns`: active digital readers at the home node,
/// with an e-mail address and a postal address.
fn import_file(bsns: &[Bsn]) -> String {
    let people: Vec<serde_json::Value> = bsns
        .iter()
        .map(|bsn| {
            serde_json::json!({
                "recipient": format!("bsn:{bsn}"), "home_node": HOME, "active": true,
                "digital_senders": ["00000001003214345000"],
                "contact_channels": [{ "kind": "email", "address": format!("p{bsn}@example.nl"), "state": "verified" }],
                "postal_address": { "street_lines": ["Stationsweg 3"], "postal_code": "1234 AB", "city": "Voorbeeld", "country": "NL" }
            })
        })
        .collect();
    serde_json::Value::Array(people).to_string()
}

/// `count` lookups of random people among `known`: (p50, p99) in
/// microseconds.
fn lookups(records: &dyn Records, known: &[Bsn], count: usize) -> Result<(f64, f64)> {
    let mut took = Vec::with_capacity(count);
    for _ in 0..count {
        let bsn = &known[(OsRng.next_u64() % known.len() as u64) as usize];
        let recipient: Recipient = format!("bsn:{bsn}").parse()?;
        let started = Instant::now();
        let found = registry::lookup(records, &recipient)?;
        took.push(started.elapsed().as_secs_f64() * 1e6);
        if found.is_none() {
            bail!("{recipient} not found");
        }
    }
    took.sort_by(f64::total_cmp);
    Ok((took[took.len() / 2], took[took.len() * 99 / 100]))
}

/// [`WARM_ROUNDS`] rounds of lookups, each printed; the median round's
/// (p50, p99).
fn warm_lookups(records: &dyn Records, known: &[Bsn]) -> Result<(f64, f64)> {
    let mut rounds = Vec::with_capacity(WARM_ROUNDS);
    for round in 1..=WARM_ROUNDS {
        let (p50, p99) = lookups(records, known, LOOKUPS)?;
        println!(
            "{:>10} people: lookup round {round}: p50 {p50:.1} µs, p99 {p99:.1} µs",
            known.len()
        );
        rounds.push((p50, p99));
    }
    let median = |pick: fn(&(f64, f64)) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Ok((median(|r| r.0), median(|r| r.1)))
}

/// Warms the caches as a running gateway's are: one pass over every entry
/// (what fits in the page cache stays), then untimed lookups.
fn warm(records: &dyn Records, known: &[Bsn]) -> Result<()> {
    let started = Instant::now();
    let mut passed = 0usize;
    records.read()?.each_person(&mut |_, _| {
        passed += 1;
        Ok(())
    })?;
    let pass_s = started.elapsed().as_secs_f64();
    lookups(records, known, WARM_LOOKUPS)?;
    println!(
        "{:>10} people: warmed by a pass over all {passed} entries ({pass_s:.1} s) and {WARM_LOOKUPS} lookups",
        known.len()
    );
    Ok(())
}

/// Times the operator report's two parts with `people` in the registry:
/// its counters, and the dormant inboxes (every imported person is an
/// active inbox never visited, so every one is looked at: the worst case).
fn report(records: &dyn Records, people: usize) -> Result<()> {
    let now = Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    );
    let started = Instant::now();
    let counted = report::counted_report(records, now, 12)?;
    let counters_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let dormant = report::dormant_inboxes(records, now, 12)?;
    let dormant_ms = started.elapsed().as_secs_f64() * 1e3;
    if counted.people != people {
        bail!("the report counts {} people, not {people}", counted.people);
    }
    println!(
        "{people:>10} people: report counters in {counters_ms:.2} ms; dormant inboxes ({dormant}) in {dormant_ms:.0} ms, all {} active inboxes away",
        counted.active_inboxes
    );
    Ok(())
}

/// The registry part.
pub async fn registry(people: usize, baseline: usize, backend: Chosen) -> Result<()> {
    let fed = TestFederation::new(&[(HOME, NodeKind::Home)], &[HOME]);
    let trust = fed.trust();
    let opened = open(backend).await?;
    let records = &*opened.records;
    println!("{backend:?}: importing {people} people, {MAX_IMPORT_PEOPLE} per import file");
    let mut bsns = Bsns {
        next_prefix: 10_000_000,
    };
    // Kept to look people up: every person's BSN (9 bytes each).
    let mut known: Vec<Bsn> = Vec::with_capacity(people);
    let started = Instant::now();
    let (mut window_start, mut window_people) = (Instant::now(), 0usize);
    let mut baseline_figures = None;
    while known.len() < people {
        let chunk = MAX_IMPORT_PEOPLE.min(people - known.len());
        let chunk = if known.len() < baseline {
            chunk.min(baseline - known.len())
        } else {
            chunk
        };
        let batch: Vec<Bsn> = bsns.by_ref().take(chunk).collect();
        if batch.len() < chunk {
            bail!("out of BSNs");
        }
        let file = import_file(&batch);
        registry::import(records, &trust, &file)
            .await
            .context("an import")?;
        known.extend(batch);
        window_people += chunk;
        if known.len() == baseline {
            warm(records, &known)?;
            let (p50, p99) = warm_lookups(records, &known)?;
            println!(
                "{:>10} people: lookup p50 {p50:.1} µs, p99 {p99:.1} µs (warm, median round)",
                known.len()
            );
            baseline_figures = Some((p50, p99));
            report(records, known.len())?;
        }
        if known.len() / 1_000_000 > (known.len() - chunk) / 1_000_000 || known.len() == people {
            let rate = window_people as f64 / window_start.elapsed().as_secs_f64();
            println!(
                "{:>10} people: importing at {rate:.0} people/s, {:.0} MiB on disk",
                known.len(),
                opened.size_bytes()? as f64 / (1024.0 * 1024.0)
            );
            (window_start, window_people) = (Instant::now(), 0);
        }
    }
    let total_s = started.elapsed().as_secs_f64();
    let size = opened.size_bytes()?;
    let (p50_cold, p99_cold) = lookups(records, &known, LOOKUPS)?;
    println!(
        "{people:>10} people: lookup p50 {p50_cold:.1} µs, p99 {p99_cold:.1} µs (right after the import)"
    );
    warm(records, &known)?;
    let (p50, p99) = warm_lookups(records, &known)?;
    println!(
        "{people} people imported in {total_s:.0} s ({:.0} people/s); {:.0} MiB on disk ({:.0} bytes per person)",
        people as f64 / total_s,
        size as f64 / (1024.0 * 1024.0),
        size as f64 / people as f64
    );
    println!("{people:>10} people: lookup p50 {p50:.1} µs, p99 {p99:.1} µs (warm, median round)");
    report(records, people)?;
    if let Some((b50, b99)) = baseline_figures {
        println!(
            "lookup with {people} people vs {baseline}, both warm: p50 {:.2}x, p99 {:.2}x",
            p50 / b50,
            p99 / b99
        );
    }
    Ok(())
}
