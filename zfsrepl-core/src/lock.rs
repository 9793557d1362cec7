//! Per-dataset advisory locks, so that the daemon and a manual
//! `zfsrepl send` or `zfsrepl prune` never act on the same dataset at once.
//!
//! One lock file per dataset in a lock directory (default
//! `/run/zfsrepl/locks`), locked with `flock(2)` (std's [`File::try_lock`]):
//! the kernel releases it when the holder exits, however it exits, so a
//! killed process never leaves a stale lock. Lock files are never removed
//! (removing a flock file races with its next locker); they are empty but
//! for the exclusive holder's description, shown to whoever finds it busy.
//!
//! Locks are hierarchical: locking `pool/a/b` takes a shared lock on
//! `pool` and `pool/a` and an exclusive one on `pool/a/b`. So a recursive
//! operation on `pool/a` (exclusive on `pool/a`) and one on `pool/a/b`
//! (shared on `pool/a`) exclude each other, while siblings do not.
//! Datasets on other hosts are locked under their host name
//! (`off1:pool/a`), so two jobs of this host never send into the same
//! remote dataset at once. Locking never blocks: [`LockDir::try_lock`]
//! fails at once with who holds the lock, and takes nothing then.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::name::DatasetName;

/// The default lock directory.
pub const DEFAULT_DIR: &str = "/run/zfsrepl/locks";

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Someone else holds it (or a lock above or below it).
    #[error("{key} is busy: {holder}")]
    Busy {
        /// The dataset (with `host:` when remote) whose lock is held.
        key: String,
        /// Who holds it, as far as known.
        holder: String,
    },
    /// The lock directory or file could not be used.
    #[error("lock {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A directory of per-dataset lock files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockDir {
    dir: PathBuf,
}

/// Held locks on one dataset (and shared ones on its ancestors); released
/// on drop.
#[derive(Debug)]
pub struct DatasetLock {
    key: String,
    _files: Vec<File>,
}

impl Drop for DatasetLock {
    fn drop(&mut self) {
        // Clear the description before the lock goes (the files close
        // after this), so a later shared holder is not reported as us.
        if let Some(f) = self._files.last() {
            let _ = f.set_len(0);
        }
    }
}

impl DatasetLock {
    /// The locked dataset's key (`pool/ds` or `host:pool/ds`).
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Escapes a lock key into one file name: `/` and `%` become `%2F` and
/// `%25`; everything else (spaces and `:` included) stays.
fn file_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    for c in key.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out.push_str(".lock");
    out
}

impl LockDir {
    /// A lock directory (created on first use).
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn open(&self, key: &str) -> Result<File, LockError> {
        let path = self.dir.join(file_name(key));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if !self.dir.is_dir() {
            std::fs::create_dir_all(&self.dir).map_err(|source| LockError::Io {
                path: self.dir.clone(),
                source,
            })?;
        }
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)
    }

    fn busy(key: &str, mut f: &File) -> LockError {
        let mut holder = String::new();
        let _ = f.rewind();
        let _ = f.read_to_string(&mut holder);
        let holder = holder.trim();
        LockError::Busy {
            key: key.to_owned(),
            holder: if holder.is_empty() {
                "locked by another zfsrepl (working below or above it)".into()
            } else {
                format!("locked by {holder}")
            },
        }
    }

    /// Locks `dataset` (on `host`, `None` for this one) for `what` (shown to
    /// others who find it busy, with this process id). Never blocks.
    ///
    /// # Errors
    /// [`LockError::Busy`] when the dataset, an ancestor or a descendant is
    /// locked by someone else; [`LockError::Io`] when the lock directory
    /// cannot be used.
    pub fn try_lock(
        &self,
        host: Option<&str>,
        dataset: &DatasetName,
        what: &str,
    ) -> Result<DatasetLock, LockError> {
        let prefix = host.map(|h| format!("{h}:")).unwrap_or_default();
        let key = format!("{prefix}{dataset}");
        let parts: Vec<&str> = dataset.as_str().split('/').collect();
        let mut files = Vec::with_capacity(parts.len());
        for i in 1..parts.len() {
            let anc = format!("{prefix}{}", parts[..i].join("/"));
            let f = self.open(&anc)?;
            match f.try_lock_shared() {
                Ok(()) => files.push(f),
                Err(TryLockError::WouldBlock) => return Err(Self::busy(&anc, &f)),
                Err(TryLockError::Error(source)) => {
                    return Err(LockError::Io {
                        path: self.dir.join(file_name(&anc)),
                        source,
                    });
                }
            }
        }
        let mut f = self.open(&key)?;
        match f.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Self::busy(&key, &f)),
            Err(TryLockError::Error(source)) => {
                return Err(LockError::Io {
                    path: self.dir.join(file_name(&key)),
                    source,
                });
            }
        }
        // The holder's description, for whoever finds it busy. Best
        // effort: the lock is held whatever happens here.
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = write!(f, "pid {} ({what})", std::process::id());
        files.push(f);
        Ok(DatasetLock { key, _files: files })
    }

    /// Locks several datasets, all or none.
    ///
    /// # Errors
    /// As [`LockDir::try_lock`]; the locks already taken are released.
    pub fn try_lock_all<'a>(
        &self,
        datasets: impl IntoIterator<Item = (Option<&'a str>, &'a DatasetName)>,
        what: &str,
    ) -> Result<Vec<DatasetLock>, LockError> {
        let mut held = Vec::new();
        for (host, ds) in datasets {
            // The same dataset twice (a job naming it twice) is one lock.
            let key = format!("{}{ds}", host.map(|h| format!("{h}:")).unwrap_or_default());
            if held.iter().any(|l: &DatasetLock| l.key == key) {
                continue;
            }
            held.push(self.try_lock(host, ds, what)?);
        }
        Ok(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(s: &str) -> DatasetName {
        DatasetName::parse(s).unwrap()
    }

    #[test]
    fn file_names_are_one_component() {
        assert_eq!(file_name("tank/a b/c%d"), "tank%2Fa b%2Fc%25d.lock");
        assert_eq!(file_name("off1:tank/x"), "off1:tank%2Fx.lock");
    }

    #[test]
    fn exclusion_follows_the_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let locks = LockDir::new(tmp.path().join("locks"));
        let a = locks.try_lock(None, &ds("tank/a"), "send tank/a").unwrap();
        assert_eq!(a.key(), "tank/a");
        // The same dataset, its child and its parent are busy.
        let e = locks.try_lock(None, &ds("tank/a"), "prune").unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "tank/a is busy: locked by pid {} (send tank/a)",
                std::process::id()
            )),
            "{e}"
        );
        assert!(matches!(
            locks.try_lock(None, &ds("tank/a/b"), "x"),
            Err(LockError::Busy { .. })
        ));
        assert!(matches!(
            locks.try_lock(None, &ds("tank"), "x"),
            Err(LockError::Busy { .. })
        ));
        // A sibling, the same name on another host, and other pools are free.
        let sib = locks.try_lock(None, &ds("tank/b"), "x").unwrap();
        let remote = locks.try_lock(Some("off1"), &ds("tank/a"), "x").unwrap();
        drop((sib, remote));
        // Released on drop.
        drop(a);
        let child = locks.try_lock(None, &ds("tank/a/b"), "x").unwrap();
        let other_child = locks.try_lock(None, &ds("tank/a/c"), "y").unwrap();
        drop((child, other_child));
        // All or none.
        let held = locks.try_lock(None, &ds("tank/z"), "z").unwrap();
        let e = locks.try_lock_all([(None, &ds("tank/y")), (None, &ds("tank/z"))], "w");
        assert!(e.is_err());
        drop(held);
        let both = locks
            .try_lock_all(
                [
                    (None, &ds("tank/y")),
                    (None, &ds("tank/z")),
                    (None, &ds("tank/y")),
                ],
                "w",
            )
            .unwrap();
        assert_eq!(both.len(), 2);
    }

    #[test]
    fn another_process_holding_the_lock_is_seen() {
        // flock locks belong to the open file: a second open in this
        // process behaves like another process.
        let tmp = tempfile::tempdir().unwrap();
        let locks = LockDir::new(tmp.path());
        let path = tmp.path().join(file_name("tank/a"));
        let f = File::create(&path).unwrap();
        f.lock().unwrap();
        let e = locks.try_lock(None, &ds("tank/a"), "x").unwrap_err();
        assert!(e.to_string().contains("locked by another zfsrepl"), "{e}");
        f.unlock().unwrap();
        locks.try_lock(None, &ds("tank/a"), "x").unwrap();
    }

    #[test]
    fn an_unusable_directory_is_an_io_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let e = LockDir::new(&file)
            .try_lock(None, &ds("tank/a"), "x")
            .unwrap_err();
        assert!(matches!(e, LockError::Io { .. }), "{e}");
    }
}
