//! Integration tests: the real server over HTTP on a random loopback port, one fresh SQLite data
//! directory per test.

mod actions;
mod approvals;
mod audit;
mod backstage;
mod blueprints;
mod computed;
mod conformance;
mod connections;
mod dashboards;
mod deploy;
mod dora;
mod email;
mod entities;
mod errors;
mod gallery;
mod guardrails;
mod history;
mod identity;
mod initiatives;
mod integrations;
mod locations;
mod manifests;
mod mcp;
mod notifications;
mod oauth;
mod ocean;
mod oidc;
mod ops;
mod outbound;
mod permissions;
mod port;
mod runners;
mod scorecards;
mod search;
mod slack;
mod ssrf_corpus;
mod vendors;
mod visibility;
mod web;

use std::sync::Arc;
use std::time::{Duration, Instant};

use portolan_model::permission::Role;
use portolan_server::sandbox::{JqSandbox, SandboxLimits};
use portolan_server::services::identity::NewAccount;
use portolan_server::services::{Actor, Origin, SharedClock, SystemClock};
use portolan_server::{AppState, ServerOptions, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub struct TestApp {
    pub base: String,
    /// Sends the admin's token unless a request sets its own `Authorization`.
    pub client: reqwest::Client,
    pub state: AppState,
    /// An API token of the admin `admin@test`, which `call` and its helpers send.
    pub admin_token: String,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _worker: portolan_server::worker::Worker,
    _sweeper: portolan_server::sweeper::Sweeper,
}

pub async fn spawn_app() -> TestApp {
    TestApp::builder().start().await
}

pub async fn spawn_app_with(options: ServerOptions) -> TestApp {
    TestApp::builder().options(options).start().await
}

/// How a test server is made: each part defaults to what most tests want (a fresh SQLite data
/// directory, the system clock, short runner leases, webhooks allowed to reach loopback, NATS when
/// `PORTOLAN_TEST_NATS_URL` is set, the jq sandbox with default limits).
pub struct TestAppBuilder {
    dir: Option<tempfile::TempDir>,
    listener: Option<tokio::net::TcpListener>,
    options: ServerOptions,
    clock: SharedClock,
    settings: Settings,
    limits: SandboxLimits,
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            dir: None,
            listener: None,
            options: ServerOptions::default(),
            clock: Arc::new(SystemClock),
            settings: test_settings(),
            limits: SandboxLimits::default(),
        }
    }
}

/// Settings for tests: short runner leases, webhooks allowed to reach loopback (where the tests'
/// receivers listen), NATS when `PORTOLAN_TEST_NATS_URL` is set.
pub fn test_settings() -> Settings {
    Settings {
        runner_lease_ms: 1_500,
        webhook_allow_private: true,
        ci_poll_ms: 100,
        nats_url: std::env::var("PORTOLAN_TEST_NATS_URL").ok(),
        ..Settings::default()
    }
}

impl TestAppBuilder {
    pub fn options(mut self, options: ServerOptions) -> Self {
        self.options = options;
        self
    }

    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Webhooks may not reach loopback or private addresses, as on a default server.
    pub fn private_addresses_refused(mut self) -> Self {
        self.settings.webhook_allow_private = false;
        self
    }

    /// Changes the settings the services are built with.
    pub fn settings(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        change(&mut self.settings);
        self
    }

    /// Serves the SQLite data directory `dir` (which may hold data already).
    pub fn dir(mut self, dir: tempfile::TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Serves on this listener (for a test that must give its address out before the server starts).
    pub fn listener(mut self, listener: tokio::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    pub fn sandbox_limits(mut self, limits: SandboxLimits) -> Self {
        self.limits = limits;
        self
    }

    pub async fn start(self) -> TestApp {
        let dir = self.dir.unwrap_or_else(|| tempfile::tempdir().expect("temp dir"));
        let listener = match self.listener {
            Some(listener) => listener,
            None => tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        };
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let sandbox = JqSandbox::with_limits(env!("CARGO_BIN_EXE_portolan-jq-sandbox").into(), vec![], self.limits);
        let settings = Settings { public_url: base.clone(), jq: Some(Arc::new(sandbox)), ..self.settings };
        let store = portolan_store::open(&dir.path().to_string_lossy()).await.expect("store opens");
        let state = AppState::build(store, self.clock, settings).await.expect("state");
        let router = portolan_server::router(state.clone(), &self.options);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(portolan_server::serve_with(listener, router, self.options.connections.clone(), async move {
            let _ = rx.await;
        }));
        let worker = portolan_server::worker::Worker::start(state.clone(), 5_000);
        let sweeper = portolan_server::sweeper::Sweeper::start(state.clone(), 5_000);
        let admin_token = account_token(&state, "admin@test", Role::Admin, &[]).await;
        let mut headers = reqwest::header::HeaderMap::new();
        let bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {admin_token}")).expect("header");
        headers.insert(reqwest::header::AUTHORIZATION, bearer);
        TestApp {
            base,
            client: reqwest::Client::builder().default_headers(headers).build().expect("client"),
            state,
            admin_token,
            _dir: dir,
            _shutdown: tx,
            _worker: worker,
            _sweeper: sweeper,
        }
    }
}

/// A clock the test moves by hand.
pub struct ManualClock(pub std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn at(millis: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(std::sync::atomic::AtomicI64::new(millis)))
    }

    pub fn advance(&self, millis: i64) {
        self.0.fetch_add(millis, std::sync::atomic::Ordering::SeqCst);
    }
}

impl portolan_server::services::Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A response read whole: status, headers and JSON body (`Value::Null` when the body is not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the standard error shape and returns the error code.
    pub fn error_code(&self) -> &str {
        assert_eq!(self.body["ok"], json!(false), "not an error body: {}", self.body);
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {}", self.body);
        assert!(self.body["details"].is_array(), "no details: {}", self.body);
        self.body["error"].as_str().unwrap_or_default()
    }

    /// The `path` of each entry of `details`.
    pub fn detail_paths(&self) -> Vec<String> {
        self.body["details"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["path"].as_str().map(str::to_string))
            .collect()
    }
}

/// An API token of `identifier`, whose account is created (token-only) if it does not exist.
pub async fn account_token(state: &AppState, identifier: &str, role: Role, teams: &[&str]) -> String {
    let system = Actor::system("tests", Origin::Cli);
    let new = NewAccount {
        identifier: identifier.into(),
        title: Some(format!("Test {identifier}")),
        role: Some(role),
        teams: teams.iter().map(|t| t.to_string()).collect(),
        ..NewAccount::default()
    };
    match state.identity.create_account(&system, new).await {
        Ok(_) => {}
        Err(err) if err.code == portolan_server::error::ErrorCode::AlreadyExists => {}
        Err(err) => panic!("account {identifier}: {err}"),
    }
    let (_, token) = state.identity.create_api_token(&system, Some(identifier), "tests", None).await.expect("token");
    token
}

impl TestApp {
    /// Waits until the background worker has done every job queued so far (deliveries,
    /// automations, recomputes) and those they queued in turn; fails after ten seconds.
    pub async fn drain_jobs(&self) {
        let started = Instant::now();
        loop {
            let mut tx = self.state.core.store().read().await.expect("read");
            let waiting = tx.count_jobs().await.expect("count jobs");
            drop(tx);
            if waiting == 0 {
                return;
            }
            // A bound on waiting, not a speed check: a million-item event on a busy machine
            // (the whole suite on two cores) takes more than ten seconds.
            assert!(started.elapsed() < Duration::from_secs(30), "{waiting} jobs still queued after 30 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A request as the admin.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_as(method, path, &self.admin_token, body).await
    }

    /// A request with no credentials.
    pub async fn call_anonymously(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request sent")).await
    }

    /// A member (token-only account) in `teams`, and their token.
    pub async fn member(&self, identifier: &str, teams: &[&str]) -> String {
        for team in teams {
            let reply = self
                .post("/api/v1/blueprints/_team/entities?upsert=true", json!({"identifier": team, "title": team}))
                .await;
            assert!(reply.status.is_success(), "{}", reply.body);
        }
        account_token(&self.state, identifier, Role::Member, teams).await
    }

    /// A request with `Authorization: Bearer token`.
    pub async fn call_as(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates the blueprints the entity tests use: `system` and `service`.
    pub async fn with_service_blueprints(&self) {
        let system = self
            .post(
                "/api/v1/blueprints",
                json!({"identifier": "system", "title": "System", "schema": {"properties": {}}}),
            )
            .await;
        assert_eq!(system.status, StatusCode::CREATED, "{}", system.body);
        let service = self
            .post(
                "/api/v1/blueprints",
                json!({
                    "identifier": "service",
                    "title": "Service",
                    "schema": {
                        "properties": {
                            "language": {"type": "string", "enum": ["Go", "Rust", "Python"]},
                            "replicas": {"type": "number", "minimum": 0, "maximum": 50},
                            "repository": {"type": "string", "format": "url"},
                            "lifecycle": {"type": "string", "default": "experimental"}
                        },
                        "required": ["language"]
                    },
                    "relations": {
                        "system": {"title": "System", "target": "system", "required": true},
                        "dependsOn": {"title": "Depends on", "target": "service", "many": true}
                    }
                }),
            )
            .await;
        assert_eq!(service.status, StatusCode::CREATED, "{}", service.body);
        let shop =
            self.post("/api/v1/blueprints/system/entities", json!({"identifier": "shop", "title": "Shop"})).await;
        assert_eq!(shop.status, StatusCode::CREATED, "{}", shop.body);
    }
}

/// Polls a run until `check` holds; fails after `within`.
pub async fn run_until(app: &TestApp, id: &str, within: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let reply = app.get(&format!("/api/v1/actions/runs/{id}")).await;
        if check(&reply.body["run"]) {
            return reply.body;
        }
        assert!(started.elapsed() < within, "run {id} did not get there within {within:?}: {}", reply.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `text` encoded for a query string's value.
pub fn query_value(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub fn ended(run: &Value) -> bool {
    matches!(run["status"].as_str(), Some("SUCCESS" | "FAILURE" | "CANCELLED" | "TIMED_OUT" | "DECLINED"))
}

pub async fn read(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body read");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, headers, body }
}

pub fn service(identifier: &str) -> Value {
    json!({"identifier": identifier, "properties": {"language": "Rust"}, "relations": {"system": "shop"}})
}

/// The Python of a harness's own virtual environment (`tests/<name>/.venv`), made and filled
/// from its pinned `requirements.txt` once (again when the requirements change).
pub fn python_harness(name: &str) -> std::path::PathBuf {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join(name);
    let venv = dir.join(".venv");
    let python = venv.join("bin").join("python");
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    let wanted = std::fs::read_to_string(dir.join("requirements.txt")).expect("requirements.txt");
    let installed = std::fs::read_to_string(venv.join("installed.txt")).unwrap_or_default();
    if !python.exists() || installed != wanted {
        let run = |program: &std::path::Path, args: &[&str]| {
            let status = std::process::Command::new(program).args(args).current_dir(&dir).status();
            let status =
                status.unwrap_or_else(|e| panic!("{} runs (python3 with venv is needed): {e}", program.display()));
            assert!(status.success(), "{} {args:?} in {} failed", program.display(), dir.display());
        };
        run(std::path::Path::new("python3"), &["-m", "venv", "--clear", ".venv"]);
        run(&python, &["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", "requirements.txt"]);
        std::fs::write(venv.join("installed.txt"), wanted).expect("installed.txt");
    }
    python
}

/// A test harness of npm packages under `tests/{name}`, installed once from its lock file (from
/// the npm registry) when `node_modules/{package}` is missing.
pub fn npm_harness(name: &str, package: &str) -> std::path::PathBuf {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join(name);
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if !dir.join("node_modules").join(package).exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm runs (Node.js and npm are needed for the tests run against npm packages)");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    dir
}
