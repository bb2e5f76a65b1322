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

/// The entity property a Backstage path's value is kept in, as it is (`spec.type` in `type`).
pub fn stored_property(path: &str) -> Option<&'static str> {
    match path {
        "spec.type" => Some("type"),
        "spec.lifecycle" => Some("lifecycle"),
        "metadata.namespace" => Some("namespace"),
        _ => None,
    }
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

/// A query over entities in Backstage's shape. The `filter` parameters and the predicate bodies
/// of the POST endpoints (`{"$all": [...]}`, `{"spec.type": {"$in": [...]}}`) both become one.
/// Paths and compared values are lowercase: matching is case-insensitive, as in Backstage.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// Every one holds (none: everything matches).
    All(Vec<Predicate>),
    /// At least one holds.
    Any(Vec<Predicate>),
    Not(Box<Predicate>),
    /// A dotted path and what its value must be.
    Field(String, Matcher),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    /// Equal to one of these (numbers and booleans as text).
    Equals(Vec<String>),
    Exists(bool),
    /// A string that starts with this.
    Prefix(String),
    /// An array with an element that matches.
    Contains(Box<Item>),
}

/// What `$contains` asks of one array element.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Value(String),
    Fields(Predicate),
    All(Vec<Item>),
    Any(Vec<Item>),
    Not(Box<Item>),
}

impl Predicate {
    /// The `filter` parameters: each one a set of conditions, sets OR'd, conditions AND'd, and
    /// conditions on the same key within a set alternatives (as Backstage reads them).
    pub fn from_filters(filters: &[String]) -> Result<Predicate, String> {
        let sets = parse_filters(filters)?;
        if sets.is_empty() {
            return Ok(Predicate::All(Vec::new()));
        }
        let sets = sets.into_iter().map(|set| {
            let mut keys: Vec<&str> = set.iter().map(|c| c.key.as_str()).collect();
            keys.dedup();
            let mut fields = Vec::new();
            for key in keys.iter().copied().collect::<std::collections::BTreeSet<_>>() {
                let alternatives: Vec<&Condition> = set.iter().filter(|c| c.key == key).collect();
                let matcher = match alternatives.iter().all(|c| c.value.is_some()) {
                    true => Matcher::Equals(alternatives.iter().filter_map(|c| c.value.clone()).collect()),
                    false => Matcher::Exists(true),
                };
                fields.push(Predicate::Field(key.to_string(), matcher));
            }
            Predicate::All(fields)
        });
        Ok(Predicate::Any(sets.collect()))
    }

    /// A predicate body as `@backstage/filter-predicates` defines it.
    pub fn parse(value: &Value) -> Result<Predicate, String> {
        let Value::Object(map) = value else { return Err(format!("a predicate is an object, not {value}")) };
        if let Some(operator) = map.keys().find(|k| k.starts_with('$')) {
            if map.len() > 1 {
                return Err(format!("{operator} stands alone: it cannot sit beside other keys"));
            }
            let operand = &map[operator];
            let list = |operand: &Value| -> Result<Vec<Predicate>, String> {
                let items = operand.as_array().ok_or_else(|| format!("{operator} takes an array"))?;
                items.iter().map(Predicate::parse).collect()
            };
            return match operator.as_str() {
                "$all" => Ok(Predicate::All(list(operand)?)),
                "$any" => Ok(Predicate::Any(list(operand)?)),
                "$not" => Ok(Predicate::Not(Box::new(Predicate::parse(operand)?))),
                other => Err(format!("unknown operator {other}: use $all, $any or $not")),
            };
        }
        let mut fields = map
            .iter()
            .map(|(key, value)| Ok(Predicate::Field(key.to_lowercase(), Matcher::parse(key, value)?)))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(if fields.len() == 1 { fields.remove(0) } else { Predicate::All(fields) })
    }

    pub fn matches(&self, entity: &Value) -> bool {
        match self {
            Predicate::All(all) => all.iter().all(|p| p.matches(entity)),
            Predicate::Any(any) => any.iter().any(|p| p.matches(entity)),
            Predicate::Not(inner) => !inner.matches(entity),
            Predicate::Field(key, Matcher::Equals(values)) => values.iter().any(|v| has(entity, key, Some(v))),
            Predicate::Field(key, Matcher::Exists(wanted)) => has(entity, key, None) == *wanted,
            Predicate::Field(key, Matcher::Prefix(prefix)) => values_at(entity, key)
                .iter()
                .any(|v| v.as_str().is_some_and(|s| s.to_lowercase().starts_with(prefix.as_str()))),
            Predicate::Field(key, Matcher::Contains(item)) => values_at(entity, key)
                .iter()
                .any(|v| v.as_array().is_some_and(|items| items.iter().any(|element| item.matches(element)))),
        }
    }

    /// The kinds an entity must be one of to match, when the predicate says (lowercase).
    pub fn kinds(&self) -> Option<Vec<String>> {
        match self {
            Predicate::Field(key, Matcher::Equals(values)) if key == "kind" => Some(values.clone()),
            Predicate::All(all) => {
                all.iter().filter_map(Predicate::kinds).reduce(|a, b| a.into_iter().filter(|k| b.contains(k)).collect())
            }
            Predicate::Any(any) => any.iter().map(Predicate::kinds).try_fold(Vec::new(), |mut union, kinds| {
                union.extend(kinds?);
                Some(union)
            }),
            _ => None,
        }
    }

    /// Whether kind equalities, AND'd and OR'd, are all the predicate asks.
    pub fn only_kinds(&self) -> bool {
        match self {
            Predicate::All(list) | Predicate::Any(list) => list.iter().all(Predicate::only_kinds),
            Predicate::Field(key, Matcher::Equals(_)) => key == "kind",
            _ => false,
        }
    }

    /// The `(path, value)` equalities every match has: what a store query can narrow by. Of
    /// alternatives (`filter` parameters are always some), those every alternative has.
    pub fn required(&self) -> Vec<(&str, &str)> {
        match self {
            Predicate::Field(key, Matcher::Equals(values)) if values.len() == 1 => vec![(key, &values[0])],
            Predicate::All(all) => all.iter().flat_map(Predicate::required).collect(),
            Predicate::Any(any) => any
                .iter()
                .map(Predicate::required)
                .reduce(|a, b| a.into_iter().filter(|p| b.contains(p)).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The properties and values asked, when the predicate asks only for kinds and one value of
    /// each of `spec.type` and `spec.lifecycle` ([`stored_property`]): such a query can be
    /// answered from the store's indexes. Not `metadata.namespace`: an entity without one is
    /// shown in `default`, which an index on the property does not say.
    pub fn property_equalities(&self) -> Option<Vec<(&'static str, &str)>> {
        let mut asked = Vec::new();
        self.collect_equalities(&mut asked).then_some(asked)
    }

    fn collect_equalities<'a>(&'a self, asked: &mut Vec<(&'static str, &'a str)>) -> bool {
        match self {
            Predicate::All(all) => all.iter().all(|p| p.collect_equalities(asked)),
            Predicate::Any(any) if any.len() == 1 => any[0].collect_equalities(asked),
            Predicate::Field(key, Matcher::Equals(_)) if key == "kind" => true,
            Predicate::Field(key, Matcher::Equals(values)) if values.len() == 1 => {
                match stored_property(key).filter(|p| *p != "namespace") {
                    Some(property) => asked.push((property, values[0].as_str())),
                    None => return false,
                }
                true
            }
            _ => false,
        }
    }

    /// Whether any path it names is a relation (those pointing at an entity must then be read).
    pub fn names_relations(&self) -> bool {
        match self {
            Predicate::All(list) | Predicate::Any(list) => list.iter().any(Predicate::names_relations),
            Predicate::Not(inner) => inner.names_relations(),
            Predicate::Field(key, _) => key.starts_with("relations"),
        }
    }
}

impl Matcher {
    fn parse(key: &str, value: &Value) -> Result<Matcher, String> {
        if let Some(text) = primitive(value) {
            return Ok(Matcher::Equals(vec![text]));
        }
        let operator = value.as_object().filter(|m| m.len() == 1).and_then(|m| m.iter().next());
        let Some((operator, operand)) = operator else {
            return Err(format!("{key}: a value is a string, number, boolean or one {{$operator: ...}}"));
        };
        match operator.as_str() {
            "$exists" => {
                operand.as_bool().map(Matcher::Exists).ok_or_else(|| format!("{key}: $exists takes true or false"))
            }
            "$in" => operand
                .as_array()
                .and_then(|items| items.iter().map(primitive).collect::<Option<Vec<_>>>())
                .map(Matcher::Equals)
                .ok_or_else(|| format!("{key}: $in takes an array of strings, numbers or booleans")),
            "$hasPrefix" => operand
                .as_str()
                .map(|p| Matcher::Prefix(p.to_lowercase()))
                .ok_or_else(|| format!("{key}: $hasPrefix takes a string")),
            "$contains" => Ok(Matcher::Contains(Box::new(Item::parse(operand)?))),
            other => Err(format!("{key}: unknown operator {other}: use $exists, $in, $hasPrefix or $contains")),
        }
    }
}

impl Item {
    fn parse(value: &Value) -> Result<Item, String> {
        if let Some(text) = primitive(value) {
            return Ok(Item::Value(text));
        }
        let Value::Object(map) = value else {
            return Err(format!("$contains takes a value or a predicate, not {value}"));
        };
        let list = |operand: &Value| -> Result<Vec<Item>, String> {
            operand.as_array().ok_or("$all and $any take an array")?.iter().map(Item::parse).collect()
        };
        match (map.len(), map.iter().next()) {
            (1, Some((k, operand))) if k == "$all" => Ok(Item::All(list(operand)?)),
            (1, Some((k, operand))) if k == "$any" => Ok(Item::Any(list(operand)?)),
            (1, Some((k, operand))) if k == "$not" => Ok(Item::Not(Box::new(Item::parse(operand)?))),
            _ => Ok(Item::Fields(Predicate::parse(value)?)),
        }
    }

    fn matches(&self, element: &Value) -> bool {
        match self {
            Item::Value(wanted) => primitive(element).is_some_and(|v| v == *wanted),
            Item::Fields(predicate) => element.is_object() && predicate.matches(element),
            Item::All(all) => all.iter().all(|i| i.matches(element)),
            Item::Any(any) => any.iter().any(|i| i.matches(element)),
            Item::Not(inner) => !inner.matches(element),
        }
    }
}

/// A string, number or boolean as lowercase text.
fn primitive(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.to_lowercase()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

/// The values at a dotted path (object keys compared case-insensitively, dots inside keys
/// allowed; arrays are not entered).
fn values_at<'a>(value: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut found = Vec::new();
    if let Value::Object(map) = value {
        for (key, inner) in map {
            let key = key.to_lowercase();
            if key == path {
                found.push(inner);
            } else if let Some(rest) = path.strip_prefix(key.as_str()).and_then(|r| r.strip_prefix('.')) {
                found.extend(values_at(inner, rest));
            }
        }
    }
    found
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

    /// Whether flattened pairs satisfy one filter set: every key it names is there, with one of the
    /// values the set gives that key (conditions on the same key are alternatives, as in Backstage).
    fn matches(pairs: &[(String, String)], conditions: &[Condition]) -> bool {
        conditions.iter().all(|c| {
            conditions.iter().filter(|other| other.key == c.key).any(|alternative| {
                pairs.iter().any(|(key, value)| {
                    *key == alternative.key && alternative.value.as_ref().is_none_or(|wanted| value == wanted)
                })
            })
        })
    }

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
            let predicate = Predicate::from_filters(&[filter.to_string()]).expect("parses");
            assert_eq!(
                predicate.matches(&entity()),
                matches(&pairs, &sets[0]),
                "{filter}: the walk agrees with the pairs"
            );
        }
    }

    #[test]
    fn predicates_match_as_filter_predicates_define() {
        let check = |predicate: Value| Predicate::parse(&predicate).expect("parses").matches(&entity());
        assert!(check(json!({"kind": "component", "spec.type": "SERVICE"})));
        assert!(check(
            json!({"$all": [{"kind": "Component"}, {"$any": [{"spec.type": "website"}, {"spec.type": "service"}]}]})
        ));
        assert!(!check(json!({"$not": {"kind": "component"}})));
        assert!(check(json!({"spec.type": {"$in": ["website", "Service"]}})));
        assert!(check(json!({"metadata.annotations.backstage.io/orphan": {"$exists": true}})));
        assert!(check(json!({"spec.lifecycle": {"$exists": false}})));
        assert!(check(json!({"metadata.tags": {"$contains": {"$any": ["go", "java"]}}})));
        assert!(!check(json!({"metadata.tags": {"$contains": "go"}})));
        assert!(check(json!({"relations": {"$contains": {"type": "ownedBy"}}})));
        assert!(check(json!({"metadata.name": {"$hasPrefix": "ca"}})));
        assert!(check(json!({"relations.ownedby": "group:default/team-a"})));
        for bad in [
            json!([]),
            json!({"$all": {}}),
            json!({"$where": 1}),
            json!({"kind": {"$regex": "x"}}),
            json!({"kind": "a", "$not": {}}),
            json!({"kind": {"$in": [{}]}}),
        ] {
            assert!(Predicate::parse(&bad).is_err(), "{bad} is refused");
        }
        let filters =
            Predicate::from_filters(&["kind=component,kind=api,spec.type=service".into(), "kind=group".into()])
                .expect("parses");
        assert!(filters.matches(&entity()));
        let mut kinds = filters.kinds().expect("kinds are named");
        kinds.sort();
        assert_eq!(kinds, ["api", "component", "group"]);
        assert!(!filters.only_kinds());
        assert!(Predicate::from_filters(&["kind=user".into()]).expect("parses").only_kinds());
        assert_eq!(
            Predicate::parse(&json!({"$all": [{"kind": "api"}, {"spec.type": "grpc"}]})).expect("parses").required(),
            [("kind", "api"), ("spec.type", "grpc")]
        );
        let filters = |f: &[&str]| Predicate::from_filters(&f.iter().map(|f| f.to_string()).collect::<Vec<_>>());
        let one = filters(&["kind=component,spec.type=service"]).expect("parses");
        assert_eq!(one.required(), [("kind", "component"), ("spec.type", "service")]);
        let two = filters(&["kind=component,spec.type=service", "kind=api,spec.type=service"]).expect("parses");
        assert_eq!(two.required(), [("spec.type", "service")], "only what both sets require");
        assert_eq!(one.property_equalities(), Some(vec![("type", "service")]));
        assert_eq!(filters(&["kind=component,kind=api"]).expect("parses").property_equalities(), Some(vec![]));
        assert_eq!(two.property_equalities(), None, "two alternatives");
        assert_eq!(filters(&["kind=component,spec.owner=team-a"]).expect("parses").property_equalities(), None);
        assert_eq!(filters(&["spec.type=service,spec.type=website"]).expect("parses").property_equalities(), None);
    }

    #[test]
    fn fields_and_facets() {
        let selected = select_fields(&entity(), &["metadata.name".into(), "spec".into(), "nope.x".into()]);
        assert_eq!(selected, json!({"metadata": {"name": "Cart"}, "spec": {"type": "service", "owner": "team-a"}}));
        assert_eq!(facet_values(&entity(), "metadata.tags"), ["Java"]);
        assert_eq!(facet_values(&entity(), "spec.type"), ["service"]);
    }
}
