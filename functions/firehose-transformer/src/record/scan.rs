//! The validating one-pass scanner behind [`super::Fields::parse`]: the full JSON grammar
//! (strings with their escapes and UTF-8, numbers, literals, nesting up to a depth limit) over
//! one object or array, the top level split into members whose values stay borrowed slices.
//! It notes whether a value holds insignificant whitespace, so compact input is copied back as
//! is. A refusal is a reason and a byte offset, never the content.

use std::borrow::Cow;

use super::{Fields, Raw};
use crate::text::plain_run_end;

/// Where the scanner stopped, and why.
type ScanError = (&'static str, usize);

/// A validating one-pass scanner over one JSON object.
pub(super) struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Whitespace was skipped inside the value being scanned.
    spaced: bool,
}

impl<'a> Scanner<'a> {
    pub(super) fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            spaced: false,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
            self.spaced = true;
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), ScanError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn unexpected(&self, what: &'static str) -> ScanError {
        match self.peek() {
            None => ("unexpected end", self.pos),
            Some(_) => (what, self.pos),
        }
    }

    /// The top-level object, then nothing but whitespace.
    pub(super) fn object(mut self) -> Result<Fields<'a>, ScanError> {
        let mut entries = Vec::with_capacity(16);
        if self.open(b'{', b'}', "expected `{`")? {
            loop {
                let key = self.key()?;
                self.skip_ws();
                entries.push((key, self.raw()?));
                if self.next_or_close(b'}', "expected `,` or `}`")? {
                    break;
                }
            }
        }
        self.end()?;
        Ok(Fields { entries })
    }

    /// The top-level object validated exactly as [`Scanner::object`] does (same refusals), its
    /// members stepped over instead of collected: where the object starts and ends, and
    /// whether it is already written the way [`Fields::write_line`] writes it (no whitespace
    /// inside, no escapes in its top-level keys), so that copying it is writing it.
    pub(super) fn object_span(mut self) -> Result<(usize, usize, bool), ScanError> {
        self.skip_ws();
        let start = self.pos;
        self.spaced = false;
        let mut compact = true;
        if self.open(b'{', b'}', "expected `{`")? {
            loop {
                let key = self.key()?;
                self.skip_ws();
                compact &= !self.spaced && matches!(key, Cow::Borrowed(_));
                compact &= self.raw()?.compact;
                self.spaced = false;
                let done = self.next_or_close(b'}', "expected `,` or `}`")?;
                compact &= !self.spaced;
                if done {
                    break;
                }
            }
        } else {
            compact &= !self.spaced;
        }
        let end = self.pos;
        self.end()?;
        Ok((start, end, compact))
    }

    /// One array, then nothing but whitespace: its elements as raw values.
    pub(super) fn array(mut self) -> Result<Vec<Raw<'a>>, ScanError> {
        let mut items = Vec::new();
        if self.open(b'[', b']', "expected `[`")? {
            loop {
                items.push(self.raw()?);
                if self.next_or_close(b']', "expected `,` or `]`")? {
                    break;
                }
            }
        }
        self.end()?;
        Ok(items)
    }

    /// The top-level container's opening byte; `false` when it closes at once (empty).
    fn open(&mut self, open: u8, close: u8, what: &'static str) -> Result<bool, ScanError> {
        self.skip_ws();
        self.expect(open, what)?;
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(false);
        }
        Ok(true)
    }

    /// One top-level member's value at `pos`, as its raw slice.
    #[inline]
    fn raw(&mut self) -> Result<Raw<'a>, ScanError> {
        let start = self.pos;
        self.spaced = false;
        self.value()?;
        Ok(Raw {
            json: &self.text[start..self.pos],
            compact: !self.spaced,
        })
    }

    /// After a top-level member: `,` (another follows: `false`) or `close` (done: `true`).
    #[inline]
    fn next_or_close(&mut self, close: u8, what: &'static str) -> Result<bool, ScanError> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.skip_ws();
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    /// Nothing but whitespace to the end of the text.
    fn end(&mut self) -> Result<(), ScanError> {
        self.skip_ws();
        if self.pos != self.bytes.len() {
            return Err(("trailing data", self.pos));
        }
        Ok(())
    }

    /// A member name and its colon (whitespace before the value skipped).
    fn key(&mut self) -> Result<Cow<'a, str>, ScanError> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("expected a string key"));
        }
        let start = self.pos;
        let escaped = self.string()?;
        let literal = &self.text[start..self.pos];
        let key = if escaped {
            // Rare: decode the escapes (lone surrogates are refused here).
            Cow::Owned(
                serde_json::from_str::<String>(literal)
                    .map_err(|_| ("invalid escape in a key", start))?,
            )
        } else {
            Cow::Borrowed(&literal[1..literal.len() - 1])
        };
        self.skip_ws();
        self.expect(b':', "expected `:`")?;
        Ok(key)
    }

    /// A string literal starting at `pos`; returns whether it holds escapes.
    fn string(&mut self) -> Result<bool, ScanError> {
        let bytes = self.bytes;
        let mut i = self.pos + 1;
        let mut escaped = false;
        loop {
            i = plain_run_end(bytes, i);
            match bytes.get(i) {
                None => return Err(("unterminated string", self.pos)),
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    match bytes.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let hex = bytes.get(i + 2..i + 6).ok_or(("unterminated string", i))?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(("invalid \\u escape", i));
                            }
                            i += 6;
                        }
                        _ => return Err(("invalid escape", i)),
                    }
                }
                Some(&b) if b < 0x20 => return Err(("control character in a string", i)),
                Some(_) => i += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), ScanError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.unexpected("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.unexpected("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.unexpected("invalid number"));
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), ScanError> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(("invalid literal", self.pos))
        }
    }

    /// One value at `pos` (no leading whitespace). Iterative, so any nesting depth costs a bit
    /// per level rather than a stack frame (serde_json accepts any depth in raw values too).
    fn value(&mut self) -> Result<(), ScanError> {
        // Whether the container open at each level is an object: a bit per level, the first
        // 128 levels without allocating.
        let mut objects: u128 = 0;
        let mut deeper: Vec<bool> = Vec::new();
        let mut open = 0usize;
        loop {
            // Expecting a value.
            match self.peek() {
                Some(c @ (b'{' | b'[')) => {
                    let object = c == b'{';
                    if open < 128 {
                        objects = objects & !(1 << open) | u128::from(object) << open;
                    } else {
                        deeper.truncate(open - 128);
                        deeper.push(object);
                    }
                    open += 1;
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(if object { b'}' } else { b']' }) {
                        self.pos += 1;
                        open -= 1;
                    } else {
                        if object {
                            self.key()?;
                            self.skip_ws();
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return Err(self.unexpected("expected a value")),
            }
            // After a value: close containers until one continues with a comma.
            loop {
                if open == 0 {
                    return Ok(());
                }
                self.skip_ws();
                let level = open - 1;
                let object = if level < 128 {
                    objects & (1 << level) != 0
                } else {
                    deeper.get(level - 128).copied().unwrap_or(false)
                };
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                        if object {
                            self.key()?;
                            self.skip_ws();
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        self.pos += 1;
                        open -= 1;
                    }
                    Some(b']') if !object => {
                        self.pos += 1;
                        open -= 1;
                    }
                    _ => {
                        return Err(self.unexpected(if object {
                            "expected `,` or `}`"
                        } else {
                            "expected `,` or `]`"
                        }));
                    }
                }
            }
        }
    }
}
