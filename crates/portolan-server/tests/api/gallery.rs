//! The gallery: every template installs into an empty server (checked, idempotent), conflicts
//! are refused by name or installed beside, and the guardrails each template sets hold.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::actions::{Answer, Receiver};
use crate::{TestApp, ended, run_until, spawn_app};

fn runner() -> Value {
    json!({"backend": {"type": "RUNNER", "labels": ["ops"]}})
}

async fn install(app: &TestApp, template: &str, body: Value) -> crate::Reply {
    app.post(&format!("/api/v1/gallery/{template}/install"), body).await
}

fn ops(reply: &crate::Reply) -> Vec<String> {
    let changes = reply.body["changes"].as_array().cloned().unwrap_or_default();
    changes.iter().map(|c| c["op"].as_str().unwrap_or_default().to_string()).collect()
}

#[tokio::test]
async fn every_template_installs_alone_into_an_empty_server_and_again_changes_nothing() {
    let listed = spawn_app().await.get("/api/v1/gallery").await;
    let templates = listed.body["templates"].as_array().cloned().expect("templates");
    assert_eq!(templates.len(), 40, "every action of the brief, by area");
    for area in [
        "Microservices SDLC",
        "Development environments",
        "Cloud resources",
        "SRE",
        "Data engineering",
        "Backoffice",
        "Machine learning",
        "One-click operations",
    ] {
        assert!(templates.iter().any(|t| t["area"] == area), "no template in {area}");
    }
    for template in &templates {
        let id = template["identifier"].as_str().expect("identifier");
        assert_eq!(template["installed"], false, "{id}");
        let app = spawn_app().await;
        let preview =
            install(&app, id, json!({"backend": {"type": "RUNNER", "labels": ["ops"]}, "dryRun": true})).await;
        assert_eq!(preview.status, StatusCode::OK, "{id}: {}", preview.body);
        assert!(ops(&preview).iter().all(|op| op == "create"), "{id}: {}", preview.body);
        let actions = template["actions"].as_array().expect("actions");
        let first = actions[0]["identifier"].as_str().expect("an action");
        assert_eq!(
            app.get(&format!("/api/v1/actions/{first}")).await.status,
            StatusCode::NOT_FOUND,
            "a preview writes nothing"
        );

        let installed = install(&app, id, runner()).await;
        assert_eq!(installed.status, StatusCode::OK, "{id}: {}", installed.body);
        for action in actions {
            let stored = app.get(&format!("/api/v1/actions/{}", action["identifier"].as_str().unwrap_or(""))).await;
            assert_eq!(stored.status, StatusCode::OK, "{id}");
            let method = &stored.body["action"]["invocationMethod"];
            assert!(["RUNNER", "UPSERT_ENTITY"].contains(&method["type"].as_str().unwrap_or("")), "{id}: {method}");
        }
        let again = install(&app, id, runner()).await;
        assert!(ops(&again).iter().all(|op| op == "unchanged"), "{id} twice: {}", again.body);
        let listed = app.get(&format!("/api/v1/gallery/{id}")).await;
        assert_eq!(listed.body["template"]["installed"], true, "{id}");
    }
}

#[tokio::test]
async fn a_template_extends_a_stored_blueprint_and_refuses_or_sidesteps_a_conflict() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let before = app.get("/api/v1/blueprints/service").await.body["blueprint"].clone();
    let installed = install(&app, "add_secret", runner()).await;
    assert_eq!(installed.status, StatusCode::OK, "{}", installed.body);
    let after = app.get("/api/v1/blueprints/service").await.body["blueprint"].clone();
    assert_eq!(after["schema"]["properties"]["secrets"]["type"], "array", "the property the template needs is added");
    for (name, property) in before["schema"]["properties"].as_object().expect("properties") {
        assert_eq!(&after["schema"]["properties"][name], property, "'{name}' is left as it was");
    }

    // A stored blueprint with the same name but another shape.
    let made = app
        .post(
            "/api/v1/blueprints",
            json!({"identifier": "customer", "schema": {"properties": {"plan": {"type": "number"}}}}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let refused = install(&app, "create_customer", runner()).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = refused.body["details"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("blueprint 'customer' exists and its property 'plan' has type \"number\""), "{message}");
    assert!(message.contains("renames"), "it says how to install beside it: {message}");
    assert_eq!(app.get("/api/v1/actions/create_customer").await.status, StatusCode::NOT_FOUND, "nothing written");

    let beside = install(
        &app,
        "create_customer",
        json!({"backend": {"type": "RUNNER", "labels": ["ops"]},
                                                          "renames": {"customer": "tenant"}}),
    )
    .await;
    assert_eq!(beside.status, StatusCode::OK, "{}", beside.body);
    let action = app.get("/api/v1/actions/create_customer").await;
    assert_eq!(action.body["action"]["trigger"]["blueprintIdentifier"], "tenant");
    assert_eq!(
        app.get("/api/v1/blueprints/tenant").await.body["blueprint"]["schema"]["properties"]["plan"]["type"],
        "string"
    );
    let untouched = app.get("/api/v1/blueprints/customer").await;
    assert_eq!(
        untouched.body["blueprint"]["schema"]["properties"]["plan"]["type"], "number",
        "the stored one is left alone"
    );
}

#[tokio::test]
async fn bad_installs_are_refused_with_their_reason() {
    let app = spawn_app().await;
    let unknown = install(&app, "make_coffee", runner()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let backend = install(&app, "fetch_logs", json!({"backend": {"type": "SOAP"}})).await;
    assert_eq!(backend.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", backend.body);
    assert_eq!(backend.body["details"][0]["path"], "/backend/type", "{}", backend.body);
    let rename =
        install(&app, "fetch_logs", json!({"backend": {"type": "RUNNER", "labels": []}, "renames": {"table": "t"}}))
            .await;
    assert_eq!(rename.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        rename.body["details"][0]["message"].as_str().unwrap_or("").contains("no blueprint 'table'"),
        "{}",
        rename.body
    );

    let member = app.member("mia@test", &[]).await;
    let body = Some(runner());
    let refused = app.call_as(Method::POST, "/api/v1/gallery/fetch_logs/install", &member, body).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "only admins install: {}", refused.body);
    let looked = app.call_as(Method::GET, "/api/v1/gallery", &member, None).await;
    assert_eq!(looked.status, StatusCode::OK, "everyone may look");
}

/// Installs a template with its work sent to a webhook that answers 200 at once.
async fn with_webhook(app: &TestApp, template: &str) -> Receiver {
    let receiver = Receiver::start(vec![Answer(200, 0, vec![]); 20]).await;
    let body = json!({"backend": {"type": "WEBHOOK", "url": receiver.url}});
    let installed = install(app, template, body).await;
    assert_eq!(installed.status, StatusCode::OK, "{}", installed.body);
    receiver
}

#[tokio::test]
async fn guardrails_of_the_templates_hold_approval_beyond_bounds_and_for_every_force_merge() {
    let app = spawn_app().await;
    with_webhook(&app, "provision_cloud_resource").await;
    app.post("/api/v1/blueprints/service/entities", json!({"identifier": "cart"})).await;
    let inputs = |size: &str| json!({"properties": {"name": format!("cache-{size}"), "kind": "cache", "size": size, "region": "eu-west-1", "service": "cart"}});
    let small = app.post("/api/v1/actions/provision_cloud_resource/runs", inputs("small")).await;
    assert_eq!(small.status, StatusCode::ACCEPTED, "{}", small.body);
    assert_ne!(small.body["run"]["status"], "WAITING_FOR_APPROVAL", "an everyday size runs at once");
    let large = app.post("/api/v1/actions/provision_cloud_resource/runs", inputs("xlarge")).await;
    assert_eq!(large.body["run"]["status"], "WAITING_FOR_APPROVAL", "xlarge needs an approval: {}", large.body);
    let elsewhere = app
        .post(
            "/api/v1/actions/provision_cloud_resource/runs",
            json!({"properties": {
        "name": "cache-x", "kind": "cache", "size": "small", "region": "mars-north-1", "service": "cart"}}),
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::UNPROCESSABLE_ENTITY, "regions are a closed list");

    with_webhook(&app, "force_merge_pull_request").await;
    let pr = json!({"identifier": "cart-pr-7", "properties": {"number": 7, "branch": "fix", "status": "open"}, "relations": {"service": "cart"}});
    assert_eq!(app.post("/api/v1/blueprints/pull_request/entities", pr).await.status, StatusCode::CREATED);
    let no_reason = app
        .post("/api/v1/actions/force_merge_pull_request/runs", json!({"entity": "cart-pr-7", "properties": {}}))
        .await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY, "a reason is required");
    let forced = app
        .post(
            "/api/v1/actions/force_merge_pull_request/runs",
            json!({"entity": "cart-pr-7", "properties": {"reason": "checkout is down for everyone"}}),
        )
        .await;
    assert_eq!(forced.body["run"]["status"], "WAITING_FOR_APPROVAL", "{}", forced.body);
    let again = app
        .post(
            "/api/v1/actions/force_merge_pull_request/runs",
            json!({"entity": "cart-pr-7", "properties": {"reason": "checkout is down for everyone"}}),
        )
        .await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS, "one at a time per pull request: {}", again.body);

    // Deploy-like actions respect the deployments lock the template seeds.
    with_webhook(&app, "deploy_service").await;
    with_webhook(&app, "lock_deployments").await;
    let lock =
        app.post("/api/v1/actions/lock_deployments/runs", json!({"properties": {"reason": "release freeze"}})).await;
    run_until(&app, lock.body["run"]["id"].as_str().expect("id"), Duration::from_secs(5), ended).await;
    let deploy = app
        .post(
            "/api/v1/actions/deploy_service/runs",
            json!({"entity": "cart", "properties": {"version": "1.2.3", "strategy": "canary"}}),
        )
        .await;
    assert_eq!(deploy.status, StatusCode::LOCKED, "{}", deploy.body);
}

#[tokio::test]
async fn temporary_cloud_access_is_revoked_by_its_automation_when_it_ends() {
    let start = 1_800_000_000_000;
    let clock = crate::ManualClock::at(start);
    let app = TestApp::builder().clock(clock.clone()).start().await;
    let receiver = with_webhook(&app, "request_cloud_access").await;
    let grant = json!({"identifier": "bucket-ana", "properties": {"level": "read", "grantee": "ana@test",
        "expiresAt": portolan_model::format_millis(start + 3_600_000)}});
    assert_eq!(app.post("/api/v1/blueprints/access_grant/entities", grant).await.status, StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(receiver.deliveries().is_empty(), "not before it ends");
    clock.0.store(start + 3_600_001, Ordering::SeqCst);
    let started = Instant::now();
    while receiver.deliveries().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "the revoke automation did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivery = &receiver.deliveries()[0];
    assert_eq!(delivery.body["task"], "revoke-cloud-access", "{}", delivery.body);
    assert_eq!(delivery.body["entity"]["identifier"], "bucket-ana");
    assert_eq!(delivery.body["action"]["identifier"], "revoke_expired_cloud_access");
}
