//! The actions benchmark: starts a Portolan server on a fresh data directory and a webhook
//! receiver, then measures
//! 1. trigger → webhook delivered latency at a steady rate (`--rate`, 100 runs/s by default);
//! 2. runs/s sustained for `--seconds` by concurrent clients, and the latency meanwhile;
//! 3. trigger → runner claimed latency, with a runner waiting in a long-poll.
//!
//! `cargo run --release -p portolan --bin portolan-bench-actions -- --seconds 60`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use bench_server::{pct, post};
use clap::Parser;
use serde_json::{Value, json};

#[path = "../bench_server.rs"]
mod bench_server;

#[derive(Parser)]
#[command(about = "Benchmark Portolan's actions: trigger-to-delivery latency and sustained runs/s")]
struct Args {
    /// How long the sustained phase runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Concurrent clients in the sustained phase.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Runs in the latency phases.
    #[arg(long, default_value_t = 1_000)]
    samples: usize,
    /// Runs per second in the steady latency phase.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Benchmark PostgreSQL instead: the URL of an empty database.
    #[arg(long)]
    database_url: Option<String>,
}

/// When each run was triggered and when its delivery arrived, by run id.
#[derive(Default)]
struct Clock {
    triggered: HashMap<String, Instant>,
    delivered: HashMap<String, Instant>,
}

fn main() -> anyhow::Result<()> {
    if bench_server::serve_sandbox_if_asked()? {
        return Ok(());
    }
    let args = Args::parse();
    let clock: Arc<Mutex<Clock>> = Arc::default();
    let bench = bench_server::launch(args.database_url.as_deref())?;
    bench.clients.block_on(run(&args, &bench.server.base, &bench.server.token, clock))
}

/// Triggers one run and notes when.
async fn trigger(client: &reqwest::Client, base: &str, action: &str, clock: &Mutex<Clock>) -> anyhow::Result<String> {
    let sent = Instant::now();
    let body = post(client, &format!("{base}/api/v1/actions/{action}/runs"), json!({"properties": {"n": 1}})).await?;
    let id = body["run"]["id"].as_str().unwrap_or_default().to_string();
    if let Ok(mut c) = clock.lock() {
        c.triggered.insert(id.clone(), sent);
    }
    Ok(id)
}

/// Waits until every triggered run was delivered (or a deadline), then the latencies.
async fn latencies(ids: &[String], clock: &Mutex<Clock>) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = clock.lock().map(|c| ids.iter().all(|id| c.delivered.contains_key(id))).unwrap_or(false);
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = clock.lock().expect("clock");
    let mut out: Vec<Duration> =
        ids.iter().filter_map(|id| Some(c.delivered.get(id)?.duration_since(*c.triggered.get(id)?))).collect();
    out.sort();
    out
}

async fn run(args: &Args, base: &str, token: &str, clock: Arc<Mutex<Clock>>) -> anyhow::Result<()> {
    portolan_server::outbound::install_crypto();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients).default_headers(headers).build()?;
    let delivered = Arc::clone(&clock);
    let hook = bench_server::webhook_receiver(move |run, at| {
        if let Ok(mut c) = delivered.lock() {
            c.delivered.entry(run).or_insert(at);
        }
    })
    .await?;
    post(
        &client,
        &format!("{base}/api/v1/secrets"),
        json!({"name": "hook", "value": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
    )
    .await?;
    let action = json!({
        "identifier": "notify",
        "trigger": {"type": "self-service", "operation": "CREATE", "userInputs": {"properties": {"n": {"type": "number"}}}},
        "invocationMethod": {"type": "WEBHOOK", "url": hook, "signingSecret": "hook", "synchronized": true,
                             "body": {"n": "{{ .inputs.n }}", "run": "{{ .run.id }}"}}
    });
    post(&client, &format!("{base}/api/v1/actions"), action).await?;

    // 1. Latency at a steady rate: one trigger per tick, each on its own task.
    let mut sent = Vec::with_capacity(args.samples);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate.max(1)));
    for _ in 0..args.samples {
        tick.tick().await;
        let (client, base, clock) = (client.clone(), base.to_string(), Arc::clone(&clock));
        sent.push(tokio::spawn(async move { trigger(&client, &base, "notify", &clock).await }));
    }
    let mut ids = Vec::with_capacity(args.samples);
    for task in sent {
        ids.push(task.await??);
    }
    let steady = latencies(&ids, &clock).await;
    println!(
        "trigger -> webhook delivered at {} runs/s: {} runs, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        args.rate,
        steady.len(),
        pct(&steady, 0.50),
        pct(&steady, 0.99),
        pct(&steady, 1.0)
    );

    // 2. Sustained: concurrent clients trigger as fast as the server accepts, for `seconds`.
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, base, clock) = (client.clone(), base.to_string(), Arc::clone(&clock));
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while Instant::now() < until {
                match trigger(&client, &base, "notify", &clock).await {
                    Ok(id) => mine.push(id),
                    Err(err) => eprintln!("trigger failed: {err}"),
                }
            }
            mine
        }));
    }
    let mut sustained_ids = Vec::new();
    for task in tasks {
        sustained_ids.extend(task.await?);
    }
    let triggered_in = started.elapsed();
    let loaded = latencies(&sustained_ids, &clock).await;
    let drained_in = started.elapsed();
    println!(
        "sustained {} s with {} clients: {} runs triggered ({:.0} runs/s), all {} delivered within {:.1} s ({:.0} deliveries/s); \
         latency under load p50 {:.1} ms, p99 {:.1} ms",
        args.seconds,
        args.clients,
        sustained_ids.len(),
        sustained_ids.len() as f64 / triggered_in.as_secs_f64(),
        loaded.len(),
        drained_in.as_secs_f64(),
        loaded.len() as f64 / drained_in.as_secs_f64(),
        pct(&loaded, 0.50),
        pct(&loaded, 0.99),
    );
    if loaded.len() != sustained_ids.len() {
        let undelivered =
            clock.lock().ok().and_then(|c| sustained_ids.iter().find(|id| !c.delivered.contains_key(*id)).cloned());
        let record = match undelivered {
            Some(id) => client.get(format!("{base}/api/v1/actions/runs/{id}")).send().await?.text().await?,
            None => String::new(),
        };
        bail!(
            "{} of {} runs were not delivered; the first: {record}",
            sustained_ids.len() - loaded.len(),
            sustained_ids.len()
        );
    }

    // 3. Trigger -> runner claimed, with the runner already waiting in its long-poll.
    let runner_action = json!({
        "identifier": "job",
        "trigger": {"type": "self-service", "operation": "CREATE", "userInputs": {"properties": {"n": {"type": "number"}}}},
        "invocationMethod": {"type": "RUNNER", "labels": ["bench"], "task": "noop"}
    });
    post(&client, &format!("{base}/api/v1/actions"), runner_action).await?;
    let token = post(&client, &format!("{base}/api/v1/runners/tokens"), json!({"name": "bench", "labels": ["bench"]}))
        .await?["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut claimed = Vec::new();
    for _ in 0..args.samples.min(500) {
        let waiting = {
            let (client, base, token) = (client.clone(), base.to_string(), token.clone());
            tokio::spawn(async move {
                let response = client
                    .post(format!("{base}/api/v1/runners/claim"))
                    .bearer_auth(&token)
                    .json(&json!({"waitSeconds": 10}))
                    .send()
                    .await?;
                let body: Value = response.json().await?;
                anyhow::Ok((Instant::now(), body))
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let sent = Instant::now();
        post(&client, &format!("{base}/api/v1/actions/job/runs"), json!({"properties": {"n": 1}})).await?;
        let (at, body) = waiting.await??;
        claimed.push(at.duration_since(sent));
        let run_token = body["claim"]["runToken"].as_str().unwrap_or_default();
        let run_id = body["claim"]["run"]["id"].as_str().unwrap_or_default();
        client
            .patch(format!("{base}/api/v1/actions/runs/{run_id}"))
            .bearer_auth(run_token)
            .json(&json!({"status": "SUCCESS"}))
            .send()
            .await?;
    }
    claimed.sort();
    println!(
        "trigger -> runner claimed (runner in long-poll): {} runs, p50 {:.1} ms, p99 {:.1} ms",
        claimed.len(),
        pct(&claimed, 0.50),
        pct(&claimed, 0.99)
    );
    Ok(())
}
