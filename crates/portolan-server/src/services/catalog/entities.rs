//! Entities: reads, and writes (one, bulk, delete with dependents) that validate against the
//! blueprint, check references and permissions, and store with computed values, audit entries,
//! change events, automations and follow-up recomputes in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use portolan_model::Millis;
use portolan_model::entity::{Reference, ValidEntity};
use portolan_model::error::FieldErrors;
use portolan_model::history::Version;
use portolan_model::manifest::ObjectKey;
use portolan_model::permission::EntityOp;
use portolan_model::scorecard;
use portolan_model::{Blueprint, Entity, EntityInput, EntityRef};
use portolan_store::{EntityWrite, Tx, actions as affected};
use serde_json::{Value, json};

use super::service::Catalog;
use crate::error::{Error, ErrorCode, Result};
use crate::extract::IfMatch;
use crate::services::actor::{Actor, Principal};
use crate::services::computed::{dependents, recompute_jobs};
use crate::services::core::{all_blueprints, change, identifier_from_path, load_blueprint, to_json};
use crate::services::notifications;
use crate::services::permissions::create_refused;
use crate::services::scorecards::compiled_scorecards;
use crate::services::triggers::queue_entity_automations;

/// How many referrers a refused delete lists.
pub(super) const REFERRERS_LISTED: u32 = 20;

/// The most entities one delete may remove with `delete_dependents`.
pub(super) const MAX_CASCADE: usize = 10_000;

/// The file a datasource's entities are recorded under (a source's objects each name one).
const DATASOURCE_FILE: &str = "port-api";

/// The most entities one bulk request may carry.
pub const MAX_BULK: usize = 1_000;

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
    /// A bulk upsert that would change nothing: nothing is written, the version stays.
    Unchanged,
}

/// How a bulk write treats what exists and what is missing.
#[derive(Debug, Clone, Default)]
pub struct BulkOptions {
    /// Replace an entity that exists instead of failing the item.
    pub upsert: bool,
    /// With `upsert`, merge the given fields into the entity that exists.
    pub merge: bool,
    /// Create an entity a relation names but that does not exist, with its identifier only
    /// (when its blueprint requires nothing else), as Port's `create_missing_related_entities`.
    pub create_missing_related: bool,
    /// Check every item, write nothing.
    pub validation_only: bool,
    /// The catalog-as-code source the written entities then belong to: an installation's
    /// datasource, so that its next sync finds what it wrote.
    pub datasource: Option<String>,
}

/// The result of one item of a bulk write.
#[derive(Debug)]
pub struct BulkItem {
    pub index: usize,
    pub identifier: Option<String>,
    pub result: std::result::Result<Outcome, Error>,
}

/// One entity being written: where it came from in the request and what it will become.
pub(super) struct Pending {
    index: usize,
    valid: ValidEntity,
    existing: Option<Entity>,
}

/// An entity a location brought is changed in its file: people's direct edits are refused with
/// the file to change (the location itself, and the server's own work, go through).
async fn refuse_if_from_location(tx: &mut dyn Tx, actor: &Actor, entity: &EntityRef) -> Result<()> {
    if !matches!(actor.principal, Principal::User(_)) {
        return Ok(());
    }
    match tx.applied_object(&ObjectKey::entity(entity)).await? {
        Some(object) if object.source.starts_with("location:") => Err(Error::new(
            ErrorCode::ManagedBySource,
            format!(
                "entity '{}' comes from {} (file {}): change the file, and the location's next sync applies it",
                entity.identifier, object.source, object.file
            ),
        )),
        _ => Ok(()),
    }
}

impl Catalog {
    pub async fn get_entity(&self, actor: &Actor, blueprint: &str, identifier: &str) -> Result<Entity> {
        let mut tx = self.core.store().read().await?;
        load_blueprint(tx.as_mut(), blueprint).await?;
        let entity = tx
            .entity(blueprint, identifier)
            .await?
            .ok_or_else(|| Error::not_found(format!("entity '{identifier}' of blueprint '{blueprint}'")))?;
        self.permissions.readable_entity(tx.as_mut(), actor, entity).await
    }

    /// The entity as it was at `at`, from its newest audit record up to then, if the actor may
    /// read that version (today's grants, applied to it as it was).
    pub async fn entity_as_of(&self, actor: &Actor, blueprint: &str, identifier: &str, at: Millis) -> Result<Entity> {
        portolan_model::history::check_as_of(at, self.core.now()).map_err(|m| Error::invalid_at("/asOf", m))?;
        let mut tx = self.core.store().read().await?;
        load_blueprint(tx.as_mut(), blueprint).await?;
        let filter = portolan_store::AuditFilter {
            resource_type: Some("entity".into()),
            resource_id: Some(identifier.into()),
            blueprint: Some(blueprint.into()),
            status: Some(portolan_model::audit::SUCCESS.into()),
            to: Some(at),
            ..portolan_store::AuditFilter::default()
        };
        let record = tx.audit_records(&filter, 1).await?.into_iter().next();
        let when = portolan_model::format_millis(at);
        let what = format!("entity '{identifier}' of blueprint '{blueprint}'");
        let gone = |message: String| Err(Error::new(ErrorCode::NotFound, message));
        match record.map(|r| Version::after(&r.entry)) {
            Some(Version::Present(entity)) => self.permissions.readable_entity(tx.as_mut(), actor, *entity).await,
            Some(Version::Deleted(deleted)) => {
                gone(format!("{what} was deleted at {}, before {when}", portolan_model::format_millis(deleted)))
            }
            Some(Version::Unrecorded) => gone(format!("{what} at {when} was larger than an audit record keeps")),
            None => gone(format!("{what} did not exist yet at {when}")),
        }
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

        let mut tx = self.core.store().write().await?;
        let blueprint = load_blueprint(tx.as_mut(), blueprint_id).await?.blueprint;
        let mut existing = tx.entity(blueprint_id, &identifier).await?;
        // What the caller may not read stays hidden, whatever the request says about it: a PUT
        // or PATCH finds nothing, and a create is refused as one the grants do not allow (it
        // cannot take the identifier, and must not overwrite the entity).
        let mut taken_by_hidden = false;
        if let (Some(current), Principal::User(_)) = (&existing, &actor.principal)
            && let Err(hidden) = self.permissions.readable_entity(tx.as_mut(), actor, current.clone()).await
        {
            if !matches!(mode, WriteMode::Create { .. }) {
                return Err(hidden);
            }
            existing = None;
            taken_by_hidden = true;
        }
        check_if_match(if_match, existing.as_ref())?;
        if let Some(current) = &existing {
            refuse_if_from_location(tx.as_mut(), actor, &current.entity_ref()).await?;
        }
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
        if let Some(refused) = self
            .permissions
            .refused_writes(tx.as_mut(), actor, &blueprint, &[(0, &valid, existing.as_ref())])
            .await?
            .remove(&0)
        {
            return Err(refused);
        }
        if taken_by_hidden {
            return Err(create_refused(blueprint_id));
        }
        let pending = vec![Pending { index: 0, valid, existing }];
        let mut missing = self.missing_references(tx.as_mut(), actor, &blueprint, &pending).await?;
        if let Some(errors) = missing.remove(&0) {
            return Err(Error::invalid(errors));
        }
        let written = self.store_pending(tx.as_mut(), actor, &blueprint, pending).await?;
        tx.commit().await?;
        self.core.wake_worker();
        let Some((_, write, outcome)) = written.into_iter().next() else {
            return Err(Error::new(ErrorCode::Internal, "lost a pending write"));
        };
        Ok((write.entity, outcome))
    }

    /// Stores validated writes: each gets its next version, computed properties and scorecard
    /// results; then the entities whose computed values read them are queued for recompute.
    pub(super) async fn store_pending(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        blueprint: &Blueprint,
        pending: Vec<Pending>,
    ) -> Result<Vec<(usize, EntityWrite, Outcome)>> {
        let now = self.core.now();
        let blueprints = all_blueprints(tx).await?;
        let scorecards = compiled_scorecards(tx, blueprint, now).await?;
        let mut written = Vec::with_capacity(pending.len());
        let mut befores = Vec::with_capacity(pending.len());
        for p in pending {
            let index = p.index;
            befores.push(p.existing.clone());
            let (mut write, outcome) = self.next_version(actor, blueprint, p);
            self.computed.compute_properties(tx, &blueprints, &mut write.entity, now).await?;
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
        queue_entity_automations(tx, actor, now, &changes).await?;
        if let Some(run) = &actor.run {
            let changes: Vec<_> = written
                .iter()
                .map(|(_, w, o)| {
                    (w.entity.entity_ref(), if *o == Outcome::Created { affected::CREATED } else { affected::UPDATED })
                })
                .collect();
            tx.link_run_entities(run, &changes, now).await?;
        }
        for (before, (_, write, _)) in befores.iter().zip(&written) {
            notifications::queue_drops(tx, before.as_ref(), &write.entity, now).await?;
        }
        let mut follow_up = BTreeSet::new();
        for (before, (_, write, _)) in befores.iter().zip(&written) {
            follow_up.extend(dependents(tx, &blueprints, before.as_ref(), Some(&write.entity)).await?);
        }
        tx.enqueue_jobs(&recompute_jobs(follow_up, now)).await?;
        Ok(written)
    }

    /// Writes up to [`MAX_BULK`] entities in one transaction; each item succeeds or fails on its
    /// own, and items may refer to each other.
    pub async fn bulk_write(
        &self,
        actor: &Actor,
        blueprint_id: &str,
        documents: Vec<Value>,
        options: &BulkOptions,
    ) -> Result<Vec<BulkItem>> {
        if documents.len() > MAX_BULK {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("{} entities sent; one bulk request takes at most {MAX_BULK}", documents.len()),
            ));
        }
        let mut tx = self.core.store().write().await?;
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
            let readable = self.permissions.readable_refs(tx.as_mut(), actor, &refs).await;
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
            if let Some(current) = &current
                && let Err(err) = refuse_if_from_location(tx.as_mut(), actor, &current.entity_ref()).await
            {
                results.push(BulkItem { index, identifier: Some(identifier), result: Err(err) });
                continue;
            }
            let input = match &current {
                Some(_) if !options.upsert => {
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
                Some(current) if options.merge => input.merged_onto(current),
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
        let mut refused = self.permissions.refused_writes(tx.as_mut(), actor, &blueprint, &items).await?;
        for p in pending.iter().filter(|p| taken_by_hidden.contains(&p.valid.identifier)) {
            refused.entry(p.index).or_insert_with(|| create_refused(blueprint_id));
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
                actor
                    .entry(self.core.now(), action, "entity", &p.valid.identifier)
                    .on(blueprint_id)
                    .denied(&error.message),
            );
            results.push(BulkItem { index: p.index, identifier: Some(p.valid.identifier), result: Err(error) });
        }
        if !refusals.is_empty() {
            tx.append_audit(&refusals).await?;
        }

        if options.create_missing_related {
            self.create_missing_targets(tx.as_mut(), actor, &blueprint, &pending).await?;
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

        let (unchanged, pending): (Vec<Pending>, Vec<Pending>) = pending
            .into_iter()
            .partition(|p| p.existing.as_ref().is_some_and(|e| p.valid.unchanged_from(&blueprint, e)));
        let mut done: Vec<(usize, String, Outcome)> =
            unchanged.into_iter().map(|p| (p.index, p.valid.identifier, Outcome::Unchanged)).collect();
        for (index, write, outcome) in self.store_pending(tx.as_mut(), actor, &blueprint, pending).await? {
            done.push((index, write.entity.identifier, outcome));
        }
        if let Some(datasource) = &options.datasource {
            let keys: Vec<_> = done
                .iter()
                .map(|(_, identifier, _)| {
                    let target = EntityRef { blueprint: blueprint_id.into(), identifier: identifier.clone() };
                    (ObjectKey::entity(&target), DATASOURCE_FILE.to_string())
                })
                .collect();
            tx.record_applied(datasource, &keys, self.core.now()).await?;
        }
        for (index, identifier, outcome) in done {
            results.push(BulkItem { index, identifier: Some(identifier), result: Ok(outcome) });
        }
        if !options.validation_only {
            tx.commit().await?;
            self.core.wake_worker();
        }
        results.sort_by_key(|item| item.index);
        Ok(results)
    }

    /// Creates, with their identifier only, the entities that pending items' relations name and
    /// that do not exist. One whose blueprint requires more, or that the actor may not create, is
    /// left missing: the items naming it then fail saying so.
    async fn create_missing_targets(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        blueprint: &Blueprint,
        pending: &[Pending],
    ) -> Result<()> {
        // Relations only: owners and team properties name teams and users, which are not made bare.
        let wanted = referenced_outside(blueprint, pending, |r| !r.via.starts_with('$'));
        for (target_blueprint, identifiers) in wanted {
            let identifiers: Vec<String> = identifiers.into_iter().collect();
            let existing = tx.existing(target_blueprint, &identifiers).await?;
            let target = load_blueprint(tx, target_blueprint).await?.blueprint;
            let stubs: Vec<Pending> = identifiers
                .into_iter()
                .filter(|id| !existing.contains(id))
                .enumerate()
                .filter_map(|(index, identifier)| {
                    let valid =
                        EntityInput::from_json(json!({"identifier": identifier})).ok()?.validate(&target).ok()?;
                    Some(Pending { index, valid, existing: None })
                })
                .collect();
            let items: Vec<_> = stubs.iter().map(|p| (p.index, &p.valid, None)).collect();
            let refused = self.permissions.refused_writes(tx, actor, &target, &items).await?;
            let allowed: Vec<Pending> = stubs.into_iter().filter(|p| !refused.contains_key(&p.index)).collect();
            self.store_pending(tx, actor, &target, allowed).await?;
        }
        Ok(())
    }

    /// Deletes up to [`MAX_BULK`] entities of one blueprint, each on its own (Port's bulk
    /// delete): the identifiers deleted (with their dependents', when asked), and each failure.
    pub async fn bulk_delete(
        &self,
        actor: &Actor,
        blueprint_id: &str,
        identifiers: &[String],
        delete_dependents: bool,
    ) -> Result<(Vec<EntityRef>, Vec<(String, Error)>)> {
        if identifiers.len() > MAX_BULK {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("{} entities named; one bulk delete takes at most {MAX_BULK}", identifiers.len()),
            ));
        }
        let mut deleted = Vec::new();
        let mut failed = Vec::new();
        for identifier in identifiers {
            if deleted.iter().any(|d: &EntityRef| d.blueprint == blueprint_id && &d.identifier == identifier) {
                continue;
            }
            match self.delete_entity(actor, blueprint_id, identifier, delete_dependents, None).await {
                Ok(refs) => deleted.extend(refs),
                Err(err) => failed.push((identifier.clone(), err)),
            }
        }
        Ok((deleted, failed))
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
        let mut tx = self.core.store().write().await?;
        load_blueprint(tx.as_mut(), blueprint_id).await?;
        let existing = tx.lock_entity(blueprint_id, identifier).await?;
        let Some(entity) = existing else {
            check_if_match(if_match, None)?;
            return Err(Error::not_found(format!("entity '{identifier}' of blueprint '{blueprint_id}'")));
        };
        // A run's backend deletes for its run without reading; anyone else must see it first.
        let entity = match actor.principal {
            Principal::Run(_) => entity,
            _ => self.permissions.readable_entity(tx.as_mut(), actor, entity).await?,
        };
        check_if_match(if_match, Some(&entity))?;
        refuse_if_from_location(tx.as_mut(), actor, &entity.entity_ref()).await?;
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
                let readable = self.permissions.readable_refs(tx.as_mut(), actor, &refs).await;
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
        let now = self.core.now();
        let mut follow_up = BTreeSet::new();
        let mut befores = Vec::with_capacity(to_delete.len());
        for target in &to_delete {
            let before = tx.entity(&target.blueprint, &target.identifier).await?;
            follow_up.extend(dependents(tx.as_mut(), &blueprints, before.as_ref(), None).await?);
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
        // A deleted entity is no source's any more: a source's next prune or a datasource's
        // next sync does not meet it.
        tx.forget_applied(&to_delete.iter().map(ObjectKey::entity).collect::<Vec<_>>()).await?;
        let changes: Vec<_> = befores.iter().map(|b| (b.as_ref(), None)).collect();
        queue_entity_automations(tx.as_mut(), actor, now, &changes).await?;
        if let Some(run) = &actor.run {
            let changes: Vec<_> = to_delete.iter().map(|t| (t.clone(), affected::DELETED)).collect();
            tx.link_run_entities(run, &changes, now).await?;
        }
        tx.enqueue_jobs(&recompute_jobs(follow_up, self.core.now())).await?;
        tx.commit().await?;
        self.core.wake_worker();
        Ok(to_delete.into_iter().collect())
    }

    /// Refuses a delete (with its cascade) unless the actor may delete every entity in it.
    pub(super) async fn check_deletes(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        targets: &BTreeSet<EntityRef>,
    ) -> Result<()> {
        let mut by_blueprint: HashMap<&str, Vec<String>> = HashMap::new();
        for target in targets {
            by_blueprint.entry(&target.blueprint).or_default().push(target.identifier.clone());
        }
        for (blueprint, identifiers) in by_blueprint {
            let access = self.permissions.entity_access(tx, actor, blueprint, EntityOp::Delete).await?;
            let allowed = self.permissions.admitted_by(tx, actor, blueprint, &access, &identifiers).await?;
            if let Some(denied) = identifiers.iter().find(|i| !allowed.contains(*i)) {
                let denied = EntityRef { blueprint: blueprint.to_string(), identifier: denied.clone() };
                let named =
                    self.permissions.readable_refs(tx, actor, std::slice::from_ref(&denied)).await.contains(&denied);
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
    pub(super) fn next_version(
        &self,
        actor: &Actor,
        blueprint: &Blueprint,
        pending: Pending,
    ) -> (EntityWrite, Outcome) {
        let now = self.core.now();
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

    /// Checks that every reference of every pending entity names an existing entity, counting the
    /// pending entities of `blueprint` themselves as existing. A user's reference to an entity they
    /// may not read is missing too: it would tell them it exists, and mirror its properties to them.
    /// Returns the errors per pending index.
    pub(super) async fn missing_references(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        blueprint: &Blueprint,
        pending: &[Pending],
    ) -> Result<HashMap<usize, FieldErrors>> {
        let in_request: HashSet<&str> = pending.iter().map(|p| p.valid.identifier.as_str()).collect();
        let wanted = referenced_outside(blueprint, pending, |_| true);
        let mut found: HashMap<&str, HashSet<String>> = HashMap::new();
        for (target_blueprint, identifiers) in wanted {
            let identifiers: Vec<String> = identifiers.into_iter().collect();
            let mut existing: Vec<String> = tx.existing(target_blueprint, &identifiers).await?.into_iter().collect();
            if actor.as_user().is_some() {
                let read = self.permissions.entity_access(tx, actor, target_blueprint, EntityOp::Read).await?;
                existing = self
                    .permissions
                    .admitted_by(tx, actor, target_blueprint, &read, &existing)
                    .await?
                    .into_iter()
                    .collect();
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

/// The entities pending items refer to (through references `keep` admits) other than those the
/// request itself writes, by blueprint.
fn referenced_outside<'a>(
    blueprint: &Blueprint,
    pending: &'a [Pending],
    keep: impl Fn(&Reference) -> bool,
) -> BTreeMap<&'a str, BTreeSet<String>> {
    let in_request: HashSet<&str> = pending.iter().map(|p| p.valid.identifier.as_str()).collect();
    let mut wanted: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for r in pending.iter().flat_map(|p| &p.valid.references).filter(|r| keep(r)) {
        if r.target_blueprint != blueprint.identifier || !in_request.contains(r.target.as_str()) {
            wanted.entry(r.target_blueprint.as_str()).or_default().insert(r.target.clone());
        }
    }
    wanted
}

pub(super) fn check_if_match(if_match: Option<IfMatch>, existing: Option<&Entity>) -> Result<()> {
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

pub(super) fn generate_identifier() -> String {
    format!("e_{}", uuid::Uuid::new_v4().simple())
}
