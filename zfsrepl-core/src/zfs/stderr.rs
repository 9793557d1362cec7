//! Classifies `zfs` stderr into [`ZfsErrorKind`]s.

use super::ZfsErrorKind;

/// Classifies the stderr of a failed `zfs` command.
#[must_use]
pub fn classify(stderr: &str) -> ZfsErrorKind {
    let _ = stderr;
    ZfsErrorKind::Other
}

/// Recognizes ssh transport failures (temporary stub until the classifier lands).
#[must_use]
pub fn classify_ssh(stderr: &str, status: Option<i32>) -> Option<ZfsErrorKind> {
    (status == Some(255) && stderr.contains("ssh:")).then_some(ZfsErrorKind::Transport)
}
