//! graft: keeps generated infrastructure code under Git review.
//!
//! The binary is a thin shell over this library so the integration tests
//! drive the same router, store and workers that `graft serve` runs.

pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod context;
pub mod crypto;
pub mod events;
pub mod file_set;
pub mod forge;
pub mod git;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod metrics;
pub mod periodic;
pub mod push;
pub mod recovery;
pub mod remote;
pub mod retention;
pub mod server;
pub mod signature;
pub mod slash;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod validation;
pub mod worker;
