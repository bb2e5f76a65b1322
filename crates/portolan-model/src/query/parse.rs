//! From JSON to a checked [`Query`]: fields resolved, values typed, presets and context resolved.

use crate::Millis;
use crate::blueprint::parse_date_time;
use crate::error::FieldErrors;
use serde_json::{Map, Value};

use super::*;

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
        for (key, value) in object {
            // Port marks an action's condition `"type": "SEARCH"`: the query it is.
            let port_search = depth == 1 && key == "type" && value == "SEARCH";
            if key != "combinator" && key != "rules" && !port_search {
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

    /// Port's form: `{"property": {"path": [relation or {relation, maxHops}, ...]}, "operator":
    /// "matchAny", "value": identifier(s)}` — following the path's relations in order reaches an
    /// entity with one of those identifiers. Each step is a `matchAny` of one relation.
    fn match_any_path(&mut self, rule: &Map<String, Value>, steps: &Value, path: &str) -> Option<Rule> {
        let property_path = format!("{path}/property");
        if rule["property"].get("fromBlueprint").is_some() {
            self.errors.push(
                format!("{property_path}/fromBlueprint"),
                "a path is followed from the searched entities only; for entities that point here use relatedTo \
                 with direction downstream",
            );
            return None;
        }
        let Some(steps) = steps.as_array().filter(|s| !s.is_empty() && s.len() <= MAX_HOPS) else {
            self.errors.push(format!("{property_path}/path"), format!("path is a list of 1 to {MAX_HOPS} relations"));
            return None;
        };
        let mut hops = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let (relation, max_hops) = match step {
                Value::String(r) => (r.as_str(), Some(1)),
                Value::Object(o) => (
                    o.get("relation").and_then(Value::as_str).unwrap_or_default(),
                    o.get("maxHops").map_or(Some(1), |n| n.as_u64().filter(|n| (1..=MAX_HOPS as u64).contains(n))),
                ),
                _ => ("", None),
            };
            let Some(max_hops) = max_hops.filter(|_| !relation.is_empty()) else {
                self.errors.push(
                    format!("{property_path}/path/{i}"),
                    format!("a step is a relation, or {{\"relation\", \"maxHops\"}} with maxHops from 1 to {MAX_HOPS}"),
                );
                return None;
            };
            if !self.scope.all.iter().any(|b| b.relations.contains_key(relation)) {
                self.errors
                    .push(format!("{property_path}/path/{i}"), format!("no blueprint has a relation '{relation}'"));
                return None;
            }
            hops.push((relation.to_string(), max_hops as usize));
        }
        let identifiers = match rule.get("value").map(|v| self.resolve_context(v)) {
            Some(Ok(Value::String(one))) => vec![Scalar::Str(one)],
            Some(Ok(Value::Array(many))) if many.iter().all(Value::is_string) => {
                many.into_iter().filter_map(|v| v.as_str().map(|s| Scalar::Str(s.to_string()))).collect()
            }
            Some(Err(msg)) => {
                self.errors.push(format!("{path}/value"), msg);
                return None;
            }
            _ => {
                self.errors
                    .push(format!("{path}/value"), "the identifier, or list of identifiers, the path must reach");
                return None;
            }
        };
        let identifier = Target { field: Field::Meta(Meta::Identifier), shape: Shape::One(Kind::String) };
        let mut rule = Rule::In { target: identifier, values: identifiers, negate: false };
        for (relation, max_hops) in hops.into_iter().rev() {
            rule = Rule::MatchAny { relations: vec![relation], max_hops, query: Box::new(Query::Rule(rule)) };
        }
        Some(rule)
    }

    fn match_any(&mut self, rule: &Map<String, Value>, path: &str) -> Option<Rule> {
        if let Some(steps) = rule.get("property").and_then(|p| p.get("path")) {
            return self.match_any_path(rule, steps, path);
        }
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

use crate::DAY;

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
