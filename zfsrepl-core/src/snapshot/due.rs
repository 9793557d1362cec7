//! Preferred times per period and sanoid 2.1's due-time rules (see the
//! parent module for the rules and where we differ from sanoid).

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp, Zoned};
use serde::Serialize;

use super::{Period, PeriodKind};

/// Why a schedule setting or computation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A preferred-time setting outside its range.
    #[error("{key} = {value} is out of range: it must be within {min}..={max}")]
    OutOfRange {
        /// sanoid's name for the setting (`daily_hour`, ...).
        key: &'static str,
        /// The value given.
        value: u8,
        /// The smallest allowed value.
        min: u8,
        /// The largest allowed value.
        max: u8,
    },
    /// `yearly_mon`/`yearly_mday` that name no day of the year.
    #[error("yearly_mon = {mon} and yearly_mday = {mday} name no day of the year")]
    NoSuchDay {
        /// `yearly_mon`.
        mon: u8,
        /// `yearly_mday`.
        mday: u8,
    },
    /// `frequent_period = 0`.
    #[error("frequent_period must be at least 1 minute")]
    ZeroFrequentPeriod,
    /// A period name that is not one of sanoid's six.
    #[error(
        "unknown snapshot period {0:?}: expected yearly, monthly, weekly, daily, hourly or frequently"
    )]
    UnknownPeriod(String),
    /// The same period kind listed twice in a plan.
    #[error("snapshot period {0} is listed more than once")]
    DuplicatePeriod(PeriodKind),
    /// The computation left the range of representable times (years -9999
    /// to 9999).
    #[error("cannot compute the preferred {period} time before {now}: {reason}")]
    Time {
        /// The period.
        period: PeriodKind,
        /// The `now` given.
        now: Timestamp,
        /// What failed.
        reason: String,
    },
}

/// Preferred times of day, week, month and year, as sanoid's
/// `hourly_min, daily_hour, ...` settings, without a time zone: what a
/// policy file states. [`Default`] gives sanoid's defaults.
///
/// Fields are public so that a policy loader can set them by name;
/// [`validate`](Self::validate) checks them, and every function that uses
/// them validates them first. `frequent_period` is carried by
/// [`Period::Frequently`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PreferredTimes {
    /// Minute of the hour for hourlies (0..=59, default 0).
    pub hourly_min: u8,
    /// Hour of the day for dailies (0..=23, default 23).
    pub daily_hour: u8,
    /// Minute for dailies (0..=59, default 59).
    pub daily_min: u8,
    /// Day of the week for weeklies, 0 = Sunday (0..=6, default 1 = Monday).
    pub weekly_wday: u8,
    /// Hour for weeklies (0..=23, default 23).
    pub weekly_hour: u8,
    /// Minute for weeklies (0..=59, default 30).
    pub weekly_min: u8,
    /// Day of the month for monthlies (1..=31, default 1); clamped to the
    /// month's last day.
    pub monthly_mday: u8,
    /// Hour for monthlies (0..=23, default 0).
    pub monthly_hour: u8,
    /// Minute for monthlies (0..=59, default 0).
    pub monthly_min: u8,
    /// Month for yearlies (1..=12, default 1).
    pub yearly_mon: u8,
    /// Day of the month for yearlies (1..=31, default 1; must exist in
    /// `yearly_mon` of a leap year; 29 February is clamped in common years).
    pub yearly_mday: u8,
    /// Hour for yearlies (0..=23, default 0).
    pub yearly_hour: u8,
    /// Minute for yearlies (0..=59, default 0).
    pub yearly_min: u8,
}

impl Default for PreferredTimes {
    /// sanoid's defaults (`sanoid.defaults.conf`, version 2).
    fn default() -> Self {
        Self {
            hourly_min: 0,
            daily_hour: 23,
            daily_min: 59,
            weekly_wday: 1,
            weekly_hour: 23,
            weekly_min: 30,
            monthly_mday: 1,
            monthly_hour: 0,
            monthly_min: 0,
            yearly_mon: 1,
            yearly_mday: 1,
            yearly_hour: 0,
            yearly_min: 0,
        }
    }
}

/// [`PreferredTimes`] in the time zone whose wall clock they refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Preferred {
    /// The zone whose wall clock the times refer to (sanoid uses the
    /// process's `TZ`; Debian runs it with `TZ=UTC`).
    pub time_zone: TimeZone,
    /// The times.
    pub times: PreferredTimes,
}

impl Preferred {
    /// sanoid's defaults (`sanoid.defaults.conf`, version 2) in `time_zone`.
    #[must_use]
    pub fn new(time_zone: TimeZone) -> Self {
        Self::with_times(time_zone, PreferredTimes::default())
    }

    /// `times` in `time_zone`.
    #[must_use]
    pub fn with_times(time_zone: TimeZone, times: PreferredTimes) -> Self {
        Self { time_zone, times }
    }

    /// Checks every setting's range ([`PreferredTimes::validate`]).
    ///
    /// # Errors
    /// As [`PreferredTimes::validate`].
    pub fn validate(&self) -> Result<(), ScheduleError> {
        self.times.validate()
    }
}

impl PreferredTimes {
    /// Checks every setting's range.
    ///
    /// # Errors
    /// [`ScheduleError::OutOfRange`] naming the first setting out of range,
    /// or [`ScheduleError::NoSuchDay`] for a yearly date such as 30 February.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        let checks: [(&'static str, u8, u8, u8); 13] = [
            ("hourly_min", self.hourly_min, 0, 59),
            ("daily_hour", self.daily_hour, 0, 23),
            ("daily_min", self.daily_min, 0, 59),
            ("weekly_wday", self.weekly_wday, 0, 6),
            ("weekly_hour", self.weekly_hour, 0, 23),
            ("weekly_min", self.weekly_min, 0, 59),
            ("monthly_mday", self.monthly_mday, 1, 31),
            ("monthly_hour", self.monthly_hour, 0, 23),
            ("monthly_min", self.monthly_min, 0, 59),
            ("yearly_mon", self.yearly_mon, 1, 12),
            ("yearly_mday", self.yearly_mday, 1, 31),
            ("yearly_hour", self.yearly_hour, 0, 23),
            ("yearly_min", self.yearly_min, 0, 59),
        ];
        for (key, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(ScheduleError::OutOfRange {
                    key,
                    value,
                    min,
                    max,
                });
            }
        }
        // 2000 is a leap year: 29 February is allowed, 30 February is not.
        if Date::new(2000, small(self.yearly_mon), small(self.yearly_mday)).is_err() {
            return Err(ScheduleError::NoSuchDay {
                mon: self.yearly_mon,
                mday: self.yearly_mday,
            });
        }
        Ok(())
    }
}

/// A validated setting as jiff's `i8` (out-of-range values become an
/// invalid `i8` that jiff rejects, never a panic).
fn small(v: u8) -> i8 {
    i8::try_from(v).unwrap_or(i8::MAX)
}

fn time_of_day(hour: u8, min: u8) -> Result<Time, jiff::Error> {
    Time::new(small(hour), small(min), 0, 0)
}

/// `date` in the same month, with the day clamped to the month's length.
fn clamped_date(year: i16, month: u8, mday: u8) -> Result<Date, jiff::Error> {
    let first = Date::new(year, small(month), 1)?;
    Date::new(year, small(month), small(mday).min(first.days_in_month()))
}

/// The most recent preferred time of `period` at or before `now`, in
/// `prefs.time_zone` (only the instant of `now` matters, not its zone).
///
/// The rules are sanoid 2.1's, with the differences listed in the
/// [`snapshot` module documentation](super): slices of `frequently` restart at `:00`
/// every hour (a period of 45 gives `:00` and `:45`; 7 gives `:00, :07, ...,
/// :56`); `hourly` is this hour at `hourly_min`, else the previous hour's;
/// `daily` is today at `daily_hour:daily_min`, else yesterday's; `weekly`
/// the latest `weekly_wday` at `weekly_hour:weekly_min`; `monthly` day
/// `monthly_mday` of the current month, minus 31 days when in the future;
/// `yearly` this year's date, else last year's.
///
/// # Errors
/// [`ScheduleError`] when `prefs` is invalid, or (for `now` within a year
/// of the limits of representable time) when the computation overflows.
pub fn last_preferred(
    period: Period,
    prefs: &Preferred,
    now: &Zoned,
) -> Result<Zoned, ScheduleError> {
    prefs.validate()?;
    let tz = &prefs.time_zone;
    let now_ts = now.timestamp();
    let fail = |reason: String| ScheduleError::Time {
        period: period.kind(),
        now: now_ts,
        reason,
    };
    let found = match period {
        Period::Frequently { minutes } => {
            let p = i64::from(minutes.get());
            wall_clock_slot(tz, now_ts, |local| {
                let hour = local.div_euclid(3600) * 3600;
                let minute = (local - hour) / 60;
                hour + minute / p * p * 60
            })
        }
        Period::Hourly => {
            let min = i64::from(prefs.times.hourly_min);
            wall_clock_slot(tz, now_ts, |local| {
                let at = local.div_euclid(3600) * 3600 + min * 60;
                // Later this hour: look at the previous hour's.
                if at > local { at - 3600 } else { at }
            })
        }
        Period::Daily => {
            let today = tz.to_datetime(now_ts).date();
            let time = time_of_day(prefs.times.daily_hour, prefs.times.daily_min);
            latest_local(
                tz,
                now_ts,
                (0..3).map(|back| today.checked_sub(Span::new().days(back))),
                time,
            )
        }
        Period::Weekly => {
            let today = tz.to_datetime(now_ts).date();
            let wday = i64::from(prefs.times.weekly_wday);
            let back = (i64::from(today.weekday().to_sunday_zero_offset()) - wday).rem_euclid(7);
            let time = time_of_day(prefs.times.weekly_hour, prefs.times.weekly_min);
            latest_local(
                tz,
                now_ts,
                (0..3).map(|weeks| today.checked_sub(Span::new().days(back + 7 * weeks))),
                time,
            )
        }
        Period::Monthly => monthly(prefs, tz, now_ts),
        Period::Yearly => {
            let year = tz.to_datetime(now_ts).date().year();
            let time = time_of_day(prefs.times.yearly_hour, prefs.times.yearly_min);
            latest_local(
                tz,
                now_ts,
                (0..3).map(|back| {
                    clamped_date(
                        year.saturating_sub(back),
                        prefs.times.yearly_mon,
                        prefs.times.yearly_mday,
                    )
                }),
                time,
            )
        }
    };
    match found {
        Ok(Some(ts)) => Ok(ts.to_zoned(tz.clone())),
        Ok(None) => Err(fail("no preferred time at or before it".into())),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// True iff a snapshot of `period` is due at `now`: there is none yet
/// (`newest` is `None`), or the newest one (by its `creation`) is strictly
/// older than [`last_preferred`].
///
/// # Errors
/// As [`last_preferred`].
pub fn is_due(
    period: Period,
    prefs: &Preferred,
    newest: Option<Timestamp>,
    now: &Zoned,
) -> Result<bool, ScheduleError> {
    let preferred = last_preferred(period, prefs, now)?.timestamp();
    Ok(newest.is_none_or(|n| n < preferred))
}

/// The first of `dates` whose local `time` (resolved with jiff's
/// compatible rule: first occurrence in a fold, shifted forward in a gap)
/// is at or before `now`.
fn latest_local(
    tz: &TimeZone,
    now: Timestamp,
    dates: impl IntoIterator<Item = Result<Date, jiff::Error>>,
    time: Result<Time, jiff::Error>,
) -> Result<Option<Timestamp>, jiff::Error> {
    let time = time?;
    for date in dates {
        let at = tz
            .to_ambiguous_timestamp(date?.to_datetime(time))
            .compatible()?;
        if at <= now {
            return Ok(Some(at));
        }
    }
    Ok(None)
}

fn monthly(
    prefs: &Preferred,
    tz: &TimeZone,
    now: Timestamp,
) -> Result<Option<Timestamp>, jiff::Error> {
    let today = tz.to_datetime(now).date();
    let date = clamped_date(
        today.year(),
        u8::try_from(today.month()).unwrap_or(0),
        prefs.times.monthly_mday,
    )?;
    let time = time_of_day(prefs.times.monthly_hour, prefs.times.monthly_min)?;
    let mut at = tz
        .to_ambiguous_timestamp(date.to_datetime(time))
        .compatible()?;
    // sanoid's month is 31 * 86400 s, not a calendar month.
    for _ in 0..3 {
        if at <= now {
            return Ok(Some(at));
        }
        at = at.checked_sub(SignedDuration::from_hours(31 * 24))?;
    }
    Ok(None)
}

/// The latest instant at or before `now` at which the local wall clock
/// shows a preferred time, where `latest_in_offset(local_seconds)` finds the
/// latest preferred local second at or before a local second under one
/// fixed offset.
///
/// Under the offset in force at `t`, the candidate is exact unless a
/// transition happened between it and `t`; then nothing preferred lies in
/// `t`'s offset region, and the search continues just before the region.
fn wall_clock_slot(
    tz: &TimeZone,
    now: Timestamp,
    latest_in_offset: impl Fn(i64) -> i64,
) -> Result<Option<Timestamp>, jiff::Error> {
    let one_ns = SignedDuration::from_nanos(1);
    let mut t = now;
    let mut first = None;
    // Each round steps back over one offset transition; real zones never
    // have several within an hour, so a few rounds are plenty.
    for _ in 0..8 {
        let off = i64::from(tz.to_offset(t).seconds());
        // Whole seconds, rounded down (subsec is negative before 1970).
        let secs = t.as_second() - i64::from(t.subsec_nanosecond() < 0);
        let candidate = Timestamp::from_second(latest_in_offset(secs + off) - off)?;
        first.get_or_insert(candidate);
        let region_start = t
            .checked_add(one_ns)
            .ok()
            .and_then(|after| tz.preceding(after).next())
            .map(|tr| tr.timestamp());
        match region_start {
            Some(start) if start > candidate => t = start.checked_sub(one_ns)?,
            _ => return Ok(Some(candidate)),
        }
    }
    Ok(first)
}
