//! Time series of a run, for the "over time" charts: arrivals per entry
//! point, waiting-pool length per account, agents online and busy, slots
//! online and in use, service level and abandonment of the sessions that
//! arrived in each interval, and the p95 queue wait per interval.
//!
//! Service level, abandonment, waiting and ASA are counted by the interval
//! a session *arrived* in (the convention of workforce planning: the
//! interval's customers and how they were served), so a session that
//! arrives at 10:59 and waits into 11:00 counts for 10:45–11:00. The
//! per-interval counts are kept so that `kfsim compare` can estimate seed
//! noise from them (batch means).
//!
//! The whole run is covered, warm-up included (charts mark it). Levels
//! (pool length, agents online) are time averages over each interval, not
//! samples, so a short spike between two sample points is not lost. The
//! interval is the scenario's `series_interval`, widened so that a run has
//! at most [`MAX_POINTS`] intervals: memory grows with the run's length in
//! intervals, never with its sessions. The drain after the duration is
//! recorded too, up to [`MAX_INTERVALS`] in all: a session that outlives
//! that (a reply delay of years) is cut from the series, not from the
//! summary.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::hdr::Counts;
use crate::observe::{Obs, Observer};
use crate::scenario::Scenario;

/// Most intervals the scenario's duration is recorded in.
pub const MAX_POINTS: u64 = 2_000;

/// Most intervals recorded, the drain included: the series end there.
pub const MAX_INTERVALS: u64 = 2 * MAX_POINTS;

/// The recorded series, as written to `series.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesData {
    /// Length of one interval [s]; interval i covers `[i·interval_s, (i+1)·interval_s)`.
    pub interval_s: f64,
    /// Where counted sessions start [s].
    pub warmup_s: f64,
    /// Arrivals per interval, per entry point.
    pub arrivals: BTreeMap<String, Vec<u64>>,
    /// Mean waiting-pool length per interval, per account.
    pub queue_len: BTreeMap<String, Vec<f64>>,
    /// Mean number of agents online per interval, per account.
    pub agents_online: BTreeMap<String, Vec<f64>>,
    /// Mean number of agents holding at least one session, per account.
    pub agents_busy: BTreeMap<String, Vec<f64>>,
    /// Sessions assigned per interval (all accounts).
    pub answered: Vec<u64>,
    /// Sessions abandoned per interval (all accounts).
    pub abandoned: Vec<u64>,
    /// p95 queue wait of the sessions assigned in the interval [ms].
    pub queue_wait_p95_ms: Vec<Option<f64>>,
    /// Threshold T of the service level [s].
    #[serde(default)]
    pub service_level_s: f64,
    /// Sessions that arrived in the interval (all entry points).
    #[serde(default)]
    pub offered: Vec<u64>,
    /// Of those, answered with a queue wait ≤ T.
    #[serde(default)]
    pub within_t: Vec<u64>,
    /// Of those, assigned at once, without going to the waiting pool.
    #[serde(default)]
    pub immediate: Vec<u64>,
    /// Of those, answered at all.
    #[serde(default)]
    pub answered_by_arrival: Vec<u64>,
    /// Of those, abandoned.
    #[serde(default)]
    pub abandoned_by_arrival: Vec<u64>,
    /// Sum of the queue waits of those answered [ms] (ASA = this / answered).
    #[serde(default)]
    pub queue_wait_sum_ms: Vec<f64>,
    /// within_t / offered per interval (`null` without arrivals).
    #[serde(default)]
    pub service_level: Vec<Option<f64>>,
    /// abandoned / offered per interval (`null` without arrivals).
    #[serde(default)]
    pub abandon_rate: Vec<Option<f64>>,
    /// Mean number of slots (an online agent's `max_concurrent` places)
    /// online per interval, per account.
    #[serde(default)]
    pub slots_online: BTreeMap<String, Vec<f64>>,
    /// Mean number of those slots holding a session, per account: never more
    /// than `slots_online`.
    #[serde(default)]
    pub slots_busy: BTreeMap<String, Vec<f64>>,
    /// Mean number of sessions still held by agents after they went off
    /// line (finishing their last sessions after a shift), per account.
    #[serde(default)]
    pub held_offline: BTreeMap<String, Vec<f64>>,
}

impl SeriesData {
    /// Read `series.json`'s text, checked: a file edited by hand to an
    /// interval of 0 (or 5e-324 s) made `kfsim report` loop for ever, and
    /// per-arrival rows of unequal lengths made `compare` drop the file
    /// without a word.
    pub fn from_json(text: &str) -> Result<SeriesData, String> {
        let s: SeriesData = serde_json::from_str(text).map_err(|e| e.to_string())?;
        s.check()?;
        Ok(s)
    }

    /// What is wrong with the series, if anything: an interval that is not
    /// a number of seconds from 1 µs to 10⁹ s, more intervals than a run
    /// records, or rows of unequal lengths.
    pub fn check(&self) -> Result<(), String> {
        if !(1e-6..=1e9).contains(&self.interval_s) {
            return Err(format!("interval_s {}: expected seconds from 0.000001 to 1e9", self.interval_s));
        }
        let most = MAX_INTERVALS as usize;
        let by_arrival = [
            ("offered", self.offered.len()),
            ("within_t", self.within_t.len()),
            ("immediate", self.immediate.len()),
            ("answered_by_arrival", self.answered_by_arrival.len()),
            ("abandoned_by_arrival", self.abandoned_by_arrival.len()),
            ("queue_wait_sum_ms", self.queue_wait_sum_ms.len()),
        ];
        let maps = [
            &self.queue_len,
            &self.agents_online,
            &self.agents_busy,
            &self.slots_online,
            &self.slots_busy,
            &self.held_offline,
        ];
        let longest = by_arrival
            .iter()
            .map(|(_, n)| *n)
            .chain([self.answered.len(), self.abandoned.len(), self.queue_wait_p95_ms.len()])
            .chain(self.arrivals.values().map(Vec::len))
            .chain(maps.iter().flat_map(|m| m.values().map(Vec::len)))
            .max()
            .unwrap_or(0);
        if longest > most {
            return Err(format!("{longest} intervals: a run records at most {most}"));
        }
        let n = self.offered.len();
        if let Some((name, len)) = by_arrival.iter().find(|(_, len)| *len != n && *len != 0) {
            return Err(format!("{name} has {len} intervals, offered {n}: rows of the same sessions"));
        }
        // A run writes every row over the same intervals (`finish`), and a
        // chart of rows of unequal lengths read one past the shorter's end.
        // Rows a series had not always had may be absent (empty) instead.
        let n = self.answered.len();
        let named = |rows: &'static str, m: &BTreeMap<String, Vec<f64>>| -> Vec<(String, usize)> {
            m.iter().map(|(k, v)| (format!("{rows}.{k}"), v.len())).collect()
        };
        let always = [("abandoned".to_owned(), self.abandoned.len())]
            .into_iter()
            .chain([("queue_wait_p95_ms".to_owned(), self.queue_wait_p95_ms.len())])
            .chain(self.arrivals.iter().map(|(k, v)| (format!("arrivals.{k}"), v.len())))
            .chain(named("queue_len", &self.queue_len))
            .chain(named("agents_online", &self.agents_online))
            .chain(named("agents_busy", &self.agents_busy))
            .chain(named("slots_online", &self.slots_online))
            .chain(named("slots_busy", &self.slots_busy))
            .chain(named("held_offline", &self.held_offline));
        let if_given = [
            ("offered", self.offered.len()),
            ("service_level", self.service_level.len()),
            ("abandon_rate", self.abandon_rate.len()),
        ];
        let unequal = always
            .map(|(name, len)| (name, len, false))
            .chain(if_given.iter().map(|&(name, len)| (name.to_owned(), len, true)))
            .find(|(_, len, may_be_absent)| *len != n && !(*may_be_absent && *len == 0));
        if let Some((name, len, _)) = unequal {
            return Err(format!(
                "{name} has {len} intervals, answered {n}: every row of a series has one figure per interval"
            ));
        }
        Ok(())
    }
}

/// A count that changes at instants (sessions waiting, agents online, …),
/// integrated per interval.
///
/// Most changes fall in the interval of the one before: those only add to
/// `open` (the area of `since`'s interval so far), and the vector of closed
/// intervals is touched when a change crosses a boundary.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Level {
    /// The count since `since`: never below 0 (a change that would take it
    /// lower leaves 0, as the counters of a settled state would).
    count: i64,
    since: u64,
    /// The interval `since` falls in (kept to avoid a division per change).
    since_i: usize,
    /// ∫ level dt per interval [µs], `open` not yet added.
    area: Vec<f64>,
    /// ∫ level dt over interval `since_i` up to `since`, not yet in `area`.
    #[serde(skip)]
    open: f64,
    /// End of interval `since_i` [µs]; 0 until first computed.
    #[serde(skip)]
    open_end: u64,
}

impl Level {
    /// The count changes by `delta` at `t`.
    #[inline]
    fn add(&mut self, t: u64, delta: i64, interval: u64) {
        self.advance(t, interval);
        self.count = (self.count + delta).max(0);
    }

    /// The count is `count` from `t` on.
    #[cfg(test)]
    fn set(&mut self, t: u64, count: i64, interval: u64) {
        self.advance(t, interval);
        self.count = count;
    }

    #[inline]
    fn advance(&mut self, t: u64, interval: u64) {
        if t <= self.since {
            return;
        }
        if t <= self.open_end {
            // a span of time fits an i64, whose conversion is one instruction
            self.open += self.count as f64 * (t - self.since) as i64 as f64;
            self.since = t;
            return;
        }
        self.cross(t, interval);
    }

    /// Advance to `t`, past the end of the open interval (or with none open).
    #[cold]
    fn cross(&mut self, t: u64, interval: u64) {
        // the series end with their last interval
        let t = t.min(MAX_INTERVALS.saturating_mul(interval));
        let (mut from, mut i) = (self.since, self.since_i);
        let mut acc = std::mem::take(&mut self.open);
        loop {
            let boundary = (i as u64 + 1) * interval;
            if t <= boundary {
                self.open = acc + self.count as f64 * (t - from) as f64;
                self.open_end = boundary;
                break;
            }
            acc += self.count as f64 * (boundary - from) as f64;
            if acc != 0.0 {
                if self.area.len() <= i {
                    self.area.resize(i + 1, 0.0);
                }
                self.area[i] += acc;
            }
            acc = 0.0;
            from = boundary;
            i += 1;
        }
        self.since = t;
        self.since_i = i;
    }

    /// Move the open interval's area into `area`.
    fn close(&mut self) {
        let open = std::mem::take(&mut self.open);
        if open != 0.0 {
            if self.area.len() <= self.since_i {
                self.area.resize(self.since_i + 1, 0.0);
            }
            self.area[self.since_i] += open;
        }
        self.open_end = 0;
    }

    fn means(mut self, end: u64, interval: u64) -> Vec<f64> {
        self.advance(end, interval);
        self.close();
        let n = end.div_ceil(interval) as usize;
        self.area.resize(n, 0.0);
        (0..n)
            .map(|i| {
                let len = end.min((i as u64 + 1) * interval) - i as u64 * interval;
                if len == 0 { 0.0 } else { self.area[i] / len as f64 }
            })
            .collect()
    }
}

/// An agent as the series see it. One record, not a vector per field: an
/// agent's change is the series' most frequent observation (two a session).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AgentSeries {
    account: u16,
    online: bool,
    load: u32,
    cap: u32,
}

impl crate::tally::Adds for AgentSeries {
    fn add(&mut self, fresh: &AgentSeries, part: &AgentSeries) -> Result<(), String> {
        // every field named: one added later must say how it adds up
        let AgentSeries { account, online, load, cap } = part;
        self.account.add(&fresh.account, account)?;
        self.online.add(&fresh.online, online)?;
        self.load.add(&fresh.load, load)?;
        self.cap.add(&fresh.cap, cap)
    }
}

/// The levels of one account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AccountLevels {
    /// Sessions in the waiting pool.
    queue: Level,
    /// Agents online.
    online: Level,
    /// Agents holding at least one session.
    busy: Level,
    /// Online agents' slots.
    slots_online: Level,
    /// Sessions held by online agents.
    slots_busy: Level,
    /// Sessions held by agents gone off line.
    held_offline: Level,
}

impl AccountLevels {
    fn each(&mut self) -> [&mut Level; 6] {
        [
            &mut self.queue,
            &mut self.online,
            &mut self.busy,
            &mut self.slots_online,
            &mut self.slots_busy,
            &mut self.held_offline,
        ]
    }
}

/// The observer that records [`SeriesData`]. It serialises (settled: see
/// [`SeriesRecorder::settle`]) so that shards of a run can be merged
/// (`crate::tally`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesRecorder {
    interval: u64,
    warmup: u64,
    entry_names: Vec<String>,
    account_names: Vec<String>,
    /// Per agent (global index): what its changes move.
    agents: Vec<AgentSeries>,
    sl_us: u64,
    arrivals: Vec<Vec<u64>>,
    /// Per account: its levels.
    levels: Vec<AccountLevels>,
    /// Per interval.
    rows: Vec<Row>,
    p95: Vec<Option<f64>>,
    /// The queue waits of interval `current_interval`.
    #[serde(skip, default = "interval_counts")]
    current: Counts<8>,
    current_interval: usize,
    /// Keep each interval's queue-wait histogram (in `interval_hists`), so
    /// that the p95 per interval of merged shards is that of their merged
    /// samples, not a mean of percentiles.
    #[serde(default)]
    keep_intervals: bool,
    /// Interval → its queue-wait histogram, tagged as `crate::tally` merges it.
    #[serde(default)]
    interval_hists: BTreeMap<usize, serde_json::Value>,
    /// The row of an observation past the last interval, not kept.
    #[serde(skip)]
    past_end: Row,
    /// Cursor over intervals: observations come in time order, so the
    /// interval of `t` is found without a division.
    cursor_i: usize,
    cursor_end: u64,
}

/// The histogram of one interval's queue waits: two significant digits up
/// to ~2.8 h, enough for a chart, small to reset.
fn interval_histogram() -> &'static Histogram<u64> {
    static EMPTY: std::sync::OnceLock<Histogram<u64>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Histogram::new_with_bounds(1, 10_000_000_000, 2).expect("static histogram bounds"))
}

fn interval_counts() -> Counts<8> {
    Counts::new(interval_histogram())
}

/// The p95 of one interval's queue waits [ms].
fn p95_ms(h: &Histogram<u64>) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(0.95) as f64 / 1e3)
}

/// The interval used for `scenario` [µs].
pub fn interval_for(scenario: &Scenario) -> u64 {
    let floor = scenario.duration_us.div_ceil(MAX_POINTS);
    scenario.series_interval_us.max(floor).max(1)
}

fn bump(v: &mut Vec<u64>, i: usize) {
    if v.len() <= i {
        if i as u64 >= MAX_INTERVALS {
            return;
        }
        v.resize(i + 1, 0);
    }
    v[i] += 1;
}

/// One interval's counts: of the sessions that arrived in it (the by-arrival
/// figures), and of what happened in it (`answered`, `abandoned`). One row,
/// not a vector per count: an assignment updates five of them.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Row {
    offered: u64,
    within_t: u64,
    immediate: u64,
    answered_by_arrival: u64,
    abandoned_by_arrival: u64,
    wait_sum_ms: f64,
    answered: u64,
    abandoned: u64,
}

fn shares(num: &[u64], den: &[u64]) -> Vec<Option<f64>> {
    den.iter().zip(num).map(|(d, n)| (*d > 0).then(|| *n as f64 / *d as f64)).collect()
}

impl SeriesRecorder {
    /// An empty recorder for a run of `scenario`.
    pub fn new(scenario: &Scenario) -> SeriesRecorder {
        let agents = scenario
            .groups
            .iter()
            .flat_map(|g| {
                let a =
                    AgentSeries { account: g.account as u16, online: false, load: 0, cap: g.max_concurrent };
                std::iter::repeat_n(a, g.count as usize)
            })
            .collect();
        SeriesRecorder {
            interval: interval_for(scenario),
            warmup: scenario.warmup_us,
            entry_names: scenario.entries.iter().map(|e| e.name.clone()).collect(),
            account_names: scenario.accounts.iter().map(|a| a.name.clone()).collect(),
            agents,
            sl_us: scenario.service_level_us,
            arrivals: vec![Vec::new(); scenario.entries.len()],
            levels: vec![AccountLevels::default(); scenario.accounts.len()],
            rows: Vec::new(),
            past_end: Row::default(),
            p95: Vec::new(),
            current: interval_counts(),
            current_interval: 0,
            keep_intervals: false,
            interval_hists: BTreeMap::new(),
            cursor_i: 0,
            cursor_end: interval_for(scenario),
        }
    }

    #[inline]
    fn idx(&mut self, t: u64) -> usize {
        if t >= self.cursor_end {
            self.cursor_i = (t / self.interval) as usize;
            // the clock saturates at u64::MAX (years of wrap-up in a
            // queue), and so does the end of its interval
            self.cursor_end = (self.cursor_i as u64 + 1).saturating_mul(self.interval);
        }
        self.cursor_i
    }

    /// Interval `i`'s row (past the last one, a row that is not kept).
    #[inline(always)]
    fn row(&mut self, i: usize) -> &mut Row {
        if self.rows.len() <= i {
            return self.grow(i);
        }
        &mut self.rows[i]
    }

    #[cold]
    fn grow(&mut self, i: usize) -> &mut Row {
        if i as u64 >= MAX_INTERVALS {
            self.past_end = Row::default();
            return &mut self.past_end;
        }
        self.rows.resize(i + 1, Row::default());
        &mut self.rows[i]
    }

    /// Close the interval being filled if `i` is past it.
    #[inline(always)]
    fn roll_to(&mut self, i: usize) {
        if i > self.current_interval {
            self.roll(i);
        }
    }

    /// [`SeriesRecorder::roll_to`] past the interval being filled.
    #[inline(never)]
    fn roll(&mut self, i: usize) {
        // the quantile and clearing pass over the buckets: most of a short
        // run's cost if paid for each of its empty intervals too
        let mut p = None;
        if !self.current.is_empty() {
            let template = interval_histogram();
            p = Some(self.current.value_at_quantile(0.95, template) as f64 / 1e3);
            if self.keep_intervals && (self.current_interval as u64) < MAX_INTERVALS {
                let h = self.current.to_histogram(template);
                let v = crate::tally::hist_value(Some(&h), 0, h.max());
                self.interval_hists.insert(self.current_interval, v);
            }
            self.current.clear();
        }
        if (self.current_interval as u64) < MAX_INTERVALS {
            if self.p95.len() <= self.current_interval {
                self.p95.resize(self.current_interval + 1, None);
            }
            self.p95[self.current_interval] = p;
        }
        self.current_interval = i;
    }

    fn queue_change(&mut self, t: u64, account: usize, up: bool) {
        self.levels[account].queue.add(t, if up { 1 } else { -1 }, self.interval);
    }

    /// The interval a session that arrived at `arrived_us` counts in.
    fn arrival_idx(&self, arrived_us: u64) -> usize {
        // most sessions arrived in the cursor's interval: no division
        if arrived_us < self.cursor_end && arrived_us.saturating_add(self.interval) >= self.cursor_end {
            return self.cursor_i;
        }
        (arrived_us / self.interval) as usize
    }

    /// An agent's load changed, its status not (two a session): its
    /// sessions move within the busy slots if it is online, else within
    /// those held after going off line, and it may become busy or idle.
    #[inline(always)]
    fn load_change(&mut self, t: u64, agent: usize, load: u32) {
        let a = &mut self.agents[agent];
        let old = std::mem::replace(&mut a.load, load);
        if old == load {
            return;
        }
        let (iv, l) = (self.interval, &mut self.levels[a.account as usize]);
        let delta = i64::from(load) - i64::from(old);
        if a.online { &mut l.slots_busy } else { &mut l.held_offline }.add(t, delta, iv);
        // the loads differ: busy changes if either is 0
        if old == 0 || load == 0 {
            l.busy.add(t, if old == 0 { 1 } else { -1 }, iv);
        }
    }

    /// An agent came on or went off line, its load unchanged: its slots join
    /// or leave the online ones, and its sessions move between the busy
    /// slots and those held after going off line.
    fn status_change(&mut self, t: u64, agent: usize, online: bool) {
        let a = &mut self.agents[agent];
        if a.online == online {
            return;
        }
        a.online = online;
        let (iv, l) = (self.interval, &mut self.levels[a.account as usize]);
        let sign = if online { 1 } else { -1 };
        l.online.add(t, sign, iv);
        l.slots_online.add(t, sign * i64::from(a.cap), iv);
        if a.load > 0 {
            let load = sign * i64::from(a.load);
            l.slots_busy.add(t, load, iv);
            l.held_offline.add(t, -load, iv);
        }
    }

    /// Keep each interval's queue-wait histogram, for a state that merges.
    pub fn keep_interval_histograms(&mut self) {
        self.keep_intervals = true;
    }

    /// Integrate every level up to `end_us`, close the interval being
    /// filled, and put the instantaneous state (levels, agents' status, the
    /// interval cursor) back as a new recorder has it: what is left only
    /// adds up, so settled recorders of shards merge by
    /// [`crate::tally::merge`]. Finishing a settled recorder at `end_us`
    /// gives what finishing it unsettled would have.
    pub fn settle(&mut self, end_us: u64) {
        let iv = self.interval;
        for l in self.levels.iter_mut().flat_map(AccountLevels::each) {
            l.advance(end_us, iv);
            l.close();
            l.count = 0;
            l.since = 0;
            l.since_i = 0;
        }
        self.roll_to(usize::MAX);
        if self.keep_intervals {
            // derived from the kept histograms when finished
            self.p95.clear();
        }
        self.current_interval = 0;
        self.cursor_i = 0;
        self.cursor_end = iv;
        for a in &mut self.agents {
            (a.load, a.online) = (0, false);
        }
    }

    /// Which of the settings a run starts with (interval, warm-up, the
    /// service-level threshold, the entries' and accounts' names) differs
    /// in `other`. A merge adds numbers relative to a fresh state, so a
    /// shard file whose interval was edited to 0 merged into one that
    /// divided by zero.
    pub(crate) fn setup_differs(&self, other: &SeriesRecorder) -> Option<&'static str> {
        [
            ("series interval", self.interval != other.interval),
            ("series warm-up", self.warmup != other.warmup),
            ("series service-level threshold", self.sl_us != other.sl_us),
            ("series entry names", self.entry_names != other.entry_names),
            ("series account names", self.account_names != other.account_names),
        ]
        .into_iter()
        .find_map(|(what, differs)| differs.then_some(what))
    }

    /// Its records per agent, taken out: a merge adds them up typed
    /// (`metrics::StateMerge`).
    pub(crate) fn take_agents(&mut self) -> Vec<AgentSeries> {
        std::mem::take(&mut self.agents)
    }

    /// Put back records per agent taken out by [`SeriesRecorder::take_agents`].
    pub(crate) fn set_agents(&mut self, agents: Vec<AgentSeries>) {
        self.agents = agents;
    }

    /// Close every series at `end_us`.
    pub fn finish(mut self, end_us: u64) -> SeriesData {
        let end = end_us.max(1).min(MAX_INTERVALS.saturating_mul(self.interval));
        let n = end.div_ceil(self.interval) as usize;
        self.roll_to(usize::MAX);
        let mut p95 = std::mem::take(&mut self.p95);
        if self.keep_intervals {
            p95 = vec![None; n];
            for (&i, v) in &self.interval_hists {
                if let (Some(slot), Ok((Some(h), _, _))) = (p95.get_mut(i), crate::tally::hist_parts(v)) {
                    *slot = p95_ms(&h);
                }
            }
        }
        p95.resize(n, None);
        let iv = self.interval;
        let pad = |mut v: Vec<u64>| {
            v.resize(n, 0);
            v
        };
        let mut levels = std::mem::take(&mut self.levels);
        let names = &self.account_names;
        let mut by_account = |level: fn(&mut AccountLevels) -> &mut Level| -> BTreeMap<String, Vec<f64>> {
            names
                .iter()
                .cloned()
                .zip(levels.iter_mut().map(|a| std::mem::take(level(a)).means(end, iv)))
                .collect()
        };
        let rows = std::mem::take(&mut self.rows);
        let column = |f: fn(&Row) -> u64| pad(rows.iter().map(f).collect());
        let (offered, within_t, immediate) =
            (column(|r| r.offered), column(|r| r.within_t), column(|r| r.immediate));
        let answered_by_arrival = column(|r| r.answered_by_arrival);
        let abandoned_by_arrival = column(|r| r.abandoned_by_arrival);
        let mut queue_wait_sum_ms: Vec<f64> = rows.iter().map(|r| r.wait_sum_ms).collect();
        queue_wait_sum_ms.resize(n, 0.0);
        SeriesData {
            interval_s: iv as f64 / 1e6,
            warmup_s: self.warmup as f64 / 1e6,
            arrivals: self.entry_names.iter().cloned().zip(self.arrivals.iter().cloned().map(pad)).collect(),
            queue_len: by_account(|a| &mut a.queue),
            agents_online: by_account(|a| &mut a.online),
            agents_busy: by_account(|a| &mut a.busy),
            answered: column(|r| r.answered),
            abandoned: column(|r| r.abandoned),
            queue_wait_p95_ms: p95,
            service_level_s: self.sl_us as f64 / 1e6,
            service_level: shares(&within_t, &offered),
            abandon_rate: shares(&abandoned_by_arrival, &offered),
            offered,
            within_t,
            immediate,
            answered_by_arrival,
            abandoned_by_arrival,
            queue_wait_sum_ms,
            slots_online: by_account(|a| &mut a.slots_online),
            slots_busy: by_account(|a| &mut a.slots_busy),
            held_offline: by_account(|a| &mut a.held_offline),
        }
    }
}

impl Observer for SeriesRecorder {
    #[inline(always)]
    fn observe(&mut self, obs: Obs) {
        match obs {
            Obs::Entered { s, .. } => {
                let i = self.idx(s.arrived_us);
                bump(&mut self.arrivals[s.entry as usize], i);
                self.row(i).offered += 1;
            }
            Obs::Queued { t, s } => self.queue_change(t, s.account as usize, true),
            // a session the bot resolved never reached people: by arrival,
            // the human figures are over the others
            Obs::BotEnded { s, .. } => {
                let a = self.arrival_idx(s.arrived_us);
                if let Some(r) = self.rows.get_mut(a) {
                    r.offered -= 1;
                }
            }
            Obs::Assigned { t, s, from_pool, .. } => {
                if from_pool {
                    self.queue_change(t, s.account as usize, false);
                }
                // the series are of customers' sessions: a transferred
                // handle changes the queue, not the answered count
                if s.handle > 0 {
                    return;
                }
                let i = self.idx(t);
                self.roll_to(i);
                let wait = t.saturating_sub(s.human_us);
                self.current.record(wait);
                self.row(i).answered += 1;
                let a = self.arrival_idx(s.arrived_us);
                let within = u64::from(wait <= self.sl_us);
                let r = self.row(a);
                r.answered_by_arrival += 1;
                // through i64: one instruction (a wait is far below 2⁶³ µs)
                r.wait_sum_ms += wait as i64 as f64 / 1e3;
                r.within_t += within;
                r.immediate += u64::from(!from_pool);
            }
            Obs::Abandoned { t, s } => {
                self.queue_change(t, s.account as usize, false);
                if s.handle > 0 {
                    return;
                }
                let i = self.idx(t);
                self.row(i).abandoned += 1;
                let a = self.arrival_idx(s.arrived_us);
                self.row(a).abandoned_by_arrival += 1;
            }
            Obs::AgentLoad { t, agent, load } => self.load_change(t, agent as usize, load),
            Obs::AgentOnline { t, agent, online } => self.status_change(t, agent as usize, online),
            Obs::Rejected { .. }
            | Obs::Message { .. }
            | Obs::Reply { .. }
            | Obs::BotReply { .. }
            | Obs::Handoff { .. }
            | Obs::Transferred { .. }
            | Obs::Ended { .. }
            | Obs::Unfinished { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::SessionInfo;

    #[test]
    fn levels_are_time_averaged_per_interval() {
        let mut l = Level::default();
        l.set(0, 2, 10);
        l.set(5, 4, 10); // [0,5) at 2, [5,15) at 4
        l.set(15, 0, 10);
        assert_eq!(l.means(20, 10), [3.0, 2.0]);
    }

    #[test]
    fn levels_spanning_many_intervals_match_a_brute_force_integral() {
        // changes within an interval, across one boundary, across several,
        // and exactly on boundaries
        let changes = [(3, 1), (4, 5), (9, 2), (10, 0), (47, 3), (50, 7), (58, 1)];
        let mut l = Level::default();
        for &(t, v) in &changes {
            l.set(t, v, 10);
        }
        let end = 65;
        let mut want = vec![0.0; 7];
        for (k, &(t, v)) in changes.iter().enumerate() {
            let until = changes.get(k + 1).map_or(end, |c| c.0);
            for us in t..until {
                want[(us / 10) as usize] += v as f64;
            }
        }
        for (i, w) in want.iter_mut().enumerate() {
            *w /= (end.min((i as u64 + 1) * 10) - i as u64 * 10) as f64;
        }
        let got = l.means(end, 10);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{got:?} != {want:?}");
        }
    }

    /// Slots online, busy and held after going off line, per interval, as
    /// sums of the agents' states second by second, through a random run
    /// of loads changing (above a cap too) and agents coming and going.
    #[test]
    fn slot_levels_match_a_brute_force_sum_over_the_agents() {
        let toml = "name = \"slots\"\nduration = \"100s\"\nseries_interval = \"10s\"\n\
            [[account]]\nname = \"a\"\n[[account]]\nname = \"b\"\n\
            [[agents]]\naccount = \"a\"\ncount = 3\nmax_concurrent = 2\nreply_delay = \"1s\"\n\
            [[agents]]\naccount = \"b\"\ncount = 2\nmax_concurrent = 3\nreply_delay = \"1s\"\n\
            [[entry]]\naccount = \"a\"\nscene = \"web\"\nrate = \"1/s\"\n\
            [[entry]]\naccount = \"b\"\nscene = \"app\"\nrate = \"1/s\"\n";
        let sc = Scenario::parse(toml, "slots.toml").expect("test scenario");
        let (account, cap) = ([0usize, 0, 0, 1, 1], [2u64, 2, 2, 3, 3]);
        let mut rec = SeriesRecorder::new(&sc);
        let (mut load, mut online) = ([0u64; 5], [false; 5]);
        // each second: [online slots, busy slots, held off line] per account
        let mut want = vec![[[0.0f64; 3]; 2]; 100];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for sec in 0..100u64 {
            // changes at the second's start; the last state holds through it
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (agent, t) = ((x % 5) as usize, sec * 1_000_000);
                if (x >> 8) % 4 == 0 {
                    online[agent] = !online[agent];
                    rec.observe(Obs::AgentOnline { t, agent: agent as u32, online: online[agent] });
                } else {
                    load[agent] = (x >> 16) % (cap[agent] + 2);
                    rec.observe(Obs::AgentLoad { t, agent: agent as u32, load: load[agent] as u32 });
                }
            }
            for a in 0..5 {
                let w = &mut want[sec as usize][account[a]];
                if online[a] {
                    w[0] += cap[a] as f64;
                    w[1] += load[a] as f64;
                } else {
                    w[2] += load[a] as f64;
                }
            }
        }
        let data = rec.finish(100_000_000);
        for (acc, name) in ["a", "b"].into_iter().enumerate() {
            for (k, series) in
                [&data.slots_online, &data.slots_busy, &data.held_offline].into_iter().enumerate()
            {
                let got = &series[name];
                assert_eq!(got.len(), 10);
                for (i, g) in got.iter().enumerate() {
                    let w: f64 = (i * 10..i * 10 + 10).map(|s| want[s][acc][k]).sum::<f64>() / 10.0;
                    assert!((g - w).abs() < 1e-9, "account {name}, level {k}, interval {i}: {g} != {w}");
                }
            }
        }
    }

    /// A run writes every row over the same intervals, so a file whose
    /// rows differ in length was edited (or cut) and is refused, naming
    /// the row; rows an older file did not have may be absent.
    #[test]
    fn rows_of_unequal_lengths_are_refused() {
        let toml = "name = \"rows\"\nduration = \"10m\"\nseries_interval = \"1m\"\n\
            [[account]]\nname = \"a\"\n[[agents]]\ncount = 1\nreply_delay = \"1s\"\n\
            [[entry]]\nscene = \"web\"\nrate = \"1/s\"";
        let sc = Scenario::parse(toml, "rows.toml").expect("test scenario");
        let mut rec = SeriesRecorder::new(&sc);
        rec.observe(Obs::AgentOnline { t: 0, agent: 0, online: true });
        let good = serde_json::to_value(rec.finish(600_000_000)).unwrap();
        assert_eq!(SeriesData::from_json(&good.to_string()).map(|_| ()), Ok(()));
        let shorter = |v: &mut serde_json::Value| {
            v.as_array_mut().unwrap().pop();
        };
        for (row, want) in [
            ("/abandoned", "abandoned has 9 intervals, answered 10"),
            ("/queue_wait_p95_ms", "queue_wait_p95_ms has 9 intervals"),
            ("/arrivals/web", "arrivals.web has 9 intervals"),
            ("/queue_len/a", "queue_len.a has 9 intervals"),
            ("/agents_busy/a", "agents_busy.a has 9 intervals"),
            ("/slots_online/a", "slots_online.a has 9 intervals"),
            ("/held_offline/a", "held_offline.a has 9 intervals"),
            ("/service_level", "service_level has 9 intervals"),
            ("/answered", "abandoned has 10 intervals, answered 9"),
        ] {
            let mut bad = good.clone();
            shorter(bad.pointer_mut(row).unwrap());
            let e = SeriesData::from_json(&bad.to_string()).expect_err(row);
            assert!(e.starts_with(want), "{row}: {e}");
        }
        // an older file, without the rows by arrival or the levels of slots
        let mut old = good.clone();
        let by_arrival = ["offered", "within_t", "immediate", "answered_by_arrival", "abandoned_by_arrival"];
        let later = ["queue_wait_sum_ms", "service_level", "abandon_rate", "slots_online", "held_offline"];
        for row in by_arrival.into_iter().chain(later) {
            old.as_object_mut().unwrap().remove(row);
        }
        assert_eq!(SeriesData::from_json(&old.to_string()).map(|_| ()), Ok(()));
    }

    #[test]
    fn a_drain_longer_than_the_series_is_cut_at_their_last_interval() {
        // a 10 s day in 1 s intervals: the series hold 4000 of them
        let toml = "name = \"cut\"\nduration = \"10s\"\nseries_interval = \"1s\"\n\
            [[account]]\nname = \"a\"\n[[agents]]\ncount = 1\nreply_delay = \"1s\"\n\
            [[entry]]\nscene = \"web\"\nrate = \"1/s\"";
        let sc = Scenario::parse(toml, "cut.toml").expect("test scenario");
        let mut rec = SeriesRecorder::new(&sc);
        let s = SessionInfo::new(0, 0, 0);
        let late = SessionInfo::new(5_000_000, 0, 0);
        let entered =
            |s| Obs::Entered { s, returning: false, sticky_eligible: false, msgtype: Default::default() };
        rec.observe(Obs::AgentOnline { t: 0, agent: 0, online: true });
        rec.observe(entered(s));
        rec.observe(Obs::AgentLoad { t: 0, agent: 0, load: 1 });
        rec.observe(entered(late));
        rec.observe(Obs::Queued { t: 5_000_000, s: late });
        // the first session ends, and the waiting one is answered, a year on
        let year = 365 * 86_400_000_000;
        rec.observe(Obs::AgentLoad { t: year, agent: 0, load: 0 });
        rec.observe(Obs::Assigned { t: year, s: late, agent: 0, kept: false, from_pool: true });
        rec.observe(Obs::AgentLoad { t: year, agent: 0, load: 1 });
        let data = rec.finish(year + 1);
        let n = MAX_INTERVALS as usize;
        assert_eq!((data.answered.len(), data.queue_len["a"].len(), data.queue_wait_p95_ms.len()), (n, n, n));
        assert_eq!(data.offered[..2], [1, 0]);
        assert_eq!(data.offered[5], 1);
        // up to the cut, the levels are what they were: busy throughout,
        // one waiting from 5 s on; the answer after the cut is not in its
        // interval, but its customer's interval counts it answered, as the
        // summary does
        assert!(data.agents_busy["a"].iter().all(|&b| b == 1.0));
        assert_eq!(data.queue_len["a"][4..6], [0.0, 1.0]);
        assert_eq!(data.queue_len["a"][n - 1], 1.0);
        assert_eq!(data.answered.iter().sum::<u64>(), 0);
        assert_eq!(data.answered_by_arrival[5], 1);
        assert!(data.queue_wait_p95_ms.iter().all(Option::is_none));
    }

    #[test]
    fn a_partial_last_interval_is_averaged_over_its_own_length() {
        let mut l = Level::default();
        l.set(0, 1, 10);
        assert_eq!(l.means(15, 10), [1.0, 1.0]);
    }
}
