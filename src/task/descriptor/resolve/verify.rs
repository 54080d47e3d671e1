//! The verification checks (`verify`) and the write strategy (`write`):
//! names, the `{target}` placeholder, expectations, the staging dataset.

use std::collections::HashSet;

use super::Builder;
use crate::planning::partition;
use crate::task::descriptor::ident;
use crate::task::descriptor::raw::{self, Expect};
use crate::task::settings::{self, TableRef};

/// The one placeholder a check query has; replaced by the checked table.
pub const TARGET: &str = "{target}";
/// Suffix of the staging table's name after the destination table's.
pub const STAGING_SUFFIX: &str = "__bqb_stage";

const TARGET_HINT: &str = "write `{target}` where the checked table goes, e.g. `SELECT COUNT(*) FROM {target} WHERE day = @partition_date`; bq-backfill replaces it with the backticked table path (partition values stay parameters)";

impl Builder<'_> {
    pub(super) fn verify(
        &mut self,
        checks: &[raw::Check],
        g: Option<partition::Granularity>,
    ) -> Option<Vec<settings::Check>> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        let mut ok = true;
        for (i, c) in checks.iter().enumerate() {
            let at = format!("verify[{i}]");
            if !check_name_ok(&c.name) {
                self.issue(
                    format!("{at}.name"),
                    format!("check name `{}` is not a valid name", c.name),
                    "use 1-128 letters, digits and `_`, starting with a letter or `_`, e.g. `no_duplicate_keys`",
                );
                ok = false;
            } else if !names.insert(c.name.to_ascii_lowercase()) {
                self.issue(
                    format!("{at}.name"),
                    format!("check name `{}` is used twice", c.name),
                    "give every check its own name: the audit log and events report checks by name",
                );
                ok = false;
            }
            let query = self.check_query(&format!("{at}.query"), &c.query, g);
            let expect = self.expect(&format!("{at}.expect"), &c.expect, g);
            match (query, expect) {
                (Some(query), Some(expect)) => out.push(settings::Check {
                    name: c.name.clone(),
                    query,
                    expect,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A check query: `{target}` present, no other placeholder, and
    /// otherwise a partition query like the source's.
    fn check_query(
        &mut self,
        field: &str,
        q: &str,
        g: Option<partition::Granularity>,
    ) -> Option<String> {
        if !q.contains(TARGET) {
            self.issue(
                field,
                "check query does not contain `{target}`",
                TARGET_HINT,
            );
            return None;
        }
        if let Some(other) = placeholders(q).into_iter().find(|p| p != TARGET) {
            self.issue(
                field,
                format!("check query contains the placeholder `{other}`; only `{{target}}` is replaced"),
                "pass partition values as query parameters (@partition_date, @partition_id, @partition_start, @partition_end); `{target}` is the only placeholder",
            );
            return None;
        }
        // Scanned as BigQuery will see it: with a table path in place.
        let scanned = q.replace(TARGET, "`p.d.t`");
        self.query_at(field, &scanned, g)?;
        Some(q.to_string())
    }

    fn expect(
        &mut self,
        field: &str,
        e: &Expect,
        g: Option<partition::Granularity>,
    ) -> Option<settings::Expect> {
        match e {
            Expect::ZeroRows => Some(settings::Expect::ZeroRows),
            Expect::RowCount(r) => self.row_count(&format!("{field}.row_count"), r),
            Expect::WithinPercentOfCurrent(n) => {
                let f = format!("{field}.within_percent_of_current");
                let hint = "give the allowed difference in percent, e.g. 5 for ±5 %";
                self.number(&f, *n, 0.0, false, 1.0e6, hint)
                    .map(settings::Expect::WithinPercentOfCurrent)
            }
            Expect::EqualsQuery(q) => {
                let f = format!("{field}.equals_query");
                if q.contains(TARGET) {
                    self.issue(
                        &f,
                        "the equals query contains `{target}`",
                        "the equals query computes the expected value from the source (e.g. the raw event count); it receives the partition parameters but no table placeholder",
                    );
                    return None;
                }
                self.query_at(&f, q, g).map(settings::Expect::EqualsQuery)
            }
        }
    }

    fn row_count(&mut self, field: &str, r: &raw::RowCount) -> Option<settings::Expect> {
        let hint = "give `min` and/or `max` as non-negative integers with min <= max, e.g. {\"min\": 1, \"max\": 1000000}";
        match (r.min, r.max) {
            (None, None) => {
                self.issue(field, "row_count has neither `min` nor `max`", hint);
                None
            }
            (Some(n), _) | (_, Some(n)) if n < 0 => {
                self.issue(field, format!("row_count bound {n} is negative"), hint);
                None
            }
            (Some(min), Some(max)) if min > max => {
                self.issue(
                    field,
                    format!("row_count min {min} is greater than max {max}"),
                    hint,
                );
                None
            }
            (min, max) => Some(settings::Expect::RowCount { min, max }),
        }
    }

    pub(super) fn write(
        &mut self,
        w: &raw::Write,
        destination: Option<&TableRef>,
    ) -> Option<settings::WriteMode> {
        const FIELD: &str = "write.staging_dataset";
        match (w.mode, &w.staging_dataset) {
            (raw::WriteMode::Direct, None) => Some(settings::WriteMode::Direct),
            (raw::WriteMode::Direct, Some(_)) => {
                self.issue(
                    FIELD,
                    "staging_dataset is set but write.mode is `direct`",
                    "set \"mode\": \"staged\" to write through a staging table, or remove staging_dataset",
                );
                None
            }
            (raw::WriteMode::Staged, None) => {
                self.issue(
                    FIELD,
                    "write.mode `staged` needs a staging dataset",
                    "name a dataset in the destination's project (and location) for the staging table, e.g. \"staging_dataset\": \"scratch\"",
                );
                None
            }
            (raw::WriteMode::Staged, Some(ds)) => {
                if let Err(p) = ident::dataset_id(ds) {
                    self.issue(
                        FIELD,
                        p.message,
                        "a dataset name: letters, digits and `_` (the project is the destination's)",
                    );
                    return None;
                }
                let dest = destination?;
                Some(settings::WriteMode::Staged {
                    staging: staging_table(dest, ds),
                })
            }
        }
    }
}

/// The staging table of `destination` in dataset `ds`: deterministic, so
/// a rerun finds what an earlier run staged.
pub fn staging_table(destination: &TableRef, ds: &str) -> TableRef {
    TableRef {
        project: destination.project.clone(),
        dataset: ds.to_string(),
        table: format!("{}{STAGING_SUFFIX}", destination.table),
    }
}

fn check_name_ok(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && s.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every `{identifier}` in the text, as written.
fn placeholders(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = q;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        if let Some(close) = after.find('}') {
            let name = &after[..close];
            if !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
            {
                out.push(format!("{{{name}}}"));
            }
        }
        rest = after;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_identifiers_in_braces() {
        assert_eq!(
            placeholders("SELECT '{\"a\":1}' FROM {target} JOIN {other} {1}"),
            vec!["{target}".to_string(), "{other}".to_string()]
        );
        assert!(check_name_ok("no_dup_keys"));
        assert!(!check_name_ok("1abc"));
        assert!(!check_name_ok("a-b"));
    }
}
