//! DORA metrics: the four keys of a service, a team or the whole organisation over a period, read
//! from the catalog entities the DORA definition names — only those the caller may read — so they
//! are as fresh as the catalog itself.

use std::collections::BTreeMap;

use portolan_model::dora::{self, CompiledDora, DoraDefinition, Metrics, Period};
use portolan_model::query::QueryContext;
use portolan_model::{DAY, Entity, Millis};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::actor::Actor;
use super::core::{Core, all_blueprints, to_json};
use super::permissions::Permissions;
use super::search::Search;
use crate::error::{Error, ErrorCode, Result};
use crate::extract::time_at;

/// Where the definition is kept (absent: the default).
pub const DEFINITION_SETTING: &str = "dora.definition";
/// The longest period a report covers.
pub const MAX_DAYS: u32 = 731;
pub const DEFAULT_DAYS: u32 = 30;

/// Whose metrics, over which period: `service` or `team` (neither: the organisation), and `from`
/// and `to` (RFC 3339; `to` defaults to now) or the last `days`.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    pub service: Option<String>,
    pub team: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub days: Option<u32>,
}

/// The definition in force, and whether it is the built-in default.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionView {
    pub definition: DoraDefinition,
    pub default: bool,
}

/// What a report is about.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportScope {
    /// `organisation`, `team` or `service`.
    pub kind: &'static str,
    pub identifier: Option<String>,
    pub title: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TrendPoint {
    pub period: Period,
    pub metrics: Metrics,
    /// The deployments of this piece of the period.
    pub deployments: Vec<Evidence>,
}

/// One team (of the organisation) or service (of a team) and its metrics.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BreakdownRow {
    pub identifier: String,
    pub title: String,
    pub metrics: Metrics,
}

/// The searches (query-language JSON) that select the entities behind a report's numbers, per
/// blueprint: the deployments of the period and the incidents resolved in it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Evidence {
    pub blueprint: String,
    #[schema(value_type = Object)]
    pub query: Value,
}

impl Evidence {
    pub fn of(blueprint: &str, query: Value) -> Self {
        Evidence { blueprint: blueprint.to_string(), query }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DoraReport {
    pub scope: ReportScope,
    /// The blueprint of the services (absent when no source is defined).
    pub service_blueprint: Option<String>,
    pub period: Period,
    pub metrics: Metrics,
    /// The same length of time just before.
    pub previous: Metrics,
    /// The period in days, weeks or 30-day months.
    pub trend: Vec<TrendPoint>,
    /// Teams for the organisation, services for a team; empty for a service.
    pub breakdown: Vec<BreakdownRow>,
    pub deployments: Vec<Evidence>,
    pub incidents: Vec<Evidence>,
    pub default_definition: bool,
}

#[derive(Clone)]
pub struct Dora {
    core: Core,
    search: Search,
    permissions: Permissions,
}

impl Dora {
    pub fn new(core: Core, search: Search, permissions: Permissions) -> Self {
        Self { core, search, permissions }
    }

    fn context(&self) -> QueryContext {
        QueryContext { now: self.core.now(), ..QueryContext::default() }
    }

    pub async fn definition(&self) -> Result<DefinitionView> {
        let mut tx = self.core.store().read().await?;
        let stored = tx.setting(DEFINITION_SETTING).await?;
        let definition = match &stored {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                Error::new(ErrorCode::Internal, format!("the stored DORA definition is unreadable: {e}"))
            })?,
            None => DoraDefinition::default(),
        };
        Ok(DefinitionView { definition, default: stored.is_none() })
    }

    /// Replaces the definition (admins only), once it fits the catalog's blueprints.
    pub async fn put_definition(&self, actor: &Actor, document: Value) -> Result<DefinitionView> {
        let definition: DoraDefinition = portolan_model::error::from_json(document)?;
        let mut tx = self.core.store().write().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        definition.compile(&all_blueprints(tx.as_mut()).await?, &self.context())?;
        let before = tx.setting(DEFINITION_SETTING).await?.and_then(|text| serde_json::from_str(&text).ok());
        tx.put_setting(DEFINITION_SETTING, &to_json(&definition).to_string()).await?;
        let entry = actor.entry(self.core.now(), "dora.definition.update", "dora", "definition");
        tx.append_audit(&[entry.changed(before, Some(to_json(&definition)))]).await?;
        tx.commit().await?;
        Ok(DefinitionView { definition, default: false })
    }

    /// The definition in force, checked against the blueprints as they are now: the default keeps
    /// only the sources and fields the catalog has; a stored one that no longer fits is refused
    /// with where it does not.
    async fn compiled(&self) -> Result<(CompiledDora, bool)> {
        let view = self.definition().await?;
        let blueprints = {
            let mut tx = self.core.store().read().await?;
            all_blueprints(tx.as_mut()).await?
        };
        let definition = if view.default { view.definition.fitted(&blueprints) } else { view.definition };
        let compiled = definition.compile(&blueprints, &self.context()).map_err(|errors| {
            let mut error = Error::invalid(errors);
            error.message = format!("the DORA definition no longer fits the catalog: {}", error.message);
            error
        })?;
        Ok((compiled, view.default))
    }

    /// The blueprint whose entities the reports call services, if any source is defined.
    pub async fn service_blueprint(&self) -> Result<Option<String>> {
        Ok(self.compiled().await?.0.service_blueprint)
    }

    pub async fn report(&self, actor: &Actor, request: &ReportRequest) -> Result<DoraReport> {
        let period = self.period(request)?;
        let (definition, default_definition) = self.compiled().await?;
        let (scope, services) = self.scope(actor, request, &definition).await?;
        let identifiers: Vec<String> = services.iter().map(|s| s.identifier.clone()).collect();
        let narrowed = (scope.kind != "organisation").then_some(identifiers.as_slice());
        // A team without services has nothing to read.
        let nothing = narrowed.is_some_and(<[String]>::is_empty);
        let since = period.previous().from;
        let mut deployments = Vec::new();
        for source in definition.deployments.iter().filter(|_| !nothing) {
            let query = source.search_query(since, narrowed);
            for entity in self.search.every_match(actor, &source.source.blueprint, Some(query)).await? {
                deployments.extend(source.read(&entity));
            }
        }
        let mut incidents = Vec::new();
        for source in definition.incidents.iter().filter(|_| !nothing) {
            let query = source.search_query(since, narrowed);
            for entity in self.search.every_match(actor, &source.source.blueprint, Some(query)).await? {
                incidents.extend(source.read(&entity));
            }
        }
        let deployments_of = |period: Period| -> Vec<Evidence> {
            let sources = definition.deployments.iter();
            sources.map(|s| Evidence::of(&s.source.blueprint, s.period_query(period, narrowed))).collect()
        };
        let outcomes = dora::outcomes(deployments);
        let trend = period
            .buckets(period.trend_step())
            .into_iter()
            .map(|bucket| TrendPoint {
                period: bucket,
                metrics: dora::measure(&outcomes, &incidents, bucket),
                deployments: deployments_of(bucket),
            })
            .collect();
        Ok(DoraReport {
            metrics: dora::measure(&outcomes, &incidents, period),
            previous: dora::measure(&outcomes, &incidents, period.previous()),
            breakdown: self.breakdown(actor, &scope, &services, &outcomes, &incidents, period).await?,
            scope,
            service_blueprint: definition.service_blueprint.clone(),
            period,
            trend,
            deployments: deployments_of(period),
            incidents: definition
                .incidents
                .iter()
                .map(|s| Evidence::of(&s.source.blueprint, s.period_query(period, narrowed)))
                .collect(),
            default_definition,
        })
    }

    fn period(&self, request: &ReportRequest) -> Result<Period> {
        let instant = |text: &Option<String>, path: &str| text.as_deref().map(|t| time_at(t, path)).transpose();
        let days = request.days.unwrap_or(DEFAULT_DAYS);
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(Error::invalid_at("/days", format!("days must be between 1 and {MAX_DAYS}")));
        }
        if request.days.is_some() && request.from.is_some() {
            return Err(Error::invalid_at("/days", "give either 'from' or 'days', not both"));
        }
        let to = instant(&request.to, "/to")?.unwrap_or_else(|| self.core.now());
        let from = instant(&request.from, "/from")?.unwrap_or(to - Millis::from(days) * DAY);
        if from >= to {
            return Err(Error::invalid_at("/from", "'from' must be before 'to'"));
        }
        if to - from > Millis::from(MAX_DAYS) * DAY {
            return Err(Error::invalid_at("/from", format!("a period is at most {MAX_DAYS} days")));
        }
        Ok(Period { from, to })
    }

    /// What the report is about, and its services (those the caller may read).
    async fn scope(
        &self,
        actor: &Actor,
        request: &ReportRequest,
        definition: &CompiledDora,
    ) -> Result<(ReportScope, Vec<Entity>)> {
        let Some(blueprint) = definition.service_blueprint.as_deref() else {
            let scope = ReportScope { kind: "organisation", identifier: None, title: None };
            return Ok((scope, Vec::new()));
        };
        let rule = |rule: Value| Some(json!({"combinator": "and", "rules": [rule]}));
        match (&request.service, &request.team) {
            (Some(_), Some(_)) => Err(Error::invalid_at("/team", "give either 'service' or 'team', not both")),
            (Some(id), None) => {
                let found = rule(json!({"property": "$identifier", "operator": "=", "value": id}));
                let services = self.search.every_match(actor, blueprint, found).await?;
                let service = services
                    .first()
                    .ok_or_else(|| Error::not_found(format!("entity '{id}' of blueprint '{blueprint}'")))?;
                let scope = ReportScope { kind: "service", identifier: Some(id.clone()), title: service.title.clone() };
                Ok((scope, services))
            }
            (None, Some(team)) => {
                let found = rule(json!({"property": "$identifier", "operator": "=", "value": team}));
                let teams = self.search.every_match(actor, "_team", found).await?;
                let found = teams.first().ok_or_else(|| Error::not_found(format!("team '{team}'")))?;
                let scope = ReportScope { kind: "team", identifier: Some(team.clone()), title: found.title.clone() };
                let owned = rule(json!({"property": "$team", "operator": "containsAny", "value": [team]}));
                Ok((scope, self.search.every_match(actor, blueprint, owned).await?))
            }
            (None, None) => {
                let scope = ReportScope { kind: "organisation", identifier: None, title: None };
                Ok((scope, self.search.every_match(actor, blueprint, None).await?))
            }
        }
    }

    /// Teams of the organisation, or services of a team, that have anything in the period.
    async fn breakdown(
        &self,
        actor: &Actor,
        scope: &ReportScope,
        services: &[Entity],
        outcomes: &[dora::Outcome],
        incidents: &[dora::Incident],
        period: Period,
    ) -> Result<Vec<BreakdownRow>> {
        let by_id: BTreeMap<&str, &Entity> = services.iter().map(|s| (s.identifier.as_str(), s)).collect();
        let (groups, titles) = match scope.kind {
            "organisation" => {
                let teams = self.search.every_entity(actor, "_team").await?;
                let titles: BTreeMap<String, Option<String>> =
                    teams.into_iter().map(|t| (t.identifier, t.title)).collect();
                let groups = dora::measure_by(outcomes, incidents, period, |service| {
                    let teams = by_id.get(service).map(|s| s.team.clone()).unwrap_or_default();
                    if teams.is_empty() { vec![String::new()] } else { teams }
                });
                (groups, titles)
            }
            "team" => {
                let titles = services.iter().map(|s| (s.identifier.clone(), s.title.clone())).collect();
                (dora::measure_by(outcomes, incidents, period, |service| vec![service.to_string()]), titles)
            }
            _ => return Ok(Vec::new()),
        };
        Ok(groups
            .into_iter()
            .map(|(identifier, metrics)| {
                let title = titles.get(&identifier).cloned().flatten();
                let title = title
                    .unwrap_or_else(|| if identifier.is_empty() { "(no team)".into() } else { identifier.clone() });
                BreakdownRow { identifier, title, metrics }
            })
            .collect())
    }
}
