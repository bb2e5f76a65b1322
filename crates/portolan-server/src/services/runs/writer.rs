//! The run writer: new runs are written in batches (group commit), each checked again where it is
//! written.

use portolan_model::action::{Action, InvocationMethod};
use portolan_model::permission::ActionOp;
use portolan_model::run::{Run, RunStatus};
use portolan_store::Tx;
use tracing::Instrument;

use super::service::{NewRun, Runs};
use crate::error::{Error, ErrorCode, Result};
use crate::services::actor::Actor;
use crate::services::guardrails::refuse_unless_allowed;
use crate::services::runlog::{dispatch_job, log, record_run, wake_for};
use crate::services::triggers::automations;

/// Most new runs written in one transaction.
pub(super) const NEW_RUN_BATCH: usize = 128;

impl Runs {
    /// Where new runs go to be written: one task writes the runs requested meanwhile in one
    /// transaction (group commit), and answers each request when that transaction commits.
    pub(super) fn new_runs(&self) -> &tokio::sync::mpsc::Sender<NewRun> {
        self.writer.get_or_init(|| {
            let (sender, requests) = tokio::sync::mpsc::channel(NEW_RUN_BATCH * 2);
            tokio::spawn(write_new_runs(self.clone(), requests));
            sender
        })
    }

    /// Stores a new run and what gets it going: a dispatch job, or (for runners) nothing, as
    /// runners come for it.
    pub(super) async fn start_run(
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
        record_run(tx, actor, listeners, None, run, vec![log(run.created_at, message)], self.core.now()).await
    }

    /// Whether a requested run may still be written: `Ok(Err(refusal))` when not.
    pub(super) async fn recheck_new_run(&self, tx: &mut dyn Tx, new: &NewRun) -> Result<Result<()>> {
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
            if self.permissions.readable_entity(tx, &new.actor, entity).await.is_err() {
                return Ok(Err(gone()));
            }
        }
        let (blueprint, entity) = (on.map(|(b, _)| b), on.map(|(_, e)| e));
        if !self.permissions.action_allowed(tx, &new.actor, action_id, blueprint, entity, ActionOp::Execute).await? {
            let on = entity.map(|e| format!(" on '{e}'")).unwrap_or_default();
            return Ok(Err(Error::forbidden(format!("you may not run '{action_id}'{on}"))));
        }
        let limits = self.guardrails.limit_verdicts(tx, &new.action, &run.trigger.by, &run.trigger.teams, on).await?;
        Ok(refuse_unless_allowed(&limits))
    }
}

pub(super) async fn write_new_runs(runs: Runs, mut requests: tokio::sync::mpsc::Receiver<NewRun>) {
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while batch.len() < NEW_RUN_BATCH {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let outcomes = match write_batch(&runs, &batch).await {
            Ok(outcomes) => outcomes,
            // The batch failed as a whole: each request is written on its own, so that one
            // request's failure is its own alone.
            Err(_) if batch.len() > 1 => {
                let mut outcomes = Vec::with_capacity(batch.len());
                for new in &batch {
                    let alone = write_batch(&runs, std::slice::from_ref(new)).await;
                    outcomes.push(alone.and_then(|mut written| written.pop().unwrap_or(Ok(()))));
                }
                outcomes
            }
            Err(error) => vec![Err(error)],
        };
        for (new, outcome) in batch.into_iter().zip(outcomes) {
            if outcome.is_ok() {
                wake_for(&runs.core, &new.run);
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
pub(super) async fn write_batch(runs: &Runs, batch: &[NewRun]) -> Result<Vec<Result<()>>> {
    let mut tx = runs.core.store().write().await?;
    let listeners = automations(tx.as_mut()).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for new in batch {
        match runs.recheck_new_run(tx.as_mut(), new).await? {
            Err(refusal) => outcomes.push(Err(refusal)),
            Ok(()) => {
                // In the requesting request's span: its trace goes on into the run's job.
                let start = runs.start_run(tx.as_mut(), &listeners, &new.action, &new.run, &new.actor);
                start.instrument(new.requested_in.clone()).await?;
                outcomes.push(Ok(()));
            }
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}
