//! Runs through the real binaries: `portolan runner` processes that run their operator's tasks
//! and die, and the crash suite: servers and runners killed with SIGKILL again and again in the
//! middle of their work.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Server;

async fn send(method: reqwest::Method, url: &str, body: Value) -> (u16, Value) {
    let response = crate::http().request(method, url).json(&body).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    send(reqwest::Method::POST, url, body).await
}

struct RunnerProcess(Child);

impl RunnerProcess {
    /// A runner with the tasks of `tasks_file` (TOML: `NAME = ["PROGRAM", "ARG", ...]`).
    fn start(base: &str, token: &str, labels: &str, tasks_file: &std::path::Path) -> RunnerProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_portolan"))
            .args(["runner", "--server", base, "--labels", labels, "--tasks-file"])
            .arg(tasks_file)
            .env("PORTOLAN_RUNNER_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("runner starts");
        RunnerProcess(child)
    }

    /// SIGKILL: the runner dies without a word, as a machine that loses power.
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RunnerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

async fn run_until(base: &str, id: &str, within: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (_, body) = crate::get_json(&format!("{base}/api/v1/actions/runs/{id}")).await;
        if check(&body["run"]) {
            return body["run"].clone();
        }
        assert!(started.elapsed() < within, "run {id} did not get there in {within:?}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ended(run: &Value) -> bool {
    matches!(run["status"].as_str(), Some("SUCCESS" | "FAILURE" | "CANCELLED" | "TIMED_OUT" | "DECLINED"))
}

async fn runner_action(base: &str, identifier: &str, labels: &[&str], task: &str) {
    let action = json!({
        "identifier": identifier,
        "trigger": {"type": "self-service", "operation": "CREATE",
                    "userInputs": {"properties": {"name": {"type": "string"}}}},
        "invocationMethod": {"type": "RUNNER", "labels": labels, "task": task, "maxAttempts": 2,
                             "payload": {"name": "{{ .inputs.name }}"}}
    });
    let (status, body) = post(&format!("{base}/api/v1/actions"), action).await;
    assert_eq!(status, 201, "{body}");
}

async fn runner_token(base: &str, labels: &[&str]) -> String {
    let (status, body) = post(&format!("{base}/api/v1/runners/tokens"), json!({"name": "e2e", "labels": labels})).await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().expect("token").to_string()
}

async fn start_run(base: &str, action: &str, name: &str) -> String {
    let (status, body) =
        post(&format!("{base}/api/v1/actions/{action}/runs"), json!({"properties": {"name": name}})).await;
    assert_eq!(status, 202, "{body}");
    body["run"]["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn the_runner_runs_commands_streams_their_output_and_a_dead_runner_s_run_moves_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&["--data", ".", "--lease-ms", "1500"], dir.path());
    let base = server.base.clone();
    let tasks = dir.path().join("tasks.toml");
    std::fs::write(
        &tasks,
        r#"
fails = ["sh", "-c", "read -r payload; echo \"payload $payload\"; echo 'disk almost full' >&2; exit 3"]
works = ["sh", "-c", "echo \"hello from $PORTOLAN_RUN_ID\""]
slow = ["sleep", "20"]
"#,
    )
    .expect("tasks file");
    runner_action(&base, "fails", &["e2e"], "fails").await;
    runner_action(&base, "works", &["e2e"], "works").await;
    runner_action(&base, "unknown", &["e2e"], "rm-everything").await;
    let token = runner_token(&base, &["e2e", "slow"]).await;
    let _runner = RunnerProcess::start(&base, &token, "e2e", &tasks);

    // A task the runner's operator did not configure is not run, whatever the action says.
    let unknown = start_run(&base, "unknown", "cart").await;
    let refused = run_until(&base, &unknown, Duration::from_secs(15), ended).await;
    assert_eq!(refused["status"], "FAILURE", "{refused}");
    let (_, logs) = crate::get_json(&format!("{base}/api/v1/actions/runs/{unknown}")).await;
    assert!(logs.to_string().contains("this runner has no task 'rm-everything'"), "{logs}");

    let failing = start_run(&base, "fails", "cart").await;
    let working = start_run(&base, "works", "cart").await;
    let failed = run_until(&base, &failing, Duration::from_secs(15), ended).await;
    assert_eq!(failed["status"], "FAILURE", "{failed}");
    assert_eq!(failed["statusLabel"], "exit code 3");
    let (_, logs) = crate::get_json(&format!("{base}/api/v1/actions/runs/{failing}/logs")).await;
    let lines: Vec<(String, String)> = logs["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| (l["stream"].as_str().unwrap_or_default().into(), l["message"].as_str().unwrap_or_default().into()))
        .collect();
    assert!(lines.contains(&("stdout".into(), "payload {\"name\":\"cart\"}".into())), "{lines:?}");
    assert!(lines.contains(&("stderr".into(), "disk almost full".into())), "{lines:?}");
    let worked = run_until(&base, &working, Duration::from_secs(15), ended).await;
    assert_eq!(worked["status"], "SUCCESS", "{worked}");
    let (_, logs) = crate::get_json(&format!("{base}/api/v1/actions/runs/{working}/logs")).await;
    assert!(logs.to_string().contains(&format!("hello from {working}")), "{logs}");

    // A runner dies mid-run: its lease lapses and another runner takes the run over.
    runner_action(&base, "slow", &["slow"], "slow").await;
    let first = RunnerProcess::start(&base, &token, "slow", &tasks);
    let slow = start_run(&base, "slow", "x").await;
    run_until(&base, &slow, Duration::from_secs(15), |r| r["status"] == "IN_PROGRESS").await;
    first.kill();
    let second = RunnerProcess::start(&base, &token, "slow", &tasks);
    let retaken = run_until(&base, &slow, Duration::from_secs(15), |r| r["attempt"] == 2).await;
    assert_eq!(retaken["status"], "IN_PROGRESS", "{retaken}");
    second.kill();
    let failed = run_until(&base, &slow, Duration::from_secs(15), ended).await;
    assert_eq!(failed["status"], "FAILURE");
    assert!(failed["reason"].as_str().unwrap_or_default().contains("stopped heartbeating"), "{failed}");
    server.kill();
}

/// A webhook receiver that takes 20 ms per delivery and remembers every `webhook-id`.
pub async fn slow_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorded = Arc::clone(&seen);
    let handler = move |headers: axum::http::HeaderMap| {
        let recorded = Arc::clone(&recorded);
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            recorded.lock().expect("lock").push(id);
            "ok"
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(handler)).await });
    (url, seen)
}

/// How many times the crash suite kills each process: `PORTOLAN_CRASH_KILLS` (the script runs
/// it at 100), else 10 kills of the server and 5 of a runner.
fn kills(default: usize) -> usize {
    std::env::var("PORTOLAN_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A client requesting `notify` runs of the server at `base` one after another, noting each
/// accepted run, until the server dies under it or `stop` is set.
fn request_runs(base: &str, accepted: &Arc<Mutex<Vec<String>>>, stop: &Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let (base, accepted, stop) = (base.to_string(), Arc::clone(accepted), Arc::clone(stop));
    tokio::spawn(async move {
        let client = crate::http();
        while !stop.load(Ordering::Relaxed) {
            let sent = client.post(format!("{base}/api/v1/actions/notify/runs")).json(&json!({})).send().await;
            let Ok(response) = sent else { return };
            if response.status().as_u16() == 202
                && let Ok(body) = response.json::<Value>().await
            {
                let id = body["run"]["id"].as_str().unwrap_or_default().to_string();
                accepted.lock().expect("lock").push(id);
            }
        }
    })
}

/// Waits until `more` deliveries beyond those seen so far have arrived.
async fn deliveries_go_on(seen: &Mutex<Vec<String>>, more: usize) {
    let (delivered, started) = (seen.lock().expect("lock").len(), Instant::now());
    while seen.lock().expect("lock").len() < delivered + more {
        assert!(started.elapsed() < Duration::from_secs(20), "deliveries did not go on");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every accepted run ended in SUCCESS with its delivery, and every delivery carries the id of a
/// stored run that succeeded (a run accepted as the server died, whose client never heard, was
/// delivered too, under its own id). The number of deliveries repeated under the same id.
async fn every_accepted_run_was_delivered(base: &str, accepted: &[String], delivered: &[String]) -> usize {
    let unique: HashSet<&String> = delivered.iter().collect();
    for id in accepted {
        let (status, body) = crate::get_json(&format!("{base}/api/v1/actions/runs/{id}")).await;
        assert_eq!(status, 200, "accepted run {id} was lost");
        assert_eq!(body["run"]["status"], "SUCCESS", "{body}");
        assert!(unique.contains(&format!("msg_{id}")), "run {id} ended without its delivery");
    }
    for webhook_id in &unique {
        let id = webhook_id.strip_prefix("msg_").expect("msg_<run id>");
        let (status, body) = crate::get_json(&format!("{base}/api/v1/actions/runs/{id}")).await;
        assert_eq!((status, body["run"]["status"].as_str()), (200, Some("SUCCESS")), "{webhook_id}");
    }
    delivered.len() - unique.len()
}

/// Waits until the server at `base` has no active run.
async fn no_run_stays_active(base: &str) {
    let started = Instant::now();
    loop {
        let (_, active) = crate::get_json(&format!("{base}/api/v1/actions/runs?active=true&limit=1")).await;
        if active["runs"].as_array().is_some_and(Vec::is_empty) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "runs still active: {active}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The crash suite: the server is killed with SIGKILL again and again while clients request runs
/// and deliveries go out, then runners are killed in the middle of their tasks. No accepted run
/// is lost, every delivery carries the idempotency id of a stored run, no run is left active,
/// a run whose runner died is taken over (or fails for it once its attempts are spent), and the
/// audit log verifies.
#[tokio::test]
async fn no_accepted_run_is_lost_to_repeated_sigkills_of_the_server_and_its_runners() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = ["--data", ".", "--lease-ms", "1000", "--webhook-allow-private", "true"];
    let mut server = Server::start(&args, dir.path());
    let (receiver, seen) = slow_receiver().await;
    let secret = json!({"name": "hook", "value": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"});
    assert_eq!(post(&format!("{}/api/v1/secrets", server.base), secret).await.0, 201);
    let action = json!({
        "identifier": "notify",
        "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "WEBHOOK", "url": receiver, "signingSecret": "hook", "synchronized": true}
    });
    assert_eq!(post(&format!("{}/api/v1/actions", server.base), action).await.0, 201);

    // Each round: two clients request runs until the server dies under them, once deliveries
    // have gone on for a while; then it starts again on the same data.
    let (accepted, never): (Arc<Mutex<Vec<String>>>, Arc<AtomicBool>) = Default::default();
    let server_kills = kills(10);
    for _ in 0..server_kills {
        let clients: Vec<_> = (0..2).map(|_| request_runs(&server.base, &accepted, &never)).collect();
        deliveries_go_on(&seen, 10).await;
        server.kill();
        for client in clients {
            let _ = client.await;
        }
        server = Server::start(&args, dir.path());
    }
    let base = server.base.clone();
    no_run_stays_active(&base).await;

    // Runners die in the middle of a task; each run goes to another runner after its lease.
    let tasks = dir.path().join("tasks.toml");
    std::fs::write(&tasks, "work = [\"sleep\", \"0.3\"]\n").expect("tasks file");
    let action = json!({
        "identifier": "work",
        "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "RUNNER", "labels": ["crash"], "task": "work", "maxAttempts": 10}
    });
    assert_eq!(post(&format!("{base}/api/v1/actions"), action).await.0, 201);
    let token = runner_token(&base, &["crash"]).await;
    let mut worked = Vec::new();
    for _ in 0..20 {
        let (status, body) = post(&format!("{base}/api/v1/actions/work/runs"), json!({})).await;
        assert_eq!(status, 202, "{body}");
        worked.push(body["run"]["id"].as_str().expect("id").to_string());
    }
    // Each runner is killed once it has claimed a run of its own (a new run, or a new attempt).
    let claimed = || async {
        let (_, active) = crate::get_json(&format!("{base}/api/v1/actions/runs?active=true&limit=100")).await;
        let runs = active["runs"].as_array().cloned().unwrap_or_default();
        runs.iter()
            .filter(|r| r["status"] == "IN_PROGRESS")
            .map(|r| format!("{}#{}", r["id"].as_str().unwrap_or_default(), r["attempt"]))
            .collect::<HashSet<String>>()
    };
    let runner_kills = kills(5);
    for _ in 0..runner_kills {
        let before = claimed().await;
        let runner = RunnerProcess::start(&base, &token, "crash", &tasks);
        let started = Instant::now();
        while claimed().await.is_subset(&before) {
            assert!(started.elapsed() < Duration::from_secs(20), "the runner claimed nothing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        runner.kill();
    }
    let _survivor = RunnerProcess::start(&base, &token, "crash", &tasks);

    // Nothing stays active; every accepted run ended as it should.
    no_run_stays_active(&base).await;
    let accepted: Vec<String> = accepted.lock().expect("lock").clone();
    let delivered: Vec<String> = seen.lock().expect("lock").clone();
    let repeated = every_accepted_run_was_delivered(&base, &accepted, &delivered).await;
    let mut retaken = 0;
    for id in &worked {
        let run = run_until(&base, id, Duration::from_secs(5), ended).await;
        let attempt = run["attempt"].as_u64().unwrap_or_default();
        match run["status"].as_str() {
            Some("SUCCESS") => retaken += usize::from(attempt > 1),
            _ => {
                assert_eq!(attempt, 10, "only a run out of attempts fails: {run}");
                assert!(run["reason"].as_str().unwrap_or_default().contains("stopped heartbeating"), "{run}");
            }
        }
    }
    assert!(retaken > 0, "a run whose runner died was finished by another");
    eprintln!(
        "crash suite: {server_kills} server kills, {} runs accepted, {} deliveries ({} repeated under the same id); \
         {runner_kills} runner kills, {retaken} of {} runs finished after a takeover",
        accepted.len(),
        delivered.len(),
        repeated,
        worked.len()
    );
    server.kill();
    let (verified, said) = crate::portolan(dir.path(), &["audit", "verify", "--data", "."]);
    assert!(verified && said.contains("the audit log is intact"), "{said}");
}

/// The crash suite on PostgreSQL with two replicas: one of them is killed with SIGKILL again and
/// again (each in turn) while the other serves, and clients of both request runs. No accepted run
/// is lost, the survivor takes each run the dead one had claimed, every delivery carries the id of
/// a stored run, none stays active, and the audit log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_run_is_lost_when_one_of_two_postgres_replicas_is_killed_again_and_again() {
    let Some(db) = crate::postgres::TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let args = ["--database-url", db.url.as_str(), "--lease-ms", "1000", "--webhook-allow-private", "true"];
    let mut replicas = vec![Server::start(&args, dir.path()), Server::start(&args, dir.path())];
    let (receiver, seen) = slow_receiver().await;
    let secret = json!({"name": "hook", "value": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"});
    assert_eq!(post(&format!("{}/api/v1/secrets", replicas[0].base), secret).await.0, 201);
    let action = json!({
        "identifier": "notify",
        "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "WEBHOOK", "url": receiver, "signingSecret": "hook", "synchronized": true}
    });
    assert_eq!(post(&format!("{}/api/v1/actions", replicas[0].base), action).await.0, 201);

    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let replica_kills = kills(10);
    for round in 0..replica_kills {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = replicas.iter().map(|replica| request_runs(&replica.base, &accepted, &stop)).collect();
        deliveries_go_on(&seen, 10).await;
        replicas.remove(round % 2).kill();
        // The survivor serves on without a pause: it accepts runs and delivers them.
        deliveries_go_on(&seen, 10).await;
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            let _ = client.await;
        }
        let (status, body) = post(&format!("{}/api/v1/actions/notify/runs", replicas[0].base), json!({})).await;
        assert_eq!(status, 202, "the survivor refused a run: {body}");
        if let Some(id) = body["run"]["id"].as_str() {
            accepted.lock().expect("lock").push(id.to_string());
        }
        replicas.insert(round % 2, Server::start(&args, dir.path()));
    }
    let base = replicas[0].base.clone();
    no_run_stays_active(&base).await;
    let accepted: Vec<String> = accepted.lock().expect("lock").clone();
    let delivered: Vec<String> = seen.lock().expect("lock").clone();
    let repeated = every_accepted_run_was_delivered(&base, &accepted, &delivered).await;
    eprintln!(
        "crash suite (PostgreSQL, two replicas): {replica_kills} replica kills, {} runs accepted, {} deliveries \
         ({repeated} repeated under the same id)",
        accepted.len(),
        delivered.len(),
    );
    for replica in replicas {
        replica.kill();
    }
    let (verified, said) = crate::portolan(dir.path(), &["audit", "verify", "--database-url", &db.url]);
    assert!(verified && said.contains("the audit log is intact"), "{said}");
}

#[tokio::test]
async fn replicas_over_postgres_share_deliveries_runner_claims_and_the_key() {
    let Some(db) = crate::postgres::TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let args = ["--database-url", &db.url, "--lease-ms", "1500", "--webhook-allow-private", "true"];
    let a = Server::start(&args, dir.path());
    let b = Server::start(&args, dir.path());
    let (receiver, seen) = slow_receiver().await;
    // The secret is sealed by replica A and opened by whichever replica delivers.
    let secret = json!({"name": "hook", "value": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"});
    assert_eq!(post(&format!("{}/api/v1/secrets", a.base), secret).await.0, 201);
    let action = json!({
        "identifier": "notify",
        "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "WEBHOOK", "url": receiver, "signingSecret": "hook", "synchronized": true}
    });
    assert_eq!(post(&format!("{}/api/v1/actions", b.base), action).await.0, 201);
    let mut ids = Vec::new();
    for i in 0..40 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let (status, body) = post(&format!("{base}/api/v1/actions/notify/runs"), json!({})).await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["run"]["id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        let run = run_until(&a.base, id, Duration::from_secs(20), ended).await;
        assert_eq!(run["status"], "SUCCESS", "{run}");
    }
    let seen = seen.lock().expect("lock").clone();
    for id in &ids {
        let deliveries = seen.iter().filter(|s| **s == format!("msg_{id}")).count();
        assert_eq!(deliveries, 1, "run {id} was delivered {deliveries} times");
    }

    // A runner polling replica B takes a run queued on replica A.
    let tasks = dir.path().join("tasks.toml");
    std::fs::write(&tasks, r#"job = ["sh", "-c", "echo claimed across replicas"]"#).expect("tasks file");
    runner_action(&a.base, "job", &["pg"], "job").await;
    let token = runner_token(&a.base, &["pg"]).await;
    let _runner = RunnerProcess::start(&b.base, &token, "pg", &tasks);
    let id = start_run(&a.base, "job", "x").await;
    let run = run_until(&a.base, &id, Duration::from_secs(20), ended).await;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    a.kill();
    b.kill();
}
