//! [`ZfsCli`]: the ZFS traits implemented by running the `zfs` binary through
//! a [`Runner`], with argv built according to the host's [`Capabilities`].
//!
//! Every positional argument follows `--`, so a hold tag or property value
//! that starts with `-` is never read as an option.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use super::caps::Capabilities;
use super::parse::{self, LIST_PROPS, RESUME_TOKEN};
use super::runner::{Child, ChildIo, Output, Runner, display_argv};
use super::stderr::{classify, classify_ssh};
use super::{
    Dataset, DestroyOutcome, ListSpec, PropValue, RecvSink, RecvSpec, SendSource, SendSpec,
    SendStream, VersionName, ZfsError, ZfsErrorKind, ZfsRead, ZfsResult, ZfsStream, ZfsWrite,
};
use crate::name::{BookmarkName, DatasetName, EntityName, SnapshotName};

/// How many bytes of snapshot names one comma-batched destroy may carry;
/// well under Linux's 128 KiB per-argument limit (`MAX_ARG_STRLEN`).
const DESTROY_BATCH_BYTES: usize = 64 * 1024;

/// Keeps what matters of stderr for error messages: `zfs` puts the reason
/// first and may follow it with pages of usage or property tables, so keep
/// the head, and the tail when there is more.
fn tail(stderr: &str) -> String {
    const MAX: usize = 2048;
    let s = stderr.trim_end();
    // Usage text after the reason adds nothing to an error message.
    let s = s.find("\nusage:").map_or(s, |i| &s[..i]);
    if s.len() <= MAX {
        return s.to_owned();
    }
    let head_end = s
        .match_indices('\n')
        .nth(2)
        .map_or(MAX / 2, |(i, _)| i.min(MAX / 2));
    let mut cut = s.len() - MAX / 2;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    let mut h = head_end;
    while !s.is_char_boundary(h) {
        h -= 1;
    }
    format!("{}\n...\n{}", &s[..h], &s[cut..])
}

/// The `zfs` command layer over a runner.
#[derive(Debug)]
pub struct ZfsCli<R: Runner> {
    runner: R,
    zfs: OsString,
    caps: Capabilities,
    /// zstd level of receive streams over ssh (see
    /// [`ZfsCli::set_receive_compression`]).
    recv_zstd: Option<i32>,
}

impl<R: Runner> ZfsCli<R> {
    /// Probes the host's ZFS (at most three `zfs` processes, no pool
    /// touched) and returns a command layer that uses what it found.
    ///
    /// # Errors
    /// When `zfs` cannot be run, or the ZFS service is unavailable.
    pub fn probe(runner: R, zfs: impl Into<OsString>) -> ZfsResult<Self> {
        let zfs = zfs.into();
        let caps = Capabilities::probe(&runner, &zfs)?;
        Ok(Self {
            runner,
            zfs,
            caps,
            recv_zstd: None,
        })
    }

    /// Like [`ZfsCli::probe`], but probes each host once per `cache`.
    ///
    /// # Errors
    /// When `zfs` cannot be run, or the ZFS service is unavailable.
    pub fn probe_cached(
        runner: R,
        zfs: impl Into<OsString>,
        cache: &super::caps::CapsCache,
    ) -> ZfsResult<Self> {
        let zfs = zfs.into();
        let caps = cache.get_or_probe(&runner, &zfs)?;
        Ok(Self {
            runner,
            zfs,
            caps,
            recv_zstd: None,
        })
    }

    /// A command layer with known capabilities (no probe).
    pub fn with_capabilities(runner: R, zfs: impl Into<OsString>, caps: Capabilities) -> Self {
        Self {
            runner,
            zfs: zfs.into(),
            caps,
            recv_zstd: None,
        }
    }

    /// Compresses receive streams with zstd at `level` (in-process, on the
    /// bounded copy) and runs `zstd -dc | zfs receive ...` on the remote host
    /// (bare ssh: the remote needs only `zfs` and `zstd`, see
    /// [`ZfsCli::has_remote_zstd`]). `None` (the default) sends plain
    /// streams. Ignored for a local runner: a local pipe gains nothing.
    pub fn set_receive_compression(&mut self, level: Option<i32>) {
        self.recv_zstd = level;
    }

    /// Whether the host runs `zstd` (`zstd --version` succeeds).
    ///
    /// # Errors
    /// When the runner cannot start the probe at all (ssh missing).
    pub fn has_remote_zstd(&self) -> ZfsResult<bool> {
        let argv = os(["zstd", "--version"]);
        self.runner
            .run(&argv)
            .map(|o| o.status.success())
            .map_err(|e| self.spawn_error("probe zstd", &argv, &e))
    }

    /// The runner (for its invocation count and host).
    pub fn runner(&self) -> &R {
        &self.runner
    }

    fn argv(&self, args: Vec<OsString>) -> Vec<OsString> {
        let mut a = Vec::with_capacity(args.len() + 1);
        a.push(self.zfs.clone());
        a.extend(args);
        a
    }

    /// Builds the error for a failed or unstartable process.
    fn error(&self, op: &str, argv: &[OsString], status: Option<i32>, stderr: &str) -> ZfsError {
        let kind = if self.runner.host().label().is_some() {
            classify_ssh(stderr, status).unwrap_or_else(|| classify(stderr))
        } else {
            classify(stderr)
        };
        ZfsError {
            op: op.to_owned(),
            host: self.runner.host().label(),
            argv: argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            status,
            stderr: tail(stderr),
            kind,
        }
    }

    fn spawn_error(&self, op: &str, argv: &[OsString], e: &io::Error) -> ZfsError {
        let mut err = self.error(
            op,
            argv,
            None,
            &format!("{}: {e}", display_argv(&argv[..1])),
        );
        err.kind = ZfsErrorKind::Spawn;
        err
    }

    /// Runs `zfs ARGS` to completion; a non-zero exit becomes a classified
    /// [`ZfsError`]. Warnings on stderr with exit 0 are not errors.
    fn run(&self, op: &str, args: Vec<OsString>) -> ZfsResult<Output> {
        let argv = self.argv(args);
        let out = self
            .runner
            .run(&argv)
            .map_err(|e| self.spawn_error(op, &argv, &e))?;
        if out.status.success() {
            if !out.stderr.trim().is_empty() {
                tracing::debug!(op, stderr = %out.stderr.trim(), "zfs succeeded with stderr output");
            }
            Ok(out)
        } else {
            let err = self.error(op, &argv, out.status.code(), &out.stderr);
            Err(err)
        }
    }

    fn unsupported(&self, op: &str, what: &str) -> ZfsError {
        let mut e = ZfsError::new(
            op,
            ZfsErrorKind::Unsupported,
            format!("this ZFS ({}) has no {what}", self.caps.flavor),
        );
        e.host = self.runner.host().label();
        e
    }

    fn destroy_one_batch(&self, dataset: &str, snaps: &[&SnapshotName]) -> ZfsResult<()> {
        let joined = snaps.iter().map(|s| s.snap()).collect::<Vec<_>>().join(",");
        let arg = format!("{dataset}@{joined}");
        self.run(&format!("destroy {arg}"), os(["destroy", "--", &arg]))
            .map(drop)
    }
}

fn os<const N: usize>(a: [&str; N]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

fn props_args(flag: &str, props: &[(String, String)]) -> Vec<OsString> {
    props
        .iter()
        .flat_map(|(k, v)| [OsString::from(flag), OsString::from(format!("{k}={v}"))])
        .collect()
}

impl<R: Runner> ZfsRead for ZfsCli<R> {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn list(&self, spec: &ListSpec) -> ZfsResult<Vec<Dataset>> {
        let mut out = Vec::new();
        for root in &spec.roots {
            let op = format!("list {root}");
            let mut props: Vec<&str> = LIST_PROPS.to_vec();
            if self.caps.resumable {
                props.push(RESUME_TOKEN);
            }
            props.extend(spec.user_props.iter().map(String::as_str));
            let mut datasets = if self.caps.list_parsable {
                let mut types = vec!["filesystem", "volume"];
                if spec.snapshots {
                    types.push("snapshot");
                }
                if spec.bookmarks && self.caps.bookmarks {
                    types.push("bookmark");
                }
                let mut args = os([
                    "list",
                    "-Hp",
                    "-t",
                    &types.join(","),
                    "-o",
                    &props.join(","),
                ]);
                if spec.recursive {
                    args.push("-r".into());
                } else {
                    // Depth 1 from a filesystem gives its own snapshots and
                    // bookmarks, but also its children: filtered below.
                    args.extend(os(["-d", "1"]));
                }
                args.extend(os(["--", root.as_str()]));
                let o = self.run(&op, args)?;
                parse::parse_list_listing(&String::from_utf8_lossy(&o.stdout), &props, spec)
            } else {
                // zfs-fuse: `list` prints rounded numbers, `get -Hp` exact
                // ones; `get` has no `-t`, so snapshots come along anyway.
                let mut args = os(["get", "-Hp"]);
                args.push(if spec.recursive { "-r" } else { "-d" }.into());
                if !spec.recursive {
                    args.push("1".into());
                }
                args.extend(os(["-o", "name,property,value,source"]));
                args.push(props[1..].join(",").into());
                args.extend(os(["--", root.as_str()]));
                let o = self.run(&op, args)?;
                parse::parse_get_listing(&String::from_utf8_lossy(&o.stdout), spec)
            }
            .map_err(|e| self.error(&op, &[], None, &e.to_string()))?;
            if !spec.recursive {
                datasets.retain(|d| &d.name == root);
            }
            out.extend(datasets);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }

    fn get_props(
        &self,
        names: &[EntityName],
        props: &[&str],
        recursive: bool,
    ) -> ZfsResult<Vec<PropValue>> {
        if names.is_empty() || props.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = os(["get", "-Hp", "-o", "name,property,value,source"]);
        if recursive {
            args.push("-r".into());
        }
        args.push(props.join(",").into());
        args.push("--".into());
        args.extend(names.iter().map(|n| OsString::from(n.as_str())));
        let op = format!("get {}", props.join(","));
        let o = self.run(&op, args)?;
        parse::parse_get(&String::from_utf8_lossy(&o.stdout))
            .map_err(|e| self.error(&op, &[], None, &e.to_string()))
    }

    fn holds(&self, snapshot: &SnapshotName) -> ZfsResult<Vec<String>> {
        let op = format!("list holds of {snapshot}");
        if !self.caps.holds_list {
            return Err(self.unsupported(&op, "hold-tag listing (read userrefs instead)"));
        }
        let o = self.run(&op, os(["holds", "-H", "--", snapshot.as_str()]))?;
        // `NAME\tTAG\tTIMESTAMP`; the tag may contain spaces but not tabs.
        Ok(String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split('\t').nth(1).map(str::to_owned))
            .collect())
    }
}

impl<R: Runner> ZfsWrite for ZfsCli<R> {
    fn create(
        &self,
        name: &DatasetName,
        props: &[(String, String)],
        parents: bool,
    ) -> ZfsResult<()> {
        let mut args = os(["create"]);
        if parents {
            args.push("-p".into());
        }
        args.extend(props_args("-o", props));
        args.extend(os(["--", name.as_str()]));
        self.run(&format!("create {name}"), args).map(drop)
    }

    fn snapshot(&self, snapshots: &[SnapshotName], props: &[(String, String)]) -> ZfsResult<()> {
        if snapshots.is_empty() {
            return Ok(());
        }
        if self.caps.multi_snapshot && snapshots.len() > 1 {
            // One atomic call per pool, pools in first-seen order.
            let mut pools: Vec<&str> = Vec::new();
            for s in snapshots {
                let p = s.dataset_str().split('/').next().unwrap_or_default();
                if !pools.contains(&p) {
                    pools.push(p);
                }
            }
            for pool in pools {
                let group: Vec<&SnapshotName> = snapshots
                    .iter()
                    .filter(|s| s.dataset_str().split('/').next() == Some(pool))
                    .collect();
                let mut args = os(["snapshot"]);
                args.extend(props_args("-o", props));
                args.push("--".into());
                args.extend(group.iter().map(|s| OsString::from(s.as_str())));
                let op = format!("snapshot {} (atomic, {} datasets)", group[0], group.len());
                self.run(&op, args)?;
            }
            return Ok(());
        }
        for s in snapshots {
            let mut args = os(["snapshot"]);
            args.extend(props_args("-o", props));
            args.extend(os(["--", s.as_str()]));
            self.run(&format!("snapshot {s}"), args)?;
        }
        Ok(())
    }

    fn snapshot_recursive(
        &self,
        snapshot: &SnapshotName,
        props: &[(String, String)],
    ) -> ZfsResult<()> {
        let mut args = os(["snapshot", "-r"]);
        args.extend(props_args("-o", props));
        args.extend(os(["--", snapshot.as_str()]));
        self.run(&format!("snapshot -r {snapshot}"), args).map(drop)
    }

    fn destroy_snapshot_recursive(&self, snapshot: &SnapshotName) -> ZfsResult<()> {
        self.run(
            &format!("destroy -r {snapshot}"),
            os(["destroy", "-r", "--", snapshot.as_str()]),
        )
        .map(drop)
    }

    fn destroy_snapshots(&self, snapshots: &[SnapshotName]) -> Vec<DestroyOutcome> {
        let one = |s: &SnapshotName| -> DestroyOutcome {
            let r = self
                .run(&format!("destroy {s}"), os(["destroy", "--", s.as_str()]))
                .map(drop);
            (s.clone(), r)
        };
        if !self.caps.comma_destroy {
            return snapshots.iter().map(one).collect();
        }
        // Group by dataset, preserving first-seen order, then batch within
        // the argument size limit.
        let mut groups: Vec<(&str, Vec<&SnapshotName>)> = Vec::new();
        for s in snapshots {
            match groups.iter_mut().find(|(d, _)| *d == s.dataset_str()) {
                Some((_, v)) => v.push(s),
                None => groups.push((s.dataset_str(), vec![s])),
            }
        }
        let mut out = Vec::with_capacity(snapshots.len());
        for (ds, snaps) in groups {
            let mut start = 0;
            while start < snaps.len() {
                let mut end = start;
                let mut len = ds.len() + 1;
                while end < snaps.len()
                    && (end == start || len + snaps[end].snap().len() < DESTROY_BATCH_BYTES)
                {
                    len += snaps[end].snap().len() + 1;
                    end += 1;
                }
                let batch = &snaps[start..end];
                if batch.len() == 1 {
                    out.push(one(batch[0]));
                } else if self.destroy_one_batch(ds, batch).is_ok() {
                    out.extend(batch.iter().map(|s| ((*s).clone(), Ok(()))));
                } else {
                    // OpenZFS destroys a comma batch all-or-nothing; find
                    // which ones fail, and why, one at a time.
                    out.extend(batch.iter().map(|s| one(s)));
                }
                start = end;
            }
        }
        out
    }

    fn destroy_dataset(&self, name: &DatasetName, recursive: bool) -> ZfsResult<()> {
        let mut args = os(["destroy"]);
        if recursive {
            args.push("-r".into());
        }
        args.extend(os(["--", name.as_str()]));
        self.run(&format!("destroy {name}"), args).map(drop)
    }

    fn hold(&self, tag: &str, snapshots: &[SnapshotName]) -> ZfsResult<()> {
        if !self.caps.holds {
            return Err(self.unsupported("hold", "user holds"));
        }
        let mut args = os(["hold", "--", tag]);
        args.extend(snapshots.iter().map(|s| OsString::from(s.as_str())));
        self.run(&format!("hold {tag:?}"), args).map(drop)
    }

    fn release(&self, tag: &str, snapshots: &[SnapshotName]) -> ZfsResult<()> {
        if !self.caps.holds {
            return Err(self.unsupported("release", "user holds"));
        }
        let mut args = os(["release", "--", tag]);
        args.extend(snapshots.iter().map(|s| OsString::from(s.as_str())));
        self.run(&format!("release {tag:?}"), args).map(drop)
    }

    fn bookmark(&self, snapshot: &SnapshotName, bookmark: &BookmarkName) -> ZfsResult<()> {
        let op = format!("bookmark {snapshot} as {bookmark}");
        if !self.caps.bookmarks {
            return Err(self.unsupported(&op, "bookmarks"));
        }
        self.run(
            &op,
            os(["bookmark", "--", snapshot.as_str(), bookmark.as_str()]),
        )
        .map(drop)
    }

    fn destroy_bookmark(&self, bookmark: &BookmarkName) -> ZfsResult<()> {
        let op = format!("destroy {bookmark}");
        if !self.caps.bookmarks {
            return Err(self.unsupported(&op, "bookmarks"));
        }
        self.run(&op, os(["destroy", "--", bookmark.as_str()]))
            .map(drop)
    }

    fn clone_snapshot(
        &self,
        snapshot: &SnapshotName,
        target: &DatasetName,
        props: &[(String, String)],
    ) -> ZfsResult<()> {
        let mut args = os(["clone"]);
        args.extend(props_args("-o", props));
        args.extend(os(["--", snapshot.as_str(), target.as_str()]));
        self.run(&format!("clone {snapshot} to {target}"), args)
            .map(drop)
    }

    fn promote(&self, clone: &DatasetName) -> ZfsResult<()> {
        // No `--`: the promote and set of zfs-fuse (and older OpenZFS) take no
        // options and would read it as one; dataset names start with a letter.
        self.run(&format!("promote {clone}"), os(["promote", clone.as_str()]))
            .map(drop)
    }

    fn rename(&self, from: &EntityName, to: &EntityName) -> ZfsResult<()> {
        self.run(
            &format!("rename {from} to {to}"),
            os(["rename", "--", from.as_str(), to.as_str()]),
        )
        .map(drop)
    }

    fn rollback(&self, snapshot: &SnapshotName, destroy_newer: bool) -> ZfsResult<()> {
        let mut args = os(["rollback"]);
        if destroy_newer {
            args.push("-r".into());
        }
        args.extend(os(["--", snapshot.as_str()]));
        self.run(&format!("rollback to {snapshot}"), args).map(drop)
    }

    fn set_props(&self, name: &EntityName, props: &[(String, String)]) -> ZfsResult<()> {
        // One property per call: zfs-fuse's `set` takes exactly one.
        for (k, v) in props {
            self.run(
                &format!("set {k} on {name}"),
                os(["set", &format!("{k}={v}"), name.as_str()]),
            )?;
        }
        Ok(())
    }

    fn receive_abort(&self, target: &DatasetName) -> ZfsResult<()> {
        let op = format!("abort partial receive into {target}");
        if !self.caps.resumable {
            return Err(self.unsupported(&op, "resumable receive"));
        }
        self.run(&op, os(["receive", "-A", "--", target.as_str()]))
            .map(drop)
    }

    fn inherit(&self, name: &EntityName, property: &str) -> ZfsResult<()> {
        self.run(
            &format!("inherit {property} on {name}"),
            os(["inherit", "--", property, name.as_str()]),
        )
        .map(drop)
    }
}

/// A running `zfs send` (local or remote).
#[derive(Debug)]
pub struct CliSendStream {
    child: Child,
    op: String,
    host: Option<String>,
}

/// A running `zfs receive` (local or remote).
#[derive(Debug)]
pub struct CliRecvSink {
    child: Child,
    op: String,
    host: Option<String>,
    remote: bool,
    /// The compressor in front of the child's stdin, for `zstd -dc | zfs
    /// receive` on a remote host.
    zstd: Option<ZstdStdin>,
}

/// A zstd encoder writing into a child's stdin.
struct ZstdStdin(zstd::stream::write::Encoder<'static, std::process::ChildStdin>);

impl std::fmt::Debug for ZstdStdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ZstdStdin")
    }
}

fn finish_child(child: Child, op: String, host: Option<String>, remote: bool) -> ZfsResult<()> {
    let argv: Vec<String> = child
        .argv()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let fin = child
        .wait()
        .map_err(|e| ZfsError::new(op.clone(), ZfsErrorKind::Other, e.to_string()))?;
    if fin.status.success() {
        return Ok(());
    }
    let status = fin.status.code();
    let kind = if status.is_none() {
        ZfsErrorKind::Killed
    } else if remote {
        classify_ssh(&fin.stderr, status).unwrap_or_else(|| classify(&fin.stderr))
    } else {
        classify(&fin.stderr)
    };
    Err(ZfsError {
        op,
        host,
        argv,
        status,
        stderr: tail(&fin.stderr),
        kind,
    })
}

impl CliSendStream {
    /// Wraps a running child whose stdout is the stream (for test doubles
    /// that run other programs as senders).
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn from_child(child: Child, op: String) -> Self {
        Self {
            child,
            op,
            host: None,
        }
    }
}

impl CliRecvSink {
    /// Wraps a running local child whose stdin is the sink.
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn from_child(child: Child, op: String) -> Self {
        Self {
            child,
            op,
            host: None,
            remote: false,
            zstd: None,
        }
    }
}

impl Read for CliSendStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.child.stdout.as_mut() {
            Some(s) => s.read(buf),
            None => Ok(0),
        }
    }
}

impl SendStream for CliSendStream {
    fn raw_fd(&self) -> Option<RawFd> {
        self.child.stdout.as_ref().map(AsRawFd::as_raw_fd)
    }

    fn finish(self) -> ZfsResult<()> {
        let remote = self.host.is_some();
        finish_child(self.child, self.op, self.host, remote)
    }

    fn abort(self) {
        self.child.kill();
    }
}

impl Write for CliRecvSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(z) = self.zstd.as_mut() {
            return z.0.write(buf);
        }
        match self.child.stdin.as_mut() {
            Some(s) => s.write(buf),
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(z) = self.zstd.as_mut() {
            return z.0.flush();
        }
        match self.child.stdin.as_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

impl RecvSink for CliRecvSink {
    fn raw_fd(&self) -> Option<RawFd> {
        // A compressed stream goes through user space, not splice.
        if self.zstd.is_some() {
            return None;
        }
        self.child.stdin.as_ref().map(AsRawFd::as_raw_fd)
    }

    fn finish(mut self) -> ZfsResult<()> {
        if let Some(z) = self.zstd.take() {
            // The end frame, then EOF (dropping the stdin).
            if let Err(e) = z.0.finish() {
                let err = ZfsError::new(
                    self.op.clone(),
                    ZfsErrorKind::Transport,
                    format!("compressing the stream: {e}"),
                );
                // The receiver's own failure says more, when there is one.
                return finish_child(self.child, self.op, self.host, self.remote).and(Err(err));
            }
        }
        finish_child(self.child, self.op, self.host, self.remote)
    }

    fn abort(self) {
        self.child.kill();
    }
}

impl<R: Runner> ZfsCli<R> {
    /// The argv (after the `zfs` binary) of a send, checked against the
    /// capabilities.
    ///
    /// # Errors
    /// [`ZfsErrorKind::Unsupported`] for a flag or source this ZFS lacks.
    pub fn send_args(&self, spec: &SendSpec) -> ZfsResult<Vec<OsString>> {
        let c = &self.caps;
        let f = &spec.flags;
        let mut a = os(["send"]);
        let checks = [
            (f.replicate, true, "-R"),
            (f.props, true, "-p"),
            (f.dedup, true, "-D"),
            (f.compressed, c.send_compressed, "-c"),
            (f.large_blocks, c.send_large_blocks, "-L"),
            (f.embedded, c.send_embedded, "-e"),
            (f.raw, c.send_raw, "-w"),
        ];
        for (want, have, flag) in checks {
            if want {
                if !have {
                    return Err(self.unsupported("send", &format!("`zfs send {flag}`")));
                }
                a.push(flag.into());
            }
        }
        match &spec.source {
            SendSource::Full { snapshot } => a.extend(os(["--", snapshot.as_str()])),
            SendSource::Incremental {
                from,
                to,
                intermediates,
            } => {
                if matches!(from, VersionName::Bookmark(_)) && !c.bookmarks {
                    return Err(self.unsupported("send", "bookmarks"));
                }
                a.push(if *intermediates { "-I" } else { "-i" }.into());
                a.extend(os([from.as_str(), "--", to.as_str()]));
            }
            SendSource::Resume { token } => {
                if !c.resumable {
                    return Err(self.unsupported("send", "resumable send (`zfs send -t`)"));
                }
                a.extend(os(["-t", token]));
            }
        }
        Ok(a)
    }

    /// The argv (after the `zfs` binary) of a receive, checked against the
    /// capabilities.
    ///
    /// # Errors
    /// [`ZfsErrorKind::Unsupported`] for a flag this ZFS lacks, or
    /// [`ZfsErrorKind::InvalidArgument`] without a target.
    pub fn recv_args(&self, spec: &RecvSpec) -> ZfsResult<Vec<OsString>> {
        let c = &self.caps;
        let target = spec.target.as_ref().ok_or_else(|| {
            ZfsError::new(
                "receive",
                ZfsErrorKind::InvalidArgument,
                "no target dataset",
            )
        })?;
        let mut a = os(["receive"]);
        if spec.force {
            a.push("-F".into());
        }
        if spec.unmounted {
            if !c.recv_unmounted {
                return Err(self.unsupported("receive", "`zfs receive -u`"));
            }
            a.push("-u".into());
        }
        if spec.resumable {
            if !c.resumable {
                return Err(self.unsupported("receive", "resumable receive (`-s`)"));
            }
            a.push("-s".into());
        }
        if spec.discard_path {
            a.push("-d".into());
        }
        if !spec.set_props.is_empty() || !spec.exclude_props.is_empty() {
            if !c.recv_props {
                return Err(self.unsupported("receive", "`zfs receive -o/-x`"));
            }
            a.extend(props_args("-o", &spec.set_props));
            for p in &spec.exclude_props {
                a.extend(os(["-x", p]));
            }
        }
        a.extend(os(["--", target.as_str()]));
        Ok(a)
    }
}

impl<R: Runner> ZfsStream for ZfsCli<R> {
    type Send = CliSendStream;
    type Recv = CliRecvSink;

    fn send(&self, spec: &SendSpec) -> ZfsResult<CliSendStream> {
        let argv = self.argv(self.send_args(spec)?);
        let op = format!("send {}", display_argv(&argv[2..]));
        let child = self
            .runner
            .spawn(&argv, ChildIo::Stdout)
            .map_err(|e| self.spawn_error(&op, &argv, &e))?;
        Ok(CliSendStream {
            child,
            op,
            host: self.runner.host().label(),
        })
    }

    fn send_estimate(&self, spec: &SendSpec) -> ZfsResult<Option<u64>> {
        if !self.caps.send_estimate {
            return Ok(None);
        }
        let mut args = self.send_args(spec)?;
        args.insert(1, "-nvP".into());
        let o = self.run("send estimate", args)?;
        // OpenZFS prints the dry run on stdout (2.x) or stderr (0.x).
        let text = format!("{}\n{}", String::from_utf8_lossy(&o.stdout), o.stderr);
        Ok(parse_send_estimate(&text))
    }

    fn receive(&self, spec: &RecvSpec) -> ZfsResult<CliRecvSink> {
        let argv = self.argv(self.recv_args(spec)?);
        let op = format!("receive {}", display_argv(&argv[2..]));
        let host = self.runner.host().label();
        let level = self.recv_zstd.filter(|_| host.is_some());
        let mut child = match level {
            None => self.runner.spawn(&argv, ChildIo::Stdin),
            Some(_) => self
                .runner
                .spawn_piped(&os(["zstd", "-dcq"]), &argv, ChildIo::Stdin),
        }
        .map_err(|e| self.spawn_error(&op, &argv, &e))?;
        let zstd = match (level, child.stdin.take()) {
            (Some(level), Some(stdin)) => {
                let mut enc = zstd::stream::write::Encoder::new(stdin, level)
                    .map_err(|e| self.spawn_error(&op, &argv, &e))?;
                let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
                // Without the zstdmt feature this fails; one thread then.
                let _ = enc.multithread(u32::try_from(workers).unwrap_or(1));
                Some(ZstdStdin(enc))
            }
            (_, stdin) => {
                child.stdin = stdin;
                None
            }
        };
        Ok(CliRecvSink {
            child,
            op,
            remote: host.is_some(),
            host,
            zstd,
        })
    }
}

/// The total of a `zfs send -nvP` dry run: its `size\t<bytes>` line.
#[must_use]
pub fn parse_send_estimate(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("size\t"))
        .find_map(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zfs::runner::ScriptedRunner;

    #[test]
    fn send_estimate_reads_the_size_line() {
        // OpenZFS 2.x `zfs send -nvP -i @1 zroot/test/a@2` and a resumed one.
        assert_eq!(
            parse_send_estimate("incremental\t1\tzroot/test/a@2\t10511856\nsize\t10511856\n"),
            Some(10_511_856)
        );
        assert_eq!(
            parse_send_estimate(
                "resume token contents:\nnvlist version: 0\n\tobject = 0x2\nfull\tzroot/test/a@1\t5389768\n"
            ),
            None
        );
        let r = ScriptedRunner::new();
        r.on("-nvP", 0, "full\tp/a@s\t4096\nsize\t4096\n", "");
        let zfs = ZfsCli::with_capabilities(&r, "zfs", Capabilities::openzfs());
        let spec = SendSpec {
            source: SendSource::Full {
                snapshot: SnapshotName::parse("p/a@s").unwrap(),
            },
            flags: crate::zfs::SendFlags::default(),
        };
        assert_eq!(zfs.send_estimate(&spec).unwrap(), Some(4096));
        assert_eq!(r.calls()[0], ["send", "-nvP", "--", "p/a@s"]);
        let fuse = ZfsCli::with_capabilities(&r, "zfs", Capabilities::zfs_fuse());
        assert_eq!(fuse.send_estimate(&spec).unwrap(), None);
        assert_eq!(r.invocations(), 1);
    }

    fn snap(s: &str) -> SnapshotName {
        SnapshotName::parse(s).unwrap()
    }

    #[test]
    fn multi_snapshot_is_one_call_per_pool() {
        let r = ScriptedRunner::new();
        let zfs = ZfsCli::with_capabilities(&r, "zfs", Capabilities::openzfs());
        let snaps = [snap("tank/a@s"), snap("rpool/b@s"), snap("tank/c d@s")];
        zfs.snapshot(&snaps, &[]).unwrap();
        assert_eq!(
            r.calls(),
            [
                vec!["snapshot", "--", "tank/a@s", "tank/c d@s"],
                vec!["snapshot", "--", "rpool/b@s"],
            ]
        );
    }

    #[test]
    fn comma_destroy_falls_back_to_one_by_one_on_failure() {
        let r = ScriptedRunner::new();
        r.on(
            "tank/a@1,2,3",
            1,
            "",
            "cannot destroy snapshot tank/a@2: dataset is busy\n",
        );
        r.on(
            "-- tank/a@2",
            1,
            "",
            "cannot destroy snapshot tank/a@2: dataset is busy\n",
        );
        let zfs = ZfsCli::with_capabilities(&r, "zfs", Capabilities::openzfs());
        let out = zfs.destroy_snapshots(&[
            snap("tank/a@1"),
            snap("tank/a@2"),
            snap("tank/a@3"),
            snap("tank/b@9"),
        ]);
        let ok: Vec<bool> = out.iter().map(|(_, r)| r.is_ok()).collect();
        assert_eq!(ok, [true, false, true, true]);
        assert_eq!(out[1].1.as_ref().unwrap_err().kind, ZfsErrorKind::Busy);
        assert_eq!(r.calls()[0], ["destroy", "--", "tank/a@1,2,3"]);
        assert_eq!(r.invocations(), 5, "batch, three singles, and tank/b");
    }

    #[test]
    fn listing_uses_list_p_on_openzfs_and_get_on_zfs_fuse() {
        let r = ScriptedRunner::new();
        let root = DatasetName::parse("tank/x y").unwrap();
        let zfs = ZfsCli::with_capabilities(&r, "zfs", Capabilities::openzfs());
        zfs.list(&ListSpec::all(vec![root.clone()])).unwrap();
        let fuse = ZfsCli::with_capabilities(&r, "zfs", Capabilities::zfs_fuse());
        fuse.list(&ListSpec::all(vec![root])).unwrap();
        let c = r.calls();
        assert_eq!(
            c[0][..4],
            ["list", "-Hp", "-t", "filesystem,volume,snapshot,bookmark"]
        );
        assert!(
            c[0].contains(&"receive_resume_token".to_string())
                || c[0].iter().any(|a| a.contains("receive_resume_token"))
        );
        assert_eq!(c[1][..3], ["get", "-Hp", "-r"]);
        assert_eq!(c[1].last().unwrap(), "tank/x y");
    }

    #[test]
    fn a_failure_keeps_the_reason_not_the_usage() {
        let r = ScriptedRunner::new();
        r.on("promote", 2, "", "cannot promote 'tank/a': not a cloned filesystem\nusage:\n\tpromote <clone-filesystem>\n");
        let zfs = ZfsCli::with_capabilities(&r, "zfs", Capabilities::zfs_fuse());
        let e = zfs
            .promote(&DatasetName::parse("tank/a").unwrap())
            .unwrap_err();
        assert_eq!(e.stderr, "cannot promote 'tank/a': not a cloned filesystem");
        assert_eq!(e.status, Some(2));
        assert!(e.to_string().starts_with("cannot promote tank/a: "), "{e}");
    }
}
