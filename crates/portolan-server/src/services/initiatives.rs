//! Initiatives: goals for a set of entities by a date. Their definitions are KPI documents; their
//! progress is read live from the catalog (only what the caller may read), sampled daily for the
//! burn-up, and their owners are reminded of what is left through a webhook or a Slack webhook.

use std::collections::BTreeMap;

use portolan_model::guardrail::NotifyFormat;
use portolan_model::initiative::{Assessment, CompiledInitiative, Initiative, Pace, Progress, Standing, Tally};
use portolan_model::notification;
use portolan_model::query::QueryContext;
use portolan_model::scorecard::Scorecard;
use portolan_model::{DAY, HOUR, Millis, format_millis};
use portolan_store::{KpiSample, Tx};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::actor::{Actor, Origin};
use super::core::{Core, all_blueprints, identifier_from_path, strip_server_fields, to_json};
use super::notifications;
use super::permissions::Permissions;
use super::scorecards::{ALL_TEAMS, Scorecards, require_team_series};
use super::search::Search;
use crate::error::{Error, ErrorCode, Result};
use crate::outbound::{Outbound, Purpose};

/// The KPI document kind initiatives are kept as.
pub const DOCUMENT_KIND: &str = "initiative";
/// Entities listed per team in a reminder.
const REMINDER_ENTITIES: usize = 10;

/// An initiative as stored: its definition and what the server keeps about it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitiativeRecord {
    pub definition: Initiative,
    #[serde(with = "portolan_model::timestamp")]
    #[schema(value_type = String)]
    pub created_at: Millis,
    pub created_by: String,
    #[serde(with = "portolan_model::timestamp")]
    #[schema(value_type = String)]
    pub updated_at: Millis,
    pub updated_by: String,
    /// The scorecard level its rules were promoted into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<Promotion>,
    /// The last reminder sent, and why it failed if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reminder: Option<Reminder>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    pub scorecard: String,
    pub level: String,
    #[serde(with = "portolan_model::timestamp")]
    #[schema(value_type = String)]
    pub at: Millis,
    pub by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reminder {
    #[serde(with = "portolan_model::timestamp")]
    #[schema(value_type = String)]
    pub at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An initiative with its progress, as the caller may see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitiativeView {
    pub initiative: InitiativeRecord,
    pub progress: Progress,
    pub pace: Pace,
}

/// One initiative of the list: assessed, or with why it cannot be now (its scorecard or a
/// property it names is gone), so that one broken initiative does not hide the others.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Listed {
    Assessed(InitiativeView),
    Unassessed { initiative: InitiativeRecord, error: String },
}

/// An entity the goal applies to, and what it still lacks.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EntityProgress {
    pub identifier: String,
    pub title: String,
    pub team: Vec<String>,
    #[serde(flatten)]
    pub assessment: Assessment,
}

/// The full report: progress, the entities (what is not done first), and the burn-up.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitiativeReport {
    #[serde(flatten)]
    pub view: InitiativeView,
    /// The team the report is narrowed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub entities: Vec<EntityProgress>,
    /// Done and total per day since the start, oldest first.
    pub burnup: Vec<BurnupDay>,
    /// Why there is no burn-up: every team's, to someone who may read only some of the entities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burnup_withheld: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BurnupDay {
    #[serde(with = "portolan_model::timestamp")]
    #[schema(value_type = String)]
    pub day: Millis,
    pub done: u64,
    pub total: u64,
}

/// Where a promotion goes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub scorecard: String,
    pub level: String,
}

/// The KPI metric holding an initiative's burn-up (labels `done` and `total`).
fn burnup_metric(identifier: &str) -> String {
    format!("initiative/{identifier}")
}

#[derive(Clone)]
pub struct Initiatives {
    core: Core,
    permissions: Permissions,
    search: Search,
    scorecards: Scorecards,
    outbound: std::sync::Arc<Outbound>,
    public_url: std::sync::Arc<str>,
}

impl Initiatives {
    pub fn new(
        core: Core,
        permissions: Permissions,
        search: Search,
        scorecards: Scorecards,
        outbound: std::sync::Arc<Outbound>,
        public_url: std::sync::Arc<str>,
    ) -> Self {
        Self { core, permissions, search, scorecards, outbound, public_url }
    }

    pub async fn records(&self) -> Result<Vec<InitiativeRecord>> {
        let mut tx = self.core.store().read().await?;
        tx.kpi_documents(DOCUMENT_KIND).await?.into_iter().map(parse_record).collect()
    }

    pub async fn record(&self, identifier: &str) -> Result<InitiativeRecord> {
        let mut tx = self.core.store().read().await?;
        find(tx.as_mut(), identifier).await
    }

    /// Creates (`path_identifier` None) or replaces an initiative: whoever may manage its
    /// blueprint (and, on a replace, the blueprint it had).
    pub async fn put(
        &self,
        actor: &Actor,
        path_identifier: Option<&str>,
        mut document: Value,
    ) -> Result<InitiativeRecord> {
        strip_server_fields(&mut document);
        if let Some(id) = path_identifier {
            identifier_from_path(&mut document, id)?;
        }
        let initiative = Initiative::from_json(document)?;
        let now = self.core.now();
        let mut tx = self.core.store().write().await?;
        self.permissions.require_manage(tx.as_mut(), actor, Some(&initiative.blueprint)).await?;
        self.compile(tx.as_mut(), &initiative).await?;
        let before = tx.kpi_document(DOCUMENT_KIND, &initiative.identifier).await?;
        let existing = before.clone().map(parse_record).transpose()?;
        let record = match (existing, path_identifier) {
            (Some(_), None) => {
                return Err(Error::new(
                    ErrorCode::AlreadyExists,
                    format!("initiative '{}' already exists", initiative.identifier),
                ));
            }
            (None, Some(id)) => return Err(Error::not_found(format!("initiative '{id}'"))),
            (Some(old), Some(_)) => {
                self.permissions.require_manage(tx.as_mut(), actor, Some(&old.definition.blueprint)).await?;
                InitiativeRecord { definition: initiative, updated_at: now, updated_by: actor.id.clone(), ..old }
            }
            (None, None) => InitiativeRecord {
                definition: initiative,
                created_at: now,
                created_by: actor.id.clone(),
                updated_at: now,
                updated_by: actor.id.clone(),
                promoted: None,
                last_reminder: None,
            },
        };
        let after = to_json(&record);
        tx.put_kpi_document(DOCUMENT_KIND, &record.definition.identifier, &after).await?;
        let verb = if before.is_some() { "initiative.update" } else { "initiative.create" };
        let entry = actor.entry(now, verb, DOCUMENT_KIND, &record.definition.identifier).changed(before, Some(after));
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(record)
    }

    pub async fn delete(&self, actor: &Actor, identifier: &str) -> Result<()> {
        let mut tx = self.core.store().write().await?;
        let record = find(tx.as_mut(), identifier).await?;
        self.permissions.require_manage(tx.as_mut(), actor, Some(&record.definition.blueprint)).await?;
        tx.delete_kpi_document(DOCUMENT_KIND, identifier).await?;
        let entry = actor
            .entry(self.core.now(), "initiative.delete", DOCUMENT_KIND, identifier)
            .changed(Some(to_json(&record)), None);
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks an initiative against the catalog as it is now.
    async fn compile(&self, tx: &mut dyn Tx, initiative: &Initiative) -> Result<CompiledInitiative> {
        let blueprints = all_blueprints(tx).await?;
        let scorecards: Vec<Scorecard> = if blueprints.iter().any(|b| b.identifier == initiative.blueprint) {
            tx.scorecards(&initiative.blueprint).await?.into_iter().map(|r| r.scorecard).collect()
        } else {
            Vec::new()
        };
        let actions: Vec<String> = tx.actions().await?.into_iter().map(|r| r.action.identifier).collect();
        let context = QueryContext { now: self.core.now(), ..QueryContext::default() };
        Ok(initiative.compile(&blueprints, &scorecards, &actions, &context)?)
    }

    /// Every initiative with its progress over what the caller may read.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<Listed>> {
        let mut listed = Vec::new();
        for record in self.records().await? {
            listed.push(match self.assess(actor, record.clone(), None).await {
                Ok(report) => Listed::Assessed(report.view),
                Err(error) if error.code == ErrorCode::ValidationFailed => {
                    Listed::Unassessed { initiative: record, error: error.message }
                }
                Err(error) => return Err(error),
            });
        }
        Ok(listed)
    }

    /// One initiative's report, narrowed to a team's entities if asked.
    pub async fn report(&self, actor: &Actor, identifier: &str, team: Option<&str>) -> Result<InitiativeReport> {
        let record = self.record(identifier).await?;
        let mut report = self.assess(actor, record, team).await?;
        match self.burnup(actor, &report.view.initiative.definition, team).await {
            Ok(burnup) => report.burnup = burnup,
            Err(error) if error.code == ErrorCode::Forbidden => report.burnup_withheld = Some(error.message),
            Err(error) => return Err(error),
        }
        let done_at_start = report.burnup.first().map_or(report.view.progress.overall.done, |d| d.done);
        report.view.pace =
            report.view.initiative.definition.pace(done_at_start, report.view.progress.overall, self.core.now());
        Ok(report)
    }

    /// Progress and each entity's assessment, from the entities the caller may read.
    async fn assess(&self, actor: &Actor, record: InitiativeRecord, team: Option<&str>) -> Result<InitiativeReport> {
        let (compiled, scorecard) = {
            let mut tx = self.core.store().read().await?;
            let compiled = self.compile(tx.as_mut(), &record.definition).await.map_err(|error| {
                Error::new(
                    ErrorCode::ValidationFailed,
                    format!(
                        "initiative '{}' no longer fits the catalog: {}",
                        record.definition.identifier, error.message
                    ),
                )
            })?;
            let scorecard = match compiled.scorecard() {
                Some(id) => tx
                    .scorecards(&record.definition.blueprint)
                    .await?
                    .into_iter()
                    .find(|r| r.scorecard.identifier == id),
                None => None,
            };
            (compiled, scorecard.map(|r| r.scorecard))
        };
        let definition = &record.definition;
        let entities = self.search.every_match(actor, &definition.blueprint, definition.filter.clone()).await?;
        let mut progress = Progress::default();
        let mut rows = Vec::new();
        for entity in entities {
            if team.is_some_and(|t| !entity.team.iter().any(|own| own == t)) {
                continue;
            }
            let Some(assessment) = compiled.assess(&entity, scorecard.as_ref()) else { continue };
            progress.add(&entity.team, assessment.done);
            rows.push(EntityProgress {
                title: entity.title.clone().unwrap_or_else(|| entity.identifier.clone()),
                identifier: entity.identifier,
                team: entity.team,
                assessment,
            });
        }
        rows.sort_by(|a, b| a.assessment.done.cmp(&b.assessment.done).then_with(|| a.identifier.cmp(&b.identifier)));
        let pace = definition.pace(progress.overall.done, progress.overall, self.core.now());
        let mut record = record;
        if !self.permissions.managed(actor).await?.blueprint(&record.definition.blueprint)
            && let Some(notify) = record.definition.reminders.as_mut().and_then(|r| r.notify.as_mut())
        {
            // A Slack webhook's URL is its secret: only those who may change the initiative see it.
            notify.url = "********".into();
        }
        Ok(InitiativeReport {
            view: InitiativeView { initiative: record, progress, pace },
            team: team.map(str::to_string),
            entities: rows,
            burnup: Vec::new(),
            burnup_withheld: None,
        })
    }

    /// Done and total per day from the start (or the retention's first day) until today.
    async fn burnup(&self, actor: &Actor, initiative: &Initiative, team: Option<&str>) -> Result<Vec<BurnupDay>> {
        let team = team.unwrap_or(ALL_TEAMS);
        let mut tx = self.core.store().read().await?;
        require_team_series(&self.permissions, tx.as_mut(), actor, &initiative.blueprint, team).await?;
        let now = self.core.now();
        let from = initiative.starts_at.div_euclid(DAY) * DAY;
        let mut days: BTreeMap<Millis, Tally> = BTreeMap::new();
        for (day, sample) in tx.samples(Some(&burnup_metric(&initiative.identifier)), from, now + 1).await? {
            let tally = days.entry(day).or_default();
            match (sample.team == team, sample.label.as_str()) {
                (true, "done") => tally.done = sample.value as u64,
                (true, "total") => tally.total = sample.value as u64,
                _ => {}
            }
        }
        Ok(days.into_iter().map(|(day, t)| BurnupDay { day, done: t.done, total: t.total }).collect())
    }

    /// Today's burn-up sample of every initiative not yet promoted (the sweeper calls it with the
    /// scorecard samples).
    pub async fn sample_progress(&self) -> Result<usize> {
        let system = Actor::system("portolan", Origin::Cli);
        let today = self.core.now().div_euclid(DAY) * DAY;
        let mut samples = Vec::new();
        for record in self.records().await? {
            if record.promoted.is_some() {
                continue;
            }
            let identifier = record.definition.identifier.clone();
            match self.assess(&system, record, None).await {
                Ok(report) => samples.extend(progress_samples(&identifier, &report.view.progress)),
                Err(error) => {
                    tracing::warn!(initiative = %identifier, %error, "cannot sample an initiative's progress")
                }
            }
        }
        self.scorecards.record_samples(today, &samples).await?;
        Ok(samples.len())
    }

    /// Sends every reminder that is due: an initiative with reminders, started, not past its
    /// target date, not done, last reminded at least `everyDays` ago.
    pub async fn remind_due(&self) -> Result<usize> {
        let now = self.core.now();
        let mut sent = 0;
        for record in self.records().await? {
            let Some(reminders) = &record.definition.reminders else { continue };
            // A failed delivery is tried again an hour later.
            let due = record.last_reminder.as_ref().is_none_or(|r| {
                now - r.at >= i64::from(reminders.every_days) * DAY || (r.error.is_some() && now - r.at >= HOUR)
            });
            let running = (record.definition.starts_at..=record.definition.target_date).contains(&now);
            if due && running && record.promoted.is_none() {
                let identifier = record.definition.identifier.clone();
                if let Some(error) = self.send_reminder(&Actor::system("portolan", Origin::Cli), record).await? {
                    tracing::warn!(initiative = %identifier, %error, "an initiative's reminder failed");
                }
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Sends the reminder now (whoever may manage the initiative's blueprint); the error of a
    /// delivery that failed, which is also kept on the initiative.
    pub async fn remind(&self, actor: &Actor, identifier: &str) -> Result<Reminder> {
        let record = self.record(identifier).await?;
        {
            let mut tx = self.core.store().read().await?;
            self.permissions.require_manage(tx.as_mut(), actor, Some(&record.definition.blueprint)).await?;
        }
        if record.definition.reminders.is_none() {
            return Err(Error::invalid_at("/reminders", format!("initiative '{identifier}' has no reminders set")));
        }
        let error = self.send_reminder(actor, record).await?;
        Ok(Reminder { at: self.core.now(), error })
    }

    /// Tells the members of each team what it still has to do (nothing when all is done), and the
    /// initiative's webhook if it has one, and keeps when and how that went. The error of a
    /// failed delivery to the webhook, which is not the caller's.
    async fn send_reminder(&self, actor: &Actor, record: InitiativeRecord) -> Result<Option<String>> {
        let Some(reminders) = record.definition.reminders.clone() else { return Ok(None) };
        let identifier = record.definition.identifier.clone();
        let report = self.assess(actor, record, None).await?;
        let done = report.view.pace.standing == Standing::Done;
        let error = match reminders.notify.filter(|_| !done) {
            None => None,
            Some(notify) => {
                let body = self.reminder_body(&report, notify.format);
                let sent = match self.outbound.request(Purpose::Reminder, reqwest::Method::POST, &notify.url) {
                    Ok(request) => request.json(&body).send().await,
                    Err(refused) => Err(refused),
                };
                match sent {
                    Ok(response) if response.status().is_success() => None,
                    // Neither names the URL: a Slack webhook's URL is its secret.
                    Ok(response) => Some(format!("the reminder webhook answered {}", response.status().as_u16())),
                    Err(error) => Some(format!("the reminder was not delivered: {error}")),
                }
            }
        };
        let now = self.core.now();
        let mut tx = self.core.store().write().await?;
        let mut left: BTreeMap<&str, usize> = BTreeMap::new();
        for entity in report.entities.iter().filter(|e| !e.assessment.done) {
            for team in &entity.team {
                *left.entry(team).or_default() += 1;
            }
        }
        let definition = &report.view.initiative.definition;
        for (team, count) in left {
            for member in notifications::members(tx.as_mut(), &[team.to_string()]).await? {
                let notice = notification::initiative_reminder(
                    &member.id,
                    &identifier,
                    definition.title(),
                    team,
                    count,
                    definition.target_date,
                );
                notifications::tell(tx.as_mut(), notice, now).await?;
            }
            let notice = notification::initiative_reminder(
                "",
                &identifier,
                definition.title(),
                team,
                count,
                definition.target_date,
            );
            notifications::tell_teams(tx.as_mut(), &[team.to_string()], &notice, now).await?;
        }
        if let Ok(mut stored) = find(tx.as_mut(), &identifier).await {
            stored.last_reminder = Some(Reminder { at: self.core.now(), error: error.clone() });
            tx.put_kpi_document(DOCUMENT_KIND, &identifier, &to_json(&stored)).await?;
            tx.commit().await?;
            self.core.wake_worker();
        }
        Ok(error)
    }

    /// The reminder: as JSON (`initiative.reminder`), or a Slack message naming each team's
    /// remaining entities and what they lack.
    fn reminder_body(&self, report: &InitiativeReport, format: NotifyFormat) -> Value {
        let view = &report.view;
        let definition = &view.initiative.definition;
        let url = format!("{}/initiatives/{}", self.public_url, definition.identifier);
        let mut teams: BTreeMap<&str, Vec<&EntityProgress>> = BTreeMap::new();
        for entity in report.entities.iter().filter(|e| !e.assessment.done) {
            if entity.team.is_empty() {
                teams.entry("").or_default().push(entity);
            }
            for team in &entity.team {
                teams.entry(team).or_default().push(entity);
            }
        }
        let lacks = |e: &EntityProgress| e.assessment.failing.iter().map(|f| f.title.clone()).collect::<Vec<_>>();
        match format {
            NotifyFormat::Json => json!({
                "type": "initiative.reminder",
                "initiative": {"identifier": definition.identifier, "title": definition.title(), "owner": definition.owner,
                               "targetDate": format_millis(definition.target_date)},
                "done": view.progress.overall.done, "total": view.progress.overall.total, "standing": view.pace.standing,
                "teams": teams.iter().map(|(team, entities)| json!({
                    "team": team, "remaining": entities.len(),
                    "entities": entities.iter().take(REMINDER_ENTITIES)
                        .map(|e| json!({"identifier": e.identifier, "failing": e.assessment.failing})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "url": url,
            }),
            NotifyFormat::Slack => {
                let mut text = format!(
                    "*{}* ({}): {} of {} done, due {}. {}",
                    definition.title(),
                    definition.owner,
                    view.progress.overall.done,
                    view.progress.overall.total,
                    &format_millis(definition.target_date)[..10],
                    url
                );
                for (team, entities) in &teams {
                    let team = if team.is_empty() { "no team" } else { team };
                    text.push_str(&format!("\n• {team}: {} left", entities.len()));
                    for entity in entities.iter().take(REMINDER_ENTITIES) {
                        text.push_str(&format!("\n    {} lacks {}", entity.title, lacks(entity).join(", ")));
                    }
                }
                json!({"text": text})
            }
        }
    }

    /// Adds a done initiative's rules to a scorecard level, and marks it promoted.
    pub async fn promote(&self, actor: &Actor, identifier: &str, request: PromoteRequest) -> Result<InitiativeRecord> {
        let report = self.assess(actor, self.record(identifier).await?, None).await?;
        let definition = report.view.initiative.definition.clone();
        if report.view.initiative.promoted.is_some() {
            return Err(Error::new(ErrorCode::Conflict, format!("initiative '{identifier}' was promoted already")));
        }
        if report.view.pace.standing != Standing::Done {
            let Tally { done, total } = report.view.progress.overall;
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("{} of {total} entities do not meet the goal yet: promote it once it is done", total - done),
            ));
        }
        let scorecard = self.scorecards.get_scorecard(&definition.blueprint, &request.scorecard).await?.scorecard;
        let promoted = definition.promoted_into(&scorecard, &request.level)?;
        self.scorecards
            .put_scorecard(actor, &definition.blueprint, Some(&request.scorecard), to_json(&promoted))
            .await?;
        let mut tx = self.core.store().write().await?;
        let mut record = find(tx.as_mut(), identifier).await?;
        let before = to_json(&record);
        let at = self.core.now();
        record.promoted =
            Some(Promotion { scorecard: request.scorecard, level: request.level, at, by: actor.id.clone() });
        let after = to_json(&record);
        tx.put_kpi_document(DOCUMENT_KIND, identifier, &after).await?;
        tx.append_audit(&[actor
            .entry(at, "initiative.promote", DOCUMENT_KIND, identifier)
            .changed(Some(before), Some(after))])
            .await?;
        tx.commit().await?;
        Ok(record)
    }
}

/// The samples of an initiative's progress: done and total, overall and per team.
pub fn progress_samples(identifier: &str, progress: &Progress) -> Vec<KpiSample> {
    let metric = burnup_metric(identifier);
    let tally = |team: &str, t: &Tally| {
        [("done", t.done), ("total", t.total)].map(|(label, value)| KpiSample {
            metric: metric.clone(),
            team: team.to_string(),
            label: label.to_string(),
            value: value as f64,
        })
    };
    let mut samples = tally(ALL_TEAMS, &progress.overall).to_vec();
    for (team, t) in &progress.teams {
        samples.extend(tally(team, t));
    }
    samples
}

fn parse_record(document: Value) -> Result<InitiativeRecord> {
    serde_json::from_value(document)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("a stored initiative is unreadable: {e}")))
}

/// A stored initiative's definition (catalog as code compares with it).
pub(crate) async fn stored_initiative(tx: &mut dyn Tx, identifier: &str) -> Result<Option<Initiative>> {
    let document = tx.kpi_document(DOCUMENT_KIND, identifier).await?;
    Ok(document.map(parse_record).transpose()?.map(|r| r.definition))
}

async fn find(tx: &mut dyn Tx, identifier: &str) -> Result<InitiativeRecord> {
    match tx.kpi_document(DOCUMENT_KIND, identifier).await? {
        Some(document) => parse_record(document),
        None => Err(Error::not_found(format!("initiative '{identifier}'"))),
    }
}
