//! Webhook integrations: a request to an ingest URL is checked, kept as an event and queued in
//! one transaction, and answered at once; the worker maps it and writes what it maps to, and the
//! event keeps what each item became.

use std::collections::{BTreeMap, BTreeSet};

use portolan_model::Millis;
use portolan_model::integration::event::{SECRET_HEADERS, settled_state};
use portolan_model::integration::mapping::{Mapped, Operation, Outcome};
use portolan_model::integration::{EventItem, EventState, Integration, IntegrationEvent};
use portolan_store::{Job, NewJob};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::{Integrations, blueprints_by_id, integration_actor};
use crate::error::{Error, ErrorCode, Result};
use crate::services::actor::Actor;
use crate::services::catalog::{MAX_BULK, Outcome as Written};

/// The job kind that maps one event.
pub const EVENT: &str = "integration.event";
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
        let body: Value = serde_json::from_slice(&request.body)
            .map_err(|e| Error::new(ErrorCode::MalformedJson, format!("the body is not JSON: {e}")))?;
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
        let mut tx = self.core.store().write().await?;
        let kept = tx.insert_event(&event).await?;
        if kept {
            let payload = json!({"integration": event.integration, "event": event.id});
            tx.enqueue_jobs(&[NewJob { kind: EVENT.into(), dedupe_key: None, payload, run_after: now }]).await?;
        }
        tx.commit().await?;
        if kept {
            self.core.wake_worker();
        }
        Ok(Ingested { event: kept.then_some(event.id), duplicate: !kept })
    }

    /// Maps an accepted event and writes what it maps to (the worker's job).
    pub async fn process_event(&self, job: &Job, owner: &str) -> Result<()> {
        let id = job.payload["integration"].as_str().unwrap_or_default();
        let event_id = job.payload["event"].as_str().unwrap_or_default();
        let (integration, event) = {
            let mut tx = self.core.store().read().await?;
            (tx.integration(id).await?, tx.event(id, event_id).await?)
        };
        let finished = match (integration, event) {
            (Some(integration), Some(mut event)) if event.state == EventState::Pending => {
                let mapped = self.map(&integration.mapping, &event.request).await;
                event.items = self.write_mapped(&integration, mapped).await?;
                event.state = settled_state(&event.items);
                event.processed_at = Some(self.core.now());
                Some(event)
            }
            // Gone with its integration, or processed before a crash lost the job's completion.
            _ => None,
        };
        let mut tx = self.core.store().write().await?;
        if let Some(event) = &finished {
            tx.update_event(event).await?;
        }
        tx.complete_job(job.id, owner).await?;
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

    /// Writes mapped items: creates and updates merged into what exists, many to a transaction
    /// per blueprint; deletes one by one. Each item's outcome, in the order mapped.
    async fn write_mapped(&self, integration: &Integration, mapped: Vec<Mapped>) -> Result<Vec<EventItem>> {
        let actor = integration_actor(integration);
        let mut items = Vec::with_capacity(mapped.len());
        let mut creates: BTreeMap<String, Vec<(usize, Value)>> = BTreeMap::new();
        let mut deletes = Vec::new();
        for m in mapped {
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
                    item.blueprint = Some(blueprint.clone());
                    item.identifier = document["identifier"].as_str().map(str::to_string);
                    if let Some(fields) = document.as_object_mut() {
                        fields.remove("blueprint");
                    }
                    match m.operation {
                        Operation::Create => creates.entry(blueprint).or_default().push((items.len(), document)),
                        Operation::Delete => deletes.push(items.len()),
                    }
                }
            }
            items.push(item);
        }
        if integration.mapping.create_missing_related_entities {
            self.create_missing_targets(&actor, &creates).await?;
        }
        for (blueprint, group) in creates {
            for chunk in group.chunks(MAX_BULK) {
                let documents = chunk.iter().map(|(_, d)| d.clone()).collect();
                match self.catalog.bulk_write(&actor, &blueprint, documents, true, true).await {
                    Ok(results) => {
                        for written in results {
                            let item = &mut items[chunk[written.index].0];
                            match written.result {
                                Ok(Written::Created) => item.result = "created".into(),
                                Ok(Written::Updated) => item.result = "updated".into(),
                                Err(err) => item.error = Some(described(&err)),
                            }
                        }
                    }
                    Err(err) => chunk.iter().for_each(|(i, _)| items[*i].error = Some(err.message.clone())),
                }
            }
        }
        for index in deletes {
            let item = &mut items[index];
            let (blueprint, identifier) =
                (item.blueprint.clone().unwrap_or_default(), item.identifier.clone().unwrap_or_default());
            let deleted = self
                .catalog
                .delete_entity(&actor, &blueprint, &identifier, integration.mapping.delete_dependent_entities, None)
                .await;
            match deleted {
                Ok(_) => item.result = "deleted".into(),
                Err(err) if err.code == ErrorCode::NotFound && err.message.starts_with("entity") => {
                    item.result = "absent".into();
                }
                Err(err) => item.error = Some(described(&err)),
            }
        }
        Ok(items)
    }

    /// `createMissingRelatedEntities`: every entity a create relates to that does not exist is
    /// made, bare (an identifier only), so that the relation holds.
    async fn create_missing_targets(
        &self,
        actor: &Actor,
        creates: &BTreeMap<String, Vec<(usize, Value)>>,
    ) -> Result<()> {
        let mut tx = self.core.store().read().await?;
        let blueprints = blueprints_by_id(tx.as_mut()).await?;
        let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (blueprint, group) in creates {
            let Some(blueprint) = blueprints.get(blueprint) else { continue };
            for (_, document) in group {
                let Some(relations) = document["relations"].as_object() else { continue };
                for (name, value) in relations {
                    let Some(definition) = blueprint.relations.get(name) else { continue };
                    let targets = match value {
                        Value::Array(values) => values.iter().filter_map(Value::as_str).collect(),
                        Value::String(one) => vec![one.as_str()],
                        _ => Vec::new(),
                    };
                    for target in targets {
                        if tx.entity(&definition.target, target).await?.is_none() {
                            missing.entry(definition.target.clone()).or_default().insert(target.to_string());
                        }
                    }
                }
            }
        }
        drop(tx);
        for (blueprint, identifiers) in missing {
            let documents: Vec<Value> = identifiers.into_iter().map(|id| json!({"identifier": id})).collect();
            for chunk in documents.chunks(MAX_BULK) {
                // A target that cannot be made bare (a required property) leaves its relation
                // unresolved: the item that names it fails with that reason.
                let _ = self.catalog.bulk_write(actor, &blueprint, chunk.to_vec(), true, true).await;
            }
        }
        Ok(())
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
