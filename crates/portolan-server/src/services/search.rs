//! Search and aggregation over the catalog, in the query language.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portolan_model::Millis;
use portolan_model::history::Version;
use portolan_model::query::{self, Query, QueryContext, Scope};
use portolan_model::scorecard::Scorecard;
use portolan_model::{Blueprint, Entity, EntityRef, FieldError, FieldErrors};
use portolan_store::Tx;
use portolan_store::query_sql::{self, Aggregate, AggregatePlan, AggregateResult, Position, SearchPlan, Sort};
use serde::Deserialize;
use serde_json::Value;

use super::actor::Actor;
use super::core::{Core, all_blueprints};
use super::permissions::{Permissions, required_relations};
use crate::error::{Error, ErrorCode, Result};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1_000;

/// A search: a query (all entities when absent), an order, a page.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// `{"combinator": "and"|"or", "rules": [...]}`.
    #[schema(value_type = Option<Object>)]
    pub query: Option<Value>,
    #[serde(default)]
    pub sort: Option<SortRequest>,
    /// 1 to 1000, default 100.
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// Only these fields of each entity (`identifier`, `properties`, `properties.language`, ...).
    #[serde(default)]
    pub include: Vec<String>,
    /// Every field but these.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The catalog as it was at this time (RFC 3339), read back from the audit log.
    #[serde(rename = "asOf")]
    pub as_of: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SortRequest {
    /// A property or meta-property (`$title`, `$createdAt`, ...).
    pub property: String,
    #[serde(default)]
    pub order: SortOrder,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateRequest {
    #[schema(value_type = Option<Object>)]
    pub query: Option<Value>,
    /// Only this blueprint's entities (otherwise all).
    pub blueprint: Option<String>,
    /// `count`, `sum`, `avg`, `min`, `max`, `median`, or `countBy` (entities per value). Port's
    /// name for it, `func`, is taken too.
    #[serde(alias = "func")]
    pub function: String,
    /// The property (or meta-property) the function reads.
    pub property: Option<String>,
    /// For `countBy`: a relation instead of a property.
    pub relation: Option<String>,
    /// For `countBy`: a scorecard, to count entities per level.
    pub scorecard: Option<String>,
    /// Over the catalog as it was at this time (RFC 3339), read back from the audit log.
    #[serde(rename = "asOf")]
    pub as_of: Option<String>,
}

/// One page of a search.
pub struct Page {
    pub entities: Vec<Entity>,
    pub next: Option<String>,
}

/// Prefixes the paths of query errors with where the query sits in the request.
fn nested(errors: FieldErrors, prefix: &str) -> Error {
    Error::invalid(FieldErrors(
        errors.0.into_iter().map(|e| FieldError::new(format!("{prefix}{}", e.path), e.message)).collect(),
    ))
}

/// Searches and aggregates over the catalog, narrowed to what the caller may read.
#[derive(Clone)]
pub struct Search {
    core: Core,
    permissions: Permissions,
}

impl Search {
    pub fn new(core: Core, permissions: Permissions) -> Self {
        Self { core, permissions }
    }
}

impl Search {
    /// The context user-relative query values read: the caller and their teams.
    fn query_context(&self, actor: &Actor) -> QueryContext {
        let reader = actor.reader();
        let mut context = super::permissions::user_context(self.core.now(), reader);
        context.user = Some(reader.map_or(&actor.id, |u| &u.id).clone());
        context
    }

    /// Which of `identifiers` (entities of `blueprint`) a query admits: action conditions and
    /// entity-picker datasets.
    pub(crate) async fn admitted(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        blueprint: &str,
        query: &Value,
        identifiers: &[String],
    ) -> Result<HashSet<String>> {
        if identifiers.is_empty() {
            return Ok(HashSet::new());
        }
        let scoped = self.scoped(tx, Some(blueprint)).await?;
        let scope = scoped.scope(Some(blueprint));
        let parsed = parse_query(Some(query), &scope, &self.query_context(actor), "")?;
        self.permissions.admitted_query(tx, &scoped.blueprints, blueprint, parsed, identifiers).await
    }

    /// Every entity of a blueprint the actor may read, all pages.
    pub async fn every_entity(&self, actor: &Actor, blueprint: &str) -> Result<Vec<Entity>> {
        self.every_match(actor, blueprint, None).await
    }

    /// Every entity of a blueprint that `query` admits and the actor may read, all pages.
    pub async fn every_match(&self, actor: &Actor, blueprint: &str, query: Option<Value>) -> Result<Vec<Entity>> {
        let mut entities = Vec::new();
        let mut cursor = None;
        loop {
            let request =
                SearchRequest { query: query.clone(), limit: Some(MAX_LIMIT), cursor, ..SearchRequest::default() };
            let page = self.search(actor, Some(blueprint), request).await?;
            entities.extend(page.entities);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(entities),
            }
        }
    }

    pub async fn search(&self, actor: &Actor, blueprint: Option<&str>, request: SearchRequest) -> Result<Page> {
        let limit = request.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid_at("/limit", format!("limit must be between 1 and {MAX_LIMIT}")));
        }
        let at = self.as_of(request.as_of.as_deref())?;
        let mut tx = self.core.store().read().await?;
        let scoped = self.scoped(tx.as_mut(), blueprint).await?;
        let scope = scoped.scope(blueprint);
        let query = parse_query(request.query.as_ref(), &scope, &self.query_context(actor), "/query")?;
        let query = self.restrict(tx.as_mut(), actor, blueprint, &scoped.blueprints, query).await?;
        let sort = match &request.sort {
            None => None,
            Some(s) => {
                let target = scope.target(&s.property, false).map_err(|m| Error::invalid_at("/sort/property", m))?;
                if !matches!(target.shape, query::Shape::One(_)) {
                    return Err(Error::invalid_at("/sort/property", "only one-valued fields can be sorted on"));
                }
                Some(Sort { target, descending: matches!(s.order, SortOrder::Desc) })
            }
        };
        let after = request.cursor.as_deref().map(decode_cursor).transpose()?;
        if let Some(position) = &after {
            check_cursor(position, sort.as_ref())?;
        }
        let plan = SearchPlan {
            blueprint: blueprint.map(str::to_string),
            query,
            sort,
            after,
            limit,
            required_relations: required_relations(&scoped.blueprints),
        };
        let entities = match at {
            None => tx.search(&plan).await?,
            Some(at) => {
                let past = past_matches(tx.as_mut(), &scoped, blueprint, &plan.query, at).await?;
                let stored =
                    tx.search(&SearchPlan { query: unchanged_since(plan.query.clone(), at), ..plan.clone() }).await?;
                query_sql::merge_page(stored, past, plan.sort.as_ref(), blueprint.is_some(), plan.after.as_ref(), limit)
            }
        };
        let next = (entities.len() as u32 == limit)
            .then(|| entities.last().map(|last| encode_cursor(&Position::after(last, plan.sort.as_ref()))))
            .flatten();
        Ok(Page { entities, next })
    }

    pub async fn aggregate(&self, actor: &Actor, request: AggregateRequest) -> Result<AggregateResult> {
        let at = self.as_of(request.as_of.as_deref())?;
        let mut tx = self.core.store().read().await?;
        let blueprint = request.blueprint.as_deref();
        let scoped = self.scoped(tx.as_mut(), blueprint).await?;
        let scope = scoped.scope(blueprint);
        let query = parse_query(request.query.as_ref(), &scope, &self.query_context(actor), "/query")?;
        let query = self.restrict(tx.as_mut(), actor, blueprint, &scoped.blueprints, query).await?;
        let target = |scope: &Scope| -> Result<query::Target> {
            match (&request.property, &request.relation, &request.scorecard) {
                (Some(p), None, None) => scope.target(p, false).map_err(|m| Error::invalid_at("/property", m)),
                (None, Some(r), None) => scope.target(r, true).map_err(|m| Error::invalid_at("/relation", m)),
                (None, None, Some(id)) if scope.scorecards.iter().any(|s| s.identifier == *id) => Ok(query::Target {
                    field: query::Field::Scorecard(id.clone()),
                    shape: query::Shape::One(query::Kind::Number),
                }),
                (None, None, Some(id)) => {
                    Err(Error::invalid_at("/scorecard", format!("no scorecard '{id}' on the searched blueprints")))
                }
                _ => Err(Error::invalid_at(
                    "/property",
                    format!("'{}' needs one property, relation or scorecard", request.function),
                )),
            }
        };
        let function = match request.function.as_str() {
            "count" => Aggregate::Count,
            "countBy" => Aggregate::CountBy(target(&scope)?),
            numeric @ ("sum" | "avg" | "min" | "max" | "median") => {
                let t = target(&scope)?;
                if !matches!(t.shape, query::Shape::One(query::Kind::Number | query::Kind::Timestamp)) {
                    return Err(Error::invalid_at("/property", format!("'{numeric}' needs a number property")));
                }
                match numeric {
                    "sum" => Aggregate::Sum(t),
                    "avg" => Aggregate::Avg(t),
                    "min" => Aggregate::Min(t),
                    "max" => Aggregate::Max(t),
                    _ => Aggregate::Median(t),
                }
            }
            other => {
                return Err(Error::invalid_at(
                    "/function",
                    format!("unknown function '{other}': use count, sum, avg, min, max, median or countBy"),
                ));
            }
        };
        let plan = AggregatePlan {
            blueprint: blueprint.map(str::to_string),
            query,
            function,
            required_relations: required_relations(&scoped.blueprints),
        };
        let result = match at {
            None => tx.aggregate(&plan).await?,
            Some(at) => past_aggregate(tx.as_mut(), &scoped, plan, at).await?,
        };
        // Scorecard levels are stored as indexes; answer with their titles.
        if let (Some(id), AggregateResult::Groups(groups)) = (&request.scorecard, &result)
            && let Some(card) = scope.scorecards.iter().find(|s| s.identifier == *id)
        {
            let titled = groups
                .iter()
                .map(|(key, n)| {
                    let title =
                        key.as_f64().and_then(|i| card.levels.get(i as usize)).map(|l| Value::from(l.title.clone()));
                    (title.unwrap_or(Value::Null), *n)
                })
                .collect();
            return Ok(AggregateResult::Groups(titled));
        }
        Ok(result)
    }

    /// The time an `asOf` names, which must not be in the future.
    fn as_of(&self, text: Option<&str>) -> Result<Option<Millis>> {
        let Some(text) = text else { return Ok(None) };
        let at = crate::extract::time_at(text, "/asOf")?;
        portolan_model::history::check_as_of(at, self.core.now()).map_err(|m| Error::invalid_at("/asOf", m))?;
        Ok(Some(at))
    }

    /// `query`, narrowed to what the actor may read. Relations are followed only from and to
    /// what the actor may read: a `relatedTo` from an entity they may not read admits nothing,
    /// as if it did not exist, and a `matchAny` path ends only at entities they may read.
    pub(crate) async fn restrict(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        blueprint: Option<&str>,
        blueprints: &[Blueprint],
        mut query: Query,
    ) -> Result<Query> {
        if query.follows_relations()
            && let Some(readable) = self.permissions.read_filter(tx, actor, None, blueprints).await?
        {
            let starts = query.related_starts();
            let readable_starts = self.permissions.readable_refs(tx, actor, &starts).await;
            query.visit_rules_mut(&mut |rule| match rule {
                query::Rule::RelatedTo { blueprint, targets, .. } => targets.retain(|t| {
                    readable_starts.contains(&EntityRef { blueprint: blueprint.clone(), identifier: t.clone() })
                }),
                query::Rule::MatchAny { query: ends, .. } => {
                    let user_query = std::mem::replace(ends.as_mut(), Query::And(vec![]));
                    **ends = Query::And(vec![user_query, readable.clone()]);
                }
                _ => {}
            });
        }
        Ok(match self.permissions.read_filter(tx, actor, blueprint, blueprints).await? {
            None => query,
            Some(filter) => Query::And(vec![query, filter]),
        })
    }

    /// Every blueprint, and the scorecards of the searched ones, after checking that
    /// `blueprint` (if given) exists.
    async fn scoped(&self, tx: &mut dyn Tx, blueprint: Option<&str>) -> Result<Scoped> {
        let blueprints = all_blueprints(tx).await?;
        if let Some(id) = blueprint
            && !blueprints.iter().any(|b| b.identifier == id)
        {
            return Err(Error::not_found(format!("blueprint '{id}'")));
        }
        let mut scorecards = Vec::new();
        for bp in blueprints.iter().filter(|b| blueprint.is_none_or(|s| s == b.identifier)) {
            scorecards.extend(tx.scorecards(&bp.identifier).await?.into_iter().map(|r| r.scorecard));
        }
        Ok(Scoped { blueprints, scorecards })
    }
}

/// `query`, for the entities not written since `at`: every write moves `updatedAt`, so these are
/// as they were then.
fn unchanged_since(query: Query, at: Millis) -> Query {
    let updated_at = query::Target {
        field: query::Field::Meta(query::Meta::UpdatedAt),
        shape: query::Shape::One(query::Kind::Timestamp),
    };
    let unchanged = query::Rule::Compare {
        target: updated_at,
        op: query::CompareOp::Le,
        value: query::Scalar::Num(at as f64),
        negate: false,
    };
    Query::And(vec![query, Query::Rule(unchanged)])
}

/// The entities written since `at` (of `blueprint`, or of every blueprint that still exists), as
/// they were at `at`, that `query` admits. Relation rules are answered by the relations as they
/// are now: the log keeps each entity's past, not the graph's.
async fn past_matches(
    tx: &mut dyn Tx,
    scoped: &Scoped,
    blueprint: Option<&str>,
    query: &Query,
    at: Millis,
) -> Result<Vec<Entity>> {
    let exists = |bp: &str| scoped.blueprints.iter().any(|b| b.identifier == bp);
    let past: Vec<Entity> = tx
        .entity_records_at(blueprint, at)
        .await?
        .iter()
        .filter_map(|record| match Version::after(&record.entry) {
            Version::Present(entity) if exists(&entity.blueprint) => Some(*entity),
            _ => None,
        })
        .collect();
    let mut relation_rules = Vec::new();
    collect_relation_rules(query, &mut relation_rules);
    let mut graph = RelationsNow { admitted: Vec::new() };
    for rule in relation_rules {
        let admitted = admitted_now(tx, scoped, rule, &past).await?;
        graph.admitted.push((rule, admitted));
    }
    Ok(past.into_iter().filter(|e| query.matches(e, &graph)).collect())
}

fn collect_relation_rules<'q>(query: &'q Query, out: &mut Vec<&'q query::Rule>) {
    match query {
        Query::And(parts) | Query::Or(parts) => parts.iter().for_each(|q| collect_relation_rules(q, out)),
        Query::Rule(rule @ (query::Rule::RelatedTo { .. } | query::Rule::MatchAny { .. })) => out.push(rule),
        Query::Rule(_) => {}
    }
}

/// Which of `entities` a relation rule admits in the catalog as it is now.
async fn admitted_now(
    tx: &mut dyn Tx,
    scoped: &Scoped,
    rule: &query::Rule,
    entities: &[Entity],
) -> Result<HashSet<EntityRef>> {
    let mut by_blueprint: std::collections::BTreeMap<&str, Vec<query::Scalar>> = Default::default();
    for e in entities {
        by_blueprint.entry(&e.blueprint).or_default().push(query::Scalar::Str(e.identifier.clone()));
    }
    let mut admitted = HashSet::new();
    for (blueprint, identifiers) in by_blueprint {
        for chunk in identifiers.chunks(MAX_LIMIT as usize) {
            let among = query::Rule::In {
                target: query::Target {
                    field: query::Field::Meta(query::Meta::Identifier),
                    shape: query::Shape::One(query::Kind::String),
                },
                values: chunk.to_vec(),
                negate: false,
            };
            let plan = SearchPlan {
                blueprint: Some(blueprint.to_string()),
                query: Query::And(vec![Query::Rule(rule.clone()), Query::Rule(among)]),
                sort: None,
                after: None,
                limit: MAX_LIMIT,
                required_relations: required_relations(&scoped.blueprints),
            };
            admitted.extend(tx.search(&plan).await?.iter().map(Entity::entity_ref));
        }
    }
    Ok(admitted)
}

/// Relation rules answered ahead, for the entities at hand.
struct RelationsNow<'q> {
    admitted: Vec<(&'q query::Rule, HashSet<EntityRef>)>,
}

impl query::RelationGraph for RelationsNow<'_> {
    fn admits(&self, rule: &query::Rule, entity: &EntityRef) -> bool {
        self.admitted.iter().any(|(r, set)| std::ptr::eq(*r, rule) && set.contains(entity))
    }
}

/// An aggregate over the catalog as it was at `at`: the store's over the entities unchanged since,
/// with the past versions of the others added.
async fn past_aggregate(tx: &mut dyn Tx, scoped: &Scoped, plan: AggregatePlan, at: Millis) -> Result<AggregateResult> {
    let no_median = || Error::invalid_at("/asOf", "a median cannot be read as of a past time: use avg, min or max");
    if matches!(plan.function, Aggregate::Median(_)) {
        return Err(no_median());
    }
    let past = past_matches(tx, scoped, plan.blueprint.as_deref(), &plan.query, at).await?;
    let unchanged = AggregatePlan { query: unchanged_since(plan.query.clone(), at), ..plan.clone() };
    let stored = tx.aggregate(&unchanged).await?;
    // An average adds up only with how many values it averaged.
    let stored_values = match &plan.function {
        Aggregate::Avg(target) => {
            let has_value = query::Rule::Empty { target: target.clone(), negate: true };
            let counted = AggregatePlan {
                query: Query::And(vec![unchanged.query.clone(), Query::Rule(has_value)]),
                function: Aggregate::Count,
                ..unchanged.clone()
            };
            match tx.aggregate(&counted).await? {
                AggregateResult::Value(n) => n.unwrap_or(0.0) as u64,
                AggregateResult::Groups(_) => 0,
            }
        }
        _ => 0,
    };
    query_sql::add_past(&plan.function, stored, stored_values, &past).ok_or_else(no_median)
}

/// What a query is checked against: every blueprint, and the scorecards of the searched ones.
struct Scoped {
    blueprints: Vec<Blueprint>,
    scorecards: Vec<Scorecard>,
}

impl Scoped {
    fn scope(&self, blueprint: Option<&str>) -> Scope<'_> {
        let mut scope = Scope::new(&self.blueprints, blueprint);
        scope.scorecards = self.scorecards.iter().collect();
        scope
    }
}

fn parse_query(document: Option<&Value>, scope: &Scope, context: &QueryContext, path: &str) -> Result<Query> {
    match document {
        None | Some(Value::Null) => Ok(Query::And(vec![])),
        Some(document) => query::parse(document, scope, context).map_err(|errors| nested(errors, path)),
    }
}

/// A cursor's sort value must have the kind of the sort field (a cursor from another search would
/// otherwise compare text with numbers in the database).
fn check_cursor(position: &Position, sort: Option<&Sort>) -> Result<()> {
    let fits = match (&position.value, sort.and_then(|s| s.target.shape.kind())) {
        (None | Some(Value::Null), _) => true,
        (Some(_), None) => false,
        (Some(value), Some(kind)) => matches!(
            (value, kind),
            (Value::String(_), query::Kind::String | query::Kind::DateTime)
                | (Value::Number(_), query::Kind::Number | query::Kind::Timestamp)
                | (Value::Bool(_), query::Kind::Boolean)
        ),
    };
    if fits {
        Ok(())
    } else {
        Err(Error::new(ErrorCode::InvalidQuery, "the cursor belongs to a search with another sort"))
    }
}

fn encode_cursor(position: &Position) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

fn decode_cursor(cursor: &str) -> Result<Position> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| Error::new(ErrorCode::InvalidQuery, "cursor is not one this server gave out"))
}

/// Keeps only the `include`d fields of an entity document, then drops the `exclude`d ones.
/// A field is a top-level key (`title`) or one property or relation (`properties.language`).
pub fn project(mut document: Value, include: &[String], exclude: &[String]) -> Value {
    let Value::Object(map) = &mut document else { return document };
    if !include.is_empty() {
        let mut kept = serde_json::Map::new();
        for field in include {
            match field.split_once('.') {
                Some((group, key)) => {
                    if let Some(value) = map.get(group).and_then(|g| g.get(key)) {
                        let entry = kept.entry(group.to_string()).or_insert_with(|| Value::Object(Default::default()));
                        if let Value::Object(group_map) = entry {
                            group_map.insert(key.to_string(), value.clone());
                        }
                    }
                }
                None => {
                    if let Some(value) = map.get(field) {
                        kept.insert(field.clone(), value.clone());
                    }
                }
            }
        }
        *map = kept;
    }
    for field in exclude {
        match field.split_once('.') {
            Some((group, key)) => {
                if let Some(Value::Object(group_map)) = map.get_mut(group) {
                    group_map.remove(key);
                }
            }
            None => {
                map.remove(field);
            }
        }
    }
    document
}
