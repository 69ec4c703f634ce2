//! `format = "{$.first_name} {$.last_name}"`: a string built from a
//! template, each `{path}` replaced by that value's text (strings as they
//! are, numbers exactly, booleans as `true`/`false`). A part that is missing
//! or null makes the whole value missing (so `required` and `default`
//! apply); a part that is a document, an array or another type is a
//! rejection with the reason. `{{` and `}}` are literal braces.

use std::sync::Arc;

use bson::{RawBson, RawBsonRef};

use super::{Expr, ExprCx, ExprRef, Kind, RowCx};
use crate::lang::spec::{Literal, Sp};
use crate::value::path::{CompiledPath, Found};
use crate::value::text::{bson_kind, decimal128_text, float_text};

pub const KIND: Kind = Kind { key: "format", compile };

#[derive(Debug)]
enum Part {
    Text(String),
    /// The index of a path in `paths`.
    Value(usize),
}

#[derive(Debug)]
struct Format {
    template: String,
    parts: Vec<Part>,
    paths: Vec<CompiledPath>,
}

/// Splits a template into text and `{path}` parts.
fn parse(t: &str) -> Result<(Vec<Part>, Vec<String>), String> {
    let (mut parts, mut paths, mut text) = (Vec::new(), Vec::new(), String::new());
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut path = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => path.push(c),
                        None => return Err(format!("`{{{path}` has no closing brace")),
                    }
                }
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Value(paths.len()));
                paths.push(path.trim().to_string());
            }
            '}' => return Err("a `}` without its `{` (write `}}` for a brace)".into()),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    if paths.is_empty() {
        return Err("no `{path}` in the template: use `default` for a constant".into());
    }
    Ok((parts, paths))
}

fn compile(arg: &Sp<Literal>, cx: &mut dyn ExprCx) -> Option<ExprRef> {
    let Literal::String(template) = &arg.value else {
        cx.wrong_arg(arg, "a template string such as \"{$.first_name} {$.last_name}\"");
        return None;
    };
    let (parts, texts) = match parse(template) {
        Ok(p) => p,
        Err(e) => {
            cx.misuse(arg, format!("template {template:?}: {e}"), "write each value as {$.path}, braces as {{ and }}");
            return None;
        }
    };
    let mut paths = Vec::with_capacity(texts.len());
    for t in texts {
        paths.push(cx.path(&Sp::new(t, arg.span.clone()))?);
    }
    Some(Arc::new(Format { template: template.clone(), parts, paths }))
}

/// A value's text in a template, or why it has none.
fn text_of(v: RawBsonRef<'_>) -> Result<String, String> {
    Ok(match v {
        RawBsonRef::String(s) => s.to_string(),
        RawBsonRef::Int32(i) => i.to_string(),
        RawBsonRef::Int64(i) => i.to_string(),
        RawBsonRef::Double(d) => float_text(d),
        RawBsonRef::Decimal128(d) => decimal128_text(d).unwrap_or_else(|| d.to_string()),
        RawBsonRef::Boolean(b) => b.to_string(),
        RawBsonRef::ObjectId(o) => o.to_hex(),
        other => return Err(format!("`format` cannot put a {} in a string", bson_kind(other))),
    })
}

impl Expr for Format {
    fn paths(&self) -> Vec<&CompiledPath> {
        self.paths.iter().collect()
    }

    fn eval<'a>(
        &self,
        input: &mut dyn FnMut(usize) -> Result<Found<'a>, String>,
        _row: &RowCx<'_>,
    ) -> Result<Found<'a>, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value(i) => {
                    let found = input(*i)?;
                    match found.as_ref() {
                        None | Some(RawBsonRef::Null | RawBsonRef::Undefined) => return Ok(Found::Missing),
                        Some(v) => out.push_str(&text_of(v)?),
                    }
                }
            }
        }
        Ok(Found::Owned(RawBson::String(out)))
    }

    fn text(&self) -> String {
        format!("format({:?})", self.template)
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn templates() {
        let (parts, paths) = parse("{$.a} and {{{$.b}}}").unwrap();
        assert_eq!(paths, ["$.a", "$.b"]);
        assert_eq!(parts.len(), 4); // {$.a}, " and {", {$.b}, "}"
        for (bad, why) in [("{$.a", "no closing brace"), ("a}", "without its"), ("plain", "no `{path}`")] {
            assert!(parse(bad).unwrap_err().contains(why), "{bad}");
        }
    }
}
