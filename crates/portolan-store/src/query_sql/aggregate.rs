//! The SQL of aggregates, and running them.

use portolan_model::query::{Field, Kind, Meta, Shape, Target};
use serde_json::Value;

use crate::{Result, StoreError};

use super::predicate::{elements, float, json_location, meta_column, one_value, predicate, unreachable_field};
use super::search::{blueprint_is, column_is};
use super::{Aggregate, AggregatePlan, AggregateResult, Dialect, MAX_GROUPS, Param, Sql};

/// The SQL of an aggregate; one row with one column `value`, or (for `CountBy`) rows of
/// (`key` as JSON text, `n`).
pub fn aggregate(dialect: Dialect, plan: &AggregatePlan, median_offset: Option<i64>) -> Result<Sql> {
    if let Aggregate::CountBy(Target { field: Field::Meta(Meta::Team), .. }) = &plan.function {
        return count_by_team(dialect, plan);
    }
    let mut sql = Sql::new(dialect);
    let mut conditions = vec![predicate(&mut sql, &plan.query, &plan.required_relations)?];
    if let Some(bp) = &plan.blueprint {
        conditions.push(blueprint_is(&mut sql, bp));
    }
    let numeric = |sql: &Sql, target: &Target| -> Result<String> {
        match target.shape {
            Shape::One(kind @ (Kind::Number | Kind::Timestamp)) => one_value(sql, &target.field, kind),
            _ => Err(StoreError::Other("sum, avg, min, max and median need a number".into())),
        }
    };
    let where_ = conditions.join(" AND ");
    sql.text = match &plan.function {
        Aggregate::Count => {
            format!("SELECT CAST(count(*) AS {}) AS value FROM entities e WHERE {where_}", float(dialect))
        }
        Aggregate::Sum(t) | Aggregate::Avg(t) | Aggregate::Min(t) | Aggregate::Max(t) => {
            let function = match &plan.function {
                Aggregate::Sum(_) => "sum",
                Aggregate::Avg(_) => "avg",
                Aggregate::Min(_) => "min",
                _ => "max",
            };
            let x = numeric(&sql, t)?;
            format!("SELECT CAST({function}({x}) AS {}) AS value FROM entities e WHERE {where_}", float(dialect))
        }
        Aggregate::Median(t) => {
            let x = numeric(&sql, t)?;
            match median_offset {
                // First pass: how many values there are.
                None => {
                    format!("SELECT CAST(count({x}) AS {}) AS value FROM entities e WHERE {where_}", float(dialect))
                }
                Some(offset) => {
                    let offset = sql.bind(Param::Int(offset));
                    format!(
                        "SELECT CAST({x} AS {}) AS value FROM entities e WHERE {where_} AND {x} IS NOT NULL \
                         ORDER BY {x} LIMIT 2 OFFSET {offset}",
                        float(dialect)
                    )
                }
            }
        }
        Aggregate::CountBy(target) => {
            let limit = sql.bind(Param::Int(i64::from(MAX_GROUPS)));
            // A list may hold a value twice; a single value is counted once per entity anyway.
            let counted = if matches!(target.shape, Shape::Many(_)) { "count(DISTINCT e.id)" } else { "count(*)" };
            // Rows are grouped by `group`; each group is shown as `key` (JSON text) of its `group_value`.
            let (from, group, key) = match (target.shape, dialect) {
                (Shape::Many(kind), Dialect::Sqlite) => {
                    let (source, _) = elements(&sql, &target.field, kind)?;
                    (format!("entities e, {source}"), "json_quote(j.value)".to_string(), "group_value")
                }
                (Shape::Many(_), Dialect::Postgres) => {
                    let Some((column, key)) = json_location(&target.field)? else { unreachable_field()? };
                    let json = if key.is_empty() { column.to_string() } else { format!("({column}->'{key}')") };
                    (
                        format!(
                            "entities e, jsonb_array_elements(CASE jsonb_typeof({json}) WHEN 'array' THEN {json} END) AS j(value)"
                        ),
                        "(j.value::text)".to_string(),
                        "group_value",
                    )
                }
                // A string or boolean is grouped by the value itself, which an index on it holds in
                // order, and quoted once per group. Others keep their JSON text: SQLite groups the
                // numbers 2 and 2.0 together, and an object loses its JSON type in a subquery.
                (Shape::One(kind @ (Kind::String | Kind::Boolean)), Dialect::Sqlite) => {
                    ("entities e".to_string(), one_value(&sql, &target.field, kind)?, "json_quote(group_value)")
                }
                (_, Dialect::Sqlite) => {
                    let kind = target.shape.kind().unwrap_or(Kind::String);
                    (
                        "entities e".to_string(),
                        format!("json_quote({})", one_value(&sql, &target.field, kind)?),
                        "group_value",
                    )
                }
                (_, Dialect::Postgres) if matches!(target.field, Field::Scorecard(_)) => (
                    "entities e".to_string(),
                    format!("(to_jsonb({})::text)", one_value(&sql, &target.field, Kind::Number)?),
                    "group_value",
                ),
                (_, Dialect::Postgres) => {
                    let key = match json_location(&target.field)? {
                        Some((column, key)) => format!("(({column}->'{key}')::text)"),
                        None => match &target.field {
                            Field::Meta(meta) => format!("(to_jsonb({})::text)", meta_column(*meta)),
                            _ => unreachable_field()?,
                        },
                    };
                    ("entities e".to_string(), key, "group_value")
                }
            };
            format!(
                "SELECT {key} AS group_key, n FROM (SELECT {group} AS group_value, {counted} AS n FROM {from} \
                 WHERE {where_} GROUP BY {group}) AS counted ORDER BY n DESC, group_key ASC LIMIT {limit}"
            )
        }
    };
    Ok(sql)
}

/// Entities per owning team, from the owning-team references (one per entity and team) and, for
/// a blueprint, their index by blueprint and team: only a query that selects fewer than all the
/// blueprint's entities reads entities.
fn count_by_team(dialect: Dialect, plan: &AggregatePlan) -> Result<Sql> {
    let mut sql = Sql::new(dialect);
    let mut conditions = vec!["r.via = '$team'".to_string()];
    if let Some(bp) = &plan.blueprint {
        conditions.push(column_is(&mut sql, "r.source_blueprint", bp));
    }
    if !plan.query.selects_everything() {
        let selected = predicate(&mut sql, &plan.query, &plan.required_relations)?;
        conditions.push(format!("r.source_id IN (SELECT e.id FROM entities e WHERE {selected})"));
    }
    let key = match dialect {
        Dialect::Sqlite => "json_quote(r.target_identifier)",
        Dialect::Postgres => "(to_jsonb(r.target_identifier)::text)",
    };
    let limit = sql.bind(Param::Int(i64::from(MAX_GROUPS)));
    sql.text = format!(
        "SELECT {key} AS group_key, count(*) AS n FROM entity_references r WHERE {} \
         GROUP BY r.target_identifier ORDER BY n DESC, group_key ASC LIMIT {limit}",
        conditions.join(" AND ")
    );
    Ok(sql)
}

/// Reads a `CountBy` key (JSON text) back as a value of the target's kind.
pub fn group_key(text: Option<&str>, target: &Target) -> Value {
    let value = text.and_then(|t| serde_json::from_str::<Value>(t).ok()).unwrap_or(Value::Null);
    match (value, target.shape.kind()) {
        // SQLite's JSON functions give booleans as 1 and 0.
        (Value::Number(n), Some(Kind::Boolean)) => Value::Bool(n.as_i64() == Some(1)),
        (value, _) => value,
    }
}

/// The median of `count` sorted values, given the one or two in the middle.
fn median(values: &[f64], count: u64) -> Option<f64> {
    match (count, values) {
        (0, _) => None,
        (n, [a, b, ..]) if n % 2 == 0 => Some((a + b) / 2.0),
        (_, [a, ..]) => Some(*a),
        _ => None,
    }
}

/// Runs SQL built here; each backend implements it over its own connection.
#[async_trait::async_trait]
pub trait SqlRunner: Send {
    /// The `value` column of each row.
    async fn floats(&mut self, sql: Sql) -> Result<Vec<Option<f64>>>;
    /// The (`key`, `n`) rows of a `CountBy`.
    async fn groups(&mut self, sql: Sql) -> Result<Vec<(Option<String>, i64)>>;
}

/// Runs an aggregate (the median takes two queries: the count, then the middle values).
pub async fn run_aggregate(
    runner: &mut dyn SqlRunner,
    dialect: Dialect,
    plan: &AggregatePlan,
) -> Result<AggregateResult> {
    match &plan.function {
        Aggregate::CountBy(target) => {
            let rows = runner.groups(aggregate(dialect, plan, None)?).await?;
            Ok(AggregateResult::Groups(
                rows.into_iter().map(|(key, n)| (group_key(key.as_deref(), target), n.max(0) as u64)).collect(),
            ))
        }
        Aggregate::Median(_) => {
            let count =
                runner.floats(aggregate(dialect, plan, None)?).await?.first().copied().flatten().unwrap_or(0.0) as u64;
            if count == 0 {
                return Ok(AggregateResult::Value(None));
            }
            let offset = ((count - 1) / 2) as i64;
            let middle: Vec<f64> =
                runner.floats(aggregate(dialect, plan, Some(offset))?).await?.into_iter().flatten().collect();
            Ok(AggregateResult::Value(median(&middle, count)))
        }
        _ => {
            Ok(AggregateResult::Value(runner.floats(aggregate(dialect, plan, None)?).await?.first().copied().flatten()))
        }
    }
}
