//! Configuration: `portolan.toml`, overridden by `PORTOLAN_*` environment variables, overridden by
//! flags (clap reads both the flags and the variables). Unknown keys in the file are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use portolan_server::connections::ConnectionLimits;
use portolan_server::sandbox::SandboxLimits;
use serde::{Deserialize, Serialize};

/// The file read from the working directory when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "portolan.toml";

/// The server's settings as given: each is a flag, a `PORTOLAN_*` variable and a key of the file.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// Configuration file [default: ./portolan.toml if it exists]
    #[arg(long, env = "PORTOLAN_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7700]
    #[arg(long, env = "PORTOLAN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory of the embedded database [default: ./portolan-data]
    #[arg(long, env = "PORTOLAN_DATA")]
    pub data: Option<PathBuf>,
    /// PostgreSQL URL (`postgres://...`); when set, `--data` is not used
    #[arg(long, env = "PORTOLAN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// File holding the PostgreSQL URL (for secrets mounted as files)
    #[arg(long, env = "PORTOLAN_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Largest request body in bytes [default: 1048576]
    #[arg(long, env = "PORTOLAN_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Log filter, e.g. `info` or `portolan_server=debug` [default: info]
    #[arg(long, env = "PORTOLAN_LOG")]
    pub log: Option<String>,
    /// Log lines as `text` or `json` (one object a line, with the request's trace id) [default: text]
    #[arg(long, env = "PORTOLAN_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// OpenTelemetry collector to send traces to over OTLP/HTTP, e.g. http://127.0.0.1:4318 [default: none]
    #[arg(long, env = "PORTOLAN_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// How long background work a replica claims stays its own if it stops renewing (dies) [default: 30000]
    #[arg(long, env = "PORTOLAN_LEASE_MS")]
    pub lease_ms: Option<i64>,
    /// Key that encrypts secrets and signs run tokens: base64 of 32 bytes [default: generated once and kept in the database]
    #[arg(long, env = "PORTOLAN_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<String>,
    /// File holding the secrets key
    #[arg(long, env = "PORTOLAN_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// Let webhooks reach loopback and private addresses [default: false]
    #[arg(long, env = "PORTOLAN_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: Option<bool>,
    /// NATS server for actions with the NATS backend, e.g. nats://127.0.0.1:4222
    #[arg(long, env = "PORTOLAN_NATS_URL")]
    pub nats_url: Option<String>,
    /// The URL backends and runners reach this server at [default: http://<listen>]
    #[arg(long, env = "PORTOLAN_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The first admin's password, used only when the database has no accounts yet (otherwise one
    /// is generated and printed once)
    #[arg(long, env = "PORTOLAN_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// File holding the first admin's password
    #[arg(long, env = "PORTOLAN_ADMIN_PASSWORD_FILE")]
    pub admin_password_file: Option<PathBuf>,
    /// Sessions end after this long without a request (default 480)
    #[arg(long, env = "PORTOLAN_SESSION_IDLE_MINUTES")]
    pub session_idle_minutes: Option<u32>,
    /// Sessions end this long after sign-in, however active (default 168)
    #[arg(long, env = "PORTOLAN_SESSION_MAX_HOURS")]
    pub session_max_hours: Option<u32>,
    /// Days of KPI history (daily scorecard level counts) kept (default 730)
    #[arg(long, env = "PORTOLAN_KPI_RETENTION_DAYS")]
    pub kpi_retention_days: Option<u32>,
    /// Single sign-on: the OpenID Connect issuer URL (its discovery document is read)
    #[arg(long, env = "PORTOLAN_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Single sign-on: this portal's client ID at the provider
    #[arg(long, env = "PORTOLAN_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// Single sign-on: this portal's client secret at the provider
    #[arg(long, env = "PORTOLAN_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// File holding the single sign-on client secret
    #[arg(long, env = "PORTOLAN_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,
    /// The ID-token claim listing a user's groups; groups named like a team make them a member
    /// (default "groups")
    #[arg(long, env = "PORTOLAN_OIDC_GROUPS_CLAIM")]
    pub oidc_groups_claim: Option<String>,
    /// Members of this group are admins
    #[arg(long, env = "PORTOLAN_OIDC_ADMIN_GROUP")]
    pub oidc_admin_group: Option<String>,
    /// The Slack app: its signing secret (Basic Information → Signing Secret)
    #[arg(long, env = "PORTOLAN_SLACK_SIGNING_SECRET", hide_env_values = true)]
    pub slack_signing_secret: Option<String>,
    /// File holding the Slack app's signing secret
    #[arg(long, env = "PORTOLAN_SLACK_SIGNING_SECRET_FILE")]
    pub slack_signing_secret_file: Option<PathBuf>,
    /// The Slack app's bot token (`xoxb-...`), to open forms and send messages
    #[arg(long, env = "PORTOLAN_SLACK_BOT_TOKEN", hide_env_values = true)]
    pub slack_bot_token: Option<String>,
    /// File holding the Slack app's bot token
    #[arg(long, env = "PORTOLAN_SLACK_BOT_TOKEN_FILE")]
    pub slack_bot_token_file: Option<PathBuf>,
    /// Slack's Web API (default https://slack.com/api)
    #[arg(long, env = "PORTOLAN_SLACK_API_URL")]
    pub slack_api_url: Option<String>,
    /// The SMTP server notifications are e-mailed through: `smtps://user:password@host:465`,
    /// `smtp://user:password@host:587?tls=required` (STARTTLS) or `smtp://host:25`
    #[arg(long, env = "PORTOLAN_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// File holding the SMTP server's URL
    #[arg(long, env = "PORTOLAN_SMTP_URL_FILE")]
    pub smtp_url_file: Option<PathBuf>,
    /// The sender of notification e-mail (default "Portolan <portolan@HOST of public_url>")
    #[arg(long, env = "PORTOLAN_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// API requests per minute per token, session or (without one) address; 0 for no limit
    /// (default 1200)
    #[arg(long, env = "PORTOLAN_RATE_LIMIT_PER_MINUTE")]
    pub rate_limit_per_minute: Option<u32>,
    /// A client must send a request's line and headers within this many seconds of connecting or
    /// of starting it (default 10)
    #[arg(long, env = "PORTOLAN_HEADER_READ_TIMEOUT_SECONDS")]
    pub header_read_timeout_seconds: Option<u64>,
    /// A kept-alive connection with no request in progress is closed after this many seconds
    /// (default 60)
    #[arg(long, env = "PORTOLAN_IDLE_TIMEOUT_SECONDS")]
    pub idle_timeout_seconds: Option<u64>,
    /// Connections one address (an IPv6 /64) may hold open at once (default 256)
    #[arg(long, env = "PORTOLAN_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,
    /// Connections all clients together may hold open at once (default 10000)
    #[arg(long, env = "PORTOLAN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Memory one jq sandbox process may use, in MiB (default 256)
    #[arg(long, env = "PORTOLAN_JQ_MEMORY_MIB")]
    pub jq_memory_mib: Option<u64>,
    /// jq sandbox processes evaluating at once; more wait up to 5 s (default 2 per core, at most 16)
    #[arg(long, env = "PORTOLAN_JQ_CONCURRENCY")]
    pub jq_concurrency: Option<usize>,
    /// Key that signs the audit log and its checkpoints: base64 of 32 bytes, kept away from the
    /// database [default: <data>/audit.key, else derived from secrets_key]
    #[arg(long, env = "PORTOLAN_AUDIT_KEY", hide_env_values = true)]
    pub audit_key: Option<String>,
    /// File holding the audit key
    #[arg(long, env = "PORTOLAN_AUDIT_KEY_FILE")]
    pub audit_key_file: Option<PathBuf>,
    /// Directory the server writes signed audit checkpoints to [default: <data>/audit-checkpoints
    /// with the embedded database; none with PostgreSQL]
    #[arg(long, env = "PORTOLAN_AUDIT_CHECKPOINT_DIR")]
    pub audit_checkpoint_dir: Option<PathBuf>,
    /// Minutes between audit checkpoints while the log grows; 0 for only at start, stop and on
    /// request [default: 60]
    #[arg(long, env = "PORTOLAN_AUDIT_CHECKPOINT_MINUTES")]
    pub audit_checkpoint_minutes: Option<u32>,
    /// Load the demo catalog (idempotent: existing entries are left alone)
    #[arg(long, env = "PORTOLAN_DEMO")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub demo: bool,
}

/// A configured secret: shown as `REDACTED`.
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("REDACTED")
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where the catalog lives.
#[derive(Clone, PartialEq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Database {
    /// The location `portolan_store::open` takes.
    pub fn location(&self) -> String {
        match self {
            Database::Sqlite(dir) => dir.to_string_lossy().into_owned(),
            Database::Postgres(url) => url.clone(),
        }
    }
}

/// Shows a PostgreSQL URL without its password, so logs never carry it.
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(dir) => write!(f, "sqlite:{}", dir.display()),
            Database::Postgres(url) => match url::Url::parse(url) {
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(Some("REDACTED"));
                    }
                    write!(f, "{parsed}")
                }
                Err(_) => write!(f, "postgres://(unparsable URL)"),
            },
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The effective settings of `portolan serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub database: Database,
    pub body_limit: usize,
    pub log: String,
    pub log_format: LogFormat,
    pub otlp_endpoint: Option<String>,
    pub demo: bool,
    pub lease_ms: i64,
    pub secrets_key: Option<Secret>,
    pub webhook_allow_private: bool,
    pub nats_url: Option<String>,
    pub public_url: Option<String>,
    pub admin_password: Option<Secret>,
    pub session_idle_minutes: u32,
    pub session_max_hours: u32,
    pub kpi_retention_days: u32,
    pub oidc: Option<Oidc>,
    pub slack: Option<Slack>,
    /// The SMTP server's URL (it may hold a password) and the sender, when given.
    pub smtp: Option<(Secret, Option<String>)>,
    pub rate_limit_per_minute: Option<u32>,
    pub connections: ConnectionLimits,
    pub jq: SandboxLimits,
    pub audit_key: Option<Secret>,
    pub audit_checkpoint_dir: Option<PathBuf>,
    pub audit_checkpoint_minutes: u32,
}

impl ServeConfig {
    /// Where the audit key and checkpoints are. `create_key_file`: make `<data>/audit.key` when no
    /// key is found (the commands that write; never the ones that only check).
    pub fn audit_options(&self, create_key_file: bool) -> portolan_server::services::audit::AuditOptions {
        use portolan_server::services::audit::{AUDIT_KEY_FILE, AuditOptions, CHECKPOINT_DIR};
        let data_dir = match &self.database {
            Database::Sqlite(dir) => Some(dir),
            Database::Postgres(_) => None,
        };
        AuditOptions {
            key: self.audit_key.clone().map(|k| k.0),
            key_file: data_dir.map(|d| d.join(AUDIT_KEY_FILE)),
            create_key_file,
            checkpoint_dir: self.audit_checkpoint_dir.clone().or_else(|| data_dir.map(|d| d.join(CHECKPOINT_DIR))),
            checkpoint_every: match self.audit_checkpoint_minutes {
                0 => None,
                m => Some(std::time::Duration::from_secs(u64::from(m) * 60)),
            },
        }
    }
}

/// Single sign-on settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Oidc {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub groups_claim: String,
    pub admin_group: Option<String>,
}

/// The Slack app's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Slack {
    pub signing_secret: Secret,
    pub bot_token: Option<Secret>,
    pub api_url: String,
}

/// A value given directly or as a file holding it (not both).
fn value_or_file(value: Option<String>, file: Option<PathBuf>, what: &str) -> anyhow::Result<Option<Secret>> {
    match (value, file) {
        (Some(_), Some(_)) => bail!("give the {what} or a file holding it, not both"),
        (Some(value), None) => Ok(Some(Secret(value))),
        (None, Some(path)) => Ok(Some(Secret(
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the {what} from {}", path.display()))?
                .trim()
                .to_string(),
        ))),
        (None, None) => Ok(None),
    }
}

impl ServeArgs {
    /// These settings over those of the file: each one given here replaces the file's.
    fn over(self, file: ServeArgs) -> anyhow::Result<ServeArgs> {
        let mut merged = serde_json::to_value(file)?;
        if let serde_json::Value::Object(given) = serde_json::to_value(&self)? {
            for (key, value) in given.into_iter().filter(|(_, v)| !v.is_null()) {
                merged[key] = value;
            }
        }
        Ok(ServeArgs { config: self.config, ..serde_json::from_value(merged)? })
    }

    /// Checks the settings (flags and environment over the file) and fills in the defaults.
    pub fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => read_file(Path::new(DEFAULT_CONFIG_FILE))?,
            None => ServeArgs::default(),
        };
        let given = self.over(file)?;
        let body_limit = given.body_limit.unwrap_or(1024 * 1024);
        if body_limit < 1024 {
            bail!("body_limit must be at least 1024 bytes");
        }
        let positive = |value: Option<u64>, default: u64, name: &str| match value.unwrap_or(default) {
            0 => bail!("{name} must be at least 1"),
            n => Ok(n),
        };
        let default = ConnectionLimits::default();
        let connections = ConnectionLimits {
            header_read_timeout: std::time::Duration::from_secs(positive(
                given.header_read_timeout_seconds,
                default.header_read_timeout.as_secs(),
                "header_read_timeout_seconds",
            )?),
            idle_timeout: std::time::Duration::from_secs(positive(
                given.idle_timeout_seconds,
                default.idle_timeout.as_secs(),
                "idle_timeout_seconds",
            )?),
            max_per_address: positive(
                given.max_connections_per_address.map(|n| n as u64),
                default.max_per_address as u64,
                "max_connections_per_address",
            )? as usize,
            max_total: positive(given.max_connections.map(|n| n as u64), default.max_total as u64, "max_connections")?
                as usize,
        };
        let jq = SandboxLimits {
            memory_mib: match given.jq_memory_mib.unwrap_or(portolan_server::sandbox::DEFAULT_MEMORY_MIB) {
                mib if mib >= 16 => mib,
                _ => bail!("jq_memory_mib must be at least 16"),
            },
            concurrency: positive(
                given.jq_concurrency.map(|n| n as u64),
                portolan_server::sandbox::default_concurrency() as u64,
                "jq_concurrency",
            )? as usize,
            ..SandboxLimits::default()
        };
        Ok(ServeConfig {
            connections,
            jq,
            listen: given.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7700))),
            database: resolve_database(given.database_url, given.database_url_file, given.data)?,
            body_limit,
            log: given.log.unwrap_or_else(|| "info".into()),
            log_format: given.log_format.unwrap_or_default(),
            otlp_endpoint: given.otlp_endpoint.filter(|endpoint| !endpoint.is_empty()),
            demo: given.demo,
            lease_ms: match given.lease_ms.unwrap_or(portolan_server::worker::DEFAULT_LEASE_MS) {
                ms if ms >= 500 => ms,
                _ => bail!("lease_ms must be at least 500"),
            },
            secrets_key: value_or_file(given.secrets_key, given.secrets_key_file, "secrets key")?,
            admin_password: value_or_file(given.admin_password, given.admin_password_file, "admin password")?,
            session_idle_minutes: match given.session_idle_minutes.unwrap_or(480) {
                0 => bail!("session_idle_minutes must be at least 1"),
                m => m,
            },
            session_max_hours: match given.session_max_hours.unwrap_or(168) {
                0 => bail!("session_max_hours must be at least 1"),
                h => h,
            },
            kpi_retention_days: match given.kpi_retention_days.unwrap_or(730) {
                0 => bail!("kpi_retention_days must be at least 1"),
                d => d,
            },
            oidc: match (
                given.oidc_issuer,
                given.oidc_client_id,
                value_or_file(given.oidc_client_secret, given.oidc_client_secret_file, "OIDC client secret")?,
            ) {
                (None, None, None) => None,
                (Some(issuer), Some(client_id), Some(client_secret)) => Some(Oidc {
                    issuer,
                    client_id,
                    client_secret,
                    groups_claim: given.oidc_groups_claim.unwrap_or_else(|| "groups".into()),
                    admin_group: given.oidc_admin_group,
                }),
                _ => bail!("single sign-on needs oidc_issuer, oidc_client_id and oidc_client_secret together"),
            },
            slack: match (
                value_or_file(given.slack_signing_secret, given.slack_signing_secret_file, "Slack signing secret")?,
                value_or_file(given.slack_bot_token, given.slack_bot_token_file, "Slack bot token")?,
            ) {
                (Some(signing_secret), bot_token) => Some(Slack {
                    signing_secret,
                    bot_token,
                    api_url: given.slack_api_url.unwrap_or_else(|| portolan_server::slack::api::SLACK_API.into()),
                }),
                (None, Some(_)) => bail!("the Slack app needs slack_signing_secret with its bot token"),
                (None, None) => None,
            },
            smtp: match value_or_file(given.smtp_url, given.smtp_url_file, "SMTP URL")? {
                Some(url) => Some((url, given.smtp_from)),
                None if given.smtp_from.is_some() => bail!("smtp_from needs smtp_url"),
                None => None,
            },
            rate_limit_per_minute: match given.rate_limit_per_minute.unwrap_or(1200) {
                0 => None,
                n => Some(n),
            },
            audit_key: value_or_file(given.audit_key, given.audit_key_file, "audit key")?,
            audit_checkpoint_dir: given.audit_checkpoint_dir,
            audit_checkpoint_minutes: given.audit_checkpoint_minutes.unwrap_or(60),
            webhook_allow_private: given.webhook_allow_private.unwrap_or(false),
            nats_url: given.nats_url,
            public_url: given.public_url,
        })
    }
}

fn resolve_database(url: Option<String>, url_file: Option<PathBuf>, data: Option<PathBuf>) -> anyhow::Result<Database> {
    match value_or_file(url, url_file, "database URL")?.map(|s| s.0) {
        Some(url) if portolan_store::is_postgres_url(&url) => Ok(Database::Postgres(url)),
        Some(_) => bail!("the database URL must start with postgres:// (the embedded database is chosen with --data)"),
        None => Ok(Database::Sqlite(data.unwrap_or_else(|| PathBuf::from("portolan-data")))),
    }
}

fn read_file(path: &Path) -> anyhow::Result<ServeArgs> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs::default()
    }

    #[test]
    fn flags_override_the_file_and_unknown_keys_are_errors() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("portolan.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\ndata = \"/tmp/x\"\nbody_limit = 2048\ndemo = true\n")?;
        let config = ServeArgs { config: Some(path.clone()), data: Some("/tmp/y".into()), ..args() }.resolve()?;
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert!(config.demo, "a flag not given leaves the file's value");
        assert_eq!(config.database, Database::Sqlite(PathBuf::from("/tmp/y")));
        assert_eq!(config.body_limit, 2048);

        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nlisten_port = 3\n")?;
        let err = ServeArgs { config: Some(path), ..args() }.resolve().expect_err("unknown key");
        assert!(format!("{err:#}").contains("listen_port"), "{err:#}");
        Ok(())
    }

    #[test]
    fn a_postgres_url_selects_postgres_and_its_password_never_prints() -> anyhow::Result<()> {
        let config = ServeArgs { database_url: Some("postgres://portolan:s3cret@db:5432/portolan".into()), ..args() }
            .resolve()?;
        assert!(matches!(config.database, Database::Postgres(_)));
        let shown = format!("{config:?} {}", config.database);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
        let err = ServeArgs { database_url: Some("mysql://x".into()), ..args() }.resolve().expect_err("not postgres");
        assert!(err.to_string().contains("postgres://"));
        Ok(())
    }

    #[test]
    fn connection_and_jq_limits_come_from_the_file_and_flags() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("portolan.toml");
        std::fs::write(
            &path,
            "header_read_timeout_seconds = 3\nidle_timeout_seconds = 20\nmax_connections_per_address = 8\n\
             max_connections = 100\njq_memory_mib = 64\njq_concurrency = 2\n",
        )?;
        let config = ServeArgs { config: Some(path.clone()), max_connections: Some(50), ..args() }.resolve()?;
        assert_eq!(config.connections.header_read_timeout, std::time::Duration::from_secs(3));
        assert_eq!(config.connections.idle_timeout, std::time::Duration::from_secs(20));
        assert_eq!(config.connections.max_per_address, 8);
        assert_eq!(config.connections.max_total, 50, "the flag wins");
        assert_eq!((config.jq.memory_mib, config.jq.concurrency), (64, 2));

        let defaults = args().resolve()?;
        assert_eq!(defaults.connections, ConnectionLimits::default());
        assert_eq!(defaults.jq, SandboxLimits::default());
        let err = ServeArgs { header_read_timeout_seconds: Some(0), ..args() }.resolve().expect_err("zero");
        assert!(err.to_string().contains("header_read_timeout_seconds"), "{err}");
        Ok(())
    }
}
