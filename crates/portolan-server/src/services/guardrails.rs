//! Guardrails: quotas, concurrency limits, bounds, freezes, locks and preconditions judge a run
//! before it starts (and again where it is written); the rules are in `portolan_model::guardrail`.

use portolan_model::action::Action;
use portolan_model::guardrail::{QuotaScope, Verdict};
use portolan_model::run::{Run, RunStatus, RunTrigger};
use portolan_model::{Entity, Millis, format_millis, guardrail};
use portolan_store::{RunFilter, Tx};
use serde_json::{Map, Value, json};

use super::actor::Actor;
use super::core::Core;
use super::permissions::Permissions;
use super::search::Search;
use crate::error::{Error, ErrorCode, Result};

/// The most runs a team quota counts among an action's newest.
const TEAM_QUOTA_WINDOW: u32 = 500;

/// Judges runs against their action's guardrails.
#[derive(Clone)]
pub struct Guardrails {
    core: Core,
    permissions: Permissions,
    search: Search,
}

impl Guardrails {
    pub fn new(core: Core, permissions: Permissions, search: Search) -> Self {
        Self { core, permissions, search }
    }
}

/// How long a run refused for concurrency is told to wait before trying again.
const CONCURRENCY_RETRY_SECONDS: u64 = 10;

impl Guardrails {
    /// Where the actor stands now with an action's quotas, concurrency limits, freezes and locks:
    /// what its form tells them before they fill it in.
    pub async fn standing(&self, actor: &Actor, action: &Action, on: Option<(&str, &str)>) -> Result<Vec<Verdict>> {
        let mut tx = self.core.store().read().await?;
        let teams = actor.as_user().map(|u| u.teams.clone()).unwrap_or_default();
        let mut verdicts = self.limit_verdicts(tx.as_mut(), action, &actor.id, &teams, on).await?;
        verdicts.extend(self.timing_verdicts(tx.as_mut(), actor, action).await?);
        Ok(verdicts)
    }

    /// Quotas and concurrency: how many runs of the action there are (the ones written in this
    /// transaction included, so the run writer can check again just before it writes).
    pub(crate) async fn limit_verdicts(
        &self,
        tx: &mut dyn Tx,
        action: &Action,
        requester: &str,
        teams: &[String],
        on: Option<(&str, &str)>,
    ) -> Result<Vec<Verdict>> {
        let rails = &action.guardrails;
        let now = self.core.now();
        let mut verdicts = Vec::new();
        let counted = [
            RunStatus::WaitingForApproval,
            RunStatus::Queued,
            RunStatus::InProgress,
            RunStatus::Success,
            RunStatus::Failure,
            RunStatus::TimedOut,
        ];
        for quota in &rails.quotas {
            // Someone in no team is held to a team quota on their own.
            let per_team = quota.per == QuotaScope::Team && !teams.is_empty();
            let filter = RunFilter {
                action: Some(action.identifier.clone()),
                created_by: (quota.per == QuotaScope::User || (quota.per == QuotaScope::Team && !per_team))
                    .then(|| requester.to_string()),
                statuses: counted.to_vec(),
                ..RunFilter::default()
            };
            // A team's runs are found among the action's newest (requesters' teams are in the runs).
            let limit = if per_team { TEAM_QUOTA_WINDOW } else { quota.max + 1 };
            let starts: Vec<Millis> = tx
                .list_runs(&filter, limit)
                .await?
                .into_iter()
                .filter(|(_, r)| !per_team || r.trigger.teams.iter().any(|t| teams.contains(t)))
                .map(|(_, r)| r.created_at)
                .collect();
            verdicts.push(quota.verdict(&starts, now));
        }
        if let Some(limits) = &rails.concurrency {
            let active = vec![RunStatus::WaitingForApproval, RunStatus::Queued, RunStatus::InProgress];
            let scopes = [(limits.per_action, None, "this action"), (limits.per_entity, on, "this entity")];
            for (limit, scope, what) in scopes {
                let Some(limit) = limit else { continue };
                if limit == 0 || (scope.is_none() && what == "this entity") {
                    continue;
                }
                let filter = RunFilter {
                    action: Some(action.identifier.clone()),
                    blueprint: scope.map(|(b, _)| b.to_string()),
                    entity: scope.map(|(_, e)| e.to_string()),
                    statuses: active.clone(),
                    ..RunFilter::default()
                };
                let running = tx.list_runs(&filter, limit).await?.len() as u32;
                let message = format!("{running} runs of {what} are not finished (at most {limit} at once)");
                verdicts.push(if running < limit {
                    Verdict::pass("concurrency", message)
                } else {
                    Verdict {
                        retry_after_seconds: Some(CONCURRENCY_RETRY_SECONDS),
                        ..Verdict::refuse("concurrency", message)
                    }
                });
            }
        }
        Ok(verdicts)
    }

    /// Freezes and locks: whether now is a time the action may run. Checked when a run is
    /// requested and again when it is approved.
    pub(crate) async fn timing_verdicts(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        action: &Action,
    ) -> Result<Vec<Verdict>> {
        let rails = &action.guardrails;
        let now = self.core.now();
        let mut verdicts = Vec::new();
        for freeze in &rails.freezes {
            verdicts.push(match freeze.frozen_until(now) {
                None => Verdict::pass("freeze", format!("'{}' is not in force", freeze.title)),
                Some(Millis::MAX) => Verdict::refuse("freeze", format!("frozen: '{}'", freeze.title)),
                Some(until) => Verdict {
                    retry_after_seconds: Some(((until - now).max(1000) as u64).div_ceil(1000)),
                    ..Verdict::refuse("freeze", format!("frozen until {}: '{}'", format_millis(until), freeze.title))
                },
            });
        }
        for lock in &rails.locks {
            let holder = tx.entity(&lock.blueprint, &lock.identifier).await?;
            let locked = holder.as_ref().filter(|e| e.properties.get("locked") == Some(&Value::Bool(true)));
            verdicts.push(match locked {
                None => Verdict::pass("lock", format!("'{}' is not locked", lock.identifier)),
                // Who locked it and why is told only to those who may read the lock.
                Some(e) if self.permissions.readable_entity(tx, actor, e.clone()).await.is_err() => {
                    Verdict::refuse("lock", format!("'{}' is locked", lock.identifier))
                }
                Some(e) => {
                    let why = e
                        .properties
                        .get("reason")
                        .and_then(Value::as_str)
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                    // Locked by an action's run: name the person who asked for it.
                    let by = match e.updated_by.strip_prefix("run:") {
                        Some(run) => tx.run(run, false).await?.map_or(e.updated_by.clone(), |r| r.trigger.by),
                        None => e.updated_by.clone(),
                    };
                    Verdict::refuse("lock", format!("'{}' is locked by {by}{why}", lock.identifier))
                }
            });
        }
        Ok(verdicts)
    }

    /// Every guardrail's decision on a run about to start.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn guardrail_verdicts(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        action: &Action,
        entity: Option<&Entity>,
        inputs: &Map<String, Value>,
        trigger: &RunTrigger,
        override_reason: Option<&str>,
    ) -> Result<Vec<Verdict>> {
        let rails = &action.guardrails;
        let mut verdicts = Vec::new();
        if let Some(rule) = action.approval() {
            let who = match &rule.approvers {
                Some(a) => {
                    [&a.users, &a.teams, &a.roles].iter().flat_map(|l| l.iter()).cloned().collect::<Vec<_>>().join(", ")
                }
                None => "whoever may approve this action".into(),
            };
            let mode = if rule.mode == portolan_model::guardrail::ApprovalMode::All { "all of" } else { "any of" };
            verdicts.push(Verdict::pass("approval", format!("needs approval from {mode} {who}")));
        }
        let on = entity.map(|e| (e.blueprint.as_str(), e.identifier.as_str()));
        verdicts.extend(self.limit_verdicts(tx, action, &actor.id, &trigger.teams, on).await?);
        for bound in &rails.bounds {
            let Some(value) = inputs.get(&bound.input).and_then(Value::as_f64) else { continue };
            let current = entity.and_then(|e| e.properties.get(bound.property())).and_then(Value::as_f64);
            verdicts.push(bound.verdict(value, current, actor.as_user(), override_reason));
        }
        verdicts.extend(self.timing_verdicts(tx, actor, action).await?);
        if let Some(entity) = entity {
            for precondition in &rails.preconditions {
                let ids = [entity.identifier.clone()];
                let holds =
                    !self.search.admitted(tx, actor, &entity.blueprint, &precondition.query, &ids).await?.is_empty();
                let message = format!(
                    "'{}' {} for '{}'",
                    precondition.title,
                    if holds { "holds" } else { "does not hold" },
                    entity.identifier
                );
                verdicts.push(if holds {
                    Verdict::pass("precondition", message)
                } else {
                    Verdict::refuse("precondition", message)
                });
            }
        }
        Ok(verdicts)
    }
}

impl Guardrails {
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
}

/// Refuses a run a guardrail stops: 429 (with `Retry-After`) for quotas and concurrency, 409
/// `frozen` (with `Retry-After` when the window ends), 423 `locked`, 412 for a failed
/// precondition, each with every verdict as details; 422 at the input for a bound.
pub(crate) fn refuse_unless_allowed(verdicts: &[Verdict]) -> Result<()> {
    let Some(first) = verdicts.iter().find(|v| !v.passed) else { return Ok(()) };
    let all: Vec<Value> = verdicts.iter().map(|v| json!(v)).collect();
    Err(match first.guardrail.as_str() {
        "quota" | "concurrency" => {
            let wait = verdicts.iter().filter(|v| !v.passed).filter_map(|v| v.retry_after_seconds).max();
            Error::too_many(first.message.clone(), wait.unwrap_or(1)).with_details(all)
        }
        "precondition" => Error::new(ErrorCode::PreconditionFailed, first.message.clone()).with_details(all),
        "freeze" => {
            let error = Error::new(ErrorCode::Frozen, first.message.clone()).with_details(all);
            Error { retry_after: first.retry_after_seconds, ..error }
        }
        "lock" => Error::new(ErrorCode::Locked, first.message.clone()).with_details(all),
        bound => {
            Error::invalid_at(&format!("/properties/{}", bound.trim_start_matches("bounds.")), first.message.clone())
        }
    })
}
