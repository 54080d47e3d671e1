//! GoogleSQL engine on DataFusion.
//!
//! A query is parsed with sqlparser's BigQuery dialect, rewritten construct by construct into SQL that
//! DataFusion plans with GoogleSQL semantics (see `rewrite`, `functions`), type-checked with GoogleSQL's
//! rules (`check`) and executed in a fresh `SessionContext` holding in-memory copies of only the tables the
//! query references (catalog = project, schema = dataset). The supported subset is documented in
//! `integration/bq-emulator/SQL.md`; everything else fails with an `invalidQuery` error.

mod check;
mod dml;
mod functions;
mod prune;
mod rewrite;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::arrow::error::ArrowError;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::{DataFusionError, ParamValues, ScalarValue, SchemaError};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::dialect::BigQueryDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use serde_json::Value as Json;

use crate::data::{
    BqType, META_TYPE, RecordBatch, Schema, SchemaRef, canonical_array, logical_bytes, parse_date,
    parse_datetime, parse_time, parse_timestamp,
};
use functions::{Kind, MARK_CLOSE, MARK_OPEN};

pub use dml::{Insert, bind, parse_insert};

/// Gives the engine a consistent snapshot of the tables a query references.
pub trait TableSource: Send + Sync {
    /// `None` if the table does not exist. `project` is already resolved (default project applied).
    fn table(
        &self,
        project: &str,
        dataset: &str,
        table: &str,
    ) -> Option<(SchemaRef, Vec<RecordBatch>)>;

    /// The GoogleSQL query of a view, `None` if the name is not a view. `table` may carry a decorator.
    fn view(&self, _project: &str, _dataset: &str, _table: &str) -> Option<String> {
        None
    }

    /// For a table partitioned on a column (and not decorated): the column
    /// and each partition's batches, so that filters on it prune partitions
    /// from `totalBytesProcessed`.
    fn partitioned(
        &self,
        _project: &str,
        _dataset: &str,
        _table: &str,
    ) -> Option<(String, Vec<Vec<RecordBatch>>)> {
        None
    }
}

/// How deeply views may reference views; beyond it a cycle (made by dropping and recreating views) is
/// assumed, so a query fails instead of recursing forever.
const MAX_VIEW_DEPTH: usize = 16;

/// One query to run.
pub struct QueryRequest<'a> {
    /// GoogleSQL text.
    pub sql: &'a str,
    /// The job's project.
    pub default_project: &'a str,
    /// (project, dataset) from defaultDataset.
    pub default_dataset: Option<(&'a str, &'a str)>,
    /// REST `queryParameters` array, as sent by clients (named mode).
    pub parameters: &'a [serde_json::Value],
}

/// A finished query's results.
#[derive(Debug)]
pub struct QueryOutput {
    /// Result schema with GoogleSQL types (COUNT -> Int64, DATE() -> Date32, ...); every field nullable.
    pub schema: SchemaRef,
    /// Result rows, each batch carrying `schema`.
    pub batches: Vec<RecordBatch>,
    /// Logical bytes (see [`crate::data::logical_bytes`]) of every referenced table, whole tables.
    pub total_bytes_processed: u64,
    /// Always "SELECT" (other statements are rejected).
    pub statement_type: String,
    /// (project, dataset, table) of every table read, in order of first reference.
    pub referenced_tables: Vec<(String, String, String)>,
}

/// A query failure.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    /// "invalidQuery" | "notFound" | "invalid".
    pub reason: &'static str,
    /// BigQuery-style message.
    pub message: String,
}

fn invalid_query(message: impl Into<String>) -> SqlError {
    SqlError {
        reason: "invalidQuery",
        message: message.into(),
    }
}

/// The (project, dataset, table) names a query reads, without running it (views not expanded);
/// empty when the text does not parse, whose error the job reports when it runs.
pub fn referenced_tables(req: &QueryRequest<'_>) -> Vec<(String, String, String)> {
    if let Ok(Some(insert)) = parse_insert(req.sql, req.default_project, req.default_dataset) {
        let select = QueryRequest {
            sql: &insert.select_sql,
            ..*req
        };
        let mut tables = vec![insert.table];
        tables.extend(referenced_tables(&select));
        return tables;
    }
    let Ok(mut statements) = Parser::parse_sql(&BigQueryDialect {}, req.sql) else {
        return Vec::new();
    };
    if statements.len() != 1 {
        return Vec::new();
    }
    rewrite::Rewriter::new(req.default_project, req.default_dataset)
        .rewrite(statements.remove(0))
        .map(|r| r.tables)
        .unwrap_or_default()
}

/// Runs one GoogleSQL query against a snapshot of tables.
pub async fn execute(
    req: QueryRequest<'_>,
    tables: &dyn TableSource,
) -> Result<QueryOutput, SqlError> {
    run(req, tables, 0, true).await
}

/// Plans a query without running it (views it reads are still evaluated) and returns its result schema
/// with no rows: what BigQuery does when a view is created.
pub async fn describe(
    req: QueryRequest<'_>,
    tables: &dyn TableSource,
) -> Result<QueryOutput, SqlError> {
    run(req, tables, 0, false).await
}

type RunFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<QueryOutput, SqlError>> + Send + 'a>>;

/// Boxed because a view's query is run by the query that reads it.
fn run<'a>(
    req: QueryRequest<'a>,
    tables: &'a dyn TableSource,
    depth: usize,
    collect: bool,
) -> RunFuture<'a> {
    Box::pin(run_inner(req, tables, depth, collect))
}

/// Evaluates the view `p.d.t` (its own project as default, no default dataset, no parameters: a view's
/// names must be dataset-qualified and it cannot use parameters).
async fn run_view(
    (p, d, t): (&str, &str, &str),
    sql: &str,
    tables: &dyn TableSource,
    depth: usize,
) -> Result<QueryOutput, SqlError> {
    if t.contains('$') {
        return Err(invalid_query(format!(
            "Partition decorators are not supported on views: {p}:{d}.{t}"
        )));
    }
    if depth >= MAX_VIEW_DEPTH {
        return Err(invalid_query(format!(
            "View {p}:{d}.{t} is nested more than {MAX_VIEW_DEPTH} views deep (a view that reads itself?)"
        )));
    }
    let req = QueryRequest {
        sql,
        default_project: p,
        default_dataset: None,
        parameters: &[],
    };
    run(req, tables, depth + 1, true)
        .await
        .map_err(|e| SqlError {
            reason: e.reason,
            message: format!("{} (in view {p}:{d}.{t})", e.message),
        })
}

async fn run_inner(
    req: QueryRequest<'_>,
    tables: &dyn TableSource,
    depth: usize,
    collect: bool,
) -> Result<QueryOutput, SqlError> {
    let params = parse_parameters(req.parameters);
    let mut statements = Parser::parse_sql(&BigQueryDialect {}, req.sql).map_err(syntax_error)?;
    let statement = match statements.len() {
        0 => return Err(invalid_query("Syntax error: Unexpected end of script")),
        1 => statements.remove(0),
        _ => {
            return Err(invalid_query(
                "Multi-statement queries (scripts) are not supported by the bq-emulator (see \
                 integration/bq-emulator/SQL.md)",
            ));
        }
    };
    let rewritten =
        rewrite::Rewriter::new(req.default_project, req.default_dataset).rewrite(statement)?;

    let mut values = HashMap::new();
    for name in &rewritten.params {
        let key = name.to_ascii_lowercase();
        match params.get(&key) {
            Some(Ok(v)) => {
                values.insert(key, v.clone());
            }
            Some(Err(e)) => return Err(e.clone()),
            None => return Err(invalid_query(format!("Query parameter '{name}' not found"))),
        }
    }

    let now = chrono::Utc::now().timestamp_micros();
    let mut config = SessionConfig::new()
        .with_target_partitions(1)
        .with_information_schema(false);
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = SessionContext::new_with_config(config);
    for kind in Kind::all(now) {
        ctx.register_udf(functions::udf(kind));
    }
    let mut total_bytes_processed = 0u64;
    let mut prunable = HashMap::new();
    let mut columns = Vec::new();
    let mut referenced_tables: Vec<(String, String, String)> = Vec::new();
    for (p, d, t) in &rewritten.tables {
        if let Some(view_sql) = tables.view(p, d, t) {
            // A view is evaluated against the current tables and read like a table holding its
            // result; what it reads is what the query reads (bytes, referenced tables).
            let out = run_view((p, d, t), &view_sql, tables, depth).await?;
            total_bytes_processed += out.total_bytes_processed;
            for r in out.referenced_tables {
                if !referenced_tables.contains(&r) {
                    referenced_tables.push(r);
                }
            }
            columns.extend(out.schema.fields().iter().map(|f| f.name().clone()));
            register_table(&ctx, (p, d, t), out.schema, out.batches)?;
            continue;
        }
        let key = (p.clone(), d.clone(), t.clone());
        if !referenced_tables.contains(&key) {
            referenced_tables.push(key);
        }
        let Some((schema, batches)) = tables.table(p, d, t) else {
            return Err(SqlError {
                reason: "notFound",
                message: format!("Not found: Table {p}:{d}.{t} was not found in location US"),
            });
        };
        match tables.partitioned(p, d, t) {
            Some((column, partitions)) => {
                let part = prune::Partitioned {
                    schema: schema.clone(),
                    column,
                    partitions,
                };
                prunable.insert((p.clone(), d.clone(), t.clone()), part);
            }
            None => total_bytes_processed += batches.iter().map(logical_bytes).sum::<u64>(),
        }
        columns.extend(schema.fields().iter().map(|f| f.name().clone()));
        register_table(&ctx, (p, d, t), schema, batches)?;
    }

    let mut statement = rewritten.statement;
    rewrite::fix_identifier_case(&mut statement, &columns);
    let state = ctx.state();
    let plan = state
        .statement_to_plan(DfStatement::Statement(Box::new(statement)))
        .await
        .map_err(map_df_error)?;
    let plan = if values.is_empty() {
        plan
    } else {
        let map = values.into_iter().map(|(k, v)| (k, v.into())).collect();
        plan.with_param_values(ParamValues::Map(map))
            .map_err(map_df_error)?
    };
    let plan = check::check_plan(plan).map_err(map_df_error)?;
    if !prunable.is_empty() {
        // Filters pushed down to the scans (through joins, subqueries) prune best.
        let optimized = state.optimize(&plan).unwrap_or_else(|_| plan.clone());
        total_bytes_processed += prune::bytes_read(&optimized, &prunable)
            .values()
            .sum::<u64>();
    }
    let df = ctx.execute_logical_plan(plan).await.map_err(map_df_error)?;
    // The physical plan's schema is the analysed one (e.g. UNION coerced to FLOAT64); the DataFrame's
    // logical schema predates type coercion.
    let physical = df.create_physical_plan().await.map_err(map_df_error)?;
    let raw_schema: Schema = physical.schema().as_ref().clone();
    let batches = if collect {
        datafusion::physical_plan::collect(physical, ctx.task_ctx())
            .await
            .map_err(map_df_error)?
    } else {
        Vec::new()
    };
    let schema = result_schema(&raw_schema)?;
    let mut seen = std::collections::HashSet::new();
    let duplicates: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| !seen.insert(n.to_ascii_lowercase()))
        .collect();
    if !duplicates.is_empty() {
        return Err(invalid_query(format!(
            "Duplicate column names in the result are not supported. Found duplicate(s): {}",
            duplicates.join(", ")
        )));
    }
    let batches = batches
        .iter()
        .map(|b| normalize_batch(b, &schema))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(QueryOutput {
        schema,
        batches,
        total_bytes_processed,
        statement_type: "SELECT".to_string(),
        referenced_tables,
    })
}

fn internal(e: impl std::fmt::Display) -> SqlError {
    SqlError {
        reason: "invalid",
        message: format!("internal emulator error: {e}"),
    }
}

fn register_table(
    ctx: &SessionContext,
    (project, dataset, table): (&str, &str, &str),
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(), SqlError> {
    let catalog = match ctx.catalog(project) {
        Some(c) => c,
        None => {
            let c: Arc<dyn CatalogProvider> = Arc::new(MemoryCatalogProvider::new());
            ctx.register_catalog(project, c.clone());
            c
        }
    };
    let db = match catalog.schema(dataset) {
        Some(s) => s,
        None => {
            let s: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
            catalog
                .register_schema(dataset, s.clone())
                .map_err(internal)?;
            s
        }
    };
    // Storage batches may carry other metadata than the table schema; MemTable wants them identical.
    let batches = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(internal)?;
    let mem = MemTable::try_new(schema, vec![batches]).map_err(internal)?;
    db.register_table(table.to_string(), Arc::new(mem))
        .map_err(internal)?;
    Ok(())
}

/// The result schema: GoogleSQL storage types, nullable, BigQuery type metadata kept when still true.
fn result_schema(raw: &Schema) -> Result<SchemaRef, SqlError> {
    let fields = raw
        .fields()
        .iter()
        .map(|f| {
            let t = match f.data_type() {
                DataType::Null => BqType::Int64,
                dt => BqType::from_arrow(dt).ok_or_else(|| {
                    invalid_query(format!(
                        "Result column {} has a type the bq-emulator cannot return ({dt})",
                        f.name()
                    ))
                })?,
            };
            let mut field = Field::new(f.name(), t.arrow_type(), true);
            if let Some(declared) = f
                .metadata()
                .get(META_TYPE)
                .and_then(|n| BqType::from_name(n))
                && declared.arrow_type() == t.arrow_type()
            {
                field = field.with_metadata(HashMap::from([(
                    META_TYPE.to_string(),
                    declared.legacy_name().to_string(),
                )]));
            }
            Ok(field)
        })
        .collect::<Result<Vec<_>, SqlError>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

fn normalize_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, SqlError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            let c = canonical_array(c).map_err(internal)?;
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                Err(internal(format!(
                    "result column {} is {} but the schema says {}",
                    f.name(),
                    c.data_type(),
                    f.data_type()
                )))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let opts = datafusion::arrow::record_batch::RecordBatchOptions::new()
        .with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &opts).map_err(internal)
}

fn syntax_error(e: ParserError) -> SqlError {
    let raw = match e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
        ParserError::RecursionLimitExceeded => "query is nested too deeply".to_string(),
    };
    // sqlparser: "Expected: X, found: Y at Line: 1, Column: 8" -> BigQuery-like "... at [1:8]".
    let mut msg = raw.replace("Expected: ", "Expected ");
    if let Some(i) = msg.find(" at Line: ") {
        let pos = msg[i + " at Line: ".len()..].replace(", Column: ", ":");
        msg = format!("{} at [{pos}]", &msg[..i]);
    }
    invalid_query(format!("Syntax error: {msg}"))
}

fn strip_df_prefixes(mut s: &str) -> &str {
    for prefix in [
        "Error during planning: ",
        "Execution error: ",
        "This feature is not implemented: ",
        "Schema error: ",
        "Arrow error: ",
        "Invalid argument error: ",
        "Cast error: ",
        "Optimizer rule ",
    ] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest;
        }
    }
    s
}

fn map_df_error(e: DataFusionError) -> SqlError {
    let text = e.to_string();
    if let Some(start) = text.find(MARK_OPEN) {
        let inner = &text[start + MARK_OPEN.len()..];
        let end = inner.find(MARK_CLOSE).unwrap_or(inner.len());
        return invalid_query(inner[..end].replace("\\\"", "\""));
    }
    if let Some(m) = signature_mismatch(&text) {
        return invalid_query(m);
    }
    match e.find_root() {
        DataFusionError::SchemaError(err, _) => match err.as_ref() {
            SchemaError::FieldNotFound { field, .. } => match &field.relation {
                Some(rel) => invalid_query(format!(
                    "Name {} not found inside {}",
                    field.name,
                    rel.table()
                )),
                None => invalid_query(format!("Unrecognized name: {}", field.name)),
            },
            SchemaError::AmbiguousReference { field } => {
                invalid_query(format!("Column name {} is ambiguous", field.name))
            }
            other => invalid_query(other.to_string()),
        },
        DataFusionError::ArrowError(err, _) => match err.as_ref() {
            ArrowError::DivideByZero => invalid_query("division by zero"),
            ArrowError::ArithmeticOverflow(m) => invalid_query(format!("Arithmetic overflow: {m}")),
            other => invalid_query(strip_df_prefixes(&other.to_string()).to_string()),
        },
        DataFusionError::NotImplemented(m) => invalid_query(format!(
            "Query shape not supported by the bq-emulator ({m}); hint: correlated subqueries work only with plain \
             column equality predicates (see integration/bq-emulator/SQL.md)"
        )),
        root => invalid_query(strip_df_prefixes(&root.to_string()).to_string()),
    }
}

/// GoogleSQL wording for DataFusion's planning-time signature errors.
fn signature_mismatch(text: &str) -> Option<String> {
    let type_list = |list: &str| -> String {
        list.split(',')
            .map(|t| {
                let t = t.trim();
                t.parse::<DataType>()
                    .map_or_else(|_| t.to_string(), |dt| functions::type_name(&dt))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(i) = text.find("No function matches the given name and argument types '") {
        let rest = &text[i + "No function matches the given name and argument types '".len()..];
        let call = &rest[..rest.find('\'')?];
        let (name, args) = call.split_once('(')?;
        let args = args.strip_suffix(')')?;
        let shown = match name {
            "character_length" => "LENGTH".to_string(),
            "bool_and" => "LOGICAL_AND".to_string(),
            "bool_or" => "LOGICAL_OR".to_string(),
            other => other.to_ascii_uppercase(),
        };
        let what = match name {
            "sum" | "avg" | "min" | "max" | "count" | "string_agg" | "bool_and" | "bool_or" => {
                "aggregate function"
            }
            _ => "function",
        };
        return Some(format!(
            "No matching signature for {what} {shown} for argument types: {}",
            type_list(args)
        ));
    }
    if let Some(i) = text.find("must appear in the GROUP BY clause") {
        let column = text[..i].rsplit("column \"").next()?.split('"').next()?;
        let column = column.rsplit('.').next()?;
        return Some(format!(
            "SELECT list expression references column {column} which is neither grouped nor aggregated"
        ));
    }
    if let Some(i) = text.find("Projections require unique expression names but the expression ") {
        let rest = &text[i..];
        let name = rest.split(" AS ").nth(1)?.split('"').next()?;
        return Some(format!(
            "Duplicate column names in the result are not supported. Found duplicate(s): {name}"
        ));
    }
    if let Some(i) = text.find("Cannot infer common argument type for comparison operation ") {
        let rest = &text[i + "Cannot infer common argument type for comparison operation ".len()..];
        let mut words = rest.split_whitespace();
        let (l, op, r) = (words.next()?, words.next()?, words.next()?);
        return Some(format!(
            "No matching signature for operator {op} for argument types: {}",
            type_list(&format!("{l},{r}"))
        ));
    }
    None
}

/// Parses REST `queryParameters` by lower-cased name; a parameter that cannot be used keeps its error,
/// reported only if the query references it (BigQuery ignores unused parameters).
fn parse_parameters(params: &[Json]) -> HashMap<String, Result<ScalarValue, SqlError>> {
    let mut out = HashMap::new();
    for p in params {
        let Some(name) = p.get("name").and_then(Json::as_str) else {
            continue;
        };
        let value = parse_parameter(name, p);
        out.insert(name.to_ascii_lowercase(), value);
    }
    out
}

fn parse_parameter(name: &str, p: &Json) -> Result<ScalarValue, SqlError> {
    let ptype = p
        .pointer("/parameterType/type")
        .and_then(Json::as_str)
        .unwrap_or("STRING")
        .to_ascii_uppercase();
    let raw = p.pointer("/parameterValue/value");
    let text: Option<String> = match raw {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(v @ (Json::Number(_) | Json::Bool(_))) => Some(v.to_string()),
        Some(_) => {
            return Err(invalid_query(format!(
                "Invalid value for query parameter '{name}' of type {ptype}"
            )));
        }
    };
    let bad = |t: &str| {
        invalid_query(format!(
            "Invalid {ptype} value for query parameter '{name}': {t}"
        ))
    };
    let text = text.as_deref();
    Ok(match ptype.as_str() {
        "STRING" | "JSON" => ScalarValue::Utf8(text.map(str::to_string)),
        "INT64" | "INTEGER" => ScalarValue::Int64(
            text.map(|t| t.trim().parse::<i64>().map_err(|_| bad(t)))
                .transpose()?,
        ),
        "FLOAT64" | "FLOAT" | "NUMERIC" | "BIGNUMERIC" | "DECIMAL" | "BIGDECIMAL" => {
            ScalarValue::Float64(
                text.map(|t| t.trim().parse::<f64>().map_err(|_| bad(t)))
                    .transpose()?,
            )
        }
        "BOOL" | "BOOLEAN" => ScalarValue::Boolean(
            text.map(|t| match t.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(bad(t)),
            })
            .transpose()?,
        ),
        "DATE" => ScalarValue::Date32(
            text.map(|t| parse_date(t).ok_or_else(|| bad(t)))
                .transpose()?,
        ),
        "DATETIME" => ScalarValue::TimestampMicrosecond(
            text.map(|t| parse_datetime(t).ok_or_else(|| bad(t)))
                .transpose()?,
            None,
        ),
        "TIMESTAMP" => ScalarValue::TimestampMicrosecond(
            text.map(|t| parse_timestamp(t).ok_or_else(|| bad(t)))
                .transpose()?,
            Some("UTC".into()),
        ),
        "TIME" => ScalarValue::Time64Microsecond(
            text.map(|t| parse_time(t).ok_or_else(|| bad(t)))
                .transpose()?,
        ),
        "BYTES" => ScalarValue::Binary(
            text.map(|t| {
                base64::engine::general_purpose::STANDARD
                    .decode(t.trim())
                    .map_err(|_| bad(t))
            })
            .transpose()?,
        ),
        other => {
            return Err(invalid_query(format!(
                "Query parameter '{name}' has type {other}, which the bq-emulator does not support (see \
                 integration/bq-emulator/SQL.md)"
            )));
        }
    })
}
