//! # zfsrepl-core
//!
//! The library behind zfsrepl: everything about ZFS, plans and data paths,
//! synchronous and embeddable (no async runtime is forced on callers).
//!
//! Main types:
//! - [`name`]: validated [`DatasetName`], [`SnapshotName`], [`BookmarkName`],
//!   [`Guid`] and [`Txg`]; names with spaces, `:` and a leading `-` are legal.
//! - [`zfs`]: the ZFS boundary. [`ZfsRead`], [`ZfsWrite`] and [`ZfsStream`]
//!   are implemented by [`ZfsCli`], which drives the installed `zfs` through a
//!   [`Runner`] (local, or ssh with one reused connection and every argument
//!   quoted once), adapting to the [`Capabilities`] it probes; and, with the
//!   `test-util` feature, by the in-memory model of modern OpenZFS in
//!   `model`, for features zfs-fuse lacks.
//! - [`policy`]: TOML policies (and sanoid.conf imports) validated into
//!   typed settings, every problem reported as `file:line:col`.
//! - [`snapshot`]: periods and sanoid's due-time rules, with the clock
//!   injected, and snapshot names (sanoid's `autosnap_...` and ours).
//! - [`retention`]: the pure prune planner (sanoid counts, a zrepl-style
//!   grid, keep-last, regex), a reason for every keep and destroy.
//! - [`lock`]: per-dataset advisory locks shared by the daemon and the
//!   manual `send`/`prune` commands.
//! - [`schedule`]: job schedules (`every 15m`, `daily 03:00`, ...) and the
//!   pure next-run computation the daemon uses.
//! - [`replication`]: the pure replication planner: the guid-matched common
//!   base, conflicts as values, and the steps (`-i`/`-I`, resume, full) as a
//!   serializable plan; and its executor.
//! - [`clone`]: staging clones refreshed atomically from newer snapshots,
//!   planned purely, never touching a dataset zfsrepl did not create.
//! - [`graph`]: the estate drawn from its policies, as Mermaid or DOT.
//! - [`target`]: actions on the estate (container mount points, NFS
//!   exports, proxy reloads, stunnel links) as argv on the right host, and
//!   the pure planning of what a clone refresh implies.
//! - [`stream`]: the data path. [`stream::Pipeline`] splices `zfs send` into
//!   `zfs receive` without copying through user space, with progress, rate
//!   limit and cancellation, and blames the side that failed first;
//!   [`stream::ZstdEncoder`]/[`stream::ZstdDecoder`] compress network legs
//!   in-process on bounded buffers.
//! - [`agent`]: the agent protocol, its confined [`agent::Server`]
//!   (`zfsrepl serve --stdio`, an ssh forced command) and the
//!   [`agent::AgentClient`] the executor drives like a local ZFS.
//! - [`transport`]: network legs; [`transport::tls`] is TLS-PSK compatible
//!   with stunnel's secrets files and with a real stunnel on either end.
//!
//! ```
//! use zfsrepl_core::{DatasetName, SnapshotName};
//! let ds = DatasetName::parse("tank/off products")?;
//! let snap: SnapshotName = ds.snapshot("zfsrepl_2026-11-22_05:00:00")?;
//! assert_eq!(snap.dataset(), ds);
//! # Ok::<(), zfsrepl_core::NameError>(())
//! ```

pub mod agent;
pub mod clone;
pub mod failpoint;
pub mod graph;
pub mod hooks;
pub mod lock;
pub mod name;
pub mod policy;
pub mod replication;
pub mod retention;
pub mod schedule;
pub mod snapshot;
pub mod stream;
pub mod target;
pub mod transport;
pub mod zfs;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(feature = "test-util")]
pub mod model;
#[cfg(feature = "test-util")]
pub mod testing;

pub use name::{BookmarkName, DatasetName, EntityName, Guid, NameError, SnapshotName, Txg};
pub use zfs::{
    Capabilities, Dataset, ListSpec, Runner, Version, VersionName, ZfsCli, ZfsError, ZfsErrorKind,
    ZfsRead, ZfsResult, ZfsStream, ZfsWrite,
};
