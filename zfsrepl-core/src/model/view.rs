//! Reading the model: `zfs list`, `zfs get`, and the stable textual dump
//! tests assert on.

use std::fmt::Write as _;

use crate::name::{DatasetName, EntityName, SnapshotName};
use crate::zfs::{
    Dataset, DatasetKind, ListSpec, PropValue, Version, VersionName, ZfsErrorKind as K, ZfsResult,
};

use super::props::{self, Native};
use super::state::{Ds, State, err, mark_name, not_found, snap_name};

impl State {
    /// `zfs list -t all -r -o ... root`, one process per root.
    pub(crate) fn list(&mut self, spec: &ListSpec) -> ZfsResult<Vec<Dataset>> {
        let mut out = Vec::new();
        for root in &spec.roots {
            self.count();
            let op = format!("list {root}");
            self.need(root, &op)?;
            let names = if spec.recursive {
                self.subtree(root)
            } else {
                vec![root.clone()]
            };
            out.extend(names.iter().map(|n| self.dataset_record(n, spec)));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }

    fn dataset_record(&self, name: &DatasetName, spec: &ListSpec) -> Dataset {
        let ds = self.get(name).expect("listed");
        let mut versions = Vec::new();
        if spec.snapshots {
            versions.extend(ds.snaps.iter().enumerate().map(|(i, s)| Version {
                name: VersionName::Snapshot(snap_name(name, &s.name)),
                guid: s.guid,
                createtxg: s.createtxg,
                creation: s.creation,
                used: Some(ds.snap_used(i)),
                userrefs: Some(s.holds.len() as u64),
            }));
        }
        if spec.bookmarks && self.caps.bookmarks {
            versions.extend(ds.marks.iter().map(|m| Version {
                name: VersionName::Bookmark(mark_name(name, &m.name)),
                guid: m.guid,
                createtxg: m.createtxg,
                creation: m.creation,
                used: None,
                userrefs: None,
            }));
        }
        let user_props = spec
            .user_props
            .iter()
            .filter_map(|p| props::dataset_value(self, name, p).map(|(v, _)| (p.clone(), v)))
            .collect();
        let mut d = Dataset {
            name: name.clone(),
            kind: ds.kind,
            guid: ds.guid,
            createtxg: ds.createtxg,
            creation: ds.creation,
            used: self.used(name),
            origin: ds.origin.clone(),
            receive_resume_token: ds.partial.as_ref().map(|p| p.token.clone()),
            user_props,
            versions,
        };
        d.sort_versions();
        d
    }

    /// `zfs get [-r] -Hp -o name,property,value,source props names...`.
    pub(crate) fn get_props(
        &mut self,
        names: &[EntityName],
        props: &[&str],
        recursive: bool,
    ) -> ZfsResult<Vec<PropValue>> {
        self.count();
        let op = "get".to_owned();
        for p in props {
            // zfs-fuse predates resumable receive and knows no such property.
            let unknown_here = *p == "receive_resume_token" && !self.caps.resumable;
            if unknown_here || (!props::is_user_prop(p) && Native::parse(p).is_none()) {
                return Err(err(
                    &op,
                    K::InvalidArgument,
                    format!("bad property list: invalid property '{p}'"),
                ));
            }
        }
        let mut entities = Vec::new();
        for n in names {
            match n {
                EntityName::Dataset(d) => {
                    self.need(d, &op)?;
                    if recursive {
                        for sub in self.subtree(d) {
                            entities.extend(self.entities_of(&sub));
                        }
                    } else {
                        entities.push(n.clone());
                    }
                }
                EntityName::Snapshot(s) => {
                    self.need_snap(s, &op)?;
                    entities.push(n.clone());
                }
                EntityName::Bookmark(b) => {
                    if self.mark(b).is_none() {
                        return Err(not_found(&op, b.as_str()));
                    }
                    entities.push(n.clone());
                }
            }
        }
        let mut out = Vec::new();
        for e in entities {
            for p in props {
                let (value, source) = self.prop_value(&e, p);
                out.push(PropValue {
                    name: e.clone(),
                    property: (*p).to_owned(),
                    value,
                    source,
                });
            }
        }
        Ok(out)
    }

    /// A dataset, then its snapshots and bookmarks in txg order.
    fn entities_of(&self, name: &DatasetName) -> Vec<EntityName> {
        let ds = self.get(name).expect("listed");
        let mut out = vec![EntityName::Dataset(name.clone())];
        out.extend(
            ds.snaps
                .iter()
                .map(|s| EntityName::Snapshot(snap_name(name, &s.name))),
        );
        if self.caps.bookmarks {
            out.extend(
                ds.marks
                    .iter()
                    .map(|m| EntityName::Bookmark(mark_name(name, &m.name))),
            );
        }
        out
    }

    /// One property of an existing entity, as `zfs get` prints it.
    fn prop_value(&self, e: &EntityName, prop: &str) -> (String, String) {
        let none = || ("-".to_owned(), "-".to_owned());
        let fixed = |v: String| (v, "-".to_owned());
        let native = Native::parse(prop);
        match e {
            EntityName::Dataset(d) => {
                let ds = self.get(d).expect("checked");
                match native {
                    Some(Native::Type) => fixed(kind_str(ds).into()),
                    Some(Native::Name) => fixed(d.to_string()),
                    Some(Native::Guid) => fixed(ds.guid.to_string()),
                    Some(Native::Createtxg) => fixed(ds.createtxg.to_string()),
                    Some(Native::Creation) => fixed(ds.creation.to_string()),
                    Some(Native::Used) => fixed(self.used(d).to_string()),
                    Some(Native::Referenced) => fixed(ds.referenced().to_string()),
                    // Bytes written since the latest snapshot: the model
                    // counts data, so a write of 0 bytes still shows 1.
                    Some(Native::Written) => fixed(if ds.modified {
                        let last = ds.snaps.last().map_or(0, |s| s.data_bytes);
                        ds.data_bytes.abs_diff(last).max(1).to_string()
                    } else {
                        "0".into()
                    }),
                    Some(Native::Origin) => {
                        fixed(ds.origin.as_ref().map_or("-".into(), ToString::to_string))
                    }
                    Some(Native::Userrefs) => none(),
                    Some(Native::Mounted) if ds.is_fs() => {
                        fixed(if ds.mounted { "yes" } else { "no" }.into())
                    }
                    Some(Native::Mounted) => none(),
                    Some(Native::ReceiveResumeToken) => {
                        fixed(ds.partial.as_ref().map_or("-".into(), |p| p.token.clone()))
                    }
                    _ => props::dataset_value(self, d, prop).unwrap_or_else(none),
                }
            }
            EntityName::Snapshot(s) => {
                let snap = self.snap(s).expect("checked");
                let ds = self.get(&s.dataset()).expect("checked");
                let i = ds.snap_index(s.snap()).expect("checked");
                match native {
                    Some(Native::Type) => fixed("snapshot".into()),
                    Some(Native::Name) => fixed(s.to_string()),
                    Some(Native::Guid) => fixed(snap.guid.to_string()),
                    Some(Native::Createtxg) => fixed(snap.createtxg.to_string()),
                    Some(Native::Creation) => fixed(snap.creation.to_string()),
                    Some(Native::Used) => fixed(ds.snap_used(i).to_string()),
                    Some(Native::Referenced) => {
                        fixed((super::state::EMPTY_FS_BYTES + snap.data_bytes).to_string())
                    }
                    Some(Native::Userrefs) => fixed(snap.holds.len().to_string()),
                    Some(_) => none(),
                    None => snapshot_user_prop(self, s, prop).unwrap_or_else(none),
                }
            }
            EntityName::Bookmark(b) => {
                let m = self.mark(b).expect("checked");
                match native {
                    Some(Native::Type) => fixed("bookmark".into()),
                    Some(Native::Name) => fixed(b.to_string()),
                    Some(Native::Guid) => fixed(m.guid.to_string()),
                    Some(Native::Createtxg) => fixed(m.createtxg.to_string()),
                    Some(Native::Creation) => fixed(m.creation.to_string()),
                    _ => none(),
                }
            }
        }
    }

    /// A stable listing in the fixture syntax: each dataset (sorted by
    /// name), then its snapshots and bookmarks in txg order, with the state
    /// tests care about as attributes.
    pub(crate) fn dump(&self) -> String {
        let mut out = String::new();
        for (name, ds) in &self.datasets {
            let mut attrs = Vec::new();
            if ds.kind == DatasetKind::Volume {
                attrs.push("type=volume".to_owned());
            }
            if let Some(o) = &ds.origin {
                attrs.push(format!("origin={}", quote(o.as_str())));
            }
            for (k, v) in ds.props.effective() {
                attrs.push(format!("{k}={}", quote(&v)));
            }
            if ds.is_fs() && !ds.mounted {
                attrs.push("mounted=no".into());
            }
            if ds.partial.is_some() {
                attrs.push("receive_resume_token=...".into());
            }
            line(&mut out, name.as_str(), &attrs);
            let mut versions: Vec<(u64, bool, String, Vec<String>)> = Vec::new();
            for s in &ds.snaps {
                let mut a: Vec<String> = s
                    .holds
                    .iter()
                    .map(|h| format!("hold={}", quote(h)))
                    .collect();
                a.extend(
                    s.props
                        .effective()
                        .iter()
                        .map(|(k, v)| format!("{k}={}", quote(v))),
                );
                versions.push((
                    s.createtxg.0,
                    false,
                    snap_name(name, &s.name).to_string(),
                    a,
                ));
            }
            for m in &ds.marks {
                versions.push((
                    m.createtxg.0,
                    true,
                    mark_name(name, &m.name).to_string(),
                    Vec::new(),
                ));
            }
            // Snapshots before their bookmarks, so the dump replays.
            versions.sort();
            for (_, _, n, a) in versions {
                line(&mut out, &n, &a);
            }
        }
        out
    }
}

fn kind_str(ds: &Ds) -> &'static str {
    match ds.kind {
        DatasetKind::Filesystem => "filesystem",
        DatasetKind::Volume => "volume",
    }
}

/// A user property of a snapshot: set on it, else its dataset's value
/// (snapshots inherit user properties from their filesystem).
fn snapshot_user_prop(state: &State, s: &SnapshotName, prop: &str) -> Option<(String, String)> {
    let snap = state.snap(s)?;
    if let Some((v, src)) = snap.props.get(prop) {
        return Some((v.to_owned(), src.as_str().to_owned()));
    }
    let ds = s.dataset();
    let (v, src) = props::dataset_value(state, &ds, prop)?;
    let src = if src == "local" || src == "received" {
        format!("inherited from {ds}")
    } else {
        src
    };
    Some((v, src))
}

/// Quotes a fixture token when it has a space (or is empty).
pub(crate) fn quote(s: &str) -> String {
    if s.is_empty() || s.contains(char::is_whitespace) {
        format!("\"{s}\"")
    } else {
        s.to_owned()
    }
}

fn line(out: &mut String, name: &str, attrs: &[String]) {
    let _ = write!(out, "+ {}", quote(name));
    for a in attrs {
        let _ = write!(out, " {a}");
    }
    out.push('\n');
}
