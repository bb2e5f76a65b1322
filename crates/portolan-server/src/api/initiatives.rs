//! `/api/v1/initiatives`: goals for a set of entities by a date, their progress and burn-up,
//! reminders to their owners, and promotion into a scorecard.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portolan_model::initiative::Initiative;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::Result;
use crate::extract::{Caller, JsonBody, PathParams, QueryParams};
use crate::services::initiatives::{InitiativeRecord, InitiativeReport, Listed, PromoteRequest, Reminder};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct InitiativeListResponse {
    ok: bool,
    /// Each with its progress and pace, or the `error` that keeps it from being assessed.
    initiatives: Vec<Listed>,
}

#[derive(Serialize, ToSchema)]
pub struct InitiativeResponse {
    ok: bool,
    initiative: InitiativeRecord,
}

#[derive(Serialize, ToSchema)]
pub struct InitiativeReportResponse {
    ok: bool,
    #[serde(flatten)]
    report: InitiativeReport,
}

#[derive(Serialize, ToSchema)]
pub struct ReminderResponse {
    ok: bool,
    reminder: Reminder,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Only this team's entities.
    team: Option<String>,
}

/// Every initiative, with its progress over the entities the caller may read.
#[utoipa::path(get, path = "/api/v1/initiatives", tag = "initiatives",
    responses((status = 200, body = InitiativeListResponse)))]
pub async fn list_initiatives(State(app): State<AppState>, caller: Caller) -> Result<Json<InitiativeListResponse>> {
    Ok(Json(InitiativeListResponse { ok: true, initiatives: app.initiatives.list(&caller.actor).await? }))
}

/// Creates an initiative: whoever may manage its blueprint.
#[utoipa::path(post, path = "/api/v1/initiatives", tag = "initiatives", request_body = Initiative,
    responses((status = 201, body = InitiativeResponse), (status = 403, description = "may not manage the blueprint"),
              (status = 409, description = "already exists"),
              (status = 422, description = "invalid, with the path of each mistake")))]
pub async fn create_initiative(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(document): JsonBody<Value>,
) -> Result<(StatusCode, Json<InitiativeResponse>)> {
    let initiative = app.initiatives.put(&caller.actor, None, document).await?;
    Ok((StatusCode::CREATED, Json(InitiativeResponse { ok: true, initiative })))
}

/// The initiative, its progress overall and per team, each entity with the rules it still fails
/// (and the action that fixes each), whether it is on track, and its burn-up.
#[utoipa::path(get, path = "/api/v1/initiatives/{initiative}", tag = "initiatives",
    params(("initiative" = String, Path), ReportQuery),
    responses((status = 200, body = InitiativeReportResponse), (status = 404, description = "not found")))]
pub async fn get_initiative(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(identifier): PathParams<String>,
    QueryParams(query): QueryParams<ReportQuery>,
) -> Result<Json<InitiativeReportResponse>> {
    let report = app.initiatives.report(&caller.actor, &identifier, query.team.as_deref()).await?;
    Ok(Json(InitiativeReportResponse { ok: true, report }))
}

#[utoipa::path(put, path = "/api/v1/initiatives/{initiative}", tag = "initiatives", request_body = Initiative,
    params(("initiative" = String, Path)),
    responses((status = 200, body = InitiativeResponse), (status = 404, description = "not found"),
              (status = 422, description = "invalid, with the path of each mistake")))]
pub async fn replace_initiative(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(identifier): PathParams<String>,
    JsonBody(document): JsonBody<Value>,
) -> Result<Json<InitiativeResponse>> {
    let initiative = app.initiatives.put(&caller.actor, Some(&identifier), document).await?;
    Ok(Json(InitiativeResponse { ok: true, initiative }))
}

#[utoipa::path(delete, path = "/api/v1/initiatives/{initiative}", tag = "initiatives",
    params(("initiative" = String, Path)),
    responses((status = 200, body = super::Done), (status = 404, description = "not found")))]
pub async fn delete_initiative(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(identifier): PathParams<String>,
) -> Result<Json<Value>> {
    app.initiatives.delete(&caller.actor, &identifier).await?;
    Ok(Json(json!({"ok": true})))
}

/// Sends the reminder now; a delivery that failed is reported (and kept on the initiative).
#[utoipa::path(post, path = "/api/v1/initiatives/{initiative}/remind", tag = "initiatives",
    params(("initiative" = String, Path)),
    responses((status = 200, body = ReminderResponse), (status = 404, description = "not found"),
              (status = 422, description = "the initiative has no reminders set")))]
pub async fn remind(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(identifier): PathParams<String>,
) -> Result<Json<ReminderResponse>> {
    Ok(Json(ReminderResponse { ok: true, reminder: app.initiatives.remind(&caller.actor, &identifier).await? }))
}

/// Adds a done initiative's rules to a level of a scorecard of its blueprint.
#[utoipa::path(post, path = "/api/v1/initiatives/{initiative}/promote", tag = "initiatives",
    params(("initiative" = String, Path)), request_body = PromoteRequest,
    responses((status = 200, body = InitiativeResponse), (status = 404, description = "no such initiative or scorecard"),
              (status = 409, description = "not done yet, or promoted already"),
              (status = 422, description = "a goal that is a level already, an unknown level, or a rule the scorecard has")))]
pub async fn promote(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(identifier): PathParams<String>,
    JsonBody(request): JsonBody<PromoteRequest>,
) -> Result<Json<InitiativeResponse>> {
    let initiative = app.initiatives.promote(&caller.actor, &identifier, request).await?;
    Ok(Json(InitiativeResponse { ok: true, initiative }))
}
