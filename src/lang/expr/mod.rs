//! Value expressions: where a column's value comes from, before its
//! transforms, `map`, default and coercion. Each expression is one file
//! here: the key it is written with in a column table, its checks against
//! the column (at compile time, through [`ExprCx`]), the source paths it
//! reads, how it evaluates, and how the `plan` command shows it. The
//! registry [`KINDS`] is the only list of them: the mapping-file reader,
//! the compiler, the row mapper and the plan renderings all go through it.
//!
//! Knows the language's syntax, source paths and values; nothing of files,
//! sources, SQL or connections.

pub mod coalesce;
pub mod default;
pub mod format;
pub mod from;
pub mod id;
pub mod key;
pub mod position;
pub mod regex;

use std::fmt::Debug;
use std::sync::Arc;

use bson::RawBsonRef;

pub use default::DefaultOnly;

use crate::lang::spec::{Literal, Sp};
use crate::schema::SqlType;
use crate::value::cell::Cell;
use crate::value::coerce::{CoerceRules, coerce};
use crate::value::path::{CompiledPath, Found};

/// A compiled value expression.
pub trait Expr: Debug + Send + Sync {
    /// The source paths it reads, in the order [`Expr::eval`] asks for them.
    fn paths(&self) -> Vec<&CompiledPath>;

    /// The value, from `input(i)`: the value of `paths()[i]` in the current
    /// document (and unwind element), `Missing` when there is none; and from
    /// where the row stands (`row`: the unwind element's position).
    fn eval<'a>(
        &self,
        input: &mut dyn FnMut(usize) -> Result<Found<'a>, String>,
        row: &RowCx,
    ) -> Result<Found<'a>, String>;

    /// Whether the value is the value of its one path, as it is (what
    /// `eval` returns is `input(0)`): the mapper then reads it without
    /// calling `eval`, as most columns are.
    fn is_path(&self) -> bool {
        false
    }

    /// The value as the column's cell: coerced to the column's type, unless
    /// the expression derives something else (an id).
    fn convert<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, rules: &CoerceRules) -> Result<Cell<'a>, String> {
        coerce(v, ty, rules)
    }

    /// As the `plan` command shows it.
    fn text(&self) -> String;

    /// What the value becomes when that is not simply the column's type
    /// (`uuid5` for an id), for the `plan` command.
    fn yields(&self) -> Option<&'static str> {
        None
    }

    /// Whether the value is a row's derived id, as a foreign key holds it.
    fn is_id(&self) -> bool {
        false
    }

    /// Whether the column has no source and takes only its default.
    fn is_default_only(&self) -> bool {
        false
    }
}

pub type ExprRef = Arc<dyn Expr>;

/// Where a row stands, beside its values: for each unwind level, the
/// outermost first, the 0-based position of its element and the key of
/// the object entry it is (`unwind = "$.obj.*"`). Empty without `unwind`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowCx<'r> {
    pub levels: &'r [Level<'r>],
}

/// One unwind level's current element: its position, and its entry key.
#[derive(Debug, Clone, Copy)]
pub struct Level<'r> {
    pub index: usize,
    pub key: Option<&'r str>,
}

impl RowCx<'_> {
    /// Level `n` (1 = the outermost); `None` for the innermost (`@`).
    pub fn level(&self, n: Option<usize>) -> Option<&Level<'_>> {
        match n {
            None => self.levels.last(),
            Some(n) => self.levels.get(n.checked_sub(1)?),
        }
    }
}

/// Reads `"@"` or `"@N"` (an unwind level): `Ok(None)` for the innermost.
pub fn level_arg(at: &str, levels: usize) -> Result<Option<usize>, String> {
    if at == "@" {
        return Ok(None);
    }
    match at.strip_prefix('@').and_then(|n| n.parse::<usize>().ok()) {
        Some(n) if (1..=levels).contains(&n) => Ok(Some(n)),
        Some(n) => Err(format!("`@{n}`, but the mapping unwinds {levels} level(s): `@1` to `@{levels}`")),
        None => Err(format!("`{at}` is not an unwind level: `@` (the innermost), or `@1` (the outermost), `@2`, …")),
    }
}

/// What compiling an expression may ask of the compiler.
pub trait ExprCx {
    /// Compiles a source path (reporting a bad one).
    fn path(&mut self, p: &Sp<String>) -> Option<CompiledPath>;
    /// Reports an argument of the wrong shape (`expected` as in "a string").
    fn wrong_arg(&mut self, arg: &Sp<Literal>, expected: &str);
    /// Reports any other misuse of the expression, with a hint.
    fn misuse(&mut self, at: &Sp<Literal>, message: String, help: &str);
    /// How many unwind levels the mapping has (0: no `unwind`; `@` is
    /// the element of the last).
    fn levels(&self) -> usize;
    /// Whether level `n` (1 = the outermost; `None`: the innermost)
    /// unwinds an object's entries (`unwind = "$.obj.*"`).
    fn entries_at(&self, n: Option<usize>) -> bool;
    /// The column's name and type.
    fn column(&self) -> &str;
    fn ty(&self) -> &SqlType;
    /// Reports that the expression yields `yields`, which the column's
    /// declared type is not.
    fn type_mismatch(&mut self, at: &Sp<Literal>, message: String, yields: &str, help: &str);
}

/// One kind of expression: the key it is written with and how it compiles.
pub struct Kind {
    pub key: &'static str,
    pub compile: fn(&Sp<Literal>, &mut dyn ExprCx) -> Option<ExprRef>,
}

/// Every expression a column table may use, by key.
pub const KINDS: &[Kind] =
    &[from::KIND, id::KIND, coalesce::KIND, format::KIND, regex::KIND, position::KIND, key::KIND];

/// The kind written with `key`.
pub fn kind(key: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.key == key)
}

/// The argument as a path string, or why not.
pub fn path_arg(arg: &Sp<Literal>, cx: &mut dyn ExprCx) -> Option<CompiledPath> {
    match &arg.value {
        Literal::String(s) => cx.path(&Sp::new(s.clone(), arg.span.clone())),
        _ => {
            cx.wrong_arg(arg, "a string");
            None
        }
    }
}

/// Each item of an array argument as a path (`coalesce`, `id` with several
/// fields), or why not.
pub fn paths_arg(arg: &Sp<Literal>, items: &[Literal], cx: &mut dyn ExprCx) -> Option<Vec<CompiledPath>> {
    let mut paths = Vec::with_capacity(items.len());
    for item in items {
        let Literal::String(p) = item else {
            cx.wrong_arg(&Sp::new(item.clone(), arg.span.clone()), "a path string in each place");
            return None;
        };
        paths.push(cx.path(&Sp::new(p.clone(), arg.span.clone()))?);
    }
    Some(paths)
}

/// The keys, for messages (`from`, `id`).
pub fn keys() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::ids::IdNamespace;

    /// A compiler stand-in: paths compile, errors are collected as text.
    struct Stub {
        ty: SqlType,
        errors: Vec<String>,
    }

    impl ExprCx for Stub {
        fn path(&mut self, p: &Sp<String>) -> Option<CompiledPath> {
            CompiledPath::parse(&p.value).map_err(|e| self.errors.push(e)).ok()
        }
        fn wrong_arg(&mut self, arg: &Sp<Literal>, expected: &str) {
            self.errors.push(format!("expected {expected}, found {}", arg.value.kind()));
        }
        fn column(&self) -> &str {
            "c"
        }
        fn misuse(&mut self, _at: &Sp<Literal>, message: String, _help: &str) {
            self.errors.push(message);
        }
        fn levels(&self) -> usize {
            2
        }
        fn entries_at(&self, n: Option<usize>) -> bool {
            n != Some(1)
        }
        fn ty(&self) -> &SqlType {
            &self.ty
        }
        fn type_mismatch(&mut self, _at: &Sp<Literal>, message: String, _yields: &str, _help: &str) {
            self.errors.push(message);
        }
    }

    fn sp<T>(v: T) -> Sp<T> {
        Sp::new(v, 0..0)
    }

    /// Each expression: written as (key, argument) for a column of a type,
    /// over `{"a": 5, "s": "x", "n": null}`: the cell it gives, or why it is refused.
    #[test]
    fn every_expression_compiles_and_evaluates() {
        let levels = [Level { index: 0, key: None }, Level { index: 3, key: Some("fr") }];
        let doc = bson::rawdoc! { "a": 5, "s": "x", "n": null, "t": "Heat (1995)" };
        let re = |pattern: &str, group: Option<Literal>| {
            let mut t = vec![
                ("from".into(), Literal::String("$.t".into())),
                ("pattern".into(), Literal::String(pattern.into())),
            ];
            t.extend(group.map(|g| ("group".to_string(), g)));
            Literal::Table(t)
        };
        let index = |at: &str| Literal::Table(vec![("index".into(), Literal::String(at.into()))]);
        let paths = |ps: &[&str]| Literal::Array(ps.iter().map(|p| Literal::String(p.to_string())).collect());
        let rules = CoerceRules::default();
        let id_of_5 = IdNamespace::default().derive(RawBsonRef::Int32(5)).map(|u| u.to_string()).unwrap();
        let str_arg = |s: &str| Literal::String(s.into());
        let id_of_x_5 = IdNamespace::default()
            .derive_parts(&[RawBsonRef::String("x"), RawBsonRef::Int32(5)])
            .map(|u| u.to_string())
            .unwrap();
        type Row<'s> = (&'s str, Literal, SqlType, Result<Option<String>, &'s str>);
        let rows: Vec<Row> = vec![
            ("from", str_arg("$.a"), SqlType::Integer, Ok(Some("5".into()))),
            ("from", str_arg("$.missing"), SqlType::Integer, Ok(None)),
            ("from", str_arg("$.s"), SqlType::Text, Ok(Some("x".into()))),
            ("from", Literal::Integer(1), SqlType::Text, Err("expected a string, found an integer")),
            ("from", str_arg("a"), SqlType::Text, Err("a path starts with")),
            ("id", str_arg("$.a"), SqlType::Uuid, Ok(Some(id_of_5.clone()))),
            ("id", str_arg("$.a"), SqlType::Integer, Err("`id` derives a UUID, but `c` is integer")),
            ("id", paths(&["$.a"]), SqlType::Uuid, Ok(Some(id_of_5.clone()))),
            ("id", paths(&["$.s", "$.a"]), SqlType::Uuid, Ok(Some(id_of_x_5))),
            ("id", paths(&["$.s", "$.missing"]), SqlType::Uuid, Ok(None)),
            ("id", Literal::Array(vec![]), SqlType::Uuid, Err("expected a path, or an array of paths")),
            ("coalesce", paths(&["$.missing", "$.n", "$.a", "$.s"]), SqlType::Integer, Ok(Some("5".into()))),
            ("coalesce", paths(&["$.s", "$.a"]), SqlType::Text, Ok(Some("x".into()))),
            ("coalesce", paths(&["$.missing", "$.n"]), SqlType::Text, Ok(None)),
            ("coalesce", str_arg("$.a"), SqlType::Text, Err("expected an array of paths")),
            ("coalesce", Literal::Array(vec![]), SqlType::Text, Err("expected at least one path")),
            ("coalesce", Literal::Array(vec![Literal::Integer(1)]), SqlType::Text, Err("a path string in each place")),
            ("position", index("@"), SqlType::Integer, Ok(Some("3".into()))),
            ("key", str_arg("@"), SqlType::Text, Ok(Some("fr".into()))),
            ("format", str_arg("{$.s}-{$.a}"), SqlType::Text, Ok(Some("x-5".into()))),
            ("format", str_arg("{$.s} {$.missing}"), SqlType::Text, Ok(None)),
            ("format", str_arg("{$.s"), SqlType::Text, Err("no closing brace")),
            ("key", str_arg("$.a"), SqlType::Text, Err("only `@`")),
            ("position", index("@1"), SqlType::Integer, Ok(Some("0".into()))),
            ("position", index("@3"), SqlType::Integer, Err("`@3`, but the mapping unwinds 2 level(s)")),
            ("key", str_arg("@2"), SqlType::Text, Ok(Some("fr".into()))),
            ("key", str_arg("@1"), SqlType::Text, Err("does not unwind an object there")),
            ("position", str_arg("@"), SqlType::Integer, Err("expected a table such as { index = \"@\" }")),
            ("position", index("@"), SqlType::Text, Err("`position` gives an integer, but `c` is text")),
            ("regex", re(r"^(.*) \((\d{4})\)$", None), SqlType::Text, Ok(Some("Heat".into()))),
            ("regex", re(r"^(.*) \((\d{4})\)$", Some(Literal::Integer(2))), SqlType::Integer, Ok(Some("1995".into()))),
            (
                "regex",
                re(r"\((?<year>\d+)\)", Some(Literal::String("year".into()))),
                SqlType::Text,
                Ok(Some("1995".into())),
            ),
            ("regex", re(r"\d+", None), SqlType::Text, Ok(Some("1995".into()))),
            ("regex", re(r"^x$", None), SqlType::Text, Ok(None)),
            ("regex", re(r"(", None), SqlType::Text, Err("`pattern` is not a regular expression")),
            ("regex", re(r"(a)", Some(Literal::Integer(2))), SqlType::Text, Err("is not in the pattern")),
            ("regex", re(r"(a)", Some(Literal::String("b".into()))), SqlType::Text, Err("is not in the pattern")),
            ("regex", str_arg("$.t"), SqlType::Text, Err("expected a table such as { from")),
        ];
        for (key, arg, ty, want) in rows {
            let mut cx = Stub { ty: ty.clone(), errors: Vec::new() };
            let compiled = (kind(key).unwrap().compile)(&sp(arg.clone()), &mut cx);
            let got = match compiled {
                None => Err(cx.errors.join("; ")),
                Some(e) => {
                    let paths: Vec<CompiledPath> = e.paths().into_iter().cloned().collect();
                    let found = e.eval(&mut |i| paths[i].eval(&doc, None), &RowCx { levels: &levels });
                    found.map(|f| f.as_ref().map(|v| e.convert(v, &ty, &rules).unwrap().to_pg_text().unwrap()))
                }
            };
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{key} {arg:?}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{key} {arg:?}: {g}"),
                _ => panic!("{key} {arg:?} into {ty}: got {got:?}, want {want:?}"),
            }
        }
        let d = DefaultOnly;
        assert!(d.paths().is_empty() && d.is_default_only());
        assert!(matches!(d.eval(&mut |_| unreachable!(), &RowCx::default()), Ok(Found::Missing)));
        assert_eq!(keys(), ["from", "id", "coalesce", "format", "regex", "position", "key"]);
        // A value that is not a string is refused at run time, not matched.
        let mut cx = Stub { ty: SqlType::Text, errors: Vec::new() };
        let e = (kind("regex").unwrap().compile)(&sp(re("x", None)), &mut cx).unwrap();
        let err = e.eval(&mut |_| Ok(Found::Borrowed(RawBsonRef::Int32(7))), &RowCx::default()).unwrap_err();
        assert!(err.contains("reads a string, but the value is int32"), "{err}");
    }
}
