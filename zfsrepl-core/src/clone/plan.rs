//! The pure clone-refresh planner: from a spec, the sources' snapshots and
//! the datasets already at the clone names, decide which snapshot each clone
//! should come from and what to create, replace, leave alone or clean up.

use std::collections::BTreeSet;
use std::fmt;

use jiff::Timestamp;
use regex::Regex;
use serde::{Serialize, Serializer};

use crate::name::{DatasetName, NameError, SnapshotName};
use crate::zfs::Dataset;

/// The user property zfsrepl sets on every clone it creates, valued with
/// the spec's name: what makes a clone ours to replace and destroy.
pub const OWNER_PROP: &str = "zfsrepl:clone";

/// Appended to a clone's name for the new clone before the swap.
pub const NEW_SUFFIX: &str = ".zfsrepl-new";

/// Appended to a clone's name (then a Unix time) for the old clone after
/// the swap, until it can be destroyed.
pub const OLD_MARK: &str = ".zfsrepl-old-";

/// One source dataset and the writable clone kept of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClonePair {
    /// The dataset whose snapshots are cloned.
    pub source: DatasetName,
    /// The clone's name.
    pub clone: DatasetName,
}

/// Which snapshot a refresh clones.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// Only snapshots whose short name (after `@`) matches.
    pub pattern: Option<Regex>,
    /// The newest snapshot present (by name) in every source, so that all
    /// the clones show the same point in time; otherwise each source's own
    /// newest.
    pub common: bool,
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Selector", 2)?;
        st.serialize_field("pattern", &self.pattern.as_ref().map(Regex::as_str))?;
        st.serialize_field("common", &self.common)?;
        st.end()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.common {
            "the newest snapshot common to every source"
        } else {
            "the newest snapshot"
        })?;
        if let Some(p) = &self.pattern {
            write!(f, " matching /{}/", p.as_str())?;
        }
        Ok(())
    }
}

/// A staging clone spec: which sources, which clones, which snapshot, and
/// the properties of the clones.
#[derive(Debug, Clone, Serialize)]
pub struct CloneSpec {
    /// The spec's name (the value of [`OWNER_PROP`] on its clones).
    pub name: String,
    /// Sources and their clones.
    pub pairs: Vec<ClonePair>,
    /// Which snapshot to clone.
    pub selector: Selector,
    /// Properties the new clones are created with (`zfs clone -o`).
    pub properties: Vec<(String, String)>,
    /// Properties set once a clone is in place (e.g. `sharenfs`), so the
    /// export points at the clone's final name.
    pub export_properties: Vec<(String, String)>,
}

/// Why a spec is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The name is empty or has characters a property value should not.
    #[error("clone spec name {0:?}: use letters, digits, `-`, `_` and `.`")]
    BadName(String),
    /// No pairs.
    #[error("clone spec {0:?} names no source")]
    Empty(String),
    /// A clone name used twice, or a clone inside a source or another clone.
    #[error("clone spec {spec:?}: {what}")]
    Overlap {
        /// The spec.
        spec: String,
        /// What overlaps.
        what: String,
    },
    /// A clone at the top of a pool, or a name too long for the temporary
    /// names.
    #[error("clone spec {spec:?}: {clone}: {why}")]
    BadClone {
        /// The spec.
        spec: String,
        /// The clone.
        clone: String,
        /// Why.
        why: String,
    },
}

impl CloneSpec {
    /// Checks the spec: a usable name, at least one pair, clones below a
    /// parent, distinct and outside every source and each other, and room
    /// for the temporary names.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), SpecError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(SpecError::BadName(self.name.clone()));
        }
        if self.pairs.is_empty() {
            return Err(SpecError::Empty(self.name.clone()));
        }
        let overlap = |what: String| SpecError::Overlap {
            spec: self.name.clone(),
            what,
        };
        for (i, p) in self.pairs.iter().enumerate() {
            let bad = |why: String| SpecError::BadClone {
                spec: self.name.clone(),
                clone: p.clone.to_string(),
                why,
            };
            if p.clone.parent().is_none() {
                return Err(bad("a clone needs a parent dataset".into()));
            }
            aside_name(&p.clone, Timestamp::MAX).map_err(|e| bad(e.to_string()))?;
            for (j, q) in self.pairs.iter().enumerate() {
                if p.clone.is_within(&q.source) || q.source.is_within(&p.clone) {
                    return Err(overlap(format!(
                        "clone {} overlaps source {}",
                        p.clone, q.source
                    )));
                }
                if i != j && (p.clone.is_within(&q.clone) || q.clone.is_within(&p.clone)) {
                    return Err(overlap(format!(
                        "clones {} and {} overlap",
                        p.clone, q.clone
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The name the new clone gets before the swap.
///
/// # Errors
/// When the name would be too long.
pub fn temp_name(clone: &DatasetName) -> Result<DatasetName, NameError> {
    DatasetName::parse(&format!("{clone}{NEW_SUFFIX}"))
}

/// The name the old clone is moved to at `now`.
///
/// # Errors
/// When the name would be too long.
pub fn aside_name(clone: &DatasetName, now: Timestamp) -> Result<DatasetName, NameError> {
    DatasetName::parse(&format!("{clone}{OLD_MARK}{}", now.as_second()))
}

/// What a refresh does to one clone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum ItemAction {
    /// The clone exists, is ours, and comes from the chosen snapshot.
    UpToDate,
    /// No clone yet: clone to `temp`, then rename into place.
    Create {
        /// The temporary name.
        temp: DatasetName,
    },
    /// Clone to `temp`, move the current clone to `aside`, rename `temp`
    /// into place, then destroy `aside`.
    Replace {
        /// The temporary name.
        temp: DatasetName,
        /// Where the current clone goes.
        aside: DatasetName,
        /// What the current clone was cloned from.
        current_origin: Option<SnapshotName>,
    },
}

impl ItemAction {
    /// The temporary name the new clone is made under (none when up to
    /// date).
    #[must_use]
    pub fn temp(&self) -> Option<&DatasetName> {
        match self {
            Self::UpToDate => None,
            Self::Create { temp } | Self::Replace { temp, .. } => Some(temp),
        }
    }
}

/// One clone's part of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloneItem {
    /// The source.
    pub source: DatasetName,
    /// The clone.
    pub clone: DatasetName,
    /// The snapshot it should come from.
    pub snapshot: SnapshotName,
    /// What to do.
    #[serde(flatten)]
    pub action: ItemAction,
}

/// A refresh plan: data, printed by `--dry-run`, run by the executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClonePlan {
    /// The spec.
    pub spec: String,
    /// Why nothing may be done, when that is so (the current clones then
    /// keep serving).
    pub refused: Option<String>,
    /// Leftovers of earlier refreshes, ours, to destroy first: temporary
    /// clones of a failed run, old clones that were busy.
    pub cleanup: Vec<DatasetName>,
    /// One item per pair (empty when refused).
    pub items: Vec<CloneItem>,
}

impl ClonePlan {
    /// True when there is nothing to do.
    #[must_use]
    pub fn is_noop(&self) -> bool {
        self.refused.is_none()
            && self.cleanup.is_empty()
            && self.items.iter().all(|i| i.action == ItemAction::UpToDate)
    }

    /// True when some clone is created or replaced.
    #[must_use]
    pub fn swaps(&self) -> bool {
        self.items.iter().any(|i| i.action != ItemAction::UpToDate)
    }
}

/// What the planner is given.
#[derive(Debug, Clone, Copy)]
pub struct CloneInput<'a> {
    /// The spec (assumed valid: [`CloneSpec::validate`]).
    pub spec: &'a CloneSpec,
    /// The sources, listed with their snapshots (others are ignored).
    pub sources: &'a [Dataset],
    /// The datasets next to the clones (each clone's parent listed one
    /// level deep, with [`OWNER_PROP`] among the user properties).
    pub existing: &'a [Dataset],
    /// The time of the run (names the old clones).
    pub now: Timestamp,
}

fn owned_by(d: &Dataset, spec: &str) -> bool {
    d.origin.is_some() && d.user_props.get(OWNER_PROP).map(String::as_str) == Some(spec)
}

/// Plans a refresh. Pure: the same input gives the same plan.
#[must_use]
pub fn plan(input: &CloneInput<'_>) -> ClonePlan {
    let spec = input.spec;
    let mut out = ClonePlan {
        spec: spec.name.clone(),
        refused: None,
        cleanup: Vec::new(),
        items: Vec::new(),
    };
    match plan_items(input) {
        Ok((items, cleanup)) => {
            out.items = items;
            out.cleanup = cleanup;
        }
        Err(why) => out.refused = Some(why),
    }
    out
}

type Planned = (Vec<CloneItem>, Vec<DatasetName>);

fn plan_items(input: &CloneInput<'_>) -> Result<Planned, String> {
    let spec = input.spec;
    let snaps = choose_snapshots(input)?;
    let find = |name: &DatasetName| input.existing.iter().find(|d| &d.name == name);
    let mut items = Vec::new();
    let mut cleanup = Vec::new();
    for (pair, snapshot) in spec.pairs.iter().zip(snaps) {
        let temp = temp_name(&pair.clone).map_err(|e| e.to_string())?;
        // Leftovers of earlier runs: ours are cleaned up, anything else at
        // those names stops the refresh.
        for d in input.existing {
            let n = d.name.as_str();
            let leftover = d.name == temp
                || n.strip_prefix(pair.clone.as_str())
                    .and_then(|rest| rest.strip_prefix(OLD_MARK))
                    .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
            if !leftover {
                continue;
            }
            if !owned_by(d, &spec.name) {
                return Err(format!(
                    "{} exists and was not created by zfsrepl for clone spec {:?}; \
                     refusing to touch it",
                    d.name, spec.name
                ));
            }
            cleanup.push(d.name.clone());
        }
        let action = match find(&pair.clone) {
            None => ItemAction::Create { temp },
            Some(cur) if !owned_by(cur, &spec.name) => {
                return Err(format!(
                    "{} exists and is not a clone zfsrepl made for spec {:?} \
                     (no {OWNER_PROP}={} property, or not a clone); refusing to replace it",
                    cur.name, spec.name, spec.name
                ));
            }
            Some(cur) if cur.origin.as_ref() == Some(&snapshot) => ItemAction::UpToDate,
            Some(cur) => ItemAction::Replace {
                temp,
                aside: aside_name(&pair.clone, input.now).map_err(|e| e.to_string())?,
                current_origin: cur.origin.clone(),
            },
        };
        items.push(CloneItem {
            source: pair.source.clone(),
            clone: pair.clone.clone(),
            snapshot,
            action,
        });
    }
    cleanup.sort();
    cleanup.dedup();
    Ok((items, cleanup))
}

/// The snapshot of each pair's source, in pair order.
fn choose_snapshots(input: &CloneInput<'_>) -> Result<Vec<SnapshotName>, String> {
    let sel = &input.spec.selector;
    let mut per_source: Vec<(&DatasetName, Vec<&str>)> = Vec::new();
    for pair in &input.spec.pairs {
        let ds = input
            .sources
            .iter()
            .find(|d| d.name == pair.source)
            .ok_or_else(|| format!("source {} does not exist", pair.source))?;
        // Oldest first (versions are in createtxg order).
        let names: Vec<&str> = ds
            .snapshots()
            .map(|v| v.name.short())
            .filter(|s| sel.pattern.as_ref().is_none_or(|p| p.is_match(s)))
            .collect();
        if names.is_empty() {
            return Err(format!("{} has no snapshot: wanted {sel}", pair.source));
        }
        per_source.push((&pair.source, names));
    }
    let picks: Vec<&str> = if sel.common {
        let sets: Vec<BTreeSet<&str>> = per_source
            .iter()
            .map(|(_, n)| n.iter().copied().collect())
            .collect();
        let Some((_, first)) = per_source.first() else {
            return Ok(Vec::new());
        };
        let pick = first
            .iter()
            .rev()
            .find(|s| sets.iter().all(|set| set.contains(*s)))
            .ok_or_else(|| {
                let sources: Vec<String> = per_source.iter().map(|(d, _)| d.to_string()).collect();
                format!(
                    "no snapshot is common to {}: wanted {sel}",
                    sources.join(", ")
                )
            })?;
        vec![*pick; per_source.len()]
    } else {
        per_source
            .iter()
            .filter_map(|(_, n)| n.last().copied())
            .collect()
    };
    per_source
        .iter()
        .zip(picks)
        .map(|((ds, _), s)| ds.snapshot(s).map_err(|e| e.to_string()))
        .collect()
}
