//! The zfsrepl daemon: cron-free scheduling of snapshot, replicate, prune and
//! clone jobs from policies. This crate wraps the synchronous `zfsrepl-core`
//! with tokio (core work runs on blocking threads).

pub mod metrics;
pub mod notify;
pub mod protect;
pub mod state;

pub use zfsrepl_core as core;
