//! The SQL predicate of a query, and the expressions it is built of.

use portolan_model::query::{CompareOp, Direction, Field, Kind, Meta, Query, Rule, Scalar, Shape, Target, TextOp};

use crate::{Result, StoreError};

use super::{Dialect, Param, Sql};

pub(super) fn checked_name(name: &str) -> Result<&str> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '=' | '-')) {
        Ok(name)
    } else {
        Err(StoreError::Other(format!("refusing to put {name:?} into SQL")))
    }
}

/// The JSON column and key of a property or relation, or None for a meta-property.
pub(super) fn json_location(field: &Field) -> Result<Option<(&'static str, &str)>> {
    Ok(match field {
        Field::Property(name) => Some(("e.properties", checked_name(name)?)),
        Field::Relation(name) => Some(("e.relations", checked_name(name)?)),
        Field::Meta(Meta::Team) => Some(("e.team", "")),
        Field::Meta(_) | Field::Scorecard(_) => None,
    })
}

pub(super) fn meta_column(meta: Meta) -> &'static str {
    match meta {
        Meta::Identifier => "e.identifier",
        Meta::Title => "e.title",
        Meta::Team => "e.team",
        Meta::Blueprint => "e.blueprint",
        Meta::CreatedAt => "e.created_at",
        Meta::UpdatedAt => "e.updated_at",
        Meta::CreatedBy => "e.created_by",
        Meta::UpdatedBy => "e.updated_by",
        // What catalog-as-code source (an Ocean datasource, among others) holds the entity.
        Meta::Datasource => {
            "(SELECT a.source FROM applied_objects a WHERE a.kind = 'Entity' AND a.name = e.blueprint || '/' || e.identifier)"
        }
    }
}

/// An expression yielding a one-valued field as `kind` (DateTime as text).
pub(super) fn one_value(sql: &Sql, field: &Field, kind: Kind) -> Result<String> {
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
            (Dialect::Postgres, _)
                if matches!(meta, Meta::Title | Meta::CreatedBy | Meta::UpdatedBy | Meta::Datasource) =>
            {
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

pub(super) fn unreachable_field<T>() -> Result<T> {
    Err(StoreError::Other("a meta-property has no JSON location".into()))
}

/// `FROM`-able set of the elements of a list field, as a relation `j(value)`, and the element
/// expression as `kind`.
pub(super) fn elements(sql: &Sql, field: &Field, kind: Kind) -> Result<(String, String)> {
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

/// Shortest text the trigram indexes look up (one trigram).
const MIN_INDEXED_TEXT: usize = 3;
/// Candidates from SQLite's text index past which a search reads its ordered index instead: a
/// text found that often fills a page after a few thousand rows, while the candidates would all
/// have to be sorted.
pub const COMMON_TEXT: i64 = 2_000;

/// The column of a text rule the trigram indexes serve: titles and identifiers, 3+ characters.
fn indexed_text_column(field: &Field, needle: &str) -> Option<&'static str> {
    let column = match field {
        Field::Meta(Meta::Title) => "title",
        Field::Meta(Meta::Identifier) => "identifier",
        _ => return None,
    };
    (needle.chars().count() >= MIN_INDEXED_TEXT).then_some(column)
}

/// The FTS5 query of a text rule on `column` (a phrase: FTS5's trigram tokenizer matches it
/// anywhere, folding case, so its matches include the ASCII-lowercase ones).
fn fts_phrase(column: &str, needle: &str) -> String {
    format!("{column} : \"{}\"", needle.replace('"', "\"\""))
}

/// The FTS5 queries of a query's text rules on titles and identifiers (for SQLite searches to
/// ask how common each is).
pub fn text_phrases(query: &Query) -> Vec<String> {
    let mut phrases = Vec::new();
    query.clone().visit_rules_mut(&mut |rule| {
        if let Rule::Text { target, value, .. } = rule
            && let Some(column) = indexed_text_column(&target.field, value)
        {
            phrases.push(fts_phrase(column, value));
        }
    });
    phrases
}

/// How many entities an FTS5 query matches, counted up to [`COMMON_TEXT`].
pub fn text_frequency(phrase: &str) -> Sql {
    let mut sql = Sql::new(Dialect::Sqlite);
    let phrase = sql.bind(Param::Text(phrase.to_string()));
    sql.text = format!(
        "SELECT count(*) AS n FROM (SELECT 1 FROM entity_text WHERE entity_text MATCH {phrase} LIMIT {COMMON_TEXT})"
    );
    sql
}

/// A predicate that holds for every entity whose title or identifier holds `needle` (ASCII
/// lowercase), read from the trigram index on it; `None` for other fields, short needles and
/// (SQLite) texts a search reads in order instead.
fn text_candidates(sql: &mut Sql, field: &Field, needle: &str) -> Option<String> {
    let column = indexed_text_column(field, needle)?;
    Some(match sql.dialect {
        Dialect::Sqlite => {
            let phrase = fts_phrase(column, needle);
            if sql.common_text.contains(&phrase) {
                return None;
            }
            let phrase = sql.bind(Param::Text(phrase));
            format!("e.id IN (SELECT rowid FROM entity_text WHERE entity_text MATCH {phrase})")
        }
        // The index expressions of migration 0016 are `lower` of these values.
        Dialect::Postgres => {
            let value = one_value(sql, field, Kind::String).ok()?;
            let escaped = needle.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            let pattern = sql.bind(Param::Text(format!("%{escaped}%")));
            format!("lower({value}) LIKE {pattern}")
        }
    })
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
            // The trigram index finds the candidates (a superset); the comparison above decides.
            let p = match text_candidates(sql, &target.field, value) {
                Some(candidates) => format!("({p} AND {candidates})"),
                None => p,
            };
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
            (Meta::Datasource, _) => format!("({} IS NULL)", meta_column(*meta)),
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
pub(super) fn sort_expression(sql: &Sql, target: &Target) -> Result<String> {
    match target.shape {
        Shape::One(kind @ Kind::DateTime) => Ok(instant_of(sql, &one_value(sql, &target.field, kind)?, kind)),
        Shape::One(kind) => one_value(sql, &target.field, kind),
        _ => Err(StoreError::Other("only one-valued fields can be sorted on".into())),
    }
}

pub(super) fn float(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "REAL",
        Dialect::Postgres => "float8",
    }
}
