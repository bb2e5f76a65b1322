//! Translation of the query language to SQL, for both backends. The meaning is fixed by the
//! model's in-memory evaluator (`portolan_model::query`); this module must agree with it, and the
//! conformance suite's property test checks that it does.
//!
//! Every predicate produced here is a boolean that is never NULL, so `NOT` negates it exactly.
//! Property and relation names are inlined into JSON paths: they are schema identifiers, which
//! the model restricts to `[A-Za-z0-9_@=-]`, and are checked again here before use.

use portolan_model::query::{CompareOp, Direction, Field, Kind, Meta, Query, Rule, Scalar, Shape, Target, TextOp};
use portolan_model::{Entity, query};
use serde_json::Value;

use crate::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// A search over entities.
#[derive(Debug, Clone)]
pub struct SearchPlan {
    /// Only this blueprint's entities, or all.
    pub blueprint: Option<String>,
    pub query: Query,
    pub sort: Option<Sort>,
    /// Start after this position (keyset pagination in the plan's order).
    pub after: Option<Position>,
    pub limit: u32,
    /// `(blueprint, relation)` pairs of required relations, for `relatedTo` with `required`.
    pub required_relations: Vec<(String, String)>,
}

/// Where a page ended: the last entity and its sort value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    #[serde(rename = "b")]
    pub blueprint: String,
    #[serde(rename = "i")]
    pub identifier: String,
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl Position {
    /// The position just after `entity` in an order by `sort`.
    pub fn after(entity: &Entity, sort: Option<&Sort>) -> Self {
        Position {
            blueprint: entity.blueprint.clone(),
            identifier: entity.identifier.clone(),
            value: sort.and_then(|s| query::raw(entity, &s.target.field)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sort {
    pub target: Target,
    pub descending: bool,
}

/// A computation over the entities a query selects.
#[derive(Debug, Clone)]
pub struct AggregatePlan {
    pub blueprint: Option<String>,
    pub query: Query,
    pub function: Aggregate,
    pub required_relations: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub enum Aggregate {
    Count,
    Sum(Target),
    Avg(Target),
    Min(Target),
    Max(Target),
    Median(Target),
    /// Entities per distinct value (per element, for lists), most frequent first.
    CountBy(Target),
}

#[derive(Debug, Clone, PartialEq)]
pub enum AggregateResult {
    Value(Option<f64>),
    Groups(Vec<(Value, u64)>),
}

/// Most groups a `CountBy` returns.
pub const MAX_GROUPS: u32 = 1_000;

/// SQL text and its bound parameters, numbered (`?N` on SQLite, `$N` on PostgreSQL).
pub struct Sql {
    pub dialect: Dialect,
    pub text: String,
    pub params: Vec<Param>,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Self {
        Sql { dialect, text: String::new(), params: Vec::new() }
    }

    /// Adds a parameter and returns its placeholder.
    pub fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        match self.dialect {
            Dialect::Sqlite => format!("?{}", self.params.len()),
            Dialect::Postgres => format!("${}", self.params.len()),
        }
    }

    fn bind_scalar(&mut self, value: &Scalar) -> String {
        let param = match (value, self.dialect) {
            (Scalar::Str(s), _) => Param::Text(s.clone()),
            (Scalar::Num(n), _) => Param::Float(*n),
            (Scalar::Bool(b), Dialect::Postgres) => Param::Bool(*b),
            // SQLite's JSON functions give booleans as 1 and 0.
            (Scalar::Bool(b), Dialect::Sqlite) => Param::Int(i64::from(*b)),
        };
        self.bind(param)
    }

    fn false_literal(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "0",
            Dialect::Postgres => "FALSE",
        }
    }
}

fn checked_name(name: &str) -> Result<&str> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '=' | '-')) {
        Ok(name)
    } else {
        Err(StoreError::Other(format!("refusing to put {name:?} into SQL")))
    }
}

/// The JSON column and key of a property or relation, or None for a meta-property.
fn json_location(field: &Field) -> Result<Option<(&'static str, &str)>> {
    Ok(match field {
        Field::Property(name) => Some(("e.properties", checked_name(name)?)),
        Field::Relation(name) => Some(("e.relations", checked_name(name)?)),
        Field::Meta(Meta::Team) => Some(("e.team", "")),
        Field::Meta(_) | Field::Scorecard(_) => None,
    })
}

fn meta_column(meta: Meta) -> &'static str {
    match meta {
        Meta::Identifier => "e.identifier",
        Meta::Title => "e.title",
        Meta::Team => "e.team",
        Meta::Blueprint => "e.blueprint",
        Meta::CreatedAt => "e.created_at",
        Meta::UpdatedAt => "e.updated_at",
        Meta::CreatedBy => "e.created_by",
        Meta::UpdatedBy => "e.updated_by",
    }
}

/// An expression yielding a one-valued field as `kind` (DateTime as text).
fn one_value(sql: &Sql, field: &Field, kind: Kind) -> Result<String> {
    if let Field::Scorecard(id) = field {
        let id = checked_name(id)?;
        return Ok(match sql.dialect {
            Dialect::Sqlite => format!("json_extract(e.scorecards, '$.\"{id}\".levelIndex')"),
            Dialect::Postgres => format!("((e.scorecards->'{id}'->>'levelIndex')::float8)"),
        });
    }
    let Some((column, key)) = json_location(field)? else {
        let Field::Meta(meta) = field else { unreachable_field()? };
        let column = meta_column(*meta);
        return Ok(match (sql.dialect, kind) {
            (Dialect::Postgres, _) if matches!(meta, Meta::Title | Meta::CreatedBy | Meta::UpdatedBy) => {
                format!("({column} COLLATE \"C\")")
            }
            _ => column.to_string(),
        });
    };
    Ok(match sql.dialect {
        Dialect::Sqlite => format!("json_extract({column}, '$.\"{key}\"')"),
        Dialect::Postgres => match kind {
            Kind::String | Kind::DateTime => format!("(({column}->>'{key}') COLLATE \"C\")"),
            Kind::Number | Kind::Timestamp => format!("(({column}->>'{key}')::float8)"),
            Kind::Boolean => format!("(({column}->>'{key}')::boolean)"),
        },
    })
}

fn unreachable_field<T>() -> Result<T> {
    Err(StoreError::Other("a meta-property has no JSON location".into()))
}

/// `FROM`-able set of the elements of a list field, as a relation `j(value)`, and the element
/// expression as `kind`.
fn elements(sql: &Sql, field: &Field, kind: Kind) -> Result<(String, String)> {
    let Some((column, key)) = json_location(field)? else { unreachable_field()? };
    Ok(match sql.dialect {
        Dialect::Sqlite => {
            let source = if key.is_empty() {
                format!("json_each({column})")
            } else {
                format!("json_each({column}, '$.\"{key}\"')")
            };
            (format!("{source} AS j"), "j.value".to_string())
        }
        Dialect::Postgres => {
            let json = if key.is_empty() { column.to_string() } else { format!("({column}->'{key}')") };
            let source = format!(
                "jsonb_array_elements_text(CASE jsonb_typeof({json}) WHEN 'array' THEN {json} END) AS j(value)"
            );
            let value = match kind {
                Kind::String | Kind::DateTime => "(j.value COLLATE \"C\")".to_string(),
                Kind::Number | Kind::Timestamp => "(j.value::float8)".to_string(),
                Kind::Boolean => "(j.value::boolean)".to_string(),
            };
            (source, value)
        }
    })
}

/// Milliseconds since the epoch of an RFC 3339 text expression.
fn instant_of(sql: &Sql, text: &str, kind: Kind) -> String {
    match (kind, sql.dialect) {
        (Kind::Timestamp, _) => text.to_string(),
        (_, Dialect::Sqlite) => format!("CAST(round((julianday({text}) - 2440587.5) * 86400000.0) AS INTEGER)"),
        (_, Dialect::Postgres) => format!("((extract(epoch from ({text})::timestamptz) * 1000)::bigint)"),
    }
}

/// Builds a predicate over each value of the target (the value, or each element) and combines:
/// one value → the predicate (NULL → false); a list → EXISTS over its elements.
fn over_values(sql: &mut Sql, target: &Target, predicate: impl FnOnce(&mut Sql, &str) -> String) -> Result<String> {
    let f = sql.false_literal();
    match target.shape {
        Shape::One(kind) => {
            let value = one_value(sql, &target.field, kind)?;
            Ok(format!("COALESCE(({}), {f})", predicate(sql, &value)))
        }
        Shape::Many(kind) => {
            let (source, value) = elements(sql, &target.field, kind)?;
            Ok(format!("EXISTS (SELECT 1 FROM {source} WHERE {})", predicate(sql, &value)))
        }
        Shape::Object => Ok(f.to_string()),
    }
}

fn negated(negate: bool, predicate: String) -> String {
    if negate { format!("(NOT {predicate})") } else { predicate }
}

/// The SQL predicate of a query over the entity row aliased `e`.
pub fn predicate(sql: &mut Sql, query: &Query, required: &[(String, String)]) -> Result<String> {
    match query {
        Query::And(parts) | Query::Or(parts) if parts.is_empty() => {
            Ok(if matches!(query, Query::And(_)) { "(1 = 1)".into() } else { "(1 = 0)".into() })
        }
        Query::And(parts) | Query::Or(parts) => {
            let joiner = if matches!(query, Query::And(_)) { " AND " } else { " OR " };
            let parts = parts.iter().map(|p| predicate(sql, p, required)).collect::<Result<Vec<_>>>()?;
            Ok(format!("({})", parts.join(joiner)))
        }
        Query::Rule(rule) => rule_predicate(sql, rule, required),
    }
}

/// The relation name a field's values are stored under in `entity_references`, for fields whose
/// values are entity identifiers (relations and `$team`).
fn reference_via(field: &Field) -> Option<String> {
    match field {
        Field::Relation(name) => Some(name.clone()),
        Field::Meta(Meta::Team) => Some("$team".into()),
        _ => None,
    }
}

/// "The field names one of `targets`", answered from the references index instead of the
/// documents: the same meaning, since every relation value and owning team has its row.
fn references_predicate(sql: &mut Sql, via: String, targets: &[&str]) -> String {
    let via = sql.bind(Param::Text(via));
    let list: Vec<String> = targets.iter().map(|t| sql.bind(Param::Text((*t).to_string()))).collect();
    format!(
        "e.id IN (SELECT r.source_id FROM entity_references r WHERE r.via = {via} AND r.target_identifier IN ({}))",
        list.join(", ")
    )
}

fn rule_predicate(sql: &mut Sql, rule: &Rule, required: &[(String, String)]) -> Result<String> {
    match rule {
        Rule::Compare { target, op: CompareOp::Eq, value: Scalar::Str(value), negate }
            if reference_via(&target.field).is_some() =>
        {
            let via = reference_via(&target.field).unwrap_or_default();
            Ok(negated(*negate, references_predicate(sql, via, &[value.as_str()])))
        }
        Rule::In { target, values, negate }
            if !values.is_empty()
                && reference_via(&target.field).is_some()
                && values.iter().all(|v| matches!(v, Scalar::Str(_))) =>
        {
            let via = reference_via(&target.field).unwrap_or_default();
            let targets: Vec<&str> =
                values.iter().filter_map(|v| if let Scalar::Str(s) = v { Some(s.as_str()) } else { None }).collect();
            Ok(negated(*negate, references_predicate(sql, via, &targets)))
        }
        Rule::Compare { target, op, value, negate } => {
            let symbol = match op {
                CompareOp::Eq => "=",
                CompareOp::Gt => ">",
                CompareOp::Ge => ">=",
                CompareOp::Lt => "<",
                CompareOp::Le => "<=",
            };
            // An ordering of date-times compares instants (the model resolved the value to ms).
            let instants = matches!(value, Scalar::Num(_)) && target.shape.kind() == Some(Kind::DateTime);
            let kind = target.shape.kind().unwrap_or(Kind::String);
            // One string, number or boolean is compared without the `COALESCE` of `over_values`,
            // which would hide the value from an index on it (a facet filter or range then reads
            // the facet's index); never NULL all the same.
            if let Shape::One(kind @ (Kind::String | Kind::Number | Kind::Boolean)) = target.shape {
                let v = one_value(sql, &target.field, kind)?;
                let placeholder = sql.bind_scalar(value);
                return Ok(negated(*negate, format!("({v} {symbol} {placeholder} AND {v} IS NOT NULL)")));
            }
            let p = over_values(sql, target, |sql, v| {
                // Instants compare as whole milliseconds on both sides: a bigint against a float
                // parameter gave PostgreSQL answers that changed from run to run at the boundary.
                let placeholder = match value {
                    Scalar::Num(ms) if instants => sql.bind(Param::Int(*ms as i64)),
                    _ => sql.bind_scalar(value),
                };
                let left = if instants { instant_of(sql, v, kind) } else { v.to_string() };
                format!("{left} {symbol} {placeholder}")
            })?;
            Ok(negated(*negate, p))
        }
        Rule::Text { target, op, value, negate } => {
            let p = over_values(sql, target, |sql, v| {
                let needle = sql.bind(Param::Text(value.clone()));
                match (sql.dialect, op) {
                    (Dialect::Sqlite, TextOp::Contains) => format!("instr(lower({v}), {needle}) > 0"),
                    (Dialect::Sqlite, TextOp::BeginsWith) => {
                        format!("substr(lower({v}), 1, length({needle})) = {needle}")
                    }
                    (Dialect::Sqlite, TextOp::EndsWith) => format!("substr(lower({v}), -length({needle})) = {needle}"),
                    (Dialect::Postgres, TextOp::Contains) => format!("strpos(lower({v}), {needle}) > 0"),
                    (Dialect::Postgres, TextOp::BeginsWith) => {
                        format!("left(lower({v}), char_length({needle})) = {needle}")
                    }
                    (Dialect::Postgres, TextOp::EndsWith) => {
                        format!("right(lower({v}), char_length({needle})) = {needle}")
                    }
                }
            })?;
            Ok(negated(*negate, p))
        }
        Rule::In { target, values, negate } => {
            if values.is_empty() {
                return Ok(negated(*negate, sql.false_literal().to_string()));
            }
            let p = over_values(sql, target, |sql, v| {
                let list: Vec<String> = values.iter().map(|value| sql.bind_scalar(value)).collect();
                format!("{v} IN ({})", list.join(", "))
            })?;
            Ok(negated(*negate, p))
        }
        Rule::Empty { target, negate } => Ok(negated(*negate, empty_predicate(sql, &target.field)?)),
        Rule::Between { target, from, to, negate } => {
            let kind = target.shape.kind().unwrap_or(Kind::DateTime);
            let p = over_values(sql, target, |sql, v| {
                let (from, to) = (sql.bind(Param::Int(*from)), sql.bind(Param::Int(*to)));
                format!("{} BETWEEN {from} AND {to}", instant_of(sql, v, kind))
            })?;
            Ok(negated(*negate, p))
        }
        Rule::Timer { target, expired, now } => {
            let kind = target.shape.kind().unwrap_or(Kind::DateTime);
            over_values(sql, target, |sql, v| {
                let now = sql.bind(Param::Int(*now));
                format!("{} {} {now}", instant_of(sql, v, kind), if *expired { "<" } else { ">=" })
            })
        }
        Rule::RelatedTo { blueprint, targets, direction, required: required_only } => {
            related_predicate(sql, blueprint, targets, *direction, *required_only, required)
        }
        Rule::MatchAny { relations, max_hops, query } => {
            match_any_predicate(sql, relations, *max_hops, query, required)
        }
    }
}

fn empty_predicate(sql: &mut Sql, field: &Field) -> Result<String> {
    if let Field::Scorecard(_) = field {
        return Ok(format!("({} IS NULL)", one_value(sql, field, Kind::Number)?));
    }
    if let Field::Meta(meta) = field {
        return Ok(match (meta, sql.dialect) {
            (Meta::Title, _) => "(e.title IS NULL OR e.title = '')".into(),
            (Meta::Team, Dialect::Sqlite) => "(json_array_length(e.team) = 0)".into(),
            (Meta::Team, Dialect::Postgres) => "(jsonb_array_length(e.team) = 0)".into(),
            (Meta::CreatedBy | Meta::UpdatedBy, _) => format!("({} = '')", meta_column(*meta)),
            _ => sql.false_literal().into(),
        });
    }
    let Some((column, key)) = json_location(field)? else { unreachable_field()? };
    Ok(match sql.dialect {
        Dialect::Sqlite => {
            let path = format!("'$.\"{key}\"'");
            format!(
                "(CASE WHEN json_type({column}, {path}) IS NULL THEN 1 \
                  WHEN json_type({column}, {path}) = 'null' THEN 1 \
                  WHEN json_type({column}, {path}) = 'text' THEN json_extract({column}, {path}) = '' \
                  WHEN json_type({column}, {path}) = 'array' THEN json_array_length({column}, {path}) = 0 \
                  WHEN json_type({column}, {path}) = 'object' THEN json_extract({column}, {path}) = '{{}}' \
                  ELSE 0 END)"
            )
        }
        Dialect::Postgres => {
            let json = format!("({column}->'{key}')");
            format!(
                "(CASE COALESCE(jsonb_typeof({json}), 'null') WHEN 'null' THEN TRUE \
                  WHEN 'string' THEN {json} = '\"\"'::jsonb \
                  WHEN 'array' THEN jsonb_array_length({json}) = 0 \
                  WHEN 'object' THEN {json} = '{{}}'::jsonb \
                  ELSE FALSE END)"
            )
        }
    })
}

/// The relation column of a walk over `entity_references r`, and the condition that keeps the
/// walk on relations (not owning teams or team properties). On SQLite `+r.via` keeps the planner
/// off the (via, target) index: walking from the reached entities by target is what stays small
/// (measured: 3.5 s → 10 ms at 20k entities).
fn relation_edges(sql: &Sql) -> (&'static str, String) {
    let via = match sql.dialect {
        Dialect::Sqlite => "+r.via",
        Dialect::Postgres => "r.via",
    };
    (via, format!("{via} NOT LIKE '$%'"))
}

fn related_predicate(
    sql: &mut Sql,
    blueprint: &str,
    targets: &[String],
    direction: Direction,
    required_only: bool,
    required: &[(String, String)],
) -> Result<String> {
    if targets.is_empty() {
        return Ok(sql.false_literal().into());
    }
    let (via, mut edge) = relation_edges(sql);
    if required_only {
        let pairs: Vec<String> = required
            .iter()
            .map(|(bp, rel)| {
                let (bp, rel) = (sql.bind(Param::Text(bp.clone())), sql.bind(Param::Text(rel.clone())));
                format!("(s.blueprint = {bp} AND {via} = {rel})")
            })
            .collect();
        edge =
            if pairs.is_empty() { sql.false_literal().into() } else { format!("{edge} AND ({})", pairs.join(" OR ")) };
    }
    let bp = sql.bind(Param::Text(blueprint.to_string()));
    let list: Vec<String> = targets.iter().map(|t| sql.bind(Param::Text(t.clone()))).collect();
    let list = list.join(", ");
    let body = match direction {
        Direction::Upstream => format!(
            "SELECT r.source_id FROM entity_references r JOIN entities s ON s.id = r.source_id \
               WHERE r.target_blueprint = {bp} AND r.target_identifier IN ({list}) AND {edge} \
             UNION \
             SELECT r.source_id FROM reach \
               JOIN entities t ON t.id = reach.id \
               JOIN entity_references r ON r.target_blueprint = t.blueprint AND r.target_identifier = t.identifier \
               JOIN entities s ON s.id = r.source_id \
               WHERE {edge}"
        ),
        Direction::Downstream => format!(
            "SELECT t.id FROM entities s JOIN entity_references r ON r.source_id = s.id \
               JOIN entities t ON t.blueprint = r.target_blueprint AND t.identifier = r.target_identifier \
               WHERE s.blueprint = {bp} AND s.identifier IN ({list}) AND {edge} \
             UNION \
             SELECT t.id FROM reach \
               JOIN entities s ON s.id = reach.id \
               JOIN entity_references r ON r.source_id = s.id \
               JOIN entities t ON t.blueprint = r.target_blueprint AND t.identifier = r.target_identifier \
               WHERE {edge}"
        ),
    };
    // UNION (not UNION ALL) visits each entity once, so the walk ends even around cycles.
    Ok(format!("e.id IN (WITH RECURSIVE reach(id) AS ({body}) SELECT id FROM reach)"))
}

/// Entities whose relations lead, in 1 to `max_hops` steps, to an entity `query` admits: walks
/// backwards from the admitted entities. The inner query reuses the alias `e`, which shadows the
/// outer one inside the subquery.
fn match_any_predicate(
    sql: &mut Sql,
    relations: &[String],
    max_hops: usize,
    query: &Query,
    required: &[(String, String)],
) -> Result<String> {
    let inner = predicate(sql, query, required)?;
    let (via, mut edge) = relation_edges(sql);
    if !relations.is_empty() {
        let names: Vec<String> = relations.iter().map(|r| sql.bind(Param::Text(r.clone()))).collect();
        edge = format!("{edge} AND {via} IN ({})", names.join(", "));
    }
    let hops = sql.bind(Param::Int(max_hops as i64));
    Ok(format!(
        "e.id IN (WITH RECURSIVE reach(id, depth) AS (\
           SELECT r.source_id, 1 FROM entity_references r \
             JOIN entities m ON m.blueprint = r.target_blueprint AND m.identifier = r.target_identifier \
             WHERE {edge} AND m.id IN (SELECT e.id FROM entities e WHERE {inner}) \
           UNION \
           SELECT r.source_id, reach.depth + 1 FROM reach \
             JOIN entities t ON t.id = reach.id \
             JOIN entity_references r ON r.target_blueprint = t.blueprint AND r.target_identifier = t.identifier \
             WHERE reach.depth < {hops} AND {edge}) \
         SELECT id FROM reach)"
    ))
}

/// The expression a sort orders by, for one-valued fields (date-times as instants).
fn sort_expression(sql: &Sql, target: &Target) -> Result<String> {
    match target.shape {
        Shape::One(kind @ Kind::DateTime) => Ok(instant_of(sql, &one_value(sql, &target.field, kind)?, kind)),
        Shape::One(kind) => one_value(sql, &target.field, kind),
        _ => Err(StoreError::Other("only one-valued fields can be sorted on".into())),
    }
}

/// The entity columns a search returns.
const COLUMNS: &str = "e.blueprint, e.identifier, e.title, e.icon, e.team, e.properties, e.relations, e.scorecards, e.diagnostics, e.version, \
     e.created_at, e.created_by, e.updated_at, e.updated_by";

/// `e.blueprint = '<bp>'`. The name is inlined (after the same check as property names) so that
/// PostgreSQL can use the blueprint's partial property indexes, which a parameter can hide.
fn blueprint_is(sql: &mut Sql, blueprint: &str) -> String {
    match checked_name(blueprint) {
        Ok(name) => format!("e.blueprint = '{name}'"),
        Err(_) => {
            let p = sql.bind(Param::Text(blueprint.to_string()));
            format!("e.blueprint = {p}")
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

/// `SELECT ... FROM entities e WHERE ... ORDER BY ... LIMIT ...` for a search.
///
/// A sorted search takes the entities that have a value, in order, then those without (nulls
/// sort last in both directions), as two parts each ordered and limited on its own: each part is
/// a plain range in an index on the value, so a blueprint's property index serves both directions
/// and every page.
pub fn search(dialect: Dialect, plan: &SearchPlan) -> Result<Sql> {
    let mut sql = Sql::new(dialect);
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

/// The SQL of an aggregate; one row with one column `value`, or (for `CountBy`) rows of
/// (`key` as JSON text, `n`).
pub fn aggregate(dialect: Dialect, plan: &AggregatePlan, median_offset: Option<i64>) -> Result<Sql> {
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

fn float(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "REAL",
        Dialect::Postgres => "float8",
    }
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
}
