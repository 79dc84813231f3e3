//! The enterprise API's session operations (`service_state/get|trans`,
//! `sync_msg`, `send_msg`, `send_msg_on_event`), the removals that touch
//! sessions (`account/del`, `servicer/del`, rule changes), and the sweep
//! that keeps memory bounded (idle sessions end, old entries go).
//!
//! `service_state/trans` allows WeCom's documented transitions 0→1, 0→2,
//! 0→3, 1→2, 1→3, 2→3, 3→3 (another servicer) and 3→4, plus 0/1/2→4
//! (kfsim's assumption: WeCom's full matrix is not public). Anything else is
//! 95016.

use std::sync::Arc;

use super::errors::{ApiError, code, ident};
use super::model::{Change, Content, Item, Msg, Name, Origin, SyncEntry};
use super::session::{invalid_cursor, secs};
use super::state::{CodeKind, HOUR_US, Rule, State, at};
use crate::reception::{Routed, policy_for};

/// A page of an account's log.
#[derive(Debug)]
pub struct SyncPage {
    /// Entries in order.
    pub msg_list: Vec<SyncEntry>,
    /// Cursor of the next call.
    pub next_cursor: String,
    /// More entries are there.
    pub has_more: bool,
}

fn allowed(from: u8, to: u8) -> bool {
    matches!((from, to), (0, 1) | (0, 2) | (0, 3) | (1, 2) | (1, 3) | (2, 3) | (3, 3) | (0..=3, 4))
}

/// How cursors of `sync_msg` without `open_kfid` begin, so that one is
/// never taken for an account's.
const CORP_CURSOR: &str = "all";

/// How long a resent `client_msgid` is recognised (a driver resends
/// within seconds; remembering longer would cost memory at high rates).
const RESEND_WINDOW_US: u64 = 60_000_000;

impl State {
    /// `service_state/get`: the state and, in state 3, the servicer. A
    /// customer who never had a session with the account is in state 4.
    pub fn service_state_get(
        &self,
        open_kfid: &str,
        external_userid: &str,
    ) -> Result<(u8, Option<String>), ApiError> {
        let (_, conv) = self.conv_of(open_kfid, external_userid)?;
        Ok(match conv {
            Some(c) => {
                (self.convs.get(c).expect("conv").state, self.servicer_name(c).map(|n| n.as_str().into()))
            }
            None => (4, None),
        })
    }

    /// `service_state/trans`: change the state; returns `msg_code` when
    /// the session enters 2 or 3 for the first time this session, or 4.
    pub fn service_state_trans(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        to: u8,
        servicer_userid: Option<&str>,
        now_us: u64,
    ) -> Result<Option<String>, ApiError> {
        let (_, conv) = self.conv_of(open_kfid, external_userid)?;
        let from = conv.map_or(4, |c| self.convs.get(c).expect("conv").state);
        let bad = || {
            ApiError::new(code::BAD_TRANSITION, format!("不允许这种状态转换: service_state {from} → {to}"))
        };
        if to > 4 || !allowed(from, to) {
            return Err(bad());
        }
        let conv = conv.ok_or_else(bad)?;
        let r = self.trans(conv, to, servicer_userid, now_us);
        let c = at!(self.convs, conv);
        if r.is_ok() && from < 2 && to >= 2 && at!(self.accounts, c.account).rule.api_managed {
            self.audit.moved(&mut c.audit, to, now_us);
        }
        r
    }

    fn trans(
        &mut self,
        conv: u32,
        to: u8,
        servicer_userid: Option<&str>,
        now_us: u64,
    ) -> Result<Option<String>, ApiError> {
        match to {
            1 => {
                self.set_state(conv, 1);
                Ok(None)
            }
            2 => self.trans_to_pool(conv, now_us),
            3 => {
                let userid = servicer_userid
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| ApiError::missing("servicer_userid"))?;
                self.trans_to_servicer(conv, userid, now_us)
            }
            _ => {
                self.end(conv, "api", now_us);
                Ok(Some(self.issue_code(conv, CodeKind::End, now_us)))
            }
        }
    }

    fn trans_to_pool(&mut self, conv: u32, now_us: u64) -> Result<Option<String>, ApiError> {
        match self.arrive(conv, now_us) {
            Routed::Assigned { agent, .. } => {
                self.assigned(conv, agent as u32, Change::Assigned, None, now_us);
                Ok(self.first_code(conv, CodeKind::Assign, now_us))
            }
            Routed::Queued(_) => {
                self.note_customer(conv, Change::Queued, None, None, now_us);
                Ok(self.first_code(conv, CodeKind::Queue, now_us))
            }
            Routed::Rejected => Err(ApiError::new(code::LIMIT, "the waiting pool (待接入池) is full")),
        }
    }

    fn trans_to_servicer(
        &mut self,
        conv: u32,
        userid: &str,
        now_us: u64,
    ) -> Result<Option<String>, ApiError> {
        let slot = self.member_slot(conv, userid)?;
        let c = at!(self.convs, conv);
        let (acct, state) = (c.account, c.state);
        if state == 3 {
            self.transfer(conv, Some(slot), now_us)?;
            return Ok(self.first_code(conv, CodeKind::Assign, now_us));
        }
        if !at!(self.accounts, acct).router.assign_to(slot as usize) {
            return Err(ApiError::new(
                code::NOT_SERVICER,
                format!("{userid} is not receiving (停止接待/暂时挂起) or is at its 接待上限"),
            ));
        }
        if let Some(t) = at!(self.convs, conv).ticket.take() {
            at!(self.accounts, acct).router.abandon(t);
        }
        self.assigned(conv, slot, Change::Assigned, None, now_us);
        Ok(self.first_code(conv, CodeKind::Assign, now_us))
    }

    /// `sync_msg`: up to `limit` entries of the account's log from
    /// `cursor` (the empty cursor is the oldest kept, within 3 days).
    /// Without `open_kfid` (the older documented form, and the only one
    /// wechatpy 2.0 has), the entries of every account, in the order they
    /// were logged, with cursors of their own (`all…`).
    pub fn sync_msg(
        &mut self,
        open_kfid: &str,
        cursor: &str,
        limit: usize,
        now_us: u64,
    ) -> Result<SyncPage, ApiError> {
        let (log, prefix, upto) = if open_kfid.is_empty() {
            (&self.corp_log, CORP_CURSOR, &mut self.corp_synced_upto)
        } else {
            let acct = self.account_of(open_kfid)?;
            let a = self.accounts.get_mut(acct).expect("account");
            (&a.log, "", &mut a.synced_upto)
        };
        // "" is the start in both forms; otherwise the form must match
        let own = match cursor {
            "" => Some(""),
            c if prefix.is_empty() => (!c.starts_with(CORP_CURSOR)).then_some(c),
            c => c.strip_prefix(prefix).filter(|rest| !rest.is_empty()),
        };
        let seq = own.and_then(|c| log.seq_of(c)).ok_or_else(invalid_cursor)?;
        let r = log.read(seq, limit);
        // the middleware's sync lag: each entry the first time it is returned
        for &(s, _) in &r.items {
            if s < *upto {
                self.audit.resynced += 1;
            } else if let Some(written) = log.created(s) {
                self.audit.synced(written, now_us);
            }
        }
        *upto = (*upto).max(r.next);
        Ok(SyncPage {
            msg_list: r.items.into_iter().map(|(_, e)| e).collect(),
            next_cursor: format!("{prefix}{}", log.cursor(r.next)),
            has_more: r.has_more,
        })
    }

    /// `send_msg`: only in states 0 and 1 (95018), at most 5 messages
    /// within 48 h of the customer's last message (95001). A session in 0
    /// goes to 1. `msgid`, when given, must be new within the account.
    pub fn send_msg(
        &mut self,
        touser: &str,
        open_kfid: &str,
        msgid: Option<&str>,
        content: Content,
        now_us: u64,
    ) -> Result<Name, ApiError> {
        let (acct, conv) = self.conv_of(open_kfid, touser)?;
        let conv =
            conv.ok_or_else(|| ApiError::new(code::SESSION_STATE, "send msg session status invalid"))?;
        let c = at!(self.convs, conv);
        if c.state == 4 && c.session_no > 0 {
            self.audit.after_end();
        }
        if c.state > 1 {
            return Err(ApiError::new(
                code::SESSION_STATE,
                format!("send msg session status invalid: service_state is {}", c.state),
            ));
        }
        let in_window = c.last_customer_us.is_some_and(|t| now_us.saturating_sub(t) <= 48 * HOUR_US);
        if !in_window || c.api_sent >= 5 {
            return Err(ApiError::new(
                code::SEND_LIMIT,
                "send msg count limit: at most 5 messages within 48 h of the customer's last message",
            ));
        }
        self.check_media(&content, now_us)?;
        let msgid = match msgid.filter(|m| !m.is_empty()) {
            Some(m) => {
                self.claim_msgid(acct, m, now_us)?;
                Name::new(m)
            }
            None => self.new_name(),
        };
        let c = at!(self.convs, conv);
        c.api_sent += 1;
        c.last_us = now_us;
        if c.state == 0 {
            let acct = c.account;
            self.set_state(conv, 1);
            at!(self.accounts, acct).days.tally(super::stats::Tally::BotAnswered, now_us);
        }
        self.api_message(conv, msgid.clone(), content, now_us);
        Ok(msgid)
    }

    /// A client's own `msgid` for a message of account `acct`: checked,
    /// and refused (40058) when a message of the account already has it,
    /// whichever of `send_msg` and `send_msg_on_event` sent that one.
    fn claim_msgid(&mut self, acct: u32, msgid: &str, now_us: u64) -> Result<(), ApiError> {
        ident("msgid", msgid, 32)?;
        let sent = &mut at!(self.accounts, acct).sent_ids;
        if !sent.insert(sent.key(&[msgid]), (), now_us) {
            return Err(ApiError::param(format!("msgid `{msgid}` is already used in this account")));
        }
        Ok(())
    }

    fn api_message(&mut self, conv: u32, msgid: Name, content: Content, now_us: u64) {
        let c = at!(self.convs, conv);
        let (acct, cust) = (c.account, c.customer);
        let msg = Msg {
            msgid,
            open_kfid: at!(self.accounts, acct).open_kfid.clone(),
            external_userid: at!(self.customers, cust).external_userid.clone(),
            customer: at!(self.customers, cust).handle.clone(),
            origin: Origin::Api,
            servicer_userid: None,
            send_time: secs(now_us),
            client_msgid: None,
            in_reply_to: None,
            content,
        };
        self.counters.api_messages += 1;
        let c = at!(self.convs, conv);
        if at!(self.accounts, c.account).rule.api_managed {
            self.audit.sent(&mut c.audit, &msg.content, now_us);
        }
        self.send_customer(conv, Item::Msg(Arc::new(msg)), now_us);
    }

    /// `send_msg_on_event`: a message with a code from an event or a
    /// `trans` answer. The code is single use and expires (welcome and end
    /// codes after 20 s, queue and assign codes after 48 h); except for a
    /// welcome code, the session must still be in the state the code was
    /// given for, in the same session. 95007 for a bad or used code.
    pub fn send_msg_on_event(
        &mut self,
        code_text: &str,
        msgid: Option<&str>,
        content: Content,
        now_us: u64,
    ) -> Result<Name, ApiError> {
        let invalid = || ApiError::new(code::INVALID_CODE, format!("invalid code `{code_text}`"));
        let (conv, nonce) = parse_code(code_text).ok_or_else(invalid)?;
        // a session of a closing channel's customer is gone, as its code
        if self.convs.get(conv).is_some_and(|c| self.closing_customer(c.customer)) {
            return Err(invalid());
        }
        let c = self.convs.get_mut(conv).ok_or_else(invalid)?;
        let i = c.codes.iter().position(|k| k.nonce == nonce).ok_or_else(invalid)?;
        let k = c.codes[i].clone();
        if now_us >= k.expires_us {
            c.codes.remove(i);
            return Err(ApiError::new(code::INVALID_CODE, "code expired"));
        }
        let need = match k.kind {
            CodeKind::Welcome => None,
            CodeKind::Queue => Some(2),
            CodeKind::Assign => Some(3),
            CodeKind::End => Some(4),
        };
        if need.is_some_and(|s| s != c.state || k.session_no != c.session_no) {
            if c.state == 4 && k.kind != CodeKind::End {
                self.audit.after_end();
            }
            return Err(ApiError::new(
                code::SESSION_STATE,
                "the session is no longer in the state this code is for",
            ));
        }
        if matches!(k.kind, CodeKind::Queue | CodeKind::Assign) && !matches!(content, Content::Text(_)) {
            return Err(ApiError::new(code::INVALID_MSGTYPE, "only text may be sent with this code"));
        }
        // the account's msgids are one set: a message sent with a code
        // took a msgid a send_msg had used, and the other way round, so
        // that the customer got two messages of one id (found by probing)
        let acct = c.account;
        if let Some(m) = msgid.filter(|m| !m.is_empty()) {
            self.claim_msgid(acct, m, now_us)?;
        }
        let c = at!(self.convs, conv);
        c.codes.remove(i);
        if k.kind == CodeKind::Welcome {
            c.last_welcome_us = Some(now_us);
        }
        let msgid = match msgid.filter(|m| !m.is_empty()) {
            Some(m) => Name::new(m),
            None => self.new_name(),
        };
        self.api_message(conv, msgid.clone(), content, now_us);
        Ok(msgid)
    }

    /// `account/del`: its open sessions end (reason `account_deleted`), its
    /// servicers leave it, and it is forgotten.
    pub fn account_del(&mut self, open_kfid: &str, now_us: u64) -> Result<(), ApiError> {
        let acct = self.account_of(open_kfid)?;
        // Servicers stop first, so ending sessions serves no one from the pool.
        let a = at!(self.accounts, acct);
        for slot in 0..a.agents.len() {
            a.router.set_online(slot, false, now_us, &mut Vec::new());
        }
        let convs: Vec<u32> = self.conv_ix.iter().filter(|((a, _), _)| *a == acct).map(|(_, &c)| c).collect();
        for &conv in &convs {
            self.end(conv, "account_deleted", now_us);
        }
        for conv in convs {
            let cust = at!(self.convs, conv).customer;
            self.forget_conv(conv);
            if self.customers.get(cust).is_some_and(|c| c.convs == 0) {
                self.forget_customer(cust);
            }
        }
        let users: Vec<u32> = at!(self.accounts, acct).agents.iter().flatten().copied().collect();
        for u in users {
            self.drop_membership(u, acct);
        }
        self.accounts.remove(acct);
        self.account_ix.remove(open_kfid);
        Ok(())
    }

    /// `servicer/del`: the servicer stops receiving in this account and its
    /// sessions go back to the pool (reason `servicer_removed`).
    pub fn servicer_del(
        &mut self,
        open_kfid: &str,
        userids: &[String],
        now_us: u64,
    ) -> Result<Vec<(String, i32, String)>, ApiError> {
        let acct = self.account_of(open_kfid)?;
        if userids.is_empty() || userids.len() > 100 {
            return Err(ApiError::param("userid_list must have 1 to 100 userids"));
        }
        let mut out = Vec::new();
        for userid in userids {
            let slot = self.user_ix.get(userid.as_str()).and_then(|&u| {
                self.users.get(u)?.memberships.iter().find(|&&(a, _)| a == acct).map(|&(_, s)| (u, s))
            });
            let Some((u, slot)) = slot else {
                out.push((userid.clone(), code::NOT_SERVICER, "not a servicer of this account".into()));
                continue;
            };
            let mut exits = Vec::new();
            at!(self.accounts, acct).router.set_online(slot as usize, false, now_us, &mut exits);
            let held: Vec<u32> = self
                .convs
                .iter()
                .filter(|(_, c)| c.account == acct && c.state == 3 && c.agent == Some(slot))
                .map(|(i, _)| i)
                .collect();
            for conv in held {
                if self.transfer(conv, None, now_us).is_err() {
                    self.end(conv, "servicer_removed", now_us);
                }
            }
            at!(self.accounts, acct).agents[slot as usize] = None;
            self.drop_membership(u, acct);
            out.push((userid.clone(), 0, "success".into()));
        }
        Ok(out)
    }

    fn drop_membership(&mut self, u: u32, acct: u32) {
        let user = at!(self.users, u);
        let slot = user.memberships.iter().find(|&&(a, _)| a == acct).map(|&(_, s)| s as usize);
        user.memberships.retain(|&(a, _)| a != acct);
        // the place keeps no load of the servicer's other accounts (it is
        // offline by now), so that another servicer may take it
        if let Some(slot) = slot
            && let Some(a) = self.accounts.get_mut(acct)
        {
            while a.router.agents()[slot].load > 0 {
                a.router.vacate(slot);
            }
        }
        let user = at!(self.users, u);
        if user.memberships.is_empty() {
            let name = user.userid.clone();
            if let Some(ch) = user.channel.and_then(|c| self.channels.get_mut(c)) {
                ch.servicers.retain(|&x| x != u);
            }
            if let Some(gone) = self.users.remove(u) {
                self.wake_gone.push(gone.notify);
            }
            self.user_ix.remove(name.as_str());
        }
    }

    /// A new reception rule for an account; servicers added later without a
    /// cap get its `max_concurrent`.
    pub(super) fn replace_rule(&mut self, acct: u32, rule: Rule, _now_us: u64) {
        let a = at!(self.accounts, acct);
        a.router.set_policy(policy_for(rule.policy));
        a.router.set_queue_limit(rule.queue_limit);
        a.rule = rule;
    }

    /// Keep memory bounded: drop log and queue entries older than the
    /// retention, end sessions idle for `idle_end_us`, forget sessions and
    /// customers idle for the retention. Looks at no more than `budget`
    /// sessions per call, resuming where the last call stopped.
    pub fn sweep(&mut self, now_us: u64, budget: usize) {
        let horizon = now_us.saturating_sub(self.cfg.retention_us);
        self.corp_log.expire(horizon);
        self.media.expire(now_us);
        let accounts: Vec<u32> = self.accounts.iter().map(|(i, _)| i).collect();
        for a in accounts {
            let acct = at!(self.accounts, a);
            acct.log.expire(horizon);
            acct.days.expire(now_us);
            acct.sent_ids.expire(horizon);
        }
        let users: Vec<u32> = self.users.iter().map(|(i, _)| i).collect();
        for u in users {
            let user = at!(self.users, u);
            user.feed.expire(horizon);
            user.recent.expire(now_us.saturating_sub(RESEND_WINDOW_US));
        }
        self.expire_channels(now_us);
        // the rest by the service's sweeper, a part per hold of the lock
        self.drain_closing(super::session::CLOSE_CHUNK, now_us);
        let channels: Vec<u32> = self.channels.iter().map(|(i, _)| i).collect();
        for c in channels {
            let channel = at!(self.channels, c);
            channel.feed.expire(horizon);
            channel.recent.expire(now_us.saturating_sub(RESEND_WINDOW_US));
        }
        let n = self.convs.capacity() as u32;
        for _ in 0..budget.min(n as usize) {
            let conv = self.sweep_at % n.max(1);
            self.sweep_at = (conv + 1) % n.max(1);
            self.sweep_conv(conv, now_us, horizon);
        }
    }

    fn sweep_conv(&mut self, conv: u32, now_us: u64, horizon: u64) {
        let Some(c) = self.convs.get_mut(conv) else { return };
        c.codes.retain(|k| k.expires_us > now_us);
        let (state, last, cust) = (c.state, c.last_us, c.customer);
        if state < 4 && now_us.saturating_sub(last) >= self.cfg.idle_end_us {
            self.counters.idle_ended += 1;
            self.end(conv, "idle", now_us);
        } else if state == 4 && last < horizon {
            self.forget_conv(conv);
            if self.customers.get(cust).is_some_and(|c| c.convs == 0) {
                self.forget_customer(cust);
            }
        }
    }
}

/// `"{conv:x}.{nonce:016x}"` → `(conv, nonce)`.
fn parse_code(text: &str) -> Option<(u32, u64)> {
    let (conv, nonce) = text.split_once('.')?;
    if conv.is_empty() || conv.len() > 8 || nonce.len() != 16 {
        return None;
    }
    Some((u32::from_str_radix(conv, 16).ok()?, u64::from_str_radix(nonce, 16).ok()?))
}
