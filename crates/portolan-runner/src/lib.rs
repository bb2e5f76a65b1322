//! `portolan runner`: a pull-based agent that lives next to the systems it changes. It claims runs
//! from the server over HTTP(S) by long-poll, runs the program its own configuration gives for the
//! task the action names (never a command line from the server) with the payload as JSON on
//! stdin, streams stdout and stderr into the run's log, heartbeats its lease, and reports the exit
//! code as the run's result. It only ever connects out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The server's base URL, e.g. `https://portal.example.com`.
    pub server: String,
    /// A runner token (`plt_...`).
    pub token: String,
    /// Claim only runs needing these labels (all of the token's when empty).
    pub labels: Vec<String>,
    /// Runs worked on at once.
    pub concurrency: usize,
    /// The tasks this runner will run, by name: the program and its arguments (no shell). Whoever
    /// operates the runner decides these; an action only picks one by name.
    pub tasks: BTreeMap<String, Vec<String>>,
    /// Where commands run (the runner's directory when absent).
    pub work_dir: Option<PathBuf>,
    /// Whether commands see the runner's own environment; when false they see only `env` and
    /// the run's `PORTOLAN_*` variables.
    pub inherit_env: bool,
    /// Environment variables set for commands.
    pub env: Vec<(String, String)>,
}

/// Reads `NAME=PROGRAM [ARG...]` (arguments split at whitespace) into a task.
pub fn parse_task(spec: &str) -> Result<(String, Vec<String>), String> {
    let (name, command) = spec.split_once('=').ok_or_else(|| format!("'{spec}' is not NAME=PROGRAM [ARG...]"))?;
    let name = name.trim();
    portolan_model::action::check_task_name(name)?;
    let command: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    if command.is_empty() {
        return Err(format!("task '{name}' names no program"));
    }
    Ok((name.to_string(), command))
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("the server refused the runner token: {0}")]
    Unauthorized(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Claim {
    run: ClaimedRun,
    task: String,
    payload: Value,
    run_token: String,
    lease_ms: u64,
}

#[derive(Deserialize)]
struct ClaimedRun {
    id: String,
    attempt: i64,
}

/// Lines sent per log request, and how long lines wait to be batched.
const LOG_BATCH: usize = 200;
const LOG_FLUSH: Duration = Duration::from_millis(200);
const CLAIM_WAIT_SECONDS: u64 = 25;

/// Runs until `stop` turns true; runs in hand are finished first.
pub async fn run(config: RunnerConfig, stop: watch::Receiver<bool>) -> Result<(), RunnerError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .user_agent(concat!("portolan-runner/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| RunnerError::Client(e.to_string()))?;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.concurrency.max(1) {
        workers.spawn(work(client.clone(), config.clone(), stop.clone()));
    }
    let mut result = Ok(());
    while let Some(done) = workers.join_next().await {
        if let Ok(Err(err)) = done {
            result = Err(err);
        }
    }
    result
}

async fn work(
    client: reqwest::Client,
    config: RunnerConfig,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RunnerError> {
    let server = config.server.trim_end_matches('/').to_string();
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let request = client
            .post(format!("{server}/api/v1/runners/claim"))
            .bearer_auth(&config.token)
            .timeout(Duration::from_secs(CLAIM_WAIT_SECONDS + 15))
            .json(&json!({"labels": config.labels, "waitSeconds": CLAIM_WAIT_SECONDS}))
            .send();
        let response = tokio::select! {
            response = request => response,
            _ = stop.changed() => return Ok(()),
        };
        let claim = match response {
            Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => continue,
            Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                return Err(RunnerError::Unauthorized(r.text().await.unwrap_or_default()));
            }
            Ok(r) if r.status().is_success() => {
                match r.json::<Value>().await.map(|v| serde_json::from_value::<Claim>(v["claim"].clone())) {
                    Ok(Ok(claim)) => claim,
                    other => {
                        tracing::warn!("the server's claim answer is unreadable: {:?}", other.err());
                        continue;
                    }
                }
            }
            Ok(r) => {
                tracing::warn!(status = %r.status(), "claim refused; retrying in {} s", backoff.as_secs());
                wait(&mut stop, &mut backoff).await;
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err.without_url(), "cannot reach the server; retrying in {} s", backoff.as_secs());
                wait(&mut stop, &mut backoff).await;
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        execute(&client, &server, &config, claim).await;
    }
}

async fn wait(stop: &mut watch::Receiver<bool>, backoff: &mut Duration) {
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = stop.changed() => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(30));
}

/// Runs one claimed run to its end and reports the result.
async fn execute(client: &reqwest::Client, server: &str, config: &RunnerConfig, claim: Claim) {
    let run_url = format!("{server}/api/v1/actions/runs/{}", claim.run.id);
    let reporter = Reporter { client: client.clone(), run_url: run_url.clone(), token: claim.run_token.clone() };
    let Some((program, args)) = config.tasks.get(&claim.task).and_then(|command| command.split_first()) else {
        let known: Vec<&str> = config.tasks.keys().map(String::as_str).collect();
        let message = format!(
            "this runner has no task '{}' (its operator configured: {})",
            claim.task,
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        );
        reporter.finish(false, &message, None).await;
        return;
    };
    let mut command = tokio::process::Command::new(program);
    if !config.inherit_env {
        command.env_clear();
    }
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .env_remove("PORTOLAN_RUNNER_TOKEN")
        .env("PORTOLAN_TASK", &claim.task)
        .env("PORTOLAN_URL", server)
        .env("PORTOLAN_RUN_ID", &claim.run.id)
        .env("PORTOLAN_RUN_TOKEN", &claim.run_token);
    if let Some(dir) = &config.work_dir {
        command.current_dir(dir);
    }
    command.envs(config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            reporter.finish(false, &format!("cannot start '{program}': {err}"), None).await;
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let payload = serde_json::to_vec(&claim.payload).unwrap_or_default();
        tokio::spawn(async move {
            let _ = stdin.write_all(&payload).await;
            let _ = stdin.shutdown().await;
        });
    }
    let (lines, received) = mpsc::channel::<(String, String)>(1_024);
    for (stream, reader) in [
        ("stdout", child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>)),
        ("stderr", child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>)),
    ] {
        let Some(reader) = reader else { continue };
        let lines = lines.clone();
        tokio::spawn(async move {
            // Bytes, not lines of text: output that is not UTF-8 must not stop the reading (the
            // command would block on a full pipe).
            let mut reader = BufReader::new(reader);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).await.is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']).to_string();
                line.clear();
                if lines.send((stream.to_string(), text)).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(lines);
    let shipping = tokio::spawn(ship_logs(reporter.clone(), received));
    let (lost_tx, mut lost) = watch::channel(false);
    let heartbeat = tokio::spawn(heartbeat(
        client.clone(),
        format!("{server}/api/v1/runners/runs/{}/heartbeat", claim.run.id),
        config.token.clone(),
        claim.run.attempt,
        Duration::from_millis((claim.lease_ms / 3).max(100)),
        lost_tx,
    ));
    let status = tokio::select! {
        status = child.wait() => Some(status),
        _ = lost.wait_for(|l| *l) => None,
    };
    // The lease is kept while the last lines go out; a process the command left behind holding
    // its output open is not waited for.
    let _ = tokio::time::timeout(Duration::from_secs(30), shipping).await;
    heartbeat.abort();
    match status {
        // The lease was lost: the run is someone else's now; stop and report nothing.
        None => {
            let _ = child.kill().await;
            tracing::warn!(run = %claim.run.id, "lost the lease of the run; stopped its command");
        }
        Some(Ok(status)) if status.success() => reporter.finish(true, "the command exited with 0", None).await,
        Some(Ok(status)) => {
            let label = match status.code() {
                Some(code) => format!("exit code {code}"),
                None => "killed by a signal".into(),
            };
            reporter.finish(false, &format!("the command failed ({label})"), Some(label)).await
        }
        Some(Err(err)) => reporter.finish(false, &format!("cannot wait for the command: {err}"), None).await,
    }
}

async fn heartbeat(
    client: reqwest::Client,
    url: String,
    token: String,
    attempt: i64,
    every: Duration,
    lost: watch::Sender<bool>,
) {
    loop {
        tokio::time::sleep(every).await;
        let beat = client.post(&url).bearer_auth(&token).timeout(every * 2).json(&json!({"attempt": attempt}));
        match beat.send().await {
            Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => {
                let _ = lost.send(true);
                return;
            }
            // A missed heartbeat is retried at the next tick; the lease outlives a few of them.
            _ => {}
        }
    }
}

async fn ship_logs(reporter: Reporter, mut received: mpsc::Receiver<(String, String)>) {
    let mut batch = Vec::new();
    loop {
        let next = tokio::time::timeout(LOG_FLUSH, received.recv()).await;
        let (closed, idle) = (matches!(next, Ok(None)), next.is_err());
        if let Ok(Some((stream, message))) = next {
            batch.push(json!({"stream": stream, "message": message}));
        }
        if !batch.is_empty() && (closed || idle || batch.len() >= LOG_BATCH) {
            reporter.logs(std::mem::take(&mut batch)).await;
        }
        if closed {
            return;
        }
    }
}

#[derive(Clone)]
struct Reporter {
    client: reqwest::Client,
    run_url: String,
    token: String,
}

impl Reporter {
    async fn logs(&self, lines: Vec<Value>) {
        let sent = self
            .client
            .post(format!("{}/logs", self.run_url))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30))
            .json(&json!({"lines": lines}))
            .send()
            .await;
        if let Err(err) = sent {
            tracing::warn!(error = %err.without_url(), "cannot send log lines");
        }
    }

    /// Reports the result; a run the command already ended itself (409) is left as it is.
    async fn finish(&self, success: bool, summary: &str, label: Option<String>) {
        // On success the command's own summary (if it reported one) stands.
        let mut body =
            if success { json!({"status": "SUCCESS"}) } else { json!({"status": "FAILURE", "summary": summary}) };
        if let Some(label) = label {
            body["statusLabel"] = label.into();
        }
        for attempt in 0..5u32 {
            let sent = self
                .client
                .patch(&self.run_url)
                .bearer_auth(&self.token)
                .timeout(Duration::from_secs(30))
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::CONFLICT => return,
                Ok(r) if r.status().is_client_error() => {
                    tracing::warn!(status = %r.status(), "the server refused the result");
                    return;
                }
                _ => tokio::time::sleep(Duration::from_secs(1 << attempt)).await,
            }
        }
        tracing::warn!("cannot report the result; the run's lease will expire and the server decides");
    }
}
