//! Importing sanoid.conf: sanoid 2.1's INI format turned into an equivalent
//! zfsrepl policy (TOML text), with every problem located in the INI file.
//!
//! The mapping keeps sanoid's meaning (see `shared/sanoid-semantics.md`):
//! - `[template_X]` becomes `[template.X]`; a user `[template_default]`
//!   becomes template `default`, used first by every dataset (sanoid applies
//!   it before `use_template`);
//! - `recursive = yes` becomes `"per-dataset"`, `recursive = zfs` `"atomic"`;
//! - every dataset continues sanoid's `autosnap_` chain (`naming = "sanoid"`),
//!   so existing snapshots are pruned on schedule and no gap opens;
//! - monitor thresholds keep sanoid's units (a bare number counts in the next
//!   smaller period: minutes for hourly, hours for daily, ...);
//! - hook scripts become argv arrays; a script line that needs a shell is an
//!   error to fix by hand (zfsrepl runs nothing through a shell).
//!
//! Where sanoid has a defect, the import does the sensible thing: an unknown
//! boolean word (`autoprune = nah`, true in Perl) is an error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use super::diagnostic::{Diagnostic, Diagnostics, Severity, Source};
use crate::name::DatasetName;

/// Keys of sanoid.defaults.conf 2.1 that zfsrepl imports, and the zfsrepl
/// key each becomes (`None`: handled specially).
const KEYS: &[(&str, Option<&str>)] = &[
    ("use_template", None),
    ("recursive", None),
    ("process_children_only", None),
    ("skip_children", None),
    ("path", None),
    ("autosnap", Some("autosnap")),
    ("autoprune", Some("autoprune")),
    ("frequently", Some("frequently")),
    ("hourly", Some("hourly")),
    ("daily", Some("daily")),
    ("weekly", Some("weekly")),
    ("monthly", Some("monthly")),
    ("yearly", Some("yearly")),
    ("frequent_period", Some("frequent-period")),
    ("hourly_min", Some("hourly-min")),
    ("daily_hour", Some("daily-hour")),
    ("daily_min", Some("daily-min")),
    ("weekly_wday", Some("weekly-wday")),
    ("weekly_hour", Some("weekly-hour")),
    ("weekly_min", Some("weekly-min")),
    ("monthly_mday", Some("monthly-mday")),
    ("monthly_hour", Some("monthly-hour")),
    ("monthly_min", Some("monthly-min")),
    ("yearly_mon", Some("yearly-mon")),
    ("yearly_mday", Some("yearly-mday")),
    ("yearly_hour", Some("yearly-hour")),
    ("yearly_min", Some("yearly-min")),
    ("prune_defer", Some("prune-defer")),
    ("monitor", None),
    ("monitor_dont_warn", None),
    ("monitor_dont_crit", None),
    ("frequently_warn", None),
    ("frequently_crit", None),
    ("hourly_warn", None),
    ("hourly_crit", None),
    ("daily_warn", None),
    ("daily_crit", None),
    ("weekly_warn", None),
    ("weekly_crit", None),
    ("monthly_warn", None),
    ("monthly_crit", None),
    ("yearly_warn", None),
    ("yearly_crit", None),
    ("capacity_warn", None),
    ("capacity_crit", None),
    ("pre_snapshot_script", None),
    ("post_snapshot_script", None),
    ("pruning_script", None),
    ("script_timeout", None),
    ("no_inconsistent_snapshot", None),
    ("force_post_snapshot_script", None),
    // Accepted by sanoid and meaningless to zfsrepl.
    ("min_percent_free", None),
];

const INT_KEYS: &[&str] = &[
    "frequently",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "frequent_period",
    "hourly_min",
    "daily_hour",
    "daily_min",
    "weekly_wday",
    "weekly_hour",
    "weekly_min",
    "monthly_mday",
    "monthly_hour",
    "monthly_min",
    "yearly_mon",
    "yearly_mday",
    "yearly_hour",
    "yearly_min",
    "prune_defer",
    "capacity_warn",
    "capacity_crit",
    "script_timeout",
];

struct Entry {
    key: String,
    value: String,
    span: Range<usize>,
}

struct Section {
    name: String,
    span: Range<usize>,
    entries: Vec<Entry>,
}

/// Parses INI text the way Config::IniFiles reads sanoid.conf: `[section]`
/// headers, `key = value` lines, `#` and `;` comment lines.
fn parse_ini(src: &Source, diags: &mut Vec<Diagnostic>) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut pos = 0;
    for raw in src.text().split_inclusive('\n') {
        let line_start = pos;
        pos += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let lead = line.len() - line.trim_start().len();
        let start = line_start + lead;
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                diags.push(src.error(start..line_start + line.len(), "section header without ']'"));
                continue;
            };
            out.push(Section {
                name: name.trim().to_owned(),
                span: start + 1..start + 1 + name.len(),
                entries: Vec::new(),
            });
            continue;
        }
        let Some((k, v)) = trimmed.split_once('=') else {
            diags.push(src.error(start..line_start + line.len(), "expected `key = value`"));
            continue;
        };
        let Some(section) = out.last_mut() else {
            diags.push(src.error(
                start..start + k.trim_end().len(),
                "setting outside of any [section]",
            ));
            continue;
        };
        // Strip an inline comment only when preceded by whitespace, as
        // Config::IniFiles does with its default handling.
        let value = v
            .find(" #")
            .or_else(|| v.find("\t#"))
            .map_or(v, |i| &v[..i])
            .trim();
        let key = k.trim();
        section.entries.push(Entry {
            key: key.to_owned(),
            value: value.to_owned(),
            span: start..start + key.len(),
        });
    }
    out
}

/// sanoid's boolean words; anything else is refused (sanoid would take it
/// as true: a defect we do not copy).
fn sanoid_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "0" | "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "" => {
            Some(false)
        }
        _ => None,
    }
}

/// A sanoid monitor threshold as a zfsrepl duration string. A bare number
/// counts in the period below `period` (sanoid's rule); `y` is 31*365 days.
fn sanoid_threshold(period: &str, v: &str) -> Option<String> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "" => {
            n * match period {
                "frequently" => 1,
                "hourly" => 60,
                "daily" => 3600,
                "weekly" => 86_400,
                "monthly" => 7 * 86_400,
                _ => 31 * 86_400,
            }
        }
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        "w" => n * 7 * 86_400,
        "y" => n * 31 * 365 * 86_400,
        _ => return None,
    };
    Some(format!("{secs}s"))
}

/// Splits a hook script line into an argv when no shell is needed.
fn script_argv(line: &str) -> Result<Vec<String>, String> {
    if line
        .chars()
        .any(|c| "|&;<>()$`\\\"'*?[]#~=%{}".contains(c) || c == '\n')
    {
        return Err(format!(
            "script {line:?} needs a shell; zfsrepl runs hooks without one: put the line in a script file and name that file"
        ));
    }
    let argv: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    match argv.first() {
        None => Err("empty script".into()),
        Some(p) if !p.starts_with('/') => Err(format!("script {p:?} is not an absolute path")),
        Some(_) => Ok(argv),
    }
}

fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One section's settings as TOML lines, split by sub-table.
#[derive(Default)]
struct Tables {
    main: Vec<String>,
    monitor: Vec<String>,
    hooks: Vec<String>,
}

fn convert_entries(
    src: &Source,
    section: &Section,
    is_template: bool,
    diags: &mut Vec<Diagnostic>,
) -> (Tables, BTreeMap<&'static str, String>) {
    let mut t = Tables::default();
    // Special keys, handled by the caller: use_template, recursive, ...
    let mut special = BTreeMap::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in section.entries.iter().enumerate() {
        let Some(&(key, mapped)) = KEYS.iter().find(|(k, _)| *k == e.key) else {
            diags.push(src.diagnostic(
                Severity::Error,
                e.span.clone(),
                format!(
                    "I don't understand the setting `{}` in [{}]",
                    e.key, section.name
                ),
                Some("sanoid would abort on it too; see sanoid.defaults.conf for the keys".into()),
            ));
            continue;
        };
        if let Some(prev) = seen.insert(key, i) {
            let _ = prev;
            diags.push(src.diagnostic(
                Severity::Warning,
                e.span.clone(),
                format!("`{key}` set twice in [{}]; the last one wins", section.name),
                None,
            ));
        }
        let v = e.value.as_str();
        let bad = |diags: &mut Vec<Diagnostic>, what: &str| {
            diags.push(src.error(e.span.clone(), format!("`{key}` = {v:?}: {what}")));
        };
        if INT_KEYS.contains(&key) && v.parse::<u64>().is_err() {
            bad(diags, "must be a whole number");
            continue;
        }
        match (key, mapped) {
            ("autosnap" | "autoprune", Some(m)) => match sanoid_bool(v) {
                Some(b) => t.main.push(format!("{m} = {b}")),
                None => bad(
                    diags,
                    "not a boolean word (sanoid would treat it as true; say yes or no)",
                ),
            },
            (_, Some(m)) => t.main.push(format!("{m} = {v}")),
            (
                "use_template" | "recursive" | "process_children_only" | "skip_children" | "path",
                None,
            ) => {
                if is_template && matches!(key, "recursive" | "use_template") {
                    diags.push(src.diagnostic(
                        Severity::Warning,
                        e.span.clone(),
                        format!("`{key}` in a template is ignored by sanoid; not imported"),
                        None,
                    ));
                } else {
                    special.insert(key, v.to_owned());
                }
            }
            (
                "monitor"
                | "monitor_dont_warn"
                | "monitor_dont_crit"
                | "no_inconsistent_snapshot"
                | "force_post_snapshot_script",
                None,
            ) => {
                let Some(b) = sanoid_bool(v) else {
                    bad(diags, "not a boolean word");
                    continue;
                };
                match key {
                    "monitor" => t.monitor.push(format!("enabled = {b}")),
                    "monitor_dont_warn" => t.monitor.push(format!("dont-warn = {b}")),
                    "monitor_dont_crit" => t.monitor.push(format!("dont-crit = {b}")),
                    "no_inconsistent_snapshot" => t.hooks.push(format!(
                        "on-pre-failure = {}",
                        if b { "\"skip\"" } else { "\"snapshot\"" }
                    )),
                    _ => t.hooks.push(format!("force-post = {b}")),
                }
            }
            ("capacity_warn" | "capacity_crit", None) => {
                t.monitor.push(format!("{} = {v}", key.replace('_', "-")));
            }
            ("script_timeout", None) => t.hooks.push(format!("timeout = \"{v}s\"")),
            ("pre_snapshot_script" | "post_snapshot_script" | "pruning_script", None) => {
                match script_argv(v) {
                    Ok(argv) => {
                        let name = match key {
                            "pre_snapshot_script" => "pre-snapshot",
                            "post_snapshot_script" => "post-snapshot",
                            _ => "pruning",
                        };
                        let list: Vec<String> = argv.iter().map(|a| toml_str(a)).collect();
                        t.hooks.push(format!("{name} = [{}]", list.join(", ")));
                    }
                    Err(m) => diags.push(src.error(e.span.clone(), m)),
                }
            }
            ("min_percent_free", None) => {}
            (k, None) if k.ends_with("_warn") || k.ends_with("_crit") => {
                let period = k.rsplit_once('_').map_or(k, |(p, _)| p);
                match sanoid_threshold(period, v) {
                    Some(d) => t.monitor.push(format!("{} = \"{d}\"", k.replace('_', "-"))),
                    None => bad(
                        diags,
                        "not a sanoid duration (a number, optionally with s m h d w y)",
                    ),
                }
            }
            _ => {}
        }
    }
    (t, special)
}

fn emit(out: &mut String, header: &str, t: &Tables, extra: &[String]) {
    let _ = writeln!(out, "\n[{header}]");
    for l in extra.iter().chain(&t.main) {
        let _ = writeln!(out, "{l}");
    }
    if !t.monitor.is_empty() {
        let _ = writeln!(out, "\n[{header}.monitor]");
        for l in &t.monitor {
            let _ = writeln!(out, "{l}");
        }
    }
    if !t.hooks.is_empty() {
        let _ = writeln!(out, "\n[{header}.hooks]");
        for l in &t.hooks {
            let _ = writeln!(out, "{l}");
        }
    }
}

/// Converts a sanoid.conf into zfsrepl policy TOML.
///
/// `timezone` is the zone sanoid ran in (Debian's timer runs `TZ=UTC`).
///
/// # Errors
/// Every problem, located in the sanoid.conf.
pub fn import(src: &Source, timezone: &str) -> Result<(String, Diagnostics), Diagnostics> {
    let mut diags = Vec::new();
    let sections = parse_ini(src, &mut diags);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported from {} by `zfsrepl policy import-sanoid`.\n# Snapshots keep sanoid's autosnap_ names, so the existing chain continues.\nversion = 1\ntimezone = {}",
        src.path().display(),
        toml_str(timezone)
    );
    let has_user_default = sections.iter().any(|s| s.name == "template_default");
    // Every template, including the user's default, continues sanoid's
    // naming; datasets use "default" first, as sanoid applies it first.
    let mut seen_datasets: BTreeMap<String, Range<usize>> = BTreeMap::new();
    for s in &sections {
        if s.name == "version" {
            continue;
        }
        if let Some(name) = s.name.strip_prefix("template_") {
            let (t, _) = convert_entries(src, s, true, &mut diags);
            let mut extra = Vec::new();
            if name == "default" {
                extra.push("naming = \"sanoid\"".to_owned());
            }
            emit(
                &mut out,
                &format!("template.{}", toml_key(name)),
                &t,
                &extra,
            );
            continue;
        }
        let (t, special) = convert_entries(src, s, false, &mut diags);
        let path = special
            .get("path")
            .cloned()
            .unwrap_or_else(|| s.name.clone());
        let dataset = match DatasetName::parse(&path) {
            Ok(d) => d,
            Err(e) => {
                diags.push(src.error(s.span.clone(), format!("[{}]: {e}", s.name)));
                continue;
            }
        };
        if let Some(prev) = seen_datasets.insert(dataset.to_string(), s.span.clone()) {
            let p = src.error(prev, "");
            diags.push(src.diagnostic(
                Severity::Error,
                s.span.clone(),
                format!("dataset {dataset} has two sections"),
                Some(format!("the other is at line {}", p.line)),
            ));
            continue;
        }
        let mut extra = vec!["naming = \"sanoid\"".to_owned()];
        let mut uses: Vec<String> = Vec::new();
        if has_user_default {
            uses.push("default".into());
        }
        if let Some(u) = special.get("use_template") {
            uses.extend(
                u.split(',')
                    .map(|x| x.trim().to_owned())
                    .filter(|x| !x.is_empty()),
            );
        }
        if !uses.is_empty() {
            let list: Vec<String> = uses.iter().map(|u| toml_str(u)).collect();
            extra.push(format!("use-template = [{}]", list.join(", ")));
        }
        let skip_children = special
            .get("skip_children")
            .and_then(|v| sanoid_bool(v))
            .unwrap_or(false);
        if let Some(r) = special.get("recursive") {
            if r.to_lowercase().contains("zfs") {
                extra.push("recursive = \"atomic\"".into());
            } else {
                match sanoid_bool(r) {
                    Some(true) if !skip_children => {
                        extra.push("recursive = \"per-dataset\"".into())
                    }
                    Some(_) => {}
                    None => diags.push(src.error(
                        s.span.clone(),
                        format!("[{}]: recursive = {r:?} is not yes, no or zfs", s.name),
                    )),
                }
            }
        }
        if special
            .get("process_children_only")
            .and_then(|v| sanoid_bool(v))
            == Some(true)
        {
            extra.push("children-only = true".into());
        }
        emit(
            &mut out,
            &format!("dataset.{}", toml_str(dataset.as_str())),
            &t,
            &extra,
        );
    }
    let (errors, warnings): (Vec<_>, Vec<_>) = diags.into_iter().partition(Diagnostic::is_error);
    if errors.is_empty() {
        Ok((out, Diagnostics(warnings)))
    } else {
        let mut all = errors;
        all.extend(warnings);
        Err(Diagnostics(all))
    }
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_owned()
    } else {
        toml_str(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Naming, Recursion, parse_str};

    const CONF: &str = "\
[version]
version = 2

[template_default]
hourly_warn = 120

[template_production]
frequently = 0
hourly = 36
daily = 30
monthly = 3
yearly = 0
autosnap = yes
autoprune = yes

[template_backup]
autosnap = no
hourly = 30
daily = 90
daily_warn = 48
monthly_crit = 2

[zfs-hdd/off]
use_template = production
recursive = yes
pre_snapshot_script = /usr/local/bin/flush --quick
no_inconsistent_snapshot = yes
script_timeout = 30

[rpool/data with space]
use_template = backup, production
recursive = zfs
process_children_only = yes
";

    #[test]
    fn imports_an_equivalent_policy() {
        let (toml, warnings) = import(&Source::new("sanoid.conf", CONF), "UTC").unwrap();
        assert!(warnings.0.is_empty(), "{warnings}");
        let p = parse_str("imported.toml", &toml).unwrap_or_else(|d| panic!("{d}\n---\n{toml}"));
        assert_eq!(p.timezone, "UTC");
        let off = &p.datasets[1];
        assert_eq!(off.dataset.as_str(), "zfs-hdd/off");
        assert_eq!(off.recursion, Recursion::PerDataset);
        let s = &off.settings;
        assert_eq!(s.naming, Naming::Sanoid);
        assert_eq!(
            (s.counts.hourly, s.counts.daily, s.counts.monthly),
            (36, 30, 3)
        );
        assert_eq!(
            s.hooks.pre_snapshot.as_deref().unwrap(),
            ["/usr/local/bin/flush", "--quick"]
        );
        assert_eq!(s.hooks.timeout.as_secs(), 30);
        assert_eq!(
            s.monitor.hourly.warn.unwrap().as_secs(),
            120 * 60,
            "bare hourly_warn counts minutes"
        );
        let b = &p.datasets[0];
        assert_eq!(b.recursion, Recursion::Atomic);
        assert!(b.children_only);
        // use_template order: backup then production; production wins.
        assert_eq!(b.settings.counts.hourly, 36);
        assert!(b.settings.autosnap);
        assert_eq!(b.settings.monitor.daily.warn.unwrap().as_secs(), 48 * 3600);
        assert_eq!(
            b.settings.monitor.monthly.crit.unwrap().as_secs(),
            2 * 7 * 86_400
        );
    }

    #[test]
    fn refuses_what_sanoid_would_misread() {
        let conf = "[tank/a]\nautoprune = nah\nhourli = 3\npre_snapshot_script = /bin/sync; reboot\nhourly = lots\n";
        let d = import(&Source::new("sanoid.conf", conf), "UTC")
            .unwrap_err()
            .to_string();
        assert!(
            d.contains("sanoid.conf:2:1: error: `autoprune` = \"nah\": not a boolean word"),
            "{d}"
        );
        assert!(
            d.contains(
                "sanoid.conf:3:1: error: I don't understand the setting `hourli` in [tank/a]"
            ),
            "{d}"
        );
        assert!(d.contains("needs a shell"), "{d}");
        assert!(
            d.contains("`hourly` = \"lots\": must be a whole number"),
            "{d}"
        );
    }

    #[test]
    fn thresholds_follow_sanoid_units() {
        assert_eq!(sanoid_threshold("hourly", "90").as_deref(), Some("5400s"));
        assert_eq!(sanoid_threshold("daily", "28").as_deref(), Some("100800s"));
        assert_eq!(
            sanoid_threshold("monthly", "5").as_deref(),
            Some("3024000s")
        );
        assert_eq!(sanoid_threshold("yearly", "1").as_deref(), Some("2678400s"));
        assert_eq!(sanoid_threshold("frequently", "0").as_deref(), Some("0s"));
        assert_eq!(
            sanoid_threshold("daily", "1y").as_deref(),
            Some("977616000s")
        );
        assert_eq!(sanoid_threshold("daily", "2x"), None);
    }
}
