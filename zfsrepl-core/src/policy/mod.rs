//! Policy files: TOML in, a validated [`Policy`] out, or every problem found
//! as a located [`Diagnostic`].
//!
//! The file is parsed into a spanned TOML tree (with recovery, so several
//! syntax errors are reported at once) and read by hand rather than through
//! serde: each key is checked where it stands, unknown keys get a "did you
//! mean", and nothing stops at the first problem.
//!
//! ```toml
//! version = 1
//! timezone = "Europe/Paris"
//!
//! [template.production]            # sanoid's common production template
//! hourly = 36
//! daily = 30
//! monthly = 3
//!
//! [dataset."rpool/off"]
//! use-template = "production"
//! recursive = "per-dataset"        # or "atomic" (zfs snapshot -r), or false
//! exclude = ["rpool/off/cache"]
//!
//! [dataset."rpool/off".hooks]
//! pre-snapshot = ["/usr/local/bin/flush-db", "--quick"]
//! timeout = "30s"
//! ```
//!
//! The daemon's hosts, jobs and `[daemon]` section are read by [`jobs`]
//! (its documentation shows them).
//!
//! Settings resolve like sanoid's: built-in defaults, then each template in
//! `use-template` order (templates may use templates), then the dataset's
//! own keys. A dataset entry below a recursive one refines it, whatever
//! their order in the file (sanoid lets a child written *before* its parent
//! lose its overrides; we do not).

pub mod diagnostic;
pub mod jobs;
mod reader;
pub mod sanoid;
mod settings;
pub mod targets;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::de::DeTable;

pub use diagnostic::{Diagnostic, Diagnostics, Severity, Source};
pub use jobs::{
    Compression, DaemonSettings, DatasetRef, Direction, Host, Job, JobKind, ListenSettings,
    Replicate, Transport, Trigger,
};
pub use reader::parse_duration;
pub use settings::{Counts, HookFailure, Hooks, Monitor, Naming, Retention, Settings, Threshold};
pub use targets::Targets;

use crate::name::DatasetName;
use reader::{Cx, Fields};
use settings::Partial;

/// The policy format version this build reads.
pub const VERSION: i64 = 1;

/// How a dataset entry applies to the datasets below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recursion {
    /// Only the dataset itself.
    None,
    /// Every descendant gets a copy of the settings and is snapshotted and
    /// pruned on its own (sanoid's `recursive = yes`).
    PerDataset,
    /// One atomic `zfs snapshot -r` of the whole tree; descendants are
    /// pruned on their own (sanoid's `recursive = zfs`).
    Atomic,
}

/// One dataset entry of a policy, with its settings resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetPolicy {
    /// The dataset.
    pub dataset: DatasetName,
    /// How the entry covers descendants.
    pub recursion: Recursion,
    /// Descendants left out (with their own descendants).
    pub exclude: Vec<DatasetName>,
    /// Manage only the descendants, not the dataset itself (sanoid's
    /// `process_children_only`).
    pub children_only: bool,
    /// The resolved settings.
    pub settings: Settings,
    /// Where the entry is written.
    #[serde(skip)]
    pub origin: Origin,
}

/// Where something was written: for diagnostics that point back at it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Index into [`Policy::sources`].
    pub file: usize,
    /// Byte range of the entry's key.
    pub span: Range<usize>,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// The files it came from.
    pub sources: Vec<PathBuf>,
    /// Time zone for schedules and snapshot names (IANA name).
    pub timezone: String,
    /// Dataset entries, sorted by dataset name.
    pub datasets: Vec<DatasetPolicy>,
    /// `[host.NAME]` entries, sorted by name.
    pub hosts: Vec<Host>,
    /// `[job.NAME]` entries, sorted by name.
    pub jobs: Vec<Job>,
    /// The `[daemon]` section (defaults when absent).
    pub daemon: DaemonSettings,
    /// Clones, containers, exports, proxies and tunnels
    /// ([`targets`]).
    pub targets: Targets,
}

impl Policy {
    /// The entry that governs `dataset`: its own entry, or the nearest
    /// recursive ancestor's (unless excluded).
    #[must_use]
    pub fn entry_for(&self, dataset: &DatasetName) -> Option<&DatasetPolicy> {
        if let Some(own) = self.datasets.iter().find(|d| &d.dataset == dataset) {
            return Some(own);
        }
        self.datasets
            .iter()
            .filter(|d| d.recursion != Recursion::None && dataset.is_within(&d.dataset))
            .filter(|d| !d.exclude.iter().any(|x| dataset.is_within(x)))
            .max_by_key(|d| d.dataset.depth())
    }
}

/// Reads and validates policy files.
///
/// # Errors
/// Every problem found, in every file, as [`Diagnostics`] (warnings alone do
/// not fail; they are returned with the policy by [`load_with_warnings`]).
pub fn load(paths: &[PathBuf]) -> Result<Policy, Diagnostics> {
    load_with_warnings(paths).map(|(p, _)| p)
}

/// Like [`load`], also returning warnings. Files ending in `.conf` are read
/// as sanoid.conf and imported.
///
/// # Errors
/// Every problem found, as [`Diagnostics`].
pub fn load_with_warnings(paths: &[PathBuf]) -> Result<(Policy, Diagnostics), Diagnostics> {
    let mut sources = Vec::new();
    let mut io_errors = Vec::new();
    for p in paths {
        match read_text(p) {
            // A sanoid.conf given directly: imported as if a policy said
            // `sanoid-conf = "..."` (sanoid's local time is taken as UTC,
            // as Debian's timer runs it; a policy file can say otherwise).
            Ok(t) if p.extension().is_some_and(|e| e == "conf") => {
                match sanoid::import(&Source::new(p.clone(), t), "UTC") {
                    Ok((toml, _)) => {
                        sources.push(Source::new(p.with_extension("conf (imported)"), toml))
                    }
                    Err(d) => io_errors.extend(d.0),
                }
            }
            Ok(t) => sources.push(Source::new(p.clone(), t)),
            Err(e) => io_errors.push(
                Source::new(p.clone(), "").error(0..0, format!("cannot read policy file: {e}")),
            ),
        }
    }
    if !io_errors.is_empty() {
        return Err(Diagnostics(io_errors));
    }
    validate(&sources)
}

/// The largest policy or sanoid.conf file read: far above any real estate
/// (10,000 dataset entries take about 2 MiB), low enough that a wrong path
/// (`/dev/zero`, a disk image) is refused at once instead of filling memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Reads a policy file as text, refusing one over [`MAX_FILE_BYTES`] or not
/// UTF-8 with a message that says so.
fn read_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB: not a policy (is it the right file?)",
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not UTF-8 text (invalid byte at offset {}): not a policy",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Parses policy text (one file) into a policy.
///
/// # Errors
/// Every problem found, as [`Diagnostics`].
pub fn parse_str(path: impl AsRef<Path>, text: &str) -> Result<Policy, Diagnostics> {
    validate(&[Source::new(path.as_ref(), text)]).map(|(p, _)| p)
}

pub(crate) const TOP_KEYS: &[&str] = &[
    "version",
    "timezone",
    "sanoid-conf",
    "template",
    "dataset",
    "host",
    "job",
    "daemon",
    "clone",
    "container",
    "export",
    "proxy",
    "tunnel",
];
/// Keys only a dataset entry takes (it takes every template key too).
const DATASET_ONLY_KEYS: &[&str] = &["recursive", "exclude", "children-only"];

struct RawEntry {
    dataset: DatasetName,
    file: usize,
    span: Range<usize>,
    templates: Vec<(String, Range<usize>)>,
    recursion: Recursion,
    exclude: Vec<(DatasetName, Range<usize>)>,
    children_only: bool,
    local: Partial,
    autosnap_set: Option<Range<usize>>,
}

/// Validates already-read sources.
///
/// # Errors
/// Every problem found, as [`Diagnostics`].
pub fn validate(sources: &[Source]) -> Result<(Policy, Diagnostics), Diagnostics> {
    let expanded = expand_sanoid(sources)?;
    let sources = &expanded[..];
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut timezone: Option<String> = None;
    // Templates are global across files: name -> (file, span, partial, uses).
    let mut templates: TemplateMap = BTreeMap::new();
    let mut entries: Vec<RawEntry> = Vec::new();
    let mut raw_targets = targets::RawTargets::default();
    let mut daemon_raw = jobs::Raw::default();

    for (fi, src) in sources.iter().enumerate() {
        let mut cx = Cx::new(src);
        let (doc, errors) = DeTable::parse_recoverable(src.text());
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            cx.error(span, format!("TOML syntax: {}", e.message().trim()));
        }
        let doc = doc.into_inner();
        let mut top = Fields::new(&doc, TOP_KEYS, "the top level");
        match top.get("version") {
            Some(v) => {
                if let Some(n) = cx.int(v, "version", 1..100)
                    && n != VERSION
                {
                    cx.error(v.span(), format!("policy version {n} is not supported; this zfsrepl reads version {VERSION}"));
                }
            }
            None if fi == 0 => cx.error_help(
                0..0,
                "missing `version`",
                format!("start the file with `version = {VERSION}`"),
            ),
            None => {}
        }
        if let Some(v) = top.get("timezone")
            && let Some(tz) = cx.string(v, "timezone")
        {
            if !tz_exists(tz) {
                cx.error_help(
                    v.span(),
                    format!("unknown time zone {tz:?}"),
                    "use an IANA name such as \"UTC\" or \"Europe/Paris\"",
                );
            } else if timezone.as_deref().is_some_and(|t| t != tz) {
                cx.error(
                    v.span(),
                    format!(
                        "time zone {tz:?} differs from {:?} set in another file",
                        timezone.as_deref().unwrap_or_default()
                    ),
                );
            } else {
                timezone = Some(tz.to_owned());
            }
        }
        // Read by expand_sanoid; only its type is checked here.
        if let Some(v) = top.get("sanoid-conf") {
            let _ = cx.string(v, "sanoid-conf");
        }
        if let Some(v) = top.get("template") {
            if let Some(t) = v.get_ref().as_table() {
                for (k, tv) in t.iter() {
                    let name = k.get_ref().to_string();
                    let Some(tt) = tv.get_ref().as_table() else {
                        cx.error(
                            tv.span(),
                            format!("template `{name}` must be a table: [template.{name}]"),
                        );
                        continue;
                    };
                    let mut f =
                        Fields::new(tt, settings::TEMPLATE_KEYS, format!("template `{name}`"));
                    let uses = f
                        .get("use-template")
                        .and_then(|u| cx.strings(u, "use-template"))
                        .unwrap_or_default();
                    let partial = Partial::read(&mut f, &mut cx);
                    f.finish(&mut cx);
                    if let Some((ofile, ospan, ..)) = templates.get(&name) {
                        let prev = sources[*ofile].error(ospan.clone(), "first defined here");
                        cx.error_help(
                            k.span(),
                            format!("template `{name}` is defined twice"),
                            format!("{}:{}:{}", prev.file.display(), prev.line, prev.column),
                        );
                        continue;
                    }
                    templates.insert(name, (fi, k.span(), partial, uses));
                }
            } else {
                cx.error(
                    v.span(),
                    "`template` must be a table of templates: [template.NAME]",
                );
            }
        }
        if let Some(v) = top.get("dataset") {
            if let Some(t) = v.get_ref().as_table() {
                for (k, dv) in t.iter() {
                    let raw_name: &str = k.get_ref();
                    let dataset = match DatasetName::parse(raw_name) {
                        Ok(d) => d,
                        Err(e) => {
                            cx.error(k.span(), format!("invalid dataset name: {e}"));
                            continue;
                        }
                    };
                    let Some(dt) = dv.get_ref().as_table() else {
                        cx.error(
                            dv.span(),
                            format!(
                                "dataset `{raw_name}` must be a table: [dataset.\"{raw_name}\"]"
                            ),
                        );
                        continue;
                    };
                    if let Some(e) = read_entry(&mut cx, fi, &dataset, k.span(), dt) {
                        if let Some(prev) = entries.iter().find(|p| p.dataset == dataset) {
                            let p = sources[prev.file].error(prev.span.clone(), "");
                            cx.error_help(
                                k.span(),
                                format!("dataset `{dataset}` has two entries"),
                                format!(
                                    "the other is at {}:{}:{}",
                                    p.file.display(),
                                    p.line,
                                    p.column
                                ),
                            );
                            continue;
                        }
                        entries.push(e);
                    }
                }
            } else {
                cx.error(
                    v.span(),
                    "`dataset` must be a table of datasets: [dataset.\"pool/fs\"]",
                );
            }
        }
        if let Some(v) = top.get("host") {
            daemon_raw.read_hosts(&mut cx, fi, v);
        }
        if let Some(v) = top.get("job") {
            daemon_raw.read_jobs(&mut cx, fi, v);
        }
        if let Some(v) = top.get("daemon") {
            let span = top.key_span("daemon").unwrap_or_else(|| v.span());
            daemon_raw.read_daemon(&mut cx, fi, span, v);
        }
        raw_targets.read(&mut cx, fi, &mut top);
        top.finish(&mut cx);
        diags.extend(cx.diags);
    }

    // Template references and cycles.
    let mut resolved: BTreeMap<String, Partial> = BTreeMap::new();
    for name in templates.keys() {
        let mut stack = Vec::new();
        resolve_template(
            name,
            &templates,
            &mut resolved,
            &mut stack,
            sources,
            &mut diags,
        );
    }

    // Entries: resolve settings, check overlaps.
    let mut out = Vec::new();
    for e in &entries {
        let src = &sources[e.file];
        let mut layers = Vec::new();
        for (t, span) in &e.templates {
            match resolved.get(t) {
                Some(p) => layers.push(p.clone()),
                None => diags.push(src.diagnostic(
                    Severity::Error,
                    span.clone(),
                    format!("unknown template `{t}`"),
                    (!templates.is_empty()).then(|| {
                        format!(
                            "defined templates: {}",
                            templates.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    }),
                )),
            }
        }
        layers.push(e.local.clone());
        // A refinement below a recursive entry starts from that entry's
        // resolved layers, whatever the file order.
        let parent = entries
            .iter()
            .filter(|p| {
                p.recursion != Recursion::None
                    && e.dataset != p.dataset
                    && e.dataset.is_within(&p.dataset)
            })
            .max_by_key(|p| p.dataset.depth());
        let mut settings_layers = Vec::new();
        if let Some(p) = parent {
            for (t, _) in &p.templates {
                if let Some(l) = resolved.get(t) {
                    settings_layers.push(l.clone());
                }
            }
            settings_layers.push(p.local.clone());
            if p.exclude.iter().any(|(x, _)| e.dataset.is_within(x)) {
                diags.push(src.diagnostic(
                    Severity::Error,
                    e.span.clone(),
                    format!(
                        "dataset `{}` is excluded by `{}` but has its own entry",
                        e.dataset, p.dataset
                    ),
                    Some("remove it from `exclude`, or remove this entry".into()),
                ));
            }
            if p.recursion == Recursion::Atomic
                && let Some(span) = &e.autosnap_set
            {
                diags.push(src.diagnostic(
                    Severity::Warning,
                    span.clone(),
                    format!(
                        "`autosnap` ignored: `{}` is snapshotted atomically with `{}`",
                        e.dataset, p.dataset
                    ),
                    Some("its retention settings still apply".into()),
                ));
            }
        }
        settings_layers.extend(layers);
        let mut settings = Partial::merge(&settings_layers).finish();
        if parent.is_some_and(|p| p.recursion == Recursion::Atomic) {
            settings.autosnap = false;
        }
        for (x, span) in &e.exclude {
            if !x.is_within(&e.dataset) || *x == e.dataset {
                diags.push(src.error(
                    span.clone(),
                    format!("excluded `{x}` is not below `{}`", e.dataset),
                ));
            }
        }
        if e.recursion == Recursion::None && !e.exclude.is_empty() {
            diags.push(src.diagnostic(
                Severity::Warning,
                e.span.clone(),
                "`exclude` has no effect without `recursive`",
                None,
            ));
        }
        if let Err((span, msg)) = settings.check_dates() {
            let span = span.unwrap_or_else(|| e.span.clone());
            diags.push(src.error(span, msg));
        }
        out.push(DatasetPolicy {
            dataset: e.dataset.clone(),
            recursion: e.recursion,
            exclude: e.exclude.iter().map(|(d, _)| d.clone()).collect(),
            children_only: e.children_only,
            settings,
            origin: Origin {
                file: e.file,
                span: e.span.clone(),
            },
        });
    }
    out.sort_by(|a, b| a.dataset.cmp(&b.dataset));
    let (hosts, jobs, daemon) = daemon_raw.finish(sources, &out, &mut diags);
    let targets = raw_targets.finish(sources, &hosts, &out, &jobs, &mut diags);
    let (errors, warnings): (Vec<_>, Vec<_>) = diags.into_iter().partition(Diagnostic::is_error);
    if !errors.is_empty() {
        let mut all = errors;
        all.extend(warnings);
        return Err(Diagnostics(all));
    }
    Ok((
        Policy {
            sources: sources.iter().map(|s| s.path().to_owned()).collect(),
            timezone: timezone.unwrap_or_else(|| "UTC".into()),
            datasets: out,
            hosts,
            jobs,
            daemon,
            targets,
        },
        Diagnostics(warnings),
    ))
}

/// Adds, after each source with `sanoid-conf = "PATH"`, the policy imported
/// from that sanoid.conf (read at every load, so edits to it take effect).
fn expand_sanoid(sources: &[Source]) -> Result<Vec<Source>, Diagnostics> {
    let mut out = Vec::new();
    let mut diags = Vec::new();
    for src in sources {
        out.push(src.clone());
        let Ok(doc) = DeTable::parse(src.text()) else {
            continue;
        };
        let doc = doc.into_inner();
        let Some(v) = doc.get("sanoid-conf") else {
            continue;
        };
        let Some(path) = v.get_ref().as_str() else {
            continue;
        };
        let tz = doc
            .get("timezone")
            .and_then(|t| t.get_ref().as_str())
            .unwrap_or("UTC");
        let path = src
            .path()
            .parent()
            .map_or_else(|| PathBuf::from(path), |dir| dir.join(path));
        let text = match read_text(&path) {
            Ok(t) => t,
            Err(e) => {
                diags.push(src.error(v.span(), format!("cannot read {}: {e}", path.display())));
                continue;
            }
        };
        match sanoid::import(&Source::new(&path, text), tz) {
            Ok((toml, _)) => {
                // The imported text has its own version line; it is not the
                // first source, so its timezone must agree (it does: `tz`).
                out.push(Source::new(path.with_extension("conf (imported)"), toml));
            }
            Err(d) => diags.extend(d.0),
        }
    }
    if diags.iter().any(Diagnostic::is_error) {
        return Err(Diagnostics(diags));
    }
    Ok(out)
}

fn read_entry(
    cx: &mut Cx<'_>,
    file: usize,
    dataset: &DatasetName,
    span: Range<usize>,
    t: &DeTable<'_>,
) -> Option<RawEntry> {
    let mut f = Fields::with_extra(
        t,
        settings::TEMPLATE_KEYS,
        DATASET_ONLY_KEYS,
        format!("dataset `{dataset}`"),
    );
    let templates = f
        .get("use-template")
        .and_then(|u| cx.strings(u, "use-template"))
        .unwrap_or_default();
    let recursion = match f.get("recursive") {
        None => Recursion::None,
        Some(v) => match (v.get_ref().as_bool(), v.get_ref().as_str()) {
            (Some(false), _) => Recursion::None,
            (Some(true), _) | (_, Some("per-dataset")) => Recursion::PerDataset,
            (_, Some("atomic")) => Recursion::Atomic,
            _ => {
                cx.error_help(v.span(), "`recursive` must be false, \"per-dataset\" or \"atomic\"", "\"per-dataset\" is sanoid's `recursive = yes`; \"atomic\" is `recursive = zfs` (one zfs snapshot -r)");
                Recursion::None
            }
        },
    };
    let exclude = f
        .get("exclude")
        .and_then(|v| cx.strings(v, "exclude"))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(s, sp)| match DatasetName::parse(&s) {
            Ok(d) => Some((d, sp)),
            Err(e) => {
                cx.error(sp, format!("invalid dataset name in `exclude`: {e}"));
                None
            }
        })
        .collect();
    let children_only = f
        .get("children-only")
        .and_then(|v| cx.bool(v, "children-only"))
        .unwrap_or(false);
    let autosnap_set = f.key_span("autosnap");
    let local = Partial::read(&mut f, cx);
    f.finish(cx);
    Some(RawEntry {
        dataset: dataset.clone(),
        file,
        span,
        templates,
        recursion,
        exclude,
        children_only,
        local,
        autosnap_set,
    })
}

type TemplateMap = BTreeMap<String, (usize, Range<usize>, Partial, Vec<(String, Range<usize>)>)>;

fn resolve_template(
    name: &str,
    templates: &TemplateMap,
    resolved: &mut BTreeMap<String, Partial>,
    stack: &mut Vec<String>,
    sources: &[Source],
    diags: &mut Vec<Diagnostic>,
) -> Option<Partial> {
    if let Some(p) = resolved.get(name) {
        return Some(p.clone());
    }
    let (file, span, own, uses) = templates.get(name)?;
    if stack.iter().any(|s| s == name) {
        diags.push(sources[*file].error(
            span.clone(),
            format!(
                "template `{name}` uses itself: {} -> {name}",
                stack.join(" -> ")
            ),
        ));
        return None;
    }
    stack.push(name.to_owned());
    let mut layers = Vec::new();
    for (u, uspan) in uses {
        if !templates.contains_key(u) {
            diags.push(sources[*file].error(uspan.clone(), format!("unknown template `{u}`")));
            continue;
        }
        if let Some(p) = resolve_template(u, templates, resolved, stack, sources, diags) {
            layers.push(p);
        }
    }
    stack.pop();
    layers.push(own.clone());
    let merged = Partial::merge(&layers);
    resolved.insert(name.to_owned(), merged.clone());
    Some(merged)
}

/// Whether an IANA time zone name is known here.
fn tz_exists(name: &str) -> bool {
    jiff::tz::TimeZone::get(name).is_ok()
}

#[cfg(test)]
mod tests;
