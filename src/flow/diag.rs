//! Diagnostics: one problem in a flow file, pointed at by `file:line:col`.
//!
//! The loader and the validator both report through this type so that
//! `voxgate validate` and `voxgate serve` print problems the same way, in a
//! form editors and terminals turn into clickable links.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::flow::model::Span;

/// One problem found in a flow file. All diagnostics are errors: a flow with
/// any diagnostic must not be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The flow file the problem is in, as it was given to the loader.
    pub path: PathBuf,
    /// 1-based line and column; `1:1` when the problem concerns the whole file.
    pub span: Span,
    /// What is wrong, for a person; printed after `file:line:col: `.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `span` in the file at `path`.
    pub fn new(path: &Path, span: Span, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            span,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A span of 0 means "unknown"; still print something an editor can open.
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.span.line.max(1),
            self.span.col.max(1),
            self.message
        )
    }
}

impl std::error::Error for Diagnostic {}

/// Sort diagnostics by file, then position, keeping the order of those at the same place.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| (&a.path, a.span).cmp(&(&b.path, b.span)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_file_line_col_message() {
        let d = Diagnostic::new(
            Path::new("flows/bank.yaml"),
            Span { line: 3, col: 7 },
            "step `x`: boom",
        );
        assert_eq!(d.to_string(), "flows/bank.yaml:3:7: step `x`: boom");
    }

    #[test]
    fn unknown_span_prints_as_1_1() {
        let d = Diagnostic::new(Path::new("a.yaml"), Span::default(), "m");
        assert_eq!(d.to_string(), "a.yaml:1:1: m");
    }

    #[test]
    fn sort_orders_by_path_then_position() {
        let mut v = vec![
            Diagnostic::new(Path::new("b.yaml"), Span { line: 1, col: 1 }, "b"),
            Diagnostic::new(Path::new("a.yaml"), Span { line: 9, col: 1 }, "a9"),
            Diagnostic::new(Path::new("a.yaml"), Span { line: 2, col: 5 }, "a2"),
        ];
        sort(&mut v);
        let m: Vec<_> = v.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(m, ["a2", "a9", "b"]);
    }
}
