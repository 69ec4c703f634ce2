//! What the mappings read of the data, and what they leave behind: an
//! inventory of every field path in a collection (how many documents have
//! it), compared with the plain paths the mappings read. A mapped path no
//! document has is most likely a typo (`$.profile.native_langauge` would
//! load NULLs); a field no mapping reads is data the migration leaves
//! behind. Both are reported by `run` (and its dry run).
//!
//! Paths are keyed as `profile.native_language`, array elements as
//! `kc_mappings[].kc_id`. Knows BSON, the plan's paths and the report;
//! nothing of files or the database.

use std::collections::BTreeMap;

use bson::RawDocument;
use serde::Serialize;

use crate::plan::MappingPlan;
use crate::value::fields::each_element;
use crate::value::path::{CompiledPath, Root, Segment};

/// BSON element types the inventory looks into.
const DOCUMENT: u8 = 0x03;
const ARRAY: u8 = 0x04;

/// How deep the inventory looks; deeper fields count as their ancestor.
const MAX_DEPTH: usize = 8;
/// Array elements looked at per array (a field in any of them counts).
const MAX_ELEMENTS: usize = 64;
/// Distinct field names kept per object; more count together as `*`.
const MAX_KEYS: usize = 256;

/// Every field path of a collection's documents, with the number of
/// documents that have it: a trie whose children are kept in the order
/// documents write their fields, so a document of the usual shape costs one
/// string comparison per field and no allocation once its paths were seen.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    /// Documents walked.
    pub documents: u64,
    /// Documents offered, walked or not.
    pub total: u64,
    /// Walk at most this many (the first ones); `None`: all.
    limit: Option<u64>,
    nodes: Vec<Node>,
}

#[derive(Debug, Default, Clone)]
struct Node {
    /// (field name as its bytes, node), in the order first seen.
    children: Vec<(Box<[u8]>, usize)>,
    /// Documents that have this path.
    count: u64,
    /// The last document counted, so a path repeated in arrays counts once.
    last: u64,
}

impl Inventory {
    /// An inventory of the first `limit` documents only: a load keeps its
    /// cost bounded, and says how many documents the numbers are of.
    pub fn first(limit: u64) -> Inventory {
        Inventory { limit: Some(limit), ..Default::default() }
    }

    /// Counts one document's field paths.
    pub fn add(&mut self, doc: &RawDocument) {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        self.total += 1;
        if self.limit.is_some_and(|l| self.documents >= l) {
            return;
        }
        self.documents += 1;
        let n = self.documents;
        self.walk(0, doc.as_bytes(), n, 0);
    }

    /// The child `key` of `parent`, looked for first at `*at` (where the
    /// previous field's successor was), then everywhere; `*at` moves on.
    fn child_at(&mut self, parent: usize, key: &[u8], at: &mut usize) -> usize {
        let children = &self.nodes[parent].children;
        let found = match children.get(*at) {
            Some((k, c)) if &**k == key => Some((*at, *c)),
            _ => children.iter().position(|(k, _)| &**k == key).map(|i| (i, children[i].1)),
        };
        if let Some((i, c)) = found {
            *at = i + 1;
            return c;
        }
        // Keys that are data (ids, dates as keys) would grow a node without
        // end: past MAX_KEYS names, the rest count together as `*`.
        if children.len() >= MAX_KEYS && key != b"*" {
            return self.child_at(parent, b"*", &mut 0);
        }
        let id = self.nodes.len();
        self.nodes.push(Node::default());
        let children = &mut self.nodes[parent].children;
        children.push((key.into(), id));
        *at = children.len();
        id
    }

    fn child(&mut self, parent: usize, key: &[u8]) -> usize {
        self.child_at(parent, key, &mut 0)
    }

    fn mark(&mut self, node: usize, n: u64) {
        let node = &mut self.nodes[node];
        if node.last != n {
            node.last = n;
            node.count += 1;
        }
    }

    /// One document's fields, from its raw bytes (keys compared as bytes:
    /// the source already checked them).
    fn walk(&mut self, parent: usize, doc: &[u8], n: u64, depth: usize) {
        let mut at = 0;
        each_element(doc, |t, key, value| {
            let node = self.child_at(parent, key, &mut at);
            self.mark(node, n);
            if depth >= MAX_DEPTH {
                return;
            }
            match t {
                DOCUMENT => self.walk(node, value, n, depth + 1),
                ARRAY => {
                    let elements = self.child(node, b"[]");
                    let mut seen = 0;
                    each_element(value, |t, _, value| {
                        seen += 1;
                        if seen <= MAX_ELEMENTS {
                            self.mark(elements, n);
                            if t == DOCUMENT {
                                self.walk(elements, value, n, depth + 1);
                            }
                        }
                    });
                }
                _ => {}
            }
        });
    }

    /// Documents that have `path` (`None`: the inventory never saw it).
    pub fn count(&self, path: &str) -> Option<u64> {
        let mut node = 0;
        for part in split(path) {
            node = self.nodes.get(node)?.children.iter().find(|(k, _)| &**k == part.as_bytes())?.1;
        }
        self.nodes.get(node).map(|n| n.count)
    }

    /// Every path with its count, parents before children.
    pub fn paths(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        if !self.nodes.is_empty() {
            self.collect(0, "", &mut out);
        }
        out
    }

    fn collect(&self, node: usize, prefix: &str, out: &mut Vec<(String, u64)>) {
        let mut children: Vec<&(Box<[u8]>, usize)> = self.nodes[node].children.iter().collect();
        children.sort();
        for (k, c) in children.into_iter().map(|(k, c)| (k, *c)) {
            let path = join(prefix, &String::from_utf8_lossy(k));
            out.push((path.clone(), self.nodes[c].count));
            self.collect(c, &path, out);
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key) {
        (true, _) => key.to_string(),
        (false, "[]") => format!("{prefix}[]"),
        (false, _) => format!("{prefix}.{key}"),
    }
}

/// `a.b[].c` into `a`, `b`, `[]`, `c`.
fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('.').flat_map(|p| match p.strip_suffix("[]") {
        Some(k) => vec![k, "[]"],
        None => vec![p],
    })
}

/// The inventory key of a plain path, given the key of the unwind's array
/// (for `@` paths); `None` for a path the inventory cannot name (JSONPath
/// filters, `..`, object entries, nested levels).
pub fn path_key(p: &CompiledPath, unwind: Option<&str>) -> Option<String> {
    let (segs, _) = p.fast_segments()?;
    let mut key = match p.root() {
        Root::Document => String::new(),
        Root::Element => format!("{}[]", unwind?),
        Root::Level(_) => return None,
    };
    for s in segs {
        key = match s {
            Segment::Key(k) => join(&key, k),
            Segment::Index(_) => join(&key, "[]"),
        };
    }
    (!key.is_empty()).then_some(key)
}

/// A mapped path that no document has.
#[derive(Debug, Clone, Serialize)]
pub struct Unmatched {
    pub mapping: String,
    pub column: Option<String>,
    pub path: String,
    /// Documents looked at (the first ones, when fewer than `total`).
    pub documents: u64,
    pub total: u64,
    /// The closest field the documents do have, and how many have it.
    pub did_you_mean: Option<(String, u64)>,
}

/// A field no mapping of its collection reads.
#[derive(Debug, Clone, Serialize)]
pub struct LeftBehind {
    pub collection: String,
    pub field: String,
    pub documents: u64,
    /// Documents looked at.
    pub of: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Coverage {
    pub unmatched: Vec<Unmatched>,
    pub left_behind: Vec<LeftBehind>,
}

impl Coverage {
    /// Warnings for typos, one line per collection for what is left behind
    /// (the first eight fields; `--format json` has them all).
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for u in &self.unmatched {
            let column = u.column.as_deref().map(|c| format!(", column {c}")).unwrap_or_default();
            let guess =
                u.did_you_mean.as_ref().map(|(p, n)| format!("; did you mean `{p}` ({n})?")).unwrap_or_default();
            let _ = writeln!(
                out,
                "warning: `{}` ({}{column}) matched 0 of {}{guess}",
                u.path,
                u.mapping,
                of(u.documents, u.total)
            );
        }
        let mut collections: Vec<&str> = self.left_behind.iter().map(|l| l.collection.as_str()).collect();
        collections.dedup();
        for c in collections {
            let all: Vec<&LeftBehind> = self.left_behind.iter().filter(|x| x.collection == c).collect();
            let listed: Vec<String> =
                all.iter().take(8).map(|x| format!("{} ({}/{})", x.field, x.documents, x.of)).collect();
            let more = if all.len() > 8 { format!(" and {} more", all.len() - 8) } else { String::new() };
            let sample =
                all.first().filter(|x| x.of < x.total).map_or(String::new(), |x| format!(", in {}", of(x.of, x.total)));
            let _ = writeln!(out, "left behind in {c} (read by no mapping{sample}): {}{more}", listed.join(", "));
        }
        out
    }
}

/// `250 documents`, or `the first 20000 documents (of 395000)`.
fn of(seen: u64, total: u64) -> String {
    if seen < total { format!("the first {seen} documents (of {total})") } else { format!("{seen} documents") }
}

/// Reads each collection the mappings read once, whole, and takes its
/// inventory (`check --source`). A live server's documents arrive
/// projected to what the mappings read, so there only typos are found.
pub fn scan<'m>(
    mappings: impl IntoIterator<Item = &'m MappingPlan>,
    source: &crate::source::Source,
    rt: tokio::runtime::Handle,
) -> Result<BTreeMap<String, Inventory>, crate::source::SourceError> {
    let mut out: BTreeMap<String, Inventory> = BTreeMap::new();
    for m in mappings {
        if out.contains_key(&m.source) || !source.has(&m.source) {
            continue;
        }
        let mut inv = Inventory::default();
        let mut stream = source.stream(m, None, 1000, rt.clone())?;
        while let Some(item) = stream.next_doc() {
            if let crate::source::SourceItem::Doc(d) = item? {
                inv.add(&d);
            }
        }
        out.insert(m.source.clone(), inv);
    }
    Ok(out)
}

/// The paths a mapping reads, as (column or `None` for unwind/filters,
/// path text, inventory key).
fn read_paths(m: &MappingPlan) -> Vec<(Option<String>, String, String)> {
    let unwind = m.unwind.as_ref().and_then(|u| path_key(u, None));
    let mut out = Vec::new();
    if let Some(u) = &m.unwind {
        if let Some(k) = path_key(u, None) {
            out.push((None, u.text().to_string(), k));
        }
    }
    // `unwind = "$.obj.*"` takes every entry: the object is read whole.
    if let Some(p) = &m.unwind_entries
        && let Some(k) = path_key(p, None)
    {
        out.push((None, p.text().to_string(), k));
    }
    for f in &m.filter {
        if let Some(k) = path_key(&f.path, unwind.as_deref()) {
            out.push((None, f.path.text().to_string(), k));
        }
    }
    for c in &m.columns {
        for p in c.paths() {
            if let Some(k) = path_key(p, unwind.as_deref()) {
                out.push((Some(c.name.clone()), p.text().to_string(), k));
            }
        }
    }
    out
}

/// Compares the inventories (one per collection) with what the mappings read.
pub fn coverage<'m>(
    mappings: impl IntoIterator<Item = &'m MappingPlan>,
    inventories: &BTreeMap<String, Inventory>,
) -> Coverage {
    let mut cov = Coverage::default();
    let mut read: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for m in mappings {
        let Some(inv) = inventories.get(&m.source) else { continue };
        let all = inv.paths();
        for (column, text, key) in read_paths(m) {
            read.entry(m.source.as_str()).or_default().push(key.clone());
            if inv.documents == 0 || inv.count(&key).unwrap_or(0) > 0 {
                continue;
            }
            let guess = crate::lang::diag::did_you_mean(&key, all.iter().map(|(p, _)| p.as_str()))
                .and_then(|g| all.iter().find(|(p, _)| p == g))
                .map(|(p, n)| (display_path(p, &text), *n));
            cov.unmatched.push(Unmatched {
                mapping: m.name.clone(),
                column,
                path: text,
                documents: inv.documents,
                total: inv.total,
                did_you_mean: guess,
            });
        }
    }
    for (collection, inv) in inventories {
        let keys = read.get(collection.as_str()).cloned().unwrap_or_default();
        // A field is read when a mapping reads it, something inside it, or
        // the whole of something it is inside.
        let covered = |p: &str| keys.iter().any(|k| k == p || within(p, k) || within(k, p));
        for (path, n) in inv.paths() {
            let parent_covered = parent(&path).is_none_or(&covered);
            if !covered(&path) && parent_covered {
                cov.left_behind.push(LeftBehind {
                    collection: collection.clone(),
                    field: path,
                    documents: n,
                    of: inv.documents,
                    total: inv.total,
                });
            }
        }
    }
    cov.left_behind.sort_by(|a, b| a.collection.cmp(&b.collection).then(b.documents.cmp(&a.documents)));
    cov
}

/// Whether `inner` lies inside `outer` (`a.b` inside `a`, `a[].b` inside `a`).
fn within(inner: &str, outer: &str) -> bool {
    inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with('.') || rest.starts_with("[]"))
}

fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

/// An inventory key as a path written like the mapping's (`$.a.b`, `@.c`).
fn display_path(key: &str, like: &str) -> String {
    if like.starts_with('@') {
        match key.rsplit_once("[].") {
            Some((_, rest)) => format!("@.{rest}"),
            None => format!("$.{key}"),
        }
    } else {
        format!("$.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    #[test]
    fn the_inventory_counts_documents_per_path() {
        let mut inv = Inventory::default();
        inv.add(&rawdoc! { "a": 1, "p": { "x": 1, "y": 2 }, "items": [ { "k": 1 }, { "k": 2, "w": 3 } ] });
        inv.add(&rawdoc! { "a": 2, "p": { "x": 1 }, "items": [] });
        inv.add(&rawdoc! { "b": true });
        assert_eq!(inv.documents, 3);
        assert_eq!(inv.count("a"), Some(2));
        assert_eq!(inv.count("p.x"), Some(2));
        assert_eq!(inv.count("p.y"), Some(1));
        assert_eq!(inv.count("items"), Some(2));
        assert_eq!(inv.count("items[]"), Some(1));
        assert_eq!(inv.count("items[].k"), Some(1), "counted once per document");
        assert_eq!(inv.count("nope"), None);
    }

    #[test]
    fn path_keys() {
        let k = |p: &str, u: Option<&str>| path_key(&CompiledPath::parse(p).unwrap(), u);
        assert_eq!(k("$.profile.native_language", None).as_deref(), Some("profile.native_language"));
        assert_eq!(k("$.tags[*]", None).as_deref(), Some("tags"));
        assert_eq!(k("$.items[0].k", None).as_deref(), Some("items[].k"));
        assert_eq!(k("@.kc_id", Some("kc_mappings")).as_deref(), Some("kc_mappings[].kc_id"));
        assert_eq!(k("$.items[?(@.k > 1)]", None), None);
    }
}
