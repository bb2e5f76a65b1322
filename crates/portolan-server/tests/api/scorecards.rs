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

#[tokio::test]
async fn level_history_keeps_a_sample_per_day_shows_members_their_teams_and_expires() {
    use portolan_model::permission::Role;
    use reqwest::Method;

    const DAY: i64 = 86_400_000;
    let start = 1_790_000_000_000 / DAY * DAY + 3_600_000;
    let clock = crate::ManualClock::at(start);
    let app = crate::TestApp::builder().clock(clock.clone()).start().await;
    app.with_service_blueprints().await;
    for team in ["team-a", "team-b"] {
        assert_eq!(
            app.post("/api/v1/blueprints/_team/entities", json!({"identifier": team})).await.status,
            StatusCode::CREATED
        );
    }
    let scorecard = json!({"identifier": "replicated", "rules": [{"identifier": "two", "level": "Gold",
        "query": {"combinator": "and", "rules": [{"property": "replicas", "operator": ">=", "value": 2}]}}]});
    assert_eq!(app.post("/api/v1/blueprints/service/scorecards", scorecard).await.status, StatusCode::CREATED);
    for (id, team, replicas) in [("a1", "team-a", 1), ("a2", "team-a", 3), ("b1", "team-b", 1)] {
        let mut service = crate::service(id);
        service["team"] = json!([team]);
        service["properties"]["replicas"] = json!(replicas);
        assert_eq!(app.post("/api/v1/blueprints/service/entities", service).await.status, StatusCode::CREATED);
    }
    app.state.scorecards.sample_levels().await.expect("first day");
    clock.advance(DAY);
    let patched = app.patch("/api/v1/blueprints/service/entities/a1", json!({"properties": {"replicas": 2}})).await;
    assert_eq!(patched.status, StatusCode::OK);
    app.state.scorecards.sample_levels().await.expect("second day");
    clock.advance(3_600_000);
    let patched = app.patch("/api/v1/blueprints/service/entities/b1", json!({"properties": {"replicas": 5}})).await;
    assert_eq!(patched.status, StatusCode::OK);
    app.state.scorecards.sample_levels().await.expect("second day, later");

    let history = app.get("/api/v1/blueprints/service/scorecards/replicated/history?days=7").await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    let days = history.body["history"]["days"].as_array().expect("days").clone();
    assert_eq!(days.len(), 2);
    // Without Bronze or Silver rules, a service short of Gold is Silver.
    assert_eq!(days[0]["counts"], json!({"Basic": 0, "Bronze": 0, "Silver": 2, "Gold": 1}));
    assert_eq!(
        days[1]["counts"],
        json!({"Basic": 0, "Bronze": 0, "Silver": 0, "Gold": 3}),
        "a day keeps its last sample"
    );
    assert_eq!(history.body["history"]["levels"], json!(["Basic", "Bronze", "Silver", "Gold"]));
    let team_a = app.get("/api/v1/blueprints/service/scorecards/replicated/history?days=7&team=team-a").await;
    assert_eq!(team_a.body["history"]["days"][0]["counts"], json!({"Silver": 1, "Gold": 1}));

    // A member who may read only their team's services sees their team's history only.
    let grants = json!({"read": {"ownedByTeam": true}});
    assert_eq!(app.put("/api/v1/blueprints/service/permissions", grants).await.status, StatusCode::OK);
    let member = crate::account_token(&app.state, "mia", Role::Member, &["team-a"]).await;
    let path = "/api/v1/blueprints/service/scorecards/replicated/history";
    let everyone = app.call_as(Method::GET, path, &member, None).await;
    assert_eq!(everyone.status, StatusCode::FORBIDDEN, "{}", everyone.body);
    let own = app.call_as(Method::GET, &format!("{path}?team=team-a"), &member, None).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    let other = app.call_as(Method::GET, &format!("{path}?team=team-b"), &member, None).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);

    for query in ["days=0", "days=100000"] {
        let refused = app.get(&format!("{path}?{query}")).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(refused.detail_paths(), vec!["/days"]);
    }
    assert_eq!(app.get("/api/v1/blueprints/service/scorecards/nothing/history").await.status, StatusCode::NOT_FOUND);

    // Past the retention (730 days by default), days are dropped.
    clock.advance(731 * DAY);
    app.state.scorecards.sample_levels().await.expect("two years on");
    let late = app.get(&format!("{path}?days=3000")).await;
    assert_eq!(late.body["history"]["days"].as_array().map(Vec::len), Some(1), "{}", late.body);
}

#[tokio::test]
async fn the_demo_has_90_days_of_readiness_and_the_scorecards_page_charts_it() {
    let app = spawn_app().await;
    portolan_server::demo::load(&app.state).await.expect("demo");
    let history = app.get("/api/v1/blueprints/service/scorecards/production-readiness/history?days=91").await;
    let days = history.body["history"]["days"].as_array().expect("days").clone();
    assert_eq!(days.len(), 90, "the 90 days before the demo was loaded");
    assert_eq!(days[0]["counts"], json!({"Basic": 1, "Bronze": 1, "Silver": 0, "Gold": 0}));
    assert_eq!(days[89]["counts"], json!({"Basic": 0, "Bronze": 0, "Silver": 1, "Gold": 1}));
    let user = json!({"identifier": "ana@example.com", "password": crate::web::PASSWORD});
    assert_eq!(app.post("/api/v1/users", user).await.status, StatusCode::CREATED);
    let session = crate::web::sign_in(&app, "ana@example.com").await;
    let (status, html) = crate::web::page(&app, "/scorecards", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Entities at Gold, last 90 days"), "{html}");
    assert!(html.contains("<svg class=\"chart\""), "{html}");
}
