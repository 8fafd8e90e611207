//! RFC 9162 Merkle tree arithmetic for the audit log, with no I/O.
//!
//! The store keeps the hash of every *perfect* subtree (a leaf, or a full power-of-two block of leaves aligned to its
//! size): those never change once written. Each is keyed by its index in the in-order layout that `ct-merkle` uses
//! (leaf `i` at `2i`, a block of `2^l` leaves starting at `j·2^l` at `j·2^(l+1) + 2^l − 1`). A right-edge node of a
//! tree whose size is not a power of two is computed from the perfect blocks it covers. Which nodes a proof needs comes
//! from `ct-merkle`; verification is `ct-merkle`'s too, so proofs built here are checked by an independent
//! implementation.

use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(entry);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The key of the perfect block of `2^level` leaves starting at leaf `index · 2^level`.
pub fn node_id(level: u32, index: u64) -> u64 {
    (index << (level + 1)) + (1u64 << level) - 1
}

/// The first leaf and the level (`2^level` leaves) of a node of the in-order layout, as in a complete tree.
pub fn span(id: u64) -> (u64, u32) {
    let level = id.trailing_ones();
    ((id >> (level + 1)) << level, level)
}

/// The perfect blocks that make up the first `size` leaves, largest first: the stored form of a frontier.
pub fn frontier_ids(size: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut start = 0;
    for level in (0..64).rev() {
        if size & (1 << level) != 0 {
            ids.push(node_id(level, start >> level));
            start += 1 << level;
        }
    }
    ids
}

/// The running state of a log: the roots of the perfect blocks that make up its first `size` leaves, largest first
/// (one per set bit of `size`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    pub size: u64,
    pub blocks: Vec<Hash>,
}

impl Frontier {
    /// Appends a leaf; answers the perfect blocks it completes (the leaf included) as `(node id, hash)`.
    pub fn push(&mut self, leaf: Hash) -> Vec<(u64, Hash)> {
        let index = self.size;
        let mut completed = vec![(node_id(0, index), leaf)];
        let mut hash = leaf;
        let mut level = 0;
        while (index >> level) & 1 == 1 {
            let left = self.blocks.pop().expect("a set bit has its block");
            hash = node_hash(&left, &hash);
            level += 1;
            completed.push((node_id(level, index >> level), hash));
        }
        self.blocks.push(hash);
        self.size += 1;
        completed
    }

    /// The tree's root hash.
    pub fn root(&self) -> Hash {
        let mut blocks = self.blocks.iter().rev();
        let Some(first) = blocks.next() else { return empty_root() };
        blocks.fold(*first, |right, left| node_hash(left, &right))
    }

    /// The blocks as stored: their hashes concatenated.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.blocks.concat()
    }

    /// The frontier of a `size`-leaf log from its stored blocks; `None` if they do not fit the size.
    pub fn from_bytes(size: u64, bytes: &[u8]) -> Option<Frontier> {
        if bytes.len() != 32 * size.count_ones() as usize {
            return None;
        }
        let blocks = bytes.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
        Some(Frontier { size, blocks })
    }

    /// The frontier of a log from its perfect blocks, read through `lookup` (node id → hash).
    pub fn at(size: u64, lookup: &impl Fn(u64) -> Option<Hash>) -> Option<Frontier> {
        let blocks = frontier_ids(size).into_iter().map(lookup).collect::<Option<_>>()?;
        Some(Frontier { size, blocks })
    }
}

/// The perfect blocks whose hashes give `MTH(leaves[start..end])`, appended to `out`.
pub fn blocks_of(start: u64, end: u64, out: &mut Vec<u64>) {
    let width = end - start;
    if width.is_power_of_two() {
        out.push(node_id(width.trailing_zeros(), start >> width.trailing_zeros()));
    } else {
        let split = width.next_power_of_two() / 2;
        blocks_of(start, start + split, out);
        blocks_of(start + split, end, out);
    }
}

/// `MTH(leaves[start..end])` from the perfect blocks (`None` if one is missing).
pub fn range_hash(start: u64, end: u64, lookup: &impl Fn(u64) -> Option<Hash>) -> Option<Hash> {
    let width = end - start;
    if width.is_power_of_two() {
        let level = width.trailing_zeros();
        lookup(node_id(level, start >> level))
    } else {
        let split = width.next_power_of_two() / 2;
        Some(node_hash(&range_hash(start, start + split, lookup)?, &range_hash(start + split, end, lookup)?))
    }
}

/// The leaves a node of a `size`-leaf tree covers.
fn node_range(id: u64, size: u64) -> (u64, u64) {
    let (start, level) = span(id);
    (start, (start + (1 << level)).min(size))
}

/// The nodes an inclusion proof of leaf `index` in a `size`-leaf tree needs, as leaf ranges.
pub fn inclusion_ranges(size: u64, index: u64) -> Vec<(u64, u64)> {
    ct_merkle::indices_for_inclusion_proof(size, index).into_iter().map(|id| node_range(id, size)).collect()
}

/// The nodes a consistency proof from `old` to `new` leaves needs, as leaf ranges (`0 < old ≤ new`).
pub fn consistency_ranges(old: u64, new: u64) -> Vec<(u64, u64)> {
    ct_merkle::indices_for_consistency_proof(old, new - old).into_iter().map(|id| node_range(id, new)).collect()
}

/// The perfect blocks needed to hash every range.
pub fn blocks_for(ranges: &[(u64, u64)]) -> Vec<u64> {
    let mut out = Vec::new();
    for &(start, end) in ranges {
        blocks_of(start, end, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// A proof: the hashes of the ranges, in order.
pub fn proof(ranges: &[(u64, u64)], lookup: &impl Fn(u64) -> Option<Hash>) -> Option<Vec<Hash>> {
    ranges.iter().map(|&(start, end)| range_hash(start, end, lookup)).collect()
}

/// Whether `entry` is leaf `index` of the `size`-leaf tree with root `root`, by `proof` (checked by `ct-merkle`).
pub fn verify_inclusion(root: &Hash, size: u64, entry: &[u8], index: u64, proof: &[Hash]) -> bool {
    let root = RootHash::<Sha256>::new((*root).into(), size);
    let proof = InclusionProof::<Sha256>::from_bytes(proof.concat());
    root.verify_inclusion(&entry, index, &proof).is_ok()
}

/// Whether the `new`-leaf tree with root `new_root` extends the `old`-leaf tree with root `old_root`, by `proof`
/// (checked by `ct-merkle`; equal sizes need equal roots).
pub fn verify_consistency(old: u64, old_root: &Hash, new: u64, new_root: &Hash, proof: &[Hash]) -> bool {
    if old == 0 {
        return true;
    }
    if old == new {
        return old_root == new_root && proof.is_empty();
    }
    let Ok(proof) = ConsistencyProof::<Sha256>::try_from_bytes(proof.concat()) else { return false };
    let new_root = RootHash::<Sha256>::new((*new_root).into(), new);
    new_root.verify_consistency(&RootHash::new((*old_root).into(), old), &proof).is_ok()
}

/// Lower-case hexadecimal.
pub fn to_hex(hash: &Hash) -> String {
    hanse_core::encode::hex(hash)
}

/// A hash from 64 hexadecimal digits.
pub fn from_hex(text: &str) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ct_merkle::mem_backed_tree::MemoryBackedTree;
    use proptest::prelude::*;

    use super::*;

    /// A log of `n` entries: the entries, the stored blocks, the root after each, and `ct-merkle`'s own tree.
    struct Built {
        entries: Vec<Vec<u8>>,
        nodes: HashMap<u64, Hash>,
        roots: Vec<Hash>,
        reference: MemoryBackedTree<Sha256, Vec<u8>>,
    }

    fn build(n: u64) -> Built {
        let mut frontier = Frontier::default();
        let mut nodes = HashMap::new();
        let mut roots = Vec::new();
        let mut reference = MemoryBackedTree::new();
        let mut entries = Vec::new();
        for i in 0..n {
            let entry = format!("entry {i}").into_bytes();
            nodes.extend(frontier.push(leaf_hash(&entry)));
            roots.push(frontier.root());
            reference.push(entry.clone());
            entries.push(entry);
        }
        Built { entries, nodes, roots, reference }
    }

    #[test]
    fn the_empty_tree_hashes_the_empty_string() {
        assert_eq!(
            to_hex(&Frontier::default().root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(from_hex(&to_hex(&leaf_hash(b"x"))), Some(leaf_hash(b"x")));
        assert_eq!(from_hex("zz"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Roots, inclusion and consistency proofs built from the stored blocks agree with `ct-merkle`'s own tree.
        #[test]
        fn proofs_from_stored_blocks_agree_with_ct_merkle(n in 1u64..300, pick in any::<u64>(), old_pick in any::<u64>()) {
            let Built { entries, nodes, roots, reference } = build(n);
            let lookup = |id| nodes.get(&id).copied();
            let root = roots[n as usize - 1];
            let theirs_root = reference.root();
            prop_assert_eq!(&root[..], &theirs_root.as_bytes()[..]);
            let frontier = Frontier::at(n, &lookup).unwrap();
            prop_assert_eq!(frontier.root(), root);
            prop_assert_eq!(Frontier::from_bytes(n, &frontier.to_bytes()), Some(frontier));

            let index = pick % n;
            let path = proof(&inclusion_ranges(n, index), &lookup).unwrap();
            let theirs = reference.prove_inclusion(index as usize);
            prop_assert_eq!(path.concat(), theirs.as_bytes().to_vec());
            prop_assert!(verify_inclusion(&root, n, &entries[index as usize], index, &path));
            prop_assert!(!verify_inclusion(&root, n, b"another entry", index, &path));

            let old = 1 + old_pick % n;
            let old_root = roots[old as usize - 1];
            let consistency = if old == n { Vec::new() } else { proof(&consistency_ranges(old, n), &lookup).unwrap() };
            prop_assert!(verify_consistency(old, &old_root, n, &root, &consistency));
            if old < n {
                let wrong = leaf_hash(b"not the old root");
                prop_assert!(!verify_consistency(old, &wrong, n, &root, &consistency));
                let needed = blocks_for(&consistency_ranges(old, n));
                prop_assert!(needed.iter().all(|id| nodes.contains_key(id)));
            }
        }
    }
}
