//! Manual approval of runs: deciding, cancelling a waiting run, the approver's inbox, and ending
//! runs whose approval expired. The rules are in `portolan_model::guardrail`.

use portolan_model::guardrail::{Approval, Decision, Standing};
use portolan_model::run::{Run, RunStatus};
use portolan_store::RunFilter;
use serde_json::json;

use super::actor::Actor;
use super::core::Core;
use super::guardrails::Guardrails;
use super::permissions::Permissions;
use super::runlog::{dispatch_job, end_runs, log, record_run, runs_in, wake_for};
use super::triggers::automations;
use crate::error::{Error, ErrorCode, Result};

/// Manual approval of runs.
#[derive(Clone)]
pub struct Approvals {
    core: Core,
    permissions: Permissions,
    guardrails: Guardrails,
}

impl Approvals {
    pub fn new(core: Core, permissions: Permissions, guardrails: Guardrails) -> Self {
        Self { core, permissions, guardrails }
    }
}

impl Approvals {
    /// Approves or declines a waiting run. Enough approvals queue it; a decline ends it.
    pub async fn decide_run(
        &self,
        actor: &Actor,
        id: &str,
        decision: Decision,
        comment: Option<String>,
    ) -> Result<Run> {
        let user = actor.as_user().ok_or_else(|| Error::forbidden("only people approve runs"))?.clone();
        let now = self.core.now();
        let mut tx = self.core.store().write().await?;
        let before = self.permissions.visible_run(tx.as_mut(), actor, id).await?;
        let before = tx.run(&before.id, true).await?.ok_or_else(|| Error::not_found(format!("run '{id}'")))?;
        let Some(mut approval) = before.approval.clone() else {
            return Err(Error::new(ErrorCode::Conflict, format!("run '{id}' does not need approval")));
        };
        if before.status != RunStatus::WaitingForApproval {
            let status = before.status.as_str();
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("run '{id}' is no longer waiting for approval ({status})"),
            ));
        }
        let grant = self.permissions.holds_approve_grant(tx.as_mut(), actor, &before).await?;
        let binding = self.guardrails.approval_binding(tx.as_mut(), &before).await?;
        let requester = before.trigger.by.clone();
        let standing = match approval.decide(&requester, &user, grant, decision, comment.clone(), &binding, now) {
            Ok(standing) => standing,
            Err(why) if why.contains("own run") || why.contains("not an approver") => {
                return Err(Error::forbidden(why));
            }
            Err(why) => return Err(Error::new(ErrorCode::Conflict, why)),
        };
        let mut run = before.clone();
        run.approval = Some(approval);
        run.updated_at = now;
        let verb = if decision == Decision::Approve { "approved" } else { "declined" };
        let said = comment.map(|c| format!(": {c}")).unwrap_or_default();
        let mut logs = vec![log(now, format!("{verb} by {}{said}", user.id))];
        match &standing {
            Standing::Waiting => {}
            Standing::Approved => {
                // A freeze or a lock that began while the run waited holds it back: it stays
                // waiting, and the approver may approve again once it lifts.
                if let Some(action) = tx.action(&run.action).await? {
                    super::guardrails::refuse_unless_allowed(
                        &self.guardrails.timing_verdicts(tx.as_mut(), actor, &action.action).await?,
                    )?;
                }
                run.transition(RunStatus::Queued, now).map_err(|m| Error::new(ErrorCode::Internal, m))?;
                logs.push(log(now, "approved: queued"));
                if run.backend != portolan_model::action::BackendKind::Runner {
                    tx.enqueue_jobs(&[dispatch_job(&run)]).await?;
                }
            }
            Standing::Declined(reason) => {
                run.end(RunStatus::Declined, reason.clone(), now).map_err(|m| Error::new(ErrorCode::Internal, m))?;
            }
        }
        let entry = actor
            .entry(now, if decision == Decision::Approve { "run.approve" } else { "run.decline" }, "run", id)
            .changed(None, run.approval.as_ref().and_then(|a| a.decisions.last()).map(|d| json!(d)));
        tx.append_audit(&[portolan_model::audit::AuditEntry {
            blueprint: run.blueprint.clone(),
            run: Some(run.id.clone()),
            ..entry
        }])
        .await?;
        let listeners = automations(tx.as_mut()).await?;
        record_run(tx.as_mut(), actor, &listeners, Some(&before), &run, logs, now).await?;
        tx.commit().await?;
        if standing == Standing::Approved {
            wake_for(&self.core, &run);
        }
        Ok(run)
    }

    /// Cancels a run waiting for approval: its requester or an admin. Once approved (or declined)
    /// it is too late; of an approval and a cancel at the same moment, one wins.
    pub async fn cancel_run(&self, actor: &Actor, id: &str) -> Result<Run> {
        let now = self.core.now();
        let mut tx = self.core.store().write().await?;
        let seen = self.permissions.visible_run(tx.as_mut(), actor, id).await?;
        let before = tx.run(&seen.id, true).await?.ok_or_else(|| Error::not_found(format!("run '{id}'")))?;
        let admin = actor.as_user().is_some_and(|u| u.is_admin());
        if before.trigger.by != actor.id && !admin {
            return Err(Error::forbidden("only the run's requester or an admin may cancel it"));
        }
        if before.status != RunStatus::WaitingForApproval {
            let status = before.status.as_str();
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("run '{id}' is no longer waiting for approval ({status})"),
            ));
        }
        let mut run = before.clone();
        let reason = format!("cancelled by {}", actor.id);
        run.end(RunStatus::Cancelled, reason.clone(), now).map_err(|m| Error::new(ErrorCode::Internal, m))?;
        let listeners = automations(tx.as_mut()).await?;
        record_run(tx.as_mut(), actor, &listeners, Some(&before), &run, vec![log(now, reason)], now).await?;
        tx.commit().await?;
        Ok(run)
    }

    /// The runs waiting for the actor's decision, oldest first.
    pub async fn approval_inbox(&self, actor: &Actor) -> Result<Vec<Run>> {
        let waiting = RunFilter { statuses: vec![RunStatus::WaitingForApproval], ..RunFilter::default() };
        let all = runs_in(&self.core, waiting, |_| true).await?;
        let mut tx = self.core.store().read().await?;
        let mut waiting = Vec::new();
        for run in all {
            if self.permissions.may_decide(tx.as_mut(), actor, &run).await? {
                waiting.push(run);
            }
        }
        waiting.reverse();
        Ok(waiting)
    }

    /// Ends the runs whose approval expired (`DECLINED`, with why). Returns how many.
    pub async fn expire_approvals(&self) -> Result<usize> {
        let now = self.core.now();
        let expired = |run: &Run| run.approval.as_ref().is_some_and(|a: &Approval| a.expires_at <= now);
        let waiting = RunFilter { statuses: vec![RunStatus::WaitingForApproval], ..RunFilter::default() };
        let due = runs_in(&self.core, waiting, expired).await?;
        end_runs(&self.core, due, RunStatus::WaitingForApproval, |_| {
            Some((RunStatus::Declined, "no approval before it expired".into()))
        })
        .await
        .map(|ended| ended.len())
    }
}
