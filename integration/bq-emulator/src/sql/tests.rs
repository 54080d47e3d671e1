//! Engine tests: every supported construct with its result type and wire values, and the rejections.

use serde_json::{Value as Json, json};
use std::collections::HashMap;

use super::*;
use crate::data::{
    FieldSchema, from_arrow_schema, json_rows_to_batch, to_arrow_schema, to_wire_rows,
};

struct Tables(HashMap<(String, String, String), (SchemaRef, Vec<RecordBatch>)>);

impl TableSource for Tables {
    fn table(
        &self,
        project: &str,
        dataset: &str,
        table: &str,
    ) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        self.0
            .get(&(project.to_string(), dataset.to_string(), table.to_string()))
            .cloned()
    }
}

fn field(name: &str, t: &str) -> FieldSchema {
    FieldSchema {
        name: name.into(),
        field_type: t.into(),
        mode: None,
        fields: None,
        description: None,
    }
}

fn rows(v: Json) -> Vec<serde_json::Map<String, Json>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_object().unwrap().clone())
        .collect()
}

fn tables() -> Tables {
    let mut m = HashMap::new();
    let raw = to_arrow_schema(&[
        field("ts", "TIMESTAMP"),
        field("user_id", "INTEGER"),
        field("event_type", "STRING"),
        field("amount", "FLOAT"),
        field("price", "NUMERIC"),
    ])
    .unwrap();
    let data = json_rows_to_batch(
        &raw,
        &rows(json!([
            {"ts": "2024-01-14 23:59:59.999999+00", "user_id": 1, "event_type": "click", "amount": 1.5, "price": "2.25"},
            {"ts": "2024-01-15 00:00:00+00", "user_id": 1, "event_type": "click", "amount": 2.0, "price": "1"},
            {"ts": "2024-01-15 03:00:00.123456+00", "user_id": 1, "event_type": "view", "amount": null},
            {"ts": "2024-01-15 23:59:59+00", "user_id": 2, "event_type": "click", "amount": 4.0},
            {"ts": "2024-01-16 00:00:00+00", "user_id": 2, "event_type": "click", "amount": 8.0}
        ])),
        false,
    )
    .unwrap();
    m.insert(("p".into(), "d".into(), "raw".into()), (raw, vec![data]));
    let daily = to_arrow_schema(&[
        field("day", "DATE"),
        field("n", "INT64"),
        field("label", "STRING"),
    ])
    .unwrap();
    let data = json_rows_to_batch(
        &daily,
        &rows(json!([
            {"day": "2024-01-14", "n": 3, "label": "b"},
            {"day": "2024-01-15", "n": 5, "label": null},
            {"day": "2024-01-16", "n": null, "label": "a"}
        ])),
        false,
    )
    .unwrap();
    m.insert(
        ("p".into(), "d".into(), "daily".into()),
        (daily, vec![data]),
    );
    let audit = to_arrow_schema(&[
        field("partition_id", "STRING"),
        field("status", "STRING"),
        field("recorded_at", "TIMESTAMP"),
    ])
    .unwrap();
    let data = json_rows_to_batch(
        &audit,
        &rows(json!([
            {"partition_id": "20240115", "status": "started", "recorded_at": 1705287600},
            {"partition_id": "20240115", "status": "done", "recorded_at": 1705287700.5},
            {"partition_id": "20240116", "status": "started", "recorded_at": 1705374000},
        ])),
        false,
    )
    .unwrap();
    m.insert(
        ("other-proj".into(), "ops".into(), "audit".into()),
        (audit, vec![data]),
    );
    Tables(m)
}

fn p(name: &str, t: &str, v: &str) -> Json {
    json!({"name": name, "parameterType": {"type": t}, "parameterValue": {"value": v}})
}

async fn run_with(
    sql: &str,
    params: &[Json],
    dataset: Option<(&str, &str)>,
) -> Result<QueryOutput, SqlError> {
    let t = tables();
    execute(
        QueryRequest {
            sql,
            default_project: "p",
            default_dataset: dataset,
            parameters: params,
        },
        &t,
    )
    .await
}

async fn run(sql: &str, params: &[Json]) -> Result<QueryOutput, SqlError> {
    run_with(sql, params, None).await
}

/// (column name, BigQuery type) pairs and the wire rows as plain JSON values.
fn shape(out: &QueryOutput) -> (Vec<(String, String)>, Vec<Vec<Json>>) {
    let cols = from_arrow_schema(&out.schema)
        .into_iter()
        .map(|f| (f.name, f.field_type))
        .collect();
    let mut data = vec![];
    for b in &out.batches {
        for r in to_wire_rows(b, 0, b.num_rows(), false) {
            data.push(
                r["f"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["v"].clone())
                    .collect(),
            );
        }
    }
    (cols, data)
}

async fn ok(sql: &str, params: &[Json]) -> (Vec<(String, String)>, Vec<Vec<Json>>) {
    match run(sql, params).await {
        Ok(out) => shape(&out),
        Err(e) => panic!("query failed: {sql}\n  {} {}", e.reason, e.message),
    }
}

async fn err(sql: &str, params: &[Json]) -> SqlError {
    match run(sql, params).await {
        Ok(out) => panic!("query unexpectedly succeeded: {sql}\n  {:?}", shape(&out)),
        Err(e) => e,
    }
}

/// Single value of a one-row, one-column query, with its type.
async fn scalar(sql: &str) -> (String, Json) {
    let (cols, data) = ok(sql, &[]).await;
    assert_eq!(data.len(), 1, "{sql}");
    (cols[0].1.clone(), data[0][0].clone())
}

fn cols(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn smoke() {
    let (c, d) = ok(
        "SELECT DATE(ts) AS day, user_id, event_type, COUNT(*) AS events FROM `p.d.raw` \
         WHERE ts >= @partition_start AND ts < @partition_end GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        &[
            p("partition_start", "TIMESTAMP", "2024-01-15 00:00:00+00"),
            p("partition_end", "TIMESTAMP", "2024-01-16T00:00:00Z"),
        ],
    )
    .await;
    assert_eq!(
        c,
        cols(&[
            ("day", "DATE"),
            ("user_id", "INTEGER"),
            ("event_type", "STRING"),
            ("events", "INTEGER")
        ])
    );
    assert_eq!(
        d,
        vec![
            vec![json!("2024-01-15"), json!("1"), json!("click"), json!("1")],
            vec![json!("2024-01-15"), json!("1"), json!("view"), json!("1")],
            vec![json!("2024-01-15"), json!("2"), json!("click"), json!("1")],
        ]
    );
}

#[tokio::test]
async fn literals_and_tableless_selects() {
    let (c, d) = ok("SELECT 1", &[]).await;
    assert_eq!(
        (c, d),
        (cols(&[("f0_", "INTEGER")]), vec![vec![json!("1")]])
    );
    let (c, d) = ok(
        "SELECT 1 AS x, 'a', 2.5, TRUE, NULL, -9223372036854775808 AS m, b'ab' AS raw",
        &[],
    )
    .await;
    assert_eq!(
        c,
        cols(&[
            ("x", "INTEGER"),
            ("f0_", "STRING"),
            ("f1_", "FLOAT"),
            ("f2_", "BOOLEAN"),
            ("f3_", "INTEGER"),
            ("m", "INTEGER"),
            ("raw", "BYTES")
        ])
    );
    assert_eq!(
        d[0],
        vec![
            json!("1"),
            json!("a"),
            json!("2.5"),
            json!("true"),
            Json::Null,
            json!("-9223372036854775808"),
            json!("YWI=")
        ]
    );
    let (c, d) = ok(
        "SELECT DATE '2024-01-15' AS d, TIMESTAMP '2024-01-15 03:00:00+00' AS t, DATETIME '2024-01-15 03:00:00.5' AS dt, \
         TIMESTAMP '2024-01-14 22:00:00 America/New_York' AS ny, NUMERIC '1.25' AS n, r'a\\b' AS r, \"dq\" AS q, '''tri''' AS tq",
        &[],
    )
    .await;
    assert_eq!(
        c,
        cols(&[
            ("d", "DATE"),
            ("t", "TIMESTAMP"),
            ("dt", "DATETIME"),
            ("ny", "TIMESTAMP"),
            ("n", "NUMERIC"),
            ("r", "STRING"),
            ("q", "STRING"),
            ("tq", "STRING")
        ])
    );
    assert_eq!(
        d[0],
        vec![
            json!("2024-01-15"),
            json!("1.7052876E9"),
            json!("2024-01-15T03:00:00.500000"),
            json!("1.7052876E9"),
            json!("1.25"),
            json!("a\\b"),
            json!("dq"),
            json!("tri")
        ]
    );
    assert!(
        err("SELECT 9223372036854775808", &[])
            .await
            .message
            .contains("Invalid integer literal")
    );
    assert!(
        err("SELECT DATE '2024-02-30'", &[])
            .await
            .message
            .contains("Invalid date")
    );
}

#[tokio::test]
async fn parameters_of_every_type_keep_their_declared_types() {
    let params = [
        p("s", "STRING", "hi"),
        p("i", "INT64", "42"),
        p("f", "FLOAT64", "1.5"),
        p("b", "BOOL", "true"),
        p("d", "DATE", "2024-01-15"),
        p("ts", "TIMESTAMP", "2024-01-15 03:00:00.123456+00"),
        p("dt", "DATETIME", "2024-01-15 03:00:00"),
        p("n", "NUMERIC", "2.5"),
        json!({"name": "nul", "parameterType": {"type": "INT64"}, "parameterValue": {}}),
        json!({"name": "unused", "parameterType": {"type": "ARRAY", "arrayType": {"type": "INT64"}}, "parameterValue": {"arrayValues": []}}),
    ];
    let (c, d) = ok("SELECT @s AS s, @i AS i, @f AS f, @b AS b, @d AS d, @ts AS ts, @dt AS dt, @n AS n, @NUL AS nul, @i + 1 AS j", &params).await;
    assert_eq!(
        c,
        cols(&[
            ("s", "STRING"),
            ("i", "INTEGER"),
            ("f", "FLOAT"),
            ("b", "BOOLEAN"),
            ("d", "DATE"),
            ("ts", "TIMESTAMP"),
            ("dt", "DATETIME"),
            ("n", "FLOAT"),
            ("nul", "INTEGER"),
            ("j", "INTEGER")
        ])
    );
    assert_eq!(
        d[0],
        vec![
            json!("hi"),
            json!("42"),
            json!("1.5"),
            json!("true"),
            json!("2024-01-15"),
            json!("1.705287600123456E9"),
            json!("2024-01-15T03:00:00"),
            json!("2.5"),
            Json::Null,
            json!("43")
        ]
    );
    // Every timestamp spelling clients send means the same instant.
    for v in [
        "2024-01-15 00:00:00+00",
        "2024-01-15T00:00:00Z",
        "2024-01-15 00:00:00 UTC",
        "2024-01-15 00:00:00.000000+00:00",
        "2024-01-14 19:00:00-05:00",
        "2024-01-14 16:00:00 America/Los_Angeles",
    ] {
        let (_, d) = ok("SELECT UNIX_SECONDS(@t)", &[p("t", "TIMESTAMP", v)]).await;
        assert_eq!(d[0][0], json!("1705276800"), "{v}");
    }
    let e = err("SELECT @missing", &[p("other", "STRING", "x")]).await;
    assert_eq!(
        (e.reason, e.message.as_str()),
        ("invalidQuery", "Query parameter 'missing' not found")
    );
    let e = err("SELECT @d", &[p("d", "DATE", "2024-13-01")]).await;
    assert_eq!(e.reason, "invalidQuery");
    assert!(
        e.message
            .contains("Invalid DATE value for query parameter 'd'"),
        "{}",
        e.message
    );
    let e = err(
        "SELECT @a",
        &[json!({"name": "a", "parameterType": {"type": "ARRAY"}, "parameterValue": {}})],
    )
    .await;
    assert!(e.message.contains("type ARRAY"), "{}", e.message);
    let e = err("SELECT ?", &[]).await;
    assert!(
        e.message.contains("Positional query parameter"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn at_signs_inside_strings_and_identifiers_are_not_parameters() {
    let (c, d) = ok(
        "SELECT '@x' AS a, \"@y\" AS b, '''@z''' AS c, COUNT(*) AS `@n` FROM `p.d.raw` WHERE event_type != '@click' -- @comment\n",
        &[],
    )
    .await;
    assert_eq!(c[3].0, "@n");
    assert_eq!(
        d[0],
        vec![json!("@x"), json!("@y"), json!("@z"), json!("5")]
    );
}

#[tokio::test]
async fn aggregates_have_bigquery_result_types() {
    let (c, d) = ok(
        "SELECT COUNT(*) AS c, COUNT(amount) AS ca, COUNT(DISTINCT event_type) AS cd, COUNTIF(amount > 1.5) AS ci, \
         SUM(user_id) AS su, SUM(amount) AS sa, AVG(user_id) AS au, MIN(ts) AS mi, MAX(event_type) AS ma, \
         ANY_VALUE(user_id) AS av, LOGICAL_AND(amount > 0) AS la, LOGICAL_OR(amount > 5) AS lo, \
         STRING_AGG(DISTINCT event_type) AS sg, STRING_AGG(event_type, '|' ORDER BY ts DESC) AS so, \
         APPROX_COUNT_DISTINCT(user_id) AS ac FROM `p.d.raw`",
        &[],
    )
    .await;
    assert_eq!(
        c,
        cols(&[
            ("c", "INTEGER"),
            ("ca", "INTEGER"),
            ("cd", "INTEGER"),
            ("ci", "INTEGER"),
            ("su", "INTEGER"),
            ("sa", "FLOAT"),
            ("au", "FLOAT"),
            ("mi", "TIMESTAMP"),
            ("ma", "STRING"),
            ("av", "INTEGER"),
            ("la", "BOOLEAN"),
            ("lo", "BOOLEAN"),
            ("sg", "STRING"),
            ("so", "STRING"),
            ("ac", "INTEGER")
        ])
    );
    assert_eq!(
        d[0][..8],
        [
            json!("5"),
            json!("4"),
            json!("2"),
            json!("3"),
            json!("7"),
            json!("15.5"),
            json!("1.4"),
            json!("1.705276799999999E9")
        ]
    );
    assert_eq!(
        d[0][8..12],
        [json!("view"), json!("1"), json!("true"), json!("true")]
    );
    let mut parts: Vec<&str> = d[0][12].as_str().unwrap().split(',').collect();
    parts.sort();
    assert_eq!(parts, ["click", "view"]);
    assert_eq!(d[0][13], json!("click|click|view|click|click"));
    // Aggregates over no rows: COUNT 0, others NULL.
    let (_, d) = ok(
        "SELECT COUNT(*), SUM(user_id), COUNTIF(TRUE) FROM `p.d.raw` WHERE FALSE",
        &[],
    )
    .await;
    assert_eq!(d[0], vec![json!("0"), Json::Null, json!("0")]);
    // INT64 SUM fails on overflow instead of wrapping; intermediate wrap-arounds that cancel are exact.
    let e = err(
        "SELECT SUM(x) FROM (SELECT 9223372036854775807 AS x UNION ALL SELECT 1)",
        &[],
    )
    .await;
    assert_eq!(e.message, "int64 overflow in SUM");
    let sql = "SELECT SUM(x), SUM(x) OVER () FROM (SELECT 9223372036854775807 AS x UNION ALL SELECT 5 UNION ALL SELECT -10)";
    let e = err(sql, &[]).await;
    assert!(
        e.message.contains("GROUP BY") || e.message.contains("aggregated"),
        "{}",
        e.message
    );
    let (c, d) = ok("SELECT SUM(x) AS s FROM (SELECT 9223372036854775807 AS x UNION ALL SELECT 5 UNION ALL SELECT -10)", &[]).await;
    assert_eq!(
        (c, d),
        (
            cols(&[("s", "INTEGER")]),
            vec![vec![json!("9223372036854775802")]]
        )
    );
    let (_, d) = ok(
        "SELECT SUM(user_id) OVER (ORDER BY ts ROWS 1 PRECEDING) FROM p.d.raw ORDER BY ts",
        &[],
    )
    .await;
    assert_eq!(
        d.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        [json!("1"), json!("2"), json!("2"), json!("3"), json!("4")]
    );
    let e = err("SELECT SUM(event_type) FROM `p.d.raw`", &[]).await;
    assert!(
        e.message
            .contains("No matching signature for aggregate function SUM"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn group_by_ordinals_aliases_having_order_limit() {
    let (c, d) = ok(
        "SELECT event_type AS kind, COUNT(*) AS n FROM p.d.raw GROUP BY kind HAVING COUNT(*) > 0 ORDER BY n DESC, kind LIMIT 1",
        &[],
    )
    .await;
    assert_eq!(c, cols(&[("kind", "STRING"), ("n", "INTEGER")]));
    assert_eq!(d, vec![vec![json!("click"), json!("4")]]);
    let (_, d) = ok(
        "SELECT user_id, SUM(amount) FROM p.d.raw GROUP BY 1 ORDER BY 1 LIMIT 5 OFFSET 1",
        &[],
    )
    .await;
    assert_eq!(d, vec![vec![json!("2"), json!("12.0")]]);
    let (_, d) = ok(
        "SELECT user_id, SUM(user_id) AS s FROM p.d.raw GROUP BY user_id HAVING SUM(amount) > 1 ORDER BY SUM(amount) DESC",
        &[],
    )
    .await;
    assert_eq!(
        d,
        vec![vec![json!("2"), json!("4")], vec![json!("1"), json!("3")]]
    );
    let (_, d) = ok(
        "SELECT DISTINCT event_type FROM p.d.raw ORDER BY event_type",
        &[],
    )
    .await;
    assert_eq!(d, vec![vec![json!("click")], vec![json!("view")]]);
}

#[tokio::test]
async fn nulls_sort_first_ascending_and_last_descending() {
    let (_, d) = ok("SELECT n FROM p.d.daily ORDER BY n", &[]).await;
    assert_eq!(
        d,
        vec![vec![Json::Null], vec![json!("3")], vec![json!("5")]]
    );
    let (_, d) = ok("SELECT n FROM p.d.daily ORDER BY n DESC", &[]).await;
    assert_eq!(
        d,
        vec![vec![json!("5")], vec![json!("3")], vec![Json::Null]]
    );
    let (_, d) = ok("SELECT n FROM p.d.daily ORDER BY n ASC NULLS LAST", &[]).await;
    assert_eq!(
        d,
        vec![vec![json!("3")], vec![json!("5")], vec![Json::Null]]
    );
    let (_, d) = ok(
        "SELECT label, ROW_NUMBER() OVER (ORDER BY label) AS rn FROM p.d.daily ORDER BY rn",
        &[],
    )
    .await;
    assert_eq!(d[0], vec![Json::Null, json!("1")]);
}

#[tokio::test]
async fn conditionals_and_predicates() {
    let (c, d) = ok(
        "SELECT CASE WHEN n > 4 THEN 'big' WHEN n IS NULL THEN 'none' ELSE 'small' END AS size, \
         CASE label WHEN 'a' THEN 1 ELSE 0 END AS is_a, IF(n IS NULL, -1, n) AS f, COALESCE(n, 0) AS co, \
         IFNULL(label, '?') AS lab, NULLIF(n, 3) AS nu, n IN (3, 4) AS in_list, n BETWEEN 4 AND 6 AS btw, \
         label LIKE 'a%' AS lk, label IS NOT NULL AS nn, n IS DISTINCT FROM 3 AS dist \
         FROM p.d.daily ORDER BY day",
        &[],
    )
    .await;
    let types: Vec<&str> = c.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(
        types,
        [
            "STRING", "INTEGER", "INTEGER", "INTEGER", "STRING", "INTEGER", "BOOLEAN", "BOOLEAN",
            "BOOLEAN", "BOOLEAN", "BOOLEAN"
        ]
    );
    assert_eq!(
        d,
        vec![
            vec![
                json!("small"),
                json!("0"),
                json!("3"),
                json!("3"),
                json!("b"),
                Json::Null,
                json!("true"),
                json!("false"),
                json!("false"),
                json!("true"),
                json!("false")
            ],
            vec![
                json!("big"),
                json!("0"),
                json!("5"),
                json!("5"),
                json!("?"),
                json!("5"),
                json!("false"),
                json!("true"),
                Json::Null,
                json!("false"),
                json!("true")
            ],
            vec![
                json!("none"),
                json!("1"),
                json!("-1"),
                json!("0"),
                json!("a"),
                Json::Null,
                Json::Null,
                Json::Null,
                json!("true"),
                json!("true"),
                json!("true")
            ],
        ]
    );
    let e = err("SELECT CASE WHEN TRUE THEN 1 ELSE 'a' END", &[]).await;
    assert!(
        e.message.contains("No matching signature for CASE"),
        "{}",
        e.message
    );
    let e = err("SELECT COALESCE(1, 'a')", &[]).await;
    assert!(e.message.contains("COALESCE"), "{}", e.message);
    let e = err("SELECT 1 WHERE 1", &[]).await;
    assert_eq!(e.reason, "invalidQuery");
}

#[tokio::test]
async fn casts_follow_googlesql() {
    let cases = [
        ("CAST(1.5 AS INT64)", "INTEGER", json!("2")),
        ("CAST(-2.5 AS INT64)", "INTEGER", json!("-3")),
        ("CAST('12' AS INT64)", "INTEGER", json!("12")),
        ("CAST('0x1F' AS INT64)", "INTEGER", json!("31")),
        ("SAFE_CAST('x' AS INT64)", "INTEGER", Json::Null),
        ("CAST(TRUE AS INT64)", "INTEGER", json!("1")),
        ("CAST(1 AS FLOAT64)", "FLOAT", json!("1.0")),
        ("CAST('2.5' AS FLOAT64)", "FLOAT", json!("2.5")),
        ("CAST(1.0 AS STRING)", "STRING", json!("1")),
        ("CAST(0.1 AS STRING)", "STRING", json!("0.1")),
        ("CAST(1e20 AS STRING)", "STRING", json!("1e+20")),
        ("CAST(-7 AS STRING)", "STRING", json!("-7")),
        ("CAST(TRUE AS STRING)", "STRING", json!("true")),
        (
            "CAST(DATE '2024-01-15' AS STRING)",
            "STRING",
            json!("2024-01-15"),
        ),
        (
            "CAST(TIMESTAMP '2024-01-15 03:00:00.123456+00' AS STRING)",
            "STRING",
            json!("2024-01-15 03:00:00.123456+00"),
        ),
        (
            "CAST(TIMESTAMP '2024-01-15 03:00:00+00' AS STRING)",
            "STRING",
            json!("2024-01-15 03:00:00+00"),
        ),
        (
            "CAST(DATETIME '2024-01-15 03:00:00' AS STRING)",
            "STRING",
            json!("2024-01-15 03:00:00"),
        ),
        ("CAST('2024-01-15' AS DATE)", "DATE", json!("2024-01-15")),
        (
            "CAST(TIMESTAMP '2024-01-15 23:30:00+00' AS DATE)",
            "DATE",
            json!("2024-01-15"),
        ),
        (
            "CAST(DATE '2024-01-15' AS TIMESTAMP)",
            "TIMESTAMP",
            json!("1.7052768E9"),
        ),
        (
            "CAST('2024-01-15 00:00:00' AS TIMESTAMP)",
            "TIMESTAMP",
            json!("1.7052768E9"),
        ),
        (
            "CAST('2024-01-15T01:02:03' AS DATETIME)",
            "DATETIME",
            json!("2024-01-15T01:02:03"),
        ),
        (
            "CAST(TIMESTAMP '2024-01-15 01:02:03+00' AS DATETIME)",
            "DATETIME",
            json!("2024-01-15T01:02:03"),
        ),
        ("CAST('tRuE' AS BOOL)", "BOOLEAN", json!("true")),
        ("CAST(0 AS BOOL)", "BOOLEAN", json!("false")),
        (
            "CAST(1.23456789012 AS NUMERIC)",
            "NUMERIC",
            json!("1.23456789"),
        ),
        ("CAST('abc' AS BYTES)", "BYTES", json!("YWJj")),
        ("SAFE_CAST('2024-99-01' AS DATE)", "DATE", Json::Null),
        ("CAST(NULL AS DATE)", "DATE", Json::Null),
        ("CAST('12:30:00' AS TIME)", "TIME", json!("12:30:00")),
    ];
    for (expr, t, v) in cases {
        assert_eq!(
            scalar(&format!("SELECT {expr}")).await,
            (t.to_string(), v),
            "{expr}"
        );
    }
    let e = err("SELECT CAST('x' AS INT64)", &[]).await;
    assert_eq!(
        (e.reason, e.message.as_str()),
        ("invalidQuery", "Bad int64 value: x")
    );
    let e = err("SELECT CAST(DATE '2024-01-15' AS INT64)", &[]).await;
    assert_eq!(e.message, "Invalid cast from DATE to INT64");
    let e = err("SELECT CAST(1 AS STRING(10))", &[]).await;
    assert_eq!(e.reason, "invalidQuery");
    let e = err("SELECT '1'::INT64", &[]).await;
    assert_eq!(e.reason, "invalidQuery");
}

#[tokio::test]
async fn arithmetic_uses_googlesql_division_and_overflow_rules() {
    assert_eq!(scalar("SELECT 7 / 2").await, ("FLOAT".into(), json!("3.5")));
    assert_eq!(scalar("SELECT 6 / 3").await, ("FLOAT".into(), json!("2.0")));
    assert_eq!(
        scalar("SELECT DIV(7, 2)").await,
        ("INTEGER".into(), json!("3"))
    );
    assert_eq!(
        scalar("SELECT DIV(-7, 2)").await,
        ("INTEGER".into(), json!("-3"))
    );
    assert_eq!(
        scalar("SELECT MOD(-7, 3)").await,
        ("INTEGER".into(), json!("-1"))
    );
    assert_eq!(
        scalar("SELECT 2 * 3 - 1").await,
        ("INTEGER".into(), json!("5"))
    );
    assert_eq!(
        scalar("SELECT 2 * 1.5").await,
        ("FLOAT".into(), json!("3.0"))
    );
    assert_eq!(scalar("SELECT -(3)").await, ("INTEGER".into(), json!("-3")));
    assert_eq!(
        scalar("SELECT SAFE_DIVIDE(1, 0)").await,
        ("FLOAT".into(), Json::Null)
    );
    assert_eq!(
        scalar("SELECT IEEE_DIVIDE(1, 0)").await,
        ("FLOAT".into(), json!("Infinity"))
    );
    // Conditional expressions only evaluate the branch they take.
    assert_eq!(
        scalar("SELECT IF(FALSE, 1 / 0, 1.0)").await,
        ("FLOAT".into(), json!("1.0"))
    );
    let (_, d) = ok(
        "SELECT CASE WHEN n > 100 THEN DIV(n, 0) ELSE n END FROM p.d.daily ORDER BY day",
        &[],
    )
    .await;
    assert_eq!(
        d,
        vec![vec![json!("3")], vec![json!("5")], vec![Json::Null]]
    );
    let e = err("SELECT 1 / 0", &[]).await;
    assert_eq!(
        (e.reason, e.message.as_str()),
        ("invalidQuery", "division by zero: 1 / 0")
    );
    let e = err("SELECT DIV(1, 0)", &[]).await;
    assert!(e.message.starts_with("division by zero"), "{}", e.message);
    let e = err("SELECT 9223372036854775807 + 1", &[]).await;
    assert!(e.message.starts_with("int64 overflow"), "{}", e.message);
    let e = err("SELECT 5 % 2", &[]).await;
    assert!(e.message.starts_with("Syntax error"), "{}", e.message);
    let e = err("SELECT 'a' + 1", &[]).await;
    assert!(
        e.message.contains("No matching signature for operator +"),
        "{}",
        e.message
    );
    let (_, d) = ok("SELECT SUM(user_id) / COUNT(*) AS ratio FROM p.d.raw", &[]).await;
    assert_eq!(d[0][0], json!("1.4"));
}

#[tokio::test]
async fn comparisons_follow_googlesql_types_and_null_semantics() {
    let (_, d) = ok(
        "SELECT 'a' < 'b', 'B' < 'a', 'é' > 'z', NULL = NULL, NULL IS NULL, 1 = 1.0, NOT (NULL AND FALSE), TRUE OR NULL",
        &[],
    )
    .await;
    assert_eq!(
        d[0],
        vec![
            json!("true"),
            json!("true"),
            json!("true"),
            Json::Null,
            json!("true"),
            json!("true"),
            json!("true"),
            json!("true")
        ]
    );
    for bad in [
        "SELECT '10' > 9",
        "SELECT 1 = TRUE",
        "SELECT DATE '2024-01-01' = 1",
    ] {
        let e = err(bad, &[]).await;
        assert!(
            e.message.contains("No matching signature for operator"),
            "{bad}: {}",
            e.message
        );
    }
    let e = err(
        "SELECT COUNT(*) FROM p.d.raw WHERE ts >= DATE '2024-01-15'",
        &[],
    )
    .await;
    assert!(e.message.contains("TIMESTAMP, DATE"), "{}", e.message);
    let e = err(
        "SELECT COUNT(*) FROM p.d.raw WHERE ts >= @d",
        &[p("d", "DATE", "2024-01-15")],
    )
    .await;
    assert!(e.message.contains("No matching signature"), "{}", e.message);
    // STRING literals and parameters coerce to the temporal type they meet, parsed BigQuery's way.
    let (_, d) = ok(
        "SELECT COUNT(*) FROM p.d.raw WHERE ts >= '2024-01-15 00:00:00+00' AND ts < '2024-01-16'",
        &[],
    )
    .await;
    assert_eq!(d[0][0], json!("3"));
    let (_, d) = ok("SELECT COUNT(*) FROM p.d.daily WHERE day IN ('2024-01-15', '2024-01-16') AND day BETWEEN '2024-01-01' AND @hi", &[p("hi", "STRING", "2024-12-31")]).await;
    assert_eq!(d[0][0], json!("2"));
    let (_, d) = ok(
        "SELECT day FROM p.d.daily WHERE day = @d",
        &[p("d", "DATE", "2024-01-15")],
    )
    .await;
    assert_eq!(d, vec![vec![json!("2024-01-15")]]);
    let e = err("SELECT COUNT(*) FROM p.d.daily WHERE day = 'garbage'", &[]).await;
    assert_eq!(e.message, "Could not cast literal \"garbage\" to type DATE");
}

#[tokio::test]
async fn date_and_time_functions() {
    let cases = [
        (
            "DATE(TIMESTAMP '2024-01-15 23:30:00+00')",
            "DATE",
            json!("2024-01-15"),
        ),
        (
            "DATE(TIMESTAMP '2024-01-15 03:30:00+00', 'America/Los_Angeles')",
            "DATE",
            json!("2024-01-14"),
        ),
        (
            "DATE(DATETIME '2024-01-15 03:30:00')",
            "DATE",
            json!("2024-01-15"),
        ),
        ("DATE(2024, 2, 29)", "DATE", json!("2024-02-29")),
        (
            "DATE_TRUNC(DATE '2024-01-17', DAY)",
            "DATE",
            json!("2024-01-17"),
        ),
        (
            "DATE_TRUNC(DATE '2024-01-17', WEEK)",
            "DATE",
            json!("2024-01-14"),
        ),
        (
            "DATE_TRUNC(DATE '2024-01-17', WEEK(MONDAY))",
            "DATE",
            json!("2024-01-15"),
        ),
        (
            "DATE_TRUNC(DATE '2024-01-17', ISOWEEK)",
            "DATE",
            json!("2024-01-15"),
        ),
        (
            "DATE_TRUNC(DATE '2024-05-17', MONTH)",
            "DATE",
            json!("2024-05-01"),
        ),
        (
            "DATE_TRUNC(DATE '2024-05-17', QUARTER)",
            "DATE",
            json!("2024-04-01"),
        ),
        (
            "DATE_TRUNC(DATE '2024-05-17', YEAR)",
            "DATE",
            json!("2024-01-01"),
        ),
        (
            "DATE_TRUNC(DATE '2021-01-02', ISOYEAR)",
            "DATE",
            json!("2019-12-30"),
        ),
        (
            "TIMESTAMP_TRUNC(TIMESTAMP '2024-01-15 03:45:12.5+00', HOUR)",
            "TIMESTAMP",
            json!("1.7052876E9"),
        ),
        (
            "TIMESTAMP_TRUNC(TIMESTAMP '2024-01-15 03:45:12+00', DAY)",
            "TIMESTAMP",
            json!("1.7052768E9"),
        ),
        (
            "TIMESTAMP_TRUNC(TIMESTAMP '2024-01-15 03:45:12+00', MONTH)",
            "TIMESTAMP",
            json!("1.7040672E9"),
        ),
        (
            "TIMESTAMP_TRUNC(TIMESTAMP '2024-01-15 03:45:12+00', YEAR)",
            "TIMESTAMP",
            json!("1.7040672E9"),
        ),
        (
            "TIMESTAMP_TRUNC(TIMESTAMP '2024-01-15 03:45:12+00', DAY, 'America/New_York')",
            "TIMESTAMP",
            json!("1.7052084E9"),
        ),
        (
            "DATETIME_TRUNC(DATETIME '2024-01-15 03:45:12', HOUR)",
            "DATETIME",
            json!("2024-01-15T03:00:00"),
        ),
        (
            "TIMESTAMP(DATE '2024-01-15')",
            "TIMESTAMP",
            json!("1.7052768E9"),
        ),
        (
            "TIMESTAMP('2024-01-15 03:00:00+00')",
            "TIMESTAMP",
            json!("1.7052876E9"),
        ),
        (
            "TIMESTAMP('2024-01-14 22:00:00', 'America/New_York')",
            "TIMESTAMP",
            json!("1.7052876E9"),
        ),
        (
            "DATETIME(TIMESTAMP '2024-01-15 03:00:00+00', 'Asia/Tokyo')",
            "DATETIME",
            json!("2024-01-15T12:00:00"),
        ),
        (
            "EXTRACT(YEAR FROM DATE '2024-03-05')",
            "INTEGER",
            json!("2024"),
        ),
        (
            "EXTRACT(QUARTER FROM DATE '2024-03-05')",
            "INTEGER",
            json!("1"),
        ),
        (
            "EXTRACT(MONTH FROM DATE '2024-03-05')",
            "INTEGER",
            json!("3"),
        ),
        ("EXTRACT(DAY FROM DATE '2024-03-05')", "INTEGER", json!("5")),
        (
            "EXTRACT(DAYOFWEEK FROM DATE '2024-03-03')",
            "INTEGER",
            json!("1"),
        ),
        (
            "EXTRACT(DAYOFYEAR FROM DATE '2024-03-05')",
            "INTEGER",
            json!("65"),
        ),
        (
            "EXTRACT(WEEK FROM DATE '2024-01-06')",
            "INTEGER",
            json!("0"),
        ),
        (
            "EXTRACT(WEEK FROM DATE '2024-01-07')",
            "INTEGER",
            json!("1"),
        ),
        (
            "EXTRACT(ISOWEEK FROM DATE '2024-12-30')",
            "INTEGER",
            json!("1"),
        ),
        (
            "EXTRACT(ISOYEAR FROM DATE '2024-12-30')",
            "INTEGER",
            json!("2025"),
        ),
        (
            "EXTRACT(HOUR FROM TIMESTAMP '2024-01-15 03:45:12.345678+00')",
            "INTEGER",
            json!("3"),
        ),
        (
            "EXTRACT(MINUTE FROM TIMESTAMP '2024-01-15 03:45:12.345678+00')",
            "INTEGER",
            json!("45"),
        ),
        (
            "EXTRACT(SECOND FROM TIMESTAMP '2024-01-15 03:45:12.345678+00')",
            "INTEGER",
            json!("12"),
        ),
        (
            "EXTRACT(MILLISECOND FROM TIMESTAMP '2024-01-15 03:45:12.345678+00')",
            "INTEGER",
            json!("345"),
        ),
        (
            "EXTRACT(MICROSECOND FROM TIMESTAMP '2024-01-15 03:45:12.345678+00')",
            "INTEGER",
            json!("345678"),
        ),
        (
            "EXTRACT(HOUR FROM TIMESTAMP '2024-01-15 03:45:12+00' AT TIME ZONE 'Asia/Kolkata')",
            "INTEGER",
            json!("9"),
        ),
        (
            "EXTRACT(DATE FROM TIMESTAMP '2024-01-15 03:45:12+00')",
            "DATE",
            json!("2024-01-15"),
        ),
        (
            "DATE_ADD(DATE '2024-01-31', INTERVAL 1 MONTH)",
            "DATE",
            json!("2024-02-29"),
        ),
        (
            "DATE_ADD(DATE '2024-01-31', INTERVAL 2 DAY)",
            "DATE",
            json!("2024-02-02"),
        ),
        (
            "DATE_SUB(DATE '2024-03-01', INTERVAL 1 DAY)",
            "DATE",
            json!("2024-02-29"),
        ),
        (
            "DATE_SUB(DATE '2024-03-01', INTERVAL 1 YEAR)",
            "DATE",
            json!("2023-03-01"),
        ),
        (
            "DATE_DIFF(DATE '2024-03-01', DATE '2024-02-01', DAY)",
            "INTEGER",
            json!("29"),
        ),
        (
            "DATE_DIFF(DATE '2024-03-01', DATE '2023-12-31', MONTH)",
            "INTEGER",
            json!("3"),
        ),
        (
            "DATE_DIFF(DATE '2024-01-14', DATE '2024-01-13', WEEK)",
            "INTEGER",
            json!("1"),
        ),
        (
            "TIMESTAMP_ADD(TIMESTAMP '2024-01-15 00:00:00+00', INTERVAL 3 HOUR)",
            "TIMESTAMP",
            json!("1.7052876E9"),
        ),
        (
            "TIMESTAMP_SUB(TIMESTAMP '2024-01-15 03:00:00+00', INTERVAL 180 MINUTE)",
            "TIMESTAMP",
            json!("1.7052768E9"),
        ),
        (
            "TIMESTAMP_DIFF(TIMESTAMP '2024-01-16 00:00:00+00', TIMESTAMP '2024-01-15 00:00:01+00', DAY)",
            "INTEGER",
            json!("0"),
        ),
        (
            "TIMESTAMP_DIFF(TIMESTAMP '2024-01-16 00:00:00+00', TIMESTAMP '2024-01-15 00:00:00+00', SECOND)",
            "INTEGER",
            json!("86400"),
        ),
        (
            "DATETIME_DIFF(DATETIME '2024-01-16 00:00:00', DATETIME '2024-01-15 23:59:59', DAY)",
            "INTEGER",
            json!("1"),
        ),
        (
            "DATETIME_ADD(DATETIME '2024-01-31 10:00:00', INTERVAL 1 MONTH)",
            "DATETIME",
            json!("2024-02-29T10:00:00"),
        ),
        (
            "FORMAT_DATE('%Y%m%d', DATE '2024-01-05')",
            "STRING",
            json!("20240105"),
        ),
        (
            "FORMAT_DATE('%A %b %e, Q%Q', DATE '2024-01-05')",
            "STRING",
            json!("Friday Jan  5, Q1"),
        ),
        (
            "FORMAT_TIMESTAMP('%Y-%m-%d %H:%M:%S %Z', TIMESTAMP '2024-01-15 03:00:00+00')",
            "STRING",
            json!("2024-01-15 03:00:00 UTC"),
        ),
        (
            "FORMAT_TIMESTAMP('%F %T%Ez', TIMESTAMP '2024-01-15 03:00:00+00', 'Asia/Kolkata')",
            "STRING",
            json!("2024-01-15 08:30:00+05:30"),
        ),
        (
            "FORMAT_TIMESTAMP('%E6S', TIMESTAMP '2024-01-15 03:00:07.25+00')",
            "STRING",
            json!("07.250000"),
        ),
        (
            "FORMAT_DATETIME('%Y-%m-%dT%H', DATETIME '2024-01-15 03:00:00')",
            "STRING",
            json!("2024-01-15T03"),
        ),
        (
            "PARSE_DATE('%Y%m%d', '20240115')",
            "DATE",
            json!("2024-01-15"),
        ),
        (
            "PARSE_DATE('%Y-%m', '2024-03')",
            "DATE",
            json!("2024-03-01"),
        ),
        (
            "PARSE_TIMESTAMP('%Y-%m-%d %H:%M:%S', '2024-01-15 03:00:00')",
            "TIMESTAMP",
            json!("1.7052876E9"),
        ),
        (
            "PARSE_DATETIME('%Y-%m-%d %H:%M', '2024-01-15 03:04')",
            "DATETIME",
            json!("2024-01-15T03:04:00"),
        ),
        (
            "UNIX_SECONDS(TIMESTAMP '2024-01-15 03:00:00.9+00')",
            "INTEGER",
            json!("1705287600"),
        ),
        (
            "UNIX_MILLIS(TIMESTAMP '2024-01-15 03:00:00.9+00')",
            "INTEGER",
            json!("1705287600900"),
        ),
        (
            "UNIX_MICROS(TIMESTAMP '2024-01-15 03:00:00.9+00')",
            "INTEGER",
            json!("1705287600900000"),
        ),
        ("UNIX_DATE(DATE '1970-01-11')", "INTEGER", json!("10")),
        ("DATE_FROM_UNIX_DATE(10)", "DATE", json!("1970-01-11")),
        (
            "TIMESTAMP_SECONDS(1705287600)",
            "TIMESTAMP",
            json!("1.7052876E9"),
        ),
        (
            "TIMESTAMP_MILLIS(1705287600001)",
            "TIMESTAMP",
            json!("1.705287600001E9"),
        ),
        ("TIMESTAMP_MICROS(1)", "TIMESTAMP", json!("1.0E-6")),
        (
            "DATE_TRUNC('2024-01-17', MONTH)",
            "DATE",
            json!("2024-01-01"),
        ),
    ];
    for (expr, t, v) in cases {
        assert_eq!(
            scalar(&format!("SELECT {expr}")).await,
            (t.to_string(), v),
            "{expr}"
        );
    }
    let (c, d) = ok(
        "SELECT CURRENT_TIMESTAMP() AS a, CURRENT_DATE() AS b, CURRENT_DATETIME() AS c, CURRENT_DATE AS e, \
         CURRENT_TIMESTAMP() = CURRENT_TIMESTAMP() AS same, CURRENT_DATE('Pacific/Kiritimati') >= CURRENT_DATE() AS ahead",
        &[],
    )
    .await;
    assert_eq!(
        c,
        cols(&[
            ("a", "TIMESTAMP"),
            ("b", "DATE"),
            ("c", "DATETIME"),
            ("e", "DATE"),
            ("same", "BOOLEAN"),
            ("ahead", "BOOLEAN")
        ])
    );
    assert_eq!(d[0][4..], [json!("true"), json!("true")]);
    let today = chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    assert!(d[0][1] == json!(today) || d[0][1].as_str() < Some(today.as_str()));
    for bad in [
        "SELECT DATE_TRUNC(DATE '2024-01-01', HOUR)",
        "SELECT DATE_ADD(DATE '2024-01-01', INTERVAL 1 HOUR)",
        "SELECT TIMESTAMP_ADD(TIMESTAMP '2024-01-01', INTERVAL 1 MONTH)",
        "SELECT DATE_TRUNC(DATE '2024-01-01', 'MONTH')",
        "SELECT DATE(2024, 2, 30)",
        "SELECT DATE('2024-01-01', 1)",
        "SELECT FORMAT_DATE('%q', DATE '2024-01-01')",
        "SELECT DATE '2024-01-01' + INTERVAL 1 DAY",
        "SELECT TIMESTAMP('2024-01-01', 'Mars/Olympus')",
    ] {
        assert_eq!(err(bad, &[]).await.reason, "invalidQuery", "{bad}");
    }
}

#[tokio::test]
async fn latest_row_per_partition_with_window_functions_qualify_and_ctes() {
    let expected = vec![
        vec![json!("20240115"), json!("done"), json!("1")],
        vec![json!("20240116"), json!("started"), json!("1")],
    ];
    let (c, d) = ok(
        "SELECT partition_id, status, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY partition_id \
         ORDER BY recorded_at DESC) AS rn FROM `other-proj.ops.audit`) WHERE rn = 1 ORDER BY partition_id",
        &[],
    )
    .await;
    assert_eq!(
        c,
        cols(&[
            ("partition_id", "STRING"),
            ("status", "STRING"),
            ("rn", "INTEGER")
        ])
    );
    assert_eq!(d, expected);
    let (_, d) = ok(
        "SELECT partition_id, status, 1 AS rn FROM other-proj.ops.audit WHERE TRUE \
         QUALIFY ROW_NUMBER() OVER (PARTITION BY partition_id ORDER BY recorded_at DESC) = 1 ORDER BY 1",
        &[],
    )
    .await;
    assert_eq!(d, expected);
    let (_, d) = ok(
        "WITH ranked AS (SELECT partition_id, status, RANK() OVER w AS rk, DENSE_RANK() OVER w AS dr, \
         LAG(status) OVER w AS prev, COUNT(*) OVER (PARTITION BY partition_id) AS n \
         FROM `other-proj`.ops.audit WINDOW w AS (PARTITION BY partition_id ORDER BY recorded_at)), \
         latest AS (SELECT * FROM ranked WHERE rk = n) \
         SELECT partition_id, status, prev, dr FROM latest ORDER BY partition_id",
        &[],
    )
    .await;
    assert_eq!(
        d,
        vec![
            vec![
                json!("20240115"),
                json!("done"),
                json!("started"),
                json!("2")
            ],
            vec![json!("20240116"), json!("started"), Json::Null, json!("1")]
        ]
    );
    let (c, d) = ok(
        "SELECT user_id, SUM(amount) OVER (PARTITION BY user_id ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running, \
         FIRST_VALUE(event_type) OVER (PARTITION BY user_id ORDER BY ts) AS first FROM p.d.raw ORDER BY ts",
        &[],
    )
    .await;
    assert_eq!(c[1], ("running".to_string(), "FLOAT".to_string()));
    assert_eq!(d[2], vec![json!("1"), json!("3.5"), json!("click")]);
    assert_eq!(
        err("SELECT ROW_NUMBER() FROM p.d.raw", &[]).await.reason,
        "invalidQuery"
    );
}

#[tokio::test]
async fn set_operations_subqueries_and_joins() {
    assert_eq!(
        ok("SELECT 1 AS x UNION ALL SELECT 2.5", &[]).await.0,
        cols(&[("x", "FLOAT")])
    );
    let (_, d) = ok(
        "SELECT x FROM (SELECT 1 AS x UNION DISTINCT SELECT 1 UNION ALL SELECT 2) ORDER BY x",
        &[],
    )
    .await;
    assert_eq!(d, vec![vec![json!("1")], vec![json!("2")]]);
    let e = err("SELECT 1 UNION ALL SELECT 'a'", &[]).await;
    assert_eq!(
        e.message,
        "Column 1 in UNION ALL has incompatible types: INT64, STRING"
    );
    let e = err("SELECT 1 UNION SELECT 2", &[]).await;
    assert!(e.message.starts_with("Syntax error"), "{}", e.message);
    let (_, d) = ok(
        "SELECT r.user_id, d.n FROM p.d.raw AS r JOIN p.d.daily d ON DATE(r.ts) = d.day WHERE r.event_type = 'view'",
        &[],
    )
    .await;
    assert_eq!(d, vec![vec![json!("1"), json!("5")]]);
    let (_, d) = ok(
        "SELECT daily.day, (SELECT COUNT(*) FROM p.d.raw WHERE raw.user_id = daily.n - 2) AS c FROM p.d.daily \
         WHERE EXISTS (SELECT 1 FROM p.d.raw) AND day IN (SELECT DATE(ts) FROM p.d.raw) ORDER BY day",
        &[],
    )
    .await;
    assert_eq!(
        d,
        vec![
            vec![json!("2024-01-14"), json!("3")],
            vec![json!("2024-01-15"), json!("0")],
            vec![json!("2024-01-16"), json!("0")]
        ]
    );
    // DataFusion cannot decorrelate every subquery shape: those fail loudly.
    let e = err(
        "SELECT (SELECT COUNT(*) FROM p.d.raw WHERE DATE(raw.ts) = daily.day) FROM p.d.daily",
        &[],
    )
    .await;
    assert!(
        e.message.contains("not supported by the bq-emulator"),
        "{}",
        e.message
    );
    let (_, d) = ok(
        "SELECT l.day FROM p.d.daily l LEFT JOIN p.d.daily r ON l.n = r.n + 2 ORDER BY l.day",
        &[],
    )
    .await;
    assert_eq!(d.len(), 3);
    let (_, d) = ok(
        "SELECT COUNT(*) FROM p.d.daily CROSS JOIN p.d.daily AS b",
        &[],
    )
    .await;
    assert_eq!(d[0][0], json!("9"));
}

#[tokio::test]
async fn table_references_resolve_against_default_project_and_dataset() {
    let out = run("SELECT COUNT(*) FROM d.raw", &[]).await.unwrap();
    assert_eq!(
        out.referenced_tables,
        vec![("p".to_string(), "d".to_string(), "raw".to_string())]
    );
    assert_eq!(out.statement_type, "SELECT");
    // ts 8 + user_id 8 + event_type (2 + len) + amount 8 (one NULL) + price 16 (two non-NULL)
    assert_eq!(
        out.total_bytes_processed,
        5 * 8 + 5 * 8 + (7 + 7 + 6 + 7 + 7) + 4 * 8 + 2 * 16
    );
    let out = run_with(
        "SELECT n FROM daily JOIN raw ON TRUE LIMIT 1",
        &[],
        Some(("p", "d")),
    )
    .await
    .unwrap();
    assert_eq!(out.referenced_tables.len(), 2);
    let out = run_with("SELECT * FROM ops.audit", &[], Some(("other-proj", "x")))
        .await
        .unwrap();
    assert_eq!(out.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    let e = err("SELECT * FROM raw", &[]).await;
    assert_eq!(
        e.message,
        "Table name \"raw\" missing dataset while no default dataset is set in the request."
    );
    let e = err("SELECT * FROM `p.d.nope`", &[]).await;
    assert_eq!(
        (e.reason, e.message.as_str()),
        (
            "notFound",
            "Not found: Table p:d.nope was not found in location US"
        )
    );
    let e = err("SELECT * FROM nope.raw", &[]).await;
    assert_eq!(
        e.message,
        "Not found: Table p:nope.raw was not found in location US"
    );
    let (c, _) = ok("SELECT * FROM `p.d.raw`", &[]).await;
    assert_eq!(
        c,
        cols(&[
            ("ts", "TIMESTAMP"),
            ("user_id", "INTEGER"),
            ("event_type", "STRING"),
            ("amount", "FLOAT"),
            ("price", "NUMERIC")
        ])
    );
    let (c, _) = ok(
        "SELECT * EXCEPT (price, amount), raw.user_id AS u FROM `p.d.raw`",
        &[],
    )
    .await;
    assert_eq!(
        c.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        ["ts", "user_id", "event_type", "u"]
    );
    for bad in [
        "SELECT * FROM `p.d.raw$20240115`",
        "SELECT * FROM `p.d.raw_*`",
        "SELECT * FROM p.d.INFORMATION_SCHEMA.TABLES",
    ] {
        assert_eq!(err(bad, &[]).await.reason, "invalidQuery", "{bad}");
    }
}

#[tokio::test]
async fn unsupported_constructs_are_rejected_with_invalid_query() {
    let cases = [
        ("SELECT FOO(1)", "Function not found: FOO"),
        ("SELECT arrow_typeof(1)", "Function not found: arrow_typeof"),
        ("SELECT md5('a')", "Function not found: md5"),
        (
            "SELECT ARRAY_AGG(user_id) FROM p.d.raw",
            "Function not found: ARRAY_AGG",
        ),
        (
            "SELECT SAFE.PARSE_DATE('%Y', '2024')",
            "Function not found: SAFE.PARSE_DATE",
        ),
        ("SELECT nope FROM p.d.raw", "Unrecognized name: nope"),
        (
            "SELECT raw.nope FROM p.d.raw",
            "Name nope not found inside raw",
        ),
        ("INSERT INTO p.d.raw (user_id) VALUES (1)", "INSERT"),
        ("SELECT 1; SELECT 2", "Multi-statement"),
        ("SELECT x FROM UNNEST([1, 2]) AS x", "not supported"),
        ("SELECT [1, 2]", "not supported"),
        ("SELECT STRUCT(1 AS a)", ""),
        ("SELECT 1 FROM p.d.raw WHERE event_type ILIKE 'a'", ""),
        ("SELECT 1 <<", "Syntax error"),
        ("SELEC 1", "Syntax error"),
        ("SELECT @@project_id", "System variable"),
        (
            "WITH RECURSIVE t AS (SELECT 1) SELECT * FROM t",
            "WITH RECURSIVE",
        ),
        (
            "SELECT LOWER(1)",
            "No matching signature for function LOWER",
        ),
        (
            "SELECT CONCAT('a', 1)",
            "No matching signature for function CONCAT",
        ),
        ("SELECT 1 & 2", "not supported"),
        (
            "SELECT COUNT(DISTINCT user_id) OVER () FROM p.d.raw",
            "DISTINCT",
        ),
        ("SELECT LOWER('A') OVER ()", "cannot be used with OVER"),
    ];
    for (sql, needle) in cases {
        let e = err(sql, &[]).await;
        assert_eq!(e.reason, "invalidQuery", "{sql}: {}", e.message);
        assert!(e.message.contains(needle), "{sql}: {}", e.message);
    }
    // Function names are case-insensitive, like GoogleSQL's.
    assert_eq!(
        ok("select count(*) from p.d.raw", &[]).await.1[0][0],
        json!("5")
    );
}

#[tokio::test]
async fn string_functions_follow_googlesql() {
    let cases = [
        ("CONCAT('a', 'b', 'c')", "STRING", json!("abc")),
        ("CONCAT('a', NULL)", "STRING", Json::Null),
        ("'a' || 'b'", "STRING", json!("ab")),
        ("'a' || NULL", "STRING", Json::Null),
        ("LOWER('ÀB')", "STRING", json!("àb")),
        ("UPPER('àb')", "STRING", json!("ÀB")),
        ("LENGTH('héllo')", "INTEGER", json!("5")),
        ("SUBSTR('hello', 2, 2)", "STRING", json!("el")),
        ("SUBSTR('hello', -3)", "STRING", json!("llo")),
        ("SUBSTR('hello', 0, 2)", "STRING", json!("he")),
        ("SUBSTR('hello', 9)", "STRING", json!("")),
        ("SUBSTRING('hello', 2)", "STRING", json!("ello")),
        ("TRIM('  a b\\t\\n')", "STRING", json!("a b")),
        ("TRIM('xxaxx', 'x')", "STRING", json!("a")),
        ("LTRIM('  a ')", "STRING", json!("a ")),
        ("RTRIM('  a ')", "STRING", json!("  a")),
        ("REPLACE('abcabc', 'b', 'X')", "STRING", json!("aXcaXc")),
        ("REPLACE('abc', '', 'X')", "STRING", json!("abc")),
        ("STARTS_WITH('hello', 'he')", "BOOLEAN", json!("true")),
        ("ENDS_WITH('hello', 'lo')", "BOOLEAN", json!("true")),
        ("STRPOS('hello', 'l')", "INTEGER", json!("3")),
        ("REVERSE('abc')", "STRING", json!("cba")),
        ("LPAD('7', 3, '0')", "STRING", json!("007")),
        (
            "REGEXP_CONTAINS('foo123', r'\\d+')",
            "BOOLEAN",
            json!("true"),
        ),
        (
            "REGEXP_EXTRACT('foo123bar', r'(\\d+)')",
            "STRING",
            json!("123"),
        ),
        ("REGEXP_EXTRACT('foobar', r'\\d+')", "STRING", Json::Null),
        (
            "REGEXP_REPLACE('a-b-c', '-', '_')",
            "STRING",
            json!("a_b_c"),
        ),
        (
            "REGEXP_REPLACE('2024-01-15', r'(\\d+)-(\\d+)-(\\d+)', r'\\3/\\2/\\1')",
            "STRING",
            json!("15/01/2024"),
        ),
        ("CONCAT(b'a', b'b')", "BYTES", json!("YWI=")),
    ];
    for (expr, t, v) in cases {
        assert_eq!(
            scalar(&format!("SELECT {expr}")).await,
            (t.to_string(), v),
            "{expr}"
        );
    }
    let e = err("SELECT REGEXP_EXTRACT('ab', '(a)(b)')", &[]).await;
    assert!(e.message.contains("capturing group"), "{}", e.message);
    let e = err("SELECT REGEXP_CONTAINS('a', '(')", &[]).await;
    assert!(
        e.message.starts_with("Cannot parse regular expression"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn math_functions_follow_googlesql() {
    let cases = [
        ("ROUND(2.5)", "FLOAT", json!("3.0")),
        ("ROUND(-2.5)", "FLOAT", json!("-3.0")),
        ("ROUND(1.234, 2)", "FLOAT", json!("1.23")),
        ("ROUND(5)", "FLOAT", json!("5.0")),
        ("TRUNC(-1.7)", "FLOAT", json!("-1.0")),
        ("FLOOR(1.5)", "FLOAT", json!("1.0")),
        ("CEIL(1.2)", "FLOAT", json!("2.0")),
        ("CEILING(1.2)", "FLOAT", json!("2.0")),
        ("ABS(-3)", "INTEGER", json!("3")),
        ("ABS(-3.5)", "FLOAT", json!("3.5")),
        ("SIGN(-3)", "INTEGER", json!("-1")),
        ("GREATEST(1, 5, 3)", "INTEGER", json!("5")),
        ("GREATEST(1, 2.5)", "FLOAT", json!("2.5")),
        ("GREATEST(1, NULL)", "INTEGER", Json::Null),
        ("LEAST('b', 'a')", "STRING", json!("a")),
        ("POW(2, 3)", "FLOAT", json!("8.0")),
        ("POWER(2.0, 0.5) > 1.41", "BOOLEAN", json!("true")),
        ("SQRT(16)", "FLOAT", json!("4.0")),
        ("MOD(10, 4)", "INTEGER", json!("2")),
    ];
    for (expr, t, v) in cases {
        assert_eq!(
            scalar(&format!("SELECT {expr}")).await,
            (t.to_string(), v),
            "{expr}"
        );
    }
    assert!(
        err("SELECT SQRT(-1)", &[])
            .await
            .message
            .contains("cannot be negative")
    );
    assert!(
        err("SELECT GREATEST(1, 'a')", &[])
            .await
            .message
            .contains("No matching signature")
    );
}

#[tokio::test]
async fn numeric_columns_keep_their_type_name() {
    let (c, d) = ok("SELECT price, CAST(price AS NUMERIC) AS c, SUM(price) OVER () AS s FROM p.d.raw ORDER BY ts LIMIT 1", &[]).await;
    assert_eq!(
        c,
        cols(&[("price", "NUMERIC"), ("c", "NUMERIC"), ("s", "FLOAT")])
    );
    assert_eq!(d[0], vec![json!("2.25"), json!("2.25"), json!("3.25")]);
}

#[test]
fn execute_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let t = tables();
    let fut = execute(
        QueryRequest {
            sql: "SELECT 1",
            default_project: "p",
            default_dataset: None,
            parameters: &[],
        },
        &t,
    );
    assert_send(&fut);
}

#[tokio::test]
async fn column_names_and_aliases_resolve_case_insensitively() {
    let (c, d) = ok(
        "SELECT USER_ID, Event_Type AS Kind, COUNT(*) AS N FROM `p.d.raw` AS R WHERE r.EVENT_TYPE = 'view' \
         GROUP BY user_id, kind ORDER BY n",
        &[],
    )
    .await;
    assert_eq!(
        c,
        cols(&[("USER_ID", "INTEGER"), ("Kind", "STRING"), ("N", "INTEGER")])
    );
    assert_eq!(d, vec![vec![json!("1"), json!("view"), json!("1")]]);
    let (_, d) = ok(
        "WITH X AS (SELECT user_id AS UID FROM p.d.raw) SELECT MAX(x.uid) FROM x",
        &[],
    )
    .await;
    assert_eq!(d[0][0], json!("2"));
}

#[tokio::test]
async fn grouping_and_naming_errors_read_like_bigquery() {
    let e = err(
        "SELECT user_id, event_type FROM p.d.raw GROUP BY user_id",
        &[],
    )
    .await;
    assert_eq!(
        e.message,
        "SELECT list expression references column event_type which is neither grouped nor aggregated"
    );
    let e = err("SELECT user_id AS u FROM p.d.raw WHERE u = 1", &[]).await;
    assert_eq!(e.message, "Unrecognized name: u");
    for sql in [
        "SELECT 1 AS a, 2 AS a",
        "SELECT * FROM p.d.daily a JOIN p.d.daily b USING (day)",
        "SELECT 1 AS a, 2 AS A",
    ] {
        let e = err(sql, &[]).await;
        assert!(
            e.message
                .starts_with("Duplicate column names in the result are not supported"),
            "{sql}: {}",
            e.message
        );
    }
    let e = err("SELECT COUNTIF(user_id) FROM p.d.raw", &[]).await;
    assert_eq!(
        e.message,
        "No matching signature for aggregate function COUNTIF for argument types: INT64"
    );
    let (_, d) = ok(
        "SELECT COUNTIF(NULL), COUNTIF(amount IS NULL) FROM p.d.raw",
        &[],
    )
    .await;
    assert_eq!(d[0], vec![json!("0"), json!("1")]);
    let ps = [
        p("n", "INT64", "2"),
        p("lo", "TIMESTAMP", "2024-01-15 00:00:00+00"),
        p("hi", "TIMESTAMP", "2024-01-15 03:00:00.123456+00"),
    ];
    let (_, d) = ok(
        "SELECT user_id FROM p.d.raw WHERE ts BETWEEN @lo AND @hi ORDER BY ts LIMIT @n",
        &ps,
    )
    .await;
    assert_eq!(d, vec![vec![json!("1")], vec![json!("1")]]);
}

#[tokio::test]
async fn realistic_backfill_queries() {
    let ps = [
        p("run_date", "DATE", "2024-01-15"),
        p("suffix", "STRING", "20240115"),
    ];
    let cases: [(&str, Vec<Vec<Json>>); 6] = [
        ("SELECT COUNT(1) FROM p.d.raw", vec![vec![json!("5")]]),
        (
            "SELECT COUNT(*) FROM p.d.raw AS t WHERE DATE(t.ts) = @run_date",
            vec![vec![json!("3")]],
        ),
        (
            "SELECT COUNT(*) FROM p.d.raw WHERE ts >= TIMESTAMP(@run_date) \
             AND ts < TIMESTAMP(DATE_ADD(@run_date, INTERVAL 1 DAY))",
            vec![vec![json!("3")]],
        ),
        (
            "SELECT PARSE_DATE('%Y%m%d', @suffix) = @run_date",
            vec![vec![json!("true")]],
        ),
        (
            "SELECT @run_date AS day, COUNT(*) AS n FROM p.d.raw WHERE DATE(ts) = @run_date",
            vec![vec![json!("2024-01-15"), json!("3")]],
        ),
        (
            "SELECT DATE(ts) AS day, COUNT(*) FROM p.d.raw GROUP BY DATE(ts) ORDER BY day",
            vec![
                vec![json!("2024-01-14"), json!("1")],
                vec![json!("2024-01-15"), json!("3")],
                vec![json!("2024-01-16"), json!("1")],
            ],
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(ok(sql, &ps).await.1, expected, "{sql}");
    }
    let (c, d) = ok(
        "SELECT * REPLACE (user_id * 10 AS user_id) FROM p.d.raw ORDER BY ts LIMIT 1",
        &[],
    )
    .await;
    assert_eq!(
        (c[1].clone(), d[0][1].clone()),
        (("user_id".to_string(), "INTEGER".to_string()), json!("10"))
    );
    let (c, _) = ok(
        "SELECT CURRENT_TIMESTAMP() AS loaded_at, * FROM p.d.daily",
        &[],
    )
    .await;
    assert_eq!(c.len(), 4);
    // Ingestion-time pseudo-columns are not modelled.
    assert_eq!(
        err(
            "SELECT * FROM p.d.raw WHERE _PARTITIONDATE = @run_date",
            &ps
        )
        .await
        .message,
        "Unrecognized name: _PARTITIONDATE"
    );
}
