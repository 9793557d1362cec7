//! Walking a spanned TOML table: typed reads that record every problem with
//! its location instead of stopping at the first, and unknown-key reports
//! with suggestions.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, Severity, Source};

/// A spanned TOML value.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// Collects diagnostics while reading one file.
pub(crate) struct Cx<'s> {
    pub(crate) src: &'s Source,
    pub(crate) diags: Vec<Diagnostic>,
}

impl<'s> Cx<'s> {
    pub(crate) fn new(src: &'s Source) -> Self {
        Self {
            src,
            diags: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.diags.push(self.src.error(span, msg));
    }

    pub(crate) fn error_help(
        &mut self,
        span: Range<usize>,
        msg: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.diags.push(
            self.src
                .diagnostic(Severity::Error, span, msg, Some(help.into())),
        );
    }

    fn type_error(&mut self, v: &Value<'_>, key: &str, want: &str) {
        self.error(
            v.span(),
            format!("`{key}` must be {want}, not {}", v.get_ref().type_str()),
        );
    }

    /// An integer in `range`.
    pub(crate) fn int(&mut self, v: &Value<'_>, key: &str, range: Range<i64>) -> Option<i64> {
        let Some(i) = v.get_ref().as_integer() else {
            self.type_error(v, key, "an integer");
            return None;
        };
        let digits = i.as_str().replace('_', "");
        let n = i64::from_str_radix(digits.trim_start_matches('+'), i.radix()).ok();
        match n {
            Some(n) if range.contains(&n) => Some(n),
            _ => {
                self.error(
                    v.span(),
                    format!(
                        "`{key}` = {} is out of range {}..={}",
                        i.as_str(),
                        range.start,
                        range.end - 1
                    ),
                );
                None
            }
        }
    }

    /// A boolean (`true`/`false` only: TOML has real booleans, so the
    /// `yes`/`on` words of sanoid.conf are refused here with a hint).
    pub(crate) fn bool(&mut self, v: &Value<'_>, key: &str) -> Option<bool> {
        if let Some(b) = v.get_ref().as_bool() {
            return Some(b);
        }
        if let Some(s) = v.get_ref().as_str() {
            self.error_help(
                v.span(),
                format!("`{key}` must be true or false, not the string {s:?}"),
                "write it without quotes: true or false",
            );
        } else {
            self.type_error(v, key, "true or false");
        }
        None
    }

    /// A string.
    pub(crate) fn string<'v>(&mut self, v: &'v Value<'_>, key: &str) -> Option<&'v str> {
        let s = v.get_ref().as_str();
        if s.is_none() {
            self.type_error(v, key, "a string");
        }
        s
    }

    /// A string or an array of strings, with each string's span.
    pub(crate) fn strings(
        &mut self,
        v: &Value<'_>,
        key: &str,
    ) -> Option<Vec<(String, Range<usize>)>> {
        if let Some(s) = v.get_ref().as_str() {
            return Some(vec![(s.to_owned(), v.span())]);
        }
        let Some(arr) = v.get_ref().as_array() else {
            self.type_error(v, key, "a string or an array of strings");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in arr.iter() {
            match item.get_ref().as_str() {
                Some(s) => out.push((s.to_owned(), item.span())),
                None => {
                    self.type_error(item, key, "a string");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// An array of strings (an argv): a single string is refused, because
    /// nothing is ever run through a shell.
    pub(crate) fn argv(&mut self, v: &Value<'_>, key: &str) -> Option<Vec<String>> {
        if v.get_ref().is_str() {
            self.error_help(
                v.span(),
                format!("`{key}` must be an argv array, not a command line"),
                "zfsrepl runs hooks without a shell: write [\"/path/to/program\", \"arg1\", \"arg2\"]",
            );
            return None;
        }
        let list = self.strings(v, key)?;
        if list.is_empty() {
            self.error(v.span(), format!("`{key}` is empty: name a program"));
            return None;
        }
        if !list[0].0.starts_with('/') {
            self.error_help(
                list[0].1.clone(),
                format!("`{key}`: program {:?} is not an absolute path", list[0].0),
                "hooks run with a minimal environment; give the full path",
            );
            return None;
        }
        Some(list.into_iter().map(|(s, _)| s).collect())
    }

    /// A duration like `90m`, `1h30m`, `28h`, `32d`, `2w`, `30s`.
    pub(crate) fn duration(&mut self, v: &Value<'_>, key: &str) -> Option<Duration> {
        let s = self.string(v, key)?;
        match parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error_help(
                    v.span(),
                    format!("`{key}` = {s:?}: {e}"),
                    "write a number with a unit: 30s, 90m, 28h, 32d, 2w, or combined like 1h30m",
                );
                None
            }
        }
    }
}

/// Parses `1h30m`-style durations (units s, m, h, d, w).
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(format!("unknown unit {c:?}")),
        };
        if num.is_empty() {
            return Err(format!("unit {c:?} without a number"));
        }
        let n: u64 = num.parse().map_err(|_| "number too large".to_string())?;
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or("duration too large")?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!("{num} has no unit"));
    }
    Ok(Duration::from_secs(total))
}

/// The keys of one table, read one by one; whatever is left is unknown.
pub(crate) struct Fields<'a, 'i> {
    table: &'a DeTable<'i>,
    known: Vec<&'static str>,
    used: Vec<&'a str>,
    what: String,
}

impl<'a, 'i> Fields<'a, 'i> {
    pub(crate) fn new(
        table: &'a DeTable<'i>,
        known: &'static [&'static str],
        what: impl Into<String>,
    ) -> Self {
        Self::with_extra(table, known, &[], what)
    }

    /// Like [`Fields::new`], with more known keys.
    pub(crate) fn with_extra(
        table: &'a DeTable<'i>,
        known: &'static [&'static str],
        extra: &'static [&'static str],
        what: impl Into<String>,
    ) -> Self {
        Self {
            table,
            known: known.iter().chain(extra).copied().collect(),
            used: Vec::new(),
            what: what.into(),
        }
    }

    /// The value of `key`, marking it used.
    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'a Value<'i>> {
        debug_assert!(self.known.contains(&key), "{key} not declared");
        let (k, v) = self.table.get_key_value(key)?;
        self.used.push(k.get_ref());
        Some(v)
    }

    /// The span of `key` itself (for "defined here" diagnostics).
    pub(crate) fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table.get_key_value(key).map(|(k, _)| k.span())
    }

    /// Reports every key that no `get` asked for.
    pub(crate) fn finish(self, cx: &mut Cx<'_>) {
        for (k, _) in self.table.iter() {
            let name: &str = k.get_ref();
            if self.used.contains(&name) {
                continue;
            }
            let help = suggest(name, &self.known)
                .map(|s| format!("did you mean `{s}`?"))
                .or_else(|| {
                    (!self.known.is_empty())
                        .then(|| format!("{} takes: {}", self.what, self.known.join(", ")))
                });
            cx.diags.push(cx.src.diagnostic(
                Severity::Error,
                k.span(),
                format!("unknown key `{name}` in {}", self.what),
                help,
            ));
        }
    }
}

/// The closest known key within a small edit distance (also catching
/// sanoid's `_` spelling of our `-` keys).
pub(crate) fn suggest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let dashed = name.replace('_', "-");
    if let Some(k) = known.iter().find(|k| **k == dashed) {
        return Some(k);
    }
    known
        .iter()
        .map(|k| (levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2w1d"), Ok(Duration::from_secs(15 * 86_400)));
        assert!(parse_duration("90").unwrap_err().contains("no unit"));
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn suggestions() {
        let known = ["hourly", "daily", "frequent-period", "hourly-min"];
        assert_eq!(suggest("hourli", &known), Some("hourly"));
        assert_eq!(suggest("frequent_period", &known), Some("frequent-period"));
        assert_eq!(suggest("zzzzzz", &known), None);
    }
}
