//! Scorecards: ordered levels, each with rules in the query language. An entity's level is the
//! highest level whose rules, and the rules of every level below it, all pass.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::entity::Entity;
use crate::error::{FieldErrors, pointer_token};
use crate::ident::check_schema_identifier;
use crate::query::{self, NoGraph, Query, QueryContext, Rule, Scope};
pub use crate::scorecard_definition::{Level, Scorecard, ScorecardRule};

#[derive(Debug, Clone)]
pub struct CompiledScorecard {
    pub scorecard: Scorecard,
    filter: Option<Query>,
    /// (level index, rule identifier, query)
    rules: Vec<(usize, String, Query)>,
}

impl Scorecard {
    /// Checks the scorecard against its blueprint and parses its queries.
    pub fn compile(&self, scope: &Scope, context: &QueryContext) -> Result<CompiledScorecard, FieldErrors> {
        let mut errors = FieldErrors::default();
        if let Err(msg) = check_schema_identifier(&self.identifier) {
            errors.push("/identifier", format!("identifier {msg}"));
        }
        if self.levels.is_empty() {
            errors.push("/levels", "a scorecard needs at least one level");
        }
        for (i, level) in self.levels.iter().enumerate() {
            if self.levels[..i].iter().any(|l| l.title == level.title) {
                errors.push(format!("/levels/{i}/title"), format!("level '{}' is listed twice", level.title));
            }
        }
        let parse =
            |document: &Value, path: &str, errors: &mut FieldErrors| match query::parse(document, scope, context) {
                Ok(q) if uses_related_to(&q) => {
                    errors
                        .push(path, "relatedTo and matchAny are not available in scorecards yet; use a relation rule");
                    None
                }
                Ok(q) => Some(q),
                Err(e) => {
                    errors.0.extend(
                        e.0.into_iter().map(|f| crate::FieldError::new(format!("{path}{}", f.path), f.message)),
                    );
                    None
                }
            };
        let filter = self.filter.as_ref().and_then(|f| parse(f, "/filter", &mut errors));
        let mut rules = Vec::new();
        let mut seen = HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let path = format!("/rules/{i}");
            if let Err(msg) = check_schema_identifier(&rule.identifier) {
                errors.push(format!("{path}/identifier"), format!("identifier {msg}"));
            }
            if !seen.insert(&rule.identifier) {
                errors.push(format!("{path}/identifier"), format!("rule '{}' is listed twice", rule.identifier));
            }
            let Some(level) = self.levels.iter().position(|l| l.title == rule.level) else {
                errors.push(
                    format!("{path}/level"),
                    format!("no level '{}' in this scorecard", pointer_token(&rule.level)),
                );
                continue;
            };
            if let Some(q) = parse(&rule.query, &format!("{path}/query"), &mut errors) {
                rules.push((level, rule.identifier.clone(), q));
            }
        }
        errors.into_result(CompiledScorecard { scorecard: self.clone(), filter, rules })
    }
}

fn uses_related_to(query: &Query) -> bool {
    match query {
        Query::And(parts) | Query::Or(parts) => parts.iter().any(uses_related_to),
        Query::Rule(rule) => matches!(rule, Rule::RelatedTo { .. } | Rule::MatchAny { .. }),
    }
}

impl CompiledScorecard {
    /// The entity's result: `{level, levelIndex, rules: [{identifier, level, status}]}`, or None
    /// when the filter leaves the entity out.
    pub fn evaluate(&self, entity: &Entity) -> Option<Value> {
        if let Some(filter) = &self.filter
            && !filter.matches(entity, &NoGraph)
        {
            return None;
        }
        let levels = &self.scorecard.levels;
        let outcomes: Vec<(usize, &str, bool)> =
            self.rules.iter().map(|(level, id, q)| (*level, id.as_str(), q.matches(entity, &NoGraph))).collect();
        let mut reached = 0;
        for index in 1..levels.len() {
            if outcomes.iter().filter(|(level, _, _)| *level <= index).all(|(_, _, passed)| *passed) {
                reached = index;
            } else {
                break;
            }
        }
        let rules: Vec<Value> = outcomes
            .iter()
            .map(|(level, id, passed)| {
                json!({"identifier": id, "level": levels[*level].title, "status": if *passed { "SUCCESS" } else { "FAILURE" }})
            })
            .collect();
        Some(json!({"level": levels[reached].title, "levelIndex": reached, "rules": rules}))
    }
}

/// Scores an entity on every scorecard of its blueprint.
pub fn score(scorecards: &[CompiledScorecard], entity: &Entity) -> Map<String, Value> {
    scorecards
        .iter()
        .filter_map(|s| s.evaluate(entity).map(|result| (s.scorecard.identifier.clone(), result)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Blueprint;

    #[test]
    fn level_is_the_highest_whose_rules_and_all_lower_rules_pass() {
        let bp = Blueprint::from_json(json!({"identifier": "service", "schema": {"properties": {
            "runbook": {"type": "string"}, "replicas": {"type": "number"}, "tier": {"type": "string"}}}}))
        .expect("blueprint");
        let all = [bp];
        let scope = Scope::new(&all, Some("service"));
        let scorecard = Scorecard::from_json(json!({
            "identifier": "readiness",
            "filter": {"combinator": "and", "rules": [{"property": "tier", "operator": "!=", "value": "experimental"}]},
            "rules": [
                {"identifier": "runbook", "level": "Bronze", "query": {"combinator": "and", "rules": [{"property": "runbook", "operator": "isNotEmpty"}]}},
                {"identifier": "ha", "level": "Silver", "query": {"combinator": "and", "rules": [{"property": "replicas", "operator": ">=", "value": 2}]}},
                {"identifier": "many", "level": "Gold", "query": {"combinator": "and", "rules": [{"property": "replicas", "operator": ">=", "value": 5}]}}
            ]
        }))
        .expect("parses")
        .compile(&scope, &QueryContext::default())
        .expect("compiles");
        let entity = |props: Value| Entity {
            identifier: "x".into(),
            title: None,
            icon: None,
            blueprint: "service".into(),
            team: vec![],
            properties: props.as_object().cloned().unwrap_or_default(),
            relations: Map::new(),
            scorecards: Map::new(),
            diagnostics: Default::default(),
            version: 1,
            created_at: 0,
            created_by: String::new(),
            updated_at: 0,
            updated_by: String::new(),
        };
        let level = |props: Value| scorecard.evaluate(&entity(props)).map(|r| r["level"].clone());
        assert_eq!(level(json!({"runbook": "r", "replicas": 6})), Some(json!("Gold")));
        assert_eq!(level(json!({"runbook": "r", "replicas": 3})), Some(json!("Silver")));
        assert_eq!(level(json!({"replicas": 9})), Some(json!("Basic")), "a failed Bronze rule caps the level");
        assert_eq!(level(json!({"tier": "experimental"})), None, "filtered out");
        let result = scorecard.evaluate(&entity(json!({"runbook": "r"}))).expect("scored");
        assert_eq!(result["rules"][1], json!({"identifier": "ha", "level": "Silver", "status": "FAILURE"}));
    }

    #[test]
    fn invalid_scorecards_name_the_offending_part() {
        let bp = Blueprint::from_json(json!({"identifier": "service"})).expect("blueprint");
        let all = [bp];
        let scope = Scope::new(&all, Some("service"));
        let errors = Scorecard::from_json(json!({"identifier": "s", "rules": [
            {"identifier": "a", "level": "Platinum", "query": {"combinator": "and", "rules": []}},
            {"identifier": "b", "level": "Gold", "query": {"combinator": "and", "rules": [{"property": "nope", "operator": "isEmpty"}]}}
        ]}))
        .expect("parses")
        .compile(&scope, &QueryContext::default())
        .expect_err("invalid");
        let paths: Vec<String> = errors.0.into_iter().map(|e| e.path).collect();
        assert_eq!(paths, vec!["/rules/0/level", "/rules/1/query/rules/0/property"]);
    }
}
