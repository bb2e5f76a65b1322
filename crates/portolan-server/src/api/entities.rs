//! `/api/v1/blueprints/{blueprint}/entities`

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portolan_model::{Entity, EntityInput, EntityRef};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::error::{Error, ErrorCode, Result};
use crate::extract::{
    Caller, Datasource, JsonBody, OptionalIfMatch, PathParams, PortMount, QueryParams, Reader, Writer, etag, time_at,
};
use crate::services::Actor;
use crate::services::catalog::{BulkOptions, Outcome, WriteMode};
use crate::services::integrations::MAX_DATASOURCE_PAGE;
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AsOfQuery {
    /// RFC 3339: the entity as it was then, from the audit log.
    #[serde(rename = "asOf")]
    #[param(rename = "asOf")]
    as_of: Option<String>,
    /// The run a run token reads for (the caller's extractor reads it).
    #[allow(dead_code)]
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
    /// `created`, `updated`, `unchanged` or `error`.
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
        Outcome::Updated | Outcome::Unchanged => StatusCode::OK,
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

/// The entity now, or with `asOf` as it was at that time (read from the audit log).
#[utoipa::path(get, path = "/api/v1/blueprints/{blueprint}/entities/{entity}", tag = "entities",
    params(("blueprint" = String, Path), ("entity" = String, Path), AsOfQuery),
    responses((status = 200, body = EntityResponse, headers(("ETag" = String))),
              (status = 404, description = "not found (at that time: not yet created, or deleted)"),
              (status = 422, description = "an `asOf` that is not a time, or in the future")))]
pub async fn get_entity(
    State(app): State<AppState>,
    Reader(reader): Reader,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<AsOfQuery>,
) -> Result<Response> {
    if let Some(text) = &query.as_of {
        let entity = app.catalog.entity_as_of(&reader, &blueprint, &identifier, time_at(text, "/asOf")?).await?;
        return Ok(entity_response(StatusCode::OK, entity));
    }
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BulkQuery {
    /// Replace an entity that exists instead of failing its item.
    #[serde(default)]
    upsert: bool,
    /// With `upsert`, merge the given fields into the entity that exists.
    #[serde(default)]
    merge: bool,
    /// Create, with their identifier only, the entities relations name that do not exist.
    #[serde(default)]
    create_missing_related_entities: bool,
    /// Check every item and write nothing.
    #[serde(default)]
    validation_only: bool,
    /// The action run making this change: the entities are linked to it.
    run_id: Option<String>,
    /// Ocean's name for the sync writing (accepted, not used).
    #[allow(dead_code)]
    ocean_info_event_type: Option<String>,
    /// Ocean's sync identifier (accepted, not used).
    #[allow(dead_code)]
    ocean_info_resync_id: Option<String>,
}

/// Port's answer to a bulk write: what was written and what failed, each by its index.
#[derive(Serialize, ToSchema)]
struct PortBulkResponse {
    ok: bool,
    entities: Vec<Value>,
    errors: Vec<Value>,
}

/// Writes up to 1000 entities in one transaction; each item gets its own result, so one bad item
/// does not sink the rest. Answers 207 when some items failed. A write from an Ocean integration
/// (its `User-Agent`) records the entities as its datasource's. On `/v1`, the answer is Port's:
/// `{entities: [{index, identifier, created}], errors: [{index, identifier, statusCode, error, message}]}`.
#[utoipa::path(post, path = "/api/v1/blueprints/{blueprint}/entities/bulk", tag = "entities", request_body = BulkRequest,
    params(("blueprint" = String, Path), BulkQuery),
    responses((status = 200, body = BulkResponse), (status = 207, description = "some items failed", body = BulkResponse)))]
pub async fn bulk_entities(
    State(app): State<AppState>,
    writer: Writer,
    PortMount(port): PortMount,
    Datasource(datasource): Datasource,
    PathParams(blueprint): PathParams<String>,
    QueryParams(query): QueryParams<BulkQuery>,
    JsonBody(request): JsonBody<Value>,
) -> Result<Response> {
    let request: BulkRequest = portolan_model::error::from_json(request)?;
    let actor = acting(&app, writer, query.run_id).await?;
    let options = BulkOptions {
        upsert: query.upsert,
        merge: query.merge,
        create_missing_related: query.create_missing_related_entities,
        validation_only: query.validation_only,
        datasource,
    };
    let items = app.catalog.bulk_write(&actor, &blueprint, request.entities, &options).await?;
    let ok = items.iter().all(|item| item.result.is_ok());
    let status = if ok { StatusCode::OK } else { StatusCode::MULTI_STATUS };
    if port {
        let (written, failed): (Vec<_>, Vec<_>) = items.into_iter().partition(|item| item.result.is_ok());
        let entities = written
            .into_iter()
            .map(|item| {
                let created = matches!(item.result, Ok(Outcome::Created));
                json!({"index": item.index, "identifier": item.identifier, "created": created})
            })
            .collect();
        let errors = failed
            .into_iter()
            .filter_map(|item| {
                let err = item.result.err()?;
                Some(
                    json!({"index": item.index, "identifier": item.identifier, "statusCode": err.code.status().as_u16(),
                            "error": err.code.as_str(), "message": err.message}),
                )
            })
            .collect();
        return Ok((status, Json(PortBulkResponse { ok, entities, errors })).into_response());
    }
    let results: Vec<BulkItemResult> = items
        .into_iter()
        .map(|item| match item.result {
            Ok(outcome) => BulkItemResult {
                index: item.index,
                identifier: item.identifier,
                result: match outcome {
                    Outcome::Created => "created",
                    Outcome::Updated => "updated",
                    Outcome::Unchanged => "unchanged",
                },
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
    Ok((status, Json(BulkResponse { ok, results })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkDeleteRequest {
    /// The identifiers to delete, at most 1000.
    entities: Vec<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BulkDeleteQuery {
    /// Also delete every entity that points at one deleted, transitively.
    #[serde(default)]
    delete_dependents: bool,
    /// Ocean's name for the sync deleting (accepted, not used).
    #[allow(dead_code)]
    ocean_info_event_type: Option<String>,
    /// Ocean's sync identifier (accepted, not used).
    #[allow(dead_code)]
    ocean_info_resync_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkDeleteResponse {
    /// False when any entity could not be deleted.
    ok: bool,
    /// The identifiers deleted in this blueprint.
    deleted_entities: Vec<String>,
    /// Everything deleted, dependents in other blueprints included.
    deleted: Vec<EntityRef>,
    /// Each identifier that was not deleted, and why.
    errors: Vec<Value>,
}

/// Deletes many entities of one blueprint (Port's bulk delete); each is deleted or fails on its own.
#[utoipa::path(post, path = "/api/v1/blueprints/{blueprint}/bulk/entities/delete", tag = "entities",
    request_body = BulkDeleteRequest, params(("blueprint" = String, Path), BulkDeleteQuery),
    responses((status = 200, body = BulkDeleteResponse), (status = 207, description = "some failed", body = BulkDeleteResponse)))]
pub async fn bulk_delete_entities(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
    PathParams(blueprint): PathParams<String>,
    QueryParams(query): QueryParams<BulkDeleteQuery>,
    JsonBody(request): JsonBody<Value>,
) -> Result<(StatusCode, Json<BulkDeleteResponse>)> {
    let request: BulkDeleteRequest = portolan_model::error::from_json(request)?;
    let (deleted, failed) =
        app.catalog.bulk_delete(&actor, &blueprint, &request.entities, query.delete_dependents).await?;
    let deleted_entities = deleted.iter().filter(|d| d.blueprint == blueprint).map(|d| d.identifier.clone()).collect();
    let errors: Vec<Value> = failed
        .into_iter()
        .map(|(identifier, err)| json!({"identifier": identifier, "error": err.code.as_str(), "message": err.message}))
        .collect();
    let ok = errors.is_empty();
    let status = if ok { StatusCode::OK } else { StatusCode::MULTI_STATUS };
    Ok((status, Json(BulkDeleteResponse { ok, deleted_entities, deleted, errors })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasourceRequest {
    datasource_prefix: String,
    datasource_suffix: String,
    /// Page size, at most 5000.
    limit: Option<usize>,
    /// Only entities last changed before this time (RFC 3339).
    before: Option<String>,
    /// The `next` of the previous page.
    from: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DatasourceResponse {
    ok: bool,
    entities: Vec<Entity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// The entities Ocean integrations wrote, by their datasource (Port's `datasource-entities`,
/// which Ocean reads to find what left the source).
#[utoipa::path(post, path = "/api/v1/blueprints/entities/datasource-entities", tag = "entities",
    request_body = DatasourceRequest, responses((status = 200, body = DatasourceResponse)))]
pub async fn datasource_entities(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
    JsonBody(request): JsonBody<Value>,
) -> Result<Json<DatasourceResponse>> {
    let request: DatasourceRequest = portolan_model::error::from_json(request)?;
    let before = request.before.as_deref().map(|text| time_at(text, "/before")).transpose()?;
    let page = app
        .integrations
        .datasource_entities(
            &actor,
            &request.datasource_prefix,
            &request.datasource_suffix,
            before,
            request.from.as_deref(),
            request.limit.unwrap_or(MAX_DATASOURCE_PAGE),
        )
        .await?;
    Ok(Json(DatasourceResponse { ok: true, entities: page.entities, next: page.next }))
}
