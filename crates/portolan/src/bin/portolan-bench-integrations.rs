//! The integrations benchmark: starts a Portolan server on a fresh data directory, then measures
//! 1. webhook ingestion: signed GitHub-style events sent at a steady `--rate` for `--seconds`:
//!    the time to accept each (202), and from acceptance to the entity written (the event log's
//!    received and processed times);
//! 2. a REST pull of `--items` items from a local source (1,000 to a page, `Link` pagination):
//!    entities applied per second; then the same pull again, unchanged (its pages answer 304 to their tags), which must write nothing.
//!
//! `cargo run --release -p portolan --bin portolan-bench-integrations -- --rate 2000 --seconds 10`

use std::time::{Duration, Instant};

use anyhow::bail;
use bench_server::{pct, post};
use clap::Parser;
use hmac::{KeyInit, Mac};
use portolan_model::integration::{EventState, IntegrationEvent};
use portolan_server::AppState;
use serde_json::{Value, json};

#[path = "../bench_server.rs"]
mod bench_server;

#[derive(Parser)]
#[command(about = "Benchmark Portolan's integrations: webhook ingestion and REST pulls")]
struct Args {
    /// Webhook events per second.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// How long events are sent.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Items the REST source holds.
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    /// Benchmark PostgreSQL instead: the URL of an empty database.
    #[arg(long)]
    database_url: Option<String>,
}

const SECRET: &str = "bench-webhook-secret";
const PAGE: usize = 1_000;

fn main() -> anyhow::Result<()> {
    if bench_server::serve_sandbox_if_asked()? {
        return Ok(());
    }
    let args = Args::parse();
    let bench = bench_server::launch(args.database_url.as_deref())?;
    let server = &bench.server;
    bench.clients.block_on(run(&args, &server.state, &server.base, &server.token))
}

fn signature(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

async fn run(args: &Args, state: &AppState, base: &str, token: &str) -> anyhow::Result<()> {
    portolan_server::outbound::install_crypto();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).default_headers(headers).build()?;
    let api = format!("{base}/api/v1");
    let blueprint = json!({"identifier": "repo", "title": "Repository", "schema": {"properties": {
        "language": {"type": "string"}, "stars": {"type": "number"}}}});
    post(&client, &format!("{api}/blueprints"), blueprint).await?;
    post(&client, &format!("{api}/secrets"), json!({"name": "hook", "value": SECRET})).await?;
    let mapping = |prefix: &str| {
        json!({"resources": [{"kind": "repository", "port": {"entity": {"mappings": {
            "identifier": format!("{prefix}.name"), "title": format!("{prefix}.full_name"), "blueprint": "\"repo\"",
            "properties": {"language": format!("{prefix}.language"), "stars": format!("{prefix}.stargazers_count")}}}}}]})
    };
    let hook = json!({"identifier": "bench-hook", "type": "webhook", "mapping": mapping(".body.repository"),
        "security": {"secret": "hook", "requestIdentifierPath": ".headers.\"x-github-delivery\""}});
    let created = post(&client, &format!("{api}/integrations"), hook).await?;
    let ingest = created["integration"]["ingestUrl"].as_str().unwrap_or_default().to_string();

    // 1. Webhook ingestion at a steady rate.
    let total = (args.rate * args.seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tick.tick().await;
        let body = serde_json::to_vec(&json!({"action": "push", "repository": {
            "name": format!("repo-{}", i % 5_000), "full_name": format!("acme/repo-{}", i % 5_000),
            "language": "Rust", "stargazers_count": i}}))?;
        let (client, url) = (client.clone(), ingest.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = client
                .post(&url)
                .header("x-github-event", "push")
                .header("x-github-delivery", format!("delivery-{i}"))
                .header("x-hub-signature-256", signature(&body))
                .body(body)
                .send()
                .await?;
            let status = response.status();
            anyhow::Ok((status, sent.elapsed()))
        }));
    }
    let mut accepted = Vec::with_capacity(total);
    let mut refused = 0;
    for task in tasks {
        match task.await? {
            Ok((status, took)) if status == reqwest::StatusCode::ACCEPTED => accepted.push(took),
            _ => refused += 1,
        }
    }
    let sent_in = started.elapsed();
    accepted.sort();
    println!(
        "webhook: {} events sent at {} events/s in {:.1} s ({:.0} accepted/s), {} refused; accept p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        total,
        args.rate,
        sent_in.as_secs_f64(),
        accepted.len() as f64 / sent_in.as_secs_f64(),
        refused,
        pct(&accepted, 0.50),
        pct(&accepted, 0.99),
        pct(&accepted, 1.0)
    );
    let events = settled_events(state, "bench-hook", accepted.len()).await?;
    let drained_in = started.elapsed();
    let mut visible: Vec<Duration> = events
        .iter()
        .filter_map(|e| Some(Duration::from_millis(u64::try_from(e.processed_at? - e.received_at).ok()?)))
        .collect();
    visible.sort();
    let failed = events.iter().filter(|e| e.state != EventState::Done).count();
    println!(
        "webhook: all {} events mapped and written within {:.1} s of the first ({} not done); event -> entity p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms",
        events.len(),
        drained_in.as_secs_f64(),
        failed,
        pct(&visible, 0.50),
        pct(&visible, 0.95),
        pct(&visible, 0.99)
    );

    // 2. A REST pull of a large source, then again unchanged.
    let source = serve_source(args.items).await?;
    let rest = json!({"identifier": "bench-pull", "type": "rest", "intervalSeconds": 86_400,
        "source": {"url": source, "itemsPath": ".", "pagination": {"type": "link"}, "maxPages": 10_000},
        "mapping": mapping("")});
    post(&client, &format!("{api}/integrations"), rest).await?;
    for round in ["first pull", "unchanged re-pull"] {
        let started = Instant::now();
        let pulled = post(&client, &format!("{api}/integrations/bench-pull/sync"), json!({})).await?;
        let took = started.elapsed();
        let s = &pulled["status"];
        println!(
            "rest {round}: {} items read, {} created, {} updated, {} unchanged, {} deleted in {:.3} s ({:.0} items/s), state {}",
            s["fetched"],
            s["created"],
            s["updated"],
            s["unchanged"],
            s["deleted"],
            took.as_secs_f64(),
            args.items as f64 / took.as_secs_f64(),
            s["state"]
        );
        if s["state"] != "ok" {
            bail!("the pull did not succeed: {s}");
        }
    }
    Ok(())
}

/// Every event of an integration once none is pending (or after two minutes).
async fn settled_events(state: &AppState, integration: &str, expected: usize) -> anyhow::Result<Vec<IntegrationEvent>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut all = Vec::with_capacity(expected);
        let mut cursor = None;
        loop {
            let mut tx = state.core.store().read().await?;
            let page = tx.events(integration, cursor.clone(), 1_000).await?;
            drop(tx);
            let Some(last) = page.last() else { break };
            cursor = Some((last.received_at, last.id.clone()));
            all.extend(page);
        }
        let pending = all.iter().filter(|e| e.state == EventState::Pending).count();
        if (pending == 0 && all.len() >= expected) || Instant::now() > deadline {
            return Ok(all);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A source of `items` repositories, 1,000 to a page, linked by `Link` headers and tagged with
/// `ETag`s as GitHub pages.
async fn serve_source(items: usize) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/repos", listener.local_addr()?);
    let next_base = base.clone();
    type PageQuery = axum::extract::Query<std::collections::HashMap<String, String>>;
    let handler = move |axum::extract::Query(query): PageQuery, headers: axum::http::HeaderMap| {
        let next_base = next_base.clone();
        async move {
            let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            // The pages never change: a page's tag is its number.
            let etag = format!("\"{items}-{page}\"");
            if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
                return axum::response::IntoResponse::into_response(axum::http::StatusCode::NOT_MODIFIED);
            }
            let first = (page - 1) * PAGE;
            let chunk: Vec<Value> = (first..(first + PAGE).min(items))
                .map(|i| json!({"name": format!("svc-{i}"), "full_name": format!("acme/svc-{i}"), "language": "Go", "stargazers_count": i % 100}))
                .collect();
            let mut response = axum::response::IntoResponse::into_response(axum::Json(chunk));
            response.headers_mut().insert("etag", etag.parse().expect("a header value"));
            if first + PAGE < items {
                let link = format!("<{next_base}?page={}>; rel=\"next\"", page + 1);
                response.headers_mut().insert("link", link.parse().expect("a header value"));
            }
            response
        }
    };
    let router = axum::Router::new().route("/repos", axum::routing::get(handler));
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(base)
}
