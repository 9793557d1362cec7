//! [`RetentionFloor`]: the ZFS a network peer drives through the agent,
//! with floors no request can go below, whatever the agent's own checks.
//!
//! The agent already confines a peer to its roots and its destroys to its
//! own job's sync snapshots. Below that, on the server's side:
//!
//! - the newest snapshot of a dataset is never destroyed: on a receiving
//!   side it is the base the next incremental needs (the newest snapshot in
//!   common with the sender), and a dataset is never left without one;
//! - a held snapshot is never destroyed (holds are how replication jobs,
//!   ours or others', pin their bases);
//! - nothing is destroyed but snapshots: datasets, recursive destroys,
//!   clones, promotions and renames are refused outright.
//!
//! Snapshots the server's own policy keeps are never a peer's sync
//! snapshots (the agent refuses every other name), so they are out of reach.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::name::{BookmarkName, DatasetName, EntityName, SnapshotName};
use crate::zfs::{
    Capabilities, Dataset, DestroyOutcome, ListSpec, PropValue, RecvSpec, SendSpec, ZfsError,
    ZfsErrorKind, ZfsRead, ZfsResult, ZfsStream, ZfsWrite,
};

/// A ZFS shared by the connections of a server, with retention floors.
#[derive(Debug)]
pub struct RetentionFloor<Z> {
    inner: Arc<Z>,
}

impl<Z> Clone for RetentionFloor<Z> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<Z> RetentionFloor<Z> {
    /// Floors over `zfs` (shared: one probe serves every connection).
    pub fn new(zfs: Arc<Z>) -> Self {
        Self { inner: zfs }
    }
}

fn refused(op: String, why: &str) -> ZfsError {
    ZfsError::new(op, ZfsErrorKind::PermissionDenied, why.to_owned())
}

impl<Z: ZfsRead> RetentionFloor<Z> {
    /// Splits `snapshots` into those that may go and the refused.
    fn filter(&self, snapshots: &[SnapshotName]) -> (Vec<SnapshotName>, Vec<DestroyOutcome>) {
        let datasets: BTreeSet<DatasetName> = snapshots.iter().map(SnapshotName::dataset).collect();
        let mut listed: Vec<Dataset> = Vec::new();
        let mut failed: Option<ZfsError> = None;
        for ds in datasets {
            let spec = ListSpec {
                roots: vec![ds],
                recursive: false,
                snapshots: true,
                bookmarks: false,
                user_props: Vec::new(),
            };
            match self.inner.list(&spec) {
                Ok(mut l) => listed.append(&mut l),
                Err(e) => failed = Some(e),
            }
        }
        let mut ok = Vec::new();
        let mut refused_list = Vec::new();
        for s in snapshots {
            let op = format!("destroy {s}");
            let ds = s.dataset();
            let Some(d) = listed.iter().find(|d| d.name == ds) else {
                let e = failed.clone().unwrap_or_else(|| {
                    ZfsError::new(
                        op.clone(),
                        ZfsErrorKind::NotFound,
                        format!("{ds} does not exist"),
                    )
                });
                refused_list.push((s.clone(), Err(e)));
                continue;
            };
            let newest = d.snapshots().max_by_key(|v| v.createtxg);
            let this = d.snapshots().find(|v| v.name.as_str() == s.as_str());
            match this {
                None => ok.push(s.clone()), // let ZFS say it does not exist
                Some(_) if newest.is_some_and(|n| n.name.as_str() == s.as_str()) => {
                    tracing::warn!(snapshot = %s, "refused: destroying the newest snapshot of a dataset");
                    refused_list.push((
                        s.clone(),
                        Err(refused(
                            op,
                            "the newest snapshot of a dataset is never destroyed by a peer (it is the base of the next incremental)",
                        )),
                    ));
                }
                Some(v) if v.userrefs.unwrap_or(0) > 0 => {
                    tracing::warn!(snapshot = %s, "refused: destroying a held snapshot");
                    refused_list.push((
                        s.clone(),
                        Err(refused(
                            op,
                            "the snapshot is held; a peer never destroys a held snapshot",
                        )),
                    ));
                }
                Some(_) => ok.push(s.clone()),
            }
        }
        (ok, refused_list)
    }
}

impl<Z: ZfsRead> ZfsRead for RetentionFloor<Z> {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn list(&self, spec: &ListSpec) -> ZfsResult<Vec<Dataset>> {
        self.inner.list(spec)
    }

    fn get_props(
        &self,
        names: &[EntityName],
        props: &[&str],
        recursive: bool,
    ) -> ZfsResult<Vec<PropValue>> {
        self.inner.get_props(names, props, recursive)
    }

    fn holds(&self, snapshot: &SnapshotName) -> ZfsResult<Vec<String>> {
        self.inner.holds(snapshot)
    }
}

impl<Z: ZfsRead + ZfsWrite> ZfsWrite for RetentionFloor<Z> {
    fn create(
        &self,
        name: &DatasetName,
        _props: &[(String, String)],
        _parents: bool,
    ) -> ZfsResult<()> {
        Err(refused(
            format!("create {name}"),
            "not offered to network peers",
        ))
    }

    fn snapshot(&self, snapshots: &[SnapshotName], props: &[(String, String)]) -> ZfsResult<()> {
        self.inner.snapshot(snapshots, props)
    }

    fn snapshot_recursive(
        &self,
        snapshot: &SnapshotName,
        props: &[(String, String)],
    ) -> ZfsResult<()> {
        self.inner.snapshot_recursive(snapshot, props)
    }

    fn destroy_snapshots(&self, snapshots: &[SnapshotName]) -> Vec<DestroyOutcome> {
        let (ok, mut out) = self.filter(snapshots);
        if !ok.is_empty() {
            out.extend(self.inner.destroy_snapshots(&ok));
        }
        // In the order asked.
        out.sort_by_key(|(n, _)| snapshots.iter().position(|s| s == n));
        out
    }

    fn destroy_snapshot_recursive(&self, snapshot: &SnapshotName) -> ZfsResult<()> {
        Err(refused(
            format!("destroy -r {snapshot}"),
            "recursive destroys are not offered to network peers",
        ))
    }

    fn destroy_dataset(&self, name: &DatasetName, _recursive: bool) -> ZfsResult<()> {
        Err(refused(
            format!("destroy {name}"),
            "destroying datasets is not offered to network peers",
        ))
    }

    fn hold(&self, tag: &str, snapshots: &[SnapshotName]) -> ZfsResult<()> {
        self.inner.hold(tag, snapshots)
    }

    fn release(&self, tag: &str, snapshots: &[SnapshotName]) -> ZfsResult<()> {
        self.inner.release(tag, snapshots)
    }

    fn bookmark(&self, snapshot: &SnapshotName, bookmark: &BookmarkName) -> ZfsResult<()> {
        self.inner.bookmark(snapshot, bookmark)
    }

    fn destroy_bookmark(&self, bookmark: &BookmarkName) -> ZfsResult<()> {
        self.inner.destroy_bookmark(bookmark)
    }

    fn clone_snapshot(
        &self,
        snapshot: &SnapshotName,
        _target: &DatasetName,
        _props: &[(String, String)],
    ) -> ZfsResult<()> {
        Err(refused(
            format!("clone {snapshot}"),
            "not offered to network peers",
        ))
    }

    fn promote(&self, clone: &DatasetName) -> ZfsResult<()> {
        Err(refused(
            format!("promote {clone}"),
            "not offered to network peers",
        ))
    }

    fn rename(&self, from: &EntityName, _to: &EntityName) -> ZfsResult<()> {
        Err(refused(
            format!("rename {from}"),
            "not offered to network peers",
        ))
    }

    fn rollback(&self, snapshot: &SnapshotName, destroy_newer: bool) -> ZfsResult<()> {
        self.inner.rollback(snapshot, destroy_newer)
    }

    fn set_props(&self, name: &EntityName, props: &[(String, String)]) -> ZfsResult<()> {
        self.inner.set_props(name, props)
    }

    fn receive_abort(&self, target: &DatasetName) -> ZfsResult<()> {
        self.inner.receive_abort(target)
    }

    fn inherit(&self, name: &EntityName, property: &str) -> ZfsResult<()> {
        self.inner.inherit(name, property)
    }
}

impl<Z: ZfsStream> ZfsStream for RetentionFloor<Z> {
    type Send = Z::Send;
    type Recv = Z::Recv;

    fn send(&self, spec: &SendSpec) -> ZfsResult<Self::Send> {
        self.inner.send(spec)
    }

    fn receive(&self, spec: &RecvSpec) -> ZfsResult<Self::Recv> {
        self.inner.receive(spec)
    }

    fn send_estimate(&self, spec: &SendSpec) -> ZfsResult<Option<u64>> {
        self.inner.send_estimate(spec)
    }
}

#[cfg(all(test, feature = "test-util"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::FakeZfs;

    fn snap(s: &str) -> SnapshotName {
        SnapshotName::parse(s).unwrap()
    }

    #[test]
    fn never_the_newest_nor_a_held_snapshot_nor_a_dataset() {
        let z = Arc::new(FakeZfs::from_fixture(
            "+ tank\n+ tank/a b\n+ \"tank/a b@s1\"\n+ \"tank/a b@s2\" hold=other-job\n+ \"tank/a b@s3\"\n+ \"tank/a b@s4\"\n+ tank/c\n+ tank/c@only\n",
        ));
        let f = RetentionFloor::new(z.clone());
        let asked = [
            snap("tank/a b@s4"),   // newest: refused
            snap("tank/a b@s1"),   // fine
            snap("tank/a b@s2"),   // held: refused
            snap("tank/c@only"),   // newest (and only): refused
            snap("tank/a b@none"), // left to ZFS (idempotent here)
            snap("tank/zz@x"),     // no dataset
        ];
        let out = f.destroy_snapshots(&asked);
        let got: Vec<(&str, Option<ZfsErrorKind>)> = out
            .iter()
            .map(|(n, r)| (n.as_str(), r.as_ref().err().map(|e| e.kind.clone())))
            .collect();
        assert_eq!(
            got,
            vec![
                ("tank/a b@s4", Some(ZfsErrorKind::PermissionDenied)),
                ("tank/a b@s1", None),
                ("tank/a b@s2", Some(ZfsErrorKind::PermissionDenied)),
                ("tank/c@only", Some(ZfsErrorKind::PermissionDenied)),
                ("tank/a b@none", None),
                ("tank/zz@x", Some(ZfsErrorKind::NotFound)),
            ]
        );
        // s3 is now the newest but one; destroying it is fine, s4 stays.
        assert!(f.destroy_snapshots(&[snap("tank/a b@s3")])[0].1.is_ok());
        let left: Vec<String> = z
            .list(&ListSpec {
                roots: vec![DatasetName::parse("tank").unwrap()],
                recursive: true,
                snapshots: true,
                bookmarks: false,
                user_props: Vec::new(),
            })
            .unwrap()
            .iter()
            .flat_map(|d| {
                d.snapshots()
                    .map(|v| v.name.as_str().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(left, ["tank/a b@s2", "tank/a b@s4", "tank/c@only"]);
        let ds = DatasetName::parse("tank/c").unwrap();
        for e in [
            f.destroy_dataset(&ds, true).unwrap_err(),
            f.destroy_snapshot_recursive(&snap("tank/c@only"))
                .unwrap_err(),
            f.create(&ds, &[], true).unwrap_err(),
            f.promote(&ds).unwrap_err(),
        ] {
            assert_eq!(e.kind, ZfsErrorKind::PermissionDenied, "{e}");
        }
    }
}
