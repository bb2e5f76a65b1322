//! The catalog benchmark: starts a Portolan server on a fresh data directory, ingests generated
//! service entities through the bulk API, then times get-by-identifier and paged list requests,
//! sequentially over one keep-alive connection (the way the Backstage peer harness measures).
//!
//! `cargo run --release -p portolan --bin portolan-bench -- --entities 100000`

use std::sync::Arc;

// The allocator the `portolan` binary uses, so that the benchmark measures what users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Benchmark the Portolan catalog API")]
struct Args {
    /// Service entities to ingest.
    #[arg(long, default_value_t = 100_000)]
    entities: usize,
    /// Entities per bulk request (at most 1000).
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Timed requests per read measurement.
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// Data directory (default: a temporary directory, removed afterwards).
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    /// Benchmark PostgreSQL instead: the URL of an empty database.
    #[arg(long)]
    database_url: Option<String>,
}

/// A small deterministic generator, so every run ingests the same catalog.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.batch == 0 || args.batch > 1_000 {
        bail!("--batch must be between 1 and 1000");
    }
    let temp = tempfile::tempdir()?;
    let location = match (&args.database_url, &args.data) {
        (Some(url), _) => url.clone(),
        (None, Some(dir)) => dir.to_string_lossy().into_owned(),
        (None, None) => temp.path().to_string_lossy().into_owned(),
    };

    // The server gets its own runtime and threads; the client measures from a second runtime.
    let server_runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (base, token, _worker) = server_runtime.block_on(async {
        let store = portolan_store::open(&location).await?;
        let state = portolan_server::AppState::new(Arc::clone(&store)).await?;
        let token = state.identity.service_token("bench-admin", portolan_model::permission::Role::Admin).await?;
        let state_for_worker = state.clone();
        let router = portolan_server::router(
            state,
            &portolan_server::ServerOptions { body_limit: 16 * 1024 * 1024, ..Default::default() },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let worker =
            portolan_server::worker::Worker::start(state_for_worker, portolan_server::worker::DEFAULT_LEASE_MS);
        tokio::spawn(portolan_server::serve(listener, router, std::future::pending()));
        anyhow::Ok((base, token, worker))
    })?;
    let client_runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    client_runtime.block_on(run(&args, &base, &token))
}

/// A client that sends `token` with every request.
fn client_with(token: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    Ok(reqwest::Client::builder().pool_max_idle_per_host(1).default_headers(headers).build()?)
}

async fn run(args: &Args, base: &str, token: &str) -> anyhow::Result<()> {
    portolan_server::outbound::install_crypto();
    let client = client_with(token)?;
    let n = args.entities;
    let systems = (n / 50).max(1);
    let teams = (n / 500).max(1);
    setup(&client, base, systems, teams).await?;

    let mut rng = Lcg(42);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(args.batch);
    for i in 0..n {
        batch.push(service(i, systems, teams, &mut rng));
        if batch.len() == args.batch || i + 1 == n {
            let body = json!({ "entities": std::mem::take(&mut batch) });
            let response =
                client.post(format!("{base}/api/v1/blueprints/service/entities/bulk")).json(&body).send().await?;
            if response.status() != 200 {
                bail!("bulk ingest failed: {} {}", response.status(), response.text().await?);
            }
        }
    }
    let ingest = started.elapsed();
    let rate = n as f64 / ingest.as_secs_f64();

    let mut get = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let id = format!("svc-{:07}", rng.below(n));
        get.push(timed(&client, &format!("{base}/api/v1/blueprints/service/entities/{id}")).await?);
    }

    let mut list = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let position = json!({"b": "service", "i": format!("svc-{:07}", rng.below(n))});
        let cursor = base64_url(&position.to_string());
        list.push(
            timed(&client, &format!("{base}/api/v1/blueprints/service/entities?limit=100&cursor={cursor}")).await?,
        );
    }

    const LANGUAGES: [&str; 5] = ["Go", "Java", "Python", "Rust", "TypeScript"];
    let search_url = format!("{base}/api/v1/blueprints/service/entities/search");
    let mut equality = Vec::new();
    let mut related = Vec::new();
    let mut text = Vec::new();
    let mut team = Vec::new();
    for _ in 0..args.samples / 10 {
        let language = LANGUAGES[rng.below(5)];
        let rule = json!({"property": "language", "operator": "=", "value": language});
        equality.push(
            timed_post(&client, &search_url, &json!({"query": {"combinator": "and", "rules": [rule]}, "limit": 100}))
                .await?,
        );
        let system = json!({"operator": "relatedTo", "blueprint": "system", "value": format!("sys-{}", rng.below(systems)), "required": true});
        related.push(
            timed_post(
                &client,
                &search_url,
                &json!({"query": {"combinator": "and", "rules": [rule, system]}, "limit": 100}),
            )
            .await?,
        );
        let needle = format!("Service {}", rng.below(n));
        let contains = json!({"property": "$title", "operator": "contains", "value": needle});
        text.push(
            timed_post(
                &client,
                &search_url,
                &json!({"query": {"combinator": "and", "rules": [contains]}, "limit": 100}),
            )
            .await?,
        );
        let owned =
            json!({"property": "$team", "operator": "containsAny", "value": [format!("team-{}", rng.below(teams))]});
        team.push(
            timed_post(&client, &search_url, &json!({"query": {"combinator": "and", "rules": [owned]}, "limit": 100}))
                .await?,
        );
    }
    let (as_admin, ownership, condition) = authorisation_overhead(&client, base, args.samples / 10, &mut rng).await?;
    let pages = page_render_times(&client, base, args.samples / 10, (n, systems), &mut rng).await?;
    let mut facets = Vec::new();
    for _ in 0..5 {
        let body = json!({"function": "countBy", "blueprint": "service", "property": "language"});
        facets.push(timed_post(&client, &format!("{base}/api/v1/entities/aggregate"), &body).await?);
    }

    // Freshness: a new service in a system, until the system's aggregation counts it. The first
    // one also waits for the recomputes the ingest queued, and is not counted.
    let mut fresh = Vec::new();
    for i in 0..11 {
        let within = Duration::from_secs(if i == 0 { 600 } else { 30 });
        let system = format!("sys-{}", rng.below(systems));
        let url = format!("{base}/api/v1/blueprints/system/entities/{system}");
        let before: Value = client.get(&url).send().await?.json().await?;
        let count = before["entity"]["properties"]["serviceCount"].as_i64().unwrap_or(0);
        let mut extra = service(n + i, systems, teams, &mut rng);
        extra["relations"]["system"] = json!(system);
        let started = Instant::now();
        client.post(format!("{base}/api/v1/blueprints/service/entities")).json(&extra).send().await?;
        loop {
            let now: Value = client.get(&url).send().await?.json().await?;
            if now["entity"]["properties"]["serviceCount"].as_i64().unwrap_or(0) > count {
                break;
            }
            if started.elapsed() > within {
                bail!("the aggregation of {system} did not update within {} s", within.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if i == 0 {
            println!("(recomputes queued by the ingest done {:.1} s after it)", started.elapsed().as_secs_f64());
        } else {
            fresh.push(started.elapsed());
        }
    }

    println!("| measurement ({}) | value |", if args.database_url.is_some() { "PostgreSQL" } else { "SQLite" });
    println!("|---|---|");
    println!("| services ingested (bulk, {} per request; plus {teams} teams, {systems} systems) | {n} |", args.batch);
    println!("| ingest time | {:.2} s |", ingest.as_secs_f64());
    println!("| ingest rate | {rate:.0} entities/s |");
    let row = |name: &str, samples: &mut Vec<Duration>| {
        let (p50, p95, p99) = percentiles(samples);
        println!("| {name} p50 / p95 / p99 | {p50:.2} / {p95:.2} / {p99:.2} ms |");
    };
    row("get by identifier", &mut get);
    row("list page of 100 (cursor)", &mut list);
    row("(a) search: property equality, page of 100", &mut equality);
    row("(b) search: equality + relatedTo a system", &mut related);
    row("(c) search: title contains", &mut text);
    row("search: owned by one team", &mut team);
    for (name, samples) in [
        ("authz: language equality as admin (no filter)", as_admin),
        ("authz: same, member with read = condition (lifecycle ≠ deprecated)", condition),
        ("authz: same, member with read = owning team + condition", ownership),
    ] {
        row(name, &mut samples.clone());
    }
    row("(d) facets: countBy language", &mut facets);
    for (name, mut times) in pages {
        row(&format!("web: {name}"), &mut times);
    }
    row("change → aggregation recomputed", &mut fresh);
    if let Some(peak) = peak_rss_mib() {
        println!("| peak RSS (server and client, one process) | {peak:.0} MiB |");
    }
    Ok(())
}

/// Server time to render the portal's pages, as a signed-in admin with a session cookie: the
/// catalog table plain, sorted and filtered by a facet, its facet counts, and entity pages
/// (with their neighbourhood: parents and the entities that point at them).
async fn page_render_times(
    admin: &reqwest::Client,
    base: &str,
    samples: usize,
    (services, systems): (usize, usize),
    rng: &mut Lcg,
) -> anyhow::Result<Vec<(&'static str, Vec<Duration>)>> {
    let password = "bench page viewer password";
    let viewer = json!({"identifier": "bench-viewer", "role": "admin", "password": password});
    let made = admin.post(format!("{base}/api/v1/users")).json(&viewer).send().await?;
    if !made.status().is_success() {
        bail!("creating the page viewer failed: {}", made.text().await?);
    }
    let browser = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
    let login = json!({"username": "bench-viewer", "password": password});
    let signed = browser.post(format!("{base}/api/v1/auth/login")).json(&login).send().await?;
    let cookie = signed
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_string();
    let mut pages: Vec<(&'static str, Vec<Duration>)> = [
        "catalog table, 50 rows",
        "catalog table sorted by a property (desc)",
        "catalog table filtered by a facet",
        "catalog table's 5 facet counts (fetched by the page)",
        "entity page",
        "system page (about 50 services point at it)",
    ]
    .into_iter()
    .map(|name| (name, Vec::with_capacity(samples)))
    .collect();
    for _ in 0..samples {
        let urls = [
            format!("{base}/catalog/service"),
            format!("{base}/catalog/service?sort=language&order=desc"),
            format!("{base}/catalog/service?f.language=Rust"),
            format!("{base}/facets/service"),
            format!("{base}/catalog/service/svc-{:07}", rng.below(services)),
            format!("{base}/catalog/system/sys-{}", rng.below(systems)),
        ];
        for (url, (_, into)) in urls.iter().zip(pages.iter_mut()) {
            let started = Instant::now();
            let response = browser.get(url).header("cookie", &cookie).send().await?;
            let status = response.status();
            response.bytes().await?;
            if status != 200 {
                bail!("GET {url} answered {status}");
            }
            into.push(started.elapsed());
        }
    }
    Ok(pages)
}

/// The same search timed as the admin (nothing filtered) and as a member whose read grant is a
/// condition, alone and with team ownership: what authorisation adds to a search.
async fn authorisation_overhead(
    admin: &reqwest::Client,
    base: &str,
    samples: usize,
    rng: &mut Lcg,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>, Vec<Duration>)> {
    let member = json!({"identifier": "bench-member", "service": true, "teams": ["team-0", "team-1"]});
    let made = admin.post(format!("{base}/api/v1/users")).json(&member).send().await?;
    if !made.status().is_success() {
        bail!("creating the member failed: {}", made.text().await?);
    }
    let token: Value = admin
        .post(format!("{base}/api/v1/tokens"))
        .json(&json!({"name": "bench", "user": "bench-member"}))
        .send()
        .await?
        .json()
        .await?;
    let member = client_with(token["token"].as_str().context("a member token")?)?;
    let live =
        json!({"combinator": "and", "rules": [{"property": "lifecycle", "operator": "!=", "value": "deprecated"}]});
    let grants = [
        json!({"read": {"roles": ["member"], "condition": live}}),
        json!({"read": {"ownedByTeam": true, "condition": live}}),
    ];
    let url = format!("{base}/api/v1/blueprints/service/entities/search");
    let permissions = format!("{base}/api/v1/blueprints/service/permissions");
    const LANGUAGES: [&str; 5] = ["Go", "Java", "Python", "Rust", "TypeScript"];
    let mut timings = [Vec::new(), Vec::new(), Vec::new()];
    for (round, grant) in grants.iter().enumerate() {
        let set = admin.put(&permissions).json(grant).send().await?;
        if !set.status().is_success() {
            bail!("setting the read grant failed: {}", set.text().await?);
        }
        for _ in 0..samples {
            let rule = json!({"property": "language", "operator": "=", "value": LANGUAGES[rng.below(5)]});
            let body = json!({"query": {"combinator": "and", "rules": [rule]}, "limit": 100});
            if round == 0 {
                timings[0].push(timed_post(admin, &url, &body).await?);
            }
            timings[round + 1].push(timed_post(&member, &url, &body).await?);
        }
    }
    admin.put(&permissions).json(&json!({})).send().await?;
    let [as_admin, condition, ownership] = timings;
    Ok((as_admin, ownership, condition))
}

async fn timed_post(client: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let response = client.post(url).json(body).send().await?;
    let status = response.status();
    let text = response.text().await?;
    if status != 200 {
        bail!("POST {url} answered {status}: {text}");
    }
    Ok(started.elapsed())
}

async fn setup(client: &reqwest::Client, base: &str, systems: usize, teams: usize) -> anyhow::Result<()> {
    let blueprints = [
        json!({"identifier": "system", "title": "System", "schema": {"properties": {"lifecycle": {"type": "string", "enum": ["production", "experimental", "deprecated"]}}}}),
        json!({
            "identifier": "service",
            "title": "Service",
            "schema": {
                "properties": {
                    "language": {"type": "string", "enum": ["Go", "Java", "Python", "Rust", "TypeScript"]},
                    "lifecycle": {"type": "string", "enum": ["production", "experimental", "deprecated"]},
                    "tier": {"type": "string", "enum": ["tier-1", "tier-2", "tier-3"]},
                    "repository": {"type": "string", "format": "url"},
                    "replicas": {"type": "number", "minimum": 0, "maximum": 100},
                    "onCall": {"type": "string", "format": "user"}
                },
                "required": ["language", "lifecycle"]
            },
            "relations": {
                "system": {"target": "system", "required": true},
                "dependsOn": {"target": "service", "many": true}
            }
        }),
    ];
    for blueprint in blueprints {
        let response = client.post(format!("{base}/api/v1/blueprints")).json(&blueprint).send().await?;
        if !response.status().is_success() {
            bail!("creating a blueprint failed: {}", response.text().await?);
        }
    }
    let computed = json!({"aggregationProperties": {"serviceCount": {"target": "service", "relation": "system",
        "calculationSpec": {"calculationBy": "entities", "func": "count"}}}});
    let scorecard = json!({"identifier": "readiness", "rules": [
        {"identifier": "replicated", "level": "Silver", "query": {"combinator": "and", "rules": [{"property": "replicas", "operator": ">=", "value": 2}]}},
        {"identifier": "tier-1", "level": "Gold", "query": {"combinator": "and", "rules": [{"property": "tier", "operator": "=", "value": "tier-1"}]}}]});
    for (method, url, body) in [
        (reqwest::Method::PATCH, format!("{base}/api/v1/blueprints/system"), computed),
        (reqwest::Method::POST, format!("{base}/api/v1/blueprints/service/scorecards"), scorecard),
    ] {
        let response = client.request(method, &url).json(&body).send().await?;
        if !response.status().is_success() {
            bail!("{url} failed: {}", response.text().await?);
        }
    }
    let team_docs: Vec<Value> =
        (0..teams).map(|t| json!({"identifier": format!("team-{t}"), "title": format!("Team {t}")})).collect();
    let system_docs: Vec<Value> = (0..systems)
        .map(|s| json!({"identifier": format!("sys-{s}"), "title": format!("System {s}"), "properties": {"lifecycle": "production"}}))
        .collect();
    for (blueprint, docs) in [("_team", team_docs), ("system", system_docs)] {
        for chunk in docs.chunks(1_000) {
            let response = client
                .post(format!("{base}/api/v1/blueprints/{blueprint}/entities/bulk"))
                .json(&json!({"entities": chunk}))
                .send()
                .await
                .context("bulk setup")?;
            if response.status() != 200 {
                bail!("setup of {blueprint} failed: {}", response.text().await?);
            }
        }
    }
    Ok(())
}

fn service(i: usize, systems: usize, teams: usize, rng: &mut Lcg) -> Value {
    const LANGUAGES: [&str; 5] = ["Go", "Java", "Python", "Rust", "TypeScript"];
    const LIFECYCLES: [&str; 3] = ["production", "experimental", "deprecated"];
    let depends: Vec<String> =
        if i > 2 { (0..2).map(|_| format!("svc-{:07}", rng.below(i))).collect() } else { vec![] };
    let mut depends_unique = depends;
    depends_unique.dedup();
    json!({
        "identifier": format!("svc-{i:07}"),
        "title": format!("Service {i}"),
        "team": [format!("team-{}", rng.below(teams))],
        "properties": {
            "language": LANGUAGES[rng.below(5)],
            "lifecycle": LIFECYCLES[rng.below(3)],
            "tier": format!("tier-{}", 1 + rng.below(3)),
            "repository": format!("https://git.example.com/org/svc-{i}"),
            "replicas": rng.below(20),
            "onCall": format!("user-{}@example.com", rng.below(1000))
        },
        "relations": {"system": format!("sys-{}", rng.below(systems)), "dependsOn": depends_unique}
    })
}

async fn timed(client: &reqwest::Client, url: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let response = client.get(url).send().await?;
    let status = response.status();
    response.bytes().await?;
    if status != 200 {
        bail!("GET {url} answered {status}");
    }
    Ok(started.elapsed())
}

fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(index).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN)
    };
    (at(0.50), at(0.95), at(0.99))
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
