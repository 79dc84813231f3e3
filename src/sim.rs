//! The discrete-event engine: the session model in virtual time.
//!
//! Time is integer microseconds. Events sit in a 4-ary heap (half the
//! levels of a binary one: popping is the engine's largest cost) keyed by
//! `(time, sequence)`, so events at the same instant run in the order they
//! were scheduled, and a run is a pure function of the scenario and its seed.
//!
//! A session has at most one pending event at a time (abandon, reply, next
//! message, end of wrap-up). Superseding it (an assignment cancels the
//! abandon; a load change moves a reply) bumps the session's generation, and
//! stale events are dropped when popped: cheaper than deleting from a heap.
//!
//! The event being handled stays at the top of the heap until its handler
//! schedules: the first event it schedules takes its place and sifts down
//! once, instead of a pop (down to the bottom and back up) and a push. Most
//! handlers schedule exactly one event. The set of pending events, and so
//! the order they run in, is the same either way.
//!
//! Arrivals wait apart, in a heap of their own with one event per entry
//! point that still has arrivals: the next event is the earlier of its top
//! and the main heap's by the same `(time, sequence)` key, so events run in
//! the order one heap of both would give. An arrival's handler replaces it
//! with the entry's next one, in a heap of a few events (one in most
//! scenarios) instead of one of every session's pending event.
//!
//! A run ends when no event is left, when `drain` runs out after the
//! duration, or once the arrivals are over and no session is open: what
//! is left then (superseded timers, shift changes) changes no figure.
//!
//! Memory is proportional to sessions in flight and agents: sessions live in
//! a slab whose slots are reused, and every result leaves through the
//! [`Observer`] as it happens.

use std::cmp::Ordering;

use dary_heap::QuaternaryHeap;

use crate::metrics::{Measured, Metrics};
use crate::observe::{Obs, Observer, Progress, RunStats, SessionInfo};
use crate::reception::{Assignment, Routed, Router, policy_for};
use crate::scenario::Scenario;
use crate::summary::Summary;
use crate::workload::{
    CountSampler, CustomerMemory, EntryBehaviour, RoutePicker, Stream, TimeSampler, ceil_u64, stream, unit,
};

pub use crate::scenario::MAX_TRANSFERS;

/// Most sessions in flight at once: past it an arrival is refused
/// (observed as rejected, counted in [`RunStats::shed`]). Only a load far
/// beyond the agents with neither a pool limit nor patience gets there,
/// where the pool would otherwise grow with the run until memory ran out
/// (about 400 bytes a waiting session).
pub const MAX_IN_FLIGHT: u64 = 1_000_000;

/// The simulator's clock horizon [µs], about 146 000 years: the run stops
/// at the first event past it, as at the end of a `drain`, and says so
/// ([`RunStats::horizon`]). A duration in a scenario is at most 1e17 µs and
/// a sampled one at most 1e15, so `now + draw` stays below `u64::MAX` and
/// no event time saturates: sessions that would outlive the horizon (a
/// million messages a year apart) leave faithful figures of what ran by
/// then, instead of events piled at the clock's end.
pub const HORIZON_US: u64 = 1 << 62;

/// Events between two progress callbacks.
pub const PROGRESS_EVERY: u64 = 1 << 18;

/// Simulate `scenario` to the end and summarise it.
pub fn simulate(scenario: &Scenario) -> Summary {
    let mut metrics = Metrics::new(scenario);
    let stats = run(scenario, &mut metrics);
    metrics.finish(scenario, &stats)
}

/// Simulate `scenario` with a progress callback (see [`run_with_progress`]):
/// the summary, the time series and the histograms of what ran.
pub fn simulate_measured(scenario: &Scenario, progress: &mut dyn FnMut(&Progress) -> bool) -> Measured {
    let mut metrics = Metrics::new(scenario);
    let stats = run_with_progress(scenario, &mut metrics, progress);
    metrics.finish_all(scenario, &stats, None)
}

/// Run `scenario` to the end, sending every observation to `obs`.
pub fn run<O: Observer>(scenario: &Scenario, obs: &mut O) -> RunStats {
    run_with_progress(scenario, obs, &mut |_| true)
}

/// Run `scenario`, calling `progress` every [`PROGRESS_EVERY`] events; the
/// run stops early (and says so) when it returns `false`.
pub fn run_with_progress<O: Observer>(
    scenario: &Scenario,
    obs: &mut O,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> RunStats {
    let mut engine = Simulation::new(scenario, obs);
    engine.run(progress)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Arrival,
    Abandon,
    Reply,
    NextMessage,
    WrapDone,
    BotReply,
    BotMessage,
    ShiftOn,
    ShiftOff,
}

const KINDS: [Kind; 9] = [
    Kind::Arrival,
    Kind::Abandon,
    Kind::Reply,
    Kind::NextMessage,
    Kind::WrapDone,
    Kind::BotReply,
    Kind::BotMessage,
    Kind::ShiftOn,
    Kind::ShiftOff,
];

/// A pending event, 24 bytes: the kind rides in the low bits of the
/// sequence number (which alone orders events of one instant), so the heap
/// moves a third less memory than with a separate field.
#[derive(Debug, Clone, Copy)]
struct Event {
    t: u64,
    /// `seq << 4 | kind`.
    seq_kind: u64,
    id: u32,
    gen_: u32,
}

impl Event {
    #[inline]
    fn kind(&self) -> Kind {
        KINDS[(self.seq_kind & 0xf) as usize]
    }

    /// `(t, seq)` as one number: compared without a branch per field.
    #[inline(always)]
    fn key(&self) -> u128 {
        (self.t as u128) << 64 | self.seq_kind as u128
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Event {}
// Reversed, so that the heap (a max-heap) pops the earliest. The heap
// compares with `<=` and `<`: each is one wide comparison, not an Ordering.
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
    #[inline(always)]
    fn lt(&self, other: &Self) -> bool {
        other.key() < self.key()
    }
    #[inline(always)]
    fn le(&self, other: &Self) -> bool {
        other.key() <= self.key()
    }
    #[inline(always)]
    fn gt(&self, other: &Self) -> bool {
        other.key() > self.key()
    }
    #[inline(always)]
    fn ge(&self, other: &Self) -> bool {
        other.key() >= self.key()
    }
}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

const NO_AGENT: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    /// The agent is working on the customer's latest message.
    Replying,
    /// The customer is writing the next message, or the agent is wrapping up.
    Idle,
    /// With the bot (state 1): its answer or the customer's next message
    /// is pending.
    Bot,
    /// The slot holds no session.
    Free,
}

#[derive(Debug, Clone)]
struct Session {
    info: SessionInfo,
    /// The entry's own account, whose memory knows the customer.
    home: u16,
    customer: u64,
    ticket: u64,
    msg_sent_us: u64,
    /// Reply work still to do, at concurrency 1 [µs], as of `since_us`.
    work_left: f64,
    since_us: u64,
    agent: u32,
    /// The agent of the customer's last session, if within the window.
    last_agent: u32,
    gen_: u32,
    msgs_total: u32,
    msg_idx: u32,
    /// Bot answers still to come before the bot resolves or hands over.
    bot_turns: u32,
    phase: Phase,
    /// The customer got an answer (from the bot or a person).
    answered: bool,
    /// The bot will resolve the session rather than hand it over.
    bot_resolves: bool,
    /// This handle ends in a transfer once the agent answers.
    transferring: bool,
}

struct AgentRt {
    account: u16,
    local: u32,
    /// Further (account, local index) memberships of a shared servicer,
    /// in order of priority after `account`.
    also: Vec<(u16, u32)>,
    group: u16,
    /// Sessions held (needed only to rescale replies when slowdown > 0).
    sessions: Vec<u32>,
    load: u32,
}

struct GroupRt {
    reply: TimeSampler,
    wrap_up: TimeSampler,
    slowdown: f64,
    rng: Stream,
    transfer: Option<TransferRt>,
}

struct TransferRt {
    to: u16,
    share: f64,
    after: TimeSampler,
    rng: Stream,
}

struct BotRt {
    reply: TimeSampler,
    resolve: f64,
    turns: CountSampler,
    rng: Stream,
}

struct AccountRt {
    router: Router<u32>,
    /// Local index → global agent index.
    agents: Vec<u32>,
    memory: Option<CustomerMemory>,
    prefer_last: bool,
    prefer_within_us: u64,
    bot: Option<BotRt>,
}

struct Simulation<'a, O: Observer> {
    obs: &'a mut O,
    now: u64,
    seq: u64,
    heap: QuaternaryHeap<Event>,
    /// The heap's top is the event being handled, not yet removed.
    top_handled: bool,
    /// Each entry's next arrival, if it has one (see the module's doc).
    arrivals: QuaternaryHeap<Event>,
    /// The key of the top of `arrivals` (`u128::MAX` once they are over),
    /// compared with the main heap's top at every event.
    arrival_key: u128,
    sessions: Vec<Session>,
    free: Vec<u32>,
    agents: Vec<AgentRt>,
    groups: Vec<GroupRt>,
    entries: Vec<EntryBehaviour>,
    /// Per entry: its `route` rules, if any.
    routes: Vec<Option<RoutePicker>>,
    accounts: Vec<AccountRt>,
    scratch: Vec<Assignment<u32>>,
    /// Some group slows down with load (replies in progress are rescaled).
    slowdown: bool,
    duration_us: u64,
    /// The run stops at the first event after this: the end of `drain`
    /// while a session is open, the duration (or now, if later) while none
    /// is (see [`Simulation::release_slot`]).
    stop_at: u64,
    /// The end of `drain`, or the [`HORIZON_US`].
    drain_end: u64,
    arrived: u64,
    in_flight: u64,
    peak_in_flight: u64,
    /// [`MAX_IN_FLIGHT`] (lower in tests).
    max_in_flight: u64,
    shed: u64,
    events: u64,
}

impl<'a, O: Observer> Simulation<'a, O> {
    fn new(sc: &Scenario, obs: &'a mut O) -> Self {
        let mut accounts: Vec<AccountRt> = sc
            .accounts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                // Customers are remembered only where it matters: by their
                // entry's account, wherever a rule routes them.
                let homed = || sc.entries.iter().filter(|e| e.account == i);
                let needed = a.prefer_last_agent
                    || homed().any(|e| e.returning > 0.0)
                    || homed().any(|e| e.route.iter().any(|r| sc.accounts[r.account].prefer_last_agent))
                    || sc.groups.iter().any(|g| g.transfer.is_some());
                AccountRt {
                    router: Router::new(policy_for(a.policy), &[], a.queue_limit),
                    agents: Vec::new(),
                    memory: needed.then(|| CustomerMemory::new(sc.customer_memory)),
                    prefer_last: a.prefer_last_agent,
                    prefer_within_us: a.prefer_last_within_us,
                    bot: a.bot.as_ref().map(|b| BotRt {
                        reply: TimeSampler::new(&b.reply_delay),
                        resolve: b.resolve,
                        turns: CountSampler::new(&b.turns),
                        rng: stream(sc.seed, &format!("bot/{}", a.name)),
                    }),
                }
            })
            .collect();
        let mut agents = Vec::new();
        let mut caps: Vec<Vec<u32>> = vec![Vec::new(); sc.accounts.len()];
        for (gi, g) in sc.groups.iter().enumerate() {
            for _ in 0..g.count {
                let global = agents.len() as u32;
                let mut member = |a: usize| {
                    accounts[a].agents.push(global);
                    caps[a].push(g.max_concurrent);
                    (a as u16, accounts[a].agents.len() as u32 - 1)
                };
                let (account, local) = member(g.account);
                let also = g.also.iter().map(|&a| member(a)).collect();
                agents.push(AgentRt {
                    account,
                    local,
                    also,
                    group: gi as u16,
                    sessions: Vec::new(),
                    load: 0,
                });
            }
        }
        for (acc, (caps, a)) in accounts.iter_mut().zip(caps.iter().zip(&sc.accounts)) {
            acc.router = Router::new(policy_for(a.policy), caps, a.queue_limit);
        }
        let groups = sc
            .groups
            .iter()
            .map(|g| GroupRt {
                reply: TimeSampler::new(&g.reply_delay),
                wrap_up: TimeSampler::new(&g.wrap_up),
                slowdown: g.slowdown,
                rng: stream(sc.seed, &format!("replies/{}", g.group)),
                transfer: g.transfer.as_ref().map(|t| TransferRt {
                    to: t.to as u16,
                    share: t.share,
                    after: TimeSampler::new(&t.after),
                    rng: stream(sc.seed, &format!("transfers/{}", g.group)),
                }),
            })
            .collect();
        let entries = sc.entries.iter().map(|e| EntryBehaviour::new(e, sc.seed, sc.duration_us)).collect();
        let routes = sc.entries.iter().map(|e| RoutePicker::new(e, sc.seed)).collect();
        let mut engine = Simulation {
            obs,
            now: 0,
            seq: 0,
            heap: QuaternaryHeap::new(),
            top_handled: false,
            arrivals: QuaternaryHeap::new(),
            arrival_key: u128::MAX,
            sessions: Vec::new(),
            free: Vec::new(),
            agents,
            groups,
            entries,
            routes,
            accounts,
            scratch: Vec::new(),
            slowdown: sc.groups.iter().any(|g| g.slowdown != 0.0),
            duration_us: sc.duration_us,
            // no session is open yet
            stop_at: sc.duration_us,
            drain_end: sc.drain_us.map_or(HORIZON_US, |d| sc.duration_us.saturating_add(d).min(HORIZON_US)),
            arrived: 0,
            in_flight: 0,
            peak_in_flight: 0,
            max_in_flight: MAX_IN_FLIGHT,
            shed: 0,
            events: 0,
        };
        let mut agent = 0u32;
        for g in &sc.groups {
            for _ in 0..g.count {
                if g.online.is_empty() {
                    engine.schedule(0, Kind::ShiftOn, agent, 0);
                }
                for &(from, to) in &g.online {
                    engine.schedule(from, Kind::ShiftOn, agent, 0);
                    engine.schedule(to, Kind::ShiftOff, agent, 0);
                }
                agent += 1;
            }
        }
        for e in 0..engine.entries.len() {
            if let Some(ev) = engine.next_arrival(e) {
                engine.arrivals.push(ev);
            }
        }
        engine.arrivals_moved();
        engine
    }

    /// An event to schedule, with the next sequence number.
    #[inline]
    fn event(&mut self, t: u64, kind: Kind, id: u32, gen_: u32) -> Event {
        self.seq += 1;
        Event { t, seq_kind: self.seq << 4 | kind as u64, id, gen_ }
    }

    #[inline]
    fn schedule(&mut self, t: u64, kind: Kind, id: u32, gen_: u32) {
        let ev = self.event(t, kind, id, gen_);
        if self.top_handled {
            self.top_handled = false;
            // the PeekMut sifts the new event down when dropped
            if let Some(mut top) = self.heap.peek_mut() {
                *top = ev;
            }
        } else {
            self.heap.push(ev);
        }
    }

    /// After every change of `arrivals`: the loop reads the key, not the heap.
    #[inline]
    fn arrivals_moved(&mut self) {
        self.arrival_key = self.arrivals.peek().map_or(u128::MAX, Event::key);
    }

    /// Entry `entry`'s next arrival, if it has one before the end.
    #[inline]
    fn next_arrival(&mut self, entry: usize) -> Option<Event> {
        let e = &mut self.entries[entry];
        let t = e.arrivals.next(&mut e.arrival_rng)?;
        Some(self.event(t, Kind::Arrival, entry as u32, 0))
    }

    fn run(&mut self, progress: &mut dyn FnMut(&Progress) -> bool) -> RunStats {
        let mut interrupted = false;
        let mut horizon = false;
        loop {
            if self.top_handled {
                self.top_handled = false;
                self.heap.pop();
            }
            let ev = match self.heap.peek() {
                Some(&ev) if ev.key() < self.arrival_key => {
                    self.top_handled = true;
                    ev
                }
                // an arrival makes way for the next in `arrivals` itself
                _ => match self.arrivals.peek() {
                    Some(&a) => a,
                    None => break,
                },
            };
            if ev.t > self.stop_at {
                // a session is open and the clock, not a drain, stops it
                // (a stale timer past the horizon after the last session
                // ended stops nothing)
                horizon = self.stop_at == HORIZON_US;
                break;
            }
            self.now = ev.t;
            self.events += 1;
            if self.events % PROGRESS_EVERY == 0 {
                let p = Progress {
                    now_us: self.now,
                    sessions: self.arrived,
                    in_flight: self.in_flight,
                    ..Progress::default()
                };
                if !progress(&p) {
                    interrupted = true;
                    break;
                }
            }
            match ev.kind() {
                Kind::Arrival => self.arrival(ev.id as usize),
                Kind::ShiftOn => self.shift(ev.id, true),
                Kind::ShiftOff => self.shift(ev.id, false),
                _ if self.sessions[ev.id as usize].gen_ != ev.gen_ => {}
                Kind::Abandon => self.abandon(ev.id),
                Kind::Reply => self.reply(ev.id),
                Kind::NextMessage => self.next_message(ev.id),
                Kind::WrapDone => self.end(ev.id),
                Kind::BotReply => self.bot_reply(ev.id),
                Kind::BotMessage => self.bot_message(ev.id),
            }
        }
        // A finished run covers the whole scenario even if the last event
        // came early; an interrupted one covers only what ran.
        let end = if interrupted { self.now } else { self.now.max(self.duration_us) };
        for s in &self.sessions {
            if s.phase == Phase::Waiting {
                self.obs.observe(Obs::Unfinished { t: end, s: s.info });
            }
        }
        RunStats {
            end_us: end,
            events: self.events,
            sessions: self.arrived,
            peak_in_flight: self.peak_in_flight,
            shed: self.shed,
            interrupted,
            horizon,
        }
    }

    fn alloc(&mut self, s: Session) -> u32 {
        if self.in_flight == 0 {
            self.stop_at = self.drain_end;
        }
        self.in_flight += 1;
        self.peak_in_flight = self.peak_in_flight.max(self.in_flight);
        match self.free.pop() {
            Some(i) => {
                // Generations keep counting across a slot's lives, so an event
                // left over from an earlier session never matches a later one.
                let gen_ = self.sessions[i as usize].gen_;
                self.sessions[i as usize] = Session { gen_, ..s };
                i
            }
            None => {
                self.sessions.push(s);
                self.sessions.len() as u32 - 1
            }
        }
    }

    fn release_slot(&mut self, sid: u32) {
        self.in_flight -= 1;
        if self.in_flight == 0 {
            // After the arrivals, with no session open, nothing left can
            // change a figure: a superseded timer (an abandonment the
            // assignment cancelled) or a shift change would only move the
            // run's end, and with it the series, as far as it reached.
            self.stop_at = self.stop_at.min(self.now.max(self.duration_us));
        }
        let s = &mut self.sessions[sid as usize];
        s.gen_ = s.gen_.wrapping_add(1);
        s.phase = Phase::Free;
        let (home, customer) = (s.home as usize, s.customer);
        self.free.push(sid);
        if let Some(mem) = &mut self.accounts[home].memory {
            mem.close(customer);
        }
    }

    /// The arrival at the top of `arrivals`. The entry's next arrival takes
    /// its place before anything else is scheduled, so that sequence numbers
    /// (which order the events of one instant) are taken as one heap of all
    /// events would take them.
    fn arrival(&mut self, entry: usize) {
        self.arrived += 1;
        match self.next_arrival(entry) {
            // the PeekMut sifts the next arrival down when dropped
            Some(next) => *self.arrivals.peek_mut().expect("the arrival being handled") = next,
            None => {
                self.arrivals.pop();
            }
        }
        self.arrivals_moved();
        let now = self.now;
        let e = &mut self.entries[entry];
        let home = e.account;
        let acc = &mut self.accounts[home];
        let mut returning = false;
        let mut last_agent = NO_AGENT;
        let customer = match &mut acc.memory {
            None => 0,
            Some(mem) => {
                let back = if e.returning > 0.0 && unit(&mut e.rng) < e.returning {
                    mem.returning(&mut e.rng)
                } else {
                    None
                };
                // one session per customer at a time (as the live engine
                // and WeCom): a customer still in a session comes back as
                // a new one
                match back.filter(|(_, last)| last.open == 0) {
                    Some((id, last)) => {
                        returning = true;
                        if last.agent != NO_AGENT && now.saturating_sub(last.at_us) <= acc.prefer_within_us {
                            last_agent = last.agent;
                        }
                        id
                    }
                    None => mem.new_customer(),
                }
            }
        };
        let msgs_total = e.messages.sample(&mut e.rng);
        let msgtype = e.mix.sample(&mut e.rng);
        let account = match &mut self.routes[entry] {
            None => home,
            Some(r) => r.pick(returning, home),
        };
        let info =
            SessionInfo::arriving(now, entry as u16, account as u16, self.accounts[account].bot.is_some());
        let sticky_eligible = last_agent != NO_AGENT;
        self.obs.observe(Obs::Entered { s: info, returning, sticky_eligible, msgtype });
        if self.in_flight >= self.max_in_flight {
            self.shed += 1;
            self.obs.observe(Obs::Rejected { t: now, s: info });
            return;
        }
        let sid = self.alloc(Session {
            info,
            home: home as u16,
            customer,
            ticket: 0,
            msg_sent_us: now,
            work_left: 0.0,
            since_us: now,
            agent: NO_AGENT,
            last_agent,
            gen_: 0,
            msgs_total,
            msg_idx: 0,
            bot_turns: 0,
            phase: Phase::Waiting,
            answered: false,
            bot_resolves: false,
            transferring: false,
        });
        if let Some(mem) = &mut self.accounts[home].memory {
            mem.open(customer);
        }
        let Some(bot) = &mut self.accounts[account].bot else {
            self.route(sid);
            return;
        };
        let turns = bot.turns.sample(&mut bot.rng).max(1);
        let resolves = bot.resolve > 0.0 && unit(&mut bot.rng) < bot.resolve;
        let delay = bot.reply.sample(&mut bot.rng);
        let s = &mut self.sessions[sid as usize];
        s.phase = Phase::Bot;
        s.bot_turns = turns;
        s.bot_resolves = resolves;
        let gen_ = s.gen_;
        self.schedule(now.saturating_add(delay), Kind::BotReply, sid, gen_);
    }

    /// The agent's index within `account`, if it serves that account.
    fn local_in(&self, agent: u32, account: usize) -> Option<usize> {
        let a = &self.agents[agent as usize];
        if a.account as usize == account {
            return Some(a.local as usize);
        }
        a.also.iter().find(|&&(acc, _)| acc as usize == account).map(|&(_, l)| l as usize)
    }

    /// The agent's `k`-th (account, local index), in order of priority.
    #[inline]
    fn membership(&self, agent: u32, k: usize) -> (usize, usize) {
        let a = &self.agents[agent as usize];
        let (acc, local) = if k == 0 { (a.account, a.local) } else { a.also[k - 1] };
        (acc as usize, local as usize)
    }

    /// Hand session `sid` to people in its account: an agent now, the pool,
    /// or a refusal. For an arrival, a bot's hand-over and a transfer alike.
    fn route(&mut self, sid: u32) {
        let now = self.now;
        let s = &self.sessions[sid as usize];
        let info = s.info;
        let account = info.account as usize;
        let prefer = if self.accounts[account].prefer_last && s.last_agent != NO_AGENT {
            self.local_in(s.last_agent, account)
        } else {
            None
        };
        match self.accounts[account].router.arrive(sid, prefer, now) {
            Routed::Assigned { agent, .. } => {
                let global = self.accounts[account].agents[agent];
                self.start(sid, global, false);
            }
            Routed::Queued(ticket) => {
                self.obs.observe(Obs::Queued { t: now, s: info });
                let s = &mut self.sessions[sid as usize];
                s.ticket = ticket.0;
                s.phase = Phase::Waiting;
                let gen_ = s.gen_;
                let e = &mut self.entries[info.entry as usize];
                if let Some(p) = &e.patience {
                    let t = now.saturating_add(p.sample(&mut e.rng));
                    self.schedule(t, Kind::Abandon, sid, gen_);
                }
            }
            Routed::Rejected => {
                self.obs.observe(Obs::Rejected { t: now, s: info });
                self.release_slot(sid);
            }
        }
    }

    /// The bot answered the customer's latest message.
    fn bot_reply(&mut self, sid: u32) {
        let now = self.now;
        let s = &mut self.sessions[sid as usize];
        let first = !s.answered;
        s.answered = true;
        s.bot_turns -= 1;
        let info = s.info;
        self.obs.observe(Obs::BotReply { t: now, s: info, first });
        let s = &mut self.sessions[sid as usize];
        if s.bot_turns > 0 {
            s.gen_ = s.gen_.wrapping_add(1);
            let gen_ = s.gen_;
            let e = &mut self.entries[info.entry as usize];
            let think = e.think.sample(&mut e.rng);
            self.schedule(now.saturating_add(think), Kind::BotMessage, sid, gen_);
        } else if s.bot_resolves {
            self.obs.observe(Obs::BotEnded { t: now, s: info });
            self.release_slot(sid);
        } else {
            // the customer's request for a person is what the agent answers first
            s.info.human_us = now;
            s.info.bot = false;
            s.msg_sent_us = now;
            let info = s.info;
            self.obs.observe(Obs::Handoff { t: now, s: info });
            self.route(sid);
        }
    }

    /// The customer wrote to the bot again.
    fn bot_message(&mut self, sid: u32) {
        let now = self.now;
        let s = &mut self.sessions[sid as usize];
        s.gen_ = s.gen_.wrapping_add(1);
        let (info, gen_) = (s.info, s.gen_);
        let e = &mut self.entries[info.entry as usize];
        let msgtype = e.mix.sample(&mut e.rng);
        self.obs.observe(Obs::Message { t: now, s: info, msgtype });
        let bot =
            self.accounts[info.account as usize].bot.as_mut().expect("a bot session's account has a bot");
        let delay = bot.reply.sample(&mut bot.rng);
        self.schedule(now.saturating_add(delay), Kind::BotReply, sid, gen_);
    }

    /// Give session `sid` to agent `agent` (the router already counted it).
    fn start(&mut self, sid: u32, agent: u32, from_pool: bool) {
        let now = self.now;
        let s = &mut self.sessions[sid as usize];
        s.agent = agent;
        // Measured whether or not the account prefers the last agent, so
        // that runs with and without the rule can be compared.
        let kept = agent == s.last_agent;
        s.gen_ = s.gen_.wrapping_add(1);
        let info = s.info;
        let (customer, home) = (s.customer, s.home as usize);
        self.obs.observe(Obs::Assigned { t: now, s: info, agent, kept, from_pool });
        if let Some(mem) = &mut self.accounts[home].memory {
            mem.touch(customer, agent, now);
        }
        // a servicer shared by accounts has one load: the others count it too
        let shared = self.agents[agent as usize].also.len();
        if shared > 0 {
            for k in 0..=shared {
                let (acc, local) = self.membership(agent, k);
                if acc != info.account as usize {
                    self.accounts[acc].router.occupy(local);
                }
            }
        }
        let g = &mut self.groups[self.agents[agent as usize].group as usize];
        if let Some(t) = &mut g.transfer
            && info.handle < MAX_TRANSFERS
            && unit(&mut t.rng) < t.share
        {
            self.sessions[sid as usize].transferring = true;
        }
        self.load_changed(agent, 1, Some(sid));
        self.begin_reply(sid);
    }

    /// Start the agent's work on the customer's latest message.
    fn begin_reply(&mut self, sid: u32) {
        let s = &self.sessions[sid as usize];
        let a = &self.agents[s.agent as usize];
        let g = &mut self.groups[a.group as usize];
        let work = match &mut g.transfer {
            Some(t) if s.transferring => t.after.sample(&mut t.rng),
            _ => g.reply.sample(&mut g.rng),
        };
        let factor = 1.0 + g.slowdown * (a.load.max(1) - 1) as f64;
        let s = &mut self.sessions[sid as usize];
        s.phase = Phase::Replying;
        s.work_left = work as f64;
        s.since_us = self.now;
        s.gen_ = s.gen_.wrapping_add(1);
        let gen_ = s.gen_;
        let delay = if factor == 1.0 { work } else { ceil_u64(work as f64 * factor) };
        self.schedule(self.now.saturating_add(delay), Kind::Reply, sid, gen_);
    }

    fn reply(&mut self, sid: u32) {
        let now = self.now;
        let s = &mut self.sessions[sid as usize];
        let (info, agent, index, sent) = (s.info, s.agent, s.msg_idx, s.msg_sent_us);
        s.phase = Phase::Idle;
        s.gen_ = s.gen_.wrapping_add(1);
        let gen_ = s.gen_;
        let first = !s.answered;
        s.answered = true;
        let last = s.msg_idx + 1 >= s.msgs_total;
        let transferring = s.transferring;
        self.obs.observe(Obs::Reply { t: now, s: info, agent, index, sent_us: sent, first });
        if transferring {
            self.transfer(sid);
            return;
        }
        if !last {
            let e = &mut self.entries[info.entry as usize];
            let think = e.think.sample(&mut e.rng);
            self.schedule(now.saturating_add(think), Kind::NextMessage, sid, gen_);
            return;
        }
        let g = &mut self.groups[self.agents[agent as usize].group as usize];
        if g.wrap_up.is_zero() {
            self.end(sid);
        } else {
            let wrap = g.wrap_up.sample(&mut g.rng);
            self.schedule(now.saturating_add(wrap), Kind::WrapDone, sid, gen_);
        }
    }

    /// 转接: the agent answered and passes the session to another account,
    /// where the customer's conversation starts again with people.
    fn transfer(&mut self, sid: u32) {
        let now = self.now;
        let s = &self.sessions[sid as usize];
        let (info, agent, customer, home) = (s.info, s.agent, s.customer, s.home as usize);
        let group = self.agents[agent as usize].group as usize;
        let to = self.groups[group].transfer.as_ref().expect("a transferring group has a transfer").to;
        self.obs.observe(Obs::Transferred { t: now, s: info, agent, to });
        if let Some(mem) = &mut self.accounts[home].memory {
            mem.touch(customer, agent, now);
        }
        self.free_agent(agent, sid);
        let e = &mut self.entries[info.entry as usize];
        let more = e.messages.sample(&mut e.rng);
        let s = &mut self.sessions[sid as usize];
        s.transferring = false;
        s.agent = NO_AGENT;
        s.info = SessionInfo { account: to, handle: info.handle + 1, human_us: now, ..info };
        s.msg_idx += 1;
        s.msgs_total = s.msg_idx + more;
        s.msg_sent_us = now;
        self.route(sid);
    }

    fn next_message(&mut self, sid: u32) {
        let now = self.now;
        let s = &mut self.sessions[sid as usize];
        s.msg_idx += 1;
        s.msg_sent_us = now;
        let info = s.info;
        let e = &mut self.entries[info.entry as usize];
        let msgtype = e.mix.sample(&mut e.rng);
        self.obs.observe(Obs::Message { t: now, s: info, msgtype });
        self.begin_reply(sid);
    }

    fn end(&mut self, sid: u32) {
        let now = self.now;
        let s = &self.sessions[sid as usize];
        let (info, agent, customer, home) = (s.info, s.agent, s.customer, s.home as usize);
        self.obs.observe(Obs::Ended { t: now, s: info, agent });
        if let Some(mem) = &mut self.accounts[home].memory {
            mem.touch(customer, agent, now);
        }
        self.release_slot(sid);
        self.free_agent(agent, sid);
    }

    /// One of the agent's sessions left it: free the slot in every account
    /// the agent serves, then serve their pools in order of priority.
    fn free_agent(&mut self, agent: u32, sid: u32) {
        let now = self.now;
        self.load_changed(agent, -1, Some(sid));
        let shared = self.agents[agent as usize].also.len();
        if shared == 0 {
            let (acc, local) = self.membership(agent, 0);
            let acc = &mut self.accounts[acc];
            if let Some(next) = acc.router.release(local, now) {
                let global = acc.agents[next.agent];
                self.start(next.item, global, true);
            }
            return;
        }
        for k in 0..=shared {
            let (acc, local) = self.membership(agent, k);
            self.accounts[acc].router.vacate(local);
        }
        for k in 0..=shared {
            let (acc, _) = self.membership(agent, k);
            let acc_rt = &mut self.accounts[acc];
            if let Some(next) = acc_rt.router.serve(now) {
                let global = acc_rt.agents[next.agent];
                self.start(next.item, global, true);
                break;
            }
        }
    }

    fn abandon(&mut self, sid: u32) {
        let s = &self.sessions[sid as usize];
        let info = s.info;
        let taken = self.accounts[info.account as usize].router.abandon(crate::reception::Ticket(s.ticket));
        debug_assert_eq!(taken, Some(sid), "an abandoning session must be in the pool");
        self.obs.observe(Obs::Abandoned { t: self.now, s: info });
        self.release_slot(sid);
    }

    fn shift(&mut self, agent: u32, online: bool) {
        let now = self.now;
        self.obs.observe(Obs::AgentOnline { t: now, agent, online });
        for k in 0..=self.agents[agent as usize].also.len() {
            let (acc, local) = self.membership(agent, k);
            let mut out = std::mem::take(&mut self.scratch);
            self.accounts[acc].router.set_online(local, online, now, &mut out);
            for next in out.drain(..) {
                let global = self.accounts[acc].agents[next.agent];
                self.start(next.item, global, true);
            }
            self.scratch = out;
        }
    }

    /// Account for a change of `delta` in the agent's load. With slowdown,
    /// every reply in progress on the agent is rescaled: work done so far is
    /// credited at the old rate, the rest is rescheduled at the new rate.
    #[inline]
    fn load_changed(&mut self, agent: u32, delta: i32, sid: Option<u32>) {
        let a = &mut self.agents[agent as usize];
        let old = a.load;
        a.load = old.checked_add_signed(delta).expect("agent load below zero");
        self.obs.observe(Obs::AgentLoad { t: self.now, agent, load: a.load });
        if self.slowdown {
            self.rescale(agent, delta, sid, old);
        }
    }

    /// [`Simulation::load_changed`] with slowdown in the scenario.
    #[inline(never)]
    fn rescale(&mut self, agent: u32, delta: i32, sid: Option<u32>, old: u32) {
        let now = self.now;
        let a = &mut self.agents[agent as usize];
        let new = a.load;
        let slowdown = self.groups[a.group as usize].slowdown;
        if slowdown == 0.0 {
            return;
        }
        match (delta > 0, sid) {
            (true, Some(s)) => a.sessions.push(s),
            (false, Some(s)) => {
                if let Some(pos) = a.sessions.iter().position(|&x| x == s) {
                    a.sessions.swap_remove(pos);
                }
            }
            _ => {}
        }
        let old_f = 1.0 + slowdown * (old.max(1) - 1) as f64;
        let new_f = 1.0 + slowdown * (new.max(1) - 1) as f64;
        if old_f == new_f {
            return;
        }
        let held = std::mem::take(&mut self.agents[agent as usize].sessions);
        for &h in &held {
            let s = &mut self.sessions[h as usize];
            if s.phase != Phase::Replying {
                continue;
            }
            s.work_left = (s.work_left - (now - s.since_us) as f64 / old_f).max(0.0);
            s.since_us = now;
            s.gen_ = s.gen_.wrapping_add(1);
            let gen_ = s.gen_;
            let t = now.saturating_add(ceil_u64(s.work_left * new_f));
            self.schedule(t, Kind::Reply, h, gen_);
        }
        self.agents[agent as usize].sessions = held;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run with these arrival times instead of the natural ones (each still
    /// draws its entry's next natural arrival, as any arrival does: the
    /// scenarios here make it fall past their end).
    fn run_arrivals(text: &str, at_us: &[u64]) -> Vec<Obs> {
        run_bounded(text, at_us, MAX_IN_FLIGHT).0
    }

    /// [`run_arrivals`] with at most `max_in_flight` sessions in flight;
    /// the observations and how the run ended.
    fn run_bounded(text: &str, at_us: &[u64], max_in_flight: u64) -> (Vec<Obs>, RunStats) {
        let sc = Scenario::parse(text, "t.toml").unwrap();
        let mut seen = Vec::new();
        let mut obs = |o: Obs| seen.push(o);
        let mut engine = Simulation::new(&sc, &mut obs);
        engine.max_in_flight = max_in_flight;
        engine.arrivals.clear();
        for &t in at_us {
            let ev = engine.event(t, Kind::Arrival, 0, 0);
            engine.arrivals.push(ev);
        }
        engine.arrivals_moved();
        let stats = engine.run(&mut |_| true);
        (seen, stats)
    }

    const ONE_AGENT: &str = r#"
name = "slowdown"
duration = "1m"
[[account]]
name = "a"
[[agents]]
count = 1
max_concurrent = 2
reply_delay = "10s"
slowdown = 1.0
[[entry]]
scene = "web"
rate = "1/d"
"#;

    fn replies(seen: &[Obs]) -> Vec<(u64, u64)> {
        seen.iter()
            .filter_map(|o| match *o {
                Obs::Reply { t, sent_us, .. } => Some((sent_us, t)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn slowdown_rescales_work_in_progress() {
        // A (t = 0) works alone for 5 s, then shares the agent with B at half
        // speed: its last 5 s of work take 10 s, so it is answered at 15 s.
        // B did 5 s of work by then and finishes the other 5 s alone at 20 s.
        let seen = run_arrivals(ONE_AGENT, &[0, 5_000_000]);
        assert_eq!(replies(&seen), [(0, 15_000_000), (5_000_000, 20_000_000)]);
    }

    /// A customer has one session with an account at a time: drawn as
    /// returning while still in one, they come as a new customer, as in the
    /// live engine (the simulator gave them a second session at once). One
    /// customer remembered, every arrival returning: the one at 5 s finds
    /// customer 0 in session; at 30 s customer 1's session (5–15 s) is over.
    #[test]
    fn a_customer_still_in_a_session_does_not_return_in_another() {
        let text = ONE_AGENT
            .replace("slowdown = 1.0", "")
            .replace("duration = \"1m\"", "duration = \"1m\"\ncustomer_memory = 1")
            .replace("rate = \"1/d\"", "rate = \"1/d\"\nreturning = 1.0");
        let seen = run_arrivals(&text, &[0, 5_000_000, 30_000_000]);
        let returning: Vec<bool> = seen
            .iter()
            .filter_map(|o| match o {
                Obs::Entered { returning, .. } => Some(*returning),
                _ => None,
            })
            .collect();
        assert_eq!(returning, [false, false, true]);
    }

    #[test]
    fn without_slowdown_replies_take_their_sampled_time() {
        let text = ONE_AGENT.replace("slowdown = 1.0", "");
        let seen = run_arrivals(&text, &[0, 5_000_000]);
        assert_eq!(replies(&seen), [(0, 10_000_000), (5_000_000, 15_000_000)]);
    }

    #[test]
    fn conversation_timeline() {
        // 2 messages, 3 s think, 4 s wrap-up, cap 1: the second customer waits
        // for the whole first conversation (10 + 3 + 10 + 4 = 27 s).
        let text = ONE_AGENT
            .replace("max_concurrent = 2", "max_concurrent = 1\nwrap_up = \"4s\"")
            .replace("rate = \"1/d\"", "rate = \"1/d\"\nmessages = 2\nthink = \"3s\"");
        let seen = run_arrivals(&text, &[0, 1_000_000]);
        let assigned: Vec<u64> = seen
            .iter()
            .filter_map(|o| match o {
                Obs::Assigned { t, .. } => Some(*t),
                _ => None,
            })
            .collect();
        assert_eq!(assigned, [0, 27_000_000]);
        assert_eq!(
            replies(&seen),
            [(0, 10_000_000), (13_000_000, 23_000_000), (1_000_000, 37_000_000), (40_000_000, 50_000_000)]
        );
        let ended: Vec<u64> =
            seen.iter().filter_map(|o| if let Obs::Ended { t, .. } = o { Some(*t) } else { None }).collect();
        assert_eq!(ended, [27_000_000, 54_000_000]);
    }

    /// The run's end with natural arrivals replaced by `at_us`.
    fn end_with_arrivals(text: &str, at_us: &[u64]) -> u64 {
        run_bounded(text, at_us, MAX_IN_FLIGHT).1.end_us
    }

    #[test]
    fn a_run_ends_with_its_last_session_not_with_timers_that_no_longer_matter() {
        // cap 1, 10 s replies: the second customer waits 9 s, so its 100 h
        // patience timer is set and then superseded; both are done at 20 s
        let text = ONE_AGENT
            .replace("max_concurrent = 2", "max_concurrent = 1")
            .replace("slowdown = 1.0", "")
            .replace("rate = \"1/d\"", "rate = \"1/d\"\npatience = \"100h\"");
        assert_eq!(end_with_arrivals(&text, &[0, 1_000_000]), 60_000_000, "the duration, 1 min");
        let late = text.replace("duration = \"1m\"", "duration = \"5s\"");
        assert_eq!(end_with_arrivals(&late, &[0, 1_000_000]), 20_000_000, "the last session's end");
        // a shift that ends long after the last session does not hold the run either
        let shift = late.replace("count = 1", "count = 1\nonline = [{ from = \"0s\", to = \"100h\" }]");
        assert!(shift.contains("online"));
        assert_eq!(end_with_arrivals(&shift, &[0, 1_000_000]), 20_000_000);
        // while a session is open, the shift's end still matters: it waits
        // in the pool for an agent who comes on line at 1 h
        let waits = late.replace("count = 1", "count = 1\nonline = [{ from = \"1h\", to = \"2h\" }]");
        assert_eq!(end_with_arrivals(&waits, &[0]), 3_600_000_000 + 10_000_000);
    }

    #[test]
    fn past_the_bound_on_sessions_in_flight_arrivals_are_refused() {
        // cap 2, 10 s replies, at most 3 in flight: of five customers a
        // second apart, two are served, one waits and two are refused
        let at: Vec<u64> = (0..5).map(|t| t * 1_000_000).collect();
        let (seen, stats) = run_bounded(&ONE_AGENT.replace("slowdown = 1.0", ""), &at, 3);
        let rejected: Vec<u64> = seen
            .iter()
            .filter_map(|o| if let Obs::Rejected { t, .. } = o { Some(*t) } else { None })
            .collect();
        assert_eq!(rejected, [3_000_000, 4_000_000]);
        assert_eq!((stats.shed, stats.peak_in_flight, stats.sessions), (2, 3, 5));
        assert_eq!(replies(&seen).len(), 3, "the three taken are answered");
    }

    /// Sessions shed at arrival by a bot's account are the bot's refusals:
    /// they were booked both as rejected by people and as still with the
    /// bot at the end (found by probing a live run whose target died), so
    /// the flow out of the bot did not add up to what went in.
    #[test]
    fn sessions_shed_while_with_the_bot_are_rejected_once() {
        let text = ONE_AGENT.replace("slowdown = 1.0", "").replace(
            "name = \"a\"\n",
            "name = \"a\"\n[account.bot]\nreply_delay = \"2s\"\nresolve = 0.0\nturns = 1\n",
        );
        // at most 3 in flight: of five customers a second apart, the last
        // two are shed while the first three are with the bot or people
        let at: Vec<u64> = (0..5).map(|t| t * 1_000_000).collect();
        let (seen, stats) = run_bounded(&text, &at, 3);
        assert_eq!(stats.shed, 2);
        let sc = Scenario::parse(&text, "t.toml").unwrap();
        let mut metrics = Metrics::new(&sc);
        for o in seen {
            metrics.observe(o);
        }
        let s = metrics.finish(&sc, &stats);
        let bot = s.bot.as_ref().unwrap();
        assert_eq!((bot.sessions, bot.handed_over, bot.rejected), (5, 3, 2), "{bot:?}");
        assert_eq!(s.sessions.rejected, 2, "still rejected sessions");
        assert_eq!(s.by_account["a"].handles.rejected, 0, "never offered to people");
        let edge = |from: &str, to: &str| {
            s.flow.iter().find(|e| e.from == from && e.to == to).map_or(0, |e| e.sessions)
        };
        assert_eq!((edge("bot:a", "rejected"), edge("bot:a", "open")), (2, 0), "{:?}", s.flow);
        assert_eq!(edge("account:a", "rejected"), 0, "{:?}", s.flow);
    }

    #[test]
    fn sessions_that_outlive_the_clock_stop_at_its_horizon() {
        // a thousand replies of a million days each would end at 8.6e19 µs,
        // past u64::MAX: each reply takes its whole time until the horizon,
        // where the run stops with the session open
        let text = ONE_AGENT
            .replace("slowdown = 1.0", "")
            .replace("reply_delay = \"10s\"", "reply_delay = \"1000000d\"")
            .replace("rate = \"1/d\"", "rate = \"1/d\"\nmessages = 1000");
        let (seen, stats) = run_bounded(&text, &[0], MAX_IN_FLIGHT);
        let reply_us = 1_000_000 * 86_400_000_000;
        let replies = replies(&seen);
        assert_eq!(replies.len() as u64, HORIZON_US / reply_us, "every reply due by the horizon, no more");
        assert!(replies.iter().all(|&(sent, t)| t - sent == reply_us), "a reply at the clock's end");
        assert!(stats.horizon && !stats.interrupted);
        assert!(stats.end_us <= HORIZON_US);
        assert!(!seen.iter().any(|o| matches!(o, Obs::Ended { .. })));
        // a run that ends in time says nothing of the horizon
        let (_, stats) = run_bounded(&text.replace("messages = 1000", "messages = 3"), &[0], MAX_IN_FLIGHT);
        assert!(!stats.horizon);
    }

    #[test]
    fn abandonment_leaves_the_pool() {
        let text = ONE_AGENT
            .replace("max_concurrent = 2", "max_concurrent = 1")
            .replace("rate = \"1/d\"", "rate = \"1/d\"\npatience = \"3s\"");
        let seen = run_arrivals(&text, &[0, 1_000_000, 2_000_000]);
        let abandoned: Vec<u64> = seen
            .iter()
            .filter_map(|o| if let Obs::Abandoned { t, .. } = o { Some(*t) } else { None })
            .collect();
        // both waiting customers give up 3 s after arriving, before the 10 s reply
        assert_eq!(abandoned, [4_000_000, 5_000_000]);
        assert!(!seen.iter().any(|o| matches!(o, Obs::Unfinished { .. })));
    }
}
