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

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Map, Value};

use crate::Millis;
use crate::blueprint::{Blueprint, Format, PropertySchema, PropertyType, parse_date_time};
use crate::entity::{Entity, EntityRef};
use crate::error::FieldErrors;

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

/// What a query needs from outside itself.
#[derive(Debug, Clone, Default)]
pub struct QueryContext {
    pub now: Millis,
    /// The caller's `_user` identifier, if known.
    pub user: Option<String>,
    /// The caller's teams.
    pub user_teams: Vec<String>,
}

/// The blueprints a query runs over, and every blueprint (for `relatedTo`).
pub struct Scope<'a> {
    pub searched: Vec<&'a Blueprint>,
    pub all: &'a [Blueprint],
    /// Scorecards of the searched blueprints, for `scorecard` rules.
    pub scorecards: Vec<&'a crate::scorecard_definition::Scorecard>,
}

impl<'a> Scope<'a> {
    /// One blueprint, or all of them when `blueprint` is `None`.
    pub fn new(all: &'a [Blueprint], blueprint: Option<&str>) -> Self {
        let searched = all.iter().filter(|b| blueprint.is_none_or(|id| b.identifier == id)).collect();
        Scope { searched, all, scorecards: Vec::new() }
    }

    /// Resolves a field name as rules and sorts write it: `$meta`, a property, or (`relation`) a relation.
    pub fn target(&self, name: &str, relation: bool) -> Result<Target, String> {
        if relation {
            let mut shape = None;
            for bp in &self.searched {
                if let Some(def) = bp.relations.get(name) {
                    let this = if def.many { Shape::Many(Kind::String) } else { Shape::One(Kind::String) };
                    merge_shape(&mut shape, this, name)?;
                }
            }
            let shape = shape.ok_or_else(|| format!("no searched blueprint has a relation '{name}'"))?;
            return Ok(Target { field: Field::Relation(name.to_string()), shape });
        }
        if name.starts_with('$') {
            let (meta, shape) = meta_field(name).ok_or_else(|| format!("unknown meta-property '{name}'"))?;
            return Ok(Target { field: Field::Meta(meta), shape });
        }
        let mut shape = None;
        for bp in &self.searched {
            if let Some(this) = self.property_shape_in(bp, name, 0) {
                merge_shape(&mut shape, this, name)?;
            }
        }
        let shape = shape.ok_or_else(|| format!("no searched blueprint has a property '{name}'"))?;
        Ok(Target { field: Field::Property(name.to_string()), shape })
    }
}

impl Scope<'_> {
    /// The shape of a stored or computed property of `bp`.
    fn property_shape_in(&self, bp: &Blueprint, name: &str, depth: usize) -> Option<Shape> {
        if let Some(prop) = bp.schema.properties.get(name) {
            return Some(property_shape(prop));
        }
        if bp.aggregation_properties.contains_key(name) {
            return Some(Shape::One(Kind::Number));
        }
        if let Some(calculation) = bp.calculation_properties.get(name) {
            let kind = match (calculation.kind, calculation.format) {
                (PropertyType::String, Some(Format::DateTime | Format::Timer)) => Kind::DateTime,
                (PropertyType::String, _) => Kind::String,
                (PropertyType::Number | PropertyType::Integer, _) => Kind::Number,
                (PropertyType::Boolean, _) => Kind::Boolean,
                _ => return Some(Shape::Object),
            };
            return Some(Shape::One(kind));
        }
        let mirror = bp.mirror_properties.get(name)?;
        if depth > crate::computed::MAX_MIRROR_HOPS {
            return None;
        }
        let lookup = |id: &str| self.all.iter().find(|b| b.identifier == id).cloned();
        let path = crate::computed::resolve_mirror(bp, &mirror.path, &lookup).ok()?;
        let last = path.hops.last().and_then(|(_, target)| lookup(target))?;
        if path.field.starts_with('$') {
            return self.target(&path.field, false).ok().map(|t| match t.shape {
                Shape::One(Kind::Timestamp) => Shape::One(Kind::Number),
                other => other,
            });
        }
        self.property_shape_in(&last, &path.field, depth + 1)
    }
}

/// A meta-property (`$identifier`, `$title`, ...) and the shape of its values.
pub fn meta_field(name: &str) -> Option<(Meta, Shape)> {
    Some(match name.strip_prefix('$')? {
        "identifier" => (Meta::Identifier, Shape::One(Kind::String)),
        "title" => (Meta::Title, Shape::One(Kind::String)),
        "team" => (Meta::Team, Shape::Many(Kind::String)),
        "blueprint" => (Meta::Blueprint, Shape::One(Kind::String)),
        "createdAt" => (Meta::CreatedAt, Shape::One(Kind::Timestamp)),
        "updatedAt" => (Meta::UpdatedAt, Shape::One(Kind::Timestamp)),
        "createdBy" => (Meta::CreatedBy, Shape::One(Kind::String)),
        "updatedBy" => (Meta::UpdatedBy, Shape::One(Kind::String)),
        _ => return None,
    })
}

fn merge_shape(found: &mut Option<Shape>, this: Shape, name: &str) -> Result<(), String> {
    match found {
        Some(existing) if *existing != this => {
            Err(format!("'{name}' has different types in the searched blueprints; search one blueprint"))
        }
        _ => {
            *found = Some(this);
            Ok(())
        }
    }
}

/// The shape a property's values have in queries.
pub fn property_shape(prop: &PropertySchema) -> Shape {
    let kind = |p: &PropertySchema| match (p.kind, p.format) {
        (PropertyType::String, Some(Format::DateTime | Format::Timer)) => Some(Kind::DateTime),
        (PropertyType::String, _) => Some(Kind::String),
        // Integers are numbers to the query language: compared, sorted and summed as numbers.
        (PropertyType::Number | PropertyType::Integer, _) => Some(Kind::Number),
        (PropertyType::Boolean, _) => Some(Kind::Boolean),
        _ => None,
    };
    match prop.kind {
        PropertyType::Array => match prop.items.as_deref().and_then(kind) {
            Some(k) => Shape::Many(k),
            None => Shape::Object,
        },
        _ => kind(prop).map(Shape::One).unwrap_or(Shape::Object),
    }
}

impl Shape {
    pub fn kind(self) -> Option<Kind> {
        match self {
            Shape::One(k) | Shape::Many(k) => Some(k),
            Shape::Object => None,
        }
    }
}

/// Parses and checks a query document. Errors carry JSON pointers from the document's root.
pub fn parse(document: &Value, scope: &Scope, context: &QueryContext) -> Result<Query, FieldErrors> {
    let size = serde_json::to_string(document).map(|s| s.len()).unwrap_or(0);
    if size > MAX_QUERY_BYTES {
        return Err(FieldErrors(vec![crate::FieldError::new(
            "",
            format!("the query is {size} bytes; the limit is {MAX_QUERY_BYTES}"),
        )]));
    }
    let mut parser = Parser { scope, context, errors: FieldErrors::default(), rules: 0 };
    let query = parser.group(document, "", 1);
    parser.errors.into_result(query)
}

struct Parser<'a, 'b> {
    scope: &'a Scope<'b>,
    context: &'a QueryContext,
    errors: FieldErrors,
    rules: usize,
}

impl Parser<'_, '_> {
    fn group(&mut self, value: &Value, path: &str, depth: usize) -> Query {
        let fallback = Query::And(vec![]);
        let Some(object) = value.as_object() else {
            self.errors.push(path, "expected a query object {\"combinator\", \"rules\"}");
            return fallback;
        };
        if depth > MAX_DEPTH {
            self.errors.push(path, format!("queries nest at most {MAX_DEPTH} deep"));
            return fallback;
        }
        for key in object.keys() {
            if key != "combinator" && key != "rules" {
                self.errors.push(format!("{path}/{key}"), format!("unknown key '{key}' in a query group"));
            }
        }
        let and = match object.get("combinator").and_then(Value::as_str) {
            Some("and") => true,
            Some("or") => false,
            _ => {
                self.errors.push(format!("{path}/combinator"), "combinator must be \"and\" or \"or\"");
                true
            }
        };
        let Some(rules) = object.get("rules").and_then(Value::as_array) else {
            self.errors.push(format!("{path}/rules"), "rules must be an array");
            return fallback;
        };
        let parsed = rules
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| {
                let rule_path = format!("{path}/rules/{i}");
                if rule.get("combinator").is_some() {
                    Some(self.group(rule, &rule_path, depth + 1))
                } else {
                    self.rule(rule, &rule_path).map(Query::Rule)
                }
            })
            .collect();
        if and { Query::And(parsed) } else { Query::Or(parsed) }
    }

    fn rule(&mut self, value: &Value, path: &str) -> Option<Rule> {
        self.rules += 1;
        if self.rules == MAX_RULES + 1 {
            self.errors.push(path, format!("a query holds at most {MAX_RULES} rules"));
        }
        let Some(rule) = value.as_object() else {
            self.errors.push(path, "expected a rule object or a nested query");
            return None;
        };
        let Some(operator) = rule.get("operator").and_then(Value::as_str) else {
            self.errors.push(format!("{path}/operator"), "operator is required");
            return None;
        };
        let operator_path = format!("{path}/operator");
        if operator == "relatedTo" {
            return self.related_to(rule, path);
        }
        if operator == "matchAny" {
            return self.match_any(rule, path);
        }
        if let Some(scorecard) = rule.get("scorecard") {
            return self.scorecard_rule(scorecard, operator, rule.get("value"), path);
        }
        let (name, relation) = match (rule.get("property"), rule.get("relation")) {
            (Some(Value::String(p)), None) => (p.as_str(), false),
            (None, Some(Value::String(r))) => (r.as_str(), true),
            _ => {
                self.errors
                    .push(path, "a rule names exactly one \"property\", \"relation\" or \"scorecard\" (a string)");
                return None;
            }
        };
        let field_path = format!("{path}/{}", if relation { "relation" } else { "property" });
        let target = match self.scope.target(name, relation) {
            Ok(t) => t,
            Err(msg) => {
                self.errors.push(field_path, msg);
                return None;
            }
        };
        let value_path = format!("{path}/value");
        let value = rule.get("value");
        let result = self.operator_rule(operator, target, value, &value_path);
        match result {
            Ok(rule) => Some(rule),
            Err(RuleError::Operator(msg)) => {
                self.errors.push(operator_path, msg);
                None
            }
            Err(RuleError::Value(msg)) => {
                self.errors.push(value_path, msg);
                None
            }
        }
    }

    fn operator_rule(
        &self,
        operator: &str,
        target: Target,
        value: Option<&Value>,
        _path: &str,
    ) -> Result<Rule, RuleError> {
        use RuleError::{Operator, Value as BadValue};
        let kind = target.shape.kind();
        let value = value.map(|v| self.resolve_context(v)).transpose().map_err(BadValue)?;
        let need = |v: Option<Value>| v.ok_or_else(|| BadValue("value is required".into()));
        let (compare, negate) = match operator {
            "=" => (Some(CompareOp::Eq), false),
            "!=" => (Some(CompareOp::Eq), true),
            ">" => (Some(CompareOp::Gt), false),
            ">=" => (Some(CompareOp::Ge), false),
            "<" => (Some(CompareOp::Lt), false),
            "<=" => (Some(CompareOp::Le), false),
            _ => (None, false),
        };
        if let Some(op) = compare {
            let kind = kind.ok_or_else(|| Operator(format!("'{operator}' does not apply to objects")))?;
            if op != CompareOp::Eq && kind == Kind::Boolean {
                return Err(Operator(format!("'{operator}' does not apply to booleans")));
            }
            let value = scalar_for(kind, &need(value)?, op != CompareOp::Eq).map_err(BadValue)?;
            return Ok(Rule::Compare { target, op, value, negate });
        }
        let text = match operator {
            "contains" => Some((TextOp::Contains, false)),
            "doesNotContains" => Some((TextOp::Contains, true)),
            "beginsWith" => Some((TextOp::BeginsWith, false)),
            "doesNotBeginsWith" => Some((TextOp::BeginsWith, true)),
            "endsWith" => Some((TextOp::EndsWith, false)),
            "doesNotEndsWith" => Some((TextOp::EndsWith, true)),
            _ => None,
        };
        if let Some((op, negate)) = text {
            if !matches!(kind, Some(Kind::String | Kind::DateTime)) {
                return Err(Operator(format!("'{operator}' applies only to text")));
            }
            let Some(Value::String(s)) = value else {
                return Err(BadValue("expected a non-empty string".into()));
            };
            if s.is_empty() {
                return Err(BadValue("expected a non-empty string".into()));
            }
            return Ok(Rule::Text { target, op, value: s.to_ascii_lowercase(), negate });
        }
        match operator {
            "in" | "notIn" | "containsAny" => {
                if operator == "containsAny" && !matches!(target.shape, Shape::Many(_)) {
                    return Err(Operator("'containsAny' applies only to lists; use 'in'".into()));
                }
                let kind = kind.ok_or_else(|| Operator(format!("'{operator}' does not apply to objects")))?;
                let values = match need(value)? {
                    Value::Array(items) => items,
                    one @ (Value::String(_) | Value::Number(_) | Value::Bool(_)) => vec![one],
                    _ => return Err(BadValue("expected a list of values".into())),
                };
                let values = values
                    .iter()
                    .map(|v| scalar_for(kind, v, false))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(BadValue)?;
                Ok(Rule::In { target, values, negate: operator == "notIn" })
            }
            "isEmpty" | "isNotEmpty" => Ok(Rule::Empty { target, negate: operator == "isNotEmpty" }),
            "between" | "notBetween" => {
                if !matches!(kind, Some(Kind::DateTime | Kind::Timestamp)) {
                    return Err(Operator(format!("'{operator}' applies only to dates")));
                }
                let (from, to) = date_range(&need(value)?, self.context.now).map_err(BadValue)?;
                Ok(Rule::Between { target, from, to, negate: operator == "notBetween" })
            }
            "isExpired" | "isNotExpired" => {
                if !matches!(kind, Some(Kind::DateTime | Kind::Timestamp)) || matches!(target.shape, Shape::Many(_)) {
                    return Err(Operator(format!("'{operator}' applies only to timer and date properties")));
                }
                Ok(Rule::Timer { target, expired: operator == "isExpired", now: self.context.now })
            }
            _ => Err(Operator(format!("unknown operator '{operator}'"))),
        }
    }

    /// `{"scorecard": id, "operator": ..., "value": level title(s)}`: compares level indexes.
    fn scorecard_rule(&mut self, scorecard: &Value, operator: &str, value: Option<&Value>, path: &str) -> Option<Rule> {
        let id = scorecard.as_str().unwrap_or_default();
        let Some(definition) = self.scope.scorecards.iter().find(|s| s.identifier == id) else {
            self.errors.push(format!("{path}/scorecard"), format!("no scorecard '{id}' on the searched blueprints"));
            return None;
        };
        let index = |v: &Value| -> Result<Value, String> {
            let title = v.as_str().ok_or("expected a level title")?;
            definition.level_index(title).map(Value::from).ok_or(format!("scorecard '{id}' has no level '{title}'"))
        };
        let value = match value {
            None => None,
            Some(Value::Array(items)) => match items.iter().map(index).collect::<Result<Vec<_>, _>>() {
                Ok(v) => Some(Value::Array(v)),
                Err(msg) => {
                    self.errors.push(format!("{path}/value"), msg);
                    return None;
                }
            },
            Some(one) => match index(one) {
                Ok(v) => Some(v),
                Err(msg) => {
                    self.errors.push(format!("{path}/value"), msg);
                    return None;
                }
            },
        };
        let target = Target { field: Field::Scorecard(id.to_string()), shape: Shape::One(Kind::Number) };
        match self.operator_rule(operator, target, value.as_ref(), path) {
            Ok(rule @ (Rule::Compare { .. } | Rule::In { .. } | Rule::Empty { .. })) => Some(rule),
            Ok(_) | Err(RuleError::Operator(_)) => {
                self.errors
                    .push(format!("{path}/operator"), format!("'{operator}' does not apply to scorecard levels"));
                None
            }
            Err(RuleError::Value(msg)) => {
                self.errors.push(format!("{path}/value"), msg);
                None
            }
        }
    }

    /// Replaces `{"context": "user" | "userTeams"}` with the caller's identifier or teams.
    fn resolve_context(&self, value: &Value) -> Result<Value, String> {
        let Some(context) = value.as_object().and_then(|o| o.get("context")).and_then(Value::as_str) else {
            return Ok(value.clone());
        };
        match context {
            "user" => Ok(self.context.user.clone().map(Value::from).unwrap_or(Value::Array(vec![]))),
            "userTeams" => Ok(Value::from(self.context.user_teams.clone())),
            other => Err(format!("unknown context '{other}': use \"user\" or \"userTeams\"")),
        }
    }

    fn match_any(&mut self, rule: &Map<String, Value>, path: &str) -> Option<Rule> {
        let max_hops = match rule.get("maxHops") {
            None => 1,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=15) => n as usize,
                _ => {
                    self.errors
                        .push(format!("{path}/maxHops"), format!("maxHops is a whole number from 1 to {MAX_HOPS}"));
                    return None;
                }
            },
        };
        let relations: Vec<String> = match rule.get("relations") {
            None => Vec::new(),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
            }
            Some(_) => {
                self.errors.push(format!("{path}/relations"), "relations is a list of relation identifiers");
                return None;
            }
        };
        for (i, name) in relations.iter().enumerate() {
            if !self.scope.all.iter().any(|b| b.relations.contains_key(name)) {
                self.errors.push(format!("{path}/relations/{i}"), format!("no blueprint has a relation '{name}'"));
            }
        }
        let Some(document) = rule.get("query") else {
            self.errors.push(format!("{path}/query"), "matchAny needs the query the reached entity must pass");
            return None;
        };
        // The reached entity may be of any blueprint.
        let everything = Scope {
            searched: self.scope.all.iter().collect(),
            all: self.scope.all,
            scorecards: self.scope.scorecards.clone(),
        };
        let mut nested =
            Parser { scope: &everything, context: self.context, errors: FieldErrors::default(), rules: self.rules };
        let query = nested.group(document, &format!("{path}/query"), 2);
        self.rules = nested.rules;
        let failed = !nested.errors.is_empty();
        self.errors.0.extend(nested.errors.0);
        if failed {
            return None;
        }
        Some(Rule::MatchAny { relations, max_hops, query: Box::new(query) })
    }

    fn related_to(&mut self, rule: &Map<String, Value>, path: &str) -> Option<Rule> {
        let blueprint = match rule.get("blueprint").and_then(Value::as_str) {
            Some(b) if self.scope.all.iter().any(|bp| bp.identifier == b) => b.to_string(),
            Some(b) => {
                self.errors.push(format!("{path}/blueprint"), format!("no blueprint '{b}'"));
                return None;
            }
            None => {
                self.errors.push(format!("{path}/blueprint"), "relatedTo needs a blueprint");
                return None;
            }
        };
        let value = match rule.get("value").map(|v| self.resolve_context(v)) {
            Some(Ok(v)) => v,
            Some(Err(msg)) => {
                self.errors.push(format!("{path}/value"), msg);
                return None;
            }
            None => Value::Null,
        };
        let targets: Vec<String> = match value {
            Value::String(s) => vec![s],
            Value::Array(items) if items.iter().all(Value::is_string) => {
                items.into_iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
            }
            _ => {
                self.errors.push(format!("{path}/value"), "relatedTo needs an entity identifier or a list of them");
                return None;
            }
        };
        let direction = match rule.get("direction").and_then(Value::as_str) {
            None | Some("upstream") => Direction::Upstream,
            Some("downstream") => Direction::Downstream,
            Some(other) => {
                self.errors
                    .push(format!("{path}/direction"), format!("direction '{other}' is not upstream or downstream"));
                return None;
            }
        };
        let required = rule.get("required").and_then(Value::as_bool).unwrap_or(false);
        Some(Rule::RelatedTo { blueprint, targets, direction, required })
    }
}

enum RuleError {
    Operator(String),
    Value(String),
}

/// Converts a rule value to the kind of the field it compares with.
fn scalar_for(kind: Kind, value: &Value, ordering: bool) -> Result<Scalar, String> {
    match (kind, value) {
        (Kind::String, Value::String(s)) => Ok(Scalar::Str(s.clone())),
        (Kind::DateTime, Value::String(s)) if ordering => parse_date_time(s)
            .map(|ms| Scalar::Num(ms as f64))
            .ok_or_else(|| format!("{s:?} is not an RFC 3339 date-time")),
        (Kind::DateTime, Value::String(s)) => Ok(Scalar::Str(s.clone())),
        (Kind::Timestamp, Value::String(s)) => parse_date_time(s)
            .map(|ms| Scalar::Num(ms as f64))
            .ok_or_else(|| format!("{s:?} is not an RFC 3339 date-time")),
        (Kind::Number | Kind::Timestamp, Value::Number(n)) => {
            n.as_f64().map(Scalar::Num).ok_or_else(|| "number out of range".into())
        }
        (Kind::Boolean, Value::Bool(b)) => Ok(Scalar::Bool(*b)),
        (kind, other) => Err(format!("expected {} value, got {other}", kind.name())),
    }
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Boolean => "a boolean",
            Kind::DateTime | Kind::Timestamp => "a date-time",
        }
    }
}

const DAY: Millis = 86_400_000;

/// `{"from", "to"}` as RFC 3339, or `{"preset": ...}` relative to `now`.
fn date_range(value: &Value, now: Millis) -> Result<(Millis, Millis), String> {
    let object = value.as_object().ok_or("expected {\"from\", \"to\"} or {\"preset\"}")?;
    if let Some(preset) = object.get("preset") {
        let today = now - now.rem_euclid(DAY);
        let range = match preset.as_str().unwrap_or_default() {
            "today" => (today, today + DAY - 1),
            "yesterday" => (today - DAY, today - 1),
            "tomorrow" => (today + DAY, today + 2 * DAY - 1),
            "lastWeek" => (now - 7 * DAY, now),
            "last2Weeks" => (now - 14 * DAY, now),
            "lastMonth" => (now - 30 * DAY, now),
            "last3Months" => (now - 90 * DAY, now),
            "last6Months" => (now - 180 * DAY, now),
            "last12Months" => (now - 365 * DAY, now),
            "nextWeek" => (now, now + 7 * DAY),
            "nextMonth" => (now, now + 30 * DAY),
            other => {
                return Err(format!(
                    "unknown preset {other:?}: use today, yesterday, tomorrow, lastWeek, last2Weeks, lastMonth, \
                     last3Months, last6Months, last12Months, nextWeek or nextMonth"
                ));
            }
        };
        return Ok(range);
    }
    let bound = |key: &str| {
        let text = object.get(key).and_then(Value::as_str).ok_or(format!("'{key}' is required (RFC 3339)"))?;
        parse_date_time(text).ok_or(format!("'{key}' is not an RFC 3339 date-time: {text:?}"))
    };
    let (from, to) = (bound("from")?, bound("to")?);
    if from > to {
        return Err("'from' is after 'to'".into());
    }
    Ok((from, to))
}

// ---- evaluation in memory ----

/// Answers which entities a `relatedTo` rule admits.
pub trait RelationGraph {
    fn related(&self, rule: &Rule) -> HashSet<EntityRef>;
}

/// For evaluating a query on one entity alone (scorecard rules as it is written, permission
/// conditions on an entity about to be created): relation rules see no related entities.
pub struct NoGraph;

impl RelationGraph for NoGraph {
    fn related(&self, _: &Rule) -> HashSet<EntityRef> {
        HashSet::new()
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
            Rule::RelatedTo { .. } | Rule::MatchAny { .. } => graph.related(self).contains(&entity.entity_ref()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
