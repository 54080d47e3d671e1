//! What each field expects, and "did you mean" for misspelt field names:
//! the hints attached to type and unknown-field errors.

/// The candidate within edit distance 2 of `name`, if any.
pub(super) fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    candidates
        .iter()
        .map(|c| (distance(&name.to_ascii_lowercase(), c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// What a field expects, for hints on type errors.
pub(super) fn field_hint(field: &str) -> Option<&'static str> {
    // Array indices and label keys do not change what is expected.
    let mut generic = String::with_capacity(field.len());
    let mut in_index = false;
    for c in field.chars() {
        match c {
            '[' => {
                in_index = true;
                generic.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => generic.push(c),
        }
    }
    let generic = if generic.starts_with("job_config.labels.") {
        "job_config.labels.*"
    } else {
        generic.as_str()
    };
    Some(match generic {
        "version" => "`version` is the number 1",
        "job" => {
            "`job` is a name of lowercase letters, digits, `_` and `-`, starting with a letter"
        }
        "project" => "`project` is a Google Cloud project ID string such as \"my-project\"",
        "location" => "`location` is a BigQuery location string such as \"US\" or \"europe-west1\"",
        "destination" => "`destination` is a string \"project.dataset.table\" or \"dataset.table\"",
        "partitions" => {
            "`partitions` is an object: {\"granularity\": \"day\", \"start\": \"2024-01-01\", \"end\": \"2024-02-01\"}"
        }
        "partitions.granularity" => {
            "`granularity` is one of \"hour\", \"day\", \"month\", \"year\", \"integer_range\""
        }
        "partitions.interval" => "`interval` (integer_range only) is a positive integer such as 10",
        "partitions.start" | "partitions.end" => {
            "a range bound is a string such as \"2024-01-15\" (integer_range: an integer such as 40)"
        }
        "partitions.list" => {
            "`list` is an array of strings such as [\"2024-01-15\", \"2024-01-20\"] (integer_range: integers such as [0, 40])"
        }
        "partitions.list[]" => {
            "list entries are strings such as \"2024-01-15\" (integer_range: integers such as 40)"
        }
        "partitions.order" => "`order` is \"oldest_first\" or \"newest_first\"",
        "source" => "`source` is an object with exactly one of \"query\", \"load\" or \"copy\"",
        "source.query" => "`source.query` is the SQL text as a string",
        "source.load" => {
            "`source.load` is an object: {\"uris\": [\"gs://bucket/{partition_date}/*.json\"], \"format\": \"NEWLINE_DELIMITED_JSON\"}"
        }
        "source.load.uris" => "`uris` is an array of \"gs://...\" strings",
        "source.load.uris[]" => "each URI is a \"gs://bucket/path\" string",
        "source.load.format" => {
            "`format` is one of \"NEWLINE_DELIMITED_JSON\", \"CSV\", \"PARQUET\", \"AVRO\", \"ORC\""
        }
        "source.load.skip_leading_rows" | "source.load.max_bad_records" => "a non-negative integer",
        "source.load.field_delimiter" | "source.load.null_marker" => "a string",
        "source.load.allow_jagged_rows"
        | "source.load.allow_quoted_newlines"
        | "source.load.ignore_unknown_values" => "true or false",
        "source.copy" => "`source.copy` is an object: {\"table\": \"project.dataset.table\"}",
        "source.copy.table" | "checkpoint.table" => {
            "a string \"project.dataset.table\" or \"dataset.table\""
        }
        "checkpoint" => "`checkpoint` is an object: {\"table\": \"project.dataset.table\"}",
        "throttle" => "`throttle` is an object: {\"pause_seconds\": 1, \"pause_ratio\": 0.2}",
        "throttle.pause_seconds" => "`pause_seconds` is a number of seconds from 0 to 86400",
        "throttle.partition_writes_per_10s" => {
            "`partition_writes_per_10s` is an integer from 1 to 50"
        }
        "concurrency" => "`concurrency` is an integer from 1 to 16: partitions run at once",
        "throttle.pause_ratio" => "`pause_ratio` is a number from 0 to 100",
        "job_config" => {
            "`job_config` is an object: {\"priority\": \"BATCH\", \"labels\": {\"team\": \"data\"}}"
        }
        "job_config.priority" => "`priority` is \"INTERACTIVE\" or \"BATCH\" (uppercase)",
        "job_config.maximum_bytes_billed" => {
            "`maximum_bytes_billed` is a positive integer, as a number or a string of digits"
        }
        "job_config.labels" => "`labels` is an object of strings: {\"team\": \"data\"}",
        "job_config.labels.*" => {
            "label values are strings of lowercase letters, digits, `_` and `-`"
        }
        "on_failure" => "`on_failure` is \"stop\" or \"continue\"",
        "retry" => "`retry` is an object: {\"max_attempts\": 3, \"initial_backoff_seconds\": 1}",
        "retry.max_attempts" => "`max_attempts` is an integer from 1 to 10",
        "retry.initial_backoff_seconds" | "retry.max_backoff_seconds" => {
            "a positive number of seconds, at most 3600"
        }
        "retry.deadline_seconds" => {
            "`deadline_seconds` is a positive number of seconds, at most 86400"
        }
        "max_runtime_seconds" => "`max_runtime_seconds` is a positive number of seconds",
        "lease" => "`lease` is an object: {\"ttl_seconds\": 180}",
        "lease.ttl_seconds" => "`ttl_seconds` is a number of seconds from 1 to 86400",
        _ => return None,
    })
}
