//! Delivery outcomes: what a dispatch means for its run, recorded in batches by the worker.

use portolan_model::run::RunStatus;
use portolan_model::template;
use portolan_store::{Job, NewJob};
use serde_json::Value;

use super::service::Runs;
use crate::error::{Error, ErrorCode, Result};
use crate::services::actor::{Actor, Origin};
use crate::services::runlog::{log, record_run};
use crate::services::triggers::automations;

/// One delivery of a run to its backend, and what it means for the run.
#[derive(Debug)]
pub struct Delivery {
    pub(super) run_id: String,
    pub(super) outcome: Outcome,
    pub(super) payload_view: Option<Value>,
}

/// What a delivery attempt means for the run.
#[derive(Debug)]
pub(super) enum Outcome {
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
    /// Handed to a CI system that is watched: what to log, a link to its run, and the next look.
    Watch {
        message: Option<String>,
        link: Option<String>,
        next: Option<NewJob>,
    },
}

impl Outcome {
    pub(super) fn masked(self, hidden: &[String]) -> Outcome {
        let mask = |text: String| template::mask_text(&text, hidden);
        match self {
            Outcome::Keep => Outcome::Keep,
            Outcome::Progress(message) => Outcome::Progress(mask(message)),
            Outcome::End(status, message) => Outcome::End(status, mask(message)),
            Outcome::Wrote { message, link } => Outcome::Wrote { message: mask(message), link: mask(link) },
            Outcome::Retry { message, delay_ms } => Outcome::Retry { message: mask(message), delay_ms },
            Outcome::Watch { message, link, next } => Outcome::Watch { message: message.map(mask), link, next },
        }
    }
}

impl Runs {
    /// Records deliveries' outcomes on their runs and completes (or, to retry, releases) their
    /// jobs, all in one transaction (one commit for many deliveries). A crash before it commits
    /// repeats the deliveries with the same `webhook-id`s. A job whose lease was lost meanwhile is
    /// left to the worker that holds it now.
    pub async fn record_deliveries(&self, owner: &str, deliveries: &[(Job, Delivery)]) -> Result<()> {
        let mut tx = self.core.store().write().await?;
        let listeners = automations(tx.as_mut()).await?;
        let now = self.core.now();
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
                Outcome::Watch { message, link, next } => {
                    if open {
                        if run.status != RunStatus::InProgress {
                            let _ = run.transition(RunStatus::InProgress, now);
                        }
                        if let Some(link) = link.as_ref().filter(|l| !run.links.contains(l)) {
                            run.links.push(link.clone());
                        }
                        if let Some(next) = next {
                            tx.enqueue_jobs(std::slice::from_ref(next)).await?;
                        }
                    }
                    logs.extend(message.iter().map(|m| log(now, m.clone())));
                }
            }
            if run != before || !logs.is_empty() {
                run.updated_at = now;
                let server = Actor::system("portolan", Origin::Backend);
                record_run(tx.as_mut(), &server, &listeners, Some(&before), &run, logs, now).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
