//! Benchmarks the KPIs: DORA reports of the organisation, a team and a service over a year, over
//! a catalog of `--services` services that each deploy every few days (a tenth of deployments
//! failing, half of those reverted) and have incidents.

use std::time::Instant;

use anyhow::bail;
use bench_server::{pct, post, send};
use clap::Parser;
use serde_json::{Value, json};

#[path = "../bench_server.rs"]
mod bench_server;

#[derive(Parser)]
#[command(about = "Benchmark Portolan's KPIs: DORA reports over a year of deployments")]
struct Args {
    /// Services in the organisation.
    #[arg(long, default_value_t = 2_000)]
    services: usize,
    /// Deployments per service over the year.
    #[arg(long, default_value_t = 50)]
    deployments: usize,
    /// Teams the services are spread over.
    #[arg(long, default_value_t = 40)]
    teams: usize,
    /// Timed reports of each kind.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Entities whose history `asOf` reads are timed (0: skip).
    #[arg(long, default_value_t = 0)]
    history_entities: usize,
    /// Times each of those entities is changed after its creation.
    #[arg(long, default_value_t = 10)]
    history_rounds: usize,
    /// Benchmark PostgreSQL instead: the URL of an empty database.
    #[arg(long)]
    database_url: Option<String>,
}

const DAY_MS: i64 = 86_400_000;

fn main() -> anyhow::Result<()> {
    if bench_server::serve_sandbox_if_asked()? {
        return Ok(());
    }
    let args = Args::parse();
    let bench = bench_server::launch(args.database_url.as_deref())?;
    let server = &bench.server;
    bench.clients.block_on(run(&args, &server.base, &server.token))?;
    if args.history_entities > 0 {
        bench.clients.block_on(history(&args, &server.base, &server.token, bench.data_dir()))?;
    }
    Ok(())
}

/// Changes `--history-entities` entities `--history-rounds` times each, then reads them `asOf`
/// random times; reports the store's growth per million changes (on SQLite).
async fn history(args: &Args, base: &str, token: &str, data: &std::path::Path) -> anyhow::Result<()> {
    let client = client(token)?;
    let api = format!("{base}/api/v1");
    let blueprint = json!({"identifier": "thing", "schema": {"properties": {"replicas": {"type": "integer"},
        "owner": {"type": "string"}, "tier": {"type": "string", "enum": ["gold", "silver", "bronze"]}}}});
    post(&client, &format!("{api}/blueprints"), blueprint).await?;
    let size = || dir_size(data);
    let before = size();
    let n = args.history_entities;
    let started = Instant::now();
    let mut marks = Vec::new();
    for round in 0..=args.history_rounds {
        marks.push(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64);
        let things: Vec<Value> = (0..n)
            .map(|i| {
                json!({"identifier": format!("thing-{i}"), "title": format!("Thing {i}"),
                "properties": {"replicas": round, "owner": format!("owner-{}", (i + round) % 97), "tier": "gold"}})
            })
            .collect();
        bulk_upsert(&client, &api, "thing", things).await?;
    }
    marks.push(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64);
    let changes = n * (args.history_rounds + 1);
    let grown = size().saturating_sub(before);
    println!(
        "history: {changes} changes of {n} entities in {:.1} s; the store grew {:.0} MB, {:.0} MB per million changes",
        started.elapsed().as_secs_f64(),
        grown as f64 / 1e6,
        grown as f64 / 1e6 / (changes as f64 / 1e6)
    );
    let mut times = Vec::with_capacity(args.samples * 10);
    let mut random = 7u64;
    for _ in 0..args.samples * 10 {
        random = random.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let i = (random >> 33) as usize % n;
        let round = (random >> 13) as usize % (marks.len() - 1);
        let at = marks[round + 1] - 1;
        let url = format!("{api}/blueprints/thing/entities/thing-{i}?asOf={}", time(at));
        let started = Instant::now();
        let read = send(&client, reqwest::Method::GET, &url, None).await?;
        times.push(started.elapsed());
        if read["entity"]["properties"]["replicas"] != json!(round) {
            bail!("thing-{i} asOf round {round} read {}", read["entity"]["properties"]);
        }
    }
    times.sort();
    println!("asOf entity read             p50 {:>8.2} ms  p95 {:>8.2} ms", pct(&times, 0.5), pct(&times, 0.95));

    // A search (a page of 100) and a count as of the end of each round: every entity has been
    // written since all but the last, so these read the past of changes × (rounds after it).
    for round in 0..marks.len() - 1 {
        let at = time(marks[round + 1] - 1);
        let query = json!({"combinator": "and", "rules": [{"property": "tier", "operator": "=", "value": "gold"}]});
        let search = json!({"asOf": at, "query": query, "limit": 100});
        let count = json!({"asOf": at, "blueprint": "thing", "function": "count", "query": query});
        let (mut searches, mut counts) = (Vec::new(), Vec::new());
        for _ in 0..args.samples {
            let started = Instant::now();
            let page = send(
                &client,
                reqwest::Method::POST,
                &format!("{api}/blueprints/thing/entities/search"),
                Some(search.clone()),
            )
            .await?;
            searches.push(started.elapsed());
            if page["entities"][0]["properties"]["replicas"] != json!(round) {
                bail!("a search asOf round {round} read {}", page["entities"][0]);
            }
            let started = Instant::now();
            let counted =
                send(&client, reqwest::Method::POST, &format!("{api}/entities/aggregate"), Some(count.clone())).await?;
            counts.push(started.elapsed());
            if counted["value"] != json!(n as f64) {
                bail!("a count asOf round {round} gave {counted}");
            }
        }
        searches.sort();
        counts.sort();
        let since = n * (args.history_rounds - round);
        println!(
            "asOf search, {since:>8} changes since   p50 {:>8.2} ms  p95 {:>8.2} ms   count p50 {:>8.2} ms  p95 {:>8.2} ms",
            pct(&searches, 0.5),
            pct(&searches, 0.95),
            pct(&counts, 0.5),
            pct(&counts, 0.95)
        );
    }
    Ok(())
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn client(token: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    Ok(reqwest::Client::builder().default_headers(headers).build()?)
}

async fn bulk_upsert(client: &reqwest::Client, api: &str, blueprint: &str, entities: Vec<Value>) -> anyhow::Result<()> {
    let url = format!("{api}/blueprints/{blueprint}/entities/bulk?upsert=true");
    for chunk in entities.chunks(1_000) {
        let answer = post(client, &url, json!({"entities": chunk})).await?;
        if answer["ok"] != true {
            bail!("some {blueprint} entities were not written: {answer}");
        }
    }
    Ok(())
}

async fn run(args: &Args, base: &str, token: &str) -> anyhow::Result<()> {
    portolan_server::outbound::install_crypto();
    let client = client(token)?;
    let api = format!("{base}/api/v1");
    let date = json!({"type": "string", "format": "date-time"});
    let blueprints = [
        json!({"identifier": "service", "schema": {"properties": {"replicas": {"type": "integer"},
            "tier": {"type": "string", "enum": ["gold", "silver", "bronze"]}}}}),
        json!({"identifier": "deployment", "schema": {"properties": {"deployedAt": date, "commitAt": date,
            "status": {"type": "string", "enum": ["succeeded", "failed"]},
            "strategy": {"type": "string", "enum": ["canary", "revert"]}}},
            "relations": {"service": {"target": "service", "required": true}}}),
        json!({"identifier": "incident", "schema": {"properties": {"openedAt": date, "resolvedAt": date}},
            "relations": {"service": {"target": "service", "required": true}}}),
    ];
    for blueprint in blueprints {
        post(&client, &format!("{api}/blueprints"), blueprint).await?;
    }
    let teams: Vec<Value> = (0..args.teams).map(|t| json!({"identifier": format!("team-{t}")})).collect();
    bulk(&client, &api, "_team", teams).await?;
    let services: Vec<Value> = (0..args.services)
        .map(|s| {
            let tier = ["gold", "silver", "bronze"][s % 3];
            json!({"identifier": format!("svc-{s}"), "team": [format!("team-{}", s % args.teams)],
                   "properties": {"replicas": s % 7, "tier": tier}})
        })
        .collect();
    bulk(&client, &api, "service", services).await?;

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let started = Instant::now();
    let mut random = 42u64;
    let mut next = || {
        random = random.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (random >> 33) as f64 / (1u64 << 31) as f64
    };
    let (mut deployments, mut incidents, mut written) = (Vec::new(), Vec::new(), 0);
    for s in 0..args.services {
        for d in 0..args.deployments {
            let at = now - 365 * DAY_MS + (next() * 365.0 * DAY_MS as f64) as i64;
            let failed = next() < 0.1;
            let reverted = failed && next() < 0.5;
            let status = if failed && !reverted { "failed" } else { "succeeded" };
            deployments.push(
                json!({"identifier": format!("svc-{s}-{d}"), "relations": {"service": format!("svc-{s}")},
                "properties": {"deployedAt": time(at), "commitAt": time(at - (next() * 3.0 * DAY_MS as f64) as i64),
                               "status": status, "strategy": "canary"}}),
            );
            if reverted {
                deployments.push(
                    json!({"identifier": format!("svc-{s}-{d}-revert"), "relations": {"service": format!("svc-{s}")},
                    "properties": {"deployedAt": time(at + 1_800_000), "status": "succeeded", "strategy": "revert"}}),
                );
            }
            if failed {
                incidents
                    .push(json!({"identifier": format!("inc-{s}-{d}"), "relations": {"service": format!("svc-{s}")},
                    "properties": {"openedAt": time(at + 300_000), "resolvedAt": time(at + 3_600_000)}}));
            }
            if deployments.len() >= 1_000 {
                written += deployments.len();
                bulk(&client, &api, "deployment", std::mem::take(&mut deployments)).await?;
            }
            if incidents.len() >= 1_000 {
                bulk(&client, &api, "incident", std::mem::take(&mut incidents)).await?;
            }
        }
    }
    written += deployments.len();
    bulk(&client, &api, "deployment", deployments).await?;
    bulk(&client, &api, "incident", incidents).await?;
    println!(
        "{} services in {} teams, {written} deployments over a year, written in {:.1} s",
        args.services,
        args.teams,
        started.elapsed().as_secs_f64()
    );

    for (name, query) in [
        ("organisation", "days=365".to_string()),
        ("team", "team=team-0&days=365".to_string()),
        ("service", "service=svc-0&days=365".to_string()),
        ("organisation, 30 days", "days=30".to_string()),
    ] {
        let mut times = Vec::with_capacity(args.samples);
        let mut report = Value::Null;
        for _ in 0..args.samples {
            let started = Instant::now();
            report = send(&client, reqwest::Method::GET, &format!("{api}/dora?{query}"), None).await?;
            times.push(started.elapsed());
        }
        let deployments = &report["report"]["metrics"]["deploymentFrequency"]["deployments"];
        if deployments.is_null() {
            bail!("the {name} report counted no deployments: {report}");
        }
        times.sort();
        println!(
            "DORA {name:<22} p50 {:>8.1} ms  p95 {:>8.1} ms  ({deployments} deployments counted)",
            pct(&times, 0.5),
            pct(&times, 0.95)
        );
    }
    dashboard(args, &client, &api, now).await
}

/// A team's dashboard of eight widgets — numbers, a bar, a line, a table, a scorecard, an
/// initiative and a DORA panel — read as the team's members would.
async fn dashboard(args: &Args, client: &reqwest::Client, api: &str, now: i64) -> anyhow::Result<()> {
    let rule = |id: &str, level: &str, property: &str, operator: &str, value: Value| {
        json!({"identifier": id, "level": level, "query": {"combinator": "and",
            "rules": [{"property": property, "operator": operator, "value": value}]}})
    };
    let scorecard = json!({"identifier": "readiness", "rules": [
        rule("one", "Bronze", "replicas", ">=", json!(1)), rule("three", "Silver", "replicas", ">=", json!(3)),
        rule("gold", "Gold", "tier", "=", json!("gold"))]});
    post(client, &format!("{api}/blueprints/service/scorecards"), scorecard).await?;
    let initiative = json!({"identifier": "gold", "blueprint": "service", "owner": "team-0",
        "goal": {"scorecard": "readiness", "level": "Gold"},
        "startsAt": time(now - 30 * DAY_MS), "targetDate": time(now + 60 * DAY_MS)});
    post(client, &format!("{api}/initiatives"), initiative).await?;
    let mine =
        json!({"combinator": "and", "rules": [{"property": "$team", "operator": "containsAny", "value": ["team-0"]}]});
    let widgets = json!([
        {"type": "number", "title": "Services", "blueprint": "service", "query": mine},
        {"type": "number", "blueprint": "service", "query": mine, "function": "avg", "property": "replicas"},
        {"type": "bar", "blueprint": "service", "query": mine, "property": "tier"},
        {"type": "line", "blueprint": "service", "scorecard": "readiness", "level": "Gold", "team": "team-0"},
        {"type": "table", "blueprint": "service", "query": mine, "columns": ["$title", "tier", "replicas"]},
        {"type": "scorecard", "blueprint": "service", "scorecard": "readiness", "team": "team-0"},
        {"type": "initiative", "initiative": "gold", "team": "team-0"},
        {"type": "dora", "team": "team-0", "days": 30}
    ]);
    let url = format!("{api}/dashboards/teams/team-0");
    send(client, reqwest::Method::PUT, &url, Some(json!({"widgets": widgets}))).await?;
    let mut times = Vec::with_capacity(args.samples);
    let mut view = Value::Null;
    for _ in 0..args.samples {
        let started = Instant::now();
        view = send(client, reqwest::Method::GET, &url, None).await?;
        times.push(started.elapsed());
    }
    let failed: Vec<&Value> =
        view["widgets"].as_array().into_iter().flatten().filter(|w| !w["error"].is_null()).collect();
    if !failed.is_empty() || view["widgets"][0]["value"].is_null() {
        bail!("the dashboard's widgets failed: {failed:?}");
    }
    times.sort();
    println!(
        "team dashboard, 8 widgets    p50 {:>8.1} ms  p95 {:>8.1} ms  ({} services of team-0)",
        pct(&times, 0.5),
        pct(&times, 0.95),
        view["widgets"][0]["value"]
    );
    Ok(())
}

fn time(ms: i64) -> String {
    portolan_model::format_millis(ms)
}

async fn bulk(client: &reqwest::Client, api: &str, blueprint: &str, entities: Vec<Value>) -> anyhow::Result<()> {
    let url = format!("{api}/blueprints/{blueprint}/entities/bulk");
    for chunk in entities.chunks(1_000) {
        let answer = post(client, &url, json!({"entities": chunk})).await?;
        if answer["ok"] != true {
            bail!("some {blueprint} entities were not written: {answer}");
        }
    }
    Ok(())
}
