//! What the installed ZFS can do, probed once per host and cached.
//!
//! The probe costs at most three `zfs` processes and touches no pool:
//! 1. `zfs` with no arguments prints its usage, which names the commands
//!    (`bookmark`, `holds`, `version`) and most flags (`send [-DLPbcehnpsvw]`,
//!    `receive [-vMnsFhu]`, `list [-Hp]`, `destroy [-dnpRrv]`, the
//!    multi-snapshot `snapshot ... <fs>@<snap> ...` and comma-destroy
//!    `<snap>[%<snap>][,...]` forms);
//! 2. `zfs version`, where the usage lists it, for the version string;
//! 3. `zfs receive -u` with an empty stream and a name that cannot exist, to
//!    learn whether `-u` is accepted (zfs-fuse accepts it without listing it).

use serde::{Deserialize, Serialize};

/// The features of one host's ZFS that change which commands we build.
///
/// Every planner and executor consults these instead of assuming: a missing
/// capability means a documented fallback (one destroy per snapshot, `get -Hp`
/// instead of `list -p`, userrefs instead of hold tags), shown in plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools)]
pub struct Capabilities {
    /// The implementation and version, when it says (`zfs-2.2.2`,
    /// `zfs-kmod-2.2.2`); `None` when `zfs version` does not exist.
    pub version: Option<String>,
    /// A short label for humans: `openzfs`, `zfs-fuse`, `unknown`.
    pub flavor: String,
    /// `zfs list -p` (exact numbers from `list`); without it we list with
    /// `zfs get -Hp -r`.
    pub list_parsable: bool,
    /// `zfs list -t bookmark` / `zfs bookmark`.
    pub bookmarks: bool,
    /// `zfs hold` / `zfs release`.
    pub holds: bool,
    /// `zfs holds` can list tags (zfs-fuse needs a missing Python helper).
    pub holds_list: bool,
    /// Several snapshots in one atomic `zfs snapshot a@x b@x`.
    pub multi_snapshot: bool,
    /// `zfs destroy fs@a,b,c`.
    pub comma_destroy: bool,
    /// `zfs destroy -n`.
    pub destroy_dry_run: bool,
    /// `zfs send -c`.
    pub send_compressed: bool,
    /// `zfs send -L`.
    pub send_large_blocks: bool,
    /// `zfs send -e`.
    pub send_embedded: bool,
    /// `zfs send -w`.
    pub send_raw: bool,
    /// `zfs send -n -v -P` size estimates.
    pub send_estimate: bool,
    /// `zfs send -t TOKEN` and `zfs receive -s`.
    pub resumable: bool,
    /// `zfs receive -u`.
    pub recv_unmounted: bool,
    /// `zfs receive -o` / `-x`.
    pub recv_props: bool,
}

impl Capabilities {
    /// Modern OpenZFS (2.x): everything.
    #[must_use]
    pub fn openzfs() -> Self {
        Self {
            version: Some("zfs-2.2.0 (model)".into()),
            flavor: "openzfs".into(),
            list_parsable: true,
            bookmarks: true,
            holds: true,
            holds_list: true,
            multi_snapshot: true,
            comma_destroy: true,
            destroy_dry_run: true,
            send_compressed: true,
            send_large_blocks: true,
            send_embedded: true,
            send_raw: true,
            send_estimate: true,
            resumable: true,
            recv_unmounted: true,
            recv_props: true,
        }
    }

    /// Debian's zfs-fuse 0.7 (pool version 23), as verified on real pools.
    #[must_use]
    pub fn zfs_fuse() -> Self {
        Self {
            version: None,
            flavor: "zfs-fuse".into(),
            list_parsable: false,
            bookmarks: false,
            holds: true,
            holds_list: false,
            multi_snapshot: false,
            comma_destroy: false,
            destroy_dry_run: false,
            send_compressed: false,
            send_large_blocks: false,
            send_embedded: false,
            send_raw: false,
            send_estimate: false,
            resumable: false,
            recv_unmounted: true,
            recv_props: false,
        }
    }
}

/// The usage text of one `zfs` subcommand: its lines and continuation lines.
fn command_usage<'a>(usage: &'a str, cmd: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in usage.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let first = trimmed.split_whitespace().next().unwrap_or("");
        // `snapshot|snap [-r] ...` names aliases with `|`.
        if indent > 0 && first.split('|').any(|w| w == cmd) {
            inside = true;
            out.push(trimmed);
        } else if inside && indent > 1 && line.starts_with("\t    ") {
            out.push(trimmed);
        } else {
            inside = false;
        }
    }
    out
}

/// Whether a subcommand's usage shows the single-letter flag `flag`, in a
/// `[-abc]` group or as a bare `-x`.
fn has_flag(lines: &[&str], flag: char) -> bool {
    lines.iter().any(|l| {
        l.split(|c: char| c.is_whitespace() || c == '|')
            .map(|t| t.trim_start_matches('[').trim_end_matches(']'))
            .any(|t| {
                t.strip_prefix('-').is_some_and(|f| {
                    !f.starts_with('-')
                        && f.chars().all(|c| c.is_ascii_alphabetic())
                        && f.contains(flag)
                })
            })
    })
}

impl Capabilities {
    /// Derives capabilities from `zfs` usage text and, where there is one,
    /// the `zfs version` output. `recv_u_accepted` is the result of the
    /// `receive -u` trial (zfs-fuse accepts `-u` without listing it).
    #[must_use]
    pub fn from_usage(usage: &str, version: Option<&str>, recv_u_accepted: bool) -> Self {
        let send = command_usage(usage, "send");
        let recv = command_usage(usage, "receive");
        let list = command_usage(usage, "list");
        let destroy = command_usage(usage, "destroy");
        let snapshot = command_usage(usage, "snapshot");
        let holds = command_usage(usage, "holds");
        let has = |cmd: &str| !command_usage(usage, cmd).is_empty();
        let version = version
            .and_then(|v| v.lines().next())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        let flavor = if version.as_deref().is_some_and(|v| v.starts_with("zfs-")) {
            "openzfs"
        } else if has("bookmark") {
            "openzfs (no version command)"
        } else {
            "legacy (zfs-fuse or pre-0.6.4)"
        };
        Self {
            flavor: flavor.into(),
            version,
            list_parsable: has_flag(&list, 'p'),
            bookmarks: has("bookmark"),
            holds: has("hold"),
            // zfs-fuse lists `holds [-r]` but its implementation needs a
            // missing Python helper; OpenZFS's `holds` has `-H`.
            holds_list: has_flag(&holds, 'H'),
            multi_snapshot: snapshot.iter().any(|l| {
                l.replace("[-o property=value] ...", "")
                    .trim_end()
                    .ends_with("...")
            }),
            comma_destroy: destroy.iter().any(|l| l.contains("[,...]")),
            destroy_dry_run: has_flag(&destroy, 'n'),
            send_compressed: has_flag(&send, 'c'),
            send_large_blocks: has_flag(&send, 'L'),
            send_embedded: has_flag(&send, 'e'),
            send_raw: has_flag(&send, 'w'),
            send_estimate: has_flag(&send, 'n') && has_flag(&send, 'P'),
            resumable: has_flag(&recv, 's') && has_flag(&send, 't'),
            recv_unmounted: has_flag(&recv, 'u') || recv_u_accepted,
            recv_props: has_flag(&recv, 'o') && has_flag(&recv, 'x'),
        }
    }

    /// Probes a host: `zfs` usage, `zfs version` where it exists, and a
    /// `receive -u` trial where the usage does not list `-u`.
    ///
    /// # Errors
    /// When `zfs` cannot be started, or says the ZFS service is down.
    pub fn probe<R: super::Runner + ?Sized>(
        runner: &R,
        zfs: &std::ffi::OsStr,
    ) -> super::ZfsResult<Self> {
        use super::{ZfsError, ZfsErrorKind};
        let host = runner.host().label();
        let fail = |kind, msg: String| {
            let mut e = ZfsError::new("probe ZFS capabilities", kind, msg);
            e.host.clone_from(&host);
            e
        };
        let run = |args: &[&str]| {
            let mut argv = vec![zfs.to_owned()];
            argv.extend(args.iter().map(std::ffi::OsString::from));
            runner.run(&argv).map_err(|e| {
                fail(
                    ZfsErrorKind::Spawn,
                    format!("{}: {e}", zfs.to_string_lossy()),
                )
            })
        };
        // `zfs` alone prints usage on stderr (exit 2); `zfs -?` on stdout on
        // some versions: read both.
        let out = run(&[])?;
        let usage = format!("{}{}", String::from_utf8_lossy(&out.stdout), out.stderr);
        if !usage.contains("usage") {
            let kind = super::stderr::classify(&usage);
            let kind = if kind == ZfsErrorKind::Other {
                ZfsErrorKind::Unsupported
            } else {
                kind
            };
            return Err(fail(
                kind,
                format!("unexpected output from `zfs`: {}", usage.trim()),
            ));
        }
        let version = if command_usage(&usage, "version").is_empty() {
            None
        } else {
            let v = run(&["version"])?;
            v.status
                .success()
                .then(|| String::from_utf8_lossy(&v.stdout).into_owned())
        };
        let recv_u = if has_flag(&command_usage(&usage, "receive"), 'u') {
            true
        } else {
            // An empty stream into a name that cannot exist: `-u` is either
            // rejected as an option or the receive fails reading the stream.
            let t = run(&["receive", "-u", "--", "zfsrepl_probe_nonexistent/x"])?;
            !(t.stderr.contains("invalid option") || t.stderr.contains("illegal option"))
        };
        // The daemon may be down even though usage printed: check with a
        // cheap listing that touches no dataset.
        let l = run(&["list", "-H", "-o", "name", "-d", "0"])?;
        if !l.status.success() {
            let kind = super::stderr::classify(&l.stderr);
            if kind == ZfsErrorKind::ServiceUnavailable {
                return Err(fail(kind, l.stderr.trim().to_owned()));
            }
        }
        Ok(Self::from_usage(&usage, version.as_deref(), recv_u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `zfs` usage from Debian's zfs-fuse 0.7.0 (captured).
    pub(crate) const FUSE_USAGE: &str = include_str!("testdata/usage-zfs-fuse.txt");
    /// `zfs` usage from OpenZFS 2.2 (`cmd/zfs/zfs_main.c`, `get_usage`).
    pub(crate) const OPENZFS_USAGE: &str = include_str!("testdata/usage-openzfs-2.2.txt");

    #[test]
    fn zfs_fuse_usage_gives_zfs_fuse_caps() {
        let c = Capabilities::from_usage(FUSE_USAGE, None, true);
        let mut want = Capabilities::zfs_fuse();
        want.flavor = c.flavor.clone();
        assert_eq!(c, want);
        assert!(c.flavor.starts_with("legacy"));
    }

    #[test]
    fn openzfs_usage_gives_everything() {
        let c = Capabilities::from_usage(
            OPENZFS_USAGE,
            Some("zfs-2.2.2-1\nzfs-kmod-2.2.2-1\n"),
            false,
        );
        let mut want = Capabilities::openzfs();
        want.version = Some("zfs-2.2.2-1".into());
        assert_eq!(c, want);
    }
}

/// Probed capabilities per host, so that a process talking to the same host
/// many times (the daemon, a recursive send) probes it once.
///
/// Keyed by the host and the `zfs` binary path; owned by the caller (no
/// process-wide state).
#[derive(Debug, Default)]
pub struct CapsCache {
    entries:
        std::sync::Mutex<std::collections::HashMap<(String, std::ffi::OsString), Capabilities>>,
}

impl CapsCache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached capabilities of the runner's host, probing on first use.
    ///
    /// # Errors
    /// The probe's failure (not cached: the next call probes again).
    pub fn get_or_probe<R: super::Runner + ?Sized>(
        &self,
        runner: &R,
        zfs: &std::ffi::OsStr,
    ) -> super::ZfsResult<Capabilities> {
        let key = (runner.host().to_string(), zfs.to_owned());
        if let Some(c) = self.lock().get(&key) {
            return Ok(c.clone());
        }
        let caps = Capabilities::probe(runner, zfs)?;
        self.lock().insert(key, caps.clone());
        Ok(caps)
    }

    /// Forgets a host (after a ZFS upgrade, say).
    pub fn invalidate(&self, host: &super::Host) {
        let h = host.to_string();
        self.lock().retain(|(k, _), _| *k != h);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<(String, std::ffi::OsString), Capabilities>,
    > {
        // A panic while holding the lock cannot leave a half-written entry.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
