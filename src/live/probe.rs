//! The driver's own lag: a task that asks the driver's runtime to wake it
//! every [`PERIOD`] and records how late it woke.
//!
//! A driver short of CPU (a rate beyond what it can do, a busy core, a
//! neighbour taking the CPU) falls behind in every task at once; the late
//! replies and deliveries it then measures look like a slow target. A
//! target's slowness cannot make this probe late: while the driver waits
//! for answers its runtime is idle, and the probe wakes on time. Its cost
//! is one timer wake-up per period.
//!
//! Lateness is counted as wrk2 counts latency: from the intended time of
//! every tick, so that one stall of a second shows as the second it lasted
//! (every tick it covered, each as late as it was), not as one late tick
//! among thousands. The ticks are spread evenly over wall time, so the
//! share of late ticks is the share of the run the driver was behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Timebase;
use crate::metrics::Hist;

/// How often the probe asks to wake (wall time). A wake-up of an idle
/// runtime costs about 40 µs of CPU on this project's 2-core VM (0.4 % of
/// a core at this period, 0.7 % at 5 ms); on a busy one the cost was lost
/// in the noise. The share behind is counted over time, whatever the
/// period: a shorter one only makes it less noisy.
pub(crate) const PERIOD: Duration = Duration::from_millis(10);

/// A tick served later than this is counted behind: the lateness at which
/// `late_actions` counts a customer's action late.
pub(crate) const BEHIND: Duration = Duration::from_millis(10);

/// What the probe measured, settled into the run's counts (it merges with
/// other shards' as they do: `crate::tally`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Lag {
    /// How late each tick was served [wall µs].
    pub(crate) ticks: Hist,
    /// Ticks served more than [`BEHIND`] late.
    pub(crate) behind: u64,
}

impl Lag {
    /// The share of the ticks served more than [`BEHIND`] late: of the run's
    /// wall time, how much the driver was behind. `None` with no tick.
    pub(crate) fn behind_share(&self) -> Option<f64> {
        let n = self.ticks.count();
        (n > 0).then(|| self.behind as f64 / n as f64)
    }
}

/// The ticks' schedule and what was measured of it; time comes in as wall
/// µs since the run's start.
pub(crate) struct Ticks {
    period_us: u64,
    /// When the next tick is due.
    next_us: u64,
    lag: Lag,
}

impl Ticks {
    /// Ticks every `period`, the first one period after `from_us`.
    pub(crate) fn new(period: Duration, from_us: u64) -> Ticks {
        let period_us = (period.as_micros() as u64).max(1);
        Ticks { period_us, next_us: from_us + period_us, lag: Lag::default() }
    }

    /// When the next tick is due [wall µs].
    pub(crate) fn due(&self) -> u64 {
        self.next_us
    }

    /// The probe woke at `now_us`: every tick due by then is served now.
    pub(crate) fn woke(&mut self, now_us: u64) {
        let behind = BEHIND.as_micros() as u64;
        while self.next_us <= now_us {
            let late = now_us - self.next_us;
            self.lag.ticks.record(late);
            self.lag.behind += u64::from(late > behind);
            self.next_us += self.period_us;
        }
    }

    pub(crate) fn into_lag(self) -> Lag {
        self.lag
    }
}

/// Tick on the current runtime until `stop`, from now (`tb`'s wall time).
pub(crate) async fn run(tb: Timebase, stop: &AtomicBool) -> Lag {
    let mut ticks = Ticks::new(PERIOD, tb.wall_us());
    while !stop.load(Ordering::SeqCst) {
        let at = tb.start + Duration::from_micros(ticks.due());
        tokio::time::sleep_until(at.into()).await;
        ticks.woke(tb.wall_us());
    }
    ticks.into_lag()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver on time: every tick counted, none behind.
    #[test]
    fn ticks_served_on_time_are_not_behind() {
        let mut t = Ticks::new(Duration::from_millis(5), 1_000);
        for k in 1..=100 {
            // served within the timer's millisecond
            t.woke(1_000 + k * 5_000 + 900);
        }
        let lag = t.into_lag();
        assert_eq!((lag.ticks.count(), lag.behind), (100, 0));
        assert_eq!(lag.behind_share(), Some(0.0));
    }

    /// One stall of 1 s in a run of 2 s: the ticks it covered are each as
    /// late as they were (1 s down to 0), so the share behind is the stall's
    /// time past the 10 ms allowance, not one tick in 400.
    #[test]
    fn a_stall_counts_for_every_tick_it_covered() {
        let mut t = Ticks::new(Duration::from_millis(5), 0);
        let mut now = 0;
        while now < 2_000_000 {
            // served at once, but for one wake-up a second late
            now = if t.due() == 500_000 { 1_500_000 } else { t.due() };
            t.woke(now);
        }
        let lag = t.into_lag();
        assert_eq!(lag.ticks.count(), 400);
        assert_eq!(lag.ticks.stats_ms().max, Some(1_000.0));
        // ticks due at 0.5 s … 1.49 s were more than 10 ms late
        assert_eq!(lag.behind, 198);
        let share = lag.behind_share().unwrap();
        assert!((share - 0.99 / 2.0).abs() < 0.01, "{share}");
    }

    /// No tick, no share (a run stopped before its schedule began).
    #[test]
    fn no_tick_no_share() {
        assert_eq!(Lag::default().behind_share(), None);
    }
}
