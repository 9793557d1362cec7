//! Classifies the stderr of a failed `zfs` or `zpool` command, and of the
//! `ssh` in front of a remote one, into a [`ZfsErrorKind`].
//!
//! Callers match on the kind, never on the text: this module is the one place
//! that knows what zfs-fuse 0.7.0 and OpenZFS 2.x print.
//!
//! # How a message is read
//!
//! 1. Each line is trimmed (ssh ends its lines with `\r\n`), lowercased, and
//!    its whitespace collapsed; the lines are then joined with single spaces,
//!    because libzfs wraps its reasons (`does not\nmatch incremental source`).
//! 2. Quoted names (`'tank/a@s1'`) are blanked to `''`, so that a dataset name
//!    (names may contain spaces) never matches a reason. Apostrophes inside
//!    words (`doesn't`, `it's`) are kept.
//! 3. When a line starts with `usage:`, zfs rejected its command line: only the
//!    lines before it count, and the usage text after it (whose property table
//!    mentions `readonly`, `quota`, ...) is ignored. `invalid option`,
//!    `unrecognized command`, `invalid type` and `bad property list` mean this
//!    zfs lacks what we asked for ([`ZfsErrorKind::Unsupported`]); any other
//!    usage error is [`ZfsErrorKind::InvalidArgument`].
//! 4. Otherwise a static table of `(needle, kind)` pairs is scanned in order
//!    and the first needle found wins, so the most specific messages come
//!    first. Position in the text does not matter: in `cannot X 'name':
//!    reason` lines the reason decides, and trailing lists of dataset names or
//!    hints (`use '-r' to ...`) hold no needle. One rule needs more than a
//!    needle: `cannot restore to NAME: destination already exists` is a
//!    [`ZfsErrorKind::GuidMismatch`] when `NAME` is a snapshot (a snapshot of
//!    that name exists with another guid) and [`ZfsErrorKind::TargetExists`]
//!    when it is a filesystem.
//!
//! Unambiguous ssh connection failures are recognized first and mid-session
//! ssh failures last (as [`ZfsErrorKind::Transport`]); with the exit status at
//! hand, [`classify_ssh`] tells an ssh failure from a remote `zfs` failure.
//!
//! # What the text cannot tell
//!
//! Some kinds are ambiguous in the text; the caller, which knows the state it
//! planned against, refines them:
//!
//! - A held snapshot: OpenZFS 2.3 and later say `it's being held`
//!   ([`ZfsErrorKind::Held`]), but zfs-fuse and older OpenZFS only say
//!   `dataset is busy` ([`ZfsErrorKind::Busy`]); read `userrefs`. zfs-fuse
//!   also reports a transient `dataset is busy` when a dataset is destroyed
//!   or renamed right after it was created or cloned (it is still mounted).
//! - `most recent snapshot of X does not match incremental source`
//!   ([`ZfsErrorKind::MissingBase`]) is also what both zfs-fuse and OpenZFS
//!   print when the target has snapshots newer than the base; zfs-fuse prints
//!   it even with `-F`. zfs-fuse reports an incremental stream into a
//!   filesystem that has no snapshot at all as `has been modified since most
//!   recent snapshot` ([`ZfsErrorKind::TargetModified`]).
//! - A stream cut short: OpenZFS 2.x says `incomplete stream` (or `checksum
//!   mismatch or incomplete stream` before 2.2); zfs-fuse says `invalid backup
//!   stream` (an `EINVAL` from the pre-resume kernel), and both say `failed to
//!   read from stream` when the cut falls in a record header. All are
//!   [`ZfsErrorKind::StreamTruncated`]. Corruption (`invalid stream (checksum
//!   mismatch)`, `checksum mismatch`) and garbage (`invalid stream (bad magic
//!   number)`) are [`ZfsErrorKind::StreamInvalid`].
//! - `warning: cannot send 'X': Broken pipe` is a sender whose reader went
//!   away ([`ZfsErrorKind::StreamTruncated`]); the receiver's own error, when
//!   there is one, is the one to report.
//! - zfs-fuse's `zfs holds` prints `internal error: /usr/lib/zfs/pyzfs.py not
//!   found` on **stdout** and exits 255 (the status ssh uses for its own
//!   failures); classify that text when stderr is empty.

use super::ZfsErrorKind;

/// The exit status ssh uses for its own failures (a remote command's status
/// is passed through otherwise).
const SSH_FAILURE_STATUS: i32 = 255;

/// A substring of the normalized text, and the kind it means.
type Rule = (&'static str, ZfsErrorKind);

/// ssh failing before the remote command ran: nothing else prints these.
/// Strings from OpenSSH's `ssh.c`, `sshconnect.c`, `sshconnect2.c`, `kex.c`.
const SSH_CONNECT: &[Rule] = &[
    ("ssh: connect to host", ZfsErrorKind::Transport),
    ("could not resolve hostname", ZfsErrorKind::Transport),
    ("host key verification failed", ZfsErrorKind::Transport),
    (
        "remote host identification has changed",
        ZfsErrorKind::Transport,
    ),
    ("kex_exchange_identification:", ZfsErrorKind::Transport),
    ("ssh_exchange_identification:", ZfsErrorKind::Transport),
    (
        "connection timed out during banner exchange",
        ZfsErrorKind::Transport,
    ),
    ("unable to negotiate with", ZfsErrorKind::Transport),
    ("too many authentication failures", ZfsErrorKind::Transport),
    // `user@host: Permission denied (publickey,password).`; zfs's own
    // "permission denied" never has the method list.
    ("permission denied (", ZfsErrorKind::Transport),
];

/// zfs and zpool messages, most specific first.
const ZFS: &[Rule] = &[
    // The shell in front of zfs (ssh, sudo) could not start it.
    ("command not found", ZfsErrorKind::Spawn),
    ("zfs: not found", ZfsErrorKind::Spawn),
    ("zpool: not found", ZfsErrorKind::Spawn),
    // Reaching ZFS at all. zfs-fuse prints `connect: <errno>` for its socket,
    // then "failed to initialize ZFS library"; the errno decides.
    ("connect: permission denied", ZfsErrorKind::PermissionDenied),
    ("must be run as root", ZfsErrorKind::PermissionDenied),
    (
        "sudo: a password is required",
        ZfsErrorKind::PermissionDenied,
    ),
    (
        "sudo: a terminal is required",
        ZfsErrorKind::PermissionDenied,
    ),
    ("is not in the sudoers file", ZfsErrorKind::PermissionDenied),
    (
        "make sure that the zfs-fuse daemon is running",
        ZfsErrorKind::ServiceUnavailable,
    ),
    (
        "failed to initialize zfs library",
        ZfsErrorKind::ServiceUnavailable,
    ),
    (
        "failed to initialize the libzfs library",
        ZfsErrorKind::ServiceUnavailable,
    ),
    (
        "the zfs modules are not loaded",
        ZfsErrorKind::ServiceUnavailable,
    ),
    (
        "the zfs modules cannot be auto-loaded",
        ZfsErrorKind::ServiceUnavailable,
    ),
    (
        "/dev/zfs and /proc/self/mounts are required",
        ZfsErrorKind::ServiceUnavailable,
    ),
    // Resumable send and receive. A resume stream the partial state does not
    // match fails with EINVAL, which libzfs words as an old kernel or a bad
    // stream.
    ("resume token is corrupt", ZfsErrorKind::ResumeTokenInvalid),
    ("cannot resume send", ZfsErrorKind::ResumeTokenInvalid),
    ("used in the initial send", ZfsErrorKind::ResumeTokenInvalid),
    (
        "cannot receive resume stream: kernel modules must be upgraded",
        ZfsErrorKind::ResumeTokenInvalid,
    ),
    (
        "cannot receive resume stream: invalid backup stream",
        ZfsErrorKind::ResumeTokenInvalid,
    ),
    ("partially-complete state", ZfsErrorKind::ResumablePending),
    ("resuming recv on existing", ZfsErrorKind::TargetExists),
    // The target of a receive.
    (
        "has been modified since most recent snapshot",
        ZfsErrorKind::TargetModified,
    ),
    (
        "does not match incremental source",
        ZfsErrorKind::MissingBase,
    ),
    ("incremental source (", ZfsErrorKind::MissingBase),
    (
        "incremental source could not be found",
        ZfsErrorKind::MissingBase,
    ),
    ("local origin for clone", ZfsErrorKind::MissingBase),
    (
        "incremental stream: destination '' does not exist",
        ZfsErrorKind::MissingBase,
    ),
    (
        "destination has snapshots",
        ZfsErrorKind::TargetHasNewerSnapshots,
    ),
    (
        "more recent snapshots",
        ZfsErrorKind::TargetHasNewerSnapshots,
    ),
    (
        "snapshot or bookmark more recent than",
        ZfsErrorKind::TargetHasNewerSnapshots,
    ),
    ("destination has children", ZfsErrorKind::HasChildren),
    ("must specify -f to overwrite", ZfsErrorKind::TargetExists),
    (
        "must destroy it to overwrite it",
        ZfsErrorKind::TargetExists,
    ),
    ("iv set guid mismatch", ZfsErrorKind::GuidMismatch),
    (
        "doesn't match the snapshot in the provided stream",
        ZfsErrorKind::GuidMismatch,
    ),
    // Features this ZFS lacks (before the stream rules: libzfs reports some
    // of them as bad streams).
    ("pyzfs.py not found", ZfsErrorKind::Unsupported),
    ("bookmark feature not enabled", ZfsErrorKind::Unsupported),
    ("must be upgraded", ZfsErrorKind::Unsupported),
    ("stream has unsupported feature", ZfsErrorKind::Unsupported),
    ("stream has deprecated feature", ZfsErrorKind::Unsupported),
    (
        "no longer supports deduplicated send streams",
        ZfsErrorKind::Unsupported,
    ),
    (
        "incompatible embedded data stream feature",
        ZfsErrorKind::Unsupported,
    ),
    (
        "stream uses crypto parameters not compatible",
        ZfsErrorKind::Unsupported,
    ),
    ("module does not support", ZfsErrorKind::Unsupported),
    (
        "not supported by zfs kernel module",
        ZfsErrorKind::Unsupported,
    ),
    ("unsupported version", ZfsErrorKind::Unsupported),
    ("operation not supported", ZfsErrorKind::Unsupported),
    ("requires -l (--large-block)", ZfsErrorKind::InvalidArgument),
    (
        "cannot specify snapshot name for multi-snapshot stream",
        ZfsErrorKind::InvalidArgument,
    ),
    // The stream itself.
    ("incomplete stream", ZfsErrorKind::StreamTruncated),
    ("failed to read from stream", ZfsErrorKind::StreamTruncated),
    ("invalid backup stream", ZfsErrorKind::StreamTruncated),
    ("invalid stream", ZfsErrorKind::StreamInvalid),
    ("checksum mismatch", ZfsErrorKind::StreamInvalid),
    ("invalid record type", ZfsErrorKind::StreamInvalid),
    ("incorrect header checksum", ZfsErrorKind::StreamInvalid),
    // Holds, dependents, busy datasets.
    ("it's being held", ZfsErrorKind::Held),
    ("to see holders", ZfsErrorKind::Held),
    ("has dependent clones", ZfsErrorKind::HasClones),
    ("snapshot is cloned", ZfsErrorKind::HasClones),
    (
        "clones of previous snapshots exist",
        ZfsErrorKind::HasClones,
    ),
    ("has children", ZfsErrorKind::HasChildren),
    ("dataset is busy", ZfsErrorKind::Busy),
    ("pool or dataset is busy", ZfsErrorKind::Busy),
    ("pool is busy", ZfsErrorKind::Busy),
    ("device or resource busy", ZfsErrorKind::Busy),
    ("target is busy", ZfsErrorKind::Busy),
    ("unmount failed", ZfsErrorKind::Busy),
    // Space.
    ("out of space", ZfsErrorKind::NoSpace),
    ("quota exceeded", ZfsErrorKind::NoSpace),
    ("no space left on device", ZfsErrorKind::NoSpace),
    (
        "size is greater than available space",
        ZfsErrorKind::NoSpace,
    ),
    // Permissions.
    ("permission denied", ZfsErrorKind::PermissionDenied),
    ("operation not permitted", ZfsErrorKind::PermissionDenied),
    (
        "delegated administration is disabled",
        ZfsErrorKind::PermissionDenied,
    ),
    // A read-only property is our mistake; a read-only pool or dataset is not.
    ("read-only property", ZfsErrorKind::InvalidArgument),
    ("property is read-only", ZfsErrorKind::InvalidArgument),
    ("is readonly", ZfsErrorKind::InvalidArgument),
    ("pool is read-only", ZfsErrorKind::ReadOnly),
    ("dataset is read-only", ZfsErrorKind::ReadOnly),
    ("dataset is read only", ZfsErrorKind::ReadOnly),
    ("read-only file system", ZfsErrorKind::ReadOnly),
    // Pool health.
    (
        "pool i/o is currently suspended",
        ZfsErrorKind::PoolUnavailable,
    ),
    ("pool is unavailable", ZfsErrorKind::PoolUnavailable),
    (
        "one or more devices is currently unavailable",
        ZfsErrorKind::PoolUnavailable,
    ),
    ("insufficient replicas", ZfsErrorKind::PoolUnavailable),
    ("no valid replicas", ZfsErrorKind::PoolUnavailable),
    (
        "pool is imported on a different host",
        ZfsErrorKind::PoolUnavailable,
    ),
    ("i/o error", ZfsErrorKind::PoolUnavailable),
    ("input/output error", ZfsErrorKind::PoolUnavailable),
    // Existence.
    ("already exists", ZfsErrorKind::AlreadyExists),
    ("pool or dataset exists", ZfsErrorKind::AlreadyExists),
    ("bookmark exists", ZfsErrorKind::AlreadyExists),
    ("conflicting snapshot", ZfsErrorKind::AlreadyExists),
    ("does not exist", ZfsErrorKind::NotFound),
    ("no such pool", ZfsErrorKind::NotFound),
    ("no such tag", ZfsErrorKind::NotFound),
    ("no such parent", ZfsErrorKind::NotFound),
    ("could not find any snapshots", ZfsErrorKind::NotFound),
    (
        "does not have any resumable receive state",
        ZfsErrorKind::NotFound,
    ),
    ("is not found among snapshots", ZfsErrorKind::NotFound),
    // Arguments zfs rejected.
    ("invalid argument", ZfsErrorKind::InvalidArgument),
    ("invalid name", ZfsErrorKind::InvalidArgument),
    ("invalid dataset name", ZfsErrorKind::InvalidArgument),
    ("invalid character", ZfsErrorKind::InvalidArgument),
    ("invalid property", ZfsErrorKind::InvalidArgument),
    (
        "invalid quota or reservation",
        ZfsErrorKind::InvalidArgument,
    ),
    (
        "size is less than current used or reserved space",
        ZfsErrorKind::InvalidArgument,
    ),
    ("delimiters in name", ZfsErrorKind::InvalidArgument),
    ("name is too long", ZfsErrorKind::InvalidArgument),
    ("not an earlier snapshot", ZfsErrorKind::InvalidArgument),
    ("is not a snapshot", ZfsErrorKind::InvalidArgument),
    ("must be a snapshot", ZfsErrorKind::InvalidArgument),
    ("not a cloned filesystem", ZfsErrorKind::InvalidArgument),
    (
        "not applicable to datasets of this type",
        ZfsErrorKind::InvalidArgument,
    ),
    ("does not apply to", ZfsErrorKind::InvalidArgument),
    (
        "must be part of same dataset",
        ZfsErrorKind::InvalidArgument,
    ),
    ("must be within same pool", ZfsErrorKind::InvalidArgument),
    (
        "operation crosses datasets or pools",
        ZfsErrorKind::InvalidArgument,
    ),
    ("in a different pool", ZfsErrorKind::InvalidArgument),
    (
        "source and target pools differ",
        ZfsErrorKind::InvalidArgument,
    ),
    (
        "multiple snapshots of same fs not allowed",
        ZfsErrorKind::InvalidArgument,
    ),
    ("too many arguments", ZfsErrorKind::InvalidArgument),
    // Interrupted (EINTR).
    ("signal received", ZfsErrorKind::Killed),
];

/// ssh losing a session that was up; checked after the zfs messages, which
/// the remote side may have printed before the link dropped.
const SSH_SESSION: &[Rule] = &[
    ("closed by remote host", ZfsErrorKind::Transport),
    ("connection closed by", ZfsErrorKind::Transport),
    ("connection reset by", ZfsErrorKind::Transport),
    ("client_loop:", ZfsErrorKind::Transport),
    ("packet_write_wait:", ZfsErrorKind::Transport),
    ("timeout, server", ZfsErrorKind::Transport),
];

/// Generic errno text, only when nothing more specific matched.
const LAST_RESORT: &[Rule] = &[("broken pipe", ZfsErrorKind::StreamTruncated)];

/// All rules, in the order they are tried.
const RULES: &[&[Rule]] = &[SSH_CONNECT, ZFS, SSH_SESSION, LAST_RESORT];

/// Usage errors that mean "this zfs does not know that", not "we passed
/// nonsense".
const USAGE_UNSUPPORTED: &[&str] = &[
    "invalid option",
    "unrecognized command",
    "invalid type",
    "bad property list",
];

/// Classifies the stderr of a failed `zfs` or `zpool` command.
///
/// Returns [`ZfsErrorKind::Other`] for text it does not recognize (and for
/// empty text); never panics. See the [module documentation](self) for how
/// the text is read and which kinds the caller must refine.
///
/// ```
/// use zfsrepl_core::zfs::{ZfsErrorKind, stderr::classify};
/// let kind = classify("cannot open 'tank/a': dataset does not exist\n");
/// assert_eq!(kind, ZfsErrorKind::NotFound);
/// ```
#[must_use]
pub fn classify(stderr: &str) -> ZfsErrorKind {
    let lines = normalized_lines(stderr);
    if let Some(at) = lines.iter().position(|l| l.starts_with("usage:")) {
        return usage_error(&lines[..at].join(" "));
    }
    match_rules(&lines.join(" ")).unwrap_or(ZfsErrorKind::Other)
}

/// Recognizes an ssh failure: `ssh` exited with 255 and its stderr holds one
/// of ssh's own messages (`ssh: connect to host ...`, `Permission denied
/// (publickey)`, `Could not resolve hostname`, `Host key verification failed`,
/// `Connection closed by ...`, `kex_exchange_identification: ...`, ...).
///
/// Returns `Some(`[`ZfsErrorKind::Transport`]`)` then, and `None` otherwise:
/// the failure is the remote command's, to be classified with [`classify`].
/// Exit status 255 alone proves nothing (zfs-fuse's `zfs holds` exits 255),
/// and neither does an ssh message with another status (the remote command
/// ran and its status was passed through).
///
/// ```
/// use zfsrepl_core::zfs::{ZfsErrorKind, stderr::classify_ssh};
/// let err = "ssh: connect to host backup port 22: Connection refused\r\n";
/// assert_eq!(classify_ssh(err, Some(255)), Some(ZfsErrorKind::Transport));
/// assert_eq!(classify_ssh(err, Some(1)), None);
/// ```
#[must_use]
pub fn classify_ssh(stderr: &str, status: Option<i32>) -> Option<ZfsErrorKind> {
    if status != Some(SSH_FAILURE_STATUS) {
        return None;
    }
    let text = normalized_lines(stderr).join(" ");
    SSH_CONNECT
        .iter()
        .chain(SSH_SESSION)
        .any(|(needle, _)| text.contains(needle))
        .then_some(ZfsErrorKind::Transport)
}

/// The kind of an error that zfs followed with its usage text; `head` is the
/// normalized text before the `usage:` line.
fn usage_error(head: &str) -> ZfsErrorKind {
    if USAGE_UNSUPPORTED.iter().any(|needle| head.contains(needle)) {
        return ZfsErrorKind::Unsupported;
    }
    match_rules(head).unwrap_or(ZfsErrorKind::InvalidArgument)
}

/// The first kind whose rule matches the normalized `text`.
fn match_rules(text: &str) -> Option<ZfsErrorKind> {
    if let Some(kind) = restore_conflict(text) {
        return Some(kind);
    }
    RULES
        .iter()
        .flat_map(|rules| rules.iter())
        .find(|(needle, _)| text.contains(needle))
        .map(|(_, kind)| kind.clone())
}

/// `cannot restore to NAME: destination already exists`: libzfs prints it
/// after finding no local snapshot with the stream's guid, so a snapshot
/// `NAME` exists with another guid; for a new filesystem, `NAME` is the
/// filesystem that is in the way.
fn restore_conflict(text: &str) -> Option<ZfsErrorKind> {
    const PREFIX: &str = "cannot restore to ";
    const REASON: &str = ": destination already exists";
    let start = text.find(PREFIX)? + PREFIX.len();
    let len = text[start..].find(REASON)?;
    Some(if text[start..start + len].contains('@') {
        ZfsErrorKind::GuidMismatch
    } else {
        ZfsErrorKind::TargetExists
    })
}

/// The non-empty lines of `text`, trimmed, lowercased, with quoted names
/// blanked and whitespace collapsed.
fn normalized_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| blank_quoted(&line.to_lowercase()))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect()
}

/// Replaces each quoted span (`'tank/a@s1'`, `'-r'`) with `''`.
///
/// A quote opens a span at the start of the line or after whitespace, `(`,
/// `[` or `"`, and the next quote closes it when followed by the end, by
/// whitespace or by punctuation; other quotes are apostrophes (`doesn't`)
/// and stay. ZFS names cannot contain a quote.
fn blank_quoted(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    let mut prev = None;
    while let Some(at) = rest.find('\'') {
        out.push_str(&rest[..at]);
        let prev_char = rest[..at].chars().next_back().or(prev);
        let after = &rest[at + 1..];
        let opens = prev_char.is_none_or(|c| c.is_whitespace() || matches!(c, '(' | '[' | '"'));
        let close = after.find('\'').filter(|&end| {
            after[end + 1..].chars().next().is_none_or(|c| {
                c.is_whitespace() || matches!(c, ':' | ',' | '.' | ';' | ')' | ']' | '"')
            })
        });
        out.push('\'');
        prev = Some('\'');
        match close {
            Some(end) if opens => {
                out.push('\'');
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use ZfsErrorKind as K;

    /// zfs-fuse 0.7.0's usage text for `zfs list` (after the error line), captured.
    macro_rules! fuse_list_usage {
        () => {
            concat!(
            "usage:\n",
            "\tlist [-rH][-d max] [-o property[,...]] [-t type[,...]] [-s property] ...\n",
            "\t    [-S property] ... [filesystem|volume|snapshot] ...\n",
            "\n",
            "The following properties are supported:\n",
            "\n",
            "\tPROPERTY       EDIT  INHERIT   VALUES\n",
            "\n",
            "\tavailable        NO       NO   <size>\n",
            "\tcompressratio    NO       NO   <1.00x or higher if compressed>\n",
            "\tcreation         NO       NO   <date>\n",
            "\tdefer_destroy    NO       NO   yes | no\n",
            "\tmounted          NO       NO   yes | no\n",
            "\torigin           NO       NO   <snapshot>\n",
            "\treferenced       NO       NO   <size>\n",
            "\ttype             NO       NO   filesystem | volume | snapshot\n",
            "\tused             NO       NO   <size>\n",
            "\tusedbychildren   NO       NO   <size>\n",
            "\tusedbydataset    NO       NO   <size>\n",
            "\tusedbyrefreservation  NO       NO   <size>\n",
            "\tusedbysnapshots  NO       NO   <size>\n",
            "\tuserrefs         NO       NO   <count>\n",
            "\taclinherit      YES      YES   discard | noallow | restricted | passthrough | passthrough-x\n",
            "\taclmode         YES      YES   discard | groupmask | passthrough\n",
            "\tatime           YES      YES   on | off\n",
            "\tcanmount        YES       NO   on | off | noauto\n",
            "\tcasesensitivity  NO      YES   sensitive | insensitive | mixed\n",
            "\tchecksum        YES      YES   on | off | fletcher2 | fletcher4 | sha256\n",
            "\tcompression     YES      YES   on | off | lzjb | gzip | gzip-[1-9] | zle\n",
            "\tcopies          YES      YES   1 | 2 | 3\n",
            "\tdedup           YES      YES   on | off | verify | sha256[,verify]\n",
            "\tdevices         YES      YES   on | off\n",
            "\texec            YES      YES   on | off\n",
            "\tlogbias         YES      YES   latency | throughput\n",
            "\tmlslabel        YES      YES   <sensitivity label>\n",
            "\tmountpoint      YES      YES   <path> | legacy | none\n",
            "\tnbmand          YES      YES   on | off\n",
            "\tnormalization    NO      YES   none | formC | formD | formKC | formKD\n",
            "\tprimarycache    YES      YES   all | none | metadata\n",
            "\tquota           YES       NO   <size> | none\n",
            "\treadonly        YES      YES   on | off\n",
            "\trecordsize      YES      YES   512 to 128k, power of 2\n",
            "\trefquota        YES       NO   <size> | none\n",
            "\trefreservation  YES       NO   <size> | none\n",
            "\treservation     YES       NO   <size> | none\n",
            "\tsecondarycache  YES      YES   all | none | metadata\n",
            "\tsetuid          YES      YES   on | off\n",
            "\tsharenfs        YES      YES   on | off | share(1M) options\n",
            "\tsharesmb        YES      YES   on | off | sharemgr(1M) options\n",
            "\tsnapdir         YES      YES   hidden | visible\n",
            "\tutf8only         NO      YES   on | off\n",
            "\tversion         YES       NO   1 | 2 | 3 | 4 | current\n",
            "\tvolblocksize     NO      YES   512 to 128k, power of 2\n",
            "\tvolsize         YES       NO   <size>\n",
            "\tvscan           YES      YES   on | off\n",
            "\txattr           YES      YES   on | off\n",
            "\tzoned           YES      YES   on | off\n",
            "\tuserused@...     NO       NO   <size>\n",
            "\tgroupused@...    NO       NO   <size>\n",
            "\tuserquota@...   YES       NO   <size> | none\n",
            "\tgroupquota@...  YES       NO   <size> | none\n",
            "\n",
            "Sizes are specified in bytes with standard units such as K, M, G, etc.\n",
            "\n",
            "User-defined properties can be specified by using a name containing a colon (:).\n",
            "\n",
            "The {user|group}{used|quota}@ properties must be appended with\n",
            "a user or group specifier of one of these forms:\n",
            "    POSIX name      (eg: \"matt\")\n",
            "    POSIX id        (eg: \"126829\")\n",
            "    SMB name@domain (eg: \"matt@sun\")\n",
            "    SMB SID         (eg: \"S-1-234-567-89\")\n"
            )
        };
    }

    /// zfs-fuse 0.7.0's usage text for an unknown `zfs` command, captured.
    macro_rules! fuse_zfs_usage {
        () => {
            concat!(
                "usage: zfs command args ...\n",
                "where 'command' is one of the following:\n",
                "\n",
                "\tcreate [-p] [-o property=value] ... <filesystem>\n",
                "\tcreate [-ps] [-b blocksize] [-o property=value] ... -V <size> <volume>\n",
                "\tdestroy [-rRf] <filesystem|volume>\n",
                "\tdestroy [-rRd] <snapshot>\n",
                "\n",
                "\tsnapshot [-r] [-o property=value] ... <filesystem@snapname|volume@snapname>\n",
                "\trollback [-rRf] <snapshot>\n",
                "\tclone [-p] [-o property=value] ... <snapshot> <filesystem|volume>\n",
                "\tpromote <clone-filesystem>\n",
                "\trename <filesystem|volume|snapshot> <filesystem|volume|snapshot>\n",
                "\trename -p <filesystem|volume> <filesystem|volume>\n",
                "\trename -r <snapshot> <snapshot>\n",
                "\tlist [-rH][-d max] [-o property[,...]] [-t type[,...]] [-s property] ...\n",
                "\t    [-S property] ... [filesystem|volume|snapshot] ...\n",
                "\n",
                "\tset <property=value> <filesystem|volume|snapshot> ...\n",
                "\tget [-rHp] [-d max] [-o \"all\" | field[,...]] [-s source[,...]]\n",
                "\t    <\"all\" | property[,...]> [filesystem|volume|snapshot] ...\n",
                "\tinherit [-rS] <property> <filesystem|volume|snapshot> ...\n",
                "\tupgrade [-v]\n",
                "\tupgrade [-r] [-V version] <-a | filesystem ...>\n",
                "\tuserspace [-hniHp] [-o field[,...]] [-sS field] ... [-t type[,...]]\n",
                "\t    <filesystem|snapshot>\n",
                "\tgroupspace [-hniHpU] [-o field[,...]] [-sS field] ... [-t type[,...]]\n",
                "\t    <filesystem|snapshot>\n",
                "\n",
                "\tmount\n",
                "\tmount [-vO] [-o opts] <-a | filesystem>\n",
                "\tunmount [-f] <-a | filesystem|mountpoint>\n",
                "\tshare <-a | filesystem>\n",
                "\tunshare <-a | filesystem|mountpoint>\n",
                "\n",
                "\tsend [-RDp] [-[iI] snapshot] <snapshot>\n",
                "\treceive [-vnF] <filesystem|volume|snapshot>\n",
                "\treceive [-vnF] -d <filesystem>\n",
                "\n",
                "\tallow <filesystem|volume>\n",
                "\tallow [-ldug] <\"everyone\"|user|group>[,...] <perm|@setname>[,...]\n",
                "\t    <filesystem|volume>\n",
                "\tallow [-ld] -e <perm|@setname>[,...] <filesystem|volume>\n",
                "\tallow -c <perm|@setname>[,...] <filesystem|volume>\n",
                "\tallow -s @setname <perm|@setname>[,...] <filesystem|volume>\n",
                "\n",
                "\tunallow [-rldug] <\"everyone\"|user|group>[,...]\n",
                "\t    [<perm|@setname>[,...]] <filesystem|volume>\n",
                "\tunallow [-rld] -e [<perm|@setname>[,...]] <filesystem|volume>\n",
                "\tunallow [-r] -c [<perm|@setname>[,...]] <filesystem|volume>\n",
                "\tunallow [-r] -s @setname [<perm|@setname>[,...]] <filesystem|volume>\n",
                "\n",
                "\thold [-r] <tag> <snapshot> ...\n",
                "\tholds [-r] <snapshot> ...\n",
                "\trelease [-r] <tag> <snapshot> ...\n",
                "\n",
                "Each dataset is of the form: pool/[dataset/]*dataset[@name]\n",
                "\n",
                "For the property list, run: zfs set|get\n",
                "\n",
                "For the delegated permission list, run: zfs allow|unallow\n"
            )
        };
    }

    /// zfs-fuse 0.7.0's usage text for an unknown `zpool` command, captured (it ends after `set`).
    macro_rules! fuse_zpool_usage {
        () => {
            concat!(
                "usage: zpool command args ...\n",
                "where 'command' is one of the following:\n",
                "\n",
                "\tcreate [-fn] [-o property=value] ... \n",
                "\t    [-O file-system-property=value] ... \n",
                "\t    [-m mountpoint] [-R root] <pool> <vdev> ...\n",
                "\tdestroy [-f] <pool>\n",
                "\n",
                "\tadd [-fn] [-o property=value] <pool> <vdev> ...\n",
                "\tremove <pool> <device> ...\n",
                "\n",
                "\tlist [-H] [-o property[,...]] [pool] ...\n",
                "\tiostat [-v] [-T d|u] [pool] ... [interval [count]]\n",
                "\tstatus [-vx] [pool] ...\n",
                "\n",
                "\tonline <pool> <device> ...\n",
                "\toffline [-t] <pool> <device> ...\n",
                "\tclear [-nF] <pool> [device]\n",
                "\n",
                "\tattach [-f] [-o property=value] <pool> <device> <new-device>\n",
                "\tdetach <pool> <device>\n",
                "\treplace [-f] [-o property=value] <pool> <device> [new-device]\n",
                "\tsplit [-n] [-R altroot] [-o mntopts]\n",
                "\t    [-o property=value] <pool> <newpool> [<device> ...]\n",
                "\n",
                "\tscrub [-s] <pool> ...\n",
                "\n",
                "\timport [-d dir] [-D]\n",
                "\timport [-d dir | -c cachefile] [-n] -F <pool | id>\n",
                "\timport [-o mntopts] [-o property=value] ... \n",
                "\t    [-d dir | -c cachefile] [-D] [-f] [-R root] -a [-v]\n",
                "\timport [-o mntopts] [-o property=value] ... \n",
                "\t    [-d dir | -c cachefile] [-D] [-f] [-R root] <pool | id> [newpool]\n",
                "\texport [-f] <pool> ...\n",
                "\tupgrade\n",
                "\tupgrade -v\n",
                "\tupgrade [-V version] <-a | pool ...>\n",
                "\n",
                "\thistory [-il] [<pool>] ...\n",
                "\tget <\"all\" | property[,...]> <pool> ...\n",
                "\tset <property=value> <pool> \n"
            )
        };
    }

    /// zfs-fuse 0.7.0's footer after a command's usage lines.
    macro_rules! fuse_footer {
        () => {
            concat!(
                "\n",
                "For the property list, run: zfs set|get\n",
                "\n",
                "For the delegated permission list, run: zfs allow|unallow\n",
            )
        };
    }

    /// Captured from zfs-fuse 0.7.0 on this machine (`zfs-fuse` 0.7.0-25+b1, a
    /// pool `clsf_3309` on a 128 MiB file), verbatim (stderr only, with its
    /// final newline). Exit status 1 for runtime errors, 2 after usage text.
    const FUSE: &[(&str, ZfsErrorKind)] = &[
        // zfs list / destroy of a missing dataset or snapshot.
        (
            "cannot open 'clsf_3309/nope': dataset does not exist\n",
            K::NotFound,
        ),
        (
            "cannot open 'clsf_3309@nope': dataset does not exist\n",
            K::NotFound,
        ),
        // zfs rename of a missing snapshot.
        (
            "cannot open 'clsf_3309/a@nope': dataset does not exist\n",
            K::NotFound,
        ),
        // zpool status / list of a missing pool.
        ("cannot open 'nopool_xyz': no such pool\n", K::NotFound),
        // zfs release of a tag the snapshot does not have.
        (
            "cannot release 'nokey' from 'clsf_3309/a@s1': no such tag on this dataset\n",
            K::NotFound,
        ),
        // zfs create / snapshot / rename onto an existing name.
        (
            "cannot create 'clsf_3309/a': dataset already exists\n",
            K::AlreadyExists,
        ),
        (
            "cannot create snapshot 'clsf_3309/a@s1': dataset already exists\n",
            K::AlreadyExists,
        ),
        (
            "cannot rename 'clsf_3309/a@s2': dataset already exists\n",
            K::AlreadyExists,
        ),
        // zfs hold twice with one tag.
        (
            "cannot hold 'clsf_3309/a@s1': tag already exists on this dataset\n",
            K::AlreadyExists,
        ),
        // zfs destroy of a snapshot with a user hold: zfs-fuse says busy.
        (
            "cannot destroy 'clsf_3309/a@s1': dataset is busy\n",
            K::Busy,
        ),
        // zfs destroy of a clone right after `zfs clone` (transient).
        ("cannot destroy 'clsf_3309/cl': dataset is busy\n", K::Busy),
        // zfs rename of a mounted clone.
        ("cannot rename 'clsf_3309/cl2': dataset is busy\n", K::Busy),
        // zfs destroy of a filesystem with a child and a snapshot.
        (
            "cannot destroy 'clsf_3309/a': filesystem has children\n\
             use '-r' to destroy the following datasets:\n\
             clsf_3309/a@s1\n\
             clsf_3309/a/child\n",
            K::HasChildren,
        ),
        // zfs destroy of a snapshot, and of its filesystem with -r, with a clone.
        (
            "cannot destroy 'clsf_3309/a@s1': snapshot has dependent clones\n\
             use '-R' to destroy the following datasets:\n\
             clsf_3309/cl\n",
            K::HasClones,
        ),
        (
            "cannot destroy 'clsf_3309/a': filesystem has dependent clones\n\
             use '-R' to destroy the following datasets:\n\
             clsf_3309/cl\n",
            K::HasClones,
        ),
        // Options and commands zfs-fuse does not have.
        (
            concat!(
                "invalid option 'c'\nusage:\n\tsend [-RDp] [-[iI] snapshot] <snapshot>\n",
                fuse_footer!()
            ),
            K::Unsupported,
        ),
        (
            concat!(
                "invalid option 't'\nusage:\n\tsend [-RDp] [-[iI] snapshot] <snapshot>\n",
                fuse_footer!()
            ),
            K::Unsupported,
        ),
        (
            concat!(
                "invalid option 's'\nusage:\n\treceive [-vnF] <filesystem|volume|snapshot>\n\
                 \treceive [-vnF] -d <filesystem>\n",
                fuse_footer!()
            ),
            K::Unsupported,
        ),
        (
            concat!(
                "invalid option 'A'\nusage:\n\treceive [-vnF] <filesystem|volume|snapshot>\n\
                 \treceive [-vnF] -d <filesystem>\n",
                fuse_footer!()
            ),
            K::Unsupported,
        ),
        // zfs list -p: the usage text's property table mentions readonly,
        // quota, dedup ..., and must not count.
        (
            concat!("invalid option 'p'\n", fuse_list_usage!()),
            K::Unsupported,
        ),
        (
            concat!("invalid type 'bookmark'\n", fuse_list_usage!()),
            K::Unsupported,
        ),
        (
            concat!(
                "bad property list: invalid property 'receive_resume_token'\n",
                fuse_list_usage!()
            ),
            K::Unsupported,
        ),
        (
            concat!("unrecognized command 'bookmark'\n", fuse_zfs_usage!()),
            K::Unsupported,
        ),
        (
            concat!("unrecognized command 'version'\n", fuse_zfs_usage!()),
            K::Unsupported,
        ),
        (
            concat!("unrecognized command 'frobnicate'\n", fuse_zpool_usage!()),
            K::Unsupported,
        ),
        // zfs holds: printed on stdout, exit status 255.
        (
            "internal error: /usr/lib/zfs/pyzfs.py not found\n",
            K::Unsupported,
        ),
        // Usage errors that are our mistakes.
        (
            concat!(
                "argument must be a snapshot\nusage:\n\tsend [-RDp] [-[iI] snapshot] <snapshot>\n",
                fuse_footer!()
            ),
            K::InvalidArgument,
        ),
        (
            concat!(
                "missing path argument\nusage:\n\tdestroy [-rRf] <filesystem|volume>\n\
                 \tdestroy [-rRd] <snapshot>\n",
                fuse_footer!()
            ),
            K::InvalidArgument,
        ),
        (
            concat!(
                "too many arguments\nusage:\n\tcreate [-p] [-o property=value] ... <filesystem>\n\
                 \tcreate [-ps] [-b blocksize] [-o property=value] ... -V <size> <volume>\n",
                fuse_footer!()
            ),
            K::InvalidArgument,
        ),
        // Runtime errors that are our mistakes.
        (
            "cannot open 'clsf_3309/a#b1': invalid dataset name\n",
            K::InvalidArgument,
        ),
        (
            "cannot set property for 'clsf_3309/q': size is less than current used or reserved space\n",
            K::InvalidArgument,
        ),
        (
            "cannot set property for 'clsf_3309/q': 'used' is readonly\n",
            K::InvalidArgument,
        ),
        (
            "cannot set property for 'clsf_3309/q': invalid property 'nosuchprop'\n",
            K::InvalidArgument,
        ),
        (
            "cannot promote 'clsf_3309/a': not a cloned filesystem\n",
            K::InvalidArgument,
        ),
        (
            "cannot snapshot 'clsf_3309/a@s1@x': multiple '@' delimiters in name\n",
            K::InvalidArgument,
        ),
        (
            "cannot destroy 'clsf_3309': operation does not apply to pools\n\
             use 'zfs destroy -r clsf_3309' to destroy all datasets in the pool\n\
             use 'zpool destroy clsf_3309' to destroy the pool itself\n",
            K::InvalidArgument,
        ),
        (
            "warning: cannot send 'clsf_3309/a@s1': not an earlier snapshot from the same fs\n",
            K::InvalidArgument,
        ),
        // zfs send -i from a snapshot that does not exist.
        (
            "warning: cannot send 'clsf_3309/a@s3': incremental source (@nope) does not exist\n",
            K::MissingBase,
        ),
        // zfs receive of an incremental stream into a new name, and into a
        // filesystem whose latest snapshot is not the base.
        (
            "cannot receive incremental stream: most recent snapshot of clsf_3309/a does not\n\
             match incremental source\n",
            K::MissingBase,
        ),
        (
            "cannot receive incremental stream: most recent snapshot of clsf_3309/t2 does not\n\
             match incremental source\n",
            K::MissingBase,
        ),
        // ... into a filesystem that has snapshots newer than the base (also
        // with -F): zfs-fuse cannot tell it from a missing base.
        (
            "cannot receive incremental stream: most recent snapshot of clsf_3309/t3 does not\n\
             match incremental source\n",
            K::MissingBase,
        ),
        // ... into a filesystem written since its last snapshot, and into one
        // with no snapshot at all (zfs-fuse says "modified" there too).
        (
            "cannot receive incremental stream: destination clsf_3309/t2 has been modified\n\
             since most recent snapshot\n",
            K::TargetModified,
        ),
        (
            "cannot receive incremental stream: destination clsf_3309/t1 has been modified\n\
             since most recent snapshot\n",
            K::TargetModified,
        ),
        // ... whose snapshot name exists on the target with another guid.
        (
            "cannot restore to clsf_3309/t5@s2: destination already exists\n",
            K::GuidMismatch,
        ),
        // zfs receive of a full stream into an existing filesystem, without
        // and with -F (the target has snapshots).
        (
            "cannot receive new filesystem stream: destination 'clsf_3309/t2' exists\n\
             must specify -F to overwrite it\n",
            K::TargetExists,
        ),
        (
            "cannot receive new filesystem stream: destination has snapshots (eg. clsf_3309/t2@s1)\n\
             must destroy them to overwrite it\n",
            K::TargetHasNewerSnapshots,
        ),
        // zfs rollback to a snapshot that is not the latest, without -r.
        (
            "cannot rollback to 'clsf_3309/a@s1': more recent snapshots exist\n\
             use '-r' to force deletion of the following snapshots:\n\
             clsf_3309/a@s2\n\
             clsf_3309/a@s3\n",
            K::TargetHasNewerSnapshots,
        ),
        // zfs receive of random bytes, of zeros, of nothing.
        (
            "cannot receive: invalid stream (bad magic number)\n",
            K::StreamInvalid,
        ),
        (
            "cannot receive: failed to read from stream\n",
            K::StreamTruncated,
        ),
        // zfs receive of a stream with bytes flipped in the middle.
        (
            "cannot receive new filesystem stream: invalid stream (checksum mismatch)\n",
            K::StreamInvalid,
        ),
        // zfs receive of a stream cut by `head -c 1000`, `head -c 200000`,
        // or missing its last 100 bytes.
        (
            "cannot receive new filesystem stream: invalid backup stream\n",
            K::StreamTruncated,
        ),
        // The sender of any failed pipe above.
        (
            "warning: cannot send 'clsf_3309/a@s3': Broken pipe\n",
            K::StreamTruncated,
        ),
        // zfs receive into a filesystem over its quota.
        (
            "cannot receive new filesystem stream: out of space\n",
            K::NoSpace,
        ),
        // zfs as a user other than root.
        (
            "connect: Permission denied\ninternal error: failed to initialize ZFS library\n",
            K::PermissionDenied,
        ),
        // zfs with the zfs-fuse daemon stopped (text given verbatim, not
        // captured: the daemon is shared).
        (
            "connect: No such file or directory\n\
             Please make sure that the zfs-fuse daemon is running.\n\
             internal error: failed to initialize ZFS library",
            K::ServiceUnavailable,
        ),
        // zfs clone / create under a filesystem over its quota: the dataset is
        // created, then not mounted (exit status 1). Nothing we classify.
        (
            "cannot mount '/clsf_3309/q/c1': failed to create mountpoint\n",
            K::Other,
        ),
        (
            "cannot mount '/clsf_3309/q/child': failed to create mountpoint\n\
             filesystem successfully created, but not mounted\n",
            K::Other,
        ),
    ];

    /// Realistic stderr built from the message strings in OpenZFS 2.x source,
    /// the way zfs prints them (`<action>: <reason>\n`).
    const OPENZFS: &[(&str, ZfsErrorKind)] = &[
        // lib/libzfs/libzfs_util.c: zfs_standard_error() and
        // libzfs_error_description().
        (
            "cannot open 'tank/missing': dataset does not exist\n",
            K::NotFound,
        ),
        (
            "cannot create 'tank/a': dataset already exists\n",
            K::AlreadyExists,
        ),
        (
            "cannot destroy snapshot tank/a@s1: dataset is busy\n",
            K::Busy,
        ),
        (
            "cannot unmount '/tank/a': pool or dataset is busy\n",
            K::Busy,
        ),
        ("cannot create 'tank/a/b': out of space\n", K::NoSpace),
        (
            "cannot create snapshot 'tank/a@s1': permission denied\n",
            K::PermissionDenied,
        ),
        ("cannot create 'tank/a/b': pool is read-only\n", K::ReadOnly),
        (
            "cannot set property for 'tank/a': dataset is read-only\n",
            K::ReadOnly,
        ),
        (
            "cannot open 'tank/a': pool I/O is currently suspended\n",
            K::PoolUnavailable,
        ),
        (
            "cannot open 'tank': one or more devices is currently unavailable\n",
            K::PoolUnavailable,
        ),
        (
            "cannot create snapshot 'tank/a@s1': unsupported version or feature\n",
            K::Unsupported,
        ),
        (
            "cannot hold 'tank/a': operation not applicable to datasets of this type\n",
            K::InvalidArgument,
        ),
        (
            "cannot create 'tank/a/b': the loaded zfs module does not support this operation. \
             A reboot may be required to enable this operation.\n",
            K::Unsupported,
        ),
        (
            "warning: cannot send 'tank/a@s2': signal received\n",
            K::Killed,
        ),
        // lib/libzfs/libzfs_dataset.c: holds, destroy, rollback, promote, clone.
        (
            "cannot hold snapshot 'tank/a@s1': tag already exists on this dataset\n",
            K::AlreadyExists,
        ),
        (
            "cannot release hold from snapshot 'tank/a@s1': no such tag on this dataset\n",
            K::NotFound,
        ),
        (
            "cannot destroy snapshot tank/a@s1: snapshot is cloned\n",
            K::HasClones,
        ),
        (
            "cannot rollback 'tank/a': there is a snapshot or bookmark more recent than 'tank/a@s1'\n",
            K::TargetHasNewerSnapshots,
        ),
        (
            "cannot promote 'tank/a': not a cloned filesystem\n",
            K::InvalidArgument,
        ),
        (
            "cannot create 'tank/x/y': no such parent 'tank/x'\n",
            K::NotFound,
        ),
        // zfs_destroy_snaps_nvl(), EBUSY with holds: OpenZFS 2.3 and later
        // (openzfs/zfs#17234).
        (
            "cannot destroy snapshot tank/a@s1: it's being held. \
             Run 'zfs holds -r tank/a@s1' to see holders.\n",
            K::Held,
        ),
        // lib/libzfs/os/linux/libzfs_util_os.c: libzfs_error_init().
        (
            "The ZFS modules are not loaded.\nTry running 'modprobe zfs' as root to load them.\n",
            K::ServiceUnavailable,
        ),
        (
            "/dev/zfs and /proc/self/mounts are required.\n\
             Try running 'udevadm trigger' and 'mount -t proc proc /proc' as root.\n",
            K::ServiceUnavailable,
        ),
        (
            "Failed to initialize the libzfs library.\n",
            K::ServiceUnavailable,
        ),
        (
            "Permission denied the ZFS utilities must be run as root.\n",
            K::PermissionDenied,
        ),
        // lib/libzfs/libzfs_sendrecv.c: zfs_receive_one(), zfs_receive_impl().
        (
            "cannot receive incremental stream: most recent snapshot of tank/b does not\n\
             match incremental source\n",
            K::MissingBase,
        ),
        (
            "cannot receive incremental stream: destination 'tank/b' does not exist\n",
            K::MissingBase,
        ),
        (
            "cannot receive: local origin for clone tank/c@s1 does not exist\n",
            K::MissingBase,
        ),
        (
            "cannot receive incremental stream: destination tank/b has been modified\n\
             since most recent snapshot\n",
            K::TargetModified,
        ),
        (
            "cannot receive new filesystem stream: destination 'tank/b' exists\n\
             must specify -F to overwrite it\n",
            K::TargetExists,
        ),
        (
            "cannot receive new filesystem stream: destination 'tank/b' is a clone\n\
             must destroy it to overwrite it\n",
            K::TargetExists,
        ),
        (
            "cannot receive new filesystem stream: Resuming recv on existing destination 'tank/b'\n\
             must specify -F to overwrite it\n",
            K::TargetExists,
        ),
        (
            "cannot resume recv tank/b: Resuming recv on existing dataset without force\n",
            K::TargetExists,
        ),
        (
            "cannot restore to tank/b: destination already exists\n",
            K::TargetExists,
        ),
        (
            "cannot receive new filesystem stream: destination has snapshots (eg. tank/b@s1)\n\
             must destroy them to overwrite it\n",
            K::TargetHasNewerSnapshots,
        ),
        (
            "cannot receive new filesystem stream: destination has children (eg. tank/b/c)\n\
             cannot overwrite with a ZVOL\n",
            K::HasChildren,
        ),
        (
            "cannot restore to tank/b@s2: destination already exists\n",
            K::GuidMismatch,
        ),
        (
            "cannot receive incremental stream: IV set guid mismatch. See the 'zfs receive' \
             man page section\n discussing the limitations of raw encrypted send streams.\n",
            K::GuidMismatch,
        ),
        (
            "cannot receive incremental stream: local snapshot doesn't match the snapshot \
             in the provided stream\n",
            K::GuidMismatch,
        ),
        (
            "cannot receive incremental stream: destination tank/b contains partially-complete \
             state from \"zfs receive -s\".\n",
            K::ResumablePending,
        ),
        (
            "cannot receive incremental stream: destination tank/b space quota exceeded.\n",
            K::NoSpace,
        ),
        (
            "cannot receive: invalid stream (bad magic number)\n",
            K::StreamInvalid,
        ),
        (
            "cannot receive new filesystem stream: checksum mismatch\n",
            K::StreamInvalid,
        ),
        (
            "cannot receive new filesystem stream: incomplete stream\n",
            K::StreamTruncated,
        ),
        (
            "cannot receive incremental stream: checksum mismatch or incomplete stream.\n\
             Partially received snapshot is saved.\n\
             A resuming stream can be generated on the sending system by running:\n    \
             zfs send -t 1-10c2bca8e5-f0-789c636064000310a500c4ec50360710e72765a52697\n",
            K::StreamTruncated,
        ),
        (
            "cannot receive: failed to read from stream\n",
            K::StreamTruncated,
        ),
        (
            "cannot receive: stream has unsupported feature, feature flags = 4400004 \
             (unknown flags = 400000)\n",
            K::Unsupported,
        ),
        (
            "cannot receive new filesystem stream: kernel modules must be upgraded to receive \
             this stream.\n",
            K::Unsupported,
        ),
        (
            "cannot receive new filesystem stream: pool must be upgraded to receive this stream.\n",
            K::Unsupported,
        ),
        (
            "ERROR: \"zfs receive\" no longer supports deduplicated send streams.  Use\n\
             the \"zstream redup\" command to convert this stream to a regular,\n\
             non-deduplicated stream.\n\
             cannot receive new filesystem stream: operation not supported on this dataset\n",
            K::Unsupported,
        ),
        (
            "cannot receive incremental stream: incremental send stream requires -L \
             (--large-block), to match previous receive.\n",
            K::InvalidArgument,
        ),
        // A resume stream the partial state does not match (EINVAL with -s).
        (
            "cannot receive resume stream: kernel modules must be upgraded to receive this stream.\n",
            K::ResumeTokenInvalid,
        ),
        // lib/libzfs/libzfs_sendrecv.c: zfs_send_resume(), zfs_send_one(),
        // dump_ioctl().
        (
            "cannot resume send: resume token is corrupt (invalid format)\n",
            K::ResumeTokenInvalid,
        ),
        (
            "cannot resume send: 'tank/a@s2' is no longer the same snapshot used in the initial send\n",
            K::ResumeTokenInvalid,
        ),
        (
            "cannot resume send: 'tank/a@s2' used in the initial send no longer exists\n",
            K::ResumeTokenInvalid,
        ),
        (
            "cannot resume send: incremental source 0x9a3c5e1f2b7d4c61 no longer exists\n",
            K::ResumeTokenInvalid,
        ),
        (
            "warning: cannot send 'tank/a@s2': incremental source could not be found\n",
            K::MissingBase,
        ),
        (
            "warning: cannot send 'tank/a@s2': incremental source (tank/a@s1) does not exist\n",
            K::MissingBase,
        ),
        (
            "warning: cannot send 'tank/a@s1': not an earlier snapshot from the same fs\n",
            K::InvalidArgument,
        ),
        (
            "warning: cannot send 'tank/a@s2': Input/output error\n",
            K::PoolUnavailable,
        ),
        (
            "warning: cannot send 'tank/a@s2': Broken pipe\n",
            K::StreamTruncated,
        ),
        // cmd/zfs/zfs_main.c: destroy, rollback, bookmark, receive -A, usage.
        (
            "cannot destroy 'tank/a': filesystem has children\n\
             use '-r' to destroy the following datasets:\n\
             tank/a/b\n\
             tank/a@s1\n",
            K::HasChildren,
        ),
        (
            "cannot destroy 'tank/a@s1': snapshot has dependent clones\n\
             use '-R' to destroy the following datasets:\n\
             tank/c\n",
            K::HasClones,
        ),
        (
            "cannot rollback to 'tank/a@s1': more recent snapshots or bookmarks exist\n\
             use '-r' to force deletion of the following snapshots and bookmarks:\n\
             tank/a@s2\n\
             tank/a#b2\n",
            K::TargetHasNewerSnapshots,
        ),
        (
            "cannot rollback to 'tank/a@s1': clones of previous snapshots exist\n\
             use '-R' to force deletion of the following clones and dependents:\n\
             tank/c\n",
            K::HasClones,
        ),
        ("inherit used property is read-only\n", K::InvalidArgument),
        ("used property is read-only\n", K::InvalidArgument),
        (
            "cannot create bookmark 'tank/a#b1': bookmark exists\n",
            K::AlreadyExists,
        ),
        (
            "cannot create bookmark 'tank/a#b1': bookmark feature not enabled\n",
            K::Unsupported,
        ),
        (
            "'tank/b' does not have any resumable receive state to abort\n",
            K::NotFound,
        ),
        (
            "could not find any snapshots to destroy; check snapshot names.\n",
            K::NotFound,
        ),
        (
            "invalid option 'X'\n\
             usage:\n\
             \tsend [-DLPbcehnpsVvw] [-i|-I snapshot]\n\
             \t     [-R [-X dataset[,dataset]...]]     <snapshot>\n\
             \tsend [-nVvPe] -t <receive_resume_token>\n\
             \n\
             For the property list, run: zfs set|get\n",
            K::Unsupported,
        ),
        (
            "unrecognized command 'redact'\n\
             usage: zfs command args ...\n\
             where 'command' is one of the following:\n\
             \n\
             \tversion\n",
            K::Unsupported,
        ),
        (
            "missing snapshot argument\n\
             usage:\n\
             \tsnapshot [-r] [-o property=value] ... <filesystem|volume>@<snap> ...\n",
            K::InvalidArgument,
        ),
        // lib/libzfs/libzfs_pool.c via zpool_standard_error().
        ("cannot open 'tank': no such pool\n", K::NotFound),
    ];

    /// Transport failures: the first rows captured from OpenSSH 9.2p1 on this
    /// machine against 127.0.0.1 (exit status 255, lines end in `\r\n`), the
    /// rest built from OpenSSH's `ssh.c`, `sshconnect.c` and `clientloop.c`.
    const SSH: &[&str] = &[
        // Nothing listening.
        "ssh: connect to host 127.0.0.1 port 1: Connection refused\r\n",
        // sshd without our key.
        "Warning: Permanently added '[127.0.0.1]:22987' (ED25519) to the list of known hosts.\r\n\
         root@127.0.0.1: Permission denied (publickey).\r\n",
        // Unknown host key with StrictHostKeyChecking=yes.
        "No ED25519 host key is known for [127.0.0.1]:22987 and you have requested strict checking.\r\n\
         Host key verification failed.\r\n",
        // A server that accepts and closes.
        "kex_exchange_identification: read: Connection reset by peer\r\n\
         Connection reset by 127.0.0.1 port 22988\r\n",
        // The server side of a running session killed.
        "Connection to 127.0.0.1 closed by remote host.\r\n",
        // Built from the OpenSSH sources.
        "ssh: Could not resolve hostname backup.example: Name or service not known\r\n",
        "kex_exchange_identification: Connection closed by remote host\r\n\
         Connection closed by 192.0.2.7 port 22\r\n",
        "client_loop: send disconnect: Broken pipe\r\n",
        "Timeout, server backup.example not responding.\r\n",
    ];

    /// Captured on this machine: the shell in front of zfs without zfs
    /// (exit status 127).
    const SPAWN: &[&str] = &[
        "/bin/bash: line 1: zfs: command not found\n",
        "/bin/sh: 1: zfs: not found\n",
    ];

    /// Runs `classify` over `rows`; reports every mismatch at once.
    fn check(rows: &[(&str, ZfsErrorKind)]) {
        let wrong: Vec<String> = rows
            .iter()
            .filter(|(text, want)| classify(text) != *want)
            .map(|(text, want)| format!("{text:?}: got {:?}, want {want:?}", classify(text)))
            .collect();
        assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
    }

    #[test]
    fn zfs_fuse_messages() {
        check(FUSE);
    }

    #[test]
    fn openzfs_messages() {
        check(OPENZFS);
    }

    #[test]
    fn ssh_failures_are_transport() {
        for text in SSH {
            assert_eq!(classify(text), K::Transport, "{text:?}");
            assert_eq!(
                classify_ssh(text, Some(255)),
                Some(K::Transport),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_missing_zfs_binary_is_spawn() {
        for text in SPAWN {
            assert_eq!(classify(text), K::Spawn, "{text:?}");
        }
    }

    #[test]
    fn classify_ssh_needs_status_255_and_an_ssh_message() {
        let refused = SSH[0];
        assert_eq!(classify_ssh(refused, Some(1)), None);
        assert_eq!(classify_ssh(refused, None), None);
        // zfs-fuse's `zfs holds` exits 255 too (its message on stdout).
        assert_eq!(
            classify_ssh(
                "internal error: /usr/lib/zfs/pyzfs.py not found\n",
                Some(255)
            ),
            None
        );
        assert_eq!(classify_ssh("", Some(255)), None);
        // The remote zfs ran (status passed through); ssh only relayed it.
        let remote = "cannot open 'clsf_nope_pool': dataset does not exist\n";
        assert_eq!(classify_ssh(remote, Some(1)), None);
        assert_eq!(classify(remote), K::NotFound);
    }

    #[test]
    fn every_kind_stderr_can_express_has_a_row() {
        let all = [
            K::NotFound,
            K::AlreadyExists,
            K::Busy,
            K::Held,
            K::HasClones,
            K::HasChildren,
            K::NoSpace,
            K::PermissionDenied,
            K::ReadOnly,
            K::Unsupported,
            K::InvalidArgument,
            K::PoolUnavailable,
            K::ServiceUnavailable,
            K::StreamInvalid,
            K::StreamTruncated,
            K::MissingBase,
            K::TargetModified,
            K::TargetHasNewerSnapshots,
            K::TargetExists,
            K::GuidMismatch,
            K::ResumeTokenInvalid,
            K::ResumablePending,
            K::Transport,
            K::Killed,
            K::Spawn,
            K::Other,
        ];
        let covered: Vec<ZfsErrorKind> = FUSE
            .iter()
            .chain(OPENZFS)
            .map(|(_, kind)| kind.clone())
            .chain(SSH.iter().chain(SPAWN).map(|text| classify(text)))
            .collect();
        let missing: Vec<&ZfsErrorKind> =
            all.iter().filter(|kind| !covered.contains(kind)).collect();
        assert!(missing.is_empty(), "no row for {missing:?}");
    }

    #[test]
    fn unknown_text_is_other() {
        assert_eq!(classify("something went sideways\n"), K::Other);
        assert_eq!(
            classify("cannot frobnicate 'tank/a': the moon is in the wrong phase\n"),
            K::Other
        );
    }

    #[test]
    fn empty_and_odd_input_never_panics() {
        assert_eq!(classify(""), K::Other);
        assert_eq!(classify("\n\r\n \t\n"), K::Other);
        assert_eq!(classify("usage:"), K::InvalidArgument);
        for odd in [
            "'",
            "''",
            "'''",
            "a'",
            "'a",
            "é'ü'ß",
            "cannot restore to ",
            "\u{0}'\u{fffd}'",
        ] {
            let _ = classify(odd);
            assert_eq!(classify_ssh(odd, Some(255)), None);
        }
    }

    #[test]
    fn names_never_match_reasons() {
        // Dataset names may contain spaces; a quoted name holding a reason
        // must not decide the kind.
        assert_eq!(
            classify("cannot open 'tank/out of space': dataset does not exist\n"),
            K::NotFound
        );
        assert_eq!(
            classify("cannot create 'tank/dataset is busy': dataset already exists\n"),
            K::AlreadyExists
        );
        // Apostrophes are not quotes.
        assert_eq!(
            blank_quoted("it's being held. run 'zfs holds' to see"),
            "it's being held. run '' to see"
        );
        assert_eq!(
            blank_quoted("doesn't match 'tank/a@s1': x"),
            "doesn't match '': x"
        );
    }

    #[test]
    fn wrapped_reasons_are_joined() {
        assert_eq!(
            normalized_lines(
                "cannot x: most recent snapshot of t/b does not\r\n  match incremental source\r\n"
            )
            .join(" "),
            "cannot x: most recent snapshot of t/b does not match incremental source"
        );
    }
}
