//! Webhook integrations: a request to an ingest URL is checked, kept as an event and queued in
//! one transaction, and answered at once; the worker maps it and writes what it maps to, and the
//! event keeps what each item became.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio::sync::{mpsc, oneshot};

use portolan_model::Millis;
use portolan_model::integration::event::{SECRET_HEADERS, settled_state};
use portolan_model::integration::mapping::{Mapped, Operation, Outcome};
use portolan_model::integration::{EventItem, EventState, Integration, IntegrationEvent};
use portolan_store::{Job, NewJob};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::{Integrations, integration_actor};
use crate::error::{Error, ErrorCode, Result};
use crate::services::actor::Actor;
use crate::services::catalog::{BulkOptions, MAX_BULK, Outcome as Written};

/// A webhook's items replace or merge into what they name.
const UPSERT_MERGE: BulkOptions =
    BulkOptions { upsert: true, merge: true, create_missing_related: false, validation_only: false, datasource: None };

/// The job kind that maps one event.
pub const EVENT: &str = "integration.event";
/// Most events kept in one transaction.
const EVENT_BATCH: usize = 256;
/// Most events one page of an event log holds.
pub const MAX_EVENT_PAGE: u32 = 200;

/// A request to an ingest URL, as it arrived.
pub struct IngestRequest {
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What an ingest URL answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ingested {
    /// The event the request became (absent for a replay, which is not kept again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The request's identifier was seen before: acknowledged, not processed again.
    pub duplicate: bool,
}

impl Integrations {
    /// Checks a request to an ingest URL and keeps it for the worker.
    pub async fn ingest(&self, key: &str, request: IngestRequest) -> Result<Ingested> {
        let unknown = || Error::not_found("an integration with this ingest URL");
        let mut tx = self.core.store().read().await?;
        let integration = tx.integration_by_key(&crate::keys::token_sha256(key)).await?.ok_or_else(unknown)?;
        let header = |name: &str| -> Option<String> {
            let values: Vec<&str> =
                request.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect();
            (!values.is_empty()).then(|| values.join(", "))
        };
        let mut hidden: BTreeSet<String> = SECRET_HEADERS.iter().map(|h| h.to_string()).collect();
        if let Some(security) = &integration.security {
            hidden.insert(security.header());
            if let Some(name) = &security.secret {
                let secret = self
                    .actions
                    .secret_values(tx.as_mut(), std::slice::from_ref(name))
                    .await?
                    .remove(name)
                    .unwrap_or_default();
                security
                    .verify(&secret, &header, &request.body, self.core.now() / 1000)
                    .map_err(Error::unauthorized)?;
            }
        }
        drop(tx);
        // Read only once the sender is known: a forged request costs no parsing.
        let body: Value = serde_json::from_slice(&request.body)
            .map_err(|e| Error::new(ErrorCode::MalformedJson, format!("the body is not JSON: {e}")))?;
        let mut headers = Map::new();
        for (name, _) in &request.headers {
            if !hidden.contains(name) && !headers.contains_key(name) {
                headers.insert(name.clone(), Value::from(header(name)));
            }
        }
        let query: Map<String, Value> = request.query.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        let request = json!({"body": body, "headers": headers, "queryParams": query});
        let now = self.core.now();
        let event = IntegrationEvent {
            id: event_id(now),
            integration: integration.identifier.clone(),
            received_at: now,
            request_id: integration.security.as_ref().and_then(|s| s.request_id(&request)),
            request,
            state: EventState::Pending,
            processed_at: None,
            items: Vec::new(),
        };
        let id = event.id.clone();
        let (done, kept) = oneshot::channel();
        self.event_writer()
            .send(NewEvent { event, done })
            .await
            .map_err(|_| Error::new(ErrorCode::Unavailable, "the server is stopping"))?;
        let kept = kept.await.map_err(|_| Error::new(ErrorCode::Unavailable, "the server is stopping"))??;
        Ok(Ingested { event: kept.then_some(id), duplicate: !kept })
    }

    /// Where accepted events go to be kept: one task writes the events that arrived meanwhile in
    /// one transaction (group commit), each with its job, and answers each sender when it commits.
    fn event_writer(&self) -> &mpsc::Sender<NewEvent> {
        self.event_writer.get_or_init(|| {
            let (sender, events) = mpsc::channel(EVENT_BATCH * 2);
            tokio::spawn(keep_events(self.clone(), events));
            sender
        })
    }

    /// Keeps a batch of events and queues a job for each that is not a replay: per event, kept.
    async fn keep_batch(&self, batch: &[NewEvent]) -> Result<Vec<bool>> {
        let mut tx = self.core.store().write().await?;
        let mut kept = Vec::with_capacity(batch.len());
        let mut jobs = Vec::new();
        for new in batch {
            let event = &new.event;
            let fresh = tx.insert_event(event).await?;
            if fresh {
                let payload = json!({"integration": event.integration, "event": event.id});
                jobs.push(NewJob { kind: EVENT.into(), dedupe_key: None, payload, run_after: event.received_at });
            }
            kept.push(fresh);
        }
        tx.enqueue_jobs(&jobs).await?;
        tx.commit().await?;
        if !jobs.is_empty() {
            self.core.wake_worker();
        }
        Ok(kept)
    }

    /// Maps accepted events and writes what they map to (the worker's jobs, many at a time):
    /// each integration's items in order, many to a transaction, then every event's outcome and
    /// the jobs' completion in one transaction.
    pub async fn process_events(&self, jobs: &[&Job], owner: &str) -> Result<()> {
        let mut work: Vec<(Integration, IntegrationEvent)> = Vec::new();
        {
            let mut tx = self.core.store().read().await?;
            for job in jobs {
                let id = job.payload["integration"].as_str().unwrap_or_default();
                let event = job.payload["event"].as_str().unwrap_or_default();
                // Gone with its integration, or done before a crash lost its job's completion.
                if let (Some(integration), Some(event)) = (tx.integration(id).await?, tx.event(id, event).await?)
                    && event.state == EventState::Pending
                {
                    work.push((integration, event));
                }
            }
        }
        let mut items: Vec<Vec<EventItem>> = vec![Vec::new(); work.len()];
        let mut identifiers: Vec<&str> = work.iter().map(|(i, _)| i.identifier.as_str()).collect();
        identifiers.sort_unstable();
        identifiers.dedup();
        for identifier in identifiers {
            let mine: Vec<usize> = (0..work.len()).filter(|&e| work[e].0.identifier == identifier).collect();
            let Some(&first) = mine.first() else { continue };
            let integration = &work[first].0;
            let requests = mine.iter().map(|&e| work[e].1.request.clone()).collect();
            let mapped = self.map_each(&integration.mapping, None, requests).await;
            let tagged = mine.iter().zip(mapped).flat_map(|(&e, m)| m.into_iter().map(move |m| (e, m)));
            for (e, item) in self.write_mapped(integration, tagged.collect()).await? {
                items[e].push(item);
            }
        }
        let now = self.core.now();
        let mut tx = self.core.store().write().await?;
        for ((_, mut event), items) in work.into_iter().zip(items) {
            event.state = settled_state(&items);
            event.items = items;
            event.processed_at = Some(now);
            tx.update_event(&event).await?;
        }
        for job in jobs {
            tx.complete_job(job.id, owner).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// An integration's events, newest first: a page before `before` (an event id).
    pub async fn events(
        &self,
        actor: &Actor,
        id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IntegrationEvent>> {
        let mut tx = self.core.store().read().await?;
        self.managed(tx.as_mut(), actor, id).await?;
        let cursor = match before {
            None => None,
            Some(event) => {
                let found = tx.event(id, event).await?;
                let found = found.ok_or_else(|| Error::invalid_at("/before", format!("no event '{event}'")))?;
                Some((found.received_at, found.id))
            }
        };
        Ok(tx.events(id, cursor, limit.clamp(1, MAX_EVENT_PAGE)).await?)
    }

    pub async fn event(&self, actor: &Actor, id: &str, event: &str) -> Result<IntegrationEvent> {
        let mut tx = self.core.store().read().await?;
        self.managed(tx.as_mut(), actor, id).await?;
        tx.event(id, event).await?.ok_or_else(|| Error::not_found(format!("event '{event}'")))
    }

    /// Deletes events older than their integration keeps them.
    pub async fn prune_events(&self) -> Result<u64> {
        let mut tx = self.core.store().write().await?;
        let mut pruned = 0;
        for integration in tx.integrations().await? {
            let before = self.core.now() - i64::from(integration.event_retention_days) * 86_400_000;
            pruned += tx.delete_events_before(&integration.identifier, before).await?;
        }
        tx.commit().await?;
        Ok(pruned)
    }

    /// Writes mapped items (each tagged with its event) in the order mapped: creates and updates
    /// merged into what exists, many to a transaction per blueprint, deletes one by one. An entity
    /// named again by a later item is written in a later round, so the last item wins. Each
    /// item's outcome, with its tag.
    async fn write_mapped(
        &self,
        integration: &Integration,
        mapped: Vec<(usize, Mapped)>,
    ) -> Result<Vec<(usize, EventItem)>> {
        let actor = integration_actor(integration);
        let mut items = Vec::with_capacity(mapped.len());
        let mut rounds: Vec<Round> = Vec::new();
        let mut last_round: HashMap<(String, String), usize> = HashMap::new();
        for (tag, m) in mapped {
            let mut item = EventItem {
                resource: m.resource,
                item: m.item,
                operation: m.operation,
                blueprint: None,
                identifier: None,
                result: "failed".into(),
                path: None,
                error: None,
            };
            match m.outcome {
                Outcome::Error { path, message } => {
                    item.path = Some(path);
                    item.error = Some(message);
                }
                Outcome::Entity(mut document) => {
                    let blueprint = document["blueprint"].as_str().unwrap_or_default().to_string();
                    let identifier = document["identifier"].as_str().unwrap_or_default().to_string();
                    item.blueprint = Some(blueprint.clone());
                    item.identifier = Some(identifier.clone());
                    if let Some(fields) = document.as_object_mut() {
                        fields.remove("blueprint");
                    }
                    let key = (blueprint.clone(), identifier);
                    let round = last_round.get(&key).map_or(0, |r| r + 1);
                    last_round.insert(key, round);
                    if rounds.len() <= round {
                        rounds.push(Round::default());
                    }
                    match m.operation {
                        Operation::Create => {
                            rounds[round].creates.entry(blueprint).or_default().push((items.len(), document))
                        }
                        Operation::Delete => rounds[round].deletes.push(items.len()),
                    }
                }
            }
            items.push((tag, item));
        }
        for round in rounds {
            let options = BulkOptions {
                create_missing_related: integration.mapping.create_missing_related_entities,
                ..UPSERT_MERGE
            };
            for (blueprint, group) in round.creates {
                for chunk in group.chunks(MAX_BULK) {
                    let documents = chunk.iter().map(|(_, d)| d.clone()).collect();
                    match self.catalog.bulk_write(&actor, &blueprint, documents, &options).await {
                        Ok(results) => {
                            for written in results {
                                let item = &mut items[chunk[written.index].0].1;
                                match written.result {
                                    Ok(Written::Created) => item.result = "created".into(),
                                    Ok(Written::Updated) => item.result = "updated".into(),
                                    Ok(Written::Unchanged) => item.result = "unchanged".into(),
                                    Err(err) => item.error = Some(described(&err)),
                                }
                            }
                        }
                        Err(err) => chunk.iter().for_each(|(i, _)| items[*i].1.error = Some(err.message.clone())),
                    }
                }
            }
            for index in round.deletes {
                let item = &mut items[index].1;
                let (blueprint, identifier) =
                    (item.blueprint.clone().unwrap_or_default(), item.identifier.clone().unwrap_or_default());
                let dependents = integration.mapping.delete_dependent_entities;
                match self.catalog.delete_entity(&actor, &blueprint, &identifier, dependents, None).await {
                    Ok(_) => item.result = "deleted".into(),
                    Err(err) if err.code == ErrorCode::NotFound && err.message.starts_with("entity") => {
                        item.result = "absent".into();
                    }
                    Err(err) => item.error = Some(described(&err)),
                }
            }
        }
        Ok(items)
    }
}

/// The writes of one round: no entity twice.
#[derive(Default)]
struct Round {
    /// Per blueprint: the item's index and its document.
    creates: BTreeMap<String, Vec<(usize, Value)>>,
    deletes: Vec<usize>,
}

/// An event on its way to be kept, and who waits for the answer.
pub struct NewEvent {
    event: IntegrationEvent,
    done: oneshot::Sender<Result<bool>>,
}

/// The event writer's loop: batches of what arrived meanwhile; when a batch fails as a whole,
/// each event is written on its own, so that one event's failure is its own alone.
async fn keep_events(integrations: Integrations, mut events: mpsc::Receiver<NewEvent>) {
    while let Some(first) = events.recv().await {
        let mut batch = vec![first];
        while batch.len() < EVENT_BATCH {
            match events.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let outcomes = match integrations.keep_batch(&batch).await {
            Ok(kept) => kept.into_iter().map(Ok).collect(),
            Err(_) if batch.len() > 1 => {
                let mut outcomes = Vec::with_capacity(batch.len());
                for new in &batch {
                    let alone = integrations.keep_batch(std::slice::from_ref(new)).await;
                    outcomes.push(alone.map(|kept| kept.first().copied().unwrap_or(false)));
                }
                outcomes
            }
            Err(error) => vec![Err(error)],
        };
        for (new, outcome) in batch.into_iter().zip(outcomes) {
            let _ = new.done.send(outcome);
        }
    }
}

/// An error with its first detail's pointer, as the event log shows it.
fn described(err: &Error) -> String {
    match err.details.first().and_then(|d| d["path"].as_str()) {
        Some(path) if !path.is_empty() => format!("{} ({path})", err.message),
        _ => err.message.clone(),
    }
}

/// Event ids sort by arrival: the time, then randomness.
fn event_id(now: Millis) -> String {
    format!("evt_{now:013x}{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}
