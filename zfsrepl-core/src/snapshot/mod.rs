//! Periodic snapshots, purely: periods, preferred times, due-time rules
//! (sanoid 2.1's), and snapshot names (sanoid's and ours). No ZFS, no clock:
//! the time of a run is a parameter.
//!
//! # Due times
//!
//! sanoid decides whether a snapshot type is due by computing
//! `lastpreferred`, the most recent preferred time at or before now, and
//! taking a snapshot iff none of that type exists or the newest one is
//! strictly older. [`last_preferred`] reproduces its rules; where sanoid's
//! seconds arithmetic around DST transitions drifts from the wall clock it
//! is trying to follow ("with DST corrections"), we follow the wall clock:
//!
//! - `frequently` and `hourly`: the preferred instants are those at which the
//!   local clock shows a preferred minute (`:00, :15, ...` or `:hourly_min`)
//!   and second 0. A repeated hour at the end of DST therefore has its own
//!   hourly slot (two real hours, two hourlies, as sanoid's `+ $dstOffset`
//!   correction intends), and a skipped hour at the start of DST has none
//!   (no instant shows it). On the day DST ends, after the fall-back,
//!   sanoid's arithmetic with `hourly_min > 0` yields a preferred time in
//!   the future during the first `hourly_min` minutes of every hour, and so
//!   an hourly on every run in those minutes: we do not reproduce that.
//! - `daily`, `weekly` and `yearly`: the preferred local date and time of
//!   today (this week, this year), or of the previous day (week, year) when
//!   that is in the future. A local time that does not exist (inside the
//!   hour skipped when DST starts) is taken as the instant the same length
//!   of time after the gap starts (jiff's "compatible" rule: 02:30 becomes
//!   03:30); a local time that occurs twice is its first occurrence, so
//!   a day never gets two dailies. sanoid computes "yesterday" and "last
//!   week" as 86400 s and 7 * 86400 s before, which is off by the DST shift
//!   when a transition lies in between (on 29 March 2026 in Paris, sanoid's
//!   preferred daily is 22:59 CET the day before; ours is 23:59 CET).
//! - `monthly`: day `monthly_mday` of the CURRENT month, minus 31 * 86400 s
//!   when in the future: sanoid's quirk, reproduced (on 10 March with
//!   `monthly_mday = 15` the preferred time is 12 February). Two
//!   differences: a day past the month's end is clamped to its last day
//!   (sanoid's `timelocal` dies on 31 April and aborts the whole run), and
//!   when one subtraction is not enough (the first hour of a month after a
//!   DST fall-back with `monthly_mday = 31 monthly_hour = 23`), we subtract
//!   again instead of returning a time in the future. Because of the quirk
//!   the monthly preferred time can move backwards as time goes on (from
//!   30 April to 1 May with `monthly_mday = 15` it goes from 15 April to
//!   14 April); that only makes a snapshot less due, never more.
//! - `yearly`: sanoid subtracts 31 * 365.25 days (a DEFECT: 31 years) when
//!   this year's date is in the future, so no yearly is taken until the
//!   preferred date of the current year. We use the same date of the
//!   previous calendar year; 29 February is clamped to the 28th in common
//!   years (sanoid's `timelocal` dies there).
//!
//! # Example
//!
//! A run for one dataset:
//!
//! ```
//! use jiff::{Timestamp, tz::TimeZone};
//! use zfsrepl_core::snapshot::{Period, PeriodKind, Preferred, SnapshotNamer, SnapshotPlan};
//!
//! let prefs = Preferred::new(TimeZone::UTC); // sanoid's defaults
//! // sanoid's "production" template: hourly=36 daily=30 monthly=3.
//! let plan = SnapshotPlan::new(
//!     &[(Period::Hourly, 36), (Period::Daily, 30), (Period::Monthly, 3), (Period::Yearly, 0)],
//!     prefs,
//! )?;
//! let now: Timestamp = "2026-11-22T05:00:00Z".parse()?;
//! let now = now.to_zoned(TimeZone::UTC);
//! // The newest snapshot of each kind, by its `creation` (here: an hourly an hour ago).
//! let newest = |kind| (kind == PeriodKind::Hourly).then(|| "2026-11-22T04:00:00Z".parse().unwrap());
//! let due = plan.due_periods(newest, &now)?;
//! assert_eq!(due, [Period::Monthly, Period::Daily, Period::Hourly]);
//!
//! let namer = SnapshotNamer::zfsrepl("zfsrepl_")?;
//! let names: Vec<String> = due
//!     .iter()
//!     .map(|p| namer.format(now.timestamp(), p.kind()))
//!     .collect();
//! assert_eq!(names[2], "zfsrepl_2026-11-22_05:00:00_hourly");
//! assert_eq!(namer.parse(&names[2]).unwrap().at, now.timestamp());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod due;
pub mod monitor;
mod naming;
mod period;
mod plan;
pub mod take;

#[cfg(test)]
mod tests;

pub use due::{Preferred, PreferredTimes, ScheduleError, is_due, last_preferred};
pub use naming::{
    DEFAULT_PREFIX, NameStyle, NamingError, ParsedName, SANOID_PREFIX, SnapshotNamer, sanoid_type,
};
pub use period::{Period, PeriodKind};
pub use plan::{SnapshotPlan, due_periods};
