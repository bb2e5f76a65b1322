//! Who may do what. Roles, the grants of a blueprint and of an action, and the decisions made
//! from them. A decision is a yes, a no, or a query in the query language that narrows the yes to
//! some entities: the server ANDs it into searches, lists, counts and facets, and checks single
//! entities with it, so that every read path filters the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::FieldErrors;

/// A user's role in the whole portal. Moderators are per blueprint and named in its permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// A signed-in person or service account, as permissions see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The identifier of their `_user` entity.
    pub id: String,
    pub role: Role,
    /// The `team` of their `_user` entity.
    pub teams: Vec<String>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    fn in_any(&self, teams: &[String]) -> bool {
        self.teams.iter().any(|t| teams.contains(t))
    }
}

/// The role names a grant may list.
const GRANT_ROLES: [&str; 3] = ["admin", "moderator", "member"];

/// Who a grant is given to, and what it is narrowed to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Grant {
    /// `admin`, `moderator` (of the blueprint) or `member` (everyone signed in).
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    /// Also to the teams that own the entity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub owned_by_team: bool,
    /// Only on entities this query admits (it may use `{"context": "user" | "userTeams"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub condition: Option<Value>,
}

impl Grant {
    fn to_roles(roles: &[&str]) -> Self {
        Self { roles: roles.iter().map(|r| r.to_string()).collect(), ..Self::default() }
    }

    /// Whether the grant names the user directly (by role, identifier or team).
    fn names(&self, user: &User, moderator: bool) -> bool {
        self.roles.iter().any(|r| match r.as_str() {
            "member" => true,
            "admin" => user.is_admin(),
            "moderator" => moderator,
            _ => false,
        }) || self.users.contains(&user.id)
            || user.in_any(&self.teams)
    }

    /// What this grant lets `user` reach.
    fn access(&self, user: &User, moderator: bool) -> Access {
        let who = if self.names(user, moderator) {
            Access::Everything
        } else if self.owned_by_team {
            Access::Only(json!({"property": "$team", "operator": "containsAny", "value": {"context": "userTeams"}}))
        } else {
            return Access::Nothing;
        };
        match &self.condition {
            None => who,
            Some(condition) => who.and(condition.clone()),
        }
    }

    fn check(&self, path: &str, errors: &mut FieldErrors) {
        for (i, role) in self.roles.iter().enumerate() {
            if !GRANT_ROLES.contains(&role.as_str()) {
                errors.push(
                    format!("{path}/roles/{i}"),
                    format!("unknown role '{role}': use admin, moderator or member"),
                );
            }
        }
        if let Some(condition) = &self.condition
            && !condition.is_object()
        {
            errors.push(format!("{path}/condition"), "a condition is a query: {\"combinator\", \"rules\"}");
        }
    }

    /// The conditions of this grant, with where they sit, for the server to parse.
    fn conditions<'a>(&'a self, path: String, out: &mut Vec<(String, &'a Value)>) {
        if let Some(condition) = &self.condition {
            out.push((format!("{path}/condition"), condition));
        }
    }
}

/// What a decision lets a user reach.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    Everything,
    Nothing,
    /// Only what this query (a rule or a `{combinator, rules}` group) admits.
    Only(Value),
}

impl Access {
    fn and(self, condition: Value) -> Access {
        match self {
            Access::Everything => Access::Only(condition),
            Access::Nothing => Access::Nothing,
            Access::Only(query) => Access::Only(json!({"combinator": "and", "rules": [query, condition]})),
        }
    }

    /// The query that admits what this access reaches, for ANDing into a search; `None` for
    /// everything. Nothing is a query no entity passes.
    pub fn as_query(&self) -> Option<Value> {
        match self {
            Access::Everything => None,
            Access::Nothing => Some(json!({"combinator": "or", "rules": []})),
            Access::Only(query) => Some(json!({"combinator": "and", "rules": [query]})),
        }
    }
}

/// An operation on the entities of a blueprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityOp {
    Read,
    Create,
    Update,
    Delete,
}

impl EntityOp {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityOp::Read => "read",
            EntityOp::Create => "create",
            EntityOp::Update => "update",
            EntityOp::Delete => "delete",
        }
    }
}

/// Users and teams who hold a role on one blueprint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Holders {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
}

/// The permissions of one blueprint. Admins and the blueprint's moderators may do everything with
/// it; everyone else gets what the grants give. Without a stored document every signed-in user
/// may read the entities and only admins and moderators may change them (Port's default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueprintPermissions {
    /// Full control of the blueprint, its scorecards, actions, permissions and entities.
    #[serde(default)]
    pub moderators: Holders,
    #[serde(default = "read_by_members")]
    pub read: Grant,
    #[serde(default)]
    pub create: Grant,
    #[serde(default)]
    pub update: Grant,
    #[serde(default)]
    pub delete: Grant,
    /// Who may change one property. A property listed here is changed only by its grantees
    /// (and moderators and admins), even by those who hold `update`; other properties follow
    /// `update`.
    #[serde(default)]
    pub update_properties: BTreeMap<String, Grant>,
}

fn read_by_members() -> Grant {
    Grant::to_roles(&["member"])
}

impl Default for BlueprintPermissions {
    fn default() -> Self {
        Self {
            moderators: Holders::default(),
            read: read_by_members(),
            create: Grant::default(),
            update: Grant::default(),
            delete: Grant::default(),
            update_properties: BTreeMap::new(),
        }
    }
}

impl BlueprintPermissions {
    pub fn from_json(document: Value) -> Result<Self, FieldErrors> {
        let permissions: Self = crate::error::from_json(document)?;
        let mut errors = FieldErrors::default();
        permissions.read.check("/read", &mut errors);
        permissions.create.check("/create", &mut errors);
        permissions.update.check("/update", &mut errors);
        permissions.delete.check("/delete", &mut errors);
        for (name, grant) in &permissions.update_properties {
            grant.check(&format!("/updateProperties/{}", crate::error::pointer_token(name)), &mut errors);
        }
        errors.into_result(permissions)
    }

    /// Every condition, with its JSON pointer, so the server can check them against the schema.
    pub fn conditions(&self) -> Vec<(String, &Value)> {
        let mut out = Vec::new();
        self.read.conditions("/read".into(), &mut out);
        self.create.conditions("/create".into(), &mut out);
        self.update.conditions("/update".into(), &mut out);
        self.delete.conditions("/delete".into(), &mut out);
        for (name, grant) in &self.update_properties {
            grant.conditions(format!("/updateProperties/{}", crate::error::pointer_token(name)), &mut out);
        }
        out
    }

    pub fn is_moderator(&self, user: &User) -> bool {
        self.moderators.users.contains(&user.id) || user.in_any(&self.moderators.teams)
    }

    /// Whether the user controls the blueprint itself: its schema, scorecards, actions, permissions.
    pub fn may_manage(&self, user: &User) -> bool {
        user.is_admin() || self.is_moderator(user)
    }

    /// Which entities of the blueprint the user may read, create, update or delete.
    pub fn entities(&self, user: &User, op: EntityOp) -> Access {
        if self.may_manage(user) {
            return Access::Everything;
        }
        let grant = match op {
            EntityOp::Read => &self.read,
            EntityOp::Create => &self.create,
            EntityOp::Update => &self.update,
            EntityOp::Delete => &self.delete,
        };
        grant.access(user, false)
    }

    /// Which entities the user may change `property` of. A property with its own grant narrows
    /// `update` (Port's rule): only that grant's holders change it. Any other follows `update`.
    pub fn property_update(&self, user: &User, property: &str) -> Access {
        match self.update_properties.get(property) {
            Some(_) if self.may_manage(user) => Access::Everything,
            Some(grant) => grant.access(user, false),
            None => self.entities(user, EntityOp::Update),
        }
    }

    /// Whether `property` has a grant of its own, so that `update` alone does not change it.
    pub fn has_property_grant(&self, property: &str) -> bool {
        self.update_properties.contains_key(property)
    }

    /// The first of the owning teams `after` adds to `before` that the user may not give: owning
    /// gives a team's members the grants with `ownedByTeam`, so only the team's own members (and
    /// moderators and admins) hand an entity to it. Taking a team away needs only the write.
    pub fn refused_owner<'a>(&self, user: &User, before: &[String], after: &'a [String]) -> Option<&'a str> {
        if self.may_manage(user) {
            return None;
        }
        after.iter().find(|t| !before.contains(t) && !user.teams.contains(t)).map(String::as_str)
    }

    /// Refuses a change of these permissions by someone who could not hold what it gives:
    /// only moderators and admins change grants, and only admins change who moderates.
    pub fn check_change(&self, user: &User, new: &BlueprintPermissions) -> Result<(), String> {
        if !self.may_manage(user) {
            return Err("only an admin or a moderator of the blueprint may change its permissions".into());
        }
        if !user.is_admin() && new.moderators != self.moderators {
            return Err("only an admin may change who moderates a blueprint".into());
        }
        Ok(())
    }
}

/// The permissions of one action: who may run it and who may approve its runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionPermissions {
    /// Default: every signed-in user. A condition or `ownedByTeam` is checked on the run's entity;
    /// for an action without an entity only the users the grant names may run it.
    #[serde(default = "executed_by_members")]
    pub execute: Grant,
    /// Default: admins.
    #[serde(default = "approved_by_admins")]
    pub approve: Grant,
}

fn executed_by_members() -> Grant {
    Grant::to_roles(&["member"])
}

fn approved_by_admins() -> Grant {
    Grant::to_roles(&["admin"])
}

impl Default for ActionPermissions {
    fn default() -> Self {
        Self { execute: executed_by_members(), approve: approved_by_admins() }
    }
}

/// An operation on an action's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionOp {
    Execute,
    Approve,
}

impl ActionPermissions {
    pub fn from_json(document: Value) -> Result<Self, FieldErrors> {
        let permissions: Self = crate::error::from_json(document)?;
        let mut errors = FieldErrors::default();
        permissions.execute.check("/execute", &mut errors);
        permissions.approve.check("/approve", &mut errors);
        errors.into_result(permissions)
    }

    pub fn conditions(&self) -> Vec<(String, &Value)> {
        let mut out = Vec::new();
        self.execute.conditions("/execute".into(), &mut out);
        self.approve.conditions("/approve".into(), &mut out);
        out
    }

    /// Which entities the user may run the action on (or approve its runs on), given the
    /// permissions of the action's blueprint (whose moderators hold every grant of its actions).
    pub fn access(&self, user: &User, blueprint: Option<&BlueprintPermissions>, op: ActionOp) -> Access {
        let moderator = blueprint.is_some_and(|b| b.is_moderator(user));
        if user.is_admin() || moderator {
            return Access::Everything;
        }
        match op {
            ActionOp::Execute => self.execute.access(user, moderator),
            ActionOp::Approve => self.approve.access(user, moderator),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, role: Role, teams: &[&str]) -> User {
        User { id: id.into(), role, teams: teams.iter().map(|t| t.to_string()).collect() }
    }

    fn grant(document: Value) -> Grant {
        serde_json::from_value(document).expect("grant")
    }

    const OWNED: &str = r#"{"property":"$team","operator":"containsAny","value":{"context":"userTeams"}}"#;

    fn owned() -> Value {
        serde_json::from_str(OWNED).expect("json")
    }

    /// Principal × grant kind × operation: what each decision is.
    #[test]
    fn decision_table() {
        let admin = user("ada", Role::Admin, &[]);
        let moderator = user("mo", Role::Member, &["platform"]);
        let alice = user("alice", Role::Member, &["payments"]);
        let bob = user("bob", Role::Member, &["search"]);
        let condition = json!({"combinator": "and", "rules": [{"property": "tier", "operator": "=", "value": "low"}]});
        let permissions = BlueprintPermissions {
            moderators: Holders { users: vec![], teams: vec!["platform".into()] },
            read: grant(json!({"ownedByTeam": true})),
            create: grant(json!({"users": ["alice"]})),
            update: grant(json!({"teams": ["payments"], "condition": condition.clone()})),
            delete: grant(json!({"roles": ["admin"]})),
            update_properties: BTreeMap::from([("replicas".to_string(), grant(json!({"teams": ["search"]})))]),
        };
        use Access::*;
        use EntityOp::*;
        let cases: Vec<(&User, EntityOp, Access)> = vec![
            (&admin, Read, Everything),
            (&admin, Delete, Everything),
            (&moderator, Read, Everything),
            (&moderator, Update, Everything),
            (&moderator, Delete, Everything),
            (&alice, Read, Only(owned())),
            (&alice, Create, Everything),
            (&alice, Update, Only(condition.clone())),
            (&alice, Delete, Nothing),
            (&bob, Read, Only(owned())),
            (&bob, Create, Nothing),
            (&bob, Update, Nothing),
            (&bob, Delete, Nothing),
        ];
        for (who, op, expected) in cases {
            assert_eq!(permissions.entities(who, op), expected, "{} {}", who.id, op.as_str());
        }
        assert_eq!(permissions.property_update(&bob, "replicas"), Everything);
        assert_eq!(permissions.property_update(&bob, "version"), Nothing);
        // The property grant narrows alice's update: replicas is the search team's alone.
        assert_eq!(permissions.property_update(&alice, "replicas"), Nothing);
        assert_eq!(permissions.property_update(&alice, "version"), Only(condition.clone()));
        assert_eq!(permissions.property_update(&moderator, "replicas"), Everything);
        assert!(permissions.has_property_grant("replicas") && !permissions.has_property_grant("version"));
        assert!(permissions.may_manage(&moderator) && permissions.may_manage(&admin));
        assert!(!permissions.may_manage(&alice));
    }

    #[test]
    fn only_members_of_a_team_or_moderators_give_it_ownership() {
        let permissions = BlueprintPermissions {
            moderators: Holders { users: vec!["mo".into()], teams: vec![] },
            ..BlueprintPermissions::default()
        };
        let alice = user("alice", Role::Member, &["payments"]);
        let teams = |names: &[&str]| names.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let before = teams(&["payments", "search"]);
        assert_eq!(permissions.refused_owner(&alice, &before, &teams(&["payments", "search", "ops"])), Some("ops"));
        assert_eq!(permissions.refused_owner(&alice, &[], &teams(&["payments"])), None);
        assert_eq!(permissions.refused_owner(&alice, &before, &teams(&["payments"])), None, "taking away is fine");
        assert_eq!(permissions.refused_owner(&alice, &before, &before), None, "kept teams are not given");
        let mo = user("mo", Role::Member, &[]);
        let ada = user("ada", Role::Admin, &[]);
        assert_eq!(permissions.refused_owner(&mo, &[], &teams(&["ops"])), None);
        assert_eq!(permissions.refused_owner(&ada, &[], &teams(&["ops"])), None);
    }

    #[test]
    fn owned_by_team_and_a_condition_narrow_each_other() {
        let alice = user("alice", Role::Member, &["payments"]);
        let condition = json!({"combinator": "and", "rules": [{"property": "onCall", "operator": "=", "value": true}]});
        let g = grant(json!({"ownedByTeam": true, "condition": condition.clone()}));
        assert_eq!(g.access(&alice, false), Access::Only(json!({"combinator": "and", "rules": [owned(), condition]})));
        // Named directly and through ownership: the direct grant wins.
        let g = grant(json!({"ownedByTeam": true, "teams": ["payments"]}));
        assert_eq!(g.access(&alice, false), Access::Everything);
    }

    #[test]
    fn defaults_let_members_read_and_run_but_not_write_or_approve() {
        let alice = user("alice", Role::Member, &["payments"]);
        let blueprint = BlueprintPermissions::from_json(json!({})).expect("valid");
        assert_eq!(blueprint.entities(&alice, EntityOp::Read), Access::Everything);
        assert_eq!(blueprint.entities(&alice, EntityOp::Create), Access::Nothing);
        let action = ActionPermissions::from_json(json!({})).expect("valid");
        assert_eq!(action.access(&alice, Some(&blueprint), ActionOp::Execute), Access::Everything);
        assert_eq!(action.access(&alice, Some(&blueprint), ActionOp::Approve), Access::Nothing);
    }

    #[test]
    fn moderators_hold_every_grant_of_their_blueprints_actions() {
        let mo = user("mo", Role::Member, &["platform"]);
        let blueprint = BlueprintPermissions {
            moderators: Holders { users: vec!["mo".into()], teams: vec![] },
            ..BlueprintPermissions::default()
        };
        let action = ActionPermissions { execute: Grant::default(), approve: Grant::default() };
        assert_eq!(action.access(&mo, Some(&blueprint), ActionOp::Approve), Access::Everything);
        assert_eq!(action.access(&mo, None, ActionOp::Execute), Access::Nothing);
    }

    #[test]
    fn only_admins_change_moderators_and_only_managers_change_grants() {
        let admin = user("ada", Role::Admin, &[]);
        let mo = user("mo", Role::Member, &[]);
        let alice = user("alice", Role::Member, &[]);
        let current = BlueprintPermissions {
            moderators: Holders { users: vec!["mo".into()], teams: vec![] },
            ..BlueprintPermissions::default()
        };
        let mut wider = current.clone();
        wider.update = grant(json!({"roles": ["member"]}));
        assert_eq!(current.check_change(&mo, &wider), Ok(()));
        assert!(current.check_change(&alice, &wider).is_err());
        let mut more_moderators = current.clone();
        more_moderators.moderators.users.push("alice".into());
        assert!(current.check_change(&mo, &more_moderators).is_err());
        assert_eq!(current.check_change(&admin, &more_moderators), Ok(()));
    }

    #[test]
    fn bad_documents_are_refused_with_paths() {
        let errors = BlueprintPermissions::from_json(json!({"read": {"roles": ["owner"]}, "update": {"condition": 3}}))
            .expect_err("invalid");
        let paths: Vec<_> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/read/roles/0", "/update/condition"]);
        let errors = BlueprintPermissions::from_json(json!({"raed": {}})).expect_err("unknown key");
        assert!(errors.0[0].message.contains("raed"), "{errors:?}");
    }

    #[test]
    fn access_as_query() {
        assert_eq!(Access::Everything.as_query(), None);
        assert_eq!(Access::Nothing.as_query(), Some(json!({"combinator": "or", "rules": []})));
        assert_eq!(Access::Only(owned()).as_query(), Some(json!({"combinator": "and", "rules": [owned()]})));
    }
}
