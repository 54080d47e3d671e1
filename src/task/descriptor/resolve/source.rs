//! Where the rows come from: exactly one of a query (checked lexically for
//! its partition parameters), a load from Cloud Storage URIs (with their
//! placeholders), or a copy of another table.

use super::Builder;
use crate::planning::partition;
use crate::task::descriptor::raw::{LoadJob, Source, SourceFormat};
use crate::task::descriptor::{MAX_QUERY_BYTES, ident, sql};
use crate::task::settings::{self, TableRef};

const MAX_LOAD_URIS: usize = 10_000;

impl Builder<'_> {
    pub(super) fn source(
        &mut self,
        s: &Source,
        g: Option<partition::Granularity>,
        project: Option<&str>,
        destination: Option<&TableRef>,
    ) -> Option<settings::Source> {
        let given: Vec<&str> = [
            s.query.as_ref().map(|_| "query"),
            s.load.as_ref().map(|_| "load"),
            s.copy.as_ref().map(|_| "copy"),
        ]
        .into_iter()
        .flatten()
        .collect();
        const HINT: &str = "set exactly one of `source.query`, `source.load` or `source.copy`";
        match given.as_slice() {
            [] => {
                self.issue("source", "no source given", HINT);
                None
            }
            [_] => {
                if let Some(q) = &s.query {
                    self.query(q, g).map(|sql| settings::Source::Query { sql })
                } else if let Some(l) = &s.load {
                    self.load(l, g).map(settings::Source::Load)
                } else if let Some(c) = &s.copy {
                    let table = self.table("source.copy.table", &c.table, project)?;
                    if Some(&table) == destination {
                        self.issue(
                            "source.copy.table",
                            format!("the copy source `{table}` is the destination table"),
                            "copy from a different table (e.g. a staging table) into the destination",
                        );
                        return None;
                    }
                    Some(settings::Source::Copy { table })
                } else {
                    None
                }
            }
            many => {
                self.issue(
                    "source",
                    format!(
                        "more than one source given ({})",
                        many.iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    HINT,
                );
                None
            }
        }
    }

    /// The query; `g` is the time granularity (`None`: integer ranges).
    pub(super) fn query(&mut self, q: &str, g: Option<partition::Granularity>) -> Option<String> {
        self.query_at("source.query", q, g)
    }

    /// A partition query at `field` (the source, a check, an equals query):
    /// one SELECT using the partition parameters and no template.
    pub(super) fn query_at(
        &mut self,
        field: &str,
        q: &str,
        g: Option<partition::Granularity>,
    ) -> Option<String> {
        const TIME_PARAMS_HINT: &str = "filter on the partition with the named parameters @partition_date (DATE), @partition_id (STRING), @partition_start and @partition_end (TIMESTAMP), e.g. `WHERE DATE(ts) = @partition_date`";
        const INTEGER_PARAMS_HINT: &str = "filter on the partition with the named parameters @partition_start and @partition_end (INT64, half-open) or @partition_id (STRING), e.g. `WHERE bucket >= @partition_start AND bucket < @partition_end`";
        let (params_hint, template_hint) = match g {
            Some(_) => (
                TIME_PARAMS_HINT,
                "bq-backfill never splices values into SQL text; use the query parameter instead, e.g. `@partition_date` for `{partition_date}` (parameters: @partition_id, @partition_date, @partition_start, @partition_end)",
            ),
            None => (
                INTEGER_PARAMS_HINT,
                "bq-backfill never splices values into SQL text; use the query parameter instead, e.g. `@partition_start` for `{partition_start}` (parameters: @partition_id, @partition_start, @partition_end)",
            ),
        };
        if q.len() > MAX_QUERY_BYTES {
            self.issue(
                field,
                format!("query is {} bytes; BigQuery's limit is 1 MiB", q.len()),
                "move logic into views or user-defined functions to shorten the query",
            );
            return None;
        }
        if q.trim().is_empty() {
            self.issue(
                field,
                "query is empty",
                "write the SELECT that produces one partition's rows",
            );
            return None;
        }
        let scan = sql::scan(q);
        if let Some(t) = &scan.template {
            self.issue(
                field,
                format!("query contains the template placeholder `{t}`"),
                template_hint,
            );
            return None;
        }
        let Some(first) = scan.first_token.as_deref() else {
            self.issue(
                field,
                "query contains only comments",
                "write the SELECT that produces one partition's rows",
            );
            return None;
        };
        if !matches!(first, "SELECT" | "WITH" | "FROM" | "(") {
            self.issue(
                field,
                format!("query starts with `{first}`; only a single SELECT statement is supported"),
                "write a SELECT (or WITH ... SELECT) whose result replaces the partition; bq-backfill does the write itself (WRITE_TRUNCATE into table$partition), so DML, DDL and scripts are not needed",
            );
            return None;
        }
        if scan.multiple_statements {
            self.issue(
                field,
                "query contains more than one statement",
                "remove everything after the first `;`: the query must be a single SELECT",
            );
            return None;
        }
        if scan.positional {
            self.issue(field, "query uses a positional parameter `?`", params_hint);
            return None;
        }
        let unknown: Vec<&String> = scan
            .params
            .iter()
            .filter(|p| !sql::PARAMETERS.contains(&p.as_str()))
            .collect();
        if let Some(p) = unknown.first() {
            self.issue(
                field,
                format!("query uses the parameter `@{p}`, which bq-backfill does not provide"),
                params_hint,
            );
            return None;
        }
        if g.is_none() && scan.params.iter().any(|p| p == "partition_date") {
            self.issue(
                field,
                "query uses `@partition_date`, which integer_range partitions do not have",
                INTEGER_PARAMS_HINT,
            );
            return None;
        }
        if scan.params.is_empty() {
            self.issue(
                field,
                "query does not use any partition parameter, so every partition would receive the same rows",
                params_hint,
            );
            return None;
        }
        Some(q.to_string())
    }

    /// A load source; `g` is the time granularity (`None`: integer ranges).
    pub(super) fn load(
        &mut self,
        l: &LoadJob,
        g: Option<partition::Granularity>,
    ) -> Option<settings::LoadSource> {
        let mut ok = true;
        if l.uris.is_empty() {
            self.issue("source.load.uris", "no URIs given", "list at least one gs:// URI template, e.g. `gs://bucket/events/{partition_date}/*.json`");
            ok = false;
        }
        if l.uris.len() > MAX_LOAD_URIS {
            self.issue(
                "source.load.uris",
                format!(
                    "{} URIs given; BigQuery accepts at most 10000 per load job",
                    l.uris.len()
                ),
                "use wildcards (`*`) to cover many files with one URI",
            );
            ok = false;
        }
        for (i, uri) in l.uris.iter().enumerate() {
            let field = format!("source.load.uris[{i}]");
            match ident::gcs_uri_template(uri) {
                Ok(used) => {
                    if !self.uri_placeholders(&field, uri, &used, g) {
                        ok = false;
                    }
                }
                Err(p) => {
                    self.problem(field, p);
                    ok = false;
                }
            }
        }
        let csv = l.format == SourceFormat::Csv;
        let csv_only: [(&str, bool); 5] = [
            ("skip_leading_rows", l.skip_leading_rows.is_some()),
            ("field_delimiter", l.field_delimiter.is_some()),
            ("allow_jagged_rows", l.allow_jagged_rows.is_some()),
            ("allow_quoted_newlines", l.allow_quoted_newlines.is_some()),
            ("null_marker", l.null_marker.is_some()),
        ];
        for (name, set) in csv_only {
            if set && !csv {
                self.issue(
                    format!("source.load.{name}"),
                    format!(
                        "`{name}` applies only to CSV, but the format is {}",
                        l.format.as_str()
                    ),
                    "remove it, or set `format` to \"CSV\"",
                );
                ok = false;
            }
        }
        if l.max_bad_records.is_some()
            && !matches!(
                l.format,
                SourceFormat::Csv | SourceFormat::NewlineDelimitedJson
            )
        {
            self.issue(
                "source.load.max_bad_records",
                format!("`max_bad_records` applies only to CSV and NEWLINE_DELIMITED_JSON, but the format is {}", l.format.as_str()),
                "remove it",
            );
            ok = false;
        }
        if let Some(d) = &l.field_delimiter
            && (d.is_empty() || d.len() > 16 || d.contains(['\n', '\r']))
        {
            self.issue(
                "source.load.field_delimiter",
                "the field delimiter must be 1 to 16 bytes and contain no line break",
                "use e.g. \",\", \"|\" or \"\\t\"",
            );
            ok = false;
        }
        if let Some(m) = &l.null_marker
            && (m.len() > 1024 || m.contains(['\n', '\r']))
        {
            self.issue(
                "source.load.null_marker",
                "the null marker must be at most 1024 bytes with no line break",
                "use e.g. \"\\\\N\" or \"NULL\"",
            );
            ok = false;
        }
        ok.then(|| settings::LoadSource {
            uris: l.uris.clone(),
            format: l.format.as_str().to_string(),
            skip_leading_rows: l.skip_leading_rows,
            field_delimiter: l.field_delimiter.clone(),
            allow_jagged_rows: l.allow_jagged_rows,
            allow_quoted_newlines: l.allow_quoted_newlines,
            ignore_unknown_values: l.ignore_unknown_values,
            max_bad_records: l.max_bad_records,
            null_marker: l.null_marker.clone(),
        })
    }

    /// Checks that a URI's placeholders suit the partitioning and identify
    /// the partition; records an issue and returns false otherwise.
    pub(super) fn uri_placeholders(
        &mut self,
        field: &str,
        uri: &str,
        used: &[&str],
        g: Option<partition::Granularity>,
    ) -> bool {
        let Some(g) = g else {
            if let Some(p) = used
                .iter()
                .find(|p| !ident::INTEGER_URI_PLACEHOLDERS.contains(p))
            {
                self.issue(
                    field,
                    format!("the placeholder `{{{p}}}` applies only to time partitions, but the granularity is integer_range"),
                    "integer_range URIs use `{partition_id}`, `{partition_start}` and `{partition_end}`, e.g. `gs://bucket/export/bucket={partition_start}/*.json`",
                );
                return false;
            }
            if used.is_empty() {
                self.issue(
                    field,
                    format!("`{uri}` does not identify the partition, so every integer_range partition would load the same files"),
                    "include `{partition_id}` or `{partition_start}` (or `{partition_end}`)",
                );
                return false;
            }
            return true;
        };
        if let Some(p) = used
            .iter()
            .find(|p| !ident::TIME_URI_PLACEHOLDERS.contains(p))
        {
            self.issue(
                field,
                format!("the placeholder `{{{p}}}` applies only to integer_range partitions, but the granularity is {g}"),
                format!("{g} URIs use `{{partition_id}}`, `{{partition_date}}`, `{{year}}`, `{{month}}`, `{{day}}` and `{{hour}}`"),
            );
            return false;
        }
        if let Some(p) = used.iter().find(|p| finer_than(p, g)) {
            self.issue(
                field,
                format!("the placeholder `{{{p}}}` is finer than {g} partitions"),
                format!("{g} partitions have no {p}; remove `{{{p}}}` from the URI"),
            );
            return false;
        }
        if !identifies_partition(used, g) {
            self.issue(
                field,
                format!("`{uri}` does not identify the partition, so every {g} partition would load the same files"),
                format!("include `{{partition_id}}`{}", match g {
                    partition::Granularity::Hour => ", or `{partition_date}` with `{hour}`",
                    partition::Granularity::Day => " or `{partition_date}` (or `{year}`, `{month}` and `{day}`)",
                    partition::Granularity::Month => " or `{year}` and `{month}`",
                    partition::Granularity::Year => " or `{year}`",
                }),
            );
            return false;
        }
        true
    }
}

fn rank(g: partition::Granularity) -> u8 {
    match g {
        partition::Granularity::Year => 0,
        partition::Granularity::Month => 1,
        partition::Granularity::Day => 2,
        partition::Granularity::Hour => 3,
    }
}

/// A URI placeholder that names a unit smaller than the partition.
fn finer_than(placeholder: &str, g: partition::Granularity) -> bool {
    let unit = match placeholder {
        "month" => partition::Granularity::Month,
        "day" => partition::Granularity::Day,
        "hour" => partition::Granularity::Hour,
        _ => return false,
    };
    rank(unit) > rank(g)
}

/// Whether the placeholders pin down one partition of granularity `g`.
fn identifies_partition(used: &[&str], g: partition::Granularity) -> bool {
    if used.contains(&"partition_id") {
        return true;
    }
    let has = |p: &str| used.contains(&p);
    let date = has("partition_date");
    let year = date || has("year");
    let month = date || has("month");
    let day = date || has("day");
    match g {
        partition::Granularity::Year => year,
        partition::Granularity::Month => year && month,
        partition::Granularity::Day => year && month && day,
        partition::Granularity::Hour => year && month && day && has("hour"),
    }
}
