//! `regex = { from = "$.title", pattern = '^(.*) \((\d{4})\)$', group = 1 }`:
//! a capture group of a regular expression (Rust's `regex` syntax),
//! compiled once, over a string value. `group` is a number or a group's
//! name; without it, group 1 when the pattern has groups, else the whole
//! match. No match (or a group that took no part): the value is missing,
//! so `required` rejects the row and `default` applies. A value that is
//! not a string is a reject, never matched against some text of it.

use std::sync::Arc;

use bson::{RawBson, RawBsonRef};
use regex::Regex;

use super::{Expr, ExprCx, ExprRef, Kind, RowCx};
use crate::lang::spec::{Literal, Sp};
use crate::value::path::{CompiledPath, Found};
use crate::value::text::{bson_kind, preview};

pub const KIND: Kind = Kind { key: "regex", compile };

const SHAPE: &str = "a table such as { from = \"$.title\", pattern = '^(.*) \\((\\d{4})\\)$', group = 1 }";

#[derive(Debug, Clone)]
enum Group {
    Index(usize),
    Name(String),
}

impl Group {
    fn text(&self) -> String {
        match self {
            Group::Index(i) => i.to_string(),
            Group::Name(n) => format!("{n:?}"),
        }
    }
}

#[derive(Debug)]
struct RegexExpr {
    from: CompiledPath,
    re: Regex,
    group: Group,
}

fn compile(arg: &Sp<Literal>, cx: &mut dyn ExprCx) -> Option<ExprRef> {
    let Literal::Table(entries) = &arg.value else {
        cx.wrong_arg(arg, SHAPE);
        return None;
    };
    let (mut from, mut pattern, mut group) = (None, None, None);
    for (k, v) in entries {
        match (k.as_str(), v) {
            ("from", Literal::String(p)) => from = Some(cx.path(&Sp::new(p.clone(), arg.span.clone()))?),
            ("pattern", Literal::String(p)) => pattern = Some(p.clone()),
            ("group", Literal::Integer(i)) if *i >= 0 => group = Some(Group::Index(*i as usize)),
            ("group", Literal::String(n)) => group = Some(Group::Name(n.clone())),
            _ => {
                let message = format!("`regex` does not take `{k} = {}`", v.kind());
                cx.misuse(arg, message, "keys: from (a path), pattern (a string), group (a number or a name)");
                return None;
            }
        }
    }
    let (Some(from), Some(pattern)) = (from, pattern) else {
        cx.wrong_arg(arg, SHAPE);
        return None;
    };
    let re = match Regex::new(&pattern) {
        Ok(re) => re,
        Err(e) => {
            cx.misuse(arg, format!("`pattern` is not a regular expression: {e}"), "see https://docs.rs/regex#syntax");
            return None;
        }
    };
    let groups = re.captures_len() - 1;
    let group = group.unwrap_or(Group::Index(usize::from(groups > 0)));
    let known = match &group {
        Group::Index(i) => *i <= groups,
        Group::Name(n) => re.capture_names().flatten().any(|c| c == n),
    };
    if !known {
        let named: Vec<String> = re.capture_names().flatten().map(|n| format!("`{n}`")).collect();
        let message = format!("`group = {}` is not in the pattern, which has {groups} group(s)", group.text());
        let help = if named.is_empty() {
            format!("use a number from 0 (the whole match) to {groups}")
        } else {
            format!("use a number from 0 to {groups}, or a name: {}", named.join(", "))
        };
        cx.misuse(arg, message, &help);
        return None;
    }
    Some(Arc::new(RegexExpr { from, re, group }))
}

impl Expr for RegexExpr {
    fn paths(&self) -> Vec<&CompiledPath> {
        vec![&self.from]
    }

    fn eval<'a>(
        &self,
        input: &mut dyn FnMut(usize) -> Result<Found<'a>, String>,
        _row: &RowCx<'_>,
    ) -> Result<Found<'a>, String> {
        let v = input(0)?;
        let s = match v.as_ref() {
            None | Some(RawBsonRef::Null | RawBsonRef::Undefined) => return Ok(Found::Missing),
            Some(RawBsonRef::String(s)) => s,
            Some(other) => {
                return Err(format!(
                    "`regex` reads a string, but the value is {} {}",
                    bson_kind(other),
                    preview(other)
                ));
            }
        };
        let Some(caps) = self.re.captures(s) else { return Ok(Found::Missing) };
        let m = match &self.group {
            Group::Index(i) => caps.get(*i),
            Group::Name(n) => caps.name(n),
        };
        Ok(m.map_or(Found::Missing, |m| Found::Owned(RawBson::String(m.as_str().to_string()))))
    }

    fn text(&self) -> String {
        format!("regex({}, /{}/, group {})", self.from.text(), self.re.as_str(), self.group.text())
    }
}
