//! Partition pruning for `totalBytesProcessed`: BigQuery reads (and bills)
//! only the partitions a filter on the partitioning column can select. After
//! planning, the filters directly above each scan of a column-partitioned
//! table are split into conjuncts; those that reference only the
//! partitioning column are evaluated on each partition's rows, and a
//! partition counts as read when any row passes. A scan without such a
//! filter reads the whole table, as in BigQuery.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::create_physical_expr;

use crate::data::{RecordBatch, SchemaRef, logical_bytes};

/// A column-partitioned table as the query sees it.
pub struct Partitioned {
    pub schema: SchemaRef,
    /// The partitioning column.
    pub column: String,
    /// Each partition's batches.
    pub partitions: Vec<Vec<RecordBatch>>,
}

/// (project, dataset, table).
pub type Key = (String, String, String);

/// Bytes read from each partitioned table that `plan` scans.
pub fn bytes_read(plan: &LogicalPlan, tables: &HashMap<Key, Partitioned>) -> HashMap<Key, u64> {
    let mut read: HashMap<Key, BTreeSet<usize>> = HashMap::new();
    collect(plan, &[], tables, &mut read);
    read.into_iter()
        .map(|(name, parts): (Key, BTreeSet<usize>)| {
            let t = &tables[&name];
            let bytes = parts
                .iter()
                .flat_map(|i| t.partitions[*i].iter())
                .map(logical_bytes)
                .sum();
            (name, bytes)
        })
        .collect()
}

/// Walks the plan; `above` holds the filter conjuncts of the Filter (and
/// aliases) directly above the current node.
fn collect(
    plan: &LogicalPlan,
    above: &[Expr],
    tables: &HashMap<Key, Partitioned>,
    read: &mut HashMap<Key, BTreeSet<usize>>,
) {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let r = &scan.table_name;
            let found = tables.keys().find(|(p, d, t)| {
                r.table() == t
                    && r.schema().is_none_or(|s| s == d)
                    && r.catalog().is_none_or(|c| c == p)
            });
            if let Some(name) = found.cloned() {
                let t = &tables[&name];
                let mut filters: Vec<Expr> = above.to_vec();
                filters.extend(scan.filters.iter().cloned());
                read.entry(name)
                    .or_default()
                    .extend(partitions_read(t, &filters));
            }
        }
        LogicalPlan::Filter(f) => {
            let mut conjuncts: Vec<Expr> = above.to_vec();
            conjuncts.extend(split_conjunction(&f.predicate).into_iter().cloned());
            collect(&f.input, &conjuncts, tables, read);
        }
        LogicalPlan::SubqueryAlias(a) => collect(&a.input, above, tables, read),
        other => {
            for input in other.inputs() {
                collect(input, &[], tables, read);
            }
        }
    }
}

/// Indexes of the partitions of `t` that `filters` can select.
fn partitions_read(t: &Partitioned, filters: &[Expr]) -> Vec<usize> {
    let usable: Vec<Expr> = filters
        .iter()
        .filter_map(|f| on_column_only(f, &t.column))
        .collect();
    let all = || (0..t.partitions.len()).collect();
    if usable.is_empty() {
        return all();
    }
    let Ok(df_schema) = DFSchema::try_from(t.schema.as_ref().clone()) else {
        return all();
    };
    let props = ExecutionProps::new();
    let planning = PhysicalPlanningContext::default();
    let mut exprs = Vec::new();
    for f in &usable {
        match create_physical_expr(f, &df_schema, &props, &planning) {
            Ok(e) => exprs.push(e),
            Err(_) => return all(),
        }
    }
    (0..t.partitions.len())
        .filter(|i| {
            t.partitions[*i].iter().any(|batch| {
                let batch =
                    match RecordBatch::try_new(Arc::clone(&t.schema), batch.columns().to_vec()) {
                        Ok(b) => b,
                        Err(_) => return true,
                    };
                passes_somewhere(&exprs, &batch)
            })
        })
        .collect()
}

/// Whether some row of `batch` satisfies every expression.
fn passes_somewhere(
    exprs: &[Arc<dyn datafusion::physical_expr::PhysicalExpr>],
    batch: &RecordBatch,
) -> bool {
    use datafusion::arrow::array::{Array, BooleanArray};
    let mut keep: Vec<bool> = vec![true; batch.num_rows()];
    for e in exprs {
        let Ok(value) = e
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
        else {
            return true;
        };
        let Some(mask) = value.as_any().downcast_ref::<BooleanArray>() else {
            return true;
        };
        for (i, k) in keep.iter_mut().enumerate() {
            *k = *k && mask.is_valid(i) && mask.value(i);
        }
    }
    keep.into_iter().any(|k| k)
}

/// `expr` with unqualified column references, if it references only `column`.
fn on_column_only(expr: &Expr, column: &str) -> Option<Expr> {
    let refs = expr.column_refs();
    if refs.is_empty() || !refs.iter().all(|c| c.name.eq_ignore_ascii_case(column)) {
        return None;
    }
    expr.clone()
        .transform_up(|e| {
            Ok(match e {
                Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                other => Transformed::no(other),
            })
        })
        .ok()
        .map(|t| t.data)
}
