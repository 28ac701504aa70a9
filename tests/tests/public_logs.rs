//! Every node's evidence log is public (SPEC.md §15): its checkpoint and
//! tiles are served over HTTPS, every receipt a party holds verifies
//! against them, and they reveal nothing but counts: no message or
//! envelope id, no person's number or name, no word of a letter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use estafette_relay::log_audit::LogLocation;
use estafette_relay::testkit::AGENCY;
use estafette_spec::merkle;
use estafette_spec::receipt::SignedCheckpoint;
use estafette_spec::*;
use estafette_tests::*;

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_tiles_and_checkpoints_reveal_nothing_but_counts() {
    let fed = ProcessFederation::new();
    let _gateway = fed.start_gateway();
    let _relay = fed.start_relay("relay.test");
    let _home = fed.start_relay("home.test");

    let body = "Uw aanslag inkomstenbelasting 2026 bedraagt 1234 euro";
    let (message, signed) = fed.letter(AGENCY, RESIDENT, body);
    fed.agency().submit_summary(signed).await.unwrap();
    fed.wait_for_event(
        &message,
        EvidenceEvent::ContentConsignment,
        Duration::from_secs(60),
    )
    .await;
    let resident = fed.resident_session().await.unwrap();
    let letters = resident.letters().await.unwrap();
    let envelope = letters[0].envelope_id;
    resident.open(&envelope.to_string()).await.unwrap();
    fed.wait_for_event(
        &message,
        EvidenceEvent::ContentHandover,
        Duration::from_secs(60),
    )
    .await;

    // The receipts the agency holds, by the log they are in.
    let trust = fed.fed.trust();
    let mut receipts: BTreeMap<String, Vec<(u64, merkle::Hash)>> = BTreeMap::new();
    for evidence in fed.agency().evidence(&message).await.unwrap() {
        let verified = Evidence::verify(&evidence, &trust).unwrap();
        let (record, _) = Evidence::split(&evidence).unwrap();
        receipts
            .entry(verified.log.origin.clone())
            .or_default()
            .push((verified.log.leaf_index, merkle::leaf_hash(&record)));
    }
    assert_eq!(
        receipts.keys().collect::<Vec<_>>(),
        ["gateway.test", "home.test", "relay.test"],
        "every node made evidence of this letter"
    );

    let tls =
        estafette_pki::tls::web_client_config(Some(&fed.fed.fed.root_cert_path()), &[b"http/1.1"])
            .unwrap();
    let forbidden: Vec<(&str, Vec<u8>)> = vec![
        ("message id", message.to_string().into_bytes()),
        ("message id (bytes)", message.as_bytes().to_vec()),
        ("envelope id", envelope.to_string().into_bytes()),
        ("envelope id (bytes)", envelope.as_bytes().to_vec()),
        ("citizen service number", b"999999990".to_vec()),
        ("recipient", RESIDENT.as_bytes().to_vec()),
        ("agency", AGENCY.as_bytes().to_vec()),
        ("subject", b"Voorlopige aanslag".to_vec()),
        ("content", b"inkomstenbelasting".to_vec()),
        ("amount", b"1234 euro".to_vec()),
    ];
    for (node, leaves) in &receipts {
        let config = if node == "gateway.test" {
            &fed.fed.gateway.config
        } else {
            &fed.fed.relay(node).config
        };
        let addr = config.log_listen.unwrap();
        let location =
            LogLocation::parse(&format!("https://{node}:{}", addr.port()), Some(addr)).unwrap();
        let served = location.fetch(&tls, "/log/checkpoint").await.unwrap();
        let (checkpoint, _) = SignedCheckpoint::parse(&served).unwrap();
        let (_, key) = checkpoint.signer(&trust).unwrap();
        checkpoint.verify_with(&key).unwrap();
        let size = checkpoint.checkpoint.tree_size;
        let mut published = served.clone();
        let mut level_zero = Vec::new();
        for (level, index, width) in merkle::tiles_of(size) {
            let path = format!("/log/{}", merkle::tile_path(level, index, width));
            let tile = location.fetch(&tls, &path).await.unwrap();
            assert_eq!(tile.len() as u64, width * 32, "{node} {path}");
            if level == 0 {
                level_zero.extend_from_slice(&tile);
            }
            published.extend_from_slice(&tile);
        }
        // The tiles are the tree of the checkpoint, and hold the agency's
        // receipts where they say.
        let hashes: Vec<merkle::Hash> = level_zero
            .chunks_exact(32)
            .map(|h| h.try_into().unwrap())
            .collect();
        assert_eq!(hashes.len() as u64, size);
        assert_eq!(merkle::root(&hashes), checkpoint.checkpoint.root, "{node}");
        for (index, leaf) in leaves {
            if *index < size {
                assert_eq!(&hashes[*index as usize], leaf, "{node} leaf {index}");
            }
        }
        // Nothing but hashes, sizes, times, the log's name and signatures.
        for (what, bytes) in &forbidden {
            assert!(
                !contains(&published, bytes),
                "{node}'s public log contains the {what}"
            );
        }
        // Not a record's file: the log serves no entries, and nothing else.
        for path in ["/log/tile/entries/000.p/1", "/log/records", "/metrics"] {
            assert!(location.fetch(&tls, path).await.is_err(), "{node} {path}");
        }
    }
}
