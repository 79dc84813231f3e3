//! What a middleware did, as WeCom sees it: the figures of the summary's
//! `middleware` section that come from the state (the API calls themselves
//! are counted at the HTTP edge, the callbacks where they are delivered).
//!
//! Only sessions of API-managed accounts are watched: they are the ones a
//! middleware answers and hands over. Per session, a [`ConvAudit`] keeps what
//! the middleware owes (customer messages it has not acted on, and since
//! when); [`Audit`] folds every session's outcome. Time is an argument
//! (the service's clock, wall µs), as everywhere in the state.
//!
//! Definitions (also in `docs/middleware.md`):
//! - a customer message in state 0 or 1 is *acted on* by the middleware's
//!   next message to that customer (`send_msg`, `send_msg_on_event`) or by a
//!   `service_state/trans` out of 0/1; one still owed when the session ends
//!   is *unacted*;
//! - *bot reply* is the oldest owed message → the message that acts on it;
//! - *routed* is session start → the first trans to 2 or 3, *hand-off*
//!   session start → state 3 (from the pool or directly);
//! - *sync lag* is a log entry written → first returned by `sync_msg`
//!   (per log: a middleware reading both the corp-wide and an account's log
//!   sees each entry twice, and is measured on both);
//! - a message *sent twice* has the content of the middleware's previous
//!   message to the session, with no customer message in between.

use std::hash::{Hash, Hasher};

use super::model::Content;
use crate::metrics::Hist;

/// What the middleware owes one session (kept across its sessions, reset
/// when a new one starts).
#[derive(Debug, Clone, Default)]
pub(super) struct ConvAudit {
    /// When the session started (→ 0) [µs].
    started_us: u64,
    /// Customer messages not acted on yet.
    owed: u32,
    /// When the oldest of them came.
    owed_since: Option<u64>,
    /// The middleware has handed this session out of 0/1.
    routed: bool,
    /// A servicer held this session.
    handed: bool,
    /// Hash of the middleware's last message to the session, if no customer
    /// message came since.
    last_sent: Option<u64>,
}

/// The middleware's figures so far.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    /// Log entries first returned by `sync_msg`.
    pub synced: u64,
    /// Log entries `sync_msg` returned again (read from a cursor before
    /// what it had read, or from the start).
    pub resynced: u64,
    /// Written → first returned [µs].
    pub sync_lag: Hist,
    /// Customer messages in watched sessions in states 0/1.
    pub customer_messages: u64,
    /// Oldest owed message → the message acting on it [µs].
    pub bot_reply: Hist,
    /// Session start → first trans to 2 or 3 [µs].
    pub routed: Hist,
    /// Session start → state 3 [µs].
    pub handoff: Hist,
    /// Owed messages of sessions that ended.
    pub unacted: u64,
    /// Owed messages of sessions cut short by their channel closing (the
    /// end of a run): the middleware had no chance to act on them.
    pub owed_at_close: u64,
    /// Messages sent to a session that had ended.
    pub replies_after_end: u64,
    /// Messages sent twice.
    pub sent_twice: u64,
    /// `sync_msg` calls without a callback's Token.
    pub sync_without_token: u64,
}

impl Audit {
    /// A session started.
    pub(super) fn started(&mut self, c: &mut ConvAudit, now_us: u64) {
        *c = ConvAudit { started_us: now_us, ..ConvAudit::default() };
    }

    /// A customer message came; `held` is whether the middleware holds the
    /// session (state 0 or 1).
    pub(super) fn customer_message(&mut self, c: &mut ConvAudit, held: bool, now_us: u64) {
        c.last_sent = None;
        if held {
            self.customer_messages += 1;
            c.owed += 1;
            c.owed_since.get_or_insert(now_us);
        }
    }

    /// The middleware sent `content` to the session.
    pub(super) fn sent(&mut self, c: &mut ConvAudit, content: &Content, now_us: u64) {
        if let Some(since) = c.owed_since.take() {
            self.bot_reply.record(now_us.saturating_sub(since));
        }
        c.owed = 0;
        let h = fingerprint(content);
        self.sent_twice += u64::from(c.last_sent == Some(h));
        c.last_sent = Some(h);
    }

    /// The middleware moved the session from 0/1 to `to` (2, 3 or 4; 0→1
    /// does not act on anything).
    pub(super) fn moved(&mut self, c: &mut ConvAudit, to: u8, now_us: u64) {
        c.owed = 0;
        c.owed_since = None;
        if to < 4 && !std::mem::replace(&mut c.routed, true) {
            self.routed.record(now_us.saturating_sub(c.started_us));
        }
    }

    /// A servicer took the session.
    pub(super) fn assigned(&mut self, c: &mut ConvAudit, now_us: u64) {
        if !std::mem::replace(&mut c.handed, true) {
            self.handoff.record(now_us.saturating_sub(c.started_us));
        }
    }

    /// The session ended: what was owed stays unacted.
    pub(super) fn ended(&mut self, c: &mut ConvAudit) {
        self.unacted += u64::from(std::mem::take(&mut c.owed));
        c.owed_since = None;
    }

    /// The session's channel closes (the driver's run is over): what is
    /// owed is not the middleware's fault.
    pub(super) fn closed(&mut self, c: &mut ConvAudit) {
        self.owed_at_close += u64::from(std::mem::take(&mut c.owed));
        c.owed_since = None;
    }

    /// The middleware tried to send to a session that had ended.
    pub(super) fn after_end(&mut self) {
        self.replies_after_end += 1;
    }

    /// `sync_msg` returned an entry written at `written_us` for the first
    /// time.
    pub(super) fn synced(&mut self, written_us: u64, now_us: u64) {
        self.synced += 1;
        self.sync_lag.record(now_us.saturating_sub(written_us));
    }
}

/// A content's identity for "sent twice" (the debug form covers every
/// field; the rare collision of 64-bit hashes is not worth a copy).
fn fingerprint(content: &Content) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{content:?}").hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One session: two messages owed from t=10, a bot reply at 50 acts on
    /// both (one sample, 40), the same reply again is sent twice, a new
    /// message is owed from 70 and the hand-off at 100 acts on it; the
    /// servicer takes it at 130.
    #[test]
    fn a_session_owes_until_the_middleware_acts() {
        let (mut w, mut c) = (Audit::default(), ConvAudit::default());
        w.started(&mut c, 0);
        w.customer_message(&mut c, true, 10);
        w.customer_message(&mut c, true, 20);
        w.sent(&mut c, &Content::text("hi"), 50);
        w.sent(&mut c, &Content::text("hi"), 55);
        w.customer_message(&mut c, true, 70);
        w.sent(&mut c, &Content::text("hi"), 80);
        w.customer_message(&mut c, true, 90);
        w.moved(&mut c, 2, 100);
        w.assigned(&mut c, 130);
        w.customer_message(&mut c, false, 140);
        w.ended(&mut c);
        assert_eq!(w.customer_messages, 4);
        assert_eq!(w.bot_reply.count(), 2);
        assert_eq!(w.bot_reply.histogram().max(), 40);
        assert_eq!(
            w.sent_twice, 1,
            "the second \"hi\" before any customer message; the third came after one"
        );
        assert_eq!((w.routed.count(), w.routed.histogram().max()), (1, 100));
        assert_eq!((w.handoff.count(), w.handoff.histogram().max()), (1, 130));
        assert_eq!(w.unacted, 0);
    }

    /// A session nobody acts on: its messages are unacted when it ends, and
    /// a later session starts owing nothing.
    #[test]
    fn what_is_owed_at_the_end_is_unacted() {
        let (mut w, mut c) = (Audit::default(), ConvAudit::default());
        w.started(&mut c, 0);
        w.customer_message(&mut c, true, 1);
        w.customer_message(&mut c, true, 2);
        w.customer_message(&mut c, true, 4);
        w.ended(&mut c);
        w.ended(&mut c);
        assert_eq!(w.unacted, 3, "counted once");
        w.started(&mut c, 10);
        w.customer_message(&mut c, true, 11);
        w.moved(&mut c, 4, 12);
        w.ended(&mut c);
        assert_eq!(w.unacted, 3, "ending the session through the API acts on it");
        assert_eq!(w.routed.count(), 0, "an end is not a hand-off");
    }
}
