//! PostGIS `geometry` and `geography`: a GeoJSON geometry object (or, with
//! `point = true`, a `[lon, lat]` pair as MongoDB stores legacy
//! coordinates) becomes EWKB in SRID 4326, the only reference system
//! GeoJSON has. The object is checked first (a known type, positions of
//! two finite numbers within longitude and latitude, lines of two
//! positions or more, closed rings of four or more, the column's declared
//! type and SRID); a geometry that fails is a reject with the reason. The
//! encoding itself is geozero's.

use bson::RawBsonRef;
use geozero::{CoordDimensions, ToWkb, geojson::GeoJson};
use serde_json::Value;

use super::{ColumnType, binary, refuse};
use crate::schema::{GeoType, SqlType, geo_kind_name};
use crate::value::cell::Cell;
use crate::value::coerce::CoerceRules;
use crate::value::json::{JsonForm, write_json};
use crate::value::text::{bson_kind, preview};

/// GeoJSON's one reference system: WGS 84 longitude and latitude.
pub const SRID: i32 = 4326;

pub struct GeoColumn;

impl ColumnType for GeoColumn {
    fn coerce<'a>(&self, v: RawBsonRef<'a>, ty: &SqlType, rules: &CoerceRules) -> Result<Cell<'a>, String> {
        let SqlType::Geo(g) = ty else { return Err(refuse(v, ty)) };
        let geometry = match v {
            RawBsonRef::Document(_) => {
                let mut text = String::new();
                write_json(v, &JsonForm::default(), &rules.ns, &mut text)?;
                serde_json::from_str::<Value>(&text).map_err(|e| e.to_string())?
            }
            RawBsonRef::Array(_) if rules.point => {
                let mut text = String::new();
                write_json(v, &JsonForm::default(), &rules.ns, &mut text)?;
                let pair: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                serde_json::json!({ "type": "Point", "coordinates": pair })
            }
            _ => {
                let hint = if rules.point { "a GeoJSON object or a [lon, lat] pair" } else { "a GeoJSON object" };
                return Err(format!("{} {} cannot go into {ty}; it takes {hint}", bson_kind(v), preview(v)));
            }
        };
        let kind = check_geometry(&geometry)?;
        if let Some(want) = &g.kind
            && !want.eq_ignore_ascii_case(kind)
        {
            return Err(format!("a {kind} cannot go into {ty}"));
        }
        if g.srid.is_some_and(|s| s != SRID) {
            return Err(format!("GeoJSON is in SRID {SRID}, but the column is {ty}"));
        }
        GeoJson(&geometry.to_string())
            .to_ewkb(CoordDimensions::xy(), Some(SRID))
            .map(Cell::Ewkb)
            .map_err(|e| format!("GeoJSON {kind}: {e}"))
    }

    /// PostGIS types have no fixed OID; arrays of them are not written.
    fn oid(&self, _: &SqlType) -> u32 {
        0
    }

    fn write_binary(&self, out: &mut Vec<u8>, cell: &Cell<'_>, ty: &SqlType) {
        match cell {
            // geometry_recv and geography_recv read EWKB.
            Cell::Ewkb(b) => out.extend_from_slice(b),
            c => binary::mismatch(out, c, ty),
        }
    }
}

/// Why a column type cannot hold GeoJSON as finlit-map writes it, if so
/// (a `check` error): a SRID other than GeoJSON's.
pub fn declared_error(g: &GeoType) -> Option<String> {
    g.srid.filter(|&s| s != SRID).map(|s| format!("SRID {s}, but GeoJSON coordinates are in SRID {SRID}"))
}

/// The geometry's type name when it is a valid GeoJSON geometry, else why not.
fn check_geometry(g: &Value) -> Result<&'static str, String> {
    let Some(t) = g.get("type").and_then(Value::as_str) else {
        return Err("not a GeoJSON geometry: no \"type\"".into());
    };
    let kind = match geo_kind_name(t).as_str() {
        "Point" => "Point",
        "LineString" => "LineString",
        "Polygon" => "Polygon",
        "MultiPoint" => "MultiPoint",
        "MultiLineString" => "MultiLineString",
        "MultiPolygon" => "MultiPolygon",
        "GeometryCollection" => "GeometryCollection",
        _ if t == "Feature" => {
            return Err("a GeoJSON Feature, not a geometry: read its `geometry` (`from = \"$.x.geometry\"`)".into());
        }
        _ => return Err(format!("GeoJSON type {t:?} is not a geometry type")),
    };
    // GeoJSON names its types exactly (`Point`, not `point`).
    if t != kind {
        return Err(format!("GeoJSON type {t:?} is written {kind:?}"));
    }
    if kind == "GeometryCollection" {
        let parts = g.get("geometries").and_then(Value::as_array).ok_or("a GeometryCollection needs \"geometries\"")?;
        for p in parts {
            check_geometry(p)?;
        }
        return Ok(kind);
    }
    let c = g.get("coordinates").ok_or_else(|| format!("a {kind} needs \"coordinates\""))?;
    let each = |c: &Value, f: &dyn Fn(&Value) -> Result<(), String>| -> Result<(), String> {
        c.as_array().ok_or_else(|| format!("{kind} coordinates must be arrays"))?.iter().try_for_each(f)
    };
    match kind {
        "Point" => position(c),
        "LineString" => line(c),
        "Polygon" => polygon(c),
        "MultiPoint" => each(c, &position),
        "MultiLineString" => each(c, &line),
        _ => each(c, &polygon),
    }?;
    Ok(kind)
}

/// `[lon, lat]`: two finite numbers within longitude and latitude.
fn position(p: &Value) -> Result<(), String> {
    let nums: Option<Vec<f64>> = p.as_array().and_then(|a| a.iter().map(Value::as_f64).collect());
    match nums.as_deref() {
        Some([lon, lat]) if (-180.0..=180.0).contains(lon) && (-90.0..=90.0).contains(lat) => Ok(()),
        Some([lon, lat]) => Err(format!("position [{lon}, {lat}] is outside longitude -180..180 or latitude -90..90")),
        Some(more) if more.len() > 2 => {
            Err(format!("position {p} has {} numbers; finlit-map writes two-dimensional geometries", more.len()))
        }
        _ => Err(format!("position {p} is not [longitude, latitude]")),
    }
}

fn line(l: &Value) -> Result<(), String> {
    let points = l.as_array().ok_or_else(|| format!("line {l} is not an array of positions"))?;
    if points.len() < 2 {
        return Err(format!("a line needs two positions or more, found {}", points.len()));
    }
    points.iter().try_for_each(position)
}

fn polygon(p: &Value) -> Result<(), String> {
    let rings = p.as_array().ok_or_else(|| format!("polygon {p} is not an array of rings"))?;
    if rings.is_empty() {
        return Err("a polygon needs at least one ring".into());
    }
    for ring in rings {
        let points = ring.as_array().ok_or_else(|| format!("ring {ring} is not an array of positions"))?;
        points.iter().try_for_each(position)?;
        if points.len() < 4 {
            return Err(format!("a polygon ring needs four positions or more, found {}", points.len()));
        }
        if points.first() != points.last() {
            return Err("a polygon ring is not closed: its last position differs from its first".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn geo(kind: Option<&str>) -> SqlType {
        SqlType::Geo(GeoType { geography: false, kind: kind.map(str::to_string), srid: Some(SRID) })
    }

    /// Value, column, then the EWKB hex or `ERR <start of reason>`.
    #[test]
    fn geojson_table() {
        let point = rawdoc! { "p": { "type": "Point", "coordinates": [-73.97, 40.77] } };
        let line = rawdoc! { "p": { "type": "LineString", "coordinates": [[0, 0], [1, 1.5]] } };
        let open = rawdoc! { "p": { "type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]] } };
        let far = rawdoc! { "p": { "type": "Point", "coordinates": [10, 95] } };
        let z = rawdoc! { "p": { "type": "Point", "coordinates": [1, 2, 3] } };
        let feature = rawdoc! { "p": { "type": "Feature", "geometry": {} } };
        let pair = rawdoc! { "p": [-73.97, 40.77] };
        let get = |d: &'static bson::RawDocument| d.get("p").unwrap().unwrap();
        let leak = |d: bson::RawDocumentBuf| -> &'static bson::RawDocument { Box::leak(Box::new(d)) };
        // As PostGIS writes them: ST_AsEWKB(ST_SetSRID(ST_MakePoint(-73.97, 40.77), 4326)).
        let point_hex = "0101000020E6100000AE47E17A147E52C0C3F5285C8F624440";
        let rows: Vec<(RawBsonRef<'static>, SqlType, bool, &str)> = vec![
            (get(leak(point.clone())), geo(Some("point")), false, point_hex),
            (get(leak(pair)), geo(Some("point")), true, point_hex),
            (get(leak(point)), geo(None), false, point_hex),
            (
                get(leak(line.clone())),
                geo(Some("point")),
                false,
                "ERR a LineString cannot go into geometry(Point,4326)",
            ),
            (
                get(leak(line)),
                geo(None),
                false,
                "0102000020E61000000200000000000000000000000000000000000000000000000000F03F000000000000F83F",
            ),
            (get(leak(open)), geo(None), false, "ERR a polygon ring is not closed"),
            (get(leak(far)), geo(None), false, "ERR position [10, 95] is outside"),
            (get(leak(z)), geo(None), false, "ERR position [1,2,3] has 3 numbers"),
            (get(leak(feature)), geo(None), false, "ERR a GeoJSON Feature, not a geometry"),
            (RawBsonRef::String("POINT(1 2)"), geo(None), false, "ERR string \"POINT(1 2)\" cannot go into geometry"),
        ];
        for (v, ty, point, want) in rows {
            let rules = CoerceRules { point, ..CoerceRules::default() };
            let got = match GeoColumn.coerce(v, &ty, &rules) {
                Ok(c) => c.to_pg_text().unwrap(),
                Err(e) => format!("ERR {e}"),
            };
            assert!(got.starts_with(want), "{v:?} into {ty}: got {got}, want {want}");
        }
    }
}
