//! Naming rules for the identifiers a descriptor carries.
//!
//! Stricter than BigQuery where that keeps injection-shaped values out: these
//! strings end up in job IDs, labels, REST paths, SQL written by the tool
//! (the audit log) and log lines, so every accepted character is one that
//! needs no quoting anywhere.

/// A rule violation, before the caller attaches the field it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub hint: String,
}

fn problem(message: impl Into<String>, hint: impl Into<String>) -> Problem {
    Problem {
        message: message.into(),
        hint: hint.into(),
    }
}

/// Shows a character so that invisible or confusable ones are unambiguous.
pub(crate) fn show_char(c: char) -> String {
    if c == '`' {
        "a backtick".to_string()
    } else if c.is_ascii_graphic() {
        format!("`{c}`")
    } else if c == ' ' {
        "a space".to_string()
    } else {
        format!("U+{:04X}", u32::from(c))
    }
}

/// A specific hint for characters people reach for by habit.
fn char_hint(c: char, what: &str) -> Option<String> {
    match c {
        '`' => Some(format!(
            "write the {what} without backticks: bq-backfill passes names to the API, never into SQL text"
        )),
        '$' => Some(
            "leave out the partition decorator: bq-backfill adds `$<partition id>` itself for each partition"
                .to_string(),
        ),
        '\'' | '"' => Some(format!("write the {what} without quotes")),
        c if c.is_whitespace() => Some(format!(
            "remove the whitespace; {what}s with spaces are not supported by bq-backfill \
             (BigQuery allows spaces in table names, but they are easy to get wrong in \
             orchestrator templates)"
        )),
        _ => None,
    }
}

/// `job`: becomes a label value and part of every job ID.
pub(crate) fn job_name(s: &str) -> Result<(), Problem> {
    const HINT: &str = "use lowercase letters, digits, `_` and `-`, starting with a letter, \
                        at most 63 characters (e.g. `orders_daily_2024`)";
    if s.is_empty() {
        return Err(problem("job name is empty", HINT));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        let message = if c.is_ascii_uppercase() {
            format!("job name `{s}` contains uppercase letters")
        } else {
            format!("job name contains {}, which is not allowed", show_char(c))
        };
        return Err(problem(message, HINT));
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(problem(
            format!("job name `{s}` does not start with a letter"),
            HINT,
        ));
    }
    if s.len() > 63 {
        return Err(problem(
            format!("job name is {} characters long; the limit is 63", s.len()),
            HINT,
        ));
    }
    Ok(())
}

/// A Google Cloud project ID, optionally domain-scoped (`example.com:my-project`).
pub(crate) fn project_id(s: &str) -> Result<(), Problem> {
    const HINT: &str = "a project ID has 6-30 lowercase letters, digits and hyphens, starts with \
                        a letter and does not end with a hyphen (e.g. `my-project-123`); \
                        domain-scoped IDs look like `example.com:my-project`";
    if s.is_empty() {
        return Err(problem("project ID is empty", HINT));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')))
    {
        let message = if c.is_ascii_uppercase() {
            format!("project ID `{s}` contains uppercase letters")
        } else {
            format!("project ID contains {}, which is not allowed", show_char(c))
        };
        return Err(problem(
            message,
            char_hint(c, "project ID").unwrap_or_else(|| HINT.to_string()),
        ));
    }
    let (domain, name) = match s.split_once(':') {
        Some((d, n)) => (Some(d), n),
        None => (None, s),
    };
    if let Some(domain) = domain {
        let labels_ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && !l.contains(':')
            });
        if !labels_ok || name.contains(':') {
            return Err(problem(
                format!("`{s}` is not a valid domain-scoped project ID"),
                HINT,
            ));
        }
    }
    let valid_name = (6..=30).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid_name {
        return Err(problem(format!("`{s}` is not a valid project ID"), HINT));
    }
    Ok(())
}

/// A BigQuery location: `US`, `EU`, `us-central1`, `europe-west1`, ...
pub(crate) fn location(s: &str) -> Result<(), Problem> {
    const HINT: &str = "use a BigQuery location such as `US`, `EU` or `europe-west1`";
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        Err(problem(
            format!("location contains {}, which is not allowed", show_char(c)),
            HINT,
        ))
    } else {
        Err(problem(format!("`{s}` is not a valid location"), HINT))
    }
}

/// A table reference as written in the descriptor; the project is filled in
/// from the run's project when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableName {
    pub project: Option<String>,
    pub dataset: String,
    pub table: String,
}

const TABLE_FORM_HINT: &str = "write a table as `project.dataset.table` or `dataset.table`; \
                               datasets use letters, digits and `_`, tables letters, digits, \
                               `_` and `-`";

/// Parses `project.dataset.table`, `dataset.table` or
/// `domain.com:project.dataset.table`.
pub(crate) fn table_name(s: &str) -> Result<TableName, Problem> {
    if s.is_empty() {
        return Err(problem("table name is empty", TABLE_FORM_HINT));
    }
    // Characters no part may contain are reported first, with the most
    // specific hint available.
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(problem(
            format!(
                "`{s}` contains {}, which is not allowed in a table name",
                show_char(c)
            ),
            char_hint(c, "table name").unwrap_or_else(|| TABLE_FORM_HINT.to_string()),
        ));
    }
    let (project, rest) = match s.split_once(':') {
        // A real domain has a dot; `project:dataset.table` is legacy SQL syntax.
        Some((domain, _)) if !domain.contains('.') => {
            return Err(problem(
                format!("`{s}` uses the legacy `project:dataset.table` form"),
                "write `project.dataset.table`; a `:` is only allowed in domain-scoped \
                 project IDs such as `example.com:my-project.dataset.table`",
            ));
        }
        Some((domain, rest)) => match rest.split_once('.') {
            Some((name, rest)) => (Some(format!("{domain}:{name}")), rest),
            None => {
                return Err(problem(
                    format!("`{s}` is not a table name"),
                    "the legacy `project:dataset.table` form is not accepted; write \
                     `project.dataset.table`",
                ));
            }
        },
        None => (None, s),
    };
    let parts: Vec<&str> = rest.split('.').collect();
    let (project, dataset, table) = match (project, parts.as_slice()) {
        (Some(p), [d, t]) => (Some(p), *d, *t),
        (None, [p, d, t]) => (Some((*p).to_string()), *d, *t),
        (None, [d, t]) => (None, *d, *t),
        _ => {
            return Err(problem(
                format!("`{s}` is not of the form `project.dataset.table` or `dataset.table`"),
                TABLE_FORM_HINT,
            ));
        }
    };
    if let Some(p) = &project {
        project_id(p).map_err(|e| problem(format!("in `{s}`: {}", e.message), e.hint))?;
    }
    dataset_id(dataset).map_err(|e| problem(format!("in `{s}`: {}", e.message), e.hint))?;
    table_id(table).map_err(|e| problem(format!("in `{s}`: {}", e.message), e.hint))?;
    Ok(TableName {
        project,
        dataset: dataset.to_string(),
        table: table.to_string(),
    })
}

pub(crate) fn dataset_id(s: &str) -> Result<(), Problem> {
    if s.is_empty() {
        return Err(problem("dataset name is empty", TABLE_FORM_HINT));
    }
    if s.len() > 1024 {
        return Err(problem(
            format!(
                "dataset name is {} characters long; the limit is 1024",
                s.len()
            ),
            TABLE_FORM_HINT,
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(problem(
            format!(
                "dataset name `{s}` contains {}, which is not allowed",
                show_char(c)
            ),
            TABLE_FORM_HINT,
        ));
    }
    Ok(())
}

fn table_id(s: &str) -> Result<(), Problem> {
    if s.is_empty() {
        return Err(problem("table name is empty", TABLE_FORM_HINT));
    }
    if s.len() > 1024 {
        return Err(problem(
            format!(
                "table name is {} characters long; the limit is 1024",
                s.len()
            ),
            TABLE_FORM_HINT,
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(problem(
            format!(
                "table name `{s}` contains {}, which is not allowed",
                show_char(c)
            ),
            TABLE_FORM_HINT,
        ));
    }
    Ok(())
}

const LABEL_HINT: &str = "label keys have 1-63 lowercase letters, digits, `_` and `-` and start \
                          with a letter; values have 0-63 of the same characters";

/// A user label key (BigQuery's rules, ASCII only).
pub(crate) fn label_key(k: &str) -> Result<(), Problem> {
    if k.is_empty() {
        return Err(problem("label key is empty", LABEL_HINT));
    }
    if k.len() > 63 {
        return Err(problem(
            format!("label key is {} characters long; the limit is 63", k.len()),
            LABEL_HINT,
        ));
    }
    if let Some(c) = k
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        let message = if c.is_ascii_uppercase() {
            format!("label key `{k}` contains uppercase letters")
        } else {
            format!("label key contains {}, which is not allowed", show_char(c))
        };
        return Err(problem(message, LABEL_HINT));
    }
    if !k.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(problem(
            format!("label key `{k}` does not start with a lowercase letter"),
            LABEL_HINT,
        ));
    }
    Ok(())
}

/// A user label value.
pub(crate) fn label_value(v: &str) -> Result<(), Problem> {
    if v.len() > 63 {
        return Err(problem(
            format!(
                "label value is {} characters long; the limit is 63",
                v.len()
            ),
            LABEL_HINT,
        ));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        let message = if c.is_ascii_uppercase() {
            format!("label value `{v}` contains uppercase letters")
        } else {
            format!(
                "label value contains {}, which is not allowed",
                show_char(c)
            )
        };
        return Err(problem(message, LABEL_HINT));
    }
    Ok(())
}

/// Placeholders of time-partitioned loads.
pub(crate) const TIME_URI_PLACEHOLDERS: &[&str] = &[
    "partition_id",
    "partition_date",
    "year",
    "month",
    "day",
    "hour",
];

/// Placeholders of integer-range-partitioned loads.
pub(crate) const INTEGER_URI_PLACEHOLDERS: &[&str] =
    &["partition_id", "partition_start", "partition_end"];

/// Every placeholder a load URI template may contain; which ones apply
/// depends on the partitioning (the two lists above).
pub(crate) fn uri_placeholders() -> impl Iterator<Item = &'static str> {
    TIME_URI_PLACEHOLDERS
        .iter()
        .chain(INTEGER_URI_PLACEHOLDERS)
        .copied()
}

const URI_HINT: &str = "load URIs are Cloud Storage paths such as \
                        `gs://my-bucket/events/{partition_date}/*.json`; placeholders: \
                        {partition_id}, {partition_date}, {year}, {month}, {day}, {hour} \
                        (time partitions), {partition_id}, {partition_start}, {partition_end} \
                        (integer ranges)";

/// Checks a `gs://` URI template and returns the placeholders it uses.
pub(crate) fn gcs_uri_template(uri: &str) -> Result<Vec<&'static str>, Problem> {
    let Some(rest) = uri.strip_prefix("gs://") else {
        return Err(problem(format!("`{uri}` is not a gs:// URI"), URI_HINT));
    };
    if let Some(c) = uri.chars().find(|c| c.is_control()) {
        return Err(problem(
            format!("URI contains the control character {}", show_char(c)),
            URI_HINT,
        ));
    }
    let Some((bucket, object)) = rest.split_once('/') else {
        return Err(problem(
            format!("`{uri}` names no object inside the bucket"),
            URI_HINT,
        ));
    };
    let bucket_ok = (3..=222).contains(&bucket.len())
        && bucket.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && bucket.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if !bucket_ok {
        let why = if bucket.contains(['{', '}']) {
            " (placeholders are only allowed after the bucket)"
        } else {
            " (3-222 lowercase letters, digits, `-`, `_` and `.`)"
        };
        return Err(problem(
            format!("`{bucket}` is not a valid bucket name{why}"),
            URI_HINT,
        ));
    }
    if object.is_empty() {
        return Err(problem(
            format!("`{uri}` names no object inside the bucket"),
            URI_HINT,
        ));
    }
    let mut used = Vec::new();
    let mut chars = object.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => {
                let after = &object[i + 1..];
                let Some(close) = after
                    .find(['}', '{'])
                    .filter(|&j| after[j..].starts_with('}'))
                else {
                    return Err(problem(format!("`{uri}` has an unbalanced `{{`"), URI_HINT));
                };
                let name = &after[..close];
                match uri_placeholders().find(|p| *p == name) {
                    Some(p) => {
                        if !used.contains(&p) {
                            used.push(p);
                        }
                    }
                    None => {
                        return Err(problem(
                            format!("`{{{name}}}` is not a known placeholder"),
                            URI_HINT,
                        ));
                    }
                }
                for _ in 0..=name.chars().count() {
                    chars.next();
                }
            }
            '}' => {
                return Err(problem(format!("`{uri}` has an unbalanced `}}`"), URI_HINT));
            }
            _ => {}
        }
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names() {
        for ok in ["a", "orders_daily", "orders-2024", &"a".repeat(63)] {
            assert_eq!(job_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Orders",
            "1orders",
            "_x",
            "a b",
            "a;drop",
            &"a".repeat(64),
            "jöb",
        ] {
            assert!(job_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn project_ids() {
        for ok in ["my-project", "abcdef", "example.com:my-project", "p-123456"] {
            assert_eq!(project_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "short",
            "My-Project",
            "1project",
            "project-",
            "a`b`cdef",
            "my project",
            "my;project",
            &"a".repeat(31),
            ":my-project",
            "example.com:",
            "a:b:my-project",
        ] {
            assert!(project_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_names() {
        let t = table_name("my-project.sales.orders").unwrap();
        assert_eq!(t.project.as_deref(), Some("my-project"));
        assert_eq!((t.dataset.as_str(), t.table.as_str()), ("sales", "orders"));
        let t = table_name("sales.orders-2").unwrap();
        assert_eq!(t.project, None);
        let t = table_name("example.com:my-project.sales.orders").unwrap();
        assert_eq!(t.project.as_deref(), Some("example.com:my-project"));

        let bad = table_name("sales.orders$20240115").unwrap_err();
        assert!(bad.hint.contains("decorator"), "{bad:?}");
        let bad = table_name("`p.d.t`").unwrap_err();
        assert!(bad.hint.contains("backticks"), "{bad:?}");
        assert!(
            table_name("sales.my orders")
                .unwrap_err()
                .hint
                .contains("spaces")
        );
        for bad in [
            "orders",
            "a.b.c.d",
            "d.t;drop",
            "d.t'x",
            "my-project:sales.orders",
            "p.d-x.t",
            "my-project.sales.",
            ".t",
            "UPPER.sales.orders",
            "d.t*",
        ] {
            assert!(table_name(bad).is_err(), "{bad}");
        }
        assert!(table_name(&format!("d.{}", "t".repeat(1025))).is_err());
        assert!(table_name(&format!("d.{}", "t".repeat(1024))).is_ok());
    }

    #[test]
    fn labels() {
        assert!(label_key("team").is_ok() && label_value("").is_ok());
        assert!(label_key("Team").is_err());
        assert!(label_key("1team").is_err());
        assert!(label_key(&"k".repeat(64)).is_err());
        assert!(label_value(&"v".repeat(64)).is_err());
        assert!(label_value("Data").is_err());
    }

    #[test]
    fn uri_templates() {
        assert_eq!(
            gcs_uri_template("gs://b-1/x/{year}/{month}/{partition_date}-*.json").unwrap(),
            vec!["year", "month", "partition_date"]
        );
        for bad in [
            "s3://b/x/{year}",
            "gs://b",
            "gs://b/",
            "gs://B/x",
            "gs://b/{nope}",
            "gs://b/{year",
            "gs://b/year}",
            "gs://b/{{year}}",
            "gs://b/x\n{year}",
            "gs://bucket-{year}/x",
        ] {
            assert!(gcs_uri_template(bad).is_err(), "{bad}");
        }
    }
}
