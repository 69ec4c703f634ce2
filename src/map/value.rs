//! One column's value for one row, after its expression: sentinels
//! (`null_if`), transforms, `split`/`wrap_scalar`, `map`/`map_null`,
//! `required`/`default`, then coercion to the column's type, in the row's
//! zone when the column reads one (`time_zone = "$.timezone"`).
//!
//! Knows the column plan and BSON; nothing of documents or unwinds.

use bson::{RawBson, RawBsonRef};

use super::ColumnStats;
use crate::lang::transform::{TransformCx, shape};
use crate::plan::{ColumnPlan, DefaultPlan};
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;
use crate::value::equal::same_value;
use crate::value::path::{CompiledPath, Found};
use crate::value::text::{bson_kind, map_key, preview};

/// A value on its way through a column: borrowed from the document until a
/// transform or `map` replaces it.
enum Val<'a> {
    Absent,
    Borrowed(RawBsonRef<'a>),
    Owned(RawBson),
}

impl Val<'_> {
    fn get(&self) -> Option<RawBsonRef<'_>> {
        match self {
            Val::Absent => None,
            Val::Borrowed(b) => Some(*b),
            Val::Owned(o) => Some(o.as_raw_bson_ref()),
        }
    }
}

/// The zones a column's rows named lately, by name: rows of a collection
/// mostly name a few zones, often in turn, and reading a name into a zone
/// searches the whole database of zones.
#[derive(Default)]
pub(super) struct RecentZones {
    zones: Vec<(String, chrono_tz::Tz)>,
    /// The entry the next new name replaces once the list is full.
    oldest: usize,
}

/// How many names a column remembers.
const RECENT_ZONES: usize = 16;

impl RecentZones {
    /// `row_zone`, remembering the names it read.
    pub(super) fn rules(
        &mut self,
        path: &CompiledPath,
        zone: Option<RawBsonRef<'_>>,
        rules: &CoerceRules,
    ) -> Result<CoerceRules, String> {
        if let Some(RawBsonRef::String(name)) = zone
            && let Some((_, tz)) = self.zones.iter().find(|(n, _)| n == name)
        {
            return Ok(CoerceRules { tz: *tz, ..*rules });
        }
        let r = row_zone(path, zone, rules)?;
        if let Some(RawBsonRef::String(name)) = zone {
            let entry = (name.to_string(), r.tz);
            if self.zones.len() < RECENT_ZONES {
                self.zones.push(entry);
            } else {
                self.zones[self.oldest] = entry;
                self.oldest = (self.oldest + 1) % RECENT_ZONES;
            }
        }
        Ok(r)
    }
}

/// The rules with a row's own zone (`time_zone = "$.timezone"`): an IANA
/// name; missing or null keeps the declared zone; anything else rejects.
pub(super) fn row_zone(
    path: &CompiledPath,
    zone: Option<RawBsonRef<'_>>,
    rules: &CoerceRules,
) -> Result<CoerceRules, String> {
    match zone {
        None | Some(RawBsonRef::Null | RawBsonRef::Undefined) => Ok(*rules),
        Some(RawBsonRef::String(name)) => match name.parse::<chrono_tz::Tz>() {
            Ok(tz) => Ok(CoerceRules { tz, ..*rules }),
            Err(_) => {
                Err(format!("time zone {} (from `{path}`) is not an IANA zone", preview(RawBsonRef::String(name))))
            }
        },
        Some(v) => Err(format!("time zone from `{path}` is {} {}, not an IANA zone name", bson_kind(v), preview(v))),
    }
}

/// Whether a value's `map` key (`map_key`) is `key`, without making it
/// for the common case of a string (this runs for every row).
fn map_key_is(v: RawBsonRef<'_>, key: &str) -> bool {
    match v {
        RawBsonRef::String(s) => s == key,
        other => map_key(other).is_some_and(|k| k == key),
    }
}

/// A column's cell from what its expression found.
pub(super) fn value<'a>(
    col: &ColumnPlan,
    found: Found<'a>,
    stats: &mut ColumnStats,
    rules: &CoerceRules,
) -> Result<Cell<'a>, String> {
    let v = match found {
        Found::Missing => return value_of(col, None, stats, rules),
        Found::Borrowed(b) => return value_of(col, Some(b), stats, rules),
        Found::Owned(RawBson::Null | RawBson::Undefined) => Val::Absent,
        Found::Owned(o) => Val::Owned(o),
    };
    column_value(col, v, stats, rules)
}

/// `value` of a plain path's value as the document holds it, without
/// wrapping it in a `Found` first (this runs for every column of every row).
pub(super) fn value_of<'a>(
    col: &ColumnPlan,
    found: Option<RawBsonRef<'a>>,
    stats: &mut ColumnStats,
    rules: &CoerceRules,
) -> Result<Cell<'a>, String> {
    let v = match found {
        None | Some(RawBsonRef::Null | RawBsonRef::Undefined) => Val::Absent,
        Some(b) => Val::Borrowed(b),
    };
    column_value(col, v, stats, rules)
}

fn column_value<'a>(
    col: &ColumnPlan,
    mut v: Val<'a>,
    stats: &mut ColumnStats,
    rules: &CoerceRules,
) -> Result<Cell<'a>, String> {
    let was_present = !matches!(v, Val::Absent);
    // A sentinel (`null_if`), compared with the value as read, means null.
    // Each step asks first whether the column has it at all: most have
    // none, and this runs for every column of every row.
    let mut sentinel = !col.null_if.is_empty()
        && v.get().is_some_and(|b| col.null_if.iter().any(|n| same_value(b, n.as_raw_bson_ref())));
    if sentinel {
        v = Val::Absent;
    }
    let cx = TransformCx { tz: rules.tz, date_format: col.date_format.as_deref() };
    for t in &col.transforms {
        let Some(current) = v.get() else { break };
        if t.keeps(current) {
            continue;
        }
        v = match t.apply(current, &cx)? {
            Some(o) => Val::Owned(o),
            None => Val::Absent,
        };
    }
    if let Some(sep) = &col.split
        && let Some(current) = v.get()
    {
        v = shape::split(current, sep)?.map_or(Val::Absent, Val::Owned);
    }
    if col.wrap_scalar
        && let Some(wrapped) = v.get().and_then(shape::wrap)
    {
        v = Val::Owned(wrapped);
    }
    if !col.map.is_empty()
        && let Some(current) = v.get()
        && let Some((_, to)) = col.map.iter().find(|(from, _)| map_key_is(current, from))
    {
        v = Val::Owned(to.clone());
    }
    if !col.map_null.is_empty() && v.get().is_some_and(|c| col.map_null.iter().any(|k| map_key_is(c, k))) {
        v = Val::Absent;
        sentinel = true;
    }
    let cell = match v {
        Val::Absent => {
            if col.required {
                let what = if sentinel {
                    "is a value that means null (`null_if`/`map_null`)"
                } else if was_present {
                    "became empty"
                } else {
                    "is missing or null"
                };
                return Err(format!("required value {what}"));
            }
            match &col.default {
                DefaultPlan::Value(c) => {
                    stats.defaults += 1;
                    c.clone()
                }
                // The server fills these in: staging carries NULL.
                d if d.by_server() => {
                    stats.defaults += 1;
                    Cell::Null
                }
                _ if col.not_null => return Err("the column is NOT NULL and the document has no value".into()),
                _ => {
                    stats.nulls += 1;
                    Cell::Null
                }
            }
        }
        // Returned as `convert` gives it, not taken apart and made again.
        Val::Borrowed(b) => return col.value.convert(b, &col.ty, rules),
        Val::Owned(o) => return col.value.convert(o.as_raw_bson_ref(), &col.ty, rules).map(Cell::into_owned),
    };
    Ok(cell)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{SQL, plan, rows};
    use bson::{RawBsonRef, rawdoc};

    #[test]
    fn columns_transform_map_default_and_reject() {
        let m = plan(
            SQL,
            r#"source = "s"
table = "t"
key = "id"
filter = { path = "$.kind", not_equals = "bot" }
[columns]
id = { id = "$._id" }
email = { from = "$.email", required = true, transform = ["trim", "lowercase"] }
lvl = { from = "$.level", map = { beginner = "novice" } }
n = { from = "$.n", default = 7 }
"#,
        );
        let id_uuid = crate::value::ids::IdNamespace::default().derive(RawBsonRef::Int32(1)).unwrap();
        assert_eq!(
            rows(&m, &rawdoc! { "_id": 1, "email": " A@B.io ", "level": "beginner", "n": 3 }),
            vec![format!("{id_uuid}|a@b.io|novice|3")]
        );
        // missing -> mapping default; null level -> schema default (NULL in staging)
        assert_eq!(
            rows(&m, &rawdoc! { "_id": 1, "email": "a", "level": bson::RawBson::Null }),
            vec![format!("{id_uuid}|a|NULL|7")]
        );
        assert_eq!(
            rows(&m, &rawdoc! { "_id": 1 }),
            vec!["REJECT None Some(\"email\"): required value is missing or null"]
        );
        assert_eq!(
            rows(&m, &rawdoc! { "_id": 1, "email": "a", "n": 1.5 }),
            vec!["REJECT None Some(\"n\"): double 1.5 is not a whole number; integer would round it"]
        );
        assert_eq!(rows(&m, &rawdoc! { "_id": 1, "email": "a", "kind": "bot" }), vec!["FILTERED 1"]);
    }

    /// Item 6: a `[*]` column over a scalar is refused, not an empty array;
    /// over a missing value it is missing, so `required` fires.
    #[test]
    fn each_path_over_a_scalar_is_refused() {
        let m = plan(
            "CREATE TABLE p (id INTEGER PRIMARY KEY, kinds TEXT[] NOT NULL);",
            r#"source = "s"
table = "p"
key = "id"
[columns]
id = "$._id"
kinds = { from = "$.type[*]", required = true }
"#,
        );
        assert_eq!(rows(&m, &rawdoc! { "_id": 1, "type": ["a", "b"] }), vec![r#"1|{"a","b"}"#]);
        assert_eq!(
            rows(&m, &rawdoc! { "_id": 1, "type": "phone" }),
            vec!["REJECT None Some(\"kinds\"): `$.type[*]` expects an array, but the value is string \"phone\""]
        );
        assert_eq!(
            rows(&m, &rawdoc! { "_id": 1 }),
            vec!["REJECT None Some(\"kinds\"): required value is missing or null"]
        );
    }

    /// The value steps after the transforms: `split` and `wrap_scalar` on
    /// array columns, `to_number` and `to_date` with a format.
    #[test]
    fn columns_split_wrap_and_parse() {
        let m = plan(
            "CREATE TABLE p (id INTEGER PRIMARY KEY, tags TEXT[], ns INTEGER[], price NUMERIC(8,2), day DATE);",
            r#"source = "s"
table = "p"
key = "id"
[columns]
id = "$._id"
tags = { from = "$.tags", split = "," }
ns = { from = "$.ns", wrap_scalar = true }
price = { from = "$.price", transform = "to_number" }
day = { from = "$.day", transform = "to_date", date_format = "%m/%d/%Y" }
"#,
        );
        assert_eq!(
            rows(&m, &rawdoc! { "_id": 1, "tags": "a,b", "ns": 3, "price": " 12.50 ", "day": "03/15/2024" }),
            vec![r#"1|{"a","b"}|{"3"}|12.50|2024-03-15"#]
        );
        assert_eq!(
            rows(&m, &rawdoc! { "_id": 2, "tags": ["x"], "ns": [1, 2], "price": 3 }),
            vec![r#"2|{"x"}|{"1","2"}|3|NULL"#]
        );
        assert_eq!(
            rows(&m, &rawdoc! { "_id": 3, "price": "12,50" }),
            vec![r#"REJECT None Some("price"): string "12,50" is not a number"#]
        );
        assert_eq!(
            rows(&m, &rawdoc! { "_id": 4, "day": "2024-03-15" }),
            vec![r#"REJECT None Some("day"): string "2024-03-15" does not match date_format "%m/%d/%Y""#]
        );
    }

    /// A remembered zone is the zone its name reads as, row after row,
    /// whatever came between (other names, none, a name that is not one,
    /// more names than are remembered).
    #[test]
    fn a_remembered_zone_is_the_zone_its_name_reads_as() {
        let path = crate::value::path::CompiledPath::parse("$.tz").unwrap();
        let rules = crate::value::coerce::CoerceRules::default();
        // More names than are remembered: 26 zones.
        let many: Vec<String> =
            (1..=12).map(|h| format!("Etc/GMT+{h}")).chain((1..=14).map(|h| format!("Etc/GMT-{h}"))).collect();
        assert!(many.len() > super::RECENT_ZONES);
        let mut names = vec!["Asia/Tokyo", "Asia/Tokyo", "", "Mars/Olympus", "Asia/Tokyo", "America/New_York", "UTC"];
        names.extend(many.iter().map(String::as_str));
        names.extend(["Asia/Tokyo", "Etc/GMT+1", "UTC", "Mars/Olympus"]);
        let mut last = super::RecentZones::default();
        for round in 0..3 {
            for name in names.iter().map(|n| (!n.is_empty()).then_some(*n)) {
                let zone = name.map(RawBsonRef::String);
                let want = super::row_zone(&path, zone, &rules).map(|r| r.tz);
                assert_eq!(last.rules(&path, zone, &rules).map(|r| r.tz), want, "{name:?}, round {round}");
            }
        }
    }

    /// `time_zone = ["$.tz", "America/New_York"]`: each row's day in its
    /// own zone, the fallback without one, a reject for a bad name.
    #[test]
    fn a_row_zone_from_the_document() {
        let m = plan(
            "CREATE TABLE d (id INTEGER PRIMARY KEY, day DATE);",
            r#"source = "s"
table = "d"
key = "id"
[columns]
id = "$._id"
day = { from = "$.at", transform = "date", time_zone = ["$.tz", "America/New_York"] }
"#,
        );
        // 2025-01-15T03:30:00Z: the 15th in Tokyo, the 14th in New York.
        let at = bson::DateTime::from_millis(1_736_911_800_000);
        assert_eq!(rows(&m, &rawdoc! { "_id": 1, "at": at, "tz": "Asia/Tokyo" }), vec!["1|2025-01-15"]);
        assert_eq!(rows(&m, &rawdoc! { "_id": 2, "at": at }), vec!["2|2025-01-14"]);
        assert_eq!(
            rows(&m, &rawdoc! { "_id": 3, "at": at, "tz": "Mars/Olympus" }),
            vec!["REJECT None Some(\"day\"): time zone \"Mars/Olympus\" (from `$.tz`) is not an IANA zone"]
        );
    }
}
