//! `/api/v1/blueprints/{blueprint}/scorecards`

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portolan_model::scorecard::Scorecard;
use portolan_store::ScorecardRecord;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::Result;
use crate::extract::{Caller, JsonBody, PathParams, QueryParams};
use crate::services::scorecards::{LevelHistory, ScorecardSummary};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScorecardView {
    #[serde(flatten)]
    scorecard: Scorecard,
    blueprint: String,
    created_at: String,
    created_by: String,
    updated_at: String,
    updated_by: String,
}

impl From<ScorecardRecord> for ScorecardView {
    fn from(r: ScorecardRecord) -> Self {
        Self {
            scorecard: r.scorecard,
            blueprint: r.blueprint,
            created_at: portolan_model::format_millis(r.created_at),
            created_by: r.created_by,
            updated_at: portolan_model::format_millis(r.updated_at),
            updated_by: r.updated_by,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ScorecardResponse {
    ok: bool,
    scorecard: ScorecardView,
}

#[derive(Serialize, ToSchema)]
pub struct ScorecardListResponse {
    ok: bool,
    scorecards: Vec<ScorecardView>,
}

#[derive(Serialize, ToSchema)]
pub struct ScorecardSummaryResponse {
    ok: bool,
    summary: ScorecardSummary,
}

fn respond(record: ScorecardRecord) -> Json<ScorecardResponse> {
    Json(ScorecardResponse { ok: true, scorecard: record.into() })
}

#[utoipa::path(get, path = "/api/v1/blueprints/{blueprint}/scorecards", tag = "scorecards",
    params(("blueprint" = String, Path)), responses((status = 200, body = ScorecardListResponse)))]
pub async fn list_scorecards(
    State(app): State<AppState>,
    _caller: Caller,
    PathParams(blueprint): PathParams<String>,
) -> Result<Json<ScorecardListResponse>> {
    let scorecards = app.scorecards.list_scorecards(&blueprint).await?.into_iter().map(Into::into).collect();
    Ok(Json(ScorecardListResponse { ok: true, scorecards }))
}

/// Creates a scorecard and scores every entity of the blueprint.
#[utoipa::path(post, path = "/api/v1/blueprints/{blueprint}/scorecards", tag = "scorecards", request_body = Scorecard,
    params(("blueprint" = String, Path)),
    responses((status = 201, body = ScorecardResponse), (status = 409, description = "already exists"),
              (status = 422, description = "invalid, with the path of each mistake")))]
pub async fn create_scorecard(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(blueprint): PathParams<String>,
    JsonBody(document): JsonBody<Value>,
) -> Result<(StatusCode, Json<ScorecardResponse>)> {
    let record = app.scorecards.put_scorecard(&caller.actor, &blueprint, None, document).await?;
    Ok((StatusCode::CREATED, respond(record)))
}

#[utoipa::path(get, path = "/api/v1/blueprints/{blueprint}/scorecards/{scorecard}", tag = "scorecards",
    params(("blueprint" = String, Path), ("scorecard" = String, Path)),
    responses((status = 200, body = ScorecardResponse), (status = 404, description = "not found")))]
pub async fn get_scorecard(
    State(app): State<AppState>,
    _caller: Caller,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
) -> Result<Json<ScorecardResponse>> {
    Ok(respond(app.scorecards.get_scorecard(&blueprint, &identifier).await?))
}

/// Replaces a scorecard and rescores every entity of the blueprint.
#[utoipa::path(put, path = "/api/v1/blueprints/{blueprint}/scorecards/{scorecard}", tag = "scorecards", request_body = Scorecard,
    params(("blueprint" = String, Path), ("scorecard" = String, Path)),
    responses((status = 200, body = ScorecardResponse), (status = 404, description = "not found")))]
pub async fn replace_scorecard(
    State(app): State<AppState>,
    caller: Caller,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
    JsonBody(document): JsonBody<Value>,
) -> Result<Json<ScorecardResponse>> {
    Ok(respond(app.scorecards.put_scorecard(&caller.actor, &blueprint, Some(&identifier), document).await?))
}

#[utoipa::path(delete, path = "/api/v1/blueprints/{blueprint}/scorecards/{scorecard}", tag = "scorecards",
    params(("blueprint" = String, Path), ("scorecard" = String, Path)),
    responses((status = 200, body = super::Done), (status = 404, description = "not found")))]
pub async fn delete_scorecard(
    State(app): State<AppState>,
    caller: Caller,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
) -> Result<Json<Value>> {
    app.scorecards.delete_scorecard(&caller.actor, &blueprint, &identifier).await?;
    Ok(Json(json!({"ok": true})))
}

/// Entities per level, overall and per owning team.
#[utoipa::path(get, path = "/api/v1/blueprints/{blueprint}/scorecards/{scorecard}/summary", tag = "scorecards",
    params(("blueprint" = String, Path), ("scorecard" = String, Path)),
    responses((status = 200, body = ScorecardSummaryResponse), (status = 404, description = "not found")))]
pub async fn scorecard_summary(
    State(app): State<AppState>,
    caller: Caller,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
) -> Result<Json<ScorecardSummaryResponse>> {
    let summary = app.scorecards.scorecard_summary(&caller.actor, &blueprint, &identifier, None).await?;
    Ok(Json(ScorecardSummaryResponse { ok: true, summary }))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// The last this many days, today included (default 90).
    days: Option<u32>,
    /// One team's entities (default: every team's).
    team: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LevelHistoryResponse {
    ok: bool,
    history: LevelHistory,
}

/// Entities per level, day by day (sampled every few minutes; a day keeps its last sample).
#[utoipa::path(get, path = "/api/v1/blueprints/{blueprint}/scorecards/{scorecard}/history", tag = "scorecards",
    params(("blueprint" = String, Path), ("scorecard" = String, Path), HistoryQuery),
    responses((status = 200, body = LevelHistoryResponse), (status = 404, description = "not found"),
              (status = 403, description = "every team's history, asked by someone who may read only some entities")))]
pub async fn scorecard_history(
    State(app): State<AppState>,
    caller: Caller,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> Result<Json<LevelHistoryResponse>> {
    let days = query.days.unwrap_or(90);
    let history =
        app.scorecards.level_history(&caller.actor, &blueprint, &identifier, query.team.as_deref(), days).await?;
    Ok(Json(LevelHistoryResponse { ok: true, history }))
}
