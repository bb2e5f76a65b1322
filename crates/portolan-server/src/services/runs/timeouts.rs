//! Runs that outlive their action's timeout end as `TIMED_OUT`.

use portolan_model::run::{Run, RunStatus};
use portolan_store::RunFilter;

use super::service::Runs;
use crate::error::Result;
use crate::services::runlog::{end_runs, runs_in};

impl Runs {
    /// Ends the runs that outlived their action's timeout (`TIMED_OUT`). A runner learns it at its
    /// next heartbeat, which is refused, and stops the command; a webhook backend is sent a signed
    /// `run.timed_out` notice at its URL. Returns how many.
    pub async fn time_out_runs(&self) -> Result<usize> {
        let now = self.core.now();
        let timed: Vec<(String, u32)> = {
            let mut tx = self.core.store().read().await?;
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
            let due = runs_in(&self.core, filter, |run| overdue(run).is_some()).await?;
            ended.extend(end_runs(&self.core, due, RunStatus::Queued, overdue).await?);
        }
        for (before, run) in &ended {
            if before.backend == portolan_model::action::BackendKind::Webhook && before.status == RunStatus::InProgress
            {
                let runs = self.clone();
                let run = run.clone();
                tokio::spawn(async move { runs.tell_webhook_timed_out(&run).await });
            }
        }
        Ok(ended.len())
    }
}
