//! The web portal: pages rendered on the server (askama), usable without JavaScript, shown only
//! to signed-in users and only with what they may see. Handlers call the same services as the
//! JSON API.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use portolan_model::Entity;
use portolan_model::run::Run;
use portolan_store::RunFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{Error, ErrorCode};
use crate::extract::{ClientAddress, PathParams, QueryParams, SESSION_COOKIE, check_same_site, cookie};
use crate::keys;
use crate::services::Actor;
use crate::services::identity::SessionActor;
use crate::services::runs::RunRequest;
use crate::services::search::{AggregateRequest, SearchRequest};
use portolan_model::PropertyType;
use portolan_model::action::{InputFormat, Operation, Trigger};
use portolan_model::guardrail::{Decision, Verdict};

/// The cookie that carries the sign-in form's CSRF token before there is a session.
const LOGIN_COOKIE: &str = "__Host-portolan_login";
/// Only this server's own files; no inline script or style; never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const STYLESHEET: &str = include_str!("../static/portolan.css");
const SCRIPT: &str = include_str!("../static/portolan.js");
const PAGE_SIZE: u32 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/catalog", get(catalog))
        .route("/catalog/{blueprint}", get(blueprint_page))
        .route("/catalog/{blueprint}/{entity}", get(entity_page))
        .route("/actions", get(actions_page))
        .route("/actions/{action}", get(action_page).post(run_action))
        .route("/runs/{run}", get(run_page))
        .route("/runs/{run}/approval", axum::routing::post(decide))
        .route("/approvals", get(approvals_page))
        .route("/audit", get(audit_page))
        .route("/scorecards", get(scorecards_page))
        .route("/static/portolan.css", get(stylesheet))
        .route("/static/portolan.js", get(script))
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

/// Who is signed in, as the layout shows them.
pub struct SignedIn {
    identifier: String,
    csrf: String,
}

/// A page that went wrong, as a page a person understands.
pub struct PageError(Error);

impl From<Error> for PageError {
    fn from(error: Error) -> Self {
        PageError(error)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    signed_in: Option<SignedIn>,
    heading: String,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let Error { code, message, .. } = self.0;
        let heading = match code {
            ErrorCode::NotFound => "Not found",
            ErrorCode::Forbidden | ErrorCode::CsrfFailed => "Not allowed",
            ErrorCode::Internal => "Something went wrong",
            _ => "That did not work",
        };
        let message = if code == ErrorCode::Internal { "The server log has the cause.".to_string() } else { message };
        if code == ErrorCode::Internal {
            tracing::error!(%message, "a page failed");
        }
        let page = ErrorPage { signed_in: None, heading: heading.into(), message };
        (code.status(), render(&page)).into_response()
    }
}

type PageResult = Result<Response, PageError>;

fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!(%err, "a template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be drawn").into_response()
        }
    }
}

/// The signed-in session, or a redirect to the sign-in page that comes back here.
async fn session(app: &AppState, headers: &HeaderMap, here: &OriginalUri) -> Result<SessionActor, Response> {
    let to_login = || {
        let back = here.0.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("return_to", back).finish();
        Redirect::to(&format!("/login?{query}")).into_response()
    };
    let Some(value) = cookie(headers, SESSION_COOKIE) else { return Err(to_login()) };
    app.catalog.authenticate_session(&value).await.map_err(|_| to_login())
}

fn layout_user(session: &SessionActor) -> Option<SignedIn> {
    Some(SignedIn { identifier: session.actor.id.clone(), csrf: session.session.csrf.clone() })
}

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], SCRIPT)
        .into_response()
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], STYLESHEET)
        .into_response()
}

// ---- sign-in ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    return_to: String,
    username: String,
    error: Option<String>,
    sso: bool,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
}

fn login_form(app: &AppState, return_to: &str, username: &str, error: Option<String>, status: StatusCode) -> Response {
    let csrf = keys::random_token();
    let page = LoginPage {
        signed_in: None,
        csrf: csrf.clone(),
        return_to: return_to.to_string(),
        username: username.to_string(),
        error,
        sso: app.catalog.engine().oidc().is_some(),
    };
    let mut response = (status, render(&page)).into_response();
    let cookie = format!("{LOGIN_COOKIE}={csrf}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=3600");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn login_page(State(app): State<AppState>, QueryParams(query): QueryParams<LoginQuery>) -> Response {
    let return_to = crate::services::oidc::local_path(query.return_to.as_deref());
    login_form(&app, &return_to, "", None, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    return_to: Option<String>,
}

async fn login(
    State(app): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> PageResult {
    check_same_site(&headers)?;
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !keys::same(&form.csrf, &expected) {
        return Err(Error::new(ErrorCode::CsrfFailed, "the sign-in form expired; open it again").into());
    }
    let return_to = crate::services::oidc::local_path(form.return_to.as_deref());
    match app.catalog.login(&form.username, &form.password, &address).await {
        Ok(signed_in) => {
            let max_age = app.catalog.session_policy().absolute_ms / 1000;
            let mut response = Redirect::to(&return_to).into_response();
            for cookie in [
                format!(
                    "{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}",
                    signed_in.cookie
                ),
                format!("{LOGIN_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
            ] {
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            Ok(response)
        }
        Err(refused) => {
            let status = refused.code.status();
            let mut response = login_form(&app, &return_to, &form.username, Some(refused.message.clone()), status);
            if let Some(seconds) = refused.retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
            }
            Ok(response)
        }
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

async fn logout(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    Form(form): Form<LogoutForm>,
) -> PageResult {
    check_same_site(&headers)?;
    let signed_in = match session(&app, &headers, &uri).await {
        Ok(signed_in) => signed_in,
        Err(to_login) => return Ok(to_login),
    };
    if !keys::same(&form.csrf, &signed_in.session.csrf) {
        return Err(Error::new(ErrorCode::CsrfFailed, "the form expired; reload the page").into());
    }
    app.catalog.logout(&signed_in.actor, &signed_in.session).await?;
    let mut response = Redirect::to("/login").into_response();
    let cleared = format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

// ---- home ----

struct OwnedRow {
    blueprint: String,
    identifier: String,
    title: String,
    levels: Vec<String>,
}

struct RunRow {
    action: String,
    entity: Option<String>,
    status: String,
    by: String,
}

impl From<&Run> for RunRow {
    fn from(run: &Run) -> Self {
        RunRow {
            action: run.action_title.clone().unwrap_or_else(|| run.action.clone()),
            entity: run.entity.clone(),
            status: run.status.as_str().to_string(),
            by: run.trigger.by.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    signed_in: Option<SignedIn>,
    name: String,
    owned: Vec<OwnedRow>,
    approvals: Vec<RunRow>,
    runs: Vec<RunRow>,
}

fn title_of(entity: &Entity) -> String {
    entity.title.clone().unwrap_or_else(|| entity.identifier.clone())
}

async fn home(State(app): State<AppState>, headers: HeaderMap, uri: OriginalUri) -> PageResult {
    let signed_in = match session(&app, &headers, &uri).await {
        Ok(signed_in) => signed_in,
        Err(to_login) => return Ok(to_login),
    };
    let actor = &signed_in.actor;
    let mine = json!({"combinator": "and", "rules": [
        {"property": "$team", "operator": "containsAny", "value": {"context": "userTeams"}},
        {"property": "$blueprint", "operator": "notIn", "value": ["_user", "_team"]}]});
    let owned = app
        .catalog
        .search(actor, None, SearchRequest { query: Some(mine), limit: Some(20), ..SearchRequest::default() })
        .await?
        .entities
        .iter()
        .map(|e| OwnedRow {
            blueprint: e.blueprint.clone(),
            identifier: e.identifier.clone(),
            title: title_of(e),
            levels: e.scorecards.values().filter_map(|s| s["level"].as_str().map(str::to_string)).collect(),
        })
        .collect();
    let approvals = app.catalog.approval_inbox(actor).await?.iter().map(RunRow::from).collect();
    let filter = RunFilter { created_by: Some(actor.id.clone()), ..RunFilter::default() };
    let runs = app.catalog.list_runs(actor, filter, 10).await?.0.iter().map(RunRow::from).collect();
    let page = HomePage { name: actor.id.clone(), signed_in: layout_user(&signed_in), owned, approvals, runs };
    Ok(render(&page))
}

// ---- the catalog ----

struct BlueprintRow {
    identifier: String,
    title: String,
    description: String,
    count: u64,
}

#[derive(Template)]
#[template(path = "catalog.html")]
struct CatalogPage {
    signed_in: Option<SignedIn>,
    blueprints: Vec<BlueprintRow>,
}

async fn count(app: &AppState, actor: &Actor, blueprint: &str) -> Result<u64, Error> {
    let request = AggregateRequest {
        query: None,
        blueprint: Some(blueprint.to_string()),
        function: "count".into(),
        property: None,
        relation: None,
        scorecard: None,
    };
    Ok(match app.catalog.aggregate(actor, request).await? {
        portolan_store::query_sql::AggregateResult::Value(v) => v.unwrap_or(0.0) as u64,
        portolan_store::query_sql::AggregateResult::Groups(_) => 0,
    })
}

async fn catalog(State(app): State<AppState>, headers: HeaderMap, uri: OriginalUri) -> PageResult {
    let signed_in = match session(&app, &headers, &uri).await {
        Ok(signed_in) => signed_in,
        Err(to_login) => return Ok(to_login),
    };
    let mut blueprints = Vec::new();
    for record in app.catalog.list_blueprints().await? {
        let b = record.blueprint;
        blueprints.push(BlueprintRow {
            count: count(&app, &signed_in.actor, &b.identifier).await?,
            title: b.title.clone().unwrap_or_else(|| b.identifier.clone()),
            description: b.description.clone().unwrap_or_default(),
            identifier: b.identifier,
        });
    }
    Ok(render(&CatalogPage { signed_in: layout_user(&signed_in), blueprints }))
}

struct EntityRow {
    identifier: String,
    title: String,
    teams: String,
    values: Vec<String>,
}

#[derive(Template)]
#[template(path = "blueprint.html")]
struct BlueprintPage {
    signed_in: Option<SignedIn>,
    identifier: String,
    title: String,
    q: String,
    columns: Vec<String>,
    rows: Vec<EntityRow>,
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct TableQuery {
    q: Option<String>,
    cursor: Option<String>,
}

/// A property value as a table cell or a definition shows it.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(shown).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

async fn blueprint_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    PathParams(blueprint): PathParams<String>,
    QueryParams(query): QueryParams<TableQuery>,
) -> PageResult {
    let signed_in = match session(&app, &headers, &uri).await {
        Ok(signed_in) => signed_in,
        Err(to_login) => return Ok(to_login),
    };
    let record = app.catalog.get_blueprint(&blueprint).await?;
    let q = query.q.unwrap_or_default();
    let filter = (!q.trim().is_empty()).then(
        || json!({"combinator": "and", "rules": [{"property": "$title", "operator": "contains", "value": q.trim()}]}),
    );
    let request = SearchRequest {
        query: filter,
        limit: Some(PAGE_SIZE),
        cursor: query.cursor,
        sort: None,
        ..SearchRequest::default()
    };
    let page = app.catalog.search(&signed_in.actor, Some(&blueprint), request).await?;
    let columns: Vec<String> = record.blueprint.schema.properties.keys().take(4).cloned().collect();
    let rows = page
        .entities
        .iter()
        .map(|e| EntityRow {
            identifier: e.identifier.clone(),
            title: title_of(e),
            teams: e.team.join(", "),
            values: columns.iter().map(|c| e.properties.get(c).map(shown).unwrap_or_default()).collect(),
        })
        .collect();
    let title = record.blueprint.title.clone().unwrap_or_else(|| blueprint.clone());
    let page = BlueprintPage {
        signed_in: layout_user(&signed_in),
        identifier: blueprint,
        title,
        q,
        columns,
        rows,
        next: page.next,
    };
    Ok(render(&page))
}

struct PropertyRow {
    name: String,
    value: String,
    link: bool,
}

struct RelationRow {
    name: String,
    blueprint: String,
    targets: Vec<String>,
}

struct ScorecardRow {
    name: String,
    level: String,
}

struct EntityRun {
    id: String,
    action: String,
    change: String,
    status: String,
}

#[derive(Template)]
#[template(path = "entity.html")]
struct EntityPage {
    signed_in: Option<SignedIn>,
    blueprint: String,
    identifier: String,
    title: String,
    version: i64,
    teams: Vec<String>,
    properties: Vec<PropertyRow>,
    relations: Vec<RelationRow>,
    scorecards: Vec<ScorecardRow>,
    actions: Vec<ActionLink>,
    runs: Vec<EntityRun>,
    history: Vec<String>,
}

async fn entity_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
) -> PageResult {
    let signed_in = match session(&app, &headers, &uri).await {
        Ok(signed_in) => signed_in,
        Err(to_login) => return Ok(to_login),
    };
    let definition = app.catalog.get_blueprint(&blueprint).await?.blueprint;
    let entity = app.catalog.get_entity(&signed_in.actor, &blueprint, &identifier).await?;
    let properties = entity
        .properties
        .iter()
        .map(|(name, value)| {
            let value = shown(value);
            let link = value.starts_with("https://") || value.starts_with("http://");
            PropertyRow { name: name.clone(), value, link }
        })
        .collect();
    let relations = entity
        .relations
        .iter()
        .filter_map(|(name, value)| {
            let target = definition.relations.get(name)?.target.clone();
            let targets: Vec<String> = match value {
                Value::String(one) => vec![one.clone()],
                Value::Array(many) => many.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
                _ => vec![],
            };
            (!targets.is_empty()).then_some(RelationRow { name: name.clone(), blueprint: target, targets })
        })
        .collect();
    let scorecards = entity
        .scorecards
        .iter()
        .map(|(name, result)| ScorecardRow { name: name.clone(), level: shown(&result["level"]) })
        .collect();
    let actor = &signed_in.actor;
    let actions = app
        .catalog
        .list_actions(actor, Some(&blueprint))
        .await?
        .into_iter()
        .map(|r| r.action)
        .filter(|a| matches!(a.trigger, Trigger::SelfService { .. }))
        .filter(|a| matches!(a.operation(), Some(Operation::Day2 | Operation::Delete)))
        .map(|a| ActionLink {
            title: a.title.clone().unwrap_or_else(|| a.identifier.clone()),
            description: String::new(),
            needs_entity: true,
            identifier: a.identifier,
        })
        .collect();
    let runs = app
        .catalog
        .entity_runs(actor, &blueprint, &identifier)
        .await?
        .into_iter()
        .take(10)
        .map(|(run, change)| EntityRun {
            action: run.action_title.clone().unwrap_or_else(|| run.action.clone()),
            status: run.status.as_str().to_string(),
            change,
            id: run.id,
        })
        .collect();
    let history = app
        .catalog
        .entity_history(actor, &blueprint, &identifier, None, 10)
        .await?
        .0
        .iter()
        .map(|r| format!("{} {} by {}", portolan_model::format_millis(r.entry.at), r.entry.action, r.entry.actor))
        .collect();
    let page = EntityPage {
        signed_in: layout_user(&signed_in),
        actions,
        runs,
        history,
        title: title_of(&entity),
        blueprint,
        identifier,
        version: entity.version,
        teams: entity.team.clone(),
        properties,
        relations,
        scorecards,
    };
    Ok(render(&page))
}

// ---- self-service ----

struct ActionLink {
    identifier: String,
    title: String,
    description: String,
    needs_entity: bool,
}

struct ActionGroup {
    title: String,
    actions: Vec<ActionLink>,
}

#[derive(Template)]
#[template(path = "actions.html")]
struct ActionsPage {
    signed_in: Option<SignedIn>,
    groups: Vec<ActionGroup>,
}

async fn actions_page(State(app): State<AppState>, headers: HeaderMap, uri: OriginalUri) -> PageResult {
    let signed_in = match session(&app, &headers, &uri).await {
        Ok(signed_in) => signed_in,
        Err(to_login) => return Ok(to_login),
    };
    let mut groups: Vec<ActionGroup> = Vec::new();
    for record in app.catalog.list_actions(&signed_in.actor, None).await? {
        let action = record.action;
        if !matches!(action.trigger, Trigger::SelfService { .. }) {
            continue;
        }
        let group_title = action.blueprint().unwrap_or("General").to_string();
        let link = ActionLink {
            needs_entity: matches!(action.operation(), Some(Operation::Day2 | Operation::Delete)),
            title: action.title.clone().unwrap_or_else(|| action.identifier.clone()),
            description: action.description.clone().unwrap_or_default(),
            identifier: action.identifier,
        };
        match groups.iter_mut().find(|g| g.title == group_title) {
            Some(group) => group.actions.push(link),
            None => groups.push(ActionGroup { title: group_title, actions: vec![link] }),
        }
    }
    Ok(render(&ActionsPage { signed_in: layout_user(&signed_in), groups }))
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

struct Field {
    name: String,
    label: String,
    help: String,
    kind: &'static str,
    value: String,
    required: bool,
    options: Vec<Choice>,
    error: String,
}

struct EntityPicker {
    label: String,
    options: Vec<Choice>,
}

struct Preview {
    verdicts: Vec<Verdict>,
    rendered: String,
}

#[derive(Template)]
#[template(path = "action.html")]
struct ActionPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    identifier: String,
    title: String,
    description: String,
    guardrails: Vec<String>,
    entity_picker: Option<EntityPicker>,
    fields: Vec<Field>,
    error: Option<String>,
    preview: Option<Preview>,
}

/// Entities of `blueprint` the user may read, as choices (at most a page of them).
async fn choices(app: &AppState, actor: &Actor, blueprint: &str, selected: &str) -> Result<Vec<Choice>, Error> {
    let request = SearchRequest { limit: Some(200), ..SearchRequest::default() };
    let page = app.catalog.search(actor, Some(blueprint), request).await?;
    Ok(page
        .entities
        .iter()
        .map(|e| Choice { value: e.identifier.clone(), label: title_of(e), selected: e.identifier == selected })
        .collect())
}

/// What a person should know before running an action, in words.
fn guardrail_notes(action: &portolan_model::action::Action) -> Vec<String> {
    let rails = &action.guardrails;
    let mut notes = Vec::new();
    if let Some(rule) = action.approval() {
        let who = rule
            .approvers
            .as_ref()
            .map(|a| {
                [&a.users, &a.teams, &a.roles].iter().flat_map(|l| l.iter()).cloned().collect::<Vec<_>>().join(", ")
            })
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "an approver".into());
        notes.push(format!("Needs approval from {who} before it runs."));
    }
    for quota in &rails.quotas {
        let per = match quota.per {
            portolan_model::guardrail::QuotaScope::User => "per person",
            portolan_model::guardrail::QuotaScope::Team => "per team",
            portolan_model::guardrail::QuotaScope::Action => "in all",
        };
        notes.push(format!("At most {} runs {per} every {} h.", quota.max, quota.period_hours));
    }
    notes.extend(rails.freezes.iter().map(|f| format!("Does not run during '{}'.", f.title)));
    notes.extend(rails.preconditions.iter().map(|p| format!("Only when: {}.", p.title)));
    notes
}

async fn action_form(
    app: &AppState,
    signed_in: &SessionActor,
    identifier: &str,
    values: &serde_json::Map<String, Value>,
    entity: &str,
) -> Result<ActionPage, Error> {
    let action = app.catalog.get_action(&signed_in.actor, identifier).await?.action;
    let Trigger::SelfService { user_inputs, operation, blueprint_identifier, .. } = &action.trigger else {
        return Err(Error::not_found(format!("action '{identifier}'")));
    };
    let entity_picker = match (operation, blueprint_identifier) {
        (Operation::Day2 | Operation::Delete, Some(blueprint)) => Some(EntityPicker {
            label: format!("Which {blueprint}"),
            options: choices(app, &signed_in.actor, blueprint, entity).await?,
        }),
        _ => None,
    };
    let mut names: Vec<String> = user_inputs.order.clone();
    names.extend(user_inputs.steps.iter().flat_map(|s| s.order.iter().cloned()));
    names.extend(user_inputs.properties.keys().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| user_inputs.properties.contains_key(n) && seen.insert(n.clone()));
    let mut fields = Vec::new();
    for name in names {
        let input = &user_inputs.properties[&name];
        let value = values.get(&name).or(input.default.as_ref()).map(shown).unwrap_or_default();
        let picked_from = match input.format {
            Some(InputFormat::Entity) => input.blueprint.clone(),
            Some(InputFormat::User) => Some(portolan_model::system::USER.to_string()),
            Some(InputFormat::Team) => Some(portolan_model::system::TEAM.to_string()),
            _ => None,
        };
        let options = match (&input.enum_values, picked_from) {
            (Some(values), _) => values
                .iter()
                .map(|v| Choice { value: shown(v), label: shown(v), selected: shown(v) == value })
                .collect(),
            (None, Some(blueprint)) => choices(app, &signed_in.actor, &blueprint, &value).await?,
            (None, None) => Vec::new(),
        };
        let kind = match (input.kind, input.format) {
            (PropertyType::Boolean, _) => "checkbox",
            (PropertyType::Number, _) => "number",
            (_, Some(InputFormat::Markdown | InputFormat::Yaml | InputFormat::MultiLine))
            | (PropertyType::Array, _) => "textarea",
            (_, Some(InputFormat::Email)) => "email",
            (_, Some(InputFormat::Url)) => "url",
            _ => "text",
        };
        fields.push(Field {
            label: input.title.clone().unwrap_or_else(|| name.clone()),
            help: input.description.clone().unwrap_or_default(),
            required: user_inputs.required.contains(&name),
            name,
            kind,
            value,
            options,
            error: String::new(),
        });
    }
    Ok(ActionPage {
        signed_in: layout_user(signed_in),
        csrf: signed_in.session.csrf.clone(),
        identifier: action.identifier.clone(),
        title: action.title.clone().unwrap_or_else(|| action.identifier.clone()),
        description: action.description.clone().unwrap_or_default(),
        guardrails: guardrail_notes(&action),
        entity_picker,
        fields,
        error: None,
        preview: None,
    })
}

#[derive(Deserialize)]
pub struct ActionQuery {
    entity: Option<String>,
}

async fn action_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    PathParams(identifier): PathParams<String>,
    QueryParams(query): QueryParams<ActionQuery>,
) -> PageResult {
    let signed_in = match session(&app, &headers, &uri).await {
        Ok(signed_in) => signed_in,
        Err(to_login) => return Ok(to_login),
    };
    let page =
        action_form(&app, &signed_in, &identifier, &Default::default(), query.entity.as_deref().unwrap_or("")).await?;
    Ok(render(&page))
}

/// The form's values typed as the action's inputs say (`in.<name>` fields).
fn typed_inputs(
    inputs: &portolan_model::action::UserInputs,
    form: &std::collections::HashMap<String, String>,
) -> serde_json::Map<String, Value> {
    let mut values = serde_json::Map::new();
    for (name, input) in &inputs.properties {
        let raw = form.get(&format!("in.{name}")).map(|v| v.trim().to_string());
        let value = match (input.kind, raw) {
            (PropertyType::Boolean, raw) => Value::Bool(raw.as_deref() == Some("true")),
            (_, None) => continue,
            (_, Some(raw)) if raw.is_empty() => continue,
            // Only a finite number is a number; anything else goes on as text, for validation to refuse.
            (PropertyType::Number, Some(raw)) => match raw.parse::<f64>() {
                Ok(n) if n.is_finite() => Value::from(n),
                _ => Value::String(raw),
            },
            (PropertyType::Array, Some(raw)) => {
                Value::Array(raw.split([',', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(Value::from).collect())
            }
            (_, Some(raw)) => Value::String(raw),
        };
        values.insert(name.clone(), value);
    }
    values
}

async fn run_action(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    PathParams(identifier): PathParams<String>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> PageResult {
    check_same_site(&headers)?;
    let signed_in = match session(&app, &headers, &uri).await {
        Ok(signed_in) => signed_in,
        Err(to_login) => return Ok(to_login),
    };
    if !keys::same(form.get("csrf").map(String::as_str).unwrap_or(""), &signed_in.session.csrf) {
        return Err(Error::new(ErrorCode::CsrfFailed, "the form expired; reload the page").into());
    }
    let action = app.catalog.get_action(&signed_in.actor, &identifier).await?.action;
    let Trigger::SelfService { user_inputs, .. } = &action.trigger else {
        return Err(Error::not_found(format!("action '{identifier}'")).into());
    };
    let properties = typed_inputs(user_inputs, &form);
    let entity = form.get("entity").cloned().filter(|e| !e.is_empty());
    let request = || RunRequest { properties: properties.clone(), entity: entity.clone(), override_reason: None };
    let mut page = action_form(&app, &signed_in, &identifier, &properties, entity.as_deref().unwrap_or("")).await?;
    if form.get("mode").map(String::as_str) == Some("dry") {
        match app.catalog.dry_run(&signed_in.actor, &identifier, request()).await {
            Ok(dry) => {
                let rendered = dry.rendered.map(|r| serde_json::to_string_pretty(&r).unwrap_or_default());
                page.preview = Some(Preview {
                    verdicts: dry.guardrails,
                    rendered: rendered.or(dry.render_error).unwrap_or_default(),
                });
            }
            Err(error) => explain(&mut page, error),
        }
        return Ok(render(&page));
    }
    match app.catalog.create_run(&signed_in.actor, &identifier, request()).await {
        Ok(run) => Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response()),
        Err(error) => {
            let status = error.code.status();
            explain(&mut page, error);
            Ok((status, render(&page)).into_response())
        }
    }
}

/// Puts a refusal on the form: each field's own message beside it, the rest at the top.
fn explain(page: &mut ActionPage, error: Error) {
    for detail in &error.details {
        let path = detail["path"].as_str().unwrap_or_default();
        if let Some(field) = page.fields.iter_mut().find(|f| path == format!("/properties/{}", f.name)) {
            field.error = detail["message"].as_str().unwrap_or_default().to_string();
        }
    }
    page.error = Some(error.message);
}

// ---- runs and approvals ----

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    id: String,
    action: String,
    status: String,
    by: String,
    at: String,
    blueprint: String,
    entity: Option<String>,
    reason: Option<String>,
    summary: Option<String>,
    links: Vec<String>,
    may_decide: bool,
    decisions: Vec<String>,
    logs: Vec<String>,
    /// The last log line shown, where the live stream goes on from.
    last_log: i64,
    ended: bool,
}

async fn run_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    PathParams(id): PathParams<String>,
) -> PageResult {
    let signed_in = match session(&app, &headers, &uri).await {
        Ok(signed_in) => signed_in,
        Err(to_login) => return Ok(to_login),
    };
    let actor = &signed_in.actor;
    let (run, _) = app.catalog.get_run(actor, &id).await?;
    let logs = app.catalog.run_logs(actor, &id, 0, 500).await?;
    let may_decide = run.status == portolan_model::run::RunStatus::WaitingForApproval
        && app.catalog.may_decide_on(actor, &run).await?;
    let decisions = run
        .approval
        .iter()
        .flat_map(|a| a.decisions.iter())
        .map(|d| {
            let said = d.comment.clone().filter(|c| !c.is_empty()).map(|c| format!(": {c}")).unwrap_or_default();
            format!("{:?} by {} at {}{said}", d.decision, d.by, portolan_model::format_millis(d.at))
        })
        .collect();
    let page = RunPage {
        signed_in: layout_user(&signed_in),
        csrf: signed_in.session.csrf.clone(),
        action: run.action_title.clone().unwrap_or_else(|| run.action.clone()),
        status: run.status.as_str().to_string(),
        by: run.trigger.by.clone(),
        at: portolan_model::format_millis(run.created_at),
        blueprint: run.blueprint.clone().unwrap_or_default(),
        entity: run.entity.clone(),
        reason: run.reason.clone(),
        summary: run.summary.clone(),
        links: run.links.clone(),
        may_decide,
        decisions,
        logs: logs
            .iter()
            .map(|l| format!("{} [{}] {}", portolan_model::format_millis(l.at), l.stream, l.message))
            .collect(),
        last_log: logs.last().map_or(0, |l| l.seq),
        ended: run.status.is_terminal(),
        id: run.id,
    };
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct DecisionForm {
    csrf: String,
    decision: String,
    comment: Option<String>,
}

async fn decide(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    PathParams(id): PathParams<String>,
    Form(form): Form<DecisionForm>,
) -> PageResult {
    check_same_site(&headers)?;
    let signed_in = match session(&app, &headers, &uri).await {
        Ok(signed_in) => signed_in,
        Err(to_login) => return Ok(to_login),
    };
    if !keys::same(&form.csrf, &signed_in.session.csrf) {
        return Err(Error::new(ErrorCode::CsrfFailed, "the form expired; reload the page").into());
    }
    let decision = match form.decision.as_str() {
        "APPROVE" => Decision::Approve,
        _ => Decision::Decline,
    };
    let comment = form.comment.filter(|c| !c.trim().is_empty());
    app.catalog.decide_run(&signed_in.actor, &id, decision, comment).await?;
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}

struct WaitingRun {
    id: String,
    action: String,
    entity: Option<String>,
    by: String,
    inputs: String,
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage {
    signed_in: Option<SignedIn>,
    runs: Vec<WaitingRun>,
}

async fn approvals_page(State(app): State<AppState>, headers: HeaderMap, uri: OriginalUri) -> PageResult {
    let signed_in = match session(&app, &headers, &uri).await {
        Ok(signed_in) => signed_in,
        Err(to_login) => return Ok(to_login),
    };
    let runs = app
        .catalog
        .approval_inbox(&signed_in.actor)
        .await?
        .into_iter()
        .map(|run| WaitingRun {
            action: run.action_title.clone().unwrap_or_else(|| run.action.clone()),
            entity: run.entity.clone(),
            by: run.trigger.by.clone(),
            inputs: serde_json::to_string_pretty(&run.inputs).unwrap_or_default(),
            id: run.id,
        })
        .collect();
    Ok(render(&ApprovalsPage { signed_in: layout_user(&signed_in), runs }))
}

// ---- the audit log ----

struct AuditRow {
    seq: i64,
    at: String,
    actor: String,
    origin: String,
    action: String,
    resource: String,
    status: String,
    diff: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    signed_in: Option<SignedIn>,
    resource_type: String,
    action: String,
    actor: String,
    records: Vec<AuditRow>,
    next: Option<i64>,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    resource_type: Option<String>,
    action: Option<String>,
    actor: Option<String>,
    cursor: Option<i64>,
}

async fn audit_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    QueryParams(query): QueryParams<AuditQuery>,
) -> PageResult {
    let signed_in = match session(&app, &headers, &uri).await {
        Ok(signed_in) => signed_in,
        Err(to_login) => return Ok(to_login),
    };
    let given = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let filter = portolan_store::AuditFilter {
        resource_type: given(&query.resource_type),
        action: given(&query.action),
        actor: given(&query.actor),
        before: query.cursor,
        ..portolan_store::AuditFilter::default()
    };
    let (records, next) = app.catalog.audit_log(&signed_in.actor, filter, PAGE_SIZE).await?;
    let records = records
        .into_iter()
        .map(|r| {
            let e = r.entry;
            let on = match &e.blueprint {
                Some(b) if e.resource_type == "entity" => format!("{b}/{}", e.resource_id),
                _ => format!("{} {}", e.resource_type, e.resource_id),
            };
            AuditRow {
                seq: r.seq,
                at: portolan_model::format_millis(e.at),
                actor: e.actor,
                origin: e.origin,
                action: e.action,
                resource: on,
                status: e.status,
                diff: e.diff.map(|d| serde_json::to_string_pretty(&d).unwrap_or_default()).unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
            }
        })
        .collect();
    let page = AuditPage {
        signed_in: layout_user(&signed_in),
        resource_type: query.resource_type.unwrap_or_default(),
        action: query.action.unwrap_or_default(),
        actor: query.actor.unwrap_or_default(),
        records,
        next,
    };
    Ok(render(&page))
}

// ---- scorecards ----

struct TeamLevels {
    team: String,
    counts: Vec<u64>,
}

struct FailingRule {
    rule: String,
    count: u64,
}

struct CardView {
    title: String,
    blueprint: String,
    levels: Vec<String>,
    totals: Vec<u64>,
    teams: Vec<TeamLevels>,
    failing: Vec<FailingRule>,
}

#[derive(Template)]
#[template(path = "scorecards.html")]
struct ScorecardsPage {
    signed_in: Option<SignedIn>,
    cards: Vec<CardView>,
}

/// Entities whose failing rules are counted per scorecard (the first ones, by identifier).
const FAILING_SAMPLE: u32 = 1_000;

async fn scorecards_page(State(app): State<AppState>, headers: HeaderMap, uri: OriginalUri) -> PageResult {
    let signed_in = match session(&app, &headers, &uri).await {
        Ok(signed_in) => signed_in,
        Err(to_login) => return Ok(to_login),
    };
    let actor = &signed_in.actor;
    let mut cards = Vec::new();
    for blueprint in app.catalog.list_blueprints().await? {
        let id = blueprint.blueprint.identifier;
        let scorecards = app.catalog.list_scorecards(&id).await?;
        if scorecards.is_empty() {
            continue;
        }
        let sample = SearchRequest { limit: Some(FAILING_SAMPLE), ..SearchRequest::default() };
        let entities = app.catalog.search(actor, Some(&id), sample).await?.entities;
        for record in scorecards {
            let card = record.scorecard;
            let summary = app.catalog.scorecard_summary(actor, &id, &card.identifier).await?;
            let levels: Vec<String> = summary.levels.iter().map(|l| l.level.clone()).collect();
            let teams = summary
                .teams
                .iter()
                .map(|(team, counts)| TeamLevels {
                    team: if team.is_empty() { "(no team)".into() } else { team.clone() },
                    counts: levels.iter().map(|l| counts.get(l).copied().unwrap_or(0)).collect(),
                })
                .collect();
            let mut failing: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
            for entity in &entities {
                let rules = entity.scorecards.get(&card.identifier).and_then(|r| r["rules"].as_array().cloned());
                for rule in rules.unwrap_or_default().iter().filter(|r| r["status"] == "FAILURE") {
                    let name = rule["title"].as_str().or(rule["identifier"].as_str()).unwrap_or_default();
                    *failing.entry(name.to_string()).or_default() += 1;
                }
            }
            let mut failing: Vec<FailingRule> =
                failing.into_iter().map(|(rule, count)| FailingRule { rule, count }).collect();
            failing.sort_by_key(|f| std::cmp::Reverse(f.count));
            failing.truncate(5);
            cards.push(CardView {
                title: card.title.clone().unwrap_or_else(|| card.identifier.clone()),
                blueprint: id.clone(),
                totals: summary.levels.iter().map(|l| l.count).collect(),
                levels,
                teams,
                failing,
            });
        }
    }
    Ok(render(&ScorecardsPage { signed_in: layout_user(&signed_in), cards }))
}
