use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::spawn_app;

fn level(entity: &Value, scorecard: &str) -> Value {
    entity["scorecards"][scorecard]["level"].clone()
}

#[tokio::test]
async fn demo_scorecards_grade_services_and_follow_every_change() {
    let app = spawn_app().await;
    let summary = portolan_server::demo::load(&app.state).await.expect("demo");
    assert_eq!(summary.scorecards_created, 2);

    let cart = app.get("/api/v1/blueprints/service/entities/cart-service").await;
    assert_eq!(level(&cart.body["entity"], "production-readiness"), "Gold");
    assert_eq!(level(&cart.body["entity"], "ownership"), "Reachable");
    let products = app.get("/api/v1/blueprints/service/entities/products-service").await;
    assert_eq!(level(&products.body["entity"], "production-readiness"), "Silver");
    assert_eq!(level(&products.body["entity"], "ownership"), "Owned");
    let rules =
        products.body["entity"]["scorecards"]["production-readiness"]["rules"].as_array().expect("rules").clone();
    let failing: Vec<&str> =
        rules.iter().filter(|r| r["status"] == "FAILURE").filter_map(|r| r["identifier"].as_str()).collect();
    assert_eq!(failing, vec!["highly-available"]);

    // A change to the entity is graded in the same write.
    let patched =
        app.patch("/api/v1/blueprints/service/entities/cart-service", json!({"properties": {"runbook": null}})).await;
    assert_eq!(level(&patched.body["entity"], "production-readiness"), "Basic", "a failed Bronze rule caps the level");

    // Searchable by level, with level order.
    let at_least_silver = app
        .post(
            "/api/v1/blueprints/service/entities/search",
            json!({"combinator": "and", "rules": [
                {"scorecard": "production-readiness", "operator": ">=", "value": "Silver"}
            ]}),
        )
        .await;
    assert_eq!(at_least_silver.status, StatusCode::OK, "{}", at_least_silver.body);
    let ids: Vec<&str> = at_least_silver.body["entities"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["identifier"].as_str())
        .collect();
    assert_eq!(ids, vec!["products-service"]);

    // Changing the scorecard regrades every entity at once.
    let mut scorecard =
        app.get("/api/v1/blueprints/service/scorecards/production-readiness").await.body["scorecard"].clone();
    scorecard["rules"] = json!([{"identifier": "go", "level": "Gold", "query": {"combinator": "and", "rules": [
        {"property": "language", "operator": "=", "value": "Go"}]}}]);
    let replaced = app.put("/api/v1/blueprints/service/scorecards/production-readiness", scorecard).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    let products = app.get("/api/v1/blueprints/service/entities/products-service").await;
    assert_eq!(level(&products.body["entity"], "production-readiness"), "Gold");

    let summary = app.get("/api/v1/blueprints/service/scorecards/production-readiness/summary").await;
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.body);
    assert_eq!(
        summary.body["summary"]["levels"],
        json!([{"level": "Basic", "count": 0}, {"level": "Bronze", "count": 0}, {"level": "Silver", "count": 1}, {"level": "Gold", "count": 1}]),
        "levels without rules pass: the Python service stops at Silver"
    );
    assert_eq!(summary.body["summary"]["teams"]["team-products"], json!({"Gold": 1}));

    let by_level = app
        .post(
            "/api/v1/entities/aggregate",
            json!({"function": "countBy", "blueprint": "service", "scorecard": "ownership"}),
        )
        .await;
    assert_eq!(by_level.status, StatusCode::OK, "{}", by_level.body);
    let mut levels: Vec<(String, u64)> = by_level.body["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| (g["value"].as_str().unwrap_or_default().to_string(), g["count"].as_u64().unwrap_or(0)))
        .collect();
    levels.sort();
    assert_eq!(levels, vec![("Owned".to_string(), 1), ("Reachable".to_string(), 1)]);

    let facets = app
        .post(
            "/api/v1/entities/aggregate",
            json!({"function": "countBy", "blueprint": "service", "property": "language"}),
        )
        .await;
    assert_eq!(facets.body["groups"].as_array().map(Vec::len), Some(2));

    let deleted = app.delete("/api/v1/blueprints/service/scorecards/ownership").await;
    assert_eq!(deleted.status, StatusCode::OK);
    let cart = app.get("/api/v1/blueprints/service/entities/cart-service").await;
    assert_eq!(cart.body["entity"]["scorecards"].get("ownership"), None);
}

#[tokio::test]
async fn invalid_scorecards_and_breaking_schema_changes_are_refused() {
    let app = spawn_app().await;
    portolan_server::demo::load(&app.state).await.expect("demo");
    let bad = app
        .post("/api/v1/blueprints/service/scorecards", json!({"identifier": "x", "rules": [
            {"identifier": "r", "level": "Platinum", "query": {"combinator": "and", "rules": []}},
            {"identifier": "s", "level": "Gold", "query": {"combinator": "and", "rules": [{"property": "colour", "operator": "isEmpty"}]}}
        ]}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.detail_paths(), vec!["/rules/0/level", "/rules/1/query/rules/0/property"]);

    let duplicate =
        app.post("/api/v1/blueprints/service/scorecards", json!({"identifier": "ownership", "rules": []})).await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);

    let unknown_level = app
        .post(
            "/api/v1/blueprints/service/entities/search",
            json!({"combinator": "and", "rules": [
            {"scorecard": "production-readiness", "operator": "=", "value": "Diamond"}]}),
        )
        .await;
    assert_eq!(unknown_level.detail_paths(), vec!["/query/rules/0/value"]);

    // Removing a property a scorecard reads would break it: refused.
    let mut blueprint = app.get("/api/v1/blueprints/service").await.body["blueprint"].clone();
    blueprint["schema"]["properties"].as_object_mut().expect("properties").remove("runbook");
    let cart =
        app.patch("/api/v1/blueprints/service/entities/cart-service", json!({"properties": {"runbook": null}})).await;
    assert_eq!(cart.status, StatusCode::OK);
    let products = app
        .patch("/api/v1/blueprints/service/entities/products-service", json!({"properties": {"runbook": null}}))
        .await;
    assert_eq!(products.status, StatusCode::OK);
    let refused = app.put("/api/v1/blueprints/service", blueprint).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert!(refused.body["message"].as_str().is_some_and(|m| m.contains("production-readiness")), "{}", refused.body);
}
