//! Cursor-addressed queues: the account message log that `sync_msg` reads,
//! and the per-reader queues of the simulation ports.
//!
//! Every item gets the next sequence number; a cursor is the sequence
//! number of the next item to read, written as a short opaque string that
//! only its feed could have written (see [`Feed::cursor`]). A
//! feed is bounded twice: by count (`cap`, the oldest item goes) and by age
//! ([`Feed::expire`]). A reader whose cursor points before the oldest item
//! kept is told how many it missed, so losses are counted, never silent.
//! A third bound is bytes ([`MAX_FEED_BYTES`], by each item's
//! [`Weigh::weight`]): item limits alone would let a queue of large messages
//! (a `msgmenu` is up to 30 KB) hold gigabytes.

use std::collections::VecDeque;

use sha1::{Digest, Sha1};

/// The most bytes one feed holds (by [`Weigh::weight`]); past it the
/// oldest items go, as past its item cap.
pub const MAX_FEED_BYTES: usize = 64 << 20;

/// About how many bytes of memory an item holds.
pub trait Weigh {
    /// The estimate [bytes]: the same every time it is asked.
    fn weight(&self) -> usize;
}

impl Weigh for u32 {
    fn weight(&self) -> usize {
        4
    }
}

/// A bounded, cursor-addressed queue of `T`.
#[derive(Debug)]
pub struct Feed<T> {
    /// `(created_us, item)`, oldest first.
    items: VecDeque<(u64, T)>,
    /// Sequence number of `items[0]`.
    base: u64,
    /// Everything before it was acknowledged, not lost: a reader that
    /// sends back an older cursor it was given did not miss those.
    acked: u64,
    cap: usize,
    /// The weight of `items`, and its bound.
    bytes: usize,
    max_bytes: usize,
    /// The secret its cursors are checked with.
    key: u128,
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

impl<T: Clone + Weigh> Feed<T> {
    /// An empty feed holding at most `cap` items (at least 1) and
    /// [`MAX_FEED_BYTES`], its cursors checked with `key` (a random
    /// secret: no other feed's, and no client can guess it).
    pub fn new(cap: usize, key: u128) -> Feed<T> {
        Feed::with_budget(cap, MAX_FEED_BYTES, key)
    }

    /// An empty feed holding at most `cap` items and `max_bytes` (the
    /// newest item is always kept, whatever it weighs).
    pub fn with_budget(cap: usize, max_bytes: usize, key: u128) -> Feed<T> {
        Feed { items: VecDeque::new(), base: 0, acked: 0, cap: cap.max(1), bytes: 0, max_bytes, key }
    }

    /// The weight of what it holds [bytes].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn pop_front(&mut self) -> Option<T> {
        let (_, x) = self.items.pop_front()?;
        self.base += 1;
        self.bytes -= x.weight();
        Some(x)
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

    /// Append an item; when the feed is full (items or bytes) the oldest
    /// go, and are returned.
    pub fn push(&mut self, now_us: u64, item: T) -> Vec<T> {
        let w = item.weight();
        let mut dropped = Vec::new();
        while !self.items.is_empty()
            && (self.items.len() >= self.cap || self.bytes + w > self.max_bytes)
            && let Some(x) = self.pop_front()
        {
            dropped.push(x);
        }
        self.bytes += w;
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
        let missed = self.base.saturating_sub(cursor.max(self.acked));
        Read { items, next, has_more: next < self.end(), missed }
    }

    /// Drop everything before `cursor`: the reader has it (consuming feeds).
    pub fn ack(&mut self, cursor: u64) {
        while self.base < cursor && self.pop_front().is_some() {}
        self.acked = self.acked.max(self.base.min(cursor));
    }

    /// Drop items created before `before_us`.
    pub fn expire(&mut self, before_us: u64) {
        while self.items.front().is_some_and(|(t, _)| *t < before_us) {
            self.pop_front();
        }
    }

    /// When item `seq` was pushed, if it is still held.
    pub fn created(&self, seq: u64) -> Option<u64> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.items.get(i).map(|(t, _)| *t)
    }

    /// The cursor a reader is handed for `seq`: `c`, `seq` in hex, `_`
    /// and a check of `seq` under this feed's key, in 16 hex digits. A
    /// reader only ever sends back a cursor it was given (the SDKs keep
    /// `next_cursor`), and the check tells such a cursor from one made up
    /// (`c2` where `c1` then `c3` were given), from another queue's or
    /// another run's, at no cost in memory however many cursors are
    /// handed out.
    pub fn cursor(&self, seq: u64) -> String {
        let mut cursor = String::with_capacity(34);
        cursor.push('c');
        super::state::push_hex(&mut cursor, seq, 1);
        cursor.push('_');
        super::state::push_hex(&mut cursor, self.check(seq), 16);
        cursor
    }

    /// The sequence number of a cursor [`Feed::cursor`] wrote for this
    /// feed; the empty string is the start. `None` for anything else,
    /// including a cursor spelt otherwise (`from_str_radix` alone reads
    /// `c+1`, `c01` and `cA`).
    pub fn seq_of(&self, cursor: &str) -> Option<u64> {
        if cursor.is_empty() {
            return Some(0);
        }
        let (hex, check) = cursor.strip_prefix('c')?.split_once('_')?;
        let written = (1..=16).contains(&hex.len())
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && (hex == "0" || !hex.starts_with('0'));
        if !written || check.len() != 16 {
            return None;
        }
        let seq = u64::from_str_radix(hex, 16).ok()?;
        // the check as written, byte for byte: no other spelling of it;
        // a cursor given is never past the end, a bound that still holds
        // should a key ever be met again (a restart with the same seed)
        (check.as_bytes() == super::state::hex16(self.check(seq)) && seq <= self.end()).then_some(seq)
    }

    /// `seq` checked under the key: the first 8 bytes of SHA-1(key, seq),
    /// which nobody without the key can compute (SHA-1 signs callbacks
    /// already; one block, a fraction of a microsecond a pull).
    fn check(&self, seq: u64) -> u64 {
        let digest =
            Sha1::new().chain_update(self.key.to_le_bytes()).chain_update(seq.to_le_bytes()).finalize();
        let mut first = [0; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(r: &Read<u32>) -> Vec<(u64, u32)> {
        r.items.clone()
    }

    #[test]
    fn reads_in_pages_with_has_more() {
        let mut f = Feed::new(10, 1);
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
        let mut f = Feed::new(3, 1);
        let dropped: Vec<Vec<u32>> = (0..5).map(|i| f.push(i * 10, i as u32)).collect();
        assert_eq!(dropped, [vec![], vec![], vec![], vec![0], vec![1]]);
        let r = f.read(0, 10);
        assert_eq!(r.missed, 2, "two items were pushed out before the reader came");
        assert_eq!(seqs(&r), [(2, 2), (3, 3), (4, 4)]);
        f.expire(35);
        assert_eq!(f.read(2, 10).missed, 2);
        assert_eq!(f.read(4, 10).missed, 0);
    }

    #[test]
    fn ack_consumes_and_cursors_past_the_end_are_invalid() {
        let mut f = Feed::new(10, 1);
        for i in 0..4 {
            f.push(0, i as u32);
        }
        f.ack(2);
        assert_eq!(f.len(), 2);
        assert_eq!(seqs(&f.read(0, 10)), [(2, 2), (3, 3)]);
        assert_eq!(f.seq_of(&f.cursor(4)), Some(4));
        assert_eq!(f.seq_of(&f.cursor(5)), None, "past the end");
    }

    /// A reader that acknowledged up to 3 and then sends back an older
    /// cursor (or the empty one) was told it had missed what it had read.
    #[test]
    fn acknowledged_items_are_not_missed_by_an_older_cursor() {
        let mut f = Feed::new(3, 1);
        for i in 0..3 {
            f.push(i, i as u32);
        }
        f.ack(3);
        assert_eq!(f.read(0, 10).missed, 0, "all three were read");
        assert_eq!(f.read(1, 10).missed, 0);
        for i in 3..7 {
            f.push(i, i as u32);
        }
        // 3 was pushed out by the cap before anyone read it
        assert_eq!(seqs(&f.read(0, 10)), [(4, 4), (5, 5), (6, 6)]);
        assert_eq!(f.read(0, 10).missed, 1);
        assert_eq!(f.read(2, 10).missed, 1);
        assert_eq!(f.read(4, 10).missed, 0);
        f.expire(6);
        assert_eq!(f.read(1, 10).missed, 3, "3, 4 and 5 went unread");
    }

    /// Issue 17, item 9: a feed is bounded in bytes too; what goes is
    /// counted as missed, and the weight follows acks and expiry.
    #[test]
    fn a_byte_budget_pushes_the_oldest_out() {
        #[derive(Clone, Debug, PartialEq)]
        struct Big(usize);
        impl Weigh for Big {
            fn weight(&self) -> usize {
                self.0
            }
        }
        let mut f = Feed::with_budget(100, 1000, 1);
        let dropped: Vec<usize> = (0..4).map(|i| f.push(i, Big(300)).len()).collect();
        assert_eq!(dropped, [0, 0, 0, 1], "the fourth 300-byte item pushed the first out");
        assert_eq!((f.len(), f.bytes()), (3, 900));
        assert_eq!(f.read(0, 10).missed, 1);
        assert_eq!(f.push(10, Big(900)).len(), 3, "room for a big one: all three go");
        assert_eq!(f.bytes(), 900);
        assert_eq!(f.push(11, Big(5000)), [Big(900)], "the newest is kept whatever it weighs");
        assert_eq!((f.len(), f.bytes()), (1, 5000));
        f.ack(f.end());
        assert_eq!((f.len(), f.bytes()), (0, 0));
        f.push(20, Big(10));
        f.expire(21);
        assert_eq!(f.bytes(), 0);
    }

    /// A cursor was any `c` and hex up to the end: `c2` was taken when
    /// the pages had given `c0` and `c3`. A feed takes only what it wrote
    /// itself, in the spelling it wrote it.
    #[test]
    fn a_feed_takes_only_the_cursors_it_wrote() {
        let mut f = Feed::new(10, 0x5eed);
        let mut other = Feed::new(10, 0x5eee);
        for i in 0..5 {
            f.push(0, i as u32);
            other.push(0, i as u32);
        }
        for seq in [0, 1, 3, 5] {
            assert_eq!(f.seq_of(&f.cursor(seq)), Some(seq));
        }
        assert_eq!(f.seq_of(""), Some(0));
        assert_eq!(f.cursor(u64::MAX).len(), 34);
        let c3 = f.cursor(3);
        let check = c3.strip_prefix("c3_").unwrap();
        assert_ne!(check.to_uppercase(), check, "the key gives a check with letters in it");
        let forged = [
            "c2".to_owned(),
            "c3".to_owned(),
            format!("c2_{check}"),
            format!("c4_{check}"),
            format!("c03_{check}"),
            format!("c3_{}", check.to_uppercase()),
            format!("c3_{}", &check[1..]),
            format!("c3_0{check}"),
            format!("{c3} "),
            format!("c+3_{check}"),
            other.cursor(3),
        ];
        for bad in forged.iter().map(String::as_str).chain(["c", "_", "c_", "12", "cxyz_0", "c-1", "c3_"]) {
            assert_eq!(f.seq_of(bad), None, "{bad}");
        }
        assert_eq!(f.seq_of(&f.cursor(6)), None, "past the end: never given");
        f.push(0, 5);
        assert_eq!(f.seq_of(&f.cursor(6)), Some(6));
    }
}
