//! The server's settings: built once by the binary (from its file, environment and flags) or by a
//! test, and fixed when the app is built.

use std::sync::Arc;

use crate::email::EmailSettings;
use crate::sandbox::JqSandbox;
use crate::services::audit::AuditOptions;
use crate::services::identity::SessionPolicy;
use crate::services::oidc::OidcSettings;
use crate::slack::api::SlackSettings;

/// Everything the services are configured with.
#[derive(Clone)]
pub struct Settings {
    /// How long a runner holds a claimed run without a heartbeat.
    pub runner_lease_ms: i64,
    /// The server's master key (base64 of 32 bytes); generated and kept in the database if absent.
    pub secrets_key: Option<String>,
    /// Let webhooks reach loopback, private and link-local addresses (for backends on the same
    /// network; off by default so an action cannot be aimed at internal services).
    pub webhook_allow_private: bool,
    /// The NATS server that `NATS` actions publish to.
    pub nats_url: Option<String>,
    /// The first wait between two looks at a CI run a `GITHUB` action started; it doubles up to
    /// 30 s (and waits out GitHub's rate limits).
    pub ci_poll_ms: i64,
    /// Days of KPI history kept.
    pub kpi_retention_days: u32,
    /// Where the audit key and the audit checkpoints are.
    pub audit: AuditOptions,
    /// The URL backends, runners and the sign-on provider reach this server at.
    pub public_url: String,
    /// Single sign-on, when configured.
    pub oidc: Option<OidcSettings>,
    /// The Slack app, when configured.
    pub slack: Option<SlackSettings>,
    /// The SMTP server notifications are e-mailed through, when configured.
    pub email: Option<EmailSettings>,
    pub sessions: SessionPolicy,
    /// Where jq runs (calculation properties, templates, conditions, policies); without one, what
    /// needs jq stays empty or fails with a clear message.
    pub jq: Option<Arc<JqSandbox>>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            runner_lease_ms: crate::worker::DEFAULT_LEASE_MS,
            secrets_key: None,
            webhook_allow_private: false,
            nats_url: None,
            ci_poll_ms: 2_000,
            kpi_retention_days: 730,
            audit: AuditOptions::default(),
            public_url: "http://localhost:8080".into(),
            oidc: None,
            slack: None,
            email: None,
            sessions: SessionPolicy::default(),
            jq: None,
        }
    }
}
