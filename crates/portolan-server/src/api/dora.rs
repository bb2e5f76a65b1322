//! `/api/v1/dora`: the four keys of a service, a team or the organisation, and the definition
//! that says which entities are deployments and incidents.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::Result;
use crate::extract::{Caller, JsonBody, QueryParams};
use crate::services::dora::{DefinitionView, DoraReport, ReportRequest};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct ReportResponse {
    ok: bool,
    report: DoraReport,
}

#[derive(Serialize, ToSchema)]
pub struct DefinitionResponse {
    ok: bool,
    #[serde(flatten)]
    view: DefinitionView,
}

/// Deployment frequency, lead time for changes, change failure rate and time to restore, with
/// their bands, the period before, a trend and a breakdown; a key with nothing to measure is null.
#[utoipa::path(get, path = "/api/v1/dora", tag = "dora", params(ReportRequest),
    responses((status = 200, body = ReportResponse),
              (status = 404, description = "no such service or team"),
              (status = 422, description = "a bad period, or a definition that no longer fits the catalog")))]
pub async fn report(
    State(app): State<AppState>,
    caller: Caller,
    QueryParams(request): QueryParams<ReportRequest>,
) -> Result<Json<ReportResponse>> {
    Ok(Json(ReportResponse { ok: true, report: app.dora.report(&caller.actor, &request).await? }))
}

#[utoipa::path(get, path = "/api/v1/dora/definition", tag = "dora",
    responses((status = 200, body = DefinitionResponse)))]
pub async fn get_definition(State(app): State<AppState>, _caller: Caller) -> Result<Json<DefinitionResponse>> {
    Ok(Json(DefinitionResponse { ok: true, view: app.dora.definition().await? }))
}

/// Replaces the definition; admins only.
#[utoipa::path(put, path = "/api/v1/dora/definition", tag = "dora", request_body = portolan_model::dora::DoraDefinition,
    responses((status = 200, body = DefinitionResponse), (status = 403, description = "not an admin"),
              (status = 422, description = "names what the catalog does not have, with the path of each mistake")))]
pub async fn put_definition(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(document): JsonBody<Value>,
) -> Result<Json<DefinitionResponse>> {
    Ok(Json(DefinitionResponse { ok: true, view: app.dora.put_definition(&caller.actor, document).await? }))
}
