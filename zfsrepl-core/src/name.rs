//! Validated ZFS names: datasets, snapshots, bookmarks, and the `Guid`/`Txg`
//! numbers that identify versions.
//!
//! The checks follow OpenZFS's `zfs_namecheck.c`: a name is at most 255 bytes,
//! components are non-empty and made of ASCII letters, digits, `-`, `_`, `.`,
//! `:` and space; `.` and `..` are not components; the pool (first component)
//! starts with a letter and is not a reserved vdev word. A leading `-` in a
//! component below the pool is legal ZFS, and so are spaces: every argv we
//! build must survive them, which is why the rest of the crate only takes
//! these types, never `&str`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest name ZFS accepts, in bytes (`ZFS_MAX_DATASET_NAME_LEN` - 1).
pub const MAX_NAME_LEN: usize = 255;

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than ZFS allows.
    #[error("name {name:?} is {len} bytes long; ZFS allows at most {MAX_NAME_LEN}")]
    TooLong {
        /// The offending name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A character ZFS does not allow in names.
    #[error(
        "name {name:?} contains {ch:?} at byte {pos}; ZFS allows letters, digits, space and - _ . :"
    )]
    InvalidChar {
        /// The offending name.
        name: String,
        /// The character.
        ch: char,
        /// Its byte offset.
        pos: usize,
    },
    /// Two slashes in a row, or a leading or trailing slash.
    #[error("name {name:?} has an empty component (leading, trailing or double '/')")]
    EmptyComponent {
        /// The offending name.
        name: String,
    },
    /// A component that is exactly `.` or `..`.
    #[error("name {name:?} has a '.' or '..' component")]
    DotComponent {
        /// The offending name.
        name: String,
    },
    /// The pool name does not begin with a letter.
    #[error("pool name in {name:?} must begin with a letter")]
    PoolNotLetter {
        /// The offending name.
        name: String,
    },
    /// The pool name is a reserved word.
    #[error(
        "pool name in {name:?} is reserved (mirror, raidz, draid, spare, log, or a disk-like cN...)"
    )]
    PoolReserved {
        /// The offending name.
        name: String,
    },
    /// `@` or `#` where this kind of name does not allow it.
    #[error("{what} name {name:?}: {problem}")]
    Delimiter {
        /// What kind of name was being parsed.
        what: &'static str,
        /// The offending name.
        name: String,
        /// What is wrong.
        problem: &'static str,
    },
}

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | ' ')
}

/// Checks one short component (the part after `@` or `#`, or one path element).
fn check_component(full: &str, comp: &str, offset: usize) -> Result<(), NameError> {
    if comp.is_empty() {
        return Err(NameError::EmptyComponent { name: full.into() });
    }
    if let Some((i, ch)) = comp.char_indices().find(|&(_, c)| !valid_char(c)) {
        return Err(NameError::InvalidChar {
            name: full.into(),
            ch,
            pos: offset + i,
        });
    }
    if comp == "." || comp == ".." {
        return Err(NameError::DotComponent { name: full.into() });
    }
    Ok(())
}

fn check_len(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            name: s.into(),
            len: s.len(),
        });
    }
    Ok(())
}

fn check_dataset_path(full: &str, path: &str) -> Result<(), NameError> {
    let mut offset = 0;
    for (i, comp) in path.split('/').enumerate() {
        check_component(full, comp, offset)?;
        if i == 0 {
            check_pool(full, comp)?;
        }
        offset += comp.len() + 1;
    }
    Ok(())
}

fn check_pool(full: &str, pool: &str) -> Result<(), NameError> {
    if !pool.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(NameError::PoolNotLetter { name: full.into() });
    }
    // libzfs refuses these prefixes when creating a pool (zpool_name_valid),
    // and pool_namecheck refuses disk-like names such as c0t0.
    let reserved = ["mirror", "raidz", "draid", "spare"]
        .iter()
        .any(|w| pool.starts_with(w))
        || (pool.len() >= 2 && pool.starts_with('c') && pool.as_bytes()[1].is_ascii_digit());
    if reserved || pool == "log" {
        return Err(NameError::PoolReserved { name: full.into() });
    }
    Ok(())
}

/// A filesystem or volume name such as `tank/data/off products`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatasetName(String);

impl DatasetName {
    /// Parses and validates a dataset name.
    ///
    /// # Errors
    /// [`NameError`] saying what is wrong and where.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_len(s)?;
        if s.contains('@') || s.contains('#') {
            return Err(NameError::Delimiter {
                what: "dataset",
                name: s.into(),
                problem: "'@' and '#' belong to snapshot and bookmark names",
            });
        }
        check_dataset_path(s, s)?;
        Ok(Self(s.to_owned()))
    }

    /// The name as ZFS prints it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pool: the first component.
    #[must_use]
    pub fn pool(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The parent dataset, or `None` for a pool's root dataset.
    #[must_use]
    pub fn parent(&self) -> Option<DatasetName> {
        self.0.rfind('/').map(|i| Self(self.0[..i].to_owned()))
    }

    /// The last component.
    #[must_use]
    pub fn basename(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// How many `/` separate this name from its pool (0 for the pool itself).
    #[must_use]
    pub fn depth(&self) -> usize {
        self.0.bytes().filter(|&b| b == b'/').count()
    }

    /// A child dataset `self/component`.
    ///
    /// # Errors
    /// [`NameError`] when the component or the resulting name is invalid.
    pub fn child(&self, component: &str) -> Result<DatasetName, NameError> {
        if component.contains('/') {
            return Err(NameError::Delimiter {
                what: "child component",
                name: component.into(),
                problem: "a child component cannot contain '/'",
            });
        }
        Self::parse(&format!("{}/{component}", self.0))
    }

    /// True when `self` is `other` or lies below it.
    #[must_use]
    pub fn is_within(&self, other: &DatasetName) -> bool {
        self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }

    /// Replaces the `from` prefix of this name with `to` (for mapping a
    /// source subtree onto a target subtree).
    ///
    /// Returns `None` when `self` is not within `from`, or when the result
    /// would be too long.
    #[must_use]
    pub fn rebase(&self, from: &DatasetName, to: &DatasetName) -> Option<DatasetName> {
        if !self.is_within(from) {
            return None;
        }
        Self::parse(&format!("{}{}", to.0, &self.0[from.0.len()..])).ok()
    }

    /// The snapshot `self@snap`.
    ///
    /// # Errors
    /// [`NameError`] when `snap` is not a valid snapshot component.
    pub fn snapshot(&self, snap: &str) -> Result<SnapshotName, NameError> {
        SnapshotName::new(self.clone(), snap)
    }

    /// The bookmark `self#mark`.
    ///
    /// # Errors
    /// [`NameError`] when `mark` is not a valid bookmark component.
    pub fn bookmark(&self, mark: &str) -> Result<BookmarkName, NameError> {
        BookmarkName::new(self.clone(), mark)
    }
}

/// Splits `s` at the single `delim`, checking both halves.
fn split_version(
    s: &str,
    delim: char,
    what: &'static str,
) -> Result<(DatasetName, String), NameError> {
    check_len(s)?;
    let Some((ds, tail)) = s.split_once(delim) else {
        return Err(NameError::Delimiter {
            what,
            name: s.into(),
            problem: if delim == '@' {
                "missing '@'"
            } else {
                "missing '#'"
            },
        });
    };
    if tail.contains('@') || tail.contains('#') || tail.contains('/') {
        return Err(NameError::Delimiter {
            what,
            name: s.into(),
            problem: "the part after the delimiter must be one component without '@', '#' or '/'",
        });
    }
    let dataset = DatasetName::parse(ds).map_err(|e| match e {
        NameError::Empty => NameError::EmptyComponent { name: s.into() },
        NameError::Delimiter { .. } => NameError::Delimiter {
            what,
            name: s.into(),
            problem: "only one '@' or '#' is allowed",
        },
        other => other,
    })?;
    check_component(s, tail, ds.len() + 1)?;
    Ok((dataset, tail.to_owned()))
}

/// A snapshot name, `dataset@snap`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotName {
    full: String,
    at: usize,
}

impl SnapshotName {
    /// Parses `dataset@snap`.
    ///
    /// # Errors
    /// [`NameError`] saying what is wrong.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let (ds, _) = split_version(s, '@', "snapshot")?;
        Ok(Self {
            at: ds.0.len(),
            full: s.to_owned(),
        })
    }

    /// Builds `dataset@snap`.
    ///
    /// # Errors
    /// [`NameError`] when `snap` is invalid or the name is too long.
    pub fn new(dataset: DatasetName, snap: &str) -> Result<Self, NameError> {
        Self::parse(&format!("{}@{snap}", dataset.0))
    }

    /// The whole name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The dataset part.
    #[must_use]
    pub fn dataset(&self) -> DatasetName {
        DatasetName(self.full[..self.at].to_owned())
    }

    /// The dataset part, borrowed.
    #[must_use]
    pub fn dataset_str(&self) -> &str {
        &self.full[..self.at]
    }

    /// The part after `@`.
    #[must_use]
    pub fn snap(&self) -> &str {
        &self.full[self.at + 1..]
    }
}

/// A bookmark name, `dataset#mark`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BookmarkName {
    full: String,
    hash: usize,
}

impl BookmarkName {
    /// Parses `dataset#mark`.
    ///
    /// # Errors
    /// [`NameError`] saying what is wrong.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let (ds, _) = split_version(s, '#', "bookmark")?;
        Ok(Self {
            hash: ds.0.len(),
            full: s.to_owned(),
        })
    }

    /// Builds `dataset#mark`.
    ///
    /// # Errors
    /// [`NameError`] when `mark` is invalid or the name is too long.
    pub fn new(dataset: DatasetName, mark: &str) -> Result<Self, NameError> {
        Self::parse(&format!("{}#{mark}", dataset.0))
    }

    /// The whole name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The dataset part.
    #[must_use]
    pub fn dataset(&self) -> DatasetName {
        DatasetName(self.full[..self.hash].to_owned())
    }

    /// The part after `#`.
    #[must_use]
    pub fn mark(&self) -> &str {
        &self.full[self.hash + 1..]
    }
}

/// Any name ZFS lists: a dataset, a snapshot or a bookmark.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EntityName {
    /// A filesystem or volume.
    Dataset(DatasetName),
    /// A snapshot.
    Snapshot(SnapshotName),
    /// A bookmark.
    Bookmark(BookmarkName),
}

impl EntityName {
    /// Parses whichever kind `s` is, by its delimiter.
    ///
    /// # Errors
    /// [`NameError`] when the name is invalid.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains('@') {
            SnapshotName::parse(s).map(Self::Snapshot)
        } else if s.contains('#') {
            BookmarkName::parse(s).map(Self::Bookmark)
        } else {
            DatasetName::parse(s).map(Self::Dataset)
        }
    }

    /// The name as ZFS prints it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Dataset(d) => d.as_str(),
            Self::Snapshot(s) => s.as_str(),
            Self::Bookmark(b) => b.as_str(),
        }
    }

    /// The dataset this name is or belongs to.
    #[must_use]
    pub fn dataset(&self) -> DatasetName {
        match self {
            Self::Dataset(d) => d.clone(),
            Self::Snapshot(s) => s.dataset(),
            Self::Bookmark(b) => b.dataset(),
        }
    }
}

macro_rules! name_traits {
    ($t:ty, $field:tt) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.$field)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &self.$field)
            }
        }
        impl FromStr for $t {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
        impl TryFrom<&str> for $t {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.$field
            }
        }
        impl AsRef<std::ffi::OsStr> for $t {
            fn as_ref(&self) -> &std::ffi::OsStr {
                self.$field.as_ref()
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.$field)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_traits!(DatasetName, 0);
name_traits!(SnapshotName, full);
name_traits!(BookmarkName, full);

impl fmt::Display for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

macro_rules! number {
    ($(#[$doc:meta])* $t:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $t(pub u64);

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $t {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    };
}

number!(
    /// A snapshot's or dataset's globally unique identifier. Replication
    /// matches versions by guid, never by name alone.
    Guid
);
number!(
    /// A transaction group number: orders versions within a pool.
    Txg
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_legal_hostile_names() {
        for s in [
            "tank",
            "tank/a",
            "tank/with space",
            "tank/-leading dash",
            "tank/a:b.c_d-e",
            "tank/...",
            "t/.x",
            "tank/a/b/c/d",
        ] {
            DatasetName::parse(s).unwrap();
        }
        let s = SnapshotName::parse("tank/-a b@snap: 1").unwrap();
        assert_eq!(s.dataset().as_str(), "tank/-a b");
        assert_eq!(s.snap(), "snap: 1");
        let b = BookmarkName::parse("tank/x#-m").unwrap();
        assert_eq!(b.mark(), "-m");
        assert_eq!(b.dataset().as_str(), "tank/x");
    }

    #[test]
    fn rejects_with_reasons() {
        let long = format!("tank/{}", "a".repeat(251));
        let cases: &[(&str, &str)] = &[
            ("", "name is empty"),
            ("/tank", "empty component"),
            ("tank/", "empty component"),
            ("tank//a", "empty component"),
            ("tank/a*b", "contains '*' at byte 6"),
            ("tank/é", "contains 'é'"),
            ("tank/./a", "'.' or '..' component"),
            ("tank/..", "'.' or '..' component"),
            ("1tank", "must begin with a letter"),
            ("-tank/a", "must begin with a letter"),
            ("mirror1/a", "reserved"),
            ("c0t0/a", "reserved"),
            ("tank@x", "'@' and '#' belong"),
            (&long, "ZFS allows at most 255"),
            ("tank/a%b", "contains '%'"),
        ];
        for (input, want) in cases {
            let err = DatasetName::parse(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err:?} lacks {want:?}");
        }
        let snap_cases: &[(&str, &str)] = &[
            ("tank", "missing '@'"),
            ("tank@", "empty component"),
            ("@x", "empty component"),
            ("tank@a@b", "one component"),
            ("tank@a/b", "one component"),
            ("tank@a#b", "one component"),
            ("tank@a$b", "contains '$'"),
            ("tank#a@b", "only one"),
        ];
        for (input, want) in snap_cases {
            let err = SnapshotName::parse(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err:?} lacks {want:?}");
        }
        assert!(BookmarkName::parse("tank@a").is_err());
        assert!(BookmarkName::parse("tank#").is_err());
    }

    #[test]
    fn relations() {
        let a = DatasetName::parse("tank/a").unwrap();
        let ab = DatasetName::parse("tank/a/b c").unwrap();
        let ax = DatasetName::parse("tank/ax").unwrap();
        assert!(ab.is_within(&a));
        assert!(a.is_within(&a));
        assert!(!ax.is_within(&a));
        assert_eq!(ab.parent().unwrap(), a);
        assert_eq!(ab.basename(), "b c");
        assert_eq!(ab.depth(), 2);
        assert_eq!(a.pool(), "tank");
        let dst = DatasetName::parse("backup/off").unwrap();
        assert_eq!(ab.rebase(&a, &dst).unwrap().as_str(), "backup/off/b c");
        assert!(ax.rebase(&a, &dst).is_none());
        assert!(a.child("x/y").is_err());
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 _.:-]{1,12}".prop_filter("dot components", |s| s != "." && s != "..")
    }

    fn dataset() -> impl Strategy<Value = String> {
        (
            "[a-zA-Z][a-zA-Z0-9_.:-]{0,8}",
            proptest::collection::vec(component(), 0..5),
        )
            .prop_filter_map("reserved pool", |(pool, rest)| {
                let s = std::iter::once(pool)
                    .chain(rest)
                    .collect::<Vec<_>>()
                    .join("/");
                DatasetName::parse(s.split('/').next()?).ok()?;
                Some(s)
            })
    }

    proptest! {
        #[test]
        fn dataset_round_trip(s in dataset()) {
            let d = DatasetName::parse(&s).unwrap();
            prop_assert_eq!(d.to_string(), s.clone());
            prop_assert_eq!(DatasetName::parse(d.as_str()).unwrap(), d.clone());
            let json = serde_json::to_string(&d).unwrap();
            prop_assert_eq!(serde_json::from_str::<DatasetName>(&json).unwrap(), d);
        }

        #[test]
        fn snapshot_round_trip(ds in dataset(), snap in component()) {
            let s = format!("{ds}@{snap}");
            let n = SnapshotName::parse(&s).unwrap();
            prop_assert_eq!(n.as_str(), s.as_str());
            prop_assert_eq!(n.dataset_str(), ds.as_str());
            prop_assert_eq!(n.snap(), snap.as_str());
            prop_assert_eq!(EntityName::parse(&s).unwrap(), EntityName::Snapshot(n));
        }

        #[test]
        fn bookmark_round_trip(ds in dataset(), mark in component()) {
            let s = format!("{ds}#{mark}");
            let n = BookmarkName::parse(&s).unwrap();
            prop_assert_eq!(n.to_string(), s);
            prop_assert_eq!(n.mark(), mark.as_str());
        }

        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = EntityName::parse(&s);
        }

        #[test]
        fn accepted_names_obey_the_rules(s in "[a-z/@#. -]{0,20}") {
            if let Ok(n) = EntityName::parse(&s) {
                prop_assert!(n.as_str().len() <= MAX_NAME_LEN);
                prop_assert!(!n.as_str().contains("//"));
                prop_assert!(n.as_str().matches(['@', '#']).count() <= 1);
            }
        }
    }
}
