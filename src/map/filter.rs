//! What a filter condition means for one value: the same for document
//! conditions (`$` paths) and element conditions (`@` paths), and the
//! meaning the server-side pushdown translates.

use bson::{RawBson, RawBsonRef};

use crate::plan::FilterTest;
use crate::value::equal::same_value;
use crate::value::text::is_bson_type;

/// Whether the value found (`None`: missing) meets the test.
pub(super) fn holds(test: &FilterTest, v: Option<RawBsonRef<'_>>) -> bool {
    match test {
        FilterTest::Exists(want) => v.is_some() == *want,
        FilterTest::Equals(x) => v.is_some_and(|v| matches(v, x)),
        FilterTest::NotEquals(x) => !v.is_some_and(|v| matches(v, x)),
        FilterTest::In(xs) => v.is_some_and(|v| xs.iter().any(|x| matches(v, x))),
        FilterTest::NotIn(xs) => !v.is_some_and(|v| xs.iter().any(|x| matches(v, x))),
        FilterTest::Type(names) => v.is_some_and(|v| names.iter().any(|n| is_bson_type(v, n))),
    }
}

/// MongoDB-like equality for filters: numbers compare by value across
/// types, and an array matches when any element does.
fn matches(v: RawBsonRef<'_>, want: &RawBson) -> bool {
    if same_value(v, want.as_raw_bson_ref()) {
        return true;
    }
    if let RawBsonRef::Array(a) = v {
        return a.into_iter().flatten().any(|e| !matches!(e, RawBsonRef::Array(_)) && matches(e, want));
    }
    false
}
