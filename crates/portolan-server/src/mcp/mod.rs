//! `/mcp`: the Model Context Protocol over Streamable HTTP, for AI assistants. Each POST carries
//! one JSON-RPC message; a request is answered with one JSON response, a notification with 202.
//! The server keeps no session (it gives no `Mcp-Session-Id`): every request is authenticated
//! with the caller's API token, and every tool runs as the caller, through the same permissions,
//! guardrails and audit log as the API (origin `mcp`).

pub mod protocol;
mod tools;

pub use tools::list as tools;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::error::{Error, ErrorCode};
use crate::extract::Caller;
use crate::services::actor::Origin;
use crate::state::AppState;
use protocol::{Incoming, RpcError};

pub fn router() -> Router<AppState> {
    Router::new().route("/mcp", post(message).get(only_post).delete(only_post))
}

/// The server sends nothing unprompted (no stream to listen on) and keeps no session (none to end).
async fn only_post() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response()
}

async fn message(State(app): State<AppState>, headers: HeaderMap, caller: Caller, body: Bytes) -> Response {
    if let Err(refused) = protocol::check_origin(&headers, &app.public_url) {
        return (StatusCode::FORBIDDEN, axum::Json(RpcError::new(-32600, refused).response(Value::Null)))
            .into_response();
    }
    if let Some(version) = headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok())
        && !protocol::SUPPORTED_VERSIONS.contains(&version)
    {
        let message = format!("unsupported MCP-Protocol-Version '{version}'");
        return (StatusCode::BAD_REQUEST, axum::Json(RpcError::new(-32600, message).response(Value::Null)))
            .into_response();
    }
    let request = match protocol::parse(&body) {
        Ok(Incoming::Request(request)) => request,
        Ok(Incoming::Notification | Incoming::Response) => return StatusCode::ACCEPTED.into_response(),
        Err(error) => return (StatusCode::BAD_REQUEST, axum::Json(error.response(Value::Null))).into_response(),
    };
    let mut actor = caller.actor;
    actor.origin = Origin::Mcp;
    let answer = match request.method.as_str() {
        "initialize" => Ok(protocol::initialize(&request.params)),
        "ping" => Ok(json!({})),
        "tools/list" => protocol::page_of_tools(&tools::list(), &request.params),
        "tools/call" => tools::call(&app, &actor, &request.params).await,
        other => Err(RpcError::new(-32601, format!("method '{other}' is not offered"))),
    };
    let reply = match answer {
        Ok(result) => json!({"jsonrpc": "2.0", "id": request.id, "result": result}),
        Err(error) => error.response(request.id),
    };
    axum::Json(reply).into_response()
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
