//! `/api/v1/blueprints`

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portolan_model::Blueprint;
use portolan_store::BlueprintRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::error::Result;
use crate::extract::{Caller, JsonBody, PathParams, QueryParams};
use crate::state::AppState;

/// A blueprint with who made and last changed it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintView {
    #[serde(flatten)]
    pub blueprint: Blueprint,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub updated_by: String,
}

impl From<BlueprintRecord> for BlueprintView {
    fn from(r: BlueprintRecord) -> Self {
        Self {
            blueprint: r.blueprint,
            created_at: portolan_model::format_millis(r.created_at),
            created_by: r.created_by,
            updated_at: portolan_model::format_millis(r.updated_at),
            updated_by: r.updated_by,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BlueprintResponse {
    ok: bool,
    blueprint: BlueprintView,
}

#[derive(Serialize, ToSchema)]
pub struct BlueprintListResponse {
    ok: bool,
    blueprints: Vec<BlueprintView>,
}

#[derive(Serialize, ToSchema)]
pub struct BlueprintDeleteResponse {
    ok: bool,
    /// How many entities were deleted with the blueprint.
    deleted_entities: u64,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteBlueprintQuery {
    /// Also delete the blueprint's entities (otherwise a blueprint with entities is refused).
    #[serde(default)]
    delete_entities: bool,
}

fn respond(record: BlueprintRecord) -> Json<BlueprintResponse> {
    Json(BlueprintResponse { ok: true, blueprint: record.into() })
}

#[utoipa::path(get, path = "/api/v1/blueprints", tag = "blueprints",
    responses((status = 200, body = BlueprintListResponse)))]
pub async fn list_blueprints(State(app): State<AppState>, _caller: Caller) -> Result<Json<BlueprintListResponse>> {
    let blueprints = app.catalog.list_blueprints().await?.into_iter().map(Into::into).collect();
    Ok(Json(BlueprintListResponse { ok: true, blueprints }))
}

#[utoipa::path(post, path = "/api/v1/blueprints", tag = "blueprints", request_body = Blueprint,
    responses((status = 201, body = BlueprintResponse), (status = 409, description = "already exists"),
              (status = 422, description = "invalid blueprint, with per-field details")))]
pub async fn create_blueprint(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(document): JsonBody<Value>,
) -> Result<(StatusCode, Json<BlueprintResponse>)> {
    let record = app.catalog.create_blueprint(&caller.actor, document).await?;
    Ok((StatusCode::CREATED, respond(record)))
}

#[utoipa::path(get, path = "/api/v1/blueprints/{blueprint}", tag = "blueprints",
    params(("blueprint" = String, Path)),
    responses((status = 200, body = BlueprintResponse), (status = 404, description = "no such blueprint")))]
pub async fn get_blueprint(
    State(app): State<AppState>,
    _caller: Caller,
    PathParams(identifier): PathParams<String>,
) -> Result<Json<BlueprintResponse>> {
    Ok(respond(app.catalog.get_blueprint(&identifier).await?))
}

#[utoipa::path(put, path = "/api/v1/blueprints/{blueprint}", tag = "blueprints", request_body = Blueprint,
    params(("blueprint" = String, Path)),
    responses((status = 200, body = BlueprintResponse),
              (status = 422, description = "invalid, or existing entities would break (`schema_breaks_entities`)")))]
pub async fn replace_blueprint(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(identifier): PathParams<String>,
    JsonBody(document): JsonBody<Value>,
) -> Result<Json<BlueprintResponse>> {
    Ok(respond(app.catalog.update_blueprint(&caller.actor, &identifier, document, false).await?))
}

/// Applies a JSON merge patch (RFC 7386) to the blueprint.
#[utoipa::path(patch, path = "/api/v1/blueprints/{blueprint}", tag = "blueprints", request_body = Object,
    params(("blueprint" = String, Path)),
    responses((status = 200, body = BlueprintResponse)))]
pub async fn patch_blueprint(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(identifier): PathParams<String>,
    JsonBody(patch): JsonBody<Value>,
) -> Result<Json<BlueprintResponse>> {
    Ok(respond(app.catalog.update_blueprint(&caller.actor, &identifier, patch, true).await?))
}

#[utoipa::path(delete, path = "/api/v1/blueprints/{blueprint}", tag = "blueprints",
    params(("blueprint" = String, Path), DeleteBlueprintQuery),
    responses((status = 200, body = BlueprintDeleteResponse), (status = 409, description = "has entities or is a relation target")))]
pub async fn delete_blueprint(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(identifier): PathParams<String>,
    QueryParams(query): QueryParams<DeleteBlueprintQuery>,
) -> Result<Json<BlueprintDeleteResponse>> {
    let deleted_entities = app.catalog.delete_blueprint(&caller.actor, &identifier, query.delete_entities).await?;
    Ok(Json(BlueprintDeleteResponse { ok: true, deleted_entities }))
}
