//! kfsim: load testing and queueing simulation for customer-service reception
//! systems of the WeChat Customer Service (微信客服) kind.
//!
//! # Layout
//! The modules stack one way: each uses only those in the layers below it
//! (`tests/layering.rs` checks this on every build of the tests).
//!
//! 1. [`scenario`] parses and validates a scenario file into a checked model
//!    (with spans for errors); [`observe`] is the stream of observations every
//!    engine emits, with the engine kind, progress and run statistics;
//!    [`hdr`] counts samples in hdrhistogram's layout at a few instructions
//!    each; [`files`] writes a file whole (a temporary renamed into place).
//! 2. [`workload`] turns a scenario into seeded samplers; [`reception`] is the
//!    routing core (policies, caps, the waiting pool): pure, no I/O, no clock —
//!    time is an argument; [`theory`] has the queueing formulas (Erlang B, C,
//!    A) the simulator is checked against; [`stats`] the quantiles and
//!    bounded confidence intervals of planning and comparison; [`tally`]
//!    the structural merge of measured state that adds up (shards).
//! 3. [`summary`] is the typed report model written as `summary.json`;
//!    [`series`] records the time series.
//! 4. [`metrics`] folds observations into histograms, counters and the
//!    summary.
//! 5. The engines: [`sim`] in virtual time; [`live`] in wall-clock time over
//!    HTTP against a URL; [`service`], the reference KF service.
//! 6. What is made of runs: [`gate`] (thresholds bound to the summary's
//!    metric paths), [`compare`], [`sweep`] and [`plan`]; [`merge`], the
//!    shard files and the merge of a run's, sweep's or plan's shards.
//! 7. [`report`]: every rendering, of runs, sweeps, plans and comparisons
//!    (`report::folder` writes the folders).
//! 8. [`cli`], the command line: it alone assembles a run, starts the
//!    embedded service, reads the environment and signals, and maps
//!    outcomes to exit codes.
//!
//! Time enters the core as an argument. The wall clock is read only at the
//! edges — the command line, the live engine (whose business is real time),
//! and the service's `SystemClock` — and clippy's `disallowed_methods`
//! (configured in `clippy.toml`) refuses it anywhere else.

#![warn(missing_docs)]
#![warn(clippy::disallowed_methods, clippy::print_stdout, clippy::print_stderr)]

pub mod cli;
pub mod compare;
pub mod files;
pub mod gate;
pub mod hdr;
pub mod json_words;
pub mod live;
pub mod merge;
pub mod metrics;
pub mod observe;
pub mod plan;
pub mod reception;
pub mod report;
pub mod scenario;
pub mod series;
pub mod service;
pub mod sim;
pub mod stats;
pub mod summary;
pub mod sweep;
pub mod tally;
pub mod theory;
pub mod workload;
