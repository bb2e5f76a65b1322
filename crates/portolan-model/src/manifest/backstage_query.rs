//! Backstage's catalog query semantics, over entities in Backstage's shape: filters (sets OR'd,
//! conditions within a set AND'd, keys and values case-insensitive, `relations.<type>=<ref>`),
//! `fields` projections and facets. Matching works as Backstage's search table does: every
//! entity flattened into dotted key/value pairs.

use serde_json::{Map, Value};

/// One condition: a key that must exist, with this value when given (both lowercase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub key: String,
    pub value: Option<String>,
}

/// Parses each `filter` parameter (`kind=component,spec.type=service`) into a set of conditions.
pub fn parse_filters(filters: &[String]) -> Result<Vec<Vec<Condition>>, String> {
    filters
        .iter()
        .map(|filter| {
            filter
                .split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(|part| {
                    let (key, value) = match part.split_once('=') {
                        Some((key, value)) => (key.trim(), Some(value.trim().to_lowercase())),
                        None => (part, None),
                    };
                    if key.is_empty() {
                        return Err(format!("'{part}' has no key: write key=value or key"));
                    }
                    Ok(Condition { key: key.to_lowercase(), value })
                })
                .collect()
        })
        .collect()
}

/// Every key/value pair of an entity as Backstage indexes it, lowercased.
pub fn flatten(entity: &Value) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    if let Value::Object(map) = entity {
        for (key, value) in map {
            if key == "relations" {
                for relation in value.as_array().into_iter().flatten() {
                    if let (Some(kind), Some(target)) = (relation["type"].as_str(), relation["targetRef"].as_str()) {
                        pairs.push((format!("relations.{}", kind.to_lowercase()), target.to_lowercase()));
                    }
                }
            } else {
                walk(&key.to_lowercase(), value, &mut pairs);
            }
        }
    }
    pairs
}

fn walk(prefix: &str, value: &Value, pairs: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            pairs.push((prefix.to_string(), String::new()));
            for (key, inner) in map {
                walk(&format!("{prefix}.{}", key.to_lowercase()), inner, pairs);
            }
        }
        Value::Array(items) => {
            pairs.push((prefix.to_string(), String::new()));
            for item in items {
                match item {
                    Value::String(s) => {
                        pairs.push((format!("{prefix}.{}", s.to_lowercase()), "true".into()));
                        pairs.push((prefix.to_string(), s.to_lowercase()));
                    }
                    other => walk(prefix, other, pairs),
                }
            }
        }
        Value::Null => {}
        Value::String(s) => pairs.push((prefix.to_string(), s.to_lowercase())),
        other => pairs.push((prefix.to_string(), other.to_string().to_lowercase())),
    }
}

/// Whether flattened pairs satisfy one filter set: every key it names is there, with one of the
/// values the set gives that key (conditions on the same key are alternatives, as in Backstage).
pub fn matches(pairs: &[(String, String)], conditions: &[Condition]) -> bool {
    conditions.iter().all(|c| {
        conditions.iter().filter(|other| other.key == c.key).any(|alternative| {
            pairs.iter().any(|(key, value)| {
                *key == alternative.key && alternative.value.as_ref().is_none_or(|wanted| value == wanted)
            })
        })
    })
}

/// [`matches`] over an entity's flattened pairs, without flattening it: each condition's key is
/// followed down the entity (object keys compared case-insensitively, dots inside keys allowed).
pub fn entity_matches(entity: &Value, conditions: &[Condition]) -> bool {
    conditions.iter().all(|c| {
        conditions
            .iter()
            .filter(|other| other.key == c.key)
            .any(|alternative| has(entity, &alternative.key, alternative.value.as_deref()))
    })
}

fn has(entity: &Value, key: &str, wanted: Option<&str>) -> bool {
    if let Some(kind) = key.strip_prefix("relations.") {
        return entity["relations"].as_array().into_iter().flatten().any(|relation| {
            relation["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(kind))
                && wanted.is_none_or(|w| relation["targetRef"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(w)))
        });
    }
    let Value::Object(map) = entity else { return false };
    map.iter().filter(|(k, _)| k.as_str() != "relations").any(|(k, v)| follow(&k.to_lowercase(), v, key, wanted))
}

/// Whether the value under `name` (a lowercased key) has a pair for `key`.
fn follow(name: &str, value: &Value, key: &str, wanted: Option<&str>) -> bool {
    if key == name {
        return at_key(value, wanted);
    }
    match key.strip_prefix(name).and_then(|rest| rest.strip_prefix('.')) {
        Some(rest) => below(value, rest, wanted),
        None => false,
    }
}

/// Pairs whose key ends exactly at `value`.
fn at_key(value: &Value, wanted: Option<&str>) -> bool {
    match value {
        Value::Object(_) => wanted.is_none_or(str::is_empty),
        Value::Array(items) => {
            wanted.is_none_or(str::is_empty)
                || items.iter().any(|item| match item {
                    Value::String(s) => wanted.is_some_and(|w| s.to_lowercase() == w),
                    other => at_key(other, wanted),
                })
        }
        Value::Null => false,
        Value::String(s) => wanted.is_none_or(|w| s.to_lowercase() == w),
        other => wanted.is_none_or(|w| other.to_string().to_lowercase() == w),
    }
}

/// Pairs whose key continues below `value` with `rest`.
fn below(value: &Value, rest: &str, wanted: Option<&str>) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| follow(&k.to_lowercase(), v, rest, wanted)),
        Value::Array(items) => items.iter().any(|item| match item {
            Value::String(s) => s.to_lowercase() == rest && wanted.is_none_or(|w| w == "true"),
            other => below(other, rest, wanted),
        }),
        _ => false,
    }
}

/// The values an entity has for a facet key (`kind`, `spec.type`, `metadata.tags`, ...), as
/// written (not lowercased).
pub fn facet_values(entity: &Value, facet: &str) -> Vec<String> {
    let mut current = vec![entity];
    for part in facet.split('.') {
        let mut next = Vec::new();
        for value in current {
            let found =
                value.as_object().and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(part)).map(|(_, v)| v));
            match found {
                Some(Value::Array(items)) => next.extend(items.iter()),
                Some(v) => next.push(v),
                None => {}
            }
        }
        current = next;
    }
    if facet.eq_ignore_ascii_case("relations") {
        return Vec::new();
    }
    current
        .into_iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
            _ => None,
        })
        .collect()
}

fn insert(map: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            map.insert((*last).to_string(), value);
        }
        [first, rest @ ..] => {
            let entry = map.entry((*first).to_string()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// Keeps only the named fields (`metadata.name`, `spec`, ...) of an entity.
pub fn select_fields(entity: &Value, fields: &[String]) -> Value {
    if fields.is_empty() {
        return entity.clone();
    }
    let mut out = Map::new();
    for field in fields {
        let parts: Vec<&str> = field.split('.').collect();
        let mut value = entity;
        let mut found = true;
        for part in &parts {
            match value.get(*part) {
                Some(inner) => value = inner,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        insert(&mut out, &parts, value.clone());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entity() -> Value {
        json!({
            "kind": "Component",
            "metadata": {"name": "Cart", "tags": ["Java"], "annotations": {"backstage.io/orphan": "true"}},
            "spec": {"type": "service", "owner": "team-a"},
            "relations": [{"type": "ownedBy", "targetRef": "group:default/team-a"}]
        })
    }

    #[test]
    fn filters_match_as_backstage_documents() {
        let pairs = flatten(&entity());
        let check = |filter: &str| {
            let sets = parse_filters(&[filter.to_string()]).expect("parses");
            sets.iter().any(|set| matches(&pairs, set))
        };
        assert!(check("kind=component,spec.type=SERVICE"), "case-insensitive, AND");
        assert!(check("metadata.tags.java"), "a list item is a key");
        assert!(check("metadata.tags=java"));
        assert!(check("metadata.annotations.backstage.io/orphan=true"));
        assert!(check("relations.ownedby=group:default/TEAM-A"));
        assert!(!check("kind=component,spec.type=website"));
        assert!(!check("spec.lifecycle"));
        assert!(check("kind=api,kind=component"), "the same key twice: either value");
        assert!(parse_filters(&["=x".into()]).is_err());
        let filters = [
            "kind=component,spec.type=SERVICE",
            "metadata.tags.java",
            "metadata.tags=java",
            "metadata.tags.java=true",
            "metadata.annotations.backstage.io/orphan=true",
            "relations.ownedby=group:default/TEAM-A",
            "spec.lifecycle",
            "kind=api,kind=component",
            "metadata",
            "metadata.name=cart",
            "metadata.name=car",
            "spec.owner=team-b",
        ];
        for filter in filters {
            let sets = parse_filters(&[filter.to_string()]).expect("parses");
            assert_eq!(
                entity_matches(&entity(), &sets[0]),
                matches(&pairs, &sets[0]),
                "{filter}: the walk agrees with the pairs"
            );
        }
    }

    #[test]
    fn fields_and_facets() {
        let selected = select_fields(&entity(), &["metadata.name".into(), "spec".into(), "nope.x".into()]);
        assert_eq!(selected, json!({"metadata": {"name": "Cart"}, "spec": {"type": "service", "owner": "team-a"}}));
        assert_eq!(facet_values(&entity(), "metadata.tags"), ["Java"]);
        assert_eq!(facet_values(&entity(), "spec.type"), ["service"]);
    }
}
