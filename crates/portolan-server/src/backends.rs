//! The outside world actions reach: webhooks (signed per the Standard Webhooks spec, no redirects,
//! private addresses refused unless allowed) and NATS JetStream. These functions only deliver and
//! say how it went; what that means for the run is the runs service's decision.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::sync::OnceCell;

use crate::keys::Keys;

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
    pub http: reqwest::Client,
    /// For the single sign-on provider, which the operator configured (so no address guard).
    pub sso_http: reqwest::Client,
    oidc: std::sync::RwLock<Option<crate::services::oidc::OidcSettings>>,
    allow_private: bool,
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
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver { allow_private: options.webhook_allow_private }))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("Portolan/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let sso_http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(crate::services::oidc::PROVIDER_TIMEOUT)
            .user_agent(concat!("Portolan/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            keys,
            audit,
            runner_lease_ms: options.runner_lease_ms,
            http,
            sso_http,
            oidc: std::sync::RwLock::new(None),
            allow_private: options.webhook_allow_private,
            nats_url: options.nats_url.clone(),
            nats: OnceCell::new(),
            public_url: std::sync::RwLock::new("http://localhost:8080".into()),
            runner_work: tokio::sync::Notify::new(),
        })
    }

    /// Turns on single sign-on with this provider.
    pub fn set_oidc(&self, settings: crate::services::oidc::OidcSettings) {
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
    /// Sends one signed webhook request.
    pub async fn deliver_webhook(&self, request: WebhookRequest<'_>) -> Attempt {
        let url = match url::Url::parse(request.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            _ => return Attempt::Fatal(format!("'{}' is not an http or https URL", request.url)),
        };
        if !self.allow_private
            && let Some(reason) = internal_literal(&url)
        {
            return Attempt::Fatal(reason);
        }
        send(&self.http, url, request).await
    }
}

async fn send(client: &reqwest::Client, url: url::Url, request: WebhookRequest<'_>) -> Attempt {
    let signature =
        match crate::keys::sign_webhook(request.signing_secret, request.id, request.now_seconds, &request.body) {
            Ok(signature) => signature,
            Err(error) => return Attempt::Fatal(error),
        };
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut builder = client
        .request(method, url)
        .timeout(request.timeout)
        .header("content-type", "application/json")
        .header("webhook-id", request.id)
        .header("webhook-timestamp", request.now_seconds.to_string())
        .header("webhook-signature", signature);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let response = match builder.body(request.body).send().await {
        Ok(response) => response,
        Err(err) if err.is_builder() => return Attempt::Fatal(format!("cannot build the request: {}", plain(err))),
        Err(err) if err.is_timeout() => {
            return Attempt::Retry {
                error: format!("no answer within {:.1} s", request.timeout.as_secs_f64()),
                after: None,
            };
        }
        Err(err) => return Attempt::Retry { error: format!("cannot reach the webhook: {}", plain(err)), after: None },
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = match tokio::time::timeout(request.timeout, response.bytes()).await {
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

/// An error's message with its causes, without the URL (which may hold a templated secret).
fn plain(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why a URL whose host is an internal IP literal is refused (names are checked as they resolve).
fn internal_literal(url: &url::Url) -> Option<String> {
    let ip = match url.host()? {
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => IpAddr::V6(ip),
        url::Host::Domain(_) => return None,
    };
    is_internal(ip).then(|| format!("{ip} is a private or loopback address; webhooks may not reach it unless allowed"))
}

/// Loopback, private, link-local, unique-local, site-local, unspecified, CGNAT, benchmarking,
/// reserved and multicast addresses, and IPv6 addresses that carry one of those IPv4 addresses
/// (mapped, compatible, NAT64, 6to4).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && c == 0)
                || a == 0
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| IpAddr::V4(std::net::Ipv4Addr::from(((hi as u32) << 16) | lo as u32));
            if let Some(v4) = v6.to_ipv4() {
                // IPv4-mapped and IPv4-compatible (`::a.b.c.d`, which also covers `::1` and `::`).
                return v6.is_loopback() || v6.is_unspecified() || is_internal(IpAddr::V4(v4));
            }
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                return is_internal(embedded(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return is_internal(embedded(s[1], s[2]));
            }
            v6.is_multicast() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80 || (s[0] & 0xffc0) == 0xfec0
        }
    }
}

/// Resolves names for webhook deliveries and drops internal addresses unless they are allowed:
/// the check happens on the addresses actually connected to, so a name cannot be re-pointed at an
/// internal address between a check and the connection.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> =
                found.iter().copied().filter(|a| allow_private || !is_internal(a.ip())).collect();
            if kept.is_empty() {
                let reason = if found.is_empty() {
                    format!("'{host}' does not resolve")
                } else {
                    format!("'{host}' resolves only to private or loopback addresses; webhooks may not reach them")
                };
                return Err(reason.into());
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(internal.parse().expect("ip")), "{internal} is internal");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"] {
            assert!(!is_internal(public.parse().expect("ip")), "{public} is public");
        }
    }
}
