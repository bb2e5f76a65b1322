//! The SQL of a search, and the property indexes that serve searches.

use portolan_model::query;
use portolan_model::query::{Field, Kind, Shape, Target};
use serde_json::Value;

use crate::Result;

use super::predicate::{checked_name, one_value, predicate, sort_expression};
use super::{Dialect, Param, Position, SearchPlan, Sql};

/// The entity columns a search returns.
const COLUMNS: &str = "e.blueprint, e.identifier, e.title, e.icon, e.team, e.properties, e.relations, e.scorecards, e.diagnostics, e.version, \
     e.created_at, e.created_by, e.updated_at, e.updated_by";

/// `e.blueprint = '<bp>'`. The name is inlined (after the same check as property names) so that
/// PostgreSQL can use the blueprint's partial property indexes, which a parameter can hide.
pub(super) fn blueprint_is(sql: &mut Sql, blueprint: &str) -> String {
    column_is(sql, "e.blueprint", blueprint)
}

/// `<column> = '<blueprint>'` for any column holding a blueprint's name, inlined as in
/// [`blueprint_is`].
pub(super) fn column_is(sql: &mut Sql, column: &str, blueprint: &str) -> String {
    match checked_name(blueprint) {
        Ok(inlined) => format!("{column} = '{inlined}'"),
        Err(_) => {
            let p = sql.bind(Param::Text(blueprint.to_string()));
            format!("{column} = {p}")
        }
    }
}

/// Where the names of property indexes begin; the store drops those no blueprint asks for.
pub const PROPERTY_INDEX_PREFIX: &str = "entities_facet:";

/// The statements that bring the property indexes from `existing` (their names) to what the
/// blueprints ask for: an index on (blueprint, value, identifier) for each facet property
/// (`BlueprintSchema::facet_properties`) of one value. Facet counts then read an index instead of
/// every entity's JSON, and a sorted table page is a range of it.
///
/// On PostgreSQL each index holds only its blueprint's entities. SQLite's are whole-table, one
/// per property name and kind, shared by the blueprints that have it: SQLite (3.51.1 and the
/// bundled 3.51.3) answered `blueprint = ?` wrongly through a partial index
/// `WHERE blueprint = '...'` when a cached statement was re-prepared after the index was created:
/// it took the first bound value for a constant (the conformance case
/// `property_indexes_follow_blueprint_changes` shows it).
pub fn property_index_changes(
    dialect: Dialect,
    blueprints: &[portolan_model::Blueprint],
    existing: &[String],
) -> Vec<String> {
    let sql = Sql::new(dialect);
    let mut wanted: Vec<(String, String)> = Vec::new();
    for blueprint in blueprints {
        let Ok(bp) = checked_name(&blueprint.identifier) else { continue };
        for (property, schema) in blueprint.schema.facet_properties() {
            let kind = match query::property_shape(schema) {
                Shape::One(kind @ (Kind::String | Kind::Number | Kind::Boolean)) => kind,
                _ => continue,
            };
            let Ok(value) = one_value(&sql, &Field::Property(property.to_string()), kind) else { continue };
            // An index names the column without the alias `e` that queries give the table.
            let value = value.replace("e.properties", "properties");
            let (name, only) = match dialect {
                Dialect::Postgres => {
                    (format!("{PROPERTY_INDEX_PREFIX}{kind:?}:{bp}:{property}"), format!(" WHERE blueprint = '{bp}'"))
                }
                Dialect::Sqlite => (format!("{PROPERTY_INDEX_PREFIX}{kind:?}:{property}"), String::new()),
            };
            // PostgreSQL cuts names at 63 bytes; such a property goes without an index. SQLite's
            // names ignore case: of `Env` and `env`, the first is indexed.
            if name.len() > 63 || wanted.iter().any(|(wanted, _)| wanted.eq_ignore_ascii_case(&name)) {
                continue;
            }
            let create = format!("CREATE INDEX \"{name}\" ON entities (blueprint, ({value}), identifier){only}");
            wanted.push((name, create));
        }
    }
    let same = |a: &String, b: &String| a.eq_ignore_ascii_case(b);
    let mut statements: Vec<String> = existing
        .iter()
        .filter(|name| !wanted.iter().any(|(wanted, _)| same(wanted, name)))
        .map(|name| format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))
        .collect();
    statements.extend(
        wanted.into_iter().filter(|(name, _)| !existing.iter().any(|e| same(e, name))).map(|(_, create)| create),
    );
    statements
}

/// `SELECT ... FROM entities e WHERE ... ORDER BY ... LIMIT ...` for a search; text rules whose
/// FTS5 queries are in `common_text` do not use the text index.
///
/// A sorted search takes the entities that have a value, in order, then those without (nulls
/// sort last in both directions), as two parts each ordered and limited on its own: each part is
/// a plain range in an index on the value, so a blueprint's property index serves both directions
/// and every page.
pub fn search(dialect: Dialect, plan: &SearchPlan, common_text: Vec<String>) -> Result<Sql> {
    let mut sql = Sql { common_text, ..Sql::new(dialect) };
    let mut conditions = vec![predicate(&mut sql, &plan.query, &plan.required_relations)?];
    if let Some(bp) = &plan.blueprint {
        conditions.push(blueprint_is(&mut sql, bp));
    }
    let descending = plan.sort.as_ref().is_some_and(|s| s.descending);
    let (after, direction) = if descending { ("<", "DESC") } else { (">", "ASC") };
    // Within one blueprint the identifier alone orders; across blueprints, blueprint and identifier.
    let one_blueprint = |blueprint: &str| plan.blueprint.as_deref() == Some(blueprint);
    let order_columns = if plan.blueprint.is_some() { vec!["identifier"] } else { vec!["blueprint", "identifier"] };
    let ordered =
        |prefix: &str| order_columns.iter().map(|c| format!("{prefix}{c} {direction}")).collect::<Vec<_>>().join(", ");
    let limit = sql.bind(Param::Int(i64::from(plan.limit)));
    let Some(sort) = &plan.sort else {
        if let Some(last) = &plan.after {
            let tie = position_after(&mut sql, last, one_blueprint(&last.blueprint), after, None);
            conditions.push(tie);
        }
        sql.text = format!(
            "SELECT {COLUMNS} FROM entities e WHERE {} ORDER BY {} LIMIT {limit}",
            conditions.join(" AND "),
            ordered("e.")
        );
        return Ok(sql);
    };
    let expr = sort_expression(&sql, &sort.target)?;
    let part = |n: u8, condition: String| {
        format!(
            "SELECT * FROM (SELECT {n} AS sort_part, {expr} AS sort_value, {COLUMNS} FROM entities e \
             WHERE {} AND {condition} ORDER BY {}{} LIMIT {limit}) AS part{n}",
            conditions.join(" AND "),
            if n == 0 { format!("{expr} {direction}, ") } else { String::new() },
            ordered("e.")
        )
    };
    let (with_value, without_value) = match &plan.after {
        None => (Some(format!("{expr} IS NOT NULL")), format!("{expr} IS NULL")),
        Some(last) => {
            let same = one_blueprint(&last.blueprint);
            match sort_param(&sql, last.value.clone(), &sort.target) {
                // The last page ended among the entities without a value.
                None => (None, format!("{expr} IS NULL AND {}", position_after(&mut sql, last, same, after, None))),
                Some(value) => {
                    let value = sql.bind(value);
                    let past = position_after(&mut sql, last, same, after, Some((&expr, &value)));
                    (Some(format!("{expr} IS NOT NULL AND {past}")), format!("{expr} IS NULL"))
                }
            }
        }
    };
    let mut parts = Vec::new();
    if let Some(condition) = with_value {
        parts.push(part(0, condition));
    }
    parts.push(part(1, without_value));
    sql.text = format!(
        "SELECT * FROM ({}) AS found ORDER BY sort_part, sort_value {direction}, {} LIMIT {limit}",
        parts.join(" UNION ALL "),
        ordered("")
    );
    Ok(sql)
}

/// "After the position `last`" in the search's order, as one row-value comparison that an index
/// on (value,) blueprint and identifier answers with a range.
fn position_after(
    sql: &mut Sql,
    last: &Position,
    same_blueprint: bool,
    after: &str,
    value: Option<(&str, &str)>,
) -> String {
    let mut left = Vec::new();
    let mut right = Vec::new();
    if let Some((expr, placeholder)) = value {
        left.push(expr.to_string());
        right.push(placeholder.to_string());
    }
    if !same_blueprint {
        left.push("e.blueprint".into());
        right.push(sql.bind(Param::Text(last.blueprint.clone())));
    }
    left.push("e.identifier".into());
    right.push(sql.bind(Param::Text(last.identifier.clone())));
    if left.len() == 1 {
        format!("({} {after} {})", left[0], right[0])
    } else {
        format!("(({}) {after} ({}))", left.join(", "), right.join(", "))
    }
}

/// A position's sort value as a parameter, or None when it has none (it sorts last).
fn sort_param(sql: &Sql, value: Option<Value>, target: &Target) -> Option<Param> {
    let value = value?;
    let kind = target.shape.kind()?;
    match (value, kind) {
        (Value::String(s), Kind::DateTime) => portolan_model::blueprint::parse_date_time(&s).map(Param::Int),
        (Value::String(s), _) => Some(Param::Text(s)),
        (Value::Number(n), Kind::Timestamp) => n.as_i64().map(Param::Int),
        (Value::Number(n), _) => n.as_f64().map(Param::Float),
        (Value::Bool(b), _) => Some(match sql.dialect {
            Dialect::Postgres => Param::Bool(b),
            Dialect::Sqlite => Param::Int(i64::from(b)),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_indexes_follow_facets_and_ignore_the_case_of_names_as_sqlite_does() {
        let blueprint = portolan_model::Blueprint::from_json(serde_json::json!({"identifier": "app", "schema": {"properties": {
            "Env": {"type": "string", "enum": ["a"]}, "env": {"type": "string", "enum": ["b"]}, "free": {"type": "string"}
        }}}))
        .expect("blueprint");
        let created = property_index_changes(Dialect::Sqlite, std::slice::from_ref(&blueprint), &[]);
        assert_eq!(created.len(), 1, "one index for Env and env: {created:?}");
        assert!(created[0].starts_with("CREATE INDEX \"entities_facet:String:Env\""), "{created:?}");
        let existing = vec!["ENTITIES_FACET:String:env".to_string(), "entities_facet:String:gone".to_string()];
        assert_eq!(
            property_index_changes(Dialect::Sqlite, &[blueprint], &existing),
            vec!["DROP INDEX \"entities_facet:String:gone\"".to_string()]
        );
    }

    #[test]
    fn text_rules_read_the_text_index_unless_the_text_is_common_or_short() {
        use crate::query_sql::text_phrases;
        use portolan_model::query::{Meta, Query, Rule, TextOp};
        let contains = |needle: &str| {
            let target = Target { field: Field::Meta(Meta::Title), shape: Shape::One(Kind::String) };
            let rule = Rule::Text { target, op: TextOp::Contains, value: needle.into(), negate: false };
            SearchPlan {
                blueprint: Some("service".into()),
                query: Query::Rule(rule),
                sort: None,
                after: None,
                limit: 100,
                required_relations: vec![],
            }
        };
        let plan = contains("cart \"x");
        assert_eq!(text_phrases(&plan.query), ["title : \"cart \"\"x\""]);
        let indexed = search(Dialect::Sqlite, &plan, vec![]).expect("sql");
        assert!(indexed.text.contains("entity_text MATCH"), "{}", indexed.text);
        let common = search(Dialect::Sqlite, &plan, text_phrases(&plan.query)).expect("sql");
        assert!(!common.text.contains("entity_text"), "{}", common.text);
        assert!(text_phrases(&contains("ab").query).is_empty(), "one trigram at least");
        let postgres = search(Dialect::Postgres, &contains("50%_off"), vec![]).expect("sql");
        assert!(postgres.text.contains("lower((e.title COLLATE \"C\")) LIKE"), "{}", postgres.text);
        assert!(postgres.params.contains(&Param::Text("%50\\%\\_off%".into())), "{:?}", postgres.params);
    }
}
