//! The request read without a general JSON parser, for the shape Firehose sends: one object of
//! the known members, `records` an array of objects with a `recordId`, `data`, an integer
//! `approximateArrivalTimestamp` and, from a Kinesis stream, a `kinesisRecordMetadata` object.
//! Strings are borrowed from the request, found a block of bytes at a time.
//!
//! It reads only what it is sure of: at anything else (an escape in a string, an unknown or
//! repeated member, a fractional or negative number, a value of another type, any syntax
//! error) it gives up and the serde reader ([`super::EventRef::parse`]) reads the request from
//! the start, so every event reads the same either way and every refusal has the same reason.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::{EventRef, RecordRef};
use crate::text::plain_run_end;

/// The event, or `None` when the serde reader must decide.
pub(super) fn parse(body: &[u8]) -> Option<EventRef<'_>> {
    let text = crate::text::utf8(body).ok()?;
    let mut r = Reader {
        text,
        bytes: body,
        pos: 0,
    };
    let event = r.event()?;
    r.ws();
    (r.pos == body.len()).then_some(event)
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// `byte` after optional whitespace.
    #[inline]
    fn eat(&mut self, byte: u8) -> Option<()> {
        self.ws();
        (self.peek() == Some(byte)).then(|| self.pos += 1)
    }

    /// A string without escapes (whitespace before it skipped): its contents.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = plain_run_end(self.bytes, start);
        if self.bytes.get(end) != Some(&b'"') {
            return None;
        }
        self.pos = end + 1;
        self.text.get(start..end)
    }

    /// `null` (whitespace before it skipped).
    fn null(&mut self) -> Option<()> {
        self.ws();
        self.bytes[self.pos..]
            .starts_with(b"null")
            .then(|| self.pos += 4)
    }

    /// A string or `null`.
    fn text_or_null(&mut self) -> Option<Option<&'a str>> {
        self.ws();
        if self.peek() == Some(b'n') {
            self.null().map(|()| None)
        } else {
            self.string().map(Some)
        }
    }

    /// The members of an object, `{` already read: `member` reads each one's value after its
    /// colon; `false` from it gives up.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            member(self, key)?;
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn event(&mut self) -> Option<EventRef<'a>> {
        self.eat(b'{')?;
        let mut event = EventRef::default();
        let mut records = None;
        self.members(|r, key| {
            let slot = match key {
                "records" if records.is_none() => {
                    records = Some(r.records()?);
                    return Some(());
                }
                "invocationId" => 0,
                "deliveryStreamArn" => 1,
                "sourceKinesisStreamArn" => 2,
                "region" => 3,
                _ => return None,
            };
            // Repeated, the last one counts (as serde has it).
            let value = r.text_or_null()?.map(Cow::Borrowed);
            *[
                &mut event.invocation_id,
                &mut event.delivery_stream_arn,
                &mut event.source_kinesis_stream_arn,
                &mut event.region,
            ][slot] = value;
            Some(())
        })?;
        event.records = records?;
        Some(event)
    }

    fn records(&mut self) -> Option<Vec<RecordRef<'a>>> {
        self.eat(b'[')?;
        // Room for a request of small records: growing the list would copy it each time.
        let mut records = Vec::with_capacity((self.bytes.len() - self.pos) / 160 + 1);
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Some(records);
        }
        loop {
            records.push(self.record()?);
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(records);
                }
                _ => return None,
            }
        }
    }

    fn record(&mut self) -> Option<RecordRef<'a>> {
        self.eat(b'{')?;
        let mut record_id = None;
        let mut arrival = None;
        let mut data = None;
        let mut metadata = None;
        self.members(|r, key| {
            match key {
                "recordId" if record_id.is_none() => record_id = Some(r.string()?),
                "data" if data.is_none() => data = Some(r.text_or_null()?.unwrap_or_default()),
                "approximateArrivalTimestamp" if arrival.is_none() => {
                    arrival = Some(r.timestamp()?);
                }
                "kinesisRecordMetadata" if metadata.is_none() => {
                    metadata = Some(r.raw_object_or_null()?);
                }
                _ => return None,
            }
            Some(())
        })?;
        Some(RecordRef {
            record_id: Cow::Borrowed(record_id?),
            approximate_arrival_timestamp: arrival.flatten(),
            data: Cow::Borrowed(data.unwrap_or_default()),
            kinesis_record_metadata: metadata.flatten(),
        })
    }

    /// Epoch milliseconds: a non-negative integer, or one with a fraction of zeros only (how
    /// an `f64` is written: `1709787967000.0`), that is exact as an `f64`, so serde reads the
    /// same value whichever way it parses numbers; or `null`.
    fn timestamp(&mut self) -> Option<Option<f64>> {
        /// Integers up to this are exact as `f64`.
        const EXACT: u64 = 1 << 53;
        self.ws();
        if self.peek() == Some(b'n') {
            return self.null().map(|()| None);
        }
        let start = self.pos;
        let mut n: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.pos += 1;
        }
        let digits = self.pos - start;
        if digits == 0 || (digits > 1 && self.bytes[start] == b'0') || n >= EXACT {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            // serde reads `n` followed by the zeros as one significand, then divides.
            let mut significand = n;
            let mut zeros = 0;
            while self.peek() == Some(b'0') {
                significand = significand.checked_mul(10).filter(|&s| s < EXACT)?;
                zeros += 1;
                self.pos += 1;
            }
            if zeros == 0 || zeros > 22 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'0'..=b'9' | b'e' | b'E')) {
            return None;
        }
        Some(Some(n as f64))
    }

    /// An object kept as its JSON text (read by serde_json, as the serde reader reads it), or
    /// `null`.
    fn raw_object_or_null(&mut self) -> Option<Option<Box<RawValue>>> {
        self.ws();
        match self.peek()? {
            b'n' => self.null().map(|()| None),
            b'{' => {
                let rest = self.text.get(self.pos..)?;
                let mut values =
                    serde_json::Deserializer::from_str(rest).into_iter::<Box<RawValue>>();
                let raw = values.next()?.ok()?;
                self.pos += values.byte_offset();
                Some(Some(raw))
            }
            _ => None,
        }
    }
}
