//! Single sign-on with OpenID Connect: the authorization code flow with PKCE (S256). The state,
//! nonce and code verifier travel in a sealed, short-lived cookie, so any replica can finish a
//! sign-in another one started. The ID token is checked against the provider's published keys;
//! the user is created on first sign-in and their teams follow the provider's groups claim.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portolan_model::permission::Role;
use portolan_model::{Millis, system};
use portolan_store::{Account, AccountKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use std::sync::Arc;

use super::actor::{Actor, Origin};
use super::catalog::{Catalog, WriteMode};
use super::core::Core;
use super::identity::{Identity, NewSession};
use crate::error::{Error, ErrorCode, Result};
use crate::keys;
use crate::keys::Keys;
use crate::outbound::Outbound;
use crate::outbound::{OutboundError, Purpose};

/// How long a sign-in may take at the provider.
const FLOW_LIFETIME_MS: Millis = 10 * 60_000;
/// What the sealed flow cookie is bound to.
const SEAL_CONTEXT: &str = "oidc-flow";

/// A configured OpenID Connect provider.
#[derive(Clone)]
pub struct OidcSettings {
    /// The issuer URL; its `/.well-known/openid-configuration` is read on first use.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// The claim listing the user's groups; groups that name a `_team` become their teams.
    pub groups_claim: String,
    /// Members of this group are admins; without it, SSO users are members.
    pub admin_group: Option<String>,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings").field("issuer", &self.issuer).field("client_id", &self.client_id).finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// What the flow cookie carries between the redirect to the provider and the callback.
#[derive(Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    return_to: String,
    started: Millis,
}

/// Where to send the browser, and the sealed cookie to set.
pub struct Redirect {
    pub location: String,
    pub flow_cookie: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: String,
}

#[derive(Deserialize)]
struct IdClaims {
    nonce: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    name: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

fn unauthorized(message: impl Into<String>) -> Error {
    Error::unauthorized(message)
}

/// A provider that does not answer as OpenID Connect says: the operator's problem, not the user's.
fn provider_failed(what: &str, cause: impl std::fmt::Display) -> Error {
    tracing::warn!(%cause, "single sign-on: {what}");
    Error::new(ErrorCode::Unavailable, format!("the sign-in provider failed ({what}); try again or ask an admin"))
}

/// Keeps `return_to` to a path on this server, so a sign-in cannot be turned into an open redirect.
pub(crate) fn local_path(return_to: Option<&str>) -> String {
    match return_to {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.chars().any(|c| c == '\\' || c.is_control() || c.is_whitespace()) =>
        {
            path.to_string()
        }
        _ => "/".to_string(),
    }
}

/// Single sign-on with an OpenID Connect provider.
#[derive(Clone)]
pub struct Oidc {
    core: Core,
    identity: Identity,
    catalog: Catalog,
    outbound: Arc<Outbound>,
    keys: Arc<Keys>,
    settings: Option<OidcSettings>,
    public_url: Arc<str>,
}

impl Oidc {
    pub fn new(
        core: Core,
        identity: Identity,
        catalog: Catalog,
        outbound: Arc<Outbound>,
        keys: Arc<Keys>,
        settings: Option<OidcSettings>,
        public_url: Arc<str>,
    ) -> Self {
        Self { core, identity, catalog, outbound, keys, settings, public_url }
    }
}

impl Oidc {
    /// Whether single sign-on is configured.
    pub fn enabled(&self) -> bool {
        self.settings.is_some()
    }

    fn oidc_settings(&self) -> Result<&OidcSettings> {
        self.settings
            .as_ref()
            .ok_or_else(|| Error::new(ErrorCode::NotFound, "single sign-on is not configured on this server"))
    }

    /// A GET for the provider: its issuer's origin is trusted, other origins it names are not.
    async fn provider_get(&self, url: &str) -> std::result::Result<reqwest::Response, OutboundError> {
        let request = self.outbound.request(Purpose::SignOn, reqwest::Method::GET, url)?;
        request.timeout(PROVIDER_TIMEOUT).send().await
    }

    async fn discovery(&self, settings: &OidcSettings) -> Result<Discovery> {
        let url = format!("{}/.well-known/openid-configuration", settings.issuer.trim_end_matches('/'));
        let response = self.provider_get(&url).await.map_err(|e| provider_failed("discovery", e))?;
        let discovery: Discovery = response.json().await.map_err(|e| provider_failed("discovery document", e))?;
        if discovery.issuer.trim_end_matches('/') != settings.issuer.trim_end_matches('/') {
            return Err(provider_failed("discovery", format!("it names another issuer, {}", discovery.issuer)));
        }
        Ok(discovery)
    }

    /// Starts a sign-in: where to send the browser, with a fresh state, nonce and PKCE verifier.
    pub async fn oidc_start(&self, return_to: Option<&str>, login_hint: Option<&str>) -> Result<Redirect> {
        let settings = self.oidc_settings()?;
        let discovery = self.discovery(settings).await?;
        let flow = Flow {
            state: keys::random_token(),
            nonce: keys::random_token(),
            verifier: keys::random_token(),
            return_to: local_path(return_to),
            started: self.core.now(),
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(flow.verifier.as_bytes()));
        let mut location = url::Url::parse(&discovery.authorization_endpoint)
            .map_err(|e| provider_failed("authorization endpoint", e))?;
        location
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &settings.client_id)
            .append_pair("redirect_uri", &self.oidc_redirect_uri())
            .append_pair("scope", &format!("openid email profile {}", settings.groups_claim))
            .append_pair("state", &flow.state)
            .append_pair("nonce", &flow.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(hint) = login_hint {
            location.query_pairs_mut().append_pair("login_hint", hint);
        }
        let plain = serde_json::to_string(&flow).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        let sealed = self.keys.seal(SEAL_CONTEXT, &plain)?;
        Ok(Redirect { location: location.to_string(), flow_cookie: URL_SAFE_NO_PAD.encode(sealed) })
    }

    pub fn oidc_redirect_uri(&self) -> String {
        format!("{}/api/v1/auth/oidc/callback", self.public_url)
    }

    /// Finishes a sign-in: checks the state against the flow cookie, redeems the code with the
    /// verifier, checks the ID token, and opens a session for the (perhaps new) user.
    pub async fn oidc_finish(
        &self,
        flow_cookie: Option<&str>,
        state: &str,
        code: &str,
    ) -> Result<(NewSession, String)> {
        let settings = self.oidc_settings()?;
        let flow: Flow = flow_cookie
            .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
            .and_then(|sealed| self.keys.open(SEAL_CONTEXT, &sealed).ok())
            .and_then(|plain| serde_json::from_str(&plain).ok())
            .ok_or_else(|| unauthorized("this sign-in was not started here (no valid sign-in cookie); start again"))?;
        if !keys::same(state, &flow.state) {
            return Err(unauthorized("the sign-in state does not match; start again"));
        }
        if self.core.now() - flow.started > FLOW_LIFETIME_MS {
            return Err(Error::new(ErrorCode::TokenExpired, "the sign-in took too long; start again"));
        }
        let discovery = self.discovery(settings).await?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.oidc_redirect_uri())
            .append_pair("code_verifier", &flow.verifier)
            .finish();
        let response = self
            .outbound
            .request(Purpose::SignOn, reqwest::Method::POST, &discovery.token_endpoint)
            .map_err(|e| provider_failed("token endpoint", e))?
            .timeout(PROVIDER_TIMEOUT)
            .basic_auth(&settings.client_id, &settings.client_secret)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.into_bytes())
            .send()
            .await
            .map_err(|e| provider_failed("token endpoint", e))?;
        if !response.status().is_success() {
            let status = response.status();
            let body: Value = response.json().await.unwrap_or_default();
            tracing::info!(%status, error = %body["error"], "single sign-on: the provider refused the code");
            return Err(unauthorized("the sign-in provider refused the code; start again"));
        }
        let tokens: TokenResponse = response.json().await.map_err(|e| provider_failed("token response", e))?;
        let claims = self.verify_id_token(settings, &discovery, &tokens.id_token).await?;
        if claims.nonce.as_deref().is_none_or(|n| !keys::same(n, &flow.nonce)) {
            return Err(unauthorized("the ID token was not issued for this sign-in (nonce)"));
        }
        let user = self.sso_user(settings, claims).await?;
        Ok((self.identity.open_session(&user, "sso").await?, flow.return_to))
    }

    async fn verify_id_token(&self, settings: &OidcSettings, discovery: &Discovery, token: &str) -> Result<IdClaims> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthorized("the ID token is malformed"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256 | Algorithm::PS256 | Algorithm::EdDSA) {
            return Err(unauthorized("the ID token is signed with an algorithm Portolan does not accept"));
        }
        let response = self.provider_get(&discovery.jwks_uri).await.map_err(|e| provider_failed("JWKS", e))?;
        let keys: JwkSet = response.json().await.map_err(|e| provider_failed("JWKS document", e))?;
        let jwk = match &header.kid {
            Some(kid) => keys.find(kid),
            None => keys.keys.first(),
        }
        .ok_or_else(|| unauthorized("the ID token is signed with a key the provider does not publish"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| provider_failed("JWKS key", e))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[discovery.issuer.as_str()]);
        validation.set_audience(&[settings.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
            .map_err(|e| unauthorized(format!("the ID token is not valid: {e}")))?;
        Ok(data.claims)
    }

    /// The user an ID token names: created on first sign-in; teams (and, with an admin group,
    /// the role) follow the groups claim on every sign-in.
    async fn sso_user(&self, settings: &OidcSettings, claims: IdClaims) -> Result<portolan_model::permission::User> {
        // Only an address the provider vouches for names a user: anything else could claim
        // someone else's account.
        let identifier = match (&claims.email, claims.email_verified) {
            (Some(email), Some(true)) => email.clone(),
            _ => return Err(Error::forbidden("the sign-in provider did not verify this user's email address")),
        };
        let groups: Vec<String> = claims
            .rest
            .get(&settings.groups_claim)
            .and_then(Value::as_array)
            .map(|g| g.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let now = self.core.now();
        let mut tx = self.core.store().write().await?;
        let teams: Vec<String> = tx.existing(system::TEAM, &groups).await?.into_iter().collect();
        let mut teams: Vec<String> = groups.iter().filter(|g| teams.contains(g)).cloned().collect();
        teams.dedup();
        let existing = tx.account(&identifier).await?;
        if existing.as_ref().is_some_and(|a| a.password_hash.is_some() || a.kind == AccountKind::Service) {
            return Err(Error::forbidden(
                "a local account already uses this address; an admin must remove its password before it can sign in by SSO",
            ));
        }
        let role = match (&settings.admin_group, &existing) {
            (Some(group), _) if groups.contains(group) => Role::Admin,
            (Some(_), _) => Role::Member,
            (None, Some(account)) => account.role,
            (None, None) => Role::Member,
        };
        let account = Account {
            user: identifier.clone(),
            password_hash: existing.as_ref().and_then(|a| a.password_hash.clone()),
            role,
            kind: AccountKind::Person,
            created_at: existing.as_ref().map_or(now, |a| a.created_at),
            updated_at: now,
        };
        tx.put_account(&account).await?;
        tx.commit().await?;
        let mut properties = serde_json::Map::new();
        if let Some(email) = &claims.email {
            properties.insert("email".into(), json!(email));
        }
        if existing.is_none() {
            properties.insert("status".into(), json!("active"));
        }
        let mut document = json!({"identifier": identifier, "team": teams, "properties": properties});
        if let Some(name) = &claims.name {
            document["title"] = json!(name);
        }
        let sso = Actor::system("sso", Origin::Api);
        self.catalog
            .write_entity(&sso, system::USER, None, document, WriteMode::Create { upsert: true, merge: true }, None)
            .await?;
        let mut tx = self.core.store().read().await?;
        self.identity.signed_in_user(tx.as_mut(), &identifier).await
    }
}

/// How long a request to the provider waits.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
