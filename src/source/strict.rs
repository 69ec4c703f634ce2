//! What a readable document is: BSON checked as strictly as the full
//! decoder would, before anything reads a value from it.
//!
//! The engine's one-pass field extractor compares keys as bytes and
//! decodes only the values a mapping asks for, so it cannot be the judge
//! of a document's integrity: a shrunken string length, a key that is not
//! UTF-8 or a boolean byte of 7 would pass it. Every document is checked
//! here once, in one iterative pass without allocation, and so is its
//! depth: MongoDB stores at most 100 levels of nesting, and every
//! recursive walk of a document further on relies on that bound.
//!
//! Knows BSON's byte layout; nothing of mappings or PostgreSQL.

/// MongoDB's own limit on nested documents and arrays.
pub const MAX_DEPTH: usize = 100;

/// Checks a whole document; the error names the byte offset within it.
pub fn check(b: &[u8]) -> Result<(), String> {
    fn err<T>(at: usize, what: &str) -> Result<T, String> {
        Err(format!("invalid BSON at byte {at} of the document: {what}"))
    }
    let doc_end = |at: usize| -> Result<usize, String> {
        let len =
            i32_at(b, at).ok_or_else(|| format!("invalid BSON at byte {at} of the document: truncated length"))?;
        let end = at as i64 + i64::from(len);
        if len < 5 || end > b.len() as i64 {
            return Err(format!("invalid BSON at byte {at} of the document: a length of {len} does not fit"));
        }
        if b[end as usize - 1] != 0 {
            return Err(format!(
                "invalid BSON at byte {at} of the document: the embedded document does not end with NUL"
            ));
        }
        Ok(end as usize)
    };
    let top = doc_end(0)?;
    if top != b.len() {
        return err(0, "the length does not match the bytes");
    }
    // Each open document: where its terminating NUL is (on the stack: this
    // runs for every document).
    let mut ends = [0usize; MAX_DEPTH + 1];
    let mut open = 1;
    ends[0] = top - 1;
    let mut at = 4;
    while open > 0 {
        let end = ends[open - 1];
        if at == end {
            open -= 1;
            at += 1;
            continue;
        }
        let ty = b[at];
        at += 1;
        // The key: a NUL-terminated UTF-8 string inside the document.
        let key_end = match crate::value::fields::cstring(&b[at..end]) {
            Some((n, true)) => at + n,
            Some((n, false)) if utf8(&b[at..at + n]) => at + n,
            Some(_) => return err(at, "a key is not UTF-8"),
            None => return err(at, "a key runs past its document"),
        };
        at = key_end + 1;
        let fixed = |n: usize| if at + n <= end { Ok(at + n) } else { err(at, "a value runs past its document") };
        at = match ty {
            0x01 | 0x09 | 0x11 | 0x12 => fixed(8)?,
            0x07 => fixed(12)?,
            0x10 => fixed(4)?,
            0x13 => fixed(16)?,
            0x06 | 0x0A | 0x7F | 0xFF => at,
            0x08 => match b.get(at) {
                Some(0 | 1) if at < end => at + 1,
                _ => return err(at, "a boolean is neither 0 nor 1"),
            },
            0x02 | 0x0D | 0x0E => string(b, at, end)?,
            0x0C => {
                let next = string(b, at, end)?;
                if next + 12 > end {
                    return err(next, "a DBPointer runs past its document");
                }
                next + 12
            }
            0x05 => {
                let len = i32_at(b, at)
                    .filter(|&l| l >= 0)
                    .ok_or_else(|| format!("invalid BSON at byte {at} of the document: bad binary length"))?
                    as usize;
                if at + 5 + len > end {
                    return err(at, "binary data runs past its document");
                }
                if b[at + 4] == 0x02 && i32_at(b, at + 5).map(|l| l as i64 + 4) != Some(len as i64) {
                    return err(at, "old binary (subtype 2) with an inconsistent inner length");
                }
                at + 5 + len
            }
            0x0B => {
                let mut next = at;
                for _ in 0..2 {
                    let n = b[next..end].iter().position(|&c| c == 0).ok_or_else(|| {
                        format!(
                            "invalid BSON at byte {next} of the document: a regular expression runs past its document"
                        )
                    })?;
                    if !utf8(&b[next..next + n]) {
                        return err(next, "a regular expression is not UTF-8");
                    }
                    next += n + 1;
                }
                next
            }
            0x0F => {
                let total = i32_at(b, at)
                    .ok_or_else(|| format!("invalid BSON at byte {at} of the document: truncated code with scope"))?;
                let code_end = string(b, at + 4, end)?;
                let scope_end = doc_end(code_end)?;
                if scope_end as i64 - at as i64 != i64::from(total) || scope_end > end {
                    return err(at, "code with scope has an inconsistent length");
                }
                // The scope is a document like any other: checked as one.
                check(&b[code_end..scope_end])?;
                scope_end
            }
            0x03 | 0x04 => {
                let inner = doc_end(at)?;
                if inner > end {
                    return err(at, "an embedded document runs past its parent");
                }
                if open >= MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} levels (MongoDB's limit)"));
                }
                ends[open] = inner - 1;
                open += 1;
                at + 4
            }
            other => return err(at - 1, &format!("unknown element type 0x{other:02x}")),
        };
    }
    Ok(())
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A length-prefixed, NUL-terminated UTF-8 string; returns where it ends.
fn string(b: &[u8], at: usize, end: usize) -> Result<usize, String> {
    let bad = |what: &str| Err(format!("invalid BSON at byte {at} of the document: {what}"));
    let Some(len) = i32_at(b, at) else { return bad("a truncated string length") };
    if len < 1 || at + 4 + len as usize > end {
        return bad(&format!("a string length of {len} does not fit"));
    }
    let body = &b[at + 4..at + 4 + len as usize];
    if body[body.len() - 1] != 0 {
        return bad("a string does not end with NUL where its length says");
    }
    if !utf8(&body[..body.len() - 1]) {
        return bad("a string is not UTF-8");
    }
    Ok(at + 4 + len as usize)
}

/// Whether bytes are UTF-8; keys and most strings are ASCII, checked a
/// word at a time before the full validation.
pub fn utf8(b: &[u8]) -> bool {
    b.is_ascii() || std::str::from_utf8(b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{Binary, Bson, doc, spec::BinarySubtype};

    fn bytes(d: &bson::Document) -> Vec<u8> {
        bson::serialize_to_vec(d).unwrap()
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut d = doc! { "leaf": 1 };
        for _ in 1..depth {
            d = doc! { "a": d };
        }
        bytes(&d)
    }

    #[test]
    fn well_formed_documents_pass() {
        let d = doc! {
            "s": "héllo", "i": 1, "l": 2_i64, "f": 1.5, "b": true, "n": null,
            "arr": [1, "x", { "k": [] }], "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2] },
            "re": Bson::RegularExpression(bson::Regex { pattern: "a.*".to_string().try_into().unwrap(), options: "i".to_string().try_into().unwrap() }),
            "code": Bson::JavaScriptCodeWithScope(bson::JavaScriptCodeWithScope { code: "x".into(), scope: doc! { "y": 1 } }),
            "oid": bson::oid::ObjectId::new(), "d": bson::DateTime::now(), "min": Bson::MinKey,
        };
        assert_eq!(check(&bytes(&d)), Ok(()));
        assert_eq!(check(&nested(MAX_DEPTH)), Ok(()));
    }

    /// Each corruption a lenient reader would load as a changed value.
    #[test]
    fn corruptions_are_refused() {
        let base = bytes(&doc! { "url": "https://x", "ok": true, "k": 1 });
        let at = |needle: &[u8]| base.windows(needle.len()).position(|w| w == needle).unwrap();
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        // A string length shrunk by 4: "https" would be read.
        let mut v = base.clone();
        let s = at(b"url\0") + 4;
        v[s] -= 4;
        cases.push(("does not end with NUL", v));
        // A key made invalid UTF-8.
        let mut v = base.clone();
        v[at(b"ok\0")] = 0xff;
        cases.push(("key is not UTF-8", v));
        // A boolean byte of 7.
        let mut v = base.clone();
        v[at(b"ok\0") + 3] = 7;
        cases.push(("neither 0 nor 1", v));
        // An unknown element type.
        let mut v = base.clone();
        v[at(b"\x10k\0")] = 0x42;
        cases.push(("unknown element type", v));
        // A string that is not UTF-8.
        let mut v = base.clone();
        v[at(b"https")] = 0xc3;
        v[at(b"https") + 1] = 0x28;
        cases.push(("string is not UTF-8", v));
        cases.push(("deeper than 100", nested(MAX_DEPTH + 1)));
        for (why, v) in cases {
            let e = check(&v).expect_err(why);
            assert!(e.contains(why), "{why}: {e}");
        }
    }

    /// Very deep documents are refused without recursion (no stack overflow).
    #[test]
    fn depth_is_checked_iteratively() {
        let mut v = vec![0u8; 0];
        // 20,000 levels of {"a": {...}} built as bytes.
        let depth = 20_000;
        let mut inner = vec![5, 0, 0, 0, 0];
        for _ in 0..depth {
            let len = (4 + 1 + 2 + inner.len() + 1) as i32;
            v.clear();
            v.extend(len.to_le_bytes());
            v.extend([0x03, b'a', 0]);
            v.extend(&inner);
            v.push(0);
            std::mem::swap(&mut inner, &mut v);
        }
        assert!(check(&inner).unwrap_err().contains("deeper than 100"));
    }
}
