//! Everything a run leaves behind, rendered from one typed model
//! ([`Measured`](crate::metrics::Measured)): the terminal summary, `summary.json`, `series.json`,
//! `histograms.json`, charts, `report.html`, JUnit XML and HdrHistogram
//! exports. Renderers take the model and a writer; [`folder`] is the only
//! part that touches the file system.

pub mod charts;
pub mod compare;
pub mod flow;
pub mod folder;
pub mod hgrm;
pub mod html;
pub mod junit;
pub mod plan;
pub mod sweep;
mod terminal;

pub use terminal::{DISTORTION_WARN, terminal};

use crate::summary::Summary;

/// A scenario setting given in seconds, as the scenario file writes it
/// (`30m`, `7h30m`, `20s`): one format for settings everywhere. Measured
/// times use [`crate::scenario::units::human_ms`].
pub fn setting(s: f64) -> String {
    crate::scenario::units::format_seconds(s)
}

/// The arrival window as every output says it: "8h of arrivals, the first
/// 30m warm-up (not counted)".
pub fn arrival_window(s: &Summary) -> String {
    if s.scenario.warmup_s > 0.0 {
        format!(
            "{} of arrivals, the first {} warm-up (not counted)",
            setting(s.scenario.duration_s),
            setting(s.scenario.warmup_s)
        )
    } else {
        format!("{} of arrivals", setting(s.scenario.duration_s))
    }
}
