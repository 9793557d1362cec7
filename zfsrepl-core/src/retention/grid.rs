//! The retention grid grammar (`1x1h(keep=all) | 24x1h | 14x1d`) and the
//! mapping of a snapshot's age to a bucket.
//!
//! Grammar, after zrepl's `config/retentiongrid.go`:
//!
//! ```text
//! grid     := interval ( "|" interval )*
//! interval := REPEAT "x" LENGTH UNIT [ "(" "keep" "=" ( COUNT | "all" ) ")" ]
//! UNIT     := "s" | "m" | "h" | "d" | "w"
//! ```
//!
//! Whitespace is allowed between all tokens. `REPEAT`, `LENGTH` and `COUNT`
//! are positive integers; `keep` defaults to 1. Interval lengths must not
//! decrease, except after intervals that all keep everything (zrepl's rule:
//! a shorter interval after a thinning one is almost always a typo).
//!
//! The grid is parsed once, when the policy is loaded; the planner only
//! calls [`RetentionGrid::locate`].

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How many snapshots one bucket keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GridKeep {
    /// Every snapshot in the bucket (`keep=all`).
    All,
    /// The oldest `n` snapshots in the bucket (`keep=n`; default 1).
    Count(NonZeroU32),
}

impl GridKeep {
    /// One snapshot per bucket: the default.
    pub const ONE: Self = Self::Count(NonZeroU32::MIN);

    /// True when a bucket keeping `self` keeps its `rank`-th oldest
    /// snapshot (1-based).
    #[must_use]
    pub fn keeps_rank(self, rank: u32) -> bool {
        match self {
            Self::All => true,
            Self::Count(n) => rank <= n.get(),
        }
    }
}

impl fmt::Display for GridKeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Count(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for GridKeep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::All => s.serialize_str("all"),
            Self::Count(n) => s.serialize_u32(n.get()),
        }
    }
}

/// `REPEAT x LENGTH (keep=K)`: `repeat` adjacent buckets of `length_secs`
/// seconds, each keeping `keep` snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GridInterval {
    repeat: u32,
    length_secs: u64,
    keep: GridKeep,
}

impl GridInterval {
    /// Builds an interval.
    ///
    /// # Errors
    /// [`IntervalProblem`] when `repeat` or `length_secs` is 0, or the
    /// length does not fit in signed 64-bit seconds.
    pub fn new(repeat: u32, length_secs: u64, keep: GridKeep) -> Result<Self, IntervalProblem> {
        if repeat == 0 {
            return Err(IntervalProblem::ZeroRepeat);
        }
        if length_secs == 0 {
            return Err(IntervalProblem::ZeroDuration);
        }
        if i64::try_from(length_secs).is_err() {
            return Err(IntervalProblem::DurationTooLong(length_secs.to_string()));
        }
        Ok(Self {
            repeat,
            length_secs,
            keep,
        })
    }

    /// How many buckets this interval stands for.
    #[must_use]
    pub fn repeat(&self) -> u32 {
        self.repeat
    }

    /// The length of each bucket, in seconds.
    #[must_use]
    pub fn length_secs(&self) -> u64 {
        self.length_secs
    }

    /// How many snapshots each bucket keeps.
    #[must_use]
    pub fn keep(&self) -> GridKeep {
        self.keep
    }
}

impl fmt::Display for GridInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.repeat, UnitLength(self.length_secs))?;
        match self.keep {
            GridKeep::Count(n) if n.get() == 1 => Ok(()),
            k => write!(f, "(keep={k})"),
        }
    }
}

/// A parsed retention grid: adjacent buckets laid from the anchor (the
/// newest snapshot the rule sees) into the past.
///
/// `Display` prints the canonical form (`1x1h(keep=all) | 24x1h | 14x1d`),
/// which parses back to an equal grid; lengths print in the largest unit
/// that divides them (`1x60m` prints as `1x1h`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RetentionGrid {
    intervals: Vec<GridInterval>,
    span_secs: u64,
    buckets: u64,
}

impl RetentionGrid {
    /// Builds a grid from intervals, newest first.
    ///
    /// # Errors
    /// [`GridError::Empty`] without intervals, [`GridError::NotIncreasing`]
    /// when an interval is shorter than an earlier one that does not keep
    /// everything, [`GridError::TooLong`] when the grid spans more than
    /// `i64::MAX` seconds.
    pub fn new(intervals: Vec<GridInterval>) -> Result<Self, GridError> {
        if intervals.is_empty() {
            return Err(GridError::Empty);
        }
        let mut span: u64 = 0;
        let mut buckets: u64 = 0;
        for (i, iv) in intervals.iter().enumerate() {
            // zrepl's rule: a length may only shrink while every interval
            // before it keeps all (a short `keep=all` head); anywhere else a
            // shorter interval after a longer one is a mistake.
            if i > 0 {
                let prev = &intervals[i - 1];
                let all_before = intervals[..i].iter().all(|x| x.keep == GridKeep::All);
                if iv.length_secs < prev.length_secs && !all_before {
                    return Err(GridError::NotIncreasing {
                        index: i + 1,
                        length: UnitLength(iv.length_secs).to_string(),
                        prev_index: i,
                        prev_length: UnitLength(prev.length_secs).to_string(),
                    });
                }
            }
            span = u64::from(iv.repeat)
                .checked_mul(iv.length_secs)
                .and_then(|x| x.checked_add(span))
                .filter(|x| i64::try_from(*x).is_ok())
                .ok_or(GridError::TooLong)?;
            buckets += u64::from(iv.repeat);
        }
        Ok(Self {
            intervals,
            span_secs: span,
            buckets,
        })
    }

    /// The intervals, newest first.
    #[must_use]
    pub fn intervals(&self) -> &[GridInterval] {
        &self.intervals
    }

    /// The total time the grid covers, in seconds.
    #[must_use]
    pub fn span_secs(&self) -> u64 {
        self.span_secs
    }

    /// The number of buckets (the sum of the repeat counts).
    #[must_use]
    pub fn bucket_count(&self) -> u64 {
        self.buckets
    }

    /// The bucket (0-based, newest first) holding a snapshot `age_secs`
    /// older than the anchor, and what that bucket keeps; `None` when the
    /// snapshot is older than the whole grid.
    ///
    /// Bucket `i` holds ages in `[start_i, start_i + length)`: the anchor
    /// itself (age 0) is in bucket 0 and a snapshot exactly on an edge
    /// belongs to the older bucket, as in zrepl (there, buckets are
    /// `(older edge, newer edge]` in time).
    #[must_use]
    pub fn locate(&self, age_secs: u64) -> Option<(u64, GridKeep)> {
        let mut start: u64 = 0;
        let mut first: u64 = 0;
        for iv in &self.intervals {
            // Cannot overflow: the span was checked to fit in i64.
            let len = u64::from(iv.repeat) * iv.length_secs;
            if age_secs < start + len {
                return Some((first + (age_secs - start) / iv.length_secs, iv.keep));
            }
            start += len;
            first += u64::from(iv.repeat);
        }
        None
    }
}

impl fmt::Display for RetentionGrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, iv) in self.intervals.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{iv}")?;
        }
        Ok(())
    }
}

impl FromStr for RetentionGrid {
    type Err = GridError;

    fn from_str(s: &str) -> Result<Self, GridError> {
        Self::parse(s)
    }
}

impl RetentionGrid {
    /// Parses the grid grammar (see the module docs).
    ///
    /// # Errors
    /// [`GridError`] naming the interval (1-based, with its text) and what
    /// is wrong with it.
    pub fn parse(s: &str) -> Result<Self, GridError> {
        if s.trim().is_empty() {
            return Err(GridError::Empty);
        }
        let parts: Vec<&str> = s.split('|').collect();
        let count = parts.len();
        let mut intervals = Vec::with_capacity(count);
        for (i, part) in parts.iter().enumerate() {
            let iv = parse_interval(part).map_err(|problem| GridError::Interval {
                index: i + 1,
                count,
                text: part.trim().to_owned(),
                problem,
            })?;
            intervals.push(iv);
        }
        Self::new(intervals)
    }
}

impl Serialize for RetentionGrid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RetentionGrid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a grid does not parse or is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    /// Nothing to parse.
    #[error("empty retention grid: expected intervals such as `1x1h(keep=all) | 24x1h | 14x1d`")]
    Empty,
    /// One interval is malformed.
    #[error("retention grid interval {index} of {count} (`{text}`): {problem}")]
    Interval {
        /// 1-based position of the interval.
        index: usize,
        /// Number of intervals in the grid.
        count: usize,
        /// The interval's text, trimmed.
        text: String,
        /// What is wrong with it.
        problem: IntervalProblem,
    },
    /// An interval is shorter than an earlier thinning one.
    #[error(
        "retention grid interval {index} ({length}) is shorter than interval {prev_index} \
         ({prev_length}): lengths must not decrease after an interval that does not keep all; \
         order the intervals from short to long"
    )]
    NotIncreasing {
        /// 1-based position of the offending interval.
        index: usize,
        /// Its bucket length.
        length: String,
        /// 1-based position of the longer, earlier interval.
        prev_index: usize,
        /// That interval's bucket length.
        prev_length: String,
    },
    /// The grid spans more seconds than a signed 64-bit number holds.
    #[error("retention grid spans more than {} seconds", i64::MAX)]
    TooLong,
}

/// What is wrong with one interval of a grid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalProblem {
    /// Nothing between two `|`.
    #[error("empty interval (two `|` in a row, or one at an end?)")]
    Empty,
    /// No leading number.
    #[error("expected a repeat count first, as in `24x1h`")]
    MissingRepeat,
    /// `0x...`.
    #[error("repeat count must be at least 1")]
    ZeroRepeat,
    /// The repeat count does not fit in 32 bits.
    #[error("repeat count `{0}` is too large")]
    RepeatTooLarge(String),
    /// No `x` after the repeat count.
    #[error("expected `x` after the repeat count, as in `24x1h`")]
    MissingX,
    /// No number after `x`.
    #[error("expected a duration after `x`, as in `24x1h`")]
    MissingDuration,
    /// A number without unit.
    #[error("duration `{0}` needs a unit: s, m, h, d or w")]
    MissingUnit(String),
    /// A unit we do not know.
    #[error("unknown duration unit `{0}`: use s, m, h, d or w")]
    BadUnit(String),
    /// `24x0h`.
    #[error("duration must be longer than 0")]
    ZeroDuration,
    /// The duration does not fit in signed 64-bit seconds.
    #[error("duration `{0}` is too long")]
    DurationTooLong(String),
    /// `(` without `)`.
    #[error("`(` is not closed")]
    Unclosed,
    /// Something other than `keep=...` in parentheses.
    #[error("unknown parameter `{0}`: only `keep=N` or `keep=all` is allowed")]
    UnknownParam(String),
    /// `keep=` with something other than a positive number or `all`.
    #[error("keep must be a positive number or `all`, not `{0}`")]
    BadKeep(String),
    /// Text after the interval.
    #[error("unexpected `{0}` after the interval")]
    Trailing(String),
}

fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

fn parse_interval(text: &str) -> Result<GridInterval, IntervalProblem> {
    let s = text.trim();
    if s.is_empty() {
        return Err(IntervalProblem::Empty);
    }
    let (digits, rest) = split_digits(s);
    if digits.is_empty() {
        return Err(IntervalProblem::MissingRepeat);
    }
    let repeat: u32 = digits
        .parse()
        .map_err(|_| IntervalProblem::RepeatTooLarge(digits.to_owned()))?;
    let rest = rest
        .trim_start()
        .strip_prefix('x')
        .ok_or(IntervalProblem::MissingX)?
        .trim_start();
    let (digits, rest) = split_digits(rest);
    if digits.is_empty() {
        return Err(IntervalProblem::MissingDuration);
    }
    let too_long = || IntervalProblem::DurationTooLong(digits.to_owned());
    let number: u64 = digits.parse().map_err(|_| too_long())?;
    let rest = rest.trim_start();
    let unit_end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let (unit, rest) = rest.split_at(unit_end);
    let multiplier: u64 = match unit {
        "" => return Err(IntervalProblem::MissingUnit(digits.to_owned())),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        other => return Err(IntervalProblem::BadUnit(other.to_owned())),
    };
    let length = number.checked_mul(multiplier).ok_or_else(too_long)?;
    let rest = rest.trim_start();
    let (keep, rest) = match rest.strip_prefix('(') {
        None => (GridKeep::ONE, rest),
        Some(inner) => {
            let close = inner.find(')').ok_or(IntervalProblem::Unclosed)?;
            (parse_param(&inner[..close])?, &inner[close + 1..])
        }
    };
    let rest = rest.trim();
    if !rest.is_empty() {
        return Err(IntervalProblem::Trailing(rest.to_owned()));
    }
    GridInterval::new(repeat, length, keep).map_err(|e| match e {
        IntervalProblem::DurationTooLong(_) => too_long(),
        other => other,
    })
}

fn parse_param(p: &str) -> Result<GridKeep, IntervalProblem> {
    let unknown = || IntervalProblem::UnknownParam(p.trim().to_owned());
    let (key, value) = p.split_once('=').ok_or_else(unknown)?;
    if key.trim() != "keep" {
        return Err(unknown());
    }
    let value = value.trim();
    if value == "all" {
        return Ok(GridKeep::All);
    }
    let bad = || IntervalProblem::BadKeep(value.to_owned());
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u32 = value.parse().map_err(|_| bad())?;
    NonZeroU32::new(n).map(GridKeep::Count).ok_or_else(bad)
}

/// A length in seconds, printed in the largest unit that divides it
/// (`604800` -> `1w`, `5400` -> `90m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnitLength(pub(crate) u64);

impl fmt::Display for UnitLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [(604_800, "w"), (86_400, "d"), (3600, "h"), (60, "m")];
        for (secs, unit) in UNITS {
            if self.0 != 0 && self.0.is_multiple_of(secs) {
                return write!(f, "{}{unit}", self.0 / secs);
            }
        }
        write!(f, "{}s", self.0)
    }
}

/// A span in seconds, printed as its parts (`15d1h`, `365d6h`, `90s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span(pub(crate) u64);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
        if self.0 == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.0;
        for (secs, unit) in UNITS {
            if rest >= secs {
                write!(f, "{}{unit}", rest / secs)?;
                rest %= secs;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn grid(s: &str) -> RetentionGrid {
        RetentionGrid::parse(s).unwrap()
    }

    #[test]
    fn parses_the_zrepl_examples() {
        let g = grid("1x1h(keep=all) | 24x1h | 14x1d");
        let ivs = g.intervals();
        assert_eq!(ivs.len(), 3);
        assert_eq!(
            (ivs[0].repeat(), ivs[0].length_secs(), ivs[0].keep()),
            (1, 3600, GridKeep::All)
        );
        assert_eq!(
            (ivs[1].repeat(), ivs[1].length_secs(), ivs[1].keep()),
            (24, 3600, GridKeep::ONE)
        );
        assert_eq!(ivs[2].length_secs(), 86_400);
        assert_eq!(g.bucket_count(), 39);
        assert_eq!(g.span_secs(), 25 * 3600 + 14 * 86_400);
        assert_eq!(g.to_string(), "1x1h(keep=all) | 24x1h | 14x1d");

        let g = grid("1x1h(keep=all) | 24x1h | 35x1d | 6x30d");
        assert_eq!(g.to_string(), "1x1h(keep=all) | 24x1h | 35x1d | 6x30d");
    }

    #[test]
    fn accepts_whitespace_units_and_counts() {
        let g = grid("  2 x 30 s ( keep = 3 )|1x5m|1x2h|3x1d|2x1w  ");
        assert_eq!(g.to_string(), "2x30s(keep=3) | 1x5m | 1x2h | 3x1d | 2x1w");
        assert_eq!(
            g.intervals()[0].keep(),
            GridKeep::Count(NonZeroU32::new(3).unwrap())
        );
        // keep=1 is the default and prints without parameter.
        assert_eq!(grid("3x1h(keep=1)").to_string(), "3x1h");
        // Lengths print in the largest exact unit.
        assert_eq!(
            grid("1x60m | 1x90m | 1x7d").to_string(),
            "1x1h | 1x90m | 1x1w"
        );
    }

    #[test]
    fn shorter_intervals_are_allowed_only_after_keep_all() {
        grid("1x1d(keep=all) | 1x1h(keep=all) | 24x1h");
        grid("1x1d(keep=all) | 24x1h");
        // Compared with the interval right before, as zrepl does.
        grid("1x1d(keep=all) | 1x1h | 1x2h");
        let e = RetentionGrid::parse("24x1h | 7x1d | 2x1h").unwrap_err();
        assert_eq!(
            e.to_string(),
            "retention grid interval 3 (1h) is shorter than interval 2 (1d): lengths must not \
             decrease after an interval that does not keep all; order the intervals from short \
             to long"
        );
        assert!(matches!(
            RetentionGrid::parse("1x1d(keep=all) | 1x1h | 1x30m"),
            Err(GridError::NotIncreasing { index: 3, .. })
        ));
    }

    #[test]
    fn errors_name_the_interval_and_the_problem() {
        let cases: &[(&str, &str)] = &[
            (
                "",
                "empty retention grid: expected intervals such as `1x1h(keep=all) | 24x1h | 14x1d`",
            ),
            (
                "   ",
                "empty retention grid: expected intervals such as `1x1h(keep=all) | 24x1h | 14x1d`",
            ),
            (
                "24x1h |",
                "retention grid interval 2 of 2 (``): empty interval (two `|` in a row, or one at an end?)",
            ),
            (
                "x1h",
                "retention grid interval 1 of 1 (`x1h`): expected a repeat count first, as in `24x1h`",
            ),
            (
                "0x1h",
                "retention grid interval 1 of 1 (`0x1h`): repeat count must be at least 1",
            ),
            (
                "99999999999x1h",
                "retention grid interval 1 of 1 (`99999999999x1h`): repeat count `99999999999` is too large",
            ),
            (
                "24",
                "retention grid interval 1 of 1 (`24`): expected `x` after the repeat count, as in `24x1h`",
            ),
            (
                "24*1h",
                "retention grid interval 1 of 1 (`24*1h`): expected `x` after the repeat count, as in `24x1h`",
            ),
            (
                "1x1h | 24x",
                "retention grid interval 2 of 2 (`24x`): expected a duration after `x`, as in `24x1h`",
            ),
            (
                "24xh",
                "retention grid interval 1 of 1 (`24xh`): expected a duration after `x`, as in `24x1h`",
            ),
            (
                "24x1",
                "retention grid interval 1 of 1 (`24x1`): duration `1` needs a unit: s, m, h, d or w",
            ),
            (
                "24x1y",
                "retention grid interval 1 of 1 (`24x1y`): unknown duration unit `y`: use s, m, h, d or w",
            ),
            (
                "24x1hour",
                "retention grid interval 1 of 1 (`24x1hour`): unknown duration unit `hour`: use s, m, h, d or w",
            ),
            (
                "24x0h",
                "retention grid interval 1 of 1 (`24x0h`): duration must be longer than 0",
            ),
            (
                "1x99999999999999999w",
                "retention grid interval 1 of 1 (`1x99999999999999999w`): duration `99999999999999999` is too long",
            ),
            (
                "1x1h(keep=all",
                "retention grid interval 1 of 1 (`1x1h(keep=all`): `(` is not closed",
            ),
            (
                "1x1h(count=2)",
                "retention grid interval 1 of 1 (`1x1h(count=2)`): unknown parameter `count=2`: only `keep=N` or `keep=all` is allowed",
            ),
            (
                "1x1h()",
                "retention grid interval 1 of 1 (`1x1h()`): unknown parameter ``: only `keep=N` or `keep=all` is allowed",
            ),
            (
                "1x1h(keep=0)",
                "retention grid interval 1 of 1 (`1x1h(keep=0)`): keep must be a positive number or `all`, not `0`",
            ),
            (
                "1x1h(keep=)",
                "retention grid interval 1 of 1 (`1x1h(keep=)`): keep must be a positive number or `all`, not ``",
            ),
            (
                "1x1h(keep=-1)",
                "retention grid interval 1 of 1 (`1x1h(keep=-1)`): keep must be a positive number or `all`, not `-1`",
            ),
            (
                "1x1h(keep=All)",
                "retention grid interval 1 of 1 (`1x1h(keep=All)`): keep must be a positive number or `all`, not `All`",
            ),
            (
                "1x1h(keep=1) x",
                "retention grid interval 1 of 1 (`1x1h(keep=1) x`): unexpected `x` after the interval",
            ),
            (
                "1x1h 2x1d",
                "retention grid interval 1 of 1 (`1x1h 2x1d`): unexpected `2x1d` after the interval",
            ),
            (
                "1x10000000000000w | 1x10000000000000w",
                "retention grid spans more than 9223372036854775807 seconds",
            ),
        ];
        for (input, want) in cases {
            let got = RetentionGrid::parse(input).unwrap_err().to_string();
            assert_eq!(&got, want, "input {input:?}");
        }
    }

    #[test]
    fn locate_puts_edges_in_the_older_bucket() {
        let g = grid("1x1h(keep=all) | 2x2h | 1x3h");
        assert_eq!(g.locate(0), Some((0, GridKeep::All)));
        assert_eq!(g.locate(3599), Some((0, GridKeep::All)));
        assert_eq!(g.locate(3600), Some((1, GridKeep::ONE)));
        assert_eq!(g.locate(3600 + 7199), Some((1, GridKeep::ONE)));
        assert_eq!(g.locate(3600 + 7200), Some((2, GridKeep::ONE)));
        assert_eq!(g.locate(5 * 3600), Some((3, GridKeep::ONE)));
        assert_eq!(g.locate(8 * 3600 - 1), Some((3, GridKeep::ONE)));
        assert_eq!(g.locate(8 * 3600), None);
        assert_eq!(g.span_secs(), 8 * 3600);
    }

    #[test]
    fn serde_is_the_string_form() {
        let g = grid("1x1h(keep=all) | 24x1h");
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(json, "\"1x1h(keep=all) | 24x1h\"");
        let back: RetentionGrid = serde_json::from_str(&json).unwrap();
        assert_eq!(back, g);
        let err = serde_json::from_str::<RetentionGrid>("\"24x\"").unwrap_err();
        assert!(err.to_string().contains("expected a duration"), "{err}");
    }

    #[test]
    fn spans_print_in_parts() {
        assert_eq!(Span(0).to_string(), "0s");
        assert_eq!(Span(90).to_string(), "1m30s");
        assert_eq!(Span(15 * 86_400 + 3600).to_string(), "15d1h");
        assert_eq!(Span(31_557_600).to_string(), "365d6h");
    }

    fn interval() -> impl Strategy<Value = (u32, u64, u64, Option<u32>)> {
        // (repeat, number, unit multiplier, keep: None = all)
        (
            1u32..100,
            1u64..200,
            prop::sample::select(vec![1u64, 60, 3600, 86_400, 604_800]),
            prop::option::of(1u32..5),
        )
    }

    proptest! {
        #[test]
        fn display_round_trips(ivs in prop::collection::vec(interval(), 1..6)) {
            let intervals: Vec<GridInterval> = ivs
                .iter()
                .map(|&(r, n, u, k)| {
                    let keep = k.map_or(GridKeep::All, |k| GridKeep::Count(NonZeroU32::new(k).unwrap()));
                    GridInterval::new(r, n * u, keep).unwrap()
                })
                .collect();
            // Only valid grids round-trip; invalid ones must fail the same
            // way from their text.
            match RetentionGrid::new(intervals.clone()) {
                Ok(g) => {
                    let text = g.to_string();
                    let back = RetentionGrid::parse(&text).unwrap();
                    prop_assert_eq!(&back, &g);
                    prop_assert_eq!(back.to_string(), text);
                }
                Err(e) => {
                    let text = intervals.iter().map(ToString::to_string).collect::<Vec<_>>().join("|");
                    prop_assert_eq!(RetentionGrid::parse(&text).unwrap_err(), e);
                }
            }
        }

        #[test]
        fn parse_never_panics(s in "[0-9x|()a-z= ]{0,40}") {
            let _ = RetentionGrid::parse(&s);
        }
    }
}
