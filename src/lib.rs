//! graft: keeps generated infrastructure code under Git review.
//!
//! The binary is a thin shell over this library so the integration tests
//! drive the same router, store and workers that `graft serve` runs.

pub mod app;
pub mod cli;
pub mod commands;
pub mod context;
pub mod crypto;
pub mod events;
pub mod file_set;
pub mod forge;
pub mod git;
pub mod http;
pub mod ids;
pub mod jobs;
pub mod metrics;
pub mod periodic;
pub mod recovery;
pub mod retention;
pub mod signature;
pub mod slash;
pub mod store;
pub mod sync;
pub mod validation;
pub mod worker;
