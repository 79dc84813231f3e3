//! The servicer side of the live engine: the agents, a closed population,
//! played by one task. It follows their queues — one long-poll of a
//! servicer channel that carries them all, or, against a target without
//! servicer channels, one long-poll per agent — and for every customer
//! message waits the sampled reply delay (scaled by the agent's slowdown at
//! that moment, and by the time scale), replies with `in_reply_to`, and
//! after the last message of the session waits the wrap-up and ends it.
//! Due replies and ends leave together in servicer batches. Shift changes
//! set the agent's reception status.
//!
//! Deliveries are checked here: the message id carries the session's key
//! and the message's index, so a message seen twice, or after a later one
//! of its session, is counted.
//!
//! A session a bot handed over brings the customer's messages to the bot
//! with it: the servicer sees them (they are delivered, not lost) and
//! answers only the last, the one handed over. A group with `transfer`
//! decides, on the first message of each handle, with `transfers/<group>`
//! (as the simulator does), whether to answer it after `after` and then
//! pass the session to another account instead of going on.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::http::CallError;
use super::wire::{ActionResult, Batch, BatchAnswer, Content, Event, ServicerAction};
use super::{LOST, Queue, SEEN, Shared, TAKEN, Timed, Tries, follow_queue};
use crate::observe::Obs;
use crate::scenario::{MAX_TRANSFERS, Scenario};
use crate::workload::{Stream, TimeSampler, stream, unit};

/// The errcode of an action on a session that has ended.
const SESSION_ENDED: i64 = 95013;
/// The servicers' long-poll.
const PULL: (&str, &str) = ("servicer_pull", "/sim/servicer/pull");
/// Actions per servicer batch at most (the protocol's limit).
const BATCH: usize = 1000;
/// Servicer batches in flight at once.
const IN_FLIGHT: usize = 8;
/// Due actions wait at most this long (wall) to leave with others: one
/// request per reply would need thousands of requests a second.
const GATHER: Duration = Duration::from_millis(1);

struct Agent {
    userid: String,
    group: usize,
    reply: TimeSampler,
    wrap_up: TimeSampler,
    slowdown: f64,
    rng: Stream,
    /// Sessions held, as this agent has seen them (by [`session_key`]),
    /// each with the number of its assignment: a session ending two ways
    /// at once (a confirmed end, the target's note) is let go of once, and
    /// an action for a session that is over is not sent into a later one
    /// of the same customer.
    held: HashMap<String, u64>,
    /// With `slowdown`, the replies in progress (by their work's number):
    /// each goes at the pace the agent's load sets now, so a change of
    /// load moves every one of them, as in the simulator.
    working: HashMap<u64, Work>,
}

/// A reply in progress under `slowdown`, kept out of the heap so that a
/// change of load can move it; the heap holds a marker of its due time.
struct Work {
    /// Work left at pace 1 [scenario µs], as of `since`.
    left: f64,
    since: u64,
    /// The pace since then: 1 + slowdown·(j − 1).
    factor: f64,
    /// Bumped each time it is moved: an older marker is stale.
    version: u32,
    due: Due,
}

/// What the agents' heap holds: an action, or the due time of a reply in
/// progress (agent, work, version) that a change of load may move.
// Boxing the action would allocate once per action to shrink the markers,
// which only `slowdown` makes and are the fewer.
#[allow(clippy::large_enum_variant)]
enum Item {
    Do(Due),
    Work(u32, u64, u32),
}

/// The session an action is for: the agent, the session's key, and the
/// number of its assignment — or, if the agent had not seen that yet, the
/// number of the last assignment then (a later one is another session).
struct SessionRef {
    agent: u32,
    key: String,
    nth: Option<u64>,
    upto: u64,
}

/// The key of a session: the customer and the account.
fn session_key(external_userid: &str, open_kfid: &str) -> String {
    format!("{external_userid}\n{open_kfid}")
}

impl Agent {
    fn load(&self) -> u32 {
        self.held.len() as u32
    }

    /// The pace of work holding `load` sessions.
    fn factor(&self, load: u32) -> f64 {
        1.0 + self.slowdown * f64::from(load.max(1) - 1)
    }
}

/// A servicer action waiting for its time, the agent whose end it is, and
/// its failed sends.
struct Due {
    action: ServicerAction,
    /// When it is due first (scenario µs).
    at: u64,
    end_of: Option<u32>,
    tries: Tries,
    /// The session it is for.
    session: SessionRef,
    /// After the last reply of a session, its end. It is scheduled once
    /// the reply is through (or given up on), so that a reply sent again
    /// never comes after the end of its session.
    then: Option<Box<Due>>,
    /// This end left in its reply's batch.
    rode: bool,
}

/// Events of the queues, with the epoch of the channel they came from:
/// from a servicer channel (`None`: each event names its servicer in
/// `to`), or from one agent's own queue.
type Events = (u64, Option<u32>, Vec<Event>);

/// The actions of a sent batch, the target's answers, when it went out
/// (scenario µs), and the epoch it went out in.
type Sent = (Vec<Due>, Option<Vec<ActionResult>>, u64, u64);

/// A group's 转接 to another account.
struct GroupTransfer {
    /// The account (by index): its open_kfid is the run's link's, read
    /// when the transfer is sent (a restarted target has new ones).
    to: usize,
    share: f64,
    after: TimeSampler,
    rng: Stream,
}

pub(crate) struct Agents {
    sh: Arc<Shared>,
    agents: Vec<Agent>,
    /// Per group: its transfer, if any.
    transfers: Vec<Option<GroupTransfer>>,
    by_userid: HashMap<String, u32>,
    /// `(due scenario µs, order)` → the action.
    heap: BinaryHeap<Reverse<Timed<Item>>>,
    seq: u64,
    /// Assignments seen, to number them.
    assignments: u64,
    /// Sessions of another shard's customers this shard's agents hold
    /// (session → ledger key): their ledger entries are dropped here when
    /// the session ends, as the customer's own shard never sees them.
    foreign: HashMap<String, u64>,
    /// The run's epoch as the agents follow it: the sessions they hold are
    /// the target's of this epoch.
    epoch: u64,
}

/// Start following the agents' queues — the servicer channel if the run
/// has one, else each agent's own — then their task (and the shift tasks
/// of agents with shifts).
pub(crate) fn spawn(sc: &Scenario, sh: &Arc<Shared>) -> JoinHandle<()> {
    let a = Agents::new(sc, sh);
    // every agent is known (by its global index), this shard's are played
    let mut own = Vec::new();
    for (index, agent) in (0u32..).zip(&a.agents).filter(|(i, _)| sh.shard.owns(u64::from(*i))) {
        own.push((index, agent.userid.clone()));
        let online = &sc.groups[agent.group].online;
        if online.is_empty() {
            let _ = sh.obs.send(Obs::AgentOnline { t: 0, agent: index, online: true });
        } else {
            tokio::spawn(run_shifts(agent.userid.clone(), index, online.clone(), sh.clone()));
        }
    }
    let (ev_tx, ev_rx) = mpsc::unbounded_channel::<Events>();
    let pullers = if sh.link().servicers.is_some() {
        let deliver = move |epoch, events| ev_tx.send((epoch, None, events)).is_ok();
        vec![tokio::spawn(follow_queue(sh.clone(), PULL, Queue::Servicers, deliver))]
    } else {
        own.into_iter()
            .map(|(i, userid)| {
                let tx = ev_tx.clone();
                let deliver = move |epoch, events| tx.send((epoch, Some(i), events)).is_ok();
                tokio::spawn(follow_queue(sh.clone(), PULL, Queue::Own(userid), deliver))
            })
            .collect()
    };
    tokio::spawn(a.run(ev_rx, pullers))
}

impl Agents {
    /// Every agent of the scenario, following no queue yet.
    pub(crate) fn new(sc: &Scenario, sh: &Arc<Shared>) -> Agents {
        let transfers = sc
            .groups
            .iter()
            .map(|g| {
                let t = g.transfer.as_ref()?;
                Some(GroupTransfer {
                    to: t.to,
                    share: t.share,
                    after: TimeSampler::new(&t.after),
                    rng: stream(sc.seed, &format!("transfers/{}", g.group)),
                })
            })
            .collect();
        let mut agents = Vec::new();
        let mut by_userid = HashMap::new();
        for (gi, g) in sc.groups.iter().enumerate() {
            for n in 1..=g.count {
                let userid = g.agent_id(n);
                by_userid.insert(userid.clone(), agents.len() as u32);
                agents.push(Agent {
                    rng: stream(sc.seed, &format!("replies/{userid}")),
                    userid,
                    group: gi,
                    reply: TimeSampler::new(&g.reply_delay),
                    wrap_up: TimeSampler::new(&g.wrap_up),
                    slowdown: g.slowdown,
                    held: HashMap::new(),
                    working: HashMap::new(),
                });
            }
        }
        Agents {
            sh: sh.clone(),
            agents,
            transfers,
            by_userid,
            heap: BinaryHeap::new(),
            seq: 0,
            assignments: 0,
            foreign: HashMap::new(),
            epoch: sh.epoch(),
        }
    }

    async fn run(mut self, mut ev_rx: mpsc::UnboundedReceiver<Events>, pullers: Vec<JoinHandle<()>>) {
        let sh = self.sh.clone();
        let (res_tx, mut res_rx) = mpsc::unbounded_channel::<Sent>();
        let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let mut last_flush = Instant::now();
        // replies leave at their instant, not on tokio's millisecond tick
        let timer = super::timer::PreciseTimer::new();
        while !sh.stop.load(Ordering::SeqCst) {
            let next = self
                .heap
                .peek()
                .map(|Reverse(d)| (sh.tb.instant(d.t) + sh.gather).max(last_flush + GATHER.max(sh.gather)));
            // wake at least every 100 ms to notice the end of the run
            let idle = Instant::now() + Duration::from_millis(100);
            let wake = next.map_or(idle, |t| t.min(idle));
            timer.set(wake);
            tokio::select! {
                Some((epoch, agent, events)) = ev_rx.recv() => {
                    self.follow_link();
                    // a page from a channel of an earlier epoch is about
                    // sessions the target forgot
                    if epoch == self.epoch {
                        let now = sh.tb.now_us();
                        for ev in events {
                            self.on_event(agent, ev, epoch, now);
                        }
                    }
                }
                Some((dues, results, sent, epoch)) = res_rx.recv() => {
                    self.follow_link();
                    self.on_results(dues, results, sent, epoch);
                }
                () = timer.fired() => {
                    self.follow_link();
                    if next.is_some() {
                        last_flush = Instant::now();
                        self.flush(&res_tx, &in_flight);
                    }
                }
            }
        }
        for p in pullers {
            p.abort();
        }
        // batches still in flight are measured to their end (their calls
        // end within the timeout, or when the run cuts them)
        let all = IN_FLIGHT as u32;
        let _ =
            tokio::time::timeout(sh.http.timeout() + Duration::from_millis(100), in_flight.acquire_many(all))
                .await;
        // their refusals are counted (what they would send again is not:
        // the run is over)
        while let Ok((dues, results, sent, epoch)) = res_rx.try_recv() {
            self.on_results(dues, results, sent, epoch);
        }
    }

    /// The run moved to a new epoch (the target forgot its channels, and so
    /// every session of the run): the agents let go of what they held and
    /// of what they were to send for it. Those sessions are counted on the
    /// customers' side (`live.reconnects`).
    fn follow_link(&mut self) {
        let epoch = self.sh.epoch();
        if epoch == self.epoch {
            return;
        }
        self.epoch = epoch;
        self.heap.clear();
        // another shard's customers' sessions are as gone as our own: their
        // shard counts them, this one keeps no ledger for them
        let mut ledger = self.sh.ledger();
        for (_, key) in self.foreign.drain() {
            ledger.remove(&key);
        }
        drop(ledger);
        let now = self.sh.tb.now_us();
        for (i, a) in self.agents.iter_mut().enumerate() {
            a.working.clear();
            if !a.held.is_empty() {
                a.held.clear();
                let _ = self.sh.obs.send(Obs::AgentLoad { t: now, agent: i as u32, load: 0 });
            }
        }
    }

    /// Event `ev` of the queues reached the agents at `now` (scenario µs).
    pub(crate) fn on_event(&mut self, agent: Option<u32>, ev: Event, epoch: u64, now: u64) {
        let agent = agent.or_else(|| ev.to.as_deref().and_then(|u| self.by_userid.get(u).copied()));
        let Some(agent) = agent else { return };
        let session = || {
            session_key(
                ev.external_userid.as_deref().unwrap_or_default(),
                ev.open_kfid.as_deref().unwrap_or_default(),
            )
        };
        match (ev.kind.as_str(), ev.change.as_deref()) {
            ("session", Some("assigned")) => self.hold(agent, session(), true, now),
            // taken away, or ended (by anyone, this agent too: the note may
            // come before the answer to the end, or instead of it)
            ("session", Some("transferred" | "ended")) => self.hold(agent, session(), false, now),
            ("message", _) if ev.sender.as_deref() == Some("customer") => {
                self.on_message(agent, ev, now, epoch)
            }
            _ => {}
        }
    }

    /// Count the delivery, then schedule the reply (and the end after the
    /// session's last message).
    fn on_message(&mut self, agent: u32, ev: Event, now: u64, epoch: u64) {
        let Some(id) = ev.client_msgid else { return };
        let Some(m) = parse_id(&id) else { return };
        let MsgId { key, idx, total, sent_us, .. } = m;
        let Some((before, later_seen)) = self.sh.mark(key, idx, total, SEEN | TAKEN) else { return };
        let own = self.sh.owns_key(key);
        // (a copy of a message seen already adds nothing to know)
        if !own && before & SEEN == 0 {
            let s = session_key(
                ev.external_userid.as_deref().unwrap_or_default(),
                ev.open_kfid.as_deref().unwrap_or_default(),
            );
            self.foreign.insert(s, key);
        }
        {
            let in_window = self.sh.in_window(now);
            let mut c = self.sh.counts();
            // another shard's customer counts what the target took of theirs
            if before & TAKEN == 0 && own {
                // the target took it, whatever became of the answer to
                // the customer's send: sent agrees with what it accepted
                self.sh.count_sent(&mut c, epoch, in_window);
            }
            if before & SEEN != 0 {
                // seen already: counted, and not answered again
                c.duplicated += 1;
                return;
            }
            if before & LOST != 0 {
                // its session was over for the customer without it: lost,
                // and nobody is waiting for an answer
                return;
            }
            // another shard's customer counts it delivered when the reply
            // reaches them: only their shard can tell whether it is lost
            // instead (a restart may take the reply with it)
            c.delivered += u64::from(own);
            c.reordered += u64::from(later_seen);
            // time with the bot is no delivery time
            if !m.to_bot {
                c.to_agent.record((now.saturating_sub(sent_us) as f64 / self.sh.tb.scale) as u64);
            }
        }
        if idx < m.first {
            // the customer's earlier messages to the bot, handed over with
            // the session: seen, not answered
            return;
        }
        let a = &mut self.agents[agent as usize];
        let j = a.load().max(1);
        let key = session_key(
            ev.external_userid.as_deref().unwrap_or_default(),
            ev.open_kfid.as_deref().unwrap_or_default(),
        );
        let (nth, upto) = (a.held.get(&key).copied(), self.assignments);
        // the handle's first message decides its transfer, as the
        // simulator decides it when the handle starts
        let mut transfer = self.transfers[a.group].as_mut();
        if !transfer
            .as_mut()
            .is_some_and(|t| idx == m.first && m.handle < MAX_TRANSFERS && unit(&mut t.rng) < t.share)
        {
            transfer = None;
        }
        let work = match &mut transfer {
            Some(t) => t.after.sample(&mut t.rng),
            None => a.reply.sample(&mut a.rng),
        };
        let to_open_kfid = transfer.map(|t| self.sh.link().open_kfid[t.to].clone());
        let factor = a.factor(j);
        let wrap = if idx + 1 == total && to_open_kfid.is_none() {
            Some(a.wrap_up.sample(&mut a.rng))
        } else {
            None
        };
        let (kfid, external) = (ev.open_kfid.unwrap_or_default(), ev.external_userid.unwrap_or_default());
        // A later message of the handle came to an agent who held the
        // session when the customer sent it: in the model the agent had it
        // then, plus its transit at wall length. The handle's first message
        // came with the assignment, whose instant only the target knows;
        // another shard's send time is on another clock.
        let had = if idx > m.first && nth.is_some() && own { self.sh.tb.had_at(sent_us, now) } else { now };
        let reply_at = had.saturating_add((work as f64 * factor) as u64).max(now);
        // `x…`: the customer learns from the reply that a transfer follows
        let mark = if to_open_kfid.is_some() { 'x' } else { 'r' };
        let reply = ServicerAction::Reply {
            servicer_userid: a.userid.clone(),
            open_kfid: kfid.clone(),
            external_userid: external.clone(),
            content: Content::of("text", &format!("reply to {id}")),
            client_msgid: format!("{mark}{key}-{idx}"),
            in_reply_to: id,
        };
        let then = to_open_kfid.map(|to| (to, 0)).or(wrap.map(|w| (String::new(), w))).map(|(to, w)| {
            let action = if to.is_empty() {
                ServicerAction::End {
                    servicer_userid: a.userid.clone(),
                    open_kfid: kfid,
                    external_userid: external,
                }
            } else {
                ServicerAction::Transfer {
                    servicer_userid: a.userid.clone(),
                    open_kfid: kfid,
                    external_userid: external,
                    to_open_kfid: to,
                }
            };
            let at = reply_at.saturating_add(w);
            let session = SessionRef { agent, key: key.clone(), nth, upto };
            Box::new(Due {
                action,
                at,
                end_of: Some(agent),
                tries: Tries::default(),
                session,
                then: None,
                rode: false,
            })
        });
        let session = SessionRef { agent, key, nth, upto };
        let tries = Tries::default();
        let due = Due { action: reply, at: reply_at, end_of: None, tries, session, then, rode: false };
        let a = &mut self.agents[agent as usize];
        if a.slowdown == 0.0 {
            self.push(reply_at, due);
            return;
        }
        self.seq += 1;
        let id = self.seq;
        a.working.insert(id, Work { left: work as f64, since: had, factor, version: 0, due });
        self.mark(reply_at, agent, id, 0);
    }

    /// Agent `agent`'s load went from `old` to its load now: its replies
    /// in progress go on at the new pace.
    fn rescale(&mut self, agent: u32, old: u32, now: u64) {
        let a = &mut self.agents[agent as usize];
        if a.slowdown == 0.0 || a.factor(old) == a.factor(a.load()) {
            return;
        }
        let factor = a.factor(a.load());
        let mut moved = Vec::with_capacity(a.working.len());
        // (in the order the work began, not the map's)
        for (&id, w) in &mut a.working {
            w.left = (w.left - now.saturating_sub(w.since) as f64 / w.factor).max(0.0);
            w.since = now;
            w.factor = factor;
            w.version += 1;
            moved.push((w.since.saturating_add((w.left * factor) as u64), id, w.version));
        }
        moved.sort_unstable_by_key(|&(_, id, _)| id);
        for (t, id, version) in moved {
            self.mark(t, agent, id, version);
        }
    }

    fn mark(&mut self, t: u64, agent: u32, id: u64, version: u32) {
        self.seq += 1;
        self.heap.push(Reverse(Timed { t, seq: self.seq, item: Item::Work(agent, id, version) }));
    }

    /// Agent `agent` takes on session `s` (`true`) or lets go of it.
    fn hold(&mut self, agent: u32, s: String, held: bool, now: u64) {
        let a = &mut self.agents[agent as usize];
        let old = a.load();
        let changed = if held {
            self.assignments += 1;
            match a.held.entry(s) {
                Entry::Vacant(v) => {
                    v.insert(self.assignments);
                    true
                }
                Entry::Occupied(_) => false,
            }
        } else {
            if let Some(key) = self.foreign.remove(&s) {
                // Another shard's session, over: its shard counts it. If
                // this shard's agents saw all of it, a copy the target
                // hands over later is a duplicate, as for a session of
                // this shard's own.
                let mut ledger = self.sh.ledger();
                if ledger.remove(&key).is_some_and(|flags| flags.iter().all(|f| f & SEEN != 0)) {
                    self.sh.settle_clean(key);
                }
            }
            a.held.remove(&s).is_some()
        };
        if changed {
            let _ = self.sh.obs.send(Obs::AgentLoad { t: now, agent, load: a.load() });
            self.rescale(agent, old, now);
        }
    }

    /// Whether the session `d` is for is over (the agent saw it end, or a
    /// later one of the same customer begin).
    fn stale(&self, d: &Due) -> bool {
        let s = &d.session;
        let now = self.agents[s.agent as usize].held.get(&s.key);
        match s.nth {
            Some(n) => now != Some(&n),
            None => now.is_some_and(|&m| m > s.upto),
        }
    }

    /// Count `d` as given up on, and schedule what follows it.
    fn give_up(&mut self, d: Due, now: u64) {
        {
            let mut c = self.sh.counts();
            match d.end_of {
                Some(_) => c.gave_up.ends += 1,
                None => c.gave_up.replies += 1,
            }
        }
        self.then(d, now);
    }

    fn push(&mut self, t: u64, due: Due) {
        self.seq += 1;
        self.heap.push(Reverse(Timed { t, seq: self.seq, item: Item::Do(due) }));
    }

    /// Send every due action, in batches, as far as a call slot is free
    /// (the loop does not wait for one: it goes on reading the queues).
    fn flush(&mut self, res_tx: &mpsc::UnboundedSender<Sent>, in_flight: &Arc<tokio::sync::Semaphore>) {
        let now = self.sh.tb.now_us();
        loop {
            if self.heap.peek().is_none_or(|Reverse(d)| d.t > now) {
                return;
            }
            let Ok(permit) = in_flight.clone().try_acquire_owned() else { return };
            let mut dues = Vec::new();
            let mut first = None;
            // room for a reply and its end
            while dues.len() + 1 < BATCH && self.heap.peek().is_some_and(|Reverse(d)| d.t <= now) {
                let Some(Reverse(Timed { t, item, .. })) = self.heap.pop() else { break };
                let mut d = match item {
                    Item::Do(d) => d,
                    Item::Work(agent, id, version) => {
                        let mut due = match self.agents[agent as usize].working.entry(id) {
                            Entry::Occupied(w) if w.get().version == version => w.remove().due,
                            // moved since, or the run relinked
                            _ => continue,
                        };
                        // its end keeps its wrap-up after the reply's new time
                        if let Some(end) = &mut due.then {
                            end.at = end.at.saturating_sub(due.at).saturating_add(t);
                        }
                        due.at = t;
                        due
                    }
                };
                if self.stale(&d) {
                    continue;
                }
                if !self.sh.may_resend(&d.tries, now) {
                    self.give_up(d, now);
                    continue;
                }
                first.get_or_insert(t);
                if let ServicerAction::Reply { client_msgid, .. } = &mut d.action
                    && d.tries.failed() == 0
                {
                    // the customer thinks from the due time (scenario µs),
                    // as the agent does from a message's, and measures
                    // delivery from the wall time it was due, as a message's
                    // from its intended time: stamped when it left, a reply
                    // held while the target stalled the calls before it
                    // hid the stall (found by probing: p99 4 ms with 3 %
                    // of replies held 1.5 s); a resend keeps the id, so the
                    // target knows it
                    let due_wall = self.sh.tb.wall_us_at(d.at).min(self.sh.tb.wall_us());
                    client_msgid.push_str(&format!("-{}-{}", d.at, due_wall));
                }
                // an end due already (no wrap-up left) goes right after its
                // reply: the target runs a batch in order
                let end = d.then.take_if(|e| e.at <= now);
                dues.push(d);
                dues.extend(end.map(|mut e| {
                    e.rode = true;
                    *e
                }));
            }
            if dues.is_empty() {
                continue;
            }
            let (sh, res_tx, epoch) = (self.sh.clone(), res_tx.clone(), self.epoch);
            let intended = sh.tb.instant(first.unwrap_or(now));
            tokio::spawn(async move {
                let actions: Vec<&ServicerAction> = dues.iter().map(|d| &d.action).collect();
                let body = Batch { channel_id: "", actions: &actions };
                let r: Result<BatchAnswer, CallError> = sh
                    .http
                    .call("servicer_batch", "/sim/servicer/batch", &body, intended, Duration::ZERO)
                    .await;
                drop(permit);
                let results = r.ok().map(|a| a.results_of(dues.len(), &sh.http.stats, "servicer_batch"));
                let _ = res_tx.send((dues, results, now, epoch));
            });
        }
    }

    /// Let go of the sessions of confirmed ends; send again what got no
    /// answer (it may not have arrived; the target answers a resent reply
    /// as the first time, and a resent end that had run with 95013) for
    /// `resend_for`, then give up on it. A reply's end is scheduled once
    /// the reply is settled either way; an end that left with its reply
    /// and got no answer either waits for the reply again.
    fn on_results(&mut self, dues: Vec<Due>, results: Option<Vec<ActionResult>>, sent: u64, epoch: u64) {
        let now = self.sh.tb.now_us();
        let results = results.unwrap_or_default();
        if epoch != self.epoch {
            // sent for sessions the target has forgotten since: nothing
            // follows them, but what it refused is still its answer
            for r in results.iter().filter(|r| r.errcode != 0) {
                self.sh.http.stats.action_error("servicer_batch", format!("errcode_{}", r.errcode));
            }
            return;
        }
        let mut dues = dues.into_iter().enumerate().peekable();
        while let Some((i, mut d)) = dues.next() {
            let rider = |e: &Due| e.rode && d.then.is_none() && e.session.key == d.session.key;
            let Some(r) = results.get(i) else {
                if dues.peek().is_some_and(|(j, e)| rider(e) && results.get(*j).is_none()) {
                    let (_, mut end) = dues.next().expect("peeked");
                    end.rode = false;
                    // it was sent, and may have run: its resend counts so
                    let _ = self.sh.resend_at(&mut end.tries, sent, now);
                    d.then = Some(Box::new(end));
                }
                d.rode = false;
                match self.sh.resend_at(&mut d.tries, sent, now) {
                    Some(t) => self.push(t, d),
                    None => self.give_up(d, now),
                }
                continue;
            };
            // a resent end that had run is answered 95013; a first one so
            // answered never ran, and is an error
            let done =
                r.errcode == 0 || (d.tries.failed() > 0 && d.end_of.is_some() && r.errcode == SESSION_ENDED);
            if !done {
                self.sh.http.stats.action_error("servicer_batch", format!("errcode_{}", r.errcode));
                if let ServicerAction::Transfer { servicer_userid, open_kfid, external_userid, .. } =
                    &d.action
                {
                    // the other account cannot take it (its pool is full):
                    // the servicer ends the session instead
                    let end = ServicerAction::End {
                        servicer_userid: servicer_userid.clone(),
                        open_kfid: open_kfid.clone(),
                        external_userid: external_userid.clone(),
                    };
                    let s = &d.session;
                    let session = SessionRef { agent: s.agent, key: s.key.clone(), nth: s.nth, upto: s.upto };
                    let tries = Tries::default();
                    let end_of = d.end_of;
                    self.push(
                        now,
                        Due { action: end, at: now, end_of, tries, session, then: None, rode: false },
                    );
                }
            }
            // the end of this session, not of a later one of the customer
            if let (Some(agent), true, false) = (d.end_of, done, self.stale(&d)) {
                self.hold(agent, d.session.key.clone(), false, now);
            }
            self.then(d, now);
        }
    }

    /// Schedule what follows a settled action: the end of the session
    /// after its last reply, at the end of the wrap-up (or now, if the
    /// reply took longer to get through).
    fn then(&mut self, d: Due, now: u64) {
        if let Some(end) = d.then {
            self.push(end.at.max(now), *end);
        }
    }
}

/// What a customer message's id says.
#[derive(Debug, PartialEq, Eq)]
struct MsgId {
    /// It was sent to the bot.
    to_bot: bool,
    /// The session.
    key: u64,
    /// Its index in the session.
    idx: u32,
    /// The session's messages, as planned when it was sent.
    total: u32,
    /// When it was sent [scenario µs].
    sent_us: u64,
    /// The first message people answer in its handle.
    first: u32,
    /// Its handle (0, then one more after each transfer).
    handle: u8,
}

/// `{m|b}{key}-{idx}-{total}-{sent_us}-{first}-{handle}` (`b`: sent to
/// the bot).
fn parse_id(id: &str) -> Option<MsgId> {
    let to_bot = id.starts_with('b');
    let mut parts = id.strip_prefix(if to_bot { 'b' } else { 'm' })?.split('-');
    let mut next = || parts.next();
    Some(MsgId {
        to_bot,
        key: next()?.parse().ok()?,
        idx: next()?.parse().ok()?,
        total: next()?.parse().ok()?,
        sent_us: next()?.parse().ok()?,
        first: next()?.parse().ok()?,
        handle: next()?.parse().ok()?,
    })
}

/// Set the agent's status at each shift boundary.
async fn run_shifts(userid: String, agent: u32, shifts: Vec<(u64, u64)>, sh: Arc<Shared>) {
    let set = |online: bool| {
        let sh = sh.clone();
        let userid = userid.clone();
        async move {
            let body =
                json!({"servicer_userid": userid, "status": if online { 0 } else { 1 }, "stop_type": 0});
            let _ = sh
                .http
                .post("set_status", "/sim/servicer/set_status", &body, Instant::now(), Duration::ZERO)
                .await;
            let _ = sh.obs.send(Obs::AgentOnline { t: sh.tb.now_us(), agent, online });
        }
    };
    if shifts.first().is_some_and(|s| s.0 > 0) {
        set(false).await;
    }
    for (from, to) in shifts {
        tokio::time::sleep_until(sh.tb.instant(from).into()).await;
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        set(true).await;
        tokio::time::sleep_until(sh.tb.instant(to).into()).await;
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        set(false).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::Shared;

    const S: u64 = 1_000_000;

    /// One agent of three slots, 10 s a reply at pace 1, half as fast
    /// again for each further session; the run at ×60.
    fn one_agent() -> Agents {
        let text = r#"
name = "unit"
duration = "1h"
[[account]]
name = "kf"
[[agents]]
group = "a"
count = 1
max_concurrent = 3
reply_delay = "10s"
slowdown = 0.5
[[entry]]
scene = "web"
rate = "1/min"
"#;
        let sc = Scenario::parse(text, "unit.toml").unwrap();
        let (obs, _) = mpsc::unbounded_channel();
        let sh = Shared::for_test(&sc, obs);
        Agents::new(&sc, &sh)
    }

    fn session(customer: &str, change: &str) -> Event {
        Event {
            kind: "session".into(),
            change: Some(change.into()),
            external_userid: Some(customer.into()),
            open_kfid: Some("wk0".into()),
            ..Event::default()
        }
    }

    /// Message `idx` of a two-message session `key`, sent at `sent`.
    fn message(customer: &str, key: u64, idx: u32, sent: u64) -> Event {
        Event {
            kind: "message".into(),
            sender: Some("customer".into()),
            external_userid: Some(customer.into()),
            open_kfid: Some("wk0".into()),
            client_msgid: Some(format!("m{key}-{idx}-2-{sent}-0-0")),
            ..Event::default()
        }
    }

    /// When the reply pending for the agent is due: the newest marker of
    /// its work.
    fn reply_due(a: &Agents) -> Vec<u64> {
        let working = &a.agents[0].working;
        let mut due: Vec<u64> = a
            .heap
            .iter()
            .filter_map(|Reverse(t)| match t.item {
                Item::Work(_, id, v) if working.get(&id).is_some_and(|w| w.version == v) => Some(t.t),
                _ => None,
            })
            .collect();
        due.sort_unstable();
        due
    }

    /// Under `slowdown` a reply in progress goes at the pace of the load
    /// the agent holds now, as in the simulator: a second session from 4 s
    /// on slows the 10 s of work left to 1.5× (6 s left → 9 s: due at
    /// 13 s), its end at 7 s speeds it up again (4 s of work left at 7 s:
    /// due at 11 s). Frozen at the pace of the moment the message came,
    /// it was due at 10 s whatever happened.
    #[test]
    fn a_reply_in_progress_follows_the_agents_load() {
        let mut a = one_agent();
        a.on_event(Some(0), session("c1", "assigned"), 0, 0);
        a.on_event(Some(0), message("c1", 1, 0, 0), 0, 0);
        assert_eq!(reply_due(&a), [10 * S]);
        a.on_event(Some(0), session("c2", "assigned"), 0, 4 * S);
        assert_eq!(reply_due(&a), [13 * S]);
        a.on_event(Some(0), session("c2", "ended"), 0, 7 * S);
        assert_eq!(reply_due(&a), [11 * S]);
        // the stale markers stay in the heap, to be skipped
        assert_eq!(a.heap.len(), 3);
    }

    /// A later message of a session the agent holds counts from when the
    /// customer sent it, its transit at wall length: sent at 20 s, seen
    /// 0.12 s of scenario time (2 ms of wall time at ×60) later, the reply
    /// is due 10 s after 20.002 s. A transit past 5 ms of wall time is a
    /// stall of the target's: seen 6 s (100 ms) later, only 5 ms of it is
    /// taken back (59 × 5 ms), so the agent still takes most of its time
    /// after the message came. The first message came with the assignment,
    /// whose instant the driver cannot know: from when it is seen.
    #[test]
    fn a_held_sessions_message_counts_from_its_send_not_from_its_pull() {
        let mut a = one_agent();
        a.on_event(Some(0), session("c1", "assigned"), 0, 0);
        a.on_event(Some(0), message("c1", 1, 0, 0), 0, 3 * S);
        assert_eq!(reply_due(&a), [13 * S], "the first message, from when it was seen");
        let again = |a: &mut Agents, seen: u64| {
            a.heap.clear();
            a.agents[0].working.clear();
            a.sh.ledger().clear();
            a.on_event(Some(0), message("c1", 1, 1, 20 * S), 0, seen);
            reply_due(a)
        };
        assert_eq!(again(&mut a, 20 * S + 120_000), [30 * S + 2_000]);
        assert_eq!(again(&mut a, 26 * S), [36 * S - 59 * 5_000]);
    }

    #[test]
    fn message_ids_round_trip() {
        use super::{MsgId, parse_id};
        let m = MsgId { to_bot: false, key: 12, idx: 3, total: 5, sent_us: 987_654, first: 0, handle: 0 };
        assert_eq!(parse_id("m12-3-5-987654-0-0"), Some(m));
        let b = MsgId { to_bot: true, key: 7, idx: 1, total: 4, sent_us: 9, first: 2, handle: 1 };
        assert_eq!(parse_id("b7-1-4-9-2-1"), Some(b));
        assert_eq!(parse_id("r12-3-5"), None);
        assert_eq!(parse_id("m12-x-5-1-0-0"), None);
        assert_eq!(parse_id("m12-3-5-1"), None, "a field missing");
    }
}
