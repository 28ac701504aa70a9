//! Writes each fuzz target's seed inputs into `fuzz/corpus/<target>/`
//! (named by content, as libFuzzer names what it finds), from `spec/vectors`.

use std::path::PathBuf;

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let vectors = root.join("../spec/vectors");
    for (target, _) in estafette_fuzz::TARGETS {
        let dir = root.join("corpus").join(target);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let seeds = estafette_fuzz::seeds::seeds(target, &vectors)
            .with_context(|| format!("reading {}", vectors.display()))?;
        for seed in &seeds {
            let name = hex::encode(Sha256::digest(&seed.bytes));
            std::fs::write(dir.join(name), &seed.bytes)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}
