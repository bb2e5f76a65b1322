//! Blueprints: the catalog's data model. A schema change that existing entities would break is
//! refused; a change of computed definitions queues every entity for recompute.

use portolan_model::{Blueprint, system};
use portolan_store::{BlueprintRecord, StoreError, Tx};
use serde_json::{Value, json};

use super::service::Catalog;
use crate::error::{Error, ErrorCode, Result};
use crate::services::actor::{Actor, Origin};
use crate::services::computed::recompute_jobs;
use crate::services::core::{
    all_blueprints, identifier_from_path, load_blueprint, lock_blueprint, strip_server_fields, to_json,
};
use crate::services::scorecards::compiled_scorecards;

/// How many entities a schema-change refusal names.
pub(super) const SCHEMA_BREAK_EXAMPLES: usize = 5;

/// Page size used when a whole blueprint's entities are re-checked.
pub(super) const SCAN_PAGE: u32 = 1_000;

impl Catalog {
    /// Creates the system blueprints if they are missing.
    pub async fn ensure_system_blueprints(&self) -> Result<()> {
        let mut tx = self.core.store().write().await?;
        let now = self.core.now();
        for blueprint in system::blueprints() {
            if tx.blueprint(&blueprint.identifier).await?.is_none() {
                let id = blueprint.identifier.clone();
                let entry = Actor::system("portolan", Origin::Cli)
                    .entry(now, "blueprint.create", "blueprint", &id)
                    .on(&id)
                    .changed(None, Some(to_json(&blueprint)));
                tx.append_audit(&[entry]).await?;
                tx.put_blueprint(&BlueprintRecord {
                    blueprint,
                    created_at: now,
                    created_by: "portolan".into(),
                    updated_at: now,
                    updated_by: "portolan".into(),
                })
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_blueprints(&self) -> Result<Vec<BlueprintRecord>> {
        Ok(self.core.store().read().await?.blueprints().await?)
    }

    pub async fn get_blueprint(&self, identifier: &str) -> Result<BlueprintRecord> {
        let mut tx = self.core.store().read().await?;
        load_blueprint(tx.as_mut(), identifier).await
    }

    pub async fn create_blueprint(&self, actor: &Actor, mut document: Value) -> Result<BlueprintRecord> {
        strip_server_fields(&mut document);
        let blueprint = Blueprint::from_json(document)?;
        if let Err(msg) = system::check_user_blueprint_identifier(&blueprint.identifier) {
            return Err(Error::invalid_at("/identifier", msg));
        }
        let exists_message = format!("blueprint '{}' already exists", blueprint.identifier);
        let already = || Error::new(ErrorCode::AlreadyExists, exists_message.clone());
        let mut tx = self.core.store().write().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        if tx.blueprint(&blueprint.identifier).await?.is_some() {
            return Err(already());
        }
        check_blueprint(tx.as_mut(), &blueprint).await?;
        let now = self.core.now();
        let record = BlueprintRecord {
            blueprint,
            created_at: now,
            created_by: actor.id.clone(),
            updated_at: now,
            updated_by: actor.id.clone(),
        };
        // Another replica may have created it since the check above: the insert says so.
        match tx.insert_blueprint(&record).await {
            Err(StoreError::Conflict(_)) => return Err(already()),
            other => other?,
        }
        let id = &record.blueprint.identifier;
        let entry = actor
            .entry(now, "blueprint.create", "blueprint", id)
            .on(id)
            .changed(None, Some(to_json(&record.blueprint)));
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Replaces a blueprint (PUT), or with `merge`, applies a JSON merge patch to it (PATCH).
    pub async fn update_blueprint(
        &self,
        actor: &Actor,
        identifier: &str,
        mut document: Value,
        merge: bool,
    ) -> Result<BlueprintRecord> {
        let mut tx = self.core.store().write().await?;
        let existing = lock_blueprint(tx.as_mut(), identifier).await?;
        self.permissions.require_manage(tx.as_mut(), actor, Some(identifier)).await?;
        if merge {
            let mut merged = serde_json::to_value(&existing.blueprint)
                .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
            merge_patch(&mut merged, document);
            document = merged;
        }
        strip_server_fields(&mut document);
        identifier_from_path(&mut document, identifier)?;
        let blueprint = Blueprint::from_json(document)?;
        let computed_before = (
            existing.blueprint.mirror_properties.clone(),
            existing.blueprint.aggregation_properties.clone(),
            existing.blueprint.calculation_properties.clone(),
        );
        if system::is_system(identifier) {
            system::check_system_change(&blueprint)?;
        }
        check_blueprint(tx.as_mut(), &blueprint).await?;
        let schema_changed =
            blueprint.schema != existing.blueprint.schema || blueprint.relations != existing.blueprint.relations;
        if schema_changed {
            check_entities_still_valid(tx.as_mut(), &blueprint).await?;
            // Scorecards must still fit the changed schema.
            compiled_scorecards(tx.as_mut(), &blueprint, self.core.now()).await?;
        }
        let record = BlueprintRecord {
            blueprint,
            created_at: existing.created_at,
            created_by: existing.created_by.clone(),
            updated_at: self.core.now(),
            updated_by: actor.id.clone(),
        };
        let computed_changed = record.blueprint.mirror_properties != computed_before.0
            || record.blueprint.aggregation_properties != computed_before.1
            || record.blueprint.calculation_properties != computed_before.2;
        tx.put_blueprint(&record).await?;
        let entry = actor
            .entry(record.updated_at, "blueprint.update", "blueprint", identifier)
            .on(identifier)
            .changed(Some(to_json(&existing.blueprint)), Some(to_json(&record.blueprint)));
        tx.append_audit(&[entry]).await?;
        if computed_changed {
            self.recompute_all(tx.as_mut(), identifier).await?;
        }
        tx.commit().await?;
        self.core.wake_worker();
        Ok(record)
    }

    /// Queues every entity of a blueprint for recompute (its computed definitions changed).
    pub(super) async fn recompute_all(&self, tx: &mut dyn Tx, blueprint: &str) -> Result<()> {
        let mut after: Option<String> = None;
        loop {
            let page = tx.list_entities(blueprint, after.as_deref(), SCAN_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.identifier.clone());
            let done = page.len() < SCAN_PAGE as usize;
            tx.enqueue_jobs(&recompute_jobs(page.into_iter().map(|e| e.entity_ref()), self.core.now())).await?;
            if done {
                break;
            }
        }
        Ok(())
    }

    pub async fn delete_blueprint(&self, actor: &Actor, identifier: &str, delete_entities: bool) -> Result<u64> {
        if system::is_system(identifier) {
            return Err(Error::new(
                ErrorCode::InUse,
                format!("'{identifier}' is a system blueprint and cannot be deleted"),
            ));
        }
        let mut tx = self.core.store().write().await?;
        let existing = lock_blueprint(tx.as_mut(), identifier).await?;
        self.permissions.require_manage(tx.as_mut(), actor, Some(identifier)).await?;
        let referencing: Vec<String> = tx
            .blueprints()
            .await?
            .into_iter()
            .filter(|r| r.blueprint.identifier != identifier)
            .flat_map(|r| {
                let source = r.blueprint.identifier.clone();
                r.blueprint
                    .relations
                    .iter()
                    .filter(|(_, rel)| rel.target == identifier)
                    .map(move |(name, _)| format!("{source}.{name}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        if !referencing.is_empty() {
            return Err(Error::new(
                ErrorCode::InUse,
                format!(
                    "blueprint '{identifier}' is the target of relations {}; remove them first",
                    referencing.join(", ")
                ),
            )
            .with_details(referencing.into_iter().map(|r| json!({"relation": r})).collect()));
        }
        let count = tx.count_entities(identifier).await?;
        if count > 0 && !delete_entities {
            return Err(Error::new(
                ErrorCode::HasEntities,
                format!("blueprint '{identifier}' has {count} entities; pass delete_entities=true to delete them too"),
            ));
        }
        let deleted = tx.delete_entities_of(identifier).await?;
        tx.delete_blueprint(identifier).await?;
        let mut before = to_json(&existing.blueprint);
        before["deletedEntities"] = json!(deleted);
        let entry = actor
            .entry(self.core.now(), "blueprint.delete", "blueprint", identifier)
            .on(identifier)
            .changed(Some(before), None);
        tx.append_audit(&[entry]).await?;
        self.permissions.drop_permissions(tx.as_mut(), Some(identifier), None).await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

pub(super) async fn check_blueprint(tx: &mut dyn Tx, blueprint: &Blueprint) -> Result<()> {
    let stored = all_blueprints(tx).await?;
    blueprint.validate(|target| stored.iter().any(|b| b.identifier == target))?;
    let lookup = |id: &str| stored.iter().find(|b| b.identifier == id).cloned();
    portolan_model::computed::validate(blueprint, &lookup)?;
    Ok(())
}

/// Refuses a schema change that existing entities would violate, naming how many and a few.
pub(super) async fn check_entities_still_valid(tx: &mut dyn Tx, blueprint: &Blueprint) -> Result<()> {
    let mut broken = 0u64;
    let mut examples = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = tx.list_entities(&blueprint.identifier, after.as_deref(), SCAN_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.identifier.clone());
        for entity in &page {
            if let Err(errors) = entity.revalidate(blueprint) {
                broken += 1;
                if examples.len() < SCHEMA_BREAK_EXAMPLES {
                    let errors: Vec<Value> =
                        errors.0.iter().map(|e| json!({"path": e.path, "message": e.message})).collect();
                    examples.push(json!({"identifier": entity.identifier, "errors": errors}));
                }
            }
        }
        if (page.len() as u32) < SCAN_PAGE {
            break;
        }
    }
    if broken == 0 {
        return Ok(());
    }
    let names: Vec<&str> = examples.iter().filter_map(|e| e["identifier"].as_str()).collect();
    Err(Error::new(
        ErrorCode::SchemaBreaksEntities,
        format!("the change would make {broken} existing entities invalid, e.g. {}", names.join(", ")),
    )
    .with_details(examples))
}

/// JSON merge patch (RFC 7386): objects merge recursively, `null` removes, anything else replaces.
pub(super) fn merge_patch(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else {
                    merge_patch(target.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        (target, Value::Object(patch)) => {
            // An object over a non-object starts empty, so nulls inside it still remove.
            *target = Value::Object(serde_json::Map::new());
            merge_patch(target, Value::Object(patch));
        }
        (target, patch) => *target = patch,
    }
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "s": "text"});
        merge_patch(&mut target, json!({"a": "z", "c": {"f": null}, "s": {"x": 1, "y": null}, "n": [1]}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}, "s": {"x": 1}, "n": [1]}));
    }
}
