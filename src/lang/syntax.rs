//! The mapping language's syntax tree: every key and value of a project
//! or mapping file as written, each with the span it came from. Built by
//! [`super::spec`], read by `compile`; no checks live here.

use std::ops::Range;

use crate::lang::diag::SourceFile;

/// A value with the byte range it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sp<T> {
    pub value: T,
    pub span: Range<usize>,
}

impl<T> Sp<T> {
    pub fn new(value: T, span: Range<usize>) -> Self {
        Sp { value, span }
    }
}

/// A literal written in a mapping (`default`, `map` values, filter values).
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    /// A TOML date or date-time, kept as written (RFC 3339).
    Datetime(String),
    Array(Vec<Literal>),
    /// An inline table, for json/jsonb defaults (`default = {}`).
    Table(Vec<(String, Literal)>),
}

impl Literal {
    pub fn kind(&self) -> &'static str {
        match self {
            Literal::String(_) => "a string",
            Literal::Integer(_) => "an integer",
            Literal::Float(_) => "a float",
            Literal::Bool(_) => "a boolean",
            Literal::Datetime(_) => "a date-time",
            Literal::Array(_) => "an array",
            Literal::Table(_) => "a table",
        }
    }
}

/// `finlit-map.toml`: settings shared by every mapping of a directory.
#[derive(Debug, Clone, Default)]
pub struct ProjectSpec {
    pub file: Option<SourceFile>,
    /// UUIDv5 namespace for `id` derivation.
    pub namespace: Option<Sp<String>>,
    /// Where the DDL lives, relative to the mapping directory.
    pub schema: Option<Sp<String>>,
    /// Default time-zone rule for DATE and TIMESTAMP columns.
    pub time_zone: Option<Sp<String>>,
    pub json: JsonSpec,
}

/// How BSON values that JSON lacks are written inside json/jsonb columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonSpec {
    pub object_ids: Option<Sp<String>>,
    pub dates: Option<Sp<String>>,
}

/// How an unwind takes a value that is not an array.
#[derive(Debug, Clone, Default)]
pub struct UnwindShapeSpec {
    pub wrap_scalar: Option<Sp<bool>>,
    pub split: Option<Sp<String>>,
}

/// One mapping file: one source collection into one target table.
#[derive(Debug, Clone)]
pub struct MappingSpec {
    pub file: SourceFile,
    /// File stem; names the mapping in plans, logs and `--collection`.
    pub name: String,
    pub source: Option<Sp<String>>,
    pub table: Option<Sp<String>>,
    pub key: Option<Sp<Vec<Sp<String>>>>,
    pub unwind: Option<Sp<String>>,
    /// The table form's options: `unwind = { path = "$.tags", wrap_scalar = true, split = "," }`.
    pub unwind_shape: UnwindShapeSpec,
    /// Nested levels: `unwind = ["$.tiers.*", "@.benefits[*]"]` gives the
    /// first as `unwind` and the others here, outermost first.
    pub unwind_inner: Vec<Sp<String>>,
    /// What to do with a second row of a key: `reject` (default), `first`, `last`.
    pub on_duplicate: Option<Sp<String>>,
    pub time_zone: Option<Sp<String>>,
    pub json: JsonSpec,
    pub filter: Vec<FilterSpec>,
    pub columns: Vec<ColumnSpec>,
    /// Span of the `[columns]` header or key, for "unmapped column" errors.
    pub columns_span: Range<usize>,
}

/// One condition of a mapping's `filter`; all conditions must hold.
#[derive(Debug, Clone)]
pub struct FilterSpec {
    pub path: Sp<String>,
    pub test: Sp<FilterTest>,
    pub span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FilterTest {
    Equals(Literal),
    NotEquals(Literal),
    In(Vec<Literal>),
    NotIn(Vec<Literal>),
    Exists(bool),
    /// `type = "string"` or `["int", "long"]`: the value's BSON type is one of these.
    Type(Vec<String>),
}

/// Where a column's value comes from: a value expression (see
/// [`crate::lang::expr`]) written as `key = argument`: `from = "$.path"`
/// (also the shorthand `column = "$.path"`), `id = "$.path"`, … `None`:
/// the column takes only its default.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprSpec {
    pub key: Sp<String>,
    /// The argument as written; each expression checks its shape.
    pub arg: Sp<Literal>,
}

#[derive(Debug, Clone)]
pub struct ColumnSpec {
    pub name: Sp<String>,
    pub source: Option<ExprSpec>,
    pub references: Option<Sp<String>>,
    /// A reference to a row that is not there: `reject` (default) or `null`.
    pub on_missing: Option<Sp<String>>,
    pub required: Option<Sp<bool>>,
    pub default: Option<Sp<Literal>>,
    pub transform: Vec<Sp<String>>,
    /// How `to_date` reads strings (chrono's strftime syntax).
    pub date_format: Option<Sp<String>>,
    /// Cut a string into an array at this separator.
    pub split: Option<Sp<String>>,
    /// A single value becomes a one-element array.
    pub wrap_scalar: Option<Sp<bool>>,
    /// How strings hold bytes for a bytea column: `base64` or `hex`.
    pub encoding: Option<Sp<String>>,
    /// The length every array value must have (vectors).
    pub dimensions: Option<Sp<Literal>>,
    /// A geometry column takes `[lon, lat]` pairs as points.
    pub point: Option<Sp<bool>>,
    pub map: Vec<(Sp<String>, Sp<Literal>)>,
    /// `null_if = ["", "N/A", 0]`: sentinel values that mean null.
    pub null_if: Vec<Sp<Literal>>,
    /// `map_null = ["unknown"]`: `map` sources that become null.
    pub map_null: Vec<Sp<Literal>>,
    pub ty: Option<Sp<String>>,
    pub time_zone: Option<Sp<String>>,
    /// The zone when a per-row `time_zone` path has none.
    pub time_zone_fallback: Option<Sp<String>>,
    pub json: JsonSpec,
    /// The whole entry (`name = ...`).
    pub span: Range<usize>,
}
