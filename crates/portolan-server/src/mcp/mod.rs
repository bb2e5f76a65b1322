//! `/mcp`: the Model Context Protocol over Streamable HTTP, for AI assistants. Each POST carries
//! one JSON-RPC message; a request is answered with one JSON response, a notification with 202.
//! The server keeps no session (it gives no `Mcp-Session-Id`): every request is authenticated
//! with the caller's API token, and every tool runs as the caller, through the same permissions,
//! guardrails and audit log as the API (origin `mcp`).

pub mod protocol;
mod tools;

pub use tools::list as tools;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::error::{Error, ErrorCode};
use crate::extract::Caller;
use crate::services::Actor;
use crate::services::actor::Origin;
use crate::state::AppState;
use protocol::{Incoming, RpcError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/mcp", post(message).get(only_post).delete(only_post))
        .layer(Extension(Arc::new(Waiting::default())))
}

/// The tool calls waiting for a run, by caller and request id, so that the caller's
/// `notifications/cancelled` can end their wait (on the replica that holds it).
#[derive(Default)]
pub struct Waiting(Mutex<HashMap<(String, String), Arc<Notify>>>);

impl Waiting {
    fn key(actor: &Actor, id: &Value) -> (String, String) {
        (actor.id.clone(), id.to_string())
    }

    fn start(&self, actor: &Actor, id: &Value) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(Self::key(actor, id), Arc::clone(&notify));
        notify
    }

    fn end(&self, actor: &Actor, id: &Value) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&Self::key(actor, id));
    }

    fn cancel(&self, actor: &Actor, id: &Value) {
        if let Some(notify) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&Self::key(actor, id)) {
            notify.notify_one();
        }
    }
}

/// The server sends nothing unprompted (no stream to listen on) and keeps no session (none to end).
async fn only_post() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response()
}

async fn message(
    State(app): State<AppState>,
    Extension(waiting): Extension<Arc<Waiting>>,
    headers: HeaderMap,
    caller: Result<Caller, Error>,
    body: Bytes,
) -> Response {
    if let Err(refused) = protocol::check_origin(&headers, &app.public_url) {
        return refuse(StatusCode::FORBIDDEN, RpcError::new(-32600, refused));
    }
    let caller = match caller {
        Ok(caller) => caller,
        Err(refused) => return unauthorized(&app, &headers, refused),
    };
    if let Some(version) = headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok())
        && !protocol::SUPPORTED_VERSIONS.contains(&version)
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            RpcError::new(-32600, format!("unsupported MCP-Protocol-Version '{version}'")),
        );
    }
    let mut actor = caller.actor;
    actor.origin = Origin::Mcp;
    let request = match protocol::parse(&body) {
        Ok(Incoming::Request(request)) => request,
        Ok(Incoming::Notification { method, params }) => {
            if method == "notifications/cancelled"
                && let Some(id) = params.get("requestId")
            {
                waiting.cancel(&actor, id);
            }
            return StatusCode::ACCEPTED.into_response();
        }
        Ok(Incoming::Response) => return StatusCode::ACCEPTED.into_response(),
        Err(error) => return refuse(StatusCode::BAD_REQUEST, error),
    };
    let progress_token = request.params.pointer("/_meta/progressToken").cloned();
    match (request.method.as_str(), progress_token) {
        ("tools/call", Some(token)) if protocol::accepts_stream(&headers) => {
            streamed_call(app, waiting, actor, request, token).into_response()
        }
        ("tools/call", _) => match call_tool(&app, &waiting, &actor, request, None).await {
            Some(answer) => axum::Json(answer).into_response(),
            None => StatusCode::ACCEPTED.into_response(),
        },
        (method, _) => {
            let answer = match method {
                "initialize" => Ok(protocol::initialize(&request.params)),
                "ping" => Ok(json!({})),
                "tools/list" => protocol::page_of_tools(tools::list(), &request.params),
                other => Err(RpcError::new(-32601, format!("method '{other}' is not offered"))),
            };
            axum::Json(reply(request.id, answer)).into_response()
        }
    }
}

/// A caller without a valid token is told where to get one: the protected-resource metadata
/// (RFC 9728 §5.1), which names this portal as the authorization server.
fn unauthorized(app: &AppState, headers: &HeaderMap, refused: Error) -> Response {
    if !matches!(refused.code, ErrorCode::Unauthorized | ErrorCode::TokenExpired) {
        return refused.into_response();
    }
    let invalid = if headers.contains_key(header::AUTHORIZATION) { r#", error="invalid_token""# } else { "" };
    let challenge = format!(
        r#"Bearer resource_metadata="{}", scope="{}"{invalid}"#,
        app.oauth.resource_metadata_url(),
        portolan_model::oauth::SCOPE
    );
    let mut response = refused.into_response();
    if let Ok(value) = header::HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// A message refused before it is read as a request: an error without an id.
fn refuse(status: StatusCode, error: RpcError) -> Response {
    (status, axum::Json(error.response(Value::Null))).into_response()
}

/// Runs `tools/call` while the caller may cancel it; its response, or none once cancelled.
async fn call_tool(
    app: &AppState,
    waiting: &Waiting,
    actor: &Actor,
    request: protocol::Request,
    progress: Option<(Value, mpsc::UnboundedSender<Value>)>,
) -> Option<Value> {
    let call = tools::Call::new(progress, waiting.start(actor, &request.id));
    let answer = tools::call(app, actor, &request.params, &call).await;
    waiting.end(actor, &request.id);
    answer.map(|answer| reply(request.id, answer))
}

fn reply(id: Value, answer: std::result::Result<Value, RpcError>) -> Value {
    match answer {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(error) => error.response(id),
    }
}

/// A tool call answered as an event stream: its progress notifications, then its response (none
/// when the caller cancelled it).
fn streamed_call(
    app: AppState,
    waiting: Arc<Waiting>,
    actor: Actor,
    request: protocol::Request,
    token: Value,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    let (sender, receiver) = mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        if let Some(answer) = call_tool(&app, &waiting, &actor, request, Some((token, sender.clone()))).await {
            let _ = sender.send(answer);
        }
    });
    let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let message = receiver.recv().await?;
        let event = Event::default().event("message").data(message.to_string());
        Some((Ok(event), receiver))
    });
    Sse::new(events)
}

/// A service's error as a tool's result (`isError`): what an assistant can act on, with internal
/// causes kept to the server's log.
fn tool_error(error: &Error) -> Value {
    let body = if error.code == ErrorCode::Internal {
        tracing::error!(message = %error.message, "internal error in an MCP tool");
        Error::new(ErrorCode::Internal, "internal error; the server log has the cause").body()
    } else {
        error.body()
    };
    protocol::tool_result(body, true)
}
