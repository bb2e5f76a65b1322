//! `/api/v1/entities/search`, `/api/v1/blueprints/{bp}/entities/search`, `/api/v1/entities/aggregate`

use axum::Json;
use axum::extract::State;
use portolan_store::query_sql::AggregateResult;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::Result;
use crate::extract::{JsonBody, PathParams, Reader};
use crate::services::Actor;
use crate::services::search::{AggregateRequest, SearchRequest, project};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    ok: bool,
    /// Entities (projected by `include` / `exclude`).
    #[schema(value_type = Vec<Object>)]
    entities: Vec<Value>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// Accepts the request shape, or (as Port's search does) a bare query as the whole body.
fn search_request(body: Value) -> Result<SearchRequest> {
    if body.get("combinator").is_some() {
        return Ok(SearchRequest { query: Some(body), ..SearchRequest::default() });
    }
    Ok(portolan_model::error::from_json(body)?)
}

async fn run_search(
    app: &AppState,
    reader: &Actor,
    blueprint: Option<&str>,
    body: Value,
) -> Result<Json<SearchResponse>> {
    let request = search_request(body)?;
    let (include, exclude) = (request.include.clone(), request.exclude.clone());
    let page = app.search.search(reader, blueprint, request).await?;
    let entities = page
        .entities
        .into_iter()
        .map(|e| project(serde_json::to_value(e).unwrap_or_default(), &include, &exclude))
        .collect();
    Ok(Json(SearchResponse { ok: true, entities, next: page.next }))
}

/// Searches every blueprint's entities with the query language.
#[utoipa::path(post, path = "/api/v1/entities/search", tag = "search", request_body = SearchRequest,
    responses((status = 200, body = SearchResponse), (status = 422, description = "invalid query, with the path of each mistake")))]
pub async fn search_all(
    State(app): State<AppState>,
    Reader(reader): Reader,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<SearchResponse>> {
    run_search(&app, &reader, None, body).await
}

/// Searches one blueprint's entities with the query language.
#[utoipa::path(post, path = "/api/v1/blueprints/{blueprint}/entities/search", tag = "search", request_body = SearchRequest,
    params(("blueprint" = String, Path)),
    responses((status = 200, body = SearchResponse), (status = 404, description = "no such blueprint"),
              (status = 422, description = "invalid query, with the path of each mistake")))]
pub async fn search_blueprint(
    State(app): State<AppState>,
    Reader(reader): Reader,
    PathParams(blueprint): PathParams<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<SearchResponse>> {
    run_search(&app, &reader, Some(&blueprint), body).await
}

/// Counts, statistics and facets (`countBy`) over the entities a query selects.
#[utoipa::path(post, path = "/api/v1/entities/aggregate", tag = "search", request_body = AggregateRequest,
    responses((status = 200, description = "`{ok, value}` or, for countBy, `{ok, groups: [{value, count}]}`", body = Object),
              (status = 404, description = "no such blueprint"), (status = 422, description = "invalid query or function")))]
pub async fn aggregate(
    State(app): State<AppState>,
    Reader(reader): Reader,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>> {
    let request: AggregateRequest = portolan_model::error::from_json(body)?;
    Ok(Json(match app.search.aggregate(&reader, request).await? {
        AggregateResult::Value(value) => json!({"ok": true, "value": value}),
        AggregateResult::Groups(groups) => {
            let groups: Vec<Value> =
                groups.into_iter().map(|(value, count)| json!({"value": value, "count": count})).collect();
            json!({"ok": true, "groups": groups})
        }
    }))
}
