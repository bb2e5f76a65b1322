//! `/api/v1/integrations/...`: data brought in from where it lives.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use portolan_model::integration::{Integration, IntegrationEvent, IntegrationInput, IntegrationStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::error::Result;
use crate::extract::{Caller, JsonBody, PathParams, QueryParams};
use crate::services::integrations::{IngestRequest, Ingested, IntegrationView, MAX_EVENT_PAGE, MappingPreview};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestMappingBody {
    /// A mapping in Port's integration shape: `{resources: [{kind, selector: {query},
    /// port: {itemsToParse, entity: {mappings: {identifier, title, blueprint, ...}}}}]}`.
    #[schema(value_type = Object)]
    mapping: Value,
    /// A sample payload: a webhook's body, or one page of a source's items.
    #[schema(value_type = Object)]
    payload: Value,
}

/// Runs a mapping over a sample payload and shows what each item would become (the entity, or
/// each problem with the mapping's JSON pointer), checked against its blueprint. Writes nothing.
#[utoipa::path(post, path = "/api/v1/integrations/test-mapping", tag = "integrations", request_body = TestMappingBody,
    responses((status = 200, body = MappingPreview),
              (status = 422, description = "the mapping is not valid: each problem by its pointer under /mapping")))]
pub async fn test_mapping(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<TestMappingBody>,
) -> Result<Json<MappingPreview>> {
    Ok(Json(app.integrations.test_mapping(&caller.actor, body.mapping, &body.payload).await?))
}

/// The largest webhook body taken: GitHub's own cap on a delivery.
pub const INGEST_BODY_LIMIT: usize = 25 * 1024 * 1024;

#[derive(Serialize, ToSchema)]
pub struct IntegrationResponse {
    ok: bool,
    integration: IntegrationView,
}

#[derive(Serialize, ToSchema)]
pub struct IntegrationListResponse {
    ok: bool,
    integrations: Vec<Integration>,
}

#[derive(Serialize, ToSchema)]
pub struct PullResponse {
    ok: bool,
    status: IntegrationStatus,
}

#[derive(Serialize, ToSchema)]
pub struct EventListResponse {
    ok: bool,
    events: Vec<IntegrationEvent>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EventResponse {
    ok: bool,
    event: IntegrationEvent,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventListQuery {
    /// An event id: the page starts after it (older events).
    before: Option<String>,
    /// Default 50, at most 200.
    limit: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteIntegrationQuery {
    /// Also delete the entities a REST integration brought (default: they stay, no longer owned).
    #[serde(default)]
    delete_entities: bool,
}

/// Creates an integration. A webhook integration's answer holds its ingest URL, shown this once.
/// Admins may create any; a blueprint's moderators those whose resources all write to blueprints
/// they moderate.
#[utoipa::path(post, path = "/api/v1/integrations", tag = "integrations", request_body = IntegrationInput,
    responses((status = 201, body = IntegrationResponse), (status = 409, description = "the identifier is taken"),
              (status = 422, description = "invalid: each problem by its pointer")))]
pub async fn create_integration(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(input): JsonBody<IntegrationInput>,
) -> Result<(StatusCode, Json<IntegrationResponse>)> {
    let integration = app.integrations.create(&caller.actor, input).await?;
    Ok((StatusCode::CREATED, Json(IntegrationResponse { ok: true, integration })))
}

/// The integrations the caller may manage, each with its last pull.
#[utoipa::path(get, path = "/api/v1/integrations", tag = "integrations",
    responses((status = 200, body = IntegrationListResponse)))]
pub async fn list_integrations(State(app): State<AppState>, caller: Caller) -> Result<Json<IntegrationListResponse>> {
    Ok(Json(IntegrationListResponse { ok: true, integrations: app.integrations.list(&caller.actor).await? }))
}

#[utoipa::path(get, path = "/api/v1/integrations/{id}", tag = "integrations", params(("id" = String, Path)),
    responses((status = 200, body = IntegrationResponse), (status = 404, description = "not found")))]
pub async fn get_integration(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<IntegrationResponse>> {
    let integration = app.integrations.get(&caller.actor, &id).await?;
    Ok(Json(IntegrationResponse { ok: true, integration: IntegrationView { integration, ingest_url: None } }))
}

/// Replaces an integration's configuration (its type stays; its ingest URL and events stay).
#[utoipa::path(put, path = "/api/v1/integrations/{id}", tag = "integrations", params(("id" = String, Path)),
    request_body = IntegrationInput,
    responses((status = 200, body = IntegrationResponse), (status = 404, description = "not found"),
              (status = 422, description = "invalid")))]
pub async fn replace_integration(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(input): JsonBody<IntegrationInput>,
) -> Result<Json<IntegrationResponse>> {
    let integration = app.integrations.update(&caller.actor, &id, input).await?;
    Ok(Json(IntegrationResponse { ok: true, integration: IntegrationView { integration, ingest_url: None } }))
}

/// Deletes an integration and its event log.
#[utoipa::path(delete, path = "/api/v1/integrations/{id}", tag = "integrations",
    params(("id" = String, Path), DeleteIntegrationQuery),
    responses((status = 204, description = "deleted"), (status = 404, description = "not found")))]
pub async fn delete_integration(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<DeleteIntegrationQuery>,
) -> Result<StatusCode> {
    app.integrations.delete(&caller.actor, &id, query.delete_entities).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new ingest URL for a webhook integration, shown in this answer only; the old one stops.
#[utoipa::path(post, path = "/api/v1/integrations/{id}/rotate-key", tag = "integrations",
    params(("id" = String, Path)), responses((status = 200, body = IntegrationResponse),
        (status = 422, description = "not a webhook integration: it has no ingest URL")))]
pub async fn rotate_key(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<IntegrationResponse>> {
    Ok(Json(IntegrationResponse { ok: true, integration: app.integrations.rotate_key(&caller.actor, &id).await? }))
}

/// Pulls a REST integration now and answers with its new status.
#[utoipa::path(post, path = "/api/v1/integrations/{id}/sync", tag = "integrations", params(("id" = String, Path)),
    responses((status = 200, body = PullResponse), (status = 422, description = "not a REST integration")))]
pub async fn sync_integration(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<PullResponse>> {
    Ok(Json(PullResponse { ok: true, status: app.integrations.sync_now(&caller.actor, &id).await? }))
}

/// A webhook integration's event log, newest first: each request and what it became.
#[utoipa::path(get, path = "/api/v1/integrations/{id}/events", tag = "integrations",
    params(("id" = String, Path), EventListQuery), responses((status = 200, body = EventListResponse)))]
pub async fn list_events(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<EventListQuery>,
) -> Result<Json<EventListResponse>> {
    let limit = query.limit.unwrap_or(50);
    let events = app.integrations.events(&caller.actor, &id, query.before.as_deref(), limit).await?;
    let next = (events.len() as u32 >= limit.clamp(1, MAX_EVENT_PAGE)).then(|| events.last().map(|e| e.id.clone()));
    Ok(Json(EventListResponse { ok: true, next: next.flatten(), events }))
}

#[utoipa::path(get, path = "/api/v1/integrations/{id}/events/{event}", tag = "integrations",
    params(("id" = String, Path), ("event" = String, Path)),
    responses((status = 200, body = EventResponse), (status = 404, description = "not found")))]
pub async fn get_event(
    State(app): State<AppState>,
    caller: Caller,
    PathParams((id, event)): PathParams<(String, String)>,
) -> Result<Json<EventResponse>> {
    Ok(Json(EventResponse { ok: true, event: app.integrations.event(&caller.actor, &id, &event).await? }))
}

/// A webhook integration's ingest URL. The request is checked by the integration's security,
/// kept, and answered at once (202); the worker maps it. A replay of a request identifier seen
/// before answers 200 with `duplicate` and is not processed again.
#[utoipa::path(post, path = "/integrations/webhooks/{key}", security(()), tag = "integrations", params(("key" = String, Path)),
    request_body(content = Object, description = "any JSON"),
    responses((status = 202, body = Ingested), (status = 200, body = Ingested, description = "a replay"),
              (status = 400, description = "the body is not JSON"),
              (status = 401, description = "the signature or token does not match"),
              (status = 413, description = "the body is larger than 25 MiB"),
              (status = 404, description = "no integration has this key")))]
pub async fn ingest(
    State(app): State<AppState>,
    PathParams(key): PathParams<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Ingested>)> {
    let headers = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let query = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let ingested = app.integrations.ingest(&key, IngestRequest { headers, query, body: body.to_vec() }).await?;
    let status = if ingested.duplicate { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(ingested)))
}
