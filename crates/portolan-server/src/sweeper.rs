//! The timer sweeper: singleton work (one replica at a time, under a lease another replica takes
//! over if the holder dies) that announces each expiry of a `timer` property exactly once, as a
//! `timer.expired` change event, and queues the entity for recompute (scorecard rules and
//! computed values that depend on time), tells each entity's maker once when one of its timers
//! ends within a day, and every few minutes recomputes averages per period and
//! samples scorecard levels for their history.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use portolan_model::action::EventKind;
use portolan_model::notification::{self, EXPIRY_NOTICE_MS};
use portolan_model::query::{CompareOp, Field, Kind, Meta, Query, Rule, Scalar, Shape, Target};
use portolan_model::{Entity, blueprint::parse_date_time};
use portolan_store::ChangeEvent;
use portolan_store::query_sql::{Position, SearchPlan};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::services::computed::recompute_jobs;
use crate::services::core::all_blueprints;
use crate::services::notifications;
use crate::services::triggers::{EventSubject, automations, entity_document, queue_automations};
use crate::services::{Actor, Origin};
use crate::state::AppState;

/// The singleton's name.
pub const TIMER_SWEEPER: &str = "timer-sweeper";
const INTERVAL: Duration = Duration::from_secs(1);
const PAGE: u32 = 500;
/// Marks a notice's record among the expiries (each timer value is told of once).
const NOTICE_MARK: &str = "#notice";
/// How far before the last sweep each sweep looks again.
const OVERLAP_MS: i64 = 5_000;
/// How often aggregations that average per period (which change as time passes) are recomputed.
const AVERAGES_EVERY_MS: i64 = 5 * 60_000;

/// How often integration events past their retention, and long-expired access tokens, are deleted.
const EVENT_PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// How long the work loop may go without starting a round before the lease is let go, so that a
/// replica whose sweeper is stuck hands the work on rather than keeping it by its heartbeat alone.
const STALL_MS: i64 = 5 * 60_000;

pub struct Sweeper {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    checkpoints: JoinHandle<()>,
    lease: JoinHandle<()>,
}

impl Sweeper {
    /// Starts trying to hold the sweeper lease (for `lease_ms`, renewed every second).
    pub fn start(app: AppState, lease_ms: i64) -> Sweeper {
        let owner = format!("sweeper-{}", uuid::Uuid::new_v4().simple());
        let (stop, mut stopped) = watch::channel(false);
        let checkpoints = tokio::spawn(write_checkpoints(app.clone(), stopped.clone()));
        let round_started = Arc::new(AtomicI64::new(app.core.now()));
        let lease =
            tokio::spawn(keep_lease(app.clone(), owner.clone(), lease_ms, round_started.clone(), stopped.clone()));
        let task = tokio::spawn(async move {
            let mut last_prune = None;
            loop {
                round_started.store(app.core.now(), Ordering::Relaxed);
                if let Err(err) = sweep(&app, &owner, lease_ms).await {
                    tracing::warn!(%err, "timer sweep failed");
                }
                if let Err(err) = app.runs.recover_lost_runs().await {
                    tracing::warn!(%err, "cannot recover runs of lost runners");
                }
                if let Err(err) = app.approvals.expire_approvals().await {
                    tracing::warn!(%err, "cannot end runs whose approval expired");
                }
                if let Err(err) = app.runs.time_out_runs().await {
                    tracing::warn!(%err, "cannot end runs that outlived their timeout");
                }
                if let Err(err) = app.locations.sync_due().await {
                    tracing::warn!(%err, "cannot start the syncs of due locations");
                }
                if let Err(err) = app.integrations.sync_due().await {
                    tracing::warn!(%err, "cannot start the pulls of due integrations");
                }
                if last_prune.is_none_or(|at: std::time::Instant| at.elapsed() >= EVENT_PRUNE_INTERVAL) {
                    last_prune = Some(std::time::Instant::now());
                    if let Err(err) = app.integrations.prune_events().await {
                        tracing::warn!(%err, "cannot delete integration events past their retention");
                    }
                    if let Err(err) = app.identity.delete_expired_access_tokens().await {
                        tracing::warn!(%err, "cannot delete expired access tokens");
                    }
                    if let Err(err) = app.notifications.prune().await {
                        tracing::warn!(%err, "cannot delete notifications past their retention");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(INTERVAL) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        Sweeper { stop, task, checkpoints, lease }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let _ = self.checkpoints.await;
        let _ = self.lease.await;
    }
}

/// Renews the lease a third of its length at a time, apart from the work loop: a round that takes
/// longer than the lease (sampling a large catalog's history) must not hand the work to another
/// replica halfway through.
async fn keep_lease(
    app: AppState,
    owner: String,
    lease_ms: i64,
    round_started: Arc<AtomicI64>,
    mut stopped: watch::Receiver<bool>,
) {
    let every = Duration::from_millis((lease_ms / 3).clamp(100, 1_000) as u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.changed() => return,
        }
        let now = app.core.now();
        if now - round_started.load(Ordering::Relaxed) > STALL_MS {
            continue;
        }
        // Renews the lease if this replica holds it, takes it if it lapsed, and leaves another's.
        let renewed = async {
            let mut tx = app.core.store().write().await?;
            tx.acquire_singleton(TIMER_SWEEPER, &owner, now, lease_ms).await?;
            tx.commit().await
        };
        if let Err(err) = renewed.await {
            tracing::warn!(%err, "cannot renew the sweeper's lease");
        }
    }
}

/// Writes a signed audit checkpoint to the checkpoint directory when the server starts, every
/// `checkpoint_every` while the log grows, and when it stops (each replica to its own directory).
async fn write_checkpoints(app: AppState, mut stopped: watch::Receiver<bool>) {
    let signer = app.audit.signer();
    if signer.checkpoint_dir.is_none() {
        return;
    }
    let every = signer.checkpoint_every;
    let mut failing = false;
    loop {
        let stopping = *stopped.borrow();
        match app.audit.audit_grew().await {
            Ok(true) => match app.audit.audit_checkpoint().await {
                Ok((checkpoint, path)) => {
                    failing = false;
                    if let Some(path) = path {
                        tracing::debug!(seq = checkpoint.seq, path = %path.display(), "audit checkpoint written");
                    }
                }
                // Said once, not every interval, until it works again.
                Err(err) if !failing => {
                    failing = true;
                    tracing::error!(%err, "no audit checkpoint was written");
                }
                Err(_) => {}
            },
            Ok(false) => {}
            Err(err) => tracing::warn!(%err, "cannot read the audit log's head for a checkpoint"),
        }
        if stopping {
            return;
        }
        let interval = async {
            match every {
                Some(every) => tokio::time::sleep(every).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interval => {}
            changed = stopped.changed() => if changed.is_err() { return },
        }
    }
}

/// Entities written at or after a time.
fn written_since(since: i64) -> Rule {
    Rule::Compare {
        target: Target { field: Field::Meta(Meta::UpdatedAt), shape: Shape::One(Kind::Timestamp) },
        op: CompareOp::Ge,
        value: Scalar::Num(since as f64),
        negate: false,
    }
}

/// Timers that expired since the last sweep, and timers already expired on entities written since
/// then (a timer set in the past). The window reaches back a little further than the last sweep,
/// for writes that committed after it looked; already-announced expiries are dropped by their
/// record.
fn due(target: &Target, swept_until: i64, now: i64) -> Query {
    let since = swept_until.saturating_sub(OVERLAP_MS);
    let written_since = written_since(since);
    Query::Or(vec![
        Query::Rule(Rule::Between { target: target.clone(), from: since, to: now, negate: false }),
        Query::And(vec![
            Query::Rule(written_since),
            Query::Rule(Rule::Timer { target: target.clone(), expired: true, now }),
        ]),
    ])
}

/// Timers that come within [`EXPIRY_NOTICE_MS`] of their end since the last sweep, and timers
/// set since then that already are: the window of [`due`], a notice's length ahead.
fn ending_soon(target: &Target, swept_until: i64, now: i64) -> Query {
    let since = swept_until.saturating_sub(OVERLAP_MS);
    let written_since = written_since(since);
    let ahead = |from: i64, to: i64| Rule::Between { target: target.clone(), from, to, negate: false };
    Query::Or(vec![
        Query::Rule(ahead(since + EXPIRY_NOTICE_MS, now + EXPIRY_NOTICE_MS)),
        Query::And(vec![Query::Rule(written_since), Query::Rule(ahead(now, now + EXPIRY_NOTICE_MS))]),
    ])
}

/// The entities of a blueprint a query over one of its timers finds, with the timer's time.
async fn timers(
    tx: &mut dyn portolan_store::Tx,
    blueprint: &str,
    property: &str,
    query: Query,
) -> Result<Vec<(Entity, String, i64)>> {
    let mut found = Vec::new();
    let mut after: Option<Position> = None;
    loop {
        let plan = SearchPlan {
            blueprint: Some(blueprint.to_string()),
            query: query.clone(),
            sort: None,
            after: after.take(),
            limit: PAGE,
            required_relations: vec![],
        };
        let page: Vec<Entity> = tx.search(&plan).await?;
        for entity in &page {
            if let Some(at) = entity.properties.get(property).and_then(Value::as_str).and_then(parse_date_time) {
                found.push((entity.clone(), property.to_string(), at));
            }
        }
        if page.len() < PAGE as usize {
            return Ok(found);
        }
        after = page.last().map(|e| Position::after(e, None));
    }
}

/// Tells the makers of entities whose timers end within a day (if they may still read them) and
/// their teams, once for each time a timer is set to, with the action that extends it when one does.
async fn tell_makers(
    app: &AppState,
    tx: &mut dyn portolan_store::Tx,
    ending: Vec<(Entity, String, i64)>,
    now: i64,
) -> Result<()> {
    let keys: Vec<_> = ending
        .iter()
        .map(|(e, p, at)| (e.blueprint.clone(), e.identifier.clone(), format!("{p}{NOTICE_MARK}"), *at))
        .collect();
    let fresh = tx.record_expiries(&keys).await?;
    let actions: Vec<_> = tx.actions().await?.into_iter().map(|r| r.action).collect();
    for ((entity, property, at), _) in ending.into_iter().zip(fresh).filter(|(_, is_new)| *is_new) {
        let extend = actions.iter().find(|a| a.updates_property(&entity.blueprint, &property));
        let notice = notification::ttl_expiring(&entity, &property, at, now, extend.map(|a| a.identifier.as_str()));
        notifications::tell_teams(tx, &entity.team, &notice, now).await?;
        let Some(maker) = notifications::person(tx, &entity.created_by).await? else { continue };
        let reader = Actor::user(maker, Origin::Automation);
        if !app.permissions.readable_refs(tx, &reader, &[entity.entity_ref()]).await.is_empty() {
            notifications::tell(tx, notice, now).await?;
        }
    }
    Ok(())
}

/// One sweep, if this replica holds (or can take) the lease. Returns how many expiries it announced.
pub async fn sweep(app: &AppState, owner: &str, lease_ms: i64) -> Result<usize> {
    let mut tx = app.core.store().write().await?;
    let now = app.core.now();
    let Some(state) = tx.acquire_singleton(TIMER_SWEEPER, owner, now, lease_ms).await? else {
        return Ok(0);
    };
    let from = state.get("sweptUntil").and_then(Value::as_i64).unwrap_or(0);
    let blueprints = all_blueprints(tx.as_mut()).await?;
    let mut expired: Vec<(Entity, String, i64)> = Vec::new();
    let mut ending: Vec<(Entity, String, i64)> = Vec::new();
    for blueprint in &blueprints {
        for name in blueprint.timer_properties() {
            let target = Target { field: Field::Property(name.to_string()), shape: Shape::One(Kind::DateTime) };
            expired.extend(timers(tx.as_mut(), &blueprint.identifier, name, due(&target, from, now)).await?);
            ending.extend(timers(tx.as_mut(), &blueprint.identifier, name, ending_soon(&target, from, now)).await?);
        }
    }
    tell_makers(app, tx.as_mut(), ending, now).await?;
    let records: Vec<_> =
        expired.iter().map(|(e, p, at)| (e.blueprint.clone(), e.identifier.clone(), p.clone(), *at)).collect();
    let fresh = tx.record_expiries(&records).await?;
    let automations = automations(tx.as_mut()).await?;
    let mut announced = Vec::new();
    for ((entity, property, at), is_new) in expired.into_iter().zip(fresh) {
        if is_new {
            tx.publish(&ChangeEvent {
                kind: "timer.expired".into(),
                blueprint: entity.blueprint.clone(),
                identifier: entity.identifier.clone(),
                version: Some(entity.version),
                property: Some(property.clone()),
            })
            .await?;
            let event = || {
                json!({
                    "type": EventKind::TimerPropertyExpired,
                    "blueprint": entity.blueprint,
                    "property": property,
                    "expiredAt": portolan_model::format_millis(at),
                    "trigger": {"by": "portolan", "origin": "timer", "at": portolan_model::format_millis(now)},
                    "diff": {"before": entity_document(&entity), "after": entity_document(&entity)}
                })
            };
            let on = EventSubject {
                kind: EventKind::TimerPropertyExpired,
                blueprint: Some(&entity.blueprint),
                property: Some(&property),
                action: None,
            };
            queue_automations(tx.as_mut(), &automations, on, 1, now, event).await?;
            announced.push(entity.entity_ref());
        }
    }
    let count = announced.len();
    tx.enqueue_jobs(&recompute_jobs(announced, now)).await?;
    // Averages per period change with time alone: recomputed every few minutes.
    let mut averaged_at = state.get("averagedAt").and_then(Value::as_i64).unwrap_or(0);
    if now - averaged_at >= AVERAGES_EVERY_MS {
        averaged_at = now;
        for blueprint in blueprints
            .iter()
            .filter(|b| b.aggregation_properties.values().any(|a| a.calculation_spec.period().is_some()))
        {
            let mut after: Option<Position> = None;
            loop {
                let plan = SearchPlan {
                    blueprint: Some(blueprint.identifier.clone()),
                    query: Query::And(vec![]),
                    sort: None,
                    after: after.take(),
                    limit: PAGE,
                    required_relations: vec![],
                };
                let page: Vec<Entity> = tx.search(&plan).await?;
                tx.enqueue_jobs(&recompute_jobs(page.iter().map(Entity::entity_ref), now)).await?;
                if page.len() < PAGE as usize {
                    break;
                }
                after = page.last().map(|e| Position::after(e, None));
            }
        }
    }
    // Scorecard levels are sampled as often, for their history.
    let mut sampled_at = state.get("sampledAt").and_then(Value::as_i64).unwrap_or(0);
    let sample = now - sampled_at >= AVERAGES_EVERY_MS;
    if sample {
        sampled_at = now;
    }
    let progress = json!({"sweptUntil": now, "averagedAt": averaged_at, "sampledAt": sampled_at});
    tx.save_singleton(TIMER_SWEEPER, owner, &progress).await?;
    tx.commit().await?;
    if sample {
        app.scorecards.sample_levels().await?;
        app.initiatives.sample_progress().await?;
        app.initiatives.remind_due().await?;
        app.dashboards.sample_series().await?;
    }
    if count > 0 {
        app.core.wake_worker();
    }
    Ok(count)
}
