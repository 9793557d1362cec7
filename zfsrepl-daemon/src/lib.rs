//! The zfsrepl daemon: cron-free scheduling of snapshot, replicate, prune and
//! clone jobs from policies. This crate wraps the synchronous `zfsrepl-core`
//! with tokio. The scheduler lands with the daemon issue; for now it exposes
//! the core it builds on.

pub use zfsrepl_core as core;
