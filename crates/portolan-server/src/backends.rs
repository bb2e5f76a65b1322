//! The outside world actions reach: webhooks (signed per the Standard Webhooks spec, sent through
//! [`Outbound`], so no redirects and private addresses refused unless allowed) and NATS JetStream. These functions only deliver and
//! say how it went; what that means for the run is the runs service's decision.

use std::sync::Arc;
use std::time::Duration;

use portolan_model::integration::security::{port_signature, standard_webhooks_signature};
use tokio::sync::OnceCell;

use crate::outbound::{Outbound, OutboundError, Purpose};

/// Where runs are delivered: every HTTP request through [`Outbound`], and NATS JetStream.
pub struct Engine {
    /// Every HTTP request the server makes goes through it.
    pub outbound: Arc<Outbound>,
    /// GitHub's API, with the installation tokens it keeps (shared with the integrations).
    pub github: Arc<crate::github::Github>,
    nats_url: Option<String>,
    nats: OnceCell<async_nats::jetstream::Context>,
}

impl Engine {
    pub fn new(outbound: Arc<Outbound>, nats_url: Option<String>) -> Self {
        let github = Arc::new(crate::github::Github::new(Arc::clone(&outbound)));
        Self { outbound, github, nats_url, nats: OnceCell::new() }
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
    /// Sends one signed webhook request (a run's delivery, or a notice about the run), with the
    /// `traceparent` of its span when traces are kept.
    #[tracing::instrument(name = "deliver", skip_all, fields(webhook_id = request.id))]
    pub async fn deliver_webhook(&self, purpose: Purpose, request: WebhookRequest<'_>) -> Attempt {
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let builder = match self.outbound.request(purpose, method, request.url) {
            Ok(builder) => builder,
            Err(refused) => return failed(refused),
        };
        let signature =
            match standard_webhooks_signature(request.signing_secret, request.id, request.now_seconds, &request.body) {
                Ok(signature) => signature,
                Err(error) => return Attempt::Fatal(error),
            };
        let mut builder = builder
            .timeout(request.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", request.id)
            .header("webhook-timestamp", &request.now_seconds.to_string())
            .header("webhook-signature", &signature)
            // Port's own scheme, for receivers written for Port.
            .header("x-port-timestamp", &request.now_seconds.to_string())
            .header("x-port-signature", &port_signature(request.signing_secret, request.now_seconds, &request.body));
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(traceparent) = crate::telemetry::current_traceparent() {
            builder = builder.header("traceparent", &traceparent);
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
