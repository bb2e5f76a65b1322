//! Integrations: data brought in from where it lives, turned into entities by the mapping
//! language of [`portolan_model::integration::mapping`]. Mappings run in the jq sandbox, one
//! program per resource and payload (or page). A webhook integration's requests are accepted
//! durably and mapped by the worker (`webhooks.rs`); a REST integration is pulled on a schedule
//! and applied as its own catalog-as-code source, so that what left the source leaves the catalog
//! (`pull.rs`).

mod installations;
mod pull;
mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;

use portolan_model::Blueprint;
use portolan_model::entity::EntityInput;
use portolan_model::integration::mapping::{Mapped, Mapping, Operation, Outcome};
use portolan_model::integration::{Integration, IntegrationInput, IntegrationKind};
use portolan_store::Tx;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::actions::Actions;
use super::actor::{Actor, Origin};
use super::catalog::Catalog;
use super::core::{Core, all_blueprints, to_json};
use super::manifests::Manifests;
use super::permissions::Permissions;
use crate::error::{Error, ErrorCode, Result};
use crate::outbound::Outbound;
use crate::sandbox::JqSandbox;

pub use installations::{DatasourcePage, InstallationChange, MAX_DATASOURCE_PAGE};
pub use webhooks::{EVENT, IngestRequest, Ingested, MAX_EVENT_PAGE};

#[derive(Clone)]
pub struct Integrations {
    core: Core,
    permissions: Permissions,
    catalog: Catalog,
    manifests: Manifests,
    actions: Actions,
    outbound: Arc<Outbound>,
    github: Arc<crate::github::Github>,
    jq: Option<Arc<JqSandbox>>,
    /// Where ingest URLs point: the server's public URL.
    public_url: Arc<str>,
    /// One lock per REST integration: one pull at a time.
    pulling: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// The group-commit writer of accepted webhook events, started on first use.
    event_writer: Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<webhooks::NewEvent>>>,
}

/// Everything an integration is built from.
pub struct IntegrationsParts {
    pub core: Core,
    pub permissions: Permissions,
    pub catalog: Catalog,
    pub manifests: Manifests,
    pub actions: Actions,
    pub outbound: Arc<Outbound>,
    pub github: Arc<crate::github::Github>,
    pub jq: Option<Arc<JqSandbox>>,
    pub public_url: Arc<str>,
}

/// An integration, and (when it was just made or its key rotated) its ingest URL, shown once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationView {
    #[serde(flatten)]
    pub integration: Integration,
    /// A webhook integration's ingest URL: only in the answer that made its key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest_url: Option<String>,
}

/// What a payload would become, item by item, with nothing written.
#[derive(Debug, Serialize, ToSchema)]
pub struct MappingPreview {
    pub items: Vec<PreviewItem>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewItem {
    /// The resource's index in `resources`, and its kind.
    pub resource: usize,
    pub kind: String,
    /// The item's index among the payload's items (`itemsToParse`), 0 without it.
    pub item: usize,
    pub operation: Operation,
    /// The entity the item maps to, when its mapping ran.
    #[schema(value_type = Option<Object>)]
    pub entity: Option<Value>,
    /// Why the item would not be written as it is: each with the mapping's JSON pointer.
    pub problems: Vec<Problem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Integrations {
    pub fn new(parts: IntegrationsParts) -> Self {
        let IntegrationsParts { core, permissions, catalog, manifests, actions, outbound, github, jq, public_url } =
            parts;
        Self {
            core,
            permissions,
            catalog,
            manifests,
            actions,
            outbound,
            github,
            jq,
            public_url,
            pulling: Arc::default(),
            event_writer: Arc::default(),
        }
    }

    /// Creates an integration; a webhook integration gets its ingest URL, shown in this answer
    /// only. Admins may create any; a blueprint's moderators those that write only to it.
    pub async fn create(&self, actor: &Actor, input: IntegrationInput) -> Result<IntegrationView> {
        let integration = input.into_integration(self.core.now(), &actor.id, None)?;
        let mut tx = self.core.store().write().await?;
        self.require_manage(tx.as_mut(), actor, &integration).await?;
        self.check_secrets(tx.as_mut(), &integration).await?;
        if tx.integration(&integration.identifier).await?.is_some() {
            let message = format!("integration '{}' already exists", integration.identifier);
            return Err(Error::new(ErrorCode::AlreadyExists, message));
        }
        let key = self.new_key(&integration);
        tx.put_integration(&integration, key.as_ref().map(|(_, hash)| hash.as_str())).await?;
        let entry = actor
            .entry(self.core.now(), "integration.create", "integration", &integration.identifier)
            .changed(None, Some(to_json(&integration)));
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(IntegrationView { integration, ingest_url: key.map(|(url, _)| url) })
    }

    /// Replaces an integration's configuration; its key, events and status stay.
    pub async fn update(&self, actor: &Actor, id: &str, input: IntegrationInput) -> Result<Integration> {
        if input.identifier != id {
            return Err(Error::invalid_at("/identifier", format!("the identifier is '{id}', as in the URL")));
        }
        let mut tx = self.core.store().write().await?;
        let existing = self.managed(tx.as_mut(), actor, id).await?;
        let integration = input.into_integration(self.core.now(), &actor.id, Some(&existing))?;
        if integration.kind != existing.kind {
            return Err(Error::invalid_at("/type", "an integration's type does not change: make a new one"));
        }
        self.require_manage(tx.as_mut(), actor, &integration).await?;
        self.check_secrets(tx.as_mut(), &integration).await?;
        tx.put_integration(&integration, None).await?;
        let entry = actor
            .entry(self.core.now(), "integration.update", "integration", id)
            .changed(Some(to_json(&existing)), Some(to_json(&integration)));
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(integration)
    }

    /// A new ingest key for a webhook integration: the old URL stops working at once.
    pub async fn rotate_key(&self, actor: &Actor, id: &str) -> Result<IntegrationView> {
        let mut tx = self.core.store().write().await?;
        let integration = self.managed(tx.as_mut(), actor, id).await?;
        let Some((url, hash)) = self.new_key(&integration) else {
            return Err(Error::invalid_at("/type", "only a webhook integration has an ingest URL"));
        };
        tx.put_integration(&integration, Some(&hash)).await?;
        tx.append_audit(&[actor.entry(self.core.now(), "integration.rotate-key", "integration", id)]).await?;
        tx.commit().await?;
        Ok(IntegrationView { integration, ingest_url: Some(url) })
    }

    /// The integrations the actor may manage.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<Integration>> {
        let mut tx = self.core.store().read().await?;
        let mut mine = Vec::new();
        for integration in tx.integrations().await? {
            if self.require_manage(tx.as_mut(), actor, &integration).await.is_ok() {
                mine.push(integration);
            }
        }
        Ok(mine)
    }

    pub async fn get(&self, actor: &Actor, id: &str) -> Result<Integration> {
        let mut tx = self.core.store().read().await?;
        self.managed(tx.as_mut(), actor, id).await
    }

    /// Deletes an integration and its event log. What it brought stays in the catalog, no longer
    /// owned by it, unless `delete_entities` (then a REST integration's entities go too).
    pub async fn delete(&self, actor: &Actor, id: &str, delete_entities: bool) -> Result<()> {
        let integration = self.get(actor, id).await?;
        let source = integration.source_name();
        if delete_entities {
            let request = super::manifests::ApplyRequest {
                source: source.clone(),
                documents: Vec::new(),
                dry_run: false,
                prune: true,
                max_delete_share: None,
            };
            self.manifests.apply(&integration_actor(&integration), request).await?;
        }
        let mut tx = self.core.store().write().await?;
        let owned: Vec<_> = tx.applied_objects(Some(&source)).await?.into_keys().collect();
        tx.forget_applied(&owned).await?;
        tx.delete_integration(id).await?;
        let entry = actor
            .entry(self.core.now(), "integration.delete", "integration", id)
            .changed(Some(to_json(&integration)), None);
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// An integration the actor may manage (others are not found, as if they did not exist).
    async fn managed(&self, tx: &mut dyn Tx, actor: &Actor, id: &str) -> Result<Integration> {
        let not_found = || Error::not_found(format!("integration '{id}'"));
        let integration = tx.integration(id).await?.ok_or_else(not_found)?;
        self.require_manage(tx, actor, &integration).await.map_err(|_| not_found())?;
        Ok(integration)
    }

    /// Admins manage every integration; a moderator those whose every resource writes to a
    /// blueprint they moderate (a blueprint chosen by jq could be any: admins only).
    async fn require_manage(&self, tx: &mut dyn Tx, actor: &Actor, integration: &Integration) -> Result<()> {
        let targets = integration.target_blueprints().filter(|t| !t.is_empty());
        let Some(targets) = targets else { return self.permissions.require_manage(tx, actor, None).await };
        for blueprint in &targets {
            self.permissions.require_manage(tx, actor, Some(blueprint)).await?;
        }
        Ok(())
    }

    /// Lets REST integrations reach `url`'s origin even on a private address (the demo's own
    /// source on loopback).
    pub fn trust_source(&self, url: &str) {
        self.outbound.trust(crate::outbound::Purpose::IntegrationSource, url);
    }

    /// A webhook integration's new ingest URL and the hash stored for its key.
    fn new_key(&self, integration: &Integration) -> Option<(String, String)> {
        (integration.kind == IntegrationKind::Webhook).then(|| {
            let key = crate::keys::random_token();
            let url = format!("{}/integrations/webhooks/{key}", self.public_url);
            (url, crate::keys::token_sha256(&key))
        })
    }

    /// Runs every resource of a mapping over payloads (a page of items, a batch of events) in
    /// the sandbox, one program per resource for them all: what each payload maps to, in order.
    /// When the program fails for the batch (a payload too big for the sandbox's limits), each
    /// payload is mapped alone, so that the failure is that payload's only.
    pub async fn map_each(&self, mapping: &Mapping, kind: Option<&str>, payloads: Vec<Value>) -> Vec<Vec<Mapped>> {
        let mut mapped: Vec<Vec<Mapped>> = vec![Vec::new(); payloads.len()];
        let input = Value::Array(payloads);
        let resources = mapping.resources.iter().enumerate();
        for (index, resource) in resources.filter(|(_, r)| kind.is_none_or(|kind| r.kind == kind)) {
            let program = resource.program_for_each();
            match self.eval(&program, &input).await {
                Ok(outputs) => {
                    for (payload, output) in mapped.iter_mut().zip(outputs.as_array().into_iter().flatten()) {
                        payload.extend(mapping.read_outputs(index, output));
                    }
                }
                Err(message) if mapped.len() == 1 => {
                    let outcome = Outcome::Error { path: format!("/resources/{index}"), message };
                    mapped[0].push(Mapped { resource: index, item: 0, operation: resource.operation, outcome });
                }
                Err(_) => {
                    let payloads = input.as_array().into_iter().flatten();
                    for (payload, one) in mapped.iter_mut().zip(payloads) {
                        let alone = Value::Array(vec![one.clone()]);
                        let outcome = match self.eval(&program, &alone).await {
                            Ok(outputs) => {
                                let output = outputs.as_array().and_then(|o| o.first()).cloned().unwrap_or_default();
                                payload.extend(mapping.read_outputs(index, &output));
                                continue;
                            }
                            Err(message) => Outcome::Error { path: format!("/resources/{index}"), message },
                        };
                        payload.push(Mapped { resource: index, item: 0, operation: resource.operation, outcome });
                    }
                }
            }
        }
        mapped
    }

    /// The first output of a program, in the sandbox.
    async fn eval(&self, program: &str, input: &Value) -> std::result::Result<Value, String> {
        let jq = self.jq.as_ref().ok_or("this server runs no jq sandbox")?;
        Ok(jq.eval(program, input).await?.into_iter().next().unwrap_or(Value::Null))
    }

    /// What a payload would become under a mapping, each entity checked against its blueprint
    /// and against the caller's right to manage that blueprint; nothing is written.
    pub async fn test_mapping(&self, actor: &Actor, mapping: Value, payload: &Value) -> Result<MappingPreview> {
        let mapping = Mapping::parse(mapping).map_err(|mut errors| {
            errors.0.iter_mut().for_each(|e| e.path = format!("/mapping{}", e.path));
            Error::from(errors)
        })?;
        let mapped = self.map_each(&mapping, None, vec![payload.clone()]).await.remove(0);
        let mut tx = self.core.store().read().await?;
        let blueprints = blueprints_by_id(tx.as_mut()).await?;
        let mut items = Vec::with_capacity(mapped.len());
        for m in mapped {
            let base = format!("/resources/{}/port/entity/mappings", m.resource);
            let mut problems = Vec::new();
            let entity = match m.outcome {
                Outcome::Error { path, message } => {
                    problems.push(Problem { path, message });
                    None
                }
                Outcome::Entity(document) => {
                    let id = document["blueprint"].as_str().unwrap_or_default().to_string();
                    if blueprints.contains_key(&id)
                        && let Err(err) = self.permissions.require_manage(tx.as_mut(), actor, Some(&id)).await
                    {
                        problems.push(Problem { path: format!("{base}/blueprint"), message: err.message });
                    }
                    problems.extend(check_entity(&blueprints, &document, m.operation, &base));
                    Some(document)
                }
            };
            let kind = mapping.resources[m.resource].kind.clone();
            items.push(PreviewItem {
                resource: m.resource,
                kind,
                item: m.item,
                operation: m.operation,
                entity,
                problems,
            });
        }
        Ok(MappingPreview { items })
    }
}

/// Refuses an integration that names a secret the server does not hold.
impl Integrations {
    /// Refuses an integration naming a secret that does not exist, or a GitHub App key that is
    /// not an RSA private key in PEM (it would fail every pull).
    async fn check_secrets(&self, tx: &mut dyn Tx, integration: &Integration) -> Result<()> {
        let vendor = integration.vendor.as_ref();
        let app_key = vendor.and_then(|v| v.app.as_ref()).map(|a| &a.private_key_secret);
        let named = [
            ("/security/secret", integration.security.as_ref().and_then(|s| s.secret.as_ref())),
            ("/source/authSecret", integration.source.as_ref().and_then(|s| s.auth_secret.as_ref())),
            ("/vendor/tokenSecret", vendor.and_then(|v| v.token_secret.as_ref())),
            ("/vendor/app/privateKeySecret", app_key),
        ];
        for (pointer, name) in named {
            if let Some(name) = name
                && tx.secret(name).await?.is_none()
            {
                return Err(Error::invalid_at(pointer, format!("secret '{name}' does not exist")));
            }
        }
        if let Some(name) = app_key {
            let key =
                self.actions.secret_values(tx, std::slice::from_ref(name)).await?.remove(name).unwrap_or_default();
            if let Err(e) = jsonwebtoken::EncodingKey::from_rsa_pem(key.as_bytes()) {
                let message = format!("secret '{name}' is not the app's RSA private key in PEM: {e}");
                return Err(Error::invalid_at("/vendor/app/privateKeySecret", message));
            }
        }
        Ok(())
    }
}

/// Who an integration's writes are made by (as `updatedBy` and the audit log show).
fn integration_actor(integration: &Integration) -> Actor {
    Actor::system(integration.source_name(), Origin::Automation)
}

/// Why a mapped entity document would not be written: its blueprint is unknown, or (for a
/// create) it does not fit the blueprint. Each problem's path is under `base`.
fn check_entity(
    blueprints: &HashMap<String, Blueprint>,
    document: &Value,
    operation: Operation,
    base: &str,
) -> Vec<Problem> {
    let id = document["blueprint"].as_str().unwrap_or_default();
    let Some(blueprint) = blueprints.get(id) else {
        return vec![Problem {
            path: format!("{base}/blueprint"),
            message: format!("blueprint '{id}' does not exist"),
        }];
    };
    if operation == Operation::Delete {
        return Vec::new();
    }
    match portolan_model::error::from_json::<EntityInput>(document.clone()).and_then(|input| input.validate(blueprint))
    {
        Ok(_) => Vec::new(),
        Err(errors) => {
            errors.0.into_iter().map(|e| Problem { path: format!("{base}{}", e.path), message: e.message }).collect()
        }
    }
}

/// Every blueprint, by identifier.
async fn blueprints_by_id(tx: &mut dyn Tx) -> Result<HashMap<String, Blueprint>> {
    Ok(all_blueprints(tx).await?.into_iter().map(|b| (b.identifier.clone(), b)).collect())
}
