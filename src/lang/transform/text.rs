//! The text transforms: strings in, strings (or null) out; any other type
//! is a rejection, never a silent pass-through.

use bson::{RawBson, RawBsonRef};

use super::Transform;

pub(super) fn apply(t: Transform, v: RawBsonRef<'_>) -> Result<Option<RawBson>, String> {
    let RawBsonRef::String(s) = v else {
        return Err(format!("transform `{}` expects a string, got {}", t.name(), crate::value::text::bson_kind(v)));
    };
    let out = match t {
        Transform::Trim => s.trim().to_string(),
        Transform::Lowercase => s.to_lowercase(),
        Transform::Uppercase => s.to_uppercase(),
        Transform::CollapseWhitespace => s.split_whitespace().collect::<Vec<_>>().join(" "),
        Transform::EmptyToNull if s.trim().is_empty() => return Ok(None),
        Transform::EmptyToNull | Transform::Date | Transform::ToNumber | Transform::ToDate => s.to_string(),
    };
    Ok(Some(RawBson::String(out)))
}
