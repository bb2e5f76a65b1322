//! Actions and runs over HTTP: definitions, forms, the webhook, NATS and built-in backends,
//! secrets, automations and timers. Webhooks go to a real local receiver that checks signatures.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{TestApp, ended, run_until, spawn_app};

const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    /// The path and query as the receiver got them (percent-encoding kept).
    pub(crate) uri: axum::http::Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    pub(crate) signature_valid: bool,
}

/// How the receiver answers a request: status, delay, extra headers.
#[derive(Clone)]
pub(crate) struct Answer(pub(crate) u16, pub(crate) u64, pub(crate) Vec<(&'static str, &'static str)>);

/// A webhook receiver on a random loopback port. It answers with `script` in order (the last
/// answer repeats) and checks each delivery's Standard Webhooks signature itself.
pub(crate) struct Receiver {
    pub(crate) url: String,
    seen: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    pub(crate) async fn start(script: Vec<Answer>) -> Receiver {
        let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let script = Arc::new(Mutex::new(script));
        let recorded = Arc::clone(&seen);
        let handler = move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let recorded = Arc::clone(&recorded);
            let script = Arc::clone(&script);
            async move {
                let answer = {
                    let mut script = script.lock().expect("lock");
                    if script.len() > 1 { script.remove(0) } else { script[0].clone() }
                };
                let signature_valid = verify(&headers, &body);
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                recorded.lock().expect("lock").push(Delivery { uri, headers, body, signature_valid });
                tokio::time::sleep(Duration::from_millis(answer.1)).await;
                let mut response = axum::response::Response::builder().status(answer.0);
                for (name, value) in answer.2 {
                    response = response.header(name, value);
                }
                response.body(axum::body::Body::from("{\"ok\":true}")).expect("response")
            }
        };
        let router = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { url, seen }
    }

    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        self.seen.lock().expect("lock").clone()
    }
}

/// The Standard Webhooks check, written here from the specification (not with the server's code).
fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let key = STANDARD.decode(SIGNING_SECRET.trim_start_matches("whsec_")).expect("key");
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).expect("hmac");
    mac.update(format!("{}.{}.", get("webhook-id"), get("webhook-timestamp")).as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    get("webhook-signature").split(' ').any(|s| s == expected)
}

pub(crate) async fn with_signing_secret(app: &TestApp) {
    let created = app.post("/api/v1/secrets", json!({"name": "hook", "value": SIGNING_SECRET})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
}

fn webhook_action(identifier: &str, url: &str, extra: Value) -> Value {
    let mut method = json!({"type": "WEBHOOK", "url": url, "signingSecret": "hook", "synchronized": true});
    for (k, v) in extra.as_object().into_iter().flatten() {
        method[k] = v.clone();
    }
    json!({
        "identifier": identifier,
        "title": identifier,
        "trigger": {"type": "self-service", "operation": "CREATE", "blueprintIdentifier": "service",
                    "userInputs": {"properties": {"name": {"type": "string"}}}},
        "invocationMethod": method
    })
}

async fn create_action(app: &TestApp, action: Value) {
    let created = app.post("/api/v1/actions", action).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
}

pub(crate) async fn start_run(app: &TestApp, action: &str, body: Value) -> String {
    let started = app.post(&format!("/api/v1/actions/{action}/runs"), body).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    assert_eq!(started.body["run"]["status"], "QUEUED");
    started.body["run"]["id"].as_str().expect("run id").to_string()
}

async fn log_lines(app: &TestApp, id: &str) -> Vec<String> {
    let logs = app.get(&format!("/api/v1/actions/runs/{id}/logs")).await;
    logs.body["logs"].as_array().into_iter().flatten().filter_map(|l| l["message"].as_str().map(String::from)).collect()
}

#[tokio::test]
async fn actions_are_validated_whole_when_saved() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let broken = app
        .post(
            "/api/v1/actions",
            json!({
                "identifier": "deploy",
                "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "nope",
                    "userInputs": {"properties": {"env": {"type": "string", "format": "entity", "blueprint": "missing"}},
                                   "required": ["ghost"]}},
                "invocationMethod": {"type": "WEBHOOK", "url": "ftp://x", "signingSecret": "hook",
                                     "body": {"v": "{{ .inputs.env | }}"}}
            }),
        )
        .await;
    assert_eq!(broken.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", broken.body);
    let paths = broken.detail_paths();
    for expected in [
        "/trigger/blueprintIdentifier",
        "/trigger/userInputs/properties/env/blueprint",
        "/trigger/userInputs/required/0",
        "/invocationMethod/url",
        "/invocationMethod/body/v",
    ] {
        assert!(paths.iter().any(|p| p == expected), "{expected} missing from {paths:?}");
    }

    // A secret may be created after the action that reads it (as in Port): the answer warns, and
    // a run before it exists fails naming it.
    let early = app.post("/api/v1/actions", webhook_action("a", "https://ci.example.com/x", json!({}))).await;
    assert_eq!(early.status, StatusCode::CREATED, "{}", early.body);
    assert!(early.body["warnings"][0].as_str().unwrap_or_default().contains("secret 'hook'"), "{}", early.body);
    let started = app.post("/api/v1/actions/a/runs", json!({"properties": {}})).await;
    let id = started.body["run"]["id"].as_str().expect("a run").to_string();
    let failed = run_until(&app, &id, Duration::from_secs(10), crate::ended).await;
    assert_eq!(failed["run"]["status"], "FAILURE", "{failed}");
    let logs = app.get(&format!("/api/v1/actions/runs/{id}/logs")).await;
    let told = format!("{failed}{}", logs.body);
    assert!(told.contains("secret 'hook' does not exist"), "{told}");
    with_signing_secret(&app).await;
    let shown = app.get("/api/v1/actions/a").await;
    assert!(shown.body.get("warnings").is_none(), "{}", shown.body);
    let again = app.post("/api/v1/actions", webhook_action("a", "https://ci.example.com/x", json!({}))).await;
    assert_eq!(again.error_code(), "already_exists");

    let replaced = app.put("/api/v1/actions/a", webhook_action("a", "https://ci.example.com/y", json!({}))).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["action"]["invocationMethod"]["url"], "https://ci.example.com/y");
    let listed = app.get("/api/v1/actions?blueprint=service").await;
    assert_eq!(listed.body["actions"].as_array().map(Vec::len), Some(1));
    let in_use = app.delete("/api/v1/secrets/hook").await;
    assert_eq!(in_use.error_code(), "in_use");
    assert_eq!(app.delete("/api/v1/actions/a").await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/actions/a").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.delete("/api/v1/secrets/hook").await.status, StatusCode::OK);
}

#[tokio::test]
async fn run_requests_are_checked_against_the_form_the_condition_and_the_catalog() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    for (id, language) in [("web", "Go"), ("batch", "Rust")] {
        let made = app
            .post(
                "/api/v1/blueprints/service/entities",
                json!({"identifier": id, "properties": {"language": language}, "relations": {"system": "shop"}}),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    }
    create_action(
        &app,
        json!({
            "identifier": "scale",
            "trigger": {
                "type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
                "condition": {"combinator": "and", "rules": [{"property": "language", "operator": "=", "value": "Go"}]},
                "userInputs": {
                    "properties": {
                        "replicas": {"type": "number", "minimum": 1, "maximum": 10},
                        "peer": {"type": "string", "format": "entity", "blueprint": "service",
                                 "dataset": {"combinator": "and", "rules": [{"property": "language", "operator": "=", "value": "Rust"}]}},
                        "note": {"type": "string", "format": "multi-line", "default": "routine"}
                    },
                    "required": ["replicas"]
                }
            },
            "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service",
                                 "mapping": {"identifier": "{{ .entity.identifier }}", "properties": {"replicas": "{{ .inputs.replicas }}"}}}
        }),
    )
    .await;
    let cases = [
        (json!({"properties": {"replicas": 2}}), "/entity"),
        (json!({"entity": "ghost", "properties": {"replicas": 2}}), "/entity"),
        (json!({"entity": "batch", "properties": {"replicas": 2}}), "/entity"),
        (json!({"entity": "web", "properties": {}}), "/properties/replicas"),
        (json!({"entity": "web", "properties": {"replicas": "two"}}), "/properties/replicas"),
        (json!({"entity": "web", "properties": {"replicas": 11}}), "/properties/replicas"),
        (json!({"entity": "web", "properties": {"replicas": 2, "colour": "red"}}), "/properties/colour"),
        (json!({"entity": "web", "properties": {"replicas": 2, "peer": "ghost"}}), "/properties/peer"),
        (json!({"entity": "web", "properties": {"replicas": 2, "peer": "web"}}), "/properties/peer"),
    ];
    for (body, path) in cases {
        let refused = app.post("/api/v1/actions/scale/runs", body.clone()).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", refused.body);
        assert_eq!(refused.detail_paths(), [path], "{body}: {}", refused.body);
    }
    assert_eq!(app.post("/api/v1/actions/ghost/runs", json!({})).await.status, StatusCode::NOT_FOUND);
    let malformed = app.post("/api/v1/actions/scale/runs", json!({"properties": [], "extra": 1})).await;
    assert_eq!(malformed.error_code(), "validation_failed");

    let id = start_run(&app, "scale", json!({"entity": "web", "properties": {"replicas": 4, "peer": "batch"}})).await;
    let done = run_until(&app, &id, Duration::from_secs(5), ended).await;
    assert_eq!(done["run"]["status"], "SUCCESS", "{done}");
    assert_eq!(done["run"]["inputs"], json!({"replicas": 4, "peer": "batch", "note": "routine"}), "defaults apply");
    assert_eq!(app.get("/api/v1/blueprints/service/entities/web").await.body["entity"]["properties"]["replicas"], 4);
}

#[tokio::test]
async fn a_synchronous_webhook_is_signed_and_its_answer_is_the_result() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    with_signing_secret(&app).await;
    let stored = app.post("/api/v1/secrets", json!({"name": "API_TOKEN", "value": "tok-3f9a2c"})).await;
    assert_eq!(stored.status, StatusCode::CREATED);
    let receiver = Receiver::start(vec![Answer(200, 0, vec![])]).await;
    let action = webhook_action(
        "notify",
        &format!("{}?name={{{{ .inputs.name }}}}", receiver.url),
        json!({"headers": {"Authorization": "Bearer {{ .secrets.API_TOKEN }}"},
               "body": {"name": "{{ .inputs.name }}", "token": "{{ .secrets.API_TOKEN }}", "by": "{{ .trigger.by }}"}}),
    );
    create_action(&app, action).await;
    let id = start_run(&app, "notify", json!({"properties": {"name": "cart"}})).await;
    let done = run_until(&app, &id, Duration::from_secs(5), ended).await;
    assert_eq!(done["run"]["status"], "SUCCESS", "{done}");

    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 1);
    let delivery = &deliveries[0];
    assert!(delivery.signature_valid, "signature: {:?}", delivery.headers);
    assert_eq!(delivery.headers["webhook-id"], format!("msg_{id}").as_str());
    assert_eq!(delivery.headers["authorization"], "Bearer tok-3f9a2c", "the backend gets the secret");
    assert_eq!(delivery.body, json!({"name": "cart", "token": "tok-3f9a2c", "by": "admin@test"}));

    // Nowhere the API shows is the secret: not the run, its payload view, its log or the secret list.
    let everything = format!(
        "{}{}{}",
        done,
        app.get(&format!("/api/v1/actions/runs/{id}/logs")).await.body,
        app.get("/api/v1/secrets").await.body
    );
    assert!(!everything.contains("tok-3f9a2c"), "a secret leaked: {everything}");
    assert_eq!(done["run"]["payload"]["token"], "********");
    assert_eq!(app.get("/api/v1/secrets").await.body["secrets"][1]["name"], "hook");

    // An error that quotes a secret is recorded with the secret masked.
    create_action(
        &app,
        webhook_action("leaky", &receiver.url, json!({"body": {"n": "{{ .secrets.API_TOKEN | tonumber }}"}})),
    )
    .await;
    let id = start_run(&app, "leaky", json!({})).await;
    let failed = run_until(&app, &id, Duration::from_secs(5), ended).await;
    assert_eq!(failed["run"]["status"], "FAILURE");
    let record = format!("{failed}{}", app.get(&format!("/api/v1/actions/runs/{id}/logs")).await.body);
    assert!(!record.contains("tok-3f9a2c") && record.contains("********"), "{record}");
}

#[tokio::test]
async fn an_asynchronous_backend_reports_back_with_its_run_token() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    with_signing_secret(&app).await;
    let receiver = Receiver::start(vec![Answer(202, 0, vec![])]).await;
    create_action(&app, webhook_action("build", &receiver.url, json!({"synchronized": false}))).await;
    let id = start_run(&app, "build", json!({"properties": {"name": "x"}})).await;
    run_until(&app, &id, Duration::from_secs(5), |r| r["status"] == "IN_PROGRESS").await;
    let payload = receiver.deliveries()[0].body.clone();
    assert_eq!(payload["run"]["id"], id.as_str());
    assert_eq!(payload["run"]["url"], format!("{}/api/v1/actions/runs/{id}", app.base).as_str());
    let token = payload["run"]["token"].as_str().expect("run token").to_string();
    let path = format!("/api/v1/actions/runs/{id}");
    let patch = reqwest::Method::PATCH;

    let anonymous = app.patch(&path, json!({"status": "SUCCESS"})).await;
    assert_eq!(anonymous.error_code(), "unauthorized");
    let forged = app.call_as(patch.clone(), &path, &token.replace('_', "-"), Some(json!({"status": "SUCCESS"}))).await;
    assert_eq!(forged.error_code(), "unauthorized");
    let other = start_run(&app, "build", json!({"properties": {"name": "y"}})).await;
    let other_path = format!("/api/v1/actions/runs/{other}");
    let wrong_run = app.call_as(patch.clone(), &other_path, &token, Some(json!({"status": "SUCCESS"}))).await;
    assert_eq!(wrong_run.error_code(), "unauthorized", "a token is for one run only");

    let echoed = format!("using {SIGNING_SECRET}");
    let lines =
        json!({"lines": [{"message": "compiling", "stream": "stdout"}, {"message": "linking"}, {"message": echoed}]});
    let logs = app.call_as(Method::POST, &format!("{path}/logs"), &token, Some(lines)).await;
    assert_eq!(logs.status, StatusCode::CREATED, "{}", logs.body);
    let bad_status = app.call_as(patch.clone(), &path, &token, Some(json!({"status": "DONE"}))).await;
    assert_eq!(bad_status.detail_paths(), ["/status"]);
    let report = json!({"status": "SUCCESS", "link": "https://ci.example.com/builds/7", "summary": "built",
                        "externalRunId": "7", "statusLabel": "green"});
    let finished = app.call_as(patch.clone(), &path, &token, Some(report)).await;
    assert_eq!(finished.status, StatusCode::OK, "{}", finished.body);
    assert_eq!(finished.body["run"]["status"], "SUCCESS");
    assert_eq!(finished.body["run"]["links"], json!(["https://ci.example.com/builds/7"]));
    assert!(finished.body["run"]["endedAt"].is_string());
    let after_end = app.call_as(patch, &path, &token, Some(json!({"status": "FAILURE"}))).await;
    assert_eq!(after_end.error_code(), "run_finished");
    assert_eq!(app.get(&format!("/api/v1/actions/runs/{id}")).await.body["run"]["status"], "SUCCESS", "final");
    let lines = log_lines(&app, &id).await;
    assert!(lines.contains(&"compiling".to_string()) && lines.contains(&"linking".to_string()), "{lines:?}");
    assert!(lines.contains(&"using ********".to_string()), "a secret a backend echoes is masked: {lines:?}");

    // Lists filter by action, status and activity, newest first, with a cursor.
    let active = app.get("/api/v1/actions/runs?action=build&active=true").await;
    assert_eq!(active.body["runs"].as_array().map(|r| r.len()), Some(1), "{}", active.body);
    assert_eq!(active.body["runs"][0]["id"], other.as_str());
    let page = app.get("/api/v1/actions/runs?action=build&limit=1").await;
    assert_eq!(page.body["runs"][0]["id"], other.as_str());
    let next = page.body["next"].as_str().expect("cursor");
    let rest = app.get(&format!("/api/v1/actions/runs?action=build&limit=1&cursor={next}")).await;
    assert_eq!(rest.body["runs"][0]["id"], id.as_str());
    let succeeded = app.get("/api/v1/actions/runs?status=SUCCESS").await;
    assert_eq!(succeeded.body["runs"].as_array().map(|r| r.len()), Some(1));
    assert_eq!(app.get("/api/v1/actions/runs?status=DONE").await.error_code(), "invalid_query");
}

#[tokio::test]
async fn failing_webhooks_are_retried_with_one_id_and_end_with_a_reason() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    with_signing_secret(&app).await;

    // 500, then 429 with Retry-After, then 200: three deliveries of one message.
    let flaky = Receiver::start(vec![
        Answer(500, 0, vec![]),
        Answer(429, 0, vec![("retry-after", "1")]),
        Answer(200, 0, vec![]),
    ])
    .await;
    create_action(&app, webhook_action("flaky", &flaky.url, json!({}))).await;
    let id = start_run(&app, "flaky", json!({})).await;
    let done = run_until(&app, &id, Duration::from_secs(10), ended).await;
    assert_eq!(done["run"]["status"], "SUCCESS", "{done}");
    let ids: Vec<String> =
        flaky.deliveries().iter().map(|d| d.headers["webhook-id"].to_str().expect("id").into()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| *i == ids[0]), "one webhook-id on every attempt: {ids:?}");
    let lines = log_lines(&app, &id).await.join("\n");
    assert!(lines.contains("answered 500") && lines.contains("answered 429"), "{lines}");

    // A webhook that hangs is given up after its attempts, with the reason recorded.
    let hanging = Receiver::start(vec![Answer(200, 5_000, vec![])]).await;
    create_action(&app, webhook_action("hangs", &hanging.url, json!({"timeoutSeconds": 1, "maxAttempts": 2}))).await;
    let id = start_run(&app, "hangs", json!({})).await;
    let done = run_until(&app, &id, Duration::from_secs(10), ended).await;
    assert_eq!(done["run"]["status"], "FAILURE");
    let reason = done["run"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("gave up after 2 attempts") && reason.contains("no answer within 1.0 s"), "{reason}");

    // Redirects are not followed; client errors are final at once.
    let redirect = Receiver::start(vec![Answer(302, 0, vec![("location", "http://169.254.169.254/")])]).await;
    create_action(&app, webhook_action("redirects", &redirect.url, json!({}))).await;
    let id = start_run(&app, "redirects", json!({})).await;
    let done = run_until(&app, &id, Duration::from_secs(5), ended).await;
    assert_eq!(done["run"]["status"], "FAILURE");
    assert!(done["run"]["reason"].as_str().unwrap_or_default().contains("redirects are not followed"), "{done}");
    assert_eq!(redirect.deliveries().len(), 1);

    let gone = Receiver::start(vec![Answer(404, 0, vec![])]).await;
    create_action(&app, webhook_action("gone", &gone.url, json!({}))).await;
    let id = start_run(&app, "gone", json!({})).await;
    let done = run_until(&app, &id, Duration::from_secs(5), ended).await;
    assert!(done["run"]["reason"].as_str().unwrap_or_default().contains("answered 404"), "{done}");
    assert_eq!(gone.deliveries().len(), 1, "a 404 is not retried");

    // An answer that is not HTTP at all is a failed attempt like any other.
    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let garbage_url = format!("http://{}/", garbage.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = garbage.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = socket.write_all(b"\x00\x01 this is not HTTP\r\n\r\n").await;
        }
    });
    create_action(&app, webhook_action("garbage", &garbage_url, json!({"maxAttempts": 1}))).await;
    let id = start_run(&app, "garbage", json!({})).await;
    let done = run_until(&app, &id, Duration::from_secs(5), ended).await;
    assert_eq!(done["run"]["status"], "FAILURE");
    assert!(done["run"]["reason"].as_str().unwrap_or_default().contains("cannot reach the webhook"), "{done}");

    // A template that fails at run time fails the run, saying why.
    create_action(
        &app,
        webhook_action("bad-template", &gone.url, json!({"body": {"n": "{{ .inputs.name | tonumber }}"}})),
    )
    .await;
    let id = start_run(&app, "bad-template", json!({"properties": {"name": "not a number"}})).await;
    let done = run_until(&app, &id, Duration::from_secs(5), ended).await;
    assert_eq!(done["run"]["status"], "FAILURE");
    assert!(done["run"]["reason"].as_str().unwrap_or_default().contains("template failed"), "{done}");
}

#[tokio::test]
async fn webhooks_cannot_reach_private_addresses_unless_allowed() {
    let app = TestApp::builder()
        .clock(Arc::new(portolan_server::services::SystemClock))
        .private_addresses_refused()
        .start()
        .await;
    app.with_service_blueprints().await;
    with_signing_secret(&app).await;
    let receiver = Receiver::start(vec![Answer(200, 0, vec![])]).await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    for (name, url) in
        [("literal", receiver.url.clone()), ("named", by_name), ("metadata", "http://169.254.169.254/latest".into())]
    {
        create_action(&app, webhook_action(name, &url, json!({"maxAttempts": 1}))).await;
        let id = start_run(&app, name, json!({})).await;
        let done = run_until(&app, &id, Duration::from_secs(5), ended).await;
        assert_eq!(done["run"]["status"], "FAILURE", "{done}");
        let reason = done["run"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("private or loopback"), "{name}: {reason}");
    }
    assert!(receiver.deliveries().is_empty(), "nothing reached the private address");
}

#[tokio::test]
async fn built_in_backends_change_the_catalog_and_link_what_they_did_to_the_run() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    create_action(
        &app,
        json!({
            "identifier": "register",
            "trigger": {"type": "self-service", "operation": "CREATE", "blueprintIdentifier": "service",
                "userInputs": {"properties": {"name": {"type": "string"}, "language": {"type": "string", "enum": ["Go", "Rust"]}},
                               "required": ["name", "language"]}},
            "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
                "identifier": "{{ .inputs.name }}", "title": "{{ .inputs.name | ascii_upcase }}",
                "properties": {"language": "{{ .inputs.language }}"}, "relations": {"system": "shop"}}}
        }),
    )
    .await;
    create_action(
        &app,
        json!({
            "identifier": "retire",
            "trigger": {"type": "self-service", "operation": "DELETE", "blueprintIdentifier": "service"},
            "invocationMethod": {"type": "DELETE_ENTITY", "blueprintIdentifier": "service"}
        }),
    )
    .await;
    let id = start_run(&app, "register", json!({"properties": {"name": "ledger", "language": "Go"}})).await;
    let done = run_until(&app, &id, Duration::from_secs(5), ended).await;
    assert_eq!(done["run"]["status"], "SUCCESS", "{done}");
    assert_eq!(
        done["affectedEntities"],
        json!([{"blueprint": "service", "identifier": "ledger", "change": "created"}])
    );
    let ledger = app.get("/api/v1/blueprints/service/entities/ledger").await;
    assert_eq!(ledger.body["entity"]["title"], "LEDGER");
    assert_eq!(ledger.body["entity"]["createdBy"], format!("run:{id}").as_str());
    let made_by = app.get("/api/v1/blueprints/service/entities/ledger/runs").await;
    assert_eq!(made_by.body["runs"][0]["run"]["id"], id.as_str());
    assert_eq!(made_by.body["runs"][0]["change"], "created");

    // A mapping that makes an invalid entity fails the run with the validation's words.
    let bad = start_run(&app, "register", json!({"properties": {"name": "bad id!", "language": "Go"}})).await;
    let failed = run_until(&app, &bad, Duration::from_secs(5), ended).await;
    assert_eq!(failed["run"]["status"], "FAILURE");
    assert!(failed["run"]["reason"].as_str().unwrap_or_default().contains("identifier"), "{failed}");

    // Writes through the API that name a run are linked to it too, until it ends.
    let retire = start_run(&app, "retire", json!({"entity": "ledger"})).await;
    let retired = run_until(&app, &retire, Duration::from_secs(5), ended).await;
    assert_eq!(retired["run"]["status"], "SUCCESS", "{retired}");
    assert_eq!(app.get("/api/v1/blueprints/service/entities/ledger").await.status, StatusCode::NOT_FOUND);
    assert_eq!(retired["affectedEntities"][0]["change"], "deleted");
    let late = app.post(&format!("/api/v1/blueprints/service/entities?run_id={id}"), crate::service("late")).await;
    assert_eq!(late.error_code(), "run_finished");
    let unknown = app.post("/api/v1/blueprints/service/entities?run_id=r_nope", crate::service("late")).await;
    assert_eq!(unknown.detail_paths(), ["/run_id"]);
}

#[tokio::test]
async fn automations_fire_on_entity_events_whose_condition_holds() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    with_signing_secret(&app).await;
    let receiver = Receiver::start(vec![Answer(200, 0, vec![])]).await;
    create_action(
        &app,
        json!({
            "identifier": "on-go-service",
            "trigger": {"type": "automation", "event": {"type": "ENTITY_CREATED", "blueprintIdentifier": "service"},
                        "condition": {"type": "JQ", "expressions": [".diff.after.properties.language == \"Go\"", ".diff.before == null"]}},
            "invocationMethod": {"type": "WEBHOOK", "url": receiver.url, "signingSecret": "hook", "synchronized": true,
                                 "body": {"created": "{{ .entity.identifier }}", "event": "{{ .trigger.event.type }}"}}
        }),
    )
    .await;
    let refused = app.post("/api/v1/actions/on-go-service/runs", json!({})).await;
    assert_eq!(refused.error_code(), "validation_failed", "automations are not run by hand");
    for (id, language) in [("a-go", "Go"), ("a-rust", "Rust")] {
        let body = json!({"identifier": id, "properties": {"language": language}, "relations": {"system": "shop"}});
        assert_eq!(app.post("/api/v1/blueprints/service/entities", body).await.status, StatusCode::CREATED);
    }
    app.patch("/api/v1/blueprints/service/entities/a-go", json!({"properties": {"replicas": 2}})).await;
    let started = Instant::now();
    while receiver.deliveries().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "the automation did not fire");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.drain_jobs().await;
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 1, "once, for the Go service only: {deliveries:?}");
    assert_eq!(deliveries[0].body, json!({"created": "a-go", "event": "ENTITY_CREATED"}));
    let runs = app.get("/api/v1/actions/runs?action=on-go-service").await;
    assert_eq!(runs.body["runs"][0]["trigger"]["origin"], "automation");
    assert_eq!(runs.body["runs"][0]["entity"], "a-go");
}

#[tokio::test]
async fn an_any_entity_change_automation_hears_creates_updates_and_deletes() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    with_signing_secret(&app).await;
    let receiver = Receiver::start(vec![Answer(200, 0, vec![]); 3]).await;
    create_action(
        &app,
        json!({
            "identifier": "audit-services",
            "trigger": {"type": "automation", "event": {"type": "ANY_ENTITY_CHANGE", "blueprintIdentifier": "service"}},
            "invocationMethod": {"type": "WEBHOOK", "url": receiver.url, "signingSecret": "hook", "synchronized": true,
                                 "body": {"event": "{{ .trigger.event.type }}"}}
        }),
    )
    .await;
    let body = json!({"identifier": "svc", "properties": {"language": "Go"}, "relations": {"system": "shop"}});
    assert_eq!(app.post("/api/v1/blueprints/service/entities", body).await.status, StatusCode::CREATED);
    app.drain_jobs().await;
    app.patch("/api/v1/blueprints/service/entities/svc", json!({"properties": {"replicas": 2}})).await;
    app.drain_jobs().await;
    app.delete("/api/v1/blueprints/service/entities/svc").await;
    let started = Instant::now();
    while receiver.deliveries().len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(5), "heard {:?}", receiver.deliveries());
        app.drain_jobs().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let heard: Vec<Value> = receiver.deliveries().into_iter().map(|d| d.body["event"].clone()).collect();
    assert_eq!(heard, [json!("ENTITY_CREATED"), json!("ENTITY_UPDATED"), json!("ENTITY_DELETED")]);
}

#[tokio::test]
async fn an_expired_timer_runs_its_teardown_automation_exactly_once() {
    let start = 1_800_000_000_000;
    let clock = crate::ManualClock::at(start);
    let app = TestApp::builder().clock(clock.clone()).start().await;
    let made = app
        .post(
            "/api/v1/blueprints",
            json!({"identifier": "environment", "schema": {"properties": {"ttl": {"type": "string", "format": "timer"}}}}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    create_action(
        &app,
        json!({
            "identifier": "teardown",
            "trigger": {"type": "automation", "event": {"type": "TIMER_PROPERTY_EXPIRED", "blueprintIdentifier": "environment", "propertyIdentifier": "ttl"}},
            "invocationMethod": {"type": "DELETE_ENTITY", "blueprintIdentifier": "environment"}
        }),
    )
    .await;
    let in_an_hour = portolan_model::format_millis(start + 3_600_000);
    for id in ["dev-1", "dev-2"] {
        let made = app
            .post(
                "/api/v1/blueprints/environment/entities",
                json!({"identifier": id, "properties": {"ttl": in_an_hour}}),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    }
    let later = portolan_model::format_millis(start + 7_200_000);
    app.patch("/api/v1/blueprints/environment/entities/dev-2", json!({"properties": {"ttl": later}})).await;

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(app.get("/api/v1/blueprints/environment/entities/dev-1").await.status, StatusCode::OK, "not yet");
    clock.0.store(start + 3_600_001, Ordering::SeqCst);
    let started = Instant::now();
    while app.get("/api/v1/blueprints/environment/entities/dev-1").await.status != StatusCode::NOT_FOUND {
        assert!(started.elapsed() < Duration::from_secs(5), "dev-1 was not torn down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.get("/api/v1/blueprints/environment/entities/dev-2").await.status, StatusCode::OK, "extended");
    // More sweeps pass; the expiry fires once.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let runs = app.get("/api/v1/actions/runs?action=teardown").await;
    let runs = runs.body["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "SUCCESS");
    assert_eq!(runs[0]["entity"], "dev-1");

    // A run token outlives its run by a week at most.
    let runner = json!({
        "identifier": "long",
        "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "RUNNER", "labels": ["x"], "task": "noop"}
    });
    create_action(&app, runner).await;
    let token = app.post("/api/v1/runners/tokens", json!({"name": "r", "labels": ["x"]})).await.body["token"]
        .as_str()
        .expect("token")
        .to_string();
    let id = start_run(&app, "long", json!({})).await;
    let claimed = app.call_as(Method::POST, "/api/v1/runners/claim", &token, Some(json!({"waitSeconds": 2}))).await;
    let run_token = claimed.body["claim"]["runToken"].as_str().expect("run token").to_string();
    clock.0.store(start + 3_600_001 + 8 * 86_400_000, Ordering::SeqCst);
    let path = format!("/api/v1/actions/runs/{id}");
    let late = app.call_as(reqwest::Method::PATCH, &path, &run_token, Some(json!({"status": "SUCCESS"}))).await;
    assert_eq!(late.error_code(), "token_expired");
}

#[tokio::test]
async fn the_live_log_stream_replays_and_follows_a_run_to_its_end() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    with_signing_secret(&app).await;
    let receiver = Receiver::start(vec![Answer(200, 0, vec![])]).await;
    create_action(&app, webhook_action("slow", &receiver.url, json!({"synchronized": false}))).await;
    let id = start_run(&app, "slow", json!({})).await;
    run_until(&app, &id, Duration::from_secs(5), |r| r["status"] == "IN_PROGRESS").await;
    let token = receiver.deliveries()[0].body["run"]["token"].as_str().expect("token").to_string();
    let mut stream = app
        .client
        .get(format!("{}/api/v1/actions/runs/{id}/logs/stream", app.base))
        .send()
        .await
        .expect("stream opens");
    assert_eq!(stream.status(), StatusCode::OK);
    let url = format!("{}/api/v1/actions/runs/{id}", app.base);
    let client = app.client.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ =
            client.post(format!("{url}/logs")).bearer_auth(&token).json(&json!({"message": "step two"})).send().await;
        let _ = client.patch(&url).bearer_auth(&token).json(&json!({"status": "SUCCESS"})).send().await;
    });
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Ok(Some(bytes))) = tokio::time::timeout_at(deadline, stream.chunk()).await {
        seen.push_str(&String::from_utf8_lossy(&bytes));
    }
    assert!(seen.contains("requested by admin@test"), "replays what was logged: {seen}");
    assert!(seen.contains("step two"), "follows new lines: {seen}");
    assert!(seen.contains("event: end") && seen.contains("SUCCESS"), "ends with the run: {seen}");
    assert_eq!(
        app.call(Method::GET, "/api/v1/actions/runs/r_ghost/logs/stream", None).await.status,
        StatusCode::NOT_FOUND
    );
}

/// NATS JetStream end to end, against the server `PORTOLAN_TEST_NATS_URL` names (CI sets it).
#[tokio::test]
async fn nats_runs_are_published_to_jetstream_once_per_run() {
    let Ok(nats_url) = std::env::var("PORTOLAN_TEST_NATS_URL") else {
        eprintln!("PORTOLAN_TEST_NATS_URL is not set; NATS is tested in CI");
        return;
    };
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let subject = format!("portolan.test.{suffix}");
    let client = async_nats::connect(&nats_url).await.expect("NATS is reachable");
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: format!("PORTOLAN_TEST_{suffix}"),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .expect("stream created");
    create_action(
        &app,
        json!({
            "identifier": "publish",
            "trigger": {"type": "self-service", "operation": "CREATE", "blueprintIdentifier": "service",
                        "userInputs": {"properties": {"name": {"type": "string"}}}},
            "invocationMethod": {"type": "NATS", "subject": subject}
        }),
    )
    .await;
    let id = start_run(&app, "publish", json!({"properties": {"name": "cart"}})).await;
    run_until(&app, &id, Duration::from_secs(10), |r| r["status"] == "IN_PROGRESS").await;
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 1);
    let message = stream.get_raw_message(1).await.expect("message");
    let payload: Value = serde_json::from_slice(&message.payload).expect("JSON payload");
    assert_eq!(payload["inputs"]["name"], "cart");
    assert_eq!(payload["run"]["id"], id.as_str());
    let message_id = message.headers.get("Nats-Msg-Id").map(|v| v.to_string());
    assert_eq!(message_id.as_deref(), Some(id.as_str()), "the run id dedupes redeliveries");
    // The consumer reports back like any backend.
    let token = payload["run"]["token"].as_str().expect("token");
    let done = app
        .client
        .patch(format!("{}/api/v1/actions/runs/{id}", app.base))
        .bearer_auth(token)
        .json(&json!({"status": "SUCCESS"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(done.status(), StatusCode::OK);
    jetstream.delete_stream(format!("PORTOLAN_TEST_{suffix}")).await.expect("stream deleted");
}

#[tokio::test]
async fn an_automation_that_triggers_itself_stops_after_a_few_hops() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    create_action(
        &app,
        json!({
            "identifier": "bump",
            "trigger": {"type": "automation", "event": {"type": "ENTITY_UPDATED", "blueprintIdentifier": "service"}},
            "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
                "identifier": "{{ .entity.identifier }}",
                "properties": {"replicas": "{{ (.entity.properties.replicas // 0) + 1 }}"}}}
        }),
    )
    .await;
    assert_eq!(
        app.post("/api/v1/blueprints/service/entities", crate::service("loop")).await.status,
        StatusCode::CREATED
    );
    app.patch("/api/v1/blueprints/service/entities/loop", json!({"properties": {"replicas": 1}})).await;
    app.drain_jobs().await;
    let runs = app.get("/api/v1/actions/runs?action=bump").await.body["runs"].as_array().cloned().unwrap_or_default();
    let depths: Vec<i64> = runs.iter().filter_map(|r| r["depth"].as_i64()).collect();
    assert_eq!(runs.len(), 3, "one run per hop, three hops: {depths:?}");
    let replicas =
        app.get("/api/v1/blueprints/service/entities/loop").await.body["entity"]["properties"]["replicas"].clone();
    assert_eq!(replicas, 4, "the person's change and three automated ones");
}

#[tokio::test]
async fn runs_in_flight_move_with_migrate_store_and_carry_on() {
    // A deployment whose worker never ran: its run is accepted and queued.
    let source_dir = tempfile::tempdir().expect("temp dir");
    let source = portolan_store::open(&source_dir.path().to_string_lossy()).await.expect("source");
    let clock = Arc::new(portolan_server::services::SystemClock);
    let old = portolan_server::AppState::build(Arc::clone(&source), clock.clone(), crate::test_settings())
        .await
        .expect("state");
    let receiver = Receiver::start(vec![Answer(200, 0, vec![])]).await;
    let actor = portolan_server::services::Actor::system("tests", portolan_server::services::Origin::Api);
    old.actions.put_secret(&actor, "hook", SIGNING_SECRET).await.expect("secret");
    let action = json!({
        "identifier": "notify",
        "trigger": {"type": "self-service", "operation": "CREATE"},
        "invocationMethod": {"type": "WEBHOOK", "url": receiver.url, "signingSecret": "hook", "synchronized": true}
    });
    old.actions.put_action(&actor, None, action).await.expect("action");
    let request = portolan_server::services::runs::RunRequest::default();
    let run = old.runs.create_run(&actor, "notify", request).await.expect("run");

    let target_dir = tempfile::tempdir().expect("temp dir");
    let target = portolan_store::open(&target_dir.path().to_string_lossy()).await.expect("target");
    let report =
        portolan_server::services::migrate::copy_store(source.as_ref(), target.as_ref(), 0).await.expect("copy");
    assert_eq!((report.runs, report.actions, report.secrets), (1, 1, 1));
    drop(target);

    // The new deployment delivers it, signed with the secret sealed by the old one.
    let app = TestApp::builder().dir(target_dir).clock(clock).start().await;
    let done = run_until(&app, &run.id, Duration::from_secs(5), ended).await;
    assert_eq!(done["run"]["status"], "SUCCESS", "{done}");
    assert!(receiver.deliveries()[0].signature_valid);
}

#[tokio::test]
async fn webhook_url_values_land_in_their_own_path_segment_and_query_value() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    with_signing_secret(&app).await;
    let receiver = Receiver::start(vec![Answer(200, 0, vec![])]).await;
    let action = json!({
        "identifier": "build", "title": "Build",
        "trigger": {"type": "self-service", "operation": "CREATE", "blueprintIdentifier": "service",
                    "userInputs": {"properties": {"branch": {"type": "string"}, "project": {"type": "string"}}}},
        "invocationMethod": {"type": "WEBHOOK", "signingSecret": "hook", "synchronized": true,
            "url": format!("{}/{{{{ .inputs.branch }}}}/start?project={{{{ .inputs.project }}}}&x=1", receiver.url)}
    });
    create_action(&app, action).await;
    let inputs = json!({"properties": {"branch": "../../admin/delete-all#", "project": "main?project=other&x="}});
    let id = start_run(&app, "build", inputs).await;
    let done = run_until(&app, &id, Duration::from_secs(5), ended).await;
    assert_eq!(done["run"]["status"], "SUCCESS", "{done}");
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 1);
    let uri = &deliveries[0].uri;
    assert_eq!(uri.path(), "/hook/..%2F..%2Fadmin%2Fdelete-all%23/start", "one path segment, not /admin/delete-all");
    assert_eq!(uri.query(), Some("project=main%3Fproject%3Dother%26x%3D&x=1"), "one query value");
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(pairs, [("project".into(), "main?project=other&x=".into()), ("x".into(), "1".into())]);

    // A value that would still change the URL (a '..' segment) is refused, in a dry run and a run.
    let climbing = json!({"properties": {"branch": "..", "project": "p"}});
    let dry = app.post("/api/v1/actions/build/runs?dry_run=true", climbing.clone()).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.body);
    let error = dry.body["dryRun"]["renderError"].as_str().unwrap_or_default();
    assert!(error.contains("/invocationMethod/url") && error.contains("'..' path segment"), "{}", dry.body);
    assert!(dry.body["dryRun"]["rendered"].is_null());
    let id = start_run(&app, "build", climbing).await;
    let failed = run_until(&app, &id, Duration::from_secs(5), ended).await;
    assert_eq!(failed["run"]["status"], "FAILURE");
    let reason = failed["run"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("{{ .inputs.branch }} gave \"..\", which is refused"), "{reason}");
    assert_eq!(receiver.deliveries().len(), 1, "nothing more was delivered");
}
