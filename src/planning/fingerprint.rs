//! Content fingerprints and deterministic job IDs.
//!
//! The fingerprint identifies "the logic that produces a partition": the
//! source (query text, load URIs and options, copy table), the destination
//! table and the granularity (with the interval of an integer range), the
//! verification checks and the write mode.
//! Anything that only changes how or when the
//! work runs (throttle, priority, labels, byte cap, failure policy, retries,
//! time budget, lease, which partitions are selected) is left out, so that
//! tuning a run never invalidates its checkpoints.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::task::settings::{Settings, Source, WriteMode};

/// Version of the canonical form below; bump it when that form changes, so
/// that old and new fingerprints never collide by accident.
pub const FINGERPRINT_VERSION: u32 = 1;

/// Length of the short fingerprint used in job IDs.
pub const SHORT_LEN: usize = 16;

/// BigQuery's job-ID length limit.
pub const MAX_JOB_ID_LEN: usize = 1024;

/// The canonical JSON document that is hashed: sorted keys, no whitespace.
pub fn canonical_input(settings: &Settings) -> String {
    let source = match &settings.source {
        Source::Query { sql } => json!({ "kind": "query", "sql": sql }),
        Source::Load(l) => json!({
            "kind": "load",
            "uris": l.uris,
            "format": l.format,
            "skip_leading_rows": l.skip_leading_rows,
            "field_delimiter": l.field_delimiter,
            "allow_jagged_rows": l.allow_jagged_rows,
            "allow_quoted_newlines": l.allow_quoted_newlines,
            "ignore_unknown_values": l.ignore_unknown_values,
            "max_bad_records": l.max_bad_records,
            "null_marker": l.null_marker,
        }),
        Source::Copy { table } => json!({ "kind": "copy", "table": table.to_string() }),
    };
    let mut doc = json!({
        "fingerprint_version": FINGERPRINT_VERSION,
        "destination": settings.destination.to_string(),
        "granularity": settings.partitions.granularity_name(),
        "source": source,
    });
    // Only integer ranges have an interval; leaving the key out otherwise
    // keeps every time-partitioned fingerprint as it was.
    if let Some(interval) = settings.partitions.interval() {
        doc["interval"] = json!(interval);
    }
    // Likewise the checks and the write mode only when set: a partition
    // verified by other checks (or not at all) is stale.
    if !settings.verify.is_empty() {
        doc["verify"] = json!(settings.verify);
    }
    if let WriteMode::Staged { .. } = settings.write {
        doc["write_mode"] = json!("staged");
    }
    let mut out = String::new();
    write_canonical(&doc, &mut out);
    out
}

/// Serialises with object keys sorted, whatever map type serde_json was
/// built with (its `preserve_order` feature would otherwise change the hash).
fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Hex SHA-256 of [`canonical_input`]: 64 lowercase hex characters.
pub fn fingerprint(settings: &Settings) -> String {
    hex::encode(Sha256::digest(canonical_input(settings).as_bytes()))
}

/// The first 16 hex characters of a fingerprint (the whole string if it is
/// shorter).
pub fn short(fp: &str) -> &str {
    fp.get(..SHORT_LEN).unwrap_or(fp)
}

/// The deterministic BigQuery job ID for one attempt at one partition:
/// `bqb_<job>_<partition_id>_<fp16>_a<attempt>`.
///
/// Re-inserting the same ID answers 409 `duplicate`, which the runner treats
/// as "attach to the existing job". The attempt number must therefore never
/// be reused for a new execution of the same partition and fingerprint
/// (derive it from the audit log across runs), or a re-run would attach to
/// an old finished job instead of running a new one.
///
/// Characters outside BigQuery's job-ID alphabet (letters, digits, `_`,
/// `-`) are replaced by `_`; validated inputs never contain any.
pub fn job_id(job: &str, partition_id: &str, fingerprint: &str, attempt: u32) -> String {
    let raw = format!("bqb_{job}_{partition_id}_{}_a{attempt}", short(fingerprint));
    let mut id: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    id.truncate(MAX_JOB_ID_LEN);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::descriptor::{Overrides, parse, resolve};

    const BASE: &str = r#"{
        "job": "orders_daily",
        "project": "my-project",
        "destination": "sales.orders",
        "partitions": {"granularity": "day", "start": "2024-01-01", "end": "2024-02-01"},
        "source": {"query": "SELECT * FROM raw.orders WHERE DATE(ts) = @partition_date"}
    }"#;

    fn settings_with(edit: impl FnOnce(&mut Value)) -> Settings {
        let mut v: Value = serde_json::from_str(BASE).unwrap();
        edit(&mut v);
        let d = parse(v.to_string().as_bytes()).unwrap();
        resolve(d, &|_| None, &Overrides::default()).unwrap()
    }

    fn fp(edit: impl FnOnce(&mut Value)) -> String {
        fingerprint(&settings_with(edit))
    }

    #[test]
    fn pinned_value_is_stable() {
        let s = settings_with(|_| {});
        assert_eq!(
            canonical_input(&s),
            r#"{"destination":"my-project.sales.orders","fingerprint_version":1,"granularity":"day","source":{"kind":"query","sql":"SELECT * FROM raw.orders WHERE DATE(ts) = @partition_date"}}"#
        );
        assert_eq!(
            fingerprint(&s),
            hex::encode(Sha256::digest(canonical_input(&s).as_bytes()))
        );
        assert_eq!(fingerprint(&s), PINNED);
        assert_eq!(fingerprint(&s).len(), 64);
    }

    /// Changing any part of a check changes the fingerprint.
    #[test]
    fn every_part_of_a_check_counts() {
        let check = |name: &str, query: &str, expect: Value| {
            fp(|v| v["verify"] = json!([{"name": name, "query": query, "expect": expect}]))
        };
        let q = "SELECT COUNT(*) FROM {target} WHERE day = @partition_date";
        let base = check("n", q, json!({"row_count": {"min": 1}}));
        assert_ne!(base, check("m", q, json!({"row_count": {"min": 1}})));
        assert_ne!(
            base,
            check(
                "n",
                &format!("{q} AND 1=1"),
                json!({"row_count": {"min": 1}})
            )
        );
        assert_ne!(base, check("n", q, json!({"row_count": {"min": 2}})));
        assert_ne!(base, check("n", q, json!("zero_rows")));
        assert_eq!(base, check("n", q, json!({"row_count": {"min": 1}})));
    }

    const PINNED: &str = "aa69a67144ae2253323f9943c5bb9207b351b0cdcbf953e77be84be311583aa6";

    #[test]
    fn content_changes_change_it() {
        let base = fp(|_| {});
        let changed = [
            fp(|v| {
                v["source"]["query"] =
                    json!("SELECT * FROM raw.orders WHERE DATE(ts) = @partition_date AND x")
            }),
            fp(|v| v["destination"] = json!("sales.orders_v2")),
            fp(|v| v["project"] = json!("other-project")),
            fp(|v| {
                v["partitions"] =
                    json!({"granularity": "month", "start": "2024-01", "end": "2024-02"});
            }),
            fp(|v| v["source"] = json!({"copy": {"table": "staging.orders"}})),
            fp(|v| {
                v["verify"] = json!([{"name": "n", "expect": "zero_rows",
                    "query": "SELECT 1 FROM {target} WHERE day = @partition_date"}])
            }),
            fp(|v| v["write"] = json!({"mode": "staged", "staging_dataset": "scratch"})),
        ];
        for c in &changed {
            assert_ne!(c, &base);
        }
        let load = |opts: Value| {
            fp(|v| {
                let mut load =
                    json!({"uris": ["gs://bkt/o/{partition_date}/*.csv"], "format": "CSV"});
                load.as_object_mut()
                    .unwrap()
                    .extend(opts.as_object().unwrap().clone());
                v["source"] = json!({ "load": load });
            })
        };
        let plain = load(json!({}));
        assert_ne!(plain, load(json!({"skip_leading_rows": 1})));
        assert_ne!(plain, load(json!({"field_delimiter": "|"})));
        assert_ne!(plain, load(json!({"null_marker": ""})));
        assert_ne!(plain, load(json!({"ignore_unknown_values": true})));
    }

    #[test]
    fn run_options_do_not_change_it() {
        let base = fp(|_| {});
        let same = [
            fp(|v| v["throttle"] = json!({"pause_seconds": 5, "pause_ratio": 1})),
            fp(
                |v| v["job_config"] = json!({"priority": "BATCH", "labels": {"team": "data"}, "maximum_bytes_billed": "1000"}),
            ),
            fp(|v| v["partitions"]["end"] = json!("2024-03-01")),
            fp(|v| {
                v["partitions"] =
                    json!({"granularity": "day", "list": ["2024-01-05"], "order": "newest_first"})
            }),
            fp(|v| v["on_failure"] = json!("continue")),
            fp(|v| v["retry"] = json!({"max_attempts": 5})),
            fp(|v| v["max_runtime_seconds"] = json!(60)),
            fp(|v| v["lease"] = json!({"ttl_seconds": 30})),
            fp(|v| v["location"] = json!("EU")),
            fp(|v| v["checkpoint"] = json!({"table": "ops.audit"})),
        ];
        for s in &same {
            assert_eq!(s, &base);
        }
    }

    #[test]
    fn integer_ranges_fingerprint_their_interval() {
        let range = |interval: Value, selection: Value| {
            fp(|v| {
                let mut p = json!({"granularity": "integer_range", "interval": interval});
                p.as_object_mut()
                    .unwrap()
                    .extend(selection.as_object().unwrap().clone());
                v["partitions"] = p;
                v["source"] = json!({"query": "SELECT * FROM raw.orders WHERE bucket >= @partition_start AND bucket < @partition_end"});
            })
        };
        let base = range(json!(10), json!({"start": 0, "end": 100}));
        let s = settings_with(|v| {
            v["partitions"] =
                json!({"granularity": "integer_range", "interval": 10, "start": 0, "end": 100});
            v["source"] = json!({"query": "SELECT * FROM raw.orders WHERE bucket >= @partition_start AND bucket < @partition_end"});
        });
        assert!(
            canonical_input(&s).contains(r#""granularity":"integer_range","interval":10,"#),
            "{}",
            canonical_input(&s)
        );
        assert_ne!(base, range(json!(20), json!({"start": 0, "end": 100})));
        // The selection is not part of it; nor is the spelling of the interval.
        assert_eq!(base, range(json!(10), json!({"start": "40", "end": 60})));
        assert_eq!(base, range(json!(10), json!({"list": [90, 0]})));
        assert_eq!(base, range(json!("10"), json!({"start": 0, "end": 100})));
    }

    #[test]
    fn short_form() {
        assert_eq!(short("0123456789abcdef0123"), "0123456789abcdef");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn job_ids_follow_bigquery_rules() {
        let fp = "0123456789abcdef".repeat(4);
        let id = job_id("orders_daily-v2", "2024011503", &fp, 2);
        assert_eq!(id, "bqb_orders_daily-v2_2024011503_0123456789abcdef_a2");
        let longest = job_id(&"j".repeat(63), "2024011503", &fp, u32::MAX);
        for id in [&id, &longest, &job_id("a b$c`d", "x;y", "zz", 1)] {
            assert!(id.len() <= MAX_JOB_ID_LEN);
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "{id}"
            );
        }
        assert_ne!(
            job_id("j", "20240115", &fp, 1),
            job_id("j", "20240115", &fp, 2)
        );
        assert_ne!(
            job_id("j", "20240115", &fp, 1),
            job_id("j", "20240116", &fp, 1)
        );
        assert_ne!(
            job_id("j", "20240115", &fp, 1),
            job_id("j", "20240115", &"f".repeat(64), 1)
        );
        assert_eq!(
            job_id("j", "20240115", &fp, 1),
            job_id("j", "20240115", &fp, 1)
        );
    }
}
