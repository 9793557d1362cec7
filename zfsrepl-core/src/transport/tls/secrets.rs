//! stunnel's `PSKsecrets` file: one `IDENTITY:KEY` per line.
//!
//! The rules are stunnel 5.68's, checked against the real binary (see
//! `docs/design/network.md`):
//!
//! - the identity is everything before the first `:`, the key everything
//!   after it (so a key may contain `:`, an identity may not); nothing is
//!   trimmed but the line end (`\n`, or `\r\n`);
//! - a key of an even number of hexadecimal digits is decoded to binary,
//!   any other key is used as its bytes;
//! - the key, decoded, has 16 to 512 bytes; the identity at most 255;
//! - empty lines are skipped.
//!
//! Where stunnel is lax we refuse, with the line number, so that a mistake
//! cannot become a key: an empty identity, an identity that is not UTF-8
//! or has control characters (it is logged), a duplicate identity (stunnel
//! picks one of the two), a NUL byte. Our one extension: a line whose first
//! byte is `#` is a comment (stunnel would read a `#name:key` line as the
//! identity `#name`, which no peer of ours uses).
//!
//! The file itself must belong to the user running zfsrepl and be readable
//! by nobody else ([`PskSecrets::load`]); stunnel only warns about this.
//! Keys live in [`PskKey`], which wipes its bytes when dropped.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, Zeroizing};

/// The shortest key stunnel accepts (and TLS 1.3 PSKs need), in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// The longest key OpenSSL accepts (`PSK_MAX_PSK_LEN`), in bytes.
pub const MAX_KEY_LEN: usize = 512;
/// The longest identity OpenSSL sends (`PSK_MAX_IDENTITY_LEN - 1`), in bytes.
pub const MAX_IDENTITY_LEN: usize = 255;
/// The largest secrets file we read: a few thousand links' worth.
const MAX_FILE_LEN: u64 = 1 << 20;

/// A pre-shared key. Its bytes are wiped when it is dropped and never
/// printed (`Debug` shows the length only).
#[derive(Clone, PartialEq, Eq)]
pub struct PskKey(Zeroizing<Vec<u8>>);

impl PskKey {
    /// A key from its bytes, checked for length.
    ///
    /// # Errors
    /// [`LineProblem::KeyTooShort`] / [`LineProblem::KeyTooLong`] when it
    /// has fewer than [`MIN_KEY_LEN`] or more than [`MAX_KEY_LEN`] bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, LineProblem> {
        let key = Self(Zeroizing::new(bytes));
        match key.0.len() {
            n if n < MIN_KEY_LEN => Err(LineProblem::KeyTooShort(n)),
            n if n > MAX_KEY_LEN => Err(LineProblem::KeyTooLong(n)),
            _ => Ok(key),
        }
    }

    /// The key's bytes (what OpenSSL is given).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Its length in bytes.
    #[must_use]
    #[allow(clippy::len_without_is_empty)] // a key is never empty
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for PskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PskKey(<{} bytes>)", self.0.len())
    }
}

/// What is wrong with one line of a secrets file. Never holds key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineProblem {
    /// No `:` on the line.
    #[error("not in IDENTITY:KEY format")]
    NotIdentityKey,
    /// Nothing before the `:`.
    #[error("the identity is empty")]
    EmptyIdentity,
    /// The identity is longer than [`MAX_IDENTITY_LEN`] bytes.
    #[error("the identity has {0} bytes, more than {MAX_IDENTITY_LEN}")]
    IdentityTooLong(usize),
    /// The identity is not UTF-8.
    #[error("the identity is not UTF-8")]
    IdentityNotUtf8,
    /// The identity has a control character (it would garble the logs).
    #[error("the identity has a control character")]
    IdentityControl,
    /// A NUL byte: OpenSSL and stunnel would cut the line there.
    #[error("the line has a NUL byte")]
    Nul,
    /// The key, decoded, is shorter than [`MIN_KEY_LEN`] bytes.
    #[error(
        "the key has {0} bytes, fewer than {MIN_KEY_LEN} (use 32 or more random bytes, e.g. 64 hex digits)"
    )]
    KeyTooShort(usize),
    /// The key, decoded, is longer than [`MAX_KEY_LEN`] bytes.
    #[error("the key has {0} bytes, more than {MAX_KEY_LEN}")]
    KeyTooLong(usize),
    /// The identity already appeared on an earlier line.
    #[error("identity {identity:?} already appeared on line {first}")]
    Duplicate {
        /// The identity.
        identity: String,
        /// The line it first appeared on.
        first: usize,
    },
}

/// Why a secrets file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// The file could not be opened or read.
    #[error("PSK secrets file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Other users may read or write the file.
    #[error(
        "PSK secrets file {path} has mode {mode:04o}: group and others must have no access (chmod 600 {path})"
    )]
    InsecureMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file belongs to another user.
    #[error(
        "PSK secrets file {path} belongs to uid {owner}, not to the user running zfsrepl (uid {euid})"
    )]
    WrongOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        euid: u32,
    },
    /// Not a regular file (or larger than 1 MiB).
    #[error("PSK secrets file {path} is not a regular file of at most 1 MiB")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// A line is malformed.
    #[error("PSK secrets file {path}, line {line}: {problem}")]
    Line {
        /// The file (empty when parsed from memory).
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        problem: LineProblem,
    },
    /// No identity at all.
    #[error("PSK secrets file {path} has no IDENTITY:KEY line")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The identity asked for is not in the file.
    #[error("identity {identity:?} is not in the PSK secrets file")]
    NoSuchIdentity {
        /// The identity.
        identity: String,
    },
}

/// The identities and keys of a secrets file, in file order (the first is
/// a client's default identity, as in stunnel).
#[derive(Clone, PartialEq, Eq)]
pub struct PskSecrets {
    entries: Vec<(String, PskKey)>,
}

impl fmt::Debug for PskSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.identities()).finish()
    }
}

impl PskSecrets {
    /// Reads and checks a secrets file: it must be a regular file owned by
    /// the effective user and have no group or other permission bits.
    ///
    /// # Errors
    /// [`SecretsError`]: unreadable, insecure, malformed or empty.
    pub fn load(path: &Path) -> Result<Self, SecretsError> {
        let io = |source| SecretsError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        // Checked on the open descriptor: the file we read is the file we
        // checked.
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() || meta.len() > MAX_FILE_LEN {
            return Err(SecretsError::NotAFile {
                path: path.to_owned(),
            });
        }
        let euid = effective_uid();
        if meta.uid() != euid {
            return Err(SecretsError::WrongOwner {
                path: path.to_owned(),
                owner: meta.uid(),
                euid,
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretsError::InsecureMode {
                path: path.to_owned(),
                mode,
            });
        }
        let mut text = Zeroizing::new(Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0)));
        file.by_ref()
            .take(MAX_FILE_LEN + 1)
            .read_to_end(&mut text)
            .map_err(io)?;
        Self::parse(&text).map_err(|e| e.with_path(path))
    }

    /// Parses the text of a secrets file (see the module docs for the
    /// rules). Errors carry an empty path; [`Self::load`] fills it in.
    ///
    /// # Errors
    /// [`SecretsError::Line`] for the first bad line, [`SecretsError::Empty`]
    /// when no line holds an identity.
    pub fn parse(text: &[u8]) -> Result<Self, SecretsError> {
        let mut entries: Vec<(String, PskKey, usize)> = Vec::new();
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line_no = i + 1;
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let bad = |problem| SecretsError::Line {
                path: PathBuf::new(),
                line: line_no,
                problem,
            };
            let (identity, key) = parse_line(line).map_err(bad)?;
            if let Some((_, _, first)) = entries.iter().find(|(id, _, _)| *id == identity) {
                return Err(bad(LineProblem::Duplicate {
                    identity,
                    first: *first,
                }));
            }
            entries.push((identity, key, line_no));
        }
        if entries.is_empty() {
            return Err(SecretsError::Empty {
                path: PathBuf::new(),
            });
        }
        Ok(Self {
            entries: entries.into_iter().map(|(id, key, _)| (id, key)).collect(),
        })
    }

    /// Secrets from identity/key pairs built in memory (tests, generated
    /// configurations).
    ///
    /// # Errors
    /// The same checks as a file's lines.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, SecretsError> {
        let mut entries: Vec<(String, PskKey)> = Vec::new();
        for (i, (identity, key)) in pairs.into_iter().enumerate() {
            let bad = |problem| SecretsError::Line {
                path: PathBuf::new(),
                line: i + 1,
                problem,
            };
            check_identity(identity.as_bytes()).map_err(bad)?;
            if let Some(first) = entries.iter().position(|(id, _)| id == identity) {
                return Err(bad(LineProblem::Duplicate {
                    identity: identity.to_owned(),
                    first: first + 1,
                }));
            }
            entries.push((identity.to_owned(), PskKey::new(key.to_vec()).map_err(bad)?));
        }
        if entries.is_empty() {
            return Err(SecretsError::Empty {
                path: PathBuf::new(),
            });
        }
        Ok(Self { entries })
    }

    /// The key of `identity` (bytes as received from a client).
    #[must_use]
    pub fn key(&self, identity: &[u8]) -> Option<&PskKey> {
        self.entries
            .iter()
            .find(|(id, _)| id.as_bytes() == identity)
            .map(|(_, k)| k)
    }

    /// The identity a client uses: `identity` if given (it must be in the
    /// file), else the file's first, as stunnel's `PSKidentity` default.
    ///
    /// # Errors
    /// [`SecretsError::NoSuchIdentity`].
    pub fn client_identity(&self, identity: Option<&str>) -> Result<(&str, &PskKey), SecretsError> {
        match identity {
            None => Ok(self.entries.first().map(|(id, k)| (id.as_str(), k)).ok_or(
                SecretsError::NoSuchIdentity {
                    identity: String::new(),
                },
            )?),
            Some(want) => self
                .entries
                .iter()
                .find(|(id, _)| id == want)
                .map(|(id, k)| (id.as_str(), k))
                .ok_or_else(|| SecretsError::NoSuchIdentity {
                    identity: want.to_owned(),
                }),
        }
    }

    /// Keeps only the identities for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.entries.retain(|(id, _)| keep(id));
    }

    /// The identities, in file order.
    pub fn identities(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(id, _)| id.as_str())
    }

    /// How many identities.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never true for a parsed file (an empty one is refused).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl SecretsError {
    fn with_path(self, p: &Path) -> Self {
        match self {
            Self::Line { line, problem, .. } => Self::Line {
                path: p.to_owned(),
                line,
                problem,
            },
            Self::Empty { .. } => Self::Empty { path: p.to_owned() },
            other => other,
        }
    }
}

fn check_identity(id: &[u8]) -> Result<&str, LineProblem> {
    if id.is_empty() {
        return Err(LineProblem::EmptyIdentity);
    }
    if id.contains(&0) {
        return Err(LineProblem::Nul);
    }
    if id.len() > MAX_IDENTITY_LEN {
        return Err(LineProblem::IdentityTooLong(id.len()));
    }
    let s = std::str::from_utf8(id).map_err(|_| LineProblem::IdentityNotUtf8)?;
    if s.chars().any(char::is_control) {
        return Err(LineProblem::IdentityControl);
    }
    Ok(s)
}

fn parse_line(line: &[u8]) -> Result<(String, PskKey), LineProblem> {
    if line.contains(&0) {
        return Err(LineProblem::Nul);
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(LineProblem::NotIdentityKey)?;
    let identity = check_identity(&line[..colon])?.to_owned();
    let key = &line[colon + 1..];
    let bytes = match decode_hex(key) {
        Some(bin) => bin,
        None => key.to_vec(),
    };
    Ok((identity, PskKey::new(bytes)?))
}

/// stunnel's rule: an even number of hex digits (either case) is binary.
fn decode_hex(s: &[u8]) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 2);
    for pair in s.chunks_exact(2) {
        let hi = char::from(pair[0]).to_digit(16);
        let lo = char::from(pair[1]).to_digit(16);
        match (hi, lo) {
            // Both digits are < 16: the byte fits.
            (Some(h), Some(l)) => out.push(u8::try_from(h * 16 + l).unwrap_or(0)),
            _ => {
                out.zeroize();
                return None;
            }
        }
    }
    Some(out)
}

/// The effective uid of this process.
#[allow(unsafe_code)]
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, cannot fail and touches no
    // memory of ours.
    unsafe { libc::geteuid() }
}
