//! Rewrites a parsed GoogleSQL query into the SQL DataFusion plans, construct by construct: only what is
//! listed in SQL.md passes; everything else is rejected with an `invalidQuery` error instead of being
//! handed to DataFusion, whose semantics differ in many places (integer division, NULL ordering, CONCAT
//! with NULL, ...).
//!
//! While walking the tree the rewriter resolves table paths (`project.dataset.table`, `dataset.table`,
//! `table`) to DataFusion's catalog.schema.table, collects the referenced tables and `@parameters`, and
//! names anonymous top-level columns `f0_`, `f1_`, ... as BigQuery does.

use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{BinaryOperator, ExactNumberInfo};
use datafusion::sql::sqlparser::ast::{
    CaseWhen, CastKind, CeilFloorKind, DataType as SqlType, DateTimeField, Distinct,
    DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, Join, JoinConstraint,
    JoinOperator, LimitClause, ObjectName, ObjectNamePart, OrderBy, OrderByExpr, OrderByKind,
    Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetOperator,
    SetQuantifier, Statement, TableAlias, TableFactor, TableWithJoins, TimezoneInfo, UnaryOperator,
    Value, WindowFrameBound, WindowSpec, WindowType,
};

use super::SqlError;
use super::functions::{Kind, Part};
use crate::data::BqType;

fn invalid_query(message: impl Into<String>) -> SqlError {
    SqlError {
        reason: "invalidQuery",
        message: message.into(),
    }
}

fn unsupported(what: impl std::fmt::Display) -> SqlError {
    invalid_query(format!(
        "{what} is not supported by the bq-emulator (see integration/bq-emulator/SQL.md)"
    ))
}

fn lit_str(s: impl Into<String>) -> Expr {
    Expr::Value(Value::SingleQuotedString(s.into()).with_empty_span())
}

fn lit_int(v: i64) -> Expr {
    Expr::Value(Value::Number(v.to_string(), false).with_empty_span())
}

fn func(name: &str, args: Vec<Expr>) -> Function {
    Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    }
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(func(name, args))
}

fn call_kind(kind: Kind, args: Vec<Expr>) -> Expr {
    call(&kind.internal_name(), args)
}

/// Maps a GoogleSQL type name in CAST / typed literals to the stored type.
fn cast_target(t: &SqlType) -> Result<BqType, SqlError> {
    let plain = |info: &ExactNumberInfo| matches!(info, ExactNumberInfo::None);
    Ok(match t {
        SqlType::Int64
        | SqlType::Int(None)
        | SqlType::Integer(None)
        | SqlType::BigInt(None)
        | SqlType::SmallInt(None)
        | SqlType::TinyInt(None) => BqType::Int64,
        SqlType::Float64 => BqType::Float64,
        SqlType::Numeric(i) | SqlType::Decimal(i) if plain(i) => BqType::Numeric,
        SqlType::BigNumeric(i) | SqlType::BigDecimal(i) if plain(i) => BqType::BigNumeric,
        SqlType::Bool | SqlType::Boolean => BqType::Bool,
        SqlType::String(None) => BqType::String,
        SqlType::Bytes(None) => BqType::Bytes,
        SqlType::Date => BqType::Date,
        SqlType::Datetime(None) => BqType::Datetime,
        SqlType::Timestamp(None, TimezoneInfo::None) => BqType::Timestamp,
        SqlType::Time(None, TimezoneInfo::None) => BqType::Time,
        SqlType::Custom(name, mods) if mods.is_empty() => {
            match name.to_string().to_ascii_uppercase().as_str() {
                "BYTEINT" => BqType::Int64,
                _ => return Err(invalid_query(format!("Type not found: {name}"))),
            }
        }
        other => return Err(unsupported(format!("Type {other}"))),
    })
}

fn datetime_field_part(f: &DateTimeField) -> Option<String> {
    Some(
        match f {
            DateTimeField::Year | DateTimeField::Years => "YEAR",
            DateTimeField::Quarter => "QUARTER",
            DateTimeField::Month | DateTimeField::Months => "MONTH",
            DateTimeField::Week(None) | DateTimeField::Weeks => "WEEK",
            DateTimeField::Week(Some(day)) => {
                return Some(format!("WEEK({})", day.value.to_ascii_uppercase()));
            }
            DateTimeField::IsoWeek => "ISOWEEK",
            DateTimeField::Isoyear => "ISOYEAR",
            DateTimeField::Day | DateTimeField::Days => "DAY",
            DateTimeField::Date => "DATE",
            DateTimeField::DayOfWeek => "DAYOFWEEK",
            DateTimeField::DayOfYear => "DAYOFYEAR",
            DateTimeField::Hour | DateTimeField::Hours => "HOUR",
            DateTimeField::Minute | DateTimeField::Minutes => "MINUTE",
            DateTimeField::Second | DateTimeField::Seconds => "SECOND",
            DateTimeField::Millisecond | DateTimeField::Milliseconds => "MILLISECOND",
            DateTimeField::Microsecond | DateTimeField::Microseconds => "MICROSECOND",
            DateTimeField::Custom(id) => return Some(id.value.to_ascii_uppercase()),
            _ => return None,
        }
        .to_string(),
    )
}

/// Reads a date-part argument written as a bare keyword (`MONTH`, `WEEK(MONDAY)`).
fn part_keyword(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(id) if id.quote_style.is_none() => Some(id.value.to_ascii_uppercase()),
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_uppercase();
            if name != "WEEK" {
                return None;
            }
            match &f.args {
                FunctionArguments::List(l) if l.args.len() == 1 => match &l.args[0] {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(d))) => {
                        Some(format!("WEEK({})", d.value.to_ascii_uppercase()))
                    }
                    _ => None,
                },
                _ => None,
            }
        }
        _ => None,
    }
}

/// The part of a function argument that names a date part, validated for the function.
fn part_arg(kind: Kind, fname: &str, e: &Expr) -> Result<Expr, SqlError> {
    let text = part_keyword(e).ok_or_else(|| {
        invalid_query(format!(
            "A valid date part name is required as the date part argument of {fname}, found {e}"
        ))
    })?;
    let part = Part::parse(&text).ok_or_else(|| {
        invalid_query(format!(
            "A valid date part name is required but found {text}"
        ))
    })?;
    if !kind.accepts_part(part) {
        return Err(invalid_query(format!(
            "{text} is not a valid date part for {fname}"
        )));
    }
    Ok(lit_str(text))
}

/// Result of rewriting a statement.
pub(crate) struct Rewritten {
    /// The query DataFusion plans.
    pub(crate) statement: Statement,
    /// Referenced tables (project, dataset, table), first use first.
    pub(crate) tables: Vec<(String, String, String)>,
    /// Parameter names as written (without `@`), one per distinct lower-cased name.
    pub(crate) params: Vec<String>,
}

pub(crate) struct Rewriter<'a> {
    default_project: &'a str,
    default_dataset: Option<(&'a str, &'a str)>,
    tables: Vec<(String, String, String)>,
    params: Vec<String>,
    ctes: Vec<Vec<String>>,
}

impl<'a> Rewriter<'a> {
    pub(crate) fn new(
        default_project: &'a str,
        default_dataset: Option<(&'a str, &'a str)>,
    ) -> Self {
        Rewriter {
            default_project,
            default_dataset,
            tables: vec![],
            params: vec![],
            ctes: vec![],
        }
    }

    pub(crate) fn rewrite(mut self, stmt: Statement) -> Result<Rewritten, SqlError> {
        let query = match stmt {
            Statement::Query(q) => q,
            other => {
                let kind = match &other {
                    Statement::Insert(_) => "INSERT",
                    Statement::Update { .. } => "UPDATE",
                    Statement::Delete(_) => "DELETE",
                    Statement::Merge { .. } => "MERGE",
                    Statement::CreateTable(_) => "CREATE TABLE",
                    Statement::CreateView { .. } => "CREATE VIEW",
                    Statement::Drop { .. } => "DROP",
                    Statement::Truncate { .. } => "TRUNCATE",
                    _ => "This statement type",
                };
                return Err(unsupported(format!(
                    "{kind} (only SELECT queries are supported; write results with a destination table and \
                     writeDisposition)"
                )));
            }
        };
        let query = self.query(*query)?;
        Ok(Rewritten {
            statement: Statement::Query(Box::new(query)),
            tables: self.tables,
            params: self.params,
        })
    }

    fn query(&mut self, mut q: Query) -> Result<Query, SqlError> {
        if q.fetch.is_some() || !q.locks.is_empty() || q.for_clause.is_some() {
            return Err(unsupported("FETCH/FOR/locking clauses"));
        }
        if q.settings.is_some() || q.format_clause.is_some() {
            return Err(unsupported("SETTINGS/FORMAT clauses"));
        }
        if !q.pipe_operators.is_empty() {
            return Err(unsupported("Pipe syntax (|>)"));
        }
        let mut pushed = false;
        if let Some(with) = q.with.as_mut() {
            if with.recursive {
                return Err(unsupported("WITH RECURSIVE"));
            }
            self.ctes.push(vec![]);
            pushed = true;
            for cte in with.cte_tables.iter_mut() {
                if !cte.alias.columns.is_empty() || cte.materialized.is_some() || cte.from.is_some()
                {
                    return Err(invalid_query(format!(
                        "Syntax error: WITH clause column lists are not allowed (WITH {})",
                        cte.alias.name
                    )));
                }
                let inner = std::mem::replace(&mut *cte.query, empty_query());
                *cte.query = self.query(inner)?;
                if let Some(scope) = self.ctes.last_mut() {
                    scope.push(cte.alias.name.value.clone());
                }
            }
        }
        let body = std::mem::replace(
            &mut *q.body,
            SetExpr::Values(datafusion::sql::sqlparser::ast::Values {
                explicit_row: false,
                value_keyword: false,
                rows: vec![],
            }),
        );
        *q.body = self.set_expr(body)?;
        if let Some(order_by) = q.order_by.take() {
            q.order_by = Some(self.order_by(order_by)?);
        }
        if let Some(limit) = q.limit_clause.take() {
            q.limit_clause = Some(match limit {
                LimitClause::LimitOffset {
                    limit,
                    offset,
                    limit_by,
                } => {
                    if !limit_by.is_empty() {
                        return Err(unsupported("LIMIT BY"));
                    }
                    let limit = limit.map(|e| self.expr(e)).transpose()?;
                    let offset = match offset {
                        Some(mut o) => {
                            o.value = self.expr(o.value)?;
                            Some(o)
                        }
                        None => None,
                    };
                    LimitClause::LimitOffset {
                        limit,
                        offset,
                        limit_by,
                    }
                }
                LimitClause::OffsetCommaLimit { .. } => {
                    return Err(invalid_query(
                        "Syntax error: LIMIT offset, count is not GoogleSQL; use LIMIT n OFFSET m",
                    ));
                }
            });
        }
        if pushed {
            self.ctes.pop();
        }
        Ok(q)
    }

    fn order_by(&mut self, mut o: OrderBy) -> Result<OrderBy, SqlError> {
        if o.interpolate.is_some() {
            return Err(unsupported("INTERPOLATE"));
        }
        o.kind = match o.kind {
            OrderByKind::Expressions(exprs) => OrderByKind::Expressions(self.order_exprs(exprs)?),
            OrderByKind::All(_) => return Err(unsupported("ORDER BY ALL")),
        };
        Ok(o)
    }

    /// GoogleSQL sorts NULLs first ascending and last descending: make that explicit for DataFusion.
    fn order_exprs(&mut self, exprs: Vec<OrderByExpr>) -> Result<Vec<OrderByExpr>, SqlError> {
        exprs
            .into_iter()
            .map(|mut e| {
                if e.with_fill.is_some() {
                    return Err(unsupported("WITH FILL"));
                }
                e.expr = self.expr(e.expr)?;
                let asc = e.options.asc.unwrap_or(true);
                e.options.asc = Some(asc);
                e.options.nulls_first = Some(e.options.nulls_first.unwrap_or(asc));
                Ok(e)
            })
            .collect()
    }

    fn set_expr(&mut self, s: SetExpr) -> Result<SetExpr, SqlError> {
        Ok(match s {
            SetExpr::Select(sel) => SetExpr::Select(Box::new(self.select(*sel)?)),
            SetExpr::Query(q) => SetExpr::Query(Box::new(self.query(*q)?)),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                match (op, set_quantifier) {
                    (SetOperator::Union, SetQuantifier::All | SetQuantifier::Distinct) => {}
                    (SetOperator::Intersect | SetOperator::Except, SetQuantifier::Distinct) => {}
                    (SetOperator::Intersect | SetOperator::Except, SetQuantifier::All) => {
                        return Err(unsupported(format!("{op} ALL")));
                    }
                    (_, SetQuantifier::None) => {
                        return Err(invalid_query(format!(
                            "Syntax error: Expected keyword ALL or keyword DISTINCT after {op}"
                        )));
                    }
                    _ => return Err(unsupported(format!("{op} {set_quantifier}"))),
                }
                let left = self.set_expr(*left)?;
                let right = self.set_expr(*right)?;
                SetExpr::SetOperation {
                    left: Box::new(left),
                    op,
                    set_quantifier,
                    right: Box::new(right),
                }
            }
            SetExpr::Values(_) => return Err(unsupported("VALUES lists")),
            _ => return Err(unsupported("This query form")),
        })
    }

    fn select(&mut self, mut s: Select) -> Result<Select, SqlError> {
        if !s.optimizer_hints.is_empty()
            || s.top.is_some()
            || s.into.is_some()
            || s.exclude.is_some()
        {
            return Err(unsupported("SELECT hints/TOP/INTO/EXCLUDE"));
        }
        if s.select_modifiers.as_ref().is_some_and(|m| m.is_any_set()) {
            return Err(unsupported("SELECT modifiers"));
        }
        if matches!(s.distinct, Some(Distinct::On(_))) {
            return Err(unsupported("SELECT DISTINCT ON"));
        }
        if !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.connect_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
        {
            return Err(unsupported("This SELECT clause"));
        }
        if s.value_table_mode.is_some() {
            return Err(unsupported("SELECT AS STRUCT/VALUE"));
        }
        if s.flavor != datafusion::sql::sqlparser::ast::SelectFlavor::Standard {
            return Err(unsupported("FROM-first SELECT"));
        }
        let from = std::mem::take(&mut s.from);
        s.from = from
            .into_iter()
            .map(|t| self.table_with_joins(t))
            .collect::<Result<_, _>>()?;
        let mut anonymous = 0usize;
        let projection = std::mem::take(&mut s.projection);
        for item in projection {
            let item = match item {
                SelectItem::UnnamedExpr(e) => {
                    let named = matches!(&e, Expr::Identifier(id) if !(id.quote_style.is_none() && id.value.starts_with('@')))
                        || matches!(&e, Expr::CompoundIdentifier(_));
                    let e = self.expr(e)?;
                    if named {
                        SelectItem::UnnamedExpr(e)
                    } else {
                        // BigQuery names anonymous columns f0_, f1_, ...; DataFusion needs unique names too.
                        let alias = Ident::new(format!("f{anonymous}_"));
                        anonymous += 1;
                        SelectItem::ExprWithAlias { expr: e, alias }
                    }
                }
                SelectItem::ExprWithAlias { expr, alias } => SelectItem::ExprWithAlias {
                    expr: self.expr(expr)?,
                    alias,
                },
                SelectItem::Wildcard(mut opts) => {
                    self.wildcard_options(&mut opts)?;
                    SelectItem::Wildcard(opts)
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    mut opts,
                ) => {
                    self.wildcard_options(&mut opts)?;
                    SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(name),
                        opts,
                    )
                }
                _ => return Err(unsupported("This SELECT list item")),
            };
            s.projection.push(item);
        }
        if let Some(e) = s.selection.take() {
            s.selection = Some(self.expr(e)?);
        }
        s.group_by =
            match std::mem::replace(&mut s.group_by, GroupByExpr::Expressions(vec![], vec![])) {
                GroupByExpr::Expressions(exprs, modifiers) => {
                    if !modifiers.is_empty() {
                        return Err(unsupported("GROUP BY ROLLUP/CUBE/GROUPING SETS"));
                    }
                    GroupByExpr::Expressions(
                        exprs
                            .into_iter()
                            .map(|e| self.expr(e))
                            .collect::<Result<_, _>>()?,
                        modifiers,
                    )
                }
                GroupByExpr::All(modifiers) => {
                    if !modifiers.is_empty() {
                        return Err(unsupported("GROUP BY ALL with modifiers"));
                    }
                    GroupByExpr::All(modifiers)
                }
            };
        if let Some(e) = s.having.take() {
            s.having = Some(self.expr(e)?);
        }
        if let Some(e) = s.qualify.take() {
            s.qualify = Some(self.expr(e)?);
        }
        for w in s.named_window.iter_mut() {
            if let datafusion::sql::sqlparser::ast::NamedWindowExpr::WindowSpec(spec) = &mut w.1 {
                let taken = std::mem::replace(spec, empty_window());
                *spec = self.window_spec(taken)?;
            }
        }
        Ok(s)
    }

    fn wildcard_options(
        &mut self,
        opts: &mut datafusion::sql::sqlparser::ast::WildcardAdditionalOptions,
    ) -> Result<(), SqlError> {
        if opts.opt_ilike.is_some()
            || opts.opt_exclude.is_some()
            || opts.opt_rename.is_some()
            || opts.opt_alias.is_some()
        {
            return Err(unsupported("This wildcard modifier"));
        }
        if let Some(replace) = opts.opt_replace.as_mut() {
            for item in replace.items.iter_mut() {
                let e =
                    std::mem::replace(&mut item.expr, Expr::Value(Value::Null.with_empty_span()));
                item.expr = self.expr(e)?;
            }
        }
        Ok(())
    }

    fn table_with_joins(&mut self, t: TableWithJoins) -> Result<TableWithJoins, SqlError> {
        let relation = self.table_factor(t.relation)?;
        let mut joins = Vec::with_capacity(t.joins.len());
        for j in t.joins {
            if j.global {
                return Err(unsupported("GLOBAL JOIN"));
            }
            let relation = self.table_factor(j.relation)?;
            let join_operator = match j.join_operator {
                JoinOperator::Join(c) => JoinOperator::Join(self.join_constraint(c)?),
                JoinOperator::Inner(c) => JoinOperator::Inner(self.join_constraint(c)?),
                JoinOperator::Left(c) => JoinOperator::Left(self.join_constraint(c)?),
                JoinOperator::LeftOuter(c) => JoinOperator::LeftOuter(self.join_constraint(c)?),
                JoinOperator::Right(c) => JoinOperator::Right(self.join_constraint(c)?),
                JoinOperator::RightOuter(c) => JoinOperator::RightOuter(self.join_constraint(c)?),
                JoinOperator::FullOuter(c) => JoinOperator::FullOuter(self.join_constraint(c)?),
                JoinOperator::CrossJoin(JoinConstraint::None) => {
                    JoinOperator::CrossJoin(JoinConstraint::None)
                }
                other => return Err(unsupported(format!("Join type {other:?}"))),
            };
            joins.push(Join {
                relation,
                global: false,
                join_operator,
            });
        }
        Ok(TableWithJoins { relation, joins })
    }

    fn join_constraint(&mut self, c: JoinConstraint) -> Result<JoinConstraint, SqlError> {
        Ok(match c {
            JoinConstraint::On(e) => JoinConstraint::On(self.expr(e)?),
            JoinConstraint::Using(cols) => JoinConstraint::Using(cols),
            JoinConstraint::None => JoinConstraint::None,
            JoinConstraint::Natural => return Err(unsupported("NATURAL JOIN")),
        })
    }

    fn table_factor(&mut self, t: TableFactor) -> Result<TableFactor, SqlError> {
        Ok(match t {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_hints,
            } => {
                if args.is_some() {
                    return Err(unsupported("Table-valued functions"));
                }
                if version.is_some() {
                    return Err(unsupported("FOR SYSTEM_TIME AS OF"));
                }
                if sample.is_some() {
                    return Err(unsupported("TABLESAMPLE"));
                }
                if !with_hints.is_empty()
                    || with_ordinality
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || !index_hints.is_empty()
                {
                    return Err(unsupported("This table reference form"));
                }
                if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                    return Err(invalid_query(
                        "Syntax error: table alias column lists are not allowed",
                    ));
                }
                let (name, implicit_alias) = self.resolve_table(name)?;
                let alias = alias.or_else(|| {
                    implicit_alias.map(|a| TableAlias {
                        explicit: true,
                        name: Ident::new(a),
                        columns: vec![],
                        at: None,
                    })
                });
                TableFactor::Table {
                    name,
                    alias,
                    args: None,
                    with_hints,
                    version: None,
                    with_ordinality,
                    partitions,
                    json_path,
                    sample: None,
                    index_hints,
                }
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                sample,
            } => {
                if lateral || sample.is_some() {
                    return Err(unsupported("LATERAL/TABLESAMPLE subqueries"));
                }
                if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                    return Err(invalid_query(
                        "Syntax error: subquery alias column lists are not allowed",
                    ));
                }
                TableFactor::Derived {
                    lateral,
                    subquery: Box::new(self.query(*subquery)?),
                    alias,
                    sample,
                }
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => TableFactor::NestedJoin {
                table_with_joins: Box::new(self.table_with_joins(*table_with_joins)?),
                alias,
            },
            TableFactor::UNNEST { .. } => return Err(unsupported("UNNEST (ARRAY values)")),
            other => return Err(unsupported(format!("Table expression {other}"))),
        })
    }

    /// Resolves a table path; returns the DataFusion name and the implicit alias (last path element), or
    /// leaves a CTE reference alone.
    fn resolve_table(
        &mut self,
        name: ObjectName,
    ) -> Result<(ObjectName, Option<String>), SqlError> {
        let mut parts: Vec<String> = Vec::new();
        for p in &name.0 {
            match p {
                ObjectNamePart::Identifier(id) => {
                    parts.extend(id.value.split('.').map(str::to_string))
                }
                ObjectNamePart::Function(_) => return Err(unsupported("Table-valued functions")),
            }
        }
        let shown = parts.join(".");
        if parts.iter().any(|p| p.is_empty()) {
            return Err(invalid_query(format!("Invalid table name: {shown}")));
        }
        if parts.len() == 1 {
            // CTE names resolve case-insensitively, innermost scope first.
            let cte = self
                .ctes
                .iter()
                .rev()
                .flatten()
                .find(|c| c.eq_ignore_ascii_case(&parts[0]));
            if let Some(cte) = cte {
                return Ok((
                    ObjectName::from(vec![Ident::with_quote('"', cte.as_str())]),
                    None,
                ));
            }
        }
        let (project, dataset, table) = match parts.len() {
            1 => match self.default_dataset {
                Some((p, d)) => (p.to_string(), d.to_string(), parts[0].clone()),
                None => {
                    return Err(invalid_query(format!(
                        "Table name \"{shown}\" missing dataset while no default dataset is set in the request."
                    )));
                }
            },
            2 => {
                let project = self
                    .default_dataset
                    .map_or(self.default_project, |(p, _)| p);
                (project.to_string(), parts[0].clone(), parts[1].clone())
            }
            3 => (parts[0].clone(), parts[1].clone(), parts[2].clone()),
            _ => return Err(invalid_query(format!("Invalid table name: {shown}"))),
        };
        if dataset.eq_ignore_ascii_case("INFORMATION_SCHEMA")
            || table.eq_ignore_ascii_case("INFORMATION_SCHEMA")
        {
            return Err(unsupported("INFORMATION_SCHEMA"));
        }
        if table.contains('*') {
            return Err(unsupported("Wildcard tables"));
        }
        if table.contains('$') || table.contains('@') {
            return Err(invalid_query(format!(
                "Invalid table name: {shown} (partition decorators are not allowed in queries; hint: filter on the \
                 partitioning column instead)"
            )));
        }
        let key = (project.clone(), dataset.clone(), table.clone());
        if !self.tables.contains(&key) {
            self.tables.push(key);
        }
        let quoted = |s: &str| Ident::with_quote('"', s);
        Ok((
            ObjectName::from(vec![quoted(&project), quoted(&dataset), quoted(&table)]),
            Some(table),
        ))
    }

    fn window_spec(&mut self, mut w: WindowSpec) -> Result<WindowSpec, SqlError> {
        w.partition_by = std::mem::take(&mut w.partition_by)
            .into_iter()
            .map(|e| self.expr(e))
            .collect::<Result<_, _>>()?;
        w.order_by = self.order_exprs(std::mem::take(&mut w.order_by))?;
        if let Some(frame) = w.window_frame.as_mut() {
            for bound in std::iter::once(&mut frame.start_bound).chain(frame.end_bound.as_mut()) {
                if let WindowFrameBound::Preceding(Some(e)) | WindowFrameBound::Following(Some(e)) =
                    bound
                {
                    let inner =
                        std::mem::replace(&mut **e, Expr::Value(Value::Null.with_empty_span()));
                    **e = self.expr(inner)?;
                }
            }
        }
        Ok(w)
    }

    fn boxed(&mut self, e: Box<Expr>) -> Result<Box<Expr>, SqlError> {
        Ok(Box::new(self.expr(*e)?))
    }

    fn exprs(&mut self, v: Vec<Expr>) -> Result<Vec<Expr>, SqlError> {
        v.into_iter().map(|e| self.expr(e)).collect()
    }

    fn param(&mut self, name: &str) -> Result<Expr, SqlError> {
        if name.starts_with('@') {
            return Err(unsupported(format!("System variable @{name}")));
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid_query(format!(
                "Syntax error: invalid query parameter name @{name}"
            )));
        }
        let lower = name.to_ascii_lowercase();
        if !self.params.iter().any(|p| p.to_ascii_lowercase() == lower) {
            self.params.push(name.to_string());
        }
        Ok(Expr::Value(
            Value::Placeholder(format!("${lower}")).with_empty_span(),
        ))
    }

    fn value(&mut self, v: Value) -> Result<Expr, SqlError> {
        let plain = |v: Value| Expr::Value(v.with_empty_span());
        Ok(match v {
            Value::Number(n, long) => {
                let is_int = !n.contains(['.', 'e', 'E']);
                if is_int && n.parse::<i64>().is_err() {
                    return Err(invalid_query(format!("Invalid integer literal: {n}")));
                }
                plain(Value::Number(n, long))
            }
            Value::HexStringLiteral(h) => {
                let v = i64::from_str_radix(&h, 16).map_err(|_| {
                    invalid_query(format!("Invalid hexadecimal integer literal: 0x{h}"))
                })?;
                lit_int(v)
            }
            Value::SingleQuotedString(s)
            | Value::DoubleQuotedString(s)
            | Value::TripleSingleQuotedString(s)
            | Value::TripleDoubleQuotedString(s)
            | Value::SingleQuotedRawStringLiteral(s)
            | Value::DoubleQuotedRawStringLiteral(s)
            | Value::TripleSingleQuotedRawStringLiteral(s)
            | Value::TripleDoubleQuotedRawStringLiteral(s) => lit_str(s),
            Value::SingleQuotedByteStringLiteral(s)
            | Value::DoubleQuotedByteStringLiteral(s)
            | Value::TripleSingleQuotedByteStringLiteral(s)
            | Value::TripleDoubleQuotedByteStringLiteral(s) => {
                let hex: String = s.as_bytes().iter().map(|b| format!("{b:02X}")).collect();
                plain(Value::HexStringLiteral(hex))
            }
            Value::Boolean(b) => plain(Value::Boolean(b)),
            Value::Null => plain(Value::Null),
            Value::Placeholder(p) => {
                return Err(unsupported(format!(
                    "Positional query parameter {p} (use named parameters: @name with parameterMode NAMED)"
                )));
            }
            other => return Err(unsupported(format!("Literal {other}"))),
        })
    }

    fn expr(&mut self, e: Expr) -> Result<Expr, SqlError> {
        Ok(match e {
            Expr::Identifier(id) => {
                if id.quote_style.is_none() && id.value.starts_with('@') {
                    return self.param(&id.value[1..]);
                }
                Expr::Identifier(id)
            }
            Expr::CompoundIdentifier(ids) => {
                if ids
                    .iter()
                    .any(|i| i.quote_style.is_none() && i.value.starts_with('@'))
                {
                    return Err(unsupported("Field access on a query parameter"));
                }
                Expr::CompoundIdentifier(ids)
            }
            Expr::IsNull(b) => Expr::IsNull(self.boxed(b)?),
            Expr::IsNotNull(b) => Expr::IsNotNull(self.boxed(b)?),
            Expr::IsTrue(b) => Expr::IsTrue(self.boxed(b)?),
            Expr::IsNotTrue(b) => Expr::IsNotTrue(self.boxed(b)?),
            Expr::IsFalse(b) => Expr::IsFalse(self.boxed(b)?),
            Expr::IsNotFalse(b) => Expr::IsNotFalse(self.boxed(b)?),
            Expr::IsDistinctFrom(a, b) => Expr::IsDistinctFrom(self.boxed(a)?, self.boxed(b)?),
            Expr::IsNotDistinctFrom(a, b) => {
                Expr::IsNotDistinctFrom(self.boxed(a)?, self.boxed(b)?)
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => Expr::InList {
                expr: self.boxed(expr)?,
                list: self.exprs(list)?,
                negated,
            },
            Expr::InSubquery {
                expr,
                subquery,
                negated,
            } => Expr::InSubquery {
                expr: self.boxed(expr)?,
                subquery: Box::new(self.query(*subquery)?),
                negated,
            },
            Expr::InUnnest { .. } => return Err(unsupported("IN UNNEST (ARRAY values)")),
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => Expr::Between {
                expr: self.boxed(expr)?,
                negated,
                low: self.boxed(low)?,
                high: self.boxed(high)?,
            },
            Expr::BinaryOp { left, op, right } => {
                let (l, r) = (self.expr(*left)?, self.expr(*right)?);
                let kind = match op {
                    BinaryOperator::Plus => Some(Kind::Add),
                    BinaryOperator::Minus => Some(Kind::Sub),
                    BinaryOperator::Multiply => Some(Kind::Mul),
                    BinaryOperator::Divide => Some(Kind::Div),
                    BinaryOperator::StringConcat => Some(Kind::Concat),
                    BinaryOperator::Gt
                    | BinaryOperator::Lt
                    | BinaryOperator::GtEq
                    | BinaryOperator::LtEq
                    | BinaryOperator::Eq
                    | BinaryOperator::NotEq
                    | BinaryOperator::And
                    | BinaryOperator::Or => None,
                    BinaryOperator::Modulo => {
                        return Err(invalid_query(
                            "Syntax error: Unexpected \"%\" (hint: use MOD(x, y))",
                        ));
                    }
                    other => return Err(unsupported(format!("Operator {other}"))),
                };
                match kind {
                    Some(k) => call_kind(k, vec![l, r]),
                    None => Expr::BinaryOp {
                        left: Box::new(l),
                        op,
                        right: Box::new(r),
                    },
                }
            }
            Expr::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if any || escape_char.is_some() {
                    return Err(unsupported("LIKE ANY / LIKE ... ESCAPE"));
                }
                Expr::Like {
                    negated,
                    any,
                    expr: self.boxed(expr)?,
                    pattern: self.boxed(pattern)?,
                    escape_char,
                }
            }
            Expr::UnaryOp { op, expr } => match op {
                UnaryOperator::Not => Expr::UnaryOp {
                    op,
                    expr: self.boxed(expr)?,
                },
                UnaryOperator::Plus => self.expr(*expr)?,
                UnaryOperator::Minus => match *expr {
                    // Keep negative literals literal so INT64 minimum parses.
                    Expr::Value(v) if matches!(v.value, Value::Number(..)) => {
                        let Value::Number(n, long) = v.value else {
                            unreachable!()
                        };
                        self.value(Value::Number(format!("-{n}"), long))?
                    }
                    inner => call_kind(Kind::Sub, vec![lit_int(0), self.expr(inner)?]),
                },
                other => return Err(unsupported(format!("Operator {other}"))),
            },
            Expr::Cast {
                kind,
                expr,
                data_type,
                array,
                format,
            } => {
                if array || format.is_some() {
                    return Err(unsupported("CAST ... FORMAT"));
                }
                let target = cast_target(&data_type)?;
                let k = match kind {
                    CastKind::Cast => Kind::Cast(target),
                    CastKind::SafeCast => Kind::SafeCast(target),
                    CastKind::TryCast | CastKind::DoubleColon => {
                        return Err(invalid_query(
                            "Syntax error: use CAST(x AS type) or SAFE_CAST(x AS type)",
                        ));
                    }
                };
                call_kind(k, vec![self.expr(*expr)?])
            }
            Expr::TypedString(ts) => {
                let text = match ts.value.value {
                    Value::SingleQuotedString(s)
                    | Value::DoubleQuotedString(s)
                    | Value::TripleSingleQuotedString(s)
                    | Value::TripleDoubleQuotedString(s) => s,
                    other => {
                        return Err(invalid_query(format!(
                            "Syntax error: invalid typed literal {other}"
                        )));
                    }
                };
                let target = cast_target(&ts.data_type)?;
                if !matches!(
                    target,
                    BqType::Date
                        | BqType::Datetime
                        | BqType::Timestamp
                        | BqType::Time
                        | BqType::Numeric
                        | BqType::BigNumeric
                ) {
                    return Err(invalid_query(format!(
                        "Syntax error: unexpected typed literal {}",
                        ts.data_type
                    )));
                }
                call_kind(Kind::Cast(target), vec![lit_str(text)])
            }
            Expr::Extract { field, expr, .. } => {
                let part = datetime_field_part(&field).ok_or_else(|| {
                    invalid_query(format!(
                        "A valid date part name is required but found {field}"
                    ))
                })?;
                let (value, zone) = match *expr {
                    Expr::AtTimeZone {
                        timestamp,
                        time_zone,
                    } => (self.expr(*timestamp)?, Some(self.expr(*time_zone)?)),
                    other => (self.expr(other)?, None),
                };
                match part.as_str() {
                    "DATE" => call_kind(Kind::Date, std::iter::once(value).chain(zone).collect()),
                    _ => {
                        Part::parse(&part).ok_or_else(|| {
                            invalid_query(format!(
                                "A valid date part name is required but found {part}"
                            ))
                        })?;
                        let mut args = vec![lit_str(part), value];
                        args.extend(zone);
                        call_kind(Kind::Extract, args)
                    }
                }
            }
            Expr::Ceil {
                expr,
                field: CeilFloorKind::DateTimeField(DateTimeField::NoDateTime),
            } => call_kind(Kind::Ceil, vec![self.expr(*expr)?]),
            Expr::Floor {
                expr,
                field: CeilFloorKind::DateTimeField(DateTimeField::NoDateTime),
            } => call_kind(Kind::Floor, vec![self.expr(*expr)?]),
            Expr::Ceil { .. } | Expr::Floor { .. } => {
                return Err(unsupported("CEIL/FLOOR with a scale or date part"));
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.expr(*expr)?];
                match substring_from {
                    Some(f) => args.push(self.expr(*f)?),
                    None => args.push(lit_int(1)),
                }
                if let Some(f) = substring_for {
                    args.push(self.expr(*f)?);
                }
                call_kind(Kind::Substr, args)
            }
            Expr::Trim {
                trim_where,
                trim_what,
                expr,
                trim_characters,
            } => {
                if trim_where.is_some() || trim_what.is_some() {
                    return Err(invalid_query("Syntax error: use TRIM(value[, characters])"));
                }
                let mut args = vec![self.expr(*expr)?];
                if let Some(chars) = trim_characters {
                    if chars.len() != 1 {
                        return Err(invalid_query("No matching signature for function TRIM"));
                    }
                    args.extend(self.exprs(chars)?);
                }
                call_kind(Kind::Trim, args)
            }
            Expr::Nested(b) => Expr::Nested(self.boxed(b)?),
            Expr::Value(v) => self.value(v.value)?,
            Expr::Function(f) => self.function(f)?,
            Expr::Case {
                case_token,
                end_token,
                operand,
                conditions,
                else_result,
            } => Expr::Case {
                case_token,
                end_token,
                operand: operand.map(|o| self.boxed(o)).transpose()?,
                conditions: conditions
                    .into_iter()
                    .map(|c| {
                        Ok(CaseWhen {
                            condition: self.expr(c.condition)?,
                            result: self.expr(c.result)?,
                        })
                    })
                    .collect::<Result<_, SqlError>>()?,
                else_result: else_result.map(|e| self.boxed(e)).transpose()?,
            },
            Expr::Exists { subquery, negated } => Expr::Exists {
                subquery: Box::new(self.query(*subquery)?),
                negated,
            },
            Expr::Subquery(q) => Expr::Subquery(Box::new(self.query(*q)?)),
            Expr::Interval(_) => {
                return Err(unsupported(
                    "INTERVAL outside DATE_ADD/DATE_SUB/DATETIME_ADD/DATETIME_SUB/TIMESTAMP_ADD/TIMESTAMP_SUB",
                ));
            }
            Expr::Array(_) | Expr::Struct { .. } | Expr::Tuple(_) | Expr::Named { .. } => {
                return Err(unsupported("ARRAY/STRUCT values"));
            }
            Expr::CompoundFieldAccess { .. } | Expr::JsonAccess { .. } => {
                return Err(unsupported("Field and element access (STRUCT/ARRAY/JSON)"));
            }
            Expr::AtTimeZone { .. } => return Err(unsupported("AT TIME ZONE outside EXTRACT")),
            Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_) => {
                return Err(unsupported("GROUP BY ROLLUP/CUBE/GROUPING SETS"));
            }
            Expr::ILike { .. } | Expr::SimilarTo { .. } | Expr::RLike { .. } => {
                return Err(unsupported("This pattern operator"));
            }
            other => return Err(unsupported(format!("Expression {other}"))),
        })
    }

    fn function(&mut self, f: Function) -> Result<Expr, SqlError> {
        let shown = f.name.to_string();
        if f.name.0.len() != 1 {
            return Err(invalid_query(format!("Function not found: {shown}")));
        }
        let name = shown.to_ascii_uppercase();
        if f.uses_odbc_syntax
            || !matches!(f.parameters, FunctionArguments::None)
            || !f.within_group.is_empty()
        {
            return Err(unsupported(format!("This call syntax of {shown}")));
        }
        if f.filter.is_some() {
            return Err(invalid_query(format!(
                "Syntax error: FILTER is not supported in GoogleSQL ({shown})"
            )));
        }
        let (distinct, raw_args, clauses) = match f.args {
            FunctionArguments::None => (false, vec![], vec![]),
            FunctionArguments::List(l) => (
                matches!(l.duplicate_treatment, Some(DuplicateTreatment::Distinct)),
                l.args,
                l.clauses,
            ),
            FunctionArguments::Subquery(_) => {
                return Err(unsupported(format!("{shown}(subquery)")));
            }
        };
        let mut star = false;
        let mut args = Vec::with_capacity(raw_args.len());
        for a in raw_args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(e),
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if name == "COUNT" => star = true,
                _ => {
                    return Err(invalid_query(format!(
                        "No matching signature for function {name}: named or * arguments"
                    )));
                }
            }
        }
        let n = args.len();
        let arity = |lo: usize, hi: usize| -> Result<(), SqlError> {
            if n < lo || n > hi {
                let expected = if lo == hi {
                    format!("{lo}")
                } else if hi == usize::MAX {
                    format!("at least {lo}")
                } else {
                    format!("{lo} to {hi}")
                };
                Err(invalid_query(format!(
                    "No matching signature for function {name}: expected {expected} argument(s), found {n}"
                )))
            } else {
                Ok(())
            }
        };
        const AGGREGATES: &[&str] = &[
            "COUNT",
            "COUNTIF",
            "SUM",
            "AVG",
            "MIN",
            "MAX",
            "ANY_VALUE",
            "LOGICAL_AND",
            "LOGICAL_OR",
            "STRING_AGG",
            "APPROX_COUNT_DISTINCT",
        ];
        const WINDOW_ONLY: &[&str] = &[
            "ROW_NUMBER",
            "RANK",
            "DENSE_RANK",
            "PERCENT_RANK",
            "CUME_DIST",
            "NTILE",
            "LAG",
            "LEAD",
            "FIRST_VALUE",
            "LAST_VALUE",
        ];
        let is_agg = AGGREGATES.contains(&name.as_str());
        let is_window = WINDOW_ONLY.contains(&name.as_str());
        if f.over.is_some() && !is_agg && !is_window {
            return Err(invalid_query(format!(
                "{name} is not an aggregate or analytic function and cannot be used with OVER"
            )));
        }
        if is_window && f.over.is_none() {
            return Err(invalid_query(format!(
                "Analytic function {name} cannot be called without an OVER clause"
            )));
        }
        if distinct
            && !matches!(
                name.as_str(),
                "COUNT" | "SUM" | "AVG" | "MIN" | "MAX" | "STRING_AGG" | "ANY_VALUE"
            )
        {
            return Err(invalid_query(format!(
                "DISTINCT is not allowed for function {name}"
            )));
        }
        if distinct && f.over.is_some() {
            return Err(invalid_query(
                "DISTINCT is not allowed for analytic functions",
            ));
        }
        let mut order_by = None;
        for c in clauses {
            match c {
                FunctionArgumentClause::OrderBy(o) if name == "STRING_AGG" => {
                    order_by = Some(self.order_exprs(o)?)
                }
                _ => return Err(unsupported(format!("This clause inside {name}(...)"))),
            }
        }
        if f.null_treatment.is_some() && !matches!(name.as_str(), "FIRST_VALUE" | "LAST_VALUE") {
            return Err(invalid_query(format!(
                "IGNORE/RESPECT NULLS is not allowed for function {name}"
            )));
        }
        if star && (n > 0 || distinct) {
            return Err(invalid_query(
                "Syntax error: COUNT(*) takes no other arguments",
            ));
        }
        // Date parts and intervals must be read before the generic argument rewrite treats them as columns.
        let part_kind = match name.as_str() {
            "DATE_TRUNC" => Some((Kind::DateTrunc, 1)),
            "DATETIME_TRUNC" => Some((Kind::DatetimeTrunc, 1)),
            "TIMESTAMP_TRUNC" => Some((Kind::TimestampTrunc, 1)),
            "DATE_DIFF" => Some((Kind::DateDiff, 2)),
            "DATETIME_DIFF" => Some((Kind::DatetimeDiff, 2)),
            "TIMESTAMP_DIFF" => Some((Kind::TimestampDiff, 2)),
            _ => None,
        };
        let add_kind = match name.as_str() {
            "DATE_ADD" => Some(Kind::DateAdd),
            "DATE_SUB" => Some(Kind::DateSub),
            "DATETIME_ADD" => Some(Kind::DatetimeAdd),
            "DATETIME_SUB" => Some(Kind::DatetimeSub),
            "TIMESTAMP_ADD" => Some(Kind::TimestampAdd),
            "TIMESTAMP_SUB" => Some(Kind::TimestampSub),
            _ => None,
        };
        if let Some((kind, idx)) = part_kind {
            arity(
                idx + 1,
                if kind == Kind::TimestampTrunc {
                    3
                } else {
                    idx + 1
                },
            )?;
            let part = part_arg(kind, &name, &args[idx])?;
            let mut out = Vec::with_capacity(n);
            for (i, a) in args.into_iter().enumerate() {
                out.push(if i == idx {
                    part.clone()
                } else {
                    self.expr(a)?
                });
            }
            return Ok(call_kind(kind, out));
        }
        if let Some(kind) = add_kind {
            arity(2, 2)?;
            let mut it = args.into_iter();
            let base = self.expr(it.next().expect("arity checked"))?;
            let Some(Expr::Interval(iv)) = it.next() else {
                return Err(invalid_query(format!(
                    "No matching signature for function {name}: the second argument must be INTERVAL n part"
                )));
            };
            if iv.last_field.is_some()
                || iv.leading_precision.is_some()
                || iv.fractional_seconds_precision.is_some()
            {
                return Err(unsupported("This INTERVAL form"));
            }
            let part = iv
                .leading_field
                .as_ref()
                .and_then(datetime_field_part)
                .ok_or_else(|| {
                    invalid_query(format!("A valid date part name is required in {name}"))
                })?;
            let p = Part::parse(&part).ok_or_else(|| {
                invalid_query(format!(
                    "A valid date part name is required but found {part}"
                ))
            })?;
            if !kind.accepts_part(p) {
                return Err(invalid_query(format!(
                    "Unsupported date part {part} for {name}"
                )));
            }
            let amount = self.expr(*iv.value)?;
            return Ok(call_kind(kind, vec![base, amount, lit_str(part)]));
        }
        let mut args = self.exprs(args)?;
        let over = match f.over {
            Some(WindowType::WindowSpec(spec)) => {
                Some(WindowType::WindowSpec(self.window_spec(spec)?))
            }
            other => other,
        };
        let builtin = |lower: &str, args: Vec<Expr>| -> Expr {
            let mut fun = func(lower, args);
            if distinct && let FunctionArguments::List(l) = &mut fun.args {
                l.duplicate_treatment = Some(DuplicateTreatment::Distinct);
            }
            fun.over = over.clone();
            fun.null_treatment = f.null_treatment;
            Expr::Function(fun)
        };
        let udf = |k: Kind, args: Vec<Expr>| call_kind(k, args);
        Ok(match name.as_str() {
            "COUNT" => {
                if star {
                    let mut fun = func("count", vec![]);
                    if let FunctionArguments::List(l) = &mut fun.args {
                        l.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)];
                    }
                    fun.over = over.clone();
                    Expr::Function(fun)
                } else {
                    arity(1, 1)?;
                    builtin("count", args)
                }
            }
            "COUNTIF" => {
                arity(1, 1)?;
                let cond = call_kind(Kind::CountIfArg, vec![args.remove(0)]);
                let case = Expr::Case {
                    case_token: AttachedToken::empty(),
                    end_token: AttachedToken::empty(),
                    operand: None,
                    conditions: vec![CaseWhen {
                        condition: cond,
                        result: lit_int(1),
                    }],
                    else_result: None,
                };
                builtin("count", vec![case])
            }
            "SUM" => {
                arity(1, 1)?;
                let as_float = vec![call_kind(Kind::Cast(BqType::Float64), args.clone())];
                call_kind(
                    Kind::SumCheck,
                    vec![builtin("sum", args), builtin("sum", as_float)],
                )
            }
            "AVG" | "MIN" | "MAX" => {
                arity(1, 1)?;
                builtin(&name.to_ascii_lowercase(), args)
            }
            "ANY_VALUE" => {
                arity(1, 1)?;
                builtin("min", args)
            }
            "APPROX_COUNT_DISTINCT" => {
                arity(1, 1)?;
                let mut e = builtin("count", args);
                if let Expr::Function(fun) = &mut e
                    && let FunctionArguments::List(l) = &mut fun.args
                {
                    l.duplicate_treatment = Some(DuplicateTreatment::Distinct);
                }
                e
            }
            "LOGICAL_AND" => {
                arity(1, 1)?;
                builtin("bool_and", args)
            }
            "LOGICAL_OR" => {
                arity(1, 1)?;
                builtin("bool_or", args)
            }
            "STRING_AGG" => {
                arity(1, 2)?;
                if n == 1 {
                    args.push(lit_str(","));
                }
                let mut e = builtin("string_agg", args);
                if let (Expr::Function(fun), Some(o)) = (&mut e, order_by)
                    && let FunctionArguments::List(l) = &mut fun.args
                {
                    l.clauses.push(FunctionArgumentClause::OrderBy(o));
                }
                e
            }
            "ROW_NUMBER" | "RANK" | "DENSE_RANK" | "PERCENT_RANK" | "CUME_DIST" => {
                arity(0, 0)?;
                builtin(&name.to_ascii_lowercase(), args)
            }
            "NTILE" => {
                arity(1, 1)?;
                builtin("ntile", args)
            }
            "LAG" | "LEAD" => {
                arity(1, 3)?;
                builtin(&name.to_ascii_lowercase(), args)
            }
            "FIRST_VALUE" | "LAST_VALUE" => {
                arity(1, 1)?;
                builtin(&name.to_ascii_lowercase(), args)
            }
            "COALESCE" => {
                arity(1, usize::MAX)?;
                builtin("coalesce", args)
            }
            "IFNULL" => {
                arity(2, 2)?;
                builtin("coalesce", args)
            }
            "NULLIF" => {
                arity(2, 2)?;
                builtin("nullif", args)
            }
            "IF" => {
                arity(3, 3)?;
                let mut it = args.into_iter();
                let (c, a, b) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
                Expr::Case {
                    case_token: AttachedToken::empty(),
                    end_token: AttachedToken::empty(),
                    operand: None,
                    conditions: vec![CaseWhen {
                        condition: c,
                        result: a,
                    }],
                    else_result: Some(Box::new(b)),
                }
            }
            "LOWER" | "UPPER" | "REVERSE" => {
                arity(1, 1)?;
                builtin(&name.to_ascii_lowercase(), args)
            }
            "LENGTH" | "CHAR_LENGTH" | "CHARACTER_LENGTH" => {
                arity(1, 1)?;
                builtin("character_length", args)
            }
            "STARTS_WITH" | "ENDS_WITH" | "STRPOS" => {
                arity(2, 2)?;
                builtin(&name.to_ascii_lowercase(), args)
            }
            "LPAD" | "RPAD" => {
                arity(2, 3)?;
                builtin(&name.to_ascii_lowercase(), args)
            }
            "ABS" => {
                arity(1, 1)?;
                builtin("abs", args)
            }
            "POW" | "POWER" => {
                arity(2, 2)?;
                let args = args
                    .into_iter()
                    .map(|a| udf(Kind::Cast(BqType::Float64), vec![a]))
                    .collect();
                builtin("power", args)
            }
            "CONCAT" => {
                arity(1, usize::MAX)?;
                udf(Kind::Concat, args)
            }
            "SUBSTR" | "SUBSTRING" => {
                arity(2, 3)?;
                udf(Kind::Substr, args)
            }
            "TRIM" | "LTRIM" | "RTRIM" => {
                arity(1, 2)?;
                udf(
                    match name.as_str() {
                        "TRIM" => Kind::Trim,
                        "LTRIM" => Kind::LTrim,
                        _ => Kind::RTrim,
                    },
                    args,
                )
            }
            "CEIL" | "CEILING" | "FLOOR" | "SQRT" | "SIGN" => {
                arity(1, 1)?;
                udf(
                    match name.as_str() {
                        "FLOOR" => Kind::Floor,
                        "SQRT" => Kind::Sqrt,
                        "SIGN" => Kind::Sign,
                        _ => Kind::Ceil,
                    },
                    args,
                )
            }
            "ROUND" | "TRUNC" => {
                arity(1, 2)?;
                udf(
                    if name == "ROUND" {
                        Kind::Round
                    } else {
                        Kind::Trunc
                    },
                    args,
                )
            }
            "CURRENT_DATE" | "CURRENT_DATETIME" | "CURRENT_TIMESTAMP" => {
                arity(0, if name == "CURRENT_TIMESTAMP" { 0 } else { 1 })?;
                // The session registers these kinds with the query's start time.
                let k = match name.as_str() {
                    "CURRENT_DATE" => Kind::CurrentDate(0),
                    "CURRENT_DATETIME" => Kind::CurrentDatetime(0),
                    _ => Kind::CurrentTimestamp(0),
                };
                udf(k, args)
            }
            other => {
                let (kind, lo, hi) = match other {
                    "MOD" => (Kind::Mod, 2, 2),
                    "DIV" => (Kind::IntDiv, 2, 2),
                    "SAFE_DIVIDE" => (Kind::SafeDivide, 2, 2),
                    "IEEE_DIVIDE" => (Kind::IeeeDivide, 2, 2),
                    "GREATEST" => (Kind::Greatest, 1, usize::MAX),
                    "LEAST" => (Kind::Least, 1, usize::MAX),
                    "REPLACE" => (Kind::Replace, 3, 3),
                    "REGEXP_CONTAINS" => (Kind::RegexpContains, 2, 2),
                    "REGEXP_EXTRACT" => (Kind::RegexpExtract, 2, 2),
                    "REGEXP_REPLACE" => (Kind::RegexpReplace, 3, 3),
                    "DATE" => (Kind::Date, 1, 3),
                    "DATETIME" => (Kind::Datetime, 1, 2),
                    "TIMESTAMP" => (Kind::Timestamp, 1, 2),
                    "FORMAT_DATE" => (Kind::FormatDate, 2, 2),
                    "FORMAT_DATETIME" => (Kind::FormatDatetime, 2, 2),
                    "FORMAT_TIMESTAMP" => (Kind::FormatTimestamp, 2, 3),
                    "PARSE_DATE" => (Kind::ParseDate, 2, 2),
                    "PARSE_DATETIME" => (Kind::ParseDatetime, 2, 2),
                    "PARSE_TIMESTAMP" => (Kind::ParseTimestamp, 2, 3),
                    "UNIX_DATE" => (Kind::UnixDate, 1, 1),
                    "UNIX_SECONDS" => (Kind::UnixSeconds, 1, 1),
                    "UNIX_MILLIS" => (Kind::UnixMillis, 1, 1),
                    "UNIX_MICROS" => (Kind::UnixMicros, 1, 1),
                    "DATE_FROM_UNIX_DATE" => (Kind::DateFromUnixDate, 1, 1),
                    "TIMESTAMP_SECONDS" => (Kind::TimestampSeconds, 1, 1),
                    "TIMESTAMP_MILLIS" => (Kind::TimestampMillis, 1, 1),
                    "TIMESTAMP_MICROS" => (Kind::TimestampMicros, 1, 1),
                    _ => return Err(invalid_query(format!("Function not found: {shown}"))),
                };
                arity(lo, hi)?;
                udf(kind, args)
            }
        })
    }
}

fn empty_query() -> Query {
    Query {
        with: None,
        body: Box::new(SetExpr::Values(datafusion::sql::sqlparser::ast::Values {
            explicit_row: false,
            value_keyword: false,
            rows: vec![],
        })),
        order_by: None,
        limit_clause: None,
        fetch: None,
        locks: vec![],
        for_clause: None,
        settings: None,
        format_clause: None,
        pipe_operators: vec![],
    }
}

fn empty_window() -> WindowSpec {
    WindowSpec {
        window_name: None,
        partition_by: vec![],
        order_by: vec![],
        window_frame: None,
    }
}

/// Names known to a query, by lower-cased spelling, for GoogleSQL's case-insensitive name resolution.
#[derive(Default)]
struct KnownNames {
    columns: std::collections::HashMap<String, std::collections::BTreeSet<String>>,
    qualifiers: std::collections::HashMap<String, std::collections::BTreeSet<String>>,
}

fn remember(
    map: &mut std::collections::HashMap<String, std::collections::BTreeSet<String>>,
    name: &str,
) {
    map.entry(name.to_ascii_lowercase())
        .or_default()
        .insert(name.to_string());
}

/// The one spelling `id` stands for when it differs only in case, if unambiguous.
fn respell(
    map: &std::collections::HashMap<String, std::collections::BTreeSet<String>>,
    id: &str,
) -> Option<String> {
    let spellings = map.get(&id.to_ascii_lowercase())?;
    if spellings.contains(id) || spellings.len() != 1 {
        return None;
    }
    spellings.iter().next().cloned()
}

struct Collect<'a>(&'a mut KnownNames);

impl datafusion::sql::sqlparser::ast::Visitor for Collect<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> std::ops::ControlFlow<()> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                remember(&mut self.0.qualifiers, &cte.alias.name.value);
            }
        }
        std::ops::ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> std::ops::ControlFlow<()> {
        for item in &s.projection {
            if let SelectItem::ExprWithAlias { alias, .. } = item {
                remember(&mut self.0.columns, &alias.value);
            }
        }
        std::ops::ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> std::ops::ControlFlow<()> {
        let alias = match t {
            TableFactor::Table { alias, .. } | TableFactor::Derived { alias, .. } => alias.as_ref(),
            _ => None,
        };
        if let Some(a) = alias {
            remember(&mut self.0.qualifiers, &a.name.value);
        }
        std::ops::ControlFlow::Continue(())
    }
}

struct Fix<'a>(&'a KnownNames);

impl datafusion::sql::sqlparser::ast::VisitorMut for Fix<'_> {
    type Break = ();

    fn pre_visit_select(&mut self, s: &mut Select) -> std::ops::ControlFlow<()> {
        // Keep the spelling the query used as the output column name.
        for item in s.projection.iter_mut() {
            if let SelectItem::UnnamedExpr(Expr::Identifier(id)) = item
                && let Some(fixed) = respell(&self.0.columns, &id.value)
            {
                let alias = Ident::new(id.value.clone());
                *item = SelectItem::ExprWithAlias {
                    expr: Expr::Identifier(Ident::new(fixed)),
                    alias,
                };
            }
        }
        std::ops::ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
        match e {
            Expr::Identifier(id) => {
                if let Some(fixed) = respell(&self.0.columns, &id.value) {
                    id.value = fixed;
                }
            }
            Expr::CompoundIdentifier(ids) => {
                let last = ids.len() - 1;
                for (i, id) in ids.iter_mut().enumerate() {
                    let map = if i == last {
                        &self.0.columns
                    } else {
                        &self.0.qualifiers
                    };
                    if let Some(fixed) = respell(map, &id.value) {
                        id.value = fixed;
                    }
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// GoogleSQL resolves column names and aliases case-insensitively while DataFusion (with identifier
/// normalization off, to keep names as written) does not: respell identifiers that differ from exactly one
/// known column, alias or table alias only in case. Ambiguous spellings are left alone and fail loudly.
pub(crate) fn fix_identifier_case(statement: &mut Statement, table_columns: &[String]) {
    use datafusion::sql::sqlparser::ast::{Visit, VisitMut};
    let mut known = KnownNames::default();
    for c in table_columns {
        remember(&mut known.columns, c);
    }
    // Neither visitor ever breaks.
    let _ = Visit::visit(&*statement, &mut Collect(&mut known));
    let _ = VisitMut::visit(statement, &mut Fix(&known));
}
