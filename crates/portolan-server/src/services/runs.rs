//! Runs: starting them (from a form or an event), handing them to backends, hearing back from
//! backends and runners, and recovering runs whose runner died. Every change of a run is written
//! with its log line, its change event and the automations it triggers in one transaction.

use std::time::Duration;

use portolan_model::action::{Action, BackendKind, EventKind, InvocationMethod, Operation, RunnerLoss, Trigger};
use portolan_model::run::{Run, RunLog, RunStatus, RunTrigger};
use portolan_model::{Entity, EntityRef, FieldErrors, Millis, format_millis, template};
use portolan_store::{ChangeEvent, Job, NewJob, NewRunLog, RunFilter, RunnerToken, Tx, actions as affected};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::actions::load_action;
use super::catalog::{Catalog, WriteMode};
use super::{Actor, Origin, Principal};
use crate::backends::{Attempt, WebhookRequest};
use crate::error::{Error, ErrorCode, Result};
use crate::keys::RunTokenError;
use crate::outbound::Purpose;
use portolan_model::guardrail::{Approvers, Notify, NotifyFormat, QuotaScope, Verdict};
use portolan_model::permission::{ActionOp, EntityOp};

/// Job kinds this module handles.
pub const DISPATCH: &str = "dispatch";
pub const AUTOMATION: &str = "automation";
/// How long a run token stays valid after the run starts.
const RUN_TOKEN_TTL_MS: Millis = 7 * 24 * 3600 * 1000;
/// Automations triggered by run events that trigger more runs: at most this many hops.
const MAX_AUTOMATION_DEPTH: u32 = 3;
/// Most runs one claim request ends (unrenderable, action gone) before it gives up for now.
const CLAIM_TRIES: usize = 16;
/// Most log lines per append request.
pub const MAX_LOG_LINES: usize = 1_000;
/// Longest log line kept, in bytes (longer ones are cut).
const MAX_LOG_LINE_BYTES: usize = 16 * 1024;
pub const DEFAULT_RUN_PAGE: u32 = 50;
pub const MAX_RUN_PAGE: u32 = 500;

/// `POST /api/v1/actions/{id}/runs`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The form's values.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    /// For DAY-2 and DELETE actions: the entity acted on.
    pub entity: Option<String>,
    /// Why a bound is gone past (by someone its `overrideRole` allows).
    #[serde(default, rename = "overrideReason")]
    pub override_reason: Option<String>,
}

/// What a dry run says would happen.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// Whether the run would be accepted (possibly to wait for approval).
    pub would_start: bool,
    /// `WAITING_FOR_APPROVAL` or `QUEUED`, when it would start.
    pub status: RunStatus,
    pub guardrails: Vec<Verdict>,
    /// What the action's templates render to (a webhook's `url`, `headers` and `body`, a runner's
    /// or NATS `payload`, a built-in backend's `entity`), secrets masked; absent if they fail.
    #[schema(value_type = Option<Object>)]
    pub rendered: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub render_error: Option<String>,
}

/// `PATCH /api/v1/actions/runs/{id}`: what a backend reports.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunReport {
    /// `IN_PROGRESS`, `SUCCESS` or `FAILURE`.
    pub status: Option<String>,
    pub status_label: Option<String>,
    /// A link, or a list of links, to add to the run.
    #[schema(value_type = Option<Object>)]
    pub link: Option<Value>,
    pub summary: Option<String>,
    pub external_run_id: Option<String>,
}

/// One line for a run's log.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    pub message: String,
    /// `stdout`, `stderr` or `backend` (the default).
    pub stream: Option<String>,
}

/// A run handed to a runner, with what it needs to do the work.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerClaim {
    pub run: Run,
    /// The task of the runner's own configuration to run.
    pub task: String,
    /// The rendered payload, secrets included: it goes to the command's stdin, nowhere else.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Reports on this run authenticate with it.
    pub run_token: String,
    pub lease_ms: i64,
}

/// Who holds a claimed run: one claim of one runner token (two hosts sharing a token, or a
/// runner's earlier claim of the same run, are different holders).
fn lease_holder(runner: &RunnerToken, attempt: i64) -> String {
    format!("{} ({}, claim {attempt})", runner.id, runner.name)
}

/// The job that hands a run to a backend the server calls itself.
pub(crate) fn dispatch_job(run: &Run) -> NewJob {
    NewJob {
        kind: DISPATCH.into(),
        dedupe_key: Some(format!("{DISPATCH}:{}", run.id)),
        payload: json!({"run": run.id}),
        run_after: run.created_at,
    }
}

fn new_run_id() -> String {
    format!("r_{}", uuid::Uuid::new_v4().simple())
}

pub(crate) fn log(at: Millis, message: impl Into<String>) -> NewRunLog {
    NewRunLog { at, stream: "portolan".into(), message: message.into() }
}

impl Catalog {
    // ---- starting runs ----

    /// Starts a run of a self-service action: checks the entity, the form and its pickers, then
    /// stores the run and its dispatch together.
    pub async fn create_run(&self, actor: &Actor, action_id: &str, request: RunRequest) -> Result<Run> {
        let (action, run, verdicts) = self.prepare_run(actor, action_id, request).await?;
        refuse_unless_allowed(&verdicts)?;
        let rule = action.approval();
        self.write_run(action, run.clone(), actor.clone()).await?;
        if let Some(rule) = rule
            && let Some(notify) = rule.notify
        {
            self.announce_approval(notify, rule.approvers, &run);
        }
        Ok(run)
    }

    /// Hands a prepared run to the run writer and waits until it is stored or refused.
    async fn write_run(&self, action: Action, run: Run, actor: Actor) -> Result<()> {
        let stopping = || Error::new(ErrorCode::Unavailable, "the server is stopping");
        let (done, written) = tokio::sync::oneshot::channel();
        self.new_runs().send(NewRun { action, run, actor, done }).await.map_err(|_| stopping())?;
        written.await.map_err(|_| stopping())?
    }

    /// Tells the approval webhook of a run waiting for approval, in the background (a failure is
    /// logged; the run waits either way).
    fn announce_approval(&self, notify: Notify, approvers: Option<Approvers>, run: &Run) {
        let url = format!("{}/api/v1/actions/runs/{}", self.engine().public_url(), run.id);
        let expires = run.approval.as_ref().map(|a| format_millis(a.expires_at)).unwrap_or_default();
        let body = match notify.format {
            NotifyFormat::Json => json!({
                "type": "approval.requested", "url": url, "approvers": approvers, "expiresAt": expires,
                "run": {"id": run.id, "action": run.action, "blueprint": run.blueprint, "entity": run.entity,
                        "inputs": run.inputs, "requestedBy": run.trigger.by}
            }),
            NotifyFormat::Slack => {
                let title = run.action_title.clone().unwrap_or_else(|| run.action.clone());
                let on = run.entity.as_ref().map(|e| format!(" on {e}")).unwrap_or_default();
                json!({"text": format!("{} asks to run *{title}*{on}; approve or decline by {expires}: {url}", run.trigger.by)})
            }
        };
        let catalog = self.clone();
        let run_id = run.id.clone();
        tokio::spawn(async move {
            let sent =
                match catalog.engine().outbound.request(Purpose::ApprovalNotice, reqwest::Method::POST, &notify.url) {
                    Ok(request) => request.json(&body).send().await,
                    Err(refused) => Err(refused),
                };
            // Neither says the URL: a Slack webhook's URL is its secret.
            let failure = match sent {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => format!("the approval webhook answered {}", response.status().as_u16()),
                Err(error) => format!("the approval webhook was not told: {error}"),
            };
            tracing::warn!(run = %run_id, %failure, "approvers were not notified");
            catalog.note_on_run(&run_id, format!("approvers were not notified: {failure}")).await;
        });
    }

    /// Adds a line of Portolan's own to a run's log, for what happened beside the run (a notice
    /// that was not delivered); best effort.
    pub(crate) async fn note_on_run(&self, run_id: &str, message: String) {
        let noted = async {
            let mut tx = self.store().write().await?;
            let Some(run) = tx.run(run_id, false).await? else { return Ok(()) };
            tx.append_run_logs(run_id, &[log(self.now(), message)]).await?;
            tx.publish(&ChangeEvent {
                kind: "run.log".into(),
                blueprint: run.blueprint.unwrap_or_default(),
                identifier: run.id,
                version: None,
                property: None,
            })
            .await?;
            tx.commit().await?;
            Ok::<(), Error>(())
        };
        if let Err(err) = noted.await {
            tracing::warn!(run = %run_id, %err, "cannot add a line to the run's log");
        }
    }

    /// What a run would do, and every guardrail's decision on it, without starting it.
    pub async fn dry_run(&self, actor: &Actor, action_id: &str, request: RunRequest) -> Result<DryRun> {
        let (action, run, guardrails) = self.prepare_run(actor, action_id, request).await?;
        let mut tx = self.store().read().await?;
        let (rendered, render_error) = match self.render(tx.as_mut(), &action, &run, "********").await {
            Ok(rendered) => (Some(rendered.masked), None),
            Err(error) => (None, Some(error)),
        };
        let would_start = guardrails.iter().all(|v| v.passed);
        Ok(DryRun { would_start, status: run.status, guardrails, rendered, render_error })
    }

    /// Checks a run request (the action, the caller's right to run it, the entity, the form and
    /// its pickers) and builds the run, with every guardrail's verdict on it.
    async fn prepare_run(
        &self,
        actor: &Actor,
        action_id: &str,
        request: RunRequest,
    ) -> Result<(Action, Run, Vec<Verdict>)> {
        let mut tx = self.store().read().await?;
        let record = load_action(tx.as_mut(), action_id).await?;
        if !self.may_see_action(tx.as_mut(), actor, &record).await? {
            return Err(Error::hidden(format!("action '{action_id}'")));
        }
        let action = record.action;
        let Trigger::SelfService { operation, blueprint_identifier, user_inputs, condition } = &action.trigger else {
            return Err(Error::new(
                ErrorCode::ValidationFailed,
                format!("'{action_id}' is an automation: events start it, not people"),
            ));
        };
        let entity = match (operation, &request.entity, blueprint_identifier) {
            (Operation::Create, Some(_), _) => {
                return Err(Error::invalid_at("/entity", "a CREATE action does not act on an existing entity"));
            }
            (Operation::Create, None, _) => None,
            (_, None, _) | (_, _, None) => {
                return Err(Error::invalid_at("/entity", "name the entity this action acts on"));
            }
            (_, Some(identifier), Some(blueprint)) => {
                let missing =
                    || Error::invalid_at("/entity", format!("there is no '{blueprint}' entity '{identifier}'"));
                let entity = tx.entity(blueprint, identifier).await?.ok_or_else(missing)?;
                let entity = self.readable_entity(tx.as_mut(), actor, entity).await.map_err(|_| missing())?;
                if let Some(condition) = condition {
                    let admitted = self
                        .admitted(tx.as_mut(), actor, blueprint, condition, std::slice::from_ref(identifier))
                        .await?;
                    if !admitted.contains(identifier) {
                        return Err(Error::invalid_at(
                            "/entity",
                            format!("this action is not available on '{identifier}': its condition excludes it"),
                        ));
                    }
                }
                Some(entity)
            }
        };
        let (on_blueprint, on_entity) =
            (blueprint_identifier.as_deref(), entity.as_ref().map(|e| e.identifier.as_str()));
        if !self.action_allowed(tx.as_mut(), actor, action_id, on_blueprint, on_entity, ActionOp::Execute).await? {
            let on = on_entity.map(|e| format!(" on '{e}'")).unwrap_or_default();
            return Err(Error::forbidden(format!("you may not run '{action_id}'{on}")));
        }
        let entity_json = entity.as_ref().map(entity_document).unwrap_or(Value::Null);
        let (defaults, visible) = self.dynamic_inputs(actor, user_inputs, &request.properties, entity.as_ref()).await;
        let valid = user_inputs.validate(&request.properties, &defaults, &visible)?;
        let mut errors = FieldErrors::default();
        for picker in &valid.pickers {
            let existing: Vec<String> =
                tx.existing(&picker.blueprint, &picker.identifiers).await?.into_iter().collect();
            // What the requester may not read does not exist for them.
            let read = self.entity_access(tx.as_mut(), actor, &picker.blueprint, EntityOp::Read).await?;
            let found = self.admitted_by(tx.as_mut(), actor, &picker.blueprint, &read, &existing).await?;
            let admitted = match &picker.dataset {
                Some(dataset) => {
                    self.admitted(tx.as_mut(), actor, &picker.blueprint, dataset, &picker.identifiers).await?
                }
                None => found.clone(),
            };
            for identifier in &picker.identifiers {
                if !found.contains(identifier) {
                    errors.push(&picker.path, format!("there is no '{}' entity '{identifier}'", picker.blueprint));
                } else if !admitted.contains(identifier) {
                    errors.push(&picker.path, format!("'{identifier}' is not one of this input's choices"));
                }
            }
        }
        if !errors.is_empty() {
            return Err(Error::invalid(errors));
        }
        let teams = actor.as_user().map(|u| u.teams.clone()).unwrap_or_default();
        let mut trigger = RunTrigger {
            by: actor.id.clone(),
            origin: actor.origin.as_str().into(),
            at: self.now(),
            event: None,
            teams,
            override_reason: None,
        };
        let verdicts = self
            .guardrail_verdicts(tx.as_mut(), actor, &action, entity.as_ref(), &valid.values, &trigger, &request)
            .await?;
        // A bound gone past is kept with the run (and so in its audit record), with the reason.
        if verdicts.iter().any(|v| v.passed && v.message.contains("; overridden: ")) {
            trigger.override_reason = request.override_reason.clone();
        }
        let mut run = Run::queued(new_run_id(), &action, entity.map(|e| e.identifier), valid.values, trigger, 0);
        if let Some(mut rule) = action.approval() {
            if let Some(policy) = &rule.policy {
                let input = json!({"inputs": run.inputs, "entity": entity_json, "requester": {"identifier": actor.id, "teams": run.trigger.teams}});
                let computed = self
                    .eval_one(policy, &input)
                    .await
                    .map_err(|e| Error::new(ErrorCode::ValidationFailed, format!("the approval policy failed: {e}")))?;
                let computed: Approvers = serde_json::from_value(computed).map_err(|e| {
                    Error::new(
                        ErrorCode::ValidationFailed,
                        format!("the approval policy must give {{users, teams, roles}}: {e}"),
                    )
                })?;
                rule.approvers = Some(rule.approvers.unwrap_or_default().with(computed));
            }
            let binding = self.approval_binding(tx.as_mut(), &run).await?;
            run.status = RunStatus::WaitingForApproval;
            run.approval = Some(portolan_model::guardrail::Approval::new(&rule, binding, run.created_at));
        }
        Ok((action, run, verdicts))
    }

    /// Quotas and concurrency: how many runs of the action there are (the ones written in this
    /// transaction included, so the run writer can check again just before it writes).
    pub(crate) async fn limit_verdicts(
        &self,
        tx: &mut dyn Tx,
        action: &Action,
        requester: &str,
        teams: &[String],
        on: Option<(&str, &str)>,
    ) -> Result<Vec<Verdict>> {
        let rails = &action.guardrails;
        let now = self.now();
        let mut verdicts = Vec::new();
        let counted = [
            RunStatus::WaitingForApproval,
            RunStatus::Queued,
            RunStatus::InProgress,
            RunStatus::Success,
            RunStatus::Failure,
            RunStatus::TimedOut,
        ];
        for quota in &rails.quotas {
            // Someone in no team is held to a team quota on their own.
            let per_team = quota.per == QuotaScope::Team && !teams.is_empty();
            let filter = RunFilter {
                action: Some(action.identifier.clone()),
                created_by: (quota.per == QuotaScope::User || (quota.per == QuotaScope::Team && !per_team))
                    .then(|| requester.to_string()),
                statuses: counted.to_vec(),
                ..RunFilter::default()
            };
            // A team's runs are found among the action's newest (requesters' teams are in the runs).
            let limit = if per_team { MAX_RUN_PAGE } else { quota.max + 1 };
            let starts: Vec<Millis> = tx
                .list_runs(&filter, limit)
                .await?
                .into_iter()
                .filter(|(_, r)| !per_team || r.trigger.teams.iter().any(|t| teams.contains(t)))
                .map(|(_, r)| r.created_at)
                .collect();
            verdicts.push(quota.verdict(&starts, now));
        }
        if let Some(limits) = &rails.concurrency {
            let active = vec![RunStatus::WaitingForApproval, RunStatus::Queued, RunStatus::InProgress];
            let scopes = [(limits.per_action, None, "this action"), (limits.per_entity, on, "this entity")];
            for (limit, scope, what) in scopes {
                let Some(limit) = limit else { continue };
                if limit == 0 || (scope.is_none() && what == "this entity") {
                    continue;
                }
                let filter = RunFilter {
                    action: Some(action.identifier.clone()),
                    blueprint: scope.map(|(b, _)| b.to_string()),
                    entity: scope.map(|(_, e)| e.to_string()),
                    statuses: active.clone(),
                    ..RunFilter::default()
                };
                let running = tx.list_runs(&filter, limit).await?.len() as u32;
                let message = format!("{running} runs of {what} are not finished (at most {limit} at once)");
                verdicts.push(if running < limit {
                    Verdict::pass("concurrency", message)
                } else {
                    Verdict {
                        retry_after_seconds: Some(CONCURRENCY_RETRY_SECONDS),
                        ..Verdict::refuse("concurrency", message)
                    }
                });
            }
        }
        Ok(verdicts)
    }

    /// The inputs' computed defaults and visibility (`{name: value}`, `{name: bool}`) for a form
    /// filled in so far; an expression that fails leaves both empty.
    async fn dynamic_inputs(
        &self,
        actor: &Actor,
        user_inputs: &portolan_model::action::UserInputs,
        form: &Map<String, Value>,
        entity: Option<&Entity>,
    ) -> (Map<String, Value>, Map<String, Value>) {
        let Some(program) = user_inputs.dynamic_program() else { return (Map::new(), Map::new()) };
        let context = json!({
            "form": form, "entity": entity.map(entity_document).unwrap_or(Value::Null),
            "user": {"identifier": actor.id}, "trigger": {"by": actor.id, "origin": actor.origin.as_str()}
        });
        let out = self.eval_one(&program, &context).await.unwrap_or(Value::Null);
        let part = |key: &str| out.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
        (part("defaults"), part("visible"))
    }

    /// Which inputs of an action's form apply, for what is filled in so far (the form's script
    /// asks as the person types).
    pub async fn form_state(
        &self,
        actor: &Actor,
        action_id: &str,
        form: &Map<String, Value>,
        entity: Option<&str>,
    ) -> Result<(Map<String, Value>, Map<String, Value>)> {
        let mut tx = self.store().read().await?;
        let record = load_action(tx.as_mut(), action_id).await?;
        if !self.may_see_action(tx.as_mut(), actor, &record).await? {
            return Err(Error::hidden(format!("action '{action_id}'")));
        }
        let Trigger::SelfService { user_inputs, blueprint_identifier, .. } = &record.action.trigger else {
            return Ok((Map::new(), Map::new()));
        };
        let entity = match (blueprint_identifier, entity) {
            (Some(blueprint), Some(identifier)) => match tx.entity(blueprint, identifier).await? {
                Some(found) => self.readable_entity(tx.as_mut(), actor, found).await.ok(),
                None => None,
            },
            _ => None,
        };
        drop(tx);
        Ok(self.dynamic_inputs(actor, user_inputs, form, entity.as_ref()).await)
    }

    /// Where the actor stands now with an action's quotas, concurrency limits, freezes and locks:
    /// what its form tells them before they fill it in.
    pub async fn standing(&self, actor: &Actor, action: &Action, on: Option<(&str, &str)>) -> Result<Vec<Verdict>> {
        let mut tx = self.store().read().await?;
        let teams = actor.as_user().map(|u| u.teams.clone()).unwrap_or_default();
        let mut verdicts = self.limit_verdicts(tx.as_mut(), action, &actor.id, &teams, on).await?;
        verdicts.extend(self.timing_verdicts(tx.as_mut(), actor, action).await?);
        Ok(verdicts)
    }

    /// Freezes and locks: whether now is a time the action may run. Checked when a run is
    /// requested and again when it is approved.
    pub(crate) async fn timing_verdicts(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        action: &Action,
    ) -> Result<Vec<Verdict>> {
        let rails = &action.guardrails;
        let now = self.now();
        let mut verdicts = Vec::new();
        for freeze in &rails.freezes {
            verdicts.push(match freeze.frozen_until(now) {
                None => Verdict::pass("freeze", format!("'{}' is not in force", freeze.title)),
                Some(Millis::MAX) => Verdict::refuse("freeze", format!("frozen: '{}'", freeze.title)),
                Some(until) => Verdict {
                    retry_after_seconds: Some(((until - now).max(1000) as u64).div_ceil(1000)),
                    ..Verdict::refuse("freeze", format!("frozen until {}: '{}'", format_millis(until), freeze.title))
                },
            });
        }
        for lock in &rails.locks {
            let holder = tx.entity(&lock.blueprint, &lock.identifier).await?;
            let locked = holder.as_ref().filter(|e| e.properties.get("locked") == Some(&Value::Bool(true)));
            verdicts.push(match locked {
                None => Verdict::pass("lock", format!("'{}' is not locked", lock.identifier)),
                // Who locked it and why is told only to those who may read the lock.
                Some(e) if self.readable_entity(tx, actor, e.clone()).await.is_err() => {
                    Verdict::refuse("lock", format!("'{}' is locked", lock.identifier))
                }
                Some(e) => {
                    let why = e
                        .properties
                        .get("reason")
                        .and_then(Value::as_str)
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                    // Locked by an action's run: name the person who asked for it.
                    let by = match e.updated_by.strip_prefix("run:") {
                        Some(run) => tx.run(run, false).await?.map_or(e.updated_by.clone(), |r| r.trigger.by),
                        None => e.updated_by.clone(),
                    };
                    Verdict::refuse("lock", format!("'{}' is locked by {by}{why}", lock.identifier))
                }
            });
        }
        Ok(verdicts)
    }

    /// Every guardrail's decision on a run about to start.
    #[allow(clippy::too_many_arguments)]
    async fn guardrail_verdicts(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        action: &Action,
        entity: Option<&Entity>,
        inputs: &Map<String, Value>,
        trigger: &RunTrigger,
        request: &RunRequest,
    ) -> Result<Vec<Verdict>> {
        let rails = &action.guardrails;
        let mut verdicts = Vec::new();
        if let Some(rule) = action.approval() {
            let who = match &rule.approvers {
                Some(a) => {
                    [&a.users, &a.teams, &a.roles].iter().flat_map(|l| l.iter()).cloned().collect::<Vec<_>>().join(", ")
                }
                None => "whoever may approve this action".into(),
            };
            let mode = if rule.mode == portolan_model::guardrail::ApprovalMode::All { "all of" } else { "any of" };
            verdicts.push(Verdict::pass("approval", format!("needs approval from {mode} {who}")));
        }
        let on = entity.map(|e| (e.blueprint.as_str(), e.identifier.as_str()));
        verdicts.extend(self.limit_verdicts(tx, action, &actor.id, &trigger.teams, on).await?);
        for bound in &rails.bounds {
            let Some(value) = inputs.get(&bound.input).and_then(Value::as_f64) else { continue };
            let current = entity.and_then(|e| e.properties.get(bound.property())).and_then(Value::as_f64);
            verdicts.push(bound.verdict(value, current, actor.as_user(), request.override_reason.as_deref()));
        }
        verdicts.extend(self.timing_verdicts(tx, actor, action).await?);
        if let Some(entity) = entity {
            for precondition in &rails.preconditions {
                let ids = [entity.identifier.clone()];
                let holds = !self.admitted(tx, actor, &entity.blueprint, &precondition.query, &ids).await?.is_empty();
                let message = format!(
                    "'{}' {} for '{}'",
                    precondition.title,
                    if holds { "holds" } else { "does not hold" },
                    entity.identifier
                );
                verdicts.push(if holds {
                    Verdict::pass("precondition", message)
                } else {
                    Verdict::refuse("precondition", message)
                });
            }
        }
        Ok(verdicts)
    }

    /// Where new runs go to be written: one task writes the runs requested meanwhile in one
    /// transaction (group commit), and answers each request when that transaction commits.
    fn new_runs(&self) -> &tokio::sync::mpsc::Sender<NewRun> {
        self.run_writer().get_or_init(|| {
            let (sender, requests) = tokio::sync::mpsc::channel(NEW_RUN_BATCH * 2);
            tokio::spawn(write_new_runs(self.clone(), requests));
            sender
        })
    }

    /// Stores a new run and what gets it going: a dispatch job, or (for runners) nothing, as
    /// runners come for it.
    async fn start_run(
        &self,
        tx: &mut dyn Tx,
        listeners: &[Action],
        action: &Action,
        run: &Run,
        actor: &Actor,
    ) -> Result<()> {
        let labels = match &action.invocation_method {
            InvocationMethod::Runner { labels, .. } => Some(labels.as_slice()),
            _ => None,
        };
        tx.insert_run(run, labels).await?;
        let waiting = run.status == RunStatus::WaitingForApproval;
        if labels.is_none() && !waiting {
            tx.enqueue_jobs(&[dispatch_job(run)]).await?;
        }
        let mut message = match &run.trigger.event {
            Some(event) => format!("started by automation on {}", event["type"].as_str().unwrap_or("an event")),
            None => format!("requested by {}", run.trigger.by),
        };
        if waiting {
            message.push_str("; waiting for approval");
        }
        self.record_run(tx, actor, listeners, None, run, vec![log(run.created_at, message)]).await
    }

    pub(crate) fn wake_for(&self, run: &Run) {
        if run.backend == BackendKind::Runner {
            self.engine().runner_work.notify_waiters();
        } else {
            self.work_signal().notify_one();
        }
    }

    /// Writes a run's new state with its log lines, announces it, and queues the automations
    /// that watch it.
    /// `listeners` are the automations (see [`automations`]), loaded once per transaction.
    pub(crate) async fn record_run(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        listeners: &[Action],
        before: Option<&Run>,
        run: &Run,
        logs: Vec<NewRunLog>,
    ) -> Result<()> {
        if before.is_some() {
            tx.update_run(run).await?;
        }
        let state = |r: &Run| json!({"status": r.status, "reason": r.reason, "attempt": r.attempt});
        let entry = match before {
            None => {
                let after = json!({"action": run.action, "entity": run.entity, "inputs": run.inputs, "status": run.status,
                        "overrideReason": run.trigger.override_reason});
                Some(actor.entry(run.created_at, "run.create", "run", &run.id).changed(None, Some(after)))
            }
            Some(before) if before.status != run.status => Some(
                actor
                    .entry(run.updated_at, "run.status", "run", &run.id)
                    .changed(Some(state(before)), Some(state(run))),
            ),
            Some(_) => None,
        };
        if let Some(mut entry) = entry {
            entry.blueprint = run.blueprint.clone();
            entry.run = Some(run.id.clone());
            tx.append_audit(&[entry]).await?;
        }
        if !logs.is_empty() {
            tx.append_run_logs(&run.id, &logs).await?;
        }
        let kind = if before.is_none() { "run.created" } else { "run.updated" };
        tx.publish(&ChangeEvent {
            kind: kind.into(),
            blueprint: run.blueprint.clone().unwrap_or_default(),
            identifier: run.id.clone(),
            version: None,
            property: None,
        })
        .await?;
        let status_changed = before.is_none_or(|b| b.status != run.status);
        if status_changed && run.depth < MAX_AUTOMATION_DEPTH {
            let kind = if before.is_none() { EventKind::RunCreated } else { EventKind::RunUpdated };
            let event = || {
                json!({
                    "type": kind, "action": run.action, "run": run,
                    "diff": {"before": before, "after": run}
                })
            };
            let on = EventSubject { kind, blueprint: None, property: None, action: Some(&run.action) };
            queue_automations(tx, listeners, on, run.depth + 1, self.now(), event).await?;
        }
        Ok(())
    }

    // ---- reading runs ----

    /// A run the actor may see, and what it changed in the catalog that they may read.
    pub async fn get_run(&self, actor: &Actor, id: &str) -> Result<(Run, Vec<(EntityRef, String)>)> {
        let mut tx = self.store().read().await?;
        let run = self.visible_run(tx.as_mut(), actor, id).await?;
        let mut affected = Vec::new();
        for (entity, change) in tx.run_entities(id).await? {
            let readable = match tx.entity(&entity.blueprint, &entity.identifier).await? {
                Some(current) => self.readable_entity(tx.as_mut(), actor, current).await.is_ok(),
                // Deleted since: what the run did is history, shown to whoever sees the run.
                None => true,
            };
            if readable {
                affected.push((entity, change));
            }
        }
        Ok((run, affected))
    }

    /// The run, if the actor may see it: admins see every run; members their own runs, the runs
    /// on what their teams own, and the runs they may approve. Others get 404.
    pub(crate) async fn visible_run(&self, tx: &mut dyn Tx, actor: &Actor, id: &str) -> Result<Run> {
        let hidden = || Error::not_found(format!("run '{id}'"));
        let run = tx.run(id, false).await?.ok_or_else(hidden)?;
        let user = match &actor.principal {
            Principal::System => return Ok(run),
            Principal::Run(own) if *own == run.id => return Ok(run),
            Principal::Run(_) => return Err(hidden()),
            Principal::User(user) if user.is_admin() || run.trigger.by == user.id => return Ok(run),
            Principal::User(user) => user,
        };
        if let (Some(blueprint), Some(identifier)) = (&run.blueprint, &run.entity)
            && let Some(entity) = tx.entity(blueprint, identifier).await?
            && entity.team.iter().any(|t| user.teams.contains(t))
            && self.readable_entity(tx, actor, entity).await.is_ok()
        {
            return Ok(run);
        }
        let (blueprint, entity) = (run.blueprint.as_deref(), run.entity.as_deref());
        if self.action_allowed(tx, actor, &run.action, blueprint, entity, ActionOp::Approve).await?
            || self.may_decide(tx, actor, &run).await?
        {
            return Ok(run);
        }
        Err(Error::hidden(format!("run '{id}'")))
    }

    /// Runs matching `filter` that the actor may see, newest first, and the cursor of the next page.
    pub async fn list_runs(&self, actor: &Actor, filter: RunFilter, limit: u32) -> Result<(Vec<Run>, Option<String>)> {
        if !(1..=MAX_RUN_PAGE).contains(&limit) {
            return Err(Error::invalid_at("/limit", format!("limit must be between 1 and {MAX_RUN_PAGE}")));
        }
        let filter = match &actor.principal {
            Principal::User(user) if !user.is_admin() => {
                RunFilter { visible_to: Some((user.id.clone(), user.teams.clone())), ..filter }
            }
            Principal::Run(_) => return Err(Error::forbidden("a run token may only report on its run")),
            _ => filter,
        };
        let rows = self.store().read().await?.list_runs(&filter, limit).await?;
        let next = (rows.len() as u32 == limit).then(|| rows.last().map(|(seq, _)| seq.to_string())).flatten();
        Ok((rows.into_iter().map(|(_, run)| run).collect(), next))
    }

    pub async fn run_logs(&self, actor: &Actor, id: &str, after: i64, limit: u32) -> Result<Vec<RunLog>> {
        let mut tx = self.store().read().await?;
        self.visible_run(tx.as_mut(), actor, id).await?;
        Ok(tx.run_logs(id, after, limit).await?)
    }

    /// The runs that created, changed or deleted an entity (latest first), and how: those the
    /// actor may see, of an entity they may read.
    pub async fn entity_runs(&self, actor: &Actor, blueprint: &str, identifier: &str) -> Result<Vec<(Run, String)>> {
        let mut tx = self.store().read().await?;
        let hidden = || Error::not_found(format!("entity '{identifier}' of blueprint '{blueprint}'"));
        let current = tx.entity(blueprint, identifier).await?.ok_or_else(hidden)?;
        self.readable_entity(tx.as_mut(), actor, current).await?;
        let entity = EntityRef { blueprint: blueprint.into(), identifier: identifier.into() };
        let mut out = Vec::new();
        for (run_id, change) in tx.entity_runs(&entity, 100).await? {
            if let Ok(run) = self.visible_run(tx.as_mut(), actor, &run_id).await {
                out.push((run, change));
            }
        }
        Ok(out)
    }

    /// Checks that catalog writes may name `run_id` as their cause: the run exists and is not
    /// over, and the writer holds its run token (`token`), requested it, or is an admin.
    pub async fn check_run_open(&self, actor: &Actor, run_id: &str, token: Option<&str>) -> Result<()> {
        let mut tx = self.store().read().await?;
        let Some(run) = tx.run(run_id, false).await? else {
            return Err(Error::invalid_at("/run_id", format!("there is no run '{run_id}'")));
        };
        match (token, actor.as_user()) {
            (Some(token), _) => self.verify_run_token(token, &run)?,
            (None, Some(user)) if !user.is_admin() && run.trigger.by != user.id => {
                return Err(Error::forbidden(format!("only the requester of run '{run_id}' may link changes to it")));
            }
            _ => {}
        }
        if run.status.is_terminal() {
            return Err(Error::new(
                ErrorCode::RunFinished,
                format!("run '{run_id}' ended ({}); it can no longer change the catalog", run.status.as_str()),
            ));
        }
        Ok(())
    }

    /// The actor of a run token that reads the catalog: while the run is open, the backend reads
    /// what the run's requester may read (a run an automation started has no one to read as).
    pub async fn run_reader(&self, token: &str, run_id: &str) -> Result<Actor> {
        let mut tx = self.store().read().await?;
        let run =
            tx.run(run_id, false).await?.ok_or_else(|| Error::unauthorized("this token is not valid for this run"))?;
        self.verify_run_token(token, &run)?;
        if run.status.is_terminal() {
            return Err(Error::new(
                ErrorCode::RunFinished,
                format!("run '{run_id}' ended ({}); its token reads nothing more", run.status.as_str()),
            ));
        }
        let requester = self.signed_in_user(tx.as_mut(), &run.trigger.by).await.map_err(|_| {
            Error::forbidden(format!("run '{run_id}' has no signed-in requester whose reads its token could make"))
        })?;
        Ok(Actor::run_reader(run_id, requester))
    }

    /// Checks a run token against the run's current hand-over.
    fn verify_run_token(&self, token: &str, run: &Run) -> Result<()> {
        match self.engine().keys.verify_run_token(token, &run.id, run.attempt, self.now()) {
            Ok(()) => {}
            Err(RunTokenError::Invalid) => {
                return Err(Error::new(ErrorCode::Unauthorized, "this token is not valid for this run"));
            }
            Err(RunTokenError::Expired) => {
                return Err(Error::new(ErrorCode::TokenExpired, "the run token has expired"));
            }
            Err(RunTokenError::Superseded) => {
                return Err(Error::new(
                    ErrorCode::LeaseLost,
                    "this token is from an earlier hand-over of the run; another runner holds it now",
                ));
            }
        }
        Ok(())
    }

    // ---- what backends report ----

    /// Loads a run for a backend's report and checks the token; refuses reports on ended runs.
    async fn run_for_report(&self, tx: &mut dyn Tx, id: &str, token: Option<&str>) -> Result<Run> {
        let run = tx.run(id, true).await?.ok_or_else(|| Error::not_found(format!("run '{id}'")))?;
        let token = token.ok_or_else(|| {
            Error::new(ErrorCode::Unauthorized, "reports on a run need its run token as 'Authorization: Bearer'")
        })?;
        self.verify_run_token(token, &run)?;
        if run.status.is_terminal() {
            return Err(Error::new(
                ErrorCode::RunFinished,
                format!("run '{id}' already ended ({}); its result is final", run.status.as_str()),
            ));
        }
        if run.backend == BackendKind::Runner && run.status != RunStatus::InProgress {
            return Err(Error::new(ErrorCode::LeaseLost, "this run went back to the queue; no runner holds it now"));
        }
        Ok(run)
    }

    /// A backend's report: status, label, links, summary, external id.
    pub async fn report_run(&self, id: &str, token: Option<&str>, report: RunReport) -> Result<Run> {
        let status = match report.status.as_deref() {
            None => None,
            Some(s @ ("SUCCESS" | "FAILURE" | "IN_PROGRESS")) => RunStatus::parse(s),
            Some(other) => {
                return Err(Error::invalid_at(
                    "/status",
                    format!("'{other}' is not one of SUCCESS, FAILURE, IN_PROGRESS"),
                ));
            }
        };
        let links = match report.link {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(link)) => vec![link],
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                items.into_iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
            }
            Some(_) => return Err(Error::invalid_at("/link", "must be a URL or a list of URLs")),
        };
        for (i, link) in links.iter().enumerate() {
            if !url::Url::parse(link).is_ok_and(|u| matches!(u.scheme(), "http" | "https" | "file")) {
                return Err(Error::invalid_at(&format!("/link/{i}"), format!("{link:?} is not a URL")));
            }
        }
        let mut tx = self.store().write().await?;
        let before = self.run_for_report(tx.as_mut(), id, token).await?;
        let listeners = automations(tx.as_mut()).await?;
        let mut run = before.clone();
        let now = self.now();
        let mut logs = Vec::new();
        if let Some(status) = status
            && status != run.status
        {
            run.transition(status, now).map_err(|m| Error::new(ErrorCode::Conflict, m))?;
            logs.push(log(now, format!("the backend reported {}", status.as_str())));
        }
        run.status_label = report.status_label.or(run.status_label);
        run.summary = report.summary.or(run.summary);
        run.external_run_id = report.external_run_id.or(run.external_run_id);
        for link in links {
            if !run.links.contains(&link) {
                run.links.push(link);
            }
        }
        run.updated_at = now;
        let backend = Actor::system(format!("run:{}", run.id), Origin::Backend);
        self.record_run(tx.as_mut(), &backend, &listeners, Some(&before), &run, logs).await?;
        tx.commit().await?;
        Ok(run)
    }

    /// Appends a backend's log lines to a run.
    pub async fn append_run_logs(&self, id: &str, token: Option<&str>, lines: Vec<LogLine>) -> Result<usize> {
        if lines.len() > MAX_LOG_LINES {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("{} lines sent; one request takes at most {MAX_LOG_LINES}", lines.len()),
            ));
        }
        let now = self.now();
        let mut logs = Vec::with_capacity(lines.len());
        for (i, line) in lines.into_iter().enumerate() {
            let stream = line.stream.unwrap_or_else(|| "backend".into());
            if !matches!(stream.as_str(), "stdout" | "stderr" | "backend") {
                return Err(Error::invalid_at(&format!("/lines/{i}/stream"), "must be stdout, stderr or backend"));
            }
            let mut message = line.message;
            if message.len() > MAX_LOG_LINE_BYTES {
                let mut cut = MAX_LOG_LINE_BYTES;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
                message.push_str(" [cut]");
            }
            logs.push(NewRunLog { at: now, stream, message });
        }
        let mut tx = self.store().write().await?;
        let run = self.run_for_report(tx.as_mut(), id, token).await?;
        // A backend's output may echo a secret its payload carried; a deleted one is not masked.
        if let Some(record) = tx.action(&run.action).await? {
            let mut secrets = Vec::new();
            for name in record.action.secret_names() {
                if let Ok(values) = self.secret_values(tx.as_mut(), std::slice::from_ref(&name)).await {
                    secrets.extend(values.into_values());
                }
            }
            for line in &mut logs {
                line.message = template::mask_text(&line.message, &secrets);
            }
        }
        tx.append_run_logs(&run.id, &logs).await?;
        tx.publish(&ChangeEvent {
            kind: "run.log".into(),
            blueprint: run.blueprint.clone().unwrap_or_default(),
            identifier: run.id.clone(),
            version: None,
            property: None,
        })
        .await?;
        tx.commit().await?;
        Ok(logs.len())
    }

    // ---- runners ----

    /// Hands the oldest queued run this runner can take to it, waiting up to `wait` for one.
    pub async fn claim_run(
        &self,
        token: &str,
        requested: &[String],
        wait: Duration,
        lease_ms: i64,
    ) -> Result<Option<RunnerClaim>> {
        let deadline = tokio::time::Instant::now() + wait;
        // The one write of a claim that finds nothing: the token's last use. Waiting holds no lock.
        {
            let mut tx = self.store().write().await?;
            let runner = self.authenticate_runner(tx.as_mut(), token).await?;
            tx.touch_runner_token(&runner.id, self.now()).await?;
            tx.commit().await?;
        }
        loop {
            let engine = self.engine();
            let woken = engine.runner_work.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(claim) = self.try_claim(token, requested, lease_ms).await? {
                return Ok(Some(claim));
            }
            // Runs queued on other replicas wake no one here: look again every 250 ms.
            let poll = tokio::time::sleep(Duration::from_millis(250));
            tokio::select! {
                _ = &mut woken => {}
                _ = poll => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    async fn try_claim(&self, token: &str, requested: &[String], lease_ms: i64) -> Result<Option<RunnerClaim>> {
        let labels = |runner: &RunnerToken| -> Vec<String> {
            runner.labels.iter().filter(|l| requested.is_empty() || requested.contains(l)).cloned().collect()
        };
        // Look in a read transaction first: a runner polling an empty queue takes no write lock.
        {
            let mut tx = self.store().read().await?;
            let runner = self.authenticate_runner(tx.as_mut(), token).await?;
            if tx.claimable_run(&labels(&runner)).await?.is_none() {
                return Ok(None);
            }
        }
        let mut tx = self.store().write().await?;
        let runner = self.authenticate_runner(tx.as_mut(), token).await?;
        let labels = labels(&runner);
        let now = self.now();
        tx.touch_runner_token(&runner.id, now).await?;
        let by_runner = Actor::system(format!("runner:{}", runner.id), Origin::Runner);
        let mut listeners: Option<Vec<Action>> = None;
        // Each pass either hands a run out or ends the one it found, so the next pass finds another.
        for _ in 0..CLAIM_TRIES {
            let Some(before) = tx.claimable_run(&labels).await? else { break };
            if listeners.is_none() {
                listeners = Some(automations(tx.as_mut()).await?);
            }
            let listeners = listeners.as_deref().unwrap_or_default();
            let action = match tx.action(&before.action).await?.map(|r| r.action) {
                Some(action) if action.runner_wiring().is_some_and(|(_, task)| !task.is_empty()) => action,
                found => {
                    let mut run = before.clone();
                    let reason = if found.is_some_and(|a| a.runner_wiring().is_some()) {
                        "the action was written with a command line before runners took task names: an admin must \
                         choose its task"
                    } else {
                        "the action was deleted or moved off runners before a runner took the run"
                    };
                    run.end(RunStatus::Failure, reason, now).map_err(|m| Error::new(ErrorCode::Internal, m))?;
                    self.record_run(tx.as_mut(), &by_runner, listeners, Some(&before), &run, vec![log(now, reason)])
                        .await?;
                    continue;
                }
            };
            let InvocationMethod::Runner { task, .. } = &action.invocation_method else { continue };
            let mut run = before.clone();
            run.attempt += 1;
            run.transition(RunStatus::InProgress, now).map_err(|m| Error::new(ErrorCode::Internal, m))?;
            let run_token = self.engine().keys.run_token(&run.id, run.attempt, now + RUN_TOKEN_TTL_MS);
            match self.render(tx.as_mut(), &action, &run, &run_token).await {
                Ok(Rendered { full: rendered, masked, .. }) => {
                    run.payload = masked.get("payload").cloned();
                    tx.lease_run(&run.id, &lease_holder(&runner, run.attempt), now + lease_ms, false).await?;
                    let message = format!("claimed by runner '{}' (attempt {})", runner.name, run.attempt);
                    self.record_run(tx.as_mut(), &by_runner, listeners, Some(&before), &run, vec![log(now, message)])
                        .await?;
                    tx.commit().await?;
                    let payload = rendered.get("payload").cloned().unwrap_or(Value::Null);
                    return Ok(Some(RunnerClaim { run, task: task.clone(), payload, run_token, lease_ms }));
                }
                Err(reason) => {
                    let mut failed = before.clone();
                    failed
                        .end(RunStatus::Failure, format!("the payload template failed: {reason}"), now)
                        .map_err(|m| Error::new(ErrorCode::Internal, m))?;
                    self.record_run(tx.as_mut(), &by_runner, listeners, Some(&before), &failed, vec![log(now, reason)])
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(None)
    }

    /// Extends a runner's lease of the run it claimed (`attempt`: the claim); 409 when the run is
    /// no longer that claim's.
    pub async fn heartbeat(&self, token: &str, run_id: &str, attempt: i64, lease_ms: i64) -> Result<Millis> {
        let mut tx = self.store().write().await?;
        let runner: RunnerToken = self.authenticate_runner(tx.as_mut(), token).await?;
        // A run that ended meanwhile (timed out, say) tells its runner to stop.
        if let Some(run) = tx.run(run_id, false).await?
            && run.status.is_terminal()
        {
            let status = run.status.as_str();
            return Err(Error::new(ErrorCode::LeaseLost, format!("run '{run_id}' ended ({status}); stop its command")));
        }
        let until = self.now() + lease_ms;
        if !tx.lease_run(run_id, &lease_holder(&runner, attempt), until, true).await? {
            return Err(Error::new(
                ErrorCode::LeaseLost,
                format!("run '{run_id}' is not this runner's: it ended or was handed to another runner"),
            ));
        }
        tx.commit().await?;
        Ok(until)
    }

    /// Runs whose runner stopped heartbeating go back to the queue or fail, as their action says.
    pub async fn recover_lost_runs(&self) -> Result<usize> {
        let mut tx = self.store().write().await?;
        let now = self.now();
        let lost = tx.lost_runs(now, 100).await?;
        let count = lost.len();
        let listeners = if lost.is_empty() { Vec::new() } else { automations(tx.as_mut()).await? };
        for before in lost {
            let mut run = before.clone();
            let (policy, max) = match tx.action(&run.action).await?.map(|r| r.action.invocation_method) {
                Some(InvocationMethod::Runner { on_runner_loss, max_attempts, .. }) => (on_runner_loss, max_attempts),
                _ => (RunnerLoss::Fail, 0),
            };
            let holder = tx.run_lease(&run.id).await?.map(|(owner, _)| owner).unwrap_or_default();
            let what = format!("the runner ({holder}) stopped heartbeating during attempt {}", run.attempt);
            let message = if policy == RunnerLoss::Retry && run.attempt < i64::from(max) {
                run.transition(RunStatus::Queued, now).map_err(|m| Error::new(ErrorCode::Internal, m))?;
                format!("{what}; queued again for another runner")
            } else {
                let reason = format!("{what}; no attempts left ({} of {max})", run.attempt);
                run.end(RunStatus::Failure, reason.clone(), now).map_err(|m| Error::new(ErrorCode::Internal, m))?;
                reason
            };
            let server = Actor::system("portolan", Origin::Backend);
            self.record_run(tx.as_mut(), &server, &listeners, Some(&before), &run, vec![log(now, message)]).await?;
        }
        tx.commit().await?;
        if count > 0 {
            self.engine().runner_work.notify_waiters();
        }
        Ok(count)
    }

    // ---- rendering ----

    /// Renders an action's templates for a run: the full result (secrets included), the copy to
    /// show (what reads a secret masked, and secret values masked as text too), and the secrets.
    /// Errors are masked too.
    async fn render(
        &self,
        tx: &mut dyn Tx,
        action: &Action,
        run: &Run,
        run_token: &str,
    ) -> std::result::Result<Rendered, String> {
        let secrets = self.secret_values(tx, &action.secret_names()).await.map_err(|e| e.message)?;
        let entity = match (&run.blueprint, &run.entity) {
            (Some(blueprint), Some(identifier)) => {
                tx.entity(blueprint, identifier).await.map_err(|e| e.to_string())?.map(|e| entity_document(&e))
            }
            _ => None,
        };
        // A deleted entity is still what an automation on its deletion is about.
        let entity = entity
            .or_else(|| {
                let diff = &run.trigger.event.as_ref()?["diff"];
                Some(if diff["after"].is_null() { diff["before"].clone() } else { diff["after"].clone() })
            })
            .unwrap_or(Value::Null);
        let context = json!({
            "inputs": run.inputs,
            "entity": entity,
            "action": {"identifier": action.identifier, "title": action.title, "blueprint": action.blueprint()},
            "run": {
                "id": run.id,
                "url": format!("{}/api/v1/actions/runs/{}", self.engine().public_url(), run.id),
                "token": run_token,
            },
            "trigger": run.trigger,
            "secrets": secrets,
        });
        let renderer = action.renderer().map_err(|e| e.to_string())?;
        let mut hidden: Vec<String> = secrets.values().cloned().collect();
        hidden.push(run_token.to_string());
        // Expressions that read no secret run without them; those that do show masked (see template).
        let public = match renderer.public_program() {
            Some(program) => Some(
                self.eval_one(&program, &template::public_context(&context))
                    .await
                    .map_err(|e| template::mask_text(&e, &hidden))?,
            ),
            None => None,
        };
        let secret = match renderer.hidden_program() {
            Some(program) => {
                Some(self.eval_one(&program, &context).await.map_err(|_| template::hidden_program_failure())?)
            }
            None => None,
        };
        let rendering = renderer.assemble(public, secret).map_err(|e| template::mask_text(&e, &hidden))?;
        hidden.extend(rendering.derived);
        let full = rendering.real;
        let mut masked = rendering.display;
        template::mask(&mut masked, &hidden);
        Ok(Rendered { full, masked, secrets, hidden })
    }

    /// Sends a webhook backend a signed `{"type": "run.timed_out", "run": {...}}` at the action's
    /// URL and headers, so it can stop the work. Best effort: a failure is logged.
    pub(crate) async fn tell_webhook_timed_out(&self, run: &Run) {
        let told = async {
            let mut tx = self.store().read().await.map_err(|e| e.to_string())?;
            let action = tx.action(&run.action).await.map_err(|e| e.to_string())?.ok_or("the action is gone")?.action;
            let InvocationMethod::Webhook { signing_secret, .. } = &action.invocation_method else { return Ok(()) };
            let rendered = self.render(tx.as_mut(), &action, run, "").await?;
            drop(tx);
            let headers = rendered.full["headers"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect();
            let notice =
                json!({"type": "run.timed_out", "run": {"id": run.id, "status": run.status, "reason": run.reason}});
            let request = WebhookRequest {
                method: "POST",
                url: rendered.full["url"].as_str().unwrap_or_default(),
                headers,
                body: serde_json::to_vec(&notice).unwrap_or_default(),
                timeout: Duration::from_secs(10),
                id: &format!("msg_{}_timed_out", run.id),
                signing_secret: rendered.secrets.get(signing_secret).map(String::as_str).unwrap_or_default(),
                now_seconds: self.now() / 1000,
            };
            match self.engine().deliver_webhook(Purpose::TimeoutNotice, request).await {
                Attempt::Delivered { .. } => Ok(()),
                failed => Err(undelivered(&failed, &rendered.hidden)),
            }
        };
        if let Err(err) = told.await {
            tracing::warn!(run = %run.id, %err, "cannot tell the webhook that the run timed out");
            self.note_on_run(&run.id, format!("the webhook was not told that the run timed out: {err}")).await;
        }
    }

    async fn eval_one(&self, program: &str, input: &Value) -> std::result::Result<Value, String> {
        let sandbox = self.sandbox().ok_or("this server runs no jq sandbox")?;
        sandbox.eval(program, input).await?.into_iter().next().ok_or_else(|| "the template gave no output".into())
    }

    // ---- the worker's side ----

    /// Delivers a run to its backend (a `dispatch` job) and says how it went; the worker records
    /// deliveries in batches with [`Catalog::record_deliveries`].
    pub async fn dispatch(&self, job: &Job) -> Result<Delivery> {
        let run_id = job.payload["run"].as_str().unwrap_or_default().to_string();
        let mut tx = self.store().read().await?;
        let run = tx.run(&run_id, false).await?;
        let action = match &run {
            Some(run) => tx.action(&run.action).await?,
            None => None,
        };
        let (Some(run), Some(action)) = (run, action) else {
            let outcome = Outcome::End(RunStatus::Failure, "the action was deleted".into());
            return Ok(Delivery { run_id, outcome, payload_view: None });
        };
        if run.status.is_terminal() {
            return Ok(Delivery { run_id, outcome: Outcome::Keep, payload_view: None });
        }
        let token = self.engine().keys.run_token(&run.id, run.attempt, run.created_at + RUN_TOKEN_TTL_MS);
        let rendered = self.render(tx.as_mut(), &action.action, &run, &token).await;
        drop(tx);
        let Rendered { full: rendered, masked, secrets, hidden } = match rendered {
            Ok(rendered) => rendered,
            Err(reason) => {
                let outcome = Outcome::End(RunStatus::Failure, format!("the payload template failed: {reason}"));
                return Ok(Delivery { run_id, outcome, payload_view: None });
            }
        };
        let payload_view =
            masked.get("body").or_else(|| masked.get("payload")).or_else(|| masked.get("entity")).cloned();
        let actor = Actor::system(format!("run:{}", run.id), Origin::Backend).for_run(run.id.clone());
        let outcome = match &action.action.invocation_method {
            InvocationMethod::Webhook {
                method, synchronized, signing_secret, timeout_seconds, max_attempts, ..
            } => {
                let secret = secrets.get(signing_secret).cloned().unwrap_or_default();
                let headers = rendered["headers"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                    .collect();
                let body = serde_json::to_vec(&rendered["body"]).unwrap_or_default();
                let url = rendered["url"].as_str().unwrap_or_default();
                let attempt = self
                    .engine()
                    .deliver_webhook(
                        Purpose::Webhook,
                        WebhookRequest {
                            method,
                            url,
                            headers,
                            body,
                            timeout: delivery_timeout(*timeout_seconds, job.lease_until - self.now()),
                            id: &format!("msg_{}", run.id),
                            signing_secret: &secret,
                            now_seconds: self.now() / 1000,
                        },
                    )
                    .await;
                attempt_outcome(attempt, *synchronized, job.attempts, i64::from(*max_attempts))
            }
            InvocationMethod::Nats { .. } => {
                let subject = rendered["subject"].as_str().unwrap_or_default().to_string();
                let payload = serde_json::to_vec(&rendered["payload"]).unwrap_or_default();
                match self.engine().publish_nats(&subject, &run.id, payload).await {
                    Ok(ack) => Outcome::Progress(format!(
                        "published to '{subject}' ({ack}); waiting for the backend to report"
                    )),
                    Err(attempt) => attempt_outcome(attempt, false, job.attempts, 5),
                }
            }
            InvocationMethod::UpsertEntity { blueprint_identifier, merge, .. } => {
                let mode = WriteMode::Create { upsert: true, merge: *merge };
                match self
                    .write_entity(&actor, blueprint_identifier, None, rendered["entity"].clone(), mode, None)
                    .await
                {
                    Ok((entity, _)) => Outcome::Wrote {
                        message: format!(
                            "wrote {blueprint_identifier} '{}' (version {})",
                            entity.identifier, entity.version
                        ),
                        link: format!(
                            "{}/api/v1/blueprints/{blueprint_identifier}/entities/{}",
                            self.engine().public_url(),
                            entity.identifier
                        ),
                    },
                    Err(err) => error_outcome(err, job.attempts),
                }
            }
            InvocationMethod::DeleteEntity { blueprint_identifier, .. } => {
                let identifier = rendered["entity"]["identifier"].as_str().unwrap_or_default().to_string();
                match self.delete_entity(&actor, blueprint_identifier, &identifier, false, None).await {
                    Ok(_) => Outcome::End(RunStatus::Success, format!("deleted {blueprint_identifier} '{identifier}'")),
                    Err(err) if err.code == ErrorCode::NotFound && self.run_deleted(&run.id, &identifier).await? => {
                        Outcome::End(RunStatus::Success, format!("deleted {blueprint_identifier} '{identifier}'"))
                    }
                    Err(err) => error_outcome(err, job.attempts),
                }
            }
            InvocationMethod::Runner { .. } => Outcome::Keep,
        };
        // What a backend answered, or an error, may quote a secret; the run's record never does.
        Ok(Delivery { run_id, outcome: outcome.masked(&hidden), payload_view })
    }

    async fn run_deleted(&self, run_id: &str, identifier: &str) -> Result<bool> {
        let affected = self.store().read().await?.run_entities(run_id).await?;
        Ok(affected.iter().any(|(e, change)| e.identifier == identifier && change == affected::DELETED))
    }

    /// Records deliveries' outcomes on their runs and completes (or, to retry, releases) their
    /// jobs, all in one transaction (one commit for many deliveries). A crash before it commits
    /// repeats the deliveries with the same `webhook-id`s. A job whose lease was lost meanwhile is
    /// left to the worker that holds it now.
    pub async fn record_deliveries(&self, owner: &str, deliveries: &[(Job, Delivery)]) -> Result<()> {
        let mut tx = self.store().write().await?;
        let listeners = automations(tx.as_mut()).await?;
        let now = self.now();
        for (job, delivery) in deliveries {
            let Delivery { run_id, outcome, payload_view } = delivery;
            match outcome {
                Outcome::Retry { delay_ms, .. } => tx.release_job(job.id, owner, now + delay_ms).await?,
                _ if !tx.complete_job(job.id, owner).await? => continue,
                _ => {}
            }
            let Some(before) = tx.run(run_id, true).await? else { continue };
            let mut run = before.clone();
            if run.payload.is_none() {
                run.payload = payload_view.clone();
            }
            let mut logs = Vec::new();
            // A run cancelled or reported on meanwhile keeps its status; the outcome is only logged.
            let open = !run.status.is_terminal();
            match outcome {
                Outcome::Keep => {}
                Outcome::Progress(message) => {
                    if open && run.status != RunStatus::InProgress {
                        let _ = run.transition(RunStatus::InProgress, now);
                    }
                    logs.push(log(now, message.clone()));
                }
                Outcome::End(status, message) => {
                    if open {
                        let ended = if *status == RunStatus::Success {
                            run.transition(*status, now)
                        } else {
                            run.end(*status, message.clone(), now)
                        };
                        ended.map_err(|m| Error::new(ErrorCode::Internal, m))?;
                    }
                    logs.push(log(now, message.clone()));
                }
                Outcome::Wrote { message, link } => {
                    if open {
                        run.transition(RunStatus::Success, now).map_err(|m| Error::new(ErrorCode::Internal, m))?;
                        run.links.push(link.clone());
                        run.summary = Some(message.clone());
                    }
                    logs.push(log(now, message.clone()));
                }
                Outcome::Retry { message, delay_ms } => {
                    logs.push(log(now, format!("{message}; retrying in {delay_ms} ms")));
                }
            }
            if run != before || !logs.is_empty() {
                run.updated_at = now;
                let server = Actor::system("portolan", Origin::Backend);
                self.record_run(tx.as_mut(), &server, &listeners, Some(&before), &run, logs).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Fires an automation (an `automation` job): checks its condition on the event and starts
    /// its run, in the transaction that completes the job, so an event starts it at most once.
    pub async fn run_automation(&self, job: &Job, owner: &str) -> Result<()> {
        let action_id = job.payload["action"].as_str().unwrap_or_default();
        let event = &job.payload["event"];
        let depth = job.payload["depth"].as_u64().unwrap_or(1) as u32;
        let action = self.store().read().await?.action(action_id).await?;
        let fire = match action.as_ref().map(|r| &r.action.trigger) {
            // Expressions that fail count as false inside the program; an error here is the sandbox's.
            Some(Trigger::Automation { condition: Some(condition), .. }) => {
                let holds = self.eval_one(&condition.program(), event).await.map_err(|e| {
                    Error::new(ErrorCode::Unavailable, format!("cannot evaluate the automation's condition: {e}"))
                })?;
                holds == Value::Bool(true)
            }
            Some(Trigger::Automation { condition: None, .. }) => true,
            _ => false,
        };
        let mut tx = self.store().write().await?;
        let listeners = automations(tx.as_mut()).await?;
        let mut started = None;
        if let (true, Some(record)) = (fire, &action) {
            let action = &record.action;
            let entity = event["diff"]["after"]["identifier"]
                .as_str()
                .or_else(|| event["diff"]["before"]["identifier"].as_str())
                .filter(|_| event["type"] != "RUN_CREATED" && event["type"] != "RUN_UPDATED");
            let trigger = RunTrigger {
                by: format!("automation:{}", action.identifier),
                origin: Origin::Automation.as_str().into(),
                at: self.now(),
                event: Some(event.clone()),
                teams: Vec::new(),
                override_reason: None,
            };
            let run = Run::queued(new_run_id(), action, entity.map(str::to_string), Map::new(), trigger, depth);
            let automation = Actor::system(run.trigger.by.clone(), Origin::Automation);
            self.start_run(tx.as_mut(), &listeners, action, &run, &automation).await?;
            started = Some(run);
        }
        if !tx.complete_job(job.id, owner).await? {
            return Ok(());
        }
        tx.commit().await?;
        if let Some(run) = started {
            self.wake_for(&run);
        }
        Ok(())
    }
}

/// Most new runs written in one transaction.
const NEW_RUN_BATCH: usize = 128;

/// A run to store, and who waits for it to be stored.
pub struct NewRun {
    action: Action,
    run: Run,
    actor: Actor,
    done: tokio::sync::oneshot::Sender<Result<()>>,
}

async fn write_new_runs(catalog: Catalog, mut requests: tokio::sync::mpsc::Receiver<NewRun>) {
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while batch.len() < NEW_RUN_BATCH {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let outcomes = match write_batch(&catalog, &batch).await {
            Ok(outcomes) => outcomes,
            // The batch failed as a whole: each request is written on its own, so that one
            // request's failure is its own alone.
            Err(_) if batch.len() > 1 => {
                let mut outcomes = Vec::with_capacity(batch.len());
                for new in &batch {
                    let alone = write_batch(&catalog, std::slice::from_ref(new)).await;
                    outcomes.push(alone.and_then(|mut written| written.pop().unwrap_or(Ok(()))));
                }
                outcomes
            }
            Err(error) => vec![Err(error)],
        };
        for (new, outcome) in batch.into_iter().zip(outcomes) {
            if outcome.is_ok() {
                catalog.wake_for(&new.run);
            }
            let _ = new.done.send(outcome);
        }
    }
}

/// Writes the runs of a batch that still pass every check in one transaction: what was checked
/// when each was requested (the action, the right to run it, its entity, quotas and concurrency,
/// counted with the runs this batch wrote so far) is checked again where the run is written, so
/// nothing that changed meanwhile, nor requests racing each other, get past a check. Per request:
/// written, or the refusal.
async fn write_batch(catalog: &Catalog, batch: &[NewRun]) -> Result<Vec<Result<()>>> {
    let mut tx = catalog.store().write().await?;
    let listeners = automations(tx.as_mut()).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for new in batch {
        match catalog.recheck_new_run(tx.as_mut(), new).await? {
            Err(refusal) => outcomes.push(Err(refusal)),
            Ok(()) => {
                catalog.start_run(tx.as_mut(), &listeners, &new.action, &new.run, &new.actor).await?;
                outcomes.push(Ok(()));
            }
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

impl Catalog {
    /// Whether a requested run may still be written: `Ok(Err(refusal))` when not.
    async fn recheck_new_run(&self, tx: &mut dyn Tx, new: &NewRun) -> Result<Result<()>> {
        let (run, action_id) = (&new.run, new.action.identifier.as_str());
        match tx.action(action_id).await? {
            Some(current) if current.action == new.action => {}
            Some(_) => {
                let changed = format!("action '{action_id}' changed while the run was being started; try again");
                return Ok(Err(Error::new(ErrorCode::Conflict, changed)));
            }
            None => return Ok(Err(Error::not_found(format!("action '{action_id}'")))),
        }
        let on = run.blueprint.as_deref().zip(run.entity.as_deref());
        if let Some((blueprint, identifier)) = on {
            let gone = || Error::invalid_at("/entity", format!("there is no '{blueprint}' entity '{identifier}'"));
            let Some(entity) = tx.entity(blueprint, identifier).await? else { return Ok(Err(gone())) };
            if self.readable_entity(tx, &new.actor, entity).await.is_err() {
                return Ok(Err(gone()));
            }
        }
        let (blueprint, entity) = (on.map(|(b, _)| b), on.map(|(_, e)| e));
        if !self.action_allowed(tx, &new.actor, action_id, blueprint, entity, ActionOp::Execute).await? {
            let on = entity.map(|e| format!(" on '{e}'")).unwrap_or_default();
            return Ok(Err(Error::forbidden(format!("you may not run '{action_id}'{on}"))));
        }
        let limits = self.limit_verdicts(tx, &new.action, &run.trigger.by, &run.trigger.teams, on).await?;
        Ok(refuse_unless_allowed(&limits))
    }
}

/// One delivery of a run to its backend, and what it means for the run.
#[derive(Debug)]
pub struct Delivery {
    run_id: String,
    outcome: Outcome,
    payload_view: Option<Value>,
}

/// What a delivery attempt means for the run.
#[derive(Debug)]
enum Outcome {
    /// Nothing to record (the run ended meanwhile).
    Keep,
    /// Delivered; the backend will report the result.
    Progress(String),
    End(RunStatus, String),
    /// A built-in backend wrote an entity: success, with a link to it.
    Wrote {
        message: String,
        link: String,
    },
    Retry {
        message: String,
        delay_ms: i64,
    },
}

impl Outcome {
    fn masked(self, hidden: &[String]) -> Outcome {
        let mask = |text: String| template::mask_text(&text, hidden);
        match self {
            Outcome::Keep => Outcome::Keep,
            Outcome::Progress(message) => Outcome::Progress(mask(message)),
            Outcome::End(status, message) => Outcome::End(status, mask(message)),
            Outcome::Wrote { message, link } => Outcome::Wrote { message: mask(message), link: mask(link) },
            Outcome::Retry { message, delay_ms } => Outcome::Retry { message: mask(message), delay_ms },
        }
    }
}

/// A rendered invocation.
struct Rendered {
    /// With the secrets: only for the backend.
    full: Value,
    /// With what read a secret (or the run token) shown as `********`: what the run shows.
    masked: Value,
    secrets: std::collections::BTreeMap<String, String>,
    /// The values to mask anywhere the run is recorded: the secrets, the run token and what
    /// expressions made of them.
    hidden: Vec<String>,
}

/// Why a notice was not delivered, fit for the server's log: what the webhook answered may echo
/// the secrets its URL and headers were rendered with, so they are masked.
fn undelivered(attempt: &Attempt, hidden: &[String]) -> String {
    let text = match attempt {
        Attempt::Delivered { status, .. } => format!("the webhook answered {status}"),
        Attempt::Fatal(error) | Attempt::Retry { error, .. } => error.clone(),
    };
    template::mask_text(&text, hidden)
}

/// The action's timeout, but never longer than most of what is left of the job's lease: a
/// delivery that outlived its claim would be made again by another worker meanwhile.
fn delivery_timeout(timeout_seconds: u32, lease_left_ms: i64) -> Duration {
    let within_lease = Duration::from_millis((lease_left_ms.max(0) as u64) * 4 / 5).max(Duration::from_millis(100));
    Duration::from_secs(u64::from(timeout_seconds)).min(within_lease)
}

/// Exponential backoff from 1 s, doubling per attempt up to 5 minutes, with ±20 % jitter.
fn backoff_ms(attempts: i64) -> i64 {
    let base = 1_000i64.saturating_mul(1 << attempts.clamp(0, 9)).min(300_000);
    let jitter = (crate::keys::random_bytes::<2>()[0] as i64 * base * 2 / 5) / 255 - base / 5;
    base + jitter
}

fn attempt_outcome(attempt: Attempt, synchronized: bool, attempts: i64, max_attempts: i64) -> Outcome {
    match attempt {
        Attempt::Delivered { status, .. } if synchronized => {
            Outcome::End(RunStatus::Success, format!("the webhook answered {status}"))
        }
        Attempt::Delivered { status, .. } => {
            Outcome::Progress(format!("delivered (the webhook answered {status}); waiting for the backend to report"))
        }
        Attempt::Fatal(reason) => Outcome::End(RunStatus::Failure, reason),
        Attempt::Retry { error, .. } if attempts >= max_attempts => {
            Outcome::End(RunStatus::Failure, format!("gave up after {attempts} attempts; the last one: {error}"))
        }
        Attempt::Retry { error, after } => Outcome::Retry {
            message: format!("attempt {attempts} of {max_attempts} failed: {error}"),
            delay_ms: after.map(|d| d.as_millis() as i64).unwrap_or_else(|| backoff_ms(attempts - 1)),
        },
    }
}

/// A built-in backend's error: a passing database outage is retried, anything else ends the run.
fn error_outcome(err: Error, attempts: i64) -> Outcome {
    if matches!(err.code, ErrorCode::Unavailable | ErrorCode::Conflict) && attempts < 5 {
        return Outcome::Retry {
            message: format!("attempt {attempts} failed: {}", err.message),
            delay_ms: backoff_ms(attempts - 1),
        };
    }
    let details: Vec<String> = err.details.iter().map(Value::to_string).collect();
    let reason = if details.is_empty() { err.message } else { format!("{} ({})", err.message, details.join("; ")) };
    Outcome::End(RunStatus::Failure, reason)
}

/// An entity as templates and events see it.
pub(crate) fn entity_document(entity: &Entity) -> Value {
    serde_json::to_value(entity).unwrap_or(Value::Null)
}

/// The automations (actions triggered by events), loaded once per transaction that may fire them.
pub(crate) async fn automations(tx: &mut dyn Tx) -> Result<Vec<Action>> {
    let all = tx.actions().await?;
    Ok(all.into_iter().map(|r| r.action).filter(|a| matches!(a.trigger, Trigger::Automation { .. })).collect())
}

/// What an event is about, for matching automations' event filters.
pub(crate) struct EventSubject<'a> {
    pub kind: EventKind,
    pub blueprint: Option<&'a str>,
    pub property: Option<&'a str>,
    pub action: Option<&'a str>,
}

/// Queues an `automation` job for every automation listening for this event.
pub(crate) async fn queue_automations(
    tx: &mut dyn Tx,
    automations: &[Action],
    subject: EventSubject<'_>,
    depth: u32,
    now: Millis,
    event: impl FnOnce() -> Value,
) -> Result<()> {
    let listening: Vec<&str> = automations
        .iter()
        .filter(|a| match &a.trigger {
            Trigger::Automation { event, .. } => {
                let matches =
                    |wanted: &Option<String>, given: Option<&str>| wanted.is_none() || wanted.as_deref() == given;
                event.kind == subject.kind
                    && matches(&event.blueprint_identifier, subject.blueprint)
                    && matches(&event.property_identifier, subject.property)
                    && matches(&event.action_identifier, subject.action)
            }
            Trigger::SelfService { .. } => false,
        })
        .map(|a| a.identifier.as_str())
        .collect();
    if listening.is_empty() {
        return Ok(());
    }
    let event = event();
    let jobs: Vec<NewJob> = listening
        .into_iter()
        .map(|action| NewJob {
            kind: AUTOMATION.into(),
            dedupe_key: None,
            payload: json!({"action": action, "event": event, "depth": depth}),
            run_after: now,
        })
        .collect();
    tx.enqueue_jobs(&jobs).await?;
    Ok(())
}

/// The automations entity changes (before, after) trigger.
pub(crate) async fn queue_entity_automations(
    tx: &mut dyn Tx,
    actor: &Actor,
    now: Millis,
    changes: &[(Option<&Entity>, Option<&Entity>)],
) -> Result<()> {
    let automations = automations(tx).await?;
    if automations.is_empty() {
        return Ok(());
    }
    // A change a run makes is one hop further from a person than that run: loops end.
    let depth = match &actor.run {
        Some(run) => tx.run(run, false).await?.map(|r| r.depth + 1).unwrap_or(1),
        None => 1,
    };
    if depth > MAX_AUTOMATION_DEPTH {
        return Ok(());
    }
    for (before, after) in changes.iter().copied() {
        let (kind, subject) = match (before, after) {
            (None, Some(after)) => (EventKind::EntityCreated, after),
            (Some(_), Some(after)) => (EventKind::EntityUpdated, after),
            (Some(before), None) => (EventKind::EntityDeleted, before),
            (None, None) => continue,
        };
        let event = || {
            json!({
                "type": kind,
                "blueprint": subject.blueprint,
                "trigger": {"by": actor.id, "origin": actor.origin.as_str(), "at": portolan_model::format_millis(now)},
                "diff": {"before": before.map(entity_document), "after": after.map(entity_document)}
            })
        };
        let on = EventSubject { kind, blueprint: Some(&subject.blueprint), property: None, action: None };
        queue_automations(tx, &automations, on, depth, now, event).await?;
    }
    Ok(())
}

/// How long a run refused for concurrency is told to wait before trying again.
const CONCURRENCY_RETRY_SECONDS: u64 = 10;

/// Refuses a run a guardrail stops: 429 (with `Retry-After`) for quotas and concurrency, 409
/// `frozen` (with `Retry-After` when the window ends), 423 `locked`, 412 for a failed
/// precondition, each with every verdict as details; 422 at the input for a bound.
pub(crate) fn refuse_unless_allowed(verdicts: &[Verdict]) -> Result<()> {
    let Some(first) = verdicts.iter().find(|v| !v.passed) else { return Ok(()) };
    let all: Vec<Value> = verdicts.iter().map(|v| json!(v)).collect();
    Err(match first.guardrail.as_str() {
        "quota" | "concurrency" => {
            let wait = verdicts.iter().filter(|v| !v.passed).filter_map(|v| v.retry_after_seconds).max();
            Error::too_many(first.message.clone(), wait.unwrap_or(1)).with_details(all)
        }
        "precondition" => Error::new(ErrorCode::PreconditionFailed, first.message.clone()).with_details(all),
        "freeze" => {
            let error = Error::new(ErrorCode::Frozen, first.message.clone()).with_details(all);
            Error { retry_after: first.retry_after_seconds, ..error }
        }
        "lock" => Error::new(ErrorCode::Locked, first.message.clone()).with_details(all),
        bound => {
            Error::invalid_at(&format!("/properties/{}", bound.trim_start_matches("bounds.")), first.message.clone())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use portolan_model::permission::{Role, User};

    use crate::error::ErrorCode;
    use crate::services::SystemClock;

    /// The services over a fresh SQLite store (kept while the directory lives).
    async fn catalog_on_sqlite() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = portolan_store::open(&dir.path().to_string_lossy()).await.expect("store");
        let state =
            crate::AppState::with_options(store, Arc::new(SystemClock), &Default::default()).await.expect("state");
        (dir, state.catalog)
    }

    /// What was checked when a run was requested is checked again where it is written: a grant
    /// taken away, an action changed or deleted, or an entity deleted meanwhile refuses the run.
    #[tokio::test]
    async fn the_run_writer_checks_again_what_changed_since_the_request() {
        let (_dir, catalog) = catalog_on_sqlite().await;
        let system = Actor::system("test", Origin::Api);
        let action = |title: &str| {
            json!({"identifier": "job", "title": title,
                   "trigger": {"type": "self-service", "operation": "CREATE", "userInputs": {"properties": {}}},
                   "invocationMethod": {"type": "RUNNER", "labels": ["x"], "task": "noop"}})
        };
        catalog.put_action(&system, None, action("Job")).await.expect("action");
        let member = Actor::user(User { id: "m".into(), role: Role::Member, teams: vec![] }, Origin::Api);
        let prepare = || async {
            let (action, run, _) =
                catalog.prepare_run(&member, "job", RunRequest::default()).await.expect("the request passes");
            (action, run)
        };

        let (job, run) = prepare().await;
        catalog.put_action_permissions(&system, "job", json!({"execute": {"roles": ["admin"]}})).await.expect("grant");
        let refused = catalog.write_run(job, run, member.clone()).await.expect_err("no longer allowed");
        assert_eq!(refused.code, ErrorCode::Forbidden, "{refused}");

        catalog.put_action_permissions(&system, "job", json!({"execute": {"roles": ["member"]}})).await.expect("grant");
        let (job, run) = prepare().await;
        catalog.put_action(&system, Some("job"), action("Another job")).await.expect("changed");
        let refused = catalog.write_run(job, run, member.clone()).await.expect_err("the action changed");
        assert_eq!(refused.code, ErrorCode::Conflict, "{refused}");

        let (job, run) = prepare().await;
        catalog.delete_action(&system, "job").await.expect("deleted");
        let refused = catalog.write_run(job, run, member.clone()).await.expect_err("the action is gone");
        assert_eq!(refused.code, ErrorCode::NotFound, "{refused}");

        catalog.put_action(&system, None, action("Job")).await.expect("action again");
        let (job, run) = prepare().await;
        catalog.write_run(job, run, member).await.expect("an unchanged request is written");
    }

    /// An action stored with a command line by an earlier version names no task: its runs fail
    /// and say an admin must choose one, instead of reaching a runner.
    #[tokio::test]
    async fn a_stored_command_line_reaches_no_runner() {
        let (_dir, catalog) = catalog_on_sqlite().await;
        let system = Actor::system("test", Origin::Api);
        let stored = r#"{"identifier": "old", "trigger": {"type": "self-service", "operation": "CREATE"},
            "invocationMethod": {"type": "RUNNER", "labels": ["x"], "command": ["portolan", "admin", "create-token"]}}"#;
        let action = Action::from_stored(stored).expect("an old action still loads");
        assert_eq!(action.runner_wiring(), Some((&["x".to_string()][..], "")));
        let record = portolan_store::ActionRecord {
            action,
            created_at: 0,
            created_by: "mo".into(),
            updated_at: 0,
            updated_by: "mo".into(),
        };
        let mut tx = catalog.store().write().await.expect("tx");
        tx.put_action(&record, true).await.expect("stored");
        tx.commit().await.expect("commit");
        let run = catalog.create_run(&system, "old", RunRequest::default()).await.expect("queued");
        let (_, token) = catalog.create_runner_token(&system, "runner", vec!["x".into()]).await.expect("token");
        assert!(catalog.try_claim(&token, &[], 30_000).await.expect("claim").is_none(), "nothing to run");
        let (failed, _) = catalog.get_run(&system, &run.id).await.expect("run");
        assert_eq!(failed.status, RunStatus::Failure);
        assert!(failed.reason.as_deref().unwrap_or_default().contains("an admin must choose its task"), "{failed:?}");
    }

    /// What a refusing webhook answered goes to the server's log with the secrets masked.
    #[test]
    fn an_undelivered_notice_is_told_without_the_secrets_it_echoes() {
        let canary = "canary-5ecret-4711".to_string();
        let hidden = vec![canary.clone(), String::new()];
        for attempt in [
            Attempt::Fatal(format!("the webhook answered 403: {{\"echo\": \"/hook?key={canary}\"}}")),
            Attempt::Retry { error: format!("cannot reach the webhook: {canary}"), after: None },
            Attempt::Delivered { status: 200, body: canary.clone() },
        ] {
            let told = undelivered(&attempt, &hidden);
            assert!(!told.contains(&canary), "{told}");
        }
        let told = undelivered(&Attempt::Fatal(format!("the webhook answered 400: {canary}")), &hidden);
        assert_eq!(told, "the webhook answered 400: ********");
    }
}
