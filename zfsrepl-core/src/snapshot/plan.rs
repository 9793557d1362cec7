//! Which snapshot periods are due for one dataset in one run.

use jiff::{Timestamp, Zoned};

use super::{Period, PeriodKind, Preferred, ScheduleError, is_due};

/// The periods a dataset keeps (with sanoid's counts) and their preferred
/// times: everything needed to decide what one run takes.
///
/// Periods with a count of 0 are dropped (sanoid takes none of them), and
/// the rest are kept in sanoid's taking order, yearly first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPlan {
    periods: Vec<(Period, u32)>,
    preferred: Preferred,
}

impl SnapshotPlan {
    /// Builds a plan from `(period, count)` pairs in any order.
    ///
    /// # Errors
    /// [`ScheduleError::DuplicatePeriod`] when a kind appears twice (with
    /// any counts), or what [`Preferred::validate`] reports.
    pub fn new(counts: &[(Period, u32)], preferred: Preferred) -> Result<Self, ScheduleError> {
        preferred.validate()?;
        let mut sorted = counts.to_vec();
        sorted.sort_by_key(|(p, _)| p.kind());
        if let Some(w) = sorted.windows(2).find(|w| w[0].0.kind() == w[1].0.kind()) {
            return Err(ScheduleError::DuplicatePeriod(w[0].0.kind()));
        }
        let periods = sorted.into_iter().filter(|&(_, count)| count > 0).collect();
        Ok(Self { periods, preferred })
    }

    /// The kept periods and their counts, yearly first.
    #[must_use]
    pub fn periods(&self) -> &[(Period, u32)] {
        &self.periods
    }

    /// The preferred times.
    #[must_use]
    pub fn preferred(&self) -> &Preferred {
        &self.preferred
    }

    /// The periods due at `now`, in taking order (yearly first), given the
    /// creation time of the newest existing snapshot of each kind
    /// (`newest(kind)`, `None` when there is none).
    ///
    /// All of them are to be taken in this run under one timestamp (see
    /// [`SnapshotNamer`](super::SnapshotNamer)).
    ///
    /// # Errors
    /// As [`is_due`].
    pub fn due_periods(
        &self,
        newest: impl Fn(PeriodKind) -> Option<Timestamp>,
        now: &Zoned,
    ) -> Result<Vec<Period>, ScheduleError> {
        let mut due = Vec::new();
        for &(period, _) in &self.periods {
            if is_due(period, &self.preferred, newest(period.kind()), now)? {
                due.push(period);
            }
        }
        Ok(due)
    }
}

/// The periods due at `now` among `counts` (those with a count of 0
/// skipped), in taking order; shorthand for
/// [`SnapshotPlan::new`] then [`SnapshotPlan::due_periods`].
///
/// # Errors
/// As [`SnapshotPlan::new`] and [`is_due`].
pub fn due_periods(
    counts: &[(Period, u32)],
    newest: impl Fn(PeriodKind) -> Option<Timestamp>,
    prefs: &Preferred,
    now: &Zoned,
) -> Result<Vec<Period>, ScheduleError> {
    SnapshotPlan::new(counts, prefs.clone())?.due_periods(newest, now)
}
