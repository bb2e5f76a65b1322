//! `/api/v1/blueprints/{blueprint}/entities`

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portolan_model::{Entity, EntityInput, EntityRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::error::{Error, ErrorCode, Result};
use crate::extract::{Caller, JsonBody, OptionalIfMatch, PathParams, QueryParams, Reader, Writer, etag};
use crate::services::Actor;
use crate::services::catalog::{Outcome, WriteMode};
use crate::services::search::SearchRequest;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct EntityResponse {
    ok: bool,
    entity: Entity,
    /// The catalog-as-code source and file that declare the entity (`portolan apply`, a location).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    source: Option<portolan_store::AppliedObject>,
}

#[derive(Serialize, ToSchema)]
pub struct EntityListResponse {
    ok: bool,
    entities: Vec<Entity>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EntityDeleteResponse {
    ok: bool,
    /// Every entity deleted: the one named and, with `delete_dependents`, those that pointed at it.
    deleted: Vec<EntityRef>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    /// Replace the entity if it exists instead of answering 409.
    #[serde(default)]
    upsert: bool,
    /// With `upsert`, merge the given fields into the existing entity instead of replacing it.
    #[serde(default)]
    merge: bool,
    /// The action run making this change: the entity is linked to it.
    run_id: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunIdQuery {
    /// The action run making this change: the entity is linked to it.
    run_id: Option<String>,
}

/// Who makes an entity write: the caller, or a backend with a run token, which must name its run
/// (`run_id`). A run named by a user must be theirs and still open.
async fn acting(app: &AppState, writer: Writer, run_id: Option<String>) -> Result<Actor> {
    match (writer, run_id) {
        (Writer::Caller(actor), None) => Ok(actor),
        (Writer::Caller(actor), Some(run)) => {
            app.runs.check_run_open(&actor, &run, None).await?;
            Ok(actor.for_run(run))
        }
        (Writer::RunToken(token), Some(run)) => {
            app.runs.check_run_open(&Actor::run_token(&run), &run, Some(&token)).await?;
            Ok(Actor::run_token(&run).for_run(run))
        }
        (Writer::RunToken(_), None) => Err(Error::new(
            ErrorCode::Forbidden,
            "a run token changes the catalog only for its run: name it with run_id",
        )),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// The `next` value of the previous page.
    cursor: Option<String>,
    /// A query-language filter, as JSON: `{"combinator": "and", "rules": [...]}`.
    query: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Also delete every entity that points at this one, transitively.
    #[serde(default)]
    delete_dependents: bool,
    /// The action run making this change.
    run_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// At most 1000 entities.
    entities: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct BulkResponse {
    /// False when any item failed.
    ok: bool,
    /// One result per submitted entity, in order.
    results: Vec<BulkItemResult>,
}

#[derive(Serialize, ToSchema)]
pub struct BulkItemResult {
    index: usize,
    identifier: Option<String>,
    /// `created`, `updated` or `error`.
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<Value>,
}

fn entity_response(status: StatusCode, entity: Entity) -> Response {
    sourced_entity_response(status, entity, None)
}

fn sourced_entity_response(
    status: StatusCode,
    entity: Entity,
    source: Option<portolan_store::AppliedObject>,
) -> Response {
    let tag = HeaderValue::from_str(&etag(entity.version)).ok();
    let mut response = (status, Json(EntityResponse { ok: true, entity, source })).into_response();
    if let Some(tag) = tag {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

fn outcome_status(outcome: Outcome) -> StatusCode {
    match outcome {
        Outcome::Created => StatusCode::CREATED,
        Outcome::Updated => StatusCode::OK,
    }
}

#[utoipa::path(get, path = "/api/v1/blueprints/{blueprint}/entities", tag = "entities",
    params(("blueprint" = String, Path), ListQuery),
    responses((status = 200, body = EntityListResponse)))]
pub async fn list_entities(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(blueprint): PathParams<String>,
    QueryParams(params): QueryParams<ListQuery>,
) -> Result<Json<EntityListResponse>> {
    let query = params
        .query
        .as_deref()
        .map(serde_json::from_str::<Value>)
        .transpose()
        .map_err(|e| Error::new(ErrorCode::InvalidQuery, format!("query is not JSON: {e}")))?;
    let request = SearchRequest { query, limit: params.limit, cursor: params.cursor, ..SearchRequest::default() };
    let page = app.search.search(&caller.actor, Some(&blueprint), request).await?;
    Ok(Json(EntityListResponse { ok: true, entities: page.entities, next: page.next }))
}

#[utoipa::path(post, path = "/api/v1/blueprints/{blueprint}/entities", tag = "entities", request_body = EntityInput,
    params(("blueprint" = String, Path), CreateQuery),
    responses((status = 201, body = EntityResponse), (status = 200, description = "updated (upsert)", body = EntityResponse),
              (status = 409, description = "already exists"), (status = 412, description = "stale If-Match"),
              (status = 422, description = "invalid, with per-field details")))]
pub async fn create_entity(
    State(app): State<AppState>,
    writer: Writer,
    PathParams(blueprint): PathParams<String>,
    QueryParams(query): QueryParams<CreateQuery>,
    OptionalIfMatch(if_match): OptionalIfMatch,
    JsonBody(document): JsonBody<Value>,
) -> Result<Response> {
    let mode = WriteMode::Create { upsert: query.upsert, merge: query.merge };
    let actor = acting(&app, writer, query.run_id).await?;
    let (entity, outcome) = app.catalog.write_entity(&actor, &blueprint, None, document, mode, if_match).await?;
    Ok(entity_response(outcome_status(outcome), entity))
}

#[utoipa::path(get, path = "/api/v1/blueprints/{blueprint}/entities/{entity}", tag = "entities",
    params(("blueprint" = String, Path), ("entity" = String, Path)),
    responses((status = 200, body = EntityResponse, headers(("ETag" = String))), (status = 404, description = "not found")))]
pub async fn get_entity(
    State(app): State<AppState>,
    Reader(reader): Reader,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
) -> Result<Response> {
    let entity = app.catalog.get_entity(&reader, &blueprint, &identifier).await?;
    let source = app.manifests.entity_source(&entity.entity_ref()).await?;
    Ok(sourced_entity_response(StatusCode::OK, entity, source))
}

#[utoipa::path(put, path = "/api/v1/blueprints/{blueprint}/entities/{entity}", tag = "entities", request_body = EntityInput,
    params(("blueprint" = String, Path), ("entity" = String, Path), RunIdQuery),
    responses((status = 200, body = EntityResponse), (status = 404, description = "not found"), (status = 412, description = "stale If-Match")))]
pub async fn replace_entity(
    State(app): State<AppState>,
    writer: Writer,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<RunIdQuery>,
    OptionalIfMatch(if_match): OptionalIfMatch,
    JsonBody(document): JsonBody<Value>,
) -> Result<Response> {
    let actor = acting(&app, writer, query.run_id).await?;
    let (entity, _) =
        app.catalog.write_entity(&actor, &blueprint, Some(&identifier), document, WriteMode::Replace, if_match).await?;
    Ok(entity_response(StatusCode::OK, entity))
}

/// Merges the given fields into the entity; a `null` property or relation removes it.
#[utoipa::path(patch, path = "/api/v1/blueprints/{blueprint}/entities/{entity}", tag = "entities", request_body = EntityInput,
    params(("blueprint" = String, Path), ("entity" = String, Path), RunIdQuery),
    responses((status = 200, body = EntityResponse), (status = 404, description = "not found"), (status = 412, description = "stale If-Match")))]
pub async fn patch_entity(
    State(app): State<AppState>,
    writer: Writer,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<RunIdQuery>,
    OptionalIfMatch(if_match): OptionalIfMatch,
    JsonBody(document): JsonBody<Value>,
) -> Result<Response> {
    let actor = acting(&app, writer, query.run_id).await?;
    let (entity, _) =
        app.catalog.write_entity(&actor, &blueprint, Some(&identifier), document, WriteMode::Patch, if_match).await?;
    Ok(entity_response(StatusCode::OK, entity))
}

#[utoipa::path(delete, path = "/api/v1/blueprints/{blueprint}/entities/{entity}", tag = "entities",
    params(("blueprint" = String, Path), ("entity" = String, Path), DeleteQuery),
    responses((status = 200, body = EntityDeleteResponse), (status = 404, description = "not found"),
              (status = 409, description = "other entities point at it (`has_dependents`, listed in details)")))]
pub async fn delete_entity(
    State(app): State<AppState>,
    writer: Writer,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<DeleteQuery>,
    OptionalIfMatch(if_match): OptionalIfMatch,
) -> Result<Json<EntityDeleteResponse>> {
    let actor = acting(&app, writer, query.run_id).await?;
    let deleted = app.catalog.delete_entity(&actor, &blueprint, &identifier, query.delete_dependents, if_match).await?;
    Ok(Json(EntityDeleteResponse { ok: true, deleted }))
}

/// Writes up to 1000 entities in one transaction; each item gets its own result, so one bad item
/// does not sink the rest. Answers 207 when some items failed.
#[utoipa::path(post, path = "/api/v1/blueprints/{blueprint}/entities/bulk", tag = "entities", request_body = BulkRequest,
    params(("blueprint" = String, Path), CreateQuery),
    responses((status = 200, body = BulkResponse), (status = 207, description = "some items failed", body = BulkResponse)))]
pub async fn bulk_entities(
    State(app): State<AppState>,
    writer: Writer,
    PathParams(blueprint): PathParams<String>,
    QueryParams(query): QueryParams<CreateQuery>,
    JsonBody(request): JsonBody<Value>,
) -> Result<(StatusCode, Json<BulkResponse>)> {
    let request: BulkRequest = portolan_model::error::from_json(request)?;
    let actor = acting(&app, writer, query.run_id).await?;
    let items = app.catalog.bulk_write(&actor, &blueprint, request.entities, query.upsert, query.merge).await?;
    let results: Vec<BulkItemResult> = items
        .into_iter()
        .map(|item| match item.result {
            Ok(outcome) => BulkItemResult {
                index: item.index,
                identifier: item.identifier,
                result: if outcome == Outcome::Created { "created" } else { "updated" },
                error: None,
                message: None,
                details: Vec::new(),
            },
            Err(err) => BulkItemResult {
                index: item.index,
                identifier: item.identifier,
                result: "error",
                error: Some(err.code.as_str()),
                message: Some(err.message),
                details: err.details,
            },
        })
        .collect();
    let ok = results.iter().all(|r| r.error.is_none());
    let status = if ok { StatusCode::OK } else { StatusCode::MULTI_STATUS };
    Ok((status, Json(BulkResponse { ok, results })))
}
