//! `/api/v1/integration/...` (Port's `/v1/integration`, singular): the record Port's Ocean
//! integrations keep of themselves — configuration, version, sync state — and what Ocean asks of
//! the organisation before it syncs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portolan_model::integration::Installation;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::error::Result;
use crate::extract::{Caller, JsonBody, PathParams, QueryParams};
use crate::services::integrations::InstallationChange;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct InstallationResponse {
    ok: bool,
    /// The record in Port's shape: `installationId`, `installationAppType`, `version`, `config`,
    /// `resyncState`, and every other field the integration sent.
    #[schema(value_type = Object)]
    integration: Value,
}

#[derive(Serialize, ToSchema)]
pub struct InstallationListResponse {
    ok: bool,
    #[schema(value_type = Vec<Object>)]
    integrations: Vec<Value>,
}

fn answer(app: &AppState, installation: &Installation) -> Json<InstallationResponse> {
    Json(InstallationResponse { ok: true, integration: app.integrations.port_record(installation) })
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetQuery {
    /// Ocean's version (accepted, not used).
    #[allow(dead_code)]
    ocean_core_version: Option<String>,
    /// Whether Ocean is polling for changes (accepted, not used).
    #[allow(dead_code)]
    is_polling: Option<bool>,
}

/// Every installation (admins).
#[utoipa::path(get, path = "/api/v1/integration", tag = "integrations",
    responses((status = 200, body = InstallationListResponse)))]
pub async fn list_installations(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
) -> Result<Json<InstallationListResponse>> {
    let integrations =
        app.integrations.installations(&actor).await?.iter().map(|i| app.integrations.port_record(i)).collect();
    Ok(Json(InstallationListResponse { ok: true, integrations }))
}

/// Registers an installation, as Ocean does on its first start (`installationId`,
/// `installationAppType`, `version`, `config`, ...).
#[utoipa::path(post, path = "/api/v1/integration", tag = "integrations", request_body = Object,
    responses((status = 201, body = InstallationResponse), (status = 409, description = "it exists")))]
pub async fn create_installation(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<InstallationResponse>)> {
    let installation = app.integrations.create_installation(&actor, body).await?;
    Ok((StatusCode::CREATED, answer(&app, &installation)))
}

#[utoipa::path(get, path = "/api/v1/integration/{id}", tag = "integrations", params(("id" = String, Path), GetQuery),
    responses((status = 200, body = InstallationResponse), (status = 404, description = "no such installation")))]
pub async fn get_installation(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(_): QueryParams<GetQuery>,
) -> Result<Json<InstallationResponse>> {
    Ok(answer(&app, &app.integrations.installation(&actor, &id).await?))
}

/// Changes the fields sent; the others stay.
#[utoipa::path(patch, path = "/api/v1/integration/{id}", tag = "integrations", params(("id" = String, Path)),
    request_body = Object, responses((status = 200, body = InstallationResponse)))]
pub async fn patch_installation(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<InstallationResponse>> {
    Ok(answer(&app, &app.integrations.change_installation(&actor, &id, InstallationChange::Patch, body).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigBody {
    /// The integration's mapping (Port's app config: `resources`, `deleteDependentEntities`, ...).
    #[schema(value_type = Object)]
    config: Value,
}

/// Replaces the installation's configuration (its mapping).
#[utoipa::path(patch, path = "/api/v1/integration/{id}/config", tag = "integrations", params(("id" = String, Path)),
    request_body = ConfigBody, responses((status = 200, body = InstallationResponse)))]
pub async fn patch_installation_config(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<ConfigBody>,
) -> Result<Json<InstallationResponse>> {
    let body = json!({"config": body.config});
    Ok(answer(&app, &app.integrations.change_installation(&actor, &id, InstallationChange::Patch, body).await?))
}

/// The state of the installation's sync, as it reports it (`status`, `lastResyncStart`, ...).
#[utoipa::path(patch, path = "/api/v1/integration/{id}/resync-state", tag = "integrations",
    params(("id" = String, Path)), request_body = Object, responses((status = 200, body = InstallationResponse)))]
pub async fn report_resync(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<InstallationResponse>> {
    Ok(answer(&app, &app.integrations.change_installation(&actor, &id, InstallationChange::Resync, body).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExamplesBody {
    /// Raw items of the kind, as the integration read them (Ocean masks secrets first).
    #[schema(value_type = Vec<Object>)]
    examples: Value,
}

/// Keeps a few raw items of a kind, shown beside the installation's mapping.
#[utoipa::path(post, path = "/api/v1/integration/{id}/kinds/{kind}/examples", tag = "integrations",
    params(("id" = String, Path), ("kind" = String, Path)), request_body = ExamplesBody,
    responses((status = 200, body = InstallationResponse)))]
pub async fn kind_examples(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
    PathParams((id, kind)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<ExamplesBody>,
) -> Result<Json<InstallationResponse>> {
    let change = InstallationChange::Examples(&kind);
    Ok(answer(&app, &app.integrations.change_installation(&actor, &id, change, body.examples).await?))
}

/// Deletes the installation's record; the entities it wrote stay.
#[utoipa::path(delete, path = "/api/v1/integration/{id}", tag = "integrations", params(("id" = String, Path)),
    responses((status = 200, body = super::Done)))]
pub async fn delete_installation(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>> {
    app.integrations.delete_installation(&actor, &id).await?;
    Ok(Json(json!({"ok": true})))
}

/// The integration types the server installs and configures itself: none (Portolan runs
/// Ocean integrations the way they are deployed, and they bring their own defaults).
#[utoipa::path(get, path = "/api/v1/integration/provision-enabled", tag = "integrations",
    responses((status = 200, description = "`{integrations: []}`")))]
pub async fn provision_enabled(_caller: Caller) -> Json<Value> {
    Json(json!({"ok": true, "integrations": []}))
}

/// The organisation, as Port's clients read it before they start: its name and feature flags.
#[utoipa::path(get, path = "/api/v1/organization", tag = "integrations",
    responses((status = 200, description = "`{organization: {name, featureFlags, settings}}`")))]
pub async fn organization(_caller: Caller) -> Json<Value> {
    Json(
        json!({"ok": true, "organization": {"id": "portolan", "name": "Portolan", "featureFlags": [], "settings": {}}}),
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsBody {
    /// Log records as Ocean ships them (`message`, `level`, `timestamp`, ...).
    #[schema(value_type = Vec<Object>)]
    logs: Value,
}

/// Where Ocean ships its log lines (its `logAttributes.ingestUrl`): the newest are kept with the
/// installation and shown on its page.
#[utoipa::path(post, path = "/api/v1/integration/{id}/logs", tag = "integrations", params(("id" = String, Path)),
    request_body = LogsBody, responses((status = 200, body = super::Done)))]
pub async fn ingest_logs(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<LogsBody>,
) -> Result<Json<Value>> {
    app.integrations.change_installation(&actor, &id, InstallationChange::Logs, body.logs).await?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncMetricsBody {
    /// Several kinds' metrics.
    #[schema(value_type = Option<Vec<Object>>)]
    sync_kinds_metrics: Option<Value>,
    /// One kind's metrics.
    #[schema(value_type = Option<Object>)]
    sync_kind_metrics: Option<Value>,
}

async fn record_metrics(
    app: &AppState,
    actor: &crate::services::Actor,
    id: &str,
    body: SyncMetricsBody,
) -> Result<Json<Value>> {
    let metrics = body.sync_kinds_metrics.or(body.sync_kind_metrics).unwrap_or(Value::Array(Vec::new()));
    app.integrations.change_installation(actor, id, InstallationChange::Metrics, metrics).await?;
    Ok(Json(json!({"ok": true})))
}

/// Where Ocean reports the metrics of a sync (its `metricAttributes.ingestUrl`): the latest of
/// each kind are kept with the installation.
#[utoipa::path(post, path = "/api/v1/integration/{id}/metrics/syncMetrics", tag = "integrations",
    params(("id" = String, Path)), request_body = SyncMetricsBody, responses((status = 200, body = super::Done)))]
pub async fn sync_metrics(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<SyncMetricsBody>,
) -> Result<Json<Value>> {
    record_metrics(&app, &actor, &id, body).await
}

/// One kind's metrics during a sync.
#[utoipa::path(put, path = "/api/v1/integration/{id}/metrics/syncMetrics/resync/{event}/kind/{kind}", tag = "integrations",
    params(("id" = String, Path), ("event" = String, Path), ("kind" = String, Path)), request_body = SyncMetricsBody,
    responses((status = 200, body = super::Done)))]
pub async fn kind_sync_metrics(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
    PathParams((id, _event, _kind)): PathParams<(String, String, String)>,
    JsonBody(body): JsonBody<SyncMetricsBody>,
) -> Result<Json<Value>> {
    record_metrics(&app, &actor, &id, body).await
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeartbeatBody {
    #[allow(dead_code)]
    event_id: String,
}

/// Ocean's sign of life during a sync: the installation must exist; nothing is stored.
#[utoipa::path(post, path = "/api/v1/integration/{id}/metrics/heartbeat", tag = "integrations",
    params(("id" = String, Path)), request_body = HeartbeatBody, responses((status = 200, body = super::Done)))]
pub async fn heartbeat(
    State(app): State<AppState>,
    Caller { actor, .. }: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(_): JsonBody<HeartbeatBody>,
) -> Result<Json<Value>> {
    app.integrations.installation(&actor, &id).await?;
    Ok(Json(json!({"ok": true})))
}
