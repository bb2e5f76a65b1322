//! `/api/v1/notifications`: the caller's inbox and their notification preferences.

use axum::Json;
use axum::extract::State;
use portolan_model::notification::{Preferences, TeamPreferences};
use portolan_store::Notification;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::Result;
use crate::extract::{Caller, JsonBody, PathParams, QueryParams};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    id: String,
    topic: String,
    title: String,
    /// A path in the portal.
    link: String,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_at: Option<String>,
    /// How its webhook delivery went, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery: Option<String>,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        NotificationView {
            id: n.id,
            topic: n.topic,
            title: n.title,
            link: n.link,
            created_at: portolan_model::format_millis(n.created_at),
            read_at: n.read_at.map(portolan_model::format_millis),
            delivery: n.delivery,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct InboxResponse {
    ok: bool,
    unread: u64,
    notifications: Vec<NotificationView>,
}

#[derive(Deserialize, IntoParams)]
pub struct InboxQuery {
    /// Only the unread ones.
    #[serde(default)]
    unread: bool,
    /// At most this many, newest first (50 unless given; at most 200).
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct MarkedResponse {
    ok: bool,
    /// How many were unread.
    marked: u64,
}

#[derive(Serialize, ToSchema)]
pub struct PreferencesResponse {
    ok: bool,
    preferences: Preferences,
}

/// The caller's notifications, newest first, and how many are unread.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", params(InboxQuery),
    responses((status = 200, body = InboxResponse)))]
pub async fn inbox(
    State(app): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<InboxQuery>,
) -> Result<Json<InboxResponse>> {
    let (notes, unread) = app.notifications.inbox(&caller.actor, query.unread, query.limit.unwrap_or(50)).await?;
    Ok(Json(InboxResponse { ok: true, unread, notifications: notes.into_iter().map(Into::into).collect() }))
}

/// Marks one of the caller's notifications read.
#[utoipa::path(post, path = "/api/v1/notifications/{id}/read", tag = "notifications",
    params(("id" = String, Path)), responses((status = 200, body = MarkedResponse), (status = 404)))]
pub async fn mark_read(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<MarkedResponse>> {
    Ok(Json(MarkedResponse { ok: true, marked: app.notifications.mark_read(&caller.actor, Some(&id)).await? }))
}

/// Marks every one of the caller's notifications read.
#[utoipa::path(post, path = "/api/v1/notifications/read", tag = "notifications",
    responses((status = 200, body = MarkedResponse)))]
pub async fn mark_all_read(State(app): State<AppState>, caller: Caller) -> Result<Json<MarkedResponse>> {
    Ok(Json(MarkedResponse { ok: true, marked: app.notifications.mark_read(&caller.actor, None).await? }))
}

/// The caller's notification preferences.
#[utoipa::path(get, path = "/api/v1/notifications/preferences", tag = "notifications",
    responses((status = 200, body = PreferencesResponse)))]
pub async fn preferences(State(app): State<AppState>, caller: Caller) -> Result<Json<PreferencesResponse>> {
    Ok(Json(PreferencesResponse { ok: true, preferences: app.notifications.preferences(&caller.actor).await? }))
}

/// Replaces the caller's notification preferences: the topics the inbox gets, and a webhook
/// (JSON, or a Slack incoming webhook) with the topics it gets.
#[utoipa::path(put, path = "/api/v1/notifications/preferences", tag = "notifications", request_body = Preferences,
    responses((status = 200, body = PreferencesResponse), (status = 422)))]
pub async fn set_preferences(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Json<PreferencesResponse>> {
    let preferences: Preferences = portolan_model::error::from_json(body)?;
    let preferences = app.notifications.set_preferences(&caller.actor, preferences).await?;
    Ok(Json(PreferencesResponse { ok: true, preferences }))
}

#[derive(Serialize, ToSchema)]
pub struct TeamPreferencesResponse {
    ok: bool,
    preferences: TeamPreferences,
}

/// A team's notification preferences (its members and admins).
#[utoipa::path(get, path = "/api/v1/teams/{team}/notification-preferences", tag = "notifications",
    params(("team" = String, Path)), responses((status = 200, body = TeamPreferencesResponse), (status = 403), (status = 404)))]
pub async fn team_preferences(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(team): PathParams<String>,
) -> Result<Json<TeamPreferencesResponse>> {
    let preferences = app.notifications.team_preferences(&caller.actor, &team).await?;
    Ok(Json(TeamPreferencesResponse { ok: true, preferences }))
}

/// Replaces a team's notification preferences: its webhook (JSON, or a Slack incoming webhook
/// for its channel), its e-mail address, and which team topics they get (all when none are named).
#[utoipa::path(put, path = "/api/v1/teams/{team}/notification-preferences", tag = "notifications",
    params(("team" = String, Path)), request_body = TeamPreferences,
    responses((status = 200, body = TeamPreferencesResponse), (status = 403), (status = 404), (status = 422)))]
pub async fn set_team_preferences(
    State(app): State<AppState>,
    caller: Caller,
    PathParams(team): PathParams<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Json<TeamPreferencesResponse>> {
    let preferences: TeamPreferences = portolan_model::error::from_json(body)?;
    let preferences = app.notifications.set_team_preferences(&caller.actor, &team, preferences).await?;
    Ok(Json(TeamPreferencesResponse { ok: true, preferences }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackLinkView {
    /// The Slack workspace (`T...`) and user (`U...`).
    team: String,
    slack_user: String,
    linked_at: String,
    /// `email` (the same address, confirmed by Slack) or `link` (a one-time link).
    method: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackResponse {
    ok: bool,
    /// The Slack app is configured on this server.
    configured: bool,
    /// It has a bot token: it opens forms and sends messages.
    sends: bool,
    /// The caller's Slack users.
    links: Vec<SlackLinkView>,
}

/// The Slack app as the caller sees it: whether it is on, and which Slack users act as them.
#[utoipa::path(get, path = "/api/v1/slack", tag = "notifications", responses((status = 200, body = SlackResponse)))]
pub async fn slack(State(app): State<AppState>, caller: Caller) -> Result<Json<SlackResponse>> {
    let links = app.slack.links(&caller.actor).await?;
    Ok(Json(SlackResponse {
        ok: true,
        configured: app.slack.api.settings().is_some(),
        sends: app.slack.api.sends(),
        links: links
            .into_iter()
            .map(|l| SlackLinkView {
                team: l.team,
                slack_user: l.slack_user,
                linked_at: portolan_model::format_millis(l.linked_at),
                method: l.method,
            })
            .collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct UnlinkedResponse {
    ok: bool,
    /// How many Slack users no longer act as the caller.
    unlinked: u64,
}

/// Unlinks the caller's Slack users.
#[utoipa::path(delete, path = "/api/v1/slack/links", tag = "notifications",
    responses((status = 200, body = UnlinkedResponse)))]
pub async fn unlink_slack(State(app): State<AppState>, caller: Caller) -> Result<Json<UnlinkedResponse>> {
    Ok(Json(UnlinkedResponse { ok: true, unlinked: app.slack.unlink(&caller.actor).await? }))
}
