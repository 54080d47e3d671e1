//! Typed data layer: BigQuery schemas <-> Arrow schemas, row ingestion (insertAll JSON, NDJSON, CSV),
//! REST wire encoding of result rows, logical byte accounting and schema conformance.
//!
//! Type mapping (BigQuery -> Arrow): INT64 -> Int64, FLOAT64 -> Float64, NUMERIC/BIGNUMERIC -> Float64
//! (the emulator has no exact decimal type; values keep f64 precision), BOOL -> Boolean, STRING/JSON/GEOGRAPHY
//! -> Utf8, BYTES -> Binary, DATE -> Date32, TIMESTAMP -> Timestamp(Microsecond, "UTC"),
//! DATETIME -> Timestamp(Microsecond, None), TIME -> Time64(Microsecond). The BigQuery type name travels in the
//! field metadata (`bigquery:type`) so NUMERIC stays NUMERIC when a schema goes back to JSON.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Float64Array, Int64Array,
    StringArray, Time64MicrosecondArray, TimestampMicrosecondArray, new_null_array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
pub use datafusion::arrow::datatypes::{Schema, SchemaRef};
pub use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::FormatOptions;
use serde_json::Value as Json;

/// Field metadata key holding the BigQuery type name.
pub(crate) const META_TYPE: &str = "bigquery:type";
/// Field metadata key holding the column description.
const META_DESCRIPTION: &str = "bigquery:description";

/// BigQuery TableFieldSchema JSON: {"name","type","mode","fields","description"}.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldSchema {
    /// Column name.
    pub name: String,
    /// BigQuery type name: INTEGER/INT64, FLOAT/FLOAT64, NUMERIC, BIGNUMERIC, BOOLEAN/BOOL, STRING, BYTES,
    /// DATE, DATETIME, TIME, TIMESTAMP, JSON, GEOGRAPHY. RECORD/STRUCT are rejected by [`to_arrow_schema`].
    #[serde(rename = "type")]
    pub field_type: String,
    /// NULLABLE | REQUIRED | REPEATED (REPEATED is rejected by [`to_arrow_schema`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Nested fields of a RECORD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldSchema>>,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A data conversion failure (bad schema, bad value, incompatible schemas).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DataError {
    /// BigQuery error reason; always "invalid".
    pub reason: &'static str,
    /// BigQuery-style message.
    pub message: String,
}

fn invalid(message: impl Into<String>) -> DataError {
    DataError {
        reason: "invalid",
        message: message.into(),
    }
}

/// CSV load options (the subset of JobConfigurationLoad the emulator honours).
#[derive(Clone, Debug)]
pub struct CsvOptions {
    /// Rows (records) to skip at the top of the file, e.g. a header.
    pub skip_leading_rows: usize,
    /// Field delimiter byte (BigQuery splits on the first byte of the delimiter).
    pub field_delimiter: u8,
    /// Whether quoted fields may contain newlines.
    pub allow_quoted_newlines: bool,
    /// Whether rows may lack trailing optional columns (they become NULL).
    pub allow_jagged_rows: bool,
    /// String standing for NULL; `None` means the empty string (BigQuery's default).
    pub null_marker: Option<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            skip_leading_rows: 0,
            field_delimiter: b',',
            allow_quoted_newlines: false,
            allow_jagged_rows: false,
            null_marker: None,
        }
    }
}

/// The BigQuery scalar types the emulator stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BqType {
    Int64,
    Float64,
    Numeric,
    BigNumeric,
    Bool,
    String,
    Bytes,
    Date,
    Datetime,
    Time,
    Timestamp,
    Json,
    Geography,
}

impl BqType {
    /// Parses a TableFieldSchema type name (legacy or standard spelling).
    pub(crate) fn from_name(name: &str) -> Option<BqType> {
        Some(match name.to_ascii_uppercase().as_str() {
            "INTEGER" | "INT64" => BqType::Int64,
            "FLOAT" | "FLOAT64" => BqType::Float64,
            "NUMERIC" | "DECIMAL" => BqType::Numeric,
            "BIGNUMERIC" | "BIGDECIMAL" => BqType::BigNumeric,
            "BOOLEAN" | "BOOL" => BqType::Bool,
            "STRING" => BqType::String,
            "BYTES" => BqType::Bytes,
            "DATE" => BqType::Date,
            "DATETIME" => BqType::Datetime,
            "TIME" => BqType::Time,
            "TIMESTAMP" => BqType::Timestamp,
            "JSON" => BqType::Json,
            "GEOGRAPHY" => BqType::Geography,
            _ => return None,
        })
    }

    /// The name BigQuery's REST API reports in schemas (legacy spelling).
    pub(crate) fn legacy_name(self) -> &'static str {
        match self {
            BqType::Int64 => "INTEGER",
            BqType::Float64 => "FLOAT",
            BqType::Numeric => "NUMERIC",
            BqType::BigNumeric => "BIGNUMERIC",
            BqType::Bool => "BOOLEAN",
            BqType::String => "STRING",
            BqType::Bytes => "BYTES",
            BqType::Date => "DATE",
            BqType::Datetime => "DATETIME",
            BqType::Time => "TIME",
            BqType::Timestamp => "TIMESTAMP",
            BqType::Json => "JSON",
            BqType::Geography => "GEOGRAPHY",
        }
    }

    /// The GoogleSQL spelling used in error messages.
    pub(crate) fn sql_name(self) -> &'static str {
        match self {
            BqType::Int64 => "INT64",
            BqType::Float64 => "FLOAT64",
            BqType::Bool => "BOOL",
            other => other.legacy_name(),
        }
    }

    pub(crate) fn arrow_type(self) -> DataType {
        match self {
            BqType::Int64 => DataType::Int64,
            BqType::Float64 | BqType::Numeric | BqType::BigNumeric => DataType::Float64,
            BqType::Bool => DataType::Boolean,
            BqType::String | BqType::Json | BqType::Geography => DataType::Utf8,
            BqType::Bytes => DataType::Binary,
            BqType::Date => DataType::Date32,
            BqType::Datetime => DataType::Timestamp(TimeUnit::Microsecond, None),
            BqType::Time => DataType::Time64(TimeUnit::Microsecond),
            BqType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    /// The BigQuery type of an Arrow type, ignoring metadata.
    pub(crate) fn from_arrow(dt: &DataType) -> Option<BqType> {
        Some(match dt {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Null => BqType::Int64,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => BqType::Float64,
            DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) => {
                BqType::Numeric
            }
            DataType::Decimal256(..) => BqType::BigNumeric,
            DataType::Boolean => BqType::Bool,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => BqType::String,
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => BqType::Bytes,
            DataType::Date32 | DataType::Date64 => BqType::Date,
            DataType::Timestamp(_, Some(_)) => BqType::Timestamp,
            DataType::Timestamp(_, None) => BqType::Datetime,
            DataType::Time32(_) | DataType::Time64(_) => BqType::Time,
            _ => return None,
        })
    }

    /// The BigQuery type of an Arrow field, honouring the type metadata when it agrees with the Arrow type.
    pub(crate) fn of_field(field: &Field) -> Option<BqType> {
        let base = BqType::from_arrow(field.data_type())?;
        let declared = field
            .metadata()
            .get(META_TYPE)
            .and_then(|n| BqType::from_name(n));
        match declared {
            Some(d) if d.arrow_type() == canonical_type(field.data_type()) => Some(d),
            _ => Some(base),
        }
    }
}

/// The storage type an Arrow type is normalised to before encoding.
fn canonical_type(dt: &DataType) -> DataType {
    match BqType::from_arrow(dt) {
        Some(t) => t.arrow_type(),
        None => dt.clone(),
    }
}

/// BigQuery schema -> Arrow schema. REQUIRED -> non-nullable; the type name and description travel in the
/// field metadata. RECORD/STRUCT and REPEATED fields are not supported by the emulator.
pub fn to_arrow_schema(fields: &[FieldSchema]) -> Result<SchemaRef, DataError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        if !valid_field_name(&f.name) {
            return Err(invalid(format!(
                "Invalid field name \"{}\". Fields must contain only letters, numbers, and underscores, start with a \
                 letter or underscore, and be at most 300 characters long.",
                f.name
            )));
        }
        if !seen.insert(f.name.to_ascii_lowercase()) {
            return Err(invalid(format!(
                "Field {} already exists in schema",
                f.name
            )));
        }
        let mode = f.mode.as_deref().unwrap_or("NULLABLE").to_ascii_uppercase();
        let nullable = match mode.as_str() {
            "NULLABLE" => true,
            "REQUIRED" => false,
            "REPEATED" => {
                return Err(invalid(format!(
                    "Field {}: REPEATED fields are not supported by the bq-emulator",
                    f.name
                )));
            }
            other => {
                return Err(invalid(format!(
                    "Invalid mode {other} for field {}",
                    f.name
                )));
            }
        };
        let upper = f.field_type.to_ascii_uppercase();
        if upper == "RECORD"
            || upper == "STRUCT"
            || f.fields.as_ref().is_some_and(|v| !v.is_empty())
        {
            return Err(invalid(format!(
                "Field {}: RECORD/STRUCT fields are not supported by the bq-emulator",
                f.name
            )));
        }
        let t = BqType::from_name(&f.field_type).ok_or_else(|| {
            invalid(format!(
                "Invalid field type {} for field {}",
                f.field_type, f.name
            ))
        })?;
        let mut meta = HashMap::new();
        meta.insert(META_TYPE.to_string(), t.legacy_name().to_string());
        if let Some(d) = &f.description {
            meta.insert(META_DESCRIPTION.to_string(), d.clone());
        }
        out.push(Field::new(&f.name, t.arrow_type(), nullable).with_metadata(meta));
    }
    Ok(Arc::new(Schema::new(out)))
}

fn valid_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    name.len() <= 300 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Arrow schema -> BigQuery schema (legacy type names as the REST API reports them; non-nullable ->
/// REQUIRED, otherwise NULLABLE). Unknown Arrow types are reported as STRING.
pub fn from_arrow_schema(schema: &Schema) -> Vec<FieldSchema> {
    schema
        .fields()
        .iter()
        .map(|f| FieldSchema {
            name: f.name().clone(),
            field_type: BqType::of_field(f)
                .map_or("STRING", |t| t.legacy_name())
                .to_string(),
            mode: Some(
                if f.is_nullable() {
                    "NULLABLE"
                } else {
                    "REQUIRED"
                }
                .to_string(),
            ),
            fields: None,
            description: f.metadata().get(META_DESCRIPTION).cloned(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Cells: one typed value, the unit every conversion goes through.

/// One scalar value in storage representation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since the epoch, UTC.
    Ts(i64),
    /// Microseconds since 1970-01-01T00:00:00 of a civil datetime.
    Dt(i64),
    /// Microseconds since midnight.
    Time(i64),
}

/// Casts an array to the storage type of its BigQuery type (e.g. Int32 -> Int64, Utf8View -> Utf8).
pub(crate) fn canonical_array(array: &ArrayRef) -> Result<ArrayRef, String> {
    let target = canonical_type(array.data_type());
    if &target == array.data_type() {
        return Ok(array.clone());
    }
    if matches!(array.data_type(), DataType::Null) {
        return Ok(new_null_array(&target, array.len()));
    }
    let opts = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    cast_with_options(array, &target, &opts).map_err(|e| e.to_string())
}

/// Reads one cell of a canonical array (see [`canonical_array`]).
pub(crate) fn read_cell(array: &dyn Array, row: usize) -> Cell {
    use datafusion::arrow::datatypes::TimestampMicrosecondType;
    use datafusion::arrow::datatypes::{Date32Type, Float64Type, Int64Type, Time64MicrosecondType};
    if array.is_null(row) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        DataType::Utf8 => Cell::Str(array.as_string::<i32>().value(row).to_string()),
        DataType::Binary => Cell::Bytes(array.as_binary::<i32>().value(row).to_vec()),
        DataType::Date32 => Cell::Date(array.as_primitive::<Date32Type>().value(row)),
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => {
            Cell::Ts(array.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            Cell::Dt(array.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            Cell::Time(array.as_primitive::<Time64MicrosecondType>().value(row))
        }
        _ => {
            let s = datafusion::arrow::util::display::array_value_to_string(array, row)
                .unwrap_or_default();
            Cell::Str(s)
        }
    }
}

/// Builds an array of a canonical type from cells. Cells must already have the matching variant.
pub(crate) fn build_array(dt: &DataType, cells: &[Cell]) -> Result<ArrayRef, String> {
    fn bad(c: &Cell, dt: &DataType) -> String {
        format!("internal: cell {c:?} does not fit column type {dt}")
    }
    Ok(match dt {
        DataType::Int64 => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Null => Ok(None),
                    Cell::Int(v) => Ok(Some(*v)),
                    c => Err(bad(c, dt)),
                })
                .collect::<Result<Int64Array, _>>()?,
        ),
        DataType::Float64 => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Null => Ok(None),
                    Cell::Float(v) => Ok(Some(*v)),
                    Cell::Int(v) => Ok(Some(*v as f64)),
                    c => Err(bad(c, dt)),
                })
                .collect::<Result<Float64Array, _>>()?,
        ),
        DataType::Boolean => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Null => Ok(None),
                    Cell::Bool(v) => Ok(Some(*v)),
                    c => Err(bad(c, dt)),
                })
                .collect::<Result<BooleanArray, _>>()?,
        ),
        DataType::Utf8 => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Null => Ok(None),
                    Cell::Str(v) => Ok(Some(v.as_str())),
                    c => Err(bad(c, dt)),
                })
                .collect::<Result<StringArray, _>>()?,
        ),
        DataType::Binary => {
            let v = cells
                .iter()
                .map(|c| match c {
                    Cell::Null => Ok(None),
                    Cell::Bytes(v) => Ok(Some(v.as_slice())),
                    c => Err(bad(c, dt)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(BinaryArray::from_opt_vec(v))
        }
        DataType::Date32 => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Null => Ok(None),
                    Cell::Date(v) => Ok(Some(*v)),
                    c => Err(bad(c, dt)),
                })
                .collect::<Result<Date32Array, _>>()?,
        ),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let a = cells
                .iter()
                .map(|c| match (c, tz.is_some()) {
                    (Cell::Null, _) => Ok(None),
                    (Cell::Ts(v), true) | (Cell::Dt(v), false) => Ok(Some(*v)),
                    (c, _) => Err(bad(c, dt)),
                })
                .collect::<Result<TimestampMicrosecondArray, _>>()?;
            Arc::new(a.with_timezone_opt(tz.clone()))
        }
        DataType::Time64(TimeUnit::Microsecond) => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Null => Ok(None),
                    Cell::Time(v) => Ok(Some(*v)),
                    c => Err(bad(c, dt)),
                })
                .collect::<Result<Time64MicrosecondArray, _>>()?,
        ),
        other => return Err(format!("internal: unsupported column type {other}")),
    })
}

// ---------------------------------------------------------------------------------------------------------
// Date and time parsing / formatting shared with the SQL engine.

const MICROS_PER_SEC: i64 = 1_000_000;
/// Microseconds in a civil day.
pub(crate) const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;

fn epoch_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid epoch")
}

/// Days since the epoch of a date.
pub(crate) fn date_to_days(d: NaiveDate) -> i32 {
    (d - epoch_date()).num_days() as i32
}

/// The date of a day number; `None` outside chrono's range.
pub(crate) fn days_to_date(days: i32) -> Option<NaiveDate> {
    epoch_date().checked_add_signed(chrono::Duration::days(days as i64))
}

/// Civil datetime of a microsecond count (DATETIME storage or a UTC TIMESTAMP).
pub(crate) fn micros_to_naive(micros: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(micros).map(|d| d.naive_utc())
}

/// Microseconds of a civil datetime taken as UTC.
pub(crate) fn naive_to_micros(dt: NaiveDateTime) -> i64 {
    dt.and_utc().timestamp_micros()
}

/// True for dates in BigQuery's supported range 0001-01-01 ..= 9999-12-31.
pub(crate) fn in_bq_range(d: NaiveDate) -> bool {
    (1..=9999).contains(&d.year())
}

/// Time zone of a parsed timestamp string.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Zone {
    Offset(i32),
    Named(chrono_tz::Tz),
}

impl Zone {
    /// Parses "UTC", "Z", "+05:30", "-8", "+0530" or an IANA name such as "America/New_York".
    pub(crate) fn parse(s: &str) -> Option<Zone> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("utc") || s.eq_ignore_ascii_case("z") {
            return Some(Zone::Offset(0));
        }
        if let Some(rest) = s.strip_prefix("UTC").or_else(|| s.strip_prefix("utc"))
            && (rest.starts_with('+') || rest.starts_with('-'))
        {
            return parse_offset(rest).map(Zone::Offset);
        }
        if s.starts_with('+') || s.starts_with('-') {
            return parse_offset(s).map(Zone::Offset);
        }
        s.parse::<chrono_tz::Tz>().ok().map(Zone::Named)
    }

    /// UTC microseconds of a civil datetime in this zone (earliest instant when ambiguous).
    pub(crate) fn to_utc_micros(self, local: NaiveDateTime) -> Option<i64> {
        match self {
            Zone::Offset(secs) => Some(naive_to_micros(local) - secs as i64 * MICROS_PER_SEC),
            Zone::Named(tz) => {
                let r = tz.from_local_datetime(&local);
                let dt = r.earliest().or_else(|| {
                    // A civil time inside a DST gap: BigQuery moves forward by the gap.
                    tz.from_local_datetime(&(local + chrono::Duration::hours(1)))
                        .earliest()
                })?;
                Some(dt.timestamp_micros())
            }
        }
    }

    /// Civil datetime of a UTC instant in this zone.
    pub(crate) fn to_local(self, micros: i64) -> Option<NaiveDateTime> {
        match self {
            Zone::Offset(secs) => {
                micros_to_naive(micros.checked_add(secs as i64 * MICROS_PER_SEC)?)
            }
            Zone::Named(tz) => {
                DateTime::from_timestamp_micros(micros).map(|d| d.with_timezone(&tz).naive_local())
            }
        }
    }
}

/// "+HH", "+H", "+HH:MM", "+HHMM" -> seconds east of UTC.
fn parse_offset(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = if let Some((h, m)) = rest.split_once(':') {
        (h, m)
    } else if rest.len() == 4 {
        (&rest[..2], &rest[2..])
    } else {
        (rest, "0")
    };
    if h.is_empty() || h.len() > 2 || m.is_empty() || m.len() > 2 {
        return None;
    }
    if !h.bytes().all(|b| b.is_ascii_digit()) || !m.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// A parsed "date[ time][ zone]" string.
pub(crate) struct Civil {
    pub(crate) date: NaiveDate,
    pub(crate) time: Option<NaiveTime>,
    pub(crate) zone: Option<Zone>,
}

fn take_digits(s: &str, min: usize, max: usize) -> Option<(u32, &str)> {
    let n = s.bytes().take_while(|b| b.is_ascii_digit()).count();
    if n < min || n > max {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

/// Parses "HH:MM[:SS[.f{1,9}]]" (fraction truncated to microseconds) returning the rest of the input.
fn parse_time_prefix(s: &str) -> Option<(NaiveTime, &str)> {
    let (h, rest) = take_digits(s, 1, 2)?;
    let rest = rest.strip_prefix(':')?;
    let (mi, mut rest) = take_digits(rest, 2, 2)?;
    let mut sec = 0;
    let mut micros = 0;
    if let Some(r) = rest.strip_prefix(':') {
        let (s2, r) = take_digits(r, 2, 2)?;
        sec = s2;
        rest = r;
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(|b| b.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return None;
            }
            let mut digits = r[..n].to_string();
            digits.truncate(6);
            while digits.len() < 6 {
                digits.push('0');
            }
            micros = digits.parse().ok()?;
            rest = &r[n..];
        }
    }
    Some((NaiveTime::from_hms_micro_opt(h, mi, sec, micros)?, rest))
}

/// Parses "Y-M-D[( |T)H:MM[:SS[.ffffff]]][ ][zone]" as BigQuery's canonical formats allow.
pub(crate) fn parse_civil(s: &str) -> Option<Civil> {
    let s = s.trim();
    let (y, rest) = take_digits(s, 1, 4)?;
    let rest = rest.strip_prefix('-')?;
    let (m, rest) = take_digits(rest, 1, 2)?;
    let rest = rest.strip_prefix('-')?;
    let (d, rest) = take_digits(rest, 1, 2)?;
    let date = NaiveDate::from_ymd_opt(y as i32, m, d)?;
    if !in_bq_range(date) {
        return None;
    }
    if rest.is_empty() {
        return Some(Civil {
            date,
            time: None,
            zone: None,
        });
    }
    let rest = rest
        .strip_prefix('T')
        .or_else(|| rest.strip_prefix('t'))
        .or_else(|| rest.strip_prefix(' '))?;
    let (time, rest) = parse_time_prefix(rest)?;
    let zone_text = rest.trim_start();
    if zone_text.is_empty() {
        return Some(Civil {
            date,
            time: Some(time),
            zone: None,
        });
    }
    if zone_text.len() == rest.len() && !(rest.starts_with(['+', '-', 'Z', 'z'])) {
        // Named zones and "UTC" need a separating space.
        return None;
    }
    Some(Civil {
        date,
        time: Some(time),
        zone: Some(Zone::parse(zone_text)?),
    })
}

/// Parses a DATE string "YYYY-MM-DD" (one-digit month/day allowed).
pub(crate) fn parse_date(s: &str) -> Option<i32> {
    let c = parse_civil(s)?;
    if c.time.is_some() || c.zone.is_some() {
        return None;
    }
    Some(date_to_days(c.date))
}

/// Parses a DATETIME string "YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]]".
pub(crate) fn parse_datetime(s: &str) -> Option<i64> {
    let c = parse_civil(s)?;
    if c.zone.is_some() {
        return None;
    }
    Some(naive_to_micros(
        c.date.and_time(c.time.unwrap_or(NaiveTime::MIN)),
    ))
}

/// Parses a TIMESTAMP string; without a zone the time is UTC (or `default_zone`).
pub(crate) fn parse_timestamp_in(s: &str, default_zone: Zone) -> Option<i64> {
    let c = parse_civil(s)?;
    let local = c.date.and_time(c.time.unwrap_or(NaiveTime::MIN));
    c.zone.unwrap_or(default_zone).to_utc_micros(local)
}

/// Parses a TIMESTAMP string with UTC as the default zone.
pub(crate) fn parse_timestamp(s: &str) -> Option<i64> {
    parse_timestamp_in(s, Zone::Offset(0))
}

/// Parses a TIME string "HH:MM[:SS[.ffffff]]".
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    let (t, rest) = parse_time_prefix(s.trim())?;
    if !rest.is_empty() {
        return None;
    }
    Some(time_to_micros(t))
}

pub(crate) fn time_to_micros(t: NaiveTime) -> i64 {
    t.num_seconds_from_midnight() as i64 * MICROS_PER_SEC + (t.nanosecond() / 1000) as i64
}

/// Exact decimal seconds ("1705287600.5", "1.7052876E9", "-12") -> microseconds, rounded half away from
/// zero at the microsecond.
pub(crate) fn parse_decimal_seconds(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits: String = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    // value = digits * 10^(exp - frac_len); micros = value * 10^6
    let scale = exp - frac_part.len() as i32 + 6;
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() as i32 + scale > 20 {
        return None;
    }
    let mut v: i128 = 0;
    let keep = if scale >= 0 {
        digits.len()
    } else {
        (digits.len() as i32 + scale).max(0) as usize
    };
    for b in digits[..keep].bytes() {
        v = v * 10 + (b - b'0') as i128;
    }
    if scale > 0 {
        v *= 10i128.pow(scale as u32);
    } else if digits.len() as i32 + scale >= 0
        && keep < digits.len()
        && digits.as_bytes()[keep] >= b'5'
    {
        v += 1;
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

pub(crate) fn format_date(days: i32) -> String {
    match days_to_date(days) {
        Some(d) => format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day()),
        None => days.to_string(),
    }
}

fn fraction_suffix(micros_of_second: u32, trim: bool) -> String {
    if micros_of_second == 0 {
        return String::new();
    }
    let mut s = format!(".{micros_of_second:06}");
    if trim {
        while s.ends_with('0') {
            s.pop();
        }
    }
    s
}

/// "YYYY-MM-DD<sep>HH:MM:SS[.ffffff]" of a civil datetime (six fraction digits when not whole).
pub(crate) fn format_naive(dt: NaiveDateTime, sep: char, trim: bool) -> String {
    format!(
        "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}{}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        fraction_suffix(dt.nanosecond() / 1000, trim)
    )
}

pub(crate) fn format_time(micros: i64) -> String {
    let secs = micros.div_euclid(MICROS_PER_SEC);
    let frac = micros.rem_euclid(MICROS_PER_SEC) as u32;
    format!(
        "{:02}:{:02}:{:02}{}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        fraction_suffix(frac, false)
    )
}

/// Java `Double.toString`-style rendering of `±0.d1d2...×10^(exp+1)` given the significant digits
/// (`digits`, no leading zeros) and the decimal exponent of the first digit. This is how BigQuery renders
/// FLOAT64 and TIMESTAMP values on the wire ("1.7052876E9", "0.5", "1.0E-5").
fn java_style(neg: bool, digits: &str, exp: i32) -> String {
    let digits = digits.trim_end_matches('0');
    let sign = if neg { "-" } else { "" };
    if digits.is_empty() {
        return format!("{sign}0.0");
    }
    if (-3..7).contains(&exp) {
        if exp >= 0 {
            let e = exp as usize;
            let (int, frac) = if digits.len() > e + 1 {
                (digits[..=e].to_string(), digits[e + 1..].to_string())
            } else {
                (format!("{digits:0<width$}", width = e + 1), "0".to_string())
            };
            format!("{sign}{int}.{frac}")
        } else {
            let zeros = "0".repeat((-exp - 1) as usize);
            format!("{sign}0.{zeros}{digits}")
        }
    } else {
        let rest = if digits.len() > 1 { &digits[1..] } else { "0" };
        format!("{sign}{}.{rest}E{exp}", &digits[..1])
    }
}

/// FLOAT64 wire string: shortest round-trip digits, Java style; NaN/Infinity as BigQuery sends them.
pub(crate) fn format_float_wire(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    java_style(f.is_sign_negative(), &digits, exp.parse().unwrap_or(0))
}

/// TIMESTAMP wire string: exact float seconds ("1.705287600123456E9"), which `float()` parses to the
/// microsecond.
pub(crate) fn format_ts_float(micros: i64) -> String {
    let neg = micros < 0;
    let abs = (micros as i128).abs();
    let digits = abs.to_string();
    let exp = digits.len() as i32 - 1 - 6;
    java_style(neg, &digits, exp)
}

/// NUMERIC wire string: plain decimal notation.
fn format_numeric(f: f64) -> String {
    if f.is_finite() {
        format!("{f}")
    } else {
        format_float_wire(f)
    }
}

/// Formats a FLOAT64 the way GoogleSQL's CAST(x AS STRING) does (`%.17g` with the shortest digits).
pub(crate) fn format_float_sql(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if f < 0.0 { "-" } else { "" };
    // BigQuery switches to exponent notation outside [1e-4, 1e15).
    if !(-4..15).contains(&exp) {
        let rest = if digits.len() > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{}{rest}e{esign}{:02}", &digits[..1], exp.abs());
    }
    if exp >= 0 {
        let e = exp as usize;
        if digits.len() > e + 1 {
            format!("{sign}{}.{}", &digits[..=e], &digits[e + 1..])
        } else {
            format!("{sign}{digits:0<width$}", width = e + 1)
        }
    } else {
        format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Ingestion.

fn type_word(t: BqType) -> &'static str {
    match t {
        BqType::Int64 => "integer",
        BqType::Float64 => "double",
        BqType::Numeric | BqType::BigNumeric => "numeric",
        BqType::Bool => "boolean",
        BqType::String | BqType::Json | BqType::Geography => "string",
        BqType::Bytes => "bytes",
        BqType::Date => "date",
        BqType::Datetime => "datetime",
        BqType::Time => "time",
        BqType::Timestamp => "timestamp",
    }
}

/// Converts text (from JSON strings or CSV fields) to a cell of type `t`.
fn text_to_cell(s: &str, t: BqType, csv: bool) -> Result<Cell, String> {
    let bad = || format!("Cannot convert value to {} (bad value): {s}", type_word(t));
    Ok(match t {
        BqType::Int64 => Cell::Int(s.trim().parse::<i64>().map_err(|_| bad())?),
        BqType::Float64 | BqType::Numeric | BqType::BigNumeric => {
            let v = s.trim();
            let f = match v.to_ascii_lowercase().as_str() {
                "nan" => f64::NAN,
                "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
                "-inf" | "-infinity" => f64::NEG_INFINITY,
                _ if v
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
                    && !v.is_empty() =>
                {
                    v.parse::<f64>().map_err(|_| bad())?
                }
                _ => return Err(bad()),
            };
            if t != BqType::Float64 && !f.is_finite() {
                return Err(bad());
            }
            Cell::Float(f)
        }
        BqType::Bool => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Cell::Bool(true),
            "false" => Cell::Bool(false),
            "t" | "yes" | "y" | "1" if csv => Cell::Bool(true),
            "f" | "no" | "n" | "0" if csv => Cell::Bool(false),
            _ => return Err(bad()),
        },
        BqType::String | BqType::Json | BqType::Geography => Cell::Str(s.to_string()),
        BqType::Bytes => Cell::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|_| bad())?,
        ),
        BqType::Date => Cell::Date(parse_date(s).ok_or_else(bad)?),
        BqType::Datetime => Cell::Dt(parse_datetime(s).ok_or_else(bad)?),
        BqType::Time => Cell::Time(parse_time(s).ok_or_else(bad)?),
        BqType::Timestamp => {
            // JSON rows may also carry epoch seconds as a numeric string.
            let micros =
                parse_timestamp(s).or_else(|| if csv { None } else { parse_decimal_seconds(s) });
            Cell::Ts(micros.ok_or_else(bad)?)
        }
    })
}

fn json_to_cell(v: &Json, t: BqType) -> Result<Cell, String> {
    let bad = || format!("Cannot convert value to {} (bad value): {v}", type_word(t));
    match v {
        Json::Null => Ok(Cell::Null),
        Json::String(s) => text_to_cell(s, t, false),
        Json::Bool(b) => match t {
            BqType::Bool => Ok(Cell::Bool(*b)),
            BqType::String | BqType::Json => Ok(Cell::Str(b.to_string())),
            _ => Err(bad()),
        },
        Json::Number(n) => match t {
            BqType::Int64 => {
                if let Some(i) = n.as_i64() {
                    Ok(Cell::Int(i))
                } else {
                    match n.as_f64() {
                        Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(Cell::Int(f as i64)),
                        _ => Err(bad()),
                    }
                }
            }
            BqType::Float64 | BqType::Numeric | BqType::BigNumeric => {
                n.as_f64().map(Cell::Float).ok_or_else(bad)
            }
            BqType::String | BqType::Json => Ok(Cell::Str(n.to_string())),
            BqType::Timestamp => parse_decimal_seconds(&n.to_string())
                .map(Cell::Ts)
                .ok_or_else(bad),
            _ => Err(bad()),
        },
        Json::Array(_) | Json::Object(_) => match t {
            BqType::Json => Ok(Cell::Str(v.to_string())),
            _ => Err(bad()),
        },
    }
}

struct Column<'a> {
    field: &'a Field,
    t: BqType,
    cells: Vec<Cell>,
}

fn columns_of(schema: &SchemaRef) -> Result<Vec<Column<'_>>, DataError> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let t = BqType::of_field(f).ok_or_else(|| {
                invalid(format!(
                    "Field {} has a type the bq-emulator cannot store",
                    f.name()
                ))
            })?;
            Ok(Column {
                field: f.as_ref(),
                t,
                cells: Vec::new(),
            })
        })
        .collect()
}

fn finish(
    schema: &SchemaRef,
    columns: Vec<Column<'_>>,
    rows: usize,
) -> Result<RecordBatch, DataError> {
    let arrays = columns
        .iter()
        .map(|c| build_array(c.field.data_type(), &c.cells))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let opts =
        datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), arrays, &opts)
        .map_err(|e| invalid(e.to_string()))
}

/// Converts insertAll `json` objects / NDJSON lines to a batch. Values may be JSON numbers, bools or strings
/// ("123" for INT64 is fine); TIMESTAMP accepts epoch seconds (number or numeric string, exact to the
/// microsecond), RFC 3339 and "YYYY-MM-DD HH:MM:SS[.ffffff][ zone]"; DATE "YYYY-MM-DD". Field names match
/// case-insensitively. A missing or null REQUIRED field, a bad value, or an unknown field (unless
/// `ignore_unknown_values`) fails the whole batch; the message names the field and, for more than one
/// row, the row (0-based).
pub fn json_rows_to_batch(
    schema: &SchemaRef,
    rows: &[serde_json::Map<String, serde_json::Value>],
    ignore_unknown_values: bool,
) -> Result<RecordBatch, DataError> {
    let mut columns = columns_of(schema)?;
    let index: HashMap<String, usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.field.name().to_ascii_lowercase(), i))
        .collect();
    for (r, row) in rows.iter().enumerate() {
        // Callers convert single rows to report per-row errors; a "row 0" prefix would mislead there.
        let at = if rows.len() > 1 {
            format!("row {r}: ")
        } else {
            String::new()
        };
        let mut values: Vec<Option<&Json>> = vec![None; columns.len()];
        for (k, v) in row {
            match index.get(&k.to_ascii_lowercase()) {
                Some(&i) => values[i] = Some(v),
                None if ignore_unknown_values => {}
                None => return Err(invalid(format!("{at}no such field: {k}."))),
            }
        }
        for (c, v) in columns.iter_mut().zip(values) {
            let cell = match v {
                None => Cell::Null,
                Some(v) => json_to_cell(v, c.t)
                    .map_err(|e| invalid(format!("{at}field {}: {e}", c.field.name())))?,
            };
            if cell == Cell::Null && !c.field.is_nullable() {
                return Err(invalid(format!(
                    "{at}Missing required field: {}.",
                    c.field.name()
                )));
            }
            c.cells.push(cell);
        }
    }
    finish(schema, columns, rows.len())
}

/// One CSV field: its bytes and whether it was quoted.
type CsvField = (Vec<u8>, bool);

/// Splits CSV bytes into records (line number of the record start, fields).
fn split_csv(
    data: &[u8],
    delim: u8,
    allow_quoted_newlines: bool,
) -> Result<Vec<(usize, Vec<CsvField>)>, String> {
    let mut records = Vec::new();
    let mut fields: Vec<CsvField> = Vec::new();
    let mut cur = Vec::new();
    let mut quoted = false;
    let mut line = 1usize;
    let mut record_line = 1usize;
    let mut i = 0;
    let mut at_field_start = true;
    let mut in_quotes = false;
    let mut record_has_content = false;
    while i < data.len() {
        let b = data[i];
        if in_quotes {
            if b == b'"' {
                if data.get(i + 1) == Some(&b'"') {
                    cur.push(b'"');
                    i += 2;
                    continue;
                }
                in_quotes = false;
                i += 1;
                match data.get(i) {
                    None | Some(b'\n') | Some(b'\r') => {}
                    Some(&c) if c == delim => {}
                    Some(_) => {
                        return Err(format!(
                            "Error while reading data, error message: Data between close double quote (\") and field \
                             separator. (line {line})"
                        ));
                    }
                }
                continue;
            }
            if b == b'\n' || b == b'\r' {
                if !allow_quoted_newlines {
                    return Err(format!(
                        "Error while reading data, error message: Missing close double quote (\") character. \
                         (line {record_line}) hint: set allowQuotedNewlines to load quoted fields with newlines"
                    ));
                }
                if b == b'\n' {
                    line += 1;
                }
            }
            cur.push(b);
            i += 1;
            continue;
        }
        if at_field_start && b == b'"' {
            in_quotes = true;
            quoted = true;
            at_field_start = false;
            record_has_content = true;
            i += 1;
            continue;
        }
        if b == delim {
            fields.push((std::mem::take(&mut cur), quoted));
            quoted = false;
            at_field_start = true;
            record_has_content = true;
            i += 1;
            continue;
        }
        if b == b'\n' || b == b'\r' {
            if b == b'\r' && data.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            i += 1;
            if record_has_content || !cur.is_empty() {
                fields.push((std::mem::take(&mut cur), quoted));
                records.push((record_line, std::mem::take(&mut fields)));
            }
            line += 1;
            record_line = line;
            quoted = false;
            at_field_start = true;
            record_has_content = false;
            continue;
        }
        cur.push(b);
        at_field_start = false;
        record_has_content = true;
        i += 1;
    }
    if in_quotes {
        return Err(format!(
            "Error while reading data, error message: Missing close double quote (\") character. (line {record_line})"
        ));
    }
    if record_has_content || !cur.is_empty() {
        fields.push((cur, quoted));
        records.push((record_line, fields));
    }
    Ok(records)
}

/// Parses CSV bytes (UTF-8, optional BOM) into a batch of the table's schema. Fields map to columns by
/// position. With the default null marker an empty field is NULL, except a quoted empty field ("") in a
/// STRING/BYTES column, which is the empty string; with a custom marker the marker is NULL and an empty field
/// is an error outside STRING/BYTES columns. BOOL accepts true/false/t/f/yes/no/y/n/1/0.
pub fn csv_to_batch(
    schema: &SchemaRef,
    data: &[u8],
    opts: &CsvOptions,
) -> Result<RecordBatch, DataError> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let records =
        split_csv(data, opts.field_delimiter, opts.allow_quoted_newlines).map_err(invalid)?;
    let mut columns = columns_of(schema)?;
    let mut n = 0;
    for (line, fields) in records.into_iter().skip(opts.skip_leading_rows) {
        if fields.len() > columns.len() {
            return Err(invalid(format!(
                "Error while reading data, error message: Too many values in row starting at line {line}: found {}, \
                 expected {}",
                fields.len(),
                columns.len()
            )));
        }
        if fields.len() < columns.len() && !opts.allow_jagged_rows {
            return Err(invalid(format!(
                "Error while reading data, error message: CSV table references column position {}, but line {line} \
                 contains only {} columns. hint: set allowJaggedRows to load short rows",
                columns.len() - 1,
                fields.len()
            )));
        }
        let mut fields = fields.into_iter();
        for c in columns.iter_mut() {
            let cell = match fields.next() {
                None => Cell::Null,
                Some((bytes, quoted)) => {
                    let text = String::from_utf8(bytes).map_err(|_| {
                        invalid(format!(
                            "Error while reading data, error message: invalid UTF-8 at line {line}"
                        ))
                    })?;
                    let stringy = matches!(c.t, BqType::String | BqType::Bytes | BqType::Json);
                    match &opts.null_marker {
                        Some(m) if &text == m => Cell::Null,
                        Some(_) if text.is_empty() && !stringy => {
                            return Err(invalid(format!(
                                "Error while reading data, error message: line {line}, field {}: empty value is not \
                                 a valid {}",
                                c.field.name(),
                                c.t.sql_name()
                            )));
                        }
                        None if text.is_empty() && !(quoted && stringy) => Cell::Null,
                        _ => text_to_cell(&text, c.t, true).map_err(|e| {
                            invalid(format!(
                                "Error while reading data, error message: line {line}, field {}: {e}",
                                c.field.name()
                            ))
                        })?,
                    }
                }
            };
            if cell == Cell::Null && !c.field.is_nullable() {
                return Err(invalid(format!(
                    "Error while reading data, error message: line {line}: Missing required field: {}.",
                    c.field.name()
                )));
            }
            c.cells.push(cell);
        }
        n += 1;
    }
    finish(schema, columns, n)
}

// ---------------------------------------------------------------------------------------------------------
// Output.

fn cell_to_wire(cell: Cell, t: BqType, use_int64_timestamp: bool) -> Json {
    let s = match cell {
        Cell::Null => return Json::Null,
        Cell::Int(v) => v.to_string(),
        Cell::Float(f) if matches!(t, BqType::Numeric | BqType::BigNumeric) => format_numeric(f),
        Cell::Float(f) => format_float_wire(f),
        Cell::Bool(b) => b.to_string(),
        Cell::Str(s) => s,
        Cell::Bytes(b) => base64::engine::general_purpose::STANDARD.encode(b),
        Cell::Date(d) => format_date(d),
        Cell::Ts(us) if use_int64_timestamp => us.to_string(),
        Cell::Ts(us) => format_ts_float(us),
        Cell::Dt(us) => {
            micros_to_naive(us).map_or_else(|| us.to_string(), |d| format_naive(d, 'T', false))
        }
        Cell::Time(us) => format_time(us),
    };
    Json::String(s)
}

/// Wire rows `[{"f":[{"v": ...}]}]` for rows [start, start+len) of the batch (clamped to the batch):
/// INT64 decimal strings, FLOAT64 strings ("1.5", "1.0E20", "NaN", "Infinity"), NUMERIC plain decimals,
/// BOOL "true"/"false", STRING as is, BYTES base64, DATE "YYYY-MM-DD", TIMESTAMP float seconds
/// ("1.7052876E9", exact to the microsecond) or int64 microseconds when `use_int64_timestamp`,
/// DATETIME "YYYY-MM-DDTHH:MM:SS[.ffffff]", TIME "HH:MM:SS[.ffffff]", NULL -> null.
pub fn to_wire_rows(
    batch: &RecordBatch,
    start: usize,
    len: usize,
    use_int64_timestamp: bool,
) -> Vec<serde_json::Value> {
    let start = start.min(batch.num_rows());
    let end = start.saturating_add(len).min(batch.num_rows());
    let schema = batch.schema();
    let cols: Vec<(ArrayRef, BqType)> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(a, f)| {
            let a = canonical_array(a).unwrap_or_else(|_| a.clone());
            (a, BqType::of_field(f).unwrap_or(BqType::String))
        })
        .collect();
    (start..end)
        .map(|r| {
            let f: Vec<Json> = cols
                .iter()
                .map(|(a, t)| serde_json::json!({ "v": cell_to_wire(read_cell(a.as_ref(), r), *t, use_int64_timestamp) }))
                .collect();
            serde_json::json!({ "f": f })
        })
        .collect()
}

/// Bytes in BigQuery's logical accounting: 8 per INT64/FLOAT64/TIMESTAMP/DATE/DATETIME/TIME, 16 per NUMERIC,
/// 32 per BIGNUMERIC, 1 per BOOL, 2 + UTF-8 length per STRING, 2 + length per BYTES; NULLs count 0.
pub fn logical_bytes(batch: &RecordBatch) -> u64 {
    let schema = batch.schema();
    let mut total = 0u64;
    for (array, field) in batch.columns().iter().zip(schema.fields()) {
        let t = BqType::of_field(field).unwrap_or(BqType::String);
        let non_null = (array.len() - array.null_count()) as u64;
        total += match t {
            BqType::Bool => non_null,
            BqType::Numeric => 16 * non_null,
            BqType::BigNumeric => 32 * non_null,
            BqType::String | BqType::Json | BqType::Geography | BqType::Bytes => {
                let a = canonical_array(array).unwrap_or_else(|_| array.clone());
                let mut n = 0u64;
                for r in 0..a.len() {
                    if a.is_valid(r) {
                        n += 2 + match a.data_type() {
                            DataType::Utf8 => a.as_string::<i32>().value(r).len() as u64,
                            DataType::Binary => a.as_binary::<i32>().value(r).len() as u64,
                            _ => 0,
                        };
                    }
                }
                n
            }
            _ => 8 * non_null,
        };
    }
    total
}

/// Casts a batch (e.g. query results) onto a table's schema, matching columns by name (case-insensitively).
/// Every batch column must exist in the target; target columns missing from the batch become NULL when
/// nullable. Types must match exactly except INT64 -> FLOAT64/NUMERIC and FLOAT64 <-> NUMERIC (NUMERIC is
/// stored as FLOAT64); NULLs in a REQUIRED
/// column fail. The result carries the target schema (metadata included). Messages follow BigQuery's
/// "Provided Schema does not match Table ..." wording (the caller may add the table name).
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, DataError> {
    let src_schema = batch.schema();
    let mismatch =
        |detail: String| invalid(format!("Provided Schema does not match Table. {detail}"));
    for f in src_schema.fields() {
        if !target
            .fields()
            .iter()
            .any(|t| t.name().eq_ignore_ascii_case(f.name()))
        {
            return Err(mismatch(format!("Cannot add fields (field: {})", f.name())));
        }
    }
    let mut arrays = Vec::with_capacity(target.fields().len());
    for tf in target.fields() {
        let tt = BqType::of_field(tf)
            .ok_or_else(|| invalid(format!("Field {} has an unsupported type", tf.name())))?;
        let found = src_schema
            .fields()
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(tf.name()));
        let array = match found {
            None => {
                if !tf.is_nullable() {
                    return Err(mismatch(format!(
                        "Field {} is missing in new schema",
                        tf.name()
                    )));
                }
                new_null_array(tf.data_type(), batch.num_rows())
            }
            Some(i) => {
                let sf = src_schema.field(i);
                let st = BqType::of_field(sf).unwrap_or(BqType::String);
                let col = canonical_array(batch.column(i)).map_err(invalid)?;
                let floaty =
                    |t: BqType| matches!(t, BqType::Float64 | BqType::Numeric | BqType::BigNumeric);
                // NUMERIC is stored as FLOAT64, so arithmetic on NUMERIC yields FLOAT64: accept either way.
                let compatible = st == tt
                    || (st == BqType::Int64 && floaty(tt))
                    || (floaty(st) && floaty(tt))
                    || matches!(sf.data_type(), DataType::Null);
                if !compatible {
                    return Err(mismatch(format!(
                        "Field {} has changed type from {} to {}",
                        tf.name(),
                        tt.legacy_name(),
                        st.legacy_name()
                    )));
                }
                let col = if col.data_type() == tf.data_type() {
                    col
                } else {
                    let opts = CastOptions {
                        safe: false,
                        format_options: FormatOptions::default(),
                    };
                    cast_with_options(&col, tf.data_type(), &opts)
                        .map_err(|e| invalid(e.to_string()))?
                };
                if !tf.is_nullable() && col.null_count() > 0 {
                    return Err(mismatch(format!(
                        "Field {} has changed mode from REQUIRED to NULLABLE (the rows contain NULLs)",
                        tf.name()
                    )));
                }
                col
            }
        };
        arrays.push(array);
    }
    let opts = datafusion::arrow::record_batch::RecordBatchOptions::new()
        .with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(target.clone(), arrays, &opts)
        .map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str, t: &str, mode: Option<&str>) -> FieldSchema {
        FieldSchema {
            name: name.into(),
            field_type: t.into(),
            mode: mode.map(str::to_string),
            fields: None,
            description: None,
        }
    }

    fn all_types_schema() -> SchemaRef {
        to_arrow_schema(&[
            field("i", "INTEGER", None),
            field("f", "FLOAT64", None),
            field("n", "NUMERIC", None),
            field("b", "BOOL", None),
            field("s", "STRING", None),
            field("y", "BYTES", None),
            field("d", "DATE", None),
            field("dt", "DATETIME", None),
            field("t", "TIME", None),
            field("ts", "TIMESTAMP", None),
        ])
        .unwrap()
    }

    fn obj(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    fn wire_values(batch: &RecordBatch, int64_ts: bool) -> Vec<Vec<Json>> {
        to_wire_rows(batch, 0, batch.num_rows(), int64_ts)
            .iter()
            .map(|r| {
                r["f"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["v"].clone())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn schemas_map_to_arrow_and_back() {
        let mut fields = vec![
            field("a", "INT64", Some("REQUIRED")),
            field("b", "FLOAT", None),
            field("c", "NUMERIC", None),
            field("d", "BOOLEAN", Some("NULLABLE")),
            field("e", "STRING", None),
            field("f", "BYTES", None),
            field("g", "DATE", None),
            field("h", "DATETIME", None),
            field("i", "TIME", None),
            field("j", "TIMESTAMP", None),
        ];
        fields[4].description = Some("free text".into());
        let arrow = to_arrow_schema(&fields).unwrap();
        let types: Vec<&DataType> = arrow.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(
            types,
            [
                &DataType::Int64,
                &DataType::Float64,
                &DataType::Float64,
                &DataType::Boolean,
                &DataType::Utf8,
                &DataType::Binary,
                &DataType::Date32,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
                &DataType::Time64(TimeUnit::Microsecond),
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ]
        );
        assert!(!arrow.field(0).is_nullable());
        assert!(arrow.field(1).is_nullable());
        let back = from_arrow_schema(&arrow);
        let names: Vec<(&str, &str)> = back
            .iter()
            .map(|f| (f.field_type.as_str(), f.mode.as_deref().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("INTEGER", "REQUIRED"),
                ("FLOAT", "NULLABLE"),
                ("NUMERIC", "NULLABLE"),
                ("BOOLEAN", "NULLABLE"),
                ("STRING", "NULLABLE"),
                ("BYTES", "NULLABLE"),
                ("DATE", "NULLABLE"),
                ("DATETIME", "NULLABLE"),
                ("TIME", "NULLABLE"),
                ("TIMESTAMP", "NULLABLE"),
            ]
        );
        assert_eq!(back[4].description.as_deref(), Some("free text"));
        // Plain Arrow schemas (query results) map by type.
        let plain = Schema::new(vec![
            Field::new("x", DataType::Int32, true),
            Field::new("y", DataType::Utf8View, false),
            Field::new(
                "z",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
                true,
            ),
        ]);
        let got: Vec<String> = from_arrow_schema(&plain)
            .into_iter()
            .map(|f| f.field_type)
            .collect();
        assert_eq!(got, ["INTEGER", "STRING", "TIMESTAMP"]);
        // JSON round trip of the REST shape.
        let parsed: FieldSchema =
            serde_json::from_value(json!({"name": "x", "type": "DATE"})).unwrap();
        assert_eq!(parsed, field("x", "DATE", None));
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            json!({"name": "x", "type": "DATE"})
        );
    }

    #[test]
    fn bad_schemas_are_rejected() {
        for (fields, needle) in [
            (vec![field("a", "RECORD", None)], "RECORD/STRUCT"),
            (vec![field("a", "STRING", Some("REPEATED"))], "REPEATED"),
            (
                vec![field("a", "VARCHAR", None)],
                "Invalid field type VARCHAR",
            ),
            (
                vec![field("a", "STRING", None), field("A", "INT64", None)],
                "already exists",
            ),
            (vec![field("1a", "STRING", None)], "Invalid field name"),
            (
                vec![field("a", "STRING", Some("SOMETIMES"))],
                "Invalid mode",
            ),
        ] {
            let e = to_arrow_schema(&fields).unwrap_err();
            assert_eq!(e.reason, "invalid");
            assert!(e.message.contains(needle), "{}", e.message);
        }
    }

    #[test]
    fn json_rows_of_every_type_and_their_wire_encoding() {
        let schema = all_types_schema();
        let rows = vec![
            obj(
                json!({"i": 1, "f": 1.5, "n": "12.25", "b": true, "s": "x", "y": "AAE=", "d": "2024-01-15",
                       "dt": "2024-01-15T03:00:00.123456", "t": "12:34:56.5", "ts": 1705287600.123456}),
            ),
            obj(
                json!({"i": "-42", "f": "1e20", "n": 0.5, "b": "FALSE", "s": 7, "d": "2024-1-5",
                       "dt": "2024-01-15 03:00:00", "t": "00:00", "ts": "2024-01-15T03:00:00Z"}),
            ),
            obj(json!({"i": null, "f": "NaN", "ts": "2024-01-14 22:00:00-05:00", "s": ""})),
            obj(json!({"f": -0.25, "ts": "1969-12-31 23:59:59.999999 UTC"})),
        ];
        let batch = json_rows_to_batch(&schema, &rows, false).unwrap();
        assert_eq!(batch.num_rows(), 4);
        let w = wire_values(&batch, false);
        assert_eq!(
            w[0],
            vec![
                json!("1"),
                json!("1.5"),
                json!("12.25"),
                json!("true"),
                json!("x"),
                json!("AAE="),
                json!("2024-01-15"),
                json!("2024-01-15T03:00:00.123456"),
                json!("12:34:56.500000"),
                json!("1.705287600123456E9")
            ]
        );
        assert_eq!(
            w[1],
            vec![
                json!("-42"),
                json!("1.0E20"),
                json!("0.5"),
                json!("false"),
                json!("7"),
                Json::Null,
                json!("2024-01-05"),
                json!("2024-01-15T03:00:00"),
                json!("00:00:00"),
                json!("1.7052876E9")
            ]
        );
        assert_eq!(w[2][0], Json::Null);
        assert_eq!(w[2][1], json!("NaN"));
        assert_eq!(w[2][4], json!(""));
        assert_eq!(w[2][9], json!("1.7052876E9"));
        assert_eq!(w[3][1], json!("-0.25"));
        assert_eq!(w[3][9], json!("-1.0E-6"));
        let w = wire_values(&batch, true);
        assert_eq!(w[0][9], json!("1705287600123456"));
        assert_eq!(w[3][9], json!("-1"));
        assert_eq!(w[3][2], Json::Null);
        // Paging slices rows and clamps at the end.
        let page = to_wire_rows(&batch, 3, 10, false);
        assert_eq!(page.len(), 1);
        assert!(to_wire_rows(&batch, 9, 10, false).is_empty());
    }

    #[test]
    fn timestamp_wire_strings_parse_back_exactly_like_python_clients_do() {
        // google-cloud-bigquery (without useInt64Timestamp): _datetime_from_microseconds(1e6 * float(value)),
        // i.e. timedelta(microseconds=...) rounding to the nearest microsecond.
        let samples = [
            0i64,
            1,
            -1,
            999_999,
            1_705_287_600_000_000,
            1_705_287_600_123_456,
            1_705_287_600_999_999,
            253_402_300_799_999_999,
            -62_135_596_800_000_000,
            -1_234_567,
        ];
        let mut x: i64 = 0x2545_F491_4F6C_DD1D;
        let randoms = (0..2000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.rem_euclid(4_102_444_800_000_000)
        });
        for micros in samples.into_iter().chain(randoms) {
            let s = format_ts_float(micros);
            // Exact through f64 only below 2^53 microseconds (year 2255); BigQuery's floats share that limit.
            if micros.unsigned_abs() < 1 << 53 {
                let parsed = (1e6 * s.parse::<f64>().unwrap()).round_ties_even() as i64;
                assert_eq!(parsed, micros, "{micros} -> {s}");
            }
            assert_eq!(parse_decimal_seconds(&s), Some(micros), "{s}");
        }
        assert_eq!(format_ts_float(1_705_287_600_000_000), "1.7052876E9");
        assert_eq!(format_ts_float(1_500_000), "1.5");
        assert_eq!(format_ts_float(10_000_000_000_000), "1.0E7");
    }

    #[test]
    fn float_wire_strings_round_trip() {
        for f in [
            0.0,
            -0.0,
            1.0,
            0.1,
            1.5e-7,
            123456789.125,
            1e300,
            -2.5e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            1.0 / 3.0,
        ] {
            let s = format_float_wire(f);
            assert_eq!(
                s.parse::<f64>().unwrap().to_bits(),
                f.to_bits(),
                "{f} -> {s}"
            );
        }
        assert_eq!(format_float_wire(1.0), "1.0");
        assert_eq!(format_float_wire(1234567.0), "1234567.0");
        assert_eq!(format_float_wire(12345678.0), "1.2345678E7");
        assert_eq!(format_float_wire(0.001), "0.001");
        assert_eq!(format_float_wire(0.0001), "1.0E-4");
        assert_eq!(format_float_wire(f64::INFINITY), "Infinity");
        assert_eq!(format_float_wire(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn timestamp_strings_parse_in_every_accepted_spelling() {
        let expect = 1_705_287_600_000_000;
        for s in [
            "2024-01-15 03:00:00",
            "2024-01-15T03:00:00",
            "2024-01-15 03:00:00+00",
            "2024-01-15T03:00:00Z",
            "2024-01-15 03:00:00 UTC",
            "2024-01-15 03:00:00.000000+00:00",
            "2024-01-15 04:00:00+0100",
            "2024-01-14 22:00:00 America/New_York",
            "2024-01-15 3:00",
        ] {
            assert_eq!(parse_timestamp(s), Some(expect), "{s}");
        }
        assert_eq!(parse_timestamp("2024-01-15"), Some(1_705_276_800_000_000));
        assert_eq!(
            parse_timestamp("2024-01-15 03:00:00.1234567"),
            Some(expect + 123_456)
        );
        for bad in [
            "",
            "2024-13-01",
            "2024-01-15 25:00:00",
            "2024-01-15 03:00:00 Mars/Base",
            "20240115",
            "10000-01-01",
            "2024-01-15 03:00:00UTC",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        assert_eq!(parse_decimal_seconds("1.7052876E9"), Some(expect));
        assert_eq!(parse_decimal_seconds("-0.0000005"), Some(-1));
        assert_eq!(parse_decimal_seconds("0.0000004"), Some(0));
        assert_eq!(parse_decimal_seconds("1e30"), None);
        assert_eq!(parse_decimal_seconds("abc"), None);
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_datetime("2024-01-15 03:00:00+00"), None);
        assert_eq!(parse_time("23:59:59.999999"), Some(86_399_999_999));
    }

    #[test]
    fn bad_json_values_and_fields_fail_with_clear_messages() {
        let schema = all_types_schema();
        let one = |v: serde_json::Value| {
            json_rows_to_batch(&schema, &[obj(v)], false)
                .unwrap_err()
                .message
        };
        assert_eq!(
            one(json!({"i": "abc"})),
            "field i: Cannot convert value to integer (bad value): abc"
        );
        assert_eq!(
            one(json!({"i": 1.5})),
            "field i: Cannot convert value to integer (bad value): 1.5"
        );
        assert!(one(json!({"f": "x1"})).contains("double"));
        assert!(one(json!({"b": "maybe"})).contains("boolean"));
        assert!(one(json!({"y": "not base64!"})).contains("bytes"));
        assert!(one(json!({"d": "2024-02-30"})).contains("date"));
        assert!(one(json!({"ts": "yesterday"})).contains("timestamp"));
        assert!(one(json!({"s": {"nested": 1}})).contains("string"));
        assert!(one(json!({"n": "NaN"})).contains("numeric"));
        assert_eq!(one(json!({"zzz": 1})), "no such field: zzz.");
        let ok = json_rows_to_batch(&schema, &[obj(json!({"zzz": 1, "I": 5}))], true).unwrap();
        assert_eq!(wire_values(&ok, false)[0][0], json!("5"));
        let req = to_arrow_schema(&[
            field("k", "STRING", Some("REQUIRED")),
            field("v", "INT64", None),
        ])
        .unwrap();
        let rows = [obj(json!({"k": "a"})), obj(json!({"v": 1}))];
        assert_eq!(
            json_rows_to_batch(&req, &rows, false).unwrap_err().message,
            "row 1: Missing required field: k."
        );
        let rows = [obj(json!({"k": null}))];
        assert_eq!(
            json_rows_to_batch(&req, &rows, false).unwrap_err().message,
            "Missing required field: k."
        );
        let empty = json_rows_to_batch(&req, &[], false).unwrap();
        assert_eq!((empty.num_rows(), empty.schema()), (0, req.clone()));
    }

    #[test]
    fn csv_ingestion() {
        let schema = to_arrow_schema(&[
            field("id", "INT64", Some("REQUIRED")),
            field("name", "STRING", None),
            field("ok", "BOOL", None),
            field("day", "DATE", None),
            field("ts", "TIMESTAMP", None),
        ])
        .unwrap();
        let opts = CsvOptions {
            skip_leading_rows: 1,
            ..CsvOptions::default()
        };
        let data = "\u{feff}id,name,ok,day,ts\r\n1,\"a, \"\"quoted\"\" b\",yes,2024-01-15,2024-01-15 03:00:00+00\r\n2,,0,,\n3,\"\",T,2024-01-16,2024-01-15T03:00:00Z\n\n";
        let batch = csv_to_batch(&schema, data.as_bytes(), &opts).unwrap();
        let w = wire_values(&batch, false);
        assert_eq!(
            w,
            vec![
                vec![
                    json!("1"),
                    json!("a, \"quoted\" b"),
                    json!("true"),
                    json!("2024-01-15"),
                    json!("1.7052876E9")
                ],
                vec![
                    json!("2"),
                    Json::Null,
                    json!("false"),
                    Json::Null,
                    Json::Null
                ],
                vec![
                    json!("3"),
                    json!(""),
                    json!("true"),
                    json!("2024-01-16"),
                    json!("1.7052876E9")
                ],
            ]
        );
        // Quoted newlines need allowQuotedNewlines.
        let data = "1,\"line1\nline2\",true,,\n";
        let e = csv_to_batch(&schema, data.as_bytes(), &CsvOptions::default()).unwrap_err();
        assert!(e.message.contains("allowQuotedNewlines"), "{}", e.message);
        let opts = CsvOptions {
            allow_quoted_newlines: true,
            ..CsvOptions::default()
        };
        let batch = csv_to_batch(&schema, data.as_bytes(), &opts).unwrap();
        assert_eq!(wire_values(&batch, false)[0][1], json!("line1\nline2"));
        // Jagged rows.
        let data = "1,a\n2,b,true\n";
        let e = csv_to_batch(&schema, data.as_bytes(), &CsvOptions::default()).unwrap_err();
        assert!(e.message.contains("allowJaggedRows"), "{}", e.message);
        let opts = CsvOptions {
            allow_jagged_rows: true,
            ..CsvOptions::default()
        };
        let batch = csv_to_batch(&schema, data.as_bytes(), &opts).unwrap();
        assert_eq!(
            wire_values(&batch, false)[1],
            vec![
                json!("2"),
                json!("b"),
                json!("true"),
                Json::Null,
                Json::Null
            ]
        );
        let e = csv_to_batch(
            &schema,
            b"1,a,true,2024-01-01,2024-01-01,extra\n",
            &CsvOptions::default(),
        )
        .unwrap_err();
        assert!(e.message.contains("Too many values"), "{}", e.message);
        // Bad values name the line and the field.
        let e =
            csv_to_batch(&schema, b"1,a,true,,\nx,b,true,,\n", &CsvOptions::default()).unwrap_err();
        assert!(
            e.message
                .contains("line 2, field id: Cannot convert value to integer (bad value): x"),
            "{}",
            e.message
        );
        let e = csv_to_batch(&schema, b",a,true,,\n", &CsvOptions::default()).unwrap_err();
        assert!(
            e.message.contains("Missing required field: id"),
            "{}",
            e.message
        );
        let e = csv_to_batch(
            &schema,
            b"1,\"unterminated\n",
            &CsvOptions {
                allow_quoted_newlines: true,
                ..CsvOptions::default()
            },
        )
        .unwrap_err();
        assert!(
            e.message.contains("Missing close double quote"),
            "{}",
            e.message
        );
        // Custom null marker and delimiter.
        let opts = CsvOptions {
            field_delimiter: b'\t',
            null_marker: Some("\\N".into()),
            ..CsvOptions::default()
        };
        let batch = csv_to_batch(&schema, b"1\t\\N\t\\N\t\t\n", &opts);
        assert!(batch.unwrap_err().message.contains("empty value"));
        let batch = csv_to_batch(&schema, b"1\t\t\\N\t\\N\t\\N\n", &opts).unwrap();
        assert_eq!(
            wire_values(&batch, false)[0],
            vec![json!("1"), json!(""), Json::Null, Json::Null, Json::Null]
        );
        let e = csv_to_batch(&schema, b"1,\xff,true,,\n", &CsvOptions::default()).unwrap_err();
        assert!(e.message.contains("UTF-8"), "{}", e.message);
    }

    #[test]
    fn logical_bytes_follow_bigquery_sizes() {
        let schema = all_types_schema();
        let rows = vec![
            obj(
                json!({"i": 1, "f": 1.0, "n": 1, "b": true, "s": "héllo", "y": "AAE=", "d": "2024-01-15",
                       "dt": "2024-01-15 00:00:00", "t": "00:00:00", "ts": 0}),
            ),
            obj(json!({})),
        ];
        let batch = json_rows_to_batch(&schema, &rows, false).unwrap();
        // INT64 8 + FLOAT64 8 + NUMERIC 16 + BOOL 1 + STRING 2+6 + BYTES 2+2 + DATE/DATETIME/TIME/TIMESTAMP 4*8
        assert_eq!(logical_bytes(&batch), 8 + 8 + 16 + 1 + 8 + 4 + 32);
    }

    #[test]
    fn conform_matches_by_name_and_rejects_incompatible_schemas() {
        let target = to_arrow_schema(&[
            field("day", "DATE", Some("REQUIRED")),
            field("n", "FLOAT", None),
            field("label", "STRING", None),
        ])
        .unwrap();
        let src_schema = Arc::new(Schema::new(vec![
            Field::new("N", DataType::Int64, true),
            Field::new("day", DataType::Date32, true),
        ]));
        let src = RecordBatch::try_new(
            src_schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(3), None])),
                Arc::new(Date32Array::from(vec![19_737, 19_738])),
            ],
        )
        .unwrap();
        let out = conform(&src, &target).unwrap();
        assert_eq!(out.schema(), target);
        assert_eq!(
            wire_values(&out, false),
            vec![
                vec![json!("2024-01-15"), json!("3.0"), Json::Null],
                vec![json!("2024-01-16"), Json::Null, Json::Null]
            ]
        );
        let bad_type = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("day", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(vec!["2024-01-15"]))],
        )
        .unwrap();
        assert_eq!(
            conform(&bad_type, &target).unwrap_err().message,
            "Provided Schema does not match Table. Field day has changed type from DATE to STRING"
        );
        let extra = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("day", DataType::Date32, true),
                Field::new("zzz", DataType::Int64, true),
            ])),
            vec![
                Arc::new(Date32Array::from(vec![1])),
                Arc::new(Int64Array::from(vec![1])),
            ],
        )
        .unwrap();
        assert!(
            conform(&extra, &target)
                .unwrap_err()
                .message
                .contains("Cannot add fields (field: zzz)")
        );
        let missing = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("n", DataType::Float64, true)])),
            vec![Arc::new(Float64Array::from(vec![1.0]))],
        )
        .unwrap();
        assert!(
            conform(&missing, &target)
                .unwrap_err()
                .message
                .contains("Field day is missing")
        );
        let null_required = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("day", DataType::Date32, true)])),
            vec![Arc::new(Date32Array::from(vec![None]))],
        )
        .unwrap();
        assert!(
            conform(&null_required, &target)
                .unwrap_err()
                .message
                .contains("REQUIRED")
        );
        let float_into_int = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("i", DataType::Float64, true)])),
            vec![Arc::new(Float64Array::from(vec![1.5]))],
        )
        .unwrap();
        let int_target = to_arrow_schema(&[field("i", "INT64", None)]).unwrap();
        assert!(
            conform(&float_into_int, &int_target)
                .unwrap_err()
                .message
                .contains("from INTEGER to FLOAT")
        );
    }
}
