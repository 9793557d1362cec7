//! The zfsrepl daemon: cron-free scheduling of snapshot, replicate, prune and
//! clone jobs from policies. This crate wraps the synchronous `zfsrepl-core`
//! with tokio (a current-thread runtime; core work runs on blocking
//! threads).
//!
//! - [`daemon`]: the scheduler loop, signals, graceful stop, reload.
//! - [`exec`]: one job run (snapshot, prune, replicate, clone) with the
//!   core's planners and executors, per-dataset locks and retries'
//!   classification.
//! - [`protect`]: replication-aware pruning (pure).
//! - [`state`]: the persistent state file.
//! - [`listen`]: the agent listener (`[daemon] listen`).
//! - [`control`]: the control socket protocol and its client.
//! - [`metrics`]: Prometheus metrics and `/metrics`.
//! - [`notify`]: systemd's notify protocol.

pub mod control;
pub mod daemon;
pub mod exec;
pub mod listen;
pub mod metrics;
pub mod notify;
pub mod protect;
pub mod state;

pub use zfsrepl_core as core;
