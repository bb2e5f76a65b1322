//! Searches and aggregates over entities held in memory — versions of the past, read back from
//! the audit log — in the order and the shape the SQL gives, so that they merge with what the
//! store finds among the entities unchanged since.

use std::cmp::Ordering;
use std::collections::HashMap;

use portolan_model::Entity;
use portolan_model::blueprint::parse_date_time;
use portolan_model::query::{self, Kind, Shape, Target};
use serde_json::Value;

use super::{Aggregate, AggregateResult, MAX_GROUPS, Position, Sort, group_key};

/// A one-valued field's value as a sort orders it (date-times as instants).
#[derive(Debug, PartialEq, PartialOrd)]
enum SortValue {
    Bool(bool),
    Number(f64),
    Text(String),
}

fn sort_value(value: Option<Value>, target: &Target) -> Option<SortValue> {
    match (value?, target.shape.kind()?) {
        (Value::String(s), Kind::DateTime) => parse_date_time(&s).map(|t| SortValue::Number(t as f64)),
        (Value::String(s), _) => Some(SortValue::Text(s)),
        (Value::Number(n), _) => n.as_f64().map(SortValue::Number),
        (Value::Bool(b), _) => Some(SortValue::Bool(b)),
        _ => None,
    }
}

/// Where an entity (or a page's end) sits in a search's order: entities with a value first, in
/// the sort's direction, then those without; ties by blueprint (across blueprints) and identifier.
struct Key<'a> {
    value: Option<SortValue>,
    blueprint: &'a str,
    identifier: &'a str,
}

impl Key<'_> {
    fn order(&self, other: &Key, descending: bool, one_blueprint: bool) -> Ordering {
        let directed = |o: Ordering| if descending { o.reverse() } else { o };
        let values = match (&self.value, &other.value) {
            (Some(a), Some(b)) => directed(a.partial_cmp(b).unwrap_or(Ordering::Equal)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        let blueprints = if one_blueprint { Ordering::Equal } else { directed(self.blueprint.cmp(other.blueprint)) };
        values.then(blueprints).then(directed(self.identifier.cmp(other.identifier)))
    }
}

fn key<'a>(entity: &'a Entity, sort: Option<&Sort>) -> Key<'a> {
    Key {
        value: sort.and_then(|s| sort_value(query::raw(entity, &s.target.field), &s.target)),
        blueprint: &entity.blueprint,
        identifier: &entity.identifier,
    }
}

/// The page of a search that merges `stored` (a page the store found, in order) with `past`
/// (every other entity the query admits, in any order), starting after `after`.
pub fn merge_page(
    stored: Vec<Entity>,
    mut past: Vec<Entity>,
    sort: Option<&Sort>,
    one_blueprint: bool,
    after: Option<&Position>,
    limit: u32,
) -> Vec<Entity> {
    let descending = sort.is_some_and(|s| s.descending);
    if let Some(last) = after {
        let last = Key {
            value: sort.and_then(|s| sort_value(last.value.clone(), &s.target)),
            blueprint: &last.blueprint,
            identifier: &last.identifier,
        };
        past.retain(|e| key(e, sort).order(&last, descending, one_blueprint) == Ordering::Greater);
    }
    let mut all = stored;
    all.append(&mut past);
    all.sort_by(|a, b| key(a, sort).order(&key(b, sort), descending, one_blueprint));
    all.truncate(limit as usize);
    all
}

/// The numbers a numeric aggregate reads from each entity.
fn numbers(target: &Target, entities: &[Entity]) -> Vec<f64> {
    entities.iter().filter_map(|e| query::raw(e, &target.field).and_then(|v| v.as_f64())).collect()
}

/// `stored` (the store's answer over the other entities) with `past` added. An average needs how
/// many values `stored` averaged (`stored_values`); a median cannot be added to.
pub fn add_past(
    function: &Aggregate,
    stored: AggregateResult,
    stored_values: u64,
    past: &[Entity],
) -> Option<AggregateResult> {
    let stored_value = match &stored {
        AggregateResult::Value(v) => *v,
        AggregateResult::Groups(_) => None,
    };
    let fold = |values: Vec<f64>, f: fn(f64, f64) -> f64| values.into_iter().chain(stored_value).reduce(f);
    Some(match function {
        Aggregate::Count => AggregateResult::Value(Some(stored_value.unwrap_or(0.0) + past.len() as f64)),
        Aggregate::Sum(t) => AggregateResult::Value(fold(numbers(t, past), |a, b| a + b)),
        Aggregate::Min(t) => AggregateResult::Value(fold(numbers(t, past), f64::min)),
        Aggregate::Max(t) => AggregateResult::Value(fold(numbers(t, past), f64::max)),
        Aggregate::Avg(t) => {
            let values = numbers(t, past);
            let n = stored_values + values.len() as u64;
            let total = stored_value.unwrap_or(0.0) * stored_values as f64 + values.iter().sum::<f64>();
            AggregateResult::Value((n > 0).then(|| total / n as f64))
        }
        Aggregate::Median(_) => return None,
        Aggregate::CountBy(target) => {
            let AggregateResult::Groups(groups) = stored else { return None };
            AggregateResult::Groups(merge_groups(groups, count_by(target, past)))
        }
    })
}

/// Entities per value of `target` (per distinct element, for lists; no value is a group of its
/// own for one-valued fields), keyed as the SQL keys them.
fn count_by(target: &Target, entities: &[Entity]) -> Vec<(Value, u64)> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for entity in entities {
        let value = query::raw(entity, &target.field).unwrap_or(Value::Null);
        let mut keys: Vec<String> = match (value, target.shape) {
            (Value::Array(items), Shape::Many(_)) => items.iter().map(Value::to_string).collect(),
            (_, Shape::Many(_)) => vec![],
            (one, _) => vec![one.to_string()],
        };
        keys.sort();
        keys.dedup();
        for k in keys {
            *counts.entry(k).or_default() += 1;
        }
    }
    counts.into_iter().map(|(k, n)| (group_key(Some(&k), target), n)).collect()
}

/// Two sets of counts per value as one, most frequent first (then by the value's JSON text), at
/// most [`MAX_GROUPS`].
fn merge_groups(a: Vec<(Value, u64)>, b: Vec<(Value, u64)>) -> Vec<(Value, u64)> {
    let mut counts: Vec<(String, Value, u64)> = Vec::new();
    for (value, n) in a.into_iter().chain(b) {
        let text = value.to_string();
        match counts.iter_mut().find(|(t, _, _)| *t == text) {
            Some((_, _, total)) => *total += n,
            None => counts.push((text, value, n)),
        }
    }
    counts.sort_by(|x, y| y.2.cmp(&x.2).then_with(|| x.0.cmp(&y.0)));
    counts.truncate(MAX_GROUPS as usize);
    counts.into_iter().map(|(_, value, n)| (value, n)).collect()
}

#[cfg(test)]
mod tests {
    use portolan_model::query::{Field, Meta};
    use serde_json::json;

    use super::*;

    fn entity(blueprint: &str, identifier: &str, properties: Value) -> Entity {
        serde_json::from_value(json!({
            "identifier": identifier, "blueprint": blueprint, "properties": properties, "team": [], "relations": {},
            "version": 1, "createdAt": "2026-01-01T00:00:00Z", "createdBy": "a",
            "updatedAt": "2026-01-01T00:00:00Z", "updatedBy": "a"
        }))
        .expect("entity")
    }

    fn ids(entities: &[Entity]) -> Vec<&str> {
        entities.iter().map(|e| e.identifier.as_str()).collect()
    }

    fn by(property: &str, kind: Kind, descending: bool) -> Sort {
        Sort { target: Target { field: Field::Property(property.into()), shape: Shape::One(kind) }, descending }
    }

    #[test]
    fn past_entities_merge_into_a_page_in_its_order_with_values_first_and_after_its_cursor() {
        let stored = vec![entity("s", "b", json!({"n": 1})), entity("s", "d", json!({"n": 3}))];
        let past =
            vec![entity("s", "c", json!({"n": 2})), entity("s", "a", json!({})), entity("s", "e", json!({"n": 0}))];
        let sort = by("n", Kind::Number, false);
        let page = merge_page(stored.clone(), past.clone(), Some(&sort), true, None, 10);
        assert_eq!(ids(&page), ["e", "b", "c", "d", "a"]);
        let descending = by("n", Kind::Number, true);
        let page = merge_page(stored.clone(), past.clone(), Some(&descending), true, None, 3);
        assert_eq!(ids(&page), ["d", "c", "b"]);
        let cursor = Position { blueprint: "s".into(), identifier: "b".into(), value: Some(json!(1)) };
        let page = merge_page(vec![stored[1].clone()], past.clone(), Some(&sort), true, Some(&cursor), 10);
        assert_eq!(ids(&page), ["c", "d", "a"]);
        let unsorted = merge_page(stored, past, None, true, None, 10);
        assert_eq!(ids(&unsorted), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn date_times_sort_as_instants_and_blueprints_order_across_blueprints() {
        let early = entity("x", "late-name", json!({"at": "2026-01-01T00:00:00+02:00"}));
        let late = entity("x", "early-name", json!({"at": "2026-01-01T00:00:00Z"}));
        let sort = by("at", Kind::DateTime, false);
        assert_eq!(
            ids(&merge_page(vec![], vec![late, early], Some(&sort), true, None, 5)),
            ["late-name", "early-name"]
        );
        let across =
            merge_page(vec![entity("b", "a", json!({}))], vec![entity("a", "z", json!({}))], None, false, None, 5);
        assert_eq!(ids(&across), ["z", "a"]);
    }

    #[test]
    fn past_entities_add_to_the_stored_aggregate() {
        let n = Target { field: Field::Property("n".into()), shape: Shape::One(Kind::Number) };
        let past = vec![entity("s", "a", json!({"n": 4})), entity("s", "b", json!({}))];
        let value = |v: f64| AggregateResult::Value(Some(v));
        assert_eq!(add_past(&Aggregate::Count, value(3.0), 0, &past), Some(value(5.0)));
        assert_eq!(add_past(&Aggregate::Sum(n.clone()), value(6.0), 0, &past), Some(value(10.0)));
        assert_eq!(add_past(&Aggregate::Min(n.clone()), value(6.0), 0, &past), Some(value(4.0)));
        assert_eq!(add_past(&Aggregate::Max(n.clone()), AggregateResult::Value(None), 0, &past), Some(value(4.0)));
        // Stored: 3 values averaging 2 (6 in all); with 4, 10 over 4 values.
        assert_eq!(add_past(&Aggregate::Avg(n.clone()), value(2.0), 3, &past), Some(value(2.5)));
        assert_eq!(add_past(&Aggregate::Median(n), value(2.0), 3, &past), None);
    }

    #[test]
    fn counts_per_value_merge_as_the_store_keys_and_orders_them() {
        let team = Target { field: Field::Meta(Meta::Team), shape: Shape::Many(Kind::String) };
        let mut a = entity("s", "a", json!({}));
        a.team = vec!["ops".into(), "web".into(), "ops".into()];
        let mut b = entity("s", "b", json!({}));
        b.team = vec!["web".into()];
        let stored = AggregateResult::Groups(vec![(json!("ops"), 2), (json!("db"), 1)]);
        let merged = add_past(&Aggregate::CountBy(team), stored, 0, &[a, b]);
        assert_eq!(merged, Some(AggregateResult::Groups(vec![(json!("ops"), 3), (json!("web"), 2), (json!("db"), 1)])));
        let flag = Target { field: Field::Property("on".into()), shape: Shape::One(Kind::Boolean) };
        let stored = AggregateResult::Groups(vec![(json!(true), 1), (Value::Null, 1)]);
        let past = [entity("s", "c", json!({"on": true})), entity("s", "d", json!({}))];
        let merged = add_past(&Aggregate::CountBy(flag), stored, 0, &past);
        assert_eq!(merged, Some(AggregateResult::Groups(vec![(Value::Null, 2), (json!(true), 2)])));
    }
}
