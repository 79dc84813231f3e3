//! Sessions and the customer side: routing through the reception core,
//! the state changes every surface shares, delivery into queues and logs,
//! and the customer simulation port (channels, enter, message, leave, pull).
//!
//! The state machine (WeCom's `service_state`): 4 已结束/未开始 → 0 on a
//! customer message; 0 is routed at once by the account's rules to 3
//! (assigned), 2 (waiting pool) or back to 4 (pool full) — unless the
//! account has no servicers, when it stays 0 for the API (`send_msg` moves
//! it to 1). Pool exits, transfers and ends go through the helpers here, so
//! every surface keeps the router, the counts and the queues in step.

use std::sync::Arc;

use compact_str::CompactString;
use serde::Serialize;

use super::errors::{ApiError, code, ident, limit};
use super::feed::{Feed, Weigh};
use super::model::{
    Change, Content, Event, EventRec, Item, MSG_OVERHEAD, Msg, Name, Origin, SessionNote, SyncEntry,
};
use super::state::{
    Channel, Code, CodeKind, Conv, Customer, HOUR_US, MAX_CHANNEL_QUEUE, NO_CONV, State, at, customer_key,
    push_hex,
};
use super::stats::Tally;
use crate::reception::{Assignment, Routed};

/// What a customer action answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerAck {
    /// The customer's id on the enterprise side.
    pub external_userid: Name,
    /// The session's state after the action.
    pub service_state: u8,
    /// The message's id (message actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgid: Option<Name>,
    /// The servicer holding the session (state 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servicer_userid: Option<Name>,
}

/// What a pull from a simulation-port queue returns.
#[derive(Debug)]
pub struct Pulled {
    /// `(seq, (the servicer it is for, on a channel that carries servicers; item))`.
    pub items: Vec<(u64, (Option<Name>, Item))>,
    /// Cursor of the next pull.
    pub next_cursor: String,
    /// More items are waiting.
    pub has_more: bool,
    /// Items dropped (queue full or too old) before this reader got them.
    pub missed: u64,
}

/// Customers of a closed channel ended and forgotten per hold of the lock
/// (about 5 ms of it).
pub const CLOSE_CHUNK: usize = 4096;

/// Entries of the session table read for the cost of one customer looked
/// at, when a closed channel's customers' sessions are looked for there
/// ([`State::close_several`]).
const CONVS_PER_CUSTOMER: usize = 16;

/// Seconds of a µs time, for WeCom's `send_time`.
pub(super) fn secs(now_us: u64) -> u64 {
    now_us / 1_000_000
}

impl State {
    // ---- channels ------------------------------------------------------

    /// Open a customer channel with a queue of `queue_cap` items (default
    /// from the config, at most [`MAX_CHANNEL_QUEUE`]).
    pub fn open_channel(&mut self, queue_cap: Option<usize>) -> Result<String, ApiError> {
        self.open_channel_for(queue_cap, false)
    }

    /// Open a channel for customers or, with `for_servicers`, for
    /// servicers (see [`State::bind_servicers`]): the calls of one kind
    /// refuse a channel of the other ([`State::channel_of_kind`]).
    pub fn open_channel_for(
        &mut self,
        queue_cap: Option<usize>,
        for_servicers: bool,
    ) -> Result<String, ApiError> {
        let cap = queue_cap.unwrap_or(self.cfg.channel_queue_cap);
        if !(1..=MAX_CHANNEL_QUEUE).contains(&cap) {
            return Err(ApiError::param(format!("queue_cap must be between 1 and {MAX_CHANNEL_QUEUE}")));
        }
        if self.channels.len() >= self.cfg.max_channels {
            return Err(ApiError::new(
                code::LIMIT,
                format!("at most {} channels may be open; close one first", self.cfg.max_channels),
            ));
        }
        let mut id = String::from("ch");
        push_hex(&mut id, self.random(), 16);
        let feed = self.new_feed(cap);
        let c = self.channels.insert(Channel {
            feed,
            notify: Default::default(),
            dirty: false,
            customers: Default::default(),
            servicers: Vec::new(),
            recent: Default::default(),
            id: id.clone().into(),
            last_us: None,
            for_servicers,
        });
        self.channel_ix.insert(id.clone().into(), c);
        Ok(id)
    }

    /// The channel of an id: 40058 if unknown.
    pub fn channel_of(&self, id: &str) -> Result<u32, ApiError> {
        if id.is_empty() {
            return Err(ApiError::missing("channel_id"));
        }
        self.channel_ix.get(id).copied().ok_or_else(|| ApiError::param(format!("unknown channel_id `{id}`")))
    }

    /// The channel of an id, which must be of the kind asked for: a
    /// servicer pull that read a customer channel acknowledged the
    /// customers' replies, lost to their driver, and a customer batch on a
    /// servicer channel made customers there (found by probing). 40058
    /// for the other kind.
    pub fn channel_of_kind(&self, id: &str, for_servicers: bool) -> Result<u32, ApiError> {
        let ch = self.channel_of(id)?;
        if self.channels.get(ch).expect("index of a live entry").for_servicers != for_servicers {
            let (is, takes) = if for_servicers {
                ("customer", "/sim/servicer/open_channel")
            } else {
                ("servicer", "/sim/customer/open_channel")
            };
            return Err(ApiError::param(format!(
                "channel_id `{id}` is a {is} channel: this call takes a channel opened by {takes}"
            )));
        }
        Ok(ch)
    }

    /// [`State::channel_of_kind`], used at `now_us`: its lease starts again.
    pub fn use_channel_of(&mut self, id: &str, for_servicers: bool, now_us: u64) -> Result<u32, ApiError> {
        let ch = self.channel_of_kind(id, for_servicers)?;
        at!(self.channels, ch).last_us = Some(now_us);
        Ok(ch)
    }

    /// The `seq` the channel's next event gets; `None` for an unknown id.
    pub fn channel_end(&self, id: &str) -> Option<u64> {
        let ch = self.channel_ix.get(id)?;
        Some(self.channels.get(*ch)?.feed.end())
    }

    /// Close the channels unused for longer than their lease (see
    /// [`Config::channel_lease_us`](super::Config)).
    pub(super) fn expire_channels(&mut self, now_us: u64) {
        let lease = self.cfg.channel_lease_us;
        let mut expired = Vec::new();
        let channels: Vec<u32> = self.channels.iter().map(|(i, _)| i).collect();
        for ch in channels {
            let c = at!(self.channels, ch);
            match c.last_us {
                None => c.last_us = Some(now_us),
                Some(t) if now_us.saturating_sub(t) > lease => expired.push(c.id.clone()),
                Some(_) => {}
            }
        }
        for id in expired {
            let _ = self.begin_close(&id);
            self.counters.channels_expired += 1;
        }
    }

    /// The wake-up of a channel's queue.
    pub fn channel_notify(&self, ch: u32) -> Option<Arc<tokio::sync::Notify>> {
        self.channels.get(ch).map(|c| c.notify.clone())
    }

    /// Carry the queues of `userids` on channel `ch` from now on, instead
    /// of their own queues (or another channel). All or none: 95014 names
    /// the first unknown servicer.
    pub fn bind_servicers(&mut self, ch: u32, userids: &[String]) -> Result<(), ApiError> {
        let users = userids.iter().map(|u| self.user_of(u)).collect::<Result<Vec<u32>, ApiError>>()?;
        for u in users {
            if let Some(old) = at!(self.users, u).channel.replace(ch)
                && let Some(c) = self.channels.get_mut(old)
            {
                c.servicers.retain(|&x| x != u);
            }
            let c = at!(self.channels, ch);
            if !c.servicers.contains(&u) {
                c.servicers.push(u);
            }
        }
        Ok(())
    }

    /// Close a channel: its customers' open sessions end (reason `left`)
    /// and its customers are forgotten; its servicers' items go to their
    /// own queues again. The channel goes first: what its sessions' ends
    /// would tell its customers is for no one, and pushed out items of its
    /// queue that were never lost (counted as queue overflows, a message
    /// logged as `msg_send_fail`). Its queue and customer table, millions
    /// of entries at most, are dropped by the caller after it releases the
    /// state ([`State::take_closed`]).
    ///
    /// All at once: the service itself closes with [`State::begin_close`]
    /// and [`State::drain_closing`], a bounded part per hold of the lock.
    pub fn close_channel(&mut self, id: &str, now_us: u64) -> Result<(), ApiError> {
        self.begin_close(id)?;
        while self.drain_closing(usize::MAX, now_us).1 {}
        Ok(())
    }

    /// The first step of [`State::close_channel`], whatever the channel's
    /// size: it is gone for every caller, its customers are not. A million
    /// customers' sessions ended and forgotten in one step held the lock
    /// 1.3 s.
    pub(super) fn begin_close(&mut self, id: &str) -> Result<(), ApiError> {
        let ch = self.channel_of(id)?;
        let mut gone = self.channels.take(ch).expect("channel");
        self.channel_ix.remove(id);
        self.wake_gone.push(gone.notify.clone());
        for &u in &gone.servicers {
            if let Some(user) = self.users.get_mut(u) {
                user.channel = None;
            }
        }
        let customers = std::mem::take(&mut gone.customers).into_values();
        self.closed.push(gone);
        self.closing.push_back(super::state::Closing {
            ch,
            customers,
            several: Vec::new(),
            marked: Vec::new(),
            next_conv: 0,
        });
        Ok(())
    }

    /// End the sessions of closed channels' customers and forget them,
    /// doing up to `budget` customers' worth of work (see
    /// [`State::close_several`] for the last step's); `(customers looked
    /// at, more remain)`.
    ///
    /// Between calls the customers left are known, their sessions as they
    /// were, their channel gone (nothing reaches them, as after the close):
    /// so each is checked to be still the channel's (the sweep may have
    /// forgotten it, and its index have gone to another customer).
    pub(super) fn drain_closing(&mut self, budget: usize, now_us: u64) -> (usize, bool) {
        let (mut seen, mut spent) = (0, 0);
        while let Some(closing) = self.closing.front_mut() {
            if spent >= budget {
                return (seen, true);
            }
            let ch = closing.ch;
            let part: Vec<u32> = closing.customers.by_ref().take(budget - spent).collect();
            if part.is_empty() {
                let (cost, done) = self.close_several(budget - spent, now_us);
                spent += cost;
                if done {
                    self.closing.pop_front();
                    self.channels.release(ch);
                }
                continue;
            }
            (seen, spent) = (seen + part.len(), spent + part.len());
            // Each customer's sessions, found without asking every account
            // for every customer (a million customers and 5 000 accounts
            // held the one lock for 51 s): most have at most the one their
            // record caches; those with more wait for the last step.
            let mut several = Vec::new();
            for cust in part {
                let Some(c) = self.customers.get(cust).filter(|c| c.channel == ch) else { continue };
                match (c.convs, c.conv) {
                    (0, _) => {}
                    (1, conv) if conv != NO_CONV => self.close_conv(conv.1, now_us),
                    _ => {
                        several.push(cust);
                        continue;
                    }
                }
                self.forget_customer(cust);
            }
            self.closing.front_mut().expect("closing").several.extend(several);
        }
        (seen, false)
    }

    /// A part of the last step of the first closing channel's drain: its
    /// customers with sessions their record does not cache. Their sessions
    /// are found by reading the session table in index order, a part per
    /// call, and end as they are found; then the customers are forgotten.
    /// `(budget spent, finished)`; unfinished, the whole budget is spent.
    ///
    /// In one step (one pass over the index, then every end) 100 000 such
    /// customers held the lock 119 ms, linearly more with more. Reading by
    /// index can stop anywhere and start again: no session of these
    /// customers is made meanwhile (they are gone for every caller), and
    /// one made at an index already read is another customer's.
    fn close_several(&mut self, budget: usize, now_us: u64) -> (usize, bool) {
        let closing = self.closing.front_mut().expect("closing");
        let ch = closing.ch;
        let mut marked = std::mem::take(&mut closing.marked);
        if marked.is_empty() {
            // set aside in earlier parts: the sweep may have forgotten some since
            closing.several.retain(|&c| self.customers.get(c).is_some_and(|c| c.channel == ch));
            if closing.several.is_empty() {
                return (0, true);
            }
            marked = vec![0; self.customers.capacity().div_ceil(64)];
            for &c in &closing.several {
                marked[c as usize / 64] |= 1 << (c % 64);
            }
        }
        let is_marked = |c: u32| marked.get(c as usize / 64).is_some_and(|w| w >> (c % 64) & 1 == 1);
        let (end, limit) = (self.convs.capacity() as u32, budget.saturating_mul(CONVS_PER_CUSTOMER));
        let (mut next, mut units) = (closing.next_conv, 0);
        while next < end && units < limit {
            units += 1;
            let cust = self.convs.get(next).map(|c| c.customer);
            if let Some(cust) = cust
                && is_marked(cust)
                && self.customers.get(cust).is_some_and(|c| c.channel == ch)
            {
                // an end weighs as a customer looked at
                self.close_conv(next, now_us);
                units += CONVS_PER_CUSTOMER - 1;
            }
            next += 1;
        }
        let closing = self.closing.front_mut().expect("closing");
        (closing.next_conv, closing.marked) = (next, marked);
        if next < end {
            return (budget, false);
        }
        let spent = units.div_ceil(CONVS_PER_CUSTOMER).min(budget);
        let n = (budget - spent).min(closing.several.len());
        let from = closing.several.len() - n;
        let forget: Vec<u32> = closing.several.drain(from..).collect();
        for cust in forget {
            // no session left
            if self.customers.get(cust).is_some_and(|c| c.channel == ch) {
                self.forget_customer(cust);
            }
        }
        (spent + n, self.closing.front().expect("closing").several.is_empty())
    }

    /// A closed channel's customer's session ends and is forgotten.
    fn close_conv(&mut self, conv: u32, now_us: u64) {
        self.audit.closed(&mut at!(self.convs, conv).audit);
        self.end(conv, "left", now_us);
        self.forget_conv(conv);
    }

    /// Up to `limit` items of a channel's queue from `cursor`; everything
    /// before `cursor` is acknowledged and dropped.
    pub fn pull_channel(&mut self, ch: u32, cursor: &str, limit: usize) -> Result<Pulled, ApiError> {
        let feed = &mut self.channels.get_mut(ch).ok_or_else(|| ApiError::param("channel closed"))?.feed;
        pull(feed, cursor, limit, |x| x)
    }

    // ---- customer actions ----------------------------------------------

    fn customer_for(&mut self, ch: u32, handle: &str, now_us: u64) -> Result<u32, ApiError> {
        if let Some(&c) = at!(self.channels, ch).customers.get(handle) {
            at!(self.customers, c).last_us = now_us;
            return Ok(c);
        }
        ident("customer", handle, 64)?;
        if self.customers.len() >= self.cfg.max_customers {
            self.counters.customers_refused += 1;
            return Err(ApiError::new(
                code::LIMIT,
                format!(
                    "at most {} customers are remembered (kfsim serve --max-customers); known ones still \
                     may write, new ones once the retention forgets idle ones",
                    self.cfg.max_customers
                ),
            ));
        }
        let (key, external_userid) = self.new_customer_id();
        let c = self.customers.insert(Customer {
            external_userid,
            handle: Name::new(handle),
            channel: ch,
            convs: 0,
            conv: NO_CONV,
            last_us: now_us,
            enter: None,
        });
        self.customer_ix.insert(key, c);
        at!(self.channels, ch).customers.insert(CompactString::new(handle), c);
        Ok(c)
    }

    /// The session of customer `cust` with account `acct`, if remembered.
    pub(super) fn conv_index(&self, acct: u32, cust: u32) -> Option<u32> {
        if let Some(c) = self.customers.get(cust)
            && c.conv.0 == acct
        {
            debug_assert_eq!(self.conv_ix.get(&(acct, cust)), Some(&c.conv.1));
            return Some(c.conv.1);
        }
        self.conv_ix.get(&(acct, cust)).copied()
    }

    pub(super) fn conv_for(&mut self, acct: u32, cust: u32, now_us: u64) -> u32 {
        if let Some(c) = self.conv_index(acct, cust) {
            return c;
        }
        let c = self.convs.insert(Conv {
            account: acct,
            customer: cust,
            state: 4,
            agent: None,
            ticket: None,
            pending: Vec::new(),
            session_no: 0,
            last_customer_us: None,
            api_sent: 0,
            last_us: now_us,
            last_agent: None,
            last_welcome_us: None,
            codes: Vec::new(),
            coded_queue: false,
            coded_assign: false,
            audit: Default::default(),
            upgrade: None,
        });
        self.conv_ix.insert((acct, cust), c);
        let customer = at!(self.customers, cust);
        customer.convs += 1;
        if customer.conv == NO_CONV {
            customer.conv = (acct, c);
        }
        c
    }

    /// The customer enters a session through a contact way (`scene` must be
    /// one of the account's, `""` is the plain link): `enter_session` goes
    /// to the account's log, with a welcome code when the customer had
    /// neither a welcome nor a message in the last 48 h. The state does not
    /// change.
    pub fn customer_enter(
        &mut self,
        ch: u32,
        handle: &str,
        open_kfid: &str,
        scene: &str,
        scene_param: &str,
        now_us: u64,
    ) -> Result<CustomerAck, ApiError> {
        let acct = self.account_of(open_kfid)?;
        limit("scene_param", scene_param, 128)?;
        if !scene.is_empty() && !at!(self.accounts, acct).scenes.contains(scene) {
            return Err(ApiError::param(format!(
                "no contact way with scene `{scene}` for this open_kfid: call kf/add_contact_way first"
            )));
        }
        let cust = self.customer_for(ch, handle, now_us)?;
        let conv = self.conv_for(acct, cust, now_us);
        at!(self.customers, cust).enter = Some(Box::new((scene.into(), scene_param.into())));
        let c = at!(self.convs, conv);
        let recent = |t: Option<u64>| t.is_some_and(|t| now_us.saturating_sub(t) < 48 * HOUR_US);
        let welcome = !recent(c.last_welcome_us) && !recent(c.last_customer_us);
        c.last_us = now_us;
        let welcome_code = welcome.then(|| self.issue_code(conv, CodeKind::Welcome, now_us));
        let event = Event::EnterSession {
            open_kfid: at!(self.accounts, acct).open_kfid.clone(),
            external_userid: at!(self.customers, cust).external_userid.clone(),
            scene: scene.into(),
            scene_param: scene_param.into(),
            welcome_code,
        };
        self.push_event(acct, event, now_us);
        Ok(self.ack(conv, None))
    }

    /// The customer sends a message. A session in state 4 starts (→ 0) and
    /// is routed; in state 3 the message goes to the servicer's queue; in
    /// state 2 it waits with the session (up to `pending_cap`, then 45009).
    pub fn customer_message(
        &mut self,
        ch: u32,
        handle: &str,
        open_kfid: &str,
        client_msgid: Option<&str>,
        content: Content,
        now_us: u64,
    ) -> Result<CustomerAck, ApiError> {
        let acct = self.account_of(open_kfid)?;
        if let Some(id) = client_msgid {
            limit("client_msgid", id, 64)?;
        }
        let cust = self.customer_for(ch, handle, now_us)?;
        let conv = self.conv_for(acct, cust, now_us);
        // the same id from another customer, or to another account, is
        // another message
        let resend_key = client_msgid.map(|id| at!(self.channels, ch).recent.key(&[handle, open_kfid, id]));
        if let Some(msgid) = resend_key.and_then(|k| at!(self.channels, ch).recent.get(k)) {
            // a resend (its first answer was lost): answered as then, not run again
            let msgid = msgid.clone();
            return Ok(self.ack(conv, Some(msgid)));
        }
        let c = at!(self.convs, conv);
        let waits = c.state == 2 || (c.state < 2 && at!(self.accounts, c.account).rule.api_managed);
        if waits && c.pending.len() >= self.cfg.pending_cap {
            return Err(ApiError::new(
                code::LIMIT,
                format!("{} messages already wait for a servicer in this session", self.cfg.pending_cap),
            ));
        }
        // a session that starts now (state 4) holds the message too
        let holds = waits || c.state == 4;
        if holds && self.pending_bytes + MSG_OVERHEAD + content.weight() > self.cfg.pending_bytes_cap {
            return Err(ApiError::new(
                code::LIMIT,
                format!(
                    "the sessions waiting for servicers already hold {} MiB of messages (kfsim serve \
                     --pending-memory)",
                    self.cfg.pending_bytes_cap >> 20
                ),
            ));
        }
        c.last_customer_us = Some(now_us);
        c.api_sent = 0;
        c.last_us = now_us;
        if let Content::Image(m) | Content::Voice(m) | Content::Video(m) | Content::File(m) = &content {
            self.customer_medium(content.msgtype(), &m.media_id, now_us);
        }
        let msg = Arc::new(Msg {
            msgid: self.new_name(),
            open_kfid: at!(self.accounts, acct).open_kfid.clone(),
            external_userid: at!(self.customers, cust).external_userid.clone(),
            customer: at!(self.customers, cust).handle.clone(),
            origin: Origin::Customer,
            servicer_userid: None,
            send_time: super::session::secs(now_us),
            client_msgid: client_msgid.map(Into::into),
            in_reply_to: None,
            content,
        });
        self.push_log(acct, SyncEntry::Msg(msg.clone()), now_us);
        self.counters.customer_messages += 1;
        at!(self.accounts, acct).days.tally(Tally::CustomerMessage, now_us);
        let msgid = msg.msgid.clone();
        if let Some(k) = resend_key {
            at!(self.channels, ch).recent.insert(k, msgid.clone(), now_us);
        }
        match at!(self.convs, conv).state {
            4 => {
                self.start_session(conv, now_us);
                self.pend(conv, msg);
                self.route(conv, now_us);
            }
            2 => self.pend(conv, msg),
            3 => self.send_servicer(conv, Item::Msg(msg), now_us),
            // 0 and 1: the enterprise API reads it with sync_msg; for an
            // API-managed account it also waits for a servicer
            _ if waits => self.pend(conv, msg),
            _ => {}
        }
        let c = at!(self.convs, conv);
        if at!(self.accounts, c.account).rule.api_managed {
            self.audit.customer_message(&mut c.audit, c.state < 2, now_us);
        }
        Ok(self.ack(conv, Some(msgid)))
    }

    /// The customer leaves: a session waiting (0, 1, 2) ends (reason
    /// `left`); one held by a servicer cannot be left (40058).
    pub fn customer_leave(
        &mut self,
        ch: u32,
        handle: &str,
        open_kfid: &str,
        now_us: u64,
    ) -> Result<CustomerAck, ApiError> {
        let acct = self.account_of(open_kfid)?;
        let cust = self.customer_for(ch, handle, now_us)?;
        let conv = self.conv_for(acct, cust, now_us);
        if at!(self.convs, conv).state == 3 {
            return Err(ApiError::param(
                "a servicer holds this session: only the servicer or the API can end it",
            ));
        }
        self.end(conv, "left", now_us);
        Ok(self.ack(conv, None))
    }

    fn ack(&self, conv: u32, msgid: Option<Name>) -> CustomerAck {
        let c = self.convs.get(conv).expect("conv");
        CustomerAck {
            external_userid: self.customers.get(c.customer).expect("customer").external_userid.clone(),
            service_state: c.state,
            msgid,
            servicer_userid: self.servicer_name(conv),
        }
    }

    // ---- shared session machinery ----------------------------------------

    /// The servicer holding a session, if any.
    pub(super) fn servicer_name(&self, conv: u32) -> Option<Name> {
        let c = self.convs.get(conv)?;
        let slot = c.agent?;
        let user = (*self.accounts.get(c.account)?.agents.get(slot as usize)?)?;
        Some(self.users.get(user)?.userid.clone())
    }

    pub(super) fn set_state(&mut self, conv: u32, new: u8) {
        let c = at!(self.convs, conv);
        let old = c.state;
        c.state = new;
        let by_state = &mut at!(self.accounts, c.account).by_state;
        if old < 4 {
            by_state[old as usize] -= 1;
        }
        if new < 4 {
            by_state[new as usize] += 1;
        }
    }

    fn start_session(&mut self, conv: u32, now_us: u64) {
        self.open_session(conv, now_us);
        self.set_state(conv, 0);
    }

    /// The bookkeeping of a new session (numbered, its codes and counts),
    /// whatever state it starts in.
    pub(super) fn open_session(&mut self, conv: u32, now_us: u64) {
        let c = at!(self.convs, conv);
        c.session_no += 1;
        // A welcome code outlives the session it came with: a customer who
        // taps the link and types at once is still welcomed (its 20 s and
        // single use bound it).
        c.codes.retain(|k| k.kind == CodeKind::Welcome);
        c.coded_queue = false;
        c.coded_assign = false;
        self.audit.started(&mut c.audit, now_us);
        let acct = c.account;
        self.counters.sessions_started += 1;
        at!(self.accounts, acct).days.tally(Tally::SessionStarted, now_us);
    }

    /// Route a session in state 0 by the account's rules.
    fn route(&mut self, conv: u32, now_us: u64) {
        let acct = at!(self.convs, conv).account;
        if at!(self.accounts, acct).rule.api_managed {
            // The middleware decides (send_msg, trans); the messages wait
            // with the session for a servicer it may hand it to.
            return;
        }
        if at!(self.accounts, acct).members() == 0 {
            // No reception staff: the session stays with the API (state 0),
            // which answers it with send_msg; nobody reads `pending`.
            self.unpend(conv);
            return;
        }
        match self.arrive(conv, now_us) {
            Routed::Assigned { agent, .. } => {
                self.assigned(conv, agent as u32, Change::Assigned, None, now_us)
            }
            Routed::Queued(_) => self.note_customer(conv, Change::Queued, None, None, now_us),
            Routed::Rejected => {
                self.counters.rejected += 1;
                self.end(conv, "rejected", now_us);
            }
        }
    }

    /// Offer a session to the account's router (with the last servicer as
    /// the preferred one when the rule says so); a queued session is put in
    /// state 2 here.
    pub(super) fn arrive(&mut self, conv: u32, now_us: u64) -> Routed {
        let c = at!(self.convs, conv);
        let (acct, last) = (c.account, c.last_agent);
        let a = at!(self.accounts, acct);
        let prefer = match last {
            Some((slot, user, t))
                if a.rule.prefer_last_agent
                    && now_us.saturating_sub(t) <= a.rule.prefer_last_within_s.saturating_mul(1_000_000)
                    && a.agents.get(slot as usize) == Some(&Some(user)) =>
            {
                Some(slot as usize)
            }
            _ => None,
        };
        let routed = a.router.arrive(conv, prefer, now_us);
        if let Routed::Queued(t) = routed {
            at!(self.convs, conv).ticket = Some(t);
            self.counters.queued += 1;
            self.set_state(conv, 2);
        }
        routed
    }

    /// The session is now held by router place `slot` (the router has
    /// counted it): tell the servicer and the customer, and hand over the
    /// messages that waited.
    pub(super) fn assigned(&mut self, conv: u32, slot: u32, change: Change, old: Option<Name>, now_us: u64) {
        let pending = self.unpend(conv);
        let c = at!(self.convs, conv);
        c.agent = Some(slot);
        c.ticket = None;
        c.last_us = now_us;
        let acct = c.account;
        if at!(self.accounts, acct).rule.api_managed {
            self.audit.assigned(&mut c.audit, now_us);
        }
        self.set_state(conv, 3);
        self.counters.assigned += 1;
        if let Some(user) = at!(self.accounts, acct).agents[slot as usize] {
            let userid = &at!(self.users, user).userid;
            at!(self.accounts, acct).days.tally(Tally::Assigned(userid), now_us);
            self.occupy_elsewhere(user, acct);
        }
        let note = self.note(conv, change, old, None, now_us);
        self.send_servicer(conv, Item::Session(note.clone()), now_us);
        self.send_customer(conv, Item::Session(note), now_us);
        for m in pending {
            self.send_servicer(conv, Item::Msg(m), now_us);
        }
    }

    /// Sessions the router took out of the pool: assign them and log
    /// `session_status_change` (1, 从接待池接入会话) with a 接入 code.
    pub(super) fn deliver_pool_exits(&mut self, acct: u32, exits: Vec<Assignment<u32>>, now_us: u64) {
        for x in exits {
            self.assigned(x.item, x.agent as u32, Change::Assigned, None, now_us);
            let msg_code = self.first_code(x.item, CodeKind::Assign, now_us);
            let event = Event::SessionStatusChange {
                open_kfid: at!(self.accounts, acct).open_kfid.clone(),
                external_userid: self.external_of(x.item),
                change_type: 1,
                old_servicer_userid: None,
                new_servicer_userid: self.servicer_name(x.item),
                msg_code,
            };
            self.push_event(acct, event, now_us);
        }
    }

    /// A servicer of several accounts has one load (docs/protocol.md,
    /// "Shared servicers"): a session it took in `acct` fills its place in
    /// its other accounts' routers too.
    fn occupy_elsewhere(&mut self, user: u32, acct: u32) {
        let Some(u) = self.users.get(user).filter(|u| u.memberships.len() > 1) else { return };
        for (a, slot) in u.memberships.clone() {
            if a != acct {
                at!(self.accounts, a).router.occupy(slot as usize);
            }
        }
    }

    /// Free a router place and serve the pool into it. The place of a
    /// servicer of several accounts is freed in all of them, and the slot
    /// serves the first of their pools (in the order the servicer joined
    /// them) that has someone waiting.
    pub(super) fn release_slot(&mut self, acct: u32, slot: u32, now_us: u64) {
        let user = at!(self.accounts, acct).agents[slot as usize];
        let shared = user.and_then(|u| self.users.get(u)).filter(|u| u.memberships.len() > 1);
        let Some(memberships) = shared.map(|u| u.memberships.clone()) else {
            let exit = at!(self.accounts, acct).router.release(slot as usize, now_us);
            self.deliver_pool_exits(acct, exit.into_iter().collect(), now_us);
            return;
        };
        for &(a, s) in &memberships {
            at!(self.accounts, a).router.vacate(s as usize);
        }
        for (a, _) in memberships {
            if let Some(exit) = at!(self.accounts, a).router.serve(now_us) {
                self.deliver_pool_exits(a, vec![exit], now_us);
                break;
            }
        }
    }

    /// End a session (→ 4) whatever its state; a held slot is freed and a
    /// waiting place given up. No-op in state 4.
    pub(super) fn end(&mut self, conv: u32, reason: &'static str, now_us: u64) {
        let c = at!(self.convs, conv);
        let (acct, state) = (c.account, c.state);
        if state == 4 {
            return;
        }
        let old = self.servicer_name(conv);
        self.unpend(conv);
        let c = at!(self.convs, conv);
        let slot = c.agent.take();
        let ticket = c.ticket.take();
        c.last_us = now_us;
        self.audit.ended(&mut c.audit);
        self.set_state(conv, 4);
        let change = if reason == "rejected" {
            Change::Rejected
        } else {
            self.counters.ended += 1;
            Change::Ended
        };
        let note = self.note(conv, change, old, Some(reason), now_us);
        self.send_customer(conv, Item::Session(note.clone()), now_us);
        if let Some(t) = ticket {
            at!(self.accounts, acct).router.abandon(t);
        }
        if let Some(slot) = slot {
            let user = at!(self.accounts, acct).agents[slot as usize];
            if let Some(user) = user {
                at!(self.convs, conv).last_agent = Some((slot, user, now_us));
                self.send_user(user, Item::Session(note), now_us);
            }
            self.release_slot(acct, slot, now_us);
        }
    }

    pub(super) fn note(
        &mut self,
        conv: u32,
        change: Change,
        old: Option<Name>,
        reason: Option<&'static str>,
        now_us: u64,
    ) -> Arc<SessionNote> {
        let c = self.convs.get(conv).expect("conv");
        let cust = self.customers.get(c.customer).expect("customer");
        Arc::new(SessionNote {
            open_kfid: self.accounts.get(c.account).expect("account").open_kfid.clone(),
            external_userid: cust.external_userid.clone(),
            customer: cust.handle.clone(),
            change,
            service_state: c.state,
            servicer_userid: self.servicer_name(conv),
            old_servicer_userid: old,
            to_open_kfid: None,
            reason,
            send_time: secs(now_us),
        })
    }

    pub(super) fn note_customer(
        &mut self,
        conv: u32,
        change: Change,
        old: Option<Name>,
        reason: Option<&'static str>,
        now_us: u64,
    ) {
        let note = self.note(conv, change, old, reason, now_us);
        self.send_customer(conv, Item::Session(note), now_us);
    }

    pub(super) fn external_of(&self, conv: u32) -> Name {
        let c = self.convs.get(conv).expect("conv");
        self.customers.get(c.customer).expect("customer").external_userid.clone()
    }

    /// Into the queue of the servicer holding the session.
    pub(super) fn send_servicer(&mut self, conv: u32, item: Item, now_us: u64) {
        let c = at!(self.convs, conv);
        let Some(slot) = c.agent else { return };
        let acct = c.account;
        let Some(user) = at!(self.accounts, acct).agents[slot as usize] else { return };
        match &item {
            Item::Msg(m) if m.origin == Origin::Customer => {
                self.counters.messages_routed += 1;
                let userid = &at!(self.users, user).userid;
                at!(self.accounts, acct).days.tally(Tally::Handed(userid), now_us);
            }
            Item::Msg(_) => self.counters.messages_routed += 1,
            _ => {}
        }
        self.send_user(user, item, now_us);
    }

    pub(super) fn send_user(&mut self, user: u32, item: Item, now_us: u64) {
        let u = at!(self.users, user);
        if let Some(ch) = u.channel {
            let to = Some(u.userid.clone());
            let channel = at!(self.channels, ch);
            let dropped = channel.feed.push(now_us, (to, item));
            self.touch_channel(ch);
            for d in dropped {
                self.overflowed(d, now_us);
            }
            return;
        }
        let dropped = u.feed.push(now_us, item).len();
        if self.cfg.auto_reply && !u.auto_due {
            u.auto_due = true;
            self.auto_due.push(user);
        }
        self.counters.queue_overflows += dropped as u64;
        self.touch_user(user);
    }

    /// Into the customer's channel queue.
    pub(super) fn send_customer(&mut self, conv: u32, item: Item, now_us: u64) {
        let c = at!(self.convs, conv);
        let ch = at!(self.customers, c.customer).channel;
        let Some(channel) = self.channels.get_mut(ch) else { return };
        let dropped = channel.feed.push(now_us, (None, item));
        self.touch_channel(ch);
        for d in dropped {
            self.overflowed(d, now_us);
        }
    }

    /// An item pushed out of a full channel queue, whoever it was for (a
    /// channel may carry customers and servicers). A message for a
    /// customer never reached them: `msg_send_fail` is logged for it.
    fn overflowed(&mut self, (to, item): (Option<Name>, Item), now_us: u64) {
        self.counters.queue_overflows += 1;
        let Item::Msg(m) = item else { return };
        if to.is_some() {
            return;
        }
        let Ok(acct) = self.account_of(m.open_kfid.as_str()) else { return };
        let event = Event::MsgSendFail {
            open_kfid: m.open_kfid.clone(),
            external_userid: m.external_userid.clone(),
            fail_msgid: m.msgid.as_str().to_string(),
            fail_type: 0,
        };
        self.push_event(acct, event, now_us);
    }

    pub(super) fn push_log(&mut self, acct: u32, entry: SyncEntry, now_us: u64) {
        self.corp_log.push(now_us, entry.clone());
        at!(self.accounts, acct).log.push(now_us, entry);
        self.owe_callback(acct);
    }

    pub(super) fn push_event(&mut self, acct: u32, event: Event, now_us: u64) {
        let rec = EventRec { msgid: self.new_name(), send_time: secs(now_us), event };
        self.push_log(acct, SyncEntry::Event(Arc::new(rec)), now_us);
    }

    /// A `send_msg_on_event` code for this session; single use, replacing
    /// an earlier code of the same kind.
    pub(super) fn issue_code(&mut self, conv: u32, kind: CodeKind, now_us: u64) -> String {
        let nonce = self.random();
        let ttl = match kind {
            CodeKind::Welcome | CodeKind::End => 20_000_000,
            CodeKind::Queue | CodeKind::Assign => 48 * HOUR_US,
        };
        let c = at!(self.convs, conv);
        c.codes.retain(|x| x.kind != kind);
        c.codes.push(Code { nonce, kind, session_no: c.session_no, expires_us: now_us + ttl });
        let mut code = String::with_capacity(25);
        push_hex(&mut code, conv.into(), 1);
        code.push('.');
        push_hex(&mut code, nonce, 16);
        code
    }

    /// The code for the first time a session enters state 2 or 3, else
    /// `None` (WeCom: "初次变更为2和3时返回回复语code").
    pub(super) fn first_code(&mut self, conv: u32, kind: CodeKind, now_us: u64) -> Option<String> {
        let c = at!(self.convs, conv);
        let flag = match kind {
            CodeKind::Queue => &mut c.coded_queue,
            CodeKind::Assign => &mut c.coded_assign,
            _ => return Some(self.issue_code(conv, kind, now_us)),
        };
        if std::mem::replace(flag, true) {
            return None;
        }
        Some(self.issue_code(conv, kind, now_us))
    }

    /// Messages that wait with `conv` for a servicer.
    fn pend(&mut self, conv: u32, msg: Arc<Msg>) {
        self.pending_bytes += msg.weight();
        at!(self.convs, conv).pending.push(msg);
    }

    /// Take the messages that waited with `conv` (to hand them over, or
    /// to drop them).
    pub(super) fn unpend(&mut self, conv: u32) -> Vec<Arc<Msg>> {
        let msgs = std::mem::take(&mut at!(self.convs, conv).pending);
        self.pending_bytes -= msgs.iter().map(|m| m.weight()).sum::<usize>();
        msgs
    }

    pub(super) fn forget_conv(&mut self, conv: u32) {
        if self.convs.get(conv).is_some() {
            self.unpend(conv);
        }
        if let Some(c) = self.convs.remove(conv) {
            self.conv_ix.remove(&(c.account, c.customer));
            if let Some(cust) = self.customers.get_mut(c.customer) {
                cust.convs -= 1;
                if cust.conv == (c.account, conv) {
                    cust.conv = NO_CONV;
                }
            }
        }
    }

    pub(super) fn forget_customer(&mut self, cust: u32) {
        if let Some(c) = self.customers.remove(cust) {
            if let Some(k) = customer_key(&c.external_userid) {
                self.customer_ix.remove(&k);
            }
            if let Some(ch) = self.channels.get_mut(c.channel) {
                ch.customers.remove(c.handle.as_str());
            }
        }
    }
}

/// Acknowledge up to `cursor`, then read from it.
pub(super) fn pull<T: Clone + super::feed::Weigh>(
    feed: &mut Feed<T>,
    cursor: &str,
    limit: usize,
    item: impl Fn(T) -> (Option<Name>, Item),
) -> Result<Pulled, ApiError> {
    let seq = feed.seq_of(cursor).ok_or_else(invalid_cursor)?;
    feed.ack(seq);
    let r = feed.read(seq, limit);
    let items = r.items.into_iter().map(|(seq, x)| (seq, item(x))).collect();
    Ok(Pulled { items, next_cursor: feed.cursor(r.next), has_more: r.has_more, missed: r.missed })
}

/// 40058 for a cursor this service did not give. The cursor is not
/// repeated: it may be as long as a body.
pub(super) fn invalid_cursor() -> ApiError {
    ApiError::param("invalid cursor: use the empty string or a next_cursor this service gave")
}
