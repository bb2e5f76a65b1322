//! Firing an automation: an `automation` job whose condition holds starts its run.

use portolan_model::action::Trigger;
use portolan_model::run::{Run, RunTrigger};
use portolan_store::Job;
use serde_json::{Map, Value};

use super::service::{Runs, new_run_id};
use crate::error::{Error, ErrorCode, Result};
use crate::services::actor::{Actor, Origin};
use crate::services::runlog::wake_for;
use crate::services::triggers::automations;

impl Runs {
    /// Fires an automation (an `automation` job): checks its condition on the event and starts
    /// its run, in the transaction that completes the job, so an event starts it at most once.
    pub async fn run_automation(&self, job: &Job, owner: &str) -> Result<()> {
        let action_id = job.payload["action"].as_str().unwrap_or_default();
        let event = &job.payload["event"];
        let depth = job.payload["depth"].as_u64().unwrap_or(1) as u32;
        let action = self.core.store().read().await?.action(action_id).await?;
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
        let mut tx = self.core.store().write().await?;
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
                at: self.core.now(),
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
            wake_for(&self.core, &run);
        }
        Ok(())
    }
}
