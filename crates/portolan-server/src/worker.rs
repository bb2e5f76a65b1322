//! The background worker each replica runs: claims jobs under a lease, runs them, and gives
//! failed ones back with a growing delay. Several replicas share the queue; a job is worked on by
//! one of them at a time, and a replica that dies hands its jobs over when their leases expire.
//! Recomputes run in batches in the worker's loop; deliveries and automations run concurrently
//! (a webhook that hangs holds one slot, not the worker).

use std::sync::Arc;
use std::time::Duration;

use portolan_store::Job;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::error::{Error, ErrorCode, Result};
use crate::services::computed::RECOMPUTE;
use crate::services::integrations::EVENT;
use crate::services::notifications::NOTIFY;
use crate::services::runlog::DISPATCH;
use crate::services::runs::Delivery;
use crate::services::triggers::AUTOMATION;
use crate::state::AppState;
use crate::telemetry::TraceContext;

/// How long a claimed job is ours, by default, before another replica may take it.
pub const DEFAULT_LEASE_MS: i64 = 30_000;
/// How often an idle worker looks for work others queued (own work wakes it at once).
const POLL: Duration = Duration::from_millis(100);
const BATCH: u32 = 32;
/// Most deliveries and automations in flight at once.
const CONCURRENCY: usize = 64;
/// Most deliveries recorded in one transaction.
const RECORD_BATCH: usize = 128;
/// How long a stopping worker waits for jobs in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// A running worker; dropping the handle does not stop it, [`Worker::stop`] does.
pub struct Worker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Worker {
    /// Starts working; jobs it claims are leased for `lease_ms`.
    pub fn start(app: AppState, lease_ms: i64) -> Worker {
        let owner = format!("worker-{}", uuid::Uuid::new_v4().simple());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(app, owner, lease_ms, stopped));
        Worker { stop, task }
    }

    /// Finishes the job in hand and stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(app: AppState, owner: String, lease_ms: i64, mut stopped: watch::Receiver<bool>) {
    let wake = app.core.work_signal();
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let (delivered, deliveries) = mpsc::channel::<(Job, Delivery)>(CONCURRENCY * 2);
    let recorder = tokio::spawn(record(app.clone(), owner.clone(), deliveries));
    loop {
        if *stopped.borrow() {
            break;
        }
        let free = slots.available_permits().min(BATCH as usize) as u32;
        if free == 0 {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stopped.changed() => break,
            }
            continue;
        }
        let jobs = match claim(&app, &owner, lease_ms, free).await {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::warn!(%err, "cannot claim jobs");
                Vec::new()
            }
        };
        if jobs.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = wake.notified() => {}
                _ = stopped.changed() => break,
            }
            continue;
        }
        let (recomputes, others): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.kind == RECOMPUTE);
        let (events, others): (Vec<Job>, Vec<Job>) = others.into_iter().partition(|j| j.kind == EVENT);
        let events: Vec<&Job> = events.iter().collect();
        if !events.is_empty() && app.integrations.process_events(&events, &owner).await.is_err() {
            for job in events {
                if let Err(err) = app.integrations.process_events(&[job], &owner).await {
                    give_back(&app, job, &owner, &err).await;
                }
            }
        }
        let recomputes: Vec<&Job> = recomputes.iter().collect();
        if !recomputes.is_empty() && app.computed.run_recomputes(&recomputes, &owner).await.is_err() {
            // Retry one by one, so that one bad job cannot hold back the others.
            for job in recomputes {
                if let Err(err) = app.computed.run_recomputes(&[job], &owner).await {
                    give_back(&app, job, &owner, &err).await;
                }
            }
        }
        for job in others {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
            let (app, owner, delivered) = (app.clone(), owner.clone(), delivered.clone());
            let trace = TraceContext::from_traceparent(job.payload.get("traceparent").and_then(|t| t.as_str()));
            let span = tracing::info_span!(
                "job",
                kind = %job.kind,
                job = job.id,
                attempt = job.attempts,
                trace_id = %trace.trace_id,
                parent_span_id = trace.parent_span_id.as_deref(),
            );
            let work = async move {
                let done = match job.kind.as_str() {
                    DISPATCH => match app.runs.dispatch(&job).await {
                        Ok(delivery) => {
                            // The recorder outlives every sender; if it is gone, the lease hands the job on.
                            let _ = delivered.send((job.clone(), delivery)).await;
                            Ok(())
                        }
                        Err(err) => Err(err),
                    },
                    AUTOMATION => app.runs.run_automation(&job, &owner).await,
                    NOTIFY => app.notifications.deliver(&job, &owner).await,
                    kind => Err(Error::new(ErrorCode::Internal, format!("no handler for job kind '{kind}'"))),
                };
                if let Err(err) = done {
                    give_back(&app, &job, &owner, &err).await;
                }
                drop(slot);
            };
            tokio::spawn(work.instrument(span));
        }
    }
    // Let the jobs in flight finish (their leases would hand them over anyway), then their records.
    let _ = tokio::time::timeout(DRAIN, slots.acquire_many(CONCURRENCY as u32)).await;
    drop(delivered);
    let _ = tokio::time::timeout(DRAIN, recorder).await;
}

/// Writes deliveries as they come, many to a transaction when many come at once.
async fn record(app: AppState, owner: String, mut deliveries: mpsc::Receiver<(Job, Delivery)>) {
    while let Some(first) = deliveries.recv().await {
        let mut batch = vec![first];
        while batch.len() < RECORD_BATCH {
            match deliveries.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if let Err(err) = app.runs.record_deliveries(&owner, &batch).await {
            for (job, _) in &batch {
                give_back(&app, job, &owner, &err).await;
            }
        }
    }
}

/// Releases a failed job, to be retried after a delay that grows with its attempts.
async fn give_back(app: &AppState, job: &Job, owner: &str, err: &Error) {
    let delay = 100i64.saturating_mul(1 << job.attempts.clamp(0, 10)).min(60_000);
    tracing::warn!(job = job.id, kind = %job.kind, attempts = job.attempts, %err, "job failed; retrying in {delay} ms");
    if let Err(err) = release(app, job, owner, delay).await {
        tracing::warn!(job = job.id, %err, "cannot release job; its lease will expire");
    }
}

async fn claim(app: &AppState, owner: &str, lease_ms: i64, limit: u32) -> Result<Vec<Job>> {
    let mut tx = app.core.store().write().await?;
    let jobs = tx.claim_jobs(owner, app.core.now(), lease_ms, limit).await?;
    tx.commit().await?;
    Ok(jobs)
}

async fn release(app: &AppState, job: &Job, owner: &str, delay_ms: i64) -> Result<()> {
    let mut tx = app.core.store().write().await?;
    tx.release_job(job.id, owner, app.core.now() + delay_ms).await?;
    tx.commit().await?;
    Ok(())
}
