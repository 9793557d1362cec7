//! Job schedules: what a policy's `schedule = "..."` says, parsed into a
//! [`Schedule`], and when a job runs next, a pure function of (schedule,
//! last run, now).
//!
//! Two forms:
//!
//! - **Intervals**, `every 15m`, `every 6h`, `every 1h30m`: aligned runs.
//!   An interval that divides a day runs at fixed wall-clock times of the
//!   policy's time zone counted from local midnight (`every 15m` at :00,
//!   :15, :30, :45; `every 6h` at 00:00, 06:00, 12:00, 18:00); any other
//!   interval is aligned on the Unix epoch.
//! - **Calendar** specs in the policy's time zone: `hourly :05`,
//!   `daily 03:00`, `daily 03:00,15:00`, `weekdays 02:30`,
//!   `weekends 04:00`, `mon,thu 01:15`, `sun 03:00`, `weekdays hourly :15`.
//!
//! A job may add a jitter (`jitter = "2m"`): each run is delayed by a
//! deterministic amount in `[0, jitter)`, derived from a seed (the job's
//! name), so the same host spreads its jobs the same way every day.

use std::fmt;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde::Serialize;

/// Days of the week as a bit set: bit 0 = Monday ... bit 6 = Sunday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Weekdays(pub u8);

impl Weekdays {
    /// Every day.
    pub const ALL: Self = Self(0b111_1111);
    /// Monday to Friday.
    pub const WORKDAYS: Self = Self(0b001_1111);
    /// Saturday and Sunday.
    pub const WEEKEND: Self = Self(0b110_0000);

    /// Whether the day (`0` = Monday ... `6` = Sunday) is in the set.
    #[must_use]
    pub fn contains(self, day_from_monday: u8) -> bool {
        day_from_monday < 7 && self.0 & (1 << day_from_monday) != 0
    }
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The times of day of a calendar schedule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Times {
    /// Every hour at this minute.
    Hourly {
        /// Minute past the hour, 0..=59.
        minute: u8,
    },
    /// At these wall-clock times (hour, minute), sorted, no duplicates.
    At(Vec<(u8, u8)>),
}

/// A parsed schedule. Serializes as its canonical text (`every 15m`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// Aligned runs every `interval` (at least one second).
    Every {
        /// The interval.
        interval: Duration,
    },
    /// Calendar times in the policy's time zone.
    Calendar {
        /// Which days.
        days: Weekdays,
        /// Which times of those days.
        times: Times,
    },
}

/// Why a schedule string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

fn parse_hhmm(s: &str) -> Result<(u8, u8), ParseError> {
    let Some((h, m)) = s.split_once(':') else {
        return err(format!("time {s:?} is not HH:MM"));
    };
    let (Ok(h), Ok(m)) = (h.parse::<u8>(), m.parse::<u8>()) else {
        return err(format!("time {s:?} is not HH:MM"));
    };
    if h > 23 || m > 59 || s.len() != 5 && s.len() != 4 {
        return err(format!("time {s:?} is not a time of day (00:00 to 23:59)"));
    }
    Ok((h, m))
}

fn parse_days(s: &str) -> Result<Weekdays, ParseError> {
    match s {
        "daily" => return Ok(Weekdays::ALL),
        "weekdays" => return Ok(Weekdays::WORKDAYS),
        "weekends" => return Ok(Weekdays::WEEKEND),
        _ => {}
    }
    let mut mask = 0u8;
    for d in s.split(',') {
        let Some(i) = DAY_NAMES.iter().position(|n| *n == d) else {
            return err(format!(
                "unknown day {d:?}: use daily, weekdays, weekends, or day names mon,tue,wed,thu,fri,sat,sun"
            ));
        };
        mask |= 1 << i;
    }
    Ok(Weekdays(mask))
}

impl Schedule {
    fn hourly(days: Weekdays, m: &str) -> Result<Self, ParseError> {
        let Some(m) = m.strip_prefix(':') else {
            return err(format!("hourly takes a minute like :05, not {m:?}"));
        };
        match m.parse::<u8>() {
            Ok(minute) if minute < 60 && m.len() == 2 => Ok(Self::Calendar {
                days,
                times: Times::Hourly { minute },
            }),
            _ => err(format!("hourly takes a minute :00 to :59, not :{m}")),
        }
    }

    /// Parses `every 15m`, `hourly :05`, `daily 03:00`,
    /// `weekdays 02:30`, `mon,thu 01:15`, ...
    ///
    /// # Errors
    /// What is wrong with the text.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            ["every", d] => {
                let interval = crate::policy::parse_duration(d)
                    .map_err(|e| ParseError(format!("interval {d:?}: {e}")))?;
                if interval.is_zero() {
                    return err("the interval must be more than 0s");
                }
                Ok(Self::Every { interval })
            }
            ["hourly", m] => Self::hourly(Weekdays::ALL, m),
            [days, "hourly", m] => Self::hourly(parse_days(days)?, m),
            [days, times] => {
                let days = parse_days(days)?;
                let mut at = times
                    .split(',')
                    .map(parse_hhmm)
                    .collect::<Result<Vec<_>, _>>()?;
                at.sort_unstable();
                at.dedup();
                Ok(Self::Calendar {
                    days,
                    times: Times::At(at),
                })
            }
            _ => err(format!(
                "unknown schedule {s:?}: use \"every 15m\", \"hourly :05\", \"daily 03:00\", \"weekdays 02:30\" or \"mon,thu 01:15\""
            )),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Every { interval } => write!(f, "every {}", fmt_duration(*interval)),
            Self::Calendar { days, times } => {
                if let Times::Hourly { minute } = times
                    && *days == Weekdays::ALL
                {
                    return write!(f, "hourly :{minute:02}");
                }
                match *days {
                    Weekdays::ALL => write!(f, "daily")?,
                    Weekdays::WORKDAYS => write!(f, "weekdays")?,
                    Weekdays::WEEKEND => write!(f, "weekends")?,
                    d => {
                        let names: Vec<&str> = (0..7)
                            .filter(|i| d.contains(*i))
                            .map(|i| DAY_NAMES[usize::from(i)])
                            .collect();
                        write!(f, "{}", names.join(","))?;
                    }
                }
                match times {
                    Times::Hourly { minute } => write!(f, " hourly :{minute:02}"),
                    Times::At(at) => {
                        let t: Vec<String> =
                            at.iter().map(|(h, m)| format!("{h:02}:{m:02}")).collect();
                        write!(f, " {}", t.join(","))
                    }
                }
            }
        }
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The first slot of `schedule` strictly after `after`, in `tz`.
///
/// Slots: for `every N` with N < 1h, or N not dividing a day, multiples of
/// N since the Unix epoch; for `every N` with 1h <= N dividing a day, the
/// wall-clock times N apart from local midnight (a calendar); for calendar
/// specs, the given wall-clock times on the given days. A wall-clock time
/// skipped by a DST change runs when the clock resumes (02:30 becomes 03:30
/// when 02:00 jumps to 03:00); a repeated one runs once, the first time.
/// `hourly :MM` runs every elapsed hour, including both passes of a
/// repeated hour.
#[must_use]
pub fn slot_after(schedule: &Schedule, tz: &TimeZone, after: Timestamp) -> Timestamp {
    match schedule {
        Schedule::Every { interval } => {
            let n = i64::try_from(interval.as_secs().max(1)).unwrap_or(i64::MAX);
            if n >= 3600 && 86_400 % n == 0 {
                let times = (0..86_400 / n)
                    .map(|k| {
                        let secs = k * n;
                        (
                            u8::try_from(secs / 3600).unwrap_or(0),
                            u8::try_from(secs % 3600 / 60).unwrap_or(0),
                        )
                    })
                    .collect::<Vec<_>>();
                calendar_after(Weekdays::ALL, &times, tz, after)
            } else {
                let t = after.as_second();
                let next = t.div_euclid(n).saturating_add(1).saturating_mul(n);
                Timestamp::from_second(next).unwrap_or(Timestamp::MAX)
            }
        }
        Schedule::Calendar {
            days,
            times: Times::At(times),
        } => calendar_after(*days, times, tz, after),
        Schedule::Calendar {
            days,
            times: Times::Hourly { minute },
        } => hourly_after(*days, *minute, tz, after),
    }
}

fn calendar_after(
    days: Weekdays,
    times: &[(u8, u8)],
    tz: &TimeZone,
    after: Timestamp,
) -> Timestamp {
    if days.0 & Weekdays::ALL.0 == 0 || times.is_empty() {
        return Timestamp::MAX;
    }
    // Candidates on the days around `after` (a skipped time can move past
    // midnight's neighbour only by the DST shift): the earliest one later
    // than `after`.
    let start = tz.to_datetime(after).date();
    let mut best: Option<Timestamp> = None;
    for d in -1..=8_i64 {
        let Ok(date) = start.checked_add(Span::new().days(d)) else {
            continue;
        };
        let wd = u8::try_from(date.weekday().to_monday_zero_offset()).unwrap_or(0);
        if !days.contains(wd) {
            continue;
        }
        for &(h, m) in times {
            let dt = date.at(
                i8::try_from(h).unwrap_or(0),
                i8::try_from(m).unwrap_or(0),
                0,
                0,
            );
            let Ok(z) = tz.to_ambiguous_zoned(dt).compatible() else {
                continue;
            };
            let ts = z.timestamp();
            if ts > after && best.is_none_or(|b| ts < b) {
                best = Some(ts);
            }
        }
        if best.is_some() && d >= 1 {
            break;
        }
    }
    best.unwrap_or(Timestamp::MAX)
}

fn hourly_after(days: Weekdays, minute: u8, tz: &TimeZone, after: Timestamp) -> Timestamp {
    if days.0 & Weekdays::ALL.0 == 0 {
        return Timestamp::MAX;
    }
    let base = after.as_second().div_euclid(3600) * 3600;
    for k in -1..(9 * 24_i64) {
        let hs = base + k * 3600;
        let Ok(hts) = Timestamp::from_second(hs) else {
            continue;
        };
        // The instant within this UTC hour whose local minute is `minute`.
        let off = i64::from(tz.to_offset(hts).seconds());
        let x = hs + (i64::from(minute) * 60 - off).rem_euclid(3600);
        let Ok(ts) = Timestamp::from_second(x) else {
            continue;
        };
        if ts <= after {
            continue;
        }
        let wd = tz.to_datetime(ts).date().weekday().to_monday_zero_offset();
        if days.contains(u8::try_from(wd).unwrap_or(0)) {
            return ts;
        }
    }
    Timestamp::MAX
}

/// The deterministic jitter of the run at `slot`: in `[0, jitter)`, and
/// below half the gap to the following slot (so jitter never makes a run
/// skip the next one). Derived from `seed` (the job's name) and the slot.
#[must_use]
pub fn jitter_for(
    schedule: &Schedule,
    tz: &TimeZone,
    jitter: Duration,
    seed: &str,
    slot: Timestamp,
) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    let gap = slot_after(schedule, tz, slot)
        .as_second()
        .saturating_sub(slot.as_second());
    let cap = jitter.as_secs().min(u64::try_from(gap / 2).unwrap_or(0));
    if cap == 0 {
        return Duration::ZERO;
    }
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes().chain(slot.as_second().to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Duration::from_secs(h % cap)
}

/// When a job runs next: a pure function of its schedule, its last run
/// and now.
///
/// - Never run: at the first slot after `now` (plus jitter).
/// - Otherwise at the first slot after the last run (plus jitter); if
///   that time has passed (the daemon was down, or busy), **now**, once:
///   however many slots were missed, the job runs one time, and the
///   following run is computed from that one.
/// - A last run in the future (the clock went back) counts as now.
#[must_use]
pub fn next_run(
    schedule: &Schedule,
    tz: &TimeZone,
    jitter: Duration,
    seed: &str,
    last: Option<Timestamp>,
    now: Timestamp,
) -> Timestamp {
    let from = last.map_or(now, |l| l.min(now));
    // The last run happened at its slot plus jitter; the slot after it is
    // the one after that slot (jitter stays below half a gap).
    let slot = slot_after(schedule, tz, from);
    let at = slot
        .checked_add(jitter_for(schedule, tz, jitter, seed, slot))
        .unwrap_or(slot);
    if last.is_some() && at <= now { now } else { at }
}

/// `1h30m`-style rendering of a whole number of seconds.
#[must_use]
pub fn fmt_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= n {
            out.push_str(&format!("{}{unit}", s / n));
            s %= n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use jiff::tz::TimeZoneDatabase;
    use proptest::prelude::*;

    fn paris() -> TimeZone {
        TimeZoneDatabase::bundled()
            .get("Europe/Paris")
            .expect("bundled tzdb has Europe/Paris")
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn sched(s: &str) -> Schedule {
        Schedule::parse(s).unwrap()
    }

    #[test]
    fn slots() {
        let tz = paris();
        // (schedule, after, first slot after), times in UTC; Paris is +01
        // in winter, +02 in summer; 2026-03-29 02:00 -> 03:00 and
        // 2026-10-25 03:00 -> 02:00.
        for (s, after, want) in [
            ("every 15m", "2026-11-22T10:07:00Z", "2026-11-22T10:15:00Z"),
            ("every 15m", "2026-11-22T10:15:00Z", "2026-11-22T10:30:00Z"),
            ("every 7m", "2026-11-22T10:00:00Z", "2026-11-22T10:01:00Z"),
            ("every 5s", "2026-11-22T10:00:01Z", "2026-11-22T10:00:05Z"),
            // 6h divides a day: local 00, 06, 12, 18.
            ("every 6h", "2026-11-22T04:00:00Z", "2026-11-22T05:00:00Z"),
            ("every 6h", "2026-07-01T04:00:00Z", "2026-07-01T10:00:00Z"),
            (
                "daily 03:00",
                "2026-11-22T01:59:00Z",
                "2026-11-22T02:00:00Z",
            ),
            (
                "daily 03:00",
                "2026-11-22T02:00:00Z",
                "2026-11-23T02:00:00Z",
            ),
            (
                "daily 03:00,15:00",
                "2026-11-22T02:00:00Z",
                "2026-11-22T14:00:00Z",
            ),
            // Spring forward: 02:30 does not exist, it runs at 03:30 (+02).
            (
                "daily 02:30",
                "2026-03-28T12:00:00Z",
                "2026-03-29T01:30:00Z",
            ),
            // Fall back: 02:30 happens twice, runs at the first (+02).
            (
                "daily 02:30",
                "2026-10-24T12:00:00Z",
                "2026-10-25T00:30:00Z",
            ),
            (
                "daily 02:30",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
            ),
            // 2026-11-20 is a Friday: weekdays skip to Monday 23rd.
            (
                "weekdays 02:30",
                "2026-11-20T02:00:00Z",
                "2026-11-23T01:30:00Z",
            ),
            (
                "weekends 04:00",
                "2026-11-20T02:00:00Z",
                "2026-11-21T03:00:00Z",
            ),
            (
                "mon,thu 01:15",
                "2026-11-23T00:15:00Z",
                "2026-11-26T00:15:00Z",
            ),
            ("hourly :05", "2026-11-22T10:07:00Z", "2026-11-22T11:05:00Z"),
            // Both passes of the repeated hour (00:05Z is 02:05+02, 01:05Z
            // is 02:05+01).
            ("hourly :05", "2026-10-25T00:05:00Z", "2026-10-25T01:05:00Z"),
            // An hour that does not exist is skipped, no double run.
            ("hourly :05", "2026-03-29T00:05:00Z", "2026-03-29T01:05:00Z"),
            (
                "sun hourly :30",
                "2026-11-21T23:00:00Z",
                "2026-11-21T23:30:00Z",
            ),
        ] {
            assert_eq!(
                slot_after(&sched(s), &tz, ts(after)),
                ts(want),
                "{s} after {after}"
            );
        }
        // "every 6h" at 06:00 local on a summer day is 04:00Z.
        let s = sched("every 6h");
        let first = slot_after(&s, &tz, ts("2026-07-01T00:00:00Z"));
        assert_eq!(first, ts("2026-07-01T04:00:00Z"));
    }

    #[test]
    fn next_runs() {
        let tz = paris();
        let s = sched("every 15m");
        let z = Duration::ZERO;
        let now = ts("2026-11-22T10:07:00Z");
        // Never run: the next slot.
        assert_eq!(
            next_run(&s, &tz, z, "j", None, now),
            ts("2026-11-22T10:15:00Z")
        );
        // Ran at 10:00: 10:15.
        let last = ts("2026-11-22T10:00:03Z");
        assert_eq!(
            next_run(&s, &tz, z, "j", Some(last), now),
            ts("2026-11-22T10:15:00Z")
        );
        // Down from 10:00 to 13:07: one run now, then back on the grid.
        let later = ts("2026-11-22T13:07:00Z");
        assert_eq!(next_run(&s, &tz, z, "j", Some(last), later), later);
        assert_eq!(
            next_run(&s, &tz, z, "j", Some(later), later),
            ts("2026-11-22T13:15:00Z")
        );
        // A last run in the future (clock set back) is taken as now.
        assert_eq!(
            next_run(&s, &tz, z, "j", Some(ts("2026-11-23T00:00:00Z")), now),
            ts("2026-11-22T10:15:00Z")
        );
        // Jitter: deterministic, within bounds, different per job.
        let j = Duration::from_secs(60);
        let a = next_run(&s, &tz, j, "snap", None, now);
        assert_eq!(a, next_run(&s, &tz, j, "snap", None, now));
        assert!(a >= ts("2026-11-22T10:15:00Z") && a < ts("2026-11-22T10:16:00Z"));
        let spread: std::collections::BTreeSet<_> = (0..20)
            .map(|i| next_run(&s, &tz, j, &format!("job{i}"), None, now))
            .collect();
        assert!(spread.len() > 5, "{spread:?}");
        // Jitter larger than the interval is capped below half the gap.
        let big = Duration::from_secs(3600);
        for i in 0..20 {
            let at = next_run(&s, &tz, big, &format!("job{i}"), None, now);
            assert!(at < ts("2026-11-22T10:22:30Z"), "{at}");
        }
    }

    fn any_schedule() -> impl Strategy<Value = Schedule> {
        prop_oneof![
            (1u64..100_000).prop_map(|s| Schedule::Every {
                interval: Duration::from_secs(s)
            }),
            prop::sample::select(vec![60u64, 300, 900, 3600, 7200, 21_600, 86_400]).prop_map(|s| {
                Schedule::Every {
                    interval: Duration::from_secs(s),
                }
            }),
            (1u8..128, 0u8..60).prop_map(|(d, m)| Schedule::Calendar {
                days: Weekdays(d),
                times: Times::Hourly { minute: m }
            }),
            (
                1u8..128,
                prop::collection::btree_set((0u8..24, 0u8..60), 1..4)
            )
                .prop_map(|(d, t)| Schedule::Calendar {
                    days: Weekdays(d),
                    times: Times::At(t.into_iter().collect())
                }),
        ]
    }

    proptest! {
        #[test]
        fn slot_is_the_first_after(
            s in any_schedule(),
            t in 1_700_000_000i64..1_900_000_000,
            frac in 0.0f64..1.0,
        ) {
            let tz = paris();
            let t = Timestamp::from_second(t).unwrap();
            let next = slot_after(&s, &tz, t);
            prop_assert!(next > t);
            prop_assert!(next.as_second() - t.as_second() <= (8 * 24 + 2) * 3600);
            // No slot in between: from any point before `next`, the next
            // slot is `next` itself.
            let gap = (next.as_second() - t.as_second()) as f64;
            let mid = t.as_second() + (gap * frac) as i64;
            let mid = Timestamp::from_second(mid).unwrap();
            if mid < next {
                prop_assert_eq!(slot_after(&s, &tz, mid), next);
            }
            // It is on the schedule: its local day and time match.
            let local = tz.to_datetime(next);
            if let Schedule::Calendar { days, .. } = &s {
                let wd = local.date().weekday().to_monday_zero_offset() as u8;
                prop_assert!(days.contains(wd), "{s} at {local}");
            }
            if let Schedule::Calendar { times: Times::Hourly { minute }, .. } = &s {
                prop_assert_eq!(local.minute() as u8, *minute);
            }
        }

        #[test]
        fn missed_runs_run_once(
            s in any_schedule(),
            last in 1_700_000_000i64..1_800_000_000,
            down in 0i64..10_000_000,
            jitter in 0u64..7200,
        ) {
            let tz = paris();
            let j = Duration::from_secs(jitter);
            let last = Timestamp::from_second(last).unwrap();
            let now = Timestamp::from_second(last.as_second() + down).unwrap();
            let next = next_run(&s, &tz, j, "job", Some(last), now);
            prop_assert!(next >= now);
            // Running at `next` leaves nothing due at that instant.
            let after = next_run(&s, &tz, j, "job", Some(next), next);
            prop_assert!(after > next);
            // Jitter stays within bounds.
            let slot = slot_after(&s, &tz, last.min(now));
            let jit = jitter_for(&s, &tz, j, "job", slot);
            prop_assert!(jit <= j);
            prop_assert!(jitter == 0 || jit < j);
        }
    }

    #[test]
    fn parses_and_renders() {
        for (text, canonical) in [
            ("every 15m", "every 15m"),
            ("every 90m", "every 1h30m"),
            ("hourly :05", "hourly :05"),
            ("daily 03:00", "daily 03:00"),
            ("daily 15:00,03:00", "daily 03:00,15:00"),
            ("weekdays 02:30", "weekdays 02:30"),
            ("weekends 4:00", "weekends 04:00"),
            ("mon,thu 01:15", "mon,thu 01:15"),
            ("  sun   03:00 ", "sun 03:00"),
            ("weekdays hourly :15", "weekdays hourly :15"),
        ] {
            let s = Schedule::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(s.to_string(), canonical, "{text}");
            assert_eq!(Schedule::parse(canonical).as_ref(), Ok(&s));
        }
    }

    #[test]
    fn refuses() {
        for (text, want) in [
            ("every", "unknown schedule"),
            ("every 0s", "more than 0s"),
            ("every 15", "no unit"),
            ("hourly 05", ":05"),
            ("hourly :5", ":00 to :59"),
            ("hourly :60", ":00 to :59"),
            ("daily 24:00", "time of day"),
            ("daily 3", "HH:MM"),
            ("fortnightly 03:00", "unknown day"),
            ("cron 0 3 * * *", "unknown schedule"),
        ] {
            let e = Schedule::parse(text).expect_err(text);
            assert!(e.0.contains(want), "{text}: {e}");
        }
    }
}
