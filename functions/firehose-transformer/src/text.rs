//! Byte-level helpers the scanners share: where the plain run of a JSON string ends (the next
//! quote, backslash or control character), a block of bytes at a time, and UTF-8 validation.

/// Bytes tested together: the compiler turns a block's test into a few vector instructions.
const BLOCK: usize = 32;

/// Whether `b` ends a plain run: `"`, `\` or a control character (below 0x20).
#[inline]
fn ends_run(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// The high bit of every byte of `w` (little-endian) that is `"`, `\` or a control character;
/// exact for the lowest such byte (a borrow may also mark bytes above it, never below).
#[inline]
fn run_end_bits(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let quote = zero(w ^ (ONES * u64::from(b'"')));
    let backslash = zero(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    quote | backslash | control
}

/// The index of the first byte at or after `from` that is `"`, `\` or a control character
/// (`bytes.len()` when there is none).
#[inline]
pub fn plain_run_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    // Most strings in a record are short: their first two words, before any block.
    for _ in 0..2 {
        let Some(word) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) else {
            break;
        };
        let bits = run_end_bits(u64::from_le_bytes(*word));
        if bits != 0 {
            return i + (bits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    // Whole blocks while none holds such a byte (no early exit inside a block: the compiler
    // tests it with vector instructions) ...
    while let Some(block) = bytes.get(i..i + BLOCK) {
        let mut any = false;
        for &b in block {
            any |= (b == b'"') | (b == b'\\') | (b < 0x20);
        }
        if any {
            break;
        }
        i += BLOCK;
    }
    // ... then the byte, eight at a time.
    while let Some(word) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let bits = run_end_bits(u64::from_le_bytes(*word));
        if bits != 0 {
            return i + (bits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if ends_run(b) {
            return i;
        }
        i += 1;
    }
    i
}

/// Whether `s` needs no escaping as a JSON string (no `"`, `\` or control character).
#[inline]
pub fn is_plain(s: &[u8]) -> bool {
    plain_run_end(s, 0) == s.len()
}

/// `bytes` as text, or why it is not UTF-8: the answer of [`std::str::from_utf8`], found with
/// SIMD instructions (several times faster on the 6 MB request and on every record); only text
/// that is not UTF-8 is looked at again by std, for the error and its position.
#[inline]
pub fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(_) => std::str::from_utf8(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn plain_run_end_finds_the_first_special_byte(
            bytes in prop::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), Just(0x1f), Just(0x20), Just(0x7f), Just(0xc3), 0x21u8..0x7f], 0..200),
            from in 0usize..220,
        ) {
            let from = from.min(bytes.len());
            let want = bytes[from..].iter().position(|&b| ends_run(b)).map_or(bytes.len(), |p| from + p);
            prop_assert_eq!(plain_run_end(&bytes, from), want);
        }

        /// The SIMD check answers what std answers, the error's position included: on text of
        /// every length around the vector widths, with bytes that start, continue or break
        /// multi-byte sequences (overlong forms and surrogates included).
        #[test]
        fn utf8_agrees_with_std(
            bytes in prop::collection::vec(prop_oneof![
                4 => 0x20u8..0x7f,
                1 => Just(0xc3u8), 1 => Just(0xa9u8), 1 => Just(0xe2u8), 1 => Just(0x82u8),
                1 => Just(0xacu8), 1 => Just(0xf0u8), 1 => Just(0x9fu8), 1 => Just(0x98u8),
                1 => Just(0xedu8), 1 => Just(0xa0u8), 1 => Just(0xc0u8), 1 => Just(0xffu8),
                1 => any::<u8>(),
            ], 0..300),
            text in ".{0,100}",
            at in any::<prop::sample::Index>(),
        ) {
            prop_assert_eq!(utf8(&bytes), std::str::from_utf8(&bytes));
            // Valid text, then with one byte of it changed.
            let mut valid = text.into_bytes();
            prop_assert_eq!(utf8(&valid), std::str::from_utf8(&valid));
            if !valid.is_empty() {
                let i = at.index(valid.len());
                valid[i] ^= 0x80;
                prop_assert_eq!(utf8(&valid), std::str::from_utf8(&valid));
            }
        }
    }
}
