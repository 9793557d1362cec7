//! Snapshot periods: sanoid's six types, their names and their order.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

use super::ScheduleError;

/// The type of a periodic snapshot, as it appears at the end of a name
/// (`autosnap_2026-11-22_05:00:00_hourly`).
///
/// The order is sanoid's taking order: `Yearly < Monthly < Weekly < Daily <
/// Hourly < Frequently`, so sorting a list of kinds gives the order in which
/// sanoid takes (and names) the snapshots of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodKind {
    /// `yearly`.
    Yearly,
    /// `monthly`.
    Monthly,
    /// `weekly`.
    Weekly,
    /// `daily`.
    Daily,
    /// `hourly`.
    Hourly,
    /// `frequently`: every `frequent_period` minutes.
    Frequently,
}

impl PeriodKind {
    /// Every kind, in sanoid's taking order (yearly first).
    pub const TAKING_ORDER: [PeriodKind; 6] = [
        Self::Yearly,
        Self::Monthly,
        Self::Weekly,
        Self::Daily,
        Self::Hourly,
        Self::Frequently,
    ];

    /// The name sanoid uses in snapshot names and configuration keys.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Yearly => "yearly",
            Self::Monthly => "monthly",
            Self::Weekly => "weekly",
            Self::Daily => "daily",
            Self::Hourly => "hourly",
            Self::Frequently => "frequently",
        }
    }

    /// The kind named exactly `name` (case-sensitive, as sanoid matches its
    /// configuration keys), or `None`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::TAKING_ORDER.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for PeriodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for PeriodKind {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, ScheduleError> {
        Self::from_name(s).ok_or_else(|| ScheduleError::UnknownPeriod(s.to_owned()))
    }
}

/// A snapshot period: a [`PeriodKind`] with, for `frequently`, the length of
/// its slices (sanoid's `frequent_period`).
///
/// `frequent_period` lives here rather than in [`Preferred`](super::Preferred)
/// so that a `Frequently` period can never exist without its length.
/// The derived order is the taking order of [`PeriodKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// Once a year, at `yearly_mon/yearly_mday yearly_hour:yearly_min`.
    Yearly,
    /// Once a month, at `monthly_mday monthly_hour:monthly_min`.
    Monthly,
    /// Once a week, at `weekly_wday weekly_hour:weekly_min`.
    Weekly,
    /// Once a day, at `daily_hour:daily_min`.
    Daily,
    /// Once an hour, at minute `hourly_min`.
    Hourly,
    /// Every `minutes` minutes, the slices restarting at `:00` every hour.
    Frequently {
        /// sanoid's `frequent_period` (default 15).
        minutes: NonZeroU32,
    },
}

impl Period {
    /// sanoid's default `frequent_period`, in minutes.
    pub const DEFAULT_FREQUENT_PERIOD: NonZeroU32 = NonZeroU32::MIN.saturating_add(14);

    /// `Frequently` with slices of `minutes` minutes.
    ///
    /// # Errors
    /// [`ScheduleError::ZeroFrequentPeriod`] when `minutes` is 0 (sanoid
    /// dies dividing by it).
    pub fn frequently(minutes: u32) -> Result<Self, ScheduleError> {
        NonZeroU32::new(minutes)
            .map(|minutes| Self::Frequently { minutes })
            .ok_or(ScheduleError::ZeroFrequentPeriod)
    }

    /// The period of `kind`, with `frequent_period` minutes for `frequently`.
    #[must_use]
    pub fn from_kind(kind: PeriodKind, frequent_period: NonZeroU32) -> Self {
        match kind {
            PeriodKind::Yearly => Self::Yearly,
            PeriodKind::Monthly => Self::Monthly,
            PeriodKind::Weekly => Self::Weekly,
            PeriodKind::Daily => Self::Daily,
            PeriodKind::Hourly => Self::Hourly,
            PeriodKind::Frequently => Self::Frequently {
                minutes: frequent_period,
            },
        }
    }

    /// Its kind.
    #[must_use]
    pub const fn kind(self) -> PeriodKind {
        match self {
            Self::Yearly => PeriodKind::Yearly,
            Self::Monthly => PeriodKind::Monthly,
            Self::Weekly => PeriodKind::Weekly,
            Self::Daily => PeriodKind::Daily,
            Self::Hourly => PeriodKind::Hourly,
            Self::Frequently { .. } => PeriodKind::Frequently,
        }
    }

    /// Its name (`hourly`, ...).
    #[must_use]
    pub const fn name(self) -> &'static str {
        self.kind().name()
    }

    /// The fixed length sanoid's pruning uses for one period of this kind:
    /// `frequent_period` minutes, 1 h, 1 d, 7 d, **31 d** and **365.25 d**
    /// (sanoid's month and year, not calendar ones).
    #[must_use]
    pub fn sanoid_prune_period(self) -> SignedDuration {
        const DAY: i64 = 86_400;
        match self {
            Self::Frequently { minutes } => {
                SignedDuration::from_secs(i64::from(minutes.get()) * 60)
            }
            Self::Hourly => SignedDuration::from_secs(3_600),
            Self::Daily => SignedDuration::from_secs(DAY),
            Self::Weekly => SignedDuration::from_secs(7 * DAY),
            Self::Monthly => SignedDuration::from_secs(31 * DAY),
            // 365.25 days = 365 days and 6 hours.
            Self::Yearly => SignedDuration::from_secs(365 * DAY + DAY / 4),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl From<Period> for PeriodKind {
    fn from(p: Period) -> Self {
        p.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order() {
        let names: Vec<_> = PeriodKind::TAKING_ORDER.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "yearly",
                "monthly",
                "weekly",
                "daily",
                "hourly",
                "frequently"
            ]
        );
        for k in PeriodKind::TAKING_ORDER {
            assert_eq!(k.to_string().parse::<PeriodKind>().unwrap(), k);
            assert_eq!(
                Period::from_kind(k, Period::DEFAULT_FREQUENT_PERIOD).kind(),
                k
            );
        }
        let mut shuffled = vec![
            PeriodKind::Frequently,
            PeriodKind::Daily,
            PeriodKind::Yearly,
            PeriodKind::Hourly,
        ];
        shuffled.sort();
        assert_eq!(
            shuffled,
            [
                PeriodKind::Yearly,
                PeriodKind::Daily,
                PeriodKind::Hourly,
                PeriodKind::Frequently
            ]
        );
        assert!(Period::Yearly < Period::frequently(1).unwrap());
        assert!("Hourly".parse::<PeriodKind>().is_err());
        assert!("silly".parse::<PeriodKind>().is_err());
    }

    #[test]
    fn frequent_period() {
        assert_eq!(Period::DEFAULT_FREQUENT_PERIOD.get(), 15);
        assert_eq!(
            Period::frequently(0).unwrap_err(),
            ScheduleError::ZeroFrequentPeriod
        );
        assert_eq!(
            Period::frequently(45).unwrap().sanoid_prune_period(),
            SignedDuration::from_mins(45)
        );
        assert_eq!(
            Period::Yearly.sanoid_prune_period(),
            SignedDuration::from_hours(365 * 24 + 6)
        );
        assert_eq!(
            Period::Monthly.sanoid_prune_period(),
            SignedDuration::from_hours(31 * 24)
        );
    }

    #[test]
    fn serde_names() {
        assert_eq!(
            serde_json::to_string(&PeriodKind::Hourly).unwrap(),
            "\"hourly\""
        );
        let p = Period::frequently(15).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"frequently":{"minutes":15}}"#);
        assert_eq!(serde_json::from_str::<Period>(&json).unwrap(), p);
        assert_eq!(
            serde_json::from_str::<Period>("\"daily\"").unwrap(),
            Period::Daily
        );
    }
}
