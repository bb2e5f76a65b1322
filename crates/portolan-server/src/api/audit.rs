//! `/api/v1/audit-log` and an entity's history.

use axum::Json;
use axum::extract::State;
use portolan_model::audit::{AuditRecord, Checkpoint};
use portolan_store::AuditFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{Error, ErrorCode, Result};
use crate::extract::{Caller, PathParams, QueryParams};
use crate::services::audit::DEFAULT_AUDIT_PAGE;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditQuery {
    /// `entity`, `blueprint`, `scorecard`, `action`, `run`, `permissions`, `secret`, `token`, ...
    resource_type: Option<String>,
    /// The resource's identifier.
    identifier: Option<String>,
    blueprint: Option<String>,
    run: Option<String>,
    actor: Option<String>,
    /// `api`, `ui`, `automation`, `runner`, `backend`, `cli`, `demo`, `mcp`, `slack`.
    origin: Option<String>,
    /// `entity.create`, `run.status`, `login.failed`, ...
    action: Option<String>,
    /// `success` or `denied`.
    status: Option<String>,
    /// RFC 3339: records at or after.
    from: Option<String>,
    /// RFC 3339: records at or before.
    to: Option<String>,
    /// The `next` of the previous page.
    cursor: Option<i64>,
    /// 1 to 1000, default 100.
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    ok: bool,
    records: Vec<AuditRecord>,
    /// Pass as `cursor` for older records; absent at the start of the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<i64>,
}

fn instant(name: &str, text: Option<&str>) -> Result<Option<i64>> {
    text.map(|t| {
        portolan_model::blueprint::parse_date_time(t)
            .ok_or_else(|| Error::new(ErrorCode::InvalidQuery, format!("{name} must be an RFC 3339 time")))
    })
    .transpose()
}

/// The audit log, newest first, filtered; members see only records about what they may read.
#[utoipa::path(get, path = "/api/v1/audit-log", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage)))]
pub async fn audit_log(
    State(app): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<AuditPage>> {
    let filter = AuditFilter {
        resource_type: query.resource_type,
        resource_id: query.identifier,
        blueprint: query.blueprint,
        run: query.run,
        actor: query.actor,
        origin: query.origin,
        action: query.action,
        status: query.status,
        from: instant("from", query.from.as_deref())?,
        to: instant("to", query.to.as_deref())?,
        before: query.cursor,
    };
    let (records, next) = app.audit.audit_log(&caller.actor, filter, query.limit.unwrap_or(DEFAULT_AUDIT_PAGE)).await?;
    Ok(Json(AuditPage { ok: true, records, next }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    cursor: Option<i64>,
    limit: Option<u32>,
}

/// Every change to one entity, newest first, with before and after.
#[utoipa::path(get, path = "/api/v1/blueprints/{blueprint}/entities/{entity}/history", tag = "audit",
    params(("blueprint" = String, Path), ("entity" = String, Path), HistoryQuery),
    responses((status = 200, body = AuditPage), (status = 404, description = "no such entity (or hidden)")))]
pub async fn entity_history(
    State(app): State<AppState>,
    caller: Caller,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> Result<Json<AuditPage>> {
    let limit = query.limit.unwrap_or(DEFAULT_AUDIT_PAGE);
    let (records, next) = app.audit.entity_history(&caller.actor, &blueprint, &identifier, query.cursor, limit).await?;
    Ok(Json(AuditPage { ok: true, records, next }))
}

#[derive(Serialize, ToSchema)]
pub struct CheckpointAnswer {
    ok: bool,
    checkpoint: Checkpoint,
}

/// Checks the records added since the last checkpoint, then signs the log's head with the audit
/// key: keep the answer outside the database and `portolan audit verify --checkpoint FILE` later
/// proves the log still reaches it unchanged. Admins only; a broken log gets no checkpoint (500).
#[utoipa::path(post, path = "/api/v1/audit-log/checkpoints", tag = "audit",
    responses((status = 200, body = CheckpointAnswer), (status = 403, description = "not an admin")))]
pub async fn sign_checkpoint(State(app): State<AppState>, caller: Caller) -> Result<Json<CheckpointAnswer>> {
    let checkpoint = app.audit.request_audit_checkpoint(&caller.actor).await?;
    Ok(Json(CheckpointAnswer { ok: true, checkpoint }))
}
