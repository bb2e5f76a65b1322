//! The app's state: every service, built once from a store, a clock and the [`Settings`], wired
//! in the order of their arrows (see `services`).

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use portolan_store::Store;

use crate::backends::Engine;
use crate::email::Mailer;
use crate::error::{Error, ErrorCode};
use crate::keys::{self, Keys};
use crate::outbound::Outbound;
use crate::services::actions::Actions;
use crate::services::approvals::Approvals;
use crate::services::audit::{self, Audit, AuditSigner, KeyOrigin};
use crate::services::backstage::BackstageCatalog;
use crate::services::catalog::Catalog;
use crate::services::computed::Computed;
use crate::services::core::{Core, SharedClock, SystemClock};
use crate::services::dashboards::Dashboards;
use crate::services::dora::Dora;
use crate::services::guardrails::Guardrails;
use crate::services::identity::Identity;
use crate::services::initiatives::Initiatives;
use crate::services::integrations::{Integrations, IntegrationsParts};
use crate::services::locations::Locations;
use crate::services::manifests::Manifests;
use crate::services::notifications::{Notifications, NotificationsParts};
use crate::services::oauth::OAuth;
use crate::services::oidc::Oidc;
use crate::services::permissions::Permissions;
use crate::services::runs::{Runs, RunsParts};
use crate::services::scorecards::Scorecards;
use crate::services::search::Search;
use crate::services::slack::Slack;
use crate::settings::Settings;
use crate::slack::api::SlackApi;

/// What every handler can reach: the services, and the process's metrics and shutdown signal.
/// Cloned for every request, so it is one shared pointer; its fields read as its own (`app.runs`).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

pub struct Services {
    pub core: Core,
    pub permissions: Permissions,
    pub computed: Computed,
    pub search: Search,
    pub catalog: Catalog,
    pub scorecards: Scorecards,
    pub dora: Dora,
    pub initiatives: Initiatives,
    pub dashboards: Dashboards,
    pub audit: Audit,
    pub identity: Identity,
    pub oauth: OAuth,
    pub notifications: Notifications,
    pub slack: Slack,
    pub oidc: Oidc,
    pub actions: Actions,
    pub guardrails: Guardrails,
    pub runs: Runs,
    pub approvals: Approvals,
    pub manifests: Manifests,
    pub backstage: BackstageCatalog,
    pub locations: Locations,
    pub integrations: Integrations,
    pub metrics: PrometheusHandle,
    /// Where users reach the portal (`public_url`, without a trailing slash).
    pub public_url: Arc<str>,
    /// Set when the server begins to shut down: long-lived responses (event streams) end.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

impl AppState {
    /// The services over a store with the default settings, and makes sure the system blueprints
    /// exist.
    pub async fn new(store: Arc<dyn Store>) -> Result<Self, Error> {
        Self::build(store, Arc::new(SystemClock), Settings::default()).await
    }

    /// The services over a store, with this clock and these settings.
    pub async fn build(store: Arc<dyn Store>, clock: SharedClock, settings: Settings) -> Result<Self, Error> {
        let internal = |e: String| Error::new(ErrorCode::Internal, e);
        let keys = Arc::new(Keys::new(&master_key(store.as_ref(), settings.secrets_key.as_deref()).await?));
        let signer = Arc::new(audit_signer(store.as_ref(), &settings).await?);
        let outbound = Arc::new(Outbound::new(settings.webhook_allow_private).map_err(internal)?);
        if let Some(oidc) = &settings.oidc {
            outbound.trust_sign_on_provider(&oidc.issuer);
        }
        let engine = Arc::new(Engine::new(Arc::clone(&outbound), settings.nats_url.clone()));
        let github = Arc::clone(&engine.github);
        let public_url: Arc<str> = Arc::from(settings.public_url.trim_end_matches('/'));

        let core = Core::new(store, clock);
        let permissions = Permissions::new(core.clone());
        let computed = Computed::new(core.clone(), settings.jq.clone());
        let search = Search::new(core.clone(), permissions.clone());
        let catalog = Catalog::new(core.clone(), permissions.clone(), computed.clone());
        let scorecards = Scorecards::new(core.clone(), permissions.clone(), settings.kpi_retention_days);
        let dora = Dora::new(core.clone(), search.clone(), permissions.clone());
        let initiatives = Initiatives::new(
            core.clone(),
            permissions.clone(),
            search.clone(),
            scorecards.clone(),
            Arc::clone(&outbound),
            Arc::clone(&public_url),
        );
        let dashboards = Dashboards::new(
            core.clone(),
            permissions.clone(),
            search.clone(),
            scorecards.clone(),
            initiatives.clone(),
            dora.clone(),
        );
        let audit = Audit::new(core.clone(), permissions.clone(), signer);
        let identity = Identity::new(core.clone(), catalog.clone(), audit.clone(), settings.sessions);
        let slack_api = SlackApi::new(Arc::clone(&outbound), settings.slack.clone());
        let mailer = Mailer::new(settings.email.as_ref()).map_err(internal)?;
        let notifications = Notifications::new(NotificationsParts {
            core: core.clone(),
            outbound: Arc::clone(&outbound),
            slack: slack_api.clone(),
            mailer,
            permissions: permissions.clone(),
            public_url: Arc::clone(&public_url),
        });
        let oauth = OAuth::new(core.clone(), identity.clone(), Arc::clone(&keys), Arc::clone(&public_url));
        let slack = Slack::new(core.clone(), identity.clone(), Arc::clone(&keys), slack_api, Arc::clone(&public_url));
        let oidc = Oidc::new(
            core.clone(),
            identity.clone(),
            catalog.clone(),
            Arc::clone(&outbound),
            Arc::clone(&keys),
            settings.oidc.clone(),
            Arc::clone(&public_url),
        );
        let actions = Actions::new(core.clone(), permissions.clone(), Arc::clone(&keys), Arc::clone(&outbound));
        let guardrails = Guardrails::new(core.clone(), permissions.clone(), search.clone());
        let runs = Runs::new(RunsParts {
            core: core.clone(),
            permissions: permissions.clone(),
            search: search.clone(),
            catalog: catalog.clone(),
            actions: actions.clone(),
            guardrails: guardrails.clone(),
            identity: identity.clone(),
            engine,
            keys,
            jq: settings.jq.clone(),
            public_url: Arc::clone(&public_url),
            runner_lease_ms: settings.runner_lease_ms,
            ci_poll_ms: settings.ci_poll_ms,
        });
        let approvals = Approvals::new(core.clone(), permissions.clone(), guardrails.clone());
        let backstage = BackstageCatalog::new(core.clone(), search.clone(), catalog.clone());
        let manifests = Manifests {
            core: core.clone(),
            permissions: permissions.clone(),
            catalog: catalog.clone(),
            scorecards: scorecards.clone(),
            actions: actions.clone(),
            search: search.clone(),
            initiatives: initiatives.clone(),
            dashboards: dashboards.clone(),
        };
        let locations = Locations::new(core.clone(), permissions.clone(), manifests.clone(), actions.clone());
        let integrations = Integrations::new(IntegrationsParts {
            core: core.clone(),
            permissions: permissions.clone(),
            catalog: catalog.clone(),
            manifests: manifests.clone(),
            actions: actions.clone(),
            outbound: Arc::clone(&outbound),
            github,
            jq: settings.jq.clone(),
            public_url: Arc::clone(&public_url),
        });
        catalog.ensure_system_blueprints().await?;
        Ok(Self(Arc::new(Services {
            core,
            permissions,
            computed,
            search,
            catalog,
            scorecards,
            dora,
            initiatives,
            dashboards,
            audit,
            identity,
            oauth,
            notifications,
            slack,
            oidc,
            actions,
            guardrails,
            runs,
            approvals,
            manifests,
            backstage,
            locations,
            integrations,
            metrics: metrics_handle(),
            public_url,
            stopping: tokio::sync::watch::channel(false).0,
        })))
    }

    /// Ends event streams so that a graceful shutdown is not held open by them.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves when [`AppState::begin_shutdown`] is called.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }
}

/// The configured master key, or the one this database keeps (generated on first start).
async fn master_key(store: &dyn Store, configured: Option<&str>) -> Result<[u8; keys::KEY_BYTES], Error> {
    let text = match configured {
        Some(text) => text.to_string(),
        None => {
            let mut tx = store.write().await?;
            let stored = tx.setting_or_insert("secrets_key", &Keys::generate_master()).await?;
            tx.commit().await?;
            tracing::warn!(
                "no secrets_key is configured: secrets are encrypted with a key kept in the database itself; \
                 configure secrets_key (or secrets_key_file) to keep the key apart from the data"
            );
            stored
        }
    };
    Keys::parse_master(&text).map_err(|e| Error::new(ErrorCode::Internal, e))
}

/// The audit key (given to the store, which signs every record with it) and checkpoint settings.
async fn audit_signer(store: &dyn Store, settings: &Settings) -> Result<AuditSigner, Error> {
    let (key, origin) =
        audit::audit_key(store, settings.secrets_key.as_deref(), &settings.audit).await?.ok_or_else(|| {
            Error::new(ErrorCode::Internal, "the database has no secrets key to derive an audit key from")
        })?;
    if origin == KeyOrigin::Database {
        tracing::warn!(
            "no audit key is configured: the audit log is signed with a key derived from the one kept in the \
             database, so someone who can read the database could rewrite it unnoticed; configure audit_key_file \
             (or secrets_key) to keep the key apart from the data"
        );
    }
    store.set_audit_key(key.clone())?;
    Ok(AuditSigner::new(key, origin, &settings.audit))
}

/// The process-wide Prometheus recorder (a process has one global metrics recorder).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then ours just records nothing globally.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// The app over a fresh SQLite store, for unit tests (the store lives while the directory does).
#[cfg(test)]
pub(crate) async fn on_sqlite() -> (tempfile::TempDir, AppState) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = portolan_store::open(&dir.path().to_string_lossy()).await.expect("store");
    (dir, AppState::new(store).await.expect("state"))
}
