//! One pass per document: every plain path a mapping reads, found by a
//! single scan of the raw BSON bytes.
//!
//! Looking paths up one by one re-scans the document from its start for
//! each, decoding every key on the way. Instead, the plain paths of a
//! mapping are compiled once into a trie of keys; each document is scanned
//! once, keys are compared as bytes, and values are decoded only when a path
//! wants them. A document the scanner does not understand is left to the
//! general path evaluator, which reports the problem precisely.
//!
//! Knows BSON's byte layout; nothing of columns or types.

use bson::oid::ObjectId;
use bson::{Decimal128, RawBsonRef, RawDocument};

use crate::value::path::Segment;

#[derive(Debug, Clone, Default)]
struct Node {
    children: Vec<Child>,
    slot: Option<usize>,
}

/// A key below a node, with its length and first eight bytes as one number
/// so most keys of a document that are not it are told apart without a
/// byte comparison.
#[derive(Debug, Clone)]
struct Child {
    key: Vec<u8>,
    head: (usize, u64),
    node: usize,
}

impl Child {
    fn is(&self, key: &[u8], head: (usize, u64)) -> bool {
        self.head == head && (key.len() <= 8 || same_after_head(&self.key, key))
    }
}

/// Whether two keys of the same length, over eight bytes, whose first
/// eight bytes are the same, are the same: a word at a time, the last word
/// overlapping the one before. Most keys a mapping asks for are longer
/// than eight bytes, and the library's comparison was a call per key (2%
/// of a load's time, `docs/PERFORMANCE.md`).
#[inline]
fn same_after_head(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() || n < 8 {
        return a == b;
    }
    let word = |s: &[u8], at: usize| -> u64 {
        let w: [u8; 8] = s[at..at + 8].try_into().unwrap_or_default();
        u64::from_le_bytes(w)
    };
    let mut at = 8;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// A key's length and its first eight bytes (zero after a shorter key's end).
fn head(key: &[u8]) -> (usize, u64) {
    let mut first = [0u8; 8];
    let n = key.len().min(8);
    first[..n].copy_from_slice(&key[..n]);
    (key.len(), u64::from_le_bytes(first))
}

/// `head` of the key of `len` bytes at `at` in a document, read as one word
/// when the document has eight bytes there (a key is followed by its NUL and
/// its value, so it nearly always has).
#[inline]
fn head_at(b: &[u8], at: usize, len: usize) -> (usize, u64) {
    match b.get(at..at + 8) {
        Some(w) => {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            let keep = if len >= 8 { u64::MAX } else { (1u64 << (len * 8)) - 1 };
            (len, w & keep)
        }
        None => head(&b[at..at + len]),
    }
}

/// The compiled paths of one root (the document, or the unwind element).
#[derive(Debug, Clone)]
pub struct FieldTrie {
    nodes: Vec<Node>,
    slots: usize,
}

impl Default for FieldTrie {
    fn default() -> Self {
        FieldTrie { nodes: vec![Node::default()], slots: 0 }
    }
}

impl FieldTrie {
    /// Adds a path; returns its slot (the same slot for the same path).
    pub fn add(&mut self, segments: &[Segment]) -> usize {
        let mut at = 0;
        for seg in segments {
            let key = match seg {
                Segment::Key(k) => k.as_bytes().to_vec(),
                // Array elements are keyed "0", "1", … in BSON.
                Segment::Index(i) => i.to_string().into_bytes(),
            };
            at = match self.nodes[at].children.iter().find(|c| c.key == key) {
                Some(c) => c.node,
                None => {
                    self.nodes.push(Node::default());
                    let n = self.nodes.len() - 1;
                    self.nodes[at].children.push(Child { head: head(&key), key, node: n });
                    n
                }
            };
        }
        *self.nodes[at].slot.get_or_insert_with(|| {
            self.slots += 1;
            self.slots - 1
        })
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// Fills `out` (one entry per slot) from `doc`. Returns false when the
    /// bytes are not well-formed BSON; `out` is then incomplete.
    pub fn extract<'a>(&self, doc: &'a RawDocument, out: &mut [Option<RawBsonRef<'a>>]) -> bool {
        out.fill(None);
        self.scan(0, doc, out)
    }

    fn scan<'a>(&self, node: usize, doc: &'a RawDocument, out: &mut [Option<RawBsonRef<'a>>]) -> bool {
        let children = &self.nodes[node].children;
        let b = doc.as_bytes();
        if b.len() < 5 {
            return false;
        }
        let end = b.len() - 1;
        let mut i = 4;
        // Stop once every wanted key was seen (only the first of duplicate
        // keys counts, as in `RawDocument::get`).
        let mut left = children.len();
        // A bit per wanted key; nodes with more than 64 children (rare) do
        // not stop early, so every key is still found.
        let mut seen: u64 = 0;
        let mut next = 0;
        if children.len() > 64 {
            left = usize::MAX;
        }
        while i < end && left > 0 {
            let t = b[i];
            i += 1;
            let Some((nul, _)) = cstring(&b[i..end]) else { return false };
            let key = &b[i..i + nul];
            let key_head = head_at(b, i, nul);
            i += nul + 1;
            let Some(len) = value_len(t, &b[i..end]) else { return false };
            let value = &b[i..i + len];
            i += len;
            // Documents of a collection mostly keep one key order, close to
            // the mapping's: the search starts after the child found last.
            let Some(ci) = children[next..]
                .iter()
                .position(|c| c.is(key, key_head))
                .map(|i| next + i)
                .or_else(|| children[..next].iter().position(|c| c.is(key, key_head)))
            else {
                continue;
            };
            next = ci + 1;
            if ci < 64 {
                if seen & (1 << ci) != 0 {
                    continue;
                }
                seen |= 1 << ci;
            }
            left = left.saturating_sub(1);
            let child = children[ci].node;
            let child_node = &self.nodes[child];
            if let Some(slot) = child_node.slot
                && out[slot].is_none()
            {
                match decode(t, value, doc, key) {
                    Some(v) => out[slot] = Some(v),
                    None => return false,
                }
            }
            // Deeper paths: documents, and arrays (whose keys are indexes).
            if !child_node.children.is_empty()
                && (t == 0x03 || t == 0x04)
                && let Ok(inner) = RawDocument::from_bytes(value)
                && !self.scan(child, inner, out)
            {
                return false;
            }
        }
        true
    }
}

/// Calls `f(type, key, value bytes)` for each element of a document's raw
/// bytes, in order, without decoding keys or values; false when the bytes
/// are not well-formed BSON (the elements up to there were seen).
pub fn each_element(doc: &[u8], mut f: impl FnMut(u8, &[u8], &[u8])) -> bool {
    if doc.len() < 5 {
        return false;
    }
    let end = doc.len() - 1;
    let mut i = 4;
    while i < end {
        let t = doc[i];
        i += 1;
        let Some((nul, _)) = cstring(&doc[i..end]) else { return false };
        let key = &doc[i..i + nul];
        i += nul + 1;
        let Some(len) = value_len(t, &doc[i..end]) else { return false };
        f(t, key, &doc[i..i + len]);
        i += len;
    }
    true
}

/// A key at the start of `b`: its length up to the terminating NUL, and
/// whether it is ASCII; `None` when no NUL ends it.
///
/// Keys are short and every element has one, so this looks at eight bytes
/// at a time in a register, noting any byte with its high bit set on the
/// way (a library search per key took more instructions for keys this
/// short, `docs/PERFORMANCE.md`; in time the two are even on this machine).
#[inline]
pub fn cstring(b: &[u8]) -> Option<(usize, bool)> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut high = 0u64;
    let mut words = b.chunks_exact(8);
    for (n, w) in words.by_ref().enumerate() {
        let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        // The lowest byte flagged is the first zero byte (flags above it
        // may be false, from the borrow; little-endian puts it lowest).
        let zero = w.wrapping_sub(ONES) & !w & HIGH;
        if zero != 0 {
            let at = zero.trailing_zeros() as usize / 8;
            let before = (1u64 << (at * 8)).wrapping_sub(1);
            return Some((n * 8 + at, (high | (w & before)) & HIGH == 0));
        }
        high |= w;
    }
    let done = b.len() - words.remainder().len();
    let mut ascii = high & HIGH == 0;
    for (i, &c) in words.remainder().iter().enumerate() {
        if c == 0 {
            return Some((done + i, ascii));
        }
        ascii &= c < 0x80;
    }
    None
}

fn i32_at(b: &[u8]) -> Option<usize> {
    let v = i32::from_le_bytes(b.get(..4)?.try_into().ok()?);
    usize::try_from(v).ok()
}

/// The length of an element's value, by its type.
fn value_len(t: u8, b: &[u8]) -> Option<usize> {
    let len = match t {
        0x01 | 0x09 | 0x11 | 0x12 => 8,
        0x02 | 0x0D | 0x0E => 4 + i32_at(b)?,
        0x03 | 0x04 | 0x0F => i32_at(b)?,
        0x05 => 5 + i32_at(b)?,
        0x06 | 0x0A | 0x7F | 0xFF => 0,
        0x07 => 12,
        0x08 => 1,
        0x0B => {
            let a = b.iter().position(|&c| c == 0)? + 1;
            a + b[a..].iter().position(|&c| c == 0)? + 1
        }
        0x0C => 4 + i32_at(b)? + 12,
        0x10 => 4,
        0x13 => 16,
        _ => return None,
    };
    (len <= b.len()).then_some(len)
}

/// An array's bytes as the array they are.
fn as_array(doc: &RawDocument) -> &bson::RawArray {
    // SAFETY: `RawArray` is `#[repr(transparent)]` over `RawDocument`
    // (itself transparent over `[u8]`), so the two references have one
    // layout; this is the cast `RawArray::from_doc` makes inside the bson
    // crate, which does not export it. `arrays_decode_as_the_document_does`
    // checks the result against the crate's own lookup.
    unsafe { &*(doc as *const RawDocument as *const bson::RawArray) }
}

/// Decodes the common types from their bytes; the rest through the
/// document's own lookup of that key.
fn decode<'a>(t: u8, v: &'a [u8], doc: &'a RawDocument, key: &[u8]) -> Option<RawBsonRef<'a>> {
    let fixed = |n: usize| -> Option<&'a [u8]> { v.get(..n) };
    Some(match t {
        0x01 => RawBsonRef::Double(f64::from_le_bytes(fixed(8)?.try_into().ok()?)),
        0x02 => {
            let len = i32_at(v)?;
            // The length counts the trailing NUL.
            let bytes = v.get(4..4 + len.checked_sub(1)?)?;
            // ASCII is UTF-8: the common case skips the full validation.
            RawBsonRef::String(if bytes.is_ascii() {
                // SAFETY: ASCII bytes are valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            } else {
                std::str::from_utf8(bytes).ok()?
            })
        }
        0x03 => RawBsonRef::Document(RawDocument::from_bytes(v).ok()?),
        // An array is a document keyed "0", "1", …: looking it up again in
        // its parent would re-scan (and re-validate) the parent, per row.
        0x04 => RawBsonRef::Array(as_array(RawDocument::from_bytes(v).ok()?)),
        0x06 => RawBsonRef::Undefined,
        0x07 => RawBsonRef::ObjectId(ObjectId::from_bytes(fixed(12)?.try_into().ok()?)),
        0x08 => RawBsonRef::Boolean(*v.first()? != 0),
        0x09 => RawBsonRef::DateTime(bson::DateTime::from_millis(i64::from_le_bytes(fixed(8)?.try_into().ok()?))),
        0x0A => RawBsonRef::Null,
        0x10 => RawBsonRef::Int32(i32::from_le_bytes(fixed(4)?.try_into().ok()?)),
        0x12 => RawBsonRef::Int64(i64::from_le_bytes(fixed(8)?.try_into().ok()?)),
        0x13 => RawBsonRef::Decimal128(Decimal128::from_bytes(fixed(16)?.try_into().ok()?)),
        0x7F => RawBsonRef::MaxKey,
        0xFF => RawBsonRef::MinKey,
        // Arrays, binaries, timestamps, regexes, code: rarer; let bson build them.
        _ => doc.get(std::str::from_utf8(key).ok()?).ok()??,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;
    use proptest::prelude::Just;

    #[test]
    fn one_pass_finds_every_path() {
        let oid = ObjectId::new();
        let d = rawdoc! {
            "_id": oid,
            "skip": { "deep": [1, 2, 3] },
            "profile": { "name": "Ana", "n": 7_i64, "when": bson::DateTime::from_millis(-5) },
            "tags": ["a", "b"],
            "dec": Decimal128::from_bytes([1; 16]),
            "none": bson::RawBson::Null,
            "uuid": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![3; 16] },
        };
        let mut t = FieldTrie::default();
        let k = |s: &str| Segment::Key(s.to_string());
        let paths = [
            vec![k("_id")],
            vec![k("profile"), k("name")],
            vec![k("profile"), k("n")],
            vec![k("profile"), k("when")],
            vec![k("tags")],
            vec![k("tags"), Segment::Index(1)],
            vec![k("dec")],
            vec![k("none")],
            vec![k("uuid")],
            vec![k("missing")],
            vec![k("profile"), k("missing")],
        ];
        let slots: Vec<usize> = paths.iter().map(|p| t.add(p)).collect();
        assert_eq!(t.add(&paths[1]), slots[1]);
        let mut out = vec![None; t.slots()];
        assert!(t.extract(&d, &mut out));
        for (p, s) in paths.iter().zip(&slots) {
            let mut expected = Some(RawBsonRef::Document(&d));
            for seg in p {
                expected = match (expected, seg) {
                    (Some(RawBsonRef::Document(x)), Segment::Key(k)) => x.get(k).unwrap(),
                    (Some(RawBsonRef::Array(a)), Segment::Index(i)) => a.get(*i).unwrap(),
                    _ => None,
                };
            }
            assert_eq!(out[*s], expected, "{p:?}");
        }
    }

    #[test]
    fn arrays_decode_as_the_document_does() {
        let d = rawdoc! { "a": [1, "x", { "k": [true] }], "e": [], "n": { "deep": [[2.5]] } };
        let mut t = FieldTrie::default();
        let a = t.add(&[Segment::Key("a".into())]);
        let e = t.add(&[Segment::Key("e".into())]);
        let deep = t.add(&[Segment::Key("n".into()), Segment::Key("deep".into())]);
        let mut out = vec![None; t.slots()];
        assert!(t.extract(&d, &mut out));
        assert_eq!(out[a], d.get("a").unwrap());
        assert_eq!(out[e], d.get("e").unwrap());
        assert_eq!(out[deep], d.get_document("n").unwrap().get("deep").unwrap());
        let Some(RawBsonRef::Array(arr)) = out[a] else { panic!("an array") };
        assert_eq!(arr.into_iter().count(), 3);
    }

    #[test]
    fn the_first_of_duplicate_keys_wins() {
        let mut d = bson::RawDocumentBuf::new();
        d.append(bson::cstr!("a"), 1);
        d.append(bson::cstr!("a"), 2);
        d.append(bson::cstr!("b"), 3);
        let mut t = FieldTrie::default();
        let a = t.add(&[Segment::Key("a".into())]);
        let b = t.add(&[Segment::Key("b".into())]);
        let mut out = vec![None; t.slots()];
        assert!(t.extract(&d, &mut out));
        assert_eq!((out[a], out[b]), (Some(RawBsonRef::Int32(1)), Some(RawBsonRef::Int32(3))));
        assert_eq!(d.get("a").unwrap(), out[a]);
    }

    /// The key scanner against the plain definition: the first NUL, and
    /// whether every byte before it is below 0x80.
    fn naive(b: &[u8]) -> Option<(usize, bool)> {
        let n = b.iter().position(|&c| c == 0)?;
        Some((n, b[..n].is_ascii()))
    }

    #[test]
    fn keys_end_at_their_first_nul() {
        let cases: &[&[u8]] = &[
            b"",
            b"\0",
            b"a\0",
            b"abcdefg\0",
            b"abcdefgh\0",
            b"abcdefghi\0rest",
            b"no nul at all, and longer than a word",
            "caf\u{e9}\0".as_bytes(),
            "abcdefg\u{e9}\0".as_bytes(),
            b"\x80\0",
            b"abcdefgh\x01\x00\x80",
            // A 0x01 byte after the NUL: the borrow must not move the NUL.
            b"ab\0\x01cdefgh",
            b"\xff\xff\xff\xff\xff\xff\xff\x00",
        ];
        for &b in cases {
            assert_eq!(cstring(b), naive(b), "{b:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn keys_scan_as_the_plain_definition(b in proptest::collection::vec(
            proptest::prop_oneof![Just(0u8), Just(1u8), Just(0x80u8), Just(0xffu8), proptest::num::u8::ANY], 0..40)) {
            proptest::prop_assert_eq!(cstring(&b), naive(&b));
        }
    }

    proptest::proptest! {
        #[test]
        fn keys_compare_as_bytes(
            a in proptest::collection::vec(proptest::prop_oneof![Just(b'a'), Just(b'b')], 0..30),
            b in proptest::collection::vec(proptest::prop_oneof![Just(b'a'), Just(b'b')], 0..30),
            at in 0usize..30,
        ) {
            // Called once the heads (length, first eight bytes) are equal:
            // given those, it is byte equality.
            let mut b = b;
            if b.len() == a.len() && a.len() >= 8 {
                b[..8].copy_from_slice(&a[..8]);
            }
            proptest::prop_assert_eq!(same_after_head(&a, &b), a == b);
            proptest::prop_assert!(same_after_head(&a, &a.clone()));
            // The same key, one byte apart past its head.
            let mut c = a.clone();
            if at >= 8 && let Some(byte) = c.get_mut(at) {
                *byte ^= 1;
            }
            proptest::prop_assert_eq!(same_after_head(&a, &c), a == c);
        }
    }

    #[test]
    fn a_keys_head_in_place_is_its_head() {
        let b = b"abcdefghij\0xyz\0ab";
        for (at, len) in [(0, 0), (0, 3), (0, 8), (0, 10), (11, 3), (15, 2), (16, 1), (17, 0)] {
            assert_eq!(head_at(b, at, len), head(&b[at..at + len]), "{at} {len}");
        }
    }

    #[test]
    fn keys_sharing_a_head_are_told_apart() {
        let d = rawdoc! { "abcdefgh_one": 1, "abcdefgh_two": 2, "abcdefgh": 3, "abc": 4, "abcdefgh_tw": 5 };
        let mut t = FieldTrie::default();
        let slots: Vec<usize> = ["abcdefgh_two", "abcdefgh", "abc", "abcdefgh_tw"]
            .iter()
            .map(|k| t.add(&[Segment::Key(k.to_string())]))
            .collect();
        let mut out = vec![None; t.slots()];
        assert!(t.extract(&d, &mut out));
        let got: Vec<_> = slots.iter().map(|&s| out[s]).collect();
        let want = [2, 3, 4, 5].map(|n| Some(RawBsonRef::Int32(n)));
        assert_eq!(got, want);
    }

    /// Whatever keys a document and a mapping have (many, few, sharing
    /// their first eight bytes, repeated), each wanted key's value is the
    /// one the document's own lookup finds.
    fn extracts_as_the_documents_lookup(doc_keys: &[usize], wanted: &[usize]) {
        let name = |k: usize| match k % 3 {
            0 => format!("k{k}"),
            1 => format!("abcdefgh_{k}"),
            _ => "x".repeat(1 + k % 11),
        };
        let mut d = bson::RawDocumentBuf::new();
        for (i, &k) in doc_keys.iter().enumerate() {
            d.append(bson::raw::CString::try_from(name(k)).unwrap(), i as i32);
        }
        let mut t = FieldTrie::default();
        let slots: Vec<(String, usize)> = wanted.iter().map(|&k| (name(k), t.add(&[Segment::Key(name(k))]))).collect();
        let mut out = vec![None; t.slots()];
        assert!(t.extract(&d, &mut out));
        for (key, slot) in slots {
            assert_eq!(out[slot], d.get(&key).unwrap(), "{key}");
        }
    }

    #[test]
    fn many_keys_are_found_as_the_document_finds_them() {
        let all: Vec<usize> = (0..150).collect();
        extracts_as_the_documents_lookup(&all, &all.iter().copied().filter(|k| k % 2 == 0).collect::<Vec<_>>());
        extracts_as_the_documents_lookup(&all, &all);
        extracts_as_the_documents_lookup(&[3, 3, 4, 3], &[3, 4, 5]);
    }

    proptest::proptest! {
        #[test]
        fn any_keys_are_found_as_the_document_finds_them(
            doc_keys in proptest::collection::vec(0usize..90, 0..60),
            wanted in proptest::collection::vec(0usize..90, 1..80),
        ) {
            extracts_as_the_documents_lookup(&doc_keys, &wanted);
        }
    }

    #[test]
    fn malformed_bytes_are_not_trusted() {
        let d = rawdoc! { "a": "xyz", "b": 1 };
        let mut bytes = d.as_bytes().to_vec();
        // Make the string's length point past the document.
        bytes[7] = 100;
        let doc = RawDocument::from_bytes(&bytes).unwrap();
        let mut t = FieldTrie::default();
        t.add(&[Segment::Key("b".into())]);
        let mut out = vec![None; 1];
        assert!(!t.extract(doc, &mut out));
    }
}
