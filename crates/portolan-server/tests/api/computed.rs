use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestApp, spawn_app};

/// Polls `path` until `check` holds on the entity, and returns how long that took; fails after 1 s.
async fn fresh_within_a_second(app: &TestApp, path: &str, check: impl Fn(&Value) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let reply = app.get(path).await;
        if check(&reply.body["entity"]) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(1), "{path} not fresh within 1 s: {}", reply.body["entity"]);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn mirrors_and_aggregations_follow_changes_within_a_second() {
    let app = spawn_app().await;
    portolan_server::demo::load(&app.state).await.expect("demo");
    let cart_system = "/api/v1/blueprints/system/entities/cart-system";
    let domain = "/api/v1/blueprints/domain/entities/order-domain";
    let cart_service = "/api/v1/blueprints/service/entities/cart-service";

    fresh_within_a_second(&app, domain, |e| e["properties"]["serviceCount"] == 2).await;
    let service = app.get(cart_service).await.body["entity"].clone();
    assert_eq!(service["properties"]["systemLifecycle"], "production", "mirrors are computed on write");
    assert_eq!(service["properties"]["domain"], "Order Domain", "through two relations, to a meta-property");

    let created = app
        .post(
            "/api/v1/blueprints/service/entities",
            json!({"identifier": "checkout", "properties": {
            "language": "Go", "lifecycle": "experimental", "replicas": 3}, "relations": {"system": "cart-system"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["entity"]["properties"]["domain"], "Order Domain");
    fresh_within_a_second(&app, cart_system, |e| {
        e["properties"]["serviceCount"] == 2 && e["properties"]["replicas"] == 9
    })
    .await;
    fresh_within_a_second(&app, domain, |e| e["properties"]["serviceCount"] == 3).await;

    // A change upstream reaches every mirror that reads it.
    app.patch(cart_system, json!({"properties": {"lifecycle": "deprecated"}})).await;
    fresh_within_a_second(&app, cart_service, |e| e["properties"]["systemLifecycle"] == "deprecated").await;
    app.patch(domain, json!({"title": "Orders"})).await;
    fresh_within_a_second(&app, "/api/v1/blueprints/service/entities/checkout", |e| {
        e["properties"]["domain"] == "Orders"
    })
    .await;

    // Computed properties are searchable like any other, and cannot be written.
    let deprecated = app
        .post(
            "/api/v1/blueprints/service/entities/search",
            json!({"combinator": "and", "rules": [
            {"property": "systemLifecycle", "operator": "=", "value": "deprecated"}]}),
        )
        .await;
    let ids: Vec<&str> =
        deprecated.body["entities"].as_array().expect("list").iter().filter_map(|e| e["identifier"].as_str()).collect();
    assert_eq!(ids, vec!["cart-service", "checkout"]);
    let ignored = app.patch(cart_system, json!({"properties": {"serviceCount": 99}})).await;
    assert_eq!(ignored.status, StatusCode::OK);
    assert_eq!(ignored.body["entity"]["properties"]["serviceCount"], 2, "a computed value sent back is ignored");

    // Moving and deleting services updates the counts they left.
    app.patch("/api/v1/blueprints/service/entities/checkout", json!({"relations": {"system": "products-system"}}))
        .await;
    fresh_within_a_second(&app, cart_system, |e| e["properties"]["serviceCount"] == 1).await;
    fresh_within_a_second(&app, "/api/v1/blueprints/system/entities/products-system", |e| {
        e["properties"]["serviceCount"] == 2
    })
    .await;
    app.delete("/api/v1/blueprints/service/entities/checkout").await;
    fresh_within_a_second(&app, "/api/v1/blueprints/system/entities/products-system", |e| {
        e["properties"]["serviceCount"] == 1
    })
    .await;
    fresh_within_a_second(&app, domain, |e| e["properties"]["serviceCount"] == 2).await;
}

#[tokio::test]
async fn invalid_computed_definitions_are_refused() {
    let app = spawn_app().await;
    portolan_server::demo::load(&app.state).await.expect("demo");
    let cases = [
        (json!({"mirrorProperties": {"x": {"path": "nowhere.title"}}}), "/mirrorProperties/x/path"),
        (json!({"mirrorProperties": {"x": {"path": "providesApis.nope"}}}), "/mirrorProperties/x/path"),
        (json!({"mirrorProperties": {"language": {"path": "system.lifecycle"}}}), "/mirrorProperties/language"),
        (
            json!({"aggregationProperties": {"n": {"target": "domain", "calculationSpec": {"calculationBy": "entities", "func": "count"}}}}),
            "/aggregationProperties/n/relation",
        ),
        (
            json!({"aggregationProperties": {"n": {"target": "service", "relation": "dependsOn", "calculationSpec": {"calculationBy": "entities", "func": "count"}}}}),
            "/aggregationProperties/n/relation",
        ),
    ];
    for (patch, path) in cases {
        let reply = app.patch("/api/v1/blueprints/service", patch.clone()).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{patch}: {}", reply.body);
        assert_eq!(reply.detail_paths(), vec![path], "{patch}");
    }
    let bad_spec = app
        .patch(
            "/api/v1/blueprints/system",
            json!({"aggregationProperties": {"n": {"target": "service", "calculationSpec": {
            "calculationBy": "property", "func": "sum", "property": "language"}}}}),
        )
        .await;
    assert_eq!(bad_spec.detail_paths(), vec!["/aggregationProperties/n/calculationSpec/property"]);
}

#[tokio::test]
async fn each_timer_expiry_is_announced_once_and_rescores() {
    let app = spawn_app().await;
    let env = app
        .post(
            "/api/v1/blueprints",
            json!({"identifier": "environment", "schema": {"properties": {
            "ttl": {"type": "string", "format": "timer"}}}}),
        )
        .await;
    assert_eq!(env.status, StatusCode::CREATED, "{}", env.body);
    let card = app
        .post(
            "/api/v1/blueprints/environment/scorecards",
            json!({"identifier": "alive", "levels": [{"title": "Expired"}, {"title": "Alive"}],
            "rules": [{"identifier": "not-expired", "level": "Alive", "query": {"combinator": "and", "rules": [
                {"property": "ttl", "operator": "isNotExpired"}]}}]}),
        )
        .await;
    assert_eq!(card.status, StatusCode::CREATED, "{}", card.body);
    let mut events =
        app.client.get(format!("{}/api/v1/events?blueprint=environment", app.base)).send().await.expect("stream");

    let expires = portolan_model::format_millis(app.state.core.now() + 300);
    let created = app
        .post("/api/v1/blueprints/environment/entities", json!({"identifier": "dev-1", "properties": {"ttl": expires}}))
        .await;
    assert_eq!(created.body["entity"]["scorecards"]["alive"]["level"], "Alive");
    // A timer set in the past, long before any sweep, is announced too.
    let past = app
        .post(
            "/api/v1/blueprints/environment/entities",
            json!({"identifier": "dev-0", "properties": {"ttl": "2020-01-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(past.status, StatusCode::CREATED);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut seen = String::new();
    while seen.matches("event: timer.expired").count() < 2 {
        match tokio::time::timeout_at(deadline, events.chunk()).await {
            Ok(Ok(Some(bytes))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            other => panic!("no timer.expired ({other:?}): {seen}"),
        }
    }
    assert!(seen.contains("\"identifier\":\"dev-0\",\"version\":1,\"property\":\"ttl\""), "{seen}");
    assert!(seen.contains("\"identifier\":\"dev-1\",\"version\":1,\"property\":\"ttl\""), "{seen}");
    fresh_within_a_second(&app, "/api/v1/blueprints/environment/entities/dev-1", |e| {
        e["scorecards"]["alive"]["level"] == "Expired"
    })
    .await;
    // Two more sweeps pass: the expiry is not announced again.
    let quiet_until = tokio::time::Instant::now() + Duration::from_millis(2_200);
    while let Ok(Ok(Some(bytes))) = tokio::time::timeout_at(quiet_until, events.chunk()).await {
        seen.push_str(&String::from_utf8_lossy(&bytes));
    }
    assert_eq!(seen.matches("event: timer.expired").count(), 2, "once per timer: {seen}");
}

#[tokio::test]
async fn changing_computed_definitions_recomputes_existing_entities() {
    let app = spawn_app().await;
    portolan_server::demo::load(&app.state).await.expect("demo");
    let added = app
        .patch(
            "/api/v1/blueprints/service",
            json!({"calculationProperties": {"double": {"calculation": ".properties.replicas * 2", "type": "number"}},
            "mirrorProperties": {"systemTitle": {"path": "system.$title"}}}),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    fresh_within_a_second(&app, "/api/v1/blueprints/service/entities/products-service", |e| {
        e["properties"]["systemTitle"] == "Products System" && e["properties"]["double"].is_number()
    })
    .await;
}

#[tokio::test]
async fn averages_per_period_mirrors_through_many_relations_and_port_paths() {
    const WEEK: i64 = 7 * 86_400_000;
    let clock = crate::ManualClock::at(1_780_000_000_000);
    let app = crate::TestApp::builder().clock(clock.clone()).start().await;
    let library = json!({"identifier": "library", "schema": {"properties": {"language": {"type": "string"}}}});
    let service = json!({"identifier": "svc",
        "relations": {"uses": {"target": "library", "many": true}, "squad": {"target": "squad"}}});
    let deploy = json!({"identifier": "deploy", "schema": {"properties": {"minutes": {"type": "number"}}},
        "relations": {"service": {"target": "svc", "required": true}}});
    for blueprint in [library, json!({"identifier": "squad"}), service, deploy] {
        let reply = app.post("/api/v1/blueprints", blueprint.clone()).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{blueprint}: {}", reply.body);
    }
    let computed = json!({
        "mirrorProperties": {"languages": {"path": "uses.language"}},
        "aggregationProperties": {
            "deploysPerWeek": {"target": "deploy", "calculationSpec": {"calculationBy": "entities", "func": "average",
                "averageOf": "week", "measureTimeBy": "$createdAt"}},
            "minutesPerWeek": {"target": "deploy", "calculationSpec": {"calculationBy": "property", "func": "average",
                "averageOf": "week", "property": "minutes"}},
            "minutesEach": {"target": "deploy", "calculationSpec": {"calculationBy": "property", "func": "average",
                "averageOf": "total", "property": "minutes"}}}});
    let patched = app.patch("/api/v1/blueprints/svc", computed).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    for (id, language) in [("serde", "Rust"), ("gin", "Go")] {
        let lib = json!({"identifier": id, "properties": {"language": language}});
        app.post("/api/v1/blueprints/library/entities", lib).await;
    }
    app.post("/api/v1/blueprints/squad/entities", json!({"identifier": "payments"})).await;
    let cart = json!({"identifier": "cart", "relations": {"uses": ["serde", "gin"], "squad": "payments"}});
    let created = app.post("/api/v1/blueprints/svc/entities", cart).await;
    assert_eq!(created.body["entity"]["properties"]["languages"], json!(["Rust", "Go"]), "{}", created.body);

    // A mirror through a many-relation is a list, searched like any list, and kept fresh.
    let go = json!({"combinator": "and", "rules": [{"property": "languages", "operator": "=", "value": "Go"}]});
    let found = app.post("/api/v1/blueprints/svc/entities/search", go).await;
    assert_eq!(found.body["entities"][0]["identifier"], "cart", "{}", found.body);
    app.patch("/api/v1/blueprints/library/entities/gin", json!({"properties": {"language": "Golang"}})).await;
    app.drain_jobs().await;
    let cart = app.get("/api/v1/blueprints/svc/entities/cart").await;
    assert_eq!(cart.body["entity"]["properties"]["languages"], json!(["Rust", "Golang"]));

    // Port's path rule: following squad reaches the entity named.
    let by_path = |value: Value| json!({"combinator": "and", "rules": [{"property": {"path": ["squad"]}, "operator": "matchAny", "value": value}]});
    let found = app.post("/v1/blueprints/svc/entities/search", by_path(json!("payments"))).await;
    assert_eq!(found.body["entities"].as_array().map(Vec::len), Some(1), "{}", found.body);
    let none = app.post("/v1/blueprints/svc/entities/search", by_path(json!(["search", "ads"]))).await;
    assert_eq!(none.body["entities"], json!([]), "{}", none.body);
    let bad = json!({"combinator": "and", "rules": [{"property": {"path": ["nowhere"]}, "operator": "matchAny", "value": "x"}]});
    let refused = app.post("/v1/blueprints/svc/entities/search", bad).await;
    assert_eq!(refused.detail_paths(), ["/query/rules/0/property/path/0"], "{}", refused.body);

    // Four deploys over three weeks (the third week just begun): 4 / 3 per week.
    for (i, minutes) in [10, 20, 30, 60].into_iter().enumerate() {
        let deploy = json!({"identifier": format!("d{i}"), "properties": {"minutes": minutes},
                            "relations": {"service": "cart"}});
        assert_eq!(app.post("/api/v1/blueprints/deploy/entities", deploy).await.status, StatusCode::CREATED);
        clock.advance(if i == 2 { WEEK + 1_000 } else { WEEK / 2 });
    }
    app.drain_jobs().await;
    let cart = app.get("/api/v1/blueprints/svc/entities/cart").await.body["entity"]["properties"].clone();
    assert_eq!(cart["minutesEach"], 30, "{cart}");
    assert_eq!(cart["deploysPerWeek"].as_f64().map(|v| (v * 1000.0).round()), Some(1333.0), "{cart}");
    assert_eq!(cart["minutesPerWeek"], 40, "120 minutes over 3 weeks: {cart}");

    // Time alone changes an average per period: the sweeper recomputes it every few minutes.
    clock.advance(WEEK);
    let started = std::time::Instant::now();
    loop {
        let cart = app.get("/api/v1/blueprints/svc/entities/cart").await.body["entity"]["properties"].clone();
        if cart["deploysPerWeek"] == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not recomputed as time passed: {cart}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Averages over time need a date to measure by, and a period for counting entities.
    for (spec, path) in [
        (
            json!({"calculationBy": "entities", "func": "average", "averageOf": "total"}),
            "/aggregationProperties/x/calculationSpec",
        ),
        (
            json!({"calculationBy": "entities", "func": "average", "averageOf": "day", "measureTimeBy": "minutes"}),
            "/aggregationProperties/x/calculationSpec/measureTimeBy",
        ),
        (
            json!({"calculationBy": "entities", "func": "count", "averageOf": "day"}),
            "/aggregationProperties/x/calculationSpec",
        ),
    ] {
        let patch = json!({"aggregationProperties": {"x": {"target": "deploy", "calculationSpec": spec}}});
        let refused = app.patch("/api/v1/blueprints/svc", patch).await;
        assert_eq!(refused.detail_paths(), [path], "{spec}: {}", refused.body);
    }
}
