//! DORA's four keys — deployment frequency, lead time for changes, change failure rate and time
//! to restore service — measured from catalog entities, and the performance band of each as the
//! 2023 Accelerate State of DevOps report draws them.
//!
//! A [`DoraDefinition`] says which blueprints hold deployments and incidents and which of their
//! fields mean "deployed at", "commit time", "failed", "revert", "opened" and "resolved". What
//! counts:
//! - Every deployment in the period counts towards the frequency, reverts included.
//! - A *change* is a deployment that is not a revert. It failed when the `failed` query admits it,
//!   or when a later revert of the same service undid it (the revert undoes the service's latest
//!   change before it that no earlier revert undid).
//! - A failed change is restored by the next deployment of its service that did not fail (a
//!   revert included); an incident by its resolution. Time to restore is counted in the period in
//!   which the service was restored; what is not restored by the end of the period is
//!   `unrestored`.
//! - Lead time is from the commit time to the deployment, for changes that carry a commit time.
//!
//! A metric with nothing to measure in a period is `None` ("no data"), never zero.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::blueprint::Blueprint;
use crate::entity::Entity;
use crate::error::FieldErrors;
use crate::query::{self, Field, Kind, Query, QueryContext, Scope, Shape};

use crate::{DAY, HOUR, Millis};

pub const WEEK: Millis = 7 * DAY;
/// The report's month: 30 days.
pub const MONTH: Millis = 30 * DAY;

/// Which entities are deployments and incidents, and what their fields mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DoraDefinition {
    #[serde(default)]
    pub deployments: Vec<DeploymentSource>,
    #[serde(default)]
    pub incidents: Vec<IncidentSource>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSource {
    pub blueprint: String,
    /// The relation to the deployed service.
    pub service: String,
    /// A date-time property or `$createdAt`.
    #[serde(default = "created_at")]
    pub deployed_at: String,
    /// A date-time property: when the deployed change was committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_at: Option<String>,
    /// A query admitting the deployments that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub failed: Option<Value>,
    /// A query admitting the deployments that revert the one before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub revert: Option<Value>,
    /// A query admitting the entities that count at all (production deployments, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IncidentSource {
    pub blueprint: String,
    /// The relation to the affected service.
    pub service: String,
    /// A date-time property or `$createdAt`.
    #[serde(default = "created_at")]
    pub opened_at: String,
    /// A date-time property, empty while the incident is open.
    pub resolved_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
}

fn created_at() -> String {
    "$createdAt".into()
}

fn rule(property: &str, operator: &str, value: &str) -> Value {
    serde_json::json!({"combinator": "and", "rules": [{"property": property, "operator": operator, "value": value}]})
}

impl Default for DoraDefinition {
    /// The demo's `deployment` and `incident` blueprints (which the Deploy and Revert actions
    /// write, and which a PagerDuty or GitHub mapping can fill the same way).
    fn default() -> Self {
        DoraDefinition {
            deployments: vec![DeploymentSource {
                blueprint: "deployment".into(),
                service: "service".into(),
                deployed_at: "deployedAt".into(),
                commit_at: Some("commitAt".into()),
                failed: Some(rule("status", "=", "failed")),
                revert: Some(rule("strategy", "=", "revert")),
                filter: None,
            }],
            incidents: vec![IncidentSource {
                blueprint: "incident".into(),
                service: "service".into(),
                opened_at: "openedAt".into(),
                resolved_at: "resolvedAt".into(),
                filter: None,
            }],
        }
    }
}

/// A definition checked against the blueprints.
#[derive(Debug, Clone)]
pub struct CompiledDora {
    /// The blueprint every source's service relation points at.
    pub service_blueprint: Option<String>,
    pub deployments: Vec<CompiledDeployments>,
    pub incidents: Vec<CompiledIncidents>,
}

#[derive(Debug, Clone)]
pub struct CompiledDeployments {
    pub source: DeploymentSource,
    deployed_at: Field,
    commit_at: Option<Field>,
    failed: Option<Query>,
    revert: Option<Query>,
}

#[derive(Debug, Clone)]
pub struct CompiledIncidents {
    pub source: IncidentSource,
    opened_at: Field,
    resolved_at: Field,
}

/// Checks one source's fields against its blueprint, collecting every mistake at its path.
struct SourceCheck<'a> {
    scope: Scope<'a>,
    context: &'a QueryContext,
    path: String,
    errors: &'a mut FieldErrors,
}

impl SourceCheck<'_> {
    fn date(&mut self, key: &str, name: &str) -> Option<Field> {
        match self.scope.target(name, false) {
            Ok(target) if matches!(target.shape, Shape::One(Kind::DateTime | Kind::Timestamp)) => Some(target.field),
            Ok(_) => {
                self.errors.push(format!("{}/{key}", self.path), format!("'{name}' is not a date-time property"));
                None
            }
            Err(message) => {
                self.errors.push(format!("{}/{key}", self.path), message);
                None
            }
        }
    }

    /// Parses a query of the source, reporting its mistakes under `key`.
    fn query(&mut self, key: &str, document: Option<&Value>) -> Option<Query> {
        let document = document?;
        match query::parse(document, &self.scope, self.context) {
            Ok(query) => Some(query),
            Err(errors) => {
                for error in errors.0 {
                    self.errors.push(format!("{}/{key}{}", self.path, error.path), error.message);
                }
                None
            }
        }
    }

    /// The blueprint the service relation points at.
    fn service(&mut self, blueprint: &Blueprint, relation: &str) -> Option<String> {
        match blueprint.relations.get(relation) {
            Some(def) => Some(def.target.clone()),
            None => {
                let message = format!("blueprint '{}' has no relation '{relation}'", blueprint.identifier);
                self.errors.push(format!("{}/service", self.path), message);
                None
            }
        }
    }
}

impl DoraDefinition {
    /// Checks every source against `blueprints`: each names a blueprint that exists, a relation
    /// to the service, date-time fields and valid queries; all services are of one blueprint.
    pub fn compile(&self, blueprints: &[Blueprint], context: &QueryContext) -> Result<CompiledDora, FieldErrors> {
        let mut errors = FieldErrors::default();
        let mut services: Vec<(String, String)> = Vec::new();
        let mut deployments = Vec::new();
        for (i, source) in self.deployments.iter().enumerate() {
            let path = format!("/deployments/{i}");
            let Some(blueprint) = blueprints.iter().find(|b| b.identifier == source.blueprint) else {
                errors.push(format!("{path}/blueprint"), format!("no blueprint '{}'", source.blueprint));
                continue;
            };
            let scope = Scope::new(blueprints, Some(&source.blueprint));
            let mut check = SourceCheck { scope, context, path: path.clone(), errors: &mut errors };
            let service = check.service(blueprint, &source.service);
            let deployed_at = check.date("deployedAt", &source.deployed_at);
            let commit_at = source.commit_at.as_deref().and_then(|name| check.date("commitAt", name));
            let failed = check.query("failed", source.failed.as_ref());
            let revert = check.query("revert", source.revert.as_ref());
            // The filter goes into the search that reads the source; here it is only checked.
            check.query("filter", source.filter.as_ref());
            services.extend(service.map(|s| (format!("{path}/service"), s)));
            if let Some(deployed_at) = deployed_at {
                let source = source.clone();
                deployments.push(CompiledDeployments { source, deployed_at, commit_at, failed, revert });
            }
        }
        let mut incidents = Vec::new();
        for (i, source) in self.incidents.iter().enumerate() {
            let path = format!("/incidents/{i}");
            let Some(blueprint) = blueprints.iter().find(|b| b.identifier == source.blueprint) else {
                errors.push(format!("{path}/blueprint"), format!("no blueprint '{}'", source.blueprint));
                continue;
            };
            let scope = Scope::new(blueprints, Some(&source.blueprint));
            let mut check = SourceCheck { scope, context, path: path.clone(), errors: &mut errors };
            let service = check.service(blueprint, &source.service);
            let opened_at = check.date("openedAt", &source.opened_at);
            let resolved_at = check.date("resolvedAt", &source.resolved_at);
            check.query("filter", source.filter.as_ref());
            services.extend(service.map(|s| (format!("{path}/service"), s)));
            if let (Some(opened_at), Some(resolved_at)) = (opened_at, resolved_at) {
                incidents.push(CompiledIncidents { source: source.clone(), opened_at, resolved_at });
            }
        }
        let service_blueprint = services.first().map(|(_, s)| s.clone());
        for (path, other) in &services {
            if Some(other) != service_blueprint.as_ref() {
                let first = service_blueprint.as_deref().unwrap_or_default();
                errors.push(path.clone(), format!("points at '{other}'; every source's service must be a '{first}'"));
            }
        }
        errors.into_result(CompiledDora { service_blueprint, deployments, incidents })
    }

    /// The sources whose blueprint exists, each keeping only the fields its blueprint has: how the
    /// default definition meets a catalog that was not made for it.
    pub fn fitted(&self, blueprints: &[Blueprint]) -> DoraDefinition {
        let has = |blueprint: &str, name: &str| {
            name.starts_with('$')
                || blueprints.iter().any(|b| b.identifier == blueprint && b.schema.properties.contains_key(name))
        };
        let related = |blueprint: &str, relation: &str| {
            blueprints.iter().any(|b| b.identifier == blueprint && b.relations.contains_key(relation))
        };
        let deployments = self
            .deployments
            .iter()
            .filter(|s| related(&s.blueprint, &s.service) && has(&s.blueprint, &s.deployed_at))
            .map(|s| DeploymentSource { commit_at: s.commit_at.clone().filter(|p| has(&s.blueprint, p)), ..s.clone() })
            .collect();
        let incidents = self
            .incidents
            .iter()
            .filter(|s| {
                related(&s.blueprint, &s.service)
                    && has(&s.blueprint, &s.opened_at)
                    && has(&s.blueprint, &s.resolved_at)
            })
            .cloned()
            .collect();
        DoraDefinition { deployments, incidents }
    }
}

/// A search query (JSON, as the API takes it): `time`, the source's filter, and the services when
/// they are narrowed.
fn source_query(filter: Option<&Value>, relation: &str, services: Option<&[String]>, time: Value) -> Value {
    let mut rules = vec![time];
    if let Some(services) = services {
        rules.push(serde_json::json!({"relation": relation, "operator": "in", "value": services}));
    }
    rules.extend(filter.cloned());
    serde_json::json!({"combinator": "and", "rules": rules})
}

/// `from <= field < to`.
fn within(field: &str, period: Period) -> Value {
    serde_json::json!({"combinator": "and", "rules": [
        {"property": field, "operator": ">=", "value": crate::format_millis(period.from)},
        {"property": field, "operator": "<", "value": crate::format_millis(period.to)}]})
}

impl CompiledDeployments {
    /// The deployments of `services` (all when `None`) made at or after `since`.
    pub fn search_query(&self, since: Millis, services: Option<&[String]>) -> Value {
        let time = serde_json::json!({"property": self.source.deployed_at, "operator": ">=",
                                      "value": crate::format_millis(since)});
        source_query(self.source.filter.as_ref(), &self.source.service, services, time)
    }

    /// The deployments of `period`: what the report's deployment numbers count.
    pub fn period_query(&self, period: Period, services: Option<&[String]>) -> Value {
        let time = within(&self.source.deployed_at, period);
        source_query(self.source.filter.as_ref(), &self.source.service, services, time)
    }

    /// What one entity (found by [`Self::search_query`], which applies the source's filter) says
    /// about a deployment: one per service it names; nothing when it has no deployment time.
    pub fn read(&self, entity: &Entity) -> Vec<Deployment> {
        let Some(at) = instant(entity, &self.deployed_at) else { return Vec::new() };
        let commit_at = self.commit_at.as_ref().and_then(|f| instant(entity, f));
        let failed = self.failed.as_ref().is_some_and(|q| q.matches(entity, &query::NoGraph));
        let revert = self.revert.as_ref().is_some_and(|q| q.matches(entity, &query::NoGraph));
        related(entity, &self.source.service)
            .into_iter()
            .map(|service| Deployment { identifier: entity.identifier.clone(), service, at, commit_at, failed, revert })
            .collect()
    }
}

impl CompiledIncidents {
    /// The incidents of `services` still open or resolved at or after `since`.
    pub fn search_query(&self, since: Millis, services: Option<&[String]>) -> Value {
        let resolved = &self.source.resolved_at;
        let time = serde_json::json!({"combinator": "or", "rules": [
            {"property": resolved, "operator": "isEmpty"},
            {"property": resolved, "operator": ">=", "value": crate::format_millis(since)}]});
        source_query(self.source.filter.as_ref(), &self.source.service, services, time)
    }

    /// The incidents resolved in `period`.
    pub fn period_query(&self, period: Period, services: Option<&[String]>) -> Value {
        let time = within(&self.source.resolved_at, period);
        source_query(self.source.filter.as_ref(), &self.source.service, services, time)
    }

    /// What one entity (found by [`Self::search_query`]) says about an incident.
    pub fn read(&self, entity: &Entity) -> Vec<Incident> {
        let Some(opened) = instant(entity, &self.opened_at) else { return Vec::new() };
        let resolved = instant(entity, &self.resolved_at).filter(|r| *r >= opened);
        related(entity, &self.source.service)
            .into_iter()
            .map(|service| Incident { identifier: entity.identifier.clone(), service, opened, resolved })
            .collect()
    }
}

fn instant(entity: &Entity, field: &Field) -> Option<Millis> {
    match query::raw(entity, field)? {
        Value::String(text) => crate::blueprint::parse_date_time(&text),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn related(entity: &Entity, relation: &str) -> Vec<String> {
    match entity.relations.get(relation) {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// One deployment of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub identifier: String,
    pub service: String,
    pub at: Millis,
    pub commit_at: Option<Millis>,
    pub failed: bool,
    pub revert: bool,
}

/// One incident of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub identifier: String,
    pub service: String,
    pub opened: Millis,
    pub resolved: Option<Millis>,
}

/// A deployment with what came after it: whether it failed (by its own status or a revert) and
/// when its service was restored.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub deployment: Deployment,
    pub failed: bool,
    pub restored: Option<Millis>,
}

/// Follows each service's deployments in time: which changes failed, and when each was restored.
pub fn outcomes(mut deployments: Vec<Deployment>) -> Vec<Outcome> {
    deployments.sort_by(|a, b| (&a.service, a.at, &a.identifier).cmp(&(&b.service, b.at, &b.identifier)));
    let mut out: Vec<Outcome> = deployments
        .into_iter()
        .map(|d| Outcome { failed: d.failed && !d.revert, restored: None, deployment: d })
        .collect();
    let mut start = 0;
    while start < out.len() {
        let service = out[start].deployment.service.clone();
        let end = start + out[start..].iter().take_while(|o| o.deployment.service == service).count();
        // Changes not yet undone, latest last: a revert undoes the top one.
        let mut undoable: Vec<usize> = Vec::new();
        for i in start..end {
            if out[i].deployment.revert {
                if let Some(undone) = undoable.pop() {
                    out[undone].failed = true;
                }
            } else {
                undoable.push(i);
            }
        }
        // A failure lasts until the next deployment that did not fail.
        for i in start..end {
            if out[i].failed {
                out[i].restored = out[i + 1..end]
                    .iter()
                    .find(|later| !later.failed && !later.deployment.failed)
                    .map(|later| later.deployment.at);
            }
        }
        start = end;
    }
    out
}

/// `[from, to)`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Period {
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String)]
    pub from: Millis,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String)]
    pub to: Millis,
}

impl Period {
    pub fn contains(&self, at: Millis) -> bool {
        self.from <= at && at < self.to
    }

    pub fn days(&self) -> f64 {
        (self.to - self.from) as f64 / DAY as f64
    }

    /// The period of the same length just before this one.
    pub fn previous(&self) -> Period {
        Period { from: self.from - (self.to - self.from), to: self.from }
    }

    /// This period cut into consecutive pieces of `step` (the last one may be shorter).
    pub fn buckets(&self, step: Millis) -> Vec<Period> {
        let step = step.max(1);
        let mut out = Vec::new();
        let mut from = self.from;
        while from < self.to {
            out.push(Period { from, to: (from + step).min(self.to) });
            from += step;
        }
        out
    }

    /// Days for a period of up to a month, weeks up to half a year, months beyond.
    pub fn trend_step(&self) -> Millis {
        match self.to - self.from {
            len if len <= 31 * DAY => DAY,
            len if len <= 184 * DAY => WEEK,
            _ => MONTH,
        }
    }
}

/// A performance band of the 2023 Accelerate State of DevOps report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    Elite,
    High,
    Medium,
    Low,
}

impl Band {
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Elite => "elite",
            Band::High => "high",
            Band::Medium => "medium",
            Band::Low => "low",
        }
    }

    /// On demand (daily or more), between daily and weekly, between weekly and monthly, less.
    pub fn of_frequency(per_day: f64) -> Band {
        match per_day {
            f if f >= 1.0 => Band::Elite,
            f if f >= 1.0 / 7.0 => Band::High,
            f if f >= 1.0 / 30.0 => Band::Medium,
            _ => Band::Low,
        }
    }

    /// Under a day, under a week, under a month, longer.
    pub fn of_lead_time(ms: Millis) -> Band {
        Self::under(ms, [DAY, WEEK, MONTH])
    }

    /// At most 5 %, 10 %, 15 %, more.
    pub fn of_failure_rate(rate: f64) -> Band {
        match rate {
            r if r <= 0.05 => Band::Elite,
            r if r <= 0.10 => Band::High,
            r if r <= 0.15 => Band::Medium,
            _ => Band::Low,
        }
    }

    /// Under an hour, under a day, under a week, longer.
    pub fn of_restore_time(ms: Millis) -> Band {
        Self::under(ms, [HOUR, DAY, WEEK])
    }

    fn under(ms: Millis, [elite, high, medium]: [Millis; 3]) -> Band {
        match ms {
            m if m < elite => Band::Elite,
            m if m < high => Band::High,
            m if m < medium => Band::Medium,
            _ => Band::Low,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Frequency {
    pub deployments: u64,
    pub per_day: f64,
    pub band: Band,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Duration {
    /// The median, in milliseconds.
    pub median_ms: Millis,
    /// How many durations the median is of.
    pub samples: u64,
    pub band: Band,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureRate {
    pub failed: u64,
    pub changes: u64,
    pub rate: f64,
    pub band: Band,
}

/// The four keys over one period; a key with nothing to measure is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub deployment_frequency: Option<Frequency>,
    pub lead_time: Option<Duration>,
    pub change_failure_rate: Option<FailureRate>,
    pub time_to_restore: Option<Duration>,
    /// Failed changes and incidents not restored by the end of the period.
    pub unrestored: u64,
}

impl Metrics {
    /// Whether the period holds nothing at all to measure.
    pub fn is_empty(&self) -> bool {
        self.deployment_frequency.is_none()
            && self.lead_time.is_none()
            && self.change_failure_rate.is_none()
            && self.time_to_restore.is_none()
            && self.unrestored == 0
    }
}

/// The median of `values` (the mean of the middle two when there is an even number).
pub fn median(mut values: Vec<Millis>) -> Option<Millis> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2),
    }
}

fn duration(values: Vec<Millis>, band: fn(Millis) -> Band) -> Option<Duration> {
    let samples = values.len() as u64;
    median(values).map(|median_ms| Duration { median_ms, samples, band: band(median_ms) })
}

/// The four keys of `period`, from the outcomes of every deployment (those before and after the
/// period too: a revert or a restore may fall outside it) and the incidents.
pub fn measure(outcomes: &[Outcome], incidents: &[Incident], period: Period) -> Metrics {
    let in_period: Vec<&Outcome> = outcomes.iter().filter(|o| period.contains(o.deployment.at)).collect();
    let deployments = in_period.len() as u64;
    let deployment_frequency = (deployments > 0).then(|| {
        let per_day = deployments as f64 / period.days();
        Frequency { deployments, per_day, band: Band::of_frequency(per_day) }
    });
    let changes: Vec<&&Outcome> = in_period.iter().filter(|o| !o.deployment.revert).collect();
    let failed = changes.iter().filter(|o| o.failed).count() as u64;
    let change_failure_rate = (!changes.is_empty()).then(|| {
        let rate = failed as f64 / changes.len() as f64;
        FailureRate { failed, changes: changes.len() as u64, rate, band: Band::of_failure_rate(rate) }
    });
    let leads = changes
        .iter()
        .filter_map(|o| o.deployment.commit_at.map(|c| o.deployment.at - c))
        .filter(|lead| *lead >= 0)
        .collect();
    let failures = outcomes.iter().filter(|o| o.failed).map(|o| (o.deployment.at, o.restored));
    let troubles: Vec<(Millis, Option<Millis>)> =
        failures.chain(incidents.iter().map(|i| (i.opened, i.resolved))).collect();
    let restores = troubles
        .iter()
        .filter_map(|(start, end)| end.filter(|end| period.contains(*end)).map(|end| end - start))
        .collect();
    let unrestored =
        troubles.iter().filter(|(start, end)| *start < period.to && end.is_none_or(|end| end >= period.to)).count();
    Metrics {
        deployment_frequency,
        lead_time: duration(leads, Band::of_lead_time),
        change_failure_rate,
        time_to_restore: duration(restores, Band::of_restore_time),
        unrestored: unrestored as u64,
    }
}

/// The metrics of each group (a team, a service) that has anything in `period`, by key.
pub fn measure_by<K: Ord + Clone>(
    outcomes: &[Outcome],
    incidents: &[Incident],
    period: Period,
    group: impl Fn(&str) -> Vec<K>,
) -> BTreeMap<K, Metrics> {
    let mut outcomes_by: BTreeMap<K, Vec<Outcome>> = BTreeMap::new();
    let mut incidents_by: BTreeMap<K, Vec<Incident>> = BTreeMap::new();
    for outcome in outcomes {
        for key in group(&outcome.deployment.service) {
            outcomes_by.entry(key).or_default().push(outcome.clone());
        }
    }
    for incident in incidents {
        for key in group(&incident.service) {
            incidents_by.entry(key).or_default().push(incident.clone());
        }
    }
    let keys: std::collections::BTreeSet<K> = outcomes_by.keys().chain(incidents_by.keys()).cloned().collect();
    keys.into_iter()
        .map(|key| {
            let o = outcomes_by.get(&key).map(Vec::as_slice).unwrap_or_default();
            let i = incidents_by.get(&key).map(Vec::as_slice).unwrap_or_default();
            (key, measure(o, i, period))
        })
        .filter(|(_, metrics)| !metrics.is_empty())
        .collect()
}

#[cfg(test)]
mod tests;
