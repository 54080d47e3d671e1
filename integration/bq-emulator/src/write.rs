//! Writing job output into a destination table or partition: prepare everything outside the lock
//! (create spec, conform, split by partition, decorator checks), then swap under the catalog lock.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::catalog::{Catalog, Partitioning, TableMeta, split_by_partition, split_decorator};
use crate::data::{self, FieldSchema, RecordBatch, SchemaRef};
use crate::error::ApiError;
use crate::util::now_micros;

/// `writeDisposition`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteDisposition {
    /// Replace the table or the decorated partition.
    Truncate,
    /// Append.
    Append,
    /// Fail if the table or the decorated partition already has rows.
    Empty,
}

impl WriteDisposition {
    /// Parses the REST value; `None` if absent, error if unknown.
    pub fn parse(v: Option<&str>, default: WriteDisposition) -> Result<WriteDisposition, ApiError> {
        match v {
            None | Some("") => Ok(default),
            Some("WRITE_TRUNCATE") => Ok(WriteDisposition::Truncate),
            Some("WRITE_APPEND") => Ok(WriteDisposition::Append),
            Some("WRITE_EMPTY") => Ok(WriteDisposition::Empty),
            Some(other) => Err(ApiError::invalid(format!(
                "Invalid value for writeDisposition: {other}"
            ))),
        }
    }
}

/// Where and how a job writes.
#[derive(Clone, Debug)]
pub struct WriteSpec {
    /// Destination project.
    pub project: String,
    /// Destination dataset.
    pub dataset: String,
    /// Destination table id, undecorated.
    pub table: String,
    /// Partition decorator, if the destination had one.
    pub decorator: Option<String>,
    /// `createDisposition` is CREATE_IF_NEEDED.
    pub create_if_needed: bool,
    /// `writeDisposition`.
    pub write: WriteDisposition,
    /// The job's `timePartitioning` (used to create the table; must match an existing one).
    pub time_partitioning: Option<Value>,
    /// The job's `rangePartitioning`.
    pub range_partitioning: Option<Value>,
    /// The job's `clustering` (used when creating the table).
    pub clustering: Option<Value>,
    /// Schema to create the table with; defaults to the input's schema.
    pub create_schema: Option<Vec<FieldSchema>>,
    /// For copies into a table that does not exist: the source's partitioning, copied like BigQuery does.
    pub inherit_partitioning: Option<(Option<Value>, Option<Value>)>,
}

impl WriteSpec {
    /// Builds a spec from a REST `TableReference` (possibly decorated) and dispositions.
    pub fn from_reference(
        reference: &Value,
        default_project: &str,
        create: Option<&str>,
        write: Option<&str>,
        default_write: WriteDisposition,
    ) -> Result<WriteSpec, ApiError> {
        let (project, dataset, table_id) = parse_table_reference(reference, default_project)?;
        let (table, decorator) = split_decorator(&table_id);
        let create_if_needed = match create {
            None | Some("") | Some("CREATE_IF_NEEDED") => true,
            Some("CREATE_NEVER") => false,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "Invalid value for createDisposition: {other}"
                )));
            }
        };
        Ok(WriteSpec {
            project,
            dataset,
            table: table.to_string(),
            decorator: decorator.map(str::to_string),
            create_if_needed,
            write: WriteDisposition::parse(write, default_write)?,
            time_partitioning: None,
            range_partitioning: None,
            clustering: None,
            create_schema: None,
            inherit_partitioning: None,
        })
    }

    /// `p.d.t$dec`, for job listings and the concurrency check.
    pub fn display(&self) -> String {
        match &self.decorator {
            Some(d) => format!("{}.{}.{}${d}", self.project, self.dataset, self.table),
            None => format!("{}.{}.{}", self.project, self.dataset, self.table),
        }
    }
}

/// Parses a REST `TableReference` into `(project, dataset, tableId)`; the project defaults to the job's.
pub fn parse_table_reference(
    v: &Value,
    default_project: &str,
) -> Result<(String, String, String), ApiError> {
    let get = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let dataset = get("datasetId")
        .ok_or_else(|| ApiError::invalid("Required parameter is missing: datasetId"))?;
    let table = get("tableId")
        .ok_or_else(|| ApiError::invalid("Required parameter is missing: tableId"))?;
    Ok((
        get("projectId").unwrap_or(default_project).to_string(),
        dataset.to_string(),
        table.to_string(),
    ))
}

/// Rows to write. Each batch may carry the partition id it came from, which an ingestion-time destination
/// keeps when no decorator says otherwise (copies between ingestion-time tables preserve partitions).
pub struct WriteInput {
    /// Schema of the input batches (used to create the destination).
    pub schema: SchemaRef,
    /// Input rows.
    pub batches: Vec<(Option<String>, RecordBatch)>,
}

/// What the write will do, computed outside the lock.
pub struct Prepared {
    create: Option<(TableMeta, SchemaRef)>,
    meta_version: u64,
    target: Option<String>,
    parts: BTreeMap<String, Vec<RecordBatch>>,
    /// Rows written.
    pub rows: u64,
    /// Logical bytes written.
    pub bytes: u64,
    /// Schema of the written rows (the table's).
    pub schema: SchemaRef,
    /// Written rows in input order, on the table's schema (the query result).
    pub rows_in_order: Vec<RecordBatch>,
}

/// Result of a successful commit.
pub struct Committed {
    /// Rows written.
    pub rows: u64,
    /// Logical bytes written.
    pub bytes: u64,
    /// Schema of the written rows.
    pub schema: SchemaRef,
    /// Written rows in input order.
    pub rows_in_order: Vec<RecordBatch>,
}

/// Reads what `prepare` needs from the catalog (call under the lock; cheap clones only).
pub fn lookup(
    cat: &Catalog,
    spec: &WriteSpec,
) -> Result<Option<(TableMeta, SchemaRef, u64)>, ApiError> {
    cat.dataset(&spec.project, &spec.dataset)?;
    Ok(cat
        .tables
        .get(&(
            spec.project.clone(),
            spec.dataset.clone(),
            spec.table.clone(),
        ))
        .map(|t| (t.meta.clone(), t.arrow.clone(), t.meta_version)))
}

/// Validates the write and computes the new partition contents (no lock held).
pub fn prepare(
    existing: Option<(TableMeta, SchemaRef, u64)>,
    spec: &WriteSpec,
    input: &WriteInput,
) -> Result<Prepared, ApiError> {
    let (meta, arrow, meta_version, create) = match existing {
        Some((meta, _, _)) if meta.is_view() => {
            return Err(crate::catalog::view_refused("write to", &meta));
        }
        Some((meta, arrow, version)) => {
            meta.check_job_partitioning(
                spec.time_partitioning.as_ref(),
                spec.range_partitioning.as_ref(),
            )?;
            (meta, arrow, version, false)
        }
        None if !spec.create_if_needed => {
            return Err(ApiError::not_found(format!(
                "Not found: Table {}:{}.{}",
                spec.project, spec.dataset, spec.table
            )));
        }
        None => {
            let schema = spec
                .create_schema
                .clone()
                .unwrap_or_else(|| data::from_arrow_schema(&input.schema));
            let (tp, rp) = match (
                &spec.time_partitioning,
                &spec.range_partitioning,
                &spec.inherit_partitioning,
            ) {
                (None, None, Some((tp, rp))) => (tp.clone(), rp.clone()),
                (tp, rp, _) => (tp.clone(), rp.clone()),
            };
            let (meta, arrow) = TableMeta::build(
                &spec.project,
                &spec.dataset,
                &spec.table,
                schema,
                tp.as_ref(),
                rp.as_ref(),
                spec.clustering.as_ref(),
            )?;
            (meta, arrow, 0, true)
        }
    };
    let target = match &spec.decorator {
        Some(dec) => Some(meta.resolve_decorator(dec)?),
        None => None,
    };
    let mut parts: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
    let mut rows_in_order = Vec::new();
    let mut rows = 0u64;
    let mut bytes = 0u64;
    let now_bucket = match &meta.partitioning {
        Partitioning::Time { unit, field: None } => Some(unit.bucket_micros(now_micros())),
        _ => None,
    };
    for (hint, batch) in &input.batches {
        let conformed =
            data::conform(batch, &arrow).map_err(|e| ApiError::new(400, e.reason, e.message))?;
        let conformed = crate::catalog::rebase(conformed, &arrow)?;
        if conformed.num_rows() == 0 {
            continue;
        }
        rows += conformed.num_rows() as u64;
        bytes += data::logical_bytes(&conformed);
        rows_in_order.push(conformed.clone());
        match &meta.partitioning {
            Partitioning::None => parts.entry(String::new()).or_default().push(conformed),
            Partitioning::Time { field: None, .. } => {
                let pid = target
                    .clone()
                    .or_else(|| hint.clone())
                    .or_else(|| now_bucket.clone())
                    .unwrap_or_default();
                parts.entry(pid).or_default().push(conformed);
            }
            _ => {
                for (pid, part) in split_by_partition(&meta, &conformed)? {
                    if let Some(t) = &target
                        && &pid != t
                    {
                        return Err(ApiError::invalid(format!(
                            "Some rows belong to different partitions rather than destination partition {t}"
                        )));
                    }
                    parts.entry(pid).or_default().push(part);
                }
            }
        }
    }
    Ok(Prepared {
        create: create.then_some((meta, arrow.clone())),
        meta_version,
        target,
        parts,
        rows,
        bytes,
        schema: arrow,
        rows_in_order,
    })
}

/// Applies a prepared write under the catalog lock. If the destination changed since `prepare` (created,
/// dropped or recreated by someone else), the write is prepared again against the current table first.
pub fn commit(
    cat: &mut Catalog,
    spec: &WriteSpec,
    input: &WriteInput,
    prepared: Prepared,
) -> Result<Committed, ApiError> {
    let key = (
        spec.project.clone(),
        spec.dataset.clone(),
        spec.table.clone(),
    );
    let current = cat.tables.get(&key).map(|t| t.meta_version);
    let stale = match (&prepared.create, current) {
        (Some(_), None) => false,
        (None, Some(v)) => v != prepared.meta_version,
        _ => true,
    };
    let mut prepared = if stale {
        prepare(lookup(cat, spec)?, spec, input)?
    } else {
        prepared
    };
    if cat.dataset(&spec.project, &spec.dataset).is_err() {
        return Err(ApiError::not_found(format!(
            "Not found: Dataset {}:{}",
            spec.project, spec.dataset
        )));
    }
    if let Some((meta, arrow)) = prepared.create.take() {
        cat.put_new_table(meta, arrow);
    }
    let generation = cat.next_version();
    let table = cat
        .tables
        .get_mut(&key)
        .expect("destination exists after create");
    let rows_of = |b: Option<&Vec<RecordBatch>>| {
        b.map_or(0, |v| v.iter().map(|b| b.num_rows()).sum::<usize>())
    };
    let name = match &prepared.target {
        Some(t) => format!("{}${t}", table.meta.display()),
        None => table.meta.display(),
    };
    match &prepared.target {
        Some(pid) => {
            if spec.write == WriteDisposition::Empty && rows_of(table.partitions.get(pid)) > 0 {
                return Err(ApiError::duplicate(format!("Already Exists: Table {name}")));
            }
            let new_rows = prepared.parts.remove(pid).unwrap_or_default();
            match spec.write {
                WriteDisposition::Truncate | WriteDisposition::Empty => {
                    table.partitions.insert(pid.clone(), new_rows);
                }
                WriteDisposition::Append => table
                    .partitions
                    .entry(pid.clone())
                    .or_default()
                    .extend(new_rows),
            }
        }
        None => {
            if spec.write == WriteDisposition::Empty && table.num_rows() > 0 {
                return Err(ApiError::duplicate(format!("Already Exists: Table {name}")));
            }
            if spec.write == WriteDisposition::Truncate {
                table.partitions.clear();
            }
            for (pid, batches) in std::mem::take(&mut prepared.parts) {
                table.partitions.entry(pid).or_default().extend(batches);
            }
        }
    }
    table
        .partitions
        .retain(|_, v| v.iter().any(|b| b.num_rows() > 0));
    table.generation = generation;
    table.meta.last_modified_time = crate::util::now_millis();
    Ok(Committed {
        rows: prepared.rows,
        bytes: prepared.bytes,
        schema: prepared.schema,
        rows_in_order: prepared.rows_in_order,
    })
}
