//! Running policy hooks (pre-snapshot, post-snapshot, pruning, and a clone
//! refresh's pre-swap and post-swap): an argv run
//! without a shell, with a small fixed environment naming what the hook is
//! about, a time limit, and its output kept for the report.
//!
//! The environment carries zfsrepl's names and, for scripts written for
//! sanoid, sanoid's (`SANOID_SCRIPT`, `SANOID_TARGETS`, `SANOID_SNAPNAMES`,
//! `SANOID_TYPES`, `SANOID_PRE_FAILURE`), so existing hook scripts keep
//! working after an import.
//!
//! A hook runs in its own process group; on timeout the whole group is
//! killed, so a script's children do not outlive it.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::name::SnapshotName;

/// Which hook this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    /// Before taking snapshots.
    PreSnapshot,
    /// After taking snapshots.
    PostSnapshot,
    /// After pruning.
    Pruning,
    /// A clone refresh: the new clones exist under their temporary names,
    /// the old ones still serve.
    PreSwap,
    /// A clone refresh: the new clones are in place.
    PostSwap,
}

impl HookKind {
    fn word(self) -> &'static str {
        match self {
            Self::PreSnapshot => "pre",
            Self::PostSnapshot => "post",
            Self::Pruning => "prune",
            Self::PreSwap => "pre-swap",
            Self::PostSwap => "post-swap",
        }
    }
}

/// What a hook is told about.
#[derive(Debug, Clone, Default)]
pub struct HookContext {
    /// The datasets concerned.
    pub targets: Vec<String>,
    /// The snapshots taken or destroyed.
    pub snapshots: Vec<SnapshotName>,
    /// The periods (`hourly`, `daily`, ...).
    pub periods: Vec<String>,
    /// For a post hook: whether the pre hook failed.
    pub pre_failed: bool,
}

/// How a hook run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum HookOutcome {
    /// Exit status 0.
    Ok {
        /// The tail of its output (stdout then stderr).
        output: String,
    },
    /// A non-zero exit or a signal.
    Failed {
        /// The exit code, when it exited.
        code: Option<i32>,
        /// The tail of its output.
        output: String,
    },
    /// Killed after the time limit.
    TimedOut {
        /// The limit.
        after: Duration,
    },
    /// It could not be started.
    NotStarted {
        /// Why.
        error: String,
    },
}

impl HookOutcome {
    /// Whether the hook succeeded.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok { .. })
    }
}

/// The environment a hook sees (besides a fixed `PATH`).
#[must_use]
pub fn environment(kind: HookKind, cx: &HookContext) -> Vec<(String, String)> {
    let targets = cx.targets.join(",");
    let snaps = cx
        .snapshots
        .iter()
        .map(SnapshotName::as_str)
        .collect::<Vec<_>>()
        .join(",");
    let periods = cx.periods.join(",");
    let mut env = vec![
        ("ZFSREPL_HOOK".to_owned(), kind.word().to_owned()),
        ("ZFSREPL_TARGETS".to_owned(), targets.clone()),
        ("ZFSREPL_SNAPSHOTS".to_owned(), snaps.clone()),
        ("ZFSREPL_PERIODS".to_owned(), periods.clone()),
        ("SANOID_SCRIPT".to_owned(), kind.word().to_owned()),
        ("SANOID_TARGETS".to_owned(), targets.clone()),
        (
            "SANOID_TARGET".to_owned(),
            cx.targets.first().cloned().unwrap_or_default(),
        ),
        ("SANOID_SNAPNAMES".to_owned(), snaps.clone()),
        (
            "SANOID_SNAPNAME".to_owned(),
            cx.snapshots
                .first()
                .map(|s| s.snap().to_owned())
                .unwrap_or_default(),
        ),
        ("SANOID_TYPES".to_owned(), periods),
    ];
    if kind == HookKind::PostSnapshot && cx.pre_failed {
        env.push(("ZFSREPL_PRE_FAILURE".to_owned(), "1".to_owned()));
        env.push(("SANOID_PRE_FAILURE".to_owned(), "1".to_owned()));
    }
    env
}

/// Runs one hook to completion or until `timeout`.
#[must_use]
pub fn run(argv: &[String], kind: HookKind, cx: &HookContext, timeout: Duration) -> HookOutcome {
    let Some((prog, args)) = argv.split_first() else {
        return HookOutcome::NotStarted {
            error: "empty argv".into(),
        };
    };
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(environment(kind, cx))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return HookOutcome::NotStarted {
                error: format!("{prog}: {e}"),
            };
        }
    };
    let drain = |r: Option<Box<dyn io::Read + Send>>| {
        r.map(|r| std::thread::spawn(move || crate::zfs::runner::drain_tail(r, 8192)))
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn io::Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn io::Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if started.elapsed() >= timeout => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return HookOutcome::NotStarted {
                    error: format!("waiting for {prog}: {e}"),
                };
            }
        }
    };
    let Some(status) = status else {
        kill_group(child.id());
        let _ = child.kill();
        let _ = child.wait();
        return HookOutcome::TimedOut { after: timeout };
    };
    let mut output = Vec::new();
    for h in [out, err].into_iter().flatten() {
        output.extend(h.join().unwrap_or_default());
    }
    let output = String::from_utf8_lossy(&output).trim_end().to_owned();
    if status.success() {
        HookOutcome::Ok { output }
    } else {
        HookOutcome::Failed {
            code: status.code(),
            output,
        }
    }
}

/// Kills the hook's process group (its children too).
#[allow(unsafe_code)]
fn kill_group(pid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: killpg only sends a signal; the group id is the hook's own
    // (spawned with process_group(0), so pgid == pid), never 0 or 1.
    if pgid > 1 {
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    fn cx() -> HookContext {
        HookContext {
            targets: vec!["tank/a b".into(), "tank/-c".into()],
            snapshots: vec![
                SnapshotName::parse("tank/a b@autosnap_2026-11-22_05:00:00_hourly").unwrap(),
            ],
            periods: vec!["hourly".into()],
            pre_failed: false,
        }
    }

    #[test]
    fn environment_names_targets_for_zfsrepl_and_sanoid_scripts() {
        let o = run(
            &sh("echo \"$ZFSREPL_HOOK|$SANOID_TARGETS|$SANOID_SNAPNAME|$SANOID_TYPES\""),
            HookKind::PreSnapshot,
            &cx(),
            Duration::from_secs(5),
        );
        assert_eq!(
            o,
            HookOutcome::Ok {
                output: "pre|tank/a b,tank/-c|autosnap_2026-11-22_05:00:00_hourly|hourly".into()
            }
        );
    }

    #[test]
    fn arguments_are_passed_verbatim_never_through_a_shell() {
        let canary =
            std::env::temp_dir().join(format!("zfsrepl-hook-canary-{}", std::process::id()));
        let hostile = format!("$(touch {c}); touch {c} `touch {c}`", c = canary.display());
        let o = run(
            &["/usr/bin/printf".into(), "%s".into(), hostile.clone()],
            HookKind::Pruning,
            &cx(),
            Duration::from_secs(5),
        );
        assert_eq!(o, HookOutcome::Ok { output: hostile });
        assert!(!canary.exists());
    }

    #[test]
    fn failures_and_missing_programs() {
        let o = run(
            &sh("echo oops >&2; exit 3"),
            HookKind::PostSnapshot,
            &cx(),
            Duration::from_secs(5),
        );
        assert_eq!(
            o,
            HookOutcome::Failed {
                code: Some(3),
                output: "oops".into()
            }
        );
        let o = run(
            &["/nonexistent/hook".into()],
            HookKind::PostSnapshot,
            &cx(),
            Duration::from_secs(5),
        );
        assert!(matches!(o, HookOutcome::NotStarted { .. }), "{o:?}");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let marker =
            std::env::temp_dir().join(format!("zfsrepl-hook-orphan-{}", std::process::id()));
        let script = format!("(sleep 1; touch {}) & sleep 30", marker.display());
        let t = Instant::now();
        let o = run(
            &sh(&script),
            HookKind::PreSnapshot,
            &cx(),
            Duration::from_millis(200),
        );
        assert_eq!(
            o,
            HookOutcome::TimedOut {
                after: Duration::from_millis(200)
            }
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!marker.exists(), "the hook's child outlived the timeout");
    }

    #[test]
    fn post_hook_learns_the_pre_hook_failed() {
        let mut c = cx();
        c.pre_failed = true;
        let o = run(
            &sh("echo $SANOID_PRE_FAILURE$ZFSREPL_PRE_FAILURE"),
            HookKind::PostSnapshot,
            &c,
            Duration::from_secs(5),
        );
        assert_eq!(
            o,
            HookOutcome::Ok {
                output: "11".into()
            }
        );
    }
}
