//! The runner protocol over HTTP: tokens, labels, claims, heartbeats, lost leases.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::{Reply, TestApp, read, run_until, spawn_app};

async fn runner_token(app: &TestApp, name: &str, labels: &[&str]) -> String {
    let created = app.post("/api/v1/runners/tokens", json!({"name": name, "labels": labels})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let token = created.body["token"].as_str().expect("token shown once").to_string();
    assert!(token.starts_with("plt_"));
    token
}

async fn claim(app: &TestApp, token: &str, wait_seconds: u64) -> Reply {
    let request = app
        .client
        .post(format!("{}/api/v1/runners/claim", app.base))
        .bearer_auth(token)
        .json(&json!({"waitSeconds": wait_seconds}));
    read(request.send().await.expect("sent")).await
}

#[tokio::test]
async fn runners_claim_by_label_and_a_lapsed_lease_hands_the_run_to_another_runner() {
    let app = spawn_app().await;
    let action = json!({
        "identifier": "migrate",
        "trigger": {"type": "self-service", "operation": "CREATE",
                    "userInputs": {"properties": {"database": {"type": "string"}}}},
        "invocationMethod": {"type": "RUNNER", "labels": ["db"], "task": "migrate", "maxAttempts": 2,
                             "payload": {"db": "{{ .inputs.database }}", "run": "{{ .run.id }}"}}
    });
    assert_eq!(app.post("/api/v1/actions", action).await.status, StatusCode::CREATED);
    let first = runner_token(&app, "runner one", &["db", "linux"]).await;
    let second = runner_token(&app, "runner two", &["db"]).await;
    let elsewhere = runner_token(&app, "web runner", &["web"]).await;

    let started = app.post("/api/v1/actions/migrate/runs", json!({"properties": {"database": "orders"}})).await;
    let id = started.body["run"]["id"].as_str().expect("id").to_string();

    assert_eq!(claim(&app, "plt_forged", 0).await.error_code(), "unauthorized");
    assert_eq!(claim(&app, &elsewhere, 0).await.status, StatusCode::NO_CONTENT, "labels do not match");
    let claimed = claim(&app, &first, 5).await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
    let claim_one = &claimed.body["claim"];
    assert_eq!(claim_one["run"]["id"], id.as_str());
    assert_eq!(claim_one["run"]["attempt"], 1);
    assert_eq!(claim_one["task"], "migrate");
    assert!(claim_one.get("command").is_none(), "a runner is never sent a command line: {claim_one}");
    assert_eq!(claim_one["payload"], json!({"db": "orders", "run": id}));
    let token_one = claim_one["runToken"].as_str().expect("run token").to_string();
    assert_eq!(claim(&app, &second, 0).await.status, StatusCode::NO_CONTENT, "one run, one holder");
    let heartbeat = format!("/api/v1/runners/runs/{id}/heartbeat");
    let beat = |attempt: i64| Some(json!({"attempt": attempt}));
    assert_eq!(app.call_as(reqwest::Method::POST, &heartbeat, &first, beat(1)).await.status, StatusCode::OK);
    assert_eq!(app.call_as(reqwest::Method::POST, &heartbeat, &second, beat(1)).await.error_code(), "lease_lost");

    // Runner one stops heartbeating: the lease (1.5 s in tests) lapses and the run is queued again.
    let requeued = run_until(&app, &id, Duration::from_secs(8), |r| r["status"] == "QUEUED").await["run"].clone();
    assert_eq!(requeued["attempt"], 1);
    let run_path = format!("/api/v1/actions/runs/{id}");
    let queued_report =
        app.call_as(reqwest::Method::PATCH, &run_path, &token_one, Some(json!({"status": "IN_PROGRESS"}))).await;
    assert_eq!(queued_report.error_code(), "lease_lost", "a queued run has no runner to report on it");
    let claimed = claim(&app, &second, 5).await;
    assert_eq!(claimed.body["claim"]["run"]["attempt"], 2, "{}", claimed.body);
    let token_two = claimed.body["claim"]["runToken"].as_str().expect("run token").to_string();

    // Runner one comes back: its heartbeat and its reports are refused; runner two's count.
    assert_eq!(app.call_as(reqwest::Method::POST, &heartbeat, &first, beat(1)).await.error_code(), "lease_lost");
    assert_eq!(app.call_as(reqwest::Method::POST, &heartbeat, &second, beat(1)).await.error_code(), "lease_lost");
    assert_eq!(app.call_as(reqwest::Method::POST, &heartbeat, &second, beat(2)).await.status, StatusCode::OK);
    let stale = app.call_as(reqwest::Method::PATCH, &run_path, &token_one, Some(json!({"status": "SUCCESS"}))).await;
    assert_eq!(stale.error_code(), "lease_lost");
    let lines = json!({"lines": [{"message": "applied 3 migrations", "stream": "stdout"}]});
    let logged = app.call_as(reqwest::Method::POST, &format!("{run_path}/logs"), &token_two, Some(lines)).await;
    assert_eq!(logged.status, StatusCode::CREATED, "{}", logged.body);
    let done = app.call_as(reqwest::Method::PATCH, &run_path, &token_two, Some(json!({"status": "SUCCESS"}))).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let logs = app.get(&format!("{run_path}/logs")).await.body.to_string();
    assert!(logs.contains("stopped heartbeating") && logs.contains("runner two"), "{logs}");

    // With no attempts left, a lapsed lease fails the run and says why.
    let started = app.post("/api/v1/actions/migrate/runs", json!({"properties": {"database": "users"}})).await;
    let id = started.body["run"]["id"].as_str().expect("id").to_string();
    assert_eq!(claim(&app, &first, 5).await.status, StatusCode::OK);
    run_until(&app, &id, Duration::from_secs(8), |r| r["status"] == "QUEUED").await;
    assert_eq!(claim(&app, &first, 5).await.status, StatusCode::OK);
    let failed = run_until(&app, &id, Duration::from_secs(8), |r| r["status"] == "FAILURE").await["run"].clone();
    assert!(failed["reason"].as_str().unwrap_or_default().contains("no attempts left (2 of 2)"), "{failed}");

    // A revoked token claims nothing.
    let tokens = app.get("/api/v1/runners/tokens").await;
    assert!(!tokens.body.to_string().contains(&first), "token values are never listed");
    let first_id = tokens.body["runners"][0]["id"].as_str().expect("id").to_string();
    assert_eq!(app.delete(&format!("/api/v1/runners/tokens/{first_id}")).await.status, StatusCode::OK);
    assert_eq!(claim(&app, &first, 0).await.error_code(), "unauthorized");
}

#[tokio::test]
async fn a_long_poll_claim_wakes_when_a_run_is_queued() {
    let app = spawn_app().await;
    let action = json!({
        "identifier": "job",
        "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "RUNNER", "labels": ["any"], "task": "noop"}
    });
    assert_eq!(app.post("/api/v1/actions", action).await.status, StatusCode::CREATED);
    let token = runner_token(&app, "poller", &["any"]).await;
    let started = Instant::now();
    let waiting = {
        let app_base = app.base.clone();
        let client = app.client.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let response = client
                .post(format!("{app_base}/api/v1/runners/claim"))
                .bearer_auth(token)
                .json(&json!({"waitSeconds": 20}))
                .send()
                .await
                .expect("sent");
            (response.status(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued_at = Instant::now();
    assert_eq!(app.post("/api/v1/actions/job/runs", json!({})).await.status, StatusCode::ACCEPTED);
    let (status, claimed_at) = waiting.await.expect("joined");
    assert_eq!(status, StatusCode::OK);
    assert!(claimed_at.duration_since(queued_at) < Duration::from_secs(2), "woken, not polled late");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// What a runner runs is its operator's choice: an action names a task, never a command line,
/// and only an admin picks a runner action's labels and task; a moderator may change its form.
#[tokio::test]
async fn only_an_admin_chooses_which_runner_and_task_an_action_runs() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let mo = app.member("mo", &["team-platform"]).await;
    let moderators = json!({"moderators": {"teams": ["team-platform"]}});
    assert_eq!(app.put("/api/v1/blueprints/service/permissions", moderators).await.status, StatusCode::OK);
    let action = |title: &str, labels: &[&str], task: &str| {
        json!({"identifier": "deploy", "title": title,
               "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service"},
               "invocationMethod": {"type": "RUNNER", "labels": labels, "task": task}})
    };
    let post_as = |body| app.call_as(reqwest::Method::POST, "/api/v1/actions", &mo, Some(body));
    let put_as = |body| app.call_as(reqwest::Method::PUT, "/api/v1/actions/deploy", &mo, Some(body));

    let refused = post_as(action("Deploy", &["prod"], "deploy")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.body["message"].as_str().unwrap_or_default().contains("runner labels and task"),
        "{}",
        refused.body
    );
    let mut command = action("Deploy", &["prod"], "deploy");
    command["invocationMethod"]["command"] = json!(["portolan", "admin", "create-token", "--user", "admin"]);
    let refused = post_as(command.clone()).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.detail_paths(), vec!["/invocationMethod/command"]);
    assert_eq!(app.post("/api/v1/actions", command).await.status, StatusCode::UNPROCESSABLE_ENTITY, "not even admins");

    assert_eq!(app.post("/api/v1/actions", action("Deploy", &["prod"], "deploy")).await.status, StatusCode::CREATED);
    let retitled = put_as(action("Deploy now", &["prod"], "deploy")).await;
    assert_eq!(retitled.status, StatusCode::OK, "the form is the moderator's: {}", retitled.body);
    for (labels, task) in [(&["prod"][..], "shell"), (&["admin-box"][..], "deploy")] {
        let rewired = put_as(action("Deploy now", labels, task)).await;
        assert_eq!(rewired.status, StatusCode::FORBIDDEN, "{labels:?} {task}: {}", rewired.body);
    }
    let stored = app.get("/api/v1/actions/deploy").await;
    assert_eq!(stored.body["action"]["invocationMethod"]["task"], "deploy", "{}", stored.body);

    let denied = app.get("/api/v1/audit-log?status=denied&limit=100").await;
    let by_mo = denied.body["records"].as_array().into_iter().flatten().filter(|r| r["actor"] == "mo").count();
    assert!(by_mo >= 3, "each refusal is audited: {}", denied.body);
}

/// A backend reads the catalog with its run token, naming its run, and reads only what the run's
/// requester may read; the token reads nothing once the run is over or without its run.
#[tokio::test]
async fn a_run_token_reads_what_the_requester_may_read_while_the_run_is_open() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let ana = app.member("ana", &["team-a"]).await;
    app.member("bo", &["team-b"]).await;
    for (id, team) in [("mine", "team-a"), ("theirs", "team-b")] {
        let mut doc = crate::service(id);
        doc["team"] = json!([team]);
        assert_eq!(app.post("/api/v1/blueprints/service/entities", doc).await.status, StatusCode::CREATED);
    }
    let read_own = json!({"read": {"ownedByTeam": true}});
    assert_eq!(app.put("/api/v1/blueprints/service/permissions", read_own).await.status, StatusCode::OK);
    let action = json!({"identifier": "job", "trigger": {"type": "self-service", "operation": "CREATE"},
                        "invocationMethod": {"type": "RUNNER", "labels": ["any"], "task": "noop"}});
    assert_eq!(app.post("/api/v1/actions", action).await.status, StatusCode::CREATED);
    let started = app.call_as(reqwest::Method::POST, "/api/v1/actions/job/runs", &ana, Some(json!({}))).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let run = started.body["run"]["id"].as_str().expect("id").to_string();
    let runner = runner_token(&app, "runner", &["any"]).await;
    let claimed = claim(&app, &runner, 5).await;
    let run_token = claimed.body["claim"]["runToken"].as_str().expect("run token").to_string();

    let search = format!("/api/v1/blueprints/service/entities/search?run_id={run}");
    let found = app.call_as(reqwest::Method::POST, &search, &run_token, Some(json!({}))).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    let ids: Vec<&str> =
        found.body["entities"].as_array().into_iter().flatten().filter_map(|e| e["identifier"].as_str()).collect();
    assert_eq!(ids, vec!["mine"], "only what ana may read");
    let get = |id: &str| format!("/api/v1/blueprints/service/entities/{id}?run_id={run}");
    assert_eq!(app.call_as(reqwest::Method::GET, &get("mine"), &run_token, None).await.status, StatusCode::OK);
    assert_eq!(app.call_as(reqwest::Method::GET, &get("theirs"), &run_token, None).await.status, StatusCode::NOT_FOUND);
    let unnamed = app.call_as(reqwest::Method::POST, "/api/v1/entities/search", &run_token, Some(json!({}))).await;
    assert_eq!(unnamed.status, StatusCode::FORBIDDEN, "a run token names its run");
    let tokens =
        app.call_as(reqwest::Method::GET, &format!("/api/v1/runners/tokens?run_id={run}"), &run_token, None).await;
    assert_eq!(tokens.status, StatusCode::FORBIDDEN, "reads of the catalog only: {}", tokens.body);

    let run_path = format!("/api/v1/actions/runs/{run}");
    let done = app.call_as(reqwest::Method::PATCH, &run_path, &run_token, Some(json!({"status": "SUCCESS"}))).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let after = app.call_as(reqwest::Method::POST, &search, &run_token, Some(json!({}))).await;
    assert_eq!(after.error_code(), "run_finished", "{}", after.body);
}
