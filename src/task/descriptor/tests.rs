use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::bq::retry::RetryPolicy;
use crate::planning::partition::{self, count, plan};
use crate::task::settings::{self, Settings};

fn base() -> Value {
    json!({
        "job": "orders_daily",
        "project": "my-project",
        "destination": "sales.orders",
        "partitions": {"granularity": "day", "start": "2024-01-01", "end": "2024-01-08"},
        "source": {"query": "SELECT * FROM raw.orders WHERE DATE(ts) = @partition_date"}
    })
}

fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = base();
    edit(&mut v);
    v
}

fn parse_value(v: &Value) -> Result<Descriptor, DescriptorError> {
    parse(v.to_string().as_bytes())
}

fn settings(v: &Value) -> Settings {
    resolve(parse_value(v).unwrap(), &|_| None, &Overrides::default()).unwrap()
}

fn err(v: &Value) -> DescriptorError {
    parse_value(v).expect_err("descriptor should be invalid")
}

fn resolve_err(v: &Value, env: &dyn Fn(&str) -> Option<String>, o: &Overrides) -> DescriptorError {
    resolve(parse_value(v).unwrap(), env, o).expect_err("resolution should fail")
}

#[test]
fn minimal_descriptor_gets_documented_defaults() {
    let s = settings(&base());
    assert_eq!(s.job, "orders_daily");
    assert_eq!(s.project, "my-project");
    assert_eq!(s.location, None);
    assert_eq!(s.destination.to_string(), "my-project.sales.orders");
    assert_eq!(
        s.checkpoint_table.to_string(),
        "my-project.sales._bq_backfill_audit"
    );
    assert_eq!(
        s.throttle,
        settings::Throttle {
            pause_seconds: 1.0,
            pause_ratio: 0.2,
            partition_writes_per_10s: None,
        }
    );
    assert_eq!(s.concurrency, 1);
    assert_eq!(s.job_options.priority, settings::Priority::Interactive);
    assert_eq!(s.job_options.maximum_bytes_billed, None);
    assert!(s.job_options.labels.is_empty());
    assert_eq!(s.on_failure, settings::OnFailure::Stop);
    assert_eq!(s.retry, RetryPolicy::default());
    assert_eq!(s.max_runtime, None);
    assert_eq!(s.lease.ttl, Duration::from_secs(180));
    assert_eq!(s.partitions.order, partition::Order::OldestFirst);
    assert_eq!(count(&s.partitions), 7);
}

#[test]
fn every_field_is_carried_into_settings() {
    let v = json!({
        "version": 1,
        "job": "events-hourly",
        "project": "billing-proj",
        "location": "europe-west1",
        "destination": "data-proj.analytics.events",
        "partitions": {"granularity": "hour", "list": ["2024-01-15T03", "2024011501"], "order": "newest_first"},
        "source": {"load": {
            "uris": ["gs://my-bucket/events/{partition_date}/{hour}/*.csv"],
            "format": "CSV", "skip_leading_rows": 1, "field_delimiter": "|",
            "allow_jagged_rows": true, "allow_quoted_newlines": false,
            "ignore_unknown_values": true, "max_bad_records": 10, "null_marker": "\\N"
        }},
        "checkpoint": {"table": "ops.backfill_audit"},
        "throttle": {"pause_seconds": 0, "pause_ratio": 1.5, "partition_writes_per_10s": 20},
        "concurrency": 4,
        "job_config": {"priority": "BATCH", "maximum_bytes_billed": "1000000000000", "labels": {"team": "data", "cost-center": ""}},
        "on_failure": "continue",
        "retry": {"max_attempts": 5, "initial_backoff_seconds": 0.5, "max_backoff_seconds": 30, "deadline_seconds": 120},
        "max_runtime_seconds": 3300,
        "lease": {"ttl_seconds": 30}
    });
    let s = settings(&v);
    assert_eq!(s.project, "billing-proj");
    assert_eq!(s.location.as_deref(), Some("europe-west1"));
    assert_eq!(s.destination.to_string(), "data-proj.analytics.events");
    assert_eq!(
        s.checkpoint_table.to_string(),
        "billing-proj.ops.backfill_audit"
    );
    let ids: Vec<String> = plan(&s.partitions).into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["2024011503", "2024011501"]);
    let settings::Source::Load(l) = &s.source else {
        panic!("load source expected")
    };
    assert_eq!(l.format, "CSV");
    assert_eq!(
        (l.skip_leading_rows, l.max_bad_records),
        (Some(1), Some(10))
    );
    assert_eq!(l.field_delimiter.as_deref(), Some("|"));
    assert_eq!(l.null_marker.as_deref(), Some("\\N"));
    assert_eq!(
        (
            l.allow_jagged_rows,
            l.allow_quoted_newlines,
            l.ignore_unknown_values
        ),
        (Some(true), Some(false), Some(true))
    );
    assert_eq!(
        s.throttle,
        settings::Throttle {
            pause_seconds: 0.0,
            pause_ratio: 1.5,
            partition_writes_per_10s: Some(20),
        }
    );
    assert_eq!(s.concurrency, 4);
    assert_eq!(s.job_options.priority, settings::Priority::Batch);
    assert_eq!(s.job_options.maximum_bytes_billed, Some(1_000_000_000_000));
    assert_eq!(
        s.job_options.labels.get("cost-center").map(String::as_str),
        Some("")
    );
    assert_eq!(s.on_failure, settings::OnFailure::Continue);
    assert_eq!(
        s.retry,
        RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
            max_attempts: 5
        }
    );
    assert_eq!(s.max_runtime, Some(Duration::from_secs(3300)));
    assert_eq!(s.lease.ttl, Duration::from_secs(30));
}

#[test]
fn location_flag_overrides_the_descriptor_and_is_checked() {
    let r = |v: &Value, o: &Overrides| resolve(parse_value(v).unwrap(), &|_| None, o);
    let flag = |l: &str| Overrides {
        location: Some(l.into()),
        ..Overrides::default()
    };
    let tokyo = with(|v| v["location"] = json!("asia-northeast1"));
    assert_eq!(r(&base(), &Overrides::default()).unwrap().location, None);
    let s = r(&base(), &flag("asia-northeast1")).unwrap();
    assert_eq!(s.location.as_deref(), Some("asia-northeast1"));
    let s = r(&tokyo, &flag("EU")).unwrap();
    assert_eq!(s.location.as_deref(), Some("EU"));
    let e = r(&tokyo, &flag("asia northeast1")).unwrap_err();
    assert_eq!(e.field, "--location");
}

#[test]
fn project_precedence_flag_descriptor_environment() {
    let env = |k: &str| match k {
        "GOOGLE_CLOUD_PROJECT" => Some(String::new()),
        "GCLOUD_PROJECT" => Some("gcloud-proj".to_string()),
        "CLOUDSDK_CORE_PROJECT" => Some("sdk-project".to_string()),
        _ => None,
    };
    let no_project = with(|v| {
        v.as_object_mut().unwrap().remove("project");
    });
    let flag = Overrides {
        project: Some("flag-project".into()),
        ..Overrides::default()
    };
    let r = |v: &Value, o: &Overrides| resolve(parse_value(v).unwrap(), &env, o).unwrap().project;
    assert_eq!(r(&base(), &flag), "flag-project");
    assert_eq!(r(&base(), &Overrides::default()), "my-project");
    // An empty variable counts as unset.
    assert_eq!(r(&no_project, &Overrides::default()), "gcloud-proj");

    let e = resolve_err(&no_project, &|_| None, &Overrides::default());
    assert_eq!(e.field, "project");
    assert!(e.hint.contains("GOOGLE_CLOUD_PROJECT"));
    let e = resolve_err(
        &no_project,
        &|k| (k == "GOOGLE_CLOUD_PROJECT").then(|| "Bad Project".into()),
        &Overrides::default(),
    );
    assert_eq!(e.field, "GOOGLE_CLOUD_PROJECT");
    let bad_flag = Overrides {
        project: Some("x;y".into()),
        ..Overrides::default()
    };
    assert_eq!(resolve_err(&base(), &env, &bad_flag).field, "--project");
}

#[test]
fn parse_leaves_project_and_range_to_resolution() {
    let v = json!({
        "job": "j", "destination": "ds.t",
        "partitions": {"granularity": "month"},
        "source": {"copy": {"table": "ds.staging"}}
    });
    let d = parse_value(&v).unwrap();
    let e = resolve(d.clone(), &|_| None, &Overrides::default()).unwrap_err();
    assert_eq!(e.field, "project");
    assert_eq!(
        e.also.iter().map(|i| i.field.as_str()).collect::<Vec<_>>(),
        ["partitions"]
    );
    let o = Overrides {
        start: Some("2023-11".into()),
        end: Some("2024".into()),
        project: Some("proj-123".into()),
        max_runtime: Some(Duration::from_secs(60)),
        partitions: None,
        location: None,
        rerun: Some("fix".into()),
        concurrency: Some(8),
    };
    let s = resolve(d.clone(), &|_| None, &o).unwrap();
    let ids: Vec<String> = plan(&s.partitions).into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["202311", "202312"]);
    assert_eq!(s.max_runtime, Some(Duration::from_secs(60)));
    assert_eq!(s.rerun.as_deref(), Some("fix"));
    assert_eq!(s.concurrency, 8);
    let settings::Source::Copy { table } = &s.source else {
        panic!()
    };
    assert_eq!(table.to_string(), "proj-123.ds.staging");
}

#[test]
fn overrides_replace_one_or_both_ends() {
    let o = Overrides {
        end: Some("20240103".into()),
        ..Overrides::default()
    };
    let s = resolve(parse_value(&base()).unwrap(), &|_| None, &o).unwrap();
    assert_eq!(count(&s.partitions), 2);
    let o = Overrides {
        start: Some("2024-01-10".into()),
        ..Overrides::default()
    };
    let e = resolve_err(&base(), &|_| None, &o);
    assert_eq!(e.field, "partitions.end");
    assert!(e.message.contains("before start"), "{e}");
    let o = Overrides {
        start: Some("2024-01-10T05".into()),
        ..Overrides::default()
    };
    assert_eq!(resolve_err(&base(), &|_| None, &o).field, "--start");

    let list = with(|v| v["partitions"] = json!({"granularity": "day", "list": ["2024-01-01"]}));
    let o = Overrides {
        start: Some("2024-01-10".into()),
        end: Some("2024-01-11".into()),
        ..Overrides::default()
    };
    let e = resolve_err(&list, &|_| None, &o);
    assert_eq!(e.field, "--start");
    assert!(e.message.contains("cannot override"), "{e}");
}

#[test]
fn every_boundary_spelling_is_accepted() {
    let cases: &[(&str, &str, &str, usize)] = &[
        ("hour", "2024-01-15T03", "2024-01-15T05", 2),
        (
            "hour",
            "2024-01-15T03:00:00Z",
            "2024-01-15T05:00:00+00:00",
            2,
        ),
        ("hour", "2024011503", "2024011505", 2),
        ("hour", "2024-01-15T04:00:00+01:00", "2024-01-16", 21),
        ("hour", "2024-01-15", "2024-01-16", 24),
        ("day", "2024-01-15", "20240117", 2),
        ("day", "2024-01-15T00:00:00Z", "2024-02", 17),
        ("month", "2024-01", "202403", 2),
        ("month", "2024", "2025-01-01", 12),
        ("year", "2020", "2024", 4),
    ];
    for (g, start, end, n) in cases {
        let v = with(|v| v["partitions"] = json!({"granularity": g, "start": start, "end": end}));
        assert_eq!(count(&settings(&v).partitions), *n, "{g} {start}..{end}");
    }
}

#[test]
fn off_grid_boundaries_name_the_nearest_ones() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "hour",
            "2024-01-15T03:30:00Z",
            "`2024-01-15T03` (the partition containing it) or `2024-01-15T04`",
        ),
        (
            "month",
            "2024-01-15",
            "`2024-01` (the partition containing it) or `2024-02`",
        ),
        (
            "year",
            "2024-06",
            "`2024` (the partition containing it) or `2025`",
        ),
        (
            "day",
            "2024-01-15T12",
            "`2024-01-15` (the partition containing it) or `2024-01-16`",
        ),
    ];
    for (g, start, hint) in cases {
        let v =
            with(|v| v["partitions"] = json!({"granularity": g, "start": start, "end": "2030"}));
        let e = err(&v);
        assert_eq!(e.field, "partitions.start");
        assert!(e.message.contains("is not the start of"), "{e}");
        assert!(e.hint.contains(hint), "{e}");
    }
    let v = with(|v| v["partitions"]["start"] = json!("2024-01-15T00:00:00"));
    assert!(err(&v).hint.contains("add `Z`"));
    for bad in [
        "yesterday",
        "2024-13-01",
        "2024-02-30",
        "+2024-01-01",
        "2024-1-5",
        "1959-12-31",
        "2160-01-02",
        "",
    ] {
        let v = with(|v| v["partitions"]["start"] = json!(bad));
        assert_eq!(err(&v).field, "partitions.start", "{bad}");
    }
}

#[test]
fn range_rules() {
    let v = with(|v| v["partitions"]["end"] = json!("2024-01-01"));
    let e = err(&v);
    assert_eq!(e.field, "partitions.end");
    assert!(
        e.message.contains("empty") && e.hint.contains("2024-01-02"),
        "{e}"
    );
    let v = with(|v| {
        v["partitions"] = json!({"granularity": "hour", "start": "2023-01-01", "end": "2024-03-01"})
    });
    let e = err(&v);
    assert_eq!(e.field, "partitions");
    assert!(
        e.message.contains("10200 hour partitions") && e.hint.contains("split"),
        "{e}"
    );
    // Exactly the limit is fine.
    let v = with(|v| {
        v["partitions"] =
            json!({"granularity": "hour", "start": "2024-01-01T00", "end": "2025-02-20T16"})
    });
    assert_eq!(count(&settings(&v).partitions), 10_000);
    let v = with(|v| v["partitions"]["list"] = json!(["2024-01-01"]));
    assert!(err(&v).message.contains("both a range"));
    let v = with(|v| {
        v["partitions"].as_object_mut().unwrap().remove("end");
    });
    assert!(parse_value(&v).is_ok(), "--end may complete it");
    assert_eq!(
        resolve_err(&v, &|_| None, &Overrides::default()).field,
        "partitions.end"
    );
}

#[test]
fn list_rules() {
    let list = |l: Value| with(|v| v["partitions"] = json!({"granularity": "day", "list": l}));
    let e = err(&list(json!(["2024-01-15", "2024-01-16", "20240115"])));
    assert_eq!(e.field, "partitions.list[2]");
    assert!(
        e.message
            .contains("repeats partition `2024-01-15` (partitions.list[0])"),
        "{e}"
    );
    assert_eq!(err(&list(json!([]))).field, "partitions.list");
    assert_eq!(
        err(&list(json!(["2024-01-15", "2024-01-15T06"]))).field,
        "partitions.list[1]"
    );
    let ids: Vec<String> =
        plan(&settings(&list(json!(["20240301", "2024-01-15", "2024-02-01"]))).partitions)
            .into_iter()
            .map(|p| p.id)
            .collect();
    assert_eq!(ids, ["20240115", "20240201", "20240301"]);
}

#[test]
fn query_rules() {
    let q = |sql: &str| with(|v| v["source"] = json!({"query": sql}));
    let cases: &[(&str, &str)] = &[
        ("", "query is empty"),
        ("   \n ", "query is empty"),
        ("-- nothing\n", "only comments"),
        (
            "SELECT * FROM raw.orders",
            "does not use any partition parameter",
        ),
        (
            "SELECT * FROM t WHERE d = '{partition_date}'",
            "template placeholder `{partition_date}`",
        ),
        (
            "SELECT * FROM t WHERE d = '{{ ds }}' AND @partition_id = '1'",
            "template placeholder `{{ ds }}`",
        ),
        ("SELECT * FROM t WHERE d = @run_date", "`@run_date`"),
        ("SELECT * FROM t WHERE d = ?", "positional"),
        (
            "DELETE FROM t WHERE d = @partition_date",
            "starts with `DELETE`",
        ),
        (
            "SELECT @partition_date; DROP TABLE x",
            "more than one statement",
        ),
    ];
    for (sql, needle) in cases {
        let e = err(&q(sql));
        assert_eq!(e.field, "source.query", "{sql}");
        assert!(e.message.contains(needle), "{sql}: {e}");
    }
    for ok in [
        "WITH a AS (SELECT 1) SELECT * FROM a WHERE @partition_start <= CURRENT_TIMESTAMP()",
        "(SELECT @PARTITION_ID AS id)",
        "FROM t |> WHERE d = @partition_date",
        "SELECT @partition_date AS d; -- trailing semicolon\n",
    ] {
        let s = settings(&q(ok));
        assert_eq!(
            s.source,
            settings::Source::Query {
                sql: ok.to_string()
            },
            "sent verbatim"
        );
    }
    let huge = format!("SELECT @partition_date -- {}", "x".repeat(MAX_QUERY_BYTES));
    let d = Descriptor {
        source: Source {
            query: Some(huge),
            load: None,
            copy: None,
        },
        ..parse_value(&base()).unwrap()
    };
    let e = resolve(d, &|_| None, &Overrides::default()).unwrap_err();
    assert!(e.message.contains("1 MiB"), "{e}");
}

#[test]
fn source_cardinality() {
    let e = err(&with(|v| v["source"] = json!({})));
    assert_eq!(
        (e.field.as_str(), e.message.as_str()),
        ("source", "no source given")
    );
    let e = err(&with(|v| {
        v["source"]["copy"] = json!({"table": "ds.other"})
    }));
    assert!(
        e.message
            .contains("more than one source given (`query`, `copy`)"),
        "{e}"
    );
    let e = err(&with(|v| {
        v["source"] = json!({"copy": {"table": "my-project.sales.orders"}})
    }));
    assert_eq!(e.field, "source.copy.table");
}

#[test]
fn load_rules() {
    let load = |l: Value| with(|v| v["source"] = json!({"load": l}));
    let cases: &[(Value, &str, &str)] = &[
        (
            json!({"uris": [], "format": "CSV"}),
            "source.load.uris",
            "no URIs",
        ),
        (
            json!({"uris": ["s3://b/x/{partition_date}"], "format": "CSV"}),
            "source.load.uris[0]",
            "not a gs:// URI",
        ),
        (
            json!({"uris": ["gs://bkt/{partition_date}", "gs://bkt/{date}"], "format": "CSV"}),
            "source.load.uris[1]",
            "`{date}` is not a known placeholder",
        ),
        (
            json!({"uris": ["gs://bkt/{partition_date"], "format": "CSV"}),
            "source.load.uris[0]",
            "unbalanced",
        ),
        (
            json!({"uris": ["gs://bkt/static/*.csv"], "format": "CSV"}),
            "source.load.uris[0]",
            "does not identify the partition",
        ),
        (
            json!({"uris": ["gs://bkt/{year}/{month}/*.csv"], "format": "CSV"}),
            "source.load.uris[0]",
            "does not identify the partition",
        ),
        (
            json!({"uris": ["gs://bkt/{partition_date}/{hour}/*.csv"], "format": "CSV"}),
            "source.load.uris[0]",
            "finer than day",
        ),
        (
            json!({"uris": ["gs://bkt/{partition_id}"], "format": "PARQUET", "skip_leading_rows": 1}),
            "source.load.skip_leading_rows",
            "only to CSV",
        ),
        (
            json!({"uris": ["gs://bkt/{partition_id}"], "format": "AVRO", "max_bad_records": 1}),
            "source.load.max_bad_records",
            "only to CSV and NEWLINE_DELIMITED_JSON",
        ),
        (
            json!({"uris": ["gs://bkt/{partition_id}"], "format": "CSV", "field_delimiter": ""}),
            "source.load.field_delimiter",
            "1 to 16 bytes",
        ),
    ];
    for (l, field, needle) in cases {
        let e = err(&load(l.clone()));
        assert_eq!(e.field, *field, "{l}");
        assert!(e.message.contains(needle), "{l}: {e}");
    }
    let s = settings(&load(
        json!({"uris": ["gs://bkt/{year}/{month}/{day}/*.json"], "format": "NEWLINE_DELIMITED_JSON", "max_bad_records": 3}),
    ));
    assert!(matches!(s.source, settings::Source::Load(_)));
}

#[test]
fn identifier_fields_are_named() {
    let cases: &[(&str, Value, &str)] = &[
        ("job", json!("Orders"), "job"),
        ("destination", json!("sales.orders$20240115"), "destination"),
        (
            "destination",
            json!("`my-project.sales.orders`"),
            "destination",
        ),
        ("location", json!("us central1"), "location"),
        ("project", json!("my_project"), "project"),
    ];
    for (key, value, field) in cases {
        let e = err(&with(|v| v[*key] = value.clone()));
        assert_eq!(e.field, *field, "{value}");
    }
    let e = err(&with(|v| {
        v["checkpoint"] = json!({"table": "sales.orders"})
    }));
    assert_eq!(e.field, "checkpoint.table");
    assert!(e.message.contains("is the destination"), "{e}");
}

#[test]
fn labels_and_numbers() {
    let cfg = |j: Value| with(|v| v["job_config"] = j);
    let cases: &[(Value, &str)] = &[
        (json!({"labels": {"Team": "x"}}), "job_config.labels.Team"),
        (
            json!({"labels": {"bq-backfill-run": "x"}}),
            "job_config.labels.bq-backfill-run",
        ),
        (
            json!({"labels": {"team": "Data"}}),
            "job_config.labels.team",
        ),
        (
            json!({"maximum_bytes_billed": 0}),
            "job_config.maximum_bytes_billed",
        ),
        (
            json!({"maximum_bytes_billed": "18446744073709551615"}),
            "job_config.maximum_bytes_billed",
        ),
    ];
    for (j, field) in cases {
        assert_eq!(err(&cfg(j.clone())).field, *field, "{j}");
    }
    let many: serde_json::Map<String, Value> =
        (0..61).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(
        err(&cfg(json!({ "labels": many }))).field,
        "job_config.labels"
    );
    let dup = br#"{"job":"j","project":"my-project","destination":"d.t","partitions":{"granularity":"day","start":"2024-01-01","end":"2024-01-02"},"source":{"query":"SELECT @partition_id"},"job_config":{"labels":{"a":"1","a":"2"}}}"#;
    let e = parse(dup).unwrap_err();
    assert_eq!(e.field, "job_config.labels");
    assert!(e.message.contains("duplicate label `a`"), "{e}");

    let num_cases: &[(&str, Value, &str)] = &[
        (
            "throttle",
            json!({"pause_seconds": -1}),
            "throttle.pause_seconds",
        ),
        (
            "throttle",
            json!({"pause_ratio": 101}),
            "throttle.pause_ratio",
        ),
        (
            "throttle",
            json!({"partition_writes_per_10s": 0}),
            "throttle.partition_writes_per_10s",
        ),
        (
            "throttle",
            json!({"partition_writes_per_10s": 51}),
            "throttle.partition_writes_per_10s",
        ),
        ("concurrency", json!(0), "concurrency"),
        ("concurrency", json!(17), "concurrency"),
        ("retry", json!({"max_attempts": 0}), "retry.max_attempts"),
        ("retry", json!({"max_attempts": 11}), "retry.max_attempts"),
        (
            "retry",
            json!({"initial_backoff_seconds": 0}),
            "retry.initial_backoff_seconds",
        ),
        (
            "retry",
            json!({"initial_backoff_seconds": 10, "max_backoff_seconds": 5}),
            "retry.max_backoff_seconds",
        ),
        ("max_runtime_seconds", json!(0), "max_runtime_seconds"),
        ("max_runtime_seconds", json!(1e300), "max_runtime_seconds"),
        ("lease", json!({"ttl_seconds": 0.5}), "lease.ttl_seconds"),
    ];
    for (key, value, field) in num_cases {
        assert_eq!(
            err(&with(|v| v[*key] = value.clone())).field,
            *field,
            "{value}"
        );
    }
}

#[test]
fn all_semantic_problems_are_reported() {
    let v = with(|v| {
        v["job"] = json!("Bad Job");
        v["destination"] = json!("sales.orders;");
        v["throttle"] = json!({"pause_seconds": -1});
    });
    let e = err(&v);
    let fields: Vec<String> = e.issues().into_iter().map(|i| i.field).collect();
    assert_eq!(fields, ["job", "destination", "throttle.pause_seconds"]);
}

#[test]
fn structural_errors_name_the_json_path() {
    let cases: &[(Value, &str, &str, &str)] = &[
        (
            with(|v| {
                v["partitions"]
                    .as_object_mut()
                    .unwrap()
                    .remove("granularity");
            }),
            "partitions.granularity",
            "missing field `granularity`",
            "one of \"hour\"",
        ),
        (
            with(|v| v["retry"] = json!({"max_atempts": 2})),
            "retry.max_atempts",
            "unknown field",
            "did you mean `max_attempts`?",
        ),
        (
            with(|v| v["colour"] = json!("blue")),
            "colour",
            "unknown field",
            "unknown fields are rejected",
        ),
        (
            with(|v| v["throttle"] = json!({"pause_seconds": "5"})),
            "throttle.pause_seconds",
            "invalid type",
            "0 to 86400",
        ),
        (
            with(|v| v["partitions"]["granularity"] = json!("daily")),
            "partitions.granularity",
            "unknown variant",
            "\"day\"",
        ),
        (
            with(|v| v["job_config"] = json!({"priority": "BACTH"})),
            "job_config.priority",
            "unknown variant",
            "INTERACTIVE",
        ),
        (
            with(|v| v["partitions"] = json!(["day", "2024-01-01", "2024-01-02"])),
            "partitions",
            "array, expected an object",
            "granularity",
        ),
        (
            with(|v| v["partitions"] = json!({"granularity": "day", "list": [20240115]})),
            "partitions.list[0]",
            "invalid type: integer",
            "strings",
        ),
        (
            with(|v| v["version"] = json!(2)),
            "version",
            "unsupported descriptor version 2",
            "version 1",
        ),
        (
            with(|v| v["version"] = json!("1")),
            "version",
            "invalid type: string",
            "the number 1",
        ),
        (
            with(|v| v["job_config"] = json!({"maximum_bytes_billed": 1.5})),
            "job_config.maximum_bytes_billed",
            "invalid type: floating point",
            "positive integer",
        ),
    ];
    for (v, field, message, hint) in cases {
        let e = err(v);
        assert_eq!(e.field, *field, "{e}");
        assert!(e.message.contains(message), "{e}");
        assert!(e.hint.contains(hint), "{e}");
    }
}

#[test]
fn document_level_errors() {
    let e = parse(b"{\"job\": \"x\",").unwrap_err();
    assert_eq!(e.field, "$");
    assert!(
        e.message.starts_with("not valid JSON") && e.hint.contains("truncated"),
        "{e}"
    );
    let e = parse(b"{\"job\" \"x\"}").unwrap_err();
    assert!(e.hint.contains("line 1, column 8"), "{e}");
    assert!(
        parse(b"[1, 2]")
            .unwrap_err()
            .message
            .contains("found an array")
    );
    assert!(parse(b"null").unwrap_err().message.contains("found null"));
    assert!(parse(b"").unwrap_err().message.contains("empty"));
    let big = vec![b' '; MAX_DESCRIPTOR_BYTES + 1];
    assert!(parse(&big).unwrap_err().message.contains("1 MiB"));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(
        parse(deep.as_bytes())
            .unwrap_err()
            .message
            .contains("recursion limit")
    );
    let dup = br#"{"job": "a", "job": "b"}"#;
    let e = parse(dup).unwrap_err();
    assert_eq!(e.field, "job");
    assert!(e.message.contains("duplicate field"), "{e}");
    // A byte-order mark (Windows editors) is tolerated.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend(base().to_string().as_bytes());
    assert!(parse(&bom).is_ok());
}

fn int_range(partitions: Value) -> Value {
    with(|v| {
        v["partitions"] = partitions;
        v["source"] = json!({"query": "SELECT * FROM raw.orders WHERE bucket >= @partition_start AND bucket < @partition_end"});
    })
}

fn ids_of(v: &Value, o: &Overrides) -> Vec<String> {
    let s = resolve(parse_value(v).unwrap(), &|_| None, o).unwrap();
    plan(&s.partitions).into_iter().map(|p| p.id).collect()
}

#[test]
fn integer_range_descriptors_plan_by_interval() {
    let v =
        int_range(json!({"granularity": "integer_range", "interval": 10, "start": 0, "end": 100}));
    let s = settings(&v);
    assert_eq!(s.partitions.granularity_name(), "integer_range");
    assert_eq!(s.partitions.interval(), Some(10));
    assert_eq!(count(&s.partitions), 10);
    assert_eq!(
        ids_of(&v, &Overrides::default()),
        ["0", "10", "20", "30", "40", "50", "60", "70", "80", "90"]
    );
    // Integer strings, negative values, an end off the grid, newest first.
    let v = int_range(
        json!({"granularity": "integer_range", "interval": "5", "start": "-10", "end": 2, "order": "newest_first"}),
    );
    assert_eq!(ids_of(&v, &Overrides::default()), ["0", "-5", "-10"]);
    // --start/--end arrive as strings.
    let o = Overrides {
        start: Some("40".into()),
        end: Some("60".into()),
        ..Overrides::default()
    };
    let v = int_range(json!({"granularity": "integer_range", "interval": 10}));
    assert!(parse_value(&v).is_ok(), "flags may supply the range");
    assert_eq!(ids_of(&v, &o), ["40", "50"]);
    // A list, sorted; mixed spellings.
    let v =
        int_range(json!({"granularity": "integer_range", "interval": 10, "list": [90, "-10", 0]}));
    assert_eq!(ids_of(&v, &Overrides::default()), ["-10", "0", "90"]);
    // Exactly the limit is fine.
    let v = int_range(
        json!({"granularity": "integer_range", "interval": 1, "start": -5000, "end": 5000}),
    );
    assert_eq!(count(&settings(&v).partitions), 10_000);
    // Extreme values do not overflow.
    let v = int_range(
        json!({"granularity": "integer_range", "interval": i64::MAX, "start": i64::MIN, "end": i64::MAX}),
    );
    assert_eq!(count(&settings(&v).partitions), 3);
}

#[test]
fn integer_range_rules_name_the_field() {
    let cases: Vec<(Value, &str, &str, &str)> = vec![
        (
            json!({"granularity": "integer_range", "start": 0, "end": 100}),
            "partitions.interval",
            "need an `interval`",
            "rangePartitioning.range.interval",
        ),
        (
            json!({"granularity": "integer_range", "interval": 0, "start": 0, "end": 100}),
            "partitions.interval",
            "must be positive, found 0",
            "positive integer",
        ),
        (
            json!({"granularity": "integer_range", "interval": -10, "start": 0, "end": 100}),
            "partitions.interval",
            "must be positive",
            "positive integer",
        ),
        (
            json!({"granularity": "integer_range", "interval": "ten", "start": 0, "end": 100}),
            "partitions.interval",
            "`ten` is not an integer",
            "positive integer",
        ),
        (
            json!({"granularity": "day", "interval": 1, "start": "2024-01-01", "end": "2024-01-02"}),
            "partitions.interval",
            "applies only to `integer_range`",
            "remove `interval`",
        ),
        (
            json!({"granularity": "integer_range", "interval": 10, "start": "4O", "end": 100}),
            "partitions.start",
            "`4O` is not an integer",
            "e.g. 0, 40 or -10",
        ),
        (
            json!({"granularity": "integer_range", "interval": 10, "start": 0, "end": "9223372036854775808"}),
            "partitions.end",
            "out of range for INT64",
            "INT64",
        ),
        (
            json!({"granularity": "integer_range", "interval": 10, "start": 50, "end": 50}),
            "partitions.end",
            "the range is empty",
            "set end to `60`",
        ),
        (
            json!({"granularity": "integer_range", "interval": 10, "start": 50, "end": 0}),
            "partitions.end",
            "before start",
            "set end to `60`",
        ),
        (
            json!({"granularity": "integer_range", "interval": 1, "start": 0, "end": 10001}),
            "partitions",
            "covers 10001 integer_range partitions",
            "split",
        ),
        (
            json!({"granularity": "integer_range", "interval": 10, "list": [0, 10, "0"]}),
            "partitions.list[2]",
            "`0` repeats partition `0` (partitions.list[0])",
            "once",
        ),
        (
            json!({"granularity": "integer_range", "interval": 10, "list": []}),
            "partitions.list",
            "empty",
            "at least one",
        ),
        (
            json!({"granularity": "integer_range", "interval": 10, "list": [1.5]}),
            "partitions.list[0]",
            "invalid type: floating point",
            "integer_range: integers",
        ),
        (
            json!({"granularity": "integer_range", "interval": 10, "start": 0, "end": 18446744073709551615u64}),
            "partitions.end",
            "out of range",
            "integer such as 40",
        ),
        (
            json!({"granularity": "integer_range", "interval": 10, "start": 0, "end": 10, "step": 1}),
            "partitions.step",
            "unknown field `step`",
            "unknown fields are rejected",
        ),
        (
            json!({"granularity": "day", "start": 20240101, "end": "2024-01-02"}),
            "partitions.start",
            "invalid type: integer `20240101`, expected a string",
            "strings such as",
        ),
    ];
    for (p, field, message, hint) in &cases {
        let e = err(&int_range(p.clone()));
        assert_eq!(e.field, *field, "{p}: {e}");
        assert!(e.message.contains(message), "{p}: {e}");
        assert!(e.hint.contains(hint), "{p}: {e}");
    }
    // A bad --start is named as the flag.
    let v = int_range(json!({"granularity": "integer_range", "interval": 10, "end": 100}));
    let o = Overrides {
        start: Some("+5".into()),
        ..Overrides::default()
    };
    assert_eq!(resolve_err(&v, &|_| None, &o).field, "--start");
}

#[test]
fn integer_range_sources() {
    let q = |sql: &str| {
        with(|v| {
            v["partitions"] =
                json!({"granularity": "integer_range", "interval": 10, "start": 0, "end": 100});
            v["source"] = json!({"query": sql});
        })
    };
    let e = err(&q("SELECT * FROM t WHERE d = @partition_date"));
    assert_eq!(e.field, "source.query");
    assert!(e.message.contains("`@partition_date`"), "{e}");
    assert!(e.hint.contains("@partition_start"), "{e}");
    let e = err(&q("SELECT * FROM t WHERE k = {partition_start}"));
    assert_eq!(e.field, "source.query");
    assert!(e.hint.contains("`@partition_start`"), "{e}");
    for ok in [
        "SELECT * FROM t WHERE k >= @partition_start AND k < @partition_end",
        "SELECT * FROM t WHERE CAST(k AS STRING) = @partition_id",
    ] {
        assert!(parse_value(&q(ok)).is_ok(), "{ok}");
    }

    let load = |uri: &str| {
        with(|v| {
            v["partitions"] =
                json!({"granularity": "integer_range", "interval": 10, "start": 0, "end": 100});
            v["source"] = json!({"load": {"uris": [uri], "format": "CSV"}});
        })
    };
    for (uri, message) in [
        (
            "gs://bkt/k={partition_date}/*.csv",
            "applies only to time partitions",
        ),
        (
            "gs://bkt/{year}/{partition_id}.csv",
            "`{year}` applies only to time",
        ),
        ("gs://bkt/all/*.csv", "does not identify the partition"),
    ] {
        let e = err(&load(uri));
        assert_eq!(e.field, "source.load.uris[0]", "{uri}");
        assert!(e.message.contains(message), "{uri}: {e}");
        assert!(e.hint.contains("{partition_start}"), "{uri}: {e}");
    }
    for ok in [
        "gs://bkt/k={partition_start}/*.csv",
        "gs://bkt/{partition_id}.csv",
        "gs://bkt/{partition_start}-{partition_end}.csv",
    ] {
        assert!(parse_value(&load(ok)).is_ok(), "{ok}");
    }
    // The integer placeholders are refused for time partitions.
    let v = with(|v| {
        v["source"] =
            json!({"load": {"uris": ["gs://bkt/{partition_start}/*.csv"], "format": "CSV"}})
    });
    let e = err(&v);
    assert_eq!(e.field, "source.load.uris[0]");
    assert!(e.message.contains("applies only to integer_range"), "{e}");
}

#[test]
fn dash_dash_partitions_replaces_the_range_and_names_itself_in_errors() {
    let listed = |ids: &[&str]| Overrides {
        partitions: Some(ids.iter().map(|s| s.to_string()).collect()),
        ..Overrides::default()
    };
    let d = parse_value(&base()).unwrap();
    let s = resolve(d.clone(), &|_| None, &listed(&["20240105", "2024-01-02"])).unwrap();
    let ids: Vec<String> = plan(&s.partitions).into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["20240102", "20240105"], "in the run's order");

    let e = resolve_err(&base(), &|_| None, &listed(&["20240105", "20240105"]));
    assert_eq!(e.field, "--partitions[1]", "{e}");
    let e = resolve_err(&base(), &|_| None, &listed(&["2024-13-01"]));
    assert_eq!(e.field, "--partitions[0]", "{e}");
    let both = Overrides {
        start: Some("2024-01-01".into()),
        ..listed(&["20240105"])
    };
    let e = resolve_err(&base(), &|_| None, &both);
    assert_eq!(e.field, "--partitions", "{e}");
    assert!(e.hint.contains("--start/--end"), "{e}");
}

#[test]
fn checks_and_the_staged_mode_resolve() {
    let s = settings(&with(|v| {
        v["verify"] = json!([
            {"name": "dups", "query": "SELECT k FROM {target} WHERE d = @partition_date GROUP BY k HAVING COUNT(*) > 1", "expect": "zero_rows"},
            {"name": "rows", "query": "SELECT COUNT(*) FROM {target} WHERE d = @partition_date", "expect": {"row_count": {"max": 10}}},
            {"name": "near", "query": "SELECT COUNT(*) FROM {target} WHERE d = @partition_date", "expect": {"within_percent_of_current": 5}},
            {"name": "same", "query": "SELECT COUNT(*) FROM {target} WHERE d = @partition_date", "expect": {"equals_query": "SELECT COUNT(*) FROM raw.orders WHERE DATE(ts) = @partition_date"}}
        ]);
        v["write"] = json!({"mode": "staged", "staging_dataset": "scratch"});
    }));
    let expects: Vec<settings::Expect> = s.verify.iter().map(|c| c.expect.clone()).collect();
    assert_eq!(
        expects,
        vec![
            settings::Expect::ZeroRows,
            settings::Expect::RowCount {
                min: None,
                max: Some(10)
            },
            settings::Expect::WithinPercentOfCurrent(5.0),
            settings::Expect::EqualsQuery(
                "SELECT COUNT(*) FROM raw.orders WHERE DATE(ts) = @partition_date".into()
            ),
        ]
    );
    let settings::WriteMode::Staged { staging } = &s.write else {
        panic!("staged");
    };
    assert_eq!(staging.to_string(), "my-project.scratch.orders__bqb_stage");
    assert_eq!(s.write_target(), staging);
    assert_eq!(settings(&base()).write, settings::WriteMode::Direct);
    assert!(settings(&base()).verify.is_empty());
}
