//! The portal as OAuth 2.1 authorization server for its own users, so that AI assistants that
//! only speak OAuth can connect to the MCP server (the protocol's authorization flow). Nothing is
//! stored for a client or a code: a client id and a code are documents sealed with the server's
//! key, so registration (open to anyone, as RFC 7591 has it) costs no storage, and only the
//! tokens issued are kept, as the user's API tokens good for `/mcp` alone.

use std::sync::Arc;

use portolan_model::oauth::{
    self, Authorization, AuthorizationRequest, Client, Code, OAuthError, OAuthErrorCode, Refusal, TokenRequest,
};
use serde_json::{Value, json};

use super::actor::Actor;
use super::core::Core;
use super::identity::Identity;
use crate::error::{ErrorCode, Result};
use crate::keys::Keys;

const CLIENT_PREFIX: &str = "plc_";
const CLIENT_PURPOSE: &str = "oauth/client";
const CODE_PURPOSE: &str = "oauth/code";

#[derive(Clone)]
pub struct OAuth {
    core: Core,
    identity: Identity,
    keys: Arc<Keys>,
    public_url: Arc<str>,
}

impl OAuth {
    pub fn new(core: Core, identity: Identity, keys: Arc<Keys>, public_url: Arc<str>) -> Self {
        Self { core, identity, keys, public_url }
    }

    /// The resource tokens are issued for: the MCP server's URL.
    pub fn resource(&self) -> String {
        format!("{}/mcp", self.public_url)
    }

    /// Where the MCP server's protected-resource metadata is (named in its 401s).
    pub fn resource_metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.public_url)
    }

    /// RFC 9728: the MCP server, and this portal as its authorization server.
    pub fn protected_resource_metadata(&self) -> Value {
        json!({
            "resource": self.resource(),
            "authorization_servers": [self.public_url.as_ref()],
            "scopes_supported": [oauth::SCOPE],
            "bearer_methods_supported": ["header"],
            "resource_name": "Portolan",
        })
    }

    /// RFC 8414: the endpoints and what they take.
    pub fn authorization_server_metadata(&self) -> Value {
        let url = &self.public_url;
        json!({
            "issuer": url.as_ref(),
            "authorization_endpoint": format!("{url}/oauth/authorize"),
            "token_endpoint": format!("{url}/oauth/token"),
            "registration_endpoint": format!("{url}/oauth/register"),
            "scopes_supported": [oauth::SCOPE],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_methods_supported": ["none"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
        })
    }

    /// Registers a public client (RFC 7591): its id is its sealed registration.
    pub fn register(&self, request: &Value) -> Result<std::result::Result<Value, OAuthError>> {
        let client = match oauth::register(request, self.core.now()) {
            Ok(client) => client,
            Err(refused) => return Ok(Err(refused)),
        };
        let client_id = format!("{CLIENT_PREFIX}{}", self.keys.seal_document(CLIENT_PURPOSE, &client)?);
        Ok(Ok(json!({
            "client_id": client_id,
            "client_id_issued_at": client.issued_at / 1000,
            "client_name": client.name,
            "redirect_uris": client.redirect_uris,
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": oauth::SCOPE,
        })))
    }

    fn client(&self, client_id: &str) -> Option<Client> {
        self.keys.open_document(CLIENT_PURPOSE, client_id.strip_prefix(CLIENT_PREFIX)?)
    }

    /// Checks an authorization request: what the consent page asks about, or who to tell why not.
    pub fn check(&self, request: &AuthorizationRequest) -> std::result::Result<Authorization, Refusal> {
        let client = request.client_id.as_deref().and_then(|id| self.client(id));
        oauth::authorize(request, client, &self.resource())
    }

    /// The user's answer on the consent page: where to send their browser, with a code (recorded
    /// in the audit log) or with `access_denied`.
    pub async fn decide(&self, actor: &Actor, authorization: &Authorization, allow: bool) -> Result<String> {
        if !allow {
            let refused = OAuthError { code: OAuthErrorCode::AccessDenied, description: "the user declined".into() };
            return Ok(self.redirect_error(&authorization.redirect_uri, authorization.state.as_deref(), &refused));
        }
        let now = self.core.now();
        let code = Code {
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            user: actor.id.clone(),
            client_id: authorization.client_id.clone(),
            client_name: authorization.client.name.clone(),
            redirect_uri: authorization.redirect_uri.clone(),
            code_challenge: authorization.code_challenge.clone(),
            resource: authorization.resource.clone(),
            expires_at: now + oauth::CODE_SECONDS * 1000,
        };
        let sealed = self.keys.seal_document(CODE_PURPOSE, &code)?;
        let entry = actor.entry(now, "oauth.consent", "token", &format!("tok_oauth_{}", code.nonce)).changed(
            None,
            Some(json!({"client": code.client_name, "redirectUri": code.redirect_uri, "resource": code.resource})),
        );
        let mut tx = self.core.store().write().await?;
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        let mut pairs = vec![("code", sealed.as_str()), ("iss", self.public_url.as_ref())];
        pairs.extend(authorization.state.as_deref().map(|state| ("state", state)));
        Ok(with_query(&authorization.redirect_uri, &pairs))
    }

    /// A refusal sent back to the client by redirect (RFC 6749 §4.1.2.1).
    pub fn redirect_error(&self, redirect_uri: &str, state: Option<&str>, error: &OAuthError) -> String {
        let mut pairs = vec![
            ("error", error.code.as_str()),
            ("error_description", error.description.as_str()),
            ("iss", self.public_url.as_ref()),
        ];
        pairs.extend(state.map(|state| ("state", state)));
        with_query(redirect_uri, &pairs)
    }

    /// Trades a code for a token (RFC 6749 §4.1.3, PKCE).
    pub async fn token(&self, request: &TokenRequest) -> Result<std::result::Result<Value, OAuthError>> {
        let code = request.code.as_deref().and_then(|sealed| self.keys.open_document(CODE_PURPOSE, sealed));
        let code = match oauth::exchange(request, code, self.core.now()) {
            Ok(code) => code,
            Err(refused) => return Ok(Err(refused)),
        };
        let grant = |description: String| OAuthError { code: OAuthErrorCode::InvalidGrant, description };
        match self.identity.assistant_token(&code).await {
            Ok(Some((token, seconds))) => Ok(Ok(json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": seconds,
                "scope": oauth::SCOPE,
            }))),
            Ok(None) => Ok(Err(grant("the code was already used; its token is revoked".into()))),
            Err(gone) if gone.code == ErrorCode::Unauthorized => Ok(Err(grant(gone.message))),
            Err(other) => Err(other),
        }
    }
}

/// `uri` with `pairs` added to its query (a redirect URI may carry a query of its own).
fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(pairs);
            url.to_string()
        }
        Err(_) => uri.to_string(),
    }
}
