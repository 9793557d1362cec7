//! sanoid 2.1's pruning, reproduced exactly: which snapshots are sanoid's,
//! their period type, and the per-type "expire after N periods, but never
//! keep fewer than N" walk.
//!
//! The facts come from sanoid 2.1.0's `getsnaps` and `prune_snapshots`
//! (see `shared/sanoid-semantics.md`, "Which snapshots are sanoid's" and
//! "Pruning").

use std::fmt;

use serde::{Deserialize, Serialize};

use super::SnapshotInfo;
use super::plan::Reason;

/// One of sanoid's six period types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// `frequently`: every `frequent_period` minutes.
    Frequently,
    /// `hourly`.
    Hourly,
    /// `daily`.
    Daily,
    /// `weekly`.
    Weekly,
    /// `monthly` (sanoid's period is 31 days, not a calendar month).
    Monthly,
    /// `yearly` (sanoid's period is 365.25 days).
    Yearly,
}

impl Period {
    /// All six, shortest first.
    pub const ALL: [Period; 6] = [
        Self::Frequently,
        Self::Hourly,
        Self::Daily,
        Self::Weekly,
        Self::Monthly,
        Self::Yearly,
    ];

    /// The name sanoid uses as config key and name suffix.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Frequently => "frequently",
            Self::Hourly => "hourly",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Yearly => "yearly",
        }
    }

    /// The period named exactly `s` (case-sensitive, as in sanoid).
    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// sanoid's retention counts for one dataset: how many snapshots of each
/// period type to keep (`hourly = 36` ...), and the length of the
/// `frequently` period in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SanoidCounts {
    /// `frequently`.
    pub frequently: u32,
    /// `frequent_period`, in minutes.
    pub frequent_period_min: u32,
    /// `hourly`.
    pub hourly: u32,
    /// `daily`.
    pub daily: u32,
    /// `weekly`.
    pub weekly: u32,
    /// `monthly`.
    pub monthly: u32,
    /// `yearly`.
    pub yearly: u32,
}

impl Default for SanoidCounts {
    /// sanoid.defaults.conf (version 2): frequently=0 (period 15 min),
    /// hourly=48, daily=90, weekly=0, monthly=6, yearly=0.
    fn default() -> Self {
        Self {
            frequently: 0,
            frequent_period_min: 15,
            hourly: 48,
            daily: 90,
            weekly: 0,
            monthly: 6,
            yearly: 0,
        }
    }
}

impl SanoidCounts {
    /// The widely used "production" template: hourly=36, daily=30,
    /// monthly=3, everything else 0.
    #[must_use]
    pub fn production() -> Self {
        Self {
            frequently: 0,
            frequent_period_min: 15,
            hourly: 36,
            daily: 30,
            weekly: 0,
            monthly: 3,
            yearly: 0,
        }
    }

    /// The count configured for `period`.
    #[must_use]
    pub fn count(&self, period: Period) -> u32 {
        match period {
            Period::Frequently => self.frequently,
            Period::Hourly => self.hourly,
            Period::Daily => self.daily,
            Period::Weekly => self.weekly,
            Period::Monthly => self.monthly,
            Period::Yearly => self.yearly,
        }
    }

    /// The length of `period` in seconds, as sanoid computes it:
    /// `frequent_period` minutes, 1 h, 1 d, 7 d, 31 d and 365.25 d.
    #[must_use]
    pub fn period_secs(&self, period: Period) -> i64 {
        match period {
            Period::Frequently => 60 * i64::from(self.frequent_period_min),
            Period::Hourly => 3600,
            Period::Daily => 86_400,
            Period::Weekly => 7 * 86_400,
            Period::Monthly => 31 * 86_400,
            // 365.25 days is a whole number of seconds.
            Period::Yearly => 31_557_600,
        }
    }
}

impl fmt::Display for SanoidCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sanoid frequently={} (every {}m) hourly={} daily={} weekly={} monthly={} yearly={}",
            self.frequently,
            self.frequent_period_min,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly
        )
    }
}

/// True for the snapshot names sanoid considers its own: the short name
/// starts with `autosnap` and ends with `ly` (case-sensitive; no underscore
/// needed, so `autosnapshot_daily` counts and `Autosnap_x_daily` does not).
#[must_use]
pub fn is_sanoid_name(short: &str) -> bool {
    short.starts_with("autosnap") && short.ends_with("ly")
}

/// The period type sanoid reads from a short name, or `None` when it reads
/// none. Only names ending in `ly` get a type (sanoid's listing regex skips
/// the others).
///
/// This is sanoid's `m/.*_(\w*ly)/` with Perl's backtracking and ASCII
/// `\w`: normally the text after the last `_` (`autosnap_x_silly` ->
/// `silly`), but when that text holds a character other than `[A-Za-z0-9_]`
/// Perl falls back to an earlier `_` and takes the longest word-character
/// run there that ends in `ly` (`autosnap_hourly_b.daily` -> `hourly`).
#[must_use]
pub fn sanoid_type(short: &str) -> Option<&str> {
    if !short.ends_with("ly") {
        return None;
    }
    let bytes = short.as_bytes();
    // Greedy `.*_`: try each `_` from the last one backwards.
    for (pos, _) in short.match_indices('_').rev() {
        let rest = &bytes[pos + 1..];
        // Greedy `\w*` then `ly`: the longest word run prefix ending in "ly".
        let run = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .unwrap_or(rest.len());
        if let Some(end) = (2..=run).rev().find(|&e| &rest[e - 2..e] == b"ly") {
            return short.get(pos + 1..pos + 1 + end);
        }
    }
    None
}

/// How the sanoid rule sees one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind<'a> {
    Typed(Period),
    /// A type sanoid has no count for (`silly`), or none at all.
    Untyped(Option<&'a str>),
}

fn classify(short: &str) -> Kind<'_> {
    match sanoid_type(short) {
        Some(t) => Period::from_name(t).map_or(Kind::Untyped(Some(t)), Kind::Typed),
        None => Kind::Untyped(None),
    }
}

/// sanoid's verdicts for one dataset's candidates, sorted oldest first.
///
/// Per type: walk that type's snapshots oldest first; destroy one iff its
/// creation is strictly before `now - N * period` and more than N of that
/// type remain. Everything else, including snapshots without a type sanoid
/// counts, is kept: sanoid is a destroy rule, so as a keep rule it keeps
/// all it would not destroy.
///
/// All owned candidates whose names carry a type are counted together,
/// whether sanoid's `autosnap*` or ours, so a chain migrating from sanoid
/// to zfsrepl names thins as one. With only sanoid's snapshots this is
/// sanoid's decision exactly.
pub(crate) fn evaluate(counts: &SanoidCounts, cands: &[&SnapshotInfo], now: i64) -> Vec<Reason> {
    let kinds: Vec<Kind<'_>> = cands.iter().map(|s| classify(s.name.snap())).collect();
    let mut by_type: [Vec<usize>; 6] = Default::default();
    for (i, k) in kinds.iter().enumerate() {
        if let Kind::Typed(p) = k {
            by_type[p.index()].push(i);
        }
    }
    let mut out: Vec<Option<Reason>> = vec![None; cands.len()];
    for period in Period::ALL {
        let members = &by_type[period.index()];
        let count = counts.count(period);
        let period_secs = counts.period_secs(period);
        // i128: N * period can exceed i64 for absurd counts.
        let cutoff = i128::from(now) - i128::from(count) * i128::from(period_secs);
        let total = members.len();
        let mut remaining = total;
        for (k, &i) in members.iter().enumerate() {
            let rank = total - k;
            let older = i128::from(cands[i].creation) < cutoff;
            let verdict = SanoidVerdict {
                period,
                count,
                period_secs,
                rank,
                of: total,
            };
            out[i] = Some(if older && remaining > count as usize {
                remaining -= 1;
                Reason::SanoidExpired(verdict)
            } else if older {
                Reason::SanoidFloor(verdict)
            } else {
                Reason::SanoidWithin(verdict)
            });
        }
    }
    out.into_iter()
        .zip(kinds)
        .map(|(r, k)| match (r, k) {
            (Some(r), _) => r,
            (None, Kind::Untyped(t)) => Reason::SanoidUntyped {
                period_type: t.map(str::to_owned),
            },
            // Every typed candidate got a verdict above; keep it if not.
            (None, Kind::Typed(_)) => Reason::SanoidUntyped { period_type: None },
        })
        .collect()
}

/// What the sanoid walk found for one typed snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SanoidVerdict {
    /// Its type.
    pub period: Period,
    /// The configured count N for that type.
    pub count: u32,
    /// The period length in seconds.
    pub period_secs: i64,
    /// Its position among that type's snapshots, 1 = newest.
    pub rank: usize,
    /// How many snapshots of that type the listing holds.
    pub of: usize,
}

impl SanoidVerdict {
    pub(crate) fn max_age(&self) -> MaxAge {
        MaxAge {
            count: self.count,
            period_secs: self.period_secs,
        }
    }
}

/// `36×1h`, `3×31d`, `1×365d6h`.
pub(crate) struct MaxAge {
    count: u32,
    period_secs: i64,
}

impl fmt::Display for MaxAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = u64::try_from(self.period_secs).unwrap_or(0);
        write!(f, "{}×{}", self.count, super::grid::Span(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_names_are_sanoids() {
        for yes in [
            "autosnap_2024-01-01_00:00:00_daily",
            "autosnapshot_daily",
            "autosnap_custom_hourly",
            "autosnap_x_silly",
            "autosnapdaily",
            "autosnap_2017-10-29_02:00:00dst_hourly",
        ] {
            assert!(is_sanoid_name(yes), "{yes}");
        }
        for no in [
            "Autosnap_2024-01-01_00:00:00_daily",
            "foo_autosnap_2024-01-01_00:00:00_daily",
            "zfs-auto-snap_hourly-2024-01-01-0000",
            "autosnap_2024-01-01_00:00:00",
            "autosnap_2024-01-01_00:00:00_hourly_keep",
            "autosnap_x_DAILY",
        ] {
            assert!(!is_sanoid_name(no), "{no}");
        }
    }

    #[test]
    fn period_type_is_perls_reading() {
        let cases: &[(&str, Option<&str>)] = &[
            ("autosnap_2024-01-01_00:00:00_daily", Some("daily")),
            ("autosnapshot_daily", Some("daily")),
            ("autosnap_custom_hourly", Some("hourly")),
            ("autosnap_x_silly", Some("silly")),
            ("autosnap_2017-10-29_02:00:00dst_hourly", Some("hourly")),
            (
                "autosnap_2024-01-01_00:00:00_frequently",
                Some("frequently"),
            ),
            // No `_`: sanoid lists it but reads no type.
            ("autosnapdaily", None),
            // Not ending in `ly`: sanoid does not list it.
            ("autosnap_x_hourly_keep", None),
            // The last part has a non-word character: Perl backtracks to
            // the previous `_` and takes the longest run ending in `ly`.
            ("autosnap_hourly_b.daily", Some("hourly")),
            ("autosnap_a_b.hourly", None),
            ("autosnap_x_onlyxly", Some("onlyxly")),
            ("zfsrepl_2026-11-22_05:00:00_weekly", Some("weekly")),
        ];
        for (name, want) in cases {
            assert_eq!(sanoid_type(name), *want, "{name}");
        }
    }

    #[test]
    fn periods_are_sanoids() {
        let c = SanoidCounts {
            frequent_period_min: 15,
            ..SanoidCounts::default()
        };
        assert_eq!(c.period_secs(Period::Frequently), 900);
        assert_eq!(c.period_secs(Period::Hourly), 3600);
        assert_eq!(c.period_secs(Period::Daily), 86_400);
        assert_eq!(c.period_secs(Period::Weekly), 604_800);
        assert_eq!(c.period_secs(Period::Monthly), 2_678_400);
        assert_eq!(c.period_secs(Period::Yearly), (365.25 * 86_400.0) as i64);
        assert_eq!(Period::from_name("hourly"), Some(Period::Hourly));
        assert_eq!(Period::from_name("Hourly"), None);
    }
}
