//! Which accounts owe a `kf_msg_or_event` callback, and the `Token` each
//! callback carries for `sync_msg`. Pure state: time is an argument; the
//! delivery itself (HTTP, crypto, retries) is [`super::push`].
//!
//! Every entry an account's log gets (a customer message, an event, a
//! servicer's message) owes one callback. Up to `max_in_flight` callbacks
//! of an account are out at once; what is owed beyond that is announced by
//! one callback when a place frees (coalesced): a callback says only "read
//! your log", so the last one covers everything logged before it, and a
//! middleware that syncs until `has_more` is 0 on each callback misses
//! nothing.
//!
//! Tokens are stateless: the issue time, a serial number and a keyed hash
//! of both, so that checking one costs no memory whatever the callback
//! rate. A token is valid for 10 minutes (WeCom's rule for `sync_msg`).

use super::errors::{ApiError, code};
use super::state::{State, mix};

/// How long a callback's Token is accepted by `sync_msg` [µs].
pub const SYNC_TOKEN_TTL_US: u64 = 600_000_000;

/// Callbacks out at once, all accounts together (or one account's
/// `callback_max_in_flight`, if more): each holds a connection to the
/// middleware until it is answered or times out. Bounded per account
/// alone, a middleware that stopped answering drew one connection per
/// callback of 330 accounts, every file descriptor the service had, and
/// it stopped answering its API (found by probing).
pub const MAX_CALLBACKS_OUT: u32 = 1024;

/// A callback to deliver now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackDue {
    /// The account (`OpenKfId`).
    pub open_kfid: String,
    /// The `Token` that `sync_msg` accepts for 10 minutes.
    pub token: String,
    /// Log entries this callback announces (more than 1 when coalesced).
    pub covers: u64,
}

/// An account's callback debt.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Owed {
    /// Entries logged and not yet announced.
    pending: u64,
    /// Callbacks out, not yet answered or given up.
    in_flight: u32,
    /// In [`State::owing`].
    listed: bool,
}

impl State {
    /// An entry was logged for account `acct`: it owes a callback.
    pub(super) fn owe_callback(&mut self, acct: u32) {
        if !self.cfg.callbacks {
            return;
        }
        let max = self.cfg.callback_max_in_flight;
        let Some(a) = self.accounts.get_mut(acct) else { return };
        a.owed.pending += 1;
        // an account with every place taken is listed again when one frees
        if !a.owed.listed && a.owed.in_flight < max {
            a.owed.listed = true;
            self.owing.push(acct);
        }
    }

    /// Whether some account owes a callback that may go out now.
    pub fn owes_callbacks(&self) -> bool {
        !self.owing.is_empty() && self.callbacks_out < self.max_callbacks_out()
    }

    fn max_callbacks_out(&self) -> u32 {
        MAX_CALLBACKS_OUT.max(self.cfg.callback_max_in_flight)
    }

    /// Whether no callback is owed or out: every callback taken was
    /// answered or given up on (its retries and injected duplicate
    /// included), so nothing more reaches the callback URL until an entry
    /// is logged. Exact, unlike comparing `sent` with the delivery
    /// counters, which count a callback's end before its duplicate is
    /// posted and its place freed.
    pub fn callbacks_settled(&self) -> bool {
        self.owing.is_empty()
            && self.accounts.iter().all(|(_, a)| a.owed.pending == 0 && a.owed.in_flight == 0)
    }

    /// Log entries no callback has announced yet: owed while the account's
    /// places are taken (a middleware that does not answer) or the service
    /// as a whole has [`MAX_CALLBACKS_OUT`] out. Not in any count of
    /// callbacks sent, so a run that ends with some says so here.
    pub fn callbacks_unannounced(&self) -> u64 {
        self.accounts.iter().map(|(_, a)| a.owed.pending).sum()
    }

    /// The callbacks that may go out now, at most
    /// `Config::callback_max_in_flight` per account at once; each is out
    /// until [`State::callback_done`].
    pub fn take_callbacks(&mut self, now_us: u64, out: &mut Vec<CallbackDue>) {
        let max_in_flight = self.cfg.callback_max_in_flight;
        let max_out = self.max_callbacks_out();
        let owing = std::mem::take(&mut self.owing);
        for (i, &acct) in owing.iter().enumerate() {
            if self.callbacks_out >= max_out {
                // still listed, in turn, for when places free
                self.owing.extend_from_slice(&owing[i..]);
                break;
            }
            let Some(a) = self.accounts.get_mut(acct) else { continue };
            a.owed.listed = false;
            let room = max_in_flight.saturating_sub(a.owed.in_flight).min(max_out - self.callbacks_out);
            if room == 0 || a.owed.pending == 0 {
                continue;
            }
            let n = a.owed.pending.min(u64::from(room));
            let last_covers = a.owed.pending - (n - 1);
            a.owed.in_flight += n as u32;
            self.callbacks_out += n as u32;
            a.owed.pending = 0;
            let open_kfid = a.open_kfid.as_str().to_owned();
            self.counters.callbacks_coalesced += last_covers - 1;
            self.counters.callbacks_sent += n;
            for i in 0..n {
                let token = self.sync_token(now_us);
                let covers = if i + 1 == n { last_covers } else { 1 };
                out.push(CallbackDue { open_kfid: open_kfid.clone(), token, covers });
            }
        }
    }

    /// A callback of `open_kfid` was answered or given up on: its place is
    /// free (an account deleted meanwhile is ignored).
    pub fn callback_done(&mut self, open_kfid: &str) {
        self.callbacks_out = self.callbacks_out.saturating_sub(1);
        let Some(&acct) = self.account_ix.get(open_kfid) else { return };
        let a = self.accounts.get_mut(acct).expect("indexed account");
        a.owed.in_flight = a.owed.in_flight.saturating_sub(1);
        if a.owed.pending > 0 && !a.owed.listed {
            a.owed.listed = true;
            self.owing.push(acct);
        }
    }

    /// A new `Token` issued at `now_us`.
    fn sync_token(&mut self, now_us: u64) -> String {
        let issued_s = now_us / 1_000_000;
        self.token_serial += 1;
        let serial = self.token_serial & 0xffff_ffff_ffff;
        format!("ENC{issued_s:010x}{serial:012x}{:016x}", self.token_mac(issued_s, serial))
    }

    fn token_mac(&self, issued_s: u64, serial: u64) -> u64 {
        mix(mix(self.cfg.seed ^ 0x6b66_7369_6d74_6b6e) ^ issued_s.rotate_left(48) ^ serial)
    }

    /// `sync_msg`'s `token`: empty (allowed, as WeCom allows it with a
    /// stricter rate limit), or a callback's Token issued by this service
    /// less than 10 minutes ago; else 95007.
    pub fn check_sync_token(&self, token: &str, now_us: u64) -> Result<(), ApiError> {
        if token.is_empty() {
            return Ok(());
        }
        let invalid = |why: &str| ApiError::new(code::INVALID_CODE, format!("invalid msg token: {why}"));
        // hex digits only before the fields are cut out by byte ranges: a
        // character of several bytes across a field's edge panicked the
        // request (found by probing: `sync_msg` never answered)
        let hex = token
            .strip_prefix("ENC")
            .filter(|h| h.len() == 38 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| invalid("not issued here"))?;
        let field = |r: std::ops::Range<usize>| u64::from_str_radix(&hex[r], 16).ok();
        let (Some(issued_s), Some(serial), Some(mac)) = (field(0..10), field(10..22), field(22..38)) else {
            return Err(invalid("not issued here"));
        };
        if mac != self.token_mac(issued_s, serial) {
            return Err(invalid("not issued here"));
        }
        if now_us.saturating_sub(issued_s * 1_000_000) >= SYNC_TOKEN_TTL_US {
            return Err(invalid("expired (a callback's Token is valid for 10 minutes)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::model::Content;
    use crate::service::state::Config;

    const T0: u64 = 1_700_000_000_000_000;

    /// A state with callbacks on, one account and a channel; `n` messages.
    fn logged(n: usize) -> (State, String, u32) {
        let mut st = State::new(Config { callbacks: true, callback_max_in_flight: 3, ..Config::default() });
        let kf = st.account_add("presale", "", None, T0).unwrap();
        let id = st.open_channel(None).unwrap();
        let ch = st.channel_of(&id).unwrap();
        for i in 0..n {
            st.customer_message(ch, &format!("c{i}"), &kf, None, Content::text("hi"), T0).unwrap();
        }
        (st, kf, ch)
    }

    #[test]
    fn one_callback_per_entry_until_the_limit_then_one_for_the_rest() {
        let (mut st, kf, _) = logged(10);
        let mut due = Vec::new();
        st.take_callbacks(T0, &mut due);
        assert_eq!(due.iter().map(|d| d.covers).collect::<Vec<_>>(), [1, 1, 8]);
        assert!(due.iter().all(|d| d.open_kfid == kf));
        assert!(!st.owes_callbacks());
        // more logged while all 3 are out: owed, but none may go
        let id = st.open_channel(None).unwrap();
        let ch = st.channel_of(&id).unwrap();
        for i in 0..4 {
            st.customer_message(ch, &format!("d{i}"), &kf, None, Content::text("hi"), T0).unwrap();
        }
        due.clear();
        st.take_callbacks(T0, &mut due);
        assert!(due.is_empty() && !st.owes_callbacks(), "owed, but nothing may go: no wake-up");
        st.callback_done(&kf);
        assert!(st.owes_callbacks());
        st.take_callbacks(T0, &mut due);
        assert_eq!(
            due.iter().map(|d| d.covers).collect::<Vec<_>>(),
            [4],
            "one place, one callback for all 4"
        );
        assert_eq!(st.counters.callbacks_coalesced, 7 + 3);
    }

    #[test]
    fn callbacks_out_at_once_are_bounded_over_all_accounts() {
        let mut st = State::new(Config { callbacks: true, callback_max_in_flight: 3, ..Config::default() });
        let id = st.open_channel(None).unwrap();
        let ch = st.channel_of(&id).unwrap();
        // 400 accounts of 3 places each: more than the bound in all
        let kfs: Vec<String> =
            (0..400).map(|i| st.account_add(&format!("a{i}"), "", None, T0).unwrap()).collect();
        for (i, kf) in kfs.iter().enumerate() {
            for j in 0..3 {
                st.customer_message(ch, &format!("c{i}-{j}"), kf, None, Content::text("hi"), T0).unwrap();
            }
        }
        let mut due = Vec::new();
        st.take_callbacks(T0, &mut due);
        assert_eq!(due.len(), MAX_CALLBACKS_OUT as usize);
        assert!(!st.owes_callbacks(), "owed, but none may go: no wake-up");
        // a place freed is taken by the accounts still waiting, in turn
        let answered = due.remove(0);
        st.callback_done(&answered.open_kfid);
        assert!(st.owes_callbacks());
        let mut more = Vec::new();
        st.take_callbacks(T0, &mut more);
        assert_eq!(more.len(), 1);
        let waiting = |kf: &str| kf != answered.open_kfid && due.iter().all(|d| d.open_kfid != kf);
        assert!(waiting(&more[0].open_kfid), "the place goes to an account not yet called back");
        due.append(&mut more);
        // answered as they come, every account is called back and nothing is left owed
        let mut called: std::collections::HashSet<String> = std::collections::HashSet::new();
        while !due.is_empty() {
            for d in due.drain(..) {
                called.insert(d.open_kfid.clone());
                st.callback_done(&d.open_kfid);
            }
            st.take_callbacks(T0, &mut due);
            assert!(due.len() <= MAX_CALLBACKS_OUT as usize);
        }
        assert_eq!(called.len(), kfs.len());
        assert!(st.callbacks_settled());
    }

    #[test]
    fn without_a_callback_url_nothing_is_owed() {
        let mut st = State::new(Config::default());
        let kf = st.account_add("presale", "", None, T0).unwrap();
        let id = st.open_channel(None).unwrap();
        let ch = st.channel_of(&id).unwrap();
        st.customer_message(ch, "c", &kf, None, Content::text("hi"), T0).unwrap();
        assert!(!st.owes_callbacks());
    }

    #[test]
    fn tokens_are_accepted_for_ten_minutes_and_cannot_be_forged() {
        let (mut st, _, _) = logged(1);
        let mut due = Vec::new();
        st.take_callbacks(T0, &mut due);
        let token = &due[0].token;
        assert!(token.len() <= 128);
        assert_eq!(st.check_sync_token(token, T0), Ok(()));
        assert_eq!(st.check_sync_token("", T0), Ok(()), "no token: allowed");
        assert_eq!(st.check_sync_token(token, T0 + SYNC_TOKEN_TTL_US - 1_000_000), Ok(()));
        let late = st.check_sync_token(token, T0 + SYNC_TOKEN_TTL_US).unwrap_err();
        assert_eq!(late.code, code::INVALID_CODE);
        let mut forged = token.clone();
        let last = if token.ends_with('0') { "1" } else { "0" };
        forged.replace_range(forged.len() - 1.., last);
        assert_eq!(st.check_sync_token(&forged, T0).unwrap_err().code, code::INVALID_CODE);
        // another service (another seed) did not issue it
        let other = State::new(Config { seed: 2, callbacks: true, ..Config::default() });
        assert_eq!(other.check_sync_token(token, T0).unwrap_err().code, code::INVALID_CODE);
    }

    /// A token of the right length in bytes with a character of two bytes
    /// across the edge of its first field (bytes 9..11 after `ENC`) is
    /// refused: it was a panic, and the request went unanswered.
    #[test]
    fn a_token_that_is_not_hex_is_refused_not_a_panic() {
        let (st, _, _) = logged(1);
        let across = format!("ENC{}é{}", "a".repeat(9), "b".repeat(27));
        assert_eq!(across.len(), 3 + 38);
        assert_eq!(st.check_sync_token(&across, T0).unwrap_err().code, code::INVALID_CODE);
    }
}
