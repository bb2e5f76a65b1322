//! Computed properties: mirror and aggregation values are computed when an entity is written,
//! and the entities whose values read a changed entity are recomputed by background jobs that
//! the change enqueues in its own transaction (so no change is ever without its follow-up).

use std::collections::{BTreeSet, HashMap};

use portolan_model::blueprint::{AggregationFunction, AggregationProperty, CalculationBy, CalculationProperty};
use portolan_model::computed::{MirrorPath, aggregation_relations, resolve_mirror};
use portolan_model::query::{self, CompareOp, Field, Kind, Query, QueryContext, Rule, Scalar, Scope, Shape, Target};
use portolan_model::scorecard;
use portolan_model::{Blueprint, Entity, EntityRef, Millis};
use portolan_store::query_sql::{Aggregate, AggregatePlan, AggregateResult, SearchPlan, Sort};
use portolan_store::{Job, NewJob, Tx};
use serde_json::{Map, Value, json};

use std::sync::Arc;

use super::core::{Core, all_blueprints, change};
use super::scorecards::compiled_scorecards;
use crate::error::{Error, ErrorCode, Result};
use crate::sandbox::JqSandbox;

/// The job kind that recomputes one entity's computed properties and scorecards.
pub const RECOMPUTE: &str = "recompute";
/// Most entities a mirror's dependents are searched among, per hop.
const MAX_DEPENDENTS: u32 = 100_000;
/// Most entities a mirror through many-relations reads, per hop.
const MAX_MIRRORED: usize = 1_000;

/// Recompute jobs for entities.
pub(crate) fn recompute_jobs(entities: impl IntoIterator<Item = EntityRef>, now: Millis) -> Vec<NewJob> {
    entities
        .into_iter()
        .map(|e| NewJob {
            kind: RECOMPUTE.into(),
            dedupe_key: Some(format!("{RECOMPUTE}:{}/{}", e.blueprint, e.identifier)),
            payload: json!({"blueprint": e.blueprint, "identifier": e.identifier}),
            run_after: now,
        })
        .collect()
}

fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 { Value::from(value as i64) } else { Value::from(value) }
}

/// Computes the mirror, aggregation and calculation values of `entity` and puts them in its
/// properties; a calculation that fails leaves its property empty and says why in `diagnostics`.
pub(crate) async fn compute_properties(
    tx: &mut dyn Tx,
    blueprints: &[Blueprint],
    entity: &mut Entity,
    now: Millis,
    sandbox: Option<&JqSandbox>,
) -> Result<()> {
    let Some(blueprint) = blueprints.iter().find(|b| b.identifier == entity.blueprint) else { return Ok(()) };
    let lookup = |id: &str| blueprints.iter().find(|b| b.identifier == id).cloned();
    for (name, mirror) in &blueprint.mirror_properties {
        let value = match resolve_mirror(blueprint, &mirror.path, &lookup) {
            Ok(path) => follow_mirror(tx, entity, &path).await?,
            Err(_) => None,
        };
        set(&mut entity.properties, name, value);
    }
    for (name, aggregation) in &blueprint.aggregation_properties {
        let value = aggregate(tx, blueprints, entity, aggregation, now).await?;
        set(&mut entity.properties, name, value);
    }
    entity.diagnostics.clear();
    for (name, calculation) in &blueprint.calculation_properties {
        let value = match calculate(entity, calculation, sandbox).await {
            Ok(value) => value,
            Err(why) => {
                entity.diagnostics.insert(name.clone(), Value::from(format!("calculation failed: {why}")));
                None
            }
        };
        set(&mut entity.properties, name, value);
    }
    Ok(())
}

/// Runs a calculation over the entity document; the first output, checked against the type.
async fn calculate(
    entity: &Entity,
    calculation: &CalculationProperty,
    sandbox: Option<&JqSandbox>,
) -> std::result::Result<Option<Value>, String> {
    let sandbox = sandbox.ok_or("this server runs no jq sandbox")?;
    let document = serde_json::to_value(entity).map_err(|e| e.to_string())?;
    let value = sandbox.eval(&calculation.calculation, &document).await?.into_iter().next();
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) if !calculation.kind.admits(&value) => {
            Err(format!("gave {value}, which is not of type {}", calculation.kind.as_str()))
        }
        Some(Value::String(text)) if calculation.format.is_some_and(|f| f.check(&text).is_err()) => Err(format!(
            "gave {text:?}, which is not a valid {}",
            calculation.format.map(|f| f.as_str()).unwrap_or_default()
        )),
        Some(value) => Ok(Some(calculation.kind.normalize(value))),
    }
}

fn set(properties: &mut Map<String, Value>, name: &str, value: Option<Value>) {
    match value {
        Some(v) if !v.is_null() => {
            properties.insert(name.to_string(), v);
        }
        _ => {
            properties.remove(name);
        }
    }
}

/// The value a mirror reads: through one-relations the reached entity's; through a
/// many-relation the list of the values of every entity reached (lists flattened, nothing
/// skipped but empty values), at most `MAX_MIRRORED` of them.
async fn follow_mirror(tx: &mut dyn Tx, entity: &Entity, path: &MirrorPath) -> Result<Option<Value>> {
    let mut reached: Vec<Entity> = Vec::new();
    for (hop, (relation, target)) in path.hops.iter().enumerate() {
        let sources: Vec<&Entity> = if hop == 0 { vec![entity] } else { reached.iter().collect() };
        let mut next = Vec::new();
        for from in sources {
            for id in relation_targets(from.relations.get(relation)) {
                if next.len() == MAX_MIRRORED {
                    break;
                }
                next.extend(tx.entity(target, &id).await?);
            }
        }
        reached = next;
    }
    let read = |e: &Entity| match query::meta_field(&path.field) {
        Some((meta, _)) => query::raw(e, &Field::Meta(meta)),
        None => e.properties.get(&path.field).cloned(),
    };
    if !path.many {
        return Ok(reached.first().and_then(read));
    }
    let mut values = Vec::new();
    for value in reached.iter().filter_map(read) {
        match value {
            Value::Array(items) => values.extend(items),
            Value::Null => {}
            one => values.push(one),
        }
    }
    Ok((!values.is_empty()).then_some(Value::Array(values)))
}

async fn aggregate(
    tx: &mut dyn Tx,
    blueprints: &[Blueprint],
    entity: &Entity,
    aggregation: &AggregationProperty,
    now: Millis,
) -> Result<Option<Value>> {
    let Some(target) = blueprints.iter().find(|b| b.identifier == aggregation.target) else { return Ok(None) };
    let pointing: Vec<Query> = aggregation_relations(&entity.blueprint, target, aggregation.relation.as_deref())
        .into_iter()
        .map(|(relation, many)| {
            let shape = if many { Shape::Many(Kind::String) } else { Shape::One(Kind::String) };
            Query::Rule(Rule::Compare {
                target: Target { field: Field::Relation(relation), shape },
                op: CompareOp::Eq,
                value: Scalar::Str(entity.identifier.clone()),
                negate: false,
            })
        })
        .collect();
    let mut parts = vec![Query::Or(pointing)];
    if let Some(filter) = &aggregation.query {
        let scope = Scope::new(blueprints, Some(&target.identifier));
        match query::parse(filter, &scope, &QueryContext { now, ..QueryContext::default() }) {
            Ok(q) => parts.push(q),
            Err(_) => return Ok(None),
        }
    }
    let spec = &aggregation.calculation_spec;
    let property = || Target {
        field: Field::Property(spec.property.clone().unwrap_or_default()),
        shape: Shape::One(Kind::Number),
    };
    let period = spec.period();
    let function = match (spec.func, spec.calculation_by) {
        (AggregationFunction::Count, _) | (AggregationFunction::Average, CalculationBy::Entities) => Aggregate::Count,
        (AggregationFunction::Sum, _) => Aggregate::Sum(property()),
        (AggregationFunction::Average, _) if period.is_some() => Aggregate::Sum(property()),
        (AggregationFunction::Average, _) => Aggregate::Avg(property()),
        (AggregationFunction::Min, _) => Aggregate::Min(property()),
        (AggregationFunction::Max, _) => Aggregate::Max(property()),
        (AggregationFunction::Median, _) => Aggregate::Median(property()),
    };
    let sums = matches!(function, Aggregate::Count | Aggregate::Sum(_));
    let plan = AggregatePlan {
        blueprint: Some(target.identifier.clone()),
        query: Query::And(parts),
        function,
        required_relations: vec![],
    };
    let total = match tx.aggregate(&plan).await? {
        AggregateResult::Value(Some(v)) => v,
        AggregateResult::Value(None) if sums => 0.0,
        _ => return Ok(None),
    };
    let Some(period) = period else { return Ok(Some(number(total))) };
    let periods = match earliest(tx, blueprints, &plan, spec.measure_time_by()).await? {
        Some(since) => ((now - since).max(1) as f64 / period as f64).ceil(),
        None => 1.0,
    };
    Ok(Some(number(total / periods)))
}

/// The earliest `field` (a meta-property or a date-time property) among the entities `plan`
/// selects, in milliseconds.
async fn earliest(
    tx: &mut dyn Tx,
    blueprints: &[Blueprint],
    plan: &AggregatePlan,
    field: &str,
) -> Result<Option<Millis>> {
    let scope = Scope::new(blueprints, plan.blueprint.as_deref());
    let Ok(target) = scope.target(field, false) else { return Ok(None) };
    let dated = Query::Rule(Rule::Empty { target: target.clone(), negate: true });
    let search = SearchPlan {
        blueprint: plan.blueprint.clone(),
        query: Query::And(vec![plan.query.clone(), dated]),
        sort: Some(Sort { target: target.clone(), descending: false }),
        after: None,
        limit: 1,
        required_relations: vec![],
    };
    let first = tx.search(&search).await?.into_iter().next();
    Ok(first.and_then(|e| match query::raw(&e, &target.field)? {
        Value::String(text) => portolan_model::blueprint::parse_date_time(&text),
        number => number.as_i64(),
    }))
}

/// The entities whose computed values read `changed` (as it was `before` and is `after`), apart
/// from `changed` itself.
pub(crate) async fn dependents(
    tx: &mut dyn Tx,
    blueprints: &[Blueprint],
    before: Option<&Entity>,
    after: Option<&Entity>,
) -> Result<BTreeSet<EntityRef>> {
    let Some(changed) = after.or(before) else { return Ok(BTreeSet::new()) };
    let Some(changed_bp) = blueprints.iter().find(|b| b.identifier == changed.blueprint) else {
        return Ok(BTreeSet::new());
    };
    let mut found = BTreeSet::new();
    // Aggregations over the changed entity's blueprint: the entities it points (or pointed) at.
    for owner in blueprints {
        for aggregation in owner.aggregation_properties.values().filter(|a| a.target == changed.blueprint) {
            for (relation, _) in aggregation_relations(&owner.identifier, changed_bp, aggregation.relation.as_deref()) {
                for version in [before, after].into_iter().flatten() {
                    for id in relation_targets(version.relations.get(&relation)) {
                        found.insert(EntityRef { blueprint: owner.identifier.clone(), identifier: id });
                    }
                }
            }
        }
    }
    // Mirrors whose path passes through the changed entity: walk the path backwards.
    let lookup = |id: &str| blueprints.iter().find(|b| b.identifier == id).cloned();
    let mut referrers_cache: HashMap<EntityRef, Vec<portolan_store::Referrer>> = HashMap::new();
    for owner in blueprints {
        for mirror in owner.mirror_properties.values() {
            let Ok(path) = resolve_mirror(owner, &mirror.path, &lookup) else { continue };
            for (hop, (_, reached)) in path.hops.iter().enumerate() {
                if *reached != changed.blueprint {
                    continue;
                }
                let mut frontier = BTreeSet::from([changed.entity_ref()]);
                for back in (0..=hop).rev() {
                    let relation = &path.hops[back].0;
                    let source = if back == 0 { owner.identifier.as_str() } else { path.hops[back - 1].1.as_str() };
                    let mut next = BTreeSet::new();
                    for target in &frontier {
                        if !referrers_cache.contains_key(target) {
                            let referrers = tx.referrers(target, MAX_DEPENDENTS).await?;
                            referrers_cache.insert(target.clone(), referrers);
                        }
                        for r in referrers_cache.get(target).into_iter().flatten() {
                            if r.via == *relation && r.source.blueprint == source {
                                next.insert(r.source.clone());
                            }
                        }
                    }
                    frontier = next;
                }
                found.extend(frontier);
            }
        }
    }
    found.remove(&changed.entity_ref());
    Ok(found)
}

fn relation_targets(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => vec![],
    }
}

/// Computed properties and scorecard results: computed on write, recomputed by background jobs.
#[derive(Clone)]
pub struct Computed {
    core: Core,
    jq: Option<Arc<JqSandbox>>,
}

impl Computed {
    pub fn new(core: Core, jq: Option<Arc<JqSandbox>>) -> Self {
        Self { core, jq }
    }
}

impl Computed {
    /// Runs recompute jobs in one transaction (one commit for the batch): recomputes each entity
    /// and, if anything changed, queues the entities that read it. The jobs' completion commits
    /// with their effects; if any lease was lost, nothing is committed.
    /// Computes an entity's mirror, aggregation and calculation values (see [`compute_properties`]).
    pub(crate) async fn compute_properties(
        &self,
        tx: &mut dyn Tx,
        blueprints: &[Blueprint],
        entity: &mut Entity,
        now: Millis,
    ) -> Result<()> {
        compute_properties(tx, blueprints, entity, now, self.jq.as_deref()).await
    }

    pub async fn run_recomputes(&self, jobs: &[&Job], owner: &str) -> Result<()> {
        let mut tx = self.core.store().write().await?;
        let blueprints = all_blueprints(tx.as_mut()).await?;
        let now = self.core.now();
        let target = |job: &Job| EntityRef {
            blueprint: job.payload["blueprint"].as_str().unwrap_or_default().to_string(),
            identifier: job.payload["identifier"].as_str().unwrap_or_default().to_string(),
        };
        // In the order entity writers lock rows (see the PostgreSQL store), so a batch and a write
        // over the same entities cannot deadlock.
        let mut jobs: Vec<(&Job, EntityRef)> = jobs.iter().map(|job| (*job, target(job))).collect();
        jobs.sort_by(|(_, a), (_, b)| (&a.blueprint, &a.identifier).cmp(&(&b.blueprint, &b.identifier)));
        for (job, target) in jobs {
            self.recompute(tx.as_mut(), &blueprints, &target, now).await?;
            if !tx.complete_job(job.id, owner).await? {
                return Err(Error::new(ErrorCode::Conflict, format!("lost the lease of job {}", job.id)));
            }
        }
        tx.commit().await?;
        self.core.wake_worker();
        Ok(())
    }

    async fn recompute(
        &self,
        tx: &mut dyn Tx,
        blueprints: &[Blueprint],
        target: &EntityRef,
        now: Millis,
    ) -> Result<()> {
        let Some(before) = tx.entity(&target.blueprint, &target.identifier).await? else { return Ok(()) };
        let Some(blueprint) = blueprints.iter().find(|b| b.identifier == target.blueprint) else { return Ok(()) };
        let mut after = before.clone();
        compute_properties(tx, blueprints, &mut after, now, self.jq.as_deref()).await?;
        let scorecards = compiled_scorecards(tx, blueprint, now).await?;
        after.scorecards = scorecard::score(&scorecards, &after);
        let changed = after.properties != before.properties
            || after.scorecards != before.scorecards
            || after.diagnostics != before.diagnostics;
        if changed
            && tx.put_computed(target, before.version, &after.properties, &after.scorecards, &after.diagnostics).await?
        {
            tx.publish(&change("entity.computed", target, Some(before.version))).await?;
            super::notifications::queue_drops(tx, Some(&before), &after, now).await?;
            let next = dependents(tx, blueprints, Some(&before), Some(&after)).await?;
            tx.enqueue_jobs(&recompute_jobs(next, now)).await?;
        }
        Ok(())
    }
}
