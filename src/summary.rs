//! The report model: what a run found, as plain data. It is written as
//! `summary.json` (schema `kfsim/summary@1`) and every renderer (terminal,
//! later charts, HTML, gates, baselines) reads this one type.
//!
//! Rates and latencies that have no samples are `null`, never 0 or NaN, so
//! that a gate or a baseline comparison cannot mistake "nothing measured" for
//! "perfect".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::observe::Engine;

/// The schema name and version written into every summary.
pub const SCHEMA: &str = "kfsim/summary@1";

/// Everything a run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The kfsim version that wrote it.
    pub kfsim_version: String,
    /// Which engine ran it (`"sim"` or `"live"`).
    pub engine: Engine,
    /// Which scenario, and its main settings.
    pub scenario: ScenarioInfo,
    /// The seed of every random draw.
    pub seed: u64,
    /// How the run went.
    pub run: RunInfo,
    /// Session outcomes, over sessions arriving after warm-up.
    pub sessions: SessionCounts,
    /// Share of offered sessions not assigned at the moment they arrived.
    pub wait_probability: Option<f64>,
    /// abandoned / offered.
    pub abandon_rate: Option<f64>,
    /// Answered with queue wait ≤ T, divided by offered.
    pub service_level: Option<f64>,
    /// Mean queue wait of answered sessions [ms].
    pub asa_ms: Option<f64>,
    /// Slot-time used / slot-time online, over all agents.
    pub occupancy: Option<f64>,
    /// Latency distributions [ms].
    pub latency_ms: Latencies,
    /// Message counts.
    pub messages: MessageCounts,
    /// Per-agent figures, in scenario order.
    pub agents: Vec<AgentSummary>,
    /// Assignment fairness per account.
    pub fairness: BTreeMap<String, Fairness>,
    /// 优先分配给上次接待人员: how often returning customers kept their agent.
    pub sticky: Sticky,
    /// Per entry point, keyed by entry name.
    pub by_entry: BTreeMap<String, EntrySummary>,
    /// The scenario's gates and their verdicts, in file order.
    #[serde(default)]
    pub gates: Vec<GateResult>,
    /// Live engine: per endpoint of the target, calls, errors by kind and
    /// latency [ms] measured from each call's intended time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<BTreeMap<String, HttpEndpoint>>,
    /// Live engine: message delivery times [ms].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_ms: Option<Delivery>,
    /// Live engine: actions the driver sent more than 10 ms (wall) after
    /// their scheduled time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_actions: Option<u64>,
    /// Live engine: how late actions were sent [ms of wall time].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<LatencyStats>,
    /// Live engine: the target and the time scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveInfo>,
    /// Live engine against a middleware (`run --middleware`): what the
    /// middleware did, as kfsim playing WeCom saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middleware: Option<MiddlewareSummary>,
    /// The bot tier (智能助手), when an account has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<BotSummary>,
    /// Per account: every handle its people got (first handles and
    /// transfers in).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_account: BTreeMap<String, AccountSummary>,
    /// Per agent group: handles taken, transferred and ended.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_group: BTreeMap<String, GroupSummary>,
    /// 转接 per path, keyed `GROUP->ACCOUNT`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub transfers: BTreeMap<String, u64>,
    /// Where sessions went, edge by edge: entry → bot → account (its people)
    /// → group → transfer or end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flow: Vec<FlowEdge>,
}

impl Summary {
    /// When no session of a live run got through (each was refused or
    /// left unfinished, none answered or abandoned) and the target failed
    /// calls: its failing endpoints with their errors, most first
    /// (`open_channel 66, customer_batch 3`). Such a run measured the
    /// target's failure, not its reception, which a gate on what was
    /// answered may not catch.
    pub fn failed_target(&self) -> Option<String> {
        let http = self.http.as_ref()?;
        let s = &self.sessions;
        if s.offered == 0 || s.answered + s.abandoned > 0 || s.rejected + s.unfinished < s.offered {
            return None;
        }
        let mut failed: Vec<_> = http.iter().filter(|(_, e)| e.errors > 0).collect();
        failed.sort_by(|a, b| b.1.errors.cmp(&a.1.errors).then(a.0.cmp(b.0)));
        let list: Vec<_> = failed.iter().map(|(k, e)| format!("{k} {}", e.errors)).collect();
        (!list.is_empty()).then(|| list.join(", "))
    }
}

/// What a KF middleware did during a run, as WeCom (kfsim) saw it. Its
/// latencies are wall time [ms], as the middleware lived them, whatever the
/// time scale; its counts cover the whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MiddlewareSummary {
    /// The callback URL.
    pub url: String,
    /// The `kf_msg_or_event` callbacks sent to it.
    pub callbacks: CallbackSummary,
    /// Log entries `sync_msg` returned to it for the first time.
    pub synced: u64,
    /// A log entry available → first returned by `sync_msg` [ms].
    pub sync_lag_ms: LatencyStats,
    /// Customer messages in sessions the middleware held (states 0 and 1).
    pub customer_messages: u64,
    /// The oldest customer message it had not acted on → its `send_msg`
    /// (or `send_msg_on_event`) to that customer [ms].
    pub bot_reply_ms: LatencyStats,
    /// Session start → the middleware's first hand-off out of states 0/1
    /// (`service_state/trans` to 2 or 3) [ms]: what it adds before the
    /// reception rules see the session.
    pub routed_ms: LatencyStats,
    /// Session start → state 3 (a servicer holds it) [ms].
    pub handoff_ms: LatencyStats,
    /// Its API calls per endpoint (`gettoken`, `kf/sync_msg`, …).
    pub api: BTreeMap<String, ApiEndpoint>,
    /// `gettoken` calls: more than a few in a run means it does not cache
    /// its access_token.
    pub gettoken: u64,
    /// Customer messages it never acted on: no reply and no hand-off
    /// before their session ended.
    pub unacted: u64,
    /// Customer messages still owed when the run ended (its customers'
    /// channel closed): not counted in `unacted`, the run cut them short.
    pub owed_at_end: u64,
    /// Messages it sent to sessions that had already ended.
    pub replies_after_end: u64,
    /// Messages it sent twice: the same content to the same session with
    /// no customer message in between.
    pub sent_twice: u64,
    /// Log entries its `sync_msg` calls returned that they had returned
    /// before: read again from an older cursor or from the start (a
    /// middleware that keeps no cursor reads its whole log at each
    /// callback, and handles each message again unless it dedups).
    pub resynced: u64,
    /// Its `sync_msg` calls without a callback's Token: WeCom serves those
    /// under a strict rate limit (its size unstated), which kfsim does not
    /// apply, so a middleware that pulls so passes here and may be
    /// throttled in production.
    pub sync_without_token: u64,
    /// The time scale's effect: its median added latency (`routed_ms`
    /// p50) × the time scale, as a share of the service-level threshold.
    /// Above 0.1 the scale distorts what customers see (a warning).
    pub scale_effect: Option<f64>,
}

/// The callbacks a middleware received.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallbackSummary {
    /// Callbacks taken for delivery.
    pub sent: u64,
    /// Answered with a 2xx status.
    pub delivered: u64,
    /// Given up on after every retry failed.
    pub failed: u64,
    /// Injected (`callback_drop_rate`): never sent.
    pub dropped: u64,
    /// Injected (`callback_duplicate_rate`): callbacks POSTed once more
    /// after their delivery ended, as WeCom repeats one. Not in `sent`: the
    /// same callback, which a middleware must not act on twice.
    pub duplicated: u64,
    /// Still being delivered when the run ended (taken and not yet
    /// started, held back, waiting for an answer or between retries):
    /// neither delivered nor failed, so that
    /// `sent` = `delivered` + `failed` + `dropped` + this.
    pub in_flight_at_end: u64,
    /// Log entries (customer messages, events) that no callback had
    /// announced when the run ended: owed while the middleware held every
    /// place its account has for callbacks out. Not in `sent`: `sent`,
    /// the entries coalesced into later callbacks and this add up to the
    /// entries logged (read under one lock, `Service::middleware_summary`).
    pub unannounced_at_end: u64,
    /// Attempts after a failed one.
    pub retried: u64,
    /// Time to a 2xx answer [ms].
    pub latency_ms: LatencyStats,
}

/// One endpoint of WeCom's API as a middleware called it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiEndpoint {
    /// Calls.
    pub count: u64,
    /// Calls answered with a non-zero errcode (or an HTTP error).
    pub errors: u64,
    /// Errors by errcode (`"95018"`, `"40014"`, `"http_404"`, …).
    pub errcodes: BTreeMap<String, u64>,
    /// Time to answer, as served [ms].
    pub latency_ms: LatencyStats,
}

/// One endpoint of a live target: calls, errors, and latency [ms] from each
/// call's intended time (`count` is the number of calls).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpEndpoint {
    /// Calls (or batch actions) that failed.
    pub errors: u64,
    /// errors / calls.
    pub error_rate: Option<f64>,
    /// Errors by kind: `connect`, `timeout`, `http_503`, `errcode_45009`, …
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Calls and their latency.
    #[serde(flatten)]
    pub latency: LatencyStats,
}

/// Delivery times through a live target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Customer message sent → seen by the servicer.
    pub to_agent: LatencyStats,
    /// Servicer reply sent → seen by the customer.
    pub to_customer: LatencyStats,
}

/// How a live run was driven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveInfo {
    /// The target's base URL (`embedded` for the in-process service).
    pub target: String,
    /// Scenario time per wall time.
    pub time_scale: f64,
    /// Wall time of the run [s].
    pub wall_s: f64,
    /// Customer messages the target accepted per second of wall time, over
    /// the measured window (whatever session they belong to): the load the
    /// target carried.
    #[serde(default)]
    pub messages_per_s: Option<f64>,
    /// Replies that reached customers per second of wall time, over the
    /// measured window.
    #[serde(default)]
    pub replies_per_s: Option<f64>,
    /// Sessions an agent held that had not ended when the run stopped
    /// (of those counted in `sessions`): `sessions.answered` is the
    /// sessions that ended (`latency_ms.session.count`) plus these.
    #[serde(default)]
    pub open_at_end: u64,
    /// Actions the driver gave up on: sent without an answer (a timeout,
    /// a dropped connection, a 5xx), sent again — messages and replies with
    /// the same id — until 30 s of wall time after the first send, and
    /// never answered. (An answered refusal is not resent: it is an error
    /// in `http`; actions still being resent when the run stops are not
    /// counted here.) A message given up on counts in `messages.lost`
    /// unless an agent saw it after all. A customer who gives up on a
    /// message still waits for the session to end; one who gives up on the
    /// first message of a session listens for it for a minute (the target
    /// may have taken it) and then counts as `rejected`.
    #[serde(default)]
    pub gave_up: GaveUp,
    /// Arrivals the driver did not send: more than 5 s of wall time behind
    /// their schedule (the target left the driver's 256 requests in flight
    /// unanswered, or the driver lacked CPU), or beyond the 2 000 000
    /// sessions it keeps in flight. Each counts in `sessions.offered` and
    /// `sessions.rejected`, a session nobody answered, as the simulator
    /// counts one it refuses past its sessions in flight.
    #[serde(default)]
    pub shed: u64,
    /// Sessions the scenario's servicers already held on the target when
    /// the run began (left by an earlier run, or by others): their slots
    /// were not free, and the figures are skewed until those end.
    #[serde(default)]
    pub busy_at_start: u64,
    /// Calls to the target still in flight when the run stopped waiting
    /// for answers (the drain over, the target down, or a Ctrl-C's grace
    /// over; the long-polls aside): cut, their answers never read, and
    /// not counted in `http`. A target that accepts calls and never
    /// answers them leaves some; one that kept up, none or a few.
    #[serde(default)]
    pub calls_cut_at_end: u64,
    /// Events of the target's queues the driver never got: the target
    /// pushed them out of a full queue before the driver read them (its
    /// pulls' `missed`). A session whose assignment was missed and whose
    /// end came counts as abandoned, one whose end was missed as
    /// unfinished; a reply missed is unanswered.
    #[serde(default)]
    pub missed: Missed,
    /// What the run's own timing added to every scenario-time latency, in
    /// wall time [ms]: the median wait of the sessions the target assigned
    /// at once (intended send → the customer told of the assignment), which
    /// in the model is 0. `null` when no session was assigned at once.
    #[serde(default)]
    pub overhead_ms: Option<f64>,
    /// That overhead × the time scale, as a share of the service-level
    /// threshold: how much the compression distorts waits measured against
    /// it. Above 0.1 the run warns, naming the largest time scale that would
    /// keep it under.
    #[serde(default)]
    pub distortion: Option<f64>,
    /// The target forgot the run's channels (it restarted, or let a
    /// channel's lease run out) and the driver opened new ones.
    #[serde(default)]
    pub reconnects: Reconnects,
    /// The share of the run's wall time during which the driver itself was
    /// behind: a task asking its runtime to wake every 10 ms woke more than
    /// 10 ms late (counted from every wake-up it asked for, as a stall
    /// covers them). A driver short of CPU is late in every task and
    /// measures late replies and deliveries a target did not cause; a slow
    /// target leaves the driver idle and does not raise it. Above 0.2 the
    /// run warns. Merged shards pool their probes: one shard behind all
    /// the time of four reads 0.25. `null` when the schedule never began.
    #[serde(default)]
    pub saturated: Option<f64>,
    /// How late those wake-ups were [wall ms] (`saturated` is the share
    /// above 10 ms).
    #[serde(default)]
    pub driver_lag_ms: LatencyStats,
}

/// Above this share of a live run behind ([`LiveInfo::saturated`]), the
/// driver is said to have been short of CPU: a driver that keeps up is
/// behind for under 1 % of the run on a loaded machine, and for about a
/// tenth of it at the edge of what one core drives; a starved one for
/// nearly half of it and more.
pub const SATURATED_WARN: f64 = 0.2;

impl LiveInfo {
    /// The share of the run the driver was behind, if more than
    /// [`SATURATED_WARN`]: its figures may measure the driver as much as the
    /// target.
    pub fn driver_saturated(&self) -> Option<f64> {
        self.saturated.filter(|&s| s > SATURATED_WARN)
    }

    /// The largest time scale that keeps the distortion at `share` of the
    /// service-level threshold, if the distortion was measured.
    pub fn max_time_scale(&self, share: f64) -> Option<f64> {
        self.distortion.filter(|&d| d > 0.0).map(|d| self.time_scale * share / d)
    }
}

/// Actions the live driver gave up on, by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GaveUp {
    /// Customer messages.
    pub messages: u64,
    /// Customers leaving the waiting pool.
    pub leaves: u64,
    /// Agents' replies.
    pub replies: u64,
    /// Agents ending sessions (or transferring them to another account).
    pub ends: u64,
    /// The bot's answers and hand-overs (accounts with a bot, played by
    /// the driver through the enterprise API).
    #[serde(default)]
    pub bot: u64,
}

/// Events the live driver's pulls were told were dropped before it read
/// them, by queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Missed {
    /// The customers' channel: sessions' changes, replies.
    pub customers: u64,
    /// The servicers' channel (or their own queues): messages, sessions.
    pub servicers: u64,
}

/// Times the live target forgot the run's channels, and what it forgot
/// with them. The sessions counted here are those of the measured window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reconnects {
    /// Times the driver found a channel of its own unknown to the target
    /// and opened new ones (the accounts' open_kfids read again).
    pub count: u64,
    /// Sessions an agent held then: the target no longer had them. They
    /// are in `sessions.answered`, which is the sessions that ended plus
    /// `live.open_at_end` plus these.
    pub held: u64,
    /// Sessions the target had taken and no agent held yet: counted in
    /// `sessions.unfinished`. (Sessions of which the target had confirmed
    /// nothing are sent again on the new channel.)
    pub waiting: u64,
    /// Messages of those sessions no agent saw (the target had taken them,
    /// or they were still being sent; not those given up on, which are in
    /// `gave_up`): counted in `messages.lost` too.
    pub messages_lost: u64,
    /// Of `messages.sent`, those the target took after the last reconnect
    /// (all of them without one): what a restarted target counts.
    pub sent_since: u64,
}

/// The scenario a summary is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// Its `name`.
    pub name: String,
    /// Arrivals were generated over this span [s].
    pub duration_s: f64,
    /// Sessions arriving earlier are not counted [s].
    pub warmup_s: f64,
    /// Threshold T of `service_level` [s].
    pub service_level_s: f64,
    /// Hash of the resolved scenario without its seed: two runs with the
    /// same fingerprint and seed simulate the same thing.
    pub fingerprint: String,
}

/// How the run itself went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Time when the run stopped, in scenario time [s].
    pub end_s: f64,
    /// Sessions that arrived, warm-up included.
    pub sessions_total: u64,
    /// Most sessions in flight at once.
    pub peak_in_flight: u64,
    /// Arrivals the simulator refused, counted in `sessions.rejected`,
    /// because `sim::MAX_IN_FLIGHT` sessions were in flight (agents far
    /// short of the load, with no `queue_limit` or `patience`); absent
    /// when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shed: u64,
    /// Stopped early (Ctrl-C); the figures cover what ran.
    pub interrupted: bool,
    /// The simulator's clock reached its horizon (`sim::HORIZON_US`, about
    /// 146 000 years) with sessions open: it stopped there, as at the end
    /// of a `drain`; absent when it did not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub horizon: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Session outcomes. `offered` = answered + abandoned + rejected +
/// unfinished, plus, with a bot, the sessions the bot resolved or still held
/// at the end (`to_people` counts the others).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionCounts {
    /// Sessions that arrived after warm-up.
    pub offered: u64,
    /// With a bot tier: of `offered`, the sessions that reached people
    /// (the denominator of the human figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_people: Option<u64>,
    /// Given to an agent.
    pub answered: u64,
    /// Left the waiting pool before an agent took them.
    pub abandoned: u64,
    /// Refused because the waiting pool was full.
    pub rejected: u64,
    /// Still waiting when the run stopped.
    pub unfinished: u64,
}

/// The latency distributions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// Arrival → assignment, answered sessions (0 for those never queued).
    pub queue_wait: LatencyStats,
    /// Arrival → abandonment.
    pub abandon_wait: LatencyStats,
    /// First customer message → first agent reply.
    pub first_response: LatencyStats,
    /// Each customer message → its reply.
    pub reply: LatencyStats,
    /// Arrival → the agent ends the session.
    pub session: LatencyStats,
}

/// One latency distribution [ms]. Percentiles come from an HDR histogram
/// (3 significant digits); `mean` and `max` are exact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

/// Message counts over counted sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageCounts {
    /// Customer messages.
    pub customer: u64,
    /// Agent replies.
    pub replies: u64,
    /// Customer messages by `msgtype`.
    pub by_type: BTreeMap<String, u64>,
    /// Live engine: customer messages the target took — its answer said so,
    /// or an agent answered them — each counted once. This accounting
    /// (`sent` … `reordered`) covers the whole run, warm-up included: a
    /// message lost during warm-up is still lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<u64>,
    /// Live engine: of those, seen by a servicer (in a sharded run, known
    /// to the customer's shard from the reply). What is neither this nor
    /// `lost` no servicer was due to see by the end: the messages of
    /// sessions the bot kept, abandoned or still waiting, those in flight
    /// when the run ended, and those sent as a session ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u64>,
    /// Live engine: of sessions given to a servicer, messages the target
    /// took that no servicer saw by the end of the session (or, for a
    /// session still open at the end of the run, within a call's timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// Live engine: deliveries of a message already seen, and replies
    /// received twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicated: Option<u64>,
    /// Live engine: messages seen after a later message of the same session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reordered: Option<u64>,
    /// Live engine: bot answers (a middleware's messages) the customers got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<u64>,
}

/// One agent over the measured window `[warmup, duration]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSummary {
    /// `GROUP-N`.
    pub id: String,
    /// Its account.
    pub account: String,
    /// Its group.
    pub group: String,
    /// 接待上限: sessions it may hold at once.
    #[serde(default = "one")]
    pub max_concurrent: u32,
    /// Sessions assigned to it (of those counted).
    pub sessions: u64,
    /// Replies it sent (of counted sessions).
    pub messages: u64,
    /// Time it held at least one session [s].
    pub busy_s: f64,
    /// Time it was receiving (接待中) [s].
    pub online_s: f64,
    /// Slot-time used / (max_concurrent × online time).
    pub occupancy: Option<f64>,
}

/// How evenly an account spread its sessions over its agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fairness {
    /// Agents that were online in the measured window.
    pub agents: u64,
    /// Jain's index of sessions per online hour: 1 is perfectly even, 1/n is
    /// one agent taking everything.
    pub jain: Option<f64>,
    /// Gini coefficient of sessions per online hour: 0 is even.
    pub gini: Option<f64>,
    /// Coefficient of variation of sessions per online hour.
    pub cv: Option<f64>,
    /// Most / fewest sessions per online hour (`null` if the fewest is 0).
    pub max_min: Option<f64>,
    /// Jain's index of busy time.
    pub jain_busy: Option<f64>,
    /// How many agents got how many sessions.
    pub histogram: Vec<SessionsBucket>,
}

/// `agents` agents got `sessions` sessions each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsBucket {
    /// Sessions per agent.
    pub sessions: u64,
    /// Number of agents with that many.
    pub agents: u64,
}

/// Returning customers and their previous agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sticky {
    /// Returning customers of all sessions counted.
    pub returning: u64,
    /// Returning customers whose last agent served them within
    /// `prefer_last_within`.
    pub eligible: u64,
    /// Of those, assigned to that same agent.
    pub kept: u64,
    /// kept / eligible.
    pub rate: Option<f64>,
}

/// One entry point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntrySummary {
    /// Its scene.
    pub scene: String,
    /// Its account.
    pub account: String,
    /// Session outcomes.
    pub sessions: SessionCounts,
    /// answered within T / offered.
    pub service_level: Option<f64>,
    /// Queue wait of answered sessions [ms].
    pub queue_wait: LatencyStats,
    /// First response [ms].
    pub first_response: LatencyStats,
}

fn one() -> u32 {
    1
}

/// `a / b`, or `None` when `b` is 0.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// A gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", remote = "Self")]
pub enum Verdict {
    /// The condition holds.
    Pass,
    /// The condition does not hold, or there was nothing to measure.
    Fail,
    /// The engine does not measure this metric (a live-only metric in sim).
    Skipped,
}

crate::scenario::by_name_only!(Verdict);
crate::scenario::serialize_as_derived!(Verdict);

/// The outcome of one gate, as written in `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// The metric as written.
    pub metric: String,
    /// Its canonical path.
    pub path: String,
    /// The condition as written.
    pub condition: String,
    /// The threshold in the metric's unit.
    pub threshold: f64,
    /// The measured value (`null` when nothing was measured).
    pub actual: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
}

/// The bot tier (智能助手) over all accounts that have one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BotSummary {
    /// Counted sessions that went to a bot.
    pub sessions: u64,
    /// Of those, resolved by the bot (ended in state 1).
    pub resolved: u64,
    /// Of those, handed to people (state 1 → 2).
    pub handed_over: u64,
    /// Of those, refused before the bot handed them over: shed at arrival
    /// (the simulator's bound on sessions in flight, the live driver's
    /// `live.shed`) or never taken by the target. Counted in
    /// `sessions.rejected`, not in `to_people`.
    #[serde(default)]
    pub rejected: u64,
    /// resolved / (resolved + handed_over).
    pub deflection: Option<f64>,
    /// Answers the bot sent.
    pub replies: u64,
    /// Arrival → the bot's first answer [ms].
    pub first_response: LatencyStats,
    /// Arrival → resolved or handed over: the time in state 1 [ms].
    pub time_in_bot: LatencyStats,
}

/// One account's people: every handle offered to them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountSummary {
    /// Handles offered (first handles and transfers in) and their outcomes.
    pub handles: SessionCounts,
    /// Of `handles.offered`, transferred in from another group.
    pub transferred_in: u64,
    /// Share of handles not assigned at once.
    pub wait_probability: Option<f64>,
    /// answered within T / offered.
    pub service_level: Option<f64>,
    /// abandoned / offered.
    pub abandon_rate: Option<f64>,
    /// Mean queue wait of answered handles [ms].
    pub asa_ms: Option<f64>,
    /// Queue wait of answered handles, from reaching people [ms].
    pub queue_wait: LatencyStats,
}

/// One agent group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// The accounts it serves, in order of priority.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Agents in the group.
    pub agents: u64,
    /// Handles the group's agents took.
    pub handles: u64,
    /// Of those, passed on by 转接.
    pub transferred: u64,
    /// Of those, ended by the group's agents.
    pub ended: u64,
    /// Slot-time used / slot-time online over the group.
    pub occupancy: Option<f64>,
}

/// One edge of the flow of sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowEdge {
    /// `entry:NAME`, `bot:ACCOUNT`, `account:ACCOUNT` or `group:GROUP`.
    pub from: String,
    /// A node as in `from`, or an outcome: `resolved`, `ended`, `abandoned`,
    /// `rejected`, `unfinished`, or `open` (still with the bot or an agent
    /// when the run stopped).
    pub to: String,
    /// Counted sessions (or handles) along the edge.
    pub sessions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gate's verdict in `summary.json` is its name: serde's derive read
    /// `{"pass": null}` as `"pass"` too, and a hand-made baseline with it
    /// was compared as if it said so.
    #[test]
    fn a_verdict_is_read_from_its_name_alone() {
        assert_eq!(serde_json::from_str::<Verdict>(r#""skipped""#).unwrap(), Verdict::Skipped);
        for table in [r#"{"pass": null}"#, r#"{"pass": {}}"#, r#"{"fail": []}"#] {
            let read = serde_json::from_str::<Verdict>(table);
            assert!(read.is_err(), "{table} read as {read:?}");
        }
    }
}
