//! Initiatives (campaigns): a goal — a scorecard level, or rules of their own — for the entities a
//! query selects, owned by someone, between a start and a target date. This module decides what
//! each entity still lacks, tallies progress per team, and says whether the initiative is on
//! track; the service reads the entities and keeps the daily burn-up.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::entity::Entity;
use crate::error::{FieldErrors, pointer_token};
use crate::guardrail::Notify;
use crate::ident::check_schema_identifier;
use crate::query::{self, NoGraph, Query, QueryContext, Scope};
use crate::scorecard::{Scorecard, ScorecardRule};
use crate::{Blueprint, DAY, Millis};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Initiative {
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The blueprint of the entities it is about.
    pub blueprint: String,
    /// Which of them (all when absent): a query-language query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    pub goal: Goal,
    /// Who answers for it: a user or a team identifier.
    pub owner: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String)]
    pub starts_at: Millis,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String)]
    pub target_date: Millis,
    /// The action that fixes a rule, by rule identifier: each failing rule links to it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fixes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminders: Option<Reminders>,
}

/// Either a scorecard level (`scorecard` and `level`) or `rules`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scorecard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<GoalRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GoalRule {
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[schema(value_type = Object)]
    pub query: Value,
}

/// Reminders to the owners of what is not done yet, every `everyDays` until the initiative is done
/// or past its target date: to the members of each team with something left, through their
/// notification preferences (`initiative.reminder`), and to the initiative's own webhook if it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reminders {
    #[serde(default = "a_week")]
    pub every_days: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
}

fn a_week() -> u32 {
    7
}

/// An initiative checked against the catalog, ready to assess entities.
#[derive(Debug, Clone)]
pub struct CompiledInitiative {
    pub initiative: Initiative,
    goal: CompiledGoal,
}

#[derive(Debug, Clone)]
enum CompiledGoal {
    /// The level's index in the scorecard, and the rules that level needs (its own and those
    /// below it), by identifier.
    Level {
        scorecard: String,
        index: usize,
        rules: HashSet<String>,
    },
    Rules(Vec<(String, Option<String>, Query)>),
}

/// What one entity still lacks.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Assessment {
    pub done: bool,
    pub failing: Vec<FailingRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FailingRule {
    pub rule: String,
    pub title: String,
    /// The action that fixes it, when the initiative names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl Initiative {
    pub fn from_json(value: Value) -> Result<Self, FieldErrors> {
        crate::error::from_json(value)
    }

    pub fn title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.identifier)
    }

    /// Checks the initiative against the blueprints, the scorecards of its blueprint and the
    /// actions that exist, naming every mistake by its path.
    pub fn compile(
        &self,
        blueprints: &[Blueprint],
        scorecards: &[Scorecard],
        actions: &[String],
        context: &QueryContext,
    ) -> Result<CompiledInitiative, FieldErrors> {
        let mut errors = FieldErrors::default();
        if let Err(msg) = check_schema_identifier(&self.identifier) {
            errors.push("/identifier", format!("identifier {msg}"));
        }
        if self.owner.trim().is_empty() {
            errors.push("/owner", "an initiative needs an owner");
        }
        if self.target_date <= self.starts_at {
            errors.push("/targetDate", "the target date must come after the start");
        }
        if let Some(reminders) = &self.reminders {
            if !(1..=90).contains(&reminders.every_days) {
                errors.push("/reminders/everyDays", "reminders come every 1 to 90 days");
            }
            if let Some(notify) = &reminders.notify {
                notify.check("/reminders/notify", &mut errors);
            }
        }
        if !blueprints.iter().any(|b| b.identifier == self.blueprint) {
            errors.push("/blueprint", format!("no blueprint '{}'", pointer_token(&self.blueprint)));
            return Err(errors);
        }
        let scope = Scope::new(blueprints, Some(&self.blueprint));
        let parse =
            |document: &Value, path: &str, errors: &mut FieldErrors| match query::parse(document, &scope, context) {
                Ok(q) => Some(q),
                Err(e) => {
                    errors.0.extend(
                        e.0.into_iter().map(|f| crate::FieldError::new(format!("{path}{}", f.path), f.message)),
                    );
                    None
                }
            };
        if let Some(filter) = &self.filter {
            parse(filter, "/filter", &mut errors);
        }
        let goal = match (&self.goal.scorecard, &self.goal.level, self.goal.rules.is_empty()) {
            (Some(id), Some(level), true) => match scorecards.iter().find(|s| &s.identifier == id) {
                None => {
                    errors.push(
                        "/goal/scorecard",
                        format!("blueprint '{}' has no scorecard '{}'", self.blueprint, pointer_token(id)),
                    );
                    None
                }
                Some(scorecard) => match scorecard.level_index(level) {
                    None => {
                        errors.push("/goal/level", format!("scorecard '{id}' has no level '{}'", pointer_token(level)));
                        None
                    }
                    Some(0) => {
                        errors.push("/goal/level", "every scored entity starts at the lowest level: aim higher");
                        None
                    }
                    Some(index) => {
                        let rules = scorecard
                            .rules
                            .iter()
                            .filter(|r| scorecard.level_index(&r.level).is_some_and(|l| l <= index))
                            .map(|r| r.identifier.clone())
                            .collect();
                        Some(CompiledGoal::Level { scorecard: id.clone(), index, rules })
                    }
                },
            },
            (None, None, false) => {
                let mut seen = HashSet::new();
                let mut rules = Vec::new();
                for (i, rule) in self.goal.rules.iter().enumerate() {
                    let path = format!("/goal/rules/{i}");
                    if let Err(msg) = check_schema_identifier(&rule.identifier) {
                        errors.push(format!("{path}/identifier"), format!("identifier {msg}"));
                    }
                    if !seen.insert(&rule.identifier) {
                        errors
                            .push(format!("{path}/identifier"), format!("rule '{}' is listed twice", rule.identifier));
                    }
                    if let Some(q) = parse(&rule.query, &format!("{path}/query"), &mut errors) {
                        rules.push((rule.identifier.clone(), rule.title.clone(), q));
                    }
                }
                Some(CompiledGoal::Rules(rules))
            }
            _ => {
                errors.push("/goal", "a goal is a scorecard and one of its levels, or a list of rules");
                None
            }
        };
        let rule_ids: HashSet<&str> = match &goal {
            Some(CompiledGoal::Level { rules, .. }) => rules.iter().map(String::as_str).collect(),
            Some(CompiledGoal::Rules(rules)) => rules.iter().map(|(id, _, _)| id.as_str()).collect(),
            None => HashSet::new(),
        };
        for (rule, action) in &self.fixes {
            let path = format!("/fixes/{}", pointer_token(rule));
            if goal.is_some() && !rule_ids.contains(rule.as_str()) {
                errors.push(path.clone(), format!("the goal has no rule '{rule}'"));
            }
            if !actions.contains(action) {
                errors.push(path, format!("no action '{action}'"));
            }
        }
        match goal {
            Some(goal) if errors.is_empty() => Ok(CompiledInitiative { initiative: self.clone(), goal }),
            _ => Err(errors),
        }
    }
}

impl CompiledInitiative {
    /// What `entity` still lacks; None when the goal does not apply to it (a scorecard goal on an
    /// entity that scorecard does not score).
    pub fn assess(&self, entity: &Entity, scorecard: Option<&Scorecard>) -> Option<Assessment> {
        let failing: Vec<(String, String)> = match &self.goal {
            CompiledGoal::Level { scorecard: id, index, rules } => {
                let result = entity.scorecards.get(id)?;
                let reached = result.get("levelIndex").and_then(Value::as_u64).unwrap_or(0) as usize;
                if reached >= *index {
                    return Some(Assessment { done: true, failing: Vec::new() });
                }
                let title_of = |rule: &str| {
                    scorecard
                        .and_then(|s| s.rules.iter().find(|r| r.identifier == rule))
                        .and_then(|r| r.title.clone())
                        .unwrap_or_else(|| rule.to_string())
                };
                result
                    .get("rules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|r| r.get("status").and_then(Value::as_str) == Some("FAILURE"))
                    .filter_map(|r| r.get("identifier").and_then(Value::as_str))
                    .filter(|rule| rules.contains(*rule))
                    .map(|rule| (rule.to_string(), title_of(rule)))
                    .collect()
            }
            CompiledGoal::Rules(rules) => rules
                .iter()
                .filter(|(_, _, query)| !query.matches(entity, &NoGraph))
                .map(|(id, title, _)| (id.clone(), title.clone().unwrap_or_else(|| id.clone())))
                .collect(),
        };
        let failing: Vec<FailingRule> = failing
            .into_iter()
            .map(|(rule, title)| {
                let action = self.initiative.fixes.get(&rule).cloned();
                FailingRule { rule, title, action }
            })
            .collect();
        Some(Assessment { done: failing.is_empty(), failing })
    }

    /// The scorecard the goal is a level of.
    pub fn scorecard(&self) -> Option<&str> {
        match &self.goal {
            CompiledGoal::Level { scorecard, .. } => Some(scorecard),
            CompiledGoal::Rules(_) => None,
        }
    }
}

/// Done and total entities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Tally {
    pub done: u64,
    pub total: u64,
}

impl Tally {
    fn add(&mut self, done: bool) {
        self.total += 1;
        self.done += u64::from(done);
    }

    /// Done, in percent (100 when there is nothing to do).
    pub fn percent(&self) -> f64 {
        if self.total == 0 { 100.0 } else { self.done as f64 * 100.0 / self.total as f64 }
    }
}

/// Progress overall and per owning team (an entity of two teams counts for both; one without a
/// team counts under `""`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Progress {
    #[serde(flatten)]
    pub overall: Tally,
    pub teams: BTreeMap<String, Tally>,
}

impl Progress {
    pub fn add(&mut self, teams: &[String], done: bool) {
        self.overall.add(done);
        if teams.is_empty() {
            self.teams.entry(String::new()).or_default().add(done);
        }
        for team in teams {
            self.teams.entry(team.clone()).or_default().add(done);
        }
    }
}

/// Where an initiative stands against its dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Standing {
    /// Every entity meets the goal (or none is selected).
    Done,
    NotStarted,
    /// At least as far as a steady pace from the start to the target date would be.
    OnTrack,
    Behind,
    /// Past the target date and not done.
    Overdue,
}

/// The pace an initiative needs and the one it keeps.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pace {
    pub standing: Standing,
    /// How many a steady pace would have done by now.
    pub expected_now: f64,
    /// When it will be done at the pace kept since the start (none without progress).
    #[serde(with = "crate::timestamp::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub projected_done: Option<Millis>,
}

impl Initiative {
    /// How many a steady pace from `done_at_start` to every entity would have done at `at`.
    pub fn expected(&self, done_at_start: u64, total: u64, at: Millis) -> f64 {
        let span = (self.target_date - self.starts_at) as f64;
        let elapsed = ((at - self.starts_at) as f64 / span).clamp(0.0, 1.0);
        let start = done_at_start.min(total) as f64;
        start + (total as f64 - start) * elapsed
    }

    /// Where the initiative stands at `now` with `now_tally` done, having had `done_at_start` done
    /// when it started (its first sample).
    pub fn pace(&self, done_at_start: u64, now_tally: Tally, now: Millis) -> Pace {
        let expected_now = self.expected(done_at_start, now_tally.total, now);
        let gained = now_tally.done.saturating_sub(done_at_start) as f64;
        let elapsed = (now - self.starts_at) as f64;
        let left = now_tally.total.saturating_sub(now_tally.done) as f64;
        let projected_done = (gained > 0.0 && elapsed > 0.0 && left > 0.0)
            .then(|| now + (left * elapsed / gained).min((100 * 365 * DAY) as f64) as Millis);
        let standing = if now_tally.done >= now_tally.total {
            Standing::Done
        } else if now < self.starts_at {
            Standing::NotStarted
        } else if now > self.target_date {
            Standing::Overdue
        } else if now_tally.done as f64 + 1e-9 >= expected_now {
            Standing::OnTrack
        } else {
            Standing::Behind
        };
        Pace { standing, expected_now, projected_done }
    }

    /// The scorecard with the goal's rules added at `level` ("promote into the scorecard"), or why
    /// not: only a goal of rules can be promoted, into a scorecard of the same blueprint, under
    /// identifiers it does not use yet.
    pub fn promoted_into(&self, scorecard: &Scorecard, level: &str) -> Result<Scorecard, FieldErrors> {
        let mut errors = FieldErrors::default();
        if !self.goal.rules.is_empty() && scorecard.level_index(level).is_none() {
            errors.push(
                "/level",
                format!("scorecard '{}' has no level '{}'", scorecard.identifier, pointer_token(level)),
            );
        }
        if self.goal.rules.is_empty() {
            errors.push("/goal", "this initiative's goal is already a scorecard level");
        }
        let mut promoted = scorecard.clone();
        for (i, rule) in self.goal.rules.iter().enumerate() {
            if scorecard.rules.iter().any(|r| r.identifier == rule.identifier) {
                errors.push(
                    format!("/goal/rules/{i}/identifier"),
                    format!("scorecard '{}' already has a rule '{}'", scorecard.identifier, rule.identifier),
                );
            }
            promoted.rules.push(ScorecardRule {
                identifier: rule.identifier.clone(),
                title: rule.title.clone(),
                description: Some(format!("From the initiative '{}'.", self.title())),
                level: level.to_string(),
                query: rule.query.clone(),
            });
        }
        errors.into_result(promoted)
    }
}

#[cfg(test)]
mod tests;
