//! `/api/v1/actions`, `/api/v1/secrets` and `/api/v1/runners/tokens`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portolan_model::action::Action;
use portolan_store::{ActionRecord, RunnerToken, SecretMeta};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::error::Result;
use crate::extract::{Caller, JsonBody, PathParams, QueryParams};
use crate::state::AppState;

/// An action with who made and last changed it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionView {
    #[serde(flatten)]
    pub action: Action,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub updated_by: String,
}

impl From<ActionRecord> for ActionView {
    fn from(r: ActionRecord) -> Self {
        Self {
            action: r.action,
            created_at: portolan_model::format_millis(r.created_at),
            created_by: r.created_by,
            updated_at: portolan_model::format_millis(r.updated_at),
            updated_by: r.updated_by,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ActionResponse {
    ok: bool,
    action: ActionView,
    /// What the saved action still lacks (a secret it reads that does not exist yet).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// The answer to a save: the action, and a warning for each secret it reads that is missing.
async fn saved(app: &AppState, record: ActionRecord) -> Result<ActionResponse> {
    let warnings = app
        .actions
        .missing_secrets(&record.action)
        .await?
        .into_iter()
        .map(|name| format!("secret '{name}' does not exist yet: runs fail until it is created at /api/v1/secrets"))
        .collect();
    Ok(ActionResponse { ok: true, action: record.into(), warnings })
}

#[derive(Serialize, ToSchema)]
pub struct ActionListResponse {
    ok: bool,
    actions: Vec<ActionView>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ActionListQuery {
    /// Only the actions bound to this blueprint.
    blueprint: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/actions", tag = "actions", params(ActionListQuery),
    responses((status = 200, body = ActionListResponse)))]
pub async fn list_actions(
    State(app): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ActionListQuery>,
) -> Result<Json<ActionListResponse>> {
    let actions = app.actions.list_actions(&caller.actor, query.blueprint.as_deref()).await?;
    Ok(Json(ActionListResponse { ok: true, actions: actions.into_iter().map(ActionView::from).collect() }))
}

/// Creates an action. Validated whole: the form, the trigger's blueprint and condition, the
/// backend's settings and every jq template. A secret it reads may come later (as in Port): the
/// answer warns, and runs fail naming it until it exists.
#[utoipa::path(post, path = "/api/v1/actions", tag = "actions", request_body = Action,
    responses((status = 201, body = ActionResponse), (status = 409, description = "exists"),
              (status = 422, description = "invalid, with per-field details")))]
pub async fn create_action(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(document): JsonBody<Value>,
) -> Result<(StatusCode, Json<ActionResponse>)> {
    let (record, _) = app.actions.put_action(&caller.actor, None, document).await?;
    Ok((StatusCode::CREATED, Json(saved(&app, record).await?)))
}

#[utoipa::path(get, path = "/api/v1/actions/{action}", tag = "actions", params(("action" = String, Path)),
    responses((status = 200, body = ActionResponse), (status = 404, description = "not found")))]
pub async fn get_action(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(identifier): PathParams<String>,
) -> Result<Json<ActionResponse>> {
    let record = app.actions.get_action(&caller.actor, &identifier).await?;
    Ok(Json(saved(&app, record).await?))
}

#[utoipa::path(put, path = "/api/v1/actions/{action}", tag = "actions", request_body = Action,
    params(("action" = String, Path)),
    responses((status = 200, body = ActionResponse), (status = 404, description = "not found"),
              (status = 422, description = "invalid, with per-field details")))]
pub async fn replace_action(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(identifier): PathParams<String>,
    JsonBody(document): JsonBody<Value>,
) -> Result<Json<ActionResponse>> {
    let (record, _) = app.actions.put_action(&caller.actor, Some(&identifier), document).await?;
    Ok(Json(saved(&app, record).await?))
}

/// Deletes an action; its past runs stay.
#[utoipa::path(delete, path = "/api/v1/actions/{action}", tag = "actions", params(("action" = String, Path)),
    responses((status = 200, body = super::Done), (status = 404, description = "not found")))]
pub async fn delete_action(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(identifier): PathParams<String>,
) -> Result<Json<Value>> {
    app.actions.delete_action(&caller.actor, &identifier).await?;
    Ok(Json(json!({"ok": true})))
}

// ---- secrets ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    name: String,
    /// Write-only: stored encrypted, never returned.
    value: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    value: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretInfo {
    name: String,
    created_at: String,
    created_by: String,
    updated_at: String,
    updated_by: String,
}

impl From<SecretMeta> for SecretInfo {
    fn from(meta: SecretMeta) -> Self {
        Self {
            name: meta.name,
            created_at: portolan_model::format_millis(meta.created_at),
            created_by: meta.created_by,
            updated_at: portolan_model::format_millis(meta.updated_at),
            updated_by: meta.updated_by,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SecretListResponse {
    ok: bool,
    /// Names and history only: values never leave the server.
    secrets: Vec<SecretInfo>,
}

#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets", responses((status = 200, body = SecretListResponse)))]
pub async fn list_secrets(State(app): State<AppState>, caller: Caller) -> Result<Json<SecretListResponse>> {
    let secrets = app.actions.list_secrets(&caller.actor).await?.into_iter().map(SecretInfo::from).collect();
    Ok(Json(SecretListResponse { ok: true, secrets }))
}

/// Stores a secret; templates read it as `{{ .secrets.NAME }}`.
#[utoipa::path(post, path = "/api/v1/secrets", tag = "secrets", request_body = SecretRequest,
    responses((status = 201, description = "created", body = SecretWritten),
              (status = 200, description = "replaced", body = SecretWritten),
              (status = 422, description = "invalid name or value")))]
pub async fn create_secret(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<Value>,
) -> Result<(StatusCode, Json<SecretWritten>)> {
    let request: SecretRequest = portolan_model::error::from_json(request)?;
    put(&app, &caller, &request.name, &request.value).await
}

#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets", request_body = SecretValue,
    params(("name" = String, Path)),
    responses((status = 201, description = "created", body = SecretWritten),
              (status = 200, description = "replaced", body = SecretWritten)))]
pub async fn replace_secret(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
    JsonBody(request): JsonBody<Value>,
) -> Result<(StatusCode, Json<SecretWritten>)> {
    let request: SecretValue = portolan_model::error::from_json(request)?;
    put(&app, &caller, &name, &request.value).await
}

/// A stored secret's name (never its value).
#[derive(Serialize, ToSchema)]
pub struct SecretWritten {
    ok: bool,
    secret: SecretName,
}

#[derive(Serialize, ToSchema)]
pub struct SecretName {
    name: String,
}

async fn put(app: &AppState, caller: &Caller, name: &str, value: &str) -> Result<(StatusCode, Json<SecretWritten>)> {
    let created = app.actions.put_secret(&caller.actor, name, value).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(SecretWritten { ok: true, secret: SecretName { name: name.into() } })))
}

#[derive(Serialize, ToSchema)]
pub struct SigningKeyResponse {
    ok: bool,
    /// `whsec_` and the key in base64, as Standard Webhooks writes it.
    key: String,
}

/// The server's webhook signing key (`whsec_...`, made on first use): it signs the deliveries of
/// `WEBHOOK` actions without a `signingSecret`. Admins only; each reading is audited.
#[utoipa::path(get, path = "/api/v1/webhook-signing-key", tag = "secrets",
    responses((status = 200, body = SigningKeyResponse), (status = 403, description = "not an admin")))]
pub async fn signing_key(State(app): State<AppState>, caller: Caller) -> Result<Json<SigningKeyResponse>> {
    let key = app.actions.signing_key(&caller.actor).await?;
    Ok(Json(SigningKeyResponse { ok: true, key }))
}

/// Replaces the server's webhook signing key; the new one is answered.
#[utoipa::path(post, path = "/api/v1/webhook-signing-key/rotate", tag = "secrets",
    responses((status = 200, body = SigningKeyResponse), (status = 403, description = "not an admin")))]
pub async fn rotate_signing_key(State(app): State<AppState>, caller: Caller) -> Result<Json<SigningKeyResponse>> {
    let key = app.actions.rotate_signing_key(&caller.actor).await?;
    Ok(Json(SigningKeyResponse { ok: true, key }))
}

/// Deletes a secret; refused (409 `in_use`) while an action reads it.
#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets", params(("name" = String, Path)),
    responses((status = 200, body = super::Done), (status = 404, description = "not found"),
              (status = 409, description = "used by actions"),
              (status = 422, description = "not a secret name")))]
pub async fn delete_secret(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
) -> Result<Json<Value>> {
    app.actions.delete_secret(&caller.actor, &name).await?;
    Ok(Json(json!({"ok": true})))
}

// ---- runner tokens ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunnerTokenRequest {
    name: String,
    /// The labels the runner may claim runs for.
    labels: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerTokenInfo {
    id: String,
    name: String,
    labels: Vec<String>,
    created_at: String,
    created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
}

impl From<RunnerToken> for RunnerTokenInfo {
    fn from(token: RunnerToken) -> Self {
        Self {
            id: token.id,
            name: token.name,
            labels: token.labels,
            created_at: portolan_model::format_millis(token.created_at),
            created_by: token.created_by,
            last_used_at: token.last_used_at.map(portolan_model::format_millis),
            revoked_at: token.revoked_at.map(portolan_model::format_millis),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RunnerTokenCreated {
    ok: bool,
    /// Shown this once; only its SHA-256 is kept.
    token: String,
    runner: RunnerTokenInfo,
}

#[utoipa::path(post, path = "/api/v1/runners/tokens", tag = "runners", request_body = RunnerTokenRequest,
    responses((status = 201, body = RunnerTokenCreated), (status = 422, description = "invalid")))]
pub async fn create_runner_token(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<Value>,
) -> Result<(StatusCode, Json<RunnerTokenCreated>)> {
    let request: RunnerTokenRequest = portolan_model::error::from_json(request)?;
    let (record, token) = app.actions.create_runner_token(&caller.actor, &request.name, request.labels).await?;
    Ok((StatusCode::CREATED, Json(RunnerTokenCreated { ok: true, token, runner: record.into() })))
}

/// Runner tokens, without their values.
#[derive(Serialize, ToSchema)]
pub struct RunnerTokenList {
    ok: bool,
    runners: Vec<RunnerTokenInfo>,
}

#[utoipa::path(get, path = "/api/v1/runners/tokens", tag = "runners", responses((status = 200, body = RunnerTokenList)))]
pub async fn list_runner_tokens(State(app): State<AppState>, caller: Caller) -> Result<Json<RunnerTokenList>> {
    let runners = app.actions.list_runner_tokens(&caller.actor).await?.into_iter().map(Into::into).collect();
    Ok(Json(RunnerTokenList { ok: true, runners }))
}

#[utoipa::path(delete, path = "/api/v1/runners/tokens/{id}", tag = "runners", params(("id" = String, Path)),
    responses((status = 200, body = super::Done), (status = 404, description = "unknown or already revoked")))]
pub async fn revoke_runner_token(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>> {
    app.actions.revoke_runner_token(&caller.actor, &id).await?;
    Ok(Json(json!({"ok": true})))
}
