//! `/api/v1/apply`, `/api/v1/export`, `/api/v1/sources`: catalog as code.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::error::Result;
use crate::extract::{Caller, JsonBody, QueryParams};
use crate::services::manifests::{ApplyReport, ApplyRequest, SourcedDocument};
use crate::state::AppState;

/// Largest apply request, in bytes: a catalog of a few hundred thousand entities.
pub const APPLY_BODY_LIMIT: usize = 256 * 1024 * 1024;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyBody {
    /// Names the set of files; `prune` deletes only what this source applied before.
    source: String,
    documents: Vec<DocumentBody>,
    /// Check and plan only; write nothing.
    #[serde(default)]
    dry_run: bool,
    /// Delete what this source applied before and these documents no longer declare.
    #[serde(default)]
    prune: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentBody {
    /// The file the document came from, for messages and the entity's `source`.
    #[serde(default)]
    file: Option<String>,
    /// The line it starts on.
    #[serde(default)]
    line: Option<u32>,
    /// `{apiVersion: portolan.dev/v1, kind, spec}`.
    #[schema(value_type = Object)]
    document: Value,
}

#[derive(Serialize, ToSchema)]
pub struct ApplyResponse {
    ok: bool,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    report: ApplyReport,
}

/// Checks every document (nothing is written when any is wrong: each problem comes back with
/// its file, line and JSON pointer), plans, and unless `dryRun` applies in dependency order.
#[utoipa::path(post, path = "/api/v1/apply", tag = "catalog as code", request_body = ApplyBody,
    responses((status = 200, body = ApplyResponse),
              (status = 422, description = "problems in the documents, each with file, line and path")))]
pub async fn apply(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<ApplyBody>,
) -> Result<Json<ApplyResponse>> {
    let documents = body
        .documents
        .into_iter()
        .enumerate()
        .map(|(index, d)| SourcedDocument {
            file: d.file.unwrap_or_else(|| "request".into()),
            line: d.line.unwrap_or(u32::try_from(index).unwrap_or(u32::MAX)),
            document: d.document,
        })
        .collect();
    let request = ApplyRequest {
        source: body.source,
        documents,
        dry_run: body.dry_run,
        prune: body.prune,
        max_delete_share: None,
    };
    let report = app.manifests.apply(&caller.actor, request).await?;
    Ok(Json(ApplyResponse { ok: true, report }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Comma-separated blueprint identifiers; all user blueprints and the teams by default.
    blueprints: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ExportResponse {
    ok: bool,
    #[schema(value_type = Vec<Object>)]
    documents: Vec<Value>,
}

/// The catalog as documents `apply` takes back.
#[utoipa::path(get, path = "/api/v1/export", tag = "catalog as code", params(ExportQuery),
    responses((status = 200, body = ExportResponse)))]
pub async fn export(
    State(app): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ExportQuery>,
) -> Result<Json<ExportResponse>> {
    let only: Vec<String> = query
        .blueprints
        .iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .collect();
    let documents = app.manifests.export(&caller.actor, &only).await?;
    Ok(Json(ExportResponse { ok: true, documents }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceView {
    source: String,
    objects: i64,
    applied_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct SourcesResponse {
    ok: bool,
    sources: Vec<SourceView>,
}

/// Every source that applied documents, with how many objects it holds.
#[utoipa::path(get, path = "/api/v1/sources", tag = "catalog as code",
    responses((status = 200, body = SourcesResponse)))]
pub async fn sources(State(app): State<AppState>, caller: Caller) -> Result<Json<SourcesResponse>> {
    let sources = app
        .manifests
        .sources(&caller.actor)
        .await?
        .into_iter()
        .map(|s| SourceView {
            source: s.source,
            objects: s.objects,
            applied_at: portolan_model::format_millis(s.applied_at),
        })
        .collect();
    Ok(Json(SourcesResponse { ok: true, sources }))
}
