//! Scenario files: parse, validate, and hand the rest of kfsim a checked
//! model.
//!
//! Two layers: `schema` mirrors the TOML (raw serde types that check single
//! values as they are read), and [`Scenario`] is the validated model with
//! references resolved to indices and every duration in microseconds.
//! Nothing downstream sees raw TOML. Only [`Scenario::load`] touches the file
//! system; [`Scenario::parse`] works on text, which is what tests use.

mod diag;
mod dist;
mod overrides;
mod schema;
pub mod units;

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use serde::Serialize;
use toml::Spanned;

pub use diag::{Diagnostic, ScenarioError};
pub use dist::{CountDist, TimeDist};
pub use overrides::{Segment, gate_metric, key_segment, segments, split_key_value};
pub use schema::{MSG_TYPES, Mix, PolicyKind, Scene};
pub(crate) use schema::{by_name_only, serialize_as_derived};

use schema::{RawAgents, RawBot, RawEntry, RawGates, RawPoint, RawScenario, RawShift, RawWeCom};

use units::format_duration;

/// Default run length when a file gives no `duration`.
pub const DEFAULT_DURATION_US: u64 = 3_600_000_000;
/// Default service-level threshold T.
pub const DEFAULT_SERVICE_LEVEL_US: u64 = 20_000_000;
/// Default window of 优先分配给上次接待人员 (WeCom's own is 48 h).
pub const DEFAULT_PREFER_WITHIN_US: u64 = 48 * 3_600_000_000;
/// Default interval of the time series in reports.
pub const DEFAULT_SERIES_INTERVAL_US: u64 = 60_000_000;
/// Default number of past customers kept per account for `returning` draws.
pub const DEFAULT_CUSTOMER_MEMORY: u64 = 1_000_000;

/// The largest scenario file read [bytes]: a scenario with a thousand
/// entries and week-long profiles is well under it, and a parser given far
/// more (a file of junk) would use memory many times its size.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// At most this many `[[account]]` tables (WeCom's own limit).
pub const MAX_ACCOUNTS: usize = 5000;
/// At most this many `[[agents]]` groups.
pub const MAX_GROUPS: usize = 1000;
/// At most this many agents over all groups.
pub const MAX_AGENTS: u64 = 1_000_000;
/// At most this many `[[entry]]` tables.
pub const MAX_ENTRIES: usize = 1000;
/// `[wecom.callback]`'s defaults (WeCom's general rule: 5 s and three
/// retries), which `kfsim serve`'s flags fall back on too.
pub const DEFAULT_CALLBACK_TIMEOUT_US: u64 = 5_000_000;
/// See [`DEFAULT_CALLBACK_TIMEOUT_US`].
pub const DEFAULT_CALLBACK_RETRIES: u32 = 3;
/// See [`DEFAULT_CALLBACK_TIMEOUT_US`]: at once.
pub const DEFAULT_CALLBACK_RETRY_DELAY_US: u64 = 0;
/// See [`DEFAULT_CALLBACK_TIMEOUT_US`].
pub const DEFAULT_CALLBACK_MAX_IN_FLIGHT: u32 = 64;
/// The longest wait before a callback's retry: an hour, so that four
/// attempts end within a working day.
pub const MAX_RETRY_DELAY_US: u64 = 3_600_000_000;
/// The slowest time scale of a live run: a million times slower than the
/// scenario's clock. Slower, the wall time of the longest run (3000 years
/// of scenario time) outgrew what a clock holds and the driver panicked.
pub const MIN_TIME_SCALE: f64 = 1e-6;
/// The fastest time scale of a live run.
pub const MAX_TIME_SCALE: f64 = 1e6;
/// At most this many points in one profile, or shifts in one group.
pub const MAX_POINTS: usize = 10_000;

/// A validated scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// Scenario name, used in report folder names.
    pub name: String,
    /// Root seed of every random draw.
    pub seed: u64,
    /// Arrivals are generated over `[0, duration_us)`.
    pub duration_us: u64,
    /// Sessions arriving before this are simulated but not counted.
    pub warmup_us: u64,
    /// Threshold T of the service-level metric.
    pub service_level_us: u64,
    /// After `duration_us`, the run stops once this much more time has passed
    /// even if sessions are still open; `None` drains until nothing is left.
    pub drain_us: Option<u64>,
    /// Past customers remembered per account (for `returning` and
    /// prefer-last-agent). Bounds memory on long runs.
    pub customer_memory: u64,
    /// Interval of the time series in reports [µs].
    pub series_interval_us: u64,
    /// Customer-service accounts (客服账号).
    pub accounts: Vec<Account>,
    /// Groups of reception staff (接待人员).
    pub groups: Vec<AgentGroup>,
    /// Entry points.
    pub entries: Vec<Entry>,
    /// Live engine: scenario time per wall time (`time_scale`, default 1).
    pub time_scale: f64,
    /// Live engine: `[target] url`, or `None` for the embedded service.
    pub target_url: Option<String>,
    /// Live engine: `[target] corpid` and `corpsecret` for `gettoken`.
    pub target_credentials: Option<(String, String)>,
    /// `[wecom]`: kfsim playing WeCom for a middleware (its callback and the
    /// faults it injects). Not simulated, so not in the fingerprint.
    #[serde(skip)]
    pub wecom: WeCom,
    /// Thresholds checked after a run (`[gates]`), as written: the metric
    /// paths are resolved by `gate::bind`, which knows the summary's shape.
    /// Not part of what is simulated, so not part of the fingerprint.
    #[serde(skip)]
    pub gates: Vec<GateSpec>,
}

/// `[wecom]`: the callback a middleware receives and the faults injected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeCom {
    /// Where kfsim's WeCom listens in a run against a middleware (the base
    /// URL the middleware calls instead of `https://qyapi.weixin.qq.com`).
    pub listen: Option<std::net::SocketAddr>,
    /// The corpid `gettoken` accepts (default `kfsim`).
    pub corpid: Option<String>,
    /// The corpsecret `gettoken` accepts (default `kfsim-secret`).
    pub corpsecret: Option<String>,
    /// `[wecom.callback]`.
    pub callback: Option<Callback>,
    /// `[wecom.faults]`.
    pub faults: Faults,
}

/// Where `kf_msg_or_event` callbacks go, and how they are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    /// `http://…` of the middleware's callback handler (`run --middleware`
    /// and `serve --callback-url` may give it instead).
    pub url: Option<String>,
    /// The callback's Token.
    pub token: String,
    /// The callback's EncodingAESKey (43 characters).
    pub encoding_aes_key: String,
    /// How long the middleware has to answer [µs] (default 5 s).
    pub timeout_us: u64,
    /// Attempts after one that failed (default 3).
    pub retries: u32,
    /// The wait before each retry [µs] (default 0: at once).
    pub retry_delay_us: u64,
    /// Callbacks of one account out at once (default 64).
    pub max_in_flight: u32,
}

/// Faults the platform injects (all off by default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Latency added to API calls.
    pub api_latency: Option<TimeDist>,
    /// Share of API calls answered -1.
    pub api_error_rate: f64,
    /// Share of API calls answered 45009.
    pub api_busy_rate: f64,
    /// Tokens stop working this long after they are issued [µs].
    pub token_lifetime_us: Option<u64>,
    /// Extra time before each callback.
    pub callback_delay: Option<TimeDist>,
    /// Share of callbacks never sent.
    pub callback_drop_rate: f64,
    /// Share of callbacks sent twice.
    pub callback_duplicate_rate: f64,
}

/// One gate as written in `[gates]`, with where it was written, so that a
/// layer that knows the metrics can report a bad one at its line and column.
#[derive(Debug, Clone)]
pub struct GateSpec {
    /// The metric path as written.
    pub metric: String,
    /// The condition as written.
    pub condition: String,
    metric_at: Diagnostic,
    condition_at: Diagnostic,
    /// What is wrong with the gate as written, whatever the summary: a
    /// condition that is not a string, a path read as a table. Kept for
    /// `gate::bind` to report with the other gates' mistakes, all at once.
    written: Option<Diagnostic>,
}

impl GateSpec {
    /// An error about the metric, pointing at it.
    pub fn metric_error(&self, message: String) -> Diagnostic {
        self.metric_at.with_message(message)
    }

    /// An error about the condition, pointing at it.
    pub fn condition_error(&self, message: String) -> Diagnostic {
        self.condition_at.with_message(message)
    }

    /// What is wrong with the gate as written, if anything is that the
    /// summary's metrics need not be known for.
    pub fn written_error(&self) -> Option<&Diagnostic> {
        self.written.as_ref()
    }
}

/// A customer-service account and its reception rules.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    /// Unique name.
    pub name: String,
    /// How a session is given to one of the agents with a free slot.
    pub policy: PolicyKind,
    /// Send a returning customer to the agent of their last session.
    pub prefer_last_agent: bool,
    /// How recent that last session must be [µs].
    pub prefer_last_within_us: u64,
    /// Waiting-pool size; `None` is unbounded, `Some(0)` turns waiting off.
    pub queue_limit: Option<u32>,
    /// Sessions are handed to a middleware through WeCom's API (state 0)
    /// instead of being routed at once. Only a live run against a
    /// middleware plays that part; the simulator routes such sessions as
    /// if the middleware put each in the pool at once. (Left out of the
    /// fingerprint when false, so older scenarios keep theirs.)
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub api_managed: bool,
    /// The bot tier (智能助手) that answers new sessions first; `None`
    /// sends them to people at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bot: Option<Bot>,
}

/// An account's bot (智能助手): it answers each new session's messages,
/// resolves a share of the sessions (they end in state 1) and hands the
/// rest to people (state 1 → 2). It has no capacity limit.
#[derive(Debug, Clone, Serialize)]
pub struct Bot {
    /// Time to answer one customer message.
    pub reply_delay: TimeDist,
    /// Share of sessions the bot resolves.
    pub resolve: f64,
    /// Customer messages the bot answers before it resolves the session
    /// or hands it over (≥ 1).
    pub turns: CountDist,
}

/// 转接: a share of an agent group's sessions is passed to an account's pool.
#[derive(Debug, Clone, Serialize)]
pub struct Transfer {
    /// Index into [`Scenario::accounts`] of the account that takes them.
    pub to: usize,
    /// Share of the group's handles that end in a transfer.
    pub share: f64,
    /// The agent's handle before it transfers: the time to answer the
    /// message in hand, after which the session goes to `to`.
    pub after: TimeDist,
}

/// A rule of an entry's `route`: the first rule that matches an arrival
/// chooses its account; none matching leaves it with the entry's account.
#[derive(Debug, Clone, Serialize)]
pub struct RouteRule {
    /// Index into [`Scenario::accounts`].
    pub account: usize,
    /// Matches only returning customers (`Some(true)`), only new ones
    /// (`Some(false)`), or both.
    pub returning: Option<bool>,
    /// Of the arrivals the rule's condition matches, the share it takes.
    pub share: f64,
}

/// Transfers one session may go through; a handle after that many keeps
/// the session (so no cycle of transfers can run forever). Both engines
/// hold to it.
pub const MAX_TRANSFERS: u8 = 16;

/// A group of identical agents.
#[derive(Debug, Clone, Serialize)]
pub struct AgentGroup {
    /// Index into [`Scenario::accounts`]: the account served first.
    pub account: usize,
    /// Further accounts served by the same agents (shared servicers), in
    /// order of priority after `account`: a freed slot takes from the
    /// first account's pool that has someone waiting.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<usize>,
    /// 转接: the share of handles passed to another account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
    /// Unique group name.
    pub group: String,
    /// Number of agents.
    pub count: u32,
    /// 接待上限: sessions one agent holds at once.
    pub max_concurrent: u32,
    /// Work to answer one customer message, at concurrency 1.
    pub reply_delay: TimeDist,
    /// With j sessions, replies progress (1 + slowdown·(j−1)) times slower.
    pub slowdown: f64,
    /// Time the slot stays held after the last reply.
    pub wrap_up: TimeDist,
    /// `[from, to)` shifts [µs]; empty means online for the whole run.
    pub online: Vec<(u64, u64)>,
}

impl AgentGroup {
    /// Every account the group serves, in order of priority.
    pub fn accounts(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.account).chain(self.also.iter().copied())
    }

    /// Whether the group serves account `a`.
    pub fn serves(&self, a: usize) -> bool {
        self.account == a || self.also.contains(&a)
    }

    /// The servicer id of agent `n` (1-based) of this group, as every
    /// engine, report and the reference service name it: `GROUP-NN`,
    /// numbered to the width of the group's size (at least two digits).
    pub fn agent_id(&self, n: u32) -> String {
        let width = self.count.to_string().len().max(2);
        format!("{}-{:0width$}", self.group, n)
    }
}

/// An entry point and the customers who come through it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Unique name (defaults to the scene).
    pub name: String,
    /// The entry point's kind.
    pub scene: Scene,
    /// Index into [`Scenario::accounts`].
    pub account: usize,
    /// Mean Poisson rate before the profile [1/s].
    pub rate_per_s: f64,
    /// Rate multiplier over time; empty means flat 1.
    pub profile: Vec<(u64, f64)>,
    /// Share of arrivals who are customers already seen.
    pub returning: f64,
    /// Customer messages per session (≥ 1).
    pub messages: CountDist,
    /// The customer's gap after each agent reply.
    pub think: TimeDist,
    /// Time a waiting customer stays in the pool; `None` waits forever.
    pub patience: Option<TimeDist>,
    /// Shares of message types, indexed like [`MSG_TYPES`].
    pub mix: [f64; 9],
    /// Skills routing: rules that send some arrivals to another account.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteRule>,
}

impl Scenario {
    /// The customer messages a session of each entry brings, in entry
    /// order, as the work bound of a run counts them: the mean of
    /// `messages`, and the bot's turns and the transfers it may expect.
    pub fn messages_per_session(&self) -> Vec<f64> {
        let transfers = transfers_expected(&self.groups, self.accounts.len());
        self.entries
            .iter()
            .map(|e| e.messages.mean() + Extra::of(e, &self.accounts, &transfers).messages())
            .collect()
    }

    /// Read, override (`--set key=value`) and validate a scenario file.
    pub fn load(path: &Path, sets: &[String]) -> Result<Scenario, ScenarioError> {
        let text = read_file(path)?;
        Scenario::parse_with(&text, &path.display().to_string(), sets)
    }

    /// Validate scenario text; `file` only names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse_with(text, file, &[])
    }

    /// Validate scenario text after applying `key=value` overrides.
    pub fn parse_with(text: &str, file: &str, sets: &[String]) -> Result<Scenario, ScenarioError> {
        Scenario::parse_varied(text, file, sets, &[])
    }

    /// [`Scenario::parse_with`], then `varied`: the `PATH=VALUE` of a
    /// sweep's or plan's point. An error in one of those is one of the
    /// `--vary` values the user gave, and names it so, not as a `--set`.
    pub fn parse_varied(
        text: &str,
        file: &str,
        sets: &[String],
        varied: &[String],
    ) -> Result<Scenario, ScenarioError> {
        // The file is checked as written first, so its own mistakes are
        // reported at their own lines; overrides are applied afterwards.
        let scenario = parse_text(text, file)?;
        let given: Vec<overrides::Given<'_>> = sets
            .iter()
            .map(|s| ("--set", s.as_str()))
            .chain(varied.iter().map(|v| ("--vary", v.as_str())))
            .collect();
        if given.is_empty() {
            return Ok(scenario);
        }
        let rewritten = overrides::apply(text, &given)?;
        let whole = match parse_text(&rewritten, file) {
            Err(ScenarioError::Invalid(whole)) => whole,
            other => return other,
        };
        // The file alone is valid, so an override made it invalid: name it.
        let check = |g: &[overrides::Given<'_>]| parse_text(&overrides::apply(text, g)?, file).map(|_| ());
        if let Some(blamed) = blame(&given, &whole, check) {
            return Err(blamed);
        }
        let (flag, first) = given[0];
        let all = given[1..].iter().fold(first.to_owned(), |all, (f, a)| format!("{all} {f} {a}"));
        Err(overridden(flag, &all, &whole))
    }

    /// The index of the account called `name`.
    pub fn account_index(&self, name: &str) -> Option<usize> {
        self.accounts.iter().position(|a| a.name == name)
    }

    /// A hash of everything simulated except the seed (hex FNV-1a of the
    /// model as JSON), so baselines can tell whether two runs are comparable
    /// number for number.
    pub fn fingerprint(&self) -> String {
        let mut model = serde_json::to_value(self).expect("a scenario is JSON");
        model["seed"] = serde_json::Value::Null;
        format!("{:016x}", fnv1a(model.to_string().bytes()))
    }

    /// Every agent's id, in the order of their global index.
    pub fn agent_ids(&self) -> impl Iterator<Item = String> + '_ {
        self.groups.iter().flat_map(|g| (1..=g.count).map(move |n| g.agent_id(n)))
    }

    /// Total agents over all groups.
    pub fn agent_count(&self) -> usize {
        self.groups.iter().map(|g| g.count as usize).sum()
    }

    /// What a valid scenario most likely did not mean: an account that gets
    /// sessions for people while no agents serve it (each would wait to the
    /// end of the run), or handle times near the clock's grain. Said, not
    /// refused: "what if nobody staffs it" is a question too.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.unserved();
        // Virtual time counts whole microseconds: an arrival and a reply in
        // the same one are a tie, where continuous time (and queueing
        // theory) has none. M/M/1 at ρ = 0.8 waited 0.815 of the time at a
        // 5 µs mean, 0.804 at 20 µs, the truth at 200 µs (found by probing)
        // (an instant reply, "0s", leaves nobody waiting: no bias to warn of)
        let near_grain = |m: f64| m > 0.0 && m < GRAIN_WARNED_US;
        for g in self.groups.iter().filter(|g| near_grain(g.reply_delay.mean_us())) {
            out.push(format!(
                "group `{}`'s reply_delay averages {:.0} µs: the simulator's clock counts whole \
                 microseconds, and with handle times this short, arrivals and replies in the same one \
                 bias the wait probability by up to a few percent (2 % at 5 µs)",
                g.group,
                g.reply_delay.mean_us()
            ));
        }
        out
    }

    /// The accounts that get sessions for people from an entry or a
    /// transfer but have no agents, each said once with its first sender.
    fn unserved(&self) -> Vec<String> {
        // who sends sessions to each account's people, first sender kept
        let mut sender: Vec<Option<String>> = vec![None; self.accounts.len()];
        let mut send = |account: usize, who: String| {
            sender[account].get_or_insert(who);
        };
        for e in &self.entries {
            let mut home = true;
            for r in &e.route {
                if r.share > 0.0 {
                    send(r.account, format!("entry `{}`", e.name));
                }
                if r.returning.is_none() && r.share >= 1.0 {
                    // every arrival is taken by now
                    home = false;
                    break;
                }
            }
            if home {
                send(e.account, format!("entry `{}`", e.name));
            }
        }
        for g in &self.groups {
            if let Some(t) = g.transfer.as_ref().filter(|t| t.share > 0.0) {
                send(t.to, format!("transfers from group `{}`", g.group));
            }
        }
        let served: Vec<bool> =
            (0..self.accounts.len()).map(|a| self.groups.iter().any(|g| g.serves(a))).collect();
        self.accounts
            .iter()
            .enumerate()
            .filter(|(a, acc)| !served[*a] && !acc.bot.as_ref().is_some_and(|b| b.resolve >= 1.0))
            .filter_map(|(a, acc)| {
                let who = sender[a].as_ref()?;
                Some(format!(
                    "account `{}` gets sessions ({who}) but no [[agents]] serve it: none of them will be answered by people",
                    acc.name
                ))
            })
            .collect()
    }
}

/// Mean handle times [µs] below which [`Scenario::warnings`] says the
/// clock's grain shows.
const GRAIN_WARNED_US: f64 = 100.0;

/// Why `name` cannot be `what`'s name: it is empty, or holds a character
/// that is not printed as itself; and, for the name of a `segment` of
/// metric paths (`fairness.NAME.jain`) and `--set` paths
/// (`account.NAME.policy`), a `.`, which separates them (found by probing:
/// a gate on account `a.b` validated, then found no data and failed the run).
fn bad_name(what: &str, name: &str, segment: bool) -> Option<String> {
    if name.is_empty() {
        return Some(format!("{what} name must not be empty"));
    }
    if let Some(c) = name.chars().find(|&c| unprintable(c)) {
        return Some(format!(
            "{what} name must not contain the control or direction character U+{:04X}: names are printed to \
             terminals and pages as they are",
            u32::from(c)
        ));
    }
    (segment && name.contains('.')).then(|| {
        format!(
            "{what} name must not contain `.` (\"{name}\"): it is a segment of metric and --set paths, which `.` separates; use `-` or `_`"
        )
    })
}

/// A character a name must not carry: a control character (an escape
/// sequence in a name cleared the terminal that printed it) or one that
/// reorders the text around it (U+202E shows a name backwards).
fn unprintable(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Which of the overrides `given` made a scenario invalid whose file alone
/// is valid (`whole` is the error with all of them), as the error to
/// report: the one without which `check` passes (an override may need a
/// later one: `duration=30m` alone breaks a file's warm-up of an hour),
/// else the first whose prefix fails `check`. Its line and column would be
/// those of the rewritten document, which is not the file the user has.
pub(crate) fn blame(
    given: &[(&'static str, &str)],
    whole: &Diagnostic,
    check: impl Fn(&[(&'static str, &str)]) -> Result<(), ScenarioError>,
) -> Option<ScenarioError> {
    for k in 0..given.len() {
        if check(&[&given[..k], &given[k + 1..]].concat()).is_ok() {
            let (flag, arg) = given[k];
            return Some(overridden(flag, arg, whole));
        }
    }
    (1..=given.len()).find_map(|k| match check(&given[..k]) {
        Err(e) => {
            let (flag, arg) = given[k - 1];
            e.first().map(|d| overridden(flag, arg, d))
        }
        Ok(()) => None,
    })
}

/// The error of a scenario an override made invalid, with the TOML line
/// it concerns as overridden.
pub(crate) fn overridden(flag: &'static str, arg: &str, d: &Diagnostic) -> ScenarioError {
    let line = d.source_line().trim();
    // a table header of the rewritten document (`[entry.patience]`) names
    // no entry, where the override itself does
    let message = if line.is_empty() || line.starts_with('[') {
        d.message.clone()
    } else {
        format!("{} (at `{line}`, with the override)", d.message)
    };
    ScenarioError::Override { flag, arg: arg.to_owned(), message }
}

/// Read a scenario file of at most [`MAX_FILE_BYTES`].
pub fn read_file(path: &Path) -> Result<String, ScenarioError> {
    use std::io::Read;
    let io = |error| ScenarioError::Io { path: path.display().to_string(), error };
    let mut bytes = Vec::new();
    // a pipe or a device has no size to check first: read one byte more
    // than allowed and see
    std::fs::File::open(path).and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)).map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        let message = format!("larger than {} MiB: not a scenario", MAX_FILE_BYTES >> 20);
        return Err(io(std::io::Error::other(message)));
    }
    String::from_utf8(bytes).map_err(|e| not_utf8(&path.display().to_string(), e))
}

/// Where a file stops being UTF-8, shown like any other error.
fn not_utf8(file: &str, e: std::string::FromUtf8Error) -> ScenarioError {
    let at = e.utf8_error().valid_up_to();
    let bad = e.as_bytes()[at];
    // what comes before is text; the rest is shown with U+FFFD for what is not
    let text = String::from_utf8_lossy(e.as_bytes());
    let message = format!("byte 0x{bad:02X} is not UTF-8: a scenario is UTF-8 text (save the file as UTF-8)");
    ScenarioError::Invalid(Box::new(Diagnostic::new(
        file,
        &text,
        Some(at..at + '\u{fffd}'.len_utf8()),
        message,
    )))
}

/// The span of the key (before `=`, or a table header) with the most
/// dotted parts in `text`, and that number of parts.
fn deepest_dotted_key(text: &str) -> Option<(Range<usize>, usize)> {
    let mut best: Option<(Range<usize>, usize)> = None;
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let key_end = line.find('=').unwrap_or(line.len());
        let key = if line.trim_start().starts_with('#') { "" } else { &line[..key_end] };
        let parts = key.matches('.').count() + 1;
        if parts > best.as_ref().map_or(1, |b| b.1) {
            let lead = key.len() - key.trim_start().len();
            best = Some((start + lead..start + key.trim_end().len(), parts));
        }
        start += line.len();
    }
    best
}

fn parse_text(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
    let mut raw: RawScenario = toml::from_str(text).map_err(|e| {
        // serde points a missing top-level key at the whole document: that
        // is an error about the file, with no line to show.
        let span = e.span().filter(|s| !(s.start == 0 && e.message().starts_with("missing field")));
        // the reader's depth limit on dotted keys comes with no place: the
        // key of most parts is the one (found by probing: "1:1: recursion limit")
        if span.is_none()
            && e.message().contains("recursion limit")
            && let Some((at, parts)) = deepest_dotted_key(text)
        {
            let message = format!("a key of {parts} dotted parts: nested deeper than the TOML reader allows");
            return ScenarioError::Invalid(Box::new(Diagnostic::new(file, text, Some(at), message)));
        }
        let line = span.as_ref().map_or("", |s| diag::line_at(text, s.start));
        let mut message = diag::improve_message(e.message(), line);
        // toml names neither the key nor that it may be a table's header
        if message == "duplicate key"
            && let Some(key) = span.as_ref().and_then(|s| text.get(s.clone()))
        {
            message = format!("duplicate key `{key}`: a key, or a [table], is given once in its table");
        }
        ScenarioError::Invalid(Box::new(Diagnostic::new(file, text, span, message)))
    })?;
    let err = |span: Option<Range<usize>>, message: String| {
        ScenarioError::Invalid(Box::new(Diagnostic::new(file, text, span, message)))
    };
    let raw_gates = raw.gates.take().unwrap_or_default();
    let mut scenario = build(raw, &err)?;
    scenario.gates = gate_specs(raw_gates, file, text);
    Ok(scenario)
}

/// Each gate as written, with a condition that is not a string (or a path
/// read as a table) kept as its mistake, not refused here: `gate::bind`
/// reports it with the mistakes of the other gates, which only it can find.
fn gate_specs(raw: RawGates, file: &str, text: &str) -> Vec<GateSpec> {
    let at = |span: Range<usize>| Diagnostic::new(file, text, Some(span), String::new());
    raw.0
        .into_iter()
        .map(|(key, value)| {
            let (metric_at, condition_at) = (at(key.span()), at(value.span()));
            let (condition, written) = match gate_condition(&key, value) {
                Ok(condition) => (condition, None),
                Err((span, message)) => (String::new(), Some(at(span).with_message(message))),
            };
            GateSpec { metric: key.into_inner(), condition, metric_at, condition_at, written }
        })
        .collect()
}

/// A gate's condition, which must be a string; else where and why not.
fn gate_condition(
    key: &Spanned<String>,
    value: Spanned<toml::Value>,
) -> Result<String, (Range<usize>, String)> {
    let span = value.span();
    match value.into_inner() {
        toml::Value::String(s) => Ok(s),
        // `by_entry.web.service_level = ...` unquoted is a table in
        // TOML: "invalid type: map, expected a string" said nothing
        toml::Value::Table(t) => {
            // the path as written, down to its first condition (the
            // advice used to name `KEY.NAME.service_level` for any
            // key: found by probing)
            let (mut path, mut at, mut condition) = (key.get_ref().clone(), &t, None);
            while let Some((k, v)) = at.iter().next() {
                path = format!("{path}.{k}");
                match v {
                    toml::Value::Table(inner) => at = inner,
                    leaf => {
                        condition = Some(leaf.to_string());
                        break;
                    }
                }
            }
            Err((
                key.span(),
                format!(
                    "`{k}` is read as a table: a metric path with dots is one quoted key, like \
                     \"{path}\" = {c}",
                    k = key.get_ref(),
                    c = condition.unwrap_or_else(|| "\">= 0.8\"".into())
                ),
            ))
        }
        other => Err((
            span,
            format!(
                "the condition of `{}` must be a string, like \"< 60s\" or \">= 0.8\", not {} {}",
                key.get_ref(),
                if other.type_str().starts_with(['a', 'i']) { "an" } else { "a" },
                other.type_str()
            ),
        )),
    }
}

type ErrFn<'a> = dyn Fn(Option<Range<usize>>, String) -> ScenarioError + 'a;

/// `[wecom]`, checked value by value (the key's base64 is checked again,
/// whole, when the service starts).
fn wecom(raw: Option<RawWeCom>, err: &ErrFn<'_>) -> Result<WeCom, ScenarioError> {
    let Some(raw) = raw else { return Ok(WeCom::default()) };
    let callback = match raw.callback {
        None => None,
        Some(c) => {
            if let Some(url) = &c.url
                && let Err(m) = units::check_callback_url(url.get_ref())
            {
                return Err(err(Some(url.span()), format!("`url`: {m}")));
            }
            let t = c.token.get_ref();
            if t.is_empty() || t.len() > 32 || !t.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(err(Some(c.token.span()), "`token` must be 1 to 32 letters or digits".into()));
            }
            let k = c.encoding_aes_key.get_ref();
            let problem = match units::non_base64_char(k) {
                Some((ch, at)) => Some(format!(
                    "`encoding_aes_key` has {ch:?} at character {at}: it must be 43 characters of base64 \
                     (letters, digits, + and /)"
                )),
                None if k.len() != 43 => Some(format!(
                    "`encoding_aes_key` must be 43 characters of base64 (letters, digits, + and /); got {}",
                    k.len()
                )),
                None => None,
            };
            if let Some(m) = problem {
                return Err(err(Some(c.encoding_aes_key.span()), m));
            }
            let timeout_us = match &c.timeout {
                Some(t) if t.get_ref().0 == 0 => {
                    return Err(err(Some(t.span()), "`timeout` must be longer than 0s".into()));
                }
                Some(t) => t.get_ref().0,
                None => DEFAULT_CALLBACK_TIMEOUT_US,
            };
            let retries = match &c.retries {
                Some(r) if *r.get_ref() > 10 => {
                    return Err(err(Some(r.span()), "`retries` must be at most 10".into()));
                }
                Some(r) => *r.get_ref(),
                None => DEFAULT_CALLBACK_RETRIES,
            };
            let retry_delay_us = match &c.retry_delay {
                Some(d) if d.get_ref().0 > MAX_RETRY_DELAY_US => {
                    return Err(err(Some(d.span()), "`retry_delay` must be at most 1h".into()));
                }
                Some(d) => d.get_ref().0,
                None => DEFAULT_CALLBACK_RETRY_DELAY_US,
            };
            let max_in_flight = match &c.max_in_flight {
                Some(m) if !(1..=10_000).contains(m.get_ref()) => {
                    return Err(err(Some(m.span()), "`max_in_flight` must be between 1 and 10000".into()));
                }
                Some(m) => *m.get_ref(),
                None => DEFAULT_CALLBACK_MAX_IN_FLIGHT,
            };
            Some(Callback {
                url: c.url.map(Spanned::into_inner),
                token: c.token.into_inner(),
                encoding_aes_key: c.encoding_aes_key.into_inner(),
                timeout_us,
                retries,
                retry_delay_us,
                max_in_flight,
            })
        }
    };
    let f = raw.faults.unwrap_or_default();
    let share = |p: Option<schema::Probability>| p.map_or(0.0, |p| p.0);
    let spanned = |p: &Option<Spanned<schema::Probability>>| p.as_ref().map_or(0.0, |p| p.get_ref().0);
    let faults = Faults {
        api_latency: f.api_latency,
        api_error_rate: spanned(&f.api_error_rate),
        api_busy_rate: spanned(&f.api_busy_rate),
        token_lifetime_us: match &f.token_lifetime {
            Some(t) if t.get_ref().0 == 0 => {
                return Err(err(Some(t.span()), "`token_lifetime` must be longer than 0s".into()));
            }
            t => t.as_ref().map(|t| t.get_ref().0),
        },
        callback_delay: f.callback_delay,
        callback_drop_rate: share(f.callback_drop_rate),
        callback_duplicate_rate: share(f.callback_duplicate_rate),
    };
    if faults.api_error_rate + faults.api_busy_rate > 1.0 {
        // both are given (each alone is at most 1): the one written last
        // is where the sum passes 1 (pointed at 1:1 before, found by probing)
        let at = [&f.api_error_rate, &f.api_busy_rate]
            .into_iter()
            .flatten()
            .map(Spanned::span)
            .max_by_key(|s| s.start);
        return Err(err(
            at,
            format!(
                "[wecom.faults] `api_error_rate` = {} and `api_busy_rate` = {} add up to more than 1: \
                 a call fails with one or the other, so together they are a share of the calls",
                faults.api_error_rate, faults.api_busy_rate
            ),
        ));
    }
    let listen = match raw.listen {
        None => None,
        Some(l) => Some(l.get_ref().parse::<std::net::SocketAddr>().map_err(|_| {
            err(
                Some(l.span()),
                format!("`listen` must be an address like 127.0.0.1:8080; got {:?}", l.get_ref()),
            )
        })?),
    };
    let credential = |v: Option<Spanned<String>>, key: &str| match v {
        Some(v) if v.get_ref().is_empty() || v.get_ref().len() > 64 => {
            Err(err(Some(v.span()), format!("`{key}` must be 1 to 64 characters")))
        }
        v => Ok(v.map(Spanned::into_inner)),
    };
    let corpid = credential(raw.corpid, "corpid")?;
    let corpsecret = credential(raw.corpsecret, "corpsecret")?;
    Ok(WeCom { listen, corpid, corpsecret, callback, faults })
}

fn build(mut raw: RawScenario, err: &ErrFn<'_>) -> Result<Scenario, ScenarioError> {
    let duration_us = raw.duration.as_ref().map_or(DEFAULT_DURATION_US, |d| d.get_ref().0);
    if duration_us == 0 {
        let span = raw.duration.as_ref().map(Spanned::span);
        return Err(err(span, "`duration` must be longer than 0s".into()));
    }
    let warmup_us = raw.warmup.as_ref().map_or(0, |w| w.get_ref().0);
    if let Some(w) = &raw.warmup
        && warmup_us >= duration_us
    {
        return Err(err(Some(w.span()), "`warmup` must be shorter than `duration`".into()));
    }
    if raw.account.is_empty() {
        return Err(err(None, "expected at least one [[account]] table with a `name`".into()));
    }
    if raw.agents.is_empty() {
        return Err(err(None, "expected at least one [[agents]] table (reception staff)".into()));
    }
    if raw.entry.is_empty() {
        return Err(err(None, "expected at least one [[entry]] table (an entry point)".into()));
    }
    if let Some(a) = raw.account.get(MAX_ACCOUNTS) {
        return Err(err(Some(a.name.span()), format!("at most {MAX_ACCOUNTS} [[account]] tables")));
    }
    if let Some(g) = raw.agents.get(MAX_GROUPS) {
        return Err(err(Some(g.span()), format!("at most {MAX_GROUPS} [[agents]] groups")));
    }
    if let Some(e) = raw.entry.get(MAX_ENTRIES) {
        return Err(err(Some(e.span()), format!("at most {MAX_ENTRIES} [[entry]] tables")));
    }
    let mut agents = 0u64;
    for g in &raw.agents {
        agents += u64::from(*g.get_ref().count.get_ref());
        if agents > MAX_AGENTS {
            let message = format!("at most {MAX_AGENTS} agents over all [[agents]] groups");
            return Err(err(Some(g.get_ref().count.span()), message));
        }
    }
    let customer_memory = match &raw.customer_memory {
        None => DEFAULT_CUSTOMER_MEMORY,
        Some(m) if *m.get_ref() == 0 || *m.get_ref() > 100_000_000 => {
            return Err(err(Some(m.span()), "`customer_memory` must be between 1 and 100000000".into()));
        }
        Some(m) => *m.get_ref(),
    };

    let time_scale = match &raw.time_scale {
        None => 1.0,
        Some(t) if !(MIN_TIME_SCALE..=MAX_TIME_SCALE).contains(t.get_ref()) => {
            return Err(err(Some(t.span()), "`time_scale` must be a number from 0.000001 to 1000000".into()));
        }
        Some(t) => *t.get_ref(),
    };
    let (target_url, target_credentials) = match &raw.target {
        None => (None, None),
        Some(t) => {
            if let Some(u) = &t.url
                && let Err(m) = units::check_target_url(u.get_ref())
            {
                return Err(err(Some(u.span()), format!("`url`: {m}")));
            }
            let creds = t.corpid.clone().zip(t.corpsecret.clone());
            (t.url.as_ref().map(|u| u.get_ref().clone()), creds)
        }
    };
    // it names the report folder and heads every report, in no path
    if let Some(m) = bad_name("the scenario's", raw.name.get_ref(), false) {
        return Err(err(Some(raw.name.span()), m));
    }
    let wecom = wecom(raw.wecom.take(), err)?;
    let series_interval_us = match &raw.series_interval {
        None => DEFAULT_SERIES_INTERVAL_US,
        Some(d) if d.get_ref().0 == 0 => {
            return Err(err(Some(d.span()), "`series_interval` must be longer than 0s".into()));
        }
        Some(d) => d.get_ref().0,
    };
    let mut accounts = Vec::new();
    let mut account_ix = HashMap::new();
    for a in raw.account {
        let bot = a.bot.map(|b| build_bot(b, err)).transpose()?;
        let name = a.name.get_ref().clone();
        if let Some(m) = bad_name("an account", &name, true) {
            return Err(err(Some(a.name.span()), m));
        }
        if account_ix.insert(name.clone(), accounts.len()).is_some() {
            return Err(err(Some(a.name.span()), format!("account \"{name}\" is defined twice")));
        }
        accounts.push(Account {
            name,
            policy: a.policy.unwrap_or(PolicyKind::RoundRobin),
            prefer_last_agent: a.prefer_last_agent.unwrap_or(false),
            prefer_last_within_us: a.prefer_last_within.map_or(DEFAULT_PREFER_WITHIN_US, |d| d.0),
            queue_limit: a.queue_limit,
            api_managed: a.api_managed.unwrap_or(false),
            bot,
        });
    }
    let resolve =
        |name: &Option<Spanned<String>>, table: &str, at: Range<usize>| -> Result<usize, ScenarioError> {
            match name {
                Some(n) => account_ix.get(n.get_ref()).copied().ok_or_else(|| {
                    let known: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
                    err(
                        Some(n.span()),
                        format!(
                            "unknown account \"{}\"; {}",
                            n.get_ref(),
                            diag::suggest(n.get_ref(), &known, "defined accounts")
                        ),
                    )
                }),
                None if accounts.len() == 1 => Ok(0),
                None => Err(err(
                    Some(at),
                    format!("an [[{table}]] table needs `account = \"…\"` when there are several accounts"),
                )),
            }
        };

    let mut groups = Vec::new();
    let mut group_names = HashMap::new();
    for g in raw.agents {
        groups.push(build_group(g, &resolve, &accounts, &mut group_names, err)?);
    }
    let mut entries = Vec::new();
    let mut entry_names = HashMap::new();
    let mut work = Work::default();
    let transfers = transfers_expected(&groups, accounts.len());
    for e in raw.entry {
        let rate_at = e.get_ref().rate.span();
        let messages_at = e.get_ref().messages.as_ref().map(Spanned::span);
        let entry = build_entry(e, &resolve, &mut entry_names, err)?;
        let extra = Extra::of(&entry, &accounts, &transfers);
        work.add(&entry, duration_us, extra, rate_at, messages_at, err)?;
        entries.push(entry);
    }
    Ok(Scenario {
        name: raw.name.into_inner(),
        seed: raw.seed.map_or(1, |s| s.0),
        duration_us,
        warmup_us,
        service_level_us: raw.service_level.map_or(DEFAULT_SERVICE_LEVEL_US, |d| d.0),
        drain_us: raw.drain.map(|d| d.0),
        customer_memory,
        series_interval_us,
        accounts,
        groups,
        entries,
        time_scale,
        target_url,
        target_credentials,
        wecom,
        gates: Vec::new(),
    })
}

type ResolveFn<'a> =
    dyn Fn(&Option<Spanned<String>>, &str, Range<usize>) -> Result<usize, ScenarioError> + 'a;

fn build_group(
    g: Spanned<RawAgents>,
    resolve: &ResolveFn<'_>,
    accounts: &[Account],
    names: &mut HashMap<String, ()>,
    err: &ErrFn<'_>,
) -> Result<AgentGroup, ScenarioError> {
    let header = g.span();
    let g = g.into_inner();
    let (account, also) = match (&g.account, &g.accounts) {
        (Some(_), Some(list)) => {
            return Err(err(
                Some(list.span()),
                "give either `account` or `accounts` (shared servicers), not both".into(),
            ));
        }
        (_, Some(list)) => {
            let mut served: Vec<usize> = Vec::new();
            for name in list.get_ref() {
                let a = resolve(&Some(name.clone()), "agents", header.clone())?;
                if served.contains(&a) {
                    return Err(err(
                        Some(name.span()),
                        format!("account \"{}\" is listed twice", name.get_ref()),
                    ));
                }
                served.push(a);
            }
            let Some((&first, rest)) = served.split_first() else {
                return Err(err(Some(list.span()), "`accounts` needs at least one account".into()));
            };
            (first, rest.to_vec())
        }
        (account, None) => (resolve(account, "agents", header.clone())?, Vec::new()),
    };
    let transfer = match g.transfer {
        None => None,
        Some(t) => {
            let span = t.span();
            let t = t.into_inner();
            let to = resolve(&Some(t.to.clone()), "agents", span.clone())?;
            if t.share.0 >= 1.0 && (to == account || also.contains(&to)) {
                return Err(err(
                    Some(span),
                    "a group cannot transfer every session to an account it serves itself (share 1 would pass sessions round forever)".into(),
                ));
            }
            Some(Transfer { to, share: t.share.0, after: t.after.unwrap_or(g.reply_delay) })
        }
    };
    let (group, span) = match &g.group {
        Some(n) => (n.get_ref().clone(), n.span()),
        None => (accounts[account].name.clone(), header),
    };
    if let Some(m) = bad_name("a group", &group, true) {
        return Err(err(Some(span), m));
    }
    if names.insert(group.clone(), ()).is_some() {
        return Err(err(
            Some(span),
            format!("agent group \"{group}\" is defined twice; give each [[agents]] table its own `group`"),
        ));
    }
    let count = *g.count.get_ref();
    if count == 0 || count > 1_000_000 {
        return Err(err(Some(g.count.span()), "`count` must be between 1 and 1000000".into()));
    }
    let max_concurrent = g.max_concurrent.as_ref().map_or(1, |m| *m.get_ref());
    if let Some(m) = &g.max_concurrent
        && (max_concurrent == 0 || max_concurrent > 10_000)
    {
        return Err(err(Some(m.span()), "`max_concurrent` must be between 1 and 10000".into()));
    }
    Ok(AgentGroup {
        account,
        also,
        transfer,
        group,
        count,
        max_concurrent,
        reply_delay: g.reply_delay,
        slowdown: g.slowdown.map_or(0.0, |s| s.0),
        wrap_up: g.wrap_up.unwrap_or(TimeDist::Constant { us: 0 }),
        online: match g.online {
            None => Vec::new(),
            Some(list) if list.get_ref().is_empty() => {
                // read as written, the group is never online; the run would
                // have had it online all day
                return Err(err(
                    Some(list.span()),
                    "`online = []` lists no shift: leave `online` out for agents online the whole run".into(),
                ));
            }
            Some(list) => shifts(list.into_inner(), err)?,
        },
    })
}

fn build_entry(
    e: Spanned<RawEntry>,
    resolve: &ResolveFn<'_>,
    names: &mut HashMap<String, ()>,
    err: &ErrFn<'_>,
) -> Result<Entry, ScenarioError> {
    let header = e.span();
    let e = e.into_inner();
    let account = resolve(&e.account, "entry", header.clone())?;
    let mut route = Vec::new();
    if let Some(rules) = e.route {
        if let Some(r) = rules.get_ref().get(MAX_POINTS) {
            return Err(err(Some(r.span()), format!("at most {MAX_POINTS} route rules")));
        }
        for r in rules.into_inner() {
            let r = r.into_inner();
            route.push(RouteRule {
                account: resolve(&Some(r.account), "entry", header.clone())?,
                returning: r.returning,
                share: r.share.map_or(1.0, |p| p.0),
            });
        }
    }
    let scene = *e.scene.get_ref();
    let (name, span) = match &e.name {
        Some(n) => (n.get_ref().clone(), n.span()),
        None => (scene.as_str().to_owned(), e.scene.span()),
    };
    if let Some(m) = bad_name("an entry", &name, true) {
        return Err(err(Some(span), m));
    }
    if names.insert(name.clone(), ()).is_some() {
        return Err(err(
            Some(span),
            format!("entry \"{name}\" is defined twice; give each [[entry]] its own `name`"),
        ));
    }
    Ok(Entry {
        name,
        scene,
        account,
        rate_per_s: e.rate.get_ref().0.per_s,
        profile: e.profile.map_or(Ok(Vec::new()), |p| profile(p, e.rate.get_ref().0.per_s, err))?,
        returning: e.returning.map_or(0.0, |p| p.0),
        messages: e.messages.map_or(CountDist::Constant { value: 1 }, Spanned::into_inner),
        think: e.think.unwrap_or(TimeDist::Constant { us: 0 }),
        patience: e.patience,
        mix: e.mix.unwrap_or_default().0,
        route,
    })
}

fn build_bot(b: Spanned<RawBot>, err: &ErrFn<'_>) -> Result<Bot, ScenarioError> {
    let b = b.into_inner();
    if let Some(t) = b.turns.as_ref().filter(|t| t.get_ref().mean() > 1000.0) {
        return Err(err(Some(t.span()), "the bot's `turns` must average at most 1000".into()));
    }
    let turns = b.turns.map_or(CountDist::Constant { value: 1 }, Spanned::into_inner);
    Ok(Bot { reply_delay: b.reply_delay, resolve: b.resolve.map_or(0.0, |p| p.0), turns })
}

/// Shifts must start before they end and come in order without overlap;
/// errors point at the shift at fault.
fn shifts(raw: Vec<Spanned<RawShift>>, err: &ErrFn<'_>) -> Result<Vec<(u64, u64)>, ScenarioError> {
    if let Some(s) = raw.get(MAX_POINTS) {
        return Err(err(Some(s.span()), format!("at most {MAX_POINTS} shifts per group")));
    }
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(raw.len());
    for shift in raw {
        let (from, to) = (shift.get_ref().from.0, shift.get_ref().to.0);
        if from >= to {
            let message = format!(
                "a shift must end after it starts (from = \"{}\", to = \"{}\")",
                format_duration(from),
                format_duration(to)
            );
            return Err(err(Some(shift.span()), message));
        }
        if let Some(&(_, prev_to)) = out.last()
            && from < prev_to
        {
            let message = format!(
                "shifts must be in order and must not overlap: this one starts at {}, before the previous one ends at {}",
                format_duration(from),
                format_duration(prev_to)
            );
            return Err(err(Some(shift.span()), message));
        }
        out.push((from, to));
    }
    Ok(out)
}

/// At most this many arrivals drawn in one run over all entries, each
/// entry's at the peak of its profile (arrivals under a profile are drawn
/// at the peak rate and thinned): about half an hour of simulation on one
/// core, far past any day, month or year of a reception system.
pub const MAX_ARRIVALS: f64 = 1e9;
/// At most this many customer messages expected in one run over all
/// entries (arrivals at the profile's mean times the mean of `messages`):
/// the simulator handles some five million a second, so about half an
/// hour too.
pub const MAX_MESSAGES: f64 = 1e10;

/// What a session of an entry costs past the messages it arrives with,
/// in messages: the work bound's share of the bot and of transfers.
#[derive(Debug, Clone, Copy, Default)]
struct Extra {
    /// The bot answers its turns before people see the session, each a
    /// message and an answer (found by probing: 1 000 turns a session
    /// passed the bound and ran for days): the largest mean `turns` of
    /// the accounts the entry may reach.
    bot_turns: f64,
    /// Transfers a session may expect (see [`transfers_expected`]). A
    /// transfer ends its handle at the reply in hand and draws the
    /// session's messages again for the next: each is one more reply
    /// (and routing) on top of one handle's messages, so at `messages =
    /// 1` sixteen transfers are 17 times the work counted without them
    /// (found by probing).
    transfers: f64,
}

impl Extra {
    fn of(e: &Entry, accounts: &[Account], transfers: &[f64]) -> Extra {
        let reach = || std::iter::once(e.account).chain(e.route.iter().map(|r| r.account));
        Extra {
            bot_turns: reach()
                .filter_map(|a| accounts[a].bot.as_ref())
                .map(|b| b.turns.mean())
                .fold(0.0, f64::max),
            transfers: reach().map(|a| transfers[a]).fold(0.0, f64::max),
        }
    }

    fn messages(self) -> f64 {
        self.bot_turns + self.transfers
    }
}

/// For each account, a bound from above on the transfers a session that
/// comes to it may expect, up to [`MAX_TRANSFERS`]: handle by handle, the largest
/// share of the groups serving the account times one more than the most
/// the accounts they pass to may expect. Whichever group takes a session,
/// its share and its `to` are no more than those largest, so this bounds
/// the expectation from above; ping-pong at share 1 gives 16.
fn transfers_expected(groups: &[AgentGroup], accounts: usize) -> Vec<f64> {
    let mut expected = vec![0.0; accounts];
    for _ in 0..MAX_TRANSFERS {
        let mut next = vec![0.0f64; accounts];
        for g in groups {
            let Some(t) = &g.transfer else { continue };
            let onward = t.share * (1.0 + expected[t.to]);
            for a in std::iter::once(g.account).chain(g.also.iter().copied()) {
                next[a] = next[a].max(onward);
            }
        }
        expected = next;
    }
    expected
}

/// What a run's entries add up to, checked against [`MAX_ARRIVALS`] and
/// [`MAX_MESSAGES`] entry by entry: each bound alone lets through a run
/// that would not end in a lifetime (a rate of 1/min for the longest
/// duration, 3000 years, or a million messages a session for a day).
#[derive(Default)]
struct Work {
    arrivals: f64,
    messages: f64,
}

impl Work {
    fn add(
        &mut self,
        e: &Entry,
        duration_us: u64,
        extra: Extra,
        rate_at: Range<usize>,
        messages_at: Option<Range<usize>>,
        err: &ErrFn<'_>,
    ) -> Result<(), ScenarioError> {
        let seconds = duration_us as f64 / 1e6;
        let peak = if e.profile.is_empty() { 1.0 } else { e.profile.iter().map(|p| p.1).fold(0.0, f64::max) };
        self.arrivals += e.rate_per_s * peak * seconds;
        let expected = e.rate_per_s * mean_factor(&e.profile, duration_us) * seconds;
        self.messages += expected * (e.messages.mean() + extra.messages());
        let over = format_duration(duration_us);
        if self.arrivals > MAX_ARRIVALS {
            let message = format!(
                "the run's entries draw {:.3e} arrivals over its duration ({over}){}, \
                 above the most kfsim simulates in one run, {MAX_ARRIVALS:.0e} (about half an hour): \
                 shorten `duration` or lower `rate`",
                self.arrivals,
                if e.profile.is_empty() { "" } else { " at the profiles' peaks" },
            );
            return Err(err(Some(rate_at), message));
        }
        if self.messages > MAX_MESSAGES {
            let (bot, transfers) = (extra.bot_turns > 0.0, extra.transfers > 0.0);
            let with = match (bot, transfers) {
                (true, true) => ", with the bot's turns and the transfers' replies",
                (true, false) => ", with the bot's turns",
                (false, true) => ", with the transfers' replies",
                (false, false) => "",
            };
            let message = format!(
                "the run's entries bring {:.3e} customer messages over its duration ({over}){with}, \
                 above the most kfsim simulates in one run, {MAX_MESSAGES:.0e} (about half an hour): \
                 shorten `duration`, lower `rate` or `messages`{}{}",
                self.messages,
                if bot { ", or the bot's `turns`" } else { "" },
                if transfers { ", or the share of the groups' `transfer`" } else { "" },
            );
            return Err(err(Some(messages_at.unwrap_or(rate_at)), message));
        }
        Ok(())
    }
}

/// FNV-1a over `bytes`: a hash that stays the same across builds and
/// versions, for names of files other processes read.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The mean of a piecewise-linear profile over `[0, end_us)` (1 without
/// one): the first factor holds before the first point, the last after
/// the last.
fn mean_factor(profile: &[(u64, f64)], end_us: u64) -> f64 {
    match profile.first() {
        None => 1.0,
        Some(&(_, f_first)) if end_us == 0 => f_first,
        Some(_) => profile_area(profile, end_us) / end_us as f64,
    }
}

/// The integral of a piecewise-linear profile over `[0, end_us)` [µs], the
/// first factor holding before the first point and the last after the last
/// (`end_us` without a profile): exact, steps included.
pub fn profile_area(profile: &[(u64, f64)], end_us: u64) -> f64 {
    let (Some(&(t_first, f_first)), Some(&(t_last, f_last))) = (profile.first(), profile.last()) else {
        return end_us as f64;
    };
    let end = end_us as f64;
    let mut area = f_first * (t_first as f64).min(end) + f_last * (end - t_last as f64).max(0.0);
    for w in profile.windows(2) {
        let ((t0, f0), (t1, f1)) = ((w[0].0 as f64, w[0].1), (w[1].0 as f64, w[1].1));
        if t1 <= t0 || t0 >= end {
            continue;
        }
        let t_end = t1.min(end);
        let f_end = f0 + (f1 - f0) * (t_end - t0) / (t1 - t0);
        area += (f0 + f_end) / 2.0 * (t_end - t0);
    }
    area
}

/// Profile points must be in order of `at`, not all zero, and keep the
/// entry's rate within [`units::MAX_RATE_PER_S`].
fn profile(
    raw: Spanned<Vec<Spanned<RawPoint>>>,
    rate_per_s: f64,
    err: &ErrFn<'_>,
) -> Result<Vec<(u64, f64)>, ScenarioError> {
    let span = raw.span();
    let points = raw.into_inner();
    if let Some(p) = points.get(MAX_POINTS) {
        return Err(err(Some(p.span()), format!("at most {MAX_POINTS} profile points")));
    }
    if points.is_empty() {
        return Err(err(Some(span), "a profile needs at least one { at, factor } point".into()));
    }
    let mut out: Vec<(u64, f64)> = Vec::with_capacity(points.len());
    for p in points {
        let (at, factor) = (p.get_ref().at.0, p.get_ref().factor.0);
        if out.last().is_some_and(|&(prev, _)| at < prev) {
            return Err(err(Some(p.span()), "profile points must be in order of `at`".into()));
        }
        if rate_per_s * factor > units::MAX_RATE_PER_S {
            let text = format!(
                "this factor takes the rate to {:.3e}/s, above the most kfsim runs, 1000000/s",
                rate_per_s * factor
            );
            return Err(err(Some(p.span()), text));
        }
        out.push((at, factor));
    }
    if out.iter().all(|&(_, f)| f == 0.0) {
        return Err(err(Some(span), "a profile whose factors are all 0 has no arrivals".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
[[account]]
name = "a"
[[agents]]
count = 2
reply_delay = "1m"
[[entry]]
scene = "web"
rate = "1/min"
"#;

    #[test]
    fn a_key_nested_past_the_readers_limit_is_pointed_at() {
        let deep = vec!["a"; 200].join(".");
        let text = format!("{MINIMAL}\n{deep} = 1\n");
        let Err(ScenarioError::Invalid(d)) = Scenario::parse(&text, "t.toml") else { panic!("accepted") };
        let shown = d.to_string();
        assert!(shown.contains("t.toml:12:1: a key of 200 dotted parts"), "{shown}");
    }

    /// Sessions passed back and forth at share 1 make 16 transfers each,
    /// as a run of the first case counts them (its replies less its
    /// customer messages).
    #[test]
    fn transfers_expected_follow_the_shares_to_where_they_lead() {
        let text = |ab: f64, ba: f64, shared: bool| {
            let accounts = if shared { r#"accounts = ["b", "c"]"# } else { r#"account = "b""# };
            format!(
                r#"
name = "t"
[[account]]
name = "a"
[[account]]
name = "b"
[[account]]
name = "c"
[[agents]]
account = "a"
count = 2
reply_delay = "1m"
transfer = {{ to = "b", share = {ab} }}
[[agents]]
group = "g"
{accounts}
count = 2
reply_delay = "1m"
transfer = {{ to = "a", share = {ba} }}
[[entry]]
scene = "web"
account = "a"
rate = "1/min"
"#
            )
        };
        let expected = |ab, ba, shared| {
            let s = Scenario::parse(&text(ab, ba, shared), "t.toml").unwrap();
            transfers_expected(&s.groups, s.accounts.len())
        };
        assert_eq!(expected(1.0, 1.0, false), [16.0, 16.0, 0.0]);
        // a → b, and no further
        assert_eq!(expected(0.5, 0.0, false), [0.5, 0.0, 0.0]);
        // 0.5 + 0.25 + … over sixteen handles
        let e = expected(0.5, 0.5, false);
        assert!((e[0] - (1.0 - 0.5f64.powi(16))).abs() < 1e-12, "{e:?}");
        // a group's transfer applies to every account its agents serve
        assert_eq!(expected(0.0, 0.25, true), [0.0, 0.25, 0.25]);
    }

    #[test]
    fn defaults_are_documented_ones() {
        let s = Scenario::parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(s.seed, 1);
        assert_eq!(s.warmup_us, 0);
        assert_eq!(s.duration_us, DEFAULT_DURATION_US);
        assert_eq!(s.service_level_us, 20_000_000);
        let a = &s.accounts[0];
        assert_eq!((a.policy, a.prefer_last_agent, a.queue_limit), (PolicyKind::RoundRobin, false, None));
        let g = &s.groups[0];
        assert_eq!((g.group.as_str(), g.max_concurrent, g.slowdown), ("a", 1, 0.0));
        assert!(g.wrap_up.is_zero() && g.online.is_empty());
        let e = &s.entries[0];
        assert_eq!(
            (e.name.as_str(), e.returning, e.messages),
            ("web", 0.0, CountDist::Constant { value: 1 })
        );
        assert!(e.think.is_zero() && e.patience.is_none() && e.profile.is_empty());
        assert_eq!(e.mix[0], 1.0);
    }

    #[test]
    fn a_callbacks_retry_delay_is_read_and_defaults_to_at_once() {
        let callback = |extra: &str| {
            let text = format!(
                "{MINIMAL}\n[wecom.callback]\ntoken = \"t\"\n\
                 encoding_aes_key = \"jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C\"\n{extra}"
            );
            Scenario::parse(&text, "t.toml").unwrap().wecom.callback.unwrap()
        };
        assert_eq!(callback("").retry_delay_us, 0);
        assert_eq!(callback("retry_delay = \"250ms\"").retry_delay_us, 250_000);
        assert_eq!(callback("retry_delay = \"1h\"").retry_delay_us, MAX_RETRY_DELAY_US);
    }

    #[test]
    fn overrides_change_the_model() {
        let sets = ["seed=9", "agents.a.count=7", "entry.web.rate=3/s", "account.a.policy=idle_first"]
            .map(String::from);
        let s = Scenario::parse_with(MINIMAL, "t.toml", &sets).unwrap();
        assert_eq!(s.seed, 9);
        assert_eq!(s.groups[0].count, 7);
        assert_eq!(s.entries[0].rate_per_s, 3.0);
        assert_eq!(s.accounts[0].policy, PolicyKind::IdleFirst);
    }

    #[test]
    fn seeds_past_toml_integers_are_given_as_strings() {
        // `--set seed=18446744073709551615` was refused: TOML's integers
        // stop at 2^63 - 1, while `--seed` and the summary's seed do not
        let top = ["seed=18446744073709551615".to_string()];
        assert_eq!(Scenario::parse_with(MINIMAL, "t.toml", &top).unwrap().seed, u64::MAX);
        let text = format!("seed = \"9223372036854775808\"\n{MINIMAL}");
        assert_eq!(Scenario::parse(&text, "t.toml").unwrap().seed, 1 << 63);
        for bad in ["-1", "\"-1\"", "\"12x\"", "\"\"", "\"18446744073709551616\"", "1.5"] {
            let text = format!("seed = {bad}\n{MINIMAL}");
            let e = Scenario::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(e.contains("t.toml:1:") && e.contains("a whole number from 0 to"), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_point_at_the_value() {
        let text = MINIMAL.replace("rate = \"1/min\"", "rate = \"-1/min\"");
        let e = Scenario::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.starts_with("t.toml:10:8: "), "{e}");
        assert!(e.contains("must be positive"), "{e}");
    }

    #[test]
    fn an_account_sent_sessions_with_nobody_to_serve_them_is_warned_of() {
        let with = |extra: &str| {
            let text = format!(
                "name = \"t\"\n[[account]]\nname = \"a\"\n[[account]]\nname = \"b\"\n\
                 [[agents]]\naccount = \"a\"\ncount = 2\nreply_delay = \"1m\"\n{extra}"
            );
            Scenario::parse(&text, "t.toml").unwrap().warnings()
        };
        let entry = |to: &str, route: &str| {
            format!("[[entry]]\nscene = \"web\"\naccount = \"{to}\"\nrate = \"1/min\"\n{route}")
        };
        assert_eq!(with(&entry("a", "")), Vec::<String>::new(), "served");
        assert_eq!(
            with(&entry("b", "")),
            [
                "account `b` gets sessions (entry `web`) but no [[agents]] serve it: none of them will be answered by people"
            ]
        );
        // a rule taking every arrival: the entry's own account gets none
        assert!(with(&entry("b", "route = [{ account = \"a\" }]")).is_empty());
        // taking only some of them leaves the rest to it
        assert_eq!(with(&entry("b", "route = [{ account = \"a\", share = 0.5 }]")).len(), 1);
        assert_eq!(with(&entry("b", "route = [{ account = \"a\", returning = true }]")).len(), 1);
        // a bot that resolves every session needs nobody behind it
        let bot = |resolve: &str| format!("[account.bot]\nreply_delay = \"3s\"\nresolve = {resolve}\n");
        let b_with_bot = |resolve: &str| {
            let text = format!(
                "name = \"t\"\n[[account]]\nname = \"a\"\n[[account]]\nname = \"b\"\n{}\
                 [[agents]]\naccount = \"a\"\ncount = 2\nreply_delay = \"1m\"\n{}",
                bot(resolve),
                entry("b", "")
            );
            Scenario::parse(&text, "t.toml").unwrap().warnings().len()
        };
        assert_eq!(b_with_bot("1.0"), 0);
        assert_eq!(b_with_bot("0.9"), 1);
        // transfers are senders too
        let w = with(&format!("transfer = {{ to = \"b\", share = 0.2 }}\n{}", entry("a", "")));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("(transfers from group `a`)"), "{w:?}");
        // handle times of a few clock grains
        let grain = |reply: &str| {
            let text = format!(
                "name = \"t\"\n[[account]]\nname = \"a\"\n[[agents]]\ncount = 1\nreply_delay = {reply}\n{}",
                entry("a", "")
            );
            Scenario::parse(&text, "t.toml").unwrap().warnings()
        };
        let exponential = |mean: &str| grain(&format!("{{ dist = \"exponential\", mean = \"{mean}\" }}"));
        assert_eq!(exponential("1ms"), Vec::<String>::new());
        assert_eq!(grain("\"0s\""), Vec::<String>::new(), "instant replies: nobody waits");
        assert_eq!(grain("\"5us\"").len(), 1);
        let w = exponential("5us");
        assert!(w.len() == 1 && w[0].contains("averages 5 µs"), "{w:?}");
    }

    #[test]
    fn a_profile_s_mean_is_its_area_over_the_run() {
        assert_eq!(mean_factor(&[], 100), 1.0);
        assert_eq!(mean_factor(&[(0, 2.0)], 100), 2.0);
        // a ramp from 0 to 4 over the run
        assert_eq!(mean_factor(&[(0, 0.0), (100, 4.0)], 100), 2.0);
        // the first factor before the first point, the last after the last
        assert_eq!(mean_factor(&[(50, 1.0), (50, 3.0)], 100), 2.0);
        // a ramp cut by the end of the run: 0 to 2 over the first half
        assert_eq!(mean_factor(&[(0, 0.0), (200, 4.0)], 100), 1.0);
        // points past the end count for nothing
        assert_eq!(mean_factor(&[(0, 1.0), (100, 1.0), (150, 1e6)], 100), 1.0);
    }

    /// An override's error was reported at a line and column of the
    /// rewritten document (past the file's end, or another line), under the
    /// file's name. It names the override that broke the file instead.
    #[test]
    fn an_override_that_breaks_the_scenario_is_named() {
        let err = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            Scenario::parse_with(MINIMAL, "t.toml", &sets).unwrap_err().to_string()
        };
        assert_eq!(
            err(&["seed=3", "agents.a.online=[]", "duration=2h"]),
            "--set agents.a.online=[]: `online = []` lists no shift: leave `online` out for agents online \
             the whole run (at `online = []`, with the override)"
        );
        assert_eq!(
            err(&["warmup=2h", "seed=4"]),
            "--set warmup=2h: `warmup` must be shorter than `duration` (at `warmup = \"2h\"`, with the override)"
        );
        assert_eq!(
            err(&["account.a.bot=3"]),
            "--set account.a.bot=3: invalid type: integer `3`, expected a table like `[account.bot]` with \
             reply_delay, resolve, turns (at `bot = 3`, with the override)"
        );
        // inside an entry's table: the override names the entry, the
        // rewritten document's `[entry.patience]` did not
        assert_eq!(
            err(&["entry.web.patience={ dist = \"exponential\", mean = \"0s\" }"]),
            "--set entry.web.patience={ dist = \"exponential\", mean = \"0s\" }: `mean` must be positive \
             (at `mean = \"0s\"`, with the override)"
        );
        // the file's own mistakes are still at their own lines
        let bad = MINIMAL.replace("rate = \"1/min\"", "rate = \"-1/min\"");
        let e = Scenario::parse_with(&bad, "t.toml", &["seed=3".into()]).unwrap_err().to_string();
        assert!(e.starts_with("t.toml:10:8: "), "{e}");
    }
}
