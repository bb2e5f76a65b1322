//! Slack's Web API, as far as the app uses it: open a modal, post and update messages, read a
//! user's confirmed e-mail address. Every call goes through [`Outbound`] as [`Purpose::Slack`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::outbound::{Outbound, Purpose};

/// Slack's own address; a test or a proxy may stand in for it.
pub const SLACK_API: &str = "https://slack.com/api";
/// A modal must open within three seconds of Slack's request: the call gets less than that.
const OPEN_VIEW_TIMEOUT: Duration = Duration::from_millis(2_500);
const TIMEOUT: Duration = Duration::from_secs(10);

/// The Slack app's configuration.
#[derive(Clone)]
pub struct SlackSettings {
    /// Proves a request came from Slack (Basic Information → Signing Secret).
    pub signing_secret: String,
    /// The bot token (`xoxb-...`) the app calls Slack with; without one the app answers commands
    /// but sends nothing on its own (no modals, approvals or updates).
    pub bot_token: Option<String>,
    /// Slack's Web API ([`SLACK_API`] unless set).
    pub api_url: String,
}

impl std::fmt::Debug for SlackSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackSettings")
            .field("bot_token", &self.bot_token.as_ref().map(|_| "(set)"))
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

/// Why a call to Slack did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    #[error("the Slack app has no bot token: it cannot send messages or open forms")]
    NoBotToken,
    /// Slack's `error` (`invalid_auth`, `channel_not_found`, `expired_trigger_id`, ...).
    #[error("Slack refused the call: {0}")]
    Refused(String),
    #[error("Slack asks to wait {0} s (rate limited)")]
    RateLimited(u64),
    #[error("Slack was not reached: {0}")]
    Unreachable(String),
}

/// A message Slack keeps: where, and its timestamp (its identifier in the channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
}

enum Body<'a> {
    Json(&'a Value),
    Form(&'a [(&'a str, &'a str)]),
}

#[derive(Clone)]
pub struct SlackApi {
    outbound: Arc<Outbound>,
    settings: Option<Arc<SlackSettings>>,
}

impl SlackApi {
    pub fn new(outbound: Arc<Outbound>, settings: Option<SlackSettings>) -> Self {
        if let Some(settings) = &settings {
            outbound.trust(Purpose::Slack, &settings.api_url);
        }
        Self { outbound, settings: settings.map(Arc::new) }
    }

    pub fn settings(&self) -> Option<&SlackSettings> {
        self.settings.as_deref()
    }

    /// Whether the app can send (it has a bot token).
    pub fn sends(&self) -> bool {
        self.settings.as_ref().is_some_and(|s| s.bot_token.is_some())
    }

    /// Calls a Web API method with a JSON body, or a form for the methods that take no JSON
    /// (`users.info`); Slack's answer when it says `ok`.
    async fn call(&self, method: &str, body: Body<'_>, timeout: Duration) -> Result<Value, SlackError> {
        let settings = self.settings.as_deref().ok_or(SlackError::NoBotToken)?;
        let token = settings.bot_token.as_deref().ok_or(SlackError::NoBotToken)?;
        let url = format!("{}/{method}", settings.api_url.trim_end_matches('/'));
        let request = self
            .outbound
            .request(Purpose::Slack, reqwest::Method::POST, &url)
            .map_err(|e| SlackError::Unreachable(e.to_string()))?
            .header("authorization", &format!("Bearer {token}"))
            .timeout(timeout);
        let request = match body {
            Body::Json(body) => request.json(body),
            Body::Form(pairs) => {
                let form = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
                request.header("content-type", "application/x-www-form-urlencoded").body(form.into_bytes())
            }
        };
        let response = request.send().await.map_err(|e| SlackError::Unreachable(e.to_string()))?;
        if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(30);
            return Err(SlackError::RateLimited(wait));
        }
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .map_err(|_| SlackError::Unreachable(format!("Slack answered {} without JSON", status.as_u16())))?;
        if answer.get("ok") == Some(&Value::Bool(true)) {
            Ok(answer)
        } else {
            let error = answer.get("error").and_then(Value::as_str).unwrap_or("unknown_error");
            Err(SlackError::Refused(error.to_string()))
        }
    }

    /// Opens a modal for the person whose click or command gave `trigger_id`.
    pub async fn open_view(&self, trigger_id: &str, view: &Value) -> Result<(), SlackError> {
        self.call("views.open", Body::Json(&json!({"trigger_id": trigger_id, "view": view})), OPEN_VIEW_TIMEOUT)
            .await
            .map(drop)
    }

    /// Posts a message to a channel, or to a user's direct messages with the app (a user id as
    /// the channel), in a thread when `thread_ts` is given.
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: &Value,
        thread_ts: Option<&str>,
    ) -> Result<Posted, SlackError> {
        let mut body = json!({"channel": channel, "text": text, "blocks": blocks, "unfurl_links": false});
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
        }
        let answer = self.call("chat.postMessage", Body::Json(&body), TIMEOUT).await?;
        let field = |name: &str| answer.get(name).and_then(Value::as_str).map(str::to_string);
        match (field("channel"), field("ts")) {
            (Some(channel), Some(ts)) => Ok(Posted { channel, ts }),
            _ => Err(SlackError::Refused("chat.postMessage answered without its channel and ts".into())),
        }
    }

    /// Replaces a message the app posted.
    pub async fn update_message(&self, at: &Posted, text: &str, blocks: &Value) -> Result<(), SlackError> {
        let body = json!({"channel": at.channel, "ts": at.ts, "text": text, "blocks": blocks});
        self.call("chat.update", Body::Json(&body), TIMEOUT).await.map(drop)
    }

    /// A Slack user's e-mail address, when Slack has confirmed it (`users:read.email`).
    pub async fn confirmed_email(&self, user: &str) -> Result<Option<String>, SlackError> {
        let answer = self.call("users.info", Body::Form(&[("user", user)]), TIMEOUT).await?;
        let person = &answer["user"];
        if person.get("is_email_confirmed") != Some(&Value::Bool(true)) {
            return Ok(None);
        }
        Ok(person["profile"]["email"].as_str().map(str::to_string))
    }
}
