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

use crate::error::{Error, ErrorCode};
use crate::extract::{ClientAddress, PathParams, QueryParams, SESSION_COOKIE, check_same_site, cookie};
use crate::keys;
use crate::services::Actor;
use crate::services::identity::SessionActor;
use crate::services::runs::RunRequest;
use crate::services::search::{AggregateRequest, SearchRequest};
use crate::state::AppState;
use portolan_model::PropertyType;
use portolan_model::action::{Operation, Trigger};
use portolan_model::blueprint::number_from_text;
use portolan_model::guardrail::{Decision, Verdict};
use portolan_model::ident::url_segment;

/// The cookie that carries the sign-in form's CSRF token before there is a session.
const LOGIN_COOKIE: &str = "__Host-portolan_login";
/// Only this server's own files; no inline script or style; never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const STYLESHEET: &str = include_str!("../../static/portolan.css");
const SCRIPT: &str = include_str!("../../static/portolan.js");
const PAGE_SIZE: u32 = 50;

/// Template filters: `segment` puts an identifier into a link as one path segment.
mod filters {
    #[askama::filter_fn]
    pub fn segment(value: impl std::fmt::Display, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(portolan_model::ident::url_segment(&value.to_string()).into_owned())
    }
}

mod admin;
mod assistants;
mod audit;
mod catalog;
mod chart;
mod dashboards;
mod dora;
mod entity;
mod gallery;
mod inbox;
mod initiatives;
mod integrations;
mod locations;
mod oauth;
mod present;
mod scorecards;
mod search;
mod selfservice;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(catalog::home))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/search", get(search::search_page))
        .route("/suggest", get(search::suggest))
        .route("/catalog", get(catalog::catalog))
        .route("/catalog/{blueprint}", get(catalog::blueprint_page))
        .route("/facets/{blueprint}", get(catalog::facets_fragment))
        .route("/catalog/{blueprint}/{entity}", get(entity::entity_page))
        .route("/actions", get(selfservice::actions_page))
        .route("/actions/{action}", get(selfservice::action_page).post(selfservice::run_action))
        .route("/runs/{run}", get(selfservice::run_page))
        .route("/runs/{run}/approval", axum::routing::post(selfservice::decide))
        .route("/runs/{run}/cancel", axum::routing::post(selfservice::cancel))
        .route("/actions/{action}/state", axum::routing::post(selfservice::form_state))
        .route("/approvals", get(selfservice::approvals_page))
        .route("/audit", get(audit::audit_page))
        .route("/assistants", get(assistants::assistants_page))
        .route("/inbox", get(inbox::inbox_page))
        .route("/inbox/read", axum::routing::post(inbox::mark_all_read))
        .route("/inbox/preferences", axum::routing::post(inbox::save_preferences))
        .route("/inbox/teams/{team}", axum::routing::post(inbox::save_team_preferences))
        .route("/slack/link", get(inbox::slack_link_page).post(inbox::link_slack))
        .route("/slack/unlink", axum::routing::post(inbox::unlink_slack))
        .route("/oauth/authorize", get(oauth::consent_page).post(oauth::decide))
        .route("/scorecards", get(scorecards::scorecards_page))
        .route("/dora", get(dora::dora_page))
        .route("/dashboards", get(dashboards::dashboards_page))
        .route("/dashboards/me", get(dashboards::my_page))
        .route("/dashboards/teams/{team}", get(dashboards::team_page))
        .route("/dashboards/{dashboard}", get(dashboards::shared_page))
        .route("/initiatives", get(initiatives::initiatives_page))
        .route("/initiatives/{initiative}", get(initiatives::initiative_page))
        .route("/initiatives/{initiative}/remind", axum::routing::post(initiatives::remind))
        .route("/initiatives/{initiative}/promote", axum::routing::post(initiatives::promote))
        .route("/admin", get(admin::index))
        .route("/integrations", get(integrations::integrations_page).post(integrations::create_integration))
        .route("/integrations/test-mapping", get(integrations::test_mapping_page).post(integrations::run_test_mapping))
        .route("/integrations/{integration}", get(integrations::events_page))
        .route("/integrations/ocean/{installation}", get(integrations::installation_page))
        .route("/integrations/{integration}/sync", axum::routing::post(integrations::sync_integration))
        .route("/integrations/{integration}/rotate-key", axum::routing::post(integrations::rotate_key))
        .route("/gallery", get(gallery::gallery_page))
        .route("/gallery/{template}", get(gallery::gallery_template).post(gallery::install))
        .route("/locations", get(locations::locations_page))
        .route("/locations/{location}/sync", axum::routing::post(locations::sync_now))
        .route("/admin/blueprints/{blueprint}", get(admin::blueprint).post(admin::save_blueprint))
        .route(
            "/admin/blueprints/{blueprint}/permissions",
            get(admin::blueprint_permissions).post(admin::save_blueprint_permissions),
        )
        .route("/admin/actions/{action}", get(admin::action).post(admin::save_action))
        .route(
            "/admin/actions/{action}/permissions",
            get(admin::action_permissions).post(admin::save_action_permissions),
        )
        .route("/admin/scorecards/{blueprint}/{scorecard}", get(admin::scorecard).post(admin::save_scorecard))
        .route("/admin/new/blueprint", get(admin::new_blueprint).post(admin::create_blueprint))
        .route("/admin/new/action", get(admin::new_action).post(admin::create_action))
        .route("/admin/new/scorecard/{blueprint}", get(admin::new_scorecard).post(admin::create_scorecard))
        .route("/admin/initiatives/{initiative}", get(admin::initiative).post(admin::save_initiative))
        .route("/admin/dashboards/me", get(admin::my_dashboard).post(admin::save_my_dashboard))
        .route("/admin/dashboards/teams/{team}", get(admin::team_dashboard).post(admin::save_team_dashboard))
        .route("/admin/dashboards/{dashboard}", get(admin::dashboard).post(admin::save_dashboard))
        .route("/admin/new/dashboard", get(admin::new_dashboard).post(admin::create_dashboard))
        .route("/admin/new/initiative", get(admin::new_initiative).post(admin::create_initiative))
        .route("/admin/tokens", get(admin::tokens).post(admin::create_token))
        .route("/admin/tokens/{token}/revoke", axum::routing::post(admin::revoke_token))
        .route("/admin/tokens/credentials", axum::routing::post(admin::rotate_credentials))
        .route("/admin/secrets", get(admin::secrets).post(admin::put_secret))
        .route("/admin/secrets/{secret}/delete", axum::routing::post(admin::delete_secret))
        .route("/admin/signing-key", axum::routing::post(admin::signing_key))
        .route("/static/portolan.css", get(stylesheet))
        .route("/static/portolan.js", get(script))
        // A page may set a policy of its own (the consent page lets its form lead to the client).
        .layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(
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
    /// An admin, or a moderator of some blueprint: the administration pages are theirs.
    administers: bool,
    /// Notifications not read yet, on the inbox link.
    unread: u64,
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
        let Error { code, message, denied, .. } = self.0;
        let refusal = denied.then(|| crate::error::Refusal(message.clone()));
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
        let mut response = (code.status(), render(&page)).into_response();
        if let Some(refusal) = refusal {
            response.extensions_mut().insert(refusal);
        }
        response
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

/// The signed-in user of a page. Without a session the request is sent to sign in, and back
/// here afterwards.
pub struct Visitor(pub SessionActor);

impl axum::extract::FromRequestParts<AppState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &AppState) -> Result<Self, Response> {
        let to_login = || {
            let here = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |original| &original.0);
            let back = here.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("return_to", back).finish();
            Redirect::to(&format!("/login?{query}")).into_response()
        };
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else { return Err(to_login()) };
        let signed_in = app.identity.authenticate_session(&value).await.map_err(|_| to_login())?;
        if let Some(slot) = parts.extensions.get::<crate::extract::CallerSlot>() {
            slot.fill(&signed_in.actor.id);
        }
        Ok(Visitor(signed_in))
    }
}

/// A form post must come from this site and carry the session's CSRF token.
fn check_form(headers: &HeaderMap, signed_in: &SessionActor, csrf: &str) -> Result<(), PageError> {
    check_same_site(headers)?;
    if !keys::same(csrf, &signed_in.session.csrf) {
        return Err(Error::new(ErrorCode::CsrfFailed, "the form expired; reload the page").into());
    }
    Ok(())
}

async fn layout_user(app: &AppState, session: &SessionActor) -> Option<SignedIn> {
    // Only a link is hidden by this; when it cannot be told, the link is left out.
    let administers = app.permissions.managed(&session.actor).await.is_ok_and(|m| m.anything());
    let unread = app.notifications.unread(&session.actor).await.unwrap_or(0);
    Some(SignedIn { identifier: session.actor.id.clone(), csrf: session.session.csrf.clone(), administers, unread })
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
        sso: app.oidc.enabled(),
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
    match app.identity.login(&form.username, &form.password, &address).await {
        Ok(signed_in) => {
            let max_age = app.identity.session_policy().absolute_ms / 1000;
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
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    app.identity.logout(&signed_in.actor, &signed_in.session).await?;
    let mut response = Redirect::to("/login").into_response();
    let cleared = format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

fn title_of(entity: &Entity) -> String {
    entity.title.clone().unwrap_or_else(|| entity.identifier.clone())
}

use crate::forms::shown;

/// A value as indented JSON, for a page's "Raw" view.
fn raw_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
