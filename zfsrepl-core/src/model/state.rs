//! The model's state: datasets keyed by name (the tree is implied by the
//! names), each with its snapshots, bookmarks, properties and data counters,
//! plus the counters every change advances (txg, clock, guids, calls).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::name::{BookmarkName, DatasetName, Guid, SnapshotName, Txg};
use crate::zfs::{Capabilities, DatasetKind, UnixTime, ZfsError, ZfsErrorKind, ZfsResult};

use super::stream::SnapBegin;

/// The fake clock's start, seconds since the epoch (2023-11-14).
pub(crate) const START_TIME: UnixTime = 1_700_000_000;

/// What an empty OpenZFS filesystem references: its metadata.
pub(crate) const EMPTY_FS_BYTES: u64 = 24 * 1024;

/// The default cap on one snapshot record's payload in a send stream.
pub(crate) const DEFAULT_PAYLOAD_LIMIT: u64 = 1 << 20;

/// Every model instance draws guids from its own range, so that a source
/// and a target model never share a guid by accident (replication matches
/// on guids: a collision would fake a common snapshot).
static INSTANCES: AtomicU64 = AtomicU64::new(1);

/// A bijection on `u64`: distinct counters give distinct, random-looking
/// guids.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// When something happened: its txg and its creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub txg: Txg,
    pub creation: UnixTime,
}

/// Where a property value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `zfs set` (or `zfs receive -o`).
    Local,
    /// A `-p`/`-R` stream; a local value overrides it.
    Received,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Received => "received",
        }
    }
}

/// The properties set on one entity (not inherited ones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PropSet {
    pub local: BTreeMap<String, String>,
    pub received: BTreeMap<String, String>,
}

impl PropSet {
    /// The value set here, local before received (as ZFS resolves them).
    pub(crate) fn get(&self, prop: &str) -> Option<(&str, Source)> {
        if let Some(v) = self.local.get(prop) {
            return Some((v, Source::Local));
        }
        self.received
            .get(prop)
            .map(|v| (v.as_str(), Source::Received))
    }

    /// Every value set here, as `zfs send -p` sends them.
    pub(crate) fn effective(&self) -> BTreeMap<String, String> {
        let mut all = self.received.clone();
        all.extend(self.local.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }

    /// Forgets a property (`zfs inherit`).
    pub(crate) fn clear(&mut self, prop: &str) {
        self.local.remove(prop);
        self.received.remove(prop);
    }
}

/// A snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snap {
    /// The short name after `@`.
    pub name: String,
    pub guid: Guid,
    pub createtxg: Txg,
    pub creation: UnixTime,
    /// The content identity of the data at snapshot time.
    pub content: u64,
    /// The bytes of data referenced at snapshot time (beyond metadata).
    pub data_bytes: u64,
    /// User hold tags.
    pub holds: BTreeSet<String>,
    pub props: PropSet,
}

/// A bookmark: a snapshot's identity without its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    /// The short name after `#`.
    pub name: String,
    pub guid: Guid,
    pub createtxg: Txg,
    pub creation: UnixTime,
    pub data_bytes: u64,
}

/// The state a resumable receive (`zfs receive -s`) leaves when cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Partial {
    /// The interrupted snapshot's record header, as first received (with
    /// its properties, which a resumed stream does not carry again).
    pub begin: SnapBegin,
    /// Payload bytes received so far.
    pub bytes: u64,
    /// The `receive_resume_token` value.
    pub token: String,
    /// The receive was creating this dataset: until it completes the
    /// dataset exists only as this inconsistent placeholder.
    pub new_fs: bool,
}

/// A filesystem or volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ds {
    pub kind: DatasetKind,
    pub guid: Guid,
    pub createtxg: Txg,
    pub creation: UnixTime,
    /// The snapshot this dataset is a clone of.
    pub origin: Option<SnapshotName>,
    pub props: PropSet,
    /// Filesystems only; volumes are never mounted.
    pub mounted: bool,
    /// Written to since the most recent snapshot.
    pub modified: bool,
    /// The content identity of the current data (a fresh value per write).
    pub content: u64,
    /// The bytes of data referenced now (beyond metadata).
    pub data_bytes: u64,
    /// Sorted by createtxg.
    pub snaps: Vec<Snap>,
    /// Sorted by createtxg.
    pub marks: Vec<Mark>,
    pub partial: Option<Partial>,
}

impl Ds {
    /// A new, empty dataset created at `stamp`.
    pub(crate) fn new(kind: DatasetKind, guid: Guid, stamp: Stamp) -> Self {
        Self {
            kind,
            guid,
            createtxg: stamp.txg,
            creation: stamp.creation,
            origin: None,
            props: PropSet::default(),
            mounted: kind == DatasetKind::Filesystem,
            modified: false,
            content: 0,
            data_bytes: 0,
            snaps: Vec::new(),
            marks: Vec::new(),
            partial: None,
        }
    }

    pub(crate) fn is_fs(&self) -> bool {
        self.kind == DatasetKind::Filesystem
    }

    pub(crate) fn snap_index(&self, short: &str) -> Option<usize> {
        self.snaps.iter().position(|s| s.name == short)
    }

    pub(crate) fn snap(&self, short: &str) -> Option<&Snap> {
        self.snaps.iter().find(|s| s.name == short)
    }

    pub(crate) fn mark(&self, short: &str) -> Option<&Mark> {
        self.marks.iter().find(|m| m.name == short)
    }

    /// The space a snapshot uses: in this model, the data written after it
    /// until the next snapshot (what an overwrite-heavy workload would
    /// leave unique to it).
    pub(crate) fn snap_used(&self, i: usize) -> u64 {
        let next = self
            .snaps
            .get(i + 1)
            .map_or(self.data_bytes, |s| s.data_bytes);
        next.saturating_sub(self.snaps[i].data_bytes)
    }

    /// `referenced`: metadata plus data.
    pub(crate) fn referenced(&self) -> u64 {
        EMPTY_FS_BYTES + self.data_bytes
    }

    /// Whether mounting is allowed by `canmount` (local or received).
    pub(crate) fn can_mount(&self) -> bool {
        self.is_fs() && self.props.get("canmount").is_none_or(|(v, _)| v == "on")
    }

    /// Puts a snapshot in createtxg order.
    pub(crate) fn insert_snap(&mut self, snap: Snap) {
        let at = self
            .snaps
            .partition_point(|s| s.createtxg <= snap.createtxg);
        self.snaps.insert(at, snap);
    }
}

/// The whole model.
#[derive(Debug)]
pub(crate) struct State {
    pub caps: Capabilities,
    /// The last txg used.
    pub txg: u64,
    /// The clock: the creation time of the next change.
    pub now: UnixTime,
    /// Set by a test: the clock no longer advances by itself.
    pub clock_set: bool,
    /// `zfs` processes the operations so far would have run.
    pub calls: u64,
    /// `zfs send` streams asked for (started or refused).
    pub sends: u64,
    /// The cap on one snapshot record's payload in a send stream.
    pub payload_limit: u64,
    /// Bytes appended after each send stream's end (see
    /// `FakeZfs::set_early_receiver_end`).
    pub send_trailer: usize,
    /// Receivers exit at their stream's end record: bytes written after it
    /// fail with `BrokenPipe`, as into the pipe of an exited `zfs receive`.
    pub recv_exits_at_end: bool,
    pub datasets: BTreeMap<DatasetName, Ds>,
    instance: u64,
    guids: u64,
    contents: u64,
}

impl State {
    pub(crate) fn new(caps: Capabilities) -> Self {
        Self {
            caps,
            txg: 0,
            now: START_TIME,
            clock_set: false,
            calls: 0,
            sends: 0,
            payload_limit: DEFAULT_PAYLOAD_LIMIT,
            send_trailer: 0,
            recv_exits_at_end: false,
            datasets: BTreeMap::new(),
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            guids: 0,
            contents: 0,
        }
    }

    /// Starts a new txg (every change is one): returns its number and its
    /// time, then advances the clock by a second unless a test set it.
    pub(crate) fn tick(&mut self) -> Stamp {
        self.txg += 1;
        let stamp = Stamp {
            txg: Txg(self.txg),
            creation: self.now,
        };
        if !self.clock_set {
            self.now += 1;
        }
        stamp
    }

    /// A guid no other entity of any model has had (0 means "none" to ZFS).
    pub(crate) fn new_guid(&mut self) -> Guid {
        loop {
            self.guids += 1;
            let g = splitmix64((self.instance << 40) | self.guids);
            if g != 0 {
                return Guid(g);
            }
        }
    }

    /// A content identity no data has had.
    pub(crate) fn new_content(&mut self) -> u64 {
        self.contents += 1;
        (self.instance << 40) | self.contents
    }

    pub(crate) fn get(&self, name: &DatasetName) -> Option<&Ds> {
        self.datasets.get(name)
    }

    pub(crate) fn get_mut(&mut self, name: &DatasetName) -> Option<&mut Ds> {
        self.datasets.get_mut(name)
    }

    /// The dataset, or ZFS's "dataset does not exist".
    pub(crate) fn need(&self, name: &DatasetName, op: &str) -> ZfsResult<&Ds> {
        self.get(name).ok_or_else(|| not_found(op, name.as_str()))
    }

    pub(crate) fn snap(&self, s: &SnapshotName) -> Option<&Snap> {
        self.get(&s.dataset())?.snap(s.snap())
    }

    pub(crate) fn snap_mut(&mut self, s: &SnapshotName) -> Option<&mut Snap> {
        let short = s.snap();
        self.get_mut(&s.dataset())?
            .snaps
            .iter_mut()
            .find(|x| x.name == short)
    }

    /// The snapshot, or ZFS's "dataset does not exist".
    pub(crate) fn need_snap(&self, s: &SnapshotName, op: &str) -> ZfsResult<&Snap> {
        self.snap(s).ok_or_else(|| not_found(op, s.as_str()))
    }

    pub(crate) fn mark(&self, b: &BookmarkName) -> Option<&Mark> {
        self.get(&b.dataset())?.mark(b.mark())
    }

    /// `root` and every dataset below it, parents first.
    pub(crate) fn subtree(&self, root: &DatasetName) -> Vec<DatasetName> {
        self.datasets
            .range(root.clone()..)
            .map(|(n, _)| n)
            .take_while(|n| n.as_str().starts_with(root.as_str()))
            .filter(|n| n.is_within(root))
            .cloned()
            .collect()
    }

    /// Whether `name` or one of its ancestors is a volume (nothing can be
    /// created below a volume).
    pub(crate) fn below_volume(&self, name: &DatasetName) -> Option<DatasetName> {
        let mut cur = Some(name.clone());
        while let Some(n) = cur {
            if self.get(&n).is_some_and(|d| !d.is_fs()) {
                return Some(n);
            }
            cur = n.parent();
        }
        None
    }

    /// What depends on a snapshot and so blocks its destruction: clones,
    /// and the hidden `%recv` clone a partial incremental receive keeps of
    /// its base.
    pub(crate) fn dependents(&self, s: &SnapshotName) -> Vec<String> {
        let mut out: Vec<String> = self
            .datasets
            .iter()
            .filter(|(_, d)| d.origin.as_ref() == Some(s))
            .map(|(n, _)| n.to_string())
            .collect();
        if let Some(ds) = self.get(&s.dataset())
            && let (Some(p), Some(snap)) = (&ds.partial, ds.snap(s.snap()))
            && p.begin.fromguid == Some(snap.guid)
        {
            out.push(format!("{}/%recv", s.dataset_str()));
        }
        out
    }

    /// `used` of a dataset: its data, its snapshots' and its children's.
    pub(crate) fn used(&self, name: &DatasetName) -> u64 {
        self.subtree(name)
            .iter()
            .filter_map(|n| self.get(n))
            .map(|d| d.referenced() + (0..d.snaps.len()).map(|i| d.snap_used(i)).sum::<u64>())
            .sum()
    }

    /// Records that a `zfs` process ran.
    pub(crate) fn count(&mut self) {
        self.calls += 1;
    }
}

/// Builds the full snapshot name of a snapshot the model holds.
///
/// # Panics
/// Never for names the model holds: creation and rename check lengths.
pub(crate) fn snap_name(ds: &DatasetName, short: &str) -> SnapshotName {
    SnapshotName::new(ds.clone(), short).expect("the model only holds valid snapshot names")
}

/// Builds the full bookmark name of a bookmark the model holds.
pub(crate) fn mark_name(ds: &DatasetName, short: &str) -> BookmarkName {
    BookmarkName::new(ds.clone(), short).expect("the model only holds valid bookmark names")
}

/// An error with the model's op and message.
pub(crate) fn err(op: &str, kind: ZfsErrorKind, message: impl Into<String>) -> ZfsError {
    ZfsError::new(op, kind, message)
}

/// ZFS's message for a name that does not exist.
pub(crate) fn not_found(op: &str, name: &str) -> ZfsError {
    err(
        op,
        ZfsErrorKind::NotFound,
        format!("cannot open '{name}': dataset does not exist"),
    )
}
