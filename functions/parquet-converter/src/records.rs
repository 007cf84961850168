//! Cuts the input stream into records before decoding, so each row can be told apart: a bad
//! row is set aside (with its line number and raw text) instead of failing the whole batch.
//!
//! * CSV/TSV: a record ends at a newline outside a quoted field, with the quoting rules of the
//!   CSV decoder itself: a quote opens a quoted field only at the start of a field, `""` inside
//!   one is a quote, and a quote anywhere else is an ordinary character (`5" screen`). Quoted
//!   fields may hold newlines, delimiters and doubled quotes. Blank lines are skipped. The scan
//!   of an incomplete record is kept between calls, so work stays linear in the input however
//!   long a record grows; at the end of the input, a quoted field that never closed is an
//!   error naming the line where its record began, never a row holding the rest of the file.
//! * JSON lines: one record per line; blank lines are skipped.
//! * Concatenated JSON (objects with no separator, as Firehose writes them, or objects spread
//!   over several lines): a record ends where the top-level value closes.
//!
//! A record may not exceed [`MAX_RECORD`] bytes: beyond that the input cannot be resynchronised
//! (an unclosed quote or brace) and the object fails with the line where the record began.

use memchr::{memchr, memchr2};

/// Longest record accepted.
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

/// How records are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// CSV/TSV: newline outside quoted fields; fields end at `delimiter`.
    Csv {
        /// The field delimiter.
        delimiter: u8,
    },
    /// One JSON value per line.
    Lines,
    /// JSON values back to back, possibly spanning lines.
    Concatenated,
}

/// One record: `buf[start..end]` (its newline included, when it has one) starting at `line`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rec {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// 1-based line number where it starts.
    pub line: u64,
}

/// Streaming record splitter.
#[derive(Debug, Clone)]
pub struct Splitter {
    framing: Framing,
    line: u64,
    /// How far the incomplete record at the caller's `from` has been scanned.
    scan: Scan,
    /// Bytes examined so far: each input byte once, whatever the quoting or chunking.
    scanned: u64,
}

/// The splitter met a record it cannot get past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    /// Where the record began.
    pub line: u64,
    /// The input ended inside a quoted field (else: the record passed [`MAX_RECORD`]).
    pub unclosed: bool,
}

/// Where the scan of an incomplete record stands (offsets from the record's start), so a
/// record arriving in many pieces is scanned once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Scan {
    at: usize,
    newlines: u64,
    /// CSV: inside a quoted field.
    quoted: bool,
    /// CSV: a quote inside a quoted field was the last byte seen: the next one tells whether
    /// it closes the field or is the first of a doubled quote.
    quote_pending: bool,
    /// JSON: past the leading whitespace; `Some(true)` inside a value, `Some(false)` in text
    /// that is not one (it runs to the end of its line).
    value: Option<bool>,
    /// JSON: nesting depth, inside a string, after a backslash in one.
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Splitter {
    /// A splitter at line 1.
    pub fn new(framing: Framing) -> Self {
        Splitter {
            framing,
            line: 1,
            scan: Scan::default(),
            scanned: 0,
        }
    }

    /// The same splitter numbering lines from `line` (a range that begins inside the input).
    pub fn at_line(mut self, line: u64) -> Self {
        self.line = line.max(1);
        self
    }

    /// Bytes examined so far (at most the bytes given, plus a few: the work is linear).
    pub fn bytes_scanned(&self) -> u64 {
        self.scanned
    }

    /// Appends to `out` the complete records in `buf[from..]` (at most `max`), and returns
    /// where the first incomplete one starts. With `eof`, the remainder is a record too.
    pub fn split(
        &mut self,
        buf: &[u8],
        mut from: usize,
        eof: bool,
        max: usize,
        out: &mut Vec<Rec>,
    ) -> Result<usize, TooLong> {
        let mut found = 0;
        while found < max && from < buf.len() {
            let b = &buf[from..];
            let before = self.scan.at;
            let end = match self.framing {
                Framing::Csv { delimiter } => csv_end(b, delimiter, &mut self.scan),
                Framing::Lines => match memchr(b'\n', &b[before..]) {
                    Some(i) => {
                        self.scan.newlines = 1;
                        Some(before + i + 1)
                    }
                    None => {
                        self.scan.at = b.len();
                        None
                    }
                },
                Framing::Concatenated => json_end(b, &mut self.scan),
            };
            self.scanned += (end.unwrap_or(self.scan.at).max(before) - before) as u64;
            let newlines = self.scan.newlines;
            if end.is_some() || eof {
                if end.is_none() && self.scan.quoted && !self.scan.quote_pending {
                    return Err(TooLong {
                        line: self.line,
                        unclosed: true,
                    });
                }
                self.scan = Scan::default();
            }
            let end = match end {
                Some(e) => from + e,
                None if eof => buf.len(),
                None if buf.len() - from > MAX_RECORD => {
                    return Err(TooLong {
                        line: self.line,
                        unclosed: false,
                    });
                }
                None => break,
            };
            if !buf[from..end].iter().all(u8::is_ascii_whitespace) {
                out.push(Rec {
                    start: from,
                    end,
                    line: self.line,
                });
                found += 1;
            }
            self.line += newlines;
            from = end;
        }
        Ok(from)
    }
}

/// End of the CSV record at the start of `b` (one past its newline), continuing the scan
/// `s` left off; `None` (with `s` saved) when `b` ends first. Quoting follows the CSV
/// decoder: a quote opens a quoted field only where a field starts.
fn csv_end(b: &[u8], delimiter: u8, s: &mut Scan) -> Option<usize> {
    let mut i = s.at;
    loop {
        if s.quote_pending {
            let Some(&c) = b.get(i) else {
                s.at = i;
                return None;
            };
            s.quote_pending = false;
            if c == b'"' {
                // A doubled quote: still inside the field.
                i += 1;
                continue;
            }
            // The quote closed the field; `c` is read as outside quotes.
            s.quoted = false;
        }
        let Some(k) = memchr2(b'"', b'\n', &b[i..]) else {
            s.at = b.len();
            return None;
        };
        let at = i + k;
        if b[at] == b'\n' {
            s.newlines += 1;
            if !s.quoted {
                return Some(at + 1);
            }
        } else if s.quoted {
            s.quote_pending = true;
        } else if at == 0 || matches!(b[at - 1], b'\r' | b'\n') || b[at - 1] == delimiter {
            s.quoted = true;
        }
        i = at + 1;
    }
}

/// End of the top-level JSON value at the start of `b` (after any whitespace), continuing
/// the scan `s` left off. Text that is not a value runs to the end of its line (a bad record).
fn json_end(b: &[u8], s: &mut Scan) -> Option<usize> {
    let mut i = s.at;
    if s.value.is_none() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            s.newlines += u64::from(b[i] == b'\n');
            i += 1;
        }
        if i == b.len() {
            s.at = i;
            return Some(i).filter(|_| s.newlines > 0);
        }
        s.value = Some(matches!(b[i], b'{' | b'['));
    }
    if s.value == Some(false) {
        return match memchr(b'\n', &b[i..]) {
            Some(k) => {
                s.newlines += 1;
                Some(i + k + 1)
            }
            None => {
                s.at = b.len();
                None
            }
        };
    }
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            s.newlines += 1;
        }
        if s.in_string {
            if s.escaped {
                s.escaped = false;
            } else if c == b'\\' {
                s.escaped = true;
            } else if c == b'"' {
                s.in_string = false;
            }
        } else {
            match c {
                b'"' => s.in_string = true,
                b'{' | b'[' => s.depth += 1,
                b'}' | b']' => {
                    s.depth = s.depth.saturating_sub(1);
                    if s.depth == 0 {
                        // Take the rest of the line's whitespace and its newline with it.
                        let mut end = i + 1;
                        while end < b.len() && matches!(b[end], b' ' | b'\t' | b'\r') {
                            end += 1;
                        }
                        if b.get(end) == Some(&b'\n') {
                            end += 1;
                            s.newlines += 1;
                        }
                        return Some(end);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    s.at = i;
    None
}

/// Chooses the JSON framing from a sample: concatenated when a value spans lines or a line
/// holds more than one value, one per line otherwise.
pub fn json_framing(sample: &[u8]) -> Framing {
    let mut from = 0;
    // Only whole lines: the sample's last line may be cut.
    let whole = match sample.iter().rposition(|b| *b == b'\n') {
        Some(end) => &sample[..=end],
        None => sample,
    };
    while from < whole.len() {
        let Some(end) = json_end(&whole[from..], &mut Scan::default()) else {
            break;
        };
        let rec = &whole[from..from + end];
        let body = rec.trim_ascii();
        if memchr(b'\n', body).is_some()
            || (!body.is_empty() && !rec.ends_with(b"\n") && from + end < whole.len())
        {
            return Framing::Concatenated;
        }
        from += end;
    }
    Framing::Lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: Framing = Framing::Csv { delimiter: b',' };

    fn split_all(framing: Framing, data: &[u8], chunk: usize) -> Vec<(String, u64)> {
        // Feed the data in pieces, as it arrives from S3.
        let mut s = Splitter::new(framing);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut from = 0;
        let mut recs = Vec::new();
        for piece in data.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            from = s
                .split(&buf, from, false, usize::MAX, &mut recs)
                .expect("split");
        }
        s.split(&buf, from, true, usize::MAX, &mut recs)
            .expect("split");
        for r in recs {
            out.push((
                String::from_utf8_lossy(&buf[r.start..r.end]).into_owned(),
                r.line,
            ));
        }
        out
    }

    #[test]
    fn csv_records_respect_quotes_and_count_lines() {
        let data = b"a,b\r\n1,\"x\ny\"\n\n2,\"he said \"\"hi\"\"\"\n3,z";
        for chunk in [1, 2, 5, 100] {
            let recs = split_all(CSV, data, chunk);
            assert_eq!(
                recs,
                vec![
                    ("a,b\r\n".to_owned(), 1),
                    ("1,\"x\ny\"\n".to_owned(), 2),
                    ("2,\"he said \"\"hi\"\"\"\n".to_owned(), 5),
                    ("3,z".to_owned(), 6),
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn json_lines_and_concatenated_values() {
        let lines = b"{\"a\":1}\n\n{\"a\":\"}\\\"{\"}\nnot json\n{\"a\":3}";
        assert_eq!(json_framing(lines), Framing::Lines);
        let recs = split_all(Framing::Lines, lines, 3);
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[2], ("not json\n".to_owned(), 4));
        let concat = b"{\"a\":1}{\"a\":{\"b\":\"}\"}}\n{\n  \"a\": 3\n}\n{\"cut\":";
        assert_eq!(json_framing(concat), Framing::Concatenated);
        for chunk in [1, 4, 1000] {
            // Whether a value's trailing newline comes with it depends on where chunks end.
            let recs: Vec<(String, u64)> = split_all(Framing::Concatenated, concat, chunk)
                .into_iter()
                .map(|(r, l)| (r.trim().to_owned(), l))
                .collect();
            assert_eq!(
                recs,
                vec![
                    ("{\"a\":1}".to_owned(), 1),
                    ("{\"a\":{\"b\":\"}\"}}".to_owned(), 1),
                    ("{\n  \"a\": 3\n}".to_owned(), 2),
                    ("{\"cut\":".to_owned(), 5),
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_record_that_never_ends_is_too_long() {
        let mut s = Splitter::new(CSV);
        let mut buf = b"a\n\"open".to_vec();
        buf.resize(MAX_RECORD + 10, b'x');
        let mut recs = Vec::new();
        assert_eq!(
            s.split(&buf, 0, false, usize::MAX, &mut recs),
            Err(TooLong {
                line: 2,
                unclosed: false
            })
        );
        assert_eq!(recs.len(), 1);
    }

    #[test]
    fn a_stray_quote_is_an_unclosed_record_not_the_rest_of_the_file() {
        let data = b"a,b\n1,\"unterminated\n2,3\n4,5\n";
        for chunk in [1, 3, 100] {
            let mut s = Splitter::new(CSV);
            let mut buf = Vec::new();
            let (mut from, mut recs) = (0, Vec::new());
            for piece in data.chunks(chunk) {
                buf.extend_from_slice(piece);
                from = s
                    .split(&buf, from, false, usize::MAX, &mut recs)
                    .expect("split");
            }
            assert_eq!(
                s.split(&buf, from, true, usize::MAX, &mut recs),
                Err(TooLong {
                    line: 2,
                    unclosed: true
                }),
                "chunk {chunk}"
            );
            assert_eq!(recs.len(), 1);
        }
    }

    #[test]
    fn quotes_open_a_field_only_where_it_starts() {
        // `5" screen` is an ordinary quote; `"a""` + newline + `b"` is one quoted field.
        let data = b"id,v\n1,5\" screen\n2,\"a\"\"\nb\"\n3,\"x\"y\n4,\"\"\n";
        for chunk in [1, 2, 7, 100] {
            let recs = split_all(CSV, data, chunk);
            let lines: Vec<u64> = recs.iter().map(|r| r.1).collect();
            assert_eq!(lines, vec![1, 2, 3, 5, 6], "chunk {chunk}: {recs:?}");
            assert_eq!(recs[2].0, "2,\"a\"\"\nb\"\n");
        }
    }

    #[test]
    fn a_long_record_is_scanned_once() {
        // Fed 1 KiB at a time, a 4 MiB quoted field costs one pass, not one per piece: the
        // scan position is kept (checked through the state, not the clock).
        let mut data = b"a\n\"".to_vec();
        data.resize(4 << 20, b'x');
        let mut s = Splitter::new(CSV);
        let mut buf = Vec::new();
        let mut recs = Vec::new();
        let mut from = 0;
        for piece in data.chunks(1024) {
            buf.extend_from_slice(piece);
            from = s
                .split(&buf, from, false, usize::MAX, &mut recs)
                .expect("split");
            assert_eq!(s.scan.at, buf.len() - from, "rescanned");
        }
        assert!(s.scan.quoted);
        assert!(
            s.bytes_scanned() <= data.len() as u64,
            "{}",
            s.bytes_scanned()
        );
    }

    /// Cases per property: `PROPTEST_CASES` for a longer run.
    fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Splits `data` fed in pieces of `chunk` bytes; the records' text, and the work done.
    fn split_chunked(
        framing: Framing,
        data: &[u8],
        chunk: usize,
    ) -> (Vec<Rec>, Result<(), TooLong>, u64) {
        let mut s = Splitter::new(framing);
        let mut buf = Vec::new();
        let mut recs = Vec::new();
        let mut from = 0;
        for piece in data.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            match s.split(&buf, from, false, usize::MAX, &mut recs) {
                Ok(f) => from = f,
                Err(e) => return (recs, Err(e), s.bytes_scanned()),
            }
        }
        let end = s.split(&buf, from, true, usize::MAX, &mut recs).map(|_| ());
        (recs, end, s.bytes_scanned())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: cases(512),
            rng_seed: proptest::test_runner::RngSeed::Fixed(20261201),
            ..proptest::test_runner::Config::default()
        })]

        /// Any bytes, any framing, any chunking: records are in order, never overlap, hold
        /// every non-blank byte, come out the same however the input arrives, and each byte is
        /// examined once.
        #[test]
        fn the_splitter_accounts_for_every_byte_in_linear_work(
            data in proptest::collection::vec(proptest::sample::select(b"ab,\"\n\r{}[]\\ :".to_vec()), 0..600),
            chunk in 1usize..64,
            which in 0usize..3,
        ) {
            let framing = [CSV, Framing::Lines, Framing::Concatenated][which];
            let (recs, end, work) = split_chunked(framing, &data, chunk);
            let (whole, whole_end, _) = split_chunked(framing, &data, data.len().max(1));
            proptest::prop_assert!(work <= data.len() as u64, "work {} for {} bytes", work, data.len());
            if end.is_ok() && whole_end.is_ok() && framing != Framing::Concatenated {
                proptest::prop_assert_eq!(&recs, &whole);
            }
            proptest::prop_assert_eq!(end.is_ok(), whole_end.is_ok());
            let mut at = 0;
            for r in &recs {
                proptest::prop_assert!(r.start >= at && r.end > r.start && r.end <= data.len());
                proptest::prop_assert!(data[at..r.start].iter().all(u8::is_ascii_whitespace), "bytes dropped before {:?}", r);
                at = r.end;
            }
            if end.is_ok() {
                proptest::prop_assert!(data[at..].iter().all(u8::is_ascii_whitespace), "bytes dropped at the end");
            }
            for w in recs.windows(2) {
                proptest::prop_assert!(w[0].line <= w[1].line);
            }
        }
    }
}
