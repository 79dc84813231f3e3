//! The customer side of the live engine: an open population on one
//! simulation channel. Arrivals, next messages and abandonments are
//! scheduled in scenario time; every few milliseconds the due actions go
//! out as one batch (a request per 1000 actions, sent from its own task so
//! a slow target never holds up the schedule); one long-poll follows the
//! channel for assignments, replies and ends.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::bot::{self, Bots, Then};
use super::http::CallError;
use super::wire::{ActionResult, Batch, BatchAnswer, Content, CustomerAction, Event};
use super::{GAVE_UP, LOST, LiveOptions, MAX_MESSAGES, Queue, RESEND_WINDOW, SEEN, Shared, TAKEN, Tries};
use crate::observe::{Ending, Obs, Progress, SessionInfo};
use crate::scenario::{MSG_TYPES, Scenario};
use crate::workload::{CustomerMemory, EntryBehaviour, RoutePicker, unit};

/// How often the progress callback is asked whether to go on (wall time).
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// After the last arrival, a target that has taken no connection this
/// long (each refused, or not answered within the connect timeout) is
/// taken as down: the run stops waiting for its sessions.
pub(crate) const TARGET_DOWN_AFTER: Duration = Duration::from_secs(5);

/// How the customer side ended.
pub(crate) struct Outcome {
    pub(crate) sessions: u64,
    pub(crate) peak_in_flight: u64,
    pub(crate) interrupted: bool,
    /// Sessions counted in the summary that an agent held and that had not
    /// ended when the run stopped.
    pub(crate) open_at_end: u64,
    /// Until when the calls still in flight may be waited for: the end of
    /// the drain if every session ended before it, else now.
    pub(crate) calls_by: Instant,
}

/// An action is late when it leaves this long after its scheduled time.
const LATE: Duration = Duration::from_millis(10);
/// Actions per batch request.
const BATCH: usize = 1000;
/// Batch requests in flight at most: past it, due actions wait for
/// answers (a slow target), and arrivals falling [`SHED_AFTER`] behind are
/// shed, so the driver's memory stays bounded whatever the target does.
const MAX_BATCHES_IN_FLIGHT: usize = 256;
/// Sessions in flight at most; arrivals beyond it are shed.
const MAX_IN_FLIGHT: usize = 2_000_000;
/// An arrival this far (wall time) behind its schedule is shed.
const SHED_AFTER: Duration = Duration::from_secs(5);
/// Due actions handled per tick at most, so that a driver far behind
/// still stops when asked.
const MAX_PER_TICK: usize = 50_000;
/// The answer to a leave from a session an agent holds (and to other
/// invalid parameters).
const INVALID: i64 = 40058;
/// [`Driver::ended_with_bot`] is first swept at this size, then at twice
/// what the sweep left.
const SWEEP_ENDED_AT: usize = 1024;
/// The error kind, counted against `customer_pull`, of a target that
/// rejects a session after assigning it (a protocol violation).
pub(crate) const REJECTED_AFTER_ASSIGNED: &str = "rejected_after_assigned";

/// How a session left the bot, by the target's first word of it: the one
/// counted ([`left_bot_again`] counts any later one as the target's
/// error, `bot_{later}_after_{first}` against `customer_pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeftBot {
    Resolved,
    HandedOver,
    Rejected,
}

impl LeftBot {
    fn name(self) -> &'static str {
        match self {
            LeftBot::Resolved => "resolved",
            LeftBot::HandedOver => "handed_over",
            LeftBot::Rejected => "rejected",
        }
    }

    /// What a session note says of how its session left the bot, if
    /// anything: `queued` or `assigned` hand it to people, `rejected`
    /// refuses it, `ended` by the API (the bot's `trans` → 4) resolves it.
    fn said_by(ev: &Event) -> Option<LeftBot> {
        match ev.change.as_deref()? {
            "queued" | "assigned" => Some(LeftBot::HandedOver),
            "rejected" => Some(LeftBot::Rejected),
            "ended" if ev.reason.as_deref() == Some("api") => Some(LeftBot::Resolved),
            _ => None,
        }
    }
}

/// A sent batch: what each action was for, the target's answers, when it
/// went out (scenario µs), and the epoch it went out in.
/// A batch's actions, its answer (the results and the channel's end, see
/// [`Refusal`]), when it was sent and on which epoch's channel.
type BatchResult = (Vec<Meta>, Option<(Vec<ActionResult>, Option<u64>)>, u64, u64);

/// The target refused a customer's leave (40058) before the driver saw an
/// agent take the session. Right if the assignment was already queued for
/// the customer then: its event's `seq` is below the channel's end the
/// batch's answer gave (same epoch); a target that gives no end is given a
/// call's timeout after the refusal instead.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    at: u64,
    /// `(epoch, channel_end)`.
    end: Option<(u64, u64)>,
}

impl Refusal {
    /// The assignment (event `seq` of `epoch`'s channel, pulled at `now`)
    /// explains the refusal.
    fn explained_by(&self, seq: u64, epoch: u64, now: u64, window_us: f64) -> bool {
        match self.end {
            Some((e, end)) if e == epoch => seq < end,
            _ => now.saturating_sub(self.at) as f64 <= window_us,
        }
    }
}

/// What an action in a batch was for; a message keeps itself for a resend.
type Meta = (u64, Sent, Option<CustomerAction>);

/// What a sent action was.
#[derive(Clone, Copy)]
enum Sent {
    Enter,
    /// The message of this index.
    Message(u32),
    Leave,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Arrive(usize),
    Send(u64),
    /// Send message `.1` of session `.0` again.
    Resend(u64, u32),
    /// Leave the pool of handle `.1` (patience ran out).
    Leave(u64, u8),
    /// The session's first message was given up on this long ago: if the
    /// target has still said nothing of it, it never took it.
    Forget(u64),
}

struct Cust {
    info: SessionInfo,
    /// The entry's own account, whose memory knows the customer (a route
    /// rule or a transfer may take the session elsewhere).
    home: usize,
    /// The customer's id in its home account's memory.
    customer: u64,
    handle: String,
    /// Messages of the session so far planned: the bot's turns and the
    /// messages people answer, of every handle until now.
    total: u32,
    /// The first message people answer in this handle: the one the bot
    /// hands over, or the request a transfer carries to the next account.
    first: u32,
    /// With the bot (state 0/1): its plan and how far it got. Boxed: most
    /// sessions in flight are with people, and a driver holds 100 000s.
    bot: Option<Box<BotTurns>>,
    /// How long the customer waits in a pool before leaving.
    patience: Option<u64>,
    sent: u32,
    sent_at: Vec<u64>,
    replied: Vec<bool>,
    queued: bool,
    assigned: Option<u32>,
    last_agent: Option<u32>,
    /// Messages the target accepted.
    accepted: u32,
    /// The customer got an answer (a bot's or a servicer's).
    answered: bool,
    /// Messages to send again: index, the message, and its failed sends.
    retry: Vec<(u32, CustomerAction, Tries)>,
    /// The bot handed the session over (the target said so): a second
    /// hand-over in the same handle is the target's error.
    handed_over: bool,
    /// Failed sends of the customer's leave.
    leave_tries: Tries,
    /// The target refused the leave (40058) before the driver saw an agent
    /// take the session: an error unless the assignment was on its way.
    leave_refused: Option<Refusal>,
    /// Leaves sent and not answered yet.
    leaves_in_flight: u32,
    /// The first message was given up on without an answer: the target
    /// may have taken it (a stall, not an outage), so the customer still
    /// listens for the session, for a resend window, before counting it
    /// rejected.
    first_given_up: bool,
    /// Sends of its messages whose answers have not come back: the session
    /// is settled once they have (an answer may say the target took a
    /// message after the session was over for the customer).
    awaiting: u32,
}

/// The target's answer to one message of a batch.
enum Answer {
    /// Taken, by the target of this epoch (the batch's).
    Taken(u64),
    /// Refused: an errcode.
    Refused,
    /// None came (a timeout, a dropped connection, a 5xx, the whole batch
    /// refused): the target may or may not have taken it.
    None,
}

/// How a session is over for the driver, for the accounting of its
/// messages.
#[derive(Debug, Clone, Copy)]
enum Over {
    /// It ended, was refused, or the run stopped; if an agent held it, a
    /// message the target took before `before` (scenario µs) that no agent
    /// saw is lost.
    Ended { before: u64 },
    /// The target forgot it (it lost the run's channel): every message of
    /// it that no agent saw is lost, whether the target had taken it or it
    /// was still being sent (no target will take it now).
    Forgotten,
}

/// A session with the bot.
struct BotTurns {
    plan: bot::Plan,
    /// The delay of the bot's answer to the latest message.
    delay: u64,
    /// Messages the bot was told of.
    told: u32,
    /// Answers the customer got.
    answers: u32,
    /// When the answer to the latest message the bot was told of is due
    /// [scenario µs]: what the customer's next turn and the hand-over count
    /// from, the answer's transit at wall length.
    due: u64,
    /// When the customer got the bot's last answer: the hand-over, or the
    /// end of a resolved session.
    done_at: Option<u64>,
    /// The customer's id on the enterprise side, once the target said it:
    /// the driver's bot answers with it.
    external_userid: String,
}

struct Driver<'a> {
    sc: &'a Scenario,
    sh: &'a Arc<Shared>,
    entries: Vec<EntryBehaviour>,
    /// Each entry's contact-way scene.
    scenes: Vec<String>,
    heap: BinaryHeap<Reverse<(u64, u64, Due)>>,
    seq: u64,
    custs: HashMap<u64, Cust>,
    by_handle: HashMap<String, u64>,
    /// Per account: the customers seen, and whom they were served by.
    memory: Vec<CustomerMemory>,
    /// Per entry: its route rules.
    routes: Vec<Option<RoutePicker>>,
    bots: Bots,
    next_key: u64,
    channel: String,
    sessions: u64,
    peak: u64,
    /// Batches sent whose answers have not been handled yet.
    batches_in_flight: usize,
    /// Sessions an agent took that are over while a leave of theirs was
    /// on its way: its refusal (40058) is explained.
    held_and_gone: std::collections::HashSet<u64>,
    /// Sessions the target ended while they were with the bot, by handle,
    /// how they left it and until when (scenario µs, a call's timeout
    /// later) a note of the handle saying it left the bot is taken for the
    /// target's contradicting word rather than dropped as a stranger's: the
    /// session is gone, so that word could count nothing twice, but it is
    /// an error. A new session of the customer takes the handle back.
    ended_with_bot: HashMap<String, (LeftBot, u64)>,
    /// [`Driver::ended_with_bot`] is swept of what is past its window when
    /// it holds this many.
    sweep_ended_at: usize,
    arrivals_left: usize,
    /// Per entry, arrivals drawn so far (this shard's and the others').
    drawn: Vec<u64>,
    /// Sessions over for the driver whose messages still await answers,
    /// and how they are over.
    closing: HashMap<u64, (Cust, Over)>,
    /// The run's epoch the driver sends in, and its channel and accounts.
    epoch: u64,
    open_kfid: Vec<String>,
}

pub(crate) async fn drive(
    sc: &Scenario,
    sh: &Arc<Shared>,
    opts: &LiveOptions,
    progress: &mut super::ProgressFn<'_>,
) -> Outcome {
    let mut d = Driver::new(sc, sh);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<(u64, Vec<Event>)>();
    let (res_tx, mut res_rx) = mpsc::unbounded_channel::<BatchResult>();
    let (bot_tx, mut bot_rx) = mpsc::unbounded_channel::<bot::Done>();
    let puller = tokio::spawn(super::follow_queue(
        sh.clone(),
        ("customer_pull", "/sim/customer/pull"),
        Queue::Customers,
        move |epoch, events| ev_tx.send((epoch, events)).is_ok(),
    ));
    let mut interrupted = false;
    let mut drain_deadline: Option<Instant> = None;
    let mut drain_started = Instant::now();
    let mut asked = Instant::now() - PROGRESS_EVERY;
    let mut go_on = true;
    let mut drained;
    let timer = super::timer::PreciseTimer::new();
    let mut deadline = Instant::now();
    timer.set(deadline);
    // what an event or a bot's answer schedules may be due before the
    // deadline (a transfer's request is due at once): only then is it moved
    let sooner = |deadline: &mut Instant, wake: Instant| {
        if wake < *deadline {
            *deadline = wake;
            timer.set(wake);
        }
    };
    loop {
        tokio::select! {
            () = timer.fired() => {
                d.follow_link();
                if asked.elapsed() >= PROGRESS_EVERY {
                    asked = Instant::now();
                    let drain = drain_deadline.map(|t| (drain_started, t));
                    go_on &= progress(&d.progress(drain, None));
                }
                if !go_on && !interrupted {
                    interrupted = true;
                    d.heap.retain(|Reverse((_, _, due))| !matches!(due, Due::Arrive(_)));
                    d.arrivals_left = 0;
                    // a stop shortens a drain under way, never lengthens it
                    let grace = Instant::now() + super::interrupt_grace(opts);
                    drain_deadline = Some(drain_deadline.map_or(grace, |t| t.min(grace)));
                    drain_started = Instant::now();
                }
                d.dispatch(&res_tx);
                let now = sh.tb.now_us();
                d.bots.dispatch(now, sh, &bot_tx);
                if d.arrivals_left == 0 && drain_deadline.is_none() {
                    drain_deadline = Some(Instant::now() + opts.drain);
                    drain_started = Instant::now();
                }
                drained = d.arrivals_left == 0 && d.custs.is_empty();
                if drained || drain_deadline.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                // No session can end through a target that is down: the
                // drain waited its 30 s for nothing, silent, after a run
                // whose target died (found by probing). One that comes
                // back within TARGET_DOWN_AFTER is waited for.
                if drain_deadline.is_some()
                    && let Some(down) = sh.http.unreachable_for().filter(|&f| f >= TARGET_DOWN_AFTER)
                {
                    let drain = drain_deadline.map(|t| (drain_started, t));
                    progress(&d.progress(drain, Some(down)));
                    break;
                }
                deadline = d.next_wake(asked + PROGRESS_EVERY);
                timer.set(deadline);
            }
            Some((epoch, events)) = ev_rx.recv() => {
                d.follow_link();
                d.on_events(epoch, events);
                sooner(&mut deadline, d.next_wake(asked + PROGRESS_EVERY));
            }
            Some((actions, results, sent, epoch)) = res_rx.recv() => {
                d.follow_link();
                d.on_results(actions, results, sent, epoch);
            }
            Some(done) = bot_rx.recv() => {
                d.follow_link();
                d.bots.on_done(sh, done, sh.tb.now_us());
                sooner(&mut deadline, d.next_wake(asked + PROGRESS_EVERY));
            }
        }
    }
    // The answers of batches still in flight say what was sent; they are
    // waited for within the drain, as k6's gracefulStop bounds what runs
    // past a scenario: once the drain is over (or the target down), calls
    // in flight are cut (where they waited out their timeouts, 40 s and
    // more against a target that accepts and never answers).
    let calls_by = match drain_deadline {
        Some(t) if drained => t.min(Instant::now() + opts.timeout + Duration::from_millis(100)),
        _ => Instant::now(),
    };
    while d.batches_in_flight > 0 {
        match tokio::time::timeout_at(calls_by.into(), res_rx.recv()).await {
            Ok(Some((actions, results, sent, epoch))) => d.on_results(actions, results, sent, epoch),
            _ => break,
        }
    }
    // what is still waiting at the end never got an agent
    let end = sh.tb.now_us();
    // a message of a session still open may be on its way to the agent;
    // one sent longer than a call's timeout ago is not
    let in_transit = end.saturating_sub((opts.timeout.as_secs_f64() * 1e6 * sh.tb.scale) as u64);
    let mut open_at_end = 0;
    for (key, c) in &d.custs {
        if c.first_given_up && Driver::first_unknown(c) {
            // the target never said it took the session
            let _ = sh.obs.send(Obs::Rejected { t: end, s: c.info });
        } else if c.assigned.is_none() && c.bot.is_none() && (c.queued || c.sent > 0) {
            let _ = sh.obs.send(Obs::Unfinished { t: end, s: c.info });
        }
        open_at_end += u64::from(c.assigned.is_some() && c.info.arrived_us >= sc.warmup_us);
        settle(sh, *key, c, Over::Ended { before: in_transit });
    }
    // answers that never came say nothing more of sessions already over
    for (key, (c, over)) in &d.closing {
        settle(sh, *key, c, *over);
    }
    puller.abort();
    Outcome { sessions: d.sessions, peak_in_flight: d.peak, interrupted, open_at_end, calls_by }
}

/// The session `key` (`c`) is over for the driver (`over`): drop its
/// ledger entry and count as lost the messages no agent saw that the
/// customer gave up sending, and those the target should have handed to
/// an agent (see [`Over`]). A leave refused for a session no agent took is
/// the target's error.
fn settle(sh: &Shared, key: u64, c: &Cust, over: Over) {
    if c.leave_refused.is_some() && c.assigned.is_none() {
        // no agent took it after all: the refusal was the target's error
        sh.http.stats.action_error("customer_batch", format!("errcode_{INVALID}"));
    }
    let mut ledger = sh.ledger();
    let Some(mut flags) = ledger.remove(&key) else { return };
    let held = c.assigned.is_some();
    let (mut gave_up, mut unseen, mut may_be_seen, mut all_seen) = (0, 0, false, true);
    for (f, t) in flags.iter_mut().zip(&c.sent_at) {
        if *f & SEEN != 0 {
            continue;
        }
        all_seen = false;
        if *f & GAVE_UP != 0 {
            gave_up += 1;
            *f |= LOST;
        } else if match over {
            Over::Ended { before } => held && *f & TAKEN != 0 && *t < before,
            Over::Forgotten => true,
        } {
            unseen += 1;
            *f |= LOST;
        }
        // an agent may still see it: one held the session, or the target
        // may have taken it before it was counted lost
        may_be_seen |= held || *f & LOST != 0;
    }
    if may_be_seen {
        ledger.insert(key, flags);
    } else if all_seen {
        sh.settle_clean(key);
    }
    drop(ledger);
    let mut counts = sh.counts();
    counts.lost += gave_up + unseen;
    if matches!(over, Over::Forgotten) {
        counts.reconnects.messages_lost += unseen;
    }
}

/// A session that left the bot `first` is said to have left it `later`
/// too: the first word stands (counted again, the session would be two of
/// the bot's outcomes, or handed to people twice), and this one is the
/// target's error, `bot_{later}_after_{first}` against `customer_pull`.
fn left_bot_again(sh: &Shared, first: LeftBot, later: LeftBot) {
    sh.http.stats.action_error("customer_pull", format!("bot_{}_after_{}", later.name(), first.name()));
}

/// The handle of customer `id` of an account's memory, unique on the
/// channel — and among shards, which remember customers apart.
fn handle_of(account: usize, id: u64, shard: crate::tally::Shard) -> String {
    if shard.is_part() { format!("c{account}-{id}-s{}", shard.index) } else { format!("c{account}-{id}") }
}

impl<'a> Driver<'a> {
    /// Where the run is, for the progress callback; `drain` is when the
    /// drain began and when it ends, once the arrivals are over.
    fn progress(&self, drain: Option<(Instant, Instant)>, target_down_for: Option<Duration>) -> Progress {
        Progress {
            now_us: self.sh.tb.now_us(),
            sessions: self.sessions,
            in_flight: self.custs.len() as u64,
            errors: Some(self.sh.http.stats.errors()),
            call_p95_ms: self.sh.http.stats.p95_ms("customer_batch"),
            ending: drain.map(|(started, deadline)| Ending {
                open: self.custs.len() as u64,
                waited: started.elapsed(),
                at_most: deadline.saturating_duration_since(Instant::now()) + super::after_drain(),
                target_down_for,
            }),
        }
    }

    fn new(sc: &'a Scenario, sh: &'a Arc<Shared>) -> Driver<'a> {
        let mut entries: Vec<EntryBehaviour> =
            sc.entries.iter().map(|e| EntryBehaviour::new(e, sc.seed, sc.duration_us)).collect();
        if sh.shard.is_part() {
            // every shard draws the whole arrival stream (and keeps its
            // share), but its customers' own draws from a stream of its
            // own: the same stream in every shard would give the k-th
            // customer of each the same messages and patience
            for (rt, e) in entries.iter_mut().zip(&sc.entries) {
                rt.rng =
                    crate::workload::stream(sc.seed, &format!("customers/{}/shard {}", e.name, sh.shard));
            }
        }
        let scenes = sc
            .entries
            .iter()
            .map(|e| {
                e.name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
                    .collect()
            })
            .collect();
        let link = sh.link().clone();
        let mut d = Driver {
            sc,
            sh,
            arrivals_left: entries.len(),
            entries,
            scenes,
            heap: BinaryHeap::new(),
            seq: 0,
            custs: HashMap::new(),
            by_handle: HashMap::new(),
            memory: (0..sc.accounts.len()).map(|_| CustomerMemory::new(sc.customer_memory)).collect(),
            routes: sc.entries.iter().map(|e| RoutePicker::new(e, sc.seed)).collect(),
            bots: Bots::new(sc, sh.play_bots, &link.customers),
            next_key: 0,
            channel: link.customers,
            sessions: 0,
            peak: 0,
            batches_in_flight: 0,
            held_and_gone: Default::default(),
            ended_with_bot: HashMap::new(),
            sweep_ended_at: SWEEP_ENDED_AT,
            drawn: vec![0; sc.entries.len()],
            closing: HashMap::new(),
            epoch: link.epoch,
            open_kfid: link.open_kfid,
        };
        for e in 0..d.entries.len() {
            d.schedule_arrival(e);
        }
        d
    }

    /// Follow the run to a new epoch, if it moved on: the target forgot the
    /// run's channels, and every session it had confirmed anything of (its
    /// answer, a note, an agent) is lost with them, counted in
    /// `live.reconnects`. A session of which it had confirmed nothing is
    /// sent again on the new channel, to the accounts' new open_kfids.
    fn follow_link(&mut self) {
        if self.sh.epoch() == self.epoch {
            return;
        }
        let link = self.sh.link().clone();
        (self.epoch, self.channel, self.open_kfid) = (link.epoch, link.customers, link.open_kfid);
        self.bots.relink(link.epoch);
        let now = self.sh.tb.now_us();
        let lost: Vec<u64> =
            self.custs.iter().filter(|(_, c)| !Self::first_unknown(c)).map(|(k, _)| *k).collect();
        for key in lost {
            self.lose(key, now);
        }
    }

    /// The target forgot session `key`: one an agent held stays answered,
    /// one still waiting is unfinished; its messages are settled as
    /// forgotten.
    fn lose(&mut self, key: u64, now: u64) {
        let Some(c) = self.custs.get(&key) else { return };
        let measured = u64::from(c.info.arrived_us >= self.sc.warmup_us);
        {
            let mut counts = self.sh.counts();
            let r = &mut counts.reconnects;
            if c.assigned.is_some() {
                r.held += measured;
            } else {
                r.waiting += measured;
            }
        }
        // with the bot it never reached people (as at the end of a run)
        if c.assigned.is_none() && c.bot.is_none() {
            let _ = self.sh.obs.send(Obs::Unfinished { t: now, s: c.info });
        }
        self.finish(key, Over::Forgotten);
    }

    fn push(&mut self, t: u64, due: Due) {
        self.seq += 1;
        self.heap.push(Reverse((t, self.seq, due)));
    }

    /// The entry's next arrival of this shard: the whole stream is drawn,
    /// so that the shards together send exactly the arrivals of one run.
    fn schedule_arrival(&mut self, e: usize) {
        let rt = &mut self.entries[e];
        loop {
            match rt.arrivals.next(&mut rt.arrival_rng) {
                Some(t) => {
                    let k = self.drawn[e];
                    self.drawn[e] += 1;
                    if self.sh.shard.owns(k) {
                        self.push(t, Due::Arrive(e));
                        return;
                    }
                }
                None => {
                    self.arrivals_left -= 1;
                    return;
                }
            }
        }
    }

    /// Send every action that is due, in batches.
    /// When to dispatch next: at the next due action plus the gathering
    /// allowance (not on a tick: at ×480 a millisecond of lateness is half a
    /// second of scenario time), or at `progress`, whichever comes first.
    /// Actions whose gathering allowance is over but that could not leave
    /// (the target is slow to answer) are tried again in a millisecond; an
    /// action due but still gathering keeps its allowance (cutting it short
    /// whenever an event came made a third more, smaller batches).
    fn next_wake(&self, progress: Instant) -> Instant {
        let now = Instant::now();
        let due = match self.heap.peek() {
            Some(Reverse((t, _, _))) => match self.sh.tb.instant(*t) + self.sh.gather {
                w if w <= now => now + Duration::from_millis(1),
                w => w,
            },
            None => progress,
        };
        let bot = bot::wake(&self.bots, self.sh).map_or(progress, |t| t.max(now));
        due.min(progress).min(bot)
    }

    fn dispatch(&mut self, res_tx: &mpsc::UnboundedSender<BatchResult>) {
        let now = self.sh.tb.now_us();
        let mut actions: Vec<CustomerAction> = Vec::new();
        let mut meta: Vec<Meta> = Vec::new();
        let mut first_intended: Option<u64> = None;
        let shed_before = now.saturating_sub((SHED_AFTER.as_secs_f64() * 1e6 * self.sh.tb.scale) as u64);
        let mut handled = 0;
        while let Some(Reverse((t, _, due))) = self.heap.peek().copied() {
            if t > now || handled >= MAX_PER_TICK {
                break;
            }
            let arrival = matches!(due, Due::Arrive(_));
            let behind = t < shed_before || self.custs.len() >= MAX_IN_FLIGHT;
            if self.batches_in_flight >= MAX_BATCHES_IN_FLIGHT && !(arrival && behind) {
                // the target is slow to answer: wait for it
                break;
            }
            self.heap.pop();
            handled += 1;
            let before = actions.len();
            match due {
                Due::Arrive(e) => self.arrive(e, t, behind.then_some(now), &mut actions, &mut meta),
                Due::Send(key) => self.send(key, t, &mut actions, &mut meta),
                Due::Resend(key, idx) => {
                    if let Some(a) = self.resend(key, idx, now) {
                        meta.push((key, Sent::Message(idx), Some(a.clone())));
                        actions.push(a);
                    }
                }
                Due::Leave(key, handle) => self.leave(key, handle, &mut actions, &mut meta),
                Due::Forget(key) => {
                    if self.custs.get(&key).is_some_and(|c| c.first_given_up && Self::first_unknown(c)) {
                        let info = self.custs[&key].info;
                        let _ = self.sh.obs.send(Obs::Rejected { t: now, s: info });
                        self.forget(key);
                    }
                }
            }
            if actions.len() > before {
                first_intended.get_or_insert(t);
                let lag = self.sh.tb.instant(t).elapsed();
                let mut c = self.sh.counts();
                c.lag.record(lag.as_micros() as u64);
                if lag > LATE {
                    c.late += 1;
                }
            }
            if actions.len() >= BATCH {
                self.flush(&mut actions, &mut meta, first_intended.take(), res_tx);
            }
        }
        self.flush(&mut actions, &mut meta, first_intended, res_tx);
    }

    /// Message `idx` of session `key` to send again now, if it is still to
    /// be sent and within the resend budget (else it is given up on),
    /// addressed to the account as the target names it now (a restarted
    /// target names it anew).
    fn resend(&mut self, key: u64, idx: u32, now: u64) -> Option<CustomerAction> {
        let c = self.custs.get_mut(&key)?;
        let (_, a, tries) = c.retry.iter().find(|r| r.0 == idx)?;
        if !self.sh.may_resend(tries, now) {
            self.give_up_message(key, idx, now);
            return None;
        }
        let mut a = a.clone();
        if let CustomerAction::Message { open_kfid, .. } = &mut a {
            open_kfid.clone_from(&self.open_kfid[c.info.account as usize]);
        }
        c.awaiting += 1;
        Some(a)
    }

    fn flush(
        &mut self,
        actions: &mut Vec<CustomerAction>,
        meta: &mut Vec<Meta>,
        intended: Option<u64>,
        res_tx: &mpsc::UnboundedSender<BatchResult>,
    ) {
        if actions.is_empty() {
            return;
        }
        let actions = std::mem::take(actions);
        let meta = std::mem::take(meta);
        self.batches_in_flight += 1;
        let sh = self.sh.clone();
        let (channel, epoch) = (self.channel.clone(), self.epoch);
        let res_tx = res_tx.clone();
        let intended = self.sh.tb.instant(intended.unwrap_or(0));
        let sent = self.sh.tb.now_us();
        tokio::spawn(async move {
            let body = Batch { channel_id: &channel, actions: &actions };
            let r: Result<BatchAnswer, CallError> =
                sh.http.call("customer_batch", "/sim/customer/batch", &body, intended, Duration::ZERO).await;
            let answer = r.ok().map(|a| {
                let end = a.channel_end;
                (a.results_of(actions.len(), &sh.http.stats, "customer_batch"), end)
            });
            let _ = res_tx.send((meta, answer, sent, epoch));
        });
    }

    /// An arrival of entry `e` due at `t`. One `shed` (at that time) is
    /// drawn and observed as any other, then refused, as the simulator
    /// refuses one past its sessions in flight: it counts in `offered`, as
    /// a session nobody answered (it was the worst served, so dropping it
    /// from every figure flattered a target that stalled: found by
    /// probing), and the draws of the arrivals after it stay the
    /// simulator's.
    fn arrive(
        &mut self,
        e: usize,
        t: u64,
        shed: Option<u64>,
        actions: &mut Vec<CustomerAction>,
        meta: &mut Vec<Meta>,
    ) {
        self.schedule_arrival(e);
        let entry = &self.sc.entries[e];
        let home = entry.account;
        let rt = &mut self.entries[e];
        let mem = &mut self.memory[home];
        // drawn as the simulator draws them, so both engines see the same
        // returning customers
        let back = if rt.returning > 0.0 && unit(&mut rt.rng) < rt.returning {
            mem.returning(&mut rt.rng)
        } else {
            None
        };
        // one session per customer at a time: a customer still in a
        // session comes back as a new one
        let shard = self.sh.shard;
        let back = back.filter(|(id, _)| !self.by_handle.contains_key(&handle_of(home, *id, shard)));
        let (customer, last_agent, returning) = match back {
            Some((id, last)) => {
                let within = self.sc.accounts[home].prefer_last_within_us;
                let eligible =
                    (last.agent != u32::MAX && t.saturating_sub(last.at_us) <= within).then_some(last.agent);
                (id, eligible, true)
            }
            None => (mem.new_customer(), None, false),
        };
        let handle = handle_of(home, customer, shard);
        // key mod N is the shard: an agent of another shard seeing the
        // message knows it is not one of its own customers'
        let key = self.next_key * u64::from(shard.count) + u64::from(shard.index);
        self.next_key += 1;
        let messages = rt.messages.sample(&mut rt.rng);
        let msgtype = rt.mix.sample(&mut rt.rng);
        let patience = rt.patience.as_ref().map(|p| p.sample(&mut rt.rng));
        let account = self.routes[e].as_mut().map_or(home, |r| r.pick(returning, home));
        // the bot answers its turns; the message it hands over is the
        // first of the `messages` people answer
        let plan = self.bots.plan(account);
        let (total, first) = session_messages(plan.as_ref().map(|p| (p.turns, p.resolves)), messages);
        let info = SessionInfo::arriving(t, e as u16, account as u16, plan.is_some());
        let _ = self.sh.obs.send(Obs::Entered {
            s: info,
            returning,
            sticky_eligible: returning && last_agent.is_some(),
            msgtype,
        });
        if let Some(now) = shed {
            let _ = self.sh.obs.send(Obs::Rejected { t: now, s: info });
            self.sh.counts().shed += 1;
            return;
        }
        let kfid = self.open_kfid[account].clone();
        actions.push(CustomerAction::Enter {
            customer: handle.clone(),
            open_kfid: kfid,
            scene: self.scenes[e].clone(),
        });
        meta.push((key, Sent::Enter, None));
        self.custs.insert(
            key,
            Cust {
                info,
                home,
                handle: handle.clone(),
                total,
                first,
                bot: plan.map(|plan| {
                    Box::new(BotTurns {
                        plan,
                        delay: plan.delay,
                        told: 0,
                        answers: 0,
                        due: 0,
                        done_at: None,
                        external_userid: String::new(),
                    })
                }),
                patience,
                sent: 0,
                sent_at: Vec::new(),
                replied: vec![false; total as usize],
                queued: false,
                assigned: None,
                customer,
                last_agent,
                accepted: 0,
                answered: false,
                retry: Vec::new(),
                leave_tries: Tries::default(),
                leave_refused: None,
                leaves_in_flight: 0,
                handed_over: false,
                first_given_up: false,
                awaiting: 0,
            },
        );
        if !self.ended_with_bot.is_empty() {
            // a new session of the customer: the handle's notes are its own
            self.ended_with_bot.remove(&handle);
        }
        self.by_handle.insert(handle, key);
        self.sessions += 1;
        self.peak = self.peak.max(self.custs.len() as u64);
        self.message(key, t, msgtype, actions, meta);
        // waits from the hand-over, with a bot
        if let Some(p) = patience.filter(|_| plan.is_none()) {
            self.push(t.saturating_add(p), Due::Leave(key, 0));
        }
    }

    fn message(
        &mut self,
        key: u64,
        t: u64,
        msgtype: u8,
        actions: &mut Vec<CustomerAction>,
        meta: &mut Vec<Meta>,
    ) {
        let Some(c) = self.custs.get_mut(&key) else { return };
        let idx = c.sent;
        c.sent += 1;
        c.sent_at.push(t);
        c.awaiting += 1;
        // the agent learns from the id whether the message went to the bot
        // (`b`), the session's length, the send time, the first message
        // people answer in this handle, and the handle
        let to = if c.bot.is_some() { 'b' } else { 'm' };
        let id = format!("{to}{key}-{idx}-{}-{t}-{}-{}", c.total, c.first, c.info.handle);
        let a = CustomerAction::Message {
            customer: c.handle.clone(),
            open_kfid: self.open_kfid[c.info.account as usize].clone(),
            content: Content::of(MSG_TYPES[msgtype as usize], &id),
            client_msgid: id,
        };
        meta.push((key, Sent::Message(idx), Some(a.clone())));
        actions.push(a);
        // the request a transfer carries over is no new message (as in the
        // simulator, the next account answers it first)
        if idx > 0 && !(c.info.handle > 0 && idx == c.first) {
            let _ = self.sh.obs.send(Obs::Message { t, s: c.info, msgtype });
        }
    }

    fn send(&mut self, key: u64, t: u64, actions: &mut Vec<CustomerAction>, meta: &mut Vec<Meta>) {
        let Some(c) = self.custs.get_mut(&key) else { return };
        let e = c.info.entry as usize;
        if c.info.handle > 0 && c.sent == c.first {
            // a transfer's request: drawn nothing for, as in the simulator
            self.message(key, t, 0, actions, meta);
            return;
        }
        let rt = &mut self.entries[e];
        let msgtype = rt.mix.sample(&mut rt.rng);
        if let Some(b) = &mut c.bot {
            b.delay = self.bots.delay(c.info.account as usize);
        }
        self.message(key, t, msgtype, actions, meta);
    }

    fn leave(&mut self, key: u64, handle: u8, actions: &mut Vec<CustomerAction>, meta: &mut Vec<Meta>) {
        let now = self.sh.tb.now_us();
        let Some(c) = self.custs.get_mut(&key) else { return };
        if c.assigned.is_some() || c.bot.is_some() || c.info.handle != handle {
            return;
        }
        if !self.sh.may_resend(&c.leave_tries, now) {
            self.sh.counts().gave_up.leaves += 1;
            return;
        }
        c.leaves_in_flight += 1;
        actions.push(CustomerAction::Leave {
            customer: c.handle.clone(),
            open_kfid: self.open_kfid[c.info.account as usize].clone(),
        });
        meta.push((key, Sent::Leave, None));
    }

    fn on_results(
        &mut self,
        meta: Vec<Meta>,
        answer: Option<(Vec<ActionResult>, Option<u64>)>,
        sent: u64,
        epoch: u64,
    ) {
        self.batches_in_flight -= 1;
        let now = self.sh.tb.now_us();
        let (results, channel_end) = match answer {
            Some((r, end)) => (Some(r), end),
            None => (None, None),
        };
        for (i, (key, due, action)) in meta.into_iter().enumerate() {
            let r = results.as_ref().and_then(|r| r.get(i));
            let ok = r.is_some_and(|r| r.errcode == 0);
            // the customer's id is the answering target's: one of an
            // earlier epoch named it on a target that forgot it
            if let Some(b) = self.custs.get_mut(&key).and_then(|c| c.bot.as_mut())
                && let Some(r) = r.filter(|r| ok && !r.external_userid.is_empty())
                && b.external_userid.is_empty()
                && epoch == self.epoch
            {
                b.external_userid.clone_from(&r.external_userid);
            }
            if let Sent::Message(idx) = due {
                if let Some(r) = r.filter(|_| !ok) {
                    self.sh.http.stats.action_error("customer_batch", format!("errcode_{}", r.errcode));
                }
                let answer = match r {
                    _ if ok => Answer::Taken(epoch),
                    Some(_) => Answer::Refused,
                    None => Answer::None,
                };
                self.message_answered(key, idx, answer, action, sent, now);
                continue;
            }
            if matches!(due, Sent::Leave) {
                let gone_held = match self.custs.get_mut(&key) {
                    Some(c) => {
                        c.leaves_in_flight = c.leaves_in_flight.saturating_sub(1);
                        false
                    }
                    None => self.held_and_gone.remove(&key),
                };
                // a customer whose patience ran out as an agent took the
                // session: the target rightly refuses the leave
                if r.is_some_and(|r| r.errcode == INVALID) {
                    if gone_held {
                        continue;
                    }
                    if let Some(c) = self.custs.get_mut(&key) {
                        let end = channel_end.map(|e| (epoch, e));
                        c.leave_refused = c.assigned.is_none().then_some(Refusal { at: now, end });
                        continue;
                    }
                }
            }
            if let Some(r) = r.filter(|_| !ok) {
                self.sh.http.stats.action_error("customer_batch", format!("errcode_{}", r.errcode));
            }
            // no answer: the leave may not have arrived; an answer (even an
            // error) is the target's word
            if matches!(due, Sent::Leave) && r.is_none() {
                self.leave_failed(key, sent, now);
            }
        }
    }

    /// The answer to a send (at `sent`) of message `idx` of session `key`
    /// is in. The session may be over for the customer already — the
    /// target's note of its end can overtake the answer — and what the
    /// target took is counted all the same.
    fn message_answered(
        &mut self,
        key: u64,
        idx: u32,
        answer: Answer,
        action: Option<CustomerAction>,
        sent: u64,
        now: u64,
    ) {
        match (self.custs.get_mut(&key), self.closing.get_mut(&key)) {
            (Some(c), _) | (None, Some((c, _))) => c.awaiting = c.awaiting.saturating_sub(1),
            (None, None) => {}
        }
        match answer {
            Answer::Taken(epoch) => {
                self.taken(key, idx, now, epoch);
                let current = epoch == self.epoch;
                if let Some(c) = self.custs.get_mut(&key) {
                    if current {
                        c.accepted += 1;
                        c.retry.retain(|r| r.0 != idx);
                    } else if Self::first_unknown(c)
                        && !c.retry.iter().any(|r| r.0 == idx)
                        && let Some(a) = action
                    {
                        // a target of an earlier epoch took it and has
                        // forgotten it since: the session goes on with the
                        // new one, as every session it knew nothing of
                        c.retry.push((idx, a, Tries::default()));
                        self.push(now, Due::Resend(key, idx));
                    }
                }
                if current {
                    self.tell_bot(key, idx, now);
                }
            }
            Answer::Refused => self.send_failed(key, idx, action, sent, now, true),
            Answer::None => self.send_failed(key, idx, action, sent, now, false),
        }
        if self.closing.get(&key).is_some_and(|(c, _)| c.awaiting == 0) {
            let (c, over) = self.closing.remove(&key).expect("found above");
            settle(self.sh, key, &c, over);
        }
    }

    /// Whether nothing of the session is known to have reached the target
    /// (a failed message is then its first).
    fn first_unknown(c: &Cust) -> bool {
        c.assigned.is_none() && !c.queued && c.accepted == 0
    }

    /// A message (sent at `sent`) the target refused, or whose answer was
    /// lost (a timeout, a dropped connection, a 5xx: it may have been
    /// taken). A refusal is the target's word: of the first message, the
    /// session was refused; of a later one, the customer waits, as one
    /// whose message an agent never answers does, for the session to end.
    /// Without an answer the customer sends it again with the same
    /// `client_msgid` — the target answers a resend as the first time, so
    /// nothing is counted twice — for `resend_for`, then gives up on it.
    fn send_failed(
        &mut self,
        key: u64,
        idx: u32,
        action: Option<CustomerAction>,
        sent: u64,
        now: u64,
        answered: bool,
    ) {
        let Some(c) = self.custs.get_mut(&key) else { return };
        let first = Self::first_unknown(c);
        if answered {
            c.retry.retain(|r| r.0 != idx);
            if first {
                let _ = self.sh.obs.send(Obs::Rejected { t: now, s: c.info });
                self.forget(key);
            }
            return;
        }
        let mut tries = c.retry.iter().find(|r| r.0 == idx).map_or_else(Tries::default, |r| r.2);
        c.retry.retain(|r| r.0 != idx);
        let taken =
            self.sh.ledger().get(&key).and_then(|f| f.get(idx as usize)).is_some_and(|f| f & TAKEN != 0);
        if taken || c.replied.get(idx as usize) == Some(&true) {
            // an agent saw or answered it, or its session was routed: it
            // arrived, whatever became of its ack
            return;
        }
        let Some(a) = action else { return };
        match self.sh.resend_at(&mut tries, sent, now) {
            Some(t) => {
                c.retry.push((idx, a, tries));
                self.push(t, Due::Resend(key, idx));
            }
            None => self.give_up_message(key, idx, now),
        }
    }

    /// The customer gives up on message `idx` (it counts as lost unless an
    /// agent sees it after all). The target may have taken it: of a later
    /// message, the customer waits for the session to end; of the first,
    /// they listen for the session for a resend window, then count it
    /// rejected (at the latest at the end of the run).
    fn give_up_message(&mut self, key: u64, idx: u32, now: u64) {
        let Some(c) = self.custs.get_mut(&key) else { return };
        c.retry.retain(|r| r.0 != idx);
        self.sh.counts().gave_up.messages += 1;
        let total = c.total;
        let first = Self::first_unknown(c);
        c.first_given_up |= first;
        self.sh.mark(key, idx, total, GAVE_UP);
        if first {
            let window = (RESEND_WINDOW.as_secs_f64() * 1e6 * self.sh.tb.scale) as u64;
            self.push(now.saturating_add(window), Due::Forget(key));
        }
    }

    /// A leave (sent at `sent`) without an answer is sent again (if the
    /// customer is still waiting then): a lost leave would undercount
    /// abandonment.
    fn leave_failed(&mut self, key: u64, sent: u64, now: u64) {
        let Some(c) = self.custs.get_mut(&key).filter(|c| c.assigned.is_none()) else { return };
        let handle = c.info.handle;
        match self.sh.resend_at(&mut c.leave_tries, sent, now) {
            Some(t) => self.push(t, Due::Leave(key, handle)),
            None => self.sh.counts().gave_up.leaves += 1,
        }
    }

    /// Message `idx` of session `key` is known to have reached the target
    /// (its answer said so, or an agent answered it), by what came in
    /// `epoch`: counted as sent once. A session over for the customer whose
    /// answers are still coming is still counted (see [`Cust::awaiting`]).
    fn taken(&mut self, key: u64, idx: u32, now: u64, epoch: u64) {
        let c = self.custs.get(&key).or_else(|| self.closing.get(&key).map(|(c, _)| c));
        let total = c.map_or(0, |c| c.total);
        let Some((before, _)) = self.sh.mark(key, idx, total, TAKEN) else { return };
        if before & TAKEN == 0 {
            let in_window = self.sh.in_window(now);
            let mut counts = self.sh.counts();
            self.sh.count_sent(&mut counts, epoch, in_window);
        }
    }

    /// The session is over for the driver (it ended, or was refused):
    /// settle its messages. In a session an agent held, a message the
    /// target took that no agent saw is lost.
    fn forget(&mut self, key: u64) {
        self.finish(key, Over::Ended { before: u64::MAX });
    }

    /// The session is over for the driver (`over`): settled now, or once
    /// the answers to its messages still on their way are in.
    fn finish(&mut self, key: u64, over: Over) {
        if let Some(c) = self.custs.remove(&key) {
            if c.assigned.is_some() && c.leaves_in_flight > 0 {
                self.held_and_gone.insert(key);
            }
            self.by_handle.remove(&c.handle);
            if c.awaiting > 0 {
                self.closing.insert(key, (c, over));
            } else {
                settle(self.sh, key, &c, over);
            }
        }
    }

    fn on_events(&mut self, epoch: u64, events: Vec<Event>) {
        if epoch != self.epoch {
            // from a channel the target has forgotten since
            return;
        }
        let now = self.sh.tb.now_us();
        for ev in events {
            let Some(handle) = ev.customer.as_deref() else { continue };
            let Some(&key) = self.by_handle.get(handle) else {
                if !self.ended_with_bot.is_empty() && ev.kind == "session" {
                    self.after_ended_with_bot(handle, &ev, now);
                }
                continue;
            };
            match ev.kind.as_str() {
                "session" => self.on_session(key, &ev, now),
                "message" => self.on_reply(key, &ev, now),
                _ => {}
            }
        }
    }

    fn agent_of(&self, ev: &Event) -> Option<u32> {
        ev.servicer_userid.as_deref().and_then(|u| self.sh.agent_index.get(u).copied())
    }

    fn on_session(&mut self, key: u64, ev: &Event, now: u64) {
        let agent = self.agent_of(ev);
        let Some(c) = self.custs.get_mut(&key) else { return };
        let change = ev.change.as_deref();
        let to_people = matches!(change, Some("queued" | "assigned"));
        let again = c.handed_over
            && match change {
                Some("queued") => c.queued && c.assigned.is_none(),
                // to another servicer, it is a transfer, not the bot's word
                Some("assigned") => c.assigned == Some(agent.unwrap_or(u32::MAX)),
                _ => false,
            };
        if again {
            // the bot handed it over once: taken again, the session would
            // be queued twice (or its assignment's note ignored unremarked)
            left_bot_again(self.sh, LeftBot::HandedOver, LeftBot::HandedOver);
            return;
        }
        if to_people
            && c.assigned.is_none()
            && let Some(b) = c.bot.take_if(|b| !b.plan.resolves)
        {
            // the bot handed the session over with its last answer: waits,
            // patience and people's first reply count from then
            let h = b.done_at.unwrap_or(now);
            c.info.human_us = h;
            c.info.bot = false;
            c.handed_over = true;
            if let Some(at) = c.sent_at.get_mut(c.first as usize) {
                *at = h;
            }
            let _ = self.sh.obs.send(Obs::Handoff { t: h, s: c.info });
            if let Some(p) = c.patience {
                self.push(h.saturating_add(p), Due::Leave(key, 0));
            }
        }
        let Some(c) = self.custs.get_mut(&key) else { return };
        let info = c.info;
        match change {
            // a copy of the note (a target that delivers again) queues
            // nothing more: counted twice, it inflated the pool's series
            Some("queued") if c.assigned.is_none() && !c.queued => {
                c.queued = true;
                let _ = self.sh.obs.send(Obs::Queued { t: now, s: info });
                // the session exists: its first message was taken
                self.taken(key, 0, now, self.epoch);
            }
            Some("assigned") if c.assigned.is_none() => {
                let agent = agent.unwrap_or(u32::MAX);
                c.assigned = Some(agent);
                let window = self.sh.call_window_us();
                if c.leave_refused.take().is_some_and(|r| !r.explained_by(ev.seq, self.epoch, now, window)) {
                    // an assignment queued after the refusal did not
                    // explain it
                    self.sh.http.stats.action_error("customer_batch", format!("errcode_{INVALID}"));
                }
                let kept = c.last_agent.is_some() && c.last_agent == Some(agent);
                // the run's own overhead: a first handle assigned at once
                // (a transfer's assignment comes in the same pull as it)
                if !c.queued && info.handle == 0 && self.sh.in_window(info.arrived_us) {
                    self.sh.counts().immediate.record(now.saturating_sub(info.human_us));
                }
                let _ = self.sh.obs.send(Obs::Assigned { t: now, s: info, agent, kept, from_pool: c.queued });
                self.memory[c.home].touch(c.customer, agent, now);
                self.taken(key, 0, now, self.epoch);
            }
            Some("rejected") if c.assigned.is_some() => {
                // the first outcome wins: counted rejected as well, the
                // session was two of `offered`'s outcomes, and the summary
                // broke the sum its readers check. The agent still holds
                // it: it stays open until it ends or the run does.
                self.sh.http.stats.action_error("customer_pull", REJECTED_AFTER_ASSIGNED.into());
            }
            Some("rejected") => {
                let _ = self.sh.obs.send(Obs::Rejected { t: now, s: info });
                if c.bot.is_some() {
                    let handle = c.handle.clone();
                    self.ended_with_bot(handle, LeftBot::Rejected, now);
                }
                self.forget(key);
            }
            Some("ended") => {
                let mut left = None;
                match (&c.bot, c.assigned) {
                    (Some(b), _) if b.plan.resolves => {
                        if ev.reason.as_deref() == Some("api") {
                            let t = b.done_at.unwrap_or(now);
                            let _ = self.sh.obs.send(Obs::BotEnded { t, s: info });
                            left = Some(LeftBot::Resolved);
                        }
                    }
                    // the bot ends a session it could not hand over (the
                    // pool was full): people refused it, as in the simulator
                    (Some(b), _) => {
                        let h = b.done_at.unwrap_or(now);
                        let s = SessionInfo { human_us: h, bot: false, ..info };
                        let _ = self.sh.obs.send(Obs::Handoff { t: h, s });
                        let _ = self.sh.obs.send(Obs::Rejected { t: now, s });
                        left = Some(LeftBot::HandedOver);
                    }
                    (None, None) => {
                        let _ = self.sh.obs.send(Obs::Abandoned { t: now, s: info });
                    }
                    (None, Some(agent)) => {
                        let _ = self.sh.obs.send(Obs::Ended { t: now, s: info, agent });
                        self.memory[c.home].touch(c.customer, agent, now);
                    }
                }
                if let Some(how) = left {
                    let handle = c.handle.clone();
                    self.ended_with_bot(handle, how, now);
                }
                self.forget(key);
            }
            Some("transferred") if ev.to_open_kfid.is_some() => self.transferred(key, ev, now),
            _ => {}
        }
    }

    /// The target ended the session of `handle` while it was with the bot
    /// (at `now`), which left it `how`: its later notes are checked against
    /// that for a call's timeout ([`Driver::ended_with_bot`]). What is past
    /// its window is swept once the map doubles, so it holds about the
    /// sessions of one window.
    fn ended_with_bot(&mut self, handle: String, how: LeftBot, now: u64) {
        if self.ended_with_bot.len() >= self.sweep_ended_at {
            self.ended_with_bot.retain(|_, (_, until)| *until >= now);
            self.sweep_ended_at = (2 * self.ended_with_bot.len()).max(SWEEP_ENDED_AT);
        }
        let window = self.sh.call_window_us();
        self.ended_with_bot.insert(handle, (how, now.saturating_add(window as u64)));
    }

    /// A note of `handle`, whose session the target ended while it was
    /// with the bot: one saying that it left the bot (again) contradicts
    /// the first word, which stands.
    fn after_ended_with_bot(&self, handle: &str, ev: &Event, now: u64) {
        let Some(&(first, until)) = self.ended_with_bot.get(handle) else { return };
        if let Some(later) = LeftBot::said_by(ev).filter(|_| now <= until) {
            left_bot_again(self.sh, first, later);
        }
    }

    /// 转接 to another account: the handle ends with its servicer, and the
    /// customer's conversation goes on in account `to` as the next handle,
    /// with a new number of messages (drawn as the simulator draws it) and
    /// a new patience; the customer carries the request over at once.
    fn transferred(&mut self, key: u64, ev: &Event, now: u64) {
        let Some(to) = ev.to_open_kfid.as_deref().and_then(|k| self.open_kfid.iter().position(|x| x == k))
        else {
            return;
        };
        let Some(c) = self.custs.get_mut(&key) else { return };
        let Some(agent) = c.assigned else { return };
        let _ = self.sh.obs.send(Obs::Transferred { t: now, s: c.info, agent, to: to as u16 });
        self.memory[c.home].touch(c.customer, agent, now);
        let rt = &mut self.entries[c.info.entry as usize];
        let more = rt.messages.sample(&mut rt.rng);
        let patience = rt.patience.as_ref().map(|p| p.sample(&mut rt.rng));
        c.info = SessionInfo { account: to as u16, handle: c.info.handle + 1, human_us: now, ..c.info };
        c.first = c.sent;
        c.total = c.sent.saturating_add(more).min(MAX_MESSAGES);
        c.replied.resize(c.total as usize, false);
        c.assigned = None;
        c.queued = false;
        c.patience = patience;
        c.leave_tries = Tries::default();
        c.leave_refused = None;
        // the next handle's notes are people's, no longer the bot's word
        c.handed_over = false;
        let handle = c.info.handle;
        self.push(now, Due::Send(key));
        if let Some(p) = patience {
            self.push(now.saturating_add(p), Due::Leave(key, handle));
        }
    }

    /// Message `idx` of session `key` reached the target: if the bot
    /// answers it, the bot is told once, to answer its delay after the
    /// customer sent it, and what to do after its last answer.
    fn tell_bot(&mut self, key: u64, idx: u32, now: u64) {
        let Some(c) = self.custs.get_mut(&key) else { return };
        let Some(b) = &mut c.bot else { return };
        if idx != b.told || idx >= b.plan.turns {
            return;
        }
        b.told += 1;
        let then = if idx + 1 < b.plan.turns {
            Then::Wait
        } else if b.plan.resolves {
            Then::Resolve
        } else {
            Then::HandOver
        };
        let at = c.sent_at[idx as usize].saturating_add(b.delay).max(now);
        b.due = at;
        let external_userid = b.external_userid.clone();
        self.bots.answer(key, idx, c.info.account as usize, external_userid, at, then);
    }

    fn on_reply(&mut self, key: u64, ev: &Event, now: u64) {
        match ev.sender.as_deref() {
            Some("servicer") => {}
            // send_msg: the bot answered. The driver's bot: the customer
            // writes its next turn after thinking. A middleware's: the
            // customer's pace still follows the servicers.
            Some("api") => {
                let Some(c) = self.custs.get_mut(&key) else { return };
                // the driver's bot answers each turn once: a target that
                // delivers an answer twice must not advance the turns
                let turn = || ev.msgid.as_deref().and_then(|id| self.bots.turn_of(key, id));
                if c.bot.as_ref().is_some_and(|b| turn().is_some_and(|i| i < b.answers)) {
                    self.sh.counts().duplicated += 1;
                    return;
                }
                let first = !std::mem::replace(&mut c.answered, true);
                let _ = self.sh.obs.send(Obs::BotReply { t: now, s: c.info, first });
                let Some(b) = &mut c.bot else { return };
                b.answers += 1;
                // as a servicer's reply: the bot's answer reached the
                // customer when it was due, its transit at wall length
                let had = self.sh.tb.had_at(b.due, now);
                if b.answers < b.plan.turns && b.answers == c.sent {
                    let rt = &mut self.entries[c.info.entry as usize];
                    let think = rt.think.sample(&mut rt.rng);
                    self.push(had.saturating_add(think).max(now), Due::Send(key));
                } else if b.answers >= b.plan.turns {
                    b.done_at.get_or_insert(had);
                }
                return;
            }
            _ => return,
        }
        let agent = self.agent_of(ev).unwrap_or(u32::MAX);
        let Some(idx) =
            ev.in_reply_to.as_deref().and_then(|id| id.split('-').nth(1)).and_then(|i| i.parse::<u32>().ok())
        else {
            return;
        };
        // `{r|x}{key}-{idx}-{due µs}-{wall µs}`
        let mut stamps =
            ev.client_msgid.as_deref().unwrap_or_default().rsplit('-').map(|t| t.parse::<u64>().ok());
        let sent_wall = stamps.next().flatten();
        let due = stamps.next().flatten();
        let Some(c) = self.custs.get_mut(&key) else { return };
        let Some(replied) = c.replied.get_mut(idx as usize) else { return };
        if std::mem::replace(replied, true) {
            self.sh.counts().duplicated += 1;
            return;
        }
        let in_window = self.sh.in_window(now);
        {
            let mut counts = self.sh.counts();
            counts.window_replies += u64::from(in_window);
            if let Some(sent) = sent_wall {
                counts.to_customer.record(self.sh.tb.wall_us().saturating_sub(sent));
            }
        }
        let info = c.info;
        let sent_us = c.sent_at.get(idx as usize).copied().unwrap_or(info.arrived_us);
        let first = !std::mem::replace(&mut c.answered, true);
        let _ = self.sh.obs.send(Obs::Reply { t: now, s: info, agent, index: idx, sent_us, first });
        // the servicer said a transfer follows (`x…`): the customer writes
        // next to the account it goes to
        let transfer = ev.client_msgid.as_deref().is_some_and(|id| id.starts_with('x'));
        let next = !transfer && idx + 1 < c.total && idx + 1 == c.sent;
        // the messages to a bot came to the servicer with the one it
        // handed over
        let from = if info.handle == 0 && idx == c.first { 0 } else { idx };
        let total = c.total;
        // an answered message reached the target, whatever became of its ack
        self.taken(key, idx, now, self.epoch);
        if self.sh.shard.is_part() {
            // and an agent saw it: perhaps an agent of another shard, who
            // marks what it sees in its own ledger and leaves the count to
            // this one
            let mut seen = 0;
            for i in from..=idx {
                let taken = || {
                    self.sh.ledger().get(&key).and_then(|f| f.get(i as usize)).is_some_and(|f| f & TAKEN != 0)
                };
                if (i == idx || taken())
                    && self.sh.mark(key, i, total, SEEN).is_some_and(|(before, _)| before & SEEN == 0)
                {
                    seen += 1;
                }
            }
            self.sh.counts().delivered += seen;
        }
        if next {
            let e = info.entry as usize;
            let rt = &mut self.entries[e];
            let think = rt.think.sample(&mut rt.rng);
            // the customer thinks from when the agent's reply was due, its
            // transit at wall length (an agent of another shard stamps it
            // on another clock)
            let own = !self.sh.shard.is_part() || (agent != u32::MAX && self.sh.shard.owns(u64::from(agent)));
            let had = match due {
                Some(d) if own => self.sh.tb.had_at(d, now),
                _ => now,
            };
            self.push(had.saturating_add(think).max(now), Due::Send(key));
        }
    }
}

/// A session's messages and how many of them go to the bot: the bot's
/// `turns` (with the message it hands over answered by people, the first
/// of `messages`) and no more than the ledger tracks ([`MAX_MESSAGES`]: a
/// longer session was counted neither sent nor seen past it, and `turns +
/// messages` could overflow).
fn session_messages(bot: Option<(u32, bool)>, messages: u32) -> (u32, u32) {
    let (total, first) = match bot {
        Some((turns, true)) => (turns, turns),
        Some((turns, false)) => (turns.saturating_add(messages.saturating_sub(1)), turns - 1),
        None => (messages, 0),
    };
    (total.min(MAX_MESSAGES), first.min(MAX_MESSAGES))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bot's turns come first; a session never has more messages than
    /// the ledger tracks, whatever `messages` drew (u32::MAX with a bot's
    /// turns overflowed: a panic in a debug build, a wrap in release).
    #[test]
    fn a_sessions_messages_stay_within_the_ledger() {
        assert_eq!(session_messages(None, 3), (3, 0));
        assert_eq!(session_messages(Some((2, true)), 3), (2, 2));
        assert_eq!(session_messages(Some((2, false)), 3), (4, 1));
        assert_eq!(session_messages(None, MAX_MESSAGES + 1), (MAX_MESSAGES, 0));
        assert_eq!(session_messages(Some((1000, false)), u32::MAX), (MAX_MESSAGES, 999));
    }

    #[test]
    fn a_refused_leave_is_explained_by_an_assignment_queued_before_it() {
        let r = Refusal { at: 1_000, end: Some((3, 50)) };
        // by the channel's position, however late the pull
        assert!(r.explained_by(49, 3, 1_000_000_000, 10.0));
        assert!(!r.explained_by(50, 3, 1_000, 10.0), "queued after the refusal");
        // another epoch's channel numbers its events afresh: by time then
        assert!(r.explained_by(70, 4, 1_010, 10.0));
        assert!(!r.explained_by(10, 4, 1_011, 10.0));
        let no_end = Refusal { at: 1_000, end: None };
        assert!(no_end.explained_by(u64::MAX, 3, 1_010, 10.0));
        assert!(!no_end.explained_by(0, 3, 1_011, 10.0));
    }

    /// Sessions of two messages, no patience: they end only as a test says.
    const SCENARIO: &str = r#"
name = "unit"
duration = "1h"
[[account]]
name = "kf"
[[agents]]
group = "a"
count = 2
reply_delay = "1m"
[[entry]]
scene = "web"
rate = "1/min"
messages = 2
"#;

    const OK: ActionResult = ActionResult { errcode: 0, external_userid: String::new() };

    /// A customer arrives: the session's key, the customer's handle, and
    /// what its batch carried (the enter and the first message), in flight.
    fn arrive(d: &mut Driver<'_>) -> (u64, String, Vec<Meta>) {
        let (mut actions, mut meta) = (Vec::new(), Vec::new());
        d.arrive(0, 0, None, &mut actions, &mut meta);
        d.batches_in_flight += 1;
        let key = d.next_key - 1;
        (key, d.custs[&key].handle.clone(), meta)
    }

    /// The target's note of a change to the session of `handle`.
    fn note(handle: &str, change: &str) -> Event {
        Event {
            kind: "session".into(),
            customer: Some(handle.into()),
            change: Some(change.into()),
            servicer_userid: Some("a-01".into()),
            ..Event::default()
        }
    }

    /// The target's note that a session ended can overtake the answer to the
    /// batch that carried its message: a leave later in the same batch (or
    /// in another one) ends the session, the long-poll hands the note over
    /// while the batch's answer is still being written. The driver forgot
    /// the session at the note and then found nothing to count the answer's
    /// message for, so `messages.sent` fell short of what the target took
    /// (12 of 18 000 in API-managed runs, where customers leave sessions
    /// before the hand-off). Counted now, once, and settled once answered.
    #[test]
    fn a_message_answered_after_its_sessions_end_is_counted_sent_once() {
        let sc = Scenario::parse(SCENARIO, "unit.toml").unwrap();
        let (obs, _observed) = mpsc::unbounded_channel();
        let sh = Shared::for_test(&sc, obs);
        let mut d = Driver::new(&sc, &sh);
        // a: the end overtakes the answer; b: a note confirmed it first
        let (_, a, a_batch) = arrive(&mut d);
        let (_, b, b_batch) = arrive(&mut d);
        d.on_events(0, vec![note(&b, "queued")]);
        assert_eq!(sh.counts().sent, 1, "the note says the target took b's message");
        d.on_events(0, vec![note(&a, "ended"), note(&b, "ended")]);
        assert!(d.custs.is_empty(), "both sessions are over for the customers");
        d.on_results(a_batch, Some((vec![OK, OK], None)), 0, 0);
        d.on_results(b_batch, Some((vec![OK, OK], None)), 0, 0);
        assert_eq!(sh.counts().sent, 2, "a's message counted, b's not twice");
        assert!(d.closing.is_empty() && sh.ledger().is_empty(), "both settled once answered");
        assert_eq!(sh.counts().lost, 0, "nobody held them: nothing lost");
    }

    /// A copy of a session's `queued` note (a target that delivers again)
    /// queues nothing more: it was observed queued twice, the waiting
    /// pool's series counting it twice. A bot session handed over and then
    /// assigned to another servicer is a transfer, not a second hand-over:
    /// only a copy of its assignment is the target's error.
    #[test]
    fn a_copied_note_counts_once_and_a_transfer_is_no_second_hand_over() {
        let with_bot =
            SCENARIO.replace("name = \"kf\"", "name = \"kf\"\nbot = { reply_delay = \"3s\", turns = 1 }");
        for text in [SCENARIO, with_bot.as_str()] {
            let sc = Scenario::parse(text, "unit.toml").unwrap();
            let (obs, mut observed) = mpsc::unbounded_channel();
            let sh = Shared::for_test(&sc, obs);
            let mut d = Driver::new(&sc, &sh);
            let (_, a, _) = arrive(&mut d);
            d.on_events(0, vec![note(&a, "queued"), note(&a, "queued")]);
            let mut queued = 0;
            while let Ok(o) = observed.try_recv() {
                queued += u32::from(matches!(o, Obs::Queued { .. }));
            }
            assert_eq!(queued, 1, "queued once: {text}");
            let twice = || {
                let kinds =
                    sh.http.stats.finish().0.remove("customer_pull").unwrap_or_default().errors_by_kind;
                kinds.get("bot_handed_over_after_handed_over").copied().unwrap_or(0)
            };
            let bot = u64::from(text != SCENARIO);
            assert_eq!(twice(), bot, "only the bot's session was handed over twice");
            let mut other = note(&a, "assigned");
            other.servicer_userid = Some("a-02".into());
            d.on_events(0, vec![note(&a, "assigned"), other]);
            assert_eq!(twice(), bot, "assigned from the pool, then to another servicer");
            d.on_events(0, vec![note(&a, "assigned")]);
            assert_eq!(twice(), 2 * bot, "a copy of the assignment");
        }
    }

    /// Message `m` (of a batch) as the target hands it to `servicer`.
    fn to_agent(handle: &str, m: &Meta, servicer: &str) -> Event {
        let Some(CustomerAction::Message { client_msgid, open_kfid, .. }) = &m.2 else {
            panic!("not a message")
        };
        Event {
            kind: "message".into(),
            sender: Some("customer".into()),
            to: Some(servicer.into()),
            external_userid: Some(handle.into()),
            open_kfid: Some(open_kfid.clone()),
            client_msgid: Some(client_msgid.clone()),
            ..Event::default()
        }
    }

    /// `servicer`'s reply to message `m`, as its customer gets it.
    fn reply(handle: &str, m: &Meta, servicer: &str) -> Event {
        let Some(CustomerAction::Message { client_msgid, .. }) = &m.2 else { panic!("not a message") };
        Event {
            kind: "message".into(),
            sender: Some("servicer".into()),
            customer: Some(handle.into()),
            servicer_userid: Some(servicer.into()),
            in_reply_to: Some(client_msgid.clone()),
            client_msgid: Some(format!("r{}-0", &client_msgid[1..])),
            ..Event::default()
        }
    }

    /// A restart races the agents: the customers notice it first and settle
    /// the session an agent held — its second message, which no agent had
    /// seen yet, is lost with it — and then the agent handles that message,
    /// pulled from the old target before it went. The agent made the
    /// settled session's ledger entry anew and counted the message
    /// delivered, and sent a second time (a sharded run under load: 612
    /// delivered + 1 lost of 612 messages). The loss was counted when the
    /// session was over for the customer, and stands.
    #[test]
    fn a_message_an_agent_sees_after_its_session_was_settled_lost_is_not_delivered_too() {
        let sc = Scenario::parse(SCENARIO, "unit.toml").unwrap();
        let (obs, _observed) = mpsc::unbounded_channel();
        let sh = Shared::for_test(&sc, obs);
        let mut d = Driver::new(&sc, &sh);
        let mut agents = super::super::agents::Agents::new(&sc, &sh);
        let (key, h, first) = arrive(&mut d);
        d.on_results(first.clone(), Some((vec![OK, OK], None)), 0, 0);
        d.on_events(0, vec![note(&h, "assigned")]);
        agents.on_event(None, to_agent(&h, &first[1], "a-01"), 0, sh.tb.now_us());
        d.on_events(0, vec![reply(&h, &first[1], "a-01")]);
        // the second message reaches the target and the agent's queue; the
        // target restarts before its answer is in
        let (mut actions, mut second) = (Vec::new(), Vec::new());
        d.send(key, 0, &mut actions, &mut second);
        d.batches_in_flight += 1;
        sh.relinked_for_test("ch1", vec!["wk-new".into()]);
        d.follow_link();
        // the old target's answer comes after all: it took the message (sent
        // all the same), and the session is settled
        d.on_results(second.clone(), Some((vec![OK], None)), 0, 0);
        let counted = |sh: &Shared| {
            let c = sh.counts();
            (c.sent, c.delivered, c.lost, c.reconnects.messages_lost)
        };
        assert_eq!(counted(&sh), (2, 1, 1, 1), "the first seen, the second lost with the session");
        agents.on_event(None, to_agent(&h, &second[0], "a-01"), 0, sh.tb.now_us());
        let (sent, delivered, lost, _) = counted(&sh);
        assert_eq!(delivered + lost, 2, "each message delivered or lost, once");
        assert_eq!(sent, 2, "and sent once");
        assert_eq!(counted(&sh), (2, 1, 1, 1));
    }

    /// Shard 0's customer is served by an agent of shard 1 (another
    /// process). Only the customer's shard can tell whether a message is
    /// delivered — from the reply — or lost: the target may restart with
    /// the reply, and then shard 0 counts the message lost with the
    /// session. Shard 1 counted it delivered all the same, so the merged
    /// run had it both ways.
    #[test]
    fn a_message_another_shards_agent_sees_is_delivered_or_lost_once_over_the_shards() {
        let sc = Scenario::parse(SCENARIO, "unit.toml").unwrap();
        let (obs, _observed) = mpsc::unbounded_channel();
        let shard = |index| crate::tally::Shard { index, count: 2 };
        let sh = Shared::for_shard_test(&sc, obs.clone(), shard(0));
        let other = Shared::for_shard_test(&sc, obs, shard(1));
        let mut d = Driver::new(&sc, &sh);
        // a-02, the second agent, is shard 1's
        let mut agents = super::super::agents::Agents::new(&sc, &other);
        let (key, h, first) = arrive(&mut d);
        d.on_results(first.clone(), Some((vec![OK, OK], None)), 0, 0);
        d.on_events(0, vec![note(&h, "assigned")]);
        agents.on_event(None, to_agent(&h, &first[1], "a-02"), 0, sh.tb.now_us());
        d.on_events(0, vec![reply(&h, &first[1], "a-02")]);
        // the agent sees the second message; the target restarts before the
        // reply reaches the customer
        let (mut actions, mut second) = (Vec::new(), Vec::new());
        d.send(key, 0, &mut actions, &mut second);
        d.batches_in_flight += 1;
        d.on_results(second.clone(), Some((vec![OK], None)), 0, 0);
        agents.on_event(None, to_agent(&h, &second[0], "a-02"), 0, sh.tb.now_us());
        sh.relinked_for_test("ch1", vec!["wk-new".into()]);
        d.follow_link();
        let counted = |sh: &Shared| {
            let c = sh.counts();
            (c.sent, c.delivered, c.lost)
        };
        let (mine, theirs) = (counted(&sh), counted(&other));
        assert_eq!(
            mine.1 + theirs.1 + mine.2,
            2,
            "each message delivered or lost, once: {mine:?} {theirs:?}"
        );
        assert_eq!(mine, (2, 1, 1), "the first answered, the second lost with the session");
        assert_eq!(theirs, (0, 0, 0), "another shard's customer's messages");
    }

    /// A target that hands a message to another shard's agent again after
    /// the session is over: that shard had dropped its ledger entry at the
    /// end, made one anew for the copy, and counted it nowhere — not
    /// duplicated (the customer's shard never hears of it), and answered
    /// as if new. A session another shard's agents saw all of is now
    /// remembered as settled, as the customer's shard remembers its own.
    #[test]
    fn a_copy_another_shards_agent_gets_after_the_session_is_a_duplicate() {
        let sc = Scenario::parse(SCENARIO, "unit.toml").unwrap();
        let (obs, _observed) = mpsc::unbounded_channel();
        let shard = |index| crate::tally::Shard { index, count: 2 };
        let sh = Shared::for_shard_test(&sc, obs.clone(), shard(0));
        let other = Shared::for_shard_test(&sc, obs, shard(1));
        let mut d = Driver::new(&sc, &sh);
        // a-02, the second agent, is shard 1's
        let mut agents = super::super::agents::Agents::new(&sc, &other);
        let (key, h, first) = arrive(&mut d);
        d.on_results(first.clone(), Some((vec![OK, OK], None)), 0, 0);
        d.on_events(0, vec![note(&h, "assigned")]);
        agents.on_event(None, to_agent(&h, &first[1], "a-02"), 0, sh.tb.now_us());
        d.on_events(0, vec![reply(&h, &first[1], "a-02")]);
        let (mut actions, mut second) = (Vec::new(), Vec::new());
        d.send(key, 0, &mut actions, &mut second);
        d.batches_in_flight += 1;
        d.on_results(second.clone(), Some((vec![OK], None)), 0, 0);
        agents.on_event(None, to_agent(&h, &second[0], "a-02"), 0, sh.tb.now_us());
        d.on_events(0, vec![reply(&h, &second[0], "a-02")]);
        // the session ends, as its agent hears
        let Some(CustomerAction::Message { open_kfid, .. }) = &first[1].2 else { panic!("not a message") };
        let ended = Event {
            kind: "session".into(),
            change: Some("ended".into()),
            to: Some("a-02".into()),
            external_userid: Some(h.clone()),
            open_kfid: Some(open_kfid.clone()),
            ..Event::default()
        };
        agents.on_event(None, ended, 0, sh.tb.now_us());
        assert!(other.ledger().is_empty(), "shard 1 keeps no entry for the session");
        let counted = |sh: &Shared| {
            let c = sh.counts();
            (c.sent, c.delivered, c.lost, c.duplicated)
        };
        let before = (counted(&sh), counted(&other));
        assert_eq!(before, ((2, 2, 0, 0), (0, 0, 0, 0)), "both messages delivered, in the customer's shard");
        // the target hands both messages to a-02 again
        agents.on_event(None, to_agent(&h, &first[1], "a-02"), 0, sh.tb.now_us());
        agents.on_event(None, to_agent(&h, &second[0], "a-02"), 0, sh.tb.now_us());
        assert_eq!(counted(&sh), (2, 2, 0, 0), "the customer's shard is unchanged");
        assert_eq!(counted(&other), (0, 0, 0, 2), "both copies counted duplicated where they were seen");
        assert!(other.ledger().is_empty(), "and no entry made anew");
    }

    /// Sessions with the bot: two turns, then handed over for one message.
    const BOT: &str = r#"
name = "unit"
duration = "1h"
[[account]]
name = "kf"
[account.bot]
reply_delay = "5s"
resolve = 0
turns = 2
[[agents]]
group = "a"
count = 2
reply_delay = "1m"
[[entry]]
scene = "web"
rate = "1/min"
messages = 1
"#;

    /// The customer's message to the bot comes to the servicer with the one
    /// the bot hands over, and only that one is answered: the customer's
    /// shard learns from the answer that the servicer saw both.
    #[test]
    fn messages_to_the_bot_seen_by_another_shards_agent_are_delivered_in_the_customers_shard() {
        let sc = Scenario::parse(BOT, "unit.toml").unwrap();
        let (obs, _observed) = mpsc::unbounded_channel();
        let shard = |index| crate::tally::Shard { index, count: 2 };
        let sh = Shared::for_shard_test(&sc, obs.clone(), shard(0));
        let other = Shared::for_shard_test(&sc, obs, shard(1));
        let mut d = Driver::new(&sc, &sh);
        let mut agents = super::super::agents::Agents::new(&sc, &other);
        let (key, h, first) = arrive(&mut d);
        d.on_results(first.clone(), Some((vec![OK, OK], None)), 0, 0);
        let (mut actions, mut second) = (Vec::new(), Vec::new());
        d.send(key, 0, &mut actions, &mut second);
        d.batches_in_flight += 1;
        d.on_results(second.clone(), Some((vec![OK], None)), 0, 0);
        // handed over: the servicer gets both, answers the second
        d.on_events(0, vec![note(&h, "assigned")]);
        agents.on_event(None, to_agent(&h, &first[1], "a-02"), 0, sh.tb.now_us());
        agents.on_event(None, to_agent(&h, &second[0], "a-02"), 0, sh.tb.now_us());
        d.on_events(0, vec![reply(&h, &second[0], "a-02"), note(&h, "ended")]);
        assert!(d.custs.is_empty(), "settled");
        let c = sh.counts();
        assert_eq!((c.sent, c.delivered, c.lost), (2, 2, 0), "both seen, in the customer's shard");
        assert_eq!(other.counts().delivered, 0);
    }

    /// The driver's bot answered a turn, its answer pulled 1 ms (×60) of
    /// wall time after it was due: the customer thinks from when it was
    /// due, that transit at its wall length, not from the pull; so does the
    /// hand-over after the last turn (waits and patience count from it).
    #[test]
    fn a_turn_after_the_bots_answer_counts_from_when_the_answer_was_due() {
        // an answer 5 min after the message: 5 s of wall time at ×60, so
        // that a slow machine's own time does not reach it
        let text = BOT.replace("rate = ", "think = \"30s\"\nrate = ").replace("\"5s\"", "\"5m\"");
        let sc = Scenario::parse(&text, "unit.toml").unwrap();
        let (obs, mut observed) = mpsc::unbounded_channel();
        let sh = Shared::for_test(&sc, obs);
        let mut d = Driver::new(&sc, &sh);
        let (key, h, first) = arrive(&mut d);
        d.on_results(first, Some((vec![OK, OK], None)), 0, 0);
        let due = d.custs[&key].bot.as_ref().unwrap().due;
        assert_eq!(due, 300_000_000, "the bot answers its delay after the first message");
        let answer = Event {
            kind: "message".into(),
            sender: Some("api".into()),
            customer: Some(h.clone()),
            ..Event::default()
        };
        d.heap.clear();
        d.on_reply(key, &answer, due + 60_000);
        let sends: Vec<u64> = d.heap.iter().filter(|e| e.0.2 == Due::Send(key)).map(|e| e.0.0).collect();
        assert_eq!(sends, [due + 1_000 + 30_000_000], "1 ms of transit, then 30 s of thought");
        let (mut actions, mut second) = (Vec::new(), Vec::new());
        d.send(key, sends[0], &mut actions, &mut second);
        d.batches_in_flight += 1;
        d.on_results(second, Some((vec![OK], None)), 0, 0);
        let due = d.custs[&key].bot.as_ref().unwrap().due;
        assert_eq!(due, sends[0] + 300_000_000);
        d.on_reply(key, &answer, due + 120_000);
        while observed.try_recv().is_ok() {}
        d.on_session(key, &note(&h, "queued"), due + 240_000);
        let handoff = std::iter::from_fn(|| observed.try_recv().ok()).find_map(|o| match o {
            Obs::Handoff { t, s } => Some((t, s.human_us)),
            _ => None,
        });
        assert_eq!(handoff, Some((due + 2_000, due + 2_000)), "handed over as the last answer was due");
    }

    /// A target delivered the driver's bot's first answer twice: the copy
    /// is counted duplicated and does not advance the turns (no second
    /// message is written for it, the bot's session is not handed over
    /// early). Another target's answer that is not the driver's bot's
    /// counts as an answer, as before.
    #[test]
    fn a_bot_answer_delivered_twice_is_counted_once() {
        let text = BOT.replace("rate = ", "think = \"30s\"\nrate = ");
        let sc = Scenario::parse(&text, "unit.toml").unwrap();
        let (obs, _observed) = mpsc::unbounded_channel();
        let sh = Shared::for_test(&sc, obs);
        let mut d = Driver::new(&sc, &sh);
        let (key, h, first) = arrive(&mut d);
        d.on_results(first, Some((vec![OK, OK], None)), 0, 0);
        let turns = d.custs[&key].bot.as_ref().unwrap().plan.turns;
        assert!(turns >= 2, "the scenario's bot answers more than once");
        let answer = |msgid: String| Event {
            kind: "message".into(),
            sender: Some("api".into()),
            customer: Some(h.clone()),
            msgid: Some(msgid),
            ..Event::default()
        };
        let ours = answer(d.bots.msgid(key, 0));
        assert_eq!(d.bots.turn_of(key, &d.bots.msgid(key, 0)), Some(0));
        assert_eq!(d.bots.turn_of(key + 1, &d.bots.msgid(key, 0)), None, "another session's answer");
        d.heap.clear();
        d.on_reply(key, &ours, 10_000_000);
        let sends = |d: &Driver| d.heap.iter().filter(|e| e.0.2 == Due::Send(key)).count();
        assert_eq!(sends(&d), 1, "the customer writes its next turn");
        d.on_reply(key, &ours, 11_000_000);
        assert_eq!(sends(&d), 1, "the copy wrote no other message");
        assert_eq!(d.custs[&key].bot.as_ref().unwrap().answers, 1);
        assert_eq!(sh.counts().duplicated, 1);
        // an id this run's bot never gave is an answer
        d.on_reply(key, &answer("someone-else-0".into()), 12_000_000);
        assert_eq!(d.custs[&key].bot.as_ref().unwrap().answers, 2);
        assert_eq!(sh.counts().duplicated, 1);
    }

    /// The target forgot the run's channels (it restarted). The sessions it
    /// had confirmed anything of are lost with them: one an agent held stays
    /// answered, one waiting is unfinished, and what the target had taken
    /// that no agent saw is lost. A session it had confirmed nothing of is
    /// sent again on the new channel, to the account's new open_kfid.
    #[test]
    fn sessions_the_target_forgot_are_counted_and_unconfirmed_ones_sent_again() {
        let sc = Scenario::parse(SCENARIO, "unit.toml").unwrap();
        let (obs, mut observed) = mpsc::unbounded_channel();
        let sh = Shared::for_test(&sc, obs);
        let mut d = Driver::new(&sc, &sh);
        let (held, h, held_batch) = arrive(&mut d);
        let (_, w, waiting_batch) = arrive(&mut d);
        let (unknown, _, unknown_batch) = arrive(&mut d);
        d.on_results(held_batch, Some((vec![OK, OK], None)), 0, 0);
        d.on_results(waiting_batch, Some((vec![OK, OK], None)), 0, 0);
        d.on_events(0, vec![note(&h, "assigned"), note(&w, "queued")]);
        // an agent saw the held session's message, none the waiting one's
        sh.mark(held, 0, 2, SEEN);
        assert_eq!(sh.counts().sent, 2);
        sh.relinked_for_test("ch1", vec!["wk-new".into()]);
        d.follow_link();
        assert_eq!(d.channel, "ch1");
        assert_eq!(d.custs.keys().copied().collect::<Vec<_>>(), [unknown], "the unconfirmed one goes on");
        let r = sh.counts().reconnects.clone();
        assert_eq!((r.count, r.held, r.waiting, r.messages_lost), (1, 1, 1, 1), "{r:?}");
        assert_eq!(sh.counts().lost, 1, "the waiting session's message");
        assert_eq!(r.sent_since, 0, "nothing taken since");
        let mut unfinished = 0;
        while let Ok(o) = observed.try_recv() {
            unfinished += u32::from(matches!(o, Obs::Unfinished { .. }));
        }
        assert_eq!(unfinished, 1, "the waiting session");
        // its batch went to the old channel and got no answer
        d.on_results(unknown_batch, None, 0, 0);
        let again = d.resend(unknown, 0, 0).expect("sent again");
        let CustomerAction::Message { open_kfid, .. } = again else { panic!("{again:?}") };
        assert_eq!(open_kfid, "wk-new");
        // the new target takes it: sent, and since the reconnect
        d.batches_in_flight += 1;
        d.on_results(vec![(unknown, Sent::Message(0), None)], Some((vec![OK], None)), 0, 1);
        let c = sh.counts();
        assert_eq!((c.sent, c.reconnects.sent_since), (3, 1));
    }
}
