//! A JSON Schema of mapping files and of the project file, for editors
//! (taplo / Even Better TOML read a `#:schema` line): completion, hover
//! text and early errors while typing. It is generated from the lists the
//! reader and the compiler accept (keys, expressions, transforms, choices),
//! and a test fails when a key has no entry here, so it cannot drift.
//!
//! Knows the language's names; nothing of files or data.

use serde_json::{Value, json};

use crate::lang::expr;
use crate::lang::spec::{COLUMN_OPTIONS, FILTER_KEYS, JSON_KEYS, MAPPING_KEYS, PROJECT_KEYS, UNWIND_KEYS};
use crate::lang::transform::Transform;
use crate::plan::{OnDuplicate, OnMissing};
use crate::value::coerce::BytesText;
use crate::value::json::{DateForm, ObjectIdForm};

fn string(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn choice(names: &[&str], description: &str) -> Value {
    json!({ "enum": names, "description": description })
}

fn json_forms() -> Value {
    json!({
        "type": "object",
        "description": "How BSON values JSON lacks are written inside json/jsonb columns.",
        "additionalProperties": false,
        "properties": {
            JSON_KEYS[0]: choice(ObjectIdForm::NAMES, "ObjectIds: hex, the ids' UUIDs, or extended JSON."),
            JSON_KEYS[1]: choice(DateForm::NAMES, "Dates: ISO-8601, epoch milliseconds, or extended JSON."),
        }
    })
}

fn paths(description: &str) -> Value {
    json!({ "type": "array", "items": { "type": "string" }, "minItems": 1, "description": description })
}

/// The value of a key of a column table: its type and what it does.
fn column_key(key: &str) -> Option<Value> {
    let transforms: Vec<&str> = Transform::names();
    let on_missing: Vec<&str> = OnMissing::NAMES.iter().map(|(_, s)| *s).collect();
    let bytes: Vec<&str> = BytesText::NAMES.iter().map(|(_, s)| *s).collect();
    Some(match key {
        "from" => string("A path into the document ($.a.b) or the unwind element (@.x)."),
        "id" => json!({ "description": "A UUIDv5 of the value at a path, or of several values in order.",
                        "anyOf": [ { "type": "string" }, paths("") ] }),
        "coalesce" => paths("The first of these paths whose value is present and not null."),
        "format" => string("A string template: {$.first} {$.last}."),
        "regex" => json!({
            "type": "object", "description": "A capture group of a regular expression over a string.",
            "required": ["from", "pattern"], "additionalProperties": false,
            "properties": { "from": string("The path of the string."), "pattern": string("Rust regex syntax."),
                            "group": { "type": ["integer", "string"], "description": "A group number or name." } }
        }),
        "position" => json!({
            "type": "object", "description": "The 0-based position of the unwind element.",
            "required": ["index"], "additionalProperties": false,
            "properties": { "index": { "type": "string", "pattern": "^@[0-9]*$", "description": "@ or @1, @2, …" } }
        }),
        "key" => {
            json!({ "type": "string", "pattern": "^@[0-9]*$", "description": "The key of the object entry being unwound (@, or @1 for a level)." })
        }
        "references" => string("A table (its key) or table.column (a natural key)."),
        "on_missing" => choice(&on_missing, "A reference whose row is not there: reject the row, or load NULL."),
        "required" => json!({ "type": "boolean", "description": "A missing or null value rejects the row." }),
        "default" => {
            json!({ "description": "The value when missing or null: a literal, a table for json, or \"now\"." })
        }
        "transform" => json!({ "description": "Pure functions applied in order.",
                               "anyOf": [ { "enum": transforms }, { "type": "array", "items": { "enum": transforms } } ] }),
        "date_format" => string("How to_date reads strings (chrono strftime), e.g. %m/%d/%Y."),
        "split" => string("Cut a string into an array at this separator."),
        "wrap_scalar" => json!({ "type": "boolean", "description": "A single value becomes a one-element array." }),
        "encoding" => choice(&bytes, "How strings hold bytes for a bytea column."),
        "dimensions" => {
            json!({ "type": "integer", "minimum": 1, "description": "Every array value must have this many elements." })
        }
        "point" => json!({ "type": "boolean", "description": "A [lon, lat] pair is a Point (geometry columns)." }),
        "map" => json!({ "type": "object", "description": "Renames values: \"source\" = target.",
                         "additionalProperties": { "type": ["string", "integer", "number", "boolean"] } }),
        "map_null" => {
            json!({ "description": "map sources that become null.", "anyOf": [ { "type": ["string", "integer", "boolean"] }, { "type": "array" } ] })
        }
        "null_if" => json!({ "description": "Values that mean null, compared by value and type." }),
        "type" => string("The type values are checked as, for a column type finlit-map does not know."),
        "time_zone" => json!({ "description": "An IANA zone, or [\"$.path\", \"fallback zone\"] for a zone per row.",
                               "anyOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" }, "minItems": 2, "maxItems": 2 } ] }),
        "json" => json_forms(),
        _ => return None,
    })
}

fn mapping_key(key: &str) -> Option<Value> {
    let on_dup: Vec<&str> = OnDuplicate::NAMES.iter().map(|(_, s)| *s).collect();
    let filter_tests: serde_json::Map<String, Value> = FILTER_KEYS
        .iter()
        .map(|k| {
            let v = match *k {
                "path" => string("The path tested ($ the document, @ the unwind element)."),
                "exists" => json!({ "type": "boolean" }),
                "in" | "not_in" => json!({ "type": "array" }),
                "type" => {
                    json!({ "anyOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ],
                                  "description": "BSON type names, as MongoDB's $type." })
                }
                _ => json!({}),
            };
            (k.to_string(), v)
        })
        .collect();
    let filter =
        json!({ "type": "object", "required": ["path"], "additionalProperties": false, "properties": filter_tests });
    let unwind_table: serde_json::Map<String, Value> = UNWIND_KEYS
        .iter()
        .map(|k| {
            let v = match *k {
                "path" => string("The value taken apart."),
                "wrap_scalar" => json!({ "type": "boolean", "description": "A single value is one element." }),
                _ => string("Cut a string into elements at this separator."),
            };
            (k.to_string(), v)
        })
        .collect();
    Some(match key {
        "source" => string("The collection read."),
        "table" => string("The target table, defined in the schema."),
        "key" => json!({ "description": "The column (or columns) rows are matched by.",
                         "anyOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ] }),
        "unwind" => {
            json!({ "description": "One row per element: a path ($.items[*], $.obj.*), a table, or nested levels.",
                            "anyOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } },
                                       { "type": "object", "required": ["path"], "additionalProperties": false, "properties": unwind_table } ] })
        }
        "on_duplicate" => choice(&on_dup, "A repeated key: reject the later rows, or keep the first or the last."),
        "time_zone" => string("An IANA zone for this mapping's DATE and TIMESTAMP columns."),
        "json" => json_forms(),
        "filter" => json!({ "description": "Conditions a document (or element) must meet.",
                            "anyOf": [ filter.clone(), { "type": "array", "items": filter } ] }),
        "columns" => json!({ "type": "object", "description": "One entry per target column.",
                             "additionalProperties": { "$ref": "#/definitions/column" } }),
        _ => return None,
    })
}

/// The schema of a mapping file.
pub fn mapping_schema() -> Value {
    let column_props: serde_json::Map<String, Value> = expr::keys()
        .into_iter()
        .chain(COLUMN_OPTIONS.iter().copied())
        .filter_map(|k| Some((k.to_string(), column_key(k)?)))
        .collect();
    let props: serde_json::Map<String, Value> =
        MAPPING_KEYS.iter().filter_map(|k| Some((k.to_string(), mapping_key(k)?))).collect();
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "finlit-map mapping file",
        "description": "One MongoDB collection into one PostgreSQL table.",
        "type": "object",
        "required": ["source", "table", "key", "columns"],
        "additionalProperties": false,
        "properties": props,
        "definitions": {
            "column": {
                "description": "A path (shorthand for from), or a table: one value expression and options.",
                "anyOf": [ { "type": "string" }, { "type": "object", "additionalProperties": false, "properties": column_props } ]
            }
        }
    })
}

/// The schema of the project file (`finlit-map.toml`).
pub fn project_schema() -> Value {
    let props: serde_json::Map<String, Value> = PROJECT_KEYS
        .iter()
        .map(|k| {
            let v = match *k {
                "namespace" => json!({ "type": "string", "format": "uuid", "description": "The UUIDv5 namespace of every derived id. Never change it after a migration." }),
                "schema" => string("The schema migrations directory, relative to this file."),
                "time_zone" => string("An IANA zone for DATE and TIMESTAMP columns."),
                _ => json_forms(),
            };
            (k.to_string(), v)
        })
        .collect();
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "finlit-map project file",
        "type": "object",
        "additionalProperties": false,
        "properties": props
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key the reader accepts has an entry: the schema cannot fall behind.
    #[test]
    fn every_key_is_described() {
        for k in expr::keys().into_iter().chain(COLUMN_OPTIONS.iter().copied()) {
            assert!(column_key(k).is_some(), "column key `{k}` has no JSON Schema entry");
        }
        for k in MAPPING_KEYS {
            assert!(mapping_key(k).is_some(), "mapping key `{k}` has no JSON Schema entry");
        }
        let s = mapping_schema();
        assert_eq!(s["properties"].as_object().unwrap().len(), MAPPING_KEYS.len());
    }
}
