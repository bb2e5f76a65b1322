use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestApp, spawn_app};

async fn demo_app() -> TestApp {
    let app = spawn_app().await;
    portolan_server::demo::load(&app.state).await.expect("demo loads");
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
    // The demo's generated history depends on the day it is loaded: the total is counted.
    let count = app.post("/api/v1/entities/aggregate", json!({"function": "count"})).await;
    let total = count.body["value"].as_f64().expect("a count") as usize;
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), distinct.len()), (total, total), "every demo entity (and the test admin) once: {seen:?}");
    assert!(total > 21, "the demo's catalog and its history");
    assert_eq!(seen[0], "acme", "Acme Corp (a customer of the gallery's demo) sorts first by title");
}

#[tokio::test]
async fn related_to_follows_relations_transitively() {
    let app = demo_app().await;
    let upstream = app
        .post(
            "/api/v1/entities/search",
            json!({"query": {"combinator": "and", "rules": [
                {"operator": "relatedTo", "blueprint": "domain", "value": "order-domain"}
            ]}, "limit": 1000}),
        )
        .await;
    let entities = upstream.body["entities"].as_array().expect("entities").clone();
    let history = |e: &&Value| ["deployment", "incident"].contains(&e["blueprint"].as_str().unwrap_or_default());
    assert!(entities.iter().any(|e| history(&e)), "the services' deployments lead to the domain too");
    let mut found: Vec<&str> =
        entities.iter().filter(|e| !history(e)).filter_map(|e| e["identifier"].as_str()).collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            "cart-api",
            "cart-dev-demo",
            "cart-resource",
            "cart-service",
            "cart-service-pr-42",
            "cart-sessions",
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
            crate::query_value(&json!({"combinator": "and", "rules": [{"relation": "system", "operator": "=", "value": "products-system"}]}).to_string())
        ))
        .await;
    assert_eq!(filtered_list.status, StatusCode::OK, "{}", filtered_list.body);
    assert_eq!(identifiers(&filtered_list.body), vec!["products-service"]);
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

#[tokio::test]
async fn integer_properties_keep_whole_numbers_refuse_fractions_and_search_and_sort_as_numbers() {
    let app = spawn_app().await;
    let blueprint = json!({"identifier": "pool", "schema": {"properties": {
        "size": {"type": "integer", "minimum": 0},
        "tier": {"type": "integer", "enum": [1, 2, 3]},
        "ports": {"type": "array", "items": {"type": "integer"}}
    }}});
    let created = app.post("/api/v1/blueprints", blueprint).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let wrong = app
        .post(
            "/api/v1/blueprints",
            json!({"identifier": "x", "schema": {"properties": {"n": {"type": "integer", "enum": [1.5]}}}}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong.body);
    assert_eq!(wrong.detail_paths(), vec!["/schema/properties/n/enum/0"]);

    let entities = "/api/v1/blueprints/pool/entities";
    let half =
        app.post(entities, json!({"identifier": "half", "properties": {"size": 2.5, "ports": [80, 80.5]}})).await;
    assert_eq!(half.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", half.body);
    assert_eq!(half.detail_paths(), vec!["/properties/size", "/properties/ports/1"]);
    assert!(half.body["details"][0]["message"].as_str().is_some_and(|m| m.contains("integer")), "{}", half.body);

    // 7.0 is the integer 7 (as in JSON Schema) and is kept as 7.
    for (id, size, tier) in [("p7", json!(7.0), json!(2.0)), ("p10", json!(10), json!(1)), ("p3", json!(3), json!(3))] {
        let made = app
            .post(entities, json!({"identifier": id, "properties": {"size": size, "tier": tier, "ports": [443.0]}}))
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    }
    let p7 = app.get(&format!("{entities}/p7")).await;
    assert_eq!(p7.body["entity"]["properties"].to_string(), r#"{"size":7,"tier":2,"ports":[443]}"#);
    let patched = app.patch(&format!("{entities}/p3"), json!({"properties": {"size": 4.5}})).await;
    assert_eq!(patched.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", patched.body);
    assert_eq!(patched.detail_paths(), vec!["/properties/size"]);

    let search = |rules: Value, sort: Value| {
        let app = &app;
        async move {
            let reply = app
                .post(
                    "/api/v1/blueprints/pool/entities/search",
                    json!({"query": {"combinator": "and", "rules": rules}, "sort": sort}),
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            identifiers(&reply.body)
        }
    };
    let by_size = json!({"property": "size", "order": "desc"});
    assert_eq!(search(json!([]), by_size.clone()).await, vec!["p10", "p7", "p3"]);
    assert_eq!(search(json!([]), json!({"property": "tier"})).await, vec!["p10", "p7", "p3"], "a facet's index");
    let at_least_seven = json!([{"property": "size", "operator": ">=", "value": 7}]);
    assert_eq!(search(at_least_seven, by_size.clone()).await, vec!["p10", "p7"]);
    assert_eq!(search(json!([{"property": "size", "operator": "=", "value": 7.0}]), by_size.clone()).await, vec!["p7"]);
    assert_eq!(search(json!([{"property": "size", "operator": "<", "value": 6.5}]), by_size.clone()).await, vec!["p3"]);
    assert_eq!(
        search(json!([{"property": "tier", "operator": "in", "value": [1, 3]}]), by_size.clone()).await,
        vec!["p10", "p3"]
    );
    assert_eq!(
        search(json!([{"property": "ports", "operator": "containsAny", "value": [443]}]), by_size).await.len(),
        3
    );
    let sum = app
        .post("/api/v1/entities/aggregate", json!({"function": "sum", "blueprint": "pool", "property": "size"}))
        .await;
    assert_eq!(sum.body["value"].as_f64(), Some(20.0), "{}", sum.body);
    let by_tier = app
        .post("/api/v1/entities/aggregate", json!({"function": "countBy", "blueprint": "pool", "property": "tier"}))
        .await;
    assert_eq!(by_tier.status, StatusCode::OK, "{}", by_tier.body);
    assert_eq!(by_tier.body["groups"].as_array().map(Vec::len), Some(3), "{}", by_tier.body);

    let openapi = app.get("/api/v1/openapi.json").await;
    let text = openapi.body.to_string();
    assert!(
        text.contains(r#""enum":["string","number","integer","boolean","object","array"]"#),
        "the schema names integer"
    );
}
