//! The fixture DSL: a pool tree written one entity per line, shared by
//! model tests and real-pool tests.
//!
//! ```text
//! # a comment
//! + pool                          a pool (its root filesystem)
//! + pool/data                     a filesystem (missing parents are created)
//! + pool/with space               names may hold spaces, ':' and a leading '-'
//! + "pool/a b@c d" hold=keep      quotes delimit a name; attributes follow
//! + pool/data@a zfsrepl:keep=1    a snapshot, with a user property
//! + pool/data#a                   a bookmark of pool/data@a (or else of the
//!                                 latest snapshot of pool/data)
//! + pool/vol type=volume          a volume
//! + pool/clone origin=pool/data@a a clone
//! ~ pool/data bytes=8192          writes data (default 4096 bytes)
//! ```
//!
//! Attributes are `key=value` tokens after the name (values may be quoted):
//! `type=filesystem|volume`, `origin=SNAPSHOT` and `mounted=yes|no` on
//! datasets, `hold=TAG` (repeatable) on snapshots, `bytes=N` on writes, and
//! any settable or user property otherwise. An unquoted name runs up to the
//! first token with `=` (names never contain `=`).

use crate::name::{DatasetName, EntityName, SnapshotName};
use crate::zfs::{DatasetKind, ZfsError};

use super::props::{self, On};
use super::state::State;

/// What a fixture line does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixtureOp {
    /// `+ name`: create the pool, dataset, snapshot or bookmark.
    Create,
    /// `~ dataset`: write data into the dataset.
    Write,
}

/// One line of a fixture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureEntry {
    /// The line number, from 1.
    pub line: usize,
    /// What the line does.
    pub op: FixtureOp,
    /// The entity it names.
    pub name: EntityName,
    /// Its `key=value` attributes, in order.
    pub attrs: Vec<(String, String)>,
}

/// A fixture that cannot be parsed or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fixture line {line}: {message}")]
pub struct FixtureError {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A parsed fixture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fixture {
    /// The lines that do something, in order.
    pub entries: Vec<FixtureEntry>,
}

impl Fixture {
    /// Parses a fixture whose names are absolute (`+ pool/data@a`).
    ///
    /// # Errors
    /// [`FixtureError`] with the line of the first malformed entry.
    pub fn parse(text: &str) -> Result<Self, FixtureError> {
        Self::parse_with(text, str::to_owned)
    }

    /// Parses a fixture whose names are relative to `root` (`+ data@a` is
    /// `root/data@a`, `+ @s` is `root@s`), as real-pool tests write them
    /// for a pool with a generated name.
    ///
    /// # Errors
    /// [`FixtureError`] with the line of the first malformed entry.
    pub fn parse_under(root: &DatasetName, text: &str) -> Result<Self, FixtureError> {
        Self::parse_with(text, |rel| {
            if rel.starts_with(['@', '#']) {
                format!("{root}{rel}")
            } else {
                format!("{root}/{rel}")
            }
        })
    }

    fn parse_with(text: &str, resolve: impl Fn(&str) -> String) -> Result<Self, FixtureError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let fail = |message: String| FixtureError { line, message };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (op, rest) = if let Some(rest) = trimmed.strip_prefix("+ ") {
                (FixtureOp::Create, rest)
            } else if let Some(rest) = trimmed.strip_prefix("~ ") {
                (FixtureOp::Write, rest)
            } else {
                return Err(fail(format!(
                    "expected '+ NAME' or '~ NAME', found {trimmed:?}"
                )));
            };
            let (name, attrs) = split_entry(rest.trim()).map_err(fail)?;
            let full = resolve(&name);
            let name = EntityName::parse(&full).map_err(|e| fail(e.to_string()))?;
            if op == FixtureOp::Write && !matches!(name, EntityName::Dataset(_)) {
                return Err(fail(format!("'~' writes into a dataset, not {name}")));
            }
            entries.push(FixtureEntry {
                line,
                op,
                name,
                attrs,
            });
        }
        Ok(Self { entries })
    }
}

/// Splits `NAME [k=v ...]` into the name and the attributes.
fn split_entry(rest: &str) -> Result<(String, Vec<(String, String)>), String> {
    let tokens = tokenize(rest)?;
    let Some(first) = tokens.first() else {
        return Err("missing name".into());
    };
    let (name, attr_tokens) = if first.1.starts_with('"') {
        (unquote(&first.1), &tokens[1..])
    } else {
        let n = tokens
            .iter()
            .position(|(_, t)| t.contains('='))
            .unwrap_or(tokens.len());
        if n == 0 {
            return Err(format!("missing name before {:?}", first.1));
        }
        let end = tokens.get(n).map_or(rest.len(), |(at, _)| *at);
        (rest[..end].trim_end().to_owned(), &tokens[n..])
    };
    let mut attrs = Vec::new();
    for (_, t) in attr_tokens {
        let Some((k, v)) = t.split_once('=') else {
            return Err(format!("expected key=value after the name, found {t:?}"));
        };
        attrs.push((k.to_owned(), unquote(v)));
    }
    Ok((name, attrs))
}

/// Whitespace-separated tokens with their byte offsets; double quotes
/// protect spaces.
fn tokenize(s: &str) -> Result<Vec<(usize, String)>, String> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() && !quoted {
            out.extend(cur.take());
            continue;
        }
        if c == '"' {
            quoted = !quoted;
        }
        cur.get_or_insert_with(|| (i, String::new())).1.push(c);
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    out.extend(cur);
    Ok(out)
}

fn unquote(s: &str) -> String {
    s.replace('"', "")
}

impl State {
    /// Applies a fixture; runs no `zfs` process as far as [`State::calls`]
    /// is concerned.
    pub(crate) fn apply_fixture(&mut self, fixture: &Fixture) -> Result<(), FixtureError> {
        let calls = self.calls;
        let result = fixture.entries.iter().try_for_each(|e| {
            self.apply_entry(e).map_err(|message| FixtureError {
                line: e.line,
                message,
            })
        });
        self.calls = calls;
        result
    }

    fn apply_entry(&mut self, e: &FixtureEntry) -> Result<(), String> {
        let zfs = |r: Result<(), ZfsError>| r.map_err(|e| e.stderr);
        match (&e.op, &e.name) {
            (FixtureOp::Write, EntityName::Dataset(d)) => {
                let mut bytes = 4096;
                for (k, v) in &e.attrs {
                    match k.as_str() {
                        "bytes" => {
                            bytes = v
                                .parse()
                                .map_err(|_| format!("bytes={v:?} is not a number"))?
                        }
                        _ => return Err(format!("unknown attribute {k:?} for a write")),
                    }
                }
                zfs(self.write(d, bytes))
            }
            (FixtureOp::Write, _) => Err("'~' writes into a dataset".into()),
            (FixtureOp::Create, EntityName::Dataset(d)) => self.fixture_dataset(d, &e.attrs),
            (FixtureOp::Create, EntityName::Snapshot(s)) => self.fixture_snapshot(s, &e.attrs),
            (FixtureOp::Create, EntityName::Bookmark(b)) => {
                if let Some((k, _)) = e.attrs.first() {
                    return Err(format!("unknown attribute {k:?} for a bookmark"));
                }
                if !self.caps.bookmarks {
                    return Err(format!("this ZFS ({}) has no bookmarks", self.caps.flavor));
                }
                // `ds#x` bookmarks `ds@x`, or else the latest snapshot.
                let same = SnapshotName::new(b.dataset(), b.mark()).map_err(|e| e.to_string())?;
                let snap = if self.snap(&same).is_some() {
                    same
                } else {
                    let latest = self
                        .get(&b.dataset())
                        .and_then(|d| d.snaps.last())
                        .ok_or_else(|| {
                            format!("bookmark {b} needs a snapshot of {} to mark", b.dataset())
                        })?;
                    super::state::snap_name(&b.dataset(), &latest.name)
                };
                zfs(self.bookmark(&snap, b))
            }
        }
    }

    fn fixture_dataset(
        &mut self,
        d: &DatasetName,
        attrs: &[(String, String)],
    ) -> Result<(), String> {
        let mut kind = DatasetKind::Filesystem;
        let mut origin = None;
        let mut mounted = None;
        let mut props = Vec::new();
        for (k, v) in attrs {
            match k.as_str() {
                "type" => {
                    kind = match v.as_str() {
                        "filesystem" => DatasetKind::Filesystem,
                        "volume" => DatasetKind::Volume,
                        _ => return Err(format!("type={v:?}: expected filesystem or volume")),
                    };
                }
                "origin" => origin = Some(SnapshotName::parse(v).map_err(|e| e.to_string())?),
                "mounted" => mounted = Some(v == "yes"),
                _ => props.push((k.clone(), v.clone())),
            }
        }
        let on = if kind == DatasetKind::Volume {
            On::Volume
        } else {
            On::Filesystem
        };
        for (k, v) in &props {
            props::check_set(on, k, v)?;
        }
        if d.parent().is_none() {
            if self.get(d).is_some() {
                return Err(format!("pool '{d}' already exists"));
            }
            if kind == DatasetKind::Volume || origin.is_some() {
                return Err("a pool's root is a filesystem".into());
            }
            let stamp = self.tick();
            self.insert_dataset(d, kind, stamp, &props);
        } else {
            let pool = DatasetName::parse(d.pool()).map_err(|e| e.to_string())?;
            if self.get(&pool).is_none() {
                return Err(format!(
                    "pool '{pool}' does not exist: add '+ {pool}' first"
                ));
            }
            match &origin {
                Some(o) => self.clone_snapshot(o, d, &[]).map_err(|e| e.stderr)?,
                None => self.create(d, &[], true).map_err(|e| e.stderr)?,
            }
            let ds = self.get_mut(d).expect("just created");
            if origin.is_none() {
                ds.kind = kind;
            } else if ds.kind != kind && attrs.iter().any(|(k, _)| k == "type") {
                return Err("a clone has its origin's type".into());
            }
            ds.props.local.extend(props);
            ds.mounted = ds.can_mount();
        }
        if let Some(m) = mounted {
            let ds = self.get_mut(d).expect("just created");
            ds.mounted = m && ds.is_fs();
        }
        Ok(())
    }

    fn fixture_snapshot(
        &mut self,
        s: &SnapshotName,
        attrs: &[(String, String)],
    ) -> Result<(), String> {
        let mut holds = Vec::new();
        let mut props = Vec::new();
        for (k, v) in attrs {
            if k == "hold" {
                holds.push(v.clone());
            } else {
                props::check_set(On::Snapshot, k, v)?;
                props.push((k.clone(), v.clone()));
            }
        }
        self.snapshot(std::slice::from_ref(s), &props)
            .map_err(|e| e.stderr)?;
        for tag in holds {
            self.hold(&tag, std::slice::from_ref(s))
                .map_err(|e| e.stderr)?;
        }
        Ok(())
    }
}
