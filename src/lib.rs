//! kfsim: load testing and queueing simulation for customer-service reception
//! systems of the WeChat Customer Service (微信客服) kind.
//!
//! # Layout
//! The flow of a run is the order of the modules:
//! - [`scenario`] parses and validates a scenario file into a checked model;
//! - [`workload`] turns it into seeded samplers: arrivals, customer and agent
//!   behaviour;
//! - [`reception`] is the routing core (policies, caps, the waiting pool):
//!   pure, no I/O, no clock — time is an argument;
//! - [`sim`] is the discrete-event engine in virtual time;
//! - both engines emit one stream of [`observe::Obs`] events that
//!   [`metrics`] folds into histograms and counters;
//! - [`summary`] is the typed report model written as `summary.json`, and
//!   [`report`] renders it for people;
//! - [`theory`] has the queueing formulas (Erlang B, C, A) the simulator is
//!   checked against.
//!
//! The binary (`src/main.rs` and [`cli`]) only parses arguments, reads the
//! clock and the file system, and maps errors to exit codes.

pub mod cli;
pub mod cli_plan;
pub mod compare;
pub mod gate;
pub mod live;
pub mod metrics;
pub mod observe;
pub mod plan;
pub mod reception;
pub mod report;
pub mod scenario;
pub mod series;
pub mod service;
pub mod sim;
pub mod summary;
pub mod sweep;
pub mod theory;
pub mod workload;
