//! Runners: claiming queued runs (long poll), heartbeats, and runs whose runner died.

use std::time::Duration;

use portolan_model::Millis;
use portolan_model::action::{Action, InvocationMethod, RunnerLoss};
use portolan_model::run::{Run, RunStatus};
use portolan_store::RunnerToken;
use serde_json::Value;

use super::render::Rendered;
use super::service::{RUN_TOKEN_TTL_MS, Runs};
use crate::error::{Error, ErrorCode, Result};
use crate::services::actor::{Actor, Origin};
use crate::services::runlog::{log, record_run};
use crate::services::triggers::automations;

/// Most runs one claim request ends (unrenderable, action gone) before it gives up for now.
pub(super) const CLAIM_TRIES: usize = 16;

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
pub(super) fn lease_holder(runner: &RunnerToken, attempt: i64) -> String {
    format!("{} ({}, claim {attempt})", runner.id, runner.name)
}

impl Runs {
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
            let mut tx = self.core.store().write().await?;
            let runner = self.actions.authenticate_runner(tx.as_mut(), token).await?;
            tx.touch_runner_token(&runner.id, self.core.now()).await?;
            tx.commit().await?;
        }
        loop {
            let woken = self.core.runner_signal().notified();
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

    pub(super) async fn try_claim(
        &self,
        token: &str,
        requested: &[String],
        lease_ms: i64,
    ) -> Result<Option<RunnerClaim>> {
        let labels = |runner: &RunnerToken| -> Vec<String> {
            runner.labels.iter().filter(|l| requested.is_empty() || requested.contains(l)).cloned().collect()
        };
        // Look in a read transaction first: a runner polling an empty queue takes no write lock.
        {
            let mut tx = self.core.store().read().await?;
            let runner = self.actions.authenticate_runner(tx.as_mut(), token).await?;
            if tx.claimable_run(&labels(&runner)).await?.is_none() {
                return Ok(None);
            }
        }
        let mut tx = self.core.store().write().await?;
        let runner = self.actions.authenticate_runner(tx.as_mut(), token).await?;
        let labels = labels(&runner);
        let now = self.core.now();
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
                    record_run(tx.as_mut(), &by_runner, listeners, Some(&before), &run, vec![log(now, reason)], now)
                        .await?;
                    continue;
                }
            };
            let InvocationMethod::Runner { task, .. } = &action.invocation_method else { continue };
            let mut run = before.clone();
            run.attempt += 1;
            run.transition(RunStatus::InProgress, now).map_err(|m| Error::new(ErrorCode::Internal, m))?;
            let run_token = self.keys.run_token(&run.id, run.attempt, now + RUN_TOKEN_TTL_MS);
            match self.render(tx.as_mut(), &action, &run, &run_token).await {
                Ok(Rendered { full: rendered, masked, .. }) => {
                    run.payload = masked.get("payload").cloned();
                    tx.lease_run(&run.id, &lease_holder(&runner, run.attempt), now + lease_ms, false).await?;
                    let message = format!("claimed by runner '{}' (attempt {})", runner.name, run.attempt);
                    record_run(tx.as_mut(), &by_runner, listeners, Some(&before), &run, vec![log(now, message)], now)
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
                    record_run(tx.as_mut(), &by_runner, listeners, Some(&before), &failed, vec![log(now, reason)], now)
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
        let mut tx = self.core.store().write().await?;
        let runner: RunnerToken = self.actions.authenticate_runner(tx.as_mut(), token).await?;
        // A run that ended meanwhile (timed out, say) tells its runner to stop.
        if let Some(run) = tx.run(run_id, false).await?
            && run.status.is_terminal()
        {
            let status = run.status.as_str();
            return Err(Error::new(ErrorCode::LeaseLost, format!("run '{run_id}' ended ({status}); stop its command")));
        }
        let until = self.core.now() + lease_ms;
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
        let mut tx = self.core.store().write().await?;
        let now = self.core.now();
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
            record_run(tx.as_mut(), &server, &listeners, Some(&before), &run, vec![log(now, message)], now).await?;
        }
        tx.commit().await?;
        if count > 0 {
            self.core.runner_signal().notify_waiters();
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::runs::RunRequest;

    /// An action stored with a command line by an earlier version names no task: its runs fail
    /// and say an admin must choose one, instead of reaching a runner.
    #[tokio::test]
    async fn a_stored_command_line_reaches_no_runner() {
        let (_dir, app) = crate::state::on_sqlite().await;
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
        let mut tx = app.core.store().write().await.expect("tx");
        tx.put_action(&record, true).await.expect("stored");
        tx.commit().await.expect("commit");
        let run = app.runs.create_run(&system, "old", RunRequest::default()).await.expect("queued");
        let (_, token) = app.actions.create_runner_token(&system, "runner", vec!["x".into()]).await.expect("token");
        assert!(app.runs.try_claim(&token, &[], 30_000).await.expect("claim").is_none(), "nothing to run");
        let (failed, _) = app.runs.get_run(&system, &run.id).await.expect("run");
        assert_eq!(failed.status, RunStatus::Failure);
        assert!(failed.reason.as_deref().unwrap_or_default().contains("an admin must choose its task"), "{failed:?}");
    }
}
