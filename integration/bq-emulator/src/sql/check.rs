//! GoogleSQL type rules DataFusion does not enforce, applied to the logical plan before execution.
//!
//! DataFusion coerces freely ('10' > 9 compares strings, CASE mixes INT64 and STRING, a DATE compares with
//! a TIMESTAMP); GoogleSQL rejects those. This pass rejects them with BigQuery's "No matching signature"
//! wording, and performs GoogleSQL's literal coercion itself: a STRING literal or parameter compared with a
//! DATE/DATETIME/TIMESTAMP/TIME is parsed with BigQuery's rules (e.g. "2024-01-15 00:00:00+00"), not
//! Arrow's.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::{AggregateFunction, Between, Case, InList, InSubquery, Like};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};

use super::functions::{Ty, marked, ty, type_name};
use crate::data::{parse_date, parse_datetime, parse_time, parse_timestamp};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fam {
    Null,
    Num,
    Str,
    Bool,
    Bytes,
    Date,
    Ts,
    Dt,
    Time,
    Other,
}

/// The comparison family of an Arrow type: the coarse GoogleSQL type, with
/// INT64 and FLOAT64 (and NUMERIC) together, since they compare freely.
fn fam(dt: &DataType) -> Fam {
    match ty(dt) {
        Ty::Null => Fam::Null,
        Ty::Int | Ty::Float => Fam::Num,
        Ty::Str => Fam::Str,
        Ty::Bool => Fam::Bool,
        Ty::Bytes => Fam::Bytes,
        Ty::Date => Fam::Date,
        Ty::Ts => Fam::Ts,
        Ty::Dt => Fam::Dt,
        Ty::Time => Fam::Time,
        Ty::Other => Fam::Other,
    }
}

fn temporal(f: Fam) -> bool {
    matches!(f, Fam::Date | Fam::Ts | Fam::Dt | Fam::Time)
}

/// A STRING literal (query parameters are literals after substitution).
fn string_literal(e: &Expr) -> Option<Option<&str>> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s),
            _,
        ) => Some(s.as_deref()),
        Expr::Alias(a) => string_literal(&a.expr),
        _ => None,
    }
}

/// Whether two operand types may meet in a comparison, IN, BETWEEN, CASE, COALESCE or set operation.
fn compatible(a: &DataType, a_lit: bool, b: &DataType, b_lit: bool) -> bool {
    let (fa, fb) = (fam(a), fam(b));
    if fa == Fam::Null || fb == Fam::Null {
        return true;
    }
    if fa == fb {
        return fa != Fam::Other || a == b;
    }
    if matches!((fa, fb), (Fam::Date, Fam::Dt) | (Fam::Dt, Fam::Date)) {
        return true;
    }
    (a_lit && fa == Fam::Str && temporal(fb)) || (b_lit && fb == Fam::Str && temporal(fa))
}

fn fail(msg: String) -> DataFusionError {
    DataFusionError::Plan(marked(&msg))
}

fn signature_error(what: &str, types: &[&DataType]) -> DataFusionError {
    let names: Vec<String> = types.iter().map(|t| type_name(t)).collect();
    fail(format!(
        "No matching signature for {what} for argument types: {}",
        names.join(", ")
    ))
}

/// Parses a STRING literal as the temporal type it meets, BigQuery's way.
fn coerce_literal(text: Option<&str>, target: &DataType) -> DfResult<Expr> {
    let bad = |s: &str| {
        fail(format!(
            "Could not cast literal \"{s}\" to type {}",
            type_name(target)
        ))
    };
    let value = match (target, text) {
        (DataType::Date32, s) => {
            ScalarValue::Date32(s.map(|s| parse_date(s).ok_or_else(|| bad(s))).transpose()?)
        }
        (DataType::Timestamp(_, tz), s) => {
            let parse = |s: &str| {
                if tz.is_some() {
                    parse_timestamp(s)
                } else {
                    parse_datetime(s)
                }
            };
            ScalarValue::TimestampMicrosecond(
                s.map(|s| parse(s).ok_or_else(|| bad(s))).transpose()?,
                tz.clone(),
            )
        }
        (DataType::Time64(TimeUnit::Microsecond), s) => ScalarValue::Time64Microsecond(
            s.map(|s| parse_time(s).ok_or_else(|| bad(s))).transpose()?,
        ),
        _ => {
            return Ok(Expr::Literal(
                ScalarValue::Utf8(text.map(str::to_string)),
                None,
            ));
        }
    };
    Ok(Expr::Literal(value, None))
}

/// If `other` is a STRING literal and `anchor` temporal, returns the parsed literal.
fn literal_for(anchor: &DataType, other: &Expr) -> DfResult<Option<Expr>> {
    if !temporal(fam(anchor)) {
        return Ok(None);
    }
    match string_literal(other) {
        Some(text) => coerce_literal(text, anchor).map(Some),
        None => Ok(None),
    }
}

fn is_comparison(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

fn op_name(op: &Operator) -> String {
    match op {
        Operator::IsDistinctFrom => "IS DISTINCT FROM".into(),
        Operator::IsNotDistinctFrom => "IS NOT DISTINCT FROM".into(),
        other => other.to_string(),
    }
}

fn check_expr(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let ty = |x: &Expr| x.get_type(schema).ok();
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if is_comparison(&op) => {
            let (Some(lt), Some(rt)) = (ty(&left), ty(&right)) else {
                return Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                })));
            };
            let mut changed = false;
            let (mut left, mut right) = (left, right);
            if let Some(l) = literal_for(&rt, &left)? {
                left = Box::new(l);
                changed = true;
            } else if let Some(r) = literal_for(&lt, &right)? {
                right = Box::new(r);
                changed = true;
            }
            let (lt, rt) = (ty(&left).unwrap_or(lt), ty(&right).unwrap_or(rt));
            if !compatible(
                &lt,
                string_literal(&left).is_some(),
                &rt,
                string_literal(&right).is_some(),
            ) {
                return Err(signature_error(
                    &format!("operator {}", op_name(&op)),
                    &[&lt, &rt],
                ));
            }
            let e = Expr::BinaryExpr(BinaryExpr { left, op, right });
            Ok(if changed {
                Transformed::yes(e)
            } else {
                Transformed::no(e)
            })
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: op @ (Operator::And | Operator::Or),
            right,
        }) => {
            if let (Some(lt), Some(rt)) = (ty(&left), ty(&right))
                && !(matches!(fam(&lt), Fam::Bool | Fam::Null)
                    && matches!(fam(&rt), Fam::Bool | Fam::Null))
            {
                return Err(signature_error(&format!("operator {op}"), &[&lt, &rt]));
            }
            Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                left,
                op,
                right,
            })))
        }
        Expr::Not(inner) => {
            if let Some(t) = ty(&inner)
                && !matches!(fam(&t), Fam::Bool | Fam::Null)
            {
                return Err(signature_error("operator NOT", &[&t]));
            }
            Ok(Transformed::no(Expr::Not(inner)))
        }
        Expr::IsTrue(ref inner)
        | Expr::IsFalse(ref inner)
        | Expr::IsNotTrue(ref inner)
        | Expr::IsNotFalse(ref inner) => {
            if let Some(t) = ty(inner)
                && !matches!(fam(&t), Fam::Bool | Fam::Null)
            {
                return Err(signature_error("operator IS TRUE/IS FALSE", &[&t]));
            }
            Ok(Transformed::no(e))
        }
        Expr::Like(Like {
            ref expr,
            ref pattern,
            ..
        }) => {
            if let (Some(a), Some(b)) = (ty(expr), ty(pattern)) {
                let ok = matches!(
                    (fam(&a), fam(&b)),
                    (Fam::Str | Fam::Null, Fam::Str | Fam::Null) | (Fam::Bytes, Fam::Bytes)
                );
                if !ok {
                    return Err(signature_error("operator LIKE", &[&a, &b]));
                }
            }
            Ok(Transformed::no(e))
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => {
            let Some(et) = ty(&expr) else {
                return Ok(Transformed::no(Expr::Between(Between {
                    expr,
                    negated,
                    low,
                    high,
                })));
            };
            let mut changed = false;
            let (mut low, mut high) = (low, high);
            if let Some(l) = literal_for(&et, &low)? {
                low = Box::new(l);
                changed = true;
            }
            if let Some(h) = literal_for(&et, &high)? {
                high = Box::new(h);
                changed = true;
            }
            for bound in [&low, &high] {
                if let Some(bt) = ty(bound)
                    && !compatible(
                        &et,
                        string_literal(&expr).is_some(),
                        &bt,
                        string_literal(bound).is_some(),
                    )
                {
                    return Err(signature_error("operator BETWEEN", &[&et, &bt]));
                }
            }
            let e = Expr::Between(Between {
                expr,
                negated,
                low,
                high,
            });
            Ok(if changed {
                Transformed::yes(e)
            } else {
                Transformed::no(e)
            })
        }
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) => {
            let Some(et) = ty(&expr) else {
                return Ok(Transformed::no(Expr::InList(InList {
                    expr,
                    list,
                    negated,
                })));
            };
            let mut changed = false;
            let mut out = Vec::with_capacity(list.len());
            for item in list {
                let item = match literal_for(&et, &item)? {
                    Some(l) => {
                        changed = true;
                        l
                    }
                    None => item,
                };
                if let Some(it) = ty(&item)
                    && !compatible(
                        &et,
                        string_literal(&expr).is_some(),
                        &it,
                        string_literal(&item).is_some(),
                    )
                {
                    return Err(signature_error("operator IN", &[&et, &it]));
                }
                out.push(item);
            }
            let e = Expr::InList(InList {
                expr,
                list: out,
                negated,
            });
            Ok(if changed {
                Transformed::yes(e)
            } else {
                Transformed::no(e)
            })
        }
        Expr::InSubquery(InSubquery {
            ref expr,
            ref subquery,
            ..
        }) => {
            if let (Some(et), Some(f)) = (ty(expr), subquery.subquery.schema().fields().first())
                && !compatible(&et, false, f.data_type(), false)
            {
                return Err(signature_error("operator IN", &[&et, f.data_type()]));
            }
            Ok(Transformed::no(e))
        }
        Expr::Case(Case {
            ref expr,
            ref when_then_expr,
            ref else_expr,
        }) => {
            match expr {
                Some(operand) => {
                    if let Some(ot) = ty(operand) {
                        for (w, _) in when_then_expr {
                            if let Some(wt) = ty(w)
                                && !compatible(
                                    &ot,
                                    string_literal(operand).is_some(),
                                    &wt,
                                    string_literal(w).is_some(),
                                )
                            {
                                return Err(signature_error("CASE", &[&ot, &wt]));
                            }
                        }
                    }
                }
                None => {
                    for (w, _) in when_then_expr {
                        if let Some(wt) = ty(w)
                            && !matches!(fam(&wt), Fam::Bool | Fam::Null)
                        {
                            return Err(fail(format!(
                                "CASE WHEN condition must be BOOL, but is {}",
                                type_name(&wt)
                            )));
                        }
                    }
                }
            }
            let results: Vec<&Expr> = when_then_expr
                .iter()
                .map(|(_, t)| t.as_ref())
                .chain(else_expr.as_deref())
                .collect();
            check_supertype("CASE", &results, schema)?;
            Ok(Transformed::no(e))
        }
        Expr::ScalarFunction(ref sf) => {
            let name = sf.func.name();
            let types: Vec<Option<DataType>> = sf.args.iter().map(ty).collect();
            let want = |i: usize, ok: &dyn Fn(Fam) -> bool| -> DfResult<()> {
                match types.get(i) {
                    Some(Some(t)) if !ok(fam(t)) && fam(t) != Fam::Null => {
                        let all: Vec<&DataType> = types.iter().flatten().collect();
                        Err(signature_error(
                            &format!("function {}", name.to_ascii_uppercase()),
                            &all,
                        ))
                    }
                    _ => Ok(()),
                }
            };
            let is_str = |f: Fam| f == Fam::Str;
            let is_num = |f: Fam| f == Fam::Num;
            match name {
                "coalesce" | "nullif" => {
                    let args: Vec<&Expr> = sf.args.iter().collect();
                    check_supertype(&name.to_ascii_uppercase(), &args, schema)?;
                }
                "lower" | "upper" | "reverse" | "character_length" | "starts_with"
                | "ends_with" | "strpos" => {
                    for i in 0..sf.args.len() {
                        want(i, &is_str)?;
                    }
                }
                "lpad" | "rpad" => {
                    want(0, &is_str)?;
                    want(1, &is_num)?;
                    want(2, &is_str)?;
                }
                "abs" | "power" => {
                    for i in 0..sf.args.len() {
                        want(i, &is_num)?;
                    }
                }
                _ => {}
            }
            Ok(Transformed::no(e))
        }
        Expr::AggregateFunction(AggregateFunction {
            ref func,
            ref params,
        }) => {
            let name = func.name();
            if let Some(Some(t)) = params.args.first().map(ty) {
                let f = fam(&t);
                let ok = match name {
                    "sum" | "avg" => matches!(f, Fam::Num | Fam::Null),
                    "string_agg" => matches!(f, Fam::Str | Fam::Bytes | Fam::Null),
                    "bool_and" | "bool_or" => matches!(f, Fam::Bool | Fam::Null),
                    _ => true,
                };
                if !ok {
                    let shown = match name {
                        "bool_and" => "LOGICAL_AND".to_string(),
                        "bool_or" => "LOGICAL_OR".to_string(),
                        other => other.to_ascii_uppercase(),
                    };
                    return Err(signature_error(
                        &format!("aggregate function {shown}"),
                        &[&t],
                    ));
                }
            }
            Ok(Transformed::no(e))
        }
        other => Ok(Transformed::no(other)),
    }
}

/// All expressions must share a supertype (numbers together, DATE with DATETIME, literals with temporals).
fn check_supertype(what: &str, exprs: &[&Expr], schema: &DFSchema) -> DfResult<()> {
    let typed: Vec<(DataType, bool)> = exprs
        .iter()
        .filter_map(|e| {
            e.get_type(schema)
                .ok()
                .map(|t| (t, string_literal(e).is_some()))
        })
        .collect();
    for (i, (a, al)) in typed.iter().enumerate() {
        for (b, bl) in &typed[i + 1..] {
            if !compatible(a, *al, b, *bl) {
                return Err(signature_error(what, &[a, b]));
            }
        }
    }
    Ok(())
}

fn input_schema(node: &LogicalPlan) -> DFSchema {
    let inputs = node.inputs();
    let mut schema = match inputs.first() {
        Some(first) => first.schema().as_ref().clone(),
        None => return node.schema().as_ref().clone(),
    };
    for other in &inputs[1..] {
        schema.merge(other.schema());
    }
    schema
}

fn check_union(node: &LogicalPlan) -> DfResult<()> {
    if let LogicalPlan::Union(u) = node
        && let Some((first, rest)) = u.inputs.split_first()
    {
        for other in rest {
            for (i, (a, b)) in first
                .schema()
                .fields()
                .iter()
                .zip(other.schema().fields())
                .enumerate()
            {
                if !compatible(a.data_type(), false, b.data_type(), false) {
                    return Err(fail(format!(
                        "Column {} in UNION ALL has incompatible types: {}, {}",
                        i + 1,
                        type_name(a.data_type()),
                        type_name(b.data_type())
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Applies the GoogleSQL checks and literal coercions to every node, subqueries included.
pub(crate) fn check_plan(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        check_union(&node)?;
        let schema = input_schema(&node);
        let preserver = NamePreserver::new(&node);
        node.map_expressions(|e| {
            let saved = preserver.save(&e);
            let t = e.transform_up(|x| check_expr(x, &schema))?;
            Ok(t.update_data(|e| saved.restore(e)))
        })
    })
    .map(|t| t.data)
}
