//! The daemon's persistent state: per job, the last run, success and
//! failure; per replication job and target, the newest common snapshot of
//! each dataset (the replication cursor).
//!
//! One JSON file, written atomically (temporary file in the same
//! directory, fsync, rename, fsync of the directory), so a crash leaves the
//! old state or the new one, never half of one. A missing or unreadable
//! file is not fatal: the daemon starts from an empty state, keeps the bad
//! file aside for a post-mortem, and rebuilds the cursors from ZFS before
//! anything is pruned.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use zfsrepl_core::{Guid, failpoint};

/// The state file's format version.
pub const STATE_VERSION: u32 = 1;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunResult {
    /// Everything asked was done.
    Ok,
    /// Something failed (see the error).
    Failed,
    /// Stopped by shutdown.
    Cancelled,
}

/// What is known about one job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobState {
    /// When the last run started (the schedule counts from it).
    pub last_run: Option<Timestamp>,
    /// How the last run ended.
    pub last_result: Option<RunResult>,
    /// When a run last succeeded (its end).
    pub last_success: Option<Timestamp>,
    /// When a run last failed (its end).
    pub last_failure: Option<Timestamp>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// How long the last run took, seconds.
    pub last_duration: f64,
    /// Runs, in all.
    pub runs: u64,
    /// Failed runs, in all.
    pub failures: u64,
    /// Bytes sent, in all (replication).
    pub bytes: u64,
}

/// The newest snapshot a source dataset and its copy on a target share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Common {
    /// Its short name.
    pub snapshot: String,
    /// Its guid (the same on both sides).
    pub guid: Guid,
    /// Its creation time on the source, seconds since the epoch.
    pub creation: i64,
}

/// One target of one replication job: the common snapshot of each source
/// dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cursor {
    /// When it was last computed.
    pub updated: Option<Timestamp>,
    /// Source dataset -> newest common snapshot (absent: none yet).
    pub datasets: BTreeMap<String, Common>,
}

impl Cursor {
    /// The oldest common snapshot's creation: how far behind the target is
    /// (its slowest dataset). `None` when no dataset has one.
    #[must_use]
    pub fn oldest_common(&self) -> Option<i64> {
        self.datasets.values().map(|c| c.creation).min()
    }
}

/// The whole state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Per job name.
    pub jobs: BTreeMap<String, JobState>,
    /// Per replication job name, per target (`host:pool/ds` or `pool/ds`).
    pub cursors: BTreeMap<String, BTreeMap<String, Cursor>>,
}

/// Removes `.state.json.tmp-PID` files next to `path` whose process is
/// gone (a save cut short by a crash). Best effort.
fn remove_dead_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| p == std::process::id() || Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Where the state lives in a state directory.
#[must_use]
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

impl State {
    /// Reads the state file. Never fails: a missing file gives an empty
    /// state; an unreadable or corrupt one is renamed aside
    /// (`state.json.corrupt-<time>`) and an empty state is returned, with
    /// a message saying so.
    ///
    /// Temporary files left by a writer that died mid-save (their process
    /// is gone) are removed: the state file itself is whole, old or new.
    #[must_use]
    pub fn load(path: &Path) -> (Self, Option<String>) {
        remove_dead_temporaries(path);
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return (
                    Self::fresh(),
                    Some(format!(
                        "no state file {}: starting fresh, replication cursors are rebuilt from ZFS",
                        path.display()
                    )),
                );
            }
            Err(e) => {
                return (
                    Self::fresh(),
                    Some(format!(
                        "cannot read state file {}: {e}; starting fresh, cursors rebuilt from ZFS",
                        path.display()
                    )),
                );
            }
        };
        match serde_json::from_slice::<Self>(&text) {
            Ok(s) if s.version <= STATE_VERSION => (s, None),
            Ok(s) => (
                Self::fresh(),
                Some(format!(
                    "state file {} has version {} (this zfsrepl writes {STATE_VERSION}); starting fresh",
                    path.display(),
                    s.version
                )),
            ),
            Err(e) => {
                let aside =
                    path.with_extension(format!("json.corrupt-{}", Timestamp::now().as_second()));
                let kept = fs::rename(path, &aside).is_ok();
                (
                    Self::fresh(),
                    Some(format!(
                        "state file {} is corrupt ({e}){}; starting fresh, cursors rebuilt from ZFS",
                        path.display(),
                        if kept {
                            format!(", kept as {}", aside.display())
                        } else {
                            String::new()
                        }
                    )),
                )
            }
        }
    }

    /// An empty state.
    #[must_use]
    pub fn fresh() -> Self {
        Self {
            version: STATE_VERSION,
            ..Self::default()
        }
    }

    /// Writes the state atomically (mode 0600; the directory is created).
    ///
    /// # Errors
    /// When the directory or file cannot be written.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name()
                .map_or("state".into(), |n| n.to_string_lossy()),
            std::process::id()
        ));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
            // Crash points at every step (tests only, see
            // zfsrepl_core::failpoint): a crash anywhere leaves the old
            // file or the new one, never a mix.
            failpoint::hit("state-open");
            let (a, b) = json.split_at(json.len() / 2);
            f.write_all(a)?;
            failpoint::hit("state-write");
            f.write_all(b)?;
            f.write_all(b"\n")?;
            failpoint::hit("state-fsync");
            f.sync_all()?;
            failpoint::hit("state-rename");
            fs::rename(&tmp, path)?;
            failpoint::hit("state-dirsync");
            File::open(dir)?.sync_all()?;
            failpoint::hit("state-saved");
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// The job's entry, created empty.
    pub fn job(&mut self, name: &str) -> &mut JobState {
        self.jobs.entry(name.to_owned()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_writers_temporary_is_removed_a_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path());
        State::fresh().save(&path).unwrap();
        // pid 0 never names a live process; our own pid is alive.
        let dead = dir.path().join(".state.json.tmp-0");
        let live = dir
            .path()
            .join(format!(".state.json.tmp-{}", std::process::id()));
        let other = dir.path().join(".other.tmp-0");
        for f in [&dead, &live, &other] {
            fs::write(f, b"{\"jobs\": {").unwrap();
        }
        let (s, msg) = State::load(&path);
        assert_eq!((s, msg), (State::fresh(), None));
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
    }

    #[test]
    fn round_trip_missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(&dir.path().join("sub"));
        let (s, msg) = State::load(&path);
        assert_eq!(s, State::fresh());
        assert!(msg.unwrap().contains("starting fresh"));

        let mut s = State::fresh();
        let j = s.job("snap");
        j.runs = 3;
        j.last_run = Some("2026-12-06T10:00:00Z".parse().unwrap());
        j.last_result = Some(RunResult::Ok);
        s.cursors.entry("repl".into()).or_default().insert(
            "off1:tank/b".into(),
            Cursor {
                updated: None,
                datasets: [(
                    "tank/a".into(),
                    Common {
                        snapshot: "zfsrepl_x".into(),
                        guid: Guid(42),
                        creation: 100,
                    },
                )]
                .into(),
            },
        );
        s.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (back, msg) = State::load(&path);
        assert_eq!((back, msg), (s.clone(), None));
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");

        // Corrupt: kept aside, fresh state, never an error.
        fs::write(&path, b"{\"jobs\": {\"snap\": ").unwrap();
        let (back, msg) = State::load(&path);
        assert_eq!(back, State::fresh());
        let msg = msg.unwrap();
        assert!(
            msg.contains("is corrupt") && msg.contains("kept as"),
            "{msg}"
        );
        assert!(!path.exists());
        // Unknown fields from a newer build are ignored; a newer version is
        // not trusted.
        fs::write(&path, b"{\"version\": 1, \"future\": true}").unwrap();
        assert_eq!(State::load(&path).1, None);
        fs::write(&path, b"{\"version\": 99}").unwrap();
        assert!(State::load(&path).1.unwrap().contains("version 99"));
    }

    #[test]
    fn cursor_lag_is_the_slowest_dataset() {
        let c = |creation| Common {
            snapshot: "s".into(),
            guid: Guid(1),
            creation,
        };
        let cur = Cursor {
            updated: None,
            datasets: [("a".into(), c(300)), ("b".into(), c(100))].into(),
        };
        assert_eq!(cur.oldest_common(), Some(100));
        assert_eq!(Cursor::default().oldest_common(), None);
    }
}
