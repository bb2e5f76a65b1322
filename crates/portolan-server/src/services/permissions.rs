//! The one authorisation path. Services ask here before every read and write; decisions come
//! from [`portolan_model::permission`], and a narrowed decision becomes a query that the store
//! applies, so lists, searches, counts, facets and single reads all filter the same way.

use std::collections::{HashMap, HashSet};

use portolan_model::entity::ValidEntity;
use portolan_model::permission::{Access, ActionOp, ActionPermissions, BlueprintPermissions, EntityOp, User};
use portolan_model::query::{self, Query, QueryContext, Scope};
use portolan_model::run::Run;
use portolan_model::{Blueprint, Entity, EntityRef, system};
use portolan_store::query_sql::SearchPlan;
use portolan_store::{ChangeEvent, Tx};
use serde_json::Value;

use super::actor::{Actor, Principal};
use super::core::{Core, all_blueprints, load_action, load_blueprint, lock_blueprint, to_json};
use crate::error::{Error, Result};

const RUN_TOKEN_LIMIT: &str = "a run token may only report on its run and change the catalog for it";

pub(crate) fn blueprint_resource(blueprint: &str) -> String {
    format!("blueprint:{blueprint}")
}

pub(crate) fn action_resource(action: &str) -> String {
    format!("action:{action}")
}

/// What a user may administer: everything, or some blueprints (with their scorecards, actions
/// and permissions).
#[derive(Debug, Default, Clone)]
pub struct Managed {
    pub all: bool,
    pub blueprints: HashSet<String>,
}

impl Managed {
    pub fn anything(&self) -> bool {
        self.all || !self.blueprints.is_empty()
    }

    pub fn blueprint(&self, identifier: &str) -> bool {
        self.all || self.blueprints.contains(identifier)
    }
}

/// What a user-relative query value (`{"context": "userTeams"}`) reads.
pub(crate) fn user_context(now: portolan_model::Millis, user: Option<&User>) -> QueryContext {
    QueryContext {
        now,
        user: user.map(|u| u.id.clone()),
        user_teams: user.map(|u| u.teams.clone()).unwrap_or_default(),
    }
}

/// Every authorisation decision: grants of blueprints and actions, read filters, run visibility.
#[derive(Clone)]
pub struct Permissions {
    core: Core,
}

impl Permissions {
    pub fn new(core: Core) -> Self {
        Self { core }
    }

    pub(crate) async fn blueprint_permissions(&self, tx: &mut dyn Tx, blueprint: &str) -> Result<BlueprintPermissions> {
        match tx.permissions(&blueprint_resource(blueprint)).await? {
            None => Ok(BlueprintPermissions::default()),
            Some(document) => Ok(BlueprintPermissions::from_json(document)?),
        }
    }

    pub(crate) async fn action_permissions(&self, tx: &mut dyn Tx, action: &str) -> Result<ActionPermissions> {
        match tx.permissions(&action_resource(action)).await? {
            None => Ok(ActionPermissions::default()),
            Some(document) => Ok(ActionPermissions::from_json(document)?),
        }
    }

    /// Which entities of `blueprint` the actor may read, create, update or delete.
    pub(crate) async fn entity_access(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        blueprint: &str,
        op: EntityOp,
    ) -> Result<Access> {
        match &actor.principal {
            Principal::System => Ok(Access::Everything),
            // A backend's run token changes the catalog for its run, but never who is who.
            Principal::Run(run)
                if op != EntityOp::Read && actor.run.as_ref() == Some(run) && !system::is_system(blueprint) =>
            {
                Ok(Access::Everything)
            }
            Principal::Run(_) => match (&actor.reads_as, op) {
                (Some(requester), EntityOp::Read) => {
                    Ok(self.blueprint_permissions(tx, blueprint).await?.entities(requester, op))
                }
                _ => Err(Error::forbidden(RUN_TOKEN_LIMIT)),
            },
            Principal::User(user) => Ok(self.blueprint_permissions(tx, blueprint).await?.entities(user, op)),
        }
    }

    /// Refuses an actor who does not control the blueprint (its schema, scorecards, actions,
    /// permissions): only admins and its moderators do.
    pub(crate) async fn require_manage(&self, tx: &mut dyn Tx, actor: &Actor, blueprint: Option<&str>) -> Result<()> {
        let user = match &actor.principal {
            Principal::System => return Ok(()),
            Principal::Run(_) => return Err(Error::forbidden(RUN_TOKEN_LIMIT)),
            Principal::User(user) if user.is_admin() => return Ok(()),
            Principal::User(user) => user,
        };
        if let Some(blueprint) = blueprint
            && self.blueprint_permissions(tx, blueprint).await?.is_moderator(user)
        {
            return Ok(());
        }
        Err(Error::forbidden(match blueprint {
            Some(b) => format!("only an admin or a moderator of '{b}' may do this"),
            None => "only an admin may do this".to_string(),
        }))
    }

    /// The query that limits a read of `blueprint` (or, with `None`, of every blueprint) to what
    /// the actor may read; `None` when nothing is hidden from them.
    pub(crate) async fn read_filter(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        blueprint: Option<&str>,
        blueprints: &[Blueprint],
    ) -> Result<Option<Query>> {
        let user = match (&actor.principal, &actor.reads_as) {
            (Principal::System, _) => return Ok(None),
            (Principal::Run(_), None) => return Err(Error::forbidden(RUN_TOKEN_LIMIT)),
            (Principal::Run(_), Some(requester)) => requester,
            (Principal::User(user), _) => user,
        };
        if user.is_admin() {
            return Ok(None);
        }
        let context = user_context(self.core.now(), Some(user));
        let mut unrestricted = Vec::new();
        let mut narrowed = Vec::new();
        let mut hidden = false;
        for bp in blueprints.iter().filter(|b| blueprint.is_none_or(|id| id == b.identifier)) {
            match self.blueprint_permissions(tx, &bp.identifier).await?.entities(user, EntityOp::Read) {
                Access::Everything => unrestricted.push(bp.identifier.clone()),
                Access::Nothing => hidden = true,
                Access::Only(condition) => {
                    narrowed.push((bp.identifier.clone(), parse_condition(&condition, blueprints, bp, &context)?))
                }
            }
        }
        if !hidden && narrowed.is_empty() {
            return Ok(None);
        }
        let of_blueprints = |ids: Vec<String>| {
            Query::Rule(query::Rule::In {
                target: query::Target {
                    field: query::Field::Meta(query::Meta::Blueprint),
                    shape: query::Shape::One(query::Kind::String),
                },
                values: ids.into_iter().map(query::Scalar::Str).collect(),
                negate: false,
            })
        };
        let mut branches = Vec::new();
        if !unrestricted.is_empty() {
            branches.push(of_blueprints(unrestricted));
        }
        for (bp, condition) in narrowed {
            branches.push(Query::And(vec![of_blueprints(vec![bp]), condition]));
        }
        Ok(Some(Query::Or(branches)))
    }

    /// Which of `identifiers` (entities of `blueprint`) `access` admits.
    pub(crate) async fn admitted_by(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        blueprint: &str,
        access: &Access,
        identifiers: &[String],
    ) -> Result<HashSet<String>> {
        match access {
            Access::Everything => return Ok(identifiers.iter().cloned().collect()),
            Access::Nothing => return Ok(HashSet::new()),
            Access::Only(_) => {}
        }
        let blueprints = all_blueprints(tx).await?;
        let Some(bp) = blueprints.iter().find(|b| b.identifier == blueprint) else {
            return Ok(HashSet::new());
        };
        let context = user_context(self.core.now(), actor.reader());
        let query = match access.as_query() {
            Some(document) => parse_condition(&document, &blueprints, bp, &context)?,
            None => Query::And(vec![]),
        };
        self.admitted_query(tx, &blueprints, blueprint, query, identifiers).await
    }

    /// Which of `identifiers` a parsed query admits.
    pub(crate) async fn admitted_query(
        &self,
        tx: &mut dyn Tx,
        blueprints: &[Blueprint],
        blueprint: &str,
        query: Query,
        identifiers: &[String],
    ) -> Result<HashSet<String>> {
        if identifiers.is_empty() {
            return Ok(HashSet::new());
        }
        let among = query::Rule::In {
            target: query::Target {
                field: query::Field::Meta(query::Meta::Identifier),
                shape: query::Shape::One(query::Kind::String),
            },
            values: identifiers.iter().map(|i| query::Scalar::Str(i.clone())).collect(),
            negate: false,
        };
        let plan = SearchPlan {
            blueprint: Some(blueprint.to_string()),
            query: Query::And(vec![query, Query::Rule(among)]),
            sort: None,
            after: None,
            limit: identifiers.len() as u32,
            required_relations: required_relations(blueprints),
        };
        Ok(tx.search(&plan).await?.into_iter().map(|e| e.identifier).collect())
    }

    /// Which of `refs` the actor may read (none, for an actor who may not read at all).
    pub(crate) async fn readable_refs(&self, tx: &mut dyn Tx, actor: &Actor, refs: &[EntityRef]) -> HashSet<EntityRef> {
        let mut by_blueprint: HashMap<&str, Vec<String>> = HashMap::new();
        for r in refs {
            by_blueprint.entry(&r.blueprint).or_default().push(r.identifier.clone());
        }
        let mut readable = HashSet::new();
        for (blueprint, identifiers) in by_blueprint {
            let Ok(access) = self.entity_access(tx, actor, blueprint, EntityOp::Read).await else { continue };
            let Ok(admitted) = self.admitted_by(tx, actor, blueprint, &access, &identifiers).await else { continue };
            readable.extend(
                admitted.into_iter().map(|identifier| EntityRef { blueprint: blueprint.to_string(), identifier }),
            );
        }
        readable
    }

    /// The entity if the actor may read it; 404 otherwise, so that its existence stays hidden.
    pub(crate) async fn readable_entity(&self, tx: &mut dyn Tx, actor: &Actor, entity: Entity) -> Result<Entity> {
        let access = self.entity_access(tx, actor, &entity.blueprint, EntityOp::Read).await?;
        let ids = [entity.identifier.clone()];
        if self.admitted_by(tx, actor, &entity.blueprint, &access, &ids).await?.is_empty() {
            return Err(Error::hidden(format!("entity '{}' of blueprint '{}'", entity.identifier, entity.blueprint)));
        }
        Ok(entity)
    }

    /// The writes among `items` (index, new state, current entity) the actor may not make, with
    /// why. Creating needs `create` on the new state. Changing needs `update` on the current
    /// entity, except for properties with an `updateProperties` grant, which need that grant
    /// (with or without `update`). Giving an entity to a team the actor is not in needs a
    /// moderator or an admin.
    pub(crate) async fn refused_writes(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        blueprint: &Blueprint,
        items: &[(usize, &ValidEntity, Option<&Entity>)],
    ) -> Result<HashMap<usize, Error>> {
        let mut refused = HashMap::new();
        let bp = blueprint.identifier.as_str();
        let user = match &actor.principal {
            Principal::User(user) if !user.is_admin() => user.clone(),
            _ => {
                // Run tokens may write only for their own run; everyone else here may write.
                self.entity_access(tx, actor, bp, EntityOp::Create).await?;
                return Ok(refused);
            }
        };
        let permissions = self.blueprint_permissions(tx, bp).await?;
        let blueprints = all_blueprints(tx).await?;
        let context = user_context(self.core.now(), Some(&user));
        let create = permissions.entities(&user, EntityOp::Create);
        let create_query = match &create {
            Access::Only(condition) => Some(parse_condition(condition, &blueprints, blueprint, &context)?),
            _ => None,
        };
        let updates: Vec<String> = items.iter().filter_map(|(_, _, e)| e.map(|e| e.identifier.clone())).collect();
        let update = permissions.entities(&user, EntityOp::Update);
        let may_update = self.admitted_by(tx, actor, bp, &update, &updates).await?;
        let may_read = if updates.len() == may_update.len() {
            HashSet::new()
        } else {
            let read = permissions.entities(&user, EntityOp::Read);
            self.admitted_by(tx, actor, bp, &read, &updates).await?
        };
        for (index, valid, existing) in items {
            let Some(current) = existing else {
                let allowed = match (&create, &create_query) {
                    (Access::Everything, _) => true,
                    (_, Some(query)) => query.matches(&would_be(valid, bp, &user.id), &query::NoGraph),
                    _ => false,
                };
                if !allowed {
                    refused.insert(*index, create_refused(bp));
                } else if let Some(team) = permissions.refused_owner(&user, &[], &valid.team) {
                    refused.insert(*index, owner_refused(&valid.identifier, team, bp));
                }
                continue;
            };
            let id = &current.identifier;
            let whole = may_update.contains(id);
            if !whole && !may_read.contains(id) {
                refused.insert(*index, Error::hidden(format!("entity '{id}' of blueprint '{bp}'")));
                continue;
            }
            let (properties, others) = changes(blueprint, valid, current);
            // `update` covers everything but the properties with a grant of their own.
            let ungranted = properties.iter().find(|p| !permissions.has_property_grant(p));
            if !whole && (others || ungranted.is_some()) {
                let message = match ungranted {
                    Some(property) if !others => format!("you may not change '{property}' of '{id}'"),
                    _ => format!("you may not update entity '{id}' of '{bp}'"),
                };
                refused.insert(*index, Error::forbidden(message));
                continue;
            }
            for property in properties.iter().filter(|p| permissions.has_property_grant(p)) {
                let access = permissions.property_update(&user, property);
                if self.admitted_by(tx, actor, bp, &access, std::slice::from_ref(id)).await?.is_empty() {
                    let message = format!(
                        "you may not change '{property}' of '{id}': only the holders of its updateProperties grant may"
                    );
                    refused.insert(*index, Error::forbidden(message));
                    break;
                }
            }
            if !refused.contains_key(index)
                && let Some(team) = permissions.refused_owner(&user, &current.team, &valid.team)
            {
                refused.insert(*index, owner_refused(id, team, bp));
            }
        }
        Ok(refused)
    }

    /// Whether the actor may run (or approve runs of) an action on `entity`.
    pub(crate) async fn action_allowed(
        &self,
        tx: &mut dyn Tx,
        actor: &Actor,
        action: &str,
        blueprint: Option<&str>,
        entity: Option<&str>,
        op: ActionOp,
    ) -> Result<bool> {
        let user = match &actor.principal {
            Principal::System => return Ok(true),
            Principal::Run(_) => return Ok(false),
            Principal::User(user) => user,
        };
        let blueprint_permissions = match blueprint {
            Some(b) => Some(self.blueprint_permissions(tx, b).await?),
            None => None,
        };
        let access = self.action_permissions(tx, action).await?.access(user, blueprint_permissions.as_ref(), op);
        match (access, blueprint, entity) {
            (Access::Everything, _, _) => Ok(true),
            (Access::Nothing, _, _) | (Access::Only(_), None, _) | (Access::Only(_), _, None) => Ok(false),
            (access, Some(blueprint), Some(entity)) => {
                let ids = [entity.to_string()];
                Ok(!self.admitted_by(tx, actor, blueprint, &access, &ids).await?.is_empty())
            }
        }
    }

    /// Whether a live change may be sent to the actor: runs they may see, entities they may read.
    /// A deleted entity can no longer be checked, so its deletion goes only to those who may read
    /// every entity of its blueprint.
    pub async fn may_see_change(&self, actor: &Actor, change: &ChangeEvent) -> bool {
        if actor.as_user().is_none_or(User::is_admin) && !matches!(actor.principal, Principal::Run(_)) {
            return true;
        }
        let seen = async {
            let mut tx = self.core.store().read().await?;
            if change.kind.starts_with("run.") {
                return Ok::<bool, Error>(self.visible_run(tx.as_mut(), actor, &change.identifier).await.is_ok());
            }
            let access = self.entity_access(tx.as_mut(), actor, &change.blueprint, EntityOp::Read).await?;
            if change.kind == "entity.deleted" {
                return Ok(access == Access::Everything);
            }
            let ids = [change.identifier.clone()];
            Ok(!self.admitted_by(tx.as_mut(), actor, &change.blueprint, &access, &ids).await?.is_empty())
        };
        seen.await.unwrap_or(false)
    }

    /// What the actor may administer, so pages offer only that (the services still check every
    /// change): everything for an admin, else the blueprints they moderate.
    pub async fn managed(&self, actor: &Actor) -> Result<Managed> {
        let user = match &actor.principal {
            Principal::System => return Ok(Managed { all: true, blueprints: HashSet::new() }),
            Principal::Run(_) => return Ok(Managed::default()),
            Principal::User(user) if user.is_admin() => return Ok(Managed { all: true, blueprints: HashSet::new() }),
            Principal::User(user) => user,
        };
        let mut tx = self.core.store().read().await?;
        let mut blueprints = HashSet::new();
        for record in tx.blueprints().await? {
            let id = record.blueprint.identifier;
            if self.blueprint_permissions(tx.as_mut(), &id).await?.is_moderator(user) {
                blueprints.insert(id);
            }
        }
        Ok(Managed { all: false, blueprints })
    }

    // ---- the permission documents ----

    pub async fn get_blueprint_permissions(&self, actor: &Actor, blueprint: &str) -> Result<BlueprintPermissions> {
        let mut tx = self.core.store().read().await?;
        load_blueprint(tx.as_mut(), blueprint).await?;
        self.require_manage(tx.as_mut(), actor, Some(blueprint)).await?;
        self.blueprint_permissions(tx.as_mut(), blueprint).await
    }

    /// Replaces a blueprint's permissions; nobody may give what they do not hold.
    pub async fn put_blueprint_permissions(
        &self,
        actor: &Actor,
        blueprint: &str,
        document: Value,
    ) -> Result<BlueprintPermissions> {
        let new = BlueprintPermissions::from_json(document)?;
        let mut tx = self.core.store().write().await?;
        lock_blueprint(tx.as_mut(), blueprint).await?;
        let current = self.blueprint_permissions(tx.as_mut(), blueprint).await?;
        if let Some(user) = actor.as_user() {
            current.check_change(user, &new).map_err(Error::forbidden)?;
        } else {
            self.require_manage(tx.as_mut(), actor, Some(blueprint)).await?;
        }
        check_conditions(tx.as_mut(), blueprint, &new.conditions()).await?;
        let stored =
            serde_json::to_value(&new).map_err(|e| Error::new(crate::error::ErrorCode::Internal, e.to_string()))?;
        tx.put_permissions(&blueprint_resource(blueprint), Some(&stored), self.core.now(), &actor.id).await?;
        let entry = actor
            .entry(self.core.now(), "permissions.update", "permissions", &blueprint_resource(blueprint))
            .on(blueprint)
            .changed(Some(to_json(&current)), Some(stored));
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(new)
    }

    pub async fn get_action_permissions(&self, actor: &Actor, action: &str) -> Result<ActionPermissions> {
        let mut tx = self.core.store().read().await?;
        let record = load_action(tx.as_mut(), action).await?;
        self.require_manage(tx.as_mut(), actor, record.action.blueprint()).await?;
        self.action_permissions(tx.as_mut(), action).await
    }

    /// Replaces an action's permissions: admins and moderators of its blueprint only, who hold
    /// every grant of it.
    pub async fn put_action_permissions(
        &self,
        actor: &Actor,
        action: &str,
        document: Value,
    ) -> Result<ActionPermissions> {
        let new = ActionPermissions::from_json(document)?;
        let mut tx = self.core.store().write().await?;
        let record = load_action(tx.as_mut(), action).await?;
        let blueprint = record.action.blueprint();
        self.require_manage(tx.as_mut(), actor, blueprint).await?;
        if let Some(blueprint) = blueprint {
            check_conditions(tx.as_mut(), blueprint, &new.conditions()).await?;
        } else if let Some((path, _)) = new.conditions().first() {
            return Err(Error::invalid_at(
                path,
                "an action without a blueprint has no entity for a condition to check",
            ));
        }
        let stored =
            serde_json::to_value(&new).map_err(|e| Error::new(crate::error::ErrorCode::Internal, e.to_string()))?;
        let current = self.action_permissions(tx.as_mut(), action).await?;
        tx.put_permissions(&action_resource(action), Some(&stored), self.core.now(), &actor.id).await?;
        let mut entry = actor
            .entry(self.core.now(), "permissions.update", "permissions", &action_resource(action))
            .changed(Some(to_json(&current)), Some(stored));
        entry.blueprint = blueprint.map(str::to_string);
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Forgets the permissions of a deleted blueprint or action.
    pub(crate) async fn drop_permissions(
        &self,
        tx: &mut dyn Tx,
        blueprint: Option<&str>,
        action: Option<&str>,
    ) -> Result<()> {
        let now = self.core.now();
        if let Some(b) = blueprint {
            tx.put_permissions(&blueprint_resource(b), None, now, "portolan").await?;
        }
        if let Some(a) = action {
            tx.put_permissions(&action_resource(a), None, now, "portolan").await?;
        }
        Ok(())
    }
}

impl Permissions {
    /// The run, if the actor may see it: admins see every run; members their own runs, the runs
    /// on what their teams own, and the runs they may approve. Others get 404.
    pub(crate) async fn visible_run(&self, tx: &mut dyn Tx, actor: &Actor, id: &str) -> Result<Run> {
        let hidden = || Error::not_found(format!("run '{id}'"));
        let run = tx.run(id, false).await?.ok_or_else(hidden)?;
        let user = match &actor.principal {
            Principal::System => return Ok(run),
            Principal::Run(own) if *own == run.id => return Ok(run),
            Principal::Run(_) => return Err(hidden()),
            Principal::User(user) if user.is_admin() || run.trigger.by == user.id => return Ok(run),
            Principal::User(user) => user,
        };
        if let (Some(blueprint), Some(identifier)) = (&run.blueprint, &run.entity)
            && let Some(entity) = tx.entity(blueprint, identifier).await?
            && entity.team.iter().any(|t| user.teams.contains(t))
            && self.readable_entity(tx, actor, entity).await.is_ok()
        {
            return Ok(run);
        }
        let (blueprint, entity) = (run.blueprint.as_deref(), run.entity.as_deref());
        if self.action_allowed(tx, actor, &run.action, blueprint, entity, ActionOp::Approve).await?
            || self.may_decide(tx, actor, &run).await?
        {
            return Ok(run);
        }
        Err(Error::hidden(format!("run '{id}'")))
    }

    /// Whether the actor may decide on a waiting run.
    pub async fn may_decide_on(&self, actor: &Actor, run: &Run) -> Result<bool> {
        let mut tx = self.core.store().read().await?;
        self.may_decide(tx.as_mut(), actor, run).await
    }

    /// Whether the actor may decide on a waiting run (and so see it).
    pub(crate) async fn may_decide(&self, tx: &mut dyn Tx, actor: &Actor, run: &Run) -> Result<bool> {
        let (Some(approval), Some(user)) = (&run.approval, actor.as_user()) else { return Ok(false) };
        if user.id == run.trigger.by {
            return Ok(false);
        }
        let grant = self.holds_approve_grant(tx, actor, run).await?;
        Ok(approval.may_decide(user, grant))
    }

    pub(crate) async fn holds_approve_grant(&self, tx: &mut dyn Tx, actor: &Actor, run: &Run) -> Result<bool> {
        self.action_allowed(tx, actor, &run.action, run.blueprint.as_deref(), run.entity.as_deref(), ActionOp::Approve)
            .await
    }
}

pub(crate) fn required_relations(blueprints: &[Blueprint]) -> Vec<(String, String)> {
    blueprints
        .iter()
        .flat_map(|b| b.relations.iter().filter(|(_, d)| d.required).map(|(n, _)| (b.identifier.clone(), n.clone())))
        .collect()
}

/// Parses a permission condition against the blueprint it guards.
fn parse_condition(
    document: &Value,
    blueprints: &[Blueprint],
    bp: &Blueprint,
    context: &QueryContext,
) -> Result<Query> {
    let scope = Scope::new(blueprints, Some(&bp.identifier));
    let wrapped = if document.get("combinator").is_some() {
        document.clone()
    } else {
        serde_json::json!({"combinator": "and", "rules": [document]})
    };
    query::parse(&wrapped, &scope, context).map_err(|errors| {
        Error::forbidden(format!("a permission condition of '{}' no longer parses: {errors}", bp.identifier))
    })
}

/// Checks that each condition is a valid query over the blueprint's fields.
async fn check_conditions(tx: &mut dyn Tx, blueprint: &str, conditions: &[(String, &Value)]) -> Result<()> {
    let blueprints = all_blueprints(tx).await?;
    let scope = Scope::new(&blueprints, Some(blueprint));
    // Context values stand for whoever asks later; any user will do for checking the shape.
    let context = QueryContext { user: Some(system::USER.into()), ..QueryContext::default() };
    let mut errors = portolan_model::FieldErrors::default();
    for (path, condition) in conditions {
        if let Err(found) = query::parse(condition, &scope, &context) {
            for e in found.0 {
                errors.push(format!("{path}{}", e.path), e.message);
            }
        }
    }
    errors.into_result(()).map_err(Error::invalid)
}

/// The entity a create would make, for checking a condition on it before it exists.
fn would_be(valid: &ValidEntity, blueprint: &str, by: &str) -> Entity {
    Entity {
        identifier: valid.identifier.clone(),
        title: valid.title.clone(),
        icon: valid.icon.clone(),
        blueprint: blueprint.to_string(),
        team: valid.team.clone(),
        properties: valid.properties.clone(),
        relations: valid.relations.clone(),
        scorecards: Default::default(),
        diagnostics: Default::default(),
        version: 1,
        created_at: 0,
        created_by: by.to_string(),
        updated_at: 0,
        updated_by: by.to_string(),
    }
}

/// What a write changes of a stored entity: the stored properties whose values change, and
/// whether anything else does (title, icon, teams, relations). Computed properties are the
/// server's, not the writer's, and are left out.
fn changes(blueprint: &Blueprint, valid: &ValidEntity, current: &Entity) -> (Vec<String>, bool) {
    let others = valid.title != current.title
        || valid.icon != current.icon
        || valid.team != current.team
        || valid.relations != current.relations;
    let names = blueprint.schema.properties.keys();
    let properties =
        names.filter(|name| valid.properties.get(*name) != current.properties.get(*name)).cloned().collect();
    (properties, others)
}

/// The refusal of a create: the same whether the grant does not admit the new entity or its
/// identifier is taken by one the caller may not read, so that the answer tells nothing of it.
pub(crate) fn create_refused(blueprint: &str) -> Error {
    Error::forbidden(format!("you may not create this entity of '{blueprint}'"))
}

fn owner_refused(identifier: &str, team: &str, blueprint: &str) -> Error {
    Error::forbidden(format!(
        "you may not make team '{team}' an owner of '{identifier}': you are not in it \
         (a moderator of '{blueprint}' or an admin may)"
    ))
}
