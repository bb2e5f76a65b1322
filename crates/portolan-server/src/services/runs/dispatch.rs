//! Dispatch: delivering a run to the backend the server calls itself (webhook, NATS, built-in
//! entity writes), and the signed notice a webhook gets when its run times out.

use std::time::Duration;

use portolan_model::action::InvocationMethod;
use portolan_model::ident::url_segment;
use portolan_model::run::{Run, RunStatus};
use portolan_model::template;
use portolan_store::{Job, actions as affected};
use serde_json::{Value, json};

use super::delivery::{Delivery, Outcome};
use super::render::Rendered;
use super::service::{RUN_TOKEN_TTL_MS, Runs};
use crate::backends::{Attempt, WebhookRequest};
use crate::error::{Error, ErrorCode, Result};
use crate::outbound::Purpose;
use crate::services::actor::{Actor, Origin};
use crate::services::catalog::WriteMode;
use crate::services::runlog::note_on_run;

impl Runs {
    /// Delivers a run to its backend (a `dispatch` job) and says how it went; the worker records
    /// deliveries in batches with [`Catalog::record_deliveries`].
    pub async fn dispatch(&self, job: &Job) -> Result<Delivery> {
        if job.payload.get("github").is_some() || job.payload.get("gitlab").is_some() {
            return self.look(job).await;
        }
        let run_id = job.payload["run"].as_str().unwrap_or_default().to_string();
        let mut tx = self.core.store().read().await?;
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
        let token = self.keys.run_token(&run.id, run.attempt, run.created_at + RUN_TOKEN_TTL_MS);
        let rendered = self.render(tx.as_mut(), &action.action, &run, &token).await;
        drop(tx);
        let Rendered { full: rendered, masked, secrets, hidden } = match rendered {
            Ok(rendered) => rendered,
            Err(reason) => {
                let outcome = Outcome::End(RunStatus::Failure, format!("the payload template failed: {reason}"));
                return Ok(Delivery { run_id, outcome, payload_view: None });
            }
        };
        let payload_view = ["body", "payload", "entity", "inputs"]
            .iter()
            .find_map(|key| masked.get(*key).filter(|v| !v.is_null()))
            .cloned();
        let actor = Actor::system(format!("run:{}", run.id), Origin::Backend).for_run(run.id.clone());
        let outcome = match &action.action.invocation_method {
            InvocationMethod::Webhook {
                method, synchronized, signing_secret, timeout_seconds, max_attempts, ..
            } => {
                let secret = self.webhook_key(signing_secret.as_ref(), &secrets).await?;
                let headers = rendered["headers"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                    .collect();
                let body = serde_json::to_vec(&rendered["body"]).unwrap_or_default();
                let url = rendered["url"].as_str().unwrap_or_default();
                let attempt = self
                    .engine
                    .deliver_webhook(
                        Purpose::Webhook,
                        WebhookRequest {
                            method,
                            url,
                            headers,
                            body,
                            timeout: delivery_timeout(*timeout_seconds, job.lease_until - self.core.now()),
                            id: &format!("msg_{}", run.id),
                            signing_secret: &secret,
                            now_seconds: self.core.now() / 1000,
                        },
                    )
                    .await;
                attempt_outcome(attempt, *synchronized, job.attempts, i64::from(*max_attempts))
            }
            InvocationMethod::Nats { .. } => {
                let subject = rendered["subject"].as_str().unwrap_or_default().to_string();
                let payload = serde_json::to_vec(&rendered["payload"]).unwrap_or_default();
                match self.engine.publish_nats(&subject, &run.id, payload).await {
                    Ok(ack) => Outcome::Progress(format!(
                        "published to '{subject}' ({ack}); waiting for the backend to report"
                    )),
                    Err(attempt) => attempt_outcome(attempt, false, job.attempts, 5),
                }
            }
            InvocationMethod::UpsertEntity { blueprint_identifier, merge, .. } => {
                let mode = WriteMode::Create { upsert: true, merge: *merge };
                match self
                    .catalog
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
                            self.public_url,
                            url_segment(&entity.identifier)
                        ),
                    },
                    Err(err) => error_outcome(err, job.attempts),
                }
            }
            InvocationMethod::DeleteEntity { blueprint_identifier, .. } => {
                let identifier = rendered["entity"]["identifier"].as_str().unwrap_or_default().to_string();
                match self.catalog.delete_entity(&actor, blueprint_identifier, &identifier, false, None).await {
                    Ok(_) => Outcome::End(RunStatus::Success, format!("deleted {blueprint_identifier} '{identifier}'")),
                    Err(err) if err.code == ErrorCode::NotFound && self.run_deleted(&run.id, &identifier).await? => {
                        Outcome::End(RunStatus::Success, format!("deleted {blueprint_identifier} '{identifier}'"))
                    }
                    Err(err) => error_outcome(err, job.attempts),
                }
            }
            InvocationMethod::Github { report_workflow_status, .. } => {
                self.dispatch_github(job, &run, &rendered, *report_workflow_status).await
            }
            InvocationMethod::Gitlab { trigger_token_secret, report_workflow_status, .. } => {
                let trigger = trigger_token_secret.as_ref().and_then(|name| secrets.get(name)).map(String::as_str);
                self.dispatch_gitlab(job, &run, &rendered, trigger, *report_workflow_status).await
            }
            InvocationMethod::Runner { .. } => Outcome::Keep,
        };
        // What a backend answered, or an error, may quote a secret; the run's record never does.
        Ok(Delivery { run_id, outcome: outcome.masked(&hidden), payload_view })
    }

    /// One look at a CI run a dispatch started (a `dispatch` job carrying the watch).
    async fn look(&self, job: &Job) -> Result<Delivery> {
        let run_id = job.payload["run"].as_str().unwrap_or_default().to_string();
        let run = self.core.store().read().await?.run(&run_id, false).await?;
        let Some(run) = run.filter(|r| !r.status.is_terminal()) else {
            return Ok(Delivery { run_id, outcome: Outcome::Keep, payload_view: None });
        };
        let malformed =
            |e: serde_json::Error| Outcome::End(RunStatus::Failure, format!("a watch job is malformed: {e}"));
        let outcome = match (job.payload.get("github"), job.payload.get("gitlab")) {
            (Some(watch), _) => match serde_json::from_value(watch.clone()) {
                Ok(watch) => self.watch_github(&run, watch).await,
                Err(e) => malformed(e),
            },
            (None, Some(watch)) => match serde_json::from_value(watch.clone()) {
                Ok(watch) => self.watch_gitlab(&run, watch).await,
                Err(e) => malformed(e),
            },
            (None, None) => Outcome::Keep,
        };
        Ok(Delivery { run_id, outcome, payload_view: None })
    }

    /// The key a webhook is signed with: its `signingSecret`, or the server's own.
    async fn webhook_key(
        &self,
        signing_secret: Option<&String>,
        secrets: &std::collections::BTreeMap<String, String>,
    ) -> Result<String> {
        match signing_secret {
            Some(name) => Ok(secrets.get(name).cloned().unwrap_or_default()),
            None => self.actions.server_signing_key().await,
        }
    }

    pub(super) async fn run_deleted(&self, run_id: &str, identifier: &str) -> Result<bool> {
        let affected = self.core.store().read().await?.run_entities(run_id).await?;
        Ok(affected.iter().any(|(e, change)| e.identifier == identifier && change == affected::DELETED))
    }

    /// Sends a webhook backend a signed `{"type": "run.timed_out", "run": {...}}` at the action's
    /// URL and headers, so it can stop the work. Best effort: a failure is logged.
    pub(crate) async fn tell_webhook_timed_out(&self, run: &Run) {
        let told = async {
            let mut tx = self.core.store().read().await.map_err(|e| e.to_string())?;
            let action = tx.action(&run.action).await.map_err(|e| e.to_string())?.ok_or("the action is gone")?.action;
            let InvocationMethod::Webhook { signing_secret, .. } = &action.invocation_method else { return Ok(()) };
            let rendered = self.render(tx.as_mut(), &action, run, "").await?;
            drop(tx);
            let secret = self.webhook_key(signing_secret.as_ref(), &rendered.secrets).await.map_err(|e| e.message)?;
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
                signing_secret: &secret,
                now_seconds: self.core.now() / 1000,
            };
            match self.engine.deliver_webhook(Purpose::TimeoutNotice, request).await {
                Attempt::Delivered { .. } => Ok(()),
                failed => Err(undelivered(&failed, &rendered.hidden)),
            }
        };
        if let Err(err) = told.await {
            tracing::warn!(run = %run.id, %err, "cannot tell the webhook that the run timed out");
            note_on_run(&self.core, &run.id, format!("the webhook was not told that the run timed out: {err}")).await;
        }
    }
}

/// Why a notice was not delivered, fit for the server's log: what the webhook answered may echo
/// the secrets its URL and headers were rendered with, so they are masked.
pub(super) fn undelivered(attempt: &Attempt, hidden: &[String]) -> String {
    let text = match attempt {
        Attempt::Delivered { status, .. } => format!("the webhook answered {status}"),
        Attempt::Fatal(error) | Attempt::Retry { error, .. } => error.clone(),
    };
    template::mask_text(&text, hidden)
}

/// The action's timeout, but never longer than most of what is left of the job's lease: a
/// delivery that outlived its claim would be made again by another worker meanwhile.
pub(super) fn delivery_timeout(timeout_seconds: u32, lease_left_ms: i64) -> Duration {
    let within_lease = Duration::from_millis((lease_left_ms.max(0) as u64) * 4 / 5).max(Duration::from_millis(100));
    Duration::from_secs(u64::from(timeout_seconds)).min(within_lease)
}

/// Exponential backoff from 1 s, doubling per attempt up to 5 minutes, with ±20 % jitter.
pub(super) fn backoff_ms(attempts: i64) -> i64 {
    let base = 1_000i64.saturating_mul(1 << attempts.clamp(0, 9)).min(300_000);
    let jitter = (crate::keys::random_bytes::<2>()[0] as i64 * base * 2 / 5) / 255 - base / 5;
    base + jitter
}

pub(super) fn attempt_outcome(attempt: Attempt, synchronized: bool, attempts: i64, max_attempts: i64) -> Outcome {
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
pub(super) fn error_outcome(err: Error, attempts: i64) -> Outcome {
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

#[cfg(test)]
mod tests {
    use super::*;

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
