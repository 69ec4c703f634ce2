//! A composite key's text as the client joins it (`pg::keys::row_text`),
//! against what PostgreSQL itself prints for `ROW(…)::text`: the ledger,
//! rollback and validate compare the two.

use finlit_map::pg::keys::row_text;
use sqlx::Connection;

/// Texts of every character `record_out` treats specially, and some it
/// does not, in pairs and triples with NULLs among them.
fn cases() -> Vec<Vec<Option<String>>> {
    const PIECES: &[&str] =
        &["a", "", " ", "\"", "\\", "(", ")", ",", "\t", "\n", "\r", "\u{b}", "\u{c}", "é", "{", "}", "'", "x y", "0"];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % n
    };
    let mut rows = Vec::new();
    for _ in 0..2_000 {
        let width = 2 + next(2);
        let row = (0..width)
            .map(|_| match next(8) {
                0 => None,
                _ => Some((0..next(4)).map(|_| PIECES[next(PIECES.len())]).collect::<String>()),
            })
            .collect();
        rows.push(row);
    }
    rows
}

#[test]
fn composite_key_texts_are_the_servers() {
    let url = format!("{}/postgres", super::db::server());
    let rows = cases();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let server: Vec<String> = rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let col = |i: usize| -> Vec<Option<String>> { rows.iter().map(|r| r.get(i).cloned().flatten()).collect() };
        let width: Vec<i32> = rows.iter().map(|r| r.len() as i32).collect();
        sqlx::query_scalar(
            "SELECT CASE WHEN w = 2 THEN ROW(a, b)::text ELSE ROW(a, b, c)::text END
               FROM unnest($1::int[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u(w, a, b, c, n) ORDER BY n",
        )
        .bind(width)
        .bind(col(0))
        .bind(col(1))
        .bind(col(2))
        .fetch_all(&mut c)
        .await
        .unwrap()
    });
    assert_eq!(server.len(), rows.len());
    for (row, want) in rows.iter().zip(&server) {
        let mut got = String::new();
        row_text(row.iter().map(Option::as_deref), &mut got);
        assert_eq!(&got, want, "{row:?}");
    }
}

/// Typed key columns (the ones the client's texts stand in for): each
/// value written by the client, joined, against the server printing the
/// typed row in a session whose dates are ISO (the server's default).
#[test]
fn typed_composite_key_texts_are_the_servers() {
    use chrono::NaiveDate;
    use finlit_map::value::cell::Cell;
    let url = format!("{}/postgres", super::db::server());
    let day = |y, m, d| Cell::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap());
    let uuid = Cell::Uuid(uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef));
    let rows: Vec<[Cell<'static>; 5]> = vec![
        [uuid.clone(), day(2024, 2, 29), Cell::Int(-7), Cell::Bool(true), Cell::Text("a b".into())],
        [Cell::Null, day(-43, 3, 15), Cell::Int(i64::from(i32::MAX)), Cell::Bool(false), Cell::Text("".into())],
        [uuid, day(12345, 1, 1), Cell::Null, Cell::Null, Cell::Text("x\"y".into())],
        [Cell::Null, Cell::Null, Cell::Null, Cell::Null, Cell::Null],
    ];
    let texts: Vec<Vec<Option<String>>> = rows.iter().map(|r| r.iter().map(Cell::to_pg_text).collect()).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let server: Vec<String> = rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let iso: bool = sqlx::query_scalar("SELECT current_setting('DateStyle') LIKE 'ISO%'").fetch_one(&mut c).await.unwrap();
        assert!(iso, "this test expects the server's default DateStyle (ISO)");
        let col = |i: usize| -> Vec<Option<String>> { texts.iter().map(|r| r[i].clone()).collect() };
        sqlx::query_scalar(
            "SELECT ROW(a::uuid, b::date, c::integer, d::boolean, e::varchar(20))::text
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS u(a, b, c, d, e, n)
              ORDER BY n",
        )
        .bind(col(0))
        .bind(col(1))
        .bind(col(2))
        .bind(col(3))
        .bind(col(4))
        .fetch_all(&mut c)
        .await
        .unwrap()
    });
    for (row, want) in texts.iter().zip(&server) {
        let mut got = String::new();
        row_text(row.iter().map(Option::as_deref), &mut got);
        assert_eq!(&got, want, "{row:?}");
    }
}
