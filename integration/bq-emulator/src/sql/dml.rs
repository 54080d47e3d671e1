//! DML `INSERT INTO table [(columns)] VALUES (...), ... | SELECT ...`.
//!
//! The statement becomes the SELECT that produces its rows (each VALUES row a `SELECT`, joined with
//! `UNION ALL`), which runs like any query; the job then matches the result to the table's columns
//! ([`bind`]) and appends it. UPDATE, DELETE and MERGE stay unsupported.

use datafusion::arrow::array::{Array, new_null_array};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::sql::sqlparser::ast::{ObjectNamePart, SetExpr, Statement, TableObject};
use datafusion::sql::sqlparser::dialect::BigQueryDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::{SqlError, invalid_query};
use crate::data::{BqType, RecordBatch, SchemaRef};

/// An INSERT statement, as the query that yields its rows.
#[derive(Clone, Debug)]
pub struct Insert {
    /// (project, dataset, table) written to (no decorator).
    pub table: (String, String, String),
    /// The column list as written; empty means every column of the table, in order.
    pub columns: Vec<String>,
    /// GoogleSQL SELECT producing the rows, positionally matching `columns`.
    pub select_sql: String,
}

fn unsupported(what: &str) -> SqlError {
    invalid_query(format!(
        "{what} is not supported by the bq-emulator (see integration/bq-emulator/SQL.md)"
    ))
}

/// `Some` when `sql` is one INSERT statement; `None` for anything else (including text that does not
/// parse, whose error the query path reports).
pub fn parse_insert(
    sql: &str,
    default_project: &str,
    default_dataset: Option<(&str, &str)>,
) -> Result<Option<Insert>, SqlError> {
    let Ok(mut statements) = Parser::parse_sql(&BigQueryDialect {}, sql) else {
        return Ok(None);
    };
    if statements.len() != 1 {
        return Ok(None);
    }
    let Statement::Insert(insert) = statements.remove(0) else {
        return Ok(None);
    };
    let TableObject::TableName(name) = &insert.table else {
        return Err(unsupported("INSERT INTO a table function"));
    };
    if !insert.assignments.is_empty() || insert.returning.is_some() || insert.on.is_some() {
        return Err(unsupported("INSERT ... SET / RETURNING / ON CONFLICT"));
    }
    let mut parts = Vec::new();
    for p in &name.0 {
        match p {
            ObjectNamePart::Identifier(id) => parts.extend(id.value.split('.').map(str::to_string)),
            ObjectNamePart::Function(_) => return Err(unsupported("INSERT INTO a table function")),
        }
    }
    let table = resolve(&parts, default_project, default_dataset)?;
    let columns = insert
        .columns
        .iter()
        .map(|c| c.to_string().trim_matches('`').to_string())
        .collect();
    let source = insert
        .source
        .ok_or_else(|| invalid_query("Syntax error: Expected VALUES or a query after INSERT"))?;
    let plain = source.with.is_none() && source.order_by.is_none() && source.limit_clause.is_none();
    let select_sql = match source.body.as_ref() {
        SetExpr::Values(values) if plain => values
            .rows
            .iter()
            .map(|row| {
                let items: Vec<String> = row
                    .content
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("{e} AS `_dml_{i}`"))
                    .collect();
                format!("SELECT {}", items.join(", "))
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL "),
        _ => source.to_string(),
    };
    Ok(Some(Insert {
        table,
        columns,
        select_sql,
    }))
}

fn resolve(
    parts: &[String],
    default_project: &str,
    default_dataset: Option<(&str, &str)>,
) -> Result<(String, String, String), SqlError> {
    let shown = parts.join(".");
    let project = default_dataset.map_or(default_project, |(p, _)| p);
    let resolved = match parts {
        [t] => match default_dataset {
            Some((p, d)) => (p.to_string(), d.to_string(), t.clone()),
            None => {
                return Err(invalid_query(format!(
                    "Table \"{shown}\" must be qualified with a dataset (e.g. dataset.table)."
                )));
            }
        },
        [d, t] => (project.to_string(), d.clone(), t.clone()),
        [p, d, t] => (p.clone(), d.clone(), t.clone()),
        _ => return Err(invalid_query(format!("Invalid table name: {shown}"))),
    };
    if resolved.2.contains('$') || parts.iter().any(String::is_empty) {
        return Err(invalid_query(format!("Invalid table name: {shown}")));
    }
    Ok(resolved)
}

/// Renames and checks the SELECT's result against the table: the columns named (or all of the
/// table's), with BigQuery's messages for an unknown column, a wrong count or a type that cannot be
/// inserted. The table's other columns are left to the writer (NULL, or an error if REQUIRED).
pub fn bind(
    insert: &Insert,
    table_schema: &SchemaRef,
    result_schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
    let (_, dataset, table) = &insert.table;
    let targets: Vec<&Field> = if insert.columns.is_empty() {
        table_schema.fields().iter().map(|f| f.as_ref()).collect()
    } else {
        let mut found = Vec::new();
        for c in &insert.columns {
            let f = table_schema
                .fields()
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(c))
                .ok_or_else(|| {
                    invalid_query(format!(
                        "Column {c} is not present in table {dataset}.{table}"
                    ))
                })?;
            if found.iter().any(|g: &&Field| g.name() == f.name()) {
                return Err(invalid_query(format!(
                    "INSERT has columns with duplicate name: {c}"
                )));
            }
            found.push(f.as_ref());
        }
        found
    };
    let given = result_schema.fields().len();
    if given != targets.len() {
        return Err(invalid_query(format!(
            "Inserted row has wrong column count; Has {given}, {} expected",
            targets.len()
        )));
    }
    let mut all_null = Vec::with_capacity(given);
    for (i, (src, dst)) in result_schema.fields().iter().zip(&targets).enumerate() {
        let nulls = batches
            .iter()
            .all(|b| b.column(i).null_count() == b.num_rows());
        all_null.push(nulls);
        let (Some(st), Some(tt)) = (BqType::of_field(src), BqType::of_field(dst)) else {
            continue;
        };
        let floaty = matches!(tt, BqType::Float64 | BqType::Numeric | BqType::BigNumeric);
        let ok = st == tt
            || nulls
            || (floaty && matches!(st, BqType::Int64 | BqType::Float64 | BqType::Numeric));
        if !ok {
            return Err(invalid_query(format!(
                "Value has type {} which cannot be inserted into column {}, which has type {}",
                st.sql_name(),
                dst.name(),
                tt.sql_name()
            )));
        }
    }
    // A column of NULLs takes the table's type, so the writer sees no type change.
    let fields: Vec<Field> = result_schema
        .fields()
        .iter()
        .zip(&targets)
        .zip(&all_null)
        .map(|((src, dst), &nulls)| match nulls {
            true => Field::new(dst.name(), dst.data_type().clone(), true)
                .with_metadata(dst.metadata().clone()),
            false => Field::new(dst.name(), src.data_type().clone(), true)
                .with_metadata(src.metadata().clone()),
        })
        .collect();
    let schema = std::sync::Arc::new(Schema::new(fields));
    let renamed = batches
        .iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .zip(schema.fields())
                .zip(&all_null)
                .map(|((c, f), &nulls)| match nulls {
                    true => new_null_array(f.data_type(), b.num_rows()),
                    false => c.clone(),
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns).map_err(|e| invalid_query(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((schema, renamed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_rows_become_a_union_of_selects_and_the_table_resolves_like_a_query_name() {
        let i = parse_insert(
            "INSERT INTO ops.log (partition_id, n) VALUES (@p, 1), ('b', NULL)",
            "proj",
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(i.table, ("proj".into(), "ops".into(), "log".into()));
        assert_eq!(i.columns, ["partition_id", "n"]);
        assert_eq!(
            i.select_sql,
            "SELECT @p AS `_dml_0`, 1 AS `_dml_1` UNION ALL SELECT 'b' AS `_dml_0`, NULL AS `_dml_1`"
        );
        let i = parse_insert("INSERT `p.d.t` SELECT 1", "proj", None)
            .unwrap()
            .unwrap();
        assert_eq!(i.table, ("p".into(), "d".into(), "t".into()));
        assert!(i.columns.is_empty());
        assert_eq!(i.select_sql, "SELECT 1");
    }

    #[test]
    fn other_statements_are_not_inserts_and_bad_names_are_refused() {
        assert!(parse_insert("SELECT 1", "p", None).unwrap().is_none());
        assert!(parse_insert("not sql at all", "p", None).unwrap().is_none());
        let e = parse_insert("INSERT INTO log VALUES (1)", "p", None).unwrap_err();
        assert!(
            e.message.contains("must be qualified with a dataset"),
            "{}",
            e.message
        );
        let e = parse_insert("INSERT INTO d.t$20240101 VALUES (1)", "p", None);
        assert!(e.is_err() || e.unwrap().is_none());
    }
}
