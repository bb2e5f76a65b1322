//! `/api/v1/dashboards`: shared dashboards, each team's (`/teams/{team}`) and the caller's own
//! (`/me`), each answered with its widgets computed for the caller.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portolan_model::dashboard::Dashboard;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::extract::{Caller, JsonBody, PathParams};
use crate::services::dashboards::{Address, DashboardEntry, DashboardView};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct DashboardListResponse {
    ok: bool,
    dashboards: Vec<DashboardEntry>,
}

#[derive(Serialize, ToSchema)]
pub struct DashboardResponse {
    ok: bool,
    #[serde(flatten)]
    view: DashboardView,
}

#[derive(Serialize, ToSchema)]
pub struct SavedDashboardResponse {
    ok: bool,
    dashboard: Dashboard,
}

async fn show(app: &AppState, caller: &Caller, address: Address) -> Result<Json<DashboardResponse>> {
    Ok(Json(DashboardResponse { ok: true, view: app.dashboards.view(&caller.actor, &address).await? }))
}

async fn save(
    app: &AppState,
    caller: &Caller,
    address: Address,
    document: Value,
) -> Result<Json<SavedDashboardResponse>> {
    let dashboard = app.dashboards.put(&caller.actor, &address, document, false).await?;
    Ok(Json(SavedDashboardResponse { ok: true, dashboard }))
}

async fn remove(app: &AppState, caller: &Caller, address: Address) -> Result<Json<Value>> {
    app.dashboards.delete(&caller.actor, &address).await?;
    Ok(Json(json!({"ok": true})))
}

/// The shared dashboards, every team's and the caller's own.
#[utoipa::path(get, path = "/api/v1/dashboards", tag = "dashboards",
    responses((status = 200, body = DashboardListResponse)))]
pub async fn list_dashboards(State(app): State<AppState>, caller: Caller) -> Result<Json<DashboardListResponse>> {
    Ok(Json(DashboardListResponse { ok: true, dashboards: app.dashboards.list(&caller.actor).await? }))
}

/// Creates a shared dashboard (admins); every widget's query is run once to check it.
#[utoipa::path(post, path = "/api/v1/dashboards", tag = "dashboards", request_body = Dashboard,
    responses((status = 201, body = SavedDashboardResponse), (status = 403, description = "not an admin"),
              (status = 409, description = "already exists"),
              (status = 422, description = "a widget that is malformed, invalid or too expensive, with its path")))]
pub async fn create_dashboard(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(document): JsonBody<Value>,
) -> Result<(StatusCode, Json<SavedDashboardResponse>)> {
    let identifier = document
        .get("identifier")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid_at("/identifier", "a dashboard needs an identifier"))?
        .to_string();
    let dashboard = app.dashboards.put(&caller.actor, &Address::Shared(identifier), document, true).await?;
    Ok((StatusCode::CREATED, Json(SavedDashboardResponse { ok: true, dashboard })))
}

/// A shared dashboard with its widgets computed for the caller (each shows only what the caller may
/// read; a widget that cannot be computed says why in `error`).
#[utoipa::path(get, path = "/api/v1/dashboards/{dashboard}", tag = "dashboards", params(("dashboard" = String, Path)),
    responses((status = 200, body = DashboardResponse), (status = 404, description = "not found")))]
pub async fn get_dashboard(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<DashboardResponse>> {
    show(&app, &caller, Address::Shared(id)).await
}

#[utoipa::path(put, path = "/api/v1/dashboards/{dashboard}", tag = "dashboards", params(("dashboard" = String, Path)),
    request_body = Dashboard,
    responses((status = 200, body = SavedDashboardResponse), (status = 403, description = "not an admin"),
              (status = 404, description = "not found"), (status = 422, description = "invalid, with the path")))]
pub async fn replace_dashboard(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(document): JsonBody<Value>,
) -> Result<Json<SavedDashboardResponse>> {
    save(&app, &caller, Address::Shared(id), document).await
}

#[utoipa::path(delete, path = "/api/v1/dashboards/{dashboard}", tag = "dashboards", params(("dashboard" = String, Path)),
    responses((status = 200, body = super::Done), (status = 403, description = "not an admin"),
              (status = 404, description = "not found")))]
pub async fn delete_dashboard(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>> {
    remove(&app, &caller, Address::Shared(id)).await
}

/// A team's dashboard: its own once saved, a default (what it owns, readiness, DORA, initiatives)
/// until then.
#[utoipa::path(get, path = "/api/v1/dashboards/teams/{team}", tag = "dashboards", params(("team" = String, Path)),
    responses((status = 200, body = DashboardResponse), (status = 404, description = "no such team")))]
pub async fn get_team_dashboard(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(team): PathParams<String>,
) -> Result<Json<DashboardResponse>> {
    show(&app, &caller, Address::Team(team)).await
}

/// Saves a team's dashboard: admins and the team's members.
#[utoipa::path(put, path = "/api/v1/dashboards/teams/{team}", tag = "dashboards", params(("team" = String, Path)),
    request_body = Dashboard,
    responses((status = 200, body = SavedDashboardResponse), (status = 403, description = "not a member of the team"),
              (status = 422, description = "invalid, with the path")))]
pub async fn replace_team_dashboard(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(team): PathParams<String>,
    JsonBody(document): JsonBody<Value>,
) -> Result<Json<SavedDashboardResponse>> {
    save(&app, &caller, Address::Team(team), document).await
}

/// Deletes a team's saved dashboard: it shows the default again.
#[utoipa::path(delete, path = "/api/v1/dashboards/teams/{team}", tag = "dashboards", params(("team" = String, Path)),
    responses((status = 200, body = super::Done), (status = 404, description = "nothing saved")))]
pub async fn delete_team_dashboard(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(team): PathParams<String>,
) -> Result<Json<Value>> {
    remove(&app, &caller, Address::Team(team)).await
}

/// The caller's own dashboard.
#[utoipa::path(get, path = "/api/v1/dashboards/me", tag = "dashboards",
    responses((status = 200, body = DashboardResponse), (status = 403, description = "not a person")))]
pub async fn get_my_dashboard(State(app): State<AppState>, caller: Caller) -> Result<Json<DashboardResponse>> {
    show(&app, &caller, Address::Personal).await
}

#[utoipa::path(put, path = "/api/v1/dashboards/me", tag = "dashboards", request_body = Dashboard,
    responses((status = 200, body = SavedDashboardResponse), (status = 422, description = "invalid, with the path")))]
pub async fn replace_my_dashboard(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(document): JsonBody<Value>,
) -> Result<Json<SavedDashboardResponse>> {
    save(&app, &caller, Address::Personal, document).await
}

#[utoipa::path(delete, path = "/api/v1/dashboards/me", tag = "dashboards",
    responses((status = 200, body = super::Done), (status = 404, description = "nothing saved")))]
pub async fn delete_my_dashboard(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>> {
    remove(&app, &caller, Address::Personal).await
}
