//! Manual approval over real HTTP: who may approve, ANY and ALL, decline, expiry, inputs that
//! changed, cancelling, and the approver's inbox.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{ManualClock, TestApp, ended, run_until, service, spawn_app};

/// A DAY-2 action on services that sets `replicas`, guarded by `approval`.
async fn guarded(app: &TestApp, approval: Value) {
    app.with_service_blueprints().await;
    assert_eq!(app.post("/api/v1/blueprints/service/entities", service("cart")).await.status, StatusCode::CREATED);
    let action = json!({
        "identifier": "scale",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
            "userInputs": {"properties": {"replicas": {"type": "number"}}, "required": ["replicas"]}},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
            "identifier": "{{ .entity.identifier }}", "properties": {"replicas": "{{ .inputs.replicas }}"}}},
        "guardrails": {"approval": approval}
    });
    let made = app.post("/api/v1/actions", action).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
}

async fn request(app: &TestApp, token: &str) -> String {
    let body = json!({"entity": "cart", "properties": {"replicas": 4}});
    let started = app.call_as(Method::POST, "/api/v1/actions/scale/runs", token, Some(body)).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    assert_eq!(started.body["run"]["status"], "WAITING_FOR_APPROVAL");
    started.body["run"]["id"].as_str().expect("id").to_string()
}

async fn decide(app: &TestApp, token: &str, id: &str, status: &str, comment: &str) -> crate::Reply {
    let body = json!({"status": status, "description": comment});
    app.call_as(Method::PATCH, &format!("/api/v1/actions/runs/{id}/approval"), token, Some(body)).await
}

#[tokio::test]
async fn a_listed_approver_other_than_the_requester_lets_the_run_start() {
    let app = spawn_app().await;
    guarded(&app, json!({"approvers": {"users": ["carl"]}})).await;
    let ana = app.member("ana", &[]).await;
    let carl = app.member("carl", &[]).await;
    let bo = app.member("bo", &[]).await;
    let id = request(&app, &ana).await;
    app.drain_jobs().await;
    let waiting = app.get(&format!("/api/v1/actions/runs/{id}")).await;
    assert_eq!(waiting.body["run"]["status"], "WAITING_FOR_APPROVAL", "nothing runs before approval");
    assert_eq!(
        app.get("/api/v1/blueprints/service/entities/cart").await.body["entity"]["properties"].get("replicas"),
        None
    );

    let own = decide(&app, &ana, &id, "APPROVE", "looks fine").await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.body);
    let stranger = decide(&app, &bo, &id, "APPROVE", "").await;
    assert!(matches!(stranger.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "{}", stranger.body);
    let inbox = app.call_as(Method::GET, "/api/v1/approvals", &carl, None).await;
    let ids: Vec<&str> = inbox.body["runs"].as_array().expect("runs").iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, [id.as_str()]);
    assert_eq!(app.call_as(Method::GET, "/api/v1/approvals", &ana, None).await.body["runs"], json!([]), "not her own");

    let approved = decide(&app, &carl, &id, "APPROVE", "go ahead").await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    let done = run_until(&app, &id, Duration::from_secs(5), ended).await;
    assert_eq!(done["run"]["status"], "SUCCESS", "{done}");
    assert_eq!(done["run"]["approval"]["decisions"][0]["by"], "carl");
    assert_eq!(done["run"]["approval"]["decisions"][0]["comment"], "go ahead");
    assert_eq!(app.get("/api/v1/blueprints/service/entities/cart").await.body["entity"]["properties"]["replicas"], 4);
    let again = decide(&app, &carl, &id, "APPROVE", "").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "approving twice: {}", again.body);
    let history = app.get(&format!("/api/v1/audit-log?run={id}")).await;
    let actions: Vec<&str> =
        history.body["records"].as_array().expect("records").iter().filter_map(|r| r["action"].as_str()).collect();
    assert!(actions.contains(&"run.approve"), "{actions:?}");
}

#[tokio::test]
async fn all_needs_each_listed_approver_and_one_decline_ends_the_run() {
    let app = spawn_app().await;
    guarded(&app, json!({"mode": "ALL", "approvers": {"users": ["carl"], "teams": ["team-sre"]}})).await;
    let ana = app.member("ana", &[]).await;
    let carl = app.member("carl", &[]).await;
    let dee = app.member("dee", &["team-sre"]).await;
    let id = request(&app, &ana).await;
    assert_eq!(decide(&app, &carl, &id, "APPROVE", "").await.body["run"]["status"], "WAITING_FOR_APPROVAL");
    assert_eq!(decide(&app, &dee, &id, "APPROVE", "").await.body["run"]["status"], "QUEUED");
    run_until(&app, &id, Duration::from_secs(5), ended).await;

    let declined_run = request(&app, &ana).await;
    let declined = decide(&app, &dee, &declined_run, "DECLINE", "not during the sale").await;
    assert_eq!(declined.body["run"]["status"], "DECLINED", "{}", declined.body);
    assert_eq!(declined.body["run"]["reason"], "declined by dee: not during the sale");
    assert_eq!(decide(&app, &carl, &declined_run, "APPROVE", "").await.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn an_approval_is_of_the_exact_request_and_expires() {
    let clock = ManualClock::at(1_800_000_000_000);
    let app = TestApp::builder().clock(clock.clone()).private_addresses_refused().start().await;
    guarded(&app, json!({"approvers": {"users": ["carl"]}, "expiresAfterHours": 2})).await;
    let ana = app.member("ana", &[]).await;
    let carl = app.member("carl", &[]).await;

    let changed = request(&app, &ana).await;
    let patched =
        app.patch("/api/v1/blueprints/service/entities/cart", json!({"properties": {"lifecycle": "prod"}})).await;
    assert_eq!(patched.status, StatusCode::OK);
    let stale = decide(&app, &carl, &changed, "APPROVE", "").await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert!(stale.body["message"].as_str().is_some_and(|m| m.contains("changed")), "{}", stale.body);

    let late = request(&app, &ana).await;
    clock.advance(2 * 3_600_000 + 1);
    let expired = run_until(&app, &late, Duration::from_secs(5), ended).await;
    assert_eq!(expired["run"]["status"], "DECLINED");
    assert_eq!(expired["run"]["reason"], "no approval before it expired");
}

#[tokio::test]
async fn the_requester_may_cancel_a_waiting_run_and_a_race_with_an_approval_has_one_winner() {
    let app = spawn_app().await;
    guarded(&app, json!({"approvers": {"users": ["carl"]}})).await;
    let ana = app.member("ana", &[]).await;
    let carl = app.member("carl", &[]).await;
    let id = request(&app, &ana).await;
    let cancel = |token: String, id: String| {
        let app = &app;
        async move { app.call_as(Method::POST, &format!("/api/v1/actions/runs/{id}/cancel"), &token, None).await }
    };
    assert_eq!(cancel(carl.clone(), id.clone()).await.status, StatusCode::FORBIDDEN, "not the requester");
    let cancelled = cancel(ana.clone(), id.clone()).await;
    assert_eq!(cancelled.body["run"]["status"], "CANCELLED", "{}", cancelled.body);
    assert_eq!(decide(&app, &carl, &id, "APPROVE", "").await.status, StatusCode::CONFLICT);

    for _ in 0..5 {
        let id = request(&app, &ana).await;
        let (approved, cancelled) =
            tokio::join!(decide(&app, &carl, &id, "APPROVE", ""), cancel(ana.clone(), id.clone()));
        let wins = [approved.status, cancelled.status].iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(wins, 1, "exactly one wins: {} / {}", approved.body, cancelled.body);
        let loser = if approved.status == StatusCode::OK { &cancelled } else { &approved };
        assert_eq!(loser.status, StatusCode::CONFLICT, "and the other is told: {}", loser.body);
        run_until(&app, &id, Duration::from_secs(5), ended).await;
    }
}

#[tokio::test]
async fn port_required_approval_uses_the_approve_grant() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    assert_eq!(app.post("/api/v1/blueprints/service/entities", service("cart")).await.status, StatusCode::CREATED);
    let action = json!({
        "identifier": "retire",
        "trigger": {"type": "self-service", "operation": "DELETE", "blueprintIdentifier": "service"},
        "invocationMethod": {"type": "DELETE_ENTITY", "blueprintIdentifier": "service"},
        "requiredApproval": true
    });
    assert_eq!(app.post("/api/v1/actions", action).await.status, StatusCode::CREATED);
    let ana = app.member("ana", &[]).await;
    let started = app
        .call_as(Method::POST, "/api/v1/actions/retire/runs", &ana, Some(json!({"entity": "cart", "properties": {}})))
        .await;
    let id = started.body["run"]["id"].as_str().expect("id").to_string();
    let member = app.member("max", &[]).await;
    assert!(decide(&app, &member, &id, "APPROVE", "").await.status.is_client_error(), "members do not hold approve");
    assert_eq!(decide(&app, &app.admin_token, &id, "APPROVE", "").await.status, StatusCode::OK);
    assert_eq!(run_until(&app, &id, Duration::from_secs(5), ended).await["run"]["status"], "SUCCESS");
    let bad = json!({"identifier": "x", "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "WEBHOOK", "url": "https://x.example", "signingSecret": "s"},
        "guardrails": {"approval": {"mode": "ALL"}}});
    let refused = app.post("/api/v1/actions", bad).await;
    assert!(refused.detail_paths().contains(&"/guardrails/approval/approvers".to_string()), "{}", refused.body);
}

/// A webhook receiver on a loopback port: what it got, in order.
pub async fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let got: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = std::sync::Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().expect("lock").push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test]
async fn approvers_are_told_of_a_waiting_run_as_a_slack_message() {
    let app = spawn_app().await;
    let (url, got) = receiver().await;
    guarded(&app, json!({"approvers": {"teams": ["team-sre"]}, "notify": {"url": url, "format": "slack"}})).await;
    let ana = app.member("ana", &[]).await;
    let id = request(&app, &ana).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while got.lock().expect("lock").is_empty() {
        assert!(std::time::Instant::now() < deadline, "no notification");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = got.lock().expect("lock")[0]["text"].as_str().unwrap_or_default().to_string();
    assert!(text.starts_with("ana asks to run *scale* on cart; approve or decline by "), "{text}");
    assert!(text.ends_with(&format!("/api/v1/actions/runs/{id}")), "{text}");
}

#[tokio::test]
async fn a_policy_computes_the_approvers_from_the_run() {
    let app = spawn_app().await;
    guarded(&app, json!({"policy": "{teams: .entity.team}"})).await;
    let ana = app.member("ana", &[]).await;
    let owner = app.member("olga", &["team-cart"]).await;
    let other = app.member("otto", &["team-other"]).await;
    app.patch("/api/v1/blueprints/service/entities/cart", json!({"team": ["team-cart"]})).await;
    let id = request(&app, &ana).await;
    assert!(decide(&app, &other, &id, "APPROVE", "").await.status.is_client_error(), "not an owner of cart");
    let approved = decide(&app, &owner, &id, "APPROVE", "mine to approve").await;
    assert_eq!(approved.body["run"]["status"], "QUEUED", "{}", approved.body);
    assert_eq!(approved.body["run"]["approval"]["approvers"]["teams"], json!(["team-cart"]));
    let bad = json!({"identifier": "y", "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "WEBHOOK", "url": "https://x.example", "signingSecret": "s"},
        "guardrails": {"approval": {"policy": "{teams: .entity.team"}}});
    let refused = app.post("/api/v1/actions", bad).await;
    assert!(refused.detail_paths().contains(&"/guardrails/approval/policy".to_string()), "{}", refused.body);
}

#[tokio::test]
async fn an_approval_given_during_a_freeze_waits_for_it_to_end() {
    // Friday 2027-01-15 08:00 UTC; a freeze from 09:00.
    let clock = ManualClock::at(1_800_000_000_000);
    let app = TestApp::builder().clock(clock.clone()).private_addresses_refused().start().await;
    guarded(&app, json!({"approvers": {"users": ["carl"]}})).await;
    let frozen = json!({"identifier": "scale",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
            "userInputs": {"properties": {"replicas": {"type": "number"}}, "required": ["replicas"]}},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
            "identifier": "{{ .entity.identifier }}", "properties": {"replicas": "{{ .inputs.replicas }}"}}},
        "guardrails": {"approval": {"approvers": {"users": ["carl"]}},
                       "freezes": [{"title": "Friday release", "days": ["FRI"], "start": "09:00", "end": "12:00"}]}});
    assert_eq!(app.put("/api/v1/actions/scale", frozen).await.status, StatusCode::OK);
    let ana = app.member("ana", &[]).await;
    let carl = app.member("carl", &[]).await;
    let id = request(&app, &ana).await;
    clock.advance(3_600_000);
    let held = decide(&app, &carl, &id, "APPROVE", "").await;
    assert_eq!(held.status, StatusCode::CONFLICT, "{}", held.body);
    assert_eq!(held.error_code(), "frozen");
    assert_eq!(app.get(&format!("/api/v1/actions/runs/{id}")).await.body["run"]["status"], "WAITING_FOR_APPROVAL");
    clock.advance(3 * 3_600_000);
    assert_eq!(decide(&app, &carl, &id, "APPROVE", "").await.status, StatusCode::OK, "after the freeze");
}
