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
//!   `weekends 04:00`, `mon,thu 01:15`, `sun 03:00`.
//!
//! A job may add a jitter (`jitter = "2m"`): each run is delayed by a
//! deterministic amount in `[0, jitter)`, derived from a seed (the job's
//! name), so the same host spreads its jobs the same way every day.

use std::fmt;
use std::time::Duration;

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
            ["hourly", m] => {
                let Some(m) = m.strip_prefix(':') else {
                    return err(format!("hourly takes a minute like :05, not {m:?}"));
                };
                match m.parse::<u8>() {
                    Ok(minute) if minute < 60 && m.len() == 2 => Ok(Self::Calendar {
                        days: Weekdays::ALL,
                        times: Times::Hourly { minute },
                    }),
                    _ => err(format!("hourly takes a minute :00 to :59, not :{m}")),
                }
            }
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
