//! The discrete-event engine: the session model in virtual time.
//!
//! Time is integer microseconds. Events sit in a binary heap keyed by
//! `(time, sequence)`, so events at the same instant run in the order they
//! were scheduled, and a run is a pure function of the scenario and its seed.
//!
//! A session has at most one pending event at a time (abandon, reply, next
//! message, end of wrap-up). Superseding it (an assignment cancels the
//! abandon; a load change moves a reply) bumps the session's generation, and
//! stale events are dropped when popped: cheaper than deleting from a heap.
//!
//! Memory is proportional to sessions in flight and agents: sessions live in
//! a slab whose slots are reused, and every result leaves through the
//! [`Observer`] as it happens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::metrics::{Measured, Metrics};
use crate::observe::{Obs, Observer, Progress, RunStats, SessionInfo};
use crate::reception::{Assignment, Routed, Router, policy_for};
use crate::scenario::Scenario;
use crate::summary::Summary;
use crate::workload::{CustomerMemory, EntryBehaviour, Stream, TimeSampler, stream, unit};

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
enum Kind {
    Arrival,
    Abandon,
    Reply,
    NextMessage,
    WrapDone,
    ShiftOn,
    ShiftOff,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    t: u64,
    seq: u64,
    id: u32,
    gen_: u32,
    kind: Kind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.t == other.t && self.seq == other.seq
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        other.t.cmp(&self.t).then(other.seq.cmp(&self.seq))
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
    /// The slot holds no session.
    Free,
}

#[derive(Debug, Clone)]
struct Session {
    info: SessionInfo,
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
    phase: Phase,
}

struct AgentRt {
    account: u16,
    local: u32,
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
}

struct AccountRt {
    router: Router<u32>,
    /// Local index → global agent index.
    agents: Vec<u32>,
    memory: Option<CustomerMemory>,
    prefer_last: bool,
    prefer_within_us: u64,
}

struct Simulation<'a, O: Observer> {
    obs: &'a mut O,
    now: u64,
    seq: u64,
    heap: BinaryHeap<Event>,
    sessions: Vec<Session>,
    free: Vec<u32>,
    agents: Vec<AgentRt>,
    groups: Vec<GroupRt>,
    entries: Vec<EntryBehaviour>,
    accounts: Vec<AccountRt>,
    scratch: Vec<Assignment<u32>>,
    duration_us: u64,
    stop_at: u64,
    arrived: u64,
    in_flight: u64,
    peak_in_flight: u64,
    events: u64,
}

impl<'a, O: Observer> Simulation<'a, O> {
    fn new(sc: &Scenario, obs: &'a mut O) -> Self {
        let mut accounts: Vec<AccountRt> = sc
            .accounts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                // Customers are remembered only where it matters.
                let needed =
                    a.prefer_last_agent || sc.entries.iter().any(|e| e.account == i && e.returning > 0.0);
                AccountRt {
                    router: Router::new(policy_for(a.policy), &[], a.queue_limit),
                    agents: Vec::new(),
                    memory: needed.then(|| CustomerMemory::new(sc.customer_memory)),
                    prefer_last: a.prefer_last_agent,
                    prefer_within_us: a.prefer_last_within_us,
                }
            })
            .collect();
        let mut agents = Vec::new();
        let mut caps: Vec<Vec<u32>> = vec![Vec::new(); sc.accounts.len()];
        for (gi, g) in sc.groups.iter().enumerate() {
            for _ in 0..g.count {
                let acc = &mut accounts[g.account];
                agents.push(AgentRt {
                    account: g.account as u16,
                    local: acc.agents.len() as u32,
                    group: gi as u16,
                    sessions: Vec::new(),
                    load: 0,
                });
                acc.agents.push(agents.len() as u32 - 1);
                caps[g.account].push(g.max_concurrent);
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
            })
            .collect();
        let entries = sc.entries.iter().map(|e| EntryBehaviour::new(e, sc.seed, sc.duration_us)).collect();
        let mut engine = Simulation {
            obs,
            now: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            sessions: Vec::new(),
            free: Vec::new(),
            agents,
            groups,
            entries,
            accounts,
            scratch: Vec::new(),
            duration_us: sc.duration_us,
            stop_at: sc.drain_us.map_or(u64::MAX, |d| sc.duration_us.saturating_add(d)),
            arrived: 0,
            in_flight: 0,
            peak_in_flight: 0,
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
            engine.schedule_arrival(e);
        }
        engine
    }

    #[inline]
    fn schedule(&mut self, t: u64, kind: Kind, id: u32, gen_: u32) {
        self.seq += 1;
        self.heap.push(Event { t, seq: self.seq, id, gen_, kind });
    }

    fn schedule_arrival(&mut self, entry: usize) {
        let e = &mut self.entries[entry];
        if let Some(t) = e.arrivals.next(&mut e.arrival_rng) {
            self.schedule(t, Kind::Arrival, entry as u32, 0);
        }
    }

    fn run(&mut self, progress: &mut dyn FnMut(&Progress) -> bool) -> RunStats {
        let mut interrupted = false;
        while let Some(ev) = self.heap.pop() {
            if ev.t > self.stop_at {
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
            match ev.kind {
                Kind::Arrival => self.arrival(ev.id as usize),
                Kind::ShiftOn => self.shift(ev.id, true),
                Kind::ShiftOff => self.shift(ev.id, false),
                _ if self.sessions[ev.id as usize].gen_ != ev.gen_ => {}
                Kind::Abandon => self.abandon(ev.id),
                Kind::Reply => self.reply(ev.id),
                Kind::NextMessage => self.next_message(ev.id),
                Kind::WrapDone => self.end(ev.id),
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
            interrupted,
        }
    }

    fn alloc(&mut self, s: Session) -> u32 {
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
        let s = &mut self.sessions[sid as usize];
        s.gen_ = s.gen_.wrapping_add(1);
        s.phase = Phase::Free;
        self.free.push(sid);
    }

    fn arrival(&mut self, entry: usize) {
        self.arrived += 1;
        self.schedule_arrival(entry);
        let now = self.now;
        let e = &mut self.entries[entry];
        let account = e.account;
        let acc = &mut self.accounts[account];
        let mut prefer = None;
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
                match back {
                    Some((id, last)) => {
                        returning = true;
                        if last.agent != NO_AGENT && now.saturating_sub(last.at_us) <= acc.prefer_within_us {
                            last_agent = last.agent;
                            if acc.prefer_last {
                                prefer = Some(self.agents[last.agent as usize].local as usize);
                            }
                        }
                        id
                    }
                    None => mem.new_customer(),
                }
            }
        };
        let msgs_total = e.messages.sample(&mut e.rng);
        let msgtype = e.mix.sample(&mut e.rng);
        let info = SessionInfo { arrived_us: now, entry: entry as u16, account: account as u16 };
        let sticky_eligible = last_agent != NO_AGENT;
        self.obs.observe(Obs::Entered { s: info, returning, sticky_eligible, msgtype });
        let sid = self.alloc(Session {
            info,
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
            phase: Phase::Waiting,
        });
        match self.accounts[account].router.arrive(sid, prefer, now) {
            Routed::Assigned { agent, .. } => {
                let global = self.accounts[account].agents[agent];
                self.start(sid, global, false);
            }
            Routed::Queued(ticket) => {
                self.obs.observe(Obs::Queued { t: now, s: info });
                let s = &mut self.sessions[sid as usize];
                s.ticket = ticket.0;
                let gen_ = s.gen_;
                let e = &mut self.entries[entry];
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
        let customer = s.customer;
        self.obs.observe(Obs::Assigned { t: now, s: info, agent, kept, from_pool });
        if let Some(mem) = &mut self.accounts[info.account as usize].memory {
            mem.touch(customer, agent, now);
        }
        self.load_changed(agent, 1, Some(sid));
        self.begin_reply(sid);
    }

    /// Start the agent's work on the customer's latest message.
    fn begin_reply(&mut self, sid: u32) {
        let s = &self.sessions[sid as usize];
        let a = &self.agents[s.agent as usize];
        let g = &mut self.groups[a.group as usize];
        let work = g.reply.sample(&mut g.rng);
        let factor = 1.0 + g.slowdown * (a.load.max(1) - 1) as f64;
        let s = &mut self.sessions[sid as usize];
        s.phase = Phase::Replying;
        s.work_left = work as f64;
        s.since_us = self.now;
        s.gen_ = s.gen_.wrapping_add(1);
        let gen_ = s.gen_;
        let delay = if factor == 1.0 { work } else { (work as f64 * factor).ceil() as u64 };
        self.schedule(self.now.saturating_add(delay), Kind::Reply, sid, gen_);
    }

    fn reply(&mut self, sid: u32) {
        let now = self.now;
        let s = &mut self.sessions[sid as usize];
        let (info, agent, index, sent) = (s.info, s.agent, s.msg_idx, s.msg_sent_us);
        s.phase = Phase::Idle;
        s.gen_ = s.gen_.wrapping_add(1);
        let gen_ = s.gen_;
        let last = s.msg_idx + 1 >= s.msgs_total;
        self.obs.observe(Obs::Reply { t: now, s: info, agent, index, sent_us: sent, first: index == 0 });
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
        let (info, agent, customer) = (s.info, s.agent, s.customer);
        self.obs.observe(Obs::Ended { t: now, s: info, agent });
        let acc = &mut self.accounts[info.account as usize];
        if let Some(mem) = &mut acc.memory {
            mem.touch(customer, agent, now);
        }
        self.release_slot(sid);
        self.load_changed(agent, -1, Some(sid));
        let local = self.agents[agent as usize].local as usize;
        let acc = &mut self.accounts[info.account as usize];
        if let Some(next) = acc.router.release(local, now) {
            let global = acc.agents[next.agent];
            self.start(next.item, global, true);
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
        let a = &self.agents[agent as usize];
        let acc = &mut self.accounts[a.account as usize];
        let mut out = std::mem::take(&mut self.scratch);
        acc.router.set_online(a.local as usize, online, now, &mut out);
        for next in out.drain(..) {
            let global = self.accounts[self.agents[agent as usize].account as usize].agents[next.agent];
            self.start(next.item, global, true);
        }
        self.scratch = out;
    }

    /// Account for a change of `delta` in the agent's load. With slowdown,
    /// every reply in progress on the agent is rescaled: work done so far is
    /// credited at the old rate, the rest is rescheduled at the new rate.
    fn load_changed(&mut self, agent: u32, delta: i32, sid: Option<u32>) {
        let now = self.now;
        let a = &mut self.agents[agent as usize];
        let old = a.load;
        a.load = old.checked_add_signed(delta).expect("agent load below zero");
        let new = a.load;
        self.obs.observe(Obs::AgentLoad { t: now, agent, load: new });
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
            let t = now.saturating_add((s.work_left * new_f).ceil() as u64);
            self.schedule(t, Kind::Reply, h, gen_);
        }
        self.agents[agent as usize].sessions = held;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run with natural arrivals removed and these arrival times instead.
    fn run_arrivals(text: &str, at_us: &[u64]) -> Vec<Obs> {
        let sc = Scenario::parse(text, "t.toml").unwrap();
        let mut seen = Vec::new();
        let mut obs = |o: Obs| seen.push(o);
        let mut engine = Simulation::new(&sc, &mut obs);
        engine.heap.retain(|e| e.kind != Kind::Arrival);
        for &t in at_us {
            engine.schedule(t, Kind::Arrival, 0, 0);
        }
        engine.run(&mut |_| true);
        seen
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
