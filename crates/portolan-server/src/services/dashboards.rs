//! Dashboards: shared ones, one per team (a default until the team saves its own) and one per
//! person. Each widget is computed for the viewer through the services that answer the same
//! question elsewhere — search, scorecards, initiatives, DORA — so it shows only what the viewer
//! may read, and its numbers name the search behind them.

use std::collections::BTreeMap;
use std::time::Duration;

use portolan_model::dashboard::{self, Dashboard, LineSource, TeamContext, Widget, WidgetKind};
use portolan_model::dora::Metrics;
use portolan_model::initiative::{Pace, Progress};
use portolan_model::{DAY, FieldError, FieldErrors, Millis};
use portolan_store::KpiSample;
use portolan_store::query_sql::AggregateResult;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::actor::{Actor, Origin};
use super::core::{Core, to_json};
use super::dora::{Dora, Evidence, ReportRequest};
use super::initiatives::Initiatives;
use super::permissions::Permissions;
use super::scorecards::{ALL_TEAMS, Scorecards, require_team_series};
use super::search::{AggregateRequest, Search, SearchRequest};
use crate::error::{Error, ErrorCode, Result};

/// The KPI document kind dashboards are kept as.
pub const DOCUMENT_KIND: &str = "dashboard";
/// How long one widget may take before it is shown as too expensive.
const WIDGET_BUDGET: Duration = Duration::from_secs(2);
/// The blueprint a team's default dashboard counts when DORA names none.
const DEFAULT_SERVICE_BLUEPRINT: &str = "service";
/// Most groups a bar or a pie shows.
const MAX_GROUPS: usize = 20;

/// Which dashboard: a shared one, a team's, or the caller's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Shared(String),
    Team(String),
    Personal,
}

impl Address {
    /// Where it is kept, and where the API and the portal find it (`ops`, `teams/team-a`, `me`).
    fn key(&self, actor: &Actor) -> Result<String> {
        Ok(match self {
            Address::Shared(id) => id.clone(),
            Address::Team(team) => format!("teams/{team}"),
            Address::Personal => format!("users/{}", personal_owner(actor)?),
        })
    }

    pub fn path(&self) -> String {
        match self {
            Address::Shared(id) => id.clone(),
            Address::Team(team) => format!("teams/{team}"),
            Address::Personal => "me".into(),
        }
    }
}

fn personal_owner(actor: &Actor) -> Result<&str> {
    actor
        .as_user()
        .map(|u| u.id.as_str())
        .ok_or_else(|| Error::forbidden("a personal dashboard belongs to a signed-in person"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DashboardRecord {
    dashboard: Dashboard,
    #[serde(with = "portolan_model::timestamp")]
    updated_at: Millis,
    updated_by: String,
}

/// A dashboard with every widget computed for the viewer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DashboardView {
    /// `ops`, `teams/<team>` or `me`.
    pub address: String,
    pub dashboard: Dashboard,
    /// False for a team's default, which is not stored until someone saves it.
    pub stored: bool,
    pub may_edit: bool,
    pub widgets: Vec<WidgetView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WidgetView {
    #[serde(rename = "type")]
    pub kind: WidgetKind,
    pub title: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub data: Option<WidgetData>,
    /// Why the widget shows nothing: its query no longer fits the catalog, it took too long, or
    /// it counts what the viewer may not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a widget shows; `search` (a blueprint and a query) is the search behind a number.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum WidgetData {
    Number {
        // Required (null when there is no data), so that a table, which has a search too, is not
        // also read as a number.
        #[schema(required = true)]
        value: Option<f64>,
        search: Evidence,
    },
    Groups {
        groups: Vec<Group>,
    },
    Series {
        points: Vec<SeriesPoint>,
    },
    Table {
        columns: Vec<String>,
        rows: Vec<TableRow>,
        search: Evidence,
    },
    Initiative {
        initiative: String,
        progress: Progress,
        pace: Pace,
    },
    Dora {
        metrics: Metrics,
        team: Option<String>,
        service: Option<String>,
        days: u32,
    },
    Markdown {
        text: String,
    },
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Group {
    pub label: String,
    pub count: u64,
    pub search: Evidence,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesPoint {
    #[serde(with = "portolan_model::timestamp")]
    #[schema(value_type = String)]
    pub day: Millis,
    pub value: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TableRow {
    pub identifier: String,
    pub title: String,
    pub cells: Vec<Value>,
}

/// One line in the list of dashboards.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DashboardEntry {
    pub address: String,
    pub title: String,
    pub stored: bool,
}

#[derive(Clone)]
pub struct Dashboards {
    core: Core,
    permissions: Permissions,
    search: Search,
    scorecards: Scorecards,
    initiatives: Initiatives,
    dora: Dora,
}

impl Dashboards {
    pub fn new(
        core: Core,
        permissions: Permissions,
        search: Search,
        scorecards: Scorecards,
        initiatives: Initiatives,
        dora: Dora,
    ) -> Self {
        Self { core, permissions, search, scorecards, initiatives, dora }
    }

    /// The shared dashboards, every team's, and the caller's own.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<DashboardEntry>> {
        let records = self.records().await?;
        let mut entries: Vec<DashboardEntry> = records
            .iter()
            .filter(|(key, _)| !key.contains('/'))
            .map(|(key, r)| DashboardEntry { address: key.clone(), title: r.dashboard.title().into(), stored: true })
            .collect();
        if actor.as_user().is_some() {
            let key = Address::Personal.key(actor)?;
            let title = records.get(&key).map_or("My dashboard", |r| r.dashboard.title()).to_string();
            entries.push(DashboardEntry { address: "me".into(), title, stored: records.contains_key(&key) });
        }
        for team in self.search.every_entity(actor, "_team").await? {
            let key = format!("teams/{}", team.identifier);
            let title = team.title.clone().unwrap_or_else(|| team.identifier.clone());
            entries.push(DashboardEntry { stored: records.contains_key(&key), address: key, title });
        }
        Ok(entries)
    }

    /// The stored shared dashboards.
    pub async fn shared(&self) -> Result<Vec<Dashboard>> {
        let records = self.records().await?;
        Ok(records.into_iter().filter(|(key, _)| !key.contains('/')).map(|(_, r)| r.dashboard).collect())
    }

    async fn records(&self) -> Result<BTreeMap<String, DashboardRecord>> {
        let mut tx = self.core.store().read().await?;
        let mut records = BTreeMap::new();
        for document in tx.kpi_documents(DOCUMENT_KIND).await? {
            let key = document["key"].as_str().unwrap_or_default().to_string();
            records.insert(key, parse_record(document)?);
        }
        Ok(records)
    }

    async fn stored(&self, key: &str) -> Result<Option<DashboardRecord>> {
        let mut tx = self.core.store().read().await?;
        tx.kpi_document(DOCUMENT_KIND, key).await?.map(parse_record).transpose()
    }

    /// The dashboard as written: stored, or a team's default.
    pub async fn definition(&self, actor: &Actor, address: &Address) -> Result<(Dashboard, bool)> {
        if let Some(record) = self.stored(&address.key(actor)?).await? {
            return Ok((record.dashboard, true));
        }
        match address {
            Address::Team(team) => Ok((self.team_default(actor, team).await?, false)),
            Address::Personal => Ok((
                Dashboard {
                    identifier: "me".into(),
                    title: Some("My dashboard".into()),
                    description: None,
                    widgets: vec![Widget {
                        text: Some("Your own page: *Edit* it to add the widgets you want to see.".into()),
                        ..Widget::of(WidgetKind::Markdown)
                    }],
                },
                false,
            )),
            Address::Shared(id) => Err(Error::not_found(format!("dashboard '{id}'"))),
        }
    }

    async fn team_default(&self, actor: &Actor, team: &str) -> Result<Dashboard> {
        let entity = self
            .search
            .every_match(
                actor,
                "_team",
                Some(json!({"combinator": "and", "rules": [
                {"property": "$identifier", "operator": "=", "value": team}]})),
            )
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::not_found(format!("team '{team}'")))?;
        let title = entity.title.unwrap_or_else(|| team.to_string());
        let dora = self.dora.service_blueprint().await?;
        let service = match &dora {
            Some(blueprint) => Some(blueprint.clone()),
            None => {
                let mut tx = self.core.store().read().await?;
                let exists = tx.blueprint(DEFAULT_SERVICE_BLUEPRINT).await?.is_some();
                exists.then(|| DEFAULT_SERVICE_BLUEPRINT.to_string())
            }
        };
        let mut scorecards = Vec::new();
        if let Some(blueprint) = &service {
            for record in self.scorecards.list_scorecards(blueprint).await? {
                scorecards.push((blueprint.clone(), record.scorecard.identifier));
            }
        }
        let initiatives: Vec<String> = self
            .initiatives
            .records()
            .await?
            .into_iter()
            .filter(|r| r.promoted.is_none() && Some(&r.definition.blueprint) == service.as_ref())
            .map(|r| r.definition.identifier)
            .collect();
        let context = TeamContext {
            service_blueprint: service.as_deref(),
            scorecards: &scorecards,
            dora: dora.is_some(),
            initiatives: &initiatives,
        };
        Ok(dashboard::team_default(team, &title, &context))
    }

    /// The dashboard with every widget computed for the actor.
    pub async fn view(&self, actor: &Actor, address: &Address) -> Result<DashboardView> {
        let (dashboard, stored) = self.definition(actor, address).await?;
        // The widgets are independent reads: computed side by side, each within its own budget.
        let computed = futures_util::future::join_all(dashboard.widgets.iter().map(|w| self.widget(actor, w))).await;
        let widgets = dashboard
            .widgets
            .iter()
            .zip(computed)
            .map(|(widget, result)| {
                let (data, error) = match result {
                    Ok(data) => (Some(data), None),
                    Err(error) => (None, Some(error.message)),
                };
                WidgetView { kind: widget.kind, title: widget.heading(), data, error }
            })
            .collect();
        let may_edit = self.may_edit(actor, address).await?;
        Ok(DashboardView { address: address.path(), dashboard, stored, may_edit, widgets })
    }

    /// Shared dashboards are the admins'; a team's, its members' too; a personal one, its owner's.
    pub async fn may_edit(&self, actor: &Actor, address: &Address) -> Result<bool> {
        if let Address::Personal = address {
            return Ok(actor.as_user().is_some());
        }
        let admin = self.permissions.managed(actor).await?.all;
        Ok(admin || matches!(address, Address::Team(team) if actor.as_user().is_some_and(|u| u.teams.contains(team))))
    }

    /// Saves a dashboard (`create`: a new shared one, refused if it exists; otherwise a shared one
    /// must exist, and a team's or a personal one is created or replaced), once its shape is right
    /// and every widget's query runs within its budget for the person saving it.
    pub async fn put(&self, actor: &Actor, address: &Address, mut document: Value, create: bool) -> Result<Dashboard> {
        if let (Value::Object(map), Address::Team(_) | Address::Personal) = (&mut document, address) {
            let identifier = match address {
                Address::Team(team) => team.clone(),
                _ => "me".into(),
            };
            map.entry("identifier").or_insert(Value::String(identifier));
        }
        let dashboard = Dashboard::from_json(document)?;
        if let Address::Shared(id) = address
            && *id != dashboard.identifier
        {
            return Err(Error::invalid_at(
                "/identifier",
                format!("the identifier cannot change (the URL names '{id}')"),
            ));
        }
        dashboard.check()?;
        if let Address::Shared(id) = address
            && ["me", "teams"].contains(&id.as_str())
        {
            return Err(Error::invalid_at("/identifier", format!("'{id}' names the personal and team dashboards")));
        }
        if !self.may_edit(actor, address).await? {
            return Err(Error::forbidden(match address {
                Address::Team(team) => format!("only admins and members of '{team}' may change its dashboard"),
                _ => "only admins may change a shared dashboard".to_string(),
            }));
        }
        if let Address::Team(team) = address {
            self.team_default(actor, team).await?;
        }
        let mut errors = FieldErrors::default();
        for (i, widget) in dashboard.widgets.iter().enumerate() {
            match self.widget(actor, widget).await {
                Ok(_) => {}
                // Counts the one saving it may not read are not the dashboard's mistake.
                Err(error) if error.code == ErrorCode::Forbidden => {}
                Err(error) if error.details.is_empty() => errors.push(format!("/widgets/{i}"), error.message),
                Err(error) => {
                    for detail in error.details {
                        let at = detail["path"].as_str().unwrap_or_default();
                        let message = detail["message"].as_str().unwrap_or_default();
                        errors.0.push(FieldError::new(format!("/widgets/{i}{at}"), message));
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(Error::invalid(errors));
        }
        let key = address.key(actor)?;
        let exists = self.stored(&key).await?.is_some();
        match address {
            Address::Shared(id) if create && exists => {
                return Err(Error::new(ErrorCode::AlreadyExists, format!("dashboard '{id}' already exists")));
            }
            Address::Shared(id) if !create && !exists => return Err(Error::not_found(format!("dashboard '{id}'"))),
            _ => {}
        }
        let now = self.core.now();
        let record = DashboardRecord { dashboard, updated_at: now, updated_by: actor.id.clone() };
        let mut stored = to_json(&record);
        stored["key"] = Value::String(key.clone());
        let mut tx = self.core.store().write().await?;
        let before = tx.kpi_document(DOCUMENT_KIND, &key).await?;
        tx.put_kpi_document(DOCUMENT_KIND, &key, &stored).await?;
        let entry = actor.entry(now, "dashboard.put", DOCUMENT_KIND, &key).changed(before, Some(stored));
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(record.dashboard)
    }

    /// Deletes a stored dashboard (a team's goes back to its default).
    pub async fn delete(&self, actor: &Actor, address: &Address) -> Result<()> {
        let key = address.key(actor)?;
        if !self.may_edit(actor, address).await? {
            return Err(Error::forbidden("you may not change this dashboard"));
        }
        let mut tx = self.core.store().write().await?;
        let Some(before) = tx.kpi_document(DOCUMENT_KIND, &key).await? else {
            return Err(Error::not_found(format!("dashboard '{}'", address.path())));
        };
        tx.delete_kpi_document(DOCUMENT_KIND, &key).await?;
        tx.append_audit(&[actor
            .entry(self.core.now(), "dashboard.delete", DOCUMENT_KIND, &key)
            .changed(Some(before), None)])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One widget for the actor, within its time budget.
    async fn widget(&self, actor: &Actor, widget: &Widget) -> Result<WidgetData> {
        match tokio::time::timeout(WIDGET_BUDGET, self.compute(actor, widget)).await {
            Ok(result) => result,
            Err(_) => {
                Err(Error::invalid_at("", format!("took longer than {} s: narrow its query", WIDGET_BUDGET.as_secs())))
            }
        }
    }

    async fn compute(&self, actor: &Actor, widget: &Widget) -> Result<WidgetData> {
        let blueprint = widget.blueprint.clone().unwrap_or_default();
        Ok(match widget.kind {
            WidgetKind::Number => WidgetData::Number {
                value: self.aggregate_value(actor, widget).await?,
                search: Evidence::of(&blueprint, widget.query_or_all()),
            },
            WidgetKind::Bar | WidgetKind::Pie => {
                let AggregateResult::Groups(mut groups) =
                    self.search.aggregate(actor, aggregate_request(widget, "countBy")).await?
                else {
                    return Ok(WidgetData::Groups { groups: Vec::new() });
                };
                groups.sort_by_key(|g| std::cmp::Reverse(g.1));
                groups.truncate(MAX_GROUPS);
                let groups = groups
                    .into_iter()
                    .map(|(value, count)| Group {
                        label: label(&value),
                        count,
                        search: Evidence::of(&blueprint, widget.group_query(&value)),
                    })
                    .collect();
                WidgetData::Groups { groups }
            }
            WidgetKind::Line => WidgetData::Series { points: self.series(actor, widget).await? },
            WidgetKind::Table => {
                let request = SearchRequest {
                    query: widget.query.clone(),
                    limit: Some(widget.limit.unwrap_or(10)),
                    ..SearchRequest::default()
                };
                let page = self.search.search(actor, Some(&blueprint), request).await?;
                let columns =
                    if widget.columns.is_empty() { vec!["$title".to_string()] } else { widget.columns.clone() };
                let rows = page
                    .entities
                    .into_iter()
                    .map(|entity| {
                        let document = to_json(&entity);
                        let cells = columns.iter().map(|c| cell(&document, c)).collect();
                        TableRow {
                            title: entity.title.clone().unwrap_or_else(|| entity.identifier.clone()),
                            identifier: entity.identifier,
                            cells,
                        }
                    })
                    .collect();
                WidgetData::Table { columns, rows, search: Evidence::of(&blueprint, widget.query_or_all()) }
            }
            WidgetKind::Scorecard => {
                let scorecard = widget.scorecard.clone().unwrap_or_default();
                let team = widget.team.as_deref();
                let summary = self.scorecards.scorecard_summary(actor, &blueprint, &scorecard, team).await?;
                let owned = team.map(|team| json!({"property": "$team", "operator": "containsAny", "value": [team]}));
                let groups = summary
                    .levels
                    .into_iter()
                    .map(|level| {
                        let rule = json!({"scorecard": scorecard, "operator": "=", "value": level.level});
                        let rules: Vec<Value> = std::iter::once(rule).chain(owned.clone()).collect();
                        let search = Evidence::of(&blueprint, json!({"combinator": "and", "rules": rules}));
                        Group { label: level.level, count: level.count, search }
                    })
                    .collect();
                WidgetData::Groups { groups }
            }
            WidgetKind::Initiative => {
                let id = widget.initiative.clone().unwrap_or_default();
                let report = self.initiatives.report(actor, &id, widget.team.as_deref()).await?;
                WidgetData::Initiative { initiative: id, progress: report.view.progress, pace: report.view.pace }
            }
            WidgetKind::Dora => {
                let days = widget.days.unwrap_or(super::dora::DEFAULT_DAYS);
                let request = ReportRequest {
                    service: widget.service.clone(),
                    team: widget.team.clone(),
                    days: Some(days),
                    ..ReportRequest::default()
                };
                let report = self.dora.report(actor, &request).await?;
                WidgetData::Dora {
                    metrics: report.metrics,
                    team: widget.team.clone(),
                    service: widget.service.clone(),
                    days,
                }
            }
            WidgetKind::Markdown => WidgetData::Markdown { text: widget.text.clone().unwrap_or_default() },
        })
    }

    /// A line's values over its days (90 by default).
    async fn series(&self, actor: &Actor, widget: &Widget) -> Result<Vec<SeriesPoint>> {
        let days = widget.days.unwrap_or(90);
        let from = self.core.now().div_euclid(DAY) * DAY - i64::from(days - 1) * DAY;
        Ok(match widget.line_source() {
            Some(LineSource::Level { blueprint, scorecard, level }) => {
                let history =
                    self.scorecards.level_history(actor, blueprint, scorecard, widget.team.as_deref(), days).await?;
                if !history.levels.iter().any(|l| l == level) {
                    return Err(Error::invalid_at("/level", format!("scorecard '{scorecard}' has no level '{level}'")));
                }
                history
                    .days
                    .into_iter()
                    .map(|d| SeriesPoint { day: d.day, value: d.counts.get(level).copied().unwrap_or(0) as f64 })
                    .collect()
            }
            Some(LineSource::Initiative(id)) => {
                let report = self.initiatives.report(actor, id, widget.team.as_deref()).await?;
                if let Some(why) = report.burnup_withheld {
                    return Err(Error::forbidden(why));
                }
                report
                    .burnup
                    .into_iter()
                    .filter(|d| d.day >= from)
                    .map(|d| SeriesPoint { day: d.day, value: d.done as f64 })
                    .collect()
            }
            Some(LineSource::Aggregate(key)) => {
                let blueprint = widget.blueprint.as_deref().unwrap_or_default();
                // Checks the aggregate itself, then whether the viewer may see every entity's count.
                self.aggregate_value(actor, widget).await?;
                let mut tx = self.core.store().read().await?;
                require_team_series(&self.permissions, tx.as_mut(), actor, blueprint, ALL_TEAMS).await?;
                tx.samples(Some(&key), from, self.core.now() + 1)
                    .await?
                    .into_iter()
                    .map(|(day, sample)| SeriesPoint { day, value: sample.value })
                    .collect()
            }
            None => Vec::new(),
        })
    }

    async fn aggregate_value(&self, actor: &Actor, widget: &Widget) -> Result<Option<f64>> {
        let request = aggregate_request(widget, widget.function.as_deref().unwrap_or("count"));
        Ok(match self.search.aggregate(actor, request).await? {
            AggregateResult::Value(v) => v,
            AggregateResult::Groups(_) => None,
        })
    }

    /// Today's value of every aggregate a stored dashboard draws as a line (the sweeper calls it
    /// with the scorecard samples).
    pub async fn sample_series(&self) -> Result<usize> {
        let system = Actor::system("portolan", Origin::Cli);
        let today = self.core.now().div_euclid(DAY) * DAY;
        let mut samples: BTreeMap<String, KpiSample> = BTreeMap::new();
        for record in self.records().await?.into_values() {
            for widget in &record.dashboard.widgets {
                let Some(LineSource::Aggregate(key)) = widget.line_source() else { continue };
                if samples.contains_key(&key) {
                    continue;
                }
                match self.aggregate_value(&system, widget).await {
                    Ok(value) => {
                        let value = value.unwrap_or(0.0);
                        let sample =
                            KpiSample { metric: key.clone(), team: ALL_TEAMS.into(), label: String::new(), value };
                        samples.insert(key, sample);
                    }
                    Err(error) => tracing::warn!(series = %key, %error, "cannot sample a dashboard's line"),
                }
            }
        }
        let samples: Vec<KpiSample> = samples.into_values().collect();
        self.scorecards.record_samples(today, &samples).await?;
        Ok(samples.len())
    }
}

/// A stored shared dashboard's definition (catalog as code compares with it).
pub(crate) async fn stored_shared(tx: &mut dyn portolan_store::Tx, identifier: &str) -> Result<Option<Dashboard>> {
    let document = tx.kpi_document(DOCUMENT_KIND, identifier).await?;
    Ok(document.map(parse_record).transpose()?.map(|r| r.dashboard))
}

/// What a widget asks of the search: `function` over its blueprint's entities its query admits.
fn aggregate_request(widget: &Widget, function: &str) -> AggregateRequest {
    AggregateRequest {
        query: widget.query.clone(),
        blueprint: widget.blueprint.clone(),
        function: function.to_string(),
        property: widget.property.clone(),
        relation: widget.relation.clone(),
        scorecard: None,
        as_of: None,
    }
}

fn label(value: &Value) -> String {
    match value {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A table's cell: `$title`, `$identifier`, `$team` and the other meta-properties, or a property.
fn cell(document: &Value, column: &str) -> Value {
    match column.strip_prefix('$') {
        Some("title") => {
            document.get("title").cloned().filter(|t| !t.is_null()).unwrap_or_else(|| document["identifier"].clone())
        }
        Some(meta) => document.get(meta).cloned().unwrap_or(Value::Null),
        None => document["properties"].get(column).cloned().unwrap_or(Value::Null),
    }
}

fn parse_record(document: Value) -> Result<DashboardRecord> {
    serde_json::from_value(document)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("a stored dashboard is unreadable: {e}")))
}
