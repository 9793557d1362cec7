//! Table tests of the due-time rules and names (sanoid's quirks included),
//! a simulation of a 15-minute cron across the 2026 DST transitions, and
//! property tests.

use std::collections::{BTreeMap, BTreeSet};

use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{SignedDuration, Timestamp, Zoned};
use proptest::prelude::*;

use super::*;

/// Zones come from the tz database bundled into the binary, so the tests do
/// not depend on the machine's tzdata.
fn tz(name: &str) -> TimeZone {
    TimeZoneDatabase::bundled()
        .get(name)
        .unwrap_or_else(|e| panic!("bundled tzdb lacks {name}: {e}"))
}

fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("bad timestamp {s}: {e}"))
}

fn zoned(zone: &TimeZone, s: &str) -> Zoned {
    ts(s).to_zoned(zone.clone())
}

/// RFC 3339 with the zone's offset, e.g. `2026-10-25T02:00:00+01:00`.
fn show(z: &Zoned) -> String {
    z.timestamp().display_with_offset(z.offset()).to_string()
}

fn freq(minutes: u32) -> Period {
    Period::frequently(minutes).unwrap()
}

type Tweak = fn(&mut Preferred);

fn defaults(_: &mut Preferred) {}

/// Runs `(period, tweak, now, expected)` rows in `zone`.
fn check_table(zone: &str, rows: &[(Period, Tweak, &str, &str)]) {
    let zone_tz = tz(zone);
    for (i, (period, tweak, now, want)) in rows.iter().enumerate() {
        let mut prefs = Preferred::new(zone_tz.clone());
        tweak(&mut prefs);
        let got = last_preferred(*period, &prefs, &zoned(&zone_tz, now)).unwrap();
        assert_eq!(show(&got), *want, "row {i} in {zone}: {period} at {now}");
        assert!(
            got.timestamp() <= ts(now),
            "row {i}: preferred time after now"
        );
    }
}

#[test]
fn frequently_slices_restart_every_hour() {
    check_table(
        "UTC",
        &[
            (
                freq(15),
                defaults,
                "2026-11-22T10:07:30Z",
                "2026-11-22T10:00:00+00:00",
            ),
            (
                freq(15),
                defaults,
                "2026-11-22T10:15:00Z",
                "2026-11-22T10:15:00+00:00",
            ),
            (
                freq(15),
                defaults,
                "2026-11-22T10:59:59.9Z",
                "2026-11-22T10:45:00+00:00",
            ),
            // 45: slices at :00 and :45 only.
            (
                freq(45),
                defaults,
                "2026-11-22T10:30:00Z",
                "2026-11-22T10:00:00+00:00",
            ),
            (
                freq(45),
                defaults,
                "2026-11-22T10:44:59Z",
                "2026-11-22T10:00:00+00:00",
            ),
            (
                freq(45),
                defaults,
                "2026-11-22T10:45:00Z",
                "2026-11-22T10:45:00+00:00",
            ),
            (
                freq(45),
                defaults,
                "2026-11-22T10:59:00Z",
                "2026-11-22T10:45:00+00:00",
            ),
            (
                freq(45),
                defaults,
                "2026-11-22T11:10:00Z",
                "2026-11-22T11:00:00+00:00",
            ),
            // 7: :00, :07, ..., :56, then :00 again.
            (
                freq(7),
                defaults,
                "2026-11-22T10:55:00Z",
                "2026-11-22T10:49:00+00:00",
            ),
            (
                freq(7),
                defaults,
                "2026-11-22T10:56:00Z",
                "2026-11-22T10:56:00+00:00",
            ),
            (
                freq(7),
                defaults,
                "2026-11-22T10:59:59Z",
                "2026-11-22T10:56:00+00:00",
            ),
            (
                freq(7),
                defaults,
                "2026-11-22T11:06:00Z",
                "2026-11-22T11:00:00+00:00",
            ),
            // Longer than an hour: sanoid's slices still restart at :00.
            (
                freq(90),
                defaults,
                "2026-11-22T10:59:00Z",
                "2026-11-22T10:00:00+00:00",
            ),
            (
                freq(1),
                defaults,
                "2026-11-22T10:59:59Z",
                "2026-11-22T10:59:00+00:00",
            ),
        ],
    );
}

fn hourly_30(p: &mut Preferred) {
    p.times.hourly_min = 30;
}
fn daily_0230(p: &mut Preferred) {
    p.times.daily_hour = 2;
    p.times.daily_min = 30;
}
fn daily_0130(p: &mut Preferred) {
    p.times.daily_hour = 1;
    p.times.daily_min = 30;
}
fn weekly_sunday(p: &mut Preferred) {
    p.times.weekly_wday = 0;
    p.times.weekly_hour = 2;
    p.times.weekly_min = 30;
}
fn monthly_15(p: &mut Preferred) {
    p.times.monthly_mday = 15;
}
fn monthly_31(p: &mut Preferred) {
    p.times.monthly_mday = 31;
}
fn monthly_31_2359(p: &mut Preferred) {
    p.times.monthly_mday = 31;
    p.times.monthly_hour = 23;
    p.times.monthly_min = 59;
}
fn yearly_christmas(p: &mut Preferred) {
    p.times.yearly_mon = 12;
    p.times.yearly_mday = 25;
}
fn yearly_feb29(p: &mut Preferred) {
    p.times.yearly_mon = 2;
    p.times.yearly_mday = 29;
}

#[test]
fn hourly_daily_weekly() {
    check_table(
        "UTC",
        &[
            (
                Period::Hourly,
                defaults,
                "2026-11-22T10:00:00Z",
                "2026-11-22T10:00:00+00:00",
            ),
            (
                Period::Hourly,
                defaults,
                "2026-11-22T10:30:00Z",
                "2026-11-22T10:00:00+00:00",
            ),
            (
                Period::Hourly,
                hourly_30,
                "2026-11-22T10:29:59Z",
                "2026-11-22T09:30:00+00:00",
            ),
            (
                Period::Hourly,
                hourly_30,
                "2026-11-22T10:30:00Z",
                "2026-11-22T10:30:00+00:00",
            ),
            (
                Period::Hourly,
                hourly_30,
                "2026-11-22T00:10:00Z",
                "2026-11-21T23:30:00+00:00",
            ),
            // daily 23:59 by default: yesterday's until 23:59.
            (
                Period::Daily,
                defaults,
                "2026-11-22T05:00:00Z",
                "2026-11-21T23:59:00+00:00",
            ),
            (
                Period::Daily,
                defaults,
                "2026-11-22T23:58:59Z",
                "2026-11-21T23:59:00+00:00",
            ),
            (
                Period::Daily,
                defaults,
                "2026-11-22T23:59:00Z",
                "2026-11-22T23:59:00+00:00",
            ),
            (
                Period::Daily,
                defaults,
                "2026-03-01T00:00:00Z",
                "2026-02-28T23:59:00+00:00",
            ),
            (
                Period::Daily,
                daily_0230,
                "2026-01-01T02:29:00Z",
                "2025-12-31T02:30:00+00:00",
            ),
            // weekly: Monday (1) 23:30 by default. 2026-11-23 is a Monday.
            (
                Period::Weekly,
                defaults,
                "2026-11-23T23:29:00Z",
                "2026-11-16T23:30:00+00:00",
            ),
            (
                Period::Weekly,
                defaults,
                "2026-11-23T23:30:00Z",
                "2026-11-23T23:30:00+00:00",
            ),
            (
                Period::Weekly,
                defaults,
                "2026-11-24T08:00:00Z",
                "2026-11-23T23:30:00+00:00",
            ),
            (
                Period::Weekly,
                defaults,
                "2026-11-22T08:00:00Z",
                "2026-11-16T23:30:00+00:00",
            ),
            // 0 is Sunday; 2026-11-22 is a Sunday.
            (
                Period::Weekly,
                weekly_sunday,
                "2026-11-22T02:29:00Z",
                "2026-11-15T02:30:00+00:00",
            ),
            (
                Period::Weekly,
                weekly_sunday,
                "2026-11-22T02:30:00Z",
                "2026-11-22T02:30:00+00:00",
            ),
            (
                Period::Weekly,
                weekly_sunday,
                "2026-11-28T23:00:00Z",
                "2026-11-22T02:30:00+00:00",
            ),
        ],
    );
}

#[test]
fn monthly_subtracts_31_days_like_sanoid() {
    check_table(
        "UTC",
        &[
            (
                Period::Monthly,
                defaults,
                "2026-11-22T05:00:00Z",
                "2026-11-01T00:00:00+00:00",
            ),
            (
                Period::Monthly,
                defaults,
                "2026-11-01T00:00:00Z",
                "2026-11-01T00:00:00+00:00",
            ),
            // 31 * 86400 s before 1 November, not 1 October.
            (
                Period::Monthly,
                defaults,
                "2026-10-31T23:59:59Z",
                "2026-10-01T00:00:00+00:00",
            ),
            (
                Period::Monthly,
                defaults,
                "2026-03-01T00:00:00Z",
                "2026-03-01T00:00:00+00:00",
            ),
            // The quirk: 15 March - 31 days = 12 February.
            (
                Period::Monthly,
                monthly_15,
                "2026-03-10T00:00:00Z",
                "2026-02-12T00:00:00+00:00",
            ),
            (
                Period::Monthly,
                monthly_15,
                "2026-03-15T00:00:00Z",
                "2026-03-15T00:00:00+00:00",
            ),
            // 15 January - 31 days = 15 December; 15 May - 31 days = 14 April.
            (
                Period::Monthly,
                monthly_15,
                "2026-01-02T00:00:00Z",
                "2025-12-15T00:00:00+00:00",
            ),
            (
                Period::Monthly,
                monthly_15,
                "2026-05-01T00:00:00Z",
                "2026-04-14T00:00:00+00:00",
            ),
            // Day 31 is clamped to the month's end (sanoid's timelocal dies).
            (
                Period::Monthly,
                monthly_31,
                "2026-04-30T12:00:00Z",
                "2026-04-30T00:00:00+00:00",
            ),
            (
                Period::Monthly,
                monthly_31,
                "2026-04-10T00:00:00Z",
                "2026-03-30T00:00:00+00:00",
            ),
            (
                Period::Monthly,
                monthly_31,
                "2026-02-28T00:00:00Z",
                "2026-02-28T00:00:00+00:00",
            ),
        ],
    );
}

#[test]
fn monthly_quirk_moves_backwards_but_never_ahead() {
    // From 30 April to 1 May the preferred time goes from 15 April back to
    // 14 April: a monthly is then less due, never more.
    let prefs = {
        let mut p = Preferred::new(TimeZone::UTC);
        monthly_15(&mut p);
        p
    };
    let at = |s| last_preferred(Period::Monthly, &prefs, &zoned(&TimeZone::UTC, s)).unwrap();
    let april = at("2026-04-30T23:00:00Z");
    let may = at("2026-05-01T00:00:00Z");
    assert!(may < april);
    assert!(!is_due(Period::Monthly, &prefs, Some(april.timestamp()), &may).unwrap());
}

#[test]
fn yearly_uses_the_previous_calendar_year() {
    check_table(
        "UTC",
        &[
            (
                Period::Yearly,
                defaults,
                "2026-11-22T05:00:00Z",
                "2026-01-01T00:00:00+00:00",
            ),
            (
                Period::Yearly,
                defaults,
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00+00:00",
            ),
            (
                Period::Yearly,
                defaults,
                "2025-12-31T23:59:59Z",
                "2025-01-01T00:00:00+00:00",
            ),
            // sanoid DEFECT: it would subtract 31 * 365.25 days (to 1995).
            (
                Period::Yearly,
                yearly_christmas,
                "2026-11-22T05:00:00Z",
                "2025-12-25T00:00:00+00:00",
            ),
            (
                Period::Yearly,
                yearly_christmas,
                "2026-12-25T00:00:00Z",
                "2026-12-25T00:00:00+00:00",
            ),
            // 29 February is clamped to the 28th in common years.
            (
                Period::Yearly,
                yearly_feb29,
                "2026-06-01T00:00:00Z",
                "2026-02-28T00:00:00+00:00",
            ),
            (
                Period::Yearly,
                yearly_feb29,
                "2028-03-01T00:00:00Z",
                "2028-02-29T00:00:00+00:00",
            ),
            (
                Period::Yearly,
                yearly_feb29,
                "2028-02-28T12:00:00Z",
                "2027-02-28T00:00:00+00:00",
            ),
        ],
    );
}

#[test]
fn dst_europe_paris() {
    // 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
    check_table(
        "Europe/Paris",
        &[
            // Spring forward: no 02:xx.
            (
                Period::Hourly,
                defaults,
                "2026-03-29T01:59:00+01:00",
                "2026-03-29T01:00:00+01:00",
            ),
            (
                Period::Hourly,
                defaults,
                "2026-03-29T03:10:00+02:00",
                "2026-03-29T03:00:00+02:00",
            ),
            (
                Period::Hourly,
                hourly_30,
                "2026-03-29T03:10:00+02:00",
                "2026-03-29T01:30:00+01:00",
            ),
            (
                freq(15),
                defaults,
                "2026-03-29T03:05:00+02:00",
                "2026-03-29T03:00:00+02:00",
            ),
            // 02:30 does not exist that day: 03:30 CEST, an hour after 01:30 CET.
            (
                Period::Daily,
                daily_0230,
                "2026-03-29T04:00:00+02:00",
                "2026-03-29T03:30:00+02:00",
            ),
            (
                Period::Daily,
                daily_0230,
                "2026-03-29T03:15:00+02:00",
                "2026-03-28T02:30:00+01:00",
            ),
            // Yesterday 23:59 is 23:59 CET, not 24 h before 23:59 CEST.
            (
                Period::Daily,
                defaults,
                "2026-03-29T10:00:00+02:00",
                "2026-03-28T23:59:00+01:00",
            ),
            (
                Period::Daily,
                defaults,
                "2026-03-30T10:00:00+02:00",
                "2026-03-29T23:59:00+02:00",
            ),
            (
                Period::Weekly,
                defaults,
                "2026-03-29T10:00:00+02:00",
                "2026-03-23T23:30:00+01:00",
            ),
            (
                Period::Weekly,
                weekly_sunday,
                "2026-03-29T03:10:00+02:00",
                "2026-03-22T02:30:00+01:00",
            ),
            (
                Period::Weekly,
                weekly_sunday,
                "2026-03-29T03:30:00+02:00",
                "2026-03-29T03:30:00+02:00",
            ),
            // Fall back: 02:xx twice, each hour its own slot.
            (
                Period::Hourly,
                defaults,
                "2026-10-25T02:10:00+02:00",
                "2026-10-25T02:00:00+02:00",
            ),
            (
                Period::Hourly,
                defaults,
                "2026-10-25T02:10:00+01:00",
                "2026-10-25T02:00:00+01:00",
            ),
            (
                Period::Hourly,
                hourly_30,
                "2026-10-25T02:10:00+01:00",
                "2026-10-25T02:30:00+02:00",
            ),
            (
                Period::Hourly,
                hourly_30,
                "2026-10-25T03:10:00+01:00",
                "2026-10-25T02:30:00+01:00",
            ),
            (
                freq(15),
                defaults,
                "2026-10-25T02:05:00+01:00",
                "2026-10-25T02:00:00+01:00",
            ),
            (
                freq(45),
                defaults,
                "2026-10-25T02:40:00+01:00",
                "2026-10-25T02:00:00+01:00",
            ),
            // A daily at 02:30 is the first 02:30, once.
            (
                Period::Daily,
                daily_0230,
                "2026-10-25T02:40:00+02:00",
                "2026-10-25T02:30:00+02:00",
            ),
            (
                Period::Daily,
                daily_0230,
                "2026-10-25T02:20:00+01:00",
                "2026-10-25T02:30:00+02:00",
            ),
            (
                Period::Daily,
                daily_0230,
                "2026-10-25T02:40:00+01:00",
                "2026-10-25T02:30:00+02:00",
            ),
            (
                Period::Daily,
                daily_0230,
                "2026-10-25T02:20:00+02:00",
                "2026-10-24T02:30:00+02:00",
            ),
            (
                Period::Weekly,
                weekly_sunday,
                "2026-10-25T02:40:00+01:00",
                "2026-10-25T02:30:00+02:00",
            ),
            // monthly 31 23:59: 31 October 23:59 CET - 31 * 86400 s is
            // 1 October 00:59 CEST, still ahead at 00:30: subtract again.
            (
                Period::Monthly,
                monthly_31_2359,
                "2026-10-01T00:30:00+02:00",
                "2026-08-31T00:59:00+02:00",
            ),
            (
                Period::Monthly,
                monthly_31_2359,
                "2026-10-01T01:00:00+02:00",
                "2026-10-01T00:59:00+02:00",
            ),
        ],
    );
}

#[test]
fn dst_america_new_york() {
    // 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
    check_table(
        "America/New_York",
        &[
            (
                Period::Hourly,
                defaults,
                "2026-03-08T01:59:59-05:00",
                "2026-03-08T01:00:00-05:00",
            ),
            (
                Period::Hourly,
                defaults,
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:00:00-04:00",
            ),
            (
                Period::Hourly,
                hourly_30,
                "2026-03-08T03:29:00-04:00",
                "2026-03-08T01:30:00-05:00",
            ),
            (
                Period::Daily,
                daily_0230,
                "2026-03-08T03:40:00-04:00",
                "2026-03-08T03:30:00-04:00",
            ),
            (
                Period::Hourly,
                defaults,
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:00:00-04:00",
            ),
            (
                Period::Hourly,
                defaults,
                "2026-11-01T01:30:00-05:00",
                "2026-11-01T01:00:00-05:00",
            ),
            (
                freq(45),
                defaults,
                "2026-11-01T01:50:00-05:00",
                "2026-11-01T01:45:00-05:00",
            ),
            (
                Period::Daily,
                daily_0130,
                "2026-11-01T01:45:00-05:00",
                "2026-11-01T01:30:00-04:00",
            ),
            (
                Period::Daily,
                defaults,
                "2026-11-02T00:00:00-05:00",
                "2026-11-01T23:59:00-05:00",
            ),
        ],
    );
}

#[test]
fn due_iff_newest_strictly_older() {
    let prefs = Preferred::new(TimeZone::UTC);
    let now = zoned(&TimeZone::UTC, "2026-11-22T10:20:00Z");
    let lp = ts("2026-11-22T10:00:00Z");
    let due = |newest| is_due(Period::Hourly, &prefs, newest, &now).unwrap();
    assert!(due(None));
    assert!(!due(Some(lp)));
    assert!(due(Some(lp - SignedDuration::from_secs(1))));
    assert!(!due(Some(lp + SignedDuration::from_secs(1))));
    // A newest snapshot from the future (clock skew) is never due.
    assert!(!due(Some(ts("2026-11-23T00:00:00Z"))));
}

#[test]
fn settings_are_validated() {
    let mut p = Preferred::new(TimeZone::UTC);
    p.validate().unwrap();
    p.times.daily_hour = 24;
    assert_eq!(
        p.validate().unwrap_err().to_string(),
        "daily_hour = 24 is out of range: it must be within 0..=23"
    );
    let now = zoned(&TimeZone::UTC, "2026-11-22T10:20:00Z");
    assert!(last_preferred(Period::Daily, &p, &now).is_err());
    let mut p = Preferred::new(TimeZone::UTC);
    p.times.weekly_wday = 7;
    assert!(matches!(
        p.validate(),
        Err(ScheduleError::OutOfRange {
            key: "weekly_wday",
            ..
        })
    ));
    let mut p = Preferred::new(TimeZone::UTC);
    p.times.monthly_mday = 0;
    assert!(p.validate().is_err());
    let mut p = Preferred::new(TimeZone::UTC);
    p.times.yearly_mon = 2;
    p.times.yearly_mday = 30;
    assert_eq!(
        p.validate().unwrap_err(),
        ScheduleError::NoSuchDay { mon: 2, mday: 30 }
    );
    p.times.yearly_mday = 29;
    p.validate().unwrap();
}

#[test]
fn plan_orders_skips_zero_and_rejects_duplicates() {
    let prefs = Preferred::new(TimeZone::UTC);
    let now = zoned(&TimeZone::UTC, "2026-11-22T10:20:00Z");
    let counts = [
        (freq(15), 4),
        (Period::Hourly, 36),
        (Period::Weekly, 0),
        (Period::Yearly, 1),
        (Period::Daily, 30),
        (Period::Monthly, 3),
    ];
    // First run: one of every kind with a count, yearly first.
    let due = due_periods(&counts, |_| None, &prefs, &now).unwrap();
    assert_eq!(
        due,
        [
            Period::Yearly,
            Period::Monthly,
            Period::Daily,
            Period::Hourly,
            freq(15)
        ]
    );
    // After downtime: one per due kind, however many slots were missed.
    let newest: BTreeMap<PeriodKind, Timestamp> = [
        (PeriodKind::Yearly, ts("2026-01-01T00:00:05Z")),
        (PeriodKind::Monthly, ts("2026-11-01T00:00:05Z")),
        (PeriodKind::Daily, ts("2026-11-10T00:00:00Z")),
        (PeriodKind::Hourly, ts("2026-11-10T00:00:00Z")),
        (PeriodKind::Frequently, ts("2026-11-22T10:15:00Z")),
    ]
    .into();
    let due = due_periods(&counts, |k| newest.get(&k).copied(), &prefs, &now).unwrap();
    assert_eq!(due, [Period::Daily, Period::Hourly]);

    let plan = SnapshotPlan::new(&counts, prefs.clone()).unwrap();
    assert_eq!(plan.periods().len(), 5);
    assert_eq!(plan.periods()[0], (Period::Yearly, 1));
    assert_eq!(
        SnapshotPlan::new(
            &[(Period::Daily, 1), (freq(5), 1), (freq(15), 0)],
            prefs.clone()
        )
        .unwrap_err(),
        ScheduleError::DuplicatePeriod(PeriodKind::Frequently)
    );
}

// ---- names -----------------------------------------------------------------

#[test]
fn sanoid_names_in_local_time() {
    let paris = SnapshotNamer::sanoid(tz("Europe/Paris")).unwrap();
    assert_eq!(
        paris.format(ts("2026-11-22T05:00:00Z"), PeriodKind::Hourly),
        "autosnap_2026-11-22_06:00:00_hourly"
    );
    assert_eq!(
        paris.format(ts("2026-07-01T22:00:07.9Z"), PeriodKind::Daily),
        "autosnap_2026-07-02_00:00:07_daily"
    );
    let utc = SnapshotNamer::sanoid(TimeZone::UTC).unwrap();
    assert_eq!(
        utc.format(ts("2026-11-22T05:00:00Z"), PeriodKind::Frequently),
        "autosnap_2026-11-22_05:00:00_frequently"
    );
}

#[test]
fn sanoid_dst_retry() {
    let paris = SnapshotNamer::sanoid(tz("Europe/Paris")).unwrap();
    // sanoid's own example: 2017-10-29 02:00 CET, after 02:00 CEST.
    let second = ts("2017-10-29T02:00:00+01:00");
    let first = ts("2017-10-29T02:00:00+02:00");
    let mut names = BTreeSet::new();
    let a = paris
        .name(first, PeriodKind::Hourly, |n| names.contains(n))
        .unwrap();
    names.insert(a.clone());
    let b = paris
        .name(second, PeriodKind::Hourly, |n| names.contains(n))
        .unwrap();
    assert_eq!(a, "autosnap_2017-10-29_02:00:00_hourly");
    assert_eq!(b, "autosnap_2017-10-29_02:00:00dst_hourly");
    names.insert(b.clone());
    // Both taken: never a duplicate.
    assert_eq!(
        paris.name(second, PeriodKind::Hourly, |n| names.contains(n)),
        Err(NamingError::Exists { name: b.clone() })
    );
    // Parsing tells the two apart.
    assert_eq!(paris.parse(&a).unwrap().at, first);
    let pb = paris.parse(&b).unwrap();
    assert_eq!((pb.at, pb.dst, pb.kind), (second, true, PeriodKind::Hourly));
    // Outside the day DST ends, a collision is an error (sanoid warns).
    let summer = ts("2017-07-01T12:00:00Z");
    let taken = paris.format(summer, PeriodKind::Daily);
    assert_eq!(
        paris.name(summer, PeriodKind::Daily, |n| n == taken),
        Err(NamingError::Exists {
            name: taken.clone()
        })
    );
    // Before the fall-back on that day there is no retry either.
    let early = ts("2017-10-29T01:00:00+02:00");
    let taken = paris.format(early, PeriodKind::Hourly);
    assert!(
        paris
            .name(early, PeriodKind::Hourly, |n| n == taken)
            .is_err()
    );
}

#[test]
fn zfsrepl_names_are_utc() {
    let ours = SnapshotNamer::zfsrepl(DEFAULT_PREFIX).unwrap();
    let at = ts("2026-11-22T06:00:00+01:00");
    let name = ours.format(at, PeriodKind::Hourly);
    assert_eq!(name, "zfsrepl_2026-11-22_05:00:00_hourly");
    let parsed = ours.parse(&name).unwrap();
    assert_eq!(
        parsed,
        ParsedName {
            at,
            local: "2026-11-22T05:00:00".parse().unwrap(),
            kind: PeriodKind::Hourly,
            dst: false
        }
    );
    // The two 02:00 of a Paris fall-back are an hour apart in UTC.
    let a = ours.format(ts("2026-10-25T02:00:00+02:00"), PeriodKind::Hourly);
    let b = ours.format(ts("2026-10-25T02:00:00+01:00"), PeriodKind::Hourly);
    assert_eq!(a, "zfsrepl_2026-10-25_00:00:00_hourly");
    assert_eq!(b, "zfsrepl_2026-10-25_01:00:00_hourly");
    // Collisions are errors, never a retry name.
    assert_eq!(
        ours.name(at, PeriodKind::Hourly, |n| n == name),
        Err(NamingError::Exists { name: name.clone() })
    );
    assert_eq!(
        ours.name(at, PeriodKind::Daily, |n| n == name).unwrap(),
        "zfsrepl_2026-11-22_05:00:00_daily"
    );
    assert_eq!(
        SnapshotNamer::zfsrepl("my snaps-")
            .unwrap()
            .format(at, PeriodKind::Yearly),
        "my snaps-2026-11-22_05:00:00_yearly"
    );
}

#[test]
fn parse_is_strict() {
    let ours = SnapshotNamer::zfsrepl(DEFAULT_PREFIX).unwrap();
    for bad in [
        "zfsrepl_2026-13-01_00:00:00_hourly",
        "zfsrepl_2026-02-30_00:00:00_hourly",
        "zfsrepl_2026-11-22_24:00:00_hourly",
        "zfsrepl_2026-11-22_05:00:00_silly",
        "zfsrepl_2026-11-22_05:00:00_Hourly",
        "zfsrepl_2026-11-22_05:00:00dst_hourly",
        "zfsrepl_2026-11-22_05:00:00_hourly_x",
        "zfsrepl_2026-11-22_05:00:00hourly",
        "zfsrepl_2026-11-22T05:00:00_hourly",
        "zfsrepl_2026-11-22_5:00:00_hourly",
        "zfsrepl_+026-11-22_05:00:00_hourly",
        "zfsrepl_2026-11-22_05:00:00",
        "zfsrepl_",
        "autosnap_2026-11-22_05:00:00_hourly",
        "zfsrepl2026-11-22_05:00:00_hourly",
    ] {
        assert_eq!(ours.parse(bad), None, "{bad}");
    }
    let sanoid = SnapshotNamer::sanoid(TimeZone::UTC).unwrap();
    assert_eq!(sanoid.parse("autosnap_custom_hourly"), None);
    assert_eq!(sanoid.parse("autosnap_2026-11-22_05:00:00_silly"), None);
    assert_eq!(
        sanoid.parse("autosnap_2026-11-22_05:00:00dstdst_hourly"),
        None
    );
    let p = sanoid
        .parse("autosnap_2026-11-22_05:00:00_monthly")
        .unwrap();
    assert_eq!(
        (p.at, p.kind, p.dst),
        (ts("2026-11-22T05:00:00Z"), PeriodKind::Monthly, false)
    );
}

#[test]
fn namers_are_validated() {
    assert_eq!(SnapshotNamer::zfsrepl(""), Err(NamingError::EmptyPrefix));
    for bad in ["a/b", "a@b", "a#b", "x+y", "été", "tab\t", &"p".repeat(230)] {
        let err = SnapshotNamer::zfsrepl(bad).unwrap_err();
        assert!(
            matches!(err, NamingError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let err = SnapshotNamer::zfsrepl("x+").unwrap_err().to_string();
    assert!(err.contains("x+2026-07-15_12:34:56_yearly"), "{err}");
    assert!(err.contains("contains '+'"), "{err}");
    SnapshotNamer::zfsrepl(&"p".repeat(200)).unwrap();
    SnapshotNamer::sanoid(tz("Pacific/Chatham")).unwrap();
}

#[test]
fn ownership() {
    let ours = SnapshotNamer::zfsrepl(DEFAULT_PREFIX).unwrap();
    assert!(ours.owns("zfsrepl_2026-11-22_05:00:00_hourly"));
    assert!(ours.owns("zfsrepl_anything"));
    assert!(!ours.owns("autosnap_2026-11-22_05:00:00_hourly"));
    assert!(!ours.owns("Zfsrepl_x"));
    let sanoid = SnapshotNamer::sanoid(TimeZone::UTC).unwrap();
    assert!(sanoid.owns("autosnap_custom_hourly"));
    assert!(sanoid.owns("autosnap_2026-11-22_05:00:00_silly"));
    assert!(!sanoid.owns("autosnap_2026-11-22_05:00:00"));
    assert!(!sanoid.owns("zfsrepl_2026-11-22_05:00:00_hourly"));
}

#[test]
fn sanoid_type_follows_sanoid() {
    // Every example of the semantics notes, plus cases where Perl's
    // unanchored `.*_(\w*ly)` backtracks (checked against perl 5).
    let cases: &[(&str, Option<&str>)] = &[
        ("autosnap_2026-11-22_05:00:00_hourly", Some("hourly")),
        (
            "autosnap_2026-11-22_05:00:00_frequently",
            Some("frequently"),
        ),
        ("autosnap_2017-10-29_02:00:00dst_hourly", Some("hourly")),
        ("autosnapshot_daily", Some("daily")),
        ("autosnap_custom_hourly", Some("hourly")),
        ("Autosnap_2026-11-22_05:00:00_daily", None),
        ("foo_autosnap_2026-11-22_05:00:00_daily", None),
        ("zfs-auto-snap_hourly-2026-11-22-0500", None),
        ("autosnap_2026-11-22_05:00:00", None),
        ("autosnap_2026-11-22_05:00:00_hourly_keep", None),
        ("autosnap_2026-11-22_05:00:00_silly", Some("silly")),
        ("autosnap_2026-11-22_05:00:00_Hourly", Some("Hourly")),
        ("autosnap_weekly_daily", Some("daily")),
        ("autosnap_a b_daily", Some("daily")),
        // Listed by sanoid (starts with autosnap, ends with ly) but typeless.
        ("autosnapdaily", None),
        // Backtracking: the text after the last '_' is not all word chars.
        ("autosnap_hourly_x-ly", Some("hourly")),
        ("autosnap_x_hourly.ly", Some("hourly")),
        ("autosnap_daily-x_ly", Some("ly")),
        ("autosnap_1_2ly", Some("2ly")),
        ("autosnap__ly", Some("ly")),
        ("", None),
        ("ly", None),
    ];
    for (name, want) in cases {
        assert_eq!(sanoid_type(name), *want, "{name:?}");
    }
}

// ---- a 15-minute cron across DST transitions ------------------------------

struct Sim {
    taken: Vec<(PeriodKind, Timestamp)>,
    sanoid_names: BTreeSet<String>,
    our_names: BTreeSet<String>,
}

fn hostile(p: &mut Preferred) {
    p.times.hourly_min = 30;
    p.times.daily_hour = 2;
    p.times.daily_min = 30;
    weekly_sunday(p);
}

fn hostile_ny_fall(p: &mut Preferred) {
    hostile(p);
    p.times.daily_hour = 1;
}

/// Runs the cron every 15 minutes from `from` to `to` inclusive, taking
/// every due snapshot under both namers, as sanoid would.
fn simulate(
    zone: &TimeZone,
    prefs: &Preferred,
    counts: &[(Period, u32)],
    from: &str,
    to: &str,
) -> Sim {
    let plan = SnapshotPlan::new(counts, prefs.clone()).unwrap();
    let sanoid = SnapshotNamer::sanoid(zone.clone()).unwrap();
    let ours = SnapshotNamer::zfsrepl(DEFAULT_PREFIX).unwrap();
    let mut newest: BTreeMap<PeriodKind, Timestamp> = BTreeMap::new();
    let mut sim = Sim {
        taken: Vec::new(),
        sanoid_names: BTreeSet::new(),
        our_names: BTreeSet::new(),
    };
    let (mut t, end) = (ts(from), ts(to));
    while t <= end {
        let now = t.to_zoned(zone.clone());
        for period in plan.due_periods(|k| newest.get(&k).copied(), &now).unwrap() {
            let kind = period.kind();
            let s = sanoid
                .name(t, kind, |n| sim.sanoid_names.contains(n))
                .unwrap_or_else(|e| panic!("{}: {e}", show(&now)));
            assert!(sim.sanoid_names.insert(s));
            let o = ours.name(t, kind, |n| sim.our_names.contains(n)).unwrap();
            assert_eq!(ours.parse(&o).map(|p| (p.at, p.kind)), Some((t, kind)));
            assert!(sim.our_names.insert(o));
            newest.insert(kind, t);
            sim.taken.push((kind, t));
        }
        t += SignedDuration::from_mins(15);
    }
    sim
}

impl Sim {
    fn times(&self, kind: PeriodKind) -> Vec<Timestamp> {
        self.taken
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, t)| *t)
            .collect()
    }
}

/// The first run, then every instant in `(from, to]` whose UTC minute is in
/// `minutes` (Paris and New York have whole-hour offsets, so local and UTC
/// minutes agree): one snapshot per slot, none missed, none doubled.
fn slots(from: &str, to: &str, minutes: &[i64]) -> Vec<Timestamp> {
    let (from, to) = (ts(from), ts(to));
    let mut out = vec![from];
    let mut t = from + SignedDuration::from_mins(1);
    while t <= to {
        if t.as_second() % 60 == 0 && minutes.contains(&(t.as_second() / 60 % 60)) {
            out.push(t);
        }
        t += SignedDuration::from_mins(1);
    }
    out
}

#[test]
fn cron_across_dst_2026() {
    let windows = [
        // (zone, from, to, has a fall-back, monthlies taken)
        (
            "Europe/Paris",
            "2026-03-27T00:00:00+01:00",
            "2026-03-31T00:00:00+02:00",
            false,
            1,
        ),
        (
            "Europe/Paris",
            "2026-10-23T00:00:00+02:00",
            "2026-10-27T00:00:00+01:00",
            true,
            1,
        ),
        (
            "America/New_York",
            "2026-03-06T00:00:00-05:00",
            "2026-03-10T00:00:00-04:00",
            false,
            1,
        ),
        // The first run, and 1 November at 00:00.
        (
            "America/New_York",
            "2026-10-30T00:00:00-04:00",
            "2026-11-03T00:00:00-05:00",
            true,
            2,
        ),
    ];
    let counts = [
        (freq(15), 4),
        (Period::Hourly, 48),
        (Period::Daily, 90),
        (Period::Weekly, 4),
        (Period::Monthly, 6),
    ];
    let counts_45 = [(freq(45), 4), (Period::Hourly, 48)];
    for (zone_name, from, to, fall, monthlies) in windows {
        let zone = tz(zone_name);
        let tweaks: [(&str, Tweak); 3] = [
            ("defaults", defaults),
            ("hostile", hostile),
            ("hostile_ny_fall", hostile_ny_fall),
        ];
        for (tweak_name, tweak) in tweaks {
            let ctx = format!("{zone_name} {from} {tweak_name}");
            let mut prefs = Preferred::new(zone.clone());
            tweak(&mut prefs);
            let sim = simulate(&zone, &prefs, &counts, from, to);
            let runs = ts(to).duration_since(ts(from)).as_secs() / 900 + 1;

            // Every run takes a frequently (period = cron interval).
            let freqs = sim.times(PeriodKind::Frequently);
            assert_eq!(freqs.len() as i64, runs, "{ctx}");
            // One hourly per real hour, at hourly_min.
            let hourly = sim.times(PeriodKind::Hourly);
            assert_eq!(
                hourly,
                slots(from, to, &[i64::from(prefs.times.hourly_min)]),
                "{ctx}"
            );
            // One daily per local day: the slots they satisfy are on
            // consecutive local dates.
            let dailies = sim.times(PeriodKind::Daily);
            let days: Vec<_> = dailies
                .iter()
                .map(|t| {
                    last_preferred(Period::Daily, &prefs, &t.to_zoned(zone.clone()))
                        .unwrap()
                        .date()
                })
                .collect();
            for pair in days.windows(2) {
                assert_eq!(pair[0].tomorrow().unwrap(), pair[1], "{ctx}: {days:?}");
            }
            // 4 days: the first run (satisfying yesterday's slot) plus 4.
            assert_eq!(dailies.len(), 5, "{ctx}: {dailies:?}");
            assert_eq!(sim.times(PeriodKind::Weekly).len(), 2, "{ctx}");
            assert_eq!(sim.times(PeriodKind::Monthly).len(), monthlies, "{ctx}");

            // sanoid's names needed the dst retry exactly in the repeated
            // hour (4 frequentlies and the hourly at :00 or :30).
            let dst_names = sim
                .sanoid_names
                .iter()
                .filter(|n| n.contains("dst_"))
                .count();
            assert_eq!(dst_names, if fall { 5 } else { 0 }, "{ctx}");
            assert_eq!(sim.sanoid_names.len(), sim.taken.len(), "{ctx}");
            assert_eq!(sim.our_names.len(), sim.taken.len(), "{ctx}");

            let sim = simulate(&zone, &prefs, &counts_45, from, to);
            assert_eq!(
                sim.times(PeriodKind::Frequently),
                slots(from, to, &[0, 45]),
                "{ctx} frequent_period 45"
            );
        }
    }
}

// ---- properties -------------------------------------------------------------

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe", // 30-minute DST shift
    "Asia/Kathmandu",      // +05:45
    "Pacific/Chatham",     // +12:45 / +13:45
    "America/Santiago",    // DST changes at midnight
];

fn any_zone() -> impl Strategy<Value = TimeZone> {
    proptest::sample::select(ZONES).prop_map(tz)
}

/// 1970 to 2100, to the nanosecond.
fn any_time() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800, 0i32..1_000_000_000).prop_map(|(s, ns)| Timestamp::new(s, ns).unwrap())
}

/// Within 4 hours of one of the first two offset transitions of a year in
/// `zone` (its start of year when it has none): where the rules are tested
/// hardest.
fn near_transition(zone: TimeZone) -> impl Strategy<Value = Timestamp> {
    (
        1990i16..2090,
        0usize..2,
        -4 * 3600i64..4 * 3600,
        0i32..1_000_000_000,
    )
        .prop_map(move |(year, which, secs, ns)| {
            let start = jiff::civil::date(year, 1, 1)
                .to_zoned(zone.clone())
                .unwrap()
                .timestamp();
            let base = zone
                .following(start)
                .nth(which)
                .map_or(start, |tr| tr.timestamp());
            base + SignedDuration::new(secs, ns)
        })
}

/// Preferred times and a `now`: anywhere, or close to a DST transition.
fn prefs_and_time() -> impl Strategy<Value = (Preferred, Timestamp)> {
    any_prefs().prop_flat_map(|p| {
        let zone = p.time_zone.clone();
        (Just(p), prop_oneof![any_time(), near_transition(zone)])
    })
}

fn any_period() -> impl Strategy<Value = Period> {
    prop_oneof![
        Just(Period::Yearly),
        Just(Period::Monthly),
        Just(Period::Weekly),
        Just(Period::Daily),
        Just(Period::Hourly),
        (1u32..=90).prop_map(freq),
    ]
}

fn any_prefs() -> impl Strategy<Value = Preferred> {
    (
        any_zone(),
        (0u8..60, 0u8..24, 0u8..60),
        (0u8..7, 0u8..24, 0u8..60),
        (1u8..=31, 0u8..24, 0u8..60),
        (1u8..=12, 1u8..=31, 0u8..24, 0u8..60),
    )
        .prop_map(|(zone, h, w, m, y)| {
            let mut p = Preferred::new(zone);
            (p.times.hourly_min, p.times.daily_hour, p.times.daily_min) = h;
            (p.times.weekly_wday, p.times.weekly_hour, p.times.weekly_min) = w;
            (
                p.times.monthly_mday,
                p.times.monthly_hour,
                p.times.monthly_min,
            ) = m;
            (
                p.times.yearly_mon,
                p.times.yearly_mday,
                p.times.yearly_hour,
                p.times.yearly_min,
            ) = y;
            // Bring the yearly day into its month (of a leap year).
            let len = jiff::civil::Date::new(2000, p.times.yearly_mon as i8, 1)
                .unwrap()
                .days_in_month() as u8;
            p.times.yearly_mday = p.times.yearly_mday.min(len);
            p
        })
}

/// How far back a preferred time can lie (DST shifts included).
fn max_lag(period: Period) -> SignedDuration {
    let h = SignedDuration::from_hours;
    match period {
        Period::Frequently { minutes } => {
            SignedDuration::from_mins(i64::from(minutes.get()).min(60)) + h(1)
        }
        Period::Hourly => h(3),
        Period::Daily => h(2 * 24 + 3),
        Period::Weekly => h(8 * 24 + 3),
        Period::Monthly => h(63 * 24),
        Period::Yearly => h(367 * 24),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn preferred_is_recent_past(period in any_period(), (prefs, t) in prefs_and_time()) {
        let now = t.to_zoned(prefs.time_zone.clone());
        let lp = last_preferred(period, &prefs, &now).unwrap();
        prop_assert!(lp.timestamp() <= t, "{} after {}", show(&lp), show(&now));
        prop_assert!(t.duration_since(lp.timestamp()) <= max_lag(period), "{} long before {}", show(&lp), show(&now));
        prop_assert_eq!(lp.time_zone(), &prefs.time_zone);
        // Not due right after the preferred time's snapshot; due before it.
        prop_assert!(!is_due(period, &prefs, Some(lp.timestamp()), &now).unwrap());
        prop_assert!(is_due(period, &prefs, Some(lp.timestamp() - SignedDuration::from_nanos(1)), &now).unwrap());
        prop_assert!(is_due(period, &prefs, None, &now).unwrap());
        // The zone of `now` does not matter, only its instant.
        let elsewhere = t.to_zoned(tz("Asia/Tokyo"));
        prop_assert_eq!(last_preferred(period, &prefs, &elsewhere).unwrap(), lp);
    }

    #[test]
    fn preferred_is_monotonic(
        period in any_period().prop_filter("sanoid's monthly moves backwards", |p| *p != Period::Monthly),
        (prefs, t) in prefs_and_time(),
        step in prop_oneof![0i64..(3 * 86_400_000), 0i64..(4 * 3_600_000)],
    ) {
        let later = t + SignedDuration::from_millis(step);
        let at = |t: Timestamp| last_preferred(period, &prefs, &t.to_zoned(prefs.time_zone.clone())).unwrap();
        let (a, b) = (at(t), at(later));
        prop_assert!(a <= b, "{} then {}", show(&a), show(&b));
    }

    #[test]
    fn preferred_is_a_fixed_point(period in any_period(), (prefs, t) in prefs_and_time()) {
        // The preferred time's own preferred time is itself.
        let now = t.to_zoned(prefs.time_zone.clone());
        let lp = last_preferred(period, &prefs, &now).unwrap();
        prop_assume!(period != Period::Monthly);
        prop_assert_eq!(last_preferred(period, &prefs, &lp).unwrap(), lp);
    }

    #[test]
    fn zfsrepl_names_round_trip(
        s in -62_167_219_200i64..=253_402_300_799,
        ns in 0i32..1_000_000_000,
        kind in proptest::sample::select(PeriodKind::TAKING_ORDER.to_vec()),
        prefix in "[a-zA-Z0-9_.: -]{1,20}",
    ) {
        let namer = SnapshotNamer::zfsrepl(&prefix).unwrap();
        let t = Timestamp::new(s, ns).unwrap();
        let name = namer.format(t, kind);
        let parsed = namer.parse(&name).unwrap();
        prop_assert_eq!(parsed.at, Timestamp::from_second(s).unwrap());
        prop_assert_eq!(parsed.kind, kind);
        prop_assert!(namer.owns(&name));
        let full = format!("tank/a b@{name}");
        prop_assert!(crate::name::SnapshotName::parse(&full).is_ok());
    }

    #[test]
    fn sanoid_names_round_trip(
        zone in any_zone(),
        t in any_time(),
        kind in proptest::sample::select(PeriodKind::TAKING_ORDER.to_vec()),
    ) {
        let namer = SnapshotNamer::sanoid(zone.clone()).unwrap();
        let t = Timestamp::from_second(t.as_second()).unwrap();
        let name = namer.format(t, kind);
        prop_assert_eq!(sanoid_type(&name), Some(kind.name()));
        let parsed = namer.parse(&name).unwrap();
        prop_assert_eq!(parsed.local, zone.to_datetime(t));
        prop_assert_eq!(parsed.kind, kind);
        // Exact except in the second pass of a repeated hour, where a name
        // without `dst` is read as the first pass.
        if parsed.at != t {
            let first = zone.to_ambiguous_timestamp(parsed.local).earlier().unwrap();
            prop_assert_eq!(parsed.at, first);
            prop_assert!(first < t);
        }
    }

    #[test]
    fn sanoid_type_never_panics(s in "\\PC{0,40}") {
        if let Some(t) = sanoid_type(&s) {
            prop_assert!(t.ends_with("ly"));
            prop_assert!(s.ends_with("ly") && s.starts_with("autosnap"));
        }
    }
}
