//! Test support (feature `test-util`): [`TestPool`], a real file-backed pool
//! with a unique name that is destroyed on drop, and the fixture DSL that
//! populates it; [`sshd`], a private sshd for ssh and agent tests;
//! [`stunnel`], a real stunnel for interoperability tests; [`netns`], a
//! second host as a network namespace whose link can be cut.
//!
//! Real-pool tests never skip: when no ZFS is available [`TestPool::new`]
//! panics with the command that sets it up (`scripts/setup-zfs.sh`), so a CI
//! run without ZFS fails instead of passing empty.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::name::{DatasetName, SnapshotName};
use crate::zfs::{Capabilities, LocalRunner, ZfsCli};

pub mod netns;
pub mod sshd;
pub mod stunnel;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A file-backed pool that exists for the life of the value.
///
/// The name is `zfsrepl_t_<pid>_<n>`, so parallel tests and processes never
/// collide and never touch a pool they did not create. The image is a sparse
/// file in a private temporary directory; the pool's root is mounted below
/// that directory too. On drop the pool is destroyed (retrying while it is
/// busy) and the image removed, unless the test panicked and
/// `ZFSREPL_KEEP_POOL_ON_FAILURE=1` is set, for post-mortems.
#[derive(Debug)]
pub struct TestPool {
    name: String,
    dir: Option<tempfile::TempDir>,
    image: PathBuf,
    mounted: bool,
}

fn run(argv: &[&str]) -> std::process::Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}; run scripts/setup-zfs.sh as root"))
}

impl TestPool {
    /// Creates a 256 MiB pool whose datasets are not mounted
    /// (`mountpoint=none`): most tests need no files, and every FUSE mount
    /// on zfs-fuse is one more thing that can stall under load.
    ///
    /// # Panics
    /// When ZFS is not available or the pool cannot be created: real-pool
    /// tests must fail, not skip, without ZFS.
    #[must_use]
    pub fn new() -> Self {
        Self::create(256 << 20, false)
    }

    /// Creates an unmounted pool of `bytes` (sparse; at least 64 MiB).
    ///
    /// # Panics
    /// When ZFS is not available or the pool cannot be created.
    #[must_use]
    pub fn with_size(bytes: u64) -> Self {
        Self::create(bytes, false)
    }

    /// Creates a 256 MiB pool mounted below its private directory, for
    /// tests that write files ([`TestPool::write`]).
    ///
    /// # Panics
    /// When ZFS is not available or the pool cannot be created.
    #[must_use]
    pub fn mounted() -> Self {
        Self::create(256 << 20, true)
    }

    /// Creates a mounted pool of `bytes` (sparse; at least 64 MiB), for
    /// tests that fill a pool on purpose.
    ///
    /// # Panics
    /// When ZFS is not available or the pool cannot be created.
    #[must_use]
    pub fn mounted_with_size(bytes: u64) -> Self {
        Self::create(bytes, true)
    }

    fn create(bytes: u64, mounted: bool) -> Self {
        let name = format!(
            "zfsrepl_t_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix("zfsrepl-pool-")
            .tempdir()
            .expect("temporary directory");
        let image = dir.path().join(format!("{name}.img"));
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(bytes))
            .expect("sparse pool image");
        let mnt = dir.path().join("mnt");
        let mountpoint = if mounted {
            mnt.to_str().expect("utf-8 temp path")
        } else {
            "none"
        };
        let out = run(&[
            "zpool",
            "create",
            "-f",
            "-m",
            mountpoint,
            &name,
            image.to_str().expect("utf-8 temp path"),
        ]);
        assert!(
            out.status.success(),
            "cannot create test pool {name}: {}{}\nZFS must be available for these tests: run `sudo scripts/setup-zfs.sh`",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            name,
            dir: Some(dir),
            image,
            mounted,
        }
    }

    /// The pool's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool's root dataset.
    ///
    /// # Panics
    /// Never: the generated name is valid.
    #[must_use]
    pub fn root(&self) -> DatasetName {
        DatasetName::parse(&self.name).expect("valid pool name")
    }

    /// `root/path`.
    ///
    /// # Panics
    /// When the resulting name is invalid.
    #[must_use]
    pub fn ds(&self, path: &str) -> DatasetName {
        DatasetName::parse(&format!("{}/{path}", self.name)).expect("valid dataset name")
    }

    /// `root/path@snap`, or `root@snap` for an empty path.
    ///
    /// # Panics
    /// When the resulting name is invalid.
    #[must_use]
    pub fn snap(&self, path: &str, snap: &str) -> SnapshotName {
        let ds = if path.is_empty() {
            self.root()
        } else {
            self.ds(path)
        };
        ds.snapshot(snap).expect("valid snapshot name")
    }

    /// The image file backing the pool.
    #[must_use]
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// Where the pool's root is mounted.
    ///
    /// # Panics
    /// Never while the pool exists.
    #[must_use]
    pub fn mountpoint(&self) -> PathBuf {
        self.dir.as_ref().expect("pool alive").path().join("mnt")
    }

    /// A probed command layer on this machine.
    ///
    /// # Panics
    /// When the probe fails.
    #[must_use]
    pub fn zfs(&self) -> ZfsCli<LocalRunner> {
        ZfsCli::probe(LocalRunner::new(), zfs_binary()).expect("probe zfs")
    }

    /// A command layer with the given capabilities (no probe processes).
    #[must_use]
    pub fn zfs_with(&self, caps: Capabilities) -> ZfsCli<LocalRunner> {
        ZfsCli::with_capabilities(LocalRunner::new(), zfs_binary(), caps)
    }

    /// Applies a fixture, one entity per line, relative to the pool root:
    /// `+ a/b` creates a filesystem (with parents), `+ a/b@s` a snapshot,
    /// `+ "a b/c d@e f"` names with spaces (quoted), `# ...` comments.
    ///
    /// # Panics
    /// When a line is malformed or a command fails.
    pub fn apply(&self, fixture: &str) {
        for line in fixture.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let rest = line
                .strip_prefix("+ ")
                .unwrap_or_else(|| panic!("fixture line must start with '+ ': {line:?}"));
            let rel = rest.trim().trim_matches('"');
            let full = if rel.starts_with('@') {
                format!("{}{rel}", self.name)
            } else {
                format!("{}/{rel}", self.name)
            };
            let argv: Vec<&str> = if full.contains('@') {
                vec!["zfs", "snapshot", "--", &full]
            } else {
                vec!["zfs", "create", "-p", "--", &full]
            };
            let out = run(&argv);
            assert!(
                out.status.success(),
                "fixture {line:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Writes `bytes` of data into a file of a mounted dataset, so that the
    /// next snapshot differs.
    ///
    /// # Panics
    /// When the dataset is not mounted under the pool's mountpoint.
    pub fn write(&self, path: &str, file: &str, bytes: usize) {
        assert!(self.mounted, "TestPool::write needs TestPool::mounted()");
        let dir = self.mountpoint().join(path);
        let data: Vec<u8> = (0..bytes).map(|i| (i * 7 + bytes) as u8).collect();
        std::fs::write(dir.join(file), data)
            .unwrap_or_else(|e| panic!("write {file} in {}: {e}", dir.display()));
    }

    fn destroy(&self) -> Result<(), String> {
        let mut last = String::new();
        // zfs-fuse can stay "busy" for up to about a minute on a loaded
        // machine (after large writes, or sends whose client was killed).
        for attempt in 0..40u64 {
            let out = run(&["zpool", "destroy", "-f", &self.name]);
            if out.status.success() {
                return Ok(());
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            if !last.contains("busy") {
                break;
            }
            std::thread::sleep(Duration::from_millis((100 * (attempt + 1)).min(2000)));
        }
        Err(last)
    }
}

impl Default for TestPool {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("ZFSREPL_KEEP_POOL_ON_FAILURE").is_some() {
            if let Some(d) = self.dir.take() {
                let kept = d.keep();
                eprintln!("keeping pool {} (image in {})", self.name, kept.display());
            }
            return;
        }
        if let Err(e) = self.destroy() {
            // Keep the directory: removing it would recurse into the still
            // mounted pool, and deleting the image under a live pool makes
            // zfs-fuse fault it.
            if let Some(d) = self.dir.take() {
                let kept = d.keep();
                eprintln!(
                    "warning: cannot destroy test pool {} (image kept in {}): {e}",
                    self.name,
                    kept.display()
                );
            }
        }
    }
}

/// The `zfs` binary tests use: `$ZFSREPL_ZFS` (for the argv-logging shim) or
/// `zfs` from `PATH`.
#[must_use]
pub fn zfs_binary() -> OsString {
    std::env::var_os("ZFSREPL_ZFS").unwrap_or_else(|| "zfs".into())
}

/// Kills (SIGKILL) our own child `zfs <sub> ...` whose argv mentions
/// `needle`; true when one was found. Only processes this test started.
///
/// # Panics
/// When `/proc` cannot be read or `kill` cannot be run.
#[must_use]
pub fn kill_zfs_child(sub: &str, needle: &str) -> bool {
    kill_zfs_where(sub, needle, Some(std::process::id()))
}

/// Kills (SIGKILL) every `zfs <sub> ...` process on the machine whose argv
/// mentions `needle` (a test's unique pool name: the processes a daemon or
/// server under test started for it); true when one was found.
///
/// # Panics
/// When `/proc` cannot be read or `kill` cannot be run.
#[must_use]
pub fn kill_zfs_process(sub: &str, needle: &str) -> bool {
    kill_zfs_where(sub, needle, None)
}

fn kill_zfs_where(sub: &str, needle: &str, parent: Option<u32>) -> bool {
    let parent = parent.map(|p| p.to_string());
    let mut found = false;
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some(want) = &parent {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`: the comm may hold spaces.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid != Some(want.as_str()) {
                continue;
            }
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = cmd
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if argv.len() > 2
            && argv[0].ends_with("zfs")
            && argv[1] == sub
            && argv.iter().any(|a| a.contains(needle))
        {
            let st = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status()
                .expect("kill");
            found |= st.success();
        }
    }
    found
}

/// splitmix64: a small deterministic generator for seeded test runs (the
/// chaos runners pick faults and file contents with it, so a seed replays
/// a run).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (> 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `n` pseudo-random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// `zfs unmount DATASET`, retried for up to 5 s: zfs-fuse says "busy" for
/// a moment right after files were read. Whether it got unmounted.
#[must_use]
pub fn unmount_retrying(dataset: &DatasetName) -> bool {
    (0..50).any(|_| {
        let ok = Command::new(zfs_binary())
            .args(["unmount", dataset.as_str()])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    })
}
