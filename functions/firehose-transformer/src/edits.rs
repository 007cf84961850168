//! Test inputs: a valid text damaged by a few random edits, for the property tests of the
//! request and record scanners.

use proptest::sample::Index;

/// Applies `edits` to `bytes`: each overwrites (kind 0), inserts (1) or removes (2) the byte at
/// its index, or inserts one of `syntax` (any other kind), until `bytes` is empty.
pub(crate) fn apply(bytes: &mut Vec<u8>, edits: Vec<(Index, u8, u8)>, syntax: &[u8]) {
    for (at, byte, kind) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = at.index(bytes.len());
        match kind {
            0 => bytes[i] = byte,
            1 => bytes.insert(i, byte),
            2 => {
                bytes.remove(i);
            }
            _ => bytes.insert(i, syntax[usize::from(byte) % syntax.len()]),
        }
    }
}
