//! Who does something, through what, with which rights: every service call names its actor.

use portolan_model::Millis;
use portolan_model::audit::AuditEntry;
use portolan_model::permission::User;

/// Who is acting, through what, and with which rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Recorded as `createdBy`/`updatedBy`: a `_user` identifier, or what the server acts as.
    pub id: String,
    pub origin: Origin,
    /// The run on whose behalf catalog changes are made: they are linked to it.
    pub run: Option<String>,
    pub principal: Principal,
    /// A run token's reads are its requester's (while the run is open): the backend sees what the
    /// person who ran the action may see, and no more.
    pub reads_as: Option<User>,
    /// The request this actor made (`x-request-id`), for the audit log.
    pub request_id: Option<String>,
}

/// What permissions an actor is judged by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The server itself: automations, built-in backends, the demo loader, the CLI. May do anything.
    System,
    /// A signed-in user, or a token of one: their role and teams decide.
    User(User),
    /// A run-scoped token: may report on its run and change the catalog for it, nothing else.
    Run(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Api,
    /// A signed-in browser session: the web portal and the API calls its page makes.
    Ui,
    Demo,
    Automation,
    /// A built-in backend (`UPSERT_ENTITY`, `DELETE_ENTITY`) doing a run's work.
    Backend,
    Runner,
    /// The `portolan` command line (`admin`, bootstrap).
    Cli,
    /// An AI assistant, through the MCP server, as the user whose token it holds.
    Mcp,
    /// The Slack app, as the Portolan user a Slack user is linked to.
    Slack,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Api => "api",
            Origin::Ui => "ui",
            Origin::Demo => "demo",
            Origin::Automation => "automation",
            Origin::Backend => "backend",
            Origin::Runner => "runner",
            Origin::Cli => "cli",
            Origin::Mcp => "mcp",
            Origin::Slack => "slack",
        }
    }
}

impl Actor {
    /// The server acting on its own authority.
    pub fn system(id: impl Into<String>, origin: Origin) -> Self {
        Self { id: id.into(), origin, run: None, principal: Principal::System, reads_as: None, request_id: None }
    }

    pub fn user(user: User, origin: Origin) -> Self {
        Self {
            id: user.id.clone(),
            origin,
            run: None,
            principal: Principal::User(user),
            reads_as: None,
            request_id: None,
        }
    }

    /// A backend holding the run-scoped token of `run`.
    pub fn run_token(run: &str) -> Self {
        Self {
            id: format!("run:{run}"),
            origin: Origin::Runner,
            run: None,
            principal: Principal::Run(run.into()),
            reads_as: None,
            request_id: None,
        }
    }

    /// A run token that reads the catalog as the run's requester.
    pub fn run_reader(run: &str, requester: User) -> Self {
        Self { reads_as: Some(requester), ..Self::run_token(run).for_run(run) }
    }

    pub fn demo() -> Self {
        Self::system("portolan-demo", Origin::Demo)
    }

    /// The same actor, acting for `run`.
    pub fn for_run(mut self, run: impl Into<String>) -> Self {
        self.run = Some(run.into());
        self
    }

    /// An audit entry of something this actor did (successfully) at `at`.
    pub fn entry(&self, at: Millis, action: &str, resource_type: &str, resource_id: &str) -> AuditEntry {
        AuditEntry {
            at,
            actor: self.id.clone(),
            origin: self.origin.as_str().into(),
            action: action.into(),
            resource_type: resource_type.into(),
            resource_id: resource_id.into(),
            blueprint: None,
            run: self.run.clone(),
            status: portolan_model::audit::SUCCESS.into(),
            request_id: self.request_id.clone(),
            reason: None,
            diff: None,
        }
    }

    /// Whose rights decide what the actor reads: the signed-in user, or a run's requester.
    pub fn reader(&self) -> Option<&User> {
        self.as_user().or(self.reads_as.as_ref())
    }

    /// The signed-in user, if the actor is one.
    pub fn as_user(&self) -> Option<&User> {
        match &self.principal {
            Principal::User(user) => Some(user),
            _ => None,
        }
    }
}
