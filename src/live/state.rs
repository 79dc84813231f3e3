//! What a live run measured besides the observation stream, as state that
//! merges (`crate::tally`): the driver's counts and histograms, the calls
//! per endpoint, the sessions open at the end. [`LiveState::figures`]
//! turns it into the live parts of the summary, for a run and for merged
//! shards alike.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::LiveCounts;
use super::http::Endpoint;
use crate::metrics::LiveFigures;
use crate::scenario::Scenario;
use crate::summary::LiveInfo;

/// The live engine's own measurements, settled at the end of a run.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LiveState {
    /// The driver's counts and histograms.
    pub counts: LiveCounts,
    /// Calls and errors per endpoint of the target.
    pub http: BTreeMap<String, Endpoint>,
    /// Sessions counted that an agent held when the run stopped.
    pub open_at_end: u64,
    /// Sessions the run's servicers already held when it began.
    pub busy_at_start: u64,
    /// Calls in flight when the run stopped waiting for answers.
    #[serde(default)]
    pub calls_cut_at_end: u64,
    /// How the summary names the target.
    pub target: String,
    /// Scenario time per wall time.
    pub time_scale: f64,
}

impl LiveState {
    /// The state a run against `target` at `time_scale` starts with.
    pub fn fresh(target: &str, time_scale: f64) -> LiveState {
        LiveState { target: target.to_owned(), time_scale, ..Default::default() }
    }

    /// The share of the run its driver was behind its own schedule
    /// (`live.saturated`), if the probe ticked.
    pub fn saturated(&self) -> Option<f64> {
        self.counts.probe.behind_share()
    }

    /// The live figures of a run of `sc` that stopped at `end_us` (scenario
    /// time) after `wall_s` seconds of wall time.
    pub fn figures(self, sc: &Scenario, end_us: u64, wall_s: f64) -> LiveFigures {
        let counts = self.counts;
        let (endpoints, http_histograms) = super::http::summarise(&self.http);
        let window_us = end_us.min(sc.duration_us).saturating_sub(sc.warmup_us);
        let window_s = window_us as f64 / 1e6 / self.time_scale;
        let rate = |n: u64| (window_s > 0.0).then(|| n as f64 / window_s);
        // in scenario ms: the run's own overhead × the scale
        let immediate_p50 = counts.immediate.stats_ms().p50;
        LiveFigures {
            http: endpoints,
            http_histograms,
            sent: counts.sent,
            delivered: counts.delivered,
            lost: counts.lost,
            duplicated: counts.duplicated,
            reordered: counts.reordered,
            late_actions: counts.late,
            lag: counts.lag,
            // delivery is measured in wall time and reported as such (not scaled)
            to_agent: counts.to_agent,
            to_customer: counts.to_customer,
            info: LiveInfo {
                target: self.target,
                time_scale: self.time_scale,
                wall_s,
                messages_per_s: rate(counts.window_sent),
                replies_per_s: rate(counts.window_replies),
                open_at_end: self.open_at_end,
                gave_up: counts.gave_up,
                shed: counts.shed,
                busy_at_start: self.busy_at_start,
                calls_cut_at_end: self.calls_cut_at_end,
                missed: counts.missed,
                overhead_ms: immediate_p50.map(|ms| ms / self.time_scale),
                distortion: immediate_p50
                    .filter(|_| sc.service_level_us > 0)
                    .map(|ms| ms / (sc.service_level_us as f64 / 1e3)),
                reconnects: counts.reconnects,
                saturated: counts.probe.behind_share(),
                driver_lag_ms: counts.probe.ticks.stats_ms(),
            },
        }
    }
}
