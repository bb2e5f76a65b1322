//! The catalog service: blueprints and entities.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use portolan_model::entity::ValidEntity;
use portolan_model::error::FieldErrors;
use portolan_model::permission::EntityOp;
use portolan_model::scorecard;
use portolan_model::{Blueprint, Entity, EntityInput, EntityRef, system};
use portolan_store::{BlueprintRecord, ChangeEvent, EntityWrite, Store, StoreError, Tx, actions as affected};
use serde_json::{Value, json};

use super::identity::{LoginThrottle, SessionPolicy};
use super::scorecards::compiled_scorecards;
use super::{Actor, Principal, SharedClock, all_blueprints, computed, identifier_from_path, runs};
use crate::backends::Engine;
use crate::error::{Error, ErrorCode, Result};
use crate::extract::IfMatch;
use crate::sandbox::JqSandbox;

/// How many entities a schema-change refusal names.
const SCHEMA_BREAK_EXAMPLES: usize = 5;
/// How many referrers a refused delete lists.
const REFERRERS_LISTED: u32 = 20;
/// The most entities one delete may remove with `delete_dependents`.
const MAX_CASCADE: usize = 10_000;
/// The most entities one bulk request may carry.
pub const MAX_BULK: usize = 1_000;
/// Page size used when a whole blueprint's entities are re-checked.
const SCAN_PAGE: u32 = 1_000;

#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn Store>,
    clock: SharedClock,
    /// Wakes this process's worker when a write queued follow-up work.
    work: Arc<tokio::sync::Notify>,
    /// Where jq calculations run; without one, calculation properties stay empty (with a diagnostic).
    sandbox: Option<Arc<JqSandbox>>,
    /// Keys, HTTP client and connections that actions use.
    engine: Arc<Engine>,
    /// The group-commit writer of new runs, started on first use.
    run_writer: Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<runs::NewRun>>>,
    /// Failed sign-ins of this process.
    throttle: Arc<LoginThrottle>,
    sessions: SessionPolicy,
}

/// How an entity write treats an entity that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// POST: create; with `upsert`, replace (or with `merge`, merge into) an existing one.
    Create { upsert: bool, merge: bool },
    /// PUT: replace an existing entity.
    Replace,
    /// PATCH: merge into an existing entity.
    Patch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
}

/// The result of one item of a bulk write.
#[derive(Debug)]
pub struct BulkItem {
    pub index: usize,
    pub identifier: Option<String>,
    pub result: std::result::Result<Outcome, Error>,
}

/// One entity being written: where it came from in the request and what it will become.
struct Pending {
    index: usize,
    valid: ValidEntity,
    existing: Option<Entity>,
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, engine: Arc<Engine>) -> Self {
        let run_writer = Arc::default();
        Self {
            store,
            clock,
            work: Arc::new(tokio::sync::Notify::new()),
            sandbox: None,
            engine,
            run_writer,
            throttle: Arc::default(),
            sessions: SessionPolicy::default(),
        }
    }

    pub(crate) fn throttle(&self) -> &LoginThrottle {
        &self.throttle
    }

    pub fn session_policy(&self) -> SessionPolicy {
        self.sessions
    }

    pub fn set_session_policy(&mut self, policy: SessionPolicy) {
        self.sessions = policy;
    }

    pub(crate) fn run_writer(&self) -> &std::sync::OnceLock<tokio::sync::mpsc::Sender<runs::NewRun>> {
        &self.run_writer
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now(&self) -> portolan_model::Millis {
        self.clock.now()
    }

    /// Runs jq calculations in `sandbox`.
    pub fn set_sandbox(&mut self, sandbox: Arc<JqSandbox>) {
        self.sandbox = Some(sandbox);
    }

    pub(crate) fn sandbox(&self) -> Option<&JqSandbox> {
        self.sandbox.as_deref()
    }

    /// Notified after a write that queued background work.
    pub fn work_signal(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.work)
    }

    /// A blueprint, or 404.
    pub(crate) async fn blueprint_record(&self, tx: &mut dyn Tx, identifier: &str) -> Result<BlueprintRecord> {
        load_blueprint(tx, identifier).await
    }

    /// A blueprint about to change (its scorecards, say), or 404.
    pub(crate) async fn locked_blueprint_record(&self, tx: &mut dyn Tx, identifier: &str) -> Result<BlueprintRecord> {
        lock_blueprint(tx, identifier).await
    }

    /// Creates the system blueprints if they are missing.
    pub async fn ensure_system_blueprints(&self) -> Result<()> {
        let mut tx = self.store.write().await?;
        let now = self.clock.now();
        for blueprint in system::blueprints() {
            if tx.blueprint(&blueprint.identifier).await?.is_none() {
                let id = blueprint.identifier.clone();
                let entry = Actor::system("portolan", super::Origin::Cli)
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

    // ---- blueprints ----

    pub async fn list_blueprints(&self) -> Result<Vec<BlueprintRecord>> {
        Ok(self.store.read().await?.blueprints().await?)
    }

    pub async fn get_blueprint(&self, identifier: &str) -> Result<BlueprintRecord> {
        let mut tx = self.store.read().await?;
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
        let mut tx = self.store.write().await?;
        self.require_manage(tx.as_mut(), actor, None).await?;
        if tx.blueprint(&blueprint.identifier).await?.is_some() {
            return Err(already());
        }
        check_blueprint(tx.as_mut(), &blueprint).await?;
        let now = self.clock.now();
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
        let mut tx = self.store.write().await?;
        let existing = lock_blueprint(tx.as_mut(), identifier).await?;
        self.require_manage(tx.as_mut(), actor, Some(identifier)).await?;
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
            compiled_scorecards(tx.as_mut(), &blueprint, self.now()).await?;
        }
        let record = BlueprintRecord {
            blueprint,
            created_at: existing.created_at,
            created_by: existing.created_by.clone(),
            updated_at: self.clock.now(),
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
        self.work.notify_one();
        Ok(record)
    }

    /// Queues every entity of a blueprint for recompute (its computed definitions changed).
    async fn recompute_all(&self, tx: &mut dyn Tx, blueprint: &str) -> Result<()> {
        let mut after: Option<String> = None;
        loop {
            let page = tx.list_entities(blueprint, after.as_deref(), SCAN_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.identifier.clone());
            let done = page.len() < SCAN_PAGE as usize;
            tx.enqueue_jobs(&computed::recompute_jobs(page.into_iter().map(|e| e.entity_ref()), self.now())).await?;
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
        let mut tx = self.store.write().await?;
        let existing = lock_blueprint(tx.as_mut(), identifier).await?;
        self.require_manage(tx.as_mut(), actor, Some(identifier)).await?;
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
            .entry(self.now(), "blueprint.delete", "blueprint", identifier)
            .on(identifier)
            .changed(Some(before), None);
        tx.append_audit(&[entry]).await?;
        self.drop_permissions(tx.as_mut(), Some(identifier), None).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    // ---- entities ----

    pub async fn get_entity(&self, actor: &Actor, blueprint: &str, identifier: &str) -> Result<Entity> {
        let mut tx = self.store.read().await?;
        load_blueprint(tx.as_mut(), blueprint).await?;
        let entity = tx
            .entity(blueprint, identifier)
            .await?
            .ok_or_else(|| Error::not_found(format!("entity '{identifier}' of blueprint '{blueprint}'")))?;
        self.readable_entity(tx.as_mut(), actor, entity).await
    }

    /// Creates, replaces or patches one entity. `path_identifier` is the identifier in the URL
    /// (PUT and PATCH).
    pub async fn write_entity(
        &self,
        actor: &Actor,
        blueprint_id: &str,
        path_identifier: Option<&str>,
        mut document: Value,
        mode: WriteMode,
        if_match: Option<IfMatch>,
    ) -> Result<(Entity, Outcome)> {
        if let Some(path_id) = path_identifier {
            identifier_from_path(&mut document, path_id)?;
        }
        let mut input = EntityInput::from_json(document)?;
        let identifier = input.identifier.get_or_insert_with(generate_identifier).clone();

        let mut tx = self.store.write().await?;
        let blueprint = load_blueprint(tx.as_mut(), blueprint_id).await?.blueprint;
        let mut existing = tx.entity(blueprint_id, &identifier).await?;
        // What the caller may not read stays hidden, whatever the request says about it: a PUT
        // or PATCH finds nothing, and a create is refused as one the grants do not allow (it
        // cannot take the identifier, and must not overwrite the entity).
        let mut taken_by_hidden = false;
        if let (Some(current), Principal::User(_)) = (&existing, &actor.principal)
            && let Err(hidden) = self.readable_entity(tx.as_mut(), actor, current.clone()).await
        {
            if !matches!(mode, WriteMode::Create { .. }) {
                return Err(hidden);
            }
            existing = None;
            taken_by_hidden = true;
        }
        check_if_match(if_match, existing.as_ref())?;
        let input = match (mode, &existing) {
            (WriteMode::Create { upsert: false, .. }, Some(_)) => {
                return Err(Error::new(
                    ErrorCode::AlreadyExists,
                    format!(
                        "entity '{identifier}' of blueprint '{blueprint_id}' already exists; pass upsert=true to replace it"
                    ),
                ));
            }
            (WriteMode::Create { merge: true, .. } | WriteMode::Patch, Some(current)) => input.merged_onto(current),
            (WriteMode::Replace | WriteMode::Patch, None) => {
                return Err(Error::not_found(format!("entity '{identifier}' of blueprint '{blueprint_id}'")));
            }
            _ => input,
        };
        let valid = match existing {
            Some(_) => input.validate_stored(&blueprint)?,
            None => input.validate(&blueprint)?,
        };
        if let Some(refused) =
            self.refused_writes(tx.as_mut(), actor, &blueprint, &[(0, &valid, existing.as_ref())]).await?.remove(&0)
        {
            return Err(refused);
        }
        if taken_by_hidden {
            return Err(super::permissions::create_refused(blueprint_id));
        }
        let pending = vec![Pending { index: 0, valid, existing }];
        let mut missing = self.missing_references(tx.as_mut(), actor, &blueprint, &pending).await?;
        if let Some(errors) = missing.remove(&0) {
            return Err(Error::invalid(errors));
        }
        let written = self.store_pending(tx.as_mut(), actor, &blueprint, pending).await?;
        tx.commit().await?;
        self.work.notify_one();
        let Some((_, write, outcome)) = written.into_iter().next() else {
            return Err(Error::new(ErrorCode::Internal, "lost a pending write"));
        };
        Ok((write.entity, outcome))
    }

    /// Stores validated writes: each gets its next version, computed properties and scorecard
    /// results; then the entities whose computed values read them are queued for recompute.
    async fn store_pending(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        blueprint: &Blueprint,
        pending: Vec<Pending>,
    ) -> Result<Vec<(usize, EntityWrite, Outcome)>> {
        let now = self.now();
        let blueprints = all_blueprints(tx).await?;
        let scorecards = compiled_scorecards(tx, blueprint, now).await?;
        let mut written = Vec::with_capacity(pending.len());
        let mut befores = Vec::with_capacity(pending.len());
        for p in pending {
            let index = p.index;
            befores.push(p.existing.clone());
            let (mut write, outcome) = self.next_version(actor, blueprint, p);
            computed::compute_properties(tx, &blueprints, &mut write.entity, now, self.sandbox()).await?;
            write.entity.scorecards = scorecard::score(&scorecards, &write.entity);
            written.push((index, write, outcome));
        }
        let writes: Vec<EntityWrite> = written.iter().map(|(_, w, _)| w.clone()).collect();
        tx.put_entities(&writes).await?;
        let entries: Vec<_> = befores
            .iter()
            .zip(&written)
            .map(|(before, (_, write, outcome))| {
                let action = if *outcome == Outcome::Created { "entity.create" } else { "entity.update" };
                let after = &write.entity;
                actor
                    .entry(now, action, "entity", &after.identifier)
                    .on(&after.blueprint)
                    .changed(before.as_ref().map(to_json), Some(to_json(after)))
            })
            .collect();
        tx.append_audit(&entries).await?;
        for (_, write, outcome) in &written {
            let kind = if *outcome == Outcome::Created { "entity.created" } else { "entity.updated" };
            tx.publish(&change(kind, &write.entity.entity_ref(), Some(write.entity.version))).await?;
        }
        let changes: Vec<_> =
            befores.iter().zip(&written).map(|(b, (_, w, _))| (b.as_ref(), Some(&w.entity))).collect();
        runs::queue_entity_automations(tx, actor, now, &changes).await?;
        if let Some(run) = &actor.run {
            let changes: Vec<_> = written
                .iter()
                .map(|(_, w, o)| {
                    (w.entity.entity_ref(), if *o == Outcome::Created { affected::CREATED } else { affected::UPDATED })
                })
                .collect();
            tx.link_run_entities(run, &changes, now).await?;
        }
        let mut follow_up = BTreeSet::new();
        for (before, (_, write, _)) in befores.iter().zip(&written) {
            follow_up.extend(computed::dependents(tx, &blueprints, before.as_ref(), Some(&write.entity)).await?);
        }
        tx.enqueue_jobs(&computed::recompute_jobs(follow_up, now)).await?;
        Ok(written)
    }

    /// Writes up to [`MAX_BULK`] entities in one transaction; each item succeeds or fails on its
    /// own, and items may refer to each other.
    pub async fn bulk_write(
        &self,
        actor: &Actor,
        blueprint_id: &str,
        documents: Vec<Value>,
        upsert: bool,
        merge: bool,
    ) -> Result<Vec<BulkItem>> {
        if documents.len() > MAX_BULK {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("{} entities sent; one bulk request takes at most {MAX_BULK}", documents.len()),
            ));
        }
        let mut tx = self.store.write().await?;
        let blueprint = load_blueprint(tx.as_mut(), blueprint_id).await?.blueprint;

        let mut results: Vec<BulkItem> = Vec::with_capacity(documents.len());
        let mut inputs: Vec<(usize, EntityInput)> = Vec::with_capacity(documents.len());
        let mut seen = HashSet::new();
        for (index, document) in documents.into_iter().enumerate() {
            let identifier = document.get("identifier").and_then(Value::as_str).map(str::to_string);
            let mut fail =
                |err: Error| results.push(BulkItem { index, identifier: identifier.clone(), result: Err(err) });
            match EntityInput::from_json(document) {
                Err(errors) => fail(errors.into()),
                Ok(mut input) => {
                    let id = input.identifier.get_or_insert_with(generate_identifier).clone();
                    if seen.insert(id.clone()) {
                        inputs.push((index, input));
                    } else {
                        fail(Error::new(ErrorCode::Conflict, format!("'{id}' appears more than once in this request")));
                    }
                }
            }
        }
        let identifiers: Vec<String> = inputs.iter().filter_map(|(_, i)| i.identifier.clone()).collect();
        let mut existing: HashMap<String, Entity> =
            tx.entities(blueprint_id, &identifiers).await?.into_iter().map(|e| (e.identifier.clone(), e)).collect();
        // As for one entity: an identifier taken by an entity the caller may not read is refused
        // as a create the grants do not allow, with or without upsert.
        let mut taken_by_hidden = HashSet::new();
        if let Principal::User(_) = &actor.principal {
            let refs: Vec<EntityRef> = existing.values().map(Entity::entity_ref).collect();
            let readable = self.readable_refs(tx.as_mut(), actor, &refs).await;
            for (identifier, entity) in std::mem::take(&mut existing) {
                if readable.contains(&entity.entity_ref()) {
                    existing.insert(identifier, entity);
                } else {
                    taken_by_hidden.insert(identifier);
                }
            }
        }

        let mut pending = Vec::with_capacity(inputs.len());
        for (index, input) in inputs {
            let identifier = input.identifier.clone().unwrap_or_default();
            let current = existing.remove(&identifier);
            let input = match &current {
                Some(_) if !upsert => {
                    results.push(BulkItem {
                        index,
                        identifier: Some(identifier.clone()),
                        result: Err(Error::new(
                            ErrorCode::AlreadyExists,
                            format!("entity '{identifier}' already exists; pass upsert=true to replace it"),
                        )),
                    });
                    continue;
                }
                Some(current) if merge => input.merged_onto(current),
                _ => input,
            };
            let valid = match current {
                Some(_) => input.validate_stored(&blueprint),
                None => input.validate(&blueprint),
            };
            match valid {
                Ok(valid) => pending.push(Pending { index, valid, existing: current }),
                Err(errors) => {
                    results.push(BulkItem { index, identifier: Some(identifier), result: Err(errors.into()) })
                }
            }
        }

        let items: Vec<_> = pending.iter().map(|p| (p.index, &p.valid, p.existing.as_ref())).collect();
        let mut refused = self.refused_writes(tx.as_mut(), actor, &blueprint, &items).await?;
        for p in pending.iter().filter(|p| taken_by_hidden.contains(&p.valid.identifier)) {
            refused.entry(p.index).or_insert_with(|| super::permissions::create_refused(blueprint_id));
        }
        let (kept, denied): (Vec<Pending>, Vec<Pending>) =
            pending.into_iter().partition(|p| !refused.contains_key(&p.index));
        pending = kept;
        // The request as a whole succeeds, so its refused items are audited here, one by one.
        let mut refusals = Vec::new();
        for p in denied {
            let error = refused.remove(&p.index).unwrap_or_else(|| Error::forbidden("refused"));
            let action = if p.existing.is_some() { "entity.update" } else { "entity.create" };
            refusals.push(
                actor.entry(self.now(), action, "entity", &p.valid.identifier).on(blueprint_id).denied(&error.message),
            );
            results.push(BulkItem { index: p.index, identifier: Some(p.valid.identifier), result: Err(error) });
        }
        if !refusals.is_empty() {
            tx.append_audit(&refusals).await?;
        }

        // Items whose references point nowhere fail; items that pointed at those fail in turn.
        loop {
            let missing = self.missing_references(tx.as_mut(), actor, &blueprint, &pending).await?;
            if missing.is_empty() {
                break;
            }
            let (failed, kept): (Vec<Pending>, Vec<Pending>) =
                pending.into_iter().partition(|p| missing.contains_key(&p.index));
            pending = kept;
            for p in failed {
                let errors = missing.get(&p.index).cloned().unwrap_or_default();
                results.push(BulkItem {
                    index: p.index,
                    identifier: Some(p.valid.identifier),
                    result: Err(errors.into()),
                });
            }
        }

        for (index, write, outcome) in self.store_pending(tx.as_mut(), actor, &blueprint, pending).await? {
            results.push(BulkItem { index, identifier: Some(write.entity.identifier), result: Ok(outcome) });
        }
        tx.commit().await?;
        self.work.notify_one();
        results.sort_by_key(|item| item.index);
        Ok(results)
    }

    /// Deletes an entity; with `delete_dependents`, also every entity that points at it,
    /// transitively. Returns what was deleted.
    pub async fn delete_entity(
        &self,
        actor: &Actor,
        blueprint_id: &str,
        identifier: &str,
        delete_dependents: bool,
        if_match: Option<IfMatch>,
    ) -> Result<Vec<EntityRef>> {
        let mut tx = self.store.write().await?;
        load_blueprint(tx.as_mut(), blueprint_id).await?;
        let existing = tx.lock_entity(blueprint_id, identifier).await?;
        let Some(entity) = existing else {
            check_if_match(if_match, None)?;
            return Err(Error::not_found(format!("entity '{identifier}' of blueprint '{blueprint_id}'")));
        };
        // A run's backend deletes for its run without reading; anyone else must see it first.
        let entity = match actor.principal {
            Principal::Run(_) => entity,
            _ => self.readable_entity(tx.as_mut(), actor, entity).await?,
        };
        check_if_match(if_match, Some(&entity))?;
        let root = entity.entity_ref();
        self.check_deletes(tx.as_mut(), actor, &BTreeSet::from([root.clone()])).await?;
        let mut to_delete: BTreeSet<EntityRef> = BTreeSet::from([root.clone()]);
        let mut frontier = vec![root.clone()];
        while let Some(target) = frontier.pop() {
            let limit = if delete_dependents { u32::MAX } else { REFERRERS_LISTED };
            let referrers: Vec<_> =
                tx.referrers(&target, limit).await?.into_iter().filter(|r| r.source != target).collect();
            if !delete_dependents && !referrers.is_empty() {
                let refs: Vec<EntityRef> = referrers.iter().map(|r| r.source.clone()).collect();
                let readable = self.readable_refs(tx.as_mut(), actor, &refs).await;
                let details = referrers
                    .iter()
                    .filter(|r| readable.contains(&r.source))
                    .map(|r| json!({"blueprint": r.source.blueprint, "identifier": r.source.identifier, "via": r.via}))
                    .collect();
                return Err(Error::new(
                    ErrorCode::HasDependents,
                    format!(
                        "'{identifier}' is referenced by other entities; pass delete_dependents=true to delete them too"
                    ),
                )
                .with_details(details));
            }
            for r in referrers {
                if to_delete.insert(r.source.clone()) {
                    tx.lock_entity(&r.source.blueprint, &r.source.identifier).await?;
                    frontier.push(r.source);
                }
            }
            if to_delete.len() > MAX_CASCADE {
                return Err(Error::new(
                    ErrorCode::HasDependents,
                    format!("deleting '{identifier}' would delete more than {MAX_CASCADE} dependents"),
                ));
            }
        }
        self.check_deletes(tx.as_mut(), actor, &to_delete).await?;
        let blueprints = all_blueprints(tx.as_mut()).await?;
        let now = self.now();
        let mut follow_up = BTreeSet::new();
        let mut befores = Vec::with_capacity(to_delete.len());
        for target in &to_delete {
            let before = tx.entity(&target.blueprint, &target.identifier).await?;
            follow_up.extend(computed::dependents(tx.as_mut(), &blueprints, before.as_ref(), None).await?);
            befores.push(before);
        }
        let entries: Vec<_> = befores
            .iter()
            .flatten()
            .map(|before| {
                actor
                    .entry(now, "entity.delete", "entity", &before.identifier)
                    .on(&before.blueprint)
                    .changed(Some(to_json(before)), None)
            })
            .collect();
        tx.append_audit(&entries).await?;
        for target in &to_delete {
            tx.delete_entity(&target.blueprint, &target.identifier).await?;
            tx.publish(&change("entity.deleted", target, None)).await?;
            follow_up.remove(target);
        }
        let changes: Vec<_> = befores.iter().map(|b| (b.as_ref(), None)).collect();
        runs::queue_entity_automations(tx.as_mut(), actor, now, &changes).await?;
        if let Some(run) = &actor.run {
            let changes: Vec<_> = to_delete.iter().map(|t| (t.clone(), affected::DELETED)).collect();
            tx.link_run_entities(run, &changes, now).await?;
        }
        tx.enqueue_jobs(&computed::recompute_jobs(follow_up, self.now())).await?;
        tx.commit().await?;
        self.work.notify_one();
        Ok(to_delete.into_iter().collect())
    }

    /// Refuses a delete (with its cascade) unless the actor may delete every entity in it.
    async fn check_deletes(&self, tx: &mut dyn Tx, actor: &Actor, targets: &BTreeSet<EntityRef>) -> Result<()> {
        let mut by_blueprint: HashMap<&str, Vec<String>> = HashMap::new();
        for target in targets {
            by_blueprint.entry(&target.blueprint).or_default().push(target.identifier.clone());
        }
        for (blueprint, identifiers) in by_blueprint {
            let access = self.entity_access(tx, actor, blueprint, EntityOp::Delete).await?;
            let allowed = self.admitted_by(tx, actor, blueprint, &access, &identifiers).await?;
            if let Some(denied) = identifiers.iter().find(|i| !allowed.contains(*i)) {
                let denied = EntityRef { blueprint: blueprint.to_string(), identifier: denied.clone() };
                let named = self.readable_refs(tx, actor, std::slice::from_ref(&denied)).await.contains(&denied);
                return Err(Error::forbidden(match named {
                    true => format!("you may not delete entity '{}' of '{blueprint}'", denied.identifier),
                    false => "you may not delete some of the entities this would delete".to_string(),
                }));
            }
        }
        Ok(())
    }

    /// The entity a pending write will store: a new one at version 1, or the next version of
    /// the existing one, keeping its creation stamp.
    fn next_version(&self, actor: &Actor, blueprint: &Blueprint, pending: Pending) -> (EntityWrite, Outcome) {
        let now = self.clock.now();
        let Pending { valid, existing, .. } = pending;
        let (version, created_at, created_by, outcome) = match existing {
            Some(current) => (current.version + 1, current.created_at, current.created_by, Outcome::Updated),
            None => (1, now, actor.id.clone(), Outcome::Created),
        };
        let entity = Entity {
            identifier: valid.identifier,
            title: valid.title,
            icon: valid.icon,
            blueprint: blueprint.identifier.clone(),
            team: valid.team,
            properties: valid.properties,
            relations: valid.relations,
            scorecards: Default::default(),
            diagnostics: Default::default(),
            version,
            created_at,
            created_by,
            updated_at: now,
            updated_by: actor.id.clone(),
        };
        (EntityWrite { entity, references: valid.references }, outcome)
    }
}

/// A blueprint about to change: concurrent writers of its entities wait (see `Tx::lock_blueprint`).
async fn lock_blueprint(tx: &mut dyn Tx, identifier: &str) -> Result<BlueprintRecord> {
    tx.lock_blueprint(identifier).await?.ok_or_else(|| Error::not_found(format!("blueprint '{identifier}'")))
}

async fn load_blueprint(tx: &mut dyn Tx, identifier: &str) -> Result<BlueprintRecord> {
    tx.blueprint(identifier).await?.ok_or_else(|| Error::not_found(format!("blueprint '{identifier}'")))
}

async fn check_blueprint(tx: &mut dyn Tx, blueprint: &Blueprint) -> Result<()> {
    let stored = all_blueprints(tx).await?;
    blueprint.validate(|target| stored.iter().any(|b| b.identifier == target))?;
    let lookup = |id: &str| stored.iter().find(|b| b.identifier == id).cloned();
    portolan_model::computed::validate(blueprint, &lookup)?;
    Ok(())
}

/// Refuses a schema change that existing entities would violate, naming how many and a few.
async fn check_entities_still_valid(tx: &mut dyn Tx, blueprint: &Blueprint) -> Result<()> {
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

impl Catalog {
    /// Checks that every reference of every pending entity names an existing entity, counting the
    /// pending entities of `blueprint` themselves as existing. A user's reference to an entity they
    /// may not read is missing too: it would tell them it exists, and mirror its properties to them.
    /// Returns the errors per pending index.
    async fn missing_references(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        blueprint: &Blueprint,
        pending: &[Pending],
    ) -> Result<HashMap<usize, FieldErrors>> {
        let in_request: HashSet<&str> = pending.iter().map(|p| p.valid.identifier.as_str()).collect();
        let mut wanted: HashMap<&str, BTreeSet<String>> = HashMap::new();
        for p in pending {
            for r in &p.valid.references {
                if r.target_blueprint == blueprint.identifier && in_request.contains(r.target.as_str()) {
                    continue;
                }
                wanted.entry(r.target_blueprint.as_str()).or_default().insert(r.target.clone());
            }
        }
        let mut found: HashMap<&str, HashSet<String>> = HashMap::new();
        for (target_blueprint, identifiers) in wanted {
            let identifiers: Vec<String> = identifiers.into_iter().collect();
            let mut existing: Vec<String> = tx.existing(target_blueprint, &identifiers).await?.into_iter().collect();
            if actor.as_user().is_some() {
                let read = self.entity_access(tx, actor, target_blueprint, EntityOp::Read).await?;
                existing = self.admitted_by(tx, actor, target_blueprint, &read, &existing).await?.into_iter().collect();
            }
            found.insert(target_blueprint, existing.into_iter().collect());
        }
        let mut missing: HashMap<usize, FieldErrors> = HashMap::new();
        for p in pending {
            for r in &p.valid.references {
                let in_batch = r.target_blueprint == blueprint.identifier && in_request.contains(r.target.as_str());
                let exists =
                    in_batch || found.get(r.target_blueprint.as_str()).is_some_and(|set| set.contains(&r.target));
                if !exists {
                    missing.entry(p.index).or_default().push(
                        &r.path,
                        format!("no entity '{}' exists in blueprint '{}'", r.target, r.target_blueprint),
                    );
                }
            }
        }
        Ok(missing)
    }
}

fn check_if_match(if_match: Option<IfMatch>, existing: Option<&Entity>) -> Result<()> {
    let stale = match (if_match, existing) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(IfMatch::Any), Some(_)) => false,
        (Some(IfMatch::Version(v)), Some(e)) => v != e.version,
    };
    if stale {
        let current = existing.map(|e| e.version.to_string()).unwrap_or_else(|| "none (it does not exist)".into());
        return Err(Error::new(
            ErrorCode::PreconditionFailed,
            format!("If-Match does not match the current version, which is {current}"),
        ));
    }
    Ok(())
}

/// JSON merge patch (RFC 7386): objects merge recursively, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: Value) {
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

/// Removes the fields the server manages, which a client that GETs, edits and PUTs echoes back.
pub(crate) fn strip_server_fields(document: &mut Value) {
    if let Value::Object(map) = document {
        for key in ["createdAt", "createdBy", "updatedAt", "updatedBy"] {
            map.remove(key);
        }
    }
}

/// The live event announcing a change to an entity.
pub(crate) fn change(kind: &str, entity: &EntityRef, version: Option<i64>) -> ChangeEvent {
    ChangeEvent {
        kind: kind.into(),
        blueprint: entity.blueprint.clone(),
        identifier: entity.identifier.clone(),
        version,
        property: None,
    }
}

fn generate_identifier() -> String {
    format!("e_{}", uuid::Uuid::new_v4().simple())
}

/// A document as the audit log keeps it.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
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
