//! GitHub's REST API as the integrations and the `GITHUB` action backend call it: with a token, or
//! as a GitHub App installation (a JWT signed with the app's private key, traded for an
//! installation token that is kept until shortly before it expires).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portolan_model::Millis;
use portolan_model::integration::Vendor;
use serde_json::Value;

use crate::outbound::{Outbound, Purpose};

/// An installation token is used until this long before it expires.
const TOKEN_MARGIN_MS: Millis = 5 * 60_000;

/// Where and as whom GitHub is called.
pub struct GithubAccount {
    /// The API's root: `https://api.github.com`, or a GitHub Enterprise Server's `/api/v3`.
    pub base_url: String,
    pub credential: Credential,
}

pub enum Credential {
    Token(String),
    App { app_id: String, installation_id: u64, private_key: String },
}

/// An answer: its status and JSON body (null when empty), and how long GitHub asks to wait when
/// it limited the request (`Retry-After`, or a spent rate limit until its reset).
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub wait: Option<Duration>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// GitHub's `message`, or the status.
    pub fn message(&self) -> String {
        match self.body["message"].as_str() {
            Some(message) => format!("GitHub answered {}: {message}", self.status),
            None => format!("GitHub answered {}", self.status),
        }
    }
}

/// Calls GitHub, keeping installation tokens between calls.
pub struct Github {
    outbound: Arc<Outbound>,
    installation_tokens: Mutex<HashMap<(String, u64), (String, Millis)>>,
}

impl Github {
    pub fn new(outbound: Arc<Outbound>) -> Self {
        Self { outbound, installation_tokens: Mutex::default() }
    }

    /// The bearer token for `account`: its token, or its app's installation token (fetched when
    /// none is kept or the kept one is about to expire).
    pub async fn token(&self, account: &GithubAccount, now: Millis) -> Result<String, String> {
        let (app_id, installation_id, private_key) = match &account.credential {
            Credential::Token(token) => return Ok(token.clone()),
            Credential::App { app_id, installation_id, private_key } => (app_id, *installation_id, private_key),
        };
        let key = (account.base_url.clone(), installation_id);
        if let Some((token, expires)) = self.installation_tokens.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && *expires - TOKEN_MARGIN_MS > now
        {
            return Ok(token.clone());
        }
        let jwt = app_jwt(app_id, private_key, now / 1000)?;
        let path = format!("/app/installations/{installation_id}/access_tokens");
        let answer = self.call(&account.base_url, &jwt, reqwest::Method::POST, &path, None).await?;
        if !answer.is_success() {
            return Err(format!("the app's installation token was refused: {}", answer.message()));
        }
        let token = answer.body["token"].as_str().ok_or("GitHub answered no installation token")?.to_string();
        let expires =
            answer.body["expires_at"].as_str().and_then(portolan_model::parse_millis).unwrap_or(now + 3_600_000);
        self.installation_tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (token.clone(), expires));
        Ok(token)
    }

    /// One request to `path` (under `base_url`, or a whole URL GitHub gave). Fails only when
    /// GitHub cannot be reached or does not answer JSON.
    pub async fn call(
        &self,
        base_url: &str,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{base_url}{path}") };
        let mut request = self
            .outbound
            .request(Purpose::IntegrationSource, method, &url)
            .map_err(|e| e.to_string())?
            .timeout(Duration::from_secs(30));
        for (name, value) in Vendor::Github.headers(token) {
            request = request.header(name, &value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| format!("cannot reach GitHub: {e}"))?;
        let status = response.status().as_u16();
        let wait = rate_limit_wait(response.headers(), status);
        let bytes = response.bytes().await.map_err(|e| format!("cannot read GitHub's answer: {e}"))?;
        let body = match bytes.is_empty() {
            true => Value::Null,
            false => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        Ok(Answer { status, body, wait })
    }
}

/// A GitHub App's JWT: issued a minute back (for clock drift), valid nine minutes (GitHub allows ten).
pub fn app_jwt(app_id: &str, private_key: &str, now_seconds: i64) -> Result<String, String> {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        iat: i64,
        exp: i64,
        iss: &'a str,
    }
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes())
        .map_err(|e| format!("the GitHub App's private key is not an RSA key in PEM: {e}"))?;
    let claims = Claims { iat: now_seconds - 60, exp: now_seconds + 540, iss: app_id };
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key)
        .map_err(|e| format!("cannot sign the GitHub App's token request: {e}"))
}

/// How long a limited answer asks to wait: 429, or 403 with a spent rate limit (GitHub's primary
/// limit) or a `Retry-After` (its secondary limits).
pub fn rate_limit_wait(headers: &reqwest::header::HeaderMap, status: u16) -> Option<Duration> {
    if !matches!(status, 403 | 429) {
        return None;
    }
    asked_wait(headers).or((status == 429).then_some(Duration::from_secs(60)))
}

/// How long a response asks to wait: `Retry-After` in seconds, or a spent rate limit
/// (`x-ratelimit-remaining: 0`) until its reset time.
pub fn asked_wait(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if let Some(seconds) = number("retry-after") {
        return Some(Duration::from_secs(seconds));
    }
    if number("x-ratelimit-remaining") == Some(0) {
        let reset = number("x-ratelimit-reset")?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        return Some(Duration::from_secs(reset.saturating_sub(now)));
    }
    None
}
