//! Binary COPY as PostgreSQL reads it: every type finlit-map writes,
//! encoded by `cell::binary`, loaded with COPY and read back as text.

use chrono::NaiveDate;
use finlit_map::schema::SqlType;
use finlit_map::value::cell::Cell;
use finlit_map::value::types::binary;
use sqlx::Connection;

use super::db::TestDb;

#[test]
fn every_type_round_trips_through_binary_copy() {
    let db = TestDb::new("binary");
    let t = |s: &str| SqlType::parse(s).unwrap();
    let d = NaiveDate::from_ymd_opt(1969, 7, 20).unwrap();
    let rows: Vec<(&str, Cell<'static>, &str)> = vec![
        ("text", Cell::Text("héllo\ttab".into()), "héllo\ttab"),
        ("varchar(10)", Cell::Text("abc".into()), "abc"),
        ("char(4)", Cell::Text("ab".into()), "ab"), // char -> text drops the padding
        ("smallint", Cell::Int(-32768), "-32768"),
        ("integer", Cell::Int(2147483647), "2147483647"),
        ("bigint", Cell::Int(-9223372036854775807), "-9223372036854775807"),
        ("numeric", Cell::Numeric("12345678901234567890.000123".into()), "12345678901234567890.000123"),
        ("numeric", Cell::Numeric("-0.5".into()), "-0.5"),
        ("numeric", Cell::Numeric("0".into()), "0"),
        ("numeric", Cell::Numeric("100000".into()), "100000"),
        ("numeric", Cell::Numeric("0.0001".into()), "0.0001"),
        ("numeric(4,3)", Cell::Numeric("1".into()), "1.000"),
        // Negative scale and scale above precision, as PostgreSQL 15 allows them.
        ("numeric(3,-2)", Cell::Numeric("12300".into()), "12300"),
        ("numeric(2,4)", Cell::Numeric("0.0012".into()), "0.0012"),
        ("numeric(5,2)", Cell::Numeric("NaN".into()), "NaN"),
        ("numeric", Cell::Numeric("-Infinity".into()), "-Infinity"),
        ("real", Cell::Real(0.1), "0.1"),
        ("double precision", Cell::Double(-1.5e300), "-1.5e+300"),
        ("double precision", Cell::Double(f64::NAN), "NaN"),
        ("boolean", Cell::Bool(true), "true"),
        ("date", Cell::Date(d), "1969-07-20"),
        ("date", Cell::Date(NaiveDate::from_ymd_opt(-43, 3, 15).unwrap()), "0044-03-15 BC"),
        ("timestamp", Cell::Timestamp(d.and_hms_micro_opt(20, 17, 40, 5).unwrap()), "1969-07-20 20:17:40.000005"),
        ("timestamptz", Cell::Timestamptz(d.and_hms_opt(1, 2, 3).unwrap().and_utc()), "1969-07-20 01:02:03+00"),
        (
            "uuid",
            Cell::Uuid(uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)),
            "01234567-89ab-cdef-0123-456789abcdef",
        ),
        ("json", Cell::Json("{\"b\":1, \"a\":[true]}".into()), "{\"b\":1, \"a\":[true]}"),
        ("jsonb", Cell::Json("{\"b\":1,\"a\":[true]}".into()), "{\"a\": [true], \"b\": 1}"),
        ("text[]", Cell::Array(vec![Cell::Text("a b".into()), Cell::Null]), "{\"a b\",NULL}"),
        ("integer[]", Cell::Array(vec![Cell::Int(1), Cell::Int(-2)]), "{1,-2}"),
        ("varchar(5)[]", Cell::Array(vec![]), "{}"),
        ("integer", Cell::Null, "NULL"),
    ];
    let types: Vec<SqlType> = rows.iter().map(|(ty, _, _)| t(ty)).collect();
    let cols: Vec<String> = rows.iter().enumerate().map(|(i, (ty, _, _))| format!("c{i} {ty}")).collect();
    let admin = format!("{}/postgres", super::db::server());
    let name = db.name.clone();
    let url = db.url.clone();
    let cells: Vec<Cell<'static>> = rows.iter().map(|(_, c, _)| c.clone()).collect();
    let cols_sql = cols.join(", ");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let mut a = sqlx::PgConnection::connect(&admin).await.unwrap();
        for stmt in [format!("CREATE DATABASE \"{name}\""), format!("ALTER DATABASE \"{name}\" SET TimeZone = 'UTC'")] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(stmt)).execute(&mut a).await.unwrap();
        }
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE TABLE t ({cols_sql})"))).execute(&mut c).await.unwrap();
        let mut data = binary::HEADER.to_vec();
        binary::write_row(&mut data, &cells, &types);
        data.extend_from_slice(binary::TRAILER);
        let mut copy = c.copy_in_raw("COPY t FROM STDIN (FORMAT binary)").await.unwrap();
        copy.send(data.as_slice()).await.unwrap();
        copy.finish().await.unwrap();
    });
    let select: Vec<String> = (0..rows.len()).map(|i| format!("coalesce(c{i}::text, 'NULL')")).collect();
    let got = db.rows(&format!("SELECT {} FROM t", select.join(", ")));
    for (i, (ty, _, want)) in rows.iter().enumerate() {
        assert_eq!(got[0][i].as_deref(), Some(*want), "{ty}");
    }
}
