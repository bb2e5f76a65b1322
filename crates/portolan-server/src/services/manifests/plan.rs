//! The first half of an apply: every document checked against the catalog it would make (the
//! stored one with the declared blueprints laid over it), and the plan of what would change.
//! Nothing here writes.

use std::collections::{BTreeMap, HashMap, HashSet};

use portolan_model::action::Action;
use portolan_model::dashboard::Dashboard;
use portolan_model::entity::ValidEntity;
use portolan_model::initiative::Initiative;
use portolan_model::manifest::backstage::{self, Link};
use portolan_model::manifest::{Difference, Kind, Manifest, ObjectKey, diff, parse_document};
use portolan_model::permission::{ActionPermissions, BlueprintPermissions};
use portolan_model::query::{QueryContext, Scope};
use portolan_model::scorecard::Scorecard;
use portolan_model::{Blueprint, Entity, EntityInput, EntityRef, FieldErrors, system};
use portolan_store::{AppliedObject, Tx};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{ApplyRequest, Manifests};
use crate::error::Result;
use crate::services::core::{strip_server_fields, to_json};
use crate::services::dashboards::stored_shared;
use crate::services::initiatives::stored_initiative;
use crate::services::permissions::{action_resource, blueprint_resource};

/// One problem, located in the file that holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Index of the document in the request; none for an object the files no longer hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    pub file: String,
    pub line: u32,
    /// JSON pointer into the document.
    pub path: String,
    pub message: String,
}

impl Problem {
    /// A problem at `path` of the request's document `index`.
    pub(super) fn in_document(index: usize, sourced: &super::SourcedDocument, path: &str, message: String) -> Self {
        Problem {
            document: Some(index),
            file: sourced.file.clone(),
            line: sourced.line,
            path: path.to_string(),
            message,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Create,
    Update,
    Unchanged,
    Delete,
}

/// What an apply does to one object.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub op: Op,
    pub kind: Kind,
    pub name: String,
    /// The file that declares it (for a delete, the file that last did).
    pub file: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<Difference>,
    /// Not declared by the documents but needed by them (the ready Backstage blueprints).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub implied: bool,
}

/// One declared object, checked.
pub(super) struct Declared {
    pub key: ObjectKey,
    pub file: String,
    /// The document to send to the service that stores it.
    pub spec: Value,
    /// Entities only: what it points at, and through which relation (or `$team`, `$property:…`).
    pub references: Vec<(String, EntityRef)>,
    pub op: Op,
}

/// The checked documents and what applying them changes.
pub(super) struct Plan {
    pub declared: Vec<Declared>,
    /// Objects the source applied before and no longer declares (with `prune`), with their file.
    pub deletes: Vec<(ObjectKey, String)>,
    pub changes: Vec<Change>,
    /// Declared here rather than by the source (the ready Backstage blueprints): not recorded.
    pub unrecorded: HashSet<ObjectKey>,
}

impl Manifests {
    pub(super) async fn plan(
        &self,
        tx: &mut dyn Tx,
        request: &ApplyRequest,
        implied: &HashSet<ObjectKey>,
    ) -> Result<std::result::Result<Plan, Vec<Problem>>> {
        let mut problems = Vec::new();
        let mut manifests: Vec<(usize, Manifest)> = Vec::new();
        let mut first_seen: HashMap<ObjectKey, usize> = HashMap::new();
        let mut links: HashMap<usize, Vec<Link>> = HashMap::new();
        for (index, sourced) in request.documents.iter().enumerate() {
            let problem = |path: &str, message: String| Problem::in_document(index, sourced, path, message);
            let parsed = match backstage::is_descriptor(&sourced.document) {
                true => backstage::translate(&sourced.document).map(|t| {
                    links.insert(index, t.links);
                    t.manifest
                }),
                false => parse_document(&sourced.document),
            };
            match parsed {
                Err(errors) => problems.extend(errors.0.into_iter().map(|e| problem(&e.path, e.message))),
                Ok(manifest) => match first_seen.get(&manifest.key) {
                    Some(&first) => {
                        let other = &request.documents[first];
                        problems.push(problem(
                            "",
                            format!("{} is also defined in {} line {}", manifest.key, other.file, other.line),
                        ));
                    }
                    None => {
                        first_seen.insert(manifest.key.clone(), index);
                        manifests.push((index, manifest));
                    }
                },
            }
        }

        let applied = tx.applied_objects(None).await?;
        let stored_blueprints: BTreeMap<String, Blueprint> =
            tx.blueprints().await?.into_iter().map(|r| (r.blueprint.identifier.clone(), r.blueprint)).collect();
        let stored_actions: HashMap<String, Action> =
            tx.actions().await?.into_iter().map(|r| (r.action.identifier.clone(), r.action)).collect();
        // Descriptors need the ready Backstage blueprints (and the team and user extensions):
        // those missing are declared here, and not recorded under the source.
        let mut unrecorded = HashSet::new();
        if !links.is_empty() {
            let system = |id: &str| stored_blueprints.get(id).cloned();
            let (Some(team), Some(user)) = (system(system::TEAM), system(system::USER)) else {
                return Err(crate::error::Error::new(
                    crate::error::ErrorCode::Internal,
                    "the system blueprints are missing",
                ));
            };
            for blueprint in backstage::blueprints(&team, &user) {
                let key = ObjectKey::new(Kind::Blueprint, blueprint.identifier.as_str());
                let ready = stored_blueprints.get(&blueprint.identifier).is_some_and(|stored| {
                    blueprint.schema.properties.keys().all(|p| stored.schema.properties.contains_key(p))
                        && blueprint.relations.keys().all(|r| stored.relations.contains_key(r))
                });
                if !ready && !first_seen.contains_key(&key) {
                    manifests.push((usize::MAX, Manifest { key: key.clone(), spec: to_json(&blueprint) }));
                    unrecorded.insert(key);
                }
            }
        }
        // A descriptor's reference to what is not in the catalog (yet) does not block the import:
        // it is kept under `unresolved`, and becomes a relation once its target exists.
        let linked = links.values().flatten().map(|link| &link.target);
        let present =
            stored_among(tx, &stored_blueprints, linked.filter(|t| !first_seen.contains_key(&ObjectKey::entity(t))))
                .await?;
        for (index, manifest) in manifests.iter_mut() {
            for link in links.get(index).into_iter().flatten() {
                if !first_seen.contains_key(&ObjectKey::entity(&link.target)) && !present.contains(&link.target) {
                    mark_unresolved(&mut manifest.spec, link);
                }
            }
        }

        let declared_keys: HashSet<&ObjectKey> = manifests.iter().map(|(_, m)| &m.key).collect();
        let deletes: Vec<(ObjectKey, String)> = if request.prune {
            let mut gone: Vec<(ObjectKey, String)> = applied
                .iter()
                .filter(|(key, object)| object.source == request.source && !declared_keys.contains(key))
                .map(|(key, object)| (key.clone(), object.file.clone()))
                .collect();
            gone.sort();
            gone
        } else {
            Vec::new()
        };
        let deleted: HashSet<&ObjectKey> = deletes.iter().map(|(key, _)| key).collect();

        // The blueprints as they will be: stored, minus pruned, with the declared laid over.
        let mut blueprints = stored_blueprints.clone();
        blueprints.retain(|id, _| !deleted.contains(&ObjectKey::new(Kind::Blueprint, id.as_str())));
        let mut parsed_blueprints = HashMap::new();
        for (index, manifest) in manifests.iter().filter(|(_, m)| m.key.kind == Kind::Blueprint) {
            let mut spec = manifest.spec.clone();
            strip_server_fields(&mut spec);
            match Blueprint::from_json(spec) {
                Ok(blueprint) => {
                    blueprints.insert(blueprint.identifier.clone(), blueprint.clone());
                    parsed_blueprints.insert(manifest.key.name.clone(), blueprint);
                }
                Err(errors) => problems.extend(located(request, *index, errors)),
            }
        }
        let blueprint_list: Vec<Blueprint> = blueprints.values().cloned().collect();
        let mut actions = stored_actions.clone();
        actions.retain(|id, _| !deleted.contains(&ObjectKey::new(Kind::Action, id.as_str())));

        // Entities: validated against their blueprint-to-be, references checked against what
        // exists and what is declared.
        let declared_entities: HashSet<EntityRef> =
            manifests.iter().filter(|(_, m)| m.key.kind == Kind::Entity).map(|(_, m)| m.key.entity_ref()).collect();
        let mut by_blueprint: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, m) in manifests.iter().filter(|(_, m)| m.key.kind == Kind::Entity) {
            let r = m.key.entity_ref();
            by_blueprint.entry(r.blueprint).or_default().push(r.identifier);
        }
        let mut stored_entities: HashMap<EntityRef, Entity> = HashMap::new();
        for (blueprint, identifiers) in &by_blueprint {
            if stored_blueprints.contains_key(blueprint) {
                for entity in tx.entities(blueprint, identifiers).await? {
                    stored_entities.insert(entity.entity_ref(), entity);
                }
            }
        }

        let mut declared = Vec::new();
        let mut changes = Vec::new();
        let mut pending_references: Vec<(usize, EntityRef, String)> = Vec::new();
        for (index, manifest) in &manifests {
            let index = *index;
            let (file, _) = origin(request, index);
            let key = &manifest.key;
            if let Some(owner) = applied.get(key).filter(|o| o.source != request.source) {
                problems.push(owned_elsewhere(request, index, key, owner));
                continue;
            }
            let mut references = Vec::new();
            let checked: std::result::Result<(Value, Option<Value>), FieldErrors> = match key.kind {
                Kind::Blueprint => match parsed_blueprints.get(&key.name) {
                    None => continue,
                    Some(blueprint) => {
                        let allowed = match unrecorded.contains(key) {
                            true => system::check_system_change(blueprint),
                            false => system::check_user_blueprint_identifier(&blueprint.identifier)
                                .map_err(|m| FieldErrors(vec![portolan_model::FieldError::new("/identifier", m)])),
                        };
                        allowed
                            .and_then(|()| blueprint.validate(|target| blueprints.contains_key(target)))
                            .and_then(|()| {
                                let lookup = |id: &str| blueprints.get(id).cloned();
                                portolan_model::computed::validate(blueprint, &lookup)
                            })
                            .map(|()| (to_json(blueprint), stored_blueprints.get(&blueprint.identifier).map(to_json)))
                    }
                },
                Kind::Entity => {
                    let target = key.entity_ref();
                    match blueprints.get(&target.blueprint) {
                        None => Err(unknown_blueprint(&target.blueprint)),
                        Some(blueprint) => {
                            let stored = stored_entities.get(&target);
                            check_entity(&manifest.spec, blueprint, stored.is_some()).map(|valid| {
                                for reference in &valid.references {
                                    let to = EntityRef {
                                        blueprint: reference.target_blueprint.clone(),
                                        identifier: reference.target.clone(),
                                    };
                                    pending_references.push((index, to.clone(), reference.path.clone()));
                                    references.push((reference.via.clone(), to));
                                }
                                (
                                    entity_spec(blueprint, &target.identifier, &valid_parts(&valid)),
                                    stored.map(|e| entity_spec(blueprint, &e.identifier, &stored_parts(e))),
                                )
                            })
                        }
                    }
                }
                Kind::Scorecard => {
                    let blueprint_id = key.scope().unwrap_or_default();
                    if blueprints.contains_key(blueprint_id) {
                        let stored = match stored_blueprints.contains_key(blueprint_id) {
                            true => tx.scorecards(blueprint_id).await?,
                            false => Vec::new(),
                        };
                        let mut spec = manifest.spec.clone();
                        strip_server_fields(&mut spec);
                        if let Value::Object(map) = &mut spec {
                            map.remove("blueprint");
                        }
                        let context = QueryContext { now: self.core.now(), ..QueryContext::default() };
                        Scorecard::from_json(spec).and_then(|scorecard| {
                            scorecard.compile(&Scope::new(&blueprint_list, Some(blueprint_id)), &context)?;
                            let current = stored
                                .iter()
                                .find(|r| r.scorecard.identifier == scorecard.identifier)
                                .map(|r| scorecard_spec(blueprint_id, &r.scorecard));
                            Ok((scorecard_spec(blueprint_id, &scorecard), current))
                        })
                    } else {
                        Err(unknown_blueprint(blueprint_id))
                    }
                }
                Kind::Action => {
                    let mut spec = manifest.spec.clone();
                    strip_server_fields(&mut spec);
                    Action::from_json(spec).and_then(|action| {
                        action.validate(&blueprint_list)?;
                        let current = stored_actions.get(&action.identifier).map(to_json);
                        actions.insert(action.identifier.clone(), action.clone());
                        Ok((to_json(&action), current))
                    })
                }
                // Its goal, rules and fixes are checked against the catalog when it is applied.
                Kind::Initiative => {
                    let mut spec = manifest.spec.clone();
                    strip_server_fields(&mut spec);
                    match Initiative::from_json(spec) {
                        Ok(initiative) => {
                            let current = stored_initiative(tx, &initiative.identifier).await?;
                            Ok((to_json(&initiative), current.map(|c| to_json(&c))))
                        }
                        Err(errors) => Err(errors),
                    }
                }
                // Expanded before the plan.
                Kind::Template => continue,
                Kind::Dashboard => {
                    let mut spec = manifest.spec.clone();
                    strip_server_fields(&mut spec);
                    match Dashboard::from_json(spec).and_then(|d| d.check().map(|()| d)) {
                        Ok(dashboard) => {
                            let current = stored_shared(tx, &dashboard.identifier).await?;
                            Ok((to_json(&dashboard), current.map(|c| to_json(&c))))
                        }
                        Err(errors) => Err(errors),
                    }
                }
                Kind::Permissions => {
                    let target = key.identifier();
                    match key.scope() {
                        Some("blueprint") if !blueprints.contains_key(target) => Err(unknown_blueprint(target)),
                        Some("blueprint") => match BlueprintPermissions::from_json(manifest.spec.clone()) {
                            Err(errors) => Err(errors),
                            Ok(permissions) => {
                                let stored = tx.permissions(&blueprint_resource(target)).await?;
                                let current = stored.map(|doc| {
                                    BlueprintPermissions::from_json(doc).map(|p| to_json(&p)).unwrap_or(Value::Null)
                                });
                                Ok((to_json(&permissions), current))
                            }
                        },
                        _ => match ActionPermissions::from_json(manifest.spec.clone()) {
                            Err(errors) => Err(errors),
                            Ok(_)
                                if !actions.contains_key(target)
                                    && !declared_keys.contains(&ObjectKey::new(Kind::Action, target)) =>
                            {
                                Err(FieldErrors(vec![portolan_model::FieldError::new(
                                    "/action",
                                    format!("action '{target}' is neither stored nor declared"),
                                )]))
                            }
                            Ok(permissions) => {
                                let stored = tx.permissions(&action_resource(target)).await?;
                                let current = stored.map(|doc| {
                                    ActionPermissions::from_json(doc).map(|p| to_json(&p)).unwrap_or(Value::Null)
                                });
                                Ok((to_json(&permissions), current))
                            }
                        },
                    }
                }
            };
            let (desired, current) = match checked {
                Ok(pair) => pair,
                Err(errors) => {
                    problems.extend(located(request, index, errors));
                    continue;
                }
            };
            let (op, differences) = match &current {
                None => (Op::Create, Vec::new()),
                Some(current) if *current == desired => (Op::Unchanged, Vec::new()),
                Some(current) => (Op::Update, diff(current, &desired)),
            };
            let implied = unrecorded.contains(key) || implied.contains(key);
            changes.push(Change {
                op,
                kind: key.kind,
                name: key.name.clone(),
                file: file.clone(),
                diff: differences,
                implied,
            });
            declared.push(Declared { key: key.clone(), file, spec: manifest.spec.clone(), references, op });
        }

        // A reference must name an entity that exists (and is not being pruned) or is declared.
        let deleted_entities: HashSet<EntityRef> =
            deletes.iter().filter(|(k, _)| k.kind == Kind::Entity).map(|(k, _)| k.entity_ref()).collect();
        let unresolved: Vec<(usize, EntityRef, String)> =
            pending_references.into_iter().filter(|(_, target, _)| !declared_entities.contains(target)).collect();
        let existing = stored_among(tx, &stored_blueprints, unresolved.iter().map(|(_, target, _)| target)).await?;
        for (index, target, path) in unresolved {
            if !existing.contains(&target) || deleted_entities.contains(&target) {
                let why = if deleted_entities.contains(&target) {
                    "is pruned by this apply"
                } else {
                    "is neither stored nor declared"
                };
                problems.extend(located(
                    request,
                    index,
                    FieldErrors(vec![portolan_model::FieldError::new(
                        path,
                        format!("'{}' of blueprint '{}' {why}", target.identifier, target.blueprint),
                    )]),
                ));
            }
        }

        // What is pruned must not be needed by what stays.
        for (key, file) in &deletes {
            let still_used = match key.kind {
                Kind::Entity => {
                    let target = key.entity_ref();
                    tx.referrers(&target, 50)
                        .await?
                        .into_iter()
                        .map(|r| r.source)
                        .find(|source| !deleted_entities.contains(source))
                        .map(|source| {
                            format!("entity '{}' of '{}' still refers to it", source.identifier, source.blueprint)
                        })
                }
                Kind::Blueprint => {
                    let identifier = key.identifier();
                    let pruned_all = tx.count_entities(identifier).await?
                        <= deleted_entities.iter().filter(|r| r.blueprint == identifier).count() as u64;
                    let declared_here = declared_entities.iter().any(|r| r.blueprint == identifier);
                    (!pruned_all || declared_here).then(|| "it still has entities that are not pruned".to_string())
                }
                _ => None,
            };
            if let Some(why) = still_used {
                problems.push(Problem {
                    document: None,
                    file: file.clone(),
                    line: 0,
                    path: String::new(),
                    message: format!("{key} was removed from the files but cannot be pruned: {why}"),
                });
            }
        }
        if !problems.is_empty() {
            problems.sort_by(|a, b| (&a.file, a.line, a.document).cmp(&(&b.file, b.line, b.document)));
            return Ok(Err(problems));
        }
        for (key, file) in &deletes {
            changes.push(Change {
                op: Op::Delete,
                kind: key.kind,
                name: key.name.clone(),
                file: file.clone(),
                diff: Vec::new(),
                implied: false,
            });
        }
        unrecorded.extend(implied.iter().cloned());
        Ok(Ok(Plan { declared, deletes, changes, unrecorded }))
    }
}

/// Which of these entities are stored (looked up a thousand at a time, by blueprint).
async fn stored_among<'a>(
    tx: &mut dyn Tx,
    blueprints: &BTreeMap<String, Blueprint>,
    targets: impl Iterator<Item = &'a EntityRef>,
) -> Result<HashSet<EntityRef>> {
    let mut by_blueprint: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for target in targets.filter(|t| blueprints.contains_key(&t.blueprint)) {
        by_blueprint.entry(target.blueprint.as_str()).or_default().push(target.identifier.clone());
    }
    let mut stored = HashSet::new();
    for (blueprint, identifiers) in by_blueprint {
        for chunk in identifiers.chunks(1000) {
            for identifier in tx.existing(blueprint, chunk).await? {
                stored.insert(EntityRef { blueprint: blueprint.to_string(), identifier });
            }
        }
    }
    Ok(stored)
}

/// The file and line of a document; the ready Backstage blueprints have none.
fn origin(request: &ApplyRequest, index: usize) -> (String, u32) {
    match request.documents.get(index) {
        Some(sourced) => (sourced.file.clone(), sourced.line),
        None => ("(the ready Backstage blueprints)".into(), 0),
    }
}

/// Problems of a document's spec; a descriptor's are reported at the entity it became.
fn located(request: &ApplyRequest, index: usize, errors: FieldErrors) -> Vec<Problem> {
    let (file, line) = origin(request, index);
    let prefix = match request.documents.get(index) {
        Some(sourced) if !backstage::is_descriptor(&sourced.document) => "/spec",
        _ => "",
    };
    errors
        .0
        .into_iter()
        .map(|e| Problem {
            document: request.documents.get(index).map(|_| index),
            file: file.clone(),
            line,
            path: format!("{prefix}{}", e.path),
            message: e.message,
        })
        .collect()
}

fn owned_elsewhere(request: &ApplyRequest, index: usize, key: &ObjectKey, owner: &AppliedObject) -> Problem {
    let (file, line) = origin(request, index);
    Problem {
        document: Some(index),
        file,
        line,
        path: String::new(),
        message: format!(
            "{key} is defined by source '{}' ({}); change it there, or remove it there first",
            owner.source, owner.file
        ),
    }
}

fn unknown_blueprint(identifier: &str) -> FieldErrors {
    FieldErrors(vec![portolan_model::FieldError::new(
        "/blueprint",
        format!("blueprint '{identifier}' is neither stored nor declared"),
    )])
}

/// Takes a reference out of an entity document and keeps it (as `kind:namespace/name`) under
/// `properties.unresolved.<relation>`.
fn mark_unresolved(spec: &mut Value, link: &Link) {
    let id = Value::from(link.target.identifier.as_str());
    if link.via == "$team" {
        if let Some(Value::Array(teams)) = spec.get_mut("team") {
            teams.retain(|t| *t != id);
        }
    } else if let Some(Value::Object(relations)) = spec.get_mut("relations") {
        match relations.get_mut(&link.via) {
            Some(Value::Array(targets)) => targets.retain(|t| *t != id),
            Some(single) if *single == id => *single = Value::Null,
            _ => {}
        }
        relations.retain(|_, v| !v.is_null() && *v != json!([]));
    }
    if let Some(Value::Object(properties)) = spec.get_mut("properties") {
        let unresolved = properties.entry("unresolved").or_insert_with(|| json!({}));
        if let Some(Value::Array(texts)) =
            unresolved.as_object_mut().map(|u| u.entry(link.via.clone()).or_insert_with(|| json!([])))
        {
            texts.push(json!(backstage::reference_of(&link.target).unwrap_or_else(|| link.text.clone())));
        }
    }
}

fn check_entity(spec: &Value, blueprint: &Blueprint, stored: bool) -> std::result::Result<ValidEntity, FieldErrors> {
    let mut spec = spec.clone();
    strip_server_fields(&mut spec);
    let input = EntityInput::from_json(spec)?;
    if stored { input.validate_stored(blueprint) } else { input.validate(blueprint) }
}

/// The fields of an entity that a document sets.
pub(super) struct EntityParts<'a> {
    pub title: Option<&'a str>,
    pub icon: Option<&'a str>,
    pub team: &'a [String],
    pub properties: &'a Map<String, Value>,
    pub relations: &'a Map<String, Value>,
}

fn valid_parts(valid: &ValidEntity) -> EntityParts<'_> {
    EntityParts {
        title: valid.title.as_deref(),
        icon: valid.icon.as_deref(),
        team: &valid.team,
        properties: &valid.properties,
        relations: &valid.relations,
    }
}

pub(super) fn stored_parts(entity: &Entity) -> EntityParts<'_> {
    EntityParts {
        title: entity.title.as_deref(),
        icon: entity.icon.as_deref(),
        team: &entity.team,
        properties: &entity.properties,
        relations: &entity.relations,
    }
}

/// An entity as a document declares it: what the server computes is left out, and so are
/// empty fields, so that the stored and the declared versions compare equal when they mean
/// the same.
pub(super) fn entity_spec(blueprint: &Blueprint, identifier: &str, parts: &EntityParts<'_>) -> Value {
    let mut spec = Map::new();
    spec.insert("blueprint".into(), json!(blueprint.identifier));
    spec.insert("identifier".into(), json!(identifier));
    if let Some(title) = parts.title {
        spec.insert("title".into(), json!(title));
    }
    if let Some(icon) = parts.icon {
        spec.insert("icon".into(), json!(icon));
    }
    if !parts.team.is_empty() {
        spec.insert("team".into(), json!(parts.team));
    }
    let properties: Map<String, Value> = parts
        .properties
        .iter()
        .filter(|(name, value)| !blueprint.is_computed(name) && !value.is_null())
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if !properties.is_empty() {
        spec.insert("properties".into(), Value::Object(properties));
    }
    let relations: Map<String, Value> =
        parts.relations.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
    if !relations.is_empty() {
        spec.insert("relations".into(), Value::Object(relations));
    }
    Value::Object(spec)
}

pub(super) fn scorecard_spec(blueprint: &str, scorecard: &Scorecard) -> Value {
    let mut spec = Map::new();
    spec.insert("blueprint".into(), json!(blueprint));
    if let Value::Object(fields) = to_json(scorecard) {
        spec.extend(fields);
    }
    Value::Object(spec)
}
