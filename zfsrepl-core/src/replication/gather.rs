//! Reading what the planner needs from both sides: one listing per root,
//! which targets were modified since their latest snapshot, and the
//! decoded resume tokens ([`gather_tree_input`]).
//!
//! Target modification is read where ZFS can say it:
//! - OpenZFS: the `written` property (bytes written since the latest
//!   snapshot), one `zfs get` for every target dataset. `written` came with
//!   the same generation of ZFS as bookmarks (feature flags), so a host with
//!   bookmarks is asked for it;
//! - older ZFS (zfs-fuse has no `written`): `referenced` of each dataset
//!   against its latest snapshot, one `zfs get`. This sees changes once ZFS
//!   has committed them (zfs-fuse: seconds after the write) and cannot see a
//!   change that leaves the referenced size exactly equal (a file rewritten
//!   in place with the same size). Targets zfsrepl receives into are
//!   unmounted (`receive -u`), which is what keeps them unmodified.

use std::collections::{BTreeMap, BTreeSet};

use super::plan::{ResumeTokenInfo, TreeInput};
use crate::name::{DatasetName, EntityName};
use crate::zfs::resume::decode_resume_token;
use crate::zfs::{Dataset, ListSpec, ZfsErrorKind, ZfsRead, ZfsResult};

/// The target datasets written to since their latest snapshot (see the
/// module docs for how each ZFS is asked). Datasets without snapshots are
/// never reported: nothing is received onto them incrementally.
///
/// # Errors
/// When `zfs get` fails.
pub fn modified_targets<D: ZfsRead + ?Sized>(
    dst: &D,
    targets: &[Dataset],
) -> ZfsResult<BTreeSet<DatasetName>> {
    let with_snaps: Vec<&Dataset> = targets
        .iter()
        .filter(|d| d.snapshots().next().is_some())
        .collect();
    let mut out = BTreeSet::new();
    if with_snaps.is_empty() {
        return Ok(out);
    }
    if dst.capabilities().bookmarks {
        let names: Vec<EntityName> = with_snaps
            .iter()
            .map(|d| EntityName::Dataset(d.name.clone()))
            .collect();
        for p in dst.get_props(&names, &["written"], false)? {
            if let EntityName::Dataset(d) = &p.name
                && p.value.parse::<u64>().is_ok_and(|w| w > 0)
            {
                out.insert(d.clone());
            }
        }
        return Ok(out);
    }
    let mut names = Vec::with_capacity(with_snaps.len() * 2);
    for d in &with_snaps {
        names.push(EntityName::Dataset(d.name.clone()));
        if let Some(latest) = d.snapshots().max_by_key(|v| v.createtxg) {
            names.push(EntityName::parse(latest.name.as_str()).map_err(|e| {
                crate::zfs::ZfsError::new("modified check", ZfsErrorKind::Other, e.to_string())
            })?);
        }
    }
    let props = dst.get_props(&names, &["referenced"], false)?;
    let value = |n: &str| {
        props
            .iter()
            .find(|p| p.name.as_str() == n)
            .map(|p| p.value.clone())
    };
    for d in with_snaps {
        let Some(latest) = d.snapshots().max_by_key(|v| v.createtxg) else {
            continue;
        };
        let (head, snap) = (value(d.name.as_str()), value(latest.name.as_str()));
        if head.is_some() && snap.is_some() && head != snap {
            out.insert(d.name.clone());
        }
    }
    Ok(out)
}

/// Decodes the targets' `receive_resume_token`s. A token that does not
/// decode is left out: the planner then discards the partial receive.
#[must_use]
pub fn decode_tokens(targets: &[Dataset]) -> BTreeMap<DatasetName, ResumeTokenInfo> {
    targets
        .iter()
        .filter_map(|d| {
            let t = decode_resume_token(d.receive_resume_token.as_deref()?).ok()?;
            Some((
                d.name.clone(),
                ResumeTokenInfo {
                    from_guid: t.fromguid,
                    to_guid: t.toguid,
                },
            ))
        })
        .collect()
}

/// Lists the source and target trees (one process per root; a missing
/// target root is an empty target) and reads target modification and
/// resume tokens: the complete planner input.
///
/// # Errors
/// When a listing fails (other than the target root not existing) or the
/// modification check fails.
pub fn gather_tree_input<S, D>(
    src: &S,
    dst: &D,
    source_root: &DatasetName,
    target_root: &DatasetName,
    recursive: bool,
) -> ZfsResult<TreeInput>
where
    S: ZfsRead + ?Sized,
    D: ZfsRead + ?Sized,
{
    let spec = |root: &DatasetName| ListSpec {
        recursive,
        ..ListSpec::all(vec![root.clone()])
    };
    let source = src.list(&spec(source_root))?;
    let target = match dst.list(&spec(target_root)) {
        Ok(t) => t,
        Err(e) if e.kind == ZfsErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let target_modified = modified_targets(dst, &target)?;
    let resume_tokens = decode_tokens(&target);
    Ok(TreeInput {
        source_root: source_root.clone(),
        target_root: target_root.clone(),
        source,
        target,
        target_modified,
        resume_tokens,
    })
}
