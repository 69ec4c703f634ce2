//! The single definition of a row's key as text: the text PostgreSQL gives
//! it, whatever the key's types. The ledger records it, rollback matches it,
//! validate compares it.
//!
//! Knows SQL and the catalog; nothing of plans or sources.

use sqlx::PgConnection;

use super::sql::{column_types, equals_param, quote};

/// A row's key as one text value, the same for the ledger and for rollback.
pub fn key_text(cols: &[String]) -> String {
    match cols {
        [one] => format!("{one}::text"),
        many => format!("ROW({})::text", many.join(", ")),
    }
}

/// Keys that the client knows as each column's text, turned into the one
/// text PostgreSQL gives them (`key_text`): `1e+20` for a double the client
/// wrote `100000000000000000000`, `1.50` for `1.5` in `numeric(4,2)`, jsonb
/// with its own spacing. The ledger, rollback and validate all compare this
/// server text, so a key has one text wherever it is compared.
#[derive(Debug, Clone)]
pub struct ServerKeys {
    /// Each key column's quoted name and its type as the catalog writes it.
    cols: Vec<(String, String)>,
    /// Whether this session prints dates as ISO does (`DateStyle`), as the
    /// client writes them.
    iso_dates: bool,
}

impl ServerKeys {
    /// Reads the key columns' types from the catalog.
    pub async fn load(conn: &mut PgConnection, table: &str, key_cols: &[String]) -> Result<ServerKeys, sqlx::Error> {
        let types = column_types(conn, table).await?;
        let cols =
            key_cols.iter().map(|c| (quote(c), types.get(c).cloned().unwrap_or_else(|| "text".into()))).collect();
        let iso_dates: bool =
            sqlx::query_scalar("SELECT current_setting('DateStyle') LIKE 'ISO%'").fetch_one(&mut *conn).await?;
        Ok(ServerKeys { cols, iso_dates })
    }

    /// `(key expression, FROM clause)` for keys bound as one `text[]` per
    /// key column from parameter `$first` on, in their order (`u.n`).
    pub fn sql(&self, first: usize) -> (String, String) {
        let casts: Vec<String> = match self.cols.as_slice() {
            // A text, integer, UUID or boolean key as the client writes it
            // is already the server's text: no round trip through the type
            // (it costs the server a parse and a print per row of every chunk).
            [(_, ty)] if self.canonical_text(ty) => vec!["u.k0".to_string()],
            cols => cols.iter().enumerate().map(|(i, (_, ty))| format!("u.k{i}::{ty}")).collect(),
        };
        let params: Vec<String> = (0..self.cols.len()).map(|i| format!("${}::text[]", first + i)).collect();
        let names: Vec<String> = (0..self.cols.len()).map(|i| format!("k{i}")).collect();
        (key_text(&casts), format!("unnest({}) WITH ORDINALITY AS u({}, n)", params.join(", "), names.join(", ")))
    }

    /// Whether the client's texts of a key are the server's already (every
    /// column of a type `canonical_text` lists): the key texts are then
    /// made by `client_texts`, with no round trip through the types.
    pub fn as_bound(&self) -> bool {
        !self.cols.is_empty() && self.cols.iter().all(|(_, ty)| self.canonical_text(ty))
    }

    /// The key texts of rows whose key columns' client texts are `cols`
    /// (one list per column, `None` for NULL), as `key_text` has the server
    /// write them; only where `as_bound`. One column's are its texts; the
    /// texts of several are joined as `ROW(…)::text` joins them. Joining
    /// them here instead of casting each back to its type spares the server
    /// a parse and a print per column of every row (`docs/PERFORMANCE.md`).
    pub fn client_texts<'k>(&self, cols: &'k [Vec<Option<String>>]) -> KeyTextArray<'k> {
        KeyTextArray { cols }
    }

    /// A chunk's keys as UUIDs into `out` (emptied first), for the ledger's
    /// `uuid_keys`: where the key is one `uuid` column and every key text is
    /// a UUID as PostgreSQL prints it (lowercase, hyphenated), so its text
    /// back from the ledger is the same. `false`, with `out` unusable, when
    /// not.
    pub fn client_uuids(&self, cols: &[Vec<Option<String>>], out: &mut Vec<Option<uuid::Uuid>>) -> bool {
        out.clear();
        let ([(_, ty)], [texts]) = (self.cols.as_slice(), cols) else { return false };
        if ty != "uuid" {
            return false;
        }
        out.reserve(texts.len());
        for text in texts {
            match text.as_deref().map(printed_uuid) {
                None => out.push(None),
                Some(Some(u)) => out.push(Some(u)),
                Some(None) => return false,
            }
        }
        true
    }

    /// Types whose values the client writes exactly as PostgreSQL prints
    /// them (`value::cell::Cell::to_pg_text`): decimal integers, lowercase
    /// hyphenated UUIDs, `t`/`f`, text itself, and dates where the session
    /// prints them as ISO does. Times and numbers with a scale depend on the
    /// session or the type's modifier, and go through the server.
    fn canonical_text(&self, ty: &str) -> bool {
        matches!(ty, "text" | "smallint" | "integer" | "bigint" | "uuid" | "boolean")
            || ty.starts_with("character varying")
            || (ty == "date" && self.iso_dates)
    }

    /// A condition matching table alias `t`'s key to keys bound from `$first` (one value each).
    pub fn matches(&self, first: usize) -> String {
        let conds: Vec<String> = self
            .cols
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| equals_param(&format!("t.{name}"), "=", first + i, ty))
            .collect();
        conds.join(" AND ")
    }

    /// Whether alias `alias`'s columns are among values bound column by
    /// column as client text from `$first` on: typed, so an index serves it.
    pub fn within(&self, alias: &str, first: usize) -> String {
        let cols: Vec<String> = self.cols.iter().map(|(name, _)| format!("{alias}.{name}")).collect();
        let casts: Vec<String> = self.cols.iter().enumerate().map(|(i, (_, ty))| format!("u.k{i}::{ty}")).collect();
        let params: Vec<String> = (0..self.cols.len()).map(|i| format!("${}::text[]", first + i)).collect();
        let names: Vec<String> = (0..self.cols.len()).map(|i| format!("k{i}")).collect();
        format!(
            "({}) IN (SELECT {} FROM unnest({}) AS u({}))",
            cols.join(", "),
            casts.join(", "),
            params.join(", "),
            names.join(", ")
        )
    }
}

/// `text` as a UUID where it is one as PostgreSQL prints it (`uuid_out`:
/// 36 characters, lowercase, hyphenated); the parser alone also takes
/// upper case, braces and no hyphens, whose text would come back changed.
fn printed_uuid(text: &str) -> Option<uuid::Uuid> {
    if text.len() != 36 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    uuid::Uuid::try_parse(text).ok()
}

/// A chunk's key texts (`ServerKeys::client_texts`), bound as one
/// `text[]` and written straight into the statement's buffer: sized once,
/// with no string per key on the way (each chunk's were a few hundred
/// kilobytes grown by doubling, then copied again by the driver).
#[derive(Debug, Clone, Copy)]
pub struct KeyTextArray<'k> {
    cols: &'k [Vec<Option<String>>],
}

impl KeyTextArray<'_> {
    fn rows(&self) -> usize {
        self.cols.first().map_or(0, Vec::len)
    }

    fn part(&self, col: usize, row: usize) -> Option<&str> {
        self.cols.get(col)?.get(row)?.as_deref()
    }

    /// The texts, as strings (what the buffer holds).
    pub fn to_vec(&self) -> Vec<Option<String>> {
        match self.cols {
            [one] => one.clone(),
            many => (0..self.rows())
                .map(|r| {
                    let mut text = String::new();
                    row_text((0..many.len()).map(|c| self.part(c, r)), &mut text);
                    Some(text)
                })
                .collect(),
        }
    }
}

impl sqlx::Type<sqlx::Postgres> for KeyTextArray<'_> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Vec<String> as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for KeyTextArray<'_> {
    /// PostgreSQL's binary array (`array_recv`): one dimension, flags 0,
    /// the element type `text`, the length and lower bound 1, then each
    /// element as a length (-1: NULL) and its bytes.
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        const TEXT_OID: u32 = 25;
        let rows = self.rows();
        let count = i32::try_from(rows).map_err(|_| format!("{rows} keys are too many for one array"))?;
        // Every part, a length per row, and per part a comma and a pair of quotes.
        let parts: usize = self.cols.iter().flatten().map(|t| t.as_ref().map_or(0, String::len) + 3).sum();
        let buf: &mut Vec<u8> = buf;
        buf.reserve(20 + rows * 6 + parts);
        for word in [1i32, 0] {
            buf.extend_from_slice(&word.to_be_bytes());
        }
        buf.extend_from_slice(&TEXT_OID.to_be_bytes());
        for word in [count, 1] {
            buf.extend_from_slice(&word.to_be_bytes());
        }
        let one = self.cols.len() == 1;
        for r in 0..rows {
            if one && self.part(0, r).is_none() {
                buf.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            let at = buf.len();
            buf.extend_from_slice(&[0; 4]);
            if one {
                buf.extend_from_slice(self.part(0, r).unwrap_or_default().as_bytes());
            } else {
                row_bytes((0..self.cols.len()).map(|c| self.part(c, r)), buf);
            }
            let len = i32::try_from(buf.len() - at - 4).map_err(|_| "a key text is too long".to_string())?;
            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        Ok(sqlx::encode::IsNull::No)
    }
}

/// `ROW(a, b, …)::text` of values whose texts are `parts` (`None`: NULL),
/// as PostgreSQL's `record_out` writes it: NULL as nothing; a value in
/// double quotes when it is empty or holds `"`, `\`, `(`, `)`, `,` or white
/// space (space, tab, LF, CR, VT, FF), with `"` and `\` doubled inside.
pub fn row_text<'p>(parts: impl IntoIterator<Item = Option<&'p str>>, out: &mut String) {
    row_pieces(parts, |piece| out.push_str(piece));
}

/// `row_text` as bytes, for the statement's buffer to take them.
fn row_bytes<'p>(parts: impl IntoIterator<Item = Option<&'p str>>, out: &mut Vec<u8>) {
    row_pieces(parts, |piece| out.extend_from_slice(piece.as_bytes()));
}

/// `row_text`'s text in pieces, in order. A part is cut only at `"` and
/// `\` (ASCII), so every piece is whole UTF-8 whatever the output is.
fn row_pieces<'p>(parts: impl IntoIterator<Item = Option<&'p str>>, mut emit: impl FnMut(&str)) {
    let special = |c: u8| matches!(c, b'"' | b'\\' | b'(' | b')' | b',' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    emit("(");
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            emit(",");
        }
        let Some(v) = part else { continue };
        if !v.is_empty() && !v.bytes().any(special) {
            // The usual key part (a UUID, a number, a date): as it is.
            emit(v);
            continue;
        }
        emit("\"");
        let mut rest = v;
        while let Some(at) = rest.find(['"', '\\']) {
            emit(&rest[..=at]);
            emit(&rest[at..=at]);
            rest = &rest[at + 1..];
        }
        emit(rest);
        emit("\"");
    }
    emit(")");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What PostgreSQL 15 prints for `ROW(…)::text` of these texts
    /// (`tests/suite/keys.rs` asks the server itself).
    #[test]
    fn row_texts_are_written_as_record_out_writes_them() {
        let cases: &[(&[Option<&str>], &str)] = &[
            (&[Some("a"), Some("1")], "(a,1)"),
            (&[None, Some("x")], "(,x)"),
            (&[None, None], "(,)"),
            (&[Some(""), Some("b")], "(\"\",b)"),
            (&[Some("a b"), Some("t\tab")], "(\"a b\",\"t\tab\")"),
            (&[Some("say \"hi\""), Some("c:\\dir")], "(\"say \"\"hi\"\"\",\"c:\\\\dir\")"),
            (&[Some("(x)"), Some("1,2")], "(\"(x)\",\"1,2\")"),
            (&[Some("héllo"), Some("\u{b}")], "(héllo,\"\u{b}\")"),
            (&[Some("line\nbreak"), Some("form\u{c}feed")], "(\"line\nbreak\",\"form\u{c}feed\")"),
            (
                &[Some("01234567-89ab-cdef-0123-456789abcdef"), Some("-42"), Some("t")],
                "(01234567-89ab-cdef-0123-456789abcdef,-42,t)",
            ),
        ];
        for (parts, want) in cases {
            let mut got = String::new();
            row_text(parts.iter().copied(), &mut got);
            assert_eq!(&got, want, "{parts:?}");
        }
    }

    /// The array the statement receives is the one the driver itself
    /// would send for the same texts as strings.
    #[test]
    fn key_texts_encode_as_the_drivers_text_array() {
        use sqlx::Encode;
        use sqlx::postgres::PgArgumentBuffer;
        let one = vec![vec![Some("a".to_string()), None, Some(String::new()), Some("é \"x\"".to_string())]];
        let two = vec![
            vec![Some("k".to_string()), None, Some("a b".to_string())],
            vec![Some("1".to_string()), Some("2".to_string()), None],
        ];
        let empty: Vec<Vec<Option<String>>> = vec![vec![]];
        for cols in [&one, &two, &empty] {
            let texts = KeyTextArray { cols };
            let (mut ours, mut drivers) = (PgArgumentBuffer::default(), PgArgumentBuffer::default());
            let _ = texts.encode_by_ref(&mut ours).unwrap();
            let _ = texts.to_vec().encode_by_ref(&mut drivers).unwrap();
            assert_eq!(&ours[..], &drivers[..], "{cols:?}");
        }
    }

    /// `record_out`'s rule written character by character, as plainly as it
    /// reads: the joined text must be the same for any parts.
    fn row_text_by_chars(parts: &[Option<String>]) -> String {
        let mut out = String::from("(");
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let Some(v) = part else { continue };
            let quoted = v.is_empty() || v.chars().any(|c| "\"\\(), \t\n\r\u{b}\u{c}".contains(c));
            if quoted {
                out.push('"');
            }
            for c in v.chars() {
                if c == '"' || c == '\\' {
                    out.push(c);
                }
                out.push(c);
            }
            if quoted {
                out.push('"');
            }
        }
        out.push(')');
        out
    }

    proptest::proptest! {
        #[test]
        fn row_text_matches_the_rule_character_by_character(
            parts in proptest::collection::vec(proptest::option::of("[a-z0-9\"\\\\(), \t\n\r\u{b}\u{c}é€-]{0,12}"), 1..4)
        ) {
            let mut got = String::new();
            row_text(parts.iter().map(Option::as_deref), &mut got);
            proptest::prop_assert_eq!(got, row_text_by_chars(&parts));
        }
    }

    /// Only the text `uuid_out` prints is taken as a UUID: any other the
    /// parser accepts would come back from the ledger as a different text.
    #[test]
    fn only_printed_uuids_are_kept_as_uuids() {
        let cases: &[(&str, bool)] = &[
            ("01234567-89ab-cdef-0123-456789abcdef", true),
            ("00000000-0000-0000-0000-000000000000", true),
            ("01234567-89AB-cdef-0123-456789abcdef", false),
            ("{01234567-89ab-cdef-0123-456789abcdef}", false),
            ("0123456789abcdef0123456789abcdef", false),
            ("urn:uuid:01234567-89ab-cdef-0123-456789abcdef", false),
            ("0123456789ab-cdef-0123-456789abcdef-", false),
            ("01234567-89ab-cdef-0123-456789abcdeg", false),
            ("", false),
        ];
        for (text, kept) in cases {
            let got = printed_uuid(text);
            assert_eq!(got.is_some(), *kept, "{text}");
            if let Some(u) = got {
                assert_eq!(u.to_string(), *text);
            }
        }
    }

    proptest::proptest! {
        /// Every UUID's printed text is kept, and prints back as itself.
        #[test]
        fn printed_uuids_come_back_as_the_same_text(n: u128) {
            let text = uuid::Uuid::from_u128(n).to_string();
            proptest::prop_assert_eq!(printed_uuid(&text).map(|u| u.to_string()), Some(text));
        }
    }

    #[test]
    fn uuid_keys_only_for_one_uuid_column_of_printed_uuids() {
        let keys = |cols: &[(&str, &str)]| ServerKeys {
            cols: cols.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect(),
            iso_dates: true,
        };
        let u = "01234567-89ab-cdef-0123-456789abcdef";
        let one = vec![vec![Some(u.to_string()), None]];
        let mut out = Vec::new();
        assert!(keys(&[("k", "uuid")]).client_uuids(&one, &mut out));
        assert_eq!(out, [Some(uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)), None]);
        assert!(!keys(&[("k", "text")]).client_uuids(&one, &mut out));
        let upper = vec![vec![Some(u.to_uppercase())]];
        assert!(!keys(&[("k", "uuid")]).client_uuids(&upper, &mut out));
        let two = vec![one[0].clone(), vec![Some("1".to_string()), Some("2".to_string())]];
        assert!(!keys(&[("k", "uuid"), ("n", "integer")]).client_uuids(&two, &mut out));
    }

    #[test]
    fn several_columns_are_joined_and_one_is_kept_as_it_is() {
        let keys = |cols: &[(&str, &str)]| ServerKeys {
            cols: cols.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect(),
            iso_dates: false,
        };
        let one = vec![vec![Some("a".to_string()), None]];
        assert_eq!(keys(&[("k", "text")]).client_texts(&one).to_vec(), one[0]);
        let two = vec![vec![Some("a".to_string()), None], vec![Some("1".to_string()), Some("2".to_string())]];
        let k = keys(&[("k", "uuid"), ("n", "integer")]);
        assert!(k.as_bound());
        assert_eq!(k.client_texts(&two).to_vec(), [Some("(a,1)".to_string()), Some("(,2)".to_string())]);
        let dated = keys(&[("k", "uuid"), ("d", "date")]);
        assert!(!dated.as_bound());
        assert!(ServerKeys { iso_dates: true, ..dated }.as_bound());
        assert!(!keys(&[]).as_bound());
    }
}
