//! Replays every committed fuzz input through its target: the corpora the
//! fuzzers built (`fuzz/corpus/<target>/`) and the inputs that once made a
//! target fail (`fuzz/regressions/<target>/`, each fixed since). A target
//! fails by panicking, so a replay that returns is a pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let mut replayed = 0;
    for (target, run) in estafette_fuzz::TARGETS {
        let files = inputs(kind, target);
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{target} fails on {}", file.display());
        }
        println!("{kind}/{target}: {} inputs", files.len());
        replayed += files.len();
    }
    replayed
}

#[test]
fn every_corpus_input_passes_its_target() {
    let replayed = replay("corpus");
    // Every target has a committed corpus; an empty one means it was lost.
    for (target, _) in estafette_fuzz::TARGETS {
        assert!(
            !inputs("corpus", target).is_empty(),
            "fuzz/corpus/{target} is empty"
        );
    }
    assert!(replayed > 0);
}

#[test]
fn every_regression_input_passes_its_target() {
    replay("regressions");
}

#[test]
fn seeds_come_from_the_vectors() {
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors");
    for (target, run) in estafette_fuzz::TARGETS {
        let seeds = estafette_fuzz::seeds::seeds(target, &vectors).unwrap();
        assert!(!seeds.is_empty(), "{target} has no seeds");
        for seed in seeds {
            run(&seed.bytes);
        }
    }
}
