//! Integrations: data brought in from where it lives, turned into entities by the mapping
//! language of [`portolan_model::integration::mapping`]. Mappings run in the jq sandbox, one
//! program per resource and payload.

use std::collections::HashMap;
use std::sync::Arc;

use portolan_model::Blueprint;
use portolan_model::entity::EntityInput;
use portolan_model::integration::mapping::{Mapped, Mapping, Operation, Outcome};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::actor::Actor;
use super::core::{Core, all_blueprints};
use super::permissions::Permissions;
use crate::error::{Error, Result};
use crate::sandbox::JqSandbox;

#[derive(Clone)]
pub struct Integrations {
    core: Core,
    permissions: Permissions,
    jq: Option<Arc<JqSandbox>>,
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
    pub fn new(core: Core, permissions: Permissions, jq: Option<Arc<JqSandbox>>) -> Self {
        Self { core, permissions, jq }
    }

    /// Runs every resource of a mapping over one payload, in the sandbox.
    pub async fn map(&self, mapping: &Mapping, payload: &Value) -> Vec<Mapped> {
        let mut mapped = Vec::new();
        for (index, resource) in mapping.resources.iter().enumerate() {
            let outcome = match &self.jq {
                None => Err("this server runs no jq sandbox".to_string()),
                Some(jq) => jq.eval(&resource.program(), payload).await,
            };
            match outcome {
                Ok(outputs) => {
                    mapped.extend(mapping.read_outputs(index, outputs.first().unwrap_or(&Value::Null)));
                }
                Err(message) => mapped.push(Mapped {
                    resource: index,
                    item: 0,
                    operation: resource.operation,
                    outcome: Outcome::Error { path: format!("/resources/{index}"), message },
                }),
            }
        }
        mapped
    }

    /// What a payload would become under a mapping, each entity checked against its blueprint
    /// and against the caller's right to manage that blueprint; nothing is written.
    pub async fn test_mapping(&self, actor: &Actor, mapping: Value, payload: &Value) -> Result<MappingPreview> {
        let mapping = Mapping::parse(mapping).map_err(|mut errors| {
            errors.0.iter_mut().for_each(|e| e.path = format!("/mapping{}", e.path));
            Error::from(errors)
        })?;
        let mapped = self.map(&mapping, payload).await;
        let mut tx = self.core.store().read().await?;
        let blueprints: HashMap<String, Blueprint> =
            all_blueprints(tx.as_mut()).await?.into_iter().map(|b| (b.identifier.clone(), b)).collect();
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
                    match blueprints.get(&id) {
                        None => problems.push(Problem {
                            path: format!("{base}/blueprint"),
                            message: format!("blueprint '{id}' does not exist"),
                        }),
                        Some(blueprint) => {
                            if let Err(err) = self.permissions.require_manage(tx.as_mut(), actor, Some(&id)).await {
                                problems.push(Problem { path: format!("{base}/blueprint"), message: err.message });
                            }
                            let checked = portolan_model::error::from_json::<EntityInput>(document.clone())
                                .and_then(|input| input.validate(blueprint));
                            if let (Operation::Create, Err(errors)) = (m.operation, checked) {
                                problems.extend(
                                    errors
                                        .0
                                        .into_iter()
                                        .map(|e| Problem { path: format!("{base}{}", e.path), message: e.message }),
                                );
                            }
                        }
                    }
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
