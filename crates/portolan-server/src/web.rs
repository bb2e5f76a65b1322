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
use crate::services::search::{AggregateRequest, SearchRequest};

/// The cookie that carries the sign-in form's CSRF token before there is a session.
const LOGIN_COOKIE: &str = "__Host-portolan_login";
/// Only this server's own files; no inline script or style; never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const STYLESHEET: &str = include_str!("../static/portolan.css");
const PAGE_SIZE: u32 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/catalog", get(catalog))
        .route("/catalog/{blueprint}", get(blueprint_page))
        .route("/catalog/{blueprint}/{entity}", get(entity_page))
        .route("/static/portolan.css", get(stylesheet))
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
    let page = EntityPage {
        signed_in: layout_user(&signed_in),
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
