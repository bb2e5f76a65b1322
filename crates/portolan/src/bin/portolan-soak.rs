//! The soak: a mixed workload against `portolan serve` at a steady rate for a long time, to show
//! that latency, memory and open files stay flat.
//!
//! It starts the `portolan` binary beside this one (a separate process, so that its memory and
//! files are its own) on a fresh data directory, or on the empty PostgreSQL database
//! `--database-url`, and a webhook receiver. Then it sends `--rate` requests a second, each on a
//! task of its own so that a slow answer does not slow the rate: half entity reads, a fifth
//! searches, and the rest writes, action runs (each delivered to the receiver) and event streams
//! held open for two seconds. Every `--every` seconds it prints each kind's latency percentiles
//! and errors, the runs delivered, and the server's resident memory and open files.
//!
//! It fails if a request failed, a run was not delivered, the server's memory grew past its bound
//! after the first interval (the warm-up), or it holds more open files once the load has stopped
//! than before it started (beyond a bound): files held under load are not a leak, files kept
//! after it are.
//!
//! `scripts/soak.sh 30 200`: 30 minutes at 200 requests/s.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_server::pct;
use clap::Parser;
use serde_json::{Value, json};

// Its request helpers and webhook receiver; the soak starts the server as a process of its own.
#[allow(dead_code)]
#[path = "../bench_server.rs"]
mod bench_server;

#[derive(Parser)]
#[command(about = "Soak Portolan: a mixed workload at a steady rate, with latency, memory and open files over time")]
struct Args {
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Requests per second, all kinds together.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Seconds between reports.
    #[arg(long, default_value_t = 60)]
    every: u64,
    /// The most the server's resident memory may grow after the first report, in MiB.
    #[arg(long, default_value_t = 64)]
    max_rss_growth_mib: u64,
    /// The most open files the server may hold once the load has stopped, beyond those it held
    /// before it started. Some stay for a while by design: idle connections of its webhook
    /// client and its database pool. A leak at this rate for this long would be thousands.
    #[arg(long, default_value_t = 64)]
    max_fd_growth: u64,
    /// Soak PostgreSQL instead: the URL of an empty database.
    #[arg(long)]
    database_url: Option<String>,
    /// The `portolan` binary (by default the one beside this program).
    #[arg(long)]
    binary: Option<PathBuf>,
}

/// The entities the workload reads and writes.
const ITEMS: u64 = 1_000;
/// How long a stream is held open.
const STREAM_HOLD: Duration = Duration::from_secs(2);

#[derive(Clone, Copy)]
enum Kind {
    Read,
    Search,
    Write,
    Run,
    Stream,
}

const KINDS: [(Kind, &str); 5] = [
    (Kind::Read, "read"),
    (Kind::Search, "search"),
    (Kind::Write, "write"),
    (Kind::Run, "run"),
    (Kind::Stream, "stream"),
];

impl Kind {
    /// Half reads, a fifth searches, 15% writes, 10% runs, 5% streams.
    fn for_draw(draw: u64) -> Kind {
        match draw % 100 {
            0..50 => Kind::Read,
            50..70 => Kind::Search,
            70..85 => Kind::Write,
            85..95 => Kind::Run,
            _ => Kind::Stream,
        }
    }
}

/// What one interval saw: latencies and errors per kind (a stream's latency is the time to its
/// first change event).
#[derive(Default)]
struct Tally {
    latencies: [Vec<Duration>; 5],
    errors: [u64; 5],
    first_error: Option<String>,
}

/// When each run was triggered and when its delivery arrived, by run id.
#[derive(Default)]
struct Deliveries {
    triggered: HashMap<String, Instant>,
    delivered: HashMap<String, Instant>,
}

struct Shared {
    client: reqwest::Client,
    base: String,
    tally: Mutex<Tally>,
    deliveries: Mutex<Deliveries>,
}

/// The server process, stopped when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe()?.with_file_name("portolan"),
    };
    let data = tempfile::tempdir()?;
    let location = match &args.database_url {
        Some(url) => vec!["--database-url".to_string(), url.clone()],
        None => vec!["--data".to_string(), data.path().to_string_lossy().into_owned()],
    };
    let server = start(&binary, &location)?;
    let token = admin_token(&binary, &location)?;
    println!("server {} (pid {}) on {}", binary.display(), server.child.id(), server.base);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let verdict = runtime.block_on(soak(&args, &server, &token));
    drop(server);
    verdict
}

/// An admin service account's token, made with `portolan admin` beside the running server.
fn admin_token(binary: &PathBuf, location: &[String]) -> anyhow::Result<String> {
    let admin = |command: &[&str]| {
        let output = Command::new(binary).arg("admin").args(location).args(command).output()?;
        if !output.status.success() {
            bail!("portolan admin {command:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    admin(&["create-user", "soak", "--role", "admin", "--service"])?;
    admin(&["create-token", "--user", "soak", "--name", "soak"])
}

/// Starts `portolan serve` on a free loopback port and waits for its address.
fn start(binary: &PathBuf, location: &[String]) -> anyhow::Result<Server> {
    let mut child = Command::new(binary)
        .arg("serve")
        .args(location)
        .args(["--listen", "127.0.0.1:0"])
        .env("PORTOLAN_WEBHOOK_ALLOW_PRIVATE", "true")
        // One client sends everything: the per-client limits would measure themselves.
        .env("PORTOLAN_RATE_LIMIT_PER_MINUTE", "0")
        .env("PORTOLAN_MAX_CONNECTIONS_PER_ADDRESS", "4096")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let (address, heard) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    // Both streams are read to their end, so the server never blocks on a full pipe.
    for stream in [stdout, stderr].into_iter().flatten() {
        let address = address.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let rest = &line[at + "listening on ".len()..];
                    let _ = address
                        .send(rest.split(|c: char| c.is_whitespace() || c == '"').next().unwrap_or("").to_string());
                }
            }
        });
    }
    let base = heard.recv_timeout(Duration::from_secs(60)).context("the server did not say where it listens")?;
    Ok(Server { child, base })
}

async fn soak(args: &Args, server: &Server, token: &str) -> anyhow::Result<()> {
    portolan_server::outbound::install_crypto();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    // Idle connections close within the drain at the end, so that the open files counted then
    // are the server's own.
    let client = (reqwest::Client::builder().default_headers(headers))
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(2))
        .build()?;
    let shared =
        Arc::new(Shared { client, base: server.base.clone(), tally: Mutex::default(), deliveries: Mutex::default() });
    let noted = Arc::clone(&shared);
    let hook = bench_server::webhook_receiver(move |run, at| {
        if let Ok(mut deliveries) = noted.deliveries.lock() {
            deliveries.delivered.entry(run).or_insert(at);
        }
    })
    .await?;
    set_up(&shared, &hook).await?;

    let pid = server.child.id();
    let idle_files = open_files(pid);
    println!(
        "{:>6} {:>7} {:>6}  {:>13} {:>13} {:>13} {:>13} {:>13}  {:>9} {:>8} {:>5}",
        "minute", "req/s", "errors", "read p50/p99", "search", "write", "run", "stream", "delivered", "rss MiB", "fds"
    );
    let started = Instant::now();
    let until = started + Duration::from_secs(args.minutes * 60);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate.max(1)));
    let (mut next_report, mut last_report) = (started + Duration::from_secs(args.every), started);
    let (mut draw, mut first_memory) = (0x2545_f491_4f6c_dd1d_u64, None);
    let mut failures = Vec::new();
    while Instant::now() < until {
        tick.tick().await;
        // xorshift: the same sequence of kinds and items on every run.
        draw ^= draw << 13;
        draw ^= draw >> 7;
        draw ^= draw << 17;
        let mut kind = Kind::for_draw(draw);
        // A stream opened at the very end would wait for writes that are no longer sent.
        if matches!(kind, Kind::Stream) && until.saturating_duration_since(Instant::now()) < STREAM_HOLD * 2 {
            kind = Kind::Read;
        }
        let request = Arc::clone(&shared);
        tokio::spawn(async move { one(&request, kind, draw >> 8).await });
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(args.every);
            let (memory, files) = (rss_mib(pid), open_files(pid));
            report(&shared, started, &mut last_report, memory, files, &mut failures);
            first_memory.get_or_insert(memory);
        }
    }
    // Runs triggered in the last moments are delivered within a few seconds, or are lost.
    tokio::time::sleep(STREAM_HOLD + Duration::from_secs(5)).await;
    let (memory, files) = (rss_mib(pid), open_files(pid));
    report(&shared, started, &mut last_report, memory, files, &mut failures);
    let deliveries = shared.deliveries.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let lost = deliveries.triggered.keys().filter(|id| !deliveries.delivered.contains_key(*id)).count();
    let mut delivery: Vec<Duration> = (deliveries.triggered.iter())
        .filter_map(|(id, sent)| Some(deliveries.delivered.get(id)?.duration_since(*sent)))
        .collect();
    delivery.sort();
    let start_memory = first_memory.unwrap_or(memory);
    println!(
        "runs triggered {}, delivered {} (trigger -> webhook p50 {:.1} ms, p99 {:.1} ms), lost {lost}",
        deliveries.triggered.len(),
        deliveries.delivered.len(),
        pct(&delivery, 0.50),
        pct(&delivery, 0.99),
    );
    println!(
        "memory {start_memory} -> {memory} MiB (first report -> end), open files {idle_files} -> {files} (before -> after the load)"
    );
    if lost > 0 {
        failures.push(format!("{lost} runs were not delivered"));
    }
    if memory > start_memory + args.max_rss_growth_mib {
        failures.push(format!("memory grew by {} MiB (bound {})", memory - start_memory, args.max_rss_growth_mib));
    }
    if files > idle_files + args.max_fd_growth {
        failures.push(format!("open files grew by {} (bound {})", files - idle_files, args.max_fd_growth));
    }
    if failures.is_empty() {
        println!("passed");
        Ok(())
    } else {
        bail!("failed: {}", failures.join("; "))
    }
}

/// The blueprint the workload uses, its entities, and an action whose runs the receiver gets.
async fn set_up(shared: &Shared, hook: &str) -> anyhow::Result<()> {
    let blueprint = json!({"identifier": "soak_item", "title": "Soak item", "schema": {"properties": {
        "n": {"type": "number"}, "label": {"type": "string"}}}});
    send(shared, reqwest::Method::POST, "/api/v1/blueprints", Some(blueprint)).await?;
    for chunk in 0..ITEMS / 500 {
        let entities: Vec<Value> = (chunk * 500..(chunk + 1) * 500)
            .map(|k| json!({"identifier": format!("item-{k}"), "properties": {"n": k, "label": format!("item {k}")}}))
            .collect();
        let url = "/api/v1/blueprints/soak_item/entities/bulk?upsert=true";
        send(shared, reqwest::Method::POST, url, Some(json!({"entities": entities}))).await?;
    }
    let secret = json!({"name": "soak-hook", "value": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"});
    send(shared, reqwest::Method::POST, "/api/v1/secrets", Some(secret)).await?;
    let action = json!({
        "identifier": "soak_notify",
        "trigger": {"type": "self-service", "operation": "CREATE", "userInputs": {"properties": {"n": {"type": "number"}}}},
        "invocationMethod": {"type": "WEBHOOK", "url": hook, "signingSecret": "soak-hook", "synchronized": true,
                             "body": {"n": "{{ .inputs.n }}", "run": "{{ .run.id }}"}}
    });
    send(shared, reqwest::Method::POST, "/api/v1/actions", Some(action)).await?;
    Ok(())
}

/// One request of `kind`, timed and tallied.
async fn one(shared: &Shared, kind: Kind, draw: u64) {
    let item = format!("item-{}", draw % ITEMS);
    let sent = Instant::now();
    let outcome = match kind {
        Kind::Read => {
            let url = format!("/api/v1/blueprints/soak_item/entities/{item}");
            send(shared, reqwest::Method::GET, &url, None).await.map(|_| sent.elapsed())
        }
        Kind::Search => {
            let query = json!({"query": {"combinator": "and", "rules": [
                {"property": "n", "operator": ">=", "value": draw % ITEMS}]}, "limit": 20});
            let url = "/api/v1/blueprints/soak_item/entities/search";
            send(shared, reqwest::Method::POST, url, Some(query)).await.map(|_| sent.elapsed())
        }
        Kind::Write => {
            let entity =
                json!({"identifier": item, "properties": {"n": draw % 100_000, "label": format!("written {draw}")}});
            let url = "/api/v1/blueprints/soak_item/entities?upsert=true";
            send(shared, reqwest::Method::POST, url, Some(entity)).await.map(|_| sent.elapsed())
        }
        Kind::Run => trigger(shared, sent).await,
        Kind::Stream => stream(shared, sent).await,
    };
    let Ok(mut tally) = shared.tally.lock() else { return };
    match outcome {
        Ok(latency) => tally.latencies[kind as usize].push(latency),
        Err(error) => {
            tally.errors[kind as usize] += 1;
            tally.first_error.get_or_insert_with(|| format!("{error:#}"));
        }
    }
}

async fn trigger(shared: &Shared, sent: Instant) -> anyhow::Result<Duration> {
    let body = json!({"properties": {"n": 1}});
    let answer = send(shared, reqwest::Method::POST, "/api/v1/actions/soak_notify/runs", Some(body)).await?;
    let latency = sent.elapsed();
    let id = answer.pointer("/run/id").and_then(Value::as_str).context("a run id")?.to_string();
    if let Ok(mut deliveries) = shared.deliveries.lock() {
        deliveries.triggered.insert(id, sent);
    }
    Ok(latency)
}

/// Opens the event stream of the workload's blueprint: the time to the first change event, after
/// which it is held open (and read) for [`STREAM_HOLD`].
async fn stream(shared: &Shared, sent: Instant) -> anyhow::Result<Duration> {
    let url = format!("{}/api/v1/events?blueprint=soak_item", shared.base);
    let mut response = shared.client.get(url).send().await?.error_for_status()?;
    let mut first_event = None;
    let mut seen = String::new();
    while sent.elapsed() < STREAM_HOLD {
        let Ok(chunk) = tokio::time::timeout(STREAM_HOLD.saturating_sub(sent.elapsed()), response.chunk()).await else {
            break;
        };
        let Some(chunk) = chunk? else { bail!("the stream ended") };
        if first_event.is_none() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: entity.") {
                first_event = Some(sent.elapsed());
            }
        }
    }
    first_event.context("no change event within the hold, while writes go on")
}

/// One request to the server: its JSON answer, or an error naming the status and answer.
async fn send(shared: &Shared, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    bench_server::send(&shared.client, method, &format!("{}{path}", shared.base), body).await
}

/// Prints the interval's line and starts the next; an interval with errors adds a failure.
fn report(shared: &Shared, started: Instant, since: &mut Instant, memory: u64, files: u64, failures: &mut Vec<String>) {
    let Ok(mut tally) = shared.tally.lock() else { return };
    let tally = std::mem::take(&mut *tally);
    let seconds = std::mem::replace(since, Instant::now()).elapsed().as_secs_f64();
    let minute = started.elapsed().as_secs_f64() / 60.0;
    let (count, errors): (usize, u64) = (tally.latencies.iter().map(Vec::len).sum(), tally.errors.iter().sum());
    let cells: Vec<String> = KINDS
        .iter()
        .map(|(kind, _)| {
            let mut latencies = tally.latencies[*kind as usize].clone();
            latencies.sort();
            format!("{:.1}/{:.1}", pct(&latencies, 0.50), pct(&latencies, 0.99))
        })
        .collect();
    let delivered = shared.deliveries.lock().map(|d| d.delivered.len()).unwrap_or(0);
    println!(
        "{minute:>6.1} {:>7.1} {errors:>6}  {:>13} {:>13} {:>13} {:>13} {:>13}  {delivered:>9} {memory:>8} {files:>5}",
        (count as u64 + errors) as f64 / seconds,
        cells[0],
        cells[1],
        cells[2],
        cells[3],
        cells[4],
    );
    if let Some(error) = tally.first_error {
        let kinds: Vec<String> = KINDS
            .iter()
            .filter(|(kind, _)| tally.errors[*kind as usize] > 0)
            .map(|(kind, name)| format!("{} {name}", tally.errors[*kind as usize]))
            .collect();
        failures.push(format!("at minute {minute:.1}: {} failed, the first: {error}", kinds.join(", ")));
    }
}

/// The process's resident memory, in MiB (`VmRSS` in `/proc/PID/status`).
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    kib / 1024
}

/// The process's open file descriptors (sockets included).
fn open_files(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|entries| entries.count() as u64).unwrap_or(0)
}
