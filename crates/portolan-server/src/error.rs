//! The one table of error codes, and the error every request path returns.
//!
//! Policy: services and handlers return [`Error`]; each carries a code from [`ErrorCode`], whose one
//! line below fixes its HTTP status and its wire name. Every error leaves the server as
//! `{"ok": false, "error": code, "message": ..., "details": [...]}`. Internal causes (database
//! messages, panics) are logged with the request id and never put in the body.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portolan_model::FieldErrors;
use portolan_store::StoreError;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    MalformedJson,
    InvalidQuery,
    UnsupportedMediaType,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    TokenExpired,
    Forbidden,
    CsrfFailed,
    NotFound,
    MethodNotAllowed,
    AlreadyExists,
    HasEntities,
    HasDependents,
    InUse,
    ManagedBySource,
    Conflict,
    RunFinished,
    LeaseLost,
    PreconditionFailed,
    Frozen,
    Locked,
    ValidationFailed,
    SchemaBreaksEntities,
    TooManyRequests,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// The table: status and wire name of each code.
    pub fn parts(self) -> (StatusCode, &'static str) {
        use ErrorCode as C;
        match self {
            C::MalformedJson => (StatusCode::BAD_REQUEST, "malformed_json"),
            C::InvalidQuery => (StatusCode::BAD_REQUEST, "invalid_query"),
            C::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            C::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            C::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            C::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            C::TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            C::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            C::CsrfFailed => (StatusCode::FORBIDDEN, "csrf_failed"),
            C::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            C::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            C::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
            C::HasEntities => (StatusCode::CONFLICT, "has_entities"),
            C::HasDependents => (StatusCode::CONFLICT, "has_dependents"),
            C::InUse => (StatusCode::CONFLICT, "in_use"),
            C::ManagedBySource => (StatusCode::CONFLICT, "managed_by_source"),
            C::Conflict => (StatusCode::CONFLICT, "conflict"),
            C::RunFinished => (StatusCode::CONFLICT, "run_finished"),
            C::LeaseLost => (StatusCode::CONFLICT, "lease_lost"),
            C::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            C::Frozen => (StatusCode::CONFLICT, "frozen"),
            C::Locked => (StatusCode::LOCKED, "locked"),
            C::ValidationFailed => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            C::SchemaBreaksEntities => (StatusCode::UNPROCESSABLE_ENTITY, "schema_breaks_entities"),
            C::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            C::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            C::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn status(self) -> StatusCode {
        self.parts().0
    }

    pub fn as_str(self) -> &'static str {
        self.parts().1
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<Value>,
    /// Seconds after which a refused request may be tried again (`Retry-After`).
    pub retry_after: Option<u64>,
    /// A refusal by permissions (403, or a 404 that hides what the caller may not read): the
    /// audit log records the attempt.
    pub denied: bool,
}

/// Put on a response whose request was refused by permissions, for the audit log's middleware.
#[derive(Debug, Clone)]
pub struct Refusal(pub String);

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let denied = matches!(code, ErrorCode::Forbidden | ErrorCode::CsrfFailed);
        Self { code, message: message.into(), details: Vec::new(), retry_after: None, denied }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// 404 for something that exists but the caller may not read: it reads like a missing one.
    pub fn hidden(what: impl std::fmt::Display) -> Self {
        Self { denied: true, ..Self::not_found(what) }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// 429: try again after `seconds`.
    pub fn too_many(message: impl Into<String>, seconds: u64) -> Self {
        Self { retry_after: Some(seconds.max(1)), ..Self::new(ErrorCode::TooManyRequests, message) }
    }

    pub fn with_details(mut self, details: Vec<Value>) -> Self {
        self.details = details;
        self
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn invalid(errors: FieldErrors) -> Self {
        let message = match errors.0.as_slice() {
            [one] => format!("{}: {}", one.path, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        let details = errors.0.iter().map(|e| json!({"path": e.path, "message": e.message})).collect();
        Self::new(ErrorCode::ValidationFailed, message).with_details(details)
    }

    /// A validation error of one field, at a JSON pointer.
    pub fn invalid_at(path: &str, message: impl Into<String>) -> Self {
        Self::invalid(FieldErrors(vec![portolan_model::FieldError::new(path, message)]))
    }

    /// The JSON body of this error.
    pub fn body(&self) -> Value {
        json!({"ok": false, "error": self.code.as_str(), "message": self.message, "details": self.details})
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.code == ErrorCode::Internal {
            tracing::error!(message = %self.message, "internal error");
            let public = Error::new(ErrorCode::Internal, "internal error; the server log has the cause");
            return (public.code.status(), axum::Json(public.body())).into_response();
        }
        let mut response = (self.code.status(), axum::Json(self.body())).into_response();
        if self.denied {
            response.extensions_mut().insert(Refusal(self.message.clone()));
        }
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<FieldErrors> for Error {
    fn from(errors: FieldErrors) -> Self {
        Self::invalid(errors)
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(msg) => {
                tracing::warn!(%msg, "database unavailable");
                Error::new(ErrorCode::Unavailable, "the database is unavailable; retry shortly")
            }
            StoreError::WritesRefused(why) => {
                tracing::warn!(why, "the database refuses writes");
                Error::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the database refuses writes: {why}; reads still work, and writes will again once that is mended"
                    ),
                )
            }
            StoreError::Conflict(msg) => {
                // The database's own words stay in the log: they name tables and constraints.
                tracing::info!(%msg, "write conflict");
                Error::new(ErrorCode::Conflict, "a concurrent write got there first; retry")
            }
            StoreError::Corrupt(msg) | StoreError::Other(msg) => Error::new(ErrorCode::Internal, msg),
        }
    }
}

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
        while let Some(error) = cause {
            if error.is::<tower_http::timeout::TimeoutError>() {
                return Error::new(ErrorCode::RequestTimeout, "the request body stopped arriving; send it whole");
            }
            cause = error.source();
        }
        let code = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            _ => ErrorCode::MalformedJson,
        };
        Error::new(code, rejection.body_text())
    }
}

impl From<PathRejection> for Error {
    fn from(rejection: PathRejection) -> Self {
        Error::new(ErrorCode::InvalidQuery, rejection.body_text())
    }
}

impl From<QueryRejection> for Error {
    fn from(rejection: QueryRejection) -> Self {
        Error::new(ErrorCode::InvalidQuery, rejection.body_text())
    }
}
