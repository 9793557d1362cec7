//! The planner: ownership, protections and rules combined into one
//! keep-or-destroy decision per snapshot, each with its reasons.

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;

use super::grid::GridKeep;
use super::rules::KeepRule;
use super::sanoid::SanoidVerdict;
use super::{Ownership, SnapshotInfo};
use crate::name::{Guid, SnapshotName};

/// What happens to a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It stays.
    Keep,
    /// It is destroyed.
    Destroy,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Keep => "keep",
            Self::Destroy => "destroy",
        })
    }
}

/// Why a snapshot is kept, or why one rule does not keep it. Every
/// decision carries at least one; [`Reason::keeps`] tells the two apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// Not ours: no rule looks at it.
    NotOwned {
        /// Our prefix.
        prefix: String,
        /// Whether sanoid's snapshots are ours too.
        sanoid_chain: bool,
    },
    /// It has user holds; ZFS would refuse to destroy it anyway.
    Held {
        /// The number of holds.
        holds: u64,
    },
    /// A replication target still needs it (the newest snapshot in common).
    Protected,
    /// A clone was made from it (ZFS would refuse to destroy it anyway).
    CloneOrigin {
        /// The clone.
        clone: String,
    },
    /// No keep rules are configured: nothing is pruned (zrepl's rule).
    NoRules,
    /// sanoid: not older than N periods.
    SanoidWithin(SanoidVerdict),
    /// sanoid: older than N periods, but destroying it would leave fewer
    /// than N of its type.
    SanoidFloor(SanoidVerdict),
    /// sanoid: older than N periods and more than N of its type remain.
    SanoidExpired(SanoidVerdict),
    /// sanoid: no period type sanoid counts, so sanoid never prunes it.
    SanoidUntyped {
        /// The type read from the name, when there is one (`silly`).
        period_type: Option<String>,
    },
    /// grid: the newest candidate, which anchors the grid.
    GridAnchor {
        /// The grid.
        grid: String,
    },
    /// grid: created after `now` (clock skew); the grid leaves it alone.
    GridFuture {
        /// The grid.
        grid: String,
    },
    /// grid: among the oldest `keep` of its bucket.
    GridKept {
        /// The grid.
        grid: String,
        /// Its bucket, 1 = newest.
        bucket: u64,
        /// The number of buckets.
        buckets: u64,
        /// Its position in the bucket, 1 = oldest.
        rank: u32,
        /// What the bucket keeps.
        keep: GridKeep,
    },
    /// grid: its bucket already keeps `keep` older snapshots.
    GridSurplus {
        /// The grid.
        grid: String,
        /// Its bucket, 1 = newest.
        bucket: u64,
        /// The number of buckets.
        buckets: u64,
        /// What the bucket keeps.
        keep: GridKeep,
    },
    /// grid: older than the last bucket.
    GridBeyond {
        /// The grid.
        grid: String,
        /// How far back the grid reaches from its anchor (`15d1h`).
        span: String,
    },
    /// keep-last: among the newest `n`.
    LastNKept {
        /// The rule's count.
        n: u32,
        /// The rule's pattern.
        regex: Option<String>,
        /// Its position, 1 = newest.
        rank: usize,
    },
    /// keep-last: `n` newer ones are kept.
    LastNBeyond {
        /// The rule's count.
        n: u32,
        /// The rule's pattern.
        regex: Option<String>,
        /// Its position, 1 = newest.
        rank: usize,
    },
    /// keep-last: its name does not match the rule's pattern.
    LastNNoMatch {
        /// The rule's count.
        n: u32,
        /// The rule's pattern.
        regex: String,
    },
    /// regex: kept by the pattern.
    RegexKept {
        /// The pattern.
        re: String,
        /// Whether the rule keeps non-matching names.
        negate: bool,
    },
    /// regex: not kept by the pattern.
    RegexNotKept {
        /// The pattern.
        re: String,
        /// Whether the rule keeps non-matching names.
        negate: bool,
    },
}

impl Reason {
    /// True when this reason keeps the snapshot.
    #[must_use]
    pub fn keeps(&self) -> bool {
        match self {
            Self::NotOwned { .. }
            | Self::Held { .. }
            | Self::Protected
            | Self::CloneOrigin { .. }
            | Self::NoRules
            | Self::SanoidWithin(_)
            | Self::SanoidFloor(_)
            | Self::SanoidUntyped { .. }
            | Self::GridAnchor { .. }
            | Self::GridFuture { .. }
            | Self::GridKept { .. }
            | Self::LastNKept { .. }
            | Self::RegexKept { .. } => true,
            Self::SanoidExpired(_)
            | Self::GridSurplus { .. }
            | Self::GridBeyond { .. }
            | Self::LastNBeyond { .. }
            | Self::LastNNoMatch { .. }
            | Self::RegexNotKept { .. } => false,
        }
    }
}

fn keep_last(f: &mut fmt::Formatter<'_>, n: u32, regex: Option<&str>) -> fmt::Result {
    match regex {
        Some(r) => write!(f, "keep-last {n} /{r}/"),
        None => write!(f, "keep-last {n}"),
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOwned {
                prefix,
                sanoid_chain: false,
            } => write!(f, "not owned (no {prefix} prefix)"),
            Self::NotOwned {
                prefix,
                sanoid_chain: true,
            } => write!(
                f,
                "not owned (no {prefix} prefix, not a sanoid autosnap*ly name)"
            ),
            Self::Held { holds: 1 } => f.write_str("held (1 hold)"),
            Self::Held { holds } => write!(f, "held ({holds} holds)"),
            Self::Protected => f.write_str("needed by replication target"),
            Self::CloneOrigin { clone } => write!(f, "origin of clone {clone}"),
            Self::NoRules => f.write_str("no keep rules: nothing is pruned"),
            Self::SanoidWithin(v) => write!(
                f,
                "sanoid: {} #{} of {}, not older than {}",
                v.period,
                v.rank,
                v.of,
                v.max_age()
            ),
            Self::SanoidFloor(v) => write!(
                f,
                "sanoid: {} #{} of {}, older than {} but only {} remain",
                v.period,
                v.rank,
                v.of,
                v.max_age(),
                v.count
            ),
            Self::SanoidExpired(v) if v.count == 0 => write!(
                f,
                "sanoid: {} #{} of {}, {}=0 removes all",
                v.period, v.rank, v.of, v.period
            ),
            Self::SanoidExpired(v) => write!(
                f,
                "sanoid: {} #{} of {}, older than {} and more than {} remain",
                v.period,
                v.rank,
                v.of,
                v.max_age(),
                v.count
            ),
            Self::SanoidUntyped { period_type: None } => {
                f.write_str("sanoid: no period type, never pruned by sanoid")
            }
            Self::SanoidUntyped {
                period_type: Some(t),
            } => write!(f, "sanoid: type {t:?} has no count, never pruned by sanoid"),
            Self::GridAnchor { grid } => write!(f, "grid {grid}: newest, anchors the grid"),
            Self::GridFuture { grid } => write!(f, "grid {grid}: created after now, left alone"),
            Self::GridKept {
                grid,
                bucket,
                buckets,
                keep: GridKeep::All,
                ..
            } => write!(f, "grid {grid}: bucket {bucket} of {buckets} keeps all"),
            Self::GridKept {
                grid,
                bucket,
                buckets,
                rank: 1,
                ..
            } => write!(f, "grid {grid}: oldest in bucket {bucket} of {buckets}"),
            Self::GridKept {
                grid,
                bucket,
                buckets,
                rank,
                ..
            } => write!(
                f,
                "grid {grid}: #{rank} oldest in bucket {bucket} of {buckets}"
            ),
            Self::GridSurplus {
                grid,
                bucket,
                buckets,
                keep,
            } => write!(
                f,
                "grid {grid}: bucket {bucket} of {buckets} already keeps {keep} older"
            ),
            Self::GridBeyond { grid, span } => {
                write!(f, "grid {grid}: older than the grid ({span})")
            }
            Self::LastNKept { n, regex, rank } => {
                keep_last(f, *n, regex.as_deref())?;
                write!(f, ": #{rank}")
            }
            Self::LastNBeyond { n, regex, rank } => {
                keep_last(f, *n, regex.as_deref())?;
                write!(f, ": #{rank}, beyond {n}")
            }
            Self::LastNNoMatch { n, regex } => {
                keep_last(f, *n, Some(regex))?;
                f.write_str(": name does not match")
            }
            Self::RegexKept { re, negate: false } => write!(f, "matches regex {re}"),
            Self::RegexKept { re, negate: true } => {
                write!(f, "does not match regex {re} (negated rule)")
            }
            Self::RegexNotKept { re, negate: false } => write!(f, "does not match regex {re}"),
            Self::RegexNotKept { re, negate: true } => {
                write!(f, "matches regex {re} (negated rule)")
            }
        }
    }
}

/// The decision on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The snapshot.
    pub snapshot: SnapshotName,
    /// Its guid.
    pub guid: Guid,
    /// Its creation time, seconds since the epoch.
    pub creation: i64,
    /// Keep or destroy.
    pub action: Action,
    /// Why. When kept: the protections and every rule that keeps it. When
    /// no rule keeps it: the protections, if any (then it is still kept),
    /// and every rule's reason for not keeping it.
    pub reasons: Vec<Reason>,
}

/// The outcome of [`plan`]: one decision per input snapshot, grouped by
/// dataset (in name order), oldest first within each dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrunePlan {
    /// The decisions.
    pub decisions: Vec<Decision>,
}

impl PrunePlan {
    /// Keeps every snapshot that is the origin of a clone, with
    /// [`Reason::CloneOrigin`] (`origins`: snapshot, clone). Like a held or
    /// protected snapshot, a pinned one still counts for the rules; only
    /// its destruction is called off. Returns how many decisions changed
    /// from destroy to keep.
    pub fn pin_origins(&mut self, origins: &[(SnapshotName, String)]) -> usize {
        let mut changed = 0;
        for d in &mut self.decisions {
            for (snap, clone) in origins {
                if *snap == d.snapshot {
                    d.reasons.insert(
                        0,
                        Reason::CloneOrigin {
                            clone: clone.clone(),
                        },
                    );
                    if d.action == Action::Destroy {
                        d.action = Action::Keep;
                        changed += 1;
                    }
                }
            }
        }
        changed
    }

    /// The snapshots to destroy: by dataset, oldest first within each.
    pub fn destroy(&self) -> impl Iterator<Item = &SnapshotName> {
        self.decisions
            .iter()
            .filter(|d| d.action == Action::Destroy)
            .map(|d| &d.snapshot)
    }

    /// The snapshots that stay, in the same order.
    pub fn keep(&self) -> impl Iterator<Item = &SnapshotName> {
        self.decisions
            .iter()
            .filter(|d| d.action == Action::Keep)
            .map(|d| &d.snapshot)
    }

    /// How many snapshots are destroyed.
    #[must_use]
    pub fn destroy_count(&self) -> usize {
        self.destroy().count()
    }
}

impl fmt::Display for PrunePlan {
    /// A table: action, creation (UTC), snapshot, reasons; then a summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .decisions
            .iter()
            .map(|d| d.snapshot.as_str().chars().count())
            .max()
            .unwrap_or(0)
            .max("SNAPSHOT".len());
        writeln!(
            f,
            "{:<7}  {:<19}  {:<width$}  REASONS",
            "ACTION", "CREATED (UTC)", "SNAPSHOT"
        )?;
        for d in &self.decisions {
            write!(
                f,
                "{:<7}  {:<19}  {:<width$}  ",
                d.action,
                Utc(d.creation),
                d.snapshot.as_str()
            )?;
            for (i, r) in d.reasons.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{r}")?;
            }
            writeln!(f)?;
        }
        let destroy = self.destroy_count();
        write!(
            f,
            "{destroy} to destroy, {} to keep",
            self.decisions.len() - destroy
        )
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, from unix seconds (proleptic Gregorian).
struct Utc(i64);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        // Days to civil date, counting in 400-year eras from 0000-03-01.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let text = format!(
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        );
        f.pad(&text)
    }
}

/// Plans pruning: which snapshots to destroy, and why each one stays or
/// goes.
///
/// - `snapshots`: the listing taken *before* this run's new snapshots
///   (sanoid counts only what existed when the run started), from any
///   number of datasets; every rule judges each dataset on its own. Input
///   order does not matter.
/// - `rules`: a snapshot is destroyed only when it is an owned candidate
///   and no rule keeps it. With no rules nothing is destroyed.
/// - `ownership`: only snapshots it [owns](Ownership::owns) are candidates;
///   the others are always kept.
/// - `protected`: guids a replication target still needs (the newest
///   snapshot in common with each target); never destroyed. Snapshots with
///   user holds (`userrefs > 0`) are never destroyed either. Protected and
///   held candidates still count for the rules (sanoid's walk counts a held
///   snapshot it fails to destroy, too).
/// - `now`: seconds since the epoch.
#[must_use]
pub fn plan(
    snapshots: &[SnapshotInfo],
    rules: &[KeepRule],
    ownership: &Ownership,
    protected: &[Guid],
    now: i64,
) -> PrunePlan {
    let protected: HashSet<Guid> = protected.iter().copied().collect();
    let mut order: Vec<&SnapshotInfo> = snapshots.iter().collect();
    order.sort_unstable_by(|a, b| {
        (
            a.name.dataset_str(),
            a.creation,
            a.createtxg,
            a.name.snap(),
            a.guid,
        )
            .cmp(&(
                b.name.dataset_str(),
                b.creation,
                b.createtxg,
                b.name.snap(),
                b.guid,
            ))
    });
    let mut decisions = Vec::with_capacity(order.len());
    for dataset in order.chunk_by(|a, b| a.name.dataset_str() == b.name.dataset_str()) {
        plan_dataset(dataset, rules, ownership, &protected, now, &mut decisions);
    }
    PrunePlan { decisions }
}

fn plan_dataset(
    snaps: &[&SnapshotInfo],
    rules: &[KeepRule],
    ownership: &Ownership,
    protected: &HashSet<Guid>,
    now: i64,
    out: &mut Vec<Decision>,
) {
    let owned: Vec<bool> = snaps
        .iter()
        .map(|s| ownership.owns(s.name.snap()))
        .collect();
    let cands: Vec<&SnapshotInfo> = snaps
        .iter()
        .zip(&owned)
        .filter(|(_, o)| **o)
        .map(|(s, _)| *s)
        .collect();
    let mut verdicts: Vec<std::vec::IntoIter<Reason>> = rules
        .iter()
        .map(|r| r.evaluate(&cands, now).into_iter())
        .collect();
    for (s, owned) in snaps.iter().zip(owned) {
        let mut reasons = Vec::new();
        if !owned {
            reasons.push(Reason::NotOwned {
                prefix: ownership.prefix.clone(),
                sanoid_chain: ownership.sanoid_chain,
            });
        }
        match s.userrefs {
            Some(holds) if holds > 0 => reasons.push(Reason::Held { holds }),
            _ => {}
        }
        if protected.contains(&s.guid) {
            reasons.push(Reason::Protected);
        }
        let mut action = Action::Keep;
        if owned {
            let mine: Vec<Reason> = verdicts.iter_mut().filter_map(Iterator::next).collect();
            if rules.is_empty() {
                reasons.push(Reason::NoRules);
            } else if mine.iter().any(Reason::keeps) {
                reasons.extend(mine.into_iter().filter(Reason::keeps));
            } else {
                if reasons.is_empty() {
                    action = Action::Destroy;
                }
                reasons.extend(mine);
            }
        }
        out.push(Decision {
            snapshot: s.name.clone(),
            guid: s.guid,
            creation: s.creation,
            action,
            reasons,
        });
    }
}
