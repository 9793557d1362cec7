//! Snapshot and retention settings: the layers a policy stacks (defaults,
//! templates, dataset entries) and the resolved result.

use std::ops::Range;
use std::time::Duration;

use serde::Serialize;

use super::reader::{Cx, Fields};
use crate::snapshot::PreferredTimes;

/// Keys a template may set (a dataset entry takes these and a few more).
pub(crate) const TEMPLATE_KEYS: &[&str] = &[
    "use-template",
    "frequently",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "frequent-period",
    "hourly-min",
    "daily-hour",
    "daily-min",
    "weekly-wday",
    "weekly-hour",
    "weekly-min",
    "monthly-mday",
    "monthly-hour",
    "monthly-min",
    "yearly-mon",
    "yearly-mday",
    "yearly-hour",
    "yearly-min",
    "autosnap",
    "autoprune",
    "naming",
    "prefix",
    "prune-defer",
    "retention",
    "hooks",
    "monitor",
];

const RETENTION_KEYS: &[&str] = &["grid", "keep-last", "keep-regex"];
const HOOK_KEYS: &[&str] = &[
    "pre-snapshot",
    "post-snapshot",
    "pruning",
    "timeout",
    "on-pre-failure",
    "force-post",
];
const MONITOR_KEYS: &[&str] = &[
    "enabled",
    "frequently-warn",
    "frequently-crit",
    "hourly-warn",
    "hourly-crit",
    "daily-warn",
    "daily-crit",
    "weekly-warn",
    "weekly-crit",
    "monthly-warn",
    "monthly-crit",
    "yearly-warn",
    "yearly-crit",
    "capacity-warn",
    "capacity-crit",
    "dont-warn",
    "dont-crit",
];

/// How many snapshots of each period to keep (sanoid's counts; 0 = none
/// taken, and existing ones of that period pruned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Frequent snapshots (every `frequent-period` minutes).
    pub frequently: u32,
    /// Hourly.
    pub hourly: u32,
    /// Daily.
    pub daily: u32,
    /// Weekly.
    pub weekly: u32,
    /// Monthly.
    pub monthly: u32,
    /// Yearly.
    pub yearly: u32,
}

/// How snapshots are named (and so which ones zfsrepl owns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "style")]
pub enum Naming {
    /// `<prefix><time>_<period>`; only snapshots with the prefix are pruned.
    Zfsrepl {
        /// The prefix (default `zfsrepl_`).
        prefix: String,
    },
    /// sanoid's `autosnap_YYYY-MM-DD_HH:MM:SS_<period>`: continues an
    /// existing sanoid chain, whose snapshots are then ours to prune.
    Sanoid,
}

/// Extra keep rules on top of the period counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// A zrepl-style grid, e.g. `1x1h(keep=all) | 24x1h | 14x1d`.
    pub grid: Option<String>,
    /// Always keep the newest N owned snapshots.
    pub keep_last: Option<u32>,
    /// Keep snapshots whose short name matches any of these.
    pub keep_regex: Vec<String>,
}

/// What a failing pre-snapshot hook does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookFailure {
    /// Skip the snapshots of that run (sanoid's `no_inconsistent_snapshot`).
    Skip,
    /// Take them anyway (sanoid's default).
    Snapshot,
}

/// Hook programs, run without a shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hooks {
    /// Before snapshots: argv.
    pub pre_snapshot: Option<Vec<String>>,
    /// After snapshots: argv.
    pub post_snapshot: Option<Vec<String>>,
    /// After pruning: argv.
    pub pruning: Option<Vec<String>>,
    /// Time limit per hook run.
    pub timeout: Duration,
    /// What a failing pre hook does.
    pub on_pre_failure: HookFailure,
    /// Run the post hook even when the pre hook failed.
    pub force_post: bool,
}

/// Freshness thresholds for one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Threshold {
    /// Warn when the newest snapshot is older.
    pub warn: Option<Duration>,
    /// Critical when the newest snapshot is older.
    pub crit: Option<Duration>,
}

/// Monitoring (`zfsrepl check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[allow(missing_docs)] // per-period thresholds named after the period
pub struct Monitor {
    /// Monitor this dataset at all.
    pub enabled: bool,
    pub frequently: Threshold,
    pub hourly: Threshold,
    pub daily: Threshold,
    pub weekly: Threshold,
    pub monthly: Threshold,
    pub yearly: Threshold,
    /// Pool capacity warning, percent (0 disables).
    pub capacity_warn: u8,
    /// Pool capacity critical, percent (0 disables).
    pub capacity_crit: u8,
    /// Report warnings without raising the exit code.
    pub dont_warn: bool,
    /// Report criticals without raising the exit code.
    pub dont_crit: bool,
}

/// The resolved settings of one dataset entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// Counts per period.
    pub counts: Counts,
    /// Minutes between frequent snapshots; slices restart every hour.
    pub frequent_period: u32,
    /// Preferred times.
    pub preferred: PreferredTimes,
    /// Take snapshots.
    pub autosnap: bool,
    /// Prune snapshots.
    pub autoprune: bool,
    /// Naming and ownership.
    pub naming: Naming,
    /// Prune only when the pool is fuller than this percentage (0: always).
    pub prune_defer: u8,
    /// Extra keep rules.
    pub retention: Retention,
    /// Hooks.
    pub hooks: Hooks,
    /// Monitoring.
    pub monitor: Monitor,
}

const fn mins(m: u64) -> Option<Duration> {
    Some(Duration::from_secs(m * 60))
}

impl Default for Settings {
    /// sanoid 2.1's `sanoid.defaults.conf`.
    fn default() -> Self {
        Self {
            counts: Counts {
                frequently: 0,
                hourly: 48,
                daily: 90,
                weekly: 0,
                monthly: 6,
                yearly: 0,
            },
            frequent_period: 15,
            preferred: PreferredTimes::default(),
            autosnap: true,
            autoprune: true,
            naming: Naming::Zfsrepl {
                prefix: "zfsrepl_".into(),
            },
            prune_defer: 0,
            retention: Retention::default(),
            hooks: Hooks {
                pre_snapshot: None,
                post_snapshot: None,
                pruning: None,
                timeout: Duration::from_secs(5),
                on_pre_failure: HookFailure::Snapshot,
                force_post: false,
            },
            monitor: Monitor {
                enabled: true,
                frequently: Threshold::default(),
                hourly: Threshold {
                    warn: mins(90),
                    crit: mins(360),
                },
                daily: Threshold {
                    warn: mins(28 * 60),
                    crit: mins(32 * 60),
                },
                weekly: Threshold::default(),
                monthly: Threshold {
                    warn: mins(32 * 24 * 60),
                    crit: mins(40 * 24 * 60),
                },
                yearly: Threshold::default(),
                capacity_warn: 80,
                capacity_crit: 95,
                dont_warn: false,
                dont_crit: false,
            },
        }
    }
}

/// One layer of settings: what a template or a dataset entry sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Partial {
    ints: Vec<(&'static str, i64)>,
    bools: Vec<(&'static str, bool)>,
    naming: Option<String>,
    prefix: Option<String>,
    grid: Option<String>,
    keep_last: Option<u32>,
    keep_regex: Option<Vec<String>>,
    hooks: Vec<(&'static str, Vec<String>)>,
    durations: Vec<(&'static str, Duration)>,
    on_pre_failure: Option<HookFailure>,
}

/// (key, lowest, highest) of each integer setting.
const INT_KEYS: &[(&str, i64, i64)] = &[
    ("frequently", 0, 100_000),
    ("hourly", 0, 100_000),
    ("daily", 0, 100_000),
    ("weekly", 0, 100_000),
    ("monthly", 0, 100_000),
    ("yearly", 0, 1000),
    ("frequent-period", 1, 60),
    ("hourly-min", 0, 59),
    ("daily-hour", 0, 23),
    ("daily-min", 0, 59),
    ("weekly-wday", 0, 6),
    ("weekly-hour", 0, 23),
    ("weekly-min", 0, 59),
    ("monthly-mday", 1, 31),
    ("monthly-hour", 0, 23),
    ("monthly-min", 0, 59),
    ("yearly-mon", 1, 12),
    ("yearly-mday", 1, 31),
    ("yearly-hour", 0, 23),
    ("yearly-min", 0, 59),
    ("prune-defer", 0, 100),
];

fn set<T>(v: &mut Vec<(&'static str, T)>, k: &'static str, x: T) {
    v.retain(|(key, _)| *key != k);
    v.push((k, x));
}

fn get<T: Copy>(v: &[(&'static str, T)], k: &str) -> Option<T> {
    v.iter().find(|(key, _)| *key == k).map(|(_, x)| *x)
}

impl Partial {
    /// Reads the settings keys of a template or dataset table.
    pub(crate) fn read(f: &mut Fields<'_, '_>, cx: &mut Cx<'_>) -> Self {
        let mut p = Self::default();
        for &(key, lo, hi) in INT_KEYS {
            if let Some(v) = f.get(key)
                && let Some(n) = cx.int(v, key, lo..hi + 1)
            {
                p.ints.push((key, n));
            }
        }
        for key in ["autosnap", "autoprune"] {
            if let Some(v) = f.get(key)
                && let Some(b) = cx.bool(v, key)
            {
                p.bools.push((key, b));
            }
        }
        if let Some(v) = f.get("naming") {
            match cx.string(v, "naming") {
                Some(s @ ("zfsrepl" | "sanoid")) => p.naming = Some(s.to_owned()),
                Some(other) => cx.error_help(
                    v.span(),
                    format!("unknown naming {other:?}"),
                    "use \"zfsrepl\" (our own prefix) or \"sanoid\" (continue an autosnap_ chain)",
                ),
                None => {}
            }
        }
        if let Some(v) = f.get("prefix")
            && let Some(s) = cx.string(v, "prefix")
        {
            if s.is_empty()
                || s.starts_with("autosnap")
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
            {
                cx.error_help(v.span(), format!("invalid snapshot prefix {s:?}"), "use letters, digits and - _ . : (and not autosnap, which is sanoid's: set naming = \"sanoid\" for that)");
            } else {
                p.prefix = Some(s.to_owned());
            }
        }
        if let Some(v) = f.get("retention") {
            if let Some(t) = v.get_ref().as_table() {
                let mut rf = Fields::new(t, RETENTION_KEYS, "retention");
                if let Some(g) = rf.get("grid")
                    && let Some(s) = cx.string(g, "grid")
                {
                    if let Err(e) = check_grid(s) {
                        cx.error_help(
                            g.span(),
                            format!("invalid retention grid: {e}"),
                            "write intervals like 1x1h(keep=all) | 24x1h | 14x1d",
                        );
                    } else {
                        p.grid = Some(s.to_owned());
                    }
                }
                if let Some(k) = rf.get("keep-last") {
                    p.keep_last = cx
                        .int(k, "keep-last", 0..1_000_001)
                        .and_then(|n| u32::try_from(n).ok());
                }
                if let Some(r) = rf.get("keep-regex") {
                    let mut ok = Vec::new();
                    for (s, span) in cx.strings(r, "keep-regex").unwrap_or_default() {
                        match regex::Regex::new(&s) {
                            Ok(_) => ok.push(s),
                            Err(e) => cx.error(
                                span,
                                format!(
                                    "invalid regular expression: {}",
                                    e.to_string().lines().last().unwrap_or_default()
                                ),
                            ),
                        }
                    }
                    p.keep_regex = Some(ok);
                }
                rf.finish(cx);
            } else {
                cx.error(v.span(), "`retention` must be a table");
            }
        }
        if let Some(v) = f.get("hooks") {
            if let Some(t) = v.get_ref().as_table() {
                let mut hf = Fields::new(t, HOOK_KEYS, "hooks");
                for key in ["pre-snapshot", "post-snapshot", "pruning"] {
                    if let Some(h) = hf.get(key)
                        && let Some(argv) = cx.argv(h, key)
                    {
                        p.hooks.push((key, argv));
                    }
                }
                if let Some(d) = hf.get("timeout")
                    && let Some(t) = cx.duration(d, "timeout")
                {
                    if t.is_zero() {
                        cx.error(d.span(), "`timeout` must be more than 0s");
                    } else {
                        p.durations.push(("timeout", t));
                    }
                }
                if let Some(v) = hf.get("on-pre-failure") {
                    match cx.string(v, "on-pre-failure") {
                        Some("skip") => p.on_pre_failure = Some(HookFailure::Skip),
                        Some("snapshot") => p.on_pre_failure = Some(HookFailure::Snapshot),
                        Some(o) => cx.error_help(
                            v.span(),
                            format!("unknown on-pre-failure {o:?}"),
                            "use \"skip\" (no snapshot when the pre hook fails) or \"snapshot\"",
                        ),
                        None => {}
                    }
                }
                if let Some(v) = hf.get("force-post")
                    && let Some(b) = cx.bool(v, "force-post")
                {
                    p.bools.push(("force-post", b));
                }
                hf.finish(cx);
            } else {
                cx.error(v.span(), "`hooks` must be a table");
            }
        }
        if let Some(v) = f.get("monitor") {
            if let Some(t) = v.get_ref().as_table() {
                let mut mf = Fields::new(t, MONITOR_KEYS, "monitor");
                for key in ["enabled", "dont-warn", "dont-crit"] {
                    if let Some(b) = mf.get(key)
                        && let Some(b) = cx.bool(b, key)
                    {
                        p.bools.push((monitor_key(key), b));
                    }
                }
                for &key in &MONITOR_KEYS[1..13] {
                    if let Some(d) = mf.get(key)
                        && let Some(t) = cx.duration(d, key)
                    {
                        p.durations.push((key, t));
                    }
                }
                for key in ["capacity-warn", "capacity-crit"] {
                    if let Some(n) = mf.get(key)
                        && let Some(n) = cx.int(n, key, 0..101)
                    {
                        p.ints.push((key, n));
                    }
                }
                mf.finish(cx);
            } else {
                cx.error(v.span(), "`monitor` must be a table");
            }
        }
        p
    }

    /// Stacks layers, later ones winning key by key.
    pub(crate) fn merge(layers: &[Self]) -> Self {
        let mut out = Self::default();
        for l in layers {
            for &(k, v) in &l.ints {
                set(&mut out.ints, k, v);
            }
            for &(k, v) in &l.bools {
                set(&mut out.bools, k, v);
            }
            for (k, v) in &l.hooks {
                set(&mut out.hooks, k, v.clone());
            }
            for &(k, v) in &l.durations {
                set(&mut out.durations, k, v);
            }
            macro_rules! over {
                ($($f:ident),*) => {$( if l.$f.is_some() { out.$f.clone_from(&l.$f); } )*};
            }
            over!(naming, prefix, grid, keep_last, keep_regex, on_pre_failure);
        }
        out
    }

    /// Applies the layer on top of the built-in defaults.
    pub(crate) fn finish(&self) -> Settings {
        let mut s = Settings::default();
        let int = |k: &str, d: u32| {
            get(&self.ints, k)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(d)
        };
        let byte = |k: &str, d: u8| {
            get(&self.ints, k)
                .and_then(|v| u8::try_from(v).ok())
                .unwrap_or(d)
        };
        let c = s.counts;
        s.counts = Counts {
            frequently: int("frequently", c.frequently),
            hourly: int("hourly", c.hourly),
            daily: int("daily", c.daily),
            weekly: int("weekly", c.weekly),
            monthly: int("monthly", c.monthly),
            yearly: int("yearly", c.yearly),
        };
        let p = s.preferred;
        s.frequent_period = int("frequent-period", s.frequent_period);
        s.preferred = PreferredTimes {
            hourly_min: byte("hourly-min", p.hourly_min),
            daily_hour: byte("daily-hour", p.daily_hour),
            daily_min: byte("daily-min", p.daily_min),
            weekly_wday: byte("weekly-wday", p.weekly_wday),
            weekly_hour: byte("weekly-hour", p.weekly_hour),
            weekly_min: byte("weekly-min", p.weekly_min),
            monthly_mday: byte("monthly-mday", p.monthly_mday),
            monthly_hour: byte("monthly-hour", p.monthly_hour),
            monthly_min: byte("monthly-min", p.monthly_min),
            yearly_mon: byte("yearly-mon", p.yearly_mon),
            yearly_mday: byte("yearly-mday", p.yearly_mday),
            yearly_hour: byte("yearly-hour", p.yearly_hour),
            yearly_min: byte("yearly-min", p.yearly_min),
        };
        s.prune_defer = byte("prune-defer", s.prune_defer);
        s.autosnap = get(&self.bools, "autosnap").unwrap_or(s.autosnap);
        s.autoprune = get(&self.bools, "autoprune").unwrap_or(s.autoprune);
        s.naming = match self.naming.as_deref() {
            Some("sanoid") => Naming::Sanoid,
            _ => Naming::Zfsrepl {
                prefix: self.prefix.clone().unwrap_or_else(|| "zfsrepl_".into()),
            },
        };
        s.retention = Retention {
            grid: self.grid.clone(),
            keep_last: self.keep_last,
            keep_regex: self.keep_regex.clone().unwrap_or_default(),
        };
        let hook = |k: &str| {
            self.hooks
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone())
        };
        s.hooks.pre_snapshot = hook("pre-snapshot");
        s.hooks.post_snapshot = hook("post-snapshot");
        s.hooks.pruning = hook("pruning");
        s.hooks.timeout = get(&self.durations, "timeout").unwrap_or(s.hooks.timeout);
        s.hooks.on_pre_failure = self.on_pre_failure.unwrap_or(s.hooks.on_pre_failure);
        s.hooks.force_post = get(&self.bools, "force-post").unwrap_or(false);
        let m = &mut s.monitor;
        m.enabled = get(&self.bools, "monitor.enabled").unwrap_or(m.enabled);
        m.dont_warn = get(&self.bools, "monitor.dont-warn").unwrap_or(m.dont_warn);
        m.dont_crit = get(&self.bools, "monitor.dont-crit").unwrap_or(m.dont_crit);
        m.capacity_warn = byte("capacity-warn", m.capacity_warn);
        m.capacity_crit = byte("capacity-crit", m.capacity_crit);
        for (period, t) in [
            ("frequently", &mut m.frequently),
            ("hourly", &mut m.hourly),
            ("daily", &mut m.daily),
            ("weekly", &mut m.weekly),
            ("monthly", &mut m.monthly),
            ("yearly", &mut m.yearly),
        ] {
            if let Some(d) = get(&self.durations, &format!("{period}-warn")) {
                t.warn = (!d.is_zero()).then_some(d);
            }
            if let Some(d) = get(&self.durations, &format!("{period}-crit")) {
                t.crit = (!d.is_zero()).then_some(d);
            }
        }
        s
    }
}

fn monitor_key(k: &str) -> &'static str {
    match k {
        "enabled" => "monitor.enabled",
        "dont-warn" => "monitor.dont-warn",
        _ => "monitor.dont-crit",
    }
}

impl Settings {
    /// Checks that preferred dates exist in every year or month.
    ///
    /// # Errors
    /// The problem (the span is not known at this level).
    pub(crate) fn check_dates(&self) -> Result<(), (Option<Range<usize>>, String)> {
        let p = &self.preferred;
        let days_in = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let max = days_in[usize::from(p.yearly_mon.clamp(1, 12)) - 1];
        if self.counts.yearly > 0 && p.yearly_mday > max {
            let extra = if p.yearly_mon == 2 && p.yearly_mday == 29 {
                " except in leap years"
            } else {
                ""
            };
            return Err((
                None,
                format!(
                    "impossible yearly date: month {} has no day {}{extra}",
                    p.yearly_mon, p.yearly_mday
                ),
            ));
        }
        if self.counts.monthly > 0 && p.monthly_mday > 28 {
            return Err((
                None,
                format!(
                    "monthly-mday = {}: not every month has that day; use 1 to 28",
                    p.monthly_mday
                ),
            ));
        }
        Ok(())
    }
}

/// Checks a retention grid with the planner's own parser.
fn check_grid(s: &str) -> Result<(), String> {
    crate::retention::RetentionGrid::parse(s)
        .map(drop)
        .map_err(|e| e.to_string())
}
