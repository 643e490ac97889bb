//! What the property tests of several crates share (the `fuzzing` feature, or this crate's own
//! tests): a strategy that mutates a valid sample, so that generated input reaches past the
//! first bytes a parser checks.

use proptest::prelude::*;

/// Bytes of `sample` with up to five bytes overwritten and the end cut off somewhere.
pub fn mutated(sample: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6);
    (edits, any::<prop::sample::Index>()).prop_map(move |(edits, cut)| {
        let mut bytes = sample.clone();
        for (at, byte) in &edits {
            let at = at.index(bytes.len());
            bytes[at] = *byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        bytes
    })
}
