//! BigQuery REST v2 handlers (`/bigquery/v2/projects/...`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use serde_json::{Map, Value, json};

use crate::catalog::{Partitioning, split_by_partition, split_decorator};
use crate::data::{self, RecordBatch};
use crate::error::ApiError;
use crate::jobs::{self, JobState, find_job, job_result};
use crate::state::AppState;
use crate::util::{etag, get_bool, get_str, lock, now_micros, now_millis, param_bool, random_id};

type St = State<Arc<AppState>>;
type Params = Query<HashMap<String, String>>;
type ApiResult = Result<Response, ApiError>;

/// Rows per page when the client gives no `maxResults`.
const DEFAULT_PAGE_ROWS: usize = 100_000;
/// Default `timeoutMs` of jobs.query / jobs.getQueryResults.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// Routes relative to `/bigquery/v2`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/projects/{project}/datasets",
            post(datasets_insert).get(datasets_list),
        )
        .route(
            "/projects/{project}/datasets/{dataset}",
            get(datasets_get)
                .delete(datasets_delete)
                .patch(datasets_patch)
                .put(datasets_patch),
        )
        .route(
            "/projects/{project}/datasets/{dataset}/tables",
            post(tables_insert).get(tables_list),
        )
        .route(
            "/projects/{project}/datasets/{dataset}/tables/{table}",
            get(tables_get)
                .delete(tables_delete)
                .patch(tables_patch)
                .put(tables_patch),
        )
        .route(
            "/projects/{project}/datasets/{dataset}/tables/{table}/insertAll",
            post(tabledata_insert_all),
        )
        .route(
            "/projects/{project}/datasets/{dataset}/tables/{table}/data",
            get(tabledata_list),
        )
        .route("/projects/{project}/jobs", post(jobs_insert).get(jobs_list))
        .route("/projects/{project}/jobs/{job}", get(jobs_get))
        .route("/projects/{project}/jobs/{job}/cancel", post(jobs_cancel))
        .route("/projects/{project}/jobs/{job}/delete", delete(jobs_delete))
        .route("/projects/{project}/queries", post(jobs_query))
        .route(
            "/projects/{project}/queries/{job}",
            get(jobs_get_query_results),
        )
}

/// The BigQuery method name of a request, used for statistics and fault matching.
pub fn classify(method: &axum::http::Method, path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/bigquery/v2/projects/")?;
    let segs: Vec<&str> = rest.split('/').collect();
    let m = method.as_str();
    Some(
        match (
            segs.len(),
            segs.get(1).copied(),
            segs.get(3).copied(),
            segs.get(5).copied(),
            m,
        ) {
            (2, Some("datasets"), _, _, "POST") => "datasets.insert",
            (2, Some("datasets"), _, _, "GET") => "datasets.list",
            (3, Some("datasets"), _, _, "GET") => "datasets.get",
            (3, Some("datasets"), _, _, "DELETE") => "datasets.delete",
            (3, Some("datasets"), _, _, "PATCH") => "datasets.patch",
            (3, Some("datasets"), _, _, "PUT") => "datasets.update",
            (4, Some("datasets"), Some("tables"), _, "POST") => "tables.insert",
            (4, Some("datasets"), Some("tables"), _, "GET") => "tables.list",
            (5, Some("datasets"), Some("tables"), _, "GET") => "tables.get",
            (5, Some("datasets"), Some("tables"), _, "DELETE") => "tables.delete",
            (5, Some("datasets"), Some("tables"), _, "PATCH") => "tables.patch",
            (5, Some("datasets"), Some("tables"), _, "PUT") => "tables.update",
            (6, Some("datasets"), Some("tables"), Some("insertAll"), "POST") => {
                "tabledata.insertAll"
            }
            (6, Some("datasets"), Some("tables"), Some("data"), "GET") => "tabledata.list",
            (2, Some("jobs"), _, _, "POST") => "jobs.insert",
            (2, Some("jobs"), _, _, "GET") => "jobs.list",
            (3, Some("jobs"), _, _, "GET") => "jobs.get",
            (4, Some("jobs"), Some("cancel"), _, "POST") => "jobs.cancel",
            (4, Some("jobs"), Some("delete"), _, "DELETE") => "jobs.delete",
            (2, Some("queries"), _, _, "POST") => "jobs.query",
            (3, Some("queries"), _, _, "GET") => "jobs.getQueryResults",
            _ => return None,
        },
    )
}

/// Parses a JSON request body (an empty body is `{}`).
pub fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))
}

fn ok(v: Value) -> ApiResult {
    Ok(Json(v).into_response())
}

fn param_usize(params: &HashMap<String, String>, key: &str) -> Result<Option<usize>, ApiError> {
    match params.get(key).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("Invalid value for {key}: {s}"))),
    }
}

/// Wire rows `[start, start+max)` across batches.
pub fn page_rows(batches: &[RecordBatch], start: usize, max: usize, int64_ts: bool) -> Vec<Value> {
    let mut out = Vec::new();
    let (mut skip, mut remaining) = (start, max);
    for b in batches {
        if remaining == 0 {
            break;
        }
        let n = b.num_rows();
        if skip >= n {
            skip -= n;
            continue;
        }
        let take = (n - skip).min(remaining);
        out.extend(data::to_wire_rows(b, skip, take, int64_ts));
        remaining -= take;
        skip = 0;
    }
    out
}

/// Paging of tabledata.list / getQueryResults: `(start, max)` from pageToken / startIndex / maxResults.
fn paging(
    params: &HashMap<String, String>,
    max_override: Option<usize>,
) -> Result<(usize, usize), ApiError> {
    let start = match params.get("pageToken").filter(|s| !s.is_empty()) {
        Some(tok) => tok
            .parse()
            .map_err(|_| ApiError::invalid(format!("Invalid page token: {tok}")))?,
        None => param_usize(params, "startIndex")?.unwrap_or(0),
    };
    let max = max_override
        .or(param_usize(params, "maxResults")?)
        .unwrap_or(DEFAULT_PAGE_ROWS);
    Ok((start, max))
}

/// Adds `rows`, `pageToken`, `totalRows` for rows `[start, start+max)` to a response object.
fn fill_page(
    out: &mut Map<String, Value>,
    batches: &[RecordBatch],
    start: usize,
    max: usize,
    int64_ts: bool,
) {
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    let rows = page_rows(batches, start, max, int64_ts);
    let next = start + rows.len();
    out.insert("totalRows".into(), json!(total.to_string()));
    if !rows.is_empty() {
        out.insert("rows".into(), Value::Array(rows));
    }
    if next < total {
        out.insert("pageToken".into(), json!(next.to_string()));
    }
}

// ---------- datasets ----------

async fn datasets_insert(State(st): St, Path(project): Path<String>, body: Bytes) -> ApiResult {
    let body = parse_body(&body)?;
    let v = lock(&st.catalog).insert_dataset(&project, &body)?.to_json();
    st.mark_dirty();
    ok(v)
}

async fn datasets_get(
    State(st): St,
    Path((project, dataset)): Path<(String, String)>,
) -> ApiResult {
    ok(lock(&st.catalog).dataset(&project, &dataset)?.to_json())
}

async fn datasets_patch(
    State(st): St,
    Path((project, dataset)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let body = parse_body(&body)?;
    let mut cat = lock(&st.catalog);
    cat.dataset(&project, &dataset)?;
    let ds = cat.datasets.get_mut(&(project, dataset)).expect("checked");
    for (k, v) in body.as_object().into_iter().flatten() {
        if matches!(
            k.as_str(),
            "description" | "labels" | "friendlyName" | "defaultTableExpirationMs" | "access"
        ) {
            ds.extra.insert(k.clone(), v.clone());
        }
    }
    ds.last_modified_time = now_millis();
    let v = ds.to_json();
    drop(cat);
    st.mark_dirty();
    ok(v)
}

async fn datasets_delete(
    State(st): St,
    Path((project, dataset)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    lock(&st.catalog).delete_dataset(
        &project,
        &dataset,
        param_bool(params.get("deleteContents")),
    )?;
    st.mark_dirty();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn datasets_list(
    State(st): St,
    Path(project): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let all = param_bool(params.get("all"));
    let cat = lock(&st.catalog);
    let datasets: Vec<Value> = cat
        .datasets
        .values()
        .filter(|d| d.project == project && (all || !d.dataset.starts_with('_')))
        .map(|d| {
            json!({
                "kind": "bigquery#dataset",
                "id": format!("{}:{}", d.project, d.dataset),
                "datasetReference": {"projectId": d.project, "datasetId": d.dataset},
                "location": d.location,
                "labels": d.extra.get("labels"),
            })
        })
        .collect();
    ok(json!({"kind": "bigquery#datasetList", "etag": etag(now_millis()), "datasets": datasets}))
}

// ---------- tables ----------

async fn tables_insert(
    State(st): St,
    Path((project, dataset)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let body = parse_body(&body)?;
    let v = match body.get("view").filter(|v| !v.is_null()) {
        Some(view) => create_view(&st, &project, &dataset, &body, view).await?,
        None => lock(&st.catalog)
            .insert_table(&project, &dataset, &body)?
            .to_json(),
    };
    st.mark_dirty();
    ok(v)
}

/// tables.insert of a logical view. Like BigQuery, the query is checked at creation (it must parse, plan
/// and read only existing tables and views) and its result schema becomes the view's schema.
async fn create_view(
    st: &Arc<AppState>,
    project: &str,
    dataset: &str,
    body: &Value,
    view: &Value,
) -> Result<Value, ApiError> {
    let table = body
        .get("tableReference")
        .and_then(|r| get_str(r, "tableId"))
        .ok_or_else(|| ApiError::invalid("Required parameter is missing: tableReference.tableId"))?
        .to_string();
    lock(&st.catalog).check_new_table(project, dataset, &table)?;
    let query = get_str(view, "query")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("Required parameter is missing: view.query"))?;
    // The REST default of useLegacySql is true for views as for jobs.
    if get_bool(view, "useLegacySql").unwrap_or(true) {
        return Err(ApiError::invalid(
            "Legacy SQL views are not supported by the emulator, and BigQuery uses legacy SQL when view.useLegacySql is absent or true; hint: send \"useLegacySql\": false",
        ));
    }
    for k in ["timePartitioning", "rangePartitioning", "clustering"] {
        if body.get(k).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::invalid(format!(
                "{k} cannot be set on a view: a view has no storage of its own"
            )));
        }
    }
    let snapshot = crate::state::Snapshot::new(Arc::clone(st));
    let out = crate::sql::describe(
        crate::sql::QueryRequest {
            sql: query,
            default_project: project,
            default_dataset: None,
            parameters: &[],
        },
        &snapshot,
    )
    .await
    .map_err(|e| {
        ApiError::new(
            crate::error::status_for_reason(e.reason),
            e.reason,
            e.message,
        )
    })?;
    let schema = data::from_arrow_schema(&out.schema);
    let v = lock(&st.catalog)
        .insert_view(project, dataset, &table, body, query, schema)?
        .to_json();
    Ok(v)
}

async fn tables_get(
    State(st): St,
    Path((project, dataset, table)): Path<(String, String, String)>,
) -> ApiResult {
    let (name, _) = split_decorator(&table);
    ok(lock(&st.catalog).table(&project, &dataset, name)?.to_json())
}

async fn tables_delete(
    State(st): St,
    Path((project, dataset, table)): Path<(String, String, String)>,
) -> ApiResult {
    let (name, dec) = split_decorator(&table);
    {
        let mut cat = lock(&st.catalog);
        match dec {
            // Deleting `t$ID` deletes one partition, as in BigQuery.
            Some(dec) => {
                let generation = cat.next_version();
                let t = cat.table_mut(&project, &dataset, name)?;
                let pid = t.meta.resolve_decorator(dec)?;
                t.partitions.remove(&pid);
                t.generation = generation;
                t.meta.last_modified_time = now_millis();
            }
            None => cat.delete_table(&project, &dataset, name)?,
        }
    }
    st.mark_dirty();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn tables_patch(
    State(st): St,
    Path((project, dataset, table)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult {
    let body = parse_body(&body)?;
    let mut cat = lock(&st.catalog);
    let generation = cat.next_version();
    let t = cat.table_mut(&project, &dataset, &table)?;
    if t.meta.is_view()
        && ["schema", "view"]
            .iter()
            .any(|k| body.get(*k).is_some_and(|v| !v.is_null()))
    {
        return Err(ApiError::invalid(format!(
            "Changing the schema or query of view {} is not supported by the bq-emulator; delete and recreate it",
            t.meta.display()
        )));
    }
    if let Some(schema) = body.get("schema").filter(|v| !v.is_null()) {
        let fields = crate::catalog::parse_schema(Some(schema))?;
        let old_names: Vec<String> = t
            .meta
            .schema
            .iter()
            .map(|f| f.name.to_ascii_lowercase())
            .collect();
        let new_names: Vec<String> = fields.iter().map(|f| f.name.to_ascii_lowercase()).collect();
        if !old_names.iter().all(|n| new_names.contains(n)) {
            return Err(ApiError::invalid(
                "Provided Schema does not match Table: a field was removed (the emulator only supports adding NULLABLE fields)",
            ));
        }
        let arrow = data::to_arrow_schema(&fields).map_err(|e| ApiError::invalid(e.message))?;
        let mut partitions = std::collections::BTreeMap::new();
        for (pid, batches) in &t.partitions {
            let mut out = Vec::new();
            for b in batches {
                let c = data::conform(b, &arrow).map_err(|e| ApiError::invalid(e.message))?;
                out.push(crate::catalog::rebase(c, &arrow)?);
            }
            partitions.insert(pid.clone(), out);
        }
        t.partitions = partitions;
        t.meta.schema = fields;
        t.arrow = arrow;
    }
    for (k, v) in body.as_object().into_iter().flatten() {
        match k.as_str() {
            "description"
            | "labels"
            | "friendlyName"
            | "expirationTime"
            | "requirePartitionFilter" => {
                t.meta.extra.insert(k.clone(), v.clone());
            }
            "clustering" => t.meta.clustering = Some(v.clone()).filter(|v| !v.is_null()),
            _ => {}
        }
    }
    t.generation = generation;
    t.meta.last_modified_time = now_millis();
    let v = t.to_json();
    drop(cat);
    st.mark_dirty();
    ok(v)
}

async fn tables_list(
    State(st): St,
    Path((project, dataset)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let cat = lock(&st.catalog);
    cat.dataset(&project, &dataset)?;
    let all: Vec<Value> = cat
        .tables
        .values()
        .filter(|t| t.meta.project == project && t.meta.dataset == dataset)
        .map(|t| t.list_entry())
        .collect();
    let (start, max) = paging(&params, None)?;
    let mut out = Map::new();
    out.insert("kind".into(), json!("bigquery#tableList"));
    out.insert("etag".into(), json!(etag(now_millis())));
    out.insert("totalItems".into(), json!(all.len()));
    let page: Vec<Value> = all.iter().skip(start).take(max).cloned().collect();
    if start + page.len() < all.len() {
        out.insert(
            "nextPageToken".into(),
            json!((start + page.len()).to_string()),
        );
    }
    out.insert("tables".into(), Value::Array(page));
    ok(Value::Object(out))
}

// ---------- tabledata ----------

async fn tabledata_list(
    State(st): St,
    Path((project, dataset, table)): Path<(String, String, String)>,
    Query(params): Params,
) -> ApiResult {
    let (name, dec) = split_decorator(&table);
    let batches = {
        let cat = lock(&st.catalog);
        let t = cat.table(&project, &dataset, name)?;
        if t.meta.is_view() {
            return Err(ApiError::invalid("Cannot list a table of type VIEW."));
        }
        let pid = match dec {
            Some(d) => Some(t.meta.resolve_decorator(d)?),
            None => None,
        };
        t.batches(pid.as_deref())
    };
    let (start, max) = paging(&params, None)?;
    let mut out = Map::new();
    out.insert("kind".into(), json!("bigquery#tableDataList"));
    out.insert("etag".into(), json!(etag(now_millis())));
    fill_page(
        &mut out,
        &batches,
        start,
        max,
        param_bool(params.get("formatOptions.useInt64Timestamp")),
    );
    ok(Value::Object(out))
}

/// One row-level insertAll failure.
fn row_error(index: usize, reason: &str, message: &str) -> Value {
    json!({"index": index, "errors": [{"reason": reason, "location": "", "debugInfo": "", "message": message}]})
}

/// Streams rows into a table (insertAll semantics). Returns the `insertErrors` array (empty on success).
pub fn insert_all(
    st: &AppState,
    project: &str,
    dataset: &str,
    table: &str,
    rows: &[Value],
    skip_invalid: bool,
    ignore_unknown: bool,
) -> Result<Vec<Value>, ApiError> {
    let (name, dec) = split_decorator(table);
    let (meta, arrow, version) = {
        let cat = lock(&st.catalog);
        let t = cat.table(project, dataset, name)?;
        if t.meta.is_view() {
            return Err(crate::catalog::view_refused("insert rows into", &t.meta));
        }
        (t.meta.clone(), t.arrow.clone(), t.meta_version)
    };
    let target = match dec {
        Some(d) => Some(meta.resolve_decorator(d)?),
        None => None,
    };
    let mut objects = Vec::with_capacity(rows.len());
    let mut insert_ids = Vec::with_capacity(rows.len());
    let mut errors: Vec<(usize, String)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        match row.get("json") {
            Some(Value::Object(m)) => objects.push((i, m.clone())),
            _ => errors.push((i, "Missing or invalid json object in row".into())),
        }
        insert_ids.push(
            get_str(row, "insertId")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    // Fast path: the whole request converts at once; otherwise find the failing rows one by one.
    let all: Vec<Map<String, Value>> = objects.iter().map(|(_, m)| m.clone()).collect();
    let mut good: Vec<usize> = objects.iter().map(|(i, _)| *i).collect();
    if data::json_rows_to_batch(&arrow, &all, ignore_unknown).is_err() {
        good.clear();
        for (i, m) in &objects {
            match data::json_rows_to_batch(&arrow, std::slice::from_ref(m), ignore_unknown) {
                Ok(_) => good.push(*i),
                Err(e) => errors.push((*i, e.message)),
            }
        }
    }
    let good_set: std::collections::HashSet<usize> = good.iter().copied().collect();
    let mut good_rows: Vec<Map<String, Value>> = objects
        .iter()
        .filter(|(i, _)| good_set.contains(i))
        .map(|(_, m)| m.clone())
        .collect();
    // Rows that fall outside a decorated partition are row errors.
    if let (Some(t), Some(_)) = (&target, meta.partitioning.field()) {
        let mut keep = Vec::new();
        // Rare path (streaming into a decorated column-partitioned table): check each row's partition.
        for (pos, m) in good_rows.iter().enumerate() {
            let one = data::json_rows_to_batch(&arrow, std::slice::from_ref(m), ignore_unknown)
                .map_err(|e| ApiError::invalid(e.message))?;
            let pid = split_by_partition(&meta, &one)?
                .into_iter()
                .next()
                .map(|(p, _)| p);
            if pid.as_deref() == Some(t.as_str()) {
                keep.push(pos);
            } else {
                errors.push((
                    good[pos],
                    format!("Some rows belong to different partitions rather than destination partition {t}"),
                ));
            }
        }
        good = keep.iter().map(|p| good[*p]).collect();
        good_rows = keep.iter().map(|p| good_rows[*p].clone()).collect();
    }
    errors.sort_by_key(|(i, _)| *i);
    if !errors.is_empty() && !skip_invalid {
        let bad: std::collections::HashSet<usize> = errors.iter().map(|(i, _)| *i).collect();
        let mut out: Vec<Value> = errors
            .iter()
            .map(|(i, m)| row_error(*i, "invalid", m))
            .collect();
        out.extend(
            (0..rows.len())
                .filter(|i| !bad.contains(i))
                .map(|i| row_error(i, "stopped", "")),
        );
        out.sort_by_key(|v| v["index"].as_u64());
        return Ok(out);
    }
    let batch = data::json_rows_to_batch(&arrow, &good_rows, ignore_unknown)
        .map_err(|e| ApiError::invalid(e.message))?;
    let batch = crate::catalog::rebase(batch, &arrow)?;
    {
        let mut cat = lock(&st.catalog);
        let key = (project.to_string(), dataset.to_string(), name.to_string());
        if cat.tables.get(&key).map(|t| t.meta_version) != Some(version) {
            return Err(ApiError::new(
                503,
                "backendError",
                "the table changed during insertAll; retry",
            ));
        }
        let seen = cat.insert_ids.entry(key.clone()).or_default();
        let mut mask = Vec::with_capacity(good.len());
        for i in &good {
            mask.push(match &insert_ids[*i] {
                Some(id) => seen.insert(id.clone()),
                None => true,
            });
        }
        let batch = if mask.iter().all(|m| *m) {
            batch
        } else {
            filter_record_batch(&batch, &BooleanArray::from(mask))
                .map_err(|e| ApiError::internal(e.to_string()))?
        };
        let parts: Vec<(String, RecordBatch)> = match (&meta.partitioning, &target) {
            (_, _) if batch.num_rows() == 0 => Vec::new(),
            (Partitioning::None, _) => vec![(String::new(), batch)],
            (Partitioning::Time { field: None, unit }, t) => {
                vec![(
                    t.clone()
                        .unwrap_or_else(|| unit.bucket_micros(now_micros())),
                    batch,
                )]
            }
            _ => split_by_partition(&meta, &batch)?,
        };
        let generation = cat.next_version();
        let t = cat.tables.get_mut(&key).expect("checked above");
        for (pid, b) in parts {
            t.partitions.entry(pid).or_default().push(b);
        }
        t.generation = generation;
        t.meta.last_modified_time = now_millis();
    }
    st.mark_dirty();
    Ok(errors
        .iter()
        .map(|(i, m)| row_error(*i, "invalid", m))
        .collect())
}

async fn tabledata_insert_all(
    State(st): St,
    Path((project, dataset, table)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult {
    let body = parse_body(&body)?;
    let rows = body
        .get("rows")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if rows.is_empty() {
        return Err(ApiError::invalid("No rows present in the request."));
    }
    let errors = insert_all(
        &st,
        &project,
        &dataset,
        &table,
        &rows,
        get_bool(&body, "skipInvalidRows").unwrap_or(false),
        get_bool(&body, "ignoreUnknownValues").unwrap_or(false),
    )?;
    let mut out = json!({"kind": "bigquery#tableDataInsertAllResponse"});
    if !errors.is_empty() {
        out["insertErrors"] = Value::Array(errors);
    }
    ok(out)
}

// ---------- jobs ----------

async fn jobs_insert(State(st): St, Path(project): Path<String>, body: Bytes) -> ApiResult {
    let body = parse_body(&body)?;
    let requested = body
        .get("jobReference")
        .and_then(|r| get_str(r, "location"));
    st.note_job_call("jobs.insert", requested);
    let job = jobs::insert_job(&st, &project, body).await?;
    if st.faults.take_insert_after_create() {
        return Err(ApiError::new(
            503,
            "backendError",
            "injected fault: the job was created, but the response failed",
        ));
    }
    ok(job)
}

async fn jobs_get(
    State(st): St,
    Path((project, job)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let location = params.get("location").map(String::as_str);
    st.note_job_call("jobs.get", location);
    let jobs = lock(&st.jobs);
    ok(find_job(&jobs, &project, &job, location)?.data.to_json())
}

async fn jobs_cancel(
    State(st): St,
    Path((project, job)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let location = params.get("location").map(String::as_str);
    st.note_job_call("jobs.cancel", location);
    ok(jobs::cancel_job(&st, &project, &job, location)?)
}

async fn jobs_delete(
    State(st): St,
    Path((project, job)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let location = params.get("location").map(String::as_str);
    st.note_job_call("jobs.delete", location);
    let mut jobs = lock(&st.jobs);
    let state = find_job(&jobs, &project, &job, location)?.data.state;
    if state != JobState::Done {
        return Err(ApiError::invalid(format!(
            "Job {project}:{job} is not done; cancel it first"
        )));
    }
    jobs.jobs.remove(&(project, job));
    drop(jobs);
    st.mark_dirty();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn jobs_list(State(st): St, Path(project): Path<String>, Query(params): Params) -> ApiResult {
    let filters: Vec<String> = params
        .get("stateFilter")
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().to_ascii_uppercase())
                .collect()
        })
        .unwrap_or_default();
    let jobs = lock(&st.jobs);
    let mut list: Vec<_> = jobs
        .jobs
        .values()
        .filter(|j| j.data.project == project)
        .filter(|j| filters.is_empty() || filters.iter().any(|f| f == j.data.state.as_str()))
        .collect();
    list.sort_by_key(|j| std::cmp::Reverse(j.data.seq));
    let (start, max) = paging(&params, None)?;
    let page: Vec<Value> = list
        .iter()
        .skip(start)
        .take(max.min(1000))
        .map(|j| {
            let full = j.data.to_json();
            let mut entry = json!({
                "id": full["id"],
                "kind": "bigquery#job",
                "jobReference": full["jobReference"],
                "state": full["status"]["state"],
                "configuration": full["configuration"],
                "status": full["status"],
                "statistics": full["statistics"],
                "user_email": full["user_email"],
                "principal_subject": full["principal_subject"],
            });
            if let Some(e) = full["status"].get("errorResult") {
                entry["errorResult"] = e.clone();
            }
            entry
        })
        .collect();
    let mut out = json!({"kind": "bigquery#jobList", "etag": etag(now_millis()), "jobs": page});
    let shown = start + out["jobs"].as_array().map_or(0, Vec::len);
    if shown < list.len() {
        out["nextPageToken"] = json!(shown.to_string());
    }
    ok(out)
}

fn timeout_of(v: Option<u64>) -> Duration {
    Duration::from_millis(v.unwrap_or(DEFAULT_TIMEOUT_MS))
}

/// Builds a getQueryResults / jobs.query body for a job (DONE or not).
/// Which rows of a result to return, and how.
struct Page {
    start: usize,
    max: usize,
    int64_ts: bool,
}

fn results_body(
    st: &AppState,
    project: &str,
    job_id: &str,
    location: Option<&str>,
    page: Page,
    kind: &str,
) -> Result<Value, ApiError> {
    let jobs = lock(&st.jobs);
    let job = find_job(&jobs, project, job_id, location)?;
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind));
    out.insert("etag".into(), json!(etag(now_millis())));
    out.insert("jobReference".into(), job.data.reference());
    if job.data.state != JobState::Done {
        out.insert("jobComplete".into(), json!(false));
        return Ok(Value::Object(out));
    }
    if let Some(e) = &job.data.error_result {
        return Err(ApiError::from_job_error(e));
    }
    out.insert("jobComplete".into(), json!(true));
    out.insert("cacheHit".into(), json!(false));
    let q = job.data.statistics.get("query");
    let processed = q
        .and_then(|q| q.get("totalBytesProcessed"))
        .cloned()
        .unwrap_or(json!("0"));
    out.insert("totalBytesProcessed".into(), processed);
    for k in ["numDmlAffectedRows", "dmlStats"] {
        if let Some(v) = q.and_then(|q| q.get(k)) {
            out.insert(k.into(), v.clone());
        }
    }
    if kind == "bigquery#queryResponse" {
        for (k, src) in [
            ("totalBytesBilled", "totalBytesBilled"),
            ("statementType", "statementType"),
        ] {
            if let Some(v) = q.and_then(|q| q.get(src)) {
                out.insert(k.into(), v.clone());
            }
        }
        out.insert("location".into(), json!(job.data.location));
        out.insert(
            "creationTime".into(),
            json!(job.data.creation_time.to_string()),
        );
        if let Some(t) = job.data.start_time {
            out.insert("startTime".into(), json!(t.to_string()));
        }
        if let Some(t) = job.data.end_time {
            out.insert("endTime".into(), json!(t.to_string()));
        }
    }
    if job.data.job_type == "QUERY" {
        match job_result(st, job) {
            Some(result) => {
                out.insert(
                    "schema".into(),
                    json!({"fields": data::from_arrow_schema(&result.schema)}),
                );
                fill_page(
                    &mut out,
                    &result.batches,
                    page.start,
                    page.max,
                    page.int64_ts,
                );
            }
            None => {
                out.insert("totalRows".into(), json!("0"));
            }
        }
    }
    Ok(Value::Object(out))
}

async fn jobs_get_query_results(
    State(st): St,
    Path((project, job)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let location = params.get("location").map(String::as_str);
    st.note_job_call("jobs.getQueryResults", location);
    let timeout = timeout_of(params.get("timeoutMs").and_then(|s| s.parse().ok()));
    let (start, max) = paging(&params, None)?;
    jobs::wait_done(&st, &project, &job, location, timeout).await?;
    let int64_ts = param_bool(params.get("formatOptions.useInt64Timestamp"));
    ok(results_body(
        &st,
        &project,
        &job,
        location,
        Page {
            start,
            max,
            int64_ts,
        },
        "bigquery#getQueryResultsResponse",
    )?)
}

async fn jobs_query(State(st): St, Path(project): Path<String>, body: Bytes) -> ApiResult {
    let req = parse_body(&body)?;
    let mut query = Map::new();
    for k in [
        "query",
        "useLegacySql",
        "queryParameters",
        "parameterMode",
        "defaultDataset",
        "maximumBytesBilled",
        "useQueryCache",
        "preserveNulls",
        "connectionProperties",
    ] {
        if let Some(v) = req.get(k) {
            query.insert(k.into(), v.clone());
        }
    }
    let mut config = json!({"query": query});
    for k in ["labels", "dryRun", "jobTimeoutMs"] {
        if let Some(v) = req.get(k) {
            config[k] = v.clone();
        }
    }
    let location = get_str(&req, "location").map(str::to_string);
    st.note_job_call("jobs.query", location.as_deref());
    let request_id = get_str(&req, "requestId").map(str::to_string);
    let existing = request_id.as_ref().and_then(|r| {
        lock(&st.jobs)
            .request_ids
            .get(&(project.clone(), r.clone()))
            .cloned()
    });
    let job_id = match existing {
        Some((_, id)) => id,
        None => {
            let job_id = format!("job_{}", random_id(28));
            let mut reference = json!({"projectId": project, "jobId": job_id});
            if let Some(l) = &location {
                reference["location"] = json!(l);
            }
            let job = jobs::insert_job(
                &st,
                &project,
                json!({"jobReference": reference, "configuration": config}),
            )
            .await?;
            if get_bool(&config, "dryRun").unwrap_or(false) {
                let q = &job["statistics"]["query"];
                return ok(json!({
                    "kind": "bigquery#queryResponse",
                    "jobReference": {"projectId": project, "location": job["jobReference"]["location"]},
                    "jobComplete": true,
                    "schema": q["schema"],
                    "totalBytesProcessed": q["totalBytesProcessed"],
                    "cacheHit": false,
                }));
            }
            if let Some(r) = request_id {
                lock(&st.jobs)
                    .request_ids
                    .insert((project.clone(), r), (project.clone(), job_id.clone()));
            }
            job_id
        }
    };
    let timeout = timeout_of(req.get("timeoutMs").and_then(Value::as_u64));
    // One call: the job it created (or found by requestId) is read in its own location.
    let location = lock(&st.jobs)
        .jobs
        .get(&(project.clone(), job_id.clone()))
        .map(|j| j.data.location.clone());
    let location = location.as_deref();
    jobs::wait_done(&st, &project, &job_id, location, timeout).await?;
    let max = req
        .get("maxResults")
        .and_then(Value::as_u64)
        .map(|m| m as usize)
        .unwrap_or(DEFAULT_PAGE_ROWS);
    let int64_ts = req
        .get("formatOptions")
        .and_then(|f| get_bool(f, "useInt64Timestamp"))
        .unwrap_or(false);
    let body = results_body(
        &st,
        &project,
        &job_id,
        location,
        Page {
            start: 0,
            max,
            int64_ts,
        },
        "bigquery#queryResponse",
    )?;
    ok(body)
}

/// Unknown paths answer BigQuery-style 404s.
pub async fn fallback(uri: axum::http::Uri) -> Response {
    ApiError::not_found(format!("Not found: {}", uri.path())).into_response()
}
