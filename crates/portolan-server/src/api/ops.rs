//! Operations endpoints: health, readiness, metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::error::{Error, ErrorCode};
use crate::state::AppState;

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"ok": true}))
}

/// The process can serve requests: its database answers.
pub async fn readyz(State(app): State<AppState>) -> Result<Json<Value>, Error> {
    match app.core.store().ping().await {
        Ok(()) => Ok(Json(json!({"ok": true, "database": app.core.store().backend()}))),
        Err(err) => {
            tracing::warn!(%err, "not ready");
            Err(Error::new(ErrorCode::Unavailable, "the database does not answer"))
        }
    }
}

/// Prometheus text exposition.
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render())
}
