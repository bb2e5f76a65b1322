//! Quotas, concurrency, safe-change bounds, preconditions and dry runs over real HTTP.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{TestApp, service, spawn_app};

/// A DAY-2 action on services, run by a runner nobody starts (so its runs stay queued), with
/// `guardrails`.
async fn guarded(app: &TestApp, guardrails: Value) {
    app.with_service_blueprints().await;
    for id in ["cart", "search"] {
        let mut doc = service(id);
        doc["properties"]["replicas"] = json!(4);
        assert_eq!(app.post("/api/v1/blueprints/service/entities", doc).await.status, StatusCode::CREATED);
    }
    let secret = app.post("/api/v1/secrets", json!({"name": "DEPLOY_KEY", "value": "k3y-never-shown"})).await;
    assert_eq!(secret.status, StatusCode::CREATED);
    let action = json!({
        "identifier": "scale",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
            "userInputs": {"properties": {"replicas": {"type": "number"}}, "required": ["replicas"]}},
        "invocationMethod": {"type": "RUNNER", "labels": ["nobody"], "task": "noop",
            "payload": {"replicas": "{{ .inputs.replicas }}", "key": "{{ .secrets.DEPLOY_KEY }}"}},
        "guardrails": guardrails
    });
    let made = app.post("/api/v1/actions", action).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
}

async fn run(app: &TestApp, token: &str, entity: &str, replicas: f64, reason: Option<&str>) -> crate::Reply {
    let mut body = json!({"entity": entity, "properties": {"replicas": replicas}});
    if let Some(reason) = reason {
        body["overrideReason"] = json!(reason);
    }
    app.call_as(Method::POST, "/api/v1/actions/scale/runs", token, Some(body)).await
}

#[tokio::test]
async fn quotas_refuse_with_which_limit_and_when_it_frees_up() {
    let app = spawn_app().await;
    guarded(
        &app,
        json!({"quotas": [{"per": "user", "max": 2, "periodHours": 1}, {"per": "team", "max": 3, "periodHours": 24}]}),
    )
    .await;
    let ana = app.member("ana", &["team-a"]).await;
    let abe = app.member("abe", &["team-a"]).await;
    let bo = app.member("bo", &["team-b"]).await;
    for _ in 0..2 {
        assert_eq!(run(&app, &ana, "cart", 4.0, None).await.status, StatusCode::ACCEPTED);
    }
    let third = run(&app, &ana, "cart", 4.0, None).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS, "{}", third.body);
    assert_eq!(third.error_code(), "too_many_requests");
    assert_eq!(third.body["message"], "you ran this 2 times in 1 h (at most 2)");
    let wait: u64 = third.headers["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((3_500..=3_600).contains(&wait), "frees up when the first run leaves the hour: {wait}");
    assert_eq!(run(&app, &abe, "cart", 4.0, None).await.status, StatusCode::ACCEPTED, "a teammate has their own");
    let team = run(&app, &abe, "cart", 4.0, None).await;
    assert_eq!(team.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        team.body["message"].as_str().is_some_and(|m| m.starts_with("your team ran this 3 times")),
        "{}",
        team.body
    );
    assert_eq!(run(&app, &bo, "cart", 4.0, None).await.status, StatusCode::ACCEPTED, "another team is unaffected");
}

#[tokio::test]
async fn concurrency_is_limited_per_entity() {
    let app = spawn_app().await;
    guarded(&app, json!({"concurrency": {"perEntity": 1, "perAction": 2}})).await;
    assert_eq!(run(&app, &app.admin_token, "cart", 4.0, None).await.status, StatusCode::ACCEPTED);
    let busy = run(&app, &app.admin_token, "cart", 4.0, None).await;
    assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(busy.body["message"], "1 runs of this entity are not finished (at most 1 at once)");
    assert!(busy.headers.contains_key("retry-after"));
    assert_eq!(run(&app, &app.admin_token, "search", 4.0, None).await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn bounds_keep_a_resize_within_a_factor_of_the_current_value_unless_overridden_with_a_reason() {
    let app = spawn_app().await;
    let bound = json!({"input": "replicas", "maxFactorUp": 2, "maxShareDown": 0.5, "max": 40, "step": 1, "overrideRole": "admin"});
    guarded(&app, json!({"bounds": [bound]})).await;
    let ana = app.member("ana", &[]).await;
    assert_eq!(run(&app, &ana, "cart", 8.0, None).await.status, StatusCode::ACCEPTED, "×2 of 4");
    for (value, why) in [(9.0, "more than ×2"), (1.0, "below the current"), (41.0, "at most 40"), (5.5, "steps of 1")]
    {
        let refused = run(&app, &ana, "search", value, None).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{value}");
        assert_eq!(refused.detail_paths(), ["/properties/replicas"]);
        assert!(refused.body["message"].as_str().is_some_and(|m| m.contains(why)), "{value}: {}", refused.body);
    }
    let member_override = run(&app, &ana, "search", 16.0, Some("black friday")).await;
    assert_eq!(member_override.status, StatusCode::UNPROCESSABLE_ENTITY, "only the override role may");
    let no_reason = run(&app, &app.admin_token, "search", 16.0, None).await;
    assert!(no_reason.body["message"].as_str().is_some_and(|m| m.contains("overrideReason")), "{}", no_reason.body);
    let overridden = run(&app, &app.admin_token, "search", 16.0, Some("black friday")).await;
    assert_eq!(overridden.status, StatusCode::ACCEPTED, "{}", overridden.body);
    assert_eq!(overridden.body["run"]["trigger"]["overrideReason"], "black friday", "the reason stays with the run");
    let id = overridden.body["run"]["id"].as_str().expect("id");
    let record = app.get(&format!("/api/v1/audit-log?run={id}&action=run.create")).await;
    assert_eq!(record.body["records"][0]["diff"]["after"]["overrideReason"], "black friday", "and in its audit record");
    assert_eq!(
        run(&app, &app.admin_token, "search", 41.0, Some("why not")).await.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "absolute limits hold"
    );
}

#[tokio::test]
async fn a_failing_precondition_is_named_and_a_dry_run_says_everything_and_starts_nothing() {
    let app = spawn_app().await;
    let production =
        json!({"combinator": "and", "rules": [{"property": "lifecycle", "operator": "=", "value": "production"}]});
    guarded(
        &app,
        json!({"preconditions": [{"title": "Only services in production", "query": production}],
               "quotas": [{"per": "action", "max": 5, "periodHours": 24}],
               "approval": {"approvers": {"users": ["carl"]}}}),
    )
    .await;
    let refused = run(&app, &app.admin_token, "cart", 4.0, None).await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(refused.body["message"], "'Only services in production' does not hold for 'cart'");

    let body = json!({"entity": "cart", "properties": {"replicas": 6}});
    let dry = app.post("/api/v1/actions/scale/runs?dry_run=true", body.clone()).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.body);
    let report = &dry.body["dryRun"];
    assert_eq!(report["wouldStart"], false);
    let names: Vec<&str> =
        report["guardrails"].as_array().expect("verdicts").iter().filter_map(|v| v["guardrail"].as_str()).collect();
    assert_eq!(names, ["approval", "quota", "precondition"]);
    assert_eq!(report["guardrails"][0]["message"], "needs approval from any of carl");
    assert_eq!(report["guardrails"][1]["message"], "5 of 5 runs left for everyone in 24 h");
    assert_eq!(report["rendered"]["payload"]["replicas"], 6, "{report}");
    assert_eq!(report["rendered"]["payload"]["key"], "********", "secrets masked");
    assert!(!dry.body.to_string().contains("k3y-never-shown"));

    app.patch("/api/v1/blueprints/service/entities/cart", json!({"properties": {"lifecycle": "production"}})).await;
    let dry = app.post("/api/v1/actions/scale/runs?dry_run=true", body).await;
    assert_eq!(dry.body["dryRun"]["wouldStart"], true);
    assert_eq!(dry.body["dryRun"]["status"], "WAITING_FOR_APPROVAL");
    let runs = app.get("/api/v1/actions/runs?action=scale").await;
    assert_eq!(runs.body["runs"], json!([]), "a dry run starts nothing");
}

#[tokio::test]
async fn a_run_that_outlives_its_timeout_ends_timed_out_and_its_runner_is_told_to_stop() {
    let clock = crate::ManualClock::at(1_800_000_000_000);
    let app = crate::TestApp::builder().clock(clock.clone()).private_addresses_refused().start().await;
    guarded(&app, json!({"timeoutMinutes": 60})).await;
    let made = app.post("/api/v1/runners/tokens", json!({"name": "r", "labels": ["nobody"]})).await;
    let runner = made.body["token"].as_str().expect("runner token").to_string();
    let started = run(&app, &app.admin_token, "cart", 4.0, None).await;
    let id = started.body["run"]["id"].as_str().expect("id").to_string();
    let claimed = app.call_as(Method::POST, "/api/v1/runners/claim", &runner, Some(json!({"waitSeconds": 5}))).await;
    assert_eq!(claimed.body["claim"]["run"]["id"], id.as_str(), "{}", claimed.body);
    let heartbeat = format!("/api/v1/runners/runs/{id}/heartbeat");
    let beat = || Some(json!({"attempt": 1}));
    assert_eq!(app.call_as(Method::POST, &heartbeat, &runner, beat()).await.status, StatusCode::OK);

    clock.advance(60 * 60_000 + 1);
    let ended = crate::run_until(&app, &id, std::time::Duration::from_secs(5), crate::ended).await;
    assert_eq!(ended["run"]["status"], "TIMED_OUT");
    assert_eq!(ended["run"]["reason"], "did not finish within 60 minutes");
    let told = app.call_as(Method::POST, &heartbeat, &runner, beat()).await;
    assert_eq!(told.error_code(), "lease_lost");
    assert!(told.body["message"].as_str().is_some_and(|m| m.contains("TIMED_OUT")), "{}", told.body);
}

#[tokio::test]
async fn freezes_and_locks_stop_runs_and_say_until_when_or_why() {
    // Friday 2027-01-15 08:00 UTC.
    let clock = crate::ManualClock::at(1_800_000_000_000);
    let app = crate::TestApp::builder().clock(clock.clone()).private_addresses_refused().start().await;
    let lock = json!({"identifier": "lock", "schema": {"properties": {"locked": {"type": "boolean"}, "reason": {"type": "string"}}}});
    assert_eq!(app.post("/api/v1/blueprints", lock).await.status, StatusCode::CREATED);
    guarded(
        &app,
        json!({"freezes": [{"title": "Friday morning release train", "days": ["FRI"], "start": "07:00", "end": "09:00"},
                           {"title": "Year end", "from": "2027-12-20T00:00:00Z", "to": "2028-01-03T00:00:00Z"}],
               "locks": [{"blueprint": "lock", "identifier": "deployments"}]}),
    )
    .await;
    let frozen = run(&app, &app.admin_token, "cart", 4.0, None).await;
    assert_eq!(frozen.status, StatusCode::CONFLICT, "{}", frozen.body);
    assert_eq!(frozen.error_code(), "frozen");
    assert_eq!(frozen.body["message"], "frozen until 2027-01-15T09:00:00Z: 'Friday morning release train'");
    assert_eq!(frozen.headers["retry-after"], "3600");

    clock.advance(3_600_000);
    let locked = json!({"identifier": "deployments", "properties": {"locked": true, "reason": "incident 4711"}});
    assert_eq!(app.post("/api/v1/blueprints/lock/entities", locked).await.status, StatusCode::CREATED);
    let refused = run(&app, &app.admin_token, "cart", 4.0, None).await;
    assert_eq!(refused.status, StatusCode::LOCKED);
    assert_eq!(refused.body["message"], "'deployments' is locked by admin@test: incident 4711");
    app.patch("/api/v1/blueprints/lock/entities/deployments", json!({"properties": {"locked": false}})).await;
    assert_eq!(run(&app, &app.admin_token, "cart", 4.0, None).await.status, StatusCode::ACCEPTED, "unlocked, unfrozen");

    let invalid = app
        .put(
            "/api/v1/actions/scale",
            json!({"identifier": "scale",
            "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service"},
            "invocationMethod": {"type": "RUNNER", "labels": ["nobody"], "task": "noop"},
            "guardrails": {"freezes": [{"title": "x", "days": ["FRIDAY"]}]}}),
        )
        .await;
    assert_eq!(invalid.detail_paths(), ["/guardrails/freezes/0"]);
}

#[tokio::test]
async fn a_webhook_backend_is_told_when_its_run_times_out() {
    let clock = crate::ManualClock::at(1_800_000_000_000);
    let app = crate::TestApp::builder().clock(clock.clone()).start().await;
    let (url, got) = crate::approvals::receiver().await;
    let key =
        app.post("/api/v1/secrets", json!({"name": "hook", "value": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})).await;
    assert_eq!(key.status, StatusCode::CREATED);
    let action = json!({
        "identifier": "build",
        "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "WEBHOOK", "url": url, "signingSecret": "hook", "synchronized": false,
            "body": {"run": "{{ .run.id }}"}},
        "guardrails": {"timeoutMinutes": 5}
    });
    assert_eq!(app.post("/api/v1/actions", action).await.status, StatusCode::CREATED);
    let started = app.post("/api/v1/actions/build/runs", json!({"properties": {}})).await;
    let id = started.body["run"]["id"].as_str().expect("id").to_string();
    crate::run_until(&app, &id, std::time::Duration::from_secs(5), |r| r["status"] == "IN_PROGRESS").await;
    clock.advance(5 * 60_000 + 1);
    let ended = crate::run_until(&app, &id, std::time::Duration::from_secs(5), crate::ended).await;
    assert_eq!(ended["run"]["status"], "TIMED_OUT");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let bodies = got.lock().expect("lock").clone();
        if let Some(notice) = bodies.iter().find(|b| b["type"] == "run.timed_out") {
            assert_eq!(notice["run"]["id"], id.as_str());
            assert_eq!(notice["run"]["status"], "TIMED_OUT");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no timeout notice: {bodies:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_each_other_cannot_get_past_a_limit_together() {
    let app = spawn_app().await;
    guarded(&app, json!({"concurrency": {"perEntity": 1}, "quotas": [{"per": "user", "max": 3, "periodHours": 1}]}))
        .await;
    let racing = (0..20).map(|i| {
        let app = &app;
        async move { run(app, &app.admin_token, if i % 2 == 0 { "cart" } else { "search" }, 4.0, None).await.status }
    });
    let statuses = futures_util::future::join_all(racing).await;
    let accepted = statuses.iter().filter(|s| **s == StatusCode::ACCEPTED).count();
    assert_eq!(accepted, 2, "one run per entity: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::ACCEPTED || *s == StatusCode::TOO_MANY_REQUESTS));
}
