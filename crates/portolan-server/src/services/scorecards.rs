//! Scorecards: definitions per blueprint, and the results kept on every entity. Results are
//! computed in the transaction that writes an entity or changes a scorecard, so they are never
//! stale with respect to the entity's own fields.

use std::collections::BTreeMap;

use portolan_model::query::{Field, Kind, Query, QueryContext, Rule, Scalar, Scope, Shape, Target};
use portolan_model::scorecard::{self, CompiledScorecard, Scorecard};
use portolan_model::{Blueprint, DAY, Millis};
use portolan_store::query_sql::{Aggregate, AggregatePlan, AggregateResult};
use portolan_store::{KpiSample, ScorecardRecord, Tx};
use serde::Serialize;
use serde_json::Value;

use super::actor::Actor;
use super::core::{
    Core, all_blueprints, identifier_from_path, load_blueprint, lock_blueprint, strip_server_fields, to_json,
};
use super::permissions::Permissions;
use crate::error::{Error, ErrorCode, Result};

const PAGE: u32 = 1_000;

/// Entities per level, overall and per owning team.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScorecardSummary {
    pub scorecard: String,
    /// Scored entities per level, lowest level first.
    pub levels: Vec<LevelCount>,
    /// Per team: entities per level title.
    #[schema(value_type = Object)]
    pub teams: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LevelCount {
    pub level: String,
    pub count: u64,
}

/// Parses the scorecards of `blueprint` (which may be a changed version not yet stored).
pub(crate) async fn compiled_scorecards(
    tx: &mut dyn Tx,
    blueprint: &Blueprint,
    now: Millis,
) -> Result<Vec<CompiledScorecard>> {
    let records = tx.scorecards(&blueprint.identifier).await?;
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let all = with_blueprint(tx, blueprint).await?;
    let scope = Scope::new(&all, Some(&blueprint.identifier));
    let context = QueryContext { now, ..QueryContext::default() };
    records
        .iter()
        .map(|r| {
            r.scorecard.compile(&scope, &context).map_err(|errors| {
                let first = errors.0.first().map(|e| format!("{}: {}", e.path, e.message)).unwrap_or_default();
                Error::new(
                    ErrorCode::ValidationFailed,
                    format!(
                        "scorecard '{}' no longer fits blueprint '{}' ({first})",
                        r.scorecard.identifier, blueprint.identifier
                    ),
                )
            })
        })
        .collect()
}

/// Every stored blueprint, with `blueprint` in place of its stored version.
async fn with_blueprint(tx: &mut dyn Tx, blueprint: &Blueprint) -> Result<Vec<Blueprint>> {
    let mut all = all_blueprints(tx).await?;
    all.retain(|b| b.identifier != blueprint.identifier);
    all.push(blueprint.clone());
    Ok(all)
}

/// Scorecard definitions and their summaries.
#[derive(Clone)]
pub struct Scorecards {
    core: Core,
    permissions: Permissions,
    /// Days of level history kept.
    retention_days: u32,
}

impl Scorecards {
    pub fn new(core: Core, permissions: Permissions, retention_days: u32) -> Self {
        Self { core, permissions, retention_days }
    }
}

/// The KPI metric that holds a scorecard's entities per level.
pub fn level_metric(blueprint: &str, scorecard: &str) -> String {
    format!("scorecard/{blueprint}/{scorecard}")
}

/// The team of the series counting every team's entities.
pub const ALL_TEAMS: &str = "*";

/// A scorecard's entities per level, day by day.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LevelHistory {
    pub scorecard: String,
    /// `*` for every team.
    pub team: String,
    /// The level titles, lowest first.
    pub levels: Vec<String>,
    /// Days with a sample, oldest first; a level missing from a day had no entities.
    pub days: Vec<LevelDay>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LevelDay {
    #[serde(with = "portolan_model::timestamp")]
    #[schema(value_type = String)]
    pub day: Millis,
    #[schema(value_type = Object)]
    pub counts: BTreeMap<String, u64>,
}

impl Scorecards {
    pub async fn list_scorecards(&self, blueprint: &str) -> Result<Vec<ScorecardRecord>> {
        let mut tx = self.core.store().read().await?;
        load_blueprint(tx.as_mut(), blueprint).await?;
        Ok(tx.scorecards(blueprint).await?)
    }

    pub async fn get_scorecard(&self, blueprint: &str, identifier: &str) -> Result<ScorecardRecord> {
        let mut tx = self.core.store().read().await?;
        load_blueprint(tx.as_mut(), blueprint).await?;
        find(tx.as_mut(), blueprint, identifier).await
    }

    /// Creates (`path_identifier` None) or replaces a scorecard, and rescores the blueprint's
    /// entities in the same transaction.
    pub async fn put_scorecard(
        &self,
        actor: &Actor,
        blueprint_id: &str,
        path_identifier: Option<&str>,
        mut document: Value,
    ) -> Result<ScorecardRecord> {
        strip_server_fields(&mut document);
        if let Value::Object(map) = &mut document {
            map.remove("blueprint");
        }
        if let Some(id) = path_identifier {
            identifier_from_path(&mut document, id)?;
        }
        let scorecard = Scorecard::from_json(document)?;
        let mut tx = self.core.store().write().await?;
        let blueprint = lock_blueprint(tx.as_mut(), blueprint_id).await?.blueprint;
        self.permissions.require_manage(tx.as_mut(), actor, Some(blueprint_id)).await?;
        let all = with_blueprint(tx.as_mut(), &blueprint).await?;
        let scope = Scope::new(&all, Some(blueprint_id));
        scorecard.compile(&scope, &QueryContext { now: self.core.now(), ..QueryContext::default() })?;
        let existing =
            tx.scorecards(blueprint_id).await?.into_iter().find(|r| r.scorecard.identifier == scorecard.identifier);
        let existing_document = existing.as_ref().map(|r| to_json(&r.scorecard));
        let now = self.core.now();
        let record = match (existing, path_identifier) {
            (Some(_), None) => {
                return Err(Error::new(
                    ErrorCode::AlreadyExists,
                    format!("scorecard '{}' already exists on '{blueprint_id}'", scorecard.identifier),
                ));
            }
            (None, Some(id)) => {
                return Err(Error::not_found(format!("scorecard '{id}' of blueprint '{blueprint_id}'")));
            }
            (Some(old), Some(_)) => ScorecardRecord { scorecard, updated_at: now, updated_by: actor.id.clone(), ..old },
            (None, None) => ScorecardRecord {
                blueprint: blueprint_id.to_string(),
                scorecard,
                created_at: now,
                created_by: actor.id.clone(),
                updated_at: now,
                updated_by: actor.id.clone(),
            },
        };
        tx.put_scorecard(&record).await?;
        let entry = actor
            .entry(now, "scorecard.put", "scorecard", &record.scorecard.identifier)
            .on(blueprint_id)
            .changed(existing_document, Some(to_json(&record.scorecard)));
        tx.append_audit(&[entry]).await?;
        self.rescore(tx.as_mut(), &blueprint).await?;
        tx.commit().await?;
        Ok(record)
    }

    pub async fn delete_scorecard(&self, actor: &Actor, blueprint_id: &str, identifier: &str) -> Result<()> {
        let mut tx = self.core.store().write().await?;
        let blueprint = lock_blueprint(tx.as_mut(), blueprint_id).await?.blueprint;
        self.permissions.require_manage(tx.as_mut(), actor, Some(blueprint_id)).await?;
        let existing = find(tx.as_mut(), blueprint_id, identifier).await?;
        tx.delete_scorecard(blueprint_id, identifier).await?;
        let entry = actor
            .entry(self.core.now(), "scorecard.delete", "scorecard", identifier)
            .on(blueprint_id)
            .changed(Some(to_json(&existing.scorecard)), None);
        tx.append_audit(&[entry]).await?;
        self.rescore(tx.as_mut(), &blueprint).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Recomputes the scorecard results of every entity of a blueprint.
    async fn rescore(&self, tx: &mut dyn Tx, blueprint: &Blueprint) -> Result<()> {
        let compiled = compiled_scorecards(tx, blueprint, self.core.now()).await?;
        let mut after: Option<String> = None;
        loop {
            let page = tx.list_entities(&blueprint.identifier, after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.identifier.clone());
            let results: Vec<_> = page.iter().map(|e| (e.identifier.clone(), scorecard::score(&compiled, e))).collect();
            tx.put_scorecard_results(&blueprint.identifier, &results).await?;
            if page.len() < PAGE as usize {
                break;
            }
        }
        Ok(())
    }

    /// Entities per level of the entities the actor may read — of one team's (`team`), or of all
    /// with a breakdown per team.
    pub async fn scorecard_summary(
        &self,
        actor: &Actor,
        blueprint: &str,
        identifier: &str,
        team: Option<&str>,
    ) -> Result<ScorecardSummary> {
        let mut tx = self.core.store().read().await?;
        load_blueprint(tx.as_mut(), blueprint).await?;
        let record = find(tx.as_mut(), blueprint, identifier).await?;
        let blueprints = all_blueprints(tx.as_mut()).await?;
        let readable = self.permissions.read_filter(tx.as_mut(), actor, Some(blueprint), &blueprints).await?;
        let team_target =
            Target { field: Field::Meta(portolan_model::query::Meta::Team), shape: Shape::Many(Kind::String) };
        let owned = team.map(|team| {
            Query::Rule(Rule::In { target: team_target.clone(), values: vec![Scalar::Str(team.into())], negate: false })
        });
        let restrict = |query: Query| {
            let parts: Vec<Query> = std::iter::once(query).chain(readable.clone()).chain(owned.clone()).collect();
            Query::And(parts)
        };
        let level_target = Target { field: Field::Scorecard(identifier.to_string()), shape: Shape::One(Kind::Number) };
        let plan = |query: Query, function: Aggregate| AggregatePlan {
            blueprint: Some(blueprint.to_string()),
            query,
            function,
            required_relations: vec![],
        };
        // One count per level index.
        let all = restrict(Query::And(Vec::new()));
        let per_level = match tx.aggregate(&plan(all, Aggregate::CountBy(level_target.clone()))).await? {
            AggregateResult::Groups(groups) => groups,
            AggregateResult::Value(_) => Vec::new(),
        };
        let count_of =
            |index: usize| per_level.iter().find(|(v, _)| v.as_f64() == Some(index as f64)).map_or(0, |g| g.1);
        let levels = record
            .scorecard
            .levels
            .iter()
            .enumerate()
            .map(|(index, level)| LevelCount { level: level.title.clone(), count: count_of(index) })
            .collect();
        let mut teams: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (index, level) in record.scorecard.levels.iter().enumerate().filter(|_| team.is_none()) {
            let at_level = restrict(Query::Rule(Rule::Compare {
                target: level_target.clone(),
                op: portolan_model::query::CompareOp::Eq,
                value: Scalar::Num(index as f64),
                negate: false,
            }));
            if let AggregateResult::Groups(groups) =
                tx.aggregate(&plan(at_level, Aggregate::CountBy(team_target.clone()))).await?
            {
                for (team, n) in groups {
                    let team = team.as_str().unwrap_or_default().to_string();
                    teams.entry(team).or_default().insert(level.title.clone(), n);
                }
            }
        }
        Ok(ScorecardSummary { scorecard: identifier.to_string(), levels, teams })
    }
}

impl Scorecards {
    /// Today's sample of every scorecard's entities per level, overall and per team (replacing
    /// today's earlier one), and the days past the retention dropped. The sweeper calls it every
    /// few minutes, so a day's value is its last state.
    pub async fn sample_levels(&self) -> Result<usize> {
        let now = self.core.now();
        let today = now.div_euclid(DAY) * DAY;
        let system = Actor::system("portolan", super::actor::Origin::Cli);
        let blueprints = {
            let mut tx = self.core.store().read().await?;
            all_blueprints(tx.as_mut()).await?
        };
        let mut samples = Vec::new();
        for blueprint in blueprints {
            let id = &blueprint.identifier;
            for record in self.list_scorecards(id).await? {
                let summary = self.scorecard_summary(&system, id, &record.scorecard.identifier, None).await?;
                let metric = level_metric(id, &record.scorecard.identifier);
                let sample = |team: &str, label: &str, value: u64| KpiSample {
                    metric: metric.clone(),
                    team: team.to_string(),
                    label: label.to_string(),
                    value: value as f64,
                };
                samples.extend(summary.levels.iter().map(|l| sample(ALL_TEAMS, &l.level, l.count)));
                for (team, counts) in &summary.teams {
                    samples.extend(counts.iter().map(|(level, n)| sample(team, level, *n)));
                }
            }
        }
        let mut tx = self.core.store().write().await?;
        tx.put_samples(today, &samples).await?;
        tx.delete_samples_before(today - i64::from(self.retention_days) * DAY).await?;
        tx.commit().await?;
        Ok(samples.len())
    }

    /// Stores the samples of a past day as they are given (the demo's history).
    pub async fn record_samples(&self, day: Millis, samples: &[KpiSample]) -> Result<()> {
        let mut tx = self.core.store().write().await?;
        tx.put_samples(day, samples).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A scorecard's entities per level over the last `days` days, for every team (`None`) or one.
    /// Someone who may read only some of the blueprint's entities sees their own teams' only.
    pub async fn level_history(
        &self,
        actor: &Actor,
        blueprint: &str,
        identifier: &str,
        team: Option<&str>,
        days: u32,
    ) -> Result<LevelHistory> {
        if !(1..=3_660).contains(&days) {
            return Err(Error::invalid_at("/days", "days must be between 1 and 3660"));
        }
        let mut tx = self.core.store().read().await?;
        load_blueprint(tx.as_mut(), blueprint).await?;
        let record = find(tx.as_mut(), blueprint, identifier).await?;
        let team = team.unwrap_or(ALL_TEAMS);
        require_team_series(&self.permissions, tx.as_mut(), actor, blueprint, team).await?;
        let now = self.core.now();
        let from = now.div_euclid(DAY) * DAY - i64::from(days - 1) * DAY;
        let metric = level_metric(blueprint, identifier);
        let mut by_day: BTreeMap<Millis, BTreeMap<String, u64>> = BTreeMap::new();
        for (day, sample) in tx.samples(Some(&metric), from, now + 1).await? {
            let counts = by_day.entry(day).or_default();
            if sample.team == team {
                counts.insert(sample.label, sample.value as u64);
            }
        }
        Ok(LevelHistory {
            scorecard: identifier.to_string(),
            team: team.to_string(),
            levels: record.scorecard.levels.iter().map(|l| l.title.clone()).collect(),
            days: by_day.into_iter().map(|(day, counts)| LevelDay { day, counts }).collect(),
        })
    }
}

/// A series of `team` (`*` for all) counts entities of `blueprint`: someone who may read only some
/// of them may read only their own teams' series.
pub(crate) async fn require_team_series(
    permissions: &Permissions,
    tx: &mut dyn Tx,
    actor: &Actor,
    blueprint: &str,
    team: &str,
) -> Result<()> {
    let blueprints = all_blueprints(tx).await?;
    let restricted = permissions.read_filter(tx, actor, Some(blueprint), &blueprints).await?.is_some();
    let own = actor.reader().is_some_and(|user| user.teams.iter().any(|t| t == team));
    if restricted && !own {
        return Err(Error::forbidden(format!(
            "you may read only some of '{blueprint}': ask for the history of one of your teams"
        )));
    }
    Ok(())
}

async fn find(tx: &mut dyn Tx, blueprint: &str, identifier: &str) -> Result<ScorecardRecord> {
    tx.scorecards(blueprint)
        .await?
        .into_iter()
        .find(|r| r.scorecard.identifier == identifier)
        .ok_or_else(|| Error::not_found(format!("scorecard '{identifier}' of blueprint '{blueprint}'")))
}
