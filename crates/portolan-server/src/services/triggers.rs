//! Automation triggers: which automations an event (an entity or a run changing) starts, queued
//! as `automation` jobs in the transaction of the change, so no change is without its follow-up.

use portolan_model::Entity;
use portolan_model::Millis;
use portolan_model::action::{Action, EventKind, Trigger};
use portolan_store::{NewJob, Tx};
use serde_json::{Value, json};

use super::actor::Actor;
use crate::error::Result;

pub const AUTOMATION: &str = "automation";

/// Automations triggered by run events that trigger more runs: at most this many hops.
pub(crate) const MAX_AUTOMATION_DEPTH: u32 = 3;

/// An entity as templates and events see it.
pub(crate) fn entity_document(entity: &Entity) -> Value {
    serde_json::to_value(entity).unwrap_or(Value::Null)
}

/// The automations (actions triggered by events), loaded once per transaction that may fire them.
pub(crate) async fn automations(tx: &mut dyn Tx) -> Result<Vec<Action>> {
    let all = tx.actions().await?;
    Ok(all.into_iter().map(|r| r.action).filter(|a| matches!(a.trigger, Trigger::Automation { .. })).collect())
}

/// What an event is about, for matching automations' event filters.
pub(crate) struct EventSubject<'a> {
    pub kind: EventKind,
    pub blueprint: Option<&'a str>,
    pub property: Option<&'a str>,
    pub action: Option<&'a str>,
}

/// Queues an `automation` job for every automation listening for this event.
pub(crate) async fn queue_automations(
    tx: &mut dyn Tx,
    automations: &[Action],
    subject: EventSubject<'_>,
    depth: u32,
    now: Millis,
    event: impl FnOnce() -> Value,
) -> Result<()> {
    let listening: Vec<&str> = automations
        .iter()
        .filter(|a| match &a.trigger {
            Trigger::Automation { event, .. } => {
                let matches =
                    |wanted: &Option<String>, given: Option<&str>| wanted.is_none() || wanted.as_deref() == given;
                event.kind.covers(subject.kind)
                    && matches(&event.blueprint_identifier, subject.blueprint)
                    && matches(&event.property_identifier, subject.property)
                    && matches(&event.action_identifier, subject.action)
            }
            Trigger::SelfService { .. } => false,
        })
        .map(|a| a.identifier.as_str())
        .collect();
    if listening.is_empty() {
        return Ok(());
    }
    let event = event();
    let jobs: Vec<NewJob> = listening
        .into_iter()
        .map(|action| NewJob {
            kind: AUTOMATION.into(),
            dedupe_key: None,
            payload: json!({"action": action, "event": event, "depth": depth}),
            run_after: now,
        })
        .collect();
    tx.enqueue_jobs(&jobs).await?;
    Ok(())
}

/// The automations entity changes (before, after) trigger.
pub(crate) async fn queue_entity_automations(
    tx: &mut dyn Tx,
    actor: &Actor,
    now: Millis,
    changes: &[(Option<&Entity>, Option<&Entity>)],
) -> Result<()> {
    let automations = automations(tx).await?;
    if automations.is_empty() {
        return Ok(());
    }
    // A change a run makes is one hop further from a person than that run: loops end.
    let depth = match &actor.run {
        Some(run) => tx.run(run, false).await?.map(|r| r.depth + 1).unwrap_or(1),
        None => 1,
    };
    if depth > MAX_AUTOMATION_DEPTH {
        return Ok(());
    }
    for (before, after) in changes.iter().copied() {
        let (kind, subject) = match (before, after) {
            (None, Some(after)) => (EventKind::EntityCreated, after),
            (Some(_), Some(after)) => (EventKind::EntityUpdated, after),
            (Some(before), None) => (EventKind::EntityDeleted, before),
            (None, None) => continue,
        };
        let event = || {
            json!({
                "type": kind,
                "blueprint": subject.blueprint,
                "trigger": {"by": actor.id, "origin": actor.origin.as_str(), "at": portolan_model::format_millis(now)},
                "diff": {"before": before.map(entity_document), "after": after.map(entity_document)}
            })
        };
        let on = EventSubject { kind, blueprint: Some(&subject.blueprint), property: None, action: None };
        queue_automations(tx, &automations, on, depth, now, event).await?;
    }
    Ok(())
}
