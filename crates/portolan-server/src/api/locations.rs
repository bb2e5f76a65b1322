//! `/api/v1/locations`: repositories, folders and files the catalog follows.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use portolan_model::manifest::location::{Location, LocationInput, SyncStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Result;
use crate::extract::{Caller, JsonBody, PathParams};
use crate::services::locations::PushHeaders;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct LocationResponse {
    ok: bool,
    location: Location,
}

#[derive(Serialize, ToSchema)]
pub struct LocationListResponse {
    ok: bool,
    locations: Vec<Location>,
}

#[derive(Serialize, ToSchema)]
pub struct SyncResponse {
    ok: bool,
    status: SyncStatus,
}

/// Registers a location; it is synced at once and then every `intervalSeconds`.
#[utoipa::path(post, path = "/api/v1/locations", tag = "catalog as code", request_body = LocationInput,
    responses((status = 201, body = LocationResponse), (status = 422, description = "invalid")))]
pub async fn create_location(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(input): JsonBody<LocationInput>,
) -> Result<(StatusCode, Json<LocationResponse>)> {
    let location = app.locations.register(&caller.actor, input, false).await?;
    Ok((StatusCode::CREATED, Json(LocationResponse { ok: true, location })))
}

/// Every location with its last sync: commit, counts and any error with its file and line.
#[utoipa::path(get, path = "/api/v1/locations", tag = "catalog as code",
    responses((status = 200, body = LocationListResponse)))]
pub async fn list_locations(State(app): State<AppState>, caller: Caller) -> Result<Json<LocationListResponse>> {
    Ok(Json(LocationListResponse { ok: true, locations: app.locations.list(&caller.actor).await? }))
}

#[utoipa::path(get, path = "/api/v1/locations/{id}", tag = "catalog as code", params(("id" = String, Path)),
    responses((status = 200, body = LocationResponse), (status = 404, description = "not found")))]
pub async fn get_location(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<LocationResponse>> {
    Ok(Json(LocationResponse { ok: true, location: app.locations.get(&caller.actor, &id).await? }))
}

/// Removes a location and the entities it brought.
#[utoipa::path(delete, path = "/api/v1/locations/{id}", tag = "catalog as code", params(("id" = String, Path)),
    responses((status = 204, description = "deleted")))]
pub async fn delete_location(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode> {
    app.locations.delete(&caller.actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Syncs a location now and answers with its new status.
#[utoipa::path(post, path = "/api/v1/locations/{id}/sync", tag = "catalog as code", params(("id" = String, Path)),
    responses((status = 200, body = SyncResponse)))]
pub async fn sync_location(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<SyncResponse>> {
    app.locations.get(&caller.actor, &id).await?;
    Ok(Json(SyncResponse { ok: true, status: app.locations.sync(&id).await? }))
}

/// GitHub's and GitLab's push webhooks: signed (`X-Hub-Signature-256`) or with the token
/// (`X-Gitlab-Token`) of the location's `webhookSecret`. Starts a sync and answers at once.
#[utoipa::path(post, path = "/api/v1/locations/{id}/webhook", security(()), tag = "catalog as code", params(("id" = String, Path)),
    responses((status = 202, description = "a sync was started"), (status = 401, description = "bad signature"),
        (status = 403, description = "the location has no webhook secret, so it takes no webhooks")))]
pub async fn location_webhook(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let push = PushHeaders { github_signature: header("x-hub-signature-256"), gitlab_token: header("x-gitlab-token") };
    app.locations.push(&id, push, &body).await?;
    Ok(StatusCode::ACCEPTED)
}
