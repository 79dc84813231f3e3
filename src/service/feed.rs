//! Cursor-addressed queues: the account message log that `sync_msg` reads,
//! and the per-reader queues of the simulation ports.
//!
//! Every item gets the next sequence number; a cursor is the sequence
//! number of the next item to read, written as a short opaque string. A
//! feed is bounded twice: by count (`cap`, the oldest item goes) and by age
//! ([`Feed::expire`]). A reader whose cursor points before the oldest item
//! kept is told how many it missed, so losses are counted, never silent.

use std::collections::VecDeque;

/// A bounded, cursor-addressed queue of `T`.
#[derive(Debug)]
pub struct Feed<T> {
    /// `(created_us, item)`, oldest first.
    items: VecDeque<(u64, T)>,
    /// Sequence number of `items[0]`.
    base: u64,
    cap: usize,
}

/// What a read returns.
#[derive(Debug, PartialEq)]
pub struct Read<T> {
    /// `(seq, item)` in order.
    pub items: Vec<(u64, T)>,
    /// The cursor to read from next.
    pub next: u64,
    /// More items are there past `next`.
    pub has_more: bool,
    /// Items the reader's cursor pointed at that were dropped (queue full
    /// or too old) before it read them.
    pub missed: u64,
}

impl<T: Clone> Feed<T> {
    /// An empty feed holding at most `cap` items (at least 1).
    pub fn new(cap: usize) -> Feed<T> {
        Feed { items: VecDeque::new(), base: 0, cap: cap.max(1) }
    }

    /// The sequence number the next pushed item gets.
    pub fn end(&self) -> u64 {
        self.base + self.items.len() as u64
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Append an item; when the feed is full the oldest goes, and is
    /// returned.
    pub fn push(&mut self, now_us: u64, item: T) -> Option<T> {
        let mut dropped = None;
        if self.items.len() >= self.cap {
            dropped = self.items.pop_front().map(|(_, x)| x);
            self.base += 1;
        }
        self.items.push_back((now_us, item));
        dropped
    }

    /// Up to `limit` items from `cursor` on. The caller has checked the
    /// cursor with [`Feed::valid`].
    pub fn read(&self, cursor: u64, limit: usize) -> Read<T> {
        let start = cursor.max(self.base);
        let skip = (start - self.base) as usize;
        let items: Vec<(u64, T)> = self
            .items
            .iter()
            .skip(skip)
            .take(limit)
            .enumerate()
            .map(|(i, (_, item))| (start + i as u64, item.clone()))
            .collect();
        let next = start + items.len() as u64;
        Read { items, next, has_more: next < self.end(), missed: self.base.saturating_sub(cursor) }
    }

    /// Drop everything before `cursor`: the reader has it (consuming feeds).
    pub fn ack(&mut self, cursor: u64) {
        while self.base < cursor && self.items.pop_front().is_some() {
            self.base += 1;
        }
    }

    /// Drop items created before `before_us`.
    pub fn expire(&mut self, before_us: u64) {
        while self.items.front().is_some_and(|(t, _)| *t < before_us) {
            self.items.pop_front();
            self.base += 1;
        }
    }

    /// When item `seq` was pushed, if it is still held.
    pub fn created(&self, seq: u64) -> Option<u64> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.items.get(i).map(|(t, _)| *t)
    }

    /// A cursor is valid if it does not point past the end.
    pub fn valid(&self, cursor: u64) -> bool {
        cursor <= self.end()
    }
}

/// Write a cursor: lowercase hex with a `c` in front (opaque to clients).
pub fn format_cursor(seq: u64) -> String {
    format!("c{seq:x}")
}

/// Read a cursor written by [`format_cursor`]; the empty string is the
/// start. `None` for anything else.
pub fn parse_cursor(text: &str) -> Option<u64> {
    if text.is_empty() {
        return Some(0);
    }
    let hex = text.strip_prefix('c')?;
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(r: &Read<u32>) -> Vec<(u64, u32)> {
        r.items.clone()
    }

    #[test]
    fn reads_in_pages_with_has_more() {
        let mut f = Feed::new(10);
        for i in 0..5 {
            f.push(i, i as u32);
        }
        let r = f.read(0, 3);
        assert_eq!(seqs(&r), [(0, 0), (1, 1), (2, 2)]);
        assert_eq!((r.next, r.has_more, r.missed), (3, true, 0));
        let r = f.read(r.next, 3);
        assert_eq!(seqs(&r), [(3, 3), (4, 4)]);
        assert_eq!((r.next, r.has_more), (5, false));
        let r = f.read(5, 3);
        assert!(r.items.is_empty() && r.next == 5 && !r.has_more);
    }

    #[test]
    fn overflow_and_expiry_are_reported_as_missed() {
        let mut f = Feed::new(3);
        let dropped: Vec<Option<u32>> = (0..5).map(|i| f.push(i * 10, i as u32)).collect();
        assert_eq!(dropped, [None, None, None, Some(0), Some(1)]);
        let r = f.read(0, 10);
        assert_eq!(r.missed, 2, "two items were pushed out before the reader came");
        assert_eq!(seqs(&r), [(2, 2), (3, 3), (4, 4)]);
        f.expire(35);
        assert_eq!(f.read(2, 10).missed, 2);
        assert_eq!(f.read(4, 10).missed, 0);
    }

    #[test]
    fn ack_consumes_and_cursors_past_the_end_are_invalid() {
        let mut f = Feed::new(10);
        for i in 0..4 {
            f.push(0, i as u32);
        }
        f.ack(2);
        assert_eq!(f.len(), 2);
        assert_eq!(seqs(&f.read(0, 10)), [(2, 2), (3, 3)]);
        assert!(f.valid(4) && !f.valid(5));
    }

    #[test]
    fn cursor_text_round_trips_and_rejects_junk() {
        for seq in [0, 1, 255, u64::MAX] {
            assert_eq!(parse_cursor(&format_cursor(seq)), Some(seq));
        }
        assert_eq!(parse_cursor(""), Some(0));
        for bad in ["c", "12", "cxyz", "c-1", "c11111111111111111"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
