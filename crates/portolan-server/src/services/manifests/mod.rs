//! Catalog as code: `portolan apply` checks every document first, plans, then writes in
//! dependency order through the same services the API uses; `--prune` deletes only what the
//! same source applied before. `portolan export` writes the same documents back.

pub mod files;
mod plan;
mod templates;

pub use templates::{GALLERY_SOURCE, TemplateState};

use std::collections::{BTreeMap, HashMap, HashSet};

use portolan_model::manifest::backstage;
use portolan_model::manifest::{Kind, ObjectKey, to_document};
use portolan_model::{Blueprint, Entity, EntityRef, system};
use portolan_store::SourceSummary;
use serde::Serialize;
use serde_json::{Value, json};

pub use plan::{Change, Op, Problem};
use plan::{Declared, Plan, entity_spec, scorecard_spec, stored_parts};

use super::actions::Actions;
use super::actor::{Actor, Origin};
use super::catalog::{BulkOptions, Catalog, WriteMode};
use super::core::{Core, to_json};
use super::dashboards::{Address, Dashboards};
use super::initiatives::Initiatives;
use super::permissions::{Permissions, action_resource, blueprint_resource};
use super::scorecards::Scorecards;
use super::search::{Search, SearchRequest};
use crate::error::{Error, ErrorCode, Result};

/// The most documents one apply takes.
pub const MAX_DOCUMENTS: usize = 1_000_000;

/// A document as read from a file.
#[derive(Debug, Clone)]
pub struct SourcedDocument {
    pub file: String,
    /// The line the document starts on.
    pub line: u32,
    pub document: Value,
}

#[derive(Debug, Clone)]
pub struct ApplyRequest {
    /// Names the set of files: what a later apply of the same source may prune.
    pub source: String,
    pub documents: Vec<SourcedDocument>,
    pub dry_run: bool,
    pub prune: bool,
    /// The largest share of the source's objects a prune may delete (a location's threshold).
    pub max_delete_share: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    pub source: String,
    pub dry_run: bool,
    /// Every declared object and every pruned one, with what happens to it.
    pub changes: Vec<Change>,
}

/// The catalog-as-code service, built with what it writes through.
#[derive(Clone)]
pub struct Manifests {
    pub core: Core,
    pub permissions: Permissions,
    pub catalog: Catalog,
    pub scorecards: Scorecards,
    pub actions: Actions,
    pub search: Search,
    pub initiatives: Initiatives,
    pub dashboards: Dashboards,
}

impl Manifests {
    /// Checks every document, and unless `dry_run`, applies the plan. Only admins apply: a
    /// source may define blueprints, actions and permissions.
    pub async fn apply(&self, actor: &Actor, request: ApplyRequest) -> Result<ApplyReport> {
        check_source_name(&request.source)?;
        if request.documents.len() > MAX_DOCUMENTS {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("{} documents sent; one apply takes at most {MAX_DOCUMENTS}", request.documents.len()),
            ));
        }
        let (request, plan) = {
            let mut tx = self.core.store().read().await?;
            self.permissions.require_manage(tx.as_mut(), actor, None).await?;
            let expansion = self.expand_templates(tx.as_mut(), request).await?.map_err(problems_error)?;
            let plan = self.plan(tx.as_mut(), &expansion.request, &expansion.implied).await?;
            (expansion.request, plan.map_err(problems_error)?)
        };
        if let Some(share) = request.max_delete_share {
            let held = self.core.store().read().await?.applied_objects(Some(&request.source)).await?.len();
            if !plan.deletes.is_empty() && plan.deletes.len() as f64 > share * held as f64 {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "this would delete {} of the {held} objects of {} (more than {:.0}%): nothing was changed",
                        plan.deletes.len(),
                        request.source,
                        share * 100.0
                    ),
                ));
            }
        }
        if !request.dry_run {
            self.execute(actor, &request.source, &plan).await?;
        }
        Ok(ApplyReport { source: request.source, dry_run: request.dry_run, changes: plan.changes })
    }

    /// Writes a checked plan, in dependency order, and records what the source now holds.
    async fn execute(&self, actor: &Actor, source: &str, plan: &Plan) -> Result<()> {
        let mut done: Vec<(ObjectKey, String)> = Vec::new();
        let mut outcome = self.write_all(actor, plan, &mut done).await;
        if outcome.is_ok() {
            outcome = self.resolve_arrivals(plan).await;
        }
        // What was written is recorded even when a later step failed, so that the next apply
        // (or prune) of this source knows it.
        done.retain(|(key, _)| !plan.unrecorded.contains(key));
        let mut tx = self.core.store().write().await?;
        tx.record_applied(source, &done, self.core.now()).await?;
        let gone: Vec<ObjectKey> = match &outcome {
            Ok(()) => plan.deletes.iter().map(|(key, _)| key.clone()).collect(),
            Err(_) => Vec::new(),
        };
        tx.forget_applied(&gone).await?;
        let count = |op: Op| plan.changes.iter().filter(|c| c.op == op).count();
        let entry = actor.entry(self.core.now(), "catalog.apply", "source", source).changed(
            None,
            Some(json!({
                "created": count(Op::Create), "updated": count(Op::Update), "unchanged": count(Op::Unchanged),
                "deleted": gone.len(), "failed": outcome.as_ref().err().map(|e| e.message.clone()),
            })),
        );
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        outcome
    }

    async fn write_all(&self, actor: &Actor, plan: &Plan, done: &mut Vec<(ObjectKey, String)>) -> Result<()> {
        let changed = |kind: Kind| plan.declared.iter().filter(move |d| d.key.kind == kind);
        for declared in plan.declared.iter().filter(|d| d.op == Op::Unchanged) {
            done.push((declared.key.clone(), declared.file.clone()));
        }
        let step = |key: &ObjectKey, err: Error| Error {
            message: format!("applying {key} failed, and the objects after it were not applied: {}", err.message),
            ..err
        };

        // Blueprints: new ones first bare, then with their relations (whose targets now all
        // exist), then each in full.
        let new_blueprints: Vec<&Declared> = changed(Kind::Blueprint).filter(|d| d.op == Op::Create).collect();
        let without = |spec: &Value, fields: &[&str]| {
            let mut spec = spec.clone();
            if let Value::Object(map) = &mut spec {
                map.retain(|key, _| !fields.contains(&key.as_str()));
            }
            spec
        };
        const COMPUTED: [&str; 3] = ["mirrorProperties", "aggregationProperties", "calculationProperties"];
        for declared in &new_blueprints {
            let bare = without(&declared.spec, &[&COMPUTED[..], &["relations"]].concat());
            self.catalog.create_blueprint(actor, bare).await.map_err(|e| step(&declared.key, e))?;
        }
        for declared in new_blueprints.iter().filter(|d| d.spec.get("relations").is_some()) {
            let id = declared.key.identifier();
            let related = without(&declared.spec, &COMPUTED);
            self.catalog.update_blueprint(actor, id, related, false).await.map_err(|e| step(&declared.key, e))?;
        }
        // A blueprint's mirror and aggregation properties read other blueprints' relations and
        // properties: each round writes those whose dependencies are in place, until none fail.
        let mut left: Vec<&Declared> = changed(Kind::Blueprint).filter(|d| d.op != Op::Unchanged).collect();
        while !left.is_empty() {
            let mut failed = Vec::new();
            for declared in &left {
                let id = declared.key.identifier();
                match self.catalog.update_blueprint(actor, id, declared.spec.clone(), false).await {
                    Ok(_) => done.push((declared.key.clone(), declared.file.clone())),
                    Err(err) if err.code == ErrorCode::ValidationFailed => failed.push((*declared, err)),
                    Err(err) => return Err(step(&declared.key, err)),
                }
            }
            if failed.len() == left.len() {
                let (declared, err) = failed.swap_remove(0);
                return Err(step(&declared.key, err));
            }
            left = failed.into_iter().map(|(declared, _)| declared).collect();
        }

        for declared in changed(Kind::Scorecard).filter(|d| d.op != Op::Unchanged) {
            let (blueprint, id) = (declared.key.scope().unwrap_or_default(), declared.key.identifier());
            let path = (declared.op == Op::Update).then_some(id);
            self.scorecards
                .put_scorecard(actor, blueprint, path, declared.spec.clone())
                .await
                .map_err(|e| step(&declared.key, e))?;
            done.push((declared.key.clone(), declared.file.clone()));
        }

        self.write_entities(actor, plan, done).await?;

        for declared in changed(Kind::Action).filter(|d| d.op != Op::Unchanged) {
            let path = (declared.op == Op::Update).then_some(declared.key.identifier());
            self.actions.put_action(actor, path, declared.spec.clone()).await.map_err(|e| step(&declared.key, e))?;
            done.push((declared.key.clone(), declared.file.clone()));
        }
        for declared in changed(Kind::Permissions).filter(|d| d.op != Op::Unchanged) {
            let target = declared.key.identifier();
            let written = match declared.key.scope() {
                Some("blueprint") => {
                    self.permissions.put_blueprint_permissions(actor, target, declared.spec.clone()).await.map(drop)
                }
                _ => self.permissions.put_action_permissions(actor, target, declared.spec.clone()).await.map(drop),
            };
            written.map_err(|e| step(&declared.key, e))?;
            done.push((declared.key.clone(), declared.file.clone()));
        }
        for declared in changed(Kind::Initiative).filter(|d| d.op != Op::Unchanged) {
            let path = (declared.op == Op::Update).then_some(declared.key.identifier());
            self.initiatives.put(actor, path, declared.spec.clone()).await.map_err(|e| step(&declared.key, e))?;
            done.push((declared.key.clone(), declared.file.clone()));
        }
        for declared in changed(Kind::Dashboard).filter(|d| d.op != Op::Unchanged) {
            let address = Address::Shared(declared.key.identifier().to_string());
            self.dashboards
                .put(actor, &address, declared.spec.clone(), declared.op == Op::Create)
                .await
                .map_err(|e| step(&declared.key, e))?;
            done.push((declared.key.clone(), declared.file.clone()));
        }

        self.delete_pruned(actor, plan).await
    }

    /// Entities in bulk, by blueprint, each blueprint after those its entities point at. Where
    /// two blueprints point at each other, the relations to what is not written yet are left
    /// out at first and set once everything exists.
    async fn write_entities(&self, actor: &Actor, plan: &Plan, done: &mut Vec<(ObjectKey, String)>) -> Result<()> {
        let pending: Vec<&Declared> =
            plan.declared.iter().filter(|d| d.key.kind == Kind::Entity && d.op != Op::Unchanged).collect();
        let mut unwritten: HashSet<EntityRef> = pending.iter().map(|d| d.key.entity_ref()).collect();
        let mut by_blueprint: BTreeMap<String, Vec<&Declared>> = BTreeMap::new();
        for declared in &pending {
            by_blueprint.entry(declared.key.entity_ref().blueprint).or_default().push(declared);
        }
        let mut deferred: Vec<&Declared> = Vec::new();
        for blueprint in blueprint_order(&by_blueprint) {
            let entities = order_within(&by_blueprint[&blueprint]);
            for chunk in entities.chunks(super::catalog::MAX_BULK) {
                let in_chunk: HashSet<EntityRef> = chunk.iter().map(|d| d.key.entity_ref()).collect();
                let mut documents = Vec::with_capacity(chunk.len());
                for declared in chunk {
                    let later: Vec<&str> = declared
                        .references
                        .iter()
                        .filter(|(_, to)| unwritten.contains(to) && !in_chunk.contains(to))
                        .map(|(via, _)| via.as_str())
                        .collect();
                    let mut spec = declared.spec.clone();
                    if !later.is_empty() {
                        if let Some(Value::Object(relations)) = spec.get_mut("relations") {
                            relations.retain(|name, _| !later.contains(&name.as_str()));
                        }
                        deferred.push(declared);
                    }
                    documents.push(spec);
                }
                self.bulk(actor, &blueprint, chunk, documents).await?;
                for declared in chunk {
                    unwritten.remove(&declared.key.entity_ref());
                    done.push((declared.key.clone(), declared.file.clone()));
                }
            }
        }
        let mut by_blueprint: BTreeMap<String, Vec<&Declared>> = BTreeMap::new();
        for declared in deferred {
            by_blueprint.entry(declared.key.entity_ref().blueprint).or_default().push(declared);
        }
        for (blueprint, entities) in by_blueprint {
            for chunk in entities.chunks(super::catalog::MAX_BULK) {
                let documents = chunk.iter().map(|d| d.spec.clone()).collect();
                self.bulk(actor, &blueprint, chunk, documents).await?;
            }
        }
        Ok(())
    }

    async fn bulk(&self, actor: &Actor, blueprint: &str, chunk: &[&Declared], documents: Vec<Value>) -> Result<()> {
        let results = self
            .catalog
            .bulk_write(actor, blueprint, documents, &BulkOptions { upsert: true, ..BulkOptions::default() })
            .await?;
        match results.into_iter().find_map(|item| item.result.err().map(|e| (item.index, e))) {
            None => Ok(()),
            Some((index, err)) => Err(Error {
                message: format!(
                    "applying {} failed, and the objects after it were not applied: {}",
                    chunk[index].key, err.message
                ),
                ..err
            }),
        }
    }

    /// References other entities kept as unresolved become relations (or owning teams) once
    /// their target arrives: here, the entities this apply created.
    async fn resolve_arrivals(&self, plan: &Plan) -> Result<()> {
        let arrived: HashSet<String> = plan
            .declared
            .iter()
            .filter(|d| d.key.kind == Kind::Entity && d.op == Op::Create)
            .filter_map(|d| backstage::reference_of(&d.key.entity_ref()))
            .collect();
        if arrived.is_empty() {
            return Ok(());
        }
        let system = Actor::system("portolan", Origin::Automation);
        let waiting = json!({"combinator": "and", "rules": [{"property": "unresolved", "operator": "isNotEmpty"}]});
        for (_, blueprint_id) in backstage::KINDS {
            let Ok(record) = self.catalog.get_blueprint(blueprint_id).await else { continue };
            if !record.blueprint.schema.properties.contains_key("unresolved") {
                continue;
            }
            let mut cursor = None;
            loop {
                let request = SearchRequest {
                    query: Some(waiting.clone()),
                    limit: Some(1000),
                    cursor,
                    ..SearchRequest::default()
                };
                let page = self.search.search(&system, Some(blueprint_id), request).await?;
                for entity in &page.entities {
                    if let Some(change) = resolved(&record.blueprint, entity, &arrived) {
                        let mode = WriteMode::Patch;
                        self.catalog
                            .write_entity(&system, blueprint_id, Some(&entity.identifier), change, mode, None)
                            .await?;
                    }
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// Deletes what the source no longer declares: referrers before what they point at.
    async fn delete_pruned(&self, actor: &Actor, plan: &Plan) -> Result<()> {
        let of = |kind: Kind| plan.deletes.iter().map(|(k, _)| k).filter(move |k| k.kind == kind);
        for key in of(Kind::Dashboard) {
            self.dashboards.delete(actor, &Address::Shared(key.identifier().to_string())).await?;
        }
        for key in of(Kind::Initiative) {
            self.initiatives.delete(actor, key.identifier()).await?;
        }
        for key in of(Kind::Action) {
            self.actions.delete_action(actor, key.identifier()).await?;
        }
        let mut entities: Vec<&ObjectKey> = of(Kind::Entity).collect();
        // Each round deletes what nothing left points at; the plan checked that nothing else does.
        while !entities.is_empty() {
            let mut blocked = Vec::new();
            for key in &entities {
                let target = key.entity_ref();
                match self.catalog.delete_entity(actor, &target.blueprint, &target.identifier, false, None).await {
                    Ok(_) => {}
                    Err(e) if e.code == ErrorCode::NotFound => {}
                    Err(e) if e.code == ErrorCode::HasDependents => blocked.push((*key, e)),
                    Err(e) => return Err(e),
                }
            }
            if blocked.len() == entities.len() {
                let (key, err) = blocked.swap_remove(0);
                return Err(Error { message: format!("pruning {key} failed: {}", err.message), ..err });
            }
            entities = blocked.into_iter().map(|(key, _)| key).collect();
        }
        for key in of(Kind::Scorecard) {
            self.scorecards.delete_scorecard(actor, key.scope().unwrap_or_default(), key.identifier()).await?;
        }
        for key in of(Kind::Blueprint) {
            self.catalog.delete_blueprint(actor, key.identifier(), false).await?;
        }
        // Pruned permissions are only forgotten: the blueprint or action keeps its grants.
        Ok(())
    }

    /// Every catalog-as-code source, with its object count and last apply.
    pub async fn sources(&self, actor: &Actor) -> Result<Vec<SourceSummary>> {
        let mut tx = self.core.store().read().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        Ok(tx.sources().await?)
    }

    /// Which source (and file) declares an entity, if any.
    pub async fn entity_source(&self, entity: &EntityRef) -> Result<Option<portolan_store::AppliedObject>> {
        Ok(self.core.store().read().await?.applied_object(&ObjectKey::entity(entity)).await?)
    }

    /// The catalog as documents: the given blueprints (or every user blueprint, and the teams)
    /// with their scorecards, entities, permissions and actions.
    pub async fn export(&self, actor: &Actor, only: &[String]) -> Result<Vec<Value>> {
        let mut tx = self.core.store().read().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        let all = tx.blueprints().await?;
        for wanted in only {
            if !all.iter().any(|r| &r.blueprint.identifier == wanted) {
                return Err(Error::not_found(format!("blueprint '{wanted}'")));
            }
        }
        let chosen: Vec<_> = all
            .iter()
            .map(|r| &r.blueprint)
            .filter(|b| match only.is_empty() {
                true => !system::is_system(&b.identifier) || b.identifier == system::TEAM,
                false => only.contains(&b.identifier),
            })
            .collect();
        let mut documents = Vec::new();
        for blueprint in &chosen {
            let id = &blueprint.identifier;
            if !system::is_system(id) {
                documents.push(to_document(&ObjectKey::new(Kind::Blueprint, id.as_str()), &to_json(*blueprint)));
                if let Some(stored) = tx.permissions(&blueprint_resource(id)).await? {
                    documents.push(to_document(&ObjectKey::new(Kind::Permissions, format!("blueprint/{id}")), &stored));
                }
            }
            for record in tx.scorecards(id).await? {
                let key = ObjectKey::new(Kind::Scorecard, format!("{id}/{}", record.scorecard.identifier));
                documents.push(to_document(&key, &scorecard_spec(id, &record.scorecard)));
            }
            let mut after: Option<String> = None;
            loop {
                let page = tx.list_entities(id, after.as_deref(), 1000).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.identifier.clone());
                for entity in &page {
                    let key = ObjectKey::entity(&entity.entity_ref());
                    documents
                        .push(to_document(&key, &entity_spec(blueprint, &entity.identifier, &stored_parts(entity))));
                }
            }
        }
        let chosen_ids: HashSet<&str> = chosen.iter().map(|b| b.identifier.as_str()).collect();
        for record in tx.actions().await? {
            let action = &record.action;
            let included = only.is_empty() || action.blueprint().is_some_and(|b| chosen_ids.contains(b));
            if !included {
                continue;
            }
            documents.push(to_document(&ObjectKey::new(Kind::Action, action.identifier.as_str()), &to_json(action)));
            if let Some(stored) = tx.permissions(&action_resource(&action.identifier)).await? {
                let key = ObjectKey::new(Kind::Permissions, format!("action/{}", action.identifier));
                documents.push(to_document(&key, &stored));
            }
        }
        drop(tx);
        for record in self.initiatives.records().await? {
            if only.is_empty() || only.contains(&record.definition.blueprint) {
                let key = ObjectKey::new(Kind::Initiative, record.definition.identifier.as_str());
                documents.push(to_document(&key, &to_json(&record.definition)));
            }
        }
        if only.is_empty() {
            for dashboard in self.dashboards.shared().await? {
                let key = ObjectKey::new(Kind::Dashboard, dashboard.identifier.as_str());
                documents.push(to_document(&key, &to_json(&dashboard)));
            }
        }
        Ok(documents)
    }
}

/// The patch that turns an entity's unresolved references to arrived entities into relations
/// and teams; none when nothing it waits for arrived.
fn resolved(blueprint: &Blueprint, entity: &Entity, arrived: &HashSet<String>) -> Option<Value> {
    let unresolved = entity.properties.get("unresolved")?.as_object()?;
    let mut left = serde_json::Map::new();
    let mut team = entity.team.clone();
    let mut relations = serde_json::Map::new();
    let mut changed = false;
    for (via, refs) in unresolved {
        let mut waiting = Vec::new();
        for text in refs.as_array().into_iter().flatten().filter_map(Value::as_str) {
            let target = backstage::BackstageRef::parse(text, None, "default").ok().and_then(|r| r.entity());
            let Some(target) = target.filter(|_| arrived.contains(text)) else {
                waiting.push(Value::from(text));
                continue;
            };
            changed = true;
            if via == "$team" {
                team.push(target.identifier);
            } else if blueprint.relations.get(via).is_some_and(|r| r.many) {
                let current = relations
                    .entry(via.clone())
                    .or_insert_with(|| entity.relations.get(via).cloned().unwrap_or(json!([])));
                if let Value::Array(items) = current {
                    items.push(Value::from(target.identifier));
                }
            } else {
                relations.insert(via.clone(), Value::from(target.identifier));
            }
        }
        if !waiting.is_empty() {
            left.insert(via.clone(), Value::Array(waiting));
        }
    }
    let still = if left.is_empty() { Value::Null } else { Value::Object(left) };
    changed.then(|| json!({"team": team, "relations": relations, "properties": {"unresolved": still}}))
}

/// The refusal of an apply whose documents have problems.
fn problems_error(problems: Vec<Problem>) -> Error {
    let details = problems.iter().map(|p| json!(p)).collect();
    Error::new(
        ErrorCode::ValidationFailed,
        format!("{} problem(s) in the documents; nothing was applied", problems.len()),
    )
    .with_details(details)
}

fn check_source_name(source: &str) -> Result<()> {
    if source.trim().is_empty() || source.len() > 500 || source.chars().any(char::is_control) {
        return Err(Error::invalid_at("/source", "source must be a name of 1 to 500 printable characters"));
    }
    Ok(())
}

/// Blueprints whose entities point at no other pending blueprint first; `_team` before all.
fn blueprint_order(by_blueprint: &BTreeMap<String, Vec<&Declared>>) -> Vec<String> {
    let mut needs: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (blueprint, entities) in by_blueprint {
        let targets = needs.entry(blueprint.as_str()).or_default();
        for declared in entities {
            for (_, to) in &declared.references {
                if to.blueprint != *blueprint && by_blueprint.contains_key(&to.blueprint) {
                    targets.insert(to.blueprint.as_str());
                }
            }
        }
    }
    let mut order: Vec<String> = Vec::new();
    let mut left: Vec<&str> = by_blueprint.keys().map(String::as_str).collect();
    left.sort_by_key(|b| (*b != system::TEAM, *b));
    while !left.is_empty() {
        let ready = left.iter().position(|b| needs[b].iter().all(|t| order.iter().any(|o| o == t))).unwrap_or(0); // a circle: take the first, its pointers to the rest are deferred
        order.push(left.remove(ready).to_string());
    }
    order
}

/// Entities of one blueprint, each after those of the same blueprint it points at.
fn order_within<'a>(entities: &[&'a Declared]) -> Vec<&'a Declared> {
    let index: HashMap<EntityRef, usize> = entities.iter().enumerate().map(|(i, d)| (d.key.entity_ref(), i)).collect();
    let mut placed = vec![false; entities.len()];
    let mut order = Vec::with_capacity(entities.len());
    for start in 0..entities.len() {
        // Depth-first, without recursion: a stack of (entity, next reference to look at).
        let mut stack = vec![(start, 0usize)];
        while let Some((at, next)) = stack.pop() {
            if placed[at] {
                continue;
            }
            let references = &entities[at].references;
            match references[next.min(references.len())..].iter().position(|(_, to)| {
                index.get(to).is_some_and(|&j| !placed[j] && !stack.iter().any(|(s, _)| *s == j) && j != at)
            }) {
                Some(offset) => {
                    let j = index[&references[next + offset].1];
                    stack.push((at, next + offset + 1));
                    stack.push((j, 0));
                }
                None => {
                    placed[at] = true;
                    order.push(entities[at]);
                }
            }
        }
    }
    order
}
