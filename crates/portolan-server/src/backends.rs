//! The outside world actions reach: webhooks (signed per the Standard Webhooks spec, sent through
//! [`Outbound`], so no redirects and private addresses refused unless allowed) and NATS JetStream. These functions only deliver and
//! say how it went; what that means for the run is the runs service's decision.

use std::time::Duration;

use tokio::sync::OnceCell;

use crate::keys::Keys;
use crate::outbound::{Outbound, OutboundError, Purpose};

/// Settings of the engine that the binary reads from its configuration.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How long a runner holds a claimed run without a heartbeat.
    pub runner_lease_ms: i64,
    /// The server's master key (base64 of 32 bytes); generated and kept in the database if absent.
    pub secrets_key: Option<String>,
    /// Let webhooks reach loopback, private and link-local addresses (for backends on the same
    /// network; off by default so an action cannot be aimed at internal services).
    pub webhook_allow_private: bool,
    /// The NATS server that `NATS` actions publish to.
    pub nats_url: Option<String>,
    /// Where the audit key and the audit checkpoints are.
    pub audit: crate::services::audit::AuditOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            runner_lease_ms: 30_000,
            secrets_key: None,
            webhook_allow_private: false,
            nats_url: None,
            audit: Default::default(),
        }
    }
}

/// What actions need at run time, shared by every clone of the catalog.
pub struct Engine {
    pub keys: Keys,
    /// Signs the audit log's records (the store holds the key too) and checkpoints.
    pub audit: crate::services::audit::AuditSigner,
    pub runner_lease_ms: i64,
    /// Every HTTP request the server makes goes through it.
    pub outbound: Outbound,
    oidc: std::sync::RwLock<Option<crate::services::oidc::OidcSettings>>,
    nats_url: Option<String>,
    nats: OnceCell<async_nats::jetstream::Context>,
    /// The URL backends report back to (`{public_url}/api/v1/actions/runs/{id}`).
    public_url: std::sync::RwLock<String>,
    /// Wakes long-polling runners when a runner run is queued.
    pub runner_work: tokio::sync::Notify,
}

/// Installs the process's TLS crypto (ring); harmless when already installed.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Engine {
    pub fn new(
        keys: Keys,
        audit: crate::services::audit::AuditSigner,
        options: &EngineOptions,
    ) -> Result<Self, String> {
        install_crypto();
        Ok(Self {
            keys,
            audit,
            runner_lease_ms: options.runner_lease_ms,
            outbound: Outbound::new(options.webhook_allow_private)?,
            oidc: std::sync::RwLock::new(None),
            nats_url: options.nats_url.clone(),
            nats: OnceCell::new(),
            public_url: std::sync::RwLock::new("http://localhost:8080".into()),
            runner_work: tokio::sync::Notify::new(),
        })
    }

    /// Turns on single sign-on with this provider, whose origin sign-on requests may reach even
    /// on a private network.
    pub fn set_oidc(&self, settings: crate::services::oidc::OidcSettings) {
        self.outbound.trust_sign_on_provider(&settings.issuer);
        if let Ok(mut current) = self.oidc.write() {
            *current = Some(settings);
        }
    }

    pub fn oidc(&self) -> Option<crate::services::oidc::OidcSettings> {
        self.oidc.read().ok().and_then(|s| s.clone())
    }

    pub fn set_public_url(&self, url: &str) {
        if let Ok(mut current) = self.public_url.write() {
            *current = url.trim_end_matches('/').to_string();
        }
    }

    pub fn public_url(&self) -> String {
        self.public_url.read().map(|u| u.clone()).unwrap_or_default()
    }

    async fn jetstream(&self) -> Result<&async_nats::jetstream::Context, Attempt> {
        let url = self
            .nats_url
            .as_deref()
            .ok_or_else(|| Attempt::Fatal("this server has no NATS connection configured (set nats_url)".into()))?;
        self.nats
            .get_or_try_init(|| async {
                let client = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(3))
                    .connect(url)
                    .await
                    .map_err(|e| Attempt::Retry { error: format!("cannot connect to NATS: {e}"), after: None })?;
                Ok(async_nats::jetstream::new(client))
            })
            .await
    }

    /// Publishes to a JetStream subject with the run id as message id (JetStream drops a
    /// duplicate within its window), and waits for the stream's acknowledgement.
    pub async fn publish_nats(&self, subject: &str, message_id: &str, payload: Vec<u8>) -> Result<String, Attempt> {
        let jetstream = self.jetstream().await?;
        let message =
            async_nats::jetstream::message::PublishMessage::build().payload(payload.into()).message_id(message_id);
        let ack = jetstream
            .send_publish(subject.to_string(), message)
            .await
            .map_err(|e| Attempt::Retry { error: format!("cannot publish to '{subject}': {e}"), after: None })?;
        let ack = tokio::time::timeout(Duration::from_secs(5), ack)
            .await
            .map_err(|_| Attempt::Retry { error: "JetStream did not acknowledge within 5 s".into(), after: None })?
            .map_err(|e| Attempt::Retry { error: format!("JetStream refused the message: {e}"), after: None })?;
        Ok(format!(
            "stream {} sequence {}{}",
            ack.stream,
            ack.sequence,
            if ack.duplicate { " (duplicate)" } else { "" }
        ))
    }
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Delivered; the HTTP status and up to 1 KiB of the answer.
    Delivered { status: u16, body: String },
    /// Refused for good (a 4xx, a redirect, a bad URL).
    Fatal(String),
    /// Failed in a way that may pass (5xx, 429, timeout, connection error); `after` is the
    /// server's `Retry-After`, if it gave one.
    Retry { error: String, after: Option<Duration> },
}

/// A rendered webhook request.
pub struct WebhookRequest<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
    /// `webhook-id`: the same on every attempt, so receivers can drop repeats.
    pub id: &'a str,
    pub signing_secret: &'a str,
    pub now_seconds: i64,
}

const MAX_ANSWER_KEPT: usize = 1024;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl Engine {
    /// Sends one signed webhook request (a run's delivery, or a notice about the run).
    pub async fn deliver_webhook(&self, purpose: Purpose, request: WebhookRequest<'_>) -> Attempt {
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let builder = match self.outbound.request(purpose, method, request.url) {
            Ok(builder) => builder,
            Err(refused) => return failed(refused),
        };
        let signature =
            match crate::keys::sign_webhook(request.signing_secret, request.id, request.now_seconds, &request.body) {
                Ok(signature) => signature,
                Err(error) => return Attempt::Fatal(error),
            };
        let mut builder = builder
            .timeout(request.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", request.id)
            .header("webhook-timestamp", &request.now_seconds.to_string())
            .header("webhook-signature", &signature);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        match builder.body(request.body).send().await {
            Ok(response) => answer(response, request.timeout).await,
            Err(error) => failed(error),
        }
    }
}

fn failed(error: OutboundError) -> Attempt {
    match error {
        OutboundError::Refused(why) => Attempt::Fatal(why),
        OutboundError::Invalid(_) => Attempt::Fatal(error.to_string()),
        OutboundError::TimedOut(_) => Attempt::Retry { error: error.to_string(), after: None },
        OutboundError::Unreachable(why) => {
            Attempt::Retry { error: format!("cannot reach the webhook: {why}"), after: None }
        }
    }
}

async fn answer(response: reqwest::Response, timeout: Duration) -> Attempt {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = match tokio::time::timeout(timeout, response.bytes()).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_ANSWER_KEPT)]).into_owned(),
        Ok(Err(_)) | Err(_) => String::new(),
    };
    let code = status.as_u16();
    match code {
        200..=299 => Attempt::Delivered { status: code, body },
        300..=399 => Attempt::Fatal(format!(
            "the webhook answered {code} redirecting to {}; redirects are not followed",
            location.as_deref().unwrap_or("nowhere")
        )),
        408 | 429 | 500..=599 => Attempt::Retry { error: format!("the webhook answered {code}"), after: retry_after },
        _ => Attempt::Fatal(format!("the webhook answered {code}: {}", body.chars().take(200).collect::<String>())),
    }
}
