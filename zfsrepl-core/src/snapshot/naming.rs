//! Snapshot names: sanoid's `autosnap_YYYY-MM-DD_HH:MM:SS_<type>` and
//! zfsrepl's own, which snapshots belong to whom, and parsing names back.
//!
//! Names are for humans, for ownership and for `regex` rules. Retention and
//! due-time decisions use the `creation` property, never a parsed name.

use jiff::Timestamp;
use jiff::civil::{DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};

use super::PeriodKind;
use crate::name::{NameError, SnapshotName};

/// What every sanoid snapshot name starts with.
pub const SANOID_PREFIX: &str = "autosnap";

/// zfsrepl's default snapshot name prefix.
pub const DEFAULT_PREFIX: &str = "zfsrepl_";

/// Why a namer could not be built or could not name a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NamingError {
    /// An empty prefix: zfsrepl owns snapshots by prefix, so it would claim
    /// (and prune) every snapshot of the dataset.
    #[error(
        "the snapshot name prefix is empty; zfsrepl owns snapshots by prefix, so an empty one would claim every snapshot"
    )]
    EmptyPrefix,
    /// The namer would produce names ZFS rejects.
    #[error("snapshot name prefix {prefix:?} gives invalid names such as {sample:?}: {source}")]
    InvalidName {
        /// The prefix.
        prefix: String,
        /// A name it produced.
        sample: String,
        /// What is wrong with it.
        #[source]
        source: NameError,
    },
    /// Every name the namer may use for this snapshot already exists.
    #[error("cannot name the snapshot: {name:?} already exists")]
    Exists {
        /// The last name tried.
        name: String,
    },
}

/// The two naming formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameStyle {
    /// sanoid's `autosnap_YYYY-MM-DD_HH:MM:SS_<type>`, in local time of
    /// `time_zone`, with `dst` before `_<type>` for the second pass through
    /// a repeated hour. Local time repeats once a year, so these names need
    /// that retry to stay unique; they are kept for sanoid compatibility.
    Sanoid {
        /// The zone of the timestamps (sanoid's `TZ`).
        time_zone: TimeZone,
    },
    /// zfsrepl's `<prefix>YYYY-MM-DD_HH:MM:SS_<type>`, always in **UTC**.
    ///
    /// UTC because: it never repeats, so two runs an hour apart across a DST
    /// fall-back can never produce the same name and no `dst` retry is
    /// needed; names sort chronologically as strings, across DST changes and
    /// across hosts in different zones (a dataset replicated between
    /// datacentres keeps names that mean one instant everywhere); a name
    /// parses back to its instant with no zone database; and a UTC offset
    /// in the name cannot be written as `+02:00`, since ZFS forbids `+`.
    /// It is also what the primary user's sanoid already writes: Debian runs
    /// `TZ=UTC sanoid --cron`.
    Zfsrepl {
        /// What every name starts with; owns the snapshots (default
        /// [`DEFAULT_PREFIX`]).
        prefix: String,
    },
}

/// A snapshot name taken apart by [`SnapshotNamer::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    /// The instant the name's time stands for. For sanoid's local-time
    /// names in a repeated hour this is a guess: the first occurrence,
    /// or the second when the name carries `dst`.
    pub at: Timestamp,
    /// The time as written in the name (UTC for zfsrepl's names).
    pub local: DateTime,
    /// The period type at the end of the name.
    pub kind: PeriodKind,
    /// True for sanoid's DST retry names (`..._02:00:00dst_hourly`).
    pub dst: bool,
}

/// Makes, recognises and parses periodic snapshot names.
///
/// Built only through [`sanoid`](Self::sanoid) or
/// [`zfsrepl`](Self::zfsrepl), which format a summer and a winter sample of
/// every name the namer can produce and check them as ZFS snapshot names, so
/// a namer never produces an invalid name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotNamer {
    style: NameStyle,
}

impl SnapshotNamer {
    /// sanoid's names, in local time of `time_zone`.
    ///
    /// # Errors
    /// [`NamingError::InvalidName`] if a sample name is invalid (never, for
    /// this fixed format; checked all the same).
    pub fn sanoid(time_zone: TimeZone) -> Result<Self, NamingError> {
        Self::validated(NameStyle::Sanoid { time_zone })
    }

    /// zfsrepl's names, `<prefix>YYYY-MM-DD_HH:MM:SS_<type>` in UTC.
    ///
    /// A prefix starting with `autosnap` makes names that sanoid also takes
    /// for its own (they end in `ly`), and prunes by its counts.
    ///
    /// # Errors
    /// [`NamingError::EmptyPrefix`], or [`NamingError::InvalidName`] when the
    /// prefix has characters ZFS forbids (`@`, `/`, `+`, ...) or is too long.
    pub fn zfsrepl(prefix: &str) -> Result<Self, NamingError> {
        if prefix.is_empty() {
            return Err(NamingError::EmptyPrefix);
        }
        Self::validated(NameStyle::Zfsrepl {
            prefix: prefix.to_owned(),
        })
    }

    fn validated(style: NameStyle) -> Result<Self, NamingError> {
        let namer = Self { style };
        // One date in summer and one in winter, so that a zone's DST offset
        // is exercised either way (zrepl's snapname check does the same).
        let samples = [
            Timestamp::constant(1_784_118_896, 0), // 2026-07-15T12:34:56Z
            Timestamp::constant(1_768_438_923, 0), // 2026-01-15T01:02:03Z
        ];
        for at in samples {
            for kind in PeriodKind::TAKING_ORDER {
                for dst in [false, true] {
                    let sample = namer.render(at, kind, dst);
                    // The shortest dataset name: the caller's real dataset
                    // is checked again when it builds its `SnapshotName`.
                    if let Err(source) = SnapshotName::parse(&format!("x@{sample}")) {
                        return Err(NamingError::InvalidName {
                            prefix: namer.prefix().to_owned(),
                            sample,
                            source,
                        });
                    }
                }
            }
        }
        Ok(namer)
    }

    /// The format.
    #[must_use]
    pub fn style(&self) -> &NameStyle {
        &self.style
    }

    /// What every name starts with (`autosnap_` for sanoid's).
    #[must_use]
    pub fn prefix(&self) -> &str {
        match &self.style {
            NameStyle::Sanoid { .. } => "autosnap_",
            NameStyle::Zfsrepl { prefix } => prefix,
        }
    }

    /// The name of a `kind` snapshot taken at `at` (without any DST retry).
    /// All snapshots of one run share one `at`.
    #[must_use]
    pub fn format(&self, at: Timestamp, kind: PeriodKind) -> String {
        self.render(at, kind, false)
    }

    fn render(&self, at: Timestamp, kind: PeriodKind, dst: bool) -> String {
        let local = match &self.style {
            NameStyle::Sanoid { time_zone } => time_zone.to_datetime(at),
            NameStyle::Zfsrepl { .. } => TimeZone::UTC.to_datetime(at),
        };
        format!(
            "{}{:04}-{:02}-{:02}_{:02}:{:02}:{:02}{}_{}",
            self.prefix(),
            local.year(),
            local.month(),
            local.day(),
            local.hour(),
            local.minute(),
            local.second(),
            if dst { "dst" } else { "" },
            kind.name(),
        )
    }

    /// The name for a new `kind` snapshot taken at `at`, given which names
    /// already exist on the dataset (`exists(short_name)`).
    ///
    /// sanoid's style retries as sanoid does: when the name exists on a day
    /// whose start was in DST and `at` is not (the repeated hour after DST
    /// ends), with `dst` inserted before the type
    /// (`autosnap_2017-10-29_02:00:00dst_hourly`). sanoid retries only
    /// when it also computes hourlies; we retry for every kind.
    ///
    /// # Errors
    /// [`NamingError::Exists`] when every name allowed is taken: never a
    /// duplicate name.
    pub fn name(
        &self,
        at: Timestamp,
        kind: PeriodKind,
        exists: impl Fn(&str) -> bool,
    ) -> Result<String, NamingError> {
        let plain = self.render(at, kind, false);
        if !exists(&plain) {
            return Ok(plain);
        }
        if let NameStyle::Sanoid { time_zone } = &self.style
            && dst_ended_today(time_zone, at)
        {
            let retry = self.render(at, kind, true);
            if !exists(&retry) {
                return Ok(retry);
            }
            return Err(NamingError::Exists { name: retry });
        }
        Err(NamingError::Exists { name: plain })
    }

    /// True when this namer's owner manages the snapshot `snap` (the short
    /// name, after `@`): for sanoid, [`sanoid_type`] finds a type; for
    /// zfsrepl, the name starts with the prefix.
    #[must_use]
    pub fn owns(&self, snap: &str) -> bool {
        match &self.style {
            NameStyle::Sanoid { .. } => sanoid_type(snap).is_some(),
            NameStyle::Zfsrepl { prefix } => snap.starts_with(prefix.as_str()),
        }
    }

    /// Takes apart a name in exactly this namer's format (`snap` is the
    /// short name, after `@`). Returns `None` for anything else, including
    /// sanoid-owned names in other formats and types other than sanoid's six.
    #[must_use]
    pub fn parse(&self, snap: &str) -> Option<ParsedName> {
        let rest = snap.strip_prefix(self.prefix())?;
        let local = parse_stamp(rest.get(..19)?)?;
        let rest = rest.get(19..)?;
        let (dst, rest) = match (&self.style, rest.strip_prefix("dst")) {
            (NameStyle::Sanoid { .. }, Some(r)) => (true, r),
            _ => (false, rest),
        };
        let kind = PeriodKind::from_name(rest.strip_prefix('_')?)?;
        let at = match &self.style {
            NameStyle::Zfsrepl { .. } => local.to_zoned(TimeZone::UTC).ok()?.timestamp(),
            NameStyle::Sanoid { time_zone } => {
                let amb = time_zone.to_ambiguous_timestamp(local);
                match (amb.offset(), dst) {
                    (AmbiguousOffset::Fold { .. }, true) => amb.later().ok()?,
                    (AmbiguousOffset::Fold { .. }, false) => amb.earlier().ok()?,
                    _ => amb.compatible().ok()?,
                }
            }
        };
        Some(ParsedName {
            at,
            local,
            kind,
            dst,
        })
    }
}

/// sanoid's DST condition: the local day began in DST and `at` is not in
/// it, so the hour after the fall-back is a repeat.
fn dst_ended_today(tz: &TimeZone, at: Timestamp) -> bool {
    let day = tz.to_datetime(at).date().to_datetime(Time::midnight());
    let Ok(start) = day.to_zoned(tz.clone()) else {
        return false;
    };
    tz.to_offset_info(start.timestamp()).dst().is_dst() && !tz.to_offset_info(at).dst().is_dst()
}

/// `YYYY-MM-DD_HH:MM:SS`, strictly.
fn parse_stamp(s: &str) -> Option<DateTime> {
    let b = s.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'_'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i16> {
        let digits = s.get(from..to)?;
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let small = |from: usize| num(from, from + 2).and_then(|v| i8::try_from(v).ok());
    DateTime::new(
        num(0, 4)?,
        small(5)?,
        small(8)?,
        small(11)?,
        small(14)?,
        small(17)?,
        0,
    )
    .ok()
}

/// sanoid's type of the snapshot `snap` (the short name, after `@`), or
/// `None` when sanoid does not manage it.
///
/// sanoid 2.1 lists a snapshot only when its name starts with `autosnap`
/// and ends with `ly` (case-sensitive, no `_` required), and takes its type
/// with the unanchored, greedy Perl match `.*_(\w*ly)`: the type follows the
/// LAST `_` after which word characters (`[A-Za-z0-9_]`) run into an `ly`,
/// and is that run up to its last `ly`. For every name whose text after the
/// last `_` is made of word characters, that is simply the text after the
/// last `_`. So `autosnapshot_daily` is a daily, `autosnap_custom_hourly` an
/// hourly, `autosnap_..._silly` a `silly` (which no count matches, so sanoid
/// never prunes it), and `autosnap_..._hourly_keep`, `Autosnap_..._daily`,
/// `foo_autosnap_..._daily`, `zfs-auto-snap_hourly-...` and `autosnap_<date>`
/// are not sanoid's. A listed name with no `_` before its `ly`
/// (`autosnapdaily`) has no type, and sanoid never prunes it either: `None`.
#[must_use]
pub fn sanoid_type(snap: &str) -> Option<&str> {
    if !snap.starts_with(SANOID_PREFIX) || !snap.ends_with("ly") {
        return None;
    }
    let is_word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    snap.match_indices('_').rev().find_map(|(i, _)| {
        let run_start = i + 1;
        let run_len = snap.as_bytes()[run_start..]
            .iter()
            .take_while(|c| is_word(c))
            .count();
        let run = &snap[run_start..run_start + run_len];
        run.rfind("ly").map(|j| &run[..j + 2])
    })
}
