//! Request extractors whose rejections are [`Error`]s, so bad input gets the standard JSON error.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use portolan_store::Session;

use crate::error::{Error, ErrorCode};
use crate::keys;
use crate::services::Actor;
use crate::state::AppState;

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
/// A time a request gives as RFC 3339 text, or a 422 at `path` saying what was expected.
pub fn time_at(text: &str, path: &str) -> Result<portolan_model::Millis, Error> {
    portolan_model::parse_millis(text).ok_or_else(|| Error::invalid_at(path, "expected an RFC 3339 date-time"))
}

pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// The token of an `Authorization: Bearer` header, if one was sent.
pub struct BearerToken(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Self::from_headers(&parts.headers)
    }
}

impl BearerToken {
    fn from_headers(headers: &HeaderMap) -> Result<Self, Error> {
        let Some(raw) = headers.get(axum::http::header::AUTHORIZATION) else {
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

/// The cookie that carries a browser's session.
pub const SESSION_COOKIE: &str = "__Host-portolan_session";
/// The header that requests made with the session cookie echo the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The signed-in caller of a request, by API token or session cookie; 401 for everyone else.
/// Requests with the cookie that change something must echo the session's CSRF token and must not
/// come from another site.
pub struct Caller {
    pub actor: Actor,
    /// Set when the caller came with the session cookie.
    pub session: Option<Session>,
    /// What they signed in with, to check again during a long response (an event stream).
    pub proof: Proof,
}

/// The credential a request came with.
#[derive(Clone)]
pub enum Proof {
    /// An API token, and the resource it was shown at (see [`audience`]).
    Token(String, Option<&'static str>),
    Session(String),
}

/// The resource a request is for, as tokens made for one resource name it: the MCP server, or
/// (`None`) the rest of the API.
fn audience(parts: &Parts) -> Option<&'static str> {
    (parts.uri.path() == "/mcp").then_some(portolan_model::oauth::SCOPE)
}

impl Caller {
    /// The caller as they are now: their token or session still valid, with their current role
    /// and teams. Long-lived responses call this now and then and stop when it fails.
    pub async fn recheck(&self, app: &AppState) -> Result<Actor, Error> {
        match &self.proof {
            Proof::Token(token, audience) => app.identity.authenticate_token(token, *audience).await,
            Proof::Session(cookie) => app.identity.authenticate_session(cookie).await.map(|s| s.actor),
        }
    }
}

/// The caller of a catalog read: a signed-in user, or a backend holding a run token that names its
/// run (`?run_id=`), which reads what the run's requester may read while the run is open.
pub struct Reader(pub Actor);

impl FromRequestParts<AppState> for Reader {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Error> {
        let mut actor = match authenticate(parts, app).await? {
            Credential::Caller(caller) => caller.actor,
            Credential::RunToken(token) => match query_value(parts, "run_id") {
                Some(run) => app.runs.run_reader(&token, &run).await?,
                None => {
                    return Err(Error::forbidden(
                        "a run token reads the catalog only for its run: name it with run_id",
                    ));
                }
            },
        };
        actor.request_id = request_id(&parts.headers);
        Ok(Reader(actor))
    }
}

/// The caller of an entity write: a signed-in user, or a backend holding a run token (checked
/// against the run the request names).
pub enum Writer {
    Caller(Actor),
    RunToken(String),
}

enum Credential {
    Caller(Box<Caller>),
    RunToken(String),
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Error> {
        match authenticate(parts, app).await? {
            Credential::Caller(mut caller) => {
                caller.actor.request_id = request_id(&parts.headers);
                Ok(*caller)
            }
            Credential::RunToken(_) => Err(Error::forbidden(
                "a run token reads the catalog and changes it only for its run: name it with run_id",
            )),
        }
    }
}

impl FromRequestParts<AppState> for Writer {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Error> {
        Ok(match authenticate(parts, app).await? {
            Credential::Caller(caller) => {
                Writer::Caller(Actor { request_id: request_id(&parts.headers), ..caller.actor })
            }
            Credential::RunToken(token) => Writer::RunToken(token),
        })
    }
}

/// A parameter of the request's query string, decoded.
fn query_value(parts: &Parts, name: &str) -> Option<String> {
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// The id the request-id layer gave this request.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn authenticate(parts: &Parts, app: &AppState) -> Result<Credential, Error> {
    let credential = credential(parts, app).await?;
    if let (Some(slot), Credential::Caller(caller)) = (parts.extensions.get::<CallerSlot>(), &credential) {
        slot.fill(&caller.actor.id);
    }
    Ok(credential)
}

async fn credential(parts: &Parts, app: &AppState) -> Result<Credential, Error> {
    if let BearerToken(Some(token)) = BearerToken::from_headers(&parts.headers)? {
        if token.starts_with(keys::RUN_TOKEN_PREFIX) {
            return Ok(Credential::RunToken(token));
        }
        if !token.starts_with(keys::TOKEN_PREFIX) {
            return Err(Error::unauthorized("unknown token: API tokens start with 'plt_'"));
        }
        let audience = audience(parts);
        let actor = app.identity.authenticate_token(&token, audience).await?;
        return Ok(Credential::Caller(Box::new(Caller { actor, session: None, proof: Proof::Token(token, audience) })));
    }
    let Some(cookie) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Err(Error::unauthorized("sign in, or send an API token as 'Authorization: Bearer plt_...'"));
    };
    let signed_in = app.identity.authenticate_session(&cookie).await?;
    if !parts.method.is_safe() {
        check_same_site(&parts.headers)?;
        let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !keys::same(sent, &signed_in.session.csrf) {
            return Err(Error::new(ErrorCode::CsrfFailed, format!("send the session's CSRF token in '{CSRF_HEADER}'")));
        }
    }
    Ok(Credential::Caller(Box::new(Caller {
        actor: signed_in.actor,
        session: Some(signed_in.session),
        proof: Proof::Session(cookie),
    })))
}

/// Refuses a state-changing request a browser says another site made.
pub fn check_same_site(headers: &HeaderMap) -> Result<(), Error> {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("cross-site") => Err(Error::new(ErrorCode::CsrfFailed, "cross-site requests may not change anything")),
        _ => Ok(()),
    }
}

/// A cookie's value from the `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// The address a request came from (for throttling sign-ins).
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        Ok(ClientAddress(address.unwrap_or_else(|| "unknown".into())))
    }
}

/// Whether a request came in on Port's paths (`/v1/...`, rewritten to `/api/v1/...` before
/// routing): where Port's answer differs in shape from Portolan's, it gets Port's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMount(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for PortMount {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Ok(PortMount(parts.extensions.get::<PortMount>().is_some_and(|m| m.0)))
    }
}

/// The datasource a write comes from: Ocean's `User-Agent`
/// (`port-ocean/{type}/{version}/{installation}/{feature}`), none for other clients.
pub struct Datasource(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Datasource {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let agent = parts.headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok());
        Ok(Datasource(agent.and_then(portolan_model::integration::installation::datasource).map(str::to_string)))
    }
}

/// Who made a request: the authenticating extractor fills it in, for the audit of refusals.
#[derive(Clone, Default)]
pub struct CallerSlot(std::sync::Arc<std::sync::OnceLock<String>>);

impl CallerSlot {
    pub fn fill(&self, actor: &str) {
        let _ = self.0.set(actor.to_string());
    }

    /// Who was filled in, if anyone.
    pub fn caller(&self) -> Option<String> {
        self.0.get().cloned()
    }
}
