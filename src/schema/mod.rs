//! The target schema: tables, columns, PostgreSQL types, keys and foreign
//! keys, read offline from the migration files in `schema/` with sqlparser.
//!
//! The schema is the single source of truth for column types. This module
//! knows SQL only: nothing of mappings, BSON or the database connection.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use sqlparser::ast::{
    self, AlterTableOperation, ColumnOption, DataType, Expr, ObjectName, Spanned, Statement, TableConstraint,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::lang::diag::{Code, Diagnostic, Diagnostics, SourceFile};

/// The PostgreSQL column types the engine can write, as far as coercion cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlType {
    Text,
    Varchar(Option<u32>),
    /// `CHAR(n)`: blank-padded; longer strings are rejected.
    Char(u32),
    SmallInt,
    Integer,
    BigInt,
    /// `NUMERIC(precision, scale)`; `None` for unconstrained `NUMERIC`.
    /// `(precision, scale)`; PostgreSQL allows a negative scale (rounding
    /// to tens, hundreds, …) and a scale above the precision.
    Numeric(Option<(u32, i32)>),
    Real,
    Double,
    Boolean,
    Date,
    Timestamp,
    Timestamptz,
    Uuid,
    Json,
    Jsonb,
    Bytea,
    /// PostGIS `geometry`/`geography`, with the declared shape and SRID.
    Geo(GeoType),
    Array(Box<SqlType>),
    /// A type the engine does not write (kept for messages).
    Other(String),
}

impl SqlType {
    pub fn from_ast(t: &DataType) -> SqlType {
        use sqlparser::ast::{ArrayElemTypeDef as A, CharacterLength, ExactNumberInfo as N, TimezoneInfo as Tz};
        let len = |l: &Option<CharacterLength>| match l {
            Some(CharacterLength::IntegerLength { length, .. }) => u32::try_from(*length).ok(),
            _ => None,
        };
        match t {
            DataType::Text | DataType::String(_) => SqlType::Text,
            DataType::Varchar(l) | DataType::CharacterVarying(l) => SqlType::Varchar(len(l)),
            DataType::Char(l) | DataType::Character(l) => SqlType::Char(len(l).unwrap_or(1)),
            DataType::SmallInt(_) | DataType::Int2(_) => SqlType::SmallInt,
            DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => SqlType::Integer,
            DataType::BigInt(_) | DataType::Int8(_) | DataType::Int64 => SqlType::BigInt,
            DataType::Numeric(n) | DataType::Decimal(n) => match n {
                N::None => SqlType::Numeric(None),
                N::Precision(p) => SqlType::Numeric(Some((*p as u32, 0))),
                N::PrecisionAndScale(p, s) => SqlType::Numeric(Some((*p as u32, *s as i32))),
            },
            DataType::Real | DataType::Float4 => SqlType::Real,
            DataType::DoublePrecision | DataType::Float8 | DataType::Double(_) => SqlType::Double,
            DataType::Float(N::Precision(p)) if *p <= 24 => SqlType::Real,
            DataType::Float(_) => SqlType::Double,
            DataType::Bool | DataType::Boolean => SqlType::Boolean,
            DataType::Date => SqlType::Date,
            DataType::Timestamp(_, Tz::WithTimeZone | Tz::Tz) => SqlType::Timestamptz,
            DataType::Timestamp(_, _) => SqlType::Timestamp,
            DataType::Uuid => SqlType::Uuid,
            DataType::JSON => SqlType::Json,
            DataType::JSONB => SqlType::Jsonb,
            DataType::Bytea => SqlType::Bytea,
            DataType::Array(A::SquareBracket(inner, _) | A::Qualified(inner, _) | A::AngleBracket(inner)) => {
                SqlType::Array(Box::new(SqlType::from_ast(inner)))
            }
            DataType::Custom(name, mods)
                if matches!(name.to_string().to_ascii_lowercase().as_str(), "geometry" | "geography") =>
            {
                let geography = name.to_string().eq_ignore_ascii_case("geography");
                let kind = mods.first().map(|k| k.trim().to_ascii_lowercase()).filter(|k| k != "geometry");
                let srid = mods.get(1).and_then(|s| s.trim().parse::<i32>().ok());
                // `geography` without a SRID is WGS 84, as PostGIS says.
                let srid = srid.or(geography.then_some(4326));
                SqlType::Geo(GeoType { geography, kind, srid })
            }
            DataType::Custom(name, _) => match name.to_string().to_ascii_lowercase().as_str() {
                "timestamptz" => SqlType::Timestamptz,
                "int" | "int4" | "serial" => SqlType::Integer,
                "bigserial" | "serial8" => SqlType::BigInt,
                other => SqlType::Other(other.to_string()),
            },
            other => SqlType::Other(other.to_string().to_ascii_lowercase()),
        }
    }

    /// Parses a type as written in a mapping's `type = "..."`.
    pub fn parse(text: &str) -> Result<SqlType, String> {
        let dialect = PostgreSqlDialect {};
        let mut p = Parser::new(&dialect).try_with_sql(text).map_err(|e| e.to_string())?;
        let t = p.parse_data_type().map_err(|e| e.to_string())?;
        match SqlType::from_ast(&t) {
            SqlType::Other(o) => Err(format!("`{o}` is not a type finlit-map writes")),
            t => Ok(t),
        }
    }

    pub fn is_temporal(&self) -> bool {
        matches!(self, SqlType::Date | SqlType::Timestamp | SqlType::Timestamptz)
    }

    pub fn is_json(&self) -> bool {
        matches!(self, SqlType::Json | SqlType::Jsonb)
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlType::Text => f.write_str("text"),
            SqlType::Varchar(None) => f.write_str("varchar"),
            SqlType::Varchar(Some(n)) => write!(f, "varchar({n})"),
            SqlType::Char(n) => write!(f, "char({n})"),
            SqlType::SmallInt => f.write_str("smallint"),
            SqlType::Integer => f.write_str("integer"),
            SqlType::BigInt => f.write_str("bigint"),
            SqlType::Numeric(None) => f.write_str("numeric"),
            SqlType::Numeric(Some((p, s))) => write!(f, "numeric({p},{s})"),
            SqlType::Real => f.write_str("real"),
            SqlType::Double => f.write_str("double precision"),
            SqlType::Boolean => f.write_str("boolean"),
            SqlType::Date => f.write_str("date"),
            SqlType::Timestamp => f.write_str("timestamp"),
            SqlType::Timestamptz => f.write_str("timestamptz"),
            SqlType::Uuid => f.write_str("uuid"),
            SqlType::Json => f.write_str("json"),
            SqlType::Jsonb => f.write_str("jsonb"),
            SqlType::Bytea => f.write_str("bytea"),
            SqlType::Geo(g) => {
                f.write_str(if g.geography { "geography" } else { "geometry" })?;
                match (&g.kind, g.srid) {
                    (None, None) => Ok(()),
                    (kind, srid) => {
                        write!(f, "({}", kind.as_deref().map_or("Geometry".to_string(), geo_kind_name))?;
                        if let Some(s) = srid {
                            write!(f, ",{s}")?;
                        }
                        f.write_str(")")
                    }
                }
            }
            SqlType::Array(inner) => write!(f, "{inner}[]"),
            SqlType::Other(o) => f.write_str(o),
        }
    }
}

/// A PostGIS column type: `geometry(Point,4326)`, `geography(Polygon)`, `geometry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoType {
    pub geography: bool,
    /// The geometry type, lowercase (`point`, `multipolygon`); `None`: any.
    pub kind: Option<String>,
    pub srid: Option<i32>,
}

/// `multipolygon` as PostGIS writes it: `MultiPolygon`.
pub fn geo_kind_name(kind: &str) -> String {
    const NAMES: &[&str] =
        &["Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon", "GeometryCollection"];
    NAMES.iter().find(|n| n.eq_ignore_ascii_case(kind)).map_or_else(|| kind.to_string(), |n| n.to_string())
}

/// A column's DEFAULT, as far as the engine can evaluate it itself.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaDefault {
    /// A constant (`DEFAULT 10`, `DEFAULT 'novice'`, `DEFAULT '{}'::jsonb`), as SQL text.
    Constant(String),
    /// `now()`, `CURRENT_TIMESTAMP`, `CURRENT_DATE`.
    Now,
    /// Anything else (`gen_random_uuid()`): the server computes it.
    Expression(String),
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub not_null: bool,
    pub default: Option<SchemaDefault>,
    pub span: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    pub file: SourceFile,
    pub span: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub file: SourceFile,
    pub span: Range<usize>,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    /// UNIQUE constraints and unique indexes, each a column set.
    pub uniques: Vec<Vec<String>>,
    pub foreign_keys: Vec<ForeignKey>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether `cols` (in any order) is exactly the primary key or a unique key.
    pub fn is_unique_key(&self, cols: &[&str]) -> bool {
        let same = |k: &[String]| k.len() == cols.len() && cols.iter().all(|c| k.iter().any(|x| x == c));
        same(&self.primary_key) || self.uniques.iter().any(|u| same(u))
    }

    /// The single-column foreign key on `column`, if any.
    pub fn foreign_key_on(&self, column: &str) -> Option<&ForeignKey> {
        self.foreign_keys.iter().find(|fk| fk.columns.len() == 1 && fk.columns[0] == column)
    }
}

/// One migration file of `schema/`, in the naming sqlx's migrator expects.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    pub version: i64,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub tables: BTreeMap<String, Table>,
    pub files: Vec<MigrationFile>,
}

impl Schema {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    /// Reads every forward migration (`*.sql` but not `*.down.sql`) in version order.
    pub fn load_dir(dir: &Path, diags: &mut Diagnostics) -> Schema {
        let mut schema = Schema::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                diags.push(Diagnostic::error(Code::Io, format!("cannot read schema directory {}: {e}", dir.display())));
                return schema;
            }
        };
        let mut files: Vec<MigrationFile> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                name.ends_with(".sql") && !name.ends_with(".down.sql")
            })
            .filter_map(|path| {
                let name = path.file_name()?.to_string_lossy().into_owned();
                let version = name.split('_').next()?.parse().ok()?;
                Some(MigrationFile { version, path })
            })
            .collect();
        files.sort_by_key(|f| f.version);
        for f in &files {
            match std::fs::read_to_string(&f.path) {
                Ok(text) => schema.add_sql(&SourceFile::new(f.path.clone(), text), diags),
                Err(e) => diags.push(Diagnostic::error(Code::Io, format!("cannot read {}: {e}", f.path.display()))),
            }
        }
        schema.files = files;
        schema
    }

    /// Applies the DDL statements of one file to the schema.
    pub fn add_sql(&mut self, file: &SourceFile, diags: &mut Diagnostics) {
        let dialect = PostgreSqlDialect {};
        let statements = match Parser::parse_sql(&dialect, &file.text) {
            Ok(s) => s,
            Err(e) => {
                let msg = e.to_string();
                let span = sql_error_span(file, &msg);
                diags.push(Diagnostic::error(Code::SqlSyntax, "SQL syntax error").at(file, span, msg));
                return;
            }
        };
        for st in &statements {
            match st {
                Statement::CreateTable(ct) => self.create_table(file, ct, diags),
                Statement::AlterTable(at) => {
                    let name = table_name(&at.name);
                    let Some(table) = self.tables.get_mut(&name) else {
                        diags.push(
                            Diagnostic::error(Code::SchemaConflict, format!("ALTER TABLE of unknown table `{name}`"))
                                .at(file, span_of(file, at.name.span()), "not created before"),
                        );
                        continue;
                    };
                    for op in &at.operations {
                        match op {
                            AlterTableOperation::AddConstraint { constraint, .. } => {
                                add_constraint(table, file, constraint)
                            }
                            AlterTableOperation::AddColumn { column_def, .. } => add_column(table, file, column_def),
                            _ => {}
                        }
                    }
                }
                Statement::CreateIndex(ci) if ci.unique && ci.predicate.is_none() => {
                    if let Some(t) = self.tables.get_mut(&table_name(&ci.table_name)) {
                        t.uniques.push(ci.columns.iter().map(|c| column_of(&c.column.expr)).collect());
                    }
                }
                Statement::Drop { object_type: ast::ObjectType::Table, names, .. } => {
                    for n in names {
                        self.tables.remove(&table_name(n));
                    }
                }
                _ => {}
            }
        }
    }

    fn create_table(&mut self, file: &SourceFile, ct: &ast::CreateTable, diags: &mut Diagnostics) {
        let name = table_name(&ct.name);
        let span = span_of(file, ct.name.span());
        if let Some(prev) = self.tables.get(&name) {
            diags.push(
                Diagnostic::error(Code::SchemaConflict, format!("table `{name}` is created twice"))
                    .at(file, span, "created again here")
                    .also(&prev.file, prev.span.clone(), "first created here"),
            );
            return;
        }
        let mut table = Table {
            name: name.clone(),
            file: file.clone(),
            span,
            columns: Vec::new(),
            primary_key: Vec::new(),
            uniques: Vec::new(),
            foreign_keys: Vec::new(),
        };
        for c in &ct.columns {
            add_column(&mut table, file, c);
        }
        for c in &ct.constraints {
            add_constraint(&mut table, file, c);
        }
        self.tables.insert(name, table);
    }
}

fn add_column(table: &mut Table, file: &SourceFile, c: &ast::ColumnDef) {
    let mut col = Column {
        name: c.name.value.clone(),
        ty: SqlType::from_ast(&c.data_type),
        not_null: false,
        default: None,
        span: span_of(file, c.name.span),
    };
    if matches!(&c.data_type, DataType::Custom(n, _) if n.to_string().to_ascii_lowercase().contains("serial")) {
        col.default = Some(SchemaDefault::Expression("nextval(...)".into()));
    }
    for opt in &c.options {
        match &opt.option {
            ColumnOption::NotNull => col.not_null = true,
            ColumnOption::Default(e) => col.default = Some(schema_default(e)),
            ColumnOption::PrimaryKey(_) => {
                col.not_null = true;
                table.primary_key = vec![col.name.clone()];
            }
            ColumnOption::Unique(_) => table.uniques.push(vec![col.name.clone()]),
            ColumnOption::ForeignKey(fk) => table.foreign_keys.push(ForeignKey {
                columns: vec![col.name.clone()],
                ref_table: table_name(&fk.foreign_table),
                ref_columns: fk.referred_columns.iter().map(|i| i.value.clone()).collect(),
                file: file.clone(),
                span: span_of(file, opt.option.span()),
            }),
            ColumnOption::Identity(_) | ColumnOption::Generated { .. } => {
                col.default = Some(SchemaDefault::Expression("generated".into()))
            }
            _ => {}
        }
    }
    table.columns.push(col);
}

fn add_constraint(table: &mut Table, file: &SourceFile, c: &TableConstraint) {
    let names = |cols: &[ast::IndexColumn]| cols.iter().map(|c| column_of(&c.column.expr)).collect::<Vec<_>>();
    match c {
        TableConstraint::PrimaryKey(pk) => {
            table.primary_key = names(&pk.columns);
            for col in &mut table.columns {
                if table.primary_key.contains(&col.name) {
                    col.not_null = true;
                }
            }
        }
        TableConstraint::Unique(u) => table.uniques.push(names(&u.columns)),
        TableConstraint::ForeignKey(fk) => table.foreign_keys.push(ForeignKey {
            columns: fk.columns.iter().map(|i| i.value.clone()).collect(),
            ref_table: table_name(&fk.foreign_table),
            ref_columns: fk.referred_columns.iter().map(|i| i.value.clone()).collect(),
            file: file.clone(),
            span: span_of(file, c.span()),
        }),
        _ => {}
    }
}

fn schema_default(e: &Expr) -> SchemaDefault {
    match e {
        Expr::Value(v) => match &v.value {
            ast::Value::Null => SchemaDefault::Expression("NULL".into()),
            other => SchemaDefault::Constant(other.to_string()),
        },
        Expr::UnaryOp { op: ast::UnaryOperator::Minus, expr } if matches!(**expr, Expr::Value(_)) => {
            SchemaDefault::Constant(e.to_string())
        }
        Expr::Cast { expr, .. } | Expr::Nested(expr) => match schema_default(expr) {
            SchemaDefault::Constant(_) => SchemaDefault::Constant(e.to_string()),
            other => other,
        },
        Expr::Function(f) => match f.name.to_string().to_ascii_lowercase().as_str() {
            "now" | "current_timestamp" | "current_date" | "localtimestamp" | "transaction_timestamp" => {
                SchemaDefault::Now
            }
            _ => SchemaDefault::Expression(e.to_string()),
        },
        Expr::Identifier(i) if i.value.eq_ignore_ascii_case("current_timestamp") => SchemaDefault::Now,
        _ => SchemaDefault::Expression(e.to_string()),
    }
}

/// A key column as the table names it: a quoted identifier without its
/// quotes (`"user id"` is the column `user id`).
fn column_of(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// The unquoted table name (`public.` dropped: the tool targets one schema).
fn table_name(n: &ObjectName) -> String {
    let parts: Vec<String> =
        n.0.iter()
            .map(|p| match p {
                ast::ObjectNamePart::Identifier(i) => i.value.clone(),
                other => other.to_string(),
            })
            .collect();
    match parts.as_slice() {
        [schema, table] if schema == "public" => table.clone(),
        _ => parts.join("."),
    }
}

fn span_of(file: &SourceFile, s: sqlparser::tokenizer::Span) -> Range<usize> {
    if s.start.line == 0 {
        return 0..0;
    }
    let start = file.offset_of(s.start.line as usize, s.start.column as usize);
    let end = file.offset_of(s.end.line as usize, s.end.column as usize).max(start);
    start..end
}

/// sqlparser reports errors as "... at Line: L, Column: C".
fn sql_error_span(file: &SourceFile, msg: &str) -> Range<usize> {
    let num_after = |tag: &str| -> Option<usize> {
        let i = msg.find(tag)? + tag.len();
        msg[i..].trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    match (num_after("Line:"), num_after("Column:")) {
        (Some(l), Some(c)) => {
            let o = file.offset_of(l, c);
            o..(o + 1).min(file.text.len())
        }
        _ => 0..0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(sql: &str) -> (Schema, Diagnostics) {
        let mut d = Diagnostics::default();
        let mut s = Schema::default();
        s.add_sql(&SourceFile::new("0001_t.up.sql", sql), &mut d);
        (s, d)
    }

    #[test]
    fn tables_types_keys_and_foreign_keys() {
        let (s, d) = schema(
            "CREATE TABLE a (id UUID PRIMARY KEY, n VARCHAR(50) NOT NULL DEFAULT 'x', t TIMESTAMP DEFAULT NOW());
             CREATE TABLE b (a_id UUID NOT NULL REFERENCES a(id), k TEXT[], w NUMERIC(4,3) DEFAULT 1.0,
                             j JSONB, tz TIMESTAMPTZ, PRIMARY KEY (a_id, w), UNIQUE (k));
             ALTER TABLE b ADD CONSTRAINT fk2 FOREIGN KEY (k) REFERENCES a(n);",
        );
        assert!(d.is_empty(), "{}", d.render_text(false));
        let a = s.table("a").unwrap();
        assert_eq!(a.primary_key, vec!["id"]);
        assert_eq!(a.column("n").unwrap().ty, SqlType::Varchar(Some(50)));
        assert_eq!(a.column("n").unwrap().default, Some(SchemaDefault::Constant("'x'".into())));
        assert_eq!(a.column("t").unwrap().default, Some(SchemaDefault::Now));
        let b = s.table("b").unwrap();
        assert_eq!(b.column("k").unwrap().ty, SqlType::Array(Box::new(SqlType::Text)));
        assert_eq!(b.column("w").unwrap().ty, SqlType::Numeric(Some((4, 3))));
        assert_eq!(b.column("tz").unwrap().ty, SqlType::Timestamptz);
        assert!(b.is_unique_key(&["w", "a_id"]));
        assert_eq!(b.foreign_key_on("a_id").unwrap().ref_table, "a");
        assert_eq!(b.foreign_keys.len(), 2);
    }

    #[test]
    fn syntax_error_points_at_line() {
        let (_, d) = schema("CREATE TABLE a (\n  id UUID PRIMARY KEY,\n  x INTEGR NOT NULL,,\n);");
        let diag = d.iter().next().unwrap();
        assert_eq!(diag.code, Code::SqlSyntax);
        assert_eq!(diag.location().unwrap().1, 3);
    }

    /// Quoted identifiers in keys name the columns without their quotes.
    #[test]
    fn quoted_key_columns() {
        let (s, d) = schema(
            "CREATE TABLE \"t\" (\"a b\" INTEGER, \"c\" TEXT, PRIMARY KEY (\"a b\", \"c\"), UNIQUE (\"c\"));\n\
             CREATE UNIQUE INDEX i ON \"t\" (\"a b\");",
        );
        assert!(d.is_empty(), "{}", d.render_text(false));
        let t = s.table("t").unwrap();
        assert_eq!(t.primary_key, ["a b", "c"]);
        assert_eq!(t.uniques, [vec!["c".to_string()], vec!["a b".to_string()]]);
    }

    #[test]
    fn type_override_parses() {
        assert_eq!(SqlType::parse("varchar(10)").unwrap(), SqlType::Varchar(Some(10)));
        assert_eq!(SqlType::parse("integer[]").unwrap(), SqlType::Array(Box::new(SqlType::Integer)));
        assert!(SqlType::parse("money").is_err());
        // As the DDL writes it and as the catalog's format_type prints it: one type.
        let point = SqlType::Geo(GeoType { geography: false, kind: Some("point".into()), srid: Some(4326) });
        assert_eq!(SqlType::parse("geometry(Point, 4326)").unwrap(), point);
        assert_eq!(SqlType::parse("geometry(Point,4326)").unwrap(), point);
        assert_eq!(point.to_string(), "geometry(Point,4326)");
        let any = SqlType::Geo(GeoType { geography: true, kind: None, srid: Some(4326) });
        assert_eq!(SqlType::parse("geography").unwrap(), any);
        assert_eq!(SqlType::parse("geography(Geometry,4326)").unwrap(), any);
    }
}
