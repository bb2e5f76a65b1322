//! The catalog's past: an entity, a search or an aggregate `asOf` a time answers as the catalog was
//! then, replayed from the versions each write left.

use std::collections::BTreeMap;

use proptest::prelude::*;
use reqwest::{Method, StatusCode};
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
    (0..5usize, op, 1..5_000i64)
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
        let then: Vec<&Value> =
            seen.values().filter_map(|v| v.iter().rev().find(|(when, _)| *when <= t)).map(|(_, v)| v).collect();
        check_search_and_aggregates(&app, t, then.into_iter().filter(|v| !v.is_null()).collect()).await;
    }
}

fn replicas(entity: &Value) -> i64 {
    entity["properties"]["replicas"].as_i64().expect("replicas")
}

/// A search page by page, a count, a sum, an average and counts per value, `asOf` `t`, against the
/// entities as they were then.
async fn check_search_and_aggregates(app: &TestApp, t: i64, then: Vec<&Value>) {
    let mut wanted: Vec<&Value> = then.iter().copied().filter(|e| replicas(e) >= 10).collect();
    wanted.sort_by(|a, b| (replicas(b), b["identifier"].as_str()).cmp(&(replicas(a), a["identifier"].as_str())));
    let query = json!({"combinator": "and", "rules": [{"property": "replicas", "operator": ">=", "value": 10}]});
    let mut found = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let body = json!({"asOf": at(t), "query": query, "sort": {"property": "replicas", "order": "desc"},
                          "limit": 2, "cursor": cursor});
        let page = app.post("/api/v1/blueprints/thing/entities/search", body).await;
        assert_eq!(page.status, StatusCode::OK, "search at {t}: {}", page.body);
        found.extend(page.body["entities"].as_array().expect("entities").iter().cloned());
        cursor = page.body["next"].clone();
        if cursor.is_null() || found.len() > then.len() {
            break;
        }
    }
    assert_eq!(found.iter().collect::<Vec<_>>(), wanted, "search at {t}");

    let aggregate = async |function: &str| {
        let body = json!({"asOf": at(t), "blueprint": "thing", "function": function, "property": "replicas"});
        let reply = app.post("/api/v1/entities/aggregate", body).await;
        assert_eq!(reply.status, StatusCode::OK, "{function} at {t}: {}", reply.body);
        reply.body
    };
    let sum: i64 = then.iter().map(|e| replicas(e)).sum();
    assert_eq!(aggregate("count").await["value"], json!(then.len() as f64), "count at {t}");
    assert_eq!(aggregate("sum").await["value"].as_f64(), (!then.is_empty()).then_some(sum as f64), "sum at {t}");
    let average = aggregate("avg").await["value"].as_f64();
    let expected = (!then.is_empty()).then(|| sum as f64 / then.len() as f64);
    assert!(
        average.zip(expected).is_some_and(|(a, e)| (a - e).abs() < 1e-9) || average == expected,
        "avg at {t}: {average:?}, expected {expected:?}"
    );
    let mut per_value: BTreeMap<i64, u64> = BTreeMap::new();
    for e in &then {
        *per_value.entry(replicas(e)).or_default() += 1;
    }
    let groups = aggregate("countBy").await;
    let counted: BTreeMap<i64, u64> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| (g["value"].as_f64().expect("value") as i64, g["count"].as_u64().expect("count")))
        .collect();
    assert_eq!(counted, per_value, "countBy at {t}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn an_entity_a_search_and_an_aggregate_as_of_any_time_answer_as_the_catalog_was_then(
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

    let search = |when: String| json!({"asOf": when});
    let future = app.post("/api/v1/entities/search", search(at(START + 60_000))).await;
    assert_eq!(future.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", future.body);
    assert_eq!(future.detail_paths(), vec!["/asOf"]);
    let found = app.post("/api/v1/blueprints/thing/entities/search", search(at(START + 500))).await;
    assert_eq!(found.body["entities"][0]["identifier"], "t", "the deleted entity, as it was: {}", found.body);
    assert_eq!(found.body["entities"].as_array().map(Vec::len), Some(1), "{}", found.body);
    let median = json!({"asOf": at(START + 500), "function": "median", "property": "replicas", "blueprint": "thing"});
    let median = app.post("/api/v1/entities/aggregate", median).await;
    assert_eq!(median.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", median.body);
    assert_eq!(median.detail_paths(), vec!["/asOf"]);
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

    // The table as it was: the past value, the entity linked as it was, a way back to now.
    let (status, table) = crate::web::page(&app, &format!("/catalog/thing{first}&col=replicas"), &session).await;
    assert_eq!(status, StatusCode::OK, "{table}");
    assert!(table.contains("Showing the catalog as it was at"), "{table}");
    assert!(table.contains(&format!("href=\"/catalog/thing/t{first}\"")), "{table}");
    assert!(table.contains("<td>1</td>") && !table.contains("<td>7</td>"), "{table}");
    let (status, refused) = crate::web::page(&app, "/catalog/thing?asOf=2999-01-01T00%3A00%3A00Z", &session).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.contains("is in the future"), "{refused}");
}

/// A member's search `asOf` a time applies today's grants to the entities as they were: one their
/// team owned then is found, one it owns only since is not, and counts agree with the search.
#[tokio::test]
async fn a_members_past_search_shows_what_their_team_owned_then() {
    let clock = ManualClock::at(START);
    let app = TestApp::builder().clock(clock.clone()).start().await;
    let blueprint = json!({"identifier": "thing", "schema": {"properties": {"replicas": {"type": "number"}}}});
    assert_eq!(app.post("/api/v1/blueprints", blueprint).await.status, StatusCode::CREATED);
    let ana = app.member("ana", &["team-a"]).await;
    app.member("bo", &["team-b"]).await;
    let read = app.put("/api/v1/blueprints/thing/permissions", json!({"read": {"ownedByTeam": true}})).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    for (id, team) in [("kept", "team-a"), ("given-away", "team-a"), ("taken-over", "team-b")] {
        let thing = json!({"identifier": id, "team": [team], "properties": {"replicas": 1}});
        assert_eq!(app.post("/api/v1/blueprints/thing/entities", thing).await.status, StatusCode::CREATED);
    }
    clock.advance(1_000);
    let then = at(START + 500);
    for (id, team) in [("given-away", "team-b"), ("taken-over", "team-a")] {
        let moved = app.patch(&format!("/api/v1/blueprints/thing/entities/{id}"), json!({"team": [team]})).await;
        assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    }
    clock.advance(1_000);

    let search = |as_of: Option<&str>| json!({"asOf": as_of, "sort": {"property": "$identifier"}});
    let ids = |reply: &crate::Reply| -> Vec<String> {
        reply.body["entities"].as_array().expect("entities").iter().map(|e| e["identifier"].to_string()).collect()
    };
    let url = "/api/v1/blueprints/thing/entities/search";
    let past = app.call_as(Method::POST, url, &ana, Some(search(Some(&then)))).await;
    assert_eq!(ids(&past), ["\"given-away\"", "\"kept\""], "{}", past.body);
    let now = app.call_as(Method::POST, url, &ana, Some(search(None))).await;
    assert_eq!(ids(&now), ["\"kept\"", "\"taken-over\""], "{}", now.body);
    let count = json!({"asOf": then, "blueprint": "thing", "function": "count"});
    let counted = app.call_as(Method::POST, "/api/v1/entities/aggregate", &ana, Some(count)).await;
    assert_eq!(counted.body["value"], json!(2.0), "{}", counted.body);
}
