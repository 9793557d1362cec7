//! Located problems in policy files, rendered like a compiler's:
//!
//! ```text
//! policies/off2.toml:12:9: error: unknown key `hourli`
//!    |
//! 12 | hourli = 36
//!    | ^^^^^^
//!    = help: did you mean `hourly`?
//! ```

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The policy is refused.
    Error,
    /// The policy is accepted, but probably not what was meant.
    Warning,
}

/// One problem at a byte range of a source file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file.
    pub file: PathBuf,
    /// Byte range in the file.
    pub span: Range<usize>,
    /// 1-based line of the span's start.
    pub line: usize,
    /// 1-based column (in characters) of the span's start.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we know.
    pub help: Option<String>,
    /// The source line, for rendering.
    #[serde(skip)]
    source_line: String,
    /// Caret start and width in characters within `source_line`.
    #[serde(skip)]
    caret: (usize, usize),
}

impl Diagnostic {
    /// Whether this is an error.
    #[must_use]
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(
            f,
            "{}:{}:{}: {sev}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        let num = self.line.to_string();
        let pad = " ".repeat(num.len());
        writeln!(f, "{pad} |")?;
        writeln!(f, "{num} | {}", self.source_line)?;
        write!(
            f,
            "{pad} | {}{}",
            " ".repeat(self.caret.0),
            "^".repeat(self.caret.1.max(1))
        )?;
        if let Some(h) = &self.help {
            write!(f, "\n{pad} = help: {h}")?;
        }
        Ok(())
    }
}

/// A policy file's text, turning byte spans into located diagnostics.
#[derive(Debug, Clone)]
pub struct Source {
    path: PathBuf,
    text: String,
    line_starts: Vec<usize>,
}

impl Source {
    /// Wraps a file's text.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A diagnostic at `span`.
    #[must_use]
    pub fn diagnostic(
        &self,
        severity: Severity,
        span: Range<usize>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        let start = span.start.min(self.text.len());
        let line_idx = match self.line_starts.binary_search(&start) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let line_start = self.line_starts[line_idx];
        let line_end = self.text[line_start..]
            .find('\n')
            .map_or(self.text.len(), |i| line_start + i);
        let line_text = self.text[line_start..line_end].trim_end_matches('\r');
        let safe = |i: usize| {
            let mut i = i.min(line_start + line_text.len());
            while !self.text.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let col_chars = self.text[line_start..safe(start)].chars().count();
        let end = safe(span.end.max(start));
        let width = self.text[safe(start)..end].chars().count();
        Diagnostic {
            severity,
            file: self.path.clone(),
            span,
            line: line_idx + 1,
            column: col_chars + 1,
            message: message.into(),
            help,
            source_line: line_text.to_owned(),
            caret: (col_chars, width),
        }
    }

    /// An error at `span`.
    #[must_use]
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        self.diagnostic(Severity::Error, span, message, None)
    }
}

/// All the problems found in one or more policy files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Whether any is an error.
    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// How many errors.
    #[must_use]
    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_col_and_caret() {
        let src = Source::new("p.toml", "a = 1\n  hourli = 36\n");
        let d = src.diagnostic(
            Severity::Error,
            8..14,
            "unknown key `hourli`",
            Some("did you mean `hourly`?".into()),
        );
        assert_eq!((d.line, d.column), (2, 3));
        assert_eq!(
            d.to_string(),
            "p.toml:2:3: error: unknown key `hourli`\n  |\n2 |   hourli = 36\n  |   ^^^^^^\n  = help: did you mean `hourly`?"
        );
    }

    #[test]
    fn spans_past_the_end_and_multibyte_are_safe() {
        let src = Source::new("p.toml", "név = \"é\"");
        let d = src.error(0..100, "x");
        assert_eq!((d.line, d.column), (1, 1));
        let d = src.error(2..3, "inside a char");
        assert_eq!(d.line, 1);
        let _ = d.to_string();
        let empty = Source::new("e.toml", "");
        assert_eq!(empty.error(5..9, "eof").line, 1);
    }
}
