//! The `zfs` subcommands that change state (create, snapshot, destroy,
//! hold, release, bookmark, clone, promote, rename, rollback, set,
//! inherit), with OpenZFS's checks, messages and atomicity, and the count
//! of `zfs` processes each would have run.

use std::collections::BTreeSet;

use crate::name::{BookmarkName, DatasetName, EntityName, SnapshotName};
use crate::zfs::{DatasetKind, DestroyOutcome, ZfsErrorKind as K, ZfsResult};

use super::props::{self, On};
use super::state::{Ds, Mark, PropSet, Snap, Stamp, State, err, mark_name, not_found, snap_name};

/// A user hold tag is a ZAP name: at most 255 bytes.
const MAX_TAG_LEN: usize = 255;

/// The kind of a dataset for property checks.
fn on_for(ds: &Ds) -> On {
    if ds.is_fs() {
        On::Filesystem
    } else {
        On::Volume
    }
}

/// Checks every `prop=value` for an entity, as `zfs create -o`/`zfs set` do.
fn check_props(op: &str, name: &str, on: On, props: &[(String, String)]) -> ZfsResult<()> {
    for (k, v) in props {
        props::check_set(on, k, v).map_err(|why| {
            err(
                op,
                K::InvalidArgument,
                format!("cannot set property for '{name}': {why}"),
            )
        })?;
    }
    Ok(())
}

impl State {
    /// `zfs create [-p] [-o p=v]... name`.
    pub(crate) fn create(
        &mut self,
        name: &DatasetName,
        props: &[(String, String)],
        parents: bool,
    ) -> ZfsResult<()> {
        self.count();
        let op = format!("create {name}");
        check_props(&op, name.as_str(), On::Filesystem, props)?;
        if self.get(name).is_some() {
            return Err(err(
                &op,
                K::AlreadyExists,
                format!("cannot create '{name}': dataset already exists"),
            ));
        }
        let pool = DatasetName::parse(name.pool()).expect("the pool of a valid name is valid");
        if self.get(&pool).is_none() {
            return Err(err(
                &op,
                K::NotFound,
                format!("cannot create '{name}': no such pool '{pool}'"),
            ));
        }
        let parent = name
            .parent()
            .expect("not a pool: the pool exists and the name does not");
        if let Some(vol) = self.below_volume(&parent) {
            return Err(err(
                &op,
                K::InvalidArgument,
                format!("cannot create '{name}': parent '{vol}' is not a filesystem"),
            ));
        }
        if self.get(&parent).is_none() && !parents {
            return Err(err(
                &op,
                K::NotFound,
                format!("cannot create '{name}': parent does not exist"),
            ));
        }
        self.ensure_parents(&parent);
        let stamp = self.tick();
        self.insert_dataset(name, DatasetKind::Filesystem, stamp, props);
        Ok(())
    }

    /// Creates the missing filesystems down to `name` (`zfs create -p`).
    pub(crate) fn ensure_parents(&mut self, name: &DatasetName) {
        let mut missing = Vec::new();
        let mut cur = Some(name.clone());
        while let Some(n) = cur {
            if self.get(&n).is_some() {
                break;
            }
            cur = n.parent();
            missing.push(n);
        }
        for n in missing.into_iter().rev() {
            let stamp = self.tick();
            self.insert_dataset(&n, DatasetKind::Filesystem, stamp, &[]);
        }
    }

    /// Adds a new, empty dataset with local properties.
    pub(crate) fn insert_dataset(
        &mut self,
        name: &DatasetName,
        kind: DatasetKind,
        stamp: Stamp,
        props: &[(String, String)],
    ) -> &mut Ds {
        let guid = self.new_guid();
        let mut ds = Ds::new(kind, guid, stamp);
        ds.props.local.extend(props.iter().cloned());
        ds.mounted = ds.can_mount();
        self.datasets.entry(name.clone()).or_insert(ds)
    }

    /// Why `s` cannot be taken now, if it cannot.
    fn check_new_snapshot(&self, op: &str, s: &SnapshotName) -> ZfsResult<()> {
        let ds = self.need(&s.dataset(), op)?;
        if ds.snap(s.snap()).is_some() {
            return Err(err(
                op,
                K::AlreadyExists,
                format!("cannot create snapshot '{s}': dataset already exists"),
            ));
        }
        Ok(())
    }

    /// Takes `s` at `stamp`; the dataset is then unmodified.
    fn take_snapshot(&mut self, s: &SnapshotName, stamp: Stamp, props: &[(String, String)]) {
        let guid = self.new_guid();
        let ds = self.get_mut(&s.dataset()).expect("checked");
        ds.modified = false;
        let mut snap = Snap {
            name: s.snap().to_owned(),
            guid,
            createtxg: stamp.txg,
            creation: stamp.creation,
            content: ds.content,
            data_bytes: ds.data_bytes,
            holds: BTreeSet::new(),
            props: PropSet::default(),
        };
        snap.props.local.extend(props.iter().cloned());
        ds.insert_snap(snap);
    }

    /// `zfs snapshot [-o p=v]... a@x b@y ...`: one atomic process (one txg)
    /// where ZFS takes several snapshots at once; otherwise one process per
    /// snapshot, stopping at the first failure (earlier ones stay).
    pub(crate) fn snapshot(
        &mut self,
        snaps: &[SnapshotName],
        props: &[(String, String)],
    ) -> ZfsResult<()> {
        if snaps.is_empty() {
            return Ok(());
        }
        if !self.caps.multi_snapshot {
            for s in snaps {
                self.count();
                let op = format!("snapshot {s}");
                check_props(&op, s.as_str(), On::Snapshot, props)?;
                self.check_new_snapshot(&op, s)?;
                let stamp = self.tick();
                self.take_snapshot(s, stamp, props);
            }
            return Ok(());
        }
        self.count();
        let op = format!(
            "snapshot {}",
            snaps
                .iter()
                .map(SnapshotName::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        );
        check_props(&op, snaps[0].as_str(), On::Snapshot, props)?;
        // lzc_snapshot takes all snapshots in one txg, so they must share a
        // pool and name each filesystem once; any failure means none is
        // taken.
        let mut seen = BTreeSet::new();
        for s in snaps {
            if s.dataset().pool() != snaps[0].dataset().pool() {
                return Err(err(
                    &op,
                    K::InvalidArgument,
                    format!("cannot create snapshot '{s}': snapshots must all be in the same pool"),
                ));
            }
            if !seen.insert(s.dataset()) {
                return Err(err(
                    &op,
                    K::InvalidArgument,
                    format!(
                        "cannot create snapshot '{s}': multiple snapshots of same fs not allowed"
                    ),
                ));
            }
            self.check_new_snapshot(&op, s)?;
        }
        let stamp = self.tick();
        for s in snaps {
            self.take_snapshot(s, stamp, props);
        }
        Ok(())
    }

    /// `zfs snapshot -r ds@x`: the dataset and every descendant, in one txg,
    /// or none of them.
    pub(crate) fn snapshot_recursive(
        &mut self,
        snapshot: &SnapshotName,
        props: &[(String, String)],
    ) -> ZfsResult<()> {
        self.count();
        let op = format!("snapshot -r {snapshot}");
        check_props(&op, snapshot.as_str(), On::Snapshot, props)?;
        let root = snapshot.dataset();
        self.need(&root, &op)?;
        let mut all = Vec::new();
        for ds in self.subtree(&root) {
            let s = SnapshotName::new(ds, snapshot.snap()).map_err(|e| {
                err(
                    &op,
                    K::InvalidArgument,
                    format!("cannot create snapshot '{snapshot}': {e}"),
                )
            })?;
            self.check_new_snapshot(&op, &s)?;
            all.push(s);
        }
        let stamp = self.tick();
        for s in &all {
            self.take_snapshot(s, stamp, props);
        }
        Ok(())
    }

    /// Why the snapshot cannot be destroyed, if it cannot.
    fn check_destroy_snapshot(&self, op: &str, s: &SnapshotName) -> ZfsResult<()> {
        let snap = self.snap(s).expect("caller checked existence");
        let deps = self.dependents(s);
        if !deps.is_empty() {
            return Err(err(
                op,
                K::HasClones,
                format!(
                    "cannot destroy '{s}': snapshot has dependent clones\nuse '-R' to destroy the following datasets:\n{}",
                    deps.join("\n")
                ),
            ));
        }
        if !snap.holds.is_empty() {
            // The kernel answers EBUSY; the model knows it is a hold.
            return Err(err(
                op,
                K::Held,
                format!("cannot destroy snapshot {s}: dataset is busy"),
            ));
        }
        Ok(())
    }

    fn remove_snapshot(&mut self, s: &SnapshotName) {
        if let Some(ds) = self.get_mut(&s.dataset()) {
            ds.snaps.retain(|x| x.name != s.snap());
        }
    }

    /// `zfs destroy -r fs@name`: the snapshot `name` of `fs` and of every
    /// descendant that has one, all or none (one process).
    pub(crate) fn destroy_snapshot_recursive(&mut self, s: &SnapshotName) -> ZfsResult<()> {
        self.count();
        let op = format!("destroy -r {s}");
        if self.snap(s).is_none() {
            return Err(err(
                &op,
                K::NotFound,
                "could not find any snapshots to destroy; check snapshot names.",
            ));
        }
        let root = s.dataset();
        let all: Vec<SnapshotName> = self
            .datasets
            .keys()
            .filter(|d| d.is_within(&root))
            .filter_map(|d| d.snapshot(s.snap()).ok())
            .filter(|x| self.snap(x).is_some())
            .collect();
        for x in &all {
            self.check_destroy_snapshot(&op, x)?;
        }
        for x in &all {
            self.remove_snapshot(x);
        }
        self.tick();
        Ok(())
    }

    /// `zfs destroy fs@a,b,c` per dataset where ZFS has comma lists,
    /// otherwise `zfs destroy fs@a` per snapshot.
    pub(crate) fn destroy_snapshots(&mut self, snaps: &[SnapshotName]) -> Vec<DestroyOutcome> {
        let mut outcomes: Vec<Option<ZfsResult<()>>> = vec![None; snaps.len()];
        if !self.caps.comma_destroy {
            for (i, s) in snaps.iter().enumerate() {
                self.count();
                let op = format!("destroy {s}");
                let r = if self.snap(s).is_none() {
                    Err(err(
                        &op,
                        K::NotFound,
                        "could not find any snapshots to destroy; check snapshot names.",
                    ))
                } else {
                    self.check_destroy_snapshot(&op, s).map(|()| {
                        self.remove_snapshot(s);
                        self.tick();
                    })
                };
                outcomes[i] = Some(r);
            }
            return zip_outcomes(snaps, outcomes);
        }
        // One process per dataset, in order of first appearance.
        let mut groups: Vec<(DatasetName, Vec<usize>)> = Vec::new();
        for (i, s) in snaps.iter().enumerate() {
            let ds = s.dataset();
            match groups.iter_mut().find(|(d, _)| *d == ds) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((ds, vec![i])),
            }
        }
        for (ds, idx) in groups {
            self.count();
            let list = idx
                .iter()
                .map(|&i| snaps[i].snap())
                .collect::<Vec<_>>()
                .join(",");
            let op = format!("destroy {ds}@{list}");
            let present: Vec<usize> = idx
                .iter()
                .copied()
                .filter(|&i| self.snap(&snaps[i]).is_some())
                .collect();
            if present.is_empty() {
                // zfs destroy skips names that do not exist, and fails only
                // when none of the list does.
                for &i in &idx {
                    outcomes[i] = Some(Err(err(
                        &op,
                        K::NotFound,
                        "could not find any snapshots to destroy; check snapshot names.",
                    )));
                }
                continue;
            }
            let checks: Vec<(usize, ZfsResult<()>)> = present
                .iter()
                .map(|&i| (i, self.check_destroy_snapshot(&op, &snaps[i])))
                .collect();
            let failed: Vec<&str> = checks
                .iter()
                .filter(|(_, r)| r.is_err())
                .map(|(i, _)| snaps[*i].as_str())
                .collect();
            if failed.is_empty() {
                for &i in &present {
                    self.remove_snapshot(&snaps[i]);
                }
                self.tick();
                for &i in &idx {
                    // Names that did not exist were skipped silently.
                    outcomes[i] = Some(Ok(()));
                }
                continue;
            }
            // The kernel checks the whole list before destroying any of
            // it: one held or cloned snapshot keeps all of them.
            let blocker = failed.join(", ");
            for &i in &idx {
                outcomes[i] = Some(Err(err(
                    &op,
                    K::Busy,
                    format!(
                        "cannot destroy snapshot {}: not destroyed, the list failed as a whole because of {blocker}",
                        snaps[i]
                    ),
                )));
            }
            for (i, r) in checks {
                if r.is_err() {
                    outcomes[i] = Some(r);
                }
            }
        }
        zip_outcomes(snaps, outcomes)
    }

    /// `zfs destroy [-r] name`.
    pub(crate) fn destroy_dataset(&mut self, name: &DatasetName, recursive: bool) -> ZfsResult<()> {
        self.count();
        let op = format!("destroy {}{name}", if recursive { "-r " } else { "" });
        let ds = self.need(name, &op)?;
        let is_pool = name.parent().is_none();
        if is_pool && !recursive {
            return Err(err(
                &op,
                K::InvalidArgument,
                format!(
                    "cannot destroy '{name}': operation does not apply to pools\nuse 'zfs destroy -r {name}' to destroy all datasets in the pool\nuse 'zpool destroy {name}' to destroy the pool itself"
                ),
            ));
        }
        let below: Vec<DatasetName> = self.subtree(name).into_iter().skip(1).collect();
        if !recursive && (!below.is_empty() || !ds.snaps.is_empty()) {
            let mut list: Vec<String> = below.iter().map(ToString::to_string).collect();
            list.extend(ds.snaps.iter().map(|s| format!("{name}@{}", s.name)));
            return Err(err(
                &op,
                K::HasChildren,
                format!(
                    "cannot destroy '{name}': filesystem has children\nuse '-r' to destroy the following datasets:\n{}",
                    list.join("\n")
                ),
            ));
        }
        // What goes: everything below, and the dataset itself unless it is
        // a pool's root (which stays, emptied of snapshots).
        let subtree = self.subtree(name);
        let removed: Vec<DatasetName> = if is_pool { below } else { subtree.clone() };
        let snaps_doomed: Vec<SnapshotName> = subtree
            .iter()
            .flat_map(|d| {
                self.get(d)
                    .expect("listed")
                    .snaps
                    .iter()
                    .map(move |s| snap_name(d, &s.name))
            })
            .collect();
        // Clones inside the subtree go with it; clones elsewhere block it.
        let outside: Vec<String> = snaps_doomed
            .iter()
            .flat_map(|s| self.dependents(s))
            .filter(|dep| {
                let dep_ds = dep.strip_suffix("/%recv").unwrap_or(dep);
                !DatasetName::parse(dep_ds).is_ok_and(|d| d.is_within(name))
            })
            .collect();
        if !outside.is_empty() {
            return Err(err(
                &op,
                K::HasClones,
                format!(
                    "cannot destroy '{name}': filesystem has dependent clones\nuse '-R' to destroy the following datasets:\n{}",
                    outside.join("\n")
                ),
            ));
        }
        if let Some(s) = snaps_doomed
            .iter()
            .find(|s| self.snap(s).is_some_and(|x| !x.holds.is_empty()))
        {
            return Err(err(
                &op,
                K::Held,
                format!("cannot destroy snapshot {s}: dataset is busy"),
            ));
        }
        for d in &removed {
            self.datasets.remove(d);
        }
        if is_pool && let Some(root) = self.get_mut(name) {
            root.snaps.clear();
            root.marks.clear();
        }
        self.tick();
        Ok(())
    }

    /// `zfs hold tag snap...`: all or none.
    pub(crate) fn hold(&mut self, tag: &str, snaps: &[SnapshotName]) -> ZfsResult<()> {
        self.count();
        let op = format!("hold {tag}");
        let mut seen = BTreeSet::new();
        for s in snaps {
            let bad_tag = if tag.is_empty() {
                Some("tag must not be empty")
            } else if tag.len() > MAX_TAG_LEN {
                Some("tag too long")
            } else {
                None
            };
            if let Some(why) = bad_tag {
                return Err(err(
                    &op,
                    K::InvalidArgument,
                    format!("cannot hold snapshot '{s}': {why}"),
                ));
            }
            let snap = self.snap(s).ok_or_else(|| {
                err(
                    &op,
                    K::NotFound,
                    format!("cannot hold snapshot '{s}': dataset does not exist"),
                )
            })?;
            if snap.holds.contains(tag) || !seen.insert(s) {
                return Err(err(
                    &op,
                    K::AlreadyExists,
                    format!("cannot hold snapshot '{s}': tag already exists on this dataset"),
                ));
            }
        }
        for s in snaps {
            self.snap_mut(s)
                .expect("checked")
                .holds
                .insert(tag.to_owned());
        }
        self.tick();
        Ok(())
    }

    /// `zfs release tag snap...`: all or none.
    pub(crate) fn release(&mut self, tag: &str, snaps: &[SnapshotName]) -> ZfsResult<()> {
        self.count();
        let op = format!("release {tag}");
        let mut seen = BTreeSet::new();
        for s in snaps {
            let snap = self.snap(s).ok_or_else(|| {
                err(
                    &op,
                    K::NotFound,
                    format!("cannot release hold from snapshot '{s}': dataset does not exist"),
                )
            })?;
            if !snap.holds.contains(tag) || !seen.insert(s) {
                return Err(err(
                    &op,
                    K::NotFound,
                    format!("cannot release hold from snapshot '{s}': no such tag on this dataset"),
                ));
            }
        }
        for s in snaps {
            self.snap_mut(s).expect("checked").holds.remove(tag);
        }
        self.tick();
        Ok(())
    }

    /// `zfs holds snap`.
    pub(crate) fn holds(&mut self, s: &SnapshotName) -> ZfsResult<Vec<String>> {
        self.count();
        let snap = self.need_snap(s, &format!("holds {s}"))?;
        Ok(snap.holds.iter().cloned().collect())
    }

    /// `zfs bookmark snap bm`: keeps the snapshot's guid, createtxg and
    /// creation, which is what makes a bookmark an incremental source.
    pub(crate) fn bookmark(&mut self, s: &SnapshotName, b: &BookmarkName) -> ZfsResult<()> {
        self.count();
        let op = format!("bookmark {s} {b}");
        if s.dataset() != b.dataset() {
            return Err(err(
                &op,
                K::InvalidArgument,
                format!(
                    "cannot create bookmark '{b}': source is not an ancestor of the new bookmark's dataset"
                ),
            ));
        }
        let snap = self.need_snap(s, &op)?.clone();
        if self.mark(b).is_some() {
            return Err(err(
                &op,
                K::AlreadyExists,
                format!("cannot create bookmark '{b}': bookmark exists"),
            ));
        }
        let ds = self.get_mut(&b.dataset()).expect("checked");
        let mark = Mark {
            name: b.mark().to_owned(),
            guid: snap.guid,
            createtxg: snap.createtxg,
            creation: snap.creation,
            data_bytes: snap.data_bytes,
        };
        let at = ds.marks.partition_point(|m| m.createtxg <= mark.createtxg);
        ds.marks.insert(at, mark);
        self.tick();
        Ok(())
    }

    /// `zfs destroy ds#bm`.
    pub(crate) fn destroy_bookmark(&mut self, b: &BookmarkName) -> ZfsResult<()> {
        self.count();
        let op = format!("destroy {b}");
        if self.mark(b).is_none() {
            return Err(err(
                &op,
                K::NotFound,
                format!("bookmark '{b}' does not exist"),
            ));
        }
        self.get_mut(&b.dataset())
            .expect("checked")
            .marks
            .retain(|m| m.name != b.mark());
        self.tick();
        Ok(())
    }

    /// Why a new dataset `target` cannot be created by clone or receive.
    fn check_new_dataset(&self, op: &str, target: &DatasetName) -> ZfsResult<()> {
        if self.get(target).is_some() {
            return Err(err(
                op,
                K::AlreadyExists,
                format!("cannot create '{target}': dataset already exists"),
            ));
        }
        let Some(parent) = target.parent() else {
            return Err(err(
                op,
                K::NotFound,
                format!("cannot create '{target}': no such pool '{target}'"),
            ));
        };
        if self.get(&parent).is_none() {
            return Err(err(
                op,
                K::NotFound,
                format!("cannot create '{target}': parent does not exist"),
            ));
        }
        if let Some(vol) = self.below_volume(&parent) {
            return Err(err(
                op,
                K::InvalidArgument,
                format!("cannot create '{target}': parent '{vol}' is not a filesystem"),
            ));
        }
        Ok(())
    }

    /// `zfs clone [-o p=v]... snap target`: a new dataset sharing the
    /// snapshot's data, depending on it.
    pub(crate) fn clone_snapshot(
        &mut self,
        s: &SnapshotName,
        target: &DatasetName,
        props: &[(String, String)],
    ) -> ZfsResult<()> {
        self.count();
        let op = format!("clone {s} {target}");
        let snap = self.need_snap(s, &op)?.clone();
        let kind = self.get(&s.dataset()).expect("has the snapshot").kind;
        check_props(
            &op,
            target.as_str(),
            if kind == DatasetKind::Filesystem {
                On::Filesystem
            } else {
                On::Volume
            },
            props,
        )?;
        if target.pool() != s.dataset().pool() {
            return Err(err(
                &op,
                K::InvalidArgument,
                format!("cannot create '{target}': source and target pools differ"),
            ));
        }
        self.check_new_dataset(&op, target)?;
        let stamp = self.tick();
        let ds = self.insert_dataset(target, kind, stamp, props);
        ds.origin = Some(s.clone());
        ds.content = snap.content;
        ds.data_bytes = snap.data_bytes;
        Ok(())
    }

    /// `zfs promote clone`: the origin's snapshots up to and including the
    /// clone's origin move to the clone, which stops depending on anything;
    /// the former origin filesystem becomes a clone of the moved snapshot.
    pub(crate) fn promote(&mut self, clone: &DatasetName) -> ZfsResult<()> {
        self.count();
        let op = format!("promote {clone}");
        let ds = self.need(clone, &op)?;
        let Some(origin) = ds.origin.clone() else {
            return Err(err(
                &op,
                K::InvalidArgument,
                format!("cannot promote '{clone}': not a cloned filesystem"),
            ));
        };
        let origin_fs = origin.dataset();
        let Some(o) = self.get(&origin_fs) else {
            return Err(not_found(&op, origin_fs.as_str()));
        };
        let origin_txg = o.snap(origin.snap()).map_or(o.createtxg, |s| s.createtxg);
        let moving: Vec<Snap> = o
            .snaps
            .iter()
            .filter(|s| s.createtxg <= origin_txg)
            .cloned()
            .collect();
        if let Some(c) = moving.iter().find(|m| ds.snap(&m.name).is_some()) {
            return Err(err(
                &op,
                K::AlreadyExists,
                format!(
                    "cannot promote '{clone}': snapshot name '{}' from origin \nconflicts with '{}' from target",
                    c.name, c.name
                ),
            ));
        }
        let grand_origin = o.origin.clone();
        let moved_names: BTreeSet<String> = moving.iter().map(|s| s.name.clone()).collect();
        {
            let o = self.get_mut(&origin_fs).expect("checked");
            o.snaps.retain(|s| !moved_names.contains(&s.name));
            o.origin = Some(snap_name(clone, origin.snap()));
        }
        {
            let c = self.get_mut(clone).expect("checked");
            c.origin = grand_origin;
            for s in moving {
                c.insert_snap(s);
            }
        }
        // Other clones of the moved snapshots now depend on the promoted
        // filesystem's copies.
        for (name, d) in &mut self.datasets {
            if name == &origin_fs || name == clone {
                continue;
            }
            if let Some(o) = &d.origin
                && o.dataset() == origin_fs
                && moved_names.contains(o.snap())
            {
                d.origin = Some(snap_name(clone, o.snap()));
            }
        }
        self.tick();
        Ok(())
    }

    /// `zfs rename from to`: a dataset (with everything below it) within its
    /// pool, or a snapshot within its dataset.
    pub(crate) fn rename(&mut self, from: &EntityName, to: &EntityName) -> ZfsResult<()> {
        self.count();
        let op = format!("rename {from} {to}");
        match (from, to) {
            (EntityName::Dataset(a), EntityName::Dataset(b)) => self.rename_dataset(&op, a, b),
            (EntityName::Snapshot(a), EntityName::Snapshot(b)) => self.rename_snapshot(&op, a, b),
            (EntityName::Bookmark(_), _) | (_, EntityName::Bookmark(_)) => Err(err(
                &op,
                K::InvalidArgument,
                format!(
                    "cannot rename '{from}': operation not applicable to datasets of this type"
                ),
            )),
            _ => Err(err(
                &op,
                K::InvalidArgument,
                format!("cannot rename to '{to}': snapshot/dataset mismatch"),
            )),
        }
    }

    fn rename_dataset(&mut self, op: &str, a: &DatasetName, b: &DatasetName) -> ZfsResult<()> {
        let ds = self.need(a, op)?;
        if a.parent().is_none() || b.parent().is_none() {
            return Err(err(
                op,
                K::InvalidArgument,
                format!("cannot rename to '{b}': operation does not apply to pools"),
            ));
        }
        if self.get(b).is_some() {
            return Err(err(
                op,
                K::AlreadyExists,
                format!("cannot rename to '{b}': dataset already exists"),
            ));
        }
        if a.pool() != b.pool() {
            return Err(err(
                op,
                K::InvalidArgument,
                format!("cannot rename to '{b}': datasets must be within same pool"),
            ));
        }
        if b.is_within(a) {
            return Err(err(
                op,
                K::InvalidArgument,
                format!(
                    "cannot rename to '{b}': New dataset name cannot be a descendant of current dataset name"
                ),
            ));
        }
        // zfs-fuse cannot unmount a mounted clone to rename it.
        if self.caps.flavor == "zfs-fuse" && ds.origin.is_some() && ds.mounted {
            return Err(err(
                op,
                K::Busy,
                format!("cannot rename '{a}': dataset is busy"),
            ));
        }
        let parent = b.parent().expect("not a pool");
        if self.get(&parent).is_none() {
            return Err(err(
                op,
                K::NotFound,
                format!("cannot rename to '{b}': parent does not exist"),
            ));
        }
        if let Some(vol) = self.below_volume(&parent) {
            return Err(err(
                op,
                K::InvalidArgument,
                format!("cannot rename to '{b}': parent '{vol}' is not a filesystem"),
            ));
        }
        // Every new name, including snapshot and bookmark names, must fit.
        let mut moves = Vec::new();
        for n in self.subtree(a) {
            let too_long = || {
                err(
                    op,
                    K::InvalidArgument,
                    format!("cannot rename to '{b}': name is too long"),
                )
            };
            let nn = n.rebase(a, b).ok_or_else(too_long)?;
            let d = self.get(&n).expect("listed");
            for s in &d.snaps {
                SnapshotName::new(nn.clone(), &s.name).map_err(|_| too_long())?;
            }
            for m in &d.marks {
                BookmarkName::new(nn.clone(), &m.name).map_err(|_| too_long())?;
            }
            moves.push((n, nn));
        }
        for (n, nn) in &moves {
            let d = self.datasets.remove(n).expect("listed");
            self.datasets.insert(nn.clone(), d);
        }
        for d in self.datasets.values_mut() {
            if let Some(o) = &d.origin
                && let Some(nd) = o.dataset().rebase(a, b)
            {
                d.origin = Some(snap_name(&nd, o.snap()));
            }
        }
        self.tick();
        Ok(())
    }

    fn rename_snapshot(&mut self, op: &str, a: &SnapshotName, b: &SnapshotName) -> ZfsResult<()> {
        if a.dataset() != b.dataset() {
            return Err(err(
                op,
                K::InvalidArgument,
                format!("cannot rename to '{b}': snapshots must be part of same dataset"),
            ));
        }
        self.need_snap(a, op)?;
        if self.snap(b).is_some() {
            return Err(err(
                op,
                K::AlreadyExists,
                format!("cannot rename to '{b}': dataset already exists"),
            ));
        }
        self.snap_mut(a).expect("checked").name = b.snap().to_owned();
        for d in self.datasets.values_mut() {
            if d.origin.as_ref() == Some(a) {
                d.origin = Some(b.clone());
            }
        }
        self.tick();
        Ok(())
    }

    /// `zfs rollback [-r] snap`: back to the snapshot's data; newer
    /// snapshots and bookmarks block it unless `-r` destroys them.
    pub(crate) fn rollback(&mut self, s: &SnapshotName, destroy_newer: bool) -> ZfsResult<()> {
        self.count();
        let op = format!("rollback {}{s}", if destroy_newer { "-r " } else { "" });
        let target = self.need_snap(s, &op)?.clone();
        let name = s.dataset();
        let ds = self.get(&name).expect("has the snapshot");
        let newer: Vec<SnapshotName> = ds
            .snaps
            .iter()
            .filter(|x| x.createtxg > target.createtxg)
            .map(|x| snap_name(&name, &x.name))
            .collect();
        let newer_marks: Vec<BookmarkName> = ds
            .marks
            .iter()
            .filter(|m| m.createtxg > target.createtxg)
            .map(|m| mark_name(&name, &m.name))
            .collect();
        if !destroy_newer && (!newer.is_empty() || !newer_marks.is_empty()) {
            let mut list: Vec<String> = newer.iter().map(ToString::to_string).collect();
            list.extend(newer_marks.iter().map(ToString::to_string));
            return Err(err(
                &op,
                K::TargetHasNewerSnapshots,
                format!(
                    "cannot rollback to '{s}': more recent snapshots or bookmarks exist\nuse '-r' to force deletion of the following snapshots and bookmarks:\n{}",
                    list.join("\n")
                ),
            ));
        }
        let clones: Vec<String> = newer.iter().flat_map(|n| self.dependents(n)).collect();
        if !clones.is_empty() {
            return Err(err(
                &op,
                K::HasClones,
                format!(
                    "cannot rollback to '{s}': clones of previous snapshots exist\nuse '-R' to force deletion of the following clones and dependents:\n{}",
                    clones.join("\n")
                ),
            ));
        }
        if let Some(h) = newer
            .iter()
            .find(|n| self.snap(n).is_some_and(|x| !x.holds.is_empty()))
        {
            return Err(err(
                &op,
                K::Held,
                format!("cannot destroy snapshot {h}: dataset is busy"),
            ));
        }
        let ds = self.get_mut(&name).expect("checked");
        ds.snaps.retain(|x| x.createtxg <= target.createtxg);
        ds.marks.retain(|m| m.createtxg <= target.createtxg);
        ds.content = target.content;
        ds.data_bytes = target.data_bytes;
        ds.modified = false;
        self.tick();
        Ok(())
    }

    /// The property target kind of an existing entity.
    fn entity_on(&self, name: &EntityName, op: &str) -> ZfsResult<On> {
        match name {
            EntityName::Dataset(d) => Ok(on_for(self.need(d, op)?)),
            EntityName::Snapshot(s) => self.need_snap(s, op).map(|_| On::Snapshot),
            EntityName::Bookmark(b) => match self.mark(b) {
                Some(_) => Ok(On::Bookmark),
                None => Err(not_found(op, b.as_str())),
            },
        }
    }

    /// `zfs set p=v... name`: one process for all the properties on
    /// OpenZFS; zfs-fuse's `zfs set` takes one property, so one process per
    /// property there, stopping at the first failure (`Capabilities` has no
    /// flag for this; the flavor tells).
    pub(crate) fn set_props(
        &mut self,
        name: &EntityName,
        props: &[(String, String)],
    ) -> ZfsResult<()> {
        if self.caps.flavor == "zfs-fuse" && props.len() > 1 {
            return props
                .iter()
                .try_for_each(|p| self.set_props(name, std::slice::from_ref(p)));
        }
        self.count();
        let op = format!("set {name}");
        let on = self.entity_on(name, &op)?;
        check_props(&op, name.as_str(), on, props)?;
        match name {
            EntityName::Dataset(d) => {
                let ds = self.get_mut(d).expect("checked");
                ds.props.local.extend(props.iter().cloned());
                // canmount=off unmounts, as `zfs set` does through its
                // changelist.
                if !ds.can_mount() {
                    ds.mounted = false;
                }
            }
            EntityName::Snapshot(s) => {
                self.snap_mut(s)
                    .expect("checked")
                    .props
                    .local
                    .extend(props.iter().cloned());
            }
            EntityName::Bookmark(_) => {}
        }
        self.tick();
        Ok(())
    }

    /// `zfs inherit prop name`.
    pub(crate) fn inherit(&mut self, name: &EntityName, prop: &str) -> ZfsResult<()> {
        self.count();
        let op = format!("inherit {prop} {name}");
        let on = self.entity_on(name, &op)?;
        props::check_inherit(on, prop).map_err(|why| {
            err(
                &op,
                K::InvalidArgument,
                format!("cannot inherit {prop} for '{name}': {why}"),
            )
        })?;
        match name {
            EntityName::Dataset(d) => self.get_mut(d).expect("checked").props.clear(prop),
            EntityName::Snapshot(s) => self.snap_mut(s).expect("checked").props.clear(prop),
            EntityName::Bookmark(_) => {}
        }
        self.tick();
        Ok(())
    }

    /// Simulates writing `bytes` of data into a dataset.
    pub(crate) fn write(&mut self, name: &DatasetName, bytes: u64) -> ZfsResult<()> {
        let op = format!("write {name}");
        self.need(name, &op)?;
        self.tick();
        let content = self.new_content();
        let ds = self.get_mut(name).expect("checked");
        ds.content = content;
        ds.data_bytes += bytes;
        ds.modified = true;
        Ok(())
    }

    /// `zfs receive -A target`: discards a partial receive's state.
    pub(crate) fn receive_abort(&mut self, target: &DatasetName) -> ZfsResult<()> {
        self.count();
        let op = format!("receive -A {target}");
        let ds = self.need(target, &op)?;
        let Some(p) = &ds.partial else {
            return Err(err(
                &op,
                K::InvalidArgument,
                format!("'{target}' does not have any resumable receive state to abort"),
            ));
        };
        if p.new_fs {
            // The placeholder of a new filesystem goes with its state.
            self.datasets.remove(target);
        } else {
            self.get_mut(target).expect("checked").partial = None;
        }
        self.tick();
        Ok(())
    }
}

fn zip_outcomes(
    snaps: &[SnapshotName],
    outcomes: Vec<Option<ZfsResult<()>>>,
) -> Vec<DestroyOutcome> {
    snaps
        .iter()
        .cloned()
        .zip(outcomes.into_iter().map(|o| o.unwrap_or(Ok(()))))
        .collect()
}
