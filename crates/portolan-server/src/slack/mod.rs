//! The Slack app: its slash command (`/slack/commands`), its interactivity and options URL
//! (`/slack/interactions`: modal submissions, buttons, options typed into a select) and its
//! manifest (`/slack/manifest`). Every request is checked against the signing secret (a stale
//! one refused) before anything is read; every command and click then acts as the linked
//! Portolan user, through the same services, permissions, guardrails and audit log as the portal.

pub mod api;
pub mod blocks;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use portolan_model::action::Trigger;
use portolan_model::guardrail::Decision;
use portolan_model::slack::{self as rules, Command};
use portolan_store::SlackThread;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, ErrorCode};
use crate::forms;
use crate::services::Actor;
use crate::services::runs::RunRequest;
use crate::services::search::SearchRequest;
use crate::state::AppState;
use api::Posted;

/// Most entities a search answers with in Slack.
const SEARCH_LIMIT: u32 = 10;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/slack/commands", post(command))
        .route("/slack/interactions", post(interaction))
        .route("/slack/manifest", get(manifest))
}

/// The request's body, once its signature proves Slack sent it, recently.
fn verified(app: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), Error> {
    let settings = app
        .slack
        .api
        .settings()
        .ok_or_else(|| Error::new(ErrorCode::NotFound, "the Slack app is not configured on this server"))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = app.core.now() / 1000;
    rules::verify(&settings.signing_secret, header("x-slack-request-timestamp"), header("x-slack-signature"), body, now)
        .map_err(|why| Error::unauthorized(why.to_string()))
}

/// The fields of a slash command Slack posts.
#[derive(Debug, Deserialize)]
struct SlashCommand {
    team_id: String,
    user_id: String,
    #[serde(default)]
    command: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    trigger_id: String,
}

async fn command(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = verified(&app, &headers, &body) {
        return refused.into_response();
    }
    let Ok(command) = serde_urlencoded::from_bytes::<SlashCommand>(&body) else {
        return Error::new(ErrorCode::InvalidQuery, "not a Slack slash command").into_response();
    };
    let reply = match answer_command(&app, &command).await {
        Ok(Some(reply)) => reply,
        // A modal opened: Slack wants an empty 200.
        Ok(None) => return StatusCode::OK.into_response(),
        Err(error) => blocks::ephemeral(&format!("That did not work: {}", error.message)),
    };
    axum::Json(reply).into_response()
}

async fn answer_command(app: &AppState, command: &SlashCommand) -> Result<Option<Value>, Error> {
    let name = if command.command.is_empty() { "/portolan" } else { command.command.as_str() };
    let asked = Command::parse(&command.text);
    if asked == Command::Help {
        return Ok(Some(blocks::help(name)));
    }
    if asked == Command::Link {
        return Ok(Some(link_prompt(app, command)?));
    }
    let Some(actor) = app.slack.actor(&command.team_id, &command.user_id).await? else {
        return Ok(Some(link_prompt(app, command)?));
    };
    match asked {
        Command::Search(text) => Ok(Some(search(app, &actor, &text).await?)),
        Command::Run { action, entity } => {
            let form =
                forms::action_form(app, &actor, &action, &Default::default(), entity.as_deref().unwrap_or("")).await?;
            let metadata = RunMetadata { action: form.identifier.clone() };
            let url = format!("{}/actions/{}", app.public_url, portolan_model::ident::url_segment(&form.identifier));
            let view = blocks::run_modal(&form, &url, &serde_json::to_string(&metadata).unwrap_or_default());
            app.slack.api.open_view(&command.trigger_id, &view).await.map_err(unavailable)?;
            Ok(None)
        }
        Command::Unlink => {
            let removed = app.slack.unlink(&actor).await?;
            Ok(Some(blocks::ephemeral(&format!("Unlinked: {removed} Slack user(s) no longer act as {}.", actor.id))))
        }
        Command::Help | Command::Link => Ok(None),
    }
}

fn link_prompt(app: &AppState, command: &SlashCommand) -> Result<Value, Error> {
    let url = app.slack.link_url(&command.team_id, &command.user_id)?;
    let minutes = crate::services::slack::LINK_SECONDS / 60;
    Ok(blocks::ephemeral(&format!(
        "To act as your Portolan user from Slack, {} while signed in to the portal (it works once, for {minutes} minutes).",
        rules::link(&url, "open this link")
    )))
}

async fn search(app: &AppState, actor: &Actor, text: &str) -> Result<Value, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(blocks::ephemeral("Search for what? Give some words of a title or an identifier."));
    }
    let filter = json!({"combinator": "or", "rules": [
        {"property": "$title", "operator": "contains", "value": text},
        {"property": "$identifier", "operator": "contains", "value": text}]});
    let request = SearchRequest { query: Some(filter), limit: Some(SEARCH_LIMIT), ..SearchRequest::default() };
    let page = app.search.search(actor, None, request).await?;
    Ok(blocks::search_results(text, &page.entities, page.next.is_some(), &app.public_url))
}

fn unavailable(error: api::SlackError) -> Error {
    Error::new(ErrorCode::Unavailable, error.to_string())
}

/// What a run modal carries back to us.
#[derive(Debug, Serialize, Deserialize)]
struct RunMetadata {
    action: String,
}

/// What an approval modal carries back: the run, the decision, and the message to update.
#[derive(Debug, Serialize, Deserialize)]
struct ApprovalMetadata {
    run: String,
    approve: bool,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    ts: Option<String>,
}

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

async fn interaction(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = verified(&app, &headers, &body) {
        return refused.into_response();
    }
    let payload = serde_urlencoded::from_bytes::<InteractionForm>(&body)
        .ok()
        .and_then(|form| serde_json::from_str::<Value>(&form.payload).ok());
    let Some(payload) = payload else {
        return Error::new(ErrorCode::InvalidQuery, "not a Slack interaction payload").into_response();
    };
    let text = |pointer: &str| payload.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string();
    let team = Some(text("/team/id")).filter(|t| !t.is_empty()).unwrap_or_else(|| text("/user/team_id"));
    let actor = match app.slack.actor(&team, &text("/user/id")).await {
        Ok(Some(actor)) => actor,
        Ok(None) => return axum::Json(not_linked(&payload)).into_response(),
        Err(error) => return axum::Json(errors_or_message(&payload, &error)).into_response(),
    };
    let answer = match text("/type").as_str() {
        "view_submission" => match text("/view/callback_id").as_str() {
            blocks::RUN_CALLBACK => submit_run(&app, &actor, &payload).await,
            blocks::APPROVAL_CALLBACK => submit_decision(&app, &actor, &payload).await,
            _ => Ok(None),
        },
        "block_actions" => ask_decision(&app, &actor, &payload).await,
        "block_suggestion" => suggest(&app, &actor, &payload).await.map(Some),
        _ => Ok(None),
    };
    match answer {
        Ok(Some(answer)) => axum::Json(answer).into_response(),
        Ok(None) => StatusCode::OK.into_response(),
        Err(error) => axum::Json(errors_or_message(&payload, &error)).into_response(),
    }
}

/// A modal's answer to someone Slack does not know in Portolan yet.
fn not_linked(payload: &Value) -> Value {
    let message = "Your Slack user is not linked to a Portolan user: type the command with `link` first.";
    errors_or_message(payload, &Error::forbidden(message))
}

/// An error as Slack can show it: beside the inputs it is about (a modal's `errors`), or on the
/// first input, or as a message; a select asking for options gets none.
fn errors_or_message(payload: &Value, error: &Error) -> Value {
    if payload["type"] == "block_suggestion" {
        return json!({"options": []});
    }
    let inputs: Vec<&str> = payload
        .pointer("/view/blocks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "input")
        .filter_map(|b| b["block_id"].as_str())
        .collect();
    if payload["type"] != "view_submission" || inputs.is_empty() {
        return blocks::ephemeral(&error.message);
    }
    let mut errors = serde_json::Map::new();
    for detail in &error.details {
        let path = detail["path"].as_str().unwrap_or_default();
        let block = match path.strip_prefix("/properties/") {
            Some(name) => format!("in.{}", name.split('/').next().unwrap_or(name)),
            None if path == "/entity" => blocks::ENTITY_BLOCK.to_string(),
            None => continue,
        };
        if inputs.contains(&block.as_str()) {
            errors.insert(block, json!(rules::clip(detail["message"].as_str().unwrap_or_default(), 150)));
        }
    }
    if errors.is_empty() {
        errors.insert(inputs[0].to_string(), json!(rules::clip(&error.message, 150)));
    }
    json!({"response_action": "errors", "errors": errors})
}

async fn submit_run(app: &AppState, actor: &Actor, payload: &Value) -> Result<Option<Value>, Error> {
    let metadata: RunMetadata = serde_json::from_str(payload["view"]["private_metadata"].as_str().unwrap_or(""))
        .map_err(|_| Error::new(ErrorCode::InvalidQuery, "this form came without its action"))?;
    let action = app.actions.get_action(actor, &metadata.action).await?.action;
    let Trigger::SelfService { user_inputs, .. } = &action.trigger else {
        return Err(Error::not_found(format!("action '{}'", metadata.action)));
    };
    let values = blocks::submitted_values(&payload["view"]["state"]);
    let request = RunRequest {
        properties: forms::typed_inputs(user_inputs, &values),
        entity: values.get(blocks::ENTITY_BLOCK).cloned().filter(|e| !e.is_empty()),
        override_reason: None,
    };
    let run = app.runs.create_run(actor, &metadata.action, request).await?;
    // The run is kept; its first message and thread follow, without holding Slack's answer.
    let (app, slack_user) = (app.clone(), payload.pointer("/user/id").and_then(Value::as_str).map(str::to_string));
    tokio::spawn(async move {
        let Some(slack_user) = slack_user else { return };
        let url = format!("{}/runs/{}", app.public_url, run.id);
        let (text, message) = blocks::run_message(&run, &url);
        match app.slack.api.post_message(&slack_user, &text, &message, None).await {
            Ok(posted) => {
                if let Err(error) = app
                    .slack
                    .keep_thread(&SlackThread { run: run.id.clone(), channel: posted.channel, ts: posted.ts })
                    .await
                {
                    tracing::warn!(%error, run = %run.id, "cannot keep the Slack thread of a run");
                }
            }
            Err(error) => tracing::warn!(%error, run = %run.id, "cannot tell Slack of a run started there"),
        }
    });
    Ok(Some(json!({"response_action": "clear"})))
}

/// An approver clicked Approve or Decline: the modal that asks for a comment.
async fn ask_decision(app: &AppState, actor: &Actor, payload: &Value) -> Result<Option<Value>, Error> {
    let Some(clicked) = payload.pointer("/actions/0") else { return Ok(None) };
    let approve = match clicked["action_id"].as_str() {
        Some(blocks::APPROVE) => true,
        Some(blocks::DECLINE) => false,
        _ => return Ok(None),
    };
    let run_id = clicked["value"].as_str().unwrap_or_default();
    let (run, _) = app.runs.get_run(actor, run_id).await?;
    let metadata = ApprovalMetadata {
        run: run.id.clone(),
        approve,
        channel: payload.pointer("/container/channel_id").and_then(Value::as_str).map(str::to_string),
        ts: payload.pointer("/container/message_ts").and_then(Value::as_str).map(str::to_string),
    };
    let what = blocks::run_message(&run, "").0;
    let view = blocks::approval_modal(&what, approve, &serde_json::to_string(&metadata).unwrap_or_default());
    let trigger = payload["trigger_id"].as_str().unwrap_or_default();
    app.slack.api.open_view(trigger, &view).await.map_err(unavailable)?;
    Ok(None)
}

async fn submit_decision(app: &AppState, actor: &Actor, payload: &Value) -> Result<Option<Value>, Error> {
    let metadata: ApprovalMetadata =
        serde_json::from_str(payload["view"]["private_metadata"].as_str().unwrap_or(""))
            .map_err(|_| Error::new(ErrorCode::InvalidQuery, "this form came without its run"))?;
    let comment = blocks::submitted_values(&payload["view"]["state"]).remove(blocks::COMMENT_BLOCK);
    let decision = if metadata.approve { Decision::Approve } else { Decision::Decline };
    let comment = comment.filter(|c| !c.is_empty());
    let run = app.approvals.decide_run(actor, &metadata.run, decision, comment).await?;
    if let (Some(channel), Some(ts)) = (metadata.channel, metadata.ts) {
        let url = format!("{}/runs/{}", app.public_url, run.id);
        let verb = if metadata.approve { "Approved" } else { "Declined" };
        let outcome = format!("{verb} by {} · now {}", actor.id, blocks::status_words(&run));
        let (text, _) = blocks::run_message(&run, &url);
        let message = blocks::approval_decided(&text, &url, &outcome);
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(error) = app.slack.api.update_message(&Posted { channel, ts }, &text, &message).await {
                tracing::warn!(%error, "cannot update a Slack approval request");
            }
        });
    }
    Ok(Some(json!({"response_action": "clear"})))
}

/// Options for a select too long to list: the entities whose title or identifier contains
/// what was typed, among those the person may read.
async fn suggest(app: &AppState, actor: &Actor, payload: &Value) -> Result<Value, Error> {
    let metadata: RunMetadata = serde_json::from_str(payload["view"]["private_metadata"].as_str().unwrap_or(""))
        .map_err(|_| Error::new(ErrorCode::InvalidQuery, "this form came without its action"))?;
    let action = app.actions.get_action(actor, &metadata.action).await?.action;
    let Trigger::SelfService { user_inputs, blueprint_identifier, .. } = &action.trigger else {
        return Ok(json!({"options": []}));
    };
    let block = payload["action_id"].as_str().or(payload["block_id"].as_str()).unwrap_or_default();
    let blueprint = match block.strip_prefix("in.") {
        Some(name) => user_inputs.properties.get(name).and_then(forms::picked_from),
        None => blueprint_identifier.clone(),
    };
    let Some(blueprint) = blueprint else { return Ok(json!({"options": []})) };
    let typed = payload["value"].as_str().unwrap_or_default();
    let filter = json!({"combinator": "or", "rules": [
        {"property": "$title", "operator": "contains", "value": typed},
        {"property": "$identifier", "operator": "contains", "value": typed}]});
    let limit = Some(blocks::MAX_OPTIONS as u32);
    let page = app
        .search
        .search(actor, Some(&blueprint), SearchRequest { query: Some(filter), limit, ..Default::default() })
        .await?;
    Ok(json!({"options": blocks::entity_options(&page.entities)}))
}

/// The app's manifest, for "Create an app → From a manifest" in Slack: its command, its
/// interactivity and options URLs on this server, and the scopes it uses.
async fn manifest(State(app): State<AppState>) -> Response {
    let base = &app.public_url;
    axum::Json(json!({
        "display_information": {"name": "Portolan", "description": "The software catalog, its KPIs and self-service actions"},
        "features": {
            "bot_user": {"display_name": "Portolan", "always_online": true},
            "slash_commands": [{
                "command": "/portolan",
                "url": format!("{base}/slack/commands"),
                "description": "Search the catalog and run actions",
                "usage_hint": "search <words> | run <action> [entity] | link",
                "should_escape": false,
            }],
        },
        "oauth_config": {"scopes": {"bot": ["commands", "chat:write", "im:write", "users:read", "users:read.email"]}},
        "settings": {
            "interactivity": {
                "is_enabled": true,
                "request_url": format!("{base}/slack/interactions"),
                "message_menu_options_url": format!("{base}/slack/interactions"),
            },
            "org_deploy_enabled": false,
            "socket_mode_enabled": false,
            "token_rotation_enabled": false,
        },
    }))
    .into_response()
}
