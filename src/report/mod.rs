//! Everything a run leaves behind, rendered from one typed model
//! ([`Measured`](crate::metrics::Measured)): the terminal summary, `summary.json`, `series.json`,
//! `histograms.json`, charts, `report.html`, JUnit XML and HdrHistogram
//! exports. Renderers take the model and a writer; [`folder`] is the only
//! part that touches the file system.

pub mod charts;
pub mod compare;
pub mod folder;
pub mod hgrm;
pub mod html;
pub mod junit;
pub mod plan;
pub mod sweep;
mod terminal;

pub use terminal::terminal;
