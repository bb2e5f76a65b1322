//! What a search or an aggregate asks for.

use portolan_model::query::{Query, Target};
use portolan_model::{Entity, query};
use serde_json::Value;

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
