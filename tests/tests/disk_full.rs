//! The fault lab's full disk: a transit relay's data directory on a small
//! tmpfs, most of it taken by a ballast file, fills up while envelopes
//! stream in behind a stopped home node. The relay then refuses new
//! envelopes with a typed, retryable refusal (the gateway keeps them and
//! tries again), says so once in its log and in `/metrics`, and loses
//! nothing it acknowledged; when the ballast goes, it accepts again without
//! a restart, and once the home node is up every envelope arrives once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use estafette_pki::NodeKind;
use estafette_relay::testkit::{RelayProcess, TestFederation, TestNode, wait_until};
use estafette_spec::{Evidence, EvidenceEvent, MessageId};

/// The small file system.
const TMPFS_MIB: u64 = 48;
/// The relay's free-space reserve (`limits.store_min_free_mib`).
const RESERVE_MIB: u64 = 4;
/// Free space left beside the ballast when the stream starts.
const HEADROOM_MIB: u64 = 10;
/// Envelopes offered: far more than the headroom holds.
const ENVELOPES: usize = 6_000;

/// A tmpfs mounted for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={mib}m,mode=0700"))
            .arg("estafette-disk-full")
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a {mib} MiB tmpfs at {} failed ({status}): the disk-full test needs root",
            at.display()
        );
        Tmpfs(at.to_path_buf())
    }

    fn free_mib(&self) -> u64 {
        free_bytes(&self.0) >> 20
    }
}

/// Free bytes of the file system at `path` (df's "Avail").
fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn start(node: &TestNode) -> RelayProcess {
    RelayProcess::start(&estafette_tests::binary("estafette-relay"), node)
}

fn metric(node: &TestNode, series: &str) -> f64 {
    let admin = node.config.admin_listen.unwrap();
    estafette_relay::admin::local_get(admin, "/metrics")
        .map_or(0.0, |text| estafette_relay::testkit::metric(&text, series))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_envelopes_loses_nothing_and_recovers_without_a_restart() {
    let mut fed = TestFederation::new(
        &[
            ("relay-b.test", NodeKind::Transit),
            ("home.test", NodeKind::Home),
        ],
        &["relay-b.test", "home.test"],
    );
    let disk = Tmpfs::mount(&fed.tmp.path().join("small-disk"), TMPFS_MIB);
    {
        let b = fed
            .relays
            .iter_mut()
            .find(|n| n.id.as_str() == "relay-b.test")
            .unwrap();
        b.config.data_dir = disk.0.join("relay-b");
        b.config.limits.store_min_free_mib = RESERVE_MIB;
        b.save();
    }
    let mut b = start(fed.relay("relay-b.test"));
    // The ballast leaves HEADROOM_MIB above nothing: the reserve is met soon.
    let ballast = disk.0.join("ballast");
    let ballast_mib = disk.free_mib() - HEADROOM_MIB;
    std::fs::write(&ballast, vec![7u8; (ballast_mib << 20) as usize]).unwrap();
    println!(
        "tmpfs {TMPFS_MIB} MiB, ballast {ballast_mib} MiB, {} MiB free",
        disk.free_mib()
    );

    let gateway = fed.start_gateway().await;
    let sent = estafette_tests::submit_envelopes(&fed, &gateway, ENVELOPES).await;
    let b_node = fed.relay("relay-b.test");
    wait_until(
        "relay-b to say its disk is full",
        Duration::from_secs(120),
        || metric(b_node, "estafette_relay_store_disk_full") == 1.0,
    )
    .await;
    // Refusals go on (the gateway retries), and the log says it once.
    let accepted_before_full = metric(b_node, "estafette_relay_accepted_total");
    wait_until("the gateway to try again", Duration::from_secs(30), || {
        gateway.store().queue_len() > 0
    })
    .await;
    assert!(
        accepted_before_full > 0.0,
        "relay-b took envelopes until its disk filled"
    );
    let full_lines = || b.log().matches("the disk is full").count();
    assert_eq!(
        full_lines(),
        1,
        "one log line for the episode:\n{}",
        b.log()
    );
    println!(
        "relay-b full: accepted {accepted_before_full}, {} waiting at the gateway, {} MiB free",
        gateway.store().queue_len(),
        disk.free_mib()
    );

    // Space returns: relay-b takes the rest without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let pid = b.child.id();
    wait_until(
        "relay-b to accept every envelope",
        Duration::from_secs(120),
        || gateway.store().queue_len() == 0,
    )
    .await;
    assert_eq!(b.child.id(), pid);
    assert_eq!(metric(b_node, "estafette_relay_store_disk_full"), 0.0);
    assert!(b.log().contains("disk space returned"), "{}", b.log());
    assert_eq!(full_lines(), 1);

    let mut home = start(fed.relay("home.test"));
    wait_until(
        "every envelope's evidence at the gateway",
        Duration::from_secs(120),
        || gateway.store().evidence_all().map_or(0, |e| e.len()) >= 2 * ENVELOPES,
    )
    .await;
    assert!(b.terminate().success() && home.terminate().success());
    let trust = fed.trust();
    let acknowledged: HashSet<MessageId> = gateway
        .store()
        .evidence_all()
        .unwrap()
        .iter()
        .map(|bytes| Evidence::verify(bytes, &trust).unwrap().record)
        .filter(|r| {
            r.event == EvidenceEvent::RelayAcceptance && r.issuer.as_str() == "relay-b.test"
        })
        .filter_map(|r| r.message_id)
        .collect();
    let (arrived, unique) = estafette_tests::delivered_at(fed.relay("home.test"));
    println!(
        "offered {ENVELOPES}, acknowledged by relay-b {}, delivered {}, duplicates {}, lost {}",
        acknowledged.len(),
        arrived.len(),
        arrived.len() - unique.len(),
        acknowledged.difference(&unique).count()
    );
    assert_eq!(arrived.len(), unique.len(), "delivered twice");
    assert!(
        acknowledged.is_subset(&unique),
        "an acknowledged envelope was lost"
    );
    assert_eq!(unique, sent);
    gateway.shutdown().await;
}
