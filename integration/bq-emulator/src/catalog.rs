//! Datasets, tables and their partitions, held in memory as Arrow record batches.
//!
//! A table keeps a map partition-id → batches (`""` for a non-partitioned table). Replacing a partition is
//! one map entry swap done under the catalog lock, which is what makes WRITE_TRUNCATE into `t$ID` atomic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, TimeUnit as ArrowTimeUnit};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::data::{self, FieldSchema, RecordBatch, SchemaRef};
use crate::error::ApiError;
use crate::util::{etag, get_i64, get_str, now_millis};

/// Location given to datasets and jobs that do not name one.
pub const DEFAULT_LOCATION: &str = "US";
/// Partition holding rows whose partitioning column is NULL.
pub const NULL_PARTITION: &str = "__NULL__";
/// Partition holding rows outside the partitionable range.
pub const UNPARTITIONED: &str = "__UNPARTITIONED__";

/// `(project, dataset)`.
pub type DatasetKey = (String, String);
/// `(project, dataset, table)` with the table id undecorated.
pub type TableKey = (String, String, String);

/// A dataset's metadata.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// Project id.
    pub project: String,
    /// Dataset id.
    pub dataset: String,
    /// Location (default `US`).
    pub location: String,
    /// Creation time, epoch millis.
    pub creation_time: i64,
    /// Last modification, epoch millis.
    pub last_modified_time: i64,
    /// Other fields sent on insert (description, labels, friendlyName, ...), echoed back.
    #[serde(default)]
    pub extra: Map<String, Value>,
}

impl DatasetMeta {
    /// The REST `Dataset` resource.
    pub fn to_json(&self) -> Value {
        let mut v = self.extra.clone();
        v.insert("kind".into(), json!("bigquery#dataset"));
        v.insert(
            "id".into(),
            json!(format!("{}:{}", self.project, self.dataset)),
        );
        v.insert("etag".into(), json!(etag(self.last_modified_time)));
        v.insert(
            "selfLink".into(),
            json!(format!(
                "/bigquery/v2/projects/{}/datasets/{}",
                self.project, self.dataset
            )),
        );
        v.insert(
            "datasetReference".into(),
            json!({"projectId": self.project, "datasetId": self.dataset}),
        );
        v.insert("location".into(), json!(self.location));
        v.insert("creationTime".into(), json!(self.creation_time.to_string()));
        v.insert(
            "lastModifiedTime".into(),
            json!(self.last_modified_time.to_string()),
        );
        v.insert("type".into(), json!("DEFAULT"));
        Value::Object(v)
    }
}

/// Granularity of time-unit partitioning.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum TimeUnit {
    /// `YYYYMMDDHH`.
    Hour,
    /// `YYYYMMDD`.
    Day,
    /// `YYYYMM`.
    Month,
    /// `YYYY`.
    Year,
}

impl TimeUnit {
    /// Parses BigQuery's `timePartitioning.type`.
    pub fn parse(s: &str) -> Option<TimeUnit> {
        match s.to_ascii_uppercase().as_str() {
            "HOUR" => Some(TimeUnit::Hour),
            "DAY" => Some(TimeUnit::Day),
            "MONTH" => Some(TimeUnit::Month),
            "YEAR" => Some(TimeUnit::Year),
            _ => None,
        }
    }

    /// BigQuery's name of the unit.
    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Hour => "HOUR",
            TimeUnit::Day => "DAY",
            TimeUnit::Month => "MONTH",
            TimeUnit::Year => "YEAR",
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            TimeUnit::Hour => "YYYYMMDDHH",
            TimeUnit::Day => "YYYYMMDD",
            TimeUnit::Month => "YYYYMM",
            TimeUnit::Year => "YYYY",
        }
    }

    /// The partition id of a UTC instant given in epoch microseconds. Instants outside BigQuery's
    /// partitionable range (years 1960..=2159) land in `__UNPARTITIONED__`.
    pub fn bucket_micros(self, micros: i64) -> String {
        let Some(dt) = chrono::DateTime::from_timestamp_micros(micros) else {
            return UNPARTITIONED.to_string();
        };
        if !(1960..=2159).contains(&dt.year()) {
            return UNPARTITIONED.to_string();
        }
        let fmt = match self {
            TimeUnit::Hour => "%Y%m%d%H",
            TimeUnit::Day => "%Y%m%d",
            TimeUnit::Month => "%Y%m",
            TimeUnit::Year => "%Y",
        };
        dt.format(fmt).to_string()
    }

    /// Validates a decorator of this unit (digits of the right length forming a real date/hour).
    fn valid_decorator(self, dec: &str) -> bool {
        if dec.len() != self.pattern().len() || !dec.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let num = |r: std::ops::Range<usize>| dec[r].parse::<u32>().unwrap_or(u32::MAX);
        let year = num(0..4) as i32;
        match self {
            TimeUnit::Year => true,
            TimeUnit::Month => NaiveDate::from_ymd_opt(year, num(4..6), 1).is_some(),
            TimeUnit::Day => NaiveDate::from_ymd_opt(year, num(4..6), num(6..8)).is_some(),
            TimeUnit::Hour => {
                NaiveDate::from_ymd_opt(year, num(4..6), num(6..8)).is_some() && num(8..10) < 24
            }
        }
    }
}

/// How a table is partitioned.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Partitioning {
    /// Not partitioned.
    None,
    /// Time-unit partitioning on a column, or by ingestion time when `field` is `None` (`_PARTITIONTIME`).
    Time {
        /// Granularity.
        unit: TimeUnit,
        /// Partitioning column; `None` for ingestion-time partitioning.
        field: Option<String>,
    },
    /// Integer-range partitioning.
    Range {
        /// INTEGER partitioning column.
        field: String,
        /// Inclusive start.
        start: i64,
        /// Exclusive end.
        end: i64,
        /// Width of each partition.
        interval: i64,
    },
}

impl Partitioning {
    /// BigQuery's wording of a partitioning spec in "Incompatible table partitioning specification" errors.
    pub fn describe(&self) -> String {
        match self {
            Partitioning::None => "none".into(),
            Partitioning::Time {
                unit,
                field: Some(f),
            } => {
                format!(
                    "interval(type:{},field:{f})",
                    unit.name().to_ascii_lowercase()
                )
            }
            Partitioning::Time { unit, field: None } => {
                format!("interval(type:{})", unit.name().to_ascii_lowercase())
            }
            Partitioning::Range {
                field,
                start,
                end,
                interval,
            } => {
                format!("range(field:{field},start:{start},end:{end},interval:{interval})")
            }
        }
    }

    fn same_as(&self, other: &Partitioning) -> bool {
        match (self, other) {
            (
                Partitioning::Time { unit: a, field: fa },
                Partitioning::Time { unit: b, field: fb },
            ) => {
                let norm = |f: &Option<String>| {
                    f.as_deref()
                        .filter(|f| !f.eq_ignore_ascii_case("_PARTITIONTIME"))
                        .map(str::to_ascii_lowercase)
                };
                a == b && norm(fa) == norm(fb)
            }
            (
                Partitioning::Range {
                    field: fa,
                    start: sa,
                    end: ea,
                    interval: ia,
                },
                Partitioning::Range {
                    field: fb,
                    start: sb,
                    end: eb,
                    interval: ib,
                },
            ) => fa.eq_ignore_ascii_case(fb) && (sa, ea, ia) == (sb, eb, ib),
            _ => self == other,
        }
    }

    /// Parses `timePartitioning` / `rangePartitioning` JSON (as on tables.insert or a job configuration).
    pub fn from_json(
        time: Option<&Value>,
        range: Option<&Value>,
    ) -> Result<Partitioning, ApiError> {
        match (
            time.filter(|v| !v.is_null()),
            range.filter(|v| !v.is_null()),
        ) {
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "Cannot specify both time partitioning and range partitioning on a table",
            )),
            (Some(tp), None) => {
                let ty = get_str(tp, "type").unwrap_or("DAY");
                let unit = TimeUnit::parse(ty).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "Invalid time partitioning type {ty}; supported types are HOUR, DAY, MONTH and YEAR"
                    ))
                })?;
                let field = get_str(tp, "field")
                    .filter(|f| !f.is_empty() && !f.eq_ignore_ascii_case("_PARTITIONTIME"))
                    .map(str::to_string);
                Ok(Partitioning::Time { unit, field })
            }
            (None, Some(rp)) => {
                let field = get_str(rp, "field")
                    .ok_or_else(|| ApiError::invalid("rangePartitioning.field is required"))?
                    .to_string();
                let r = rp.get("range").cloned().unwrap_or(Value::Null);
                let (start, end, interval) = (
                    get_i64(&r, "start"),
                    get_i64(&r, "end"),
                    get_i64(&r, "interval"),
                );
                match (start, end, interval) {
                    (Some(start), Some(end), Some(interval)) if interval > 0 && end > start => {
                        Ok(Partitioning::Range {
                            field,
                            start,
                            end,
                            interval,
                        })
                    }
                    _ => Err(ApiError::invalid(
                        "rangePartitioning.range needs integer start < end and a positive interval",
                    )),
                }
            }
            (None, None) => Ok(Partitioning::None),
        }
    }

    /// The partitioning column, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Partitioning::None | Partitioning::Time { field: None, .. } => None,
            Partitioning::Time { field: Some(f), .. } => Some(f),
            Partitioning::Range { field, .. } => Some(field),
        }
    }
}

/// A table's metadata (everything but rows).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableMeta {
    /// Project id.
    pub project: String,
    /// Dataset id.
    pub dataset: String,
    /// Table id (undecorated).
    pub table: String,
    /// BigQuery schema.
    pub schema: Vec<FieldSchema>,
    /// Parsed partitioning.
    pub partitioning: Partitioning,
    /// `timePartitioning` as echoed (type filled in).
    pub time_partitioning: Option<Value>,
    /// `rangePartitioning` as echoed (int64s as strings).
    pub range_partitioning: Option<Value>,
    /// `clustering`, kept and echoed; rows are not physically clustered.
    pub clustering: Option<Value>,
    /// Creation time, epoch millis.
    pub creation_time: i64,
    /// Last modification, epoch millis.
    pub last_modified_time: i64,
    /// Other fields sent on insert (description, labels, friendlyName, expirationTime, ...), echoed back.
    #[serde(default)]
    pub extra: Map<String, Value>,
    /// The view definition when this is a logical view (`type: "VIEW"`), which holds no rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<ViewDef>,
}

/// A logical view: GoogleSQL text evaluated against the current tables each time it is queried.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ViewDef {
    /// The view's GoogleSQL query.
    pub query: String,
}

/// BigQuery's 400 (`invalid`) for an operation that needs storage applied to a view.
pub fn view_refused(action: &str, meta: &TableMeta) -> ApiError {
    ApiError::invalid(format!(
        "Cannot {action} a table of type VIEW: {}",
        meta.display()
    ))
}

impl TableMeta {
    /// `expirationTime` in ms since the epoch, if the table has one.
    pub fn expiration_ms(&self) -> Option<i64> {
        match self.extra.get("expirationTime")? {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// Validates and builds a table's metadata from REST-shaped parts.
    pub fn build(
        project: &str,
        dataset: &str,
        table: &str,
        schema: Vec<FieldSchema>,
        time_partitioning: Option<&Value>,
        range_partitioning: Option<&Value>,
        clustering: Option<&Value>,
    ) -> Result<(TableMeta, SchemaRef), ApiError> {
        validate_table_id(table)?;
        let arrow = data::to_arrow_schema(&schema).map_err(|e| ApiError::invalid(e.message))?;
        let partitioning = Partitioning::from_json(time_partitioning, range_partitioning)?;
        if let Some(field) = partitioning.field() {
            let col = schema.iter().find(|f| f.name.eq_ignore_ascii_case(field)).ok_or_else(|| {
                ApiError::invalid(format!(
                    "The field specified for partitioning cannot be found in the schema: {field}"
                ))
            })?;
            let ty = col.field_type.to_ascii_uppercase();
            match &partitioning {
                Partitioning::Time { .. }
                    if !matches!(ty.as_str(), "TIMESTAMP" | "DATE" | "DATETIME") =>
                {
                    return Err(ApiError::invalid(format!(
                        "The field specified for time partitioning can only be of type TIMESTAMP, DATE or DATETIME. The type found is: {ty}."
                    )));
                }
                Partitioning::Range { .. } if !matches!(ty.as_str(), "INTEGER" | "INT64") => {
                    return Err(ApiError::invalid(format!(
                        "The field specified for range partitioning can only be of type INTEGER. The type found is: {ty}."
                    )));
                }
                _ => {}
            }
        }
        let time_partitioning = match (&partitioning, time_partitioning) {
            (Partitioning::Time { unit, .. }, Some(tp)) => {
                let mut tp = tp.as_object().cloned().unwrap_or_default();
                tp.insert("type".into(), json!(unit.name()));
                Some(Value::Object(tp))
            }
            _ => None,
        };
        let range_partitioning = match &partitioning {
            Partitioning::Range {
                field,
                start,
                end,
                interval,
            } => Some(json!({
                "field": field,
                "range": {"start": start.to_string(), "end": end.to_string(), "interval": interval.to_string()},
            })),
            _ => None,
        };
        let now = now_millis();
        let meta = TableMeta {
            project: project.into(),
            dataset: dataset.into(),
            table: table.into(),
            schema,
            partitioning,
            time_partitioning,
            range_partitioning,
            clustering: clustering.filter(|v| !v.is_null()).cloned(),
            creation_time: now,
            last_modified_time: now,
            extra: Map::new(),
            view: None,
        };
        Ok((meta, arrow))
    }

    /// `p:d.t`, BigQuery's way of naming a table in messages.
    pub fn display(&self) -> String {
        format!("{}:{}.{}", self.project, self.dataset, self.table)
    }

    /// Checks a job's `timePartitioning`/`rangePartitioning` against the table's (BigQuery rejects any difference).
    pub fn check_job_partitioning(
        &self,
        time: Option<&Value>,
        range: Option<&Value>,
    ) -> Result<(), ApiError> {
        if time.is_none_or(Value::is_null) && range.is_none_or(Value::is_null) {
            return Ok(());
        }
        let given = Partitioning::from_json(time, range)?;
        if self.partitioning.same_as(&given) {
            return Ok(());
        }
        Err(ApiError::invalid(format!(
            "Incompatible table partitioning specification. Expects partitioning specification {}, but input partitioning specification is {}",
            self.partitioning.describe(),
            given.describe()
        )))
    }

    /// Maps a decorator (`20240115`, `__NULL__`, `40`, ...) to the partition id it addresses.
    pub fn resolve_decorator(&self, dec: &str) -> Result<String, ApiError> {
        let bad = |expect: &str| {
            ApiError::invalid(format!(
                "Invalid partition decorator \"{dec}\" for table {}: expected {expect}",
                self.display()
            ))
        };
        match &self.partitioning {
            Partitioning::None => Err(ApiError::invalid(format!(
                "Cannot read partition information from a table that is not partitioned: {}${dec}",
                self.display()
            ))),
            _ if dec == UNPARTITIONED => Ok(dec.to_string()),
            Partitioning::Time { field: None, unit } if dec == NULL_PARTITION => {
                Err(bad(unit.pattern()))
            }
            _ if dec == NULL_PARTITION => Ok(dec.to_string()),
            Partitioning::Time { unit, .. } => {
                if unit.valid_decorator(dec) {
                    Ok(dec.to_string())
                } else {
                    Err(bad(&format!(
                        "{} for {} partitioning",
                        unit.pattern(),
                        unit.name()
                    )))
                }
            }
            Partitioning::Range {
                start,
                end,
                interval,
                ..
            } => {
                let expect = format!(
                    "the start of an integer range partition in [{start}, {end}) step {interval}"
                );
                let v: i64 = dec.parse().map_err(|_| bad(&expect))?;
                if v < *start || v >= *end || (v - start) % interval != 0 {
                    return Err(bad(&expect));
                }
                Ok(v.to_string())
            }
        }
    }

    /// The REST `Table` resource (without row statistics; see [`Table::to_json`]).
    fn base_json(&self) -> Map<String, Value> {
        let mut v = self.extra.clone();
        v.insert("kind".into(), json!("bigquery#table"));
        v.insert(
            "id".into(),
            json!(format!("{}:{}.{}", self.project, self.dataset, self.table)),
        );
        v.insert("etag".into(), json!(etag(self.last_modified_time)));
        v.insert(
            "selfLink".into(),
            json!(format!(
                "/bigquery/v2/projects/{}/datasets/{}/tables/{}",
                self.project, self.dataset, self.table
            )),
        );
        v.insert(
            "tableReference".into(),
            json!({"projectId": self.project, "datasetId": self.dataset, "tableId": self.table}),
        );
        v.insert("schema".into(), json!({"fields": self.schema}));
        if let Some(tp) = &self.time_partitioning {
            v.insert("timePartitioning".into(), tp.clone());
        }
        if let Some(rp) = &self.range_partitioning {
            v.insert("rangePartitioning".into(), rp.clone());
        }
        if let Some(c) = &self.clustering {
            v.insert("clustering".into(), c.clone());
        }
        v.insert("creationTime".into(), json!(self.creation_time.to_string()));
        v.insert(
            "lastModifiedTime".into(),
            json!(self.last_modified_time.to_string()),
        );
        match &self.view {
            Some(view) => {
                v.insert("type".into(), json!("VIEW"));
                v.insert(
                    "view".into(),
                    json!({"query": view.query, "useLegacySql": false}),
                );
            }
            None => {
                v.insert("type".into(), json!("TABLE"));
            }
        }
        v
    }

    /// Whether this is a logical view.
    pub fn is_view(&self) -> bool {
        self.view.is_some()
    }
}

/// Rejects ids BigQuery would reject, in particular a stray `$` or `.`.
pub fn validate_table_id(table: &str) -> Result<(), ApiError> {
    let ok = !table.is_empty()
        && table.len() <= 1024
        && table
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Invalid table ID \"{table}\". Table IDs must be alphanumeric (plus underscores and dashes) and must be at most 1024 characters long."
        )))
    }
}

/// Splits `t$20240115` into `("t", Some("20240115"))`.
pub fn split_decorator(table_id: &str) -> (&str, Option<&str>) {
    match table_id.split_once('$') {
        Some((t, d)) => (t, Some(d)),
        None => (table_id, None),
    }
}

/// A table: metadata plus rows grouped by partition id.
#[derive(Clone, Debug)]
pub struct Table {
    /// Metadata.
    pub meta: TableMeta,
    /// Arrow form of `meta.schema`; every stored batch has exactly this schema.
    pub arrow: SchemaRef,
    /// partition id → batches in insertion order (`""` for a non-partitioned table). Empty partitions are removed.
    pub partitions: BTreeMap<String, Vec<RecordBatch>>,
    /// Changes when the table is (re)created, so a job prepared against an old incarnation re-validates.
    pub meta_version: u64,
    /// Changes on every mutation; the persister rewrites a table when it changes.
    pub generation: u64,
}

impl Table {
    /// Total rows.
    pub fn num_rows(&self) -> u64 {
        self.partitions
            .values()
            .flatten()
            .map(|b| b.num_rows() as u64)
            .sum()
    }

    /// Total logical bytes.
    pub fn num_bytes(&self) -> u64 {
        self.partitions
            .values()
            .flatten()
            .map(data::logical_bytes)
            .sum()
    }

    /// Batches of one partition, or of the whole table (in partition-id order) when `pid` is `None`.
    pub fn batches(&self, pid: Option<&str>) -> Vec<RecordBatch> {
        match pid {
            Some(p) => self.partitions.get(p).cloned().unwrap_or_default(),
            None => self.partitions.values().flatten().cloned().collect(),
        }
    }

    /// The REST `Table` resource.
    pub fn to_json(&self) -> Value {
        let mut v = self.meta.base_json();
        v.insert("numRows".into(), json!(self.num_rows().to_string()));
        v.insert("numBytes".into(), json!(self.num_bytes().to_string()));
        v.insert("numLongTermBytes".into(), json!("0"));
        if self.meta.partitioning != Partitioning::None {
            v.insert(
                "numPartitions".into(),
                json!(self.partitions.len().to_string()),
            );
        }
        v.insert("location".into(), json!(DEFAULT_LOCATION));
        Value::Object(v)
    }

    /// The `tables.list` entry.
    pub fn list_entry(&self) -> Value {
        let full = self.meta.base_json();
        let mut v = Map::new();
        for k in [
            "kind",
            "id",
            "tableReference",
            "type",
            "timePartitioning",
            "rangePartitioning",
            "clustering",
            "creationTime",
            "labels",
            "friendlyName",
            "expirationTime",
        ] {
            if let Some(x) = full.get(k) {
                v.insert(k.into(), x.clone());
            }
        }
        // BigQuery's TableList entries carry only `view.useLegacySql`, not the query text.
        if self.meta.is_view() {
            v.insert("view".into(), json!({"useLegacySql": false}));
        }
        Value::Object(v)
    }
}

/// All datasets and tables.
#[derive(Default)]
pub struct Catalog {
    /// Datasets by key.
    pub datasets: BTreeMap<DatasetKey, DatasetMeta>,
    /// Tables by key.
    pub tables: BTreeMap<TableKey, Table>,
    /// Remembered insertIds per table (process lifetime; see README).
    pub insert_ids: HashMap<TableKey, HashSet<String>>,
    counter: u64,
}

impl Catalog {
    /// A fresh version number (for `meta_version` / `generation`).
    pub fn next_version(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Raises the version counter past versions read back from disk.
    pub fn bump_counter(&mut self, at_least: u64) {
        self.counter = self.counter.max(at_least);
    }

    /// Creates a dataset from a `datasets.insert` body.
    pub fn insert_dataset(
        &mut self,
        project: &str,
        body: &Value,
    ) -> Result<&DatasetMeta, ApiError> {
        let reference = body.get("datasetReference").cloned().unwrap_or(Value::Null);
        let dataset = get_str(&reference, "datasetId")
            .ok_or_else(|| {
                ApiError::invalid("Required parameter is missing: datasetReference.datasetId")
            })?
            .to_string();
        if dataset.is_empty()
            || !dataset
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ApiError::invalid(format!(
                "Invalid dataset ID \"{dataset}\". Dataset IDs must be alphanumeric (plus underscores) and must be at most 1024 characters long."
            )));
        }
        let key = (project.to_string(), dataset.clone());
        if self.datasets.contains_key(&key) {
            return Err(ApiError::duplicate(format!(
                "Already Exists: Dataset {project}:{dataset}"
            )));
        }
        let mut extra = body.as_object().cloned().unwrap_or_default();
        for k in [
            "kind",
            "id",
            "etag",
            "selfLink",
            "datasetReference",
            "creationTime",
            "lastModifiedTime",
            "location",
        ] {
            extra.remove(k);
        }
        let now = now_millis();
        let meta = DatasetMeta {
            project: project.into(),
            dataset,
            location: get_str(body, "location")
                .unwrap_or(DEFAULT_LOCATION)
                .to_string(),
            creation_time: now,
            last_modified_time: now,
            extra,
        };
        Ok(self.datasets.entry(key).or_insert(meta))
    }

    /// A dataset, or BigQuery's 404.
    pub fn dataset(&self, project: &str, dataset: &str) -> Result<&DatasetMeta, ApiError> {
        self.datasets
            .get(&(project.to_string(), dataset.to_string()))
            .ok_or_else(|| ApiError::not_found(format!("Not found: Dataset {project}:{dataset}")))
    }

    /// A table, or BigQuery's 404 (dataset or table).
    pub fn table(&self, project: &str, dataset: &str, table: &str) -> Result<&Table, ApiError> {
        self.dataset(project, dataset)?;
        self.tables
            .get(&(project.to_string(), dataset.to_string(), table.to_string()))
            .ok_or_else(|| table_not_found(project, dataset, table))
    }

    /// A table for mutation, or BigQuery's 404.
    pub fn table_mut(
        &mut self,
        project: &str,
        dataset: &str,
        table: &str,
    ) -> Result<&mut Table, ApiError> {
        self.dataset(project, dataset)?;
        self.tables
            .get_mut(&(project.to_string(), dataset.to_string(), table.to_string()))
            .ok_or_else(|| table_not_found(project, dataset, table))
    }

    /// Creates a table from a `tables.insert` body.
    pub fn insert_table(
        &mut self,
        project: &str,
        dataset: &str,
        body: &Value,
    ) -> Result<&Table, ApiError> {
        self.dataset(project, dataset)?;
        let reference = body.get("tableReference").cloned().unwrap_or(Value::Null);
        let table = get_str(&reference, "tableId")
            .ok_or_else(|| {
                ApiError::invalid("Required parameter is missing: tableReference.tableId")
            })?
            .to_string();
        let key = (project.to_string(), dataset.to_string(), table.clone());
        if self.tables.contains_key(&key) {
            return Err(ApiError::duplicate(format!(
                "Already Exists: Table {project}:{dataset}.{table}"
            )));
        }
        if body.get("view").is_some_and(|v| !v.is_null()) {
            return Err(ApiError::invalid(
                "Views are created through the REST tables.insert, which validates their query",
            ));
        }
        let schema = parse_schema(body.get("schema"))?;
        let (mut meta, arrow) = TableMeta::build(
            project,
            dataset,
            &table,
            schema,
            body.get("timePartitioning"),
            body.get("rangePartitioning"),
            body.get("clustering"),
        )?;
        let mut extra = body.as_object().cloned().unwrap_or_default();
        for k in [
            "kind",
            "id",
            "etag",
            "selfLink",
            "tableReference",
            "schema",
            "timePartitioning",
            "rangePartitioning",
            "clustering",
            "creationTime",
            "lastModifiedTime",
            "numRows",
            "numBytes",
            "numLongTermBytes",
            "numPartitions",
            "type",
            "location",
            "view",
        ] {
            extra.remove(k);
        }
        meta.extra = extra;
        Ok(self.put_new_table(meta, arrow))
    }

    /// Checks that `table` can be created in `dataset` (dataset exists, valid id, no such table yet).
    pub fn check_new_table(
        &self,
        project: &str,
        dataset: &str,
        table: &str,
    ) -> Result<(), ApiError> {
        self.dataset(project, dataset)?;
        validate_table_id(table)?;
        if self
            .tables
            .contains_key(&(project.to_string(), dataset.to_string(), table.to_string()))
        {
            return Err(ApiError::duplicate(format!(
                "Already Exists: Table {project}:{dataset}.{table}"
            )));
        }
        Ok(())
    }

    /// Creates a view from a `tables.insert` body whose query the caller has validated; `schema` is the
    /// query's result schema, which BigQuery reports as the view's schema.
    pub fn insert_view(
        &mut self,
        project: &str,
        dataset: &str,
        table: &str,
        body: &Value,
        query: &str,
        schema: Vec<FieldSchema>,
    ) -> Result<&Table, ApiError> {
        self.check_new_table(project, dataset, table)?;
        let (mut meta, arrow) =
            TableMeta::build(project, dataset, table, schema, None, None, None)?;
        let mut extra = Map::new();
        for k in ["description", "labels", "friendlyName", "expirationTime"] {
            if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
                extra.insert(k.into(), v.clone());
            }
        }
        meta.extra = extra;
        meta.view = Some(ViewDef {
            query: query.to_string(),
        });
        Ok(self.put_new_table(meta, arrow))
    }

    /// Stores a freshly built table (the caller checked it does not exist).
    pub fn put_new_table(&mut self, meta: TableMeta, arrow: SchemaRef) -> &Table {
        let version = self.next_version();
        let key = (
            meta.project.clone(),
            meta.dataset.clone(),
            meta.table.clone(),
        );
        self.insert_ids.remove(&key);
        self.tables.insert(
            key.clone(),
            Table {
                meta,
                arrow,
                partitions: BTreeMap::new(),
                meta_version: version,
                generation: version,
            },
        );
        &self.tables[&key]
    }

    /// Drops every table whose `expirationTime` (ms since the epoch, sent as
    /// a string or a number) is at or before `now_ms`, as BigQuery deletes an
    /// expired table. Returns how many were dropped.
    pub fn drop_expired(&mut self, now_ms: i64) -> usize {
        let expired: Vec<TableKey> = self
            .tables
            .iter()
            .filter(|(_, t)| t.meta.expiration_ms().is_some_and(|at| at <= now_ms))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            self.tables.remove(key);
            self.insert_ids.remove(key);
        }
        expired.len()
    }

    /// Deletes a table.
    pub fn delete_table(
        &mut self,
        project: &str,
        dataset: &str,
        table: &str,
    ) -> Result<(), ApiError> {
        self.table(project, dataset, table)?;
        let key = (project.to_string(), dataset.to_string(), table.to_string());
        self.tables.remove(&key);
        self.insert_ids.remove(&key);
        Ok(())
    }

    /// Deletes a dataset (with its tables when `delete_contents`).
    pub fn delete_dataset(
        &mut self,
        project: &str,
        dataset: &str,
        delete_contents: bool,
    ) -> Result<(), ApiError> {
        self.dataset(project, dataset)?;
        let in_ds = |k: &TableKey| k.0 == project && k.1 == dataset;
        if !delete_contents && self.tables.keys().any(in_ds) {
            return Err(ApiError::new(
                400,
                "resourceInUse",
                format!("Dataset {project}:{dataset} is still in use"),
            ));
        }
        self.tables.retain(|k, _| !in_ds(k));
        self.insert_ids.retain(|k, _| !in_ds(k));
        self.datasets
            .remove(&(project.to_string(), dataset.to_string()));
        Ok(())
    }
}

/// Parses a REST `TableSchema` (`{"fields": [...]}`); absent means no columns.
/// BigQuery's 404 for a missing table.
fn table_not_found(project: &str, dataset: &str, table: &str) -> ApiError {
    ApiError::not_found(format!("Not found: Table {project}:{dataset}.{table}"))
}

pub fn parse_schema(v: Option<&Value>) -> Result<Vec<FieldSchema>, ApiError> {
    match v.and_then(|s| s.get("fields")) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(fields) => serde_json::from_value(fields.clone())
            .map(legacy_type_names)
            .map_err(|e| ApiError::invalid(format!("Invalid schema: {e}"))),
    }
}

/// BigQuery stores and reports schemas with the legacy type names: a table
/// created with `INT64` comes back from tables.get as `INTEGER` (likewise
/// FLOAT64 → FLOAT, BOOL → BOOLEAN, STRUCT → RECORD).
fn legacy_type_names(fields: Vec<FieldSchema>) -> Vec<FieldSchema> {
    fields
        .into_iter()
        .map(|mut f| {
            if f.field_type.eq_ignore_ascii_case("STRUCT")
                || f.field_type.eq_ignore_ascii_case("RECORD")
            {
                f.field_type = "RECORD".into();
            } else if let Some(t) = crate::data::BqType::from_name(&f.field_type) {
                f.field_type = t.legacy_name().into();
            }
            f.fields = f.fields.map(legacy_type_names);
            f
        })
        .collect()
}

/// Reads the partitioning column of `batch` as epoch microseconds (time) or integers (range).
fn column_values(batch: &RecordBatch, field: &str) -> Result<(ArrayRef, bool), ApiError> {
    let idx = batch
        .schema()
        .fields()
        .iter()
        .position(|f| f.name().eq_ignore_ascii_case(field))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "The partitioning field {field} is missing from the rows"
            ))
        })?;
    let col = batch.column(idx);
    let cast_err = |e: datafusion::arrow::error::ArrowError| {
        ApiError::internal(format!("partition column: {e}"))
    };
    match col.data_type() {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => {
            // Stored timestamps are UTC instants, so dropping the zone keeps the epoch value.
            let micros = cast(col, &DataType::Timestamp(ArrowTimeUnit::Microsecond, None))
                .map_err(cast_err)?;
            Ok((micros, true))
        }
        _ => Ok((cast(col, &DataType::Int64).map_err(cast_err)?, false)),
    }
}

/// Splits rows by their partition (column-partitioned tables only); returns `(partition id, rows)` in
/// first-seen order, preserving row order within a partition.
pub fn split_by_partition(
    meta: &TableMeta,
    batch: &RecordBatch,
) -> Result<Vec<(String, RecordBatch)>, ApiError> {
    let Some(field) = meta.partitioning.field() else {
        return Err(ApiError::internal(
            "split_by_partition on a table without a partitioning column",
        ));
    };
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let (values, is_time) = column_values(batch, field)?;
    let pid_of = |i: usize| -> String {
        if values.is_null(i) {
            return NULL_PARTITION.to_string();
        }
        match (&meta.partitioning, is_time) {
            (Partitioning::Time { unit, .. }, true) => {
                let a = values
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .expect("cast to micros");
                unit.bucket_micros(a.value(i))
            }
            (
                Partitioning::Range {
                    start,
                    end,
                    interval,
                    ..
                },
                false,
            ) => {
                let v = values
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("cast to int64")
                    .value(i);
                if v < *start || v >= *end {
                    UNPARTITIONED.to_string()
                } else {
                    (start + (v - start) / interval * interval).to_string()
                }
            }
            _ => UNPARTITIONED.to_string(),
        }
    };
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 0..batch.num_rows() {
        let pid = pid_of(i);
        let g = groups.entry(pid.clone()).or_insert_with(|| {
            order.push(pid);
            Vec::new()
        });
        g.push(i as u32);
    }
    if order.len() == 1 {
        return Ok(vec![(order.remove(0), batch.clone())]);
    }
    order
        .into_iter()
        .map(|pid| {
            let idx = UInt32Array::from(groups.remove(&pid).unwrap_or_default());
            let part = take_record_batch(batch, &idx)
                .map_err(|e| ApiError::internal(format!("split rows: {e}")))?;
            Ok((pid, part))
        })
        .collect()
}

/// Rebuilds a batch on exactly `schema` (same columns already), so all stored batches share one schema.
pub fn rebase(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ApiError> {
    if batch.schema() == *schema {
        return Ok(batch);
    }
    RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec())
        .map_err(|e| ApiError::invalid(format!("Provided Schema does not match Table: {e}")))
}
