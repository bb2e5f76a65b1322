//! Runs: `/api/v1/actions/{id}/runs`, `/api/v1/actions/runs[/{run}[/logs[/stream]]]`, the runner
//! protocol under `/api/v1/runners`, and the runs that touched an entity.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use portolan_model::run::{Run, RunLog, RunStatus};
use portolan_store::RunFilter;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::error::{Error, ErrorCode, Result};
use crate::extract::{BearerToken, Caller, JsonBody, PathParams, QueryParams};
use crate::services::runs::{DEFAULT_RUN_PAGE, LogLine, RunReport, RunRequest};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunResponse {
    ok: bool,
    run: Run,
    /// What the run created, updated or deleted in the catalog.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    affected_entities: Option<Vec<Value>>,
}

#[derive(Serialize, ToSchema)]
pub struct RunListResponse {
    ok: bool,
    runs: Vec<Run>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RunLogsResponse {
    ok: bool,
    logs: Vec<RunLog>,
    /// Pass as `after` for the lines that follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// Starts a run. DAY-2 and DELETE actions name the entity; the form's values are checked against
/// the action's inputs (types, formats, required, pickers against the catalog).
/// With `dry_run=true`, nothing starts: the answer is what would be sent (secrets masked) and every
/// guardrail's decision.
#[utoipa::path(post, path = "/api/v1/actions/{action}/runs", tag = "runs", request_body = RunRequest,
    params(("action" = String, Path), CreateRunQuery),
    responses((status = 202, body = RunResponse), (status = 200, description = "dry run: `{dryRun}`"),
              (status = 404, description = "no such action"),
              (status = 412, description = "a precondition fails"),
              (status = 422, description = "the form or entity is invalid, or a bound is passed, with per-field details"),
              (status = 429, description = "over a quota or the concurrency limit; see Retry-After")))]
pub async fn create_run(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(action): PathParams<String>,
    QueryParams(query): QueryParams<CreateRunQuery>,
    JsonBody(request): JsonBody<Value>,
) -> Result<Response> {
    let request: RunRequest = portolan_model::error::from_json(request)?;
    if query.dry_run {
        let dry_run = app.runs.dry_run(&caller.actor, &action, request).await?;
        return Ok(Json(json!({"ok": true, "dryRun": dry_run})).into_response());
    }
    let run = app.runs.create_run(&caller.actor, &action, request).await?;
    Ok((StatusCode::ACCEPTED, Json(RunResponse { ok: true, run, affected_entities: None })).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CreateRunQuery {
    /// Say what would happen, and start nothing.
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunListQuery {
    action: Option<String>,
    /// With `entity`: the entity's blueprint.
    blueprint: Option<String>,
    entity: Option<String>,
    /// Who started the runs.
    user: Option<String>,
    /// Comma-separated statuses.
    status: Option<String>,
    /// Only runs that have not ended.
    #[serde(default)]
    active: bool,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/actions/runs", tag = "runs", params(RunListQuery),
    responses((status = 200, body = RunListResponse)))]
pub async fn list_runs(
    State(app): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<RunListQuery>,
) -> Result<Json<RunListResponse>> {
    let mut statuses = Vec::new();
    for name in query.status.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
        statuses.push(
            RunStatus::parse(name)
                .ok_or_else(|| Error::new(ErrorCode::InvalidQuery, format!("'{name}' is not a run status")))?,
        );
    }
    if query.active {
        let active = RunStatus::ALL.into_iter().filter(|s| !s.is_terminal());
        statuses =
            if statuses.is_empty() { active.collect() } else { active.filter(|s| statuses.contains(s)).collect() };
    }
    let before = query
        .cursor
        .as_deref()
        .map(|c| c.parse::<i64>().map_err(|_| Error::new(ErrorCode::InvalidQuery, "cursor is not one this API gave")))
        .transpose()?;
    let filter = RunFilter {
        action: query.action,
        blueprint: query.blueprint,
        entity: query.entity,
        created_by: query.user,
        statuses,
        before,
        visible_to: None,
    };
    let (runs, next) = app.runs.list_runs(&caller.actor, filter, query.limit.unwrap_or(DEFAULT_RUN_PAGE)).await?;
    Ok(Json(RunListResponse { ok: true, runs, next }))
}

#[utoipa::path(get, path = "/api/v1/actions/runs/{run}", tag = "runs", params(("run" = String, Path)),
    responses((status = 200, body = RunResponse), (status = 404, description = "not found")))]
pub async fn get_run(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<RunResponse>> {
    let (run, affected) = app.runs.get_run(&caller.actor, &id).await?;
    let affected = affected
        .into_iter()
        .map(|(e, change)| json!({"blueprint": e.blueprint, "identifier": e.identifier, "change": change}))
        .collect();
    Ok(Json(RunResponse { ok: true, run, affected_entities: Some(affected) }))
}

/// A backend reports: status (`IN_PROGRESS`, `SUCCESS`, `FAILURE`), label, links, summary,
/// external id. Authenticated by the run token from the payload; a run that ended is final (409).
#[utoipa::path(patch, path = "/api/v1/actions/runs/{run}", tag = "runs", request_body = RunReport,
    params(("run" = String, Path)),
    responses((status = 200, body = RunResponse), (status = 401, description = "missing, wrong or expired run token"),
              (status = 409, description = "the run ended, or the token is from an earlier hand-over")))]
pub async fn report_run(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    BearerToken(token): BearerToken,
    JsonBody(report): JsonBody<Value>,
) -> Result<Json<RunResponse>> {
    let report: RunReport = portolan_model::error::from_json(report)?;
    let run = app.runs.report_run(&id, token.as_deref(), report).await?;
    Ok(Json(RunResponse { ok: true, run, affected_entities: None }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// The `next` of the previous page: lines after it.
    after: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/actions/runs/{run}/logs", tag = "runs", params(("run" = String, Path), LogsQuery),
    responses((status = 200, body = RunLogsResponse), (status = 404, description = "not found")))]
pub async fn run_logs(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<LogsQuery>,
) -> Result<Json<RunLogsResponse>> {
    let limit = query.limit.unwrap_or(500);
    if !(1..=1000).contains(&limit) {
        return Err(Error::new(ErrorCode::InvalidQuery, "limit must be between 1 and 1000"));
    }
    let after = parse_after(query.after.as_deref())?;
    let logs = app.runs.run_logs(&caller.actor, &id, after, limit).await?;
    let next = logs.last().map(|l| l.seq.to_string()).or(query.after);
    Ok(Json(RunLogsResponse { ok: true, logs, next }))
}

fn parse_after(after: Option<&str>) -> Result<i64> {
    after
        .map(|a| {
            a.parse::<i64>().map_err(|_| Error::new(ErrorCode::InvalidQuery, "after is not a cursor this API gave"))
        })
        .transpose()
        .map(|a| a.unwrap_or(0))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendLogs {
    /// One line (Port's shape) ...
    message: Option<String>,
    /// ... or many.
    lines: Option<Vec<LogLine>>,
}

/// A backend appends log lines; authenticated by the run token.
#[utoipa::path(post, path = "/api/v1/actions/runs/{run}/logs", tag = "runs", request_body = AppendLogs,
    params(("run" = String, Path)),
    responses((status = 201, body = LogsAppended), (status = 401, description = "bad run token"),
              (status = 409, description = "the run ended")))]
pub async fn append_logs(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    BearerToken(token): BearerToken,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<LogsAppended>)> {
    let body: AppendLogs = portolan_model::error::from_json(body)?;
    let mut lines = body.lines.unwrap_or_default();
    if let Some(message) = body.message {
        lines.push(LogLine { message, stream: None });
    }
    let appended = app.runs.append_run_logs(&id, token.as_deref(), lines).await?;
    Ok((StatusCode::CREATED, Json(LogsAppended { ok: true, appended })))
}

#[derive(Serialize, ToSchema)]
pub struct LogsAppended {
    ok: bool,
    /// Lines added.
    appended: usize,
}

/// The run's log as server-sent events: every line so far, then new ones as they arrive; `log`
/// events carry a line, a final `end` event the run's status.
#[utoipa::path(get, path = "/api/v1/actions/runs/{run}/logs/stream", tag = "runs",
    params(("run" = String, Path), LogsQuery),
    responses((status = 200, description = "text/event-stream of log lines", content_type = "text/event-stream"),
              (status = 404, description = "not found")))]
pub async fn stream_logs(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<LogsQuery>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let after = parse_after(query.after.as_deref())?;
    app.runs.get_run(&caller.actor, &id).await?;
    let changes = app.core.store().changes();
    let stopping = app.stopping();
    let state = Some((app, caller, Instant::now(), id, after, changes, stopping));
    let events = futures_util::stream::unfold(state, |state| async move {
        let (app, mut caller, mut checked, id, mut after, mut changes, mut stopping) = state?;
        loop {
            if *stopping.borrow() {
                return None;
            }
            // The caller must stay signed in (and allowed to see the run) to keep following it.
            if checked.elapsed() > Duration::from_secs(10) {
                caller.actor = caller.recheck(&app).await.ok()?;
                checked = Instant::now();
            }
            let actor = &caller.actor;
            let Ok(logs) = app.runs.run_logs(actor, &id, after, 500).await else { return None };
            if !logs.is_empty() {
                after = logs.last().map(|l| l.seq).unwrap_or(after);
                let events: Vec<Event> = logs
                    .iter()
                    .map(|l| Event::default().event("log").id(l.seq.to_string()).json_data(l).unwrap_or_default())
                    .collect();
                return Some((events, Some((app, caller, checked, id, after, changes, stopping))));
            }
            let Ok((run, _)) = app.runs.get_run(actor, &id).await else { return None };
            if run.status.is_terminal() {
                let end = Event::default().event("end").json_data(json!({"status": run.status})).unwrap_or_default();
                return Some((vec![end], None));
            }
            tokio::select! {
                _ = wait_for_run(&mut changes, &id) => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stopping.changed() => return None,
            }
        }
    })
    .flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok)));
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

async fn wait_for_run(changes: &mut tokio::sync::broadcast::Receiver<portolan_store::ChangeEvent>, id: &str) {
    loop {
        match changes.recv().await {
            Ok(change) if change.identifier == id && change.kind.starts_with("run.") => return,
            Ok(_) => continue,
            // Missed some: look again.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// The runs that created, changed or deleted an entity, latest first.
#[utoipa::path(get, path = "/api/v1/blueprints/{blueprint}/entities/{entity}/runs", tag = "runs",
    params(("blueprint" = String, Path), ("entity" = String, Path)),
    responses((status = 200, body = EntityRuns)))]
pub async fn entity_runs(
    State(app): State<AppState>,
    caller: Caller,
    PathParams((blueprint, identifier)): PathParams<(String, String)>,
) -> Result<Json<EntityRuns>> {
    let runs = app.runs.entity_runs(&caller.actor, &blueprint, &identifier).await?;
    let runs = runs.into_iter().map(|(run, change)| EntityRun { run, change }).collect();
    Ok(Json(EntityRuns { ok: true, runs }))
}

#[derive(Serialize, ToSchema)]
pub struct EntityRuns {
    ok: bool,
    runs: Vec<EntityRun>,
}

#[derive(Serialize, ToSchema)]
pub struct EntityRun {
    run: Run,
    /// What the run did to the entity: `created`, `updated` or `deleted`.
    change: String,
}

// ---- the runner protocol ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimRequest {
    /// Claim only runs needing these labels (a subset of the token's); all the token's by default.
    #[serde(default)]
    labels: Vec<String>,
    /// Long-poll: wait up to this long for a run (0 to 60, default 25).
    wait_seconds: Option<u64>,
}

/// A runner claims the oldest queued run its labels allow, waiting up to `waitSeconds`. 200 with
/// the run, its command, its payload and a run token; 204 when none came.
#[utoipa::path(post, path = "/api/v1/runners/claim", tag = "runners", request_body = ClaimRequest,
    responses((status = 200, body = crate::services::runs::RunnerClaim), (status = 204, description = "nothing to do"),
              (status = 401, description = "unknown or revoked runner token")))]
pub async fn claim(
    State(app): State<AppState>,
    BearerToken(token): BearerToken,
    JsonBody(request): JsonBody<Value>,
) -> Result<Response> {
    let request: ClaimRequest = portolan_model::error::from_json(request)?;
    let token = token.ok_or_else(|| Error::new(ErrorCode::Unauthorized, "a runner token is needed"))?;
    let wait = Duration::from_secs(request.wait_seconds.unwrap_or(25).min(60));
    let lease_ms = app.runs.runner_lease_ms();
    let mut stopping = app.stopping();
    // A stopping server answers waiting runners at once, so the shutdown is not held up by them.
    let claimed = tokio::select! {
        claimed = app.runs.claim_run(&token, &request.labels, wait, lease_ms) => claimed?,
        _ = stopping.wait_for(|stopping| *stopping) => None,
    };
    match claimed {
        Some(claim) => Ok(Json(json!({"ok": true, "claim": claim})).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The `attempt` of the claim (each claim of a run is its own lease).
    attempt: i64,
}

/// A runner working on a run extends its lease; 409 when the run is no longer its own.
#[utoipa::path(post, path = "/api/v1/runners/runs/{run}/heartbeat", tag = "runners", params(("run" = String, Path)),
    request_body = HeartbeatRequest,
    responses((status = 200, body = LeaseExtended), (status = 409, description = "lease lost")))]
pub async fn heartbeat(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    BearerToken(token): BearerToken,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<LeaseExtended>> {
    let body: HeartbeatRequest = portolan_model::error::from_json(body)?;
    let token = token.ok_or_else(|| Error::new(ErrorCode::Unauthorized, "a runner token is needed"))?;
    let lease_ms = app.runs.runner_lease_ms();
    let until = app.runs.heartbeat(&token, &id, body.attempt, lease_ms).await?;
    Ok(Json(LeaseExtended { ok: true, lease_until: portolan_model::format_millis(until) }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaseExtended {
    ok: bool,
    /// The run is the runner's until then; another heartbeat extends it.
    lease_until: String,
}

// ---- approvals ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// `APPROVE` or `DECLINE`.
    status: portolan_model::guardrail::Decision,
    /// Why (shown on the run and kept in the audit log).
    description: Option<String>,
}

/// Approves or declines a run waiting for approval. The requester cannot; each approver once;
/// not after the approval expired or the run's inputs or entity changed.
#[utoipa::path(patch, path = "/api/v1/actions/runs/{run}/approval", tag = "runs", request_body = ApprovalRequest,
    params(("run" = String, Path)),
    responses((status = 200, body = RunResponse), (status = 403, description = "not an approver, or the requester"),
              (status = 409, description = "not waiting, decided already, expired, or changed since the request")))]
pub async fn decide(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<RunResponse>> {
    let request: ApprovalRequest = portolan_model::error::from_json(body)?;
    let run = app.approvals.decide_run(&caller.actor, &id, request.status, request.description).await?;
    Ok(Json(RunResponse { ok: true, run, affected_entities: None }))
}

/// Cancels a run waiting for approval: its requester or an admin.
#[utoipa::path(post, path = "/api/v1/actions/runs/{run}/cancel", tag = "runs", params(("run" = String, Path)),
    responses((status = 200, body = RunResponse), (status = 409, description = "no longer waiting for approval")))]
pub async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<RunResponse>> {
    let run = app.approvals.cancel_run(&caller.actor, &id).await?;
    Ok(Json(RunResponse { ok: true, run, affected_entities: None }))
}

/// The runs waiting for the caller's approval, oldest first.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "runs", responses((status = 200, body = RunListResponse)))]
pub async fn inbox(State(app): State<AppState>, caller: Caller) -> Result<Json<RunListResponse>> {
    let runs = app.approvals.approval_inbox(&caller.actor).await?;
    Ok(Json(RunListResponse { ok: true, runs, next: None }))
}
