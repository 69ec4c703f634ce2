//! Diagnostics: what `check` reports about mapping files and the schema.
//!
//! A diagnostic is plain data (a code, a severity, a message and labelled
//! spans into a source file); miette renders it. Parsing and compiling push
//! diagnostics into a [`Diagnostics`] collection instead of returning at the
//! first problem, so a user sees every problem in one run.
//!
//! This module knows nothing of TOML keys or SQL types: only files and spans.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode};
use serde::Serialize;

/// A source file a diagnostic can point into (a mapping or a schema file).
#[derive(Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: Arc<str>,
    named: Arc<NamedSource<Arc<str>>>,
}

impl fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceFile").field("path", &self.path).finish()
    }
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<Arc<str>>) -> Self {
        let path = path.into();
        let text = text.into();
        let named = Arc::new(NamedSource::new(display_path(&path), text.clone()));
        SourceFile { path, text, named }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        (line, col)
    }

    /// Byte offset of a 1-based line and column (as sqlparser reports them).
    pub fn offset_of(&self, line: usize, col: usize) -> usize {
        let mut offset = 0;
        for (i, l) in self.text.split_inclusive('\n').enumerate() {
            if i + 1 == line {
                let col_bytes: usize = l.chars().take(col.saturating_sub(1)).map(char::len_utf8).sum();
                return offset + col_bytes;
            }
            offset += l.len();
        }
        self.text.len()
    }
}

fn display_path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Every kind of problem `check` knows, with a stable kebab-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    TomlSyntax,
    UnknownKey,
    MissingKey,
    InvalidValue,
    InvalidJsonPath,
    UnknownTable,
    UnknownColumn,
    UnmappedNotNull,
    TypeMismatch,
    UnsupportedType,
    ReferenceNotLoaded,
    ReferenceMismatch,
    ForeignKeyWithoutId,
    DependencyCycle,
    OverlappingKeys,
    KeyNotUnique,
    UnwindNotArray,
    UnwindPathOutside,
    SqlSyntax,
    SchemaConflict,
    Io,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::TomlSyntax => "toml-syntax",
            Code::UnknownKey => "unknown-key",
            Code::MissingKey => "missing-key",
            Code::InvalidValue => "invalid-value",
            Code::InvalidJsonPath => "invalid-jsonpath",
            Code::UnknownTable => "unknown-table",
            Code::UnknownColumn => "unknown-column",
            Code::UnmappedNotNull => "unmapped-not-null",
            Code::TypeMismatch => "type-mismatch",
            Code::UnsupportedType => "unsupported-type",
            Code::ReferenceNotLoaded => "reference-not-loaded",
            Code::ReferenceMismatch => "reference-mismatch",
            Code::ForeignKeyWithoutId => "foreign-key-without-id",
            Code::DependencyCycle => "dependency-cycle",
            Code::OverlappingKeys => "overlapping-keys",
            Code::KeyNotUnique => "key-not-unique",
            Code::UnwindNotArray => "unwind-not-array",
            Code::UnwindPathOutside => "element-path-outside-unwind",
            Code::SqlSyntax => "sql-syntax",
            Code::SchemaConflict => "schema-conflict",
            Code::Io => "io",
        }
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A labelled span inside one file.
#[derive(Debug, Clone)]
pub struct Label {
    pub file: SourceFile,
    pub span: Range<usize>,
    pub text: Option<String>,
}

/// One problem found in the mappings or the schema.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    /// The primary location; `None` for problems with no file (a missing directory).
    pub primary: Option<Label>,
    /// Further locations in the same or another file (a schema line, the other mapping).
    pub secondary: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Self::error(code, message) }
    }

    pub fn at(mut self, file: &SourceFile, span: Range<usize>, label: impl Into<String>) -> Self {
        let text = label.into();
        self.primary = Some(Label { file: file.clone(), span, text: (!text.is_empty()).then_some(text) });
        self
    }

    pub fn also(mut self, file: &SourceFile, span: Range<usize>, label: impl Into<String>) -> Self {
        self.secondary.push(Label { file: file.clone(), span, text: Some(label.into()) });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// `path:line:col` of the primary label.
    pub fn location(&self) -> Option<(String, usize, usize)> {
        let p = self.primary.as_ref()?;
        let (line, col) = p.file.line_col(p.span.start);
        Some((display_path(&p.file.path), line, col))
    }

    fn to_json(&self) -> serde_json::Value {
        let label_json = |l: &Label| {
            let (line, column) = l.file.line_col(l.span.start);
            serde_json::json!({
                "file": display_path(&l.file.path),
                "line": line,
                "column": column,
                "offset": l.span.start,
                "length": l.span.len(),
                "label": l.text,
            })
        };
        serde_json::json!({
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "location": self.primary.as_ref().map(label_json),
            "related": self.secondary.iter().map(label_json).collect::<Vec<_>>(),
            "help": self.help,
        })
    }
}

/// The miette view of one diagnostic: a primary report, plus one nested
/// report per secondary label that lives in another file (miette renders one
/// source per report).
struct Report<'a> {
    diag: &'a Diagnostic,
    labels: Vec<&'a Label>,
    file: Option<&'a SourceFile>,
    title: String,
    /// A secondary location in another file, drawn under its parent report.
    nested: bool,
    related: Vec<Report<'a>>,
}

impl<'a> Report<'a> {
    fn new(diag: &'a Diagnostic) -> Self {
        let file = diag.primary.as_ref().map(|l| &l.file);
        let same_file = |l: &&Label| file.is_some_and(|f| f.path == l.file.path);
        let mut labels: Vec<&Label> = diag.primary.iter().collect();
        labels.extend(diag.secondary.iter().filter(same_file));
        let related = diag
            .secondary
            .iter()
            .filter(|l| !same_file(l))
            .map(|l| Report {
                diag,
                labels: vec![l],
                file: Some(&l.file),
                title: l.text.clone().unwrap_or_default(),
                nested: true,
                related: Vec::new(),
            })
            .collect();
        let title = match diag.location() {
            Some((path, line, col)) => format!("{path}:{line}:{col}: {}", diag.message),
            None => diag.message.clone(),
        };
        Report { diag, labels, file, title, nested: false, related }
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.title)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.title)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        (!self.nested).then(|| Box::new(self.diag.code) as Box<dyn fmt::Display>)
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match (self.nested, self.diag.severity) {
            (true, _) => miette::Severity::Advice,
            (false, Severity::Error) => miette::Severity::Error,
            (false, Severity::Warning) => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        if self.nested {
            return None;
        }
        self.diag.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.file.map(|f| &*f.named as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.file?;
        Some(Box::new(self.labels.iter().enumerate().map(|(i, l)| {
            let span = (l.span.start, l.span.len());
            if i == 0 {
                LabeledSpan::new_primary_with_span(l.text.clone(), span)
            } else {
                LabeledSpan::new_with_span(l.text.clone(), span)
            }
        })))
    }

    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn miette::Diagnostic> + 'b>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic)))
    }
}

/// Diagnostics collected over a whole `check`.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.severity == Severity::Error).count()
    }

    pub fn warning_count(&self) -> usize {
        self.items.iter().filter(|d| d.severity == Severity::Warning).count()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorts by file and position, so output is stable whatever order the
    /// checks ran in.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            let key = |d: &Diagnostic| d.primary.as_ref().map(|l| (l.file.path.clone(), l.span.start));
            key(a).cmp(&key(b)).then(a.message.cmp(&b.message))
        });
    }

    /// Renders every diagnostic as miette draws it; `color` for terminals.
    pub fn render_text(&self, color: bool) -> String {
        let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false).with_urls(false);
        let mut out = String::new();
        for d in &self.items {
            let report = Report::new(d);
            // Rendering into a String cannot fail.
            let _ = handler.render_report(&mut out, &report);
            out.push('\n');
        }
        out
    }

    /// One JSON document: every diagnostic plus counts, for editors and CI.
    pub fn render_json(&self) -> String {
        let v = serde_json::json!({
            "errors": self.error_count(),
            "warnings": self.warning_count(),
            "diagnostics": self.items.iter().map(Diagnostic::to_json).collect::<Vec<_>>(),
        });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), strsim::osa_distance(word, c), c))
        .filter(|(score, _, _)| *score > 0.8)
        // Fewest edits first (a swapped pair of letters is one), then the
        // closer prefix: `form` is `from`, not `format`.
        .min_by(|a, b| a.1.cmp(&b.1).then(b.0.total_cmp(&a.0)))
        .map(|(_, _, c)| c)
}
