//! The writer's part buffers: allocated once at the part size, lent to the SDK without a
//! copy, and returned when the last reference to a part's bytes is dropped.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::warn;

use super::{DonePart, S3Writer};
use crate::error::Result;

/// Where the first part's buffer starts growing from (without a size hint).
const FIRST_BUFFER: usize = 64 * 1024;
/// How long to wait, with no part in flight, for a part buffer the HTTP stack still holds
/// before allocating another one (and logging it: the memory bound is then exceeded).
const RELEASE_WAIT: Duration = Duration::from_secs(10);

impl S3Writer {
    /// Gives the part being filled room to grow: the first part's buffer doubles (never past
    /// the part size; with a size hint it is allocated at its final size at once); every later
    /// part takes a whole buffer from the pool.
    pub(super) async fn make_room(&mut self) -> Result<()> {
        if self.buf.is_empty() && (self.next_part > 1 || !self.pool.free.is_empty()) {
            self.buf = self.next_buffer().await?;
            return Ok(());
        }
        let old = self.buf.capacity();
        let want = match self.cfg.size_hint {
            Some(hint) if old == 0 => usize::try_from(hint).unwrap_or(usize::MAX).max(1),
            _ => (old * 2).max(FIRST_BUFFER),
        }
        .min(self.part_size);
        let mut grown = Vec::with_capacity(want);
        grown.extend_from_slice(&self.buf);
        self.buf = grown;
        if old == 0 {
            self.pool.live += 1;
        }
        self.pool.live_bytes = self.pool.live_bytes - old + self.buf.capacity();
        self.note_held();
        Ok(())
    }

    /// Records the most bytes of part buffers allocated at once.
    pub(super) fn note_held(&mut self) {
        self.peak_held = self.peak_held.max(self.pool.live_bytes);
    }

    /// A buffer of the current part size: a returned one, a new one while the budget has room
    /// for it, or else the next one to come back (a part finishing meanwhile reports errors).
    async fn next_buffer(&mut self) -> Result<Vec<u8>> {
        let mut waited_out = false;
        loop {
            while let Ok(b) = self.pool.rx.try_recv() {
                self.pool.free.push(b);
            }
            // Buffers cut for a smaller part size (before it grew) are let go.
            let part_size = self.part_size;
            let (fit, small): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pool.free)
                .into_iter()
                .partition(|b| b.capacity() >= part_size);
            for b in small {
                self.pool.live -= 1;
                self.pool.live_bytes -= b.capacity();
            }
            self.pool.free = fit;
            if let Some(mut b) = self.pool.free.pop() {
                b.clear();
                return Ok(b);
            }
            // As many whole part buffers as the budget holds (at least one).
            let slots = (self.budget / part_size).max(1);
            if self.pool.live < slots || waited_out {
                self.pool.live += 1;
                self.pool.live_bytes += part_size;
                self.note_held();
                return Ok(Vec::with_capacity(part_size));
            }
            if self.in_flight.is_empty() {
                // Every upload call returned, yet a body is still referenced (a connection
                // finishing its write): it is released shortly.
                match tokio::time::timeout(RELEASE_WAIT, self.pool.rx.recv()).await {
                    Ok(Some(b)) => self.pool.free.push(b),
                    Ok(None) | Err(_) => {
                        warn!(bucket = %self.bucket, key = %self.key, wait_s = RELEASE_WAIT.as_secs(),
                            "no part buffer was released after its upload; allocating another");
                        waited_out = true;
                    }
                }
                continue;
            }
            let event = tokio::select! {
                b = self.pool.rx.recv() => Released::Buffer(b),
                res = self.in_flight.join_next() => Released::Part(res),
            };
            match event {
                Released::Buffer(Some(b)) => self.pool.free.push(b),
                Released::Buffer(None) => waited_out = true,
                Released::Part(Some(res)) => self.record(res)?,
                Released::Part(None) => {}
            }
        }
    }
}

/// The writer's part buffers. Each part's bytes are a [`Bytes`] whose owner sends its buffer
/// back here when the last reference goes, wherever that happens (a connection task of the
/// HTTP client, a retry's request copy), so a buffer is reused only once nothing reads it.
#[derive(Debug)]
pub(super) struct Pool {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Returned buffers, ready for the next part.
    free: Vec<Vec<u8>>,
    /// Buffers allocated and not let go (free, being filled, or in a part), and their bytes.
    live: usize,
    live_bytes: usize,
}

impl Pool {
    pub(super) fn new() -> Pool {
        let (tx, rx) = mpsc::unbounded_channel();
        Pool {
            tx,
            rx,
            free: Vec::new(),
            live: 0,
            live_bytes: 0,
        }
    }

    /// The filled buffer as an immutable part that returns the buffer when released.
    pub(super) fn part(&self, data: Vec<u8>) -> Bytes {
        if data.capacity() == 0 {
            return Bytes::new();
        }
        Bytes::from_owner(PartBuffer {
            data,
            home: self.tx.clone(),
        })
    }
}

/// Owner of a part's bytes: gives the buffer back to its writer's pool when dropped.
struct PartBuffer {
    data: Vec<u8>,
    home: mpsc::UnboundedSender<Vec<u8>>,
}

impl AsRef<[u8]> for PartBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for PartBuffer {
    fn drop(&mut self) {
        // A writer that is gone no longer wants it: the buffer is freed with the message.
        let _ = self.home.send(std::mem::take(&mut self.data));
    }
}

/// What [`S3Writer::next_buffer`] woke up for.
enum Released {
    Buffer(Option<Vec<u8>>),
    Part(Option<std::result::Result<Result<DonePart>, tokio::task::JoinError>>),
}
