//! Pure parsers of `zfs` output: the two listing forms and property reads.
//!
//! Both listing forms produce the same [`Dataset`] records:
//! - `zfs list -Hp -t ... -o name,type,guid,createtxg,creation,used,userrefs,origin[,receive_resume_token][,user props]`
//!   (OpenZFS: one line per entity);
//! - `zfs get -Hp -r -o name,property,value,source PROPS ROOT` (zfs-fuse, whose
//!   `list` has no `-p` and prints rounded guids: one line per property).

use std::collections::BTreeMap;

use super::{Dataset, DatasetKind, ListSpec, PropValue, Version, VersionName};
use crate::name::{DatasetName, EntityName, Guid, NameError, SnapshotName, Txg};

/// Output that does not look like what `zfs` prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected zfs output at line {line}: {problem}: {text:?}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
    /// The line.
    pub text: String,
}

/// Native properties every listing reads, in `list -o` column order.
pub const LIST_PROPS: &[&str] = &[
    "name",
    "type",
    "guid",
    "createtxg",
    "creation",
    "used",
    "userrefs",
    "origin",
];

/// The property holding a partial receive's resume token.
pub const RESUME_TOKEN: &str = "receive_resume_token";

#[derive(Default)]
struct Partial {
    kind: Option<String>,
    guid: Option<u64>,
    createtxg: Option<u64>,
    creation: Option<i64>,
    used: Option<u64>,
    userrefs: Option<u64>,
    origin: Option<SnapshotName>,
    token: Option<String>,
    user: BTreeMap<String, String>,
}

fn err(line: usize, problem: impl Into<String>, text: &str) -> ParseError {
    ParseError {
        line,
        problem: problem.into(),
        text: text.into(),
    }
}

fn num<T: std::str::FromStr>(
    v: &str,
    what: &str,
    line: usize,
    text: &str,
) -> Result<Option<T>, ParseError> {
    if v == "-" || v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| err(line, format!("{what} is not an exact number"), text))
}

fn name_err(line: usize, text: &str) -> impl Fn(NameError) -> ParseError + '_ {
    move |e| err(line, e.to_string(), text)
}

impl Partial {
    fn set(&mut self, prop: &str, value: &str, line: usize, text: &str) -> Result<(), ParseError> {
        match prop {
            "type" => self.kind = Some(value.to_owned()),
            "guid" => self.guid = num(value, "guid", line, text)?,
            "createtxg" => self.createtxg = num(value, "createtxg", line, text)?,
            "creation" => self.creation = num(value, "creation", line, text)?,
            "used" => self.used = num(value, "used", line, text)?,
            "userrefs" => self.userrefs = num(value, "userrefs", line, text)?,
            "origin" => {
                self.origin = match value {
                    "-" | "" => None,
                    v => Some(SnapshotName::parse(v).map_err(name_err(line, text))?),
                }
            }
            RESUME_TOKEN => {
                self.token = match value {
                    "-" | "" => None,
                    v => Some(v.to_owned()),
                }
            }
            p if p.contains(':') && value != "-" => {
                self.user.insert(p.to_owned(), value.to_owned());
            }
            _ => {}
        }
        Ok(())
    }
}

/// Assembles partial records into datasets with sorted versions.
fn assemble(
    entries: Vec<(EntityName, Partial, usize)>,
    spec: &ListSpec,
) -> Result<Vec<Dataset>, ParseError> {
    let mut datasets: BTreeMap<DatasetName, Dataset> = BTreeMap::new();
    let mut versions: Vec<(DatasetName, Version)> = Vec::new();
    for (name, p, line) in entries {
        let shown = name.as_str().to_owned();
        let need = |v: Option<u64>, what: &str| {
            v.ok_or_else(|| err(line, format!("missing {what}"), &shown))
        };
        match name {
            EntityName::Dataset(ds) => {
                let kind = match p.kind.as_deref() {
                    Some("filesystem") => DatasetKind::Filesystem,
                    Some("volume") => DatasetKind::Volume,
                    other => {
                        return Err(err(
                            line,
                            format!("unknown dataset type {other:?}"),
                            ds.as_str(),
                        ));
                    }
                };
                datasets.insert(
                    ds.clone(),
                    Dataset {
                        name: ds,
                        kind,
                        guid: Guid(need(p.guid, "guid")?),
                        createtxg: Txg(need(p.createtxg, "createtxg")?),
                        creation: p.creation.unwrap_or_default(),
                        used: p.used.unwrap_or_default(),
                        origin: p.origin,
                        receive_resume_token: p.token,
                        user_props: p.user,
                        versions: Vec::new(),
                    },
                );
            }
            EntityName::Snapshot(s) if spec.snapshots => versions.push((
                s.dataset(),
                Version {
                    guid: Guid(need(p.guid, "guid")?),
                    createtxg: Txg(need(p.createtxg, "createtxg")?),
                    creation: p.creation.unwrap_or_default(),
                    used: p.used,
                    userrefs: p.userrefs,
                    name: VersionName::Snapshot(s),
                },
            )),
            EntityName::Bookmark(b) if spec.bookmarks => versions.push((
                b.dataset(),
                Version {
                    guid: Guid(need(p.guid, "guid")?),
                    createtxg: Txg(need(p.createtxg, "createtxg")?),
                    creation: p.creation.unwrap_or_default(),
                    used: None,
                    userrefs: None,
                    name: VersionName::Bookmark(b),
                },
            )),
            _ => {}
        }
    }
    for (ds, v) in versions {
        // A version whose dataset was not listed (it cannot happen with -r
        // output, but a filtered listing might) is dropped, not invented.
        if let Some(d) = datasets.get_mut(&ds) {
            d.versions.push(v);
        }
    }
    let mut out: Vec<Dataset> = datasets.into_values().collect();
    for d in &mut out {
        d.sort_versions();
    }
    Ok(out)
}

/// Parses `zfs get -Hp -o name,property,value,source` output.
///
/// Values may contain tabs; name, property and source cannot, so the value
/// is everything between the second and the last tab.
///
/// # Errors
/// [`ParseError`] on malformed lines, bad names or inexact numbers.
pub fn parse_get(text: &str) -> Result<Vec<PropValue>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let (name, rest) = line
            .split_once('\t')
            .ok_or_else(|| err(n, "expected 4 tab-separated fields", line))?;
        let (prop, rest) = rest
            .split_once('\t')
            .ok_or_else(|| err(n, "expected 4 tab-separated fields", line))?;
        let (value, source) = rest
            .rsplit_once('\t')
            .ok_or_else(|| err(n, "expected 4 tab-separated fields", line))?;
        out.push(PropValue {
            name: EntityName::parse(name).map_err(name_err(n, line))?,
            property: prop.to_owned(),
            value: value.to_owned(),
            source: source.to_owned(),
        });
    }
    Ok(out)
}

/// Parses a `zfs get -Hp -r` listing of [`LIST_PROPS`] (plus user props)
/// into datasets.
///
/// # Errors
/// [`ParseError`] on malformed output.
pub fn parse_get_listing(text: &str, spec: &ListSpec) -> Result<Vec<Dataset>, ParseError> {
    let mut order: Vec<(EntityName, Partial, usize)> = Vec::new();
    let mut index: BTreeMap<EntityName, usize> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let mut f = line.splitn(2, '\t');
        let name = f.next().unwrap_or_default();
        let rest = f
            .next()
            .ok_or_else(|| err(n, "expected name, property, value, source", line))?;
        let (prop, rest) = rest
            .split_once('\t')
            .ok_or_else(|| err(n, "expected name, property, value, source", line))?;
        let (value, source) = rest
            .rsplit_once('\t')
            .ok_or_else(|| err(n, "expected name, property, value, source", line))?;
        let ent = EntityName::parse(name).map_err(name_err(n, line))?;
        let idx = *index.entry(ent.clone()).or_insert_with(|| {
            order.push((ent, Partial::default(), n));
            order.len() - 1
        });
        // An unset user property reads `-` with source `-`.
        let value = if prop.contains(':') && source == "-" {
            "-"
        } else {
            value
        };
        order[idx].1.set(prop, value, n, line)?;
    }
    assemble(order, spec)
}

/// Parses a `zfs list -Hp -o COLUMNS` listing into datasets. `columns` are
/// the `-o` columns in order (starting with `name`).
///
/// # Errors
/// [`ParseError`] on malformed output.
pub fn parse_list_listing(
    text: &str,
    columns: &[&str],
    spec: &ListSpec,
) -> Result<Vec<Dataset>, ParseError> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != columns.len() {
            return Err(err(
                n,
                format!("expected {} columns, got {}", columns.len(), fields.len()),
                line,
            ));
        }
        let ent = EntityName::parse(fields[0]).map_err(name_err(n, line))?;
        let mut p = Partial::default();
        for (col, val) in columns.iter().zip(&fields).skip(1) {
            p.set(col, val, n, line)?;
        }
        entries.push((ent, p, n));
    }
    assemble(entries, spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ListSpec {
        ListSpec::all(vec![DatasetName::parse("zp").unwrap()])
    }

    // Captured from zfs-fuse 0.7.0: `zfs get -Hp -r -o name,property,value,source
    // type,guid,createtxg,creation,used,userrefs,origin,zfsrepl:owner zp`.
    const GET_FUSE: &str = "zp\ttype\tfilesystem\t-
zp\tguid\t4702234871640811567\t-
zp\tcreatetxg\t1\t-
zp\tcreation\t1795325770\t-
zp\tused\t532480\t-
zp\tuserrefs\t-\t-
zp\torigin\t-\t-
zp\tzfsrepl:owner\tme\tlocal
zp/a b\ttype\tfilesystem\t-
zp/a b\tguid\t1789593000496546290\t-
zp/a b\tcreatetxg\t6\t-
zp/a b\tcreation\t1795325770\t-
zp/a b\tused\t114688\t-
zp/a b\tuserrefs\t-\t-
zp/a b\torigin\t-\t-
zp/a b\tzfsrepl:owner\tme\tinherited from zp
zp/a b@s 2\ttype\tsnapshot\t-
zp/a b@s 2\tguid\t18446744073709551615\t-
zp/a b@s 2\tcreatetxg\t12\t-
zp/a b@s 2\tcreation\t1795325771\t-
zp/a b@s 2\tused\t0\t-
zp/a b@s 2\tuserrefs\t1\t-
zp/a b@s 2\torigin\t-\t-
zp/a b@s 2\tzfsrepl:owner\tme\tinherited from zp
zp/a b@s1\ttype\tsnapshot\t-
zp/a b@s1\tguid\t3459505848374135789\t-
zp/a b@s1\tcreatetxg\t11\t-
zp/a b@s1\tcreation\t1795325770\t-
zp/a b@s1\tused\t0\t-
zp/a b@s1\tuserrefs\t0\t-
zp/a b@s1\torigin\t-\t-
zp/a b@s1\tzfsrepl:owner\t-\t-
";

    #[test]
    fn get_listing_exact_numbers_sorted_by_txg() {
        let ds = parse_get_listing(GET_FUSE, &spec()).unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0].user_props.get("zfsrepl:owner").unwrap(), "me");
        let a = &ds[1];
        assert_eq!(a.name.as_str(), "zp/a b");
        assert_eq!(a.guid, Guid(1_789_593_000_496_546_290));
        let names: Vec<&str> = a.versions.iter().map(|v| v.name.short()).collect();
        assert_eq!(names, ["s1", "s 2"]);
        assert_eq!(a.versions[1].guid, Guid(u64::MAX));
        assert_eq!(a.versions[1].userrefs, Some(1));
        let no_snaps = ListSpec {
            snapshots: false,
            ..spec()
        };
        assert!(
            parse_get_listing(GET_FUSE, &no_snaps).unwrap()[1]
                .versions
                .is_empty()
        );
    }

    // OpenZFS 2.x `zfs list -Hp -t filesystem,volume,snapshot,bookmark -o
    // name,type,guid,createtxg,creation,used,userrefs,origin,receive_resume_token -r tank`.
    const LIST_OPENZFS: &str = "tank\tfilesystem\t111\t1\t1700000000\t1000\t-\t-\t-
tank/vol\tvolume\t222\t5\t1700000001\t2000\t-\t-\t-
tank/vol@a\tsnapshot\t333\t7\t1700000002\t0\t0\t-\t-
tank/vol#a\tbookmark\t333\t7\t1700000002\t-\t-\t-\t-
tank/clone\tfilesystem\t444\t9\t1700000003\t10\t-\ttank/vol@a\t1-abc-def
";

    #[test]
    fn list_listing_with_bookmarks_and_clones() {
        let mut cols: Vec<&str> = LIST_PROPS.to_vec();
        cols.push(RESUME_TOKEN);
        let ds = parse_list_listing(LIST_OPENZFS, &cols, &ListSpec::all(vec![])).unwrap();
        assert_eq!(ds.len(), 3);
        let vol = ds.iter().find(|d| d.name.as_str() == "tank/vol").unwrap();
        assert_eq!(vol.kind, DatasetKind::Volume);
        assert!(
            vol.versions[0].name.is_bookmark(),
            "bookmark sorts first on equal txg"
        );
        let clone = ds.iter().find(|d| d.name.as_str() == "tank/clone").unwrap();
        assert_eq!(clone.origin.as_ref().unwrap().as_str(), "tank/vol@a");
        assert_eq!(clone.receive_resume_token.as_deref(), Some("1-abc-def"));
    }

    #[test]
    fn rejects_rounded_and_malformed() {
        let rounded = "tank\ttype\tfilesystem\t-\ntank\tguid\t4.70E18\t-\n";
        let e = parse_get_listing(rounded, &spec()).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.problem.contains("exact number"));
        assert!(parse_get_listing("tank\n", &spec()).is_err());
        assert!(parse_get_listing("bad name!\ttype\tfilesystem\t-\n", &spec()).is_err());
        assert!(parse_list_listing("tank\tfilesystem\n", LIST_PROPS, &spec()).is_err());
    }

    #[test]
    fn get_values_with_tabs() {
        let p = parse_get("tank/a\tzfsrepl:note\tx\ty\tlocal\n").unwrap();
        assert_eq!(p[0].value, "x\ty");
        assert_eq!(p[0].source, "local");
    }
}
