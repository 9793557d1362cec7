//! The ZFS boundary: record types, the three traits every implementation
//! offers ([`ZfsRead`], [`ZfsWrite`], [`ZfsStream`]), and the pieces of the
//! `zfs` command layer ([`ZfsCli`] over a [`Runner`]).
//!
//! Two implementations stand behind the traits: [`ZfsCli`], which drives the
//! installed `zfs` binary (locally or over ssh) and adapts to what it can do
//! ([`Capabilities`]), and the in-memory model of modern OpenZFS in
//! `crate::model` (feature `test-util`), for what zfs-fuse lacks.

pub mod caps;
pub mod cli;
pub mod error;
pub mod parse;
pub mod resume;
pub mod runner;
pub mod stderr;

use std::collections::BTreeMap;
use std::io;
use std::os::fd::RawFd;

use serde::{Deserialize, Serialize};

pub use caps::{Capabilities, CapsCache};
pub use cli::ZfsCli;
pub use error::{ZfsError, ZfsErrorKind, ZfsResult};
pub use runner::{Host, LocalRunner, Runner, SshRunner, SshTarget};

use crate::name::{BookmarkName, DatasetName, EntityName, Guid, SnapshotName, Txg};

/// Seconds since the Unix epoch, as ZFS reports `creation`.
pub type UnixTime = i64;

/// Filesystem or volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// A filesystem.
    Filesystem,
    /// A volume (zvol).
    Volume,
}

/// The name of a version of a dataset: a snapshot or a bookmark.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VersionName {
    /// `dataset@snap`.
    Snapshot(SnapshotName),
    /// `dataset#mark`.
    Bookmark(BookmarkName),
}

impl VersionName {
    /// The full name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Snapshot(s) => s.as_str(),
            Self::Bookmark(b) => b.as_str(),
        }
    }

    /// The short name after `@` or `#`.
    #[must_use]
    pub fn short(&self) -> &str {
        match self {
            Self::Snapshot(s) => s.snap(),
            Self::Bookmark(b) => b.mark(),
        }
    }

    /// True for bookmarks.
    #[must_use]
    pub fn is_bookmark(&self) -> bool {
        matches!(self, Self::Bookmark(_))
    }
}

impl std::fmt::Display for VersionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot or bookmark with the exact numbers replication and retention
/// need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Its name.
    pub name: VersionName,
    /// Globally unique id: the identity replication matches on.
    pub guid: Guid,
    /// The transaction group it was created in: the order within a dataset.
    pub createtxg: Txg,
    /// Creation time, seconds since the epoch.
    pub creation: UnixTime,
    /// Space used, in bytes (snapshots only).
    pub used: Option<u64>,
    /// Number of user holds (snapshots only; `None` where ZFS did not say).
    pub userrefs: Option<u64>,
}

/// A filesystem or volume with its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    /// Its name.
    pub name: DatasetName,
    /// Filesystem or volume.
    pub kind: DatasetKind,
    /// Its guid.
    pub guid: Guid,
    /// The txg it was created in.
    pub createtxg: Txg,
    /// Creation time, seconds since the epoch.
    pub creation: UnixTime,
    /// Space used, in bytes.
    pub used: u64,
    /// The snapshot this dataset is a clone of.
    pub origin: Option<SnapshotName>,
    /// A partial receive's resume token, where ZFS supports them.
    pub receive_resume_token: Option<String>,
    /// The user properties asked for in [`ListSpec::user_props`], with their
    /// values (locally set or inherited).
    pub user_props: BTreeMap<String, String>,
    /// Snapshots and bookmarks, sorted by createtxg (bookmark before snapshot
    /// on equal txg).
    pub versions: Vec<Version>,
}

impl Dataset {
    /// The snapshots only.
    pub fn snapshots(&self) -> impl Iterator<Item = &Version> {
        self.versions.iter().filter(|v| !v.name.is_bookmark())
    }

    /// The bookmarks only.
    pub fn bookmarks(&self) -> impl Iterator<Item = &Version> {
        self.versions.iter().filter(|v| v.name.is_bookmark())
    }

    /// Sorts versions by (createtxg, bookmark first, name).
    pub fn sort_versions(&mut self) {
        self.versions.sort_by(|a, b| {
            (a.createtxg, !a.name.is_bookmark(), a.name.as_str()).cmp(&(
                b.createtxg,
                !b.name.is_bookmark(),
                b.name.as_str(),
            ))
        });
    }
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSpec {
    /// Roots to list (each costs one `zfs` process).
    pub roots: Vec<DatasetName>,
    /// Descend into children.
    pub recursive: bool,
    /// Include snapshots.
    pub snapshots: bool,
    /// Include bookmarks (ignored where ZFS has none).
    pub bookmarks: bool,
    /// User properties (`module:name`) to fetch for datasets.
    pub user_props: Vec<String>,
}

impl ListSpec {
    /// Everything under `roots`: recursive, with snapshots and bookmarks.
    #[must_use]
    pub fn all(roots: Vec<DatasetName>) -> Self {
        Self {
            roots,
            recursive: true,
            snapshots: true,
            bookmarks: true,
            user_props: Vec::new(),
        }
    }
}

/// A property value as `zfs get` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropValue {
    /// The entity the property belongs to.
    pub name: EntityName,
    /// The property.
    pub property: String,
    /// Its value (`-` when unset).
    pub value: String,
    /// `local`, `default`, `inherited from X`, `received`, `-`.
    pub source: String,
}

/// One destroy's outcome in a batch.
pub type DestroyOutcome = (SnapshotName, ZfsResult<()>);

/// Reading from ZFS.
pub trait ZfsRead {
    /// What this ZFS can do.
    fn capabilities(&self) -> &Capabilities;

    /// Lists datasets and their versions under each root, one `zfs` process
    /// per root. Datasets come sorted by name, versions by createtxg.
    ///
    /// # Errors
    /// [`ZfsErrorKind::NotFound`] when a root does not exist, or any other
    /// failure of `zfs`.
    fn list(&self, spec: &ListSpec) -> ZfsResult<Vec<Dataset>>;

    /// Reads properties of the given entities.
    ///
    /// # Errors
    /// When an entity does not exist or `zfs get` fails.
    fn get_props(
        &self,
        names: &[EntityName],
        props: &[&str],
        recursive: bool,
    ) -> ZfsResult<Vec<PropValue>>;

    /// The hold tags on a snapshot.
    ///
    /// # Errors
    /// [`ZfsErrorKind::Unsupported`] where ZFS cannot list hold tags
    /// (zfs-fuse: read `userrefs` from [`ZfsRead::list`] instead).
    fn holds(&self, snapshot: &SnapshotName) -> ZfsResult<Vec<String>>;
}

/// Changing ZFS state.
pub trait ZfsWrite {
    /// Creates a filesystem (with parents when `parents`).
    ///
    /// # Errors
    /// When it exists or cannot be created.
    fn create(
        &self,
        name: &DatasetName,
        props: &[(String, String)],
        parents: bool,
    ) -> ZfsResult<()>;

    /// Takes snapshots of several datasets: atomically in one `zfs snapshot`
    /// per pool where ZFS can (ZFS cannot be atomic across pools), otherwise
    /// one process per snapshot (in order; stops at the first failure).
    ///
    /// # Errors
    /// The first failure.
    fn snapshot(&self, snapshots: &[SnapshotName], props: &[(String, String)]) -> ZfsResult<()>;

    /// Takes `snapshot` of its dataset and every descendant, atomically
    /// (`zfs snapshot -r`).
    ///
    /// # Errors
    /// When any snapshot cannot be taken (none is then taken).
    fn snapshot_recursive(
        &self,
        snapshot: &SnapshotName,
        props: &[(String, String)],
    ) -> ZfsResult<()>;

    /// Destroys snapshots, comma-batched per dataset where ZFS can; returns
    /// one outcome per snapshot (all failures, not just the first).
    fn destroy_snapshots(&self, snapshots: &[SnapshotName]) -> Vec<DestroyOutcome>;

    /// Destroys the snapshot named like `snapshot` in its dataset and in
    /// every descendant that has one (`zfs destroy -r fs@name`), all or
    /// none. Callers check first that every such snapshot is theirs to
    /// destroy.
    ///
    /// # Errors
    /// When any of them cannot be destroyed (none is then destroyed), or
    /// [`ZfsErrorKind::Unsupported`] from implementations without it (the
    /// default): callers fall back to [`ZfsWrite::destroy_snapshots`].
    fn destroy_snapshot_recursive(&self, snapshot: &SnapshotName) -> ZfsResult<()> {
        Err(ZfsError::new(
            format!("destroy -r {snapshot}"),
            ZfsErrorKind::Unsupported,
            "recursive snapshot destroy is not offered here",
        ))
    }

    /// Destroys a filesystem or volume; with `recursive`, also its children
    /// and snapshots (never clones elsewhere: no `-R`).
    ///
    /// # Errors
    /// When it has children (without `recursive`), clones, or is busy.
    fn destroy_dataset(&self, name: &DatasetName, recursive: bool) -> ZfsResult<()>;

    /// Places a user hold `tag` on each snapshot.
    ///
    /// # Errors
    /// When a snapshot is missing or already holds `tag`.
    fn hold(&self, tag: &str, snapshots: &[SnapshotName]) -> ZfsResult<()>;

    /// Releases the user hold `tag` from each snapshot.
    ///
    /// # Errors
    /// When a snapshot is missing or has no such hold.
    fn release(&self, tag: &str, snapshots: &[SnapshotName]) -> ZfsResult<()>;

    /// Creates a bookmark of a snapshot.
    ///
    /// # Errors
    /// [`ZfsErrorKind::Unsupported`] where ZFS has no bookmarks.
    fn bookmark(&self, snapshot: &SnapshotName, bookmark: &BookmarkName) -> ZfsResult<()>;

    /// Destroys a bookmark.
    ///
    /// # Errors
    /// [`ZfsErrorKind::Unsupported`] where ZFS has no bookmarks.
    fn destroy_bookmark(&self, bookmark: &BookmarkName) -> ZfsResult<()>;

    /// Clones a snapshot into a new dataset.
    ///
    /// # Errors
    /// When the target exists or its parent does not.
    fn clone_snapshot(
        &self,
        snapshot: &SnapshotName,
        target: &DatasetName,
        props: &[(String, String)],
    ) -> ZfsResult<()>;

    /// Promotes a clone so that it no longer depends on its origin.
    ///
    /// # Errors
    /// When `clone` is not a clone.
    fn promote(&self, clone: &DatasetName) -> ZfsResult<()>;

    /// Renames a dataset, or a snapshot within its dataset.
    ///
    /// # Errors
    /// When the target exists, or a clone is mounted (zfs-fuse: busy).
    fn rename(&self, from: &EntityName, to: &EntityName) -> ZfsResult<()>;

    /// Rolls a dataset back to a snapshot; with `destroy_newer`, destroys
    /// the snapshots after it (`-r`), otherwise it must be the latest.
    ///
    /// # Errors
    /// [`ZfsErrorKind::TargetHasNewerSnapshots`] when newer snapshots exist
    /// and `destroy_newer` is false.
    fn rollback(&self, snapshot: &SnapshotName, destroy_newer: bool) -> ZfsResult<()>;

    /// Sets properties on a dataset or snapshot.
    ///
    /// # Errors
    /// When the entity is missing or a value is rejected.
    fn set_props(&self, name: &EntityName, props: &[(String, String)]) -> ZfsResult<()>;

    /// Discards a partially received state (`zfs receive -A`), so that a
    /// target whose resume token went stale can be sent to again.
    ///
    /// # Errors
    /// [`ZfsErrorKind::Unsupported`] where ZFS has no resumable receive;
    /// [`ZfsErrorKind::NotFound`] when there is no partial state.
    fn receive_abort(&self, target: &DatasetName) -> ZfsResult<()>;

    /// Clears a locally set property so it is inherited again.
    ///
    /// # Errors
    /// When the entity is missing.
    fn inherit(&self, name: &EntityName, property: &str) -> ZfsResult<()>;
}

/// Where an incremental send starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum SendSource {
    /// A full stream of one snapshot.
    Full {
        /// The snapshot.
        snapshot: SnapshotName,
    },
    /// An incremental stream `from` (snapshot or bookmark) to `to`; with
    /// `intermediates` (`-I`), every snapshot between them too.
    Incremental {
        /// The base.
        from: VersionName,
        /// The new snapshot.
        to: SnapshotName,
        /// `-I` rather than `-i`.
        intermediates: bool,
    },
    /// Continue an interrupted receive (`zfs send -t TOKEN`).
    Resume {
        /// The target's `receive_resume_token`.
        token: String,
    },
}

/// Options of `zfs send`; each is used only where [`Capabilities`] has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools)]
pub struct SendFlags {
    /// `-R`: a replication stream of the dataset and descendants.
    pub replicate: bool,
    /// `-p`: include properties.
    pub props: bool,
    /// `-D`: deduplicated stream.
    pub dedup: bool,
    /// `-c`: keep on-disk compression.
    pub compressed: bool,
    /// `-L`: large blocks.
    pub large_blocks: bool,
    /// `-e`: embedded data.
    pub embedded: bool,
    /// `-w`: raw (encrypted) stream.
    pub raw: bool,
}

/// A `zfs send` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendSpec {
    /// What to send.
    pub source: SendSource,
    /// How.
    pub flags: SendFlags,
}

/// A `zfs receive` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools)]
pub struct RecvSpec {
    /// The dataset to receive into (with `discard_path`, its parent).
    pub target: Option<DatasetName>,
    /// `-F`: roll back / destroy on the target to make the stream apply.
    /// Only when a policy asks for it.
    pub force: bool,
    /// `-u`: do not mount the received dataset.
    pub unmounted: bool,
    /// `-s`: keep a resume token if interrupted.
    pub resumable: bool,
    /// `-d`: strip the pool name from the sent name and append the rest to
    /// `target`.
    pub discard_path: bool,
    /// `-o property=value` on the received dataset.
    pub set_props: Vec<(String, String)>,
    /// `-x property`: do not receive this property.
    pub exclude_props: Vec<String>,
}

/// The reading end of a running `zfs send`.
pub trait SendStream: io::Read + Send {
    /// The raw file descriptor of the stream (a pipe), for `splice`;
    /// `None` for in-memory streams.
    fn raw_fd(&self) -> Option<RawFd>;

    /// Waits for the sender to exit.
    ///
    /// # Errors
    /// The sender's failure, with its stderr tail.
    fn finish(self) -> ZfsResult<()>;

    /// Stops the sender without waiting for the stream's end: the stream
    /// is closed, the sender given a moment to end by itself, then killed
    /// and reaped ([`Child::kill`](crate::zfs::runner::Child::kill)).
    fn abort(self);
}

/// The writing end of a running `zfs receive`.
pub trait RecvSink: io::Write + Send {
    /// The raw file descriptor of the sink (a pipe), for `splice`;
    /// `None` for in-memory sinks.
    fn raw_fd(&self) -> Option<RawFd>;

    /// Closes the stream and waits for the receiver to apply it.
    ///
    /// # Errors
    /// The receiver's failure, with its stderr tail and classified kind.
    fn finish(self) -> ZfsResult<()>;

    /// Stops the receiver: its stream is cut short, it is given a moment to
    /// end by itself, then killed and reaped; a resumable receive keeps its
    /// token.
    fn abort(self);
}

/// Producing and consuming send streams.
pub trait ZfsStream {
    /// The sender type.
    type Send: SendStream;
    /// The receiver type.
    type Recv: RecvSink;

    /// Starts `zfs send`.
    ///
    /// # Errors
    /// When it cannot start, or a flag is not supported here.
    fn send(&self, spec: &SendSpec) -> ZfsResult<Self::Send>;

    /// Starts `zfs receive`.
    ///
    /// # Errors
    /// When it cannot start, or a flag is not supported here.
    fn receive(&self, spec: &RecvSpec) -> ZfsResult<Self::Recv>;

    /// The size of the stream `spec` would produce, where ZFS can estimate
    /// it (`zfs send -nvP`); `None` where it cannot. The default has no
    /// estimate.
    ///
    /// # Errors
    /// When ZFS can estimate but the dry run fails.
    fn send_estimate(&self, spec: &SendSpec) -> ZfsResult<Option<u64>> {
        let _ = spec;
        Ok(None)
    }
}

/// Every pool's used percentage on the runner's host (`zpool list -H -o
/// name,capacity`), for `prune-defer`; empty when `zpool` cannot be run,
/// which defers every entry that has one.
#[must_use]
pub fn pool_capacities<R: Runner + ?Sized>(r: &R) -> Vec<(String, u8)> {
    let argv: Vec<std::ffi::OsString> = ["zpool", "list", "-H", "-o", "name,capacity"]
        .iter()
        .map(std::ffi::OsString::from)
        .collect();
    let Ok(o) = r.run(&argv) else {
        return Vec::new();
    };
    parse_capacities(&String::from_utf8_lossy(&o.stdout))
}

/// Parses `zpool list -H -o name,capacity` (`tank\t42%`); lines that do
/// not parse are skipped.
#[must_use]
pub fn parse_capacities(text: &str) -> Vec<(String, u8)> {
    text.lines()
        .filter_map(|l| {
            let (n, c) = l.split_once('\t')?;
            Some((n.to_owned(), c.trim().trim_end_matches('%').parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod capacity_tests {
    #[test]
    fn zpool_capacities_parse() {
        let c = super::parse_capacities("tank\t42%\nrpool\t0%\nodd line\nbad\tx%\n");
        assert_eq!(c, [("tank".to_owned(), 42), ("rpool".to_owned(), 0)]);
    }
}
