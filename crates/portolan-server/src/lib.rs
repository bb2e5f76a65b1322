//! Portolan's engine and HTTP face.

pub mod api;
pub mod backends;
pub mod connections;
pub mod demo;
pub mod error;
pub mod extract;
pub mod keys;
pub mod outbound;
pub mod rate_limit;
pub mod sandbox;
pub mod services;
pub mod sweeper;
pub mod web;
pub mod worker;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, Response, StatusCode};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use portolan_store::Store;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutBody};
use tower_http::trace::TraceLayer;

use crate::backends::{Engine, EngineOptions};
use crate::error::{Error, ErrorCode};
use crate::keys::Keys;
use crate::services::catalog::Catalog;
use crate::services::{SharedClock, SystemClock};

/// Settings of the HTTP server that the binary reads from its configuration.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit: usize,
    /// API requests per minute per credential (or address); `None` for no limit.
    pub rate_limit_per_minute: Option<u32>,
    /// Timeouts and bounds of connections, which [`serve_with`] applies.
    pub connections: connections::ConnectionLimits,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            rate_limit_per_minute: None,
            connections: connections::ConnectionLimits::default(),
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Catalog,
    pub metrics: PrometheusHandle,
    /// Set when the server begins to shut down: long-lived responses (event streams) end.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

impl AppState {
    /// Builds the services over a store and makes sure the system blueprints exist.
    pub async fn new(store: Arc<dyn Store>) -> Result<Self, Error> {
        Self::with_clock(store, Arc::new(SystemClock)).await
    }

    pub async fn with_clock(store: Arc<dyn Store>, clock: SharedClock) -> Result<Self, Error> {
        Self::with_options(store, clock, &EngineOptions::default()).await
    }

    pub async fn with_options(
        store: Arc<dyn Store>,
        clock: SharedClock,
        options: &EngineOptions,
    ) -> Result<Self, Error> {
        let keys = Keys::new(&master_key(store.as_ref(), options.secrets_key.as_deref()).await?);
        let audit = audit_signer(store.as_ref(), options).await?;
        let engine = Engine::new(keys, audit, options).map_err(|e| Error::new(ErrorCode::Internal, e))?;
        let catalog = Catalog::new(store, clock, Arc::new(engine));
        catalog.ensure_system_blueprints().await?;
        Ok(Self { catalog, metrics: metrics_handle(), stopping: Arc::new(tokio::sync::watch::channel(false).0) })
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
async fn audit_signer(store: &dyn Store, options: &EngineOptions) -> Result<services::audit::AuditSigner, Error> {
    use services::audit::{AuditSigner, KeyOrigin};
    let (key, origin) =
        services::audit::audit_key(store, options.secrets_key.as_deref(), &options.audit).await?.ok_or_else(|| {
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
    Ok(AuditSigner::new(key, origin, &options.audit))
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

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application.
/// An unknown address: a page for a browser, the JSON error for everything else.
async fn no_such_route(uri: axum::http::Uri, headers: axum::http::HeaderMap) -> axum::response::Response {
    let error = Error::new(ErrorCode::NotFound, "there is nothing at this address");
    let accepts_html = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if accepts_html && !uri.path().starts_with("/api/") {
        web::PageError::from(error).into_response()
    } else {
        error.into_response()
    }
}

pub fn router(state: AppState, options: &ServerOptions) -> Router {
    let mut routes = api::router()
        .merge(web::router())
        .fallback(no_such_route)
        .method_not_allowed_fallback(|| async {
            Error::new(ErrorCode::MethodNotAllowed, "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(options.body_limit))
        .layer(middleware::from_fn(record_metrics))
        .layer(middleware::from_fn_with_state(state.clone(), record_refusals));
    if let Some(per_minute) = options.rate_limit_per_minute {
        routes =
            routes.layer(middleware::from_fn_with_state(rate_limit::RateLimiter::new(per_minute), rate_limit::limit));
    }
    routes
        .with_state(state)
        // A body must keep arriving: a request that sends its headers and then stalls would
        // otherwise hold its connection (and a place in the connection bounds) for ever.
        .layer(
            ServiceBuilder::new()
                .layer(RequestBodyTimeoutLayer::new(options.connections.header_read_timeout))
                .map_request(|request: Request<TimeoutBody<Body>>| request.map(Body::new)),
        )
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
                    let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %request.method(), uri = %request.uri().path(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(|_panic| {
                    Error::new(ErrorCode::Internal, "the request handler panicked").into_response()
                })),
        )
}

/// Who made a request: the authenticating extractor fills it in, for [`record_refusals`].
#[derive(Clone, Default)]
pub struct CallerSlot(Arc<OnceLock<String>>);

impl CallerSlot {
    pub fn fill(&self, actor: &str) {
        let _ = self.0.set(actor.to_string());
    }
}

/// Records every request that permissions refused (403, or a 404 hiding what the caller may not
/// read) in the audit log, once the request's own transaction is over.
async fn record_refusals(
    axum::extract::State(app): axum::extract::State<AppState>,
    mut request: Request,
    next: Next,
) -> Response<axum::body::Body> {
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    let target = format!("{} {}", request.method(), request.uri().path());
    let request_id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_string);
    let response = next.run(request).await;
    if let Some(refusal) = response.extensions().get::<error::Refusal>() {
        let actor = slot.0.get().cloned().unwrap_or_else(|| "anonymous".into());
        let mut entry = services::Actor::system(actor, services::Origin::Api).entry(
            app.catalog.now(),
            "request",
            "request",
            &target,
        );
        entry.request_id = request_id;
        app.catalog.record_denial(entry.denied(refusal.0.clone())).await;
    }
    response
}

async fn record_metrics(request: Request, next: Next) -> Response<axum::body::Body> {
    let started = Instant::now();
    let method = request.method().to_string();
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("portolan_http_requests_total", &labels).increment(1);
    metrics::histogram!("portolan_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
        metrics::counter!("portolan_http_internal_errors_total").increment(1);
    }
    response
}

/// Serves until `shutdown` resolves, then finishes in-flight requests; with the default
/// [`connections::ConnectionLimits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, connections::ConnectionLimits::default(), shutdown).await
}

/// [`serve`] with the given connection timeouts and bounds.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: connections::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    connections::serve(listener, router, &limits, shutdown).await
}
