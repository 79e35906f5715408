//! The sync engine: when to sync (schedule), what to write (plan), the
//! jobs that fetch, overlay, push and report (run, reconcile), and what
//! the PR shows (report).

pub mod adopt;
pub mod errors;
pub mod follow;
pub mod intake;
pub mod ops;
pub mod outcome;
mod ownership;
pub mod plan;
pub mod poll;
pub mod publish;
pub mod reconcile;
pub mod remote;
pub mod report;
pub mod run;
pub mod schedule;
pub mod upstream;
pub mod write;
