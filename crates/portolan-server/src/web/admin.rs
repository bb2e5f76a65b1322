//! Administration pages: blueprints, actions, scorecards, initiatives, dashboards and permissions edited as JSON or YAML
//! and saved through the same services as the API (so the same validation answers); API tokens
//! and secrets.

use super::*;
use crate::services::dashboards::Address;

/// A definition the admin pages edit as one document.
#[derive(Clone)]
enum Document {
    Blueprint(String),
    Action(String),
    Scorecard { blueprint: String, identifier: String },
    BlueprintPermissions(String),
    ActionPermissions(String),
    NewBlueprint,
    NewAction,
    NewScorecard(String),
    Initiative(String),
    NewInitiative,
    Dashboard(Address),
    NewDashboard,
}

impl Document {
    fn heading(&self) -> String {
        match self {
            Document::Blueprint(id) => format!("Blueprint {id}"),
            Document::Action(id) => format!("Action {id}"),
            Document::Scorecard { blueprint, identifier } => format!("Scorecard {identifier} of {blueprint}"),
            Document::BlueprintPermissions(id) => format!("Permissions of blueprint {id}"),
            Document::ActionPermissions(id) => format!("Permissions of action {id}"),
            Document::NewBlueprint => "New blueprint".into(),
            Document::NewAction => "New action".into(),
            Document::NewScorecard(blueprint) => format!("New scorecard of {blueprint}"),
            Document::Initiative(id) => format!("Initiative {id}"),
            Document::NewInitiative => "New initiative".into(),
            Document::Dashboard(address) => format!("Dashboard {}", address.path()),
            Document::NewDashboard => "New dashboard".into(),
        }
    }

    /// The page's address; forms post back to it, so every segment is encoded.
    fn path(&self) -> String {
        let seg = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        match self {
            Document::Blueprint(id) => format!("/admin/blueprints/{}", seg(id)),
            Document::Action(id) => format!("/admin/actions/{}", seg(id)),
            Document::Scorecard { blueprint, identifier } => {
                format!("/admin/scorecards/{}/{}", seg(blueprint), seg(identifier))
            }
            Document::BlueprintPermissions(id) => format!("/admin/blueprints/{}/permissions", seg(id)),
            Document::ActionPermissions(id) => format!("/admin/actions/{}/permissions", seg(id)),
            Document::NewBlueprint => "/admin/new/blueprint".into(),
            Document::NewAction => "/admin/new/action".into(),
            Document::NewScorecard(blueprint) => format!("/admin/new/scorecard/{}", seg(blueprint)),
            Document::Initiative(id) => format!("/admin/initiatives/{}", seg(id)),
            Document::NewInitiative => "/admin/new/initiative".into(),
            Document::Dashboard(Address::Shared(id)) => format!("/admin/dashboards/{}", seg(id)),
            Document::Dashboard(Address::Team(team)) => format!("/admin/dashboards/teams/{}", seg(team)),
            Document::Dashboard(Address::Personal) => "/admin/dashboards/me".into(),
            Document::NewDashboard => "/admin/new/dashboard".into(),
        }
    }

    /// What can be deleted from its page, by typing this identifier to confirm.
    fn deletable(&self) -> Option<&str> {
        match self {
            Document::Blueprint(id) | Document::Action(id) | Document::Initiative(id) => Some(id),
            Document::Dashboard(Address::Shared(id) | Address::Team(id)) => Some(id),
            Document::Scorecard { identifier, .. } => Some(identifier),
            _ => None,
        }
    }

    /// The document as stored now (a starting point for new ones).
    async fn load(&self, app: &AppState, actor: &Actor) -> Result<Value, Error> {
        let value = match self {
            Document::Blueprint(id) => to_value(app.catalog.get_blueprint(id).await?.blueprint),
            Document::Action(id) => to_value(app.actions.get_action(actor, id).await?.action),
            Document::Scorecard { blueprint, identifier } => {
                to_value(app.scorecards.get_scorecard(blueprint, identifier).await?.scorecard)
            }
            Document::BlueprintPermissions(id) => to_value(app.permissions.get_blueprint_permissions(actor, id).await?),
            Document::ActionPermissions(id) => to_value(app.permissions.get_action_permissions(actor, id).await?),
            Document::NewBlueprint => {
                json!({"identifier": "", "title": "", "schema": {"properties": {}}, "relations": {}})
            }
            Document::NewAction => json!({"identifier": "", "title": "", "trigger": {
                "type": "self-service", "operation": "CREATE", "blueprintIdentifier": "",
                "userInputs": {"properties": {"name": {"type": "string", "title": "Name"}}, "required": ["name"]}},
                "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "",
                    "mapping": {"identifier": "{{ .inputs.name }}"}}}),
            Document::NewScorecard(blueprint) => {
                app.catalog.get_blueprint(blueprint).await?;
                json!({"identifier": "", "title": "", "levels": [], "rules": []})
            }
            Document::Initiative(id) => to_value(app.initiatives.record(id).await?.definition),
            Document::NewInitiative => json!({"identifier": "", "title": "", "blueprint": "service",
                "goal": {"scorecard": "", "level": ""}, "owner": "", "startsAt": portolan_model::format_millis(app.core.now()),
                "targetDate": portolan_model::format_millis(app.core.now() + 90 * portolan_model::DAY)}),
            Document::Dashboard(address) => to_value(app.dashboards.definition(actor, address).await?.0),
            Document::NewDashboard => json!({"identifier": "", "title": "", "widgets": [
                {"type": "markdown", "text": "What this dashboard is for."},
                {"type": "number", "title": "Services", "blueprint": "service"}]}),
        };
        Ok(value)
    }

    /// Saves through the services; answers the page to show next.
    async fn save(&self, app: &AppState, actor: &Actor, document: Value) -> Result<Document, Error> {
        Ok(match self {
            Document::Blueprint(id) => {
                app.catalog.update_blueprint(actor, id, document, false).await?;
                self.clone()
            }
            Document::Action(id) => {
                app.actions.put_action(actor, Some(id), document).await?;
                self.clone()
            }
            Document::Scorecard { blueprint, identifier } => {
                app.scorecards.put_scorecard(actor, blueprint, Some(identifier), document).await?;
                self.clone()
            }
            Document::BlueprintPermissions(id) => {
                app.permissions.put_blueprint_permissions(actor, id, document).await?;
                self.clone()
            }
            Document::ActionPermissions(id) => {
                app.permissions.put_action_permissions(actor, id, document).await?;
                self.clone()
            }
            Document::NewBlueprint => {
                Document::Blueprint(app.catalog.create_blueprint(actor, document).await?.blueprint.identifier)
            }
            Document::NewAction => {
                Document::Action(app.actions.put_action(actor, None, document).await?.0.action.identifier)
            }
            Document::NewScorecard(blueprint) => {
                let record = app.scorecards.put_scorecard(actor, blueprint, None, document).await?;
                Document::Scorecard { blueprint: blueprint.clone(), identifier: record.scorecard.identifier }
            }
            Document::Initiative(id) => {
                app.initiatives.put(actor, Some(id), document).await?;
                self.clone()
            }
            Document::NewInitiative => {
                Document::Initiative(app.initiatives.put(actor, None, document).await?.definition.identifier)
            }
            Document::Dashboard(address) => {
                app.dashboards.put(actor, address, document, false).await?;
                self.clone()
            }
            Document::NewDashboard => {
                let id = document.get("identifier").and_then(Value::as_str).unwrap_or_default().to_string();
                let address = Address::Shared(id);
                app.dashboards.put(actor, &address, document, true).await?;
                Document::Dashboard(address)
            }
        })
    }

    /// Whether the actor may change this (an admin, or a moderator of the blueprint it belongs
    /// to); the page then offers no Save. The services decide when it is saved.
    async fn may_change(&self, app: &AppState, actor: &Actor) -> Result<bool, Error> {
        let managed = app.permissions.managed(actor).await?;
        Ok(match self {
            Document::Blueprint(id) | Document::BlueprintPermissions(id) | Document::NewScorecard(id) => {
                managed.blueprint(id)
            }
            Document::Scorecard { blueprint, .. } => managed.blueprint(blueprint),
            Document::Action(id) | Document::ActionPermissions(id) => {
                match app.actions.get_action(actor, id).await?.action.blueprint() {
                    Some(blueprint) => managed.blueprint(blueprint),
                    None => managed.all,
                }
            }
            Document::Initiative(id) => managed.blueprint(&app.initiatives.record(id).await?.definition.blueprint),
            Document::Dashboard(address) => app.dashboards.may_edit(actor, address).await?,
            Document::NewBlueprint | Document::NewDashboard => managed.all,
            Document::NewAction | Document::NewInitiative => managed.anything(),
        })
    }

    async fn delete(&self, app: &AppState, actor: &Actor) -> Result<(), Error> {
        match self {
            Document::Blueprint(id) => app.catalog.delete_blueprint(actor, id, false).await.map(|_| ()),
            Document::Action(id) => app.actions.delete_action(actor, id).await,
            Document::Scorecard { blueprint, identifier } => {
                app.scorecards.delete_scorecard(actor, blueprint, identifier).await
            }
            Document::Initiative(id) => app.initiatives.delete(actor, id).await,
            Document::Dashboard(address) => app.dashboards.delete(actor, address).await,
            _ => Err(Error::not_found("something to delete here")),
        }
    }
}

fn to_value(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Json,
    Yaml,
}

impl Syntax {
    fn from(text: Option<&str>) -> Syntax {
        if text == Some("yaml") { Syntax::Yaml } else { Syntax::Json }
    }

    fn name(self) -> &'static str {
        match self {
            Syntax::Json => "json",
            Syntax::Yaml => "yaml",
        }
    }

    fn write(self, value: &Value) -> String {
        match self {
            Syntax::Json => serde_json::to_string_pretty(value).unwrap_or_default(),
            Syntax::Yaml => serde_saphyr::to_string(value).unwrap_or_default(),
        }
    }

    fn read(self, text: &str) -> Result<Value, String> {
        match self {
            Syntax::Json => serde_json::from_str(text).map_err(|e| format!("this is not JSON: {e}")),
            Syntax::Yaml => serde_saphyr::from_str(text).map_err(|e| format!("this is not YAML: {e}")),
        }
    }
}

/// Most bytes of a document the editor accepts (the API's body limit is larger; a definition
/// this size is already unusual).
const MAX_DOCUMENT: usize = 512 * 1024;

#[derive(Template)]
#[template(path = "admin_edit.html")]
struct EditPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    heading: String,
    path: String,
    syntax: &'static str,
    text: String,
    saved: bool,
    /// The viewer may change it: otherwise it is shown read-only, without Save or Delete.
    may_save: bool,
    deletable: Option<String>,
    error: Option<String>,
    /// Each refused field: where in the document, and why.
    problems: Vec<(String, String)>,
}

#[derive(Deserialize)]
pub struct EditQuery {
    format: Option<String>,
    saved: Option<String>,
}

#[derive(Deserialize)]
pub struct EditForm {
    csrf: String,
    format: Option<String>,
    #[serde(default)]
    document: String,
    mode: Option<String>,
    #[serde(default)]
    confirm: String,
}

async fn edit_page(
    app: &AppState,
    signed_in: &SessionActor,
    document: &Document,
    syntax: Syntax,
    text: String,
) -> Result<EditPage, Error> {
    Ok(EditPage {
        signed_in: layout_user(app, signed_in).await,
        may_save: document.may_change(app, &signed_in.actor).await?,
        csrf: signed_in.session.csrf.clone(),
        heading: document.heading(),
        path: document.path(),
        syntax: syntax.name(),
        text,
        saved: false,
        deletable: document.deletable().map(str::to_string),
        error: None,
        problems: Vec::new(),
    })
}

async fn show(app: AppState, signed_in: SessionActor, document: Document, query: EditQuery) -> PageResult {
    let syntax = Syntax::from(query.format.as_deref());
    let value = document.load(&app, &signed_in.actor).await?;
    let mut page = edit_page(&app, &signed_in, &document, syntax, syntax.write(&value)).await?;
    page.saved = query.saved.is_some();
    Ok(render(&page))
}

async fn store(
    app: AppState,
    signed_in: SessionActor,
    headers: HeaderMap,
    document: Document,
    form: EditForm,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    let actor = &signed_in.actor;
    let syntax = Syntax::from(form.format.as_deref());
    let mut page = edit_page(&app, &signed_in, &document, syntax, form.document.clone()).await?;
    let outcome = if form.mode.as_deref() == Some("delete") {
        if Some(form.confirm.trim()) != document.deletable() {
            page.error = Some("type the identifier to confirm the deletion".into());
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
        document.delete(&app, actor).await.map(|()| "/admin".to_string())
    } else if form.document.len() > MAX_DOCUMENT {
        Err(Error::new(ErrorCode::PayloadTooLarge, format!("the document is over {MAX_DOCUMENT} bytes")))
    } else {
        match syntax.read(&form.document) {
            Ok(value) => document
                .save(&app, actor, value)
                .await
                .map(|saved| format!("{}?saved=1&format={}", saved.path(), syntax.name())),
            Err(message) => Err(Error::new(ErrorCode::MalformedJson, message)),
        }
    };
    match outcome {
        Ok(next) => Ok(Redirect::to(&next).into_response()),
        Err(error) if error.code == ErrorCode::Internal => Err(error.into()),
        Err(error) => {
            let status = error.code.status();
            page.problems = error
                .details
                .iter()
                .map(|d| (shown(&d["path"]), shown(&d["message"])))
                .filter(|(_, message)| !message.is_empty())
                .collect();
            let refusal = error.denied.then(|| crate::error::Refusal(error.message.clone()));
            page.error = Some(error.message);
            let mut response = (status, render(&page)).into_response();
            if let Some(refusal) = refusal {
                response.extensions_mut().insert(refusal);
            }
            Ok(response)
        }
    }
}

macro_rules! editor {
    ($get:ident, $post:ident, $params:ty, |$p:pat_param| $document:expr) => {
        pub(super) async fn $get(
            State(app): State<AppState>,
            Visitor(signed_in): Visitor,
            PathParams($p): PathParams<$params>,
            QueryParams(query): QueryParams<EditQuery>,
        ) -> PageResult {
            show(app, signed_in, $document, query).await
        }

        pub(super) async fn $post(
            State(app): State<AppState>,
            Visitor(signed_in): Visitor,
            headers: HeaderMap,
            PathParams($p): PathParams<$params>,
            Form(form): Form<EditForm>,
        ) -> PageResult {
            store(app, signed_in, headers, $document, form).await
        }
    };
}

editor!(blueprint, save_blueprint, String, |id| Document::Blueprint(id));
editor!(action, save_action, String, |id| Document::Action(id));
editor!(scorecard, save_scorecard, (String, String), |(blueprint, identifier)| Document::Scorecard {
    blueprint,
    identifier
});
editor!(blueprint_permissions, save_blueprint_permissions, String, |id| Document::BlueprintPermissions(id));
editor!(action_permissions, save_action_permissions, String, |id| Document::ActionPermissions(id));
editor!(new_scorecard, create_scorecard, String, |blueprint| Document::NewScorecard(blueprint));
editor!(initiative, save_initiative, String, |id| Document::Initiative(id));
editor!(dashboard, save_dashboard, String, |id| Document::Dashboard(Address::Shared(id)));
editor!(team_dashboard, save_team_dashboard, String, |team| Document::Dashboard(Address::Team(team)));

macro_rules! creator {
    ($get:ident, $post:ident, $document:expr) => {
        pub(super) async fn $get(
            State(app): State<AppState>,
            Visitor(signed_in): Visitor,
            QueryParams(query): QueryParams<EditQuery>,
        ) -> PageResult {
            show(app, signed_in, $document, query).await
        }

        pub(super) async fn $post(
            State(app): State<AppState>,
            Visitor(signed_in): Visitor,
            headers: HeaderMap,
            Form(form): Form<EditForm>,
        ) -> PageResult {
            store(app, signed_in, headers, $document, form).await
        }
    };
}

creator!(new_blueprint, create_blueprint, Document::NewBlueprint);
creator!(new_action, create_action, Document::NewAction);
creator!(new_initiative, create_initiative, Document::NewInitiative);
creator!(new_dashboard, create_dashboard, Document::NewDashboard);
creator!(my_dashboard, save_my_dashboard, Document::Dashboard(Address::Personal));

// ---- the index ----

struct BlueprintEntry {
    identifier: String,
    title: String,
    scorecards: Vec<String>,
    /// The viewer may change it (and add scorecards, and set its permissions).
    manage: bool,
}

struct ActionEntry {
    identifier: String,
    title: String,
    blueprint: String,
    manage: bool,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    signed_in: Option<SignedIn>,
    managed: crate::services::permissions::Managed,
    blueprints: Vec<BlueprintEntry>,
    actions: Vec<ActionEntry>,
}

pub(super) async fn index(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let managed = app.permissions.managed(&signed_in.actor).await?;
    let mut blueprints = Vec::new();
    for record in app.catalog.list_blueprints().await? {
        let b = record.blueprint;
        let scorecards = app.scorecards.list_scorecards(&b.identifier).await?;
        blueprints.push(BlueprintEntry {
            title: b.title.clone().unwrap_or_else(|| b.identifier.clone()),
            scorecards: scorecards.into_iter().map(|s| s.scorecard.identifier).collect(),
            manage: managed.blueprint(&b.identifier),
            identifier: b.identifier,
        });
    }
    let actions = app
        .actions
        .list_actions(&signed_in.actor, None)
        .await?
        .into_iter()
        .map(|r| ActionEntry {
            title: r.action.title.clone().unwrap_or_else(|| r.action.identifier.clone()),
            blueprint: r.action.blueprint().unwrap_or_default().to_string(),
            manage: r.action.blueprint().map_or(managed.all, |b| managed.blueprint(b)),
            identifier: r.action.identifier,
        })
        .collect();
    Ok(render(&AdminPage { signed_in: layout_user(&app, &signed_in).await, managed, blueprints, actions }))
}

// ---- API tokens ----

struct TokenRow {
    id: String,
    name: String,
    user: String,
    created: present::When,
    /// `None`: never.
    expires: Option<present::When>,
    last_used: Option<present::When>,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "admin_tokens.html")]
struct TokensPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    tokens: Vec<TokenRow>,
    /// A token just made: shown this once.
    new_token: Option<String>,
    error: Option<String>,
    /// The signed-in user's client id, if they made client credentials.
    client_id: Option<String>,
    /// A client secret just made: shown this once.
    new_secret: Option<String>,
}

async fn tokens_page(
    app: &AppState,
    signed_in: &SessionActor,
    new_token: Option<String>,
    error: Option<String>,
) -> Result<TokensPage, Error> {
    let now = app.core.now();
    let when = |at: Option<i64>| at.map(|at| present::When::new(at, now));
    let tokens = app
        .identity
        .list_api_tokens(&signed_in.actor)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            created: present::When::new(t.created_at, now),
            expires: when(t.expires_at),
            last_used: when(t.last_used_at),
            revoked: t.revoked_at.is_some(),
            id: t.id,
            name: t.name,
            user: t.user,
        })
        .collect();
    let client_id = match app.identity.client_credentials(&signed_in.actor, &signed_in.actor.id).await {
        Ok(credentials) => Some(credentials.client_id),
        Err(error) if error.code == ErrorCode::NotFound => None,
        Err(error) => return Err(error),
    };
    Ok(TokensPage {
        signed_in: layout_user(app, signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        tokens,
        new_token,
        error,
        client_id,
        new_secret: None,
    })
}

/// Makes or rotates the signed-in user's client credentials; the secret is shown this once.
pub(super) async fn rotate_credentials(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    Form(form): Form<PlainForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    let (credentials, secret) = app.identity.rotate_client_credentials(&signed_in.actor, &signed_in.actor.id).await?;
    let mut page = tokens_page(&app, &signed_in, None, None).await?;
    page.client_id = Some(credentials.client_id);
    page.new_secret = Some(secret);
    let mut response = render(&page).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub(super) async fn tokens(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    Ok(render(&tokens_page(&app, &signed_in, None, None).await?))
}

#[derive(Deserialize)]
pub struct TokenForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    expires_in_days: String,
}

pub(super) async fn create_token(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    let days = match form.expires_in_days.trim() {
        "" => Ok(None),
        text => text.parse::<u32>().map(Some).map_err(|_| format!("'{text}' is not a number of days")),
    };
    let made = match days {
        Ok(days) => match app.identity.create_api_token(&signed_in.actor, None, form.name.trim(), days).await {
            Ok(made) => Ok(made),
            Err(error) if error.code == ErrorCode::Internal => return Err(error.into()),
            Err(error) => Err(error.details.first().map(|d| shown(&d["message"])).unwrap_or(error.message)),
        },
        Err(message) => Err(message),
    };
    // The new token is in this response only; it is not kept anywhere it could be shown again, so
    // it is shown even if the list of tokens cannot be read.
    let page = match made {
        Ok((_, token)) => match tokens_page(&app, &signed_in, Some(token.clone()), None).await {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(message = %error.message, "listing tokens failed");
                TokensPage {
                    signed_in: layout_user(&app, &signed_in).await,
                    csrf: signed_in.session.csrf.clone(),
                    tokens: Vec::new(),
                    new_token: Some(token),
                    error: Some("the list of tokens could not be read".into()),
                    client_id: None,
                    new_secret: None,
                }
            }
        },
        Err(message) => tokens_page(&app, &signed_in, None, Some(message)).await?,
    };
    let status = if page.new_token.is_none() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let mut response = (status, render(&page)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Deserialize)]
pub struct PlainForm {
    pub(super) csrf: String,
}

pub(super) async fn revoke_token(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
    Form(form): Form<PlainForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    app.identity.revoke_api_token(&signed_in.actor, &id).await?;
    Ok(Redirect::to("/admin/tokens").into_response())
}

// ---- secrets ----

struct SecretRow {
    name: String,
    updated: present::When,
    by: String,
}

#[derive(Template)]
#[template(path = "admin_secrets.html")]
struct SecretsPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    secrets: Vec<SecretRow>,
    error: Option<String>,
    /// The server's webhook signing key, when an admin asked to see it.
    signing_key: Option<String>,
}

async fn secrets_page(app: &AppState, signed_in: &SessionActor, error: Option<String>) -> Result<SecretsPage, Error> {
    let now = app.core.now();
    let secrets = app
        .actions
        .list_secrets(&signed_in.actor)
        .await?
        .into_iter()
        .map(|s| SecretRow { name: s.name, updated: present::When::new(s.updated_at, now), by: s.updated_by })
        .collect();
    Ok(SecretsPage {
        signed_in: layout_user(app, signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        secrets,
        error,
        signing_key: None,
    })
}

#[derive(Deserialize)]
pub struct SigningKeyForm {
    csrf: String,
    /// `show` or `rotate`.
    #[serde(default)]
    what: String,
}

/// Shows the server's webhook signing key, or rotates it and shows the new one.
pub(super) async fn signing_key(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    Form(form): Form<SigningKeyForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    let key = match form.what.as_str() {
        "rotate" => app.actions.rotate_signing_key(&signed_in.actor).await?,
        _ => app.actions.signing_key(&signed_in.actor).await?,
    };
    let mut page = secrets_page(&app, &signed_in, None).await?;
    page.signing_key = Some(key);
    let mut response = render(&page).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub(super) async fn secrets(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    Ok(render(&secrets_page(&app, &signed_in, None).await?))
}

#[derive(Deserialize)]
pub struct SecretForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
}

pub(super) async fn put_secret(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    Form(form): Form<SecretForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    match app.actions.put_secret(&signed_in.actor, form.name.trim(), &form.value).await {
        Ok(_) => Ok(Redirect::to("/admin/secrets").into_response()),
        Err(error) if error.code == ErrorCode::Internal => Err(error.into()),
        Err(error) => {
            let message = error.details.first().map(|d| shown(&d["message"])).unwrap_or(error.message);
            let page = secrets_page(&app, &signed_in, Some(message)).await?;
            Ok((StatusCode::BAD_REQUEST, render(&page)).into_response())
        }
    }
}

pub(super) async fn delete_secret(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    PathParams(name): PathParams<String>,
    Form(form): Form<PlainForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    match app.actions.delete_secret(&signed_in.actor, &name).await {
        Ok(()) => Ok(Redirect::to("/admin/secrets").into_response()),
        Err(error) if error.code == ErrorCode::Internal => Err(error.into()),
        Err(error) => {
            let page = secrets_page(&app, &signed_in, Some(error.message)).await?;
            Ok((error.code.status(), render(&page)).into_response())
        }
    }
}
