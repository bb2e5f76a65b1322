//! `portolan admin` beside a busy server on the same SQLite database: each waits for the other's
//! short write, and neither gives up with "database is locked".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_beside_a_busy_server_never_meet_a_locked_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&["--demo"], dir.path());
    let base = server.base.clone();
    let client = crate::http();

    // A runner long-polling for a label no run needs, for as long as the test runs.
    let made = client
        .post(format!("{base}/api/v1/runners/tokens"))
        .json(&json!({"name": "idle", "labels": ["idle"]}))
        .send()
        .await
        .expect("runner token");
    assert_eq!(made.status().as_u16(), 201);
    let runner_token =
        made.json::<serde_json::Value>().await.expect("json")["token"].as_str().expect("token").to_string();
    let done = Arc::new(AtomicBool::new(false));
    let claims = tokio::spawn({
        let (base, done) = (base.clone(), done.clone());
        async move {
            let mut statuses = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let response = reqwest::Client::new()
                    .post(format!("{base}/api/v1/runners/claim"))
                    .bearer_auth(&runner_token)
                    .json(&json!({"waitSeconds": 1}))
                    .send()
                    .await
                    .expect("claim");
                statuses.push((response.status().as_u16(), response.text().await.unwrap_or_default()));
            }
            statuses
        }
    });
    // Runs of the demo's "Update pod count", which the demo's runner claims, runs and reports on.
    let runs = tokio::spawn({
        let (base, done) = (base.clone(), done.clone());
        async move {
            let mut started = Vec::new();
            let mut refused = Vec::new();
            let mut replicas = 4;
            while !done.load(Ordering::Relaxed) {
                replicas = if replicas == 4 { 5 } else { 4 };
                let body = json!({"entity": "cart-service", "properties": {"replicas": replicas}});
                let response = crate::http()
                    .post(format!("{base}/api/v1/actions/update_pod_count/runs"))
                    .json(&body)
                    .send()
                    .await
                    .expect("run");
                let status = response.status().as_u16();
                let reply: serde_json::Value = response.json().await.unwrap_or_default();
                match status {
                    202 => started.push(reply["run"]["id"].as_str().expect("run id").to_string()),
                    _ => refused.push((status, reply)),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (started, refused)
        }
    });

    let cli = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            (0..20)
                .map(|i| {
                    let name = format!("laptop-{i}");
                    crate::admin(&["--demo"], &dir, &["create-token", "--user", "admin", "--name", &name])
                })
                .collect::<Vec<_>>()
        }
    });
    let outputs = cli.await.expect("the CLI loop");
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, Ordering::Relaxed);
    let claims = claims.await.expect("claims");
    let (started, refused) = runs.await.expect("runs");

    for (i, output) in outputs.iter().enumerate() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "create-token {i} failed: {stderr}");
        assert!(String::from_utf8_lossy(&output.stdout).trim().starts_with("plt_"), "create-token {i}");
        assert!(!stderr.contains("locked"), "create-token {i}: {stderr}");
    }
    assert!(claims.len() >= 2, "the runner kept polling: {claims:?}");
    assert!(claims.iter().all(|(status, _)| *status == 204), "every claim waited and found nothing: {claims:?}");
    assert!(started.len() >= 5, "runs were started meanwhile: {started:?}");
    assert!(refused.is_empty(), "no run request failed: {refused:?}");

    // The demo's runner claimed, ran and reported every run, beside the CLI.
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &started {
        loop {
            let (_, body) = crate::get_json(&format!("{base}/api/v1/actions/runs/{id}")).await;
            match body["run"]["status"].as_str() {
                Some("SUCCESS") => break,
                Some("QUEUED" | "IN_PROGRESS") => {}
                _ => panic!("run {id} did not succeed: {body}"),
            }
            assert!(Instant::now() < deadline, "run {id} did not end: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let logged = server.output();
    for said in ["database is locked", "database unavailable", "503 Service Unavailable", "internal error"] {
        assert!(!logged.contains(said), "the server logged {said:?}:\n{logged}");
    }
    server.terminate();
}
