use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestApp, spawn_app};

async fn demo_app() -> TestApp {
    let app = spawn_app().await;
    portolan_server::demo::load(&app.state.catalog).await.expect("demo loads");
    app
}

fn identifiers(body: &Value) -> Vec<String> {
    body["entities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["identifier"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn search_filters_sorts_pages_and_projects() {
    let app = demo_app().await;
    let reply = app
        .post(
            "/api/v1/entities/search",
            json!({"query": {"combinator": "and", "rules": [
                {"property": "$team", "operator": "containsAny", "value": ["team-cart"]},
                {"property": "$blueprint", "operator": "in", "value": ["service", "api", "resource"]}
            ]}, "sort": {"property": "$identifier", "order": "desc"}, "include": ["identifier", "properties.tier"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(identifiers(&reply.body), vec!["cart-service", "cart-resource", "cart-api"]);
    assert_eq!(reply.body["entities"][0], json!({"identifier": "cart-service", "properties": {"tier": "tier-1"}}));
    assert_eq!(reply.body["entities"][1], json!({"identifier": "cart-resource"}));

    // A bare query is accepted as the whole body, as in Port.
    let bare = app
        .post(
            "/api/v1/blueprints/service/entities/search",
            json!({"combinator": "or", "rules": [
                {"property": "language", "operator": "=", "value": "Go"},
                {"property": "replicas", "operator": ">", "value": 5}
            ]}),
        )
        .await;
    assert_eq!(identifiers(&bare.body), vec!["cart-service", "products-service"]);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut body = json!({"limit": 4, "sort": {"property": "$title"}});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let page = app.post("/api/v1/entities/search", body).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(identifiers(&page.body));
        match page.body["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 18, "every demo entity (and the test admin) once: {seen:?}");
    assert_eq!(seen[0], "alice@portolan.dev", "Alice Martin sorts first by title");
}

#[tokio::test]
async fn related_to_follows_relations_transitively() {
    let app = demo_app().await;
    let upstream = app
        .post(
            "/api/v1/entities/search",
            json!({"combinator": "and", "rules": [
                {"operator": "relatedTo", "blueprint": "domain", "value": "order-domain"}
            ]}),
        )
        .await;
    let mut found = identifiers(&upstream.body);
    found.sort();
    assert_eq!(
        found,
        vec![
            "cart-api",
            "cart-resource",
            "cart-service",
            "cart-system",
            "products-api",
            "products-service",
            "products-system"
        ]
    );

    let downstream = app
        .post(
            "/api/v1/entities/search",
            json!({"combinator": "and", "rules": [
                {"operator": "relatedTo", "blueprint": "service", "value": "cart-service", "direction": "downstream"},
                {"property": "$blueprint", "operator": "=", "value": "library"}
            ]}),
        )
        .await;
    assert_eq!(identifiers(&downstream.body), vec!["core-kafka-library", "core-payment-library"]);

    let through_dependencies = app
        .post(
            "/api/v1/blueprints/service/entities/search",
            json!({"combinator": "and", "rules": [
                {"operator": "matchAny", "relations": ["dependsOn"], "query": {"combinator": "and", "rules": [
                    {"property": "language", "operator": "=", "value": "Python"}]}}
            ]}),
        )
        .await;
    assert_eq!(through_dependencies.status, StatusCode::OK, "{}", through_dependencies.body);
    assert_eq!(identifiers(&through_dependencies.body), vec!["cart-service"], "depends on a Python library");
    let two_hops = app
        .post("/api/v1/entities/search", json!({"combinator": "and", "rules": [
            {"operator": "matchAny", "relations": ["system", "domain"], "maxHops": 2, "query": {"combinator": "and", "rules": [
                {"property": "$title", "operator": "=", "value": "Order Domain"}]}},
            {"property": "$blueprint", "operator": "=", "value": "service"}
        ]}))
        .await;
    assert_eq!(identifiers(&two_hops.body), vec!["cart-service", "products-service"], "service → system → domain");
    let one_hop = app
        .post("/api/v1/blueprints/service/entities/search", json!({"combinator": "and", "rules": [
            {"operator": "matchAny", "relations": ["system", "domain"], "maxHops": 1, "query": {"combinator": "and", "rules": [
                {"property": "$title", "operator": "=", "value": "Order Domain"}]}}
        ]}))
        .await;
    assert_eq!(identifiers(&one_hop.body), Vec::<String>::new(), "the domain is two hops away");
    let too_far = app
        .post(
            "/api/v1/entities/search",
            json!({"combinator": "and", "rules": [
            {"operator": "matchAny", "maxHops": 16, "query": {"combinator": "and", "rules": []}}]}),
        )
        .await;
    assert_eq!(too_far.detail_paths(), vec!["/query/rules/0/maxHops"]);

    let filtered_list = app
        .get(&format!(
            "/api/v1/blueprints/service/entities?query={}",
            urlencode(&json!({"combinator": "and", "rules": [{"relation": "system", "operator": "=", "value": "products-system"}]}).to_string())
        ))
        .await;
    assert_eq!(filtered_list.status, StatusCode::OK, "{}", filtered_list.body);
    assert_eq!(identifiers(&filtered_list.body), vec!["products-service"]);
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn aggregates_and_facets() {
    let app = demo_app().await;
    let count = app.post("/api/v1/entities/aggregate", json!({"function": "count", "blueprint": "_user"})).await;
    assert_eq!(count.body, json!({"ok": true, "value": 5.0}), "four demo users and the test admin");
    let sum = app
        .post("/api/v1/entities/aggregate", json!({"function": "sum", "blueprint": "service", "property": "replicas"}))
        .await;
    assert_eq!(sum.body["value"], 10.0);
    let median = app
        .post(
            "/api/v1/entities/aggregate",
            json!({"function": "median", "blueprint": "service", "property": "replicas"}),
        )
        .await;
    assert_eq!(median.body["value"], 5.0);
    let none = app
        .post(
            "/api/v1/entities/aggregate",
            json!({"function": "max", "blueprint": "service", "property": "replicas",
            "query": {"combinator": "and", "rules": [{"property": "language", "operator": "=", "value": "Rust"}]}}),
        )
        .await;
    assert_eq!(none.body["value"], Value::Null);

    let by_team = app.post("/api/v1/entities/aggregate", json!({"function": "countBy", "property": "$team"})).await;
    assert_eq!(by_team.status, StatusCode::OK, "{}", by_team.body);
    assert_eq!(by_team.body["groups"][0], json!({"value": "team-cart", "count": 8}));
    let by_blueprint =
        app.post("/api/v1/entities/aggregate", json!({"function": "countBy", "property": "$blueprint"})).await;
    let users = by_blueprint.body["groups"].as_array().expect("groups").iter().find(|g| g["value"] == "_user").cloned();
    assert_eq!(users, Some(json!({"value": "_user", "count": 5})));
    let by_system = app
        .post(
            "/api/v1/entities/aggregate",
            json!({"function": "countBy", "blueprint": "service", "relation": "system"}),
        )
        .await;
    assert_eq!(by_system.body["groups"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn bad_queries_name_the_offending_part() {
    let app = demo_app().await;
    let cases = [
        (
            json!({"query": {"combinator": "and", "rules": [{"property": "language", "operator": "like", "value": "x"}]}}),
            "/query/rules/0/operator",
        ),
        (
            json!({"query": {"combinator": "and", "rules": [{"property": "replicas", "operator": "contains", "value": "x"}]}}),
            "/query/rules/0/operator",
        ),
        (
            json!({"query": {"combinator": "and", "rules": [{"property": "colour", "operator": "=", "value": "x"}]}}),
            "/query/rules/0/property",
        ),
        (
            json!({"query": {"combinator": "and", "rules": [{"property": "$createdAt", "operator": "between", "value": {"preset": "fortnight"}}]}}),
            "/query/rules/0/value",
        ),
        (
            json!({"query": {"combinator": "and", "rules": [{"relation": "owner", "operator": "=", "value": "x"}]}}),
            "/query/rules/0/relation",
        ),
        (json!({"query": {"combinator": "nand", "rules": []}}), "/query/combinator"),
        (json!({"sort": {"property": "$team"}}), "/sort/property"),
    ];
    for (body, path) in cases {
        let reply = app.post("/api/v1/blueprints/service/entities/search", body.clone()).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", reply.body);
        assert_eq!(reply.detail_paths(), vec![path], "{body}");
    }
    let mut deep = json!({"combinator": "and", "rules": []});
    for _ in 0..20 {
        deep = json!({"combinator": "and", "rules": [deep]});
    }
    let too_deep = app.post("/api/v1/entities/search", json!({"query": deep})).await;
    assert_eq!(too_deep.status, StatusCode::UNPROCESSABLE_ENTITY);

    let rules: Vec<Value> = (0..2000)
        .map(|i| json!({"property": "$identifier", "operator": "=", "value": format!("padding-{i:040}")}))
        .collect();
    let huge = app.post("/api/v1/entities/search", json!({"query": {"combinator": "or", "rules": rules}})).await;
    assert_eq!(huge.status, StatusCode::UNPROCESSABLE_ENTITY, "a query over 64 KiB");
    assert!(huge.body["message"].as_str().is_some_and(|m| m.contains("65536")), "{}", huge.body);

    let unknown_function =
        app.post("/api/v1/entities/aggregate", json!({"function": "mode", "property": "replicas"})).await;
    assert_eq!(unknown_function.detail_paths(), vec!["/function"]);
    let not_number = app
        .post("/api/v1/entities/aggregate", json!({"function": "avg", "blueprint": "service", "property": "language"}))
        .await;
    assert_eq!(not_number.detail_paths(), vec!["/property"]);
}

#[tokio::test]
async fn a_cursor_from_another_sort_is_refused() {
    let app = demo_app().await;
    let by_title = app
        .post("/api/v1/blueprints/service/entities/search", json!({"limit": 1, "sort": {"property": "$title"}}))
        .await;
    let cursor = by_title.body["next"].as_str().expect("a next page").to_string();
    let by_replicas = app
        .post(
            "/api/v1/blueprints/service/entities/search",
            json!({"limit": 1, "sort": {"property": "replicas"}, "cursor": cursor}),
        )
        .await;
    assert_eq!(by_replicas.status, StatusCode::BAD_REQUEST, "{}", by_replicas.body);
    assert_eq!(by_replicas.error_code(), "invalid_query");
}
