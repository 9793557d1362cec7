//! Classifies `zfs` stderr into [`ZfsErrorKind`]s.

use super::ZfsErrorKind;

/// Classifies the stderr of a failed `zfs` command.
#[must_use]
pub fn classify(stderr: &str) -> ZfsErrorKind {
    let _ = stderr;
    ZfsErrorKind::Other
}
