//! Checkpoints, receipts and cosignatures (SPEC.md §15): what verifies, and
//! that any change to a record, a proof or a checkpoint is refused with a
//! typed error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use estafette_spec::fixtures::{self, GATEWAY, HOME, RELAY, T0, key};
use estafette_spec::merkle::{self, Hash};
use estafette_spec::receipt::{
    Checkpoint, CheckpointCache, Cosignature, InclusionProof, MAX_COSIGNATURES, MAX_ORIGIN_BYTES,
    Receipt, ReceiptError, SignedCheckpoint, check_origin,
};
use estafette_spec::{NodeId, TrustError};

fn entries(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("record {i}").into_bytes()).collect()
}

fn leaves(entries: &[Vec<u8>]) -> Vec<Hash> {
    entries.iter().map(|e| merkle::leaf_hash(e)).collect()
}

fn checkpoint_of(origin: &str, leaves: &[Hash]) -> Checkpoint {
    Checkpoint {
        origin: origin.to_owned(),
        tree_size: leaves.len() as u64,
        root: merkle::root(leaves),
        issued_at: T0,
    }
}

/// Receipts for every entry of a log of `n` kept by `HOME`, cosigned by the
/// `witnesses` given.
fn make_receipts(n: usize, witnesses: &[&str]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let entries = entries(n);
    let leaves = leaves(&entries);
    let checkpoint = checkpoint_of(HOME, &leaves);
    let cosignatures: Vec<Cosignature> = witnesses
        .iter()
        .map(|w| Cosignature::sign(&checkpoint, T0.0 + 1, &key(w)))
        .collect();
    let signed = SignedCheckpoint::sign(checkpoint, &key(HOME));
    let receipts = (0..n)
        .map(|i| {
            Receipt {
                checkpoint: signed.clone(),
                proof: InclusionProof {
                    tree_size: n as u64,
                    leaf_index: i as u64,
                    path: merkle::inclusion_proof(i as u64, &leaves).unwrap(),
                },
                cosignatures: cosignatures.clone(),
            }
            .encode()
        })
        .collect();
    (entries, receipts)
}

fn verify(
    receipt: &[u8],
    entry: &[u8],
    cache: &CheckpointCache,
    k: usize,
) -> Result<(), ReceiptError> {
    let trust = fixtures::trust_list();
    Receipt::parse(receipt, entry)?
        .verify(&trust, cache, k)
        .map(|_| ())
}

#[test]
fn every_receipt_of_a_commit_verifies_with_one_signature_check() {
    let (entries, receipts) = make_receipts(37, &[GATEWAY, RELAY]);
    let cache = CheckpointCache::new();
    let trust = fixtures::trust_list();
    for (i, (entry, receipt)) in entries.iter().zip(&receipts).enumerate() {
        let verified = Receipt::parse(receipt, entry)
            .unwrap()
            .verify(&trust, &cache, 2)
            .unwrap();
        assert_eq!(verified.log_owner, fixtures::home_id());
        assert_eq!(verified.leaf_index, i as u64);
        assert_eq!(verified.checkpoint.tree_size, 37);
        assert_eq!(
            verified.witnesses,
            vec![fixtures::gateway_id(), fixtures::relay_id()]
        );
    }
    assert_eq!(cache.len(), 1, "one checkpoint, remembered once");
    // Another entry's receipt does not prove this entry.
    assert!(matches!(
        verify(&receipts[1], &entries[0], &cache, 0),
        Err(ReceiptError::BadSignature)
    ));
}

#[test]
fn any_changed_byte_of_a_record_or_a_receipt_is_refused() {
    let (entries, receipts) = make_receipts(5, &[GATEWAY]);
    let (entry, receipt) = (&entries[3], &receipts[3]);
    verify(receipt, entry, &CheckpointCache::new(), 1).unwrap();
    for i in 0..entry.len() {
        let mut changed = entry.clone();
        changed[i] ^= 0x01;
        let outcome = verify(receipt, &changed, &CheckpointCache::new(), 1);
        assert_eq!(outcome, Err(ReceiptError::BadSignature), "record byte {i}");
    }
    for i in 0..receipt.len() {
        for flip in [0x01u8, 0x80] {
            let mut changed = receipt.clone();
            changed[i] ^= flip;
            let outcome = verify(&changed, entry, &CheckpointCache::new(), 1);
            assert!(
                outcome.is_err(),
                "receipt byte {i} ^ {flip:#x} still verifies"
            );
        }
    }
}

#[test]
fn any_changed_byte_of_a_checkpoint_is_refused() {
    let entries = entries(9);
    let checkpoint = checkpoint_of(HOME, &leaves(&entries));
    let cosignature = Cosignature::sign(&checkpoint, T0.0, &key(RELAY));
    let signed = SignedCheckpoint::sign(checkpoint, &key(HOME));
    let bytes = signed.to_cose(std::slice::from_ref(&cosignature));
    let trust = fixtures::trust_list();
    let check = |bytes: &[u8]| -> Result<(), ReceiptError> {
        let (signed, cosignatures) = SignedCheckpoint::parse(bytes)?;
        let log = signed.verify(&trust, &CheckpointCache::new())?;
        estafette_spec::receipt::verify_cosignatures(
            &signed.checkpoint,
            &cosignatures,
            log,
            &trust,
        )?;
        Ok(())
    };
    check(&bytes).unwrap();
    for i in 0..bytes.len() {
        let mut changed = bytes.clone();
        changed[i] ^= 0x01;
        assert!(
            check(&changed).is_err(),
            "checkpoint byte {i} still verifies"
        );
    }
}

#[test]
fn a_proof_for_another_size_or_position_is_refused() {
    let entries = entries(6);
    let leaves = leaves(&entries);
    let signed = SignedCheckpoint::sign(checkpoint_of(HOME, &leaves), &key(HOME));
    let receipt = |tree_size, leaf_index, path| {
        Receipt {
            checkpoint: signed.clone(),
            proof: InclusionProof {
                tree_size,
                leaf_index,
                path,
            },
            cosignatures: vec![],
        }
        .encode()
    };
    let cache = CheckpointCache::new();
    let path = merkle::inclusion_proof(2, &leaves).unwrap();
    verify(&receipt(6, 2, path.clone()), &entries[2], &cache, 0).unwrap();
    assert_eq!(
        verify(&receipt(5, 2, path.clone()), &entries[2], &cache, 0),
        Err(ReceiptError::ProofTreeSize {
            proof: 5,
            checkpoint: 6
        })
    );
    assert_eq!(
        verify(&receipt(6, 3, path.clone()), &entries[2], &cache, 0),
        Err(ReceiptError::BadSignature)
    );
    assert!(matches!(
        verify(&receipt(6, 6, path.clone()), &entries[2], &cache, 0),
        Err(ReceiptError::Merkle(
            merkle::MerkleError::IndexOutOfRange { .. }
        ))
    ));
    let mut short = path.clone();
    short.pop();
    assert!(matches!(
        verify(&receipt(6, 2, short), &entries[2], &cache, 0),
        Err(ReceiptError::Merkle(merkle::MerkleError::ProofLength))
    ));
}

#[test]
fn two_roots_for_one_size_are_a_split_view() {
    let cache = CheckpointCache::new();
    let (entries, receipts) = make_receipts(4, &[]);
    verify(&receipts[0], &entries[0], &cache, 0).unwrap();
    // The same node signs another history of four records.
    let other: Vec<Vec<u8>> = (0..4)
        .map(|i| format!("rewritten {i}").into_bytes())
        .collect();
    let other_leaves = leaves(&other);
    let forked = Receipt {
        checkpoint: SignedCheckpoint::sign(checkpoint_of(HOME, &other_leaves), &key(HOME)),
        proof: InclusionProof {
            tree_size: 4,
            leaf_index: 0,
            path: merkle::inclusion_proof(0, &other_leaves).unwrap(),
        },
        cosignatures: vec![],
    };
    assert_eq!(
        verify(&forked.encode(), &other[0], &cache, 0),
        Err(ReceiptError::SplitView {
            origin: HOME.into(),
            tree_size: 4
        })
    );
    // The same root signed again, at another time, is the same history.
    let mut again = checkpoint_of(HOME, &leaves(&entries));
    again.issued_at = T0.plus_s(60);
    let again = SignedCheckpoint::sign(again, &key(HOME));
    again.verify(&fixtures::trust_list(), &cache).unwrap();
}

#[test]
fn cosignatures_count_only_from_the_witnesses_the_trust_list_names() {
    let cache = CheckpointCache::new();
    let (entries, receipts) = make_receipts(3, &[GATEWAY, RELAY]);
    verify(&receipts[0], &entries[0], &cache, 2).unwrap();
    assert_eq!(
        verify(&receipts[0], &entries[0], &cache, 3),
        Err(ReceiptError::NotEnoughCosignatures {
            needed: 3,
            found: 2
        })
    );
    // The same witness twice counts once.
    let (entries, receipts) = make_receipts(3, &[RELAY, RELAY]);
    assert_eq!(
        verify(&receipts[1], &entries[1], &cache, 2),
        Err(ReceiptError::NotEnoughCosignatures {
            needed: 2,
            found: 1
        })
    );
    // A log does not witness itself; an agency witnesses nothing.
    for outsider in [HOME, fixtures::AGENCY_OIN] {
        let (entries, receipts) = make_receipts(2, &[outsider]);
        assert!(
            matches!(
                verify(&receipts[0], &entries[0], &cache, 0),
                Err(ReceiptError::UnlistedWitness { .. })
            ),
            "{outsider}"
        );
    }
}

#[test]
fn cosignatures_up_to_the_limit() {
    let entries = entries(2);
    let leaves = leaves(&entries);
    let checkpoint = checkpoint_of(HOME, &leaves);
    let one = Cosignature::sign(&checkpoint, T0.0, &key(RELAY));
    let signed = SignedCheckpoint::sign(checkpoint, &key(HOME));
    let at_limit = signed.to_cose(&vec![one.clone(); MAX_COSIGNATURES]);
    assert_eq!(
        SignedCheckpoint::parse(&at_limit).unwrap().1.len(),
        MAX_COSIGNATURES
    );
    let over = signed.to_cose(&vec![one; MAX_COSIGNATURES + 1]);
    assert_eq!(
        SignedCheckpoint::parse(&over).unwrap_err(),
        ReceiptError::TooManyCosignatures
    );
}

#[test]
fn a_log_belongs_to_its_signer_and_only_nodes_keep_logs() {
    let entries = entries(2);
    let leaves = leaves(&entries);
    let trust = fixtures::trust_list();
    let cache = CheckpointCache::new();
    // The relay signs a checkpoint of a log it calls the home node's.
    let claimed = SignedCheckpoint::sign(checkpoint_of(HOME, &leaves), &key(RELAY));
    assert_eq!(
        claimed.verify(&trust, &cache).unwrap_err(),
        ReceiptError::OriginNotSigner {
            origin: HOME.into(),
            signer: fixtures::relay_id()
        }
    );
    // A gateway instance's log: the gateway's id and a name.
    let instance = SignedCheckpoint::sign(
        checkpoint_of("gateway.test/instance-2", &leaves),
        &key(GATEWAY),
    );
    assert_eq!(
        instance.verify(&trust, &cache).unwrap().id,
        fixtures::gateway_id()
    );
    let agency = SignedCheckpoint::sign(checkpoint_of(HOME, &leaves), &key(fixtures::AGENCY_OIN));
    assert!(matches!(
        agency.verify(&trust, &cache),
        Err(ReceiptError::NotANode(_))
    ));
    let stranger = SignedCheckpoint::sign(checkpoint_of(HOME, &leaves), &key("stranger"));
    assert!(matches!(
        stranger.verify(&trust, &cache),
        Err(ReceiptError::Trust(TrustError::UnknownKey(_)))
    ));
}

#[test]
fn origins_at_their_edges() {
    let long_node = format!("{}.test", "a".repeat(58));
    let at_limit = format!(
        "{long_node}/{}",
        "b".repeat(MAX_ORIGIN_BYTES - long_node.len() - 1)
    );
    assert_eq!(at_limit.len(), MAX_ORIGIN_BYTES);
    assert_eq!(
        check_origin(&at_limit).unwrap(),
        long_node.parse::<NodeId>().unwrap()
    );
    assert!(check_origin(&format!("{at_limit}b")).is_err());
    assert!(check_origin("home-1.test").is_ok());
    for bad in [
        "home-1.test/",
        "home-1.test/Instance",
        "home-1.test/a/b",
        "/x",
        "",
        "home 1",
    ] {
        assert!(check_origin(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_cosignature_is_the_c2sp_message() {
    let checkpoint = Checkpoint {
        origin: "home-1.test".into(),
        tree_size: 2,
        root: [0u8; 32],
        issued_at: T0,
    };
    assert_eq!(
        String::from_utf8(Cosignature::message(&checkpoint, 1_700_000_000)).unwrap(),
        "cosignature/v1\ntime 1700000000\nhome-1.test\n2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    );
}

/// The independent verifier (`tests/receipts/verify.py`: pycose, cbor2,
/// hashlib, cryptography; none of our code) follows SPEC.md §15 over the
/// committed vectors and reaches every listed outcome; over a copy with
/// one byte of the receipt changed, it does not.
#[test]
fn receipts_verify_with_an_independent_cose_library() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = repo.join("target/receipts-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/test makes it (tests/receipts/requirements.txt)",
        python.display()
    );
    let run = |vectors: &std::path::Path| {
        std::process::Command::new(&python)
            .arg(repo.join("tests/receipts/verify.py"))
            .arg(vectors)
            .output()
            .unwrap()
    };
    let vectors = repo.join("spec/vectors");
    let out = run(&vectors);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok  ")).count(),
        18,
        "{stdout}"
    );

    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&vectors).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    let receipt = copy.path().join("receipt.cose");
    let mut bytes = std::fs::read(&receipt).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&receipt, bytes).unwrap();
    let out = run(copy.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAILED  receipt.cose: bad_signature (expected valid)"),
        "{stdout}"
    );
}

/// The largest receipt a log can make (a path of 64 hashes, in a tree of
/// 2⁶⁴ − 1 records, with the most cosignatures) fits the size limit; bytes
/// over the limit are refused before anything is decoded.
#[test]
fn the_largest_receipt_fits_the_limit() {
    use estafette_spec::receipt::MAX_RECEIPT_BYTES;
    let checkpoint = Checkpoint {
        origin: format!("{}.test/{}", "a".repeat(58), "b".repeat(191)),
        tree_size: u64::MAX,
        root: [1; 32],
        issued_at: estafette_spec::Timestamp(u64::MAX),
    };
    let cosignature = Cosignature::sign(&checkpoint, u64::MAX, &key(RELAY));
    let receipt = Receipt {
        checkpoint: SignedCheckpoint::sign(checkpoint, &key(HOME)),
        proof: InclusionProof {
            tree_size: u64::MAX,
            leaf_index: 0,
            path: vec![[2; 32]; 64],
        },
        cosignatures: vec![cosignature; MAX_COSIGNATURES],
    }
    .encode();
    assert!(
        receipt.len() <= MAX_RECEIPT_BYTES,
        "{} bytes",
        receipt.len()
    );
    let parsed = Receipt::parse(&receipt, b"entry").unwrap();
    assert_eq!(parsed.proof.path.len(), 64);
    let mut over = receipt.clone();
    over.resize(MAX_RECEIPT_BYTES + 1, 0);
    assert!(matches!(
        Receipt::parse(&over, b"entry"),
        Err(ReceiptError::Cbor(
            estafette_spec::cbor::CborError::TooLarge { .. }
        ))
    ));
}
