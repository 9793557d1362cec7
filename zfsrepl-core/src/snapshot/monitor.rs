//! Snapshot freshness for Nagios (`zfsrepl check`), like
//! `sanoid --monitor-snapshots`: per monitored dataset and period with a
//! count above 0, the age of the newest snapshot of that period against the
//! warn/crit thresholds. Pure: the listing and the time are inputs.
//!
//! One difference from sanoid (a defect there): a period with no snapshot
//! at all is reported as at least WARN even when its crit threshold is 0.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::PeriodKind;
use super::take::{owned_period, schedule_of};
use crate::policy::{Policy, Recursion, Threshold};
use crate::zfs::Dataset;

/// Nagios status, in increasing severity (exit codes 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Status {
    /// 0.
    Ok,
    /// 1.
    Warning,
    /// 2.
    Critical,
}

impl Status {
    /// The Nagios exit code.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Warning => 1,
            Self::Critical => 2,
        }
    }
}

/// The result of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The worst status that counts (dont-warn / dont-crit excluded).
    pub status: Status,
    /// The one line Nagios shows.
    pub line: String,
}

/// Formats an age as sanoid does: `[Nd ][Nh ][Nm ]Ns`, leading zero units
/// dropped.
#[must_use]
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {h}h {m}m {sec}s")
    } else if h > 0 {
        format!("{h}h {m}m {sec}s")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

fn threshold(m: &crate::policy::Monitor, k: PeriodKind) -> Threshold {
    match k {
        PeriodKind::Yearly => m.yearly,
        PeriodKind::Monthly => m.monthly,
        PeriodKind::Weekly => m.weekly,
        PeriodKind::Daily => m.daily,
        PeriodKind::Hourly => m.hourly,
        PeriodKind::Frequently => m.frequently,
    }
}

/// Checks snapshot freshness for every monitored dataset in `listing`.
#[must_use]
pub fn check_snapshots(policy: &Policy, listing: &[Dataset], now: Timestamp) -> Report {
    let tz = TimeZone::get(&policy.timezone).unwrap_or(TimeZone::UTC);
    let mut status = Status::Ok;
    let mut messages: Vec<String> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    for ds in listing {
        let Some(entry) = policy.entry_for(&ds.name) else {
            continue;
        };
        let s = &entry.settings;
        if !s.monitor.enabled || (entry.dataset == ds.name && entry.children_only) {
            continue;
        }
        if entry.recursion == Recursion::Atomic && entry.dataset != ds.name && !s.autoprune {
            continue;
        }
        let Ok(schedule) = schedule_of(entry, &tz) else {
            continue;
        };
        paths.push(ds.name.to_string());
        for (period, count) in &schedule.counts {
            if *count == 0 {
                continue;
            }
            let kind = period.kind();
            let newest = ds
                .snapshots()
                .filter(|v| owned_period(&schedule.namer, v.name.short()) == Some(kind))
                .map(|v| v.creation)
                .max();
            let t = threshold(&s.monitor, kind);
            let (level, msg) = match newest {
                None => (
                    if t.crit.is_some() {
                        Status::Critical
                    } else {
                        Status::Warning
                    },
                    format!(
                        "{}: {} has no {kind} snapshots at all!",
                        if t.crit.is_some() { "CRIT" } else { "WARN" },
                        ds.name
                    ),
                ),
                Some(c) => {
                    let elapsed =
                        Duration::from_secs(u64::try_from(now.as_second() - c).unwrap_or(0));
                    match (t.crit, t.warn) {
                        (Some(crit), _) if elapsed > crit => (
                            Status::Critical,
                            format!(
                                "CRIT: {} newest {kind} snapshot is {} old (should be < {})",
                                ds.name,
                                age(elapsed),
                                age(crit)
                            ),
                        ),
                        (_, Some(warn)) if elapsed > warn => (
                            Status::Warning,
                            format!(
                                "WARN: {} newest {kind} snapshot is {} old (should be < {})",
                                ds.name,
                                age(elapsed),
                                age(warn)
                            ),
                        ),
                        _ => continue,
                    }
                }
            };
            let counts = match level {
                Status::Critical => !s.monitor.dont_crit,
                Status::Warning => !s.monitor.dont_warn,
                Status::Ok => true,
            };
            if counts {
                status = status.max(level);
            }
            messages.push(msg);
        }
    }
    let line = if messages.is_empty() {
        paths.sort_by_key(|p| p.to_lowercase());
        format!(
            "OK: all monitored datasets ({}) have fresh snapshots",
            paths.join(", ")
        )
    } else {
        messages.sort_by_key(|m| m.to_lowercase());
        messages.join(", ")
    };
    Report { status, line }
}

#[cfg(all(test, feature = "test-util"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::FakeZfs;
    use crate::policy::parse_str;
    use crate::snapshot::take;

    #[test]
    fn ages_print_like_sanoid() {
        assert_eq!(age(Duration::from_secs(5401)), "1h 30m 1s");
        assert_eq!(age(Duration::from_secs(33 * 86_400)), "33d 0h 0m 0s");
        assert_eq!(age(Duration::from_secs(59)), "59s");
    }

    #[test]
    fn freshness_ok_warn_crit() {
        let policy = parse_str(
            "p.toml",
            "version = 1\n[dataset.\"tank/a\"]\nnaming = \"sanoid\"\nhourly = 2\ndaily = 1\nmonthly = 0\n[dataset.\"tank/b\"]\nhourly = 1\ndaily = 0\nmonthly = 0\n[dataset.\"tank/b\".monitor]\ndont-crit = true\n",
        )
        .unwrap();
        let zfs = FakeZfs::from_fixture("+ tank\n+ tank/a\n+ tank/b\n");
        let start = 1_798_761_600; // 2027-01-01T00:00:00Z
        zfs.set_time(start);
        let (l, _) = take::list_for(&zfs, &policy);
        take::execute(
            &zfs,
            &policy,
            &take::plan(&policy, &l, Timestamp::from_second(start).unwrap()).unwrap(),
        );
        let (l, _) = take::list_for(&zfs, &policy);
        let at = |s: i64| check_snapshots(&policy, &l, Timestamp::from_second(start + s).unwrap());
        let ok = at(60);
        assert_eq!(ok.status, Status::Ok);
        assert_eq!(
            ok.line,
            "OK: all monitored datasets (tank/a, tank/b) have fresh snapshots"
        );
        let warn = at(2 * 3600);
        assert_eq!(warn.status, Status::Warning);
        assert!(
            warn.line.contains(
                "WARN: tank/a newest hourly snapshot is 2h 0m 0s old (should be < 1h 30m 0s)"
            ),
            "{}",
            warn.line
        );
        let crit = at(7 * 3600);
        assert_eq!(crit.status, Status::Critical);
        assert!(
            crit.line.contains(
                "CRIT: tank/a newest hourly snapshot is 7h 0m 0s old (should be < 6h 0m 0s)"
            ),
            "{}",
            crit.line
        );
        assert!(
            crit.line.contains("CRIT: tank/b"),
            "reported but not counted: {}",
            crit.line
        );
    }
}
