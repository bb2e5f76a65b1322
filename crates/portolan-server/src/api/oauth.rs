//! OAuth's JSON endpoints for AI assistants: discovery (RFC 9728, RFC 8414), client registration
//! (RFC 7591) and the token endpoint. They answer in OAuth's own error shape
//! (`{"error", "error_description"}`), as OAuth clients read it; the consent page is the web
//! portal's (`web/oauth.rs`). Open to any origin: nothing here reads a cookie.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portolan_model::oauth::{OAuthError, OAuthErrorCode, TokenRequest};
use serde_json::{Value, json};
use tower_http::cors::{Any, CorsLayer};

use crate::error::Error;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/oauth-protected-resource", get(protected_resource))
        .route("/.well-known/oauth-protected-resource/mcp", get(protected_resource))
        .route("/.well-known/oauth-authorization-server", get(authorization_server))
        .route("/oauth/register", post(register))
        .route("/oauth/token", post(token))
        .layer(CorsLayer::new().allow_origin(Any).allow_headers(Any).allow_methods(Any))
}

async fn protected_resource(State(app): State<AppState>) -> Json<Value> {
    Json(app.oauth.protected_resource_metadata())
}

async fn authorization_server(State(app): State<AppState>) -> Json<Value> {
    Json(app.oauth.authorization_server_metadata())
}

async fn register(State(app): State<AppState>, body: Bytes) -> Result<Response, Error> {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return Ok(refuse(&OAuthError {
            code: OAuthErrorCode::InvalidClientMetadata,
            description: "the registration is not JSON".into(),
        }));
    };
    Ok(match app.oauth.register(&request)? {
        Ok(client) => (StatusCode::CREATED, no_store(), Json(client)).into_response(),
        Err(refused) => refuse(&refused),
    })
}

async fn token(State(app): State<AppState>, body: Bytes) -> Result<Response, Error> {
    let mut request = TokenRequest::default();
    for (key, value) in url::form_urlencoded::parse(&body) {
        let slot = match key.as_ref() {
            "grant_type" => &mut request.grant_type,
            "code" => &mut request.code,
            "code_verifier" => &mut request.code_verifier,
            "redirect_uri" => &mut request.redirect_uri,
            "client_id" => &mut request.client_id,
            "resource" => &mut request.resource,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Ok(refuse(&OAuthError {
                code: OAuthErrorCode::InvalidRequest,
                description: format!("'{key}' is given twice"),
            }));
        }
    }
    Ok(match app.oauth.token(&request).await? {
        Ok(token) => (no_store(), Json(token)).into_response(),
        Err(refused) => refuse(&refused),
    })
}

/// Tokens and credentials are never cached (RFC 6749 §5.1).
fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

fn refuse(error: &OAuthError) -> Response {
    let status = match error.code {
        OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    };
    let body = json!({"error": error.code.as_str(), "error_description": error.description});
    (status, no_store(), Json(body)).into_response()
}
