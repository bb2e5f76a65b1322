//! How a run's change is recorded: its state, its log lines, its audit entry, its change event
//! and the automations watching it, in the caller's transaction. Shared by everything that moves
//! a run (requests, approvals, reports, runners, deliveries, timeouts).

use portolan_model::Millis;
use portolan_model::action::{Action, BackendKind, EventKind};
use portolan_model::run::{Run, RunStatus};
use portolan_store::{ChangeEvent, NewJob, NewRunLog, RunFilter, Tx};
use serde_json::json;

use super::actor::{Actor, Origin};
use super::core::Core;
use super::triggers::{EventSubject, MAX_AUTOMATION_DEPTH, automations, queue_automations};
use crate::error::{Error, ErrorCode, Result};

/// Job kinds this module handles.
pub const DISPATCH: &str = "dispatch";

/// The job that hands a run to a backend the server calls itself; with traces kept, the job
/// continues the trace of the request that queued it.
pub(crate) fn dispatch_job(run: &Run) -> NewJob {
    let mut payload = json!({"run": run.id});
    if let Some(traceparent) = crate::telemetry::current_traceparent() {
        payload["traceparent"] = json!(traceparent);
    }
    NewJob {
        kind: DISPATCH.into(),
        dedupe_key: Some(format!("{DISPATCH}:{}", run.id)),
        payload,
        run_after: run.created_at,
    }
}

pub(crate) fn log(at: Millis, message: impl Into<String>) -> NewRunLog {
    NewRunLog { at, stream: "portolan".into(), message: message.into() }
}

/// Wakes whoever takes a run that was just queued: the runners, or this process's worker.
pub(crate) fn wake_for(core: &Core, run: &Run) {
    if run.backend == BackendKind::Runner {
        core.runner_signal().notify_waiters();
    } else {
        core.wake_worker();
    }
}

/// Writes a run's new state with its log lines, announces it, and queues the automations
/// that watch it.
/// `listeners` are the automations (see [`automations`]), loaded once per transaction.
pub(crate) async fn record_run(
    tx: &mut dyn Tx,
    actor: &Actor,
    listeners: &[Action],
    before: Option<&Run>,
    run: &Run,
    logs: Vec<NewRunLog>,
    now: Millis,
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
            actor.entry(run.updated_at, "run.status", "run", &run.id).changed(Some(state(before)), Some(state(run))),
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
    super::notifications::notify_run(tx, before, run, now).await?;
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
        queue_automations(tx, listeners, on, run.depth + 1, now, event).await?;
    }
    Ok(())
}

/// Adds a line of Portolan's own to a run's log, for what happened beside the run (a notice
/// that was not delivered); best effort.
pub(crate) async fn note_on_run(core: &Core, run_id: &str, message: String) {
    let noted = async {
        let mut tx = core.store().write().await?;
        let Some(run) = tx.run(run_id, false).await? else { return Ok(()) };
        tx.append_run_logs(run_id, &[log(core.now(), message)]).await?;
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

/// Waiting runs looked at per expiry pass.
const WAITING_PAGE: u32 = 500;

/// Every run `filter` lists that `due` picks (all pages of them, oldest last).
pub(crate) async fn runs_in(core: &Core, mut filter: RunFilter, due: impl Fn(&Run) -> bool) -> Result<Vec<Run>> {
    let mut tx = core.store().read().await?;
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
pub(crate) async fn end_runs(
    core: &Core,
    runs: Vec<Run>,
    from: RunStatus,
    how: impl Fn(&Run) -> Option<(RunStatus, String)>,
) -> Result<Vec<(Run, Run)>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let now = core.now();
    let mut tx = core.store().write().await?;
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
        record_run(tx.as_mut(), &server, &listeners, Some(&before), &run, vec![log(now, reason)], now).await?;
        ended.push((before, run));
    }
    tx.commit().await?;
    Ok(ended)
}
