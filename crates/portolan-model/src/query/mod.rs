//! The query language: one JSON language for search, filters, conditions and rules, shaped like
//! Port's: `{"combinator": "and"|"or", "rules": [rule | query]}`.
//!
//! [`parse`] turns JSON into a [`Query`] checked against the blueprints it runs over: every field
//! resolves to a [`Target`] whose [`Shape`] fixes how values compare, context values ("my teams")
//! and date presets are resolved, and every mistake is reported at its JSON path. The same parsed
//! query is then either evaluated in memory ([`Query::matches`]) or translated to SQL by the store;
//! the property test in the store crate holds the two to the same answers.
//!
//! Meaning, for every way of executing it:
//! - A field that holds a list (array properties, many-relations, `$team`) matches a comparison
//!   when any element does; negated operators (`!=`, `notIn`, `doesNotContains`, ...) are the
//!   negation of their positive form, so an absent value matches `!=`.
//! - Text operators compare ASCII-case-insensitively; ordering of strings is by bytes.
//! - Date-times compare as instants, to the millisecond.

use crate::Millis;

mod eval;
mod parse;
mod scope;
pub use eval::*;
pub use parse::*;
pub use scope::*;

/// Deepest nesting of groups accepted.
pub const MAX_DEPTH: usize = 8;
/// Longest path `matchAny` follows.
pub const MAX_HOPS: usize = 15;
/// Most rules accepted in one query.
pub const MAX_RULES: usize = 256;
/// Largest query document accepted, in bytes of JSON.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    And(Vec<Query>),
    Or(Vec<Query>),
    Rule(Rule),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// `=`, `!=`, `>`, `>=`, `<`, `<=`.
    Compare { target: Target, op: CompareOp, value: Scalar, negate: bool },
    /// `contains`, `beginsWith`, `endsWith` and their negations; `value` is ASCII-lowercased.
    Text { target: Target, op: TextOp, value: String, negate: bool },
    /// `in`, `notIn`, `containsAny`.
    In { target: Target, values: Vec<Scalar>, negate: bool },
    /// `isEmpty`, `isNotEmpty`.
    Empty { target: Target, negate: bool },
    /// `between`, `notBetween`: `from <= instant <= to`.
    Between { target: Target, from: Millis, to: Millis, negate: bool },
    /// `isExpired` (`value < now`), `isNotExpired` (`value >= now`); absent timers match neither.
    Timer { target: Target, expired: bool, now: Millis },
    /// The entity reaches (upstream) or is reached from (downstream) one of `targets` of
    /// `blueprint` through relations, of any length; only through required ones if `required`.
    RelatedTo { blueprint: String, targets: Vec<String>, direction: Direction, required: bool },
    /// Path matching: following the entity's relations (only `relations`, when given) for 1 to
    /// `max_hops` steps reaches an entity that `query` admits.
    MatchAny { relations: Vec<String>, max_hops: usize, query: Box<Query> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOp {
    Contains,
    BeginsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The entity depends on the target: its relations lead to it.
    Upstream,
    /// The target depends on the entity.
    Downstream,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Num(f64),
    Bool(bool),
}

/// What a rule reads from an entity, and the shape of that value.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub field: Field,
    pub shape: Shape,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    Property(String),
    Relation(String),
    Meta(Meta),
    /// The level index an entity reached on a scorecard (values are given as level titles).
    Scorecard(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Meta {
    Identifier,
    Title,
    Team,
    Blueprint,
    CreatedAt,
    UpdatedAt,
    CreatedBy,
    UpdatedBy,
    /// The datasource that last wrote the entity (an Ocean integration's `User-Agent`), as Port's
    /// `$datasource`. Known to the store only: an entity in memory has none.
    Datasource,
}

/// How a field's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    One(Kind),
    /// A list whose elements are of this kind.
    Many(Kind),
    /// A JSON object: only emptiness can be asked.
    Object,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Number,
    Boolean,
    /// An RFC 3339 string; ordering and ranges compare instants.
    DateTime,
    /// Milliseconds since the epoch (`$createdAt`, `$updatedAt`).
    Timestamp,
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::blueprint::Blueprint;
    use crate::entity::Entity;

    fn blueprints() -> Vec<Blueprint> {
        [
            json!({"identifier": "system", "schema": {"properties": {}}}),
            json!({"identifier": "service", "schema": {"properties": {
                "language": {"type": "string"},
                "replicas": {"type": "number"},
                "public": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "expires": {"type": "string", "format": "timer"}
            }}, "relations": {"system": {"target": "system", "required": true}, "dependsOn": {"target": "service", "many": true}}}),
        ]
        .into_iter()
        .map(|v| Blueprint::from_json(v).expect("valid"))
        .collect()
    }

    fn entity(id: &str, properties: Value, relations: Value) -> Entity {
        Entity {
            identifier: id.into(),
            title: Some(id.to_uppercase()),
            icon: None,
            blueprint: "service".into(),
            team: vec!["team-a".into()],
            properties: properties.as_object().cloned().unwrap_or_default(),
            relations: relations.as_object().cloned().unwrap_or_default(),
            scorecards: Map::new(),
            diagnostics: Default::default(),
            version: 1,
            created_at: 1_000,
            created_by: "x".into(),
            updated_at: 1_000,
            updated_by: "x".into(),
        }
    }

    fn run(query: Value, entities: &[Entity]) -> Vec<String> {
        let bps = blueprints();
        let scope = Scope::new(&bps, Some("service"));
        let context = QueryContext { now: 2_000_000_000_000, user: None, user_teams: vec!["team-a".into()] };
        let q = parse(&query, &scope, &context).expect("valid query");
        let graph = MemoryGraph::new(&bps, entities);
        entities.iter().filter(|e| q.matches(e, &graph)).map(|e| e.identifier.clone()).collect()
    }

    fn errors(query: Value) -> Vec<String> {
        let bps = blueprints();
        let scope = Scope::new(&bps, Some("service"));
        parse(&query, &scope, &QueryContext::default()).expect_err("invalid").0.into_iter().map(|e| e.path).collect()
    }

    fn sample() -> Vec<Entity> {
        vec![
            entity(
                "a",
                json!({"language": "Go", "replicas": 3, "tags": ["web", "eu"], "expires": "2020-01-01T00:00:00Z"}),
                json!({"system": "s1"}),
            ),
            entity(
                "b",
                json!({"language": "Rust", "replicas": 10, "public": true}),
                json!({"system": "s1", "dependsOn": ["a"]}),
            ),
            entity("c", json!({"tags": []}), json!({"system": "s2", "dependsOn": ["b"]})),
        ]
    }

    #[test]
    fn a_query_selects_everything_only_without_rules() {
        let bps = blueprints();
        let scope = Scope::new(&bps, Some("service"));
        let parsed = |query: Value| parse(&query, &scope, &QueryContext::default()).expect("valid query");
        let go = json!({"property": "language", "operator": "=", "value": "Go"});
        assert!(parsed(json!({"combinator": "and", "rules": []})).selects_everything());
        assert!(
            parsed(json!({"combinator": "and", "rules": [{"combinator": "and", "rules": []}]})).selects_everything()
        );
        assert!(!parsed(json!({"combinator": "and", "rules": [go]})).selects_everything());
        assert!(
            !parsed(json!({"combinator": "or", "rules": []})).selects_everything(),
            "or of nothing selects nothing"
        );
    }

    #[test]
    fn operators_follow_the_documented_meaning() {
        let all = sample();
        let q = |rule: Value| run(json!({"combinator": "and", "rules": [rule]}), &all);
        assert_eq!(q(json!({"property": "language", "operator": "=", "value": "Go"})), vec!["a"]);
        assert_eq!(
            q(json!({"property": "language", "operator": "!=", "value": "Go"})),
            vec!["b", "c"],
            "absent matches !="
        );
        assert_eq!(q(json!({"property": "replicas", "operator": ">", "value": 3})), vec!["b"]);
        assert_eq!(q(json!({"property": "language", "operator": "contains", "value": "US"})), vec!["b"]);
        assert_eq!(q(json!({"property": "tags", "operator": "containsAny", "value": ["eu", "us"]})), vec!["a"]);
        assert_eq!(q(json!({"property": "tags", "operator": "isEmpty"})), vec!["b", "c"]);
        assert_eq!(q(json!({"property": "expires", "operator": "isExpired"})), vec!["a"]);
        assert_eq!(
            q(json!({"property": "$team", "operator": "containsAny", "value": {"context": "userTeams"}})),
            vec!["a", "b", "c"]
        );
        assert_eq!(q(json!({"relation": "system", "operator": "=", "value": "s1"})), vec!["a", "b"]);
        assert_eq!(
            q(json!({"operator": "relatedTo", "blueprint": "service", "value": "a"})),
            vec!["b", "c"],
            "transitive upstream"
        );
        assert_eq!(
            q(json!({"operator": "relatedTo", "blueprint": "service", "value": "c", "direction": "downstream"})),
            vec!["a", "b"]
        );
        assert_eq!(
            run(
                json!({"combinator": "or", "rules": [
                    {"property": "public", "operator": "=", "value": true},
                    {"combinator": "and", "rules": [{"property": "$identifier", "operator": "beginsWith", "value": "C"}]}
                ]}),
                &all
            ),
            vec!["b", "c"]
        );
    }

    #[test]
    fn mistakes_are_reported_at_their_paths() {
        let found = errors(json!({"combinator": "and", "rules": [
            {"property": "nope", "operator": "=", "value": 1},
            {"property": "replicas", "operator": "contains", "value": "x"},
            {"property": "replicas", "operator": "=", "value": "three"},
            {"property": "language", "operator": "like", "value": "x"},
            {"property": "expires", "operator": "between", "value": {"preset": "someday"}},
            {"combinator": "xor", "rules": []}
        ]}));
        assert_eq!(
            found,
            vec![
                "/rules/0/property",
                "/rules/1/operator",
                "/rules/2/value",
                "/rules/3/operator",
                "/rules/4/value",
                "/rules/5/combinator"
            ]
        );
        let mut deep = json!({"combinator": "and", "rules": []});
        for _ in 0..MAX_DEPTH {
            deep = json!({"combinator": "and", "rules": [deep]});
        }
        assert_eq!(errors(deep).len(), 1);
    }
}
