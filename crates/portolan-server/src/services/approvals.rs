//! Manual approval of runs: deciding, cancelling a waiting run, the approver's inbox, and ending
//! runs whose approval expired. The rules are in `portolan_model::guardrail`.

use portolan_model::guardrail::{self, Approval, Decision, Standing};
use portolan_model::permission::ActionOp;
use portolan_model::run::{Run, RunStatus};
use portolan_store::{RunFilter, Tx};
use serde_json::json;

use super::catalog::Catalog;
use super::runs::{automations, dispatch_job, log};
use super::{Actor, Origin};
use crate::error::{Error, ErrorCode, Result};

/// Waiting runs looked at per inbox or expiry pass.
const WAITING_PAGE: u32 = 500;

impl Catalog {
    /// The hash a run's approval is bound to now: its inputs and its entity's current version.
    pub(crate) async fn approval_binding(&self, tx: &mut dyn Tx, run: &Run) -> Result<String> {
        let entity = match (&run.blueprint, &run.entity) {
            (Some(blueprint), Some(identifier)) => tx
                .entity(blueprint, identifier)
                .await?
                .map(|e| json!({"identifier": e.identifier, "version": e.version, "createdAt": e.created_at})),
            _ => None,
        };
        Ok(guardrail::binding(&run.inputs, entity.as_ref()))
    }

    async fn holds_approve_grant(&self, tx: &mut dyn Tx, actor: &Actor, run: &Run) -> Result<bool> {
        self.action_allowed(tx, actor, &run.action, run.blueprint.as_deref(), run.entity.as_deref(), ActionOp::Approve)
            .await
    }

    /// Whether the actor may decide on a waiting run.
    pub async fn may_decide_on(&self, actor: &Actor, run: &Run) -> Result<bool> {
        let mut tx = self.store().read().await?;
        self.may_decide(tx.as_mut(), actor, run).await
    }

    /// Whether the actor may decide on a waiting run (and so see it).
    pub(crate) async fn may_decide(&self, tx: &mut dyn Tx, actor: &Actor, run: &Run) -> Result<bool> {
        let (Some(approval), Some(user)) = (&run.approval, actor.as_user()) else { return Ok(false) };
        if user.id == run.trigger.by {
            return Ok(false);
        }
        let grant = self.holds_approve_grant(tx, actor, run).await?;
        Ok(approval.may_decide(user, grant))
    }

    /// Approves or declines a waiting run. Enough approvals queue it; a decline ends it.
    pub async fn decide_run(
        &self,
        actor: &Actor,
        id: &str,
        decision: Decision,
        comment: Option<String>,
    ) -> Result<Run> {
        let user = actor.as_user().ok_or_else(|| Error::forbidden("only people approve runs"))?.clone();
        let now = self.now();
        let mut tx = self.store().write().await?;
        let before = self.visible_run(tx.as_mut(), actor, id).await?;
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
        let grant = self.holds_approve_grant(tx.as_mut(), actor, &before).await?;
        let binding = self.approval_binding(tx.as_mut(), &before).await?;
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
                    super::runs::refuse_unless_allowed(
                        &self.timing_verdicts(tx.as_mut(), actor, &action.action).await?,
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
        self.record_run(tx.as_mut(), actor, &listeners, Some(&before), &run, logs).await?;
        tx.commit().await?;
        if standing == Standing::Approved {
            self.wake_for(&run);
        }
        Ok(run)
    }

    /// Cancels a run waiting for approval: its requester or an admin. Once approved (or declined)
    /// it is too late; of an approval and a cancel at the same moment, one wins.
    pub async fn cancel_run(&self, actor: &Actor, id: &str) -> Result<Run> {
        let now = self.now();
        let mut tx = self.store().write().await?;
        let seen = self.visible_run(tx.as_mut(), actor, id).await?;
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
        self.record_run(tx.as_mut(), actor, &listeners, Some(&before), &run, vec![log(now, reason)]).await?;
        tx.commit().await?;
        Ok(run)
    }

    /// The runs waiting for the actor's decision, oldest first.
    pub async fn approval_inbox(&self, actor: &Actor) -> Result<Vec<Run>> {
        let waiting = RunFilter { statuses: vec![RunStatus::WaitingForApproval], ..RunFilter::default() };
        let all = self.runs_in(waiting, |_| true).await?;
        let mut tx = self.store().read().await?;
        let mut waiting = Vec::new();
        for run in all {
            if self.may_decide(tx.as_mut(), actor, &run).await? {
                waiting.push(run);
            }
        }
        waiting.reverse();
        Ok(waiting)
    }

    /// Ends the runs that outlived their action's timeout (`TIMED_OUT`). A runner learns it at its
    /// next heartbeat, which is refused, and stops the command; a webhook backend is sent a signed
    /// `run.timed_out` notice at its URL. Returns how many.
    pub async fn time_out_runs(&self) -> Result<usize> {
        let now = self.now();
        let timed: Vec<(String, u32)> = {
            let mut tx = self.store().read().await?;
            let actions = tx.actions().await?;
            actions
                .into_iter()
                .filter_map(|r| Some((r.action.identifier.clone(), r.action.guardrails.timeout_minutes?)))
                .collect()
        };
        let mut ended = Vec::new();
        for (action, minutes) in timed {
            // The clock starts when the run could start: at its request, or at its last approval.
            let overdue = |run: &Run| {
                let started = run.approval.as_ref().and_then(|a| a.decisions.last()).map_or(run.created_at, |d| d.at);
                (now - started > i64::from(minutes) * 60_000)
                    .then(|| (RunStatus::TimedOut, format!("did not finish within {minutes} minutes")))
            };
            let filter = RunFilter {
                action: Some(action),
                statuses: vec![RunStatus::Queued, RunStatus::InProgress],
                ..RunFilter::default()
            };
            let due = self.runs_in(filter, |run| overdue(run).is_some()).await?;
            ended.extend(self.end_runs(due, RunStatus::Queued, overdue).await?);
        }
        for (before, run) in &ended {
            if before.backend == portolan_model::action::BackendKind::Webhook && before.status == RunStatus::InProgress
            {
                let catalog = self.clone();
                let run = run.clone();
                tokio::spawn(async move { catalog.tell_webhook_timed_out(&run).await });
            }
        }
        Ok(ended.len())
    }

    /// Ends the runs whose approval expired (`DECLINED`, with why). Returns how many.
    pub async fn expire_approvals(&self) -> Result<usize> {
        let now = self.now();
        let expired = |run: &Run| run.approval.as_ref().is_some_and(|a: &Approval| a.expires_at <= now);
        let waiting = RunFilter { statuses: vec![RunStatus::WaitingForApproval], ..RunFilter::default() };
        let due = self.runs_in(waiting, expired).await?;
        self.end_runs(due, RunStatus::WaitingForApproval, |_| {
            Some((RunStatus::Declined, "no approval before it expired".into()))
        })
        .await
        .map(|ended| ended.len())
    }

    /// Every run `filter` lists that `due` picks (all pages of them, oldest last).
    async fn runs_in(&self, mut filter: RunFilter, due: impl Fn(&Run) -> bool) -> Result<Vec<Run>> {
        let mut tx = self.store().read().await?;
        let mut picked = Vec::new();
        loop {
            let page = tx.list_runs(&filter, WAITING_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            filter.before = Some(*last);
            let full = page.len() as u32 == WAITING_PAGE;
            picked.extend(page.into_iter().map(|(_, run)| run).filter(|run| due(run)));
            if !full {
                break;
            }
        }
        Ok(picked)
    }

    /// Ends each run (re-read and locked, and only if it is still `from`: a report, an approval
    /// or another replica may have got there first) as `how` says. Returns the runs ended.
    async fn end_runs(
        &self,
        runs: Vec<Run>,
        from: RunStatus,
        how: impl Fn(&Run) -> Option<(RunStatus, String)>,
    ) -> Result<Vec<(Run, Run)>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let mut tx = self.store().write().await?;
        let listeners = automations(tx.as_mut()).await?;
        let server = Actor::system("portolan", Origin::Backend);
        let mut ended = Vec::new();
        for seen in runs {
            let Some(before) = tx.run(&seen.id, true).await? else { continue };
            if before.status != from && !(from == RunStatus::Queued && before.status == RunStatus::InProgress) {
                continue;
            }
            let Some((status, reason)) = how(&before) else { continue };
            let mut run = before.clone();
            run.end(status, reason.clone(), now).map_err(|m| Error::new(ErrorCode::Internal, m))?;
            self.record_run(tx.as_mut(), &server, &listeners, Some(&before), &run, vec![log(now, reason)]).await?;
            ended.push((before, run));
        }
        tx.commit().await?;
        Ok(ended)
    }
}
