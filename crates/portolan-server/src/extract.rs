//! Request extractors whose rejections are [`Error`]s, so bad input gets the standard JSON error.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::error::{Error, ErrorCode};

/// A JSON request body.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub struct JsonBody<T>(pub T);

/// Query-string parameters.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub struct QueryParams<T>(pub T);

/// Path segments (a segment that does not decode gets the standard JSON error).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Error))]
pub struct PathParams<T>(pub T);

/// The version an `If-Match` header demands, if any. `*` matches any existing version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Version(i64),
}

pub struct OptionalIfMatch(pub Option<IfMatch>);

impl<S: Send + Sync> FromRequestParts<S> for OptionalIfMatch {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        parse_if_match(&parts.headers).map(OptionalIfMatch)
    }
}

fn parse_if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, Error> {
    let Some(raw) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || Error::new(ErrorCode::InvalidQuery, "If-Match must be \"*\" or an entity version such as \"3\"");
    let text = raw.to_str().map_err(|_| bad())?.trim();
    if text == "*" {
        return Ok(Some(IfMatch::Any));
    }
    let unquoted = text.trim_start_matches("W/").trim_matches('"');
    unquoted.parse::<i64>().map(|v| Some(IfMatch::Version(v))).map_err(|_| bad())
}

/// The `ETag` value for an entity version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// The token of an `Authorization: Bearer` header, if one was sent.
pub struct BearerToken(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let Some(raw) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(BearerToken(None));
        };
        let bad = || Error::new(ErrorCode::Unauthorized, "the Authorization header must be 'Bearer <token>'");
        let text = raw.to_str().map_err(|_| bad())?;
        let token = text.strip_prefix("Bearer ").ok_or_else(bad)?.trim();
        if token.is_empty() {
            return Err(bad());
        }
        Ok(BearerToken(Some(token.to_string())))
    }
}
