//! The Port-compatibility benchmark: starts a Portolan server on a fresh data directory and a
//! local GitHub, then measures
//! 1. what Port's paths cost: reading one entity through `/v1/...` and through `/api/v1/...`, by
//!    concurrent clients for `--seconds` each (requests/s and latency);
//! 2. trigger → GitHub workflow dispatch received, for a `GITHUB` action at a steady `--rate`.
//!
//! `cargo run --release -p portolan --bin portolan-bench-port -- --seconds 10 --rate 200`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use bench_server::{load, pct, send};
use clap::Parser;
use serde_json::{Value, json};

#[path = "../bench_server.rs"]
mod bench_server;

#[derive(Parser)]
#[command(about = "Benchmark Port's paths against Portolan's own, and the GITHUB backend's dispatch latency")]
struct Args {
    /// How long each read phase runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent clients in the read phases.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Runs per second in the dispatch phase.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Runs in the dispatch phase.
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// Benchmark PostgreSQL instead: the URL of an empty database.
    #[arg(long)]
    database_url: Option<String>,
}

/// When each run was triggered and when GitHub received its dispatch, by run id.
#[derive(Default)]
struct Clock {
    triggered: HashMap<String, Instant>,
    dispatched: HashMap<String, Instant>,
}

fn main() -> anyhow::Result<()> {
    if bench_server::serve_sandbox_if_asked()? {
        return Ok(());
    }
    let args = Args::parse();
    let bench = bench_server::launch(args.database_url.as_deref())?;
    bench.clients.block_on(run(&args, &bench.server.base, &bench.server.token))
}

/// A GitHub that takes workflow dispatches, notes when each run's arrived and answers the run's
/// details, as GitHub does with `return_run_details`.
async fn github(clock: Arc<Mutex<Clock>>) -> anyhow::Result<String> {
    let handler = move |axum::Json(body): axum::Json<Value>| {
        let clock = Arc::clone(&clock);
        async move {
            let arrived = Instant::now();
            let run = body["inputs"]["run"].as_str().unwrap_or_default().to_string();
            if let Ok(mut c) = clock.lock() {
                c.dispatched.entry(run).or_insert(arrived);
            }
            axum::Json(json!({"workflow_run_id": 1, "run_url": "https://api.github.com/repos/acme/cart/actions/runs/1",
                              "html_url": "https://github.com/acme/cart/actions/runs/1"}))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let router =
        axum::Router::new().route("/repos/{o}/{r}/actions/workflows/{w}/dispatches", axum::routing::post(handler));
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(url)
}

async fn run(args: &Args, base: &str, token: &str) -> anyhow::Result<()> {
    portolan_server::outbound::install_crypto();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients).default_headers(headers).build()?;
    let post = |path: &str, body: Value| {
        let url = format!("{base}{path}");
        let client = client.clone();
        async move { bench_server::post(&client, &url, body).await }
    };
    post("/api/v1/blueprints", json!({"identifier": "service", "schema": {"properties": {"n": {"type": "number"}}}}))
        .await?;
    post("/api/v1/blueprints/service/entities", json!({"identifier": "cart", "properties": {"n": 1}})).await?;

    // 1. Port's paths against the API's own, alternating so neither has the warmer server.
    for (label, path) in [("/api/v1", "/api/v1"), ("/v1", "/v1"), ("/api/v1", "/api/v1"), ("/v1", "/v1")] {
        let url = format!("{base}{path}/blueprints/service/entities/cart");
        let (rate, latencies) = load(args.clients, args.seconds, &client, &url, None).await?;
        println!(
            "GET {label}/blueprints/service/entities/cart, {} clients, {} s: {rate:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms",
            args.clients,
            args.seconds,
            pct(&latencies, 0.50),
            pct(&latencies, 0.99)
        );
    }

    // 2. Trigger -> dispatch received, for a GITHUB action at a steady rate.
    let clock: Arc<Mutex<Clock>> = Arc::default();
    let github_url = github(Arc::clone(&clock)).await?;
    post("/api/v1/secrets", json!({"name": "github-token", "value": "ghp_bench"})).await?;
    post(
        "/api/v1/integrations",
        json!({"identifier": "github", "type": "github", "intervalSeconds": 86_400,
               "vendor": {"baseUrl": github_url, "organization": "acme", "tokenSecret": "github-token"},
               "mapping": {"resources": [{"kind": "repository", "port": {"entity": {"mappings": {
                   "identifier": ".name", "blueprint": "\"service\""}}}}]}}),
    )
    .await?;
    post(
        "/v1/actions",
        json!({"identifier": "deploy", "trigger": {"type": "self-service", "operation": "CREATE",
                   "userInputs": {"properties": {}}},
               "invocationMethod": {"type": "GITHUB", "org": "acme", "repo": "cart", "workflow": "deploy.yml",
                   "ref": "main", "workflowInputs": {"run": "{{ .run.id }}"}, "reportWorkflowStatus": false}}),
    )
    .await?;
    let mut sent = Vec::with_capacity(args.samples);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate.max(1)));
    for _ in 0..args.samples {
        tick.tick().await;
        let (client, url, clock) = (client.clone(), format!("{base}/api/v1/actions/deploy/runs"), Arc::clone(&clock));
        sent.push(tokio::spawn(async move {
            let triggered = Instant::now();
            let body = send(&client, reqwest::Method::POST, &url, Some(json!({}))).await?;
            let id = body["run"]["id"].as_str().unwrap_or_default().to_string();
            if let Ok(mut c) = clock.lock() {
                c.triggered.insert(id.clone(), triggered);
            }
            anyhow::Ok(id)
        }));
    }
    let mut ids = Vec::with_capacity(args.samples);
    for task in sent {
        ids.push(task.await??);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let done = clock.lock().map(|c| ids.iter().all(|id| c.dispatched.contains_key(id))).unwrap_or(false);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = clock.lock().map_err(|_| anyhow::anyhow!("clock poisoned"))?;
    let mut latencies: Vec<Duration> =
        ids.iter().filter_map(|id| Some(c.dispatched.get(id)?.duration_since(*c.triggered.get(id)?))).collect();
    latencies.sort();
    println!(
        "trigger -> GitHub dispatch received at {} runs/s: {} of {} runs, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        args.rate,
        latencies.len(),
        ids.len(),
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
        pct(&latencies, 1.0)
    );
    if latencies.len() != ids.len() {
        bail!("{} of {} dispatches did not arrive", ids.len() - latencies.len(), ids.len());
    }
    Ok(())
}
