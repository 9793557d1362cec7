//! Periodic snapshots, purely: periods, preferred times, due-time rules
//! (sanoid 2.1's), and snapshot names (sanoid's and ours). No ZFS, no clock:
//! the time of a run is a parameter.
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
mod naming;
mod period;
mod plan;

#[cfg(test)]
mod tests;

pub use due::{Preferred, ScheduleError, is_due, last_preferred};
pub use naming::{
    DEFAULT_PREFIX, NameStyle, NamingError, ParsedName, SANOID_PREFIX, SnapshotNamer, sanoid_type,
};
pub use period::{Period, PeriodKind};
pub use plan::{SnapshotPlan, due_periods};
