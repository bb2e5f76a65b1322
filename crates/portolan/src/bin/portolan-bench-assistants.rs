//! The assistants and notifications benchmark: starts a Portolan server on a fresh data directory
//! (or PostgreSQL), then measures
//! 1. what the MCP server adds over the REST call it stands for: `get_entity` against
//!    `GET /api/v1/blueprints/service/entities/{id}` and `search_entities` against
//!    `POST /api/v1/blueprints/service/entities/search`, by concurrent clients for `--seconds` each;
//! 2. notifications fanned out: runs waiting for approval at `--rate` runs/s for `--seconds`, each
//!    telling the `--members` members of the approving team, in their inboxes and at their
//!    webhooks; every notice is counted in the inboxes and at the receiver (none may be lost).
//!
//! `cargo run --release -p portolan --bin portolan-bench-assistants -- --seconds 10 --rate 100 --members 10`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use bench_server::{load, pct, post};
use clap::Parser;
use portolan_model::notification::Preferences;
use portolan_model::permission::{Role, User};
use portolan_server::services::{Actor, Origin};
use serde_json::{Value, json};

#[path = "../bench_server.rs"]
mod bench_server;

#[derive(Parser)]
#[command(about = "Benchmark the MCP server against the REST API, and notifications fanned out to an approving team")]
struct Args {
    /// How long each phase runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent clients in the read phases.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Services in the catalog.
    #[arg(long, default_value_t = 1_000)]
    services: usize,
    /// Runs waiting for approval per second in the fan-out phase.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Members of the approving team (each run tells every one of them).
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Benchmark PostgreSQL instead: the URL of an empty database.
    #[arg(long)]
    database_url: Option<String>,
}

fn main() -> anyhow::Result<()> {
    if bench_server::serve_sandbox_if_asked()? {
        return Ok(());
    }
    let args = Args::parse();
    let bench = bench_server::launch(args.database_url.as_deref())?;
    bench.clients.block_on(run(&args, &bench.server))
}

fn tool_call(name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

/// A webhook receiver that counts what it gets.
async fn receiver(count: Arc<AtomicUsize>) -> anyhow::Result<String> {
    let handler = move || {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/notify", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(handler)).await });
    Ok(url)
}

async fn run(args: &Args, server: &bench_server::BenchServer) -> anyhow::Result<()> {
    portolan_server::outbound::install_crypto();
    let base = &server.base;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", server.token).parse()?);
    headers.insert(reqwest::header::ACCEPT, "application/json, text/event-stream".parse()?);
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients).default_headers(headers).build()?;
    let url = |path: &str| format!("{base}{path}");
    let schema = json!({"properties": {"replicas": {"type": "number"}, "tier": {"type": "string"}}});
    post(&client, &url("/api/v1/blueprints"), json!({"identifier": "service", "schema": schema})).await?;
    for chunk in (0..args.services).collect::<Vec<_>>().chunks(500) {
        let entities: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({"identifier": format!("svc-{i:06}"), "title": format!("Service {i}"),
                            "properties": {"replicas": i % 7, "tier": "gold"}})
            })
            .collect();
        post(&client, &url("/api/v1/blueprints/service/entities/bulk"), json!({"entities": entities})).await?;
    }

    // 1. The MCP server against the REST calls it stands for, alternating so neither has the warmer server.
    let id = format!("svc-{:06}", args.services / 2);
    let get_rest = url(&format!("/api/v1/blueprints/service/entities/{id}"));
    let search_rest = url("/api/v1/blueprints/service/entities/search");
    let mcp = url("/mcp");
    let get_mcp = tool_call("get_entity", json!({"blueprint": "service", "identifier": id}));
    let search_mcp = tool_call("search_entities", json!({"blueprint": "service", "limit": 10}));
    let phases: [(&str, &str, Option<Value>); 4] = [
        ("REST GET entity", &get_rest, None),
        ("MCP get_entity", &mcp, Some(get_mcp)),
        ("REST search, 10", &search_rest, Some(json!({"limit": 10}))),
        ("MCP search_entities, 10", &mcp, Some(search_mcp)),
    ];
    for round in 0..2 {
        for (label, target, body) in &phases {
            let (rate, latencies) = load(args.clients, args.seconds, &client, target, body.clone()).await?;
            println!(
                "round {}: {label}, {} clients, {} s: {rate:.0} requests/s, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
                round + 1,
                args.clients,
                args.seconds,
                pct(&latencies, 0.50),
                pct(&latencies, 0.95),
                pct(&latencies, 0.99)
            );
        }
    }

    // 2. Runs waiting for approval, each told to every member of the approving team.
    let delivered = Arc::new(AtomicUsize::new(0));
    let hook = receiver(Arc::clone(&delivered)).await?;
    post(&client, &url("/api/v1/blueprints/_team/entities"), json!({"identifier": "oncall"})).await?;
    let mut members = Vec::new();
    for m in 0..args.members {
        let name = format!("oncall-{m}");
        post(&client, &url("/api/v1/users"), json!({"identifier": name, "teams": ["oncall"]})).await?;
        let actor =
            Actor::user(User { id: name.clone(), role: Role::Member, teams: vec!["oncall".into()] }, Origin::Api);
        let preferences: Preferences = serde_json::from_value(json!({"webhook": {"url": hook}}))?;
        server.state.notifications.set_preferences(&actor, preferences).await?;
        members.push(actor);
    }
    post(
        &client,
        &url("/api/v1/actions"),
        json!({"identifier": "scale", "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
                   "userInputs": {"properties": {"replicas": {"type": "number"}}, "required": ["replicas"]}},
               "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service",
                   "mapping": {"identifier": "{{ .entity.identifier }}", "properties": {"replicas": "{{ .inputs.replicas }}"}}},
               "guardrails": {"approval": {"approvers": {"teams": ["oncall"]}}}}),
    )
    .await?;
    let runs = (args.rate * args.seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate.max(1)));
    let started = Instant::now();
    let mut requests = Vec::with_capacity(runs);
    for i in 0..runs {
        tick.tick().await;
        let (client, target) = (client.clone(), url("/api/v1/actions/scale/runs"));
        let body = json!({"entity": format!("svc-{:06}", i % args.services), "properties": {"replicas": 3}});
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            post(&client, &target, body).await?;
            anyhow::Ok(sent.elapsed())
        }));
    }
    let mut requested = Vec::with_capacity(runs);
    for request in requests {
        requested.push(request.await??);
    }
    let asked = started.elapsed();
    requested.sort();
    let expected = runs * args.members;
    let deadline = Instant::now() + Duration::from_secs(300);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_delivered = started.elapsed();
    let mut in_inboxes = 0;
    for member in &members {
        in_inboxes += server.state.notifications.unread(member).await? as usize;
    }
    let at_webhooks = delivered.load(Ordering::Relaxed);
    println!(
        "{runs} runs waiting for approval at {} runs/s ({:.1} s), each told to {} members: {expected} notices, \
         {in_inboxes} in the inboxes, {at_webhooks} at the webhooks, all delivered {:.1} s after the first run \
         ({:.0} webhook deliveries/s); run request p50 {:.1} ms, p99 {:.1} ms",
        args.rate,
        asked.as_secs_f64(),
        args.members,
        all_delivered.as_secs_f64(),
        at_webhooks as f64 / all_delivered.as_secs_f64(),
        pct(&requested, 0.50),
        pct(&requested, 0.99)
    );
    if in_inboxes != expected || at_webhooks != expected {
        bail!("notices lost: {expected} expected, {in_inboxes} in the inboxes, {at_webhooks} at the webhooks");
    }
    Ok(())
}
