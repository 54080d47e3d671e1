//! GoogleSQL functions and operators whose DataFusion counterparts differ in typing or semantics, as scalar
//! UDFs evaluated row by row on storage cells (the emulator's data sets are small; exactness wins).
//!
//! Every UDF is strict (a NULL argument gives NULL), validates its argument types itself in `coerce_types`
//! (so `CONCAT('a', 1)` fails like BigQuery instead of being silently coerced) and reports errors with the
//! message wrapped in [`MARK_OPEN`]/[`MARK_CLOSE`] so the engine can surface exactly that text.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Weekday};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::data::{
    BqType, Cell, META_TYPE, MICROS_PER_DAY, Zone, build_array, canonical_array, date_to_days,
    days_to_date, format_date, format_float_sql, format_naive, format_time, in_bq_range,
    micros_to_naive, naive_to_micros, parse_date, parse_datetime, parse_time, parse_timestamp,
    parse_timestamp_in, read_cell, time_to_micros,
};

/// Opens a user-facing error message inside a DataFusion error string.
pub(crate) const MARK_OPEN: &str = "\u{27e6}";
/// Closes a user-facing error message inside a DataFusion error string.
pub(crate) const MARK_CLOSE: &str = "\u{27e7}";

/// Wraps a user-facing message so it survives DataFusion's error decoration.
pub(crate) fn marked(msg: &str) -> String {
    format!("{MARK_OPEN}{msg}{MARK_CLOSE}")
}

fn exec_err(msg: String) -> DataFusionError {
    DataFusionError::Execution(marked(&msg))
}

/// The coarse GoogleSQL type of an Arrow type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Null,
    Int,
    Float,
    Str,
    Bool,
    Bytes,
    Date,
    Ts,
    Dt,
    Time,
    Other,
}

pub(crate) fn ty(dt: &DataType) -> Ty {
    match dt {
        DataType::Null => Ty::Null,
        _ => match BqType::from_arrow(dt) {
            Some(BqType::Int64) => Ty::Int,
            Some(BqType::Float64 | BqType::Numeric | BqType::BigNumeric) => Ty::Float,
            Some(BqType::String | BqType::Json | BqType::Geography) => Ty::Str,
            Some(BqType::Bool) => Ty::Bool,
            Some(BqType::Bytes) => Ty::Bytes,
            Some(BqType::Date) => Ty::Date,
            Some(BqType::Timestamp) => Ty::Ts,
            Some(BqType::Datetime) => Ty::Dt,
            Some(BqType::Time) => Ty::Time,
            None => Ty::Other,
        },
    }
}

fn arrow_of(t: Ty) -> DataType {
    match t {
        Ty::Null => DataType::Null,
        Ty::Int => DataType::Int64,
        Ty::Float => DataType::Float64,
        Ty::Str | Ty::Other => DataType::Utf8,
        Ty::Bool => DataType::Boolean,
        Ty::Bytes => DataType::Binary,
        Ty::Date => DataType::Date32,
        Ty::Ts => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Ty::Dt => DataType::Timestamp(TimeUnit::Microsecond, None),
        Ty::Time => DataType::Time64(TimeUnit::Microsecond),
    }
}

/// GoogleSQL name of an Arrow type for messages.
pub(crate) fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::Null => "NULL".into(),
        other => BqType::from_arrow(other)
            .map_or_else(|| other.to_string(), |t| t.sql_name().to_string()),
    }
}

/// A date/time part keyword (DAY, WEEK(MONDAY), ISOYEAR, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Microsecond,
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    DayOfWeek,
    DayOfYear,
    Week(Weekday),
    IsoWeek,
    Month,
    Quarter,
    Year,
    IsoYear,
}

impl Part {
    /// Parses "DAY", "WEEK", "WEEK(MONDAY)", ...
    pub(crate) fn parse(s: &str) -> Option<Part> {
        let u = s.trim().to_ascii_uppercase();
        Some(match u.as_str() {
            "MICROSECOND" => Part::Microsecond,
            "MILLISECOND" => Part::Millisecond,
            "SECOND" => Part::Second,
            "MINUTE" => Part::Minute,
            "HOUR" => Part::Hour,
            "DAY" => Part::Day,
            "DAYOFWEEK" => Part::DayOfWeek,
            "DAYOFYEAR" => Part::DayOfYear,
            "WEEK" => Part::Week(Weekday::Sun),
            "ISOWEEK" => Part::IsoWeek,
            "MONTH" => Part::Month,
            "QUARTER" => Part::Quarter,
            "YEAR" => Part::Year,
            "ISOYEAR" => Part::IsoYear,
            other => {
                let inner = other.strip_prefix("WEEK(")?.strip_suffix(')')?.trim();
                Part::Week(match inner {
                    "SUNDAY" => Weekday::Sun,
                    "MONDAY" => Weekday::Mon,
                    "TUESDAY" => Weekday::Tue,
                    "WEDNESDAY" => Weekday::Wed,
                    "THURSDAY" => Weekday::Thu,
                    "FRIDAY" => Weekday::Fri,
                    "SATURDAY" => Weekday::Sat,
                    _ => return None,
                })
            }
        })
    }

    fn is_sub_day(self) -> bool {
        matches!(
            self,
            Part::Microsecond | Part::Millisecond | Part::Second | Part::Minute | Part::Hour
        )
    }

    fn micros(self) -> i64 {
        match self {
            Part::Microsecond => 1,
            Part::Millisecond => 1_000,
            Part::Second => 1_000_000,
            Part::Minute => 60_000_000,
            Part::Hour => 3_600_000_000,
            _ => MICROS_PER_DAY,
        }
    }
}

/// Every GoogleSQL function or operator implemented here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Add,
    Sub,
    Mul,
    Div,
    IntDiv,
    Mod,
    SafeDivide,
    IeeeDivide,
    Sign,
    Sqrt,
    Round,
    Trunc,
    Floor,
    Ceil,
    Greatest,
    Least,
    Concat,
    Substr,
    Trim,
    LTrim,
    RTrim,
    Replace,
    RegexpContains,
    RegexpExtract,
    RegexpReplace,
    Cast(BqType),
    SafeCast(BqType),
    Date,
    Datetime,
    Timestamp,
    CurrentDate(i64),
    CurrentDatetime(i64),
    CurrentTimestamp(i64),
    DateTrunc,
    DatetimeTrunc,
    TimestampTrunc,
    DateAdd,
    DateSub,
    DatetimeAdd,
    DatetimeSub,
    TimestampAdd,
    TimestampSub,
    DateDiff,
    DatetimeDiff,
    TimestampDiff,
    Extract,
    FormatDate,
    FormatDatetime,
    FormatTimestamp,
    ParseDate,
    ParseDatetime,
    ParseTimestamp,
    UnixDate,
    UnixSeconds,
    UnixMillis,
    UnixMicros,
    DateFromUnixDate,
    TimestampSeconds,
    TimestampMillis,
    TimestampMicros,
    /// The condition of COUNTIF (identity on BOOL; exists for its signature check).
    CountIfArg,
    /// SUM(x) given (DataFusion's wrapping SUM(x), SUM(CAST(x AS FLOAT64))): fails on INT64 overflow.
    SumCheck,
}

/// Types a CAST may produce.
pub(crate) const CAST_TARGETS: [BqType; 10] = [
    BqType::Int64,
    BqType::Float64,
    BqType::Numeric,
    BqType::BigNumeric,
    BqType::Bool,
    BqType::String,
    BqType::Bytes,
    BqType::Date,
    BqType::Datetime,
    BqType::Timestamp,
];

impl Kind {
    /// Every kind, for registration (`now` feeds the CURRENT_* functions).
    pub(crate) fn all(now: i64) -> Vec<Kind> {
        use Kind::*;
        let mut v = vec![
            Add,
            Sub,
            Mul,
            Div,
            IntDiv,
            Mod,
            SafeDivide,
            IeeeDivide,
            Sign,
            Sqrt,
            Round,
            Trunc,
            Floor,
            Ceil,
            Greatest,
            Least,
            Concat,
            Substr,
            Trim,
            LTrim,
            RTrim,
            Replace,
            RegexpContains,
            RegexpExtract,
            RegexpReplace,
            Date,
            Datetime,
            Timestamp,
            CurrentDate(now),
            CurrentDatetime(now),
            CurrentTimestamp(now),
            DateTrunc,
            DatetimeTrunc,
            TimestampTrunc,
            DateAdd,
            DateSub,
            DatetimeAdd,
            DatetimeSub,
            TimestampAdd,
            TimestampSub,
            DateDiff,
            DatetimeDiff,
            TimestampDiff,
            Extract,
            FormatDate,
            FormatDatetime,
            FormatTimestamp,
            ParseDate,
            ParseDatetime,
            ParseTimestamp,
            UnixDate,
            UnixSeconds,
            UnixMillis,
            UnixMicros,
            DateFromUnixDate,
            TimestampSeconds,
            TimestampMillis,
            TimestampMicros,
            CountIfArg,
            SumCheck,
        ];
        for t in CAST_TARGETS.into_iter().chain([BqType::Time]) {
            v.push(Cast(t));
            v.push(SafeCast(t));
        }
        v
    }

    /// The GoogleSQL spelling, for messages.
    pub(crate) fn sql_name(self) -> String {
        use Kind::*;
        match self {
            Add => "operator +".into(),
            Sub => "operator -".into(),
            Mul => "operator *".into(),
            Div => "operator /".into(),
            Cast(t) => format!("CAST AS {}", t.sql_name()),
            SafeCast(t) => format!("SAFE_CAST AS {}", t.sql_name()),
            CurrentDate(_) => "function CURRENT_DATE".into(),
            CurrentDatetime(_) => "function CURRENT_DATETIME".into(),
            CurrentTimestamp(_) => "function CURRENT_TIMESTAMP".into(),
            CountIfArg => "aggregate function COUNTIF".into(),
            SumCheck => "aggregate function SUM".into(),
            other => format!("function {}", other.internal_suffix().to_ascii_uppercase()),
        }
    }

    fn internal_suffix(self) -> String {
        use Kind::*;
        let s = match self {
            Add => "add",
            Sub => "sub",
            Mul => "mul",
            Div => "divide",
            IntDiv => "div",
            Mod => "mod",
            SafeDivide => "safe_divide",
            IeeeDivide => "ieee_divide",
            Sign => "sign",
            Sqrt => "sqrt",
            Round => "round",
            Trunc => "trunc",
            Floor => "floor",
            Ceil => "ceil",
            Greatest => "greatest",
            Least => "least",
            Concat => "concat",
            Substr => "substr",
            Trim => "trim",
            LTrim => "ltrim",
            RTrim => "rtrim",
            Replace => "replace",
            RegexpContains => "regexp_contains",
            RegexpExtract => "regexp_extract",
            RegexpReplace => "regexp_replace",
            Cast(t) => return format!("cast_{}", t.sql_name().to_ascii_lowercase()),
            SafeCast(t) => return format!("safe_cast_{}", t.sql_name().to_ascii_lowercase()),
            Date => "date",
            Datetime => "datetime",
            Timestamp => "timestamp",
            CurrentDate(_) => "current_date",
            CurrentDatetime(_) => "current_datetime",
            CurrentTimestamp(_) => "current_timestamp",
            DateTrunc => "date_trunc",
            DatetimeTrunc => "datetime_trunc",
            TimestampTrunc => "timestamp_trunc",
            DateAdd => "date_add",
            DateSub => "date_sub",
            DatetimeAdd => "datetime_add",
            DatetimeSub => "datetime_sub",
            TimestampAdd => "timestamp_add",
            TimestampSub => "timestamp_sub",
            DateDiff => "date_diff",
            DatetimeDiff => "datetime_diff",
            TimestampDiff => "timestamp_diff",
            Extract => "extract",
            FormatDate => "format_date",
            FormatDatetime => "format_datetime",
            FormatTimestamp => "format_timestamp",
            ParseDate => "parse_date",
            ParseDatetime => "parse_datetime",
            ParseTimestamp => "parse_timestamp",
            UnixDate => "unix_date",
            UnixSeconds => "unix_seconds",
            UnixMillis => "unix_millis",
            UnixMicros => "unix_micros",
            DateFromUnixDate => "date_from_unix_date",
            TimestampSeconds => "timestamp_seconds",
            TimestampMillis => "timestamp_millis",
            TimestampMicros => "timestamp_micros",
            CountIfArg => "countif_arg",
            SumCheck => "sum_check",
        };
        s.to_string()
    }

    /// Name of the registered UDF (not reachable from user SQL: the rewriter only emits it).
    pub(crate) fn internal_name(self) -> String {
        format!("__bq_{}", self.internal_suffix())
    }

    /// Parts a part-taking function accepts (checked when the query is rewritten).
    pub(crate) fn accepts_part(self, p: Part) -> bool {
        use Kind::*;
        match self {
            DateTrunc => !p.is_sub_day() && !matches!(p, Part::DayOfWeek | Part::DayOfYear),
            DateDiff => !p.is_sub_day() && !matches!(p, Part::DayOfWeek | Part::DayOfYear),
            DatetimeTrunc | TimestampTrunc | DatetimeDiff => {
                !matches!(p, Part::DayOfWeek | Part::DayOfYear)
            }
            DateAdd | DateSub => matches!(
                p,
                Part::Day | Part::Week(Weekday::Sun) | Part::Month | Part::Quarter | Part::Year
            ),
            DatetimeAdd | DatetimeSub => {
                p.is_sub_day()
                    || matches!(
                        p,
                        Part::Day
                            | Part::Week(Weekday::Sun)
                            | Part::Month
                            | Part::Quarter
                            | Part::Year
                    )
            }
            TimestampAdd | TimestampSub | TimestampDiff => p.is_sub_day() || p == Part::Day,
            Extract => true,
            _ => false,
        }
    }
}

/// Builds the DataFusion UDF of a kind.
pub(crate) fn udf(kind: Kind) -> ScalarUDF {
    ScalarUDF::new_from_impl(BqFunc {
        name: kind.internal_name(),
        kind,
        signature: Signature::user_defined(match kind {
            Kind::CurrentDate(_) | Kind::CurrentDatetime(_) | Kind::CurrentTimestamp(_) => {
                Volatility::Stable
            }
            _ => Volatility::Immutable,
        }),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct BqFunc {
    name: String,
    kind: Kind,
    signature: Signature,
}

fn is_num(t: Ty) -> bool {
    matches!(t, Ty::Int | Ty::Float | Ty::Null)
}

/// Whether a CAST from `from` to `to` is valid GoogleSQL.
pub(crate) fn cast_allowed(from: Ty, to: BqType) -> bool {
    use BqType as B;
    match from {
        Ty::Null | Ty::Str => true,
        Ty::Int => matches!(
            to,
            B::Int64 | B::Float64 | B::Numeric | B::BigNumeric | B::Bool | B::String
        ),
        Ty::Float => matches!(
            to,
            B::Int64 | B::Float64 | B::Numeric | B::BigNumeric | B::String
        ),
        Ty::Bool => matches!(to, B::Int64 | B::Bool | B::String),
        Ty::Bytes => matches!(to, B::Bytes | B::String),
        Ty::Date => matches!(to, B::Date | B::Datetime | B::Timestamp | B::String),
        Ty::Dt => matches!(
            to,
            B::Date | B::Datetime | B::Timestamp | B::Time | B::String
        ),
        Ty::Ts => matches!(
            to,
            B::Date | B::Datetime | B::Timestamp | B::Time | B::String
        ),
        Ty::Time => matches!(to, B::Time | B::String),
        Ty::Other => false,
    }
}

/// Validates argument types the GoogleSQL way and returns the types DataFusion must cast them to.
fn coerce(kind: Kind, types: &[DataType]) -> Result<Vec<DataType>, String> {
    use Kind::*;
    let t: Vec<Ty> = types.iter().map(ty).collect();
    let n = t.len();
    let err = || {
        let names: Vec<String> = types.iter().map(type_name).collect();
        format!(
            "No matching signature for {} for argument types: {}",
            kind.sql_name(),
            names.join(", ")
        )
    };
    // Each argument must be one of `allowed` (Null always is); the result keeps its own canonical type,
    // a NULL becomes `allowed[0]`.
    let one_of = |i: usize, allowed: &[Ty]| -> Result<DataType, String> {
        if t[i] == Ty::Null {
            Ok(arrow_of(allowed[0]))
        } else if allowed.contains(&t[i]) {
            Ok(arrow_of(t[i]))
        } else {
            Err(err())
        }
    };
    let arity = |lo: usize, hi: usize| if n < lo || n > hi { Err(err()) } else { Ok(()) };
    const DATEISH: [Ty; 2] = [Ty::Date, Ty::Str];
    const TSISH: [Ty; 2] = [Ty::Ts, Ty::Str];
    const DTISH: [Ty; 3] = [Ty::Dt, Ty::Date, Ty::Str];
    match kind {
        Add | Sub | Mul | IntDiv | Mod => {
            arity(2, 2)?;
            if !(is_num(t[0]) && is_num(t[1]))
                || (kind == IntDiv && (t[0] == Ty::Float || t[1] == Ty::Float))
            {
                return Err(err());
            }
            let int = t.iter().all(|x| matches!(x, Ty::Int | Ty::Null));
            Ok(vec![arrow_of(if int { Ty::Int } else { Ty::Float }); 2])
        }
        Div | SafeDivide | IeeeDivide => {
            arity(2, 2)?;
            if !(is_num(t[0]) && is_num(t[1])) {
                return Err(err());
            }
            Ok(vec![DataType::Float64; 2])
        }
        Sign => {
            arity(1, 1)?;
            Ok(vec![one_of(0, &[Ty::Int, Ty::Float])?])
        }
        Sqrt | Floor | Ceil => {
            arity(1, 1)?;
            one_of(0, &[Ty::Float, Ty::Int])?;
            Ok(vec![DataType::Float64])
        }
        Round | Trunc => {
            arity(1, 2)?;
            one_of(0, &[Ty::Float, Ty::Int])?;
            let mut v = vec![DataType::Float64];
            if n == 2 {
                v.push(one_of(1, &[Ty::Int])?);
            }
            Ok(v)
        }
        Greatest | Least => {
            arity(1, usize::MAX)?;
            if t.iter().all(|x| is_num(*x)) {
                let target = if t.contains(&Ty::Float) {
                    Ty::Float
                } else {
                    Ty::Int
                };
                return Ok(vec![arrow_of(target); n]);
            }
            let kinds: Vec<Ty> = t.iter().copied().filter(|x| *x != Ty::Null).collect();
            if kinds.windows(2).any(|w| w[0] != w[1]) || kinds[0] == Ty::Other {
                return Err(err());
            }
            Ok(vec![arrow_of(kinds[0]); n])
        }
        Concat => {
            arity(1, usize::MAX)?;
            if t.iter().all(|x| matches!(x, Ty::Str | Ty::Null)) {
                Ok(vec![DataType::Utf8; n])
            } else if t.iter().all(|x| matches!(x, Ty::Bytes | Ty::Null)) {
                Ok(vec![DataType::Binary; n])
            } else {
                Err(err())
            }
        }
        Substr => {
            arity(2, 3)?;
            let mut v = vec![one_of(0, &[Ty::Str])?];
            for i in 1..n {
                v.push(one_of(i, &[Ty::Int])?);
            }
            Ok(v)
        }
        Trim | LTrim | RTrim | RegexpContains | RegexpExtract | Replace | RegexpReplace => {
            let (lo, hi) = match kind {
                Trim | LTrim | RTrim => (1, 2),
                Replace | RegexpReplace => (3, 3),
                _ => (2, 2),
            };
            arity(lo, hi)?;
            (0..n).map(|i| one_of(i, &[Ty::Str])).collect()
        }
        Cast(to) | SafeCast(to) => {
            arity(1, 1)?;
            if !cast_allowed(t[0], to) {
                return Err(format!(
                    "Invalid cast from {} to {}",
                    type_name(&types[0]),
                    to.sql_name()
                ));
            }
            Ok(vec![arrow_of(t[0])])
        }
        Date => match n {
            1 => Ok(vec![one_of(0, &[Ty::Ts, Ty::Dt, Ty::Date, Ty::Str])?]),
            2 => Ok(vec![one_of(0, &[Ty::Ts, Ty::Str])?, one_of(1, &[Ty::Str])?]),
            3 => (0..3).map(|i| one_of(i, &[Ty::Int])).collect(),
            _ => Err(err()),
        },
        Datetime => match n {
            1 => Ok(vec![one_of(0, &[Ty::Ts, Ty::Dt, Ty::Date, Ty::Str])?]),
            2 if t[0] == Ty::Date => Ok(vec![one_of(0, &[Ty::Date])?, one_of(1, &[Ty::Time])?]),
            2 => Ok(vec![one_of(0, &[Ty::Ts, Ty::Str])?, one_of(1, &[Ty::Str])?]),
            _ => Err(err()),
        },
        Timestamp => {
            arity(1, 2)?;
            let mut v = vec![one_of(0, &[Ty::Str, Ty::Date, Ty::Dt, Ty::Ts])?];
            if n == 2 {
                v.push(one_of(1, &[Ty::Str])?);
            }
            Ok(v)
        }
        CurrentDate(_) | CurrentDatetime(_) => {
            arity(0, 1)?;
            (0..n).map(|i| one_of(i, &[Ty::Str])).collect()
        }
        CurrentTimestamp(_) => {
            arity(0, 0)?;
            Ok(vec![])
        }
        DateTrunc => {
            arity(2, 2)?;
            Ok(vec![
                one_of(0, &[Ty::Date, Ty::Dt, Ty::Ts, Ty::Str])?,
                one_of(1, &[Ty::Str])?,
            ])
        }
        DatetimeTrunc => {
            arity(2, 2)?;
            Ok(vec![one_of(0, &DTISH)?, one_of(1, &[Ty::Str])?])
        }
        TimestampTrunc => {
            arity(2, 3)?;
            (0..n)
                .map(|i| one_of(i, if i == 0 { &TSISH } else { &[Ty::Str] }))
                .collect()
        }
        DateAdd | DateSub | DatetimeAdd | DatetimeSub | TimestampAdd | TimestampSub => {
            arity(3, 3)?;
            let first: &[Ty] = match kind {
                DateAdd | DateSub => &DATEISH,
                DatetimeAdd | DatetimeSub => &DTISH,
                _ => &TSISH,
            };
            Ok(vec![
                one_of(0, first)?,
                one_of(1, &[Ty::Int])?,
                one_of(2, &[Ty::Str])?,
            ])
        }
        DateDiff | DatetimeDiff | TimestampDiff => {
            arity(3, 3)?;
            let first: &[Ty] = match kind {
                DateDiff => &DATEISH,
                DatetimeDiff => &DTISH,
                _ => &TSISH,
            };
            Ok(vec![
                one_of(0, first)?,
                one_of(1, first)?,
                one_of(2, &[Ty::Str])?,
            ])
        }
        Extract => {
            arity(2, 3)?;
            let mut v = vec![
                one_of(0, &[Ty::Str])?,
                one_of(1, &[Ty::Ts, Ty::Dt, Ty::Date, Ty::Time])?,
            ];
            if n == 3 {
                v.push(one_of(2, &[Ty::Str])?);
            }
            Ok(v)
        }
        FormatDate | FormatDatetime | FormatTimestamp => {
            arity(2, if kind == FormatTimestamp { 3 } else { 2 })?;
            let second: &[Ty] = match kind {
                FormatDate => &DATEISH,
                FormatDatetime => &DTISH,
                _ => &TSISH,
            };
            let mut v = vec![one_of(0, &[Ty::Str])?, one_of(1, second)?];
            if n == 3 {
                v.push(one_of(2, &[Ty::Str])?);
            }
            Ok(v)
        }
        ParseDate | ParseDatetime | ParseTimestamp => {
            arity(2, if kind == ParseTimestamp { 3 } else { 2 })?;
            (0..n).map(|i| one_of(i, &[Ty::Str])).collect()
        }
        UnixDate => {
            arity(1, 1)?;
            Ok(vec![one_of(0, &DATEISH)?])
        }
        UnixSeconds | UnixMillis | UnixMicros => {
            arity(1, 1)?;
            Ok(vec![one_of(0, &TSISH)?])
        }
        DateFromUnixDate | TimestampSeconds | TimestampMillis | TimestampMicros => {
            arity(1, 1)?;
            Ok(vec![one_of(0, &[Ty::Int])?])
        }
        CountIfArg => {
            arity(1, 1)?;
            Ok(vec![one_of(0, &[Ty::Bool])?])
        }
        SumCheck => {
            arity(2, 2)?;
            Ok(vec![one_of(0, &[Ty::Int, Ty::Float])?, DataType::Float64])
        }
    }
}

/// Result type given the coerced argument types.
fn return_type_of(kind: Kind, types: &[DataType]) -> DataType {
    use Kind::*;
    let first = types.first().map(ty).unwrap_or(Ty::Null);
    match kind {
        Add | Sub | Mul | IntDiv | Mod | Sign | Greatest | Least | SumCheck => match first {
            Ty::Null => DataType::Int64,
            t => arrow_of(t),
        },
        Concat => {
            if types.iter().any(|t| ty(t) == Ty::Bytes) {
                DataType::Binary
            } else {
                DataType::Utf8
            }
        }
        Div | SafeDivide | IeeeDivide | Sqrt | Round | Trunc | Floor | Ceil => DataType::Float64,
        Substr | Trim | LTrim | RTrim | Replace | RegexpExtract | RegexpReplace | FormatDate
        | FormatDatetime | FormatTimestamp => DataType::Utf8,
        RegexpContains | CountIfArg => DataType::Boolean,
        Cast(t) | SafeCast(t) => t.arrow_type(),
        Date | CurrentDate(_) | ParseDate | DateAdd | DateSub | DateFromUnixDate => {
            DataType::Date32
        }
        DateTrunc => match first {
            Ty::Dt | Ty::Ts => arrow_of(first),
            _ => DataType::Date32,
        },
        Datetime | CurrentDatetime(_) | DatetimeTrunc | DatetimeAdd | DatetimeSub
        | ParseDatetime => arrow_of(Ty::Dt),
        Timestamp | CurrentTimestamp(_) | TimestampTrunc | TimestampAdd | TimestampSub
        | ParseTimestamp | TimestampSeconds | TimestampMillis | TimestampMicros => arrow_of(Ty::Ts),
        DateDiff | DatetimeDiff | TimestampDiff | Extract | UnixDate | UnixSeconds | UnixMillis
        | UnixMicros => DataType::Int64,
    }
}

impl ScalarUDFImpl for BqFunc {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        coerce(self.kind, arg_types).map_err(|m| DataFusionError::Plan(marked(&m)))
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(return_type_of(self.kind, arg_types))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let mut field = Field::new(self.name(), return_type_of(self.kind, &types), true);
        if let Kind::Cast(t) | Kind::SafeCast(t) = self.kind
            && matches!(t, BqType::Numeric | BqType::BigNumeric)
        {
            field = field.with_metadata(HashMap::from([(
                META_TYPE.to_string(),
                t.legacy_name().to_string(),
            )]));
        }
        Ok(Arc::new(field))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let arrays = args
            .args
            .iter()
            .map(|a| {
                a.to_array(rows)
                    .and_then(|a| canonical_array(&a).map_err(DataFusionError::Execution))
            })
            .collect::<DfResult<Vec<ArrayRef>>>()?;
        let ret = args.return_field.data_type().clone();
        let mut ctx = EvalCtx::default();
        let mut out = Vec::with_capacity(rows);
        let mut cells = Vec::with_capacity(arrays.len());
        for r in 0..rows {
            cells.clear();
            cells.extend(arrays.iter().map(|a| read_cell(a.as_ref(), r)));
            let cell = if cells.contains(&Cell::Null) {
                Ok(Cell::Null)
            } else {
                eval(self.kind, &cells, &mut ctx)
            };
            let cell = match (cell, self.kind) {
                (Err(_), Kind::SafeCast(_)) => Cell::Null,
                (Err(m), _) => return Err(exec_err(m)),
                (Ok(c), _) => c,
            };
            out.push(cell);
        }
        let array = build_array(&ret, &out).map_err(DataFusionError::Internal)?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(array))
        }
    }
}

#[derive(Default)]
struct EvalCtx {
    regexes: HashMap<String, regex::Regex>,
}

impl EvalCtx {
    fn regex(&mut self, pattern: &str) -> Result<&regex::Regex, String> {
        if !self.regexes.contains_key(pattern) {
            let re = regex::Regex::new(pattern).map_err(|e| {
                format!(
                    "Cannot parse regular expression: {}",
                    e.to_string().lines().last().unwrap_or("")
                )
            })?;
            self.regexes.insert(pattern.to_string(), re);
        }
        Ok(&self.regexes[pattern])
    }
}

fn int(c: &Cell) -> i64 {
    match c {
        Cell::Int(v) => *v,
        Cell::Float(f) => *f as i64,
        _ => 0,
    }
}

fn float(c: &Cell) -> f64 {
    match c {
        Cell::Int(v) => *v as f64,
        Cell::Float(f) => *f,
        _ => 0.0,
    }
}

fn text(c: &Cell) -> &str {
    match c {
        Cell::Str(s) => s,
        _ => "",
    }
}

fn part_of(c: &Cell) -> Result<Part, String> {
    Part::parse(text(c)).ok_or_else(|| format!("Invalid date part: {}", text(c)))
}

fn zone_of(c: &Cell) -> Result<Zone, String> {
    Zone::parse(text(c)).ok_or_else(|| format!("Invalid time zone: {}", text(c)))
}

fn as_date(c: &Cell) -> Result<NaiveDate, String> {
    let days = match c {
        Cell::Date(d) => *d,
        Cell::Str(s) => {
            parse_date(s).ok_or_else(|| format!("Could not cast literal \"{s}\" to type DATE"))?
        }
        other => return Err(format!("internal: expected DATE, got {other:?}")),
    };
    days_to_date(days).ok_or_else(|| "Date overflow".to_string())
}

fn as_ts(c: &Cell) -> Result<i64, String> {
    match c {
        Cell::Ts(v) => Ok(*v),
        Cell::Str(s) => parse_timestamp(s)
            .ok_or_else(|| format!("Could not cast literal \"{s}\" to type TIMESTAMP")),
        other => Err(format!("internal: expected TIMESTAMP, got {other:?}")),
    }
}

fn as_naive(c: &Cell) -> Result<NaiveDateTime, String> {
    let micros = match c {
        Cell::Dt(v) | Cell::Ts(v) => *v,
        Cell::Date(d) => *d as i64 * MICROS_PER_DAY,
        Cell::Str(s) => parse_datetime(s)
            .ok_or_else(|| format!("Could not cast literal \"{s}\" to type DATETIME"))?,
        other => return Err(format!("internal: expected DATETIME, got {other:?}")),
    };
    micros_to_naive(micros).ok_or_else(|| "Datetime overflow".to_string())
}

fn date_cell(d: NaiveDate) -> Result<Cell, String> {
    if in_bq_range(d) {
        Ok(Cell::Date(date_to_days(d)))
    } else {
        Err("Date overflow".into())
    }
}

fn dt_cell(dt: NaiveDateTime) -> Result<Cell, String> {
    if in_bq_range(dt.date()) {
        Ok(Cell::Dt(naive_to_micros(dt)))
    } else {
        Err("Datetime overflow".into())
    }
}

fn ts_cell(micros: i64) -> Result<Cell, String> {
    match micros_to_naive(micros) {
        Some(dt) if in_bq_range(dt.date()) => Ok(Cell::Ts(micros)),
        _ => Err("Timestamp overflow".into()),
    }
}

fn trunc_date(d: NaiveDate, p: Part) -> Option<NaiveDate> {
    match p {
        Part::Week(start) => {
            d.checked_sub_days(chrono::Days::new(d.weekday().days_since(start) as u64))
        }
        Part::IsoWeek => trunc_date(d, Part::Week(Weekday::Mon)),
        Part::Month => d.with_day(1),
        Part::Quarter => NaiveDate::from_ymd_opt(d.year(), (d.month0() / 3) * 3 + 1, 1),
        Part::Year => NaiveDate::from_ymd_opt(d.year(), 1, 1),
        Part::IsoYear => NaiveDate::from_isoywd_opt(d.iso_week().year(), 1, Weekday::Mon),
        _ => Some(d),
    }
}

fn trunc_naive(dt: NaiveDateTime, p: Part) -> Option<NaiveDateTime> {
    if p.is_sub_day() {
        let micros = naive_to_micros(dt);
        return micros_to_naive(micros - micros.rem_euclid(p.micros()));
    }
    Some(trunc_date(dt.date(), p)?.and_time(NaiveTime::MIN))
}

fn add_months(d: NaiveDate, months: i64) -> Option<NaiveDate> {
    let m = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
    if months >= 0 {
        d.checked_add_months(m)
    } else {
        d.checked_sub_months(m)
    }
}

fn add_date(d: NaiveDate, n: i64, p: Part) -> Option<NaiveDate> {
    match p {
        Part::Day => d.checked_add_signed(chrono::Duration::try_days(n)?),
        Part::Week(_) => d.checked_add_signed(chrono::Duration::try_days(n.checked_mul(7)?)?),
        Part::Month => add_months(d, n),
        Part::Quarter => add_months(d, n.checked_mul(3)?),
        Part::Year => add_months(d, n.checked_mul(12)?),
        _ => None,
    }
}

fn add_naive(dt: NaiveDateTime, n: i64, p: Part) -> Option<NaiveDateTime> {
    if p.is_sub_day() || p == Part::Day {
        let micros = naive_to_micros(dt).checked_add(n.checked_mul(p.micros())?)?;
        return micros_to_naive(micros);
    }
    Some(add_date(dt.date(), n, p)?.and_time(dt.time()))
}

fn week_number(d: NaiveDate, start: Weekday) -> i64 {
    let jan1 = NaiveDate::from_ymd_opt(d.year(), 1, 1).expect("january first exists");
    let until_first = start.days_since(jan1.weekday()) as i64;
    (d.ordinal0() as i64 + 7 - until_first) / 7
}

fn extract_date(d: NaiveDate, p: Part) -> i64 {
    match p {
        Part::Year => d.year() as i64,
        Part::Quarter => (d.month0() / 3 + 1) as i64,
        Part::Month => d.month() as i64,
        Part::Week(start) => week_number(d, start),
        Part::IsoWeek => d.iso_week().week() as i64,
        Part::IsoYear => d.iso_week().year() as i64,
        Part::Day => d.day() as i64,
        Part::DayOfWeek => d.weekday().num_days_from_sunday() as i64 + 1,
        Part::DayOfYear => d.ordinal() as i64,
        _ => 0,
    }
}

fn extract_time(micros_of_day: i64, p: Part) -> i64 {
    match p {
        Part::Hour => micros_of_day / 3_600_000_000,
        Part::Minute => (micros_of_day / 60_000_000) % 60,
        Part::Second => (micros_of_day / 1_000_000) % 60,
        Part::Millisecond => (micros_of_day / 1_000) % 1_000,
        Part::Microsecond => micros_of_day % 1_000_000,
        _ => 0,
    }
}

fn extract_naive(dt: NaiveDateTime, p: Part) -> i64 {
    if p.is_sub_day() {
        extract_time(time_to_micros(dt.time()), p)
    } else {
        extract_date(dt.date(), p)
    }
}

fn diff_dates(a: NaiveDate, b: NaiveDate, p: Part) -> Option<i64> {
    let months = |d: NaiveDate| d.year() as i64 * 12 + d.month0() as i64;
    Some(match p {
        Part::Day => (a - b).num_days(),
        Part::Week(_) | Part::IsoWeek => (trunc_date(a, p)? - trunc_date(b, p)?).num_days() / 7,
        Part::Month => months(a) - months(b),
        Part::Quarter => {
            (a.year() as i64 * 4 + a.month0() as i64 / 3)
                - (b.year() as i64 * 4 + b.month0() as i64 / 3)
        }
        Part::Year => (a.year() - b.year()) as i64,
        Part::IsoYear => (a.iso_week().year() - b.iso_week().year()) as i64,
        _ => return None,
    })
}

/// Validates that every format element is one the emulator renders like BigQuery.
fn check_format(fmt: &str) -> Result<(), String> {
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        match chars.next() {
            Some('E') => {
                let spec: String = chars
                    .by_ref()
                    .take_while(|c| *c != 'S' && *c != 'z')
                    .collect();
                if !(spec.is_empty() || spec == "*" || spec.parse::<u8>().is_ok_and(|n| n <= 6)) {
                    return Err(format!("Invalid format: %E{spec} is not supported"));
                }
            }
            Some(c) if "aAbBhcCdDeFgGHIjklmMnpPQrRsStTuUVwWxXyYzZ%".contains(c) => {}
            Some(c) => {
                return Err(format!(
                    "Invalid format: %{c} is not a supported format element"
                ));
            }
            None => return Err("Invalid format: format string ends with '%'".into()),
        }
    }
    Ok(())
}

/// FORMAT_* rendering; `zone` is the zone label/offset of a TIMESTAMP, None for DATE/DATETIME.
fn format_bq(fmt: &str, dt: NaiveDateTime, zone: Option<(String, i32)>) -> Result<String, String> {
    check_format(fmt)?;
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let frac = dt.nanosecond() / 1000;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let spec = chars.next().unwrap_or('%');
        match spec {
            '%' => out.push('%'),
            'Q' => out.push_str(&(dt.month0() / 3 + 1).to_string()),
            'Z' => out.push_str(
                &zone
                    .as_ref()
                    .map_or_else(|| "UTC".to_string(), |z| z.0.clone()),
            ),
            'z' => {
                let off = zone.as_ref().map_or(0, |z| z.1);
                let sign = if off < 0 { '-' } else { '+' };
                out.push_str(&format!(
                    "{sign}{:02}{:02}",
                    off.abs() / 3600,
                    (off.abs() / 60) % 60
                ));
            }
            'E' => {
                let mut spec = String::new();
                for c in chars.by_ref() {
                    if c == 'S' || c == 'z' {
                        spec.push(c);
                        break;
                    }
                    spec.push(c);
                }
                if spec == "z" {
                    let off = zone.as_ref().map_or(0, |z| z.1);
                    let sign = if off < 0 { '-' } else { '+' };
                    out.push_str(&format!(
                        "{sign}{:02}:{:02}",
                        off.abs() / 3600,
                        (off.abs() / 60) % 60
                    ));
                } else {
                    let digits = spec.trim_end_matches('S');
                    out.push_str(&format!("{:02}", dt.second()));
                    let n: usize = if digits == "*" {
                        6
                    } else {
                        digits.parse().unwrap_or(0)
                    };
                    if n > 0 && !(digits == "*" && frac == 0) {
                        let s = format!("{frac:06}");
                        out.push('.');
                        out.push_str(&s[..n]);
                    }
                }
            }
            other => out.push_str(&dt.format(&format!("%{other}")).to_string()),
        }
    }
    Ok(out)
}

/// PARSE_* parsing with chrono, defaulting missing fields to 1970-01-01 00:00:00 like BigQuery.
fn parse_bq(fmt: &str, s: &str) -> Result<(NaiveDateTime, Option<i32>), String> {
    use chrono::format::{Parsed, StrftimeItems, parse};
    check_format(fmt)?;
    if fmt.contains("%Q") || fmt.contains("%E") && !fmt.contains("%E*S") && !fmt.contains("%Ez") {
        return Err(format!("Unsupported format element in parse format: {fmt}"));
    }
    let translated = fmt
        .replace("%E*S", "%S%.f")
        .replace("%Ez", "%:z")
        .replace("%Z", "UTC");
    let mut p = Parsed::new();
    parse(&mut p, s, StrftimeItems::new(&translated))
        .map_err(|e| format!("Failed to parse input string \"{s}\" with format \"{fmt}\": {e}"))?;
    let fill = |r: chrono::format::ParseResult<()>| r.map_err(|e| e.to_string());
    if p.year().is_none() && p.isoyear().is_none() && p.year_mod_100().is_none() {
        fill(p.set_year(1970))?;
    }
    if p.month().is_none()
        && p.ordinal().is_none()
        && p.isoweek().is_none()
        && p.week_from_sun().is_none()
        && p.week_from_mon().is_none()
    {
        fill(p.set_month(1))?;
    }
    if p.day().is_none() && p.ordinal().is_none() && p.weekday().is_none() {
        fill(p.set_day(1))?;
    }
    if p.hour_div_12().is_none() && p.hour_mod_12().is_none() {
        fill(p.set_hour(0))?;
    }
    if p.minute().is_none() {
        fill(p.set_minute(0))?;
    }
    let date = p
        .to_naive_date()
        .map_err(|e| format!("Failed to parse input string \"{s}\": {e}"))?;
    let time = p
        .to_naive_time()
        .map_err(|e| format!("Failed to parse input string \"{s}\": {e}"))?;
    Ok((date.and_time(time), p.offset()))
}

fn cast_cell(c: &Cell, to: BqType) -> Result<Cell, String> {
    use BqType as B;
    let numeric = |f: f64| -> Result<Cell, String> {
        if !f.is_finite() || f.abs() >= 1e29 {
            return Err(format!("Invalid NUMERIC value: {}", format_float_sql(f)));
        }
        Ok(Cell::Float((f * 1e9).round() / 1e9))
    };
    Ok(match (c, to) {
        (Cell::Int(v), B::Int64) => Cell::Int(*v),
        (Cell::Int(v), B::Float64) => Cell::Float(*v as f64),
        (Cell::Int(v), B::Numeric | B::BigNumeric) => numeric(*v as f64)?,
        (Cell::Int(v), B::Bool) => Cell::Bool(*v != 0),
        (Cell::Int(v), B::String) => Cell::Str(v.to_string()),
        (Cell::Float(f), B::Int64) => {
            let r = f.round();
            if !f.is_finite() {
                return Err(format!(
                    "Illegal conversion of non-finite floating point number to an integer: {}",
                    format_float_sql(*f)
                ));
            }
            if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&r) {
                return Err(format!("int64 overflow: {}", format_float_sql(*f)));
            }
            Cell::Int(r as i64)
        }
        (Cell::Float(f), B::Float64) => Cell::Float(*f),
        (Cell::Float(f), B::Numeric | B::BigNumeric) => numeric(*f)?,
        (Cell::Float(f), B::String) => Cell::Str(format_float_sql(*f)),
        (Cell::Bool(b), B::Int64) => Cell::Int(*b as i64),
        (Cell::Bool(b), B::Bool) => Cell::Bool(*b),
        (Cell::Bool(b), B::String) => Cell::Str(b.to_string()),
        (Cell::Bytes(b), B::Bytes) => Cell::Bytes(b.clone()),
        (Cell::Bytes(b), B::String) => Cell::Str(
            String::from_utf8(b.clone())
                .map_err(|_| "Invalid UTF-8 in BYTES cast to STRING".to_string())?,
        ),
        (Cell::Date(d), B::Date) => Cell::Date(*d),
        (Cell::Date(d), B::String) => Cell::Str(format_date(*d)),
        (Cell::Date(d), B::Datetime) => Cell::Dt(*d as i64 * MICROS_PER_DAY),
        (Cell::Date(d), B::Timestamp) => Cell::Ts(*d as i64 * MICROS_PER_DAY),
        (Cell::Dt(v) | Cell::Ts(v), B::Date) => Cell::Date(date_to_days(
            micros_to_naive(*v).ok_or("Date overflow")?.date(),
        )),
        (Cell::Dt(v), B::Datetime) | (Cell::Ts(v), B::Datetime) => Cell::Dt(*v),
        (Cell::Dt(v), B::Timestamp) | (Cell::Ts(v), B::Timestamp) => Cell::Ts(*v),
        (Cell::Dt(v) | Cell::Ts(v), B::Time) => Cell::Time(v.rem_euclid(MICROS_PER_DAY)),
        (Cell::Dt(v), B::String) => Cell::Str(format_naive(
            micros_to_naive(*v).ok_or("Datetime overflow")?,
            ' ',
            false,
        )),
        (Cell::Ts(v), B::String) => Cell::Str(format!(
            "{}+00",
            format_naive(micros_to_naive(*v).ok_or("Timestamp overflow")?, ' ', false)
        )),
        (Cell::Time(v), B::Time) => Cell::Time(*v),
        (Cell::Time(v), B::String) => Cell::Str(format_time(*v)),
        (Cell::Str(s), _) => cast_string(s, to)?,
        (other, to) => return Err(format!("Invalid cast of {other:?} to {}", to.sql_name())),
    })
}

fn cast_string(s: &str, to: BqType) -> Result<Cell, String> {
    use BqType as B;
    Ok(match to {
        B::String | B::Json | B::Geography => Cell::Str(s.to_string()),
        B::Bytes => Cell::Bytes(s.as_bytes().to_vec()),
        B::Int64 => {
            let (neg, body) = match s.strip_prefix('-') {
                Some(b) => (true, b),
                None => (false, s.strip_prefix('+').unwrap_or(s)),
            };
            let parsed = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
                Some(hex) if !hex.is_empty() => i128::from_str_radix(hex, 16).ok(),
                _ if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) => {
                    body.parse::<i128>().ok()
                }
                _ => None,
            };
            let v = parsed
                .map(|v| if neg { -v } else { v })
                .and_then(|v| i64::try_from(v).ok())
                .ok_or_else(|| format!("Bad int64 value: {s}"))?;
            Cell::Int(v)
        }
        B::Float64 | B::Numeric | B::BigNumeric => {
            let ok = !s.is_empty()
                && !s.starts_with(char::is_whitespace)
                && !s.ends_with(char::is_whitespace);
            let f: f64 = s
                .parse()
                .ok()
                .filter(|_| ok)
                .ok_or_else(|| format!("Bad double value: {s}"))?;
            if to == B::Float64 {
                Cell::Float(f)
            } else {
                cast_cell(&Cell::Float(f), to)?
            }
        }
        B::Bool => match s.to_ascii_lowercase().as_str() {
            "true" => Cell::Bool(true),
            "false" => Cell::Bool(false),
            _ => return Err(format!("Bad bool value: {s}")),
        },
        B::Date => Cell::Date(parse_date(s).ok_or_else(|| format!("Invalid date: '{s}'"))?),
        B::Datetime => {
            Cell::Dt(parse_datetime(s).ok_or_else(|| format!("Invalid datetime string \"{s}\""))?)
        }
        B::Timestamp => {
            Cell::Ts(parse_timestamp(s).ok_or_else(|| format!("Invalid timestamp: '{s}'"))?)
        }
        B::Time => Cell::Time(parse_time(s).ok_or_else(|| format!("Invalid time string \"{s}\""))?),
    })
}

fn checked(v: Option<i64>, a: &Cell, op: &str, b: &Cell) -> Result<Cell, String> {
    v.map(Cell::Int)
        .ok_or_else(|| format!("int64 overflow: {} {op} {}", int(a), int(b)))
}

fn compare(a: &Cell, b: &Cell) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Cell::Int(x), Cell::Int(y)) => Some(x.cmp(y)),
        (Cell::Float(x), Cell::Float(y)) => x.partial_cmp(y),
        (Cell::Str(x), Cell::Str(y)) => Some(x.cmp(y)),
        (Cell::Bool(x), Cell::Bool(y)) => Some(x.cmp(y)),
        (Cell::Bytes(x), Cell::Bytes(y)) => Some(x.cmp(y)),
        (Cell::Date(x), Cell::Date(y)) => Some(x.cmp(y)),
        (Cell::Ts(x), Cell::Ts(y))
        | (Cell::Dt(x), Cell::Dt(y))
        | (Cell::Time(x), Cell::Time(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn trim_with(s: &str, chars: Option<&str>, left: bool, right: bool) -> String {
    let pred = |c: char| match chars {
        Some(set) => set.contains(c),
        None => c.is_whitespace(),
    };
    let mut out = s;
    if left {
        out = out.trim_start_matches(pred);
    }
    if right {
        out = out.trim_end_matches(pred);
    }
    out.to_string()
}

fn regexp_replacement(repl: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = repl.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(d) if d.is_ascii_digit() => out.push_str(&format!("${{{d}}}")),
                Some('\\') => out.push('\\'),
                _ => return Err("Invalid REGEXP_REPLACE pattern: backslash must be followed by a digit or a backslash".into()),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Evaluates one row; `a` holds no NULLs.
fn eval(kind: Kind, a: &[Cell], ctx: &mut EvalCtx) -> Result<Cell, String> {
    use Kind::*;
    Ok(match kind {
        Add | Sub | Mul => match (&a[0], &a[1]) {
            (Cell::Int(x), Cell::Int(y)) => {
                let (v, op) = match kind {
                    Add => (x.checked_add(*y), "+"),
                    Sub => (x.checked_sub(*y), "-"),
                    _ => (x.checked_mul(*y), "*"),
                };
                checked(v, &a[0], op, &a[1])?
            }
            (x, y) => Cell::Float(match kind {
                Add => float(x) + float(y),
                Sub => float(x) - float(y),
                _ => float(x) * float(y),
            }),
        },
        Div => {
            if float(&a[1]) == 0.0 {
                return Err(format!(
                    "division by zero: {} / {}",
                    format_float_sql(float(&a[0])),
                    format_float_sql(float(&a[1]))
                ));
            }
            Cell::Float(float(&a[0]) / float(&a[1]))
        }
        SafeDivide => {
            if float(&a[1]) == 0.0 {
                Cell::Null
            } else {
                Cell::Float(float(&a[0]) / float(&a[1]))
            }
        }
        IeeeDivide => Cell::Float(float(&a[0]) / float(&a[1])),
        IntDiv | Mod => match (&a[0], &a[1]) {
            (Cell::Int(x), Cell::Int(y)) => {
                if *y == 0 {
                    return Err(format!(
                        "division by zero: {}({x}, {y})",
                        if kind == Mod { "MOD" } else { "DIV" }
                    ));
                }
                let v = if kind == Mod {
                    x.checked_rem(*y)
                } else {
                    x.checked_div(*y)
                };
                checked(v, &a[0], if kind == Mod { "%" } else { "DIV" }, &a[1])?
            }
            (x, y) => {
                if float(y) == 0.0 {
                    return Err(format!(
                        "division by zero: MOD({}, {})",
                        format_float_sql(float(x)),
                        format_float_sql(float(y))
                    ));
                }
                Cell::Float(float(x) % float(y))
            }
        },
        Sign => match &a[0] {
            Cell::Int(v) => Cell::Int(v.signum()),
            other => {
                let f = float(other);
                Cell::Float(if f == 0.0 || f.is_nan() {
                    f
                } else {
                    f.signum()
                })
            }
        },
        Sqrt => {
            let f = float(&a[0]);
            if f < 0.0 {
                return Err(format!(
                    "Argument to SQRT cannot be negative: {}",
                    format_float_sql(f)
                ));
            }
            Cell::Float(f.sqrt())
        }
        Round | Trunc => {
            let f = float(&a[0]);
            let digits = a.get(1).map_or(0, int).clamp(-400, 400) as i32;
            let scale = 10f64.powi(digits);
            let op = |x: f64| if kind == Round { x.round() } else { x.trunc() };
            Cell::Float(if digits == 0 {
                op(f)
            } else {
                op(f * scale) / scale
            })
        }
        Floor => Cell::Float(float(&a[0]).floor()),
        Ceil => Cell::Float(float(&a[0]).ceil()),
        Greatest | Least => {
            if a.iter().any(|c| matches!(c, Cell::Float(f) if f.is_nan())) {
                return Ok(Cell::Float(f64::NAN));
            }
            let mut best = a[0].clone();
            for c in &a[1..] {
                let ord =
                    compare(c, &best).ok_or("internal: incomparable GREATEST/LEAST arguments")?;
                let better = if kind == Greatest {
                    ord.is_gt()
                } else {
                    ord.is_lt()
                };
                if better {
                    best = c.clone();
                }
            }
            best
        }
        Concat => {
            if matches!(a[0], Cell::Bytes(_)) {
                Cell::Bytes(
                    a.iter()
                        .flat_map(|c| {
                            if let Cell::Bytes(b) = c {
                                b.clone()
                            } else {
                                vec![]
                            }
                        })
                        .collect(),
                )
            } else {
                Cell::Str(a.iter().map(text).collect())
            }
        }
        Substr => {
            let chars: Vec<char> = text(&a[0]).chars().collect();
            let len = chars.len() as i64;
            let pos = int(&a[1]);
            let start = if pos > 0 {
                pos - 1
            } else if pos == 0 {
                0
            } else {
                (len + pos).max(0)
            };
            let take = match a.get(2) {
                Some(c) if int(c) < 0 => {
                    return Err(format!(
                        "Third argument in SUBSTR() cannot be negative: {}",
                        int(c)
                    ));
                }
                Some(c) => int(c),
                None => len,
            };
            if start >= len {
                Cell::Str(String::new())
            } else {
                let end = start.saturating_add(take).min(len);
                Cell::Str(chars[start as usize..end as usize].iter().collect())
            }
        }
        Trim | LTrim | RTrim => {
            let chars = a.get(1).map(text);
            Cell::Str(trim_with(text(&a[0]), chars, kind != RTrim, kind != LTrim))
        }
        Replace => {
            let (s, from, to) = (text(&a[0]), text(&a[1]), text(&a[2]));
            Cell::Str(if from.is_empty() {
                s.to_string()
            } else {
                s.replace(from, to)
            })
        }
        RegexpContains => Cell::Bool(ctx.regex(text(&a[1]))?.is_match(text(&a[0]))),
        RegexpExtract => {
            let re = ctx.regex(text(&a[1]))?;
            match re.captures_len() - 1 {
                0 => re
                    .find(text(&a[0]))
                    .map_or(Cell::Null, |m| Cell::Str(m.as_str().to_string())),
                1 => re
                    .captures(text(&a[0]))
                    .and_then(|c| c.get(1))
                    .map_or(Cell::Null, |m| Cell::Str(m.as_str().to_string())),
                _ => {
                    return Err(
                        "Regular expressions passed into extraction functions must not have more than 1 capturing group"
                            .into(),
                    );
                }
            }
        }
        RegexpReplace => {
            let repl = regexp_replacement(text(&a[2]))?;
            let re = ctx.regex(text(&a[1]))?;
            Cell::Str(re.replace_all(text(&a[0]), repl.as_str()).into_owned())
        }
        Cast(to) | SafeCast(to) => cast_cell(&a[0], to)?,
        Date => match a.len() {
            1 => match &a[0] {
                Cell::Ts(v) | Cell::Dt(v) => Cell::Date(date_to_days(
                    micros_to_naive(*v).ok_or("Date overflow")?.date(),
                )),
                other => date_cell(as_date(other)?)?,
            },
            2 => {
                let local = zone_of(&a[1])?
                    .to_local(as_ts(&a[0])?)
                    .ok_or("Date overflow")?;
                date_cell(local.date())?
            }
            _ => {
                let (y, m, d) = (int(&a[0]), int(&a[1]), int(&a[2]));
                let date = i32::try_from(y)
                    .ok()
                    .zip(u32::try_from(m).ok())
                    .zip(u32::try_from(d).ok())
                    .and_then(|((y, m), d)| NaiveDate::from_ymd_opt(y, m, d))
                    .ok_or_else(|| {
                        format!("Input calculates to invalid date: {y:04}-{m:02}-{d:02}")
                    })?;
                date_cell(date)?
            }
        },
        Datetime => match (&a[0], a.get(1)) {
            (Cell::Ts(v), Some(z)) => {
                dt_cell(zone_of(z)?.to_local(*v).ok_or("Datetime overflow")?)?
            }
            (Cell::Str(_), Some(z)) => dt_cell(
                zone_of(z)?
                    .to_local(as_ts(&a[0])?)
                    .ok_or("Datetime overflow")?,
            )?,
            (Cell::Date(d), Some(Cell::Time(t))) => Cell::Dt(*d as i64 * MICROS_PER_DAY + t),
            (c, _) => dt_cell(as_naive(c)?)?,
        },
        Timestamp => {
            let zone = a
                .get(1)
                .map(zone_of)
                .transpose()?
                .unwrap_or(Zone::Offset(0));
            let micros = match &a[0] {
                Cell::Ts(v) => *v,
                Cell::Str(s) => parse_timestamp_in(s, zone)
                    .ok_or_else(|| format!("Invalid timestamp: '{s}'"))?,
                other => zone
                    .to_utc_micros(as_naive(other)?)
                    .ok_or("Timestamp overflow")?,
            };
            ts_cell(micros)?
        }
        CurrentTimestamp(now) => Cell::Ts(now),
        CurrentDate(now) | CurrentDatetime(now) => {
            let zone = a
                .first()
                .map(zone_of)
                .transpose()?
                .unwrap_or(Zone::Offset(0));
            let local = zone.to_local(now).ok_or("Datetime overflow")?;
            if matches!(kind, CurrentDate(_)) {
                date_cell(local.date())?
            } else {
                dt_cell(local)?
            }
        }
        DateTrunc => {
            let p = part_of(&a[1])?;
            match &a[0] {
                Cell::Ts(v) => Cell::Ts(naive_to_micros(
                    trunc_naive(micros_to_naive(*v).ok_or("Timestamp overflow")?, p)
                        .ok_or("Date overflow")?,
                )),
                Cell::Dt(_) => {
                    dt_cell(trunc_naive(as_naive(&a[0])?, p).ok_or("Datetime overflow")?)?
                }
                other => date_cell(trunc_date(as_date(other)?, p).ok_or("Date overflow")?)?,
            }
        }
        DatetimeTrunc => {
            dt_cell(trunc_naive(as_naive(&a[0])?, part_of(&a[1])?).ok_or("Datetime overflow")?)?
        }
        TimestampTrunc => {
            let zone = a
                .get(2)
                .map(zone_of)
                .transpose()?
                .unwrap_or(Zone::Offset(0));
            let local = zone.to_local(as_ts(&a[0])?).ok_or("Timestamp overflow")?;
            let t = trunc_naive(local, part_of(&a[1])?).ok_or("Timestamp overflow")?;
            ts_cell(zone.to_utc_micros(t).ok_or("Timestamp overflow")?)?
        }
        DateAdd | DateSub | DatetimeAdd | DatetimeSub | TimestampAdd | TimestampSub => {
            let p = part_of(&a[2])?;
            let n = if matches!(kind, DateSub | DatetimeSub | TimestampSub) {
                int(&a[1]).checked_neg().ok_or("int64 overflow")?
            } else {
                int(&a[1])
            };
            match kind {
                DateAdd | DateSub => {
                    date_cell(add_date(as_date(&a[0])?, n, p).ok_or("Date overflow")?)?
                }
                DatetimeAdd | DatetimeSub => {
                    dt_cell(add_naive(as_naive(&a[0])?, n, p).ok_or("Datetime overflow")?)?
                }
                _ => {
                    let v = as_ts(&a[0])?
                        .checked_add(n.checked_mul(p.micros()).ok_or("Timestamp overflow")?);
                    ts_cell(v.ok_or("Timestamp overflow")?)?
                }
            }
        }
        DateDiff => {
            let p = part_of(&a[2])?;
            Cell::Int(
                diff_dates(as_date(&a[0])?, as_date(&a[1])?, p).ok_or("Invalid DATE_DIFF part")?,
            )
        }
        DatetimeDiff => {
            let p = part_of(&a[2])?;
            let (x, y) = (as_naive(&a[0])?, as_naive(&a[1])?);
            if p.is_sub_day() {
                let u = p.micros();
                Cell::Int(naive_to_micros(x).div_euclid(u) - naive_to_micros(y).div_euclid(u))
            } else {
                Cell::Int(diff_dates(x.date(), y.date(), p).ok_or("Invalid DATETIME_DIFF part")?)
            }
        }
        TimestampDiff => {
            let p = part_of(&a[2])?;
            Cell::Int((as_ts(&a[0])? - as_ts(&a[1])?) / p.micros())
        }
        Extract => {
            let p = part_of(&a[0])?;
            let zone = a
                .get(2)
                .map(zone_of)
                .transpose()?
                .unwrap_or(Zone::Offset(0));
            Cell::Int(match &a[1] {
                Cell::Date(d) => {
                    if p.is_sub_day() {
                        return Err(format!(
                            "EXTRACT from DATE does not support the {} date part",
                            text(&a[0])
                        ));
                    }
                    extract_date(days_to_date(*d).ok_or("Date overflow")?, p)
                }
                Cell::Ts(v) => extract_naive(zone.to_local(*v).ok_or("Timestamp overflow")?, p),
                Cell::Dt(_) => extract_naive(as_naive(&a[1])?, p),
                Cell::Time(t) => {
                    if !p.is_sub_day() {
                        return Err(format!(
                            "EXTRACT from TIME does not support the {} date part",
                            text(&a[0])
                        ));
                    }
                    extract_time(*t, p)
                }
                other => return Err(format!("internal: EXTRACT from {other:?}")),
            })
        }
        FormatDate => Cell::Str(format_bq(
            text(&a[0]),
            as_date(&a[1])?.and_time(NaiveTime::MIN),
            None,
        )?),
        FormatDatetime => Cell::Str(format_bq(text(&a[0]), as_naive(&a[1])?, None)?),
        FormatTimestamp => {
            let zone = a
                .get(2)
                .map(zone_of)
                .transpose()?
                .unwrap_or(Zone::Offset(0));
            let ts = as_ts(&a[1])?;
            let local = zone.to_local(ts).ok_or("Timestamp overflow")?;
            let offset = ((naive_to_micros(local) - ts) / 1_000_000) as i32;
            let label = match (a.get(2), offset) {
                (None, _) => "UTC".to_string(),
                (Some(z), _) if matches!(zone, Zone::Named(_)) => text(z).to_string(),
                (_, o) => format!(
                    "UTC{}{:02}:{:02}",
                    if o < 0 { '-' } else { '+' },
                    o.abs() / 3600,
                    (o.abs() / 60) % 60
                ),
            };
            Cell::Str(format_bq(text(&a[0]), local, Some((label, offset)))?)
        }
        ParseDate => date_cell(parse_bq(text(&a[0]), text(&a[1]))?.0.date())?,
        ParseDatetime => dt_cell(parse_bq(text(&a[0]), text(&a[1]))?.0)?,
        ParseTimestamp => {
            let (local, offset) = parse_bq(text(&a[0]), text(&a[1]))?;
            let zone = match offset {
                Some(o) => Zone::Offset(o),
                None => a
                    .get(2)
                    .map(zone_of)
                    .transpose()?
                    .unwrap_or(Zone::Offset(0)),
            };
            ts_cell(zone.to_utc_micros(local).ok_or("Timestamp overflow")?)?
        }
        CountIfArg => a[0].clone(),
        SumCheck => {
            // Wrapping INT64 sums are exact modulo 2^64, so they are right whenever the true sum fits; when it
            // does not, they are off by at least 2^64 minus the float sum's tiny rounding error.
            if let Cell::Int(v) = a[0]
                && (float(&a[1]) - v as f64).abs() > 4e18
            {
                return Err("int64 overflow in SUM".into());
            }
            a[0].clone()
        }
        UnixDate => Cell::Int(date_to_days(as_date(&a[0])?) as i64),
        UnixSeconds => Cell::Int(as_ts(&a[0])?.div_euclid(1_000_000)),
        UnixMillis => Cell::Int(as_ts(&a[0])?.div_euclid(1_000)),
        UnixMicros => Cell::Int(as_ts(&a[0])?),
        DateFromUnixDate => {
            let d = i32::try_from(int(&a[0]))
                .ok()
                .and_then(days_to_date)
                .ok_or("Date overflow")?;
            date_cell(d)?
        }
        TimestampSeconds | TimestampMillis | TimestampMicros => {
            let scale = match kind {
                TimestampSeconds => 1_000_000,
                TimestampMillis => 1_000,
                _ => 1,
            };
            ts_cell(int(&a[0]).checked_mul(scale).ok_or("Timestamp overflow")?)?
        }
    })
}
