//! The catalog's past: an entity read `asOf` a time is the version the audit log says it had then.

use std::collections::BTreeMap;

use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{ManualClock, TestApp};

const START: i64 = 1_790_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    /// Creates the entity, or replaces what it has.
    Write {
        replicas: u32,
    },
    Patch {
        replicas: u32,
    },
    Delete,
}

fn op() -> impl Strategy<Value = (usize, Op, i64)> {
    let op = prop_oneof![
        (0..50u32).prop_map(|replicas| Op::Write { replicas }),
        (0..50u32).prop_map(|replicas| Op::Patch { replicas }),
        Just(Op::Delete),
    ];
    (0..3usize, op, 1..5_000i64)
}

fn at(ms: i64) -> String {
    portolan_model::format_millis(ms)
}

/// Applies the operations at their times; what each entity read as right after each change.
async fn replay(app: &TestApp, clock: &ManualClock, ops: &[(usize, Op, i64)]) -> BTreeMap<String, Vec<(i64, Value)>> {
    let blueprint = json!({"identifier": "thing", "schema": {"properties": {"replicas": {"type": "number"}}}});
    assert_eq!(app.post("/api/v1/blueprints", blueprint).await.status, StatusCode::CREATED);
    let mut seen: BTreeMap<String, Vec<(i64, Value)>> = BTreeMap::new();
    let mut now = START;
    for (which, op, wait) in ops {
        clock.advance(*wait);
        now += wait;
        let id = format!("thing-{which}");
        let url = format!("/api/v1/blueprints/thing/entities/{id}");
        let status = match op {
            Op::Write { replicas } => {
                let body = json!({"identifier": id, "title": format!("Thing {replicas}"), "properties": {"replicas": replicas}});
                app.post("/api/v1/blueprints/thing/entities?upsert=true", body).await.status
            }
            Op::Patch { replicas } => app.patch(&url, json!({"properties": {"replicas": replicas}})).await.status,
            Op::Delete => app.delete(&url).await.status,
        };
        assert!(status.is_success() || status == StatusCode::NOT_FOUND, "{op:?} on {id}: {status}");
        let current = app.get(&url).await;
        let version = if current.status == StatusCode::OK { current.body["entity"].clone() } else { Value::Null };
        seen.entry(id).or_default().push((now, version));
    }
    seen
}

async fn check(ops: Vec<(usize, Op, i64)>, probes: Vec<i64>) {
    let clock = ManualClock::at(START);
    let app = TestApp::builder().clock(clock.clone()).start().await;
    let seen = replay(&app, &clock, &ops).await;
    let end = START + ops.iter().map(|(_, _, wait)| wait).sum::<i64>();
    for probe in probes {
        let t = START + probe % (end - START + 1);
        for (id, versions) in &seen {
            let expected = versions.iter().rev().find(|(when, _)| *when <= t).map_or(&Value::Null, |(_, v)| v);
            let reply = app.get(&format!("/api/v1/blueprints/thing/entities/{id}?asOf={}", at(t))).await;
            if expected.is_null() {
                assert_eq!(reply.status, StatusCode::NOT_FOUND, "{id} at {t}: {}", reply.body);
            } else {
                assert_eq!(reply.status, StatusCode::OK, "{id} at {t}: {}", reply.body);
                assert_eq!(&reply.body["entity"], expected, "{id} at {t}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn an_entity_as_of_any_time_is_the_version_it_had_then(
        ops in proptest::collection::vec(op(), 1..25),
        probes in proptest::collection::vec(0..200_000i64, 10),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        runtime.block_on(check(ops, probes));
    }
}

#[tokio::test]
async fn as_of_names_what_it_cannot_answer() {
    let clock = ManualClock::at(START);
    let app = TestApp::builder().clock(clock.clone()).start().await;
    let blueprint = json!({"identifier": "thing", "schema": {"properties": {"replicas": {"type": "number"}}}});
    assert_eq!(app.post("/api/v1/blueprints", blueprint).await.status, StatusCode::CREATED);
    let created =
        app.post("/api/v1/blueprints/thing/entities", json!({"identifier": "t", "properties": {"replicas": 1}})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    clock.advance(1_000);
    assert_eq!(app.delete("/api/v1/blueprints/thing/entities/t").await.status, StatusCode::OK);
    clock.advance(1_000);
    let url = |when: &str| format!("/api/v1/blueprints/thing/entities/t?asOf={when}");

    let before = app.get(&url(&at(START - 1))).await;
    assert_eq!(before.status, StatusCode::NOT_FOUND);
    assert!(before.body["message"].as_str().unwrap_or_default().contains("did not exist yet"), "{}", before.body);
    let deleted = app.get(&url(&at(START + 1_500))).await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);
    assert!(deleted.body["message"].as_str().unwrap_or_default().contains("was deleted at"), "{}", deleted.body);
    assert_eq!(app.get(&url(&at(START + 500))).await.body["entity"]["properties"]["replicas"], 1);

    let future = app.get(&url(&at(START + 60_000))).await;
    assert_eq!(future.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", future.body);
    assert_eq!(future.detail_paths(), vec!["/asOf"]);
    let garbled = app.get(&url("last-tuesday")).await;
    assert_eq!(garbled.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", garbled.body);
    assert_eq!(garbled.detail_paths(), vec!["/asOf"]);
    assert_eq!(
        app.get("/api/v1/blueprints/nothing/entities/t?asOf=2026-01-01T00:00:00Z").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_entity_page_shows_a_past_version_and_links_each_change_to_it() {
    let clock = ManualClock::at(START);
    let app = TestApp::builder().clock(clock.clone()).start().await;
    let blueprint = json!({"identifier": "thing", "schema": {"properties": {"replicas": {"type": "number"}}}});
    assert_eq!(app.post("/api/v1/blueprints", blueprint).await.status, StatusCode::CREATED);
    let thing = json!({"identifier": "t", "properties": {"replicas": 1}});
    assert_eq!(app.post("/api/v1/blueprints/thing/entities", thing).await.status, StatusCode::CREATED);
    clock.advance(60_000);
    let patched = app.patch("/api/v1/blueprints/thing/entities/t", json!({"properties": {"replicas": 7}})).await;
    assert_eq!(patched.status, StatusCode::OK);
    let user = json!({"identifier": "ana@example.com", "password": crate::web::PASSWORD});
    assert_eq!(app.post("/api/v1/users", user).await.status, StatusCode::CREATED);
    let session = crate::web::sign_in(&app, "ana@example.com").await;

    let (status, now) = crate::web::page(&app, "/catalog/thing/t", &session).await;
    assert_eq!(status, StatusCode::OK);
    let first = format!("?asOf={}", at(START).replace(':', "%3A"));
    assert!(now.contains(&format!("<a href=\"{first}\">as it was then</a>")), "{now}");
    let (status, then) = crate::web::page(&app, &format!("/catalog/thing/t{first}"), &session).await;
    assert_eq!(status, StatusCode::OK, "{then}");
    assert!(then.contains("As it was at"), "{then}");
    let replicas = |html: &str| {
        html.split("<dt>replicas</dt><dd>").nth(1).and_then(|r| r.split('<').next()).map(str::trim).map(str::to_string)
    };
    assert_eq!(replicas(&then).as_deref(), Some("1"), "the first version's replicas");
    assert_eq!(replicas(&now).as_deref(), Some("7"), "and now");
}
