//! The servicer side (the WeCom client's part, as a simulation port):
//! reception status, the servicer's queue, reply, transfer (转接) and end —
//! and the explicit auto-reply mode used by benchmarks.
//!
//! Authorization lives here: a servicer reads only its own queue, and
//! replies to, transfers or ends only sessions it holds now (48002
//! otherwise, 95013 for one it held that has ended).

use std::sync::Arc;

use super::errors::{ApiError, code, limit};
use super::model::{Change, Content, Event, Item, Msg, Origin, SyncEntry};
use super::session::{Pulled, pull, secs};
use super::state::{CodeKind, State, at};
use crate::reception::Routed;

impl State {
    /// The servicer of a userid (95014 if none).
    pub fn servicer_index(&self, userid: &str) -> Result<u32, ApiError> {
        self.user_of(userid)
    }

    /// The wake-up of a servicer's queue.
    pub fn servicer_notify(&self, user: u32) -> Option<Arc<tokio::sync::Notify>> {
        self.users.get(user).map(|u| u.notify.clone())
    }

    /// Up to `limit` items of a servicer's queue from `cursor`; everything
    /// before `cursor` is acknowledged and dropped.
    pub fn pull_servicer(&mut self, user: u32, cursor: &str, limit: usize) -> Result<Pulled, ApiError> {
        let feed = &mut self.users.get_mut(user).ok_or_else(|| ApiError::param("servicer removed"))?.feed;
        pull(feed, cursor, limit, |i| (None, i))
    }

    /// Set a servicer's reception status in all its accounts: 0 接待中
    /// (serves the pools into its free slots), 1 停止接待 with `stop_type`
    /// 0 停止接待 or 1 暂时挂起 (no new sessions; held ones stay). Logs
    /// `servicer_status_change` in each account.
    pub fn servicer_set_status(
        &mut self,
        userid: &str,
        status: u8,
        stop_type: u8,
        now_us: u64,
    ) -> Result<(), ApiError> {
        let u = self.user_of(userid)?;
        if status > 1 || stop_type > 1 {
            return Err(ApiError::param("status must be 0 (接待中) or 1 (停止接待); stop_type 0 or 1"));
        }
        let stop_type = if status == 0 { 0 } else { stop_type };
        let user = at!(self.users, u);
        if (user.status, user.stop_type) == (status, stop_type) {
            return Ok(());
        }
        user.status = status;
        user.stop_type = stop_type;
        for (acct, slot) in user.memberships.clone() {
            let mut exits = Vec::new();
            at!(self.accounts, acct).router.set_online(slot as usize, status == 0, now_us, &mut exits);
            self.deliver_pool_exits(acct, exits, now_us);
            let event = Event::ServicerStatusChange {
                servicer_userid: at!(self.users, u).userid.clone(),
                open_kfid: at!(self.accounts, acct).open_kfid.clone(),
                status: status + 1,
                stop_type,
            };
            self.push_event(acct, event, now_us);
        }
        Ok(())
    }

    /// The account and session of `(open_kfid, external_userid)`;
    /// `None` when the customer never had a session with that account.
    pub(super) fn conv_of(
        &self,
        open_kfid: &str,
        external_userid: &str,
    ) -> Result<(u32, Option<u32>), ApiError> {
        let acct = self.account_of(open_kfid)?;
        if external_userid.is_empty() {
            return Err(ApiError::missing("external_userid"));
        }
        let cust = self
            .customer_of(external_userid)
            .ok_or_else(|| ApiError::param(format!("invalid external_userid `{external_userid}`")))?;
        Ok((acct, self.conv_index(acct, cust)))
    }

    /// The session, if `user` holds it now.
    fn own_session(&self, user: u32, open_kfid: &str, external_userid: &str) -> Result<u32, ApiError> {
        let (acct, conv) = self.conv_of(open_kfid, external_userid)?;
        let forbidden = || {
            ApiError::new(
                code::FORBIDDEN,
                format!("api forbidden: the session of {external_userid} is not assigned to you"),
            )
        };
        let conv = conv.ok_or_else(forbidden)?;
        let c = self.convs.get(conv).expect("conv");
        let holder = c.agent.and_then(|s| self.accounts.get(acct)?.agents[s as usize]);
        if c.state == 3 && holder == Some(user) {
            return Ok(conv);
        }
        if c.state == 4 && c.last_agent.is_some_and(|(_, u, _)| u == user) {
            return Err(ApiError::new(code::SESSION_ENDED, "conversation end: the session has ended"));
        }
        Err(forbidden())
    }

    /// A servicer's message (origin 5) in a session it holds; it goes to
    /// the account's log and the customer. `in_reply_to` (the customer
    /// message's `client_msgid`) and `client_msgid` are echoed as given.
    #[allow(clippy::too_many_arguments)]
    pub fn servicer_reply(
        &mut self,
        userid: &str,
        open_kfid: &str,
        external_userid: &str,
        content: Content,
        in_reply_to: Option<&str>,
        client_msgid: Option<&str>,
        now_us: u64,
    ) -> Result<String, ApiError> {
        let user = self.user_of(userid)?;
        let client_msgid = client_msgid.filter(|id| !id.is_empty());
        // the same id to another customer (or account) is another reply
        let resend_key =
            client_msgid.map(|id| at!(self.users, user).recent.key(&[external_userid, open_kfid, id]));
        if let Some(msgid) = resend_key.and_then(|k| at!(self.users, user).recent.get(k)) {
            // a resend (its first answer was lost): answered as then, not
            // sent again — even if the session has ended since
            return Ok(msgid.to_string());
        }
        let conv = self.own_session(user, open_kfid, external_userid)?;
        limit("in_reply_to", in_reply_to.unwrap_or(""), 64)?;
        limit("client_msgid", client_msgid.unwrap_or(""), 64)?;
        let msgid = self.reply_in(conv, user, content, in_reply_to, client_msgid, now_us);
        if let Some(k) = resend_key {
            at!(self.users, user).recent.insert(k, msgid.as_str().into(), now_us);
        }
        Ok(msgid)
    }

    fn reply_in(
        &mut self,
        conv: u32,
        user: u32,
        content: Content,
        in_reply_to: Option<&str>,
        client_msgid: Option<&str>,
        now_us: u64,
    ) -> String {
        let c = at!(self.convs, conv);
        c.last_us = now_us;
        let (acct, cust) = (c.account, c.customer);
        let msg = Arc::new(Msg {
            msgid: self.new_name(),
            open_kfid: at!(self.accounts, acct).open_kfid.clone(),
            external_userid: at!(self.customers, cust).external_userid.clone(),
            customer: at!(self.customers, cust).handle.clone(),
            origin: Origin::Servicer,
            servicer_userid: Some(at!(self.users, user).userid.clone()),
            send_time: secs(now_us),
            client_msgid: client_msgid.map(Into::into),
            in_reply_to: in_reply_to.map(Into::into),
            content,
        });
        self.counters.servicer_messages += 1;
        self.push_log(acct, SyncEntry::Msg(msg.clone()), now_us);
        let msgid = msg.msgid.as_str().to_string();
        self.send_customer(conv, Item::Msg(msg), now_us);
        msgid
    }

    /// 转接: hand a held session to another servicer of the account (who
    /// must be 接待中 and below 接待上限: 95014 otherwise) or, with no
    /// target, back to the waiting pool, where the rules place it (45009 if
    /// the pool is full). Logs `session_status_change` 2.
    pub fn servicer_transfer(
        &mut self,
        userid: &str,
        open_kfid: &str,
        external_userid: &str,
        to: Option<&str>,
        now_us: u64,
    ) -> Result<u8, ApiError> {
        let user = self.user_of(userid)?;
        let conv = self.own_session(user, open_kfid, external_userid)?;
        let target = match to.filter(|t| !t.is_empty()) {
            Some(t) => Some(self.member_slot(conv, t)?),
            None => None,
        };
        self.transfer(conv, target, now_us)?;
        let event = Event::SessionStatusChange {
            open_kfid: self.accounts.get(at!(self.convs, conv).account).expect("account").open_kfid.clone(),
            external_userid: self.external_of(conv),
            change_type: 2,
            old_servicer_userid: Some(at!(self.users, user).userid.clone()),
            new_servicer_userid: self.servicer_name(conv),
            msg_code: None,
        };
        let acct = at!(self.convs, conv).account;
        self.push_event(acct, event, now_us);
        Ok(at!(self.convs, conv).state)
    }

    /// 转接 to another account (a simulation-port action; WeCom has no
    /// transfer between accounts): the session leaves the servicer and its
    /// account (state 4 there, the note says `to_open_kfid`), and the
    /// customer's conversation goes on as a new session of account `to`,
    /// routed by its rules (prefer-last-agent included) while the slot is
    /// still held, so it never lands back on the same slot. 45009 if
    /// `to`'s pool is full and 95016 if the customer already has a session
    /// there (the session stays with the servicer either way). Logs
    /// `session_status_change` 2 in the account left. Returns the state in
    /// `to` (2 or 3).
    pub fn servicer_transfer_account(
        &mut self,
        userid: &str,
        open_kfid: &str,
        external_userid: &str,
        to_open_kfid: &str,
        now_us: u64,
    ) -> Result<u8, ApiError> {
        let user = self.user_of(userid)?;
        let conv = self.own_session(user, open_kfid, external_userid)?;
        let to = self.account_of(to_open_kfid)?;
        let c = at!(self.convs, conv);
        let (acct, cust, from) = (c.account, c.customer, c.agent.expect("a held session"));
        if to == acct {
            return Err(ApiError::param(
                "to_open_kfid is the session's own account: transfer to a servicer or to the pool",
            ));
        }
        let next = self.conv_for(to, cust, now_us);
        if at!(self.convs, next).state != 4 {
            return Err(ApiError::new(
                code::BAD_TRANSITION,
                "不允许这种状态转换: the customer already has a session with the account transferred to",
            ));
        }
        let routed = self.arrive(next, now_us);
        if routed == Routed::Rejected {
            return Err(ApiError::new(code::LIMIT, "the waiting pool (待接入池) of to_open_kfid is full"));
        }
        self.open_session(next, now_us);
        at!(self.convs, next).last_us = now_us;
        // the account left: the session is over there
        let old = self.servicer_name(conv);
        self.unpend(conv);
        let c = at!(self.convs, conv);
        c.agent = None;
        c.last_us = now_us;
        c.last_agent = Some((from, user, now_us));
        self.audit.ended(&mut c.audit);
        self.set_state(conv, 4);
        let mut note = (*self.note(conv, Change::Transferred, old.clone(), None, now_us)).clone();
        note.to_open_kfid = Some(at!(self.accounts, to).open_kfid.clone());
        let note = Arc::new(note);
        self.send_customer(conv, Item::Session(note.clone()), now_us);
        self.send_user(user, Item::Session(note), now_us);
        let event = Event::SessionStatusChange {
            open_kfid: at!(self.accounts, acct).open_kfid.clone(),
            external_userid: self.external_of(conv),
            change_type: 2,
            old_servicer_userid: old.clone(),
            new_servicer_userid: None,
            msg_code: None,
        };
        self.push_event(acct, event, now_us);
        // the account taking it
        match routed {
            Routed::Assigned { agent, .. } => {
                self.assigned(next, agent as u32, Change::Assigned, old, now_us)
            }
            _ => self.note_customer(next, Change::Queued, None, None, now_us),
        }
        self.release_slot(acct, from, now_us);
        Ok(at!(self.convs, next).state)
    }

    /// The router place of servicer `userid` in the session's account.
    pub(super) fn member_slot(&self, conv: u32, userid: &str) -> Result<u32, ApiError> {
        let acct = self.convs.get(conv).expect("conv").account;
        let not_member = || {
            ApiError::new(
                code::NOT_SERVICER,
                format!("{userid} is not a servicer (接待人员) of this account"),
            )
        };
        let user = self.user_ix.get(userid).ok_or_else(not_member)?;
        let u = self.users.get(*user).expect("user");
        u.memberships.iter().find(|&&(a, _)| a == acct).map(|&(_, slot)| slot).ok_or_else(not_member)
    }

    /// Move a session in state 3 to router place `to`, or to the pool.
    pub(super) fn transfer(&mut self, conv: u32, to: Option<u32>, now_us: u64) -> Result<(), ApiError> {
        let c = at!(self.convs, conv);
        let (acct, from) = (c.account, c.agent.expect("a held session"));
        let old = self.servicer_name(conv);
        let old_user = at!(self.accounts, acct).agents[from as usize];
        match to {
            Some(slot) if slot == from => {
                // not a transition (3 → 3 is to another servicer)
                return Err(ApiError::new(
                    code::BAD_TRANSITION,
                    "不允许这种状态转换: the session is already with that servicer",
                ));
            }
            Some(slot) => {
                if !at!(self.accounts, acct).router.assign_to(slot as usize) {
                    return Err(ApiError::new(
                        code::NOT_SERVICER,
                        "the servicer is not receiving (停止接待/暂时挂起) or is at its 接待上限",
                    ));
                }
                self.assigned(conv, slot, Change::Transferred, old.clone(), now_us);
            }
            None => {
                // Offered to the pool while the slot is still held, so the
                // session does not bounce straight back to its servicer.
                at!(self.convs, conv).agent = None;
                match self.arrive(conv, now_us) {
                    Routed::Assigned { agent, .. } => {
                        self.assigned(conv, agent as u32, Change::Transferred, old.clone(), now_us)
                    }
                    Routed::Queued(_) => {
                        self.note_customer(conv, Change::Transferred, old.clone(), None, now_us)
                    }
                    Routed::Rejected => {
                        at!(self.convs, conv).agent = Some(from);
                        return Err(ApiError::new(code::LIMIT, "the waiting pool (待接入池) is full"));
                    }
                }
            }
        }
        if let Some(u) = old_user {
            let note = self.note(conv, Change::Transferred, old, None, now_us);
            self.send_user(u, Item::Session(note), now_us);
        }
        self.release_slot(acct, from, now_us);
        Ok(())
    }

    /// The servicer ends a session it holds (→ 4); logs
    /// `session_status_change` 3 with an end code (结束语, 20 s).
    pub fn servicer_end(
        &mut self,
        userid: &str,
        open_kfid: &str,
        external_userid: &str,
        now_us: u64,
    ) -> Result<(), ApiError> {
        let user = self.user_of(userid)?;
        let conv = self.own_session(user, open_kfid, external_userid)?;
        self.end_by_servicer(conv, user, now_us);
        Ok(())
    }

    fn end_by_servicer(&mut self, conv: u32, user: u32, now_us: u64) {
        self.end(conv, "servicer", now_us);
        let msg_code = Some(self.issue_code(conv, CodeKind::End, now_us));
        let acct = at!(self.convs, conv).account;
        let event = Event::SessionStatusChange {
            open_kfid: at!(self.accounts, acct).open_kfid.clone(),
            external_userid: self.external_of(conv),
            change_type: 3,
            old_servicer_userid: Some(at!(self.users, user).userid.clone()),
            new_servicer_userid: None,
            msg_code,
        };
        self.push_event(acct, event, now_us);
    }

    /// Auto-reply (benchmarks only, off unless asked for): every servicer
    /// drains its queue, answers each customer message with a text that
    /// echoes its `client_msgid`, and ends the session after answering.
    /// Works through at most `budget` queue items so the caller's lock is
    /// short; returns whether items are left. Only the servicers whose
    /// queues got items are looked at ([`State::auto_due`]): a scan of
    /// every servicer was a twentieth of a customer message's cost with 200.
    pub fn auto_reply(&mut self, budget: usize, now_us: u64) -> bool {
        let mut left = budget;
        let mut due = std::mem::take(&mut self.auto_due);
        let mut done = 0;
        while left > 0 && done < due.len() {
            let u = due[done];
            let Some(user) = self.users.get_mut(u).filter(|user| user.auto_due) else {
                done += 1;
                continue;
            };
            let feed = &mut user.feed;
            let start = feed.end() - feed.len() as u64;
            let read = feed.read(start, left);
            feed.ack(read.next);
            left -= read.items.len();
            // the budget may end within this queue: it is first next time
            if feed.is_empty() || read.items.is_empty() {
                user.auto_due = false;
                done += 1;
            }
            for (_, item) in read.items {
                let Item::Msg(m) = item else { continue };
                let Some(conv) = self.customer_of(&m.external_userid).and_then(|c| {
                    let acct = self.account_ix.get(m.open_kfid.as_str())?;
                    self.conv_index(*acct, c)
                }) else {
                    continue;
                };
                let c = at!(self.convs, conv);
                let holder = c.agent.and_then(|s| self.accounts.get(c.account)?.agents[s as usize]);
                if c.state != 3 || holder != Some(u) {
                    continue;
                }
                let text = ["auto-reply to ", m.client_msgid.as_deref().unwrap_or(m.msgid.as_str())].concat();
                self.reply_in(conv, u, Content::text(text), m.client_msgid.as_deref(), None, now_us);
                self.end_by_servicer(conv, u, now_us);
            }
        }
        // queues that got items while these were answered go after them
        due.drain(..done);
        due.append(&mut self.auto_due);
        self.auto_due = due;
        !self.auto_due.is_empty()
    }
}
