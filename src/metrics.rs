//! Folds the observation stream into streaming statistics: HDR histograms,
//! counters and per-agent time integrals. Memory does not depend on the
//! number of sessions.
//!
//! Counted sessions are those that arrived at or after warm-up. Agent time
//! (online, busy, slot use) is integrated over `[warmup, duration]`, the
//! window in which arrivals are steady.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::hdr;
use crate::observe::{Engine, Obs, Observer, RunStats, SessionInfo};
use crate::scenario::{MSG_TYPES, Scenario};
use crate::series::{SeriesData, SeriesRecorder};
use crate::summary::{
    AccountSummary, AgentSummary, BotSummary, Delivery, EntrySummary, Fairness, FlowEdge, GroupSummary,
    HttpEndpoint, Latencies, LatencyStats, LiveInfo, MessageCounts, RunInfo, SCHEMA, ScenarioInfo,
    SessionCounts, SessionsBucket, Sticky, Summary, ratio,
};

/// Largest latency a histogram tracks exactly [µs] (about 115 days); larger
/// values are clamped into the top bucket (the exact `max` is kept apart).
const HIST_MAX_US: u64 = 10_000_000_000_000;

/// An HDR histogram of microseconds with an exact sum and maximum. The
/// counts (about 280 kB) are allocated at the first sample: a scenario with
/// thousands of entries keeps two per entry, most of them empty in a gate
/// check or a short run.
#[derive(Debug, Clone, Default)]
pub struct Hist {
    /// Counted in `new_histogram()`'s layout (3 significant digits).
    counts: Option<Box<hdr::Counts<11>>>,
    sum: u128,
    max: u64,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static histogram bounds")
}

/// The histogram of no samples, shared: the template of every `Hist`.
fn empty_histogram() -> &'static Histogram<u64> {
    static EMPTY: std::sync::OnceLock<Histogram<u64>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(new_histogram)
}

// A histogram with its exact sum and maximum, tagged as `crate::tally`
// merges it.
impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.counts.as_ref().and_then(|c| c.to_v2_deflate(empty_histogram()));
        crate::tally::hist_value_serialized(bytes, self.sum, self.max).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hist, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let (bytes, sum, max) = crate::tally::hist_bytes(&v).map_err(serde::de::Error::custom)?;
        let counts = match bytes {
            None => None,
            Some(bytes) => {
                let mut c = hdr::Counts::new(empty_histogram());
                // another layout (a histogram written by other code) goes
                // through hdrhistogram, as before
                if c.add_serialized(&bytes, empty_histogram()).is_err() {
                    let (h, _, _) = crate::tally::hist_parts(&v).map_err(serde::de::Error::custom)?;
                    c.add_histogram(&h.expect("a histogram with its bytes"));
                }
                Some(Box::new(c))
            }
        };
        Ok(Hist { counts, sum, max })
    }
}

impl Hist {
    /// Add one sample [µs].
    #[inline]
    pub fn record(&mut self, us: u64) {
        let highest = match &mut self.counts {
            Some(c) => c.record(us),
            None => self.first_count(us),
        };
        self.sum += u128::from(us);
        // a sample below the highest bucket counted is below the maximum,
        // which is in that bucket (a state read back keeps both as written)
        if highest {
            self.max = self.max.max(us);
        }
    }

    /// The first sample: the counts are made here, out of line, so that
    /// `record` stays small enough to inline (four a session).
    #[cold]
    #[inline(never)]
    fn first_count(&mut self, us: u64) -> bool {
        let mut c = Box::new(hdr::Counts::new(empty_histogram()));
        c.record(us);
        self.counts = Some(c);
        true
    }

    /// Samples so far.
    pub fn count(&self) -> u64 {
        self.counts.as_ref().map_or(0, |c| c.len())
    }

    /// The samples as an hdrhistogram (built here, so not for every sample).
    pub fn histogram(&self) -> Histogram<u64> {
        match &self.counts {
            Some(c) => c.to_histogram(empty_histogram()),
            None => empty_histogram().clone(),
        }
    }

    /// Mean [µs], if any sample.
    pub fn mean_us(&self) -> Option<f64> {
        ratio(self.sum as f64, self.count() as f64)
    }

    /// Summary statistics in milliseconds.
    /// Read off the counts: the live driver's progress line asks for a
    /// p95 while every call waits to record into the same histogram.
    pub fn stats_ms(&self) -> LatencyStats {
        let Some(c) = self.counts.as_deref().filter(|c| !c.is_empty()) else {
            return LatencyStats::default();
        };
        let q = |q: f64| Some(c.value_at_quantile(q, empty_histogram()).min(self.max) as f64 / 1e3);
        LatencyStats {
            count: c.len(),
            mean: self.mean_us().map(|m| m / 1e3),
            p50: q(0.50),
            p90: q(0.90),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            max: Some(self.max as f64 / 1e3),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Counts {
    offered: u64,
    /// Of `offered`, reached people (all of them without a bot).
    people: u64,
    answered: u64,
    abandoned: u64,
    rejected: u64,
    unfinished: u64,
    /// Assigned in the instant they arrived.
    immediate: u64,
    within_sl: u64,
}

impl Counts {
    fn sessions(&self, bots: bool) -> SessionCounts {
        SessionCounts {
            offered: self.offered,
            to_people: bots.then_some(self.people),
            answered: self.answered,
            abandoned: self.abandoned,
            rejected: self.rejected,
            unfinished: self.unfinished,
        }
    }
}

impl Counts {
    /// Which count is more than the sessions it is a part of, if any: a
    /// shard file edited to `within_sl: 1e9` merged into a service level
    /// of 5.6e7 %. Only what holds by construction is checked (each is
    /// counted in the same step as `answered`): against a target that
    /// breaks the protocol, a live run can count an answer for a session
    /// that never reached people (a bot's, assigned anyway), and its
    /// shards must still merge.
    fn impossible(&self) -> Option<&'static str> {
        [
            ("within the service level > answered", self.within_sl > self.answered),
            ("answered at once > answered", self.immediate > self.answered),
        ]
        .into_iter()
        .find_map(|(what, wrong)| wrong.then_some(what))
    }

    /// Waited / people, answered within T / people, abandoned / people.
    fn rates(&self) -> (Option<f64>, Option<f64>, Option<f64>) {
        let people = self.people as f64;
        (
            ratio(people - self.immediate as f64, people),
            ratio(self.within_sl as f64, people),
            ratio(self.abandoned as f64, people),
        )
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct EntryStats {
    counts: Counts,
    queue_wait: Hist,
    first_response: Hist,
    /// Sessions by the account they went to, indexed by account (a tree
    /// map's search was 1 % of the simulator); serialised as a map of the
    /// accounts reached, so that shards' states merge key by key.
    #[serde(with = "by_account")]
    routed: Vec<u64>,
}

/// A count per account index as a map of the accounts counted.
mod by_account {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[u64], s: S) -> Result<S::Ok, S::Error> {
        let m: BTreeMap<u16, u64> =
            v.iter().enumerate().filter(|(_, n)| **n > 0).map(|(a, &n)| (a as u16, n)).collect();
        m.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        let m = BTreeMap::<u16, u64>::deserialize(d)?;
        let mut v = vec![0; m.last_key_value().map_or(0, |(&a, _)| a as usize + 1)];
        for (a, n) in m {
            v[a as usize] = n;
        }
        Ok(v)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AccountStats {
    /// Every handle offered to the account's people.
    counts: Counts,
    queue_wait: Hist,
    transferred_in: u64,
    bot_sessions: u64,
    bot_resolved: u64,
    bot_handed_over: u64,
    /// Sessions of the bot's refused before it handed them over (shed at
    /// arrival, or never taken by the target).
    #[serde(default)]
    bot_rejected: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct GroupStats {
    /// Handles taken, by the account they came from (in the order of
    /// `AgentGroup::accounts`).
    from_account: Vec<u64>,
    transferred: u64,
    ended: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct BotStats {
    sessions: u64,
    first_response: Hist,
    time_in_bot: Hist,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AgentStats {
    sessions: u64,
    messages: u64,
    busy_us: u64,
    slot_us: u128,
    online_us: u64,
    since: u64,
    load: u32,
    online: bool,
}

impl crate::tally::Adds for AgentStats {
    fn add(&mut self, fresh: &AgentStats, part: &AgentStats) -> Result<(), String> {
        // every field named: one added later must say how it adds up
        let AgentStats { sessions, messages, busy_us, slot_us, online_us, since, load, online } = part;
        self.sessions.add(&fresh.sessions, sessions)?;
        self.messages.add(&fresh.messages, messages)?;
        self.busy_us.add(&fresh.busy_us, busy_us)?;
        self.slot_us.add(&fresh.slot_us, slot_us)?;
        self.online_us.add(&fresh.online_us, online_us)?;
        self.since.add(&fresh.since, since)?;
        self.load.add(&fresh.load, load)?;
        self.online.add(&fresh.online, online)
    }
}

/// The observer that builds a [`Summary`]. Its state serialises ([`Metrics::state`]) and
/// the states of shards of a run merge (`crate::tally`) into the state the
/// whole run would have had, whose summary [`Metrics::finish_all`] computes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metrics {
    warmup_us: u64,
    duration_us: u64,
    sl_us: u64,
    counts: Counts,
    queue_wait: Hist,
    abandon_wait: Hist,
    first_response: Hist,
    reply: Hist,
    session: Hist,
    entries: Vec<EntryStats>,
    agents: Vec<AgentStats>,
    accounts: Vec<AccountStats>,
    groups: Vec<GroupStats>,
    /// Global agent index → group index.
    agent_group: Vec<u16>,
    /// Per account: it has a bot.
    has_bot: Vec<bool>,
    /// Per group: the accounts it serves, in order of priority.
    group_accounts: Vec<Vec<u16>>,
    /// Per-entry histograms are recorded (with one entry they are the
    /// top-level ones, copied at the end: histogram records are a fifth of
    /// the simulator's time).
    entry_hists: bool,
    /// Per-account queue waits are recorded (with one account and no
    /// transfers they are the top-level ones).
    account_hists: bool,
    bot: BotStats,
    sticky: Sticky,
    by_type: [u64; MSG_TYPES.len()],
    replies: u64,
    bot_replies: u64,
    series: SeriesRecorder,
}

/// A run's settled metrics state ([`Metrics::settled`]), typed until it
/// is written to `shard.json` (as a JSON tree, the state of a million
/// agents took 1.4 GB). Written straight from the types, its keys come in
/// the order the types declare them, not sorted as a tree's; the merge
/// reads it back as [`Metrics`] ([`StateMerge`]).
#[derive(Debug, Clone)]
pub struct Settled(Metrics);

impl Serialize for Settled {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// The settled states of a run's shards (read back typed as [`Metrics`])
/// added up by [`crate::tally::merge`]'s rules, relative to the state a
/// run starts with: the records kept per agent typed, element by element
/// ([`crate::tally::Adds`]), everything else as JSON trees by `merge`
/// itself, so that a figure added to the metrics later merges with no code
/// here. Holds two sets of records per agent (the fresh ones and the
/// sum) and one shard's at a time: as trees, a million agents' took
/// gigabytes a shard.
pub struct StateMerge {
    /// The fresh state's settings and per-agent groups, which every shard's
    /// must equal ([`Metrics::setup_differs`]).
    setup: Metrics,
    fresh: serde_json::Value,
    parts: Vec<serde_json::Value>,
    fresh_agents: PerAgent,
    sum: PerAgent,
}

/// What a state keeps per agent.
#[derive(Clone)]
struct PerAgent {
    stats: Vec<AgentStats>,
    group: Vec<u16>,
    series: Vec<crate::series::AgentSeries>,
}

impl PerAgent {
    fn take(m: &mut Metrics) -> PerAgent {
        PerAgent {
            stats: std::mem::take(&mut m.agents),
            group: std::mem::take(&mut m.agent_group),
            series: m.series.take_agents(),
        }
    }

    fn put(self, m: &mut Metrics) {
        m.agents = self.stats;
        m.agent_group = self.group;
        m.series.set_agents(self.series);
    }
}

impl Metrics {
    /// Which setting a run starts with (not a measurement) differs in
    /// `part`: the merge adds numbers relative to a fresh state, and a
    /// setting that differs would be added as if it were a count.
    fn setup_differs(&self, part: &Metrics) -> Option<&'static str> {
        [
            ("warm-up", self.warmup_us != part.warmup_us),
            ("duration", self.duration_us != part.duration_us),
            ("service-level threshold", self.sl_us != part.sl_us),
            ("agents' groups", self.agent_group != part.agent_group),
            ("accounts with a bot", self.has_bot != part.has_bot),
            ("groups' accounts", self.group_accounts != part.group_accounts),
            ("histograms kept per entry", self.entry_hists != part.entry_hists),
            ("histograms kept per account", self.account_hists != part.account_hists),
        ]
        .into_iter()
        .find_map(|(what, differs)| differs.then_some(what))
        .or_else(|| self.series.setup_differs(&part.series))
    }
}

impl StateMerge {
    /// A merge relative to `fresh` (`Metrics::new`, as the shards began).
    pub fn new(mut fresh: Metrics) -> StateMerge {
        let fresh_agents = PerAgent::take(&mut fresh);
        StateMerge {
            setup: Metrics { agent_group: fresh_agents.group.clone(), ..fresh.clone() },
            fresh: serde_json::to_value(&fresh).expect("metrics are JSON"),
            parts: Vec::new(),
            sum: fresh_agents.clone(),
            fresh_agents,
        }
    }

    /// Add one shard's settled state.
    pub fn add(&mut self, mut part: Metrics) -> Result<(), crate::tally::MergeError> {
        use crate::tally::add_list;
        if let Some(what) = self.setup.setup_differs(&part) {
            return Err(crate::tally::MergeError {
                path: "/".into(),
                what: format!("its {what} is not the scenario's (a shard file edited, or of another build)"),
            });
        }
        let counts = std::iter::once(("/counts".to_owned(), &part.counts))
            .chain(part.entries.iter().enumerate().map(|(i, e)| (format!("/entries/{i}/counts"), &e.counts)));
        for (path, c) in counts {
            if let Some(what) = c.impossible() {
                return Err(crate::tally::MergeError {
                    path,
                    what: format!("{what}: not the counts of a run (a shard file edited?)"),
                });
            }
        }
        let agents = PerAgent::take(&mut part);
        let (sum, fresh) = (&mut self.sum, &self.fresh_agents);
        add_list("/agents", &mut sum.stats, &fresh.stats, &agents.stats)?;
        add_list("/agent_group", &mut sum.group, &fresh.group, &agents.group)?;
        add_list("/series/agents", &mut sum.series, &fresh.series, &agents.series)?;
        let part = serde_json::to_value(&part)
            .map_err(|e| crate::tally::MergeError { path: "/".into(), what: e.to_string() })?;
        self.parts.push(part);
        Ok(())
    }

    /// The metrics of the shards added; on failure, with the position (in
    /// the order added) of the first shard whose state fails alone.
    pub fn finish(self) -> Result<Metrics, (Option<usize>, String)> {
        let merge = |parts: &[&serde_json::Value]| {
            let merged = crate::tally::merge(&self.fresh, parts)
                .map_err(|e| format!("the shards' metrics do not merge: {e}"))?;
            Metrics::from_state(merged)
        };
        let parts: Vec<&serde_json::Value> = self.parts.iter().collect();
        match merge(&parts) {
            Ok(mut m) => {
                self.sum.put(&mut m);
                Ok(m)
            }
            // Found only when it failed, so that a merge that works is not
            // slowed: an error naming no shard left the user to open every
            // file (found by probing).
            Err(e) => Err((parts.iter().position(|p| merge(&[p]).is_err()), e)),
        }
    }
}

/// Everything a run measured, as its report folder keeps it: the summary
/// (`summary.json`), the time series (`series.json`) and the HDR histograms
/// behind the latency figures [µs] (`histograms.json`, keyed `queue_wait`,
/// …, `by_entry.NAME.queue_wait`, and for a live run `http.ENDPOINT`).
#[derive(Debug, Clone)]
pub struct Measured {
    /// The summary.
    pub summary: Summary,
    /// The time series.
    pub series: SeriesData,
    /// The HDR histograms behind the latency figures [µs].
    pub histograms: BTreeMap<String, Histogram<u64>>,
}

/// What only the live engine measures: the figures it hands to
/// [`Metrics::finish_all`] beside the observation stream, which that turns
/// into the live parts of the summary.
#[derive(Debug, Clone)]
pub struct LiveFigures {
    /// Per endpoint of the target: calls, errors and latency [ms].
    pub http: BTreeMap<String, HttpEndpoint>,
    /// The histograms behind `http` [µs], keyed `http.ENDPOINT`.
    pub http_histograms: BTreeMap<String, Histogram<u64>>,
    /// Customer messages the target accepted (whole run).
    pub sent: u64,
    /// Of those, seen by a servicer.
    pub delivered: u64,
    /// Messages of sessions given to a servicer that no servicer saw.
    pub lost: u64,
    /// Seen by a servicer more than once.
    pub duplicated: u64,
    /// Seen by a servicer after a later message of the same session.
    pub reordered: u64,
    /// Actions sent more than 10 ms (wall) after their schedule.
    pub late_actions: u64,
    /// How late actions were sent [wall µs].
    pub lag: Hist,
    /// Customer message → seen by the servicer, and reply → seen by the
    /// customer [wall µs].
    pub to_agent: Hist,
    /// Reply → seen by the customer [wall µs].
    pub to_customer: Hist,
    /// The target, the scale, the load carried and what was given up.
    pub info: LiveInfo,
}

impl Metrics {
    /// Empty metrics for a run of `scenario`.
    pub fn new(scenario: &Scenario) -> Metrics {
        Metrics {
            warmup_us: scenario.warmup_us,
            duration_us: scenario.duration_us,
            sl_us: scenario.service_level_us,
            counts: Counts::default(),
            queue_wait: Hist::default(),
            abandon_wait: Hist::default(),
            first_response: Hist::default(),
            reply: Hist::default(),
            session: Hist::default(),
            entries: vec![EntryStats::default(); scenario.entries.len()],
            agents: vec![AgentStats::default(); scenario.agent_count()],
            accounts: vec![AccountStats::default(); scenario.accounts.len()],
            groups: scenario
                .groups
                .iter()
                .map(|g| GroupStats { from_account: vec![0; 1 + g.also.len()], ..Default::default() })
                .collect(),
            agent_group: scenario
                .groups
                .iter()
                .enumerate()
                .flat_map(|(i, g)| std::iter::repeat_n(i as u16, g.count as usize))
                .collect(),
            has_bot: scenario.accounts.iter().map(|a| a.bot.is_some()).collect(),
            group_accounts: scenario
                .groups
                .iter()
                .map(|g| g.accounts().map(|a| a as u16).collect())
                .collect(),
            entry_hists: scenario.entries.len() > 1,
            account_hists: scenario.accounts.len() > 1
                || scenario.groups.iter().any(|g| g.transfer.is_some()),
            bot: BotStats::default(),
            sticky: Sticky::default(),
            by_type: [0; MSG_TYPES.len()],
            replies: 0,
            bot_replies: 0,
            series: SeriesRecorder::new(scenario),
        }
    }

    #[inline]
    fn counted(&self, s: &SessionInfo) -> bool {
        s.arrived_us >= self.warmup_us
    }

    /// Integrate agent `i`'s state up to `t`; its record, for the change
    /// at `t` (one bounds check for both).
    #[inline]
    fn advance_agent(&mut self, i: usize, t: u64) -> &mut AgentStats {
        let (warmup, duration) = (self.warmup_us, self.duration_us);
        let a = &mut self.agents[i];
        if a.online || a.load > 0 {
            // the part of [since, t) inside the measured window
            let span = t.min(duration).saturating_sub(a.since.max(warmup));
            if a.online {
                a.online_us += span;
            }
            if a.load > 0 {
                a.busy_us += span;
                a.slot_us += u128::from(span) * u128::from(a.load);
            }
        }
        a.since = t;
        a
    }

    /// Keep what a state that merges needs: each interval's queue-wait
    /// histogram.
    pub fn keep_interval_histograms(&mut self) {
        self.series.keep_interval_histograms();
    }

    /// The state at `end_us`, settled so that it only adds up: every
    /// agent's time integrated to `end_us`, then its instantaneous status
    /// (load, online) put back as a new run has it; the series likewise.
    /// Merged with others by [`crate::tally::merge`] relative to the state
    /// of `Metrics::new`, then [`Metrics::from_state`] and
    /// [`Metrics::finish_all`].
    pub fn state(&self, end_us: u64) -> serde_json::Value {
        serde_json::to_value(&self.settled(end_us).0).expect("metrics are JSON")
    }

    /// [`Metrics::state`] as a run keeps it for its `shard.json`: the same
    /// JSON when serialised, but typed until then (as a JSON tree, the
    /// state of a million agents took 1.4 GB).
    pub fn settled(&self, end_us: u64) -> Settled {
        let mut m = self.clone();
        for i in 0..m.agents.len() {
            m.advance_agent(i, end_us);
            let a = &mut m.agents[i];
            (a.since, a.load, a.online) = (0, 0, false);
        }
        m.series.settle(end_us);
        Settled(m)
    }

    /// The metrics of a (merged) state.
    pub fn from_state(state: serde_json::Value) -> Result<Metrics, String> {
        serde_json::from_value(state).map_err(|e| format!("not a kfsim metrics state: {e}"))
    }

    /// Close a simulated run at `stats.end_us` and build the summary.
    pub fn finish(self, scenario: &Scenario, stats: &RunStats) -> Summary {
        self.finish_all(scenario, stats, None).summary
    }

    /// Close the run at `stats.end_us`: summary, series and histograms. A
    /// live run hands over what only it measures (`live`), a simulated one
    /// `None`.
    pub fn finish_all(
        mut self,
        scenario: &Scenario,
        stats: &RunStats,
        live: Option<LiveFigures>,
    ) -> Measured {
        if !self.entry_hists
            && let Some(e) = self.entries.first_mut()
        {
            e.queue_wait = self.queue_wait.clone();
            e.first_response = self.first_response.clone();
        }
        if !self.account_hists
            && let Some(a) = self.accounts.first_mut()
        {
            a.queue_wait = self.queue_wait.clone();
        }
        let mut histograms = BTreeMap::new();
        for (name, h) in [
            ("queue_wait", &self.queue_wait),
            ("abandon_wait", &self.abandon_wait),
            ("first_response", &self.first_response),
            ("reply", &self.reply),
            ("session", &self.session),
        ] {
            histograms.insert(name.to_string(), h.histogram());
        }
        // an entry's empty histograms are left out: thousands of entries
        // would otherwise cost a megabyte each here
        for (e, m) in scenario.entries.iter().zip(&self.entries) {
            for (name, h) in [("queue_wait", &m.queue_wait), ("first_response", &m.first_response)] {
                if h.count() > 0 {
                    histograms.insert(format!("by_entry.{}.{name}", e.name), h.histogram());
                }
            }
        }
        let series = std::mem::replace(&mut self.series, SeriesRecorder::new(scenario)).finish(stats.end_us);
        let engine = if live.is_some() { Engine::Live } else { Engine::Sim };
        let bot_replies = self.bot_replies;
        let mut summary = self.summary(scenario, engine, stats);
        if let Some(live) = live {
            histograms.extend(live.http_histograms);
            let s = &mut summary;
            s.http = Some(live.http);
            s.messages.sent = Some(live.sent);
            s.messages.delivered = Some(live.delivered);
            s.messages.lost = Some(live.lost);
            s.messages.duplicated = Some(live.duplicated);
            s.messages.reordered = Some(live.reordered);
            s.messages.bot = Some(bot_replies);
            s.late_actions = Some(live.late_actions);
            s.lag_ms = Some(live.lag.stats_ms());
            s.delivery_ms = Some(Delivery {
                to_agent: live.to_agent.stats_ms(),
                to_customer: live.to_customer.stats_ms(),
            });
            s.live = Some(live.info);
        }
        Measured { summary, series, histograms }
    }

    fn summary(mut self, scenario: &Scenario, engine: Engine, stats: &RunStats) -> Summary {
        for i in 0..self.agents.len() {
            self.advance_agent(i, stats.end_us);
        }
        let bots = self.has_bot.iter().any(|&b| b);
        let (wait_probability, service_level, abandon_rate) = self.counts.rates();
        let agents = self.agent_summaries(scenario);
        let by_group = self.group_summaries(scenario, &agents);
        let slot_online: f64 = agents_cap_online(scenario, &self.agents);
        let slot_used: f64 = self.agents.iter().map(|a| a.slot_us as f64).sum();
        Summary {
            schema: SCHEMA.into(),
            kfsim_version: env!("KFSIM_VERSION").into(),
            engine,
            scenario: ScenarioInfo {
                name: scenario.name.clone(),
                duration_s: scenario.duration_us as f64 / 1e6,
                warmup_s: scenario.warmup_us as f64 / 1e6,
                service_level_s: scenario.service_level_us as f64 / 1e6,
                fingerprint: scenario.fingerprint(),
            },
            seed: scenario.seed,
            run: RunInfo {
                end_s: stats.end_us as f64 / 1e6,
                sessions_total: stats.sessions,
                peak_in_flight: stats.peak_in_flight,
                shed: stats.shed,
                interrupted: stats.interrupted,
                horizon: stats.horizon,
            },
            sessions: self.counts.sessions(bots),
            wait_probability,
            abandon_rate,
            service_level,
            asa_ms: self.queue_wait.mean_us().map(|m| m / 1e3),
            occupancy: ratio(slot_used, slot_online),
            latency_ms: Latencies {
                queue_wait: self.queue_wait.stats_ms(),
                abandon_wait: self.abandon_wait.stats_ms(),
                first_response: self.first_response.stats_ms(),
                reply: self.reply.stats_ms(),
                session: self.session.stats_ms(),
            },
            messages: MessageCounts {
                customer: self.by_type.iter().sum(),
                replies: self.replies,
                by_type: MSG_TYPES
                    .iter()
                    .zip(self.by_type)
                    .filter(|(_, n)| *n > 0)
                    .map(|(t, n)| (t.to_string(), n))
                    .collect(),
                ..Default::default()
            },
            fairness: scenario
                .accounts
                .iter()
                .enumerate()
                .map(|(i, a)| (a.name.clone(), self.fairness(scenario, i)))
                .collect(),
            agents,
            sticky: Sticky {
                rate: ratio(self.sticky.kept as f64, self.sticky.eligible as f64),
                ..self.sticky.clone()
            },
            by_entry: scenario
                .entries
                .iter()
                .zip(&self.entries)
                .map(|(e, m)| {
                    let s = EntrySummary {
                        scene: e.scene.as_str().into(),
                        account: scenario.accounts[e.account].name.clone(),
                        sessions: m.counts.sessions(bots),
                        service_level: m.counts.rates().1,
                        queue_wait: m.queue_wait.stats_ms(),
                        first_response: m.first_response.stats_ms(),
                    };
                    (e.name.clone(), s)
                })
                .collect(),
            gates: Vec::new(),
            http: None,
            delivery_ms: None,
            late_actions: None,
            lag_ms: None,
            live: None,
            middleware: None,
            bot: bots.then(|| self.bot_summary()),
            by_account: self.account_summaries(scenario),
            by_group,
            transfers: scenario
                .groups
                .iter()
                .zip(&self.groups)
                .filter_map(|(g, m)| {
                    let t = g.transfer.as_ref()?;
                    Some((format!("{}->{}", g.group, scenario.accounts[t.to].name), m.transferred))
                })
                .collect(),
            flow: self.flow(scenario),
        }
    }

    fn bot_summary(&self) -> BotSummary {
        let resolved: u64 = self.accounts.iter().map(|a| a.bot_resolved).sum();
        let handed_over: u64 = self.accounts.iter().map(|a| a.bot_handed_over).sum();
        BotSummary {
            sessions: self.bot.sessions,
            resolved,
            handed_over,
            rejected: self.accounts.iter().map(|a| a.bot_rejected).sum(),
            deflection: ratio(resolved as f64, (resolved + handed_over) as f64),
            replies: self.bot_replies,
            first_response: self.bot.first_response.stats_ms(),
            time_in_bot: self.bot.time_in_bot.stats_ms(),
        }
    }

    fn account_summaries(&self, sc: &Scenario) -> BTreeMap<String, AccountSummary> {
        sc.accounts
            .iter()
            .zip(&self.accounts)
            .map(|(a, m)| {
                let (wait_probability, service_level, abandon_rate) = m.counts.rates();
                let s = AccountSummary {
                    handles: m.counts.sessions(false),
                    transferred_in: m.transferred_in,
                    wait_probability,
                    service_level,
                    abandon_rate,
                    asa_ms: m.queue_wait.mean_us().map(|w| w / 1e3),
                    queue_wait: m.queue_wait.stats_ms(),
                };
                (a.name.clone(), s)
            })
            .collect()
    }

    fn group_summaries(&self, sc: &Scenario, agents: &[AgentSummary]) -> BTreeMap<String, GroupSummary> {
        let mut first = 0;
        let mut out = BTreeMap::new();
        for (g, m) in sc.groups.iter().zip(&self.groups) {
            let range = first..first + g.count as usize;
            first = range.end;
            let slot: f64 = self.agents[range.clone()].iter().map(|a| a.slot_us as f64).sum();
            let online: f64 =
                agents[range].iter().map(|a| a.online_s * 1e6 * f64::from(a.max_concurrent)).sum();
            let s = GroupSummary {
                accounts: g.accounts().map(|a| sc.accounts[a].name.clone()).collect(),
                agents: u64::from(g.count),
                handles: m.from_account.iter().sum(),
                transferred: m.transferred,
                ended: m.ended,
                occupancy: ratio(slot, online),
            };
            out.insert(g.group.clone(), s);
        }
        out
    }

    /// The flow of counted sessions, edge by edge, zero edges left out.
    fn flow(&self, sc: &Scenario) -> Vec<FlowEdge> {
        let mut out = Vec::new();
        let mut edge = |from: String, to: String, sessions: u64| {
            if sessions > 0 {
                out.push(FlowEdge { from, to, sessions });
            }
        };
        let people = |a: usize| format!("account:{}", sc.accounts[a].name);
        for (e, m) in sc.entries.iter().zip(&self.entries) {
            for (a, &n) in m.routed.iter().enumerate() {
                let to = if self.has_bot[a] { format!("bot:{}", sc.accounts[a].name) } else { people(a) };
                edge(format!("entry:{}", e.name), to, n);
            }
        }
        for (i, (a, m)) in sc.accounts.iter().zip(&self.accounts).enumerate() {
            if self.has_bot[i] {
                edge(format!("bot:{}", a.name), "resolved".into(), m.bot_resolved);
                edge(format!("bot:{}", a.name), people(i), m.bot_handed_over);
                edge(format!("bot:{}", a.name), "rejected".into(), m.bot_rejected);
                let open = m.bot_sessions.saturating_sub(m.bot_resolved + m.bot_handed_over + m.bot_rejected);
                edge(format!("bot:{}", a.name), "open".into(), open);
            }
        }
        for (i, m) in self.accounts.iter().enumerate() {
            for (gi, (g, gm)) in sc.groups.iter().zip(&self.groups).enumerate() {
                if let Some(k) = self.group_accounts[gi].iter().position(|&a| a as usize == i) {
                    edge(people(i), format!("group:{}", g.group), gm.from_account[k]);
                }
            }
            edge(people(i), "abandoned".into(), m.counts.abandoned);
            edge(people(i), "rejected".into(), m.counts.rejected);
            edge(people(i), "unfinished".into(), m.counts.unfinished);
        }
        for (g, m) in sc.groups.iter().zip(&self.groups) {
            if let Some(t) = &g.transfer {
                edge(format!("group:{}", g.group), people(t.to), m.transferred);
            }
            edge(format!("group:{}", g.group), "ended".into(), m.ended);
            let handles: u64 = m.from_account.iter().sum();
            edge(
                format!("group:{}", g.group),
                "open".into(),
                handles.saturating_sub(m.transferred + m.ended),
            );
        }
        out
    }

    fn agent_summaries(&self, sc: &Scenario) -> Vec<AgentSummary> {
        let mut out = Vec::with_capacity(self.agents.len());
        for g in &sc.groups {
            for n in 1..=g.count {
                let a = &self.agents[out.len()];
                out.push(AgentSummary {
                    id: g.agent_id(n),
                    account: sc.accounts[g.account].name.clone(),
                    group: g.group.clone(),
                    max_concurrent: g.max_concurrent,
                    sessions: a.sessions,
                    messages: a.messages,
                    busy_s: a.busy_us as f64 / 1e6,
                    online_s: a.online_us as f64 / 1e6,
                    occupancy: ratio(a.slot_us as f64, a.online_us as f64 * f64::from(g.max_concurrent)),
                });
            }
        }
        out
    }

    fn fairness(&self, sc: &Scenario, account: usize) -> Fairness {
        let mut per_hour = Vec::new();
        let mut busy = Vec::new();
        let mut buckets = std::collections::BTreeMap::<u64, u64>::new();
        let mut i = 0;
        for g in &sc.groups {
            for _ in 0..g.count {
                let a = &self.agents[i];
                i += 1;
                if !g.serves(account) || a.online_us == 0 {
                    continue;
                }
                per_hour.push(a.sessions as f64 / (a.online_us as f64 / 3.6e9));
                busy.push(a.busy_us as f64);
                *buckets.entry(a.sessions).or_default() += 1;
            }
        }
        let (min, max) =
            per_hour.iter().fold((f64::INFINITY, 0.0_f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        Fairness {
            agents: per_hour.len() as u64,
            jain: jain(&per_hour),
            gini: gini(&per_hour),
            cv: cv(&per_hour),
            max_min: (min > 0.0 && min.is_finite()).then(|| max / min),
            jain_busy: jain(&busy),
            histogram: buckets
                .into_iter()
                .map(|(sessions, agents)| SessionsBucket { sessions, agents })
                .collect(),
        }
    }
}

fn agents_cap_online(sc: &Scenario, agents: &[AgentStats]) -> f64 {
    let mut i = 0;
    let mut total = 0.0;
    for g in &sc.groups {
        for _ in 0..g.count {
            total += agents[i].online_us as f64 * f64::from(g.max_concurrent);
            i += 1;
        }
    }
    total
}

/// Jain's fairness index (Σx)² / (n·Σx²); `None` for no agents or all zero.
pub fn jain(x: &[f64]) -> Option<f64> {
    let sum: f64 = x.iter().sum();
    let sq: f64 = x.iter().map(|v| v * v).sum();
    ratio(sum * sum, x.len() as f64 * sq)
}

/// Gini coefficient Σᵢ Σⱼ |xᵢ − xⱼ| / (2n²·mean); `None` for no agents or all
/// zero.
pub fn gini(x: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let mut sorted = x.to_vec();
    sorted.sort_by(f64::total_cmp);
    // With sorted values, Σᵢ Σⱼ |xᵢ − xⱼ| = 2 Σᵢ (2i − n + 1)·xᵢ (0-based i).
    let weighted: f64 = sorted.iter().enumerate().map(|(i, v)| (2.0 * i as f64 - n + 1.0) * v).sum();
    let sum: f64 = sorted.iter().sum();
    ratio(weighted, n * sum)
}

/// Coefficient of variation (population standard deviation / mean).
pub fn cv(x: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let mean = ratio(x.iter().sum(), n)?;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    ratio(var.sqrt(), mean)
}

impl Observer for Metrics {
    #[inline(always)]
    fn observe(&mut self, obs: Obs) {
        self.fold(obs);
    }
}

impl Metrics {
    /// Session `s` reached people for its first handle (at arrival, or
    /// when a bot handed it over).
    fn reached_people(&mut self, s: &SessionInfo) {
        self.counts.people += 1;
        self.entries[s.entry as usize].counts.people += 1;
        let acc = &mut self.accounts[s.account as usize].counts;
        acc.offered += 1;
        acc.people += 1;
    }

    /// The first answer of session `s`, whoever gave it, at `t`.
    /// Always inlined: with two callers the compiler kept it out of line,
    /// a call with its saved registers on every answered session.
    #[inline(always)]
    fn first_response(&mut self, t: u64, s: &SessionInfo) {
        let first = t.saturating_sub(s.arrived_us);
        self.first_response.record(first);
        if self.entry_hists {
            self.entries[s.entry as usize].first_response.record(first);
        }
    }

    #[inline(always)]
    fn fold(&mut self, obs: Obs) {
        self.series.observe(obs);
        match obs {
            Obs::Entered { s, returning, sticky_eligible, msgtype } => {
                if !self.counted(&s) {
                    return;
                }
                self.counts.offered += 1;
                let e = &mut self.entries[s.entry as usize];
                e.counts.offered += 1;
                let (r, a) = (&mut e.routed, s.account as usize);
                if r.len() <= a {
                    r.resize(a + 1, 0);
                }
                r[a] += 1;
                if self.has_bot[s.account as usize] {
                    self.bot.sessions += 1;
                    self.accounts[s.account as usize].bot_sessions += 1;
                } else {
                    self.reached_people(&s);
                }
                self.by_type[msgtype as usize] += 1;
                self.sticky.returning += u64::from(returning);
                self.sticky.eligible += u64::from(sticky_eligible);
            }
            Obs::Queued { .. } => {}
            Obs::Handoff { t, s } => {
                if self.counted(&s) {
                    self.accounts[s.account as usize].bot_handed_over += 1;
                    self.bot.time_in_bot.record(t.saturating_sub(s.arrived_us));
                    self.reached_people(&s);
                }
            }
            Obs::BotEnded { t, s } => {
                if self.counted(&s) {
                    self.accounts[s.account as usize].bot_resolved += 1;
                    self.bot.time_in_bot.record(t.saturating_sub(s.arrived_us));
                }
            }
            Obs::Rejected { s, .. } => {
                if self.counted(&s) {
                    // refused while with the bot: never offered to people,
                    // and no longer the bot's (it was booked to both)
                    let acc = &mut self.accounts[s.account as usize];
                    if s.bot {
                        acc.bot_rejected += 1
                    } else {
                        acc.counts.rejected += 1
                    }
                    if s.handle == 0 {
                        self.counts.rejected += 1;
                        self.entries[s.entry as usize].counts.rejected += 1;
                    }
                }
            }
            Obs::Assigned { t, s, agent, kept, from_pool } => {
                if !self.counted(&s) {
                    return;
                }
                let wait = t.saturating_sub(s.human_us);
                let within = u64::from(wait <= self.sl_us);
                // "waited" means it went to the pool: in the live engine an
                // immediate assignment still takes the time of a request
                let immediate = u64::from(!from_pool);
                let acc = &mut self.accounts[s.account as usize];
                acc.counts.answered += 1;
                acc.counts.within_sl += within;
                acc.counts.immediate += immediate;
                if self.account_hists {
                    acc.queue_wait.record(wait);
                }
                if s.handle == 0 {
                    for c in [&mut self.counts, &mut self.entries[s.entry as usize].counts] {
                        c.answered += 1;
                        c.within_sl += within;
                        c.immediate += immediate;
                    }
                    self.queue_wait.record(wait);
                    if self.entry_hists {
                        self.entries[s.entry as usize].queue_wait.record(wait);
                    }
                    self.sticky.kept += u64::from(kept);
                }
                let g = self.agent_group[agent as usize] as usize;
                let k = self.group_accounts[g].iter().position(|&a| a == s.account).unwrap_or(0);
                self.groups[g].from_account[k] += 1;
                self.agents[agent as usize].sessions += 1;
            }
            Obs::Abandoned { t, s } => {
                if self.counted(&s) {
                    self.accounts[s.account as usize].counts.abandoned += 1;
                    if s.handle == 0 {
                        self.counts.abandoned += 1;
                        self.entries[s.entry as usize].counts.abandoned += 1;
                        self.abandon_wait.record(t.saturating_sub(s.human_us));
                    }
                }
            }
            Obs::Message { s, msgtype, .. } => {
                if self.counted(&s) {
                    self.by_type[msgtype as usize] += 1;
                }
            }
            Obs::Reply { t, s, agent, sent_us, first, .. } => {
                if !self.counted(&s) {
                    return;
                }
                self.replies += 1;
                self.reply.record(t.saturating_sub(sent_us));
                self.agents[agent as usize].messages += 1;
                if first {
                    self.first_response(t, &s);
                }
            }
            Obs::BotReply { t, s, first } => {
                if !self.counted(&s) {
                    return;
                }
                self.bot_replies += 1;
                if first {
                    self.first_response(t, &s);
                    if self.has_bot[s.account as usize] {
                        self.bot.first_response.record(t.saturating_sub(s.arrived_us));
                    }
                }
            }
            Obs::Transferred { s, agent, to, .. } => {
                if self.counted(&s) {
                    self.groups[self.agent_group[agent as usize] as usize].transferred += 1;
                    let acc = &mut self.accounts[to as usize];
                    acc.counts.offered += 1;
                    acc.counts.people += 1;
                    acc.transferred_in += 1;
                }
            }
            Obs::Ended { t, s, agent } => {
                if self.counted(&s) {
                    self.session.record(t.saturating_sub(s.arrived_us));
                    self.groups[self.agent_group[agent as usize] as usize].ended += 1;
                }
            }
            Obs::Unfinished { s, .. } => {
                if self.counted(&s) {
                    self.accounts[s.account as usize].counts.unfinished += 1;
                    if s.handle == 0 {
                        self.counts.unfinished += 1;
                        self.entries[s.entry as usize].counts.unfinished += 1;
                    }
                }
            }
            Obs::AgentLoad { t, agent, load } => self.advance_agent(agent as usize, t).load = load,
            Obs::AgentOnline { t, agent, online } => self.advance_agent(agent as usize, t).online = online,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fairness_indices() {
        let even = [5.0, 5.0, 5.0, 5.0];
        assert_eq!(jain(&even), Some(1.0));
        assert_eq!(gini(&even), Some(0.0));
        assert_eq!(cv(&even), Some(0.0));
        let one = [8.0, 0.0, 0.0, 0.0];
        assert_eq!(jain(&one), Some(0.25));
        assert_eq!(gini(&one), Some(0.75));
        // brute-force Gini on an uneven case
        let x: [f64; 4] = [1.0, 2.0, 4.0, 9.0];
        let brute: f64 =
            x.iter().flat_map(|a| x.iter().map(move |b| (a - b).abs())).sum::<f64>() / (2.0 * 16.0 * 4.0);
        assert!((gini(&x).unwrap() - brute).abs() < 1e-12);
        assert_eq!(jain(&[]), None);
        assert_eq!(jain(&[0.0, 0.0]), None);
    }

    /// A run's settled state, kept typed per agent, reads back as the JSON
    /// tree the state was made as before (every field there): the merge of
    /// shards reads the same thing from `shard.json`.
    #[test]
    fn the_settled_state_reads_back_as_its_json_tree() {
        let text = r#"
name = "t"
seed = 6
duration = "3h"
warmup = "20m"
[[account]]
name = "a"
[account.bot]
reply_delay = { dist = "exponential", mean = "5s" }
resolve = 0.3
[[account]]
name = "b"
[[agents]]
account = "a"
group = "front"
count = 7
max_concurrent = 2
reply_delay = { dist = "exponential", mean = "40s" }
transfer = { to = "b", share = 0.2 }
online = [{ from = "0h", to = "2h" }]
[[agents]]
account = "b"
group = "back"
count = 4
reply_delay = { dist = "exponential", mean = "1m" }
[[entry]]
scene = "web"
account = "a"
rate = "3/min"
patience = { dist = "exponential", mean = "4m" }
[[entry]]
scene = "app"
account = "b"
rate = "1/min"
"#;
        let sc = Scenario::parse(text, "t.toml").unwrap();
        let mut m = Metrics::new(&sc);
        m.keep_interval_histograms();
        let stats = crate::sim::run(&sc, &mut m);
        for end in [stats.end_us, sc.duration_us / 2] {
            // the state as it was made before: the settled clone as one tree
            let mut tree = m.clone();
            for i in 0..tree.agents.len() {
                tree.advance_agent(i, end);
                let a = &mut tree.agents[i];
                (a.since, a.load, a.online) = (0, 0, false);
            }
            tree.series.settle(end);
            let tree = serde_json::to_value(&tree).unwrap();
            assert!(tree["agents"].as_array().is_some_and(|a| a.len() == 11));
            // what a merge reads back from shard.json
            let settled: serde_json::Value =
                serde_json::from_str(&serde_json::to_string(&m.settled(end)).unwrap()).unwrap();
            assert_eq!(settled, tree);
            assert_eq!(m.state(end), tree);
        }
    }

    #[test]
    fn hist_round_trips_through_its_serialised_form() {
        let mut h = Hist::default();
        for us in [0, 7, 1_000, 65_536, 1_234_567, u64::MAX] {
            h.record(us);
        }
        let back: Hist = serde_json::from_value(serde_json::to_value(&h).unwrap()).unwrap();
        assert_eq!(back.histogram(), h.histogram());
        assert_eq!((back.count(), back.sum, back.max), (6, h.sum, u64::MAX));
        let none: Hist = serde_json::from_value(serde_json::to_value(Hist::default()).unwrap()).unwrap();
        assert_eq!((none.count(), none.counts.is_none()), (0, true));
    }

    #[test]
    fn hist_stats_are_in_ms_with_exact_mean_and_max() {
        let mut h = Hist::default();
        for us in [1_000, 2_000, 3_000, 1_234_567] {
            h.record(us);
        }
        let s = h.stats_ms();
        assert_eq!(s.count, 4);
        assert_eq!(s.mean, Some((1_000.0 + 2_000.0 + 3_000.0 + 1_234_567.0) / 4.0 / 1e3));
        assert_eq!(s.max, Some(1234.567));
        assert!((s.p50.unwrap() - 2.0).abs() < 0.01);
        assert_eq!(Hist::default().stats_ms().p99, None);
        // the quantiles read off the counts are hdrhistogram's
        let mut h = Hist::default();
        for k in 0..50_000u64 {
            h.record(k * k % 7_919_993 + (k % 13) * 1_000_000_000);
        }
        let (s, full) = (h.stats_ms(), h.histogram());
        let q = |q: f64| Some(full.value_at_quantile(q).min(h.max) as f64 / 1e3);
        assert_eq!((s.p50, s.p90, s.p95, s.p99, s.p999), (q(0.5), q(0.9), q(0.95), q(0.99), q(0.999)));
        assert_eq!(s.count, 50_000);
    }
}
