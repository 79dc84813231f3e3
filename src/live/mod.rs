//! The live engine: the scenario in real time, over HTTP, against the
//! embedded reference service or any target speaking `docs/protocol.md`.
//!
//! Customers are an open population: they arrive by the scenario's arrival
//! processes at scheduled times, whatever the target does, and every
//! latency is measured from the intended time of the action. Agents are a
//! closed population: one task per servicer long-polls its queue, waits its
//! sampled reply delay, replies, and ends the session after the last one.
//!
//! `time_scale` compresses the scenario: scenario time runs `time_scale`
//! times faster than the wall clock. Everything is reported in scenario
//! time. Observations go through the same [`Metrics`] as the simulator, so
//! the summary has the same schema (`engine = "live"`), plus `http`,
//! `delivery_ms`, message accounting and `late_actions`.

// The live engine runs in wall-clock time: it reads the clock to pace the
// schedule and to time calls, and turns that into scenario time through
// one `Timebase`. The core it feeds (metrics) still takes time as input.
#![allow(clippy::disallowed_methods)]

mod agents;
mod bot;
mod customers;
pub mod http;
mod pool;
mod probe;
pub mod state;
mod timer;
mod wire;

use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::sync::mpsc;

use crate::metrics::{Hist, Measured, Metrics, Settled};
use crate::observe::{Obs, Observer, Progress, RunStats};
use crate::scenario::Scenario;
use crate::summary::{GaveUp, Reconnects};
use http::{CallError, Http};

/// How to run live.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The service to drive: `http://HOST:PORT`.
    pub target: String,
    /// How the summary names the target (`"embedded"` for the service the
    /// command line started, else its URL).
    pub target_label: String,
    /// Scenario time per wall time (60: an hour in a minute).
    pub time_scale: f64,
    /// `gettoken` credentials.
    pub corpid: String,
    /// `gettoken` credentials.
    pub corpsecret: String,
    /// After the last arrival, wait at most this long (wall) for sessions
    /// to end.
    pub drain: Duration,
    /// Per-call timeout (long-polls get their wait on top).
    pub timeout: Duration,
    /// An action without an answer (a timeout, a dropped connection, a
    /// 5xx) is sent again (a message or a reply with the same id) until
    /// this long (wall) after its first send; then the driver gives up on
    /// it and counts it in `live.gave_up`. With `timeout`, it must stay
    /// under the target's resend window (the reference service's: 60 s),
    /// or a resend the target no longer recognises may be taken twice.
    pub resend_for: Duration,
    /// Play the bot tier of accounts with `[account.bot]` through the
    /// enterprise API (`send_msg`, `service_state/trans`), as a middleware
    /// would; off when a middleware under test is the bot.
    pub play_bots: bool,
    /// This process's share of the run (`--shard I/N`): every Nth arrival
    /// of each entry, from the I-th, and every Nth agent.
    pub shard: crate::tally::Shard,
    /// When the scenario's clock starts (wall time): shards started apart
    /// run one schedule. `None`: once connected.
    pub start_at: Option<std::time::SystemTime>,
    /// A folder the shards share (their start barrier's): each says there
    /// when its customers are done, and the agents, who serve every
    /// shard's customers, stop once all have. Without it they serve until
    /// the end of the drain.
    pub shards_dir: Option<std::path::PathBuf>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            target: String::new(),
            target_label: String::new(),
            time_scale: 1.0,
            corpid: "kfsim".into(),
            corpsecret: "kfsim-secret".into(),
            drain: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            resend_for: Duration::from_secs(30),
            play_bots: true,
            shard: crate::tally::Shard::WHOLE,
            start_at: None,
            shards_dir: None,
        }
    }
}

impl LiveOptions {
    /// Whether these options can run: a target URL, a time scale within
    /// the scenario's bounds,
    /// and resends that stay within the target's resend window.
    pub fn check(&self) -> Result<(), String> {
        use crate::scenario::{MAX_TIME_SCALE, MIN_TIME_SCALE};
        if !(MIN_TIME_SCALE..=MAX_TIME_SCALE).contains(&self.time_scale) {
            return Err("the time scale must be a number from 0.000001 to 1000000".into());
        }
        crate::scenario::units::check_target_url(&self.target)?;
        if self.resend_for + self.timeout >= RESEND_WINDOW {
            return Err(format!(
                "resending for {:?} with a {:?} timeout outlasts the target's resend window ({RESEND_WINDOW:?})",
                self.resend_for, self.timeout
            ));
        }
        Ok(())
    }
}

/// The most arrivals per second of wall time the live engine is asked to
/// drive (at the peak of the profiles, times the time scale). The driver
/// keeps up with about a thousand on one core (`benches/live`); far beyond
/// it would only shed load.
pub const MAX_WALL_ARRIVALS_PER_S: f64 = 20_000.0;

/// Whether the live engine can drive `sc` at `time_scale`: its peak
/// arrival rate in wall time is at most [`MAX_WALL_ARRIVALS_PER_S`].
pub fn check_load(sc: &Scenario, time_scale: f64) -> Result<(), String> {
    let peak: f64 = sc
        .entries
        .iter()
        .map(|e| {
            e.rate_per_s
                * e.profile.iter().map(|p| p.1).fold(if e.profile.is_empty() { 1.0 } else { 0.0 }, f64::max)
        })
        .sum();
    let wall = peak * time_scale;
    if wall > MAX_WALL_ARRIVALS_PER_S {
        return Err(format!(
            "the scenario asks for {wall:.0} arrivals per second of wall time at its peak (time scale {time_scale}); \
             the live engine drives at most {MAX_WALL_ARRIVALS_PER_S:.0}: lower the rates or the time scale"
        ));
    }
    Ok(())
}

/// Why a live run could not run at all (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("the target {target} {}: {reason}", what_it_did(*answered))]
pub struct Unreachable {
    /// The target.
    pub target: String,
    /// The last error.
    pub reason: String,
    /// Something answered there (an HTTP status, a body that is not the
    /// protocol's, a refused `gettoken`): another service, or the wrong
    /// port, rather than a target that is down.
    pub answered: bool,
}

fn what_it_did(answered: bool) -> &'static str {
    if answered { "answered, but not as the protocol says" } else { "was never reachable" }
}

/// Why `gettoken` failed, in words, and whether something answered at
/// all: the error's `Debug` (`Decode`, `Status(404)`) said neither.
fn why_no_token(e: &CallError) -> (String, bool) {
    match e {
        CallError::Connect(m) | CallError::Broken(m) | CallError::Request(m) => (m.clone(), false),
        CallError::Timeout => ("no answer within the call's timeout".into(), false),
        CallError::Status(s) => (format!("gettoken answered HTTP {s}"), true),
        CallError::Errcode(c) => (format!("gettoken answered errcode {c}"), true),
        CallError::Decode => ("gettoken's answer is not the protocol's JSON".into(), true),
        CallError::TooLarge => ("gettoken's answer is too long to be the protocol's".into(), true),
        CallError::Cut => ("the run stopped waiting for the answer".into(), false),
    }
}

/// A live run stopped (Ctrl-C, SIGTERM) while it was still trying to
/// reach the target: nothing ran, nothing is reported (exit 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted while reaching the target {target}: nothing ran, no report is written")]
pub struct InterruptedConnecting {
    /// The target.
    pub target: String,
}

/// How long a live run tries to get its first token from the target
/// before it gives up (exit 3): a target that refuses connections, or
/// accepts them and never answers, ends the run within this (plus one
/// call's timeout for `account/list`, if `gettoken` answered).
pub const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// How long the target recognises a resent message or reply by its id
/// (`docs/protocol.md`).
pub(crate) const RESEND_WINDOW: Duration = Duration::from_secs(60);

/// The pause before the `attempt`-th send (2, 3, …) of an action, in
/// scenario µs: 100 ms of wall time, doubling up to 1.6 s (a target back
/// from an outage hears again from each waiting action within that).
pub(crate) fn pause(attempt: u32, scale: f64) -> u64 {
    (0.1 * f64::from(1u32 << (attempt.clamp(2, 6) - 2)) * 1e6 * scale) as u64
}

/// The failed sends of one action: how many, and when the first went out
/// (scenario µs).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tries {
    failed: u32,
    first_sent: u64,
}

impl Tries {
    pub(crate) fn failed(&self) -> u32 {
        self.failed
    }

    /// A send that went out at `sent` failed, as seen at `now`: when to
    /// send again (all in scenario µs), or `None` once that would be more
    /// than `budget` after the first send.
    fn next_send(&mut self, sent: u64, now: u64, scale: f64, budget: u64) -> Option<u64> {
        if self.failed == 0 {
            self.first_sent = sent;
        }
        self.failed += 1;
        let next = now.saturating_add(pause(self.failed + 1, scale));
        self.within(next, budget).then_some(next)
    }

    /// Whether a resend at `t` is within `budget` of the first send (a
    /// resend may leave later than planned: a busy driver).
    fn within(&self, t: u64, budget: u64) -> bool {
        t.saturating_sub(self.first_sent) <= budget
    }
}

/// An item of a timer heap, ordered by `(t, seq)` only: `seq` keeps items
/// due at the same time in the order they were scheduled.
pub(crate) struct Timed<T> {
    pub(crate) t: u64,
    pub(crate) seq: u64,
    pub(crate) item: T,
}

impl<T> PartialEq for Timed<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}

impl<T> Eq for Timed<T> {}

impl<T> PartialOrd for Timed<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl<T> Ord for Timed<T> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.t, self.seq).cmp(&(o.t, o.seq))
    }
}

/// A queue the run follows.
#[derive(Debug, Clone)]
pub(crate) enum Queue {
    /// The customers' channel.
    Customers,
    /// The servicer channel that carries every agent's queue.
    Servicers,
    /// One servicer's own queue (a target without servicer channels).
    Own(String),
}

/// The errcode of a pull or batch naming a channel the target does not
/// know (`docs/protocol.md`); also a cursor it does not take.
const INVALID_PARAM: i64 = 40058;

/// Long-poll one queue (`endpoint`: its name in the statistics and its
/// path) and hand each non-empty page of events, with the epoch of the
/// channel it came from, to `deliver` until the run stops or `deliver`
/// says no more. A channel the target no longer knows (it restarted, or
/// let the lease run out) is replaced through [`relink`]; the queue is
/// then followed from its start.
pub(crate) async fn follow_queue(
    sh: Arc<Shared>,
    endpoint: (&'static str, &'static str),
    queue: Queue,
    mut deliver: impl FnMut(u64, Vec<wire::Event>) -> bool,
) {
    let mut followed = None;
    let mut cursor = String::new();
    // a page whose answer was lost is read again from the same cursor:
    // items already handed over are dropped by their seq
    let mut last_seq = 0;
    while !sh.stop.load(Ordering::SeqCst) {
        let (epoch, channel_id) = {
            let link = sh.link();
            let id = match &queue {
                Queue::Customers => link.customers.clone(),
                Queue::Servicers => link.servicers.clone().unwrap_or_default(),
                Queue::Own(_) => String::new(),
            };
            (link.epoch, id)
        };
        if followed != Some(epoch) {
            // a new channel (or a restarted target's queue): seqs start again
            followed = Some(epoch);
            cursor.clear();
            last_seq = 0;
        }
        let servicer_userid = match &queue {
            Queue::Own(u) => u.as_str(),
            _ => "",
        };
        let body = wire::Pull {
            channel_id: &channel_id,
            servicer_userid,
            cursor: &cursor,
            limit: 1000,
            timeout_ms: 500,
        };
        let wait = Duration::from_millis(500);
        let r: Result<wire::Pulled, CallError> =
            sh.http.call(endpoint.0, endpoint.1, &body, Instant::now(), wait).await;
        match r {
            Ok(mut p) => {
                if let Some(n) = p.missed.filter(|&n| n > 0) {
                    let missed = &mut sh.counts().missed;
                    match queue {
                        Queue::Customers => missed.customers += n,
                        _ => missed.servicers += n,
                    }
                }
                if let Some(c) = p.next_cursor {
                    cursor = c;
                }
                p.event_list.retain(|e| e.seq == 0 || e.seq > last_seq);
                last_seq = p.event_list.iter().map(|e| e.seq).max().unwrap_or(0).max(last_seq);
                if !p.event_list.is_empty() && !deliver(epoch, p.event_list) {
                    return;
                }
            }
            // a cursor the target no longer takes: read from the start of
            // the queue (what was handed over already is dropped by seq)
            Err(CallError::Errcode(INVALID_PARAM)) if !cursor.is_empty() => cursor.clear(),
            // refused from the start too: the channel is gone
            Err(CallError::Errcode(INVALID_PARAM)) if !matches!(queue, Queue::Own(_)) => {
                if !relink(&sh, epoch).await {
                    tokio::time::sleep(RELINK_PAUSE).await;
                }
            }
            // a target that fails is not asked again at once
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// How long a follower waits after it could not open new channels (the
/// target may still be starting) before it tries again.
const RELINK_PAUSE: Duration = Duration::from_millis(500);

/// Tries to open the servicer channel at the start of a run before the
/// agents follow each queue of their own.
const OPEN_ATTEMPTS: u32 = 5;

/// Open a channel that carries every agent's queue: its id, `Ok(None)` if
/// the target has no servicer channels (404) or refuses one (an errcode),
/// `Err` if it could not be reached in `attempts` tries. A failed open is
/// tried again: it may have bound the servicers all the same, and a new
/// open moves them.
async fn open_servicer_channel(sh: &Shared, attempts: u32) -> Result<Option<String>, CallError> {
    let body = json!({"servicer_userids": sh.servicers, "queue_cap": 1_000_000});
    let mut opened = Err(CallError::Timeout);
    for attempt in 1..=attempts {
        opened = sh
            .http
            .call::<wire::Opened>(
                "open_channel",
                "/sim/servicer/open_channel",
                &body,
                Instant::now(),
                Duration::ZERO,
            )
            .await;
        match &opened {
            Ok(_) | Err(CallError::Status(404) | CallError::Errcode(_)) => break,
            Err(_) if attempt < attempts => {
                tokio::time::sleep(sh.tb.wall(pause(attempt + 1, sh.tb.scale))).await
            }
            Err(_) => {}
        }
    }
    match opened {
        Ok(o) if !o.channel_id.is_empty() => Ok(Some(o.channel_id)),
        Ok(_) | Err(CallError::Status(404) | CallError::Errcode(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Open the customers' channel.
async fn open_customer_channel(http: &Http) -> Result<String, CallError> {
    let body = json!({"queue_cap": 1_000_000});
    let path = "/sim/customer/open_channel";
    let o: wire::Opened = http.call("open_channel", path, &body, Instant::now(), Duration::ZERO).await?;
    Ok(o.channel_id)
}

/// Open the agents' channel, before the customers' ([`open_customers`]),
/// so that the first customers' messages are not routed to queues nobody
/// reads. A run whose channels could not be opened goes on: the first pull
/// opens them.
async fn open_servicers(sh: &Shared) {
    // a target without servicer channels (or unreachable for now): the
    // agents follow their own queues
    let servicers = open_servicer_channel(sh, OPEN_ATTEMPTS).await.ok().flatten();
    sh.link().servicers = servicers;
}

/// The customers' channel, opened at the start: nothing comes on it before
/// (the agents' pulls keep theirs open while a shard waits for `--start-at`;
/// a customer channel opened then ran out of its lease, 60 s on the
/// reference service, and the run began by reconnecting).
async fn open_customers(sh: &Shared) {
    let customers = open_customer_channel(&sh.http).await.unwrap_or_default();
    sh.link().customers = customers;
}

/// Wait until `start`, asking `progress` as the run does whether to go on:
/// `false` if told to stop first (a signal while a shard waits for a far
/// `--start-at` used to be answered only once the run began).
async fn wait_for_start(start: Instant, progress: &mut ProgressFn<'_>) -> bool {
    loop {
        let now = Instant::now();
        if now >= start {
            return true;
        }
        if !progress(&Progress::default()) {
            return false;
        }
        tokio::time::sleep_until(start.min(now + Duration::from_millis(50)).into()).await;
    }
}

/// The target does not know a channel of the run's epoch `seen`: it
/// restarted, or a channel's lease ran out. Open new ones — the
/// servicers' first, as at the start — with the accounts' open_kfids read
/// again (a restarted target has new ones), and move the run to a new
/// epoch: every session of the old one is gone (the customer side counts
/// them), and what was sent before belongs to a target that forgot it.
/// Whoever finds the loss first does this; the others find the epoch moved
/// on. `false` if the target could not be reached (try again later).
pub(crate) async fn relink(sh: &Shared, seen: u64) -> bool {
    let _one = sh.relinking.lock().await;
    if sh.epoch() != seen {
        return true;
    }
    let had = sh.link().clone();
    // read first: a target without the accounts gets no channels opened
    let Ok(open_kfid) = list_accounts(&sh.http, &sh.accounts).await else { return false };
    let servicers = match had.servicers {
        Some(_) => match open_servicer_channel(sh, 1).await {
            Ok(Some(id)) => Some(id),
            _ => return false,
        },
        None => None,
    };
    let Ok(customers) = open_customer_channel(&sh.http).await else { return false };
    // a channel that never opened was not lost
    sh.publish(Link { epoch: seen + 1, customers, servicers, open_kfid }, !had.customers.is_empty());
    true
}

/// The transit [`Timebase::had_at`] counts at its wall length, at most:
/// ten times the run's own overhead on loopback (about 0.5 ms a hop).
pub(crate) const TRANSIT_AT_WALL: Duration = Duration::from_millis(5);

/// Scenario time ↔ wall time.
#[derive(Debug, Clone, Copy)]
pub struct Timebase {
    start: Instant,
    pub(crate) scale: f64,
}

impl Timebase {
    /// Scenario time now [µs].
    pub fn now_us(&self) -> u64 {
        (self.start.elapsed().as_secs_f64() * 1e6 * self.scale) as u64
    }

    /// The wall instant of scenario time `us`.
    pub fn instant(&self, us: u64) -> Instant {
        self.start + Duration::from_secs_f64(us as f64 / 1e6 / self.scale)
    }

    /// Wall time since the start [µs] (delivery times are wall times).
    pub fn wall_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Scenario time `us` as wall time since the start [µs].
    pub fn wall_us_at(&self, us: u64) -> u64 {
        (us as f64 / self.scale) as u64
    }

    /// The scenario instant a person in the model had something that was
    /// sent at `sent` and reached the driver at `now` (scenario µs): its
    /// transit counted at its wall length, not stretched by the scale.
    /// At ×480 each millisecond between the sender's request and the
    /// receiver's pull would otherwise add half a second of scenario time
    /// to every reply and every turn, lengthening sessions (and so the
    /// occupancy and waits) by what a real-time run never sees.
    ///
    /// Only the first [`TRANSIT_AT_WALL`] of wall time count so: a longer
    /// transit is a stall or a resend of the target's, counted as it comes,
    /// lest a person be credited with time they did not have the message.
    pub fn had_at(&self, sent: u64, now: u64) -> u64 {
        if self.scale <= 1.0 || sent >= now {
            return now;
        }
        let cap = TRANSIT_AT_WALL.as_secs_f64() * 1e6;
        let wall = ((now - sent) as f64 / self.scale).min(cap);
        now - (wall * (self.scale - 1.0)) as u64
    }

    /// A scenario duration [µs] as wall time.
    pub fn wall(&self, us: u64) -> Duration {
        Duration::from_secs_f64(us as f64 / 1e6 / self.scale)
    }
}

/// Figures only the live engine has, gathered by the tasks.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LiveCounts {
    /// Customer messages accepted, and replies received, in the measured
    /// window (scenario time from the warm-up to the end of arrivals).
    window_sent: u64,
    window_replies: u64,
    sent: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    late: u64,
    shed: u64,
    /// Waits of the sessions assigned at once [scenario µs]: the run's own
    /// overhead.
    immediate: Hist,
    lag: Hist,
    to_agent: Hist,
    to_customer: Hist,
    gave_up: GaveUp,
    #[serde(default)]
    missed: crate::summary::Missed,
    /// The target forgot the run's channels: how often, and what with them.
    pub(crate) reconnects: Reconnects,
    /// The driver's own lag (a state written before it was measured has
    /// none).
    #[serde(default)]
    probe: probe::Lag,
}

/// Everything the tasks share.
pub(crate) struct Shared {
    pub(crate) http: Http,
    pub(crate) tb: Timebase,
    pub(crate) obs: mpsc::UnboundedSender<Obs>,
    pub(crate) counts: std::sync::Mutex<LiveCounts>,
    pub(crate) stop: AtomicBool,
    /// The target's channels and accounts as the run knows them.
    link: std::sync::Mutex<Link>,
    /// `link.epoch`, read without the lock.
    epoch: AtomicU64,
    /// One [`relink`] at a time.
    relinking: tokio::sync::Mutex<()>,
    /// The scenario's account names and servicer userids (by agent index),
    /// to open channels again.
    accounts: Vec<String>,
    servicers: Vec<String>,
    /// Per session (by key), per message: what is known of it, for the
    /// end-to-end accounting. The customer side marks what the target
    /// took and settles a session when it is over; the agents mark what
    /// they saw. A settled session an agent may still see a message of
    /// keeps its flags (see [`LOST`]): an entry made anew would count that
    /// message a second time.
    pub(crate) ledger: std::sync::Mutex<std::collections::HashMap<u64, Vec<u8>>>,
    /// Sessions settled with every message seen, a bit each, their ledger
    /// entries dropped: a message of one that an agent sees again is a
    /// duplicate, not a message sent and delivered anew. One set per shard
    /// (by key mod shard count), a session's bit at key ÷ shard count (keys
    /// are dealt in order: 600 kB for five million sessions): this shard's
    /// own sessions, settled by its customers, and other shards' sessions
    /// this shard's agents saw every message of, settled when their end
    /// was noted. Locked after `ledger`.
    pub(crate) clean: std::sync::Mutex<Vec<Vec<u64>>>,
    /// Play the bot tier ([`LiveOptions::play_bots`]).
    pub(crate) play_bots: bool,
    pub(crate) agent_index: BTreeMap<String, u32>,
    /// The measured window `[warmup, duration]` in scenario µs.
    pub(crate) window: (u64, u64),
    /// [`LiveOptions::resend_for`] in scenario µs.
    pub(crate) resend_us: u64,
    /// How long (wall) a due action may wait for others to leave in the
    /// same request: see [`gather_for`].
    pub(crate) gather: Duration,
    /// This process's share of the run.
    pub(crate) shard: crate::tally::Shard,
}

/// The target's channels of the run, and its accounts' open_kfids (by
/// the scenario's account index), as of one epoch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Link {
    /// Bumped each time the run found a channel of its own unknown to the
    /// target and opened new ones ([`relink`]).
    pub(crate) epoch: u64,
    /// The customers' channel.
    pub(crate) customers: String,
    /// The channel carrying the agents' queues; `None`: each agent follows
    /// its own queue.
    pub(crate) servicers: Option<String>,
    pub(crate) open_kfid: Vec<String>,
}

/// How long a due action may wait to leave with others: 0.5 % of the
/// service-level threshold in scenario time, between 0.1 and 5 ms of wall
/// time. Sending each action alone at high rates multiplies the requests
/// (and the CPU of both sides) for no accuracy a compressed run needs; at
/// ×480 and T = 20 s it is 0.2 ms, at real time 5 ms.
pub(crate) fn gather_for(sc: &Scenario, time_scale: f64) -> Duration {
    Duration::from_secs_f64((0.005 * sc.service_level_us as f64 / 1e6 / time_scale).clamp(1e-4, 5e-3))
}

/// Ledger flags of a message: the target took it (its answer said so, or
/// an agent answered it).
pub(crate) const TAKEN: u8 = 1;
/// Ledger flags of a message: an agent saw it.
pub(crate) const SEEN: u8 = 2;
/// Ledger flags of a message: the customer gave up sending it (no answer
/// within the resend budget). Unless an agent saw it after all, it counts
/// as lost: a gate on loss must see what an outage cost.
pub(crate) const GAVE_UP: u8 = 4;
/// Ledger flags of a message: no agent had seen it when its session was
/// over for the customer, and it was counted lost then. An agent that
/// sees it later (a page pulled before a restart, handled after the
/// customers noticed it) does not count it delivered as well.
pub(crate) const LOST: u8 = 8;
/// Messages per session the ledger tracks: ids naming more are not the
/// driver's (a target echoing garbage must not make it allocate).
pub(crate) const MAX_MESSAGES: u32 = 1 << 16;

impl Shared {
    pub(crate) fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A call's timeout in scenario µs: how late a target's word about
    /// something the driver did can still be taken for an answer to it.
    pub(crate) fn call_window_us(&self) -> f64 {
        self.tb.scale * self.http.timeout().as_secs_f64() * 1e6
    }

    /// The run's current epoch (see [`Link::epoch`]).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Move the run to `link` (a new epoch), counting a reconnect if
    /// `lost`: under the counts' lock, which orders the new epoch against
    /// every message counted as taken (what is counted in it from then on
    /// is the new target's).
    fn publish(&self, link: Link, lost: bool) {
        let mut counts = self.counts();
        let epoch = link.epoch;
        *self.link() = link;
        self.epoch.store(epoch, Ordering::SeqCst);
        counts.reconnects.count += u64::from(lost);
        counts.reconnects.sent_since = 0;
    }

    /// A message was first known to be taken, by what came in `epoch`:
    /// counted as sent (and in the measured window's rate if `in_window`).
    /// Called with the counts held.
    pub(crate) fn count_sent(&self, counts: &mut LiveCounts, epoch: u64, in_window: bool) {
        counts.sent += 1;
        counts.window_sent += u64::from(in_window);
        counts.reconnects.sent_since += u64::from(epoch == self.epoch());
    }

    pub(crate) fn ledger(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Vec<u8>>> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mark message `idx` of session `key` (of `total`) with `flag`: the
    /// flags it had before and whether a later message of the session was
    /// seen already, or `None` if `idx` is out of range. A message of a
    /// session settled with every message seen reads as taken and seen,
    /// and no entry is made for it again.
    pub(crate) fn mark(&self, key: u64, idx: u32, total: u32, flag: u8) -> Option<(u8, bool)> {
        if idx >= total || total > MAX_MESSAGES {
            return None;
        }
        let mut ledger = self.ledger();
        let s = match ledger.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(_) if self.settled_clean(key) => {
                return Some((SEEN | TAKEN, false));
            }
            std::collections::hash_map::Entry::Vacant(v) => v.insert(vec![0; total as usize]),
        };
        // a transfer gives the session more messages than it began with
        if s.len() < total as usize {
            s.resize(total as usize, 0);
        }
        let before = *s.get(idx as usize)?;
        s[idx as usize] |= flag;
        let later_seen = s[idx as usize + 1..].iter().any(|f| f & SEEN != 0);
        Some((before, later_seen))
    }

    /// Note that session `key` was settled with every message seen (called
    /// with the ledger held, its entry dropped). Another shard's keys come
    /// from the target: one past twice this shard's own sessions (and a
    /// margin) is not noted, so that no key makes the set grow without
    /// bound; the shards' customers are dealt alike.
    pub(crate) fn settle_clean(&self, key: u64) {
        let count = u64::from(self.shard.count);
        let (set, i) = ((key % count) as usize, key / count);
        let Ok(word) = usize::try_from(i / 64) else { return };
        let mut clean = self.clean.lock().unwrap_or_else(|e| e.into_inner());
        if clean.len() < self.shard.count as usize {
            clean.resize(self.shard.count as usize, Vec::new());
        }
        if !self.owns_key(key) && word >= 2 * clean[self.shard.index as usize].len() + 64 {
            return;
        }
        let bits = &mut clean[set];
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        bits[word] |= 1 << (i % 64);
    }

    /// Whether [`Shared::settle_clean`] noted `key` (any key may come from
    /// the target: none allocates).
    fn settled_clean(&self, key: u64) -> bool {
        let count = u64::from(self.shard.count);
        let (set, i) = ((key % count) as usize, key / count);
        let clean = self.clean.lock().unwrap_or_else(|e| e.into_inner());
        let word = usize::try_from(i / 64).ok().and_then(|w| clean.get(set)?.get(w).copied());
        word.is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Whether the session of ledger key `key` is this shard's (its
    /// customer's): keys are dealt so that key mod N is the shard.
    pub(crate) fn owns_key(&self, key: u64) -> bool {
        self.shard.owns(key)
    }

    /// Whether scenario time `t` is in the measured window.
    pub(crate) fn in_window(&self, t: u64) -> bool {
        (self.window.0..=self.window.1).contains(&t)
    }

    /// A send of an action that went out at `sent` failed, as seen at
    /// `now` (scenario µs): when to send it again, or `None` to give up.
    pub(crate) fn resend_at(&self, tries: &mut Tries, sent: u64, now: u64) -> Option<u64> {
        tries.next_send(sent, now, self.tb.scale, self.resend_us)
    }

    /// Whether an action failed before may still be sent again now.
    pub(crate) fn may_resend(&self, tries: &Tries, now: u64) -> bool {
        tries.failed == 0 || tries.within(now, self.resend_us)
    }

    pub(crate) fn counts(&self) -> std::sync::MutexGuard<'_, LiveCounts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The progress callback of a live run: called every few tens of
/// milliseconds with where the run is; answering `false` stops the arrivals,
/// lets the sessions drain for a few seconds and ends the run with
/// `run.interrupted`.
pub type ProgressFn<'a> = dyn FnMut(&Progress) -> bool + Send + 'a;

/// Run `sc` live against the target in `opts` and measure it: the summary
/// (`engine = "live"`), its series and histograms.
pub async fn run(
    sc: &Scenario,
    opts: &LiveOptions,
    progress: &mut ProgressFn<'_>,
) -> anyhow::Result<Measured> {
    Ok(run_with_state(sc, opts, progress).await?.0)
}

/// [`run`], and the run's settled state, which merges with the states of
/// the other shards of the run (`crate::tally`).
pub async fn run_with_state(
    sc: &Scenario,
    opts: &LiveOptions,
    progress: &mut ProgressFn<'_>,
) -> anyhow::Result<(Measured, crate::tally::RunState<Settled>)> {
    opts.check().map_err(anyhow::Error::msg)?;
    check_load(sc, opts.time_scale).map_err(anyhow::Error::msg)?;
    let http = Http::new(&opts.target, opts.timeout);
    let (open_kfid, agent_index) = connect(&http, sc, opts, progress).await?;
    let own: BTreeMap<String, u32> = agent_index
        .iter()
        .filter(|(_, i)| opts.shard.owns(u64::from(**i)))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    // a target that answered so far may sit on these: a Ctrl-C here waited
    // out their timeouts, a minute and more, for a run where nothing ran
    let stopped = || InterruptedConnecting { target: opts.target.clone() };
    let busy_at_start =
        unless_stopped(busy_servicers(&http, &open_kfid, &own), progress).await.ok_or_else(stopped)?;
    // a shard's servicer channel carries its own agents' queues only
    let servicers: Vec<String> =
        sc.agent_ids().zip(0u64..).filter(|(_, i)| opts.shard.owns(*i)).map(|(u, _)| u).collect();
    // Shards started apart begin the schedule together (one that comes
    // late starts at once, its schedule lagging by as much). Their agents
    // follow their queues before: a session given to an agent whose shard
    // had not started would wait in a queue nobody reads.
    let start = Instant::now()
        + opts
            .start_at
            .and_then(|at| at.duration_since(std::time::SystemTime::now()).ok())
            .unwrap_or_default();
    let (obs_tx, obs_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        http,
        tb: Timebase { start, scale: opts.time_scale },
        obs: obs_tx,
        counts: Default::default(),
        stop: AtomicBool::new(false),
        link: std::sync::Mutex::new(Link { open_kfid, ..Link::default() }),
        epoch: AtomicU64::new(0),
        relinking: Default::default(),
        accounts: sc.accounts.iter().map(|a| a.name.clone()).collect(),
        servicers,
        ledger: Default::default(),
        clean: Default::default(),
        play_bots: opts.play_bots,
        agent_index,
        window: (sc.warmup_us, sc.duration_us),
        resend_us: (opts.resend_for.as_secs_f64() * 1e6 * opts.time_scale) as u64,
        gather: gather_for(sc, opts.time_scale),
        shard: opts.shard,
    });
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let mut metrics = Metrics::new(sc);
    metrics.keep_interval_histograms();
    let collector = tokio::spawn(collect(metrics, obs_rx, shared.tb, done_rx));
    unless_stopped(open_servicers(&shared), progress).await.ok_or_else(stopped)?;
    let agent_task = agents::spawn(sc, &shared);
    let mut probe = None;
    let outcome = if wait_for_start(start, progress).await {
        // spawned, as the agents, their pulls and an embedded service are:
        // it is late when the runtime's workers are (the customers' loop
        // runs on the thread that drives the run, where the lateness of
        // its actions is `late_actions`)
        let sh = shared.clone();
        probe = Some(tokio::spawn(async move { probe::run(sh.tb, &sh.stop).await }));
        open_customers(&shared).await;
        customers::drive(sc, &shared, opts, progress).await
    } else {
        customers::Outcome {
            sessions: 0,
            peak_in_flight: 0,
            interrupted: true,
            open_at_end: 0,
            calls_by: Instant::now(),
        }
    };
    let mut calls_by = outcome.calls_by;
    if opts.shard.is_part() {
        // this shard's customers are done (an interrupted shard's too: its
        // channel closes below, ending their sessions), so the others need
        // not serve them to the end of their drain
        say_done(opts);
        if !outcome.interrupted {
            // this shard's agents serve the other shards' customers too: they
            // stop when every shard's customers are done, at the latest at
            // the end of the drain every shard allows itself
            let deadline = shared.tb.instant(sc.duration_us) + opts.drain;
            calls_by = match others_done(opts, deadline).await {
                true => deadline.min(Instant::now() + opts.timeout + Duration::from_millis(100)),
                false => Instant::now(),
            };
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    // the agents' last batches are waited for as the customers' are, then
    // every call still in flight is cut and counted
    let mut agent_task = agent_task;
    let ended = tokio::time::timeout_at(calls_by.into(), &mut agent_task).await.is_ok();
    shared.http.cut_in_flight();
    if !ended {
        let _ = tokio::time::timeout(AFTER_CUT, agent_task).await;
    }
    if let Some(probe) = probe
        && let Ok(lag) = probe.await
    {
        shared.counts().probe = lag;
    }
    let end_us = shared.tb.now_us();
    close_channels(&shared).await;
    let wall_s = shared.tb.start.elapsed().as_secs_f64();
    // Replies still sleeping may hold the shared state: what they do now is
    // past the end of the run and is not counted.
    let http = shared.http.clone();
    let _ = done_tx.send(());
    let metrics = collector.await.context("the metrics task failed")?;
    let stats = RunStats {
        end_us: end_us.max(if outcome.interrupted { 0 } else { sc.duration_us }),
        events: 0,
        sessions: outcome.sessions,
        peak_in_flight: outcome.peak_in_flight,
        shed: 0,
        interrupted: outcome.interrupted,
        horizon: false,
    };
    let live = state::LiveState {
        counts: std::mem::take(&mut *shared.counts()),
        http: http.stats.state(),
        open_at_end: outcome.open_at_end,
        busy_at_start,
        calls_cut_at_end: http.calls_cut(),
        ..state::LiveState::fresh(&opts.target_label, opts.time_scale)
    };
    let run_state = crate::tally::RunState {
        end_us: stats.end_us,
        sessions: stats.sessions,
        peak_in_flight: stats.peak_in_flight,
        shed: stats.shed,
        interrupted: stats.interrupted,
        horizon: false,
        wall_s: Some(wall_s),
        metrics: metrics.settled(stats.end_us),
        live: Some(serde_json::to_value(&live).context("the live state")?),
    };
    let figures = live.figures(sc, stats.end_us, wall_s);
    Ok((metrics.finish_all(sc, &stats, Some(figures)), run_state))
}

/// How long a stopped run (Ctrl-C) waits at most for its sessions to end
/// and its calls in flight to be answered, before it cuts them: against a
/// target that stopped answering it waited out every call's timeout, 40 s
/// and more, which a second Ctrl-C cut short with no report.
pub fn interrupt_grace(opts: &LiveOptions) -> Duration {
    opts.drain.min(Duration::from_secs(5))
}

/// At most how long a stopped run takes to end, from the stop to its
/// figures: [`interrupt_grace`], then [`after_drain`].
pub fn stop_within(opts: &LiveOptions) -> Duration {
    interrupt_grace(opts) + after_drain()
}

/// How long the agents' task is given to end once the calls in flight
/// are cut (it has nothing left to wait for).
const AFTER_CUT: Duration = Duration::from_secs(1);

/// How long the closing of the run's channels is waited for: a courtesy
/// to a long-running target, which answers it at once, or is not
/// answering anything (it waited out a call's timeout, twice).
pub(crate) const CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// At most how long a run waits past its drain: the agents' task, once
/// the calls in flight are cut, and the closing of the channels.
pub(crate) fn after_drain() -> Duration {
    AFTER_CUT + CLOSE_WITHIN
}

/// A long-running target keeps no customers or queue of a run that is
/// over (the customers' open sessions end there, reason `left`): the
/// run's channels are closed, together, within [`CLOSE_WITHIN`].
async fn close_channels(shared: &Shared) {
    let (customers, servicers) = {
        let link = shared.link();
        (Some(link.customers.clone()).filter(|c| !c.is_empty()), link.servicers.clone())
    };
    let close = |path: &'static str, channel: Option<String>| async move {
        if let Some(id) = channel {
            let body = json!({ "channel_id": id });
            let _ = shared.http.post("close_channel", path, &body, Instant::now(), Duration::ZERO).await;
        }
    };
    let both = async {
        tokio::join!(
            close("/sim/customer/close_channel", customers),
            close("/sim/servicer/close_channel", servicers)
        )
    };
    let _ = tokio::time::timeout(CLOSE_WITHIN, both).await;
}

/// The file by which shard `i` says in `dir` that its customers are done.
fn done_file(dir: &std::path::Path, i: u32, n: u32) -> std::path::PathBuf {
    dir.join(format!("done-{i}-of-{n}"))
}

/// Say in `opts.shards_dir` that this shard's customers are done.
fn say_done(opts: &LiveOptions) {
    if let Some(dir) = &opts.shards_dir {
        let _ = std::fs::write(done_file(dir, opts.shard.index, opts.shard.count), b"");
    }
}

/// Wait until every shard has said its customers are done ([`say_done`]),
/// or until `deadline`: whether they all did.
async fn others_done(opts: &LiveOptions, deadline: Instant) -> bool {
    let n = opts.shard.count;
    let Some(dir) = &opts.shards_dir else {
        tokio::time::sleep_until(deadline.into()).await;
        return false;
    };
    let name = |i: u32| done_file(dir, i, n);
    loop {
        if (0..n).all(|i| name(i).exists()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `gettoken` (retried for [`CONNECT_WITHIN`]: a target may still be
/// starting), then the accounts' open_kfids and the servicers' userids.
async fn connect(
    http: &Http,
    sc: &Scenario,
    opts: &LiveOptions,
    progress: &mut ProgressFn<'_>,
) -> anyhow::Result<(Vec<String>, BTreeMap<String, u32>)> {
    let base = opts.target.as_str();
    let path = format!(
        "/cgi-bin/gettoken?corpid={}&corpsecret={}",
        http::percent_encode(&opts.corpid),
        http::percent_encode(&opts.corpsecret)
    );
    // a target may still be starting: ask again for a while, but not for
    // longer than CONNECT_WITHIN in all, whatever each call's timeout
    let deadline = tokio::time::Instant::now() + CONNECT_WITHIN;
    loop {
        let login = tokio::time::timeout_at(deadline, http.login(&path));
        let Some(answer) = unless_stopped(login, progress).await else {
            return Err(InterruptedConnecting { target: base.into() }.into());
        };
        let last = match answer {
            Ok(Ok(())) => break,
            Ok(Err(e @ CallError::Errcode(_))) => {
                let (reason, answered) = why_no_token(&e);
                return Err(Unreachable { target: base.into(), reason, answered }.into());
            }
            Ok(Err(e)) => why_no_token(&e),
            Err(_) => ("no answer".into(), false),
        };
        if tokio::time::Instant::now() + Duration::from_millis(100) >= deadline {
            let (last, answered) = last;
            let reason = format!("{last} (gettoken tried for {} s)", CONNECT_WITHIN.as_secs());
            return Err(Unreachable { target: base.into(), reason, answered }.into());
        }
        // a Ctrl-C here was kept waiting for the rest of the ten seconds
        if !progress(&Progress::default()) {
            return Err(InterruptedConnecting { target: base.into() }.into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<String> = sc.accounts.iter().map(|a| a.name.clone()).collect();
    let Some(open_kfid) = unless_stopped(list_accounts(http, &names), progress).await else {
        return Err(InterruptedConnecting { target: base.into() }.into());
    };
    let agent_index = sc.agent_ids().zip(0u32..).collect();
    Ok((open_kfid?, agent_index))
}

/// `f`'s answer, or `None` once `progress` says stop. Found by probing: a
/// Ctrl-C during a call the target sat on waited out the call's timeout
/// (10 s), then exited 3 as if the target were unreachable, not 130.
async fn unless_stopped<F: std::future::Future>(f: F, progress: &mut ProgressFn<'_>) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    loop {
        tokio::select! {
            out = &mut f => return Some(out),
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                if !progress(&Progress::default()) {
                    return None;
                }
            }
        }
    }
}

/// The open_kfid of each account named in `names` (`account/list`).
async fn list_accounts(http: &Http, names: &[String]) -> anyhow::Result<Vec<String>> {
    // WeCom pages account/list by at most 100: read until a short page (a
    // scenario has at most 5000 accounts; a target listing more is read
    // that far)
    let mut accounts: BTreeMap<String, String> = BTreeMap::new();
    for offset in (0..).step_by(100).take(crate::scenario::MAX_ACCOUNTS / 100 + 1) {
        let list = http
            .post(
                "account_list",
                "/cgi-bin/kf/account/list",
                &json!({"offset": offset, "limit": 100}),
                Instant::now(),
                Duration::ZERO,
            )
            .await
            .map_err(|e| anyhow::anyhow!("kf/account/list failed: {e:?}"))?;
        let page = list["account_list"].as_array().map_or(&[][..], Vec::as_slice);
        accounts.extend(
            page.iter()
                .filter_map(|a| Some((a["name"].as_str()?.to_owned(), a["open_kfid"].as_str()?.to_owned()))),
        );
        if page.len() < 100 || names.iter().all(|n| accounts.contains_key(n)) {
            break;
        }
    }
    names
        .iter()
        .map(|name| {
            accounts.get(name).cloned().ok_or_else(|| {
                anyhow::anyhow!("the target has no customer-service account named \"{name}\" (create it, or serve --scenario)")
            })
        })
        .collect()
}

/// Sessions the scenario's servicers hold already (`servicer/list`): a run
/// that finds them busy must say so, or it reports an idle service as a
/// slow one. A target without the call counts as none.
async fn busy_servicers(http: &Http, open_kfid: &[String], agents: &BTreeMap<String, u32>) -> u64 {
    // a servicer of several accounts is listed in each with its one load
    let mut busy: BTreeMap<&str, u64> = BTreeMap::new();
    for kfid in open_kfid {
        let path = format!("/cgi-bin/kf/servicer/list?open_kfid={}", http::percent_encode(kfid));
        let Ok(list) = http.get("servicer_list", &path).await else { continue };
        for s in list["servicer_list"].as_array().into_iter().flatten() {
            if let Some((u, _)) = s["userid"].as_str().and_then(|u| agents.get_key_value(u)) {
                let n = busy.entry(u.as_str()).or_default();
                *n = (*n).max(s["sessions"].as_u64().unwrap_or(0));
            }
        }
    }
    busy.values().sum()
}

/// The observer task: holds observations back a little so that the ones
/// from concurrent tasks reach the metrics in time order.
async fn collect(
    mut metrics: Metrics,
    mut rx: mpsc::UnboundedReceiver<Obs>,
    tb: Timebase,
    mut done: tokio::sync::oneshot::Receiver<()>,
) -> Metrics {
    struct ByTime(Obs);
    impl ByTime {
        fn t(&self) -> u64 {
            self.0.t()
        }
    }
    impl PartialEq for ByTime {
        fn eq(&self, o: &Self) -> bool {
            self.t() == o.t()
        }
    }
    impl Eq for ByTime {}
    impl PartialOrd for ByTime {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for ByTime {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            o.t().cmp(&self.t())
        }
    }
    let hold_us = (0.5 * 1e6 * tb.scale) as u64;
    let mut heap = BinaryHeap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            o = rx.recv() => match o {
                Some(o) => heap.push(ByTime(o)),
                None => break,
            },
            _ = &mut done => {
                while let Ok(o) = rx.try_recv() {
                    heap.push(ByTime(o));
                }
                break;
            }
            _ = tick.tick() => {
                let horizon = tb.now_us().saturating_sub(hold_us);
                while heap.peek().is_some_and(|o| o.t() <= horizon) {
                    metrics.observe(heap.pop().expect("peeked").0);
                }
            }
        }
    }
    while let Some(o) = heap.pop() {
        metrics.observe(o.0);
    }
    metrics
}

#[cfg(test)]
impl Shared {
    /// A run's shared state with channels `ch0…` to accounts `wk0…` and no
    /// target behind them, for tests that feed the tasks by hand.
    pub(crate) fn for_test(sc: &Scenario, obs: mpsc::UnboundedSender<Obs>) -> Arc<Shared> {
        Shared::for_shard_test(sc, obs, crate::tally::Shard::WHOLE)
    }

    /// [`Shared::for_test`] of one shard of a run.
    pub(crate) fn for_shard_test(
        sc: &Scenario,
        obs: mpsc::UnboundedSender<Obs>,
        shard: crate::tally::Shard,
    ) -> Arc<Shared> {
        let servicers: Vec<String> = sc.agent_ids().collect();
        let open_kfid = (0..sc.accounts.len()).map(|i| format!("wk{i}")).collect();
        Arc::new(Shared {
            http: Http::new("http://127.0.0.1:9", Duration::from_secs(1)),
            tb: Timebase { start: Instant::now(), scale: 60.0 },
            obs,
            counts: Default::default(),
            stop: AtomicBool::new(false),
            link: std::sync::Mutex::new(Link {
                epoch: 0,
                customers: "ch0".into(),
                servicers: Some("sv0".into()),
                open_kfid,
            }),
            epoch: AtomicU64::new(0),
            relinking: Default::default(),
            accounts: sc.accounts.iter().map(|a| a.name.clone()).collect(),
            agent_index: servicers.iter().cloned().zip(0u32..).collect(),
            servicers,
            ledger: Default::default(),
            clean: Default::default(),
            window: (sc.warmup_us, sc.duration_us),
            resend_us: 30_000_000 * 60,
            gather: Duration::from_millis(1),
            play_bots: true,
            shard,
        })
    }

    /// As [`relink`] does once it has opened new channels.
    pub(crate) fn relinked_for_test(&self, customers: &str, open_kfid: Vec<String>) {
        let epoch = self.epoch() + 1;
        let link = Link { epoch, customers: customers.into(), servicers: None, open_kfid };
        self.publish(link, true);
    }
}

#[cfg(test)]
mod tests {
    use super::{CallError, Instant, Timebase, Tries, Unreachable, why_no_token};

    /// Something that answers, but not the protocol (another service, the
    /// wrong port), is not a target that is down; and each reason is in
    /// words, where it was the error's `Debug` (`Decode`, `Status(404)`).
    #[test]
    fn a_target_that_answers_otherwise_is_not_called_unreachable() {
        let say = |e: CallError| {
            let (reason, answered) = why_no_token(&e);
            Unreachable { target: "http://h:1".into(), reason, answered }.to_string()
        };
        assert_eq!(
            say(CallError::Status(404)),
            "the target http://h:1 answered, but not as the protocol says: gettoken answered HTTP 404"
        );
        assert!(say(CallError::Decode).ends_with("says: gettoken's answer is not the protocol's JSON"));
        assert!(say(CallError::Errcode(40001)).ends_with("says: gettoken answered errcode 40001"));
        assert_eq!(
            say(CallError::Connect("connect h:1: refused".into())),
            "the target http://h:1 was never reachable: connect h:1: refused"
        );
        assert!(say(CallError::Timeout).contains("was never reachable: no answer within"));
    }

    /// A transit counts at its wall length, up to 5 ms of it: at ×480, 1 ms
    /// of wall time (480 ms of scenario time) counts 1 ms; 1 s of it (a
    /// stall) 1 s − 479 × 5 ms. At real time, or sent "after" now (another
    /// clock), as it comes.
    #[test]
    fn a_transit_counts_at_its_wall_length_up_to_a_stall() {
        let tb = |scale| Timebase { start: Instant::now(), scale };
        let ms = 1_000;
        assert_eq!(tb(480.0).had_at(7 * ms, 7 * ms + 480 * ms), 7 * ms + ms);
        assert_eq!(tb(480.0).had_at(0, 480_000 * ms), 480_000 * ms - 479 * 5 * ms);
        assert_eq!(tb(1.0).had_at(0, 30 * ms), 30 * ms);
        assert_eq!(tb(480.0).had_at(50 * ms, 30 * ms), 30 * ms);
    }

    /// Resends of an action failing at once: pauses of 0.1, 0.2, 0.4, 0.8,
    /// then 1.6 s, while the resend is within the budget (5 s here) of the
    /// first failure.
    #[test]
    fn resends_double_their_pause_and_stop_at_the_budget() {
        let scale = 60.0;
        let s = |wall: f64| (wall * 1e6 * scale) as u64;
        let mut tries = Tries::default();
        let mut now = s(10.0);
        let mut pauses = Vec::new();
        while let Some(next) = tries.next_send(now, now, scale, s(5.0)) {
            pauses.push(next - now);
            now = next;
        }
        let want: Vec<u64> = [0.1, 0.2, 0.4, 0.8, 1.6, 1.6].map(s).to_vec();
        assert_eq!(pauses, want, "resends at 0.1 … 3.1 and 4.7 s; one at 6.3 s is past the budget");
        assert_eq!(pauses.len() as u32 + 1, tries.failed());
    }
}
