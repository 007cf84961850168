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
    /// How far the incomplete CSV record at the caller's `from` has been scanned.
    csv: CsvScan,
}

/// The splitter met a record it cannot get past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    /// Where the record began.
    pub line: u64,
    /// The input ended inside a quoted field (else: the record passed [`MAX_RECORD`]).
    pub unclosed: bool,
}

/// Where the scan of an incomplete CSV record stands (offsets from the record's start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CsvScan {
    at: usize,
    quoted: bool,
    /// A quote inside a quoted field was the last byte seen: the next one tells whether it
    /// closes the field or is the first of a doubled quote.
    quote_pending: bool,
    newlines: u64,
}

impl Splitter {
    /// A splitter at line 1.
    pub fn new(framing: Framing) -> Self {
        Splitter {
            framing,
            line: 1,
            csv: CsvScan::default(),
        }
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
            let (end, newlines) = match self.framing {
                Framing::Csv { delimiter } => {
                    let end = csv_end(&buf[from..], delimiter, &mut self.csv);
                    let newlines = self.csv.newlines;
                    if end.is_some() || eof {
                        if end.is_none() && self.csv.quoted && !self.csv.quote_pending {
                            return Err(TooLong {
                                line: self.line,
                                unclosed: true,
                            });
                        }
                        self.csv = CsvScan::default();
                    }
                    (end, newlines)
                }
                Framing::Lines => match memchr(b'\n', &buf[from..]) {
                    Some(i) => (Some(i + 1), 1),
                    None => (None, 0),
                },
                Framing::Concatenated => json_end(&buf[from..]),
            };
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
fn csv_end(b: &[u8], delimiter: u8, s: &mut CsvScan) -> Option<usize> {
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

/// End of the top-level JSON value at the start of `b` (after any whitespace), and the
/// newlines in it. Text that is not a value runs to the end of its line (a bad record).
fn json_end(b: &[u8]) -> (Option<usize>, u64) {
    let mut newlines = 0;
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_whitespace() {
        newlines += u64::from(b[i] == b'\n');
        i += 1;
    }
    if i == b.len() {
        return (Some(i).filter(|_| newlines > 0), newlines);
    }
    if !matches!(b[i], b'{' | b'[') {
        return match memchr(b'\n', &b[i..]) {
            Some(k) => (Some(i + k + 1), newlines + 1),
            None => (None, newlines),
        };
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            newlines += 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else {
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        // Take the rest of the line's whitespace and its newline with it.
                        let mut end = i + 1;
                        while end < b.len() && matches!(b[end], b' ' | b'\t' | b'\r') {
                            end += 1;
                        }
                        if b.get(end) == Some(&b'\n') {
                            end += 1;
                            newlines += 1;
                        }
                        return (Some(end), newlines);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    (None, newlines)
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
        let Some(end) = json_end(&whole[from..]).0 else {
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
            assert_eq!(s.csv.at, buf.len() - from, "rescanned");
        }
        assert!(s.csv.quoted);
    }
}
