//! OAuth 2.1 for AI assistants (the Model Context Protocol's authorization flow), with the portal
//! as authorization server for its own users: what a client may register (RFC 7591), what an
//! authorization request must carry (PKCE with S256, an exact redirect URI, the resource of
//! RFC 8707), and what a code exchange must prove. No IO: the server seals clients and codes with
//! its key and stores only the tokens it issues.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The one scope: act as the signed-in user through the MCP server.
pub const SCOPE: &str = "mcp";
/// How long an authorization code may wait for its exchange.
pub const CODE_SECONDS: i64 = 120;
const MAX_REDIRECT_URIS: usize = 10;
const MAX_URI: usize = 2_000;
const MAX_NAME: usize = 100;

/// An error in OAuth's own words (RFC 6749 §4.1.2.1 and §5.2, RFC 7591 §3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    InvalidRedirectUri,
    InvalidClientMetadata,
}

impl OAuthErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::UnsupportedResponseType => "unsupported_response_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::InvalidTarget => "invalid_target",
            OAuthErrorCode::AccessDenied => "access_denied",
            OAuthErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            OAuthErrorCode::InvalidClientMetadata => "invalid_client_metadata",
        }
    }
}

fn error(code: OAuthErrorCode, description: impl Into<String>) -> OAuthError {
    OAuthError { code, description: description.into() }
}

/// A registered client, as its sealed `client_id` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    /// The name the client gave itself: shown on the consent page as its claim, not a fact.
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub issued_at: i64,
}

/// Checks a registration request (RFC 7591) from a public client. Grant types beyond
/// `authorization_code` (such as `refresh_token`) are tolerated and not granted, and every client
/// is registered as public (`token_endpoint_auth_method: none`), as the response says.
pub fn register(request: &Value, now: i64) -> Result<Client, OAuthError> {
    let metadata = |d: String| error(OAuthErrorCode::InvalidClientMetadata, d);
    let Some(fields) = request.as_object() else { return Err(metadata("the registration is a JSON object".into())) };
    let uris = fields.get("redirect_uris").and_then(Value::as_array).filter(|u| !u.is_empty()).ok_or_else(|| {
        error(OAuthErrorCode::InvalidRedirectUri, "redirect_uris: a list of one or more URIs is required")
    })?;
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(error(OAuthErrorCode::InvalidRedirectUri, format!("at most {MAX_REDIRECT_URIS} redirect_uris")));
    }
    let redirect_uris = uris
        .iter()
        .map(|uri| uri.as_str().ok_or_else(|| error(OAuthErrorCode::InvalidRedirectUri, "a redirect URI is a string")))
        .map(|uri| uri.and_then(|uri| check_redirect_uri(uri).map(|()| uri.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(types) = fields.get("response_types")
        && !types.as_array().is_some_and(|t| t.iter().any(|t| t == "code"))
    {
        return Err(metadata("response_types: only 'code' is offered".into()));
    }
    if let Some(grants) = fields.get("grant_types")
        && !grants.as_array().is_some_and(|g| g.iter().any(|g| g == "authorization_code"))
    {
        return Err(metadata("grant_types: only 'authorization_code' is offered".into()));
    }
    let name = match fields.get("client_name") {
        None | Some(Value::Null) => "an unnamed assistant".to_string(),
        Some(Value::String(name)) if !name.trim().is_empty() && name.chars().count() <= MAX_NAME => {
            name.trim().to_string()
        }
        Some(_) => return Err(metadata(format!("client_name: a name of 1 to {MAX_NAME} characters"))),
    };
    Ok(Client { name, redirect_uris, issued_at: now })
}

/// A redirect URI a client may register (RFC 8252, OAuth 2.1 §2.3.1): HTTPS, HTTP only to the
/// loopback interface, or a native app's private-use scheme; never with a fragment.
pub fn check_redirect_uri(uri: &str) -> Result<(), OAuthError> {
    let refuse = |d: &str| error(OAuthErrorCode::InvalidRedirectUri, format!("redirect URI '{uri}': {d}"));
    if uri.len() > MAX_URI {
        return Err(refuse("too long"));
    }
    let parsed = url::Url::parse(uri).map_err(|_| refuse("not an absolute URI"))?;
    if parsed.fragment().is_some() {
        return Err(refuse("a redirect URI has no fragment"));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => match parsed.host() {
            Some(url::Host::Domain("localhost")) => Ok(()),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            _ => Err(refuse("plain http only to the loopback interface")),
        },
        "javascript" | "data" | "file" | "blob" | "about" | "vbscript" => Err(refuse("not a scheme to redirect to")),
        // A native app's private-use scheme names its owner by a dot (RFC 8252 §7.1), as
        // `com.example.app:/callback`; editors' own schemes (`vscode:`, `cursor:`) are taken too.
        _ => Ok(()),
    }
}

/// An authorization request (`GET /oauth/authorize`), as its query string gives it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuthorizationRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub state: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

/// A checked authorization request: what the consent page shows and the code will carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub client: Client,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub state: Option<String>,
    pub resource: String,
}

/// Where an authorization request goes wrong decides who is told: before the client and its
/// redirect URI are known good, the person at the browser (never an unchecked redirect);
/// after, the client, by redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    ToPerson(OAuthError),
    ToClient { redirect_uri: String, state: Option<String>, error: OAuthError },
}

/// Checks an authorization request against its client (opened from its sealed id by the caller)
/// and the resource this server protects.
pub fn authorize(
    request: &AuthorizationRequest,
    client: Option<Client>,
    resource: &str,
) -> Result<Authorization, Refusal> {
    let person = |code, d: &str| Refusal::ToPerson(error(code, d));
    let client_id =
        request.client_id.clone().ok_or_else(|| person(OAuthErrorCode::InvalidRequest, "client_id is missing"))?;
    let client = client.ok_or_else(|| {
        person(OAuthErrorCode::InvalidClient, "this client is not registered here (register it again)")
    })?;
    let redirect_uri = match (&request.redirect_uri, client.redirect_uris.as_slice()) {
        (Some(uri), registered) if registered.contains(uri) => uri.clone(),
        (None, [only]) => only.clone(),
        (Some(_), _) => {
            return Err(person(OAuthErrorCode::InvalidRequest, "redirect_uri is not one the client registered"));
        }
        (None, _) => return Err(person(OAuthErrorCode::InvalidRequest, "redirect_uri is missing")),
    };
    let client_error = |code, d: &str| Refusal::ToClient {
        redirect_uri: redirect_uri.clone(),
        state: request.state.clone(),
        error: error(code, d),
    };
    if request.response_type.as_deref() != Some("code") {
        return Err(client_error(OAuthErrorCode::UnsupportedResponseType, "response_type must be 'code'"));
    }
    let code_challenge = match (&request.code_challenge, request.code_challenge_method.as_deref()) {
        (Some(challenge), Some("S256")) if is_challenge(challenge) => challenge.clone(),
        (Some(_), Some("S256")) => {
            return Err(client_error(OAuthErrorCode::InvalidRequest, "code_challenge: 43 base64url characters"));
        }
        (None, _) => return Err(client_error(OAuthErrorCode::InvalidRequest, "PKCE is required: send code_challenge")),
        (Some(_), _) => return Err(client_error(OAuthErrorCode::InvalidRequest, "code_challenge_method must be S256")),
    };
    if let Some(scope) = &request.scope
        && !scope.split_whitespace().all(|s| s == SCOPE)
    {
        return Err(client_error(OAuthErrorCode::InvalidScope, "the only scope is 'mcp'"));
    }
    let resource = match &request.resource {
        Some(asked) if same_resource(asked, resource) => resource.to_string(),
        Some(_) => return Err(client_error(OAuthErrorCode::InvalidTarget, "resource is not this portal's MCP server")),
        None => resource.to_string(),
    };
    Ok(Authorization { client, client_id, redirect_uri, code_challenge, state: request.state.clone(), resource })
}

fn is_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Resource indicators compared without a trailing slash.
fn same_resource(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// What an authorization code carries (sealed by the server, so only it can read or make one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Code {
    /// Makes each code's token id its own, so a code exchanged twice is caught by the store.
    pub nonce: String,
    pub user: String,
    pub client_id: String,
    pub client_name: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub resource: String,
    pub expires_at: i64,
}

/// A token request (`POST /oauth/token`, form-encoded).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub code_verifier: Option<String>,
    pub redirect_uri: Option<String>,
    pub client_id: Option<String>,
    pub resource: Option<String>,
}

/// Checks a token request against the code it brings (opened by the caller; `None` when it does
/// not open). RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6).
pub fn exchange(request: &TokenRequest, code: Option<Code>, now: i64) -> Result<Code, OAuthError> {
    if request.grant_type.as_deref() != Some("authorization_code") {
        return Err(error(OAuthErrorCode::UnsupportedGrantType, "grant_type must be 'authorization_code'"));
    }
    let grant = |d: &str| error(OAuthErrorCode::InvalidGrant, d);
    if request.code.is_none() {
        return Err(error(OAuthErrorCode::InvalidRequest, "code is missing"));
    }
    let code = code.ok_or_else(|| grant("the code is not one this server gave"))?;
    if code.expires_at <= now {
        return Err(grant("the code has expired: authorize again"));
    }
    if request.client_id.as_deref() != Some(code.client_id.as_str()) {
        return Err(error(OAuthErrorCode::InvalidClient, "client_id is not the client the code was given to"));
    }
    if request.redirect_uri.as_deref().is_some_and(|uri| uri != code.redirect_uri) {
        return Err(grant("redirect_uri differs from the authorization request's"));
    }
    if let Some(resource) = &request.resource
        && !same_resource(resource, &code.resource)
    {
        return Err(error(OAuthErrorCode::InvalidTarget, "resource differs from the authorization request's"));
    }
    let verifier = request
        .code_verifier
        .as_deref()
        .ok_or_else(|| error(OAuthErrorCode::InvalidRequest, "code_verifier is missing"))?;
    if !pkce_matches(verifier, &code.code_challenge) {
        return Err(grant("code_verifier does not match the code_challenge"));
    }
    Ok(code)
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) equals the challenge, for a verifier of 43 to 128
/// unreserved characters.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(unreserved)
        && URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge
}

#[cfg(test)]
mod tests;
