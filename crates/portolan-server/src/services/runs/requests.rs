//! Starting runs: a request from a form (checked, judged by the guardrails, sent for approval
//! when the action asks for it) or a dry run that says what would happen.

use portolan_model::action::{Action, FormState, Operation, Trigger, UserInputs};
use portolan_model::guardrail::{Approvers, Notify, NotifyFormat, Verdict};
use portolan_model::permission::{ActionOp, EntityOp};
use portolan_model::run::{Run, RunStatus, RunTrigger};
use portolan_model::{Entity, FieldErrors, format_millis};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::service::NewRun;
use super::service::{Runs, new_run_id};
use crate::error::{Error, ErrorCode, Result};
use crate::outbound::Purpose;
use crate::services::actor::Actor;
use crate::services::core::load_action;
use crate::services::guardrails::refuse_unless_allowed;
use crate::services::runlog::note_on_run;
use crate::services::triggers::entity_document;

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

impl Runs {
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
    pub(super) async fn write_run(&self, action: Action, run: Run, actor: Actor) -> Result<()> {
        let stopping = || Error::new(ErrorCode::Unavailable, "the server is stopping");
        let (done, written) = tokio::sync::oneshot::channel();
        self.new_runs()
            .send(NewRun { action, run, actor, requested_in: tracing::Span::current(), done })
            .await
            .map_err(|_| stopping())?;
        written.await.map_err(|_| stopping())?
    }

    /// Tells the approval webhook of a run waiting for approval, in the background (a failure is
    /// logged; the run waits either way).
    pub(super) fn announce_approval(&self, notify: Notify, approvers: Option<Approvers>, run: &Run) {
        let url = format!("{}/api/v1/actions/runs/{}", self.public_url, run.id);
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
        let runs = self.clone();
        let run_id = run.id.clone();
        tokio::spawn(async move {
            let sent = match runs.engine.outbound.request(Purpose::ApprovalNotice, reqwest::Method::POST, &notify.url) {
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
            note_on_run(&runs.core, &run_id, format!("approvers were not notified: {failure}")).await;
        });
    }

    /// What a run would do, and every guardrail's decision on it, without starting it.
    pub async fn dry_run(&self, actor: &Actor, action_id: &str, request: RunRequest) -> Result<DryRun> {
        let (action, run, guardrails) = self.prepare_run(actor, action_id, request).await?;
        let mut tx = self.core.store().read().await?;
        let (rendered, render_error) = match self.render(tx.as_mut(), &action, &run, "********").await {
            Ok(rendered) => (Some(rendered.masked), None),
            Err(error) => (None, Some(error)),
        };
        let would_start = guardrails.iter().all(|v| v.passed);
        Ok(DryRun { would_start, status: run.status, guardrails, rendered, render_error })
    }

    /// Checks a run request (the action, the caller's right to run it, the entity, the form and
    /// its pickers) and builds the run, with every guardrail's verdict on it.
    pub(super) async fn prepare_run(
        &self,
        actor: &Actor,
        action_id: &str,
        request: RunRequest,
    ) -> Result<(Action, Run, Vec<Verdict>)> {
        let mut tx = self.core.store().read().await?;
        let record = load_action(tx.as_mut(), action_id).await?;
        if !self.actions.may_see_action(tx.as_mut(), actor, &record).await? {
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
                let entity =
                    self.permissions.readable_entity(tx.as_mut(), actor, entity).await.map_err(|_| missing())?;
                if let Some(condition) = condition {
                    let admitted = self
                        .search
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
        if !self
            .permissions
            .action_allowed(tx.as_mut(), actor, action_id, on_blueprint, on_entity, ActionOp::Execute)
            .await?
        {
            let on = on_entity.map(|e| format!(" on '{e}'")).unwrap_or_default();
            return Err(Error::forbidden(format!("you may not run '{action_id}'{on}")));
        }
        let entity_json = entity.as_ref().map(entity_document).unwrap_or(Value::Null);
        let state = self.dynamic_inputs(actor, user_inputs, &request.properties, entity.as_ref()).await;
        let mut valid = user_inputs.validate(&request.properties, &state)?;
        let mut errors = FieldErrors::default();
        for picker in &valid.pickers {
            let existing: Vec<String> =
                tx.existing(&picker.blueprint, &picker.identifiers).await?.into_iter().collect();
            // What the requester may not read does not exist for them.
            let read = self.permissions.entity_access(tx.as_mut(), actor, &picker.blueprint, EntityOp::Read).await?;
            let found = self.permissions.admitted_by(tx.as_mut(), actor, &picker.blueprint, &read, &existing).await?;
            let admitted = match &picker.dataset {
                Some(dataset) => {
                    self.search.admitted(tx.as_mut(), actor, &picker.blueprint, dataset, &picker.identifiers).await?
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
            at: self.core.now(),
            event: None,
            teams,
            override_reason: None,
        };
        let verdicts = self
            .guardrails
            .guardrail_verdicts(
                tx.as_mut(),
                actor,
                &action,
                entity.as_ref(),
                &valid.values,
                &trigger,
                request.override_reason.as_deref(),
            )
            .await?;
        // A bound gone past is kept with the run (and so in its audit record), with the reason.
        if verdicts.iter().any(|v| v.passed && v.message.contains("; overridden: ")) {
            trigger.override_reason = request.override_reason.clone();
        }
        self.encrypt_inputs(user_inputs, &mut valid.values).await?;
        let mut run = Run::queued(new_run_id(), &action, entity.map(|e| e.identifier), valid.values, trigger, 0);
        let approval_input = json!({"inputs": run.inputs, "entity": entity_json, "requester": {"identifier": actor.id, "teams": run.trigger.teams}});
        let mut rule = action.approval();
        if let Some(when) = rule.as_ref().and_then(|r| r.when.as_deref()) {
            let needed = self
                .eval_one(when, &approval_input)
                .await
                .map_err(|e| Error::new(ErrorCode::ValidationFailed, format!("the approval's `when` failed: {e}")))?;
            if needed != Value::Bool(true) {
                rule = None;
            }
        }
        if let Some(mut rule) = rule {
            if let Some(policy) = &rule.policy {
                let input = &approval_input;
                let computed = self
                    .eval_one(policy, input)
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
            let binding = self.guardrails.approval_binding(tx.as_mut(), &run).await?;
            run.status = RunStatus::WaitingForApproval;
            run.approval = Some(portolan_model::guardrail::Approval::new(&rule, binding, run.created_at));
        }
        Ok((action, run, verdicts))
    }

    /// Replaces the values of inputs marked `encryption` with their ciphertext, so that only it
    /// is stored, shown and sent.
    async fn encrypt_inputs(&self, user_inputs: &UserInputs, values: &mut Map<String, Value>) -> Result<()> {
        let mut key = None;
        for (name, _) in user_inputs.properties.iter().filter(|(_, i)| i.encryption.is_some()) {
            let Some(value) = values.get_mut(name) else { continue };
            let key = match &key {
                Some(key) => key,
                None => key.insert(self.actions.server_signing_key().await?),
            };
            let plain = match &*value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            *value = Value::from(crate::keys::encrypt_input(key, &plain)?);
        }
        Ok(())
    }

    /// What the form's jq expressions give for a form filled in so far; an expression that fails
    /// gives nothing.
    pub(super) async fn dynamic_inputs(
        &self,
        actor: &Actor,
        user_inputs: &UserInputs,
        form: &Map<String, Value>,
        entity: Option<&Entity>,
    ) -> FormState {
        let Some(program) = user_inputs.dynamic_program() else { return FormState::default() };
        let context = json!({
            "form": form, "entity": entity.map(entity_document).unwrap_or(Value::Null),
            "user": {"identifier": actor.id}, "trigger": {"by": actor.id, "origin": actor.origin.as_str()}
        });
        let out = self.eval_one(&program, &context).await.unwrap_or(Value::Null);
        serde_json::from_value(out).unwrap_or_default()
    }

    /// Which inputs of an action's form apply, for what is filled in so far (the form's script
    /// asks as the person types).
    pub async fn form_state(
        &self,
        actor: &Actor,
        action_id: &str,
        form: &Map<String, Value>,
        entity: Option<&str>,
    ) -> Result<FormState> {
        let mut tx = self.core.store().read().await?;
        let record = load_action(tx.as_mut(), action_id).await?;
        if !self.actions.may_see_action(tx.as_mut(), actor, &record).await? {
            return Err(Error::hidden(format!("action '{action_id}'")));
        }
        let Trigger::SelfService { user_inputs, blueprint_identifier, .. } = &record.action.trigger else {
            return Ok(FormState::default());
        };
        let entity = match (blueprint_identifier, entity) {
            (Some(blueprint), Some(identifier)) => match tx.entity(blueprint, identifier).await? {
                Some(found) => self.permissions.readable_entity(tx.as_mut(), actor, found).await.ok(),
                None => None,
            },
            _ => None,
        };
        drop(tx);
        Ok(self.dynamic_inputs(actor, user_inputs, form, entity.as_ref()).await)
    }
}

#[cfg(test)]
mod tests {
    use portolan_model::permission::{Role, User};
    use serde_json::json;

    use super::*;
    use crate::error::ErrorCode;
    use crate::services::actor::Origin;

    /// What was checked when a run was requested is checked again where it is written: a grant
    /// taken away, an action changed or deleted, or an entity deleted meanwhile refuses the run.
    #[tokio::test]
    async fn the_run_writer_checks_again_what_changed_since_the_request() {
        let (_dir, app) = crate::state::on_sqlite().await;
        let system = Actor::system("test", Origin::Api);
        let action = |title: &str| {
            json!({"identifier": "job", "title": title,
                   "trigger": {"type": "self-service", "operation": "CREATE", "userInputs": {"properties": {}}},
                   "invocationMethod": {"type": "RUNNER", "labels": ["x"], "task": "noop"}})
        };
        app.actions.put_action(&system, None, action("Job")).await.expect("action");
        let member = Actor::user(User { id: "m".into(), role: Role::Member, teams: vec![] }, Origin::Api);
        let prepare = || async {
            let (action, run, _) =
                app.runs.prepare_run(&member, "job", RunRequest::default()).await.expect("the request passes");
            (action, run)
        };
        let grant = |roles: &str| json!({"execute": {"roles": [roles]}});

        let (job, run) = prepare().await;
        app.permissions.put_action_permissions(&system, "job", grant("admin")).await.expect("grant");
        let refused = app.runs.write_run(job, run, member.clone()).await.expect_err("no longer allowed");
        assert_eq!(refused.code, ErrorCode::Forbidden, "{refused}");

        app.permissions.put_action_permissions(&system, "job", grant("member")).await.expect("grant");
        let (job, run) = prepare().await;
        app.actions.put_action(&system, Some("job"), action("Another job")).await.expect("changed");
        let refused = app.runs.write_run(job, run, member.clone()).await.expect_err("the action changed");
        assert_eq!(refused.code, ErrorCode::Conflict, "{refused}");

        let (job, run) = prepare().await;
        app.actions.delete_action(&system, "job").await.expect("deleted");
        let refused = app.runs.write_run(job, run, member.clone()).await.expect_err("the action is gone");
        assert_eq!(refused.code, ErrorCode::NotFound, "{refused}");

        app.actions.put_action(&system, None, action("Job")).await.expect("action again");
        let (job, run) = prepare().await;
        app.runs.write_run(job, run, member).await.expect("an unchanged request is written");
    }
}
