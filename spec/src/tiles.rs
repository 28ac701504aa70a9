//! C2SP tlog-tiles: how a log's hashes are served as static files. A tile
//! is up to [`TILE_WIDTH`] hashes of one level (level `L` holds the nodes
//! of height `8·L`); its path spells its index in groups of three digits.
//! [`TileReader`] is a reader's side: the tree of a checkpoint seen through
//! the tiles fetched so far, asking for the next one it needs, so that an
//! auditor computes roots and proofs from what the log serves.
//!
//! Pure functions; the tree math is [`crate::merkle`]'s.

use crate::merkle::{Hash, Leaves, MerkleError, NodeSource};

/// Hashes in one tile of C2SP tlog-tiles.
pub const TILE_WIDTH: u64 = 256;
/// Tree heights one tile level spans (256 = 2⁸).
pub const TILE_HEIGHT: u8 = 8;

/// The path of a tile in C2SP tlog-tiles: `tile/<level>/<index>`, the index
/// in groups of three digits, each but the last prefixed with `x`
/// (1234067 → `x001/x234/067`), and `.p/<width>` for a partial tile.
pub fn tile_path(level: u8, index: u64, width: u64) -> String {
    let digits = format!("{index:03}");
    let padded = format!("{}{digits}", "0".repeat((3 - digits.len() % 3) % 3));
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .map(|c| std::str::from_utf8(c).unwrap_or("000"))
        .collect();
    let mut path = format!("tile/{level}/");
    for (i, group) in groups.iter().enumerate() {
        if i + 1 < groups.len() {
            path.push('x');
        }
        path.push_str(group);
        if i + 1 < groups.len() {
            path.push('/');
        }
    }
    if width < TILE_WIDTH {
        path.push_str(&format!(".p/{width}"));
    }
    path
}

/// Reads a tile path back: (level, index, width); `None` for anything else.
pub fn parse_tile_path(path: &str) -> Option<(u8, u64, u64)> {
    let rest = path.strip_prefix("tile/")?;
    let (level, rest) = rest.split_once('/')?;
    let level: u8 = level.parse().ok().filter(|l| *l < 8)?;
    let (index_part, width) = match rest.split_once(".p/") {
        Some((index, width)) => {
            let width: u64 = width.parse().ok().filter(|w| (1..TILE_WIDTH).contains(w))?;
            (index, width)
        }
        None => (rest, TILE_WIDTH),
    };
    let groups: Vec<&str> = index_part.split('/').collect();
    let mut index: u64 = 0;
    for (i, group) in groups.iter().enumerate() {
        let digits = if i + 1 < groups.len() {
            group.strip_prefix('x')?
        } else {
            group
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        index = index.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
    }
    // One spelling per tile: no leading groups of zeros.
    (tile_path(level, index, width) == path).then_some((level, index, width))
}

/// The tiles of a tree of `size` leaves: (level, index, width) of each, full
/// and partial, lowest level first.
pub fn tiles_of(size: u64) -> impl Iterator<Item = (u8, u64, u64)> {
    (0u8..8).flat_map(move |level| {
        let nodes = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
        let full = nodes / TILE_WIDTH;
        let partial = nodes % TILE_WIDTH;
        (0..full)
            .map(move |i| (level, i, TILE_WIDTH))
            .chain((partial > 0).then_some((level, full, partial)))
    })
}

/// A tile a reader of a log still needs: (level, index, width) for the
/// tree it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("tile {level}/{index} of width {width} is needed")]
pub struct NeedTile {
    pub level: u8,
    pub index: u64,
    pub width: u64,
}

impl NeedTile {
    /// Its path in C2SP tlog-tiles.
    pub fn path(&self) -> String {
        tile_path(self.level, self.index, self.width)
    }
}

/// A log's tree of `size` leaves as a reader sees it: the tiles it fetched
/// so far. Asked for a node whose tile it lacks, it names that tile
/// ([`NeedTile`]); the reader fetches it and asks again. Proofs and roots
/// computed this way are those of the tiles, so that comparing them with
/// signed checkpoints checks what the log serves.
#[derive(Debug, Clone, Default)]
pub struct TileReader {
    size: u64,
    tiles: std::collections::HashMap<(u8, u64), Vec<Hash>>,
}

impl TileReader {
    pub fn new(size: u64) -> TileReader {
        TileReader {
            size,
            tiles: Default::default(),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Tiles held.
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    /// Takes the bytes fetched for `tile`: exactly `width` hashes, or the
    /// tile is refused.
    pub fn insert(&mut self, tile: NeedTile, bytes: &[u8]) -> Result<(), MerkleError> {
        if bytes.len() as u64 != tile.width * 32 {
            return Err(MerkleError::TileLength {
                path: tile.path(),
                bytes: bytes.len(),
            });
        }
        let hashes = bytes
            .chunks_exact(32)
            .map(|h| h.try_into().unwrap_or([0; 32]))
            .collect();
        self.tiles.insert((tile.level, tile.index), hashes);
        Ok(())
    }

    /// The tile node (`height`, `index`) lies in, at the width the tree of
    /// `size` leaves gives it.
    fn tile_of(&self, height: u8, index: u64) -> (NeedTile, usize, usize) {
        let level = height / TILE_HEIGHT;
        let below = u32::from(height % TILE_HEIGHT);
        let first = index << below;
        let tile_index = first / TILE_WIDTH;
        let nodes = self.size >> (u32::from(level) * u32::from(TILE_HEIGHT));
        let width = nodes
            .saturating_sub(tile_index * TILE_WIDTH)
            .min(TILE_WIDTH);
        let need = NeedTile {
            level,
            index: tile_index,
            width,
        };
        (need, (first % TILE_WIDTH) as usize, 1usize << below)
    }
}

impl NodeSource for TileReader {
    type Error = NeedTile;
    fn node(&self, height: u8, index: u64) -> Result<Hash, NeedTile> {
        let (need, offset, count) = self.tile_of(height, index);
        let hashes = self
            .tiles
            .get(&(need.level, need.index))
            .and_then(|tile| tile.get(offset..offset + count))
            .ok_or(need)?;
        Ok(Leaves(hashes).whole())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, root, stored_consistency_proof, stored_root};

    /// Distinct leaf hashes.
    fn hashes(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| crate::merkle::leaf_hash(&i.to_be_bytes()))
            .collect()
    }

    #[test]
    fn tile_paths_as_c2sp_spells_them() {
        for (level, index, width, path) in [
            (0, 0, 256, "tile/0/000"),
            (0, 1_234_067, 256, "tile/0/x001/x234/067"),
            (1, 5, 17, "tile/1/005.p/17"),
            (2, 1000, 255, "tile/2/x001/000.p/255"),
            (0, 999, 1, "tile/0/999.p/1"),
        ] {
            assert_eq!(tile_path(level, index, width), path);
            assert_eq!(parse_tile_path(path), Some((level, index, width)), "{path}");
        }
        for bad in [
            "tile/0/0",
            "tile/0/x000/001",
            "tile/0/001.p/256",
            "tile/0/001.p/0",
            "tile/8/000",
            "tile/0/1234",
            "tile/0/001/234",
            "tile/0/001/",
            "tile/entries/000",
            "../tile/0/000",
        ] {
            assert_eq!(parse_tile_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_tiles_of_a_tree() {
        let tiles: Vec<_> = tiles_of(70_000).collect();
        // Level 0: 273 full tiles of leaves and one of 112; level 1: 273
        // nodes of 256 leaves, one full tile and one of 17; level 2: one
        // node of 65,536 leaves.
        assert_eq!(tiles.len(), 274 + 2 + 1);
        assert_eq!(tiles[273], (0, 273, 112));
        assert_eq!(&tiles[274..], &[(1, 0, 256), (1, 1, 17), (2, 0, 1)]);
        assert_eq!(tiles_of(0).count(), 0);
    }

    /// Reads `source` through a [`TileReader`] of a tree of `size`, fetching
    /// each tile it names from `tiles` (the tiles a log would serve).
    fn through_tiles<T>(
        reader: &mut TileReader,
        tiles: &std::collections::HashMap<(u8, u64), Vec<Hash>>,
        mut read: impl FnMut(&TileReader) -> Result<T, NeedTile>,
    ) -> T {
        for _ in 0..64 {
            match read(reader) {
                Ok(value) => return value,
                Err(need) => {
                    let tile = &tiles[&(need.level, need.index)];
                    let bytes: Vec<u8> = tile[..need.width as usize].concat();
                    reader.insert(need, &bytes).unwrap();
                }
            }
        }
        panic!("more than 64 tiles for one proof");
    }

    #[test]
    fn a_reader_of_tiles_gets_the_roots_and_proofs_of_the_tree() {
        let leaves = hashes(70_000);
        // The tiles a log of 70,000 serves: leaves at level 0, roots of
        // 256 leaves at level 1, of 65,536 at level 2.
        let mut tiles: std::collections::HashMap<(u8, u64), Vec<Hash>> = Default::default();
        for (level, chunk) in [(0u8, 1usize), (1, 256), (2, 65_536)] {
            let nodes: Vec<Hash> = leaves.chunks_exact(chunk).map(root).collect();
            for (index, tile) in nodes.chunks(TILE_WIDTH as usize).enumerate() {
                tiles.insert((level, index as u64), tile.to_vec());
            }
        }
        for (old, size) in [
            (1, 1),
            (3, 5),
            (255, 256),
            (256, 257),
            (100, 600),
            (65_000, 70_000),
        ] {
            let tree = &leaves[..size as usize];
            let mut reader = TileReader::new(size);
            let got = through_tiles(&mut reader, &tiles, |r| stored_root(r, size));
            assert_eq!(got, root(tree), "root of {size}");
            let got = through_tiles(&mut reader, &tiles, |r| {
                stored_consistency_proof(r, old, size)
            });
            assert_eq!(
                got,
                Some(consistency_proof(old, tree).unwrap()),
                "{old} to {size}"
            );
            // Few tiles: a path's worth, not the tree.
            assert!(
                reader.len() <= 8,
                "{} tiles for {old} to {size}",
                reader.len()
            );
        }
        // A tile of the wrong length is refused, naming it.
        let mut reader = TileReader::new(10);
        let need = NeedTile {
            level: 0,
            index: 0,
            width: 10,
        };
        assert_eq!(
            reader.insert(need, &[0u8; 9 * 32]),
            Err(MerkleError::TileLength {
                path: "tile/0/000.p/10".into(),
                bytes: 288
            })
        );
    }
}
