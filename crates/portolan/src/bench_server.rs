//! The server the benchmarks measure, shared by the benchmark programs: a release build of the
//! whole server (worker, sweeper, the jq sandbox as children of the benchmark program itself)
//! on a loopback port, with an admin's token.

use std::sync::Arc;
use std::time::Duration;

use portolan_server::AppState;
use serde_json::Value;

// The allocator the `portolan` binary uses, so that the benchmarks measure what users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A running benchmark server.
pub struct BenchServer {
    /// For reading the store directly; each benchmark compiles this file, not all read it.
    #[allow(dead_code)]
    pub state: AppState,
    pub base: String,
    pub token: String,
}

/// Runs as the jq sandbox when the server started this program as one: `true` then.
pub fn serve_sandbox_if_asked() -> anyhow::Result<bool> {
    if std::env::args().nth(1).as_deref() != Some("jq-sandbox") {
        return Ok(false);
    }
    portolan_server::sandbox::serve_sandbox()?;
    Ok(true)
}

/// Starts a server on `runtime` over the store `location` (a data directory or a PostgreSQL URL).
pub fn start(runtime: &tokio::runtime::Runtime, location: &str) -> anyhow::Result<BenchServer> {
    runtime.block_on(async {
        let store = portolan_store::open(location).await?;
        let exe = std::env::current_exe()?;
        let sandbox = portolan_server::sandbox::JqSandbox::new(exe, vec!["jq-sandbox".into()]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let settings = portolan_server::Settings {
            webhook_allow_private: true,
            public_url: base.clone(),
            jq: Some(Arc::new(sandbox)),
            ..portolan_server::Settings::default()
        };
        let clock = Arc::new(portolan_server::services::SystemClock);
        let state = AppState::build(Arc::clone(&store), clock, settings).await?;
        let token = state.identity.service_token("bench-admin", portolan_model::permission::Role::Admin).await?;
        let router = portolan_server::router(state.clone(), &portolan_server::ServerOptions::default());
        std::mem::forget(portolan_server::worker::Worker::start(state.clone(), 30_000));
        std::mem::forget(portolan_server::sweeper::Sweeper::start(state.clone(), 30_000));
        tokio::spawn(portolan_server::serve(listener, router, std::future::pending()));
        anyhow::Ok(BenchServer { state, base, token })
    })
}

/// A benchmark's server, started on its own runtime over a fresh temporary data directory (or the
/// PostgreSQL database at `database_url`), and a two-thread runtime for the benchmark's clients.
pub struct Launched {
    pub server: BenchServer,
    pub clients: tokio::runtime::Runtime,
    _server_runtime: tokio::runtime::Runtime,
    /// Removed when the benchmark ends.
    data: tempfile::TempDir,
}

impl Launched {
    /// The server's data directory (empty when it runs on PostgreSQL).
    #[allow(dead_code)]
    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }
}

pub fn launch(database_url: Option<&str>) -> anyhow::Result<Launched> {
    let data = tempfile::tempdir()?;
    let location = database_url.map_or_else(|| data.path().to_string_lossy().into_owned(), str::to_string);
    let server_runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let server = start(&server_runtime, &location)?;
    let clients = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    Ok(Launched { server, clients, _server_runtime: server_runtime, data })
}

/// One request; its JSON answer, or an error naming the URL, status and answer.
pub async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        anyhow::bail!("{url} answered {status}: {body}");
    }
    Ok(body)
}

pub async fn post(client: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    send(client, reqwest::Method::POST, url, Some(body)).await
}

/// `clients` concurrent clients send one request for `seconds` — a `GET` of `url`, or a `POST` of
/// `body` — each as soon as its last is answered: requests/s and the sorted latencies. An error
/// answer (HTTP, or a JSON-RPC `error` or tool `isError`) ends the benchmark.
#[allow(dead_code)]
pub async fn load(
    clients: usize,
    seconds: u64,
    client: &reqwest::Client,
    url: &str,
    body: Option<Value>,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let started = std::time::Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, body) = (client.clone(), url.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while std::time::Instant::now() < until {
                let sent = std::time::Instant::now();
                let method = if body.is_some() { reqwest::Method::POST } else { reqwest::Method::GET };
                let answer = send(&client, method, &url, body.clone()).await?;
                if answer.get("error").is_some() || answer.pointer("/result/isError") == Some(&Value::Bool(true)) {
                    anyhow::bail!("{url} answered an error: {answer}");
                }
                mine.push(sent.elapsed());
            }
            anyhow::Ok(mine)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort();
    Ok((all.len() as f64 / started.elapsed().as_secs_f64(), all))
}

/// A webhook receiver on a loopback port, calling `arrived(run id, when)` for each delivery (the
/// run id is its `webhook-id` without `msg_`); its URL.
#[allow(dead_code)]
pub async fn webhook_receiver(
    arrived: impl Fn(String, std::time::Instant) + Clone + Send + Sync + 'static,
) -> anyhow::Result<String> {
    let handler = move |headers: axum::http::HeaderMap| {
        let arrived = arrived.clone();
        async move {
            let at = std::time::Instant::now();
            let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
            arrived(id.trim_start_matches("msg_").to_string(), at);
            "ok"
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(handler)).await });
    Ok(url)
}

/// The `p` quantile (0 to 1) of sorted durations, in milliseconds.
pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}
