//! An in-memory model of modern OpenZFS (2.x): [`FakeZfs`] implements
//! [`ZfsRead`], [`ZfsWrite`] and [`ZfsStream`] with ZFS's rules, errors and
//! messages, so the engine runs end to end without a pool, including the
//! features zfs-fuse lacks (bookmarks, resumable receive, hold tags,
//! atomic multi-snapshot, comma destroy, `receive -o/-x`).
//!
//! What it models, and why each rule matters to replication:
//! - A tree of pools, filesystems and volumes; every change is one txg
//!   (`createtxg` orders versions) at a fake clock's time; guids are unique
//!   across all models in the process, because replication matches on them.
//! - Snapshots keep the data identity (`content`) and size of the moment;
//!   [`FakeZfs::write`] changes a dataset, which then counts as modified
//!   since its last snapshot (what makes an incremental receive refuse).
//! - Bookmarks copy a snapshot's guid, createtxg and creation: they can
//!   start an incremental send after the snapshot is gone.
//! - Holds block destroy; clones block destroying their origin; children
//!   block a non-recursive destroy; newer snapshots block a rollback.
//! - Send streams are self-describing and checksummed
//!   (module `stream`); receive validates each snapshot record
//!   like OpenZFS (`recv_check`) and keeps the sender's snapshot guids and
//!   creation times; a cut-short `-s` receive leaves a resume token.
//! - [`FakeZfs::calls`] counts the `zfs` processes a CLI implementation
//!   would have run, under the same [`Capabilities`], so process-count
//!   tests run on the model too.
//!
//! Deliberately simplified: one txg counter and one clock for all pools;
//! data is a content identity and a byte count, not blocks (a snapshot's
//! `used` is the data written after it until the next snapshot); no
//! encryption, quotas, space limits, `zoned`, mounts beyond a flag, or
//! `%recv` datasets in listings; without `-F` an incremental receive
//! refuses any newer snapshot on the target (the kernel lets through
//! newer snapshots that hold no change); `-R` streams send clones as
//! independent filesystems and `-R -F` destroys snapshots, not
//! filesystems, the sender no longer has; clone streams (`send -i origin
//! clone@x`) are not modelled; a recursive destroy is checked as a whole
//! before anything goes.
//!
//! ```
//! use zfsrepl_core::model::FakeZfs;
//! use zfsrepl_core::zfs::{RecvSink, RecvSpec, SendSource, SendSpec, ZfsStream};
//! use zfsrepl_core::{DatasetName, SnapshotName};
//!
//! let src = FakeZfs::from_fixture("+ tank\n+ tank/data\n~ tank/data\n+ tank/data@a\n");
//! let dst = FakeZfs::from_fixture("+ backup\n");
//! let mut stream = src.send(&SendSpec {
//!     source: SendSource::Full { snapshot: SnapshotName::parse("tank/data@a")? },
//!     flags: Default::default(),
//! })?;
//! let mut sink = dst.receive(&RecvSpec {
//!     target: Some(DatasetName::parse("backup/data")?),
//!     unmounted: true,
//!     ..Default::default()
//! })?;
//! std::io::copy(&mut stream, &mut sink)?;
//! sink.finish()?;
//! assert_eq!(dst.dump(), "+ backup\n+ backup/data mounted=no\n+ backup/data@a\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod fixture;
mod ops;
mod props;
mod recv;
mod recv_check;
mod send;
mod state;
mod stream;
#[cfg(test)]
mod tests;
mod view;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use fixture::{Fixture, FixtureEntry, FixtureError, FixtureOp};
pub use recv::FakeRecvSink;
pub use send::FakeSendStream;

use crate::name::{BookmarkName, DatasetName, EntityName, SnapshotName};
use crate::zfs::{
    Capabilities, Dataset, DestroyOutcome, ListSpec, PropValue, RecvSpec, SendSpec, UnixTime,
    ZfsRead, ZfsResult, ZfsStream, ZfsWrite,
};

use state::State;

/// The in-memory OpenZFS model. Cheap to create; `Send + Sync`; every
/// method takes `&self` (the state sits behind a mutex, shared with the
/// receive sinks it hands out).
pub struct FakeZfs {
    caps: Capabilities,
    shared: Arc<Mutex<State>>,
}

impl FakeZfs {
    /// An empty model of modern OpenZFS ([`Capabilities::openzfs`]).
    #[must_use]
    pub fn new() -> Self {
        Self::with_capabilities(Capabilities::openzfs())
    }

    /// An empty model limited to `caps`: with [`Capabilities::zfs_fuse`],
    /// bookmarks, resumable receive, hold listing and `receive -o/-x` are
    /// [`ZfsErrorKind::Unsupported`](crate::zfs::ZfsErrorKind::Unsupported),
    /// and batched snapshot and destroy run (and count) one by one.
    #[must_use]
    pub fn with_capabilities(caps: Capabilities) -> Self {
        Self {
            shared: Arc::new(Mutex::new(State::new(caps.clone()))),
            caps,
        }
    }

    /// A modern OpenZFS model populated by a fixture (see [`Fixture`]).
    ///
    /// # Panics
    /// When the fixture is malformed or cannot be applied: a test bug.
    #[must_use]
    pub fn from_fixture(fixture: &str) -> Self {
        let z = Self::new();
        z.apply_fixture(fixture).unwrap_or_else(|e| panic!("{e}"));
        z
    }

    /// Applies a fixture with absolute names (see [`Fixture`]); entries
    /// before a failing line stay applied. Counts no `zfs` process.
    ///
    /// # Errors
    /// [`FixtureError`] naming the line that is malformed or cannot apply.
    pub fn apply_fixture(&self, fixture: &str) -> Result<(), FixtureError> {
        let f = Fixture::parse(fixture)?;
        self.state().apply_fixture(&f)
    }

    /// Creates a pool (its root filesystem) and returns its name. Counts no
    /// `zfs` process.
    ///
    /// # Panics
    /// When the name is not a valid pool name or the pool exists.
    pub fn add_pool(&self, name: &str) -> DatasetName {
        let pool = DatasetName::parse(name).unwrap_or_else(|e| panic!("pool {name:?}: {e}"));
        assert!(pool.parent().is_none(), "pool {name:?} has a '/'");
        self.apply_fixture(&format!("+ \"{name}\""))
            .unwrap_or_else(|e| panic!("{e}"));
        pool
    }

    /// Simulates writing `bytes` of data into a dataset: new content, more
    /// data, and the dataset counts as modified since its last snapshot.
    /// Counts no `zfs` process.
    ///
    /// # Panics
    /// When the name is invalid or the dataset does not exist.
    pub fn write(&self, dataset: impl AsRef<str>, bytes: u64) {
        let name = dataset.as_ref();
        let ds = DatasetName::parse(name).unwrap_or_else(|e| panic!("dataset {name:?}: {e}"));
        self.state()
            .write(&ds, bytes)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Sets the clock: later changes happen at `now` (it no longer advances
    /// by itself; call again to move it).
    pub fn set_time(&self, now: UnixTime) {
        let mut s = self.state();
        s.now = now;
        s.clock_set = true;
    }

    /// The clock: the creation time the next change gets.
    #[must_use]
    pub fn now(&self) -> UnixTime {
        self.state().now
    }

    /// The `zfs` processes the operations so far would have run: one per
    /// list root; one `get`, `holds`, `create`, `hold`, `release`, `send`,
    /// `receive`...; one atomic `snapshot` where ZFS takes several at once,
    /// else one per snapshot; one `destroy` per dataset where ZFS takes comma
    /// lists, else one per snapshot. Operations refused for a missing
    /// capability, fixtures and test helpers count nothing.
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.state().calls
    }

    /// The `zfs send` streams asked of this ZFS so far (each is a process
    /// on a real host, and on zfs-fuse an aborted one can leave holds).
    #[must_use]
    pub fn sends(&self) -> u64 {
        self.state().sends
    }

    /// Sets [`FakeZfs::calls`] back to zero.
    pub fn reset_calls(&self) {
        self.state().calls = 0;
    }

    /// A stable listing in the fixture syntax, for assertions: datasets by
    /// name, each followed by its snapshots and bookmarks in txg order, with
    /// attributes for what is not default (`type=volume`, `origin=`,
    /// properties set or received, `mounted=no`, `hold=`, and
    /// `receive_resume_token=...` for a partial receive). Guids, txgs and
    /// times are left out: they differ between runs and models.
    #[must_use]
    pub fn dump(&self) -> String {
        self.state().dump()
    }

    /// Caps each snapshot record's payload in send streams (default 1 MiB);
    /// the payload otherwise follows the data written.
    pub fn set_stream_payload_limit(&self, bytes: u64) {
        self.state().payload_limit = bytes;
    }

    /// A receiver that is done before its sender (seen on zfs-fuse): on a
    /// source, `trailer` bytes follow every send stream's end; on a target
    /// (`trailer` 0 or not), receivers exit at their end record, so what
    /// is written after it fails with `BrokenPipe` although the receive
    /// succeeded.
    pub fn set_early_receiver_end(&self, trailer: usize) {
        let mut s = self.state();
        s.send_trailer = trailer;
        s.recv_exits_at_end = true;
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unsupported(&self, op: &str, what: &str) -> crate::zfs::ZfsError {
        crate::zfs::ZfsError::new(
            op,
            crate::zfs::ZfsErrorKind::Unsupported,
            format!("{what} not supported by this ZFS ({})", self.caps.flavor),
        )
    }
}

impl Default for FakeZfs {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FakeZfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeZfs")
            .field("flavor", &self.caps.flavor)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl ZfsRead for FakeZfs {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn list(&self, spec: &ListSpec) -> ZfsResult<Vec<Dataset>> {
        self.state().list(spec)
    }

    fn get_props(
        &self,
        names: &[EntityName],
        props: &[&str],
        recursive: bool,
    ) -> ZfsResult<Vec<PropValue>> {
        self.state().get_props(names, props, recursive)
    }

    fn holds(&self, snapshot: &SnapshotName) -> ZfsResult<Vec<String>> {
        if !self.caps.holds_list {
            return Err(self.unsupported(&format!("holds {snapshot}"), "listing hold tags is"));
        }
        self.state().holds(snapshot)
    }
}

impl ZfsWrite for FakeZfs {
    fn create(
        &self,
        name: &DatasetName,
        props: &[(String, String)],
        parents: bool,
    ) -> ZfsResult<()> {
        self.state().create(name, props, parents)
    }

    fn snapshot(&self, snapshots: &[SnapshotName], props: &[(String, String)]) -> ZfsResult<()> {
        self.state().snapshot(snapshots, props)
    }

    fn snapshot_recursive(
        &self,
        snapshot: &SnapshotName,
        props: &[(String, String)],
    ) -> ZfsResult<()> {
        self.state().snapshot_recursive(snapshot, props)
    }

    fn destroy_snapshots(&self, snapshots: &[SnapshotName]) -> Vec<DestroyOutcome> {
        self.state().destroy_snapshots(snapshots)
    }

    fn destroy_snapshot_recursive(&self, snapshot: &SnapshotName) -> ZfsResult<()> {
        self.state().destroy_snapshot_recursive(snapshot)
    }

    fn destroy_dataset(&self, name: &DatasetName, recursive: bool) -> ZfsResult<()> {
        self.state().destroy_dataset(name, recursive)
    }

    fn hold(&self, tag: &str, snapshots: &[SnapshotName]) -> ZfsResult<()> {
        if !self.caps.holds {
            return Err(self.unsupported(&format!("hold {tag}"), "holds are"));
        }
        self.state().hold(tag, snapshots)
    }

    fn release(&self, tag: &str, snapshots: &[SnapshotName]) -> ZfsResult<()> {
        if !self.caps.holds {
            return Err(self.unsupported(&format!("release {tag}"), "holds are"));
        }
        self.state().release(tag, snapshots)
    }

    fn bookmark(&self, snapshot: &SnapshotName, bookmark: &BookmarkName) -> ZfsResult<()> {
        if !self.caps.bookmarks {
            return Err(
                self.unsupported(&format!("bookmark {snapshot} {bookmark}"), "bookmarks are")
            );
        }
        self.state().bookmark(snapshot, bookmark)
    }

    fn destroy_bookmark(&self, bookmark: &BookmarkName) -> ZfsResult<()> {
        if !self.caps.bookmarks {
            return Err(self.unsupported(&format!("destroy {bookmark}"), "bookmarks are"));
        }
        self.state().destroy_bookmark(bookmark)
    }

    fn clone_snapshot(
        &self,
        snapshot: &SnapshotName,
        target: &DatasetName,
        props: &[(String, String)],
    ) -> ZfsResult<()> {
        self.state().clone_snapshot(snapshot, target, props)
    }

    fn promote(&self, clone: &DatasetName) -> ZfsResult<()> {
        self.state().promote(clone)
    }

    fn rename(&self, from: &EntityName, to: &EntityName) -> ZfsResult<()> {
        self.state().rename(from, to)
    }

    fn rollback(&self, snapshot: &SnapshotName, destroy_newer: bool) -> ZfsResult<()> {
        self.state().rollback(snapshot, destroy_newer)
    }

    fn set_props(&self, name: &EntityName, props: &[(String, String)]) -> ZfsResult<()> {
        self.state().set_props(name, props)
    }

    fn inherit(&self, name: &EntityName, property: &str) -> ZfsResult<()> {
        self.state().inherit(name, property)
    }

    /// `zfs receive -A target`: discards the state of a partial receive (a
    /// new filesystem's placeholder goes with it). Counts one process.
    fn receive_abort(&self, target: &DatasetName) -> ZfsResult<()> {
        self.state().receive_abort(target)
    }
}

impl ZfsStream for FakeZfs {
    type Send = FakeSendStream;
    type Recv = FakeRecvSink;

    fn send(&self, spec: &SendSpec) -> ZfsResult<FakeSendStream> {
        let mut state = self.state();
        state.sends += 1;
        send::send(&mut state, spec)
    }

    fn receive(&self, spec: &RecvSpec) -> ZfsResult<FakeRecvSink> {
        recv::receive(&self.shared, spec)
    }
}
