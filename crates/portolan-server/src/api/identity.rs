//! Sign-in (`/api/v1/auth`), accounts (`/api/v1/users`) and API tokens (`/api/v1/tokens`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portolan_model::permission::{ActionPermissions, BlueprintPermissions, Role};
use portolan_model::system;
use portolan_store::{Account, ApiToken, ClientCredentials};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::error::{Error, Result};
use crate::extract::{
    Caller, ClientAddress, JsonBody, PathParams, QueryParams, SESSION_COOKIE, check_same_site, cookie,
};
use crate::services::identity::{ACCESS_TOKEN_SECONDS, AccountChange, NewAccount};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    identifier: String,
    role: Role,
    teams: Vec<String>,
    /// For requests made with the session cookie: send it back in `x-csrf-token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    ok: bool,
    user: Me,
}

fn session_cookie(value: &str, max_age_seconds: i64) -> HeaderValue {
    let cookie = format!("{SESSION_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Signs in with a password and sets the session cookie (`__Host-`, `Secure`, `HttpOnly`,
/// `SameSite=Lax`). Failed attempts are throttled: 429 with `Retry-After`.
#[utoipa::path(post, path = "/api/v1/auth/login", security(()), tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = MeResponse), (status = 401, description = "wrong username or password"),
              (status = 429, description = "too many failed attempts; see Retry-After")))]
pub async fn login(
    State(app): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response> {
    check_same_site(&headers)?;
    let request: LoginRequest = portolan_model::error::from_json(body)?;
    let signed_in = app.identity.login(&request.username, &request.password, &address).await?;
    let max_age = app.identity.session_policy().absolute_ms / 1000;
    let me = Me {
        identifier: signed_in.user.id,
        role: signed_in.user.role,
        teams: signed_in.user.teams,
        csrf_token: Some(signed_in.session.csrf),
    };
    let mut response = Json(MeResponse { ok: true, user: me }).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&signed_in.cookie, max_age));
    Ok(response)
}

#[derive(Serialize, ToSchema)]
pub struct Providers {
    ok: bool,
    /// Signing in with a username and password.
    password: bool,
    /// Single sign-on, when configured.
    oidc: Option<OidcProvider>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OidcProvider {
    login_url: &'static str,
}

/// The ways to sign in this server offers.
#[utoipa::path(get, path = "/api/v1/auth/providers", security(()), tag = "auth",
    responses((status = 200, body = Providers)))]
pub async fn providers(State(app): State<AppState>) -> Json<Providers> {
    let oidc = app.oidc.enabled().then_some(OidcProvider { login_url: "/api/v1/auth/oidc/login" });
    Json(Providers { ok: true, password: true, oidc })
}

const FLOW_COOKIE: &str = "__Host-portolan_oidc";

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SsoStart {
    /// A path on this server to return to after signing in (default `/`).
    return_to: Option<String>,
    /// Passed to the provider, to preselect the account.
    login_hint: Option<String>,
}

/// Starts single sign-on: redirects to the provider (authorization code with PKCE).
#[utoipa::path(get, path = "/api/v1/auth/oidc/login", security(()), tag = "auth", params(SsoStart),
    responses((status = 303, description = "to the provider"), (status = 404, description = "SSO is not configured")))]
pub async fn oidc_login(State(app): State<AppState>, QueryParams(query): QueryParams<SsoStart>) -> Result<Response> {
    let redirect = app.oidc.oidc_start(query.return_to.as_deref(), query.login_hint.as_deref()).await?;
    let cookie = format!("{FLOW_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600", redirect.flow_cookie);
    Ok(see_other(&redirect.location, vec![cookie]))
}

#[derive(Deserialize, IntoParams)]
pub struct SsoCallback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where the provider sends the browser back: opens a session and returns to where sign-in began.
#[utoipa::path(get, path = "/api/v1/auth/oidc/callback", security(()), tag = "auth", params(SsoCallback),
    responses((status = 303, description = "signed in; the session cookie is set"),
              (status = 401, description = "the provider refused, or the state, code or ID token is wrong")))]
pub async fn oidc_callback(
    State(app): State<AppState>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<SsoCallback>,
) -> Result<Response> {
    if let Some(error) = query.error {
        let detail = query.error_description.unwrap_or_default();
        return Err(Error::unauthorized(format!("the sign-in provider refused: {error} {detail}").trim().to_string()));
    }
    let (Some(code), Some(state)) = (query.code, query.state) else {
        return Err(Error::unauthorized("the provider sent no code and state"));
    };
    let flow = cookie(&headers, FLOW_COOKIE);
    let (signed_in, return_to) = app.oidc.oidc_finish(flow.as_deref(), &state, &code).await?;
    let max_age = app.identity.session_policy().absolute_ms / 1000;
    let session =
        format!("{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}", signed_in.cookie);
    let cleared = format!("{FLOW_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0");
    Ok(see_other(&return_to, vec![session, cleared]))
}

fn see_other(location: &str, cookies: Vec<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Ends the session and clears the cookie.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 200, body = super::Done)))]
pub async fn logout(State(app): State<AppState>, caller: Caller) -> Result<Response> {
    if let Some(session) = &caller.session {
        app.identity.logout(&caller.actor, session).await?;
    }
    let mut response = Json(json!({"ok": true})).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0));
    Ok(response)
}

/// Who is signed in.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", responses((status = 200, body = MeResponse)))]
pub async fn me(caller: Caller) -> Result<Json<MeResponse>> {
    let user = caller.actor.as_user().ok_or_else(|| Error::unauthorized("not signed in"))?;
    let me = Me {
        identifier: user.id.clone(),
        role: user.role,
        teams: user.teams.clone(),
        csrf_token: caller.session.map(|s| s.csrf),
    };
    Ok(Json(MeResponse { ok: true, user: me }))
}

// ---- accounts ----

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    identifier: String,
    role: Role,
    /// `person` or `service`.
    kind: &'static str,
    has_password: bool,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct AccountResponse {
    ok: bool,
    user: AccountView,
}

#[derive(Serialize, ToSchema)]
pub struct AccountListResponse {
    ok: bool,
    users: Vec<AccountView>,
}

impl From<Account> for AccountView {
    fn from(a: Account) -> Self {
        Self {
            identifier: a.user,
            role: a.role,
            kind: a.kind.as_str(),
            has_password: a.password_hash.is_some(),
            created_at: portolan_model::format_millis(a.created_at),
            updated_at: portolan_model::format_millis(a.updated_at),
        }
    }
}

/// Every account (admins only).
#[utoipa::path(get, path = "/api/v1/users", tag = "auth", responses((status = 200, body = AccountListResponse)))]
pub async fn list_users(State(app): State<AppState>, caller: Caller) -> Result<Json<AccountListResponse>> {
    let users = app.identity.list_accounts(&caller.actor).await?.into_iter().map(Into::into).collect();
    Ok(Json(AccountListResponse { ok: true, users }))
}

/// Creates a user, or a service account (admins only).
#[utoipa::path(post, path = "/api/v1/users", tag = "auth", request_body = NewAccount,
    responses((status = 201, body = AccountResponse), (status = 403, description = "not an admin"),
              (status = 409, description = "already has an account")))]
pub async fn create_user(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<AccountResponse>)> {
    let new: NewAccount = portolan_model::error::from_json(body)?;
    let user = AccountView::from(app.identity.create_account(&caller.actor, new).await?);
    Ok((StatusCode::CREATED, Json(AccountResponse { ok: true, user })))
}

/// Changes a role or status (admins), or a password (admins, or users their own). Disabling a
/// user ends their sessions and tokens at once.
#[utoipa::path(patch, path = "/api/v1/users/{user}", tag = "auth", request_body = AccountChange,
    params(("user" = String, Path)), responses((status = 200, body = AccountResponse),
        (status = 403, description = "another's account, not an admin; or an admin demoting or disabling themselves")))]
pub async fn change_user(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(user): PathParams<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<AccountResponse>> {
    let change: AccountChange = portolan_model::error::from_json(body)?;
    let user = AccountView::from(app.identity.change_account(&caller.actor, &user, change).await?);
    Ok(Json(AccountResponse { ok: true, user }))
}

// ---- API tokens ----

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    name: String,
    /// 1 to 3650; without it the token lasts until revoked.
    expires_in_days: Option<u32>,
    /// Whose token (admins only; the caller by default), e.g. a service account.
    user: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    id: String,
    user: String,
    name: String,
    created_at: String,
    created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenCreated {
    ok: bool,
    /// The token itself, shown only in this answer.
    token: String,
    api_token: TokenView,
}

#[derive(Serialize, ToSchema)]
pub struct TokenListResponse {
    ok: bool,
    tokens: Vec<TokenView>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        let time = |ms: Option<i64>| ms.map(portolan_model::format_millis);
        Self {
            id: t.id,
            user: t.user,
            name: t.name,
            created_at: portolan_model::format_millis(t.created_at),
            created_by: t.created_by,
            expires_at: time(t.expires_at),
            last_used_at: time(t.last_used_at),
            revoked_at: time(t.revoked_at),
        }
    }
}

/// The caller's API tokens (admins: everyone's). Never the tokens themselves.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "auth", responses((status = 200, body = TokenListResponse)))]
pub async fn list_tokens(State(app): State<AppState>, caller: Caller) -> Result<Json<TokenListResponse>> {
    let tokens = app.identity.list_api_tokens(&caller.actor).await?.into_iter().map(Into::into).collect();
    Ok(Json(TokenListResponse { ok: true, tokens }))
}

/// Creates an API token (`plt_...`), shown only in this response; it acts with its owner's rights.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "auth", request_body = TokenRequest,
    responses((status = 201, body = TokenCreated), (status = 403, description = "another's token, not an admin")))]
pub async fn create_token(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<TokenCreated>)> {
    let request: TokenRequest = portolan_model::error::from_json(body)?;
    let (record, token) = app
        .identity
        .create_api_token(&caller.actor, request.user.as_deref(), &request.name, request.expires_in_days)
        .await?;
    Ok((StatusCode::CREATED, Json(TokenCreated { ok: true, token, api_token: record.into() })))
}

/// Revokes an API token at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "auth", params(("id" = String, Path)),
    responses((status = 200, body = super::Done), (status = 404, description = "no such active token of yours")))]
pub async fn revoke_token(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>> {
    app.identity.revoke_api_token(&caller.actor, &id).await?;
    Ok(Json(json!({"ok": true})))
}

/// The teams (the `_team` entities the caller may read), in Port's shape: each with its
/// `name`, `description` and `users` (the `_user` entities in it).
#[utoipa::path(get, path = "/api/v1/teams", tag = "auth", responses((status = 200, body = TeamList)))]
pub async fn list_teams(State(app): State<AppState>, caller: Caller) -> Result<Json<TeamList>> {
    let users = app.search.every_entity(&caller.actor, system::USER).await?;
    let teams = app
        .search
        .every_entity(&caller.actor, system::TEAM)
        .await?
        .into_iter()
        .map(|team| {
            let users = (users.iter())
                .filter(|u| u.team.contains(&team.identifier))
                .map(|u| TeamMember { identifier: u.identifier.clone(), email: u.properties.get("email").cloned() })
                .collect();
            TeamView {
                description: team.properties.get("description").cloned(),
                name: team.identifier,
                title: team.title,
                created_at: portolan_model::format_millis(team.created_at),
                updated_at: portolan_model::format_millis(team.updated_at),
                users,
            }
        })
        .collect();
    Ok(Json(TeamList { ok: true, teams }))
}

#[derive(Serialize, ToSchema)]
pub struct TeamList {
    ok: bool,
    teams: Vec<TeamView>,
}

/// A team as Port lists it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamView {
    name: String,
    description: Option<Value>,
    title: Option<String>,
    created_at: String,
    updated_at: String,
    users: Vec<TeamMember>,
}

#[derive(Serialize, ToSchema)]
pub struct TeamMember {
    identifier: String,
    email: Option<Value>,
}

// ---- client credentials (Port's) ----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessTokenRequest {
    pub client_id: String,
    pub client_secret: String,
}

/// Trades client credentials for a bearer token lasting three hours, as Port's
/// `POST /v1/auth/access_token` does. Wrong secrets are throttled like failed sign-ins.
#[utoipa::path(post, path = "/api/v1/auth/access_token", security(()), tag = "auth", request_body = AccessTokenRequest,
    responses((status = 200, body = AccessToken),
              (status = 401, description = "wrong client id or secret"),
              (status = 429, description = "too many failed attempts; see Retry-After")))]
pub async fn access_token(
    State(app): State<AppState>,
    ClientAddress(address): ClientAddress,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<AccessToken>> {
    let request: AccessTokenRequest = portolan_model::error::from_json(body)?;
    let access_token = app.identity.access_token(&request.client_id, &request.client_secret, &address).await?;
    Ok(Json(AccessToken { ok: true, access_token, expires_in: ACCESS_TOKEN_SECONDS, token_type: "Bearer" }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessToken {
    ok: bool,
    access_token: String,
    /// Seconds.
    expires_in: i64,
    token_type: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsView {
    pub client_id: String,
    pub created_at: String,
    pub created_by: String,
}

#[derive(Serialize, ToSchema)]
pub struct CredentialsResponse {
    ok: bool,
    credentials: CredentialsView,
}

impl From<ClientCredentials> for CredentialsView {
    fn from(c: ClientCredentials) -> Self {
        CredentialsView {
            client_id: c.client_id,
            created_at: portolan_model::format_millis(c.created_at),
            created_by: c.created_by,
        }
    }
}

/// A user's client id (never the secret).
#[utoipa::path(get, path = "/api/v1/users/{user}/credentials", tag = "auth", params(("user" = String, Path)),
    responses((status = 200, body = CredentialsResponse), (status = 404, description = "none yet")))]
pub async fn get_credentials(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(user): PathParams<String>,
) -> Result<Json<CredentialsResponse>> {
    let credentials = app.identity.client_credentials(&caller.actor, &user).await?.into();
    Ok(Json(CredentialsResponse { ok: true, credentials }))
}

/// Makes or rotates a user's client credentials (the user, or an admin): the client id stays,
/// the secret is new, shown only in this response, and the old one stops working.
#[utoipa::path(post, path = "/api/v1/users/{user}/credentials", tag = "auth", params(("user" = String, Path)),
    responses((status = 201, body = CredentialsRotated)))]
pub async fn rotate_credentials(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(user): PathParams<String>,
) -> Result<(StatusCode, Json<CredentialsRotated>)> {
    let (credentials, client_secret) = app.identity.rotate_client_credentials(&caller.actor, &user).await?;
    let credentials = NewCredentials { view: credentials.into(), client_secret };
    Ok((StatusCode::CREATED, Json(CredentialsRotated { ok: true, credentials })))
}

#[derive(Serialize, ToSchema)]
pub struct CredentialsRotated {
    ok: bool,
    credentials: NewCredentials,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewCredentials {
    #[serde(flatten)]
    view: CredentialsView,
    /// Shown only in this answer.
    client_secret: String,
}

/// Deletes a user's client credentials.
#[utoipa::path(delete, path = "/api/v1/users/{user}/credentials", tag = "auth", params(("user" = String, Path)),
    responses((status = 200, body = super::Done), (status = 404, description = "none")))]
pub async fn delete_credentials(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(user): PathParams<String>,
) -> Result<Json<Value>> {
    app.identity.delete_client_credentials(&caller.actor, &user).await?;
    Ok(Json(json!({"ok": true})))
}

// ---- permissions ----

#[derive(Serialize, ToSchema)]
pub struct BlueprintPermissionsResponse {
    ok: bool,
    permissions: BlueprintPermissions,
}

#[derive(Serialize, ToSchema)]
pub struct ActionPermissionsResponse {
    ok: bool,
    permissions: ActionPermissions,
}

/// A blueprint's permissions (admins and its moderators).
#[utoipa::path(get, path = "/api/v1/blueprints/{blueprint}/permissions", tag = "permissions",
    params(("blueprint" = String, Path)),
    responses((status = 200, body = BlueprintPermissionsResponse)))]
pub async fn get_blueprint_permissions(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(blueprint): PathParams<String>,
) -> Result<Json<BlueprintPermissionsResponse>> {
    let permissions = app.permissions.get_blueprint_permissions(&caller.actor, &blueprint).await?;
    Ok(Json(BlueprintPermissionsResponse { ok: true, permissions }))
}

/// Replaces a blueprint's permissions. Only admins change its moderators.
#[utoipa::path(put, path = "/api/v1/blueprints/{blueprint}/permissions", tag = "permissions",
    params(("blueprint" = String, Path)), request_body = BlueprintPermissions,
    responses((status = 200, body = BlueprintPermissionsResponse),
              (status = 403, description = "gives what the caller does not hold"),
              (status = 422, description = "invalid grant or condition")))]
pub async fn put_blueprint_permissions(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(blueprint): PathParams<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<BlueprintPermissionsResponse>> {
    let permissions = app.permissions.put_blueprint_permissions(&caller.actor, &blueprint, body).await?;
    Ok(Json(BlueprintPermissionsResponse { ok: true, permissions }))
}

/// An action's permissions (admins and moderators of its blueprint).
#[utoipa::path(get, path = "/api/v1/actions/{action}/permissions", tag = "permissions",
    params(("action" = String, Path)),
    responses((status = 200, body = ActionPermissionsResponse)))]
pub async fn get_action_permissions(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(action): PathParams<String>,
) -> Result<Json<ActionPermissionsResponse>> {
    let permissions = app.permissions.get_action_permissions(&caller.actor, &action).await?;
    Ok(Json(ActionPermissionsResponse { ok: true, permissions }))
}

/// Replaces who may run an action and approve its runs.
#[utoipa::path(put, path = "/api/v1/actions/{action}/permissions", tag = "permissions",
    params(("action" = String, Path)), request_body = ActionPermissions,
    responses((status = 200, body = ActionPermissionsResponse),
              (status = 403, description = "not an admin or moderator of its blueprint")))]
pub async fn put_action_permissions(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(action): PathParams<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<ActionPermissionsResponse>> {
    let permissions = app.permissions.put_action_permissions(&caller.actor, &action, body).await?;
    Ok(Json(ActionPermissionsResponse { ok: true, permissions }))
}
