//! Compiled source paths: where in a document (or in the current `unwind`
//! element) a value comes from.
//!
//! A path is parsed once per run. Plain dotted paths (`$.profile.name`,
//! `@.id`, `$.tags[0]`, `$['odd key']`) walk the raw BSON bytes directly
//! with no allocation; anything else (wildcards, filters, slices, recursive
//! descent) goes through jsonpath-rust over an extended-JSON view of the
//! document, which costs a conversion per document and is used only where the
//! mapping asks for it.
//!
//! This module knows BSON and JSONPath, nothing of columns or SQL types.

use std::fmt;

use bson::{Bson, RawBson, RawBsonRef, RawDocument};
use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;

/// What a path starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `$`: the source document.
    Document,
    /// `@`: the current element of the mapping's `unwind` (the innermost,
    /// when unwinds are nested).
    Element,
    /// `@1`, `@2`, …: the current element of one unwind level, counted
    /// from the outermost (`@1`).
    Level(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Clone)]
enum Kind {
    Simple(Vec<Segment>),
    /// `simple[*]`: every element of the array at a simple path, borrowed.
    Each(Vec<Segment>),
    General {
        query: Box<JpQuery>,
        definite: bool,
        /// The same path with every filter `[?(…)]` read as `[*]`: what the
        /// filters chose from, so the elements they drop can be counted.
        unfiltered: Option<Box<JpQuery>>,
    },
}

/// A path checked and compiled once, evaluated per document.
#[derive(Clone)]
pub struct CompiledPath {
    text: String,
    root: Root,
    kind: Kind,
}

impl fmt::Debug for CompiledPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompiledPath({})", self.text)
    }
}

impl fmt::Display for CompiledPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A value found by a path: borrowed from the document when the fast path
/// found it, owned when a general JSONPath built it.
#[derive(Debug, Clone)]
pub enum Found<'a> {
    Missing,
    Borrowed(RawBsonRef<'a>),
    Owned(RawBson),
}

impl Found<'_> {
    pub fn as_ref(&self) -> Option<RawBsonRef<'_>> {
        match self {
            Found::Missing => None,
            Found::Borrowed(b) => Some(*b),
            Found::Owned(o) => Some(o.as_raw_bson_ref()),
        }
    }
}

impl CompiledPath {
    /// Parses a path. The error is a message fit for a diagnostic label.
    pub fn parse(text: &str) -> Result<CompiledPath, String> {
        let trimmed = text.trim();
        let digits = trimmed.get(1..).map_or(0, |r| r.bytes().take_while(u8::is_ascii_digit).count());
        let root = match trimmed.chars().next() {
            Some('$') => Root::Document,
            Some('@') if digits == 0 => Root::Element,
            Some('@') => match trimmed[1..1 + digits].parse::<u8>() {
                Ok(n) if n >= 1 => Root::Level(n),
                _ => return Err("an unwind level is `@1` (the outermost), `@2`, …".into()),
            },
            _ => {
                return Err("a path starts with `$` (the document) or `@` (the unwind element)".into());
            }
        };
        let rest = &trimmed[1 + digits..];
        if let Some(segs) = parse_simple(rest) {
            return Ok(CompiledPath { text: trimmed.to_string(), root, kind: Kind::Simple(segs) });
        }
        if let Some(segs) = rest.strip_suffix("[*]").and_then(parse_simple) {
            return Ok(CompiledPath { text: trimmed.to_string(), root, kind: Kind::Each(segs) });
        }
        // jsonpath-rust only knows `$` as a root; `@` paths are evaluated
        // against the element, so they parse as `$` paths.
        let as_dollar = format!("${rest}");
        let query = parse_json_path(&as_dollar).map_err(|e| format!("invalid JSONPath: {e}"))?;
        let unfiltered = without_filters(&as_dollar).and_then(|t| parse_json_path(&t).ok()).map(Box::new);
        Ok(CompiledPath {
            text: trimmed.to_string(),
            root,
            kind: Kind::General { query: Box::new(query), definite: is_definite(rest), unfiltered },
        })
    }

    pub fn root(&self) -> Root {
        self.root
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the path selects one value on the fast route (no JSONPath engine).
    pub fn is_simple(&self) -> bool {
        matches!(self.kind, Kind::Simple(_))
    }

    /// Whether the path takes the fast route (no JSONPath engine per document).
    pub fn is_fast(&self) -> bool {
        !matches!(self.kind, Kind::General { .. })
    }

    /// Whether the path has a JSONPath filter `[?(…)]`, whose dropped values can be counted.
    pub fn is_filtering(&self) -> bool {
        matches!(self.kind, Kind::General { unfiltered: Some(_), .. })
    }

    /// Whether the path can select several values (`[*]`, `..`, filters, slices).
    pub fn is_multi(&self) -> bool {
        matches!(self.kind, Kind::Each(_) | Kind::General { definite: false, .. })
    }

    /// The segments of a path the one-pass extractor can serve, and whether
    /// it means every element (`path[*]`).
    pub fn fast_segments(&self) -> Option<(&[Segment], bool)> {
        match &self.kind {
            Kind::Simple(s) => Some((s, false)),
            Kind::Each(s) => Some((s, true)),
            Kind::General { .. } => None,
        }
    }

    /// The dotted segments of a plain `$.a.b` path, for a server-side query.
    pub fn segments_for_query(&self) -> Option<&[Segment]> {
        match (&self.kind, self.root) {
            (Kind::Simple(s), Root::Document) => Some(s),
            _ => None,
        }
    }

    /// The top-level field this path reads, for server-side projection;
    /// `None` when the path may read anything.
    pub fn top_field(&self) -> Option<&str> {
        if self.root != Root::Document {
            return None;
        }
        match &self.kind {
            Kind::Simple(s) | Kind::Each(s) => match s.first() {
                Some(Segment::Key(k)) => Some(k),
                _ => None,
            },
            Kind::General { .. } => {
                let rest = self.text[1..].strip_prefix('.')?;
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                let name = &rest[..end];
                (!name.is_empty() && name != "*" && !name.starts_with('.')).then_some(name)
            }
        }
    }

    /// Evaluates against a document and an optional current element. A
    /// multi-valued path yields an array of what it selected (empty when
    /// nothing matched); a definite path yields one value or `Missing`.
    pub fn eval<'a>(&self, doc: &'a RawDocument, element: Option<RawBsonRef<'a>>) -> Result<Found<'a>, String> {
        self.eval_in(doc, element.as_slice())
    }

    /// Like `eval`, with the current element of every unwind level, the
    /// outermost first (`@1`), the innermost last (`@`).
    pub fn eval_in<'a>(&self, doc: &'a RawDocument, levels: &[RawBsonRef<'a>]) -> Result<Found<'a>, String> {
        let start = self.start(doc, levels)?;
        match &self.kind {
            Kind::Simple(segs) => walk(start, segs).map(|v| v.map_or(Found::Missing, Found::Borrowed)),
            // The array itself stands for "each element": callers iterate it.
            Kind::Each(segs) => self.each(walk(start, segs)?),
            Kind::General { query, definite, .. } => self.select(query, *definite, &to_extjson(start)?),
        }
    }

    /// Like `eval`, and also how many values the path's filters `[?(…)]`
    /// dropped (0 without a filter). The document is converted once for both.
    pub fn eval_counting_dropped<'a>(
        &self,
        doc: &'a RawDocument,
        levels: &[RawBsonRef<'a>],
    ) -> Result<(Found<'a>, usize), String> {
        let Kind::General { query, definite, unfiltered: Some(all) } = &self.kind else {
            return Ok((self.eval_in(doc, levels)?, 0));
        };
        let json = to_extjson(self.start(doc, levels)?)?;
        let all = js_path_process(all, &json).map_err(|e| format!("JSONPath `{}`: {e}", self.text))?.len();
        let found = self.select(query, *definite, &json)?;
        let selected = match found.as_ref() {
            Some(RawBsonRef::Array(a)) if !*definite => a.into_iter().count(),
            Some(_) => 1,
            None => 0,
        };
        Ok((found, all.saturating_sub(selected)))
    }

    fn start<'a>(&self, doc: &'a RawDocument, levels: &[RawBsonRef<'a>]) -> Result<RawBsonRef<'a>, String> {
        let found = match self.root {
            Root::Document => return Ok(RawBsonRef::Document(doc)),
            Root::Element => levels.last(),
            Root::Level(n) => levels.get(usize::from(n) - 1),
        };
        found.copied().ok_or_else(|| format!("`{}` reads an unwind element, but there is none", self.text))
    }

    /// The unwind level a path reads (1 = the outermost), given how many
    /// levels there are; `None` for `$` paths.
    pub fn level(&self, levels: usize) -> Option<usize> {
        match self.root {
            Root::Document => None,
            Root::Element => Some(levels),
            Root::Level(n) => Some(usize::from(n)),
        }
    }

    /// Runs a JSONPath query over the extended-JSON view of the start value.
    fn select(&self, query: &JpQuery, definite: bool, json: &serde_json::Value) -> Result<Found<'static>, String> {
        let hits = js_path_process(query, json).map_err(|e| format!("JSONPath `{}`: {e}", self.text))?;
        let mut values = Vec::with_capacity(hits.len());
        for h in hits {
            values.push(from_extjson(h.val().clone())?);
        }
        if definite {
            Ok(values.pop().map_or(Found::Missing, Found::Owned))
        } else {
            let mut arr = bson::RawArrayBuf::new();
            for v in values {
                arr.push(v);
            }
            Ok(Found::Owned(RawBson::Array(arr)))
        }
    }

    /// What `path[*]` gives for the value at `path`: the array (callers
    /// iterate it), `Missing` for a missing or null value, and an error for
    /// a scalar or a document, which has no elements to give (silently
    /// giving none would lose the value).
    pub fn each<'a>(&self, v: Option<RawBsonRef<'a>>) -> Result<Found<'a>, String> {
        match v {
            Some(a @ RawBsonRef::Array(_)) => Ok(Found::Borrowed(a)),
            None | Some(RawBsonRef::Null | RawBsonRef::Undefined) => Ok(Found::Missing),
            Some(other) => Err(format!(
                "`{}` expects an array, but the value is {} {}",
                self.text,
                crate::value::text::bson_kind(other),
                crate::value::text::preview(other)
            )),
        }
    }
}

/// `$.a[?(@.x > 1)].b` → `$.a[*].b`; `None` when there is no filter.
fn without_filters(text: &str) -> Option<String> {
    if !text.contains("[?") {
        return None;
    }
    let b = text.as_bytes();
    let (mut out, mut i) = (String::new(), 0);
    while i < b.len() {
        if b[i] == b'[' && b.get(i + 1) == Some(&b'?') {
            // Skip to the bracket that closes this filter, past quotes and nesting.
            let (mut depth, mut quote) = (0i32, None::<u8>);
            let mut j = i;
            while j < b.len() {
                match (quote, b[j]) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, c @ (b'\'' | b'"')) => quote = Some(c),
                    (None, b'[') => depth += 1,
                    (None, b']') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            if j >= b.len() {
                return None;
            }
            out.push_str("[*]");
            i = j + 1;
        } else {
            let c = text[i..].chars().next()?;
            out.push(c);
            i += c.len_utf8();
        }
    }
    Some(out)
}

/// One meaning of a plain path wherever it is used (columns, filters, the
/// one-pass extractor, the server-side query), MongoDB's: a key of digits
/// indexes an array (`$.tags.0`), and an index names the key of that
/// number in a document (`$.a[0]` reads `{"0": …}`), as `a.0` does in a query.
fn walk<'a>(mut cur: RawBsonRef<'a>, segs: &[Segment]) -> Result<Option<RawBsonRef<'a>>, String> {
    for seg in segs {
        let next = match (seg, cur) {
            (Segment::Key(k), RawBsonRef::Document(d)) => d.get(k),
            (Segment::Index(i), RawBsonRef::Array(a)) => a.get(*i),
            (Segment::Key(k), RawBsonRef::Array(a)) => match k.parse::<usize>() {
                Ok(i) if k.bytes().all(|c| c.is_ascii_digit()) => a.get(i),
                _ => return Ok(None),
            },
            (Segment::Index(i), RawBsonRef::Document(d)) => d.get(i.to_string()),
            _ => return Ok(None),
        };
        match next.map_err(|e| format!("malformed BSON: {e}"))? {
            Some(v) => cur = v,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

/// Relaxed extended JSON keeps numbers as JSON numbers (so filters compare
/// them) and every other BSON type as `{"$type": …}`, which converts back.
fn to_extjson(v: RawBsonRef<'_>) -> Result<serde_json::Value, String> {
    let b = Bson::try_from(v).map_err(|e| format!("malformed BSON: {e}"))?;
    Ok(b.into_relaxed_extjson())
}

fn from_extjson(v: serde_json::Value) -> Result<RawBson, String> {
    let b = Bson::try_from(v).map_err(|e| format!("cannot convert a JSONPath result back to BSON: {e}"))?;
    RawBson::try_from(b).map_err(|e| format!("cannot convert a JSONPath result back to BSON: {e}"))
}

/// `.a.b[0]['c d']` → segments, or `None` if the path needs the general engine.
fn parse_simple(mut s: &str) -> Option<Vec<Segment>> {
    let mut segs = Vec::new();
    while !s.is_empty() {
        if let Some(rest) = s.strip_prefix('.') {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let name = &rest[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
                return None;
            }
            segs.push(Segment::Key(name.to_string()));
            s = &rest[end..];
        } else if let Some(rest) = s.strip_prefix('[') {
            let end = rest.find(']')?;
            let inner = rest[..end].trim();
            if let Some(q) = inner
                .strip_prefix('\'')
                .and_then(|i| i.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|i| i.strip_suffix('"')))
            {
                if q.contains(['\'', '"', '\\']) {
                    return None;
                }
                segs.push(Segment::Key(q.to_string()));
            } else if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_digit()) {
                segs.push(Segment::Index(inner.parse().ok()?));
            } else {
                return None;
            }
            s = &rest[end + 1..];
        } else {
            return None;
        }
    }
    Some(segs)
}

/// A path selects at most one value unless it has a wildcard, a recursive
/// descent, a filter, a slice or a union.
fn is_definite(s: &str) -> bool {
    !(s.contains('*') || s.contains("..") || s.contains('?') || s.contains(':') || s.contains(','))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn doc() -> bson::RawDocumentBuf {
        rawdoc! {
            "_id": 1,
            "profile": { "name": "Ana", "odd key": true },
            "tags": ["a", "b"],
            "kcs": [ { "kc": 1, "w": 0.5 }, { "kc": 2, "w": 1.0 } ],
        }
    }

    #[test]
    fn simple_paths_take_the_fast_route() {
        let d = doc();
        for (path, expected) in [
            ("$.profile.name", Some(RawBsonRef::String("Ana"))),
            ("$['profile']['odd key']", Some(RawBsonRef::Boolean(true))),
            ("$.tags[1]", Some(RawBsonRef::String("b"))),
            ("$.kcs[0].kc", Some(RawBsonRef::Int32(1))),
            ("$.profile.missing", None),
            ("$.tags.name", None),
        ] {
            let p = CompiledPath::parse(path).unwrap();
            assert!(p.is_simple(), "{path}");
            assert_eq!(p.eval(&d, None).unwrap().as_ref(), expected, "{path}");
        }
    }

    #[test]
    fn each_element_of_a_simple_path_is_borrowed() {
        let d = doc();
        let p = CompiledPath::parse("$.kcs[*]").unwrap();
        assert!(p.is_fast() && p.is_multi());
        assert!(matches!(p.eval(&d, None).unwrap(), Found::Borrowed(RawBsonRef::Array(_))));
        // A scalar has no elements: an error, never a silent empty array.
        let err = CompiledPath::parse("$.profile.name[*]").unwrap().eval(&d, None).unwrap_err();
        assert!(err.contains("expects an array") && err.contains("string \"Ana\""), "{err}");
        let missing = CompiledPath::parse("$.nothing[*]").unwrap().eval(&d, None).unwrap();
        assert!(matches!(missing, Found::Missing));
    }

    #[test]
    fn general_paths_select_many() {
        let d = doc();
        let p = CompiledPath::parse("$.kcs[*].kc").unwrap();
        assert!(!p.is_simple() && p.is_multi());
        let found = p.eval(&d, None).unwrap();
        let Some(RawBsonRef::Array(a)) = found.as_ref() else { panic!("{found:?}") };
        let kcs: Vec<_> = a.into_iter().map(|v| v.unwrap().as_i32().unwrap()).collect();
        assert_eq!(kcs, vec![1, 2]);
        let p = CompiledPath::parse("$.kcs[?(@.w > 0.7)].kc").unwrap();
        let found = p.eval(&d, None).unwrap();
        let Some(RawBsonRef::Array(a)) = found.as_ref() else { panic!() };
        assert_eq!(a.into_iter().count(), 1);
    }

    /// Item 11 of the exactness issue: one path, one meaning, whichever
    /// evaluator serves it (the one-pass extractor or the walker).
    #[test]
    fn digit_keys_and_indexes_mean_the_same_everywhere() {
        let d = rawdoc! { "tags": ["a", "b"], "m": { "0": "zero", "1": "one" }, "kcs": [ { "kc": 1 } ] };
        for (path, want) in [
            ("$.tags.0", Some(RawBsonRef::String("a"))),
            ("$.tags[1]", Some(RawBsonRef::String("b"))),
            ("$.m.0", Some(RawBsonRef::String("zero"))),
            ("$.m[1]", Some(RawBsonRef::String("one"))),
            ("$.kcs.0.kc", Some(RawBsonRef::Int32(1))),
            ("$.tags.2", None),
            ("$.tags.x", None),
        ] {
            let p = CompiledPath::parse(path).unwrap();
            assert_eq!(p.eval(&d, None).unwrap().as_ref(), want, "walker: {path}");
            let mut trie = crate::value::fields::FieldTrie::default();
            let slot = trie.add(p.fast_segments().unwrap().0);
            let mut out = vec![None; trie.slots()];
            assert!(trie.extract(&d, &mut out));
            assert_eq!(out[slot], want, "extractor: {path}");
        }
    }

    #[test]
    fn filters_can_be_taken_away_to_count_what_they_drop() {
        assert_eq!(without_filters("$.a[?(@ != '')]").as_deref(), Some("$.a[*]"));
        assert_eq!(without_filters("$.a[?(@.x == ']')].b").as_deref(), Some("$.a[*].b"));
        assert_eq!(without_filters("$.a[*]"), None);
        let d = rawdoc! { "authors": ["x", "", "y", ""] };
        let p = CompiledPath::parse("$.authors[?(@ != '')]").unwrap();
        let (found, dropped) = p.eval_counting_dropped(&d, &[]).unwrap();
        assert_eq!(dropped, 2);
        let Some(RawBsonRef::Array(a)) = found.as_ref() else { panic!("{found:?}") };
        assert_eq!(a.into_iter().count(), 2);
    }

    #[test]
    fn element_paths_read_the_element() {
        let d = doc();
        let el = d.get("kcs").unwrap().unwrap().as_array().unwrap().get(1).unwrap().unwrap();
        let p = CompiledPath::parse("@.w").unwrap();
        assert_eq!(p.eval(&d, Some(el)).unwrap().as_ref(), Some(RawBsonRef::Double(1.0)));
        let whole = CompiledPath::parse("@").unwrap();
        assert_eq!(whole.eval(&d, Some(el)).unwrap().as_ref(), Some(el));
    }

    #[test]
    fn bad_paths_are_errors() {
        assert!(CompiledPath::parse("profile.name").is_err());
        assert!(CompiledPath::parse("$.a[?(@.x ==)]").is_err());
        assert_eq!(CompiledPath::parse("$.profile.name").unwrap().top_field(), Some("profile"));
        assert_eq!(CompiledPath::parse("$.kcs[*].kc").unwrap().top_field(), Some("kcs"));
    }
}
