//! Verification checks on one partition (`verify` in the descriptor).
//!
//! A check's query gets the partition parameters, with `{target}` replaced
//! by the backticked path of the checked table (validated when the
//! descriptor was read: the only identifier spliced into SQL). What it must
//! return:
//! - `zero_rows`: no rows; observed is the number of rows;
//! - `row_count`: one scalar (first column of the only row) in [min, max];
//! - `within_percent_of_current`: one number within N % of the same query
//!   over the destination's partition before the write (passes when that is
//!   0 or NULL: no current data);
//! - `equals_query`: one scalar equal to the scalar of the equals query
//!   (numerically when both are numbers).
//!
//! A query that BigQuery refuses fails its check (observed `error: …`); a
//! transient or permission error stops the run like any other API failure.

use std::collections::HashMap;

use crate::bq::{BigQuery, BqError, QueryResult};
use crate::engine::checkpoint::table_path;
use crate::engine::failure::RunFailure;
use crate::output::events::CheckResult;
use crate::planning::partition::Partition;
use crate::planning::strategy::partition_parameters;
use crate::task::descriptor::TARGET;
use crate::task::settings::{Check, Expect, TableRef};

/// The scalars of the `within_percent_of_current` checks over the
/// destination as it was before the write, by check name (`None`: NULL).
pub type Current = HashMap<String, Option<String>>;

/// The check's SQL with `{target}` replaced by `table`'s backticked path.
pub fn check_sql(check: &Check, table: &TableRef) -> String {
    check.query.replace(TARGET, &table_path(table))
}

/// What a query gave: its rows, or BigQuery's refusal (as text).
type Answer = Result<QueryResult, String>;

async fn ask(bq: &BigQuery, sql: &str, p: &Partition) -> Result<Answer, RunFailure> {
    match bq.query(sql, &partition_parameters(p)).await {
        Ok(r) => Ok(Ok(r)),
        Err(e) if e.is_transient() || e.is_permission() => Err(e.into()),
        Err(e) => Ok(Err(describe(&e))),
    }
}

fn describe(e: &BqError) -> String {
    format!("error: {}: {e}", e.reason())
}

/// The `within_percent_of_current` checks' values over `destination` now.
pub async fn current_values(
    bq: &BigQuery,
    checks: &[Check],
    destination: &TableRef,
    p: &Partition,
) -> Result<Current, RunFailure> {
    let mut out = Current::new();
    for c in checks {
        if let Expect::WithinPercentOfCurrent(_) = c.expect {
            let value = match ask(bq, &check_sql(c, destination), p).await? {
                Ok(r) => scalar(&r).ok().flatten(),
                Err(_) => None,
            };
            out.insert(c.name.clone(), value);
        }
    }
    Ok(out)
}

/// Every check against `target` for partition `p`. `current`: the values
/// from [`current_values`]; `None` when they are unknown (a direct write
/// adopted after a crash), which a `within_percent_of_current` check
/// reports and passes.
pub async fn run_checks(
    bq: &BigQuery,
    checks: &[Check],
    target: &TableRef,
    current: Option<&Current>,
    p: &Partition,
) -> Result<Vec<CheckResult>, RunFailure> {
    let mut out = Vec::with_capacity(checks.len());
    for c in checks {
        let answer = ask(bq, &check_sql(c, target), p).await?;
        let reference = match &c.expect {
            Expect::EqualsQuery(q) => Reference::Query(ask(bq, q, p).await?),
            Expect::WithinPercentOfCurrent(_) => match current {
                Some(cur) => Reference::Current(Some(cur.get(&c.name).cloned().flatten())),
                None => Reference::Current(None),
            },
            _ => Reference::None,
        };
        out.push(evaluate(c, &answer, &reference));
    }
    Ok(out)
}

/// What a check compares with besides its own answer.
#[derive(Debug)]
pub enum Reference {
    None,
    /// The equals query's answer.
    Query(Answer),
    /// The current value: `None` unknown, `Some(None)` NULL.
    Current(Option<Option<String>>),
}

/// The first column of the only row (`None`: NULL), or why there is none.
fn scalar(r: &QueryResult) -> Result<Option<String>, String> {
    match r.rows.as_slice() {
        [row] if !row.is_empty() => Ok(row[0].clone()),
        [_] => Err("a row without columns".into()),
        rows => Err(format!("{} rows (expected one scalar)", rows.len())),
    }
}

fn show(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "NULL".into())
}

fn number(v: &Option<String>) -> Option<f64> {
    v.as_deref().and_then(|s| s.parse::<f64>().ok())
}

/// Judge one check from its answer (pure).
pub fn evaluate(c: &Check, answer: &Answer, reference: &Reference) -> CheckResult {
    let result = |passed: bool, observed: String, expected: String| CheckResult {
        name: c.name.clone(),
        passed,
        observed,
        expected,
    };
    let expected = expected_text(&c.expect, reference);
    let rows = match answer {
        Ok(r) => r,
        Err(e) => return result(false, e.clone(), expected),
    };
    if let Expect::ZeroRows = c.expect {
        let n = rows.rows.len();
        return result(n == 0, format!("{n} rows"), expected);
    }
    let value = match scalar(rows) {
        Ok(v) => v,
        Err(why) => return result(false, why, expected),
    };
    let passed = match (&c.expect, reference) {
        (Expect::RowCount { min, max }, _) => number(&value).is_some_and(|n| {
            min.is_none_or(|m| n >= m as f64) && max.is_none_or(|m| n <= m as f64)
        }),
        (Expect::WithinPercentOfCurrent(pct), Reference::Current(cur)) => {
            match cur.as_ref().map(number) {
                // Unknown, NULL or 0: nothing to compare with.
                None | Some(None) => true,
                Some(Some(0.0)) => true,
                Some(Some(cur)) => number(&value)
                    .is_some_and(|n| (n - cur).abs() <= pct / 100.0 * cur.abs() + 1e-9),
            }
        }
        (Expect::EqualsQuery(_), Reference::Query(Ok(other))) => match scalar(other) {
            Ok(other) => same(&value, &other),
            Err(_) => false,
        },
        _ => false,
    };
    result(passed, show(&value), expected)
}

fn same(a: &Option<String>, b: &Option<String>) -> bool {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn expected_text(e: &Expect, reference: &Reference) -> String {
    match (e, reference) {
        (Expect::ZeroRows, _) => "0 rows".into(),
        (Expect::RowCount { min, max }, _) => match (min, max) {
            (Some(a), Some(b)) => format!("between {a} and {b}"),
            (Some(a), None) => format!("at least {a}"),
            (None, Some(b)) => format!("at most {b}"),
            (None, None) => "any".into(),
        },
        (Expect::WithinPercentOfCurrent(p), Reference::Current(cur)) => match cur {
            None => format!("within {p}% of current (unknown: the write was adopted)"),
            Some(v) if number(v).is_none_or(|n| n == 0.0) => {
                format!("within {p}% of current (no current data)")
            }
            Some(v) => format!("within {p}% of {} (current)", show(v)),
        },
        (Expect::EqualsQuery(_), Reference::Query(Ok(r))) => match scalar(r) {
            Ok(v) => format!("= {} (equals_query)", show(&v)),
            Err(why) => format!("equals_query gave {why}"),
        },
        (Expect::EqualsQuery(_), Reference::Query(Err(e))) => format!("equals_query {e}"),
        _ => "?".into(),
    }
}

/// The first failed check as `name: observed …, expected …`, for the
/// audit row's message and `partition_failed`.
pub fn failure_message(results: &[CheckResult]) -> Option<String> {
    let failed: Vec<&CheckResult> = results.iter().filter(|r| !r.passed).collect();
    let first = failed.first()?;
    let more = match failed.len() {
        1 => String::new(),
        n => format!(
            " (and {} more failed check{})",
            n - 1,
            if n > 2 { "s" } else { "" }
        ),
    };
    Some(format!(
        "check `{}` failed: observed {}, expected {}{more}",
        first.name, first.observed, first.expected
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expect: Expect) -> Check {
        Check {
            name: "c".into(),
            query: "SELECT COUNT(*) FROM {target} WHERE d = @partition_date".into(),
            expect,
        }
    }

    fn one(v: &str) -> Answer {
        Ok(QueryResult {
            fields: vec!["n".into()],
            rows: vec![vec![Some(v.into())]],
        })
    }

    fn rows(n: usize) -> Answer {
        Ok(QueryResult {
            fields: vec!["k".into()],
            rows: vec![vec![Some("x".into())]; n],
        })
    }

    #[test]
    fn zero_rows_counts_the_rows() {
        let c = check(Expect::ZeroRows);
        let ok = evaluate(&c, &rows(0), &Reference::None);
        assert!(ok.passed);
        let bad = evaluate(&c, &rows(3), &Reference::None);
        assert!(!bad.passed);
        assert_eq!(
            (bad.observed.as_str(), bad.expected.as_str()),
            ("3 rows", "0 rows")
        );
        assert_eq!(
            failure_message(&[ok, bad]).unwrap(),
            "check `c` failed: observed 3 rows, expected 0 rows"
        );
    }

    #[test]
    fn row_count_takes_the_scalar_and_open_bounds() {
        let c = check(Expect::RowCount {
            min: Some(2),
            max: Some(4),
        });
        assert!(evaluate(&c, &one("2"), &Reference::None).passed);
        assert!(evaluate(&c, &one("4"), &Reference::None).passed);
        let r = evaluate(&c, &one("5"), &Reference::None);
        assert!(!r.passed);
        assert_eq!(r.expected, "between 2 and 4");
        assert!(
            !evaluate(&c, &rows(2), &Reference::None).passed,
            "two rows are no scalar"
        );
        let open = check(Expect::RowCount {
            min: None,
            max: Some(1),
        });
        assert!(evaluate(&open, &one("0"), &Reference::None).passed);
        let err = evaluate(&c, &Err("error: invalidQuery: x".into()), &Reference::None);
        assert!(!err.passed);
        assert_eq!(err.observed, "error: invalidQuery: x");
    }

    #[test]
    fn within_percent_of_current_passes_without_current_data() {
        let c = check(Expect::WithinPercentOfCurrent(10.0));
        let cur = |v: Option<&str>| Reference::Current(Some(v.map(String::from)));
        assert!(evaluate(&c, &one("105"), &cur(Some("100"))).passed);
        assert!(evaluate(&c, &one("110"), &cur(Some("100"))).passed);
        let r = evaluate(&c, &one("120"), &cur(Some("100")));
        assert!(!r.passed);
        assert_eq!(r.expected, "within 10% of 100 (current)");
        let first = evaluate(&c, &one("120"), &cur(Some("0")));
        assert!(first.passed);
        assert_eq!(first.expected, "within 10% of current (no current data)");
        assert!(evaluate(&c, &one("1"), &cur(None)).passed);
        assert!(evaluate(&c, &one("1"), &Reference::Current(None)).passed);
    }

    #[test]
    fn equals_query_compares_scalars_numerically() {
        let c = check(Expect::EqualsQuery("SELECT 1".into()));
        assert!(evaluate(&c, &one("42"), &Reference::Query(one("42.0"))).passed);
        let r = evaluate(&c, &one("84"), &Reference::Query(one("42")));
        assert!(!r.passed);
        assert_eq!(
            (r.observed.as_str(), r.expected.as_str()),
            ("84", "= 42 (equals_query)")
        );
        assert!(!evaluate(&c, &one("1"), &Reference::Query(Err("error: x".into()))).passed);
    }

    #[test]
    fn the_target_is_the_only_splice() {
        let t = TableRef {
            project: "p".into(),
            dataset: "d".into(),
            table: "t__bqb_stage".into(),
        };
        assert_eq!(
            check_sql(&check(Expect::ZeroRows), &t),
            "SELECT COUNT(*) FROM `p.d.t__bqb_stage` WHERE d = @partition_date"
        );
    }
}
