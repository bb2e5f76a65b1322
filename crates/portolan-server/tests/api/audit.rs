//! The audit log over real HTTP: one record per change and per refusal, in a gapless hash chain,
//! readable with the reader's permissions, and never holding a secret.

use std::time::Duration;

use base64::Engine;
use proptest::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{TestApp, ended, run_until, service, spawn_app};

async fn records(app: &TestApp, query: &str) -> Vec<Value> {
    let reply = app.get(&format!("/api/v1/audit-log?limit=1000{query}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["records"].as_array().expect("records").clone()
}

fn actions(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["action"].as_str().unwrap_or_default().to_string()).collect()
}

#[tokio::test]
async fn each_change_has_one_record_with_its_diff_and_an_entity_has_a_history() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    assert_eq!(app.post("/api/v1/blueprints/service/entities", service("cart")).await.status, StatusCode::CREATED);
    let patched = app.patch("/api/v1/blueprints/service/entities/cart", json!({"properties": {"replicas": 3}})).await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(app.delete("/api/v1/blueprints/service/entities/cart").await.status, StatusCode::OK);

    let history = app.get("/api/v1/blueprints/service/entities/cart/history").await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    let changes = history.body["records"].as_array().expect("records");
    assert_eq!(actions(changes), ["entity.delete", "entity.update", "entity.create"], "newest first");
    let update = &changes[1];
    assert_eq!(update["diff"]["before"]["properties"].get("replicas"), None);
    assert_eq!(update["diff"]["after"]["properties"]["replicas"], 3);
    assert_eq!(update["actor"], "admin@test");
    assert_eq!(update["origin"], "api");
    assert_eq!(update["blueprint"], "service");
    assert_eq!(update["status"], "success");
    assert!(update["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(changes[0]["diff"]["after"], Value::Null);

    let all = records(&app, "").await;
    let seqs: Vec<i64> = all.iter().map(|r| r["seq"].as_i64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[0] == w[1] + 1), "gapless, newest first: {seqs:?}");
    assert_eq!(seqs.last(), Some(&1));
    for pair in all.windows(2) {
        assert_eq!(pair[0]["prevHash"], pair[1]["hash"], "each record chains to the one before");
    }
    let blueprints = records(&app, "&resourceType=blueprint&action=blueprint.create").await;
    let created: Vec<&str> = blueprints.iter().filter_map(|r| r["resourceId"].as_str()).collect();
    assert!(created.contains(&"service") && created.contains(&"_user"), "{created:?}");
    let page = app.get("/api/v1/audit-log?limit=2").await;
    let next = page.body["next"].as_i64().expect("a next page");
    let older = app.get(&format!("/api/v1/audit-log?limit=2&cursor={next}")).await;
    assert_eq!(older.body["records"][0]["seq"].as_i64(), Some(next - 1));
    assert_eq!(app.get("/api/v1/audit-log?from=yesterday").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn refusals_and_failed_sign_ins_are_recorded_and_members_see_only_what_they_may_read() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    app.post("/api/v1/blueprints/_team/entities", json!({"identifier": "team-x"})).await;
    let mut hidden = service("vault");
    hidden["team"] = json!(["team-x"]);
    assert_eq!(app.post("/api/v1/blueprints/service/entities", hidden).await.status, StatusCode::CREATED);
    let ana = app.member("ana", &["team-a"]).await;
    let mut open = service("open");
    open["team"] = json!(["team-a"]);
    assert_eq!(app.post("/api/v1/blueprints/service/entities", open).await.status, StatusCode::CREATED);
    let owned = app.put("/api/v1/blueprints/service/permissions", json!({"read": {"ownedByTeam": true}})).await;
    assert_eq!(owned.status, StatusCode::OK);
    let peek = app.call_as(Method::GET, "/api/v1/blueprints/service/entities/vault", &ana, None).await;
    assert_eq!(peek.status, StatusCode::NOT_FOUND);
    let write = app.call_as(Method::POST, "/api/v1/blueprints", &ana, Some(json!({"identifier": "x"}))).await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    let login = app
        .call_anonymously(
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"username": "ana", "password": "guess-guess"})),
        )
        .await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED);

    let denied = records(&app, "&status=denied").await;
    let summary: Vec<(String, String)> = denied
        .iter()
        .map(|r| (r["actor"].as_str().unwrap_or_default().into(), r["resourceId"].as_str().unwrap_or_default().into()))
        .collect();
    assert!(summary.contains(&("ana".into(), "GET /api/v1/blueprints/service/entities/vault".into())), "{summary:?}");
    assert!(summary.contains(&("ana".into(), "POST /api/v1/blueprints".into())), "{summary:?}");
    let failed = denied.iter().find(|r| r["action"] == "login.failed").expect("the failed sign-in");
    assert_eq!(failed["resourceId"], "ana");
    assert!(!failed.to_string().contains("guess-guess"), "never the password tried");

    // Ana sees her own doings and what she may read; not the hidden service's records.
    let hers = app.call_as(Method::GET, "/api/v1/audit-log?limit=1000", &ana, None).await;
    assert_eq!(hers.status, StatusCode::OK);
    let text = hers.body.to_string();
    assert!(!text.contains("\"resourceId\":\"vault\""), "{text}");
    assert!(text.contains("\"resourceId\":\"open\"") && text.contains("\"actor\":\"ana\""));
    assert!(!text.contains("account.create"), "accounts are admins' business");
    let history = app.call_as(Method::GET, "/api/v1/blueprints/service/entities/vault/history", &ana, None).await;
    assert_eq!(history.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_planted_secret_appears_in_no_record_log_line_or_error() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let canary = "canary 7Hq9/zz+Top";
    let key = app
        .post("/api/v1/secrets", json!({"name": "hook-key", "value": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}))
        .await;
    assert_eq!(key.status, StatusCode::CREATED);
    let stored = app.post("/api/v1/secrets", json!({"name": "CANARY", "value": canary})).await;
    assert_eq!(stored.status, StatusCode::CREATED);
    // A backend that cannot be reached: the run fails, and its reason, logs and records are read.
    let action = json!({
        "identifier": "leak",
        "trigger": {"type": "self-service", "operation": "CREATE", "blueprintIdentifier": "service",
            "userInputs": {"properties": {"name": {"type": "string"}}}},
        "invocationMethod": {"type": "WEBHOOK", "url": "http://127.0.0.1:9/hook", "synchronized": true, "maxAttempts": 1,
            "signingSecret": "hook-key",
            "headers": {"Authorization": "Bearer {{ .secrets.CANARY }}"},
            "body": {"name": "{{ .inputs.name }}", "token": "{{ .secrets.CANARY }}", "encoded": "{{ .secrets.CANARY | @base64 }}",
                "query": "{{ .secrets.CANARY | @uri }}"}}
    });
    let made = app.post("/api/v1/actions", action).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let started = app.post("/api/v1/actions/leak/runs", json!({"properties": {"name": "svc"}})).await;
    let id = started.body["run"]["id"].as_str().expect("run id").to_string();
    let run = run_until(&app, &id, Duration::from_secs(5), ended).await;
    let logs = app.get(&format!("/api/v1/actions/runs/{id}/logs")).await;
    let bad = app.post("/api/v1/secrets", json!({"name": "bad name!", "value": canary})).await;
    let replaced = app.put("/api/v1/secrets/CANARY", json!({"value": format!("{canary}-2")})).await;
    assert_eq!(replaced.status, StatusCode::OK);
    let export = portolan_server::services::audit::export_page(app.state.core.store().as_ref(), 0, 10_000)
        .await
        .expect("export");
    let everything = format!(
        "{}{}{}{}{}",
        serde_json::to_string(&export).expect("json"),
        run,
        logs.body,
        bad.body,
        records(&app, "").await.len()
    );
    let forms = [
        canary.to_string(),
        base64::engine::general_purpose::STANDARD.encode(canary),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(canary),
        "canary%207Hq9%2Fzz%2BTop".to_string(),
        "canary+7Hq9%2Fzz%2BTop".to_string(),
    ];
    for form in forms {
        assert!(!everything.contains(&form), "{form} leaked: {everything}");
    }
    assert!(
        export.iter().any(|r| r.entry.action == "secret.create" && r.entry.resource_id == "CANARY"),
        "the name is recorded"
    );
}

/// One API call of a random sequence, and how many audit records it must leave.
#[derive(Debug, Clone)]
enum Call {
    Create(u8),
    Update(u8),
    Delete(u8),
    MemberWrite,
    MemberPeek,
    Read(u8),
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (0..4u8).prop_map(Call::Create),
        (0..4u8).prop_map(Call::Update),
        (0..4u8).prop_map(Call::Delete),
        Just(Call::MemberWrite),
        Just(Call::MemberPeek),
        (0..4u8).prop_map(Call::Read),
    ]
}

async fn replay(calls: Vec<Call>) {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    app.post("/api/v1/blueprints/_team/entities", json!({"identifier": "team-z"})).await;
    let mut secret = service("secret");
    secret["team"] = json!(["team-z"]);
    assert_eq!(app.post("/api/v1/blueprints/service/entities", secret).await.status, StatusCode::CREATED);
    app.put("/api/v1/blueprints/service/permissions", json!({"read": {"ownedByTeam": true}})).await;
    let member = app.member("max", &["team-a"]).await;
    let start = records(&app, "").await.first().and_then(|r| r["seq"].as_i64()).expect("a head");
    let mut expected = 0;
    for call in calls {
        let ok = match &call {
            Call::Create(n) => {
                app.post("/api/v1/blueprints/service/entities", service(&format!("s{n}"))).await.status
                    == StatusCode::CREATED
            }
            Call::Update(n) => {
                let body = json!({"properties": {"replicas": n}});
                app.patch(&format!("/api/v1/blueprints/service/entities/s{n}"), body).await.status == StatusCode::OK
            }
            Call::Delete(n) => {
                app.delete(&format!("/api/v1/blueprints/service/entities/s{n}")).await.status == StatusCode::OK
            }
            Call::MemberWrite => {
                let reply =
                    app.call_as(Method::POST, "/api/v1/blueprints/service/entities", &member, Some(service("m"))).await;
                assert_eq!(reply.status, StatusCode::FORBIDDEN);
                true
            }
            Call::MemberPeek => {
                let reply = app.call_as(Method::GET, "/api/v1/blueprints/service/entities/secret", &member, None).await;
                assert_eq!(reply.status, StatusCode::NOT_FOUND);
                true
            }
            Call::Read(n) => {
                app.get(&format!("/api/v1/blueprints/service/entities/s{n}")).await;
                false
            }
        };
        if ok {
            expected += 1;
        }
    }
    let after = records(&app, "").await;
    let new: Vec<&Value> = after.iter().filter(|r| r["seq"].as_i64().is_some_and(|s| s > start)).collect();
    assert_eq!(new.len(), expected, "one record per change and per refusal: {:?}", actions(&after));
    let key = &app.state.audit.signer().key;
    match portolan_server::services::audit::verify(app.state.core.store().as_ref(), Some(key), None)
        .await
        .expect("readable")
    {
        Ok(verified) => {
            assert_eq!(verified.records as i64, start + expected as i64, "gapless from 1");
            assert_eq!(verified.unkeyed, 0, "every record is signed with the audit key");
        }
        Err(broken) => panic!("{broken}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn random_calls_leave_exactly_one_record_per_change_and_refusal(calls in proptest::collection::vec(call(), 1..25)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        runtime.block_on(replay(calls));
    }
}
