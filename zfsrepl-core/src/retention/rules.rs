//! Keep rules and how each judges one dataset's candidates.

use std::collections::HashMap;
use std::fmt;

use regex::Regex;

use super::SnapshotInfo;
use super::grid::{RetentionGrid, Span};
use super::plan::Reason;
use super::sanoid::{self, SanoidCounts};

/// One retention rule. A snapshot is destroyed only when it is an owned
/// candidate and no rule keeps it (zrepl's `PruneSnapshots`); rules only
/// ever see owned candidates, one dataset at a time.
#[derive(Debug, Clone)]
pub enum KeepRule {
    /// sanoid's per-type counts, with sanoid 2.1's exact semantics. sanoid
    /// only destroys; as a keep rule this keeps every candidate sanoid
    /// would not destroy (including those without a period type), so when
    /// it is the only rule the plan is sanoid's, and other rules can only
    /// keep more.
    SanoidCounts(SanoidCounts),
    /// A zrepl-style retention grid ([`RetentionGrid`]): buckets laid
    /// back to back from an anchor into the past; each bucket keeps its
    /// oldest `keep` snapshots; snapshots older than the last bucket are not
    /// kept.
    ///
    /// As in zrepl, the anchor is the newest snapshot the rule sees, not
    /// the wall clock: while no new snapshots arrive (an outage, a source
    /// that stopped) the grid stops thinning instead of aging everything
    /// out. Keeping the *oldest* of a bucket (zrepl's choice) is what lets a
    /// kept snapshot survive its way through the sliding buckets; keeping
    /// the newest would replace it at every run and nothing would ever
    /// reach the older buckets.
    ///
    /// Two deliberate differences from zrepl, both keeping more:
    /// - the anchor is the newest candidate created at or before `now`;
    ///   candidates created after `now` (clock skew) are kept and do not
    ///   move the anchor (zrepl would anchor at them and could push every
    ///   other snapshot off the grid);
    /// - the anchor itself is always kept. zrepl, keeping the oldest of a
    ///   thinning first bucket, destroys the newest snapshot; the anchor
    ///   then moves back and the next plan over the same snapshots regroups
    ///   the buckets and destroys more, so planning is not idempotent.
    ///   With the anchor kept, re-planning destroys nothing.
    Grid(RetentionGrid),
    /// Keeps the `n` newest candidates (whose short names match `regex`,
    /// when given). `n = 0` keeps nothing.
    LastN {
        /// How many to keep.
        n: u32,
        /// Only candidates whose short name (after `@`) matches count.
        regex: Option<Regex>,
    },
    /// Keeps candidates whose short name matches `re` (or, with `negate`,
    /// does not match).
    Regex {
        /// The pattern, matched anywhere in the short name unless anchored.
        re: Regex,
        /// Keep the non-matching ones instead.
        negate: bool,
    },
}

impl fmt::Display for KeepRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SanoidCounts(c) => write!(f, "{c}"),
            Self::Grid(g) => write!(f, "grid {g}"),
            Self::LastN { n, regex: None } => write!(f, "keep-last {n}"),
            Self::LastN { n, regex: Some(r) } => write!(f, "keep-last {n} matching {r}"),
            Self::Regex { re, negate: false } => write!(f, "keep matching {re}"),
            Self::Regex { re, negate: true } => write!(f, "keep not matching {re}"),
        }
    }
}

impl KeepRule {
    /// This rule's verdict on each candidate of one dataset; `cands` are
    /// sorted oldest first (creation, then createtxg, then name) and the
    /// result is aligned with them.
    pub(crate) fn evaluate(&self, cands: &[&SnapshotInfo], now: i64) -> Vec<Reason> {
        match self {
            Self::SanoidCounts(c) => sanoid::evaluate(c, cands, now),
            Self::Grid(g) => grid(g, cands, now),
            Self::LastN { n, regex } => last_n(*n, regex.as_ref(), cands),
            Self::Regex { re, negate } => cands
                .iter()
                .map(|s| {
                    let re_text = re.as_str().to_owned();
                    if re.is_match(s.name.snap()) != *negate {
                        Reason::RegexKept {
                            re: re_text,
                            negate: *negate,
                        }
                    } else {
                        Reason::RegexNotKept {
                            re: re_text,
                            negate: *negate,
                        }
                    }
                })
                .collect(),
        }
    }
}

fn last_n(n: u32, regex: Option<&Regex>, cands: &[&SnapshotInfo]) -> Vec<Reason> {
    let re_text = regex.map(|r| r.as_str().to_owned());
    let mut out = vec![None; cands.len()];
    let mut rank: usize = 0;
    // Newest first.
    for (i, s) in cands.iter().enumerate().rev() {
        out[i] = Some(match regex {
            Some(re) if !re.is_match(s.name.snap()) => Reason::LastNNoMatch {
                n,
                regex: re.as_str().to_owned(),
            },
            _ => {
                rank += 1;
                if rank <= n as usize {
                    Reason::LastNKept {
                        n,
                        regex: re_text.clone(),
                        rank,
                    }
                } else {
                    Reason::LastNBeyond {
                        n,
                        regex: re_text.clone(),
                        rank,
                    }
                }
            }
        });
    }
    out.into_iter().flatten().collect()
}

/// The grid, after zrepl's `retentiongrid.FitEntries`, with the
/// differences documented on [`KeepRule::Grid`].
fn grid(g: &RetentionGrid, cands: &[&SnapshotInfo], now: i64) -> Vec<Reason> {
    let label = g.to_string();
    let buckets = g.bucket_count();
    // Sorted oldest first, so the anchor is the last one not in the future.
    let anchor = cands.iter().rposition(|s| s.creation <= now);
    let anchor_time = anchor.map_or(now, |a| cands[a].creation);
    let mut filled: HashMap<u64, u32> = HashMap::new();
    cands
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let grid = label.clone();
            if s.creation > now {
                return Reason::GridFuture { grid };
            }
            if Some(i) == anchor {
                return Reason::GridAnchor { grid };
            }
            // Not in the future and not the anchor: at or before it.
            let age = u64::try_from(i128::from(anchor_time) - i128::from(s.creation)).unwrap_or(0);
            match g.locate(age) {
                None => Reason::GridBeyond {
                    grid,
                    span: Span(g.span_secs()).to_string(),
                },
                Some((bucket, keep)) => {
                    // Oldest first, so the rank counts from the oldest.
                    let rank = filled.entry(bucket).or_insert(0);
                    *rank += 1;
                    if keep.keeps_rank(*rank) {
                        Reason::GridKept {
                            grid,
                            bucket: bucket + 1,
                            buckets,
                            rank: *rank,
                            keep,
                        }
                    } else {
                        Reason::GridSurplus {
                            grid,
                            bucket: bucket + 1,
                            buckets,
                            keep,
                        }
                    }
                }
            }
        })
        .collect()
}
