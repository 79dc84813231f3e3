//! Everything a run leaves behind, rendered from one typed model
//! ([`RunData`]): the terminal summary, `summary.json`, `series.json`,
//! `histograms.json`, charts, `report.html`, JUnit XML and HdrHistogram
//! exports. Renderers take the model and a writer; [`folder`] is the only
//! part that touches the file system.

pub mod charts;
pub mod folder;
pub mod hgrm;
pub mod html;
pub mod junit;
pub mod sweep;
mod terminal;

pub use terminal::terminal;

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::series::SeriesData;
use crate::summary::Summary;

/// What a run measured, as kept in its report folder.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The summary (`summary.json`).
    pub summary: Summary,
    /// The time series (`series.json`).
    pub series: SeriesData,
    /// Latency histograms [µs] (`histograms.json`), keyed `queue_wait`, …,
    /// `by_entry.NAME.queue_wait`.
    pub histograms: BTreeMap<String, Histogram<u64>>,
}

impl From<crate::metrics::Measured> for RunData {
    fn from(m: crate::metrics::Measured) -> RunData {
        RunData { summary: m.summary, series: m.series, histograms: m.histograms }
    }
}

/// A duration in ms as a person reads it: `850ms`, `25.9s`, `4m12s`.
pub fn human_ms(v: Option<f64>) -> String {
    let Some(ms) = v else { return "—".into() };
    if ms == 0.0 {
        "0s".into()
    } else if ms < 1.0 {
        format!("{:.0}µs", ms * 1e3)
    } else if ms < 1_000.0 {
        format!("{ms:.0}ms")
    } else if ms < 60_000.0 {
        format!("{:.1}s", ms / 1e3)
    } else if ms < 3_600_000.0 {
        let s = (ms / 1e3).round() as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = (ms / 60e3).round() as u64;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_ms(Some(0.5)), "500µs");
        assert_eq!(human_ms(Some(850.0)), "850ms");
        assert_eq!(human_ms(Some(25_900.0)), "25.9s");
        assert_eq!(human_ms(Some(252_000.0)), "4m12s");
        assert_eq!(human_ms(Some(9_000_000.0)), "2h30m");
        assert_eq!(human_ms(None), "—");
    }
}
