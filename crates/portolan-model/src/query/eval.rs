//! Evaluating a parsed query in memory, against one entity and a graph of relations.

use crate::Millis;
use crate::blueprint::{Blueprint, parse_date_time};
use crate::entity::{Entity, EntityRef};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};

use super::*;

/// Answers whether a relation rule (`relatedTo`, `matchAny`) admits an entity.
pub trait RelationGraph {
    fn admits(&self, rule: &Rule, entity: &EntityRef) -> bool;
}

/// For evaluating a query on one entity alone (scorecard rules as it is written, permission
/// conditions on an entity about to be created): relation rules see no related entities.
pub struct NoGraph;

impl RelationGraph for NoGraph {
    fn admits(&self, _: &Rule, _: &EntityRef) -> bool {
        false
    }
}

impl Query {
    /// Calls `f` on every rule, those inside `matchAny` first and then the `matchAny` itself, so
    /// that what `f` adds to a rule is not visited again.
    pub fn visit_rules_mut(&mut self, f: &mut dyn FnMut(&mut Rule)) {
        match self {
            Query::And(rules) | Query::Or(rules) => rules.iter_mut().for_each(|q| q.visit_rules_mut(f)),
            Query::Rule(rule) => {
                if let Rule::MatchAny { query, .. } = rule {
                    query.visit_rules_mut(f);
                }
                f(rule);
            }
        }
    }

    /// Whether the query has no rule that could leave an entity out (`and` of nothing, at any
    /// depth).
    pub fn selects_everything(&self) -> bool {
        matches!(self, Query::And(parts) if parts.iter().all(Query::selects_everything))
    }

    /// Whether the query follows relations (`relatedTo`, `matchAny`) anywhere.
    pub fn follows_relations(&self) -> bool {
        match self {
            Query::And(rules) | Query::Or(rules) => rules.iter().any(Query::follows_relations),
            Query::Rule(rule) => matches!(rule, Rule::RelatedTo { .. } | Rule::MatchAny { .. }),
        }
    }

    /// The entities every `relatedTo` rule starts from.
    pub fn related_starts(&self) -> Vec<EntityRef> {
        let mut starts = Vec::new();
        self.collect_related_starts(&mut starts);
        starts
    }

    fn collect_related_starts(&self, out: &mut Vec<EntityRef>) {
        match self {
            Query::And(rules) | Query::Or(rules) => rules.iter().for_each(|q| q.collect_related_starts(out)),
            Query::Rule(Rule::RelatedTo { blueprint, targets, .. }) => {
                out.extend(targets.iter().map(|t| EntityRef { blueprint: blueprint.clone(), identifier: t.clone() }))
            }
            Query::Rule(Rule::MatchAny { query, .. }) => query.collect_related_starts(out),
            Query::Rule(_) => {}
        }
    }

    pub fn matches(&self, entity: &Entity, graph: &dyn RelationGraph) -> bool {
        match self {
            Query::And(rules) => rules.iter().all(|q| q.matches(entity, graph)),
            Query::Or(rules) => rules.iter().any(|q| q.matches(entity, graph)),
            Query::Rule(rule) => rule.matches(entity, graph),
        }
    }
}

impl Rule {
    fn matches(&self, entity: &Entity, graph: &dyn RelationGraph) -> bool {
        match self {
            Rule::Compare { target, op, value, negate } => {
                negate ^ values(entity, target).iter().any(|v| compare(v, *op, value, target.shape))
            }
            Rule::Text { target, op, value, negate } => {
                negate
                    ^ values(entity, target).iter().any(|v| {
                        let Some(text) = v.as_str() else { return false };
                        let text = text.to_ascii_lowercase();
                        match op {
                            TextOp::Contains => text.contains(value.as_str()),
                            TextOp::BeginsWith => text.starts_with(value.as_str()),
                            TextOp::EndsWith => text.ends_with(value.as_str()),
                        }
                    })
            }
            Rule::In { target, values: wanted, negate } => {
                negate
                    ^ values(entity, target)
                        .iter()
                        .any(|v| wanted.iter().any(|w| compare(v, CompareOp::Eq, w, target.shape)))
            }
            Rule::Empty { target, negate } => negate ^ is_empty(raw(entity, &target.field).as_ref()),
            Rule::Between { target, from, to, negate } => {
                negate
                    ^ values(entity, target)
                        .iter()
                        .filter_map(|v| instant(v, target.shape))
                        .any(|t| *from <= t && t <= *to)
            }
            Rule::Timer { target, expired, now } => values(entity, target)
                .iter()
                .filter_map(|v| instant(v, target.shape))
                .any(|t| if *expired { t < *now } else { t >= *now }),
            Rule::RelatedTo { .. } | Rule::MatchAny { .. } => graph.admits(self, &entity.entity_ref()),
        }
    }
}

/// The raw value of a field on an entity.
pub fn raw(entity: &Entity, field: &Field) -> Option<Value> {
    match field {
        Field::Property(name) => entity.properties.get(name).cloned(),
        Field::Relation(name) => entity.relations.get(name).cloned(),
        Field::Meta(meta) => Some(match meta {
            Meta::Identifier => Value::from(entity.identifier.clone()),
            Meta::Title => return entity.title.clone().map(Value::from),
            Meta::Team => Value::from(entity.team.clone()),
            Meta::Blueprint => Value::from(entity.blueprint.clone()),
            Meta::CreatedAt => Value::from(entity.created_at),
            Meta::UpdatedAt => Value::from(entity.updated_at),
            Meta::CreatedBy => Value::from(entity.created_by.clone()),
            Meta::UpdatedBy => Value::from(entity.updated_by.clone()),
            Meta::Datasource => return None,
        }),
        Field::Scorecard(id) => entity.scorecards.get(id).and_then(|r| r.get("levelIndex")).cloned(),
    }
}

/// The values a rule compares: the one value, or each element of a list.
fn values(entity: &Entity, target: &Target) -> Vec<Value> {
    match (raw(entity, &target.field), target.shape) {
        (None | Some(Value::Null), _) => vec![],
        (Some(Value::Array(items)), Shape::Many(_)) => items,
        (Some(one), _) => vec![one],
    }
}

fn is_empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

fn instant(value: &Value, shape: Shape) -> Option<Millis> {
    match (value, shape.kind()) {
        (Value::String(s), Some(Kind::DateTime)) => parse_date_time(s),
        (Value::Number(n), Some(Kind::Timestamp)) => n.as_i64(),
        _ => None,
    }
}

fn compare(value: &Value, op: CompareOp, wanted: &Scalar, shape: Shape) -> bool {
    use std::cmp::Ordering;
    let ordering = match (value, wanted, shape.kind()) {
        (Value::String(_), Scalar::Num(w), Some(Kind::DateTime)) => {
            instant(value, shape).and_then(|t| (t as f64).partial_cmp(w))
        }
        (Value::String(s), Scalar::Str(w), _) => Some(s.as_bytes().cmp(w.as_bytes())),
        (Value::Number(n), Scalar::Num(w), _) => n.as_f64().and_then(|n| n.partial_cmp(w)),
        (Value::Bool(b), Scalar::Bool(w), _) => Some(b.cmp(w)),
        _ => None,
    };
    match (ordering, op) {
        (None, _) => false,
        (Some(o), CompareOp::Eq) => o == Ordering::Equal,
        (Some(o), CompareOp::Gt) => o == Ordering::Greater,
        (Some(o), CompareOp::Ge) => o != Ordering::Less,
        (Some(o), CompareOp::Lt) => o == Ordering::Less,
        (Some(o), CompareOp::Le) => o != Ordering::Greater,
    }
}

/// A relation graph over entities held in memory (for evaluating conditions on a handful of
/// entities, and as the reference the SQL translation is tested against).
pub struct MemoryGraph {
    /// Outgoing relation edges: (source, relation) → targets.
    edges: HashMap<EntityRef, Vec<(String, EntityRef)>>,
    required: HashSet<(String, String)>,
    entities: Vec<Entity>,
}

impl MemoryGraph {
    pub fn new(blueprints: &[Blueprint], entities: &[Entity]) -> Self {
        let by_id: HashMap<&str, &Blueprint> = blueprints.iter().map(|b| (b.identifier.as_str(), b)).collect();
        let mut edges: HashMap<EntityRef, Vec<(String, EntityRef)>> = HashMap::new();
        for e in entities {
            let Some(bp) = by_id.get(e.blueprint.as_str()) else { continue };
            for (name, value) in &e.relations {
                let Some(def) = bp.relations.get(name) else { continue };
                let targets: Vec<&str> = match value {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                for t in targets {
                    let target = EntityRef { blueprint: def.target.clone(), identifier: t.to_string() };
                    edges.entry(e.entity_ref()).or_default().push((name.clone(), target));
                }
            }
        }
        let required = blueprints
            .iter()
            .flat_map(|b| {
                b.relations.iter().filter(|(_, d)| d.required).map(|(n, _)| (b.identifier.clone(), n.clone()))
            })
            .collect();
        MemoryGraph { edges, required, entities: entities.to_vec() }
    }

    fn edge_ok(&self, source: &EntityRef, relation: &str, required_only: bool) -> bool {
        !required_only || self.required.contains(&(source.blueprint.clone(), relation.to_string()))
    }
}

impl MemoryGraph {
    /// Entities from which `relations` (all, when empty) lead, in 1 to `max_hops` steps, to an
    /// entity `query` admits.
    fn match_any(&self, relations: &[String], max_hops: usize, query: &Query) -> HashSet<EntityRef> {
        let mut reverse: HashMap<&EntityRef, Vec<&EntityRef>> = HashMap::new();
        for (source, out) in &self.edges {
            for (relation, target) in out {
                if relations.is_empty() || relations.contains(relation) {
                    reverse.entry(target).or_default().push(source);
                }
            }
        }
        let mut frontier: HashSet<EntityRef> =
            self.entities.iter().filter(|e| query.matches(e, self)).map(Entity::entity_ref).collect();
        let mut found = HashSet::new();
        for _ in 0..max_hops {
            let next: HashSet<EntityRef> = frontier
                .iter()
                .flat_map(|node| reverse.get(node).into_iter().flatten().map(|s| (*s).clone()))
                .collect();
            found.extend(next.iter().cloned());
            frontier = next;
        }
        found
    }
}

impl RelationGraph for MemoryGraph {
    fn admits(&self, rule: &Rule, entity: &EntityRef) -> bool {
        self.related(rule).contains(entity)
    }
}

impl MemoryGraph {
    /// The entities a relation rule admits.
    fn related(&self, rule: &Rule) -> HashSet<EntityRef> {
        if let Rule::MatchAny { relations, max_hops, query } = rule {
            return self.match_any(relations, *max_hops, query);
        }
        let Rule::RelatedTo { blueprint, targets, direction, required } = rule else { return HashSet::new() };
        // Upstream: who reaches a target following edges forward = walk edges backwards from it.
        let mut reverse: HashMap<&EntityRef, Vec<&EntityRef>> = HashMap::new();
        for (source, out) in &self.edges {
            for (relation, target) in out {
                if self.edge_ok(source, relation, *required) {
                    match direction {
                        Direction::Upstream => reverse.entry(target).or_default().push(source),
                        Direction::Downstream => reverse.entry(source).or_default().push(target),
                    }
                }
            }
        }
        let mut found = HashSet::new();
        let mut queue: VecDeque<EntityRef> =
            targets.iter().map(|t| EntityRef { blueprint: blueprint.clone(), identifier: t.clone() }).collect();
        let mut seen: HashSet<EntityRef> = HashSet::new();
        while let Some(node) = queue.pop_front() {
            if !seen.insert(node.clone()) {
                continue;
            }
            for next in reverse.get(&node).into_iter().flatten() {
                found.insert((*next).clone());
                queue.push_back((*next).clone());
            }
        }
        found
    }
}
